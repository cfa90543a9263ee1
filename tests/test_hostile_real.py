"""Hostile inputs to the real-valued code (CSV files, real heads, the estimators, checkpoints of real
runs), one test per class of failure the campaign of issue 21's targets found on it."""
import numpy as np
import pytest
from conftest import one_line_error, run_cli as run

from made_np import DataError, MADEConfig, MADEDensity, MADEImputer, load_checkpoint, load_dataset, read_table
from made_np.checkpoint import CheckpointError

ROWS = np.array([[0.5, -1.25, 3.0], [1.5, 2.0, -0.75], [-2.5, 0.25, 1.0]])


def csv_text(rows=ROWS, header="a,b,c"):
    return header + "\n" + "".join(",".join(repr(float(v)) for v in r) + "\n" for r in rows)


def test_csv_line_ends_and_quoted_empty_cells_read_as_written(tmp_path):
    """Old Mac line ends (CR alone) were one header line with no rows; a quoted empty cell ("") was
    NumPy's 'could not convert string' at loadtxt's row count, not the file's line."""
    (tmp_path / "cr.csv").write_bytes(csv_text().replace("\n", "\r").encode())
    x, columns = read_table(tmp_path / "cr.csv")
    assert columns == ["a", "b", "c"] and np.array_equal(x, ROWS)
    (tmp_path / "q.csv").write_text(csv_text().replace("-1.25", '""'))
    x, _ = read_table(tmp_path / "q.csv")
    assert np.isnan(x[0, 1]) and np.array_equal(np.delete(x.ravel(), 1), np.delete(ROWS.ravel(), 1))


@pytest.mark.parametrize("cell, line, words", [
    ("1_000.5", 'line 3, column 1', "thousands separators"),  # Python's float reads it, loadtxt does not
    ('"1,000.5"', 'line 3, column 1', "thousands separators"),  # one quoted cell, not two values
    ('"2.0', "line 3", "unmatched quote"),  # loadtxt joined the lines after it
    ("٣", "line 3, column 1", "not a number"),  # another script's digit
])
def test_a_csv_cell_numpy_refuses_is_named_by_its_line(tmp_path, cell, line, words):
    p = tmp_path / "bad.csv"
    p.write_text(csv_text().replace("2.0", cell, 1))
    for call in (lambda: read_table(p, "--input"), lambda: load_dataset(str(p))):
        with pytest.raises(DataError) as e:
            call()
        assert line in str(e.value) and words in str(e.value) and "\n" not in str(e.value)
        assert "could not convert" not in str(e.value) and "usecols" not in str(e.value)


def test_a_csv_of_semicolons_and_decimal_commas_is_told_to_use_commas(tmp_path):
    p = tmp_path / "eu.csv"
    p.write_text("a;b;c\n" + "".join(";".join(f"{v}".replace(".", ",") for v in r) + "\n" for r in ROWS))
    with pytest.raises(DataError, match=r"line 2 has 4 values .* not ';' or tabs, with '\.' as the decimal point"):
        read_table(p)


