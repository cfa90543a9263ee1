"""Figures for training runs: loss curves, sample grids, masks, the 2-D experiment and 2-D real densities.

Figures are built as :class:`matplotlib.figure.Figure` objects rendered by the
Agg canvas, never through :mod:`matplotlib.pyplot`: nothing needs a display,
the process-wide backend is left alone, and no figure stays registered after
a function returns. Every ``plot_*`` function takes host (NumPy) arrays, writes
a PNG (creating the parent folder) and returns its path; the matching
``*_figure`` function builds and returns the :class:`~matplotlib.figure.Figure`
without writing anything (what the tests inspect).

2-D tables ``p[i, j] = p(x1 = i, x2 = j)`` and histograms of samples ``(x1, x2)``
are all drawn the same way (:func:`draw_table`): row ``i`` = ``x1`` from the top
down, column ``j`` = ``x2`` from left to right, as ``imshow`` shows a matrix.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba_array
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

#: The grid lines between the images of :func:`plot_sample_grid`.
GRID_COLOUR = "0.6"
#: Missing (NaN) pixels in :func:`plot_sample_grid`, e.g. the unobserved half of a completion:
#: a muted orange, unlike every grey level and the grid lines.
MISSING_COLOUR = "#d4875a"

TRAIN_KEYS = ("train_nll", "train_loss", "train")
VALID_KEYS = ("valid_nll", "val_nll", "valid_loss", "valid")


class WholeTicks(MaxNLocator):
    """Whole-number ticks (epochs, unit positions), no more than fit side by side on the axis.

    MaxNLocator's ``"auto"`` leaves each label 3 em on an x axis, too little for numbers of
    4 digits or more (about 0.6 em a digit): the x axis gets room for its longest label and
    1 em between labels. One tick is enough, so a one-epoch run or a one-unit mask still gets
    a whole number rather than fractional ticks.
    """

    def __init__(self):
        super().__init__(integer=True, min_n_ticks=1)

    def __call__(self):
        space = self.axis.get_tick_space()
        if self.axis.axis_name == "x":
            digits = len(f"{max(np.abs(self.axis.get_view_interval())):.0f}")
            space = int(space * 3 // (0.6 * digits + 1))
        self.set_params(nbins=max(1, space))
        return super().__call__()


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _axes(width: float, height: float):
    """A figure of one axes: ``(figure, axes)``."""
    fig = _figure(width, height)
    return fig, fig.add_subplot()


def _save(fig: Figure, out_path) -> Path:
    from .runfolder import atomic_file  # a failed write keeps any earlier figure of that name

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out, "wb") as f:
        fig.savefig(f, format=out.suffix[1:].lower() or "png", dpi=100, bbox_inches="tight")
    fig.clear()
    return out


def _column(rows: list[dict], keys: tuple) -> np.ndarray | None:
    for key in keys:
        if any(key in row for row in rows):
            return np.array([_to_float(row.get(key)) for row in rows])
    return None


def _to_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # missing or empty CSV cell
        return math.nan


def loss_curves_figure(metrics, valid_masks: int = 1) -> Figure:
    """The figure of :func:`plot_loss_curves` (same parameters, no file written)."""
    if isinstance(metrics, (str, Path)):
        with open(metrics, newline="") as f:
            metrics = list(csv.DictReader(f))
    rows = list(metrics)
    if not rows:
        raise ValueError("plot_loss_curves: no metrics rows")
    epoch = _column(rows, ("epoch",))
    epoch = np.arange(1, len(rows) + 1, dtype=float) if epoch is None else epoch
    valid_label = f"valid (ensemble of {valid_masks} masks)" if valid_masks > 1 else "valid"
    curves = {"train": _column(rows, TRAIN_KEYS), valid_label: _column(rows, VALID_KEYS)}
    if all(c is None for c in curves.values()):
        raise ValueError(f"plot_loss_curves: no NLL column; expected one of {TRAIN_KEYS + VALID_KEYS}")
    fig, ax = _axes(6, 4)
    for label, y in curves.items():
        if y is not None:
            ok = np.isfinite(y) & np.isfinite(epoch)
            ax.plot(epoch[ok], y[ok], marker="." if ok.sum() < 30 else None, label=label)
    valid = curves[valid_label]
    ok = np.isfinite(epoch) & (False if valid is None else np.isfinite(valid))
    if ok.any():  # the first lowest valid NLL: the epoch whose weights training restores
        k = np.flatnonzero(ok)[np.argmin(valid[ok])]
        ax.axvline(epoch[k], color="0.5", linestyle="--", linewidth=1, label=f"best epoch {epoch[k]:g}")
        ax.plot([epoch[k]], [valid[k]], marker="*", markersize=12, color="C3", linestyle="none",
                label=f"best valid NLL {valid[k]:.4g}")
    ax.xaxis.set_major_locator(WholeTicks())  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel("negative log-likelihood (nats per example)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_loss_curves(metrics, out_path, valid_masks: int = 1) -> Path:
    """Plot train and valid negative log-likelihood against epoch.

    The x axis has whole-number epoch ticks; the epoch of the lowest valid
    NLL (the first one, as training keeps) is marked by a dashed vertical
    line labelled ``best epoch N`` and a star on the valid curve.

    Parameters
    ----------
    metrics : list of dict, or str or os.PathLike
        One dict per epoch, or the path of a ``metrics.csv`` with a header
        row. Read keys: ``epoch`` (default 1, 2, ...), the train NLL in nats
        (first present of ``train_nll``, ``train_loss``, ``train``) and the
        valid NLL (``valid_nll``, ``val_nll``, ``valid_loss``, ``valid``).
        Empty or missing values are skipped, so a valid NLL logged every few
        epochs still draws a line.
    out_path : str or os.PathLike
        PNG file to write.
    valid_masks : int, default 1
        Masks in the validation ensemble (``history["valid_masks"]`` of
        :func:`made_np.train.fit`); above 1 the valid curve is labelled
        ``valid (ensemble of K masks)``.

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    ValueError
        No rows, or neither a train nor a valid NLL column.
    """
    return _save(loss_curves_figure(metrics, valid_masks), out_path)


def histogram2d(samples, classes: int, caller: str = "") -> np.ndarray:
    """Counts ``h[i, j]`` of the samples with ``(x1, x2) = (i, j)``: the orientation of the tables.

    Parameters
    ----------
    samples : numpy.ndarray, shape (N, 2)
        Integer samples in ``0..classes-1``.
    classes : int
        Values per variable C; the histogram is ``(C, C)``.
    caller : str, optional
        Starts the error messages (``"plot_sample_grid: "``).

    Returns
    -------
    numpy.ndarray of int64, shape (C, C)
        Sums to N.

    Raises
    ------
    ValueError
        Samples not ``(N, 2)``, or out of range.
    """
    x = np.asarray(samples)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"{caller}samples must be (N, 2), got {x.shape}")
    x, C = x.astype(np.int64), int(classes)
    if x.size and (x.min() < 0 or x.max() >= C):
        raise ValueError(f"{caller}sample values must lie in 0..{C - 1}")
    return np.bincount(x[:, 0] * C + x[:, 1], minlength=C * C).reshape(C, C)


def draw_table(fig: Figure, ax, table, title: str, colorbar_label: str | None = "probability",
               vmax: float | None = None):
    """Draw a ``(C, C)`` table of ``(x1, x2)`` on ``ax``: entry ``[i, j]`` in the cell of row
    ``x1 = i`` (top down) and column ``x2 = j``, with a colour bar (none when ``colorbar_label``
    is None). Every 2-D panel of this module is drawn by this function, so they all share one
    orientation. ``vmax``: the top of a colour scale from 0 shared with other panels (default:
    this table's own range). Returns the image."""
    im = ax.imshow(np.asarray(table), origin="upper", interpolation="nearest",
                   vmin=None if vmax is None else 0.0, vmax=vmax)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x2")
    ax.set_ylabel("x1")
    if colorbar_label is not None:
        fig.colorbar(im, ax=ax, shrink=0.8, label=colorbar_label)
    return im


def sample_grid_figure(samples, image_shape, ncols: int = 10, classes: int | None = None,
                       title: str | None = None) -> Figure:
    """The figure of :func:`plot_sample_grid` (same parameters but ``out_path``), not written.

    Returns
    -------
    matplotlib.figure.Figure
        On an Agg canvas, registered with no pyplot figure manager. Its first axes hold
        one image: for a grid, an ``(rows, cols, 4)`` uint8 RGBA mosaic (grey levels,
        :data:`GRID_COLOUR` lines, :data:`MISSING_COLOUR` missing pixels); for 2-D data,
        the ``(C, C)`` int64 counts of :func:`histogram2d`; else the samples as they are.

    Raises
    ------
    ValueError
        As :func:`plot_sample_grid`.
    """
    x = np.asarray(samples)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"plot_sample_grid: samples must be (n, D) with n > 0, got {x.shape}")
    n, D = x.shape
    if image_shape is None and D == 2 and classes != 0:  # 2-D classes: their histogram
        C = int(classes) if classes is not None else int(x.max()) + 1
        fig = _figure(5.5, 4.5)
        draw_table(fig, fig.add_subplot(), histogram2d(x, C, "plot_sample_grid: "),
                   title or f"{n} samples on the {C} x {C} grid", "samples per cell")
        return fig
    if image_shape is None and D == 2:  # real values (classes 0): the points themselves
        fig, ax = _axes(5, 4.5)
        ax.scatter(x[:, 0], x[:, 1], s=4, alpha=0.5)
    elif image_shape is None:
        fig, ax = _axes(5, 4)
        fig.colorbar(ax.imshow(x, aspect="auto", interpolation="nearest", cmap="gray"), ax=ax)
        ax.set_xlabel("dimension")
        ax.set_ylabel("sample")
    else:
        fig, ax = _image_grid(x, image_shape, ncols)
    ax.set_title(title or f"{n} samples", fontsize=10)
    return fig


