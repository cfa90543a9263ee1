"""The ``made-np`` command line: train, evaluate, sample and inspect MADE models.

Commands::

    made-np train       train a MADE (digits by default) and write a run folder
    made-np evaluate    NLL of a checkpoint on a split, single mask and ensemble
    made-np sample      draw samples from a checkpoint (.png grid or .npy array)
    made-np masks       dump (and draw) the ordering, degrees and masks of a checkpoint
    made-np data fetch  download binarized MNIST into the cache
    made-np data info   shapes of a data set

Every user error (a missing or malformed file, a bad option value, an unusable
device) prints one line ``Error: ...`` and exits with status 2, never a traceback.

To add a command, decorate a function with ``@cli.command()`` and reuse the
helpers below: :func:`device_option`, :func:`dataset_path_option`,
:func:`load_model` (checkpoint -> model, info) and :func:`load_split`.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import sys
import time
from pathlib import Path

import click
import numpy as np

from . import __version__, backend, sampling
from . import data as data_mod
from .masks import MaskError
from .model import MADE, MADEConfig
from .optim import OPTIMIZERS
from .train import (
    CHECKPOINT_NAME,
    LR_SCHEDULES,
    CheckpointError,
    TrainConfig,
    evaluate,
    fit,
    load_checkpoint,
    resolve_checkpoint_path,
    update_checkpoint_meta,
)

#: Exceptions that are the user's doing: shown as one line, exit status 2.
USER_ERRORS = (data_mod.DataError, backend.BackendError, CheckpointError, MaskError)


class UserError(click.ClickException):
    """A one-line user error (exit status 2)."""

    exit_code = 2


def _one_line(message) -> str:
    return " ".join(str(message).split())


@contextlib.contextmanager
def user_values():
    """Turn a ``ValueError`` (e.g. from configuration validation) into a :class:`UserError`."""
    try:
        yield
    except USER_ERRORS:
        raise
    except ValueError as exc:
        raise UserError(_one_line(exc)) from None


class _Group(click.Group):
    """A group whose errors are always one line ``Error: ...`` (exit 2 for user errors)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise UserError(_one_line(exc)) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:  # bad option, missing argument, invalid choice
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"Error: {_one_line(exc.format_message())}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"Error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)  # an int here is the code of ctx.exit()


# =========================================================================== shared helpers


def device_option(f):
    """``--device cpu|cuda`` (default ``$MADE_NP_DEVICE``, else cpu)."""
    return click.option(
        "--device", type=click.Choice(backend.DEVICES), default=None,
        show_default="$MADE_NP_DEVICE, else cpu",
        help="Where to compute: cpu (NumPy) or cuda (CuPy, needs pip install -e '.[cuda]').",
    )(f)


def dataset_path_option(f):
    """``--dataset-path``: where the data file of a named data set lies."""
    return click.option(
        "--dataset-path", type=click.Path(), default=None,
        show_default="search $MADE_NP_DATA, the cache, ../shared/data",
        help="The data file (or a folder holding it) for binarized-mnist or 2d.",
    )(f)


def parse_hidden(text: str) -> tuple:
    """``"500"`` -> (500,), ``"500,500"`` -> (500, 500), ``""`` or ``"0"`` -> ()."""
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


def parse_num_masks(text: str) -> int:
    """``"inf"`` (or 0) -> 0 (no limit); a positive integer -> itself."""
    t = text.strip().lower()
    if t in ("inf", "infinite", "none", "0"):
        return 0
    try:
        k = int(t)
    except ValueError:
        k = -1
    if k < 1:
        raise UserError(f"--num-masks: expected a positive integer or 'inf', got {text!r}")
    return k


def load_model(checkpoint, device=None, *, best: bool = True):
    """Load a checkpoint (file or run folder) as ``(model, info)``; errors become one line."""
    with user_values():
        return load_checkpoint(checkpoint, device, best=best)


def load_split(info: dict, split: str, dataset_path=None):
    """Reload the data set a checkpoint was trained on and return ``(dataset, split array)``.

    Raises
    ------
    UserError
        The checkpoint names no data set, or its width differs from the model's.
    """
    spec = info.get("dataset") or {}
    if not spec.get("spec"):
        raise UserError(f"{info['path']}: the checkpoint names no data set to evaluate on")
    ds = data_mod.load_dataset(spec["spec"], path=dataset_path or spec.get("path"),
                               seed=int(spec.get("seed") or 0))
    D = info["model_config"].D
    if ds.D != D:
        raise UserError(f"data set {spec['spec']!r} has D = {ds.D}, but the checkpoint's model has D = {D}")
    return ds, getattr(ds, split)


