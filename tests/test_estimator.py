"""Tests of :class:`made_np.estimator.MADEDensity`, the scikit-learn density estimator.

Small models (hidden (8,) to (32,), a few epochs) on scikit-learn's bundled digits
binarized at >= 8 (no network) and on synthetic categorical data; the file runs
in a few seconds on the CPU.

scikit-learn's estimator checks
-------------------------------
Every check that ``check_estimator`` generates for this estimator in
scikit-learn 1.9 is run by :func:`test_sklearn_estimator_checks`. Many of them
feed Gaussian float data, which a model of discrete data cannot take;
``MADEDensity`` therefore declares its input tags ``categorical=True`` and
``positive_only=True`` (true statements about it), and the checks then feed
``round(X - X.min())`` as int32, which it can. With those tags none of the
checks is an expected failure. Without them (:func:`test_checks_pass_without_tags_too`) the
checks feed Gaussian floats, which ``fit`` now models as real values (the mog head), and every
check passes too.

Checks that do not apply (not run, or skipped):

* check_array_api_input: skipped by scikit-learn itself unless ``SCIPY_ARRAY_API=1``;
  it would not apply anyway: the model computes with NumPy (or CuPy through
  :mod:`made_np.backend`), not through the Array API, and the estimator does not
  claim ``array_api_support``.
* classifier, regressor, transformer, clusterer and outlier checks: not generated,
  ``MADEDensity`` is none of these (it is a density estimator, like KernelDensity).
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.utils.estimator_checks import parametrize_with_checks

from made_np.estimator import MADEDensity
from made_np.model import MADE

#: Checks of ``parametrize_with_checks`` expected to fail, with the reason (none: see the module docstring).
EXPECTED_FAILED_CHECKS: dict = {}

SMALL = dict(hidden=(16,), epochs=3, batch_size=50, patience=5)


@pytest.fixture(scope="module")
def digits():
    """Digits binarized at >= 8: (600, 64) int64 0/1 (a subset, for speed)."""
    return (load_digits().data[:600] >= 8).astype(np.int64)


@pytest.fixture(scope="module")
def categorical():
    """Synthetic categorical data: (300, 5) int in 0..3 with a dependence between columns."""
    rng = np.random.default_rng(0)
    x0 = rng.integers(0, 4, 300)
    cols = [x0] + [(x0 + rng.integers(0, 2, 300) * k) % 4 for k in range(1, 5)]
    return np.stack(cols, axis=1)


@pytest.fixture(scope="module")
def fitted(digits):
    return MADEDensity(**SMALL, num_masks=1, random_state=0).fit(digits)


@pytest.fixture(scope="module")
def fitted_bank(digits):
    return MADEDensity(**SMALL, num_masks=3, random_state=0).fit(digits)


# --------------------------------------------------------------------------- fit


def test_fit_returns_self_and_sets_attributes(digits):
    est = MADEDensity(**SMALL, random_state=0)
    assert est.fit(digits) is est
    assert isinstance(est.model_, MADE)
    assert est.n_features_in_ == 64 and est.n_classes_ == 2
    c = est.model_.config
    assert (c.head, c.input_encoding, c.hidden, c.D, c.direct) == ("bernoulli", "binary", (16,), 64, True)
    assert 1 <= len(est.history_["rows"]) <= SMALL["epochs"]
    assert est.history_["stop_reason"] in ("epochs", "patience")


def test_fit_categorical(categorical):
    est = MADEDensity(hidden=(16,), epochs=3, random_state=0).fit(categorical)
    assert est.n_classes_ == 4
    c = est.model_.config
    assert (c.head, c.input_encoding, c.classes) == ("categorical", "onehot", 4)
    s = est.score_samples(categorical)
    assert s.shape == (300,) and np.all(np.isfinite(s)) and np.all(s < 0)
    x = est.sample(50, random_state=0)
    assert x.shape == (50, 5) and x.dtype == np.int64 and x.min() >= 0 and x.max() <= 3


def test_fit_accepts_integer_valued_floats_bools_and_lists(digits):
    small = digits[:100]
    ref = MADEDensity(hidden=(8,), epochs=2, random_state=0).fit(small).score_samples(small)
    for X in (small.astype(np.float32), small.astype(bool), small.tolist()):
        est = MADEDensity(hidden=(8,), epochs=2, random_state=0).fit(X)
        np.testing.assert_array_equal(est.score_samples(X), ref)


def test_fit_takes_a_sparse_matrix_as_its_dense_rows(digits, monkeypatch):
    """A scipy.sparse X (a binary bag of words) gave scikit-learn's TypeError: it is densified, as
    BernoulliNB takes it (the same fit and scores as the dense rows), and refused in one line naming
    X when the dense copy would pass the memory limit."""
    import scipy.sparse as sp

    from made_np.estimator import MADEImputer
    from made_np.limits import LimitError

    small = digits[:100]
    ref = MADEDensity(hidden=(8,), epochs=2, random_state=0).fit(small)
    for X in (sp.csr_matrix(small), sp.csc_array(small.astype(np.uint8)), sp.coo_matrix(small)):
        est = MADEDensity(hidden=(8,), epochs=2, random_state=0).fit(X)
        np.testing.assert_array_equal(est.score_samples(X), ref.score_samples(small))
    imputer = MADEImputer(hidden=(8,), epochs=2, random_state=0).fit(sp.csr_matrix(small))
    np.testing.assert_array_equal(imputer.transform(sp.csr_matrix(small)), small)  # nothing missing
    monkeypatch.setenv("MADE_NP_MAX_MEMORY", "1M")
    big = sp.eye(20000, 100, dtype=np.int64, format="csr")  # 16 MB once dense
    with pytest.raises(LimitError, match=r"^X needs about 15.3 MiB of memory, for a scipy.sparse X of shape "
                                         r"\(20000, 100\) densified; the limit is 1.0 MiB"):
        MADEDensity().fit(big)


def test_num_masks_inf_is_a_bank_without_limit(digits):
    """num_masks=float("inf") (or "inf", as --num-masks inf) is the unlimited bank (stored as 0, its
    older spelling, which still works); MADEImputer's default is spelled inf."""
    from made_np.estimator import MADEImputer

    small = digits[:100]
    scores = [MADEDensity(hidden=(8,), epochs=2, num_masks=k, eval_masks=3, random_state=0).fit(small).score_samples(small)
              for k in (float("inf"), "inf", 0)]
    np.testing.assert_array_equal(scores[0], scores[1])
    np.testing.assert_array_equal(scores[0], scores[2])
    assert MADEImputer().get_params()["num_masks"] == float("inf")


