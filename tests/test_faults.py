"""Faults lose nothing (issue 12): one writer per run folder, interruptions at any moment,
divergence, full disks, unwritable outputs and corrupt resume state.

Every user-facing failure is one line ``Error: ...`` naming the option or file, with the
documented exit status (2 user error, 3 divergence, 130 interrupted), and what was saved
before it stays readable and resumable.
"""
import contextlib
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import chain_dataset
from click.testing import CliRunner

from made_np import checkpoint as checkpoint_mod, runfolder
from made_np.checkpoint import (CheckpointError, check_resume_state, finished_run_blocker, load_checkpoint,
                                read_checkpoint_meta, update_checkpoint_meta)
from made_np.runfolder import RunFolderError, RunLockedError, run_lock
from made_np.cli import cli
from made_np.config import TrainConfig
from made_np.data import Dataset
from made_np.model import MADE, MADEConfig
from made_np.train import DivergenceError, evaluate, fit, mask_for_step

ROOT = Path(__file__).resolve().parents[1]
D = 8


pytestmark = pytest.mark.usefixtures("one_run_folder")  # conftest: one run, not the choice of two


@pytest.fixture(scope="module")
def chain():
    return chain_dataset()


class Interrupt(Exception):
    pass


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_error_line(text: str, *fragments) -> str:
    """``text`` is exactly one line ``Error: ...`` holding every fragment; no traceback."""
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), text
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def user_error(result, *fragments) -> str:
    """Exit status 2 and nothing but one error line (the error came before any other output)."""
    assert result.exit_code == 2, result.output
    return one_error_line(result.output, *fragments)


def subprocess_env():
    """The environment of a child ``python``: this checkout's made_np (and its CLI) first, and
    no bytecode written (a file size limit would kill the child writing a .pyc)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


@pytest.fixture(scope="module")
def small_npy(tmp_path_factory):
    """A small binary data set as an .npy file (300 x 6): a child process trains on it without
    importing scikit-learn for the digits."""
    path = tmp_path_factory.mktemp("data") / "small.npy"
    np.save(path, (np.random.default_rng(0).random((300, 6)) < 0.5).astype(np.uint8))
    return path


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# =========================================================================== resume exactness


def test_resume_keeps_the_minibatch_counter(chain, tmp_path):
    """The mask of minibatch i is mask_for_step(i): the counter is saved and taken over, so that
    the cycle through the bank carries on after a resume. 4 minibatches an epoch against a cycle
    of K * resample_every = 6: a resume that restarted the counter would use other masks."""
    cfg = TrainConfig(epochs=3, batch_size=150, resample_every=2, patience=0, lr=1e-2, engine="reference")
    config = MADEConfig(D=D, hidden=(16,), num_masks=3, seed=1, dtype="float64")
    assert (600 // cfg.batch_size) % (config.num_masks * cfg.resample_every) != 0

    straight = MADE(config)
    fit(straight, chain, cfg)

    def stop_after_1(row):
        if row["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(MADE(config), chain, cfg, out_dir=tmp_path, callback=stop_after_1)
    resumed, info = load_checkpoint(tmp_path)
    assert info["state"]["step"] == 4 and mask_for_step(4, 3, 2) == 2
    fit(resumed, chain, cfg, out_dir=tmp_path, resume_state=info)
    for name, p in straight.state_dict().items():
        np.testing.assert_allclose(resumed.state_dict()[name], p, rtol=0, atol=1e-12, err_msg=name)
    assert load_checkpoint(tmp_path)[1]["state"]["step"] == 12


def test_load_checkpoint_best_gives_the_best_weights(chain, tmp_path):
    """An overfitting run interrupted after its best epoch: best=True loads the best weights,
    whose validation NLL is the recorded best; the latest weights are worse."""
    tiny = Dataset("tiny", chain.train[:20], chain.valid, chain.test, 2, None)
    cfg = TrainConfig(epochs=200, lr=3e-2, patience=0, batch_size=10, engine="reference")

    def stop_when_overfitting(row):
        if row["epoch"] >= 5 and not row["best"]:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(MADE(MADEConfig(D=D, hidden=(200,), seed=0)), tiny, cfg, out_dir=tmp_path,
            callback=stop_when_overfitting)
    best_model, info = load_checkpoint(tmp_path, best=True)
    state, rows = info["state"], info["history"]["rows"]
    assert state["best_epoch"] < state["epoch"] == rows[-1]["epoch"]
    for name, p in best_model.state_dict().items():
        assert np.array_equal(p, info["best_params"][name]), name
    best_nll = evaluate(best_model, chain.valid)["nll"]
    assert best_nll == pytest.approx(state["best_valid_nll"], rel=1e-12)
    latest_nll = evaluate(load_checkpoint(tmp_path)[0], chain.valid)["nll"]
    assert latest_nll == pytest.approx(rows[-1]["valid_nll"], rel=1e-12)
    assert latest_nll > best_nll
    with pytest.raises(CheckpointError, match="loaded with its best weights"):  # a resume needs the last ones
        fit(best_model, tiny, cfg, out_dir=tmp_path, resume_state=info)


# =========================================================================== one writer per folder


def test_a_held_folder_refuses_a_second_writer(chain, tmp_path, monkeypatch):
    """fit(out_dir) and made-np train refuse a folder that another thread holds, naming it and
    the holder's pid, before anything is loaded; once it is free, both may write there."""
    folder = tmp_path / "run"
    held, release = threading.Event(), threading.Event()

    def holder():
        with run_lock(folder):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
        with pytest.raises(RunLockedError) as e:
            fit(MADE(MADEConfig(D=D, hidden=(8,))), chain, TrainConfig(epochs=1), out_dir=folder)
        assert e.value.pid == os.getpid() and str(folder) in str(e.value)

        def no_data(*args, **kwargs):
            raise AssertionError("the data were loaded before the run folder was held")

        monkeypatch.setattr("made_np.cli.train.load_dataset", no_data)
        user_error(run("train", "--out", folder), "--out", str(folder), f"pid {os.getpid()}")
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]
    finally:
        release.set()
        thread.join()
    assert not folder.exists()  # made by the lock, left empty: removed
    fit(MADE(MADEConfig(D=D, hidden=(8,))), chain, TrainConfig(epochs=1), out_dir=folder)
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.csv", "model.npz"]


