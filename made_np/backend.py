"""The array-module switch: the one module that knows about CuPy.

Every compute module (layers, heads, model, optim, sampling) receives its array
module ``xp`` from here and calls only ``xp.*`` on arrays, so the same lines run
on NumPy (CPU) and CuPy (CUDA). Host copies happen only at the edges: loading
data (:func:`to_device`), and saving or printing (:func:`to_host`).

The device is chosen by the ``--device`` option of the CLI, else by the
``MADE_NP_DEVICE`` environment variable, else ``cpu``. CuPy is imported lazily,
only when ``cuda`` is asked for.
"""
from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading

# OpenBLAS's idle worker threads spin (busy-wait) for about 2^28 cycles, a tenth
# of a second, after every matrix product before they go to sleep. Training calls
# a product every few hundred microseconds, so the spinning thread never sleeps
# and holds a core through the elementwise work in between, where the CPU work
# pool below wants it. 2^10 cycles makes the pool pay off (1x500 MNIST step:
# 4.4 ms with 2 threads against 5.1 ms, see docs/performance.md) and cost nothing
# measurable elsewhere. OpenBLAS reads the variable when NumPy is first imported,
# so it is set (unless the user set it) only if NumPy is not loaded yet.
BLAS_ENV_DEFAULTS = {"OPENBLAS_THREAD_TIMEOUT": "10"}
_NUMPY_PRELOADED = "numpy" in sys.modules
if not _NUMPY_PRELOADED:
    for _name, _value in BLAS_ENV_DEFAULTS.items():
        os.environ.setdefault(_name, _value)

import numpy as np  # noqa: E402

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")


class BackendError(RuntimeError):
    """A device or dtype that cannot be used; the message is one user-facing line."""


