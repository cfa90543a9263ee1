"""Data sets for MADE: the named sets and data files, loaded and checked (host-side NumPy only).

:func:`load_dataset` turns a short name or a path into a :class:`Dataset` with
train / valid / test splits of shape ``(N, D)``. Every problem with the input
is reported as a :class:`DataError` whose message is one line naming the file,
the key, what is wrong and what to do.

Data sets
---------
``"digits"``
    scikit-learn's bundled 8x8 digits (1797 images, no network), pixels 0..16
    binarized at ``>= 8``; shuffled with ``np.random.default_rng(seed)`` and
    split 1297 train / 250 valid / 250 test, in that order of the permutation.
``"binarized-mnist"`` (alias ``"mnist"``)
    ``binarized_mnist.npz`` (keys ``train_data``, ``valid_data``,
    ``test_data``; 50000 / 10000 / 10000 x 784), searched for in ``path``,
    ``$MADE_NP_DATA``, :func:`cache_dir` and ``../shared/data`` (relative to
    the current directory). ``fetch("binarized-mnist")`` downloads it.
``"2d"``
    100,000 samples ``(x1, x2)`` from a 200x200 table ``distribution.npy``
    (CS294-158, 2019, homework 1), split 72,000 / 8,000 / 20,000.
    ``fetch("2d")`` downloads the table.
``"wine"``, ``"breast-cancer"``, ``"diabetes"``, ``"iris"``, ``"digits-real"``
    real-valued tables bundled with scikit-learn (no network), in their own units, split
    80/10/10 at random by the data seed (seeds 0..4: the five splits of the benchmarks):
    wine 178 x 13 (144 / 17 / 17), breast-cancer 569 x 30 (457 / 56 / 56), diabetes 442 x 10
    (354 / 44 / 44; unscaled, so ``sex`` keeps its values 1 and 2), iris 150 x 4 (120 / 15 / 15;
    the features only), digits-real 1797 x 64 (1439 / 179 / 179; the 8x8 digits dequantized,
    ``(x + u) / 17`` with ``u ~ U[0, 1)``, so values lie in [0, 1)).
``"moons"``, ``"8gaussians"``, ``"checkerboard"``, ``"pinwheel"``, ``"2spirals"``
    the 2-D densities of the flow papers (:data:`TOYS`), 20,000 / 5,000 / 5,000 points generated
    from the data seed (no file).
a path
    an ``.npz`` with the three keys above (and, for ``context="file"``, the keys
    ``train_context``, ``valid_context``, ``test_context``), an ``.npy`` holding one ``(N, D)``
    array (split 80/10/10 with the seeded generator), or a directory holding
    Larochelle's ``binarized_mnist_{train,valid,test}.amat`` text files, or a ``.csv`` of
    comma-separated numbers (a header line optional) split as the ``.npy``.

Files are read by :mod:`made_np.npyio` (regular files only, headers checked before any data,
no pickles, sizes against the memory limit). Values that are all integers in
``0 .. MAX_CLASSES - 1`` are categorical data (``uint8``); a file with a value that is not an
integer, or a whole number outside that range (a count, a year, a price), is real-valued data
(``float64`` in its own units, ``classes == 0``; ``real=True`` takes any file so), which
must be finite (NaN only with ``allow_nan=True``) and vary in every column of the training split.
:mod:`made_np.download` fetches the named sets, verified.
"""
from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .backend import to_host
from .download import (AMAT_FILES, DIST_FILE, MNIST_FILE, SOURCES, SPLIT_KEYS, _REFETCH_FIX, _verify_cached_table,
                       _verify_mnist, cache_dir, fetch, fetch_binarized_mnist)  # noqa: F401 (made_np.data.fetch)
from .checks import MAX_SEED, check_bool, is_int
from .npyio import DataError, expand_path, magic, read_csv, read_npy, read_npz, read_text_matrix

CONTEXT_KEYS = ("train_context", "valid_context", "test_context")
#: What a data set's context may be (``load_dataset(context=...)``, ``made-np train --context``):
#: none; the digit ``labels``; the ``*_context`` keys of an .npz ``file``.
CONTEXT_SOURCES = ("none", "labels", "file")
DIGITS_SPLIT = (1297, 250, 250)
N_2D_SAMPLES = 100_000
#: Real-valued tables bundled with scikit-learn, split 80/10/10 by the data seed.
TABLES = ("wine", "breast-cancer", "diabetes", "iris", "digits-real")
#: The 2-D toy densities of FFJORD and neural spline flows, generated from the data seed.
TOYS = ("moons", "8gaussians", "checkerboard", "pinwheel", "2spirals")
TOY_SPLIT = (20_000, 5_000, 5_000)
NAMES = ("digits", "binarized-mnist", "mnist", "2d") + TABLES + TOYS
#: The named sets read from a file (``load_dataset(path=...)``, the cache, or the download), in every spelling.
PATH_NAMES = ("binarized-mnist", "binarized_mnist", "mnist", "2d")
#: A column of real-valued data whose values over all splits are at most this many distinct
#: numbers is reported as discrete (:attr:`Dataset.discrete_columns`), e.g. diabetes' ``sex``: a
#: density on so few values is unbounded (it can pile up on them), a softmax over them is not.
MAX_DISCRETE_VALUES = 10


def is_named(spec) -> bool:
    """Whether ``spec`` names a built-in data set (any case; ``binarized_mnist`` too) rather than a file."""
    return str(spec).lower() in NAMES + ("binarized_mnist",)


