"""Conditional MADE: a context y enters as inputs of degree 0 (docs/math.md, "Context inputs").

* Structure: the context blocks U1 (context, H_1) and UV (context, D * R_out) carry no mask
  (they are :class:`made_np.layers.Dense`), feed every unit of the first hidden layer and
  every logit, and leave the masks of x and their reachability exactly as they were.
* Behaviour: for a fixed context the logits keep the autoregressive property (bitwise, as in
  tests/test_autoregressive.py), and changing the context changes the logits of *every*
  variable, the first of the ordering included.
* The fast forms: BlockedMADE gives the reference NLLs and gradients; the completion's
  degree-ordered sampler from the observed prefix gives the reference completions.
* Data, training and checkpoints carry the context through (digits labels stay aligned with
  the shuffled split; an .npz may hold train_context/valid_context/test_context).
"""
import functools

import numpy as np
import pytest
from conftest import all_configurations, block_reach, examples, model_configs, random_data, randomize_weights, \
    strict_order
from hypothesis import given
from hypothesis import strategies as st
from test_autoregressive import check_prefix_invariance

from made_np import conditional, data as data_mod
from made_np.checkpoint import load_checkpoint
from made_np.checks import check_context
from made_np.config import MADEConfig, TrainConfig
from made_np.fast import blocked as blocked_mod
from made_np.fast.blocked import BlockedMADE
from made_np.layers import Dense
from made_np.masks import path_matrix
from made_np.model import MADE
from made_np.train import evaluate, fit


def contexts(cfg, n, seed):
    """A context for n rows: labels for a onehot model, float rows for a raw one."""
    rng = np.random.default_rng([seed, 31])
    if cfg.context_encoding == "onehot":
        return rng.integers(0, cfg.context, size=n)
    return rng.normal(0.0, 1.0, size=(n, cfg.context))


@st.composite
def conditional_configs(draw, **kw):
    """A float64 MADEConfig of model_configs with a context of width 1..4, onehot or raw."""
    cfg = draw(model_configs(**kw))
    d = cfg.to_dict()
    d.update(context=draw(st.integers(1, 4)), context_encoding=draw(st.sampled_from(["onehot", "raw"])))
    return MADEConfig.from_dict(d)


class WithContext:
    """A model whose logits(x) are those given a fixed context (for the prefix check of
    tests/test_autoregressive.py, which calls model.logits(x))."""

    def __init__(self, model, y):
        self.model, self.y = model, y

    def __getattr__(self, name):
        return getattr(self.model, name)

    def logits(self, x, mask=0):
        return self.model.logits(x, context=self.y[:x.shape[0]], mask=mask)


# --------------------------------------------------------------------------- structure


@examples(20)
@given(conditional_configs(max_D=8, dtype="float32"), st.integers(0, 50))
def test_context_blocks_are_unmasked_and_leave_the_masks_of_x_alone(cfg, index):
    model = MADE(cfg)
    K = cfg.num_masks
    index = index % K if K else index
    maskset, arrays = model.mask(index)
    C, R = cfg.context, model.out_repeat
    assert isinstance(model.context_output, Dense) and not hasattr(model.context_output, "M")
    assert model.context_output.W.shape == (C, cfg.D * R)
    if cfg.hidden:
        assert isinstance(model.context_hidden, Dense) and model.context_hidden.W.shape == (C, cfg.hidden[0])
        assert model.param_names[-2:] == ["U1", "UV"]
    else:
        assert model.context_hidden is None and model.param_names[-1] == "UV"
    # the masks of x: the same as the unconditional model's, autoregressive
    plain = MADE(MADEConfig.from_dict({**cfg.to_dict(), "context": 0}))
    for a, b in zip(arrays, plain.mask(index)[1]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.layers + [model.direct] * bool(cfg.direct), plain.layers + [plain.direct] * bool(cfg.direct)):
        np.testing.assert_array_equal(a.W, b.W)  # the context's weights are drawn after all others
    P = block_reach(model, index)
    assert not (P & ~strict_order(maskset.ordering)).any()
    assert np.array_equal(P, path_matrix(maskset, direct=cfg.direct))


# --------------------------------------------------------------------------- behaviour