def test_two_trainings_into_one_folder_and_a_real_ctrl_c(tmp_path, small_npy):
    """The bug of issue 12: a second `made-np train --out` into the folder of a running one
    overwrote it (the 'already holds a run' check ran before the first save). Now it fails at
    once naming the other run's pid; Ctrl-C (SIGINT) then stops the first with exit 130."""
    out = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-m", "made_np", "train", "--dataset", str(small_npy), "--out", str(out), "--hidden", "8", "--num-masks", "16",
         "--epochs", "100000", "--patience", "0", "-q"],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # generous: on a loaded machine the first epoch can take long

        def holder_pid():  # written once the lock is taken (the file exists a moment before)
            try:
                return json.loads((out / ".lock").read_text())["pid"]
            except (OSError, ValueError):
                return None

        while holder_pid() != child.pid and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert child.poll() is None, child.communicate()
        second = run("train", "--dataset", small_npy, "--out", out, "--hidden", 8, "--epochs", 1)
        user_error(second, "--out", str(out), f"pid {child.pid}")
        while not (out / "model.npz").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (out / "model.npz").exists(), "the first epoch was not saved within the deadline"
    finally:
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "Traceback" not in err and f"made-np train --resume {out}" in err
    state = read_checkpoint_meta(out)["state"]
    assert f"epoch {state['epoch']} is saved in {out / 'model.npz'}" in err and not state["finished"]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "model.npz"]  # lock released


KILLED_WRITER = r"""
import os, signal, sys
import numpy as np
from made_np import checkpoint
from made_np.model import MADE, MADEConfig
from made_np.runfolder import run_lock

folder = sys.argv[1]
model = MADE(MADEConfig(D=4, hidden=(6,)))
with run_lock(folder):
    checkpoint.save_checkpoint(os.path.join(folder, "model.npz"), model)
    real_savez = np.savez

    def savez_then_die(f, **arrays):
        real_savez(f, **arrays)
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # killed half-way through the atomic write

    checkpoint.np.savez = savez_then_die
    model.layers[0].W += 1.0
    checkpoint.save_checkpoint(os.path.join(folder, "model.npz"), model)
"""


