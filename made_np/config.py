"""Everything that defines a run: the model's and the training's configuration, and the recipe.

:class:`MADEConfig` and :class:`TrainConfig` are stored as JSON in checkpoints. The
*recipe* (default learning rate by optimiser, schedule, epochs, per-data-set
defaults) lives here, in the library, so that ``made-np train`` and
``fit(model, data, TrainConfig())`` give the same run:
:meth:`MADEConfig.for_data` and :meth:`TrainConfig.for_data` fill in what a data
set implies, and :meth:`TrainConfig.resolved` the defaults left open.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from . import backend
from .heads import HEADS, default_head
from .layers import ACTIVATIONS
from .masks import BANK_ORDERINGS, DEGREE_RULES, ORDERINGS
from .optim import OPTIMIZERS

ENCODINGS = ("binary", "onehot", "raw", "scaled")
#: How a context (conditioning) vector enters: ``onehot`` class labels 0..context-1, or ``raw`` features.
CONTEXT_ENCODINGS = ("onehot", "raw")
LR_SCHEDULES = ("constant", "step", "cosine")
#: Training engines: ``fast`` (made_np.fast: block-sparse single-mask form, fused head,
#: in-place optimisers, thread pool) and ``reference`` (the plain MADE and textbook optimisers).
ENGINES = ("fast", "reference")

# --------------------------------------------------------------------------- the recipe

#: Default learning rate by optimiser. Adam at 2e-3 with the cosine schedule beats the
#: textbook constant 1e-3 on binarized MNIST (94.1 vs 94.85 test nats at 1x500).
DEFAULT_LR = {"adam": 2e-3, "adagrad": 1e-2, "sgd": 1e-2}
#: Default number of epochs by data set name: the small digits set needs many passes;
#: binarized MNIST reaches its best test NLL at the end of a 50-epoch cosine schedule.
DEFAULT_EPOCHS = {"digits": 200}
DEFAULT_EPOCHS_OTHER = 50
#: Model defaults by data set name. On the 2-D table a bank of 32 masks over scaled
#: inputs smooths the conditionals enough to reach KL(p_true || p_model) = 0.016 nats;
#: one-hot inputs reach 0.021 at best (docs/two_d.md).
DATASET_DEFAULTS = {"2d": {"hidden": (100, 100), "input_encoding": "scaled", "num_masks": 32}}


def default_encoding(classes: int) -> str:
    """How a variable of ``classes`` classes enters the network by default: binary for 0/1
    data, onehot otherwise."""
    return "binary" if classes == 2 else "onehot"


class StrictConfig:
    """What the configuration dataclasses share: first-failure validation and a strict ``from_dict``.

    Subclasses are dataclasses that set ``_kind`` (used in error messages) and build
    their list of ``(ok, message)`` checks in ``validate``.
    """

    _kind = "configuration"

    @staticmethod
    def _raise_first(checks) -> None:
        """Raise ValueError with the message of the first failed ``(ok, message)`` check."""
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def from_dict(cls, d: dict):
        """Inverse of ``to_dict``; unknown keys are an error (ValueError)."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls._kind} configuration keys: {sorted(unknown)}")
        return cls(**d)


