"""Training loop and evaluation of MADE.

:func:`fit` trains a :class:`~made_np.model.MADE` by minibatch gradient descent on
the NLL in nats (paper Sec. 6.1), cycling through the model's bank of masks
(paper Algorithm 1: one mask per update), with early stopping on the validation
NLL (the paper's look-ahead of 30 epochs) and a checkpoint after every epoch
(:mod:`made_np.checkpoint`) so that an interrupted run can be resumed exactly. A
non-finite loss stops the run with :class:`DivergenceError`, the last good checkpoint
kept; the state of a run to resume is checked first (:func:`check_resume_state`).

:func:`evaluate` reports the mean NLL with its standard error, for one mask or for
the test-time ensemble over masks (paper Sec. 4.2).
"""
from __future__ import annotations

import contextlib
import functools
import math
import time
import warnings
from pathlib import Path

import numpy as np

from . import backend
from .checkpoint import check_info, check_resume_state, finished_run_blocker, save_checkpoint
from .checks import (check_bool, check_choice, check_context, check_data_or_missing, check_dataset, check_fit_arguments,
                     check_int, check_mask_index, check_model, check_real_columns, check_unmasked, observed_entries)
from .config import ENGINES, MAX_EVAL_MASKS, TrainConfig
from .data import check_same_data, class_counts, split_fingerprints, split_sizes
from .model import MADE
from .optim import make_optimizer
from .registry import speed_form
from .runfolder import CHECKPOINT_NAME, METRICS_NAME, RunFolderError, interrupts_deferred, run_lock, write_metrics

DEFAULT_VALID_MASKS = 16


def mask_for_step(step: int, num_masks: int, resample_every: int) -> int:
    """Mask index of minibatch ``step`` (0-based, counted over the whole run).

    ``0`` for a single mask; ``(step // resample_every) % K`` for a bank of ``K >= 2``;
    ``step // resample_every`` (a fresh mask each time) when the bank has no limit.
    """
    index = step // resample_every
    return index % num_masks if num_masks else index


class DivergenceError(ValueError):
    """Training produced a non-finite training loss, validation NLL, parameter or optimiser state.

    The run stops at the end of that epoch without saving it: the checkpoint on disk
    stays the one of the epoch before, and the model gets its best weights back.

    Attributes
    ----------
    epoch : int
        The epoch whose loss is not finite.
    what : str
        ``"training loss"``, ``"validation NLL"``, ``"parameter <name>"`` or ``"optimizer
        state <name>"`` (a loss can stay finite while Adam's second moment overflows).
    value : float
        The non-finite value.
    lr : float
        The learning rate of that epoch.
    saved_epoch : int or None
        The epoch of the checkpoint kept in the output folder (None: none was written).
    """

    def __init__(self, epoch: int, what: str, value: float, lr: float, saved_epoch=None):
        self.epoch, self.what, self.value, self.lr, self.saved_epoch = epoch, what, value, lr, saved_epoch
        kept = (f"the checkpoint of epoch {saved_epoch} is kept" if saved_epoch else "no checkpoint was written")
        super().__init__(f"training diverged in epoch {epoch}: the {what} is {value} (learning rate {lr:g}); "
                         f"{kept}; try a smaller learning rate")


# =========================================================================== evaluation


