"""Tests of made_np.train: the training loop, early stopping, evaluation and checkpoints."""
import dataclasses
import math

import numpy as np
import pytest
from conftest import chain_dataset

from made_np.data import Dataset
from made_np.model import MADE, MADEConfig
from made_np import checkpoint as checkpoint_mod
from made_np.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from made_np.train import TrainConfig, evaluate, fit, make_engine, mask_for_step
from made_np.fast.engine import FastEngine

D = 8


def chain_entropy(flip=0.1):
    """Exact entropy (nats) of the chain: log 2 + (D-1) H(flip)."""
    h = -(flip * math.log(flip) + (1 - flip) * math.log(1 - flip))
    return math.log(2) + (D - 1) * h


@pytest.fixture(scope="module")
def chain():
    return chain_dataset()


def small_model(num_masks=1, seed=0, hidden=(32,)):
    return MADE(MADEConfig(D=D, hidden=hidden, num_masks=num_masks, seed=seed))


def independent_nll(train, x):
    """Mean NLL (nats) of x under independent Bernoullis fitted to train: the no-dependency baseline."""
    p = train.mean(axis=0).clip(1e-3, 1 - 1e-3)
    return float(-(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=1).mean())


# --------------------------------------------------------------------------- configuration


def test_train_config_round_trip_and_validation():
    cfg = TrainConfig(epochs=7, lr=0.01, lr_schedule="step", eval_masks=5)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"epochs": 0}, {"batch_size": 0}, {"optimizer": "rmsprop"}, {"lr": -1.0},
                {"patience": -1}, {"resample_every": 0}, {"lr_schedule": "linear"}, {"eval_masks": 0}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown training configuration keys"):
        TrainConfig.from_dict({"epochs": 3, "bogus": 1})


def test_an_unlimited_bank_is_spelled_inf(chain):
    """An unlimited bank was `inf` on the command line but 0 in the API (which the CLI refuses): the API
    takes float("inf") or "inf", as the CLI does; a configuration stores 0, which older checkpoints hold
    and older calls give, with the same meaning; refusals name inf."""
    from made_np import UNLIMITED

    stored = MADEConfig(D=D, hidden=(8,), num_masks=0)
    for spelling in (math.inf, UNLIMITED, "inf", " INF", np.float64("inf")):
        cfg = MADEConfig(D=D, hidden=(8,), num_masks=spelling)
        assert cfg == stored and cfg.num_masks == 0 and cfg.to_dict()["num_masks"] == 0
    assert MADEConfig.from_dict(stored.to_dict()) == stored  # an older checkpoint's 0
    model = MADE(MADEConfig(D=D, hidden=(8,), num_masks="inf"))
    fit(model, chain, TrainConfig(epochs=1, batch_size=50, resample_every=4))
    assert [mask_for_step(i, model.config.num_masks, 4) for i in (0, 4, 8, 400)] == [0, 1, 2, 100]  # fresh masks
    for bad in (-1, -math.inf, "infinite", 2.5):
        with pytest.raises(ValueError, match=r"^num_masks must .*; or inf for no limit$"):
            MADEConfig(D=D, num_masks=bad)


def test_output_bias_choices():
    assert TrainConfig().output_bias == "marginals"
    assert TrainConfig.for_data(None, preset="paper").output_bias == "zero"  # as the paper's code
    with pytest.raises(ValueError, match="unknown output_bias 'data': choose one of marginals, zero"):
        TrainConfig(output_bias="data")


def test_lr_schedules():
    assert TrainConfig(lr_schedule="constant").lr_at(0.1, 77) == 0.1
    step = TrainConfig(lr_schedule="step", lr_step=10)
    assert [step.lr_at(1.0, e) for e in (1, 10, 11, 20, 21)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    cos = TrainConfig(lr_schedule="cosine", epochs=4)
    assert cos.lr_at(1.0, 1) == 1.0
    assert cos.lr_at(1.0, 3) == pytest.approx(0.5)
    assert cos.lr_at(1.0, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 4)))


@pytest.mark.parametrize("optimizer,lr", [("adam", 2e-3), ("adagrad", 1e-2), ("sgd", 1e-2)])
def test_the_default_learning_rate_of_each_optimiser(chain, optimizer, lr):
    """lr left open: the recipe's rate of the optimiser, the one the first epoch trains at."""
    assert TrainConfig(optimizer=optimizer).resolved().lr == lr
    assert TrainConfig(optimizer=optimizer, lr=0.5).resolved().lr == 0.5  # a given rate stays
    history = fit(small_model(hidden=(8,)), chain, TrainConfig(optimizer=optimizer, epochs=1, patience=0))
    assert history["rows"][0]["lr"] == lr


def test_the_update_budget_rounds_up_to_whole_epochs():
    """25,000 updates: a short last minibatch is an update, and a part of an epoch is a whole one."""
    from made_np.config import budget_epochs

    assert budget_epochs(10_001, 100) == 248  # 101 updates an epoch: ceil(25000 / 101) = ceil(247.5)
    assert budget_epochs(3_000, 100) == 834  # 30 updates an epoch: ceil(833.3)
    assert budget_epochs(50_000, 100) == 50  # binarized MNIST: exactly 50
    assert budget_epochs(10**6, 100) == 50 and budget_epochs(100, 100) == 1000  # within 50..1000
    assert budget_epochs(0, 100) == 50  # the training set's size unknown


