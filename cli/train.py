"""``made-np train``: train a MADE and write a run folder."""
from __future__ import annotations

import contextlib
import errno
import math
import signal
import sys
import time
from pathlib import Path

import click
import numpy as np

from made_np import (CANDIDATES_DIR, CHOSEN_SETTINGS, ACTIVATIONS, BANK_ORDERINGS, CHECKPOINT_NAME,
                     CONTEXT_SOURCES, DEFAULT_DIRECT, DEGREE_RULES, DTYPES, ENCODINGS, ENGINES, HEADS, MAX_COMPONENTS,
                     EPOCHS_RANGE, INITS, LR_SCHEDULES, MADE, MAX_COUNT, MAX_EPOCHS, MAX_EVAL_MASKS, METRICS_NAME,
                     NAMES, OPTIMIZERS, ORDERINGS, OUTPUT_BIASES, PATH_NAMES, PRESETS, RESULTS_NAME,
                     SMALL_DATA_MASKS, SMALL_DATA_ROWS, UNLIMITED, UPDATES_BUDGET, CheckpointError, DivergenceError,
                     MADEConfig, RunFolderError, TrainConfig, balanced_labels, check_api, check_resume_state, device_of,
                     expand_path, figure_samples, finished_run_blocker, fit, get_xp, load_dataset, parse_threads,
                     read_checkpoint_meta, recipe_summary, resolve_checkpoint_path, run_lock, sample, to_host,
                     training_parts, update_checkpoint_meta, write_json, first_checkpoint, fit_choice, selects,
                     table_lines)

from .common import (PathParam, UserError, check_dataset_path, dataset_path_option, device_option,
                     evaluate_both, given, load_run, load_split, max_memory_option, memory_limit, one_line,
                     result_lines, say, seed_option, user_values)

# Options that a resumed run may change; every other option comes from the checkpoint.
RESUME_OVERRIDABLE = {"epochs", "patience", "device", "quiet", "dataset_path", "resume", "out", "threads", "max_memory"}

EXIT_CODES_HELP = """\b
Exit status:
  0    the run is complete (model.npz, metrics.csv, loss.png, samples.png, results.json)
  2    a user error, as one line naming the option or file: a bad option or data file, a
       run folder that cannot be written or that another run is writing to, a full disk
       (the last checkpoint is kept), a checkpoint that cannot be resumed
  3    training diverged (a non-finite loss): the last good checkpoint is kept; try a
       smaller --lr
  130  interrupted (Ctrl-C): says what is saved; --resume continues the training, or
       writes the results of a run whose training had finished
"""


class Diverged(click.ClickException):
    """Training stopped at a non-finite loss (exit status 3)."""

    exit_code = 3


def parse_hidden(text):
    """``"500"`` -> (500,), ``"500,500"`` -> (500, 500), ``""`` or ``"0"`` -> (); None stays None.
    (The widths' bounds are the configuration's.)"""
    try:
        return None if text is None else () if text.strip() in ("", "0") else tuple(int(w) for w in text.split(","))
    except ValueError:
        raise UserError(f"--hidden: expected comma-separated positive widths like 500 or 500,500 "
                        f"(or 0 for no hidden layer), got {text[:60]!r}") from None


def parse_num_masks(text):
    """``"inf"`` -> :data:`made_np.UNLIMITED` (no limit); a positive integer -> itself; None stays None.
    (The bound is the configuration's.)"""
    if text is None:
        return None
    t = text.strip().lower()
    try:
        k = UNLIMITED if t in ("inf", "infinite") else int(t)
    except ValueError:
        k = 0
    if k < 1:  # 0 is not a silent "inf"
        raise UserError(f"--num-masks: expected a positive integer or 'inf' (no limit), got {text[:60]!r}")
    return k


def parse_discrete_columns(text):
    """``"auto"`` (or None) -> None (the data set's discrete columns); ``"none"`` -> (); ``"1,3"`` ->
    (1, 3). (Whether the columns exist is the configuration's check.)"""
    t = "auto" if text is None else text.strip().lower()
    if t in ("auto", "none"):
        return None if t == "auto" else ()
    try:
        cols = tuple(int(c) for c in t.split(","))
    except ValueError:
        cols = (-1,)
    if min(cols) < 0:
        raise UserError(f"--discrete-columns: expected comma-separated column indices counted from 0 like 1,3, "
                        f"'none' (every column continuous) or 'auto', got {text[:60]!r}")
    return cols


