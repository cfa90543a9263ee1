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
from dataclasses import MISSING, asdict, dataclass, field, fields, replace

import numpy as np

from . import backend
from .checks import (MAX_SEED, check_bool, check_choice, check_int, describe, is_int, is_real, observed_entries, range_message,
                     short)
from .data import MAX_CLASSES  # noqa: F401  (most classes per variable: each value is a one-hot input)
from .heads import HEADS, default_head
from .layers import ACTIVATIONS, INITS
from .masks import BANK_ORDERINGS, DEGREE_RULES, ORDERINGS
from .optim import OPTIMIZERS, optimizer_class

ENCODINGS = ("binary", "onehot", "raw", "scaled")
#: How a context (conditioning) vector enters: ``onehot`` class labels 0..context-1, or ``raw`` features.
CONTEXT_ENCODINGS = ("onehot", "raw")
LR_SCHEDULES = ("constant", "step", "cosine")
#: Training engines: ``fast`` (made_np.fast: block-sparse single-mask form, fused head,
#: in-place optimisers, thread pool) and ``reference`` (the plain MADE and textbook optimisers).
ENGINES = ("fast", "reference")
#: How a new run starts the output biases: at the logits of the training data's smoothed
#: marginals (:func:`made_np.train.start_at_marginals`), or at 0 (the paper's code).
OUTPUT_BIASES = ("marginals", "zero")

# --------------------------------------------------------------------------- bounds
# Absolute bounds of the configuration fields: far beyond any sensible run, they keep
# a corrupt checkpoint or a typo from reaching the allocator. Whether a model fits in
# memory is the business of made_np.limits, which the commands ask before building it.

#: Most variables (D) of a model.
MAX_D = 10**7
#: Most units of a hidden layer.
MAX_WIDTH = 10**7
#: Most hidden layers.
MAX_LAYERS = 100
#: Size of the largest mask bank (masks are rebuilt from (seed, index) on demand).
MAX_NUM_MASKS = 10**6
#: ``num_masks`` of a bank without limit (a fresh mask at every resample), as it is spelled:
#: ``float("inf")`` or the text ``"inf"`` (``--num-masks inf``). A configuration stores it as 0, the
#: value of older checkpoints and calls, which keeps its meaning.
UNLIMITED = math.inf
#: Most Gaussians per variable of the mog head.
MAX_COMPONENTS = 1000
#: Gaussians per variable of the mog head by default (docs/math.md Sec. 13: measured on
#: standardised wine and the 2-D moons, K in {3, 5, 10}).
DEFAULT_COMPONENTS = 5
#: Most masks in an evaluation or validation ensemble (each one is a pass over the data).
MAX_EVAL_MASKS = 100_000
#: Most epochs, patience and lr_step.
MAX_EPOCHS = 10**7
#: Most rows of a minibatch or evaluation batch, and minibatches between mask changes or logs.
MAX_COUNT = 10**9

# --------------------------------------------------------------------------- the recipe

#: The training budget, in parameter updates: ``epochs`` = this many updates, rounded up to
#: whole epochs and kept within :data:`EPOCHS_RANGE`. Binarized MNIST (500 updates an epoch)
#: gets 50 epochs, where the cosine schedule reaches 94.1 test nats at 1x500; a small data
#: set gets many more epochs, and early stopping on the validation NLL (``patience``) ends
#: the run when it starts to overfit (docs/experiments.md, "Defaults").
UPDATES_BUDGET = 25_000
EPOCHS_RANGE = (50, 1000)
#: Epochs when the size of the training set is unknown.
DEFAULT_EPOCHS_OTHER = 50
#: Training sets of fewer rows than this get a bank of :data:`SMALL_DATA_MASKS` order- and
#: connectivity-agnostic masks (ensembled at test time): on little data the bank is a strong
#: regulariser (binarized MNIST, 1,400 rows: 111.7 test nats against 129.9 for one mask; 16 masks
#: did as well as 32 or better: 111.7 against 112.7, digits 16.47 against 16.50, at half the cost);
#: on a large one a single mask trains faster to a better NLL (docs/experiments.md, "Defaults").
SMALL_DATA_ROWS = 10_000
SMALL_DATA_MASKS = 16
#: Direct input-to-output connections (paper eq. 11): on by default, as in every run of the paper
#: (binarized MNIST 1x500, 50 epochs: 91.66 test nats with them, 94.07 without).
DEFAULT_DIRECT = True
#: Named protocols: ``(model settings, training settings)`` applied over the recipe, under the
#: settings given explicitly. ``paper``: the MADE paper's protocol (Sec. 6.1) as its code ran it:
#: Adagrad at a constant learning rate 0.01 (eps 1e-6 inside the root), orthogonal initial
#: weights, a random ordering for mask 0 (binarized MNIST 1x8000, one mask: 88.43 test nats
#: against 89.21 in the natural order, docs/experiments.md), minibatches of 100, early stopping
#: with a look-ahead of 30 epochs (at most 1000 epochs), direct connections; the mask settings
#: are the ones given (else the recipe's).
PRESETS = {
    "paper": ({"direct": True, "init": "orthogonal", "ordering": "random"},
              {"optimizer": "adagrad", "lr": 1e-2, "lr_schedule": "constant", "batch_size": 100,
               "patience": 30, "epochs": 1000, "output_bias": "zero"}),
}


