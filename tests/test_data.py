"""Tests of made_np.data: every loader format, every bad input, the downloader."""
import io
import os
import threading
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import examples
from hypothesis import given
from hypothesis import strategies as st

from made_np import data, download, limits, npyio
from made_np.data import MAX_CLASSES, DataError, Dataset, cache_dir, load_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KEYS = ("train_data", "valid_data", "test_data")


@pytest.fixture
def no_search_dirs(tmp_path, monkeypatch):
    """Empty every default search location: no env dir, empty cache, cwd with no ../shared."""
    monkeypatch.delenv("MADE_NP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    return tmp_path


def binary_splits(rows=(20, 5, 5), D=16, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {k: (rng.random((n, D)) < 0.3).astype(dtype) for k, n in zip(KEYS, rows)}


def write_amat(folder: Path, splits: dict, fmt="%d"):
    folder.mkdir(exist_ok=True)
    for key, arr in splits.items():
        split = key.split("_")[0]
        np.savetxt(folder / f"binarized_mnist_{split}.amat", arr, fmt=fmt)
    return folder


# --------------------------------------------------------------------------- digits


def test_digits_shapes_values_and_determinism():
    ds = load_dataset("digits")
    assert isinstance(ds, Dataset) and ds.name == "digits"
    assert (ds.train.shape, ds.valid.shape, ds.test.shape) == ((1297, 64), (250, 64), (250, 64))
    assert ds.train.dtype == np.uint8 and ds.classes == 2 and ds.is_binary and ds.D == 64
    assert ds.image_shape == (8, 8) and ds.true_density is None
    every = np.concatenate([ds.train, ds.valid, ds.test])
    assert set(np.unique(every)) == {0, 1}

    from sklearn.datasets import load_digits

    expected = (load_digits().data >= 8).astype(np.uint8)
    assert sorted(map(bytes, every)) == sorted(map(bytes, expected))  # a permutation of all rows

    again, other = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert np.array_equal(ds.train, again.train)
    assert not np.array_equal(ds.train, other.train)


# --------------------------------------------------------------------------- npz / npy / amat


def test_npz_binary_float_becomes_uint8(tmp_path):
    splits = binary_splits(dtype=np.float64)
    np.savez(tmp_path / "toy.npz", **splits)
    ds = load_dataset(str(tmp_path / "toy.npz"))
    assert ds.name == "toy" and ds.classes == 2 and ds.is_binary
    assert ds.train.dtype == np.uint8 and ds.train.shape == (20, 16)
    assert ds.image_shape == (4, 4)
    assert np.array_equal(ds.test, splits["test_data"])


def test_fingerprints_depend_on_the_values_only():
    """A run trained through the API on int64, float or Fortran-ordered splits (and int64 labels
    as context) has the fingerprints of the same values loaded as uint8 (float64 contexts), so
    evaluating it from the command line does not find its data changed; a changed value does."""
    rng = np.random.default_rng(0)
    splits = [(rng.random((n, 7)) < 0.5).astype(np.uint8) for n in (5000, 30, 20)]  # train: two blocks
    labels = {f"{k}_context": np.arange(len(v)) % 3 for k, v in zip(("train", "valid", "test"), splits)}
    ref = Dataset("u8", *splits, 2, None, **{k: v.astype(np.float64) for k, v in labels.items()})
    values, contexts = data.split_fingerprints(ref), data.split_fingerprints(ref, context=True)
    assert set(values) == set(contexts) == {"train", "valid", "test"} and values != contexts
    for convert in (lambda a: a.astype(np.int64), lambda a: a.astype(np.float64), lambda a: a.astype(np.float32),
                    lambda a: a.astype(bool), np.asfortranarray):
        other = Dataset("other", *map(convert, splits), 2, None, **labels)
        assert data.split_fingerprints(other) == values
        assert data.split_fingerprints(other, context=True) == contexts
    flipped = splits[1].copy()
    flipped[4, 2] ^= 1
    now = data.split_fingerprints(Dataset("flip", splits[0], flipped, splits[2], 2, None))
    assert [now[k] == values[k] for k in ("train", "valid", "test")] == [True, False, True]


def test_npz_categorical_classes_over_all_splits(tmp_path):
    rng = np.random.default_rng(0)
    splits = {k: rng.integers(0, 4, size=(6, 3)) for k in KEYS}
    splits["test_data"][0, 0] = 6  # the max sits in the test split only
    np.savez(tmp_path / "cat.npz", **{k: v.astype(np.float32) for k, v in splits.items()})
    ds = load_dataset(str(tmp_path / "cat.npz"))
    assert ds.classes == 7 and not ds.is_binary
    assert ds.train.dtype == np.uint8 and ds.image_shape is None
    assert np.array_equal(ds.test, splits["test_data"])


def test_npz_up_to_max_classes(tmp_path):
    splits = {k: np.array([[0, MAX_CLASSES - 1], [5, 1]], dtype=np.int64) for k in KEYS}
    np.savez(tmp_path / "wide.npz", **splits)
    ds = load_dataset(str(tmp_path / "wide.npz"))
    assert ds.classes == MAX_CLASSES == 256 and ds.train.dtype == np.uint8


def test_npy_split_80_10_10(tmp_path):
    arr = np.arange(50 * 3).reshape(50, 3) % 5
    arr[:, 0] = np.arange(50)  # make rows unique so the split can be checked
    np.save(tmp_path / "rows.npy", arr)
    ds = load_dataset(str(tmp_path / "rows.npy"), seed=3)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (40, 5, 5)
    assert ds.classes == 50
    every = np.concatenate([ds.train, ds.valid, ds.test])
    assert sorted(every[:, 0]) == list(range(50))
    assert np.array_equal(ds.valid, load_dataset(str(tmp_path / "rows.npy"), seed=3).valid)


def test_amat_folder(tmp_path):
    splits = binary_splits(D=9)
    ds = load_dataset(str(write_amat(tmp_path / "amat", splits)))
    assert ds.is_binary and ds.train.dtype == np.uint8 and ds.image_shape is None  # D = 9: a table, no 3 x 3 image
    for key, arr in zip(KEYS, (ds.train, ds.valid, ds.test)):
        assert np.array_equal(arr, splits[key])


def test_amat_folder_with_float_tokens_uses_slow_path(tmp_path):
    splits = binary_splits(D=5)
    ds = load_dataset(str(write_amat(tmp_path / "amat", splits, fmt="%.1f")))
    assert ds.is_binary and np.array_equal(ds.valid, splits["valid_data"])


# --------------------------------------------------------------------------- bad inputs


def save_npz(path, **overrides):
    splits = binary_splits()
    splits.update(overrides)
    np.savez(path, **{k: v for k, v in splits.items() if v is not None})
    return path


BAD_NPZ = {
    "missing key": (dict(valid_data=None), ["valid_data", "keys found: ", "test_data"]),
    "not 2-D": (dict(train_data=np.zeros(5)), ["train_data", "not 2-D", "(5,)"]),
    "zero rows": (dict(test_data=np.zeros((0, 16))), ["test_data", "zero rows"]),
    "widths": (dict(valid_data=np.zeros((3, 15))), ["different widths", "valid_data' 15", "16"]),
    "nan": (dict(train_data=np.array([[np.nan, 0, np.inf, 1.0]] * 2)), ["train_data", "4 NaN/inf"]),
    "real with NaN": (dict(valid_data=np.array([[0.5, np.nan] + [0.0] * 14])),  # a fraction makes it real-valued
                      ["valid_data", "1 missing (NaN) value", "row 0, column 1"]),
    "dtype": (dict(train_data=np.array([["a", "b"]])), ["train_data", "dtype"]),
    "object": (dict(train_data=np.array([[None]], dtype=object)), ["cannot read", "pickle"]),
}


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_bad_npz_message_names_file_key_and_problem(tmp_path, case):
    overrides, needles = BAD_NPZ[case]
    path = save_npz(tmp_path / f"bad_{case.replace(' ', '_')}.npz", **overrides)
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    msg = str(info.value)
    assert "\n" not in msg and path.name in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_a_float_file_with_fractions_is_real_valued(tmp_path):
    """Real-valued data (classes 0, float64 in the data's units); whole-number floats stay classes."""
    x = np.random.default_rng(0).normal(size=(50, 3))
    np.save(tmp_path / "real.npy", x)
    ds = load_dataset(str(tmp_path / "real.npy"))
    assert ds.classes == 0 and ds.train.dtype == np.float64 and ds.image_shape is None
    np.testing.assert_array_equal(np.sort(np.concatenate([ds.train, ds.valid, ds.test]), axis=0), np.sort(x, axis=0))
    np.save(tmp_path / "whole.npy", np.round(np.abs(x)))
    assert load_dataset(str(tmp_path / "whole.npy")).classes >= 2


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match=r"nope\.npz: no such file.*digits"):
        load_dataset(str(tmp_path / "nope.npz"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt: not an \.npz or \.npy"):
        load_dataset(str(tmp_path / "notes.txt"))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"broken\.npz: not a valid \.npz archive"):
        load_dataset(str(tmp_path / "broken.npz"))


def test_bad_npy(tmp_path):
    np.save(tmp_path / "few.npy", np.zeros((9, 2)))
    with pytest.raises(DataError, match=r"few\.npy: array has only 9 rows"):
        load_dataset(str(tmp_path / "few.npy"))
    np.save(tmp_path / "flat.npy", np.zeros(12))
    with pytest.raises(DataError, match=r"flat\.npy: array is not 2-D"):
        load_dataset(str(tmp_path / "flat.npy"))


def test_bad_amat_folder(tmp_path):
    folder = write_amat(tmp_path / "amat", binary_splits(D=4))
    (folder / "binarized_mnist_test.amat").unlink()
    with pytest.raises(DataError, match=r"amat: .*lacks binarized_mnist_test\.amat"):
        load_dataset(str(folder))
    (folder / "binarized_mnist_test.amat").write_text("0 1 0 1\n1 0\n")
    with pytest.raises(DataError, match=r"binarized_mnist_test\.amat: cannot read"):
        load_dataset(str(folder))
    for empty in ("", "  \n\n\t"):  # loadtxt printed its UserWarning before the error
        (folder / "binarized_mnist_test.amat").write_text(empty)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(DataError, match=r"binarized_mnist_test\.amat: holds no numbers"):
                load_dataset(str(folder))


# --------------------------------------------------------------------------- hostile inputs


def npy_header(shape, descr="<f8", py2=False) -> bytes:
    """A version 1.0 .npy header; ``py2`` writes the shape as Python 2 did (``20L``)."""
    dims = ", ".join(f"{n}L" if py2 else str(n) for n in shape)
    dims = f"({dims},)" if len(shape) == 1 else f"({dims})"
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}"
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")


def test_lying_npy_header_is_refused_without_allocating(tmp_path):
    path = tmp_path / "liar.npy"
    path.write_bytes(npy_header((2**20, 2**30)) + bytes(100))  # claims 8 PiB of float64
    assert path.stat().st_size == 228
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    assert time.perf_counter() - start < 1.0
    msg = str(info.value)
    assert "\n" not in msg and "liar.npy: header declares shape (1048576, 1073741824)" in msg
    assert "8.0 PiB" in msg and "truncated or corrupt" in msg
    with pytest.raises(DataError, match="header declares"):
        load_dataset("2d", path=path)


def test_npy_format_versions(tmp_path):
    arr = np.arange(60).reshape(20, 3) % 7
    for version in ((1, 0), (2, 0), (3, 0)):
        path = tmp_path / f"v{version[0]}.npy"
        with open(path, "wb") as f:
            np.lib.format.write_array(f, arr, version=version)
        ds = load_dataset(str(path))
        assert ds.classes == 7 and sorted(np.concatenate([ds.train, ds.valid, ds.test])[:, 0]) == sorted(arr[:, 0])
    lie = tmp_path / "v3lie.npy"
    text = "{'descr': '<i8', 'fortran_order': False, 'shape': (99999, 3), }".ljust(117) + "\n"
    lie.write_bytes(b"\x93NUMPY\x03\x00" + len(text).to_bytes(4, "little") + text.encode() + bytes(64))
    with pytest.raises(DataError, match=r"v3lie\.npy: header declares shape \(99999, 3\)"):
        load_dataset(str(lie))


def test_deflate_bomb_bound(tmp_path, monkeypatch):
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, **{k: np.zeros((200, 16)) for k in KEYS})
    assert load_dataset(str(path)).classes == 2
    monkeypatch.setattr(npyio, "MAX_DEFLATE_RATIO", 1)  # zeros compress far better than 1:1
    with pytest.raises(DataError, match=r"zeros\.npz: key 'train_data': not a valid \.npz archive \(member declares"):
        load_dataset(str(path))


