"""The recipe for small data (issue 24 item 4): a bank of 16 masks against a fresh mask per
minibatch, and the learning rate and schedule, over training sets of several sizes.

Data (train / valid / test rows x D, fixed):

* ``digits``: the project's binarized 8x8 digits (1,297 / 250 / 250 x 64), as ``made-np train`` loads them;
* ``mnist-N``: the first N training rows of binarized MNIST (Larochelle's split), validated on its
  first 500 validation rows and tested on its first 2,000 test rows (for speed; N in 500..5,000);
* ``markov``: a DNA-shaped synthetic set (1,400 / 600 / 1,186 x 180): 60 symbols of {A, C, G, T}
  from one of three first-order Markov chains (random transition rows, Dirichlet(0.5)), each
  with its own conserved motif of 8 symbols in the middle, coded in 3 bits a symbol (A, C, G: a
  one-hot bit, T: none), drawn from ``default_rng(2024)``;
* a path to an ``.npz`` (train_data/valid_data/test_data), e.g. the UCI sets of the MADE paper's code;
* ``2d-N``: N rows drawn from the 2-D table (200 classes per variable, the generic recipe: not
  the ``2d`` defaults), validated and tested on 2,000 rows each of the same draw.

Settings (model and training overrides over the recipe's ``for_data``; every other field the
recipe's, epochs its budget of ~25,000 updates, patience 30): ``k16``/``inf`` a bank of 16 or a
fresh order- and connectivity-agnostic mask every minibatch (``--num-masks inf``), then the
optimiser, learning rate and schedule; ``select`` the recipe's choice between the two
(``made_np/select.py``), one line with both candidates (each evaluated with the recipe's
ensemble: 1,000 masks for a fresh mask per minibatch). A bank with no limit is tested on the ensemble of 128
masks (``eval_masks``: the recipe's 1,000 passes over the test set cost too much time here), a bank
of 16 on its 16; ``default`` is the recipe as it stands (with its own evaluation). Each run is
one JSON line (data, setting, seed, epochs run, best epoch, test NLL in nats and its standard
error, seconds); ``table`` turns lines into the Markdown table of docs/experiments.md (mean over
seeds). Every run uses one thread (``threads=1``).

    python experiments/small_data.py run --data digits,mnist-1000 --settings all --seeds 0-1 >> small.jsonl
    python experiments/small_data.py table small.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from made_np.fast import prefer_short_blas_spin  # noqa: E402

prefer_short_blas_spin()

from made_np import (MADE, MADEConfig, TrainConfig, candidates, choose, evaluate, fit, load_dataset,  # noqa: E402
                     validation_nll)
from made_np.data import Dataset  # noqa: E402

_ADAM_COS = {"optimizer": "adam", "lr": 2e-3, "lr_schedule": "cosine"}
_ADAM_CONST = {"optimizer": "adam", "lr": 1e-2, "lr_schedule": "constant"}
_ADAGRAD = {"optimizer": "adagrad", "lr": 1e-2, "lr_schedule": "constant"}
_INF = {"num_masks": 0}
SETTINGS = {
    "default": ({}, {}),
    "k16-adam2e-3-cos": ({"num_masks": 16}, _ADAM_COS),
    "k16-adam1e-2-const": ({"num_masks": 16}, _ADAM_CONST),
    "inf-adam2e-3-cos": (_INF, {**_ADAM_COS, "eval_masks": 128}),
    "inf-adam1e-2-const": (_INF, {**_ADAM_CONST, "eval_masks": 128}),
    "inf-adagrad1e-2-const": (_INF, {**_ADAGRAD, "eval_masks": 128}),
    "select": None,  # the recipe's choice between a bank of 16 and a fresh mask: run_select
}
MNIST_VALID, MNIST_TEST = 500, 2000


def markov(seed: int = 2024) -> Dataset:
    """The DNA-shaped synthetic set: three Markov chains of 60 symbols with a motif each, 3 bits a symbol."""
    rng = np.random.default_rng(seed)
    L, n = 60, 1400 + 600 + 1186
    start, trans = rng.dirichlet(np.full(4, 0.5), 3), rng.dirichlet(np.full(4, 0.5), (3, 4))
    motifs = rng.integers(0, 4, (3, 8))
    cls = rng.integers(0, 3, n)
    seq = np.empty((n, L), dtype=np.int64)
    seq[:, 0] = (rng.random(n)[:, None] > start[cls].cumsum(1)).sum(1)
    for t in range(1, L):  # a chain: each symbol from its predecessor's row
        seq[:, t] = (rng.random(n)[:, None] > trans[cls, seq[:, t - 1]].cumsum(1)).sum(1).clip(0, 3)
    seq[:, 26:34] = np.where(rng.random((n, 8)) < 0.9, motifs[cls], seq[:, 26:34])
    x = (seq[:, :, None] == np.arange(3)).reshape(n, 3 * L).astype(np.uint8)
    return Dataset("markov", x[:1400], x[1400:2000], x[2000:], 2, None)


def load(name: str) -> Dataset:
    if name.startswith("mnist-"):
        ds = load_dataset("binarized-mnist")
        return replace(ds, name=name, train=ds.train[:int(name[6:])], valid=ds.valid[:MNIST_VALID],
                       test=ds.test[:MNIST_TEST])
    if name.startswith("2d-"):
        ds = load_dataset("2d")
        n = int(name[3:])
        return Dataset(name, ds.train[:n], ds.valid[:2000], ds.test[:2000], ds.classes, None)
    return markov() if name == "markov" else load_dataset(name)  # a named set or a file (.npz: the UCI sets)


def run_select(ds: Dataset, seed: int) -> dict:
    """The recipe's choice (made_np/select.py, as ``made-np train`` makes it): each candidate trained, its
    validation NLL under its test ensemble (the figure compared) and, for the record only, its test NLL."""
    rows = []
    for name, m, c in candidates(MADEConfig.for_data(ds, seed=seed), TrainConfig.for_data(ds, seed=seed)):
        model, t0 = MADE(m), time.perf_counter()
        hist = fit(model, ds, c, threads=1)
        seconds = time.perf_counter() - t0
        valid, test = validation_nll(model, ds, c), evaluate(model, ds.test, eval_masks=c.eval_masks)
        rows.append({"name": name, "epochs_run": len(hist["rows"]), "best_epoch": hist["best_epoch"],
                     "valid_nll": round(valid["nll"], 4), "test_nll": round(test["nll"], 4),
                     "stderr": round(test["stderr"], 4), "eval_masks": test["masks"], "train_seconds": round(seconds, 1)})
    rows = choose(rows)
    chosen = next(r for r in rows if r["chosen"])
    return {"data": ds.name, "setting": "select", "seed": seed, "n_train": int(ds.train.shape[0]), "D": ds.D,
            "chosen": chosen["name"], "test_nll": chosen["test_nll"], "epochs_run": chosen["epochs_run"],
            "candidates": rows}


def run(ds: Dataset, setting: str, seed: int) -> dict:
    model_over, train_over = SETTINGS[setting]
    model = MADE(MADEConfig.for_data(ds, seed=seed, **model_over))
    cfg = TrainConfig.for_data(ds, seed=seed, **train_over)
    t0 = time.perf_counter()
    hist = fit(model, ds, cfg, threads=1)
    seconds = time.perf_counter() - t0
    res = evaluate(model, ds.test, eval_masks=cfg.eval_masks)
    return {"data": ds.name, "setting": setting, "seed": seed, "n_train": int(ds.train.shape[0]), "D": ds.D,
            "masks": model.config.num_masks, "optimizer": cfg.optimizer, "lr": cfg.lr, "schedule": cfg.lr_schedule,
            "epochs_budget": cfg.epochs, "epochs_run": len(hist["rows"]), "best_epoch": hist["best_epoch"],
            "valid_nll": round(hist["best_valid_nll"], 4), "test_nll": round(res["nll"], 4),
            "stderr": round(res["stderr"], 4), "eval_masks": res["masks"], "train_seconds": round(seconds, 1)}


def table(paths) -> str:
    """Markdown: one row per data set, one column per setting, mean test NLL over seeds (seeds run)."""
    cells, sizes = defaultdict(list), {}
    for p in paths:
        for line in Path(p).read_text().splitlines():
            r = json.loads(line)
            cells[r["data"], r["setting"]].append(r)
            sizes[r["data"]] = (r["n_train"], r["D"])
    settings = [s for s in SETTINGS if any(k[1] == s for k in cells)]
    out = ["| data (train rows x D) | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
    for data, (n, D) in sorted(sizes.items(), key=lambda kv: kv[1][0] * kv[1][1]):
        row = []
        for s in settings:
            rs = cells.get((data, s), [])
            row.append(f"{np.mean([r['test_nll'] for r in rs]):.2f} ({len(rs)}; {np.mean([r['epochs_run'] for r in rs]):.0f} ep)"
                       if rs else "")
        best = min((float(c.split()[0]), i) for i, c in enumerate(row) if c)[1]
        row[best] = f"**{row[best]}**"
        out.append(f"| {data} {n:,} x {D} | " + " | ".join(row) + " |")
    return "\n".join(out)


def seeds(spec: str) -> list:
    lo, _, hi = spec.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", required=True, help="comma-separated: digits, mnist-N, markov, 2d-N")
    r.add_argument("--settings", default="default", help=f"comma-separated of {', '.join(SETTINGS)}, or all")
    r.add_argument("--seeds", default="0", help="e.g. 0 or 0-1")
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "table":
        print(table(args.files))
        return
    for data_name in args.data.split(","):
        ds = load(data_name)
        for setting in list(SETTINGS) if args.settings == "all" else args.settings.split(","):
            for seed in seeds(args.seeds):
                print(json.dumps(run_select(ds, seed) if setting == "select" else run(ds, setting, seed)), flush=True)


if __name__ == "__main__":
    main()
