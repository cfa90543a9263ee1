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


# --------------------------------------------------------------------------- what the figures show


def legend_texts(ax):
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


LONG_ROWS = [{"epoch": e, "train_nll": 100.0 - e, "valid_nll": v}
             for e, v in zip(range(1, 8), (99.0, 97.0, 96.5, 95.0, 95.8, 95.0, 96.1))]


def test_loss_curves_have_integer_epochs_and_mark_the_best_epoch():
    fig = plots.loss_curves_figure(LONG_ROWS, valid_masks=8)
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
    texts = legend_texts(ax)
    # epoch 4 and 6 tie at 95.0: the first is the one training keeps
    assert "valid (ensemble of 8 masks)" in texts and "best epoch 4" in texts, texts
    vline = [ln for ln in ax.get_lines() if ln.get_label() == "best epoch 4"]
    assert len(vline) == 1 and set(np.asarray(vline[0].get_xdata(), dtype=float)) == {4.0}
    star = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert len(star) == 1 and list(star[0].get_xdata()) == [4] and list(star[0].get_ydata()) == [95.0]
    # a single-mask run: plain "valid"; no valid column: no best-epoch mark
    assert "valid" in legend_texts(plots.loss_curves_figure(LONG_ROWS).axes[0])
    train_only = plots.loss_curves_figure([{"epoch": 1, "train_nll": 3.0}, {"epoch": 2, "train_nll": 2.0}])
    assert not any(t.startswith("best") for t in legend_texts(train_only.axes[0]))
    assert plt.get_fignums() == []


def is_staircase(image) -> bool:
    """0/1 image whose rows go 0...0 1...1 left to right and whose columns go 1...1 0...0 top down."""
    a = np.asarray(image)
    return bool((np.diff(a, axis=1) >= 0).all() and (np.diff(a, axis=0) <= 0).all())


@pytest.mark.parametrize("direct", [False, True])
def test_masks_are_drawn_sorted_by_degree_as_staircases(direct):
    from made_np.masks import draw_masks

    ms = draw_masks(12, (20, 15), seed=3, index=2, ordering="random", order_agnostic=True,
                    connectivity_agnostic=True)
    assert not is_staircase(ms.hidden[0]) and not is_staircase(ms.output)  # unsorted: no staircase
    panels = plots.maskset_panels(ms.ordering, ms.degrees, ms.hidden, ms.output,
                                  ms.direct if direct else None)
    fig = plots.masks_figure(**panels)
    axes = fig.axes
    assert len(axes) == (4 if direct else 3)
    drawn = [np.asarray(ax.images[0].get_array()) for ax in axes]
    assert all(is_staircase(img) for img in drawn)
    levels = [ms.ordering, *ms.degrees]
    for l, (img, mask) in enumerate(zip(drawn, [*ms.hidden, ms.output])):
        r = np.argsort(levels[l], kind="stable")
        c = np.argsort(levels[l + 1] if l + 1 < len(levels) else ms.ordering, kind="stable")
        assert np.array_equal(img, mask[np.ix_(r, c)])
    assert drawn[0].sum() == ms.hidden[0].sum()  # a permutation: nothing added or lost
    assert axes[0].get_ylabel() == "inputs (m^0), sorted by degree"
    assert axes[0].get_xlabel() == "hidden layer 1 (m^1), sorted by degree"
    assert axes[1].get_ylabel().startswith("hidden layer 1") and axes[1].get_xlabel().startswith("hidden layer 2")
    assert axes[2].get_xlabel() == "outputs (m^0), sorted by degree"
    assert legend_texts(axes[-1]) == ["connected (1)", "masked (0)"]
    if direct:  # A is strictly upper triangular once sorted
        assert np.array_equal(drawn[3], np.triu(np.ones((12, 12)), k=1))
    # without degrees the masks are drawn as they are
    plain = plots.masks_figure(panels["masks"])
    assert np.array_equal(np.asarray(plain.axes[0].images[0].get_array()), ms.hidden[0])
    with pytest.raises(ValueError, match="degrees for"):
        plots.masks_figure(panels["masks"][:1], degrees=[(ms.ordering[:5], ms.degrees[0])])


def assert_same_table_orientation(images):
    """Every image is drawn with one extent and origin, so cell [i, j] sits at one place on each."""
    extents = {tuple(im.get_extent()) for im in images}
    origins = {im.origin for im in images}
    assert len(extents) == 1 and len(origins) == 1, (extents, origins)


