"""Hostile and careless inputs found by review: each case once gave a traceback, lost a file, or
wrote something other than what was printed (CliRunner, tiny runs on small generated data)."""
import importlib.util

import numpy as np
import pytest
from conftest import one_line_error, run_cli as run



@pytest.fixture(scope="module")
def binrun(tmp_path_factory):
    """A 6-variable binary run with a bank of 4 masks (2 epochs, 8 hidden units)."""
    root = tmp_path_factory.mktemp("adv")
    rng = np.random.default_rng(0)
    np.save(root / "bin.npy", (rng.random((60, 6)) < 0.4).astype(np.uint8))
    r = run("train", "--dataset", root / "bin.npy", "--hidden", 8, "--epochs", 2, "--num-masks", 4,
            "--out", root / "run", "-q")
    assert r.exit_code == 0, r.output
    return root


def test_outputs_never_overwrite_the_checkpoint(binrun, tmp_path):
    ckpt = binrun / "run" / "model.npz"
    before = ckpt.read_bytes()
    one_line_error(run("complete", binrun / "run", "--occlude", "random:0.5", "--out", ckpt), "--out", "input")
    one_line_error(run("masks", binrun / "run", "--out", ckpt), "--out", "input")
    (tmp_path / "link.npz").symlink_to(ckpt)
    one_line_error(run("masks", ckpt, "--out", tmp_path / "link.npz"), "--out", "input")
    np.save(tmp_path / "ctx.npy", np.zeros(3))
    one_line_error(run("sample", binrun / "run", "--out", binrun / "bin.npy", "--context", binrun / "bin.npy"),
                   "--out", "input")
    assert ckpt.read_bytes() == before


def test_complete_checks_and_names_its_outputs(binrun, tmp_path):
    (tmp_path / "afile").write_text("x")
    one_line_error(run("complete", binrun / "run", "--occlude", "random:0.5", "--out", tmp_path / "afile" / "c.npz"),
                   "--out", "not a folder")
    one_line_error(run("complete", binrun / "run", "--occlude", "random:0.5", "--out", "/proc/c.npz"), "--out")
    one_line_error(run("complete", binrun / "run", "--occlude", "random:0.5", "--png", tmp_path / "afile" / "c.png"),
                   "--png")
    out = tmp_path / "sp ace" / "c.NPZ"  # written under exactly this name (np.savez would add .npz)
    r = run("complete", binrun / "run", "--occlude", "random:0.5", "--out", out, "--png", tmp_path / "g.PNG")
    assert r.exit_code == 0, r.output
    assert out.is_file() and not (tmp_path / "sp ace" / "c.NPZ.npz").exists()
    assert np.load(out)["completions"].shape[-1] == 6


@pytest.mark.parametrize("cmd", ["complete", "evaluate"])
def test_seed_and_masks_are_bounded(binrun, cmd):
    one_line_error(run(cmd, binrun / "run", "--occlude", "random:0.5", "--seed", -1), "--seed")
    one_line_error(run(cmd, binrun / "run", "--occlude", "random:0.5", "--masks", 10**8), "--masks")