def randomized_model(cfg, index, seed):
    """The MADE of ``cfg`` with random weights, and mask ``index`` of its bank (taken modulo its size)."""
    model = MADE(cfg)
    K = cfg.num_masks
    randomize_weights(model, seed)
    return model, index % K if K else index


@examples(25)
@given(conditional_configs(max_D=7, dtype="float64"), st.integers(0, 50), st.integers(0, 2**31 - 1))
def test_logits_keep_the_autoregressive_property_given_a_context(cfg, index, seed):
    model, mask = randomized_model(cfg, index, seed)
    check_prefix_invariance(WithContext(model, contexts(cfg, 4, seed)), seed, mask=mask)


@examples(25)
@given(conditional_configs(max_D=7, dtype="float64"), st.integers(0, 50), st.integers(0, 2**31 - 1))
def test_every_output_the_first_included_changes_with_the_context(cfg, index, seed):
    model, mask = randomized_model(cfg, index, seed)
    x = np.repeat(random_data(cfg, 1, seed), 2, axis=0)  # the same x twice
    if cfg.context_encoding == "onehot":
        if cfg.context < 2:
            return  # a single class: nothing to change
        y = np.array([0, cfg.context - 1])
    else:
        y = np.stack([np.zeros(cfg.context), np.ones(cfg.context)])
    z = np.asarray(model.logits(x, context=y, mask=mask)).reshape(2, cfg.D, -1)
    changed = np.any(z[0] != z[1], axis=-1)
    assert changed.all(), f"variables {np.flatnonzero(~changed).tolist()} ignore the context"


def test_the_first_variable_depends_on_the_context_only():
    """Without direct connections or degree-0 hidden units, UV alone carries y to output o_1."""
    cfg = MADEConfig(D=5, hidden=(7, 6), num_masks=3, context=4, ordering="random", seed=3, dtype="float64")
    model = MADE(cfg)
    randomize_weights(model, 0)
    first = int(np.argmax(np.asarray(model.mask(0)[0].ordering) == 1))
    x = random_data(cfg, 6, 1)
    z = np.asarray(model.logits(x, context=np.full(6, 2)))
    assert len(set(z[:, first].tolist())) == 1  # the same for every x
    z2 = np.asarray(model.logits(x, context=np.full(6, 3)))[:, first]
    assert np.all(z2 != z[:, first])
    model.context_output.W[...] = 0  # without UV the first output cannot see y
    za = np.asarray(model.logits(x[:1], context=[0]))[0, first]
    zb = np.asarray(model.logits(x[:1], context=[3]))[0, first]
    assert za == zb


def test_a_conditional_model_is_normalised_for_every_context():
    cfg = MADEConfig(D=4, hidden=(8,), classes=3, head="categorical", input_encoding="onehot", num_masks=2,
                     direct=True, context=3, context_encoding="raw", seed=1, dtype="float64")
    model = MADE(cfg)
    randomize_weights(model, 4)
    xs = all_configurations(4, 3)
    for y in (np.zeros(3), np.array([1.0, -2.0, 0.5])):
        for k in (0, 1):
            assert abs(np.exp(model.log_prob(xs, context=y[None, :], mask=k)).sum() - 1) < 1e-12
        assert abs(np.exp(-model.ensemble_nll(xs, [0, 1], context=y)).sum() - 1) < 1e-12


