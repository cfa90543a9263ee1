"""One fitted model shared by several threads gives the numbers it gives alone.

Every pass takes the mask it computes with as an argument (:meth:`made_np.model.MADE.mask`):
evaluation, ensembles, sampling, marginals and completion never switch or write the model,
so a fitted model (and a fitted :class:`made_np.MADEDensity`) is safe to share between
threads, as scikit-learn users assume. Each call below runs from 4 threads at once, many
times, and must equal its serial result exactly.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from conftest import randomize_weights
from made_np import MADE, MADEConfig, MADEDensity, complete, evaluate, log_marginal, sample

THREADS, ROUNDS = 4, 6


def _same_from_threads(fn):
    """``fn()`` from THREADS threads, ROUNDS times each, all equal to the serial result."""
    expected = np.asarray(fn())
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda _: np.asarray(fn()), range(THREADS * ROUNDS)))
    for r in results:
        np.testing.assert_array_equal(r, expected)


def _bank(D=48, K=4):
    model = MADE(MADEConfig(D=D, hidden=(96,), num_masks=K, direct=True, seed=3, dtype="float64"))
    randomize_weights(model, 5)
    x = (np.random.default_rng(0).random((400, D)) < 0.4).astype(np.uint8)
    return model, x


def test_a_bank_evaluates_the_same_from_several_threads():
    model, x = _bank()
    obs = np.zeros_like(x, dtype=bool)
    obs[:, : x.shape[1] // 2] = True
    _same_from_threads(lambda: model.ensemble_nll(x, [0, 1, 2, 3]))
    _same_from_threads(lambda: [model.nll(x, mask=k) for k in range(4)])
    _same_from_threads(lambda: evaluate(model, x, ensemble=False, mask_index=2)["nll"])
    _same_from_threads(lambda: sample(model, 300, seed=1, masks=[0, 1, 2, 3]))
    _same_from_threads(lambda: log_marginal(model, x[:60], obs[:60], masks=3))
    _same_from_threads(lambda: complete(model, x[:20], obs[:20], 2, masks=3, seed=2)[0])


def test_a_fitted_estimator_scores_the_same_from_several_threads():
    x = (np.random.default_rng(1).random((300, 24)) < 0.3).astype(np.uint8)
    est = MADEDensity(hidden=(32,), num_masks=4, epochs=2, random_state=0).fit(x)
    _same_from_threads(lambda: est.score_samples(x))
    _same_from_threads(lambda: est.sample(50, random_state=3))
