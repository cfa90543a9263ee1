"""Data sets for MADE: loading, validation and download (host-side NumPy only).

:func:`load_dataset` turns a short name or a path into a :class:`Dataset` with
train / valid / test splits of shape ``(N, D)``. Every problem with the input
is reported as a :class:`DataError` whose message is one line naming the file,
the key and what is wrong.

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
    the current directory). :func:`fetch_binarized_mnist` downloads it.
``"2d"``
    100,000 samples ``(x1, x2)`` from a 200x200 table ``distribution.npy``
    (CS294-158, 2019, homework 1), split 72,000 / 8,000 / 20,000.
a path
    an ``.npz`` with the three keys above, an ``.npy`` holding one ``(N, D)``
    array (split 80/10/10 with the seeded generator), or a directory holding
    Larochelle's ``binarized_mnist_{train,valid,test}.amat`` text files.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

SPLIT_KEYS = ("train_data", "valid_data", "test_data")
MNIST_FILE = "binarized_mnist.npz"
DIST_FILE = "distribution.npy"
AMAT_FILES = tuple(f"binarized_mnist_{s}.amat" for s in ("train", "valid", "test"))
MNIST_NPZ_URL = "https://github.com/mgermain/MADE/releases/download/ICML2015/binarized_mnist.npz"
MNIST_AMAT_URLS = tuple(
    f"http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/{name}"
    for name in AMAT_FILES
)
MNIST_SHAPES = ((50000, 784), (10000, 784), (10000, 784))
DIGITS_SPLIT = (1297, 250, 250)
N_2D_SAMPLES = 100_000
NAMES = ("digits", "binarized-mnist", "mnist", "2d")


class DataError(ValueError):
    """Unusable data; the message is one user-facing line naming file, key and problem."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train / valid / test splits of one data set, on the host.

    Attributes
    ----------
    name : str
        ``"digits"``, ``"binarized-mnist"``, ``"2d"``, or the file's stem.
    train, valid, test : numpy.ndarray
        ``(N, D)`` arrays of values in ``0..classes-1``; ``uint8`` when
        ``classes <= 256``, else ``int32`` (``int64`` beyond ``2**31 - 1``).
    classes : int
        2 for binary data, C for categorical data.
    image_shape : tuple of int or None
        ``(28, 28)`` for D = 784, ``(8, 8)`` for D = 64, ``(k, k)`` when D is a
        perfect square ``k * k``; ``None`` otherwise.
    true_density : numpy.ndarray or None
        For ``"2d"``: the ``(C, C)`` float64 table the samples were drawn from,
        normalised to sum to 1; ``None`` otherwise.
    """

    name: str
    train: np.ndarray = field(repr=False)
    valid: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)
    classes: int
    image_shape: tuple | None
    true_density: np.ndarray | None = field(default=None, repr=False)

    @property
    def D(self) -> int:
        """Number of dimensions (columns) of each example."""
        return int(self.train.shape[1])

    @property
    def is_binary(self) -> bool:
        """True when every value is 0 or 1 (``classes == 2``)."""
        return self.classes == 2


# --------------------------------------------------------------------------- paths


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "made-np"


def cache_dir() -> Path:
    """Return the user cache folder for downloaded data (it may not exist yet).

    Returns
    -------
    pathlib.Path
        ``$XDG_CACHE_HOME/made-np`` when ``XDG_CACHE_HOME`` is set, else
        ``~/.cache/made-np``.
    """
    return _user_cache_dir()


def _search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("MADE_NP_DATA"):
        dirs.append(Path(os.environ["MADE_NP_DATA"]).expanduser())
    dirs.append(_user_cache_dir())
    dirs.append(Path.cwd().parent / "shared" / "data")
    return dirs


def _find(filename: str, path) -> Path | None:
    """Locate ``filename``: an explicit ``path`` wins (file or folder), else the search dirs."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir() and (p / filename).is_file():
            return p / filename
        if not p.exists():
            raise DataError(f"{p}: no such file or directory")
        return p
    for d in _search_dirs():
        if (d / filename).is_file():
            return d / filename
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --------------------------------------------------------------------------- checks


