"""Output heads (paper eq. 3 and its softmax generalisation) and ancestral sampling (Sec. 4).

* Bernoulli head: ``NLL = sum_d softplus(z_d) - x_d z_d`` in nats, gradient ``sigmoid(z) - x``,
  stable for huge |z| (no inf, nan or floating-point warning), samples ``1[u < sigmoid(z)]``.
* Categorical head: ``NLL = -sum_d log softmax(z_d)[x_d]`` with variable-major logits
  ``z[:, d*C + c]``, gradient ``softmax(z_d) - onehot(x_d)``, inverse-CDF samples on fixed u.
* Sampling: the empirical frequencies of ``sample_naive`` match ``exp(-NLL)`` of a tiny model
  (chi-square test at a fixed seed), for both heads and a non-natural ordering.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from conftest import all_configurations, randomize_weights
from made_np.heads import BernoulliHead, CategoricalHead, log_softmax, make_head
from made_np.model import MADE, MADEConfig
from made_np.sampling import draw_noise, sample, sample_naive


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------- Bernoulli


def test_bernoulli_zero_logits_cost_log2_per_dimension():
    head = BernoulliHead(np)
    z = np.zeros((3, 5))
    x = np.array([[0, 1, 0, 1, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=np.float64)
    np.testing.assert_allclose(head.nll(z, x), [5 * math.log(2)] * 3, rtol=1e-15)
    nll, g = head.nll_and_grad(z, x)
    np.testing.assert_allclose(nll, [5 * math.log(2)] * 3, rtol=1e-15)
    np.testing.assert_array_equal(g, 0.5 - x)


def test_bernoulli_hand_values():
    head = BernoulliHead(np)
    z = np.array([[2.0, -1.0]])
    x = np.array([[1.0, 0.0]])
    expected = math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))
    nll, g = head.nll_and_grad(z, x)
    assert nll[0] == pytest.approx(expected, rel=1e-15)
    np.testing.assert_allclose(g, [[sigmoid(2.0) - 1.0, sigmoid(-1.0)]], rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bernoulli_huge_logits_are_stable(dtype):
    head = BernoulliHead(np)
    z = np.array([[1e4, -1e4, 1e30, -1e30, 88.0, -104.0]], dtype=dtype)
    right = np.array([[1, 0, 1, 0, 1, 0]], dtype=dtype)  # confident and right: NLL ~ 0
    wrong = 1 - right  # confident and wrong: NLL = sum |z|
    # underflow of exp(-|z|) to 0 is the intended, harmless outcome; anything else must not happen
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        nll_r, g_r = head.nll_and_grad(z, right)
        nll_w, g_w = head.nll_and_grad(z, wrong)
        s = head.sample(z, np.full(z.shape, 0.5))
    for a in (nll_r, g_r, nll_w, g_w):
        assert np.all(np.isfinite(a))
    assert 0.0 <= float(nll_r[0]) < 1e-30
    assert float(nll_w[0]) == pytest.approx(float(np.abs(z).astype(np.float64).sum()), rel=1e-6)
    np.testing.assert_allclose(g_r, 0.0, atol=1e-30)
    np.testing.assert_allclose(g_w, [[1, -1, 1, -1, 1, -1]], atol=1e-30)  # sigmoid(z) - x
    assert s.tolist() == [[1, 0, 1, 0, 1, 0]]


def test_bernoulli_gradient_matches_finite_differences():
    head = BernoulliHead(np)
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (4, 6))
    x = (rng.random((4, 6)) < 0.5).astype(np.float64)
    _, g = head.nll_and_grad(z, x)
    h = 1e-6
    for i in range(4):
        for d in range(6):
            zp, zm = z.copy(), z.copy()
            zp[i, d] += h
            zm[i, d] -= h
            fd = (head.nll(zp, x)[i] - head.nll(zm, x)[i]) / (2 * h)
            assert abs(fd - g[i, d]) < 1e-8


def test_bernoulli_sample_thresholds():
    head = BernoulliHead(np)
    z = np.array([[0.0, 0.0, 50.0, -50.0, math.log(3.0)]])  # sigmoid(log 3) = 0.75
    u = np.array([[0.49, 0.5, 0.999, 0.001, 0.7499]])
    s = head.sample(z, u)
    assert s.dtype == np.uint8
    assert s.tolist() == [[1, 0, 1, 0, 1]]
    assert head.sample(z[:, 4:], np.array([[0.7501]])).tolist() == [[0]]


def test_bernoulli_thresholds_are_the_logits_of_u_and_finite_at_zero():
    """``t = log u - log1p(-u)``; u = 0 is clipped to the smallest normal double (t = -708.4), not -inf with
    a divide-by-zero warning."""
    t = BernoulliHead(np).thresholds(np.array([0.0, 0.25, 0.5, 0.75]))
    tiny = 2.2250738585072014e-308
    np.testing.assert_allclose(t, [math.log(tiny), -math.log(3.0), 0.0, math.log(3.0)], rtol=1e-15, atol=1e-15)


# --------------------------------------------------------------------------- categorical


def test_categorical_zero_logits_cost_logC_per_dimension():
    head = CategoricalHead(np, 4)
    x = np.array([[0, 3, 1], [2, 2, 2]])
    z = np.zeros((2, 3 * 4))
    nll, g = head.nll_and_grad(z, x)
    np.testing.assert_allclose(nll, [3 * math.log(4)] * 2, rtol=1e-15)
    onehot = np.eye(4)[x].reshape(2, 12)
    np.testing.assert_allclose(g, 0.25 - onehot, atol=1e-16)
    np.testing.assert_allclose(head.nll(z, x), nll, rtol=1e-15)


def test_categorical_hand_values_variable_major():
    head = CategoricalHead(np, 3)
    # variable 0: probabilities (1/6, 1/3, 1/2); variable 1: (1/4, 1/4, 1/2)
    z = np.log(np.array([[1.0, 2.0, 3.0, 1.0, 1.0, 2.0]]))
    x = np.array([[0, 2]])
    nll, g = head.nll_and_grad(z, x)
    assert nll[0] == pytest.approx(math.log(6) + math.log(2), rel=1e-14)
    np.testing.assert_allclose(g, [[1 / 6 - 1, 1 / 3, 1 / 2, 1 / 4, 1 / 4, 1 / 2 - 1]], atol=1e-15)
    assert head.nll(z, np.array([[2, 0]]))[0] == pytest.approx(math.log(2) + math.log(4), rel=1e-14)


def test_categorical_gradient_matches_finite_differences():
    head = CategoricalHead(np, 5)
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (3, 4 * 5))
    x = rng.integers(0, 5, (3, 4))
    _, g = head.nll_and_grad(z, x)
    h = 1e-6
    for i in range(3):
        for k in range(20):
            zp, zm = z.copy(), z.copy()
            zp[i, k] += h
            zm[i, k] -= h
            fd = (head.nll(zp, x)[i] - head.nll(zm, x)[i]) / (2 * h)
            assert abs(fd - g[i, k]) < 1e-8


def test_categorical_huge_logits_are_stable():
    head = CategoricalHead(np, 3)
    z = np.array([[1000.0, -1000.0, 0.0, -5e4, 5e4, 5e4]])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        nll, g = head.nll_and_grad(z, np.array([[0, 1]]))
        s = head.sample(z, np.array([[0.3, 0.7]]))
    assert np.all(np.isfinite(nll)) and np.all(np.isfinite(g))
    assert nll[0] == pytest.approx(math.log(2), rel=1e-12)  # variable 1: two tied classes
    assert s.tolist() == [[0, 2]]


def test_categorical_inverse_cdf_sampling_on_fixed_u():
    head = CategoricalHead(np, 3)
    z = np.tile(np.log([1.0, 2.0, 3.0]), (6, 1))  # cumulative (1/6, 1/2, 1)
    u = np.array([[0.0], [0.1], [0.17], [0.49], [0.51], [0.999999]])
    s = head.sample(z, u)
    assert s.dtype == np.int64
    assert s[:, 0].tolist() == [0, 0, 1, 1, 2, 2]
    # two variables at once, variable-major logits
    z2 = np.log(np.array([[1.0, 2.0, 3.0, 3.0, 2.0, 1.0]]))  # second: cumulative (1/2, 5/6, 1)
    assert head.sample(z2, np.array([[0.6, 0.6]])).tolist() == [[2, 1]]
    # exact boundaries (p = 1/2, 1/4 are exact in binary): the class whose cumulative
    # probability *exceeds* u, so u equal to a cumulative sum moves to the next class
    z3 = np.array([[0.0, 0.0, 0.0, 0.0, math.log(2.0), 0.0]])  # (1/2, 1/2) and (1/4, 1/2, 1/4)
    head2 = CategoricalHead(np, 2)
    assert head2.sample(z3[:, :2], np.array([[0.5]])).tolist() == [[1]]
    assert head2.sample(z3[:, :2], np.array([[np.nextafter(0.5, 0)]])).tolist() == [[0]]
    assert head.sample(z3[:, 3:], np.array([[0.25]])).tolist() == [[1]]
    assert head.sample(z3[:, 3:], np.array([[0.75]])).tolist() == [[2]]
    assert head.sample(z3[:, 3:], np.array([[0.0]])).tolist() == [[0]]


def test_categorical_draw_stays_a_class_when_float32_probabilities_sum_below_u():
    """float32 softmax probabilities (0.7434, 0.2548, 1.8e-3) sum to 1 - 1.2e-7: a u above that sum draws the
    last class (C - 1), not the class index C."""
    head = CategoricalHead(np, 3)
    z = np.array([[3.9120001792907715, 2.841242790222168, -2.111205816268921]], dtype=np.float32)
    assert float(np.cumsum(np.exp(log_softmax(np, z)))[-1]) < 1 - 1e-7
    assert head.sample(z, np.array([[1 - 1e-9]])).tolist() == [[2]]


def test_make_head_and_errors():
    assert isinstance(make_head("bernoulli", np), BernoulliHead)
    cat = make_head("categorical", np, 7)
    assert isinstance(cat, CategoricalHead) and cat.C == 7 and cat.logits_per_variable == 7
    with pytest.raises(ValueError, match="at least 2 classes"):
        make_head("categorical", np, 1)
    with pytest.raises(ValueError, match="unknown head 'laplace'"):
        make_head("laplace", np)


# --------------------------------------------------------------------------- sampling


def chi_square(samples: np.ndarray, classes: int, probs: np.ndarray) -> float:
    """Pearson's statistic of sample counts over every configuration against ``probs``."""
    D = samples.shape[1]
    codes = (samples.astype(np.int64) * classes ** np.arange(D - 1, -1, -1)).sum(axis=1)
    counts = np.bincount(codes, minlength=classes ** D)
    expected = probs * samples.shape[0]
    return float(((counts - expected) ** 2 / expected).sum())