def column_lines(mcfg, names=()) -> list:
    """Lines naming each discrete column of a mixed head and each column with atoms (index, name
    when known, levels or atoms)."""
    def values(v):
        return ", ".join(f"{a:g}" for a in v) if len(v) <= 10 else f"{len(v)} levels {v[0]:g}..{v[-1]:g}"

    def parts(columns, sets):
        return "; ".join(f"{d}" + (f" {names[d]}" if d < len(names) and names[d] else "") + " {" + values(v) + "}"
                         for d, v in zip(columns, sets))
    lines = []
    if mcfg.discrete_columns:
        lines.append(f"discrete columns (softmax over their levels): {parts(mcfg.discrete_columns, mcfg.levels)}")
    if mcfg.atom_columns:
        lines.append(f"atoms (values many rows hold exactly, each a pinned component): {parts(mcfg.atom_columns, mcfg.atoms)}")
    return lines


#: The options that give the model's configuration and the training's.
MODEL_OPTIONS = ("hidden", "head", "components", "discrete_columns", "input_encoding", "ordering", "degrees", "num_masks", "order_agnostic", "connectivity_agnostic",
                 "orderings", "direct", "activation", "init", "seed", "dtype", "preset")
TRAIN_OPTIONS = ("preset", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "patience", "resample_every",
                 "valid_masks", "eval_masks", "lr_schedule", "lr_step", "seed", "engine", "output_bias")
#: The library's names of the arguments that ``train``'s options give, for its messages.
OPTIONS = {**{name: "--" + name.replace("_", "-") for name in ("lr", "weight_decay", "hidden", "num_masks", "components",
                                                               "discrete_columns")},
           "weight decay": "--weight-decay", "discrete column": "--discrete-columns column",
           **{f"the {h} head": f"--head {h}: the {h} head" for h in HEADS}}  # a head that cannot model the data


@click.command(epilog=EXIT_CODES_HELP)
@click.option("--dataset", default="digits",
              help=f"A named set ({', '.join(n for n in NAMES if n != 'mnist')}: `made-np data info NAME`) "
                   "or a path to an .npz (train_data/valid_data/test_data), an .npy (N, D) array, a .csv (a "
                   "header optional; split 80/10/10) or a folder of .amat files.")
@dataset_path_option
@seed_option("Seed of the digits shuffle, the .npy split and the 2d samples (fixes the test set).", "--data-seed")
@click.option("--context", type=click.Choice(CONTEXT_SOURCES), default="none",
              help="Condition on a context per example, p(x | y): labels (the digit classes, one-hot) or file (the "
                   "train_context/valid_context/test_context keys of an .npz: (N,) labels or (N, C) float rows).")
@click.option("--allow-missing", is_flag=True,
              help="The data may hold missing entries (NaN, an empty CSV cell): each such row trains and is scored "
                   "on its observed entries (an order-agnostic model; with many rows a fresh mask every minibatch), "
                   "ready for `made-np impute`. Whole numbers with blanks stay categories, as MADEImputer takes "
                   "them.")
@click.option("--hidden", default=None, show_default="500; 100,100 for 2d",
              help="Hidden widths, comma-separated (500,500 for two layers; 0 or '' for none).")
@click.option("--ordering", type=click.Choice(ORDERINGS), default="natural",
              show_default="natural; random with --preset paper", help="Input ordering of mask 0.")
@click.option("--degrees", type=click.Choice(DEGREE_RULES), default="random",
              help="How hidden degrees m^l(k) are drawn (random: the paper's rule).")
@click.option("--num-masks", default=None,
              show_default=f"{SMALL_DATA_MASKS} or inf, chosen by validation, for training sets under "
                           f"{SMALL_DATA_ROWS:,} rows; 32 for 2d, else 1",
              help="Size of the mask bank: 1 (fixed mask), K, or inf (a fresh mask at every resample).")
@click.option("--order-agnostic/--no-order-agnostic", default=True,
              help="Masks beyond mask 0 draw a fresh ordering (paper Sec. 4.1); matters when --num-masks != 1.")
@click.option("--connectivity-agnostic/--no-connectivity-agnostic", default=True,
              help="Masks beyond mask 0 draw fresh hidden degrees (paper Sec. 4.2).")
@click.option("--orderings", type=click.Choice(BANK_ORDERINGS), default=MADEConfig.orderings,
              help="Orderings of an order-agnostic bank: uniform permutations (the paper), or segments (half "
                   "of them put a contiguous run of variables first, e.g. the top or bottom rows of an image: "
                   "trains the conditionals that completing one half from the other needs).")
