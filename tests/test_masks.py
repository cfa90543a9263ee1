"""The mask rules of MADE (Germain et al. 2015, Sec. 4, Algorithm 1; eqs. 11-13).

Guards, property by property:

1. Orderings and degrees (Sec. 4.1-4.2): m^0 is a permutation of 1..D; random-rule
   degrees m^l(k) lie in [min_k' m^(l-1)(k'), D-1]; equal-rule degrees equal
   ``max(lo, ceil(k (D-1) / (H+1)))``; the same (seed, index) rebuilds the same mask;
   order-agnostic banks draw fresh orderings and connectivity-agnostic banks fresh
   degrees for indices >= 1 (and only then).
2. Mask formulas, entry by entry: M^W[j,k] = 1[m^l(k) >= m^(l-1)(j)] (eq. 12),
   M^V[k,d] = 1[m^0(d) > m^L(k)] (eq. 13), M^A[j,d] = 1[m^0(d) > m^0(j)] (eq. 11);
   ``path_matrix`` only links j -> d when m^0(j) < m^0(d).
4. Full connectivity: equal degrees with every width >= D-1 reach exactly the strict
   ordering relation; with random degrees no hidden unit lacks an incoming connection.
8. Block masks for categorical inputs/outputs: every one-hot column and every logit of
   variable d carries the degree m^0(d) (rows / columns repeated per block).
9. Round trip: the masks the CLI dumps (``made-np masks``) are the masks the model uses.
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from conftest import (
    SEEDS,
    dims,
    examples,
    hidden_widths,
    mask_configs,
    model_configs,
    ordering_kwargs,
    strict_order,
)
from made_np.masks import (
    MaskError,
    direct_mask,
    draw_masks,
    hidden_degrees,
    hidden_mask,
    input_ordering,
    output_mask,
    path_matrix,
)
from made_np.model import MADE, MADEConfig


def previous_degrees(ms, layer: int) -> np.ndarray:
    """m^(l-1) for hidden layer ``layer`` (0-based): the ordering for the first one."""
    return ms.ordering if layer == 0 else ms.degrees[layer - 1]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------- 1. orderings and degrees


@examples(60)
@given(mask_configs(max_D=200, factor=2))
def test_ordering_is_a_permutation_of_1_to_D(kw):
    ms = draw_masks(**kw)
    D = kw["D"]
    assert ms.ordering.shape == (D,)
    assert np.issubdtype(ms.ordering.dtype, np.integer)
    assert np.array_equal(np.sort(ms.ordering), np.arange(1, D + 1))
    if ms.index == 0 or not kw["order_agnostic"]:  # mask 0 (and every mask of a fixed-order bank)
        if kw["given_ordering"] is not None:
            assert np.array_equal(ms.ordering, kw["given_ordering"])
        elif kw["ordering"] == "natural":
            assert np.array_equal(ms.ordering, np.arange(1, D + 1))


@examples(60)
@given(mask_configs(max_D=200, factor=2, degrees="random"))
def test_random_degrees_lie_between_min_previous_and_D_minus_1(kw):
    ms = draw_masks(**kw)
    D = kw["D"]
    assert len(ms.degrees) == len(kw["hidden"])
    for layer, (width, m) in enumerate(zip(kw["hidden"], ms.degrees)):
        assert m.shape == (width,)
        lo = min(int(previous_degrees(ms, layer).min()), D - 1)  # D == 1: every degree is 0
        assert m.min() >= lo, f"layer {layer}: degree {m.min()} below min of previous layer {lo}"
        assert m.max() <= D - 1, f"layer {layer}: degree {m.max()} above D-1={D - 1}"


def test_random_degrees_cover_their_range():
    """Uniform draws over [lo, D-1]: a wide layer hits every allowed value (and only those)."""
    rng = np.random.default_rng(0)
    m = hidden_degrees(np.array([3, 4, 7]), 2000, 9, "random", rng)
    assert set(m.tolist()) == set(range(3, 9))
    counts = np.bincount(m)[3:]
    assert counts.min() > 2000 / 6 * 0.7  # roughly uniform


@examples(60)
@given(mask_configs(max_D=200, factor=2, degrees="equal"))
def test_equal_degrees_follow_the_documented_formula(kw):
    ms = draw_masks(**kw)
    D = kw["D"]
    for layer, (H, m) in enumerate(zip(kw["hidden"], ms.degrees)):
        lo = min(int(previous_degrees(ms, layer).min()), D - 1)
        expected = [max(lo, ceil_div(k * (D - 1), H + 1)) for k in range(1, H + 1)]
        assert m.tolist() == expected


def test_equal_degrees_hand_values():
    # D = 5, H = 3: ceil(k * 4 / 4) = k for k = 1..3
    assert hidden_degrees(np.arange(1, 6), 3, 5, "equal").tolist() == [1, 2, 3]
    # D = 10, H = 2: ceil(9/3) = 3, ceil(18/3) = 6; then a layer above with lo = 3
    first = hidden_degrees(np.arange(1, 11), 2, 10, "equal")
    assert first.tolist() == [3, 6]
    assert hidden_degrees(first, 8, 10, "equal").tolist() == [3, 3, 3, 4, 5, 6, 7, 8]


@examples(40)
@given(mask_configs(max_D=60, factor=2))
def test_same_seed_and_index_rebuild_identical_masks(kw):
    a, b = draw_masks(**kw), draw_masks(**kw)
    assert a.index == b.index == kw["index"]
    assert np.array_equal(a.ordering, b.ordering)
    assert len(a.degrees) == len(b.degrees) and len(a.hidden) == len(b.hidden)
    for x, y in zip(a.degrees + a.hidden, b.degrees + b.hidden):
        assert np.array_equal(x, y)
    assert np.array_equal(a.output, b.output)
    assert np.array_equal(a.direct, b.direct)


@examples(20)
@given(dims(3, 40), st.data())
def test_order_agnostic_banks_draw_fresh_orderings(D, data):
    kw = data.draw(mask_configs(min_D=D, max_D=D))
    kw.update(order_agnostic=True)
    orderings = [draw_masks(**{**kw, "index": i}).ordering for i in range(21)]
    assert any(not np.array_equal(orderings[0], o) for o in orderings[1:]), "every index gave mask 0's ordering"
    assert any(not np.array_equal(orderings[1], o) for o in orderings[2:]), "indices >= 1 share one ordering"
    kw.update(order_agnostic=False)
    for i in range(1, 6):  # without order-agnostic training every mask keeps mask 0's ordering
        assert np.array_equal(draw_masks(**{**kw, "index": i}).ordering, orderings[0])


@examples(20)
@given(dims(3, 40), st.data())
def test_connectivity_agnostic_banks_draw_fresh_degrees(D, data):
    kw = data.draw(mask_configs(min_D=D, max_D=D, degrees="random", min_layers=1))
    kw.update(connectivity_agnostic=True)
    degs = [draw_masks(**{**kw, "index": i}).degrees for i in range(21)]

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(a, b))

    assert any(not same(degs[0], d) for d in degs[1:]), "every index gave mask 0's degrees"
    kw.update(connectivity_agnostic=False, order_agnostic=False)
    for i in range(1, 6):
        assert same(draw_masks(**{**kw, "index": i}).degrees, draw_masks(**{**kw, "index": 0}).degrees)


def test_model_maskset_at_matches_draw_masks():
    cfg = MADEConfig(D=7, hidden=(9, 5), num_masks=4, ordering="random", seed=3)
    model = MADE(cfg)
    for i in range(4):
        ms = draw_masks(7, (9, 5), seed=3, index=i, ordering="random", degrees="random",
                        order_agnostic=True, connectivity_agnostic=True)
        got = model.maskset_at(i)
        assert np.array_equal(got.ordering, ms.ordering)
        assert all(np.array_equal(a, b) for a, b in zip(got.hidden + (got.output,), ms.hidden + (ms.output,)))


def test_ordering_and_degree_errors():
    with pytest.raises(MaskError, match="D must be >= 1"):
        input_ordering(0)
    with pytest.raises(MaskError, match="permutation of 1..3"):
        input_ordering(3, given=[1, 1, 2])
    with pytest.raises(MaskError, match="permutation of 1..3"):
        input_ordering(3, given=[0, 1, 2])
    with pytest.raises(MaskError, match="permutation of 1..3"):
        input_ordering(3, given=[1, 2])
    with pytest.raises(MaskError, match="unknown ordering"):
        input_ordering(3, "reverse")
    with pytest.raises(MaskError, match="at least 1 unit"):
        hidden_degrees(np.arange(1, 4), 0, 3)
    with pytest.raises(MaskError, match="unknown degree rule"):
        hidden_degrees(np.arange(1, 4), 2, 3, "uniform")
    with pytest.raises(MaskError, match="mask index must be >= 0"):
        draw_masks(3, (4,), index=-1)
    with pytest.raises(ValueError, match="outside the bank"):
        MADE(MADEConfig(D=3, hidden=(4,), num_masks=2)).mask(2)


# --------------------------------------------------------------------------- 2. mask formulas, entry by entry


@examples(40)
@given(mask_configs(max_D=30))
def test_mask_entries_follow_equations_11_to_13(kw):
    ms = draw_masks(**kw)
    D, m0 = kw["D"], ms.ordering.tolist()
    prev = m0
    for layer, (M, m) in enumerate(zip(ms.hidden, ms.degrees)):
        assert M.dtype == bool and M.shape == (len(prev), len(m))
        for j in range(len(prev)):
            for k in range(len(m)):
                assert M[j, k] == (m[k] >= prev[j]), f"layer {layer} [{j},{k}]"
        prev = m.tolist()
    assert ms.output.dtype == bool and ms.output.shape == (len(prev), D)
    for k in range(len(prev)):
        for d in range(D):
            assert ms.output[k, d] == (m0[d] > prev[k])
    assert ms.direct.shape == (D, D)
    for j in range(D):
        for d in range(D):
            assert ms.direct[j, d] == (m0[d] > m0[j])


def test_mask_functions_hand_example():
    m0 = np.array([2, 1, 3])
    m1 = np.array([1, 2])
    assert hidden_mask(m0, m1).tolist() == [[False, True], [True, True], [False, False]]
    assert output_mask(m1, m0).tolist() == [[True, False, True], [False, False, True]]
    assert direct_mask(m0).tolist() == [[False, False, True], [True, False, True], [False, False, False]]


@examples(60)
@given(mask_configs(max_D=120, factor=2), st.booleans())
def test_path_matrix_links_only_earlier_to_later(kw, direct):
    ms = draw_masks(**kw)
    P = path_matrix(ms, direct=direct)
    assert P.shape == (kw["D"], kw["D"]) and P.dtype == bool
    bad = P & ~strict_order(ms.ordering)
    assert not bad.any(), f"paths that break the ordering: {np.argwhere(bad)[:5].tolist()}"


# --------------------------------------------------------------------------- 4. full connectivity


@examples(40)
@given(dims(1, 40), st.data())
def test_equal_degrees_with_wide_layers_reach_exactly_the_ordering(D, data):
    hidden = data.draw(hidden_widths(D, max_layers=3, factor=3, min_width=max(D - 1, 1)))
    kw = {"D": D, "hidden": hidden, "seed": data.draw(SEEDS), "degrees": "equal",
          "index": data.draw(st.integers(0, 20)), "order_agnostic": data.draw(st.booleans()),
          "connectivity_agnostic": data.draw(st.booleans()), **data.draw(ordering_kwargs(D))}
    ms = draw_masks(**kw)
    R = strict_order(ms.ordering)
    assert np.array_equal(path_matrix(ms), R)
    assert np.array_equal(path_matrix(ms, direct=True), R)


@examples(40)
@given(mask_configs(min_D=2, max_D=100, factor=2, min_layers=1))
def test_no_hidden_unit_lacks_an_incoming_connection(kw):
    ms = draw_masks(**kw)
    for layer, M in enumerate(ms.hidden):
        dead = np.flatnonzero(~M.any(axis=0))
        assert dead.size == 0, f"layer {layer}: units {dead[:5].tolist()} have no input (degrees {ms.degrees[layer][dead[:5]]})"


def test_one_variable_has_no_dependencies():
    ms = draw_masks(1, (3, 2), seed=1)
    assert [m.tolist() for m in ms.degrees] == [[0, 0, 0], [0, 0]]
    assert not path_matrix(ms, direct=True).any()


# --------------------------------------------------------------------------- 8. block masks


@examples(30)
@given(model_configs(max_D=8, head="categorical", encoding="onehot"), st.integers(0, 50))
def test_block_masks_repeat_each_variables_degree(cfg, index):
    model = MADE(cfg)
    K = cfg.num_masks
    ms, arrays = model.mask(index % K if K else index)
    D, C = cfg.D, cfg.classes
    assert model.in_repeat == model.out_repeat == C
    first = np.asarray(arrays[0]) != 0
    last = np.asarray(arrays[len(model.layers) - 1]) != 0
    # first layer: row j*C + c is variable j's row, whatever c (its columns all carry degree m0[j])
    if cfg.hidden:
        assert first.shape == (D * C, cfg.hidden[0])
        for j in range(D):
            for c in range(C):
                assert np.array_equal(first[j * C + c], ms.degrees[0] >= ms.ordering[j])
        # output layer: column d*C + c is variable d's column
        assert last.shape == (cfg.hidden[-1], D * C)
        for d in range(D):
            for c in range(C):
                assert np.array_equal(last[:, d * C + c], ms.ordering[d] > ms.degrees[-1])
    else:  # no hidden layer: a block version of the direct mask
        assert first.shape == (D * C, D * C)
        assert np.array_equal(first, np.kron(strict_order(ms.ordering), np.ones((C, C), bool)))
    if model.direct is not None:
        A = np.asarray(arrays[-1]) != 0
        assert np.array_equal(A, np.kron(strict_order(ms.ordering), np.ones((C, C), bool)))


def test_block_masks_hand_example():
    ms = draw_masks(2, (1,), given_ordering=(2, 1), degrees="equal")  # degree of the unit: max(1, ceil(1/2)) = 1
    assert ms.degrees[0].tolist() == [1]
    layers = ms.layer_masks(in_repeat=3, out_repeat=2)
    assert layers[0].tolist() == [[False]] * 3 + [[True]] * 3  # only variable 1 (order 1) feeds the unit
    assert layers[1].tolist() == [[True, True, False, False]]  # the unit feeds variable 0 (order 2)
    assert ms.direct_block(3, 2).tolist() == [[False] * 4] * 3 + [[True, True, False, False]] * 3


# --------------------------------------------------------------------------- 9. CLI round trip


def _cli_group():
    """The click group of made_np.cli holding a ``masks`` command, or skip (the CLI is written separately)."""
    import click

    try:
        cli = importlib.import_module("made_np.cli")
    except ImportError as exc:
        pytest.skip(f"made_np.cli is not written yet ({exc})")
    groups = [g for g in (getattr(cli, "cli", None), getattr(cli, "main", None)) if isinstance(g, click.Group)]
    if not groups or "masks" not in groups[0].commands:
        pytest.skip("made_np.cli has no `masks` command yet")
    return groups[0]


def _checkpoint(tmp_path, model):
    """A checkpoint of ``model`` written by the project's own saver (made_np.train.save_checkpoint)."""
    try:
        from made_np.checkpoint import save_checkpoint
    except ImportError as exc:
        pytest.skip(f"made_np.train.save_checkpoint is not available ({exc})")
    return save_checkpoint(tmp_path / "model.npz", model)