def _image_grid(x, image_shape, ncols: int):
    """The figure of :func:`sample_grid_figure` for images: ``(figure, axes)``."""
    (n, D), (h, w) = x.shape, image_shape
    if h * w != D:
        raise ValueError(f"plot_sample_grid: image_shape {image_shape} does not match D = {D}")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    images = x.reshape(n, h, w).astype(float)
    missing = np.isnan(images)
    top = max(1.0, float(images[~missing].max(initial=0.0)))
    # One RGBA mosaic with 1-pixel grid lines between images (far faster than n axes):
    # grey levels 0..top, grid lines GRID_COLOUR, missing (NaN) pixels MISSING_COLOUR.
    tiles = matplotlib.colormaps["gray"](images / top, bytes=True)
    tiles[missing] = to_rgba_array(MISSING_COLOUR, alpha=1) * 255
    cells = np.empty((nrows * ncols, h + 1, w + 1, 4), np.uint8)  # each image with its grid lines right and below
    cells[:] = to_rgba_array(GRID_COLOUR) * 255
    cells[:n, :h, :w] = tiles
    grid = cells.reshape(nrows, ncols, h + 1, w + 1, 4).swapaxes(1, 2).reshape(nrows * (h + 1), -1, 4)[:-1, :-1]
    width = min(12.0, max(2.0, 0.8 * ncols))  # inches
    fig, ax = _axes(width, width * grid.shape[0] / grid.shape[1])
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if missing.any():
        ax.legend(handles=[Patch(facecolor=MISSING_COLOUR, label="missing (not observed)")],
                  loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=8, frameon=False)
    return fig, ax