def test_encode_context_shapes_and_errors():
    m = MADE(MADEConfig(D=3, hidden=(4,), context=3, dtype="float64"))
    np.testing.assert_array_equal(m.encode_context(np.array([2, 0])), np.eye(3)[[2, 0]])
    np.testing.assert_array_equal(check_context(m, 1, 4), np.tile(np.eye(3)[1], (4, 1)))
    np.testing.assert_array_equal(check_context(m, np.eye(3)[[1]], 2), np.eye(3)[[1, 1]])
    with pytest.raises(ValueError, match="conditional"):
        m.nll(np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"0\.\.2"):
        check_context(m, [3])
    with pytest.raises(ValueError, match=r"0\.\.2"):  # the public encoding checks too
        m.encode_context([-1, 0], 2)
    with pytest.raises(ValueError, match="2 rows for 3"):
        check_context(m, [0, 1], 3)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        check_context(m, np.zeros((2, 4)))
    # labels that are not integers: a string, a number too large for int64, complex numbers
    for bad in ("3", [2**64 + 3], np.array([1 + 0j]), [0.5]):
        with pytest.raises(ValueError, match="context labels must be integers"):
            check_context(m, bad)
    with pytest.raises(ValueError, match=r"got 0\.\.9223372036854775813"):  # shown as given, not wrapped
        check_context(m, np.array([0, 2**63 + 5], dtype=np.uint64))
    raw = MADE(MADEConfig(D=3, hidden=(4,), context=2, context_encoding="raw"))
    assert check_context(raw, [0.5, 1.0], 3).shape == (3, 2)
    for bad in ([np.nan, 1.0], [0.0, np.inf], [1e300, 0.0]):  # NaN rows used to give samples of all zeros
        with pytest.raises(ValueError, match="finite numbers within float32's range"):
            check_context(raw, np.array([bad]), 2)
    assert check_context(MADE(MADEConfig(D=3, hidden=(4,), context=2, context_encoding="raw", dtype="float64")),
                         [1e300, 0.0]).max() == 1e300  # within float64's range
    for bad in (np.array([["a", "b"]]), np.array([[object(), 1.0]], dtype=object), np.array([[1j, 0]])):
        with pytest.raises(ValueError, match="context rows must be real numbers, got dtype"):
            check_context(raw, bad, 1)  # a string used to escape as numpy's UFuncTypeError
    with pytest.raises(ValueError, match="no context"):
        check_context(MADE(MADEConfig(D=3)), [1])
    with pytest.raises(ValueError, match="context must be >= 0"):
        MADEConfig(D=3, context=-1)
    with pytest.raises(ValueError, match="unknown context_encoding 'label'"):
        MADEConfig(D=3, context=2, context_encoding="label")


# --------------------------------------------------------------------------- the fast forms


@examples(15)
@given(conditional_configs(num_masks=1, max_D=7, max_layers=2), st.integers(0, 2**31 - 1))
def test_blocked_made_with_a_context_is_the_reference(cfg, seed):
    with pytest.MonkeyPatch.context() as mp:  # pack every matrix in blocks of 3
        mp.setattr(blocked_mod, "BLOCK_MIN_SIZE", 0)
        mp.setattr(blocked_mod, "BLOCK_MAX_COVERAGE", 1.0)
        mp.setattr(blocked_mod, "block_plan", functools.partial(blocked_mod.block_plan, width=3))
        model = MADE(cfg)
        randomize_weights(model, seed)
        fast = BlockedMADE(model)
    x, y = random_data(cfg, 12, seed), contexts(cfg, 12, seed)
    np.testing.assert_allclose(fast.nll(fast.permute_data(x), context=y), model.nll(x, context=y),
                               rtol=1e-12, atol=1e-10)
    loss_ref = float(model.loss_and_grad(x, context=y))
    assert float(fast.loss_and_grad(fast.permute_data(x), context=y)) == pytest.approx(loss_ref, rel=1e-12)
    for name, g, g_ref in zip(model.param_names, fast.to_natural(fast.grads), model.grads):
        np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12, err_msg=name)
    for name, p in model.state_dict().items():
        np.testing.assert_array_equal(fast.state_dict()[name], p)


@examples(20)
@given(model_configs(min_D=2, max_D=6, max_layers=2, num_masks=0, order_agnostic=True, dtype="float64"),
       st.integers(0, 4), st.integers(0, 2**31 - 1))
def test_fast_completion_is_the_reference_completion(cfg, context, seed):
    """The same completions (same seed) from the degree-ordered sampler started at the observed
    prefix and from one forward pass per missing position; observed entries untouched."""
    cfg = MADEConfig.from_dict({**cfg.to_dict(), "context": context})
    model = MADE(cfg)
    randomize_weights(model, seed, scale=2.0)
    rng = np.random.default_rng(seed)
    x = random_data(cfg, 5, seed)
    obs = rng.random((5, cfg.D)) < 0.5
    obs[0] = True
    obs[1] = False
    y = rng.integers(0, context, size=5) if context else None
    fast, lp_fast = conditional.complete(model, x, obs, 7, masks=3, seed=seed % 100, context=y)
    naive, lp_naive = conditional.complete(model, x, obs, 7, masks=3, seed=seed % 100, context=y, method="naive")
    np.testing.assert_array_equal(fast, naive)
    np.testing.assert_array_equal(lp_fast, lp_naive)
    assert np.all(fast[np.repeat(obs[:, None, :], 7, axis=1)] == np.repeat(x[:, None, :], 7, axis=1)[
        np.repeat(obs[:, None, :], 7, axis=1)])


