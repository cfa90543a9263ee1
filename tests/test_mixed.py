"""Mixed data: discrete columns (a softmax over their levels) inside real-valued data (the mixed
head, docs/math.md Sec. 13 "Mixed conditionals").

Gradients against central differences, normalisation over a level and a real axis, the
autoregressive property, draws of a discrete column against its conditional, the fast sampler
and the block-sparse engine against the references, the standardisation (discrete columns keep
0 and 1), the start at the levels' frequencies, checkpoints and resume, the choice of the columns
(the recipe, the CLI, MADEDensity), marginals and imputation, and the boundary's checks.
"""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.special import logsumexp, softmax

from conftest import random_data, randomize_weights
from made_np import MADEConfig, TrainConfig, fit, load_checkpoint, log_marginal, save_checkpoint
from made_np.cli import cli
from made_np.conditional import impute, variable_log_probs
from made_np.data import Dataset, load_dataset
from made_np.estimator import MADEDensity
from made_np.fast.sampler import sample_fast
from made_np.heads import MixedHead, make_head
from made_np.model import MADE
from made_np.sampling import sample_naive
from test_gradients import RTOL, check_gradients, kink_free_weights

LEVELS = (1.0, 2.0)


def mixed_model(D=3, discrete=(1,), levels=(LEVELS,), hidden=(7,), direct=False, num_masks=1, K=2, seed=0,
                ordering="random", standardise=True, stand=None):
    """A float64 mixed-head MADE with a non-trivial standardisation of its real columns (on ``stand``'s
    device when given, tests/conftest.py)."""
    cfg = MADEConfig(D=D, hidden=hidden, classes=0, head="mixed", input_encoding="raw", direct=direct, seed=seed,
                     dtype="float64", num_masks=num_masks, components=K, ordering=ordering,
                     discrete_columns=discrete, levels=levels)
    model = MADE(cfg) if stand is None else stand.made(cfg)
    if standardise:
        rng = np.random.default_rng([seed, 3])
        model.set_standardisation(rng.normal(0, 2, size=D), rng.uniform(0.5, 3.0, size=D))
    return model


def mixed_dataset(n=600, seed=0):
    """Column 0 real, column 1 in {1, 2} (its mean shifts column 0), column 2 real."""
    rng = np.random.default_rng(seed)
    s = rng.integers(1, 3, size=n).astype(float)
    x = np.stack([10 + 3 * s + rng.normal(size=n), s, rng.normal(size=n) * 5], axis=1)
    return Dataset("mixed", x[:n * 2 // 3], x[n * 2 // 3:n * 5 // 6], x[n * 5 // 6:], 0, None, discrete_columns=(1,))


# --------------------------------------------------------------------------- the head's math


@pytest.mark.parametrize("K, discrete, levels", [(2, (1,), (LEVELS,)), (1, (0, 1), (LEVELS, (-1.0, 0.0, 0.5, 1.0)))])
@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("num_masks", [1, 2])
def test_gradients_match_finite_differences(K, discrete, levels, direct, num_masks, stand):
    """R = 3K = 6 > 2 levels; R = 4 levels > 3K = 3 and a column of fewer levels: the padding of either kind."""
    model = mixed_model(D=3, hidden=(6, 5), direct=direct, num_masks=num_masks, K=K, discrete=discrete, levels=levels,
                        stand=stand)
    x = random_data(model.config, 4, 1)
    mask = num_masks - 1
    assert kink_free_weights(model, x, 0, mask=mask)
    assert check_gradients(model, x, 0, mask=mask) < RTOL


def test_unused_outputs_get_a_zero_gradient_and_change_nothing():
    h = MixedHead(np, 0, 2, D=2, discrete_columns=(1,), levels=((0.0, 1.0, 5.0),))
    assert h.logits_per_variable == 6
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 12))
    x = np.stack([rng.normal(size=5), rng.choice([0.0, 1.0, 5.0], size=5)], axis=1)
    t = h.targets(x, z)
    np.testing.assert_array_equal(t[:, 1], (x[:, 1] == 1) + 2 * (x[:, 1] == 5))  # level indices
    nll, g = h.nll_and_grad(z, t)
    np.testing.assert_array_equal(g[:, 6 + 3:], 0)  # the discrete column's outputs past its 3 levels
    z2 = z.copy()
    z2[:, 9:] += 100.0
    np.testing.assert_array_equal(h.nll_and_grad(z2, t)[0], nll)
    # the discrete column's NLL is -log softmax of its levels' logits
    np.testing.assert_allclose(h.nll_per_variable(z, t)[:, 1],
                               -np.log(softmax(z[:, 6:9], axis=1)[np.arange(5), t[:, 1].astype(int)]), rtol=1e-12)


