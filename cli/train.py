"""``made-np train``: train a MADE and write a run folder."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import click

from made_np import backend, sampling
from made_np import data as data_mod
from made_np.checkpoint import CHECKPOINT_NAME, resolve_checkpoint_path, update_checkpoint_meta
from made_np.config import ENCODINGS, ENGINES, LR_SCHEDULES, MADEConfig, TrainConfig
from made_np.fast.threads import parse_threads
from made_np.layers import ACTIVATIONS
from made_np.masks import BANK_ORDERINGS, DEGREE_RULES, ORDERINGS
from made_np.model import MADE
from made_np.optim import OPTIMIZERS
from made_np.train import fit

from .common import (DEFAULT_SAMPLING_METHOD, UserError, dataset_path_option, device_option, echo_results,
                     evaluate_both, load_model, load_split, user_values)

# Options that a resumed run may change; every other option comes from the checkpoint.
RESUME_OVERRIDABLE = {"epochs", "patience", "device", "quiet", "dataset_path", "resume", "out", "threads"}


def parse_hidden(text):
    """``"500"`` -> (500,), ``"500,500"`` -> (500, 500), ``""`` or ``"0"`` -> (); None stays None."""
    if text is None:
        return None
    t = text.strip()
    if t in ("", "0"):
        return ()
    try:
        widths = tuple(int(w) for w in t.split(","))
    except ValueError:
        widths = ()
    if not widths or any(w < 1 for w in widths):
        raise UserError(f"--hidden: expected comma-separated positive widths like 500 or 500,500 "
                        f"(or 0 for no hidden layer), got {text!r}")
    return widths


def parse_num_masks(text):
    """``"inf"`` -> 0 (no limit); a positive integer -> itself; None stays None."""
    if text is None:
        return None
    t = text.strip().lower()
    if t in ("inf", "infinite"):
        return 0
    try:
        k = int(t)
    except ValueError:
        k = -1
    if k < 1:
        raise UserError(f"--num-masks: expected a positive integer or 'inf' (no limit), got {text!r}")
    return k


def _progress(epoch: int, n_batches: int):
    return click.progressbar(
        length=n_batches, label=f"epoch {epoch:4d}", file=sys.stderr, show_eta=False,
        item_show_func=lambda loss: None if loss is None else f"train NLL {loss:.4f}",
    )


@click.command()
@click.option("--dataset", default="digits", show_default=True,
              help="digits, binarized-mnist, 2d, or a path to an .npz (train_data/valid_data/test_data), "
                   "an .npy (N, D) array or a folder of .amat files.")
@dataset_path_option
@click.option("--data-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the digits shuffle, the .npy split and the 2d samples (fixes the test set).")
@click.option("--context", type=click.Choice(data_mod.CONTEXT_SOURCES), default="none", show_default=True,
              help="Condition on a context per example, p(x | y): labels (the digit classes, one-hot) or "
                   "file (the train_context/valid_context/test_context keys of an .npz: (N,) labels or "
                   "(N, C) float rows).")
@click.option("--hidden", default=None, show_default="500; 100,100 for 2d",
              help="Hidden widths, comma-separated (500,500 for two layers; 0 or '' for none).")
@click.option("--ordering", type=click.Choice(ORDERINGS), default="natural", show_default=True,
              help="Input ordering of mask 0.")
@click.option("--degrees", type=click.Choice(DEGREE_RULES), default="random", show_default=True,
              help="How hidden degrees m^l(k) are drawn (random: the paper's rule).")
@click.option("--num-masks", default=None, show_default="1; 32 for 2d",
              help="Size of the mask bank: 1 (fixed mask), K, or inf (a fresh mask at every resample).")
@click.option("--order-agnostic/--no-order-agnostic", default=True, show_default=True,
              help="Masks beyond mask 0 draw a fresh ordering (paper Sec. 4.1); matters when --num-masks != 1.")
@click.option("--connectivity-agnostic/--no-connectivity-agnostic", default=True, show_default=True,
              help="Masks beyond mask 0 draw fresh hidden degrees (paper Sec. 4.2).")
@click.option("--orderings", type=click.Choice(BANK_ORDERINGS), default=MADEConfig.orderings, show_default=True,
              help="Orderings of an order-agnostic bank: uniform permutations (the paper), or segments (half "
                   "of them put a contiguous run of variables first, e.g. the top or bottom rows of an image: "
                   "trains the conditionals that completing one half from the other needs).")
@click.option("--resample-every", type=int, default=TrainConfig.resample_every, show_default=True,
              help="Minibatches between mask changes (the paper changes mask at every update).")
@click.option("--valid-masks", type=int, default=None, show_default="the bank, at most 16",
              help="Masks in the validation ensemble during training (when --num-masks != 1).")
@click.option("--eval-masks", type=int, default=None, show_default="the bank; 1000 when inf",
              help="Masks in the final test ensemble (when --num-masks != 1).")
@click.option("--direct-connections/--no-direct-connections", default=MADEConfig.direct, show_default=True,
              help="Direct input-to-output connections (paper eq. 11).")
@click.option("--input-encoding", type=click.Choice(ENCODINGS), default=None,
              show_default="binary for 0/1 data, scaled for 2d, onehot for other categorical data",
              help="How a variable enters the network.")
@click.option("--activation", type=click.Choice(tuple(ACTIVATIONS)), default=MADEConfig.activation,
              show_default=True, help="Hidden activation.")
@click.option("--epochs", type=int, default=None, show_default="200 for digits, 50 otherwise",
              help="Most epochs; the cosine schedule anneals the learning rate to 0 over them.")
@click.option("--batch-size", type=int, default=TrainConfig.batch_size, show_default=True,
              help="Examples per minibatch.")
@click.option("--optimizer", type=click.Choice(tuple(OPTIMIZERS)), default=TrainConfig.optimizer,
              show_default=True, help="Optimiser (the paper used adagrad).")
@click.option("--lr", type=float, default=None, show_default="adam 2e-3, adagrad 1e-2, sgd 1e-2",
              help="Base learning rate.")
@click.option("--weight-decay", type=float, default=TrainConfig.weight_decay, show_default=True,
              help="L2 coefficient.")
@click.option("--patience", type=int, default=TrainConfig.patience, show_default=True,
              help="Stop after this many epochs without a better validation NLL (0: never).")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=TrainConfig.lr_schedule,
              show_default=True, help="constant; step (halve every --lr-step epochs); cosine (to 0 over --epochs).")
@click.option("--lr-step", type=int, default=TrainConfig.lr_step, show_default=True,
              help="Epochs between halvings of the step schedule.")
@click.option("--engine", type=click.Choice(ENGINES), default=TrainConfig.engine, show_default=True,
              help="fast (block-sparse single-mask form, fused kernels, thread pool) or reference "
                   "(the plain MADE and textbook optimisers); the same numbers up to rounding.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the weights, the mask bank, the shuffling and the samples.")
@device_option
@click.option("--dtype", type=click.Choice(backend.DTYPES), default="float32", show_default=True,
              help="Floating point type of parameters and activations.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              show_default="runs/<dataset>-<YYYYmmdd-HHMMSS>",
              help="Run folder for model.npz, metrics.csv, loss.png, samples.png, results.json.")
@click.option("--resume", type=click.Path(), default=None, show_default="start a new run",
              help="Continue the unfinished run in this folder (its options come from its checkpoint; "
                   "--epochs and --patience may be changed).")
@click.option("--threads", default="auto", show_default=True,
              help="CPU threads of BLAS, numexpr and made-np's work pool: a number (at most the CPU cores), "
                   "or auto (1 for small models, where threads cost more than they give, e.g. the digits "
                   "default; else the libraries' own choice and $MADE_NP_THREADS).")
@click.option("--quiet", "-q", is_flag=True, default=False, show_default=True,
              help="Print only the final results (off by default).")
@click.pass_context
def train(ctx, **o):
    """Train a MADE and write a run folder.

    Prints a line per epoch (train NLL, valid NLL, seconds; * marks a new best),
    then the test NLL ± standard error in nats of the best weights: with mask 0,
    and averaged over masks when the bank has more than one. Ctrl-C keeps the
    last finished epoch; continue it with --resume.
    """
    quiet = o["quiet"]
    with user_values():
        parse_threads(o["threads"])
    if o["resume"]:
        _resume(ctx, o)
        return
    xp = backend.get_xp(o["device"])
    ds = data_mod.load_dataset(o["dataset"], path=o["dataset_path"], seed=o["data_seed"], context=o["context"])
    with user_values():
        mcfg = MADEConfig.for_data(
            ds, hidden=parse_hidden(o["hidden"]), input_encoding=o["input_encoding"], ordering=o["ordering"],
            degrees=o["degrees"], num_masks=parse_num_masks(o["num_masks"]), order_agnostic=o["order_agnostic"],
            connectivity_agnostic=o["connectivity_agnostic"], orderings=o["orderings"],
            direct=o["direct_connections"],
            activation=o["activation"], seed=o["seed"], dtype=o["dtype"])
        cfg = TrainConfig.for_data(
            ds, epochs=o["epochs"], batch_size=o["batch_size"], optimizer=o["optimizer"], lr=o["lr"],
            weight_decay=o["weight_decay"], patience=o["patience"], resample_every=o["resample_every"],
            valid_masks=o["valid_masks"], eval_masks=o["eval_masks"], lr_schedule=o["lr_schedule"],
            lr_step=o["lr_step"], seed=o["seed"], engine=o["engine"])
    spec_name = o["dataset"]
    named = spec_name.lower() in data_mod.NAMES + ("binarized_mnist",)
    spec = {
        "spec": spec_name if named else str(Path(spec_name).expanduser().resolve()),
        "path": str(Path(o["dataset_path"]).expanduser().resolve()) if o["dataset_path"] else None,
        "seed": o["data_seed"], "name": ds.name, "D": ds.D, "classes": ds.classes,
        "image_shape": list(ds.image_shape) if ds.image_shape else None,
        "sizes": [int(ds.train.shape[0]), int(ds.valid.shape[0]), int(ds.test.shape[0])],
        "context": o["context"],
    }
    run_dir = Path(o["out"]) if o["out"] else Path("runs") / f"{ds.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / CHECKPOINT_NAME).exists():
        raise UserError(f"{run_dir} already holds a run ({CHECKPOINT_NAME}): continue it with "
                        f"--resume {run_dir} or choose another --out")
    with user_values():
        model = MADE(mcfg, xp)
    if not quiet:
        masks = {0: "no limit", 1: "1 (fixed)"}.get(mcfg.num_masks, str(mcfg.num_masks))
        click.echo(f"data {ds.name}: D = {ds.D}, {ds.classes} classes, train/valid/test "
                   f"{ds.train.shape[0]}/{ds.valid.shape[0]}/{ds.test.shape[0]}"
                   + (f", context {o['context']} ({ds.context_width}, {ds.context_encoding})" if ds.context_width else ""))
        click.echo(f"MADE hidden {list(mcfg.hidden)}, {model.num_params} parameters, masks {masks}, "
                   f"{mcfg.head} head, {mcfg.input_encoding} inputs, {cfg.optimizer} lr {cfg.lr:g}, "
                   f"{cfg.engine} engine, device {backend.device_of(xp)}; writing {run_dir}")
    _train_and_report(ctx, model, ds, cfg, run_dir, spec, quiet, o["threads"])


def _resume(ctx, o) -> None:
    """``--resume DIR``: continue an unfinished run with the options of its checkpoint."""
    given = [name for name in o if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    fixed = sorted(set(given) - RESUME_OVERRIDABLE)
    if fixed:
        opts = ", ".join("--" + n.replace("_", "-") for n in fixed)
        raise UserError(f"{opts}: cannot change a resumed run (its configuration is in its checkpoint); "
                        "only --epochs, --patience, --device, --dataset-path, --threads and --quiet may be given")
    run_dir = Path(o["resume"])
    if o["out"] and Path(o["out"]).resolve() != run_dir.resolve():
        raise UserError("--out: a resumed run writes into its own folder; leave --out out")
    ckpt = resolve_checkpoint_path(run_dir)
    run_dir = ckpt.parent
    model, info = load_model(ckpt, o["device"], best=False)
    state = info.get("state") or {}
    if info["train_config"] is None or not state:
        raise UserError(f"{ckpt}: the checkpoint holds no training state to resume")
    if state.get("finished"):
        raise UserError(f"{ckpt}: this run finished at epoch {state.get('epoch')}; nothing to resume "
                        "(start a new run with --out)")
    cfg_dict = info["train_config"].to_dict()
    for name in ("epochs", "patience"):
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            cfg_dict[name] = o[name]
    with user_values():
        cfg = TrainConfig.from_dict(cfg_dict)
    spec = dict(info["dataset"] or {})
    ds, _ = load_split(info, "train", o["dataset_path"])
    if not o["quiet"]:
        click.echo(f"resuming {ckpt} after epoch {state.get('epoch')} (best valid NLL "
                   f"{state.get('best_valid_nll', math.nan):.4f} at epoch {state.get('best_epoch')})")
    _train_and_report(ctx, model, ds, cfg, run_dir, spec, o["quiet"], o["threads"], resume_state=info)


def _train_and_report(ctx, model, ds, cfg, run_dir: Path, spec: dict, quiet: bool, threads: str = "auto",
                      resume_state=None):
    """Run :func:`fit` (under ``--threads``), then evaluate on the test split, draw the figures and
    record the results. The evaluation runs with the libraries' default threads, as ``made-np
    evaluate`` does, so that the two give identical numbers."""
    show_bar = not quiet and sys.stderr.isatty()

    def on_epoch(row):
        if not quiet:
            mark = "*" if row["best"] else " "
            click.echo(f"epoch {row['epoch']:4d}  train NLL {row['train_nll']:9.4f}  "
                       f"valid NLL {row['valid_nll']:9.4f} {mark} {row['seconds']:7.2f} s")

    t0 = time.perf_counter()
    try:
        with user_values():
            history = fit(model, ds, cfg, out_dir=run_dir, callback=on_epoch, resume_state=resume_state,
                          progress=_progress if show_bar else None, dataset_spec=spec, threads=threads)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted; the last finished epoch is saved in {run_dir / CHECKPOINT_NAME}: "
                   f"continue with  made-np train --resume {run_dir}", err=True)
        ctx.exit(130)
    seconds = time.perf_counter() - t0
    if not quiet:
        reason = {"patience": f"no better validation NLL for {cfg.patience} epochs",
                  "epochs": f"reached {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}",
                  "callback": "stopped"}[history["stop_reason"]]
        click.echo(f"done in {seconds:.1f} s ({reason}); best valid NLL {history['best_valid_nll']:.4f} "
                   f"at epoch {history['best_epoch']}, weights restored")
    res = evaluate_both(model, ds.test, cfg.eval_masks, cfg.eval_batch_size, context=ds.context_of("test"))
    echo_results(res, "test")
    results = {"split": "test", **res, "train_seconds": seconds,
               "best_epoch": history["best_epoch"], "best_valid_nll": history["best_valid_nll"]}
    ckpt = run_dir / CHECKPOINT_NAME
    update_checkpoint_meta(ckpt, results=results)
    with open(run_dir / "results.json", "w") as f:
        json.dump(results, f, indent=2)
    from made_np import plots  # matplotlib: imported only when drawing

    plots.plot_loss_curves(history["rows"], run_dir / "loss.png")
    n = 100 if ds.image_shape else 1000
    y = None  # a conditional model: labels spread over the classes (a row per class), or test contexts
    if model.config.context:
        y = (sampling.balanced_labels(n, model.config.context) if model.config.context_encoding == "onehot"
             else ds.test_context[[i % len(ds.test_context) for i in range(n)]])
    samples = backend.to_host(sampling.sample(model, n, seed=cfg.seed, method=DEFAULT_SAMPLING_METHOD, context=y))
    plots.plot_sample_grid(samples, ds.image_shape, run_dir / "samples.png")
    if not quiet:
        click.echo(f"wrote {ckpt}, metrics.csv, loss.png, samples.png, results.json in {run_dir}")
