"""Atoms of real columns (docs/math.md Sec. 13.2): the recipe with its pinned components against
the same recipe without them and against the tuned scikit-learn peers, on generated tables whose
columns hold a point mass.

Two tables of 30,000 rows (80/10/10), four columns each: a heavy-tailed column (Student t, 2
degrees of freedom), a log-normal one leaning on it, a Gaussian one leaning on both, and

* ``zero-inflated``: 30% exact zeros, else Gamma(2, 3) (an amount that is often nothing);
* ``capped``: N(50, 15) censored at 65, so that about 16% of the rows hold the cap.

One JSON line per (table, seed): test NLL (nats per example, data units) of the recipe
(``MADEConfig.for_data``, pinned), of the recipe with ``atoms=()`` (unpinned), and of the tuned
GaussianMixture (full covariances, 5-50 components, chosen on the validation split) and
KernelDensity of experiments/real_data.py.

    python experiments/atoms.py --seeds 0-2 > atoms.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data  # noqa: E402
from real_data import gmm_nll, kde_nll, seeds  # noqa: E402

real_data.COVARIANCES, real_data.COMPONENTS = ("full",), (5, 10, 20, 30, 50)  # 24,000 rows: the full grid takes an hour

from made_np.config import MADEConfig, TrainConfig  # noqa: E402
from made_np.data import Dataset  # noqa: E402
from made_np.model import MADE  # noqa: E402
from made_np.train import evaluate, fit  # noqa: E402


def table(kind: str, seed: int, n: int = 30_000) -> Dataset:
    rng = np.random.default_rng([seed, 17])
    t = rng.standard_t(2, n)
    if kind == "zero-inflated":
        atom = np.where(rng.random(n) < 0.3, 0.0, rng.gamma(2.0, 3.0, n))
    else:
        atom = np.minimum(rng.normal(50.0, 15.0, n), 65.0)
    g = rng.normal(0, 1.5, n)
    x = np.stack([t, np.exp(g) + 0.1 * t, atom, 0.5 * t + 0.2 * g + rng.normal(0, 1, n)], 1)
    return Dataset(kind, x[:24_000], x[24_000:27_000], x[27_000:], 0, None)


def run(kind: str, seed: int) -> dict:
    ds = table(kind, seed)
    out = {"data": kind, "seed": seed}
    for name, extra in (("pinned", {}), ("unpinned", {"atoms": (), "atom_columns": ()})):
        mcfg = MADEConfig.for_data(ds, seed=seed, **extra)
        model, cfg = MADE(mcfg), TrainConfig.for_data(ds, seed=seed)
        t0 = time.perf_counter()
        hist = fit(model, ds, cfg)
        out[name] = evaluate(model, ds.test, eval_masks=cfg.eval_masks)["nll"]
        out[f"{name}_epochs"] = [hist["best_epoch"], len(hist["rows"])]
        out[f"{name}_seconds"] = round(time.perf_counter() - t0, 1)
        if name == "pinned":
            out["atoms"] = [list(mcfg.atom_columns), [list(a) for a in mcfg.atoms]]
    (out["gmm"], out["gmm_choice"]), (out["kde"], out["kde_bandwidth"]) = gmm_nll(ds, seed), kde_nll(ds)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="zero-inflated,capped")
    p.add_argument("--seeds", default="0-2")
    a = p.parse_args(argv)
    for kind in a.data.split(","):
        for seed in seeds(a.seeds):
            print(json.dumps(run(kind, seed)), flush=True)


if __name__ == "__main__":
    main()