#: Largest number of categories a data set may have (values 0 .. MAX_CLASSES - 1).
#: Every value becomes a one-hot input and a softmax output of width
#: ``D * classes``; 256 covers 8-bit pixels and the 200-class 2-D table, and
#: anything larger is almost always IDs, counts or raw measurements, not categories.
MAX_CLASSES = 256


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train / valid / test splits of one data set, on the host.

    Attributes
    ----------
    name : str
        A name of :data:`NAMES`, or the file's stem.
    train, valid, test : numpy.ndarray
        ``(N, D)`` ``uint8`` arrays of values in ``0..classes-1``; for real-valued data
        (``classes == 0``) ``float64`` arrays in the data's own units (not standardised).
    classes : int
        2 for binary data, C (at most :data:`MAX_CLASSES`) for categorical data, 0 for
        real-valued data.
    image_shape : tuple of int or None
        ``(28, 28)`` for D = 784, ``(8, 8)`` for D = 64, ``(k, k)`` when D is a
        perfect square ``k * k`` (of integer data); ``None`` otherwise, and for real-valued
        data other than digits-real.
    true_density : numpy.ndarray or None
        For ``"2d"``: the ``(C, C)`` float64 table the samples were drawn from,
        normalised to sum to 1; ``None`` otherwise.
    spec : dict or None
        How to load it again (stored in checkpoints, read by ``made-np evaluate``):
        ``{"spec": name or absolute path, "path": data file or None, "seed": int, "context": str}``;
        set by :func:`load_dataset`.
    train_context, valid_context, test_context : numpy.ndarray or None
        The context (conditioning) of each row, aligned with the split: ``(N,)`` int64 class
        labels (one-hot encoded by the model) or ``(N, C)`` float64 rows (used as they are);
        ``None`` without a context.
    context_width : int
        0 without a context; the number of classes (labels) or C (rows).
    context_encoding : {"onehot", "raw"} or None
        How the model takes the context (:attr:`made_np.config.MADEConfig.context_encoding`).
    discrete_columns : tuple of int
        For real-valued data, the columns (counted from 0) whose values over all splits are at
        most :data:`MAX_DISCRETE_VALUES` distinct values (diabetes' ``sex``: ``(1,)``);
        ``()`` for integer data.
    columns : tuple of str
        The columns' names where known (a CSV header, scikit-learn's feature names), else ``()``.
    """

    name: str
    train: np.ndarray = field(repr=False)
    valid: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)
    classes: int
    image_shape: tuple | None
    true_density: np.ndarray | None = field(default=None, repr=False)
    spec: dict | None = field(default=None, repr=False)
    train_context: np.ndarray | None = field(default=None, repr=False)
    valid_context: np.ndarray | None = field(default=None, repr=False)
    test_context: np.ndarray | None = field(default=None, repr=False)
    context_width: int = 0
    context_encoding: str | None = None
    discrete_columns: tuple = ()
    columns: tuple = ()

    def context_of(self, split: str):
        """The context of ``split`` ("train", "valid" or "test"), or None."""
        return getattr(self, f"{split}_context")

    @property
    def D(self) -> int:
        """Number of dimensions (columns) of each example."""
        return int(self.train.shape[1])

    @property
    def is_real(self) -> bool:
        """True for real-valued data (``classes == 0``, float64 splits)."""
        return self.classes == 0

    @property
    def is_binary(self) -> bool:
        """True when every value is 0 or 1 (``classes == 2``)."""
        return self.classes == 2


SPLITS = ("train", "valid", "test")


def split_fingerprints(dataset, context: bool = False) -> dict:
    """The sha256 (hex) of each split's values, ``{"train": ..., "valid": ..., "test": ...}``
    (of its context rows instead with ``context=True``; empty when there is none).

    Stored with a run (``dataset.sha256`` and ``dataset.context_sha256`` of its checkpoint) so
    that resuming or evaluating it on a data file that has changed since is refused
    (:func:`check_same_data`) rather than done silently on other data. Hashes the shape and
    the values as ``uint8`` in C order (every split of integer data is ``uint8`` after loading;
    real-valued data and contexts as float64): about 0.2 s for binarized MNIST.
    """
    out, dtype = {}, np.float64 if context or getattr(dataset, "classes", 2) == 0 else np.uint8
    for split in SPLITS:
        a = getattr(dataset, f"{split}_context" if context else split, None)
        if a is None:
            continue
        h = hashlib.sha256(repr(tuple(a.shape)).encode())
        missing = not context and a.dtype.kind == "f" and bool(np.isnan(a).any())  # NaN entries: as float64
        for start in range(0, a.shape[0], 4096):  # row blocks: a Fortran-ordered split is not copied whole
            h.update(np.ascontiguousarray(a[start:start + 4096], dtype=np.float64 if missing else dtype).data)
        out[split] = h.hexdigest()
    return out


def class_counts(x, classes: int) -> np.ndarray:
    """How many rows of ``x`` have variable ``d`` in class ``c``: the marginal counts ``n_dc``.

    Parameters
    ----------
    x : array, shape (N, D), integers in ``[0, classes)`` (host or device)
        Data; read in blocks of about a million entries (one ``bincount`` each).
    classes : int
        ``C``, the classes per variable.

    Returns
    -------
    numpy.ndarray, shape (D, classes), int64
        ``n_dc``; each row sums to ``N``.
    """
    N, D = x.shape
    offset = np.arange(D, dtype=np.int64) * classes
    counts = np.zeros(D * classes, dtype=np.int64)
    step = max(1, (1 << 20) // max(D, 1))
    for start in range(0, N, step):
        block = to_host(x[start:start + step])
        if classes == 2:  # binary data: the ones are a column sum, the zeros the rest (a quarter of the time)
            ones = block.sum(axis=0, dtype=np.int64)
            counts += np.stack([block.shape[0] - ones, ones], axis=1).ravel()
        else:
            counts += np.bincount((np.asarray(block, dtype=np.int64) + offset).ravel(), minlength=D * classes)
    return counts.reshape(D, classes)


def split_sizes(dataset) -> list:
    """Rows of the train, valid and test splits (0 for a split the data set lacks)."""
    return [int(getattr(dataset, s).shape[0]) if getattr(dataset, s, None) is not None else 0 for s in SPLITS]


def check_same_data(spec, dataset, where: str, source: str | None = None, fingerprints: dict | None = None) -> None:
    """Refuse ``dataset`` when it is not the data a run was trained on.

    Parameters
    ----------
    spec : dict or None
        The run's ``dataset`` record (:func:`made_np.checkpoint.load_checkpoint`): its ``sizes``
        (rows of train, valid, test), ``sha256`` and ``context_sha256``
        (:func:`split_fingerprints`) are compared when present (checkpoints written before the
        fingerprints have sizes only). A context is compared only when both the record and
        ``dataset`` have one.
    dataset : Dataset
    where : str
        What to name in the message (the checkpoint).
    source : str, optional
        Where ``dataset`` came from when not from the record (e.g. ``"--dataset-path X"``),
        named in the message instead of the recorded data set.
    fingerprints : dict, optional
        ``split_fingerprints(dataset)`` when the caller has it already.

    Raises
    ------
    DataError
        The rows of a split, or its values or context, differ.
    """
    spec = spec or {}
    what = spec.get("spec") or spec.get("name") or "(unnamed)"
    sizes, now = spec.get("sizes"), split_sizes(dataset)
    if source is None:
        lead, fix = f"{where}: the data set {what} ", "; restore the data it was trained on, or train a new run"
    else:
        lead, fix = f"{where}: {source} ", f"; give the file holding the data it was trained on ({what})"
    if sizes is not None and list(sizes) != now:
        raise DataError(f"{lead}has train/valid/test {'/'.join(map(str, now))} rows, but the run was trained on "
                        f"{'/'.join(map(str, sizes))}{fix}")
    for key, context in (("sha256", False), ("context_sha256", True)):
        stored = spec.get(key)
        if not stored:
            continue
        current = split_fingerprints(dataset, context) if context or fingerprints is None else fingerprints
        changed = [s for s in SPLITS if s in stored and s in current and stored[s] != current[s]]
        if changed:
            names = changed[0] if len(changed) == 1 else ", ".join(changed[:-1]) + " and " + changed[-1]
            part = "context of the " if context else ""
            raise DataError(f"{lead}differs from the data the run was trained on: the {part}{names} "
                            f"split{'s' if len(changed) > 1 else ''} (content sha256){fix}")




def _missing(p: Path, name=None, fix: str = "") -> str:
    """Why ``p`` (given as ``name``) cannot be read: absent, or a link to nothing."""
    if p.is_symlink():
        return f"{p}: a symbolic link to a missing file (or a loop of links); give the file itself"
    return f"{name or p}: no such file or directory{fix}"


def find_data_file(filename: str, path, fix: str = "pass the file's path") -> Path:
    """Locate ``filename``: an explicit ``path`` wins (file or folder), else the first of
    ``$MADE_NP_DATA``, :func:`cache_dir` and ``../shared/data`` that holds it."""
    if path is not None:
        p = expand_path(path)
        if not p.exists():
            raise DataError(_missing(p))
        return p / filename if p.is_dir() and (p / filename).is_file() else p
    dirs = [expand_path(os.environ["MADE_NP_DATA"])] if os.environ.get("MADE_NP_DATA") else []
    dirs += [cache_dir(), Path.cwd().parent / "shared" / "data"]
    found = next((d / filename for d in dirs if (d / filename).is_file()), None)
    if found is None:
        raise DataError(f"{filename} not found (looked in {', '.join(map(str, dirs))}); {fix}")
    return found


def _in_cache(file: Path) -> bool:
    """True when ``file`` sits directly in :func:`cache_dir` (written only by :func:`fetch`)."""
    try:
        return file.parent.resolve() == cache_dir().resolve()
    except OSError:
        return False


# --------------------------------------------------------------------------- checks


def _check_shape(arr: np.ndarray, file, what: str) -> np.ndarray:
    """Check one split's dtype (numbers) and shape (2-D, rows, columns). Returns it (bool -> uint8)."""
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{file}: {what} has dtype {arr.dtype}; expected integers or floats")
    if arr.ndim != 2:
        fix = ("; one row per example and one column per variable: reshape it to (N, D) (a single "
               "variable: (N, 1))") if arr.ndim == 1 else "; expected (N, D): one row per example, one column per variable"
        raise DataError(f"{file}: {what} is not 2-D (shape {arr.shape}){fix}")
    if arr.shape[0] == 0:
        raise DataError(f"{file}: {what} has zero rows (shape {arr.shape}); every split needs examples")
    if arr.shape[1] == 0:
        raise DataError(f"{file}: {what} has zero columns (shape {arr.shape}); expected at least one variable per row")
    return arr


