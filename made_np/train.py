"""Training loop, evaluation and checkpoints of MADE.

:func:`fit` trains a :class:`~made_np.model.MADE` by minibatch gradient descent on
the NLL in nats (paper Sec. 6.1), cycling through the model's bank of masks
(paper Algorithm 1: one mask per update), with early stopping on the validation
NLL (the paper's look-ahead of 30 epochs) and a checkpoint after every epoch so
that an interrupted run can be resumed exactly.

:func:`evaluate` reports the mean NLL with its standard error, for one mask or for
the test-time ensemble over masks (paper Sec. 4.2).

A checkpoint is one ``.npz`` file, written atomically (temporary file in the same
folder, then :func:`os.replace`) and read with ``allow_pickle=False``:

* ``W0, b0, W1, b1, ..., A``: the parameters (:attr:`MADE.param_names`);
* ``opt_<state><i>``, ``opt_t``, ``opt_lr``: the optimiser state;
* ``best_W0, ...``: the best weights so far (only while a run is unfinished;
  a finished run's parameters *are* its best weights);
* ``config``: a 0-d unicode array holding JSON: the model configuration, the
  training configuration, the data set spec, the training state (epoch, step,
  best epoch, ...), the history and the made-np version.

Masks are not stored: mask ``i`` of the bank is rebuilt exactly from the stored
configuration (seed, index), see :func:`made_np.masks.draw_masks`.
"""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import __version__, backend
from .model import MADE, BlockedMADE, MADEConfig, StrictConfig
from .optim import OPTIMIZERS, make_optimizer

