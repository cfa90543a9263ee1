"""The block-sparse training form of a single-mask MADE is the same model.

* :func:`made_np.fast.blocked.block_plan` blocks hold every live entry of any mask, and
  partition its columns (rows);
* :func:`made_np.fast.blocked.sorting_permutations` turns every mask into a staircase
  (the live rows of each column are a prefix, growing with the column), and
  :func:`made_np.fast.blocked.relabel` permutes masks consistently with orderings and degrees;
* :class:`made_np.fast.blocked.BlockedDense` gives the forward and backward values of
  :class:`made_np.layers.MaskedDense` for the same mask;
* :class:`made_np.fast.blocked.BlockedMADE` gives the NLLs and gradients of its MADE on
  column-permuted data, for every head, encoding, depth and direct connections.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import examples, mask_configs, model_configs, random_data, randomize_weights
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from made_np import model as model_mod
from made_np.fast import blocked as blocked_mod
from made_np.fast import threads as fast_threads
from made_np.fast.blocked import (
    BlockedDense,
    BlockedMADE,
    block_plan,
    invert_permutation,
    relabel,
    sorting_permutations,
)
from made_np.fast.engine import blocked_products
from made_np.layers import MaskedDense
from made_np.masks import MaskError, draw_masks, hidden_mask, output_mask
from made_np.model import MADE


@st.composite
def masks_and_widths(draw, max_side: int = 24):
    """A 0/1 mask (random, or a sorted staircase with some dead columns) and a block width."""
    n_in, n_out = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    if draw(st.booleans()):
        M = draw(arrays(np.bool_, (n_in, n_out)))
    else:  # staircase: column j lives on rows [0, r_j), r_j non-decreasing (0 allowed)
        r = np.sort(draw(arrays(np.int64, n_out, elements=st.integers(0, n_in))))
        M = np.arange(n_in)[:, None] < r[None, :]
    return M, draw(st.integers(1, max_side + 2))


# --------------------------------------------------------------------------- plans and relabelling


@examples(40)
@given(masks_and_widths())
def test_block_plan_holds_every_live_entry_and_partitions(mw):
    M, width = mw
    plan = block_plan(M, width)
    n_in, n_out = M.shape
    assert plan.shape == (n_in, n_out)
    cols = [(c0, c1) for _, _, c0, c1 in plan.columns]
    rows = [(r0, r1) for r0, r1, _, _ in plan.rows]
    for parts, n in ((cols, n_out), (rows, n_in)):
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        assert all(z - a <= width for a, z in parts)
    covered_c = np.zeros_like(M)
    for r0, r1, c0, c1 in plan.columns:
        covered_c[r0:r1, c0:c1] = True
        live_rows = np.flatnonzero(M[:, c0:c1].any(axis=1))
        assert (r0, r1) == ((live_rows[0], live_rows[-1] + 1) if live_rows.size else (0, 0))  # tight
    covered_r = np.zeros_like(M)
    for r0, r1, c0, c1 in plan.rows:
        covered_r[r0:r1, c0:c1] = True
    assert not (M & ~covered_c).any() and not (M & ~covered_r).any()
    assert plan.coverage == pytest.approx(covered_c.sum() / M.size)


def test_block_plan_skips_about_forty_percent_of_a_sorted_mnist_mask():
    ms = draw_masks(784, (500,), seed=0, ordering="random")
    natural = [block_plan(m).coverage for m in ms.layer_masks()]
    sorted_ = [block_plan(m).coverage for m in relabel(ms, *sorting_permutations(ms)).layer_masks()]
    assert min(natural) > 0.99  # unsorted: nothing to skip
    assert sorted_ == pytest.approx([0.626, 0.564], abs=0.01)  # 1/2 + 1/(2 * groups), random degrees


def test_block_plan_rejects_bad_arguments():
    with pytest.raises(MaskError, match="2-D mask"):
        block_plan(np.ones(3), 2)
    with pytest.raises(MaskError, match="width >= 1"):
        block_plan(np.ones((3, 3)), 0)


@examples(30)
@given(mask_configs(max_D=10, max_layers=3))
def test_sorting_relabel_gives_staircases_consistent_with_the_degrees(kw):
    ms = draw_masks(**kw)
    pi, hps = sorting_permutations(ms)
    r = relabel(ms, pi, hps)
    assert r.ordering.tolist() == list(range(1, r.D + 1))
    assert all((np.diff(m) >= 0).all() for m in r.degrees)
    # the permuted masks are the masks of the permuted ordering and degrees (paper eqs. 11-13)
    prev = r.ordering
    for m, deg in zip(r.hidden, r.degrees):
        np.testing.assert_array_equal(m, hidden_mask(prev, deg))
        prev = deg
    np.testing.assert_array_equal(r.output, output_mask(prev, r.ordering))
    np.testing.assert_array_equal(r.direct, output_mask(r.ordering, r.ordering))
    # staircases: each column's live rows are a prefix, non-decreasing with the column
    for m in list(r.hidden) + [r.output, r.direct]:
        lengths = m.sum(axis=0)
        np.testing.assert_array_equal(m, np.arange(m.shape[0])[:, None] < lengths[None, :])
        assert (np.diff(lengths) >= 0).all()
    # relabelling back restores every mask
    back = relabel(r, invert_permutation(pi), [invert_permutation(p) for p in hps])
    np.testing.assert_array_equal(back.ordering, ms.ordering)
    for a, b in zip(back.layer_masks() + [back.direct], ms.layer_masks() + [ms.direct]):
        np.testing.assert_array_equal(a, b)


def test_relabel_and_invert_reject_non_permutations():
    ms = draw_masks(4, (5,), seed=0)
    with pytest.raises(MaskError, match="not a permutation of 0..3"):
        relabel(ms, [0, 1, 1, 2], [np.arange(5)])
    with pytest.raises(MaskError, match="expected 1 hidden permutations, got 0"):
        relabel(ms, np.arange(4), [])
    np.testing.assert_array_equal(invert_permutation([2, 0, 1]), [1, 2, 0])


# --------------------------------------------------------------------------- the layer


@examples(40)
@given(masks_and_widths(), st.sampled_from(["rows", "columns"]), st.integers(0, 2**31 - 1),
       st.sampled_from([None, 2, 3]))
def test_blocked_dense_matches_masked_dense(mw, by, seed, threads):
    """Sequential, or split over a pool of 2 or 3 threads (by blocks, summed per thread)."""
    M, width = mw
    n_in, n_out = M.shape
    rng = np.random.default_rng(seed)
    Mf = M.astype(np.float64)
    ref = MaskedDense(n_in, n_out, np, rng, "float64", fixed=True)
    ref.W[...] = rng.normal(size=ref.W.shape) * Mf
    ref.b[...] = rng.normal(size=n_out)
    blk = BlockedDense(block_plan(M, width), Mf, np, "float64", by=by)
    blk.set_pool(None if threads is None else fast_threads.WorkPool(threads))
    blk.W[...] = blk.pack(ref.W)
    blk.b[...] = ref.b
    np.testing.assert_array_equal(blk.unpack(blk.W), ref.W)  # packing loses no live weight
    x = rng.normal(size=(5, n_in))
    delta = rng.normal(size=(5, n_out))
    np.testing.assert_allclose(blk.forward(x), ref.forward(x, Mf, keep=True), rtol=1e-12, atol=1e-12)
    dx_blk, dx_ref = blk.backward(delta.copy()), ref.backward(delta.copy(), Mf)
    np.testing.assert_allclose(dx_blk, dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(blk.unpack(blk.dW), ref.dW, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(blk.db, ref.db)


# --------------------------------------------------------------------------- the model


@examples(25)
@given(model_configs(num_masks=1, max_D=7, max_layers=2), st.integers(0, 2**31 - 1))
def test_blocked_made_gives_the_nll_and_gradients_of_its_made(config, seed):
    check_blocked_made(config, seed)


@pytest.mark.parametrize("head", ["mog", "gaussian", "mixed"])
@examples(10)
@given(data=st.data())
def test_blocked_made_of_a_real_head_gives_the_nll_and_gradients_of_its_made(head, data):
    """The real heads through the block-sparse engine: the standardisation's columns move with the data's
    (and a mixed head's discrete columns with them, :meth:`made_np.heads.Head.relabelled`)."""
    config = data.draw(model_configs(num_masks=1, max_D=7, max_layers=2, head=head))
    check_blocked_made(config, data.draw(st.integers(0, 2**31 - 1)))


def check_blocked_made(config, seed):
    """BlockedMADE's NLL, loss and gradients equal its MADE's (float64), a real head's under a standardisation."""
    with pytest.MonkeyPatch.context() as mp:  # pack every matrix, in blocks of 3 (tiny_blocks)
        mp.setattr(blocked_mod, "BLOCK_MIN_SIZE", 0)
        mp.setattr(blocked_mod, "BLOCK_MAX_COVERAGE", 1.0)
        mp.setattr(blocked_mod, "block_plan", functools.partial(block_plan, width=3))
        model = MADE(config)
        randomize_weights(model, seed)
        if model.head.real:
            rng = np.random.default_rng(seed)
            model.set_standardisation(rng.normal(size=config.D), rng.uniform(0.5, 3, size=config.D))
        fast = BlockedMADE(model)
    assert all(isinstance(layer, BlockedDense) for layer in fast._all_layers)
    x = random_data(config, 16, seed)
    xp_ = fast.permute_data(x)
    np.testing.assert_array_equal(xp_, x[:, fast.input_perm])
    np.testing.assert_allclose(fast.nll(xp_), model.nll(x), rtol=1e-12, atol=1e-10)
    loss_ref = float(model.loss_and_grad(x))
    loss = float(fast.loss_and_grad(xp_))
    assert loss == pytest.approx(loss_ref, rel=1e-12, abs=1e-10)
    for name, g, g_ref in zip(model.param_names, fast.to_natural(fast.grads), model.grads):
        np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12, err_msg=name)
    # the natural form round-trips exactly, and is what state_dict shows
    for a, b in zip(fast.to_natural(fast.to_compute(model.params)), model.params):
        np.testing.assert_array_equal(a, b)
    for name, p in model.state_dict().items():
        np.testing.assert_array_equal(fast.state_dict()[name], p)


