"""The real-valued heads (gaussian, mog; docs/math.md Sec. 13) and the model's standardisation.

Gradients against central differences, normalisation (grids in 1-D and 2-D, Monte Carlo from a
wide Gaussian proposal in 4-D), the autoregressive property, inverse-CDF draws against the
known conditional, the fast sampler and the block-sparse engine against the references, the
log-determinant of the standardisation, checkpoints, and the boundary's checks of real data.
"""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.special import ndtr
from scipy.stats import norm

from conftest import random_data, randomize_weights
from made_np import MADEConfig, TrainConfig, fit, load_checkpoint, save_checkpoint
from made_np.cli import cli
from made_np.data import Dataset
from made_np.estimator import MADEDensity
from made_np.fast.sampler import sample_fast
from made_np.heads import LOG_SCALE_BOUND, GaussianHead, MixtureHead, make_head
from made_np.model import MADE
from made_np.sampling import sample_naive
from test_gradients import RTOL, check_gradients, kink_free_weights

HEADS = ["gaussian", "mog"]


def real_model(head, D=3, hidden=(7,), direct=False, context=0, num_masks=1, K=3, seed=0, standardise=True,
               stand=None, **kw):
    """A float64 real-head MADE with a non-trivial standardisation (on ``stand``'s device when given)."""
    cfg = MADEConfig(D=D, hidden=hidden, classes=0, head=head, input_encoding="raw", direct=direct, seed=seed,
                     dtype="float64", context=context, context_encoding="raw", num_masks=num_masks,
                     components=K, ordering="random", **kw)
    model = MADE(cfg) if stand is None else stand.made(cfg)
    if standardise:
        rng = np.random.default_rng([seed, 3])
        model.set_standardisation(rng.normal(0, 2, size=D), rng.uniform(0.5, 3.0, size=D))
    return model


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("context", [0, 2])
def test_gradients_match_finite_differences(head, direct, context, stand):
    model = real_model(head, D=3, hidden=(6, 5), direct=direct, context=context, num_masks=2, stand=stand)
    x = random_data(model.config, 4, 1)
    y = np.random.default_rng(2).normal(size=(4, context)) if context else None
    assert kink_free_weights(model, x, 0, context=y, mask=1)
    assert check_gradients(model, x, 0, context=y, mask=1) < RTOL


@pytest.mark.parametrize("head", HEADS)
def test_head_gradients_hold_at_the_soft_clamp(head):
    """Raw log-scales far beyond the bound: the NLL stays finite (float32 too) and the gradient
    is still the derivative (through tanh's saturation)."""
    h = make_head(head, np, 0, 2)
    R = h.logits_per_variable
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 2 * R))
    scale_cols = [j for j in range(2 * R) if j % R == (1 if head == "gaussian" else R - 1)]
    z[:, scale_cols] = rng.choice([-60.0, -8.0, 9.0, 60.0], size=(5, len(scale_cols)))
    x = rng.normal(size=(5, 2)) * 3
    nll, g = h.nll_and_grad(z, x)
    nll32, _ = h.nll_and_grad(z.astype(np.float32), x.astype(np.float32))
    assert np.isfinite(nll32).all() and np.isfinite(nll).all()
    np.testing.assert_allclose(nll32, nll, rtol=1e-4)
    eps = 1e-6
    for j in range(z.shape[1]):
        zp, zm = z.copy(), z.copy()
        zp[:, j] += eps
        zm[:, j] -= eps
        d = j // R  # the variable's own NLL (another's, up to 1e12 here, would swamp the difference)
        fd = (h.nll_per_variable(zp, x)[:, d] - h.nll_per_variable(zm, x)[:, d]) / (2 * eps)
        rounding = 1e-14 * np.abs(h.nll_per_variable(z, x)[:, d]).max() / eps  # of the difference quotient
        np.testing.assert_allclose(g[:, j], fd, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(fd).max()) + rounding)


# --------------------------------------------------------------------------- normalisation


