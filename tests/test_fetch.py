"""Tests of made_np.download.fetch: verified, cached, https-or-file:// downloads, all offline.

Every download comes from a ``file://`` mirror built in ``tmp_path`` (or, for the
https code path, a stub of pooch's HTTP downloader); the checksums of the small
synthetic files are registered by swapping entries of ``download.SOURCES``. One test
fetches the real reference files from ``../shared/data`` with the real checksums.
"""
import hashlib
import os
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from made_np import download
from made_np.data import DataError, load_dataset
from made_np.download import fetch, fetch_binarized_mnist

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KEYS = ("train_data", "valid_data", "test_data")
ROWS = (6, 2, 3)


def splits_of(rows=ROWS, D=784, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {k: (rng.random((n, D)) < 0.3).astype(dtype) for k, n in zip(KEYS, rows)}


def register_mnist(monkeypatch, splits):
    """Point SOURCES['binarized-mnist'] at ``splits``: their shapes and content checksums."""
    src = replace(
        download.SOURCES["binarized-mnist"],
        urls=("file:///nonexistent/default.npz",),  # a default source is never a real network
        shapes=tuple(splits[k].shape for k in KEYS),
        sha256={k: hashlib.sha256(np.ascontiguousarray(splits[k], dtype=np.uint8)).hexdigest() for k in KEYS},
    )
    monkeypatch.setitem(download.SOURCES, "binarized-mnist", src)
    return src


def register_table(monkeypatch, file: Path):
    src = replace(download.SOURCES["2d"], urls=("file:///nonexistent/distribution.npy",),
                  sha256=hashlib.sha256(file.read_bytes()).hexdigest())
    monkeypatch.setitem(download.SOURCES, "2d", src)
    return src


@pytest.fixture
def mnist_mirror(tmp_path, monkeypatch):
    """A float64 .npz mirror of a registered 6/2/3 x 784 binary data set."""
    splits = splits_of()
    register_mnist(monkeypatch, splits)
    src = tmp_path / "mirror" / "binarized_mnist.npz"
    src.parent.mkdir()
    np.savez(src, **splits)
    return src, splits


@pytest.fixture
def table_mirror(tmp_path, monkeypatch):
    table = np.full((4, 4), 1 / 16, dtype=np.float32)
    src = tmp_path / "mirror2d" / "distribution.npy"
    src.parent.mkdir()
    np.save(src, table)
    register_table(monkeypatch, src)
    return src


def one_line(info) -> str:
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


# --------------------------------------------------------------------------- binarized MNIST


def test_verified_npz_download_lands_as_uint8(tmp_path, mnist_mirror):
    src, splits = mnist_mirror
    out = fetch("binarized-mnist", cache_dir=tmp_path / "cache", url=src.as_uri())
    assert out == tmp_path / "cache" / "binarized_mnist.npz"
    assert os.listdir(out.parent) == ["binarized_mnist.npz"]  # no temporary left
    with np.load(out) as z:
        for key in KEYS:
            assert z[key].dtype == np.uint8 and np.array_equal(z[key], splits[key])
    ds = load_dataset("mnist", path=out.parent)
    assert ds.is_binary and ds.train.shape == (6, 784)


def test_amat_template_download(tmp_path, monkeypatch):
    splits = splits_of(dtype=np.uint8)
    register_mnist(monkeypatch, splits)
    mirror = tmp_path / "amat"
    mirror.mkdir()
    for key, arr in splits.items():
        np.savetxt(mirror / f"binarized_mnist_{key.split('_')[0]}.amat", arr, fmt="%d")
    url = mirror.as_uri() + "/binarized_mnist_{split}.amat"
    out = fetch_binarized_mnist(tmp_path / "cache", url=url)  # the old entry point still works
    with np.load(out) as z:
        assert np.array_equal(z["test_data"], splits["test_data"])
    assert os.listdir(out.parent) == ["binarized_mnist.npz"]


def test_cached_verified_file_is_not_downloaded_again(tmp_path, mnist_mirror, monkeypatch):
    src, _ = mnist_mirror
    out = fetch("mnist", cache_dir=tmp_path / "cache", url=src.as_uri())
    before = out.read_bytes(), out.stat().st_mtime_ns
    src.unlink()  # a second download would now fail

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded although the cache holds a verified file")

    monkeypatch.setattr(download, "_download", no_download)
    again = fetch("binarized-mnist", cache_dir=tmp_path / "cache", url=src.as_uri())
    assert again == out and (out.read_bytes(), out.stat().st_mtime_ns) == before


def test_mismatched_download_never_replaces_the_good_cache(tmp_path, mnist_mirror, monkeypatch):
    src, splits = mnist_mirror
    cache = tmp_path / "cache"
    out = fetch("binarized-mnist", cache_dir=cache, url=src.as_uri())
    good = out.read_bytes()
    zeros = tmp_path / "zeros.npz"
    np.savez(zeros, **{k: np.zeros_like(v) for k, v in splits.items()})  # right shapes, wrong content

    # The cache verifies, so the zeros are not even downloaded.
    assert fetch("binarized-mnist", cache_dir=cache, url=zeros.as_uri()) == out
    assert out.read_bytes() == good

    # Now the registry changes (a new release): the cache no longer verifies and a
    # download happens; the zeros fail their checksum and the old file stays.
    register_mnist(monkeypatch, splits_of(seed=1))
    with pytest.raises(DataError) as info:
        fetch("binarized-mnist", cache_dir=cache, url=zeros.as_uri())
    msg = one_line(info)
    assert zeros.as_uri() in msg and "key 'train_data' fails its checksum" in msg
    assert "cached file was left as it was" in msg and "--url" in msg
    assert out.read_bytes() == good and os.listdir(cache) == ["binarized_mnist.npz"]


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda s: {k: np.zeros_like(v) for k, v in s.items()}, "key 'train_data' fails its checksum"),
        (lambda s: dict(s, test_data=np.full_like(s["test_data"], 0.5)), "key 'test_data' has values other than 0 and 1"),
        (lambda s: dict(s, valid_data=s["valid_data"][:, :100]), "key 'valid_data' has shape (2, 100), expected (2, 784)"),
        (lambda s: {k: v for k, v in s.items() if k != "test_data"}, "missing key 'test_data'"),
    ],
    ids=["zeros", "grey", "shape", "key"],
)
def test_bad_mnist_downloads_are_refused(tmp_path, mnist_mirror, change, needle):
    _, splits = mnist_mirror
    bad = tmp_path / "bad.npz"
    np.savez(bad, **change(splits))
    with pytest.raises(DataError) as info:
        fetch("binarized-mnist", cache_dir=tmp_path / "cache", url=bad.as_uri())
    msg = one_line(info)
    assert needle in msg and bad.as_uri() in msg
    assert ".part" not in msg  # the URL is named, not the temporary file
    assert os.listdir(tmp_path / "cache") == []


