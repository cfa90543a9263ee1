"""docs/math.md stays true to the code, and the few facts it derives that no other test checks.

* Every section of docs/math.md ends with an ``Implemented in:`` line (backticked dotted
  Python names) and a ``Checked by:`` line (backticked ``tests/file.py::test_name``).
  Each dotted name must resolve by importing its longest importable module prefix and
  ``getattr``-ing the rest; each test must be a function defined at module level, or in
  a module-level class, of that file (found with ``ast``: test modules are not imported).
  A failure lists every missing name at once.
* The doc has its thirteen numbered sections.
* Facts derived in the doc: degrees outside ``[min of previous layer, D-1]`` give
  useless units (section 1); the forward pass is the formula of section 2; masked
  weights stay exactly 0.0 under SGD, Adam and Adagrad (section 3); averaging the logits
  of two orderings is not normalised while the mixture is (section 5); the efficient
  bias-corrected Adam is the textbook Adam (section 6); the threshold draw
  ``z > logit(u)`` is the draw ``u < sigmoid(z)`` (section 7); the completion weights
  ``w_k ∝ p_k(x_o)`` give the mixture's conditional and uniform weights do not (section 10).

Fast (well under a second), no network, no GPU.
"""
from __future__ import annotations

import ast
import importlib
import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from made_np.heads import make_head
from made_np.masks import draw_masks, hidden_mask, output_mask
from made_np.model import MADE, MADEConfig
from made_np.optim import SGD, Adagrad, Adam

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "math.md"

REQUIRED_SECTIONS = (
    "1. Masks and the autoregressive property",
    "2. The forward pass",
    "3. Gradients",
    "4. The losses: Bernoulli and categorical NLL",
    "5. The ensemble of masks",
    "6. Optimisers",
    "7. Ancestral sampling",
    "8. Sorted relabelling: every fixed mask is a staircase of blocks",
    "9. Context inputs: a conditional MADE",
    "10. Exact marginals and completions: observed-first masks",
    "11. Initial weights",
    "12. Training and evaluation: which mask, which rate, which number",
    "13. Real-valued data: Gaussian and mixture-of-Gaussians conditionals",
)
IMPLEMENTED = "Implemented in:"
CHECKED = "Checked by:"
DOTTED = re.compile(r"^made_np(\.[A-Za-z_]\w*)+$")
TEST_REF = re.compile(r"^(tests/[\w/]+\.py)((?:::[A-Za-z_]\w*)+)$")


# --------------------------------------------------------------------------- parsing and resolving


def reference_lines(text: str, label: str) -> list:
    """The backticked entries of every line that starts with ``label``, one list per line."""
    out = []
    for line in text.splitlines():
        if line.startswith(label):
            out.append(re.findall(r"`([^`]+)`", line[len(label):]))
    return out


def resolve(dotted: str) -> str | None:
    """None if ``dotted`` names an importable object, else why not.

    Imports the longest prefix that is a module (a prefix that does not exist as a module
    lets a shorter one be tried; a module that exists but fails to import is reported),
    checks that the module lies in the same ``made_np`` folder as the package itself (an
    editable install of another checkout can serve subpackages this one lacks), then
    follows the rest with ``getattr``.
    """
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        modname = ".".join(parts[:i])
        try:
            obj = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name and (modname == e.name or modname.startswith(e.name + ".")):
                continue  # this prefix is not a module: try a shorter one
            return f"{dotted}: importing {modname} failed: {e}"
        except ImportError as e:
            return f"{dotted}: importing {modname} failed: {e}"
        top = Path(importlib.import_module(parts[0]).__file__).resolve().parent
        where = Path(getattr(obj, "__file__", None) or "<none>").resolve()
        if top not in where.parents:  # e.g. found through the editable install of another checkout
            return f"{dotted}: module {modname} is not in this checkout's {parts[0]} ({where})"
        for j in range(i, len(parts)):
            if not hasattr(obj, parts[j]):
                return f"{dotted}: {'.'.join(parts[:j])} has no attribute {parts[j]!r}"
            obj = getattr(obj, parts[j])
        return None
    return f"{dotted}: no module of it can be imported"