#: How data with missing entries (NaN) train: on each row's observed entries.
TRAIN_ON_OBSERVED = "train on the observed entries (made-np train --allow-missing; load_dataset(..., allow_nan=True))"


def _check_array(arr: np.ndarray, file, what: str, names=(), lines=None, allow_nan: bool = False) -> np.ndarray:
    """Check one split of category indices (whole numbers 0 .. MAX_CLASSES - 1, as :func:`is_real`
    leaves them): 2-D, rows, no inf, no NaN unless ``allow_nan`` (then no row all missing).
    Returns it (bool -> uint8). A bad value is named as :func:`_check_real` names it (:func:`_at`:
    a text file's line, the column's name)."""
    arr = _check_shape(arr, file, what)
    if arr.dtype.kind == "f":
        nan = not allow_nan and np.isnan(arr).any()
        fix = (f"drop or impute the missing entries, or {TRAIN_ON_OBSERVED}" if nan
               else "replace the infinite values by finite numbers or drop those rows")
        _refuse(arr, file, what, names, lines, (lambda: np.isinf(arr) if allow_nan else ~np.isfinite(arr),
                                                "NaN/inf", f"expected integers >= 0: {fix}"))
    return arr


def _refuse_blank_rows(arr, file, what: str, lines=None) -> None:
    """A data set's row with every entry missing (NaN) holds nothing to learn from or to score: DataError.
    (A table to impute may hold one: :func:`read_table`.)"""
    empty = np.flatnonzero(np.isnan(arr).all(axis=1)) if arr.dtype.kind == "f" else ()
    if len(empty):
        r = int(empty[0])
        raise DataError(f"{file}: {what} has {len(empty)} row{'s' if len(empty) != 1 else ''} with every entry missing "
                        f"(NaN), the first at {'row ' + str(r) if lines is None else 'line ' + str(lines[r])}: nothing "
                        "in such a row to learn from or to score; drop those rows")


