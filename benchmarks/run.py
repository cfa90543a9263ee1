"""Performance benchmarks of made-np, measured side by side in one run.

Usage::

    python benchmarks/run.py            # full run (about 1-2 minutes on 2 cores)
    python benchmarks/run.py --quick    # fewer repeats, smaller sampling/eval sizes, no 1x8000
    python benchmarks/run.py --only-8000  # just the 1x8000 (direct connections) training row

Prints, and saves as JSON (``benchmarks/results/cpu.json`` by default):

* training seconds per binarized-MNIST epoch (500 minibatches of 100, Adam) for
  1x500 and 2x500 MADEs (and the paper-size 1x8000 with direct connections, in the fast
  engine's form only, with a PyTorch CPU peer when ``import torch`` works), in the form :func:`made_np.train.fit` trains them
  (``blocked``: :class:`made_np.model.BlockedMADE`, sorted units and packed
  blocks of live weights) and as a plain :class:`made_np.model.MADE`; the
  GEMM-only bound of the dense shapes measured in the same run (the five
  matrix products of a plain step alone), and the ratio of each to it;
* the share of a training step spent in its own matrix products, the optimiser,
  the mask multiply and the elementwise work (head, activations, biases, input cast);
* sampling 100 MNIST images with the naive and the fast (degree-ordered) sampler;
* evaluation of the 10,000 test images: single mask, and an ensemble of K = 8 masks;
* peak resident memory (RSS) of a short training run in a subprocess (its own ``VmHWM``);
* the same on a CUDA GPU through CuPy when one is available (with the
  paper-size 1x8000 network), else ``skipped: no CUDA GPU``.

Timings are the minimum over repeats (the least disturbed run); the load
average is printed with them, since other processes share the CPU. Without
``../shared/data/binarized_mnist.npz`` (or ``--data``) the benchmarks run on
random binary data of the same shape, and say so.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the command line's OpenBLAS setting, before NumPy loads OpenBLAS (this script is an entry point too)
from made_np.fast import prefer_short_blas_spin  # noqa: E402

prefer_short_blas_spin()

import numpy as np  # noqa: E402
from made_np import backend  # noqa: E402
from made_np.fast import threads  # noqa: E402
from made_np.fast.blocked import BlockedDense, BlockedMADE  # noqa: E402
from made_np.fast.engine import FastEngine, blocked_products  # noqa: E402
from made_np.fast.kernels import fast_head  # noqa: E402
from made_np.fast.optim import make_fast_optimizer  # noqa: E402
from made_np.fast.sampler import sample_fast  # noqa: E402
from made_np.model import MADE, MADEConfig  # noqa: E402
from made_np.optim import make_optimizer  # noqa: E402
from made_np.sampling import draw_noise, sample_naive  # noqa: E402

STEPS_PER_EPOCH = 500  # 50,000 training images / minibatches of 100
BANK = 8  # masks in the bank of the "bank" rows
BATCH = 100
D = 784


# --------------------------------------------------------------------------- helpers


def best_of(fn, repeats: int, number: int = 1, sync=lambda: None) -> float:
    """Minimum over ``repeats`` of the mean wall time (seconds) of ``number`` calls."""
    best = float("inf")
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t) / number)
    return best


def load_mnist(path: Path | None):
    """(train, test, source): the real binarized MNIST, or random binary data of the same shape."""
    candidates = [path] if path else [ROOT.parent / "shared" / "data" / "binarized_mnist.npz"]
    for p in candidates:
        if p is not None and Path(p).is_file():
            with np.load(p, allow_pickle=False) as f:
                return f["train_data"].astype(np.uint8), f["test_data"].astype(np.uint8), str(p)
    rng = np.random.default_rng(0)
    train = (rng.random((50_000, D)) < 0.13).astype(np.uint8)
    test = (rng.random((10_000, D)) < 0.13).astype(np.uint8)
    return train, test, "random binary data of the binarized-MNIST shape (real data not found)"


def loadavg() -> list:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def blas_info() -> str:
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy
        return "unknown"


def say(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- training


class TrainCase:
    """One training configuration (hidden widths, form, elementwise threads) and its minibatches.

    ``form`` is ``blocked`` (the :class:`BlockedMADE` that ``fit``'s fast engine trains, on
    column-permuted minibatches), ``plain`` (the :class:`MADE` itself with the fast engine's
    fused head and in-place optimiser), ``bank`` (a bank of :data:`BANK` order- and
    connectivity-agnostic masks, a different mask at every step, trained by the fast
    engine as ``fit`` trains it) or ``reference`` (the MADE with its reference head and
    textbook optimiser: ``--engine reference``). ``threads``
    sets ``$MADE_NP_THREADS`` while the model and optimiser are built (the CPU work
    pool that splits the optimiser update)."""

    def __init__(self, xp, hidden, batches, form="plain", threads=None, direct=False):
        saved = os.environ.get("MADE_NP_THREADS")
        if threads is not None:
            os.environ["MADE_NP_THREADS"] = str(threads)
        try:
            masks = BANK if form == "bank" else 1
            self.model = MADE(MADEConfig(D=D, hidden=hidden, seed=0, direct=direct, num_masks=masks), xp)
            self.head = self.model.head if form == "reference" else fast_head(self.model.head)
            if form == "bank":
                self.engine = FastEngine(self.model)
            if form == "blocked":
                self.model = BlockedMADE(self.model)
                batches = [self.model.permute_data(b) for b in batches]
            make = make_optimizer if form == "reference" else make_fast_optimizer
            self.opt = make("adam", self.model.params, xp, lr=1e-3)
        finally:
            if saved is None:
                os.environ.pop("MADE_NP_THREADS", None)
            else:
                os.environ["MADE_NP_THREADS"] = saved
        pool = getattr(self.opt, "pool", None)
        self.xp, self.hidden, self.batches, self.form = xp, tuple(hidden), batches, form
        self.direct = direct
        self.threads = pool.threads if pool is not None else 1
        self.best = float("inf")

    def context(self):
        """What fit() runs the training steps in: the blocked form's parallel block products."""
        if self.form == "blocked":
            return self.model.parallel(self.threads)
        return contextlib.nullcontext()

    def run_steps(self):
        model, opt = self.model, self.opt
        with self.context():
            for i, xb in enumerate(self.batches):
                self.loss(xb, i % BANK if self.form == "bank" else 0)
                opt.step(model.grads)

    def loss(self, xb, mask=0):
        """The loss and gradients of a minibatch under ``mask``, with this form's head."""
        if self.form == "bank":
            return self.engine.loss_and_grad(xb, mask)
        return self.model.loss_and_grad(xb, mask, head=self.head)