@pytest.mark.parametrize("discrete", [0, 1])
def test_probabilities_sum_and_densities_integrate_to_one(discrete):
    """A real column and a discrete one, either first: sum over the levels of the integral over a grid."""
    levels = (0.0, 1.0, 3.0)
    model = mixed_model(D=2, discrete=(discrete,), levels=(levels,), hidden=(8,), direct=True, ordering="natural",
                        seed=3)
    randomize_weights(model, 2, scale=0.25, bias_mean=0.0)
    real = 1 - discrete
    m, s = float(model.shift[real]), float(model.scale[real])
    t = np.linspace(m - 20 * s, m + 20 * s, 8001)
    total = 0.0
    for level in levels:
        x = np.zeros((t.size, 2))
        x[:, real], x[:, discrete] = t, level
        total += np.trapezoid(np.exp(model.log_prob(x, batch_size=10_000)), t)
    assert abs(total - 1) < 1e-3


def test_two_discrete_columns_of_different_levels_normalise():
    """Columns 0 (2 levels) and 2 (3 levels) around a real column 1: the shorter one's padding is no level."""
    model = mixed_model(D=3, discrete=(0, 2), levels=(LEVELS, (0.0, 1.0, 3.0)), hidden=(8,), direct=True, seed=4)
    randomize_weights(model, 2, scale=0.25, bias_mean=0.0)
    m, s = float(model.shift[1]), float(model.scale[1])
    t = np.linspace(m - 20 * s, m + 20 * s, 8001)
    total = 0.0
    for a in LEVELS:
        for b in (0.0, 1.0, 3.0):
            x = np.stack([np.full(t.size, a), t, np.full(t.size, b)], axis=1)
            total += np.trapezoid(np.exp(model.log_prob(x, batch_size=10_000)), t)
    assert abs(total - 1) < 1e-3


@pytest.mark.parametrize("direct", [False, True])
def test_outputs_depend_only_on_earlier_variables(direct):
    model = mixed_model(D=5, discrete=(0, 3), levels=(LEVELS, (0.0, 1.0, 2.0)), hidden=(9, 8), direct=direct,
                        num_masks=3)
    randomize_weights(model, 4)
    for mask in range(3):
        m0 = np.asarray(model.mask(mask)[0].ordering)
        x = random_data(model.config, 3, mask)
        z = model.logits(x, mask=mask)
        for k in range(1, 6):
            x2 = random_data(model.config, 3, 100 + k)
            later = m0 > k
            x2[:, ~later] = x[:, ~later]
            assert not np.array_equal(x2, x) or k == 5
            keep = m0 <= k
            np.testing.assert_array_equal(model.logits(x2, mask=mask)[:, keep], z[:, keep])


def test_draws_of_a_discrete_column_follow_its_conditional():
    """Given the real column 0, the discrete column 1's drawn frequencies are its softmax."""
    levels = (0.0, 2.0, 5.0)
    model = mixed_model(D=2, discrete=(1,), levels=(levels,), hidden=(6,), direct=True, ordering="natural")
    randomize_weights(model, 5)
    n = 20_000
    given = np.tile([[float(model.shift[0]) + 0.7, 0.0]], (n, 1))
    draws = sample_naive(model, n, seed=1, given=given, n_given=1)
    assert set(np.unique(draws[:, 1])) <= set(levels)
    p = softmax(model.logits(given[:1])[0, 1, :3])
    freq = (draws[:, 1][:, None] == np.array(levels)).mean(axis=0)
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-9)


