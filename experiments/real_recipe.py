"""The recipe for small real-valued training sets: settings compared on the named sets and on
generated sets nobody tuned on (docs/experiments.md, "Small real-valued sets").

One JSON line per (data set, split seed, setting): the validation and test NLL (nats per example,
data units) of the setting's run, its epochs and seconds. ``peers`` adds the tuned GaussianMixture
and KernelDensity of ``real_data.py`` for the same split; ``table`` prints the mean over the seeds
(± its standard error) per data set and setting.

    python experiments/real_recipe.py run --data iris,diabetes --settings old,recipe --seeds 0-4 >> r.jsonl
    python experiments/real_recipe.py peers --data moons-300 --seeds 0-4 >> r.jsonl
    python experiments/real_recipe.py table r.jsonl

Data: the named sets of ``made_np.data.TABLES`` and generated ones, ``NAME-N`` (N rows in all, split
80/10/10 by the seed as the named tables are): the toys (``moons-300``, ``pinwheel-2000``...),
``scurve-N`` (scikit-learn's ``make_s_curve``, noise 0.1), ``swissroll-N`` (``make_swiss_roll``,
noise 0.5), ``gauss8-N`` (a Gaussian in 8-D with a random covariance ``A A^T / 8 + 0.1 I``), and
``digits-real-N`` (the first N rows of a permutation of digits-real); mixed ones: ``mixgauss-N`` (a 6-D
Gaussian, random covariance, columns 0 and 1 cut to 2 and 3 levels) and ``moonslabel-N`` (two moons
and each point's moon, 0 or 1).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from made_np import data as mdata  # noqa: E402
from made_np.config import UNLIMITED, MADEConfig, TrainConfig  # noqa: E402
from made_np.model import MADE  # noqa: E402
from made_np.train import evaluate, fit  # noqa: E402
from real_data import impute, seeds, summary  # noqa: E402
from real_data import peers as peer_nlls  # noqa: E402

#: ``name: (model overrides, training overrides)``; ``old`` is the recipe before the small-data rule
#: (what the recipe gave every real set under 10,000 rows: patience 30 epochs), ``recipe`` whatever it
#: gives now. The others were measured at the old patience of 30 epochs.
SETTINGS = {
    "recipe": ({}, {}),
    "old": ({"hidden": (500,), "components": 5, "num_masks": 16}, {"patience": 30}),
    "h100": ({"hidden": (100,), "num_masks": 16}, {}),
    "h32": ({"hidden": (32,), "num_masks": 16}, {}),
    "k2": ({"hidden": (500,), "components": 2, "num_masks": 16}, {}),
    "k1": ({"hidden": (500,), "components": 1, "num_masks": 16}, {}),
    "wd1e-3": ({"hidden": (500,), "num_masks": 16}, {"weight_decay": 1e-3}),
    "wd1e-2": ({"hidden": (500,), "num_masks": 16}, {"weight_decay": 1e-2}),
    "inf": ({"hidden": (500,), "num_masks": UNLIMITED}, {}),
    "lr5e-4": ({"hidden": (500,), "num_masks": 16}, {"lr": 5e-4}),
    "pat100": ({"hidden": (500,), "num_masks": 16}, {"patience": 100}),
}


def parse_setting(name: str):
    """A setting of :data:`SETTINGS`, or one spelled ``key=value+key=value`` (hidden=64x64, components=2,
    num_masks=inf, weight_decay=1e-3, lr=1e-3, patience=100, batch_size=32)."""
    if name in SETTINGS:
        return SETTINGS[name]
    model, train = {}, {}
    for part in name.split("+"):
        key, _, value = part.partition("=")
        if key == "hidden":
            model[key] = tuple(int(w) for w in value.split("x")) if value else ()
        elif key in ("components", "num_masks"):
            model[key] = UNLIMITED if value == "inf" else int(value)
        elif key in ("patience", "batch_size", "eval_masks", "valid_masks", "epochs", "extra_eval"):
            train[key] = int(value)
        else:
            train[key] = float(value)
    return model, train


def _generated(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 7])
    if kind in mdata.TOYS:
        return getattr(mdata, "_" + kind)(rng, n)
    if kind == "scurve":
        from sklearn.datasets import make_s_curve
        return make_s_curve(n, noise=0.1, random_state=seed)[0]
    if kind == "swissroll":
        from sklearn.datasets import make_swiss_roll
        return make_swiss_roll(n, noise=0.5, random_state=seed)[0]
    if kind == "gauss8":
        a = np.random.default_rng(99).standard_normal((8, 8))  # one covariance for every split seed
        return rng.multivariate_normal(np.zeros(8), a @ a.T / 8 + 0.1 * np.eye(8), n)
    if kind == "mixgauss":  # mixed: a 6-D Gaussian (random covariance) whose columns 0, 1 are cut to 2 and 3 levels
        a = np.random.default_rng(98).standard_normal((6, 6))
        z = rng.multivariate_normal(np.zeros(6), a @ a.T / 6 + 0.1 * np.eye(6), n)
        return np.column_stack([1.0 + (z[:, 0] > 0), np.digitize(z[:, 1], [-0.5, 0.5]), z[:, 2:]])
    if kind == "moonslabel":  # mixed: two moons and the moon (0/1) of each point
        from sklearn.datasets import make_moons
        x, y = make_moons(n, noise=0.1, random_state=seed)
        return np.column_stack([x, y])
    if kind == "digits-real":
        x = mdata.load_dataset("digits-real", seed=seed)
        x = np.concatenate([x.train, x.valid, x.test])
        return x[np.random.default_rng([seed, 3]).permutation(len(x))[:n]]
    raise ValueError(f"unknown data set {kind!r}")


def load(name: str, seed: int):
    """A named set (``load_dataset``) or a generated one, ``KIND-N``, split 80/10/10 by ``seed``."""
    if name in mdata.NAMES:
        return mdata.load_dataset(name, seed=seed)
    kind, _, n = name.rpartition("-")
    x = _generated(kind, int(n), seed)
    return mdata._make_dataset(name, dict(zip(mdata.SPLITS, (x[i] for i in mdata._split_rows(len(x), seed)))), name,
                               real=True)


def run(name: str, seed: int, setting: str) -> dict:
    ds = load(name, seed)
    model_over, train_over = parse_setting(setting)
    if "pu" in train_over:  # patience of at least this many updates: max(30, ceil(pu / minibatches per epoch))
        per_epoch = -(-len(ds.train) // train_over.get("batch_size", 100))
        pu = int(train_over.pop("pu"))
        train_over = {**train_over, "patience": max(30, -(-pu // per_epoch))}
    extra = train_over.pop("extra_eval", None)  # also the test NLL under an ensemble of this many masks
    model = MADE(MADEConfig.for_data(ds, seed=seed, **model_over))
    cfg = TrainConfig.for_data(ds, seed=seed, **train_over)
    t0 = time.perf_counter()
    hist = fit(model, ds, cfg, threads=1)
    seconds = time.perf_counter() - t0
    valid = evaluate(model, ds.valid, eval_masks=cfg.eval_masks)["nll"]
    test = evaluate(model, ds.test, eval_masks=cfg.eval_masks)
    c = model.config
    return {"part": "recipe", "data": name, "seed": seed, "setting": setting, "n_train": len(ds.train), "D": ds.D,
            "hidden": list(c.hidden), "components": c.components, "num_masks": c.num_masks,
            "weight_decay": cfg.weight_decay, "valid": valid, "test": test["nll"],
            "epochs_run": len(hist["rows"]), "best_epoch": hist["best_epoch"], "seconds": round(seconds, 1),
            **({} if extra is None else {f"test_eval{extra}": evaluate(model, ds.test, eval_masks=extra)["nll"]})}


def _params(setting: str) -> dict:
    """MADEImputer parameters spelled ``key=value+...`` (hidden=100, num_masks=16 or inf, patience,
    masks, draws, discrete=mean; ``default``: none)."""
    params = {}
    for part in ([] if setting == "default" else setting.split("+")):
        key, _, value = part.partition("=")
        params[key] = (tuple(int(w) for w in value.split("x")) if key == "hidden" else value if key == "discrete" else
                       float("inf") if value == "inf" else None if value == "None" else int(value))
    return params


def impute_setting(name: str, seed: int, setting: str, variants: str = "") -> dict:
    """``real_data.impute`` with the MADEImputer parameters of ``setting`` (:func:`_params`), and the
    same fitted imputer under each of the comma-separated transform settings ``variants``
    (``masks=64+draws=400,discrete=mean``: columns ``made:SETTING``)."""
    row = impute(name, seed, ds=load(name, seed), **_params(setting),
                 variants={v: _params(v) for v in variants.split(",") if v})
    return {**row, "part": "impute-recipe", "setting": setting, "test": row["made"]}


def peers(name: str, seed: int, cache=None) -> dict:
    ds = load(name, seed)
    got = peer_nlls(ds, name, seed, cache)
    return {"part": "recipe", "data": name, "seed": seed, "setting": "peer", "n_train": len(ds.train), "D": ds.D,
            "valid": None, "test": min(got["gmm"], got["kde"]), **got}


def table(files, column: str = "test", part: str = "recipe") -> None:
    """Mean ± standard error over the seeds per data set and setting (``part`` recipe: NLL; impute-recipe:
    the RMSE of MADEImputer per setting, and of the peers, the "peer" columns of ``real_data.impute``)."""
    rows = [json.loads(line) for f in files for line in Path(f).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("part") == part and r.get(column) is not None]
    if part == "impute-recipe":  # the peers once per (data, seed)
        seen = {(r["data"], r["seed"]): r for r in rows}
        rows += [{**r, "setting": peer, "test": r[peer], "n_train": "", "D": ""}
                 for r in seen.values() for peer in ("iterative", "knn")]
    names = list(dict.fromkeys(r["setting"] for r in rows))
    what = "RMSE, standardised units" if part == "impute-recipe" else "NLL, nats per example"
    print(f"\n{column} {what}; mean over the seeds ± standard error (n: seeds)\n")
    print("| data (train rows x D) | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for data in dict.fromkeys(r["data"] for r in rows):
        got = {s: [r for r in rows if r["data"] == data and r["setting"] == s] for s in names}
        means = {s: np.mean([r[column] for r in v]) for s, v in got.items() if v}
        best = min((s for s in means if s not in ("peer", "iterative", "knn")), key=means.get, default=None)
        first = next(v for v in got.values() if v)[0]
        cells = [("" if not v else (f"**{summary([r[column] for r in v])}**" if s == best
                                    else summary([r[column] for r in v])) + f" ({len(v)})")
                 for s, v in got.items()]
        print(f"| {data} ({first.get('n_train', '')} x {first.get('D', '')}) | " + " | ".join(cells) + " |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("run", "peers", "impute", "table"))
    ap.add_argument("files", nargs="*", help="for table: the JSON-lines files")
    ap.add_argument("--data", default="iris,diabetes,wine,breast-cancer")
    ap.add_argument("--settings", default="old,recipe", help="names of SETTINGS or key=value+key=value")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--column", default="test", choices=("test", "valid"))
    ap.add_argument("--variants", default="", help="for impute: transform settings of the same fit, e.g. "
                                                    "discrete=mean,masks=64+draws=400")
    ap.add_argument("--peer-cache", default=None, help="for peers: the JSON file of real_data.peers")
    ap.add_argument("--rows", default="recipe", choices=("recipe", "impute-recipe"), help="for table: which rows")
    args = ap.parse_args(argv)
    if args.part == "table":
        return table(args.files, args.column, args.rows)
    for name in args.data.split(","):
        for seed in seeds(args.seeds):
            if args.part == "peers":
                print(json.dumps(peers(name, seed, args.peer_cache)), flush=True)
                continue
            if args.part == "impute":
                for setting in args.settings.split(","):
                    print(json.dumps(impute_setting(name, seed, setting, args.variants)), flush=True)
                continue
            for setting in args.settings.split(","):
                print(json.dumps(run(name, seed, setting)), flush=True)


if __name__ == "__main__":
    main()