def test_fit_is_quiet(digits, capsys):
    MADEDensity(**SMALL, random_state=0).fit(digits)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_defaults_come_from_the_library_recipe(digits):
    est = MADEDensity()
    assert est.epochs is None and est.lr is None and est.num_masks is None and est.direct is None  # fit resolves
    fitted = MADEDensity(hidden=(8,), random_state=0, epochs=1).fit(digits[:300])
    cfg = fitted.model_.config
    assert cfg.num_masks == 16 and cfg.direct  # the recipe's choice for a small data set, as made-np train


def test_validation_fraction_zero_and_invalid(digits):
    est = MADEDensity(hidden=(8,), epochs=2, validation_fraction=0.0, random_state=0).fit(digits[:50])
    assert np.all(np.isfinite(est.score_samples(digits[:50])))
    with pytest.raises(ValueError, match="validation_fraction"):
        MADEDensity(hidden=(8,), epochs=2, validation_fraction=1.0).fit(digits[:50])


def test_two_rows_is_enough(digits):
    est = MADEDensity(hidden=(8,), epochs=1, random_state=0).fit(digits[:2])
    assert est.score_samples(digits[:2]).shape == (2,)


def test_fit_trains_on_the_larger_split_and_validates_on_the_fraction(monkeypatch):
    """validation_fraction=0.1 of 100 distinct rows: 90 train and 10 validate, disjoint, all rows used."""
    seen = {}

    def record(model, data, cfg):
        seen.update(train=data.train, valid=data.valid)
        return {"rows": []}

    monkeypatch.setattr("made_np.estimator._fit", record)
    X = (np.arange(100)[:, None] >> np.arange(7) & 1).astype(np.int64)  # row i: the bits of i
    MADEDensity(hidden=(4,), epochs=1, validation_fraction=0.1, random_state=0).fit(X)
    train, valid = (set((seen[k] << np.arange(7)).sum(axis=1).tolist()) for k in ("train", "valid"))
    assert (len(seen["train"]), len(seen["valid"])) == (90, 10)
    assert not train & valid and train | valid == set(range(100))