# 99.99% quantiles of chi-square with 7 and 8 degrees of freedom are 29.9 and 31.8
@pytest.mark.parametrize(
    "cfg,limit",
    [
        (MADEConfig(D=3, hidden=(6,), num_masks=2, ordering="random", seed=4, dtype="float64"), 29.9),
        (MADEConfig(D=2, hidden=(5, 4), classes=3, head="categorical", input_encoding="onehot",
                    given_ordering=(2, 1), direct=True, seed=2, dtype="float64"), 31.8),
    ],
    ids=["bernoulli", "categorical"],
)
def test_sample_naive_frequencies_match_the_model(cfg, limit):
    model = MADE(cfg)
    mask = 1 if cfg.num_masks > 1 else 0
    if mask:
        assert not np.array_equal(model.mask(mask)[0].ordering, np.arange(1, cfg.D + 1))
    randomize_weights(model, 6, scale=1.5)
    probs = np.exp(-model.nll(all_configurations(cfg.D, cfg.classes), mask=mask))
    assert abs(probs.sum() - 1) < 1e-9 and probs.min() > 0.005  # every cell gets counts
    n = 40000
    x = sample_naive(model, n, seed=123, mask=mask)
    assert x.shape == (n, cfg.D)
    assert x.dtype == (np.uint8 if cfg.head == "bernoulli" else np.int64)
    assert x.min() >= 0 and x.max() < cfg.classes
    assert chi_square(x, cfg.classes, probs) < limit
    # power: the same samples against a different (uniform) distribution are rejected
    assert chi_square(x, cfg.classes, np.full(probs.shape, 1 / probs.size)) > 10 * limit


