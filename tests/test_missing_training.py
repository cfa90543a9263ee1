"""Training on rows with missing entries: the loss -log p_k(x_o) under per-row observed-first masks.

``MADE.loss_and_grad(x, mask, observed=...)`` builds one observed-first mask per row from the
minibatch's mask (:func:`made_np.masks.observed_first_rows`) and sums the observed variables'
conditionals only. Checked here: its gradient by central differences (float64, 1e-6 relative),
that with nothing missing it is the ordinary loss and gradient under the same mask, that each
row's loss is ``-log p(x_o)`` of the row's own observed-first MaskSet, and that the missing
entries' values never matter.
"""
import numpy as np
import pytest
from conftest import randomize_weights

from made_np.conditional import variable_log_probs
from made_np.masks import MaskSet, direct_mask, hidden_mask, observed_first_rows, output_mask
from made_np.model import MADE, MADEConfig

CASES = {
    "bernoulli, 2 layers, direct": dict(D=5, hidden=(7, 6), direct=True),
    "categorical one-hot, 1 layer": dict(D=4, hidden=(9,), classes=3, head="categorical", input_encoding="onehot"),
    "bernoulli, no hidden layer, context": dict(D=4, hidden=(), direct=True, context=2, context_encoding="raw"),
    "mog, standardised, 1 layer": dict(D=4, hidden=(8,), classes=0, head="mog", components=2, input_encoding="raw"),
}


def make(case, seed=0):
    kw = dict(CASES[case])
    model = MADE(MADEConfig(num_masks=0, order_agnostic=True, connectivity_agnostic=True, dtype="float64",
                            seed=seed, **kw))
    randomize_weights(model, seed)
    if model.head.real:  # NLLs in data units: each observed variable adds its log scale_d
        rng = np.random.default_rng(seed)
        model.set_standardisation(rng.normal(0, 2, size=model.config.D), rng.uniform(0.5, 3.0, size=model.config.D))
    return model


def batch(model, seed=1, n=6):
    c = model.config
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c.D)) * 2 if c.classes == 0 else rng.integers(0, c.classes, size=(n, c.D))
    obs = rng.random((n, c.D)) < 0.6
    obs[0] = True
    obs[:, 0] |= ~obs.any(axis=1)  # no row all missing
    y = rng.normal(size=(n, c.context)) if c.context else None
    return x, obs, y


@pytest.mark.parametrize("case", CASES)
def test_gradient_matches_finite_differences(case):
    model = make(case)
    x, obs, y = batch(model)
    model.loss_and_grad(x, 3, context=y, observed=obs)
    grads = [g.copy() for g in model.grads]
    rng = np.random.default_rng(2)
    for p, g in zip(model.params, grads):
        for i in rng.choice(p.size, size=min(6, p.size), replace=False):
            idx = np.unravel_index(i, p.shape)
            old, h = p[idx], 1e-5
            p[idx] = old + h
            up = float(model.loss_and_grad(x, 3, context=y, observed=obs))
            p[idx] = old - h
            down = float(model.loss_and_grad(x, 3, context=y, observed=obs))
            p[idx] = old
            fd = (up - down) / (2 * h)
            assert g[idx] == pytest.approx(fd, rel=1e-6, abs=1e-9), (case, idx)


