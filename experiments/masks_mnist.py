"""Test NLL against the number of masks K on binarized MNIST (MADE paper, Figure 2).

For each K, train one MADE with a bank of K masks (order- and connectivity-agnostic
by default, one mask per minibatch as in the paper), early-stop on the validation
NLL of the K-mask ensemble, then report on the test split:

* the ensemble NLL, ``-log (1/K sum_k p_k(x))`` (a mixture of probabilities), and
* the NLL of mask 0 alone.

Results go to ``OUT/masks_<hidden>.json`` and ``OUT/masks_<hidden>.png`` (our points
beside the paper's). Each run has a wall-clock budget (``--minutes``); a run cut by
the budget is marked so in the JSON and the plot.

Usage::

    python experiments/masks_mnist.py --hidden 500 --masks 1,2,4,8,16,32 --minutes 15
    (each run: Adam, lr 2e-3 with a cosine schedule over --epochs 60, batch 100)
    python experiments/masks_mnist.py --hidden 500,500 --masks 1,8 --minutes 15
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from made_np import backend
from made_np.data import load_dataset
from made_np.model import MADE, MADEConfig
from made_np.train import TrainConfig, evaluate, fit

# Read off Figure 2 of Germain et al. (2015): 1 hidden layer of 500 units, Adagrad,
# test NLL in nats against the number of masks used in training (approximate).
PAPER_FIGURE_2 = {1: 94.7, 8: 93.2, 32: 95.5}


def run_one(dataset, hidden, K, args):
    """Train and evaluate one bank size; returns a JSON-ready dict."""
    xp = backend.get_xp(args.device)
    model = MADE(MADEConfig(
        D=dataset.D, hidden=hidden, ordering=args.ordering, num_masks=K,
        order_agnostic=not args.no_order_agnostic,
        connectivity_agnostic=not args.no_connectivity_agnostic,
        direct=args.direct, seed=args.seed,
    ), xp)
    cfg = TrainConfig(epochs=args.epochs, batch_size=100, optimizer=args.optimizer, lr=args.lr,
                      patience=args.patience, resample_every=args.resample_every, seed=args.seed,
                      lr_schedule=args.lr_schedule,
                      output_bias="zero")  # as docs/experiments.md's figures were measured
    start, cut = time.perf_counter(), {"by_budget": False}

    def callback(row):
        print(f"  K={K:<3d} epoch {row['epoch']:3d}  train {row['train_nll']:.2f}  "
              f"valid {row['valid_nll']:.2f}  {row['seconds']:.1f}s", flush=True)
        if time.perf_counter() - start > 60 * args.minutes:
            cut["by_budget"] = True
            return True
        return False

    history = fit(model, dataset, cfg, callback=callback)
    train_seconds = time.perf_counter() - start
    test = xp.asarray(dataset.test)
    ens = evaluate(model, test, ensemble=K > 1)
    single = evaluate(model, test, ensemble=False, mask_index=0)
    rows = history["rows"] if isinstance(history, dict) and "rows" in history else history
    return {
        "K": K, "hidden": list(hidden), "test_nll": ens["nll"], "test_stderr": ens["stderr"],
        "test_nll_mask0": single["nll"], "epochs": len(rows), "train_seconds": round(train_seconds, 1),
        "cut_by_budget": cut["by_budget"], "order_agnostic": model.config.order_agnostic,
        "connectivity_agnostic": model.config.connectivity_agnostic, "lr_schedule": cfg.lr_schedule,
        "optimizer": cfg.optimizer, "base_lr": history["base_lr"],
    }


def plot(results, hidden, out_path):
    """Test NLL against K, ours beside the paper's Figure 2."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ks = [r["K"] for r in results]
    ax.errorbar(ks, [r["test_nll"] for r in results], yerr=[r["test_stderr"] for r in results],
                marker="o", label=f"made-np, ensemble of K masks ({'x'.join(map(str, hidden))})")
    ax.plot(ks, [r["test_nll_mask0"] for r in results], "s--", alpha=0.6, label="made-np, mask 0 alone")
    if list(hidden) == [500]:
        pk = sorted(PAPER_FIGURE_2)
        ax.plot(pk, [PAPER_FIGURE_2[k] for k in pk], "k^:", label="paper, Figure 2 (approx.)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of masks K used in training")
    ax.set_ylabel("test NLL (nats)")
    ax.set_title("Binarized MNIST")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="binarized-mnist", help="data set spec or path (default: binarized-mnist)")
    p.add_argument("--hidden", default="500", help="hidden widths, comma-separated (default: 500)")
    p.add_argument("--masks", default="1,2,4,8,16,32", help="bank sizes K to run (default: 1,2,4,8,16,32)")
    p.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget per run (default: 15)")
    p.add_argument("--epochs", type=int, default=60, help="epochs per run (default: 60)")
    p.add_argument("--lr-schedule", default="cosine", help="constant, step or cosine (default: cosine)")
    p.add_argument("--patience", type=int, default=30, help="early-stopping look-ahead (default: 30)")
    p.add_argument("--optimizer", default="adam", help="adam or adagrad (default: adam)")
    p.add_argument("--lr", type=float, default=2e-3, help="base learning rate (default: 2e-3)")
    p.add_argument("--resample-every", type=int, default=1, help="minibatches per mask (default: 1)")
    p.add_argument("--ordering", default="random", help="ordering of mask 0 (default: random)")
    p.add_argument("--no-order-agnostic", action="store_true", help="keep mask 0's ordering for every mask")
    p.add_argument("--no-connectivity-agnostic", action="store_true", help="keep mask 0's degrees for every mask")
    p.add_argument("--direct", action="store_true", help="direct input-to-output connections")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="runs/experiments", help="output folder (default: runs/experiments)")
    args = p.parse_args(argv)

    hidden = tuple(int(h) for h in args.hidden.split(","))
    dataset = load_dataset(args.dataset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "x".join(map(str, hidden))
    json_path = out / f"masks_{tag}.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else []
    done = {r["K"] for r in results}
    for K in (int(k) for k in args.masks.split(",")):
        if K in done:
            print(f"K={K}: already in {json_path}, skipped")
            continue
        print(f"K={K}: training {tag} on {dataset.name}", flush=True)
        r = run_one(dataset, hidden, K, args)
        print(f"K={K}: test NLL {r['test_nll']:.2f} ± {r['test_stderr']:.2f} nats "
              f"(mask 0 alone {r['test_nll_mask0']:.2f}), {r['epochs']} epochs, {r['train_seconds']:.0f} s", flush=True)
        results = sorted([*results, r], key=lambda r: r["K"])
        json_path.write_text(json.dumps(results, indent=1))
        plot(results, hidden, out / f"masks_{tag}.png")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