def test_sampling_is_deterministic_in_its_noise():
    model = MADE(MADEConfig(D=6, hidden=(8,), seed=0))
    randomize_weights(model, 0)
    a = sample(model, 50, seed=9, method="naive")
    b = sample_naive(model, noise=draw_noise(50, 6, 9, np))
    c = sample(model, 50, seed=10, method="naive")
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    u = draw_noise(4, 6, 1, np)
    assert u.shape == (4, 6) and u.dtype == np.float64 and u.min() >= 0 and u.max() < 1
    with pytest.raises(ValueError, match="unknown sampling method 'bogus'"):
        sample(model, 5, method="bogus")


def test_fused_bernoulli_head_equals_the_reference():
    from made_np.fast.kernels import FusedBernoulliHead

    rng = np.random.default_rng(0)
    z = rng.normal(scale=6.0, size=(40, 131))
    x = (rng.random((40, 131)) < 0.3).astype(np.float64)
    ref, fused = BernoulliHead(np), FusedBernoulliHead(np)
    np.testing.assert_allclose(fused.nll(z, x), ref.nll(z, x), rtol=1e-12, atol=1e-12)
    (n1, g1), (n2, g2) = ref.nll_and_grad(z, x), fused.nll_and_grad(z.copy(), x)
    np.testing.assert_allclose(n2, n1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-15)


