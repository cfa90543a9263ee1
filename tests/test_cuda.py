"""The same code on CuPy (CUDA) and NumPy (CPU): the house rule that compute modules only
touch the array module ``xp`` handed out by made_np/backend.py.

* Static honesty (always runs): made_np/{layers,heads,model,optim,sampling}.py import
  neither NumPy nor CuPy (checked on the syntax tree and on the raw text).
* On a GPU (skipped with "CuPy and a CUDA GPU are needed" otherwise): forward logits, the
  mean NLL and every gradient, per-example and ensemble NLL, an optimiser step (CuPy's fused
  ``ElementwiseKernel`` against NumPy's reference) and samples from the same noise agree
  with NumPy in float64 to 1e-10.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import random_data, randomize_weights
from made_np import backend
from made_np.model import MADE, MADEConfig
from made_np.optim import make_optimizer
from made_np.sampling import sample_naive

COMPUTE_MODULES = ("layers", "heads", "model", "optim", "sampling")
PACKAGE = Path(__file__).resolve().parents[1] / "made_np"


def _cupy_or_reason():
    try:
        return backend.get_xp("cuda"), ""
    except backend.BackendError as exc:
        return None, str(exc)


CP, WHY = _cupy_or_reason()
needs_gpu = pytest.mark.skipif(CP is None, reason=f"CuPy and a CUDA GPU are needed ({WHY})")


# --------------------------------------------------------------------------- static honesty


def forbidden_imports(source: str, filename: str = "<src>") -> list:
    """``line: module`` for every import of NumPy or CuPy in ``source`` (syntax tree and raw text)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots = [(node.module or "").split(".")[0]]
        else:
            continue
        found += [f"{node.lineno}: {r}" for r in roots if r in ("numpy", "cupy")]
    found += [f"text: {m.group(0).strip()}" for m in re.finditer(r"^\s*(import numpy|from numpy)\b.*$", source, re.M)]
    return found


@pytest.mark.parametrize("name", COMPUTE_MODULES)
def test_compute_modules_do_not_import_numpy_or_cupy(name):
    path = PACKAGE / f"{name}.py"
    assert forbidden_imports(path.read_text(), str(path)) == []


def test_static_check_would_notice_an_import():
    """The check can fail: imports at top level, inside a function, or of a submodule are found."""
    src = "import os\nfrom numpy import linalg\ndef f():\n    import cupy as cp\n    import numpy.random\n"
    assert [f.split(":")[0] for f in forbidden_imports(src)] == ["2", "4", "5", "text", "text"]
    assert forbidden_imports('"""Uses numpy through xp; no import numpy here."""\nfrom . import backend\n') == []


# --------------------------------------------------------------------------- CuPy vs NumPy

CONFIGS = [
    MADEConfig(D=7, hidden=(16, 12), num_masks=1, ordering="random", direct=True, seed=1, dtype="float64"),
    MADEConfig(D=6, hidden=(20,), num_masks=3, ordering="random", activation="leaky_relu", seed=2, dtype="float64"),
    MADEConfig(D=5, hidden=(18, 9), classes=4, head="categorical", input_encoding="onehot", num_masks=2,
               direct=True, seed=3, dtype="float64"),
    MADEConfig(D=5, hidden=(11,), classes=3, head="categorical", input_encoding="scaled", seed=4, dtype="float64"),
]


def twins(cfg):
    cpu, gpu = MADE(cfg, np), MADE(cfg, CP)
    state = randomize_weights(cpu, cfg.seed)
    gpu.load_state_dict(state)
    return cpu, gpu


def close(a, b, tol=1e-10):
    np.testing.assert_allclose(backend.to_host(b), backend.to_host(a), rtol=tol, atol=tol)


@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.head}-{c.input_encoding}-K{c.num_masks}")
def test_forward_loss_gradients_and_nll_agree(cfg):
    cpu, gpu = twins(cfg)
    x = random_data(cfg, 32, 0)
    xg = CP.asarray(x)
    for index in range(max(cfg.num_masks, 1)):
        close(cpu.logits(x, mask=index), gpu.logits(xg, mask=index))
        close(cpu.loss_and_grad(x, index), gpu.loss_and_grad(xg, index))
        for name, a, b in zip(cpu.param_names, cpu.grads, gpu.grads):
            assert isinstance(b, CP.ndarray), name
            close(a, b)
        close(cpu.nll(x, batch_size=10, mask=index), gpu.nll(xg, batch_size=10, mask=index))
    if cfg.num_masks > 1:
        idx = list(range(cfg.num_masks))
        close(cpu.ensemble_nll(x, idx), gpu.ensemble_nll(xg, idx))


@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("name", ["adam", "adagrad", "sgd"])
def test_optimiser_step_agrees(name):
    cfg = CONFIGS[0]
    cpu, gpu = twins(cfg)
    x = random_data(cfg, 16, 1)
    o_cpu = make_optimizer(name, cpu.params, np, lr=0.01, weight_decay=1e-3, fused=False)
    o_gpu = make_optimizer(name, gpu.params, CP, lr=0.01, weight_decay=1e-3)
    for _ in range(3):
        cpu.loss_and_grad(x)
        gpu.loss_and_grad(CP.asarray(x))
        o_cpu.step(cpu.grads)
        o_gpu.step(gpu.grads)
    for a, b in zip(cpu.params, gpu.params):
        close(a, b)


@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.head}-{c.input_encoding}-K{c.num_masks}")
def test_samples_from_the_same_noise_agree(cfg):
    cpu, gpu = twins(cfg)
    a = sample_naive(cpu, 200, seed=5)
    b = sample_naive(gpu, 200, seed=5)
    assert isinstance(b, CP.ndarray)
    assert np.array_equal(a, backend.to_host(b))