def test_connectivity_agnostic_false_reaches_the_model_and_its_clones(digits):
    """connectivity_agnostic=False: every mask of the bank shares mask 0's hidden degrees (its
    orderings still differ), in the estimator and in a clone of it."""
    est = MADEDensity(hidden=(8, 6), num_masks=3, connectivity_agnostic=False, epochs=1, random_state=0)
    assert est.get_params()["connectivity_agnostic"] is False
    for fitted in (est.fit(digits[:40]), clone(est).fit(digits[:40])):
        model = fitted.model_
        assert model.config.connectivity_agnostic is False and model.config.order_agnostic is True
        first, last = model.maskset_at(0), model.maskset_at(2)
        assert not np.array_equal(first.ordering, last.ordering)
        for a, b in zip(first.degrees, last.degrees):
            np.testing.assert_array_equal(a, b)
    agnostic = MADEDensity(hidden=(8, 6), num_masks=3, epochs=1, random_state=0).fit(digits[:40]).model_
    assert not np.array_equal(agnostic.maskset_at(0).degrees[0], agnostic.maskset_at(2).degrees[0])


@pytest.mark.parametrize("bad, match", [
    (lambda X: np.where(X == 1, np.nan, X), "NaN"),
    (lambda X: X[:1], "minimum of 2"),
    (lambda X: X[:, 0], "2D array"),
])
def test_fit_rejects_bad_data(digits, bad, match):
    with pytest.raises(ValueError, match=match):
        MADEDensity(hidden=(8,), epochs=1).fit(bad(digits[:20].astype(float)))


def test_float_data_with_fractions_fit_the_real_heads():
    """Gaussian floats (and integers + 0.5) are real values: the mog head, n_classes_ 0; a named
    discrete head still refuses them."""
    X = np.random.default_rng(0).normal(size=(30, 3))
    est = MADEDensity(hidden=(8,), epochs=1).fit(X)
    assert est.n_classes_ == 0 and est.model_.config.head == "mog"
    assert MADEDensity(hidden=(8,), epochs=1).fit(np.abs(X).round() + 0.5).n_classes_ == 0
    with pytest.raises(ValueError, match="integer-valued"):
        MADEDensity(hidden=(8,), epochs=1, head="categorical").fit(X)


def test_whole_numbers_that_cannot_be_classes_fit_the_real_heads(digits):
    """Counts below 0 or from 256 on are measurements (data.is_real, as the loaders): a real head;
    a named discrete head still refuses them by their value."""
    X = digits[:30].astype(np.int64)
    for measured in (X - 1, X * 300):
        est = MADEDensity(hidden=(8,), epochs=1, random_state=0).fit(measured)
        assert est.n_classes_ == 0 and est.model_.config.head in ("mog", "mixed")
    with pytest.raises(ValueError, match="Negative values in data passed to MADEDensity"):
        MADEDensity(hidden=(8,), epochs=1, head="categorical").fit(X - 1)
    with pytest.raises(ValueError, match=r"X has the value \d+: MADEDensity models at most 256 classes"):
        MADEDensity(hidden=(8,), epochs=1, head="categorical").fit(X * 300)


def test_invalid_parameters_raise_in_fit(digits):
    for params in ({"hidden": (0,)}, {"optimizer": "rmsprop"}, {"ordering": "sideways"}, {"num_masks": -1}):
        est = MADEDensity(hidden=(8,), epochs=1)
        est.set_params(**params)  # stored unchanged; validated in fit
        with pytest.raises(ValueError):
            est.fit(digits[:20])
    # int() and bool() used to make these 2 epochs, 1 mask and True: each is now refused by name
    for params, fragment in [({"epochs": 2.9}, "epochs must be an integer, got 2.9"),
                             ({"num_masks": "3"}, "num_masks must be an integer"),
                             ({"order_agnostic": "no"}, "order_agnostic must be true or false"),
                             ({"direct": "no"}, "direct must be true or false"),
                             ({"lr": "0.01"}, "lr must be a number"),
                             ({"hidden": "16"}, "hidden must be an integer or a sequence of integers"),
                             ({"eval_masks": 0}, "eval_masks must be >= 1")]:
        with pytest.raises(ValueError, match=fragment):
            MADEDensity(hidden=(8,), epochs=1).set_params(**params).fit(digits[:20])


# --------------------------------------------------------------------------- scores


