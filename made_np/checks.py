"""The boundary: every check of a caller's input to the model's passes, in one place.

A public entry point (``MADE.nll``, ``log_prob``, ``ensemble_nll``, ``logits``, ``mask``,
:func:`made_np.sampling.sample`, the samplers, the marginals and completions, ``evaluate``)
checks what it is given here, once, and hands clean arrays to the math: the passes, heads,
layers, optimisers and samplers' inner loops never validate (docs/architecture.md). Every
error is a ValueError whose message names the argument and the fix.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import backend
from .masks import MaskSet

#: Seeds are drawn from ``0 <= seed < 2**63`` (NumPy's SeedSequence takes any non-negative int;
#: the bound keeps seeds portable through JSON and int64).
MAX_SEED = 2**63 - 1


# --------------------------------------------------------------------------- values

def is_int(v) -> bool:
    """An integer (Python or NumPy), not a bool and not a float that happens to be whole."""
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def is_real(v) -> bool:
    """A real number (Python or NumPy), not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def short(v, limit: int = 60) -> str:
    """``repr(v)``, cut to ``limit`` characters."""
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(v) -> str:
    """``64.5 (float)``, ``'digits' (str)``: a value and its type, for error messages."""
    kind = {dict: "object", list: "list", str: "string", bool: "bool", type(None): "null"}.get(type(v))
    return f"{short(v)} ({kind or type(v).__name__})"


def range_message(name: str, value, lo, hi) -> str:
    """``name must be >= lo`` or ``name must be at most hi``, with the value given."""
    if lo is not None and value < lo:
        return f"{name} must be >= {lo}, got {value}"
    return f"{name} must be at most {hi}, got {short(value)}"


def check_bool(name: str, value) -> bool:
    """``value`` as a Python bool, for a flag of the API (``best``, ``allow_nan``, ``verbose``): a
    string such as ``"no"`` or a number would count as true.

    Raises
    ------
    ValueError
        Anything but ``True``, ``False`` or a NumPy bool, naming ``name``.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {describe(value)}")
    return bool(value)


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as a Python int, for an integer argument of the API (a batch size, a count of
    samples or masks, a mask index, a seed).

    Raises
    ------
    ValueError
        Naming ``name``: not an integer (a bool, a float such as 2.0, a string, None), or
        outside ``lo..hi``.
    """
    if not is_int(value):
        raise ValueError(f"{name} must be an integer, got {describe(value)}")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ValueError(range_message(name, value, lo, hi))
    return int(value)


def check_unit_interval(name: str, value) -> float:
    """``value`` as a float in [0, 1) (a momentum, an Adam beta)."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return float(value)


def check_positive(name: str, value) -> float:
    """``value`` as a float ``> 0`` (an epsilon, a learning rate)."""
    if not value > 0.0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


def check_optimizer(lr, weight_decay) -> None:
    """An optimiser's learning rate ``> 0`` and weight decay ``>= 0``."""
    check_positive("learning rate", lr)
    if not weight_decay >= 0:
        raise ValueError(f"weight decay must be >= 0, got {weight_decay}")


def check_choice(what: str, name, choices):
    """``name`` if it is one of ``choices`` (a registry's keys), else ValueError:
    ``unknown <what> 'name': choose one of a, b``."""
    if not isinstance(name, str) or name not in choices:
        raise ValueError(f"unknown {what} {name!r}: choose one of {', '.join(choices)}")
    return name


def check_seed(seed) -> int | None:
    """A seed ``0 <= seed <= MAX_SEED`` as an int, or None (fresh entropy)."""
    return None if seed is None else check_int("seed", seed, 0, MAX_SEED)


# --------------------------------------------------------------------------- the model and its masks

def check_model(model, name: str = "model") -> None:
    """Raise ValueError unless ``model`` is a MADE (anything with a ``config``, an array module
    ``xp`` and :meth:`~made_np.model.MADE.mask`); the ``(model, info)`` pair of ``load_checkpoint`` is named."""
    if not all(hasattr(model, a) for a in ("config", "xp", "mask")) or type(model.config).__name__ != "MADEConfig":
        hint = ": load_checkpoint returns (model, info), take its first value" if isinstance(model, tuple) else ""
        raise ValueError(f"{name} must be a made_np.MADE, got {type(model).__name__}{hint}")


