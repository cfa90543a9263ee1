"""Tests of the made-np command line (Click's CliRunner): outputs, numbers and one-line errors."""
import csv
import importlib.util
import json
import math
import os
import re

import numpy as np
import pytest
from click.testing import CliRunner

from made_np import __version__
from made_np.cli import cli, parse_hidden, parse_num_masks
from made_np.data import load_dataset
from made_np.checkpoint import load_checkpoint
from made_np.train import evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_user_error(result, *fragments):
    """Exit code 2 and exactly one line, 'Error: ...', naming the fragments; no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """made-np train on digits, default model (500 hidden) with one mask, 2 epochs."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    result = run("train", "--epochs", 2, "--num-masks", 1, "--out", out)
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def bank_run(tmp_path_factory):
    """A bank of 3 order- and connectivity-agnostic masks, small hidden layer, 2 epochs."""
    out = tmp_path_factory.mktemp("runs") / "bank"
    result = run("train", "--epochs", 2, "--hidden", "64,64", "--num-masks", 3, "--no-direct-connections",
                 "--out", out, "--seed", 4)
    assert result.exit_code == 0, result.output
    return out, result.output


def png_ok(path):
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


def test_version_and_help():
    assert run("--version").output.strip() == f"made-np {__version__}"
    result = run("train", "--help")
    assert result.exit_code == 0
    for option in ("--dataset", "--hidden", "--num-masks", "--resample-every", "--eval-masks",
                   "--input-encoding", "--lr-schedule", "--device", "--resume", "--out"):
        assert option in result.output
    assert result.output.count("default:") >= 25  # every option states its default


def test_the_help_names_every_data_set_and_file_kind():
    """A newcomer finds wine, moons or a .csv from --help alone; samples of real data are floats."""
    from made_np.cli import cli
    from made_np.data import NAMES

    def help_of(command, option):
        return next(p.help for p in cli.commands[command].params if p.name == option)
    dataset = help_of("train", "dataset")
    assert all(name in dataset for name in NAMES if name != "mnist") and ".csv" in dataset
    assert "integer array" not in help_of("sample", "out") and "float64" in help_of("sample", "out")
    assert "real values" in help_of("complete", "input_path")


def test_train_writes_every_output(single_run):
    out, output = single_run
    assert {"model.npz", "metrics.csv", "loss.png", "samples.png", "results.json"} <= {
        p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "train_nll", "valid_nll", "seconds", "train_seconds", "valid_seconds", "lr",
                             "threads"]
    assert b"\r" not in (out / "metrics.csv").read_bytes()  # plain \n line ends (csv's default is \r\n)
    assert all(float(r["lr"]) > 0 and int(r["threads"]) >= 1 and float(r["valid_seconds"]) > 0 for r in rows)
    results = json.loads((out / "results.json").read_text())  # the run it measured, recorded with it
    assert results["made_np_version"] == __version__ and results["model"]["D"] == 64
    assert results["train"]["epochs"] == 2 and set(results["dataset"]["sha256"]) == {"train", "valid", "test"}
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["valid_nll"]) < float(rows[0]["valid_nll"])  # it learns
    assert all(0 < float(r["train_nll"]) < 64 * np.log(2) for r in rows)
    assert png_ok(out / "loss.png") and png_ok(out / "samples.png")
    assert re.search(r"epoch +1 +train NLL", output) and re.search(r"epoch +2 +train NLL", output)
    assert "test NLL, mask 0" in output and "ensemble" not in output
    assert "; the recipe for small data (under 10,000 training rows)" in output  # which recipe, and why
    assert "masks 1 (fixed)" in output and "adam lr 0.002 cosine" in output  # what ran: --num-masks 1 on top


