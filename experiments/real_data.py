"""Real-valued MADE against what a user would pick instead (issue 23): density and imputation.

Density: the test NLL (nats per example, in the data's own units) of the default recipe
(``MADEConfig.for_data`` / ``TrainConfig.for_data``, what ``made-np train`` runs) against
scikit-learn's ``GaussianMixture`` (components and covariance type chosen on the validation
split) and ``KernelDensity`` (Gaussian kernel on the columns standardised by the training
split, bandwidth chosen on the validation split; its NLL is mapped back to data units). On data
with discrete columns (``Dataset.discrete_columns``) both peers model ``p(x_disc) p(x_cont | x_disc)``:
the combination's smoothed frequency times a density fitted per combination, as MADE's mixed
head models the discrete columns by probabilities.

Imputation: 20% of the test entries hidden completely at random (the split's seed), filled by
``made_np.MADEImputer`` with its defaults (fitted on train + valid; the posterior mean over the
mixture of observed-first masks, discrete columns included), scikit-learn's
``IterativeImputer`` (default estimator), ``KNNImputer`` and the training column mean; RMSE in
standardised units (the training split's scale) over the hidden entries, and the model's
log-likelihood of the hidden true values (nats per hidden entry), which the imputers cannot give.

Every (data set, seed) is one JSON line; ``table`` turns the lines into the Markdown tables of
docs/experiments.md (mean over seeds and its standard error).

    python experiments/real_data.py density --data wine,iris --seeds 0-4 --peer-cache /tmp/peers.json >> density.jsonl
    python experiments/real_data.py impute --data wine,iris --seeds 0-4 >> impute.jsonl
    python experiments/real_data.py table density.jsonl impute.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from made_np.fast import prefer_short_blas_spin  # noqa: E402

prefer_short_blas_spin()

import made_np  # noqa: E402
from made_np.config import MADEConfig, TrainConfig  # noqa: E402
from made_np.data import load_dataset  # noqa: E402
from made_np.model import MADE  # noqa: E402
from made_np.train import evaluate, fit  # noqa: E402

REAL_SETS = ("wine", "breast-cancer", "diabetes", "iris", "digits-real")
TWO_D = ("moons", "8gaussians", "checkerboard", "pinwheel", "2spirals")
IMPUTE_SETS = ("wine", "breast-cancer", "diabetes", "iris")
COVARIANCES = ("full", "diag", "tied", "spherical")
COMPONENTS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50)


def seeds(spec: str) -> list:
    lo, _, hi = spec.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def train_made(ds, seed: int):
    """The default recipe, as ``made-np train`` runs it."""
    model = MADE(MADEConfig.for_data(ds, seed=seed))
    cfg = TrainConfig.for_data(ds, seed=seed)
    t0 = time.perf_counter()
    hist = fit(model, ds, cfg)
    return model, cfg, hist, time.perf_counter() - t0


def _grouped(ds):
    """The peers' view of mixed data: the discrete columns' value combination of each row
    (``ds.discrete_columns``) and the continuous columns. A careful user models such data as
    ``p(x_disc) p(x_cont | x_disc)``: the combination's smoothed frequency times a density fitted
    per combination (a density on a discrete column would be unbounded)."""
    disc = list(getattr(ds, "discrete_columns", ()) or ())
    cont = [c for c in range(ds.D) if c not in disc]
    splits = [ds.train, ds.valid, ds.test]
    keys = [[tuple(r) for r in a[:, disc]] for a in splits]
    return cont, keys


def _peer_nll(ds, make, score, standardise: bool) -> tuple:
    """Mean NLL (nats per example, data units) on valid and test of a density per discrete
    combination (one combination when the data have no discrete column) plus the combination's
    log-frequency (Krichevsky-Trofimov smoothed)."""
    cont, keys = _grouped(ds)
    mu, sd = ds.train[:, cont].mean(0), ds.train[:, cont].std(0)
    z = [((a[:, cont] - mu) / sd if standardise else a[:, cont]) for a in (ds.train, ds.valid, ds.test)]
    logdet = float(np.log(sd).sum()) if standardise else 0.0
    combos = sorted(set(keys[0]))
    counts = {k: keys[0].count(k) for k in combos}
    pooled = make(z[0])
    fitted = {k: (make(z[0][[i for i, kk in enumerate(keys[0]) if kk == k]]) if counts[k] > 1 else pooled)
              for k in combos}
    out = []
    for split in (1, 2):
        lp = np.empty(len(keys[split]))
        for k in set(keys[split]):
            rows = [i for i, kk in enumerate(keys[split]) if kk == k]
            freq = (counts.get(k, 0) + 0.5) / (len(keys[0]) + 0.5 * (len(combos) + 1))
            lp[rows] = score(fitted.get(k, pooled), z[split][rows]) + (np.log(freq) if len(combos) > 1 else 0.0)
        out.append(float(-lp.mean() + logdet))
    return tuple(out)


def gmm_nll(ds, seed: int) -> tuple:
    """Test NLL of the GaussianMixture best on the validation split (per discrete combination)."""
    from sklearn.mixture import GaussianMixture
    small = min(np.bincount(np.unique(_grouped(ds)[1][0], axis=0, return_inverse=True)[1].ravel()))
    best = (np.inf, np.nan, None)
    for cov in COVARIANCES:
        for k in COMPONENTS:
            if k > small // 2:
                continue
            try:
                v, t = _peer_nll(ds, lambda x: GaussianMixture(min(k, max(1, len(x) // 2)), covariance_type=cov,
                                                               random_state=seed, max_iter=500).fit(x),
                                 lambda g, x: g.score_samples(x), standardise=False)
            except ValueError:  # ill-defined covariance (too few rows for k)
                continue
            if np.isfinite(v) and v < best[0]:
                best = (v, t, f"{cov}, {k}")
    return best[1], best[2]


def kde_nll(ds) -> tuple:
    """Test NLL (data units) of the Gaussian KernelDensity on the columns standardised by the
    training split, bandwidth best on the validation split (per discrete combination)."""
    from sklearn.neighbors import KernelDensity
    best = (np.inf, np.nan, None)
    for bw in np.logspace(-2, 0.5, 26):
        v, t = _peer_nll(ds, lambda x: KernelDensity(bandwidth=bw).fit(x), lambda k, x: k.score_samples(x),
                         standardise=True)
        if v < best[0]:
            best = (v, t, float(bw))
    return best[1], best[2]


def peers(ds, name: str, seed: int, cache=None) -> dict:
    """The tuned GaussianMixture and KernelDensity of ``ds`` (test NLL and choice), read from the
    JSON file ``cache`` (``{"name:seed": {...}}``) when it holds them, else fitted and added to it."""
    path, key = Path(cache) if cache else None, f"{name}:{seed}"
    known = json.loads(path.read_text()) if path and path.exists() else {}
    if key not in known:
        (gmm, gmm_choice), (kde, bw) = gmm_nll(ds, seed), kde_nll(ds)
        known[key] = {"gmm": gmm, "gmm_choice": gmm_choice, "kde": kde, "kde_bandwidth": bw}
        if path:
            path.write_text(json.dumps({**(json.loads(path.read_text()) if path.exists() else {}), key: known[key]}))
    return known[key]


def density(name: str, seed: int, cache=None) -> dict:
    ds = load_dataset(name, seed=seed)
    model, cfg, hist, seconds = train_made(ds, seed)
    res = evaluate(model, ds.test, eval_masks=cfg.eval_masks)
    return {"part": "density", "data": name, "seed": seed, "n_train": len(ds.train), "D": ds.D,
            "head": model.config.head, "made": res["nll"], "made_stderr": res["stderr"],
            "epochs_run": len(hist["rows"]), "seconds": round(seconds, 1), **peers(ds, name, seed, cache)}


def hide(x, fraction: float, rng):
    """Hide ``fraction`` of the entries completely at random (NaN), at least one observed per row."""
    hidden = rng.random(x.shape) < fraction
    full = hidden.all(axis=1)
    hidden[full, rng.integers(0, x.shape[1], full.sum())] = False
    out = x.astype(float).copy()
    out[hidden] = np.nan
    return out, hidden


def impute(name: str, seed: int, fraction: float = 0.2, masks: int = 16, ds=None, variants=None, **params) -> dict:
    """MADEImputer (its defaults, or ``params`` over them) against the imputers. ``variants``
    (``{label: params}``): the same fitted imputer with other transform parameters (``masks``,
    ``draws``, ``discrete``), its RMSE as ``made:label``. ``ds``: the data (default the named set)."""
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer
    ds = load_dataset(name, seed=seed) if ds is None else ds
    x_missing, hidden = hide(ds.test, fraction, np.random.default_rng(1000 + seed))
    sd = ds.train.std(0)

    def rmse(filled):
        return float(np.sqrt(((((filled - ds.test) / sd)[hidden]) ** 2).mean()))

    train = np.vstack([ds.train, ds.valid])
    t0 = time.perf_counter()
    imp = made_np.MADEImputer(masks=masks, random_state=seed, **params).fit(train)
    filled = imp.transform(x_missing)
    seconds = time.perf_counter() - t0
    loglik = made_np.conditional.log_conditional(imp.model_, ds.test, ~hidden, masks=masks, seed=seed)
    mean = np.where(hidden, train.mean(0), ds.test)
    base = imp.get_params()
    other = {f"made:{label}": rmse(imp.set_params(**{**base, **v}).transform(x_missing))
             for label, v in (variants or {}).items()}
    return {"part": "impute", "data": name, "seed": seed, "hidden": int(hidden.sum()), **other,
            "made": rmse(filled), "made_loglik_per_entry": float(np.sum(loglik) / hidden.sum()),
            "iterative": rmse(IterativeImputer(random_state=seed).fit(train).transform(x_missing)),
            "knn": rmse(KNNImputer().fit(train).transform(x_missing)),
            "mean": rmse(mean), "seconds": round(seconds, 1)}


def summary(values) -> str:
    """Mean ± its standard error over the splits; one split: its value to 4 decimals."""
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return f"{v[0]:.4f}"
    return f"{v.mean():.3f} ± {v.std(ddof=1) / np.sqrt(len(v)):.3f}"


def table(files) -> None:
    rows = [json.loads(line) for f in files for line in Path(f).read_text().splitlines() if line.strip()]
    for part, cols in (("density", ("made", "gmm", "kde")), ("impute", ("made", "iterative", "knn", "mean"))):
        got = [r for r in rows if r["part"] == part]
        if not got:
            continue
        extra = " | MADE log-lik of hidden values (nats/entry)" if part == "impute" else ""
        print(f"\n| data | seeds | " + " | ".join(cols) + extra + " |")
        print("|---" * (len(cols) + 2 + bool(extra)) + "|")
        for name in dict.fromkeys(r["data"] for r in got):
            rs = [r for r in got if r["data"] == name]
            best = min(cols, key=lambda c: np.mean([r[c] for r in rs]))
            cells = [(f"**{summary([r[c] for r in rs])}**" if c == best else summary([r[c] for r in rs]))
                     for c in cols]
            if extra:
                cells.append(summary([r["made_loglik_per_entry"] for r in rs]))
            print(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("density", "impute", "table"))
    ap.add_argument("files", nargs="*", help="for table: the JSON-lines files")
    ap.add_argument("--data", default=None, help="comma-separated data set names")
    ap.add_argument("--seeds", default="0-4", help="the splits, e.g. 0-4")
    ap.add_argument("--peer-cache", default=None, help="density: a JSON file that keeps the peers' figures "
                                                       "per (data, seed), fitted once")
    args = ap.parse_args(argv)
    if args.part == "table":
        return table(args.files)
    default = REAL_SETS + TWO_D if args.part == "density" else IMPUTE_SETS
    run = density if args.part == "density" else impute
    for name in (args.data.split(",") if args.data else default):
        for seed in seeds(args.seeds):
            print(json.dumps(run(name, seed, **({"cache": args.peer_cache} if args.part == "density" else {}))),
                  flush=True)


if __name__ == "__main__":
    main()
