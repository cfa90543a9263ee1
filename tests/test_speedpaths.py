"""The CPU speed paths give the same numbers as the plain reference code.

* :class:`made_np.threads.WorkPool` runs every task and re-raises errors;
* optimisers that split large parameters over the pool's threads give results
  identical (bitwise) to the one-thread update, for every optimiser;
* NumPy's fused (numexpr) kernels are off by default on the CPU (slower there).
"""
from __future__ import annotations

import numpy as np
import pytest

from made_np.fast import kernels, threads
from made_np.fast.kernels import FusedBernoulliHead, fused_kernels
from made_np.model import MADE, MADEConfig
from made_np.fast.optim import SPLIT_MIN_SIZE
from made_np.fast.optim import make_fast_optimizer as make_optimizer


def test_work_pool_runs_all_tasks_and_reraises():
    pool = threads.WorkPool(3)
    out = [0, 0, 0]

    def put(i):
        def f():
            out[i] = i + 10
        return f

    pool.run([put(0), put(1), put(2)])
    assert out == [10, 11, 12]

    def boom():
        raise RuntimeError("worker failed")

    with pytest.raises(RuntimeError, match="worker failed"):
        pool.run([put(0), boom])
    pool.run([put(1)])  # still usable afterwards
    with pytest.raises(ValueError, match="4 tasks for a pool of 3 threads"):
        pool.run([put(0)] * 4)


def test_work_pool_switch(monkeypatch):
    monkeypatch.setenv("MADE_NP_THREADS", "1")
    assert threads.work_pool(np) is None
    monkeypatch.setenv("MADE_NP_THREADS", "2")
    pool = threads.work_pool(np)
    assert pool is not None and pool.threads == 2 and threads.work_pool(np) is pool
    monkeypatch.setenv("MADE_NP_THREADS", "two")
    with pytest.raises(threads.ThreadError, match=r"\$MADE_NP_THREADS: expected a positive integer"):
        threads.cpu_threads()
    monkeypatch.setenv("MADE_NP_THREADS", "100000")  # started its threads for minutes, then a RuntimeError
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    with pytest.raises(threads.ThreadError, match=r"\$MADE_NP_THREADS: 100000 threads asked for, but this "
                                                  r"machine has 4 CPU cores; give at most 4 \(or auto\)"):
        threads.cpu_threads()


def test_fused_kernels_are_off_by_default_on_the_cpu(monkeypatch):
    monkeypatch.delenv("MADE_NP_FUSED", raising=False)
    assert kernels.fused_kernels(np) is None
    opt = make_optimizer("adam", [np.zeros(3)], np)
    assert opt.kernels is None


@pytest.mark.parametrize("name,kwargs", [
    ("adam", {"lr": 1e-2}), ("adam", {"lr": 1e-2, "weight_decay": 1e-3}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}), ("adagrad", {"lr": 0.05}),
])
@pytest.mark.parametrize("threads", [2, 3])
def test_split_updates_equal_one_thread_updates(monkeypatch, name, kwargs, threads):
    rng = np.random.default_rng(0)
    shapes = [(300, 250), (250,), (257, 301), (1, SPLIT_MIN_SIZE + 5)]
    start = [rng.normal(size=s).astype(np.float32) for s in shapes]
    one_p = [p.copy() for p in start]
    many_p = [p.copy() for p in start]
    monkeypatch.setattr("os.cpu_count", lambda: 4)  # 3 threads on a machine of fewer cores too
    monkeypatch.setenv("MADE_NP_THREADS", "1")
    one = make_optimizer(name, one_p, np, fused=False, **kwargs)
    monkeypatch.setenv("MADE_NP_THREADS", str(threads))
    many = make_optimizer(name, many_p, np, fused=False, **kwargs)
    assert one._parts is None and many._parts is not None
    assert len(many._parts) == threads
    for _ in range(4):
        grads = [rng.normal(size=s).astype(np.float32) for s in shapes]
        one.step([g.copy() for g in grads])
        many.step([g.copy() for g in grads])
    for a, b, s in zip(one_p, many_p, start):
        assert np.array_equal(a, b)
        assert np.abs(a - s).max() > 1e-3
    for key in one.state:
        for a, b in zip(one.state[key], many.state[key]):
            assert np.array_equal(a, b)


def test_training_steps_identical_with_and_without_threads(monkeypatch):
    """A few Adam steps of a MADE whose weight matrices are split over threads."""
    cfg = MADEConfig(D=300, hidden=(256,), seed=1)
    x = (np.random.default_rng(0).random((50, 300)) < 0.3).astype(np.uint8)
    params = []
    for threads in ("1", "2"):
        monkeypatch.setenv("MADE_NP_THREADS", threads)
        model = MADE(cfg)
        opt = make_optimizer("adam", model.params, np, lr=1e-2)
        assert (opt._parts is not None) == (threads == "2")
        for _ in range(3):
            model.loss_and_grad(x)
            opt.step(model.grads)
        params.append(model.params)
    for a, b in zip(*params):
        assert np.array_equal(a, b)