def test_a_bank_of_masks_below_ten_thousand_training_rows():
    """The recipe's bank: 16 masks for 1..9,999 training rows, a single mask from 10,000 on."""
    import types

    from made_np.config import default_num_masks

    rows = (1, 9_999, 10_000, 50_000)
    assert [default_num_masks(types.SimpleNamespace(train=np.zeros((n, 3), np.uint8))) for n in rows] == [16, 16, 1, 1]
    assert default_num_masks(None) == 1


def test_the_recipe_picks_by_training_rows_and_leaves_large_data_as_it_was():
    """One rule by size (docs/experiments.md, "The recipe for small data"): 1..9,999 training rows
    the small-data recipe, 10,000 on the large one; full binarized MNIST (50,000 rows) keeps every
    setting it had (one mask, direct, Adam 2e-3 cosine over 50 epochs, patience 30)."""
    import types

    from made_np.config import recipe_summary, size_recipe

    def data(n):
        return types.SimpleNamespace(train=np.zeros((n, 784), np.uint8), D=784, classes=2, name="mnist")

    assert [size_recipe(data(n)) for n in (1, 9_999, 10_000, 50_000)] == ["small", "small", "large", "large"]
    assert size_recipe(None) == size_recipe(data(0)) == "unknown"
    assert recipe_summary(data(9_999)) == "the recipe for small data (under 10,000 training rows)"
    assert recipe_summary(data(10_000)) == "the recipe for large data (10,000 training rows or more)"
    model, cfg = MADEConfig.for_data(data(50_000)), TrainConfig.for_data(data(50_000))
    assert (model.num_masks, model.hidden, model.direct, model.input_encoding) == (1, (500,), True, "binary")
    assert (cfg.optimizer, cfg.lr, cfg.lr_schedule, cfg.epochs, cfg.patience, cfg.batch_size) == \
        ("adam", 2e-3, "cosine", 50, 30, 100)
    small, cfg = MADEConfig.for_data(data(9_999)), TrainConfig.for_data(data(9_999))
    assert (small.num_masks, cfg.optimizer, cfg.lr, cfg.lr_schedule, cfg.epochs) == (16, "adam", 2e-3, "cosine", 250)


def test_mask_for_step_cycles_the_bank():
    assert [mask_for_step(i, 3, 2) for i in range(8)] == [0, 0, 1, 1, 2, 2, 0, 0]
    assert [mask_for_step(i, 3, 1) for i in range(5)] == [0, 1, 2, 0, 1]
    assert [mask_for_step(i, 0, 2) for i in range(7)] == [0, 0, 1, 1, 2, 2, 3]  # no limit: fresh masks
    assert {mask_for_step(i, 1, 1) for i in range(5)} == {0}


# --------------------------------------------------------------------------- training


def test_the_default_test_ensemble_is_the_bank_up_to_1000_masks():
    """A bank of a million masks is evaluated on 1000 of them by default, as an unlimited bank."""
    for K, asked, n in [(32, None, 32), (10**6, None, 1000), (0, None, 1000), (32, 5, 5), (10**6, 2000, 2000),
                        (7, 100, 7)]:
        model = MADE(MADEConfig(D=3, hidden=(4,), num_masks=K, order_agnostic=True))
        assert model.eval_mask_indices(asked) == list(range(n))


def test_fit_learns_the_dependencies(chain):
    model = small_model()
    hist = fit(model, chain, TrainConfig(epochs=40, lr=1e-2, patience=0))
    rows = hist["rows"]
    assert [r["epoch"] for r in rows] == list(range(1, 41)) and hist["stop_reason"] == "epochs"
    assert rows[-1]["valid_nll"] < rows[0]["valid_nll"] - 1.0
    baseline = independent_nll(chain.train, chain.valid)  # ~ 8 log 2 = 5.5 nats
    assert hist["best_valid_nll"] < baseline - 1.5
    assert hist["best_valid_nll"] < chain_entropy() + 0.3  # close to the true entropy (~2.9 nats)
    assert all(np.isfinite(r["train_nll"]) and r["seconds"] >= 0 for r in rows)
    # the reported train NLL is the mean minibatch NLL of the epoch: near the valid NLL here
    assert abs(rows[-1]["train_nll"] - rows[-1]["valid_nll"]) < 0.5


def test_early_stopping_restores_the_best_weights(chain):
    tiny = Dataset("tiny", chain.train[:20], chain.valid, chain.test, 2, None)
    model = small_model(hidden=(200,))
    cfg = TrainConfig(epochs=300, lr=3e-2, patience=5, batch_size=10)
    hist = fit(model, tiny, cfg)
    rows = hist["rows"]
    assert hist["stop_reason"] == "patience"
    assert len(rows) == hist["best_epoch"] + cfg.patience < cfg.epochs
    best = min(r["valid_nll"] for r in rows)
    assert hist["best_valid_nll"] == best == rows[hist["best_epoch"] - 1]["valid_nll"]
    assert rows[-1]["valid_nll"] > best  # it overfitted after the best epoch...
    now = float(model.nll(chain.valid).astype(np.float64).mean())
    assert now == pytest.approx(best, abs=1e-9)  # ...and the best weights are back


