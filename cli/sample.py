"""``made-np sample`` and ``made-np density``: draw from a checkpoint, and its exact 2-D table."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from made_np import backend, sampling

from .common import (DEFAULT_SAMPLING_METHOD, SAMPLING_METHODS, UserError, dataset_path_option, device_option,
                     image_shape_of, load_model, load_split, parse_context, user_values)


@click.command()
@click.argument("checkpoint", type=click.Path())
@click.option("-n", "--num-samples", type=int, default=100, show_default=True, help="Number of samples.")
@click.option("--out", type=click.Path(dir_okay=False), default="samples.png", show_default=True,
              help="A .png (grid of images, or a scatter for 2-D data) or a .npy (n, D) integer array.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampling noise.")
@click.option("--method", type=click.Choice(SAMPLING_METHODS), default=DEFAULT_SAMPLING_METHOD,
              show_default=True, help="Sampler of made_np.sampling.")
@click.option("--mask-index", type=int, default=0, show_default=True, help="Mask of the bank to sample with.")
@click.option("--mixture", type=int, default=0, show_default="0: the single mask --mask-index",
              help="Sample from the mixture of masks 0..K-1 (the ensemble that evaluate scores): "
                   "each sample draws its mask uniformly.")
@click.option("--context", "context", default=None,
              show_default="a class-conditional model: labels spread over the classes, a row per class",
              help="For a model trained with --context: a class label (e.g. 3) for every sample, or a .npy "
                   "of labels (n,) or rows (n, C), one per sample (then -n defaults to n).")
@device_option
@click.pass_context
def sample(ctx, checkpoint, num_samples, out, seed, method, mask_index, mixture, context, device):
    """Draw samples from CHECKPOINT by ancestral sampling in the mask's ordering.

    With an unfinished run, its best weights so far are used. A conditional model
    draws from p(x | y) for the --context given.
    """
    out = Path(out)
    if out.suffix.lower() not in (".png", ".npy"):
        raise UserError(f"--out {out}: expected a .png or .npy file name")
    if num_samples < 1:
        raise UserError(f"-n: expected a positive number of samples, got {num_samples}")
    if mixture < 0:
        raise UserError(f"--mixture: expected 0 (off) or a number of masks, got {mixture}")
    model, info = load_model(checkpoint, device)
    given_n = ctx.get_parameter_source("num_samples") == click.core.ParameterSource.COMMANDLINE
    y, num_samples = parse_context(model, context, num_samples, given_n)
    with user_values():
        model.set_mask(mask_index)
        masks = list(range(mixture)) if mixture else None
        x = backend.to_host(sampling.sample(model, num_samples, seed=seed, method=method, masks=masks, context=y))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        np.save(out, x)
    else:
        from made_np import plots

        plots.plot_sample_grid(x, image_shape_of(info), out)
    which = f"mixture of masks 0..{mixture - 1}" if mixture else f"mask {mask_index}"
    given = f", context {context}" if context is not None else (", labels spread over the classes"
                                                              if model.config.context else "")
    click.echo(f"wrote {num_samples} samples ({method}, {which}, seed {seed}{given}) to {out}")


@click.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), default="density.png", show_default=True,
              help="PNG of the panels: true table, training histogram, model samples, model density.")
@click.option("-n", "--num-samples", type=int, default=100_000, show_default=True,
              help="Model samples for the histogram panel.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampling noise.")
@device_option
@dataset_path_option
def density(checkpoint, out, num_samples, seed, device, dataset_path):
    """Exact density table of a 2-D categorical CHECKPOINT (e.g. --dataset 2d) against the true table.

    Prints KL(p_true || p_model) in nats, the entropy of the true table (the lower bound of
    the expected test NLL) and the test NLL of the table; draws the panels into --out. With
    more than one mask in the bank the table is the ensemble (mixture) over the run's eval masks.
    """
    from made_np import density as dens, plots

    if num_samples < 1:
        raise UserError(f"-n: expected a positive number of samples, got {num_samples}")
    model, info = load_model(checkpoint, device)
    if model.config.D != 2:
        raise UserError(f"{info['path']}: density needs a model of D = 2 variables, "
                        f"this one has D = {model.config.D}")
    ds, test = load_split(info, "test", dataset_path)
    cfg = info["train_config"]
    K = model.config.num_masks
    masks = None if K == 1 else model.eval_mask_indices(cfg.eval_masks if cfg else None)
    with user_values():
        log_q = dens.log_density_table(model, mask_indices=masks)
    x = np.asarray(test, dtype=np.int64)
    click.echo(f"{info['path']}: exact table of {log_q.size} cells"
               + (f", ensemble of {len(masks)} masks" if masks else ""))
    click.echo(f"test NLL (exact table)    : {float(-log_q[x[:, 0], x[:, 1]].mean()):.4f} nats")
    if ds.true_density is not None:
        click.echo(f"entropy of the true table : {dens.entropy(ds.true_density):.4f} nats (test NLL lower bound)")
        click.echo(f"KL(p_true || p_model)     : {dens.kl_divergence(ds.true_density, log_q):.4f} nats")
    else:
        click.echo("no true table for this data set: KL and entropy skipped")
    xs = backend.to_host(sampling.sample(model, num_samples, seed=seed, method=DEFAULT_SAMPLING_METHOD,
                                         masks=masks))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    plots.plot_2d_panels(ds.true_density, ds.train, xs, np.exp(log_q), out)
    click.echo(f"wrote {out}")