def image_shape_of(info: dict):
    """The image shape stored with a checkpoint's data set, else a square one when D is a square."""
    stored = (info.get("dataset") or {}).get("image_shape")
    if stored:
        return tuple(stored)
    D = info["model_config"].D
    k = math.isqrt(D)
    return (k, k) if k * k == D else None


def sampling_methods() -> tuple:
    """Sampler names offered by :mod:`made_np.sampling` (``sample_<name>`` functions)."""
    names = getattr(sampling, "METHODS", None)
    if names:
        return tuple(names)
    return tuple(n[len("sample_"):] for n in dir(sampling)
                 if n.startswith("sample_") and callable(getattr(sampling, n)))


DEFAULT_SAMPLING_METHOD = getattr(sampling, "DEFAULT_METHOD", "naive")


def format_result(r: dict) -> str:
    """``nll ± stderr nats (per-dim nats/dim)`` of an :func:`evaluate` result."""
    return (f"{r['nll']:.3f} ± {r['stderr']:.3f} nats "
            f"({r['nll_per_dim']:.5f} ± {r['stderr_per_dim']:.5f} nats/dim)")


def evaluate_both(model: MADE, x, eval_masks=None, batch_size: int = 1000, mask_index: int = 0) -> dict:
    """Single-mask and (when the bank has more than one mask) ensemble results.

    Returns ``{"single": result, "ensemble": result or None}`` (see :func:`made_np.train.evaluate`).
    """
    single = evaluate(model, x, ensemble=False, batch_size=batch_size, mask_index=mask_index)
    ens = None
    if model.config.num_masks != 1:
        ens = evaluate(model, x, ensemble=True, eval_masks=eval_masks, batch_size=batch_size)
    return {"single": single, "ensemble": ens}


def echo_results(res: dict, split: str) -> None:
    """Print single-mask and ensemble figures one above the other, aligned."""
    s, e = res["single"], res["ensemble"]
    labels = [f"{split} NLL, mask {s['mask_index']}"]
    if e is not None:
        labels.append(f"{split} NLL, ensemble of {e['masks']} masks")
    width = max(len(label) for label in labels)
    click.echo(f"{labels[0]:<{width}} : {format_result(s)}")
    if e is not None:
        click.echo(f"{labels[1]:<{width}} : {format_result(e)}")


# =========================================================================== the group


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="made-np", message="%(prog)s %(version)s")
def cli():
    """MADE (Masked Autoencoder for Distribution Estimation, Germain et al. 2015) in NumPy/CuPy.

    Start with `made-np train` (binarized 8x8 digits, under two minutes on a laptop).
    """


def main(argv=None):
    """Console entry point ``made-np``."""
    return cli.main(args=argv, prog_name="made-np")


# =========================================================================== train

# Options that a resumed run may change; every other option comes from the checkpoint.
RESUME_OVERRIDABLE = {"epochs", "patience", "device", "quiet", "dataset_path", "resume", "out", "threads"}
#: Default --epochs by data set: the small digits set needs many passes, binarized MNIST
#: reaches its best test NLL at the end of a 50-epoch cosine schedule (see README, Results).
DEFAULT_EPOCHS = {"digits": 200}
DEFAULT_EPOCHS_OTHER = 50
#: Defaults of other options by data set (a command-line value always wins). On the 2-D
#: table a bank of 32 masks over scaled inputs smooths the conditionals enough to reach
#: KL(p_true || p_model) = 0.016 nats; one-hot inputs reach 0.021 at best (docs/two_d.md).
DATASET_DEFAULTS = {"2d": {"hidden": "100,100", "input_encoding": "scaled", "num_masks": "32"}}
#: Default --lr by optimiser. Adam at 2e-3 with the cosine schedule beats the textbook
#: constant 1e-3 on binarized MNIST (94.1 vs 94.85 test nats at 1x500).
DEFAULT_LR = {"adam": 2e-3, "adagrad": 1e-2, "sgd": 1e-2}
#: Below this many multiply-adds per layer and minibatch, --threads auto uses one CPU thread.
SMALL_MODEL_MACS = 10**7


@cli.command()
@click.option("--dataset", default="digits", show_default=True,
              help="digits, binarized-mnist, 2d, or a path to an .npz (train_data/valid_data/test_data), "
                   "an .npy (N, D) array or a folder of .amat files.")
