"""What the command line's figures show: loss.png, the masks PNG, and the 2-D samples and panels.

Every PNG goes through :func:`made_np.plots._save`; the ``figures`` fixture wraps it to
record what each figure holds (images, axis labels, legends, ticks) before it is written,
so these tests read the figure the command drew, not a re-drawing of it.
"""
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.colors import to_rgba

from made_np import plots
from made_np.checkpoint import load_checkpoint
from made_np.cli import cli


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _summary(fig) -> list:
    axes = []
    for ax in fig.axes:
        legend = ax.get_legend()
        lo, hi = ax.get_xlim()
        axes.append({
            "images": [(np.array(im.get_array()), tuple(im.get_extent()), im.origin) for im in ax.images],
            "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(), "title": ax.get_title(),
            "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
            "xticks": [t for t in ax.get_xticks() if min(lo, hi) <= t <= max(lo, hi)],
            "clim": [im.get_clim() for im in ax.images],
        })
    return axes


@pytest.fixture
def figures(monkeypatch):
    """``{png file name: [axes summary, ...]}`` of every figure written while the test runs."""
    drawn = {}
    real_save = plots._save

    def save(fig, out_path):
        drawn[Path(out_path).name] = _summary(fig)
        return real_save(fig, out_path)

    monkeypatch.setattr(plots, "_save", save)
    return drawn


def is_staircase(a) -> bool:
    return bool((np.diff(a, axis=1) >= 0).all() and (np.diff(a, axis=0) <= 0).all())


def test_bank_run_figures_loss_and_masks(tmp_path, figures):
    out = tmp_path / "bank"
    run("train", "--epochs", 3, "--hidden", "20,12", "--num-masks", 3, "--no-direct-connections", "--seed", 1,
        "--out", out, "-q")
    assert figures["samples.png"][0]["title"] == "100 samples, mixture of masks 0..2"  # the test ensemble
    (loss,) = figures["loss.png"]
    best = json.loads((out / "results.json").read_text())["best_epoch"]
    assert "valid (ensemble of 3 masks)" in loss["legend"] and f"best epoch {best}" in loss["legend"]
    assert loss["xticks"] and all(float(t).is_integer() for t in loss["xticks"])

    model, _ = load_checkpoint(out)
    run("masks", out, "--index", 2, "--out", tmp_path / "m.npz", "--png", tmp_path / "m.png")
    ms = model.maskset_at(2)
    panels = figures["m.png"]
    assert len(panels) == 3
    assert all(is_staircase(p["images"][0][0]) for p in panels)
    assert panels[0]["ylabel"] == "inputs (m^0), sorted by degree"
    assert panels[-1]["xlabel"] == "outputs (m^0), sorted by degree"
    assert panels[-1]["legend"] == ["connected (1)", "masked (0)"]
    with np.load(tmp_path / "m.npz") as z:  # the dump keeps the natural order
        assert np.array_equal(z["mask_W1"], ms.hidden[0]) and not is_staircase(z["mask_W1"])
        assert np.array_equal(z["ordering"], ms.ordering)
    r, c = np.argsort(ms.ordering, kind="stable"), np.argsort(ms.degrees[0], kind="stable")
    assert np.array_equal(panels[0]["images"][0][0], ms.hidden[0][np.ix_(r, c)])


    run("sample", out, "-n", 12, "--mixture", 2, "--out", tmp_path / "mix.png")
    run("sample", out, "-n", 5, "--mask-index", 1, "--out", tmp_path / "one.png")
    assert figures["mix.png"][0]["title"] == "12 samples, mixture of masks 0..1"
    assert figures["one.png"][0]["title"] == "5 samples, mask 1"
    run("complete", out, "--occlude", "bottom", "--first", 3, "-n", 4, "--out", tmp_path / "c.npz", "--png",
        tmp_path / "c.png")
    (grid,) = figures["c.png"]
    assert grid["title"] == "3 examples (bottom occluded), one a row: original | observed | 4 completions"
    assert grid["legend"] == ["missing (not observed)"]
    rgba = grid["images"][0][0]
    assert rgba.shape == (3 * 9 - 1, 6 * 9 - 1, 4)  # 3 rows of 6 images of 8 x 8, grid lines between
    missing = tuple(np.round(255 * np.array(to_rgba(plots.MISSING_COLOUR))))
    observed = rgba[4:8, 9:17]  # the observed image's bottom half
    assert (observed == missing).all(axis=-1).all() and not (rgba[:4, 9:17] == missing).all(axis=-1).any()


def test_2d_figures_share_the_tables_orientation(tmp_path, figures):
    """A 2-D data set with 80% of its mass at (x1, x2) = (1, 9): every figure puts its peak in the
    cell of p[1, 9], none at (9, 1)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 12, size=(3000, 2))
    x[rng.random(3000) < 0.8] = (1, 9)
    np.save(tmp_path / "peak.npy", x)
    out = tmp_path / "run"
    run("train", "--dataset", tmp_path / "peak.npy", "--epochs", 30, "--hidden", 16, "--num-masks", 16, "--out", out, "-q")
    (samples,) = [a for a in figures["samples.png"] if a["images"]]  # (the other axes: the colour bar)
    assert samples["title"] == "100000 samples, mixture of masks 0..15"
    counts, extent, origin = samples["images"][0]
    assert counts.shape == (12, 12) and counts.sum() == 100_000  # a histogram of every sample drawn
    assert np.unravel_index(np.argmax(counts), counts.shape) == (1, 9)
    assert (samples["xlabel"], samples["ylabel"]) == ("x2", "x1")

    run("sample", out, "-n", 500, "--out", tmp_path / "s.png")
    (sampled,) = [a for a in figures["s.png"] if a["images"]]
    assert sampled["images"][0][0].sum() == 500 and sampled["images"][0][1:] == (extent, origin)

    run("density", out, "--out", tmp_path / "d.png", "-n", 2000)
    panels = [p for p in figures["d.png"] if p["images"]]
    assert [p["title"] for p in panels] == ["training samples (N = 2400)", "model samples (M = 2000)",
                                            "model density"]
    for p in panels:
        table, p_extent, p_origin = p["images"][0]
        assert (p_extent, p_origin) == (extent, origin) and (p["xlabel"], p["ylabel"]) == ("x2", "x1")
        assert np.unravel_index(np.argmax(table), table.shape) == (1, 9), p["title"]
    assert len({p["clim"][0] for p in panels}) == 1  # one colour scale: the same colour, the same probability