def plot_sample_grid(samples, image_shape, out_path, ncols: int = 10, classes: int | None = None,
                     title: str | None = None) -> Path:
    """Draw samples as a grid of images (or a 2-D histogram / heat-map when not images).

    Parameters
    ----------
    samples : numpy.ndarray, shape (n, D)
        Samples of any real dtype (``bool``, ``uint8``, ``int64``,
        ``float64``, ...): binary pixels, grey levels or category indices,
        shown on a grey scale from 0 (black) to the largest value (white,
        at least 1). In a grid of images, NaN marks a missing pixel (the
        unobserved part of an example to complete), drawn in
        :data:`MISSING_COLOUR` with a legend, unlike any grey level and unlike
        the grid lines (:data:`GRID_COLOUR`).
    image_shape : tuple of int or None
        ``(h, w)`` with ``h * w == D``, e.g. ``(28, 28)``. ``None``: when
        ``D == 2``, the histogram of the samples on the ``classes x classes``
        grid, drawn as :func:`plot_2d_panels` draws its tables (row ``x1``,
        column ``x2``), in samples per cell; else a heat-map with one row per
        sample.
    out_path : str or os.PathLike
        PNG file to write (its folder is created).
    ncols : int, default 10
        Images per grid row (at most ``n``).
    classes : int, optional
        Values per variable of 2-D data (the grid is ``classes x classes``);
        default: the largest sample value + 1.
    title : str, optional
        One line above the figure saying what is shown, e.g. ``"100 samples,
        mask 0"``; default ``"{n} samples"`` (``"{n} samples on the C x C
        grid"`` for the histogram).

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    ValueError
        ``samples`` not 2-D or empty, ``image_shape`` not matching D, or 2-D
        samples outside ``0..classes-1``.
    """
    return _save(sample_grid_figure(samples, image_shape, ncols, classes, title), out_path)