def check_model_config(config) -> None:
    """Raise ValueError unless ``config`` is a :class:`made_np.config.MADEConfig`."""
    if type(config).__name__ != "MADEConfig":
        raise ValueError(f"config must be a made_np.MADEConfig, got {type(config).__name__}: build one with "
                         "MADEConfig(D=..., ...), MADEConfig.from_dict(d) or MADEConfig.for_data(data)")


def check_mask_index(index, num_masks: int) -> int:
    """``index`` as an int, after checking it names a mask of a bank of ``num_masks`` (0: no limit).

    Raises
    ------
    ValueError
        Not an integer, or outside ``0..num_masks - 1`` (``0..MAX_SEED`` for a bank without limit).
    """
    index = check_int("mask index", index)
    if not 0 <= index < (num_masks or MAX_SEED + 1):
        if num_masks == 1:
            raise ValueError(f"mask index {index} is outside the bank: this model has a single mask "
                             "(num_masks = 1), mask 0")
        bank = f"of {num_masks} masks" if num_masks else "(no limit)"
        raise ValueError(f"mask index {index} is outside the bank {bank}: give 0..{(num_masks or MAX_SEED + 1) - 1}")
    return index


def check_mask_indices(indices, num_masks: int, name: str = "mask_indices") -> list:
    """A non-empty sequence of mask indices of the bank, as a list of ints."""
    if isinstance(indices, (numbers.Number, str, bytes)) or not hasattr(indices, "__iter__"):
        raise ValueError(f"{name} must be a sequence of mask indices such as [0, 1, 2], got {indices!r}")
    indices = [check_mask_index(k, num_masks) for k in indices]
    if not indices:
        raise ValueError(f"{name} must name at least one mask index")
    return indices


def check_mask(model, which):
    """A mask of ``model`` as :meth:`~made_np.model.MADE.mask` takes it: a bank index (as an int)
    or a MaskSet of the model's widths (a bank's models only: a single-mask model has its
    weights masked in place, so another mask would not give the trained conditionals)."""
    c = model.config
    if not isinstance(which, MaskSet):
        return check_mask_index(which, c.num_masks)
    if c.num_masks == 1:
        raise ValueError("a MaskSet needs a bank of masks: a num_masks == 1 model has its weights masked in place")
    widths = tuple(len(m) for m in which.degrees)
    if which.D != c.D or widths != c.hidden:
        raise ValueError(f"the MaskSet has D={which.D}, hidden={widths}; the model has D={c.D}, hidden={c.hidden}")
    return which


def check_state(model, state: dict) -> None:
    """Every parameter of ``model`` is in ``state`` with its shape and finite in the model's dtype."""
    for name, p in zip(model.param_names, model.params):
        if name not in state:
            raise ValueError(f"parameter {name!r} missing from the state")
        a = backend.to_host(state[name])
        if tuple(a.shape) != tuple(p.shape):
            raise ValueError(f"parameter {name!r} has shape {tuple(a.shape)}, expected {tuple(p.shape)}")
        with np.errstate(over="ignore"):  # 1e300 is inf in float32: refused below, not warned about
            finite = a.dtype.kind in "biuf" and bool(np.isfinite(a.astype(model.config.dtype)).all())
        if not finite:
            raise ValueError(f"parameter {name!r} must hold finite numbers in the model's {model.dtype.name}, "
                             f"got dtype {a.dtype}" + ("" if a.dtype.kind not in "biuf" else " with NaN, inf or a "
                                                       "value beyond the dtype's range"))


# --------------------------------------------------------------------------- data

