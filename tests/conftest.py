"""Shared test machinery: Hypothesis profiles, configuration strategies, weight helpers.

Profiles (choose with ``HYPOTHESIS_PROFILE=quick|thorough``; ``quick`` is the default):

* ``quick``: few examples per property, no deadline, ``derandomize=True`` so that CI
  runs draw the same examples every time (a failure reproduces exactly).
* ``thorough``: many examples (``THOROUGH_FACTOR`` times the quick count), random
  draws, for a long local run before a release or after touching ``made_np/masks.py``.

Tests pick their example count with :func:`examples` (a quick-profile count that the
thorough profile multiplies), and draw configurations with the strategies below.
Helpers live here rather than in a package so that ``from conftest import ...`` is all
a test module needs (pytest puts ``tests/`` on ``sys.path``).
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from made_np import backend
from made_np.model import MADE, MADEConfig

# --------------------------------------------------------------------------- profiles

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "quick")
THOROUGH_FACTOR = 25

settings.register_profile(
    "quick",
    max_examples=10,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=10 * THOROUGH_FACTOR,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
if PROFILE not in ("quick", "thorough"):
    raise pytest.UsageError(f"HYPOTHESIS_PROFILE must be quick or thorough, got {PROFILE!r}")
settings.load_profile(PROFILE)


def examples(quick: int):
    """``@settings`` with ``quick`` examples in the quick profile, ``THOROUGH_FACTOR`` times more otherwise."""
    return settings(max_examples=quick if PROFILE == "quick" else quick * THOROUGH_FACTOR)


# --------------------------------------------------------------------------- strategies

ORDERINGS = ("natural", "random", "given")
DEGREE_RULES = ("random", "equal")
ENCODINGS = ("onehot", "raw", "scaled")  # "binary" is valid only with 2 classes
SEEDS = st.integers(0, 2**32 - 1)
MASK_INDICES = st.integers(0, 50)


def dims(lo: int = 1, hi: int = 12):
    """Numbers of variables D (exhaustive checks keep ``hi`` small; structural ones may use hundreds)."""
    return st.integers(lo, hi)


def hidden_widths(D: int, max_layers: int = 3, factor: int = 3, min_width: int = 1, min_layers: int = 0):
    """0..max_layers hidden layers of widths ``min_width .. max(min_width, factor*D)``."""
    top = max(min_width, factor * D, 1)
    return st.lists(st.integers(max(min_width, 1), top), min_size=min_layers, max_size=max_layers).map(tuple)


@st.composite
def ordering_kwargs(draw, D: int):
    """Keyword arguments of the ordering: natural, random, or a given permutation of 1..D."""
    mode = draw(st.sampled_from(ORDERINGS))
    if mode == "given":
        perm = draw(st.permutations(list(range(1, D + 1))))
        return {"ordering": "natural", "given_ordering": tuple(perm)}
    return {"ordering": mode, "given_ordering": None}


@st.composite
def mask_configs(draw, min_D: int = 1, max_D: int = 12, max_layers: int = 3, factor: int = 3,
                 degrees=None, min_layers: int = 0):
    """Keyword arguments of :func:`made_np.masks.draw_masks` (``D`` and ``hidden`` included)."""
    D = draw(dims(min_D, max_D))
    kw = {
        "D": D,
        "hidden": draw(hidden_widths(D, max_layers, factor, min_layers=min_layers)),
        "seed": draw(SEEDS),
        "index": draw(MASK_INDICES),
        "degrees": draw(st.sampled_from(DEGREE_RULES)) if degrees is None else degrees,
        "order_agnostic": draw(st.booleans()),
        "connectivity_agnostic": draw(st.booleans()),
    }
    kw.update(draw(ordering_kwargs(D)))
    return kw


@st.composite
def model_configs(draw, min_D: int = 1, max_D: int = 8, max_layers: int = 3, factor: int = 3,
                  head=None, encoding=None, max_classes: int = 5, num_masks=None, direct=None,
                  activation=None, dtype: str = "float64", degrees=None, min_layers: int = 0,
                  classes=None, order_agnostic=None, connectivity_agnostic=None):
    """A :class:`made_np.model.MADEConfig` covering every option (each argument pins one).

    ``head``: bernoulli (2 classes) or categorical (``classes`` or 2..max_classes), or when named, mog
    (1..3 components), gaussian or mixed (discrete columns of 1..7 levels) (real values: classes 0,
    raw inputs); ``encoding``: binary
    (Bernoulli only) or onehot/raw/scaled; ``num_masks``: 1 (fixed mask), 2..4 or inf (no limit; the configuration stores 0).
    """
    D = draw(dims(min_D, max_D))
    head = draw(st.sampled_from(("bernoulli", "categorical"))) if head is None else head
    real = head in ("mog", "gaussian", "mixed")
    if real:
        classes, encoding = 0, "raw"
    if classes is None:
        classes = 2 if head == "bernoulli" else draw(st.integers(2, max_classes))
    if encoding is None:
        choices = ENCODINGS + (("binary",) if classes == 2 else ())
        encoding = draw(st.sampled_from(choices))
    kw = {
        "D": D,
        "hidden": draw(hidden_widths(D, max_layers, factor, min_layers=min_layers)),
        "classes": classes,
        "head": head,
        "input_encoding": encoding,
        "degrees": draw(st.sampled_from(DEGREE_RULES)) if degrees is None else degrees,
        "num_masks": draw(st.sampled_from((1, 2, 3, 4, math.inf))) if num_masks is None else num_masks,
        "order_agnostic": draw(st.booleans()) if order_agnostic is None else order_agnostic,
        "connectivity_agnostic": (draw(st.booleans()) if connectivity_agnostic is None
                                  else connectivity_agnostic),
        "direct": draw(st.booleans()) if direct is None else direct,
        "activation": draw(st.sampled_from(("relu", "leaky_relu"))) if activation is None else activation,
        "seed": draw(st.integers(0, 2**31 - 1)),
        "dtype": dtype,
    }
    if head in ("mog", "mixed"):
        kw["components"] = draw(st.integers(1, 3))
    if head == "mixed":  # a non-empty set of discrete columns, each of 1..7 integer levels
        cols = sorted(draw(st.sets(st.integers(0, D - 1), min_size=1)))
        kw["discrete_columns"] = tuple(cols)
        kw["levels"] = tuple(tuple(sorted(draw(st.sets(st.integers(-3, 9), min_size=1, max_size=7)))) for _ in cols)
    kw.update(draw(ordering_kwargs(D)))
    return MADEConfig(**kw)


# --------------------------------------------------------------------------- helpers


def randomize_weights(model: MADE, seed: int, scale: float = 1.0, bias_mean: float = 0.5) -> dict:
    """Give ``model`` "trained-looking" weights through :meth:`MADE.load_state_dict`.

    Weights ``W ~ N(0, scale^2 / fan_in)`` (so pre-activations are of order 1 whatever
    the width) and biases ``b ~ N(bias_mean, 0.5^2)`` (positive-ish: most ReLUs live).
    The zero-initialised biases and tiny uniform weights of a fresh model would hide
    bugs that only show when every term is non-zero. Returns the host state loaded.
    """
    rng = np.random.default_rng([seed, 12345])
    state = {}
    for name, p in model.state_dict().items():
        if p.ndim == 2:
            state[name] = rng.normal(0.0, scale / np.sqrt(p.shape[0]), size=p.shape)
        else:
            state[name] = rng.normal(bias_mean, 0.5, size=p.shape)
    model.load_state_dict(state)
    return state


@pytest.fixture(scope="module")
def one_run_folder():
    """Tests about one run folder: a small data set trains the recipe's one run, not the choice
    between a bank of 16 and a fresh mask (its folders and faults: tests/test_select.py)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("made_np.cli.train.selects", lambda *args, **kwargs: False)
        yield