@pytest.mark.parametrize("case", CASES)
def test_nothing_missing_is_the_ordinary_loss_under_the_same_mask(case):
    model = make(case)
    x, _, y = batch(model)
    plain = model.loss_and_grad(x, 5, context=y)
    plain_grads = [g.copy() for g in model.grads]
    rows = model.loss_and_grad(x, 5, context=y, observed=np.ones(x.shape, dtype=bool))
    assert float(rows) == pytest.approx(float(plain), rel=1e-12)
    for a, b in zip(model.grads, plain_grads):
        assert np.allclose(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("case", CASES)
def test_each_rows_loss_is_its_own_observed_first_marginal(case):
    model = make(case)
    x, obs, y = batch(model)
    ms = model.mask(2)[0]
    per_row = model._observed_nll(x, obs, 2, None if y is None else model.encode_context(y))
    for n in range(x.shape[0]):
        key = np.where(obs[n], 0, model.config.D) + ms.ordering
        pi = np.empty_like(key)
        pi[np.argsort(key)] = np.arange(1, key.size + 1)
        degs = ms.degrees
        own = MaskSet(-1, pi, degs, tuple([hidden_mask(pi, degs[0]), *ms.hidden[1:]]) if degs else (),
                      output_mask(degs[-1] if degs else pi, pi), direct_mask(pi))
        assert np.array_equal(np.sort(pi[obs[n]]), np.arange(1, obs[n].sum() + 1))  # observed first
        yn = None if y is None else model.encode_context(y[n:n + 1])
        lp = variable_log_probs(model, x[n:n + 1], context=yn, mask=own)[0]
        assert per_row[n] == pytest.approx(-lp[obs[n]].sum(), rel=1e-12)
    assert float(model.loss_and_grad(x, 2, context=y, observed=obs)) == pytest.approx(per_row.mean(), rel=1e-12)


def test_missing_values_are_never_read():
    model = make("categorical one-hot, 1 layer")
    x, obs, _ = batch(model)
    a = model.loss_and_grad(x, 1, observed=obs)
    ga = [g.copy() for g in model.grads]
    b = model.loss_and_grad(np.where(obs, x, 2), 1, observed=obs)
    assert float(a) == float(b) and all(np.array_equal(u, v) for u, v in zip(ga, model.grads))


def test_observed_first_rows_keeps_the_order_of_the_observed_and_shares_hidden_masks():
    model = make("bernoulli, 2 layers, direct")
    ms = model.mask(4)[0]
    obs = np.array([[True, False, True, False, True], [False] * 4 + [True]])
    first, middle, last, direct = observed_first_rows(ms, obs, direct=True)
    assert first.shape == (2, 5, 7) and last.shape == (2, 6, 5) and direct.shape == (2, 5, 5)
    assert middle is ms.hidden[1]
    pi = np.argsort(np.argsort(np.where(obs, 0, 5) + ms.ordering, axis=1), axis=1) + 1
    for n in range(2):
        o = np.flatnonzero(obs[n])
        assert np.array_equal(np.argsort(pi[n][o]), np.argsort(ms.ordering[o]))  # stable: m^0's order kept
        assert np.array_equal(first[n], hidden_mask(pi[n], ms.degrees[0]))
        assert np.array_equal(direct[n], direct_mask(pi[n]))


@pytest.mark.parametrize("case", ["bernoulli, 2 layers, direct", "mog, standardised, 1 layer"])
def test_evaluate_scores_a_row_with_missing_entries_by_the_ensemble_of_its_observed_marginals(case):
    from made_np import evaluate

    model = make(case)
    x, obs, _ = batch(model, n=8)
    filled, x = x, np.where(obs, x, np.nan)  # loss_and_grad takes any finite value where missing
    K = 5
    # each row alone: -log (1/K) sum_k p_k(x_o), p_k under the observed-first masks of bank mask k
    per_mask = np.array([[float(model.loss_and_grad(filled[i:i + 1], k, observed=obs[i:i + 1])) for i in range(8)]
                         for k in model.eval_mask_indices(K)])
    want = -(np.logaddexp.reduce(-per_mask, axis=0) - np.log(K))
    got = evaluate(model, x, eval_masks=K, batch_size=3)
    assert got["nll"] == pytest.approx(want.mean(), rel=1e-12) and got["n"] == 8
    assert got["nll_per_dim"] == pytest.approx(want.sum() / obs.sum(), rel=1e-12)  # nats per observed entry
    from made_np.train import _rows_nll  # row by row: the complete rows (ordinary passes) back in their places
    rows = _rows_nll(model, np.where(obs, x, 0), model.eval_mask_indices(K), 3, None, obs)
    assert np.allclose(rows, want, rtol=1e-12, atol=0)
    assert got["missing_rows"] == int((~obs).any(axis=1).sum()) > 0
    single = evaluate(model, x, ensemble=False, mask_index=2)
    assert single["nll"] == pytest.approx(per_mask[2].mean(), rel=1e-12) and single["mask_index"] == 2
    complete = evaluate(model, filled[obs.all(axis=1)], eval_masks=K)  # rows with nothing missing
    assert complete["missing_rows"] == 0 and complete["nll"] == pytest.approx(want[obs.all(axis=1)].mean(), rel=1e-12)


def test_evaluate_refuses_missing_entries_a_single_ordering_cannot_marginalise():
    from made_np import evaluate

    model = MADE(MADEConfig(D=3, hidden=(4,), classes=0, head="gaussian", input_encoding="raw", seed=0))
    with pytest.raises(ValueError, match="order-agnostic"):
        evaluate(model, np.array([[0.1, np.nan, 0.3]]))
    order_agnostic = make("mog, standardised, 1 layer")
    with pytest.raises(ValueError, match="every entry missing"):
        evaluate(order_agnostic, np.full((2, 4), np.nan))
