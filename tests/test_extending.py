"""A new optimiser and a new head, defined here and nowhere else, go through the whole library.

Each optimiser class declares its default learning rate and its state; each head declares the
data it accepts, its logits per variable, how its output biases start, its sample dtype and how
it draws (docs/architecture.md, "Which file do I touch"). So adding one is a class and a line in a
registry: these tests register RMSProp and a tempered Bernoulli head in this file only, then
train, evaluate, checkpoint, resume and sample with them through ``fit`` on both engines.
"""
from __future__ import annotations

import numpy as np
import pytest

from made_np import MADE, MADEConfig, TrainConfig, evaluate, fit, load_checkpoint, sample
from made_np.data import Dataset
from made_np.heads import HEADS, BernoulliHead, sigmoid
from made_np.optim import OPTIMIZERS, Optimizer
from made_np.sampling import draw_noise, sample_naive


class RMSProp(Optimizer):
    """``s = rho s + (1 - rho) g^2``; ``p -= lr g / (sqrt(s) + eps)`` (Tieleman & Hinton 2012)."""

    name = "rmsprop"
    default_lr = 1e-3
    state_names = ("sq",)
    nonnegative_state = ("sq",)

    def __init__(self, params, xp, lr=None, rho=0.9, eps=1e-8, weight_decay=0.0):
        super().__init__(params, xp, lr, weight_decay)
        self.rho, self.eps = rho, eps

    def _update(self, i, p, g):
        s = self.state["sq"][i]
        s *= self.rho
        s += (1 - self.rho) * g * g
        p -= self.lr * g / (self.xp.sqrt(s) + self.eps)


class TemperedBernoulli(BernoulliHead):
    """``p(x_d = 1) = sigmoid(z_d / T)``, T = 2: a Bernoulli head whose logits are scaled."""

    name = "tempered"
    T = 2.0

    def nll_per_variable(self, z, x):
        return super().nll_per_variable(z / self.T, x)

    def nll_and_grad(self, z, x):
        nll, g = super().nll_and_grad(z / self.T, x)
        return nll, g / self.T

    def class_logits(self, z):
        return super().class_logits(z / self.T)

    def marginal_logits(self, counts):
        return self.T * super().marginal_logits(counts)

    def sample(self, z, u):
        return (u < sigmoid(self.xp, z / self.T)).astype(self.xp.uint8)

    def thresholds(self, u):
        return self.T * super().thresholds(u)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(OPTIMIZERS, "rmsprop", RMSProp)
    monkeypatch.setitem(HEADS, "tempered", TemperedBernoulli)


def chain_data(seed=0, n=240, D=8):
    """Binary data with dependencies (each bit copies the previous one 80% of the time)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, D), dtype=np.uint8)
    x[:, 0] = rng.random(n) < 0.5
    for d in range(1, D):
        x[:, d] = np.where(rng.random(n) < 0.8, x[:, d - 1], 1 - x[:, d - 1])
    return Dataset("chain", x[:160], x[160:200], x[200:], 2, None)


@pytest.mark.parametrize("engine", ["reference", "fast"])
@pytest.mark.parametrize("num_masks", [1, 3])
def test_a_new_optimiser_and_head_train_checkpoint_resume_and_sample(registered, tmp_path, engine, num_masks):
    data = chain_data()
    cfg = MADEConfig(D=8, hidden=(16,), head="tempered", num_masks=num_masks, direct=True, seed=1)
    model = MADE(cfg)
    assert model.out_repeat == 1
    assert TrainConfig(optimizer="rmsprop").resolved(data).lr == RMSProp.default_lr
    tc = TrainConfig(optimizer="rmsprop", lr=1e-2, epochs=10, batch_size=20, patience=0, engine=engine)
    first = evaluate(model, data.test)["nll"]
    hist = fit(model, data, tc, out_dir=tmp_path / "run", threads=1)
    assert [r["epoch"] for r in hist["rows"]] == list(range(1, 11))
    trained = evaluate(model, data.test)["nll"]
    assert trained < first - 0.2  # it learns
    loaded, info = load_checkpoint(tmp_path / "run")
    assert type(loaded.head) is TemperedBernoulli and info["train_config"].optimizer == "rmsprop" and "sq0" in info["optimizer"]
    assert evaluate(loaded, data.test)["nll"] == pytest.approx(trained, abs=1e-5)
    # resume: two more epochs from the checkpoint's optimiser state
    more = fit(loaded, data, TrainConfig(**{**tc.to_dict(), "epochs": 12}), out_dir=tmp_path / "run",
               resume_state=info, threads=1)
    assert [r["epoch"] for r in more["rows"]] == list(range(1, 13))
    # samples: the fast sampler equals the reference, with the head's dtype
    u = draw_noise(64, 8, 3, np)
    fast = sample(loaded, noise=u, seed=3, method="fast")  # the seed picks each row's mask
    np.testing.assert_array_equal(fast, sample(loaded, noise=u, seed=3, method="naive"))
    np.testing.assert_array_equal(sample(loaded, noise=u, masks=[0]), sample_naive(loaded, noise=u))
    assert fast.dtype == np.uint8
    # the head's temperature is really used: the samples follow sigmoid(z / T)
    z = loaded.logits(data.test[:1])
    assert loaded.nll(data.test[:1])[0] == pytest.approx(
        float(np.sum(np.logaddexp(0, z / 2) - data.test[:1] * z / 2)), rel=1e-5)
