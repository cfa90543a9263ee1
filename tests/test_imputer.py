"""MADEImputer (a scikit-learn transformer) and fit on rows with missing entries.

The data are a binary Markov chain (each bit copies the previous one 90% of the time): a
missing bit is predictable from its observed neighbours, not from its column's frequency
(50%). An imputer trained on rows with 20% of the entries missing must recover held-out
entries far better than the column mode does.
"""
import numpy as np
import pytest
from conftest import markov_chain
from sklearn.exceptions import NotFittedError
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from made_np import MADE, MADEConfig, TrainConfig, fit
from made_np.data import Dataset
from made_np.estimator import MADEImputer

SMALL = dict(hidden=(32,), epochs=25, batch_size=50, lr=1e-2, patience=0, random_state=0, draws=40)


def holes(x, p, seed):
    """``x`` as float with each entry NaN with probability ``p`` (no row all missing)."""
    rng = np.random.default_rng(seed)
    out = x.astype(float)
    out[rng.random(x.shape) < p] = np.nan
    all_missing = np.isnan(out).all(axis=1)
    out[all_missing, 0] = x[all_missing, 0]
    return out


@pytest.fixture(scope="module")
def chain_fit():
    train, test = markov_chain(800, 1), markov_chain(300, 2)
    return MADEImputer(**SMALL).fit(holes(train, 0.2, 0)), test, holes(test, 0.3, 1)


def test_imputes_held_out_entries_far_better_than_the_column_mode(chain_fit):
    imp, truth, x = chain_fit
    miss = np.isnan(x)
    made = imp.transform(x)
    mode = SimpleImputer(strategy="most_frequent").fit(x).transform(x)
    acc_made, acc_mode = (made[miss] == truth[miss]).mean(), (mode[miss] == truth[miss]).mean()
    assert acc_made > 0.8 and acc_mode < 0.6, (acc_made, acc_mode)  # measured: 0.852 and 0.527
    assert np.array_equal(made[~miss], x[~miss]) and set(np.unique(made)) <= {0.0, 1.0}


def test_impute_gives_std_and_draws_and_is_seeded(chain_fit):
    imp, _, x = chain_fit
    filled, std, draws = imp.impute(x[:5], draws=3)
    assert std.shape == (5, 8) and np.all(std[~np.isnan(x[:5])] == 0) and np.all(std <= 0.51)
    assert draws.shape == (5, 3, 8)
    assert np.array_equal(filled, imp.transform(x[:5]))  # random_state fixes the completions


def test_in_a_pipeline_before_a_classifier(chain_fit):
    truth, x = markov_chain(400, 5), None
    x = holes(truth, 0.2, 3)
    y = truth[:, 7]  # the last bit, predicted from the first six (the seventh dropped): most of it is in bit 6
    X = x[:, :7]
    pipe = Pipeline([("impute", MADEImputer(**SMALL)), ("clf", LogisticRegression())]).fit(X, y)
    assert pipe.score(X, y) > 0.8
    assert list(pipe[:-1].get_feature_names_out()) == [f"x{i}" for i in range(7)]


def test_fit_refuses_rows_all_missing_and_unseen_classes(chain_fit):
    x = holes(markov_chain(20, 0), 0.2, 0)
    x[3] = np.nan
    with pytest.raises(ValueError, match="X row 3 has every entry missing"):
        MADEImputer(**SMALL).fit(x)
    imp = chain_fit[0]
    with pytest.raises(ValueError, match="outside the classes 0..1"):
        imp.transform([[0, 1, 2, np.nan, 0, 0, 1, 1]])
    with pytest.raises(ValueError, match="integer-valued"):
        imp.transform([[0, 1, 0.5, np.nan, 0, 0, 1, 1]])
    with pytest.raises(NotFittedError):
        MADEImputer().transform(x)


def test_a_single_mask_model_cannot_train_on_missing_entries():
    x = holes(markov_chain(50, 0), 0.2, 0)
    for bad in ({"num_masks": 1}, {"order_agnostic": False}):  # named as the estimator's parameters
        with pytest.raises(ValueError, match=r"X has missing entries \(NaN\): MADEImputer\(num_masks=.*use num_masks > 1"):
            MADEImputer(**{**SMALL, **bad, "epochs": 1}).fit(x)
    MADEImputer(**{**SMALL, "num_masks": 1, "epochs": 1}).fit(markov_chain(50, 0))  # complete rows train
    ds = Dataset("chain", x[:40], x[40:], x[40:], 2, None)
    model = MADE(MADEConfig(D=8, hidden=(8,), num_masks=0, order_agnostic=True))
    x_all = ds.train.copy()
    x_all[5] = np.nan
    with pytest.raises(ValueError, match="dataset.train row 5 has every entry missing"):
        fit(model, Dataset("chain", x_all, x[40:], x[40:], 2, None), TrainConfig(epochs=1))


