"""``made-np complete``: exact completions of partly observed examples (made_np.conditional).

The math is the library's: observed-first masks, the mixture weights ``w_k ∝ p_k(x_o)`` and
ancestral sampling from the observed prefix (docs/math.md, "Exact marginals and completions").
This module only reads the inputs, builds the observed mask and writes the outputs.
"""
from __future__ import annotations

import time

import click
import numpy as np

from made_np import (COMPLETION_METHODS, LimitError, check_api, check_png_count,
                     complete as complete_rows, complete_parts, mean_and_stderr, mixture_size,
                     model_parts, occlusion_mask, png_parts, read_array, read_table, to_host)

from .common import (PathParam, UserError, check_header, row_progress, format_nats, given, image_shape_of, json_option, load_run,
                     load_split, observed_options, parse_context, report, run_data_options,
                     seed_option, user_values, write_arrays, writing)

SPLITS = ("test", "valid", "train")


def read_data(path, model, info) -> np.ndarray:
    """``--input X.npy`` or ``X.csv``: (N, D) (or one (D,) example) integer values in 0..classes-1 (real values
    for a real-valued run), a .csv's empty cells NaN and its header that of the training file (:func:`check_header`)."""
    c = model.config
    if str(path).lower().endswith(".csv"):
        x, columns = read_table(path, "--input")
        check_header(info, columns, path)
    else:
        x = read_array(path, "--input")
    x = x.reshape(1, -1) if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] != c.D:
        raise UserError(f"--input {path}: expected shape (N, {c.D}), got {x.shape}")
    if x.shape[0] == 0:
        raise UserError(f"--input {path}: has no rows; give at least one example to complete")
    return x  # its observed entries are checked with the observed mask (made_np.conditional)


def observed_mask(model, info, x, observed, occlude, seed: int) -> tuple:
    """The (N, D) observed mask of the examples ``x`` from ``--observed`` or ``--occlude`` (its values are
    the library's to check), their own missing entries (NaN) set unobserved; and a description of it."""
    D, n_rows = model.config.D, x.shape[0]
    nan = np.isnan(x)
    if observed is None and occlude is None and nan.any():  # the examples' own missing entries are the pattern
        return ~nan, "their missing entries (NaN)"
    if (observed is None) == (occlude is None):
        raise UserError("give exactly one of --observed O.npy (1 = observed) and --occlude "
                        "top|bottom|left|right|random:P (or examples with NaN where missing)")
    if occlude is not None:
        shape = image_shape_of(info)
        if shape is None and not occlude.strip().lower().startswith("random"):
            raise UserError(f"--occlude {occlude}: this run's data are no images (D = {D} columns), so they have no "
                            "top, bottom, left or right: give random:P or --observed O.npy")
        with user_values(prefix=f"--occlude {occlude}: "):
            o, what = occlusion_mask(occlude, D, shape, n_rows, seed), f"{occlude} occluded"
    else:
        o = read_array(observed, "--observed")
        o = np.broadcast_to(o, (n_rows, o.shape[0])) if o.ndim == 1 else o  # one row for every row
        if o.shape != (n_rows, D):
            raise UserError(f"--observed {observed}: expected shape ({n_rows}, {D}) (or ({D},) for every row), "
                            f"got {o.shape}")
        what = f"observed as in {observed}"
    return np.where(nan, 0, o), what


def examples_and_context(model, info, input_path, split, first, context, dataset_path):
    """``(x, y)``: the examples (``--input`` or the first rows of a split of the run's data set) and,
    for a conditional model, their context (``--context``, else the split's own)."""
    if input_path is not None:
        if dataset_path is not None:
            raise UserError(f"--dataset-path {dataset_path}: the examples come from --input {input_path}; "
                            "leave --dataset-path out (it locates the run's data set, read without --input)")
        x = read_data(input_path, model, info)
        if model.config.context and context is None:
            raise UserError("this model is conditional: with --input give its --context (a label or a .npy)")
        return x, parse_context(model, context, x.shape[0], unit="examples")[0]
    ds, split_x = load_split(info, split, dataset_path)
    x = split_x[:first]
    if context is not None or not model.config.context:
        return x, parse_context(model, context, x.shape[0], unit="examples")[0]
    y = ds.context_of(split)
    if y is None:
        raise UserError(f"this model is conditional, but its data set has no {split} context: give --context "
                        "(a label or a .npy of rows)")
    return x, to_host(model.encode_context(y[:first], x.shape[0]))


def completion_grid(x, obs, comps) -> np.ndarray:
    """Rows ``original | observed | completions`` as float images, missing pixels NaN (drawn in
    :data:`made_np.plots.MISSING_COLOUR`)."""
    N, n, D = comps.shape
    return np.concatenate([x[:, None], np.where(obs, x, np.nan)[:, None], comps], axis=1).reshape(N * (n + 2), D)


@click.command("complete")
@click.argument("checkpoint", type=PathParam())
@click.option("--input", "input_path", type=PathParam(dir_okay=False), default=None,
              show_default="the run's data set: --split, --first",
              help="A .npy or .csv of examples (N, D): integers in 0..classes-1 (real values for a real-valued run) where "
                   "observed; the missing entries are never read (any value, -1 or NaN included); a NaN is missing "
                   "whatever --observed/--occlude say.")
