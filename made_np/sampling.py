"""Ancestral sampling from a MADE, in the model's ordering.

``x_{o_1} ~ p(x_{o_1})``, then ``x_{o_2} ~ p(x_{o_2} | x_{o_1})``, ... where ``o_k`` is
the variable with ordering position ``m^0 = k``. Every sampler takes its uniform
noise ``u`` of shape (n, D) indexed by *variable* (not by position), so the same
noise gives the same samples whichever method computes the conditionals.

Every sampler also takes, for a conditional model, the ``context`` of each sample
(:meth:`made_np.model.MADE.encode_context`; one row is repeated), and can start from a
*given prefix*: with ``given`` (n, D) and ``n_given = k``, the variables at positions
1..k keep their values from ``given`` and only positions k+1..D are drawn, from
``p(x_{o_>k} | x_{o_<=k})``. That is the completion step of :mod:`made_np.conditional`
under an observed-first mask.

Two methods compute the conditionals:

* ``"naive"`` (:func:`sample_naive`): one full forward pass per variable, D passes
  in all (``O(D)`` times the cost of a forward pass). The readable reference.
* ``"fast"`` (:func:`made_np.fast.sampler.sample_fast`, the default): the degree-ordered sampler, which
  computes every hidden unit exactly once, as soon as its inputs are known, for
  a total cost of about *one* forward pass (see its docstring and
  ``docs/performance.md``).

:func:`sample` dispatches between them and can also sample from the mixture of
several masks of the bank (``masks=``, the test-time ensemble of paper Sec. 4.2).
"""
from __future__ import annotations

from . import backend, limits
from .registry import speed_form
from .checks import (check_choice, check_context, check_data, check_given, check_int, check_mask, check_mask_indices, check_model, check_noise,
                     check_seed)

DEFAULT_METHOD = "fast"


def draw_noise(n: int, D: int, seed: int | None, xp, device=None):
    """Uniform noise in [0, 1), shape (n, D), float64, drawn on the host from ``seed``
    (so CPU and GPU give the same samples) and moved to ``xp`` (``device``). ``seed=None``:
    fresh entropy, a different draw every call."""
    return backend.to_device(backend.host_rng(*(() if seed is None else (seed,))).random((n, D)), xp, device=device)


def noise_for(model, n, noise, seed, blocked: bool = False):
    """The uniform noise of a draw: ``noise`` checked (:func:`made_np.checks.check_noise`), or
    drawn from ``seed`` for ``n`` samples after a memory estimate
    (:func:`made_np.limits.check_api`) of a draw of all ``n`` rows at once, or of one block of
    rows with ``blocked``, as :func:`sample` draws. Returns an array on ``model.xp``, (n, D).

    Raises
    ------
    ValueError
        ``n`` or ``seed`` not an integer in range, neither ``n`` nor ``noise``, noise that
        :func:`~made_np.checks.check_noise` refuses, or more samples than the memory limit allows.
    """
    seed = check_seed(seed)
    n = None if n is None else check_int("n", n, 0)
    if noise is not None:
        return check_noise(model, noise, n)
    if n is None:
        raise ValueError("give n (the number of samples) or noise (n, D)")
    limits.check_api(limits.sample_parts(model.config, n, "n =", blocked=blocked))
    return draw_noise(n, model.config.D, seed, model.xp, model.device)


def sample_dtype(model, xp):
    """The dtype of ``model``'s samples (its head's :attr:`~made_np.heads.Head.sample_dtype`)."""
    return getattr(xp, model.head.sample_dtype)