@click.option("--resample-every", type=click.IntRange(1, MAX_COUNT), default=TrainConfig.resample_every,
              help="Minibatches between mask changes (the paper changes mask at every update).")
@click.option("--valid-masks", type=click.IntRange(1, MAX_EVAL_MASKS), default=None,
              show_default="the bank, at most 16",
              help="Masks in the validation ensemble during training (when --num-masks != 1).")
@click.option("--eval-masks", type=click.IntRange(1, MAX_EVAL_MASKS), default=None,
              show_default="the bank, at most 1000", help="Masks in the final test ensemble (when --num-masks != 1).")
@click.option("--direct-connections/--no-direct-connections", "direct", default=None,
              show_default="on" if DEFAULT_DIRECT else "off", help="Direct input-to-output connections (paper eq. 11).")
@click.option("--head", type=click.Choice(tuple(HEADS)), default=None,
              show_default="bernoulli for 0/1 data, categorical for other classes, mog for real values (mixed with "
                           "discrete columns)",
              help="The conditionals: mog and gaussian model real-valued data (a float file), standardised "
                   "inside the model; NLLs stay in the data's units.")
@click.option("--components", type=click.IntRange(1, MAX_COMPONENTS), default=None,
              show_default=str(MADEConfig.components), help="Gaussians per variable of the mog head.")
@click.option("--discrete-columns", default="auto", show_default=True,
              help="Real-valued data: the columns (counted from 0, e.g. 1,3) that get a softmax over their "
                   "distinct values (the mixed head); 'auto': those of at most 10 distinct values; 'none': "
                   "every column continuous (so does --head mog).")
@click.option("--atoms/--no-atoms", default=True, show_default="on",
              help="Real-valued data: a mixture component pinned on each value that many rows of a column hold "
                   "exactly (a point mass, such as the zeros of a zero-inflated column; docs/math.md Sec. 13.2).")
@click.option("--input-encoding", type=click.Choice(ENCODINGS), default=None,
              show_default="binary for 0/1 data, scaled for 2d, raw for real values, onehot for other categorical data",
              help="How a variable enters the network.")
@click.option("--activation", type=click.Choice(tuple(ACTIVATIONS)), default=MADEConfig.activation,
              help="Hidden activation.")
@click.option("--init", type=click.Choice(tuple(INITS)), default=None,
              show_default=f"{MADEConfig.init}; orthogonal with --preset paper",
              help="Initial weights: uniform in +-1/sqrt(fan in), or semi-orthogonal (orthonormal rows or "
                   "columns), as the paper's code initialised its MNIST networks.")
@click.option("--epochs", type=click.IntRange(1, MAX_EPOCHS), default=None,
              show_default=f"about {UPDATES_BUDGET:,} updates, {EPOCHS_RANGE[0]}..{EPOCHS_RANGE[1]} epochs",
              help="Most epochs (early stopping usually ends sooner); the cosine schedule anneals the "
                   "learning rate to 0 over them.")
@click.option("--batch-size", type=click.IntRange(1, MAX_COUNT), default=TrainConfig.batch_size,
              help="Examples per minibatch.")
@click.option("--optimizer", type=click.Choice(tuple(OPTIMIZERS)), default=TrainConfig.optimizer,
              help="Optimiser (the paper used adagrad).")
@click.option("--lr", type=float, default=None, show_default="adam 2e-3, adagrad 1e-2, sgd 1e-2",
              help="Base learning rate.")
@click.option("--weight-decay", type=float, default=TrainConfig.weight_decay, help="L2 coefficient.")
@click.option("--patience", type=click.IntRange(0, MAX_EPOCHS), default=None,
              show_default="30; for small real-valued data at least 500 updates",
              help="Stop after this many epochs without a better validation NLL (0: never).")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=TrainConfig.lr_schedule,
              help="constant; step (halve every --lr-step epochs); cosine (to 0 over --epochs).")
@click.option("--lr-step", type=click.IntRange(1, MAX_EPOCHS), default=TrainConfig.lr_step,
              help="Epochs between halvings of the step schedule.")
@click.option("--output-bias", type=click.Choice(OUTPUT_BIASES), default=TrainConfig.output_bias,
              help="Start the output biases at the logits of the training data's marginals (each variable's "
                   "class frequencies, with half a count added), or at 0 as the paper's code did.")