def test_broken_download_leaves_no_temporary_files(tmp_path, mnist_mirror):
    missing = (tmp_path / "gone.npz").as_uri()
    with pytest.raises(DataError) as info:
        fetch("binarized-mnist", cache_dir=tmp_path / "cache", url=missing)
    msg = one_line(info)
    assert msg.startswith("could not fetch binarized-mnist: ") and missing in msg and "no such file" in msg
    assert os.listdir(tmp_path / "cache") == []
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04" + bytes(200))
    with pytest.raises(DataError, match="not a valid .npz archive"):
        fetch("binarized-mnist", cache_dir=tmp_path / "cache", url=garbage.as_uri())
    assert os.listdir(tmp_path / "cache") == []


def test_default_sources_are_tried_in_order(tmp_path, mnist_mirror, monkeypatch):
    src, _ = mnist_mirror
    entry = download.SOURCES["binarized-mnist"]
    monkeypatch.setitem(download.SOURCES, "binarized-mnist",
                        replace(entry, urls=((tmp_path / "down.npz").as_uri(), src.as_uri())))
    assert fetch("binarized-mnist", cache_dir=tmp_path / "cache").is_file()


def test_default_cache_dir_is_where_the_loader_looks(tmp_path, mnist_mirror, monkeypatch):
    src, splits = mnist_mirror
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MADE_NP_DATA", raising=False)
    out = fetch("binarized-mnist", url=src.as_uri())
    assert out == download.cache_dir() / "binarized_mnist.npz"
    assert np.array_equal(load_dataset("mnist").valid, splits["valid_data"])


# --------------------------------------------------------------------------- 2-D table


def test_2d_table_download_checked_by_file_sha256(tmp_path, table_mirror):
    cache = tmp_path / "cache"
    out = fetch("2d", cache_dir=cache, url=table_mirror.as_uri())
    assert out == cache / "distribution.npy" and out.read_bytes() == table_mirror.read_bytes()
    assert load_dataset("2d", path=cache).classes == 4

    other = tmp_path / "other.npy"
    np.save(other, np.full((4, 4), 1 / 16, dtype=np.float64))  # same table, different bytes
    download.SOURCES["2d"] = replace(download.SOURCES["2d"], sha256="0" * 64)  # monkeypatch undoes it
    with pytest.raises(DataError) as info:
        fetch("2d", cache_dir=cache, url=other.as_uri())
    msg = one_line(info)
    assert other.as_uri() in msg and "fails its checksum" in msg and "left as it was" in msg
    assert out.read_bytes() == table_mirror.read_bytes() and os.listdir(cache) == ["distribution.npy"]


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize("name", ["binarized-mnist", "2d"])
def test_plain_http_is_refused(tmp_path, name):
    url = "http://example.org/data.npz"
    with pytest.raises(DataError) as info:
        fetch(name, cache_dir=tmp_path / "cache", url=url)
    msg = one_line(info)
    assert msg.startswith(url + ": ") and "https://" in msg and "file://" in msg
    assert not (tmp_path / "cache").exists()  # refused before anything is touched


