"""The fast training form of a mask bank (made_np/fast/bank.py) against the reference MADE."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import examples, model_configs, random_data, randomize_weights
from hypothesis import given
from hypothesis import strategies as st

from made_np.fast import bank as bank_mod
from made_np.fast.bank import BankMADE, UnionMaskedDense
from made_np.fast.engine import FastEngine
from made_np.model import MADE, MADEConfig
from made_np.train import TrainConfig


def sparse_rows(config, n, seed, zero_share=0.5):
    """Random data with about ``zero_share`` of the columns zero in every row (as binarized MNIST's borders)."""
    x = random_data(config, n, seed)
    dead = np.random.default_rng(seed).random(config.D) < zero_share
    x[:, dead] = 0
    return x


def check_against_the_made(model, x, context=None, masks=(0, 2, 1)):
    """NLL and every gradient of BankMADE equal the MADE's (float64) under each mask of ``masks``."""
    fast = BankMADE(model)
    for index in masks:
        model.set_mask(index)
        loss_ref = float(model.loss_and_grad(x, context=context))
        grads_ref = [g.copy() for g in model.grads]
        for g in model.grads:
            g[...] = np.nan  # every gradient entry must be written again
        loss = float(fast.loss_and_grad(x, context=context))
        assert loss == pytest.approx(loss_ref, rel=1e-12, abs=1e-10)
        for name, g, g_ref in zip(model.param_names, fast.grads, grads_ref):
            np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12, err_msg=f"mask {index}, {name}")
    # the bank form holds no weights of its own: its parameters are the MADE's arrays
    assert all(a is b for a, b in zip(fast.params, model.params))
    return fast


@examples(20)
@given(model_configs(num_masks=3, max_D=9, max_layers=2), st.integers(0, 2**31 - 1), st.sampled_from([0.0, 0.5, 0.9]))
def test_bank_made_gives_the_nll_and_gradients_of_its_made_under_every_mask(config, seed, zero_share):
    model = MADE(config)
    randomize_weights(model, seed)
    check_against_the_made(model, sparse_rows(config, 12, seed, zero_share))


@examples(20)
@given(model_configs(num_masks=3, max_D=12, max_layers=2, head="bernoulli", encoding="binary"),
       st.integers(0, 2**31 - 1), st.sampled_from([0.3, 0.6, 0.95]))
def test_union_products_give_the_made_s_numbers_on_sparse_binary_data(config, seed, zero_share):
    model = MADE(config)
    randomize_weights(model, seed)
    x = sparse_rows(config, 12, seed, zero_share)
    fast = check_against_the_made(model, x)
    live = np.flatnonzero(x.any(axis=0)).size
    assert (fast.layers[0]._live is not None) == (live <= bank_mod.SPARSE_MAX_LIVE * config.D)


@pytest.mark.parametrize("hidden", [(16,), ()])
def test_a_conditional_bank_gives_the_made_s_numbers(hidden):
    config = MADEConfig(D=10, hidden=hidden, num_masks=3, direct=True, context=3, ordering="random", seed=1,
                        dtype="float64")
    model = MADE(config)
    randomize_weights(model, 4)
    labels = np.random.default_rng(0).integers(0, 3, size=20)
    fast = check_against_the_made(model, sparse_rows(config, 20, 3), context=labels)
    assert fast.layers[0]._live is not None  # the union products ran


def test_union_products_run_on_sparse_binary_minibatches_only(monkeypatch):
    config = MADEConfig(D=10, hidden=(16,), num_masks=4, direct=True, ordering="random", seed=2, dtype="float64")
    model = MADE(config)
    randomize_weights(model, 0)
    fast = BankMADE(model)
    first, direct = fast.layers[0], fast.direct
    assert isinstance(first, UnionMaskedDense) and isinstance(direct, UnionMaskedDense)
    x = sparse_rows(config, 30, 1, zero_share=0.5)
    live = np.flatnonzero(x.any(axis=0))
    assert 0 < live.size <= bank_mod.SPARSE_MAX_LIVE * config.D
    for index in range(4):
        model.set_mask(index)
        fast.loss_and_grad(x)
        assert first._live is not None and np.array_equal(first._live[0], live)
        for layer in model._all_layers:  # masked weights and dead inputs: exactly zero gradient
            assert np.all(layer.dW[layer.M == 0] == 0)
        dead = np.setdiff1d(np.arange(config.D), live)
        assert np.all(model.layers[0].dW[dead] == 0) and np.any(model.layers[0].dW[live] != 0)
    fast.loss_and_grad(np.ones((5, config.D), dtype=np.uint8))  # every column live: the dense path
    assert first._live is None and direct._live is None
    with pytest.raises(ValueError, match="fed by the data"):
        UnionMaskedDense(model.layers[1])


def test_one_hot_inputs_keep_the_made_s_own_layers():
    model = MADE(MADEConfig(D=5, hidden=(8,), classes=3, head="categorical", input_encoding="onehot", num_masks=2))
    assert BankMADE(model).layers[0] is model.layers[0]


def test_the_fast_engine_trains_a_bank_in_the_bank_form_and_a_single_mask_blocked():
    bank = FastEngine(MADE(MADEConfig(D=6, hidden=(8,), num_masks=3)))
    assert isinstance(bank.bank, BankMADE) and bank.net is None
    assert all(a is b for a, b in zip(bank.bank.params, bank.model.params))  # nothing to copy in or out
    opt = bank.make_optimizer(TrainConfig())
    before = bank.model.layers[0].W.copy()
    bank.loss_and_grad(np.eye(6, dtype=np.uint8))
    opt.step(bank.grads)
    assert not np.array_equal(bank.model.layers[0].W, before)  # the step moved the MADE's own weights
    single = FastEngine(MADE(MADEConfig(D=6, hidden=(8,))))
    assert single.bank is None and single.net is not None
