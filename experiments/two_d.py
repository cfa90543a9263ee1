"""The 2-D categorical experiment: a MADE on 100,000 samples of a 200x200 table.

Trains categorical MADEs (D = 2, C = 200) on the 72,000 training samples of
``load_dataset("2d")``, early-stops on the 8,000 validation samples, and scores
the model's *exact* density table (:mod:`made_np.density`) against the true table:
``KL(p_true || p_model)`` in nats and the test NLL next to the entropy of the true
table (its lower bound).

Usage::

    OPENBLAS_NUM_THREADS=1 python experiments/two_d.py            # search + encodings
    OPENBLAS_NUM_THREADS=1 python experiments/two_d.py --quick    # a fast smoke run
    OPENBLAS_NUM_THREADS=1 python experiments/two_d.py --only best --png two_d.png

Results are printed as a Markdown table (and written as JSON with ``--json``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from made_np import backend  # noqa: E402
from made_np.data import load_dataset  # noqa: E402
from made_np.density import entropy, kl_divergence, log_density_table  # noqa: E402
from made_np.model import MADE, MADEConfig  # noqa: E402
from made_np.sampling import sample  # noqa: E402
from made_np.train import TrainConfig, fit  # noqa: E402


@dataclass
class Setting:
    """One training configuration of the search (model fields, then training fields)."""

    name: str
    hidden: tuple = (500,)
    input_encoding: str = "onehot"
    direct: bool = False
    num_masks: int = 1
    ordering: str = "natural"
    order_agnostic: bool = True
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 100
    epochs: int = 200
    patience: int = 5
    lr_schedule: str = "constant"
    valid_masks: int | None = None
    eval_masks: int | None = None
    seed: int = 0


def table_nll(log_table, x) -> float:
    """Mean NLL in nats of samples x (N, 2) under a host (C, C) log table."""
    x = np.asarray(x, dtype=np.int64)
    return float(-log_table[x[:, 0], x[:, 1]].mean())


def model_table(model, eval_masks=None):
    """Exact log table of the model (the mixture over the bank when it has several masks)."""
    if model.config.num_masks == 1:
        return log_density_table(model)
    return log_density_table(model, mask_indices=model.eval_mask_indices(eval_masks))


def run(s: Setting, ds, verbose: bool = True) -> dict:
    """Train one setting with :func:`made_np.train.fit` (early stopping on the validation NLL,
    the best weights restored), then score its exact table."""
    xp = backend.get_xp("cpu")
    mcfg = MADEConfig(
        D=2, hidden=s.hidden, classes=ds.classes, head="categorical",
        input_encoding=s.input_encoding, ordering=s.ordering, num_masks=s.num_masks,
        order_agnostic=s.order_agnostic, direct=s.direct, seed=s.seed,
    )
    tcfg = TrainConfig(
        epochs=s.epochs, batch_size=s.batch_size, optimizer=s.optimizer, lr=s.lr,
        weight_decay=s.weight_decay, patience=s.patience, lr_schedule=s.lr_schedule,
        valid_masks=s.valid_masks, eval_masks=s.eval_masks, seed=s.seed,
    )
    model = MADE(mcfg, xp)

    def log(row):
        if verbose:
            print(f"  {s.name} epoch {row['epoch']}: train {row['train_nll']:.4f} valid "
                  f"{row['valid_nll']:.4f}{' *' if row['best'] else ''} {row['seconds']:.1f} s",
                  file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    history = fit(model, ds, tcfg, callback=log)
    seconds = time.perf_counter() - t0
    log_t = model_table(model, s.eval_masks)
    return {
        "name": s.name, "hidden": list(s.hidden), "encoding": s.input_encoding, "direct": s.direct,
        "num_masks": s.num_masks, "optimizer": s.optimizer, "lr": s.lr,
        "weight_decay": s.weight_decay, "batch_size": s.batch_size,
        "best_epoch": history["best_epoch"], "epochs_run": len(history["rows"]),
        "valid_nll": history["best_valid_nll"], "test_nll": table_nll(log_t, ds.test),
        "kl": kl_divergence(ds.true_density, log_t), "seconds": seconds,
        "_model": model, "_log_table": log_t,
    }


def print_table(results, H: float) -> None:
    print(f"\nentropy of the true table H(p) = {H:.4f} nats (test NLL lower bound)\n")
    print("| setting | encoding | hidden | direct | masks | lr | wd | batch | epoch | test NLL | NLL - H | KL | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['encoding']} | {'x'.join(map(str, r['hidden']))} | {r['direct']} | "
              f"{r['num_masks']} | {r['lr']:g} | {r['weight_decay']:g} | {r['batch_size']} | "
              f"{r['best_epoch']}/{r['epochs_run']} | {r['test_nll']:.4f} | {r['test_nll'] - H:+.4f} | "
              f"{r['kl']:.4f} | {r['seconds']:.0f} |")


#: The proposed ``made-np train --dataset 2d`` defaults: the generic training defaults
#: (Adam 2e-3, cosine schedule over 50 epochs, batch 100, patience 30) with a 2x100
#: network on scaled inputs and a bank of 32 masks (seed 0: 18 with the ordering x1, x2
#: and 14 with x2, x1; for D = 2 masks differ only by their ordering), evaluated as the
#: mixture over the bank.
BEST = Setting("best", hidden=(100, 100), input_encoding="scaled", num_masks=32, lr=2e-3,
               lr_schedule="cosine", epochs=50, patience=30, batch_size=100)
#: The best single-ordering one-hot model of the search: a small hidden layer and L2.
ONEHOT_TUNED = Setting("onehot-tuned", hidden=(50,), input_encoding="onehot", weight_decay=3e-4,
                       lr=3e-3, lr_schedule="cosine", epochs=20, patience=30, batch_size=1000)

SETTINGS = {
    "best": BEST,
    "onehot": replace(BEST, name="onehot", input_encoding="onehot"),
    "raw": replace(BEST, name="raw", input_encoding="raw"),
    "single-mask": replace(BEST, name="single-mask", num_masks=1),
    "onehot-tuned": ONEHOT_TUNED,
}


def _parse_value(text: str):
    """JSON when it parses (numbers, lists, true/false), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one short run (smoke test)")
    ap.add_argument("--only", nargs="*", choices=list(SETTINGS), help="names of settings to run")
    ap.add_argument("--dataset-path", default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--png", default=None, help="panels of the last setting run")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override fields of the chosen settings, e.g. --set lr=3e-3 hidden=[100]")
    args = ap.parse_args(argv)
    ds = load_dataset("2d", path=args.dataset_path)
    H = entropy(ds.true_density)
    if args.quick:
        settings = [replace(SETTINGS["best"], name="quick", epochs=2, batch_size=1000)]
    else:
        names = args.only or list(SETTINGS)
        settings = [SETTINGS[n] for n in names]
    if args.set:
        over = {k: _parse_value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
        if "hidden" in over:
            over["hidden"] = tuple(over["hidden"])
        suffix = ",".join(args.set)
        settings = [replace(s, name=f"{s.name}[{suffix}]", **over) for s in settings]
    results = []
    for s in settings:
        r = run(s, ds)
        results.append(r)
        print(f"{r['name']}: test NLL {r['test_nll']:.4f} (H {H:.4f}), KL {r['kl']:.4f}, "
              f"{r['seconds']:.0f} s", file=sys.stderr, flush=True)
    print_table(results, H)
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{k: v for k, v in r.items() if not k.startswith("_")} for r in results], indent=1))
    if args.png:
        from made_np.plots import plot_2d_panels
        r = results[-1]
        model = r["_model"]
        masks = None if model.config.num_masks == 1 else model.eval_mask_indices(settings[-1].eval_masks)
        xs = backend.to_host(sample(model, 100_000, seed=1, masks=masks))
        plot_2d_panels(ds.true_density, ds.train, xs, np.exp(r["_log_table"]), args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