def gentle(model, seed):
    """Random weights of moderate size (scales within e^+-1 or so: a grid resolves them)."""
    randomize_weights(model, seed, scale=0.25, bias_mean=0.0)


@pytest.mark.parametrize("head", HEADS)
def test_density_integrates_to_one_in_1d(head):
    model = real_model(head, D=1, hidden=(5,), direct=True)
    gentle(model, 1)
    shift, scale = float(model.shift[0]), float(model.scale[0])
    t = np.linspace(shift - 15 * scale, shift + 15 * scale, 20001)
    p = np.exp(model.log_prob(t[:, None]))
    assert abs(np.trapezoid(p, t) - 1) < 1e-3


@pytest.mark.parametrize("head", HEADS)
def test_density_integrates_to_one_in_2d(head):
    model = real_model(head, D=2, hidden=(8,), direct=True, seed=3)
    gentle(model, 2)
    axes = [np.linspace(float(m) - 20 * float(s), float(m) + 20 * float(s), 801)
            for m, s in zip(model.shift, model.scale)]
    g0, g1 = np.meshgrid(*axes, indexing="ij")
    p = np.exp(model.log_prob(np.stack([g0.ravel(), g1.ravel()], axis=1), batch_size=100_000)).reshape(g0.shape)
    total = np.trapezoid(np.trapezoid(p, axes[1], axis=1), axes[0])
    assert abs(total - 1) < 1e-3


@pytest.mark.parametrize("head", HEADS)
def test_density_integrates_to_one_in_4d_by_a_wide_proposal(head):
    """E_q[p / q] = 1 with q a Gaussian four times wider than the data's standardisation (not the
    model's own samples, which would cancel any normalisation error)."""
    model = real_model(head, D=4, hidden=(10,), direct=True, seed=5)
    gentle(model, 3)
    rng = np.random.default_rng(7)
    n, wide = 400_000, 4.0 * model.scale
    x = model.shift + wide * rng.normal(size=(n, 4))
    log_q = norm.logpdf(x, model.shift, wide).sum(axis=1)
    w = np.exp(model.log_prob(x, batch_size=100_000) - log_q)
    estimate, stderr = w.mean(), w.std() / np.sqrt(n)
    assert stderr < 0.01 and abs(estimate - 1) < 4 * stderr + 1e-3


# --------------------------------------------------------------------------- autoregressive property


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("direct", [False, True])
def test_outputs_depend_only_on_earlier_variables(head, direct):
    model = real_model(head, D=5, hidden=(9, 8), direct=direct, num_masks=3)
    randomize_weights(model, 4)
    rng = np.random.default_rng(4)
    for mask in range(3):
        m0 = np.asarray(model.mask(mask)[0].ordering)
        x = random_data(model.config, 3, mask)
        z = model.logits(x, mask=mask)
        for k in range(1, 6):
            x2 = x.copy()
            later = m0 >= k
            x2[:, later] = rng.normal(size=(3, int(later.sum())))
            z2 = model.logits(x2, mask=mask)
            keep = m0 <= k
            assert np.array_equal(z[:, keep], z2[:, keep])


# --------------------------------------------------------------------------- sampling


def test_gaussian_draws_have_the_conditional_moments():
    h = GaussianHead(np, 0)
    z = np.tile([[1.5, LOG_SCALE_BOUND * np.arctanh(np.log(0.3) / LOG_SCALE_BOUND)]], (50_000, 1))
    x = h.sample(z, np.random.default_rng(0).random((50_000, 1)))[:, 0]
    assert x.dtype == np.float64
    assert abs(x.mean() - 1.5) < 4 * 0.3 / np.sqrt(50_000)
    assert abs(x.std() - 0.3) < 0.005