def test_marginals_are_given_the_context():
    """log p(x_o | y) over every x_o sums to 1 for each context, and the full observation is log p(x | y)."""
    cfg = MADEConfig(D=4, hidden=(9,), num_masks=0, context=2, seed=5, dtype="float64")
    model = MADE(cfg)
    randomize_weights(model, 2, scale=2.0)
    xs = all_configurations(4, 2)
    obs = np.tile([True, False, True, False], (len(xs), 1))
    for label in (0, 1):
        y = np.full(len(xs), label)
        lm = conditional.log_marginal(model, xs, obs, masks=3, seed=1, context=y)
        distinct = np.unique(xs[:, [0, 2]], axis=0, return_index=True)[1]
        assert abs(np.exp(lm[distinct]).sum() - 1) < 1e-12
    full = conditional.log_marginal(model, xs, np.ones_like(obs), masks=3, seed=1, context=np.zeros(16, int))
    other = conditional.log_marginal(model, xs, np.ones_like(obs), masks=3, seed=1, context=np.ones(16, int))
    assert abs(np.exp(full).sum() - 1) < 1e-12 and np.abs(full - other).max() > 1e-3


# --------------------------------------------------------------------------- data, training, checkpoints


def test_digits_labels_stay_aligned_with_the_shuffled_split():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.data >= 8).astype(np.uint8)
    ds = data_mod.load_dataset("digits", seed=3, context="labels")
    plain = data_mod.load_dataset("digits", seed=3)
    assert ds.context_width == 10 and ds.context_encoding == "onehot"
    perm = np.random.default_rng(3).permutation(len(images))
    for split, rows in zip(("train", "valid", "test"), np.split(perm, [1297, 1547])):
        np.testing.assert_array_equal(getattr(ds, split), getattr(plain, split))  # the same images
        np.testing.assert_array_equal(getattr(ds, split), images[rows])
        np.testing.assert_array_equal(ds.context_of(split), bunch.target[rows])
    assert plain.train_context is None and plain.context_width == 0
    assert MADEConfig.for_data(ds).context == 10 and MADEConfig.for_data(plain).context == 0


def test_npz_contexts_labels_and_rows(tmp_path):
    rng = np.random.default_rng(0)
    splits = {k: rng.integers(0, 2, size=(n, 5)) for k, n in zip(data_mod.SPLIT_KEYS, (20, 6, 6))}
    labels = {k.replace("data", "context"): rng.integers(0, 4, size=len(v)) for k, v in splits.items()}
    np.savez(tmp_path / "lab.npz", **splits, **labels)
    ds = data_mod.load_dataset(str(tmp_path / "lab.npz"), context="file")
    assert (ds.context_width, ds.context_encoding) == (int(max(v.max() for v in labels.values())) + 1, "onehot")
    np.testing.assert_array_equal(ds.test_context, labels["test_context"])
    rows = {k: rng.normal(size=(len(v), 3)) for k, v in labels.items()}
    np.savez(tmp_path / "rows.npz", **splits, **rows)
    ds = data_mod.load_dataset(str(tmp_path / "rows.npz"), context="file")
    assert (ds.context_width, ds.context_encoding) == (3, "raw")
    assert data_mod.load_dataset(str(tmp_path / "rows.npz")).train_context is None
    bad = dict(rows, valid_context=rows["valid_context"][:2])
    np.savez(tmp_path / "bad.npz", **splits, **bad)
    with pytest.raises(data_mod.DataError, match="valid context has 2 rows"):
        data_mod.load_dataset(str(tmp_path / "bad.npz"), context="file")
    huge = dict(rows, train_context=rows["train_context"] * 1e300)  # finite, but inf in float32
    np.savez(tmp_path / "huge.npz", **splits, **huge)
    with pytest.raises(data_mod.DataError, match="huge.npz: train context has values beyond float32's range"):
        data_mod.load_dataset(str(tmp_path / "huge.npz"), context="file")
    np.savez(tmp_path / "plain.npz", **splits)
    with pytest.raises(data_mod.DataError, match="missing key 'train_context'"):
        data_mod.load_dataset(str(tmp_path / "plain.npz"), context="file")
    with pytest.raises(data_mod.DataError, match="digits only"):
        data_mod.load_dataset(str(tmp_path / "plain.npz"), context="labels")
    with pytest.raises(data_mod.DataError, match="unknown context"):
        data_mod.load_dataset("digits", context="classes")


