"""Imputation (made_np.conditional.impute) and the head-generic marginals behind it.

The exact reference is enumeration: for a tiny binary model, ``p(x_d = 1 | x_o)`` of every
missing entry is the sum of ``exp(log_conditional)`` over the completions with ``x_d = 1``
(the same K observed-first masks and seed). A stand-in Gaussian head, defined here, checks that
the marginals and imputation read only ``nll_per_variable`` and ``sample`` of a head (the real
heads of the ``realheads`` branch follow the same contract).
"""
import itertools

import numpy as np
import pytest
from conftest import randomize_weights
from scipy.special import ndtri

from made_np import impute
from made_np.conditional import log_conditional, log_marginal, posterior_summary
from made_np.heads import HEADS, Head
from made_np.model import MADE, MADEConfig


def binary_model(D=5, seed=3):
    model = MADE(MADEConfig(D=D, hidden=(12,), num_masks=0, order_agnostic=True, connectivity_agnostic=True,
                            dtype="float64", seed=seed))
    randomize_weights(model, seed, scale=2.0)
    return model


def exact_posterior_ones(model, x, obs, masks, seed):
    """``p(x_d = 1 | x_o)`` per entry (N, D) by enumerating every completion of each row."""
    N, D = x.shape
    out = np.zeros((N, D))
    for i in range(N):
        miss = np.flatnonzero(~obs[i])
        fills = np.array(list(itertools.product((0, 1), repeat=miss.size)), dtype=np.uint8)
        rows = np.repeat(np.where(obs[i], x[i], 0)[None].astype(np.uint8), len(fills), axis=0)
        rows[:, miss] = fills
        p = np.exp(log_conditional(model, rows, np.broadcast_to(obs[i], rows.shape), masks=masks, seed=seed))
        assert p.sum() == pytest.approx(1.0, abs=1e-9)  # a distribution over the completions
        out[i] = np.clip(p @ rows, 0, 1)
    return out


def test_impute_estimates_the_exact_posterior_within_monte_carlo_error():
    model = binary_model()
    rng = np.random.default_rng(0)
    x = (rng.random((6, 5)) < 0.5).astype(float)
    obs = rng.random((6, 5)) < 0.5
    obs[0], obs[1] = False, True  # a row all missing, a row all observed
    S = 3000
    filled, std, draws = impute(model, np.where(obs, x, np.nan), masks=4, draws=S, seed=1, samples=S)
    p = exact_posterior_ones(model, x, obs, masks=4, seed=1)
    q = draws.mean(axis=1)
    se = np.sqrt(p * (1 - p) / S) + 1e-12
    assert np.all(np.abs(q - p) <= 4.5 * se)  # the draws are the mixture's conditional
    assert np.array_equal(filled[obs], x[obs]) and np.all(std[obs] == 0)
    sure = ~obs & (np.abs(p - 0.5) > 5 * se)  # far enough from a tie for the estimate to settle
    assert sure.sum() >= 3
    assert np.array_equal(filled[sure], (p[sure] > 0.5).astype(float))  # the mode: the mean rounded
    assert np.allclose(std[~obs], np.sqrt(q * (1 - q) * S / (S - 1))[~obs])  # the sample std of 0/1 draws
    assert np.array_equal(impute(model, np.where(obs, x, np.nan), masks=4, seed=1, samples=S, discrete="mode").filled,
                          filled)  # the default ("auto") is the mode for classes
    mean = impute(model, np.where(obs, x, np.nan), masks=4, seed=1, samples=S, discrete="mean").filled
    np.testing.assert_allclose(mean[~obs], q[~obs], rtol=1e-12)  # discrete="mean": p(x_d = 1 | x_o), estimated
    assert np.all(np.abs(mean - p)[~obs] <= 4.5 * se[~obs]) and np.array_equal(mean[obs], x[obs])
    assert np.allclose(std[~obs], np.sqrt(p * (1 - p))[~obs], atol=0.03)
    assert np.array_equal(draws[obs[:, None, :].repeat(S, 1)], np.repeat(x[:, None], S, 1)[obs[:, None, :].repeat(S, 1)])


def test_impute_is_seeded_and_draws_are_the_first_samples():
    model = binary_model()
    x = np.array([[1, np.nan, 0, np.nan, 1], [np.nan] * 5])
    a = impute(model, x, masks=3, draws=4, seed=7, samples=50)
    b = impute(model, x, masks=3, draws=4, seed=7, samples=50)
    c = impute(model, x, masks=3, draws=4, seed=8, samples=50)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a.draws, c.draws)
    assert a.draws.shape == (2, 4, 5) and a.filled.dtype == np.float64 and a.std.shape == (2, 5)
    assert impute(model, x, draws=0, samples=5).draws is None
    assert impute(model, x, draws=9, samples=2).draws.shape == (2, 9, 5)  # S = max(samples, draws)


def test_posterior_summary_mode_of_categorical_draws_and_ties_go_low():
    model = MADE(MADEConfig(D=2, hidden=(4,), classes=4, head="categorical", input_encoding="onehot",
                            num_masks=0, order_agnostic=True))
    comps = np.array([[[2, 1], [2, 3], [1, 3], [0, 1]]])  # (1, S=4, D=2): column 0 mode 2; column 1 tie 1/3
    est, std = posterior_summary(model, comps)
    assert est.tolist() == [[2.0, 1.0]]
    assert std == pytest.approx(np.std(comps[0], axis=0, ddof=1)[None])