@observed_options("none: give --occlude", ", 0 = to complete")
@click.option("--split", type=click.Choice(SPLITS), default="test",
              help="Without --input: the split of the run's data set to take examples from.")
@click.option("--first", type=click.IntRange(min=1), default=16, help="Without --input: how many examples.")
@click.option("-n", "--num-completions", type=click.IntRange(min=1), default=8, help="Completions per example.")
@seed_option("Seed of the masks, the mixture draws, the noise and random:P occlusions.")
@click.option("--method", type=click.Choice(COMPLETION_METHODS), default="fast",
              help="fast: the degree-ordered sampler from the observed prefix; naive: one forward pass per "
                   "missing variable (the reference; the same completions).")
@click.option("--context", default=None, show_default="the split's own context",
              help="For a model trained with --context: a class label or a .npy of labels (N,) or rows (N, C).")
@click.option("--out", type=PathParam(dir_okay=False), default="completions.npz",
              help="The .npz to write: completions (N, n, D), log_px_o (N,) in nats, x (N, D), observed (N, D).")
@click.option("--png", type=PathParam(dir_okay=False), default=None, show_default="no drawing",
              help="Also draw a grid, one example a row: original | observed (missing part in orange) | completions.")
@json_option
@run_data_options
@click.pass_context
def complete(ctx, checkpoint, input_path, observed, occlude, split, first, num_completions, masks, seed, method,
             context, out, png, as_json, device, dataset_path, max_memory):
    """Exact completions x_m ~ p(x_m | x_o) of partly observed examples, and log p(x_o), from CHECKPOINT.

    An order-agnostic model mixes --masks fresh observed-first masks (weights
    proportional to p_k(x_o)); a single-ordering model is exact only when the observed
    variables come first in its ordering, and refuses other patterns. Observed entries
    are copied into the completions unchanged.
    """
    if input_path is not None:
        for name in ("split", "first"):  # they choose examples from the run's data set, which --input replaces
            if given(ctx, name):
                raise UserError(f"--{name}: not used with --input {input_path} (the examples are its rows); "
                                f"give one of the two")
    model, info, (out, png) = load_run(checkpoint, device, max_memory, inputs=(input_path, observed, context),
                                       outputs=[("--out", out, (".npz",)), ("--png", png, (".png",))])
    image_shape = image_shape_of(info)
    if png is not None and image_shape is None and model.config.D == 2:  # a histogram shows no missing entries
        raise UserError(f"--png {png}: the grid of completions draws images, and this run's data (D = 2) are "
                        "not images: leave --png out (the .npz holds the completions)")
    x, y = examples_and_context(model, info, input_path, split, first, context, dataset_path)
    N, K = x.shape[0], mixture_size(model, masks)
    parts = complete_parts(model.config, N, num_completions, K)
    if png is not None:
        images = N * (num_completions + 2)  # a row per example: original, occluded, the completions
        try:
            check_png_count(images, image_shape, "--png", ncols=num_completions + 2)
        except LimitError:
            raise UserError(f"--png {png}: a grid of {N} examples x ({num_completions} completions + 2) = {images} "
                            "images is more than a .png can show; give fewer --first or -n, or leave --png out "
                            "(the .npz holds them all)") from None
        parts += png_parts(images, model.config.D, image_shape, "--png", ncols=num_completions + 2)
    check_api(model_parts(model.config) + parts)
    obs, what = observed_mask(model, info, x, observed, occlude, seed)
    t0 = time.perf_counter()
    source = f"--input {input_path}" if input_path is not None else f"the {split} split of {info['path']}"
    with user_values({"x": source, "observed": f"--observed {observed}"}):
        with row_progress(N, "completions") as progress:
            comps, log_po = complete_rows(model, x, obs, num_completions, masks=masks, seed=seed, context=y,
                                          method=method, progress=progress)
        comps = to_host(comps)
    # x as written: the run's own examples whole (their hidden originals beside the completions), --input's
    # missing entries 0; NaN, missing in the data themselves, 0
    obs = obs.astype(bool)
    x = np.where((obs if input_path is not None else True) & ~np.isnan(x), x, 0).astype(model.head.sample_dtype)
    seconds = time.perf_counter() - t0
    lp = to_host(log_po).astype(np.float64)
    write_arrays(out, "--out", np.savez, completions=comps, log_px_o=lp, x=x, observed=obs)
    if png is not None:
        from made_np import plots

        with writing(png, "--png"):
            plots.plot_sample_grid(completion_grid(x, obs, comps), image_shape, png, ncols=num_completions + 2,
                                   title=f"{N} examples ({what}), one a row: original | observed | "
                                         f"{num_completions} completions")
    mean, stderr = mean_and_stderr(-lp)
    result = {"checkpoint": info["path"], "n": N, "completions": num_completions, "observed": what,
              "masks": K, "method": method, "seconds": seconds, "neg_log_px_o": mean, "stderr": stderr,
              "out": str(out), "png": None if png is None else str(png)}
    report(result, as_json, f"completed {N} examples x {num_completions} ({what}; {method}, mixture of {K} mask(s)) "
           f"in {seconds:.2f} s", f"-log p(x_o): {format_nats(mean, stderr, N)}",
           f"wrote {out}" + (f" and {png}" if png else ""))