def test_api_refuses_data_outside_the_model(binrun):
    """evaluate / log_marginal / complete / sample used to return a finite (wrong) NLL for values
    outside the classes (a categorical -1 scored NLL 0), raise NumPy's errors for a wrong shape,
    or return NaN for an empty array."""
    from made_np import complete, evaluate, load_checkpoint, log_marginal, sample

    model, _ = load_checkpoint(binrun / "run")
    for x, fragment in [(np.full((3, 6), 2), "0..1"), (np.full((3, 6), -1), "0..1"), (np.zeros(6), "shape"),
                        (np.zeros((3, 5)), "shape"), (np.full((2, 6), np.nan), "NaN"), (np.zeros((0, 6)), "no rows")]:
        with pytest.raises(ValueError, match=fragment):
            evaluate(model, x)
    ok = np.zeros((2, 6), dtype=np.uint8)
    assert evaluate(model, ok.astype(bool))["nll"] == pytest.approx(evaluate(model, ok)["nll"])
    with pytest.raises(ValueError, match="0 \\(missing\\) or 1"):
        log_marginal(model, ok, np.full((2, 6), 2))
    with pytest.raises(ValueError, match="0..1"):
        log_marginal(model, np.full((2, 6), 5), np.ones((2, 6)))
    hidden_junk = np.full((2, 6), 5)  # only the observed entries are read
    assert np.all(log_marginal(model, hidden_junk, np.zeros((2, 6))) == 0)
    with pytest.raises(ValueError, match="0..1"):
        complete(model, np.full((2, 6), 5), np.ones((2, 6)), 2)
    with pytest.raises(ValueError, match="n must be"):
        sample(model, -1)
    assert sample(model, 0).shape == (0, 6)
    for bad in (0, -5):  # a negative batch size used to return the uninitialised output array
        with pytest.raises(ValueError, match="batch_size must be >= 1"):
            model.nll(ok, batch_size=bad)
        with pytest.raises(ValueError, match="batch_size must be >= 1"):
            model.ensemble_nll(ok, [0], batch_size=bad)


def test_context_values_name_the_option(tmp_path):
    rng = np.random.default_rng(0)
    b = lambda n: (rng.random((n, 4)) < 0.5).astype(np.uint8)  # noqa: E731
    np.savez(tmp_path / "ctx.npz", train_data=b(30), valid_data=b(10), test_data=b(10),
             train_context=rng.integers(0, 3, 30), valid_context=rng.integers(0, 3, 10),
             test_context=rng.integers(0, 3, 10))
    r = run("train", "--dataset", tmp_path / "ctx.npz", "--context", "file", "--hidden", 8, "--epochs", 1,
            "--num-masks", 1, "--out", tmp_path / "run", "-q")
    assert r.exit_code == 0, r.output
    np.save(tmp_path / "three_d.npy", np.zeros((2, 2, 2)))
    for bad in ["", "nan", "1.5"]:
        one_line_error(run("sample", tmp_path / "run", "--context", bad, "--out", tmp_path / "s.npy"),
                       "--context", "class label")
    one_line_error(run("sample", tmp_path / "run", "--context", tmp_path / "three_d.npy", "--out", tmp_path / "s.npy"),
                   "--context", "shape")


@pytest.mark.parametrize("args", [("data", "info", "LONG"), ("train", "--dataset", "LONG"), ("evaluate", "LONG"),
                                  ("train", "--resume", "LONG"), ("masks", "LONG"),
                                  ("sample", "RUN", "--out", "LONG.png"), ("complete", "RUN", "--input", "LONG")])
def test_a_path_the_system_refuses_is_one_line(binrun, tmp_path, args):
    """A file name over the system's limit (255 bytes) made pathlib raise from exists() deep in
    every command: now one line naming the path, exit 2."""
    long = str(tmp_path / ("a" * 300 + ".npy"))
    args = [a.replace("LONG", long) if a.startswith("LONG") else binrun / "run" if a == "RUN" else a for a in args]
    one_line_error(run(*args), long[:60], "File name too long")


def test_complete_checks_its_size_and_rows_first(binrun, tmp_path):
    """-n had no bound (NumPy's 'Maximum allowed dimension exceeded', or gigabytes attempted)
    and an --input of 0 rows printed a NaN result."""
    for n in (10**20, 10**8):
        one_line_error(run("complete", binrun / "run", "--occlude", "random:0.5", "-n", n, "--out", tmp_path / "c.npz"),
                       f"-n {n} needs about", "of memory")
    one_line_error(run("complete", binrun / "run", "--occlude", "random:0.5", "-n", 10**6, "--max-memory", "50M",
                       "--out", tmp_path / "c.npz"), "-n 1000000 needs about", "the limit is 50.0 MiB")
    np.save(tmp_path / "none.npy", np.zeros((0, 6), dtype=np.uint8))
    one_line_error(run("complete", binrun / "run", "--occlude", "random:0.5", "--input", tmp_path / "none.npy",
                       "--out", tmp_path / "c.npz"), "--input", "has no rows")
    assert not (tmp_path / "c.npz").exists()


