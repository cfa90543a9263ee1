"""Optimisers against their textbook definitions, computed literally in the test.

* Adam: Kingma & Ba (2015), Algorithm 1, with ``m_hat = m / (1 - b1^t)`` and
  ``v_hat = v / (1 - b2^t)``; the engine uses the paper's efficient form (end of its
  Sec. 2), which must agree to 1e-12 in float64 over the first steps.
* SGD, with and without heavy-ball momentum (``v = mu v + g``, ``p -= lr v``) and coupled
  L2 weight decay (``g += wd p``).
* Adagrad (Duchi et al. 2011; MADE paper Sec. 6.1), as the paper's code has it:
  ``s += g^2``, ``p -= lr g / sqrt(s + eps)``.
Each is checked in three forms: the reference (:mod:`made_np.optim`), the in-place fast form
(:mod:`made_np.fast.optim`) and, where numexpr is installed, its fused kernels
(:func:`made_np.fast.kernels.fused_kernels`), which agree with the reference to ~1e-6 in
float32 over 10 steps; ``state_dict`` round trips resume exactly.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from made_np.fast.kernels import fused_kernels
from made_np.fast.optim import FAST_OPTIMIZERS, make_fast_optimizer
from made_np.config import TrainConfig
from made_np.optim import SGD, Adagrad, Adam, make_optimizer

P0 = [np.array([0.5, -1.0, 2.0, 0.0]), np.array([[0.3, -0.7], [1.5, 0.01]])]
GRADS = [  # three steps of fixed gradients for each of the two parameters
    [np.array([0.1, -0.2, 0.3, 0.0]), np.array([[1.0, -1.0], [0.0, 2.5]])],
    [np.array([-0.5, 0.4, 0.01, 1e-3]), np.array([[0.2, 0.0], [-3.0, 0.5]])],
    [np.array([1.0, 1.0, -2.0, 0.0]), np.array([[-0.4, 0.3], [0.6, 0.0]])],
]
#: "reference": made_np.optim; False: made_np.fast.optim without fused kernels; True: with them.
FUSED_OPTIONS = ["reference", False] + ([True] if fused_kernels(np, True) is not None else [])


def build(cls, params, fused, **kwargs):
    """The optimiser ``cls`` in the form ``fused`` (see :data:`FUSED_OPTIONS`)."""
    if fused == "reference":
        return cls(params, np, **kwargs)
    return FAST_OPTIMIZERS[cls](params, np, fused=fused, **kwargs)


def build_named(name, params, fused, **kwargs):
    if fused == "reference":
        return make_optimizer(name, params, np, **kwargs)
    return make_fast_optimizer(name, params, np, fused=fused, **kwargs)


def fresh_params(dtype=np.float64):
    return [p.astype(dtype, copy=True) for p in P0]


def run(opt, params, steps=GRADS):
    """Step through the fixed gradients (copies: an optimiser may overwrite them); yield params after each."""
    for gs in steps:
        opt.step([g.copy() for g in gs])
        yield [p.copy() for p in params]


# --------------------------------------------------------------------------- Adam


def adam_textbook(lr, b1, b2, eps, wd):
    p = fresh_params()
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    out = []
    for t, gs in enumerate(GRADS, start=1):
        for i, g0 in enumerate(gs):
            g = g0 + wd * p[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1 ** t)
            v_hat = v[i] / (1 - b2 ** t)
            p[i] = p[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append([x.copy() for x in p])
    return out


@pytest.mark.parametrize("fused", FUSED_OPTIONS)
@pytest.mark.parametrize("lr,betas,eps,wd", [
    (0.01, (0.9, 0.999), 1e-8, 0.0),
    (0.1, (0.5, 0.9), 1e-3, 0.0),  # a large eps: its bias correction (eps_t) must be exact
    (0.05, (0.8, 0.99), 1e-8, 0.1),
])
def test_adam_first_three_steps_match_algorithm_1(fused, lr, betas, eps, wd):
    params = fresh_params()
    opt = build(Adam, params, fused, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    assert (getattr(opt, "kernels", None) is not None) == (fused is True)
    expected = adam_textbook(lr, *betas, eps, wd)
    for t, (got, want) in enumerate(zip(run(opt, params), expected), start=1):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-12, err_msg=f"step {t}")
    assert opt.t == 3


def test_adam_first_step_is_lr_times_sign():
    """With bias correction the first Adam step is ``lr * g / (|g| + eps)``, about ``lr * sign(g)``."""
    p = [np.array([1.0, 1.0, 1.0])]
    build(Adam, p, False, lr=0.1).step([np.array([3.0, -1e-3, 0.0])])
    np.testing.assert_allclose(p[0], [0.9, 1.1, 1.0], atol=1e-6)


# --------------------------------------------------------------------------- SGD


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_sgd_matches_the_textbook(momentum, wd):
    lr = 0.1
    params = fresh_params()
    opt = SGD(params, np, lr=lr, momentum=momentum, weight_decay=wd)
    p = fresh_params()
    vel = [np.zeros_like(x) for x in p]
    for got, gs in zip(run(opt, params), GRADS):
        for i, g0 in enumerate(gs):
            g = g0 + wd * p[i]
            vel[i] = momentum * vel[i] + g if momentum else g
            p[i] = p[i] - lr * vel[i]
        for a, b in zip(got, p):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_sgd_hand_values_and_settable_lr():
    p = [np.array([1.0, 2.0])]
    opt = SGD(p, np, lr=0.5, momentum=0.5)
    opt.step([np.array([1.0, -2.0])])  # v = g; p -= 0.5 v
    np.testing.assert_allclose(p[0], [0.5, 3.0], atol=1e-15)
    opt.lr = 1.0  # a schedule changes lr between steps
    opt.step([np.array([1.0, -2.0])])  # v = 0.5 v + g = (1.5, -3)
    np.testing.assert_allclose(p[0], [-1.0, 6.0], atol=1e-15)


# --------------------------------------------------------------------------- Adagrad


@pytest.mark.parametrize("fused", FUSED_OPTIONS)
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_adagrad_matches_the_textbook(fused, wd):
    lr, eps = 0.1, 1e-6
    params = fresh_params()
    opt = build(Adagrad, params, fused, lr=lr, weight_decay=wd)
    assert opt.eps == 1e-6  # the MADE paper's value is the default
    p = fresh_params()
    s = [np.zeros_like(x) for x in p]
    for got, gs in zip(run(opt, params), GRADS):
        for i, g0 in enumerate(gs):
            g = g0 + wd * p[i]
            s[i] = s[i] + g * g
            p[i] = p[i] - lr * g / np.sqrt(s[i] + eps)
        for a, b in zip(got, p):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_adagrad_hand_values():
    p = [np.array([1.0])]
    opt = Adagrad(p, np, lr=1.0, eps=1e-30)  # eps > 0 is required; 9 + 1e-30 == 9 in float64
    opt.step([np.array([3.0])])  # s = 9: p -= 3 / 3
    opt.step([np.array([4.0])])  # s = 25: p -= 4 / 5
    assert p[0][0] == pytest.approx(1.0 - 1.0 - 0.8, abs=1e-15)


def test_adagrad_eps_inside_the_root_damps_tiny_gradients():
    """The paper's code: a gradient of 1e-5 on a fresh weight moves it by lr * 1e-5 / sqrt(1e-10 + 1e-6)
    (about lr / 100), where ``sqrt(s) + eps`` would move it by lr / 1.1."""
    p = [np.array([0.0, 0.0])]
    Adagrad(p, np, lr=0.1).step([np.array([1e-5, 1.0])])
    np.testing.assert_allclose(p[0], [-0.1 * 1e-5 / math.sqrt(1e-10 + 1e-6), -0.1 / math.sqrt(1.0 + 1e-6)],
                               rtol=1e-12)
    assert abs(p[0][0]) < 0.1 / 99


# --------------------------------------------------------------------------- fused vs reference, state


@pytest.mark.skipif(fused_kernels(np, True) is None, reason="no fused kernels here (numexpr not installed)")
@pytest.mark.parametrize("name,kwargs", [("adam", {"lr": 1e-2}), ("adam", {"lr": 1e-2, "weight_decay": 1e-3}),
                                         ("adagrad", {"lr": 0.05}), ("adagrad", {"lr": 0.05, "weight_decay": 1e-3})])
def test_fused_kernels_agree_with_the_reference_in_float32(name, kwargs):
    rng = np.random.default_rng(0)
    shapes = [(50, 40), (40,), (40, 10)]
    start = [rng.normal(size=s).astype(np.float32) for s in shapes]
    ref_p = [x.copy() for x in start]
    fus_p = [x.copy() for x in start]
    ref = build_named(name, ref_p, False, **kwargs)
    fus = build_named(name, fus_p, True, **kwargs)
    assert ref.kernels is None and fus.kernels is not None
    for _ in range(10):
        gs = [rng.normal(size=s).astype(np.float32) for s in shapes]
        ref.step([g.copy() for g in gs])
        fus.step([g.copy() for g in gs])
    for a, b, s in zip(ref_p, fus_p, start):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
        assert np.abs(a - s).max() > 1e-3  # the parameters really moved
    for k in ref.state:
        for a, b in zip(ref.state[k], fus.state[k]):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,kwargs", [("adam", {}), ("sgd", {"momentum": 0.9}), ("adagrad", {})])
@pytest.mark.parametrize("fused", FUSED_OPTIONS)
def test_state_dict_round_trip_resumes_exactly(name, kwargs, fused):
    params = fresh_params()
    opt = build_named(name, params, fused, lr=0.05, **kwargs)
    list(run(opt, params))
    state = opt.state_dict()
    assert state["t"] == 3 and state["lr"] == 0.05
    copy = [p.copy() for p in params]
    opt2 = build_named(name, copy, fused, lr=1.0, **kwargs)  # lr comes from the state
    opt2.load_state_dict(state)
    assert opt2.t == 3 and opt2.lr == 0.05
    for k in opt.state:
        for a, b in zip(opt.state[k], opt2.state[k]):
            assert np.array_equal(a, b)
    for a, b in zip(run(opt, params, GRADS[:2]), run(opt2, copy, GRADS[:2])):
        for x, y in zip(a, b):
            assert np.array_equal(x, y)
    # the state dict holds copies: later steps do not change it
    before = {k: np.array(v, copy=True) for k, v in state.items() if k not in ("t", "lr")}
    list(run(opt, params, GRADS[:1]))
    for k, v in before.items():
        assert np.array_equal(state[k], v)


def test_make_optimizer_defaults_and_errors():
    p = fresh_params()
    assert isinstance(make_optimizer("adam", p, np), Adam)
    # each optimiser declares its default learning rate, the recipe's (TrainConfig.resolved)
    assert {n: make_optimizer(n, p, np).lr for n in ("adam", "adagrad", "sgd")} == \
        {n: make_fast_optimizer(n, p, np).lr for n in ("adam", "adagrad", "sgd")} == \
        {n: TrainConfig(optimizer=n).resolved().lr for n in ("adam", "adagrad", "sgd")} == \
        {"adam": 2e-3, "adagrad": 1e-2, "sgd": 1e-2}
    assert make_optimizer("sgd", p, np, momentum=0.9).momentum == 0.9
    assert make_optimizer("adagrad", p, np, lr=0.3).lr == 0.3
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", p, np)
    with pytest.raises(ValueError, match="learning rate must be > 0"):
        make_optimizer("sgd", p, np, lr=0.0)
    with pytest.raises(ValueError, match="weight decay must be >= 0"):
        make_optimizer("adam", p, np, weight_decay=-1e-4)
    assert math.isclose(Adam(p, np).eps, 1e-8)
    for name, kwargs, fragment in [("sgd", {"momentum": 1.0}, "momentum must lie in"),
                                   ("adam", {"betas": (0.9, -0.1)}, "beta2 must lie in"),
                                   ("adam", {"eps": 0.0}, "eps must be > 0"),
                                   ("adagrad", {"eps": float("nan")}, "eps must be > 0")]:
        for make in (make_optimizer, make_fast_optimizer):
            with pytest.raises(ValueError, match=fragment):
                make(name, p, np, **kwargs)


@pytest.mark.parametrize("make", [make_optimizer, make_fast_optimizer])
def test_a_short_gradient_list_updates_nothing(make):
    """``zip`` would quietly leave the parameters without a gradient alone."""
    p = fresh_params()
    before = [a.copy() for a in p]
    opt = make("adam", p, np)
    with pytest.raises(ValueError, match=f"{len(p) - 1} gradients for {len(p)} parameters"):
        opt.step([np.ones_like(a) for a in p[:-1]])
    assert opt.t == 0 and all(np.array_equal(a, b) for a, b in zip(p, before))


@pytest.mark.parametrize("name,kwargs", [
    ("adam", {"lr": 0.05, "weight_decay": 1e-2}), ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2}),
    ("adagrad", {"lr": 0.3, "weight_decay": 1e-2}),
])
def test_fast_optimizers_equal_the_reference_in_float64(name, kwargs):
    """The in-place forms of made_np.fast.optim (Adam in its efficient bias-corrected form) take the
    reference's steps to 1e-12 in float64."""
    ref_p, fast_p = fresh_params(), fresh_params()
    ref = make_optimizer(name, ref_p, np, **kwargs)
    fast = make_fast_optimizer(name, fast_p, np, fused=False, **kwargs)
    for a, b in zip(run(ref, ref_p, GRADS * 3), run(fast, fast_p, GRADS * 3)):
        for pa, pb in zip(a, b):
            np.testing.assert_allclose(pb, pa, rtol=1e-12, atol=1e-14)
    assert max(np.abs(p - p0).max() for p, p0 in zip(ref_p, P0)) > 0.1  # it moved


