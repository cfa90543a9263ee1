"""A third hostile-input campaign: each test holds a class of input that once did harm (replaced a
device by a file, read a different array than the file holds, dropped a masked array's mask, ...)."""
import os

import numpy as np
import pytest
from conftest import one_line_error, run_cli as run

from made_np import MADE, MADEConfig, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """An untrained 6-variable binary model with a bank of 4 masks, saved as a checkpoint."""
    path = tmp_path_factory.mktemp("h3") / "model.npz"
    return save_checkpoint(path, MADE(MADEConfig(D=6, hidden=(8,), num_masks=4)))


def test_outputs_never_replace_a_pipe_or_device(ckpt, tmp_path):
    """A rename onto a FIFO, a socket or /dev/null replaced the node by a regular file (as root:
    /dev/null itself, through ``save_checkpoint('/dev/null', model)``)."""
    from made_np import runfolder

    fifo = tmp_path / "out.npy"
    os.mkfifo(fifo)
    (tmp_path / "link.npz").symlink_to(fifo)
    for args in (("sample", ckpt, "-n", 2, "--out", fifo), ("masks", ckpt, "--out", tmp_path / "link.npz")):
        one_line_error(run(*args), "--out", "not a regular file")
    with pytest.raises(OSError, match="not a regular file") as err:
        with runfolder.atomic_file(fifo, "wb") as f:
            f.write(b"x")
    assert err.value.filename == str(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        save_checkpoint(fifo, MADE(MADEConfig(D=6, hidden=(8,))))
    assert fifo.exists() and not fifo.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.npz", "out.npy"]  # no temporary file left


def test_an_npy_header_that_reads_only_part_of_its_data_is_refused(tmp_path):
    """A header declaring (100, 16) over the bytes of (200, 16) read the first half of the rows, silently;
    inside an .npz as well."""
    import io
    import zipfile

    from made_np import DataError, load_dataset, read_table

    x = (np.random.default_rng(0).random((200, 16)) < 0.5).astype(np.int64)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<i8", "fortran_order": False, "shape": (100, 16)})
    lie = buf.getvalue() + x.tobytes()
    (tmp_path / "half.npy").write_bytes(lie)
    for load in (load_dataset, read_table):
        with pytest.raises(DataError, match=r"half\.npy: header declares shape \(100, 16\) of int64 \(12.5 KiB\) "
                                            r"but 25.0 KiB follow: truncated or corrupt"):
            load(str(tmp_path / "half.npy"))
    with zipfile.ZipFile(tmp_path / "half.npz", "w") as z:
        for key in ("train_data", "valid_data", "test_data"):
            z.writestr(f"{key}.npy", lie)
    with pytest.raises(DataError, match=r"half\.npz: key 'train_data': header declares shape \(100, 16\)"):
        load_dataset(str(tmp_path / "half.npz"))
    np.save(tmp_path / "whole.npy", x)  # what numpy.save writes: exactly the declared bytes
    assert read_table(tmp_path / "whole.npy")[0].shape == (200, 16)


def test_a_masked_array_with_masked_entries_is_refused_not_read_through(tmp_path):
    """numpy.ma arrays lost their mask on the way in: evaluate, fit and the estimators read the values
    under it as data (a fully masked x scored like the values beneath)."""
    from made_np import MADEDensity, MADEImputer, TrainConfig, evaluate, fit, log_marginal

    model = MADE(MADEConfig(D=6, hidden=(8,), num_masks=4))
    x = (np.random.default_rng(0).random((20, 6)) < 0.5).astype(np.int64)
    hidden = np.ma.masked_array(x, mask=x == 1)
    fragment = r"is a masked array with \d+ masked entries, whose values would be read as data: pass x\.filled\(np\.nan\)"
    for name, call in (("x", lambda: evaluate(model, hidden)), ("x", lambda: model.nll(hidden)),
                       ("x", lambda: log_marginal(model, hidden, x >= 0)),
                       ("X", lambda: MADEDensity(hidden=(4,), epochs=1).fit(hidden)),
                       ("X", lambda: MADEImputer(hidden=(4,), epochs=1).fit(hidden))):
        with pytest.raises(ValueError, match=f"{name} {fragment}"):
            call()
    ds = type("Data", (), {"train": hidden, "valid": x})()
    with pytest.raises(ValueError, match="dataset.train " + fragment):
        fit(model, ds, TrainConfig(epochs=1))
    est = MADEDensity(hidden=(4,), epochs=1, random_state=0).fit(x)
    with pytest.raises(ValueError, match="X " + fragment):
        est.score_samples(hidden)
    nothing_masked = np.ma.masked_array(x, mask=False)  # a masked array whose mask hides nothing: its values
    assert evaluate(model, nothing_masked)["nll"] == evaluate(model, x)["nll"]
    assert est.score_samples(nothing_masked) == pytest.approx(est.score_samples(x))


def test_save_checkpoint_checks_its_arguments_and_path(tmp_path, monkeypatch):
    """``train_config={}`` or ``optimizer="adam"`` were an AttributeError from inside the writer; best
    weights of another count or shape were written, and load_checkpoint refused the file; an empty
    path wrote ./model.npz (``Path('')`` is the current folder)."""
    model = MADE(MADEConfig(D=6, hidden=(8,)))
    for kwargs, message in ((dict(best_params=[np.zeros((6, 8))]), r"not written: best_params have shapes \[\(6, 8\)\], "
                                                                   r"the model's parameters \(W0, b0, W1, b1\) \[\(6, 8\), "),
                            (dict(best_params=[np.zeros(3)] * 4), r"best_params have shapes \[\(3,\), \(3,\)"),
                            (dict(optimizer="adam"), r"optimizer must be a made_np.optim.Optimizer \(or None\), got "
                                                     r"'adam' \(string\)")):
        with pytest.raises(ValueError, match=message):
            save_checkpoint(tmp_path / "m.npz", model, **kwargs)
    with pytest.raises(ValueError, match=r"train_config must be a made_np.TrainConfig \(or None\), got dict: build one "
                                         r"with TrainConfig.from_dict\(d\)"):
        save_checkpoint(tmp_path / "m.npz", model, train_config={"epochs": 3})
    monkeypatch.chdir(tmp_path)
    for path in ("", " "):
        with pytest.raises(ValueError, match="path is an empty name; give the checkpoint's file"):
            save_checkpoint(path, model)
    assert list(tmp_path.iterdir()) == []


def test_a_data_seed_beyond_what_a_checkpoint_stores_is_refused_when_loading():
    """load_dataset took seed 2**64, and the run's first checkpoint refused it in its data spec."""
    from made_np import DataError, load_dataset

    with pytest.raises(DataError, match=r"data seed 18446744073709551616 is not allowed: --data-seed must be in "
                                        r"0\.\.9223372036854775807"):
        load_dataset("digits", seed=2**64)


@pytest.mark.parametrize("method", ["fast", "naive"])
def test_n_and_noise_of_other_rows_are_refused(method):
    """``sample(model, 3, noise=(2, D))`` drew 2 samples, silently ignoring n."""
    from made_np import sample

    model = MADE(MADEConfig(D=6, hidden=(8,), num_masks=4))
    u = np.random.default_rng(0).random((2, 6))
    with pytest.raises(ValueError, match=r"noise must have shape \(3, 6\), got \(2, 6\): give n or noise, or both"):
        sample(model, 3, noise=u, method=method)
    assert (sample(model, 2, noise=u, method=method) == sample(model, noise=u, method=method)).all()


def test_an_input_through_a_broken_link_is_named_as_such(ckpt, tmp_path):
    """--input / --observed / --context files behind a dangling link or a loop of links were 'no such
    file', while the data set loader named the link."""
    from made_np import DataError, read_array, read_table

    (tmp_path / "loop.npy").symlink_to(tmp_path / "loop.npy")
    (tmp_path / "gone.csv").symlink_to(tmp_path / "nothing.csv")
    for read, name in ((read_table, "gone.csv"), (read_table, "loop.npy"), (read_array, "loop.npy")):
        with pytest.raises(DataError, match=f"--input .*{name}: a symbolic link to a missing file .or a loop of links."):
            read(tmp_path / name, "--input")
    one_line_error(run("complete", ckpt, "--input", tmp_path / "loop.npy", "--occlude", "top"), "--input",
                   "a symbolic link to a missing file")


def test_a_header_declaring_more_bytes_than_a_float_holds_is_refused(tmp_path):
    """A shape of a 400-digit int was an OverflowError while wording the refusal (fmt_bytes' float)."""
    from made_np import DataError, load_dataset
    from made_np.limits import fmt_bytes

    text = "{'descr': '<i8', 'fortran_order': False, 'shape': (" + "9" * 400 + ", 4), }"
    text += " " * (63 - (10 + len(text)) % 64) + "\n"
    (tmp_path / "big.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode() + bytes(64))
    with pytest.raises(DataError, match=r"big\.npy: header declares shape \(9+, 4\) of int64 \(more than 1e308 bytes\) "
                                        r"but only 64 bytes follow"):
        load_dataset(str(tmp_path / "big.npy"))
    assert (fmt_bytes(10**400), fmt_bytes(1536), fmt_bytes(2**61)) == ("more than 1e308 bytes", "1.5 KiB", "2.0 EiB")


def test_a_data_spec_whose_context_contradicts_the_model_is_refused(tmp_path):
    """A checkpoint of an unconditional model whose data spec said context 'labels' loaded, and
    train --resume then failed with a ValueError traceback from inside the training loop."""
    from made_np import CheckpointError, load_checkpoint

    model = MADE(MADEConfig(D=6, hidden=(8,)))
    for spec, fragment in (({"spec": "digits", "context": "labels"}, r"'labels' \(string\) does not fit the model's context of width 0: none expected"),
                           ({"spec": "digits", "context": "bogus"}, r"'bogus' \(string\) does not fit")):
        with pytest.raises(CheckpointError, match=r"dataset\.context " + fragment):
            save_checkpoint(tmp_path / "m.npz", model, dataset_spec=spec)
    conditional = MADE(MADEConfig(D=6, hidden=(8,), context=3))
    with pytest.raises(CheckpointError, match="context of width 3: labels or file expected"):
        save_checkpoint(tmp_path / "m.npz", conditional, dataset_spec={"spec": "digits", "context": "none"})
    assert not (tmp_path / "m.npz").exists()
    save_checkpoint(tmp_path / "m.npz", conditional, dataset_spec={"spec": "digits", "context": "labels"})
    assert load_checkpoint(tmp_path / "m.npz")[1]["dataset"]["context"] == "labels"


@pytest.mark.parametrize("name", ["results.json", "metrics.csv", "loss.png"])
def test_a_run_file_that_is_a_folder_is_refused_before_training(name, tmp_path):
    """results.json a folder: --resume trained to the end, then failed to write its results."""
    run_dir = tmp_path / "r"
    assert run("train", "--epochs", 1, "--hidden", 4, "--num-masks", 1, "--out", run_dir, "-q").exit_code == 0
    (run_dir / name).unlink()
    (run_dir / name).mkdir()
    before = (run_dir / "model.npz").read_bytes()
    one_line_error(run("train", "--resume", run_dir, "--epochs", 3), f"{name}: not a regular file", "remove or rename it")
    assert (run_dir / "model.npz").read_bytes() == before  # nothing trained


def test_choices_and_option_names_take_any_case(tmp_path):
    """--head BERNOULLI was refused while --dataset DIGITS and --num-masks Inf were taken."""
    res = run("train", "--head", "BERNOULLI", "--Epochs", 1, "--hidden", 4, "--num-masks", 1, "--out", tmp_path / "r",
              "--Optimizer", "ADAM", "-q")
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "r")[0].config.head == "bernoulli"
    assert run("sample", tmp_path / "r", "-n", 2, "--method", "Naive", "--out", tmp_path / "s.npy").exit_code == 0


def test_the_api_flags_are_true_or_false(tmp_path, ckpt):
    """load_checkpoint(best="yes") and load_dataset(allow_nan="no") took any truthy value."""
    from made_np import fetch, fit, load_dataset
    with pytest.raises(ValueError, match="best must be true or false, got 'yes'"):
        load_checkpoint(ckpt, best="yes")
    with pytest.raises(ValueError, match="allow_nan must be true or false, got 'no'"):
        load_dataset("digits", allow_nan="no")
    with pytest.raises(ValueError, match="real must be true or false, got 1"):
        load_dataset("digits", real=1)
    with pytest.raises(ValueError, match="verbose must be true or false, got 'yes'"):
        fit(MADE(MADEConfig(D=3, hidden=(4,))), load_dataset("digits"), verbose="yes")
    with pytest.raises(ValueError, match="progress must be true or false"):
        fetch("binarized-mnist", cache_dir=tmp_path, progress="yes")
    assert load_checkpoint(ckpt, best=np.bool_(False))[0].config.D >= 1