def get_xp(device: str | None = None):
    """Return the array module for a device.

    Parameters
    ----------
    device : {"cpu", "cuda"} or None
        ``None`` reads ``$MADE_NP_DEVICE`` and falls back to ``"cpu"``.

    Returns
    -------
    module
        :mod:`numpy` for ``"cpu"``, :mod:`cupy` for ``"cuda"``.

    Raises
    ------
    BackendError
        Unknown device name, CuPy not installed, or no usable CUDA GPU.
    """
    device = (device or os.environ.get("MADE_NP_DEVICE") or "cpu").lower()
    if device == "cpu":
        return np
    if device != "cuda":
        raise BackendError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    try:
        import cupy
    except ImportError:
        raise BackendError(
            "--device cuda needs CuPy, which is not installed: pip install 'made-np[cuda]'"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BackendError(f"--device cuda: no usable CUDA GPU ({first_line})") from None
    if count < 1:
        raise BackendError("--device cuda: CuPy found no CUDA GPU")
    return cupy


def device_of(xp) -> str:
    """Name of the device an array module computes on: ``"cpu"`` or ``"cuda"``."""
    return "cpu" if xp is np else "cuda"


def resolve_dtype(dtype) -> np.dtype:
    """Check and return a floating dtype.

    Parameters
    ----------
    dtype : str or numpy dtype
        ``"float32"`` (the default everywhere) or ``"float64"`` (gradient checks).

    Raises
    ------
    BackendError
        For any other dtype.
    """
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise BackendError(f"unsupported dtype {name!r}: choose one of {', '.join(DTYPES)}")
    return np.dtype(name)


def host_rng(*seed) -> np.random.Generator:
    """A host random generator seeded by integers (weights and masks are drawn on the host,
    so CPU and GPU runs with the same seed start from the same numbers)."""
    return np.random.default_rng(list(seed))


def to_host(a) -> np.ndarray:
    """Copy an array (NumPy or CuPy) to a host :class:`numpy.ndarray` (no copy if already host)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):
        return a.get()
    return np.asarray(a)


def to_device(a, xp, dtype=None):
    """Copy a host array to the device of ``xp``, C-contiguous (row-major).

    A no-op for a NumPy array that is already C-contiguous with that dtype. Data
    stored column-major (the ``.npz`` of binarized MNIST is) are copied to row
    order once here: every minibatch is a gather of rows, which costs about
    0.44 ms per minibatch of 100 from a column-major (50000, 784) uint8 array
    against 0.02 ms from a row-major one, and the elementwise work on a batch
    is only SIMD-fast when the batch is row-major like the logits.
    """
    if getattr(a, "ndim", 1) == 0:
        return xp.asarray(a, dtype=dtype)
    return xp.ascontiguousarray(a, dtype=dtype)


def synchronize(xp) -> None:
    """Wait for queued device work (for honest timings); nothing to do on the CPU."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


# --------------------------------------------------------------------------- CPU threads
#
# NumPy releases the GIL inside its elementwise loops, so elementwise work on
# large arrays (the optimiser updates) can be split over CPU cores with plain
# threads. BLAS already uses every core for the matrix products; this pool only
# runs between them.

_POOLS: dict = {}


class WorkPool:
    """A persistent pool of worker threads that run thunks side by side.

    ``run([f0, f1, ...])`` runs ``f0`` on the calling thread and the others on the
    workers, and returns when all are done (re-raising the first exception).

    Parameters
    ----------
    threads : int
        Total number of threads, the caller's included (``>= 2``).
    """

    def __init__(self, threads: int):
        self.threads = int(threads)
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._inboxes = [queue.SimpleQueue() for _ in range(self.threads - 1)]
        self._done = queue.SimpleQueue()
        for inbox in self._inboxes:
            threading.Thread(target=self._work, args=(inbox,), daemon=True,
                             name="made-np-worker").start()

    def _work(self, inbox) -> None:
        while True:
            fn = inbox.get()
            try:
                fn()
            except BaseException as exc:  # handed back to the caller of run()
                self._done.put(exc)
            else:
                self._done.put(None)

    def run(self, fns) -> None:
        """Run the thunks ``fns`` (at most :attr:`threads`) concurrently; wait for all."""
        fns = list(fns)
        if len(fns) > self.threads:
            raise ValueError(f"{len(fns)} tasks for a pool of {self.threads} threads")
        if os.getpid() != self._pid:  # a forked child inherits the pool but not its threads
            self._start()
        for inbox, fn in zip(self._inboxes, fns[1:]):
            inbox.put(fn)
        error = None
        try:
            if fns:
                fns[0]()
        except BaseException as exc:
            error = exc
        for _ in fns[1:]:
            exc = self._done.get()
            error = error or exc
        if error is not None:
            raise error


def _uses_openblas() -> bool:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return "openblas" in str(blas.get("name", "")).lower()
    except Exception:  # an old NumPy without mode="dicts", or another layout
        return False


def blas_leaves_cores_idle() -> bool:
    """Whether BLAS leaves the other cores free between matrix products.

    True when BLAS is single-threaded (``OPENBLAS_NUM_THREADS=1`` or
    ``OMP_NUM_THREADS=1``), or when it is OpenBLAS with a short spin-wait
    (``OPENBLAS_THREAD_TIMEOUT <= 16``, in effect when NumPy was loaded; see
    :data:`BLAS_ENV_DEFAULTS`).
    """
    env = os.environ
    if "1" in (env.get("OPENBLAS_NUM_THREADS"), env.get("OMP_NUM_THREADS")):
        return True
    try:
        timeout = int(env.get("OPENBLAS_THREAD_TIMEOUT", ""))
    except ValueError:
        return False
    return timeout <= 16 and _uses_openblas()


def default_cpu_threads() -> int:
    """Threads for elementwise CPU work when ``$MADE_NP_THREADS`` is unset.

    2 on a machine with at least two cores whose BLAS threads leave them idle
    between products (:func:`blas_leaves_cores_idle`), else 1: two threads only
    pay off when the second core is free (measured in docs/performance.md).
    """
    return 2 if (os.cpu_count() or 1) >= 2 and blas_leaves_cores_idle() else 1


def cpu_threads() -> int:
    """Threads for elementwise CPU work: ``$MADE_NP_THREADS``, else :func:`default_cpu_threads`.

    Raises
    ------
    BackendError
        ``$MADE_NP_THREADS`` is not a positive integer.
    """
    value = os.environ.get("MADE_NP_THREADS")
    if value:
        threads = positive_int(value)
        if threads < 1:
            raise BackendError(f"MADE_NP_THREADS must be a positive integer, got {value!r}")
        return threads
    return default_cpu_threads()


def positive_int(text: str) -> int:
    """``text`` as a positive integer, or 0 when it is not one (callers word the error)."""
    try:
        n = int(str(text).strip())
    except ValueError:
        return 0
    return max(n, 0)


def work_pool(xp, threads: int | None = None):
    """A shared :class:`WorkPool` for splitting elementwise work on ``xp``, or None.

    None on CuPy (the GPU runs elementwise work in parallel already) and when
    ``threads`` (default :func:`cpu_threads`) is 1.
    """
    if xp is not np:
        return None
    threads = cpu_threads() if threads is None else int(threads)
    if threads < 2:
        return None
    if threads not in _POOLS:
        _POOLS[threads] = WorkPool(threads)
    return _POOLS[threads]


@contextlib.contextmanager
def blas_threads(limit: int, xp=np):
    """Within the block, BLAS runs on at most ``limit`` threads (NumPy only; via threadpoolctl).

    For code that runs small matrix products side by side on the threads of a
    :class:`WorkPool`, where BLAS's own threads only get in the way. Entering and
    leaving cost about 0.5 ms: wrap many steps, not one.
    """
    if xp is not np:
        yield
        return
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn; imported when needed

    with threadpool_limits(limits=limit, user_api="blas"):
        yield


def blocked_products(xp) -> bool:
    """Whether ``fit`` trains a single-mask model in its block-sparse form (:class:`made_np.model.BlockedMADE`).

    True on NumPy, where skipping the zero blocks of the sorted staircase masks takes
    a 1x500 MNIST step's products from 2.5 to 1.7 ms (docs/performance.md). False on CuPy
    until it is measured there: many small GEMMs can be slower on a GPU than one
    large one.
    """
    return xp is np


# --------------------------------------------------------------------------- fused kernels
#
# Optional accelerators for the elementwise work of an optimiser step. The plain
# array-module code in ``made_np.optim`` is the readable reference; these do the
# same arithmetic in one pass over memory. ``fused_kernels`` returns None when no
# accelerator applies, and the reference path is used.

_FUSED_CACHE: dict = {}


def fused_kernels(xp, enabled: bool | None = None):
    """Return fused elementwise kernels for ``xp``, or None.

    Parameters
    ----------
    xp : module
        NumPy (uses :mod:`numexpr` when installed) or CuPy (uses ``cupy.ElementwiseKernel``).
    enabled : bool or None
        ``None`` reads ``$MADE_NP_FUSED``: on CuPy the kernels are used unless it is
        ``0``; on NumPy only when it is ``1``, because on the CPU numexpr measured
        slower than NumPy's own SIMD loops for these cache-sized arrays (an Adam
        update of a 784x500 float32 matrix: 1.9 ms with numexpr's threads, 2.8 ms
        with one, against 0.6 ms for :class:`made_np.optim.Adam`'s reference path;
        see ``docs/performance.md``). ``False`` always returns None, ``True`` asks for them.

    Returns
    -------
    object or None
        An object with ``adam(p, g, m, v, beta1, beta2, step, eps, weight_decay)``,
        ``adagrad(p, g, s, lr, eps, weight_decay)`` updating ``p``, ``m``, ``v``, ``s`` in place.
    """
    if enabled is None:
        default = "0" if xp is np else "1"
        enabled = os.environ.get("MADE_NP_FUSED", default) != "0"
    if not enabled:
        return None
    key = device_of(xp)
    if key not in _FUSED_CACHE:
        _FUSED_CACHE[key] = _NumexprKernels.create() if xp is np else _CupyKernels.create(xp)
    return _FUSED_CACHE[key]


class _NumexprKernels:
    """numexpr versions of the optimiser updates (multi-threaded, one pass each)."""

    @classmethod
    def create(cls):
        try:
            import numexpr
        except ImportError:
            return None
        return cls(numexpr)

    def __init__(self, ne):
        self.ne = ne

    def adam(self, p, g, m, v, beta1, beta2, step, eps, weight_decay):
        ev = self.ne.evaluate
        c1 = p.dtype.type(1.0 - beta1)
        c2 = p.dtype.type(1.0 - beta2)
        b1, b2, wd = p.dtype.type(beta1), p.dtype.type(beta2), p.dtype.type(weight_decay)
        s, e = p.dtype.type(step), p.dtype.type(eps)
        if weight_decay:
            ev("b1 * m + c1 * (g + wd * p)", out=m, casting="same_kind")
            ev("b2 * v + c2 * (g + wd * p) ** 2", out=v, casting="same_kind")
        else:
            ev("b1 * m + c1 * g", out=m, casting="same_kind")
            ev("b2 * v + c2 * g * g", out=v, casting="same_kind")
        ev("p - s * m / (sqrt(v) + e)", out=p, casting="same_kind")

    def adagrad(self, p, g, s, lr, eps, weight_decay):
        ev = self.ne.evaluate
        t = p.dtype.type
        lr, e, wd = t(lr), t(eps), t(weight_decay)
        if weight_decay:
            ev("g + wd * p", out=g, casting="same_kind")
        ev("s + g * g", out=s, casting="same_kind")
        ev("p - lr * g / (sqrt(s) + e)", out=p, casting="same_kind")


class _CupyKernels:
    """CuPy ``ElementwiseKernel`` versions of the optimiser updates."""

    @classmethod
    def create(cls, cp):
        return cls(cp)

    def __init__(self, cp):
        self._adam = cp.ElementwiseKernel(
            "T g, T b1, T b2, T s, T e, T wd",
            "T p, T m, T v",
            """
            T gg = g + wd * p;
            m = b1 * m + (1 - b1) * gg;
            v = b2 * v + (1 - b2) * gg * gg;
            p -= s * m / (sqrt(v) + e);
            """,
            "made_np_adam",
        )
        self._adagrad = cp.ElementwiseKernel(
            "T g, T lr, T e, T wd",
            "T p, T s",
            """
            T gg = g + wd * p;
            s += gg * gg;
            p -= lr * gg / (sqrt(s) + e);
            """,
            "made_np_adagrad",
        )

    def adam(self, p, g, m, v, beta1, beta2, step, eps, weight_decay):
        t = p.dtype.type
        self._adam(g, t(beta1), t(beta2), t(step), t(eps), t(weight_decay), p, m, v)

    def adagrad(self, p, g, s, lr, eps, weight_decay):
        t = p.dtype.type
        self._adagrad(g, t(lr), t(eps), t(weight_decay), p, s)
