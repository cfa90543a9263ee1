"""CPU threads: a persistent work pool, BLAS thread limits and the thread policy of a run.

NumPy releases the GIL inside its elementwise loops and BLAS calls, so work on
large arrays (optimiser updates, block products) can be split over CPU cores
with plain threads. These are speed tools only: every result the pool splits is
bitwise the same with one thread (tests/test_speedpaths.py, tests/test_blocked.py).
BLAS's own threads are not: a float32 product over more than 512 terms gives
other bits on two OpenBLAS threads, so ``--threads auto`` (:class:`ThreadChooser`,
which measures which count trains faster) keeps BLAS on one thread and changes
only the pool and numexpr.

The thread count of the pool is, in order: the innermost :func:`thread_policy`
of the running code (as :func:`use_threads` sets it), ``$MADE_NP_THREADS``, else
:func:`default_cpu_threads`. A thread variable set to nothing (or blanks) counts as unset
everywhere here (:func:`made_np.fast.unset_empty_thread_variables`). Nothing here writes
environment variables.
"""
from __future__ import annotations

import contextlib
import os
import queue
import re
import statistics
import sys
import threading
import time

import numpy as np

from .. import backend

_POOLS: dict = {}
_LIMIT: list = []  # stack of thread counts set by thread_policy
_BLAS: list = []  # stack of BLAS thread limits set by thread_policy


