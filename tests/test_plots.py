"""Tests of made_np.plots: every function writes a non-empty PNG and leaks no figure."""
import csv

import matplotlib.pyplot as plt
import numpy as np
import pytest

from made_np import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert plt.get_fignums() == []  # nothing left open in pyplot


ROWS = [
    {"epoch": 1, "train_nll": 120.0, "valid_nll": 118.0},
    {"epoch": 2, "train_nll": 100.0, "valid_nll": ""},
    {"epoch": 3, "train_nll": 95.0, "valid_nll": 97.5},
]


def test_loss_curves_from_dicts_and_csv(tmp_path):
    assert_png(plots.plot_loss_curves(ROWS, tmp_path / "loss.png"))
    csv_path = tmp_path / "metrics.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "train_nll", "valid_nll"])
        writer.writeheader()
        writer.writerows(ROWS)
    assert_png(plots.plot_loss_curves(csv_path, tmp_path / "sub" / "loss_csv.png"))
    with pytest.raises(ValueError, match="no NLL column"):
        plots.plot_loss_curves([{"epoch": 1, "lr": 0.1}], tmp_path / "x.png")


@pytest.mark.parametrize(
    "shape, D, classes",
    [((28, 28), 784, 2), ((8, 8), 64, 2), ((4, 4), 16, 17), (None, 2, 200), (None, 5, 3)],
)
def test_sample_grid(tmp_path, shape, D, classes):
    samples = np.random.default_rng(0).integers(0, classes, size=(23, D)).astype(np.uint8)
    assert_png(plots.plot_sample_grid(samples, shape, tmp_path / "grid.png", ncols=6))


def test_sample_grid_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="does not match"):
        plots.plot_sample_grid(np.zeros((3, 10)), (3, 3), tmp_path / "x.png")


def test_masks(tmp_path):
    rng = np.random.default_rng(0)
    masks = [rng.random((6, 10)) < 0.5, rng.random((10, 10)) < 0.5, rng.random((10, 6)) < 0.5]
    assert_png(plots.plot_masks(masks, tmp_path / "masks.png"))
    assert_png(plots.plot_masks(masks[:1], tmp_path / "one.png", titles=["input -> hidden"]))
    with pytest.raises(ValueError, match="titles"):
        plots.plot_masks(masks, tmp_path / "x.png", titles=["a"])


@pytest.mark.parametrize("with_truth", [True, False])
def test_2d_panels(tmp_path, with_truth):
    C = 20
    rng = np.random.default_rng(0)
    density = rng.random((C, C))
    density /= density.sum()
    train = rng.integers(0, C, size=(500, 2))
    model = rng.integers(0, C, size=(300, 2))
    out = plots.plot_2d_panels(
        density if with_truth else None, train, model, density, tmp_path / "panels.png"
    )
    assert_png(out)
    with pytest.raises(ValueError, match="0..19"):
        plots.plot_2d_panels(None, train + C, model, density, tmp_path / "x.png")
