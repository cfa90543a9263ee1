"""Exact marginals and completions (made_np.conditional) against brute-force enumeration of tiny models.

The reference for a row with observed pattern ``o`` is the mixture over the *same*
observed-first masks that the code uses (:func:`completion_masksets`): each mask's exact
joint table (:func:`made_np.density.log_density_table` under each MaskSet),
averaged in probability, then summed over the missing variables.
"""
import itertools

import numpy as np
import pytest
from conftest import all_configurations, examples, model_configs, randomize_weights, strict_order
from hypothesis import given
from hypothesis import strategies as st

from made_np.conditional import (complete, completion_masksets, log_conditional, log_marginal, mask_log_probs,
                                 observed_first_maskset, occlusion_mask)
from made_np.density import log_density_table
from made_np.masks import path_matrix
from made_np.model import MADE, MADEConfig

K = 3


def _lse(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


@st.composite
def agnostic_models(draw, max_D=5):
    """A float64 order-agnostic MADE with random weights: D 2..max_D, 0-2 hidden layers, both heads."""
    cfg = draw(model_configs(min_D=2, max_D=max_D, max_layers=2, factor=2, max_classes=3,
                             num_masks=draw(st.sampled_from((0, 3))), order_agnostic=True))
    model = MADE(cfg)
    randomize_weights(model, cfg.seed)
    return model


@st.composite
def data_and_patterns(draw, model, n_rows=4):
    """Random rows of data and random observed patterns (all, none and partial ones)."""
    c = model.config
    x = np.array(draw(st.lists(st.lists(st.integers(0, c.classes - 1), min_size=c.D, max_size=c.D),
                               min_size=n_rows, max_size=n_rows)))
    obs = np.array(draw(st.lists(st.lists(st.booleans(), min_size=c.D, max_size=c.D),
                                 min_size=n_rows, max_size=n_rows)), dtype=bool)
    return x.astype(np.uint8 if c.classes == 2 else np.int64), obs


def _mask_tables(model, row, masks=K, seed=0):
    """Exact joint log-tables (K, C, ..., C) under the completion masks of one observed pattern."""
    fixed = model.config.num_masks == 1
    return np.stack([log_density_table(model, mask_indices=None if fixed else [ms])
                     for ms in completion_masksets(model, row, masks, seed)])


def _marginalise(table, row):
    """log-sum-exp of a table (..., C, ..., C) over the missing variables' axes, kept as size 1."""
    lead = table.ndim - row.size
    out = table
    for d in np.flatnonzero(~row):
        out = np.expand_dims(_lse(out, lead + d), lead + d)
    return out


# --------------------------------------------------------------------------- enumeration


@examples(25)
@given(data=st.data())
def test_log_marginal_and_conditional_match_enumeration(data):
    model = data.draw(agnostic_models())
    x, obs = data.draw(data_and_patterns(model))
    lm = log_marginal(model, x, obs, masks=K, seed=5)
    lc = log_conditional(model, x, obs, masks=K, seed=5)
    lpo, _ = mask_log_probs(model, x, obs, masks=K, seed=5)
    for i in range(x.shape[0]):
        tables = _mask_tables(model, obs[i], seed=5)  # (K, C, ..., C)
        mix = _lse(tables, 0) - np.log(K)
        at = tuple(x[i])
        # per mask: the product of the observed conditionals is the exact marginal of p_k
        per_mask = _marginalise(tables, obs[i])[(slice(None),) + tuple(np.where(obs[i], x[i], 0))]
        np.testing.assert_allclose(lpo[i], per_mask, rtol=0, atol=1e-9)
        marg = _marginalise(mix, obs[i])[tuple(np.where(obs[i], x[i], 0))]
        assert abs(lm[i] - marg) < 1e-9
        assert abs(lc[i] - (mix[at] - marg)) < 1e-9


CASES = [  # head, classes, encoding, hidden, direct
    ("bernoulli", 2, "binary", (6,), False),
    ("bernoulli", 2, "onehot", (), True),
    ("bernoulli", 2, "scaled", (5, 4), True),
    ("categorical", 3, "onehot", (7,), False),
    ("categorical", 3, "raw", (6, 5), True),
    ("categorical", 3, "scaled", (), False),
]


@pytest.mark.parametrize("head,classes,encoding,hidden,direct", CASES)
def test_completion_frequencies_match_enumeration(head, classes, encoding, hidden, direct, stand):
    D, n = 4, 6000
    cfg = MADEConfig(D=D, hidden=hidden, classes=classes, head=head, input_encoding=encoding,
                     num_masks=0, direct=direct, seed=11, dtype="float64")
    model = stand.made(cfg)
    randomize_weights(model, 3, scale=2.0)
    x = np.array([[1, 0, 1, 0], [0, 1, 1, 1]], dtype=np.uint8 if classes == 2 else np.int64)
    obs = np.array([[True, False, False, True], [False, True, False, False]])
    comp, lpo = map(stand.get, complete(model, stand.put(x), stand.put(obs), n, masks=K, seed=2))
    np.testing.assert_allclose(lpo, stand.get(log_marginal(model, stand.put(x), obs, masks=K, seed=2)), rtol=0,
                               atol=1e-12)
    configs = all_configurations(D, classes)
    for i in range(2):
        keep = np.all(configs[:, obs[i]] == x[i, obs[i]], axis=1)
        cand = configs[keep]  # every completion of row i
        p = np.exp(stand.get(log_conditional(model, stand.put(cand), np.repeat(obs[i:i + 1], len(cand), 0),
                                             masks=K, seed=2)))
        # the exact probabilities the sampler should follow, against brute force
        mix = _lse(_mask_tables(model, obs[i], seed=2), 0)
        ref = np.exp(mix[tuple(cand.T)] - _lse(mix[tuple(cand.T)], 0))
        np.testing.assert_allclose(p, ref, rtol=0, atol=1e-12)
        codes = (comp[i][:, None, :] == cand[None, :, :]).all(axis=2)
        assert codes.sum(axis=1).min() == 1  # every completion is one of the candidates
        freq = codes.mean(axis=0)
        tol = 5 * np.sqrt(p * (1 - p) / n) + 2e-3
        assert np.all(np.abs(freq - p) <= tol), (freq, p)


# --------------------------------------------------------------------------- chain rule


@examples(20)
@given(data=st.data())
def test_chain_rule_per_mask(data):
    model = data.draw(agnostic_models())
    x, obs = data.draw(data_and_patterns(model))
    lpo, lpm = mask_log_probs(model, x, obs, masks=K, seed=1)
    for i in range(x.shape[0]):
        for k, ms in enumerate(completion_masksets(model, obs[i], K, seed=1)):
            joint = -model.nll(x[i:i + 1], mask=ms)[0]  # the head's own formula, another code path
            assert abs(lpo[i, k] + lpm[i, k] - joint) < 1e-10


# --------------------------------------------------------------------------- observed entries


@examples(25)
@given(data=st.data())
def test_complete_never_changes_observed_entries(data):
    model = data.draw(agnostic_models())
    x, obs = data.draw(data_and_patterns(model, n_rows=5))
    n = data.draw(st.integers(1, 4))
    comp, lpo = complete(model, x, obs, n, masks=2, seed=data.draw(st.integers(0, 99)))
    c = model.config
    assert comp.shape == (5, n, c.D)
    assert comp.dtype == (np.uint8 if c.head == "bernoulli" else np.int64)
    assert comp.min() >= 0 and comp.max() <= c.classes - 1
    for i in range(5):
        np.testing.assert_array_equal(comp[i][:, obs[i]], np.broadcast_to(x[i, obs[i]], (n, obs[i].sum())))
    assert lpo.dtype == np.float64 and np.all(lpo <= 1e-12)
    assert np.all(lpo[obs.sum(axis=1) == 0] == 0)


def test_a_row_does_not_depend_on_its_batch():
    cfg = MADEConfig(D=5, hidden=(8,), num_masks=0, seed=4, dtype="float64")
    model = MADE(cfg)
    randomize_weights(model, 4)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(6, 5)).astype(np.uint8)
    obs = rng.random((6, 5)) < 0.5
    whole = log_marginal(model, x, obs, masks=4)
    alone = np.array([log_marginal(model, x[i:i + 1], obs[i:i + 1], masks=4)[0] for i in range(6)])
    np.testing.assert_allclose(whole, alone, rtol=0, atol=1e-13)


