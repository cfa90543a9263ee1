"""``made-np data``: download and inspect data sets."""
from __future__ import annotations

import click

from made_np import data as data_mod

from .common import SEED, Group, dataset_path_option


@click.group(cls=Group)
def data():
    """Download and inspect data sets."""


@data.command("fetch")
@click.argument("name", type=click.Choice(["binarized-mnist"]))
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              show_default="$XDG_CACHE_HOME/made-np or ~/.cache/made-np",
              help="Folder to download into.")
def data_fetch(name, cache_dir):
    """Download a data set (binarized MNIST, 50000/10000/10000 x 784) into the cache."""
    click.echo(f"downloading {name} ...")
    path = data_mod.fetch_binarized_mnist(cache_dir)
    click.echo(f"wrote {path}")


@data.command("info")
@click.argument("spec")
@dataset_path_option
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of shuffles and splits.")
def data_info(spec, dataset_path, seed):
    """Print the splits' shapes of SPEC (digits, binarized-mnist, 2d, or a path)."""
    ds = data_mod.load_dataset(spec, path=dataset_path, seed=seed)
    kind = "binary" if ds.is_binary else f"categorical, {ds.classes} classes"
    click.echo(f"{ds.name}: D = {ds.D} ({kind}), image shape {ds.image_shape}")
    for split in ("train", "valid", "test"):
        a = getattr(ds, split)
        click.echo(f"  {split:5s} {str(a.shape):14s} {a.dtype}  mean value {float(a.mean()):.4f}")
