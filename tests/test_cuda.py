"""The same code on CuPy (CUDA) and NumPy (CPU): the house rule that compute modules only
touch the array module ``xp`` handed out by made_np/backend.py.

* Static honesty (always runs): made_np/{layers,heads,model,optim,sampling}.py import
  neither NumPy nor CuPy (checked on the syntax tree and on the raw text).
* The CUDA kernels' sources (always runs, :data:`made_np.fast.kernels.CUDA_KERNELS`): a C-like
  reading on the CPU finds every parameter used, every output assigned, nothing undeclared, no
  reserved name, balanced brackets and whole statements (and, where pycparser is importable, the
  body parses as C).
* On a GPU (skipped with "CuPy and a CUDA GPU are needed" otherwise): each kernel compiles and
  computes its update in float32 and float64; forward logits, the mean NLL and every gradient,
  per-example and ensemble NLL, optimiser steps (the fast optimisers on CuPy, with and without
  the fused kernels, against NumPy's reference) and samples from the same noise agree with NumPy
  in float64 to 1e-10.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import random_data, randomize_weights
from made_np import backend
from made_np.fast.kernels import CUDA_KERNELS, fused_kernels
from made_np.fast.optim import make_fast_optimizer
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


# --------------------------------------------------------------------------- the CUDA kernels' C, on the CPU

#: What a kernel body may call (CUDA's math functions) and the words of C it may use.
CUDA_FUNCTIONS = {"sqrt", "rsqrt", "exp", "expm1", "log", "log1p", "fabs", "fmax", "fmin", "pow", "tanh", "max", "min"}
C_WORDS = {"if", "else", "for", "while", "return", "const", "float", "double", "int", "bool", "true", "false"}


def _params(text: str) -> list:
    """``[(type, name), ...]`` of an ElementwiseKernel argument list ("T g, raw T x, float32 y")."""
    return [tuple(arg.split()[-2:]) for arg in text.split(",") if arg.strip()]


def kernel_problems(in_params: str, out_params: str, body: str) -> list:
    """What a C-like reading of a ``cupy.ElementwiseKernel(in_params, out_params, body)`` finds wrong:
    an argument that is not ``TYPE name``, a reserved or repeated name (CuPy keeps ``i``, ``n`` and
    names starting with ``_``), an argument the body never uses, an output it never assigns, a name
    it uses but nobody declares, a call of anything but CUDA's math functions, unbalanced brackets, a
    statement without its ``;``."""
    problems = []
    ins, outs = _params(in_params), _params(out_params)
    names = [n for _, n in ins + outs]
    for arg in (in_params + "," + out_params).split(","):
        if arg.strip() and len(arg.split()) not in (2, 3):
            problems.append(f"argument {arg.strip()!r} is not 'TYPE name'")
    problems += [f"argument {n!r} is reserved by CuPy" for n in names if n in ("i", "n") or n.startswith("_")]
    problems += [f"argument {n!r} is declared twice" for n in sorted({n for n in names if names.count(n) > 1})]
    code = re.sub(r"//[^\n]*|/\*.*?\*/", " ", body, flags=re.S)
    code = re.sub(r"\b\d+(\.\d*)?([eE][-+]?\d+)?[fF]?\b|\.\d+([eE][-+]?\d+)?[fF]?", " 0 ", code)  # numbers
    for open_, close_ in ("()", "{}", "[]"):
        if code.count(open_) != code.count(close_):
            problems.append(f"unbalanced {open_}{close_}")
    if code.strip() and not code.strip().endswith((";", "}")):
        problems.append("the last statement has no ';'")
    types = {t for t, _ in ins + outs}
    local = set(re.findall(r"\b(?:T|float|double|int|bool|%s)\s+([A-Za-z_]\w*)\s*=" % "|".join(map(re.escape, types)), code))
    calls = set(re.findall(r"\b([A-Za-z_]\w*)\s*\(", code))
    problems += [f"calls {f}(), not one of CUDA's math functions here" for f in sorted(calls - CUDA_FUNCTIONS - C_WORDS)]
    used = set(re.findall(r"\b[A-Za-z_]\w*\b", code)) - calls
    problems += [f"uses {u!r}, which is no argument or local" for u in sorted(used - set(names) - local - types - C_WORDS)]
    problems += [f"argument {n!r} is never used" for n in names if n not in used]
    assigned = set(re.findall(r"\b([A-Za-z_]\w*)\s*(?:[-+*/]?=)(?!=)", code))
    problems += [f"output {n!r} is never assigned" for _, n in outs if n not in assigned]
    return problems


@pytest.mark.parametrize("name", sorted(CUDA_KERNELS))
def test_each_cuda_kernel_reads_as_c_on_the_cpu(name):
    in_params, out_params, body = CUDA_KERNELS[name]
    assert kernel_problems(in_params, out_params, body) == []
    assert all(t == "T" for t, _ in _params(in_params) + _params(out_params))  # one dtype: float32 or float64


def test_the_kernel_reading_finds_planted_slips():
    """The check can fail: a renamed argument, a misspelling, a lost ';', a call of a host function."""
    args, outs, body = CUDA_KERNELS["made_np_adagrad"]
    assert kernel_problems(args.replace("T lr", "T rate"), outs, body) == [
        "uses 'lr', which is no argument or local", "argument 'rate' is never used"]
    assert kernel_problems(args, outs, body.replace("s += gg * gg;", "s += gg * g;").replace("wd * p", "wd * pp")) == [
        "uses 'pp', which is no argument or local"]
    assert kernel_problems(args, outs, body.rstrip().rstrip(";")) == ["the last statement has no ';'"]
    assert kernel_problems(args, outs, body.replace("sqrt(s + e)", "np.sqrt(s + e)")) == [
        "uses 'np', which is no argument or local"]
    assert kernel_problems(args, outs, body.replace("sqrt(s + e)", "rand(s + e)")) == [
        "calls rand(), not one of CUDA's math functions here"]
    assert kernel_problems(args, outs, body.replace("sqrt(s + e);", "sqrt(s + e;")) == ["unbalanced ()"]
    assert kernel_problems(args, outs.replace("T s", "T s, T _t"), body) == [
        "argument '_t' is reserved by CuPy", "argument '_t' is never used", "output '_t' is never assigned"]
    assert kernel_problems(args, outs, body.replace("s += gg * gg;", "")) == ["output 's' is never assigned"]


@pytest.mark.parametrize("name", sorted(CUDA_KERNELS))
def test_each_cuda_kernel_parses_as_c(name):
    """The body, inside a function of its arguments (T a float, then a double), is C that pycparser parses."""
    c_parser = pytest.importorskip("pycparser", reason="pycparser (a C parser) is not installed").c_parser
    in_params, out_params, body = CUDA_KERNELS[name]
    args = ", ".join(f"{t} {n}" for t, n in _params(in_params) + _params(out_params))
    for ctype in ("float", "double"):
        c_parser.CParser().parse(f"typedef {ctype} T;\nvoid {name}({args}) {{\n{body}\n}}\n")


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
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CUDA_KERNELS))
def test_each_cuda_kernel_compiles_and_computes_its_update(name, dtype):
    """Each kernel of CUDA_KERNELS compiles (NVRTC) for both dtypes and updates p and its state in
    place as the textbook formulas, computed on the host in float64."""
    rng = np.random.default_rng(0)
    p, g, a, b = (rng.standard_normal((37, 5)).astype(dtype) for _ in range(4))
    a, b = np.abs(a), np.abs(b)  # a second moment / a sum of squares is >= 0
    p64, g64 = p.astype(np.float64), g.astype(np.float64) + 1e-3 * p.astype(np.float64)
    m, v, s = 0.9 * a + 0.1 * g64, 0.999 * b + 0.001 * g64 ** 2, a + g64 ** 2
    dp, dg, da, db = (CP.array(x, copy=True) for x in (p, g, a, b))
    kernels = fused_kernels(CP, True)
    if name == "made_np_adam":
        kernels.adam(dp, dg, da, db, 0.9, 0.999, 1e-2, 1e-8, 1e-3)
        want = [p64 - 1e-2 * m / (np.sqrt(v) + 1e-8), m, v]
    else:
        kernels.adagrad(dp, dg, da, 1e-2, 1e-6, 1e-3)
        want = [p64 - 1e-2 * g64 / np.sqrt(s + 1e-6), s]
    tol = 1e-5 if dtype == "float32" else 1e-12
    for got, expected in zip((dp, da, db), want):
        assert got.dtype == dtype
        np.testing.assert_allclose(backend.to_host(got), expected, rtol=tol, atol=tol)


@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("fused", [True, False], ids=["fused kernels", "in place"])
@pytest.mark.parametrize("name", ["adam", "adagrad", "sgd"])
def test_optimiser_step_agrees(name, fused):
    """The fast optimisers as fit steps them on CuPy (the fused kernels by default) against the
    reference on NumPy. (It passed fused=False to the reference optimiser, a TypeError, and compared
    CuPy's reference optimiser: the kernels were never run.)"""
    cfg = CONFIGS[0]
    cpu, gpu = twins(cfg)
    x = random_data(cfg, 16, 1)
    o_cpu = make_optimizer(name, cpu.params, np, lr=0.01, weight_decay=1e-3)
    o_gpu = make_fast_optimizer(name, gpu.params, CP, lr=0.01, weight_decay=1e-3, fused=fused)
    assert (o_gpu.kernels is not None) == fused
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