def test_cached_2d_table_that_fails_its_checksum_is_refused(no_search_dirs):
    cached = no_search_dirs / "xdg" / "made-np"
    cached.mkdir(parents=True)
    write_table(cached / "distribution.npy", np.full((2, 2), 0.25))
    with pytest.raises(DataError, match=r"distribution\.npy: cached file fails its checksum.*made-np data fetch 2d"):
        load_dataset("2d")
    assert load_dataset("2d", path=cached).classes == 2  # an explicit path is the user's choice


def test_lying_header_inside_npz_is_refused(tmp_path):
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key in KEYS:
            zf.writestr(f"{key}.npy", npy_header((2**20, 2**30)) + bytes(16))
    with pytest.raises(DataError, match=r"liar\.npz: key 'train_data': header declares shape"):
        load_dataset(str(path))


def test_truncated_npz_member_is_refused(tmp_path):
    good = save_npz(tmp_path / "good.npz")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.npz: not a valid \.npz archive"):
        load_dataset(str(cut))


def run_with_watchdog(fn, fifo, seconds=5.0):
    """Run ``fn`` in a thread; if it blocks on ``fifo``, unblock it and fail."""
    result = {}

    def target():
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            result["exc"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"blocked on the FIFO {fifo}")
    return result.get("exc")


