"""Real-valued data: the scikit-learn tables, the 2-D toy densities, float/CSV files, discrete
columns, their bad inputs, ``made-np data info`` and the real-valued ``made-np density`` figure."""
import re
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import one_line_error, run_cli

from made_np import MADEConfig, plots
from made_np.data import TABLES, TOY_SPLIT, TOYS, DataError, load_dataset, split_fingerprints
from made_np.npyio import read_csv

SOURCE_SHAPES = {"wine": (178, 13), "breast-cancer": (569, 30), "diabetes": (442, 10), "iris": (150, 4),
                 "digits-real": (1797, 64)}


def sizes(ds):
    return [ds.train.shape[0], ds.valid.shape[0], ds.test.shape[0]]


def rows_sorted(x):
    return x[np.lexsort(x.T[::-1])]


def source(name):
    from sklearn import datasets

    if name == "diabetes":
        return datasets.load_diabetes(scaled=False).data
    return {"wine": datasets.load_wine, "breast-cancer": datasets.load_breast_cancer, "iris": datasets.load_iris,
            "digits-real": datasets.load_digits}[name]().data


# --------------------------------------------------------------------------- the scikit-learn tables


@pytest.mark.parametrize("name", TABLES)
def test_a_table_is_a_seeded_80_10_10_partition_of_its_rows(name):
    n, D = SOURCE_SHAPES[name]
    ds = load_dataset(name, seed=2)
    assert ds.classes == 0 and ds.is_real and not ds.is_binary and ds.D == D
    assert all(a.dtype == np.float64 and a.ndim == 2 for a in (ds.train, ds.valid, ds.test))
    assert sizes(ds) == [n - 2 * (n // 10), n // 10, n // 10]
    both = np.concatenate([ds.train, ds.valid, ds.test])
    x = source(name)
    if name == "digits-real":  # dequantized: floor(17 x) gives the pixels back, and x lies in [0, 1)
        assert both.min() >= 0 and both.max() < 1 and ds.image_shape == (8, 8)
        assert np.any(both != np.floor(both * 17) / 17)
        both = np.floor(both * 17)
    else:
        assert ds.image_shape is None and len(ds.columns) == D
    assert np.array_equal(rows_sorted(both), rows_sorted(x))  # every row once: none shared between splits
    again, other = load_dataset(name, seed=2), load_dataset(name, seed=3)
    assert all(np.array_equal(getattr(ds, s), getattr(again, s)) for s in ("train", "valid", "test"))
    assert not np.array_equal(ds.test, other.test)


def test_table_sizes_are_the_documented_ones():
    assert {name: sizes(load_dataset(name)) for name in TABLES} == {
        "wine": [144, 17, 17], "breast-cancer": [457, 56, 56], "diabetes": [354, 44, 44], "iris": [120, 15, 15],
        "digits-real": [1439, 179, 179]}


def test_diabetes_sex_is_the_one_discrete_column():
    ds = load_dataset("diabetes")
    assert ds.discrete_columns == (1,) and ds.columns[1] == "sex"
    assert set(np.unique(np.concatenate([ds.train[:, 1], ds.test[:, 1]]))) == {1.0, 2.0}
    assert ds.train[:, 0].max() > 10  # raw units (years), not scikit-learn's scaled columns
    for name in ("wine", "iris", "breast-cancer", "digits-real"):
        assert load_dataset(name).discrete_columns == (), name
    assert load_dataset("digits").discrete_columns == ()  # integer data: none


def test_digits_real_noise_follows_the_seed():
    def values(seed):  # all splits' values, whatever the split: the noise alone
        ds = load_dataset("digits-real", seed=seed)
        return np.sort(np.concatenate([ds.train, ds.valid, ds.test]).ravel())
    assert np.array_equal(values(0), values(0)) and not np.array_equal(values(0), values(1))


# --------------------------------------------------------------------------- the 2-D toys


@pytest.mark.parametrize("name", TOYS)
def test_a_toy_is_generated_from_the_seed(name):
    ds = load_dataset(name, seed=4)
    assert sizes(ds) == list(TOY_SPLIT) == [20000, 5000, 5000]
    assert ds.D == 2 and ds.classes == 0 and ds.image_shape is None and ds.discrete_columns == ()
    assert all(a.dtype == np.float64 and np.isfinite(a).all() for a in (ds.train, ds.valid, ds.test))
    both = np.concatenate([ds.train, ds.valid, ds.test])
    assert np.unique(both, axis=0).shape[0] == both.shape[0]  # no row shared between splits
    assert np.array_equal(ds.valid, load_dataset(name, seed=4).valid)
    assert not np.array_equal(ds.valid, load_dataset(name, seed=5).valid)
    for a in (ds.train, ds.test):  # the splits are draws of one density: their means agree
        assert np.allclose(a.mean(axis=0), both.mean(axis=0), atol=0.1)


def toy(name, seed=0):
    ds = load_dataset(name, seed=seed)
    return np.concatenate([ds.train, ds.valid, ds.test])


def test_8gaussians_has_eight_equal_clusters_at_the_ffjord_centres():
    x = toy("8gaussians")
    angles = np.arange(8) * np.pi / 4
    centres = 4 / 1.414 * np.stack([np.cos(angles), np.sin(angles)], 1)
    nearest = np.argmin(((x[:, None, :] - centres) ** 2).sum(-1), axis=1)
    assert np.allclose(np.bincount(nearest, minlength=8) / len(x), 1 / 8, atol=0.01)
    for k in range(8):
        cluster = x[nearest == k]
        assert np.allclose(cluster.mean(axis=0), centres[k], atol=0.03)
        assert np.allclose(cluster.std(axis=0), 0.5 / 1.414, atol=0.02)


def test_checkerboard_fills_the_eight_even_squares_evenly():
    x = toy("checkerboard")
    assert x.min() >= -4 and x.max() < 4
    i, j = np.floor(x[:, 0] / 2).astype(int), np.floor(x[:, 1] / 2).astype(int)
    assert np.all((i + j) % 2 == 0)  # never an odd square
    counts = np.bincount((i + 2) * 4 + (j + 2), minlength=16).reshape(4, 4)
    occupied = (np.add.outer(np.arange(4), np.arange(4)) % 2 == 0)
    assert np.all(counts[~occupied] == 0)
    assert np.allclose(counts[occupied] / len(x), 1 / 8, atol=0.01)


def test_moons_lie_on_two_arcs_of_radius_2():
    x = toy("moons")
    upper, lower = np.array([-1.0, -0.2]), np.array([1.0, 0.8])
    d = np.stack([np.linalg.norm(x - upper, axis=1), np.linalg.norm(x - lower, axis=1)], 1)
    on_upper = (x[:, 1] - upper[1] > 0.0) & (np.abs(d[:, 0] - 2) < np.abs(d[:, 1] - 2))
    assert np.mean(np.min(np.abs(d - 2), axis=1)) < 0.2  # noise of 0.1 before scaling by 2
    assert 0.45 < on_upper.mean() < 0.55


def test_pinwheel_has_five_arms():
    x = toy("pinwheel")
    phi, r = np.arctan2(x[:, 1], x[:, 0]), np.linalg.norm(x, axis=1)
    sector = np.floor((phi + np.pi) / (2 * np.pi / 5)).astype(int) % 5
    assert np.allclose(np.bincount(sector, minlength=5) / len(x), 0.2, atol=0.02)  # five-fold symmetry
    arm = np.abs(r - 2) < 0.1  # f1 near 1: turned by 0.25 e beyond its arm's angle 2 pi k / 5
    wrapped = np.angle(np.exp(5j * (phi[arm] + 0.25 * np.e))) / 5
    assert np.median(np.abs(wrapped)) < 0.1


def test_2spirals_are_point_symmetric_and_bounded():
    x = toy("2spirals")
    phi, r = np.arctan2(x[:, 1], x[:, 0]), np.linalg.norm(x, axis=1)
    # on an arm 3 x = t (-cos t, sin t) (or its negative): phi + 3 r is 0 modulo pi; the arm's offset
    # U[0, 0.5)^2 / 3 and the noise N(0, 0.1^2) spread it by about 0.3 rad (uniform angles: pi / 4)
    far = r > 1
    off = np.angle(np.exp(2j * (phi[far] + 3 * r[far]))) / 2
    assert 0.27 < np.median(np.abs(off)) < 0.35
    assert np.quantile(r, 0.999) < 3.7 and 2.0 < np.median(r) < 2.6
    quadrant = np.bincount((x[:, 0] > 0) * 2 + (x[:, 1] > 0), minlength=4) / len(x)
    assert quadrant[0] == pytest.approx(quadrant[3], abs=0.015)  # (-, -) against (+, +)
    assert quadrant[1] == pytest.approx(quadrant[2], abs=0.015)


# --------------------------------------------------------------------------- files


def real_rows(n=50, D=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, D)) * [1.0, 10.0, 0.1][:D] + 5


def write_csv(path, x, header=None, fmt="%.17g"):
    np.savetxt(path, x, delimiter=",", fmt=fmt, header=header or "", comments="")
    if header is None:  # np.savetxt writes an empty first line for an empty header
        path.write_text(path.read_text().lstrip("\n"))
    return path


def test_a_float_npy_with_fractions_is_real_valued(tmp_path):
    x = real_rows()
    np.save(tmp_path / "r.npy", x)
    ds = load_dataset(tmp_path / "r.npy", seed=1)
    assert ds.classes == 0 and ds.train.dtype == np.float64 and sizes(ds) == [40, 5, 5]
    assert np.array_equal(rows_sorted(np.concatenate([ds.train, ds.valid, ds.test])), rows_sorted(x))
    assert ds.image_shape is None and ds.columns == ()
    np.save(tmp_path / "i.npy", np.floor(np.abs(x)))  # integer-valued floats: categorical as before
    ints = load_dataset(tmp_path / "i.npy")
    assert ints.classes > 2 and ints.train.dtype == np.uint8


def test_csv_with_and_without_header(tmp_path):
    x = real_rows()
    named = load_dataset(write_csv(tmp_path / "h.csv", x, header="a,b,c"), seed=3)
    plain = load_dataset(write_csv(tmp_path / "p.csv", x), seed=3)
    assert named.columns == ("a", "b", "c") and plain.columns == ()
    for ds in (named, plain):
        assert ds.classes == 0 and sizes(ds) == [40, 5, 5]
    assert np.array_equal(named.train, plain.train)
    assert np.array_equal(rows_sorted(np.concatenate([named.train, named.valid, named.test])), rows_sorted(x))
    binary = load_dataset(write_csv(tmp_path / "b.csv", (x > 5).astype(int), header="a,b,c", fmt="%d"))
    assert binary.is_binary and binary.train.dtype == np.uint8


def test_read_csv_names_the_lines_of_rows(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text('\ufeffx, "y"\r\n\r\n1.5,2\r\n  \r\n"3",\r\n')
    values, lines, names = read_csv(p)
    assert names == ("x", "y") and lines.tolist() == [3, 5]
    assert np.array_equal(values[0], [1.5, 2.0]) and values[1, 0] == 3 and np.isnan(values[1, 1])


def test_an_npz_of_float_splits_is_real_valued(tmp_path):
    x = real_rows(30)
    np.savez(tmp_path / "r.npz", train_data=x[:20], valid_data=x[20:25], test_data=x[25:])
    ds = load_dataset(tmp_path / "r.npz")
    assert ds.classes == 0 and np.array_equal(ds.valid, x[20:25]) and sizes(ds) == [20, 5, 5]


def test_nan_is_kept_only_with_allow_nan(tmp_path):
    x = real_rows()
    x[7, 2] = np.nan
    np.save(tmp_path / "m.npy", x)
    with pytest.raises(DataError, match=r"m\.npy: array has 1 missing \(NaN\) value, the first nan at row 7, "
                                        r"column 2; drop those rows, fill them in, or train on the observed entries \(made-np train "
                                        r"--allow-missing"):
        load_dataset(tmp_path / "m.npy")
    ds = load_dataset(tmp_path / "m.npy", allow_nan=True)
    both = np.concatenate([ds.train, ds.valid, ds.test])
    assert np.isnan(both).sum() == 1 and ds.classes == 0


def test_fingerprints_of_real_data_see_fractions(tmp_path):
    x = real_rows()
    np.save(tmp_path / "a.npy", x)
    x[np.random.default_rng(1).permutation(50)[:40][0], 0] += 0.25  # a training row of seed 1
    np.save(tmp_path / "b.npy", x)
    a, b = (split_fingerprints(load_dataset(tmp_path / n, seed=1)) for n in ("a.npy", "b.npy"))
    assert a["train"] != b["train"] and a["test"] == b["test"]


def bad(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = "a,b\n" + "".join(f"{i}.5,{i % 3}.25\n" for i in range(12))
BAD_FILES = {
    "empty": ("e.csv", "", ["e.csv: empty (no rows of numbers)"]),
    "blank lines only": ("w.csv", "\n  \n", ["w.csv: empty"]),
    "header only": ("h.csv", "a,b\n", ["h.csv: a header line but no rows"]),
    "text cell": ("t.csv", GOOD.replace("3.5,0.25", "3.5,abc"), ["t.csv: line 5, column 1 ('b'): 'abc' is not a number"]),
    "semicolons": ("s.csv", "1.5;2\n3;4\n", ["s.csv: line 2, column 0", "separate the values by commas"]),
    "ragged": ("r.csv", GOOD.replace("4.5,1.25\n", "4.5\n"), ["r.csv: line 6 has 1 value but the header (line 1) "
                                                               "has 2"]),
    "header width": ("w2.csv", "a,b,c\n" + GOOD[4:], ["w2.csv: the header (line 1) names 3 columns but the rows "
                                                      "have 2"]),
    "empty cell": ("n.csv", GOOD.replace("5.5,2.25", "5.5,"), ["n.csv: array has 1 missing (NaN) value",
                                                              "line 7, column 1 ('b')"]),
    "infinite": ("i.csv", GOOD.replace("6.5,0.25", "inf,0.25").replace("7.5,1.25", "-inf,1.25"),
                 ["i.csv: array has 2 infinite values, the first inf at line 8, column 0 ('a')",
                  "replace them by finite numbers"]),
    "integer cell missing": ("m.csv", "a,b\n" + "".join(f"{i},{'' if i == 2 else i % 3}\n" for i in range(12)),
                             ["m.csv: array has 1 NaN/inf value, the first nan at line 4, column 1 ('b')"]),
    "constant column": ("c.csv", "".join(f"{i}.5,7\n" for i in range(12)),
                        ["c.csv: column 1 of array (train part) is constant (7 in every row)", "drop that column"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_real_file_is_one_line_naming_file_and_place(tmp_path, case):
    name, text, needles = BAD_FILES[case]
    path = bad(tmp_path, name, text)
    with pytest.raises(DataError) as info:
        load_dataset(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    result = run_cli("data", "info", path)
    one_line_error(result, *needles)


def test_a_column_constant_in_the_training_split_alone_is_refused(tmp_path):
    x = np.column_stack([np.arange(10) + 0.5, np.ones(10)])
    np.savez(tmp_path / "c.npz", train_data=x[:6], valid_data=x[6:8] + 1, test_data=x[8:] + 1)
    with pytest.raises(DataError, match=r"c\.npz: column 1 of key 'train_data' is constant \(1 in every row\)"):
        load_dataset(tmp_path / "c.npz")


def test_infinite_values_in_an_npz_split_name_the_key(tmp_path):
    x = real_rows(30)
    x[22, 1] = np.inf
    np.savez(tmp_path / "r.npz", train_data=x[:20], valid_data=x[20:25], test_data=x[25:])
    with pytest.raises(DataError, match=r"r\.npz: key 'valid_data' has 1 infinite value, the first inf at row 2, "
                                        r"column 1"):
        load_dataset(tmp_path / "r.npz")


def test_values_beyond_float32_are_refused(tmp_path):
    x = real_rows()
    x[4, 0] = -1e39
    np.save(tmp_path / "big.npy", x)
    with pytest.raises(DataError, match=r"big\.npy: array has 1 huge value, the first -1e\+39 at row 4, column 0; "
                                        r"values beyond float32's range"):
        load_dataset(tmp_path / "big.npy")


def test_an_unknown_name_lists_the_real_sets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"moonz: no such file.*wine.*2spirals.*\.csv"):
        load_dataset("moonz")


# --------------------------------------------------------------------------- made-np data info


def test_data_info_shows_each_columns_type():
    out = run_cli("data", "info", "diabetes", "--seed", "1")
    assert out.exit_code == 0, out.output
    assert "diabetes: D = 10 (real-valued), image shape None" in out.output
    assert "  train (354, 10)      float64" in out.output
    assert "column 1 ('sex'): discrete, 2 values: 1, 2" in out.output
    assert re.search(r"column 0 \('age'\): real, 19 \.\. 79", out.output)
    moons = run_cli("data", "info", "moons").output
    assert "moons: D = 2 (real-valued)" in moons and "column 1: real, " in moons
    assert "column" not in run_cli("data", "info", "digits").output  # integer data: as before


def test_data_info_refuses_a_dataset_path_for_a_real_set(tmp_path):
    one_line_error(run_cli("data", "info", "wine", "--dataset-path", tmp_path), "--dataset-path", "needs none")


# --------------------------------------------------------------------------- the density figure


def gaussian_log_density(mean=(1.0, -2.0), std=(0.5, 1.0)):
    mean, std = np.asarray(mean), np.asarray(std)

    def log_density(points):
        z = (points - mean) / std
        return -0.5 * (z ** 2).sum(1) - np.log(2 * np.pi * std.prod())
    return log_density


def test_density_grid_spans_the_data_and_holds_the_mass():
    rng = np.random.default_rng(0)
    data = rng.normal([1.0, -2.0], [0.5, 1.0], size=(20000, 2))
    density, extent = plots.density_grid(gaussian_log_density(), data, grid=101)
    span = data.max(0) - data.min(0)
    assert np.allclose(extent, [data[:, 0].min() - 0.05 * span[0], data[:, 0].max() + 0.05 * span[0],
                                data[:, 1].min() - 0.05 * span[1], data[:, 1].max() + 0.05 * span[1]])
    area = (extent[1] - extent[0]) * (extent[3] - extent[2]) / 101 ** 2
    assert density.sum() * area == pytest.approx(1.0, abs=2e-3)
    i, j = np.unravel_index(np.argmax(density), density.shape)  # rows are x2, columns x1
    x1 = extent[0] + (j + 0.5) * (extent[1] - extent[0]) / 101
    x2 = extent[2] + (i + 0.5) * (extent[3] - extent[2]) / 101
    assert x1 == pytest.approx(1.0, abs=0.05) and x2 == pytest.approx(-2.0, abs=0.1)


def test_density_figure_draws_the_model_beside_the_data(tmp_path):
    data = np.random.default_rng(1).normal([1.0, -2.0], [0.5, 1.0], size=(3000, 2))
    fig = plots.density_figure(gaussian_log_density(), data, grid=50)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 2
    titles = [ax.get_title() for ax in images]
    assert titles[0].startswith("model density (mass on the grid ")
    assert float(re.search(r"grid ([0-9.]+)", titles[0]).group(1)) == pytest.approx(1.0, abs=0.01)
    assert titles[1] == "data (N = 3000)"
    assert images[0].images[0].get_array().shape == (50, 50) and images[1].images[0].get_array().shape == (50, 50)
    out = plots.plot_density(gaussian_log_density(), data, tmp_path / "sub" / "d.png", grid=40)
    assert out.stat().st_size > 1000


def test_density_grid_refuses_bad_points_and_callables():
    with pytest.raises(ValueError, match=r"data must be \(N, 2\)"):
        plots.density_grid(gaussian_log_density(), np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"log_density gave shape \(3,\) for 100 points"):
        plots.density_grid(lambda p: np.zeros(3), np.ones((5, 2)), grid=10)


# --------------------------------------------------------------------------- made-np density on a real run


def fake_real_run(monkeypatch, tmp_path, spec="8gaussians", D=2, context=0):
    """What the real-valued heads will give: a run trained on a real data set (its dataset record
    says classes 0) whose model has ``log_prob``; here a stand-in density of the 8 Gaussians."""
    from made_np.cli import sample as sample_cli

    angles = np.arange(8) * np.pi / 4
    centres, s = 4 / 1.414 * np.stack([np.cos(angles), np.sin(angles)], 1), 0.5 / 1.414

    def log_prob(points):
        d2 = ((np.asarray(points)[:, None, :] - centres) ** 2).sum(-1)
        return np.log(np.exp(-d2 / (2 * s * s)).mean(1) / (2 * np.pi * s * s))

    config = MADEConfig(D=D, hidden=[8], context=context)
    model = SimpleNamespace(config=config, log_prob=log_prob)
    info = {"path": tmp_path / "run" / "model.npz", "model_config": config, "train_config": None,
            "dataset": {"spec": spec, "path": None, "seed": 0, "classes": 0}}

    def load_run(checkpoint, device, max_memory, outputs=()):
        return model, info, [p for _, p, _ in outputs]
    monkeypatch.setattr(sample_cli, "load_run", load_run)
    return log_prob


def test_density_of_a_real_run_prints_its_test_nll_and_draws_the_figure(monkeypatch, tmp_path):
    log_prob = fake_real_run(monkeypatch, tmp_path)
    out = tmp_path / "d.png"
    result = run_cli("density", tmp_path / "run", "--out", out)
    assert result.exit_code == 0, result.output
    nll = float(re.search(r"test NLL: (-?[0-9.]+) nats", result.output).group(1))
    assert nll == pytest.approx(-log_prob(load_dataset("8gaussians").test).mean(), abs=1e-4)
    assert f"wrote {out}" in result.output and out.stat().st_size > 1000


def test_density_refuses_real_runs_it_cannot_draw(monkeypatch, tmp_path):
    fake_real_run(monkeypatch, tmp_path)
    one_line_error(run_cli("density", tmp_path / "run", "-n", 10, "--seed", 3), "-n and --seed", "leave them out")
    fake_real_run(monkeypatch, tmp_path, spec="wine", D=13)
    one_line_error(run_cli("density", tmp_path / "run"), "needs a model of D = 2", "such as moons", "D = 13")
    fake_real_run(monkeypatch, tmp_path, context=3)
    one_line_error(run_cli("density", tmp_path / "run"), "unconditional model")


def test_the_safe_reader_refuses_in_one_line_what_it_cannot_read(tmp_path):
    """Files the suite did not reach: a CSV that is not UTF-8, an .npy of an unknown format version, and
    .npz members that are encrypted or compressed in a way NumPy never writes."""
    import zipfile

    from made_np.npyio import DataError, Npz, read_npy

    (tmp_path / "latin.csv").write_bytes("x,y\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.csv: not a UTF-8 text file"):
        read_csv(tmp_path / "latin.csv")
    np.save(tmp_path / "a.npy", np.zeros(3))
    raw = bytearray((tmp_path / "a.npy").read_bytes())
    raw[6] = 9  # format version 9.0
    (tmp_path / "v9.npy").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"v9\.npy: not a valid \.npy array \(.*9"):
        read_npy(tmp_path / "v9.npy")
    with zipfile.ZipFile(tmp_path / "bz.npz", "w", compression=zipfile.ZIP_BZIP2) as z:
        z.write(tmp_path / "a.npy", "train_data.npy")
    with Npz(tmp_path / "bz.npz") as archive, pytest.raises(DataError, match="zip compression method 12"):
        archive.read("train_data")
    with zipfile.ZipFile(tmp_path / "enc.npz", "w") as z:
        z.write(tmp_path / "a.npy", "train_data.npy")
    raw = bytearray((tmp_path / "enc.npz").read_bytes())
    for header in (b"PK\x03\x04", b"PK\x01\x02"):  # the encrypted flag in the local and central headers
        at = raw.index(header) + (6 if header == b"PK\x03\x04" else 8)
        raw[at] |= 1
    (tmp_path / "enc.npz").write_bytes(bytes(raw))
    with Npz(tmp_path / "enc.npz") as archive, pytest.raises(DataError, match="encrypted"):
        archive.read("train_data")


@pytest.mark.parametrize("cell, fix", [("NA", "leave a missing value's cell empty (or write nan)"),
                                       ("null", "leave a missing value's cell empty"),
                                       ("red", "categories coded 0..K-1")])
def test_a_csv_cell_that_is_no_number_gets_the_fix_its_spelling_suggests(tmp_path, cell, fix):
    (tmp_path / "c.csv").write_text("a,b\n" + "".join(f"{i}.5,1\n" for i in range(12)) + f"{cell},2\n")
    with pytest.raises(DataError, match=rf"line 14, column 0 \('a'\): '{cell}' is not a number; .*{re.escape(fix)}"):
        load_dataset(tmp_path / "c.csv")