class GemmBound:
    """The matrix products of one training step of a MADE with these hidden widths, alone,
    into preallocated outputs: forward ``a_i W_i``, backward ``a_i^T delta_i`` and
    ``delta_i W_i^T`` (not for the input layer); with direct connections also ``x A`` and
    ``x^T delta`` (784x784)."""

    def __init__(self, xp, model):
        model = getattr(model, "model", model)  # a BlockedMADE's wrapped MADE: the dense shapes
        dtype = model.dtype
        widths = [D, *model.config.hidden, D]
        rng = np.random.default_rng(0)
        self.acts = [xp.asarray(rng.random((BATCH, w)).astype(dtype)) for w in widths]
        self.Ws = [layer.W for layer in model.layers]
        self.fwd = [xp.empty((BATCH, w), dtype=dtype) for w in widths[1:]]
        self.dW = [xp.empty_like(W) for W in self.Ws]
        self.dx = [xp.empty((BATCH, w), dtype=dtype) for w in widths[:-1]]
        self.matmul = xp.matmul
        self.A = model.direct.W if model.direct is not None else None
        if self.A is not None:
            self.fwd_A, self.dA = xp.empty((BATCH, D), dtype=dtype), xp.empty_like(self.A)
        self.best = float("inf")

    def run(self, number=20):
        matmul, acts, Ws = self.matmul, self.acts, self.Ws
        for _ in range(number):
            if self.A is not None:
                matmul(acts[0], self.A, out=self.fwd_A)
                matmul(acts[0].T, acts[-1], out=self.dA)
            for i, W in enumerate(Ws):
                matmul(acts[i], W, out=self.fwd[i])
            for i in reversed(range(len(Ws))):
                matmul(acts[i].T, acts[i + 1], out=self.dW[i])
                if i > 0:
                    matmul(acts[i + 1], Ws[i].T, out=self.dx[i])