@click.option("--preset", type=click.Choice(tuple(PRESETS)), default=None, show_default="the recipe alone",
              help="A named protocol under the options given: paper = the MADE paper's, as its code ran it "
                   "(Adagrad at a constant lr 0.01, orthogonal initial weights, a random ordering, batch 100, "
                   "look-ahead 30 epochs, at most 1000 epochs, direct connections, output biases at 0).")
@click.option("--engine", type=click.Choice(ENGINES), default=TrainConfig.engine,
              help="fast (block-sparse single-mask form, fused kernels, thread pool) or reference "
                   "(the plain MADE and textbook optimisers); the same numbers up to rounding.")
@seed_option("Seed of the weights, the mask bank, the shuffling and the samples.")
@device_option
@click.option("--dtype", type=click.Choice(DTYPES), default="float32",
              help="Floating point type of parameters and activations.")
@click.option("--out", type=PathParam(file_okay=False), default=None, show_default="runs/<dataset>-<YYYYmmdd-HHMMSS>",
              help="Run folder for model.npz, metrics.csv, loss.png, samples.png, results.json.")
@click.option("--resume", type=PathParam(), default=None, show_default="start a new run",
              help="Continue the run in this folder (its options come from its checkpoint; "
                   "--epochs and --patience may be changed): an unfinished run trains on, a finished "
                   "one whose results are missing gets them, a larger --epochs trains a finished one on.")
@click.option("--threads", default="auto",
              help="CPU threads of BLAS, numexpr and made-np's work pool: a number (at most the CPU cores), "
                   "or auto (the steps timed on 1 thread and on all cores, alternately, and the faster kept; "
                   "timed again when the step time drifts or every 500 steps; BLAS on one thread, so the "
                   "numbers are those of --threads 1). The epoch line shows the threads most steps used.")
@max_memory_option
@click.option("--quiet", "-q", is_flag=True, default=False, help="Print only the final results (off by default).")
@click.pass_context
def train(ctx, **o):
    """Train a MADE and write a run folder.

    Prints a line per epoch (train NLL, valid NLL, seconds, CPU threads; * marks a new best),
    then the test NLL ± standard error in nats of the best weights: with mask 0,
    and averaged over masks when the bank has more than one. One run at a time
    writes to a run folder. Ctrl-C keeps the last finished epoch; continue it with
    --resume.

    Small binary or categorical data (under 10,000 training rows) with none of --num-masks,
    --lr, --lr-schedule, --optimizer, --preset given: trains a bank of 16 masks and a fresh
    mask per minibatch, each a run folder of its own in OUT/candidates/, and keeps the one
    with the lower validation NLL (its test ensemble's) in OUT, with both in results.json.
    """
    # a write beyond ``ulimit -f`` fails with EFBIG (reported in one line) instead of killing the process
    with contextlib.suppress(AttributeError, ValueError, OSError):  # no such signal here, or not the main thread
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    where = {"run_dir": None}  # the run folder once it is held: what an interruption reports on
    try:
        with user_values():
            parse_threads(o["threads"])
        if o["resume"]:
            _resume(ctx, o, where)
        else:
            _new_run(ctx, o, where)
    except KeyboardInterrupt:
        click.echo(f"\n{_interrupted(where['run_dir'])}", err=True)
        ctx.exit(130)


def _hold(stack: contextlib.ExitStack, run_dir: Path, option: str, where: dict) -> None:
    """Take the run folder's lock (creating it) for the rest of the command; one-line errors name ``option``."""
    try:
        stack.enter_context(run_lock(run_dir))
    except RunFolderError as exc:
        raise UserError(f"{option}: {one_line(exc)}") from None
    where["run_dir"] = run_dir


def _choosing_run(run_dir):
    """The run folder of a run that chooses its recipe and has a candidate saved (``run_dir`` is that
    folder or one of its candidates), else None."""
    if run_dir is None:
        return None
    root = run_dir.parent.parent if run_dir.parent.name == CANDIDATES_DIR else run_dir
    return root if first_checkpoint(root).is_file() else None


def _interrupted(run_dir) -> str:
    """What an interruption leaves: the line printed for Ctrl-C."""
    ckpt = None if run_dir is None else run_dir / CHECKPOINT_NAME
    root = _choosing_run(run_dir)
    if root is not None and not (root / CHECKPOINT_NAME).is_file():
        return f"interrupted while choosing the recipe for small data; continue with  made-np train --resume {root}"
    if ckpt is None or not ckpt.is_file():
        return "interrupted before the first epoch finished: nothing was saved"
    try:
        meta = read_checkpoint_meta(ckpt)
    except CheckpointError as exc:
        return f"interrupted; {one_line(exc)}"
    state = meta.get("state") or {}
    if not state.get("finished"):
        return (f"interrupted; epoch {state.get('epoch')} is saved in {ckpt}: continue with "
                f"made-np train --resume {run_dir}")
    if meta.get("results") is None:
        return (f"interrupted while writing the results; the trained model is saved in {ckpt}: write them "
                f"with  made-np train --resume {run_dir}")
    return f"interrupted; {ckpt} holds the finished run (epoch {state.get('epoch')}) and its results"