# --------------------------------------------------------------------------- single orderings


def test_single_ordering_model_needs_a_prefix():
    cfg = MADEConfig(D=4, hidden=(6,), classes=3, head="categorical", input_encoding="onehot",
                     given_ordering=(3, 1, 4, 2), num_masks=1, direct=True, seed=2, dtype="float64")
    model = MADE(cfg)
    randomize_weights(model, 2)
    x = all_configurations(4, 3)
    bad = np.zeros_like(x, dtype=bool)
    bad[:, 0] = True  # variable 0 sits at position 3: not a prefix
    for fn in (lambda: log_marginal(model, x, bad), lambda: complete(model, x[:2], bad[:2], 2)):
        with pytest.raises(ValueError, match="order-agnostic") as err:
            fn()
        assert "\n" not in str(err.value)
    prefix = np.zeros_like(bad)
    prefix[:, [1, 3]] = True  # positions 1 and 2
    lm = log_marginal(model, x, prefix)
    table = log_density_table(model)
    ref = _lse(_lse(table, 2), 0)  # sum over variables 0 and 2
    np.testing.assert_allclose(lm, ref[x[:, 1], x[:, 3]], rtol=0, atol=1e-9)
    comp, _ = complete(model, x[:3], prefix[:3], 5)
    np.testing.assert_array_equal(comp[:, :, [1, 3]], np.repeat(x[:3, None, [1, 3]], 5, axis=1))