def test_mixture_draws_follow_the_mixture_cdf():
    """Weights (0.2, 0.5, 0.3), means (-2, 0, 3), scales (0.5, 1, 0.3): the empirical CDF of 20000
    draws lies within 0.01 of the mixture's CDF everywhere (Kolmogorov-Smirnov distance)."""
    h = MixtureHead(np, 0, 3)
    pi, mu, sd = np.array([0.2, 0.5, 0.3]), np.array([-2.0, 0.0, 3.0]), np.array([0.5, 1.0, 0.3])
    raw = LOG_SCALE_BOUND * np.arctanh(np.log(sd) / LOG_SCALE_BOUND)  # log sigma = L tanh(raw / L)
    z = np.tile(np.concatenate([np.log(pi), mu, raw]), (20_000, 1))
    x = np.sort(h.sample(z, np.random.default_rng(1).random((20_000, 1)))[:, 0])
    cdf = (pi * ndtr((x[:, None] - mu) / sd)).sum(axis=1)
    n = x.size
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks < 0.01
    # and the NLL is the mixture's -log density
    dens = (pi * norm.pdf(0.7, mu, sd)).sum()
    assert h.nll(z[:1], np.array([[0.7]]))[0] == pytest.approx(-np.log(dens), rel=1e-12)


def test_gaussian_draw_is_the_inverse_cdf_of_its_noise():
    """``x = mu + sigma Phi^-1(u)``: increasing in u (u = 0.975 gives mu + 1.96 sigma, not mu - 1.96 sigma)."""
    h = GaussianHead(np, 0)
    raw = LOG_SCALE_BOUND * np.arctanh(np.log(0.3) / LOG_SCALE_BOUND)  # sigma = 0.3
    u = np.array([[0.025], [0.5], [0.975]])
    x = h.sample(np.tile([[1.5, raw]], (3, 1)), u)[:, 0]
    np.testing.assert_allclose(x, 1.5 + 0.3 * norm.ppf(u[:, 0]), rtol=1e-12)
    assert x[2] == pytest.approx(1.5 + 0.3 * 1.959963984540054, rel=1e-12)


def test_mixture_is_unchanged_by_a_constant_added_to_its_weight_logits():
    """The weights are a softmax: adding 1000 to every weight logit (exp(1000) overflows) changes neither the
    NLL, nor the gradient (the reference's and the fused head's), nor a draw."""
    from made_np.fast.kernels import fast_head
    h = MixtureHead(np, 0, 3)
    rng = np.random.default_rng(4)
    z = rng.normal(size=(5, 2 * 9))  # two variables, K = 3
    x = rng.normal(size=(5, 2))
    shifted = z.copy()
    for d in range(2):
        shifted[:, 9 * d:9 * d + 3] += 1000.0
    nll, g = h.nll_and_grad(z, x)
    nll_s, g_s = h.nll_and_grad(shifted, x)
    np.testing.assert_allclose(nll_s, nll, rtol=1e-12)
    np.testing.assert_allclose(g_s, g, atol=1e-12)
    np.testing.assert_allclose(h.nll(shifted, x), nll, rtol=1e-12)
    nll_f, g_f = fast_head(h).nll_and_grad(shifted, x)
    np.testing.assert_allclose(nll_f, nll, rtol=1e-12)
    np.testing.assert_allclose(g_f, g, atol=1e-12)
    u = rng.random((5, 2))
    np.testing.assert_allclose(h.sample(shifted, u), h.sample(z, u), rtol=1e-9)


@pytest.mark.parametrize("head", HEADS)
def test_draws_at_the_edges_of_the_noise_are_finite(head):
    h = make_head(head, np, 0, 3)
    z = np.random.default_rng(0).normal(size=(4, h.logits_per_variable))
    x = h.sample(z, np.array([[0.0], [1e-300], [1 - 1e-17], [np.nextafter(1.0, 0)]]))
    assert np.isfinite(x).all()


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("num_masks", [1, 3])
def test_fast_sampler_equals_the_naive_one_for_the_same_noise(head, direct, num_masks):
    model = real_model(head, D=5, hidden=(9, 7), direct=direct, num_masks=num_masks, seed=2)
    randomize_weights(model, 2)
    u = np.random.default_rng(3).random((20, 5))
    for mask in range(num_masks):
        a, b = sample_naive(model, noise=u, mask=mask), sample_fast(model, noise=u, mask=mask)
        assert a.dtype == b.dtype == np.float64
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)
    given = random_data(model.config, 20, 9)
    a = sample_naive(model, noise=u, given=given, n_given=2)
    b = sample_fast(model, noise=u, given=given, n_given=2)
    np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)
    first = np.asarray(model.mask(0)[0].ordering) <= 2
    np.testing.assert_array_equal(a[:, first], given[:, first])


