"""Training steps of the fast engine against the reference, for the real heads and for Bernoulli.

D = 64, hidden 500, one fixed mask, batch 100, Adam: 50 steps of each engine per head (best of
3 repeats, milliseconds per step), then the ratio fast/reference, side by side in one run (the
real heads train on N(0, 1) data, the Bernoulli head on random bits). Usage:

    python benchmarks/real_heads_speed.py [threads]
"""
from __future__ import annotations

import sys
import time

import numpy as np

from made_np import MADE, MADEConfig, TrainConfig
from made_np.fast.threads import thread_policy
from made_np.train import make_engine

D, HIDDEN, BATCH, STEPS, REPEATS = 64, (500,), 100, 50, 3
HEADS = {"bernoulli": dict(classes=2, input_encoding="binary"),
         "gaussian": dict(classes=0, input_encoding="raw"),
         "mog": dict(classes=0, input_encoding="raw", components=5)}


def ms_per_step(head: str, engine: str) -> float:
    model = MADE(MADEConfig(D=D, hidden=HIDDEN, head=head, seed=0, **HEADS[head]))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * STEPS, D)) if model.head.real else (rng.random((BATCH * STEPS, D)) < 0.3).astype(np.uint8)
    eng = make_engine(model, engine)
    opt = eng.make_optimizer(TrainConfig(lr=1e-3))
    x = eng.prepare(x)
    batches = [x[i * BATCH:(i + 1) * BATCH] for i in range(STEPS)]
    best = np.inf
    with eng.epoch():
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            for xb in batches:
                eng.loss_and_grad(xb)
                opt.step(eng.grads)
            best = min(best, (time.perf_counter() - t0) / STEPS)
    return 1e3 * best


def main(threads: int = 1) -> None:
    print(f"D = {D}, hidden {list(HIDDEN)}, batch {BATCH}, {STEPS} steps, {threads} thread(s): ms per step")
    print(f"{'head':10s} {'reference':>10s} {'fast':>8s} {'fast/ref':>9s}")
    with thread_policy(threads):
        for head in HEADS:
            ref, fast = ms_per_step(head, "reference"), ms_per_step(head, "fast")
            print(f"{head:10s} {ref:10.3f} {fast:8.3f} {fast / ref:9.2f}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