def test_a_discrete_draw_on_a_cumulative_probability_takes_the_next_level():
    """The inverse CDF over a column's levels (as the categorical head's): the first level whose cumulative
    probability exceeds u, so u = 1/2 of two equal logits draws the second level, and u just below it the first."""
    head = MixedHead(np, 0, 1, D=2, discrete_columns=(1,), levels=((1.0, 2.0),))
    z = np.zeros((3, 3))  # one variable's R = 3 outputs: the two level logits (equal) and an unused one
    u = np.array([[np.nextafter(0.5, 0)], [0.5], [0.75]])
    assert head.sample_at(z, u, [1])[:, 0].tolist() == [1.0, 2.0, 2.0]


@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("num_masks", [1, 3])
def test_fast_sampler_equals_the_naive_one_for_the_same_noise(direct, num_masks):
    model = mixed_model(D=5, discrete=(1, 4), levels=(LEVELS, (-1.0, 0.0, 4.0, 9.0)), hidden=(9, 7), direct=direct,
                        num_masks=num_masks, seed=2)
    randomize_weights(model, 2)
    u = np.random.default_rng(3).random((20, 5))
    for mask in range(num_masks):
        a, b = sample_naive(model, noise=u, mask=mask), sample_fast(model, noise=u, mask=mask)
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)
        assert set(np.unique(a[:, 1])) <= set(LEVELS) and set(np.unique(a[:, 4])) <= {-1.0, 0.0, 4.0, 9.0}
    given = random_data(model.config, 20, 9)
    a = sample_naive(model, noise=u, given=given, n_given=2)
    np.testing.assert_allclose(sample_fast(model, noise=u, given=given, n_given=2), a, rtol=1e-10, atol=1e-10)


def test_fast_engine_trains_as_the_reference():
    """The block-sparse engine (one mask) and the reference give the same run in float64."""
    ds = mixed_dataset(300)
    runs = []
    for engine in ("fast", "reference"):
        model = MADE(MADEConfig.for_data(ds, hidden=(12,), num_masks=1, dtype="float64", components=2))
        fit(model, ds, TrainConfig(epochs=2, engine=engine, batch_size=50), threads=1)
        runs.append(model)
    for a, b, name in zip(runs[0].params, runs[1].params, runs[0].param_names):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=name)


# --------------------------------------------------------------------------- standardisation and start


