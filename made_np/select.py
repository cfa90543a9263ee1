"""The recipe for small data chosen by validation: a bank of 16 masks or a fresh mask per minibatch.

On a small training set (:func:`made_np.config.size_recipe` ``"small"``) neither of the two
regularisers wins everywhere: a bank of :data:`SMALL_DATA_MASKS` order- and connectivity-agnostic
masks leads on binarized MNIST subsets, the digits and mushrooms, a fresh mask per minibatch on
the UCI DNA and NIPS-0-12 sets (docs/experiments.md, "The recipe for small data"). As the MADE
paper chose its number of masks per data set, the recipe trains both and keeps the one with the
lower validation NLL; the test split plays no part in the choice.

The NLLs compared are each candidate's at its best weights under the ensemble it is tested
with (``eval_masks``: its 16 masks for the bank, 1,000 for a fresh mask per minibatch), not
the validation figure of training (16 masks for both): a fresh-mask model's 16-mask figure
is 0.2-1.6 nats above its 1,000-mask one (NIPS-0-12: 277.06 against 275.49), and choosing by
it kept the bank there, 0.9 test nats worse.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from functools import partial
from pathlib import Path

from .backend import device_of
from .checkpoint import finished_run_blocker, load_checkpoint, update_checkpoint_meta
from .config import SMALL_DATA_MASKS, UNLIMITED, MADEConfig, TrainConfig, size_recipe
from .limits import memory_limit
from .model import MADE
from .runfolder import CHECKPOINT_NAME, METRICS_NAME, RESULTS_NAME, atomic_file, write_json
from .train import evaluate, fit

#: The candidates of the small-data recipe, in the order they train: name -> (model settings,
#: training settings) over the recipe's configuration. ``bank16`` is the recipe as it was (and
#: what a tie keeps); ``fresh`` a new order- and connectivity-agnostic mask every minibatch
#: (``--num-masks inf``) with the same Adam 2e-3 cosine schedule (docs/experiments.md: it beat
#: Adam 1e-2 constant on 5 of the 7 sets measured).
CANDIDATES = {
    "bank16": ({"num_masks": SMALL_DATA_MASKS}, {"optimizer": "adam", "lr": 2e-3, "lr_schedule": "cosine"}),
    "fresh": ({"num_masks": UNLIMITED}, {"optimizer": "adam", "lr": 2e-3, "lr_schedule": "cosine"}),
}
#: The settings the candidates differ in: a caller who fixes one of them trains that one run.
CHOSEN_SETTINGS = ("num_masks", "lr", "lr_schedule", "optimizer")
#: The folder of a run's candidates, each a run folder of its own: ``out_dir/candidates/<name>``.
CANDIDATES_DIR = "candidates"
#: What a run's output says while it chooses.
CHOOSING = (f"small data: choosing between a bank of {SMALL_DATA_MASKS} and a fresh mask per minibatch "
            "by validation NLL")


def selects(dataset, fixed=()) -> bool:
    """Whether the recipe chooses between :data:`CANDIDATES` for ``dataset``: a small training set
    (:func:`~made_np.config.size_recipe`) of binary or categorical data (``dataset.classes >= 2``;
    real-valued data keep their own recipe), with none of :data:`CHOSEN_SETTINGS` nor a ``preset`` in
    ``fixed`` (the names of the settings the caller gave)."""
    return (size_recipe(dataset) == "small" and int(getattr(dataset, "classes", 0) or 0) >= 2
            and not set(fixed) & {*CHOSEN_SETTINGS, "preset"})


def candidates(model_config: MADEConfig, train_config: TrainConfig) -> list:
    """``[(name, MADEConfig, TrainConfig), ...]``: each of :data:`CANDIDATES` over the recipe's
    configurations ``model_config`` and ``train_config`` (everything else, the seeds included, is theirs)."""
    return [(name, replace(model_config, **m), replace(train_config, **t)) for name, (m, t) in CANDIDATES.items()]


def validation_nll(model: MADE, dataset, train_config: TrainConfig) -> dict:
    """The NLL of ``dataset.valid`` (shape (N, D)) under the ensemble ``model`` is tested with
    (``train_config.eval_masks``; :func:`made_np.train.evaluate`): the figure the choice compares.
    Returns :func:`~made_np.train.evaluate`'s dict (``nll`` in nats per example, ``masks``)."""
    return evaluate(model, dataset.valid, eval_masks=train_config.eval_masks, batch_size=train_config.eval_batch_size,
                    context=getattr(dataset, "valid_context", None))


def candidate_row(name: str, model_config: MADEConfig, train_config: TrainConfig, history: dict,
                  valid: dict | None = None) -> dict:
    """One row of the candidates' table: name, masks (0: a fresh one per minibatch), optimizer, lr,
    schedule, epochs run, best epoch, best validation NLL of training (nats; the ensemble of the
    validation masks for a bank), and with ``valid`` (:func:`validation_nll`) ``valid_nll`` and
    ``valid_masks``, the figure compared."""
    row = {"name": name, "num_masks": model_config.num_masks, "optimizer": train_config.optimizer,
           "lr": train_config.lr, "lr_schedule": train_config.lr_schedule, "epochs_run": len(history["rows"]),
           "best_epoch": history["best_epoch"], "best_valid_nll": history["best_valid_nll"]}
    return row if valid is None else {**row, "valid_nll": valid["nll"], "valid_masks": valid["masks"]}


