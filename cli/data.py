"""``made-np data``: download and inspect data sets."""
from __future__ import annotations

import click

from made_np import (SOURCES, fetch, load_dataset)

from .common import (Group, PathParam, check_dataset_path, seed_option)


@click.group(cls=Group)
def data():
    """Download and inspect data sets."""


@data.command("fetch")
@click.argument("name", type=click.Choice(tuple(SOURCES)))
@click.option("--cache-dir", type=PathParam(file_okay=False), default=None,
              show_default="$XDG_CACHE_HOME/made-np or ~/.cache/made-np",
              help="Folder to download into.")
@click.option("--url", default=None, show_default="the public https sources",
              help="A mirror: an https:// or file:// URL of the file (for binarized MNIST an .npz, or "
                   "an .amat URL with {split} in it).")
def data_fetch(name, cache_dir, url):
    """Download a data set into the cache and verify it: binarized-mnist (50000/10000/10000 x 784,
    checked by the sha256 of each split) or 2d (the 200 x 200 table, checked by its file sha256).

    A file already in the cache and verified is not downloaded again; a failed or mismatched
    download never replaces it.
    """
    click.echo(f"fetching {name} ...")
    path = fetch(name, cache_dir=cache_dir, url=url, progress=True)
    click.echo(f"verified {path}")


@data.command("info")
@click.argument("spec")
@click.option("--dataset-path", type=PathParam(), default=None,
              show_default="search $MADE_NP_DATA, the cache, ../shared/data",
              help="The data file (or a folder holding it) for binarized-mnist or 2d.")
@seed_option("Seed of shuffles and splits.")
def data_info(spec, dataset_path, seed):
    """Print the splits' shapes of SPEC (digits, binarized-mnist, 2d, or a path)."""
    check_dataset_path(spec, dataset_path)
    ds = load_dataset(spec, path=dataset_path, seed=seed)
    kind = "binary" if ds.is_binary else "real-valued" if ds.classes == 0 else f"categorical, {ds.classes} classes"
    click.echo(f"{ds.name}: D = {ds.D} ({kind}), image shape {ds.image_shape}")
    for split in ("train", "valid", "test"):
        a = getattr(ds, split)
        click.echo(f"  {split:5s} {str(a.shape):14s} {a.dtype}  mean value {float(a.mean()):.4f}")