def test_a_callback_that_returns_true_stops_the_run_at_its_best_weights(chain):
    model, seen = small_model(), []
    history = fit(model, chain, TrainConfig(epochs=10, patience=0),
                  callback=lambda row: seen.append(row["epoch"]) or row["epoch"] == 3)
    assert seen == [1, 2, 3] and len(history["rows"]) == 3 and history["stop_reason"] == "callback"
    assert evaluate(model, chain.valid)["nll"] == pytest.approx(history["best_valid_nll"], rel=1e-6)


def test_make_engine_refuses_an_unknown_engine_by_name():
    with pytest.raises(ValueError, match="unknown engine 'turbo': choose one of fast, reference"):
        make_engine(small_model(), "turbo")


def test_patience_zero_never_stops(chain):
    hist = fit(small_model(), chain, TrainConfig(epochs=3, patience=0))
    assert len(hist["rows"]) == 3 and hist["stop_reason"] == "epochs"


def test_mask_bank_is_cycled_and_validated_as_an_ensemble(chain, monkeypatch):
    model = small_model(num_masks=3)
    used = []  # mask in use at every training step
    original = FastEngine.loss_and_grad

    def spy(self, xb, mask=0, context=None):
        used.append(mask)
        return original(self, xb, mask, context)

    monkeypatch.setattr(FastEngine, "loss_and_grad", spy)
    seen = []

    def check(row):
        ens = float(model.ensemble_nll(chain.valid, [0, 1, 2]).astype(np.float64).mean())
        seen.append((row["valid_nll"], ens))

    cfg = TrainConfig(epochs=2, batch_size=150, resample_every=2, patience=0)
    hist = fit(model, chain, cfg, callback=check)
    # 4 minibatches an epoch: the cycle carries on across the epoch boundary
    assert used == [0, 0, 1, 1, 2, 2, 0, 0] == [mask_for_step(i, 3, 2) for i in range(8)]
    assert hist["valid_masks"] == 3 and len(seen) == 2
    for valid, ens in seen:
        assert valid == pytest.approx(ens, abs=1e-9)
    single = float(model.nll(chain.valid).astype(np.float64).mean())
    assert abs(single - seen[-1][1]) > 1e-3  # the single-mask figure differs from the ensemble's


def test_unlimited_bank_draws_fresh_masks(chain):
    model = small_model(num_masks=0)
    cfg = TrainConfig(epochs=1, valid_masks=4, patience=0)
    hist = fit(model, chain, cfg)
    assert hist["valid_masks"] == 4
    assert np.isfinite(hist["rows"][0]["valid_nll"])


def test_fit_rejects_data_of_the_wrong_width(chain):
    wide = Dataset("wide", np.zeros((10, D + 1), np.uint8), np.zeros((5, D + 1), np.uint8),
                   np.zeros((5, D + 1), np.uint8), 2, None)
    with pytest.raises(ValueError, match="D = 8"):
        fit(small_model(), wide, TrainConfig(epochs=1))


# --------------------------------------------------------------------------- evaluate


def test_evaluate_mean_and_standard_error(chain):
    model = small_model(num_masks=3)
    per_example = model.nll(chain.test).astype(np.float64)
    r = evaluate(model, chain.test, ensemble=False)
    assert r["nll"] == pytest.approx(per_example.mean(), rel=1e-12)
    assert r["stderr"] == pytest.approx(per_example.std(ddof=1) / math.sqrt(200), rel=1e-12)
    assert r["nll_per_dim"] == pytest.approx(r["nll"] / D) and r["n"] == 200 and r["masks"] == 1
    e = evaluate(model, chain.test)  # ensemble by default when K > 1
    assert e["ensemble"] and e["masks"] == 3
    assert e["nll"] == pytest.approx(model.ensemble_nll(chain.test, [0, 1, 2]).astype(np.float64).mean())
    assert evaluate(model, chain.test, eval_masks=2)["masks"] == 2
    r1 = evaluate(model, chain.test, ensemble=False, mask_index=1)
    assert r1["mask_index"] == 1
    assert r1["nll"] == pytest.approx(model.nll(chain.test, mask=1).astype(np.float64).mean(), rel=1e-12)
    single = small_model()
    assert not evaluate(single, chain.test, ensemble=True)["ensemble"]  # one mask: nothing to average


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_gives_the_same_test_nll(chain, tmp_path):
    model = small_model(num_masks=3, seed=5)
    cfg = TrainConfig(epochs=3, patience=0)
    fit(model, chain, cfg, out_dir=tmp_path, dataset_spec={"spec": "chain", "path": None, "seed": 0})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "model.npz"]  # no temp files
    loaded, info = load_checkpoint(tmp_path / "model.npz")
    for name, p in model.state_dict().items():
        assert np.array_equal(loaded.state_dict()[name], p), name
    for ensemble in (False, True):
        a, b = evaluate(model, chain.test, ensemble=ensemble), evaluate(loaded, chain.test, ensemble=ensemble)
        assert a == b
        assert f"{a['nll']:.3f} ± {a['stderr']:.3f}" == f"{b['nll']:.3f} ± {b['stderr']:.3f}"
    for i in range(3):  # masks are rebuilt exactly from the stored configuration
        assert np.array_equal(loaded.maskset_at(i).ordering, model.maskset_at(i).ordering)
        assert all(np.array_equal(x, y) for x, y in zip(loaded.maskset_at(i).hidden, model.maskset_at(i).hidden))
    assert info["train_config"] == cfg.resolved(chain) and info["model_config"] == model.config
    assert info["train_config"].lr == 2e-3 and info["train_config"].lr_schedule == "cosine"  # the recipe
    assert info["dataset"]["spec"] == "chain" and info["state"]["finished"] is True
    assert [r["epoch"] for r in info["history"]["rows"]] == [1, 2, 3]
    assert info["optimizer"] is not None and int(info["optimizer"]["t"]) == 3 * 6
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_nll,valid_nll,seconds,train_seconds,valid_seconds,lr,threads" and len(lines) == 4