@dataset_path_option
@click.option("--data-seed", type=int, default=0, show_default=True,
              help="Seed of the digits shuffle, the .npy split and the 2d samples (fixes the test set).")
@click.option("--hidden", default="500", show_default=True,
              help="Hidden widths, comma-separated (500,500 for two layers; 0 or '' for none); 100,100 for 2d.")
@click.option("--ordering", type=click.Choice(["natural", "random"]), default="natural", show_default=True,
              help="Input ordering of mask 0.")
@click.option("--degrees", type=click.Choice(["random", "equal"]), default="random", show_default=True,
              help="How hidden degrees m^l(k) are drawn (random: the paper's rule).")
@click.option("--num-masks", default="1", show_default="1; 32 for 2d",
              help="Size of the mask bank: 1 (fixed mask), K, or inf (a fresh mask at every resample).")
@click.option("--order-agnostic/--no-order-agnostic", default=True, show_default=True,
              help="Masks beyond mask 0 draw a fresh ordering (paper Sec. 4.1); matters when --num-masks != 1.")
@click.option("--connectivity-agnostic/--no-connectivity-agnostic", default=True, show_default=True,
              help="Masks beyond mask 0 draw fresh hidden degrees (paper Sec. 4.2).")
@click.option("--resample-every", type=int, default=1, show_default=True,
              help="Minibatches between mask changes (the paper changes mask at every update).")
@click.option("--valid-masks", type=int, default=None, show_default="the bank, at most 16",
              help="Masks in the validation ensemble during training (when --num-masks != 1).")
@click.option("--eval-masks", type=int, default=None, show_default="the bank; 1000 when inf",
              help="Masks in the final test ensemble (when --num-masks != 1).")
@click.option("--direct-connections/--no-direct-connections", default=False, show_default=True,
              help="Direct input-to-output connections (paper eq. 11).")
@click.option("--input-encoding", type=click.Choice(["binary", "onehot", "raw", "scaled"]), default=None,
              show_default="binary for 0/1 data, scaled for 2d, onehot for other categorical data",
              help="How a variable enters the network.")
@click.option("--activation", type=click.Choice(["relu", "leaky_relu"]), default="relu", show_default=True,
              help="Hidden activation.")
@click.option("--epochs", type=int, default=None, show_default="200 for digits, 50 otherwise",
              help="Most epochs; the cosine schedule anneals the learning rate to 0 over them.")
@click.option("--batch-size", type=int, default=TrainConfig.batch_size, show_default=True,
              help="Examples per minibatch.")
@click.option("--optimizer", type=click.Choice(["adam", "adagrad", "sgd"]), default="adam", show_default=True,
              help="Optimiser (the paper used adagrad).")
@click.option("--lr", type=float, default=None, show_default="adam 2e-3, adagrad 1e-2, sgd 1e-2",
              help="Base learning rate.")
@click.option("--weight-decay", type=float, default=0.0, show_default=True, help="L2 coefficient.")
@click.option("--patience", type=int, default=TrainConfig.patience, show_default=True,
              help="Stop after this many epochs without a better validation NLL (0: never).")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default="cosine", show_default=True,
              help="constant; step (halve every --lr-step epochs); cosine (to 0 over --epochs).")
@click.option("--lr-step", type=int, default=TrainConfig.lr_step, show_default=True,
              help="Epochs between halvings of the step schedule.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the weights, the mask bank, the shuffling and the samples.")
@device_option
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True,
              help="Floating point type of parameters and activations.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              show_default="runs/<dataset>-<YYYYmmdd-HHMMSS>",
              help="Run folder for model.npz, metrics.csv, loss.png, samples.png, results.json.")
@click.option("--resume", type=click.Path(), default=None, show_default="start a new run",
              help="Continue the unfinished run in this folder (its options come from its checkpoint; "
                   "--epochs and --patience may be changed).")