def _new_run(ctx, o, where) -> None:
    """A new run: the folder given with --out is held (so checked for writing) before the data are loaded."""
    quiet = o["quiet"]
    memory_limit(o["max_memory"])
    with contextlib.ExitStack() as stack:
        run_dir = Path(o["out"]).expanduser() if o["out"] else None
        if run_dir is not None:
            _hold_new(stack, run_dir, where)
        xp = get_xp(o["device"])
        if not o["dataset"].strip():
            raise UserError("--dataset: empty; give digits, binarized-mnist, 2d or a data file")
        check_dataset_path(o["dataset"], o["dataset_path"])
        ds = load_dataset(o["dataset"], path=o["dataset_path"], seed=o["data_seed"], context=o["context"],
                          real=bool(o["head"]) and HEADS[o["head"]].real,  # --head mog: whole numbers as measurements
                          allow_nan=o["allow_missing"])
        for key in [*PRESETS[o["preset"]][0], *PRESETS[o["preset"]][1]] if o["preset"] else ():
            o[key] = o[key] if given(ctx, key) else None  # what a preset sets is the preset's unless given
        o.update(hidden=parse_hidden(o["hidden"]), num_masks=parse_num_masks(o["num_masks"]),
                 discrete_columns=parse_discrete_columns(o["discrete_columns"]))
        with user_values(OPTIONS):
            mcfg = MADEConfig.for_data(ds, **{key: o[key] for key in MODEL_OPTIONS},
                                       **({} if o["atoms"] else {"atoms": (), "atom_columns": ()}))
            cfg = TrainConfig.for_data(ds, **{key: o[key] for key in TRAIN_OPTIONS})
        if run_dir is None:
            run_dir = Path("runs") / f"{ds.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            _hold_new(stack, run_dir, where)
        check_api(training_parts(mcfg, cfg, ds, o["dataset"]))
        with user_values():
            model = MADE(mcfg, xp)
        if not quiet:
            kind = "real-valued" if ds.classes == 0 else f"{ds.classes} classes"
            say(f"data {ds.name}: D = {ds.D}, {kind}, train/valid/test {ds.train.shape[0]}/{ds.valid.shape[0]}/"
                f"{ds.test.shape[0]}" + (f", context {o['context']} ({ds.context_width}, {ds.context_encoding})"
                                         if ds.context_width else "") + f"; {recipe_summary(ds)}")
            for line in column_lines(mcfg, ds.columns):
                say(line)
        fixed = [key for key in CHOSEN_SETTINGS if given(ctx, key)] + (["preset"] if o["preset"] else [])
        if selects(ds, fixed):
            _choose(o, where, run_dir, ds, None, mcfg, cfg, {})
            return
        if not quiet:
            say(_model_line(model, cfg, xp, run_dir, ds))
        _train_and_report(model, ds, cfg, run_dir, None, quiet, o["threads"])


def _model_line(model, cfg, xp, run_dir: Path, ds) -> str:
    """The line that says what trains: the network, its masks, the optimiser, the engine (the reference one
    for training rows with missing entries: fit's only form of their observed-first masks), the folder."""
    missing = ds.train.dtype.kind == "f" and bool(np.isnan(ds.train).any())
    mcfg = model.config
    masks = {0: "no limit", 1: "1 (fixed)"}.get(mcfg.num_masks, str(mcfg.num_masks))
    return (f"MADE hidden {list(mcfg.hidden)}, {model.num_params} parameters, masks {masks}, "
            f"{mcfg.head} head, {mcfg.input_encoding} inputs, {cfg.optimizer} lr {cfg.lr:g} {cfg.lr_schedule}, "
            f"{'reference engine (rows with missing entries)' if missing else cfg.engine + ' engine'}, "
            f"device {device_of(xp)}; writing {run_dir}")