class ThreadError(ValueError):
    """A thread count that cannot be used (one-line message)."""


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
            threading.Thread(target=self._work, args=(inbox,), daemon=True, name="made-np-worker").start()

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
            exc = self._done.get()  # every worker's answer is taken, so the next run starts clean
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
    :data:`made_np.fast.BLAS_ENV_DEFAULTS`).
    """
    env = os.environ
    if "1" in (env.get("OPENBLAS_NUM_THREADS", "").strip(), env.get("OMP_NUM_THREADS", "").strip()):
        return True
    try:
        timeout = int(env.get("OPENBLAS_THREAD_TIMEOUT", ""))
    except ValueError:
        return False
    return timeout <= 16 and _uses_openblas()


def default_cpu_threads() -> int:
    """Threads for elementwise CPU work when nothing else decides.

    2 on a machine with at least two cores whose BLAS threads leave them idle
    between products (:func:`blas_leaves_cores_idle`), else 1: two threads only
    pay off when the second core is free (measured in docs/performance.md).
    """
    return 2 if (os.cpu_count() or 1) >= 2 and blas_leaves_cores_idle() else 1


def max_threads() -> int:
    """The most threads a thread count may ask for: the number of CPU cores."""
    return max(1, os.cpu_count() or 1)


def parse_threads(text, what: str = "--threads") -> int:
    """``"auto"`` -> 0; a positive integer, at most :func:`max_threads` -> itself.

    Raises
    ------
    ThreadError
        Anything else; the message names ``what``.
    """
    if str(text).strip().lower() == "auto":
        return 0
    try:
        n = int(str(text).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ThreadError(f"{what}: expected a positive integer or auto, got {text!r}")
    if n > max_threads():
        raise ThreadError(f"{what}: {n} threads asked for, but this machine has {max_threads()} "
                          f"CPU cores; give at most {max_threads()} (or auto)")
    return n


def cpu_threads() -> int:
    """Threads for elementwise CPU work: the active :func:`thread_policy`, ``$MADE_NP_THREADS``,
    else :func:`default_cpu_threads`.

    Raises
    ------
    ThreadError
        ``$MADE_NP_THREADS`` is not a positive integer or auto, or is more than the cores (as
        ``--threads``: 100000 failed to start its threads after minutes).
    """
    if _LIMIT and _LIMIT[-1]:
        return _LIMIT[-1]
    value = os.environ.get("MADE_NP_THREADS", "")
    n = parse_threads(value, "$MADE_NP_THREADS") if value.strip() else 0  # empty (or blanks): unset
    return n or default_cpu_threads()


#: Environment variables that libraries we load read as thread counts, and fail on (numexpr,
#: imported by a plotting or scikit-learn module, raised a bare "invalid literal for int()").
THREAD_VARIABLES = ("OMP_NUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS")


def check_thread_variables() -> None:
    """Refuse, before any work, a thread variable that is not a count (:data:`THREAD_VARIABLES`, and
    ``$MADE_NP_THREADS`` as :func:`cpu_threads` reads it), then import numexpr within the cores.

    numexpr (imported later by the optimiser kernels and the thread policy) reads its threads at
    import from $NUMEXPR_NUM_THREADS, else $OMP_NUM_THREADS, and its pool from $NUMEXPR_MAX_THREADS
    (else 64): more threads than its pool printed an error and ran on (OMP_NUM_THREADS=1000000, or a
    cluster's 128), a list (OpenMP's 4,2) was a bare int() error, and a pool of 1000000 killed the
    process. OpenBLAS and MKL cap such counts at the cores silently, and so does this: when a count
    is a list or out of 1..cores, numexpr is imported here with the counts capped (first of a list);
    the environment is left as it was.

    Raises
    ------
    ThreadError
        Naming the variable and the fix.
    """
    env = os.environ
    for name in THREAD_VARIABLES:
        value = env.get(name, "")
        if value.strip() and not re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", value):
            raise ThreadError(f"${name}={value!r}: expected a whole number of threads (OpenMP also takes a "
                              f"list such as 4,2); set it to one, or unset it")
    if env.get("MADE_NP_THREADS", "").strip():
        cpu_threads()
    if "numexpr" in sys.modules:
        return

    def capped(name, top):
        """The count of $name (a list: its first) within 1..top, and whether that changes it."""
        text = env.get(name, "").strip()
        if not text:
            return None, False
        first = text.split(",")[0].strip()
        n = min(max(int(first), 1), top) if len(first) < 10 else top  # (int() refuses 5000 digits)
        return n, text != str(n)

    pool, pool_off = capped("NUMEXPR_MAX_THREADS", max_threads())
    source = "NUMEXPR_NUM_THREADS" if env.get("NUMEXPR_NUM_THREADS", "").strip() else "OMP_NUM_THREADS"
    threads, threads_off = capped(source, min(max_threads(), pool or 64))
    if not (pool_off or threads_off):
        return
    saved = {name: env.get(name) for name in ("NUMEXPR_MAX_THREADS", "NUMEXPR_NUM_THREADS")}
    env.update({k: str(v) for k, v in (("NUMEXPR_MAX_THREADS", pool), ("NUMEXPR_NUM_THREADS", threads)) if v})
    try:
        numexpr_module()  # it reads them now, and only now (not installed: nothing reads them)
    finally:
        for name, value in saved.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value


def numexpr_module():
    """The numexpr module (imported on first use), or None when it is not installed."""
    try:
        import numexpr
    except ImportError:
        return None
    return numexpr


def work_pool(xp, threads: int | None = None):
    """A shared :class:`WorkPool` for splitting CPU work on ``xp``, or None.

    None on CuPy (the GPU runs elementwise work in parallel already) and when
    ``threads`` (default :func:`cpu_threads`) is 1.
    """
    if backend.native(xp) is not np:
        return None
    threads = cpu_threads() if threads is None else int(threads)
    if threads < 2:
        return None
    if threads not in _POOLS:
        _POOLS[threads] = WorkPool(threads)
    return _POOLS[threads]


def blas_limit() -> int | None:
    """BLAS's thread limit in the innermost :func:`thread_policy` (1 under ``auto``), None outside one."""
    return _BLAS[-1] if _BLAS else None


def split_matmul(pool: WorkPool, a, b):
    """``a @ b`` (2-D NumPy arrays) computed as :attr:`WorkPool.threads` column slices of the
    product side by side on ``pool``, for BLAS held to one thread (``--threads auto``).

    Each slice is one single-thread product over the whole inner dimension, so the result is
    bitwise that of the single-thread ``a @ b`` where BLAS sums each slice in the order of the
    whole (checked once per shape, :func:`_exact_split`; else the product is not split), while
    BLAS's own threads would give other bits.
    Slices are cut at multiples of 16 columns, each at least 16 wide (a one-column slice would be
    a matrix-vector product, summed in another order); fewer than 32 columns are not split.

    Parameters
    ----------
    pool : WorkPool
    a : ndarray, shape (m, k)
    b : ndarray, shape (k, n), any strides (a transposed view is fine)

    Returns
    -------
    ndarray, shape (m, n), C-contiguous, dtype of the product
    """
    n = b.shape[1]
    parts = min(pool.threads, n // 16)
    cuts = [n * i // parts // 16 * 16 for i in range(parts)] + [n]  # every slice >= 16 columns
    if parts < 2 or not _exact_split(a, b, cuts):
        return a @ b
    out = np.empty((a.shape[0], n), dtype=np.result_type(a, b))
    pool.run([lambda lo=lo, hi=hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi]) for lo, hi in zip(cuts, cuts[1:])])
    return out