def _refuse(arr, file, what: str, names, lines, *checks) -> None:
    """Raise DataError at the first of ``checks``, ``(mask of arr's bad values or None, label, fix)``
    with a bad value: how many, the first and where (:func:`_at`). The masks are made one at a
    time: a split may be large."""
    for bad, label, fix in checks:
        bad = bad()
        if bad is not None and bad.any():
            r, c = np.unravel_index(np.argmax(bad), arr.shape)
            n = int(np.count_nonzero(bad))
            raise DataError(f"{file}: {what} has {n} {label} value{'s' if n != 1 else ''}, the first "
                            f"{_fmt(arr[r, c])} at {_at(r, c, names, lines)}; {fix}")


def _fmt(value) -> str:
    value = value.item() if hasattr(value, "item") else value
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def is_real(arrays) -> bool:
    """Whether the arrays are real-valued data: floats with a finite value that is not an integer
    (NaN, a missing entry, and inf aside), or whole numbers that cannot be category indices (a value
    below 0 or from :data:`MAX_CLASSES` on: counts, years, prices, temperatures). The one rule of the
    loaders and the estimators."""
    def real(a):
        if a.dtype.kind in "iu":
            return a.size > 0 and (a.min() < 0 or a.max() >= MAX_CLASSES)
        return a.dtype.kind == "f" and bool(np.any(np.isfinite(a) & ((a != np.floor(a)) | (a < 0) | (a >= MAX_CLASSES))))
    return any(real(a) for a in arrays)


def _column(c: int, names=()) -> str:
    """``column c`` (counted from 0), with its name where known."""
    return f"column {c}" + (f" ('{names[c]}')" if len(names) > c else "")


def _at(r: int, c: int, names=(), lines=None) -> str:
    """Where entry ``(r, c)`` is: ``row r, column c`` (``line L`` of a text file), with the column's name."""
    return f"{'row ' + str(r) if lines is None else 'line ' + str(lines[r])}, {_column(c, names)}"


def _check_real(arr: np.ndarray, file, what: str, allow_nan: bool = False, names=(), lines=None) -> np.ndarray:
    """Check one split (or a whole file before its split) of real-valued data: numbers, 2-D,
    no infinite values, no NaN unless ``allow_nan``, none beyond float32's range (a float32
    model would see infinities). Returns it as float64."""
    arr = _check_shape(arr, file, what).astype(np.float64, copy=False)
    _refuse(arr, file, what, names, lines,
            (lambda: np.isinf(arr), "infinite", "replace them by finite numbers or drop those rows"),
            (lambda: None if allow_nan else np.isnan(arr), "missing (NaN)",
             f"drop those rows, fill them in, or {TRAIN_ON_OBSERVED}"),
            (lambda: np.abs(arr) > np.finfo(np.float32).max, "huge",
             f"values beyond float32's range (|x| > {np.finfo(np.float32).max:.3g}); rescale that column"))
    return arr


def find_discrete_columns(x) -> tuple:
    """The columns of real-valued rows ``x`` (N, D) float that hold at most :data:`MAX_DISCRETE_VALUES`
    distinct values (NaN, missing, aside; whole numbers or not: 1/2, 0.5/1.5, a 1-5 scale), as
    increasing ints (diabetes: ``(1,)``)."""
    distinct = 1 + np.count_nonzero(np.diff(np.sort(x, axis=0), axis=0) > 0, axis=0)  # NaN: not counted
    return tuple(int(c) for c in np.flatnonzero(distinct <= MAX_DISCRETE_VALUES))


def _split_rows(n: int, seed: int) -> tuple:
    """Row indices of a seeded random 80/10/10 split of ``n`` rows: ``n - 2 * (n // 10)``,
    ``n // 10`` and ``n // 10`` rows of ``np.random.default_rng(seed).permutation(n)``."""
    k, perm = n // 10, np.random.default_rng(seed).permutation(n)
    return perm[: n - 2 * k], perm[n - 2 * k : n - k], perm[n - k :]


def _make_dataset(name: str, splits: dict, file, allow_nan: bool = False, names=(), real: bool = False) -> Dataset:
    """Check the splits (``{label: array}``, train/valid/test order) and build a Dataset.

    Real-valued when ``real`` or :func:`is_real`: float64, ``classes == 0``, no column constant over
    the training split, :attr:`Dataset.discrete_columns` found over all splits. Else integer data:
    ``uint8``, or ``float64`` with NaN where missing (``allow_nan``, as :class:`made_np.MADEImputer`
    takes them)."""
    real = real or is_real(a for a in splits.values() if isinstance(a, np.ndarray))
    check = _check_real if real else _check_array
    arrays = [check(a, file, label, allow_nan=allow_nan, names=names) for label, a in splits.items()]
    widths = [a.shape[1] for a in arrays]
    if len(set(widths)) > 1:
        desc = ", ".join(f"{label} {w}" for label, w in zip(splits, widths))
        raise DataError(f"{file}: splits have different widths ({desc})")
    for label, a in zip(splits, arrays):
        _refuse_blank_rows(a, file, label)
    train, label = arrays[0], next(iter(splits))
    _refuse_unseen_columns(train, file, label, names)
    image_shape = square_image_shape(train.shape[1])
    if not real:
        top = max(float(np.nanmax(a)) for a in arrays)
        classes = 2 if top <= 1 else int(top) + 1  # <= MAX_CLASSES: is_real takes larger values as real
        missing = any(a.dtype.kind == "f" and np.isnan(a).any() for a in arrays)
        return Dataset(name, *(a.astype(np.float64 if missing else np.uint8, copy=False) for a in arrays), classes,
                       image_shape, columns=tuple(names))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():  # an all-NaN column: constant too
        warnings.simplefilter("ignore", RuntimeWarning)
        constant = ~(np.nanmax(train, axis=0) > np.nanmin(train, axis=0))
    if constant.any():
        c = int(np.argmax(constant))
        raise DataError(f"{file}: {_column(c, names)} of {label} is constant "
                        f"({_fmt(train[0, c])} in every row): a column of zero variance has no density to learn "
                        "and cannot be standardised; drop that column")
    return Dataset(name, *arrays, 0, image_shape, discrete_columns=find_discrete_columns(np.concatenate(arrays)),
                   columns=tuple(names))


#: The smallest side of a square image: a file of D = s * s columns with s >= this is taken for
#: images (a 4- or 9-column table is a table, not a 2 x 2 or 3 x 3 image).
MIN_IMAGE_SIDE = 4


