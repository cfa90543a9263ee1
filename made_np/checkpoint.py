"""Checkpoints and run files: atomic writes, reading back, and what a resume needs.

A checkpoint is one ``.npz`` file, written atomically (temporary file in the same
folder, then :func:`os.replace`) and read with ``allow_pickle=False``:

* ``W0, b0, W1, b1, ..., A``: the parameters (:attr:`made_np.model.MADE.param_names`);
* ``opt_<state><i>``, ``opt_t``, ``opt_lr``: the optimiser state;
* ``shift``, ``scale``: a real-head model's standardisation (D,) float64
  (:meth:`made_np.model.MADE.set_standardisation`);
* ``best_W0, ...``: the best weights so far (only while a run is unfinished;
  a finished run's parameters *are* its best weights);
* ``config``: a 0-d unicode array holding JSON: the model configuration, the
  training configuration, the data set spec, the training state (epoch, step,
  best epoch, ``finished``: training is over), the history, the made-np version
  and ``results`` (the test figures, written last: their presence means that
  every output of the run has been written).

Reading goes through :mod:`made_np.npyio` (every entry's header checked before any array
is read); the run folder, its lock and its atomic writes are :mod:`made_np.runfolder`'s.
The checks of what a resume takes from a checkpoint are here too (:func:`check_resume_state`).

Masks are not stored: mask ``i`` of the bank is rebuilt exactly from the stored
configuration (seed, index), see :func:`made_np.masks.draw_masks`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from . import __version__, backend
from .checks import MAX_SEED, check_bool, check_int, check_model, check_path_name, check_train_config, describe, is_int, is_real, short
from .config import MAX_EPOCHS, MADEConfig, TrainConfig
from .data import CONTEXT_SOURCES
from .heads import HEADS
from .limits import LimitError, check, layer_widths, model_parts
from .model import MADE
from .npyio import Npz, expand_path, magic, one_line
from .optim import optimizer_class
from .runfolder import (CHECKPOINT_NAME, LOCK_NAME, METRICS_COLUMNS, CheckpointError, RunFolderError, _holds,
                        _json_default, atomic_file, other_run, run_lock)

#: Facts of a run's training that a resume keeps: each shaped the epochs it has trained (minibatches, masks,
#: shuffles, updates) or the validation its best epoch was chosen by; resumed with another, the run would
#: record one configuration for epochs trained under two. ``epochs``, ``patience`` and ``lr`` may change
#: (the history records the new base rate), and so may what does not change the numbers (engine, threads).
RESUME_FIXED = ("batch_size", "resample_every", "seed", "weight_decay", "lr_schedule", "lr_step", "valid_masks")

CHECKPOINT_FORMAT = "made-np-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path, model: MADE, *, train_config: TrainConfig | None = None, dataset_spec: dict | None = None,
                    optimizer=None, optimizer_state: dict | None = None, best_params=None, history: dict | None = None,
                    train_state: dict | None = None, results: dict | None = None) -> Path:
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
        ``model``'s parameters when the optimiser ran on another form of the model).
    best_params : list of arrays, optional
        Best weights so far (matching :attr:`MADE.params`), saved as ``best_*``.
    history, train_state, results : dict, optional
        Stored in the JSON ``config`` entry.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    CheckpointError
        Nothing is written when the checkpoint would not load (:func:`load_checkpoint`'s checks):
        weights that are not finite, or an entry of the JSON ``config`` (e.g. ``dataset_spec``)
        of the wrong kind.
    made_np.runfolder.RunLockedError
        ``path`` lies in a run folder that another run is writing (a live training): its next
        epoch would have written over this checkpoint, or this one over its.
    made_np.runfolder.RunFolderError
        ``path`` (a symbolic link followed) is one of the files (:data:`made_np.runfolder.ATOMIC_FILES`)
        of a run folder (one holding a ``model.npz``) that this thread does not hold
        (:func:`made_np.runfolder.other_run`): a finished run's checkpoint is not replaced by name.
        The run's own writer may: :func:`made_np.train.fit` resuming it, or a caller inside
        ``run_lock(folder)``.
    ValueError
        ``model`` is not a MADE, ``train_config`` not a TrainConfig, ``optimizer`` not an optimiser,
        ``path`` an empty name (a :class:`CheckpointError`: ``best_params`` of other shapes than the model's).
    """
    check_model(model)
    check_train_config(train_config, "train_config", "")
    check_path_name(path, "path", "give the checkpoint's file (or its run folder)")
    if optimizer is not None and not callable(getattr(optimizer, "state_dict", None)):
        raise ValueError(f"optimizer must be a made_np.optim.Optimizer (or None), got {describe(optimizer)}")
    path = Path(path) / CHECKPOINT_NAME if Path(path).is_dir() else Path(path)  # a run folder: its checkpoint
    shapes, expected = [tuple(np.shape(b)) for b in best_params or ()], [tuple(p.shape) for p in model.params]
    if best_params is not None and shapes != expected:  # load_checkpoint would refuse them
        raise CheckpointError(f"{path}: not written: best_params have shapes {shapes}, the model's parameters "
                              f"({', '.join(model.param_names)}) {expected}")
    live = (path.parent / LOCK_NAME).exists() and not _holds(path.parent)
    why = other_run(path, own=path.parent)
    with run_lock(path.parent) if live else contextlib.nullcontext():  # refused while another run holds it
        if why:
            raise RunFolderError(f"{path}: {why}" + ("" if path.is_symlink() else
                                 " (or, to replace it, save it inside made_np.run_lock(folder) as the run's writer)"))
        arrays = dict(model.state_dict())
        if model.head.real:
            arrays.update(shift=backend.to_host(model.shift), scale=backend.to_host(model.scale))
        if optimizer is not None:
            state = optimizer_state if optimizer_state is not None else optimizer.state_dict()
            arrays.update({f"opt_{k}": np.asarray(v) for k, v in state.items()})
        arrays.update({f"best_{name}": backend.to_host(p) for name, p in zip(model.param_names, best_params or ())})
        bad = next((n for n, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()), None)
        if bad is not None:  # weights, optimiser state (an overflowing Adagrad sum) and best weights alike
            raise CheckpointError(f"{path}: not written: entry {bad!r} holds NaN or infinity, and a checkpoint "
                                  "must load (a diverged model keeps its last good checkpoint)")
        meta = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "made_np_version": __version__,
                "model": model.config.to_dict(), "train": train_config.to_dict() if train_config is not None else None,
                "dataset": dataset_spec, "optimizer": None if optimizer is None else type(optimizer).__name__.lower(),
                "state": train_state, "history": history, "results": results}
        try:
            text = json.dumps(meta, default=_json_default, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: not written: the configuration is not JSON ({one_line(exc)})") from None
        _check_meta(path, json.loads(text))  # what load_checkpoint will check: never write what it refuses
        arrays["config"] = np.array(text)
        return _write_npz_atomic(path, arrays)


def _write_npz_atomic(path: Path, arrays: dict) -> Path:
    """``np.savez`` into a temporary file of the same folder, then ``os.replace`` it onto ``path``."""
    with atomic_file(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def read_checkpoint_meta(path) -> dict:
    """The JSON ``config`` of a checkpoint (file or run folder) without reading its arrays.

    Raises
    ------
    CheckpointError
        Missing, unreadable or not a made-np checkpoint.
    """
    with _open_archive(resolve_checkpoint_path(path)) as archive:
        return _read_meta(archive)


def update_checkpoint_meta(path, **changes) -> Path:
    """Replace top-level entries of a checkpoint's JSON ``config`` (e.g. ``results=...``), atomically.

    Raises
    ------
    CheckpointError
        Not a made-np checkpoint.
    """
    p = resolve_checkpoint_path(path)
    arrays, meta, _, _ = _read_checkpoint(p)
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
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"a checkpoint is a file or run folder path, got {path!r}")
    p = expand_path(path)
    if p.is_dir():
        if (p / CHECKPOINT_NAME).is_file():
            return p / CHECKPOINT_NAME
        raise CheckpointError(f"{p}: folder holds no {CHECKPOINT_NAME} checkpoint")
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file or run folder")
    return p


#: Longest JSON ``config`` entry, in characters (the history of a long run is a few MB).
MAX_CONFIG_CHARS = 2**24
#: Keys of the ``dataset`` spec and the types they must have (``None`` is allowed for each).
_DATASET_KEYS = {"spec": str, "path": str, "seed": int, "name": str, "D": int, "classes": int,
                 "image_shape": list, "sizes": list, "sha256": dict, "context_sha256": dict, "columns": list}
_OPT_ENTRY = re.compile(r"^opt_[A-Za-z_]+[0-9]*$")
#: Top-level entries of the JSON ``config`` and their kinds (``None`` is allowed for each but ``model``).
_META_KINDS = {"model": dict, "train": dict, "state": dict, "history": dict, "results": dict, "dataset": dict,
               "optimizer": str, "made_np_version": str}


def _open_archive(p: Path) -> Npz:
    """Open ``p`` as an ``.npz`` (regular files only); anything else is a one-line CheckpointError."""
    head = magic(p, error=CheckpointError, fix="give a checkpoint file (model.npz) or its run folder")
    if head == b"\x93NUMPY":
        raise CheckpointError(f"{p}: not a made-np checkpoint (a single .npy array, not an .npz)")
    if not head.startswith(b"PK"):
        raise CheckpointError(f"{p}: not a made-np checkpoint (not an .npz file)")
    return Npz(p, CheckpointError, "entry", "not a made-np checkpoint, or a damaged one")


def _read_meta(archive: Npz) -> dict:
    """The parsed JSON ``config`` entry, checked to be a made-np checkpoint's of a known version."""
    p = archive.file
    if "config" not in archive.members:
        found = ", ".join(sorted(archive.members)[:8]) or "none"
        raise CheckpointError(f"{p}: not a made-np checkpoint (no 'config' entry; keys found: {found})")
    shape, dtype = archive.header("config")
    if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * MAX_CONFIG_CHARS:
        raise CheckpointError(f"{p}: not a made-np checkpoint (entry 'config' is {dtype} of shape {shape}, "
                              f"not a JSON string of at most {MAX_CONFIG_CHARS} characters)")
    text = str(archive.read("config")[()])
    try:
        meta = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"{p}: not a made-np checkpoint (config is not JSON: {one_line(exc)})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p}: not a made-np checkpoint (config has no format '{CHECKPOINT_FORMAT}')")
    version = meta.get("format_version")
    if not is_int(version) or version < 1:
        raise CheckpointError(f"{p}: entry 'config': format_version must be a positive integer, "
                              f"got {describe(version)}")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{p}: checkpoint format {version} is newer than this "
                              f"made-np ({__version__}) understands")
    return meta