ROUND_TRIP_CONFIGS = {
    "binary-direct": MADEConfig(D=6, hidden=(7, 5), num_masks=3, ordering="random", seed=11, direct=True),
    "categorical-onehot": MADEConfig(D=4, hidden=(9,), classes=3, head="categorical", input_encoding="onehot",
                                     num_masks=3, degrees="equal", seed=5, direct=True),
    "no-hidden": MADEConfig(D=5, hidden=(), num_masks=3, seed=2),
}


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(ROUND_TRIP_CONFIGS))
def test_cli_dumps_the_masks_the_model_uses(tmp_path, name, index):
    """``made-np masks CKPT --out masks.npz --index i`` writes exactly the masks of ``model.mask(i)``.

    The dump is at the level of variables ((D, H_1) ... (H_L, D)); the model's layers hold
    the block (one-hot / logit) versions, so their repeated rows/columns are collapsed here.
    """
    from click.testing import CliRunner

    group = _cli_group()
    cfg = ROUND_TRIP_CONFIGS[name]
    model = MADE(cfg)
    path = _checkpoint(tmp_path, model)
    out = tmp_path / f"masks{index}.npz"
    result = CliRunner().invoke(group, ["masks", str(path), "--out", str(out), "--index", str(index)])
    assert result.exit_code == 0, result.output
    maskset, arrays = model.mask(index)
    rin, rout = model.in_repeat, model.out_repeat
    used = [np.asarray(M) != 0 for M in arrays[:len(model.layers)]]
    used[0] = used[0][::rin]
    used[-1] = used[-1][:, ::rout]
    if model.direct is not None:
        used.append((np.asarray(arrays[-1]) != 0)[::rin, ::rout])
    with np.load(out, allow_pickle=False) as z:
        dumped = {k: z[k] for k in z.files}
    L = len(cfg.hidden)
    expected_keys = ({"ordering", "mask_V"} | {f"degrees_{l}" for l in range(1, L + 1)}
                     | {f"mask_W{l}" for l in range(1, L + 1)} | ({"mask_A"} if cfg.direct else set()))
    assert set(dumped) == expected_keys
    assert np.array_equal(dumped["ordering"], maskset.ordering)
    for l in range(1, L + 1):
        assert np.array_equal(dumped[f"degrees_{l}"], maskset.degrees[l - 1])
    keys = [f"mask_W{l}" for l in range(1, L + 1)] + ["mask_V"] + (["mask_A"] if cfg.direct else [])
    for key, mask in zip(keys, used):
        assert dumped[key].shape == mask.shape, key
        assert np.array_equal(dumped[key].astype(bool), mask), f"dumped {key!r} differs from the mask the model uses"
    if index > 0:  # the bank really holds different masks
        first = model.mask(0)[0]
        assert not np.array_equal(dumped["ordering"], first.ordering) or not all(
            np.array_equal(dumped[f"mask_W{l}"], first.hidden[l - 1]) for l in range(1, L + 1))


def test_cli_masks_rejects_an_index_outside_the_bank(tmp_path):
    from click.testing import CliRunner

    group = _cli_group()
    path = _checkpoint(tmp_path, MADE(ROUND_TRIP_CONFIGS["binary-direct"]))
    result = CliRunner().invoke(group, ["masks", str(path), "--out", str(tmp_path / "m.npz"), "--index", "3"])
    assert result.exit_code == 2
    assert "outside the bank" in result.output and "Traceback" not in result.output