def test_folder_path_loads_its_model_npz(chain, tmp_path):
    model = small_model()
    save_checkpoint(tmp_path / "model.npz", model)
    loaded, info = load_checkpoint(tmp_path)
    assert info["train_config"] is None and info["path"].endswith("model.npz")
    assert np.array_equal(loaded.state_dict()["W0"], model.state_dict()["W0"])


def test_save_is_atomic(chain, tmp_path, monkeypatch):
    model = small_model()
    path = save_checkpoint(tmp_path / "m.npz", model)  # a model.npz is a run's, replaced only by its writer
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_mod.np, "savez", broken_savez)
    model.layers[0].W += 1.0
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model)
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # and no temp file is left


@pytest.mark.parametrize("num_masks", [3, 1])  # 1: trained in the blocked form (tiny_blocks)
def test_resume_matches_an_uninterrupted_run(chain, tmp_path, tiny_blocks, num_masks):
    cfg = TrainConfig(epochs=6, patience=0, resample_every=2, lr_schedule="step", lr_step=2)
    spec = {"spec": "chain", "path": None, "seed": 0}

    straight = small_model(num_masks=num_masks, seed=3)
    h1 = fit(straight, chain, cfg, out_dir=tmp_path / "a", dataset_spec=spec)

    class Interrupt(Exception):
        pass

    def stop_at_3(row):
        if row["epoch"] == 3:
            raise Interrupt

    first = small_model(num_masks=num_masks, seed=3)
    with pytest.raises(Interrupt):
        fit(first, chain, cfg, out_dir=tmp_path / "b", callback=stop_at_3, dataset_spec=spec)
    resumed, info = load_checkpoint(tmp_path / "b")
    assert info["state"]["epoch"] == 3 and not info["state"]["finished"]
    assert info["best_params"] is not None
    h2 = fit(resumed, chain, cfg, out_dir=tmp_path / "b", resume_state=info, dataset_spec=spec)

    assert [r["epoch"] for r in h2["rows"]] == list(range(1, 7))
    for r1, r2 in zip(h1["rows"], h2["rows"]):
        assert r1["train_nll"] == pytest.approx(r2["train_nll"], abs=1e-5)
        assert r1["valid_nll"] == pytest.approx(r2["valid_nll"], abs=1e-5)
        assert r1["lr"] == r2["lr"]
    t1 = evaluate(straight, chain.test)["nll"]
    t2 = evaluate(resumed, chain.test)["nll"]
    assert t1 == pytest.approx(t2, abs=1e-5)
    for name, p in straight.state_dict().items():
        np.testing.assert_allclose(resumed.state_dict()[name], p, atol=1e-6)
    with pytest.raises(ValueError, match="finished"):
        fit(*load_checkpoint(tmp_path / "b")[:1], chain, cfg, resume_state=load_checkpoint(tmp_path / "b")[1])