def test_dataset_path_is_never_silently_ignored(binrun, tmp_path):
    """--dataset-path was ignored when the data set was a file: refused for a new run on a file
    or digits, and for a run trained on a file it is where that file lies now (checked to hold
    the same data)."""
    one_line_error(run("train", "--dataset", binrun / "bin.npy", "--dataset-path", binrun / "bin.npy",
                       "--out", tmp_path / "r"), "--dataset-path", "leave --dataset-path out")
    one_line_error(run("train", "--dataset-path", binrun / "bin.npy", "--out", tmp_path / "r"),
                   "--dataset-path", "'digits' needs none")
    moved = tmp_path / "moved.npy"
    moved.write_bytes((binrun / "bin.npy").read_bytes())
    here = run("evaluate", binrun / "run", "--dataset-path", moved)
    assert here.exit_code == 0 and here.output == run("evaluate", binrun / "run").output
    np.save(tmp_path / "other.npy", 1 - np.load(moved))
    one_line_error(run("evaluate", binrun / "run", "--dataset-path", tmp_path / "other.npy"),
                   f"--dataset-path {tmp_path / 'other.npy'} differs from the data the run was trained on",
                   f"give the file holding the data it was trained on ({binrun / 'bin.npy'})")


def test_empty_names_and_bad_kinds_name_their_option(binrun, tmp_path, monkeypatch):
    one_line_error(run("train", "--out", ""), "'--out': an empty name; give a path")
    one_line_error(run("train", "--dataset", " ", "--out", tmp_path / "r"), "--dataset: empty")
    one_line_error(run("complete", binrun / "run", "--occlude", "middle"), "--occlude middle", "top, bottom")
    monkeypatch.setenv("MADE_NP_DEVICE", "gpu")
    one_line_error(run("evaluate", binrun / "run"), "$MADE_NP_DEVICE: unknown device 'gpu'")
    assert not (tmp_path / "r").exists()


def test_a_new_run_never_overwrites_the_files_of_an_earlier_one(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "results.json").write_text('{"nll": 1}')
    (folder / "notes.txt").write_text("mine")
    one_line_error(run("train", "--epochs", 1, "--hidden", 4, "--out", folder), "already holds results.json",
                   "choose another --out")
    assert (folder / "results.json").read_text() == '{"nll": 1}'
    (folder / "results.json").unlink()  # other files of the user's are no obstacle
    assert run("train", "--epochs", 1, "--hidden", 4, "--num-masks", 16, "--out", folder, "-q").exit_code == 0
    assert (folder / "notes.txt").read_text() == "mine"


def test_dataset_path_checks_in_data_info_and_complete_and_the_png_grid(binrun, tmp_path):
    one_line_error(run("data", "info", "digits", "--dataset-path", tmp_path / "x.npy"), "'digits' needs none")
    one_line_error(run("complete", binrun / "run", "--input", binrun / "bin.npy", "--dataset-path", binrun / "bin.npy",
                       "--occlude", "random:0.5"), "--dataset-path", "examples come from --input")
    one_line_error(run("complete", binrun / "run", "--occlude", "random:0.5", "-n", 10**5, "--png", tmp_path / "g.png",
                       "--out", tmp_path / "c.npz"),
                   "--png", "6 examples x (100000 completions + 2) = 600012 images", "fewer --first or -n")


def test_a_resume_with_dataset_path_records_where_the_data_lie(tmp_path):
    """A 2d run whose table moved: resumed with --dataset-path, later commands find it again."""
    table = np.random.default_rng(0).random((200, 200))  # the size of the real table
    np.save(tmp_path / "distribution.npy", (table / table.sum()).astype(np.float32))
    out = tmp_path / "run"
    assert run("train", "--dataset", "2d", "--dataset-path", tmp_path / "distribution.npy", "--hidden", 8,
               "--epochs", 1, "--out", out, "-q").exit_code == 0
    (tmp_path / "moved").mkdir()
    (tmp_path / "distribution.npy").rename(tmp_path / "moved" / "distribution.npy")
    one_line_error(run("evaluate", out), "cannot load the data set")
    assert run("train", "--resume", out, "--epochs", 2, "--dataset-path", tmp_path / "moved", "-q").exit_code == 0
    assert run("evaluate", out).exit_code == 0