def test_ctrl_c_during_the_checkpoint_write_still_writes_its_metrics(chain, tmp_path, monkeypatch):
    """A SIGINT that lands while the checkpoint is written (CI caught one between the two files:
    model.npz without metrics.csv) waits until metrics.csv is written too; then it interrupts."""
    real_save = checkpoint_mod.save_checkpoint

    def save_then_ctrl_c(*args, **kwargs):
        out = real_save(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # a real signal, between the two writes
        assert not (tmp_path / "run" / "metrics.csv").exists()  # not raised here: held back
        return out

    monkeypatch.setattr("made_np.train.save_checkpoint", save_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        fit(MADE(MADEConfig(D=D, hidden=(8,))), chain, TrainConfig(epochs=5, batch_size=50), out_dir=tmp_path / "run")
    meta = read_checkpoint_meta(tmp_path / "run")
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert meta["state"]["epoch"] == 1 and len(rows) == 2 and rows[1].startswith("1,")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_interrupts_deferred_outside_the_main_thread_runs_the_block_as_is():
    done = []

    def body():
        with runfolder.interrupts_deferred():
            done.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert done == [signal.default_int_handler]


def test_an_error_inside_interrupts_deferred_goes_up_as_it_is():
    with pytest.raises(OSError, match="disk full"):
        with runfolder.interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            raise OSError(errno.ENOSPC, "disk full")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_atomic_outputs_write_through_links_and_keep_permissions(tmp_path, monkeypatch):
    target, link = tmp_path / "target.npy", tmp_path / "link.npy"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    link.symlink_to(target)
    with runfolder.atomic_file(link, "wb") as f:
        f.write(b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"  # the link kept, its target written
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.npy", "target.npy"]
    monkeypatch.setattr(runfolder.os, "access", lambda path, mode: False)  # not writable (root may write all)
    with pytest.raises(PermissionError) as err:
        with runfolder.atomic_file(link, "wb") as f:
            f.write(b"newer")
    assert err.value.filename == str(link) and target.read_bytes() == b"new"
    monkeypatch.undo()
    loop, fifo, to_fifo = tmp_path / "loop.npy", tmp_path / "fifo", tmp_path / "to_fifo.npy"
    loop.symlink_to(loop)
    os.mkfifo(fifo)
    to_fifo.symlink_to(fifo)
    for name, message in ((loop, "a loop of symbolic links"), (to_fifo, "which is not a regular file")):
        with pytest.raises(OSError, match=message):  # a rename would replace the pipe (or /dev/null) itself
            with runfolder.atomic_file(name, "wb") as f:
                f.write(b"x")
    assert fifo.exists() and not fifo.is_file() and loop.is_symlink()


def test_figure_temporary_files_of_a_killed_run_are_removed(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    for name in (".loss.png-abc.tmp", ".samples.png-def.tmp", ".model.npz-ghi.tmp"):
        (folder / name).write_bytes(b"partial")
    with run_lock(folder):
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]


def test_fit_refuses_a_resume_state_that_is_not_the_info_dict(chain, tmp_path):
    model = MADE(MADEConfig(D=D, hidden=(8,)))
    fit(model, chain, TrainConfig(epochs=1), out_dir=tmp_path / "run")
    with pytest.raises(CheckpointError, match="info dict that load_checkpoint returns .its second value., got tuple"):
        fit(model, chain, TrainConfig(epochs=2), out_dir=tmp_path / "run",
            resume_state=load_checkpoint(tmp_path / "run"))


def test_a_fit_refused_on_its_data_leaves_the_model_as_it_was(chain):
    model = MADE(MADEConfig(D=D, hidden=(8,), context=3))
    before = model.state_dict()
    with pytest.raises(ValueError, match="no train context"):
        fit(model, chain, TrainConfig(epochs=1))  # the chain has no context
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_a_writer_killed_mid_write_loses_nothing(tmp_path):
    """A process killed while writing its checkpoint leaves the previous one readable, a
    temporary file and its lock file; the next run takes the stale lock over and removes it."""
    folder = tmp_path / "run"
    child = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(folder)], env=subprocess_env(),
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    names = sorted(p.name for p in folder.iterdir())
    assert ".lock" in names and "model.npz" in names
    assert [n for n in names if re.fullmatch(r"\.model\.npz-\w+\.tmp", n)], names
    model, _ = load_checkpoint(folder)  # the previous checkpoint, intact
    assert np.array_equal(model.state_dict()["W0"], MADE(MADEConfig(D=4, hidden=(6,))).state_dict()["W0"])
    with run_lock(folder):  # the killed run's lock is free: taken over, its temporary file removed
        assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
        assert sorted(p.name for p in folder.iterdir()) == [".lock", "model.npz"]
    assert sorted(p.name for p in folder.iterdir()) == ["model.npz"]


# =========================================================================== outputs checked first


def test_unwritable_out_is_refused_before_the_data_are_loaded(tmp_path, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("the data were loaded before --out was checked")

    monkeypatch.setattr("made_np.cli.train.load_dataset", no_data)
    (tmp_path / "file").write_text("not a folder")
    user_error(run("train", "--out", tmp_path / "file" / "run"), "--out", str(tmp_path / "file"), "not a folder")
    user_error(run("train", "--out", tmp_path / "file"), "--out", "is a file")

    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        if os.geteuid() == 0:  # root writes anywhere: make the folder look read-only
            real_access = os.access
            monkeypatch.setattr(runfolder.os, "access", lambda p, mode: real_access(p, mode) and not (
                Path(p) == read_only / "run" and mode & os.W_OK))
            (read_only / "run").mkdir()
        user_error(run("train", "--out", read_only / "run"), "--out", str(read_only / "run"), "Permission denied")
    finally:
        read_only.chmod(0o755)
    with pytest.raises(RunFolderError, match="not a folder"):
        fit(MADE(MADEConfig(D=D)), None, TrainConfig(epochs=1), out_dir=tmp_path / "file" / "x")


@pytest.mark.parametrize("where", ["loading the data", "before the first epoch"])
def test_ctrl_c_before_anything_is_saved_promises_nothing(tmp_path, monkeypatch, where, small_npy):
    """Ctrl-C before a checkpoint exists: exit 130, 'nothing was saved', no --resume advice,
    and no empty run folder left. The path printed is the path written (~ expanded)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    seen = []

    def interrupt(*args, out_dir=None, **kwargs):
        seen.append(out_dir)
        assert (tmp_path / "run" / ".lock").is_file()  # held from before the data are loaded
        raise KeyboardInterrupt

    target = "made_np.cli.train.load_dataset" if where == "loading the data" else "made_np.cli.train.fit"
    monkeypatch.setattr(target, interrupt)
    result = run("train", "--dataset", small_npy, "--out", "~/run", "--hidden", 8)
    assert result.exit_code == 130, result.output
    assert "nothing was saved" in result.stderr and "--resume" not in result.output
    assert "Traceback" not in result.output
    if where != "loading the data":
        assert seen == [tmp_path / "run"] and f"writing {tmp_path / 'run'}\n" in result.stdout
    assert not (tmp_path / "run").exists() and not (tmp_path / "~").exists()


# =========================================================================== Ctrl-C while finishing


@pytest.mark.parametrize("stage", ["evaluation", "plotting"])
def test_ctrl_c_while_writing_the_results_then_resume_writes_them(tmp_path, monkeypatch, stage, small_npy):
    """Training finished, Ctrl-C during the test evaluation (or the figures): exit 130, the
    checkpoint is finished but has no results; --resume writes them without training."""
    out = tmp_path / "run"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    target = "made_np.cli.train.evaluate_both" if stage == "evaluation" else "made_np.plots.plot_sample_grid"
    with monkeypatch.context() as m:
        m.setattr(target, interrupt)
        first = run("train", "--dataset", small_npy, "--out", out, "--hidden", 8, "--epochs", 2)
    assert first.exit_code == 130, first.output
    assert "while writing the results" in first.stderr and f"made-np train --resume {out}" in first.stderr
    meta = read_checkpoint_meta(out)
    assert meta["state"]["finished"] and meta["results"] is None
    assert (out / "results.json").exists() == (stage == "plotting")
    weights = load_checkpoint(out)[0].state_dict()

    def no_training(*args, **kwargs):
        raise AssertionError("--resume trained a finished run again")

    monkeypatch.setattr("made_np.cli.train.fit", no_training)
    second = run("train", "--resume", out)
    assert second.exit_code == 0, second.output
    assert "writing its results" in second.output and not re.search(r"^epoch ", second.output, re.M)
    assert {"results.json", "loss.png", "samples.png"} <= {p.name for p in out.iterdir()}
    results = json.loads((out / "results.json").read_text())
    assert read_checkpoint_meta(out)["results"] == results and np.isfinite(results["single"]["nll"])
    for name, p in load_checkpoint(out)[0].state_dict().items():
        assert np.array_equal(p, weights[name]), name
    user_error(run("train", "--resume", out), str(out / "model.npz"), "nothing to resume")
    assert no_temporary_files(out)


def test_resume_trains_a_finished_run_on_with_more_epochs(tmp_path, small_npy):
    """Issue 11: --resume DIR --epochs N with N above the epochs trained continues a finished
    run from its weights and optimiser state; N not above says so in one line."""
    out = tmp_path / "run"
    assert run("train", "--dataset", small_npy, "--out", out, "--hidden", 8, "--epochs", 2, "-q").exit_code == 0
    user_error(run("train", "--resume", out, "--epochs", 2), "--epochs 2", "already trained 2 epochs")
    before = load_checkpoint(out)[1]
    early = Path(shutil.copytree(out, tmp_path / "early"))  # as if its patience had stopped it after epoch 2
    update_checkpoint_meta(early, state={**before["state"], "best_epoch": 1})
    user_error(run("train", "--resume", early, "--epochs", 3, "--patience", 1),
               f"--patience 1: the run of {early / 'model.npz'} stopped early at epoch 2, 1 epochs after its best "
               "epoch 1; give --patience more than 1 (or 0) to train it on")
    more = run("train", "--resume", out, "--epochs", 3)
    assert more.exit_code == 0, more.output
    assert re.search(r"^epoch +3 ", more.output, re.M) and not re.search(r"^epoch +[12] ", more.output, re.M)
    _, info = load_checkpoint(out)
    assert [r["epoch"] for r in info["history"]["rows"]] == [1, 2, 3]
    assert info["state"]["finished"] and info["results"] is not None
    assert int(info["optimizer"]["t"]) == int(before["optimizer"]["t"]) + 3  # 240 rows: 3 minibatches an epoch
    assert (out / "metrics.csv").read_text().count("\n") == 4


def test_finished_run_blocker():
    state = {"epoch": 10, "best_epoch": 4}
    assert finished_run_blocker(state, TrainConfig(epochs=12, patience=0)) is None
    assert finished_run_blocker(state, TrainConfig(epochs=12, patience=7)) is None
    field, why = finished_run_blocker(state, TrainConfig(epochs=10, patience=0))
    assert field == "epochs" and "trained 10 epochs" in why
    field, why = finished_run_blocker(state, TrainConfig(epochs=20, patience=6))
    assert field == "patience" and "stopped early" in why


# =========================================================================== divergence


def test_divergence_keeps_the_last_good_checkpoint(chain, tmp_path):
    """A NaN loss in epoch 3 stops fit with DivergenceError: the checkpoint of epoch 2 is not
    overwritten, and the model holds its (finite) best weights again."""
    model = MADE(MADEConfig(D=D, hidden=(16,), seed=2))

    def poison_after_2(row):
        if row["epoch"] == 2:
            model.params[0][...] = np.nan

    cfg = TrainConfig(epochs=5, patience=0, engine="reference")
    with pytest.raises(DivergenceError) as e:
        fit(model, chain, cfg, out_dir=tmp_path, callback=poison_after_2)
    assert (e.value.epoch, e.value.saved_epoch, e.value.what) == (3, 2, "training loss")
    assert "epoch 3" in str(e.value) and "smaller learning rate" in str(e.value)
    assert all(np.isfinite(p).all() for p in model.params)
    saved, info = load_checkpoint(tmp_path)
    assert info["state"]["epoch"] == 2 and not info["state"]["finished"]
    assert all(np.isfinite(p).all() for p in saved.state_dict().values())
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3 and no_temporary_files(tmp_path)


def test_cli_divergence_exits_3_and_writes_no_nan(tmp_path, monkeypatch, small_npy):
    diverged = run("train", "--dataset", small_npy, "--out", tmp_path / "a", "--hidden", 8, "--epochs", 3,
                   "--lr", "1e30")
    assert diverged.exit_code == 3, diverged.output
    one_error_line(diverged.stderr, "diverged in epoch 1", "nothing was saved", "smaller --lr")
    assert not (tmp_path / "a").exists()  # no NaN checkpoint, no results.json
    user_error(run("train", "--dataset", small_npy, "--out", tmp_path / "b", "--lr", "inf"), "--lr", "finite")
    decayed = run("train", "--dataset", small_npy, "--out", tmp_path / "wd", "--hidden", 8, "--epochs", 2,
                  "--weight-decay", "1e300")  # the rate is fine: the message names the decay too
    assert decayed.exit_code == 3, decayed.output
    one_error_line(decayed.stderr, "smaller --lr (this one: 0.002) or --weight-decay (this one: 1e+300)")
    frozen = run("train", "--dataset", small_npy, "--out", tmp_path / "wd38", "--hidden", 8, "--epochs", 2,
                 "--weight-decay", "1e38")  # a finite loss, but Adam's v overflows: it used to be exit 2
    assert frozen.exit_code == 3, frozen.output
    one_error_line(frozen.stderr, "diverged in epoch 1: the optimizer state v0 is inf", "--weight-decay")
    frozen_model = MADE(MADEConfig(D=D, hidden=(8,)))  # in Python without an output folder too
    with pytest.raises(DivergenceError, match="the optimizer state v0 is inf"):
        fit(frozen_model, chain_dataset(), TrainConfig(epochs=2, weight_decay=1e38))

    from made_np import train as train_mod

    real_fit = train_mod.fit

    def fit_poisoned_after_epoch_1(model, *args, callback=None, **kwargs):
        def cb(row):
            callback(row)
            if row["epoch"] == 1:
                model.params[0][...] = np.inf
        return real_fit(model, *args, callback=cb, **kwargs)

    monkeypatch.setattr("made_np.cli.train.fit", fit_poisoned_after_epoch_1)
    out = tmp_path / "c"
    later = run("train", "--dataset", small_npy, "--out", out, "--hidden", 8, "--epochs", 3, "--engine", "reference")
    assert later.exit_code == 3, later.output
    one_error_line(later.stderr, "diverged in epoch 2", f"{out / 'model.npz'} keeps epoch 1", "--lr")
    saved, info = load_checkpoint(out)
    assert info["state"]["epoch"] == 1 and all(np.isfinite(p).all() for p in saved.state_dict().values())
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "model.npz"]


def test_a_non_finite_test_nll_writes_no_results(tmp_path, monkeypatch, small_npy):
    def nan_results(*args, **kwargs):
        r = {"nll": float("nan"), "stderr": float("nan")}
        return {"single": r, "ensemble": None}

    monkeypatch.setattr("made_np.cli.train.evaluate_both", nan_results)
    out = tmp_path / "run"
    result = run("train", "--dataset", small_npy, "--out", out, "--hidden", 8, "--epochs", 1, "-q")
    assert result.exit_code == 3, result.output
    one_error_line(result.stderr, "test NLL", "nan", "no results written")
    assert not (out / "results.json").exists() and read_checkpoint_meta(out)["results"] is None


# =========================================================================== full disk


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, small_npy):
    out = tmp_path / "run"
    real_savez, calls = np.savez, []

    def savez_disk_full(f, **arrays):
        calls.append(1)
        if len(calls) >= 2:
            f.write(b"PK part of a file")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_savez(f, **arrays)

    with monkeypatch.context() as m:
        m.setattr(checkpoint_mod.np, "savez", savez_disk_full)
        full = run("train", "--dataset", small_npy, "--out", out, "--hidden", 8, "--epochs", 3)
    assert full.exit_code == 2, full.output
    one_error_line(full.stderr, f"cannot write {out / 'model.npz'}", os.strerror(errno.ENOSPC),
                   "last checkpoint is kept", f"--resume {out}")
    _, info = load_checkpoint(out)
    assert info["state"]["epoch"] == 1 and sorted(p.name for p in out.iterdir()) == ["metrics.csv", "model.npz"]
    again = run("train", "--resume", out, "-q")  # space is back: nothing was lost
    assert again.exit_code == 0, again.output
    assert [r["epoch"] for r in load_checkpoint(out)[1]["history"]["rows"]] == [1, 2, 3]


@pytest.mark.parametrize("args,out_name,module,writer", [
    (("sample", "-n", 3), "s.npy", "made_np.cli.sample", "np.save"),
    (("sample", "-n", 3), "s.png", "made_np.plots", "Figure.savefig"),
    (("masks",), "m.npz", "made_np.cli.masks", "np.savez"),
    (("complete", "--observed", "PREFIX", "-n", 2), "c.npz", "made_np.cli.complete", "np.savez"),
])
def test_a_failed_output_write_keeps_the_earlier_file(unfinished, tmp_path, monkeypatch, args, out_name, module,
                                                      writer):
    """The outputs of sample, masks and complete (and every figure) go through a temporary file:
    a full disk half-way through leaves the previous file of that name as it was."""
    out = tmp_path / out_name
    command, *rest = args
    if "PREFIX" in rest:  # the first half of the natural ordering observed
        np.save(tmp_path.parent / "prefix.npy", np.array([1, 1, 1, 0, 0, 0]))
        rest[rest.index("PREFIX")] = tmp_path.parent / "prefix.npy"
    assert run(command, unfinished, *rest, "--out", out).exit_code == 0
    before = out.read_bytes()

    def disk_full(self_or_f, *a, **k):
        f = a[0] if writer == "Figure.savefig" else self_or_f
        f.write(b"part of a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    owner, name = writer.split(".")
    target = __import__(module, fromlist=["_"])
    with monkeypatch.context() as m:
        m.setattr(getattr(target, owner) if owner != "np" else target.np, name, disk_full)
        failed = run(command, unfinished, *rest, "--seed", 1, "--out", out) if command != "masks" \
            else run(command, unfinished, "--index", 0, "--out", out)
    one_error_line(failed.stderr, f"--out {out}: cannot write", os.strerror(errno.ENOSPC),
                   "earlier file of that name is kept")
    assert failed.exit_code == 2 and out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [out_name]  # no temporary file left


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="no file size limits here")
def test_a_file_size_limit_is_one_line(tmp_path, small_npy):
    """`ulimit -f`: writing past it raises SIGXFSZ, which kills a process by default; made-np
    train ignores it, so the write fails with EFBIG and is reported in one line."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))  # below a checkpoint's size

    out = tmp_path / "run"
    child = subprocess.run([sys.executable, "-m", "made_np", "train", "--dataset", str(small_npy), "--out", str(out),
                            "--hidden", "8", "--num-masks", "16", "--epochs", "2", "-q"], env=subprocess_env(), preexec_fn=limit,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 2, child.stderr
    one_error_line(child.stderr, f"cannot write {out / 'model.npz'}", os.strerror(errno.EFBIG))
    assert not out.exists()  # nothing was saved


# =========================================================================== resume state


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory, small_npy):
    """An unfinished run (D = 6, 8 hidden units, Adam), interrupted after epoch 2 of 3."""
    from made_np import train as train_mod

    out = tmp_path_factory.mktemp("faults") / "run"
    real_fit = train_mod.fit

    def interrupted(*args, callback=None, **kwargs):
        def cb(row):
            callback(row)
            if row["epoch"] == 2:
                raise KeyboardInterrupt
        return real_fit(*args, callback=cb, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr("made_np.cli.train.fit", interrupted)
        assert run("train", "--dataset", small_npy, "--out", out, "--hidden", 8, "--epochs", 3).exit_code == 130
    return out


def test_an_unfinished_run_resumed_with_fewer_epochs_than_it_ran_is_refused(unfinished, tmp_path):
    """--epochs 1 on a run saved at epoch 2 used to finish it, recording a 1-epoch run of 2 epochs;
    --epochs 2 ends it at its saved epoch (its results written, no training)."""
    out = Path(shutil.copytree(unfinished, tmp_path / "run"))
    user_error(run("train", "--resume", out, "--epochs", 1), "epochs = 1 (--epochs) is fewer than the 2 epochs",
               "give at least 2")
    assert not read_checkpoint_meta(out)["state"]["finished"]
    ended = run("train", "--resume", out, "--epochs", 2)
    assert ended.exit_code == 0, ended.output
    meta = read_checkpoint_meta(out)
    assert meta["state"]["finished"] and meta["state"]["epoch"] == 2 and meta["results"] is not None


def rewrite(src: Path, dst: Path, arrays=None, meta=None, drop=()) -> Path:
    """A copy of checkpoint ``src`` in folder ``dst`` with arrays replaced or dropped and the
    JSON config changed by ``meta(config)``."""
    with np.load(src / "model.npz") as z:
        entries = {k: z[k] for k in z.files if k not in drop}
    config = json.loads(str(entries["config"]))
    if meta is not None:
        meta(config)
    entries["config"] = np.array(json.dumps(config))
    entries.update(arrays or {})
    dst.mkdir()
    np.savez(dst / "model.npz", **entries)
    return dst


CORRUPTIONS = {
    "changed optimiser": (dict(meta=lambda c: c["train"].update(optimizer="sgd")), "'optimizer'"),
    "string epoch": (dict(meta=lambda c: c["state"].update(epoch="2")), "'state.epoch' is '2'"),
    "null best NLL": (dict(meta=lambda c: c["state"].update(best_valid_nll=None)), "'state.best_valid_nll' is null"),
    "string finished": (dict(meta=lambda c: c["state"].update(finished="no")), "'state.finished'"),
    "wrong-shaped buffer": (dict(arrays={"opt_m0": np.zeros((3, 4), np.float32)}),
                            "'opt_m0' has shape (3, 4), expected (6, 8)"),
    "missing buffer": (dict(drop=("opt_v1",)), "'opt_v1' is missing"),
    "string opt_t": (dict(arrays={"opt_t": np.array("6")}), "'opt_t' is <U1"),
    "NaN buffer": (dict(arrays={"opt_v0": np.full((6, 8), np.nan, np.float32)}), "'opt_v0' has 48 NaN/inf values"),
    "wrong-shaped best": (dict(arrays={"best_W0": np.zeros((3, 4), np.float32)}),
                          "'best_W0' has shape (3, 4)"),
    "history cut": (dict(meta=lambda c: c["history"].update(rows=c["history"]["rows"][:1])), "'history.rows'"),
    "epoch past the limit": (dict(meta=lambda c: c["state"].update(epoch=10**30)),
                             "'state.epoch' is 1000000000000000000000000000000, more than the 10000000 epochs"),
    "negative second moment": (dict(arrays={"opt_v0": -np.ones((6, 8), np.float32)}),
                               "'opt_v0' holds negative values"),
    "best epoch after the last": (dict(meta=lambda c: c["state"].update(best_epoch=5)),
                                  "'state.best_epoch' is 5, after the run's epoch 2"),
    "another optimiser's buffer": (dict(arrays={"opt_q0": np.zeros((6, 8), np.float32)}),
                                   "'opt_q0' is not part of the state of optimizer 'adam'"),
    "negative opt_t": (dict(arrays={"opt_t": np.array(-1)}), "'opt_t' is -1, expected an integer >= 0"),
    "zero opt_lr": (dict(arrays={"opt_lr": np.array(0.0)}), "'opt_lr' is 0.0, expected a finite number > 0"),
    "boolean buffer": (dict(arrays={"opt_m0": np.zeros((6, 8), bool)}),
                       "'opt_m0' has dtype bool, expected floating point numbers"),
    "rows not a list": (dict(meta=lambda c: c["history"].update(rows=5)), "'history.rows' is 5, expected a list"),
    "rows not epochs": (dict(meta=lambda c: c["history"].update(rows=[1, 2])), "'history.rows' is a list of 2 items"),
    "a row's NLL a string": (dict(meta=lambda c: c["history"]["rows"][0].update(train_nll="x")),
                             "'history.rows[0].train_nll' is 'x', expected a number"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_resume_state_is_refused_before_training(unfinished, tmp_path, monkeypatch, name):
    """Each bad entry: one line naming the file and the entry, before the data or any step."""
    changes, fragment = CORRUPTIONS[name]
    bad = rewrite(unfinished, tmp_path / "bad", **changes)

    def never(*args, **kwargs):
        raise AssertionError("the resume got past its checks")

    monkeypatch.setattr("made_np.cli.train.load_split", never)
    monkeypatch.setattr("made_np.train._Run.steps", never)
    user_error(run("train", "--resume", bad), str(bad / "model.npz"), f"entry {fragment}")
    assert sorted(p.name for p in bad.iterdir()) == ["model.npz"]  # nothing written, lock released


@contextlib.contextmanager
def stopped_after_the_first_epoch():
    """``made-np train`` inside the block is stopped by a Ctrl-C after its first epoch (exit 130)."""
    from made_np.train import fit as real_fit

    def interrupted(*args, callback=None, **kwargs):
        def cb(row):
            callback(row)
            raise KeyboardInterrupt
        return real_fit(*args, callback=cb, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr("made_np.cli.train.fit", interrupted)
        yield


@pytest.mark.parametrize("change", ["one value", "fewer rows"])
def test_a_data_file_changed_since_training_is_refused(tmp_path, change):
    """Resume and evaluate read the run's data file again: a file changed since (one value
    flipped, or rows dropped) is refused in one line, not trained or scored on silently."""
    data = tmp_path / "data.npy"
    x = (np.random.default_rng(3).random((200, 6)) < 0.4).astype(np.uint8)
    np.save(data, x)
    out = tmp_path / "run"
    with stopped_after_the_first_epoch():
        assert run("train", "--dataset", data, "--out", out, "--hidden", 8, "--epochs", 3).exit_code == 130
    assert run("evaluate", out).exit_code == 0  # the same file: fine
    if change == "one value":
        x[:, 2] ^= 1
        fragment = "differs from the data the run was trained on: the train, valid and test splits (content sha256)"
    else:
        x = x[:150]
        fragment = "has train/valid/test 120/15/15 rows, but the run was trained on 160/20/20"
    np.save(data, x)
    before = (out / "model.npz").read_bytes()
    for args in (("train", "--resume", out), ("evaluate", out)):
        user_error(run(*args), str(out / "model.npz"), f"the data set {data}", fragment,
                   "restore the data it was trained on")
    assert (out / "model.npz").read_bytes() == before


def test_a_context_file_changed_since_training_is_refused(tmp_path):
    """The context rows of an .npz (--context file) are checked as the values are: one test
    context changed since training is refused on resume and evaluate, in one line."""
    rng = np.random.default_rng(4)
    splits = {k: (rng.random((n, 5)) < 0.4).astype(np.uint8) for k, n in (("train", 60), ("valid", 10), ("test", 10))}
    contexts = {f"{k}_context": rng.normal(size=(len(v), 2)) for k, v in splits.items()}
    splits = {f"{k}_data": v for k, v in splits.items()}
    data, out = tmp_path / "rows.npz", tmp_path / "run"
    np.savez(data, **splits, **contexts)
    with stopped_after_the_first_epoch():
        result = run("train", "--dataset", data, "--context", "file", "--out", out, "--hidden", 8, "--epochs", 3)
        assert result.exit_code == 130, result.output
    assert run("evaluate", out).exit_code == 0  # the same file: fine
    contexts["test_context"][3, 1] += 0.5
    np.savez(data, **splits, **contexts)
    before = (out / "model.npz").read_bytes()
    for args in (("train", "--resume", out), ("evaluate", out)):
        user_error(run(*args), str(out / "model.npz"), f"the data set {data}",
                   "differs from the data the run was trained on: the context of the test split (content sha256)",
                   "restore the data it was trained on")
    assert (out / "model.npz").read_bytes() == before


def test_fit_refuses_to_resume_on_other_data(unfinished):
    """The Python API's resume checks the data too (the CLI's check is the same function)."""
    from made_np.data import DataError, load_dataset

    model, info = load_checkpoint(unfinished)
    ds = load_dataset(info["dataset"]["spec"])
    flipped = Dataset(ds.name, 1 - ds.train, ds.valid, ds.test, ds.classes, ds.image_shape)
    with pytest.raises(DataError, match="differs from the data the run was trained on: the train split"):
        fit(model, flipped, info["train_config"], resume_state=info)


def test_check_resume_state_in_python(unfinished, tmp_path):
    model, info = load_checkpoint(unfinished)
    cfg = info["train_config"]
    check_resume_state(model, cfg, info)  # the genuine state passes
    with pytest.raises(CheckpointError, match="entry 'optimizer' is 'adam'.*'sgd'"):
        check_resume_state(model, TrainConfig.from_dict({**cfg.to_dict(), "optimizer": "sgd"}), info)
    partial = rewrite(unfinished, tmp_path / "partial", drop=("best_b0",))
    with pytest.raises(CheckpointError, match="entry 'best_b0'"):
        load_checkpoint(partial)
    with pytest.raises(CheckpointError, match="no training state"):
        check_resume_state(model, cfg, {**info, "state": None})


def test_a_cli_resume_checks_the_resume_state_once(unfinished, tmp_path, monkeypatch):
    """made-np train --resume checked the state before loading the data, then fit checked it all again."""
    out = Path(shutil.copytree(unfinished, tmp_path / "run"))
    checked, real = [], checkpoint_mod._check_array
    monkeypatch.setattr(checkpoint_mod, "_check_array", lambda bad, entry, *a: checked.append(entry) or real(bad, entry, *a))
    model, info = load_checkpoint(out)
    check_resume_state(model, info["train_config"], info)
    once, checked[:] = sorted(checked), []
    assert "opt_m0" in once and "best_W0" in once
    assert run("train", "--resume", out, "-q").exit_code == 0
    assert sorted(checked) == once


def test_loading_a_checkpoint_checks_its_weights_once(unfinished, monkeypatch):
    """The reader checks every entry as it reads it; the model took them without checking again."""
    import made_np.model as model_mod

    calls, real = [], model_mod.check_state
    monkeypatch.setattr(model_mod, "check_state", lambda *a: calls.append(a) or real(*a))
    with np.load(unfinished / "model.npz") as stored:
        for best in (False, True):
            model, _ = load_checkpoint(unfinished, best=best)
            for name, p in model.state_dict().items():
                assert np.array_equal(p, stored["best_" * best + name]), name
    assert calls == []
    model.load_state_dict(model.state_dict())  # the public load checks what a caller gives
    assert len(calls) == 1


@pytest.mark.parametrize("args", [("train", "--resume", ""), ("evaluate", " "), ("train", "--dataset", "2d",
                                                                                 "--dataset-path", ""),
                                  ("sample", "run", "--out", "")])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(args, tmp_path, monkeypatch):
    """`--resume "$RUN"` with RUN unset started a whole new run in runs/."""
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    user_error(result, "an empty name; give a path")
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_an_unwritable_standard_output_does_not_stop_a_training(tmp_path, small_npy):
    """`made-np train ... > /dev/full` (or `| head`) used to end the run with exit 2 and the
    error blamed on the run folder; the run now goes on silently and writes all its files."""
    out = tmp_path / "run"
    with open("/dev/full", "w") as full:
        child = subprocess.run([sys.executable, "-m", "made_np", "train", "--dataset", str(small_npy), "--out",
                                str(out), "--hidden", "8", "--num-masks", "16", "--epochs", "3"], env=subprocess_env(), stdout=full,
                               stderr=subprocess.PIPE, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    assert child.stderr.strip() == ("made-np: standard output cannot be written (No space left on device); "
                                    "going on without printing")
    assert read_checkpoint_meta(out)["results"] is not None and (out / "samples.png").exists()


def test_a_lock_file_that_is_a_folder_is_named(tmp_path):
    (tmp_path / "run" / ".lock").mkdir(parents=True)
    with pytest.raises(RunFolderError, match=r"cannot write its lock file \.lock \(Is a directory\); remove that folder"):
        with run_lock(tmp_path / "run"):
            pass


# =========================================================================== issue 21


def test_a_weight_finite_in_float64_but_not_in_the_models_dtype_is_refused(unfinished, tmp_path):
    """1e300 in a float64 W0 of a float32 model passed the finiteness check and became inf in the cast:
    evaluate printed "nan ± nan" with exit 0 (--json: NaN, not JSON) and sample wrote its output."""
    w = np.load(unfinished / "model.npz")["W0"].astype(np.float64)
    w[0, 0] = 1e300
    bad = rewrite(unfinished, tmp_path / "bad", arrays={"W0": w})
    with pytest.raises(CheckpointError, match="entry 'W0' has 1 NaN/inf value in the model's float32"):
        load_checkpoint(bad)
    for args in (("evaluate", bad, "--json"), ("sample", bad, "--out", tmp_path / "s.npy"),
                 ("complete", bad, "--occlude", "random:0.5", "--out", tmp_path / "c.npz")):
        user_error(run(*args), "entry 'W0' has 1 NaN/inf value in the model's float32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]
    w[0, 0] = 1e30  # finite in float32: loads as before
    assert load_checkpoint(rewrite(unfinished, tmp_path / "good", arrays={"W0": w}))[0].params[0][0, 0] == np.float32(1e30)


def test_json_never_holds_nan(tmp_path):
    """results.json and --json are JSON: Python's NaN/Infinity are refused, naming the value's key."""
    results = {"split": "test", "single": {"nll": np.float32("nan"), "n": 3}, "rows": [1.0, float("inf")]}
    with pytest.raises(CheckpointError, match=r"results.json: not written: single.nll is nan, which JSON cannot hold"):
        runfolder.write_json(tmp_path / "results.json", results)
    assert not (tmp_path / "results.json").exists()
    with pytest.raises(CheckpointError, match=r"--json: not written: rows.1 is inf"):
        runfolder.json_text({"rows": [1.0, np.float64("inf")]}, "--json")
    assert json.loads(runfolder.json_text({"a": np.float32(0.5), "b": np.arange(2)}, "x")) == {"a": 0.5, "b": [0, 1]}


def test_evaluate_json_of_a_nan_result_is_one_line(unfinished, monkeypatch):
    import made_np.cli.evaluate as evaluate_cli

    nan = {"nll": float("nan"), "stderr": 0.0, "nll_per_dim": float("nan"), "stderr_per_dim": 0.0, "n": 2, "D": 6}
    monkeypatch.setattr(evaluate_cli, "evaluate_both", lambda *a, **k: {"single": nan, "ensemble": None})
    user_error(run("evaluate", unfinished, "--json"), "--json: not written: single.nll is nan")


def test_complete_png_of_two_variables_is_refused_before_anything_is_written(tmp_path):
    """On a 2-D run (D = 2, not images) --png failed in the histogram on the grid's NaN (missing) entries,
    a traceback after the .npz had been written."""
    data = tmp_path / "pairs.npy"
    np.save(data, np.random.default_rng(0).integers(0, 5, (300, 2)))
    assert run("train", "--dataset", data, "--hidden", 8, "--epochs", 1, "--out", tmp_path / "run", "-q").exit_code == 0
    out, png = tmp_path / "c.npz", tmp_path / "c.png"
    user_error(run("complete", tmp_path / "run", "--occlude", "random:0.5", "--out", out, "--png", png),
               f"--png {png}: the grid of completions draws images, and this run's data (D = 2) are not images")
    assert not out.exists() and not png.exists()
    assert run("complete", tmp_path / "run", "--occlude", "random:0.5", "--out", out).exit_code == 0
    assert np.load(out)["completions"].shape == (16, 8, 2)


def test_save_checkpoint_refuses_the_files_of_a_finished_run(chain, tmp_path):
    """The API's save_checkpoint replaced a finished run's model.npz when named (or its folder, its
    metrics.csv, a link to it): refused in one line, the run unchanged, as the CLI refuses outputs
    naming a run's files; the run's own writer (inside run_lock, as fit resuming) still saves."""
    from made_np import TrainConfig, fit
    from made_np.checkpoint import save_checkpoint
    from made_np.model import MADE, MADEConfig

    run_dir = tmp_path / "run"
    fit(MADE(MADEConfig(D=8, hidden=(8,))), chain, TrainConfig(epochs=1, batch_size=50), out_dir=run_dir)
    other = MADE(MADEConfig(D=8, hidden=(8,), seed=1))
    (tmp_path / "link.npz").symlink_to(run_dir / "model.npz")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    for path, fragment in [(run_dir / "model.npz", "is the model.npz of the run in"), (run_dir, "model.npz of the run"),
                           (run_dir / "metrics.csv", "is the metrics.csv of the run in"),
                           (tmp_path / "link.npz", "a link to .*, in the folder of another run")]:
        with pytest.raises(RunFolderError, match=fragment):
            save_checkpoint(path, other)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    assert save_checkpoint(run_dir / "other.npz", other).is_file()  # a new file beside a run is fine
    with run_lock(run_dir):  # its one writer replaces it
        save_checkpoint(run_dir, other)
    assert load_checkpoint(run_dir)[0].config.seed == 1


def test_save_checkpoint_refuses_a_run_another_process_is_training(tmp_path):
    """The API's save_checkpoint wrote over a live run's model.npz (its next epoch wrote over it
    again): it now takes the run folder's lock, refused while another process holds it; a folder
    names its model.npz, and a model that is not a MADE is named."""
    import subprocess
    import sys

    from made_np.checkpoint import save_checkpoint
    from made_np.model import MADE, MADEConfig
    from made_np.runfolder import RunLockedError

    model = MADE(MADEConfig(D=3, hidden=(4,)))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert save_checkpoint(run_dir, model) == run_dir / "model.npz"  # a folder: its model.npz
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from made_np.runfolder import run_lock\n"
                               f"with run_lock({str(run_dir)!r}):\n    print('held', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = (run_dir / "model.npz").read_bytes()
        with pytest.raises(RunLockedError):
            save_checkpoint(run_dir / "model.npz", model)
        assert (run_dir / "model.npz").read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(ValueError, match="model must be a made_np.MADE"):
        save_checkpoint(run_dir, (model, {}))