def _check_array(arr: np.ndarray, file, what: str) -> np.ndarray:
    """Check one split: 2-D, rows, finite, non-negative integers. Returns it (bool -> uint8)."""
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{file}: {what} has dtype {arr.dtype}; expected integers or floats")
    if arr.ndim != 2:
        raise DataError(f"{file}: {what} is not 2-D (shape {arr.shape})")
    if arr.shape[0] == 0:
        raise DataError(f"{file}: {what} has zero rows (shape {arr.shape})")
    if arr.dtype.kind == "f":
        n_bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if n_bad:
            raise DataError(f"{file}: {what} has {n_bad} NaN/inf values")
    if arr.dtype.kind != "u":
        neg = arr < 0
        if neg.any():
            r, c = np.unravel_index(np.argmax(neg), arr.shape)
            raise DataError(
                f"{file}: {what} has negative value {_fmt(arr[r, c])} at row {r}, column {c}; "
                "expected integers >= 0"
            )
    if arr.dtype.kind == "f":
        frac = arr != np.floor(arr)
        if frac.any():
            r, c = np.unravel_index(np.argmax(frac), arr.shape)
            raise DataError(
                f"{file}: {what} has non-integer value {_fmt(arr[r, c])} at row {r}, column {c}; "
                "expected integers >= 0"
            )
    return arr


def _fmt(value) -> str:
    value = value.item() if hasattr(value, "item") else value
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _image_shape(D: int) -> tuple | None:
    k = math.isqrt(D)
    return (k, k) if k * k == D else None


def _int_dtype(classes: int) -> np.dtype:
    if classes <= 256:
        return np.dtype(np.uint8)
    if classes <= 2**31 - 1:
        return np.dtype(np.int32)
    return np.dtype(np.int64)


def _make_dataset(name: str, splits: dict, file) -> Dataset:
    """Check the splits (``{label: array}``, train/valid/test order) and build a Dataset."""
    arrays = [_check_array(a, file, label) for label, a in splits.items()]
    widths = [a.shape[1] for a in arrays]
    if len(set(widths)) > 1:
        desc = ", ".join(f"{label} {w}" for label, w in zip(splits, widths))
        raise DataError(f"{file}: splits have different widths ({desc})")
    top = max(float(a.max()) for a in arrays)
    classes = 2 if top <= 1 else int(top) + 1
    if classes > 2**62:
        raise DataError(f"{file}: largest value {_fmt(top)} is too large for a category index")
    dtype = _int_dtype(classes)
    train, valid, test = (a.astype(dtype, copy=False) for a in arrays)
    return Dataset(name, train, valid, test, classes, _image_shape(widths[0]))


# --------------------------------------------------------------------------- file formats