def test_single_ordering_bank_mixes_its_own_masks():
    cfg = MADEConfig(D=3, hidden=(5,), num_masks=3, order_agnostic=False, connectivity_agnostic=True,
                     ordering="random", seed=9, dtype="float64")
    model = MADE(cfg)
    randomize_weights(model, 9)
    m0 = model.maskset_at(0).ordering
    first = int(np.argmin(m0))
    x = all_configurations(3, 2)
    obs = np.zeros_like(x, dtype=bool)
    obs[:, first] = True
    ref = log_density_table(model, mask_indices=[0, 1, 2])
    for d in sorted(set(range(3)) - {first}, reverse=True):
        ref = _lse(ref, d)
    np.testing.assert_allclose(log_marginal(model, x, obs, masks=3), ref[x[:, first]], rtol=0, atol=1e-9)
    bad = ~obs
    with pytest.raises(ValueError, match="--num-masks inf"):
        log_marginal(model, x, bad)


# --------------------------------------------------------------------------- masks


def model_state(model) -> dict:
    """Every attribute of the model and of its layers and activations (the objects themselves)."""
    parts = [model, *model._all_layers, *model.activations, model.head]
    return {(i, k): v for i, part in enumerate(parts) for k, v in vars(part).items() if k != "_mask_cache"}


def test_marginals_and_completions_leave_the_model_as_it_was():
    """The mask is an argument of every pass: nothing is switched, kept or written on the model."""
    from made_np.train import evaluate

    cfg = MADEConfig(D=4, hidden=(6,), num_masks=5, seed=1, dtype="float64")
    model = MADE(cfg)
    randomize_weights(model, 1)
    model.loss_and_grad(np.ones((2, 4), dtype=np.uint8), mask=3)  # a training step keeps its arrays
    before = model_state(model)
    x = np.ones((3, 4), dtype=np.uint8)
    obs = np.array([[True, False, True, False]] * 3)
    log_marginal(model, x, obs, masks=3)
    complete(model, x, obs, 4, masks=3)
    complete(model, x, obs, 2, masks=2, method="naive")
    evaluate(model, x, ensemble=False, mask_index=2)
    evaluate(model, x)
    after = model_state(model)
    assert after.keys() == before.keys()
    assert all(after[k] is v for k, v in before.items())


