"""One command for a GPU: is the CUDA path right, and how fast is it? One table, in about 8 minutes.

Usage::

    python benchmarks/gpu_check.py                  # on the GPU (CuPy, --device cuda)
    python benchmarks/gpu_check.py --device cpu     # the same stages on the CPU (to try the script)
    python benchmarks/gpu_check.py --quick          # fewer timed steps, the digits run cut short

Stages, each with its own time limit, so a failure in one still leaves the others' rows:

1. ``tests/test_cuda.py`` (pytest in a subprocess): passed / failed / skipped.
2. The digits default (``made-np train``) on the device and on the CPU, the same seed: both
   test NLLs and their difference (target: at most 1e-3 nats in float32).
3. Seconds per binarized-MNIST epoch (500 minibatches of 100, Adam, the fast engine) for 1x500,
   1x8000 with direct connections and 2x8000, timed over a few dozen steps after a warm-up and
   scaled to 500; beside each, PyTorch on the same device where ``import torch`` works (the same
   masked step: masked products, Bernoulli NLL, Adam). Random binary data of MNIST's shape stand
   in when ``../shared/data/binarized_mnist.npz`` is absent.

Writes the table as JSON too (``--out``, default ``benchmarks/results/gpu_check.json``).
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from made_np import MADE, MADEConfig, TrainConfig, backend  # noqa: E402
from made_np.fast.engine import FastEngine  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
import run as bench  # noqa: E402  (the PyTorch peer of benchmarks/run.py)

D, BATCH, STEPS_PER_EPOCH = 784, 100, 500
SHAPES = {"1x500": ((500,), False), "1x8000+direct": ((8000,), True), "2x8000": ((8000, 8000), False)}


def run(cmd, timeout):
    """``(returncode, output)`` of a subprocess in the repository root; a time-out is returncode None."""
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as exc:
        return None, f"timed out after {timeout} s\n{exc.stdout or ''}"


def cuda_tests(timeout: int) -> dict:
    rc, out = run([sys.executable, "-m", "pytest", "tests/test_cuda.py", "-q", "-rs", "-p", "no:cacheprovider"],
                  timeout)
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", out)}
    return {"returncode": rc, **counts, "tail": out.strip().splitlines()[-6:]}


def digits_nll(device: str, quick: bool, timeout: int) -> dict:
    """The digits default on ``device``: test NLL of the ensemble (results.json)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "made_np", "train", "--device", device, "--out", f"{tmp}/run", "-q"]
        if quick:
            cmd += ["--epochs", "20"]
        t0 = time.perf_counter()
        rc, out = run(cmd, timeout)
        seconds = time.perf_counter() - t0
        if rc != 0:
            return {"device": device, "returncode": rc, "seconds": seconds, "tail": out.strip().splitlines()[-3:]}
        results = json.loads(Path(f"{tmp}/run/results.json").read_text())
    nll = (results.get("ensemble") or results["single"])["nll"]  # a single-mask run's ensemble is null
    return {"device": device, "returncode": rc, "seconds": seconds, "test_nll": nll}


def mnist_train(xp) -> np.ndarray:
    path = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"
    if path.exists():
        with np.load(path) as z:
            return np.ascontiguousarray(z["train_data"][:20000]).astype(np.uint8)
    return (backend.host_rng(0).random((20000, D)) < 0.13).astype(np.uint8)


def made_epoch(xp, train, hidden, direct: bool, steps: int, sync) -> float:
    """Seconds per 500-step epoch of the fast engine (what ``fit`` steps) on ``xp``."""
    model = MADE(MADEConfig(D=D, hidden=hidden, direct=direct, seed=0), xp)
    engine = FastEngine(model)
    opt = engine.make_optimizer(TrainConfig(lr=1e-3))
    x = engine.prepare(backend.to_device(train, xp))
    batches = [x[i * BATCH:(i + 1) * BATCH] for i in range(steps)]
    with engine.epoch():
        for xb in batches[:3]:  # warm up: kernels compiled, memory pools filled
            engine.loss_and_grad(xb)
            opt.step(engine.grads)
        sync()
        t0 = time.perf_counter()
        for xb in batches:
            engine.loss_and_grad(xb)
            opt.step(engine.grads)
        sync()
    return (time.perf_counter() - t0) / steps * STEPS_PER_EPOCH