def test_fused_bernoulli_float32_at_mnist_width_matches_float64():
    """D = 784, logits near 0 (every factor 1 + exp(-|z|) near 2): the pairwise products must not
    overflow float32, and the NLL matches a float64 reference to float32 precision."""
    from made_np.fast.kernels import FusedBernoulliHead

    rng = np.random.default_rng(1)
    z64 = rng.normal(scale=1e-3, size=(50, 784))
    x = (rng.random((50, 784)) < 0.13).astype(np.float32)
    expected = BernoulliHead(np).nll(z64, x.astype(np.float64))
    for got in (FusedBernoulliHead(np).nll(z64.astype(np.float32), x),
                FusedBernoulliHead(np).nll_and_grad(z64.astype(np.float32), x)[0],
                BernoulliHead(np).nll(z64.astype(np.float32), x)):
        assert got.dtype == np.float32 and np.isfinite(got).all()
        np.testing.assert_allclose(got, expected, rtol=2e-6)


@pytest.mark.parametrize("encoding,classes,expected", [
    ("binary", 2, [[0.0, 1.0]]),
    ("raw", 4, [[0.0, 3.0]]),
    ("scaled", 4, [[0.0, 1.0]]),            # class C-1 maps to exactly 1.0
    ("onehot", 3, [[1, 0, 0, 0, 0, 1]]),
])
def test_encode_values(encoding, classes, expected):
    head = "bernoulli" if classes == 2 else "categorical"
    model = MADE(MADEConfig(D=2, hidden=(3,), classes=classes, head=head, input_encoding=encoding))
    inputs, targets = model.encode(np.array([[0, classes - 1]], dtype=np.int64))
    np.testing.assert_array_equal(inputs, np.array(expected, dtype=np.float32))
    assert inputs.dtype == np.float32
    np.testing.assert_array_equal(targets, [[0, classes - 1]])


# --------------------------------------------------------------------------- marginal logits


def test_marginal_logits_are_the_smoothed_frequencies_by_hand():
    """Counts (D=2, C=2) [[3, 1], [0, 4]] of N = 4 rows: p_d(1) = (n_d1 + 1/2) / (N + 1) =
    1.5 / 5 and 4.5 / 5, so the Bernoulli logits are log(1.5 / 3.5) and log(4.5 / 0.5)."""
    head = BernoulliHead(np, 2)
    z = head.marginal_logits(np.array([[3, 1], [0, 4]]))
    assert z.shape == (2,) and z.dtype == np.float64
    np.testing.assert_allclose(z, [math.log(1.5 / 3.5), math.log(9.0)], rtol=1e-15)
    # the head's own NLL of a variable under these logits is -log of the smoothed frequency
    x = np.array([[1, 0]])
    np.testing.assert_allclose(head.nll_per_variable(z[None, :], x), [[-math.log(1.5 / 5), -math.log(0.5 / 5)]])


def test_categorical_marginal_logits_give_the_smoothed_frequencies_variable_major():
    counts = np.array([[5, 0, 1], [2, 2, 2]])  # N = 6 rows, C = 3
    head = CategoricalHead(np, 3)
    z = head.marginal_logits(counts)
    assert z.shape == (6,)
    p = np.exp(log_softmax(np, head.class_logits(z[None, :])))[0]  # (D, C)
    np.testing.assert_allclose(p, (counts + 0.5) / (6 + 1.5), rtol=1e-14)
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
