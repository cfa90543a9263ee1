"""``made-np data``: download and inspect data sets."""
from __future__ import annotations

import click
import numpy as np

from made_np import MADEConfig, SOURCES, fetch, load_dataset

from .common import (Group, PathParam, check_dataset_path, seed_option)


@click.group(cls=Group)
def data():
    """Download and inspect data sets."""


@data.command("fetch")
@click.argument("name", type=click.Choice(tuple(SOURCES)))
@click.option("--cache-dir", type=PathParam(file_okay=False), default=None,
              show_default="$XDG_CACHE_HOME/made-np or ~/.cache/made-np", help="Folder to download into.")
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
@click.option("--allow-missing", is_flag=True,
              help="The data may hold missing entries (NaN, an empty CSV cell), as with `made-np train "
                   "--allow-missing`; each column then shows how many.")
def data_info(spec, dataset_path, seed, allow_missing):
    """Print the splits' shapes of SPEC (a named set such as digits, wine or moons, or a path), and
    for real-valued data each column's type: real (its range, and its atoms) or discrete (its values)."""
    check_dataset_path(spec, dataset_path)
    ds = load_dataset(spec, path=dataset_path, seed=seed, allow_nan=allow_missing)
    kind = "binary" if ds.is_binary else "real-valued" if ds.is_real else f"categorical, {ds.classes} classes"
    click.echo(f"{ds.name}: D = {ds.D} ({kind}), image shape {ds.image_shape}")
    for split in ("train", "valid", "test"):
        a = getattr(ds, split)
        click.echo(f"  {split:5s} {str(a.shape):14s} {a.dtype}  mean value {float(np.nanmean(a)):.4f}")
    x = np.concatenate([ds.train, ds.valid, ds.test])
    if not ds.is_real and x.dtype.kind == "f":  # categories with missing entries (--allow-missing)
        click.echo(f"  missing entries: {int(np.isnan(x).sum())} of {x.size}")
    if ds.is_real:
        lo, hi = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
        cfg = MADEConfig.for_data(ds)  # the recipe's atoms (docs/math.md Sec. 13.2)
        atoms = dict(zip(cfg.atom_columns, cfg.atoms))
        for c in range(ds.D):
            name = f" ('{ds.columns[c]}')" if ds.columns else ""
            if c in ds.discrete_columns:
                values = np.unique(x[:, c][~np.isnan(x[:, c])])
                kind = f"discrete, {values.size} values: {', '.join(f'{v:g}' for v in values)}"
            else:
                kind = f"real, {lo[c]:.6g} .. {hi[c]:.6g}" + "".join(
                    f"; atom {a:g} ({np.sum(ds.train[:, c] == a) / np.sum(~np.isnan(ds.train[:, c])):.1%} of the observed "
                    "training rows)" for a in atoms.get(c, ()))
            missing = int(np.isnan(x[:, c]).sum())
            click.echo(f"  column {c}{name}: {kind}" + (f"; {missing} missing" if missing else ""))
