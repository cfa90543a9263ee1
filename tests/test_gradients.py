"""Hand-derived gradients of MADE against central finite differences (paper Sec. 4, eqs. 10-13).

7. For random configurations -- every head (Bernoulli eq. 3 with BCE; softmax with
   cross-entropy; the real heads' Gaussian and mixture NLLs, docs/math.md Sec. 13), every input encoding, direct connections (eq. 11) on and off, ReLU
   and leaky ReLU, one fixed mask or a bank -- every parameter's analytic gradient of the
   mean NLL (nats) matches ``(L(p + h) - L(p - h)) / 2h`` in float64 with h = 1e-6:

       |g - fd| / max(|g|, |fd|, 1e-2) < 1e-6   for every checked entry

   (a relative error, floored at 1e-2 so that round-off of the ~1e-10 order in L does not
   dominate tiny gradients). ReLU kinks: a configuration whose hidden pre-activations come
   within 1e-4 of 0 gets fresh weights (a step of 1e-6 cannot then cross a kink).
   Masked weights: gradient exactly 0 (``dW *= M``). With one fixed mask, W is stored
   pre-masked, so only unmasked entries are perturbed; with a bank, perturbing a masked
   entry must leave the loss bitwise unchanged and its gradient exactly 0.
   The gradient of the batch-mean loss equals the mean of the per-example gradients.
   A conditional model's unmasked context blocks ``U1`` (into the first hidden layer) and
   ``UV`` (into the logits) pass the same check, ``dU = y^T delta``.

The helpers work on any array namespace (model arrays come to the host through
``backend.to_host``): the deterministic cases run a second time on the strict stand-in
(``stand``, tests/conftest.py), where a host array inside a pass fails.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from conftest import bank_index, examples, model_configs, random_data, randomize_weights
from made_np import backend
from made_np.model import MADE, MADEConfig

H = 1e-6
KINK = 1e-4
RTOL = 1e-6
FLOOR = 1e-2
MAX_ENTRIES = 300  # per parameter array; larger arrays are checked on a random subset


def preactivations(model, x, context=None, mask=0) -> list:
    """Hidden pre-activations recomputed here from W, M and b (and U1 with a context; for the kink check)."""
    host = backend.to_host
    h = host(model.encode(model._on_device(x))[0]).astype(np.float64)
    out = []
    for i, (layer, M) in enumerate(zip(model.layers[:-1], model.mask(mask)[1])):
        a = h @ (host(layer.W) * host(M)) + host(layer.b)
        if i == 0 and model.context_hidden is not None:
            a = a + host(model.encode_context(context, x.shape[0])) @ host(model.context_hidden.W)
        out.append(a)
        h = np.maximum(a, 0) if model.config.activation == "relu" else np.where(a > 0, a, 0.01 * a)
    return out


def kink_free_weights(model, x, seed, context=None, mask=0) -> bool:
    """Load trained-looking weights whose pre-activations keep clear of 0; False if none found."""
    for attempt in range(40):
        randomize_weights(model, seed + 7919 * attempt)
        pres = preactivations(model, x, context, mask)
        if all(np.min(np.abs(a)) >= KINK for a in pres if a.size):
            return True
    return False


def mean_nll(model, x, context=None, mask=0) -> float:
    return float(np.mean(backend.to_host(model.nll(x, context=context, mask=mask))))


def check_gradients(model, x, seed, context=None, mask=0):
    """Analytic gradients of the mean NLL under ``mask`` vs central differences, entry by entry
    (``x``, ``context``: host arrays, put on the model's device here)."""
    x = model._on_device(x)
    context = None if context is None else model._on_device(context)
    loss = model.loss_and_grad(x, mask, context=context)
    assert abs(float(loss) - mean_nll(model, x, context, mask)) <= 1e-12 * max(1.0, abs(float(loss)))
    grads = {n: backend.to_host(g).copy() for n, g in zip(model.param_names, model.grads)}
    fixed = model.config.num_masks == 1
    arrays = [backend.to_host(m) for m in model.mask(mask)[1]]
    rng = np.random.default_rng([seed, 5])
    worst = 0.0
    for name, p in zip(model.param_names, model.params):
        g = grads[name]
        assert g.shape == tuple(p.shape) and g.dtype == np.float64
        if name.startswith("W") or name == "A":
            M = np.asarray(arrays[-1 if name == "A" else int(name[1:])]) != 0
            masked = np.flatnonzero(~M.reshape(-1))
            assert np.all(g.reshape(-1)[masked] == 0.0), f"{name}: masked weights get a non-zero gradient"
            candidates = np.flatnonzero(M.reshape(-1)) if fixed else np.arange(p.size)
        else:
            candidates = np.arange(p.size)
        if candidates.size > MAX_ENTRIES:
            candidates = rng.choice(candidates, MAX_ENTRIES, replace=False)
        for i in candidates:
            at = tuple(int(k) for k in np.unravel_index(i, p.shape))  # an entry of the model's own array
            old = float(p[at])
            p[at] = old + H
            up = mean_nll(model, x, context, mask)
            p[at] = old - H
            down = mean_nll(model, x, context, mask)
            p[at] = old
            fd = (up - down) / (2 * H)
            a = g.reshape(-1)[i]
            err = abs(a - fd) / max(abs(a), abs(fd), FLOOR)
            worst = max(worst, err)
            assert err < RTOL, f"{name}[{np.unravel_index(i, p.shape)}]: analytic {a:.12g} vs finite difference {fd:.12g}"
            if not fixed and (name.startswith("W") or name == "A") and not M.reshape(-1)[i]:
                assert up == down, f"{name}: a masked weight changes the loss"
    return worst


COMBOS = [("bernoulli", e) for e in ("binary", "onehot", "raw", "scaled")] + \
         [("categorical", e) for e in ("onehot", "raw", "scaled")] + [("mog", "raw"), ("gaussian", "raw")]


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
@pytest.mark.parametrize("head,encoding", COMBOS)
@examples(3)
@given(data=st.data())
def test_gradients_match_finite_differences(head, encoding, activation, data):
    cfg = data.draw(model_configs(max_D=5, factor=2, head=head, encoding=encoding, max_classes=4,
                                  activation=activation, dtype="float64"))
    model = MADE(cfg)
    mask = bank_index(model, data.draw(st.integers(0, 100)))
    seed = data.draw(st.integers(0, 2**31 - 1))
    x = random_data(cfg, 3, seed)
    assume(kink_free_weights(model, x, seed, mask=mask))
    check_gradients(model, x, seed, mask=mask)


@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("num_masks", [1, 3])
def test_gradients_fixed_cases(direct, num_masks, stand):
    """Deterministic cases (two hidden layers, direct on/off, fixed mask vs bank), all entries."""
    cfg = MADEConfig(D=4, hidden=(6, 5), classes=3, head="categorical", input_encoding="onehot",
                     num_masks=num_masks, ordering="random", direct=direct, seed=1, dtype="float64")
    model = stand.made(cfg)
    x = random_data(cfg, 4, 0)
    assert kink_free_weights(model, x, 0, mask=num_masks - 1)
    assert check_gradients(model, x, 0, mask=num_masks - 1) < RTOL


@pytest.mark.parametrize("hidden", [(), (6,), (6, 5)])
@pytest.mark.parametrize("encoding", ["onehot", "raw"])
@pytest.mark.parametrize("direct", [False, True])
def test_gradients_with_a_context(hidden, encoding, direct, stand):
    """The context blocks U1 and UV (dU = y^T delta), and every other parameter of a
    conditional model, against central differences in float64."""
    width = 3
    cfg = MADEConfig(D=4, hidden=hidden, classes=3, head="categorical", input_encoding="onehot",
                     num_masks=2, ordering="random", direct=direct, context=width,
                     context_encoding=encoding, seed=2, dtype="float64")
    model = stand.made(cfg)
    x = random_data(cfg, 5, 0)
    rng = np.random.default_rng(1)
    y = rng.integers(0, width, size=5) if encoding == "onehot" else rng.normal(size=(5, width))
    assert kink_free_weights(model, x, 0, y, mask=1)
    assert [n for n in model.param_names if n.startswith("U")] == (["U1"] if hidden else []) + ["UV"]
    assert check_gradients(model, x, 0, y, mask=1) < RTOL


def test_finite_difference_check_catches_a_wrong_gradient(stand):
    """The check can fail: corrupt the hidden-layer backward pass and it must object."""
    cfg = MADEConfig(D=4, hidden=(6,), num_masks=2, seed=3, dtype="float64")
    model = stand.made(cfg)
    x = random_data(cfg, 3, 1)
    assert kink_free_weights(model, x, 1)
    check_gradients(model, x, 1)
    layer = model.layers[0]
    original = layer.backward

    def wrong(delta, M):
        out = original(delta, M)
        layer.db *= 1.01
        return out

    layer.backward = wrong
    with pytest.raises(AssertionError, match="b0"):
        check_gradients(model, x, 1)


@examples(10)
@given(model_configs(max_D=6, dtype="float64"), st.integers(0, 100), st.integers(0, 2**31 - 1))
def test_mean_loss_gradient_is_the_mean_of_per_example_gradients(cfg, index, seed):
    model = MADE(cfg)
    mask = bank_index(model, index)
    randomize_weights(model, seed)
    n = 5
    x = random_data(cfg, n, seed)
    loss = float(model.loss_and_grad(x, mask))
    batch = [np.array(g, copy=True) for g in model.grads]
    per_loss, per_grads = [], []
    for i in range(n):
        per_loss.append(float(model.loss_and_grad(x[i:i + 1], mask)))
        per_grads.append([np.array(g, copy=True) for g in model.grads])
    assert loss == pytest.approx(np.mean(per_loss), rel=1e-12, abs=1e-12)
    for k, (name, g) in enumerate(zip(model.param_names, batch)):
        mean = np.mean([pg[k] for pg in per_grads], axis=0)
        np.testing.assert_allclose(g, mean, rtol=1e-10, atol=1e-13, err_msg=name)


def test_gradients_are_recomputed_not_accumulated(trained_weights):
    cfg = MADEConfig(D=5, hidden=(7,), seed=0, dtype="float64", num_masks=1)
    model = MADE(cfg)
    trained_weights(model, 0)
    x = random_data(cfg, 4, 0)
    model.loss_and_grad(x)
    first = [np.array(g, copy=True) for g in model.grads]
    model.loss_and_grad(x)
    for a, b in zip(first, model.grads):
        assert np.array_equal(a, np.asarray(b))


@pytest.mark.strict_device
@pytest.mark.parametrize("plant", ["a NumPy array", "an array of the CPU device"])
def test_a_host_array_inside_a_pass_fails_on_the_strict_device(plant, monkeypatch):
    """The strict stand-in has teeth: plant a host array into the Bernoulli NLL (one line of a pass,
    as ``np.log(...)`` or an array made without ``device=`` would be) and the gradient check and
    ``fit`` fail on ``Device("device1")``, as CuPy refuses NumPy arrays, while NumPy computes on."""
    import array_api_strict

    from conftest import Stand, chain_dataset
    from made_np import TrainConfig, fit, heads
    original = heads.softplus

    def planted(xp, z):
        host = np.zeros(z.shape[-1]) if plant == "a NumPy array" else xp.zeros(z.shape[-1], dtype=z.dtype)
        return original(xp, z) + host

    monkeypatch.setattr(heads, "softplus", planted)
    cfg = MADEConfig(D=8, hidden=(6,), num_masks=2, seed=3, dtype="float64")
    x = random_data(cfg, 3, 1)
    model = MADE(cfg)
    assert kink_free_weights(model, x, 1)
    check_gradients(model, x, 1)  # NumPy mixes them without a word
    with array_api_strict.ArrayAPIStrictFlags(api_version="2024.12"):
        stand = Stand("strict")
        model = stand.made(cfg)
        assert kink_free_weights(model, x, 1)
        with pytest.raises((TypeError, ValueError, RuntimeError), match="Expected Array or Python scalar|two different devices"):
            check_gradients(model, x, 1)
        with pytest.raises((TypeError, ValueError, RuntimeError), match="Expected Array or Python scalar|two different devices"):
            fit(model, chain_dataset(), TrainConfig(epochs=1, engine="reference"))
