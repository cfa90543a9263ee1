"""How the command line starts: `made-np` and `python -m made_np`, a group without its command,
and a data file that makes NumPy warn (the MADE authors' Python-2 .npz files)."""
import os
import shutil
import subprocess
import sys
import warnings

import pytest
from click.testing import CliRunner

from made_np.cli import cli
from test_data import binary_splits, write_py2_npz


def python_m(*args, timeout=60):
    """``python -m made_np ARGS`` in a fresh interpreter (same environment, so the same made_np)."""
    return subprocess.run([sys.executable, "-m", "made_np", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "100"})


@pytest.fixture(scope="module")
def helps():
    """``--help`` of the group and of ``data``, through a subprocess, as the reference."""
    out = {}
    for args in ((), ("data",)):
        r = python_m(*args, "--help")
        assert r.returncode == 0 and r.stderr == "", r.stderr
        out[args] = r.stdout
    return out


def test_python_m_made_np_help(helps):
    text = helps[()]
    assert text.startswith("Usage: made-np [OPTIONS] COMMAND [ARGS]...")
    for command in ("train", "evaluate", "sample", "density", "masks", "data"):
        assert f"\n  {command} " in text
    assert "Usage: made-np data [OPTIONS] COMMAND [ARGS]..." in helps[("data",)]


@pytest.mark.parametrize("args", [(), ("data",)], ids=["made-np", "made-np data"])
def test_a_group_without_its_command_prints_its_help_in_a_subprocess(args, helps):
    r = python_m(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout == helps[args] and r.stderr == ""


@pytest.mark.skipif(shutil.which("made-np") is None, reason="the made-np console script is not on PATH")
def test_the_console_script_without_a_command_prints_its_help(helps):
    r = subprocess.run(["made-np"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "COLUMNS": "100"})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.startswith("Usage: made-np [OPTIONS] COMMAND [ARGS]...") and "\n  density " in r.stdout


@pytest.mark.parametrize("args", [[], ["data"]], ids=["made-np", "made-np data"])
def test_a_group_without_its_command_prints_its_help_in_click_runner(args):
    """CliRunner in its default standalone mode, as the console script runs."""
    runner = CliRunner()
    result = runner.invoke(cli, args, prog_name="made-np")
    assert result.exit_code == 0 and result.exception is None, result.output
    assert result.output == runner.invoke(cli, [*args, "--help"], prog_name="made-np").output
    assert result.output.startswith(f"Usage: made-np {args[0] + ' ' if args else ''}[OPTIONS] COMMAND")


def test_an_unknown_command_is_still_a_one_line_error():
    result = CliRunner().invoke(cli, ["data", "nope"], prog_name="made-np")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: No such command 'nope'. (see 'made-np data --help')"]


# --------------------------------------------------------------------------- the Python-2 npz warning


PY2_WARNING = "created on Python 2"


def test_python2_npz_gives_no_warning_on_the_command_line(tmp_path):
    path = write_py2_npz(tmp_path / "py2.npz", binary_splits(dtype="float64"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner = CliRunner()
        info = runner.invoke(cli, ["data", "info", str(path)], catch_exceptions=False)
        train = runner.invoke(cli, ["train", "--dataset", str(path), "--epochs", "1", "--hidden", "8",
                                    "--out", str(tmp_path / "run"), "-q"], catch_exceptions=False)
        ev = runner.invoke(cli, ["evaluate", str(tmp_path / "run")], catch_exceptions=False)
    assert info.exit_code == 0 and "(20, 16)" in info.output, info.output
    assert train.exit_code == 0 and ev.exit_code == 0, train.output + ev.output
    for result in (info, train, ev):
        assert PY2_WARNING not in result.output
    assert not [w for w in caught if PY2_WARNING in str(w.message)], [str(w.message) for w in caught]
    # ... and nothing on a real standard error, where a user would see it
    r = python_m("data", "info", path)
    assert r.returncode == 0 and "(20, 16)" in r.stdout and r.stderr == "", r.stderr
