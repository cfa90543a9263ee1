"""Ancestral sampling from a MADE, in the model's ordering.

``x_{o_1} ~ p(x_{o_1})``, then ``x_{o_2} ~ p(x_{o_2} | x_{o_1})``, ... where ``o_k`` is
the variable with ordering position ``m^0 = k``. Every sampler takes its uniform
noise ``u`` of shape (n, D) indexed by *variable* (not by position), so the same
noise gives the same samples whichever method computes the conditionals.
"""
from __future__ import annotations

from . import backend


def draw_noise(n: int, D: int, seed: int | None, xp):
    """Uniform noise in [0, 1), shape (n, D), float64, drawn on the host from ``seed``
    (so CPU and GPU give the same samples) and moved to ``xp``."""
    return xp.asarray(backend.host_rng(*(() if seed is None else (seed,))).random((n, D)))


def sample_naive(model, n: int | None = None, *, noise=None, seed: int | None = None):
    """Ancestral sampling with one full forward pass per variable (D passes in all).

    Parameters
    ----------
    model : made_np.model.MADE
        Sampled under its current mask.
    n : int
        Number of samples (ignored when ``noise`` is given).
    noise : array, shape (n, D), optional
        Uniform noise in [0, 1); drawn from ``seed`` when absent.
    seed : int, optional

    Returns
    -------
    array, shape (n, D): uint8 in {0, 1} (Bernoulli head) or int64 in 0..C-1 (categorical).
    """
    xp, D = model.xp, model.config.D
    u = draw_noise(n, D, seed, xp) if noise is None else noise
    n = u.shape[0]
    dtype = xp.uint8 if model.config.head == "bernoulli" else xp.int64
    x = xp.zeros((n, D), dtype=dtype)
    order = backend.to_host(model.maskset.ordering)
    R = model.out_repeat
    for d in order.argsort():  # variables by increasing position m^0(d)
        z = model._forward_pass(model.encode(x)[0])
        x[:, d] = model.head.sample(z[:, d * R:(d + 1) * R], u[:, d:d + 1])[:, 0]
    return x


def sample(model, n: int | None = None, *, noise=None, seed: int | None = None, method: str = "naive"):
    """Draw samples with the chosen method (see :func:`sample_naive`).

    Raises
    ------
    ValueError
        Unknown method.
    """
    methods = {"naive": sample_naive}
    if method not in methods:
        raise ValueError(f"unknown sampling method {method!r}: choose one of {', '.join(methods)}")
    return methods[method](model, n, noise=noise, seed=seed)
