"""docs/cli.md's reference is the commands' own --help (tools/gen_cli_docs.py): never stale."""
import importlib.util
import re
from pathlib import Path

import click
import pytest

from made_np.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "tools" / "gen_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen():
    return load_generator()


def all_command_paths(group, prefix="made-np"):
    paths = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths += all_command_paths(command, f"{prefix} {name}")
        else:
            paths.append(f"{prefix} {name}")
    return paths


def test_docs_cli_md_reference_is_the_current_help(gen):
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    wanted = gen.splice(current, gen.render_reference())
    assert wanted == current, (
        "docs/cli.md's reference differs from the commands' --help: regenerate it with "
        "`python tools/gen_cli_docs.py` (from the repository root) and commit the result")


def test_reference_covers_every_command_and_does_not_depend_on_the_terminal(gen, monkeypatch):
    reference = gen.render_reference()
    headings = re.findall(r"^### `(.+)`$", reference, flags=re.M)
    assert headings == all_command_paths(cli)
    assert {"made-np density", "made-np data fetch", "made-np data info"} <= set(headings)
    for option in ("--threads", "--engine", "--lr-schedule", "--valid-masks"):
        assert option in reference
    assert max(len(line) for line in reference.splitlines() if not line.startswith("Generated")) <= gen.WIDTH
    monkeypatch.setenv("COLUMNS", "50")  # a narrow terminal changes nothing
    assert gen.render_reference() == reference


def test_a_stale_reference_is_caught(gen, tmp_path, monkeypatch, capsys):
    doc = tmp_path / "cli.md"
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    doc.write_text(text.replace("[default: 100]", "[default: 64]", 1), encoding="utf-8")
    monkeypatch.setattr(gen, "DOC", doc)
    assert gen.main(["--check"]) == 1
    assert "python tools/gen_cli_docs.py" in capsys.readouterr().err
    assert gen.main([]) == 0 and doc.read_text(encoding="utf-8") == text  # regenerated
    assert gen.main(["--check"]) == 0
    doc.write_text("no markers here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="markers"):
        gen.main(["--check"])