def _choose(o, where, run_dir: Path, ds, spec, mcfg, cfg, more: dict) -> None:
    """The recipe for small data (:func:`made_np.fit_choice`): each candidate trains as a run of its own in
    ``RUN/candidates/<name>``, printed and with its results as a run's (a saved one goes on as ``--resume``
    would), then the table and the kept one's test figures, printed with --quiet too."""
    quiet, xp = o["quiet"], get_xp(o["device"])

    def train(model, ds, c, out_dir: Path, resume_state):
        with contextlib.ExitStack() as stack:
            _hold(stack, out_dir, "--out" if resume_state is None else "--resume", where)
            if resume_state is not None:
                _train_on(model, resume_state, more, o, (ds, spec))
            else:
                if not quiet:
                    say(f"candidate {out_dir.name}: {_model_line(model, c, xp, out_dir, ds)}")
                _train_and_report(model, ds, c, out_dir, spec, quiet, o["threads"])
        where["run_dir"] = run_dir

    with _writes(run_dir), user_values():
        _, _, table = fit_choice(ds, mcfg, cfg, run_dir, xp=xp, more=more, train=train, say=None if quiet else say)
    results = read_checkpoint_meta(run_dir / CHECKPOINT_NAME)["results"]
    for line in [*table_lines(table), *result_lines(results, "test")]:  # as a run without a choice ends
        say(line)
    say(f"kept {results['chosen']} (the lower validation NLL): wrote its {CHECKPOINT_NAME}, metrics.csv, loss.png, "
        f"samples.png, results.json in {run_dir}")


def _hold_new(stack: contextlib.ExitStack, run_dir: Path, where: dict) -> None:
    """:func:`_hold` the folder of a new run, which never writes over another run's files: its
    checkpoint, or (with the checkpoint gone) the results, metrics and figures it left."""
    _hold(stack, run_dir, "--out", where)
    if (run_dir / CHECKPOINT_NAME).exists():
        raise UserError(f"{run_dir} already holds a run ({CHECKPOINT_NAME}): continue it with "
                        f"--resume {run_dir} or choose another --out")
    left = [name for name in (METRICS_NAME, RESULTS_NAME, "loss.png", "samples.png", CANDIDATES_DIR)
            if (run_dir / name).exists()]
    if left:
        raise UserError(f"{run_dir} already holds {', '.join(left)} of an earlier run (without its "
                        f"{CHECKPOINT_NAME}); a new run would overwrite them: choose another --out")


def _resume(ctx, o, where) -> None:
    """``--resume DIR``: continue a run with the options of its checkpoint (:func:`_train_on`), or the
    choice of a run choosing the recipe for small data (:func:`_choose`)."""
    fixed = sorted(p.opts[0] for p in ctx.command.params if p.name not in RESUME_OVERRIDABLE and given(ctx, p.name))
    if fixed:
        raise UserError(f"{', '.join(fixed)}: cannot change a resumed run (its configuration is in its checkpoint); "
                        "only --epochs, --patience, --device, --dataset-path, --threads, --max-memory and --quiet "
                        "may be given")
    more = {name: o[name] for name in ("epochs", "patience") if given(ctx, name)}
    folder = expand_path(o["resume"])
    choice = (folder / CANDIDATES_DIR).is_dir() and not (folder / CHECKPOINT_NAME).exists()
    ckpt = first_checkpoint(folder) if choice else resolve_checkpoint_path(o["resume"])
    if not choice and o["out"] and Path(o["out"]).expanduser().resolve() != ckpt.parent.resolve():
        raise UserError("--out: a resumed run writes into its own folder; leave --out out")
    with contextlib.ExitStack() as stack:
        _hold(stack, folder if choice else ckpt.parent, "--resume", where)
        if choice and not ckpt.is_file():
            raise UserError(f"--resume {folder}: no candidate of this run saved an epoch (no {ckpt}); "
                            "nothing to resume: start a new run with another --out")
        model, info, _ = load_run(ckpt, o["device"], o["max_memory"], best=False)
        if choice:  # the candidates' configurations are the first one's (the recipe's)
            _choose(o, where, folder, *_data_of(info, o["dataset_path"]), model.config, info["train_config"], more)
        else:
            _train_on(model, info, more, o)


