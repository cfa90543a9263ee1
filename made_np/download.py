"""Verified downloads of the fetchable data sets, with pooch.

:func:`fetch` downloads with pooch (https, or ``file://`` for mirrors; plain
http is refused) into a temporary name inside the cache folder, verifies the
result against :data:`SOURCES` (binarized MNIST by the sha256 of each split's
``uint8`` content, the 2-D table by its file sha256) and only then moves it
into place with :func:`os.replace`. A cached file that verifies is never
downloaded again, and a failed or mismatched download never replaces it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checks import check_bool
from .npyio import DataError, expand_path, one_line, read_npz, read_text_matrix, reading, require_regular

SPLIT_KEYS = ("train_data", "valid_data", "test_data")
MNIST_FILE = "binarized_mnist.npz"
DIST_FILE = "distribution.npy"
AMAT_FILES = tuple(f"binarized_mnist_{s}.amat" for s in ("train", "valid", "test"))
MNIST_NPZ_URL = "https://github.com/mgermain/MADE/releases/download/ICML2015/binarized_mnist.npz"
#: Larochelle's text files; ``{split}`` is ``train``, ``valid`` or ``test``.
MNIST_AMAT_URL = "https://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat"
DIST_URL = "https://github.com/mindis/berkeley-ul-hw-2019/raw/master/hw1/distribution.npy"
MNIST_SHAPES = ((50000, 784), (10000, 784), (10000, 784))
#: sha256 of ``np.ascontiguousarray(split, dtype=np.uint8).tobytes()`` per split: the
#: same for the MADE authors' float .npz and for Larochelle's .amat text files.
MNIST_SHA256 = {
    "train_data": "43490d4d6ac9002727af4426d8748609fdb7e4094fa65ad8d681ea60082a7a5a",
    "valid_data": "069b4f0beb389b776478c3e872b4df71c95ac4be64d7cbe6d32e24ebac8e6d5e",
    "test_data": "ca0294c3b8d984c7a1dc891015a8eea6f37bae59a34e35ea0fc8c47110a8dd86",
}
#: sha256 of the file ``distribution.npy`` (200 x 200 float32).
DIST_SHA256 = "e28ee3fc16edea32bddb599025ece56081582fe5719e3bc210bf537688e66d97"


def cache_dir() -> Path:
    """Return the user cache folder for downloaded data (it may not exist yet).

    Returns
    -------
    pathlib.Path
        ``$XDG_CACHE_HOME/made-np`` when ``XDG_CACHE_HOME`` is set, else
        ``~/.cache/made-np``.
    """
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "made-np"


_user_cache_dir = cache_dir  # fetch's argument cache_dir hides the function


@dataclass(frozen=True)
class Source:
    """Where a fetchable data set comes from and how a download is verified.

    Attributes
    ----------
    kind : str
        ``"file"``: the download is the cached file, checked by its file sha256.
        ``"mnist"``: an ``.npz`` with keys ``train_data``, ``valid_data``,
        ``test_data`` (any numeric dtype), or an ``.amat`` URL template holding
        ``{split}`` (``train``, ``valid``, ``test``); each split is checked for
        its shape, 0/1 values and the sha256 of its ``uint8`` C-order bytes,
        then the three are cached as one ``uint8`` ``.npz``.
    filename : str
        Name of the file in the cache folder.
    urls : tuple of str
        Default sources, tried in order (https, or ``file://``).
    sha256 : str or dict
        ``"file"``: the file's sha256 (hex). ``"mnist"``: ``{key: sha256}``.
    shapes : tuple of (rows, columns), optional
        ``"mnist"``: shapes of train, valid and test.
    """

    kind: str
    filename: str
    urls: tuple
    sha256: object
    shapes: tuple | None = None


#: The fetchable data sets. Tests (and mirrors of other data) may swap entries.
SOURCES = {
    "binarized-mnist": Source("mnist", MNIST_FILE, (MNIST_NPZ_URL, MNIST_AMAT_URL), dict(MNIST_SHA256), MNIST_SHAPES),
    "2d": Source("file", DIST_FILE, (DIST_URL,), DIST_SHA256),
}
FETCH_ALIASES = {"mnist": "binarized-mnist", "binarized_mnist": "binarized-mnist"}
_REFETCH_FIX = "delete it and run `made-np data fetch binarized-mnist`"
_MIRROR_FIX = "the source is not the published data; check the URL or use another mirror"


def _verify_mnist(splits: dict, src: Source, where, fix: str) -> dict:
    """Check shapes, 0/1 values and content sha256 of each split; return them as uint8."""
    out = {}
    for key, shape in zip(SPLIT_KEYS, src.shapes):
        arr = np.asarray(splits[key])
        if arr.shape != tuple(shape):
            raise DataError(f"{where}: key '{key}' has shape {arr.shape}, expected {tuple(shape)}; {fix}")
        if arr.dtype.kind not in "biuf" or not ((arr == 0) | (arr == 1)).all():
            raise DataError(f"{where}: key '{key}' has values other than 0 and 1; {fix}")
        u8 = np.ascontiguousarray(arr, dtype=np.uint8)
        digest = hashlib.sha256(u8.data).hexdigest()
        if digest != src.sha256[key]:
            raise DataError(f"{where}: key '{key}' fails its checksum (sha256 of the uint8 content {digest[:16]}..., "
                            f"expected {src.sha256[key][:16]}...); {fix}")
        out[key] = u8
    return out


def _verify_cached_table(file: Path, src: Source | None = None) -> None:
    src, h = src or SOURCES["2d"], hashlib.sha256()
    with reading(file) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if (digest := h.hexdigest()) != src.sha256:
        raise DataError(f"{file}: cached file fails its checksum (sha256 {digest[:16]}..., expected "
                        f"{src.sha256[:16]}...); delete it and run `made-np data fetch 2d`")


def _cached_ok(src: Source, target: Path) -> bool:
    """True when ``target`` exists and passes the checks of ``src``."""
    if not os.path.lexists(target):
        return False
    try:
        if src.kind == "file":
            _verify_cached_table(target, src)
        else:
            _verify_mnist(read_npz(target, SPLIT_KEYS), src, target, fix="")
    except (DataError, OSError):
        return False
    return True


def _check_url(url: str) -> str:
    """Return the scheme of ``url`` (``https`` or ``file``); refuse everything else."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("https", "file"):
        return scheme
    if scheme == "http":
        raise DataError(f"{url}: plain http:// downloads are refused (nothing protects them in transit); "
                        "use the https:// address or a file:// mirror")
    local = "file://" + str(expand_path(url).absolute()) if not scheme and url.strip() else "file:///path/to/file"
    raise DataError(f"{url or repr(url)}: unsupported URL (scheme {scheme or 'none'}); give an https:// URL or a "
                    f"file:// mirror such as {local}")


def _file_downloader(url, output_file, pooch=None):
    """pooch downloader for ``file://`` URLs (local mirrors, offline tests); :func:`pooch.retrieve` calls it
    with these three arguments (the ``check_only`` of ``Pooch.is_available`` is never asked for here)."""
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise DataError(f"{url}: file:// URL names host {parts.netloc!r}; use file:///absolute/path")
    src = Path(urllib.request.url2pathname(parts.path))
    require_regular(src)
    shutil.copyfile(src, output_file)  # pooch passes the name of its temporary file


def _download(url: str, folder: Path, fname: str, known_hash, progress: bool, timeout: float) -> Path:
    """Download ``url`` to ``folder / fname`` with pooch; every failure is a one-line DataError."""
    import pooch  # an install requirement, imported only to download
    downloader = _file_downloader if _check_url(url) == "file" else pooch.HTTPDownloader(  # its bar needs tqdm
        progressbar=bool(progress) and importlib.util.find_spec("tqdm") is not None, timeout=timeout)
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # pooch's INFO lines ("Downloading data from ...") are not ours
    try:
        return Path(pooch.retrieve(url, known_hash=known_hash, fname=fname, path=folder, downloader=downloader))
    except DataError as exc:
        raise DataError(f"{url}: download failed ({exc})") from None
    except Exception as exc:  # requests, OSError, pooch's hash check (ValueError)
        if known_hash and "does not match the known hash" in str(exc):
            raise DataError(f"{url}: the download fails its checksum (expected sha256 "
                            f"{known_hash.split(':')[-1][:16]}...); {_MIRROR_FIX}") from None
        raise DataError(f"{url}: download failed ({one_line(exc)})") from None
    finally:
        logger.setLevel(level)


def _fetch_into(src: Source, url: str, folder: Path, target: Path, progress: bool, timeout: float) -> None:
    """Download ``url`` into a temporary folder inside ``folder``, verify, then os.replace onto target."""
    with tempfile.TemporaryDirectory(dir=folder, prefix=f".{src.filename}.", suffix=".part",
                                     ignore_cleanup_errors=True) as tmp:
        tmpdir = Path(tmp)
        if src.kind == "file":
            os.replace(_download(url, tmpdir, "download", f"sha256:{src.sha256}", progress, timeout), target)
            return
        try:
            if "{split}" in url:
                files = [_download(url.replace("{split}", s), tmpdir, f"{s}.amat", None, progress, timeout)
                         for s in ("train", "valid", "test")]
                arrays = dict(zip(SPLIT_KEYS, (read_text_matrix(f) for f in files)))
            else:
                arrays = read_npz(_download(url, tmpdir, "download.npz", None, progress, timeout), SPLIT_KEYS)
        except DataError as exc:  # name the URL, not the temporary file
            msg = str(exc)
            for f in tmpdir.iterdir():
                msg = msg.replace(str(f), url)
            raise DataError(msg) from None
        arrays = _verify_mnist(arrays, src, url, fix=_MIRROR_FIX)
        np.savez_compressed(tmpdir / "verified.npz", **arrays)
        os.replace(tmpdir / "verified.npz", target)


def fetch(name: str, *, cache_dir=None, url=None, progress: bool = False, timeout: float = 60.0) -> Path:
    """Download a data set into the cache, verified, unless a verified copy is there already.

    Parameters
    ----------
    name : str
        ``"binarized-mnist"`` (aliases ``"mnist"``, ``"binarized_mnist"``) or ``"2d"``.
    cache_dir : str or os.PathLike, optional
        Target folder (created if needed); default :func:`cache_dir`, where
        :func:`load_dataset` looks.
    url : str, optional
        A mirror to use instead of the default sources: ``https://`` or
        ``file://`` (plain ``http://`` is refused). For binarized MNIST either
        an ``.npz`` with keys ``train_data``, ``valid_data``, ``test_data``, or
        a template of the three ``.amat`` files holding ``{split}``, e.g.
        ``file:///mirror/binarized_mnist_{split}.amat``.
    progress : bool, default False
        Show pooch's progress bar for https downloads (needs ``tqdm``; without
        it the download runs without a bar).
    timeout : float, default 60
        Seconds to wait on a stalled connection.

    Returns
    -------
    pathlib.Path
        ``<cache_dir>/binarized_mnist.npz`` (``uint8`` splits) or
        ``<cache_dir>/distribution.npy``.

    Raises
    ------
    DataError
        Unknown name, a URL that is not https/file, an unusable cache folder,
        or every source failed (network, unreadable file, wrong shape, values
        other than 0/1, checksum mismatch); one line naming each URL, the
        reason and the fix. A cached file is never replaced by a download that
        failed its checks, and no temporary file is left behind.
    """
    progress = check_bool("progress", progress)
    key = FETCH_ALIASES.get(str(name).lower(), str(name).lower())
    if key not in SOURCES:
        raise DataError(f"cannot fetch {name!r}: choose one of {', '.join(SOURCES)}")
    src = SOURCES[key]
    urls = tuple(src.urls) if url is None else (str(url),)
    for u in urls:
        _check_url(u)
    folder = expand_path(cache_dir) if cache_dir is not None else _user_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the cache folder ({one_line(exc)}); pass another "
                        "--cache-dir") from None
    target = folder / src.filename
    if _cached_ok(src, target):
        return target
    errors = []
    for u in urls:
        try:
            _fetch_into(src, u, folder, target, progress, timeout)
            return target
        except DataError as exc:
            errors.append(str(exc))
        except OSError as exc:
            errors.append(f"{u}: cannot write into {folder} ({one_line(exc)})")
    kept = " (the cached file was left as it was)" if os.path.lexists(target) else ""
    raise DataError(f"could not fetch {key}{kept}: " + "; ".join(errors)
                    + "; retry, or pass --url with an https:// or file:// mirror")


def fetch_binarized_mnist(cache_dir=None, *, url=None, progress: bool = False, timeout: float = 60.0) -> Path:
    """Download binarized MNIST into the cache: ``fetch("binarized-mnist", ...)``."""
    return fetch("binarized-mnist", cache_dir=cache_dir, url=url, progress=progress, timeout=timeout)