# --------------------------------------------------------------------------- the Python API


def test_api_integer_arguments_are_checked(binrun):
    """A negative batch_size made log_marginal/log_conditional/complete return unwritten memory;
    floats, strings and bools were truncated or failed deep inside NumPy."""
    from made_np import complete, evaluate, load_checkpoint, log_marginal, sample
    from made_np.conditional import log_conditional

    model, _ = load_checkpoint(binrun / "run")
    x, obs = np.zeros((3, 6), dtype=np.uint8), np.ones((3, 6), dtype=bool)
    obs[:, 3:] = False
    for fn in (log_marginal, log_conditional):
        for bad, fragment in [(-1, "batch_size must be >= 1"), (1.5, "batch_size must be an integer")]:
            with pytest.raises(ValueError, match=fragment):
                fn(model, x, obs, batch_size=bad)
        with pytest.raises(ValueError, match="masks must be >= 1"):
            fn(model, x, obs, masks=0)
        with pytest.raises(ValueError, match="seed must be an integer"):
            fn(model, x, obs, seed="1")
    for n, fragment in [(2.0, "n must be an integer"), (True, "n must be an integer"), (0, "n must be >= 1")]:
        with pytest.raises(ValueError, match=fragment):
            complete(model, x, obs, n)
    with pytest.raises(ValueError, match="eval_masks must be >= 1"):
        evaluate(model, x, eval_masks=0)
    with pytest.raises(ValueError, match="ensemble must be True, False or None"):
        evaluate(model, x, ensemble="no")
    with pytest.raises(ValueError, match="mask index must be an integer"):
        sample(model, 3, masks=[1.7])
    with pytest.raises(ValueError, match="mask_indices must be a sequence"):
        model.ensemble_nll(x, 2)
    with pytest.raises(ValueError, match="mask index must be an integer"):
        model.nll(x, mask=1.5)


def test_api_noise_and_sizes_are_checked(binrun):
    from made_np import MADE, MADEConfig, complete, load_checkpoint, sample
    from made_np.limits import LimitError

    model, _ = load_checkpoint(binrun / "run")
    for noise, fragment in [(np.zeros(6), r"noise must have shape \(n, 6\)"), (np.full((2, 6), np.nan), "no NaN"),
                            (np.full((2, 6), 5.0), r"\[0, 1\)")]:
        for method in ("fast", "naive"):
            with pytest.raises(ValueError, match=fragment):
                sample(model, noise=noise, method=method)
    with pytest.raises(ValueError, match="give n"):
        sample(model)
    with pytest.raises(LimitError, match=r"n = 1000000000000 needs about"):
        sample(model, 10**12)
    with pytest.raises(LimitError, match=r"n = 1000000000000 needs about"):
        complete(model, np.zeros((2, 6)), np.ones((2, 6)), 10**12)


def test_api_memory_checks_use_the_env_limit_and_the_commands_own(binrun, monkeypatch):
    """The API's checks read $MADE_NP_MAX_MEMORY (not the machine's RAM alone: this test must
    not depend on it), and within a command its --max-memory, reset when the command ends."""
    from made_np import MADE, MADEConfig, limits, sample
    from made_np.limits import LimitError

    monkeypatch.setenv("MADE_NP_MAX_MEMORY", "64M")
    with pytest.raises(LimitError, match=r"MADEConfig\(D=784, hidden=\(100000,\)\) needs about .* the limit is "
                                         r"64.0 MiB \(\$MADE_NP_MAX_MEMORY raises it"):
        MADE(MADEConfig(D=784, hidden=(10**5,)))
    limits.use_limit(2**40)  # what a command's --max-memory does
    try:
        assert MADE(MADEConfig(D=784, hidden=(10**4,))).num_params > 10**7
    finally:
        limits.use_limit(None)
    assert run("sample", binrun / "run", "-n", 3, "--max-memory", "1G", "--out", binrun / "s.npy").exit_code == 0
    assert limits.memory_limit() == 64 * 2**20  # the command's limit did not outlive it
    model = MADE(MADEConfig(D=6, hidden=(8,)))
    with pytest.raises(LimitError, match="n = 10000000 needs about"):
        sample(model, 10**7)


