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
    x[0, 0], x[0, 1], x[1, 0], x[1, 1], x[1, 2] = 0.12573, np.nan, np.nan, 14.0, -0.0
    write_csv(tmp_path / "x.csv", x)
    text = (tmp_path / "x.csv").read_text()
    assert run_cli("impute", tmp_path / "run", "--input", tmp_path / "x.csv", "--out", tmp_path / "y.csv").exit_code == 0
    out = (tmp_path / "y.csv").read_text().splitlines()
    assert out[0] == text.splitlines()[0] and out[1].startswith("0.12573,")
    assert out[2].split(",")[1:3] == ["14", "-0"]  # whole numbers as a table holds them, not 14.0
    y = np.loadtxt(tmp_path / "y.csv", delimiter=",", skiprows=1)
    assert not np.isnan(y).any() and y[0, 0] == 0.12573 and np.array_equal(y[0, 2:], x[0, 2:])


def test_train_allow_missing_trains_on_the_observed_entries_and_impute_fills_them(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=150)
    x = np.c_[a, 2 * a + 0.3 * rng.normal(size=150), rng.integers(0, 3, 150), np.exp(rng.normal(size=150))]
    x[rng.random(x.shape) < 0.1] = np.nan
    write_csv(tmp_path / "t.csv", x)
    x = np.genfromtxt(tmp_path / "t.csv", delimiter=",", skip_header=1)  # as written: 6 digits
    one_line_error(run_cli("train", "--dataset", tmp_path / "t.csv", "--out", tmp_path / "no"),
                   "t.csv", "missing (NaN)", "--allow-missing")
    assert not (tmp_path / "no").exists()
    result = run_cli("train", "--dataset", tmp_path / "t.csv", "--out", tmp_path / "run", "--allow-missing",
                     "--hidden", 8, "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert "reference engine (rows with missing entries)" in result.output
    assert "discrete columns (softmax over their levels): 2 c2 {0, 1, 2}" in result.output
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    test = load_dataset(tmp_path / "t.csv", allow_nan=True).test
    assert res["ensemble"]["missing_rows"] == int(np.isnan(test).any(axis=1).sum()) > 0
    shown = f"({res['ensemble']['missing_rows']} of {len(test)} rows have missing entries"
    assert shown in result.output
    one_line_error(run_cli("evaluate", tmp_path / "run", "--occlude", "top"),  # a 4-column table: no 2x2 image
                   "--occlude top: this run's data are no images (D = 4 columns)", "random:P")
    again = run_cli("evaluate", tmp_path / "run", "--json")  # the run's data reload with their missing entries
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["ensemble"]["nll"] == res["ensemble"]["nll"]
    done = run_cli("impute", tmp_path / "run", "--input", tmp_path / "t.csv", "--out", tmp_path / "y.csv")
    assert done.exit_code == 0, done.output
    y = np.loadtxt(tmp_path / "y.csv", delimiter=",", skiprows=1)
    assert not np.isnan(y).any() and np.array_equal(y[~np.isnan(x)], x[~np.isnan(x)])
    assert y[:, 2].min() >= 0 and y[:, 2].max() <= 2  # the discrete column's posterior mean, between its levels
    mode = run_cli("impute", tmp_path / "run", "--input", tmp_path / "t.csv", "--out", tmp_path / "z.csv",
                   "--discrete", "mode")
    assert mode.exit_code == 0, mode.output
    z = np.loadtxt(tmp_path / "z.csv", delimiter=",", skiprows=1)
    assert set(np.unique(z[:, 2])) <= {0.0, 1.0, 2.0}  # --discrete mode: one of its levels
    text = (tmp_path / "t.csv").read_text().split("\n", 1)
    (tmp_path / "swapped.csv").write_text("c1,c0,c2,c3\n" + text[1])  # a header that names another order
    one_line_error(run_cli("impute", tmp_path / "run", "--input", tmp_path / "swapped.csv", "--out", tmp_path / "s.csv"),
                   "--input", "its header names the columns c1, c0, c2, c3, but the model was trained on c0, c1, c2, c3")


def test_allow_missing_keeps_whole_numbers_with_blanks_as_categories_as_the_imputer_does(tmp_path):
    x = (np.random.default_rng(1).random((60, 5)) < 0.4).astype(float)
    x[np.random.default_rng(2).random(x.shape) < 0.1] = np.nan
    write_csv(tmp_path / "b.csv", x)
    one_line_error(run_cli("train", "--dataset", tmp_path / "b.csv", "--out", tmp_path / "no"),
                   "b.csv", "expected integers >= 0", "--allow-missing")
    result = run_cli("train", "--dataset", tmp_path / "b.csv", "--out", tmp_path / "run", "--allow-missing",
                     "--hidden", 8, "--epochs", 1)
    assert result.exit_code == 0, result.output
    assert "bernoulli head" in result.output and "reference engine (rows with missing entries)" in result.output
    assert load_dataset(tmp_path / "b.csv", allow_nan=True).classes == 2
    filled = run_cli("impute", tmp_path / "run", "--input", tmp_path / "b.csv", "--out", tmp_path / "y.npy")
    assert filled.exit_code == 0, filled.output
    y = np.load(tmp_path / "y.npy")
    assert set(np.unique(y)) <= {0.0, 1.0}  # classes: the posterior mode, as MADEImputer fills them


def test_missing_rows_columns_and_infinities_are_refused_at_the_file(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 3))
    x[6] = np.nan  # a blank row: nothing to learn from or to score, in whichever split it falls
    write_csv(tmp_path / "row.csv", x)
    one_line_error(run_cli("train", "--dataset", tmp_path / "row.csv", "--allow-missing", "--out", tmp_path / "r"),
                   "row.csv: array has 1 row with every entry missing (NaN), the first at line 8", "drop those rows")
    y = np.random.default_rng(1).normal(size=(40, 3))
    y[:, 1] = np.nan
    write_csv(tmp_path / "col.csv", y)
    one_line_error(run_cli("train", "--dataset", tmp_path / "col.csv", "--allow-missing", "--out", tmp_path / "r"),
                   "column 1 ('c1') of array (train part) has no observed value", "drop that column")
    run = tmp_path / "ok"
    assert run_cli("train", "--dataset", tmp_path / "col.csv", "--allow-missing", "--discrete-columns", "none",
                   "--out", run, "--hidden", 4, "--epochs", 1).exit_code == 2  # the blank column again
    y[:, 1] = 1.0 + np.random.default_rng(2).normal(size=40)
    write_csv(tmp_path / "ok.csv", y)
    assert run_cli("train", "--dataset", tmp_path / "ok.csv", "--out", run, "--hidden", 4, "--epochs", 1).exit_code == 0
    write_csv(tmp_path / "blank.csv", np.array([[np.nan] * 3, [0.1, 0.2, 0.3]]))
    filled = run_cli("impute", run, "--input", tmp_path / "blank.csv", "--out", tmp_path / "f.npy")
    assert filled.exit_code == 0, filled.output  # a table to impute may hold a blank row: its marginals fill it
    assert np.isfinite(np.load(tmp_path / "f.npy")).all()
    ints = np.ones((40, 3))
    ints[2, 2] = np.inf
    np.save(tmp_path / "inf.npy", ints)
    result = run_cli("train", "--dataset", tmp_path / "inf.npy", "--allow-missing", "--out", tmp_path / "r")
    one_line_error(result, "inf.npy: array has 1 NaN/inf value", "replace the infinite values by finite numbers")
    assert "--allow-missing" not in result.output  # no advice to pass the flag already given
    assert not (tmp_path / "r").exists()