def _sort_order(degrees, size: int, what: str) -> np.ndarray:
    if degrees is None:
        return np.arange(size)
    d = np.asarray(degrees).reshape(-1)
    if d.shape[0] != size:
        raise ValueError(f"plot_masks: {what} has {d.shape[0]} degrees for {size} units")
    return np.argsort(d, kind="stable")


def masks_figure(masks, titles=None, degrees=None, axis_names=None) -> Figure:
    """The figure of :func:`plot_masks` (same parameters, no file written)."""
    masks = [np.asarray(m, dtype=float) for m in masks]
    if not masks:
        raise ValueError("plot_masks: no masks")
    for what, given in (("titles", titles), ("degree pairs", degrees), ("axis name pairs", axis_names)):
        if given is not None and len(given) != len(masks):
            raise ValueError(f"plot_masks: {len(given)} {what} for {len(masks)} masks")
    fig = _figure(3.2 * len(masks) + 1.4, 3.6)
    for k, m in enumerate(masks):
        if m.ndim != 2:
            raise ValueError(f"plot_masks: mask {k} is not 2-D (shape {m.shape})")
        title = titles[k] if titles is not None else f"mask {k} ({m.shape[0]} x {m.shape[1]})"
        rows, cols = axis_names[k] if axis_names is not None else ("input unit", "output unit")
        if degrees is not None and degrees[k] is not None:
            r = _sort_order(degrees[k][0], m.shape[0], f"the rows of mask {k}")
            c = _sort_order(degrees[k][1], m.shape[1], f"the columns of mask {k}")
            m = m[np.ix_(r, c)]
            rows, cols = f"{rows}, sorted by degree", f"{cols}, sorted by degree"
        ax = fig.add_subplot(1, len(masks), k + 1)
        ax.imshow(m, cmap="Greys", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
        ax.xaxis.set_major_locator(WholeTicks())  # unit positions, as many labels as fit
        ax.yaxis.set_major_locator(WholeTicks())
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(cols, fontsize=8)
        ax.set_ylabel(rows, fontsize=8)
    handles = [Patch(facecolor="black", edgecolor="black", label="connected (1)"),
               Patch(facecolor="white", edgecolor="black", label="masked (0)")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.03, 1.0), fontsize=8, frameon=False)
    return fig


def plot_masks(masks, out_path, titles=None, degrees=None, axis_names=None) -> Path:
    """Draw MADE connectivity masks, one panel per mask, with a connected / masked legend.

    Parameters
    ----------
    masks : sequence of numpy.ndarray, each shape (fan_in, fan_out)
        0/1 (or boolean) masks; entry ``[i, j]`` is 1 when input unit ``i``
        may feed output unit ``j``. Shown with ``fan_in`` as rows, 1 (connected)
        as black, 0 (masked) as white.
    out_path : str or os.PathLike
        PNG file to write.
    titles : sequence of str, optional
        One per mask; default ``"mask k (fan_in x fan_out)"``.
    degrees : sequence of (row_degrees, col_degrees), optional
        One pair per mask (or ``None`` for a mask left as it is): the degrees
        of its input units (rows) and output units (columns), e.g. ``m^0`` and
        ``m^1`` for the first hidden mask. Rows and columns are drawn sorted by
        degree (stable), which turns every MADE mask into a staircase; the
        arrays themselves are not changed.
    axis_names : sequence of (str, str), optional
        One ``(rows, columns)`` pair of names per mask, e.g. ``("inputs",
        "hidden layer 1")``; default ``("input unit", "output unit")``.
        Sorted axes get ``", sorted by degree"`` appended.

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    ValueError
        No masks, a mask that is not 2-D, a list of titles, degrees or axis
        names not one per mask, or degrees not one per unit.
    """
    return _save(masks_figure(masks, titles, degrees, axis_names), out_path)