def _preset(name, part: int) -> dict:
    return {} if name is None else dict(PRESETS[check_choice("preset", name, PRESETS)][part])
#: Real-valued training sets of at least :data:`SMALL_DATA_ROWS` rows (the 2-D densities: 20,000
#: rows) get two hidden layers of 256 units and 20 Gaussians per variable; with at most
#: :data:`FEW_ORDERINGS_D` variables (at most 24 orderings) also a fresh order-agnostic mask every
#: minibatch, so the test ensemble averages over the orderings. Validation NLL, seed 0, against
#: (500,), K = 5, one mask: moons 2.3929 against 2.4093, checkerboard 3.522 (two layers, one mask)
#: against 3.684 (docs/experiments.md, "Real-valued data").
LARGE_REAL_DEFAULTS = {"hidden": (256, 256), "components": 20}
#: A real column's atom (:func:`_atom_choice`) is a value that at least ``ATOM_SHARE`` of its
#: observed training rows hold exactly, and at least ``ATOM_RATIO`` times the rows of the column's
#: median value: a point mass stands out of continuous values (each held by one row), where the
#: most frequent value of a column recorded on a grid does not (iris' petal width 0.2 cm: 20% of
#: the rows, 4-6 times its median value's). A zero-inflated column (30% zeros) made the mixture
#: chase its spike with a component of the narrowest scale, which each update moved off it:
#: training oscillated and stopped early at a test NLL of -3.04 nats; pinned, it trains smoothly
#: to -3.82 (a 30,000-row table of five columns; docs/experiments.md, "Atoms").
ATOM_SHARE = 0.10
ATOM_RATIO = 10
FEW_ORDERINGS_D = 4
#: Early stopping's look-ahead, in epochs (the paper's 30), and for real-valued data at least
#: :data:`REAL_PATIENCE_UPDATES` parameter updates: ``max(30, ceil(500 / minibatches per epoch))``
#: (:func:`default_patience`). At minibatches of 100 that is 500 epochs up to 100 training rows,
#: 250 at 101-200, 100 at 401-500 and 30 from 1,601 rows on, whatever D. A small set's validation split is a few
#: dozen rows and its epoch two to five updates: 30 epochs stopped the runs while the NLL still
#: fell (test NLL, mean of 5 splits: iris 2.480 -> 1.779, diabetes 27.683 -> 26.626; wine 20.33 ->
#: 20.90 within its standard error; on 8 generated sets of 240-1,600 rows as good or better within
#: the noise; docs/experiments.md, "Small real-valued sets").
DEFAULT_PATIENCE = 30
REAL_PATIENCE_UPDATES = 500
#: Model defaults by data set name. On the 2-D table a bank of 32 masks over scaled
#: inputs smooths the conditionals enough to reach KL(p_true || p_model) = 0.016-0.018 nats;
#: one-hot inputs reach 0.021 at best (docs/two_d.md).
DATASET_DEFAULTS = {"2d": {"hidden": (100, 100), "input_encoding": "scaled", "num_masks": 32}}


def size_recipe(dataset) -> str:
    """The recipe the size of ``dataset``'s training set chooses, the one rule by size: ``"small"``
    (1 to :data:`SMALL_DATA_ROWS` - 1 rows: a bank of :data:`SMALL_DATA_MASKS` masks), ``"large"``
    (:data:`SMALL_DATA_ROWS` rows or more: one mask; real values also :data:`LARGE_REAL_DEFAULTS`),
    ``"unknown"`` (no ``(N, D)`` ``train`` array: one mask). Both sizes train with Adam at 2e-3,
    cosine-annealed over :func:`budget_epochs`, and stop early: on 500 to 5,000 MNIST rows and the
    digits that beat a fresh mask per minibatch and a constant lr 1e-2 (docs/experiments.md, "The
    recipe for small data").

    Parameters
    ----------
    dataset : made_np.data.Dataset or None
        Anything with a ``train`` array of shape (N, D); its N rows decide.

    Returns
    -------
    str
        ``"small"``, ``"large"`` or ``"unknown"``.
    """
    rows = _train_rows(dataset)
    return "unknown" if rows < 1 else "small" if rows < SMALL_DATA_ROWS else "large"