def square_image_shape(D: int):
    """``(s, s)`` when ``D = s * s`` with ``s >= MIN_IMAGE_SIDE`` (the data may be images), else None."""
    s = math.isqrt(int(D))
    return (s, s) if s * s == D and s >= MIN_IMAGE_SIDE else None


def _refuse_unseen_columns(train, file, label: str, names=()) -> None:
    """A training column with no observed value (every entry NaN) has nothing to learn: DataError."""
    unseen = np.isnan(train).all(axis=0) if train.dtype.kind == "f" else ()
    if np.any(unseen):
        raise DataError(f"{file}: {_column(int(np.argmax(unseen)), names)} of {label} has no observed value (every "
                        "entry missing, NaN): nothing of it to learn; drop that column")


# --------------------------------------------------------------------------- file formats


def _npy(p: Path, label: str, fix: str) -> np.ndarray:
    """The array of the ``.npy`` file ``p``; any other file is ``<label>: not an .npy file<fix>``."""
    if magic(p, label) != b"\x93NUMPY":
        raise DataError(f"{label}: not an .npy file{fix}")
    return read_npy(p)


def read_array(path, what: str = "array") -> np.ndarray:
    """Read one array from a ``.npy`` file with the checks of :func:`load_dataset`.

    Only regular files are opened, the header is checked before any data is read, and
    pickled objects are refused. ``what`` names the array in error messages (e.g. an option).

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    DataError
        Missing file, not a regular file, not an .npy, or unreadable (one line).
    """
    p = expand_path(path)
    if not p.exists():
        raise DataError(f"{what} {_missing(p)}")
    return _npy(p, f"{what} {p}", " (save it with numpy.save)")


def read_table(path, what: str = "array") -> tuple:
    """Read rows that may hold missing entries (NaN) from a ``.npy`` or a ``.csv`` file.

    A ``.csv`` goes through :func:`made_np.npyio.read_csv` (comma separated, a header optional,
    an empty cell or ``nan`` missing), a ``.npy`` through :func:`read_array`. Infinite values and
    values beyond float32's range are refused here, named by line and column as the loaders name
    them (:func:`_check_real`); the others are the caller's model's to check.

    Parameters
    ----------
    path : str or Path
    what : str
        Names the file in error messages (an option such as ``--input``).

    Returns
    -------
    x : numpy.ndarray, float64, shape (N, D)
        A 1-D ``.npy`` is one row.
    columns : list of str or None
        The header's names (a ``.csv`` with a header), else None.

    Raises
    ------
    DataError
        Missing or unreadable file, another suffix, a cell that is neither a number nor empty,
        ragged rows, no rows, not numbers, an infinite or huge value; one line naming ``what`` and
        the file.
    """
    p = expand_path(path)
    label, lines = f"{what} {p}", None
    if not p.exists():
        raise DataError(f"{what} {_missing(p)}")
    if p.suffix.lower() == ".npy":
        x = _npy(p, label, " (save it with numpy.save)")
        if x.dtype.kind not in "biuf":
            raise DataError(f"{label}: has dtype {x.dtype}; expected numbers (NaN where missing)")
        x, columns = (x.reshape(1, -1) if x.ndim == 1 else x).astype(np.float64), None
    elif p.suffix.lower() == ".csv":
        try:
            x, lines, names = read_csv(p)
        except DataError as exc:
            raise DataError(f"{what} {exc}") from None
        columns = list(names) or None
    else:
        raise DataError(f"{label}: expected a .csv or .npy file")
    if x.ndim != 2 or x.size == 0:
        raise DataError(f"{label}: expected rows (N, D) with at least one value, got shape {x.shape}")
    return _check_real(x, label, "table", allow_nan=True, names=columns or (), lines=lines), columns


def _load_path(p: Path, seed: int, allow_nan: bool = False, real: bool = False) -> Dataset:
    """Load an .npz, an .npy, a .csv or a folder of .amat files (format read from the content;
    a .csv by its suffix)."""
    if p.is_dir():
        missing = [n for n in AMAT_FILES if not (p / n).exists()]  # others: require_regular
        if missing:
            raise DataError(f"{p}: not a data file, and the folder lacks {', '.join(missing)} "
                            "(expected .npz, .npy, or a folder of binarized_mnist_{train,valid,test}.amat)")
        return _make_dataset(p.name, {f"file {n}": read_text_matrix(p / n) for n in AMAT_FILES}, p, allow_nan,
                             real=real)
    head = magic(p)
    if head.startswith(b"PK"):
        return _make_dataset(p.stem, {f"key '{k}'": a for k, a in read_npz(p, SPLIT_KEYS).items()}, p, allow_nan,
                             real=real)
    names, lines = (), None
    if head == b"\x93NUMPY":
        arr = read_npy(p)
    elif p.suffix.lower() == ".csv":
        arr, lines, names = read_csv(p)
    else:
        raise DataError(f"{p}: not an .npz or .npy file (expected keys {', '.join(SPLIT_KEYS)} in an .npz, "
                        "one (N, D) array in an .npy or a .csv, or a folder of binarized_mnist_{train,valid,test}.amat)")
    arr = (_check_real(arr, p, "array", allow_nan, names, lines) if real or is_real([arr])
           else _check_array(arr, p, "array", names, lines, allow_nan))
    _refuse_blank_rows(arr, p, "array", lines)
    n = arr.shape[0]
    if n < 10:
        raise DataError(f"{p}: array has only {n} row{'s' if n != 1 else ''}; need at least 10 to split 80/10/10")
    parts = _split_rows(n, seed)
    return _make_dataset(p.stem, {f"array ({s} part)": arr[i] for s, i in zip(SPLITS, parts)}, p, allow_nan, names, real)


# --------------------------------------------------------------------------- contexts