def maskset_panels(ordering, degrees, hidden, output, direct=None) -> dict:
    """Arguments of :func:`plot_masks` for one MADE mask (a :class:`made_np.masks.MaskSet`'s parts).

    Parameters
    ----------
    ordering : array of int, shape (D,)
        m^0, the degree of input (and output) ``d``.
    degrees : sequence of arrays
        m^1, ..., m^L, the degrees of the hidden layers.
    hidden : sequence of arrays
        M^W1 (D, H_1), ..., M^WL (H_{L-1}, H_L).
    output : array, shape (H_L, D)
        M^V ((D, D) with no hidden layer).
    direct : array, shape (D, D), optional
        M^A, drawn as a last panel when given.

    Returns
    -------
    dict
        ``masks``, ``titles``, ``degrees``, ``axis_names``: pass as ``plot_masks(**panels, out_path=...)``.
    """
    ordering, degrees = np.asarray(ordering), [np.asarray(d) for d in degrees]
    if len(degrees) != len(hidden):
        raise ValueError(f"maskset_panels: {len(degrees)} degree arrays for {len(hidden)} hidden masks")
    layer_degrees = [ordering] + degrees
    layer_names = ["inputs (m^0)"] + [f"hidden layer {l} (m^{l})" for l in range(1, len(degrees) + 1)]
    # one panel a mask: (mask, title, (row degrees, column degrees), (row name, column name))
    panels = [(m, f"W{l}: layer {l - 1} -> {l}", layer_degrees[l - 1:l + 1], layer_names[l - 1:l + 1])
              for l, m in enumerate(hidden, start=1)]
    source = f"layer {len(degrees)}" if degrees else "inputs"
    panels.append((output, f"V: {source} -> outputs", (layer_degrees[-1], ordering), (layer_names[-1], "outputs (m^0)")))
    if direct is not None:
        panels.append((direct, "A: inputs -> outputs", (ordering, ordering), ("inputs (m^0)", "outputs (m^0)")))
    masks = [np.asarray(m) for m, *_ in panels]
    return {"masks": masks, "titles": [f"{p[1]} ({m.shape[0]} x {m.shape[1]})" for m, p in zip(masks, panels)],
            "degrees": [tuple(p[2]) for p in panels], "axis_names": [tuple(p[3]) for p in panels]}


def panels_2d_figure(true_density, train_samples, model_samples, model_density) -> Figure:
    """The figure of :func:`plot_2d_panels` (same parameters, no file written)."""
    model_density = np.asarray(model_density, dtype=float)
    if model_density.ndim != 2 or model_density.shape[0] != model_density.shape[1]:
        raise ValueError(f"plot_2d_panels: model_density must be (C, C), got {model_density.shape}")
    C = model_density.shape[0]
    panels = []
    if true_density is not None:
        true_density = np.asarray(true_density, dtype=float)
        if true_density.shape != (C, C):
            raise ValueError(f"plot_2d_panels: true_density shape {true_density.shape} != ({C}, {C})")
        panels.append(("true distribution", true_density))
    for title, samples in (("training samples (N = {})", train_samples), ("model samples (M = {})", model_samples)):
        panels.append((title.format(len(samples)), histogram2d(samples, C, "plot_2d_panels: ") / max(1, len(samples))))
    panels.append(("model density", model_density))
    # every panel is a probability table: one colour scale, set by the exact tables (the noisy
    # histograms' peaks above it saturate), and one colour bar, so the panels compare
    vmax = max(float(np.nanmax(t)) for t in (true_density, model_density) if t is not None) or 1.0
    saturated = max(float(np.nanmax(table)) for _, table in panels) > vmax
    fig = _figure(4 * len(panels) + 0.8, 4)
    axes = [fig.add_subplot(1, len(panels), k + 1) for k in range(len(panels))]
    for ax, (title, table) in zip(axes, panels):
        im = draw_table(fig, ax, table, title, None, vmax)
    fig.colorbar(im, ax=axes, shrink=0.8, label="probability", extend="max" if saturated else "neither")
    return fig


def plot_2d_panels(true_density, train_samples, model_samples, model_density, out_path) -> Path:
    """Side-by-side panels for the 2-D categorical experiment.

    Panels, left to right: true distribution (skipped when ``None``),
    histogram of the training samples, histogram of the model's samples (both
    as frequencies), and the model's exact density. Every panel is drawn by
    :func:`draw_table`: entry ``[i, j]`` at row ``x1 = i`` (top down), column
    ``x2 = j``, so a sample ``(x1, x2) = (i, j)`` falls in the cell of
    ``p[i, j]``. All panels are probabilities on one colour scale with one
    colour bar, so equal colours mean equal probabilities across panels: from
    0 to the largest entry of the exact tables (true and model density);
    histogram cells above it are drawn in the top colour (the bar then ends
    in an arrow).

    Parameters
    ----------
    true_density : numpy.ndarray, shape (C, C), or None
        ``p(x1, x2)`` that generated the data.
    train_samples : numpy.ndarray, shape (N, 2)
        Integer samples in ``0..C-1``.
    model_samples : numpy.ndarray, shape (M, 2)
        Integer samples drawn from the model, in ``0..C-1``.
    model_density : numpy.ndarray, shape (C, C)
        The model's probabilities of every ``(x1, x2)``.
    out_path : str or os.PathLike
        PNG file to write.

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    ValueError
        Tables not ``(C, C)``, samples not ``(N, 2)`` or out of range.
    """
    return _save(panels_2d_figure(true_density, train_samples, model_samples, model_density), out_path)