def sample_naive(model, n: int | None = None, *, noise=None, seed: int | None = None, context=None,
                 given=None, n_given: int = 0, mask=0):
    """Ancestral sampling with one full forward pass per variable (D passes in all;
    docs/math.md Sec. 7, and Sec. 10 for a given prefix).

    Parameters
    ----------
    model : made_np.model.MADE
    n : int
        Number of samples (required without ``noise``; with it, its number of rows).
    noise : array on ``model.xp``, shape (n, D), float, optional
        Uniform noise in [0, 1), indexed by variable: variable ``d`` is drawn from column
        ``d``. Drawn from ``seed`` when absent (float64, :func:`draw_noise`).
    seed : int, optional
        Seed of the noise when ``noise`` is absent; None draws fresh noise every call
        (:func:`~made_np.sampling.draw_noise`).
    context : array, optional
        A conditional model's context (:meth:`~made_np.model.MADE.encode_context`): labels (n,),
        rows (n, context), or one of either, repeated; draws from ``p(x | y)``.
    given : array, shape (n, D), optional
        Values of the variables at positions 1..``n_given`` of the mask's ordering; only
        those entries are read, and they are not range-checked (cast to the sample dtype).
    n_given : int, default 0
        How many leading positions are given (not drawn); the others are drawn from
        their conditionals given them. D - n_given forward passes.
    mask : int or made_np.masks.MaskSet, default 0
        The mask sampled under (:meth:`~made_np.model.MADE.mask`).

    Returns
    -------
    array, shape (n, D): uint8 in {0, 1} (Bernoulli head), int64 in 0..C-1 (categorical), or
    float64 in the data's units (real heads); the given variables hold their given values.

    Raises
    ------
    ValueError
        Any argument that :func:`checked_draw` refuses.
    """
    return draw_naive(model, *checked_draw(model, n, noise, seed, context, given, n_given, mask))


def checked_draw(model, n, noise, seed, context, given, n_given, mask, blocked: bool = True) -> tuple:
    """The arguments of a draw, checked once at the boundary: ``(u, y, given, n_given, mask)``
    as :func:`draw_naive` and :func:`made_np.fast.sampler.draw_fast` take them.

    Raises
    ------
    ValueError
        Not a MADE; neither ``n`` nor ``noise``, or either of them, or ``seed``, not as
        :func:`noise_for` takes them; a context that does not fit the model
        (:func:`made_np.checks.check_context`); ``n_given`` outside 0..D, or ``n_given > 0``
        without ``given`` of shape (n, D) (:func:`made_np.checks.check_given`); a mask that is
        not the model's (:func:`made_np.checks.check_mask`).
    """
    check_model(model)
    u = noise_for(model, n, noise, seed, blocked)
    n, mask = u.shape[0], check_mask(model, mask)
    n_given = check_given(model, n, given, n_given)
    if n_given:  # the given values are values of the model's variables (a 7 of a binary model was drawn on)
        first = model._on_device(model._mask(mask)[0].ordering <= n_given)
        check_data(model, given, "given", where=model.xp.broadcast_to(first, (n, model.config.D)))
    return u, check_context(model, context, n), given, n_given, mask


def draw_naive(model, u, y=None, given=None, n_given: int = 0, mask=0):
    """:func:`sample_naive` on checked arguments (:func:`checked_draw`): ``u`` noise (n, D) on the
    device, ``y`` the encoded context (n, context) or None. Returns the samples (n, D)."""
    xp, D, n = model.xp, model.config.D, u.shape[0]
    x = xp.zeros((n, D), dtype=sample_dtype(model, xp), device=model.device)
    maskset, masks = model._mask(mask)
    var_at = backend.to_host(maskset.ordering).argsort()  # variables by increasing position m^0(d)
    if n_given:  # the variables at positions 1..n_given keep their given values
        first = model._on_device(maskset.ordering <= n_given)
        x = xp.astype(xp.where(first, model._on_device(given), 0), x.dtype)  # only those entries are read
    R = model.out_repeat
    for d in map(int, var_at[n_given:]):
        z = model._forward_pass(model.encode(x)[0], masks, y)
        x[:, d] = model._unstandardise(model.head.sample_at(z[:, d * R:(d + 1) * R], u[:, d:d + 1], [d])[:, 0], d)
    return x


# --------------------------------------------------------------------------- dispatch

def _draw_fast(model, u, y=None, given=None, n_given: int = 0, mask=0):
    """The seam to the speed form: :func:`made_np.fast.sampler.draw_fast` (tested equal to :func:`draw_naive`),
    which runs on NumPy and CuPy; on any other array namespace the reference draws."""
    fn = speed_form("sampler") if backend.native(model.xp) is not None else draw_naive
    return fn(model, u, y, given, n_given, mask)