def check_unmasked(x, name: str = "x") -> None:
    """Refuse a masked array (:mod:`numpy.ma`) with masked entries: made an array, it loses its mask,
    and the values under the mask would be read as data.

    Raises
    ------
    ValueError
        Naming ``name``, the count of masked entries and the fix (``x.filled(np.nan)``: missing entries).
    """
    if isinstance(x, np.ma.MaskedArray) and np.ma.getmaskarray(x).any():
        raise ValueError(f"{name} is a masked array with {int(np.ma.getmaskarray(x).sum())} masked entries, whose "
                         "values would be read as data: pass x.filled(np.nan) to mark them missing (NaN), or drop them")


def check_rows(model, x, name: str = "x"):
    """``x`` as an array on the model's device of shape (N, D) and a real or integer dtype, its
    values unchecked (:func:`check_data` checks them; :func:`check_missing` first finds the NaN).

    Raises
    ------
    ValueError
        Naming ``name``: not an array or list of rows, ragged rows, a shape other than (N, D), a
        dtype that holds no numbers (strings, objects, complex), or masked entries (:func:`check_unmasked`).
    """
    xp, c = model.xp, model.config
    check_unmasked(x, name)
    if not (hasattr(x, "__array__") or hasattr(x, "__cuda_array_interface__") or isinstance(x, (list, tuple))):
        fix = ": pass x.toarray()" if hasattr(x, "toarray") else " (a generator or iterator: make it a list or an array)"
        raise ValueError(f"{name} must be an array of shape (N, {c.D}) (NumPy, CuPy, or a list of rows), "
                         f"got {type(x).__name__}{fix}")
    try:
        x = xp.asarray(x, device=model.device)
    except ValueError as exc:  # a ragged list of rows
        raise ValueError(f"{name} must be an array of shape (N, {c.D}): {exc}") from None
    if x.ndim != 2 or x.shape[1] != c.D:
        raise ValueError(f"{name} must have shape (N, {c.D}) for this model of D = {c.D}, got {tuple(x.shape)}")
    if backend.dtype_kind(xp, x.dtype) not in "biuf":
        expected = "real numbers" if model.head.real else f"integers in 0..{c.classes - 1}"
        raise ValueError(f"{name} has dtype {x.dtype}; expected {expected}")
    return x


def check_missing(model, x, name: str = "x"):
    """Rows with missing entries (NaN) as :func:`made_np.conditional.impute` takes them: ``x`` as
    float64 (N, D) on the model's device and its observed mask ``~isnan(x)`` on the host, after
    :func:`check_rows`. The observed values are checked later, once, with the mask
    (:func:`check_data` with ``where``).

    Raises
    ------
    ValueError
        As :func:`check_rows`.
    """
    x = model.xp.astype(check_rows(model, x, name), model.xp.float64)
    return x, ~backend.to_host(model.xp.isnan(x))


def check_data(model, x, name: str = "x", where=None, row0: int = 0):
    """``x`` as an integer array on the model's device, after checking that it is (N, D) data of
    this model: finite integers in ``0..classes-1`` (only where ``where`` is True, when given);
    for a real head finite float64 values (:func:`_real_values`; ``row0`` numbers the rows of a
    block in its messages).

    Raises
    ------
    ValueError
        Naming ``name``, the shape or the first kind of bad value. Without this check a value
        outside the classes silently gives a wrong likelihood (or an IndexError).
    """
    xp, c = model.xp, model.config
    x = check_rows(model, x, name)
    if model.head.real:
        x = _real_values(xp, x, name, None if where is None else _where(model, where), row0,
                         (model.shift, model.scale) if model.standardised else None)
        _check_levels(model, x, name, where, row0)
        return x
    kind = backend.dtype_kind(xp, x.dtype)
    if kind == "b":  # False/True as the classes 0/1
        x = xp.astype(x, xp.int64)
    v = x if where is None else x[_where(model, where)]
    if v.size:
        if kind == "f" and not bool(xp.all(xp.isfinite(v) & (v == xp.floor(v)))):
            raise ValueError(f"{name} must hold integers in 0..{c.classes - 1} (the model's {c.classes} "
                             f"classes), got NaN, inf or fractions")
        if float(xp.min(v)) < 0 or float(xp.max(v)) > c.classes - 1:
            raise ValueError(f"{name} must hold integers in 0..{c.classes - 1} (the model's {c.classes} "
                             f"classes), got values in {float(xp.min(v)):g}..{float(xp.max(v)):g}")
    return xp.astype(x, xp.int64) if kind == "f" else x


