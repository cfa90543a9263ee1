"""Figures for training runs: loss curves, sample grids, masks and the 2-D experiment.

Figures are built as :class:`matplotlib.figure.Figure` objects rendered by the
Agg canvas, never through :mod:`matplotlib.pyplot`: nothing needs a display,
the process-wide backend is left alone, and no figure stays registered after
a function returns. Every function takes host (NumPy) arrays, writes a PNG
(creating the parent folder) and returns its path.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

TRAIN_KEYS = ("train_nll", "train_loss", "train")
VALID_KEYS = ("valid_nll", "val_nll", "valid_loss", "valid")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_path) -> Path:
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
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


def plot_loss_curves(metrics, out_path) -> Path:
    """Plot train and valid negative log-likelihood against epoch.

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

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    ValueError
        No rows, or neither a train nor a valid NLL column.
    """
    if isinstance(metrics, (str, Path)):
        with open(metrics, newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = list(metrics)
    if not rows:
        raise ValueError("plot_loss_curves: no metrics rows")
    epoch = _column(rows, ("epoch",))
    if epoch is None:
        epoch = np.arange(1, len(rows) + 1, dtype=float)
    curves = {"train": _column(rows, TRAIN_KEYS), "valid": _column(rows, VALID_KEYS)}
    if all(c is None for c in curves.values()):
        raise ValueError(
            f"plot_loss_curves: no NLL column; expected one of {TRAIN_KEYS + VALID_KEYS}"
        )
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    for label, y in curves.items():
        if y is not None:
            ok = np.isfinite(y) & np.isfinite(epoch)
            ax.plot(epoch[ok], y[ok], marker="." if ok.sum() < 30 else None, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("negative log-likelihood (nats per example)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out_path)


def plot_sample_grid(samples, image_shape, out_path, ncols: int = 10) -> Path:
    """Draw samples as a grid of images (or a scatter / heat-map when not images).

    Parameters
    ----------
    samples : numpy.ndarray, shape (n, D)
        Samples of any numeric dtype: binary pixels, grey levels or
        category indices (shown on a grey scale from 0 to the largest value).
    image_shape : tuple of int or None
        ``(h, w)`` with ``h * w == D``, e.g. ``(28, 28)``. ``None``: a scatter
        plot of the two columns when ``D == 2``, else a heat-map with one row
        per sample.
    out_path : str or os.PathLike
        PNG file to write.
    ncols : int, default 10
        Images per grid row.

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    ValueError
        ``samples`` not 2-D or empty, or ``image_shape`` not matching D.
    """
    x = np.asarray(samples)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"plot_sample_grid: samples must be (n, D) with n > 0, got {x.shape}")
    n, D = x.shape
    if image_shape is None:
        fig = _figure(5, 5 if D == 2 else 4)
        ax = fig.add_subplot()
        if D == 2:
            ax.scatter(x[:, 0], x[:, 1], s=4, alpha=0.5, linewidths=0)
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
        else:
            im = ax.imshow(x, aspect="auto", interpolation="nearest", cmap="gray")
            ax.set_xlabel("dimension")
            ax.set_ylabel("sample")
            fig.colorbar(im, ax=ax)
        return _save(fig, out_path)
    h, w = image_shape
    if h * w != D:
        raise ValueError(f"plot_sample_grid: image_shape {image_shape} does not match D = {D}")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    # One mosaic with a 1-pixel NaN gap between images: far faster than n axes.
    grid = np.full((nrows * (h + 1) - 1, ncols * (w + 1) - 1), np.nan)
    for i, img in enumerate(x.reshape(n, h, w).astype(float)):
        r, c = divmod(i, ncols)
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = img
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="0.6")
    width = min(12.0, max(2.0, 0.8 * ncols))  # inches
    fig = _figure(width, width * grid.shape[0] / grid.shape[1])
    ax = fig.add_subplot()
    ax.imshow(grid, cmap=cmap, vmin=0, vmax=max(1.0, float(np.nanmax(grid))),
              interpolation="nearest")
    ax.set_axis_off()
    return _save(fig, out_path)


def plot_masks(masks, out_path, titles=None) -> Path:
    """Draw MADE connectivity masks, one panel per mask.

    Parameters
    ----------
    masks : sequence of numpy.ndarray, each shape (fan_in, fan_out)
        0/1 (or boolean) masks; entry ``[i, j]`` is 1 when input unit ``i``
        may feed output unit ``j``. Shown with ``fan_in`` as rows, 1 as black.
    out_path : str or os.PathLike
        PNG file to write.
    titles : sequence of str, optional
        One per mask; default ``"mask k (fan_in x fan_out)"``.

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    ValueError
        No masks, a mask that is not 2-D, or ``len(titles) != len(masks)``.
    """
    masks = [np.asarray(m, dtype=float) for m in masks]
    if not masks:
        raise ValueError("plot_masks: no masks")
    if titles is None:
        titles = [f"mask {k} ({m.shape[0]} x {m.shape[1]})" for k, m in enumerate(masks)]
    if len(titles) != len(masks):
        raise ValueError(f"plot_masks: {len(titles)} titles for {len(masks)} masks")
    fig = _figure(3.2 * len(masks), 3.4)
    for k, (m, title) in enumerate(zip(masks, titles)):
        if m.ndim != 2:
            raise ValueError(f"plot_masks: mask {k} is not 2-D (shape {m.shape})")
        ax = fig.add_subplot(1, len(masks), k + 1)
        ax.imshow(m, cmap="Greys", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("output unit")
        ax.set_ylabel("input unit")
    return _save(fig, out_path)


def _histogram(samples, C: int) -> np.ndarray:
    x = np.asarray(samples).astype(np.int64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"plot_2d_panels: samples must be (N, 2), got {x.shape}")
    if x.size and (x.min() < 0 or x.max() >= C):
        raise ValueError(f"plot_2d_panels: sample values must lie in 0..{C - 1}")
    counts = np.bincount(x[:, 0] * C + x[:, 1], minlength=C * C).reshape(C, C)
    return counts / max(1, x.shape[0])


def plot_2d_panels(true_density, train_samples, model_samples, model_density, out_path) -> Path:
    """Side-by-side panels for the 2-D categorical experiment.

    Panels, left to right: true distribution (skipped when ``None``),
    histogram of the training samples, histogram of the model's samples, and
    the model's exact density. Entry ``[i, j]`` is drawn at row ``x1 = i``,
    column ``x2 = j``, as ``imshow`` draws the table; each panel has its own
    colour scale.

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
    model_density = np.asarray(model_density, dtype=float)
    if model_density.ndim != 2 or model_density.shape[0] != model_density.shape[1]:
        raise ValueError(f"plot_2d_panels: model_density must be (C, C), got {model_density.shape}")
    C = model_density.shape[0]
    panels = []
    if true_density is not None:
        true_density = np.asarray(true_density, dtype=float)
        if true_density.shape != (C, C):
            raise ValueError(
                f"plot_2d_panels: true_density shape {true_density.shape} != ({C}, {C})"
            )
        panels.append(("true distribution", true_density))
    panels.append((f"training samples (N = {len(train_samples)})", _histogram(train_samples, C)))
    panels.append((f"model samples (M = {len(model_samples)})", _histogram(model_samples, C)))
    panels.append(("model density", model_density))
    fig = _figure(4 * len(panels), 4)
    for k, (title, table) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        im = ax.imshow(table, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("x2")
        ax.set_ylabel("x1")
        fig.colorbar(im, ax=ax, shrink=0.8, label="probability")
    return _save(fig, out_path)