def torch_epoch(device: str, train, hidden, direct: bool, steps: int):
    """PyTorch's seconds per epoch of the same masked step on ``device`` (benchmarks/run.py's peer);
    or the reason it is skipped."""
    row = bench.torch_peer(train, hidden, direct=direct, steps=steps, repeats=1, device=device)
    return row.get("epoch_s", f"skipped: {row.get('skipped')}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--quick", action="store_true", help="fewer timed steps; the digits run cut to 20 epochs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json")
    args = ap.parse_args(argv)
    report = {"device": args.device, "python": platform.python_version(), "numpy": np.__version__}
    try:
        xp = backend.get_xp(args.device)
    except backend.BackendError as exc:
        print(f"--device {args.device}: {exc}", file=sys.stderr)
        return 2
    if args.device == "cuda":
        import cupy

        report["card"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        report["cupy"] = cupy.__version__
    sync = lambda: backend.synchronize(xp)  # noqa: E731

    report["cuda_tests"] = cuda_tests(timeout=150)
    print(f"tests/test_cuda.py: {report['cuda_tests']}", flush=True)
    runs = [digits_nll(args.device, args.quick, timeout=150)]
    if args.device != "cpu":
        runs.append(digits_nll("cpu", args.quick, timeout=120))
    report["digits"] = runs
    nlls = [r.get("test_nll") for r in runs]
    if len(nlls) == 2 and None not in nlls:
        report["digits_difference"] = abs(nlls[0] - nlls[1])
    train = mnist_train(xp)
    steps = 10 if args.quick else 40
    rows = {}
    for name, (hidden, direct) in SHAPES.items():
        if args.device == "cpu" and hidden[0] > 500 and args.quick:
            rows[name] = {"skipped": "--quick on the CPU: 1x500 only"}
            continue
        made = made_epoch(xp, train, hidden, direct, steps, sync)
        peer = torch_epoch(args.device, train, hidden, direct, steps)
        rows[name] = {"made_np_epoch_s": made, "torch_epoch_s": peer,
                      "ratio_torch_over_made_np": peer / made if isinstance(peer, float) else None}
        print(f"{name}: {rows[name]}", flush=True)
    report["epochs"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))

    print(f"\n{'check':34s} result")
    print(f"{'device':34s} {report.get('card', args.device)}")
    ct = report["cuda_tests"]
    print(f"{'tests/test_cuda.py':34s} {ct.get('passed', 0)} passed, {ct.get('failed', 0)} failed, "
          f"{ct.get('skipped', 0)} skipped")
    for r in runs:
        shown = f"{r['test_nll']:.4f} nats" if r.get("test_nll") is not None else f"failed (rc {r['returncode']})"
        print(f"{'digits default, ' + r['device']:34s} {shown}  ({r['seconds']:.0f} s)")
    if "digits_difference" in report:
        print(f"{'digits |cuda - cpu|':34s} {report['digits_difference']:.2e} nats (target <= 1e-3)")
    for name, row in rows.items():
        if "skipped" in row:
            print(f"{name + ' s/epoch':34s} {row['skipped']}")
            continue
        peer = row["torch_epoch_s"]
        peer_text = f"torch {peer:.2f} s, {row['ratio_torch_over_made_np']:.2f}x" if isinstance(peer, float) else peer
        print(f"{name + ' s/epoch':34s} made-np {row['made_np_epoch_s']:.2f} s; {peer_text}")
    print(f"\nwritten: {args.out}")
    return 0 if not ct.get("failed") and all(r["returncode"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