def test_bernoulli_head_split_over_threads_is_identical(monkeypatch):
    from made_np.fast.kernels import SPLIT_MIN_SIZE

    rng = np.random.default_rng(3)
    n = 2 * SPLIT_MIN_SIZE // 300 + 7  # enough entries to split, an odd number of rows
    z = (rng.normal(size=(n, 300)) * 5).astype(np.float32)
    x = (rng.random((n, 300)) < 0.4).astype(np.float32)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)  # 3 threads on a machine of fewer cores too
    monkeypatch.setenv("MADE_NP_THREADS", "1")
    one = FusedBernoulliHead(np)
    monkeypatch.setenv("MADE_NP_THREADS", "3")
    many = FusedBernoulliHead(np)
    assert one.pool is None and many.pool is not None
    nll1, g1 = one.nll_and_grad(z, x)
    nll3, g3 = many.nll_and_grad(z, x)
    assert nll3.shape == (n,) and g3.shape == z.shape and nll3.dtype == g3.dtype == np.float32
    assert np.array_equal(nll1, nll3) and np.array_equal(g1, g3)
    np.testing.assert_allclose(nll1, one.nll(z, x), rtol=1e-6)
    assert np.array_equal(one.nll(z, x), many.nll(z, x))


@pytest.mark.parametrize("env,cpus,expected", [
    ({"OPENBLAS_NUM_THREADS": "1"}, 2, 2),                 # single-threaded BLAS: the second core is free
    ({"OMP_NUM_THREADS": "1"}, 4, 2),
    ({"OPENBLAS_THREAD_TIMEOUT": "28"}, 2, 1),            # OpenBLAS threads spin ~0.1 s: no free core
    ({}, 2, 1),
    ({"OPENBLAS_NUM_THREADS": "1"}, 1, 1),                 # one core
    ({"OPENBLAS_THREAD_TIMEOUT": "zz"}, 2, 1),
    ({"MADE_NP_THREADS": " ", "OMP_NUM_THREADS": "", "OPENBLAS_NUM_THREADS": "1"}, 2, 2),  # blank: unset
])
def test_default_threads_follow_blas_settings(monkeypatch, env, cpus, expected):
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "MADE_NP_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: cpus)
    assert threads.default_cpu_threads() == expected
    assert threads.cpu_threads() == expected


