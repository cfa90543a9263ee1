"""Samplers: the degree-ordered fast sampler against the naive reference, and the
sampled distributions against the exact probabilities of tiny models."""
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from made_np.model import MADE, MADEConfig
from made_np.fast.sampler import sample_fast
from made_np.sampling import DEFAULT_METHOD, draw_noise, sample, sample_naive


def _sharpen(model, scale=3.0, seed=0):
    """Scale the weights and randomise the biases so conditionals are far from 1/2
    and depend strongly on the past (masked entries stay exactly zero)."""
    rng = np.random.default_rng(seed)
    for layer in model._all_layers:
        layer.W *= scale
        if layer.b is not None:
            layer.b += model._on_device(rng.normal(0.0, 1.0, size=tuple(layer.b.shape)), layer.b.dtype)
    return model


@st.composite
def configs(draw):
    head = draw(st.sampled_from(["bernoulli", "categorical"]))
    classes = 2 if head == "bernoulli" else draw(st.integers(2, 4))
    encodings = ["binary", "onehot", "raw", "scaled"] if classes == 2 else ["onehot", "raw", "scaled"]
    context = draw(st.sampled_from([0, 0, 1, 3]))
    return MADEConfig(
        context=context,
        context_encoding=draw(st.sampled_from(["onehot", "raw"])),
        D=draw(st.integers(1, 7)),
        hidden=tuple(draw(st.lists(st.integers(1, 9), min_size=0, max_size=3))),
        classes=classes,
        head=head,
        input_encoding=draw(st.sampled_from(encodings)),
        ordering=draw(st.sampled_from(["natural", "random"])),
        degrees=draw(st.sampled_from(["random", "equal"])),
        direct=draw(st.booleans()),
        activation=draw(st.sampled_from(["relu", "leaky_relu"])),
        num_masks=draw(st.sampled_from([1, 3])),
        seed=draw(st.integers(0, 10_000)),
        dtype="float64",
    )


def _context(cfg, n, seed):
    """A context for ``n`` samples of a conditional model (labels or rows), else None."""
    if not cfg.context:
        return None
    rng = np.random.default_rng([seed, 4])
    if cfg.context_encoding == "onehot":
        return rng.integers(0, cfg.context, size=n)
    return rng.normal(0.0, 2.0, size=(n, cfg.context))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), mask=st.integers(0, 2), noise_seed=st.integers(0, 1000), data=st.data())
def test_fast_equals_naive_for_the_same_noise(cfg, mask, noise_seed, data):
    """Also for a conditional model (a context per sample) and from a given prefix of the ordering."""
    model = _sharpen(MADE(cfg), seed=noise_seed)
    mask = mask if cfg.num_masks > 1 else 0
    u = draw_noise(48, cfg.D, noise_seed, np)
    y = _context(cfg, 48, noise_seed)
    naive = sample_naive(model, noise=u, context=y, mask=mask)
    fast = sample_fast(model, noise=u, context=y, mask=mask)
    assert fast.dtype == naive.dtype
    assert fast.shape == (48, cfg.D)
    np.testing.assert_array_equal(fast, naive)
    assert fast.min() >= 0 and fast.max() <= cfg.classes - 1
    # from a given prefix: positions 1..k keep the given values, the rest agree between methods
    k = data.draw(st.integers(0, cfg.D), label="n_given")
    given = np.random.default_rng(noise_seed).integers(0, cfg.classes, size=(48, cfg.D)).astype(naive.dtype)
    first = np.asarray(model.mask(mask)[0].ordering) <= k
    given[:, ~first] = cfg.classes + 3  # placeholders outside the classes: neither sampler reads them
    naive = sample_naive(model, noise=u, context=y, given=given, n_given=k, mask=mask)
    fast = sample_fast(model, noise=u, context=y, given=given, n_given=k, mask=mask)
    np.testing.assert_array_equal(fast, naive)
    np.testing.assert_array_equal(fast[:, first], given[:, first])


def test_fast_equals_naive_on_a_wide_model():
    """Many units per degree group, empty groups, two layers, direct connections."""
    cfg = MADEConfig(D=40, hidden=(64, 48), ordering="random", direct=True, dtype="float64", seed=5)
    model = _sharpen(MADE(cfg), scale=2.0)
    u = draw_noise(200, 40, 9, np)
    np.testing.assert_array_equal(sample_fast(model, noise=u), sample_naive(model, noise=u))