def test_samples_come_back_in_the_data_units():
    """A trained model's samples have the data's location and spread (shift 100, scale 10)."""
    rng = np.random.default_rng(0)
    x = 100 + 10 * rng.normal(size=(2000, 2)) @ np.array([[1.0, 0.8], [0.0, 0.6]])
    ds = Dataset("g", x[:1600], x[1600:1800], x[1800:], 0, None)
    model = MADE(MADEConfig.for_data(ds, hidden=(16,), seed=0))
    fit(model, ds, TrainConfig(epochs=30, seed=0))
    s = sample_fast(model, 4000, seed=1)
    np.testing.assert_allclose(s.mean(axis=0), x.mean(axis=0), atol=1.0)
    np.testing.assert_allclose(s.std(axis=0), x.std(axis=0), rtol=0.1)


# --------------------------------------------------------------------------- standardisation


@pytest.mark.parametrize("head", HEADS)
def test_nll_is_the_standardised_nll_plus_the_log_determinant(head):
    a = real_model(head, D=3, direct=True)
    randomize_weights(a, 1)
    b = real_model(head, D=3, direct=True, standardise=False)
    b.load_state_dict(a.state_dict())
    x = random_data(a.config, 10, 0)
    xs = (x - a.shift) / a.scale
    log_det = np.log(a.scale).sum()
    np.testing.assert_allclose(a.nll(x), b.nll(xs) + log_det, rtol=1e-12)
    np.testing.assert_allclose(a.log_prob(x), -b.nll(xs) - log_det, rtol=1e-12)
    assert float(a.loss_and_grad(x)) == pytest.approx(float(b.loss_and_grad(xs)) + log_det, rel=1e-12)


def test_training_on_raw_data_equals_training_on_standardised_data_plus_the_log_determinant():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3)) * [1.0, 5.0, 0.2] + [10.0, -3.0, 0.5]
    m, s = x[:400].mean(axis=0), x[:400].std(axis=0)  # the training split's
    runs = []
    for data in (x, (x - m) / s):
        ds = Dataset("r", data[:400], data[400:500], data[500:], 0, None)
        model = MADE(MADEConfig.for_data(ds, hidden=(8,), seed=1, dtype="float64"))
        history = fit(model, ds, TrainConfig(epochs=3, seed=0))
        runs.append((model, history))
    (raw, h_raw), (std, h_std) = runs
    np.testing.assert_allclose(raw.shift, m) and np.testing.assert_allclose(raw.scale, s)
    log_det = np.log(s).sum()
    np.testing.assert_allclose(raw.nll(x[500:]), std.nll((x[500:] - m) / s) + log_det, rtol=1e-7)
    assert h_raw["best_valid_nll"] == pytest.approx(h_std["best_valid_nll"] + log_det, rel=1e-7)