@pytest.mark.parametrize("name,kwargs", [("adam", {"lr": 0.05}), ("adam", {"lr": 0.05, "weight_decay": 1e-2}),
                                         ("adagrad", {"lr": 0.3, "weight_decay": 1e-2})])
@pytest.mark.parametrize("threads", ["1", "2"])
def test_chunked_updates_equal_the_reference(name, kwargs, threads, monkeypatch):
    """Large parameters are updated in cache-sized chunks (made_np.fast.optim.CHUNK, here 3 entries
    so that small arrays are cut too); a Fortran-order array has no flat view and is updated whole."""
    from made_np.fast import optim as fast_optim

    monkeypatch.setenv("MADE_NP_THREADS", threads)
    monkeypatch.setattr(fast_optim, "CHUNK", 3)
    monkeypatch.setattr(fast_optim, "SPLIT_MIN_SIZE", 8)  # and split over the threads
    rng = np.random.default_rng(5)
    shapes = [(6, 7), (40,), (5, 3)]

    def params():
        ps = [np.random.default_rng(1).normal(size=s) for s in shapes]
        ps[2] = np.asfortranarray(ps[2])
        return ps

    grads = [[rng.normal(size=s) for s in shapes] for _ in range(3)]
    ref_p, fast_p = params(), params()
    ref = make_optimizer(name, ref_p, np, **kwargs)
    fast = make_fast_optimizer(name, fast_p, np, fused=False, **kwargs)
    assert len(list(fast_optim.chunks(*fast_p[:1]))) == 14  # 42 entries in chunks of 3
    assert len(list(fast_optim.chunks(fast_p[2], fast_p[2]))) == 1  # no flat view of a Fortran array
    for a, b in zip(run(ref, ref_p, grads), run(fast, fast_p, grads)):
        for pa, pb in zip(a, b):
            np.testing.assert_allclose(pb, pa, rtol=1e-12, atol=1e-14)