@pytest.fixture
def trained_weights():
    """The :func:`randomize_weights` helper, as a fixture for non-Hypothesis tests."""
    return randomize_weights


def random_data(config: MADEConfig, n: int, seed: int) -> np.ndarray:
    """``n`` random examples (n, D): uint8 in {0,1} for 2 classes, int64 in 0..C-1 otherwise,
    float64 ``N(0, 1)`` for real values (classes 0; a mixed head's discrete columns at random levels)."""
    rng = np.random.default_rng([seed, 777])
    if config.classes == 0:  # a mixed head's discrete columns at random levels
        x = rng.normal(size=(n, config.D))
        for d, levels in zip(config.discrete_columns, config.levels):
            x[:, d] = rng.choice(levels, size=n)
        return x
    x = rng.integers(0, config.classes, size=(n, config.D))
    return x.astype(np.uint8 if config.classes == 2 else np.int64)


def all_configurations(D: int, classes: int) -> np.ndarray:
    """Every x in {0..C-1}^D, shape (C^D, D), in lexicographic order."""
    grids = np.meshgrid(*([np.arange(classes)] * D), indexing="ij")
    x = np.stack([g.reshape(-1) for g in grids], axis=1)
    return x.astype(np.uint8 if classes == 2 else np.int64)


def block_reach(model: MADE, mask=0) -> np.ndarray:
    """Variable-level reachability recomputed from the *actual* layer masks a pass uses.

    Walks the arrays of ``model.mask(mask)`` (one per layer, then the direct block) as boolean matrices, from
    input columns to output columns, then collapses the one-hot/logit blocks: ``P[j, d]``
    is True when some column of variable ``j`` reaches some logit of variable ``d``.
    Independent of :func:`made_np.masks.path_matrix`.
    """
    D, rin, rout = model.config.D, model.in_repeat, model.out_repeat
    arrays = model.mask(mask)[1]
    reach = np.eye(D * rin, dtype=bool)
    for M in arrays[:len(model.layers)]:
        M = np.asarray(M) != 0
        # reach[i, k] = any_j reach[i, j] and M[j, k], written as an explicit boolean product
        reach = (reach[:, :, None] & M[None, :, :]).any(axis=1)
    if model.direct is not None:
        reach = reach | (np.asarray(arrays[-1]) != 0)
    return reach.reshape(D, rin, D, rout).any(axis=(1, 3))