def test_blocked_made_moves_weights_both_ways(tiny_blocks):
    model = MADE(model_mod.MADEConfig(D=6, hidden=(9, 7), ordering="random", direct=True, seed=4))
    randomize_weights(model, 1)
    fast = BlockedMADE(model)
    other = MADE(model.config)  # fresh weights
    fast.write_to(other)
    for a, b in zip(other.params, model.params):
        np.testing.assert_array_equal(a, b)
    fast.load_state_dict(MADE(model.config).state_dict())
    fast.read_from(model)
    assert all(np.array_equal(a, b) for a, b in zip(fast.to_natural(fast.params), model.params))
    with pytest.raises(ValueError, match="single mask"):
        fast.mask(1)
    with pytest.raises(ValueError, match="bank of 3"):
        BlockedMADE(MADE(model_mod.MADEConfig(D=6, hidden=(9,), num_masks=3)))
    with pytest.raises(ValueError, match="'W0' missing"):
        fast.load_state_dict({})
    # a state with weights where the mask has none loads as the MADE loads it: masked
    dense = {n: np.ones_like(p) for n, p in model.state_dict().items()}
    model.load_state_dict(dense)
    fast.load_state_dict(dense)
    x = random_data(model.config, 8, 0)
    np.testing.assert_allclose(fast.nll(fast.permute_data(x)), model.nll(x), rtol=1e-6)