def test_2d_samples_are_a_histogram_in_the_tables_orientation(tmp_path):
    C, n = 200, 1000
    rng = np.random.default_rng(0)
    x = rng.integers(0, C, size=(n, 2))
    x[:7] = (5, 150)  # x1 = 5, x2 = 150
    fig = plots.sample_grid_figure(x, None, classes=C)
    ax = fig.axes[0]
    counts = np.asarray(ax.images[0].get_array())
    assert counts.shape == (C, C) and counts.sum() == n
    assert counts[5, 150] == np.sum((x[:, 0] == 5) & (x[:, 1] == 150)) >= 7
    assert np.array_equal(counts, plots.histogram2d(x, C))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x2", "x1")
    # the density panels: a table peaked at p[5, 150] and samples at (5, 150) land in one cell
    p = np.full((C, C), 1.0)
    p[5, 150] = 1000.0
    p /= p.sum()
    panels = plots.panels_2d_figure(p, x, x[:50], p)
    images = [a.images[0] for a in panels.axes if a.images]
    assert len(images) == 4
    for im in images:
        assert np.unravel_index(np.argmax(np.asarray(im.get_array())), (C, C)) == (5, 150)
    assert_same_table_orientation(images + [ax.images[0]])
    assert all((a.get_xlabel(), a.get_ylabel()) == ("x2", "x1") for a in panels.axes if a.images)
    # the sample histograms are frequencies summing to 1
    assert np.isclose(np.asarray(images[1].get_array()).sum(), 1.0)
    # the cell of (x1=5, x2=150) in data coordinates: column 150 along x, row 5 along y
    left, right, bottom, top = images[0].get_extent()
    assert (left, top) == (-0.5, -0.5) and (right, bottom) == (C - 0.5, C - 0.5)
    with pytest.raises(ValueError, match="0..9"):
        plots.plot_sample_grid(x, None, tmp_path / "x.png", classes=10)
    assert plt.get_fignums() == []


# --------------------------------------------------------------------------- titles, colours, ticks


def test_sample_grids_have_a_title_saying_what_is_shown():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 2, size=(12, 16))
    fig = plots.sample_grid_figure(images, (4, 4), title="12 samples, mask 3")
    assert fig.axes[0].get_title() == "12 samples, mask 3"
    assert plots.sample_grid_figure(images, (4, 4)).axes[0].get_title() == "12 samples"  # the default
    heat = plots.sample_grid_figure(rng.integers(0, 3, size=(7, 5)), None, title="7 samples, mask 0")
    assert heat.axes[0].get_title() == "7 samples, mask 0"
    hist = plots.sample_grid_figure(rng.integers(0, 4, size=(9, 2)), None, classes=4)
    assert hist.axes[0].get_title() == "9 samples on the 4 x 4 grid"
    assert plots.sample_grid_figure(rng.integers(0, 4, size=(9, 2)), None, classes=4,
                                    title="mixture of masks 0..3").axes[0].get_title() == "mixture of masks 0..3"


def test_missing_pixels_are_drawn_in_a_colour_of_their_own():
    """A completion grid: NaN pixels (the unobserved half) in MISSING_COLOUR, named in a legend, unlike
    every grey level and unlike the grid lines between the images."""
    from matplotlib.colors import to_rgba

    x = np.array([[0.0, 1.0, np.nan, np.nan], [1.0, 0.0, 1.0, 0.0]])  # two 2x2 images, the first half missing
    fig = plots.sample_grid_figure(x, (2, 2), ncols=2)
    ax = fig.axes[0]
    rgba = np.asarray(ax.images[0].get_array())
    assert rgba.shape == (2, 5, 4)  # two 2x2 images and a 1-pixel grid line between them

    def colour(r, c):
        return tuple(rgba[r, c] / 255)

    missing, grid = to_rgba(plots.MISSING_COLOUR), to_rgba(plots.GRID_COLOUR)
    assert colour(1, 0) == colour(1, 1) == pytest.approx(missing, abs=1 / 255)
    assert colour(0, 2) == colour(1, 2) == pytest.approx(grid, abs=1 / 255)
    assert colour(0, 0) == (0, 0, 0, 1) and colour(0, 1) == (1, 1, 1, 1)  # black 0, white 1
    assert len(set(missing[:3])) == 3 and missing != pytest.approx(grid, abs=0.1)  # a colour, not a grey
    assert legend_texts(ax) == ["missing (not observed)"]
    assert legend_texts(plots.sample_grid_figure(np.nan_to_num(x), (2, 2)).axes[0]) == []  # nothing missing