def _where(model, where):
    """A host or device bool mask ``where`` on the model's device."""
    return model.xp.asarray(where, dtype=model.xp.bool, device=model.device)


#: How far (in standard deviations of the training data) a real value may lie from the training
#: mean: beyond, its squared residual would overflow float32 (docs/math.md Sec. 13).
MAX_STANDARDISED = 1e12


def _real_values(xp, x, name: str, where=None, row0: int = 0, moments=None):
    """``x`` (N, D) of a real-head model as float64, after checking its entries (those where ``where``
    is True, when given) are finite numbers, and with ``moments = (shift, scale)`` (D,) within
    :data:`MAX_STANDARDISED` standard deviations of the shift; the message names the first bad
    row (counted from ``row0``: ``x`` may be a block of a split) and column; its dtype is
    :func:`check_rows`'s to check."""
    x = xp.astype(x, xp.float64, copy=False)
    checks = [(lambda: ~xp.isfinite(x), "real-valued data must be finite; drop or impute that row")]
    if moments is not None:
        checks.append((lambda: abs(x - moments[0]) > MAX_STANDARDISED * moments[1],
                       f"more than {MAX_STANDARDISED:.0e} standard deviations from the training data's mean; "
                       "check the file's units, or drop that row"))
    for bad, why in checks:
        with np.errstate(over="ignore", invalid="ignore"):  # an infinite distance is a far one
            bad = bad()
        if where is not None:
            bad &= where
        if bool(xp.any(bad)):
            row, col = (int(i) for i in np.argwhere(backend.to_host(bad))[0])
            raise ValueError(f"{name} has {float(x[row, col]):g} at row {row0 + row}, column {col}: {why}")
    return x


def _check_levels(model, x, name: str, where=None, row0: int = 0) -> None:
    """Every discrete column of a mixed head's data ``x`` (N, D) float64 holds one of its levels (where
    ``where`` is True, when given); the message names the first bad row, column and the levels."""
    head = model.head
    if not head.discrete_columns:
        return
    xp = model.xp
    bad = ~xp.any(head.level_values == xp.take(x, head._J, axis=1)[..., None], axis=-1)  # (N, k): no level equals it
    if where is not None:
        bad &= xp.take(_where(model, where), head._J, axis=1)
    if bool(xp.any(bad)):
        row, j = (int(i) for i in np.argwhere(backend.to_host(bad))[0])
        col = head.discrete_columns[j]
        levels = ", ".join(f"{v:g}" for v in head.levels[j])
        raise ValueError(f"{name} has {float(x[row, col]):g} at row {row0 + row}, column {col}, a discrete column "
                         f"whose levels are {{{levels}}}: give one of them, or leave that column continuous when "
                         "training (discrete_columns; made-np train --discrete-columns)")


