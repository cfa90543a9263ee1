"""``made-np impute``: a table with missing cells in, the filled table and its siblings out; one-line errors."""
import json

import numpy as np
import pytest
from conftest import one_line_error, run_cli

from made_np import MADE, MADEConfig, TrainConfig, fit, impute, load_checkpoint, load_dataset


@pytest.fixture(scope="module")
def run_and_table(tmp_path_factory):
    """An order-agnostic run on digits (1 epoch, written by fit) and 12 test rows with 30% of the entries missing."""
    tmp = tmp_path_factory.mktemp("impute")
    ds = load_dataset("digits")
    model = MADE(MADEConfig.for_data(ds, hidden=(16,), num_masks=0))
    fit(model, ds, TrainConfig(epochs=1, valid_masks=2, eval_masks=2), out_dir=tmp / "run")
    x = ds.test[:12].astype(float)
    x[np.random.default_rng(0).random(x.shape) < 0.3] = np.nan
    return tmp, x


def write_csv(path, x, header=True):
    lines = [",".join(f"c{j}" for j in range(x.shape[1]))] if header else []
    lines += [",".join("" if np.isnan(v) else f"{v:g}" for v in row) for row in x]
    path.write_text("\n".join(lines) + "\n")


def test_csv_in_csv_out_equals_the_api(run_and_table):
    tmp, x = run_and_table
    write_csv(tmp / "x.csv", x)
    result = run_cli("impute", tmp / "run", "--input", tmp / "x.csv", "--out", tmp / "y.csv", "--draws", 3,
                     "--seed", 2, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["missing"] == int(np.isnan(x).sum()) and info["rows"] == 12
    y = np.loadtxt(tmp / "y.csv", delimiter=",", skiprows=1)
    std = np.loadtxt(tmp / "y.std.csv", delimiter=",", skiprows=1)
    draws = np.load(tmp / "y.draws.npy")
    assert (tmp / "y.csv").read_text().startswith("c0,c1,")  # the input's header kept
    model = load_checkpoint(tmp / "run")[0]
    want = impute(model, x, draws=3, seed=2)
    assert np.array_equal(y, want.filled) and np.allclose(std, want.std, rtol=1e-15)
    assert np.array_equal(draws, want.draws) and draws.shape == (12, 3, 64)
    assert np.array_equal(y[~np.isnan(x)], x[~np.isnan(x)]) and np.all(std[~np.isnan(x)] == 0)
    assert run_cli("impute", tmp / "run", "--input", tmp / "x.csv", "--out", tmp / "m.csv", "--seed", 2,
                   "--discrete", "mean").exit_code == 0
    mean = np.loadtxt(tmp / "m.csv", delimiter=",", skiprows=1)
    assert np.array_equal(mean, impute(model, x, seed=2, discrete="mean").filled)  # the classes' posterior mean
    assert not np.array_equal(mean, y) and np.array_equal(mean[~np.isnan(x)], x[~np.isnan(x)])
    assert np.array_equal(y, impute(model, x, seed=2, discrete="mode").filled)  # auto: the mode for classes


def test_npy_in_npy_out_without_header(run_and_table):
    tmp, x = run_and_table
    np.save(tmp / "x.npy", x)
    write_csv(tmp / "plain.csv", x, header=False)
    assert run_cli("impute", tmp / "run", "--input", tmp / "x.npy", "--out", tmp / "a.npy").exit_code == 0
    assert run_cli("impute", tmp / "run", "--input", tmp / "plain.csv", "--out", tmp / "b.npy").exit_code == 0
    assert np.array_equal(np.load(tmp / "a.npy"), np.load(tmp / "b.npy"))
    assert np.load(tmp / "a.std.npy").shape == (12, 64) and not (tmp / "a.draws.npy").exists()


def test_bad_tables_are_one_line_errors(run_and_table):
    tmp, x = run_and_table
    np.save(tmp / "in.npy", x)
    (tmp / "narrow.csv").write_text("1,0\n0,\n")
    (tmp / "text.csv").write_text("a,b\n1,0\n0,yes\n")
    write_csv(tmp / "three.csv", np.where(np.isnan(x), np.nan, 3 * x))
    inf = x.copy()
    inf[2, 5] = np.inf
    write_csv(tmp / "inf.csv", inf)
    (tmp / "x.txt").write_text("1\n")
    (tmp / "empty.csv").write_text("\n")
    cases = [(("--input", tmp / "in.npy", "--out", tmp / "in.npy"), ("--out", "is an input")),
             (("--input", tmp / "in.npy", "--out", tmp / "y.txt"), ("--out", ".csv or .npy")),
             (("--input", tmp / "narrow.csv", "--out", tmp / "never.csv"), ("--input", "2 columns", "D = 64")),
             (("--input", tmp / "text.csv", "--out", tmp / "never.csv"), ("--input", "line 3, column 1 ('b')", "yes")),
             (("--input", tmp / "three.csv", "--out", tmp / "never.csv"), ("--input", "integers in 0..1")),
             (("--input", tmp / "inf.csv", "--out", tmp / "never.csv"),  # named as made-np train names it
              ("--input", "infinite value", "at line 4, column 5 ('c5')")),
             (("--input", tmp / "x.txt", "--out", tmp / "never.csv"), ("--input", ".csv or .npy")),
             (("--input", tmp / "empty.csv", "--out", tmp / "never.csv"), ("--input", "no rows")),
             (("--input", tmp / "gone.csv", "--out", tmp / "never.csv"), ("--input", "no such file"))]
    for args, fragments in cases:
        one_line_error(run_cli("impute", tmp / "run", *args), *fragments)
    assert not (tmp / "never.csv").exists()


def test_observed_cells_are_written_as_they_were_read(tmp_path):
    """A real run's filled CSV keeps an observed 0.12573 as 0.12573 (not 0.12573000000000001)."""
    ds = load_dataset("wine")
    fit(MADE(MADEConfig.for_data(ds, hidden=(8,), num_masks=0)), ds, TrainConfig(epochs=1, valid_masks=2, eval_masks=2),
        out_dir=tmp_path / "run")
    x = ds.test[:2].copy()
    x[0, 0], x[0, 1], x[1, 0] = 0.12573, np.nan, np.nan
    write_csv(tmp_path / "x.csv", x)
    text = (tmp_path / "x.csv").read_text()
    assert run_cli("impute", tmp_path / "run", "--input", tmp_path / "x.csv", "--out", tmp_path / "y.csv").exit_code == 0
    out = (tmp_path / "y.csv").read_text().splitlines()
    assert out[0] == text.splitlines()[0] and out[1].startswith("0.12573,")
    y = np.loadtxt(tmp_path / "y.csv", delimiter=",", skiprows=1)
    assert not np.isnan(y).any() and y[0, 0] == 0.12573 and np.array_equal(y[0, 2:], x[0, 2:])
