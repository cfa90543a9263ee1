"""``made-np evaluate``: the NLL of a checkpoint on a split."""
from __future__ import annotations

import json

import click

from .common import dataset_path_option, device_option, echo_results, evaluate_both, load_model, load_split, user_values


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path())
@click.option("--split", type=click.Choice(["test", "valid", "train"]), default="test", show_default=True,
              help="Which split of the checkpoint's data set.")
@click.option("--eval-masks", type=int, default=None, show_default="the run's setting: the bank; 1000 when inf",
              help="Masks in the ensemble (when the bank has more than one mask).")
@click.option("--mask-index", type=int, default=0, show_default=True, help="The mask of the single-mask figure.")
@click.option("--json", "as_json", is_flag=True, default=False, show_default=True,
              help="Print one JSON object instead of text (off by default).")
@device_option
@dataset_path_option
def evaluate_cmd(checkpoint, split, eval_masks, mask_index, as_json, device, dataset_path):
    """NLL (nats, and nats/dim) ± standard error of CHECKPOINT (a model.npz or its run folder).

    With more than one mask in the bank, prints the single-mask and the ensemble figures.
    With an unfinished run, its best weights so far are evaluated.
    """
    model, info = load_model(checkpoint, device)
    _, x = load_split(info, split, dataset_path)
    cfg = info["train_config"]
    if eval_masks is None and cfg is not None:
        eval_masks = cfg.eval_masks
    with user_values():
        if eval_masks is not None and eval_masks < 1:
            raise ValueError(f"--eval-masks must be >= 1, got {eval_masks}")
        res = evaluate_both(model, x, eval_masks, cfg.eval_batch_size if cfg else 1000, mask_index)
    if as_json:
        click.echo(json.dumps({"checkpoint": info["path"], "split": split, "n": res["single"]["n"],
                               "D": res["single"]["D"], **res}))
        return
    click.echo(f"{info['path']}: {split} split, {res['single']['n']} examples, D = {res['single']['D']}")
    echo_results(res, split)
