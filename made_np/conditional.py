"""Exact marginals and completions of partly observed data with an order-agnostic MADE.

Order-agnostic training (Germain et al. 2015, Sec. 4.1; Uria et al. 2014, "A deep and
tractable density estimator", the order-agnostic NADE) makes inference over any
observed set ``o`` exact. Under a mask ``k`` whose ordering m^0 puts the observed
variables first (positions 1..|o|, in random order among themselves; the missing ones
after them, also in random order):

* ``log p_k(x_o) = sum_{d in o} log p_k(x_d | x_<d)``: the first |o| conditionals, all
  read from one forward pass (the autoregressive property, paper eq. 1);
* ``p_k(x_m | x_o)`` is ancestral sampling of the missing variables in that ordering,
  with the observed ones fixed first.

Over K such masks the model is the mixture ``p(x) = 1/K sum_k p_k(x)`` (test-time
averaging, paper Sec. 4.2), for which, exactly,

* ``log p(x_o) = logsumexp_k log p_k(x_o) - log K``,
* ``p(x_m | x_o) = sum_k w_k p_k(x_m | x_o)`` with ``w_k = p_k(x_o) / sum_j p_j(x_o)``:
  a completion first draws ``k`` from ``w``, then completes under mask ``k``.

The masks of an observed pattern are a function of ``(seed, k, pattern)`` only, so a
row's results do not depend on the other rows of the batch, and :func:`log_marginal`,
:func:`log_conditional`, :func:`mask_log_probs` and :func:`complete` with the same
``seed`` and ``masks`` use the same mixture.

Hidden degrees: a connectivity-agnostic model draws fresh degrees with its degree
rule (:func:`made_np.masks.hidden_degrees`), as in training; otherwise every mask reuses
the degrees of the model's mask 0. Those stay a valid draw for any ordering, because
the range [min m^(l-1), D-1] of each layer depends on the ordering only through
min m^0 = 1; this is also what the bank does (:func:`made_np.masks.draw_masks`).

A single-ordering model (``num_masks == 1`` or ``order_agnostic`` False) is exact only
when the observed variables are a prefix of its ordering; then its own mask (or the
mixture over its bank, :meth:`made_np.model.MADE.eval_mask_indices`) is used.

A conditional model (``config.context > 0``) takes the ``context`` of every row, and all
of the above holds given it: ``p(x_o | y)``, ``p(x_m | x_o, y)``, with weights
``w_k ∝ p_k(x_o | y)``. The context has degree 0, so it does not change the masks.

Completions are drawn by the degree-ordered sampler started from the observed prefix
(:func:`made_np.fast.sampler.sample_fast` with ``n_given = |o|``, about one forward pass
per group of rows) by default, or by the reference (``method="naive"``, one forward pass
per missing position); for the same seed the two return the same completions.

Masks are built on the host (NumPy, as in :mod:`made_np.masks`); data, logits and
results live on the model's array namespace ``model.xp`` (its device), computed with what the
array API standard defines: rows are gathered with ``take`` and written back through a boolean
mask of the rows (the standard has no integer-array assignment). Log-probabilities are float64, in
nats. Every pass takes its mask as an argument: the model is never changed.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import backend, limits, sampling
from .checks import (MAX_SEED, check_callable, check_choice, check_context, check_data, check_int, check_missing,
                     check_model, check_unmasked)
from .config import MAX_EVAL_MASKS
from .heads import logsumexp
from .masks import MaskSet, hidden_degrees, input_ordering, maskset_of

OCCLUSIONS = ("top", "bottom", "left", "right", "random:P")
FIX_HINT = "train order-agnostic: --num-masks inf or a bank with --order-agnostic"


# --------------------------------------------------------------------------- masks


def is_order_agnostic(model) -> bool:
    """Whether ``model`` was trained over many orderings (a bank with ``order_agnostic``)."""
    c = model.config
    return bool(c.order_agnostic) and c.num_masks != 1


def mixture_size(model, masks: int) -> int:
    """K, the masks the functions below mix for ``masks``: ``masks`` fresh observed-first masks
    of an order-agnostic model, else the model's own (one, or its bank's first ``masks``)."""
    if is_order_agnostic(model):
        return masks
    return 1 if model.config.num_masks == 1 else len(model.eval_mask_indices(masks))


def observed_first_maskset(model, observed_row, rng) -> MaskSet:
    """A mask whose ordering puts the observed variables first.

    Parameters
    ----------
    model : made_np.model.MADE
        Gives D, the hidden widths, the degree rule and (connectivity-agnostic or not)
        where the hidden degrees come from.
    observed_row : array of bool, shape (D,)
        True where the variable is observed.
    rng : numpy.random.Generator
        Draws, in this order, the order of the observed variables, the order of the
        missing ones and (connectivity-agnostic models) the hidden degrees.

    Returns
    -------
    made_np.masks.MaskSet
        ``ordering[d] <= |o|`` exactly for the observed ``d``; ``index`` is -1 (not a
        mask of the bank). Masks from :func:`made_np.masks.maskset_of`.

    Raises
    ------
    ValueError
        ``observed_row`` not of shape (D,).
    """
    c = model.config
    row = np.asarray(backend.to_host(observed_row), dtype=bool).reshape(-1)
    if row.shape != (c.D,):
        raise ValueError(f"observed_row must have shape ({c.D},), got {row.shape}")
    seq = np.concatenate([rng.permutation(np.flatnonzero(row)), rng.permutation(np.flatnonzero(~row))])
    m0 = input_ordering(c.D, given=np.argsort(seq) + 1)  # variable seq[k] at position k + 1
    base = None if c.connectivity_agnostic else model.maskset_at(0).degrees
    degs = [m0]  # the input degrees, then each hidden layer's (drawn from the previous layer's)
    for i, width in enumerate(c.hidden):
        degs.append(hidden_degrees(degs[-1], width, c.D, c.degrees, rng) if base is None else base[i])
    return maskset_of(-1, m0, degs[1:])


def _mask_handles(model, row, masks: int, seed: int) -> list:
    """The masks of one observed pattern: bank indices (int) or MaskSets.

    Raises ValueError for a single-ordering model and a non-prefix pattern.
    """
    if is_order_agnostic(model):
        if masks < 1:
            raise ValueError(f"masks must be >= 1, got {masks}")
        return [observed_first_maskset(model, row, backend.host_rng(seed, k)) for k in range(masks)]
    if not np.array_equal(model.maskset_at(0).ordering <= row.sum(), row):  # observed: positions 1..|o|
        raise ValueError("this single-ordering model gives exact marginals only when the observed variables are "
                         f"a prefix of its ordering; {FIX_HINT}")
    return [0] if model.config.num_masks == 1 else model.eval_mask_indices(masks)


def completion_masksets(model, observed_row, masks: int = 16, seed: int = 0) -> list:
    """The K masks whose mixture :func:`log_marginal` and :func:`complete` use for one observed pattern.

    Parameters
    ----------
    model : made_np.model.MADE
    observed_row : array of bool, shape (D,)
    masks : int
        K for an order-agnostic model (ignored for a fixed single mask; at most the bank
        for a finite single-ordering bank).
    seed : int

    Returns
    -------
    list of made_np.masks.MaskSet
        Mask ``k`` of an order-agnostic model is ``observed_first_maskset(model, row,
        host_rng(seed, k))``; a single-ordering model's are masks of its own bank.

    Raises
    ------
    ValueError
        A single-ordering model and an observed set that is not a prefix of its ordering.
    """
    row = np.asarray(backend.to_host(observed_row), dtype=bool).reshape(-1)
    return [model.maskset_at(h) if isinstance(h, int) else h for h in _mask_handles(model, row, masks, seed)]


# --------------------------------------------------------------------------- per-variable terms


def _counts(masks, seed, batch_size) -> tuple:
    """The integer arguments of the functions below, checked (a negative ``batch_size`` used to
    return an unwritten buffer)."""
    return (check_int("masks", masks, 1, MAX_EVAL_MASKS), check_int("seed", seed, 0, MAX_SEED),
            check_int("batch_size", batch_size, 1))


def variable_log_probs(model, x, batch_size: int = 1000, context=None, mask=0):
    """``log p(x_d | x_<d)`` of every variable under ``mask``, in float64.

    The negated per-variable NLL of the model's head (``Head.nll_per_variable``) on float64
    logits, whatever the head: Bernoulli ``x z - softplus(z)`` (the stable softplus of
    docs/math.md Sec. 4); categorical, the stable ``log softmax`` of the variable's logits at
    ``x_d``; a real-valued head, its log-density (nats, data units).

    Parameters
    ----------
    model : made_np.model.MADE
    x : array on ``model.xp``, shape (N, D)
        Values of the model (int in 0..C-1 for a discrete head).
    batch_size : int
        Rows per forward pass.
    context : array, optional
        A conditional model's encoded context (:func:`made_np.checks.check_context`).
    mask : int or made_np.masks.MaskSet, default 0
        The mask (:meth:`~made_np.model.MADE.mask`): an index of the bank or a MaskSet.

    Arguments are not checked: the public functions below check theirs once.

    Returns
    -------
    array on ``model.xp``, float64, shape (N, D), nats (``<= 0``).
    """
    xp, y = model.xp, context
    masks = model._mask(mask)[1]
    out = xp.empty(x.shape, dtype=xp.float64, device=model.device)
    for s in backend.row_blocks(x.shape[0], batch_size):
        xb = x[s, ...]
        inputs = model.encode(xb)[0]
        z = xp.astype(model._forward_pass(inputs, masks, None if y is None else y[s, ...]), xp.float64)
        # the head's own per-variable NLL, in float64 (no branch on the head's name)
        out[s, ...] = -model.head.nll_per_variable(z, model.head.targets(model._standardise(xb), z))
    if model.head.real:  # in the data's units: each variable's log-determinant -log scale_d
        out -= model.xp.log(model.scale)
    return out


# --------------------------------------------------------------------------- inputs


def _inputs(model, x, observed, read_missing: bool = True):
    """``x`` on the device in the sampler's dtype, the host observed mask, and the groups of equal rows of it.

    With ``read_missing=False`` (marginals and completions) the missing entries may hold anything
    (-1, 255, NaN): they are set to class 0, which observed-first masks never read for
    ``p_k(x_o)`` and the sampler overwrites; otherwise every entry must be a value of the model."""
    xp, c = model.xp, model.config
    check_unmasked(x)  # before asarray drops the mask
    obs = np.asarray(backend.to_host(observed))
    x = xp.asarray(x, device=model.device)
    if obs.ndim != 2 or obs.shape[1] != c.D or tuple(x.shape) != obs.shape:
        raise ValueError(f"x and observed must both have shape (N, {c.D}), got {tuple(x.shape)} and {obs.shape}")
    if obs.dtype.kind not in "biuf" or not np.isin(obs, (0, 1)).all():
        raise ValueError("observed must hold 0 (missing) or 1 (observed) only")
    obs = obs.astype(bool)
    if not read_missing:
        x = xp.where(model._on_device(obs), x, 0)
    x = check_data(model, x, "x", where=None if read_missing else obs)
    xd = xp.astype(x, getattr(xp, model.head.sample_dtype))
    if obs.shape[0] == 0:
        return xd, obs, obs[:0], np.zeros(0, dtype=np.int64)
    patterns, inverse = np.unique(obs, axis=0, return_inverse=True)
    return xd, obs, patterns, inverse.reshape(-1)


def _groups(model, xd, y, patterns, inverse, masks: int, seed: int, progress=None):
    """``(row, rows, xg, yg, handles)`` per observed pattern: the pattern, its rows (host indices),
    their data and encoded context (device; ``yg`` None without a context) and its masks, built
    when the pattern is reached (one pattern's K masks in memory at a time, however many patterns
    there are); ``progress(rows done)`` after each. Raises ValueError as :func:`_mask_handles`."""
    xp = model.xp
    for g, row in enumerate(patterns):
        rows = np.flatnonzero(inverse == g)
        r = model._on_device(rows)
        yg = None if y is None else xp.take(y, r, axis=0)
        yield row, rows, xp.take(xd, r, axis=0), yg, _mask_handles(model, row, masks, seed)
        if progress is not None:
            progress(rows.size)


def _pattern_log_probs(model, xg, row, handles, batch_size, yg=None):
    """(m, K) device arrays ``log p_k(x_o)`` and ``log p_k(x_m | x_o)`` of the rows ``xg`` of one pattern."""
    xp = model.xp
    o = model._on_device(row)
    log_po = xp.zeros((xg.shape[0], len(handles)), dtype=xp.float64, device=model.device)
    log_pm = xp.zeros_like(log_po)
    for k, h in enumerate(handles):
        lp = variable_log_probs(model, xg, batch_size, yg, mask=h)
        log_po[:, k] = xp.sum(xp.where(o, lp, 0.0), axis=1)
        log_pm[:, k] = xp.sum(xp.where(o, 0.0, lp), axis=1)
    return log_po, log_pm


def _rows(model, rows, N: int):
    """``rows`` (host ints, increasing) of N as a boolean mask on the device: ``a[mask] = values`` writes the
    rows of ``values`` to them in order (the standard's assignment to chosen rows)."""
    mask = np.zeros(N, dtype=bool)
    mask[rows] = True
    return model._on_device(mask)


def mask_log_probs(model, x, observed, masks: int = 16, seed: int = 0, batch_size: int = 1000, context=None,
                   read_missing: bool = True, progress=None):
    """Per-mask ``log p_k(x_o)`` and ``log p_k(x_m | x_o)`` under the observed-first masks.

    Parameters
    ----------
    model : made_np.model.MADE
    x : array, shape (N, D), int in 0..C-1
        Values of every variable (the missing ones too: they enter ``log p_k(x_m | x_o)``).
    observed : array of bool, shape (N, D)
        True where observed.
    masks : int
        K (see :func:`completion_masksets`).
    seed : int
    batch_size : int
        Rows per forward pass.
    context : array, optional
        A conditional model's context of each row (:meth:`~made_np.model.MADE.encode_context`).
    read_missing : bool, default True
        False when only ``log_po`` is wanted: the missing entries are then never read (any
        value, -1 or NaN included), and ``log_pm`` is meaningless.
    progress : callable, optional
        ``progress(n)`` after each group of ``n`` rows sharing an observed pattern (rows with a
        pattern of their own, as random occlusions give, cost K forward passes each: a long
        run can show how far it is).

    Returns
    -------
    log_po : array on ``model.xp``, float64, shape (N, K)
        ``log p_k(x_o)``, nats: the sum of the observed variables' conditionals.
    log_pm : array on ``model.xp``, float64, shape (N, K)
        ``log p_k(x_m | x_o)``, nats: the sum of the missing ones'. ``log_po + log_pm``
        is ``log p_k(x)`` (the chain rule). K is 1 when N is 0.

    Raises
    ------
    ValueError
        Shapes differ, or a single-ordering model and a non-prefix observed set.
    """
    masks, seed, batch_size = _counts(masks, seed, batch_size)
    check_callable("progress", progress)
    xd, obs, patterns, inverse = _inputs(model, x, observed, read_missing)
    y, xp = check_context(model, context, obs.shape[0]), model.xp
    log_po = xp.zeros((obs.shape[0], mixture_size(model, masks)), dtype=xp.float64, device=model.device)
    log_pm = xp.zeros_like(log_po)
    for row, rows, xg, yg, handles in _groups(model, xd, y, patterns, inverse, masks, seed, progress):
        at = _rows(model, rows, obs.shape[0])
        log_po[at], log_pm[at] = _pattern_log_probs(model, xg, row, handles, batch_size, yg)
    return log_po, log_pm


def log_marginal(model, x, observed, masks: int = 16, seed: int = 0, batch_size: int = 1000, context=None,
                 progress=None):
    """``log p(x_o)``: the exact marginal of the observed entries under the mixture of K masks.

    ``log p(x_o) = logsumexp_k log p_k(x_o) - log K`` with observed-first masks
    (:func:`completion_masksets`; Germain et al. 2015, Secs. 4.1-4.2; Uria et al. 2014).

    Parameters
    ----------
    model : made_np.model.MADE
    x : array, shape (N, D), int in 0..C-1
        Only the observed entries matter.
    observed : array of bool, shape (N, D)
    masks : int
        K observed-first masks (order-agnostic models); a single-ordering model with a
        prefix observed set uses its own mask(s).
    seed : int
    batch_size : int
    context : array, optional
        A conditional model's context of each row: then ``log p(x_o | y)``.
    progress : callable, optional
        ``progress(n)`` after each group of ``n`` rows (:func:`mask_log_probs`).

    Returns
    -------
    array on ``model.xp``, float64, shape (N,), nats (0 for an empty observed set).

    Raises
    ------
    ValueError
        Shapes differ, or a single-ordering model and an observed set that is not a
        prefix of its ordering (the message names the fix: train order-agnostic).
    """
    check_model(model)
    log_po, _ = mask_log_probs(model, x, observed, masks, seed, batch_size, context, read_missing=False,
                               progress=progress)
    return logsumexp(model.xp, log_po) - math.log(log_po.shape[1])


def log_conditional(model, x, observed, masks: int = 16, seed: int = 0, batch_size: int = 1000, context=None,
                    progress=None):
    """``log p(x_m | x_o)``: the exact probability that :func:`complete` returns the completion ``x``.

    ``p(x_m | x_o) = sum_k w_k p_k(x_m | x_o) = sum_k p_k(x) / sum_k p_k(x_o)``.

    Parameters
    ----------
    model, x, observed, masks, seed, batch_size, context, progress
        As in :func:`log_marginal`; here the missing entries of ``x`` are the completion.

    Returns
    -------
    array on ``model.xp``, float64, shape (N,), nats.

    Raises
    ------
    ValueError
        As :func:`log_marginal`.
    """
    check_model(model)
    xp = model.xp
    log_po, log_pm = mask_log_probs(model, x, observed, masks, seed, batch_size, context, progress=progress)
    return logsumexp(xp, log_po + log_pm) - logsumexp(xp, log_po)


#: How :func:`complete` draws: ``fast`` the degree-ordered sampler from the observed prefix, ``naive`` the reference.
COMPLETION_METHODS = ("fast", "naive")
#: How :func:`impute` estimates a discrete entry from its draws (:func:`posterior_summary`): ``auto``
#: is the mean for real-valued data (a mixed head's discrete columns) and the mode for classes.
DISCRETE_ESTIMATES = ("auto", "mode", "mean")


def complete(model, x, observed, n: int, masks: int = 16, seed: int = 0, batch_size: int = 1000,
             context=None, method: str = "fast", progress=None):
    """Draw ``n`` exact completions ``x_m ~ p(x_m | x_o)`` of every row.

    For each completion a mask ``k`` is drawn with probability ``w_k = p_k(x_o) / sum_j
    p_j(x_o)``, then the missing variables are drawn one at a time in mask ``k``'s
    observed-first ordering, each from its conditional given the observed values and
    the variables drawn before it: ancestral sampling from the given prefix of the
    |o| observed positions (rows that share a pattern and a mask in one batch), by the
    degree-ordered sampler (``method="fast"``, the default) or the reference's one forward
    pass per missing position (``method="naive"``); the two draw the same completions for
    the same noise (docs/math.md Secs. 7 and 10). Observed entries are copied and never
    changed. Germain et al. 2015, Secs. 4.1-4.2; Uria et al. 2014.

    Parameters
    ----------
    model : made_np.model.MADE
    x : array, shape (N, D), int in 0..C-1
        Only the observed entries are read.
    observed : array of bool, shape (N, D)
    n : int
        Completions per row, ``>= 1``.
    masks : int
        K (see :func:`completion_masksets`).
    seed : int
        Seeds the masks (as :func:`log_marginal`), the choice of mask and the noise
        (``host_rng(seed, 1)``, drawn on the host so CPU and GPU agree).
    batch_size : int

    Returns
    -------
    completions : array on ``model.xp``, shape (N, n, D)
        The head's sample dtype (``Head.sample_dtype``): uint8 (Bernoulli), int64 in 0..C-1
        (categorical), float64 (a real-valued head).
    log_px_o : array on ``model.xp``, float64, shape (N,)
        ``log p(x_o)`` in nats, as :func:`log_marginal` with the same ``masks`` and ``seed``.

    Other parameters
    ----------------
    context : array, optional
        A conditional model's context of each row: completions of ``p(x_m | x_o, y)``.
    method : {"fast", "naive"}, default "fast"
        ``fast``: the degree-ordered sampler from the observed prefix
        (:func:`made_np.fast.sampler.sample_fast`, about one forward pass per group of rows
        sharing a pattern and a mask); ``naive``: one forward pass per missing position. The
        same seed gives the same completions (up to a draw within rounding of a
        conditional probability).
    progress : callable, optional
        ``progress(n)`` after each group of ``n`` rows sharing an observed pattern.

    Raises
    ------
    ValueError
        ``n < 1``, an unknown method, shapes differ, or a single-ordering model and a
        non-prefix observed set.
    """
    masks, seed, batch_size, draw = _completion_arguments(model, masks, seed, batch_size, method, progress)
    n = check_int("n", n, 1)
    xd, obs, patterns, inverse = _inputs(model, x, observed, read_missing=False)
    limits.check_api(limits.complete_parts(model.config, obs.shape[0], n, mixture_size(model, masks), "n =",
                                           "masks ="))
    y = check_context(model, context, obs.shape[0])
    return _completions(model, xd, obs, patterns, inverse, n, masks, seed, batch_size, y, draw, progress)


def _completion_arguments(model, masks, seed, batch_size, method, progress) -> tuple:
    """The checked arguments :func:`complete` and :func:`impute` share: the counts
    (:func:`_counts`) and the draw function of ``method``."""
    check_model(model)
    counts = _counts(masks, seed, batch_size)
    check_callable("progress", progress)
    return (*counts, sampling.METHODS[check_choice("completion method", method, COMPLETION_METHODS)])


def _completions(model, xd, obs, patterns, inverse, n, masks, seed, batch_size, y, draw, progress):
    """:func:`complete` of checked inputs (:func:`_inputs`), ``y`` the encoded context, ``draw`` a
    sampler of :data:`made_np.sampling.METHODS`."""
    xp, D, N = model.xp, model.config.D, obs.shape[0]
    rng = backend.host_rng(seed, 1)  # drawn on the host, for every row, before any pattern
    u_mask = rng.random((N, n))
    noise = rng.random((N, n, D))
    out = xp.reshape(xp.repeat(xd[:, None, :], n, axis=1), (N * n, D))  # completion j of row i: row i n + j
    log_px_o = xp.zeros(N, dtype=xp.float64, device=model.device)
    for row, rows, xg, yg, handles in _groups(model, xd, y, patterns, inverse, masks, seed, progress):
        log_po, _ = _pattern_log_probs(model, xg, row, handles, batch_size, yg)
        K = log_po.shape[1]
        log_px_o[_rows(model, rows, N)] = logsumexp(xp, log_po) - math.log(K)
        # choice of mask per (row, completion) on the host: inverse CDF of w
        lp = backend.to_host(log_po)
        w = np.exp(lp - lp.max(axis=1, keepdims=True))
        cdf = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
        choice = np.minimum((cdf[:, None, :] <= u_mask[rows][:, :, None]).sum(axis=2), K - 1)
        n_obs = int(row.sum())
        for k, h in enumerate(handles):
            i, j = np.nonzero(choice == k)
            if i.size == 0 or n_obs == D:
                continue
            at = _rows(model, rows[i] * n + j, N * n)  # increasing: rows, then completions
            X = out[at]  # (m, D) copy, observed entries set
            u = model._on_device(noise[rows[i], j])  # (m, D), indexed by variable
            yk = None if y is None else xp.take(y, model._on_device(rows[i]), axis=0)
            # under mask h (observed-first: the observed variables are positions 1..n_obs)
            out[at] = xp.astype(draw(model, u, yk, X, n_obs, h), X.dtype)
    return xp.reshape(out, (N, n, D)), log_px_o


# --------------------------------------------------------------------------- imputation


class Imputation(NamedTuple):
    """What :func:`impute` returns (a tuple: ``filled, std, draws = impute(...)``).

    Attributes
    ----------
    filled : array on ``model.xp``, float64, shape (N, D)
        The observed entries as given; each missing entry its estimate (:func:`posterior_summary`).
    std : array on ``model.xp``, float64, shape (N, D)
        The predictive standard deviation of each missing entry, in data units; 0 on observed entries.
    draws : array on ``model.xp``, shape (N, draws, D), or None
        Completions ``x ~ p(x_m | x_o)`` (the head's sample dtype), observed entries copied; None
        for ``draws=0``.
    """

    filled: object
    std: object
    draws: object


def posterior_summary(model, comps, discrete: str = "auto"):
    """The estimate and the standard deviation of every entry from S completions of each row.

    Real-valued heads (a class attribute ``real = True``) give the posterior mean, estimated by
    the sample mean ``x̄ = (1/S) sum_s x^(s)``. A discrete entry (a discrete head's, or a mixed
    head's discrete column) gets, by ``discrete``, the posterior **mode**, estimated by the most
    frequent drawn class or level (ties to the lower; for binary data the sample mean rounded,
    ties to 0): always a valid value; or the posterior **mean** ``x̄`` of its drawn values, the
    estimate of least expected squared error (a level between the levels; for classes the
    mean class index, meaningful where the classes are ordered or binary). ``auto``: the mean
    for a real-valued head, whose discrete columns are measured numbers (diabetes' sex, a 1-5
    scale) estimated like the real ones, and the mode for a discrete head, whose classes are
    labels. The spread is the sample standard deviation
    ``s = sqrt(sum_s (x^(s) - x̄)^2 / (S - 1))`` of the drawn values, for every head (binary:
    ``sqrt(p (1 - p) S / (S - 1))`` with ``p`` the drawn frequency of 1). docs/math.md Sec. 10,
    "Imputation".

    Parameters
    ----------
    model : made_np.model.MADE
        Gives the head and the classes ``C``.
    comps : array on ``model.xp``, shape (N, S, D), S >= 2
        Completions (:func:`complete`).
    discrete : {"auto", "mode", "mean"}, default "auto"
        The estimate of a discrete entry (:data:`DISCRETE_ESTIMATES`).

    Returns
    -------
    estimate, std : arrays on ``model.xp``, float64, shape (N, D)
    """
    xp = model.xp
    v = xp.astype(comps, xp.float64)
    std, mean, real = xp.std(v, axis=1, correction=1), xp.mean(v, axis=1), getattr(model.head, "real", False)
    if discrete == "mean" or (discrete == "auto" and real):
        return mean, std
    if not real:
        return _mode(xp, comps, range(model.config.classes)), std
    for d, levels in zip(model.head.discrete_columns, model.head.levels):  # a mixed head's: their mode
        mean[:, d] = _mode(xp, v[:, :, d], levels)
    return mean, std


def _mode(xp, comps, values):
    """The most frequent of ``values`` along axis 1 of ``comps`` (N, S, ...) (ties to the first), shape
    (N, ...) float64: a loop over the values, each a pass over ``comps``."""
    best = xp.zeros(comps.shape[:1] + comps.shape[2:], dtype=xp.float64, device=backend.device(comps))
    top = xp.full(best.shape, -1, dtype=xp.int64, device=backend.device(comps))
    for c in values:
        count = xp.astype(xp.count_nonzero(comps == c, axis=1), xp.int64)
        more = count > top
        best, top = xp.where(more, float(c), best), xp.where(more, count, top)
    return best


def impute(model, x, masks: int = 16, draws: int = 0, seed: int = 0, samples: int = 100,
           batch_size: int = 1000, context=None, method: str = "fast", progress=None,
           discrete: str = "auto") -> Imputation:
    """Fill the missing entries (NaN) of every row, with their predictive standard deviation.

    Each row's missing entries are completed ``S = max(samples, draws)`` times from the exact
    conditional ``p(x_m | x_o)`` of the mixture of K observed-first masks (:func:`complete`:
    a mask ``k`` drawn with weight ``w_k ∝ p_k(x_o)``, then ancestral sampling from the
    observed prefix), rows grouped by their missing pattern. From the S completions,
    :func:`posterior_summary` estimates each missing entry: the **posterior mean** for a
    real-valued head (``real = True``, a mixed head's discrete columns included), the
    **posterior mode** for a discrete head (the most frequent drawn class; for binary data, the
    mean rounded; ``discrete`` chooses either for the discrete entries), and its standard deviation.
    Monte Carlo error: the mean's standard error is ``std / sqrt(S)`` (docs/math.md Sec. 10,
    "Imputation").

    Parameters
    ----------
    model : made_np.model.MADE
    x : array-like, shape (N, D), float (integers as floats)
        NaN where an entry is missing; the observed entries must be values of the model
        (integers in 0..C-1 for a discrete head). A row may be all missing (it is drawn from
        the model) or all observed (copied).
    masks : int, default 16
        K (:func:`completion_masksets`).
    draws : int, default 0
        Completions returned per row (the first ``draws`` of the S).
    seed : int, default 0
        Seeds the masks, the mixture draws and the noise, as in :func:`complete`.
    samples : int, default 100
        Completions per row behind the estimates, ``>= 2`` (S is at least ``draws``).
    batch_size : int, default 1000
        Rows per forward pass.
    context : array, optional
        A conditional model's context of each row.
    method : {"fast", "naive"}, default "fast"
        The sampler (:data:`COMPLETION_METHODS`).
    progress : callable, optional
        ``progress(n)`` after each group of ``n`` rows sharing a missing pattern.
    discrete : {"auto", "mode", "mean"}, default "auto"
        The estimate of a discrete entry (a discrete head's, a mixed head's discrete columns):
        the posterior mode (a valid class or level) or mean (least expected squared error);
        ``auto``: the mean for a real-valued head, the mode for classes (:func:`posterior_summary`).

    Returns
    -------
    Imputation
        ``(filled, std, draws)``: float64 (N, D), float64 (N, D) (0 where observed), and
        (N, draws, D) or None.

    Raises
    ------
    ValueError
        ``x`` not (N, D) numbers or an observed value outside the model's, a count out of
        range, an unknown method or discrete estimate, a context that does not fit, a
        single-ordering model and a missing pattern whose observed variables are not a prefix
        of its ordering, or more memory than the limit allows (:func:`made_np.limits.complete_parts`).
    """
    masks, seed, batch_size, draw = _completion_arguments(model, masks, seed, batch_size, method, progress)
    draws, samples = check_int("draws", draws, 0), check_int("samples", samples, 2)
    check_choice("discrete estimate", discrete, DISCRETE_ESTIMATES)
    xp = model.xp
    x, observed = check_missing(model, x)
    xd, obs, _, _ = _inputs(model, x, observed, read_missing=False)
    S, N = max(samples, draws), obs.shape[0]
    limits.check_api(limits.complete_parts(model.config, N, S, mixture_size(model, masks), "samples =", "masks ="))
    y = check_context(model, context, N)
    comps = xp.repeat(xd[:, None, :], S, axis=1)  # (N, S, D): complete rows are their own completions
    todo = np.flatnonzero(~obs.all(axis=1))  # rows with a missing entry: only they cost forward passes
    if todo.size:
        patterns, inverse = np.unique(obs[todo], axis=0, return_inverse=True)
        r = model._on_device(todo)
        comps[_rows(model, todo, N)] = _completions(model, xp.take(xd, r, axis=0), obs[todo], patterns,
                                                    inverse.reshape(-1), S, masks, seed, batch_size,
                                                    None if y is None else xp.take(y, r, axis=0), draw, progress)[0]
    estimate, std = posterior_summary(model, comps, discrete)
    o = model._on_device(obs)
    return Imputation(xp.where(o, x, estimate), xp.where(o, 0.0, std), comps[:, :draws] if draws else None)


# --------------------------------------------------------------------------- occlusions


def occlusion_mask(kind: str, D: int, image_shape=None, N: int = 1, rng=None) -> np.ndarray:
    """Observed masks for completion experiments: which variables of each example are seen.

    The pattern of ``made-np complete --occlude KIND`` and ``made-np evaluate --occlude
    KIND``; pass the result as ``observed`` to :func:`complete` or :func:`log_marginal`.

    Parameters
    ----------
    kind : {"top", "bottom", "left", "right", "random:P"}
        ``top`` *hides* the top ``H // 2`` rows (observes the rest); ``bottom`` hides the
        bottom ``H // 2`` rows (for an odd H the middle row stays observed); ``left`` /
        ``right`` hide ``W // 2`` columns likewise; ``random:P`` hides each variable of each
        row independently with probability P, a number in [0, 1] (``random:0.5``).
        Lower case, as written here.
    D : int
        Number of variables (the length of a row).
    image_shape : tuple (H, W) of int, optional
        Row-major image layout of a row, ``H * W == D``, e.g. ``(28, 28)``; default: square
        (``H = W = sqrt(D)``) when D is a perfect square. Not used by ``random:P``.
    N : int, default 1
        Number of rows; the spatial kinds repeat one pattern, ``random:P`` draws each row.
    rng : numpy.random.Generator or int or None, optional
        The generator (or its seed) of ``random:P``; ``None``: fresh OS entropy, so the
        mask differs from call to call. Not used by the spatial kinds.

    Returns
    -------
    numpy.ndarray of bool, shape (N, D)
        A new array; True = observed, False = missing (to complete).

    Raises
    ------
    ValueError
        An unknown kind; for ``random:P``, a P that is not a number or lies outside
        [0, 1]; for a spatial kind, no ``image_shape`` and a D that is not a perfect
        square (the data are not images), or an ``image_shape`` whose ``H * W != D``.

    Examples
    --------
    >>> occlusion_mask("bottom", 4).astype(int)        # a 2 x 2 image: the top row observed
    array([[1, 1, 0, 0]])
    >>> occlusion_mask("left", 6, image_shape=(2, 3), N=2).astype(int)
    array([[0, 1, 1, 0, 1, 1],
           [0, 1, 1, 0, 1, 1]])
    """
    if kind.startswith("random:"):
        try:
            p = float(kind.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"occlusion {kind!r}: P must be a number, e.g. random:0.5") from None
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"occlusion {kind!r}: P must be in [0, 1]")
        return ~(np.random.default_rng(rng).random((N, D)) < p)  # a Generator is used as it is
    check_choice("occlusion", kind, OCCLUSIONS)
    if image_shape is None:
        s = math.isqrt(D)
        if s * s != D:
            raise ValueError(f"occlusion {kind!r} needs image_shape for D={D} (not a square): the data are not "
                             "images; use random:P, or give the observed entries (--observed FILE)")
        image_shape = (s, s)
    H, W = (int(v) for v in image_shape)
    if H * W != D:
        raise ValueError(f"image_shape {tuple(image_shape)} does not hold D={D} variables")
    hide = np.zeros((H, W), dtype=bool)
    hide[{"top": np.s_[:H // 2], "bottom": np.s_[H - H // 2:], "left": np.s_[:, :W // 2],
          "right": np.s_[:, W - W // 2:]}[kind]] = True
    return np.repeat(~hide.reshape(1, D), N, axis=0)
