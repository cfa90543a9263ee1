"""The command line of conditional models and of completions: train/sample/evaluate --context,
made-np complete, made-np evaluate --observed/--occlude (Click's CliRunner, tiny digits runs)."""
import json

import numpy as np
import pytest
from conftest import one_line_error, run_cli as run

from made_np import conditional
from made_np.checkpoint import load_checkpoint
from made_np.data import load_dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A class-conditional digits run (one mask) and an order-agnostic one (no mask limit), 2 epochs each."""
    root = tmp_path_factory.mktemp("ctx")
    r = run("train", "--context", "labels", "--num-masks", 1, "--epochs", 2, "--hidden", 32, "--out", root / "cond",
            "-q")
    assert r.exit_code == 0, r.output
    r = run("train", "--num-masks", "inf", "--epochs", 2, "--hidden", 32, "--eval-masks", 4, "--out", root / "oa", "-q")
    assert r.exit_code == 0, r.output
    return root


def test_train_sample_and_evaluate_with_labels(runs, tmp_path):
    model, info = load_checkpoint(runs / "cond")
    assert (model.config.context, model.config.context_encoding) == (10, "onehot")
    assert info["dataset"]["context"] == "labels"
    saved = json.loads((runs / "cond" / "results.json").read_text())
    r = run("evaluate", runs / "cond", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["single"]["nll"] == pytest.approx(saved["single"]["nll"], rel=1e-12)
    r = run("sample", runs / "cond", "-n", 16, "--context", 3, "--out", tmp_path / "s.npy")
    assert r.exit_code == 0 and "context 3" in r.output
    assert np.load(tmp_path / "s.npy").shape == (16, 64)
    np.save(tmp_path / "labels.npy", np.array([0, 1, 2, 9, 9]))
    r = run("sample", runs / "cond", "--context", tmp_path / "labels.npy", "--out", tmp_path / "f.npy")
    assert r.exit_code == 0 and np.load(tmp_path / "f.npy").shape == (5, 64)  # one sample per label
    r = run("sample", runs / "cond", "-n", 12, "--out", tmp_path / "g.png")  # labels spread over the classes
    assert r.exit_code == 0 and (tmp_path / "g.png").read_bytes()[:8] == PNG_MAGIC
    one_line_error(run("sample", runs / "cond", "--context", 10, "--out", tmp_path / "x.npy"), "10 classes")
    one_line_error(run("sample", runs / "cond", "-n", 3, "--context", tmp_path / "labels.npy",
                       "--out", tmp_path / "x.npy"), "5 rows for 3 samples")
    one_line_error(run("sample", runs / "oa", "--context", 1, "--out", tmp_path / "x.npy"), "no context")
    one_line_error(run("sample", runs / "oa", "--mixture", 3, "--mask-index", 2, "--out", tmp_path / "x.npy"),
                   "--mask-index 2: not used with --mixture 3")  # it used to be ignored
    np.save(tmp_path / "none.npy", np.array([], int))  # used to write 0 samples (.npy) or fail in the figure
    for out in ("x.npy", "x.png"):
        one_line_error(run("sample", runs / "cond", "--context", tmp_path / "none.npy", "--out", tmp_path / out),
                       "none.npy: no rows; give one label or row, or one per sample")
    one_line_error(run("train", "--dataset", "2d", "--context", "labels"), "digits only")


def test_complete_writes_completions_and_the_marginals(runs, tmp_path):
    out, png = tmp_path / "c.npz", tmp_path / "c.png"
    r = run("complete", runs / "oa", "--occlude", "bottom", "--first", 6, "-n", 3, "--masks", 4,
            "--out", out, "--png", png, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["masks"] == 4 and res["n"] == 6 and res["method"] == "fast"
    z = np.load(out)
    x, obs, comps = z["x"], z["observed"], z["completions"]
    assert comps.shape == (6, 3, 64) and obs.shape == (6, 64) and z["log_px_o"].shape == (6,)
    assert obs[:, :32].all() and not obs[:, 32:].any()  # the bottom half hidden
    assert np.array_equal(x, load_dataset("digits").test[:6])  # the originals, the hidden half included
    assert np.array_equal(comps[:, :, :32], np.repeat(x[:, None, :32], 3, axis=1))  # observed: copied
    model, _ = load_checkpoint(runs / "oa")
    lm = conditional.log_marginal(model, x, obs, masks=4, seed=0)
    np.testing.assert_allclose(z["log_px_o"], lm, rtol=0, atol=1e-9)
    assert res["neg_log_px_o"] == pytest.approx(-lm.mean())
    assert png.read_bytes()[:8] == PNG_MAGIC
    # the reference method gives the same completions
    r = run("complete", runs / "oa", "--occlude", "bottom", "--first", 6, "-n", 3, "--masks", 4,
            "--method", "naive", "--out", tmp_path / "n.npz")
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(np.load(tmp_path / "n.npz")["completions"], comps)
    # --input and --observed files; the test marginal of evaluate --observed is the same quantity
    ds = load_dataset("digits")
    np.save(tmp_path / "x.npy", ds.test[:4])
    o = np.random.default_rng(0).random(64) < 0.3
    np.save(tmp_path / "o.npy", o.astype(np.uint8))
    r = run("complete", runs / "oa", "--input", tmp_path / "x.npy", "--observed", tmp_path / "o.npy", "-n", 2,
            "--out", tmp_path / "i.npz")
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(tmp_path / "i.npz")["observed"], np.tile(o, (4, 1)))
    for option in (("--first", 2), ("--split", "valid")):  # used to be ignored
        one_line_error(run("complete", runs / "oa", "--input", tmp_path / "x.npy", "--observed", tmp_path / "o.npy",
                           *option, "--out", tmp_path / "j.npz"), f"{option[0]}: not used with --input")
    r = run("evaluate", runs / "oa", "--observed", tmp_path / "o.npy", "--masks", 4, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    lm = conditional.log_marginal(model, ds.test, np.tile(o, (len(ds.test), 1)), masks=4, seed=0)
    assert res["neg_log_px_o"] == pytest.approx(float(-lm.mean()), rel=1e-12) and res["n"] == 250


def test_complete_with_a_context_and_its_errors(runs, tmp_path):
    r = run("complete", runs / "cond", "--occlude", "bottom", "--first", 4, "-n", 2, "--out", tmp_path / "c.npz")
    assert r.exit_code == 0, r.output  # the top half is a prefix of the natural ordering: exact
    model, _ = load_checkpoint(runs / "cond")
    ds = load_dataset("digits", context="labels")
    z = np.load(tmp_path / "c.npz")
    lm = conditional.log_marginal(model, ds.test[:4], z["observed"], context=ds.test_context[:4])
    np.testing.assert_allclose(z["log_px_o"], lm, rtol=0, atol=1e-9)
    one_line_error(run("complete", runs / "cond", "--occlude", "top", "--out", tmp_path / "c.npz"),
                   "prefix of its ordering", "--num-masks inf")
    one_line_error(run("evaluate", runs / "cond", "--occlude", "left"), "--num-masks inf")
    np.save(tmp_path / "x.npy", ds.test[:2])
    one_line_error(run("complete", runs / "cond", "--input", tmp_path / "x.npy", "--occlude", "bottom",
                       "--out", tmp_path / "c.npz"), "--context")
    one_line_error(run("complete", runs / "oa", "--out", tmp_path / "c.npz"), "--observed", "--occlude")
    one_line_error(run("complete", runs / "oa", "--occlude", "middle", "--out", tmp_path / "c.npz"),
                   "unknown occlusion")
    np.save(tmp_path / "o.npy", np.full((3, 64), 2))
    one_line_error(run("complete", runs / "oa", "--first", 3, "--observed", tmp_path / "o.npy",
                       "--out", tmp_path / "c.npz"), "0 (missing) or 1 (observed)")
    one_line_error(run("complete", runs / "oa", "--occlude", "top", "--out", tmp_path / "c.png"), ".npz")


def test_complete_never_reads_the_missing_entries_of_its_input(runs, tmp_path):
    """--input may mark missing entries with anything (-1 here): only the observed ones are read."""
    x = np.zeros((3, 64), np.int64)
    x[:, ::3] = 1
    obs = np.zeros_like(x)
    obs[:, :32] = 1
    np.save(tmp_path / "x.npy", np.where(obs == 1, x, -1))
    np.save(tmp_path / "o.npy", obs)
    r = run("complete", runs / "oa", "--input", tmp_path / "x.npy", "--observed", tmp_path / "o.npy", "-n", 2,
            "--masks", 2, "--out", tmp_path / "c.npz")
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "c.npz") as z:
        assert z["completions"].shape == (3, 2, 64)
        np.testing.assert_array_equal(z["completions"][:, :, :32], np.repeat(x[:, None, :32], 2, axis=1))
    bad = np.where(obs == 1, x, -1)
    bad[0, 0] = 7  # an observed entry outside the classes is still refused, in one line
    np.save(tmp_path / "bad.npy", bad)
    one_line_error(run("complete", runs / "oa", "--input", tmp_path / "bad.npy", "--observed", tmp_path / "o.npy",
                       "--out", tmp_path / "c2.npz"), "--input")


def test_a_context_that_is_not_numbers_is_one_line(runs, tmp_path):
    """A .npy of strings failed in NumPy's rint, and "³" (a digit to str.isdigit) in int(): tracebacks."""
    for values in (["a", "b"], ["3", "4"]):
        np.save(tmp_path / "s.npy", np.array(values))
        one_line_error(run("sample", runs / "cond", "--context", tmp_path / "s.npy", "--out", tmp_path / "x.npy"),
                       "s.npy: has dtype <U1; expected class labels (integers) or rows of numbers")
    one_line_error(run("sample", runs / "cond", "--context", "³", "--out", tmp_path / "x.npy"),
                   "--context '³': expected a class label (an integer) or an existing .npy file")
    assert not (tmp_path / "x.npy").exists()
    r = run("sample", runs / "cond", "-n", 2, "--context", "٣", "--out", tmp_path / "x.npy")  # a decimal digit: 3
    assert r.exit_code == 0 and "context ٣" in r.output