def test_score_samples_single_mask_is_model_nll(fitted, digits):
    s = fitted.score_samples(digits)
    assert s.shape == (600,) and s.dtype == np.float64 and np.all(np.isfinite(s))
    np.testing.assert_allclose(s, -fitted.model_.nll(digits).astype(np.float64), rtol=0, atol=1e-6)
    assert fitted.score(digits) == pytest.approx(s.mean(), abs=1e-9)
    assert isinstance(fitted.score(digits), float)


def test_score_samples_bank_is_mixture_over_masks(fitted_bank, digits):
    model = fitted_bank.model_
    s = fitted_bank.score_samples(digits)
    assert s.shape == (600,) and s.dtype == np.float64 and np.all(np.isfinite(s))
    np.testing.assert_allclose(s, -model.ensemble_nll(digits, [0, 1, 2]).astype(np.float64), rtol=0, atol=1e-6)
    # the formula itself: log((1/K) sum_k p_k(x))
    lp = np.stack([-model.nll(digits, mask=k).astype(np.float64) for k in range(3)])
    mixture = np.logaddexp.reduce(lp, axis=0) - np.log(3)
    np.testing.assert_allclose(s, mixture, rtol=0, atol=1e-5)
    assert not np.allclose(s, lp[0])  # it is not just mask 0
    assert fitted_bank.score(digits) == pytest.approx(s.mean(), abs=1e-9)


def test_eval_masks_limits_the_mixture(digits):
    est = MADEDensity(**SMALL, num_masks=4, eval_masks=2, random_state=0).fit(digits)
    want = -est.model_.ensemble_nll(digits, [0, 1]).astype(np.float64)
    np.testing.assert_allclose(est.score_samples(digits), want, rtol=0, atol=1e-6)


def test_score_samples_rejects_bad_data(fitted, digits):
    with pytest.raises(ValueError, match="outside the classes"):
        fitted.score_samples(digits[:5] * 2)
    with pytest.raises(ValueError, match="integer-valued"):
        fitted.score_samples(digits[:5] + 0.25)
    with pytest.raises(ValueError, match="features"):
        fitted.score_samples(digits[:5, :10])
    assert fitted.score_samples(digits[:1]).shape == (1,)  # one row is fine after fit


def test_unfitted_raises():
    est = MADEDensity()
    X = np.zeros((3, 4), dtype=int)
    for call in (lambda: est.score_samples(X), lambda: est.score(X), lambda: est.sample(2)):
        with pytest.raises(NotFittedError):
            call()


# --------------------------------------------------------------------------- samples


@pytest.mark.parametrize("which", ["fitted", "fitted_bank"])
def test_sample_shape_dtype_range(which, request):
    est = request.getfixturevalue(which)
    x = est.sample(40, random_state=0)
    assert x.shape == (40, 64) and x.dtype == np.int64
    assert set(np.unique(x)) <= {0, 1}
    assert est.sample().shape == (1, 64)
    np.testing.assert_array_equal(est.sample(40, random_state=0), x)
    assert not np.array_equal(est.sample(40, random_state=1), x)
    with pytest.raises(ValueError, match="n_samples"):
        est.sample(0)


def test_bank_samples_use_several_masks(fitted_bank, monkeypatch):
    import made_np.estimator as mod
    seen = {}

    def spy(model, n, *, seed=None, masks=None):
        seen["masks"] = masks
        return real(model, n, seed=seed, masks=masks)
    real = mod._sample
    monkeypatch.setattr(mod, "_sample", spy)
    fitted_bank.sample(10, random_state=0)
    assert seen["masks"] == [0, 1, 2]


# --------------------------------------------------------------------------- random_state


def test_same_random_state_same_fit_and_samples(digits):
    a = MADEDensity(**SMALL, num_masks=2, random_state=7).fit(digits)
    b = MADEDensity(**SMALL, num_masks=2, random_state=7).fit(digits)
    np.testing.assert_array_equal(a.score_samples(digits), b.score_samples(digits))
    assert a.score(digits) == b.score(digits)
    np.testing.assert_array_equal(a.sample(30, random_state=3), b.sample(30, random_state=3))
    c = MADEDensity(**SMALL, num_masks=2, random_state=8).fit(digits)
    assert c.score(digits) != a.score(digits)