def test_evaluate_matches_training(single_run):
    out, output = single_run
    result = run("evaluate", out, "--json")
    assert result.exit_code == 0, result.output
    ev = json.loads(result.output)
    saved = json.loads((out / "results.json").read_text())
    assert ev["single"] == saved["single"] and ev["ensemble"] is None
    assert ev["split"] == "test" and ev["n"] == 250 and ev["D"] == 64
    # the figure printed at the end of training, to its last digit
    printed = re.search(r"test NLL, mask 0 : ([\d.]+) ± ([\d.]+) nats", output)
    assert printed.group(1) == f"{ev['single']['nll']:.3f}" and printed.group(2) == f"{ev['single']['stderr']:.3f}"
    # ...and the same as evaluating the loaded checkpoint by hand
    model, _ = load_checkpoint(out)
    assert evaluate(model, load_dataset("digits").test)["nll"] == ev["single"]["nll"]
    text = run("evaluate", out / "model.npz", "--split", "valid")
    assert text.exit_code == 0 and "valid NLL, mask 0" in text.output


def test_bank_run_reports_single_and_ensemble(bank_run):
    out, output = bank_run
    assert "test NLL, mask 0" in output and "test NLL, ensemble of 3 masks" in output
    ev = json.loads(run("evaluate", out, "--json").output)
    assert ev["ensemble"]["masks"] == 3 and ev["single"]["masks"] == 1
    assert ev["ensemble"]["nll"] != ev["single"]["nll"]
    assert ev["ensemble"] == json.loads((out / "results.json").read_text())["ensemble"]
    assert json.loads(run("evaluate", out, "--json", "--eval-masks", 2).output)["ensemble"]["masks"] == 2


def test_sample_npy_and_png(single_run, tmp_path):
    out, _ = single_run
    result = run("sample", out, "-n", 12, "--out", tmp_path / "s.npy", "--seed", 3)
    assert result.exit_code == 0, result.output
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (12, 64) and set(np.unique(x)) <= {0, 1} and 0 < x.mean() < 1
    again = run("sample", out, "-n", 12, "--out", tmp_path / "t.npy", "--seed", 3)
    assert again.exit_code == 0 and np.array_equal(np.load(tmp_path / "t.npy"), x)  # seeded
    result = run("sample", out, "-n", 20, "--out", tmp_path / "s.png")
    assert result.exit_code == 0 and png_ok(tmp_path / "s.png")


def test_sample_from_the_mixture_of_masks(bank_run, tmp_path):
    out, _ = bank_run
    for args, name in ((["--mask-index", 2], "m2.npy"), (["--mixture", 3], "mix.npy")):
        result = run("sample", out, "-n", 30, "--seed", 1, "--out", tmp_path / name, *args)
        assert result.exit_code == 0, result.output
    m2, mix = np.load(tmp_path / "m2.npy"), np.load(tmp_path / "mix.npy")
    assert m2.shape == mix.shape == (30, 64) and not np.array_equal(m2, mix)
    assert_user_error(run("sample", out, "--mixture", 4, "--out", tmp_path / "x.npy"), "outside the bank")
    assert_user_error(run("sample", out, "--mask-index", 3, "--out", tmp_path / "x.npy"), "outside the bank")
    assert_user_error(run("sample", out, "--mixture", 0, "--out", tmp_path / "x.npy"), "--mixture", "0 is not in the range")


def test_sample_draws_the_mixture_by_default_as_the_library(bank_run, tmp_path):
    """One answer per question: made-np sample, as made_np.sample, draws a bank's test ensemble unless told one mask."""
    import made_np

    out, _ = bank_run
    result = run("sample", out, "-n", 30, "--seed", 1, "--out", tmp_path / "d.npy")
    assert result.exit_code == 0 and "mixture of masks 0..2, seed 1" in result.output, result.output
    model, _ = load_checkpoint(out, best=True)
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), made_np.sample(model, 30, seed=1))
    result = run("sample", out, "-n", 30, "--seed", 1, "--out", tmp_path / "m0.npy", "--mask-index", 0)
    assert result.exit_code == 0 and "mask 0, seed 1" in result.output, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "m0.npy"), made_np.sample(model, 30, seed=1, masks=[0]))
    assert not np.array_equal(np.load(tmp_path / "m0.npy"), np.load(tmp_path / "d.npy"))


