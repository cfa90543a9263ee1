"""Sizes checked before allocating (made_np.limits) and the strict configuration types (made_np.config)."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import examples, model_configs
from hypothesis import given

from made_np import limits
from made_np.checkpoint import param_shapes
from made_np.cli import cli
from made_np.config import MADEConfig, TrainConfig
from made_np.model import MADE


@pytest.mark.parametrize("text,expected", [
    ("2G", 2 * 2**30), ("500M", 500 * 2**20), ("1.5GiB", int(1.5 * 2**30)), ("64mb", 64 * 2**20),
    ("1048576", 2**20), (" 3 T ", 3 * 2**40), ("1e9", 10**9), ("2g", 2 * 2**30),
])
def test_parse_size(text, expected):
    assert limits.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1", "1K", "0", "2Z", "nan", "1e30", "1,5G", "G"])
def test_parse_size_refuses_with_the_option_named(text):
    with pytest.raises(limits.LimitError, match="--max-memory"):
        limits.parse_size(text)


def test_memory_limit_sources(monkeypatch):
    monkeypatch.delenv(limits.ENV, raising=False)
    assert limits.memory_limit() == limits.default_limit() > 0
    monkeypatch.setenv(limits.ENV, "3G")
    assert limits.memory_limit() == 3 * 2**30
    assert limits.memory_limit("100M") == 100 * 2**20  # the option wins
    monkeypatch.setenv(limits.ENV, "lots")
    with pytest.raises(limits.LimitError, match=r"\$MADE_NP_MAX_MEMORY"):
        limits.memory_limit()


def test_default_limit_is_half_the_ram_or_the_fallback(monkeypatch):
    pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    assert limits.default_limit() == pages * size // 2

    def unknown(name):
        raise ValueError(name)
    monkeypatch.setattr(os, "sysconf", unknown)
    assert limits.default_limit() == limits.FALLBACK_LIMIT == 16 * 2**30


@examples(15)
@given(model_configs(max_D=6, dtype="float32"))
def test_parameter_counts_and_shapes_are_the_models(cfg):
    model = MADE(cfg)
    assert limits.num_params(cfg) == model.num_params
    assert param_shapes(cfg) == {n: tuple(p.shape) for n, p in zip(model.param_names, model.params)}


def test_refusal_names_the_option_the_estimate_and_the_fix():
    cfg = MADEConfig(D=64, hidden=(10**6, 10**6))
    with pytest.raises(limits.LimitError) as exc:
        limits.check(limits.model_parts(cfg, optimizer="adam"), 12 * 2**30)
    msg = str(exc.value)
    assert msg.startswith("--hidden 1000000,1000000 (D = 64, 2 classes) needs about ")
    assert "TiB of memory" in msg and "Adam's state" in msg and "the limit is 12.0 GiB" in msg
    assert "--max-memory or $MADE_NP_MAX_MEMORY raises it" in msg and "\n" not in msg
    small = MADEConfig(D=64, hidden=(500,))
    assert limits.check(limits.model_parts(small, optimizer="adam"), 2**30) < 100 * 2**20


def test_training_copies_come_from_the_optimisers_class(monkeypatch):
    """A trained model's copies: 6 of a loaded model, 6 more (scratch, block-sparse form, best weights,
    the checkpoint's weights) and two per state buffer its optimiser class declares (the buffer and its
    checkpoint copy), so an optimiser defined here (three buffers) gets its own estimate."""
    from made_np.optim import OPTIMIZERS, Optimizer

    class Three(Optimizer):
        state_names = ("a", "b", "c")

    monkeypatch.setitem(OPTIMIZERS, "three", Three)
    cfg = MADEConfig(D=10, hidden=(20,), dtype="float32")
    one_copy = limits.num_params(cfg) * 4
    for name, copies, words in [("adam", 16, "Adam's state"), ("adagrad", 14, "Adagrad's state"),
                                ("sgd", 14, "SGD's state"), ("three", 18, "Three's state")]:
        part = limits.model_parts(cfg, optimizer=name)[0]
        assert part.nbytes == copies * one_copy and part.what == f"parameters, gradients and {words}", name
    assert limits.model_parts(cfg)[0].nbytes == 6 * one_copy


def test_png_count_and_sample_estimates():
    limits.check_png_count(limits.MAX_PNG_IMAGES, (28, 28))
    with pytest.raises(limits.LimitError, match=r"-n 2501: at most 2500 images .* \.npy"):
        limits.check_png_count(2501, (8, 8))
    with pytest.raises(limits.LimitError, match=r"-n 1000: .* 64 x 1 pixels would be too tall"):
        limits.check_png_count(1000, (64, 1))  # a stored image shape may be tall and narrow
    limits.check_png_count(100, (64, 1))
    limits.check_png_count(2500, (8, 8), "--png")  # 250 rows of 10 columns
    with pytest.raises(limits.LimitError, match="too tall"):  # 833 rows of 3 (complete -n 1): 66,000 pixels
        limits.check_png_count(2499, (8, 8), "--png", ncols=3)
    limits.check_png_count(10**5, None)  # a scatter
    cfg = MADEConfig(D=784, hidden=(500,))
    with pytest.raises(limits.LimitError, match="^-n 1000000000 needs about"):
        limits.check(limits.sample_parts(cfg, 10**9), 16 * 2**30)


def test_complete_estimate_counts_every_row_of_examples():
    """made-np complete: rows x n completions cost what rows * n samples do, and the mixture's
    log-probabilities 8 bytes x 4 per example and mask; both grow with the rows."""
    cfg = MADEConfig(D=784, hidden=(500,))
    samples, logps = limits.complete_parts(cfg, 30, 7, 11)
    assert samples.nbytes == limits.sample_parts(cfg, 30 * 7)[0].nbytes == 30 * 7 * (784 * 32 + (784 + 500 + 784) * 8)
    assert logps.nbytes == 30 * 11 * 32
    assert (samples.option, logps.option) == ("-n 7", "--masks 11")
    assert [p.nbytes for p in limits.complete_parts(cfg, 60, 7, 11)] == [2 * samples.nbytes, 2 * logps.nbytes]


def test_the_environment_limit_reaches_every_command(tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, train_data=np.eye(8, dtype=np.uint8), valid_data=np.eye(8, dtype=np.uint8)[:2],
             test_data=np.eye(8, dtype=np.uint8)[:2])
    runner = CliRunner(env={limits.ENV: "1M"})
    result = runner.invoke(cli, ["train", "--dataset", str(data), "--epochs", "1", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "needs about" in result.output and "the limit is 1.0 MiB" in result.output
    assert not (tmp_path / "r").exists()  # refused before anything was written
    result = CliRunner(env={limits.ENV: "many"}).invoke(cli, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2 and "$MADE_NP_MAX_MEMORY" in result.output


# --------------------------------------------------------------------------- strict configurations


@pytest.mark.parametrize("kwargs,fragment", [
    ({"D": 64.5}, "D must be an integer, got 64.5 (float)"),
    ({"D": "64"}, "D must be an integer, got '64' (string)"),
    ({"D": True}, "D must be an integer, got True (bool)"),
    ({"D": 10**8}, "D must be at most"),
    ({"D": 4, "hidden": [50.7]}, "hidden must hold integers, got 50.7"),
    ({"D": 4, "hidden": "50"}, "hidden must be a list of integers"),
    ({"D": 4, "hidden": [10**8]}, "hidden entries must be at most"),
    ({"D": 4, "hidden": [1] * 101}, "at most 100"),
    ({"D": 4, "num_masks": 10**12}, "num_masks must be at most 1000000"),
    ({"D": 4, "classes": 300, "head": "categorical", "input_encoding": "onehot"}, "classes must be at most 256"),
    ({"D": 4, "seed": "1"}, "seed must be an integer"),
    ({"D": 4, "seed": -1}, "seed must be >= 0"),
    ({"D": 4, "head": 3}, "head must be a string"),
    ({"D": 4, "head": "laplace"}, "unknown head 'laplace'"),
    ({"D": 4, "direct": 1}, "direct must be true or false"),
    ({"D": 4, "init": "glorot"}, "unknown init 'glorot': choose one of uniform, orthogonal"),
    ({"D": 4, "init": 0}, "init must be a string"),
    ({"D": 4, "given_ordering": [1, 2, 3, 3]}, "permutation of 1..4"),
    ({"D": 4, "dtype": "float16"}, "unknown dtype 'float16': choose one of float32, float64"),
])
def test_model_config_is_type_strict(kwargs, fragment):
    with pytest.raises(ValueError) as exc:
        MADEConfig(**kwargs)
    assert fragment in str(exc.value)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"epochs": 2.0}, "epochs must be an integer"),
    ({"epochs": 10**9}, "epochs must be at most"),
    ({"lr": float("nan")}, "lr must be finite"),
    ({"lr": "0.1"}, "lr must be a number"),
    ({"lr": True}, "lr must be a number"),
    ({"weight_decay": float("inf")}, "weight_decay must be finite"),
    ({"eval_masks": 10**9}, "eval_masks must be at most 100000"),
    ({"valid_masks": 0}, "valid_masks must be >= 1"),
    ({"batch_size": None}, "batch_size must be an integer"),
    ({"optimizer": ["adam"]}, "optimizer must be a string"),
])
def test_train_config_is_type_strict(kwargs, fragment):
    with pytest.raises(ValueError) as exc:
        TrainConfig(**kwargs)
    assert fragment in str(exc.value)


def test_numpy_scalars_are_accepted_and_become_python_ones():
    cfg = MADEConfig(D=np.int64(4), hidden=(np.int32(3),), num_masks=np.uint8(2), direct=np.bool_(True))
    assert type(cfg.D) is int and type(cfg.num_masks) is int and cfg.direct is True and cfg.hidden == (3,)
    assert MADEConfig.from_dict(cfg.to_dict()) == cfg
    t = TrainConfig(epochs=np.int64(3), lr=np.float32(0.5))
    assert type(t.epochs) is int and math.isclose(t.lr, 0.5)
    with pytest.raises(ValueError, match="lacks 'D'"):
        MADEConfig.from_dict({"hidden": [3]})
    with pytest.raises(ValueError, match="must be a JSON object"):
        MADEConfig.from_dict([4])


def test_the_initial_weights_part_covers_the_orthogonal_draw():
    """The estimate holds the measured peak of drawing the largest matrix: the Gaussian, QR's
    factors and LAPACK's workspace, about 5x the matrix itself in RSS (the uniform draw: 1x)."""
    import tracemalloc

    from made_np.layers import initial_weights
    from made_np.limits import model_parts
    for shape in ((300, 900), (600, 600)):
        cfg = MADEConfig(D=shape[0], hidden=(shape[1],), init="orthogonal")
        part = [p for p in model_parts(cfg, optimizer="adam") if "initial weights" in p.what][0]
        initial_weights("orthogonal", 4, 4, np.random.default_rng(0))  # LAPACK's first-call setup
        tracemalloc.start()
        initial_weights("orthogonal", *shape, np.random.default_rng(0))
        peak = tracemalloc.get_traced_memory()[1]  # NumPy's arrays; LAPACK's workspace is not traced
        tracemalloc.stop()
        assert peak <= part.nbytes <= 2 * peak, (shape, peak, part.nbytes)
        matrix = shape[0] * shape[1] * 8
        uniform = MADEConfig(D=shape[0], hidden=(shape[1],))
        assert [p for p in model_parts(uniform, optimizer="adam") if "initial weights" in p.what][0].nbytes == matrix
        # a loaded model draws nothing (zeros, then its weights)
        assert [p for p in model_parts(cfg) if "initial weights" in p.what][0].nbytes == matrix
        # a new MADE draws: MADE.__init__ checks with drawing=True, optimiser or not
        assert [p for p in model_parts(cfg, drawing=True) if "initial weights" in p.what][0] == part


@pytest.mark.parametrize("text", ["1e400", "1e309", "1e999999999", "9" * 30 + "e9999"])
def test_a_size_past_any_float_is_refused_at_once(text):
    """10 ** 400 overflowed the float it was multiplied with (a traceback); 10 ** 999999999 took minutes."""
    with pytest.raises(limits.LimitError, match=r"is more than 1 ZiB; give a size between 1M and 1E"):
        limits.parse_size(text)


def test_a_size_variable_past_any_float_is_one_line(monkeypatch):
    monkeypatch.setenv(limits.ENV, "1e309")
    r = CliRunner().invoke(cli, ["sample", "no-such-run"])
    assert r.exit_code == 2 and r.output.strip() == ("Error: $MADE_NP_MAX_MEMORY: '1e309' is more than 1 ZiB; "
                                                     "give a size between 1M and 1E")
    monkeypatch.delenv(limits.ENV)
    r = CliRunner().invoke(cli, ["sample", "no-such-run", "--max-memory", "1e400"])
    assert r.exit_code == 2 and r.output.strip().startswith("Error: --max-memory: '1e400' is more than 1 ZiB")