def test_discrete_columns_keep_the_identity_and_start_at_their_frequencies():
    ds = mixed_dataset()
    model = MADE(MADEConfig.for_data(ds, hidden=(8,), num_masks=1, dtype="float64", components=2))
    assert model.config.head == "mixed" and model.config.levels == (LEVELS,)
    fit(model, ds, TrainConfig(epochs=1, lr=1e-12, engine="reference"))  # the start, nearly untouched
    train = ds.train
    assert model.shift[1] == 0 and model.scale[1] == 1
    np.testing.assert_allclose(model.scale[[0, 2]], train[:, [0, 2]].std(axis=0), rtol=1e-12)
    assert model._log_det == pytest.approx(np.log(train[:, [0, 2]].std(axis=0)).sum(), rel=1e-12)
    n2 = (train[:, 1] == 2).sum()
    c = model.layers[-1].b.reshape(3, 6)
    expected = np.log(np.array([len(train) - n2 + 0.5, n2 + 0.5]) / (len(train) + 1.0))
    np.testing.assert_allclose(c[1, :2], expected, atol=1e-9)
    np.testing.assert_array_equal(c[1, 2:], 0)
    # a discrete column's own term is a probability: its levels' sum to 1 in every row
    p = [np.exp(variable_log_probs(model, np.where(np.arange(3) == 1, v, train))[:, 1]) for v in LEVELS]
    assert np.all(p[0] < 1) and np.allclose(p[0] + p[1], 1, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_and_resume(tmp_path):
    model = mixed_model(D=4, discrete=(0, 2), levels=(LEVELS, (0.0, 1.0, 2.0)), K=3)
    randomize_weights(model, 0)
    path = save_checkpoint(tmp_path / "m.npz", model)
    loaded, _ = load_checkpoint(path)
    assert loaded.config == model.config and loaded.config.levels == (LEVELS, (0.0, 1.0, 2.0))
    x = random_data(model.config, 5, 0)
    np.testing.assert_array_equal(loaded.nll(x), model.nll(x))
    assert MADEConfig.from_dict({k: v for k, v in MADEConfig(D=2).to_dict().items()
                                 if k not in ("discrete_columns", "levels")}) == MADEConfig(D=2)  # an old checkpoint
    ds = mixed_dataset(120)
    run = MADE(MADEConfig.for_data(ds, hidden=(6,), num_masks=2))
    fit(run, ds, TrainConfig(epochs=1), out_dir=tmp_path / "run")
    again, info = load_checkpoint(tmp_path / "run")
    history = fit(again, ds, TrainConfig(epochs=2), out_dir=tmp_path / "run", resume_state=info)
    assert history["rows"][-1]["epoch"] == 2 and again.config.discrete_columns == (1,)


# --------------------------------------------------------------------------- the choice of the columns


def test_the_recipe_chooses_the_mixed_head_for_discrete_columns():
    ds = load_dataset("diabetes", seed=0)
    cfg = MADEConfig.for_data(ds)
    assert (cfg.head, cfg.discrete_columns, cfg.levels) == ("mixed", (1,), (LEVELS,))
    assert MADEConfig.for_data(ds, head="mog").discrete_columns == ()
    assert MADEConfig.for_data(ds, discrete_columns=()).head == "mog"
    two = MADEConfig.for_data(ds, discrete_columns=(3, 1))
    assert two.discrete_columns == (1, 3) and len(two.levels[1]) == len(np.unique(np.concatenate(
        [ds.train[:, 3], ds.valid[:, 3], ds.test[:, 3]])))
    with pytest.raises(ValueError, match="discrete_columns entries must be at most 9"):
        MADEConfig.for_data(ds, discrete_columns=(10,))


@pytest.mark.parametrize("kw, message", [
    ({"head": "mixed"}, "the mixed head needs discrete_columns"),
    ({"head": "mog", "discrete_columns": (1,), "levels": (LEVELS,)}, "discrete_columns need the mixed head"),
    ({"head": "mixed", "discrete_columns": (1, 0), "levels": (LEVELS, LEVELS)}, "increasing column indices"),
    ({"head": "mixed", "discrete_columns": (2,), "levels": (LEVELS,)}, r"must lie in 0\.\.1"),
    ({"head": "mixed", "discrete_columns": (1,), "levels": ()}, "one list per discrete column"),
    ({"head": "mixed", "discrete_columns": (1,), "levels": ((2.0, 1.0),)}, r"levels\[0\] must be"),
    ({"head": "mixed", "discrete_columns": (1,), "levels": ((1.0, float("nan")),)}, r"levels\[0\] must be"),
    ({"head": "mixed", "discrete_columns": (1,), "levels": "12"}, "levels must be a list of lists"),
])
def test_configurations_of_discrete_columns_are_checked(kw, message):
    with pytest.raises(ValueError, match=message):
        MADEConfig(D=2, classes=0, input_encoding="raw", **kw)


def test_a_mixed_head_without_discrete_columns_is_refused():
    with pytest.raises(ValueError, match="the mixed head needs discrete columns and their levels"):
        make_head("mixed", np, 0, 2)


def test_cli_trains_diabetes_with_the_sex_column_discrete(tmp_path):
    r = CliRunner().invoke(cli, ["train", "--dataset", "diabetes", "--hidden", "16", "--epochs", "2",
                                  "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "mixed head" in r.output and "discrete columns (softmax over their levels): 1 sex {1, 2}" in r.output
    model, _ = load_checkpoint(tmp_path / "run")
    assert model.config.discrete_columns == (1,) and model.config.levels == (LEVELS,)
    r = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "run"), "--epochs", "3"])
    assert r.exit_code == 0 and "discrete columns (softmax over their levels): 1 sex {1, 2}" in r.output, r.output
    r = CliRunner().invoke(cli, ["train", "--dataset", "diabetes", "--hidden", "16", "--epochs", "1",
                                  "--discrete-columns", "none", "--out", str(tmp_path / "run2")])
    assert r.exit_code == 0 and "mog head" in r.output and "discrete columns" not in r.output