def with_context(ds: Dataset, train, valid, test, where: str = "context") -> Dataset:
    """``ds`` with a context per row of each split, checked.

    Parameters
    ----------
    ds : Dataset
    train, valid, test : array-like
        Either all 1-D integer class labels ``(N_split,)`` (values >= 0; the context is
        one-hot over ``max + 1`` classes, at most :data:`MAX_CLASSES`) or all 2-D finite
        float rows ``(N_split, C)`` (used as they are). Integer-valued floats count as labels
        when 1-D.
    where : str
        Names the source in error messages.

    Returns
    -------
    Dataset
        With ``*_context`` (int64 labels or float64 rows), ``context_width`` and
        ``context_encoding`` ("onehot" or "raw").

    Raises
    ------
    DataError
        Rows that do not match the splits, mixed or wrong shapes, non-finite, negative,
        non-integer labels, or too many classes.
    """
    arrays = {split: np.asarray(a) for split, a in zip(SPLITS, (train, valid, test))}
    for split, a in arrays.items():
        what = f"{where}: {split} context"
        if a.dtype.kind not in "biuf":
            raise DataError(f"{what} has dtype {a.dtype}; expected integers (class labels) or floats")
        if a.ndim not in (1, 2):
            raise DataError(f"{what} must be (N,) class labels or (N, C) rows, got shape {a.shape}")
        n = getattr(ds, split).shape[0]
        if a.shape[0] != n:
            raise DataError(f"{what} has {a.shape[0]} rows, but the {split} data has {n}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise DataError(f"{what} has NaN/inf values")
        if a.size and np.abs(a).max() > np.finfo(np.float32).max:  # inf once a float32 model casts them
            raise DataError(f"{what} has values beyond float32's range (|y| up to {np.abs(a).max():.3g}); rescale them")
    dims = {a.ndim for a in arrays.values()}
    if len(dims) != 1:
        raise DataError(f"{where}: the splits mix (N,) labels and (N, C) rows")
    if dims == {1}:
        for split, a in arrays.items():
            if (a < 0).any() or (a != np.round(a)).any():
                raise DataError(f"{where}: {split} context labels must be integers >= 0")
        classes = int(max(int(a.max()) for a in arrays.values() if a.size)) + 1
        if classes > MAX_CLASSES:
            raise DataError(f"{where}: {classes} context classes; at most {MAX_CLASSES} (one-hot encoded); "
                            "give (N, C) float rows instead")
        dtype, width, encoding = np.int64, classes, "onehot"
    else:
        widths = {a.shape[1] for a in arrays.values()}
        if len(widths) != 1 or 0 in widths:
            raise DataError(f"{where}: context rows must have the same width > 0 in every split, got {sorted(widths)}")
        dtype, width, encoding = np.float64, widths.pop(), "raw"
    return replace(ds, **{f"{k}_context": a.astype(dtype) for k, a in arrays.items()}, context_width=width,
                   context_encoding=encoding)


# --------------------------------------------------------------------------- named sets


def _load_digits(seed: int, labels: bool = False) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data >= 8).astype(np.uint8)  # (1797, 64), pixels 0..16
    cuts = np.split(np.random.default_rng(seed).permutation(x.shape[0]), np.cumsum(DIGITS_SPLIT)[:2])
    ds = Dataset("digits", *(x[c] for c in cuts), 2, (8, 8))
    if labels:  # the same rows of the labels: aligned with the shuffle and the split
        y = bunch.target.astype(np.int64)
        ds = with_context(ds, *(y[c] for c in cuts), where="digits labels")
    return ds


def _load_sklearn_table(name: str, seed: int) -> Dataset:
    """One of :data:`TABLES`: scikit-learn's bundled data, split 80/10/10 by :func:`_split_rows`."""
    from sklearn import datasets

    if name == "digits-real":  # dequantized: (x + u) / 17 with u ~ U[0, 1), the noise drawn from the seed
        x = datasets.load_digits().data
        x, names = (x + np.random.default_rng([seed, 1]).random(x.shape)) / 17.0, ()
    else:
        loader = {"wine": datasets.load_wine, "breast-cancer": datasets.load_breast_cancer,
                  "diabetes": lambda: datasets.load_diabetes(scaled=False), "iris": datasets.load_iris}[name]
        bunch = loader()
        x, names = bunch.data, tuple(map(str, bunch.feature_names))
    return _make_dataset(name, {split: x[i] for split, i in zip(SPLITS, _split_rows(x.shape[0], seed))}, name,
                         names=names, real=True)  # image_shape: digits-real's (8, 8) by its 64 columns


