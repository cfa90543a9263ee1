"""``made-np sample`` and ``made-np density``: draw from a checkpoint, and its exact 2-D table."""
from __future__ import annotations

import click
import numpy as np

from made_np import (DEFAULT_METHOD, MAX_EVAL_MASKS, MAX_PNG_IMAGES, METHODS, check_api, check_png_count, entropy,
                     kl_divergence, log_density_table, model_parts, sample as draw, sample_parts, to_host)

from .common import (PathParam, UserError, device_option, given, image_shape_of, load_run, load_split, max_memory_option,
                     parse_context, run_data_options, seed_option, user_values, write_arrays, writing)


@click.command()
@click.argument("checkpoint", type=PathParam())
@click.option("-n", "--num-samples", type=int, default=100, help="Number of samples.")
@click.option("--out", type=PathParam(dir_okay=False), default="samples.png",
              help="A .png (grid of images, or a histogram on the C x C grid for 2-D data; at most "
                   f"{MAX_PNG_IMAGES} images) or a .npy (n, D) array (integers; float64 for real values), written "
                   "under exactly this name.")
@seed_option("Seed of the sampling noise.")
@click.option("--method", type=click.Choice(tuple(METHODS)), default=DEFAULT_METHOD,
              help="Sampler of made_np.sampling.")
@click.option("--mask-index", type=int, default=None, show_default="the mixture of --mixture",
              help="Sample this mask of the bank alone.")
@click.option("--mixture", type=click.IntRange(1, MAX_EVAL_MASKS), default=None, show_default="the bank's masks, at most 1000: the ensemble evaluate scores",
              help="Sample from the mixture of masks 0..N-1: each sample draws its mask uniformly (seeded by --seed).")
@click.option("--context", "context", default=None,
              show_default="a class-conditional model: labels spread over the classes, a row per class",
              help="For a model trained with --context: a class label (e.g. 3) for every sample, or a .npy "
                   "of labels (n,) or rows (n, C), one per sample (then -n defaults to n).")
@device_option
@max_memory_option
@click.pass_context
def sample(ctx, checkpoint, num_samples, out, seed, method, mask_index, mixture, context, device, max_memory):
    """Draw samples from CHECKPOINT by ancestral sampling in the mask's ordering.

    A model with a bank of masks draws from their mixture (the density evaluate reports as the
    ensemble) unless --mask-index names one. With an unfinished run, its best weights so far are
    used. A conditional model draws from p(x | y) for the --context given.
    """
    if num_samples < 1:
        raise UserError(f"-n: expected a positive number of samples, got {num_samples}")
    if mixture and given(ctx, "mask_index"):
        raise UserError(f"--mask-index {mask_index}: not used with --mixture {mixture}, which samples the mixture "
                        f"of masks 0..{mixture - 1}; give one of the two")
    model, info, (out,) = load_run(checkpoint, device, max_memory, outputs=[("--out", out, (".png", ".npy"))],
                                   inputs=(context,))
    png = out.suffix.lower() == ".png"
    y, num_samples = parse_context(model, context, num_samples, given(ctx, "num_samples"))
    if mixture and model.config.num_masks == 1:
        raise UserError(f"--mixture {mixture}: this model has a single mask (num_masks = 1), so there is "
                        "no mixture of masks to sample from; leave --mixture out")
    masks = [mask_index] if mask_index is not None else list(range(mixture)) if mixture else model.eval_mask_indices()
    with user_values({"mask index": "--mask-index"} if mask_index is not None else {},
                     f"--mixture {mixture}: " if mixture else ""):
        model.mask(masks[-1])  # the library's check of the last mask, before any work
    image_shape = image_shape_of(info)
    if png:
        check_png_count(num_samples, image_shape)
    check_api(model_parts(model.config) + sample_parts(model.config, num_samples, png=png, image_shape=image_shape,
                                                       blocked=True))
    with user_values():
        x = to_host(draw(model, num_samples, seed=seed, method=method, masks=masks, context=y))
    which = f"mask {masks[0]}" if len(masks) == 1 else f"mixture of masks 0..{len(masks) - 1}"
    given_y = f", context {context}" if context is not None else (", labels spread over the classes"
                                                                if model.config.context else "")
    if png:
        from made_np import plots

        with writing(out, "--out"), user_values():
            plots.plot_sample_grid(x, image_shape, out, classes=model.config.classes,
                                   title=f"{num_samples} samples, {which}{given_y}")
    else:
        write_arrays(out, "--out", np.save, x)
    click.echo(f"wrote {num_samples} sample{'s' if num_samples != 1 else ''} ({method}, {which}, seed {seed}{given_y}) "
               f"to {out}")