def test_default_urls_are_https():
    for src in download.SOURCES.values():
        assert src.urls and all(u.startswith("https://") for u in src.urls)
    assert download.MNIST_AMAT_URL.startswith("https://")  # the template of the three .amat files


def test_bare_path_and_other_schemes_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"unsupported URL \(scheme none\).*file:///"):
        fetch("2d", cache_dir=tmp_path, url=str(tmp_path / "distribution.npy"))
    with pytest.raises(DataError, match=r"scheme ftp"):
        fetch("2d", cache_dir=tmp_path, url="ftp://example.org/distribution.npy")
    with pytest.raises(DataError, match=r"file:// URL names host 'example\.org'; use file:///absolute/path"):
        fetch("2d", cache_dir=tmp_path, url="file://example.org/distribution.npy")
    assert list(tmp_path.iterdir()) == []  # no temporary folder left
    with pytest.raises(DataError, match=r"cannot fetch 'digits': choose one of binarized-mnist, 2d"):
        fetch("digits", cache_dir=tmp_path)


def test_fifo_mirror_does_not_hang(tmp_path, table_mirror):
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    result = {}

    def run():
        try:
            fetch("2d", cache_dir=tmp_path / "cache", url=fifo.as_uri())
        except DataError as exc:
            result["msg"] = str(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # unblock the reader, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("fetch blocked on a FIFO")
    assert "FIFO" in result["msg"] and os.listdir(tmp_path / "cache") == []


def test_https_goes_through_pooch_http_downloader(tmp_path, table_mirror, monkeypatch):
    """The https path, offline: pooch's HTTPDownloader is stubbed to copy the mirror."""
    import pooch

    calls = []

    def fake_call(self, url, output_file, pooch_obj, check_only=False):
        calls.append((url, self.progressbar, self.kwargs.get("timeout")))
        Path(output_file).write_bytes(table_mirror.read_bytes())

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", fake_call)
    url = "https://example.org/distribution.npy"
    out = fetch("2d", cache_dir=tmp_path / "cache", url=url, progress=True, timeout=7)
    assert out.read_bytes() == table_mirror.read_bytes()
    assert calls[0][0] == url and calls[0][2] == 7


# --------------------------------------------------------------------------- real files


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"reference data folder {SHARED} is absent")
def test_real_files_through_file_urls_with_real_checksums(tmp_path):
    if not ((SHARED / download.MNIST_FILE).is_file() and (SHARED / download.DIST_FILE).is_file()):
        pytest.skip(f"reference files absent from {SHARED}")
    cache = tmp_path / "cache"
    table = fetch("2d", cache_dir=cache, url=(SHARED / download.DIST_FILE).as_uri())
    assert hashlib.sha256(table.read_bytes()).hexdigest() == download.DIST_SHA256
    mnist = fetch("binarized-mnist", cache_dir=cache, url=(SHARED / download.MNIST_FILE).as_uri())
    with np.load(mnist) as z:
        for key, shape in zip(KEYS, download.MNIST_SHAPES):
            assert z[key].shape == shape and z[key].dtype == np.uint8
            assert hashlib.sha256(np.ascontiguousarray(z[key])).hexdigest() == download.MNIST_SHA256[key]
    assert sorted(os.listdir(cache)) == ["binarized_mnist.npz", "distribution.npy"]
    assert load_dataset("mnist", path=cache).train.shape == (50000, 784)


@pytest.mark.skipif(not (SHARED / "distribution.npy").is_file(), reason=f"{SHARED}/distribution.npy is absent")
def test_cli_data_fetch_2d_through_a_mirror(tmp_path):
    from click.testing import CliRunner

    from made_np.cli import cli

    url = (SHARED / "distribution.npy").as_uri()
    args = ["data", "fetch", "2d", "--cache-dir", str(tmp_path), "--url", url]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert (tmp_path / "distribution.npy").read_bytes() == (SHARED / "distribution.npy").read_bytes()
    stamp = (tmp_path / "distribution.npy").stat().st_mtime_ns
    again = CliRunner().invoke(cli, args)  # verified and cached: not downloaded again
    assert again.exit_code == 0 and (tmp_path / "distribution.npy").stat().st_mtime_ns == stamp
    refused = CliRunner().invoke(cli, ["data", "fetch", "2d", "--cache-dir", str(tmp_path), "--url", "http://x/t.npy"])
    assert refused.exit_code == 2 and "http://" in refused.output and "Traceback" not in refused.output
