"""No command writes another run's folder (issue 21): not through a symbolic link into it, and not
over its files (model.npz, metrics.csv, results.json, loss.png, samples.png). A run folder is a
folder holding a checkpoint model.npz; a command's own is the one it holds (train) or the folder of
its checkpoint (sample, complete, masks, density)."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error, run_cli as run

from made_np import runfolder
from made_np.checkpoint import update_checkpoint_meta
from made_np.runfolder import RunFolderError


pytestmark = pytest.mark.usefixtures("one_run_folder")  # conftest: one run, not the choice of two


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs, A and B, of a small binary data set (1 epoch, 4 hidden units)."""
    root = tmp_path_factory.mktemp("links")
    np.save(root / "bin.npy", (np.random.default_rng(0).random((60, 5)) < 0.4).astype(np.uint8))
    for name in ("A", "B"):
        r = run("train", "--dataset", root / "bin.npy", "--hidden", 4, "--epochs", 1, "--out", root / name, "-q")
        assert r.exit_code == 0, r.output
    return root


def contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_resume_through_a_link_to_another_runs_checkpoint_is_refused(runs, tmp_path):
    """C/model.npz -> B/model.npz: `train --resume C` rewrote B's checkpoint without B's lock."""
    b = shutil.copytree(runs / "B", tmp_path / "B")
    before = contents(b)
    (tmp_path / "C").mkdir()
    (tmp_path / "C" / "model.npz").symlink_to(b / "model.npz")
    one_line_error(run("train", "--resume", tmp_path / "C", "--epochs", 3),
                   f"--resume: {tmp_path / 'C' / 'model.npz'}: a link to {b / 'model.npz'}, in the folder of "
                   "another run; writing through it would change that run")
    assert contents(b) == before and sorted(p.name for p in (tmp_path / "C").iterdir()) == ["model.npz"]
    with pytest.raises(RunFolderError, match="in the folder of another run"):  # the library's writers alike
        update_checkpoint_meta(tmp_path / "C", results=None)
    assert contents(b) == before


@pytest.mark.parametrize("command,option,suffix,name", [
    ("masks", "--out", ".npz", "model.npz"), ("complete", "--out", ".npz", "model.npz"),
    ("complete", "--png", ".png", "loss.png"), ("sample", "--out", ".png", "samples.png"),
    ("sample", "--out", ".npy", "metrics.csv"), ("density", "--out", ".png", "samples.png"),
])
def test_outputs_never_write_over_or_into_another_run(runs, tmp_path, command, option, suffix, name):
    """`masks --out B/model.npz` (or a figure of B, or a link to a file of B) destroyed run B."""
    b = shutil.copytree(runs / "B", tmp_path / "B")
    before = contents(b)
    link = tmp_path / f"link{suffix}"
    link.symlink_to(b / name)
    args = {"sample": ("-n", 3), "complete": ("--occlude", "random:0.5", "--first", 2, "-n", 1)}.get(command, ())
    for out, why in ((b / name, f"is the {name} of the run in {b}"), (link, f"a link to {b / name}, in the folder "
                                                                           "of another run")):
        if out.suffix == suffix:  # B/metrics.csv is refused for its extension already
            one_line_error(run(command, runs / "A", *args, option, out), f"{option} {out}: {why}",
                           "would change that run")
    assert contents(b) == before


def test_a_commands_own_run_and_plain_files_stay_writable(runs, tmp_path):
    """A new file in the command's own run folder is fine; the run's own files are not (sample
    A --out A/loss.png replaced A's loss curve by a grid of samples, even while A trained)."""
    a = shutil.copytree(runs / "A", tmp_path / "A")
    r = run("sample", a, "-n", 4, "--out", a / "more-samples.png")  # a new figure in its own folder
    assert r.exit_code == 0, r.output
    for name in ("samples.png", "loss.png"):
        before = (a / name).read_bytes()
        r = run("sample", a, "-n", 4, "--out", a / name)
        assert r.exit_code == 2 and f"is the {name} of the run in" in r.output
        assert (a / name).read_bytes() == before
    r = run("masks", a, "--out", tmp_path / "m.npz", "--png", a / "loss.png")
    assert r.exit_code == 2 and "loss.png of the run" in r.output
    r = run("masks", runs / "A", "--out", tmp_path / "B-masks.npz")  # a new file, no run's folder
    assert r.exit_code == 0 and (tmp_path / "B-masks.npz").is_file()
    target, link = tmp_path / "t.npz", tmp_path / "l.npz"
    link.symlink_to(target)
    r = run("masks", runs / "A", "--out", link)  # a link outside any run folder: written through, as before
    assert r.exit_code == 0 and link.is_symlink() and target.is_file()


def test_the_holder_of_a_run_folder_writes_through_its_links(runs, tmp_path):
    """The lock of the folder a link leads to makes the writer its own (run_lock), and a link within a
    run's own folder is its own."""
    b = shutil.copytree(runs / "B", tmp_path / "B")
    link = tmp_path / "results.json"
    link.symlink_to(b / "results.json")
    with pytest.raises(RunFolderError, match="in the folder of another run"):
        runfolder.write_json(link, {"x": 1})
    with runfolder.run_lock(b):
        runfolder.write_json(link, {"x": 1})
    assert (b / "results.json").read_text() == '{\n  "x": 1\n}' and link.is_symlink()
    (b / "other.json").symlink_to(b / "results.json")
    runfolder.write_json(b / "other.json", {"x": 2})
    assert (b / "results.json").read_text() == '{\n  "x": 2\n}'