def defined_tests(path: Path) -> set:
    """``name`` of module-level functions and ``Class::name`` of methods of module-level classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    funcs = (ast.FunctionDef, ast.AsyncFunctionDef)
    names = set()
    for node in tree.body:
        if isinstance(node, funcs):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(f"{node.name}::{f.name}" for f in node.body if isinstance(f, funcs))
    return names


def check_test_ref(ref: str, root: Path) -> str | None:
    """None if ``ref`` (``tests/x.py::name`` or ``tests/x.py::Class::name``) is defined, else why not.

    A bare ``name`` is also accepted when it is a method of a module-level class.
    """
    m = TEST_REF.match(ref)
    if not m:
        return f"{ref}: not of the form tests/<file>.py::<test_function>"
    path, name = root / m.group(1), m.group(2)[2:]
    if not path.is_file():
        return f"{ref}: no file {m.group(1)}"
    names = defined_tests(path)
    if name in names or ("::" not in name and any(n.endswith("::" + name) for n in names)):
        return None
    return f"{ref}: no function {name} in {m.group(1)}"


def missing_names(text: str, root: Path = ROOT) -> list:
    """Every problem with the names of the Implemented in / Checked by lines of ``text``."""
    problems = []
    for entries in reference_lines(text, IMPLEMENTED):
        for name in entries:
            if not DOTTED.match(name):
                problems.append(f"{name}: not a dotted made_np.* name")
            elif (why := resolve(name)) is not None:
                problems.append(why)
    for entries in reference_lines(text, CHECKED):
        for ref in entries:
            if (why := check_test_ref(ref, root)) is not None:
                problems.append(why)
    return problems


def sections(text: str) -> dict:
    """``{heading text: [lines]}`` for every ``## `` heading."""
    out, current = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out


# --------------------------------------------------------------------------- the doc


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_named_function_class_and_test_exists(doc):
    problems = missing_names(doc)
    assert not problems, "docs/math.md names things that do not exist:\n  " + "\n  ".join(problems)


def test_doc_has_every_section_and_each_ends_with_its_two_lines(doc):
    secs = sections(doc)
    missing = [h for h in REQUIRED_SECTIONS if h not in secs]
    assert not missing, f"docs/math.md lacks the sections {missing}"
    for heading, lines in secs.items():
        tail = [ln for ln in lines if ln.strip()][-2:]
        assert len(tail) == 2 and tail[0].startswith(IMPLEMENTED) and tail[1].startswith(CHECKED), \
            f"section {heading!r} does not end with an {IMPLEMENTED!r} line then a {CHECKED!r} line"
    implemented, checked = reference_lines(doc, IMPLEMENTED), reference_lines(doc, CHECKED)
    assert len(implemented) >= 8 and len(checked) == len(implemented)
    assert all(implemented) and all(checked), "an Implemented in / Checked by line names nothing"


def test_checker_reports_exactly_the_missing_names(tmp_path):
    """The parser and resolver, on a made-up doc and test file (names that do and do not exist)."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_fake.py").write_text(
        "def test_top():\n"
        "    def test_nested():\n"
        "        pass\n"
        "class TestGroup:\n"
        "    def test_method(self):\n"
        "        pass\n"
        "if True:\n"
        "    def test_conditional():\n"
        "        pass\n"
    )
    text = "\n".join([
        "## 1. A section",
        "Implemented in: `made_np.masks.hidden_mask`, `made_np.model.MADE.ensemble_nll`, "
        "`made_np.masks.no_such_function`, `made_np.no_such_module.thing`, "
        "`made_np.model.MADE.no_such_method`, `numpy.sum`",
        "",
        "Checked by: `tests/test_fake.py::test_top`, `tests/test_fake.py::test_method`, "
        "`tests/test_fake.py::TestGroup::test_method`, `tests/test_fake.py::test_nested`, "
        "`tests/test_fake.py::test_conditional`, `tests/no_such_file.py::test_x`, `test_fake.py::test_top`",
        "Implemented in: `made_np.layers.MaskedDense.backward`",
        "A line mentioning Implemented in: `made_np.not_a_reference` in the middle is ignored.",
    ])
    assert reference_lines(text, IMPLEMENTED)[1] == ["made_np.layers.MaskedDense.backward"]
    problems = missing_names(text, tmp_path)
    assert [p.split(":")[0] for p in problems] == [
        "made_np.masks.no_such_function",
        "made_np.no_such_module.thing",
        "made_np.model.MADE.no_such_method",
        "numpy.sum",
        "tests/test_fake.py",  # ::test_nested (not at module level)
        "tests/test_fake.py",  # ::test_conditional (not at module level)
        "tests/no_such_file.py",
        "test_fake.py",
    ], problems
    assert "has no attribute 'no_such_module'" in problems[1]
    assert "no function test_nested" in problems[4] and "no file" in problems[6]


# --------------------------------------------------------------------------- section 1


def test_degree_range_ends_are_the_useful_ones():
    """Below the previous layer's minimum a unit has no input; at degree D it reaches no output."""
    rng = np.random.default_rng(0)
    D = 7
    for _ in range(20):
        prev = rng.integers(2, D, size=9)  # a layer whose smallest degree is >= 2
        lo = prev.min()
        M = hidden_mask(prev, np.array([lo - 1, lo, D - 1]))
        assert not M[:, 0].any() and M[:, 1].any() and M[:, 2].all()
    ordering = rng.permutation(D) + 1
    V = output_mask(np.array([D, D - 1]), ordering)
    assert not V[0].any() and V[1].sum() == 1  # degree D-1 still predicts the last variable
    ms = draw_masks(D, (12, 10), seed=3, ordering="random")
    prev = ms.ordering
    for deg, M in zip(ms.degrees, ms.hidden):
        assert prev.min() <= deg.min() and deg.max() <= D - 1
        assert M.any(axis=0).all()  # every unit has an input
        prev = deg