def test_evaluate_refuses_the_options_of_the_other_figure(bank_run, tmp_path):
    """--eval-masks/--mask-index were ignored with --occlude/--observed, and --masks/--seed without them."""
    out, _ = bank_run
    np.save(tmp_path / "o.npy", np.arange(64) < 32)
    for args in (["--eval-masks", 2], ["--mask-index", 1]):
        assert_user_error(run("evaluate", out, "--occlude", "top", *args), f"{args[0]} {args[1]}: not used with "
                          "--occlude top")
        assert_user_error(run("evaluate", out, "--observed", tmp_path / "o.npy", *args),
                          f"{args[0]} {args[1]}: not used with --observed {tmp_path / 'o.npy'}")
    for args in (["--masks", 4], ["--seed", 3]):
        assert_user_error(run("evaluate", out, *args), f"{args[0]} {args[1]}: used only with --observed or --occlude")
    assert run("evaluate", out, "--occlude", "top", "--masks", 2, "--seed", 3).exit_code == 0
    assert run("evaluate", out, "--eval-masks", 2, "--mask-index", 1).exit_code == 0


def test_masks_dump_is_the_models(bank_run, tmp_path):
    out, _ = bank_run
    model, _ = load_checkpoint(out)
    orderings = []
    for i in range(3):
        result = run("masks", out, "--index", i, "--out", tmp_path / f"m{i}.npz", "--png", tmp_path / f"m{i}.png")
        assert result.exit_code == 0, result.output
        ms = model.maskset_at(i)
        with np.load(tmp_path / f"m{i}.npz", allow_pickle=False) as z:
            assert sorted(z.files) == ["degrees_1", "degrees_2", "mask_V", "mask_W1", "mask_W2", "ordering"]
            assert np.array_equal(z["ordering"], ms.ordering)
            assert np.array_equal(z["degrees_1"], ms.degrees[0]) and np.array_equal(z["degrees_2"], ms.degrees[1])
            assert np.array_equal(z["mask_W1"], ms.hidden[0]) and np.array_equal(z["mask_W2"], ms.hidden[1])
            assert np.array_equal(z["mask_V"], ms.output)
        assert png_ok(tmp_path / f"m{i}.png")
        first = " ".join(str(int(v)) for v in ms.ordering[:16])
        assert f"ordering m^0 = {first}" in result.output
        orderings.append(tuple(ms.ordering))
    assert orderings[0] == tuple(range(1, 65)) and len(set(orderings)) == 3  # order-agnostic bank
    assert_user_error(run("masks", out, "--index", 3, "--out", tmp_path / "x.npz"), "outside the bank of 3")


def test_data_info():
    result = run("data", "info", "digits")
    assert result.exit_code == 0
    assert "D = 64" in result.output and "(1297, 64)" in result.output and "(250, 64)" in result.output


def test_resume_refuses_a_finished_run_and_changed_options(single_run):
    out, _ = single_run
    assert_user_error(run("train", "--resume", out), "finished")
    assert_user_error(run("train", "--resume", out, "--hidden", "3"), "--hidden", "cannot change")


