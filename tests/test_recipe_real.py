"""The recipe's early stopping for small real-valued training sets (config.default_patience): it
picks the look-ahead by the training rows, boundaries included, and leaves every other run as it was."""
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import run_cli

from made_np import MADE, MADEConfig, MADEDensity, MADEImputer, TrainConfig, fit, load_checkpoint
from made_np.config import DEFAULT_PATIENCE, REAL_PATIENCE_UPDATES, default_patience
from made_np.data import TOY_SPLIT, load_dataset


def data(rows: int, classes: int = 0, D: int = 3):
    x = np.random.default_rng(rows).standard_normal((rows, D))
    return SimpleNamespace(train=x if classes == 0 else (x > 0).astype(np.uint8), D=D, classes=classes, name=None,
                           discrete_columns=())


@pytest.mark.parametrize("rows, batch, patience", [
    (1, 100, 500), (100, 100, 500), (101, 100, 250), (120, 100, 250), (354, 100, 125), (400, 100, 125),
    (401, 100, 100), (500, 100, 100), (1600, 100, 32), (1601, 100, 30), (1700, 100, 30), (20_000, 100, 30),
    (1000, 10, 30), (1000, 1000, 500), (1000, 50, 25 + 5)])
def test_real_valued_patience_waits_at_least_500_updates(rows, batch, patience):
    ds = data(rows)
    assert default_patience(ds, batch) == patience == max(30, -(-500 // -(-rows // batch)))
    assert TrainConfig.for_data(ds, batch_size=batch).patience == patience
    assert TrainConfig(batch_size=batch).resolved(ds).patience == patience  # fit(model, data, TrainConfig())


def test_the_constants_the_docs_state():
    assert (DEFAULT_PATIENCE, REAL_PATIENCE_UPDATES) == (30, 500)


@pytest.mark.parametrize("given", [0, 1, 7, 30, 1000])
def test_a_given_patience_wins(given):
    assert TrainConfig.for_data(data(120), patience=given).patience == given
    assert TrainConfig(patience=given).resolved(data(120)).patience == given
    assert TrainConfig.for_data(data(120), preset="paper").patience == 30  # a preset's too


@pytest.mark.parametrize("classes, rows", [(2, 120), (2, 1), (5, 300)])
def test_discrete_data_keep_the_patience_of_30(classes, rows):
    assert TrainConfig.for_data(data(rows, classes)).patience == 30
    assert TrainConfig().resolved(None).patience == 30  # no data set known


def test_a_2d_toy_of_20000_rows_keeps_its_recipe():
    ds = load_dataset("moons", seed=0)
    assert len(ds.train) == TOY_SPLIT[0] == 20_000
    before = TrainConfig.for_data(ds, seed=3, patience=30)  # what the recipe gave before the rule
    assert TrainConfig.for_data(ds, seed=3) == before and before.to_dict()["epochs"] == 125
    m = MADEConfig.for_data(ds)
    assert (m.hidden, m.components, m.num_masks, m.head) == ((256, 256), 20, 0, "mog")


def test_a_binary_run_gives_the_same_numbers_as_before():
    # 60 rows of 5 binary columns: a run that stops early, under the patience of 30 it always had
    x = (np.random.default_rng(0).random((90, 5)) < 0.3).astype(np.uint8)
    ds = SimpleNamespace(train=x[:60], valid=x[60:], D=5, classes=2, name=None, discrete_columns=())
    runs = []
    for patience in (None, 30):
        model = MADE(MADEConfig.for_data(ds, hidden=(8,), seed=0))
        hist = fit(model, ds, TrainConfig.for_data(ds, patience=patience, epochs=200, lr=3e-2, seed=0), threads=1)
        runs.append((hist["stop_reason"], hist["best_epoch"], hist["best_valid_nll"], len(hist["rows"])))
    assert runs[0] == runs[1] and runs[0][0] == "patience" and runs[0][3] == runs[0][1] + 30


def test_the_command_line_leaves_patience_to_the_recipe(tmp_path):
    # iris: 120 training rows, 2 updates an epoch (a given --patience is test_api's paper preset test)
    result = run_cli("train", "--dataset", "iris", "--hidden", "4", "--epochs", "1", "-q", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "r")[1]["train_config"].patience == 250


def test_the_estimators_leave_patience_to_the_recipe():
    assert MADEDensity().patience is None and MADEImputer().patience is None
    x = np.random.default_rng(1).standard_normal((60, 2))
    est = MADEDensity(hidden=(4,), epochs=40, random_state=0).fit(x)  # 54 training rows: 1 update an epoch
    rows = est.history_["rows"]
    assert est.history_["stop_reason"] == "epochs" and len(rows) == 40  # a patience of 30 could have stopped it


@pytest.mark.parametrize("rows, missing, masks", [(12_000, None, 1), (12_000, "train", 0),  # 0: no limit
                                                  (12_000, "valid", 0), (12_000, "test", 0), (500, "train", 16),
                                                  (500, None, 16)])
def test_large_data_with_missing_entries_get_a_fresh_mask_every_minibatch(rows, missing, masks):
    rng = np.random.default_rng(0)
    splits = {"train": rng.normal(size=(rows, 6)), "valid": rng.normal(size=(9, 6)), "test": rng.normal(size=(9, 6))}
    if missing:
        splits[missing][3, 2] = np.nan  # one missing entry: training or scoring needs observed-first masks
    ds = SimpleNamespace(D=6, classes=0, name="x", discrete_columns=(), **splits)
    assert MADEConfig.for_data(ds).num_masks == masks