def choose(table: list) -> list:
    """``table`` with ``"chosen"`` set on the row of the lowest ``valid_nll`` (``best_valid_nll`` for a
    row without one; the first of a tie)."""
    figure = [row["valid_nll"] if "valid_nll" in row else row["best_valid_nll"] for row in table]
    best = min(range(len(table)), key=lambda i: (figure[i], i))
    return [{**row, "chosen": i == best} for i, row in enumerate(table)]


def table_lines(table: list) -> list:
    """The candidates' table as lines of text for a run's output."""
    lines = [f"  {'candidate':10s} {'masks':>6s}  {'optimizer':18s} {'epochs':>6s} {'best epoch':>10s} "
             f"{'valid NLL (masks)':>20s}"]
    for r in table:
        masks = "fresh" if r["num_masks"] == 0 else str(r["num_masks"])
        opt = f"{r['optimizer']} {r['lr']:g} {r['lr_schedule']}"
        valid = f"{r.get('valid_nll', r['best_valid_nll']):.4f} ({r.get('valid_masks', '-')})"
        lines.append(f"{'*' if r['chosen'] else ' '} {r['name']:10s} {masks:>6s}  {opt:18s} {r['epochs_run']:6d} "
                     f"{r['best_epoch']:10d} {valid:>20s}")
    return lines


def first_checkpoint(out_dir) -> Path:
    """The checkpoint of the first of :data:`CANDIDATES` in the run folder ``out_dir``: there once a
    choice has saved an epoch; its configurations are the recipe's."""
    return Path(out_dir) / CANDIDATES_DIR / next(iter(CANDIDATES)) / CHECKPOINT_NAME