def test_blocked_training_is_the_plain_training(chain, tmp_path, tiny_blocks, monkeypatch):
    """fit() trains a single-mask model in its blocked form; the same run without it (as on
    CuPy) gives the same numbers, weights and optimiser state (float64, up to rounding)."""
    from made_np.fast import engine as fast_engine
    from made_np.fast.blocked import BlockedDense, BlockedMADE

    config = MADEConfig(D=D, hidden=(24, 16), ordering="random", direct=True, seed=2, dtype="float64")
    cfg = TrainConfig(epochs=4, patience=0, lr=1e-2, batch_size=50)
    seen = []
    original = BlockedMADE.loss_and_grad

    def spy(self, x, mask=0, head=None, context=None):
        seen.append(all(isinstance(layer, BlockedDense) for layer in self._all_layers))
        return original(self, x, mask, head, context)

    monkeypatch.setattr(BlockedMADE, "loss_and_grad", spy)
    blocked = MADE(config)
    h1 = fit(blocked, chain, cfg, out_dir=tmp_path / "blocked")
    assert seen and all(seen)
    monkeypatch.setattr(fast_engine, "blocked_products", lambda xp: False)
    seen.clear()
    plain = MADE(config)
    h2 = fit(plain, chain, cfg, out_dir=tmp_path / "plain")
    assert not seen
    for r1, r2 in zip(h1["rows"], h2["rows"]):
        assert r1["train_nll"] == pytest.approx(r2["train_nll"], abs=1e-10)
        assert r1["valid_nll"] == pytest.approx(r2["valid_nll"], abs=1e-10)
    for a, b in zip(blocked.params, plain.params):
        np.testing.assert_allclose(a, b, atol=1e-10)
    with np.load(tmp_path / "blocked" / "model.npz") as fa, np.load(tmp_path / "plain" / "model.npz") as fb:
        opt_keys = sorted(k for k in fb.files if k.startswith("opt_"))
        assert sorted(k for k in fa.files if k.startswith("opt_")) == opt_keys and "opt_m0" in opt_keys
        for k in opt_keys:
            np.testing.assert_allclose(fa[k], fb[k], atol=1e-10, err_msg=k)


def one_line_error(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "missing.npz")
    assert "no such checkpoint" in one_line_error(e)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path)
    assert "holds no model.npz" in one_line_error(e)

    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "text.npz")
    assert "not a made-np checkpoint" in one_line_error(e)

    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "array.npy")
    assert "single .npy array" in one_line_error(e)

    np.savez(tmp_path / "data.npz", train_data=np.zeros((2, 2)))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "data.npz")
    assert "no 'config' entry" in one_line_error(e) and "train_data" in str(e.value)

    np.savez(tmp_path / "other.npz", config=np.array('{"format": "something-else"}'))
    with pytest.raises(CheckpointError, match="not a made-np checkpoint"):
        load_checkpoint(tmp_path / "other.npz")

    path = save_checkpoint(tmp_path / "model.npz", small_model())
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "W1"}
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "partial.npz")
    assert "missing parameter 'W1'" in one_line_error(e)

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a made-np checkpoint"):
        load_checkpoint(truncated)


def _digits_engines(epochs, hidden, num_masks=1):
    from made_np.data import load_dataset

    ds = load_dataset("digits")
    out = {}
    for engine in ("fast", "reference"):
        model = MADE(MADEConfig.for_data(ds, hidden=hidden, num_masks=num_masks, dtype="float64"))
        fit(model, ds, TrainConfig(epochs=epochs, engine=engine, valid_masks=2))
        out[engine] = evaluate(model, ds.test)["nll"]
    return out


def test_reference_and_fast_engines_reach_the_same_digits_test_nll():
    """The two engines (blocked form, fused head, efficient in-place Adam against the plain MADE,
    textbook head and Adam) take the same steps: the digits test NLL agrees far inside 1e-4 nats in
    float64. (In float32 rounding differences grow over thousands of Adam steps: the default
    200-epoch run differs by 4e-4 to 2e-3 nats, docs/performance.md.)"""
    nll = _digits_engines(epochs=15, hidden=(100,))
    assert abs(nll["fast"] - nll["reference"]) < 1e-8, nll
    bank = _digits_engines(epochs=3, hidden=(50,), num_masks=3)  # a bank: the plain form with the fused head
    assert abs(bank["fast"] - bank["reference"]) < 1e-8, bank


@pytest.mark.slow
def test_reference_and_fast_engines_agree_on_the_default_digits_run():
    nll = _digits_engines(epochs=200, hidden=(500,))
    assert abs(nll["fast"] - nll["reference"]) < 1e-4, nll


def test_union_products_train_as_the_reference_engine(chain, tmp_path, tiny_blocks, monkeypatch):
    """fit(engine="fast") with the union products of the data layers (data with all-zero
    columns, the path forced on) gives the reference engine's run (float64, 1e-10)."""
    from made_np.fast import blocked as blocked_mod

    monkeypatch.setattr(blocked_mod, "SPARSE_MAX_LIVE", 1.0)
    calls = []
    original = blocked_mod.BlockedDense._write_live

    def spy(self, out, part):
        calls.append(1)
        return original(self, out, part)

    monkeypatch.setattr(blocked_mod.BlockedDense, "_write_live", spy)

    def sparse(x):
        x = np.array(x)
        x[:, ::3] = 0  # a third of the columns never on (the borders of MNIST)
        return x

    data = Dataset("sparse chain", sparse(chain.train), sparse(chain.valid), sparse(chain.test), 2, None)
    config = MADEConfig(D=D, hidden=(24, 16), ordering="random", direct=True, seed=2, dtype="float64")
    cfg = TrainConfig(epochs=3, patience=0, lr=1e-2, batch_size=50)
    fast_model, ref_model = MADE(config), MADE(config)
    h1 = fit(fast_model, data, dataclasses.replace(cfg, engine="fast"), out_dir=tmp_path / "fast")
    assert calls
    h2 = fit(ref_model, data, dataclasses.replace(cfg, engine="reference"), out_dir=tmp_path / "ref")
    for r1, r2 in zip(h1["rows"], h2["rows"]):
        assert r1["train_nll"] == pytest.approx(r2["train_nll"], abs=1e-10)
        assert r1["valid_nll"] == pytest.approx(r2["valid_nll"], abs=1e-10)
    for a, b in zip(fast_model.params, ref_model.params):
        np.testing.assert_allclose(a, b, atol=1e-10)


