"""Seconds per MNIST epoch (500 Adam steps of 100) of the fast engine at 1x500, one mask and a bank
of 8, on 1 and 2 threads, for the made_np found at ROOT: run it on two checkouts back to back to
compare a change with its parent (docs/performance.md). Usage: python benchmarks/step_compare.py ROOT
"""
import sys, time
root = sys.argv[1]; sys.path.insert(0, root)
from made_np.fast import prefer_short_blas_spin; prefer_short_blas_spin()
import numpy as np
from made_np import MADE, MADEConfig, TrainConfig
from made_np.fast.engine import FastEngine
from made_np.fast.threads import thread_policy
with np.load("/work/shared/data/binarized_mnist.npz") as z:
    train = np.ascontiguousarray(z["train_data"][:20000]).astype(np.uint8)
new = "mask" in MADE.__dict__
out = {}
for form, K in (("single", 1), ("bank8", 8)):
    for threads in (1, 2):
        with thread_policy(threads):
            model = MADE(MADEConfig(D=784, hidden=(500,), num_masks=K, seed=0, direct=False))
            eng = FastEngine(model)
            opt = eng.make_optimizer(TrainConfig(lr=1e-3))
            x = eng.prepare(train)
            batches = [x[i*100:(i+1)*100] for i in range(100)]
            best = 1e9
            with eng.epoch():
                for rep in range(6):
                    t0 = time.perf_counter()
                    for i, xb in enumerate(batches):
                        if new:
                            eng.loss_and_grad(xb, i % K)
                        else:
                            if K > 1: model.set_mask(i % K)
                            eng.loss_and_grad(xb)
                        opt.step(eng.grads)
                    best = min(best, (time.perf_counter() - t0) / len(batches))
            out[f"{form}-t{threads}"] = best * 500
print(" ".join(f"{k}={v:.3f}" for k, v in out.items()))