def test_last_layer_units_reach_an_output_and_lower_ones_may_not():
    """Every unit of the last hidden layer feeds some output; a unit of a lower layer whose
    degree beats every degree of the next layer is a dead end (Algorithm 1 allows it)."""
    dead_ends = 0
    for seed in range(50):
        ms = draw_masks(6, (4, 4), seed=seed, ordering="random")
        assert ms.output.any(axis=1).all()  # output mask (H_2, D): every last-layer unit feeds one
        feeds = ms.hidden[1].any(axis=1)  # hidden[1] is (H_1, H_2): does unit k of layer 1 feed layer 2
        assert np.array_equal(feeds, ms.degrees[0] <= ms.degrees[1].max())
        dead_ends += int((~feeds).sum())
    assert dead_ends > 0


# --------------------------------------------------------------------------- section 2


def test_forward_pass_is_the_formula():
    """Z = relu(... relu(X (W1*M1) + b1) ...) (V*MV) + c + X (A*MA), masks rebuilt from eqs. 11-13,
    one-hot rows and categorical columns repeated per variable."""
    C, D = 3, 4
    cfg = MADEConfig(D=D, hidden=(6, 5), classes=C, head="categorical", input_encoding="onehot",
                     ordering="random", num_masks=2, direct=True, seed=5, dtype="float64")
    model = MADE(cfg)
    rng = np.random.default_rng(1)
    for p in model.params:
        p[...] = rng.normal(size=p.shape)
    x = rng.integers(0, C, size=(8, D))
    X = np.eye(C)[x].reshape(8, D * C)
    ms = model.mask(1)[0]
    degs = [ms.ordering, *ms.degrees]
    masks = [hidden_mask(a, b) for a, b in zip(degs, degs[1:])] + [output_mask(degs[-1], ms.ordering)]
    masks[0] = np.repeat(masks[0], C, axis=0)
    masks[-1] = np.repeat(masks[-1], C, axis=1)
    MA = np.repeat(np.repeat(output_mask(ms.ordering, ms.ordering), C, axis=0), C, axis=1)
    H = X
    for layer, M in zip(model.layers[:-1], masks):
        H = np.maximum(H @ (layer.W * M) + layer.b, 0)
    Z = H @ (model.layers[-1].W * masks[-1]) + model.layers[-1].b + X @ (model.direct.W * MA)
    np.testing.assert_allclose(model.logits(x, mask=1).reshape(8, D * C), Z, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- section 3


@pytest.mark.parametrize("make_opt", [
    lambda ps: SGD(ps, np, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda ps: Adam(ps, np, lr=0.01, weight_decay=0.01),
    lambda ps: Adagrad(ps, np, lr=0.1, weight_decay=0.01),
], ids=["sgd-momentum", "adam", "adagrad"])
def test_masked_weights_stay_exactly_zero_under_every_optimiser(make_opt):
    cfg = MADEConfig(D=6, hidden=(8, 7), ordering="random", direct=True, num_masks=1, seed=2, dtype="float64")
    model = MADE(cfg)
    layers = model.layers + [model.direct]
    before = [layer.W.copy() for layer in layers]
    dead = [M == 0 for M in model.mask(0)[1]]
    assert all(d.any() for d in dead) and all((w[d] == 0).all() for w, d in zip(before, dead))
    opt = make_opt(model.params)
    x = np.random.default_rng(0).integers(0, 2, size=(32, 6)).astype(np.uint8)
    for _ in range(5):
        model.loss_and_grad(x)
        assert all((layer.dW[d] == 0).all() for layer, d in zip(layers, dead))
        opt.step(model.grads)
        for layer, d in zip(layers, dead):
            assert (layer.W[d] == 0.0).all()
    assert all(not np.array_equal(layer.W[~d], w[~d]) for layer, d, w in zip(layers, dead, before))


# --------------------------------------------------------------------------- section 5


def all_binary(D):
    return np.array(list(itertools.product((0, 1), repeat=D)), dtype=np.uint8)


def test_averaged_logits_of_two_orderings_are_not_normalised():
    D = 3
    model = MADE(MADEConfig(D=D, hidden=(16,), ordering="random", num_masks=2, seed=1, dtype="float64"))
    rng = np.random.default_rng(4)
    for p in model.params:
        p[...] = 1.5 * rng.normal(size=p.shape)
    x = all_binary(D)
    logits, orderings = [], []
    for k in (0, 1):
        orderings.append(model.mask(k)[0].ordering.copy())
        logits.append(model.logits(x, mask=k))
        assert abs(np.exp(model.log_prob(x, mask=k)).sum() - 1) < 1e-12  # each mask is normalised
    assert not np.array_equal(*orderings)
    z = (logits[0] + logits[1]) / 2
    log_q = (x * z - np.logaddexp(0, z)).sum(axis=1)  # sum_d x_d z_d - softplus(z_d)
    assert abs(np.exp(log_q).sum() - 1) > 1e-3
    mixture = -model.ensemble_nll(x, [0, 1])
    assert abs(np.exp(mixture).sum() - 1) < 1e-12


# --------------------------------------------------------------------------- section 6


def test_efficient_adam_is_the_textbook_adam():
    """lr_t = lr sqrt(1-b2^t)/(1-b1^t), eps_t = eps sqrt(1-b2^t) give the textbook update;
    keeping eps unscaled does not."""
    lr, b1, b2, eps = 0.05, 0.8, 0.95, 1e-2  # a large eps, so that its correction shows
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(10, 5)) * np.array([1, 1e-1, 1e-2, 1e-3, 0])
    p_text, p_fast, p_plain = (np.linspace(-1, 1, 5) for _ in range(3))
    m_t, v_t = np.zeros(5), np.zeros(5)
    for t, g in enumerate(grads, start=1):
        m_t = b1 * m_t + (1 - b1) * g
        v_t = b2 * v_t + (1 - b2) * g * g
        p_text = p_text - lr * (m_t / (1 - b1**t)) / (np.sqrt(v_t / (1 - b2**t)) + eps)
        lr_t, eps_t = lr * np.sqrt(1 - b2**t) / (1 - b1**t), eps * np.sqrt(1 - b2**t)
        p_fast = p_fast - lr_t * m_t / (np.sqrt(v_t) + eps_t)
        p_plain = p_plain - lr_t * m_t / (np.sqrt(v_t) + eps)
    np.testing.assert_allclose(p_fast, p_text, rtol=0, atol=1e-13)
    assert np.max(np.abs(p_plain - p_text)) > 1e-4


# --------------------------------------------------------------------------- section 7


def test_threshold_draw_is_the_sigmoid_draw():
    rng = np.random.default_rng(0)
    u = rng.random((400, 50))
    logit_u = np.log(u) - np.log1p(-u)
    z = logit_u + rng.choice([-1, 1], size=u.shape) * rng.uniform(1e-6, 5, size=u.shape)
    z[:, :5] = rng.normal(scale=40, size=(400, 5))  # far tails too
    by_sigmoid = make_head("bernoulli", np).sample(z, u)  # 1[u < sigmoid(z)]
    np.testing.assert_array_equal(by_sigmoid, (z > logit_u).astype(np.uint8))
    assert 0.2 < by_sigmoid.mean() < 0.8


def test_completion_weights_are_the_posterior_not_uniform():
    """Section 10: sum_k w_k p_k(x_m | x_o) with w_k ∝ p_k(x_o) is p(x_m | x_o) of the mixture
    (enumerated); equal weights give another distribution."""
    from made_np.conditional import completion_masksets
    from made_np.density import log_density_table

    cfg = MADEConfig(D=4, hidden=(8,), num_masks=0, seed=4, dtype="float64")
    model = MADE(cfg)
    rng = np.random.default_rng(0)
    model.load_state_dict({n: rng.normal(0.0, 2.0, size=p.shape) for n, p in model.state_dict().items()})
    observed = np.array([True, False, True, False])  # x_0, x_2 observed; x_1, x_3 missing
    p_k = np.stack([np.exp(log_density_table(model, mask_indices=[ms]))  # (2, 2, 2, 2): p_k(x)
                    for ms in completion_masksets(model, observed, masks=3, seed=1)])
    mixture = p_k.mean(axis=0)
    at = (slice(None), 1, slice(None), 0)  # x_0 = 1, x_2 = 0; x_1 and x_3 free
    exact = mixture[at[1:]] / mixture[at[1:]].sum()  # p(x_1, x_3 | x_0, x_2) of the mixture
    joint_k = p_k[(slice(None), 1, slice(None), 0, slice(None))]  # (K, 2, 2): p_k(x_o, x_1, x_3)
    po = joint_k.sum(axis=(1, 2))  # p_k(x_o)
    cond_k = joint_k / po[:, None, None]
    w = po / po.sum()
    np.testing.assert_allclose(np.tensordot(w, cond_k, axes=1), exact, rtol=1e-12, atol=1e-15)
    assert w.max() - w.min() > 0.05  # the masks disagree about x_o ...
    uniform = cond_k.mean(axis=0)
    assert np.abs(uniform - exact).sum() > 0.01  # ... and equal weights miss the mixture's conditional