def test_short_openblas_spin_enables_two_threads(monkeypatch):
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MADE_NP_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "10")
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert threads.default_cpu_threads() == (2 if threads._uses_openblas() else 1)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_work_pool_survives_fork():
    import os

    pool = threads.WorkPool(2)
    pool.run([lambda: None, lambda: None])  # threads started in the parent
    pid = os.fork()
    if pid == 0:  # child: the pool must restart its threads instead of hanging
        import signal

        signal.alarm(10)  # a hang kills the child (and fails the test) instead of the run
        out = []
        try:
            pool.run([lambda: out.append(1), lambda: out.append(2)])
            os._exit(0 if sorted(out) == [1, 2] else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_fused_kernels_switch(monkeypatch):
    assert fused_kernels(np, enabled=False) is None
    monkeypatch.setenv("MADE_NP_FUSED", "0")
    assert fused_kernels(np) is None
    monkeypatch.setenv("MADE_NP_FUSED", "1")
    k = fused_kernels(np)
    try:
        import numexpr  # noqa: F401
    except ImportError:
        assert k is None
    else:
        assert k is not None and hasattr(k, "adam") and hasattr(k, "adagrad")


def test_a_bank_caches_bool_masks_and_counts_them_at_a_byte_an_entry():
    """A bank's masks are kept as bool (a quarter of float32's memory: the 32 masks of a 1x8000 MNIST
    MADE with direct connections fit the cache); a fixed mask stays in the weights' dtype."""
    from made_np import limits

    bank = MADE(MADEConfig(D=6, hidden=(10,), num_masks=3, direct=True, context=2))
    single = MADE(MADEConfig(D=6, hidden=(10,), direct=True, dtype="float64"))
    assert [M.dtype for M in bank.mask(1)[1]] == [bool] * 3  # W1, V, A: the context blocks have no mask
    assert [M.dtype for M in single.mask(0)[1]] == [np.float64] * 3
    masked = 6 * 10 + 10 * 6 + 6 * 6
    assert bank._mask_bytes() == masked and single._mask_bytes() == 8 * masked
    assert 2 not in bank._mask_cache
    bank.mask(2)
    assert 2 in bank._mask_cache and bank._mask_cache[2][1][0].dtype == bool
    # the paper-size bank: 32 x (784*8000 + 8000*784 + 784*784) bytes, inside the cache
    assert 32 * (2 * 784 * 8000 + 784 * 784) <= limits.MASK_CACHE_BYTES < 32 * 4 * (2 * 784 * 8000)


@pytest.mark.parametrize("num_masks", [2, 3])
def test_a_bank_is_cached_only_when_all_its_masks_fit(num_masks, monkeypatch):
    """The cache holds a bank when num_masks sets of masks (156 bytes each here) fit in
    MASK_CACHE_BYTES, the limit included; a byte less and the masks are rebuilt at each change."""
    from made_np import limits

    cfg = MADEConfig(D=6, hidden=(10,), num_masks=num_masks, direct=True)
    assert MADE(cfg)._mask_bytes() == 6 * 10 + 10 * 6 + 6 * 6 == 156
    monkeypatch.setattr(limits, "MASK_CACHE_BYTES", num_masks * 156)
    assert MADE(cfg)._cache_masks
    monkeypatch.setattr(limits, "MASK_CACHE_BYTES", num_masks * 156 - 1)
    assert not MADE(cfg)._cache_masks


# --------------------------------------------------------------------------- the measured thread policy


class FakeClock:
    """Each read moves time on by ``cost(n)``, ``n`` the chooser's count now: a step's time is its cost."""

    def __init__(self, cost):
        self.cost, self.t, self.chooser = cost, 0.0, None

    def __call__(self):
        self.t += self.cost(self.chooser._applied) if self.chooser is not None else 0.0
        return self.t


def chooser(cost, candidates=(1, 2), **kw):
    """A ThreadChooser timed by ``cost(n, step)``; returns it and the list of its switches."""
    switches, steps = [], [0]
    clock = FakeClock(lambda n: cost(n, steps[0]))
    c = threads.ThreadChooser(candidates, switch=switches.append, clock=clock, **kw)
    clock.chooser = c
    return c, switches, steps


def run_steps(c, steps, k):
    """``k`` steps; the counts they ran on."""
    used = []
    for _ in range(k):
        with c.step() as n:
            used.append(n)
        steps[0] += 1
    return used


@pytest.mark.parametrize("faster", [1, 2])
def test_auto_alternates_then_keeps_the_faster_count(faster):
    c, switches, steps = chooser(lambda n, i: 1.0 if n == faster else 2.5)
    used = run_steps(c, steps, 10)
    assert used == [1, 2, 1, 2, 1, 2] + [faster] * 4  # 1, N, 1, N, ...: a load change biases neither
    assert c.decisions == [(6, faster, {1: 1.0 if faster == 1 else 2.5, 2: 1.0 if faster == 2 else 2.5})]
    assert switches == [2, 1, 2, 1, 2] + ([1] if faster == 1 else [])  # switched only when the count changes
    assert c.epoch_threads() == faster and c.epoch_threads() == faster  # most steps (then: the last one)


def test_auto_ties_to_one_thread_and_a_slow_first_step_does_not_decide():
    c, _, steps = chooser(lambda n, i: 1.0)
    assert run_steps(c, steps, 8)[6:] == [1, 1]
    c, _, steps = chooser(lambda n, i: 1.0 if n == 1 else 0.96)  # within the 5% margin: a tie
    assert run_steps(c, steps, 8)[6:] == [1, 1]
    c, _, steps = chooser(lambda n, i: 1.0 if n == 1 else 0.94)
    assert run_steps(c, steps, 8)[6:] == [2, 2]
    c, _, steps = chooser(lambda n, i: 50.0 if i == 0 else (1.0 if n == 1 else 1.2))  # warm-up step on 1
    run_steps(c, steps, 6)
    assert c.current == 1  # the median of 3 leaves the outlier out


def test_auto_probes_again_once_warm():
    """The first probe is on a process's slowest steps (cold caches: two threads tie with one), so it
    is taken again after ``first`` = 50 steps, then every 500."""
    c, _, steps = chooser(lambda n, i: 1.0 if i < 6 else (1.0 if n == 1 else 0.7))
    used = run_steps(c, steps, 6 + 50 + 6 + 10)
    assert used[6:56] == [1] * 50 and used[-10:] == [2] * 10
    assert [d[:2] for d in c.decisions] == [(6, 1), (62, 2)]
    run_steps(c, steps, 62 + 500 - 72)
    assert len(c.decisions) == 2  # then every 500 steps
    run_steps(c, steps, 6)
    assert [d[:2] for d in c.decisions][-1] == (62 + 500 + 6, 2)


def test_auto_follows_a_load_that_starts_and_stops():
    load = {"on": False}

    def cost(n, i):  # idle: 2 threads faster; loaded: 2 threads collapse, 1 thread barely moves
        return {1: 1.0, 2: 6.0 if load["on"] else 0.6}[n] * (1.1 if load["on"] and n == 1 else 1.0)

    c, _, steps = chooser(cost, window=4, drift=1.5, every=1000)
    run_steps(c, steps, 10)
    assert c.current == 2 and len(c.decisions) == 1
    load["on"] = True
    used = run_steps(c, steps, 2 + 6 + 3)  # half the window of 4 drifts (6.0 / 0.6), then a probe of 6 steps
    assert used[:2] == [2] * 2 and used[2:8] == [1, 2, 1, 2, 1, 2] and used[8:] == [1, 1, 1]
    step, n, medians = c.decisions[-1]
    assert (step, n) == (18, 1) and medians == pytest.approx({1: 1.1, 2: 6.0})
    load["on"] = False  # 1 thread gets only a little faster (1.1 -> 1.0): no drift, the periodic probe finds it
    c.every = 5
    used = run_steps(c, steps, 5 + 6 + 2)
    assert used[-2:] == [2, 2] and c.current == 2 and len(c.decisions) == 3


def test_a_fixed_count_or_a_single_core_never_probes(monkeypatch):
    c, switches, steps = chooser(lambda n, i: float(i % 7), candidates=(2,))
    assert run_steps(c, steps, 600) == [2] * 600 and switches == [] and c.decisions == []
    assert threads.chooser_for(2).candidates == (2,)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert threads.usable_cores() == 1 and threads.chooser_for(0).candidates == (1,)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 3}, raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.usable_cores() == 2 and threads.chooser_for(0).candidates == (1, 2)
    assert threads.chooser_for(0, measure=False).candidates == (1,)  # an engine with nothing to split


