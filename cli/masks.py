"""``made-np masks``: the ordering, degrees and masks of a checkpoint's bank."""
from __future__ import annotations

import click
import numpy as np

from .common import (PathParam, load_run, max_memory_option, user_values, write_arrays, writing)


@click.command()
@click.argument("checkpoint", type=PathParam())
@click.option("--out", type=PathParam(dir_okay=False), default="masks.npz",
              help="The .npz to write (under exactly this name): ordering, degrees_1.., mask_W1.., mask_V "
                   "(and mask_A with direct connections).")
@click.option("--index", type=int, default=0, help="Which mask of the bank.")
@click.option("--png", type=PathParam(dir_okay=False), default=None, show_default="no drawing",
              help="Also draw the masks into this PNG (units sorted by degree, so each mask is a staircase).")
@max_memory_option
def masks(checkpoint, out, index, png, max_memory):
    """Dump the ordering m^0, the degrees m^l and every mask of mask INDEX of CHECKPOINT's bank.

    The masks are rebuilt from the checkpoint's configuration exactly as training used them
    (variable level: (D, H_1), ..., (H_L, D); no one-hot repetition).
    """
    model, _, (out, png) = load_run(checkpoint, "cpu", max_memory,
                                    outputs=[("--out", out, (".npz",)), ("--png", png, (".png",))])
    K = model.config.num_masks
    with user_values({"mask index": "--index"}):
        ms = model.mask(index)[0]
    arrays = {"ordering": ms.ordering}
    for l, (deg, m) in enumerate(zip(ms.degrees, ms.hidden), start=1):
        arrays.update({f"degrees_{l}": deg, f"mask_W{l}": m})
    arrays.update(mask_V=ms.output, **({"mask_A": ms.direct} if model.config.direct else {}))
    write_arrays(out, "--out", np.savez, **arrays)
    first, more = " ".join(str(int(v)) for v in ms.ordering[:16]), f" ... (first 16 of {ms.D})" if ms.D > 16 else ""
    click.echo(f"mask {index} (bank: {'no limit' if K == 0 else K}): ordering m^0 = {first}{more}")
    for l, deg in enumerate(ms.degrees, start=1):
        click.echo(f"  layer {l}: {deg.size} units, degrees {int(deg.min())}..{int(deg.max())}, "
                   f"{int(ms.hidden[l - 1].sum())} of {ms.hidden[l - 1].size} connections kept")
    click.echo(f"wrote {', '.join(k for p in ('ordering', 'degrees', 'mask') for k in arrays if k.startswith(p))} "
               f"to {out}")
    if png:
        from made_np import plots

        # drawn with units sorted by degree (a staircase); the .npz keeps the natural order
        with writing(png, "--png"):
            plots.plot_masks(out_path=png, **plots.maskset_panels(
                ms.ordering, ms.degrees, ms.hidden, ms.output, ms.direct if model.config.direct else None))
        click.echo(f"drew the masks in {png}")
