"""Checkpoints and run files: atomic writes, reading back, and what a resume needs.

A checkpoint is one ``.npz`` file, written atomically (temporary file in the same
folder, then :func:`os.replace`) and read with ``allow_pickle=False``:

* ``W0, b0, W1, b1, ..., A``: the parameters (:attr:`made_np.model.MADE.param_names`);
* ``opt_<state><i>``, ``opt_t``, ``opt_lr``: the optimiser state;
* ``best_W0, ...``: the best weights so far (only while a run is unfinished;
  a finished run's parameters *are* its best weights);
* ``config``: a 0-d unicode array holding JSON: the model configuration, the
  training configuration, the data set spec, the training state (epoch, step,
  best epoch, ``finished``: training is over), the history, the made-np version
  and ``results`` (the test figures, written last: their presence means that
  every output of the run has been written).

A run folder has one writer at a time: :func:`run_lock` holds an exclusive lock on
``<folder>/.lock`` while a run writes there (:func:`made_np.train.fit` with
``out_dir`` takes it), and removes the temporary files that a killed writer left.

Masks are not stored: mask ``i`` of the bank is rebuilt exactly from the stored
configuration (seed, index), see :func:`made_np.masks.draw_masks`.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import glob
import hashlib
import json
import math
import os
import re
import signal
import socket
import stat
import struct
import tempfile
import threading
import time
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import __version__, backend
from .checks import MAX_SEED, describe, is_int
from .config import MADEConfig, TrainConfig
from .data import _MAX_DEFLATE_RATIO, expand_path, read_npy_header
from .limits import LimitError, check, fmt_bytes, layer_widths, model_parts
from .model import MADE

CHECKPOINT_FORMAT = "made-np-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "model.npz"
METRICS_NAME = "metrics.csv"
RESULTS_NAME = "results.json"
METRICS_COLUMNS = ("epoch", "train_nll", "valid_nll", "seconds")
LOCK_NAME = ".lock"
#: Files of a run folder written through a temporary file ``.<name>-XXXXXXXX.tmp``.
ATOMIC_FILES = (CHECKPOINT_NAME, METRICS_NAME, RESULTS_NAME, "loss.png", "samples.png")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not a made-np checkpoint (one-line message)."""


class RunFolderError(CheckpointError):
    """A run folder that cannot be created or written (one-line message naming it)."""


class RunLockedError(RunFolderError):
    """Another run holds the run folder's lock: ``folder``, ``pid`` and ``host`` name it."""

    def __init__(self, message: str, folder=None, pid=None, host=None):
        super().__init__(message)
        self.folder, self.pid, self.host = folder, pid, host


def _write_target(path: Path) -> Path:
    """The file a write to ``path`` replaces: ``path``, or the regular file (existing or not) that
    the symbolic link ``path`` leads to. A loop of links, or a link to a folder, a device or a
    pipe, is an ``OSError`` naming ``path`` (a rename would replace the device itself); a link into
    another run's folder is a :class:`RunFolderError` (:func:`other_run`)."""
    why = other_run(path)
    if why:
        raise RunFolderError(f"{path}: {why}")
    if not path.is_symlink():
        return path
    try:
        target = Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:  # a link to a file not there yet: created, as a plain write would
        return Path(os.path.realpath(path))
    except OSError as exc:  # a loop
        raise OSError(exc.errno or errno.ELOOP, "a loop of symbolic links", str(path)) from None
    if not target.is_file():
        raise OSError(errno.EINVAL, f"a link to {target}, which is not a regular file", str(path))
    return target


def other_run(path, own=None) -> str:
    """Why writing ``path`` would change a run folder (a folder holding a checkpoint ``model.npz``)
    that is not the writer's own, or ``""``: the file it writes (links followed) lies in such a
    folder and ``path`` leads there through a symbolic link, or, given ``own`` (the run folder of a
    command's checkpoint), it is one of that run's files (:data:`ATOMIC_FILES`). A folder this
    thread holds (:func:`run_lock`) is its own: ``train --resume A`` whose ``model.npz`` was a link
    to run B's rewrote B without its lock."""
    path = Path(path)
    target = Path(os.path.realpath(path))
    folder = target.parent
    if not (folder / CHECKPOINT_NAME).is_file() or _holds(folder):
        return ""
    if own is not None and os.path.realpath(own) == str(folder):
        return ""
    if os.path.realpath(path.parent) != str(folder):
        return (f"a link to {target}, in the folder of another run; writing through it would change that "
                "run: write another file (or replace the link by a copy of its file)")
    if own is not None and target.name in ATOMIC_FILES:
        return (f"is the {target.name} of the run in {folder}; writing it would change that run: "
                "choose another file name")
    return ""


