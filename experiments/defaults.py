"""The defaults study of issue 11: the library's default recipe against tuned runs, per data set and size.

Data sets: subsets of binarized MNIST (first N training rows; validation the first N // 4
validation rows; the full 10,000-image test split), scikit-learn's digits and the 2-D table.
Each run is ``fit`` with a :class:`TrainConfig`/:class:`MADEConfig` built from the recipe
(:meth:`MADEConfig.for_data`, :meth:`TrainConfig.for_data`) plus the overrides of a named
setting; it prints one JSON line: data, setting, epochs run, best epoch, test NLL (ensemble
for banks), its standard error, seconds.

    python experiments/defaults.py --data mnist-1400 --settings default,tuned-inf
    python experiments/defaults.py --data digits --settings all
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from made_np.fast import prefer_short_blas_spin  # noqa: E402

prefer_short_blas_spin()

from made_np.config import MADEConfig, TrainConfig  # noqa: E402
from made_np.data import load_dataset  # noqa: E402
from made_np.model import MADE  # noqa: E402
from made_np.train import evaluate, fit  # noqa: E402

SETTINGS = {
    # the recipe as it stands (whatever TrainConfig()/MADEConfig() default to)
    "default": ({}, {}),
    # the recipe before the output biases started at the data's marginals
    "zero-bias": ({}, {"output_bias": "zero"}),
    # what the recipe of the first landing did: 50 epochs (200 digits), one mask, no direct connections
    "old": ({"direct": False, "num_masks": 1}, {"epochs": "old", "output_bias": "zero"}),
    "1mask-direct-e200": ({"direct": True, "num_masks": 1}, {"epochs": 200}),
    "1mask-direct-e500": ({"direct": True, "num_masks": 1}, {"epochs": 500}),
    "inf-direct-const1e-2": ({"direct": True, "num_masks": "inf"}, {"lr": 1e-2, "lr_schedule": "constant", "epochs": 1000,
                                                                 "eval_masks": 128}),
    "inf-direct-cos-e500": ({"direct": True, "num_masks": "inf"}, {"epochs": 500, "eval_masks": 128}),
    "k16-direct-cos-e500": ({"direct": True, "num_masks": 16}, {"epochs": 500}),
    "k32-direct-cos-e500": ({"direct": True, "num_masks": 32}, {"epochs": 500}),
    # candidate recipes: a budget of about 25,000 updates (50..1000 epochs), early stopping
    "R-k32": ({"direct": True, "num_masks": 32}, {"epochs": "budget"}),
    "R-1mask": ({"direct": True, "num_masks": 1}, {"epochs": "budget"}),
    "R-k16": ({"direct": True, "num_masks": 16}, {"epochs": "budget"}),
    "R-inf": ({"direct": True, "num_masks": "inf"}, {"epochs": "budget", "eval_masks": 128}),
    "R-k32-2d": ({"direct": True}, {"epochs": "budget"}),   # the 2d model defaults (2x100, scaled, 32 masks) + direct
    # the paper's protocol (--preset paper), one mask and the recipe's bank
    "paper-1mask": ({"num_masks": 1, "preset": "paper"}, {"preset": "paper"}),
    "paper": ({"preset": "paper"}, {"preset": "paper"}),
}


def budget_epochs(n_train: int, batch_size: int = 100, updates: int = 25_000, lo: int = 50, hi: int = 1000) -> int:
    return int(min(hi, max(lo, -(-updates // -(-n_train // batch_size)))))


def load(name: str):
    if name == "mnist":
        return load_dataset("binarized-mnist")
    if name.startswith("mnist-"):
        n = int(name.split("-")[1])
        ds = load_dataset("binarized-mnist")
        return replace(ds, name=name, train=ds.train[:n], valid=ds.valid[:max(n // 4, 100)])
    return load_dataset(name)


def run(data_name: str, setting: str, seed: int = 0) -> dict:
    ds = load(data_name)
    model_over, train_over = SETTINGS[setting]
    train_over = dict(train_over)
    if train_over.get("epochs") == "old":
        train_over["epochs"] = 200 if data_name == "digits" else 50
    if train_over.get("epochs") == "budget":
        train_over["epochs"] = budget_epochs(int(ds.train.shape[0]))
    model = MADE(MADEConfig.for_data(ds, seed=seed, **model_over))
    cfg = TrainConfig.for_data(ds, seed=seed, **train_over)
    t0 = time.perf_counter()
    hist = fit(model, ds, cfg)
    seconds = time.perf_counter() - t0
    res = evaluate(model, ds.test, eval_masks=cfg.eval_masks)
    return {"data": data_name, "setting": setting, "n_train": int(ds.train.shape[0]), "D": ds.D,
            "masks": model.config.num_masks, "direct": model.config.direct, "epochs_budget": cfg.epochs,
            "epochs_run": len(hist["rows"]), "best_epoch": hist["best_epoch"], "lr": cfg.lr,
            "schedule": cfg.lr_schedule, "test_nll": res["nll"], "stderr": res["stderr"],
            "eval_masks": res["masks"], "train_seconds": round(seconds, 1)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="comma-separated: mnist-N, digits, 2d")
    ap.add_argument("--settings", default="default", help=f"comma-separated of {', '.join(SETTINGS)}, or all")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    settings = list(SETTINGS) if args.settings == "all" else args.settings.split(",")
    for data_name in args.data.split(","):
        for setting in settings:
            print(json.dumps(run(data_name, setting, args.seed)), flush=True)


if __name__ == "__main__":
    main()
