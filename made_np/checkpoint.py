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
import glob
import json
import os
import socket
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

from . import __version__, backend
from .config import MADEConfig, TrainConfig
from .model import MADE

CHECKPOINT_FORMAT = "made-np-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "model.npz"
METRICS_NAME = "metrics.csv"
RESULTS_NAME = "results.json"
METRICS_COLUMNS = ("epoch", "train_nll", "valid_nll", "seconds")
LOCK_NAME = ".lock"
#: Files of a run folder written through a temporary file ``.<name>-XXXXXXXX.tmp``.
ATOMIC_FILES = (CHECKPOINT_NAME, METRICS_NAME, RESULTS_NAME)


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not a made-np checkpoint (one-line message)."""


class RunFolderError(CheckpointError):
    """A run folder that cannot be created or written (one-line message naming it)."""


class RunLockedError(RunFolderError):
    """Another run holds the run folder's lock: ``folder``, ``pid`` and ``host`` name it."""

    def __init__(self, message: str, folder=None, pid=None, host=None):
        super().__init__(message)
        self.folder, self.pid, self.host = folder, pid, host


@contextlib.contextmanager
def _atomic_file(path: Path, mode: str, **kwargs):
    """An open temporary file in ``path``'s folder that replaces ``path`` when the block ends
    without an exception (and is removed when it raises). An ``OSError`` (a full disk:
    ``ENOSPC``; ``ulimit -f``: ``EFBIG``) names ``path``, not the temporary file."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, tmp):
            exc.filename = str(path)
        raise


def write_metrics(path, rows: list) -> Path:
    """Write ``metrics.csv`` (columns epoch, train_nll, valid_nll, seconds) atomically."""
    path = Path(path)
    with _atomic_file(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(METRICS_COLUMNS)
        for r in rows:
            writer.writerow([r["epoch"], f"{r['train_nll']:.6f}", f"{r['valid_nll']:.6f}",
                             f"{r['seconds']:.3f}"])
    return path


def write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON (e.g. ``results.json``) atomically."""
    path = Path(path)
    with _atomic_file(path, "w") as f:
        json.dump(obj, f, indent=2, default=_json_default)
    return path


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
    """
    path = Path(path)
    arrays = dict(model.state_dict())
    if optimizer is not None:
        for k, v in (optimizer_state if optimizer_state is not None else optimizer.state_dict()).items():
            arrays[f"opt_{k}"] = np.asarray(v)
    if best_params is not None:
        for name, p in zip(model.param_names, best_params):
            arrays[f"best_{name}"] = backend.to_host(p)
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
    arrays["config"] = np.array(json.dumps(meta, default=_json_default, allow_nan=True))
    return _write_npz_atomic(path, arrays)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_npz_atomic(path: Path, arrays: dict) -> Path:
    """``np.savez`` into a temporary file of the same folder, then ``os.replace`` it onto ``path``."""
    with _atomic_file(path, "wb") as f:
        np.savez(f, **arrays)
    return path


# =========================================================================== run folder lock

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

_HELD = {}  # realpath of a folder locked by this process -> ident of the thread holding it
_HELD_GUARD = threading.Lock()


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
            raise RunFolderError(f"{folder}: cannot write in the run folder "
                                 f"({exc.strerror or exc})") from None
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
            who = f"pid {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")
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
    with _HELD_GUARD:
        reentrant = _HELD.get(key) == me
    if reentrant:  # this thread holds it already (made-np train around fit)
        yield folder
        return
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
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, AttributeError, TypeError) as exc:
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
    arrays, meta = _read_checkpoint(p)
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
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / CHECKPOINT_NAME).is_file():
            return p / CHECKPOINT_NAME
        raise CheckpointError(f"{p}: folder holds no {CHECKPOINT_NAME} checkpoint")
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file or run folder")
    return p


def _read_checkpoint(p: Path):
    """All arrays of a checkpoint file and its parsed JSON config (checked to be made-np's)."""
    try:
        with open(p, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read ({' '.join(str(exc).split())})") from None
    if magic == b"\x93NUMPY":
        raise CheckpointError(f"{p}: not a made-np checkpoint (a single .npy array, not an .npz)")
    if not magic.startswith(b"PK"):
        raise CheckpointError(f"{p}: not a made-np checkpoint (not an .npz file)")
    try:
        z = np.load(p, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{p}: not a made-np checkpoint (a single .npy array, not an .npz)")
        with z:
            arrays = {k: z[k] for k in z.files}
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(f"{p}: not a made-np checkpoint (cannot read as .npz: {reason})") from None
    if "config" not in arrays:
        found = ", ".join(sorted(arrays)[:8]) or "none"
        raise CheckpointError(f"{p}: not a made-np checkpoint (no 'config' entry; keys found: {found})")
    try:
        meta = json.loads(str(arrays["config"]))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{p}: not a made-np checkpoint (config is not JSON: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p}: not a made-np checkpoint (config has no format '{CHECKPOINT_FORMAT}')")
    if meta.get("format_version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{p}: checkpoint format {meta['format_version']} is newer than this "
                              f"made-np ({__version__}) understands")
    return arrays, meta


def load_checkpoint(path, device: str | None = None, *, best: bool = False):
    """Read a checkpoint written by :func:`save_checkpoint` (or a run folder holding ``model.npz``).

    Parameters
    ----------
    path : str or os.PathLike
    device : {"cpu", "cuda"} or None
        Where to build the model (``None``: ``$MADE_NP_DEVICE`` or cpu).
    best : bool, default False
        Load the best weights of an unfinished run instead of its latest ones
        (a finished run's parameters are already its best).

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
        contents (one-line message naming the file).
    made_np.backend.BackendError
        Unusable device.
    """
    p = resolve_checkpoint_path(path)
    arrays, meta = _read_checkpoint(p)
    arrays.pop("config")
    try:
        model_config = MADEConfig.from_dict(meta["model"])
        train_config = TrainConfig.from_dict(meta["train"]) if meta.get("train") else None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{p}: invalid configuration in checkpoint ({exc})") from None
    xp = backend.get_xp(device)
    model = MADE(model_config, xp)
    params = {n: arrays[n] for n in model.param_names if n in arrays}
    missing = [n for n in model.param_names if n not in params]
    if missing:
        raise CheckpointError(f"{p}: checkpoint is missing parameter '{missing[0]}'")
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
    try:
        model.load_state_dict(best_params if (best and best_params is not None) else params)
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
    }
    return model, info