@examples(20)
@given(data=st.data())
def test_observed_first_maskset(data):
    model = data.draw(agnostic_models(max_D=8))
    c = model.config
    row = np.array(data.draw(st.lists(st.booleans(), min_size=c.D, max_size=c.D)), dtype=bool)
    ms = observed_first_maskset(model, row, np.random.default_rng(data.draw(st.integers(0, 999))))
    np.testing.assert_array_equal(ms.ordering <= row.sum(), row)
    assert sorted(ms.ordering) == list(range(1, c.D + 1))
    assert not (path_matrix(ms, direct=True) & ~strict_order(ms.ordering)).any()
    assert tuple(len(m) for m in ms.degrees) == c.hidden
    if not c.connectivity_agnostic:
        for a, b in zip(ms.degrees, model.maskset_at(0).degrees):
            np.testing.assert_array_equal(a, b)
    for m in ms.degrees:
        assert m.min(initial=c.D) >= min(1, c.D - 1) and m.max(initial=0) <= c.D - 1


@pytest.mark.parametrize("connectivity_agnostic", [False, True])
def test_hidden_degrees_follow_the_training_rule(connectivity_agnostic):
    cfg = MADEConfig(D=6, hidden=(9, 7), num_masks=0, connectivity_agnostic=connectivity_agnostic,
                     seed=3, dtype="float64")
    model = MADE(cfg)
    row = np.array([True, False, True, True, False, False])
    sets = [observed_first_maskset(model, row, np.random.default_rng(s)) for s in range(4)]
    same = [all(np.array_equal(a, b) for a, b in zip(ms.degrees, model.maskset_at(0).degrees)) for ms in sets]
    assert all(same) if not connectivity_agnostic else not any(same)


def test_observed_first_masks_shuffle_the_observed_and_the_missing_variables():
    """Each mask draws the order of the observed variables (positions 1..3) and of the missing
    ones (4..6): over 60 draws every one of the 3! orders of each group comes up, so the mixture
    averages over orderings within the groups, not one fixed order."""
    model = MADE(MADEConfig(D=6, hidden=(5,), num_masks=0, seed=3, dtype="float64"))
    row = np.array([False, True, True, False, True, False])
    orders = [observed_first_maskset(model, row, np.random.default_rng(s)).ordering for s in range(60)]
    observed = {tuple(np.argsort(m)[:3]) for m in orders}  # the variables at positions 1, 2, 3
    missing = {tuple(np.argsort(m)[3:]) for m in orders}
    assert observed == set(itertools.permutations([1, 2, 4]))
    assert missing == set(itertools.permutations([0, 3, 5]))


def test_a_maskset_mask_refuses_a_fixed_mask_and_wrong_shapes():
    fixed = MADE(MADEConfig(D=3, hidden=(4,), num_masks=1, dtype="float64"))
    with pytest.raises(ValueError, match="num_masks == 1"):
        fixed.nll(np.zeros((1, 3)), mask=fixed.maskset_at(0))
    bank = MADE(MADEConfig(D=3, hidden=(4,), num_masks=0, dtype="float64"))
    other = MADE(MADEConfig(D=3, hidden=(5,), num_masks=0, dtype="float64"))
    with pytest.raises(ValueError, match="hidden"):
        bank.nll(np.zeros((1, 3)), mask=other.maskset_at(0))


# --------------------------------------------------------------------------- occlusions


def test_occlusion_masks():
    top = occlusion_mask("top", 15, (5, 3), 2).reshape(2, 5, 3)
    assert top.dtype == bool and top.shape == (2, 5, 3)
    assert not top[:, :2].any() and top[:, 2:].all()
    bottom = occlusion_mask("bottom", 15, (5, 3), 1).reshape(5, 3)
    assert bottom[:3].all() and not bottom[3:].any()
    left = occlusion_mask("left", 16, None, 1).reshape(4, 4)
    assert not left[:, :2].any() and left[:, 2:].all()
    right = occlusion_mask("right", 15, (5, 3), 1).reshape(5, 3)
    assert right[:, :2].all() and not right[:, 2:].any()
    rnd = occlusion_mask("random:0.3", 100, None, 50, np.random.default_rng(0))
    assert rnd.shape == (50, 100) and abs((~rnd).mean() - 0.3) < 0.03
    assert occlusion_mask("random:0", 4, None, 2, 0).all()
    assert not occlusion_mask("random:1", 4, None, 2, 0).any()
    for kind, D, shape in [("middle", 4, None), ("random:2", 4, None), ("random:x", 4, None),
                           ("top", 15, None), ("top", 15, (4, 4))]:
        with pytest.raises(ValueError):
            occlusion_mask(kind, D, shape, 1)