# --------------------------------------------------------------------------- output biases


def test_class_counts_count_every_block():
    from made_np.data import class_counts

    for classes in (2, 3):  # the binary shortcut and the general count
        x = np.random.default_rng(0).integers(0, classes, (30000, 50)).astype(np.uint8)  # 1.5M entries: two blocks
        counts = class_counts(x, classes)
        assert counts.shape == (50, classes) and counts.dtype == np.int64
        np.testing.assert_array_equal(counts, np.stack([(x == c).sum(axis=0) for c in range(classes)], axis=1))


def test_a_new_run_starts_at_the_marginals_a_trained_model_keeps_its_biases(chain):
    from made_np.train import start_at_marginals

    model = small_model()
    assert start_at_marginals(model, chain.train)
    p1 = (chain.train.sum(axis=0) + 0.5) / (chain.train.shape[0] + 1)
    np.testing.assert_allclose(model.layers[-1].b, np.log(p1 / (1 - p1)), rtol=1e-6)
    c = model.layers[-1].b.copy()
    assert not start_at_marginals(model, 1 - chain.train)  # not all 0 any more: left alone
    np.testing.assert_array_equal(model.layers[-1].b, c)

    seen = {}
    for output_bias in ("marginals", "zero"):
        m = small_model()
        fit(m, chain, TrainConfig(epochs=1, output_bias=output_bias),
            callback=lambda row, m=m, k=output_bias: seen.setdefault(k, m.layers[-1].b.copy()) is None)
    # one epoch moves the biases a little from where they started
    assert np.abs(seen["marginals"] - np.log(p1 / (1 - p1))).max() < 0.1
    assert np.abs(seen["zero"]).max() < 0.1


def test_one_output_bias_set_already_keeps_every_bias(chain):
    """The marginal start is only for biases that are all 0: one set bias (a model set by hand or
    trained) leaves them all as they are."""
    from made_np.train import start_at_marginals

    model = small_model()
    c = model.layers[-1].b
    c[3] = 0.25
    assert not start_at_marginals(model, chain.train)
    np.testing.assert_array_equal(c, np.where(np.arange(c.size) == 3, 0.25, 0.0))


def test_marginal_biases_learn_a_constant_column_at_once():
    """Data nobody tuned for: 200 rows of 20 ones. From 0 the recipe was still 0.43 nats above
    the truth (0) after 1000 epochs; from the marginals (p = 160.5 / 161 per variable,
    20 * -log p = 0.062 nats) five epochs take it below that."""
    ones = np.ones((200, 20), np.uint8)
    ds = Dataset("ones", ones[:160], ones[160:180], ones[180:], 2, None)
    got = {}
    for output_bias in ("marginals", "zero"):
        model = MADE(MADEConfig.for_data(ds, hidden=(32,)))
        fit(model, ds, TrainConfig.for_data(ds, epochs=5, output_bias=output_bias))
        got[output_bias] = evaluate(model, ds.test)["nll"]
    assert got["marginals"] < 20 * -math.log(160.5 / 161) < 1.0 < got["zero"]


def test_a_checkpoint_from_before_output_bias_reads_as_zero(chain, tmp_path):
    model = small_model()
    path = save_checkpoint(tmp_path / "m.npz", model, train_config=TrainConfig())
    meta = checkpoint_mod.read_checkpoint_meta(path)
    del meta["train"]["output_bias"]
    checkpoint_mod.update_checkpoint_meta(path, train=meta["train"])
    _, info = load_checkpoint(path)
    assert info["train_config"].output_bias == "zero"


