"""Choose the mog head's default K: test NLL (nats/example, data units) for K in {3, 5, 10}.

Two small real sets: scikit-learn's wine (178 x 13, standardised inside the model) and the
generated 2-D moons (3000 points, noise 0.1). Same recipe for every K (made-np's defaults:
a bank of 16 masks for small data, Adam, early stopping on the validation split).

    python benchmarks/components.py
"""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_wine, make_moons

from made_np import MADE, MADEConfig, TrainConfig, evaluate, fit
from made_np.data import Dataset


def splits(x, seed=0):
    x = np.asarray(x, dtype=np.float64)[np.random.default_rng(seed).permutation(len(x))]
    n, k = len(x), len(x) // 10
    return Dataset("set", x[:n - 2 * k], x[n - 2 * k:n - k], x[n - k:], 0, None)


def main():
    sets = {"wine": splits(load_wine().data + np.random.default_rng(1).uniform(-5e-3, 5e-3, (178, 13))),
            "moons": splits(make_moons(3000, noise=0.1, random_state=0)[0])}
    print(f"{'set':6s} " + " ".join(f"K={k:<14d}" for k in (3, 5, 10)))
    for name, ds in sets.items():
        row = []
        for K in (3, 5, 10):
            model = MADE(MADEConfig.for_data(ds, hidden=(64,), components=K, seed=0))
            fit(model, ds, TrainConfig.for_data(ds, epochs=150, seed=0, patience=20))
            r = evaluate(model, ds.test)
            row.append(f"{r['nll']:7.3f} ± {r['stderr']:.3f}")
        print(f"{name:6s} " + " ".join(f"{c:16s}" for c in row), flush=True)


if __name__ == "__main__":
    main()
