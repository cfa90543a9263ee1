"""``made-np evaluate``: the NLL of a checkpoint on a split, or the marginal NLL of partial observations."""
from __future__ import annotations

import click
import numpy as np

from made_np import (MAX_EVAL_MASKS, Part, check_api, log_marginal, mean_and_stderr, mixture_size, model_parts,
                     rows_parts, to_host)

from .common import (PathParam, UserError, row_progress, evaluate_both, format_nats, given, json_option, load_run,
                     load_split, observed_options, report, result_lines, run_data_options, seed_option, user_values)


@click.command("evaluate")
@click.argument("checkpoint", type=PathParam())
@click.option("--split", type=click.Choice(["test", "valid", "train"]), default="test",
              help="Which split of the checkpoint's data set.")
@click.option("--eval-masks", type=click.IntRange(1, MAX_EVAL_MASKS), default=None,
              show_default="the run's setting: the bank, at most 1000",
              help="Masks in the ensemble (when the bank has more than one mask).")
@click.option("--mask-index", type=int, default=0, help="The mask of the single-mask figure.")
@observed_options("every variable observed", ": report the marginal -log p(x_o) of the observed entries instead "
                  "(exact, made_np.conditional)", " of --observed/--occlude")
@seed_option("With --observed/--occlude: seed of the masks and of random:P.")
@json_option
@run_data_options
@click.pass_context
def evaluate_cmd(ctx, checkpoint, split, eval_masks, mask_index, observed, occlude, masks, seed, as_json, device,
                 dataset_path, max_memory):
    """NLL (nats, and nats/dim) ± standard error of CHECKPOINT (a model.npz or its run folder).

    With more than one mask in the bank, prints the single-mask and the ensemble figures.
    With an unfinished run, its best weights so far are evaluated. A conditional model is
    scored given each example's context. With --observed or --occlude, the mean marginal
    -log p(x_o) of the observed entries ± standard error (the likelihood of partial observations).
    """
    marginal = f"--observed {observed}" if observed is not None else None if occlude is None else f"--occlude {occlude}"
    unused = {"--eval-masks": eval_masks, "--mask-index": mask_index} if marginal else {"--masks": masks, "--seed": seed}
    for option, value in unused.items():  # each figure's options are refused with the other figure
        if given(ctx, option[2:].replace("-", "_")):
            raise UserError(f"{option} {value}: not used with {marginal}, which reports the marginal -log p(x_o) "
                            "(its masks are --masks); give one of the two" if marginal else f"{option} {value}: "
                            "used only with --observed or --occlude (the marginal -log p(x_o)); leave it out")
    model, info, _ = load_run(checkpoint, device, max_memory)
    if model.config.num_masks == 1 and given(ctx, "eval_masks"):
        raise UserError(f"--eval-masks {eval_masks}: this model has a single mask (num_masks = 1), so there is no "
                        "ensemble to average; leave --eval-masks out")
    with user_values({"mask index": "--mask-index"}):
        model.mask(mask_index)  # the library's check of the index, before the data are read
    ds, x = load_split(info, split, dataset_path)
    y = ds.context_of(split) if model.config.context else None
    if marginal:
        _evaluate_marginal(model, info, x, y, split, observed, occlude, masks, seed, as_json)
        return
    cfg = info["train_config"]
    eval_masks = cfg.eval_masks if eval_masks is None and cfg is not None else eval_masks
    batch_size = cfg.eval_batch_size if cfg else 1000
    check_api(model_parts(model.config) + rows_parts(model.config, min(batch_size, x.shape[0]),
                                                     "the evaluation batch size", "evaluation activations")
              + [Part(f"--split {split}", "the NLL of every example", x.shape[0] * 8 * 4)])
    with user_values():
        res = evaluate_both(model, x, eval_masks, batch_size, mask_index, context=y)
    n, D = res["single"]["n"], res["single"]["D"]
    lines = [] if as_json else [f"{info['path']}: {split} split, {n} examples, D = {D}", *result_lines(res, split)]
    report({"checkpoint": info["path"], "split": split, "n": n, "D": D, **res}, as_json, *lines)


def _evaluate_marginal(model, info, x, y, split, observed, occlude, masks, seed, as_json) -> None:
    """Mean ``-log p(x_o)`` ± standard error over the split (:func:`made_np.conditional.log_marginal`)."""
    from .complete import observed_mask

    obs, what = observed_mask(model, info, x, observed, occlude, seed)
    with user_values({"observed": f"--observed {observed}"}), row_progress(x.shape[0], "marginals") as progress:
        nll = -to_host(log_marginal(model, x, obs, masks=masks, seed=seed, context=y,
                                    progress=progress)).astype(np.float64)
    n, (mean, stderr), K = int(nll.size), mean_and_stderr(nll), mixture_size(model, masks)
    res = {"checkpoint": info["path"], "split": split, "n": n, "D": model.config.D, "observed": what,
           "mean_observed": float(obs.astype(bool).sum(axis=1).mean()), "masks": K, "neg_log_px_o": mean, "stderr": stderr}
    report(res, as_json, f"{info['path']}: {split} split, {n} examples, D = {model.config.D}, {what} "
           f"({res['mean_observed']:.1f} observed on average)",
           f"{split} -log p(x_o), mixture of {K} mask(s) : {format_nats(mean, stderr, n)}")