def strict_order(ordering) -> np.ndarray:
    """``R[j, d] = m0[j] < m0[d]``, the relation every path must respect."""
    m0 = np.asarray(ordering)
    return m0[:, None] < m0[None, :]


def bank_index(model: MADE, index: int) -> int:
    """A valid mask index of the model's bank derived from ``index``."""
    K = model.config.num_masks
    return index % K if K >= 1 else index


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Make :class:`made_np.fast.blocked.BlockedMADE` pack every weight matrix, however small, in blocks
    of 3 columns (rows), so that tests on tiny models run the block-sparse code."""
    import functools

    from made_np.fast import blocked

    monkeypatch.setattr(blocked, "BLOCK_MIN_SIZE", 0)
    monkeypatch.setattr(blocked, "BLOCK_MAX_COVERAGE", 1.0)
    monkeypatch.setattr(blocked, "block_plan", functools.partial(blocked.block_plan, width=3))


# --------------------------------------------------------------------------- the command line


def run_cli(*args):
    """``made-np ARGS`` in-process (Click's test runner); arguments may be paths or numbers."""
    from click.testing import CliRunner

    from made_np.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, *fragments):
    """Exit code 2 and exactly one line ``Error: ...`` holding every fragment; no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for f in fragments:
        assert f in lines[0], lines[0]


# --------------------------------------------------------------------------- a small data set with known structure


def markov_chain(n: int, seed: int, D: int = 8, flip: float = 0.1) -> np.ndarray:
    """Binary Markov chain, shape (n, D) uint8: x_0 ~ Bern(0.5), x_d = x_{d-1} xor Bern(flip).
    Strong dependencies; entropy log 2 + (D-1) H(flip) nats."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, D), dtype=np.uint8)
    x[:, 0] = rng.random(n) < 0.5
    for d in range(1, D):
        x[:, d] = x[:, d - 1] ^ (rng.random(n) < flip)
    return x


def chain_dataset():
    """600 / 200 / 200 rows of :func:`markov_chain` (D = 8) as a :class:`made_np.data.Dataset` named "chain"."""
    from made_np.data import Dataset

    return Dataset("chain", markov_chain(600, 1), markov_chain(200, 2), markov_chain(200, 3), 2, None)


# --------------------------------------------------------------------------- the strict stand-in for a device


class Stand:
    """Where a test's model computes: ``"numpy"``, or ``"strict"``: ``array_api_strict`` arrays on its
    ``Device("device1")``, which refuse to mix with NumPy arrays and with arrays of its CPU device, as
    CuPy's refuse to mix with NumPy's (the CUDA path proven without a GPU, docs/testing.md).

    Data go to the device with :meth:`put` (:func:`made_np.backend.to_device`) and results come
    back with :meth:`get` (:func:`made_np.backend.to_host`), nothing else."""

    def __init__(self, name: str):
        self.name = name
        if name == "numpy":
            self.xp, self.device = np, None
        else:
            import array_api_strict
            self.xp, self.device = array_api_strict, array_api_strict.Device("device1")

    def made(self, config, **kw) -> MADE:
        """A MADE of ``config`` on this stand."""
        return MADE(config, self.xp, device=self.device, **kw)

    def put(self, a, dtype=None):
        """A host array on the stand's device."""
        return None if a is None else backend.to_device(a, self.xp, dtype, self.device)

    @staticmethod
    def get(a) -> np.ndarray:
        """A result back on the host."""
        return backend.to_host(a)


@pytest.fixture(params=["numpy", pytest.param("strict", marks=pytest.mark.strict_device)])
def stand(request):
    """The same test on NumPy and on the strict stand-in (standard 2024.12: ``take_along_axis``)."""
    if request.param == "numpy":
        yield Stand("numpy")
        return
    import array_api_strict
    with array_api_strict.ArrayAPIStrictFlags(api_version="2024.12"):
        yield Stand("strict")