def _without_missing(rows):
    """The rows without a missing entry (a run trained with --allow-missing keeps NaN in its data)."""
    return rows[~np.isnan(rows).any(axis=1)]


def _complete_rows(info, test) -> tuple:
    """The complete test rows (:func:`_without_missing`) and the words that say how many were left out
    (none: an empty string)."""
    kept = _without_missing(test)
    if not len(kept):
        raise UserError(f"{info['path']}: every test row has a missing entry: no complete row to score or draw")
    left = len(test) - len(kept)
    return kept, (f" ({len(kept)} complete test rows; {left} with missing entries left out)" if left else "")


@click.command()
@click.argument("checkpoint", type=PathParam())
@click.option("--out", type=PathParam(dir_okay=False), default="density.png",
              help="PNG of the panels: true table, training histogram, model samples, model density (a real-valued "
                   "run: model density, test data).")
@click.option("-n", "--num-samples", type=click.IntRange(min=1), default=100_000,
              help="Model samples for the histogram panel (2-D categorical runs).")
@seed_option("Seed of the sampling noise.")
@run_data_options
@click.pass_context
def density(ctx, checkpoint, out, num_samples, seed, device, dataset_path, max_memory):
    """The density of a 2-D CHECKPOINT: categorical (such as --dataset 2d) or real-valued (such as
    --dataset moons).

    Categorical: the exact density table against the true table. Prints KL(p_true || p_model)
    in nats, the entropy of the true table (the lower bound of the expected test NLL) and the
    test NLL of the table; draws the panels into --out. With more than one mask in the bank the
    table is the ensemble (mixture) over the run's eval masks.

    Real-valued: prints the test NLL and draws exp(log p) on a 200 x 200 grid over the test
    data's range beside their histogram (no samples: -n and --seed do not apply).
    """
    from made_np import plots

    model, info, (out,) = load_run(checkpoint, device, max_memory, outputs=[("--out", out, (".png",))])
    if model.config.D != 2:
        raise UserError(f"{info['path']}: density needs a model of D = 2 variables (trained on a 2-D real-valued "
                        f"data set such as moons, or a 2-D categorical one such as 2d), this one has "
                        f"D = {model.config.D}")
    if model.config.context:
        raise UserError(f"{info['path']}: density draws the table of an unconditional model; this one is "
                        "conditioned on a context (use sample --context for its conditionals)")
    real = (info.get("dataset") or {}).get("classes") == 0
    unused = [o for o, name in (("-n", "num_samples"), ("--seed", "seed")) if real and given(ctx, name)]
    if unused:
        raise UserError(f"{' and '.join(unused)}: the density of a real-valued run is drawn on a grid, "
                        "from no samples; leave them out")
    check_api(model_parts(model.config) + ([] if real else sample_parts(model.config, num_samples, blocked=True)))
    ds, test = load_split(info, "test", dataset_path)
    test, note = _complete_rows(info, test)
    if real:
        with user_values():
            click.echo(f"test NLL: {-float(np.mean(to_host(model.log_prob(test)))):.4f} nats{note}")
            for d, atoms in zip(model.config.atom_columns, model.config.atoms):
                click.echo(f"atoms of x{d + 1} at {', '.join(f'{a:g}' for a in atoms)}: spikes narrower than the "
                           "grid's cells, so the model panel's mass on the grid leaves theirs out")
            with writing(out, "--out"):
                plots.plot_density(lambda points: to_host(model.log_prob(points)), test, out)
    else:
        cfg = info["train_config"]
        masks = None if model.config.num_masks == 1 else model.eval_mask_indices(cfg.eval_masks if cfg else None)
        with user_values():
            log_q = log_density_table(model, mask_indices=masks)
        x = np.asarray(test, dtype=np.int64)
        click.echo(f"{info['path']}: exact table of {log_q.size} cells"
                   + (f", ensemble of {len(masks)} mask{'s' if len(masks) != 1 else ''}" if masks else ""))
        click.echo(f"test NLL (exact table)    : {float(-log_q[x[:, 0], x[:, 1]].mean()):.4f} nats{note}")
        if ds.true_density is not None:
            click.echo(f"entropy of the true table : {entropy(ds.true_density):.4f} nats (test NLL lower bound)")
            click.echo(f"KL(p_true || p_model)     : {kl_divergence(ds.true_density, log_q):.4f} nats")
        else:
            click.echo("no true table for this data set: KL and entropy skipped")
        xs = to_host(draw(model, num_samples, seed=seed, masks=masks))
        with writing(out, "--out"):
            plots.plot_2d_panels(ds.true_density, _without_missing(ds.train), xs, np.exp(log_q), out)
    click.echo(f"wrote {out}")