def test_a_context_added_in_python_does_not_make_the_data_look_changed(tmp_path):
    """An unconditional run trained through the API on data with a context attached
    (``with_context``, the spec unchanged) evaluates from the command line: the values' and the
    context's fingerprints are kept apart, and a context is compared only when both have one."""
    from conftest import run_cli

    ds = data_mod.load_dataset("digits")
    labelled = data_mod.with_context(ds, *(np.arange(len(getattr(ds, s))) % 3 for s in ("train", "valid", "test")))
    model = MADE(MADEConfig.for_data(ds, hidden=(8,)))
    fit(model, labelled, TrainConfig(epochs=1, patience=0), out_dir=tmp_path / "run")
    _, info = load_checkpoint(tmp_path / "run")
    assert set(info["dataset"]["sha256"]) == set(info["dataset"]["context_sha256"]) == {"train", "valid", "test"}
    assert info["dataset"]["sha256"] == data_mod.split_fingerprints(ds)
    result = run_cli("evaluate", tmp_path / "run")
    assert result.exit_code == 0, result.output


def test_training_gathers_the_context_rows_and_both_engines_agree(tmp_path):
    """A class-conditional model learns from the labels (its NLL given the true label beats
    the NLL given a wrong one), both engines give the same run, and the checkpoint keeps it."""
    ds = data_mod.load_dataset("digits", context="labels")
    cfg = MADEConfig.for_data(ds, hidden=(32,), dtype="float64")
    results = {}
    for engine in ("reference", "fast"):
        model = MADE(cfg)
        fit(model, ds, TrainConfig(epochs=3, engine=engine, patience=0), out_dir=tmp_path / engine)
        results[engine] = evaluate(model, ds.test, context=ds.test_context)["nll"]
    assert results["fast"] == pytest.approx(results["reference"], rel=1e-9)
    loaded, info = load_checkpoint(tmp_path / "fast")
    assert info["config"]["model"]["context"] == 10 and loaded.param_names[-2:] == ["U1", "UV"]
    right = evaluate(loaded, ds.test, context=ds.test_context)["nll"]
    assert right == pytest.approx(results["fast"], rel=1e-12)
    wrong = evaluate(loaded, ds.test, context=(ds.test_context + 5) % 10)["nll"]
    assert right < wrong
    with pytest.raises(ValueError, match="no train context"):
        fit(MADE(cfg), data_mod.load_dataset("digits"), TrainConfig(epochs=1))


def test_masks_of_one_pattern_at_a_time(monkeypatch):
    """Rows with many distinct observed patterns: each pattern's K masks (about 1.4 MB each at
    784x500) are built when its rows are reached and dropped after, not all at once."""
    import weakref

    alive, peak = [0], [0]
    build = conditional.observed_first_maskset

    def counted(*args, **kw):
        ms = build(*args, **kw)
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        weakref.finalize(ms, lambda: alive.__setitem__(0, alive[0] - 1))
        return ms

    monkeypatch.setattr(conditional, "observed_first_maskset", counted)
    cfg = MADEConfig(D=8, hidden=(10,), num_masks=0, seed=1, dtype="float64")
    model = MADE(cfg)
    x = random_data(cfg, 40, 0)
    obs = np.random.default_rng(0).random((40, 8)) < 0.5  # about 40 distinct patterns
    conditional.log_marginal(model, x, obs, masks=2, seed=0)
    conditional.complete(model, x, obs, 2, masks=2, seed=0)
    assert len(np.unique(obs, axis=0)) > 20 and peak[0] <= 2 * 2
