"""The wheel holds the command line as made_np.cli (from the top-level cli/ folder), and it runs.

setup.cfg maps the package ``made_np.cli`` to the folder ``cli/`` (``package_dir``): a
mistake there ships a wheel without its command line, or with a stray top-level ``cli``
package that would shadow any other ``cli`` a user has. The build is offline
(``--no-build-isolation --no-index``): it needs setuptools and, before setuptools 70.1,
the ``wheel`` package in this environment (``pip install -e ".[dev]"`` brings it), and is
skipped, saying so, without them. About 5 s.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", "runs", ".hypothesis",
                                 "*.npz", "*.npy")


def _can_build_wheels() -> str | None:
    """None when setuptools can build a wheel here, else why not."""
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed"
    import setuptools

    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    if version < (70, 1) and importlib.util.find_spec("wheel") is None:
        return (f"setuptools {setuptools.__version__} needs the 'wheel' package to build a wheel offline "
                "(pip install wheel, or pip install -e '.[dev]')")
    return None


def _source_copy(dest: Path) -> Path:
    """The files a clone would hold (tracked, plus new files not ignored), as they are on disk; a
    plain copy when this is not a git checkout. Building from a copy leaves no build/ or egg-info in
    the working tree, and no stale build/lib can slip into the wheel."""
    files = None
    if shutil.which("git") and (ROOT / ".git").exists():
        r = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, timeout=60)
        if r.returncode == 0:
            files = [f for f in r.stdout.decode().split("\0") if f]
    if files is None:
        shutil.copytree(ROOT, dest, ignore=IGNORED, symlinks=True)
        return dest
    for f in files:
        src = ROOT / f
        if src.is_file() and not src.is_symlink():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


@pytest.fixture(scope="module")
def wheel_file(tmp_path_factory):
    why = _can_build_wheels()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("wheel")
    src = _source_copy(tmp / "src")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "-w", str(tmp / "dist")],
                       capture_output=True, text=True, timeout=300, cwd=tmp)
    assert r.returncode == 0, f"pip wheel failed:\n{r.stdout}\n{r.stderr}"
    (wheel,) = (tmp / "dist").glob("made_np-*.whl")
    return wheel


def test_wheel_holds_the_cli_as_made_np_cli(wheel_file):
    names = set(zipfile.ZipFile(wheel_file).namelist())
    cli_modules = {f"made_np/cli/{p.name}" for p in (ROOT / "cli").glob("*.py")}
    assert "made_np/cli/__init__.py" in cli_modules and len(cli_modules) >= 7
    fast_modules = {f"made_np/fast/{p.name}" for p in (ROOT / "made_np" / "fast").glob("*.py")}
    core_modules = {f"made_np/{p.name}" for p in (ROOT / "made_np").glob("*.py")}
    assert "made_np/__main__.py" in core_modules
    missing = (cli_modules | fast_modules | core_modules) - names
    assert not missing, f"missing from the wheel: {sorted(missing)}"
    strays = sorted(n for n in names if n.split("/")[0] in ("cli", "tests", "tools", "benchmarks", "experiments"))
    assert not strays, f"top-level folders that must not be packages: {strays}"
    dist_info = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert len(dist_info) == 1
    entry_points = zipfile.ZipFile(wheel_file).read(dist_info[0]).decode()
    assert "made-np = made_np.cli:main" in entry_points


def test_the_unpacked_wheel_runs_the_command_line(wheel_file, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel_file).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}  # the unpacked wheel comes first
    where = subprocess.run([sys.executable, "-c", "import made_np.cli as c; print(c.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve() == (site / "made_np" / "cli" / "__init__.py").resolve()
    r = subprocess.run([sys.executable, "-m", "made_np", "--help"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("Usage: made-np [OPTIONS] COMMAND"), r.stderr