def test_a_run_with_missing_entries_takes_them_as_unobserved_everywhere(tmp_path):
    from made_np import log_marginal

    rng = np.random.default_rng(3)
    a = rng.normal(size=200)
    x = np.c_[a, a + 0.5 * rng.normal(size=200)]
    x[rng.random(x.shape) < 0.15] = np.nan
    x[np.isnan(x).all(axis=1), 0] = 0.5
    np.save(tmp_path / "m.npy", x)
    assert run_cli("train", "--dataset", tmp_path / "m.npy", "--allow-missing", "--hidden", 8, "--epochs", 2,
                   "--out", tmp_path / "run").exit_code == 0
    info = run_cli("data", "info", tmp_path / "m.npy", "--allow-missing")
    assert info.exit_code == 0 and f"; {int(np.isnan(x[:, 0]).sum())} missing" in info.output
    marginal = run_cli("evaluate", tmp_path / "run", "--occlude", "random:0.3", "--seed", 4, "--json")
    assert marginal.exit_code == 0, marginal.output
    model, test = load_checkpoint(tmp_path / "run")[0], load_dataset(tmp_path / "m.npy", allow_nan=True).test
    from made_np import occlusion_mask
    obs = occlusion_mask("random:0.3", 2, None, len(test), 4) & ~np.isnan(test)  # the data's own NaN: unobserved
    want = -log_marginal(model, np.where(obs, test, 0), obs, masks=16, seed=4)
    assert json.loads(marginal.output)["neg_log_px_o"] == pytest.approx(float(np.mean(want)), rel=1e-12)
    drawn = run_cli("density", tmp_path / "run", "--out", tmp_path / "d.png")
    left = int(np.isnan(test).any(axis=1).sum())
    assert drawn.exit_code == 0 and f"{len(test) - left} complete test rows; {left} with missing" in drawn.output
    np.save(tmp_path / "in.npy", test[:5])  # NaN where --occlude says observed: missing all the same
    done = run_cli("complete", tmp_path / "run", "--input", tmp_path / "in.npy", "--occlude", "random:0.1",
                   "-n", 2, "--out", tmp_path / "c.npz")
    assert done.exit_code == 0, done.output
    assert not np.load(tmp_path / "c.npz")["observed"][np.isnan(test[:5])].any()