def test_random_state_kinds(digits):
    small = digits[:200]
    by_int = MADEDensity(hidden=(8,), epochs=2, random_state=0).fit(small).score_samples(small)
    by_rs = MADEDensity(hidden=(8,), epochs=2, random_state=np.random.RandomState(0)).fit(small)
    np.testing.assert_array_equal(by_rs.score_samples(small), by_int)  # check_random_state(0) is RandomState(0)
    g1 = MADEDensity(hidden=(8,), epochs=2, random_state=np.random.default_rng(5)).fit(small)
    g2 = MADEDensity(hidden=(8,), epochs=2, random_state=np.random.default_rng(5)).fit(small)
    np.testing.assert_array_equal(g1.score_samples(small), g2.score_samples(small))
    np.testing.assert_array_equal(g1.sample(5, random_state=np.random.default_rng(1)),
                                  g1.sample(5, random_state=np.random.default_rng(1)))


# --------------------------------------------------------------------------- sklearn API


def test_get_set_params_clone():
    est = MADEDensity(hidden=(32,), num_masks=4, epochs=7, lr=1e-3, random_state=3)
    params = est.get_params()
    assert params["hidden"] == (32,) and params["num_masks"] == 4 and params["random_state"] == 3
    assert set(params) == {"hidden", "num_masks", "order_agnostic", "connectivity_agnostic", "direct",
                           "ordering", "epochs", "batch_size", "lr", "optimizer", "patience",
                           "validation_fraction", "eval_masks", "random_state", "head", "components",
                           "discrete_columns", "atoms"}
    assert est.set_params(hidden=(4,), patience=0) is est
    assert est.get_params()["hidden"] == (4,) and est.patience == 0
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert not hasattr(twin, "model_")
    with pytest.raises(ValueError):
        est.set_params(not_a_parameter=1)


def test_clone_of_fitted_is_unfitted(fitted):
    twin = clone(fitted)
    with pytest.raises(NotFittedError):
        twin.score_samples(np.zeros((2, 64), dtype=int))


def test_pickle_round_trip(fitted_bank, digits):
    back = pickle.loads(pickle.dumps(fitted_bank))
    np.testing.assert_array_equal(back.score_samples(digits), fitted_bank.score_samples(digits))
    np.testing.assert_array_equal(back.sample(10, random_state=0), fitted_bank.sample(10, random_state=0))


def test_grid_search_picks_by_held_out_log_likelihood(digits):
    base = MADEDensity(hidden=(4,), epochs=3, batch_size=50, patience=5, random_state=0)
    grid = {"hidden": [(4,), (32,)]}
    search = GridSearchCV(base, grid, cv=3).fit(digits)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores))
    assert search.best_index_ == int(np.argmax(scores))
    assert search.best_params_ == search.cv_results_["params"][int(np.argmax(scores))]
    # mean_test_score is the mean over the folds of `score` (held-out mean log-likelihood)
    for i, params in enumerate(search.cv_results_["params"]):
        folds = [clone(base).set_params(**params).fit(digits[tr]).score(digits[te])
                 for tr, te in KFold(3).split(digits)]
        assert scores[i] == pytest.approx(np.mean(folds), abs=1e-9)
    assert isinstance(search.best_estimator_, MADEDensity)
    assert search.score(digits) == pytest.approx(search.best_estimator_.score(digits))


# --------------------------------------------------------------------------- estimator checks


class _UntaggedMADEDensity(MADEDensity):
    """MADEDensity claiming to take any real input, as scikit-learn assumes by default."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = False
        tags.input_tags.positive_only = False
        return tags


def test_checks_pass_without_tags_too():
    """Keeps the module docstring honest: without the input tags the checks feed Gaussian floats,
    which are real values (the mog head), and every check passes."""
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(_UntaggedMADEDensity(hidden=(8,), epochs=2, batch_size=20),
                              on_fail=None, on_skip=None)
    failed = {r["check_name"]: str(r["exception"]) for r in results if r["status"] == "failed"}
    assert not failed and sum(r["status"] == "passed" for r in results) > 20


@parametrize_with_checks([MADEDensity(hidden=(8,), epochs=2, batch_size=20)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_eval_masks_set_after_fit_is_checked_where_it_is_used(fitted_bank, digits):
    """set_params(eval_masks=-3) or 'x' on a fitted estimator used to surface as an unrelated
    'mask_indices must name at least one' (or a TypeError) from deep inside."""
    est = pickle.loads(pickle.dumps(fitted_bank))  # a fitted copy: the shared fixture stays as it is
    for bad, fragment in [(-3, "eval_masks must be >= 1"), ("x", "eval_masks must be an integer")]:
        est.set_params(eval_masks=bad)
        with pytest.raises(ValueError, match=fragment):
            est.score_samples(digits)