_EXACT: dict = {}


def _exact_split(a, b, cuts) -> bool:
    """Whether slicing ``a @ b`` at ``cuts`` gives the bits of the whole product, tried once per
    shape, layout and dtype on random numbers: BLAS picks its kernel (and so its order of
    summation) by these alone, and OpenBLAS has another kernel for small products."""
    key = (a.shape, b.shape, a.strides[0] > a.strides[1], b.strides[0] > b.strides[1], a.dtype, b.dtype, tuple(cuts))
    if key not in _EXACT:
        rng, x, y = np.random.default_rng(0), np.empty_like(a), np.empty_like(b)  # a's and b's layouts
        x[...], y[...] = rng.standard_normal(a.shape), rng.standard_normal(b.shape)
        _EXACT[key] = bool(np.array_equal(x @ y, np.concatenate([x @ y[:, lo:hi] for lo, hi in zip(cuts, cuts[1:])],
                                                                  axis=1)))
    return _EXACT[key]


@contextlib.contextmanager
def blas_threads(limit: int, xp=np):
    """Within the block, BLAS runs on at most ``limit`` threads (NumPy only; via threadpoolctl).

    For code that runs small matrix products side by side on the threads of a
    :class:`WorkPool`, where BLAS's own threads only get in the way. Entering and
    leaving cost about 0.5 ms: wrap many steps, not one.
    """
    if backend.native(xp) is not np:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit, user_api="blas"):
        yield


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one), at most
    :func:`max_threads`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else max_threads()
    return max(1, min(cores, max_threads()))


def use_threads(n: int) -> None:
    """Size the work pool (:func:`cpu_threads`) and numexpr's threads to ``n`` inside the
    innermost :func:`thread_policy` (BLAS is left as the policy set it)."""
    _LIMIT[-1] = n
    numexpr = numexpr_module()
    if numexpr is not None:
        numexpr.set_num_threads(n)