@dataclass
class MADEConfig(StrictConfig):
    """Everything that defines a MADE; stored as JSON inside checkpoints.

    Attributes
    ----------
    D : int
        Number of variables.
    hidden : tuple of int
        Hidden layer widths, e.g. ``(500,)`` or ``(500, 500)``; may be empty.
    classes : int
        Classes per variable: 2 for binary data.
    head : {"bernoulli", "categorical"}
        Sigmoid conditionals with BCE, or softmax conditionals with cross-entropy.
    input_encoding : {"binary", "onehot", "raw", "scaled"}
        How a variable enters the network: its 0/1 value, a one-hot block of
        ``classes`` columns, its integer value, or its value scaled to [0, 1].
    ordering : {"natural", "random"}
        Ordering of mask 0. ``given_ordering`` (a permutation of 1..D) overrides it.
    degrees : {"random", "equal"}
        Hidden degree rule (:func:`made_np.masks.hidden_degrees`).
    num_masks : int
        Size of the mask bank; 1 is a single fixed mask; 0 means no limit.
    order_agnostic, connectivity_agnostic : bool
        Whether masks beyond mask 0 resample the ordering and the hidden degrees
        (paper Secs. 4.1-4.2). Irrelevant when ``num_masks == 1``.
    direct : bool
        Direct input-to-output connections (paper eq. 11).
    activation : {"relu", "leaky_relu"}
    seed : int
        Seed of the initial weights and of the mask bank.
    dtype : {"float32", "float64"}
    context : int, default 0
        Width of the context (conditioning) vector ``y`` of ``p(x | y)``; 0: an unconditional
        model. It enters as inputs of degree 0 (docs/math.md, "Context inputs"): an unmasked
        block ``U1`` into the first hidden layer and an unmasked block ``UV`` into the logits.
    context_encoding : {"onehot", "raw"}, default "onehot"
        ``onehot``: the context is a class label in 0..context-1, one-hot encoded (``context``
        is the number of classes); ``raw``: a float vector of width ``context``, used as it is.
    orderings : {"uniform", "segments"}, default "uniform"
        The orderings of an order-agnostic bank (masks beyond mask 0): uniform permutations
        (the paper), or half of them segment-first (:func:`made_np.masks.segment_ordering`),
        which trains the one-half-given-the-other conditionals of top/bottom completions.
    """

    D: int
    hidden: tuple = (500,)
    classes: int = 2
    head: str = "bernoulli"
    input_encoding: str = "binary"
    ordering: str = "natural"
    given_ordering: tuple | None = None
    degrees: str = "random"
    num_masks: int = 1
    order_agnostic: bool = True
    connectivity_agnostic: bool = True
    direct: bool = False
    activation: str = "relu"
    seed: int = 0
    dtype: str = "float32"
    context: int = 0
    context_encoding: str = "onehot"
    orderings: str = "uniform"

    _kind = "model"

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.given_ordering is not None:
            self.given_ordering = tuple(int(o) for o in self.given_ordering)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        checks = [
            (self.D >= 1, f"D must be >= 1, got {self.D}"),
            (all(h >= 1 for h in self.hidden), f"hidden widths must be >= 1, got {self.hidden}"),
            (self.classes >= 2, f"classes must be >= 2, got {self.classes}"),
            (self.head in HEADS, f"unknown head {self.head!r}: choose one of {', '.join(HEADS)}"),
            (self.input_encoding in ENCODINGS,
             f"unknown input encoding {self.input_encoding!r}: choose one of {', '.join(ENCODINGS)}"),
            (self.input_encoding != "binary" or self.classes == 2,
             f"input encoding 'binary' needs 2 classes, got {self.classes}: use onehot, raw or scaled"),
            (self.head not in HEADS or HEADS[self.head].check_classes(self.classes) is None,
             self.head in HEADS and HEADS[self.head].check_classes(self.classes)),
            (self.ordering in ORDERINGS, f"unknown ordering {self.ordering!r}: choose one of {', '.join(ORDERINGS)}"),
            (self.degrees in DEGREE_RULES, f"unknown degree rule {self.degrees!r}: choose one of {', '.join(DEGREE_RULES)}"),
            (self.num_masks >= 0, f"num_masks must be >= 0 (0 = no limit), got {self.num_masks}"),
            (self.activation in ACTIVATIONS,
             f"unknown activation {self.activation!r}: choose one of {', '.join(ACTIVATIONS)}"),
            (self.context >= 0, f"context width must be >= 0 (0: no context), got {self.context}"),
            (self.context_encoding in CONTEXT_ENCODINGS,
             f"unknown context encoding {self.context_encoding!r}: choose one of {', '.join(CONTEXT_ENCODINGS)}"),
            (self.orderings in BANK_ORDERINGS,
             f"unknown bank orderings {self.orderings!r}: choose one of {', '.join(BANK_ORDERINGS)}"),
        ]
        self._raise_first(checks)
        backend.resolve_dtype(self.dtype)

    @classmethod
    def for_data(cls, dataset, **overrides) -> "MADEConfig":
        """The configuration a data set implies, with ``overrides`` on top.

        Fills ``D``, ``classes``, ``head`` (:func:`made_np.heads.default_head`) and
        ``input_encoding`` (:func:`default_encoding`) from ``dataset`` (anything with
        ``D``, ``classes`` and ``name``, e.g. :class:`made_np.data.Dataset`), and
        ``context``/``context_encoding`` when it carries a context (``context_width > 0``),
        then the data set's entry of :data:`DATASET_DEFAULTS`, then ``overrides``.

        Raises
        ------
        ValueError
            An invalid field or an unknown override.
        """
        values = {"D": int(dataset.D), "classes": int(dataset.classes),
                  "head": default_head(int(dataset.classes)),
                  "input_encoding": default_encoding(int(dataset.classes))}
        if int(getattr(dataset, "context_width", 0) or 0) > 0:
            values["context"] = int(dataset.context_width)
            values["context_encoding"] = dataset.context_encoding
        values.update(DATASET_DEFAULTS.get(getattr(dataset, "name", None), {}))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["given_ordering"] = None if self.given_ordering is None else list(self.given_ordering)
        return d


