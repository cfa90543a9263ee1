"""``made-np evaluate``: the NLL of a checkpoint on a split."""
from __future__ import annotations

import json

import click

from made_np import limits

from .common import (check_mask_index, dataset_path_option, device_option, echo_results, evaluate_both,
                     load_model, load_split, max_memory_option, memory_limit, user_values)


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path())
@click.option("--split", type=click.Choice(["test", "valid", "train"]), default="test", show_default=True,
              help="Which split of the checkpoint's data set.")
@click.option("--eval-masks", type=click.IntRange(1, limits.MAX_EVAL_MASKS), default=None,
              show_default="the run's setting: the bank; 1000 when inf",
              help="Masks in the ensemble (when the bank has more than one mask).")
@click.option("--mask-index", type=int, default=0, show_default=True, help="The mask of the single-mask figure.")
@click.option("--json", "as_json", is_flag=True, default=False, show_default=True,
              help="Print one JSON object instead of text (off by default).")
@device_option
@dataset_path_option
@max_memory_option
def evaluate_cmd(checkpoint, split, eval_masks, mask_index, as_json, device, dataset_path, max_memory):
    """NLL (nats, and nats/dim) ± standard error of CHECKPOINT (a model.npz or its run folder).

    With more than one mask in the bank, prints the single-mask and the ensemble figures.
    With an unfinished run, its best weights so far are evaluated.
    """
    limit = memory_limit(max_memory)
    model, info = load_model(checkpoint, device, max_memory=max_memory)
    check_mask_index(model, mask_index)
    _, x = load_split(info, split, dataset_path)
    cfg = info["train_config"]
    if eval_masks is None and cfg is not None:
        eval_masks = cfg.eval_masks
    batch_size = cfg.eval_batch_size if cfg else 1000
    limits.check(limits.model_parts(model.config)
                 + limits.rows_parts(model.config, min(batch_size, x.shape[0]), "the evaluation batch size",
                                     "evaluation activations")
                 + [limits.Part(f"--split {split}", "the NLL of every example", x.shape[0] * 8 * 4)], limit)
    with user_values():
        res = evaluate_both(model, x, eval_masks, batch_size, mask_index)
    if as_json:
        click.echo(json.dumps({"checkpoint": info["path"], "split": split, "n": res["single"]["n"],
                               "D": res["single"]["D"], **res}))
        return
    click.echo(f"{info['path']}: {split} split, {res['single']['n']} examples, D = {res['single']['D']}")
    echo_results(res, split)