def _train_on(model, info: dict, more: dict, o, data=None) -> None:
    """Go on with the run of the checkpoint ``info`` (``model`` at its last weights): an unfinished run
    trains on; a finished one trains on when ``more`` (--epochs, --patience) gives it room, else gets its
    missing results written; one with its results has nothing to resume. The data and their spec are
    ``data``, or else loaded (:func:`_data_of`) once the state is checked."""
    ckpt, state = Path(info["path"]), info.get("state") or {}
    run_dir, epoch, best = ckpt.parent, state.get("epoch"), state.get("best_epoch")
    if info["train_config"] is None or not state:
        raise UserError(f"{ckpt}: the checkpoint holds no training state to resume")
    with user_values():
        cfg = TrainConfig.from_dict({**info["train_config"].to_dict(), **more})
    check_resume_state(model, cfg, info)
    results_only = state["finished"] and not more
    blocker = finished_run_blocker(state, cfg) if state["finished"] and more else None
    if blocker is not None:  # one line naming the option to raise
        raise UserError(f"--epochs {cfg.epochs}: the run of {ckpt} has already trained {epoch} epochs; give more than "
                        f"{epoch} to train it on" if blocker[0] == "epochs" else
                        f"--patience {cfg.patience}: the run of {ckpt} stopped early at epoch {epoch}, {epoch - best} "
                        f"epochs after its best epoch {best}; give --patience more than {epoch - best} (or 0) to "
                        "train it on")
    if results_only and info["results"] is not None:
        raise UserError(f"{ckpt}: this run finished at epoch {state['epoch']} and its results are written; "
                        f"nothing to resume (train it on with --epochs more than {state['epoch']}, "
                        "or start a new run with --out)")
    ds, spec = data or _data_of(info, o["dataset_path"])
    if results_only:
        if not o["quiet"]:
            say(f"the training of {ckpt} finished at epoch {state['epoch']}; writing its results")
        if spec != (info["dataset"] or {}):
            with _writes(run_dir):
                update_checkpoint_meta(ckpt, dataset=spec)
        history = {**info["history"], "best_epoch": state["best_epoch"], "best_valid_nll": state["best_valid_nll"]}
        seconds = float(sum(r["seconds"] for r in history["rows"]))
        _write_results(model, ds, cfg, run_dir, history, seconds, o["quiet"])
        return
    if not o["quiet"]:
        say(f"{'training on' if state['finished'] else 'resuming'} {ckpt} after epoch {state['epoch']} (best valid "
            f"NLL {state['best_valid_nll']:.4f} at epoch {state['best_epoch']})")
        for line in column_lines(model.config, ds.columns):
            say(line)
    _train_and_report(model, ds, cfg, run_dir, spec, o["quiet"], o["threads"], resume_state=info)


def _data_of(info: dict, dataset_path):
    """The training data of a checkpoint's run, and its data spec (with ``--dataset-path``: where they lie now)."""
    spec = dict(info["dataset"] or {})
    ds, _ = load_split(info, "train", dataset_path)
    if dataset_path:  # where the data lie now, for the checkpoints to come and later commands
        moved = str(expand_path(dataset_path).resolve())
        spec["path" if str(spec.get("spec")).lower() in PATH_NAMES else "spec"] = moved
    return ds, spec


def _smaller_steps(cfg: TrainConfig) -> str:
    """What to make smaller after a divergence: the learning rate, and the weight decay when
    there is one (a large one overflows ``grad + wd * p`` or overshoots, whatever the rate)."""
    return f"a smaller --lr (this one: {cfg.lr:g})" + (f" or --weight-decay (this one: {cfg.weight_decay:g})"
                                                        if cfg.weight_decay else "")