def test_same_seed_same_samples_with_either_method():
    cfg = MADEConfig(D=12, hidden=(16,), ordering="random", dtype="float64", seed=2)
    model = _sharpen(MADE(cfg))
    a_fast = sample(model, 30, seed=7, method="fast")
    a_naive = sample(model, 30, seed=7, method="naive")
    np.testing.assert_array_equal(a_fast, sample(model, 30, seed=7, method="fast"))
    np.testing.assert_array_equal(a_naive, sample(model, 30, seed=7, method="naive"))
    np.testing.assert_array_equal(a_fast, a_naive)
    assert not np.array_equal(a_fast, sample(model, 30, seed=8, method="fast"))


def test_no_seed_draws_fresh_noise_every_call():
    """``seed=None`` is fresh entropy, as in NumPy (``default_rng([])`` would be seed 0's stream)."""
    a, b = draw_noise(4, 50, None, np), draw_noise(4, 50, None, np)
    assert not np.array_equal(a, b) and not np.array_equal(a, draw_noise(4, 50, 0, np))
    np.testing.assert_array_equal(draw_noise(4, 50, 0, np), draw_noise(4, 50, 0, np))


def test_default_method_is_fast():
    assert DEFAULT_METHOD == "fast"
    model = _sharpen(MADE(MADEConfig(D=6, hidden=(8,), dtype="float64")))
    np.testing.assert_array_equal(sample(model, 20, seed=1), sample_fast(model, 20, seed=1))


def test_float32_model_agrees_almost_everywhere():
    """float32 logits differ from the naive ones by rounding only: draws agree except
    where u lies within float32 rounding of a conditional probability."""
    cfg = MADEConfig(D=50, hidden=(40,), ordering="random", seed=4)
    model = _sharpen(MADE(cfg), scale=1.5)
    u = draw_noise(200, 50, 3, np)
    fast, naive = sample_fast(model, noise=u), sample_naive(model, noise=u)
    assert fast.dtype == np.uint8
    assert (fast == naive).mean() >= 0.999


def _all_configs(D, C):
    return np.array(list(itertools.product(range(C), repeat=D)), dtype=np.uint8 if C == 2 else np.int64)


def _chi2(samples, configs, probs):
    """Pearson statistic of the sampled configurations against exact probabilities."""
    index = {tuple(c): i for i, c in enumerate(configs.tolist())}
    counts = np.bincount([index[tuple(s)] for s in samples.tolist()], minlength=len(configs))
    expected = probs * len(samples)
    return float(((counts - expected) ** 2 / expected).sum()), counts / len(samples)


def _chi2_bound(df):
    # far in the upper tail (about 5 standard deviations of a chi-square with df degrees)
    return df + 5 * np.sqrt(2 * df)


@pytest.mark.parametrize("method", ["fast", "naive"])
def test_empirical_distribution_matches_exact_probabilities(method, stand):
    cfg = MADEConfig(D=3, hidden=(5,), ordering="random", dtype="float64", seed=11)
    model = _sharpen(stand.made(cfg), scale=4.0, seed=1)
    configs_ = _all_configs(3, 2)
    probs = np.exp(stand.get(model.log_prob(stand.put(configs_))))
    assert abs(probs.sum() - 1) < 1e-12
    n = 6000 if method == "naive" else 40000
    stat, freq = _chi2(stand.get(sample(model, n, seed=123, method=method)), configs_, probs)
    assert stat < _chi2_bound(7), (stat, freq, probs)
    # the test has power: the product of the marginals is far from the joint here
    marg = np.array([(probs[configs_[:, d] == 1]).sum() for d in range(3)])
    indep = np.prod(np.where(configs_ == 1, marg, 1 - marg), axis=1)
    assert 0.5 * np.abs(indep - probs).sum() > 0.05


@pytest.mark.parametrize("encoding", ["onehot", "raw", "scaled"])
def test_categorical_direct_distribution(encoding):
    cfg = MADEConfig(D=2, hidden=(6,), classes=3, head="categorical", input_encoding=encoding,
                     direct=True, ordering="random", dtype="float64", seed=3)
    model = _sharpen(MADE(cfg), scale=3.0, seed=2)
    configs_ = _all_configs(2, 3)
    probs = np.exp(model.log_prob(configs_))
    assert abs(probs.sum() - 1) < 1e-12
    samples = sample(model, 30000, seed=5)
    assert samples.dtype == np.int64
    stat, _ = _chi2(samples, configs_, probs)
    assert stat < _chi2_bound(8)


