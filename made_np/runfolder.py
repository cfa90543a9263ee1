"""A run folder: its files, its one writer, and writes that never leave half a file.

A run folder holds a run's checkpoint ``model.npz`` (:mod:`made_np.checkpoint`), its
``metrics.csv``, ``results.json`` and figures. Every one of them is written through
:func:`atomic_file` (a temporary file in the same folder, then :func:`os.replace`), and
never through a symbolic link into another run's folder (:func:`other_run`).

A run folder has one writer at a time: :func:`run_lock` holds an exclusive lock on
``<folder>/.lock`` while a run writes there (:func:`made_np.train.fit` with
``out_dir`` takes it), and removes the temporary files that a killed writer left.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import glob
import json
import math
import os
import signal
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CHECKPOINT_NAME = "model.npz"
METRICS_NAME = "metrics.csv"
RESULTS_NAME = "results.json"
METRICS_COLUMNS = ("epoch", "train_nll", "valid_nll", "seconds")
#: Columns after those, blank in the rows of runs saved before they were recorded.
METRICS_EXTRA = (("train_seconds", "{:.3f}"), ("valid_seconds", "{:.3f}"), ("lr", "{:.6g}"), ("threads", "{}"))
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
    the symbolic link ``path`` leads to. A loop of links, or ``path`` or a link to a folder, a
    device, a pipe or a socket, is an ``OSError`` naming ``path`` (a rename would replace the
    device itself: ``/dev/null``); a link into another run's folder is a :class:`RunFolderError`
    (:func:`other_run`)."""
    why = other_run(path)
    if why:
        raise RunFolderError(f"{path}: {why}")
    if not path.is_symlink():
        if path.exists() and not path.is_file():
            raise OSError(errno.EINVAL, "not a regular file (a folder, a device, a pipe or a socket), which a "
                                        "write would replace", str(path))
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
    """Why writing ``path`` would change a run folder (a folder holding a checkpoint ``model.npz``),
    or ``""``: the file it writes (links followed) lies in such a folder that this thread does not
    hold (:func:`run_lock`) and ``path`` leads there through a symbolic link, or, for a command's
    output (``own``: the run folder of the command's checkpoint, given), it is one of a run's files
    (:data:`ATOMIC_FILES`), its own run's included: ``sample A --out A/loss.png`` replaced A's loss
    curve, even while A trained. A new file in a run's folder is fine. ``train --resume A`` whose
    ``model.npz`` was a link to run B's rewrote B without its lock."""
    path, target = Path(path), Path(os.path.realpath(path))
    folder = target.parent
    if not (folder / CHECKPOINT_NAME).is_file() or _holds(folder):
        return ""
    if os.path.realpath(path.parent) != str(folder) and (own is None or os.path.realpath(own) != str(folder)):
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
        umask = os.umask(0o022)  # read it (there is no other way), then put it back
        os.umask(umask)
        permissions = 0o666 & ~umask  # mkstemp makes 0600 files; a new one gets the usual permissions
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
    """Write ``metrics.csv`` atomically, lines ending in ``\n``: columns epoch, train_nll,
    valid_nll, seconds (the epoch's), train_seconds and valid_seconds (its steps', its
    validation's), lr (the epoch's learning rate) and threads (the CPU threads most of its steps ran on)."""
    with atomic_file(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(METRICS_COLUMNS + tuple(name for name, _ in METRICS_EXTRA))
        for r in rows:
            writer.writerow([r["epoch"], f"{r['train_nll']:.6f}", f"{r['valid_nll']:.6f}", f"{r['seconds']:.3f}"]
                            + [form.format(r[name]) if r.get(name) is not None else "" for name, form in METRICS_EXTRA])
    return Path(path)


def write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON (e.g. ``results.json``) atomically (:func:`json_text`: nothing
    is written when a value is NaN or infinite)."""
    text = json_text(obj, str(path), indent=2)
    with atomic_file(path, "w") as f:
        f.write(text)
    return Path(path)


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
    """NumPy numbers and arrays as JSON's (``json.dumps``' ``default``)."""
    if isinstance(o, (np.integer, np.floating)) or isinstance(o, np.ndarray) and o.ndim:
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")



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


def _lock_owner(path: Path):
    """``(pid, host)`` written in the lock file ``path`` (None where unreadable)."""
    try:
        owner = json.loads(path.read_text())
        return owner.get("pid"), owner.get("host")
    except (OSError, ValueError, AttributeError):
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
            os.close(fd)
            pid, host = _lock_owner(path)
            if pid is None:  # the holder has not written its pid yet
                time.sleep(0.01)
                pid, host = _lock_owner(path)
            who = (f"pid {pid}" if pid is not None else "pid unknown") + (
                f" on {host}" if host and host != socket.gethostname() else "")
            raise RunLockedError(f"{folder}: another made-np run ({who}) is writing to this folder; "
                                 "wait for it to end, or stop it, or use another folder",
                                 folder=folder, pid=pid, host=host) from None
        with contextlib.suppress(FileNotFoundError):  # unlinked while we waited: not the lock any more
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
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
        The folder cannot be created (a path under a file) or written (read-only), or a file the run
        writes (:data:`ATOMIC_FILES`) is a folder, a device, a pipe, a loop of links or another run's.
    """
    folder = Path(folder).expanduser()
    created = _create_folder(folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RunFolderError(f"{folder}: cannot write in the run folder (Permission denied)")
    key, me = os.path.realpath(folder), threading.get_ident()
    if _holds(folder):  # this thread holds it already (made-np train around fit)
        yield folder
        return
    for name in ATOMIC_FILES:  # refused now, not at the first checkpoint (nor after the training)
        try:
            _write_target(folder / name)  # another run's file (RunFolderError), a folder, a device, a loop
        except OSError as exc:
            raise RunFolderError(f"{folder / name}: {exc.strerror}: remove or rename it") from None
    path = folder / LOCK_NAME
    fd = _take_flock(path, folder)
    try:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
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