def test_resume_continues_an_interrupted_run(tmp_path, monkeypatch):
    from made_np import train as train_mod

    out = tmp_path / "run"
    real_fit = train_mod.fit

    def interrupted_fit(*args, callback=None, **kwargs):
        def cb(row):
            callback(row)
            if row["epoch"] == 2:
                raise KeyboardInterrupt
        return real_fit(*args, callback=cb, **kwargs)

    monkeypatch.setattr("made_np.cli.train.fit", interrupted_fit)
    first = run("train", "--epochs", 3, "--hidden", 32, "--num-masks", 16, "--out", out)  # one run: no choice
    assert first.exit_code == 130 and "--resume" in first.output
    monkeypatch.setattr("made_np.cli.train.fit", real_fit)
    second = run("train", "--resume", out)
    assert second.exit_code == 0, second.output
    assert "resuming" in second.output and re.search(r"epoch +3 ", second.output)
    assert not re.search(r"epoch +1 ", second.output)
    with open(out / "metrics.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]


# --------------------------------------------------------------------------- user errors


def test_bad_inputs_are_one_line_errors(tmp_path, single_run):
    assert_user_error(run("train", "--dataset", tmp_path / "missing.npz"), "missing.npz", "no such file")
    np.savez(tmp_path / "partial.npz", train_data=np.zeros((10, 4)), valid_data=np.zeros((5, 4)))
    assert_user_error(run("train", "--dataset", tmp_path / "partial.npz"), "partial.npz", "test_data")
    assert_user_error(run("train", "--hidden", "5a0"), "--hidden", "5a0")
    assert_user_error(run("train", "--num-masks", "-2"), "--num-masks")
    assert_user_error(run("train", "--epochs", 0), "epochs")
    assert_user_error(run("train", "--ordering", "sideways"), "--ordering")
    assert_user_error(run("train", "--threads", "many", "--epochs", 1, "--out", tmp_path / "t"), "--threads")
    assert_user_error(run("evaluate", tmp_path / "nope.npz"), "nope.npz", "no such checkpoint")
    assert_user_error(run("evaluate", tmp_path / "partial.npz"), "partial.npz", "not a made-np checkpoint")
    (tmp_path / "notes.txt").write_text("not an npz")
    assert_user_error(run("sample", tmp_path / "notes.txt"), "not a made-np checkpoint")
    out, _ = single_run
    assert_user_error(run("sample", out, "--out", tmp_path / "x.jpg"), ".png or .npy")
    assert_user_error(run("train", "--out", out), "already holds a run")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_one_line_cuts_the_librarys_reasons_and_keeps_the_command_lines_whole():
    """One rule for both (made_np.one_line): the library cuts a quoted reason at 300 characters;
    the command line prints its whole message (a message, not an exception, stays as it is)."""
    from made_np import one_line
    from made_np.cli.common import one_line as cli_one_line

    long = ValueError("word\n  " * 100)
    assert one_line(long) == ("word " * 60)[:297] + "..." and len(one_line(long)) == 300
    assert cli_one_line(long) == " ".join(["word"] * 100)
    assert one_line(OSError()) == cli_one_line(OSError()) == "OSError" and cli_one_line("") == ""


def test_cuda_without_cupy_is_a_one_line_error():
    assert_user_error(run("train", "--device", "cuda"), "CuPy")


def test_an_unknown_device_in_the_environment_is_a_one_line_error(monkeypatch, single_run):
    """$MADE_NP_DEVICE=tpu is a bad name (a ValueError in the API), still one line naming it, exit 2."""
    monkeypatch.setenv("MADE_NP_DEVICE", "tpu")
    assert_user_error(run("evaluate", single_run[0]), "$MADE_NP_DEVICE: unknown device 'tpu'", "cpu, cuda")


def test_option_parsers():
    assert parse_hidden("500") == (500,) and parse_hidden("500, 300") == (500, 300)
    assert parse_hidden("") == () == parse_hidden("0")
    assert parse_num_masks("inf") == math.inf and parse_num_masks("8") == 8
    for bad in ("0", "-2", "x"):  # 0 is not a silent "inf"
        with pytest.raises(Exception, match="--num-masks"):
            parse_num_masks(bad)


def test_thread_policy_sizes_the_work_pool_without_touching_the_environment(monkeypatch):
    from threadpoolctl import threadpool_info

    from made_np.fast import threads

    def blas():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    monkeypatch.delenv("MADE_NP_THREADS", raising=False)
    with threads.thread_policy("1") as n:
        assert n == 1 and threads.work_pool(np) is None  # no pool: one thread in all
    assert "MADE_NP_THREADS" not in os.environ
    monkeypatch.setenv("MADE_NP_THREADS", "1")
    with threads.thread_policy("2"):
        assert threads.cpu_threads() == 2 and blas() == {2}
    assert os.environ["MADE_NP_THREADS"] == "1" and threads.cpu_threads() == 1
    monkeypatch.setenv("MADE_NP_THREADS", "2")
    with threads.thread_policy("auto") as n:  # auto: BLAS on one thread, the pool on one until changed
        assert n == 0 and threads.cpu_threads() == 1 and blas() == {1}
        threads.use_threads(2)
        assert threads.cpu_threads() == 2 and blas() == {1}
    assert threads.cpu_threads() == 2  # $MADE_NP_THREADS again


def test_threads_beyond_the_cores_are_a_one_line_error():
    line = assert_user_error(run("train", "--threads", 1000000, "--epochs", 1), "--threads")
    assert "CPU cores" in line


@pytest.mark.parametrize("variables,expected", [({"OMP_NUM_THREADS": "1000000"}, 8), ({"OMP_NUM_THREADS": "4,2"}, 4),
                                                ({"NUMEXPR_NUM_THREADS": "0", "OMP_NUM_THREADS": "1"}, 1)])
def test_numexpr_gets_its_thread_counts_within_the_cores(variables, expected, monkeypatch, capfd):
    """numexpr, imported after the command starts, printed "nthreads cannot be larger than ... (64)" for
    $OMP_NUM_THREADS=1000000 and ran on, and failed on OpenMP's list 4,2 ("invalid literal for int()"): the
    counts are capped at the cores as OpenBLAS caps them, silently, and the environment is left as it was."""
    import sys

    numexpr = pytest.importorskip("numexpr")
    before = numexpr.get_num_threads()
    monkeypatch.delitem(sys.modules, "numexpr")  # as in a fresh process: its __init__ reads the variables
    for name in ("OMP_NUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    capfd.readouterr()
    try:
        assert run("masks", "no-such-run").exit_code == 2  # any command
        import numexpr as loaded

        assert loaded.get_num_threads() == expected
        printed = capfd.readouterr()
        assert "nthreads" not in printed.out + printed.err
        assert "NUMEXPR_NUM_THREADS" not in os.environ or "NUMEXPR_NUM_THREADS" in variables
        assert all(os.environ[name] == value for name, value in variables.items())
    finally:
        numexpr.set_num_threads(before)


def test_an_empty_thread_variable_is_unset_not_passed_to_libgomp():
    """OMP_NUM_THREADS= made-np train printed "libgomp: Invalid value for environment variable
    OMP_NUM_THREADS" (libgomp loads with scikit-learn): the command's entry unsets the empty (or blank)
    thread variables, OpenMP's and the others', before any library reads them; set ones stay."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "", "OMP_THREAD_LIMIT": " ", "MKL_NUM_THREADS": "", "OMP_DYNAMIC": "false"}
    code = ("import os, made_np.cli, sklearn.utils\n"
            "print(sorted(n for n in ('OMP_NUM_THREADS', 'OMP_THREAD_LIMIT', 'MKL_NUM_THREADS', 'OMP_DYNAMIC') if n in os.environ))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "libgomp" not in done.stderr, done.stderr
    assert done.stdout.strip() == "['OMP_DYNAMIC']"


def test_made_np_threads_beyond_the_cores_is_refused_before_any_work(monkeypatch, tmp_path):
    """$MADE_NP_THREADS=100000 was not bounded like --threads: a RuntimeError after minutes of starting threads."""
    monkeypatch.setenv("MADE_NP_THREADS", "100000")
    assert_user_error(run("train", "--epochs", 1, "--hidden", 4, "--out", tmp_path / "r"),
                      "$MADE_NP_THREADS: 100000 threads asked for", "CPU cores; give at most")
    assert not (tmp_path / "r").exists()


def test_one_example_shows_no_standard_error():
    """A 10-row file splits 8/1/1: a test NLL of one example used to print "± 0.000"."""
    from made_np.cli.common import format_nats

    assert format_nats(4.2, None, 1, (0.7, None)) == "4.200 ± n/a nats (0.70000 ± n/a nats/dim; one example: no standard error)"
    assert format_nats(4.2, 0.6, 2, (0.7, 0.1)) == "4.200 ± 0.600 nats (0.70000 ± 0.10000 nats/dim)"
    assert format_nats(1.0174, None, 1) == "1.017 ± n/a nats (one example: no standard error)"  # complete, evaluate --observed
    assert format_nats(1.0174, 0.25, 3) == "1.017 ± 0.250 nats"


def test_one_test_example_stores_a_null_standard_error(tmp_path):
    """results.json stored "stderr": 0.0 for a test split of one example: undefined, so null there,
    in evaluate --json and in mean_and_stderr, and printed "± n/a"."""
    from made_np import mean_and_stderr

    assert mean_and_stderr([3.0]) == (3.0, None) and mean_and_stderr([1.0, 3.0]) == (2.0, 1.0)
    np.save(tmp_path / "ten.npy", np.random.default_rng(0).integers(0, 2, (10, 4)))  # split 8/1/1
    r = run("train", "--dataset", tmp_path / "ten.npy", "--hidden", 4, "--epochs", 1, "--num-masks", 2,
            "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert "± n/a nats (" in r.output and "± 0.000" not in r.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    ev = json.loads(run("evaluate", tmp_path / "run", "--json").output)
    for res in (results, ev):
        for which in ("single", "ensemble"):
            assert res[which]["n"] == 1 and res[which]["stderr"] is None and res[which]["stderr_per_dim"] is None


def test_evaluate_refuses_an_ensemble_size_for_a_single_mask(single_run, tmp_path):
    """--eval-masks on a single-mask run was silently ignored (sample --mixture refuses the same, and
    sample -n 0, and a resumed run's --out elsewhere)."""
    out, _ = single_run
    r = CliRunner().invoke(cli, ["evaluate", str(out), "--eval-masks", "4"])
    assert r.exit_code == 2 and "--eval-masks 4: this model has a single mask" in r.output
    assert_user_error(run("sample", out, "--mixture", 2, "--out", tmp_path / "s.npy"),
                      "--mixture 2: this model has a single mask (num_masks = 1)", "leave --mixture out")
    assert_user_error(run("sample", out, "-n", 0, "--out", tmp_path / "s.npy"), "-n: expected a positive number")
    assert_user_error(run("train", "--resume", out, "--out", tmp_path / "elsewhere"),
                      "--out: a resumed run writes into its own folder")
    assert not (tmp_path / "s.npy").exists() and not (tmp_path / "elsewhere").exists()


def test_a_checkpoint_without_its_data_set_is_evaluated_on_nothing(tmp_path):
    """A checkpoint saved by the library without a dataset_spec names no data set: evaluate says so in
    one line; sample, which needs none, draws from it."""
    from made_np import MADE, MADEConfig, save_checkpoint

    save_checkpoint(tmp_path / "m.npz", MADE(MADEConfig(D=4, hidden=(3,))))
    assert_user_error(run("evaluate", tmp_path / "m.npz"), "m.npz: the checkpoint names no data set to evaluate on")
    r = run("sample", tmp_path / "m.npz", "-n", 3, "--out", tmp_path / "s.npy")  # sampling needs no data
    assert r.exit_code == 0 and np.load(tmp_path / "s.npy").shape == (3, 4)