def check_real_columns(xp, x, name: str = "dataset.train", skip=()) -> tuple:
    """The per-column mean and standard deviation of real-valued training data ``x`` (N, D) on the
    array module ``xp``, missing entries (NaN) left out, the columns ``skip`` (a mixed head's
    discrete ones) left as they are (mean 0, standard deviation 1),
    after checking that every column varies: a constant column cannot be standardised (its
    scale would be 0, its density infinite). Computed on ``x`` divided by each column's largest
    magnitude, so that values up to float64's limit (1e300) neither overflow the squares nor
    the sum.

    Returns
    -------
    (mean, std) : arrays, shape (D,), float64, on ``x``'s array module; ``std > 0``.

    Raises
    ------
    ValueError
        Naming the first constant column and the fix.
    """
    kept = ~np.isin(np.arange(x.shape[1]), list(skip))  # the columns to standardise
    seen = ~xp.isnan(x)
    varies = xp.max(xp.where(seen, x, -xp.inf), axis=0) > xp.min(xp.where(seen, x, xp.inf), axis=0)
    flat = np.flatnonzero(~backend.to_host(varies) & kept)
    if flat.size:
        raise ValueError(f"{name} column {int(flat[0])} is constant: a real-valued model cannot standardise it "
                         f"(variance 0); drop the column (or add noise to it)")
    kept = backend.to_device(kept, xp, device=backend.device(x))
    top = xp.where(kept, xp.max(xp.where(seen, xp.abs(x), 0.0), axis=0), 1.0)
    n = xp.sum(xp.astype(seen, xp.float64), axis=0)
    unit = xp.where(seen, x / top, 0.0)  # NaN-free: the missing entries add 0 to the sums
    mean = xp.sum(unit, axis=0) / n
    std = xp.sqrt(xp.sum(xp.where(seen, (unit - mean) ** 2, 0.0), axis=0) / n)
    return xp.where(kept, mean * top, 0.0), xp.where(kept, std * top, 1.0)


def check_context(model, context, n: int | None = None):
    """The context encoded as the network takes it (``model._encode_context(context, n)``), after
    checking it fits the model.

    Raises
    ------
    ValueError
        A context for an unconditional model, none for a conditional one, a label out
        of range, a shape that does not fit, or rows that are not finite in the model's dtype
        (not checked for rows already on a GPU in that dtype).
    """
    c, xp, dtype = model.config, model.xp, model.dtype
    if not c.context:
        if context is not None:
            raise ValueError("this model has no context inputs (config.context == 0): pass no context")
        return None
    if context is None:
        kind = "class labels" if c.context_encoding == "onehot" else "rows"
        raise ValueError(f"this model is conditional (context of width {c.context}, {c.context_encoding}): "
                         f"pass context ({kind})")
    if c.context_encoding == "onehot" and np.ndim(context) <= 1:
        labels = backend.to_host(context)  # on the host, checked before any cast (2**63 + 5 is not -2**63 + 5)
        if labels.dtype.kind not in "iub" and not (labels.dtype.kind == "f" and np.isfinite(labels).all()
                                                   and (labels == np.round(labels)).all()):
            raise ValueError(f"context labels must be integers in 0..{c.context - 1}, got {short(context)} "
                             f"(dtype {labels.dtype})")
        if labels.size and (labels.min() < 0 or labels.max() >= c.context):
            raise ValueError(f"context labels must lie in 0..{c.context - 1} (the model's {c.context} classes), got "
                             f"{int(labels.min())}..{int(labels.max())}")
        y = xp.asarray(labels.reshape(-1).astype("int64"), device=model.device)
    else:
        y = xp.asarray(context, device=model.device)
        y = xp.reshape(y, (1, -1)) if y.ndim == 1 else y
        if y.ndim != 2 or y.shape[1] != c.context:
            raise ValueError(f"context must have shape (n, {c.context}), got {tuple(y.shape)}")
        if backend.dtype_kind(xp, y.dtype) not in "biuf":  # strings, objects, complex numbers: not a context row
            raise ValueError(f"context rows must be real numbers, got dtype {y.dtype}")
        # Checked on the CPU always, on a GPU only when the rows are not yet in the model's dtype:
        # a training step's rows were encoded (and checked) once, and a check here would be a
        # host sync per step. (Rows handed in on the GPU already in the dtype go unchecked.)
        if y.dtype != dtype or backend.device_of(xp) == "cpu":
            top = float(xp.finfo(dtype).max)
            if not bool(xp.all(xp.abs(y) <= top)):  # NaN fails the comparison too
                raise ValueError(f"context rows must be finite numbers within {getattr(dtype, 'name', dtype)}'s range "
                                 f"(|y| <= {top:.3g}); got NaN, infinity or a larger value")
    if n is not None and y.shape[0] not in (1, n):
        raise ValueError(f"context has {y.shape[0]} rows for {n} examples")
    return model._encode_context(y, n)