def test_mask_ensemble_samples_the_mixture(stand):
    cfg = MADEConfig(D=3, hidden=(6,), num_masks=4, order_agnostic=True, connectivity_agnostic=True,
                     dtype="float64", seed=8)
    model = _sharpen(stand.made(cfg), scale=4.0, seed=3)
    configs_ = _all_configs(3, 2)
    masks = [0, 1, 2, 3]
    mixture = np.exp(-stand.get(model.ensemble_nll(stand.put(configs_), masks)))
    assert abs(mixture.sum() - 1) < 1e-12
    samples = stand.get(sample(model, 40000, seed=21, masks=masks))
    stat, freq = _chi2(samples, configs_, mixture)
    assert stat < _chi2_bound(7), (stat, freq, mixture)
    # power: the mixture differs from every single mask's distribution
    for k in masks:
        single = np.exp(stand.get(model.log_prob(stand.put(configs_), mask=k)))
        assert 0.5 * np.abs(single - mixture).sum() > 0.03
    # the same seed gives the same ensemble samples; fast and naive agree
    u = draw_noise(500, 3, 4, model.xp, model.device)
    a = stand.get(sample(model, noise=u, seed=4, masks=masks, method="fast"))
    np.testing.assert_array_equal(a, stand.get(sample(model, noise=u, seed=4, masks=masks, method="naive")))


def test_sample_errors():
    model = MADE(MADEConfig(D=4, hidden=(5,)))
    with pytest.raises(ValueError, match="unknown sampling method 'slow'"):
        sample(model, 3, method="slow")
    with pytest.raises(ValueError, match="at least one mask"):
        sample(model, 3, masks=[])
    with pytest.raises(ValueError, match="outside the bank"):
        sample(model, 3, seed=0, masks=[0, 5])


@pytest.mark.parametrize("head,classes,encoding", [
    ("bernoulli", 2, "binary"), ("bernoulli", 2, "onehot"), ("categorical", 3, "onehot"),
    ("categorical", 3, "raw"), ("categorical", 3, "scaled"),
])
def test_fast_sampler_frequencies_match_the_exact_table(head, classes, encoding):
    """A check of the fast sampler independent of the naive one: its empirical frequencies
    against exact probabilities, two hidden layers, direct connections, random ordering."""
    D = 3
    cfg = MADEConfig(D=D, hidden=(7, 5), classes=classes, head=head, input_encoding=encoding, direct=True,
                     ordering="random", dtype="float64", seed=21)
    model = _sharpen(MADE(cfg), scale=3.0, seed=4)
    configs_ = _all_configs(D, classes)
    probs = np.exp(model.log_prob(configs_))
    assert abs(probs.sum() - 1) < 1e-12
    stat, _ = _chi2(sample(model, 30000, seed=9, method="fast"), configs_, probs)
    assert stat < _chi2_bound(len(configs_) - 1)


@pytest.mark.parametrize("masks", [None, [0, 3, 5]])
def test_sample_in_blocks_draws_the_same_samples(monkeypatch, masks):
    """sample() draws in blocks of rows (a 2-D run's 100,000 figure samples of a wide network used
    to need all their activations at once): each row reads only its own noise, so the blocks
    give the very samples of one batch."""
    from made_np import limits

    model = MADE(MADEConfig(D=7, hidden=(12, 9), num_masks=6, seed=3))
    whole = sample(model, 50, seed=11, masks=masks)
    monkeypatch.setattr(limits, "SAMPLE_BLOCK_BYTES", 4 * (7 + 12 + 9 + 7) * 2 * 4)  # 4 rows a block
    assert limits.sample_block_rows(model.config) == 4
    np.testing.assert_array_equal(sample(model, 50, seed=11, masks=masks), whole)
    cond = MADE(MADEConfig(D=5, hidden=(8,), context=3, seed=1))
    labels = np.arange(50) % 3
    monkeypatch.undo()
    expected = sample(cond, 50, seed=2, context=labels)
    monkeypatch.setattr(limits, "SAMPLE_BLOCK_BYTES", 1)  # one row a block
    np.testing.assert_array_equal(sample(cond, 50, seed=2, context=labels), expected)
    one_hot = np.array([[0, 0, 1]], np.float32)  # one context row for every sample, label or encoded
    np.testing.assert_array_equal(sample(cond, 4, seed=2, context=[2]), sample(cond, 4, seed=2, context=one_hot))
    bank = MADE(MADEConfig(D=5, hidden=(8,), context=3, num_masks=4, seed=1))
    for n in (1, 2):  # one sample from the mixture keeps its context (a review caught it dropped)
        assert sample(bank, n, seed=0, masks=[0, 1, 2], context=1).shape == (n, 5)
    monkeypatch.undo()
    # the samplers called directly draw all rows at once, and their estimate charges them all
    cfg = MADEConfig(D=2, hidden=(4000,))
    whole = limits.sample_parts(cfg, 100_000)[0].nbytes
    assert whole > 3e9 > 3e8 > limits.sample_parts(cfg, 100_000, blocked=True)[0].nbytes


