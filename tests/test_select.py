"""The recipe for small data chosen by validation (made_np/select.py, ``made-np train``): a bank of 16
against a fresh mask per minibatch, kept by the lower validation NLL; the test split never chooses."""
import json
import re
from dataclasses import replace

import numpy as np
import pytest

from made_np import (CHOOSING, MADE, MADEConfig, TrainConfig, candidates, choose, fit, fit_choice, fit_selected,
                     load_checkpoint, selects)
from made_np.data import Dataset

from conftest import chain_dataset, markov_chain, run_cli as run

SMALL = ({"hidden": (16,)}, {"epochs": 4})


def _npz(tmp_path, test=None):
    ds = chain_dataset()
    path = tmp_path / "chain.npz"
    np.savez(path, train_data=ds.train, valid_data=ds.valid, test_data=ds.test if test is None else test)
    return path


def _table(run_dir):
    return json.loads((run_dir / "results.json").read_text())


def test_selects_only_small_discrete_data_with_no_chosen_setting_fixed():
    ds = chain_dataset()
    assert selects(ds) and selects(ds, ["hidden", "epochs"])
    for fixed in (["num_masks"], ["lr"], ["lr_schedule"], ["optimizer"], ["preset"]):
        assert not selects(ds, fixed)
    assert not selects(replace(ds, train=np.zeros((10_000, 8), np.uint8)))  # 10,000 rows: the large recipe
    real = Dataset("real", ds.train.astype(float), ds.valid.astype(float), ds.test.astype(float), 0, None)
    assert not selects(real)
    names = [(name, m.num_masks, c.lr, c.lr_schedule) for name, m, c in
             candidates(MADEConfig.for_data(ds), TrainConfig.for_data(ds))]
    assert names == [("bank16", 16, 2e-3, "cosine"), ("fresh", 0, 2e-3, "cosine")]


def test_choose_keeps_the_lower_validation_nll_and_the_first_of_a_tie():
    rows = [{"name": "a", "best_valid_nll": 5.0, "valid_nll": 3.0}, {"name": "b", "best_valid_nll": 1.0, "valid_nll": 4.0}]
    assert [r["chosen"] for r in choose(rows)] == [True, False]  # the figure under the test ensemble decides
    assert [r["chosen"] for r in choose([{"best_valid_nll": 2.0}, {"best_valid_nll": 2.0}])] == [True, False]
    assert [r["chosen"] for r in choose([{"valid_nll": 2.0}, {"valid_nll": 1.0}])] == [False, True]


def test_the_test_split_never_influences_the_choice(tmp_path):
    """Plant a test split of the rows the losing candidate fits better: the winner by validation stays."""
    ds = chain_dataset()
    model, history, table = fit_selected(ds, *SMALL, out_dir=tmp_path / "first", threads=1)
    chosen = [r["name"] for r in table if r["chosen"]]
    assert len(table) == 2 and len(chosen) == 1
    models = {r["name"]: load_checkpoint(tmp_path / "first" / "candidates" / r["name"])[0] for r in table}
    loser = next(r["name"] for r in table if not r["chosen"])
    pool = markov_chain(2000, 7)
    per_row = {name: m.ensemble_nll(pool, m.eval_mask_indices()) for name, m in models.items()}
    planted = pool[per_row[loser] < per_row[chosen[0]] - 0.01]
    assert planted.shape[0] >= 20
    model2, _, table2 = fit_selected(replace(ds, test=planted), *SMALL, threads=1)
    assert table2 == table  # the same training, the same validation figures, the same choice
    test = {name: float(m.ensemble_nll(planted, m.eval_mask_indices()).mean()) for name, m in models.items()}
    assert test[loser] < test[chosen[0]]  # the test split favours the candidate that was not kept
    np.testing.assert_array_equal(model2.ensemble_nll(planted, model2.eval_mask_indices()),
                                  models[chosen[0]].ensemble_nll(planted, models[chosen[0]].eval_mask_indices()))


def test_a_fixed_setting_trains_one_run_with_unchanged_numbers(tmp_path):
    ds = chain_dataset()
    plain = fit(MADE(MADEConfig.for_data(ds, hidden=(16,), num_masks=16)), ds, TrainConfig.for_data(ds, epochs=4), threads=1)
    model, history, table = fit_selected(ds, {"hidden": (16,), "num_masks": 16}, {"epochs": 4}, threads=1)
    assert [r["name"] for r in table] == ["given"] and history["best_valid_nll"] == plain["best_valid_nll"]
    path = _npz(tmp_path)
    for option in (("--num-masks", 16), ("--lr", 2e-3)):  # (every setting's name: selects, above)
        out = tmp_path / option[0][2:]
        r = run("train", "--dataset", path, "--hidden", 16, "--epochs", 4, *option, "--threads", 1, "--out", out)
        assert r.exit_code == 0, r.output
        assert "choosing" not in r.output and not (out / "candidates").exists()
        assert _table(out)["best_valid_nll"] == pytest.approx(plain["best_valid_nll"], abs=1e-9)
        assert "candidates" not in _table(out)