def evaluate(model: MADE, x, *, ensemble: bool | None = None, eval_masks: int | None = None,
             batch_size: int = 1000, mask_index: int = 0, context=None) -> dict:
    """Mean NLL of data under one mask or under the ensemble of masks.

    Parameters
    ----------
    model : MADE
    x : array, shape (N, D), uint8 or int, float64 for a real head (host or device)
        Data; moved to the model's device once. Float rows may hold missing entries (NaN)
        for an order-agnostic model: such a row scores ``-log p(x_o)``, the NLL of its
        observed entries under the ensemble of its observed-first masks, as :func:`fit`
        validates it (docs/math.md Sec. 12).
    ensemble : bool or None
        Average the masks' probabilities (paper Sec. 4.2):
        ``-log((1/K) sum_k p_k(x))``. ``None``: ensemble when the bank has more
        than one mask. Ignored for a single-mask model.
    eval_masks : int or None
        Ensemble size; ``None``: the whole bank, at most 1000 masks.
    batch_size : int
        Rows per forward pass.
    mask_index : int, default 0
        The mask used when not ensembling.
    context : array, optional
        The rows' context for a conditional model (:meth:`MADE.encode_context`): the NLL is
        then ``-log p(x | y)``.

    Returns
    -------
    dict
        ``nll`` (mean NLL, nats per example), ``stderr`` (its standard error,
        ``std / sqrt(N)`` with ``ddof=1``; None for one example, where it is undefined: ``null`` in
        JSON), ``nll_per_dim`` and ``stderr_per_dim`` (divided by D; with missing entries, by the
        observed entries per row: nats per observed entry), ``n`` (N), ``D``, ``masks`` (number of masks used),
        ``ensemble`` (bool), ``mask_index`` (the single mask, or None) and ``missing_rows`` (rows
        scored on their observed entries only).

    Raises
    ------
    ValueError
        ``x`` that is not data of the model (:func:`made_np.checks.check_data_or_missing`: missing
        entries for a single-ordering model, a row with every entry missing) or has no rows,
        ``ensemble`` not a bool or None, ``eval_masks`` outside 1..100,000, ``batch_size < 1``,
        a ``mask_index`` outside the bank, or a context that does not fit.
    """
    check_model(model)
    if ensemble is not None and not isinstance(ensemble, (bool, np.bool_)):
        raise ValueError(f"ensemble must be True, False or None, got {ensemble!r}")
    eval_masks = None if eval_masks is None else check_int("eval_masks", eval_masks, 1, MAX_EVAL_MASKS)
    batch_size = check_int("batch_size", batch_size, 1)
    single = check_mask_index(mask_index, model.config.num_masks)  # checked even when the ensemble is scored
    check_unmasked(x)  # before to_device drops the mask
    x, observed = check_data_or_missing(model, backend.to_device(x, model.xp, device=model.device))
    if x.shape[0] == 0:
        raise ValueError("evaluate: x has no rows (a mean NLL needs at least one example)")
    y = check_context(model, context, x.shape[0])
    ensemble = model.config.num_masks != 1 and (ensemble is None or bool(ensemble))  # one mask: nothing to ensemble
    indices = model.eval_mask_indices(eval_masks) if ensemble else [single]
    # rows with missing entries score their observed entries' NLL, as fit validates them
    mean, stderr = mean_and_stderr(backend.to_host(_rows_nll(model, x, indices, batch_size, y, observed)))
    D = model.config.D
    per_row = D if observed is None else int(observed.sum()) / x.shape[0]  # observed entries per row
    return {
        "nll": mean, "stderr": stderr, "nll_per_dim": mean / per_row,
        "stderr_per_dim": None if stderr is None else stderr / per_row,
        "n": int(x.shape[0]), "D": D, "masks": len(indices), "ensemble": ensemble,
        "mask_index": None if ensemble else single,
        "missing_rows": 0 if observed is None else int((~observed).any(axis=1).sum()),
    }


def mean_and_stderr(values) -> tuple:
    """The mean of per-example values (host array, shape (N,)) and its standard error
    ``std / sqrt(N)`` (``ddof=1``), as floats; the standard error of one example is undefined: None
    (``null`` in JSON; printed ``± n/a``), not 0."""
    values = np.asarray(values, dtype=np.float64)
    n = int(values.size)
    return float(values.mean()), (float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else None)


def _rows_nll(model: MADE, x, indices: list, batch_size: int, context=None, observed=None):
    """Per-row NLL (N,) in nats of device data under the ensemble of ``indices`` (one index: that mask's own NLL);
    rows with missing entries (host ``observed``) score ``-log p(x_o)`` of the ensemble of their observed-first
    masks (docs/math.md Sec. 12)."""
    xp = model.xp
    partial = None if observed is None else ~observed.all(axis=1)
    if partial is None or not partial.any():
        return model._ensemble_nll(x, indices, batch_size, context)  # one mask: log K = 0, the mask's own NLL
    if not partial.all():  # the complete rows by the ordinary (faster) passes, the others by their own masks
        rows = [np.flatnonzero(~partial), np.flatnonzero(partial)]
        take = [(xp.asarray(r, device=model.device), r) for r in rows]
        parts = [_rows_nll(model, xp.take(x, i, axis=0), indices, batch_size,
                           None if context is None else xp.take(context, i, axis=0), observed[r]) for i, r in take]
        back = xp.asarray(np.argsort(np.concatenate(rows)), device=model.device)
        return xp.take(xp.concat(parts), back, axis=0)
    return math.log(len(indices)) - functools.reduce(xp.logaddexp, [xp.concat([
        -model._observed_nll(x[s, ...], observed[s], k, None if context is None else context[s, ...])
        for s in backend.row_blocks(x.shape[0], batch_size)]) for k in indices])


