"""Long runs of the real command line on the real data sets: ``python -m pytest -m slow``.

Deselected by default (``setup.cfg``: ``-m "not slow"``). Each test states the range its
figure must fall in; the ranges are wide enough for another BLAS or CPU (the runs are
seeded) and narrow enough to catch a training recipe that got worse. The data files of
binarized MNIST and the 2-D table are looked for in ``../shared/data`` beside the
repository; the tests that need them skip, naming the file, without them.

Measured on the project's 2-core machine (busy with other jobs): digits 10 s, binarized MNIST
15-25 s, 2-D 45-60 s (training, the 32-mask evaluation and density table, and 2 x 100,000 samples).
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from made_np.cli import cli
from test_cli_figures import figures  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MNIST = SHARED / "binarized_mnist.npz"
TABLE = SHARED / "distribution.npy"
RESULT_LINE = re.compile(r"^test NLL, (mask 0|ensemble of \d+ masks) +: ([\d.]+) ± ([\d.]+) nats.*$", re.M)


def made_np(*args, cwd, timeout=600):
    """``made-np ARGS`` as a user runs it (a fresh ``python -m made_np``)."""
    r = subprocess.run([sys.executable, "-m", "made_np", *map(str, args)], cwd=cwd, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"made-np {' '.join(map(str, args))} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def result_lines(output: str) -> dict:
    """``{"mask 0": (line, nll, stderr), ...}`` of the test-NLL lines of train or evaluate."""
    return {m.group(1): (m.group(0), float(m.group(2)), float(m.group(3))) for m in RESULT_LINE.finditer(output)}


def test_readme_digits_default_run(tmp_path):
    """README: `made-np train` (digits, 1x500, direct connections, cosine Adam 2e-3 with early
    stopping) trains a bank of 16 masks and a fresh mask per minibatch, keeps the bank (the lower
    validation NLL) and gives 16.354 ± 0.272 test nats for its ensemble; `made-np evaluate` on the
    run prints the same figures."""
    out = made_np("train", "--out", tmp_path / "digits", cwd=tmp_path)
    assert "kept bank16" in out, out
    trained = result_lines(out.split("kept bank16")[0].rsplit("valid NLL (masks)", 1)[-1])  # the kept run's lines
    assert list(trained) == ["mask 0", "ensemble of 16 masks"], out
    _, nll, stderr = trained["ensemble of 16 masks"]
    assert 16.2 <= nll <= 16.8, f"digits default run: test NLL {nll}, expected 16.2..16.8 (README: 16.354)"
    assert 0.2 <= stderr <= 0.3
    assert re.search(r"^epoch +1 +train NLL", out, re.M)
    evaluated = made_np("evaluate", tmp_path / "digits", cwd=tmp_path)
    for key in trained:  # the same lines, digit for digit
        assert result_lines(evaluated)[key][0] == trained[key][0]
    results = json.loads((tmp_path / "digits" / "results.json").read_text())
    assert f"{results['ensemble']['nll']:.3f}" == f"{nll:.3f}"


@pytest.mark.skipif(not MNIST.is_file(), reason=f"binarized MNIST is needed: {MNIST} is absent")
def test_binarized_mnist_short_run(tmp_path):
    """1x500 with direct connections, random ordering, 3 epochs (cosine over 3): about 95.2 test nats
    (97.5 when the output biases started at 0); evaluate agrees."""
    out = made_np("train", "--dataset", "binarized-mnist", "--dataset-path", MNIST, "--hidden", 500,
                  "--ordering", "random", "--epochs", 3, "--out", tmp_path / "mnist", cwd=tmp_path)
    assert "D = 784" in out and "50000/10000/10000" in out
    line, nll, _ = result_lines(out)["mask 0"]
    assert 93.5 <= nll <= 97.0, f"3 epochs on binarized MNIST: test NLL {nll}, expected 93.5..97 (seen 95.24)"
    rows = (tmp_path / "mnist" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 4  # header and 3 epochs
    evaluated = made_np("evaluate", tmp_path / "mnist", cwd=tmp_path)
    assert result_lines(evaluated)["mask 0"][0] == line


@pytest.mark.skipif(not TABLE.is_file(), reason=f"the 2-D table is needed: {TABLE} is absent")
def test_2d_short_run_density_and_figures(tmp_path, figures):  # noqa: F811
    """The 2d defaults (2x100, scaled inputs, 32 masks) for 3 epochs: KL below 0.05 nats (0.032 seen;
    0.016 after the full 50), and samples.png / density.png drawn in the table's orientation."""
    runner = CliRunner()
    run = tmp_path / "2d"
    r = runner.invoke(cli, ["train", "--dataset", "2d", "--dataset-path", str(TABLE), "--epochs", "3",
                            "--out", str(run), "-q"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["density", str(run), "--out", str(tmp_path / "density.png")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    entropy = float(re.search(r"entropy of the true table : ([\d.]+)", r.output).group(1))
    kl = float(re.search(r"KL\(p_true \|\| p_model\) +: ([\d.]+)", r.output).group(1))
    table_nll = float(re.search(r"test NLL \(exact table\) +: ([\d.]+)", r.output).group(1))
    assert entropy == pytest.approx(10.5198, abs=1e-4)
    assert 0 < kl < 0.05 and entropy - 0.05 < table_nll < entropy + 0.1, r.output

    p = np.load(TABLE).astype(float)
    p /= p.sum()
    (counts,) = [a["images"][0][0] for a in figures["samples.png"] if a["images"]]
    assert counts.shape == (200, 200) and counts.sum() == 100_000

    def corr(a, b):
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    # the histogram of the samples is the table's picture, not its transpose (100,000 exact samples
    # of p reach 0.53 against p and 0.19 against p.T; the 3-epoch model's 0.35 and 0.16)
    assert corr(counts, p) > 0.25 and corr(counts, p) > corr(counts, p.T) + 0.1
    panels = [a for a in figures["density.png"] if a["images"]]
    assert len(panels) == 4
    for a in panels:
        assert corr(a["images"][0][0], p) > corr(a["images"][0][0], p.T), a["title"]
