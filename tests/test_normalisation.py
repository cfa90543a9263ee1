"""Exact normalisation of MADE (Germain et al. 2015, eq. 1 and Sec. 4.2).

A correct autoregressive model is a normalised distribution without any partition
function: ``sum_x p(x) = 1`` over every configuration. Checked by enumeration in
float64 within 1e-9:

6. Binary data (D <= 10, all 2^D configurations): one mask, and the test-time ensemble
   over K masks (a mixture of *probabilities*, ``logsumexp_k log p_k(x) - log K``), with and
   without direct connections (eq. 11), for every input encoding of the Bernoulli head.
   Categorical data (all C^D configurations, small C and D): every input encoding.

A leak of x_d into its own conditional, or averaging log-probabilities (logits) instead of
probabilities across masks, breaks the sum; the last test shows that such a leak is caught.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import all_configurations, bank_index, examples, model_configs, randomize_weights
from made_np import backend
from made_np.model import MADE, MADEConfig

TOL = 1e-9


def total_probability(nll) -> float:
    return float(np.exp(-backend.to_host(nll).astype(np.float64)).sum())


@examples(20)
@given(model_configs(max_D=10, head="bernoulli", dtype="float64"), st.integers(0, 100),
       st.integers(0, 2**31 - 1))
def test_binary_single_mask_sums_to_one(cfg, index, seed):
    model = MADE(cfg)
    randomize_weights(model, seed)
    x = all_configurations(cfg.D, 2)
    nll = model.nll(x, batch_size=256, mask=bank_index(model, index))
    assert nll.shape == (2 ** cfg.D,) and nll.dtype == np.float64
    assert np.all(np.isfinite(nll)) and np.all(nll > 0)
    assert abs(total_probability(nll) - 1.0) < TOL


@examples(15)
@given(st.integers(2, 10), st.data())
def test_binary_mask_ensemble_sums_to_one(D, data):
    oa, ca = data.draw(st.sampled_from([(True, False), (False, True), (True, True)]))  # masks that differ
    cfg = data.draw(model_configs(min_D=D, max_D=D, head="bernoulli", num_masks=data.draw(st.integers(2, 5)),
                                  order_agnostic=oa, connectivity_agnostic=ca))
    model = MADE(cfg)
    randomize_weights(model, data.draw(st.integers(0, 2**31 - 1)))
    x = all_configurations(D, 2)
    K = cfg.num_masks
    nll = model.ensemble_nll(x, range(K), batch_size=300)
    assert nll.shape == (2 ** D,)
    assert abs(total_probability(nll) - 1.0) < TOL


@pytest.mark.parametrize("direct", [False, True])
def test_ensemble_is_a_mixture_of_probabilities(direct, stand):
    """ensemble_nll = -log mean_k p_k(x), recomputed here mask by mask (not a mean of log p_k)."""
    cfg = MADEConfig(D=6, hidden=(10, 10), num_masks=4, ordering="random", direct=direct,
                     seed=8, dtype="float64")
    model = stand.made(cfg)
    randomize_weights(model, 3, scale=2.0)
    x = stand.put(all_configurations(6, 2))
    per_mask = [np.exp(-stand.get(model.nll(x, mask=k))) for k in range(4)]
    expected = -np.log(np.mean(per_mask, axis=0))
    got = stand.get(model.ensemble_nll(x, [0, 1, 2, 3]))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    geometric = np.mean([-np.log(p) for p in per_mask], axis=0)
    assert np.max(np.abs(geometric - expected)) > 1e-3  # the two averages really differ here
    assert abs(total_probability(got) - 1.0) < TOL
    # a single-mask "ensemble" is that mask's own NLL
    np.testing.assert_allclose(stand.get(model.ensemble_nll(x, [1])), -np.log(per_mask[1]), rtol=1e-12)


@examples(20)
@given(st.integers(2, 5), st.data())
def test_categorical_sums_to_one_for_every_encoding(C, data):
    max_D = {2: 8, 3: 5, 4: 4, 5: 3}[C]
    D = data.draw(st.integers(1, max_D))
    encoding = data.draw(st.sampled_from(["onehot", "raw", "scaled"]))
    cfg = data.draw(model_configs(min_D=D, max_D=D, head="categorical", encoding=encoding, classes=C))
    model = MADE(cfg)
    mask = bank_index(model, data.draw(st.integers(0, 100)))
    randomize_weights(model, data.draw(st.integers(0, 2**31 - 1)))
    x = all_configurations(D, C)
    assert abs(total_probability(model.nll(x, mask=mask)) - 1.0) < TOL
    if cfg.num_masks >= 2:
        assert abs(total_probability(model.ensemble_nll(x, range(cfg.num_masks))) - 1.0) < TOL


@pytest.mark.parametrize("encoding", ["onehot", "raw", "scaled"])
def test_categorical_ensemble_with_direct_connections(encoding, stand):
    cfg = MADEConfig(D=3, hidden=(7,), classes=4, head="categorical", input_encoding=encoding,
                     num_masks=3, ordering="random", direct=True, seed=4, dtype="float64")
    model = stand.made(cfg)
    randomize_weights(model, 9)
    x = stand.put(all_configurations(3, 4))
    assert abs(total_probability(model.ensemble_nll(x, [0, 1, 2])) - 1.0) < TOL


def test_a_leaking_mask_is_not_normalised(stand):
    """The enumeration check can fail: let each variable see itself and the sum leaves 1."""
    cfg = MADEConfig(D=5, hidden=(8,), num_masks=2, seed=0, dtype="float64")
    model = stand.made(cfg)
    randomize_weights(model, 1)
    x = stand.put(all_configurations(5, 2))
    assert abs(total_probability(model.nll(x)) - 1.0) < TOL
    for M in model.mask(0)[1]:  # the bank's cached masks, as the passes under mask 0 read them
        M[...] = 1
    assert abs(total_probability(model.nll(x)) - 1.0) > 1e-3


def test_log_prob_of_a_bank_is_its_ensemble_density():
    """MADE.log_prob gives the density the model reports (evaluate's): the test ensemble for a bank,
    mask 0's for a single mask; a mask names one mask's log p_k(x)."""
    model = MADE(MADEConfig(D=5, hidden=(9,), num_masks=3, ordering="random", seed=2, dtype="float64"))
    randomize_weights(model, 1)
    x = all_configurations(5, 2)
    np.testing.assert_allclose(model.log_prob(x), -model.ensemble_nll(x, [0, 1, 2]), rtol=0, atol=1e-12)
    assert abs(np.exp(model.log_prob(x)).sum() - 1) < TOL
    np.testing.assert_allclose(model.log_prob(x, mask=1), -model.nll(x, mask=1), rtol=0, atol=0)
    assert not np.allclose(model.log_prob(x), model.log_prob(x, mask=0))
    single = MADE(MADEConfig(D=5, hidden=(9,), num_masks=1, seed=2, dtype="float64"))
    np.testing.assert_array_equal(single.log_prob(x), -single.nll(x))