def test_sampling_a_mixture_after_marginals_and_completions():
    """The passes take their mask as an argument, so nothing done before changes a draw: after
    observed-first masks (marginals, completions), sample(masks=[0, 1]) used to fail with 'mask
    index must be an integer, got None' (it restored the masks by hand)."""
    from made_np.conditional import complete, log_marginal

    cfg = MADEConfig(D=5, hidden=(8,), num_masks=4, seed=2, dtype="float64")
    model = _sharpen(MADE(cfg), seed=1)
    expected = sample(model, 30, masks=[0, 1], seed=0)
    x = np.ones((2, 5), dtype=np.uint8)
    obs = np.array([[True, False, True, False, False]] * 2)
    log_marginal(model, x, obs, masks=3)
    complete(model, x, obs, 2, masks=3)
    np.testing.assert_array_equal(sample(model, 30, masks=[0, 1], seed=0), expected)


def test_a_mixture_from_given_noise_is_the_same_every_time():
    """With noise and no seed the masks of a mixture come from a fixed stream: the same noise gives
    the same samples, whichever the method (they were drawn with fresh entropy)."""
    cfg = MADEConfig(D=6, hidden=(16,), num_masks=4, seed=1, dtype="float64")
    model = _sharpen(MADE(cfg), seed=2)
    u = draw_noise(200, 6, 5, np)
    first = sample(model, noise=u)
    np.testing.assert_array_equal(sample(model, noise=u), first)
    np.testing.assert_array_equal(sample(model, noise=u, method="naive"), first)
    with pytest.raises(ValueError, match="n must be an integer"):
        sample(model, "x", noise=u)  # n is checked even when the noise sets the count


@pytest.mark.strict_device
@pytest.mark.parametrize("head,classes,encoding,context", [("bernoulli", 2, "binary", 0), ("categorical", 3, "onehot", 2),
                                                           ("mog", 0, "raw", 0), ("gaussian", 0, "raw", 2),
                                                           ("mixed", 0, "raw", 2)])
def test_the_strict_device_draws_the_samples_numpy_draws(head, classes, encoding, context):
    """Ancestral sampling on the strict stand-in (the reference, one pass per variable) gives NumPy's
    samples for the same seed and context, each head; the context goes to the device like the data."""
    import array_api_strict

    from conftest import Stand
    cfg = MADEConfig(D=4, hidden=(7,), classes=classes, head=head, input_encoding=encoding, ordering="random",
                     context=context, context_encoding="raw", dtype="float64", seed=6,
                     **(dict(discrete_columns=(0, 2), levels=((1.0, 2.0), (-1.0, 0.0, 3.0))) if head == "mixed" else {}))
    y = np.random.default_rng(1).normal(size=(50, context)) if context else None
    out = []
    with array_api_strict.ArrayAPIStrictFlags(api_version="2024.12"):
        for stand in (Stand("numpy"), Stand("strict")):
            model = _sharpen(stand.made(cfg), scale=2.0)
            out.append(stand.get(sample(model, 50, seed=3, method="naive", context=stand.put(y))))
    assert out[0].dtype == out[1].dtype and np.unique(out[0], axis=0).shape[0] > 5
    np.testing.assert_allclose(out[1], out[0], rtol=1e-12, atol=0)


def test_the_given_value_at_the_last_given_position_is_checked():
    """``n_given = k`` reads the variables at positions 1..k, so a value outside the classes at position k
    itself (the others valid) is refused, by both samplers, before anything is drawn."""
    model = MADE(MADEConfig(D=5, hidden=(8,), ordering="random", seed=4, dtype="float64"))
    k = 3
    given = np.zeros((2, 5), dtype=np.int64)
    given[:, int(np.flatnonzero(model.mask(0)[0].ordering == k)[0])] = 2  # the variable at position k
    for sampler in (sample_naive, sample_fast):
        with pytest.raises(ValueError, match=r"given must hold integers in 0\.\.1"):
            sampler(model, noise=draw_noise(2, 5, 0, np), given=given, n_given=k)
        sampler(model, noise=draw_noise(2, 5, 0, np), given=given, n_given=k - 1)  # position k not read: accepted