def test_fit_on_missing_entries_learns_the_observed_marginals():
    """fit's train and validation NLLs are -log p(x_o) of the observed entries: they fall as it learns, and
    with every entry missing at rate 0.5 they are about half the complete rows' NLL."""
    full, part = markov_chain(600, 1), holes(markov_chain(600, 1), 0.5, 2)
    nll = {}
    for name, x in (("full", full), ("part", part)):
        model = MADE(MADEConfig(D=8, hidden=(32,), num_masks=0, order_agnostic=True, seed=0))
        h = fit(model, Dataset("chain", x[:500], x[500:], x[500:], 2, None),
                TrainConfig(epochs=15, batch_size=50, lr=1e-2, patience=0, engine="reference", seed=0))
        rows = h["rows"]
        assert rows[-1]["train_nll"] < rows[0]["train_nll"] - 0.1
        nll[name] = rows[-1]["valid_nll"]
    assert 0.35 < nll["part"] / nll["full"] < 0.65, nll


@parametrize_with_checks([MADEImputer(hidden=(8,), epochs=2, batch_size=20, draws=4, eval_masks=4)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_takes_every_parameter_of_made_density():
    """MADEDensity's head, components and discrete_columns reach the imputer's model (and clone)."""
    from sklearn.base import clone

    from made_np import MADEDensity
    assert set(MADEDensity().get_params()) <= set(MADEImputer().get_params())
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    X[:, 2] = rng.integers(0, 3, size=60)  # a discrete column: 'auto' would give the mixed head
    X[rng.random(X.shape) < 0.2] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.5
    imp = clone(MADEImputer(hidden=(8,), epochs=1, head="mog", components=2, discrete_columns=(), random_state=0))
    head = imp.fit(X).model_.head
    assert (head.name, head.K, head.discrete_columns) == ("mog", 2, ())
    assert not np.isnan(imp.transform(X)).any()


def test_discrete_mean_fills_a_binary_level_column_with_a_fraction_whose_rounding_is_the_mode():
    """Levels 1 and 2 (a mixed head): ``discrete="mode"`` fills 1 or 2, ``"mean"`` (the default ``"auto"``
    on real-valued data) the mean of the same draws, in [1, 2] and off the levels where the draws
    disagree; the mode is that mean rounded (ties to the lower level), and the real columns are the
    same either way."""
    rng = np.random.default_rng(0)
    s = rng.integers(1, 3, size=300).astype(float)
    X = np.stack([3 * s + rng.normal(size=300), s, rng.normal(size=300)], axis=1)
    x = holes(X, 0.3, 1)
    imp = MADEImputer(hidden=(16,), epochs=3, random_state=0, draws=40).fit(x)
    assert imp.model_.head.discrete_columns == (1,)
    mean, mode = imp.transform(x), imp.set_params(discrete="mode").transform(x)
    np.testing.assert_array_equal(imp.set_params(discrete="mean").transform(x), mean)
    miss = np.isnan(x[:, 1])
    assert set(np.unique(mode[miss, 1])) == {1.0, 2.0} and np.all((mean[:, 1] >= 1) & (mean[:, 1] <= 2))
    assert not np.isin(mean[miss, 1], (1.0, 2.0)).all()
    np.testing.assert_array_equal(mode[:, 1], np.where(mean[:, 1] > 1.5, 2.0, 1.0))
    np.testing.assert_array_equal(mode[:, [0, 2]], mean[:, [0, 2]])
    with pytest.raises(ValueError, match="unknown discrete estimate 'median'"):
        imp.set_params(discrete="median").transform(x)


def test_score_samples_gives_rows_with_missing_entries_the_marginal_of_their_observed_entries(chain_fit):
    from made_np import evaluate

    imp, test, missing = chain_fit
    scores = imp.score_samples(missing)
    complete = ~np.isnan(missing).any(axis=1)
    assert np.array_equal(scores[complete], imp.score_samples(test[complete]))  # the ordinary ensemble, unchanged
    K = len(imp._mask_indices())
    assert scores.mean() == pytest.approx(-evaluate(imp.model_, missing, eval_masks=K)["nll"], rel=1e-12)
    assert imp.score(missing) == pytest.approx(scores.mean(), rel=1e-12)


def test_score_samples_checks_the_observed_values_of_rows_with_missing_entries():
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    X = np.c_[a, a + 0.3 * rng.normal(size=200), rng.integers(0, 3, 200)]  # column 2: levels 0, 1, 2
    X[rng.random(X.shape) < 0.1] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    imp = MADEImputer(hidden=(8,), epochs=2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 1.5 at row 0, column 2, a discrete column whose levels are"):
        imp.score_samples(np.array([[0.1, np.nan, 1.5], [0.1, 0.2, 1.0]]))  # not a level, beside a NaN


def test_an_unknown_discrete_estimate_is_refused_at_fit():
    with pytest.raises(ValueError, match="discrete.*'foo'.*auto, mode, mean"):
        MADEImputer(discrete="foo").fit(np.random.default_rng(0).random((20, 3)))
