"""The import rules of docs/architecture.md, held by reading every module's imports (module-level
and inside functions alike, as ../shared/hooks/import-circles.py reads them).

1. No import circle among the modules of made_np.
2. The reference (the core math and its boundary) imports nothing from made_np/fast, the trainer,
   the files (data, checkpoints) or the command line: the speed forms are reached through
   made_np.registry by name.
3. made_np/fast imports the core, never the command line.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = {"made_np.backend", "made_np.checks", "made_np.masks", "made_np.layers", "made_np.heads", "made_np.model",
        "made_np.optim", "made_np.sampling", "made_np.conditional", "made_np.density", "made_np.registry"}
NOT_FROM_CORE = ("made_np.fast", "made_np.train", "made_np.data", "made_np.checkpoint", "made_np.cli",
                 "made_np.estimator", "made_np.plots")


def modules() -> dict:
    """``{module name: path}`` of made_np (made_np/fast included)."""
    out = {}
    for path in (ROOT / "made_np").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(name: str, path: Path, known: dict) -> set:
    """The made_np modules ``name`` imports (resolved to the modules that exist)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            prefix = ".".join(base + ([node.module] if node.module else []))
            targets = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and t != "made_np":
                found.add(t)
    return found


def graph() -> dict:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_no_import_circle_in_made_np():
    g = graph()

    def reaches(start, goal, seen):
        for nxt in g[start]:
            if nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen)):
                return True
        return False

    circles = sorted(m for m in g if reaches(m, m, set()))
    assert not circles, f"modules on an import circle: {circles}"


def test_the_core_imports_no_speed_form_trainer_file_or_command_line():
    g = graph()
    assert CORE <= set(g), sorted(CORE - set(g))
    bad = {m: sorted(t for t in g[m] if t.startswith(NOT_FROM_CORE)) for m in CORE}
    assert not any(bad.values()), {m: t for m, t in bad.items() if t}


def test_the_speed_forms_never_import_the_command_line():
    g = graph()
    bad = {m: sorted(t for t in deps if t.startswith("made_np.cli")) for m, deps in g.items() if m.startswith("made_np.fast")}
    assert not any(bad.values()), bad


def test_the_command_line_imports_only_the_public_api():
    """cli/ stands on ``made_np`` (the names of its ``_API``) and ``made_np.plots``, at module level and in
    functions, so that the library's modules can move their internals (and be cut) behind the names."""
    import made_np

    bad = []
    for path in sorted((ROOT / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                bad += [(path.name, a.name) for a in node.names if a.name.startswith("made_np")
                        and a.name not in ("made_np", "made_np.plots")]
            elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("made_np"):
                names = {a.name for a in node.names}
                if node.module != "made_np" or not names <= set(made_np._API) | {"plots", "__version__"}:
                    bad.append((path.name, f"from {node.module} import {', '.join(sorted(names))}"))
    assert not bad, bad


def test_the_rules_can_fail():
    """The reader sees a planted import of the trainer by the core (so the rules are not vacuous)."""
    known = modules()
    planted = ROOT / "made_np" / "_planted_for_test.py"
    try:
        planted.write_text("def f():\n    from .train import fit\n    from .fast import engine\n")
        assert {"made_np.train", "made_np.fast"} <= imports("made_np._planted_for_test", planted, {**known, "made_np._planted_for_test": planted})
    finally:
        planted.unlink()
