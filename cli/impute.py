"""``made-np impute``: fill the missing entries of a table (made_np.conditional.impute).

The math is the library's: completions from the exact conditional of the mixture of
observed-first masks, and the posterior mean (real-valued heads) or mode (classes)
with the predictive standard deviation (docs/math.md, "Imputation"). This module only reads
the table, checks the columns against the model and writes the outputs.
"""
from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from made_np import COMPLETION_METHODS, DISCRETE_ESTIMATES, check_api, complete_parts, impute as impute_rows, \
    mixture_size, model_parts, read_table, to_host

from .common import (PathParam, UserError, check_header, device_option, json_option, load_run, max_memory_option,
                     parse_context, report, row_progress, seed_option, user_values, write_arrays)

SUFFIXES = (".csv", ".npy")


def sibling(out: Path, part: str, suffix: str | None = None) -> Path:
    """``Y.csv`` -> ``Y.std.csv`` (``part`` = "std"), or with ``suffix`` ``Y.draws.npy``."""
    return out.with_name(f"{out.stem}.{part}{suffix or out.suffix}")


def write_table(path: Path, x: np.ndarray, columns) -> None:
    """``x`` (N, D) into ``path``: a .csv (the input's header, if it had one; each value in the
    shortest digits that read back to it, a whole number without ".0", so an observed cell is written
    as it was read; NaN as nan) or a .npy, by its suffix, atomically."""
    def save_csv(f, a):
        rows = "".join(",".join(repr(v).removesuffix(".0") for v in row) + "\n" for row in a.astype(float).tolist())
        f.write(((",".join(columns) + "\n" if columns else "") + rows).encode())

    write_arrays(path, "--out", np.save if path.suffix.lower() == ".npy" else save_csv, x)


@click.command("impute")
@click.argument("checkpoint", type=PathParam())
@click.option("--input", "input_path", type=PathParam(dir_okay=False), required=True,
              help="The table to fill: a .csv (comma separated, a header row optional, an empty cell or nan "
                   "where missing) or a .npy (N, D) with NaN where missing; one column per variable of the model.")
@click.option("--out", type=PathParam(dir_okay=False), required=True,
              help="The filled table, .csv or .npy by its suffix (an existing file is replaced; never the input). "
                   "Beside it: OUT's stem + .std + suffix, the predictive standard deviation of every entry "
                   "(0 where observed), and with --draws, OUT's stem + .draws.npy, the completions (N, draws, D).")
@click.option("--draws", type=click.IntRange(min=0), default=0,
              help="Also write this many completions per row (OUT's stem + .draws.npy); 0 writes none.")
@click.option("--samples", type=click.IntRange(min=2), default=100,
              help="Completions per row behind the estimates (at least --draws): the mean's Monte Carlo error is "
                   "std / sqrt(samples).")
@click.option("--masks", type=click.IntRange(1, None), default=16,
              help="Observed-first masks in the mixture (order-agnostic models); a single-ordering model uses its own "
                   "mask(s) and imputes only rows whose observed entries come first in its ordering.")
@click.option("--discrete", type=click.Choice(DISCRETE_ESTIMATES), default="auto", show_default=True,
              help="A discrete entry's estimate (discrete data, and the discrete columns of mixed data): its posterior "
                   "mode (a valid value) or mean (least squared error, between the values); auto: the mean for "
                   "real-valued data, the mode for classes.")
@seed_option("Seed of the masks, the mixture draws and the noise.")
@click.option("--method", type=click.Choice(COMPLETION_METHODS), default="fast",
              help="fast: the degree-ordered sampler; naive: one forward pass per missing variable (the same draws).")
@click.option("--context", default=None, show_default="none",
              help="For a model trained with --context: a class label or a .npy of labels (N,) or rows (N, C).")
@json_option
@device_option
@max_memory_option
def impute(checkpoint, input_path, out, draws, samples, masks, discrete, seed, method, context, as_json, device,
           max_memory):
    """Fill the missing entries of a table with the model of CHECKPOINT, with their uncertainty.

    Every missing entry gets the posterior mean (real-valued data, their discrete columns
    included) or the posterior mode (classes: the most frequent drawn value; --discrete
    chooses) of its exact conditional given the row's
    observed entries, estimated from --samples completions; the .std file holds each entry's
    predictive standard deviation. Observed entries are copied unchanged. A .csv header must name
    the columns of the training file's header (where it had one), in its order.
    """
    out = Path(out)
    std_out, draws_out = sibling(out, "std"), sibling(out, "draws", ".npy") if draws else None
    model, info, (out, std_out, draws_out) = load_run(
        checkpoint, device, max_memory, inputs=(input_path, context),
        outputs=[("--out", out, SUFFIXES), ("--out (its .std file)", std_out, SUFFIXES),
                 ("--out (its .draws.npy file)", draws_out, (".npy",))])
    x, columns = read_table(input_path, "--input")
    D = model.config.D
    if x.shape[1] != D:
        raise UserError(f"--input {input_path}: has {x.shape[1]} columns, but the model has D = {D} variables; "
                        f"give one column per variable, in the order the model was trained on")
    check_header(info, columns, input_path)
    N, K = x.shape[0], mixture_size(model, masks)
    check_api(model_parts(model.config) + complete_parts(model.config, N, max(samples, draws), K, "--samples", "--masks"))
    y = parse_context(model, context, N, unit="rows")[0]
    t0 = time.perf_counter()
    with user_values({"x": f"--input {input_path}", "masks": "--masks", "samples": "--samples"}):
        with row_progress(N, "imputing") as progress:
            filled, std, drawn = impute_rows(model, x, masks=masks, draws=draws, seed=seed, samples=samples,
                                             context=y, method=method, progress=progress, discrete=discrete)
    seconds = time.perf_counter() - t0
    filled, std = to_host(filled), to_host(std)
    write_table(out, filled, columns)
    write_table(std_out, std, columns)
    if draws_out is not None:
        write_arrays(draws_out, "--out", np.save, to_host(drawn))
    missing = int(np.isnan(x).sum())
    wrote = [str(p) for p in (out, std_out, draws_out) if p is not None]
    result = {"checkpoint": info["path"], "rows": N, "missing": missing, "masks": K, "samples": max(samples, draws),
              "draws": draws, "method": method, "discrete": discrete, "seconds": seconds,
              "mean_std": float(std[np.isnan(x)].mean()) if missing else 0.0, "out": wrote}
    report(result, as_json, f"imputed {missing} missing entries in {N} rows ({method}, mixture of {K} mask(s), "
           f"{max(samples, draws)} samples a row) in {seconds:.2f} s",
           f"mean predictive std of the imputed entries: {result['mean_std']:.4g}", f"wrote {', '.join(wrote)}")