def density_grid(log_density, data, grid: int = 200, margin: float = 0.05):
    """``exp(log_density)`` on a ``grid x grid`` lattice over the range of ``data``.

    Parameters
    ----------
    log_density : callable
        ``(M, 2) float64 points -> (M,)`` log densities in nats (e.g. a model's ``log_prob``);
        called once, with every point of the lattice.
    data : numpy.ndarray, shape (N, 2)
        Real-valued points; the lattice spans their range on each axis, widened by ``margin``
        of it on each side.
    grid : int
        Points per axis (cell centres).

    Returns
    -------
    density : numpy.ndarray, shape (grid, grid), float64
        ``density[i, j] = p(x1 = centre j, x2 = centre i)``: rows are x2 from the bottom up (as
        ``imshow(origin="lower")`` shows them), columns x1 from left to right.
    extent : tuple of float
        ``(x1_min, x1_max, x2_min, x2_max)``, the lattice's edges.

    Raises
    ------
    ValueError
        ``data`` not ``(N, 2)`` finite with N >= 1, or ``log_density`` not giving ``(M,)`` values.
    """
    x = np.asarray(data, dtype=float)
    if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] == 0 or not np.isfinite(x).all():
        raise ValueError(f"density_grid: data must be (N, 2) finite points, got shape {x.shape}")
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = margin * np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - pad, hi + pad
    step = (hi - lo) / grid
    c1, c2 = (lo[k] + step[k] * (np.arange(grid) + 0.5) for k in (0, 1))
    points = np.stack(np.meshgrid(c1, c2), axis=-1).reshape(-1, 2)  # row i: x2 = c2[i]
    log_p = np.asarray(log_density(points), dtype=float)
    if log_p.shape != (grid * grid,):
        raise ValueError(f"density_grid: log_density gave shape {log_p.shape} for {grid * grid} points; "
                         f"expected ({grid * grid},)")
    return np.exp(log_p).reshape(grid, grid), (lo[0], hi[0], lo[1], hi[1])


def density_figure(log_density, data, grid: int = 200, bins: int = 50, title: str = "model density") -> Figure:
    """A 2-D real-valued density beside the data: the figure of :func:`plot_density` (no file).

    Left, ``exp(log_density)`` on :func:`density_grid`'s lattice, titled with its mass on the
    lattice (``sum p * cell area``, near 1 when the lattice holds the density); right, the 2-D
    histogram of ``data`` as a density (per unit area) on ``bins x bins`` cells of the same
    range. Both panels share
    one colour scale from 0 to the model's peak (histogram cells above it saturate), x1
    horizontal and x2 vertical.

    Parameters
    ----------
    log_density, data, grid
        As :func:`density_grid`.
    bins : int
        Histogram cells per axis.
    title : str
        The left panel's title.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        As :func:`density_grid`.
    """
    density, extent = density_grid(log_density, data, grid)
    x = np.asarray(data, dtype=float)
    hist, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=bins, range=[extent[:2], extent[2:]], density=True)
    area = (extent[1] - extent[0]) * (extent[3] - extent[2]) / grid**2
    vmax = float(np.nanmax(density)) or 1.0
    fig = _figure(8.8, 4)
    axes = [fig.add_subplot(1, 2, k + 1) for k in range(2)]
    for ax, table, name in ((axes[0], density, f"{title} (mass on the grid {np.nansum(density) * area:.3f})"),
                            (axes[1], hist.T, f"data (N = {x.shape[0]})")):
        im = ax.imshow(table, origin="lower", extent=extent, aspect="auto", interpolation="nearest",
                       vmin=0.0, vmax=vmax)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    fig.colorbar(im, ax=axes, shrink=0.8, label="density", extend="max" if hist.max() > vmax else "neither")
    return fig


def plot_density(log_density, data, out_path, grid: int = 200, bins: int = 50, title: str = "model density") -> Path:
    """Draw :func:`density_figure` into the PNG ``out_path`` (its folder created) and return its path."""
    return _save(density_figure(log_density, data, grid, bins, title), out_path)