def test_fit_checks_its_arguments_and_never_overwrites_a_run(binrun, tmp_path):
    """fit trained on values outside the model's classes (a finite, meaningless loss), and
    replaced another run's checkpoint in out_dir."""
    from types import SimpleNamespace

    from made_np import MADE, MADEConfig, TrainConfig, fit, load_checkpoint
    from made_np.checkpoint import CheckpointError
    from made_np.runfolder import RunFolderError

    model = MADE(MADEConfig(D=6, hidden=(8,)))
    good = np.zeros((20, 6), np.uint8)
    cfg = TrainConfig(epochs=1, patience=0)
    for train, fragment in [(np.full((20, 6), 7, np.uint8), r"dataset.train must hold integers in 0..1"),
                            (np.zeros((0, 6)), r"dataset.train must be a non-empty array"),
                            (np.full((20, 6), np.nan), "dataset.train has missing entries .NaN.: training on them or "
                                                       "scoring them needs an order-agnostic model")]:
        with pytest.raises(ValueError, match=fragment):
            fit(model, SimpleNamespace(train=train, valid=good), cfg)
    with pytest.raises(ValueError, match="has no .valid"):
        fit(model, SimpleNamespace(train=good), cfg)
    with pytest.raises(ValueError, match="cfg must be a made_np.TrainConfig"):
        fit(model, SimpleNamespace(train=good, valid=good), {"epochs": 1})
    with pytest.raises(ValueError, match="out_dir is an empty name"):
        fit(model, SimpleNamespace(train=good, valid=good), cfg, out_dir="")
    run_dir = binrun / "run"
    before = (run_dir / "model.npz").read_bytes()
    with pytest.raises(RunFolderError, match="already holds a run"):
        fit(MADE(MADEConfig(D=6, hidden=(8,))), SimpleNamespace(train=good, valid=good), cfg, out_dir=run_dir)
    assert (run_dir / "model.npz").read_bytes() == before
    bad_folder = tmp_path / "bad"
    with pytest.raises(ValueError, match="dataset.valid must hold integers"):
        fit(model, SimpleNamespace(train=good, valid=good + 3), cfg, out_dir=bad_folder)
    assert not bad_folder.exists()  # refused before anything was written
    from dataclasses import replace

    from made_np.data import load_dataset

    data = load_dataset(str(binrun / "bin.npy"))  # the run's own data: only the weights are wrong
    _, info = load_checkpoint(run_dir)
    with pytest.raises(CheckpointError, match="does not hold this checkpoint's weights"):
        fit(MADE(replace(info["model_config"], seed=7)), data, info["train_config"], resume_state=info)
    other = tmp_path / "other"  # a resume never writes into another run's folder
    assert run("train", "--dataset", binrun / "bin.npy", "--hidden", 8, "--epochs", 1, "--out", other, "-q").exit_code == 0
    theirs = (other / "model.npz").read_bytes()
    mine, info = load_checkpoint(run_dir)
    more = replace(info["train_config"], epochs=3)
    with pytest.raises(RunFolderError, match="already holds a run"):
        fit(mine, data, more, out_dir=other, resume_state=info)
    assert (other / "model.npz").read_bytes() == theirs


def test_api_paths_and_names_fail_in_one_line(tmp_path):
    from made_np import load_checkpoint
    from made_np.checkpoint import CheckpointError
    from made_np.runfolder import write_json
    from made_np.data import DataError, load_dataset

    np.save(tmp_path / "a.npy", np.zeros((30, 4), np.uint8))
    assert load_dataset(tmp_path / "a.npy").D == 4  # a pathlib.Path used to raise AttributeError
    for bad in (None, 3):
        with pytest.raises(DataError, match="must be a name .* or a path"):
            load_dataset(bad)
        with pytest.raises(CheckpointError, match="a checkpoint is a file or run folder path"):
            load_checkpoint(bad)
    with pytest.raises(FileNotFoundError) as e:  # named by the file asked for, not mkstemp's pattern
        write_json(tmp_path / "missing" / "r.json", {})
    assert e.value.filename == str(tmp_path / "missing" / "r.json")
    from made_np.heads import default_head
    with pytest.raises(ValueError, match="at least 2 classes"):  # was a StopIteration
        default_head(1)