def test_blocked_training_happens_on_the_cpu_only():
    assert blocked_products(np)
    assert not blocked_products(object())  # any other array module (CuPy)


def test_parallel_products_give_the_same_step_and_hold_blas_to_one_thread(tiny_blocks, monkeypatch):
    from threadpoolctl import threadpool_info

    monkeypatch.setenv("MADE_NP_THREADS", "2")
    config = model_mod.MADEConfig(D=7, hidden=(20, 11), direct=True, ordering="random", seed=3, dtype="float64")
    model = MADE(config)
    randomize_weights(model, 2)
    fast = BlockedMADE(model)
    x = fast.permute_data(random_data(config, 12, 0))
    loss = float(fast.loss_and_grad(x))
    grads = [g.copy() for g in fast.grads]
    blas_before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    with fast.parallel():
        assert all(layer.pool is not None for layer in fast._all_layers)
        assert all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
        assert float(fast.loss_and_grad(x)) == pytest.approx(loss, rel=1e-13)
        for g, ref in zip(fast.grads, grads):
            np.testing.assert_allclose(g, ref, rtol=1e-12, atol=1e-14)
    assert all(layer.pool is None for layer in fast._all_layers)
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == blas_before
    monkeypatch.setenv("MADE_NP_THREADS", "1")
    with fast.parallel():  # no pool: nothing changes
        assert all(layer.pool is None for layer in fast._all_layers)