class ThreadChooser:
    """The thread count of each training step: fixed, or measured (``--threads auto``).

    Measured, when given two candidates ``(1, N)``: the first ``2 * probe_steps`` steps
    alternate 1, N, 1, N, ... (so a load that changes during the probe biases neither), and
    the count with the lower median step time is kept, a tie (within ``margin``) going to 1. Then the steps run
    on it while the median of the last ``window`` step times is watched: when it moves away
    from the kept median by more than a factor ``drift`` (a load that starts or stops), or
    ``every`` steps after the decision (``first`` after the first one), the candidates are probed again. Every probe step is
    a real training step (none is repeated); the cost of a probe is the slower count's extra
    time on ``probe_steps`` steps. With one candidate (a fixed ``--threads k``, or one usable
    core) nothing is ever probed or switched. The count changes no number of the run
    (docs/performance.md, "Threads").

    Parameters
    ----------
    candidates : tuple of int
        ``(k,)``, or ``(1, N)`` to measure.
    switch : callable, optional
        ``switch(n)`` before a step that runs on another count than the one before.
    clock : callable, optional
        Default :func:`time.perf_counter`: seconds, read before and after each step (tests
        inject fake timings).
    probe_steps : int, default 3
        Steps per candidate in a probe (their median counts).
    window : int, default 16
        Steps whose median time is watched for drift.
    drift : float, default 1.5
        The factor of the window's median against the kept median that starts a probe.
    every : int, default 500
        Steps after a decision when the next probe starts whatever the times.
    first : int, default 50
        The same for the first decision, which is taken on a fit's first steps, the slowest
        (cold caches and buffers).
    margin : float, default 0.05
        N is kept only when its median is below 1's by more than this fraction: within it the
        counts tie (the work may not split at all: a small model's update) and 1 is kept.

    Attributes
    ----------
    current : int
        The kept count (the probe's candidates while probing).
    decisions : list of (int, int, dict)
        ``(step, threads, {count: median seconds})`` of every probe.
    """

    def __init__(self, candidates, switch=None, clock=None, probe_steps: int = 3,
                 window: int = 16, drift: float = 1.5, every: int = 500, margin: float = 0.05, first: int = 50):
        self.candidates = tuple(candidates)
        self.current = self._applied = self._last = self.candidates[0]
        self.switch, self.clock = switch, clock or time.perf_counter
        self.probe_steps, self.window, self.drift, self.every, self.first = probe_steps, window, drift, every, first
        self.margin = margin
        self.decisions, self.counts, self._steps = [], {}, 0
        self._plan, self._times, self._recent, self._reference, self._since = [], {}, [], None, 0
        if len(self.candidates) > 1:
            self._probe()

    def _probe(self) -> None:
        self._plan = list(self.candidates) * self.probe_steps
        self._times = {n: [] for n in self.candidates}

    @contextlib.contextmanager
    def step(self):
        """Around one training step: switches to its count, yields it, records its time."""
        n = self._plan[0] if self._plan else self.current
        if n != self._applied:
            if self.switch is not None:
                self.switch(n)
            self._applied = n
        t0 = self.clock()
        yield n
        self.record(n, self.clock() - t0)

    def record(self, n: int, seconds: float) -> None:
        """Count a step of ``seconds`` on ``n`` threads; decide or re-probe when it is time."""
        self.counts[n] = self.counts.get(n, 0) + 1
        self._last, self._steps = n, self._steps + 1
        if self._plan:
            self._plan.pop(0)
            self._times[n].append(seconds)
            if not self._plan:
                self._decide()
            return
        if len(self.candidates) == 1:
            return
        self._recent = (self._recent + [seconds])[-self.window:]
        self._since += 1
        ratio = statistics.median(self._recent) / self._reference if self._reference > 0 else 1.0
        if self._since >= (self.first if len(self.decisions) == 1 else self.every) or (len(self._recent) == self.window
                                         and not 1 / self.drift <= ratio <= self.drift):
            self._probe()

    def _decide(self) -> None:
        medians = {n: statistics.median(t) for n, t in self._times.items()}
        one, many = self.candidates
        self.current = many if medians[many] < (1 - self.margin) * medians[one] else one
        self._reference, self._recent, self._since = medians[self.current], [], 0
        self.decisions.append((self._steps, self.current, medians))

    def epoch_threads(self) -> int:
        """The count most steps ran on since the last call (a tie: the last one used)."""
        counts, self.counts = self.counts, {}
        if not counts or counts.get(self._last) == max(counts.values()):
            return self._last
        return max(counts, key=counts.get)


def chooser_for(n: int, switch=None, measure: bool = True) -> ThreadChooser:
    """The :class:`ThreadChooser` of a parsed thread count ``n`` (0: auto, measuring 1 against
    :func:`usable_cores` when ``measure`` and there are two or more; else one thread)."""
    if n:
        return ThreadChooser((n,), switch)
    cores = usable_cores() if measure else 1
    return ThreadChooser((1, cores) if cores > 1 else (1,), switch)


@contextlib.contextmanager
def thread_policy(threads="auto"):
    """Within the block, BLAS, numexpr and the work pool use ``threads`` CPU threads.

    Parameters
    ----------
    threads : int or "auto"
        A count (at most the number of cores), or ``"auto"``: BLAS on one thread (a
        float32 product's bits depend on OpenBLAS's thread count, docs/performance.md), and
        numexpr and the work pool on one thread until :func:`use_threads` changes them (as a
        :class:`ThreadChooser` does).

    Yields
    ------
    int
        The count, 0 for auto.

    Raises
    ------
    ThreadError
        An invalid count.
    """
    n = parse_threads(threads)
    from threadpoolctl import threadpool_limits

    numexpr = numexpr_module()
    before = numexpr.set_num_threads(n or 1) if numexpr is not None else None
    _LIMIT.append(n or 1)
    _BLAS.append(n or 1)
    try:
        with threadpool_limits(n or 1):
            yield n
    finally:
        _LIMIT.pop()
        _BLAS.pop()
        if numexpr is not None:
            numexpr.set_num_threads(before)