def fit_choice(dataset, model_config: MADEConfig, train_config: TrainConfig, out_dir=None, *, xp=None,
               more: dict | None = None, train=None, say=None, **fit_kwargs) -> tuple:
    """Train each of :data:`CANDIDATES` over ``model_config`` and ``train_config`` and keep the one with
    the lower validation NLL (nats per example) at its best weights under its test ensemble
    (:func:`validation_nll`).

    With ``out_dir`` each candidate is a run folder of its own, ``out_dir/candidates/<name>``
    (:data:`CANDIDATES_DIR`), and the choice goes on where it stopped: a candidate saved unfinished
    trains on, a finished one trains on when ``more`` gives it room
    (:func:`~made_np.checkpoint.finished_run_blocker`) and is kept as trained otherwise; then the
    candidates are compared as their checkpoints hold them and ``out_dir`` gets the chosen one's
    checkpoint, ``metrics.csv`` and figures, its ``results`` (in the checkpoint and ``results.json``)
    extended by ``chosen`` and ``candidates`` (the table). The test split is never read.

    Parameters
    ----------
    dataset : made_np.data.Dataset
        ``train`` and ``valid`` arrays of shape (N, D) (the codes of the classes).
    model_config, train_config : MADEConfig, TrainConfig
        The recipe's configurations (:meth:`MADEConfig.for_data`; of an interrupted choice, its
        first candidate's, :func:`first_checkpoint`); the candidates differ in :data:`CHOSEN_SETTINGS`.
    out_dir : str or os.PathLike, optional
        The run folder; without it the candidates train in memory.
    xp : module, optional
        The array module (:func:`made_np.backend.get_xp`) of the new models and of the checkpoints read.
    more : dict, optional
        ``epochs`` and ``patience`` over the configurations (those of the saved candidates included).
    train : callable, optional
        Called as :func:`made_np.train.fit` is, ``train(model, dataset, cfg, out_dir=folder,
        resume_state=info)``, for each candidate to train: ``model`` new (``info`` None) or loaded at its
        last weights (``info`` of :func:`~made_np.checkpoint.load_checkpoint`). ``made-np train`` writes
        the candidate's results too, and a finished candidate without them comes back to it. Default:
        ``fit`` with ``fit_kwargs``.
    say : callable, optional
        ``say(line)`` for what the choice does (:data:`CHOOSING`, a candidate kept as trained).
    **fit_kwargs
        Passed to :func:`made_np.train.fit` (``threads``, ``callback``, ``verbose``, ...).

    Returns
    -------
    model : MADE
        The chosen candidate's model, at its best weights.
    history : dict
        Its history (:func:`made_np.train.fit`).
    table : list of dict
        One row per candidate (:func:`candidate_row`, with ``"chosen"``).

    Raises
    ------
    ValueError
        Invalid ``more``, and whatever :func:`made_np.train.fit` and
        :func:`~made_np.checkpoint.load_checkpoint` raise.
    """
    say, more = say or (lambda line: None), dict(more or {})
    say(CHOOSING)
    device, limit = None if xp is None else device_of(xp), memory_limit()
    train_config = TrainConfig.from_dict({**train_config.to_dict(), **more}) if more else train_config
    trained, table = {}, []
    for name, m, c in candidates(model_config, train_config):
        folder = None if out_dir is None else Path(out_dir) / CANDIDATES_DIR / name
        saved = folder is not None and (folder / CHECKPOINT_NAME).is_file()
        model, info = load_checkpoint(folder, device, memory_limit=limit) if saved else (MADE(m, xp), None)
        c = TrainConfig.from_dict({**(info["train_config"] or c).to_dict(), **more}) if saved else c  # its own
        state = (info or {}).get("state") or {}
        blocker = finished_run_blocker(state, c) if state.get("finished") else None
        if blocker is not None and (info["results"] is not None or train is None):  # nothing more to train
            say(f"candidate {name}: finished at epoch {state['epoch']}; kept as trained ({blocker[1]})")
        else:
            history = (train or partial(fit, **fit_kwargs))(model, dataset, c, out_dir=folder, resume_state=info)
        if folder is not None:  # compared as saved, at its best weights
            model, info = load_checkpoint(folder, device, best=True, memory_limit=limit)
            c, state = info["train_config"], info["state"]
            history = {**info["history"], "best_epoch": state["best_epoch"], "best_valid_nll": state["best_valid_nll"]}
        trained[name] = (model, history, info)
        table.append(candidate_row(name, model.config, c, history, validation_nll(model, dataset, c)))
    table = choose(table)
    chosen = next(row["name"] for row in table if row["chosen"])
    if out_dir is not None:  # each file atomically, the checkpoint last: its presence means the choice is made
        out, results = Path(out_dir), {**(trained[chosen][2]["results"] or {}), "chosen": chosen, "candidates": table}
        for name in (METRICS_NAME, "loss.png", "samples.png", RESULTS_NAME, CHECKPOINT_NAME):
            if name == RESULTS_NAME:
                write_json(out / name, results)
            elif (out / CANDIDATES_DIR / chosen / name).is_file():  # the files its run has
                with open(out / CANDIDATES_DIR / chosen / name, "rb") as src, atomic_file(out / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        update_checkpoint_meta(out / CHECKPOINT_NAME, results=results)
    return trained[chosen][:2] + (table,)


def fit_selected(dataset, model_options: dict | None = None, train_options: dict | None = None, *, xp=None,
                 out_dir=None, **fit_kwargs) -> tuple:
    """Train the recipe for ``dataset``, choosing between :data:`CANDIDATES` by validation on small data.

    The configurations are :meth:`MADEConfig.for_data` and :meth:`TrainConfig.for_data` of
    ``dataset`` with ``model_options`` and ``train_options`` on top. When :func:`selects` (a small
    training set of binary or categorical data, and none of :data:`CHOSEN_SETTINGS` nor a ``preset``
    given a value other than ``None``), :func:`fit_choice` trains each candidate with
    :func:`made_np.train.fit` and keeps the one with the lowest validation NLL at its best weights
    under its test ensemble (:func:`validation_nll`); the test split is never read. Otherwise the one
    configured run trains, as ``fit`` would.
    :class:`made_np.MADEDensity` does not choose: it trains the configuration it is given.

    Parameters
    ----------
    dataset : made_np.data.Dataset
        ``train`` and ``valid`` arrays of shape (N, D) (the codes of the classes), ``classes``, ``name``.
    model_options, train_options : dict, optional
        Overrides of the recipe (``None`` values are left to it), e.g. ``{"hidden": (100,)}``,
        ``{"epochs": 50}``; giving ``num_masks``, ``lr``, ``lr_schedule`` or ``optimizer`` trains one run.
    xp : module, optional
        The array module (:func:`made_np.backend.get_xp`); NumPy by default.
    out_dir : str or os.PathLike, optional
        The run folder: a candidate writes its own, ``out_dir/candidates/<name>``, and ``out_dir`` gets
        the chosen one's checkpoint and metrics (:func:`fit_choice`; a call on an interrupted choice goes
        on with it); a single run writes ``out_dir`` itself.
    **fit_kwargs
        Passed to :func:`made_np.train.fit` (``threads``, ``callback``, ``verbose``, ...).

    Returns
    -------
    model, history, table
        As :func:`fit_choice` returns them: the chosen model at its best weights, its history, the
        candidates' table; a single row (``"given"``) when nothing was chosen.

    Raises
    ------
    ValueError
        An invalid option (as :meth:`MADEConfig.for_data` and :meth:`TrainConfig.for_data` raise),
        and whatever :func:`made_np.train.fit` raises.
    """
    model_options, train_options = dict(model_options or {}), dict(train_options or {})
    mcfg, cfg = MADEConfig.for_data(dataset, **model_options), TrainConfig.for_data(dataset, **train_options)
    fixed = [k for k, v in {**model_options, **train_options}.items() if v is not None]
    if selects(dataset, fixed):
        return fit_choice(dataset, mcfg, cfg, out_dir, xp=xp, **fit_kwargs)
    model = MADE(mcfg, xp)
    history = fit(model, dataset, cfg, out_dir=out_dir, **fit_kwargs)
    return model, history, choose([candidate_row("given", mcfg, cfg, history)])