def _load_npz(file: Path) -> dict:
    try:
        with np.load(file, allow_pickle=False) as z:
            missing = [k for k in SPLIT_KEYS if k not in z.files]
            if missing:
                found = ", ".join(z.files) or "none"
                raise DataError(f"{file}: missing key '{missing[0]}' (keys found: {found})")
            return {f"key '{k}'": z[k] for k in SPLIT_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{file}: cannot read as .npz ({_one_line(exc)})") from None


def _split_801010(arr: np.ndarray, seed: int) -> tuple:
    n = arr.shape[0]
    k = n // 10
    perm = np.random.default_rng(seed).permutation(n)
    return arr[perm[: n - 2 * k]], arr[perm[n - 2 * k : n - k]], arr[perm[n - k :]]


def _load_npy(file: Path, seed: int) -> dict:
    try:
        arr = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{file}: cannot read as .npy ({_one_line(exc)})") from None
    arr = _check_array(arr, file, "array")
    if arr.shape[0] < 10:
        raise DataError(
            f"{file}: array has only {arr.shape[0]} rows; need at least 10 to split 80/10/10"
        )
    train, valid, test = _split_801010(arr, seed)
    return {"array (train part)": train, "array (valid part)": valid, "array (test part)": test}


def _parse_amat(file: Path) -> np.ndarray:
    """Read a text matrix, one row a line; fast path for single-character 0/1 tokens."""
    raw = file.read_bytes()
    b = np.frombuffer(raw, dtype=np.uint8)
    digit = (b == ord("0")) | (b == ord("1"))
    newline = b == ord("\n")
    blank = newline | (b == ord(" ")) | (b == ord("\t")) | (b == ord("\r"))
    if digit.any() and (digit | blank).all() and not (digit[1:] & digit[:-1]).any():
        per_line = np.bincount(np.cumsum(newline)[digit])
        per_line = per_line[per_line > 0]
        if (per_line == per_line[0]).all():
            return (b[digit] - ord("0")).reshape(per_line.size, per_line[0])
    try:
        return np.loadtxt(file, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"{file}: cannot read as a text matrix ({_one_line(exc)})") from None


def _load_amat_dir(folder: Path) -> dict:
    missing = [n for n in AMAT_FILES if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"{folder}: not a data file, and the folder lacks {', '.join(missing)} "
            "(expected .npz, .npy, or a folder of binarized_mnist_{train,valid,test}.amat)"
        )
    return {f"file {name}": _parse_amat(folder / name) for name in AMAT_FILES}


def _load_path(p: Path, seed: int) -> Dataset:
    """Load an .npz, an .npy or a folder of .amat files (format read from the content)."""
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if p.is_dir():
        if (p / MNIST_FILE).is_file():
            return _load_path(p / MNIST_FILE, seed)
        return _make_dataset(p.name, _load_amat_dir(p), p)
    with open(p, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"PK"):
        return _make_dataset(p.stem, _load_npz(p), p)
    if magic == b"\x93NUMPY":
        return _make_dataset(p.stem, _load_npy(p, seed), p)
    raise DataError(
        f"{p}: not an .npz or .npy file (expected keys {', '.join(SPLIT_KEYS)} in an .npz, "
        "one (N, D) array in an .npy, or a folder of binarized_mnist_{train,valid,test}.amat)"
    )


# --------------------------------------------------------------------------- named sets


def _load_digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    x = (load_digits().data >= 8).astype(np.uint8)  # (1797, 64), pixels 0..16
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    n_train, n_valid, _ = DIGITS_SPLIT
    train = x[perm[:n_train]]
    valid = x[perm[n_train : n_train + n_valid]]
    test = x[perm[n_train + n_valid :]]
    return Dataset("digits", train, valid, test, 2, (8, 8))


def _load_table(file: Path) -> np.ndarray:
    """Read and validate a 2-D probability table; returns it as float64, normalised."""
    try:
        table = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{file}: cannot read as .npy ({_one_line(exc)})") from None
    if not isinstance(table, np.ndarray) or table.dtype.kind not in "iuf":
        raise DataError(f"{file}: expected one numeric .npy array, not an archive or {type(table)}")
    if table.ndim != 2 or table.shape[0] != table.shape[1] or table.size == 0:
        raise DataError(f"{file}: table must be a square 2-D array (shape {table.shape})")
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
    file = _find(DIST_FILE, path)
    if file is None:
        dirs = ", ".join(str(d) for d in _search_dirs())
        raise DataError(f"{DIST_FILE} not found (looked in {dirs}); pass the file's path")
    if file.is_dir():
        raise DataError(f"{file}: folder has no {DIST_FILE}")
    p = _load_table(file)
    C = p.shape[0]
    rng = np.random.default_rng(seed)
    flat = rng.choice(C * C, size=N_2D_SAMPLES, p=p.ravel())
    x = np.stack([flat // C, flat % C], axis=1).astype(_int_dtype(C))
    n_train_full = int(0.8 * N_2D_SAMPLES)  # 80 / 20 as the homework, then 10% of train -> valid
    n_train = int(0.9 * n_train_full)
    train, valid, test = x[:n_train], x[n_train:n_train_full], x[n_train_full:]
    return Dataset("2d", train, valid, test, C, None, true_density=p)


def _load_mnist(path, seed: int) -> Dataset:
    file = _find(MNIST_FILE, path)
    if file is None:
        dirs = ", ".join(str(d) for d in _search_dirs())
        raise DataError(
            f"{MNIST_FILE} not found (looked in {dirs}); run `made-np data fetch "
            "binarized-mnist` or pass the file's path"
        )
    return replace(_load_path(file, seed), name="binarized-mnist")


def load_dataset(spec: str = "digits", *, path=None, seed: int = 0) -> Dataset:
    """Load a data set by name or from a file.

    Parameters
    ----------
    spec : str
        ``"digits"`` (default), ``"binarized-mnist"`` / ``"mnist"``, ``"2d"``,
        or a path to an ``.npz`` (keys ``train_data``, ``valid_data``,
        ``test_data``; any integer or float dtype), an ``.npy`` holding one
        ``(N, D)`` array of integers, or a folder holding
        ``binarized_mnist_{train,valid,test}.amat``.
    path : str or os.PathLike, optional
        For ``"binarized-mnist"`` and ``"2d"``: the data file, or a folder
        holding it. When given it is the only place looked at; otherwise the
        search order is ``$MADE_NP_DATA``, :func:`cache_dir`, then
        ``../shared/data`` relative to the current directory. Ignored for
        ``"digits"`` and for a path ``spec``.
    seed : int, default 0
        Seed of ``np.random.default_rng`` for the digits shuffle, the ``.npy``
        split and the ``"2d"`` samples.

    Returns
    -------
    Dataset
        Values 0/1 everywhere -> binary (``classes == 2``, ``uint8``); other
        non-negative integers -> ``classes = max + 1`` over all splits.

        * digits: 1297 / 250 / 250 rows x 64, ``uint8``, image ``(8, 8)``.
        * binarized-mnist: 50000 / 10000 / 10000 x 784, ``uint8``.
        * 2d: 72000 / 8000 / 20000 x 2 samples ``(x1, x2)``, ``classes = 200``;
          the first 80% of the 100,000 samples are train + valid (valid is the
          last tenth of them), the last 20% test.
        * ``.npy``: permuted with the seeded generator, then
          ``N - 2 * (N // 10)`` train, ``N // 10`` valid, ``N // 10`` test rows.

    Raises
    ------
    DataError
        Unknown name, missing file, unreadable format, missing key, array not
        2-D, zero rows, splits of different widths, NaN/inf, negative or
        non-integer values, or a ``"2d"`` table that is not square, finite,
        non-negative and summing to 1 within 1e-4.
    """
    name = spec.lower()
    if name == "digits":
        return _load_digits(seed)
    if name in ("binarized-mnist", "binarized_mnist", "mnist"):
        return _load_mnist(path, seed)
    if name == "2d":
        return _load_2d(path, seed)
    p = Path(spec).expanduser()
    if not p.exists():
        raise DataError(
            f"{spec}: no such file or directory (expected one of digits, binarized-mnist, 2d, "
            "or a path to an .npz / .npy file or a folder of .amat files)"
        )
    return _load_path(p, seed)


# --------------------------------------------------------------------------- download


def _download(url: str, folder: Path, timeout: float) -> Path:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".download-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def _fetch_one(source, folder: Path, shapes, timeout: float) -> dict:
    """Download one source (an .npz URL or three .amat URLs); return checked uint8 splits."""
    urls = [source] if isinstance(source, str) else list(source)
    files = []
    try:
        for url in urls:
            files.append(_download(url, folder, timeout))
        if len(files) == 1:
            arrays = [a for a in _load_npz(files[0]).values()]
        else:
            arrays = [_parse_amat(f) for f in files]
    finally:
        for f in files:
            f.unlink(missing_ok=True)
    if len(arrays) != 3:
        raise DataError(f"expected 3 splits, got {len(arrays)}")
    splits = {}
    for key, arr, shape in zip(SPLIT_KEYS, arrays, shapes):
        if arr.shape != tuple(shape):
            raise DataError(f"{key} has shape {arr.shape}, expected {tuple(shape)}")
        if not ((arr == 0) | (arr == 1)).all():
            raise DataError(f"{key} has values other than 0 and 1")
        splits[key] = arr.astype(np.uint8)
    return splits


def fetch_binarized_mnist(
    cache_dir=None, *, urls=None, expected_shapes=MNIST_SHAPES, timeout: float = 60.0
) -> Path:
    """Download binarized MNIST into the cache as ``binarized_mnist.npz`` (uint8).

    The download goes to a temporary file in the cache folder; the result is
    checked, converted to ``uint8`` and moved into place with
    :func:`os.replace`, so a failed or interrupted download never leaves a
    half-written ``binarized_mnist.npz``. An existing file is replaced.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Target folder (created if needed); default :func:`cache_dir`.
    urls : sequence, optional
        Sources tried in order until one works. Each is either one URL of an
        ``.npz`` with keys ``train_data``, ``valid_data``, ``test_data``, or a
        tuple of three URLs of ``.amat`` text files (train, valid, test).
        Default: the MADE authors' ``.npz`` (:data:`MNIST_NPZ_URL`), then
        Larochelle's ``.amat`` files (:data:`MNIST_AMAT_URLS`).
    expected_shapes : sequence of three (rows, columns), default
        ``((50000, 784), (10000, 784), (10000, 784))``
        Shapes the train, valid and test splits must have.
    timeout : float, default 60
        Seconds to wait on a stalled connection.

    Returns
    -------
    pathlib.Path
        The written ``<cache_dir>/binarized_mnist.npz``.

    Raises
    ------
    DataError
        Every source failed (network error, unreadable file, wrong shape,
        values other than 0/1); the message lists each URL and its reason.
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else _user_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create cache folder ({_one_line(exc)})") from None
    sources = (MNIST_NPZ_URL, MNIST_AMAT_URLS) if urls is None else urls
    target = folder / MNIST_FILE
    errors = []
    for source in sources:
        try:
            splits = _fetch_one(source, folder, expected_shapes, timeout)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            label = source if isinstance(source, str) else " + ".join(source)
            errors.append(f"{label}: {_one_line(exc)}")
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".binarized_mnist-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez_compressed(out, **splits)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
    raise DataError("could not download binarized MNIST: " + "; ".join(errors))
