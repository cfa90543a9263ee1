"""Exact density tables of a MADE with few variables, and the divergences that score them.

For small ``D`` the model's joint ``p(x) = prod_d p(x_d | x_<d)`` (paper eq. 1) can be
evaluated on all ``C^D`` configurations. One forward pass on an input whose *last*
variable in the ordering is set to any value already gives every conditional of that
input's prefix *and* the whole conditional ``p(x_last | x_<last)`` over all ``C``
values (the autoregressive property: no output sees ``x_last``). So the table needs
only ``C^(D-1)`` rows of forward passes: for ``D = 2`` and ``C = 200``, 200 rows give
all 40,000 probabilities.

The logits come from the model in its own dtype; the log-softmax that normalises each
conditional is taken in float64, so the table sums to 1 up to float64 rounding even for
a float32 model. Tables are returned on the host (NumPy), in nats.

:func:`kl_divergence` and :func:`entropy` work on host tables; on the 2-D data set
``entropy(p_true)`` is the lower bound of the expected test NLL, reached when
``KL(p_true || p_model) = 0`` (``E_p[-log q] = H(p) + KL(p || q)``).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from . import backend
from .checks import check_mask
from .heads import log_softmax

MAX_TABLE_SIZE = 10**7


def _single_mask_table(model, batch_size: int, mask=0):
    """Flat float64 device table (C^D,) of ``log p(x)`` under ``mask``, C-order over variables."""
    xp, c = model.xp, model.config
    D, C = c.D, c.classes
    maskset, masks = model._mask(mask)
    last = int(np.argmax(backend.to_host(maskset.ordering)))  # the variable with m^0 = D: no output depends on it
    others = model._on_device(np.delete(np.arange(D, dtype=np.int64), last))
    n_prefix = C ** (D - 1)
    # All configurations of the other variables, in C-order (first of `others` slowest): digit j of k in base C.
    powers = model._on_device(C ** np.arange(D - 2, -1, -1, dtype=np.int64))
    prefix = (xp.arange(n_prefix, dtype=xp.int64, device=model.device)[:, None] // powers) % C  # (C^(D-1), D-1)
    dtype = xp.uint8 if C <= 256 else xp.int64
    table = xp.empty((n_prefix, C), dtype=xp.float64, device=model.device)
    for block in backend.row_blocks(n_prefix, max(1, int(batch_size))):
        pre = prefix[block, ...]
        blank = xp.zeros((pre.shape[0], 1), dtype=dtype, device=model.device)  # the last variable: any value
        x = xp.concat([xp.astype(pre[:, :last], dtype), blank, xp.astype(pre[:, last:], dtype)], axis=1)
        # every head states its conditionals as softmax logits (Head.class_logits; the Bernoulli
        # head's single logit z becomes the pair (0, z)), so all heads share one code path
        z = model.head.class_logits(model._forward_pass(model.encode(x)[0], masks))
        lp = log_softmax(xp, xp.astype(z, xp.float64))  # (n, D, C)
        picked = xp.take_along_axis(xp.take(lp, others, axis=1), pre[..., None], axis=2)[..., 0]  # (n, D-1)
        table[block, :] = xp.sum(picked, axis=1)[:, None] + lp[:, last, :]
    # Axes are (others..., last); put `last` back in its place among the variables.
    table = xp.reshape(table, (C,) * D)
    return xp.reshape(xp.moveaxis(table, -1, last), (-1,))


def log_density_table(model, batch_size: int = 4096, mask_indices=None) -> np.ndarray:
    """The model's exact ``log p(x)`` on all ``C^D`` configurations.

    Parameters
    ----------
    model : made_np.model.MADE
        Categorical head (or Bernoulli, ``C = 2``), any input encoding, direct
        connections or not, any ordering.
    batch_size : int
        Rows per forward pass; the table costs ``C^(D-1)`` rows in all (per mask).
    mask_indices : sequence of int or made_np.masks.MaskSet, optional
        Masks to average over (:meth:`~made_np.model.MADE.mask`): the table of the mixture
        ``log p(x) = logsumexp_k log p_k(x) - log K`` (paper Sec. 4.2, test-time
        averaging of probabilities). ``None``: the density the model reports
        (:meth:`~made_np.model.MADE.log_prob`): its test ensemble for a bank, its mask for a
        single-mask model.

    Returns
    -------
    numpy.ndarray, float64, shape ``(C,) * D``
        ``table[x_1, ..., x_D] = log p_model(x)`` in nats; ``exp(table)`` sums to 1.

    Raises
    ------
    ValueError
        ``C^D`` above ``MAX_TABLE_SIZE`` (10^7), or an empty ``mask_indices``.
    """
    c, xp = model.config, model.xp
    D, C = c.D, c.classes
    if c.context:
        raise ValueError("log_density_table: this model is conditional (a table per context); "
                         "tables are of unconditional models")
    if C ** D > MAX_TABLE_SIZE:
        raise ValueError(f"density table of {C}^{D} = {C ** D:.3g} configurations exceeds the limit "
                         f"of {MAX_TABLE_SIZE:.0e}; exact tables are only for small D")
    mask_indices = [check_mask(model, k) for k in (model.eval_mask_indices() if mask_indices is None else mask_indices)]
    if not mask_indices:
        raise ValueError("log_density_table needs at least one mask index")
    flat = functools.reduce(xp.logaddexp, (_single_mask_table(model, batch_size, k) for k in mask_indices))
    flat -= math.log(len(mask_indices))  # the mixture's 1/K (log 1 = 0: a single mask's own table)
    return backend.to_host(flat).reshape((C,) * D)


def density_table(model, batch_size: int = 4096, mask_indices=None) -> np.ndarray:
    """``exp(log_density_table(...))``: probabilities, float64, shape ``(C,) * D``, summing to 1."""
    return np.exp(log_density_table(model, batch_size, mask_indices))


def _check_prob(p, name: str) -> np.ndarray:
    p = np.asarray(backend.to_host(p), dtype=np.float64)
    if p.size == 0 or not np.all(np.isfinite(p)) or (p < 0).any():
        raise ValueError(f"{name} must be a non-empty table of finite non-negative probabilities")
    if abs(p.sum() - 1.0) > 1e-6:
        raise ValueError(f"{name} sums to {p.sum():.8g}, not 1 (tolerance 1e-6)")
    return p


def kl_divergence(p_true, log_q) -> float:
    """``KL(p || q) = sum_{x: p(x) > 0} p(x) (log p(x) - log q(x))`` in nats.

    Parameters
    ----------
    p_true : array, any shape
        Probabilities summing to 1 (within 1e-6).
    log_q : array, same shape
        ``log q(x)`` in nats (e.g. :func:`log_density_table`); ``-inf`` allowed.

    Returns
    -------
    float
        ``>= 0`` (up to rounding) when ``q`` sums to 1; ``inf`` when ``q(x) = 0`` where ``p(x) > 0``.

    Raises
    ------
    ValueError
        Shapes differ, or ``p_true`` is not a probability table.
    """
    p = _check_prob(p_true, "p_true")
    log_q = np.asarray(backend.to_host(log_q), dtype=np.float64)
    if log_q.shape != p.shape:
        raise ValueError(f"kl_divergence: p_true shape {p.shape} != log_q shape {log_q.shape}")
    nz = p > 0
    if np.isneginf(log_q[nz]).any():
        return math.inf
    return float(np.sum(p[nz] * (np.log(p[nz]) - log_q[nz])))


def entropy(p) -> float:
    """Shannon entropy ``H(p) = -sum_{x: p(x) > 0} p(x) log p(x)`` in nats.

    Parameters
    ----------
    p : array, any shape
        Probabilities summing to 1 (within 1e-6).

    Returns
    -------
    float
        Between 0 and ``log(p.size)`` (the uniform table).

    Raises
    ------
    ValueError
        ``p`` is not a probability table.
    """
    p = _check_prob(p, "p")
    nz = p[p > 0]
    return float(-np.sum(nz * np.log(nz)))


def expected_nll(p_true, log_q) -> float:
    """Cross-entropy ``E_{x~p}[-log q(x)] = H(p) + KL(p || q)`` in nats: the test NLL with infinite data."""
    return entropy(p_true) + kl_divergence(p_true, log_q)