@contextlib.contextmanager
def atomic_file(path, mode: str, **kwargs):
    """An open temporary file in ``path``'s folder that replaces ``path`` when the block ends
    without an exception (and is removed when it raises): a write cut short (a full disk:
    ``ENOSPC``; ``ulimit -f``: ``EFBIG``; Ctrl-C) leaves any earlier file of that name whole.
    As a plain write would: a symbolic link's target is replaced (the link stays), an earlier
    file keeps its permissions, and a file this process may not write is refused
    (``PermissionError``) rather than replaced. Such an ``OSError`` names ``path``, not the
    temporary file."""
    path, tmp = Path(path), None
    try:
        target = _write_target(path)
        permissions = 0o666 & ~_umask()  # mkstemp makes 0600 files; a new one gets the usual permissions
        if os.path.exists(target):
            if not os.access(target, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            permissions = stat.S_IMODE(os.stat(target).st_mode)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-", suffix=".tmp")
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        os.chmod(tmp, permissions)
        os.replace(tmp, target)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None and (tmp is None or exc.filename in (None, tmp)):
            exc.filename = str(path)  # the file asked for, not the temporary one (or mkstemp's pattern)
        raise


@contextlib.contextmanager
def interrupts_deferred():
    """Hold back Ctrl-C (SIGINT) until the block ends, so writes that belong together land together.

    A run's checkpoint and its ``metrics.csv`` are two files; an interrupt between
    them left a checkpoint whose epoch the metrics did not show. Inside this block
    a SIGINT is recorded, and the handler that was in place (Python's, which
    raises :class:`KeyboardInterrupt`) runs once the block has finished; when the
    block raises, its error goes up instead. Outside the main thread, where signal
    handlers cannot be set, the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:  # a handler not set from Python (None: an embedding program's) is put back as the default
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    if caught:  # the block ended normally (an error it raised goes up as it is)
        if callable(previous):
            previous(signal.SIGINT, caught[0])
        elif previous in (signal.SIG_DFL, None):
            signal.raise_signal(signal.SIGINT)


def write_metrics(path, rows: list) -> Path:
    """Write ``metrics.csv`` (columns epoch, train_nll, valid_nll, seconds) atomically."""
    path = Path(path)
    with atomic_file(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(METRICS_COLUMNS)
        for r in rows:
            writer.writerow([r["epoch"], f"{r['train_nll']:.6f}", f"{r['valid_nll']:.6f}",
                             f"{r['seconds']:.3f}"])
    return path


def write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON (e.g. ``results.json``) atomically (:func:`json_text`: nothing
    is written when a value is NaN or infinite)."""
    path = Path(path)
    text = json_text(obj, str(path), indent=2)
    with atomic_file(path, "w") as f:
        f.write(text)
    return path


def json_text(obj, what: str, **kwargs) -> str:
    """``obj`` as JSON text (NumPy numbers and arrays as JSON's); ``kwargs`` go to :func:`json.dumps`.

    Raises
    ------
    CheckpointError
        A number that is NaN or infinite, which JSON has no word for (Python writes ``NaN``, which
        other readers refuse): one line naming ``what`` and the value's key.
    """
    try:
        return json.dumps(obj, default=_json_default, allow_nan=False, **kwargs)
    except ValueError:
        key, value = _non_finite(obj)
        raise CheckpointError(f"{what}: not written: {key or 'the value'} is {value}, which JSON cannot hold "
                              "(the model's results are not finite)") from None


def _non_finite(obj, key: str = ""):
    """``(key, value)`` of the first NaN or infinite number in ``obj`` (``("", None)`` if none)."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple, np.ndarray)):
        items = enumerate(obj.tolist() if isinstance(obj, np.ndarray) else obj)
    else:
        return (key, obj) if isinstance(obj, (float, np.floating)) and not math.isfinite(obj) else ("", None)
    for k, v in items:
        found = _non_finite(v, f"{key}.{k}" if key else str(k))
        if found[0]:
            return found
    return "", None


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray, tuple)):
        return list(o.tolist() if isinstance(o, np.ndarray) else o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_checkpoint(path, model: MADE, *, train_config: TrainConfig | None = None,
                    dataset_spec: dict | None = None, optimizer=None, optimizer_state: dict | None = None,
                    best_params=None,
                    history: dict | None = None, train_state: dict | None = None,
                    results: dict | None = None) -> Path:
    """Write a checkpoint ``.npz`` atomically (temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    path : str or os.PathLike
        Target file (its folder must exist).
    model : MADE
        Its parameters are saved under :attr:`MADE.param_names`.
    train_config : TrainConfig, optional
    dataset_spec : dict, optional
        How to reload the data: ``{"spec", "path", "seed", ...}``.
    optimizer : made_np.optim.Optimizer, optional
        Its state is saved as ``opt_*`` entries.
    optimizer_state : dict, optional
        The state to save instead of ``optimizer.state_dict()`` (the layout of
        ``model``'s parameters when the optimiser ran on another form of the model).
    best_params : list of arrays, optional
        Best weights so far (matching :attr:`MADE.params`), saved as ``best_*``.
    history, train_state, results : dict, optional
        Stored in the JSON ``config`` entry.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    CheckpointError
        Nothing is written when the checkpoint would not load (:func:`load_checkpoint`'s checks):
        weights that are not finite, or an entry of the JSON ``config`` (e.g. ``dataset_spec``)
        of the wrong kind.
    """
    path = Path(path)
    arrays = dict(model.state_dict())
    if optimizer is not None:
        for k, v in (optimizer_state if optimizer_state is not None else optimizer.state_dict()).items():
            arrays[f"opt_{k}"] = np.asarray(v)
    if best_params is not None:
        for name, p in zip(model.param_names, best_params):
            arrays[f"best_{name}"] = backend.to_host(p)
    bad = next((n for n, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()), None)
    if bad is not None:  # weights, optimiser state (an overflowing Adagrad sum) and best weights alike
        raise CheckpointError(f"{path}: not written: entry {bad!r} holds NaN or infinity, and a checkpoint "
                              "must load (a diverged model keeps its last good checkpoint)")
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "made_np_version": __version__,
        "model": model.config.to_dict(),
        "train": train_config.to_dict() if train_config is not None else None,
        "dataset": dataset_spec,
        "optimizer": None if optimizer is None else type(optimizer).__name__.lower(),
        "state": train_state,
        "history": history,
        "results": results,
    }
    try:
        text = json.dumps(meta, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not written: the configuration is not JSON ({_one_line(exc)})") from None
    _check_meta(path, json.loads(text))  # what load_checkpoint will check: never write what it refuses
    arrays["config"] = np.array(text)
    return _write_npz_atomic(path, arrays)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_npz_atomic(path: Path, arrays: dict) -> Path:
    """``np.savez`` into a temporary file of the same folder, then ``os.replace`` it onto ``path``."""
    with atomic_file(path, "wb") as f:
        np.savez(f, **arrays)
    return path


# =========================================================================== run folder lock

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

_HELD = {}  # realpath of a folder locked by this process -> ident of the thread holding it
_HELD_GUARD = threading.Lock()


def _holds(folder) -> bool:
    """Whether this thread holds the run folder ``folder`` (:func:`run_lock`)."""
    with _HELD_GUARD:
        return _HELD.get(os.path.realpath(folder)) == threading.get_ident()


def _lock_owner(text: str):
    """``(pid, host)`` written in a lock file (None where unreadable)."""
    try:
        owner = json.loads(text)
        return owner.get("pid"), owner.get("host")
    except (ValueError, AttributeError):
        return None, None


def _create_folder(folder: Path) -> bool:
    """Create ``folder`` (and its parents); True when it did not exist. One-line errors."""
    existed = folder.is_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((a for a in (folder, *folder.parents) if a.exists() and not a.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None else (exc.strerror or str(exc))
        raise RunFolderError(f"{folder}: cannot create the run folder ({why})") from None
    return not existed


def _take_flock(path: Path, folder: Path) -> int:
    """Open ``path`` and hold an exclusive ``flock`` on it; the open descriptor.

    A lock file that another run unlinked while we waited is not the lock any more:
    try again on the new one (and on a new folder, if that run removed it).
    """
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the run that made the folder removed it, empty, as it left
            _create_folder(folder)
            continue
        except OSError as exc:
            raise RunFolderError(f"{folder}: cannot write its lock file {path.name} ({exc.strerror or exc})"
                                 + ("; remove that folder, or choose another run folder" if path.is_dir() else "")
                                 ) from None
        if fcntl is None:  # pragma: no cover - no flock: the lock file is the lock
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            text = os.read(fd, 4096).decode("utf-8", "replace")
            os.close(fd)
            pid, host = _lock_owner(text)
            if pid is None:  # the holder has not written its pid yet
                time.sleep(0.01)
                try:
                    pid, host = _lock_owner(path.read_text())
                except OSError:
                    pass
            who = (f"pid {pid}" if pid is not None else "pid unknown") + (
                f" on {host}" if host and host != socket.gethostname() else "")
            raise RunLockedError(f"{folder}: another made-np run ({who}) is writing to this folder; "
                                 "wait for it to end, or stop it, or use another folder",
                                 folder=folder, pid=pid, host=host) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise RunFolderError(f"{folder}: cannot take the lock {path}")  # pragma: no cover


def clean_temporary_files(folder) -> list:
    """Remove the temporary files (``.model.npz-*.tmp``, ...) that a killed writer left in ``folder``.

    Only the holder of the folder's lock (:func:`run_lock`) may call this: it removes
    the temporary files of every writer. Returns the paths removed.
    """
    removed = []
    for name in ATOMIC_FILES:
        for tmp in glob.glob(os.path.join(glob.escape(str(folder)), f".{glob.escape(name)}-*.tmp")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
                removed.append(Path(tmp))
    return removed


@contextlib.contextmanager
def run_lock(folder):
    """Hold the run folder ``folder`` as its one writer while the block runs.

    Creates the folder (and its parents) when needed, takes an exclusive lock on
    ``<folder>/.lock`` (``fcntl.flock``, released by the system when the process
    dies, so the lock of a killed run is free and simply taken over), writes its pid
    and host there, and removes the temporary files of killed writers
    (:func:`clean_temporary_files`). On leaving, temporary files are removed again
    (a write interrupted at the wrong moment may leave one), then the lock file, and
    the folder when it was created here and nothing was written in it.

    The lock is re-entrant within one thread (``made-np train`` holds it around
    :func:`made_np.train.fit`, which takes it too); another thread or process is refused.

    Yields
    ------
    pathlib.Path
        The folder.

    Raises
    ------
    RunLockedError
        Another run holds the lock (the message names the folder and its pid).
    RunFolderError
        The folder cannot be created (a path under a file) or written (read-only).
    """
    folder = Path(folder).expanduser()
    created = _create_folder(folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RunFolderError(f"{folder}: cannot write in the run folder (Permission denied)")
    key = os.path.realpath(folder)
    me = threading.get_ident()
    if _holds(folder):  # this thread holds it already (made-np train around fit)
        yield folder
        return
    for name in ATOMIC_FILES:  # refused now, not at the first checkpoint
        why = other_run(folder / name)
        if why:
            raise RunFolderError(f"{folder / name}: {why}")
    path = folder / LOCK_NAME
    fd = _take_flock(path, folder)
    try:
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(owner).encode())
        except OSError as exc:
            raise RunFolderError(f"{path}: cannot write the lock file ({exc.strerror or exc})") from None
        clean_temporary_files(folder)
        with _HELD_GUARD:
            _HELD[key] = me
        yield folder
    finally:
        with _HELD_GUARD:
            if _HELD.get(key) == me:
                del _HELD[key]
        # a write cut short by Ctrl-C at the wrong moment (inside mkstemp) may have left its file
        clean_temporary_files(folder)
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still holding the lock: a run waiting on it sees a new inode
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: a run that saved nothing leaves nothing


def read_checkpoint_meta(path) -> dict:
    """The JSON ``config`` of a checkpoint (file or run folder) without reading its arrays.

    Raises
    ------
    CheckpointError
        Missing, unreadable or not a made-np checkpoint.
    """
    p = resolve_checkpoint_path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["config"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, AttributeError, TypeError,
            SyntaxError, RecursionError, MemoryError, tokenize.TokenError) as exc:
        raise CheckpointError(f"{p}: not a readable made-np checkpoint ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p}: not a made-np checkpoint (config has no format '{CHECKPOINT_FORMAT}')")
    return meta


def update_checkpoint_meta(path, **changes) -> Path:
    """Replace top-level entries of a checkpoint's JSON ``config`` (e.g. ``results=...``), atomically.

    Raises
    ------
    CheckpointError
        Not a made-np checkpoint.
    """
    p = resolve_checkpoint_path(path)
    arrays, meta, _, _ = _read_checkpoint(p)
    meta.update(changes)
    arrays["config"] = np.array(json.dumps(meta, default=_json_default, allow_nan=True))
    return _write_npz_atomic(p, arrays)


def resolve_checkpoint_path(path) -> Path:
    """A checkpoint file, or a run folder holding ``model.npz``.

    Raises
    ------
    CheckpointError
        Nothing there.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"a checkpoint is a file or run folder path, got {path!r}")
    p = expand_path(path)
    if p.is_dir():
        if (p / CHECKPOINT_NAME).is_file():
            return p / CHECKPOINT_NAME
        raise CheckpointError(f"{p}: folder holds no {CHECKPOINT_NAME} checkpoint")
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file or run folder")
    return p


#: Longest JSON ``config`` entry, in characters (the history of a long run is a few MB).
MAX_CONFIG_CHARS = 2**24
#: Keys of the ``dataset`` spec and the types they must have (``None`` is allowed for each).
_DATASET_KEYS = {"spec": str, "path": str, "seed": int, "name": str, "D": int, "classes": int,
                 "image_shape": list, "sizes": list, "sha256": dict, "context_sha256": dict}
_OPT_ENTRY = re.compile(r"^opt_[A-Za-z_]+[0-9]*$")
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
               RuntimeError, NotImplementedError, MemoryError, RecursionError, SyntaxError, KeyError,
               OverflowError, struct.error, tokenize.TokenError)  # NumPy tokenizes damaged old headers


class _Archive:
    """A checkpoint's ``.npz`` opened lazily: entry headers are read and checked first, an
    array only when asked for, and only after its declared size has been checked against
    what its zip member holds (a lying header is refused without allocating).

    Parameters
    ----------
    p : Path
        A regular file starting with ``PK``.
    """

    def __init__(self, p: Path):
        self.p = p
        self.size = os.stat(p).st_size
        self.zf = zipfile.ZipFile(p)
        self.members = {}
        for info in self.zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if name in self.members:
                raise CheckpointError(f"{p}: not a made-np checkpoint (entry '{name}' appears twice)")
            self.members[name] = info
        self.headers = {}

    def close(self) -> None:
        self.zf.close()

    def _where(self, name: str) -> str:
        return f"{self.p}: entry '{name}'"

    def _member(self, name: str):
        info = self.members[name]
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{self._where(name)} is encrypted; made-np writes plain .npz files")
        if info.compress_type == zipfile.ZIP_STORED:
            bound = info.compress_size
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            bound = info.compress_size * _MAX_DEFLATE_RATIO + 1024
        else:
            raise CheckpointError(f"{self._where(name)} uses zip compression method {info.compress_type}, "
                                  "which NumPy does not write; the checkpoint is corrupt")
        if info.compress_size > self.size or info.file_size > bound:
            raise CheckpointError(f"{self._where(name)} declares {fmt_bytes(info.file_size)} from "
                                  f"{fmt_bytes(info.compress_size)} of a {fmt_bytes(self.size)} file: not a valid "
                                  ".npz archive; the checkpoint is corrupt")
        return info

    def header(self, name: str):
        """``(shape, dtype)`` of entry ``name``, from its ``.npy`` header (nothing else is read).

        Raises
        ------
        CheckpointError
            A malformed header, Python objects, or a declared size larger than the member.
        """
        if name in self.headers:
            return self.headers[name]
        info = self._member(name)
        try:
            with self.zf.open(info) as fp:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    shape, fortran, dtype = read_npy_header(fp)
                offset = fp.tell()
        except CheckpointError:
            raise
        except _ZIP_ERRORS as exc:
            raise CheckpointError(f"{self._where(name)} is not a valid .npy array ({_one_line(exc)}); "
                                  "the checkpoint is corrupt") from None
        if dtype.hasobject:
            raise CheckpointError(f"{self._where(name)} holds Python objects (dtype {dtype}), which are "
                                  "never loaded; the checkpoint is corrupt")
        declared = math.prod(shape) * dtype.itemsize
        if declared > info.file_size - offset:
            raise CheckpointError(f"{self._where(name)} declares shape {tuple(shape)} of {dtype} "
                                  f"({fmt_bytes(declared)}) but holds {fmt_bytes(max(info.file_size - offset, 0))}; "
                                  "the checkpoint is truncated or corrupt")
        self.headers[name] = (tuple(shape), dtype)
        return self.headers[name]

    def read(self, name: str) -> np.ndarray:
        """Entry ``name`` as an array (its header checked first, see :meth:`header`)."""
        self.header(name)
        try:
            with self.zf.open(self.members[name]) as fp:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return np.lib.format.read_array(fp, allow_pickle=False)
        except _ZIP_ERRORS as exc:
            raise CheckpointError(f"{self._where(name)} cannot be read ({_one_line(exc)}); "
                                  "the checkpoint is truncated or corrupt") from None


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _open_archive(p: Path) -> _Archive:
    """Open ``p`` as an ``.npz`` (regular files only); anything else is a one-line CheckpointError."""
    try:
        st = os.stat(p)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read ({_one_line(exc)})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{p}: not a regular file; give a checkpoint file (model.npz) or its run folder")
    try:
        with open(p, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read ({_one_line(exc)})") from None
    if magic == b"\x93NUMPY":
        raise CheckpointError(f"{p}: not a made-np checkpoint (a single .npy array, not an .npz)")
    if not magic.startswith(b"PK"):
        raise CheckpointError(f"{p}: not a made-np checkpoint (not an .npz file)")
    try:
        return _Archive(p)
    except CheckpointError:
        raise
    except _ZIP_ERRORS as exc:
        raise CheckpointError(f"{p}: not a made-np checkpoint (not a valid .npz archive: {_one_line(exc)})") from None


def _read_meta(archive: _Archive) -> dict:
    """The parsed JSON ``config`` entry, checked to be a made-np checkpoint's of a known version."""
    p = archive.p
    if "config" not in archive.members:
        found = ", ".join(sorted(archive.members)[:8]) or "none"
        raise CheckpointError(f"{p}: not a made-np checkpoint (no 'config' entry; keys found: {found})")
    shape, dtype = archive.header("config")
    if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * MAX_CONFIG_CHARS:
        raise CheckpointError(f"{p}: not a made-np checkpoint (entry 'config' is {dtype} of shape {shape}, "
                              f"not a JSON string of at most {MAX_CONFIG_CHARS} characters)")
    text = str(archive.read("config")[()])
    try:
        meta = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"{p}: not a made-np checkpoint (config is not JSON: {_one_line(exc)})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p}: not a made-np checkpoint (config has no format '{CHECKPOINT_FORMAT}')")
    version = meta.get("format_version")
    if not is_int(version) or version < 1:
        raise CheckpointError(f"{p}: entry 'config': format_version must be a positive integer, "
                              f"got {describe(version)}")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{p}: checkpoint format {version} is newer than this "
                              f"made-np ({__version__}) understands")
    return meta


def _check_meta(p: Path, meta: dict):
    """Validate the configuration of a checkpoint as strictly as user input.

    Returns ``(model_config, train_config or None)``; raises CheckpointError naming the
    file and the entry (``config: model.D ...``).
    """
    where = f"{p}: entry 'config'"
    if not isinstance(meta.get("model"), dict):
        raise CheckpointError(f"{where}: 'model' must be an object, got {describe(meta.get('model'))}")
    try:
        model_config = MADEConfig.from_dict(meta["model"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: invalid model configuration ({_one_line(exc)})") from None
    train_config = None
    if meta.get("train") is not None:
        if not isinstance(meta["train"], dict):
            raise CheckpointError(f"{where}: 'train' must be an object or null, got {describe(meta['train'])}")
        try:  # runs from before output_bias existed started their output biases at 0
            train_config = TrainConfig.from_dict({"output_bias": "zero", **meta["train"]})
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: invalid training configuration ({_one_line(exc)})") from None
    for key in ("state", "history", "results", "dataset"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise CheckpointError(f"{where}: '{key}' must be an object or null, got {describe(meta[key])}")
    for key in ("optimizer", "made_np_version"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise CheckpointError(f"{where}: '{key}' must be a string or null, got {describe(meta[key])}")
    _check_dataset_spec(where, meta.get("dataset"), model_config)
    return model_config, train_config


def _check_dataset_spec(where: str, spec, cfg: MADEConfig) -> None:
    """Types of the ``dataset`` spec, and its D, classes and image shape against the model's."""
    if spec is None:
        return
    for key, kind in _DATASET_KEYS.items():
        value = spec.get(key)
        if value is None:
            continue
        ok = is_int(value) if kind is int else isinstance(value, kind)
        if not ok:
            raise CheckpointError(f"{where}: dataset.{key} must be {kind.__name__} or null, got {describe(value)}")
    if spec.get("seed") is not None and not 0 <= spec["seed"] <= MAX_SEED:
        raise CheckpointError(f"{where}: dataset.seed must be in 0..{MAX_SEED}, got {spec['seed']}")
    if spec.get("D") is not None and spec["D"] != cfg.D:
        raise CheckpointError(f"{where}: dataset.D = {spec['D']} but the model has D = {cfg.D}")
    if spec.get("classes") is not None and spec["classes"] != cfg.classes:
        raise CheckpointError(f"{where}: dataset.classes = {spec['classes']} but the model has "
                              f"{cfg.classes} classes")
    shape = spec.get("image_shape")
    if shape is not None:
        if len(shape) != 2 or not all(is_int(v) and v >= 1 for v in shape) or shape[0] * shape[1] != cfg.D:
            raise CheckpointError(f"{where}: dataset.image_shape {describe(shape)} is not two positive "
                                  f"integers whose product is D = {cfg.D}")
    sizes = spec.get("sizes")
    if sizes is not None and (len(sizes) != 3 or not all(is_int(v) and v >= 0 for v in sizes)):
        raise CheckpointError(f"{where}: dataset.sizes {describe(sizes)} is not three non-negative integers")
    for key in ("sha256", "context_sha256"):
        sha = spec.get(key)
        if sha is not None and not all(k in ("train", "valid", "test") and isinstance(v, str) and len(v) == 64
                                       for k, v in sha.items()):
            raise CheckpointError(f"{where}: dataset.{key} {describe(sha)} is not a 64-digit hex digest per split")


def param_shapes(cfg: MADEConfig) -> dict:
    """``{name: shape}`` of the parameters of the MADE of ``cfg`` (:attr:`MADE.param_names` order),
    computed without building it."""
    widths = layer_widths(cfg)
    shapes = {}
    for i in range(len(widths) - 1):
        shapes[f"W{i}"] = (widths[i], widths[i + 1])
        shapes[f"b{i}"] = (widths[i + 1],)
    if cfg.direct:
        shapes["A"] = (widths[0], widths[-1])
    if cfg.context and cfg.hidden:
        shapes["U1"] = (cfg.context, widths[1])
    if cfg.context:
        shapes["UV"] = (cfg.context, widths[-1])
    return shapes


def _check_entries(archive: _Archive, cfg: MADEConfig) -> dict:
    """Check every entry's name and declared shape and dtype against the model of ``cfg``, reading
    headers only. Returns ``{name: shape}`` of the parameters."""
    p, shapes = archive.p, param_shapes(cfg)
    known = set(shapes) | {f"best_{n}" for n in shapes} | {"config"}
    unknown = [n for n in archive.members if n not in known and not _OPT_ENTRY.match(n)]
    if unknown:
        raise CheckpointError(f"{p}: unknown entry '{unknown[0]}' (not read): a checkpoint of this model holds "
                              f"{', '.join(shapes)}, best_*, opt_* and config; the checkpoint is corrupt or "
                              "not made-np's")
    missing = [n for n in shapes if n not in archive.members]
    if missing:
        raise CheckpointError(f"{p}: checkpoint is missing parameter '{missing[0]}'")
    best = [n for n in shapes if f"best_{n}" in archive.members]
    if best and len(best) != len(shapes):
        lacking = next(n for n in shapes if f"best_{n}" not in archive.members)
        raise CheckpointError(f"{p}: checkpoint holds best weights but lacks entry 'best_{lacking}'")
    largest = max(math.prod(s) for s in shapes.values())
    for name in archive.members:
        if name == "config":
            continue
        shape, dtype = archive.header(name)
        where = f"{p}: entry '{name}'"
        if name.startswith("opt_"):
            if dtype.kind not in "biuf" or len(shape) > 2 or math.prod(shape) > largest:
                raise CheckpointError(f"{where} is {dtype} of shape {shape}: an optimiser entry is a real array "
                                      f"no larger than the largest parameter ({largest} values)")
            continue
        expected = shapes[name[5:] if name.startswith("best_") else name]
        if dtype.kind != "f":
            raise CheckpointError(f"{where} has dtype {dtype}; expected float32 or float64 weights")
        if shape != expected:
            raise CheckpointError(f"{where} has shape {shape}, but the model's configuration (D = {cfg.D}, "
                                  f"hidden {list(cfg.hidden)}, {cfg.classes} classes) needs {expected}")
    return shapes


def _read_entry(archive: _Archive, name: str, dtype: str) -> np.ndarray:
    """Read an entry whose header :func:`_check_entries` accepted; floats must be finite once cast to
    ``dtype``, the model's (1e300 in a float64 entry of a float32 model is infinite there)."""
    a = archive.read(name)
    if a.dtype.kind == "f":
        with np.errstate(over="ignore"):
            bad = int(a.size - np.count_nonzero(np.isfinite(a.astype(dtype, copy=False))))
        if bad:
            where = "" if a.dtype == dtype else f" in the model's {dtype}"
            raise CheckpointError(f"{archive.p}: entry '{name}' has {bad} NaN/inf value{'s' if bad > 1 else ''}"
                                  f"{where}; the checkpoint is corrupt")
    return a


def _read_checkpoint(p: Path, *, memory_limit: int | None = None):
    """Open, validate and read a checkpoint file.

    Returns ``(arrays, meta, model_config, train_config)``: every entry but ``config`` as an
    array, the parsed JSON config and the two configurations. Raises CheckpointError (or :class:`made_np.limits.LimitError` when the
    model needs more than ``memory_limit`` bytes) before any array but the config is read.
    """
    archive = _open_archive(p)
    try:
        meta = _read_meta(archive)
        model_config, train_config = _check_meta(p, meta)
        _check_entries(archive, model_config)
        if memory_limit is not None:
            try:
                check(model_parts(model_config, label=f"{p} (D = {model_config.D}, hidden "
                                  f"{list(model_config.hidden)}, {model_config.classes} classes)"), memory_limit)
            except LimitError as exc:
                raise LimitError(str(exc).replace(" needs about", ": the model needs about", 1)) from None
        arrays = {name: _read_entry(archive, name, model_config.dtype) for name in archive.members
                  if name != "config"}
    finally:
        archive.close()
    return arrays, meta, model_config, train_config


def params_digest(params) -> str:
    """sha256 (hex) of a model's parameters (:attr:`MADE.params`, in order): how a resume knows
    that the model it continues holds the checkpoint's last weights."""
    h = hashlib.sha256()
    for p in params:
        h.update(np.ascontiguousarray(backend.to_host(p)).data)
    return h.hexdigest()


def load_checkpoint(path, device: str | None = None, *, best: bool = False, memory_limit: int | None = None):
    """Read a checkpoint written by :func:`save_checkpoint` (or a run folder holding ``model.npz``).

    Parameters
    ----------
    path : str or os.PathLike
    device : {"cpu", "cuda"} or None
        Where to build the model (``None``: ``$MADE_NP_DEVICE`` or cpu).
    best : bool, default False
        Load the best weights of an unfinished run instead of its latest ones
        (a finished run's parameters are already its best).
    memory_limit : int, optional
        Refuse (:class:`made_np.limits.LimitError`) a model that needs more bytes than
        this (:func:`made_np.limits.model_parts`), before reading its weights.

    Returns
    -------
    model : MADE
        With the stored parameters and mask 0 selected.
    info : dict
        ``path``, ``config`` (the whole JSON), ``model_config`` (MADEConfig),
        ``train_config`` (TrainConfig or None), ``dataset`` (spec dict or None),
        ``history``, ``state``, ``results``, ``version``, ``optimizer`` (host
        state dict or None), ``best_params`` (dict of host arrays or None).

    Raises
    ------
    CheckpointError
        Missing or unreadable file, not a made-np checkpoint, or inconsistent
        contents (one-line message naming the file and the entry): the JSON config
        is validated as strictly as user input (types, bounds, names; the data set's
        D, classes and image shape against the model's), every entry's ``.npy``
        header is checked before anything is read (unknown entries, object dtypes,
        sizes larger than the zip member, shapes and dtypes that do not match the
        model), and the weights must be finite.
    made_np.limits.LimitError
        The model needs more memory than ``memory_limit``.
    made_np.backend.BackendError
        Unusable device.
    """
    p = resolve_checkpoint_path(path)
    arrays, meta, model_config, train_config = _read_checkpoint(p, memory_limit=memory_limit)
    xp = backend.get_xp(device)
    model = MADE(model_config, xp, draw_weights=False)
    params = {n: arrays[n] for n in model.param_names}
    best_params = None
    if any(f"best_{n}" in arrays for n in model.param_names):
        shapes = {n: tuple(p.shape) for n, p in zip(model.param_names, model.params)}
        for n in model.param_names:
            if f"best_{n}" not in arrays:
                raise CheckpointError(f"{p}: entry 'best_{n}' is missing (the best weights are incomplete)")
            if tuple(arrays[f"best_{n}"].shape) != shapes[n]:
                raise CheckpointError(f"{p}: entry 'best_{n}' has shape {tuple(arrays[f'best_{n}'].shape)}, "
                                      f"expected {shapes[n]}")
        best_params = {n: arrays[f"best_{n}"] for n in model.param_names}
    use_best = best and best_params is not None
    try:
        model.load_state_dict(best_params if use_best else params, prefix="best_" if use_best else "")
    except ValueError as exc:
        raise CheckpointError(f"{p}: {exc}") from None
    opt_state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")} or None
    info = {
        "path": str(p),
        "config": meta,
        "model_config": model_config,
        "train_config": train_config,
        "dataset": meta.get("dataset"),
        "history": meta.get("history"),
        "state": meta.get("state"),
        "results": meta.get("results"),
        "version": meta.get("made_np_version"),
        "optimizer": opt_state,
        "best_params": best_params,
        # the weights the model was given: a resume continues only these (the last ones)
        "loaded_best": use_best,
        "params_sha256": None if use_best else params_digest(model.params),
    }
    return model, info