def test_train_chooses_and_evaluate_gives_the_winners_numbers(tmp_path):
    path, out = _npz(tmp_path), tmp_path / "run"
    r = run("train", "--dataset", path, "--hidden", 16, "--epochs", 4, "--threads", 1, "--out", out)
    assert r.exit_code == 0, r.output
    assert "small data: choosing between a bank of 16 and a fresh mask per minibatch by validation NLL" in r.output
    assert re.search(r"^\* (bank16|fresh) ", r.output, re.M) and "kept " in r.output
    res = _table(out)
    winner = res["chosen"]
    assert [c["name"] for c in res["candidates"]] == ["bank16", "fresh"]
    assert min(res["candidates"], key=lambda c: c["valid_nll"])["name"] == winner
    _, _, table = fit_selected(chain_dataset(), *SMALL, threads=1)  # the library makes the same choice
    assert [(r["name"], r["valid_nll"], r["chosen"]) for r in table] == \
        [(c["name"], pytest.approx(c["valid_nll"], abs=1e-9), c["chosen"]) for c in res["candidates"]]
    own = _table(out / "candidates" / winner)
    assert res["ensemble"] == own["ensemble"] and res["single"] == own["single"]
    last = r.output.strip().splitlines()[-3:]  # the run ends with the kept candidate's test figures
    assert last[1].startswith("test NLL, ensemble of ") and f"{own['ensemble']['nll']:.3f} ± " in last[1]
    assert (out / "metrics.csv").read_text() == (out / "candidates" / winner / "metrics.csv").read_text()
    ev = run("evaluate", out, "--json")
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.output)["ensemble"]["nll"] == pytest.approx(res["ensemble"]["nll"], rel=1e-12)
    again = run("train", "--resume", out)
    assert again.exit_code == 2 and "nothing to resume" in again.output
    assert run("sample", out, "-n", 3, "--out", tmp_path / "s.npy").exit_code == 0


def _interrupt_choice(path, out, monkeypatch):
    """``made-np train`` of ``path`` into ``out`` (4 epochs), stopped by Ctrl-C at the fresh candidate's
    epoch 2: the bank has finished, the choice is not made. Returns the first run's result."""
    from made_np import train as train_mod

    real_fit = train_mod.fit

    def interrupted_fit(model, *args, callback=None, **kwargs):
        def cb(row):
            callback(row)
            if model.config.num_masks == 0 and row["epoch"] == 2:
                raise KeyboardInterrupt
        return real_fit(model, *args, callback=cb, **kwargs)

    monkeypatch.setattr("made_np.cli.train.fit", interrupted_fit)
    first = run("train", "--dataset", path, "--hidden", 16, "--epochs", 4, "--threads", 1, "--out", out)
    monkeypatch.setattr("made_np.cli.train.fit", real_fit)
    return first


def test_resume_in_the_middle_of_the_second_candidate_continues_it_then_chooses(tmp_path, monkeypatch):
    path, out = _npz(tmp_path), tmp_path / "run"
    whole = run("train", "--dataset", path, "--hidden", 16, "--epochs", 4, "--threads", 1, "--out", tmp_path / "whole", "-q")
    assert whole.exit_code == 0 and "kept " in whole.output, whole.output  # --quiet: the choice is the final result
    first = _interrupt_choice(path, out, monkeypatch)
    assert first.exit_code == 130 and f"--resume {out}" in first.output
    assert (out / "candidates" / "bank16" / "results.json").exists() and not (out / "model.npz").exists()
    second = run("train", "--resume", out)
    assert second.exit_code == 0, second.output
    assert "resuming" in second.output and "candidate bank16: MADE" not in second.output  # not trained again
    assert "candidate bank16: finished at epoch 4; kept as trained (it trained 4 epochs, and 4 are asked for)" \
        in second.output
    assert re.search(r"epoch +3 ", second.output) and not re.search(r"epoch +1 ", second.output)
    assert _table(out)["candidates"] == _table(tmp_path / "whole")["candidates"]
    assert _table(out)["ensemble"] == _table(tmp_path / "whole")["ensemble"]