@click.option("--threads", default="auto", show_default=True,
              help="CPU threads of BLAS, numexpr and made-np's work pool: a number, or auto (1 for small "
                   "models, where threads cost more than they give, e.g. the digits default; else the "
                   "libraries' own choice and $MADE_NP_THREADS).")
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
    parse_threads(o["threads"])
    if o["resume"]:
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
        if not quiet:
            click.echo(f"resuming {ckpt} after epoch {state.get('epoch')} (best valid NLL "
                       f"{state.get('best_valid_nll', math.nan):.4f} at epoch {state.get('best_epoch')})")
        _train_and_report(ctx, model, ds, cfg, run_dir, spec, quiet, o["threads"], resume_state=info)
        return

    for name, value in DATASET_DEFAULTS.get(o["dataset"].lower(), {}).items():
        if ctx.get_parameter_source(name) != click.core.ParameterSource.COMMANDLINE:
            o[name] = value
    xp = backend.get_xp(o["device"])
    hidden = parse_hidden(o["hidden"])
    num_masks = parse_num_masks(o["num_masks"])
    ds = data_mod.load_dataset(o["dataset"], path=o["dataset_path"], seed=o["data_seed"])
    encoding = o["input_encoding"] or ("binary" if ds.is_binary else "onehot")
    with user_values():
        mcfg = MADEConfig(
            D=ds.D, hidden=hidden, classes=ds.classes,
            head="bernoulli" if ds.is_binary else "categorical", input_encoding=encoding,
            ordering=o["ordering"], degrees=o["degrees"], num_masks=num_masks,
            order_agnostic=o["order_agnostic"], connectivity_agnostic=o["connectivity_agnostic"],
            direct=o["direct_connections"], activation=o["activation"], seed=o["seed"], dtype=o["dtype"],
        )
        cfg = TrainConfig(
            epochs=DEFAULT_EPOCHS.get(ds.name, DEFAULT_EPOCHS_OTHER) if o["epochs"] is None else o["epochs"],
            batch_size=o["batch_size"], optimizer=o["optimizer"],
            lr=DEFAULT_LR[o["optimizer"]] if o["lr"] is None else o["lr"],
            weight_decay=o["weight_decay"], patience=o["patience"], resample_every=o["resample_every"],
            valid_masks=o["valid_masks"], eval_masks=o["eval_masks"], lr_schedule=o["lr_schedule"],
            lr_step=o["lr_step"], seed=o["seed"],
        )
    spec_name = o["dataset"]
    named = spec_name.lower() in data_mod.NAMES + ("binarized_mnist",)
    spec = {
        "spec": spec_name if named else str(Path(spec_name).expanduser().resolve()),
        "path": str(Path(o["dataset_path"]).expanduser().resolve()) if o["dataset_path"] else None,
        "seed": o["data_seed"], "name": ds.name, "D": ds.D, "classes": ds.classes,
        "image_shape": list(ds.image_shape) if ds.image_shape else None,
        "sizes": [int(ds.train.shape[0]), int(ds.valid.shape[0]), int(ds.test.shape[0])],
    }
    run_dir = Path(o["out"]) if o["out"] else Path("runs") / f"{ds.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / CHECKPOINT_NAME).exists():
        raise UserError(f"{run_dir} already holds a run ({CHECKPOINT_NAME}): continue it with "
                        f"--resume {run_dir} or choose another --out")
    with user_values():
        model = MADE(mcfg, xp)
    if not quiet:
        masks = {0: "no limit", 1: "1 (fixed)"}.get(num_masks, str(num_masks))
        click.echo(f"data {ds.name}: D = {ds.D}, {ds.classes} classes, train/valid/test "
                   f"{ds.train.shape[0]}/{ds.valid.shape[0]}/{ds.test.shape[0]}")
        click.echo(f"MADE hidden {list(hidden)}, {model.num_params} parameters, masks {masks}, "
                   f"{mcfg.head} head, {encoding} inputs, {cfg.optimizer} lr {model_lr(cfg)}, "
                   f"device {backend.device_of(xp)}; writing {run_dir}")
    _train_and_report(ctx, model, ds, cfg, run_dir, spec, quiet, o["threads"])


def parse_threads(text: str) -> int:
    """``"auto"`` -> 0; a positive integer -> itself."""
    if text.strip().lower() == "auto":
        return 0
    n = backend.positive_int(text)
    if n < 1:
        raise UserError(f"--threads: expected a positive integer or auto, got {text!r}")
    return n


