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

from dataclasses import replace
from pathlib import Path

from .config import SMALL_DATA_MASKS, UNLIMITED, MADEConfig, TrainConfig, size_recipe
from .model import MADE
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


def fit_selected(dataset, model_options: dict | None = None, train_options: dict | None = None, *, xp=None,
                 out_dir=None, **fit_kwargs) -> tuple:
    """Train the recipe for ``dataset``, choosing between :data:`CANDIDATES` by validation on small data.

    The configurations are :meth:`MADEConfig.for_data` and :meth:`TrainConfig.for_data` of
    ``dataset`` with ``model_options`` and ``train_options`` on top. When :func:`selects` (a small
    training set of binary or categorical data, and none of :data:`CHOSEN_SETTINGS` nor a ``preset``
    given a value other than ``None``), each candidate trains with :func:`made_np.train.fit` and the
    one with the lowest validation NLL at its best weights under its test ensemble
    (:func:`validation_nll`) is kept; the test split is never read. Otherwise the one configured run trains, as ``fit`` would.
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
        A folder for the checkpoints: a candidate writes its run folder ``out_dir/candidates/<name>``,
        a single run ``out_dir`` itself.
    **fit_kwargs
        Passed to :func:`made_np.train.fit` (``threads``, ``callback``, ``verbose``, ...).

    Returns
    -------
    model : MADE
        The chosen candidate's model, at its best weights.
    history : dict
        Its history (:func:`made_np.train.fit`).
    table : list of dict
        One row per candidate trained (:func:`candidate_row`, with ``"chosen"``); a single row
        when nothing was chosen.

    Raises
    ------
    ValueError
        An invalid option (as :meth:`MADEConfig.for_data` and :meth:`TrainConfig.for_data` raise),
        and whatever :func:`made_np.train.fit` raises.
    """
    model_options, train_options = dict(model_options or {}), dict(train_options or {})
    mcfg = MADEConfig.for_data(dataset, **model_options)
    cfg = TrainConfig.for_data(dataset, **train_options)
    fixed = [k for k, v in {**model_options, **train_options}.items() if v is not None]
    runs = candidates(mcfg, cfg) if selects(dataset, fixed) else [("given", mcfg, cfg)]
    trained, table = [], []
    for name, m, c in runs:
        model = MADE(m, xp)
        folder = None if out_dir is None else Path(out_dir) / "candidates" / name if len(runs) > 1 else out_dir
        history = fit(model, dataset, c, out_dir=folder, **fit_kwargs)
        trained.append((model, history))
        table.append(candidate_row(name, m, c, history, validation_nll(model, dataset, c) if len(runs) > 1 else None))
    table = choose(table)
    model, history = next(t for t, row in zip(trained, table) if row["chosen"])
    return model, history, table