# =========================================================================== engines


class ReferenceEngine:
    """Trains the MADE itself with the textbook optimisers of :mod:`made_np.optim`.

    An engine is what :func:`fit` steps: ``params``/``grads`` (in its own form),
    :meth:`loss_and_grad`, the data as it sees it (:meth:`prepare`), an
    :meth:`epoch` context, :meth:`sync` (its weights back into the MADE) and the
    conversion of per-parameter arrays to and from the MADE's layout
    (:meth:`to_natural`, :meth:`to_compute`). :class:`made_np.fast.engine.FastEngine`
    is the other one.

    Parameters
    ----------
    model : MADE
    """

    def __init__(self, model: MADE):
        self.model = model

    params = property(lambda self: self.model.params)
    grads = property(lambda self: self.model.grads)

    def make_optimizer(self, cfg: TrainConfig):
        """The optimiser of ``cfg`` over :attr:`params`."""
        return make_optimizer(cfg.optimizer, self.params, self.model.xp, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def prepare(self, x):
        """Training data (N, D) as :meth:`loss_and_grad` takes it."""
        return x

    def loss_and_grad(self, xb, mask=0, context=None, observed=None):
        """Mean NLL (nats) of a minibatch under mask index ``mask`` (with its encoded ``context``,
        for a conditional model); gradients into :attr:`grads`. ``observed`` (batch, D), host bool:
        rows with missing entries, each scored ``-log p_k(x_o)`` (:meth:`MADE.loss_and_grad`)."""
        return self.model.loss_and_grad(xb, mask, context=context, observed=observed)

    def epoch(self):
        """A context around the steps of one epoch."""
        return contextlib.nullcontext()

    def sync(self) -> None:
        """Copy the weights into the MADE (nothing to do: they are its own)."""

    def to_natural(self, arrays) -> list:
        """Per-parameter arrays in the MADE's layout."""
        return list(arrays)

    def to_compute(self, arrays) -> list:
        """Per-parameter arrays in this engine's layout."""
        return list(arrays)


class ReferenceEngineWarning(UserWarning):
    """``engine="fast"`` asked of a model on a namespace other than NumPy's or CuPy's: it trains with
    the reference engine (:func:`make_engine`)."""


def make_engine(model: MADE, name: str = "fast"):
    """The engine ``name`` (``"reference"`` or ``"fast"``) for ``model``.

    This is the one seam between training and :mod:`made_np.fast`, whose speed forms run on
    NumPy and CuPy: on any other array namespace ``"fast"`` gives the reference engine, with a
    :class:`ReferenceEngineWarning` that says so.

    Raises
    ------
    ValueError
        Unknown name.
    """
    if check_choice("engine", name, ENGINES) == "fast" and backend.native(model.xp) is None:
        warnings.warn(f"the fast engine runs on NumPy and CuPy: training on {backend.device_of(model.xp)} "
                      "with the reference engine", ReferenceEngineWarning, stacklevel=2)
        name = "reference"
    return ReferenceEngine(model) if name == "reference" else speed_form("engine")(model)


# =========================================================================== training


def fit(model: MADE, dataset, cfg: TrainConfig | None = None, *, out_dir=None, callback=None,
        resume_state=None, progress=None, dataset_spec: dict | None = None, threads="auto",
        verbose: bool = False, resume_checked: bool = False) -> dict:
    """Train ``model`` on ``dataset.train``, early-stopping on ``dataset.valid``.

    Every epoch: a seeded shuffle (``host_rng(cfg.seed, epoch)``), minibatches of
    ``cfg.batch_size``, one optimiser step each, the mask changed every
    ``cfg.resample_every`` minibatches (:func:`mask_for_step`); then the
    validation NLL (single mask when ``num_masks == 1``, else the ensemble of
    :attr:`TrainConfig.valid_masks`), best-weights tracking, and, with ``out_dir``,
    the checkpoint ``model.npz`` and ``metrics.csv``. At the end the best weights
    are restored into ``model`` (and saved as the final checkpoint).

    The steps run on the engine ``cfg.engine`` (:func:`make_engine`): ``reference``
    steps the MADE with the textbook optimisers; ``fast`` (the default) trains a
    single-mask model on the CPU in its block-sparse form and uses the fused head
    and in-place optimisers (:mod:`made_np.fast`). Either way ``model`` holds the
    weights at the end of every epoch, so the validation, the checkpoints, the
    callback and the result see the usual MADE.

    Parameters
    ----------
    model : MADE
        Trained in place.
    dataset : made_np.data.Dataset
        Anything with ``train`` and ``valid`` arrays of shape (N, D) (and ``name``); for a
        conditional model (``config.context > 0``) also ``train_context`` and
        ``valid_context``, whose rows minibatches gather with the data's.
    cfg : TrainConfig, optional
        Default ``TrainConfig()``; defaults it leaves open come from the recipe
        (:meth:`TrainConfig.resolved`), as for ``made-np train``. A new run (no
        ``resume_state``) with ``cfg.output_bias == "marginals"`` (the default) first
        sets the output biases to the training data's marginals when they are all 0, as a
        new MADE's are (:func:`start_at_marginals`).
    out_dir : str or os.PathLike, optional
        Folder for ``model.npz`` and ``metrics.csv`` (created), held as its one writer
        while training (:func:`made_np.checkpoint.run_lock`).
    callback : callable, optional
        ``callback(row)`` after each epoch (after the checkpoint) with
        ``row = {"epoch", "train_nll", "valid_nll", "seconds", "train_seconds", "valid_seconds", "lr",
        "threads", "best"}`` (seconds of the whole epoch, of its steps, of its validation; the CPU
        threads most of its steps ran on);
        returning True stops training.
    resume_state : dict, optional
        The ``info`` of :func:`made_np.checkpoint.load_checkpoint` for a model loaded
        from an unfinished checkpoint: training continues after its epoch with its
        optimiser state, best weights, history and counters, and gives the same
        result as an uninterrupted run. A finished run continues when ``cfg`` gives
        it more epochs (and a patience that does not stop it at once, see
        :func:`finished_run_blocker`), from its saved (best) weights and last
        optimiser state. ``cfg`` may change ``epochs``, ``patience`` and ``lr`` only: the batch size
        and the other facts of :data:`made_np.checkpoint.RESUME_FIXED` are the run's. The state is
        checked first (:func:`check_resume_state`), unless ``resume_checked``.
    progress : callable, optional
        ``progress(epoch, n_batches)`` returning a context manager with
        ``update(n_steps, current_item)`` (e.g. :func:`click.progressbar`);
        ``current_item`` is the running mean training NLL of the epoch.
    dataset_spec : dict, optional
        How to reload the data (stored in the checkpoint), e.g.
        ``{"spec": "digits", "path": None, "seed": 0}``.
    threads : int or "auto"
        CPU threads while training, the policy of ``made-np train --threads``: a count, or
        ``"auto"``: each step on 1 or on all usable cores, whichever its steps measure faster,
        measured again when the step time drifts (:class:`made_np.fast.threads.ThreadChooser`).
        The numbers of the run are the same with ``"auto"`` as with 1.
    verbose : bool, default False
        Print one line per epoch (epoch, training and validation NLL in nats, seconds), as
        scikit-learn's estimators do with ``verbose``.
    resume_checked : bool, default False
        The caller has checked ``resume_state`` with :func:`check_resume_state` for this model
        and ``cfg`` (``made-np train --resume`` does, before it loads the data).

    Returns
    -------
    dict
        The history: ``rows`` (one dict per epoch: epoch, train_nll (the epoch's
        mean NLL per example, nats; docs/math.md Sec. 12), valid_nll (nats), seconds, lr,
        best), ``best_epoch``, ``best_valid_nll``, ``stop_reason``
        (``"patience"``, ``"epochs"`` or ``"callback"``), ``base_lr``,
        ``valid_masks`` (size of the validation ensemble).

    Raises
    ------
    ValueError
        Data whose width is not the model's D, or a finished ``resume_state`` that
        ``cfg`` does not extend.
    made_np.checkpoint.CheckpointError
        A ``resume_state`` with an invalid entry (see :func:`check_resume_state`).
    made_np.checkpoint.RunLockedError, made_np.checkpoint.RunFolderError
        Another run writes to ``out_dir``, or it cannot be created or written.
    DivergenceError
        A non-finite training loss, validation NLL, parameter or optimiser state (checked once per
        epoch).
    OSError
        A checkpoint that cannot be written (a full disk); the previous one is intact.
    """
    from .fast.threads import thread_policy

    check_fit_arguments(model, cfg, out_dir, callback, progress, dataset_spec)
    verbose, resume_checked = check_bool("verbose", verbose), check_bool("resume_checked", resume_checked)
    if resume_state is not None:  # before the folder check reads it
        check_info(resume_state)
    lock = run_lock(out_dir) if out_dir is not None else contextlib.nullcontext()
    with lock:  # the folder first (held, or refused in one line), then the data
        _check_run_folder(out_dir, resume_state)
        contexts = check_dataset(model, dataset)
        cfg = (cfg or TrainConfig()).resolved(dataset)
        if resume_state is not None and not resume_checked:
            check_resume_state(model, cfg, resume_state)
        with thread_policy(threads) as n:
            run = _Run(model, dataset, contexts, cfg, out_dir, dataset_spec, resume_state, n)
            return run.train(callback, progress, verbose)


def start_at_marginals(model: MADE, x, observed=None) -> bool:
    """Set the output biases ``c`` to the logits of the training data's smoothed marginals,
    unless some are not 0 (a model trained or set already): the network then starts from
    the independent model of each variable's class frequencies plus its small random
    hidden and direct terms, instead of from uniform conditionals (docs/math.md Sec. 11).

    Parameters
    ----------
    model : MADE
        Changed in place: the bias of its output layer, shape (D * logits per variable,).
    x : array, shape (N, D), integers in ``[0, classes)`` (host or device)
        Training data, counted with :func:`made_np.data.class_counts`.
    observed : host array of bool, shape (N, D), optional
        Where ``x`` is observed; the missing entries (0 in ``x``) are not counted.

    Returns
    -------
    bool
        Whether the biases were set (False when they were not all 0).
    """
    c = model.layers[-1].b
    if bool(model.xp.any(c != 0)):
        return False
    if model.head.real:  # a mixed head's counts of its discrete columns' levels
        counts = model.head.marginal_counts(model._on_device(x, "float64"), observed)
    else:
        counts = class_counts(x, model.config.classes)
        if observed is not None:
            counts[:, 0] -= (~observed).sum(axis=0)
    logits = model.head.marginal_logits(model._on_device(counts))
    c[...] = model.xp.astype(logits, c.dtype)
    return True


def start_standardised(model: MADE, x) -> bool:
    """Set a real-head model's standardisation (:meth:`MADE.set_standardisation`) to the mean and
    standard deviation of each column of the training data ``x`` (N, D), unless one is set already
    (a model trained or set before). Discrete heads keep the identity, and so do the discrete
    columns of a mixed head (docs/math.md Sec. 13).

    Returns
    -------
    bool
        Whether it was set.
    """
    if not model.head.real or model.standardised:
        return False
    model.set_standardisation(*check_real_columns(model.xp, model._on_device(x, "float64"),
                                                  skip=model.head.discrete_columns))
    return True


def _check_run_folder(out_dir, resume_state) -> None:
    """Inside the folder's lock: a folder holding a run's checkpoint is written only by the resume
    of that very run."""
    if out_dir is None:
        return
    existing = Path(out_dir).expanduser() / CHECKPOINT_NAME
    if not existing.exists():
        return
    resumed = (resume_state or {}).get("path")
    if resumed is None or Path(resumed).expanduser().resolve() != existing.resolve():
        raise RunFolderError(f"{out_dir} already holds a run ({CHECKPOINT_NAME}): resume it with "
                             f"resume_state=load_checkpoint({str(out_dir)!r})[1], or give another out_dir")


class _Run:
    """The state of one training run: engine, optimiser, data, counters, best weights."""

    def __init__(self, model, dataset, contexts, cfg, out_dir, dataset_spec, resume_state, threads: int):
        from .fast.threads import chooser_for

        xp = model.xp
        self.model, self.cfg, self.xp = model, cfg, xp
        self.c_train, self.c_valid = contexts  # a conditional model's, encoded once: rows gathered with the data's
        # the validation ensemble (TrainConfig.valid_masks; [0] for a single mask, at most the bank)
        self.v_indices = model.eval_mask_indices(cfg.valid_masks or DEFAULT_VALID_MASKS)
        self.spec = dict(dataset_spec) if dataset_spec else _default_spec(dataset)
        fingerprints = split_fingerprints(dataset)
        if resume_state is not None:  # the data it was trained on, not a file changed since
            check_same_data(resume_state.get("dataset"), dataset, "the checkpoint", fingerprints=fingerprints)
        self.spec["sha256"] = fingerprints
        contexts = split_fingerprints(dataset, context=True)
        if contexts:
            self.spec["context_sha256"] = contexts
        # rows with missing entries (NaN; checked by check_dataset): their observed masks, on the host
        self.o_train, self.o_valid = observed_entries(dataset.train), observed_entries(dataset.valid)
        x_train = _values(model, dataset.train)
        if resume_state is None:  # every check passed: the model may change
            start_standardised(model, dataset.train)
            if cfg.output_bias == "marginals":
                start_at_marginals(model, x_train, self.o_train)
        # missing entries train through per-row masks, a reference form only (docs/math.md Sec. 12)
        self.engine = make_engine(model, cfg.engine if self.o_train is None else "reference")
        self.opt = self.engine.make_optimizer(cfg)
        # each step's CPU threads: ``threads`` (0: auto, measured when the engine can split its work)
        self.chooser = chooser_for(threads, self._use_threads,
                                   backend.native(xp) is np and hasattr(self.engine, "set_threads"))
        self.x_train = self.engine.prepare(backend.to_device(x_train, xp, device=model.device))
        self.x_valid = backend.to_device(_values(model, dataset.valid), xp, device=model.device)
        self.n_train = int(self.x_train.shape[0])
        self.n_batches = -(-self.n_train // cfg.batch_size)
        self.base_lr = self.opt.lr
        self.history = {"rows": [], "best_epoch": 0, "best_valid_nll": math.inf, "stop_reason": None,
                        "base_lr": self.base_lr, "valid_masks": len(self.v_indices)}
        self.state = {"epoch": 0, "step": 0, "best_epoch": 0, "best_valid_nll": math.inf, "finished": False}
        self.best = None
        if resume_state is not None:
            self._resume(resume_state)
        self.out = Path(out_dir).expanduser() if out_dir is not None else None  # created by run_lock

    def _resume(self, info: dict) -> None:
        """Take over the counters, optimiser state, best weights and history of an unfinished run
        (or of a finished one that ``cfg`` gives more epochs: its weights are its best ones)."""
        old = info["state"]
        if old["finished"]:
            blocker = finished_run_blocker(old, self.cfg)
            if blocker is not None:
                raise ValueError(f"this checkpoint is of a finished run; there is nothing to resume ({blocker[1]})")
        self.state.update({k: old[k] for k in ("epoch", "step", "best_epoch", "best_valid_nll")})
        if info.get("optimizer"):
            self.opt.load_state_dict(self._optimizer_state(info["optimizer"], to_natural=False))
        if info.get("best_params"):
            self.best = [self.model._on_device(info["best_params"][n], self.model.dtype)
                         for n in self.model.param_names]
        if info.get("history"):
            self.history.update(info["history"])
            self.history["rows"] = list(self.history["rows"])
            self.history["base_lr"] = self.base_lr  # the run goes on at this configuration's rate
        if self.best is None and self.state["best_epoch"] > 0:
            self.best = [self.xp.asarray(p, copy=True) for p in self.model.params]  # no stored best: the current

    def _optimizer_state(self, state: dict, to_natural: bool = True) -> dict:
        """The optimiser's host state with its per-parameter buffers moved between the engine's
        layout and the MADE's (the layout of checkpoints)."""
        state, n = dict(state), len(self.opt.params)
        move = self.engine.to_natural if to_natural else self.engine.to_compute
        for name in self.opt.state_names:
            keys = [f"{name}{i}" for i in range(n)]
            moved = move([self.model._on_device(state[k]) for k in keys])
            state.update({k: backend.to_host(a) for k, a in zip(keys, moved)})
        return state

    def save(self, finished: bool) -> None:
        """Write the checkpoint and metrics.csv (when there is an output folder)."""
        if self.out is None:
            return
        self.state["finished"] = finished
        opt_state = self._optimizer_state(self.opt.state_dict())
        with interrupts_deferred():  # Ctrl-C waits for both files: the metrics show the checkpoint's epoch
            save_checkpoint(self.out / CHECKPOINT_NAME, self.model, train_config=self.cfg, dataset_spec=self.spec,
                            optimizer=self.opt, optimizer_state=opt_state,
                            best_params=None if finished else self.best,
                            history=self.history, train_state=self.state)
            write_metrics(self.out / METRICS_NAME, self.history["rows"])

    def train(self, callback, progress, verbose: bool = False) -> dict:
        """Epochs until the budget, the patience or the callback stops them (each printed in a line
        with ``verbose``); then the best weights."""
        cfg, state = self.cfg, self.state
        stop_reason = "epochs"
        if cfg.patience and state["epoch"] > 0 and state["epoch"] - state["best_epoch"] >= cfg.patience:
            stop_reason = "patience"
        while stop_reason == "epochs" and state["epoch"] < cfg.epochs:
            t0 = time.perf_counter()
            epoch = state["epoch"] + 1
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # divergence is checked below
                train_nll = self.steps(epoch, progress)
                if not math.isfinite(train_nll):
                    self._diverged(epoch, "training loss", train_nll)
                t1 = time.perf_counter()
                valid_nll, improved = self.validate(epoch)
                if not math.isfinite(valid_nll):
                    self._diverged(epoch, "validation NLL", valid_nll)
                self._check_finite(epoch)
            t2 = time.perf_counter()
            row = {"epoch": epoch, "train_nll": train_nll, "valid_nll": valid_nll, "seconds": t2 - t0,
                   "train_seconds": t1 - t0, "valid_seconds": t2 - t1, "lr": self.opt.lr,
                   "threads": self.chooser.epoch_threads(), "best": improved}
            self.history["rows"].append(row)
            self.history["best_epoch"], self.history["best_valid_nll"] = state["best_epoch"], state["best_valid_nll"]
            if cfg.patience and epoch - state["best_epoch"] >= cfg.patience:
                stop_reason = "patience"
            self.save(False)
            if verbose:
                print(f"epoch {epoch:4d}  train NLL {train_nll:.4f}  valid NLL {valid_nll:.4f} nats  "
                      f"({row['seconds']:.1f} s)", flush=True)
            if callback is not None and callback(row):
                stop_reason = "callback"
        self._restore_best()
        self.history["stop_reason"] = stop_reason
        self.save(True)
        return self.history

    def _restore_best(self) -> None:
        """The best weights so far (if any were kept) back into the MADE."""
        for p, b in zip(self.model.params, self.best or ()):
            p[...] = b

    def _use_threads(self, n: int) -> None:
        """Run the next steps on ``n`` CPU threads (the chooser's switch)."""
        from .fast.threads import use_threads

        use_threads(n)
        self.engine.set_threads(n)

    def _check_finite(self, epoch: int) -> None:
        """Every parameter and optimiser buffer is finite: a loss can stay finite while Adam's
        second moment overflows (a huge weight decay makes the steps 0 and freezes the weights).
        One pass over them an epoch, on the device."""
        xp = self.xp
        named = [(f"parameter {n}", a) for n, a in zip(self.model.param_names, self.model.params)]
        named += [(f"optimizer state {k}{i}", b) for k, bufs in self.opt.state.items() for i, b in enumerate(bufs)]
        for what, a in named:
            if not bool(xp.all(xp.isfinite(a))):
                host = backend.to_host(a).ravel()
                self._diverged(epoch, what, float(host[np.flatnonzero(~np.isfinite(host))[0]]))

    def _diverged(self, epoch: int, what: str, value: float) -> None:
        """Stop at a non-finite loss: nothing saved (the last checkpoint is the previous epoch's),
        the best weights back in the model, :class:`DivergenceError` raised."""
        self._restore_best()
        saved = epoch - 1 if self.out is not None and epoch > 1 else None
        raise DivergenceError(epoch, what, value, self.opt.lr, saved)

    def steps(self, epoch: int, progress) -> float:
        """One pass over the shuffled training set; returns its mean NLL per example (nats), each
        minibatch's mean weighted by its rows, before each step's update (docs/math.md Sec. 12)."""
        cfg, xp, engine, K = self.cfg, self.xp, self.engine, self.model.config.num_masks
        self.opt.lr = cfg.lr_at(self.base_lr, epoch)
        host_perm = backend.host_rng(cfg.seed, epoch).permutation(self.n_train)
        perm = backend.to_device(host_perm, xp, device=self.model.device)
        running = xp.zeros((), dtype=xp.float64, device=self.model.device)
        step, reported = self.state["step"], 0
        bar = progress(epoch, self.n_batches) if progress is not None else contextlib.nullcontext()
        with bar as pbar, engine.epoch():
            for b, batch in enumerate(backend.row_blocks(self.n_train, cfg.batch_size)):
                mask = mask_for_step(step, K, cfg.resample_every)
                rows = perm[batch]
                xb = xp.take(self.x_train, rows, axis=0)
                yb = None if self.c_train is None else xp.take(self.c_train, rows, axis=0)
                # rows with missing entries: their observed entries (engines without them take no such argument)
                seen = {} if self.o_train is None else {"observed": self.o_train[host_perm[batch]]}
                with self.chooser.step():
                    loss = engine.loss_and_grad(xb, mask, yb, **seen)
                    self.opt.step(engine.grads)
                running += loss * xb.shape[0]
                step += 1
                if pbar is not None and ((b + 1) % cfg.log_every == 0 or b + 1 == self.n_batches):
                    done = min((b + 1) * cfg.batch_size, self.n_train)
                    pbar.update(b + 1 - reported, float(running) / done)
                    reported = b + 1
        self.state["step"] = step
        engine.sync()  # the MADE gets the weights: validated as saved, so the numbers match `evaluate`
        return float(running) / self.n_train

    def validate(self, epoch: int) -> tuple:
        """Validation NLL (nats) of the MADE, and whether it is the best so far (then kept)."""
        state, xp = self.state, self.xp
        nll = _rows_nll(self.model, self.x_valid, self.v_indices, self.cfg.eval_batch_size, self.c_valid, self.o_valid)
        valid_nll = float(xp.mean(xp.astype(nll, xp.float64)))
        improved = valid_nll < state["best_valid_nll"]
        if improved:
            state["best_valid_nll"], state["best_epoch"] = valid_nll, epoch
            self.best = [xp.asarray(p, copy=True) for p in self.model.params]
        state["epoch"] = epoch
        backend.synchronize(self.xp)
        return valid_nll, improved


def _values(model, x):
    """Data checked by :func:`made_np.checks.check_dataset`: real values as float64 for a real head;
    else classes as integers: a float array of 0.0/1.0/... is cast once (uint8: at most 256
    classes), as one-hot inputs index by value. Missing entries (NaN) become 0, never read."""
    if getattr(x, "dtype", None) is None or x.dtype.kind != "f":
        return x
    x = np.where(np.isnan(x), 0.0, x) if np.isnan(x).any() else x
    return x.astype("float64", copy=False) if model.head.real else x.astype("uint8")


def _default_spec(dataset) -> dict:
    """How to reload ``dataset`` (:attr:`made_np.data.Dataset.spec`), with its shape for the record."""
    spec = dict(getattr(dataset, "spec", None) or {"spec": getattr(dataset, "name", None), "path": None, "seed": 0})
    image_shape = getattr(dataset, "image_shape", None)
    spec.update({"name": getattr(dataset, "name", None), "D": int(dataset.train.shape[1]),
                 "classes": getattr(dataset, "classes", None),
                 "image_shape": list(image_shape) if image_shape else None,
                 "sizes": split_sizes(dataset)})
    return spec