def test_save_checkpoint_never_writes_what_load_refuses(tmp_path):
    """It used to write NaN weights or a dataset record of another D, and replace a good file
    with one that load_checkpoint then refused."""
    from made_np import MADE, MADEConfig, load_checkpoint
    from made_np.checkpoint import CheckpointError, save_checkpoint

    model = MADE(MADEConfig(D=6, hidden=(8,)))
    good = save_checkpoint(tmp_path / "m.npz", model)
    before = good.read_bytes()
    for kwargs, fragment in [({"dataset_spec": {"D": 99}}, "dataset.D = 99 but the model has D = 6"),
                             ({"history": "x"}, "'history' must be an object or null"),
                             ({"dataset_spec": {"x": object()}}, "not written: the configuration is not JSON")]:
        with pytest.raises(CheckpointError, match=fragment):
            save_checkpoint(good, model, **kwargs)
    from made_np.optim import Adagrad

    opt = Adagrad(model.params, np)
    opt.state["sum_sq"][0][...] = np.inf  # a float32 sum of squares can overflow while the weights stay finite
    with pytest.raises(CheckpointError, match="entry 'opt_sum_sq0' holds NaN or infinity"):
        save_checkpoint(good, model, optimizer=opt)
    with pytest.raises(CheckpointError, match="entry 'best_b0' holds NaN or infinity"):
        save_checkpoint(good, model, best_params=[p if i != 1 else p * np.nan for i, p in enumerate(model.params)])
    model.params[0][0, 0] = np.nan
    with pytest.raises(CheckpointError, match="entry 'W0' holds NaN"):
        save_checkpoint(good, model)
    assert good.read_bytes() == before and load_checkpoint(good)[1]["path"] == str(good)


def test_estimates_charge_what_is_drawn(tmp_path, binrun):
    """A 2-D run draws 100,000 samples for its figure: charged before training (it used to train,
    then fail in the figure); complete charges a single-ordering model one mask, not --masks."""
    table = np.random.default_rng(0).random((200, 200))  # the size of the real table
    np.save(tmp_path / "distribution.npy", (table / table.sum()).astype(np.float32))
    out = tmp_path / "run2d"
    one_line_error(run("train", "--dataset", "2d", "--dataset-path", tmp_path / "distribution.npy", "--hidden", 64,
                       "--epochs", 1, "--max-memory", "100M", "--out", out), "samples.png with 100000 needs about")
    assert not out.exists()
    from made_np import load_checkpoint
    from made_np.conditional import mixture_size

    model, _ = load_checkpoint(binrun / "run")
    assert mixture_size(model, 10**5) == 10**5  # order-agnostic: fresh masks
    single = tmp_path / "single"
    assert run("train", "--dataset", binrun / "bin.npy", "--hidden", 8, "--epochs", 1, "--num-masks", 1,
               "--out", single, "-q").exit_code == 0
    assert mixture_size(load_checkpoint(single)[0], 10**5) == 1


def test_for_data_and_fit_check_the_objects_they_are_given():
    """A data object with classes = 1 raised StopIteration, 2.5 classes became 2, a D other than the
    data's width was taken; a callback that is not callable failed after an epoch of training."""
    from types import SimpleNamespace

    from made_np import MADE, MADEConfig, TrainConfig, fit

    x = np.zeros((10, 3), np.uint8)
    for data, fragment in [(SimpleNamespace(D=3, classes=1, train=x), "dataset.classes must be >= 2"),
                           (SimpleNamespace(D=3, classes=2.5, train=x), "dataset.classes must be an integer"),
                           (SimpleNamespace(D=4, classes=2, train=x), "dataset.D = 4, but its train data have 3"),
                           (SimpleNamespace(classes=2, train=x), "dataset.D must be an integer, got None")]:
        with pytest.raises(ValueError, match=fragment):
            MADEConfig.for_data(data)
    model = MADE(MADEConfig.for_data(SimpleNamespace(D=3, classes=2, train=x), hidden=(4,)))
    with pytest.raises(ValueError, match="callback must be a function"):
        fit(model, SimpleNamespace(train=x, valid=x), TrainConfig(epochs=1), callback=3)