def test_fit_sets_the_standardisation_once():
    rng = np.random.default_rng(1)
    x = rng.normal(3, 2, size=(300, 2))
    ds = Dataset("r", x[:200], x[200:250], x[250:], 0, None)
    model = MADE(MADEConfig.for_data(ds, hidden=(4,)))
    assert not model.standardised and model.head.real and model.config.input_encoding == "raw"
    fit(model, ds, TrainConfig(epochs=1))
    np.testing.assert_allclose(model.shift, x[:200].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(model.scale, x[:200].std(axis=0), rtol=1e-12)
    before = model.scale.copy()
    ds2 = Dataset("r", 10 * x[:200], x[200:250], x[250:], 0, None)
    fit(model, ds2, TrainConfig(epochs=1))  # set already: kept
    np.testing.assert_array_equal(model.scale, before)


@pytest.mark.parametrize("head", HEADS)
def test_checkpoint_round_trip_keeps_the_standardisation(head, tmp_path):
    model = real_model(head, D=3, K=4)
    randomize_weights(model, 0)
    path = save_checkpoint(tmp_path / "m.npz", model)
    loaded, _ = load_checkpoint(path)
    np.testing.assert_array_equal(loaded.shift, model.shift)
    np.testing.assert_array_equal(loaded.scale, model.scale)
    assert loaded.config.components == 4
    x = random_data(model.config, 5, 0)
    np.testing.assert_array_equal(loaded.nll(x), model.nll(x))


# --------------------------------------------------------------------------- the starting point


def test_mixture_starts_at_distinct_components_of_the_standard_normal():
    h = MixtureHead(np, 0, 4)
    block = h.marginal_logits(np.zeros((2, 0)))
    assert block.shape == (24,)
    np.testing.assert_array_equal(block[:4], 0)  # equal weights
    np.testing.assert_allclose(block[4:8], norm.ppf([0.125, 0.375, 0.625, 0.875]))
    np.testing.assert_array_equal(block[8:12], 0)  # log-scales 0
    np.testing.assert_array_equal(block[12:], block[:12])
    np.testing.assert_array_equal(GaussianHead(np, 0).marginal_logits(np.zeros((3, 0))), np.zeros(6))


# --------------------------------------------------------------------------- the boundary


def test_real_data_checks_name_the_bad_entry():
    model = real_model("mog", D=3)
    x = np.zeros((5, 3))
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match="row 3, column 2"):
        model.nll(x)
    with pytest.raises(ValueError, match="expected real numbers"):
        model.nll(np.array([["a", "b", "c"]]))
    ok = model.nll(np.arange(6).reshape(2, 3))  # integers are real values too
    assert ok.shape == (2,) and np.isfinite(ok).all()


def test_a_constant_column_is_refused_with_its_name_and_the_fix():
    x = np.random.default_rng(0).normal(size=(100, 3))
    x[:, 1] = 4.0
    ds = Dataset("c", x[:80], x[80:90], x[90:], 0, None)
    model = MADE(MADEConfig.for_data(ds, hidden=(4,)))
    with pytest.raises(ValueError, match="column 1 is constant.*drop the column"):
        fit(model, ds, TrainConfig(epochs=1))
    x[:, 1] = rng_values = np.random.default_rng(1).normal(size=100) * 1e300  # huge but varying: no overflow
    assert np.isfinite(rng_values).all()
    fit(model, ds, TrainConfig(epochs=1))
    assert np.isfinite(model.scale).all() and model.scale[1] == pytest.approx((x[:80, 1] / 1e300).std() * 1e300, rel=1e-12)


def test_heads_and_classes_must_agree():
    with pytest.raises(ValueError, match="real-valued data.*bernoulli or categorical"):
        MADEConfig(D=2, classes=2, head="mog")
    with pytest.raises(ValueError, match="classes 0.*mog or gaussian"):
        MADEConfig(D=2, classes=0, head="categorical", input_encoding="raw")
    with pytest.raises(ValueError, match="input encoding 'raw'"):
        MADEConfig(D=2, classes=0, head="mog", input_encoding="onehot")
    with pytest.raises(ValueError, match="components"):
        MADEConfig(D=2, classes=0, head="mog", input_encoding="raw", components=0)
    with pytest.raises(ValueError, match="no class probabilities"):
        make_head("mog", np, 0).class_logits(np.zeros((1, 15)))


def test_the_soft_clamp_bounds_the_log_scale():
    h = GaussianHead(np, 0)
    z = np.array([[0.0, -1e4, 0.0, 1e4]])
    x = np.zeros((1, 2))
    nll = h.nll_per_variable(z, x)
    np.testing.assert_allclose(nll[0], [-LOG_SCALE_BOUND, LOG_SCALE_BOUND] + 0.5 * np.log(2 * np.pi))


# --------------------------------------------------------------------------- estimator and command line