def balanced_labels(n: int, classes: int):
    """``n`` class labels in increasing order, as evenly spread over ``classes`` as can be:
    label ``i * classes // n`` for sample ``i`` (host int64, shape (n,)). With n = 100 and 10
    classes, a grid of 10 columns shows one class per row."""
    return backend.to_host([i * classes // max(n, 1) for i in range(n)]).astype("int64")


#: Sampling methods by name, each on checked arguments (:func:`checked_draw`): ``naive`` is the
#: reference, ``fast`` the degree-ordered sampler.
METHODS = {"naive": draw_naive, "fast": _draw_fast}


def sample(model, n: int | None = None, *, noise=None, seed: int | None = None,
           method: str = DEFAULT_METHOD, masks=None, context=None):
    """Draw samples with the chosen method (see :func:`sample_naive`, :func:`made_np.fast.sampler.sample_fast`).

    Parameters
    ----------
    model : made_np.model.MADE
    n : int
        Number of samples (when ``noise`` is given too, its number of rows).
    noise : array, shape (n, D), optional
        Uniform noise in [0, 1), indexed by variable; drawn from ``seed`` when absent.
    seed : int, optional
        Seeds the noise and, for a mixture of masks, the choice of mask of every sample (given
        ``noise`` and no seed, the masks are chosen from a fixed stream: the same noise gives
        the same samples, whichever the method).
    method : {"fast", "naive"}
    masks : sequence of int, optional
        Sample from the *mixture* of these masks of the bank (the ensemble whose
        density :meth:`MADE.ensemble_nll` evaluates, paper Sec. 4.2): every sample
        gets a mask index drawn uniformly from ``masks`` (from ``seed``, on the
        host), then each group of samples sharing a mask is drawn in one batch
        under that mask; ``[k]`` samples mask ``k`` alone. Default: the model's
        test ensemble (:meth:`MADE.eval_mask_indices`, the density ``evaluate``
        reports) for a bank, mask 0 for a single-mask model.
    context : array, optional
        A conditional model's context per sample (or one, repeated): see :func:`sample_naive`.

    Returns
    -------
    array, shape (n, D): uint8 (Bernoulli head) or int64 (categorical).

    Raises
    ------
    ValueError
        Unknown method, an empty ``masks``, or a mask index outside the bank.
    """
    check_model(model)
    fn = METHODS[check_choice("sampling method", method, METHODS)]
    masks = check_mask_indices(model.eval_mask_indices() if masks is None else masks, model.config.num_masks, "masks")
    u, y, *_ = checked_draw(model, n, noise, seed, context, None, 0, masks[0])  # drawn in blocks below
    if len(masks) == 1:
        return _in_blocks(fn, model, u, y, model._mask(masks[0]))
    xp, n = model.xp, u.shape[0]
    # each row's mask: from the seed; with given noise and no seed, from a fixed stream (the same noise,
    # the same samples); with neither, fresh
    fixed = seed if seed is not None else (0 if noise is not None else None)
    choice = backend.host_rng(*(() if fixed is None else (fixed, 1))).integers(len(masks), size=n)
    by_mask = choice.argsort(kind="stable")  # the rows of each mask together, drawn in one batch per mask
    parts = [xp.zeros((0, model.config.D), dtype=sample_dtype(model, xp), device=model.device)]
    for j, k in enumerate(masks):
        idx = by_mask[choice[by_mask] == j]
        if idx.size:
            rows = model._on_device(idx)
            parts.append(_in_blocks(fn, model, xp.take(u, rows, axis=0),
                                    None if y is None else xp.take(y, rows, axis=0), model._mask(k)))
    return xp.take(xp.concat(parts, axis=0), model._on_device(by_mask.argsort()), axis=0)


def _in_blocks(fn, model, u, y, mask=0):
    """``fn(model, u, y, mask=mask)`` over blocks of at most :func:`made_np.limits.sample_block_rows`
    rows: the same samples, since each row's draw reads only its own noise and context, with
    the activations of one block at a time (a figure's 100,000 samples of a wide network).
    ``y``: the encoded context, a row per row of ``u`` (:meth:`MADE.encode_context`), or None."""
    n, rows = u.shape[0], limits.sample_block_rows(model.config)
    if n <= rows:
        return fn(model, u, y, mask=mask)
    return model.xp.concat([fn(model, u[s, ...], None if y is None else y[s, ...], mask=mask)
                            for s in backend.row_blocks(n, rows)], axis=0)