def test_a_one_epoch_run_gets_whole_epoch_ticks():
    for rows in ([{"epoch": 1, "train_nll": 3.0, "valid_nll": 2.5}], LONG_ROWS[:2]):
        fig = plots.loss_curves_figure(rows)
        fig.canvas.draw()
        ax = fig.axes[0]
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def overlapping_tick_labels(fig) -> list:
    """Pairs of neighbouring tick labels (within the view) whose drawn boxes overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            labels = [t for t, v in zip(axis.get_ticklabels(), axis.get_ticklocs()) if lo <= v <= hi]
            boxes = [t.get_window_extent(renderer) for t in labels]
            found += [(a.get_text(), b.get_text()) for (a, b), (p, q) in zip(zip(labels, labels[1:]),
                                                                         zip(boxes, boxes[1:])) if p.overlaps(q)]
    return found


@pytest.mark.parametrize("D, hidden", [(784, 500), (60, 8000), (60, 20000), (1, 1)])
def test_mask_tick_labels_never_overlap(D, hidden):
    """``made-np masks RUN --png`` of a 784 x 500 MNIST model printed overlapping W1 labels."""
    w1 = np.triu(np.ones((D, hidden)))
    fig = plots.masks_figure([w1, w1.T])
    assert overlapping_tick_labels(fig) == []
    for ax in fig.axes:
        assert all(float(t).is_integer() for t in ax.get_xticks()) and len(ax.get_xticks()) >= 2


@pytest.mark.parametrize("with_truth", [True, False])
def test_2d_panels_share_one_colour_scale(with_truth):
    C = 10
    rng = np.random.default_rng(0)
    true = rng.random((C, C))
    true /= true.sum()
    model = 0.5 * true + 0.5 / C**2
    train = rng.integers(0, C, size=(50, 2))  # few samples: histogram peaks above the tables
    fig = plots.panels_2d_figure(true if with_truth else None, train, train[:20], model)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == (4 if with_truth else 3)
    top = max(true.max(), model.max()) if with_truth else model.max()
    assert [im.get_clim() for im in images] == [(0.0, top)] * len(images)
    colorbars = [ax for ax in fig.axes if not ax.images]
    assert len(colorbars) == 1 and colorbars[0].get_ylabel() == "probability"  # one bar for every panel
    assert images[-1].colorbar.extend == "max"  # the histograms' cells above the scale saturate
    assert plt.get_fignums() == []


@pytest.mark.parametrize("draw, message", [
    (lambda: plots.loss_curves_figure([]), "no metrics rows"),
    (lambda: plots.histogram2d(np.zeros((3, 3)), 4), r"samples must be \(N, 2\), got \(3, 3\)"),
    (lambda: plots.sample_grid_figure(np.zeros((0, 4)), (2, 2)), r"samples must be \(n, D\) with n > 0"),
    (lambda: plots.masks_figure([]), "plot_masks: no masks"),
    (lambda: plots.masks_figure([np.ones((2, 3))], degrees=[None, None]), "2 degree pairs for 1 masks"),
    (lambda: plots.masks_figure([np.ones((2, 3))], axis_names=[]), "0 axis name pairs for 1 masks"),
    (lambda: plots.masks_figure([np.ones(3)]), r"mask 0 is not 2-D \(shape \(3,\)\)"),
    (lambda: plots.maskset_panels([0, 1], [[0]], [], np.ones((2, 2))), "1 degree arrays for 0 hidden masks"),
    (lambda: plots.panels_2d_figure(None, np.zeros((1, 2)), np.zeros((1, 2)), np.ones((2, 3))),
     r"model_density must be \(C, C\), got \(2, 3\)"),
    (lambda: plots.panels_2d_figure(np.ones((3, 3)), np.zeros((1, 2)), np.zeros((1, 2)), np.ones((2, 2))),
     r"true_density shape \(3, 3\) != \(2, 2\)"),
])
def test_bad_arguments_are_one_line_value_errors(draw, message):
    """Each refusal of the figures names what is wrong (they were unreached by the suite)."""
    with pytest.raises(ValueError, match=message):
        draw()
    assert plt.get_fignums() == []


def test_masks_with_degrees_of_one_side_only_keep_the_other_in_place():
    """A ``None`` in a degree pair leaves that axis in its natural order; the other is sorted."""
    fig = plots.masks_figure([np.array([[1, 0, 0], [1, 1, 0]])], degrees=[(None, [2, 0, 1])])
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), [[0, 0, 1], [1, 0, 1]])  # columns 1, 2, 0