@dataclass
class TrainConfig(StrictConfig):
    """How to train; stored as JSON inside checkpoints.

    Attributes
    ----------
    epochs : int or None
        Most passes over the training set (early stopping usually ends sooner).
        ``None``: the recipe's (:meth:`resolved`).
    batch_size : int, default 100
        Examples per minibatch (the last minibatch of an epoch may be smaller).
    optimizer : {"adam", "adagrad", "sgd"}, default "adam"
        The paper used Adagrad; Adam converges faster here.
    lr : float or None
        Base learning rate; ``None``: the recipe's (:data:`DEFAULT_LR`: adam 2e-3,
        adagrad 1e-2, sgd 1e-2).
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
    lr_schedule : {"constant", "step", "cosine"}, default "cosine"
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
    engine : {"fast", "reference"}, default "fast"
        What trains the model (:data:`ENGINES`); both give the same numbers up to rounding.
    """

    epochs: int | None = None
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float | None = None
    weight_decay: float = 0.0
    patience: int = 30
    resample_every: int = 1
    valid_masks: int | None = None
    eval_masks: int | None = None
    lr_schedule: str = "cosine"
    lr_step: int = 50
    seed: int = 0
    log_every: int = 20
    eval_batch_size: int = 1000
    engine: str = "fast"

    _kind = "training"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        checks = [
            (self.epochs is None or self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
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
            (self.engine in ENGINES, f"unknown engine {self.engine!r}: choose one of {', '.join(ENGINES)}"),
        ]
        self._raise_first(checks)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def for_data(cls, dataset, **overrides) -> "TrainConfig":
        """The recipe's training configuration for ``dataset``, with ``overrides`` on top
        (``None`` values are left to the recipe); see :meth:`resolved`.

        Raises
        ------
        ValueError
            An invalid field or an unknown override.
        """
        return cls.from_dict({k: v for k, v in overrides.items() if v is not None}).resolved(dataset)

    def resolved(self, dataset=None) -> "TrainConfig":
        """A copy with the defaults left open filled in from the recipe.

        ``lr``: :data:`DEFAULT_LR` of the optimiser; ``epochs``: :data:`DEFAULT_EPOCHS`
        of the data set's name (``dataset.name``), else :data:`DEFAULT_EPOCHS_OTHER`.
        """
        name = getattr(dataset, "name", None)
        return replace(
            self,
            lr=DEFAULT_LR[self.optimizer] if self.lr is None else self.lr,
            epochs=DEFAULT_EPOCHS.get(name, DEFAULT_EPOCHS_OTHER) if self.epochs is None else self.epochs,
        )

    def lr_at(self, base_lr: float, epoch: int) -> float:
        """Learning rate of ``epoch`` (1-based) under :attr:`lr_schedule`."""
        if self.lr_schedule == "step":
            return base_lr * 0.5 ** ((epoch - 1) // self.lr_step)
        if self.lr_schedule == "cosine":
            return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / self.epochs))
        return base_lr