CHECKPOINT_FORMAT = "made-np-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "model.npz"
METRICS_NAME = "metrics.csv"
METRICS_COLUMNS = ("epoch", "train_nll", "valid_nll", "seconds")
LR_SCHEDULES = ("constant", "step", "cosine")
DEFAULT_VALID_MASKS = 16
DEFAULT_EVAL_MASKS = 1000


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not a made-np checkpoint (one-line message)."""


# =========================================================================== configuration


@dataclass
class TrainConfig(StrictConfig):
    """How to train; stored as JSON inside checkpoints.

    Attributes
    ----------
    epochs : int, default 200
        Most passes over the training set (early stopping usually ends sooner).
    batch_size : int, default 100
        Examples per minibatch (the last minibatch of an epoch may be smaller).
    optimizer : {"adam", "adagrad", "sgd"}, default "adam"
        The paper used Adagrad; Adam converges faster here.
    lr : float or None
        Base learning rate; ``None`` takes the optimiser's default
        (adam 1e-3, adagrad 1e-2, sgd 1e-2).
    weight_decay : float, default 0
        L2 coefficient added to every gradient.
    patience : int, default 30
        Early stopping: stop when the validation NLL has not improved for this
        many epochs (the paper's look-ahead). ``0`` disables early stopping.
    resample_every : int, default 1
        Minibatches between mask changes when the bank has more than one mask
        (the paper changes mask at every update). With ``K >= 2`` masks the mask
        of minibatch ``i`` (counted over the whole run) is ``(i // resample_every) % K``;
        with no limit (``num_masks == 0``) it is mask ``i // resample_every``, a fresh one.
    valid_masks : int or None
        Masks in the validation ensemble during training when the bank has more
        than one mask. ``None``: the whole bank capped at 16 (16 with no limit).
    eval_masks : int or None
        Masks in the ensemble of a final (test) evaluation. ``None``: the whole
        bank, or 1000 masks when the bank has no limit (paper Sec. 6.2).
    lr_schedule : {"constant", "step", "cosine"}, default "constant"
        Learning rate of epoch ``e`` (1-based): ``constant``: ``lr``; ``step``:
        ``lr * 0.5 ** ((e - 1) // lr_step)`` (halved every ``lr_step`` epochs);
        ``cosine``: ``lr * (1 + cos(pi (e - 1) / epochs)) / 2``.
    lr_step : int, default 50
        Epochs between halvings of the ``step`` schedule.
    seed : int, default 0
        Seed of the minibatch shuffling (epoch ``e`` uses ``host_rng(seed, e)``).
        The weights and masks are seeded by :attr:`MADEConfig.seed`.
    log_every : int, default 20
        Minibatches between reads of the running training loss for a progress
        display (the only host syncs inside an epoch, and only when one is shown).
    eval_batch_size : int, default 1000
        Rows per forward pass when evaluating.
    """

    epochs: int = 200
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float | None = None
    weight_decay: float = 0.0
    patience: int = 30
    resample_every: int = 1
    valid_masks: int | None = None
    eval_masks: int | None = None
    lr_schedule: str = "constant"
    lr_step: int = 50
    seed: int = 0
    log_every: int = 20
    eval_batch_size: int = 1000

    _kind = "training"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.optimizer in OPTIMIZERS,
             f"unknown optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}"),
            (self.lr is None or self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.patience >= 0, f"patience must be >= 0 (0 disables early stopping), got {self.patience}"),
            (self.resample_every >= 1, f"resample_every must be >= 1, got {self.resample_every}"),
            (self.valid_masks is None or self.valid_masks >= 1,
             f"valid_masks must be >= 1, got {self.valid_masks}"),
            (self.eval_masks is None or self.eval_masks >= 1,
             f"eval_masks must be >= 1, got {self.eval_masks}"),
            (self.lr_schedule in LR_SCHEDULES,
             f"unknown lr schedule {self.lr_schedule!r}: choose one of {', '.join(LR_SCHEDULES)}"),
            (self.lr_step >= 1, f"lr_step must be >= 1, got {self.lr_step}"),
            (self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}"),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
        ]
        self._raise_first(checks)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        """Learning rate of ``epoch`` (1-based) under :attr:`lr_schedule`."""
        if self.lr_schedule == "step":
            return base_lr * 0.5 ** ((epoch - 1) // self.lr_step)
        if self.lr_schedule == "cosine":
            return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / self.epochs))
        return base_lr


def valid_mask_indices(model: MADE, cfg: TrainConfig) -> list:
    """Masks of the validation ensemble: ``[0]`` for a single mask, else see :attr:`TrainConfig.valid_masks`."""
    K = model.config.num_masks
    if K == 1:
        return [0]
    n = cfg.valid_masks or (min(K, DEFAULT_VALID_MASKS) if K else DEFAULT_VALID_MASKS)
    return model.eval_mask_indices(n)


def mask_for_step(step: int, num_masks: int, resample_every: int) -> int:
    """Mask index of minibatch ``step`` (0-based, counted over the whole run).

    ``0`` for a single mask; ``(step // resample_every) % K`` for a bank of ``K >= 2``;
    ``step // resample_every`` (a fresh mask each time) when the bank has no limit.
    """
    if num_masks == 1:
        return 0
    index = step // resample_every
    return index % num_masks if num_masks else index


# =========================================================================== evaluation


def evaluate(model: MADE, x, *, ensemble: bool | None = None, eval_masks: int | None = None,
             batch_size: int = 1000, mask_index: int = 0) -> dict:
    """Mean NLL of data under one mask or under the ensemble of masks.

    Parameters
    ----------
    model : MADE
    x : array, shape (N, D), uint8 or int (host or device)
        Data; moved to the model's device once.
    ensemble : bool or None
        Average the masks' probabilities (paper Sec. 4.2):
        ``-log((1/K) sum_k p_k(x))``. ``None``: ensemble when the bank has more
        than one mask. Ignored for a single-mask model.
    eval_masks : int or None
        Ensemble size; ``None``: the whole bank, or 1000 masks with no limit.
    batch_size : int
        Rows per forward pass.
    mask_index : int, default 0
        The mask used when not ensembling. The model's current mask is restored.

    Returns
    -------
    dict
        ``nll`` (mean NLL, nats per example), ``stderr`` (its standard error,
        ``std / sqrt(N)`` with ``ddof=1``), ``nll_per_dim`` and ``stderr_per_dim``
        (divided by D), ``n`` (N), ``D``, ``masks`` (number of masks used),
        ``ensemble`` (bool) and ``mask_index`` (the single mask, or None).
    """
    xp = model.xp
    x = backend.to_device(x, xp)
    K = model.config.num_masks
    if ensemble is None:
        ensemble = K != 1
    if K == 1:
        ensemble = False
    if ensemble:
        indices = model.eval_mask_indices(eval_masks)
        nll = model.ensemble_nll(x, indices, batch_size)
        masks, single = len(indices), None
    else:
        current = model.mask_index
        model.set_mask(mask_index)
        nll = model.nll(x, batch_size)
        model.set_mask(current)
        masks, single = 1, mask_index
    values = backend.to_host(nll).astype(np.float64)
    n, D = int(values.shape[0]), model.config.D
    mean = float(values.mean())
    stderr = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {
        "nll": mean, "stderr": stderr, "nll_per_dim": mean / D, "stderr_per_dim": stderr / D,
        "n": n, "D": D, "masks": masks, "ensemble": bool(ensemble), "mask_index": single,
    }


def _mean_nll(model: MADE, x, indices: list, batch_size: int) -> float:
    """Mean NLL (nats) of device data: the fixed mask when ``num_masks == 1``, else the ensemble of ``indices``."""
    if model.config.num_masks == 1:
        nll = model.nll(x, batch_size)
    else:
        nll = model.ensemble_nll(x, indices, batch_size)
    return float(nll.astype(model.xp.float64).mean())


# =========================================================================== training


def fit(model: MADE, dataset, cfg: TrainConfig, *, out_dir=None, callback=None, resume_state=None,
        progress=None, dataset_spec: dict | None = None) -> dict:
    """Train ``model`` on ``dataset.train``, early-stopping on ``dataset.valid``.

    Every epoch: a seeded shuffle (``host_rng(cfg.seed, epoch)``), minibatches of
    ``cfg.batch_size``, one optimiser step each, the mask changed every
    ``cfg.resample_every`` minibatches (:func:`mask_for_step`); then the
    validation NLL (single mask when ``num_masks == 1``, else the ensemble of
    :func:`valid_mask_indices`), best-weights tracking, and, with ``out_dir``,
    the checkpoint ``model.npz`` and ``metrics.csv``. At the end the best weights
    are restored into ``model`` (and saved as the final checkpoint).

    The data are moved to the device once (as uint8/int); the running training
    loss is accumulated on the device and read back only at the end of an epoch
    (and every ``cfg.log_every`` minibatches when ``progress`` is given).

    A single-mask model on the CPU trains in its fast form,
    :class:`~made_np.model.BlockedMADE` (sorted units, packed blocks of live
    weights; :func:`made_np.backend.blocked_products`), on data with permuted
    columns; ``model`` receives its weights at the end of every epoch, so the
    validation, the checkpoints, the callback and the result see the usual MADE.
    The optimiser state is converted to and from the usual layout in checkpoints.

    Parameters
    ----------
    model : MADE
        Trained in place.
    dataset : made_np.data.Dataset
        Anything with ``train`` and ``valid`` arrays of shape (N, D).
    cfg : TrainConfig
    out_dir : str or os.PathLike, optional
        Folder for ``model.npz`` and ``metrics.csv`` (created).
    callback : callable, optional
        ``callback(row)`` after each epoch (after the checkpoint) with
        ``row = {"epoch", "train_nll", "valid_nll", "seconds", "lr", "best"}``;
        returning True stops training.
    resume_state : dict, optional
        The ``info`` of :func:`load_checkpoint` for a model loaded from an
        unfinished checkpoint: training continues after its epoch with its
        optimiser state, best weights, history and counters, and gives the
        same result as an uninterrupted run.
    progress : callable, optional
        ``progress(epoch, n_batches)`` returning a context manager with
        ``update(n_steps, current_item)`` (e.g. :func:`click.progressbar`);
        ``current_item`` is the running mean training NLL of the epoch.
    dataset_spec : dict, optional
        How to reload the data (stored in the checkpoint), e.g.
        ``{"spec": "digits", "path": None, "seed": 0}``.

    Returns
    -------
    dict
        The history: ``rows`` (one dict per epoch: epoch, train_nll (mean
        minibatch NLL over the epoch, nats), valid_nll (nats), seconds, lr,
        best), ``best_epoch``, ``best_valid_nll``, ``stop_reason``
        (``"patience"``, ``"epochs"`` or ``"callback"``), ``base_lr``,
        ``valid_masks`` (size of the validation ensemble).

    Raises
    ------
    ValueError
        Data whose width is not the model's D, or a finished ``resume_state``.
    """
    xp, K = model.xp, model.config.num_masks
    D = model.config.D
    for split in ("train", "valid"):
        shape = getattr(dataset, split).shape
        if len(shape) != 2 or shape[1] != D:
            raise ValueError(f"{split} data has shape {tuple(shape)}, but the model has D = {D}")
    x_train = backend.to_device(dataset.train, xp)
    x_valid = backend.to_device(dataset.valid, xp)
    n_train = int(x_train.shape[0])
    n_batches = -(-n_train // cfg.batch_size)
    net = BlockedMADE(model) if K == 1 and backend.blocked_products(xp) else model
    if net is not model:
        x_train = net.permute_data(x_train)

    opt = make_optimizer(cfg.optimizer, net.params, xp, lr=cfg.lr, weight_decay=cfg.weight_decay)
    base_lr = opt.lr
    v_indices = valid_mask_indices(model, cfg)
    spec = dict(dataset_spec) if dataset_spec else _default_spec(dataset)

    history = {"rows": [], "best_epoch": 0, "best_valid_nll": math.inf, "stop_reason": None,
               "base_lr": base_lr, "valid_masks": len(v_indices)}
    state = {"epoch": 0, "step": 0, "best_epoch": 0, "best_valid_nll": math.inf, "finished": False}
    best = None
    if resume_state is not None:
        old = resume_state.get("state") or {}
        if old.get("finished"):
            raise ValueError("this checkpoint is of a finished run; there is nothing to resume")
        state.update({k: old[k] for k in ("epoch", "step", "best_epoch", "best_valid_nll") if k in old})
        if resume_state.get("optimizer"):
            opt.load_state_dict(_optimizer_state(resume_state["optimizer"], opt, net, to_natural=False))
        if resume_state.get("best_params"):
            best = [xp.asarray(resume_state["best_params"][n], dtype=model.dtype) for n in model.param_names]
        if resume_state.get("history"):
            history.update(resume_state["history"])
            history["rows"] = list(history["rows"])
    if best is None and state["best_epoch"] > 0:
        best = [p.copy() for p in model.params]  # resumed without stored best weights: use the current ones
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    def save(finished: bool):
        if out is None:
            return
        state["finished"] = finished
        save_checkpoint(out / CHECKPOINT_NAME, model, train_config=cfg, dataset_spec=spec,
                        optimizer=opt, optimizer_state=_optimizer_state(opt.state_dict(), opt, net),
                        best_params=None if finished else best,
                        history=history, train_state=state)
        write_metrics(out / METRICS_NAME, history["rows"])

    stop_reason = "epochs"
    epoch = state["epoch"]
    if cfg.patience and epoch - state["best_epoch"] >= cfg.patience and epoch > 0:
        stop_reason = "patience"
    while stop_reason == "epochs" and epoch < cfg.epochs:
        epoch += 1
        t0 = time.perf_counter()
        opt.lr = cfg.lr_at(base_lr, epoch)
        perm = backend.to_device(backend.host_rng(cfg.seed, epoch).permutation(n_train), xp)
        running = xp.zeros((), dtype=xp.float64)
        step = state["step"]
        bar = progress(epoch, n_batches) if progress is not None else None
        reported = 0
        parallel = net.parallel() if net is not model else _Null()
        with bar if bar is not None else _Null() as pbar, parallel:
            for b in range(n_batches):
                if K != 1:
                    model.set_mask(mask_for_step(step, K, cfg.resample_every))
                xb = x_train[perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
                loss = net.loss_and_grad(xb)
                opt.step(net.grads)
                running += loss * xb.shape[0]
                step += 1
                if bar is not None and ((b + 1) % cfg.log_every == 0 or b + 1 == n_batches):
                    done = min((b + 1) * cfg.batch_size, n_train)
                    pbar.update(b + 1 - reported, float(running) / done)
                    reported = b + 1
        state["step"] = step
        train_nll = float(running) / n_train
        if net is not model:
            net.write_to(model)  # validated as saved: the numbers match a later `evaluate`
        valid_nll = _mean_nll(model, x_valid, v_indices, cfg.eval_batch_size)
        improved = valid_nll < state["best_valid_nll"]
        if improved:
            state["best_valid_nll"], state["best_epoch"] = valid_nll, epoch
            if best is None:
                best = [p.copy() for p in model.params]
            else:
                for dst, src in zip(best, model.params):
                    dst[...] = src
        state["epoch"] = epoch
        backend.synchronize(xp)
        row = {"epoch": epoch, "train_nll": train_nll, "valid_nll": valid_nll,
               "seconds": time.perf_counter() - t0, "lr": opt.lr, "best": improved}
        history["rows"].append(row)
        history["best_epoch"], history["best_valid_nll"] = state["best_epoch"], state["best_valid_nll"]
        if cfg.patience and epoch - state["best_epoch"] >= cfg.patience:
            stop_reason = "patience"
        save(False)
        if callback is not None and callback(row):
            stop_reason = "callback"

    if best is not None:
        for p, b in zip(model.params, best):
            p[...] = b
    if K != 1:
        model.set_mask(0)
    history["stop_reason"] = stop_reason
    save(True)
    return history


def _optimizer_state(state: dict, opt, net, to_natural: bool = True) -> dict:
    """An optimiser's host state dict with its per-parameter buffers moved between the
    compute form of a :class:`BlockedMADE` ``net`` and the usual layout (unchanged for a MADE)."""
    if not isinstance(net, BlockedMADE):
        return state
    state, n = dict(state), len(opt.params)
    for name in opt.state_names:
        keys = [f"{name}{i}" for i in range(n)]
        arrays = [opt.xp.asarray(state[k]) for k in keys]
        moved = net.to_natural(arrays) if to_natural else net.to_compute(arrays)
        state.update({k: backend.to_host(a) for k, a in zip(keys, moved)})
    return state


class _Null:
    """A do-nothing context manager standing in for a progress bar."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _default_spec(dataset) -> dict:
    return {"spec": getattr(dataset, "name", None), "path": None, "seed": 0}


def write_metrics(path, rows: list) -> Path:
    """Write ``metrics.csv`` (columns epoch, train_nll, valid_nll, seconds) atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(METRICS_COLUMNS)
            for r in rows:
                writer.writerow([r["epoch"], f"{r['train_nll']:.6f}", f"{r['valid_nll']:.6f}",
                                 f"{r['seconds']:.3f}"])
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# =========================================================================== checkpoints


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray, tuple)):
        return list(o.tolist() if isinstance(o, np.ndarray) else o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_checkpoint(path, model: MADE, *, train_config: TrainConfig | None = None,
                    dataset_spec: dict | None = None, optimizer=None, optimizer_state: dict | None = None,
                    best_params=None,
                    history: dict | None = None, train_state: dict | None = None,
                    results: dict | None = None) -> Path:
    """Write a checkpoint ``.npz`` atomically (temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    path : str or os.PathLike
        Target file (its folder must exist).
    model : MADE
        Its parameters are saved under :attr:`MADE.param_names`.
    train_config : TrainConfig, optional
    dataset_spec : dict, optional
        How to reload the data: ``{"spec", "path", "seed", ...}``.
    optimizer : made_np.optim.Optimizer, optional
        Its state is saved as ``opt_*`` entries.
    optimizer_state : dict, optional
        The state to save instead of ``optimizer.state_dict()`` (the layout of
        ``model``'s parameters when the optimiser ran on a :class:`BlockedMADE`).
    best_params : list of arrays, optional
        Best weights so far (matching :attr:`MADE.params`), saved as ``best_*``.
    history, train_state, results : dict, optional
        Stored in the JSON ``config`` entry.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    arrays = dict(model.state_dict())
    if optimizer is not None:
        for k, v in (optimizer_state if optimizer_state is not None else optimizer.state_dict()).items():
            arrays[f"opt_{k}"] = np.asarray(v)
    if best_params is not None:
        for name, p in zip(model.param_names, best_params):
            arrays[f"best_{name}"] = backend.to_host(p)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "made_np_version": __version__,
        "model": model.config.to_dict(),
        "train": train_config.to_dict() if train_config is not None else None,
        "dataset": dataset_spec,
        "optimizer": None if optimizer is None else type(optimizer).__name__.lower(),
        "state": train_state,
        "history": history,
        "results": results,
    }
    arrays["config"] = np.array(json.dumps(meta, default=_json_default, allow_nan=True))
    return _write_npz_atomic(path, arrays)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_npz_atomic(path: Path, arrays: dict) -> Path:
    """``np.savez`` into a temporary file of the same folder, then ``os.replace`` it onto ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def update_checkpoint_meta(path, **changes) -> Path:
    """Replace top-level entries of a checkpoint's JSON ``config`` (e.g. ``results=...``), atomically.

    Raises
    ------
    CheckpointError
        Not a made-np checkpoint.
    """
    p = resolve_checkpoint_path(path)
    arrays, meta = _read_checkpoint(p)
    meta.update(changes)
    arrays["config"] = np.array(json.dumps(meta, default=_json_default, allow_nan=True))
    return _write_npz_atomic(p, arrays)


def resolve_checkpoint_path(path) -> Path:
    """A checkpoint file, or a run folder holding ``model.npz``.

    Raises
    ------
    CheckpointError
        Nothing there.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / CHECKPOINT_NAME).is_file():
            return p / CHECKPOINT_NAME
        raise CheckpointError(f"{p}: folder holds no {CHECKPOINT_NAME} checkpoint")
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file or run folder")
    return p


def _read_checkpoint(p: Path):
    """All arrays of a checkpoint file and its parsed JSON config (checked to be made-np's)."""
    try:
        with open(p, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read ({' '.join(str(exc).split())})") from None
    if magic == b"\x93NUMPY":
        raise CheckpointError(f"{p}: not a made-np checkpoint (a single .npy array, not an .npz)")
    if not magic.startswith(b"PK"):
        raise CheckpointError(f"{p}: not a made-np checkpoint (not an .npz file)")
    try:
        z = np.load(p, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{p}: not a made-np checkpoint (a single .npy array, not an .npz)")
        with z:
            arrays = {k: z[k] for k in z.files}
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(f"{p}: not a made-np checkpoint (cannot read as .npz: {reason})") from None
    if "config" not in arrays:
        found = ", ".join(sorted(arrays)[:8]) or "none"
        raise CheckpointError(f"{p}: not a made-np checkpoint (no 'config' entry; keys found: {found})")
    try:
        meta = json.loads(str(arrays["config"]))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{p}: not a made-np checkpoint (config is not JSON: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p}: not a made-np checkpoint (config has no format '{CHECKPOINT_FORMAT}')")
    if meta.get("format_version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{p}: checkpoint format {meta['format_version']} is newer than this "
                              f"made-np ({__version__}) understands")
    return arrays, meta


def load_checkpoint(path, device: str | None = None, *, best: bool = False):
    """Read a checkpoint written by :func:`save_checkpoint` (or a run folder holding ``model.npz``).

    Parameters
    ----------
    path : str or os.PathLike
    device : {"cpu", "cuda"} or None
        Where to build the model (``None``: ``$MADE_NP_DEVICE`` or cpu).
    best : bool, default False
        Load the best weights of an unfinished run instead of its latest ones
        (a finished run's parameters are already its best).

    Returns
    -------
    model : MADE
        With the stored parameters and mask 0 selected.
    info : dict
        ``path``, ``config`` (the whole JSON), ``model_config`` (MADEConfig),
        ``train_config`` (TrainConfig or None), ``dataset`` (spec dict or None),
        ``history``, ``state``, ``results``, ``version``, ``optimizer`` (host
        state dict or None), ``best_params`` (dict of host arrays or None).

    Raises
    ------
    CheckpointError
        Missing or unreadable file, not a made-np checkpoint, or inconsistent
        contents (one-line message naming the file).
    made_np.backend.BackendError
        Unusable device.
    """
    p = resolve_checkpoint_path(path)
    arrays, meta = _read_checkpoint(p)
    arrays.pop("config")
    try:
        model_config = MADEConfig.from_dict(meta["model"])
        train_config = TrainConfig.from_dict(meta["train"]) if meta.get("train") else None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{p}: invalid configuration in checkpoint ({exc})") from None
    xp = backend.get_xp(device)
    model = MADE(model_config, xp)
    params = {n: arrays[n] for n in model.param_names if n in arrays}
    missing = [n for n in model.param_names if n not in params]
    if missing:
        raise CheckpointError(f"{p}: checkpoint is missing parameter '{missing[0]}'")
    best_params = None
    if all(f"best_{n}" in arrays for n in model.param_names):
        best_params = {n: arrays[f"best_{n}"] for n in model.param_names}
    try:
        model.load_state_dict(best_params if (best and best_params is not None) else params)
    except ValueError as exc:
        raise CheckpointError(f"{p}: {exc}") from None
    opt_state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")} or None
    info = {
        "path": str(p),
        "config": meta,
        "model_config": model_config,
        "train_config": train_config,
        "dataset": meta.get("dataset"),
        "history": meta.get("history"),
        "state": meta.get("state"),
        "results": meta.get("results"),
        "version": meta.get("made_np_version"),
        "optimizer": opt_state,
        "best_params": best_params,
    }
    return model, info