def test_fit_verbose_prints_a_line_per_epoch(chain, capsys):
    """fit(verbose=True), as scikit-learn's estimators: one line per epoch, the callback still called."""
    seen = []
    fit(small_model(), chain, TrainConfig(epochs=2, patience=0), verbose=True, callback=seen.append)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch    1  train NLL") and "valid NLL" in lines[1]
    assert [r["epoch"] for r in seen] == [1, 2]
    fit(small_model(), chain, TrainConfig(epochs=1, patience=0))
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("change", [{"batch_size": 7}, {"seed": 3}, {"resample_every": 2}, {"valid_masks": 2}])
def test_a_resume_refuses_another_batch_size(chain, tmp_path, change):
    """Resumed with TrainConfig(batch_size=7), fit trained on with the new size while the checkpoint
    recorded one batch size for every epoch: refused in one line naming it (as made-np train --resume
    refuses --batch-size), and so is every other fact that shaped the epochs trained."""
    cfg = TrainConfig(epochs=1, patience=0, batch_size=50)
    fit(small_model(), chain, cfg, out_dir=tmp_path / "run")
    loaded, info = load_checkpoint(tmp_path / "run")
    before = (tmp_path / "run" / "model.npz").read_bytes()
    (key, value), = change.items()
    with pytest.raises(CheckpointError, match=rf"model.npz: {key} = {value}, but the run was trained with {key} = "
                                              rf"{getattr(info['train_config'], key)}; resume with the configuration"):
        fit(loaded, chain, dataclasses.replace(cfg, epochs=2, **change), out_dir=tmp_path / "run", resume_state=info)
    assert (tmp_path / "run" / "model.npz").read_bytes() == before
    assert fit(loaded, chain, dataclasses.replace(cfg, epochs=2), out_dir=tmp_path / "run", resume_state=info)["rows"][-1]["epoch"] == 2


def test_a_resume_at_another_learning_rate_records_it(chain, tmp_path):
    """Resumed with TrainConfig(lr=0.5), the run trains at 0.5 and its history says 0.5 (it kept the
    first run's base rate)."""
    model = small_model()
    cfg = TrainConfig(epochs=2, patience=0, lr=1e-3, lr_schedule="constant")
    fit(model, chain, cfg, out_dir=tmp_path / "run")
    loaded, info = load_checkpoint(tmp_path / "run")
    hist = fit(loaded, chain, TrainConfig(epochs=3, patience=0, lr=0.5, lr_schedule="constant"),
               out_dir=tmp_path / "run", resume_state=info)
    assert hist["base_lr"] == 0.5 and hist["rows"][-1]["lr"] == 0.5 and hist["rows"][0]["lr"] == 1e-3
    assert load_checkpoint(tmp_path / "run")[1]["history"]["base_lr"] == 0.5


def test_an_epoch_row_times_its_steps_and_validation_apart_and_names_its_threads(chain):
    """metrics.csv's row: training and validation seconds in their own columns, and the threads."""
    hist = fit(small_model(num_masks=3), chain, TrainConfig(epochs=1, patience=0), threads=1)
    row = hist["rows"][0]
    assert row["threads"] == 1 and row["train_seconds"] > 0 and row["valid_seconds"] > 0
    assert row["seconds"] == pytest.approx(row["train_seconds"] + row["valid_seconds"], rel=0.2, abs=0.01)


def test_metrics_of_a_run_saved_before_the_new_columns_leave_them_blank(tmp_path):
    """Rows of a resumed older run lack train_seconds, valid_seconds, lr, threads: written blank."""
    from made_np.runfolder import write_metrics

    rows = [{"epoch": 1, "train_nll": 5.0, "valid_nll": 5.5, "seconds": 1.25},
            {"epoch": 2, "train_nll": 4.0, "valid_nll": 4.5, "seconds": 1.5, "train_seconds": 1.0,
             "valid_seconds": 0.5, "lr": 2e-3, "threads": 2}]
    text = write_metrics(tmp_path / "metrics.csv", rows).read_text()
    assert text.splitlines()[1:] == ["1,5.000000,5.500000,1.250,,,,", "2,4.000000,4.500000,1.500,1.000,0.500,0.002,2"]


# --------------------------------------------------------------------------- the strict stand-in for a device


def test_a_few_epochs_of_reference_training_on_the_stand(stand, tmp_path):
    """fit with the reference engine on the stand (NumPy, or array_api_strict on a second device): the
    training loss decreases, and the checkpoint written from the device loads back on the CPU and onto
    the device with the same NLLs and the same evaluation."""
    data = chain_dataset()
    cfg = MADEConfig(D=8, hidden=(16,), num_masks=2, order_agnostic=True, seed=0, dtype="float64")
    model = stand.made(cfg)
    hist = fit(model, data, TrainConfig(epochs=4, batch_size=50, lr=1e-2, engine="reference", valid_masks=2),
               out_dir=tmp_path / "run")
    train = [row["train_nll"] for row in hist["rows"]]
    assert all(b < a for a, b in zip(train, train[1:])) and train[-1] < train[0] - 0.3, train
    loaded, info = load_checkpoint(tmp_path / "run")  # on the CPU
    assert info["state"]["finished"]
    x = data.test
    here = stand.get(model.nll(stand.put(x)))
    np.testing.assert_allclose(loaded.nll(x), here, rtol=1e-12)
    back = stand.made(cfg, draw_weights=False)
    back.load_state_dict(loaded.state_dict())
    np.testing.assert_array_equal(stand.get(back.nll(stand.put(x))), here)
    assert evaluate(model, stand.put(x))["nll"] == pytest.approx(evaluate(loaded, x)["nll"], rel=1e-12)