@pytest.mark.parametrize(
    "load",
    [
        lambda f: load_dataset(str(f)),
        lambda f: load_dataset("2d", path=f),
        lambda f: load_dataset("mnist", path=f),
    ],
    ids=["path", "2d", "mnist"],
)
def test_fifo_is_refused_without_hanging(tmp_path, load):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    exc = run_with_watchdog(lambda: load(fifo), fifo)
    assert isinstance(exc, DataError), exc
    msg = str(exc)
    assert "\n" not in msg and "pipe.npz: is a FIFO (named pipe), not a regular file" in msg


def test_fifo_amat_file_is_refused(tmp_path):
    folder = write_amat(tmp_path / "amat", binary_splits(D=4))
    (folder / "binarized_mnist_test.amat").unlink()
    os.mkfifo(folder / "binarized_mnist_test.amat")
    exc = run_with_watchdog(lambda: load_dataset(str(folder)), folder / "binarized_mnist_test.amat")
    assert isinstance(exc, DataError), exc
    assert "binarized_mnist_test.amat: is a FIFO (named pipe), not a regular file" in str(exc)


@examples(10)
@given(tail=st.binary(max_size=300))
def test_pk_garbage_is_not_a_valid_npz_and_never_mentions_pickles(tmp_path_factory, tail):
    path = tmp_path_factory.mktemp("pk") / "garbage.npz"
    path.write_bytes(b"PK" + tail)
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: not a valid .npz archive (")
    assert "pickle" not in msg.lower()


def test_pk_garbage_examples(tmp_path):
    for i, blob in enumerate([b"PK", b"PK\x03\x04", b"PK\x05\x06" + bytes(10), b"PKzzzz" * 40]):
        path = tmp_path / f"g{i}.npz"
        path.write_bytes(blob)
        with pytest.raises(DataError, match=r"not a valid \.npz archive") as info:
            load_dataset(str(path))
        assert "pickle" not in str(info.value).lower()
    (tmp_path / "empty.npz").write_bytes(b"PK\x05\x06" + bytes(18))  # a valid, empty zip
    with pytest.raises(DataError, match=r"empty\.npz: missing key 'train_data' \(keys found: none\)"):
        load_dataset(str(tmp_path / "empty.npz"))


def test_zero_columns_are_refused(tmp_path):
    path = save_npz(tmp_path / "empty.npz", **{k: np.zeros((3, 0)) for k in KEYS})
    with pytest.raises(DataError, match=r"empty\.npz: key 'train_data' has zero columns \(shape \(3, 0\)\)"):
        load_dataset(str(path))
    np.save(tmp_path / "empty.npy", np.zeros((20, 0), dtype=np.uint8))
    with pytest.raises(DataError, match=r"empty\.npy: array has zero columns"):
        load_dataset(str(tmp_path / "empty.npy"))


def write_py2_npz(path, splits):
    """An .npz as NumPy wrote it under Python 2 (shape ``(20L, 16L)``), like the MADE authors' files."""
    with zipfile.ZipFile(path, "w") as zf:
        for key, arr in splits.items():
            arr = np.ascontiguousarray(arr, dtype="<f8")
            zf.writestr(f"{key}.npy", npy_header(arr.shape, "<f8", py2=True) + arr.tobytes())
    return path


def test_python2_npz_loads_without_warning(tmp_path):
    splits = binary_splits(dtype=np.float64)
    path = write_py2_npz(tmp_path / "py2.npz", splits)
    with pytest.warns(UserWarning, match="created on Python 2"):
        with np.load(path) as z:  # NumPy itself warns on these files ...
            z["train_data"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ... the loader must not
        ds = load_dataset(str(path))
    assert np.array_equal(ds.valid, splits["valid_data"])


def test_wrong_file_for_binarized_mnist(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "cat.npy", rng.integers(0, 200, size=(200, 8)))
    with pytest.raises(DataError) as info:
        load_dataset("binarized-mnist", path=tmp_path / "cat.npy")
    msg = str(info.value)
    assert "\n" not in msg and "cat.npy: not binarized MNIST: expected 784 binary columns" in msg
    assert "found 8 columns" in msg
    save_npz(tmp_path / "narrow.npz")  # binary but 16 columns
    with pytest.raises(DataError, match=r"narrow\.npz: not binarized MNIST: expected 784"):
        load_dataset("mnist", path=tmp_path / "narrow.npz")


@pytest.mark.parametrize("spec", ["digits", "2d", "mnist", "some.npz"])
def test_negative_seed_names_the_data_seed(spec):
    with pytest.raises(DataError, match=r"data seed -1 .*--data-seed must be in 0\.\."):
        load_dataset(spec, seed=-1)


@pytest.mark.parametrize("value", [256, -3, 1e5, 2**40])
def test_whole_numbers_that_cannot_be_classes_are_real_valued(tmp_path, value):
    """A count, a year, a price: whole numbers below 0 or from MAX_CLASSES on are measurements (the
    real heads), in any split of an .npz and in an .npy of either dtype; a file of whole numbers in
    0..255 stays categorical unless real=True (what --head mog asks for)."""
    arr = np.arange(60, dtype=np.float64 if isinstance(value, float) else np.int64).reshape(20, 3) % 7
    arr[4, 2] = value
    np.save(tmp_path / "counts.npy", arr)
    ds = load_dataset(str(tmp_path / "counts.npy"))
    assert ds.classes == 0 and ds.train.dtype == np.float64 and value in np.concatenate([ds.train, ds.valid, ds.test])
    splits = binary_splits()
    splits["test_data"] = splits["test_data"].astype(np.int64) * int(value)  # only the test split leaves 0..255
    np.savez(tmp_path / "s.npz", **splits)
    ds = load_dataset(str(tmp_path / "s.npz"))
    assert ds.classes == 0 and set(np.unique(ds.test)) == {0, value}
    np.save(tmp_path / "small.npy", arr % 7)
    small = load_dataset(str(tmp_path / "small.npy"))
    assert small.classes == 7 and small.train.dtype == np.uint8 and "real" not in small.spec
    as_real = load_dataset(str(tmp_path / "small.npy"), real=True)
    assert as_real.classes == 0 and as_real.spec["real"] is True
    np.testing.assert_array_equal(as_real.train, small.train.astype(np.float64))


def test_huge_2d_table_is_refused(tmp_path):
    np.save(tmp_path / "big.npy", np.full((300, 300), 1 / 90000, dtype=np.float32))
    with pytest.raises(DataError, match=r"big\.npy: table is 300 x 300; at most MAX_CLASSES = 256"):
        load_dataset("2d", path=tmp_path / "big.npy")


def test_device_is_refused(tmp_path):
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    with pytest.raises(DataError, match=r"/dev/null: is a character device, not a regular file"):
        load_dataset("/dev/null")


# --------------------------------------------------------------------------- mnist search


def test_mnist_not_found_says_how_to_fetch(no_search_dirs):
    with pytest.raises(DataError, match=r"binarized_mnist\.npz not found.*made-np data fetch"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="no such file"):
        load_dataset("mnist", path=no_search_dirs / "elsewhere")


def mnist_like(rows, seed=0):
    """Small binarized-MNIST look-alike: 784 binary columns, ``rows`` rows per split."""
    return binary_splits(rows=rows, D=784, dtype=np.uint8, seed=seed)


def register_mnist(monkeypatch, splits):
    """Make SOURCES['binarized-mnist'] describe ``splits`` (shapes and content sha256)."""
    import hashlib
    from dataclasses import replace

    src = replace(
        download.SOURCES["binarized-mnist"],
        shapes=tuple(splits[k].shape for k in KEYS),
        sha256={k: hashlib.sha256(np.ascontiguousarray(splits[k], dtype=np.uint8)).hexdigest() for k in KEYS},
    )
    monkeypatch.setitem(download.SOURCES, "binarized-mnist", src)
    return src


def test_mnist_search_order(no_search_dirs, monkeypatch):
    tmp = no_search_dirs
    shared = tmp / "shared" / "data"  # ../shared/data relative to the cwd
    shared.mkdir(parents=True)
    np.savez(shared / "binarized_mnist.npz", **mnist_like((6, 2, 2)))
    assert load_dataset("mnist").name == "binarized-mnist"

    cached = tmp / "xdg" / "made-np"
    cached.mkdir(parents=True)
    in_cache = mnist_like((7, 2, 2), seed=1)
    np.savez(cached / "binarized_mnist.npz", **in_cache)
    assert cache_dir() == cached
    with pytest.raises(DataError, match=r"binarized_mnist\.npz: key 'train_data' has shape .*data fetch"):
        load_dataset("mnist")  # the cache is checked against the published checksums
    register_mnist(monkeypatch, in_cache)
    assert len(load_dataset("binarized-mnist").train) == 7  # cache beats ../shared/data

    env = tmp / "env"
    env.mkdir()
    np.savez(env / "binarized_mnist.npz", **mnist_like((8, 2, 2)))
    monkeypatch.setenv("MADE_NP_DATA", str(env))
    assert len(load_dataset("mnist").train) == 8  # $MADE_NP_DATA beats the cache

    mine = tmp / "mine.npz"
    np.savez(mine, **mnist_like((9, 2, 2)))
    assert len(load_dataset("mnist", path=mine).train) == 9  # an explicit path beats all
    amat = write_amat(tmp / "amat", mnist_like((4, 2, 2)))
    assert len(load_dataset("mnist", path=amat).train) == 4


def test_cached_mnist_that_fails_checksums_is_refused(no_search_dirs, monkeypatch):
    cached = no_search_dirs / "xdg" / "made-np"
    cached.mkdir(parents=True)
    good = mnist_like((5, 2, 2))
    register_mnist(monkeypatch, good)
    zeros = {k: np.zeros_like(v) for k, v in good.items()}  # right shapes, wrong content
    np.savez(cached / "binarized_mnist.npz", **zeros)
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    msg = str(info.value)
    assert "\n" not in msg and "binarized_mnist.npz: key 'train_data' fails its checksum" in msg
    assert "made-np data fetch binarized-mnist" in msg


# --------------------------------------------------------------------------- 2-D


def write_table(path, table):
    np.save(path, np.asarray(table, dtype=np.float32))
    return path


def test_2d_from_synthetic_table(tmp_path):
    table = np.zeros((5, 5))
    table[1, 2], table[4, 0], table[0, 4] = 0.5, 0.3, 0.2
    path = write_table(tmp_path / "distribution.npy", table)
    ds = load_dataset("2d", path=tmp_path)  # a folder holding distribution.npy
    assert (ds.train.shape, ds.valid.shape, ds.test.shape) == ((72000, 2), (8000, 2), (20000, 2))
    assert ds.classes == 5 and ds.D == 2 and ds.image_shape is None and ds.train.dtype == np.uint8
    every = np.concatenate([ds.train, ds.valid, ds.test])
    cells = {tuple(c) for c in np.unique(every, axis=0)}
    assert cells == {(1, 2), (4, 0), (0, 4)}  # only cells with mass are drawn
    assert np.mean((every[:, 0] == 1) & (every[:, 1] == 2)) == pytest.approx(0.5, abs=0.01)
    np.testing.assert_allclose(ds.true_density, table, atol=1e-7)
    assert np.array_equal(load_dataset("2d", path=path).test, ds.test)
    assert not np.array_equal(load_dataset("2d", path=path, seed=1).test, ds.test)


@pytest.mark.parametrize(
    "table, needle",
    [
        (np.full((4, 4), 0.1), "sums to 1.6"),
        (np.array([[0.6, -0.1], [0.3, 0.2]]), "negative value -0.1"),
        (np.array([[np.nan, 0.5], [0.25, 0.25]]), "1 NaN/inf"),
        (np.full((2, 2, 2), 0.125), "square 2-D"),
        (np.full((2, 4), 0.125), "square 2-D"),
    ],
)
def test_2d_table_validation(tmp_path, table, needle):
    path = write_table(tmp_path / "table.npy", table)
    with pytest.raises(DataError) as info:
        load_dataset("2d", path=path)
    assert "table.npy" in str(info.value) and needle in str(info.value)


def test_2d_not_found(no_search_dirs):
    with pytest.raises(DataError, match=r"distribution\.npy not found"):
        load_dataset("2d")


# --------------------------------------------------------------------------- real files

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"reference data folder {SHARED} is absent"
)


@needs_shared
def test_2d_from_real_table():
    if not (SHARED / "distribution.npy").is_file():
        pytest.skip(f"{SHARED / 'distribution.npy'} is absent")
    ds = load_dataset("2d", path=SHARED / "distribution.npy")
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (72000, 8000, 20000)
    assert ds.classes == 200 and ds.true_density.shape == (200, 200)
    assert ds.train.max() < 200 and ds.true_density.sum() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def real_mnist():
    path = SHARED / "binarized_mnist.npz"
    if not path.is_file():
        pytest.skip(f"reference data {path} is absent")
    return load_dataset("mnist", path=path)


def test_real_binarized_mnist(real_mnist):
    ds = real_mnist
    assert (ds.train.shape, ds.valid.shape, ds.test.shape) == (
        (50000, 784), (10000, 784), (10000, 784)
    )
    assert ds.train.dtype == np.uint8 and ds.is_binary and ds.image_shape == (28, 28)
    assert ds.train[:5000].max() == 1
    assert ds.train.mean() == pytest.approx(0.1306, abs=1e-4)
    assert ds.test.mean() == pytest.approx(0.1325, abs=1e-4)


def test_a_dangling_or_looping_link_is_named_as_such(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    (tmp_path / "gone").symlink_to(tmp_path / "nothing.npy")
    for name in ("a", "gone"):
        with pytest.raises(DataError, match="a symbolic link to a missing file .or a loop of links."):
            load_dataset(str(tmp_path / name))


def test_a_ragged_text_matrix_says_what_is_wrong_without_numpys_advice(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"binarized_mnist_{split}.amat").write_text("0 1 0\n1 1\n")
    with pytest.raises(DataError, match=r"changed from 3 to 2 at row 2\); every row needs the same number") as err:
        load_dataset(str(tmp_path))
    assert "usecols" not in str(err.value)


def test_npz_naming_a_key_twice_is_refused(tmp_path):
    """Two train_data.npy members: NumPy (and made-np, before) read the last one silently."""
    path = save_npz(tmp_path / "twice.npz")
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        buf = io.BytesIO()
        np.save(buf, np.ones((3, 16)))
        zf.writestr("train_data.npy", buf.getvalue())
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    assert "\n" not in str(info.value) and "twice.npz: key 'train_data' appears twice" in str(info.value)


def test_arrays_beyond_the_memory_limit_are_refused_from_their_header(tmp_path):
    """A real .npy (not a lying one) of 2 MiB under a 1 MiB limit: refused before it is read."""
    np.save(tmp_path / "big.npy", np.zeros((2**15, 8), dtype=np.float64))
    limits.use_limit(2**20)  # as a command's --max-memory 1M
    try:
        with pytest.raises(DataError) as info:
            load_dataset(str(tmp_path / "big.npy"))
    finally:
        limits.use_limit(None)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path / 'big.npy'} needs about 2.0 MiB of memory")
    assert "the limit is 1.0 MiB (--max-memory" in msg


def test_amat_text_beyond_the_memory_limit_is_refused_before_parsing(tmp_path, monkeypatch):
    """Parsing text takes ~20 bytes a byte: a 100 MB .amat took 2 GB with no check."""
    folder = write_amat(tmp_path / "amat", binary_splits(rows=(100, 5, 5), D=400))
    size = (folder / "binarized_mnist_train.amat").stat().st_size  # 80 kB of text: 1.6 MB to parse
    limits.use_limit(2**20)
    try:
        with pytest.raises(DataError) as info:
            load_dataset(str(folder))
    finally:
        limits.use_limit(None)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{folder / 'binarized_mnist_train.amat'} needs about")
    assert f"{size * npyio.TEXT_BYTES_PER_BYTE / 2**20:.1f} MiB" in msg and "(--max-memory" in msg
    monkeypatch.setenv("MADE_NP_MAX_MEMORY", "2M")  # outside a command: the environment's limit
    assert load_dataset(str(folder)).train.shape == (100, 400)