def recipe_summary(dataset) -> str:
    """Which recipe :func:`size_recipe` chose for ``dataset``, in words for a run's output, e.g.
    ``"the recipe for small data (under 10,000 training rows)"``.

    Parameters
    ----------
    dataset : made_np.data.Dataset or None
        As for :func:`size_recipe`.

    Returns
    -------
    str
        One phrase, no line end.
    """
    return {"small": f"the recipe for small data (under {SMALL_DATA_ROWS:,} training rows)",
            "large": f"the recipe for large data ({SMALL_DATA_ROWS:,} training rows or more)"}.get(
        size_recipe(dataset), "the recipe for data of unknown size")


def default_num_masks(dataset) -> int:
    """The recipe's mask bank for ``dataset`` (:func:`size_recipe`): :data:`SMALL_DATA_MASKS` masks
    for a small training set, else 1; data with missing entries (NaN) in any split, which train and
    are scored through observed-first masks, no limit (a fresh order-agnostic mask every minibatch, as
    :class:`made_np.MADEImputer`) in place of the one mask."""
    if size_recipe(dataset) == "small":
        return SMALL_DATA_MASKS
    missing = any(observed_entries(getattr(dataset, split, None)) is not None for split in ("train", "valid", "test"))
    return UNLIMITED if missing else 1


