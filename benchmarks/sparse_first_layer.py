"""Sparse products for binary inputs: is skipping the zeros of ``x`` faster than the dense GEMM?

Usage::

    python benchmarks/sparse_first_layer.py            # 1x500 and 1x8000 first layers, the direct layer
    python benchmarks/sparse_first_layer.py --quick    # fewer minibatches and repeats

The first layer's forward product ``y = x W`` and its weight gradient ``dW = x^T delta``
(and the same two for the direct connections, 784x784) on real binarized-MNIST minibatches
of 100 (float32), at their real density, in these forms:

* ``dense``: one BLAS GEMM (what the layers do now);
* ``union``: the columns of ``x`` that are 1 somewhere in the minibatch, ``a``, and a GEMM on
  those only: ``x[:, a] @ W[a]`` (a gather of the rows ``W[a]`` each step) and
  ``dW[a] = x[:, a]^T delta``, the other rows of ``dW`` zeroed;
* ``rows``: per example, the sum of the rows of ``W`` at its ones (``W[active].sum(0)``);
  for ``dW``, ``np.add.at`` of ``delta``'s rows into the rows of the ones (scatter-add);
* ``scipy``: ``scipy.sparse.csr_matrix(x) @ W`` and ``csr(x).T @ delta``, the
  conversion included (it happens every step).

Then whole training steps of the fast engine's form (``BlockedMADE``, products on the work
pool, Adam) at 1x500 and 1x8000 with direct connections, with the union products of the data
layers on (``SPARSE_MAX_LIVE`` as shipped) and off (0), in turns in one process.

Each form's result is checked equal to the dense one (float64 copies, 1e-10). Timings are
the minimum over repeats of the mean over the minibatches, BLAS on one thread by default
(``--blas-threads``: the fast engine runs its block products so), all forms in turns in one
process; the load average is printed with them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from made_np.fast import prefer_short_blas_spin  # noqa: E402

prefer_short_blas_spin()

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

BATCH = 100


def dense_fwd(x, W, out):
    np.matmul(x, W, out=out)


def dense_dw(x, delta, out):
    np.matmul(x.T, delta, out=out)


def union_fwd(x, W, out):
    a = np.flatnonzero(x.any(axis=0))
    np.matmul(x[:, a], W[a], out=out)


def union_dw(x, delta, out):
    a = np.flatnonzero(x.any(axis=0))
    out[...] = 0
    out[a] = x[:, a].T @ delta


def rows_fwd(x, W, out):
    for n in range(x.shape[0]):
        W[np.flatnonzero(x[n])].sum(axis=0, out=out[n])


def rows_dw(x, delta, out):
    out[...] = 0
    n, d = np.nonzero(x)
    np.add.at(out, d, delta[n])


def scipy_fwd(x, W, out):
    out[...] = sp.csr_matrix(x) @ W


def scipy_dw(x, delta, out):
    out[...] = sp.csr_matrix(x).T @ delta


FORMS = {"dense": (dense_fwd, dense_dw), "union": (union_fwd, union_dw),
         "rows": (rows_fwd, rows_dw), "scipy": (scipy_fwd, scipy_dw)}


def loadavg():
    return [round(v, 2) for v in os.getloadavg()]


def check(batches, H, rng):
    """Every form equals the dense product (float64, 1e-10) on one minibatch."""
    x = batches[0].astype(np.float64)
    W = rng.standard_normal((x.shape[1], H))
    delta = rng.standard_normal((x.shape[0], H))
    ref_y, ref_dw = x @ W, x.T @ delta
    for name, (fwd, dw) in FORMS.items():
        y, g = np.empty_like(ref_y), np.empty_like(ref_dw)
        fwd(x, W, y)
        dw(x, delta, g)
        assert np.allclose(y, ref_y, rtol=1e-10, atol=1e-10), name
        assert np.allclose(g, ref_dw, rtol=1e-10, atol=1e-10), name


def measure(batches, H, repeats, forms):
    rng = np.random.default_rng(0)
    D = batches[0].shape[1]
    W = rng.standard_normal((D, H)).astype(np.float32)
    delta = rng.standard_normal((BATCH, H)).astype(np.float32)
    y = np.empty((BATCH, H), np.float32)
    dW = np.empty((D, H), np.float32)
    best = {(f, k): float("inf") for f in forms for k in ("fwd", "dW")}
    for _ in range(repeats):
        for f in forms:
            fwd, dw = FORMS[f]
            for k, fn, arg, out in (("fwd", fwd, W, y), ("dW", dw, delta, dW)):
                t = time.perf_counter()
                for xb in batches:
                    fn(xb, arg, out)
                best[f, k] = min(best[f, k], (time.perf_counter() - t) / len(batches))
    return best


def steps_section(train, hidden, steps, repeats):
    """ms per Adam step of the fast engine's form, union products on and off, in turns."""
    from benchmarks.run import TrainCase  # the benchmark's training case (fit's form and optimiser)
    from made_np.fast import blocked

    shipped = blocked.SPARSE_MAX_LIVE
    idx = np.random.default_rng(1).permutation(train.shape[0])[:steps * BATCH]
    batches = [np.ascontiguousarray(train[idx[i * BATCH:(i + 1) * BATCH]]) for i in range(steps)]
    case = TrainCase(np, hidden, batches, "blocked", None, direct=True)
    best = {"on": float("inf"), "off": float("inf")}
    try:
        for r in range(repeats + 1):
            for k, limit in (("on", shipped), ("off", 0.0)):
                blocked.SPARSE_MAX_LIVE = limit
                t = time.perf_counter()
                case.run_steps()
                if r:  # the first round warms up
                    best[k] = min(best[k], (time.perf_counter() - t) / steps)
    finally:
        blocked.SPARSE_MAX_LIVE = shipped
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads (default 1: what the fast engine's block products run with)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "binarized_mnist.npz")
    args = ap.parse_args(argv)
    with np.load(args.data, allow_pickle=False) as f:
        train = np.ascontiguousarray(f["train_data"]).astype(np.float32)
    rng = np.random.default_rng(0)
    n_batches = 5 if args.quick else 20
    idx = rng.permutation(train.shape[0])[:n_batches * BATCH]
    batches = [np.ascontiguousarray(train[idx[i * BATCH:(i + 1) * BATCH]]) for i in range(n_batches)]
    ones = np.mean([b.mean() for b in batches])
    union = np.mean([b.any(axis=0).mean() for b in batches])
    from threadpoolctl import threadpool_limits
    limits = threadpool_limits(limits=args.blas_threads, user_api="blas")
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, BLAS threads {args.blas_threads}, "
          f"load average {loadavg()}")
    print(f"binarized MNIST minibatches of {BATCH}: {ones:.1%} of the pixels are 1; "
          f"{union:.1%} of the columns are 1 somewhere in the minibatch (the union)")
    for H in (500, 784, 8000):
        check(batches, H, rng)
    print("all forms equal the dense products (float64, 1e-10)")
    for H, label in ((500, "1x500 first layer 784x500"), (784, "direct connections 784x784"),
                     (8000, "1x8000 first layer 784x8000")):
        forms = ["dense", "union", "scipy"] + (["rows"] if H <= 784 else [])
        best = measure(batches, H, 3 if args.quick else 7, forms)
        print(f"\n{label} (load average {loadavg()}): ms per minibatch, minimum over repeats")
        for f in forms:
            print(f"  {f:>6}  forward {best[f, 'fwd'] * 1e3:8.3f} ({best[f, 'fwd'] / best['dense', 'fwd']:5.2f}x dense)"
                  f"   dW {best[f, 'dW'] * 1e3:8.3f} ({best[f, 'dW'] / best['dense', 'dW']:5.2f}x dense)")
    limits.restore_original_limits()  # the training steps set their own (one BLAS thread inside the pool)
    for hidden, steps in (((500,), 20 if args.quick else 100), ((8000,), 5 if args.quick else 10)):
        best = steps_section(train.astype(np.uint8), hidden, steps, 2 if args.quick else 4)
        print(f"\nfast-engine step 1x{hidden[0]} + direct (load average {loadavg()}): union products on "
              f"{best['on'] * 1e3:.2f} ms, off {best['off'] * 1e3:.2f} ms, on/off {best['on'] / best['off']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
