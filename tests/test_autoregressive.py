"""The autoregressive property of MADE (Germain et al. 2015, Sec. 4; eqs. 1, 10-13).

The output for variable d must be a function of the inputs that come before it in the
ordering only: ``p(x_d | x_{m^0(j) < m^0(d)})``. Guarded three ways:

2. Structurally, on the *actual* layer masks a pass uses (``model.mask(i)``): reachability recomputed here, independently of
   ``masks.path_matrix``, only links j -> d when m^0(j) < m^0(d), and agrees with
   ``path_matrix``; a fixed mask (``num_masks == 1``) also leaves W exactly zero where M is.
3. Behaviourally, on the real forward pass with trained-looking weights, without looking
   at any mask: two inputs that agree on every variable of order < k give bitwise
   identical logits for every variable of order <= k (float64 and float32; Bernoulli and
   categorical heads; one-hot blocks, raw and scaled inputs; direct connections on/off).
5. The first variable of the ordering has the same logits for every x (it is unconditional).
8. Block masks, behaviourally: changing any one-hot column of variable j leaves the logits
   of every variable d with m^0(j) >= m^0(d) bitwise unchanged.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import (
    block_reach,
    examples,
    model_configs,
    random_data,
    randomize_weights,
    bank_index,
    strict_order,
)
from made_np import backend
from made_np.masks import path_matrix
from made_np.model import MADE, MADEConfig


def logits_by_variable(model, x, mask=0) -> np.ndarray:
    """Logits as (n, D, R) (R = 1 for Bernoulli, C for categorical) under ``mask`` (on the host)."""
    z = backend.to_host(model.logits(model._on_device(x), mask=mask))
    return z.reshape(x.shape[0], model.config.D, -1)


def bits(a: np.ndarray) -> bytes:
    """The exact bit pattern of an array (bitwise comparison, not ==)."""
    return np.ascontiguousarray(a).tobytes()


# --------------------------------------------------------------------------- 2. structural


@examples(40)
@given(model_configs(max_D=10, dtype="float32"), st.integers(0, 200))
def test_actual_layer_masks_only_link_earlier_to_later(cfg, index):
    model = MADE(cfg)
    i = bank_index(model, index)
    maskset, arrays = model.mask(i)
    P = block_reach(model, i)
    R = strict_order(maskset.ordering)
    bad = P & ~R
    assert not bad.any(), f"input j reaches output d with m0[j] >= m0[d]: {np.argwhere(bad)[:5].tolist()}"
    assert np.array_equal(P, path_matrix(maskset, direct=cfg.direct))
    if cfg.num_masks == 1:  # a fixed mask keeps W pre-masked: exactly zero where M is zero
        for layer, M in zip(model.layers + ([model.direct] if model.direct is not None else []), arrays):
            assert not np.any(np.asarray(layer.W)[np.asarray(M) == 0])


def test_structural_check_sees_a_planted_leak():
    """The independent reachability walk must notice one illegal weight (the check can fail)."""
    model = MADE(MADEConfig(D=4, hidden=(6,), num_masks=2, seed=1, degrees="equal"))
    maskset, arrays = model.mask(0)
    assert not (block_reach(model) & ~strict_order(maskset.ordering)).any()
    last = int(np.argmax(maskset.ordering))
    arrays[0][last, 0] = 1  # the last variable now feeds a hidden unit...
    arrays[-1][0, :] = 1  # ...that feeds every output, itself included
    assert block_reach(model)[last, last]


# --------------------------------------------------------------------------- 3. behavioural


def check_prefix_invariance(model, seed: int, n: int = 4, mask=0):
    """For every k: x' = x on variables of order < k (redrawn elsewhere) => logits of order <= k equal bitwise."""
    cfg = model.config
    rng = np.random.default_rng([seed, 99])
    m0 = np.asarray(model.mask(mask)[0].ordering)
    x = random_data(cfg, n, seed)
    zx = logits_by_variable(model, x, mask)
    for k in range(1, cfg.D + 1):
        x2 = x.copy()
        later = m0 >= k
        x2[:, later] = (rng.normal(size=(n, int(later.sum()))) if cfg.classes == 0  # real values
                        else rng.integers(0, cfg.classes, size=(n, int(later.sum()))))
        z2 = logits_by_variable(model, x2, mask)
        keep = m0 <= k
        assert bits(zx[:, keep]) == bits(z2[:, keep]), (
            f"k={k}: logits of variables {np.flatnonzero(keep).tolist()} changed when only "
            f"variables {np.flatnonzero(later).tolist()} (order >= {k}) changed; ordering {m0.tolist()}")