def _moons(rng, n: int) -> np.ndarray:
    """Two interleaved half circles: ``sklearn.datasets.make_moons(noise=0.1)`` (with angles drawn
    uniformly), then ``2 x + (-1, -0.2)`` as FFJORD: arcs of radius 2 about (-1, -0.2) and (1, 0.8)."""
    t, upper = rng.uniform(0.0, np.pi, n), rng.random(n) < 0.5
    x = np.where(upper[:, None], np.stack([np.cos(t), np.sin(t)], 1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
    return 2 * (x + 0.1 * rng.standard_normal((n, 2))) + np.array([-1.0, -0.2])


def _8gaussians(rng, n: int) -> np.ndarray:
    """Eight Gaussians of standard deviation 0.5 / 1.414 centred at ``4 (cos k pi/4, sin k pi/4) / 1.414``."""
    angle = rng.integers(0, 8, n) * (np.pi / 4)
    return (4 * np.stack([np.cos(angle), np.sin(angle)], 1) + 0.5 * rng.standard_normal((n, 2))) / 1.414


def _checkerboard(rng, n: int) -> np.ndarray:
    """Uniform on the 8 squares of side 2 of [-4, 4)^2 with ``floor(x1 / 2) + floor(x2 / 2)`` even."""
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2 + np.floor(x1) % 2
    return 2 * np.stack([x1, x2], 1)


def _pinwheel(rng, n: int) -> np.ndarray:
    """Five arms: ``f ~ N((1, 0), diag(0.3, 0.1)^2)`` rotated by ``-(2 pi k / 5 + 0.25 exp(f1))``, times 2."""
    f = rng.standard_normal((n, 2)) * np.array([0.3, 0.1]) + np.array([1.0, 0.0])
    angle = rng.integers(0, 5, n) * (2 * np.pi / 5) + 0.25 * np.exp(f[:, 0])
    c, s = np.cos(angle), np.sin(angle)
    return 2 * np.stack([f[:, 0] * c + f[:, 1] * s, f[:, 1] * c - f[:, 0] * s], 1)


def _2spirals(rng, n: int) -> np.ndarray:
    """Two spirals, one the other turned by 180 degrees: ``t = sqrt(u) 3 pi``, points
    ``(-t cos t, t sin t) + U[0, 0.5)^2``, either sign, over 3, plus ``N(0, 0.1^2)`` noise."""
    t = np.sqrt(rng.random(n)) * 3 * np.pi
    arm = np.stack([-np.cos(t) * t, np.sin(t) * t], 1) + 0.5 * rng.random((n, 2))
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)[:, None]
    return sign * arm / 3 + 0.1 * rng.standard_normal((n, 2))


def _load_toy(name: str, seed: int) -> Dataset:
    """One of :data:`TOYS`, generated: :data:`TOY_SPLIT` rows, each split an independent draw.

    The generators are those of FFJORD (Grathwohl et al. 2019, ``lib/toy_data.py``, also used by
    neural spline flows, Durkan et al. 2019), written as vectorised functions of
    ``np.random.default_rng(seed)``; each draws its component (moon, Gaussian, arm, spiral)
    per point rather than in equal blocks.
    """
    generate = {"moons": _moons, "8gaussians": _8gaussians, "checkerboard": _checkerboard,
                "pinwheel": _pinwheel, "2spirals": _2spirals}[name]
    x = generate(np.random.default_rng(seed), sum(TOY_SPLIT))
    return _make_dataset(name, dict(zip(SPLITS, np.split(x, np.cumsum(TOY_SPLIT)[:2]))), name, real=True)


def _load_table(file: Path) -> np.ndarray:
    """Read and validate a 2-D probability table; returns it as float64, normalised."""
    table = _npy(file, str(file), "; expected the (C, C) table distribution.npy")
    if table.dtype.kind not in "iuf":
        raise DataError(f"{file}: table has dtype {table.dtype}; expected numbers")
    if table.ndim != 2 or table.shape[0] != table.shape[1] or table.shape[0] < 2:
        raise DataError(f"{file}: table must be a square 2-D array of at least 2 x 2 (shape {table.shape})")
    if table.shape[0] > MAX_CLASSES:
        raise DataError(f"{file}: table is {table.shape[0]} x {table.shape[1]}; at most MAX_CLASSES = {MAX_CLASSES} "
                        "values per variable are supported (each is a one-hot input and a softmax output)")
    table = table.astype(np.float64)
    n_bad = int(table.size - np.count_nonzero(np.isfinite(table)))
    if n_bad:
        raise DataError(f"{file}: table has {n_bad} NaN/inf values")
    if (table < 0).any():
        raise DataError(f"{file}: table has negative value {_fmt(table.min())}")
    total = table.sum()
    if abs(total - 1.0) > 1e-4:
        raise DataError(f"{file}: table sums to {total:.6g}, not 1 (tolerance 1e-4)")
    return table / total


def _load_2d(path, seed: int) -> Dataset:
    file = find_data_file(DIST_FILE, path)
    if file.is_dir():
        raise DataError(f"{file}: folder has no {DIST_FILE}")
    if path is None and _in_cache(file):
        _verify_cached_table(file)
    p = _load_table(file)
    C = p.shape[0]
    flat = np.random.default_rng(seed).choice(C * C, size=N_2D_SAMPLES, p=p.ravel())
    x = np.stack([flat // C, flat % C], axis=1).astype(np.uint8)
    n_train_full = int(0.8 * N_2D_SAMPLES)  # 80 / 20 as the homework, then 10% of train -> valid
    return Dataset("2d", *np.split(x, [int(0.9 * n_train_full), n_train_full]), C, None, true_density=p)


def _load_mnist(path, seed: int) -> Dataset:
    file = find_data_file(MNIST_FILE, path, "run `made-np data fetch binarized-mnist` or pass the file's path")
    ds = _load_path(file, seed)
    cols = SOURCES["binarized-mnist"].shapes[0][1]
    if ds.D != cols or not ds.is_binary:
        raise DataError(f"{file}: not binarized MNIST: expected {cols} binary columns (values 0/1), found {ds.D} "
                        f"columns with {ds.classes} classes; give the binarized_mnist.npz file, or load this file "
                        "by its path instead of as binarized-mnist")
    if path is None and _in_cache(file):
        _verify_mnist(dict(zip(SPLIT_KEYS, (ds.train, ds.valid, ds.test))), SOURCES["binarized-mnist"], file,
                      fix=_REFETCH_FIX)
    return replace(ds, name="binarized-mnist")


def load_dataset(spec: str = "digits", *, path=None, seed: int = 0, context: str | None = None,
                 allow_nan: bool = False, real: bool = False) -> Dataset:
    """Load a data set by name or from a file.

    Parameters
    ----------
    spec : str
        ``"digits"`` (default), ``"binarized-mnist"`` / ``"mnist"``, ``"2d"``, a real-valued
        set of :data:`TABLES` or :data:`TOYS`, or a path to an ``.npz`` (keys ``train_data``,
        ``valid_data``, ``test_data``; any integer or float dtype), an ``.npy`` holding one
        ``(N, D)`` array, a ``.csv`` of comma-separated numbers (a header line optional), or
        a folder holding ``binarized_mnist_{train,valid,test}.amat``.
    path : str or os.PathLike, optional
        For ``"binarized-mnist"`` and ``"2d"``: the data file, or a folder
        holding it. When given it is the only place looked at; otherwise the
        search order is ``$MADE_NP_DATA``, :func:`cache_dir`, then
        ``../shared/data`` relative to the current directory; a file found in
        :func:`cache_dir` must match the checksums of :data:`SOURCES`.
        ``"binarized-mnist"`` requires 784 binary columns. Ignored for
        the other named sets and for a path ``spec``.
    seed : int, default 0
        Seed (``>= 0``) of ``np.random.default_rng`` for the digits shuffle,
        the 80/10/10 splits of the tables and of ``.npy``/``.csv`` files, digits-real's noise,
        and the ``"2d"`` and toy samples. Seeds 0..4 are the five splits of the benchmarks.
    context : {None, "none", "labels", "file"}
        A context (conditioning) per row (:func:`with_context`): ``"labels"`` the digit
        classes 0..9 of ``"digits"`` (shuffled and split with the images); ``"file"`` the
        keys ``train_context``, ``valid_context``, ``test_context`` of an ``.npz`` ``spec``
        ((N,) integer labels or (N, C) float rows). None or ``"none"``: no context.
    allow_nan : bool, default False
        Accept NaN (missing values; an empty CSV cell; integer data then come as ``float64``
        holding NaN): :func:`made_np.fit`
        trains on such rows' observed entries (order-agnostic models), :func:`made_np.evaluate`
        scores them, and imputation fills them. Recorded in the ``spec``, so a run's data reload alike.
    real : bool, default False
        Take a data file of whole numbers as real-valued (``float64``, ``classes == 0``), for the
        real heads (``gaussian``, ``mog``, ``mixed``), as files of fractions and of whole numbers
        outside ``0 .. MAX_CLASSES - 1`` always are (:func:`is_real`). The named sets keep their
        kind (digits-real is the real-valued digits).

    Returns
    -------
    Dataset
        Values 0/1 everywhere -> binary (``classes == 2``, ``uint8``); other
        integers in ``0 .. MAX_CLASSES - 1`` -> ``classes = max + 1`` over all splits.

        * digits: 1297 / 250 / 250 rows x 64, ``uint8``, image ``(8, 8)``.
        * binarized-mnist: 50000 / 10000 / 10000 x 784, ``uint8``.
        * 2d: 72000 / 8000 / 20000 x 2 samples ``(x1, x2)``, ``classes = 200``;
          the first 80% of the 100,000 samples are train + valid (valid is the
          last tenth of them), the last 20% test.
        * ``.npy``, ``.csv`` and the tables: permuted with the seeded generator, then
          ``N - 2 * (N // 10)`` train, ``N // 10`` valid, ``N // 10`` test rows.
        * Real-valued data (a value that is not an integer or not in ``0 .. MAX_CLASSES - 1``,
          a file with ``real=True``, and the sets of
          :data:`TABLES` and :data:`TOYS`): ``float64`` in the data's own units,
          ``classes == 0``, ``discrete_columns`` the columns of at most
          :data:`MAX_DISCRETE_VALUES` distinct values; tables of :data:`TABLES` as listed in
          the module's docstring, toys 20000 / 5000 / 5000 x 2, ``image_shape`` None (digits-real:
          ``(8, 8)``).

    Raises
    ------
    DataError
        A seed outside 0..MAX_SEED, unknown name, missing file, not a regular file (FIFO,
        device), unreadable format or a header that declares more data than
        the file holds, pickled objects, missing key, array not 2-D, zero rows
        or columns, splits of different widths; in integer data NaN/inf; a binarized-mnist file
        without 784 binary columns, a cached file that fails its checksums, or
        a ``"2d"`` table that is not square, finite, non-negative and summing
        to 1 within 1e-4; in real-valued data, an infinite value, NaN (unless ``allow_nan``), a
        value beyond float32's range, a column constant over the training split; in a ``.csv``, an empty file, a cell that is
        not a number, rows of different lengths (each named by its line and column); an
        unknown ``context``, ``"labels"`` for another data set than digits, ``"file"`` without an .npz holding the context keys, or an invalid context.
    """
    spec = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    if not isinstance(spec, str):
        raise DataError(f"the data set must be a name ({', '.join(NAMES)}) or a path, got {spec!r}")
    if not is_int(seed) or not 0 <= seed <= MAX_SEED:  # a checkpoint refuses larger seeds in its data spec
        raise DataError(f"data seed {seed!r} is not allowed: --data-seed must be in 0..{MAX_SEED} (an integer seed of "
                        "numpy.random.default_rng for the shuffles, splits and 2-D samples)")
    allow_nan, real = check_bool("allow_nan", allow_nan), check_bool("real", real)
    context = "none" if context is None else str(context).lower()
    if context not in CONTEXT_SOURCES:
        raise DataError(f"unknown context {context!r}: choose one of {', '.join(CONTEXT_SOURCES)}")
    ds = _load(spec, path, seed, context, bool(allow_nan), bool(real))
    where = {"spec": spec if is_named(spec) else str(expand_path(spec).resolve()),
             "path": str(expand_path(path).resolve()) if path else None, "seed": int(seed),
             "context": context, **({"real": True} if real else {}), **({"allow_nan": True} if allow_nan else {}),
             **({"columns": list(ds.columns)} if ds.columns and not is_named(spec) else {})}  # a file's header
    return replace(ds, spec=where)


def _load(spec: str, path, seed: int, context: str, allow_nan: bool = False, real: bool = False) -> Dataset:
    """:func:`load_dataset` without the checks of its arguments and the ``spec`` record."""
    name = spec.lower()
    if context == "labels" and name != "digits":
        raise DataError(f"{spec}: context 'labels' is known for digits only; for a data file put "
                        f"{', '.join(CONTEXT_KEYS)} in its .npz and use context 'file'")
    if context == "file" and is_named(name):
        raise DataError(f"{spec}: context 'file' needs a path to an .npz holding {', '.join(CONTEXT_KEYS)}")
    if name == "digits":
        return _load_digits(seed, labels=context == "labels")
    if name in PATH_NAMES:
        return _load_2d(path, seed) if name == "2d" else _load_mnist(path, seed)
    if name in TABLES:
        return _load_sklearn_table(name, seed)
    if name in TOYS:
        return _load_toy(name, seed)
    p = expand_path(spec)
    if not p.exists():
        raise DataError(_missing(p, spec, f" (expected one of {', '.join(NAMES)}, or a path to an "
                                          ".npz / .npy / .csv file or a folder of .amat files)"))
    if p.is_dir() and (p / MNIST_FILE).is_file():
        p = p / MNIST_FILE
    ds = _load_path(p, seed, allow_nan, real)
    if context != "file":
        return ds
    if not p.is_file() or not magic(p).startswith(b"PK"):
        raise DataError(f"{spec}: context 'file' needs an .npz data file holding the keys {', '.join(CONTEXT_KEYS)}")
    return with_context(ds, *read_npz(p, CONTEXT_KEYS).values(), where=str(p))