def test_estimator_fits_scores_and_samples_real_data():
    rng = np.random.default_rng(0)
    X = rng.normal(5, 3, size=(300, 3))
    est = MADEDensity(hidden=(16,), epochs=3, random_state=0).fit(X)
    assert est.n_classes_ == 0 and est.model_.config.head == "mog"
    s = est.score_samples(X[:5])
    assert s.shape == (5,) and np.isfinite(s).all()
    draws = est.sample(7, random_state=0)
    assert draws.dtype == np.float64 and draws.shape == (7, 3) and not np.all(draws == np.round(draws))
    est2 = MADEDensity(hidden=(8,), epochs=1, random_state=0, head="gaussian").fit(X)
    assert est2.model_.config.head == "gaussian"
    import pickle
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.score_samples(X[:5]), s)


def test_cli_trains_a_float_file_and_reports_nats_per_dimension(tmp_path):
    x = np.random.default_rng(0).normal(size=(200, 2)) * [1.0, 10.0] + 0.5
    np.save(tmp_path / "real.npy", x)
    r = CliRunner().invoke(cli, ["train", "--dataset", str(tmp_path / "real.npy"), "--hidden", "8", "--epochs", "2",
                                  "--head", "gaussian", "--out", str(tmp_path / "run"), "--num-masks", "1"])
    assert r.exit_code == 0, r.output
    assert "real-valued" in r.output and "gaussian head" in r.output and "nats/dim" in r.output
    x[:, 0] = 1.0
    np.save(tmp_path / "const.npy", x)
    r = CliRunner().invoke(cli, ["train", "--dataset", str(tmp_path / "const.npy"), "--epochs", "1",
                                  "--out", str(tmp_path / "run2")])
    assert r.exit_code == 2 and "column 0 of array (train part) is constant" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["train", "--dataset", str(tmp_path / "real.npy"), "--head", "bernoulli",
                                  "--out", str(tmp_path / "run3")])
    assert r.exit_code == 2 and "mog or gaussian" in r.output and r.output.startswith("Error: --head bernoulli: ")
    for data, head in (("digits", "mog"), ("wine", "mixed")):  # a head that does not fit the data is named by its option
        r = CliRunner().invoke(cli, ["train", "--dataset", data, "--head", head, "--out", str(tmp_path / "run4")])
        assert r.exit_code == 2 and r.output.startswith(f"Error: --head {head}: the {head} head "), r.output


def test_cli_trains_whole_number_measurements_as_real_values(tmp_path):
    """Ages and incomes: whole numbers past 255 are real-valued by themselves; in 0..255 they are
    classes unless a real head is asked for, and evaluate and --resume load them the same way."""
    rng = np.random.default_rng(0)
    rows = "".join(f"{a},{i}\n" for a, i in zip(rng.integers(18, 90, 120), rng.integers(0, 5000, 120)))
    (tmp_path / "people.csv").write_text("age,income\n" + rows)
    (tmp_path / "ages.csv").write_text("age,age2\n" + "".join(f"{a},{a // 2 + 7}\n" for a in rng.integers(18, 90, 120)))
    base = ["--hidden", "8", "--epochs", "1", "--num-masks", "1"]
    r = CliRunner().invoke(cli, ["train", "--dataset", str(tmp_path / "people.csv"), "--out", str(tmp_path / "p"), *base])
    assert r.exit_code == 0 and "D = 2, real-valued" in r.output and "mog head" in r.output, r.output
    r = CliRunner().invoke(cli, ["train", "--dataset", str(tmp_path / "ages.csv"), "--out", str(tmp_path / "a0"), *base])
    assert r.exit_code == 0 and "D = 2, 90 classes" in r.output, r.output
    r = CliRunner().invoke(cli, ["train", "--dataset", str(tmp_path / "ages.csv"), "--head", "mog",
                                  "--out", str(tmp_path / "a"), *base])
    assert r.exit_code == 0 and "D = 2, real-valued" in r.output and "mog head" in r.output, r.output
    trained = [line for line in r.output.splitlines() if line.startswith("test NLL")]
    r = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "a")])
    assert r.exit_code == 0 and [line for line in r.output.splitlines() if line.startswith("test NLL")] == trained
    r = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "a"), "--epochs", "2"])
    assert r.exit_code == 0 and "epoch    2" in r.output, r.output


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("K", [1, 3])
def test_fused_mixture_head_equals_the_reference(dtype, K):
    from made_np.fast.kernels import FusedMixtureHead, fast_head
    ref = MixtureHead(np, 0, K)
    fused = fast_head(ref)
    assert type(fused) is FusedMixtureHead and fused.K == K
    rng = np.random.default_rng(K)
    z = (rng.normal(size=(7, 4 * 3 * K)) * 3).astype(dtype)
    x = (rng.normal(size=(7, 4)) * 2).astype(dtype)
    z_before = z.copy()
    (n1, g1), (n2, g2) = ref.nll_and_grad(z, x), fused.nll_and_grad(z, x)
    np.testing.assert_array_equal(z, z_before)  # the logits are not written to
    assert g2.dtype == dtype and n2.shape == (7,)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(n2, n1, rtol=tol, atol=tol)
    np.testing.assert_allclose(g2, g1, rtol=tol, atol=tol)