@examples(40)
@given(model_configs(max_D=8, dtype="float64"), st.integers(0, 200), st.integers(0, 2**31 - 1))
def test_logits_depend_only_on_earlier_variables_float64(cfg, index, seed):
    model = MADE(cfg)
    randomize_weights(model, seed)
    check_prefix_invariance(model, seed, mask=bank_index(model, index))


@pytest.mark.parametrize("head", ["mog", "gaussian"])
@examples(15)
@given(data=st.data())
def test_real_head_outputs_depend_only_on_earlier_variables(head, data):
    cfg = data.draw(model_configs(max_D=8, head=head))
    model = MADE(cfg)
    seed = data.draw(st.integers(0, 2**31 - 1))
    randomize_weights(model, seed)
    check_prefix_invariance(model, seed, mask=bank_index(model, data.draw(st.integers(0, 200))))


@examples(25)
@given(model_configs(max_D=8, dtype="float32"), st.integers(0, 200), st.integers(0, 2**31 - 1))
def test_logits_depend_only_on_earlier_variables_float32(cfg, index, seed):
    model = MADE(cfg)
    randomize_weights(model, seed)
    check_prefix_invariance(model, seed, mask=bank_index(model, index))


@pytest.mark.parametrize("encoding", ["onehot", "raw", "scaled"])
@pytest.mark.parametrize("direct", [False, True])
def test_categorical_logits_depend_only_on_earlier_variables(encoding, direct, stand):
    cfg = MADEConfig(D=5, hidden=(12, 9), classes=4, head="categorical", input_encoding=encoding,
                     ordering="random", num_masks=3, direct=direct, seed=5, dtype="float64")
    model = stand.made(cfg)
    for index in range(3):
        randomize_weights(model, index)
        check_prefix_invariance(model, seed=index, n=6, mask=index)


def test_behavioural_check_sees_a_planted_leak():
    """With one illegal connection the bitwise check fails (so it is not vacuous)."""
    cfg = MADEConfig(D=4, hidden=(8,), num_masks=2, seed=2, dtype="float64")
    model = MADE(cfg)
    randomize_weights(model, 0)
    check_prefix_invariance(model, 0)
    arrays = model.mask(0)[1]  # the bank's cached masks, as every pass under mask 0 reads them
    arrays[0][:, 0] = 1  # hidden unit 0 now sees every input...
    arrays[-1][0, :] = 1  # ...and feeds every output
    with pytest.raises(AssertionError, match="changed"):
        check_prefix_invariance(model, 0)


# --------------------------------------------------------------------------- 5. the first variable


@examples(30)
@given(model_configs(max_D=10, dtype="float64"), st.integers(0, 200), st.integers(0, 2**31 - 1))
def test_first_variable_has_the_same_logits_for_every_x(cfg, index, seed):
    model = MADE(cfg)
    i = bank_index(model, index)
    randomize_weights(model, seed)
    first = int(np.flatnonzero(np.asarray(model.mask(i)[0].ordering) == 1)[0])
    x = random_data(cfg, 8, seed)
    rows = [bits(logits_by_variable(model, x[j:j + 1], i)[0, first]) for j in range(8)]  # same shape per call
    assert len(set(rows)) == 1, f"variable {first} (order 1) has logits that depend on x"


# --------------------------------------------------------------------------- 8. block masks, behavioural


@examples(20)
@given(model_configs(min_D=2, max_D=6, head="categorical", encoding="onehot"), st.integers(0, 200),
       st.integers(0, 2**31 - 1))
def test_no_onehot_column_reaches_an_earlier_or_same_variable(cfg, index, seed):
    """Perturb one input *column* (not a valid one-hot vector) and watch the logits."""
    model = MADE(cfg)
    randomize_weights(model, seed)
    D, C = cfg.D, cfg.classes
    maskset, arrays = model.mask(bank_index(model, index))
    m0 = np.asarray(maskset.ordering)
    inputs, _ = model.encode(random_data(cfg, 3, seed))
    base = np.asarray(model._forward_pass(inputs.copy(), arrays)).reshape(3, D, C)
    for j in range(D):
        for c in range(C):
            bumped = inputs.copy()
            bumped[:, j * C + c] += 0.75
            z = np.asarray(model._forward_pass(bumped, arrays)).reshape(3, D, C)
            blind = m0[j] >= m0  # variables that must not see variable j
            assert bits(z[:, blind]) == bits(base[:, blind]), f"column {j * C + c} (variable {j}) leaks"