def default_patience(dataset, batch_size: int) -> int:
    """The recipe's early-stopping look-ahead (epochs) for ``dataset``: :data:`DEFAULT_PATIENCE`, and
    for real-valued data (``classes == 0``) at least :data:`REAL_PATIENCE_UPDATES` updates,
    ``max(30, ceil(500 / ceil(train rows / batch_size)))``; 30 without a known training set."""
    rows = _train_rows(dataset)
    if rows < 1 or getattr(dataset, "classes", None) != 0:
        return DEFAULT_PATIENCE
    return max(DEFAULT_PATIENCE, -(-REAL_PATIENCE_UPDATES // -(-rows // int(batch_size))))


def budget_epochs(train_rows: int, batch_size: int) -> int:
    """Epochs of :data:`UPDATES_BUDGET` updates at ``batch_size``, within :data:`EPOCHS_RANGE`."""
    if train_rows < 1:
        return DEFAULT_EPOCHS_OTHER
    per_epoch = -(-int(train_rows) // int(batch_size))
    lo, hi = EPOCHS_RANGE
    return int(min(hi, max(lo, -(-UPDATES_BUDGET // per_epoch))))


def _train_rows(dataset) -> int:
    train = getattr(dataset, "train", None)
    return int(train.shape[0]) if getattr(train, "ndim", 0) == 2 else 0


def default_encoding(classes: int) -> str:
    """How a variable of ``classes`` classes enters the network by default: binary for 0/1
    data, raw (its standardised value) for real values (classes 0), onehot otherwise."""
    return "binary" if classes == 2 else "raw" if classes == 0 else "onehot"


def _field(default, kind, lo=None, hi=None):
    """A configuration field and what it holds, checked by :meth:`StrictConfig._check_types`: ``kind``
    int, real, bool, masks (a bank's size or inf), ints (a list of ints) or levels, with ``?`` when None
    is allowed, or the registry of the names it may take; integers within ``lo..hi``."""
    return field(default=default, metadata={"kind": kind, "lo": lo, "hi": hi})


class StrictConfig:
    """What the configuration dataclasses share: first-failure validation and a strict ``from_dict``.

    Subclasses are dataclasses that set ``_kind`` (used in error messages), declare each field with
    :func:`_field` and build their list of ``(ok, message)`` checks across fields in ``validate``.
    """

    _kind = "configuration"

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples, such as ``hidden`` and ``levels``, become lists)."""
        def plain(v):
            return [plain(a) for a in v] if isinstance(v, tuple) else v
        return {k: plain(v) for k, v in asdict(self).items()}

    @staticmethod
    def _raise_first(checks) -> None:
        """Raise ValueError with the message of the first failed ``(ok, message)`` check."""
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def from_dict(cls, d: dict):
        """Inverse of ``to_dict``; unknown keys, missing required keys and values of the wrong
        type are an error (ValueError naming the key)."""
        if not isinstance(d, dict):
            raise ValueError(f"the {cls._kind} configuration must be a JSON object (dict), got {describe(d)}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls._kind} configuration keys: {sorted(map(str, unknown))}")
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
                   and f.name not in d]
        if missing:
            raise ValueError(f"the {cls._kind} configuration lacks {missing[0]!r}")
        return cls(**d)

    def _check_types(self) -> None:
        """Raise ValueError naming the first field whose value has the wrong type, lies outside
        its bounds or is not one of its names (as declared by :func:`_field`); NumPy integers and bools
        become Python ones, lists of integers tuples."""
        for f in fields(self):
            name, kind, lo, hi = f.name, f.metadata["kind"], f.metadata["lo"], f.metadata["hi"]
            value = getattr(self, name)
            if not isinstance(kind, str):  # a registry of names
                if not isinstance(value, str):
                    raise ValueError(f"{name} must be a string, got {describe(value)}")
                check_choice(name, value, kind)
                continue
            if value is None and kind.endswith("?"):
                continue
            kind = kind.rstrip("?")
            if kind == "int":
                setattr(self, name, check_int(name, value, lo, hi))
            elif kind == "masks":  # a bank's size, or inf (no limit), which MADEConfig stores as 0
                try:
                    setattr(self, name, check_int(name, value, lo if is_int(value) and value == 0 else 1, hi))
                except ValueError as exc:
                    raise ValueError(f"{exc}; or inf for no limit") from None
            elif kind == "real":
                if not is_real(value):
                    raise ValueError(f"{name} must be a number, got {describe(value)}")
                if not math.isfinite(value):
                    raise ValueError(f"{name} must be finite, got {value}")
            elif kind == "levels":
                setattr(self, name, _check_levels(value, name))
            elif kind == "bool":
                setattr(self, name, check_bool(name, value))
            else:  # "ints": a list or tuple of integers in lo..hi
                if not isinstance(value, (list, tuple)):
                    raise ValueError(f"{name} must be a list of integers, got {describe(value)}")
                bad = [v for v in value if not is_int(v)]
                if bad:
                    raise ValueError(f"{name} must hold integers, got {describe(bad[0])} in {short(value)}")
                out = [v for v in value if v < lo or hi is not None and v > hi]
                if out:
                    raise ValueError(range_message(f"{name} entries", out[0], lo, hi))
                setattr(self, name, tuple(int(v) for v in value))


@dataclass
class MADEConfig(StrictConfig):
    """Everything that defines a MADE; stored as JSON inside checkpoints.

    The constructor is a literal description (its defaults are the plainest model: one mask,
    no direct connections); the recipe that ``made-np train`` applies lives in
    :meth:`for_data` (direct connections, a bank for small data, the data set's defaults).

    Attributes
    ----------
    D : int
        Number of variables.
    hidden : tuple of int
        Hidden layer widths, e.g. ``(500,)`` or ``(500, 500)``; may be empty.
    classes : int
        Classes per variable: 2 for binary data; 0 for real-valued data.
    head : {"bernoulli", "categorical", "mog", "gaussian"}
        Sigmoid conditionals with BCE, softmax conditionals with cross-entropy, or (real-valued
        data, ``classes == 0``) a mixture of ``components`` Gaussians or one Gaussian per variable.
    components : int, default 5
        Gaussians per variable of the ``mog`` head (ignored by the others).
    input_encoding : {"binary", "onehot", "raw", "scaled"}
        How a variable enters the network: its 0/1 value, a one-hot block of
        ``classes`` columns, its integer value, or its value scaled to [0, 1].
    ordering : {"natural", "random"}
        Ordering of mask 0. ``given_ordering`` (a permutation of 1..D) overrides it.
    degrees : {"random", "equal"}
        Hidden degree rule (:func:`made_np.masks.hidden_degrees`).
    num_masks : int or inf
        Size of the mask bank; 1 is a single fixed mask; ``inf`` (``float("inf")`` or ``"inf"``,
        :data:`UNLIMITED`) means no limit, a fresh mask at every resample. Stored as 0 (read back from
        older checkpoints and calls as the same no limit).
    order_agnostic, connectivity_agnostic : bool
        Whether masks beyond mask 0 resample the ordering and the hidden degrees
        (paper Secs. 4.1-4.2). Irrelevant when ``num_masks == 1``.
    direct : bool
        Direct input-to-output connections (paper eq. 11).
    activation : {"relu", "leaky_relu"}
    init : {"uniform", "orthogonal"}, default "uniform"
        Initial weights (:data:`made_np.layers.INITS`): uniform in ``+-1/sqrt(fan_in)``, or
        semi-orthogonal, as the paper's code initialised its binarized-MNIST networks.
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
    discrete_columns : tuple of int, default ()
        The ``mixed`` head's columns (increasing, in 0..D-1) with a softmax over their levels
        (docs/math.md Sec. 13, "Mixed conditionals"); empty for every other head.
    levels : tuple of tuple of float, default ()
        Each discrete column's levels: its distinct values, strictly increasing, finite, at most
        :data:`MAX_CLASSES` of them.
    atom_columns : tuple of int, default ()
        The real columns (increasing, in 0..D-1, none of them discrete) with atoms: values that a
        share of the rows hold exactly (a point mass, such as the zeros of a zero-inflated column);
        ``mog`` and ``mixed`` heads only (docs/math.md Sec. 13, "Atoms").
    atoms : tuple of tuple of float, default ()
        Each atom column's atoms in the data's units, strictly increasing, at most
        ``components - 1`` of them: component ``j`` of the column's mixture is pinned at atom ``j``
        with the head's narrowest scale (:meth:`made_np.model.MADE.set_standardisation`).
    """

    D: int = _field(MISSING, "int", 1, MAX_D)
    hidden: tuple = _field((500,), "ints", 1, MAX_WIDTH)
    classes: int = _field(2, "int", 0, MAX_CLASSES)
    head: str = _field("bernoulli", HEADS)
    input_encoding: str = _field("binary", ENCODINGS)
    ordering: str = _field("natural", ORDERINGS)
    given_ordering: tuple | None = _field(None, "ints?", 1, MAX_D)
    degrees: str = _field("random", DEGREE_RULES)
    num_masks: int = _field(1, "masks", 0, MAX_NUM_MASKS)
    order_agnostic: bool = _field(True, "bool")
    connectivity_agnostic: bool = _field(True, "bool")
    direct: bool = _field(False, "bool")
    activation: str = _field("relu", ACTIVATIONS)
    init: str = _field("uniform", INITS)
    seed: int = _field(0, "int", 0, MAX_SEED)
    dtype: str = _field("float32", backend.DTYPES)
    context: int = _field(0, "int", 0, MAX_WIDTH)
    context_encoding: str = _field("onehot", CONTEXT_ENCODINGS)
    orderings: str = _field("uniform", BANK_ORDERINGS)
    components: int = _field(DEFAULT_COMPONENTS, "int", 1, MAX_COMPONENTS)
    discrete_columns: tuple = _field((), "ints", 0, MAX_D - 1)
    levels: tuple = _field((), "levels")
    atom_columns: tuple = _field((), "ints", 0, MAX_D - 1)
    atoms: tuple = _field((), "levels")

    _kind = "model"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field: a value of the wrong type (an integer
        field given 64.5, "64" or true), outside its bounds (:data:`MAX_D`, :data:`MAX_WIDTH`,
        :data:`MAX_LAYERS`, :data:`MAX_CLASSES`, :data:`MAX_NUM_MASKS`, :data:`MAX_SEED`), or
        an unknown name."""
        n = self.num_masks  # inf (or "inf" in any case) is stored as 0, the stored no limit; others checked next
        if isinstance(n, str) and n.strip().lower() == "inf" or is_real(n) and n == UNLIMITED:
            self.num_masks = 0
        self._check_types()
        checks = [
            (len(self.hidden) <= MAX_LAYERS, f"hidden has {len(self.hidden)} layers; at most {MAX_LAYERS}"),
            (self.given_ordering is None or sorted(self.given_ordering) == list(range(1, self.D + 1)),
             f"given_ordering must be a permutation of 1..{self.D}, got {short(self.given_ordering)}"),
            (self.classes >= 2 or self.classes == 0, f"classes must be >= 2 (or 0: real values), got {self.classes}"),
            (self.classes != 0 or self.input_encoding == "raw",
             f"real-valued data (classes 0) enter as they are: input encoding 'raw', got {self.input_encoding!r}"),
            (self.input_encoding != "binary" or self.classes == 2,
             f"input encoding 'binary' needs 2 classes, got {self.classes}: use onehot, raw or scaled"),
            (HEADS[self.head].check_classes(self.classes) is None, HEADS[self.head].check_classes(self.classes)),
            (self.head != "mixed" or self.discrete_columns,
             "the mixed head needs discrete_columns (at least one); with none use the mog head"),
            (self.head == "mixed" or not self.discrete_columns,
             f"discrete_columns need the mixed head, got head {self.head!r}"),
            (list(self.discrete_columns) == sorted(set(self.discrete_columns)),
             f"discrete_columns must be increasing column indices without repeats, got {short(self.discrete_columns)}"),
            (all(d < self.D for d in self.discrete_columns),
             f"discrete_columns must lie in 0..{self.D - 1} (D = {self.D}), got {short(self.discrete_columns)}"),
            (len(self.levels) == len(self.discrete_columns),
             f"levels must hold one list per discrete column ({len(self.discrete_columns)}), got {len(self.levels)}"),
            (self.head in ("mog", "mixed") or not self.atom_columns,
             f"atom_columns need a mixture (head mog or mixed), got head {self.head!r}"),
            (list(self.atom_columns) == sorted(set(self.atom_columns) - set(self.discrete_columns))
             and all(d < self.D for d in self.atom_columns),
             f"atom_columns must be increasing real (not discrete) columns in 0..{self.D - 1} without repeats, "
             f"got {short(self.atom_columns)}"),
            (len(self.atoms) == len(self.atom_columns),
             f"atoms must hold one list per atom column ({len(self.atom_columns)}), got {len(self.atoms)}"),
            (all(len(a) < self.components for a in self.atoms),
             f"each atom column holds at most components - 1 = {self.components - 1} atoms, got {short(self.atoms)}"),
        ]
        self._raise_first(checks)

    @classmethod
    def for_data(cls, dataset, preset: str | None = None, **overrides) -> "MADEConfig":
        """The configuration a data set implies, with ``overrides`` on top.

        Fills ``D``, ``classes``, ``head`` (:func:`made_np.heads.default_head`),
        ``input_encoding`` (:func:`default_encoding`), direct connections
        (:data:`DEFAULT_DIRECT`), the size of the mask bank (:func:`default_num_masks`), for
        real-valued data of many rows :data:`LARGE_REAL_DEFAULTS` (and no mask limit for at most
        :data:`FEW_ORDERINGS_D` variables), and
        ``context``/``context_encoding`` when it carries a context (``context_width > 0``)
        from ``dataset`` (anything with ``D``, ``classes``, ``name`` and ``train``, e.g.
        :class:`made_np.data.Dataset`), then the data set's entry of
        :data:`DATASET_DEFAULTS`, then the ``preset`` (:data:`PRESETS`), then ``overrides``
        (``None`` values are left to the recipe); last, for real-valued data with a mixture head,
        the discrete columns' levels and the atoms (:func:`_atom_choice`) unless ``overrides`` give
        them (``atoms=(), atom_columns=()``: no atom).

        Raises
        ------
        ValueError
            A data set without integer ``D`` and ``classes`` (``classes >= 2``), or whose
            ``D`` is not the width of its ``train``; an invalid field, an unknown override or
            an unknown preset.
        """
        D = check_int("dataset.D", getattr(dataset, "D", None), 1, MAX_D)
        classes = check_int("dataset.classes", getattr(dataset, "classes", None), 0, MAX_CLASSES)
        if classes == 1:
            raise ValueError("dataset.classes must be >= 2 (or 0: real-valued data), got 1")
        width = getattr(getattr(dataset, "train", None), "shape", (None, D))[-1]
        if width != D:
            raise ValueError(f"dataset.D = {D}, but its train data have {width} columns")
        values = {"D": D, "classes": classes, "input_encoding": default_encoding(classes),
                  "direct": DEFAULT_DIRECT, "num_masks": default_num_masks(dataset)}
        if classes == 0 and size_recipe(dataset) == "large":
            values.update(LARGE_REAL_DEFAULTS, **({"num_masks": UNLIMITED} if D <= FEW_ORDERINGS_D else {}))
        if int(getattr(dataset, "context_width", 0) or 0) > 0:
            values["context"] = int(dataset.context_width)
            values["context_encoding"] = dataset.context_encoding
        values.update(DATASET_DEFAULTS.get(getattr(dataset, "name", None), {}))
        values.update(_preset(preset, 0))
        values.update({k: v for k, v in overrides.items() if v is not None})
        if classes == 0 and "levels" not in values:
            values.update(_discrete_choice(dataset, values.get("head"), values.pop("discrete_columns", "auto")))
        values.setdefault("head", default_head(classes))
        if classes == 0 and "atoms" not in values and "atom_columns" not in values:
            values.update(_atom_choice(dataset, values))
        _check_components_used(values["head"], overrides.get("components"), classes)
        return cls.from_dict(values)



def _check_levels(levels, name: str = "levels") -> tuple:
    """``levels`` (or ``atoms``, its ``name``) as a tuple of tuples of floats, after checking each is a
    strictly increasing list of 1..:data:`MAX_CLASSES` finite numbers (ValueError naming the first bad one)."""
    if not isinstance(levels, (list, tuple)) or not all(isinstance(v, (list, tuple)) for v in levels):
        raise ValueError(f"{name} must be a list of lists of numbers (one per {name[:-1]} column), got {short(levels)}")
    for j, v in enumerate(levels):
        if not (1 <= len(v) <= MAX_CLASSES and all(is_real(a) and math.isfinite(a) for a in v)
                and all(a < b for a, b in zip(v, v[1:]))):
            raise ValueError(f"{name}[{j}] must be 1..{MAX_CLASSES} finite numbers in increasing order, got {short(v)}")
    return tuple(tuple(float(a) for a in v) for v in levels)


def _check_components_used(head, components, classes: int) -> None:
    """Refuse ``components`` given for a head without a mixture (its logits per variable do not
    depend on K: gaussian, bernoulli, categorical), which would ignore it."""
    width = HEADS[head].outputs_per_variable if head in HEADS else None
    if components is not None and width is not None and width(classes, 1) == width(classes, 2):
        raise ValueError(f"components {components}: the Gaussians of a mixture (head mog or mixed), but the head "
                         f"{head} has no mixture and would ignore it: leave components out, or choose head mog")


def _atom_choice(dataset, values: dict) -> dict:
    """``atom_columns`` and ``atoms`` of real-valued data for a mixture head (mog or mixed, K >= 2
    components): in each real column, the values that at least :data:`ATOM_SHARE` of its observed
    training rows hold exactly, and :data:`ATOM_RATIO` times as many rows as the column's median
    value, the most frequent first, at most K - 1 (docs/math.md Sec. 13.2); none, ``{}``."""
    K = int(values.get("components", DEFAULT_COMPONENTS))
    train = getattr(dataset, "train", None)
    if values["head"] not in ("mog", "mixed") or K < 2 or getattr(train, "ndim", 0) != 2:
        return {}
    x, skip, found = np.asarray(train, dtype=np.float64), set(values.get("discrete_columns", ())), {}
    for d in sorted(set(range(x.shape[1])) - skip):  # once per run, one pass per column
        v, counts = np.unique(x[:, d][~np.isnan(x[:, d])], return_counts=True)
        top = np.argsort(-counts, kind="stable")[:K - 1]
        top = top[(counts[top] >= ATOM_SHARE * counts.sum()) & (counts[top] >= ATOM_RATIO * np.median(counts))]
        if top.size:
            found[d] = tuple(sorted(float(a) for a in v[top]))
    return {"atom_columns": tuple(found), "atoms": tuple(found.values())} if found else {}


def _discrete_choice(dataset, head, columns) -> dict:
    """The head, ``discrete_columns`` and ``levels`` of real-valued data: ``columns`` "auto" takes the
    data set's :attr:`~made_np.data.Dataset.discrete_columns` unless a head other than mixed is
    named (mog: every column continuous); a list chooses them. Columns with discrete ones get the
    mixed head, their levels the distinct values over every split of ``dataset`` (missing entries
    aside); none, ``{}`` (the recipe's mog)."""
    if isinstance(columns, str):
        if columns not in ("auto", "none"):
            raise ValueError(f"discrete_columns must be 'auto', 'none', a list of column indices or (), got {columns!r}")
        columns = getattr(dataset, "discrete_columns", ()) if head in (None, "mixed") and columns == "auto" else ()
    D = int(dataset.D)
    columns = tuple(sorted({check_int("discrete_columns entries", d, 0, D - 1) for d in columns}))
    if not columns:
        return {}
    splits = [np.asarray(s, dtype=np.float64) for s in (getattr(dataset, n, None) for n in ("train", "valid", "test"))
              if s is not None]
    levels = []
    for d in columns:  # once per run, one pass per discrete column
        v = np.unique(np.concatenate([s[:, d] for s in splits]))
        v = v[~np.isnan(v)]
        if v.size > MAX_CLASSES:
            raise ValueError(f"discrete column {d} has {v.size} distinct values: at most {MAX_CLASSES} levels; "
                             "leave it continuous")
        levels.append(tuple(float(a) for a in v))
    return {"head": head or "mixed", "discrete_columns": columns, "levels": tuple(levels)}


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
        Base learning rate; ``None``: the optimiser's :attr:`~made_np.optim.Optimizer.default_lr` (adam 2e-3,
        adagrad 1e-2, sgd 1e-2).
    weight_decay : float, default 0
        L2 coefficient added to every gradient.
    patience : int or None
        Early stopping: stop when the validation NLL has not improved for this
        many epochs (the paper's look-ahead). ``0`` disables early stopping.
        ``None``: the recipe's (:func:`default_patience`: 30, more for small real-valued data).
    resample_every : int, default 1
        Minibatches between mask changes when the bank has more than one mask
        (the paper changes mask at every update). With ``K >= 2`` masks the mask
        of minibatch ``i`` (counted over the whole run) is ``(i // resample_every) % K``;
        with no limit (``num_masks`` inf, stored as 0) it is mask ``i // resample_every``, a fresh one.
    valid_masks : int or None
        Masks in the validation ensemble during training when the bank has more
        than one mask. ``None``: the whole bank capped at 16 (16 with no limit).
    eval_masks : int or None
        Masks in the ensemble of a final (test) evaluation. ``None``: the whole
        bank, at most 1000 masks (1000 when the bank has no limit; paper Sec. 6.2).
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
    output_bias : {"marginals", "zero"}, default "marginals"
        How a new run starts the output biases (:data:`OUTPUT_BIASES`): at the logits of the
        training data's smoothed marginals (:func:`made_np.train.start_at_marginals`), or at
        0 as initialised (the paper's code; ``preset="paper"``). Checkpoints written before
        this field existed read as ``"zero"``.
    """

    epochs: int | None = _field(None, "int?", 1, MAX_EPOCHS)
    batch_size: int = _field(100, "int", 1, MAX_COUNT)
    optimizer: str = _field("adam", OPTIMIZERS)
    lr: float | None = _field(None, "real?")
    weight_decay: float = _field(0.0, "real")
    patience: int | None = _field(None, "int?", 0, MAX_EPOCHS)
    resample_every: int = _field(1, "int", 1, MAX_COUNT)
    valid_masks: int | None = _field(None, "int?", 1, MAX_EVAL_MASKS)
    eval_masks: int | None = _field(None, "int?", 1, MAX_EVAL_MASKS)
    lr_schedule: str = _field("cosine", LR_SCHEDULES)
    lr_step: int = _field(50, "int", 1, MAX_EPOCHS)
    seed: int = _field(0, "int", 0, MAX_SEED)
    log_every: int = _field(20, "int", 1, MAX_COUNT)
    eval_batch_size: int = _field(1000, "int", 1, MAX_COUNT)
    engine: str = _field("fast", ENGINES)
    output_bias: str = _field("marginals", OUTPUT_BIASES)

    _kind = "training"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field: a value of the wrong type (an integer
        field given 2.5, "2" or true; a learning rate that is not a finite number), outside its
        bounds (:data:`MAX_EPOCHS`, :data:`MAX_COUNT`, :data:`MAX_EVAL_MASKS`, :data:`MAX_SEED`),
        or an unknown name."""
        self._check_types()
        self._raise_first([
            (self.lr is None or self.lr > 0, f"lr (the learning rate) must be a finite number > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}")])


    @classmethod
    def for_data(cls, dataset, preset: str | None = None, **overrides) -> "TrainConfig":
        """The recipe's training configuration for ``dataset``: the ``preset`` (:data:`PRESETS`)
        if any, then ``overrides`` on top (``None`` values are left to the recipe); see :meth:`resolved`.
        For real-valued data (``classes == 0``) the recipe's ``patience`` waits at least
        :data:`REAL_PATIENCE_UPDATES` updates (:func:`default_patience`: more than 30 epochs below
        1,601 training rows at minibatches of 100).

        Raises
        ------
        ValueError
            An invalid field, an unknown override or an unknown preset.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls.from_dict({**_preset(preset, 1), **given}).resolved(dataset)

    def resolved(self, dataset=None) -> "TrainConfig":
        """A copy with the defaults left open filled in from the recipe.

        ``lr``: the optimiser's :attr:`~made_np.optim.Optimizer.default_lr`; ``epochs``: :func:`budget_epochs` of the
        training set's rows (``dataset.train``), :data:`DEFAULT_EPOCHS_OTHER` without a dataset;
        ``patience``: :func:`default_patience`.
        """
        return replace(
            self,
            patience=default_patience(dataset, self.batch_size) if self.patience is None else self.patience,
            lr=optimizer_class(self.optimizer).default_lr if self.lr is None else self.lr,
            epochs=budget_epochs(_train_rows(dataset), self.batch_size) if self.epochs is None else self.epochs,
        )

    def lr_at(self, base_lr: float, epoch: int) -> float:
        """Learning rate of ``epoch`` under :attr:`lr_schedule` (docs/math.md Sec. 12).

        ``constant``: ``base_lr``; ``step``: ``base_lr * 0.5 ** ((epoch - 1) // lr_step)``;
        ``cosine``: ``base_lr * (1 + cos(pi (epoch - 1) / epochs)) / 2``, from ``base_lr`` at
        epoch 1 down to ``base_lr (1 + cos(pi (E - 1) / E)) / 2 > 0`` at epoch ``E = epochs``.

        Parameters
        ----------
        base_lr : float
            The base learning rate (:attr:`lr`, resolved), ``> 0``.
        epoch : int
            1-based epoch, ``1 <= epoch <= epochs``; not checked (past ``epochs`` the cosine
            rises again, exactly 0 at ``epochs + 1``; ``epoch = 0`` doubles the ``step`` rate).

        Returns
        -------
        float

        Raises
        ------
        TypeError
            ``cosine`` with ``epochs`` None: call it on the :meth:`resolved` config.
        """
        if self.lr_schedule == "step":
            return base_lr * 0.5 ** ((epoch - 1) // self.lr_step)
        if self.lr_schedule == "cosine":
            return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / self.epochs))
        return base_lr