@pytest.mark.strict_device
def test_the_fast_engine_on_another_namespace_trains_with_the_reference_one_and_says_so_once():
    """engine="fast" (the default) on a namespace other than NumPy's or CuPy's: one
    ReferenceEngineWarning, and the run of the reference engine, number for number."""
    import warnings

    import array_api_strict

    from conftest import Stand
    from made_np.train import ReferenceEngineWarning
    data = chain_dataset()
    cfg = MADEConfig(D=8, hidden=(12,), num_masks=1, seed=1, dtype="float64")
    with array_api_strict.ArrayAPIStrictFlags(api_version="2024.12"):
        stand = Stand("strict")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fast = fit(stand.made(cfg), data, TrainConfig(epochs=2, batch_size=100))
        said = [w for w in caught if issubclass(w.category, ReferenceEngineWarning)]
        assert len(said) == 1 and "reference engine" in str(said[0].message)
        reference = fit(stand.made(cfg), data, TrainConfig(epochs=2, batch_size=100, engine="reference"))
    assert [r["train_nll"] for r in fast["rows"]] == [r["train_nll"] for r in reference["rows"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReferenceEngineWarning)  # NumPy keeps the fast engine, silently
        fit(MADE(cfg), data, TrainConfig(epochs=1, batch_size=100))


def _stand_data(case: str) -> Dataset:
    """Small data sets of every kind the stand-in trains on (D = 4)."""
    rng = np.random.default_rng(7)
    n = 240
    if case in ("categorical", "missing"):
        x = (np.cumsum(rng.integers(0, 2, size=(n, 4)), axis=1) % 3).astype(np.int64)
        if case == "missing":
            x = (x % 2).astype(float)
            x[rng.random(x.shape) < 0.15] = np.nan
            x[np.isnan(x).all(axis=1), 0] = 1.0
        return Dataset(case, x[:160], x[160:200], x[200:], 3 if case == "categorical" else 2, None)
    z = rng.normal(size=(n, 4))
    x = np.stack([z[:, 0], z[:, 0] + 0.5 * z[:, 1], np.where(z[:, 2] > 0, 2.0, 1.0), z[:, 3] * 3 + 1], axis=1)
    y = rng.integers(0, 2, size=n)
    x[:, 3] += 2 * y
    return Dataset(case, x[:160], x[160:200], x[200:], 0, None, train_context=y[:160], valid_context=y[160:200],
                   test_context=y[200:], context_width=2, context_encoding="onehot",
                   discrete_columns=(2,) if case == "mixed" else ())


STAND_FITS = {  # a MADE configuration and the training recipe of each run
    "categorical": (dict(classes=3, head="categorical", input_encoding="onehot", activation="leaky_relu",
                         init="orthogonal", num_masks=0, order_agnostic=True, orderings="segments", degrees="equal"),
                    dict(optimizer="sgd", lr=0.05, weight_decay=1e-4, lr_schedule="constant")),
    "missing": (dict(classes=2, num_masks=3, order_agnostic=True, direct=True), dict(optimizer="adagrad", lr=0.05)),
    "mog": (dict(classes=0, head="mog", input_encoding="raw", components=2, context=2, direct=True), dict()),
    "gaussian": (dict(classes=0, head="gaussian", input_encoding="raw", context=2, num_masks=2), dict()),
    "mixed": (dict(classes=0, head="mixed", input_encoding="raw", components=2, context=2, discrete_columns=(2,),
                   levels=((1.0, 2.0),)), dict(optimizer="sgd", lr=0.01)),
}


@pytest.mark.strict_device
@pytest.mark.parametrize("case", STAND_FITS)
def test_the_strict_device_trains_as_numpy_does(case, tmp_path):
    """Every head, optimiser, activation, initialisation, ordering and degree rule, a context, and rows
    with missing entries: three epochs of ``fit`` on the strict stand-in give NumPy's numbers (the
    reference engine, the marginal start and the standardisation computed on the device), and the
    stand-in's run resumes from its checkpoint."""
    import array_api_strict

    from conftest import Stand
    kw, recipe = STAND_FITS[case]
    cfg = MADEConfig(D=4, hidden=(9, 7), seed=3, dtype="float64", ordering="random", **kw)
    data = _stand_data(case)
    train = TrainConfig(epochs=3, batch_size=40, engine="reference", patience=5, valid_masks=2, log_every=2, **recipe)
    seen = []

    def progress(epoch, n_batches):
        class Bar:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def update(self, steps, running):
                seen.append(running)
        return Bar()

    rows = {}
    with array_api_strict.ArrayAPIStrictFlags(api_version="2024.12"):
        for name in ("numpy", "strict"):
            stand = Stand(name)
            model = stand.made(cfg)
            hist = fit(model, data, train, out_dir=tmp_path / name, progress=progress, verbose=True)
            rows[name] = [(r["train_nll"], r["valid_nll"]) for r in hist["rows"]]
        np.testing.assert_allclose(rows["strict"], rows["numpy"], rtol=1e-9)
        assert all(np.isfinite(seen)) and len(seen) >= 6
        more = dataclasses.replace(train, epochs=4)
        info = load_checkpoint(tmp_path / "strict")[1]
        resumed = fit(model, data, more, out_dir=tmp_path / "strict", resume_state=info)
        assert [r["epoch"] for r in resumed["rows"]] == [1, 2, 3, 4]