def _check_meta(p: Path, meta: dict):
    """Validate the configuration of a checkpoint as strictly as user input.

    Returns ``(model_config, train_config or None)``; raises CheckpointError naming the
    file and the entry (``config: model.D ...``).
    """
    where = f"{p}: entry 'config'"
    for key, kind in _META_KINDS.items():
        if (key == "model" or meta.get(key) is not None) and not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{where}: '{key}' must be {'an object' if kind is dict else 'a string'}"
                                  f"{'' if key == 'model' else ' or null'}, got {describe(meta.get(key))}")
    try:
        model_config = MADEConfig.from_dict(meta["model"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: invalid model configuration ({one_line(exc)})") from None
    try:  # runs from before output_bias existed started their output biases at 0
        train = meta.get("train")
        train_config = None if train is None else TrainConfig.from_dict({"output_bias": "zero", **train})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: invalid training configuration ({one_line(exc)})") from None
    _check_dataset_spec(where, meta.get("dataset"), model_config)
    return model_config, train_config


def _check_dataset_spec(where: str, spec, cfg: MADEConfig) -> None:
    """Types of the ``dataset`` spec, and its D, classes, image shape and context against the model's."""
    if spec is None:
        return
    for key, kind in _DATASET_KEYS.items():
        value = spec.get(key)
        if value is not None and not (is_int(value) if kind is int else isinstance(value, kind)):
            raise CheckpointError(f"{where}: dataset.{key} must be {kind.__name__} or null, got {describe(value)}")
    seed, D, classes, shape, sizes, context = (spec.get(k) for k in ("seed", "D", "classes", "image_shape", "sizes",
                                                                     "context"))
    for ok, message in (
            (seed is None or 0 <= seed <= MAX_SEED, f"dataset.seed must be in 0..{MAX_SEED}, got {seed}"),
            (context is None or context in CONTEXT_SOURCES and (context != "none") == bool(cfg.context),
             f"dataset.context {describe(context)} does not fit the model's context of width {cfg.context}: "
             f"{'labels or file' if cfg.context else 'none'} expected"),
            (D is None or D == cfg.D, f"dataset.D = {D} but the model has D = {cfg.D}"),
            (classes is None or classes == cfg.classes,
             f"dataset.classes = {classes} but the model has {cfg.classes} classes"),
            (shape is None or len(shape) == 2 and all(is_int(v) and v >= 1 for v in shape)
             and shape[0] * shape[1] == cfg.D,
             f"dataset.image_shape {describe(shape)} is not two positive integers whose product is D = {cfg.D}"),
            (sizes is None or len(sizes) == 3 and all(is_int(v) and v >= 0 for v in sizes),
             f"dataset.sizes {describe(sizes)} is not three non-negative integers"),
            *((all(k in ("train", "valid", "test") and isinstance(v, str) and len(v) == 64
                   for k, v in (spec.get(key) or {}).items()),
               f"dataset.{key} {describe(spec.get(key))} is not a 64-digit hex digest per split")
              for key in ("sha256", "context_sha256"))):
        if not ok:
            raise CheckpointError(f"{where}: {message}")


#: The smallest scale data give relative to their mean: distinct float64 values near ``shift`` are at
#: least ``|shift| * 2**-53`` apart, so the standard deviation of up to 2**40 rows holding two of them
#: is above ``|shift| * 2**-73``; a smaller scale (or a subnormal one) was never fitted to data.
MIN_RELATIVE_SCALE = 2.0 ** -80


def _check_standardisation(p, shift, scale) -> None:
    """Refuse a real model's standardisation that no data give: a scale that is not a positive normal
    number at least :data:`MIN_RELATIVE_SCALE` times ``|shift|`` (``shift + scale * z`` would round
    every draw to ``shift``, and every NLL would blame the data for lying 1e12 standard deviations
    off). Non-finite entries are refused when they are read."""
    low = np.maximum(np.abs(shift) * MIN_RELATIVE_SCALE, np.finfo(np.float64).tiny)
    bad = np.flatnonzero(~(scale >= low))
    if bad.size:
        d = int(bad[0])
        raise CheckpointError(f"{p}: entry 'scale' holds {scale[d]:.6g} for variable {d} (shift {shift[d]:.6g}): "
                              "not a standardisation fitted to data (a positive scale, at least 2**-80 of "
                              "|shift|); the checkpoint is corrupt")


def param_shapes(cfg: MADEConfig) -> dict:
    """``{name: shape}`` of the parameters of the MADE of ``cfg`` (:attr:`MADE.param_names` order),
    computed without building it."""
    widths = layer_widths(cfg)
    shapes = {}
    for i in range(len(widths) - 1):
        shapes[f"W{i}"] = (widths[i], widths[i + 1])
        shapes[f"b{i}"] = (widths[i + 1],)
    if cfg.direct:
        shapes["A"] = (widths[0], widths[-1])
    if cfg.context and cfg.hidden:
        shapes["U1"] = (cfg.context, widths[1])
    if cfg.context:
        shapes["UV"] = (cfg.context, widths[-1])
    return shapes


def _check_entries(archive: Npz, cfg: MADEConfig) -> None:
    """Check every entry's name and declared shape and dtype against the model of ``cfg``, reading
    headers only."""
    p, shapes = archive.file, param_shapes(cfg)
    real = HEADS[cfg.head].real
    known = set(shapes) | {f"best_{n}" for n in shapes} | {"config"} | ({"shift", "scale"} if real else set())
    unknown = [n for n in archive.members if n not in known and not _OPT_ENTRY.match(n)]
    if unknown:
        raise CheckpointError(f"{p}: unknown entry '{unknown[0]}' (not read): a checkpoint of this model holds "
                              f"{', '.join(shapes)}, best_*, opt_* and config; the checkpoint is corrupt or "
                              "not made-np's")
    missing = [n for n in [*shapes, *(("shift", "scale") if real else ())] if n not in archive.members]
    if missing:
        raise CheckpointError(f"{p}: checkpoint is missing parameter '{missing[0]}'")
    lacking = [n for n in shapes if f"best_{n}" not in archive.members]
    if 0 < len(lacking) < len(shapes):
        raise CheckpointError(f"{p}: checkpoint holds best weights but lacks entry 'best_{lacking[0]}'")
    largest = max(math.prod(s) for s in shapes.values())
    for name in archive.members:
        if name == "config":
            continue
        shape, dtype = archive.header(name)
        where = f"{p}: entry '{name}'"
        if name.startswith("opt_"):
            if dtype.kind not in "biuf" or len(shape) > 2 or math.prod(shape) > largest:
                raise CheckpointError(f"{where} is {dtype} of shape {shape}: an optimiser entry is a real array "
                                      f"no larger than the largest parameter ({largest} values)")
            continue
        expected = (cfg.D,) if name in ("shift", "scale") else shapes[name[5:] if name.startswith("best_") else name]
        if dtype.kind != "f":
            raise CheckpointError(f"{where} has dtype {dtype}; expected float32 or float64 weights")
        if shape != expected:
            raise CheckpointError(f"{where} has shape {shape}, but the model's configuration (D = {cfg.D}, "
                                  f"hidden {list(cfg.hidden)}, {cfg.classes} classes) needs {expected}")


def _read_entry(archive: Npz, name: str, dtype: str) -> np.ndarray:
    """Read an entry whose header :func:`_check_entries` accepted; floats must be finite once cast to
    ``dtype``, the model's (1e300 in a float64 entry of a float32 model is infinite there)."""
    a = archive.read(name)
    if a.dtype.kind == "f":
        with np.errstate(over="ignore"):
            bad = int(a.size - np.count_nonzero(np.isfinite(a.astype(dtype, copy=False))))
        if bad:
            where = "" if a.dtype == dtype else f" in the model's {dtype}"
            raise CheckpointError(f"{archive.file}: entry '{name}' has {bad} NaN/inf value{'s' if bad > 1 else ''}"
                                  f"{where}; the checkpoint is corrupt")
    return a


def _read_checkpoint(p: Path, *, memory_limit: int | None = None):
    """Open, validate and read a checkpoint file.

    Returns ``(arrays, meta, model_config, train_config)``: every entry but ``config`` as an
    array, the parsed JSON config and the two configurations. Raises CheckpointError (or :class:`made_np.limits.LimitError` when the
    model needs more than ``memory_limit`` bytes) before any array but the config is read.
    """
    with _open_archive(p) as archive:
        meta = _read_meta(archive)
        model_config, train_config = _check_meta(p, meta)
        _check_entries(archive, model_config)
        if memory_limit is not None:
            try:
                check(model_parts(model_config, label=f"{p} (D = {model_config.D}, hidden "
                                  f"{list(model_config.hidden)}, {model_config.classes} classes)"), memory_limit)
            except LimitError as exc:
                raise LimitError(str(exc).replace(" needs about", ": the model needs about", 1)) from None
        arrays = {name: _read_entry(archive, name, "float64" if name in ("shift", "scale") else model_config.dtype)
                  for name in archive.members if name != "config"}  # the standardisation is float64 always
    return arrays, meta, model_config, train_config


def params_digest(params) -> str:
    """sha256 (hex) of a model's parameters (:attr:`MADE.params`, in order): how a resume knows
    that the model it continues holds the checkpoint's last weights."""
    h = hashlib.sha256()
    for p in params:
        h.update(np.ascontiguousarray(backend.to_host(p)).data)
    return h.hexdigest()


def load_checkpoint(path, device: str | None = None, *, best: bool = False, memory_limit: int | None = None):
    """Read a checkpoint written by :func:`save_checkpoint` (or a run folder holding ``model.npz``).

    Parameters
    ----------
    path : str or os.PathLike
    device : {"cpu", "cuda"} or None
        Where to build the model (``None``: ``$MADE_NP_DEVICE`` or cpu).
    best : bool, default False
        Load the best weights of an unfinished run instead of its latest ones
        (a finished run's parameters are already its best).
    memory_limit : int, optional
        Refuse (:class:`made_np.limits.LimitError`) a model that needs more bytes than
        this (:func:`made_np.limits.model_parts`), before reading its weights.

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
        contents (one-line message naming the file and the entry): the JSON config
        is validated as strictly as user input (types, bounds, names; the data set's
        D, classes and image shape against the model's), every entry's ``.npy``
        header is checked before anything is read (unknown entries, object dtypes,
        sizes larger than the zip member, shapes and dtypes that do not match the
        model), and the weights must be finite.
    made_np.limits.LimitError
        The model needs more memory than ``memory_limit``.
    made_np.backend.BackendChoiceError
        An unknown ``device`` name (a ``ValueError``).
    made_np.backend.BackendError
        ``device="cuda"`` without CuPy or a usable GPU.
    """
    memory_limit = None if memory_limit is None else check_int("memory_limit (bytes)", memory_limit, 1)
    best = check_bool("best", best)
    p = resolve_checkpoint_path(path)
    arrays, meta, model_config, train_config = _read_checkpoint(p, memory_limit=memory_limit)
    model = MADE(model_config, backend.get_xp(device), draw_weights=False)
    best_params = ({n: arrays[f"best_{n}"] for n in model.param_names}  # all of them or none (_check_entries)
                   if f"best_{model.param_names[0]}" in arrays else None)
    use_best = best and best_params is not None
    # names, shapes and finite values were checked as they were read (_check_entries, _read_entry)
    model._load_state(best_params if use_best else arrays)
    if model.head.real:
        _check_standardisation(p, arrays["shift"], arrays["scale"])
        model.set_standardisation(arrays["shift"], arrays["scale"])
    opt_state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")} or None
    info = {"path": str(p), "config": meta, "model_config": model_config, "train_config": train_config,
            **{k: meta.get(k) for k in ("dataset", "history", "state", "results")},
            "version": meta.get("made_np_version"), "optimizer": opt_state, "best_params": best_params,
            # the weights the model was given: a resume continues only these (the last ones)
            "loaded_best": use_best, "params_sha256": None if use_best else params_digest(model.params)}
    return model, info


# =========================================================================== resuming


def _show(value) -> str:
    """A stored value as a one-line message shows it: ``'3'``, ``null``, ``1.5``, ``an array of shape (2,)``."""
    if isinstance(value, np.ndarray):
        if value.ndim:
            return f"an array of shape {tuple(value.shape)}"
        value = value.item()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return "an object"
    return short(value, 40)


def check_resume_state(model: MADE, cfg: TrainConfig, info: dict) -> None:
    """Check what a resume reads from a checkpoint, before any training.

    ``info`` is the second result of :func:`made_np.checkpoint.load_checkpoint`. Checked:
    the training state (``state.epoch``, ``state.step``, ``state.best_epoch``: integers
    ``>= 0``; ``state.best_valid_nll``: a number; ``state.finished``: a boolean), the
    optimiser (the one ``cfg`` names; its ``opt_t`` a non-negative integer, ``opt_lr`` a
    positive number, every state buffer present, of its parameter's shape and finite,
    none of another optimiser), the best weights (``best_*``: the parameters' shapes,
    finite), the history (``history.rows``: one row per epoch ``1 .. state.epoch``) and the facts
    of the training that a resume keeps (:data:`RESUME_FIXED`: ``cfg.batch_size`` and the others equal
    to those of ``info["train_config"]``; ``made-np train --resume`` keeps them all).

    Raises
    ------
    made_np.checkpoint.CheckpointError
        One line naming the file and the entry, e.g. ``model.npz: entry 'best_W0' has
        shape (3, 4), expected (64, 500)``, or the configuration's field, e.g. ``model.npz:
        batch_size = 50, but the run was trained with batch_size = 100; ...``.

    :func:`made_np.train.fit` calls it before it resumes; ``made-np train --resume`` calls it
    before it loads the data, and then has ``fit`` take the state as checked.
    """
    check_info(info)
    where = info.get("path") or "checkpoint"

    def bad(entry, message):
        raise CheckpointError(f"{where}: entry '{entry}' {message}")

    if info.get("loaded_best"):
        raise CheckpointError(f"{where}: the model was loaded with its best weights (best=True); a resume "
                              "continues the last ones: load_checkpoint(path) and resume that model")
    if info.get("params_sha256") and params_digest(model.params) != info["params_sha256"]:
        raise CheckpointError(f"{where}: the model to resume does not hold this checkpoint's weights (another "
                              "model, or one trained since it was loaded); resume the model that "
                              "load_checkpoint(path) returns, with the info it returns")

    state = info.get("state")
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{where}: the checkpoint holds no training state to resume (entry 'state')")
    for key in ("epoch", "step", "best_epoch"):
        if not is_int(state.get(key)) or state[key] < 0:
            bad(f"state.{key}", f"is {_show(state.get(key))}, expected an integer >= 0")
    if state["epoch"] > MAX_EPOCHS:  # before anything sized by it (the history's epochs)
        bad("state.epoch", f"is {_show(state['epoch'])}, more than the {MAX_EPOCHS} epochs a run may have")
    epoch, best_nll = int(state["epoch"]), state.get("best_valid_nll")
    if state["best_epoch"] > epoch:
        bad("state.best_epoch", f"is {state['best_epoch']}, after the run's epoch {epoch}")
    if not is_real(best_nll) or math.isnan(best_nll) or (state["best_epoch"] and not math.isfinite(best_nll)):
        bad("state.best_valid_nll", f"is {_show(best_nll)}, expected a finite number")
    if not isinstance(state.get("finished"), bool):
        bad("state.finished", f"is {_show(state.get('finished'))}, expected true or false")
    if not state["finished"] and cfg.epochs is not None and cfg.epochs < epoch:  # it would claim fewer than it ran
        raise CheckpointError(f"{where}: epochs = {cfg.epochs} (--epochs) is fewer than the {epoch} epochs this run "
                              f"has trained; give at least {epoch} ({epoch} ends it at its saved epoch), or leave "
                              "it out")

    trained_cfg = info.get("train_config")
    for key in RESUME_FIXED if trained_cfg is not None else ():
        if getattr(cfg, key) != getattr(trained_cfg, key):
            raise CheckpointError(f"{where}: {key} = {getattr(cfg, key)!r}, but the run was trained with {key} = "
                                  f"{getattr(trained_cfg, key)!r}; resume with the configuration it was trained with "
                                  "(info['train_config'], changing only epochs, patience or lr)")
    recorded = (info.get("config") or {}).get("optimizer")
    trained = trained_cfg.optimizer if trained_cfg is not None else None
    for name in (recorded.lower().removeprefix("fast") if isinstance(recorded, str) else None, trained):
        if name is not None and name != cfg.optimizer:
            bad("optimizer", f"is {name!r}, but the run resumes with optimizer {cfg.optimizer!r} "
                             "(resume with the optimizer it was trained with)")
    opt = info.get("optimizer") or {}
    if epoch > 0 and not opt:
        bad("opt_t", "is missing (the checkpoint holds no optimizer state)")
    if opt:
        shapes = [tuple(p.shape) for p in model.params]
        buffers = {f"{n}{i}": shape for n in optimizer_class(cfg.optimizer).state_names
                   for i, shape in enumerate(shapes)}
        for key in sorted(set(opt) - set(buffers) - {"t", "lr"}):
            bad(f"opt_{key}", f"is not part of the state of optimizer {cfg.optimizer!r}")
        t, lr = (np.asarray(opt.get(k)) for k in ("t", "lr"))
        if "t" not in opt or t.ndim or t.dtype.kind not in "iu" or t < 0:
            bad("opt_t", f"is {_show(opt.get('t'))}, expected an integer >= 0")
        if "lr" not in opt or lr.ndim or lr.dtype.kind not in "iuf" or not 0 < float(lr) < math.inf:
            bad("opt_lr", f"is {_show(opt.get('lr'))}, expected a finite number > 0")
        nonnegative = optimizer_class(cfg.optimizer).nonnegative_state
        for key, shape in buffers.items():
            _check_array(bad, f"opt_{key}", opt.get(key), shape)
            if key.rstrip("0123456789") in nonnegative and (np.asarray(opt[key]) < 0).any():
                bad(f"opt_{key}", "holds negative values, but it sums squared gradients (>= 0)")
    best = info.get("best_params")
    if best is not None:
        for name, shape in zip(model.param_names, (tuple(p.shape) for p in model.params)):
            _check_array(bad, f"best_{name}", best.get(name), shape)

    history = info.get("history")
    if epoch > 0 and not isinstance(history, dict):
        bad("history", f"is {_show(history)}, expected the run's history")
    if isinstance(history, dict):
        rows = history.get("rows")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            bad("history.rows", f"is {_show(rows)}, expected a list of epochs")
        for i, row in enumerate(rows):
            for key in METRICS_COLUMNS:
                if not is_real(row.get(key)):
                    bad(f"history.rows[{i}].{key}", f"is {_show(row.get(key))}, expected a number")
        if len(rows) != epoch or [r["epoch"] for r in rows] != list(range(1, epoch + 1)):
            bad("history.rows", f"holds epochs {[r['epoch'] for r in rows][:6]}, expected 1 to {epoch}")


def check_info(info) -> None:
    """A ``resume_state`` is the info dict of :func:`load_checkpoint` (not its ``(model, info)`` pair)."""
    if not isinstance(info, dict):
        raise CheckpointError(f"resume_state must be the info dict that load_checkpoint returns (its second "
                              f"value), got {type(info).__name__}")


def _check_array(bad, entry: str, value, shape: tuple) -> None:
    if value is None:
        bad(entry, "is missing")
    value = np.asarray(value)
    if tuple(value.shape) != shape:
        bad(entry, f"has shape {tuple(value.shape)}, expected {shape}")
    if value.dtype.kind not in "iuf":
        bad(entry, f"has dtype {value.dtype}, expected floating point numbers")
    if not np.isfinite(value).all():
        bad(entry, "holds values that are not finite (NaN or infinity)")


def finished_run_blocker(state: dict, cfg: TrainConfig):
    """Why the finished run of training state ``state`` does not train on under ``cfg``; None when it does.

    It does when ``cfg.epochs`` exceeds the epochs it trained and its patience would
    not stop it at once.

    Returns
    -------
    (str, str) or None
        The field of ``cfg`` to raise (``"epochs"`` or ``"patience"``) and why, in words.
    """
    epoch, best_epoch = int(state["epoch"]), int(state["best_epoch"])
    if cfg.epochs <= epoch:
        return "epochs", f"it trained {epoch} epochs, and {cfg.epochs} are asked for"
    if cfg.patience and epoch - best_epoch >= cfg.patience:
        return "patience", (f"it stopped early at epoch {epoch}, {epoch - best_epoch} epochs after its best epoch "
                            f"{best_epoch}, and the patience is {cfg.patience}")
    return None