def check_dataset(model, dataset) -> tuple:
    """The training and validation data of :func:`made_np.train.fit`: arrays (N, D) with rows, of
    values in the model's classes (a value outside them would train on a meaningless loss),
    checked in row blocks (no copy of a whole split); and a conditional model's context of each.
    Float rows may hold missing entries (NaN) for an order-agnostic model, none all missing.

    Returns
    -------
    (train_context, valid_context)
        Each encoded (:func:`check_context`), shape (N, context); None for an unconditional model.
    """
    for split in ("train", "valid"):
        x = getattr(dataset, split, None)
        if x is None:
            raise ValueError(f"dataset must have .train and .valid arrays (N, D), e.g. a made_np.data.Dataset; "
                             f"it has no .{split}")
        check_unmasked(x, f"dataset.{split}")
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) != 2 or shape[0] == 0:
            raise ValueError(f"dataset.{split} must be a non-empty array (N, D), got "
                             f"{'shape ' + str(tuple(shape)) if shape is not None else type(x).__name__}")
        rows = max(1, (1 << 20) // max(1, shape[1]))  # blocks of about a million entries
        for start in range(0, shape[0], rows):
            check_data_or_missing(model, np.asarray(backend.to_host(x[start:start + rows])), f"dataset.{split}", start)
    if model.head.real and not model.standardised:  # the splits against the standardisation fit will set
        moments = check_real_columns(model.xp, model._on_device(dataset.train, "float64"),
                                     skip=model.head.discrete_columns)
        for split in ("train", "valid", "test"):  # the test split too, when there is one: checked before training
            x = getattr(dataset, split, None)
            for start in range(0, 0 if x is None else x.shape[0], rows):
                block = model._on_device(x[start:start + rows], "float64")
                _real_values(model.xp, block, f"dataset.{split}", ~model.xp.isnan(block), start, moments)
    return tuple(_split_context(model, dataset, split) for split in ("train", "valid"))


def observed_entries(x):
    """``~isnan(x)`` (host bool, shape of ``x``) for host data with a NaN, else None (nothing missing)."""
    if getattr(x, "dtype", None) is None or x.dtype.kind != "f":
        return None
    seen = ~np.isnan(x)
    return None if seen.all() else seen


def _check_missing_rows(model, seen, name: str, start: int = 0) -> None:
    """Rows with missing entries, to train on or score: an order-agnostic model (a row's NLL is the
    marginal of its observed entries under observed-first masks) and no row with every entry missing."""
    c = model.config
    if not c.order_agnostic or c.num_masks == 1:
        raise ValueError(f"{name} has missing entries (NaN): training on them or scoring them needs an order-agnostic "
                         "model (num_masks != 1 and order_agnostic=True; made-np train: no --num-masks 1 nor "
                         "--no-order-agnostic), whose observed-first masks give their marginal")
    empty = np.flatnonzero(~seen.any(axis=1))
    if empty.size:
        raise ValueError(f"{name} row {start + int(empty[0])} has every entry missing (NaN): it holds nothing to "
                         f"learn from or to score; drop such rows ({empty.size} among rows "
                         f"{start}..{start + len(seen) - 1})")


def check_data_or_missing(model, x, name: str = "x", row0: int = 0) -> tuple:
    """:func:`check_data` of rows that may hold missing entries (NaN, float rows): allowed for an
    order-agnostic model, none all missing (:func:`_check_missing_rows`), the observed values checked
    (``row0`` numbers the rows of a block in the messages).

    Returns
    -------
    (x, observed)
        ``x`` on the model's device, 0 in its missing entries; ``observed`` (N, D) host bool, or None
        when nothing is missing.
    """
    xp = model.xp
    x = check_rows(model, x, name)
    nan = xp.isnan(x) if backend.dtype_kind(xp, x.dtype) == "f" else None
    if nan is None or not bool(xp.any(nan)):
        return check_data(model, x, name, row0=row0), None
    seen = ~backend.to_host(nan)
    _check_missing_rows(model, seen, name, row0)
    return check_data(model, xp.where(nan, xp.zeros_like(x), x), name, where=seen, row0=row0), seen


def _split_context(model, dataset, split: str):
    if not model.config.context:
        return None
    ctx = getattr(dataset, f"{split}_context", None)
    if ctx is None:
        raise ValueError(f"the model is conditioned on a context of width {model.config.context}, but the data "
                         f"set has no {split} context (load it with context='labels' or 'file')")
    n = getattr(dataset, split).shape[0]
    if len(ctx) != n:
        raise ValueError(f"{split} context has {len(ctx)} rows for {n} examples")
    return check_context(model, ctx, n)


def check_callable(name: str, fn) -> None:
    """``fn`` is None or callable (a progress or callback function, called only after work began)."""
    if fn is not None and not callable(fn):
        raise ValueError(f"{name} must be a function (or None), got {short(fn)}")


def check_train_config(cfg, name: str = "cfg", none: str = " for the recipe") -> None:
    """``cfg`` is None or a :class:`made_np.config.TrainConfig` (a dict is named with its fix)."""
    if cfg is not None and type(cfg).__name__ != "TrainConfig":
        fix = ": build one with TrainConfig.from_dict(d)" if isinstance(cfg, dict) else ""
        raise ValueError(f"{name} must be a made_np.TrainConfig (or None{none}), got {type(cfg).__name__}{fix}")


def check_path_name(path, name: str, fix: str) -> None:
    """``path`` is not an empty (or blank) name, which a path would take for the current folder."""
    if not str(path).strip():
        raise ValueError(f"{name} is an empty name; {fix}")


def check_fit_arguments(model, cfg, out_dir, callback, progress=None, dataset_spec=None) -> None:
    """What :func:`made_np.train.fit` is given, before anything is allocated or written: the kinds
    of its arguments."""
    check_model(model)
    check_train_config(cfg)
    check_callable("callback", callback)  # not after the first epoch
    check_callable("progress", progress)
    if dataset_spec is not None and not isinstance(dataset_spec, dict):
        raise ValueError(f"dataset_spec must be a dict such as {{'spec': 'digits', 'path': None, 'seed': 0}} (or None), "
                         f"got {short(dataset_spec)}")
    if out_dir is not None:
        check_path_name(out_dir, "out_dir", "give the run folder, or None to write nothing")


def check_noise(model, noise, n: int | None = None):
    """Given uniform noise (n, D), values in [0, 1) indexed by variable, on the model's device; ``n``,
    when given too, its number of rows.

    Raises
    ------
    ValueError
        Noise of another shape (or rows other than ``n``) or with values outside [0, 1) (NaN included).
    """
    xp = model.xp
    u = xp.asarray(noise, device=model.device)
    D = model.config.D
    if u.ndim != 2 or u.shape[1] != D or n is not None and u.shape[0] != n:
        raise ValueError(f"noise must have shape ({'n' if n is None else n}, {D}), got {tuple(u.shape)}"
                         + ("" if n is None else ": give n or noise, or both of the same rows"))
    if backend.dtype_kind(xp, u.dtype) not in "iuf":  # complex (its imaginary part dropped), strings
        raise ValueError(f"noise must hold real numbers in [0, 1), got dtype {u.dtype}")
    if u.size and not bool(xp.all((u >= 0) & (u < 1))):
        raise ValueError("noise must hold uniform values in [0, 1) (no NaN)")
    return u


def check_given(model, n: int, given, n_given) -> int:
    """A given prefix (:mod:`made_np.sampling`): ``n_given`` as an int.

    Raises
    ------
    ValueError
        ``n_given`` outside 0..D, or ``n_given > 0`` without ``given`` of shape (n, D).
    """
    D = model.config.D
    n_given = check_int("n_given", n_given, 0, D)
    if n_given and (given is None or tuple(model.xp.asarray(given).shape) != (n, D)):
        raise ValueError(f"given must have shape ({n}, {D}) when n_given > 0, got "
                         f"{None if given is None else tuple(given.shape)}")
    return n_given