@pytest.mark.parametrize("name", ["OMP_NUM_THREADS", "NUMEXPR_MAX_THREADS"])
def test_a_thread_variable_that_is_not_a_number_is_named(name, monkeypatch, tmp_path):
    """numexpr, imported by a module we load, failed on it with a bare "invalid literal for int()"."""
    monkeypatch.setenv(name, "abc")
    one_line_error(run("train", "--epochs", 1, "--hidden", 4, "--out", tmp_path / "r"), f"${name}='abc'",
                   "a whole number of threads")
    assert not (tmp_path / "r").exists()
    monkeypatch.setenv(name, "4,2")  # OpenMP's list form
    assert run("data", "info", "digits").exit_code == 0


def test_no_output_overwrites_the_data_the_run_was_trained_on(tmp_path):
    """`complete --out data.npz` replaced the run's own training file: it could never be
    resumed or evaluated again. sample and masks could do the same."""
    import numpy as np

    data = tmp_path / "data.npy"
    np.save(data, (np.random.default_rng(0).random((300, 6)) < 0.5).astype(np.uint8))
    before = data.read_bytes()
    assert run("train", "--dataset", data, "--hidden", 8, "--epochs", 1, "--out", tmp_path / "run", "-q").exit_code == 0
    one_line_error(run("sample", tmp_path / "run", "-n", 3, "--out", data), "is the data file the run was trained on")
    assert data.read_bytes() == before
    assert run("evaluate", tmp_path / "run").exit_code == 0


def test_fit_takes_float_class_values_for_a_categorical_model():
    """0.0..4.0 passed the value check, then crashed indexing the one-hot table."""
    import types

    import numpy as np

    from made_np.model import MADE, MADEConfig
    from made_np.train import TrainConfig, fit

    x = np.random.default_rng(0).integers(0, 5, (200, 4))
    model = MADE(MADEConfig(D=4, classes=5, head="categorical", input_encoding="onehot", hidden=(8,)))
    as_float = fit(model, types.SimpleNamespace(train=x[:150].astype(float), valid=x[150:].astype(float), name="x"),
                   TrainConfig(epochs=2))
    model = MADE(MADEConfig(D=4, classes=5, head="categorical", input_encoding="onehot", hidden=(8,)))
    as_int = fit(model, types.SimpleNamespace(train=x[:150], valid=x[150:], name="x"), TrainConfig(epochs=2))
    assert as_float["best_valid_nll"] == as_int["best_valid_nll"]


def test_a_mask_index_of_a_bank_without_limit_is_bounded():
    """With num_masks = 0 (no limit) a negative index read 'outside the bank of 0 mask(s) (0..-1)', and
    an index past 2**63 - 1 (the seeds' bound, which `made-np sample --mask-index` kept) was taken."""
    from made_np import MADE, MADEConfig

    model = MADE(MADEConfig(D=4, hidden=(6,), num_masks=0))
    for bad in (-1, 2**63):
        with pytest.raises(ValueError, match=rf"mask index {bad} is outside the bank \(no limit\): give 0\.\.{2**63 - 1}"):
            model.mask(bad)
    assert model.mask(2**63 - 1)[0].D == 4


