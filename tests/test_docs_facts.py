"""README.md's numbers and claims agree with where they were measured and with ``made-np --help``,
and the public functions it names are documented.

A new user meets the README's tour and ``made-np --help`` first: a figure there that disagrees with
docs/experiments.md (where the runs are recorded) or with the other is a wrong answer to a question.
"""
import re
from pathlib import Path

from click.testing import CliRunner

from made_np.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_help_and_readme_give_one_time_for_the_default_run():
    help_text = " ".join(CliRunner().invoke(cli, ["--help"]).output.split())
    readme = " ".join(README.split("## What this is")[0].split())
    pattern = r"about (\d+) s on two idle CPU cores"
    in_readme = re.search(pattern, readme)
    in_help = re.search(pattern, help_text)
    assert in_readme and in_help, help_text
    assert in_help.group(1) == in_readme.group(1)


def test_the_mnist_tour_figure_is_the_one_recorded():
    """The tour's ``--hidden 500 --ordering random`` run said ~94.1 nats, the figure of an older recipe."""
    tour = re.search(r"made-np train --dataset binarized-mnist --hidden 500 --ordering random .*# ~?([\d.]+) nats",
                     README)
    recorded = re.search(r"`made-np train --dataset binarized-mnist --ordering random`\) gives ([\d.]+)",
                         " ".join((ROOT / "docs" / "experiments.md").read_text().split()))
    assert tour and recorded
    assert float(tour.group(1)) == round(float(recorded.group(1)), 2)


def test_the_mask_bank_table_says_how_it_was_measured():
    """experiments/masks_mnist.py trains without direct connections and with the output biases at 0
    (unlike today's recipe): the README's table says so."""
    script = (ROOT / "experiments" / "masks_mnist.py").read_text()
    assert '"--direct", action="store_true"' in script and 'output_bias="zero"' in script
    caption = " ".join(README.split("**Binarized MNIST, mask banks**")[1].split("| network |")[0].split())
    assert "without direct connections" in caption and "output biases at 0" in caption


def test_occlusion_mask_and_the_sample_grid_are_documented_public_api():
    """Both are reached by README's Python API section, with numpydoc docstrings whose examples hold."""
    import doctest

    from made_np import conditional, plots

    api = README.split("## Python API")[1].split("\n## ")[0]
    assert "from made_np.conditional import occlusion_mask" in api
    assert "from made_np.plots import plot_sample_grid" in api
    for fn in (conditional.occlusion_mask, plots.plot_sample_grid):
        for section in ("Parameters", "Returns", "Raises"):
            assert f"\n    {section}\n    ---" in fn.__doc__, (fn.__name__, section)
    assert "Returns" in plots.sample_grid_figure.__doc__ and "Raises" in plots.sample_grid_figure.__doc__
    finder = doctest.DocTestFinder()
    (examples,) = finder.find(conditional.occlusion_mask, globs={"occlusion_mask": conditional.occlusion_mask})
    assert examples.examples and doctest.DocTestRunner().run(examples).failed == 0


def test_the_docs_hold_no_control_characters():
    """A backslash escape read by a Python string (\\t of \\tanh, \\f of \\frac, \\a of \\approx)
    put control characters into docs/math.md's LaTeX."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        bad = [(i + 1, repr(ch)) for i, line in enumerate(text.split("\n")) for ch in line if ord(ch) < 32]
        assert not bad, f"{doc.name}: control characters at lines {bad[:5]}"