@pytest.mark.parametrize("value, message", [
    ("1,x", "--discrete-columns: expected comma-separated column indices"),
    ("-1", "--discrete-columns: expected comma-separated column indices"),
    ("", "--discrete-columns: expected comma-separated column indices"),
    ("12", "--discrete-columns entries must be at most 9"),
])
def test_cli_discrete_columns_errors_take_one_line(tmp_path, value, message):
    r = CliRunner().invoke(cli, ["train", "--dataset", "diabetes", "--discrete-columns", value,
                                  "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    r = CliRunner().invoke(cli, ["train", "--dataset", "diabetes", "--head", "mog", "--discrete-columns", "1",
                                  "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "need the mixed head" in r.output


def test_values_outside_the_levels_are_refused_by_row_column_and_levels():
    model = mixed_model(D=3)
    x = random_data(model.config, 5, 0)
    x[3, 1] = 1.5
    with pytest.raises(ValueError, match=r"x has 1.5 at row 3, column 1, a discrete column whose levels are \{1, 2\}"):
        model.nll(x)
    ds = mixed_dataset(90)
    ds.valid[4, 1] = 3.0
    model = MADE(MADEConfig(D=3, hidden=(4,), classes=0, head="mixed", input_encoding="raw", discrete_columns=(1,),
                            levels=(LEVELS,)))
    with pytest.raises(ValueError, match=r"dataset.valid has 3 at row 4, column 1"):
        fit(model, ds, TrainConfig(epochs=1))
    assert not model.standardised  # refused before anything changed


def test_estimator_models_a_binary_column_with_a_softmax():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    X[:, 1] = rng.integers(0, 2, 300)
    X[:, 0] += 3 * X[:, 1]
    est = MADEDensity(hidden=(16,), epochs=3, random_state=0).fit(X)
    assert est.model_.config.head == "mixed" and est.model_.config.levels == ((0.0, 1.0),)
    assert np.isfinite(est.score_samples(X[:5])).all()
    draws = est.sample(50, random_state=0)
    assert set(np.unique(draws[:, 1])) <= {0.0, 1.0} and not np.all(draws[:, 0] == np.round(draws[:, 0]))
    assert MADEDensity(hidden=(8,), epochs=1, random_state=0, discrete_columns=()).fit(X).model_.config.head == "mog"
    assert MADEDensity(hidden=(8,), epochs=1, random_state=0, discrete_columns="none").fit(X).model_.config.head == "mog"
    assert MADEDensity(hidden=(8,), epochs=1, random_state=0, head="mog").fit(X).model_.config.head == "mog"
    with pytest.raises(ValueError, match="column 1"):
        est.score_samples(np.array([[0.0, 0.5, 0.0]]))


# --------------------------------------------------------------------------- marginals and imputation


def test_marginal_of_the_real_column_sums_the_discrete_one_out():
    model = mixed_model(D=2, discrete=(1,), levels=((0.0, 1.0, 3.0),), hidden=(6,), direct=True, ordering="natural")
    randomize_weights(model, 1)
    x0 = np.array([float(model.shift[0]) - 1.0, float(model.shift[0]) + 0.5])
    joint = [model.log_prob(np.stack([x0, np.full(2, v)], axis=1)) for v in (0.0, 1.0, 3.0)]
    observed = np.array([[True, False]] * 2)
    got = log_marginal(model, np.stack([x0, np.full(2, np.nan)], axis=1), observed, masks=1)
    np.testing.assert_allclose(got, logsumexp(joint, axis=0), rtol=1e-10)


def mixed_with_holes():
    """A mixed model (column 1 discrete, levels 0, 1, 3) and 6 rows: the first 3 lack column 1, the others column 0."""
    model = mixed_model(D=3, discrete=(1,), levels=((0.0, 1.0, 3.0),), num_masks=4, ordering="natural")
    randomize_weights(model, 3)
    x = random_data(model.config, 6, 0)
    x[:3, 1] = np.nan
    x[3:, 0] = np.nan
    return model, x


def test_imputation_gives_a_level_for_a_discrete_column_and_a_mean_for_a_real_one():
    model, x = mixed_with_holes()
    out = impute(model, x, masks=4, samples=200, seed=0, discrete="mode")
    assert set(np.unique(out.filled[:3, 1])) <= {0.0, 1.0, 3.0}
    assert not np.all(out.filled[3:, 0] == np.round(out.filled[3:, 0]))
    comps = impute(model, x, masks=4, samples=200, draws=200, seed=0).draws
    counts = (comps[:3, :, 1][..., None] == np.array([0.0, 1.0, 3.0])).sum(axis=1)
    np.testing.assert_array_equal(out.filled[:3, 1], np.array([0.0, 1.0, 3.0])[counts.argmax(axis=1)])


def test_discrete_mean_fills_a_discrete_column_with_the_mean_of_its_drawn_levels():
    """``discrete="mean"`` (and ``"auto"``, the default, on real-valued data): the discrete column's estimate
    is the sample mean of its S drawn levels (least squared error, between the levels); the real column and
    every std are those of the mode's run."""
    model, x = mixed_with_holes()
    mode = impute(model, x, masks=4, samples=200, seed=0, discrete="mode")
    mean = impute(model, x, masks=4, samples=200, draws=200, seed=0, discrete="mean")
    np.testing.assert_array_equal(impute(model, x, masks=4, samples=200, seed=0).filled, mean.filled)
    np.testing.assert_allclose(mean.filled[:3, 1], mean.draws[:3, :, 1].mean(axis=1), rtol=1e-12)
    assert not set(np.unique(mean.filled[:3, 1])) & {0.0, 1.0, 3.0}
    np.testing.assert_array_equal(mean.filled[3:], mode.filled[3:])
    np.testing.assert_array_equal(mean.std, mode.std)
    with pytest.raises(ValueError, match="unknown discrete estimate 'median': choose one of auto, mode, mean"):
        impute(model, x, masks=4, discrete="median")


def test_posterior_summary_of_a_discrete_column_by_mode_and_by_mean():
    """Draws 1, 2, 2 of a level column (1, 2) and 0, 3, 9 of a real one: mode 2 or mean 5/3; the real
    column's mean 4 either way; the std the sample std (ddof 1) either way."""
    from made_np.conditional import posterior_summary
    model = mixed_model(D=2, discrete=(0,), levels=((1.0, 2.0),), hidden=(4,))
    comps = np.array([[[1.0, 0.0], [2.0, 3.0], [2.0, 9.0]]])  # (N = 1, S = 3, D = 2)
    std = [[np.sqrt(1 / 3), np.sqrt(21.0)]]
    for discrete, want in (("mode", [[2.0, 4.0]]), ("mean", [[5 / 3, 4.0]]), ("auto", [[5 / 3, 4.0]])):
        got, spread = posterior_summary(model, comps, discrete)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        np.testing.assert_allclose(spread, std, rtol=1e-12)