def test_blocks_are_shared_out_evenly_between_threads():
    ms = draw_masks(784, (500,), seed=0, ordering="random")
    host = relabel(ms, *sorting_permutations(ms)).layer_masks()[1]
    layer = BlockedDense(block_plan(host), host.astype(np.float32), np, "float32")
    layer.set_pool(fast_threads.WorkPool(2))
    loads = [sum(layer._W[i].size for i in part) for part in layer._parts]
    assert sorted(i for part in layer._parts for i in part) == list(range(len(layer.index)))
    assert max(loads) <= 1.25 * min(loads)


def test_the_mask_multiply_of_dw_covers_only_the_staircase_band():
    ms = draw_masks(784, (500,), seed=0, ordering="random")
    for host in relabel(ms, *sorting_permutations(ms)).layer_masks():
        layer = BlockedDense(block_plan(host), host.astype(np.float32), np, "float32")
        banded = sum(band.stop - band.start for band, _ in layer._bands)
        rows = sum(r.stop - r.start for r, _ in layer.index)
        assert 0 < banded < 0.5 * rows  # the rows of a block that carry zeros; the rest are all live
        for (band, _), m in zip(layer._bands, layer._M):
            outside = np.ones(m.shape[0], dtype=bool)
            outside[band] = False
            assert np.all(m[outside] == 1)  # skipping them multiplies by exactly 1


# --------------------------------------------------------------------------- union products (sparse data)


@examples(40)
@given(masks_and_widths(), st.integers(0, 2**31 - 1), st.sampled_from([None, 2]),
       st.sampled_from([0.0, 0.5, 0.9, 1.0]))