def test_impute_categorical_mode_of_an_independent_model():
    model = MADE(MADEConfig(D=3, hidden=(4,), classes=3, head="categorical", input_encoding="onehot",
                            num_masks=0, order_agnostic=True, dtype="float64"))
    state = {k: np.zeros_like(v) for k, v in model.state_dict().items()}
    state["b1"] = np.tile(np.log([0.2, 0.3, 0.5]), 3)  # every variable: class 2 most probable
    model.load_state_dict(state)
    filled, std, _ = impute(model, [[0, np.nan, np.nan]], samples=400, seed=0)
    assert filled.tolist() == [[0.0, 2.0, 2.0]]
    sd = np.sqrt(0.3 + 0.5 * 4 - (0.3 + 0.5 * 2) ** 2)  # the std of the class value
    assert std[0, 1:] == pytest.approx([sd, sd], abs=0.08) and std[0, 0] == 0


@pytest.mark.parametrize("x, words", [
    ([[0, np.inf, 1, 0, 1]], "x must hold integers"),
    ([[0, 2, 1, 0, 1]], "x must hold integers in 0..1"),
    ([[0, 0.5, 1, 0, 1]], "x must hold integers"),
    ([[0, 1, 1]], "x must have shape (N, 5)"),
    ([["a", "b", "c", "d", "e"]], "dtype"),
])
def test_impute_refuses_bad_rows(x, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        impute(binary_model(), x)


@pytest.mark.parametrize("kwargs, words", [({"samples": 1}, "samples must be >= 2"),
                                           ({"draws": -1}, "draws must be >= 0"),
                                           ({"masks": 0}, "masks must be >= 1"),
                                           ({"method": "quick"}, "unknown completion method")])
def test_impute_refuses_bad_counts(kwargs, words):
    with pytest.raises(ValueError, match=words):
        impute(binary_model(), [[np.nan] * 5], **kwargs)


def test_single_ordering_model_imputes_a_suffix_and_refuses_other_patterns():
    model = MADE(MADEConfig(D=4, hidden=(8,), num_masks=1, seed=0))
    filled, _, _ = impute(model, [[1, 0, np.nan, np.nan]], samples=4)
    assert filled[0, :2].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="prefix of its ordering"):
        impute(model, [[np.nan, 0, 1, 1]])


# --------------------------------------------------------------------------- the real-valued gaussian head


@pytest.fixture
def gaussian_model():
    """Independent Gaussians (every weight 0; the output biases give mu and log sigma through the
    head's soft clamp log sigma = 7 tanh(a / 7)), no standardisation (the identity)."""
    model = MADE(MADEConfig(D=3, hidden=(6,), classes=0, head="gaussian", input_encoding="raw", num_masks=0,
                            order_agnostic=True, dtype="float64"))
    state = {k: np.zeros_like(v) for k, v in model.state_dict().items()}
    state["b1"] = np.array([0.3, np.log(0.5), -1.0, np.log(2.0), 0.7, np.log(0.1)])
    state["b1"][1::2] = 7 * np.arctanh(state["b1"][1::2] / 7)
    model.load_state_dict(state)
    return model


def test_marginals_read_the_heads_nll_per_variable(gaussian_model):
    x = np.array([[1, 0, 1], [0, 1, 1]])
    obs = np.array([[True, False, True], [False, False, True]])
    mu, sigma = np.array([0.3, -1.0, 0.7]), np.array([0.5, 2.0, 0.1])
    logpdf = -0.5 * np.log(2 * np.pi) - np.log(sigma) - 0.5 * ((x - mu) / sigma) ** 2
    assert log_marginal(gaussian_model, x, obs, masks=3) == pytest.approx((logpdf * obs).sum(axis=1), abs=1e-12)


def test_impute_with_a_real_head_gives_the_posterior_mean_and_std(gaussian_model):
    S = 4000
    filled, std, draws = impute(gaussian_model, [[1.0, np.nan, np.nan]], samples=S, draws=3, method="naive")
    mu, sigma = np.array([-1.0, 0.7]), np.array([2.0, 0.1])
    assert filled[0, 0] == 1.0 and std[0, 0] == 0.0
    assert np.all(np.abs(filled[0, 1:] - mu) <= 4.5 * sigma / np.sqrt(S))  # the mean's Monte Carlo error
    assert np.all(np.abs(std[0, 1:] - sigma) <= 4.5 * sigma / np.sqrt(2 * (S - 1)))  # the std's, for a Gaussian
    assert draws.dtype == np.float64 and draws.shape == (1, 3, 3)


def test_a_real_heads_observed_entries_have_a_std_of_exactly_zero():
    """The standard deviation is 0 where an entry is observed, not the rounding of the sample std of S equal
    real values (np.std of a hundred 0.1s is 2.8e-17)."""
    model = MADE(MADEConfig(D=3, hidden=(8,), classes=0, head="mog", components=2, input_encoding="raw",
                            num_masks=0, order_agnostic=True, dtype="float64", seed=1))
    randomize_weights(model, 1)
    x = np.array([[0.1, np.nan, 10.3], [np.nan, 1.7, 0.1]])
    filled, std, _ = impute(model, x, masks=2, samples=100, seed=0)
    obs = ~np.isnan(x)
    assert np.array_equal(filled[obs], x[obs]) and np.all(std[obs] == 0.0) and np.all(std[~obs] > 0)
