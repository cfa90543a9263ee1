"""Checks of issue 14: class-conditional digits, and exact completions of binarized MNIST.

``digits``: train a class-conditional MADE on the binarized 8x8 digits with
``made-np train --context labels`` (the recipe's defaults otherwise) and an unconditional
one with the same recipe; draw 100 samples per class from ``p(x | y)``; label them with a
scikit-learn ``LogisticRegression`` trained on the real binarized digits (train + valid
splits; its accuracy on the real test split is reported beside). Reports the accuracy on
the samples (target >= 90%), per class, and the test NLLs ``-log p(x | y)`` and
``-log p(x)``. Draws ``docs/figures/context_digits.png`` (one class per row).

``mnist``: an order-agnostic 1x500 MADE on binarized MNIST (``--num-masks inf``, trained
with ``made-np train`` unless the run folder holds a finished run; ``--orderings uniform``,
the paper's, or ``segments``, half the masks top- or bottom-rows-first), and its exact
completions of the bottom half given the top half, under a mixture of 16 fresh
observed-first masks (``made_np.conditional``). On the 10,000 test images:

* ``-log p(x_bottom | x_top) = -log p(x) + log p(x_top)`` (:func:`made_np.conditional.log_conditional`),
* ``-log p(x_bottom)``, the unconditional marginal of the same model (bottom-first masks),
* ``-log p(x_top)`` and ``-log p(x)`` (top-first masks),

each as mean ± standard error in nats, and the paired difference (what conditioning on the
top half pays); the same for a random half of the pixels observed (each with probability
1/2, on the first ``--n-random`` test images: every image has its own pattern and masks). Times the completion of 100 test images with 16 masks, fast (the
degree-ordered sampler from the observed prefix) and naive (one forward pass per missing
pixel), and draws ``docs/figures/completion_mnist_bottom.png`` with ``made-np complete``.

Usage (from the repository root; results also go to ``OUT/*.json``)::

    python experiments/context_and_completion.py digits
    python experiments/context_and_completion.py mnist --epochs 30 --orderings uniform \\
        --dataset-path /work/shared/data/binarized_mnist.npz
    python experiments/context_and_completion.py mnist --epochs 30 --orderings segments \\
        --dataset-path /work/shared/data/binarized_mnist.npz
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures"

#: The figures of docs/experiments.md were measured before new runs started their output biases at
#: the data's marginals: this keeps them reproducible.
ZERO_BIAS = ("--output-bias", "zero")


def made_np(*args) -> str:
    """Run the ``made-np`` command line (this checkout's) and return its standard output."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "made_np", *map(str, args)]
    print("$ made-np " + " ".join(map(str, args)), flush=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"made-np failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def finished(run: Path) -> bool:
    from made_np.checkpoint import load_checkpoint

    if not (run / "model.npz").is_file():
        return False
    _, info = load_checkpoint(run, "cpu")
    return bool((info.get("state") or {}).get("finished"))


def mean_se(values) -> tuple:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


# --------------------------------------------------------------------------- digits


def digits(args) -> dict:
    from sklearn.linear_model import LogisticRegression

    from made_np import backend, sampling
    from made_np.checkpoint import load_checkpoint
    from made_np.data import load_dataset

    out = Path(args.out)
    cond, plain = out / "digits-context", out / "digits-plain"
    t0 = time.perf_counter()
    if not finished(cond):
        made_np("train", *ZERO_BIAS, "--context", "labels", "--out", cond, "-q")
    t_train = time.perf_counter() - t0
    if not finished(plain):
        made_np("train", *ZERO_BIAS, "--out", plain, "-q")
    model, _ = load_checkpoint(cond, "cpu")
    ds = load_dataset("digits", context="labels")
    classifier = LogisticRegression(max_iter=5000).fit(
        np.concatenate([ds.train, ds.valid]), np.concatenate([ds.train_context, ds.valid_context]))
    real_acc = float(classifier.score(ds.test, ds.test_context))
    per = args.per_class
    labels = np.repeat(np.arange(10), per)
    x = backend.to_host(sampling.sample(model, len(labels), seed=args.seed, context=labels))
    pred = classifier.predict(x)
    acc = float((pred == labels).mean())
    per_class = [float((pred[labels == c] == c).mean()) for c in range(10)]
    made_np("sample", cond, "-n", 100, "--seed", args.seed, "--out", FIGURES / "context_digits.png")
    res = {
        "command": f"made-np train --context labels --out {cond}",
        "train_seconds_incl_startup": t_train,
        "samples_per_class": per,
        "accuracy_on_samples": acc,
        "accuracy_per_class": per_class,
        "classifier": "LogisticRegression(max_iter=5000) on the real train+valid binarized digits",
        "classifier_accuracy_on_real_test": real_acc,
        "test_nll_given_label": _model_nll(cond),
        "test_nll_unconditional": _model_nll(plain),
        "figure": str(FIGURES / "context_digits.png"),
    }
    return res


# --------------------------------------------------------------------------- mnist


def mnist(args) -> dict:
    from made_np import backend, conditional
    from made_np.checkpoint import load_checkpoint
    from made_np.data import load_dataset

    name = "mnist-oa-1x500" if args.orderings == "uniform" else f"mnist-oa-{args.orderings}-1x500"
    run = Path(args.run) if args.run else Path(args.out) / name
    path = ["--dataset-path", args.dataset_path] if args.dataset_path else []
    if not finished(run) and not args.no_train:
        resume = (run / "model.npz").is_file()
        if resume:
            made_np("train", "--resume", run, *path)
        else:
            made_np("train", *ZERO_BIAS, "--dataset", "binarized-mnist", *path, "--num-masks", "inf", "--hidden", 500,
                    "--orderings", args.orderings, "--epochs", args.epochs, "--eval-masks", 16, "--out", run, "-q")
    model, info = load_checkpoint(run, "cpu", best=True)
    ds = load_dataset("binarized-mnist", path=args.dataset_path)
    x = ds.test[:args.n_test] if args.n_test else ds.test
    N, K = x.shape[0], args.masks
    top = conditional.occlusion_mask("bottom", 784, (28, 28), N)  # observe the top half
    bottom = ~top  # observe the bottom half
    t0 = time.perf_counter()
    lpo, lpm = conditional.mask_log_probs(model, x, top, masks=K, seed=args.seed)
    lpo, lpm = backend.to_host(lpo), backend.to_host(lpm)

    def lse(a):
        m = a.max(axis=1, keepdims=True)
        return (m + np.log(np.exp(a - m).sum(axis=1, keepdims=True)))[:, 0]

    log_top = lse(lpo) - math.log(K)  # log p(x_top)
    log_x = lse(lpo + lpm) - math.log(K)  # log p(x), the same top-first masks
    cond_b = log_x - log_top  # log p(x_bottom | x_top)
    log_bottom = backend.to_host(conditional.log_marginal(model, x, bottom, masks=K, seed=args.seed))
    t_scores = time.perf_counter() - t0
    gain = -log_bottom - (-cond_b)  # what knowing the top half saves on the bottom half, per image

    # a random half observed: every image its own pattern (and its own 16 masks)
    xr = x[:args.n_random]
    rand = conditional.occlusion_mask("random:0.5", 784, None, xr.shape[0], args.seed)
    t0 = time.perf_counter()
    r_po, r_pm = (backend.to_host(a) for a in conditional.mask_log_probs(model, xr, rand, masks=K, seed=args.seed))
    r_cond = lse(r_po + r_pm) - lse(r_po)  # log p(x_m | x_o)
    r_marg = backend.to_host(conditional.log_marginal(model, xr, ~rand, masks=K, seed=args.seed))  # log p(x_m)
    t_random = time.perf_counter() - t0

    # completion of 100 test images with 16 masks, both methods, the same seed (every 100th image:
    # the test split is grouped by digit)
    xs, os_ = x[::100][:100], top[:100]
    timings = {}
    results = {}
    for method, n in (("fast", 1), ("fast", 10), ("naive", 1)):
        t0 = time.perf_counter()
        comps, _ = conditional.complete(model, xs, os_, n, masks=K, seed=args.seed, method=method)
        timings[f"{method}_n{n}"] = time.perf_counter() - t0
        results[(method, n)] = backend.to_host(comps)
    same = bool(np.array_equal(results[("fast", 1)], results[("naive", 1)]))
    agree = float((results[("fast", 1)] == results[("naive", 1)]).mean())
    figure = FIGURES / f"completion_mnist_bottom_{args.orderings}.png"
    shown = Path(args.out) / "mnist_test_every_1000th.npy"
    np.save(shown, ds.test[::1000])  # one image of each stretch of the digit-grouped test split
    cli = json.loads(made_np("complete", run, "--input", shown, "--occlude", "bottom", "-n", 8, "--masks", K,
                             "--seed", args.seed, "--out", Path(args.out) / f"completion_mnist_{args.orderings}.npz",
                             "--png", figure, "--json"))
    res = {
        "run": str(run),
        "train_command": f"made-np train --dataset binarized-mnist --num-masks inf --hidden 500 "
                         f"--orderings {model.config.orderings} --epochs {args.epochs} --eval-masks 16 --out {run}",
        "epochs_trained": (info.get("state") or {}).get("epoch"),
        "best_epoch": (info.get("state") or {}).get("best_epoch"),
        "test_nll_bank_ensemble_16": (info.get("results") or {}).get("ensemble", {}).get("nll")
        if info.get("results") else None,
        "n_test": N, "masks": K, "seed": args.seed,
        "neg_log_p_bottom_given_top": mean_se(-cond_b),
        "neg_log_p_bottom": mean_se(-log_bottom),
        "neg_log_p_top": mean_se(-log_top),
        "neg_log_p_x_topfirst_masks": mean_se(-log_x),
        "conditioning_gain_nats": mean_se(gain),
        "fraction_of_images_where_conditioning_pays": float((gain > 0).mean()),
        "random_half_n_test": int(xr.shape[0]),
        "random_half_neg_log_p_missing_given_observed": mean_se(-r_cond),
        "random_half_neg_log_p_missing": mean_se(-r_marg),
        "random_half_conditioning_gain_nats": mean_se(-r_marg + r_cond),
        "seconds_random_half_scores": t_random,
        "seconds_scores": t_scores,
        "seconds_complete_100_images_16_masks": timings,
        "fast_equals_naive_for_the_same_seed": same,
        "fraction_of_pixels_equal_fast_vs_naive": agree,
        "cli_complete_10x8_seconds": cli["seconds"],
        "figure": str(figure),
    }
    return res


def _model_nll(run) -> float:
    """The test NLL of a run's model: the ensemble of its bank when it has one, else its mask."""
    results = json.loads((run / "results.json").read_text())
    return (results.get("ensemble") or results["single"])["nll"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("which", choices=("digits", "mnist"))
    p.add_argument("--out", default=str(ROOT / "experiments" / "runs"), help="Folder for runs and results.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-class", type=int, default=100, help="digits: samples per class.")
    p.add_argument("--run", default=None, help="mnist: the run folder (default OUT/mnist-oa-1x500).")
    p.add_argument("--epochs", type=int, default=30, help="mnist: epochs of a new run.")
    p.add_argument("--masks", type=int, default=16, help="mnist: observed-first masks.")
    p.add_argument("--n-test", type=int, default=0, help="mnist: first test images only (0: all 10,000).")
    p.add_argument("--n-random", type=int, default=500, help="mnist: test images of the random-half check.")
    p.add_argument("--orderings", choices=("uniform", "segments"), default="uniform",
                   help="mnist: the bank orderings of a new run (made-np train --orderings).")
    p.add_argument("--dataset-path", default=None, help="mnist: binarized_mnist.npz (or its folder).")
    p.add_argument("--no-train", action="store_true",
                   help="mnist: score the run's checkpoint as it is (its best weights so far), even unfinished.")
    args = p.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    FIGURES.mkdir(parents=True, exist_ok=True)
    res = digits(args) if args.which == "digits" else mnist(args)
    tag = args.which if args.which == "digits" else f"{args.which}_{args.orderings}"
    (Path(args.out) / f"context_{tag}.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