@contextlib.contextmanager
def limited_threads(threads: str, model: MADE, cfg: TrainConfig):
    """Limit the CPU threads of BLAS (via threadpoolctl), numexpr and made-np's work pool
    (``$MADE_NP_THREADS``, read when ``fit`` builds its optimiser and enters the
    blocked form's parallel products) while the block runs.

    ``"auto"``: one thread when every layer does fewer than :data:`SMALL_MODEL_MACS`
    multiply-adds per minibatch (threads then cost more in synchronisation than they
    save, and collapse on a busy machine), else the libraries' defaults.
    """
    n = parse_threads(threads)
    if n == 0:
        macs = max(layer.W.size for layer in model.layers) * cfg.batch_size
        small = backend.device_of(model.xp) == "cpu" and macs < SMALL_MODEL_MACS
        n = 1 if small else None
    if n is None:
        yield None
        return
    try:
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn
    except ImportError:
        blas = contextlib.nullcontext()
    else:
        blas = threadpool_limits(n)
    try:
        import numexpr
    except ImportError:
        numexpr = None
    before = numexpr.set_num_threads(n) if numexpr is not None else None
    pool_before = os.environ.get("MADE_NP_THREADS")
    os.environ["MADE_NP_THREADS"] = str(n)
    try:
        with blas:
            yield n
    finally:
        if numexpr is not None:
            numexpr.set_num_threads(before)
        if pool_before is None:
            os.environ.pop("MADE_NP_THREADS", None)
        else:
            os.environ["MADE_NP_THREADS"] = pool_before


def model_lr(cfg: TrainConfig) -> str:
    """The base learning rate as it will be used (the optimiser's default when unset)."""
    if cfg.lr is not None:
        return f"{cfg.lr:g}"
    return f"{inspect.signature(OPTIMIZERS[cfg.optimizer]).parameters['lr'].default:g}"


def _progress(epoch: int, n_batches: int):
    return click.progressbar(
        length=n_batches, label=f"epoch {epoch:4d}", file=sys.stderr, show_eta=False,
        item_show_func=lambda loss: None if loss is None else f"train NLL {loss:.4f}",
    )


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
        with limited_threads(threads, model, cfg):
            history = fit(model, ds, cfg, out_dir=run_dir, callback=on_epoch, resume_state=resume_state,
                          progress=_progress if show_bar else None, dataset_spec=spec)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted; the last finished epoch is saved in {run_dir / CHECKPOINT_NAME}: "
                   f"continue with  made-np train --resume {run_dir}", err=True)
        ctx.exit(130)
    seconds = time.perf_counter() - t0
    if not quiet:
        reason = {"patience": f"no better validation NLL for {cfg.patience} epochs",
                  "epochs": f"reached {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}", "callback": "stopped"}[history["stop_reason"]]
        click.echo(f"done in {seconds:.1f} s ({reason}); best valid NLL {history['best_valid_nll']:.4f} "
                   f"at epoch {history['best_epoch']}, weights restored")
    res = evaluate_both(model, ds.test, cfg.eval_masks, cfg.eval_batch_size)
    echo_results(res, "test")
    results = {"split": "test", **res, "train_seconds": seconds,
               "best_epoch": history["best_epoch"], "best_valid_nll": history["best_valid_nll"]}
    ckpt = run_dir / CHECKPOINT_NAME
    update_checkpoint_meta(ckpt, results=results)
    with open(run_dir / "results.json", "w") as f:
        json.dump(results, f, indent=2)
    from . import plots  # matplotlib: imported only when drawing

    plots.plot_loss_curves(history["rows"], run_dir / "loss.png")
    n = 100 if ds.image_shape else 1000
    samples = backend.to_host(sampling.sample(model, n, seed=cfg.seed, method=DEFAULT_SAMPLING_METHOD))
    plots.plot_sample_grid(samples, ds.image_shape, run_dir / "samples.png")
    if not quiet:
        click.echo(f"wrote {ckpt}, metrics.csv, loss.png, samples.png, results.json in {run_dir}")


# =========================================================================== evaluate


@cli.command("evaluate")
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


# =========================================================================== sample


@cli.command()
@click.argument("checkpoint", type=click.Path())
@click.option("-n", "--num-samples", type=int, default=100, show_default=True, help="Number of samples.")
@click.option("--out", type=click.Path(dir_okay=False), default="samples.png", show_default=True,
              help="A .png (grid of images, or a scatter for 2-D data) or a .npy (n, D) integer array.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampling noise.")
@click.option("--method", type=click.Choice(sampling_methods()), default=DEFAULT_SAMPLING_METHOD,
              show_default=True, help="Sampler of made_np.sampling.")
@click.option("--mask-index", type=int, default=0, show_default=True, help="Mask of the bank to sample with.")
@click.option("--mixture", type=int, default=0, show_default="0: the single mask --mask-index",
              help="Sample from the mixture of masks 0..K-1 (the ensemble that evaluate scores): "
                   "each sample draws its mask uniformly.")