@pytest.mark.parametrize("head, data", [("gaussian", "real"), ("bernoulli", "binary")])
def test_components_for_a_head_without_a_mixture_is_refused_not_ignored(tmp_path, head, data):
    """--components 3 with --head gaussian (or on binary data) trained a model without mixtures and
    said nothing."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)) if data == "real" else (rng.random((40, 3)) < 0.5).astype(np.uint8)
    np.save(tmp_path / "d.npy", x)
    r = run("train", "--dataset", tmp_path / "d.npy", "--head", head, "--components", 3, "--epochs", 1,
            "--hidden", 4, "--out", tmp_path / "run")
    one_line_error(r, "--components 3", f"head {head}", "leave components out")
    assert not (tmp_path / "run" / "model.npz").exists()
    with pytest.raises(ValueError, match="components 3: .*has no mixture"):
        MADEDensity(head=head, components=3, epochs=1, hidden=(4,)).fit(x)
    ds = load_dataset(str(tmp_path / "d.npy"))
    assert MADEConfig.for_data(ds, head=head).components == MADEConfig.components  # left out: fine
    if data == "real":
        assert MADEConfig.for_data(ds, head="mog", components=3).components == 3


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("realrun")
    np.save(root / "d.npy", np.random.default_rng(1).normal(loc=5.0, size=(60, 2)))
    r = run("train", "--dataset", root / "d.npy", "--epochs", 1, "--hidden", 4, "--out", root / "run", "-q")
    assert r.exit_code == 0, r.output
    return root


@pytest.mark.parametrize("shift, scale", [(None, 1e-320), (1e308, None), (None, 1e-30)])
def test_a_standardisation_no_data_give_is_a_corrupt_checkpoint(real_run, tmp_path, shift, scale):
    """A subnormal scale, or a shift so large that the scale is below its rounding, loaded: samples
    were all equal to the shift, and evaluate/impute blamed the data ('more than 1e+12 standard
    deviations from the training data's mean; check the file's units')."""
    z = dict(np.load(real_run / "run" / "model.npz"))
    if shift is not None:
        z["shift"] = np.full_like(z["shift"], shift)
    if scale is not None:
        z["scale"] = np.full_like(z["scale"], scale)
    np.savez(tmp_path / "model.npz", **z)
    with pytest.raises(CheckpointError, match="entry 'scale' .* not a standardisation fitted to data"):
        load_checkpoint(tmp_path / "model.npz")
    one_line_error(run("sample", tmp_path / "model.npz", "-n", 3, "--out", tmp_path / "s.npy"), "corrupt")
    assert not (tmp_path / "s.npy").exists()


def test_a_fitted_standardisation_of_a_far_mean_loads(real_run, tmp_path):
    """The bound leaves real data alone: values near 1e10 that differ in their last digits."""
    z = dict(np.load(real_run / "run" / "model.npz"))
    z["shift"], z["scale"] = np.full(2, 1e10), np.full(2, 1e-5)
    np.savez(tmp_path / "model.npz", **z)
    model, _ = load_checkpoint(tmp_path / "model.npz")
    assert np.array_equal(model.scale, [1e-5, 1e-5])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")  # array API checks: not set up here
@pytest.mark.parametrize("est", [MADEDensity(hidden=(4,), epochs=1, eval_masks=2, random_state=0, head="gaussian"),
                                 MADEDensity(hidden=(4,), epochs=1, eval_masks=2, random_state=0, head="mog",
                                             components=2)])
def test_a_real_head_estimator_passes_scikit_learns_checks(est):
    """The tags said non-negative whole numbers for every head: check_positive_only_tag_during_fit
    failed for head gaussian and mog (negative values are real data)."""
    from sklearn.utils.estimator_checks import check_estimator
    failed = [r["check_name"] for r in check_estimator(est, on_fail=None) if r["status"] == "failed"]
    assert failed == []
    tags = est.__sklearn_tags__().input_tags
    assert not tags.positive_only and not tags.categorical
    assert not MADEDensity().__sklearn_tags__().input_tags.positive_only  # negatives: measurements (data.is_real)
    assert MADEDensity(head="categorical").__sklearn_tags__().input_tags.positive_only


@pytest.mark.parametrize("value, shown", [(np.nan, "nan"), (np.inf, "inf")])
def test_density_estimator_names_a_missing_or_infinite_entry(value, shown):
    """MADEDensity gave scikit-learn's advice (HistGradientBoostingClassifier ...) for NaN in X."""
    X = np.random.default_rng(0).normal(size=(30, 3))
    X[4, 2] = value
    for call in (lambda: MADEDensity(hidden=(4,), epochs=1).fit(X),
                 lambda: MADEDensity(hidden=(4,), epochs=1).fit(np.nan_to_num(X, posinf=0.0)).score_samples(X)):
        with pytest.raises(ValueError) as e:
            call()
        text = str(e.value)
        assert f"X has {shown} at row 4, column 2" in text and "MADEImputer" in text
        assert "HistGradientBoosting" not in text
    assert np.isfinite(MADEImputer(hidden=(4,), epochs=1, masks=2, draws=4).fit(np.where(X == np.inf, np.nan, X))
                       .transform(np.where(np.isfinite(X), X, np.nan))).all()