def test_union_products_match_masked_dense(mw, seed, threads, zero_share):
    """A data layer multiplies only the live columns of its input: the forward product and
    dW equal MaskedDense's (float64, 1e-12), with any share of all-zero columns."""
    M, width = mw
    n_in, n_out = M.shape
    rng = np.random.default_rng(seed)
    Mf = M.astype(np.float64)
    ref = MaskedDense(n_in, n_out, np, rng, "float64", need_input_grad=False, fixed=True)
    ref.W[...] = rng.normal(size=ref.W.shape) * Mf
    ref.b[...] = rng.normal(size=n_out)
    blk = BlockedDense(block_plan(M, width), Mf, np, "float64", need_input_grad=False, sparse_input=True)
    blk.set_pool(None if threads is None else fast_threads.WorkPool(threads))
    blk.W[...] = blk.pack(ref.W)
    blk.b[...] = ref.b
    x = (rng.random((6, n_in)) < 0.3).astype(np.float64)
    x[:, rng.random(n_in) < zero_share] = 0  # all-zero columns (the border pixels of MNIST)
    delta = rng.normal(size=(6, n_out))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(blocked_mod, "SPARSE_MAX_LIVE", 1.0)  # always take the union path
        y = blk.forward(x)
    assert blk._live is not None
    np.testing.assert_allclose(y, ref.forward(x, Mf, keep=True), rtol=1e-12, atol=1e-12)
    assert blk.backward(delta.copy()) is None and ref.backward(delta.copy(), Mf) is None
    np.testing.assert_allclose(blk.unpack(blk.dW), ref.dW, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(blk.db, ref.db)


def test_union_products_only_for_sparse_data_layers(tiny_blocks):
    """The first layer and the direct connections take the union path when at most
    SPARSE_MAX_LIVE of the minibatch's columns are live; the other layers never do."""
    model = MADE(model_mod.MADEConfig(D=10, hidden=(12, 8), direct=True, dtype="float64", seed=1))
    fast = BlockedMADE(model)
    first, second, out, direct = fast._all_layers
    assert first.sparse_input and direct.sparse_input and not second.sparse_input and not out.sparse_input
    x = np.zeros((4, 10))
    x[:, :3] = 1  # 3 of 10 columns live
    fast.loss_and_grad(x)
    assert first._live is not None and direct._live is not None
    x[:, :9] = 1  # 9 of 10 > SPARSE_MAX_LIVE: dense products
    fast.loss_and_grad(x)
    assert first._live is None and direct._live is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blocked_made_with_union_products_gives_the_made_gradients(seed, tiny_blocks, monkeypatch):
    """A whole model (two layers, direct connections) on data with all-zero columns."""
    monkeypatch.setattr(blocked_mod, "SPARSE_MAX_LIVE", 1.0)
    config = model_mod.MADEConfig(D=12, hidden=(16, 10), direct=True, ordering="random",
                                  dtype="float64", seed=seed)
    model = MADE(config)
    randomize_weights(model, seed)
    fast = BlockedMADE(model)
    x = random_data(config, 20, seed)
    x[:, np.random.default_rng(seed).random(12) < 0.4] = 0
    xb = fast.permute_data(x)
    loss = float(fast.loss_and_grad(xb))
    assert fast.layers[0]._live is not None
    assert loss == pytest.approx(float(model.loss_and_grad(x)), rel=1e-12, abs=1e-10)
    for name, g, g_ref in zip(model.param_names, fast.to_natural(fast.grads), model.grads):
        np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("threads", [None, 2])
def test_union_products_zero_the_rows_of_columns_dead_in_the_next_minibatch(threads, monkeypatch):
    """Two backwards in a row: the columns live in the first minibatch and all-zero in the second
    get dW rows of 0 in the second, as MaskedDense's, not the first minibatch's values (without the
    zeroing the fast engine drifted from the reference: 63.2406 against 63.2391 valid nats)."""
    monkeypatch.setattr(blocked_mod, "SPARSE_MAX_LIVE", 1.0)
    rng = np.random.default_rng(5)
    n_in, n_out = 12, 9
    M = np.arange(n_in)[:, None] < np.sort(rng.integers(1, n_in + 1, n_out))[None, :]  # a staircase
    Mf = M.astype(np.float64)
    ref = MaskedDense(n_in, n_out, np, rng, "float64", need_input_grad=False, fixed=True)
    ref.W[...] = rng.normal(size=ref.W.shape) * Mf
    blk = BlockedDense(block_plan(M, 4), Mf, np, "float64", need_input_grad=False, sparse_input=True)
    blk.set_pool(None if threads is None else fast_threads.WorkPool(threads))
    blk.W[...] = blk.pack(ref.W)
    first = np.ones((5, n_in))  # every column live
    second = (rng.random((5, n_in)) < 0.5).astype(np.float64)
    second[:, [0, 1, 5, 6, 10]] = 0  # dead now: in every block of 4 rows
    second[:, [2, 4, 8]] = 1
    for x in (first, second):
        delta = rng.normal(size=(5, n_out))
        blk.forward(x)
        blk.backward(delta.copy())
        ref.forward(x, Mf, keep=True)
        ref.backward(delta.copy(), Mf)
        assert blk._live is not None
        np.testing.assert_allclose(blk.unpack(blk.dW), ref.dW, rtol=1e-12, atol=1e-12)
    dW = blk.unpack(blk.dW)
    assert np.all(dW[[0, 1, 5, 6, 10]] == 0) and np.abs(dW[[2, 4, 8]]).max() > 0.1