@contextlib.contextmanager
def _writes(run_dir: Path):
    """A write of the run in ``run_dir`` that fails (a full disk, ``ulimit -f``) becomes one line: the file,
    the OS error, what is kept."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or one_line(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            reason += " (free some space, or raise the file size limit)"
        root = _choosing_run(run_dir)  # a candidate, or the run choosing between them: resume that run
        kept = (f"the last checkpoint is kept in {run_dir / CHECKPOINT_NAME}: continue with  made-np train --resume "
                f"{root or run_dir}" if (run_dir / CHECKPOINT_NAME).is_file() else
                f"the candidates are kept in {root / CANDIDATES_DIR}: continue with  made-np train --resume {root}"
                if root is not None else "nothing was saved")
        raise UserError(f"cannot write {exc.filename or run_dir}: {reason}; {kept}") from None


def _train_and_report(model, ds, cfg, run_dir: Path, spec: dict, quiet: bool, threads: str = "auto",
                      resume_state=None):
    """Run :func:`fit` (under ``--threads``), then write the results (:func:`_write_results`)."""
    def progress(epoch: int, n_batches: int):  # a bar on a terminal
        return click.progressbar(length=n_batches, label=f"epoch {epoch:4d}", file=sys.stderr, show_eta=False,
                                 item_show_func=lambda loss: None if loss is None else f"train NLL {loss:.4f}")

    def on_epoch(row):
        if not quiet:
            mark = "*" if row["best"] else " "
            say(f"epoch {row['epoch']:4d}  train NLL {row['train_nll']:9.4f}  valid NLL {row['valid_nll']:9.4f} {mark} "
                f"{row['seconds']:7.2f} s  {row['threads']} thread{'s' if row['threads'] != 1 else ''}")

    t0 = time.perf_counter()
    with _writes(run_dir), user_values():
        try:
            history = fit(model, ds, cfg, out_dir=run_dir, callback=on_epoch, resume_state=resume_state,
                          progress=None if quiet or not sys.stderr.isatty() else progress, dataset_spec=spec, threads=threads,
                          resume_checked=True)  # by _resume, before it loaded the data
        except DivergenceError as exc:
            kept = (f"{run_dir / CHECKPOINT_NAME} keeps epoch {exc.saved_epoch}" if exc.saved_epoch
                    else "nothing was saved")
            raise Diverged(f"training diverged in epoch {exc.epoch}: the {exc.what} is {exc.value}; {kept}; "
                           f"start a new run with {_smaller_steps(cfg)}") from None
    seconds = time.perf_counter() - t0
    if not quiet:
        reason = {"patience": f"no better validation NLL for {cfg.patience} epochs",
                  "epochs": f"reached {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}",
                  "callback": "stopped"}[history["stop_reason"]]
        say(f"done in {seconds:.1f} s ({reason}); best valid NLL {history['best_valid_nll']:.4f} "
                   f"at epoch {history['best_epoch']}, weights restored")
    _write_results(model, ds, cfg, run_dir, history, seconds, quiet)


def _write_results(model, ds, cfg, run_dir: Path, history: dict, seconds: float, quiet: bool) -> None:
    """Evaluate the finished model on the test split, draw the figures and record the results.

    The evaluation runs with the libraries' default threads, as ``made-np evaluate``
    does, so that the two give identical numbers. The results go into the checkpoint
    last: there they mean that every output is written (an interrupted run without
    them gets them from ``--resume``).
    """
    ckpt = run_dir / CHECKPOINT_NAME
    with _writes(run_dir):
        res = evaluate_both(model, ds.test, cfg.eval_masks, cfg.eval_batch_size, context=ds.context_of("test"))
        bad = [r["nll"] for r in res.values() if r is not None and not math.isfinite(r["nll"])]
        if bad:  # NaN never reaches results.json
            raise Diverged(f"the test NLL of {ckpt} is {bad[0]}: its weights are not finite; no results written; "
                           f"start a new run with {_smaller_steps(cfg)}")
        for line in result_lines(res, "test"):
            say(line)
        meta = read_checkpoint_meta(ckpt)  # the run as saved: its configuration and its data's fingerprints
        results = {"split": "test", **res, "train_seconds": seconds,
                   **{k: history[k] for k in ("best_epoch", "best_valid_nll")},
                   **{k: meta[k] for k in ("made_np_version", "model", "train", "dataset")}}
        write_json(run_dir / RESULTS_NAME, results)
        from made_np import plots  # matplotlib: imported only when drawing

        plots.plot_loss_curves(history["rows"], run_dir / "loss.png", valid_masks=history.get("valid_masks", 1))
        n, c = figure_samples(ds), model.config
        # a conditional model: labels spread over the classes (a row per class), or the test contexts in turn
        y = (None if not c.context else balanced_labels(n, c.context) if c.context_encoding == "onehot"
             else ds.test_context[np.arange(n) % len(ds.test_context)])
        samples = to_host(sample(model, n, seed=cfg.seed, context=y))
        masks = model.eval_mask_indices()  # what sample() drew from: the test ensemble of a bank, else mask 0
        which = f"mask {masks[0]}" if len(masks) == 1 else f"mixture of masks 0..{masks[-1]}"
        given = ("" if y is None else ", labels spread over the classes" if c.context_encoding == "onehot"
                 else ", the test split's contexts")
        plots.plot_sample_grid(samples, ds.image_shape, run_dir / "samples.png", classes=ds.classes,
                               title=f"{n} samples, {which}{given}")
        update_checkpoint_meta(ckpt, results=results)
    if not quiet:
        say(f"wrote {ckpt.name}, metrics.csv, loss.png, samples.png, results.json in {run_dir}")
