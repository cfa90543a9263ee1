"""The public Python API: the names, lazy loading, and one recipe shared with the command line."""
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import made_np
from made_np.cli import cli

API = ["MADE", "MADEConfig", "TrainConfig", "fit", "evaluate", "sample", "load_dataset",
       "load_checkpoint", "save_checkpoint", "complete", "log_marginal", "MADEDensity"]


def test_every_public_name_imports_from_the_package():
    for name in API:
        assert callable(getattr(made_np, name)), name
    assert set(API) <= set(made_np.__all__) and set(API) <= set(dir(made_np))


def test_every_name_of_the_api_is_its_modules():
    """The names the command line takes from made_np resolve (a name that moved fails here, not in a command)."""
    code = ("import sys, made_np; light = 'numpy' not in sys.modules; "
            "missing = [n for n in made_np._API if not hasattr(made_np, n)]; print(light, missing)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "[]"]
    assert made_np.find_data_file.__module__ == "made_np.data" and made_np.figure_samples.__module__ == "made_np.limits"
    assert made_np.check_thread_variables.__module__ == "made_np.fast.threads"


def test_import_made_np_loads_nothing_heavy_and_leaves_blas_alone():
    code = ("import os, sys, made_np; "
            "print('numpy' in sys.modules, 'OPENBLAS_THREAD_TIMEOUT' in os.environ)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_for_data_fills_what_the_data_implies():
    ds = made_np.load_dataset("digits")
    cfg = made_np.MADEConfig.for_data(ds, hidden=(32,))
    assert (cfg.D, cfg.classes, cfg.head, cfg.input_encoding, cfg.hidden) == (64, 2, "bernoulli", "binary", (32,))
    assert cfg.direct and cfg.num_masks == 16  # 1297 rows: a small data set gets a bank
    assert made_np.MADEConfig.for_data(ds, num_masks=1, direct=False).num_masks == 1  # overrides win
    tcfg = made_np.TrainConfig.for_data(ds)
    # about 25,000 updates: 13 minibatches an epoch -> the 1000-epoch cap (early stopping ends sooner)
    assert (tcfg.lr, tcfg.lr_schedule, tcfg.epochs, tcfg.optimizer) == (2e-3, "cosine", 1000, "adam")
    big = type("Big", (), {"train": np.zeros((50000, 4)), "D": 4, "classes": 2, "name": "big"})()
    assert made_np.TrainConfig.for_data(big).epochs == 50 and made_np.MADEConfig.for_data(big).num_masks == 1
    two = made_np.MADEConfig.for_data(type("T", (), {"D": 2, "classes": 200, "name": "2d"})())
    assert (two.head, two.input_encoding, two.hidden, two.num_masks) == ("categorical", "scaled", (100, 100), 32)


def test_cli_and_python_give_the_same_run(tmp_path):
    """made-np train and fit(MADE(MADEConfig.for_data(ds)), ds, TrainConfig(...)) share the recipe (here its
    bank of 16; the choice between it and a fresh mask, the same in both: tests/test_select.py)."""
    result = CliRunner().invoke(cli, ["train", "--hidden", "40", "--epochs", "3", "--num-masks", "16", "-q",
                                      "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    cli_nll = json.loads((tmp_path / "cli" / "results.json").read_text())["single"]["nll"]
    ds = made_np.load_dataset("digits")
    model = made_np.MADE(made_np.MADEConfig.for_data(ds, hidden=(40,)))
    made_np.fit(model, ds, made_np.TrainConfig(epochs=3), out_dir=tmp_path / "py")
    assert model.config.num_masks == 16 and model.config.direct  # the recipe, as the CLI chose it
    assert made_np.evaluate(model, ds.test, ensemble=False)["nll"] == cli_nll
    # a checkpoint written from Python is one the command line reads
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "py"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["single"]["nll"] == cli_nll
    loaded, info = made_np.load_checkpoint(tmp_path / "py")
    assert info["dataset"]["spec"] == "digits" and info["dataset"]["image_shape"] == [8, 8]
    samples = made_np.sample(loaded, 5, seed=1)
    assert samples.shape == (5, 64) and samples.dtype == np.uint8


def test_paper_preset_under_the_options_given(tmp_path, monkeypatch):
    ds = made_np.load_dataset("digits")
    cfg = made_np.TrainConfig.for_data(ds, preset="paper")
    assert (cfg.optimizer, cfg.lr, cfg.lr_schedule, cfg.batch_size, cfg.patience, cfg.epochs) == \
        ("adagrad", 1e-2, "constant", 100, 30, 1000)
    paper = made_np.MADEConfig.for_data(ds, preset="paper", num_masks=1)
    assert paper.direct and paper.init == "orthogonal" and paper.ordering == "random"
    assert made_np.MADEConfig.for_data(ds).ordering == "natural"
    assert made_np.MADEConfig.for_data(ds).init == "uniform"
    assert made_np.MADEConfig.for_data(ds, preset="paper", init="uniform").init == "uniform"
    assert made_np.TrainConfig.for_data(ds, preset="paper", patience=5).patience == 5  # given settings win
    result = CliRunner().invoke(cli, ["train", "--preset", "paper", "--hidden", "20", "--epochs", "2", "-q",
                                      "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    model, info = made_np.load_checkpoint(tmp_path / "p")
    tc = info["train_config"]
    assert (tc.optimizer, tc.lr, tc.lr_schedule, tc.patience, tc.epochs) == ("adagrad", 1e-2, "constant", 30, 2)
    assert tc.output_bias == "zero" and made_np.TrainConfig.for_data(ds).output_bias == "marginals"
    assert model.config.direct and model.config.init == "orthogonal" and model.config.ordering == "random"

    def no_draw(*args):
        raise AssertionError("loading a checkpoint drew initial weights")
    monkeypatch.setitem(made_np.layers.INITS, "orthogonal", no_draw)
    again, _ = made_np.load_checkpoint(tmp_path / "p")  # loads without drawing what it would throw away
    for name, a, b in zip(model.param_names, model.params, again.params):
        np.testing.assert_array_equal(a, b, err_msg=name)
    monkeypatch.undo()
    given = CliRunner().invoke(cli, ["train", "--preset", "paper", "--init", "uniform", "--hidden", "20",
                                     "--epochs", "1", "-q", "--out", str(tmp_path / "u")])
    assert given.exit_code == 0, given.output
    assert made_np.load_checkpoint(tmp_path / "u")[0].config.init == "uniform"  # the option given wins
    marginals = CliRunner().invoke(cli, ["train", "--preset", "paper", "--output-bias", "marginals", "--hidden", "20",
                                         "--epochs", "1", "-q", "--out", str(tmp_path / "m")])
    assert marginals.exit_code == 0, marginals.output
    assert made_np.load_checkpoint(tmp_path / "m")[1]["train_config"].output_bias == "marginals"
    bad = CliRunner().invoke(cli, ["train", "--preset", "nope"])
    assert bad.exit_code == 2 and "--preset" in bad.output


@pytest.mark.parametrize("config", [None, {"D": 5}, 5])
def test_made_needs_a_config_object(config):
    with pytest.raises(ValueError, match="config must be a made_np.MADEConfig, got .*MADEConfig.for_data"):
        made_np.MADE(config)


def test_the_model_argument_of_the_functions_is_checked(tmp_path):
    """The (model, info) pair of load_checkpoint used to fail deep inside with AttributeError."""
    model = made_np.MADE(made_np.MADEConfig(D=4, hidden=(6,), num_masks=3, order_agnostic=True))
    pair = (model, {})
    x, obs = np.zeros((2, 4), np.uint8), np.ones((2, 4), bool)
    from made_np import conditional, sampling
    from made_np.train import evaluate
    for call in (lambda m: sampling.sample(m, 2), lambda m: evaluate(m, x),
                 lambda m: conditional.log_marginal(m, x, obs), lambda m: conditional.complete(m, x, obs, 1)):
        with pytest.raises(ValueError, match="model must be a made_np.MADE, got tuple: load_checkpoint returns"):
            call(pair)
        call(model)  # the model itself is fine
    with pytest.raises(ValueError, match="masks must be a sequence of mask indices"):
        sampling.sample(model, 2, masks=3)


def test_data_that_is_not_an_array_is_named():
    """A generator or a scipy.sparse matrix used to be reported as data of shape ()."""
    import scipy.sparse

    model = made_np.MADE(made_np.MADEConfig(D=3, hidden=(4,)))
    with pytest.raises(ValueError, match="x must be an array of shape .N, 3.* got generator"):
        model.nll(r for r in [[0, 1, 0]])
    with pytest.raises(ValueError, match="x must be an array.*pass x.toarray"):
        model.nll(scipy.sparse.csr_matrix(np.eye(3)))
