"""Tests that the mutation run of this round asked for: each fails with one surviving mutant of
the new boundary, the mask-as-argument passes, the registry or the epoch's row (named in each)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import randomize_weights
from made_np import MADE, MADEConfig, TrainConfig, fit, log_marginal
from made_np.checks import check_context
from made_np.data import Dataset
from made_np.density import log_density_table
from made_np.heads import BernoulliHead
from made_np.limits import LimitError, parse_size
from made_np.registry import speed_form
from made_np.fast.sampler import sample_fast
from made_np.sampling import draw_noise, sample, sample_naive


def bank(K=4, D=5, **kw):
    model = MADE(MADEConfig(D=D, hidden=(9,), num_masks=K, seed=2, dtype="float64", **kw))
    randomize_weights(model, 3)
    return model


def test_sampling_one_mask_of_a_bank_draws_that_mask():  # S07: masks=[k] drew mask 0
    model, u = bank(), draw_noise(300, 5, 1, np)
    three = sample(model, noise=u, masks=[3])
    np.testing.assert_array_equal(three, sample_naive(model, noise=u, mask=3))
    assert not np.array_equal(three, sample(model, noise=u, masks=[0]))


def test_log_prob_of_an_unlimited_bank_is_its_ensemble():  # M13: num_masks=0 scored mask 0
    model = bank(K=0)
    x = (np.random.default_rng(0).random((6, 5)) < 0.5).astype(np.uint8)
    np.testing.assert_allclose(model.log_prob(x), -model.ensemble_nll(x, model.eval_mask_indices()), atol=1e-12)


def test_a_conditional_nll_does_not_depend_on_the_batch_size():  # M20: every batch got the whole context
    model = MADE(MADEConfig(D=4, hidden=(6,), context=3, seed=1, dtype="float64"))
    x, y = np.zeros((5, 4), dtype=np.uint8), np.array([0, 1, 2, 1, 0])
    np.testing.assert_array_equal(model.nll(x, batch_size=2, context=y), model.nll(x, context=y))


def test_the_context_is_encoded_in_the_models_dtype():  # M15: the cast to the dtype dropped
    model = MADE(MADEConfig(D=3, hidden=(4,), context=2, context_encoding="raw"))
    assert model.encode_context(np.array([[1, 2]])).dtype == np.float32
    assert model.encode_context(np.array([[0.5, 2.0]], dtype=np.float64), 3).dtype == np.float32


def test_evaluating_a_conditional_model_writes_nothing_to_its_context_layers():  # L06: Dense kept x
    model = MADE(MADEConfig(D=4, hidden=(6,), num_masks=2, context=3, seed=1, dtype="float64"))
    x, y = np.zeros((3, 4), dtype=np.uint8), np.array([0, 1, 2])
    model.nll(x, context=y)
    log_marginal(model, x, np.ones((3, 4), dtype=bool), masks=2, context=y)
    assert not hasattr(model.context_hidden, "x") and not hasattr(model.context_output, "x")


def test_fractions_and_bools_as_data():  # C13: 0.5 truncated to 0; C14: bool one-hot inputs an IndexError
    model = MADE(MADEConfig(D=4, hidden=(6,), classes=2, input_encoding="onehot", seed=0, dtype="float64"))
    with pytest.raises(ValueError, match="fractions"):
        model.nll([[0.5, 0, 1, 0]])
    x = np.array([[1, 0, 1, 0], [0, 0, 1, 1]])
    np.testing.assert_array_equal(model.nll(x.astype(bool)), model.nll(x))


def test_a_nan_context_row_already_in_the_dtype_is_refused_on_the_cpu():  # C17
    model = MADE(MADEConfig(D=3, hidden=(4,), context=2, context_encoding="raw"))
    with pytest.raises(ValueError, match="finite numbers"):
        check_context(model, np.array([[np.nan, 0.0]], dtype=np.float32))


def test_fit_checks_the_last_row_and_the_context_rows_of_a_split():  # C19 (blocks off by one), C20
    rng = np.random.default_rng(0)
    train = (rng.random((40, 6)) < 0.5).astype(np.uint8)
    train[-1, 0] = 2
    ok = train.copy()
    ok[-1, 0] = 1
    with pytest.raises(ValueError, match="dataset.train"):
        fit(MADE(MADEConfig(D=6, hidden=(5,))), Dataset("bad", train, ok[:10], ok[:10], 2, None), TrainConfig(epochs=1))
    ds = Dataset("ctx", ok, ok[:10], ok[:10], 2, None, train_context=np.zeros(1, dtype=np.int64),
                 valid_context=np.zeros(10, dtype=np.int64), test_context=np.zeros(10, dtype=np.int64))
    with pytest.raises(ValueError, match="train context has 1 rows for 40 examples"):
        fit(MADE(MADEConfig(D=6, hidden=(5,), context=2)), ds, TrainConfig(epochs=1))


def test_noise_given_prefix_and_seed_bounds():  # C21, C22, C23, C25
    model = bank()
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        sample(model, noise=np.ones((2, 5)))
    x = np.zeros((3, 5), dtype=np.uint8)
    for sampler in (sample_naive, sample_fast):
        with pytest.raises(ValueError, match="n_given must be at most 5"):
            sampler(model, noise=draw_noise(3, 5, 0, np), given=x, n_given=6)
        with pytest.raises(ValueError, match="given must have shape"):
            sampler(model, noise=draw_noise(3, 5, 0, np), given=np.zeros((3, 6), dtype=np.uint8), n_given=2)
    with pytest.raises(ValueError, match="seed must be at most"):
        sample(model, 1, seed=2**63)


def test_a_mixtures_masks_come_from_the_seeds_second_stream():  # S05
    from made_np import backend

    model, n = bank(), 40
    u = draw_noise(n, 5, 7, np)
    out = sample(model, noise=u, seed=11, masks=[0, 1, 2, 3], method="naive")
    choice = backend.host_rng(11, 1).integers(4, size=n)
    for row in range(n):
        np.testing.assert_array_equal(out[row], sample_naive(model, noise=u[row:row + 1], mask=int(choice[row]))[0])


def test_thresholds_of_zero_noise_are_finite():  # H01
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = BernoulliHead(np).thresholds(np.array([0.0, 0.5]))
    assert np.isfinite(t).all() and t[0] == pytest.approx(-708.4, abs=0.1) and t[1] == 0.0


def test_a_single_ordering_bank_completes_with_its_whole_bank():  # CO3
    from made_np.conditional import completion_masksets

    model = bank(K=4, order_agnostic=False)
    row = np.asarray(model.maskset_at(0).ordering) <= 2  # a prefix of its ordering
    assert len(completion_masksets(model, row, masks=4)) == 4


def test_a_density_table_refuses_a_mask_outside_the_bank():  # D02
    with pytest.raises(ValueError, match="outside the bank"):
        log_density_table(bank(K=2, D=3), mask_indices=[5])


def test_an_epoch_row_times_its_validation_apart(monkeypatch):  # T04, T05
    import time

    from made_np import train as train_mod
    from made_np.fast import threads

    real = train_mod._Run.validate

    def slow(self, epoch):
        time.sleep(0.2)
        return real(self, epoch)

    monkeypatch.setattr(train_mod._Run, "validate", slow)
    x = (np.random.default_rng(0).random((60, 4)) < 0.5).astype(np.uint8)
    row = fit(MADE(MADEConfig(D=4, hidden=(5,))), Dataset("t", x, x[:10], x[:10], 2, None),
              TrainConfig(epochs=1), threads=threads.max_threads())["rows"][0]
    assert row["valid_seconds"] >= 0.2 > row["train_seconds"] and row["threads"] == threads.max_threads()


def test_the_fast_forms_fall_back_and_default_as_their_references(monkeypatch):  # FO1, FO2, R01
    from made_np import optim
    from made_np.fast import optim as fast_optim
    from made_np.fast.engine import FastEngine
    from made_np.fast.sampler import draw_fast

    class Plain(optim.SGD):
        pass

    monkeypatch.setitem(optim.OPTIMIZERS, "plain", Plain)
    p = [np.zeros(3)]
    assert type(fast_optim.make_fast_optimizer("plain", p, np, fused=False)) is Plain
    for ref, fast in fast_optim.FAST_OPTIMIZERS.items():
        assert fast(p, np).lr == ref.default_lr
    assert speed_form("sampler") is draw_fast and speed_form("engine") is FastEngine


def test_sizes_and_thread_counts_parse_strictly():  # LI2, LI3, TH1, TH4
    from made_np.fast.threads import ThreadError, max_threads, parse_threads

    assert parse_size("2048k") == parse_size("2048KiB") == 2**21
    for text in (" " * 40 + "2G", "0" * 45 + "2G"):
        with pytest.raises(LimitError):
            parse_size(text)
    assert parse_threads(str(max_threads())) == max_threads()
    for text in (str(max_threads() + 1), "-2"):
        with pytest.raises(ThreadError):
            parse_threads(text)


def test_thread_policy_puts_numexprs_threads_back():  # TH3
    numexpr = pytest.importorskip("numexpr")
    from made_np.fast.threads import thread_policy

    numexpr.set_num_threads(2)
    with thread_policy(1):
        pass
    assert numexpr.set_num_threads(2) == 2


def test_the_largest_seed_is_accepted():  # mutate3 K27: the bound moved by one refused 2**63 - 1
    model = bank()
    a = sample(model, 2, seed=2**63 - 1, method="naive")
    assert a.shape == (2, 5) and np.array_equal(a, sample(model, 2, seed=2**63 - 1, method="naive"))
    assert np.array_equal(sample_naive(model, 2, seed=2**63 - 1), sample_naive(model, noise=draw_noise(2, 5, 2**63 - 1, np)))


def test_a_given_prefix_of_too_few_rows_is_refused_with_the_shape():  # mutate3 K29: an IndexError instead
    model = bank()
    for sampler in (sample_naive, sample_fast):
        with pytest.raises(ValueError, match=r"given must have shape \(3, 5\) when n_given > 0, got \(2, 5\)"):
            sampler(model, noise=draw_noise(3, 5, 0, np), given=np.zeros((2, 5), dtype=np.uint8), n_given=2)