def test_resume_with_more_epochs_trains_a_finished_candidate_on_too(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert _interrupt_choice(_npz(tmp_path), out, monkeypatch).exit_code == 130
    more = run("train", "--resume", out, "--epochs", 6, "--threads", 1)
    assert more.exit_code == 0, more.output
    assert "kept as trained" not in more.output  # both candidates compared after the same 6 epochs
    rows = {name: [r for r in _table(out)["candidates"] if r["name"] == name][0] for name in ("bank16", "fresh")}
    assert rows["bank16"]["epochs_run"] == rows["fresh"]["epochs_run"] == 6, rows


def test_a_folder_holding_candidates_is_not_a_new_run(tmp_path):
    out = tmp_path / "run"
    (out / "candidates").mkdir(parents=True)
    r = run("train", "--dataset", _npz(tmp_path), "--out", out)
    assert r.exit_code == 2 and "candidates" in r.output
    r = run("train", "--resume", out)
    assert r.exit_code == 2 and "nothing to resume" in r.output


def test_a_full_disk_inside_a_candidate_says_to_resume_the_run(tmp_path, monkeypatch):
    from made_np.cli import train as cli_train

    out = tmp_path / "run"
    real = cli_train.write_json

    def full(path, obj):
        if path.parent.name == "fresh":
            raise OSError(28, "No space left on device", str(path))
        return real(path, obj)

    monkeypatch.setattr(cli_train, "write_json", full)
    r = run("train", "--dataset", _npz(tmp_path), "--hidden", 8, "--epochs", 2, "--threads", 1, "--out", out)
    assert r.exit_code == 2 and f"made-np train --resume {out}\n" in r.output


def test_an_interrupted_or_failed_choice_names_the_run_to_resume(tmp_path):
    """Between the candidates and the copy of the winner the run folder has no model.npz, but the
    candidates are saved: Ctrl-C and a failed write say to resume the run, not 'nothing was saved'."""
    import errno

    from made_np.cli.common import UserError
    from made_np.cli.train import _interrupted, _writes

    def _write_failed(exc, run_dir):  # the one line of a write of the run in run_dir that failed
        with pytest.raises(UserError) as error, _writes(run_dir):
            raise exc
        return error.value.message

    run = tmp_path / "run"
    (run / "candidates" / "bank16").mkdir(parents=True)
    assert "nothing was saved" in _interrupted(run)
    (run / "candidates" / "bank16" / "model.npz").write_bytes(b"")
    for folder in (run, run / "candidates" / "fresh"):
        assert _interrupted(folder) == ("interrupted while choosing the recipe for small data; continue with  "
                                        f"made-np train --resume {run}")
    full = OSError(errno.ENOSPC, "No space left on device", str(run / "model.npz"))
    assert _write_failed(full, run).endswith(f"the candidates are kept in {run / 'candidates'}: continue with  "
                                             f"made-np train --resume {run}")
    assert _write_failed(full, tmp_path / "other").endswith("nothing was saved")


def test_the_library_goes_on_with_an_interrupted_choice_and_keeps_the_winner_in_its_folder(tmp_path):
    """fit_choice in a run folder: Ctrl-C in the second candidate, then the same call goes on with it
    (the first kept as trained), gives the uninterrupted table and writes the winner into the folder;
    ``more`` trains both candidates on."""
    ds = chain_dataset()
    mcfg, cfg = MADEConfig.for_data(ds, hidden=(16,)), TrainConfig.for_data(ds, epochs=2)
    _, _, whole = fit_choice(ds, mcfg, cfg, threads=1)
    epochs = []

    def stop_in_fresh(row):
        epochs.append(row["epoch"])
        if len(epochs) == 3:  # the bank's 2 epochs, then the fresh mask's first
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_choice(ds, mcfg, cfg, tmp_path, threads=1, callback=stop_in_fresh)
    assert epochs == [1, 2, 1] and not (tmp_path / "model.npz").exists()
    said = []
    model, history, table = fit_choice(ds, mcfg, cfg, tmp_path, threads=1, callback=stop_in_fresh, say=said.append)
    assert said == [CHOOSING, "candidate bank16: finished at epoch 2; kept as trained (it trained 2 epochs, "
                              "and 2 are asked for)"]
    assert epochs == [1, 2, 1, 2] and table == whole  # the fresh mask's epoch 2 only: the same figures
    chosen = next(r["name"] for r in table if r["chosen"])
    assert _table(tmp_path)["chosen"] == chosen and _table(tmp_path)["candidates"] == table
    kept, info = load_checkpoint(tmp_path)
    assert info["history"]["rows"] == history["rows"]
    np.testing.assert_array_equal(kept.ensemble_nll(ds.valid, kept.eval_mask_indices()),
                                  model.ensemble_nll(ds.valid, model.eval_mask_indices()))
    _, _, more = fit_choice(ds, mcfg, cfg, tmp_path, more={"epochs": 3}, threads=1)
    assert [r["epochs_run"] for r in more] == [3, 3]