def weight_products(layer, x, delta, part):
    """The ``dW`` products of the blocks ``part`` of a :class:`BlockedDense` (no mask multiply)."""
    for i in part:
        rows, cols = layer.index[i]
        layer.xp.matmul(x[:, rows].T, delta[:, cols], out=layer._dW[i])


def own_products(model):
    """A thunk running the matrix products of one training step of ``model`` alone, as its
    layers do them (block by block for :class:`BlockedDense`), on the inputs its last
    step left in the layers (the outputs stand in for the upstream gradients)."""
    xp, layers = model.xp, model._all_layers

    def run():
        for layer in layers:
            x = layer.x
            if isinstance(layer, BlockedDense):  # as the layer runs them (on its pool in fit)
                y = layer._product(x, transpose=False, width=layer.shape[1])
                layer._run([(weight_products, layer, x, y, part) for part in layer._parts])
                if layer.need_input_grad:
                    layer._product(y, transpose=True, width=layer.shape[0])
            else:
                y = x @ layer.W
                xp.matmul(x.T, y, out=layer.dW)
                if layer.need_input_grad:
                    y @ layer.W.T
    return run


def training_bench(xp, train, hiddens, thread_options, *, steps: int, repeats: int, sync,
                   forms=("blocked", "plain"), direct=False) -> list:
    """Seconds per Adam step of fixed-mask MADEs on minibatches of 100, with the GEMM-only
    bound and the shares of products, optimiser, mask multiply and elementwise work.

    The configurations are timed in turns, one run of ``steps`` steps each per round
    (``repeats`` rounds, the minimum kept), so that a change in the machine's load
    affects them alike."""
    x_train = backend.to_device(train, xp)
    n = x_train.shape[0]
    perm = backend.to_device(backend.host_rng(0).permutation(n), xp)
    batches = [x_train[perm[i * BATCH:(i + 1) * BATCH]] for i in range(min(steps, n // BATCH))]
    cases = [TrainCase(xp, h, batches, f, t, direct) for h in hiddens for f in forms for t in thread_options
             if f != "reference" or t == thread_options[0]]  # the reference engine uses no work pool
    bounds = {c.hidden: GemmBound(xp, c.model) for c in cases}
    for c in cases:
        c.run_steps()  # warm up (allocations, BLAS threads, caches)
    for _ in range(repeats):
        for c in cases:
            c.best = min(c.best, best_of(c.run_steps, 1, sync=sync) / len(batches))
        for g in bounds.values():
            g.best = min(g.best, best_of(g.run, 1, sync=sync) / 20)
            with threads.blas_threads(1, xp):  # on a loaded machine one BLAS thread can be faster
                g.best_1 = min(getattr(g, "best_1", float("inf")), best_of(g.run, 1, sync=sync) / 20)

    rows = []
    reps = max(repeats, 3)
    for c in cases:
        model, opt, xb = c.model, c.opt, c.batches[0]
        cpu0 = time.process_time()
        c.run_steps()
        sync()
        cpu_step = (time.process_time() - cpu0) / len(batches)
        layers, masks = model._all_layers, model.mask(0)[1]

        def mask_multiply():
            for layer, M in zip(layers, masks):
                if isinstance(layer, BlockedDense):  # as the layer does it: on the staircase's band
                    for i in range(len(layer.index)):
                        layer._mask_grad(i)
                else:
                    layer.dW *= M

        # the same step taken apart (every piece timed alone, minimum over repeats)
        with c.context():
            loss_grad = best_of(lambda: c.loss(xb), reps, number=20, sync=sync)
            optim = best_of(lambda: opt.step(model.grads), reps, number=20, sync=sync)
            mask = best_of(mask_multiply, reps, number=20, sync=sync)
            inputs, targets = model.encode(xb)
            z = model._forward_pass(inputs, masks)
            head = best_of(lambda: c.head.nll_and_grad(z, targets), reps, number=20, sync=sync)
            products = best_of(own_products(model), reps, number=20, sync=sync)
        step, gemm_blas, gemm_1 = c.best, bounds[c.hidden].best, bounds[c.hidden].best_1
        gemm = min(gemm_blas, gemm_1)
        elementwise = max(loss_grad - products - mask, 0.0)
        rows.append({
            "hidden": list(c.hidden),
            "direct": c.direct,
            "form": c.form,
            "threads": c.threads,
            "step_ms": step * 1e3,
            "cpu_ms_per_step": cpu_step * 1e3,
            "epoch_s": step * STEPS_PER_EPOCH,
            "gemm_ms": gemm * 1e3,
            "gemm_epoch_s": gemm * STEPS_PER_EPOCH,
            "gemm_epoch_s_blas_threads": gemm_blas * STEPS_PER_EPOCH,
            "gemm_epoch_s_one_blas_thread": gemm_1 * STEPS_PER_EPOCH,
            "ratio_to_gemm": step / gemm,
            "products_ms": products * 1e3,
            "loss_and_grad_ms": loss_grad * 1e3,
            "optimizer_ms": optim * 1e3,
            "mask_multiply_ms": mask * 1e3,
            "elementwise_ms": elementwise * 1e3,
            "head_ms": head * 1e3,
            "share_products": products / step,
            "share_optimizer": optim / step,
            "share_mask_multiply": mask / step,
            "share_elementwise": elementwise / step,
            # what the pieces timed alone do not account for (colder caches inside a step, the
            # thread pool's hand-offs, Python overhead)
            "share_other": max(1.0 - (products + optim + mask + elementwise) / step, 0.0),
            "steps_timed": len(batches),
            "repeats": repeats,
        })
    return rows


def print_training(rows: list) -> None:
    say(f"{'network':>8} {'form':>7} {'threads':>7} {'s/epoch':>8} {'ms/step':>8} {'GEMM s/ep':>9} {'ratio':>6} "
        f"{'prods':>6} {'optim':>6} {'mask':>6} {'elemw':>6} {'other':>6}  (shares of a step)")
    for r in rows:
        name = "x".join(str(h) for h in r["hidden"]) if len(set(r["hidden"])) > 1 else \
            f"{len(r['hidden'])}x{r['hidden'][0]}"
        name += "+A" if r.get("direct") else ""
        say(f"{name:>8} {r['form']:>7} {r['threads']:7d} {r['epoch_s']:8.3f} {r['step_ms']:8.3f} "
            f"{r['gemm_epoch_s']:9.3f} {r['ratio_to_gemm']:6.2f} {r['share_products']:6.1%} "
            f"{r['share_optimizer']:6.1%} {r['share_mask_multiply']:6.1%} "
            f"{r['share_elementwise']:6.1%} {r['share_other']:6.1%}")
    say("GEMM s/ep: the five dense products of a plain step alone (the faster of BLAS's own threads and one); ratio: s/epoch over it (below 1 when "
        "the blocked form skips the zero blocks); prods: the step's own products; +A: direct connections")


def torch_peer(train, hidden, *, direct: bool, steps: int, repeats: int, device: str = "cpu") -> dict:
    """Seconds per epoch of the same masked MADE step (masked products, Bernoulli NLL, Adam)
    in PyTorch on ``device`` (``cpu`` or ``cuda``), when ``import torch`` works (and has CUDA, for
    ``cuda``); else ``{"skipped": reason}``.

    torch is not a dependency of made-np: this row only places the NumPy numbers beside a peer's.
    """
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install
        return {"skipped": f"torch not importable ({type(exc).__name__}: {exc})"}
    if device == "cuda" and not torch.cuda.is_available():
        return {"skipped": "torch has no CUDA"}
    dev = torch.device(device)
    made = MADE(MADEConfig(D=D, hidden=hidden, seed=0, direct=direct))
    Ws = [torch.tensor(layer.W, device=dev, requires_grad=True) for layer in made._all_layers]
    bs = [torch.tensor(layer.b, device=dev, requires_grad=True) for layer in made.layers]
    Ms = [torch.tensor(np.asarray(M), device=dev) for M in made.mask(0)[1]]
    opt = torch.optim.Adam(Ws + bs, lr=1e-3)
    rng = backend.host_rng(0)
    idx = rng.permutation(train.shape[0])
    batches = [torch.tensor(train[idx[i * BATCH:(i + 1) * BATCH]].astype(np.float32), device=dev)
               for i in range(steps)]
    n_layers = len(made.layers)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step(xb):
        h = xb
        for i in range(n_layers):
            h = h @ (Ws[i] * Ms[i]) + bs[i]
            if i < n_layers - 1:
                h = torch.relu(h)
        if direct:
            h = h + xb @ (Ws[-1] * Ms[-1])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(h, xb, reduction="sum") / xb.shape[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def epoch_part():
        for xb in batches:
            step(xb)

    epoch_part()  # warm up
    best = best_of(epoch_part, repeats, sync=sync) / steps
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "step_ms": best * 1e3,
            "epoch_s": best * STEPS_PER_EPOCH, "steps_timed": steps, "repeats": repeats}


# --------------------------------------------------------------------------- sampling, evaluation


def sampling_bench(xp, *, n: int, naive_repeats: int, fast_repeats: int, sync, hidden=(500,)) -> dict:
    model = MADE(MADEConfig(D=D, hidden=hidden, seed=0), xp)
    u = draw_noise(n, D, 0, xp)
    sample_fast(model, noise=u)  # warm up
    fast = best_of(lambda: sample_fast(model, noise=u), fast_repeats, sync=sync)
    naive = best_of(lambda: sample_naive(model, noise=u), naive_repeats, sync=sync)
    same = bool((backend.to_host(sample_fast(model, noise=u)) == backend.to_host(sample_naive(model, noise=u))).all()) \
        if naive_repeats else None
    return {"n": n, "hidden": list(hidden), "naive_s": naive, "fast_s": fast, "ratio": naive / fast,
            "float32_samples_identical": same}


def evaluation_bench(xp, test, *, repeats: int, sync, K: int = 8) -> dict:
    x = backend.to_device(test, xp)
    single = MADE(MADEConfig(D=D, hidden=(500,), seed=0), xp)
    bank = MADE(MADEConfig(D=D, hidden=(500,), num_masks=K, order_agnostic=True,
                           connectivity_agnostic=True, seed=0), xp)
    single.nll(x[:1000])
    t1 = best_of(lambda: single.nll(x), repeats, sync=sync)
    idx = list(range(K))
    bank.ensemble_nll(x[:1000], idx)  # fills the mask cache
    tk = best_of(lambda: bank.ensemble_nll(x, idx), repeats, sync=sync)
    return {"n": int(x.shape[0]), "single_mask_s": t1, "ensemble_K": K, "ensemble_s": tk,
            "ensemble_s_per_mask": tk / K}


# --------------------------------------------------------------------------- memory


RSS_SCRIPT = textwrap.dedent("""
    import resource, sys, time
    sys.path.insert(0, {root!r})
    from made_np.fast import prefer_short_blas_spin  # before NumPy, as in the benchmark itself
    prefer_short_blas_spin()
    import numpy as np
    from made_np.model import MADE, MADEConfig
    from made_np.train import TrainConfig, fit
    with np.load({path!r}, allow_pickle=False) as f:
        train, valid = f["train_data"], f["valid_data"]
    if {steps} < 500:
        train = train[:{steps} * 100]
    class Data:  # the duck-typed dataset fit() needs
        pass
    data = Data(); data.train, data.valid = train, valid
    model = MADE(MADEConfig(D=784, hidden=({hidden},), seed=0, direct=True))
    t = time.perf_counter()
    fit(model, data, TrainConfig(epochs=1, patience=0))
    wall = time.perf_counter() - t
    try:  # VmHWM: this program's own peak (ru_maxrss keeps the forking parent's across exec)
        with open("/proc/self/status") as f:
            peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):  # not Linux: ru_maxrss, in bytes on macOS
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
    print(wall, peak_kb)
""")


def rss_bench(data_path: str | None, steps: int, hidden: int = 500) -> dict:
    """Peak RSS (MB) of a child process that trains a 1x``hidden`` MADE (the recipe's: direct
    connections, one mask for 50,000 rows) on binarized MNIST with :func:`made_np.train.fit`
    (one epoch of ``steps`` minibatches plus validation)."""
    tmp = None
    if data_path is None or not Path(data_path).is_file():
        rng = np.random.default_rng(0)
        tmp = ROOT / "benchmarks" / "results" / "_random_mnist.npz"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, train_data=(rng.random((50_000, D)) < 0.13).astype(np.uint8),
                 valid_data=(rng.random((10_000, D)) < 0.13).astype(np.uint8))
        data_path = str(tmp)
    code = RSS_SCRIPT.format(root=str(ROOT), path=data_path, steps=steps, hidden=int(hidden))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if tmp is not None:
        tmp.unlink(missing_ok=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    # the child's own peak (RUSAGE_CHILDREN would be the largest of every child this process has
    # had, and counts the parent's memory at the fork: 500 MB more once torch is imported)
    wall, peak_kb = proc.stdout.strip().splitlines()[-1].split()
    return {"peak_rss_mb": int(peak_kb) / 1024, "train_steps": steps, "wall_s": float(wall), "hidden": hidden}


# --------------------------------------------------------------------------- main


def run_8000(xp, name: str, train, args, sync) -> list:
    """The paper-size row: 1x8000 with direct connections, in the fast engine's form (its
    default threads), the dense GEMM bound of the same run and their ratio; then a
    PyTorch CPU peer, or the reason it is skipped."""
    say(f"\n== training 1x8000 with direct connections ({name}; the fast engine's form, "
        f"load average {loadavg()})")
    forms = ("blocked",) if blocked_products(xp) else ("plain",)
    rows = training_bench(xp, train, [(8000,)], [None], forms=forms, direct=True,
                          steps=10 if args.quick else 20, repeats=2 if args.quick else 3, sync=sync)
    print_training(rows)
    for r in rows:
        say(f"   GEMM bound {r['gemm_epoch_s_blas_threads']:.3f} s/epoch with BLAS's threads, "
            f"{r['gemm_epoch_s_one_blas_thread']:.3f} with one; fast engine / bound = {r['ratio_to_gemm']:.2f}; "
            f"products {r['products_ms']:.1f} ms, optimizer {r['optimizer_ms']:.1f} ms per step")
    if name == "cpu":
        peer = torch_peer(train, (8000,), direct=True, steps=10 if args.quick else 20,
                          repeats=2 if args.quick else 3)
        if "skipped" in peer:
            say(f"PyTorch CPU peer: skipped: {peer['skipped']}")
        else:
            say(f"PyTorch CPU peer (torch {peer['torch']}, {peer['threads']} threads): "
                f"{peer['epoch_s']:.3f} s/epoch ({peer['step_ms']:.2f} ms/step); "
                f"torch / made-np = {peer['epoch_s'] / rows[0]['epoch_s']:.2f}x   (target >= 3x)")
        for r in rows:
            r["torch_peer"] = peer
    return rows


def run_device(xp, name: str, train, test, args, sync) -> dict:
    quick = args.quick
    out = {}
    if args.only_8000:
        out["training"] = run_8000(xp, name, train, args, sync)
        return out
    say(f"\n== training ({name}; binarized MNIST, batch {BATCH}, Adam, {STEPS_PER_EPOCH} steps/epoch)")
    thread_options = [1, 2] if name == "cpu" and (os.cpu_count() or 1) >= 2 else [None]
    hiddens = [(500,), (500, 500)]
    forms = ("blocked", "plain", "bank", "reference") if blocked_products(xp) else ("plain", "bank", "reference")
    rows = training_bench(xp, train, hiddens, thread_options, forms=forms, steps=30 if quick else 100,
                          repeats=3 if quick else 7, sync=sync)
    print_training(rows)
    for r in rows:
        say(f"   {r['hidden']} {r['form']}, {r['threads']} thread(s): products {r['products_ms']:.3f} ms "
            f"(dense bound {r['gemm_ms']:.3f} ms), optimizer {r['optimizer_ms']:.3f} ms, mask multiply "
            f"{r['mask_multiply_ms']:.3f} ms, elementwise {r['elementwise_ms']:.3f} ms (head "
            f"{r['head_ms']:.3f} ms); CPU time {r['cpu_ms_per_step']:.3f} ms/step")
    if name == "cpu":
        peer = torch_peer(train, (500,), direct=False, steps=30 if quick else 100, repeats=3 if quick else 7)
        fast = min((r for r in rows if r["hidden"] == [500] and r["form"] == forms[0]), key=lambda r: r["epoch_s"])
        if "skipped" in peer:
            say(f"   PyTorch CPU peer, 1x500: skipped: {peer['skipped']}")
        else:
            say(f"   PyTorch CPU peer, 1x500 (torch {peer['torch']}, {peer['threads']} threads): "
                f"{peer['epoch_s']:.3f} s/epoch ({peer['step_ms']:.2f} ms/step); torch / made-np "
                f"({fast['form']}, {fast['threads']} threads) = {peer['epoch_s'] / fast['epoch_s']:.2f}x   (target >= 3x)")
        fast["torch_peer"] = peer
    single = {(tuple(r["hidden"]), r["threads"]): r for r in rows if r["form"] == forms[0]}
    for r in rows:
        one = single.get((tuple(r["hidden"]), r["threads"]))
        if r["form"] == "bank" and one is not None:
            r["bank_over_single_mask"] = r["epoch_s"] / one["epoch_s"]
            say(f"   {r['hidden']} bank of {BANK} masks / single mask ({one['form']}), {r['threads']} thread(s): "
                f"{r['bank_over_single_mask']:.2f}x   (target <= 1.15x)")
    out["training"] = rows
    if not quick:
        out["training"] = rows + run_8000(xp, name, train, args, sync)

    say(f"\n== sampling (100 samples, 1x500, D = {D})")
    s = sampling_bench(xp, n=100, naive_repeats=1 if quick else 2, fast_repeats=5 if quick else 20, sync=sync)
    say(f"naive {s['naive_s']:.3f} s   fast {s['fast_s'] * 1e3:.1f} ms   ratio {s['ratio']:.0f}x   "
        f"(same samples: {s['float32_samples_identical']})")
    out["sampling"] = s

    say(f"\n== evaluation (NLL of the {test.shape[0]} test images, 1x500)")
    e = evaluation_bench(xp, test, repeats=2 if quick else 3, sync=sync)
    say(f"single mask {e['single_mask_s']:.3f} s   ensemble of K = {e['ensemble_K']} "
        f"{e['ensemble_s']:.3f} s ({e['ensemble_s_per_mask']:.3f} s per mask)")
    out["evaluation"] = e
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (noisier numbers)")
    ap.add_argument("--data", type=Path, default=None, help="binarized_mnist.npz (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cpu.json",
                    help="JSON results file")
    ap.add_argument("--no-rss", action="store_true", help="skip the memory benchmark")
    ap.add_argument("--only-8000", action="store_true",
                    help="run only the 1x8000 (direct connections) training row and its PyTorch peer")
    args = ap.parse_args(argv)

    train, test, source = load_mnist(args.data)
    real = not source.startswith("random")
    info = {
        "python": platform.python_version(), "numpy": np.__version__, "blas": blas_info(),
        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "threads_env": {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                    "OPENBLAS_THREAD_TIMEOUT", "MADE_NP_THREADS",
                                                    "MADE_NP_FUSED") if k in os.environ},
        "default_cpu_threads": threads.default_cpu_threads(),
        "data": source, "quick": args.quick, "loadavg_start": loadavg(),
    }
    say(f"made-np benchmarks  numpy {info['numpy']} ({info['blas']}), {info['cpus']} CPUs, "
        f"load average {info['loadavg_start']}")
    say(f"environment {info['threads_env']}; elementwise threads by default: {info['default_cpu_threads']}")
    busy = info["loadavg_start"] and info["loadavg_start"][0] > 0.5 * (info["cpus"] or 1)
    if busy:
        say("warning: the machine is busy (load average above half the CPUs): timings are pessimistic "
            "and noisy, two-thread BLAS most of all")
    say(f"data: {source}")
    results = {"info": info, "cpu": run_device(np, "cpu", train, test, args, sync=lambda: None)}

    if not args.no_rss and not args.only_8000:
        say("\n== memory (peak RSS of a short training run with fit, in a subprocess; direct connections, "
            "as the recipe)")
        rows = [("memory", 500, 100 if args.quick else STEPS_PER_EPOCH, 600)]
        rows += [] if args.quick else [("memory_8000", 8000, 50, 1500)]
        for key, hidden, steps, target_mb in rows:
            r = rss_bench(source if real else None, steps, hidden=hidden)
            if "error" in r:
                say(f"1x{hidden}: failed: {r['error']}")
            else:
                say(f"1x{hidden}: peak RSS {r['peak_rss_mb']:.0f} MB ({r['train_steps']} steps + validation, "
                    f"{r['wall_s']:.1f} s wall)   target <= {target_mb} MB")
            results[key] = r

    say("\n== CUDA (CuPy)")
    try:
        cp = backend.get_xp("cuda")
    except backend.BackendError as exc:
        say(f"skipped: no CUDA GPU ({exc})")
        results["cuda"] = {"skipped": str(exc)}
    else:
        results["cuda"] = run_device(cp, "cuda", train, test, args, sync=lambda: backend.synchronize(cp))

    info["loadavg_end"] = loadavg()
    say(f"\nload average at the end {info['loadavg_end']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    say(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