def test_missing_entries_are_never_read():
    """The missing entries may hold anything (-1, 99, NaN): marginals and completions do not read them."""
    cfg = MADEConfig(D=6, hidden=(8,), classes=3, head="categorical", input_encoding="onehot", num_masks=0,
                     dtype="float64")
    model = MADE(cfg)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (4, 6))
    obs = rng.random((4, 6)) < 0.5
    ref = log_marginal(model, x, obs, masks=4)
    for fill in (99, -1, np.nan):
        np.testing.assert_allclose(log_marginal(model, np.where(obs, x, fill), obs, masks=4), ref)
    c1, l1 = complete(model, x, obs, 3, masks=4, seed=1)
    c2, l2 = complete(model, np.where(obs, x, -1), obs, 3, masks=4, seed=1)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_allclose(l1, l2)


def test_marginals_and_completions_report_their_progress_by_pattern():
    """progress(n) after each group of rows sharing an observed pattern: the counts add up to N."""
    model = MADE(MADEConfig(D=5, hidden=(7,), num_masks=0, seed=1, dtype="float64"))
    x = np.ones((6, 5), dtype=np.uint8)
    obs = np.array([[1, 0, 1, 0, 0]] * 3 + [[0, 1, 1, 1, 0]] * 2 + [[1, 1, 1, 1, 1]], dtype=bool)
    for call in (lambda p: log_marginal(model, x, obs, masks=2, progress=p),
                 lambda p: log_conditional(model, x, obs, masks=2, progress=p),
                 lambda p: complete(model, x, obs, 2, masks=2, progress=p)):
        done = []
        call(done.append)
        assert sorted(done) == [1, 2, 3]


def test_completions_of_an_improbable_observed_value_choose_their_masks_without_underflow():
    """Observed x_0 = 1000 standard deviations out gives log p_k(x_o) near -5e5 under every mask: the mixture
    weights w_k are taken relative to the largest (exp(-5e5) underflows to 0), so the completions are
    finite and the marginal is the ensemble's."""
    model = MADE(MADEConfig(D=2, hidden=(6,), classes=0, head="gaussian", input_encoding="raw", num_masks=0,
                            order_agnostic=True, dtype="float64", seed=2))
    randomize_weights(model, 2)
    x = np.array([[1000.0, 0.0]])
    obs = np.array([[True, False]])
    comps, log_px_o = complete(model, x, obs, n=5, masks=3, seed=0)
    assert np.all(np.isfinite(comps)) and np.all(comps[0, :, 0] == 1000.0)
    assert float(log_px_o[0]) < -1e4
    assert float(log_px_o[0]) == pytest.approx(float(log_marginal(model, x, obs, masks=3, seed=0)[0]), rel=1e-12)


def test_each_of_the_k_masks_of_a_pattern_is_drawn_from_its_own_stream():
    """Mask k of an order-agnostic model is ``observed_first_maskset(model, row, host_rng(seed, k))``: K
    different observed-first orderings, not K copies of the first (which would make the mixture one mask)."""
    from made_np.backend import host_rng

    model = MADE(MADEConfig(D=6, hidden=(8,), num_masks=0, order_agnostic=True, seed=3))
    row = np.array([True, False, True, False, False, True])
    sets = completion_masksets(model, row, masks=4, seed=7)
    for k, ms in enumerate(sets):
        want = observed_first_maskset(model, row, host_rng(7, k))
        assert np.array_equal(ms.ordering, want.ordering)
        assert all(np.array_equal(a, b) for a, b in zip(ms.degrees, want.degrees))
        assert set(np.flatnonzero(ms.ordering <= 3)) == {0, 2, 5}  # the observed variables first
    assert len({ms.ordering.tobytes() for ms in sets}) > 1