def test_the_recipe_gives_many_real_rows_two_layers_more_components_and_few_variables_every_ordering():
    from types import SimpleNamespace
    from made_np.config import FEW_ORDERINGS_D, SMALL_DATA_ROWS

    def recipe(rows, D):
        data = SimpleNamespace(train=np.zeros((rows, D)), D=D, classes=0, name="real")
        c = MADEConfig.for_data(data)
        return c.hidden, c.components, c.num_masks

    assert recipe(SMALL_DATA_ROWS, 2) == ((256, 256), 20, 0)
    assert recipe(SMALL_DATA_ROWS, FEW_ORDERINGS_D + 1) == ((256, 256), 20, 1)
    assert recipe(SMALL_DATA_ROWS - 1, 2) == ((500,), 5, 16)
    data = SimpleNamespace(train=np.zeros((SMALL_DATA_ROWS, 2)), D=2, classes=0, name="real")
    assert MADEConfig.for_data(data, hidden=(8,), num_masks=3).hidden == (8,)  # overrides win


def test_the_recipe_on_wine_beats_the_tuned_peers_of_the_benchmark():
    """The default recipe on wine's split 0 (docs/experiments.md, "Real-valued data": MADE 22.77,
    KernelDensity 25.21, GaussianMixture 28.63 test nats): about a second of training."""
    from made_np.data import load_dataset
    from made_np.train import evaluate
    ds = load_dataset("wine", seed=0)
    model = MADE(MADEConfig.for_data(ds, seed=0))
    cfg = TrainConfig.for_data(ds, seed=0)
    fit(model, ds, cfg)
    res = evaluate(model, ds.test, eval_masks=cfg.eval_masks)
    assert model.config.head == "mog" and res["masks"] == 16
    assert 20.0 < res["nll"] < 24.0  # data units: the log-determinant of the standardisation included
    assert res["nll_per_dim"] == pytest.approx(res["nll"] / 13)


def test_an_ensemble_passes_once_per_distinct_mask_and_weights_it_by_its_count(monkeypatch):
    """D = 2 under an unlimited bank has two orderings (and one set of hidden degrees): 200 indices
    are two forward passes, and the mixture equals the one over all 200 passes."""
    model = MADE(MADEConfig(D=2, hidden=(8,), classes=0, head="gaussian", input_encoding="raw", num_masks=0,
                            dtype="float64", seed=3))
    randomize_weights(model, 0)
    x = np.random.default_rng(1).normal(size=(5, 2))
    per_mask = np.stack([-model.nll(x, mask=k) for k in range(200)])
    want = np.log(np.exp(per_mask).mean(axis=0))
    calls = []
    nll = model._nll
    monkeypatch.setattr(model, "_nll", lambda *a: calls.append(1) or nll(*a))
    got = -model.ensemble_nll(x, list(range(200)))
    assert len(calls) == 2 and np.allclose(got, want, rtol=0, atol=1e-12)