def test_complete_takes_a_csv_whose_blanks_are_the_pattern(tmp_path):
    ds = load_dataset("wine")
    fit(MADE(MADEConfig.for_data(ds, hidden=(8,), num_masks=0)), ds, TrainConfig(epochs=1, valid_masks=2, eval_masks=2),
        out_dir=tmp_path / "run")
    x = ds.test[:3].copy()
    x[0, 1], x[2, 4] = np.nan, np.nan
    write_csv(tmp_path / "x.csv", x)
    done = run_cli("complete", tmp_path / "run", "--input", tmp_path / "x.csv", "-n", 2, "--out", tmp_path / "c.npz")
    assert done.exit_code == 0, done.output  # no --observed nor --occlude: the blanks say what is missing
    z = np.load(tmp_path / "c.npz")
    assert np.array_equal(z["observed"], ~np.isnan(x)) and z["completions"].shape == (3, 2, 13)
    np.save(tmp_path / "full.npy", ds.test[:3])  # nothing missing and no pattern: refused, naming the options
    one_line_error(run_cli("complete", tmp_path / "run", "--input", tmp_path / "full.npy", "--out", tmp_path / "d.npz"),
                   "give exactly one of --observed", "or examples with NaN where missing")


def test_whole_number_tables_keep_their_header_and_are_no_images(tmp_path):
    from made_np import square_image_shape

    assert [square_image_shape(D) for D in (4, 9, 15, 16, 64, 784)] == [None, None, None, (4, 4), (8, 8), (28, 28)]
    x = np.random.default_rng(0).integers(0, 3, (80, 4)).astype(float)
    x[np.random.default_rng(1).random(x.shape) < 0.1] = np.nan
    x[np.isnan(x).all(axis=1), 0] = 1.0
    write_csv(tmp_path / "w.csv", x)
    ds = load_dataset(tmp_path / "w.csv", allow_nan=True)
    assert ds.columns == ("c0", "c1", "c2", "c3") and ds.image_shape is None and ds.classes == 3
    assert run_cli("train", "--dataset", tmp_path / "w.csv", "--allow-missing", "--hidden", 4, "--epochs", 1,
                   "--out", tmp_path / "run").exit_code == 0
    one_line_error(run_cli("evaluate", tmp_path / "run", "--occlude", "left"), "no images (D = 4 columns)")
    text = (tmp_path / "w.csv").read_text().split("\n", 1)
    (tmp_path / "s.csv").write_text("c1,c0,c2,c3\n" + text[1])
    for command in ("impute", "complete"):  # a header in another order: refused by both readers of a table
        one_line_error(run_cli(command, tmp_path / "run", "--input", tmp_path / "s.csv", "--out", tmp_path / "o.npz"
                               if command == "complete" else tmp_path / "o.csv"), "its header names the columns c1, c0")
    x[:, 2] = np.nan
    write_csv(tmp_path / "blank.csv", x)
    one_line_error(run_cli("train", "--dataset", tmp_path / "blank.csv", "--allow-missing", "--out", tmp_path / "b"),
                   "column 2 ('c2') of array (train part) has no observed value")