@device_option
def sample(checkpoint, num_samples, out, seed, method, mask_index, mixture, device):
    """Draw samples from CHECKPOINT by ancestral sampling in the mask's ordering.

    With an unfinished run, its best weights so far are used.
    """
    out = Path(out)
    if out.suffix.lower() not in (".png", ".npy"):
        raise UserError(f"--out {out}: expected a .png or .npy file name")
    if num_samples < 1:
        raise UserError(f"-n: expected a positive number of samples, got {num_samples}")
    if mixture < 0:
        raise UserError(f"--mixture: expected 0 (off) or a number of masks, got {mixture}")
    model, info = load_model(checkpoint, device)
    with user_values():
        model.set_mask(mask_index)
        masks = list(range(mixture)) if mixture else None
        x = backend.to_host(sampling.sample(model, num_samples, seed=seed, method=method, masks=masks))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        np.save(out, x)
    else:
        from . import plots

        plots.plot_sample_grid(x, image_shape_of(info), out)
    which = f"mixture of masks 0..{mixture - 1}" if mixture else f"mask {mask_index}"
    click.echo(f"wrote {num_samples} samples ({method}, {which}, seed {seed}) to {out}")


# =========================================================================== masks


@cli.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), default="masks.npz", show_default=True,
              help="The .npz to write: ordering, degrees_1.., mask_W1.., mask_V (and mask_A with direct connections).")
@click.option("--index", type=int, default=0, show_default=True, help="Which mask of the bank.")
@click.option("--png", type=click.Path(dir_okay=False), default=None, show_default="no drawing",
              help="Also draw the masks into this PNG.")
def masks(checkpoint, out, index, png):
    """Dump the ordering m^0, the degrees m^l and every mask of mask INDEX of CHECKPOINT's bank.

    The masks are rebuilt from the checkpoint's configuration exactly as training used them
    (variable level: (D, H_1), ..., (H_L, D); no one-hot repetition).
    """
    model, info = load_model(checkpoint, "cpu")
    K = model.config.num_masks
    if index < 0 or (K >= 1 and index >= K):
        raise UserError(f"--index {index} is outside the bank of {K} mask(s) (0..{K - 1})")
    ms = model.maskset_at(index)
    arrays = {"ordering": ms.ordering}
    names = []
    for l, (deg, m) in enumerate(zip(ms.degrees, ms.hidden), start=1):
        arrays[f"degrees_{l}"] = deg
        arrays[f"mask_W{l}"] = m
        names.append(f"mask_W{l}")
    arrays["mask_V"] = ms.output
    names.append("mask_V")
    if model.config.direct:
        arrays["mask_A"] = ms.direct
        names.append("mask_A")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    bank = "no limit" if K == 0 else str(K)
    shown = 16
    first = " ".join(str(int(v)) for v in ms.ordering[:shown])
    more = f" ... (first {shown} of {ms.D})" if ms.D > shown else ""
    click.echo(f"mask {index} (bank: {bank}): ordering m^0 = {first}{more}")
    for l, deg in enumerate(ms.degrees, start=1):
        click.echo(f"  layer {l}: {deg.size} units, degrees {int(deg.min())}..{int(deg.max())}, "
                   f"{int(ms.hidden[l - 1].sum())} of {ms.hidden[l - 1].size} connections kept")
    click.echo(f"wrote {', '.join(['ordering'] + [f'degrees_{l}' for l in range(1, len(ms.degrees) + 1)] + names)} "
               f"to {out}")
    if png:
        from . import plots

        titles = [f"{n[5:]} ({arrays[n].shape[0]} x {arrays[n].shape[1]})" for n in names]
        plots.plot_masks([arrays[n] for n in names], png, titles=titles)
        click.echo(f"drew the masks in {png}")


# =========================================================================== density


@cli.command()
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
    from . import density as dens, plots

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


# =========================================================================== data


@cli.group(cls=_Group)
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
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of shuffles and splits.")
def data_info(spec, dataset_path, seed):
    """Print the splits' shapes of SPEC (digits, binarized-mnist, 2d, or a path)."""
    ds = data_mod.load_dataset(spec, path=dataset_path, seed=seed)
    kind = "binary" if ds.is_binary else f"categorical, {ds.classes} classes"
    click.echo(f"{ds.name}: D = {ds.D} ({kind}), image shape {ds.image_shape}")
    for split in ("train", "valid", "test"):
        a = getattr(ds, split)
        click.echo(f"  {split:5s} {str(a.shape):14s} {a.dtype}  mean value {float(a.mean()):.4f}")


if __name__ == "__main__":  # pragma: no cover
    main()