def test_the_library_checks_name_the_options_that_give_their_arguments(binrun, tmp_path):
    """The CLI keeps no copies of the library's checks: their messages are translated to the option."""
    data = binrun / "bin.npy"
    for option, value, fragment in [("--lr", "0", "--lr (the learning rate) must be a finite number > 0"),
                                    ("--lr", "nan", "--lr must be finite"),
                                    ("--weight-decay", "-1", "--weight-decay must be >= 0"),
                                    ("--hidden", "100000000000", "--hidden entries must be at most"),
                                    ("--num-masks", "1000001", "--num-masks must be at most")]:
        one_line_error(run("train", "--dataset", data, option, value, "--out", tmp_path / "r"), fragment)
        assert not (tmp_path / "r").exists()
    for args, fragment in [(("evaluate", "--mask-index", 4), "--mask-index 4 is outside the bank of 4 masks: give 0..3"),
                           (("masks", "--index", -1), "--index -1 is outside the bank of 4 masks"),
                           (("sample", "--mixture", 5, "--out", tmp_path / "s.npy"),
                            "--mixture 5: mask index 4 is outside the bank of 4 masks"),
                           (("sample", "--context", 1, "--out", tmp_path / "s.npy"), "--context 1: this model has no context")]:
        one_line_error(run(args[0], binrun / "run", *args[1:]), fragment)


def test_the_hostile_inputs_of_this_round_are_one_valueerror_each():
    """Found by the hostile-input campaign of this round: each used to be a traceback of another kind,
    a raw NumPy message or a silently wrong result."""
    from made_np import MADE, MADEConfig, evaluate, fit, load_checkpoint, log_marginal, sample
    from made_np.sampling import sample_naive

    model = MADE(MADEConfig(D=4, hidden=(6,), num_masks=3, seed=0))
    x = np.zeros((2, 4), dtype=np.uint8)
    obs = np.ones((2, 4), dtype=bool)
    state = model.state_dict()
    for bad, fragment in [({**state, "W0": np.full_like(state["W0"], np.nan)}, "finite numbers"),
                          ({**state, "W0": np.full(state["W0"].shape, 1e300)}, "finite numbers"),
                          ({**state, "W0": "abc"}, "has shape")]:
        with pytest.raises(ValueError, match=fragment):
            model.load_state_dict(bad)  # NaN and 1e300 (inf in float32) used to load silently
    with pytest.raises(ValueError, match="progress must be a function"):
        log_marginal(model, x, obs, progress=5)  # used to fail after the work began
    with pytest.raises(ValueError, match="eval_masks must be"):
        model.eval_mask_indices(-1)  # gave [] (and 0 the whole bank, 2.5 a TypeError)
    with pytest.raises(ValueError, match="outside the bank"):
        model.maskset_at(99)
    with pytest.raises(ValueError, match="outside the bank"):
        evaluate(model, x, mask_index=99)  # ignored when the ensemble was scored
    with pytest.raises(ValueError, match="noise must hold real numbers"):
        sample(model, noise=np.full((3, 4), 0.5 + 0j))  # the imaginary part was dropped
    with pytest.raises(ValueError, match="given must hold integers in 0..1"):
        sample_naive(model, 3, seed=0, n_given=2, given=np.full((3, 4), 7), mask=0)  # drew on a 7
    with pytest.raises(ValueError, match="x must be an array of shape"):
        model.nll([[0, 0, 0, 0], [0, 0, 0]])  # NumPy's 'inhomogeneous shape' named nothing
    conditional = MADE(MADEConfig(D=4, hidden=(6,), context=3))
    with pytest.raises(ValueError, match="context labels must be integers"):
        conditional.nll(x, context=[np.inf, 0.0])  # an OverflowError while writing the message
    with pytest.raises(ValueError, match="memory_limit"):
        load_checkpoint("nowhere", memory_limit="2G")
    with pytest.raises(ValueError, match="dataset_spec must be a dict"):
        fit(model, None, dataset_spec="digits")


@pytest.mark.parametrize("value, fused", [("abc", None), ("2", None), (" 1 ", True), ("0", False)])
def test_the_fused_kernels_variable_is_0_or_1(value, fused, monkeypatch):
    """$MADE_NP_FUSED=abc turned the kernels on silently (anything but "0" did)."""
    from made_np.fast.kernels import fused_kernels
    monkeypatch.setenv("MADE_NP_FUSED", value)
    if fused is None:
        with pytest.raises(ValueError, match=r"\$MADE_NP_FUSED must be 0 or 1"):
            fused_kernels(np)
    else:
        assert (fused_kernels(np) is not None) == fused or fused and importlib.util.find_spec("numexpr") is None