@pytest.mark.parametrize("num_masks", [1, 4])
def test_fit_with_auto_gives_the_parameters_of_one_thread(monkeypatch, num_masks):
    """Auto made to pick 2 threads (fake timings): the blocked form (one mask) and a bank train to the same bits.

    D=600: the first product sums over 600 > 512 inputs, where OpenBLAS 0.3.31's float32 bits depend on
    its thread count (SkylakeX kernels); the output layer has 4 column blocks, whose sums depend on
    their grouping."""
    from made_np.data import Dataset
    from made_np.train import TrainConfig, fit

    real = threads.chooser_for
    made = []

    def faster_with_two(n, switch=None, measure=True):
        c = real(n, switch, measure)
        c.clock = FakeClock(lambda k: 1.0 if k == 2 else 2.0)
        c.clock.chooser = c
        made.append(c)
        return c

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "chooser_for", faster_with_two)
    x = (np.random.default_rng(0).random((460, 600)) < 0.3).astype(np.uint8)
    data = Dataset("t", x[:400], x[400:430], x[430:], 2, None)
    params, rows = [], []
    for t in (1, "auto"):
        model = MADE(MADEConfig(D=600, hidden=(300,), seed=0, num_masks=num_masks, order_agnostic=False))
        rows.append(fit(model, data, TrainConfig(epochs=2, batch_size=40, seed=0), threads=t)["rows"])
        params.append(model.params)
    assert made[-1].decisions[0][1] == 2 and [r["threads"] for r in rows[1]] == [2, 2]
    assert [r["threads"] for r in rows[0]] == [1, 1]
    for a, b in zip(*params):
        assert np.array_equal(a, b)
    assert [r["valid_nll"] for r in rows[0]] == [r["valid_nll"] for r in rows[1]]
    assert all("product" not in vars(layer) for layer in model._all_layers)  # the pool stays with training


@pytest.mark.parametrize("m, k, n", [(100, 784, 500), (784, 100, 500), (100, 500, 784), (1, 784, 500),
                                     (100, 600, 33), (100, 600, 17), (7, 5, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_products_are_bitwise_the_one_thread_product(m, k, n, dtype):
    """A bank's products cut into column slices side by side (BLAS on one thread, --threads auto):
    the bits of the one-thread product, transposed operands included; a shape whose slices BLAS
    would sum in another order (OpenBLAS's kernel for small products: 100 x 600 x 16) is not cut."""
    from threadpoolctl import threadpool_limits

    rng, pool = np.random.default_rng(0), threads.WorkPool(2)
    a, b = rng.random((m, k)).astype(dtype), rng.random((k, n)).astype(dtype)
    with threadpool_limits(1, user_api="blas"):
        for x, y in ((a, b), (np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T)):
            out = threads.split_matmul(pool, x, y)
            assert out.dtype == dtype and out.flags.c_contiguous and np.array_equal(out, x @ y)
