"""``make dist``: the sdist and the wheel built from it (installer/dist.py), installed into a clean venv."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from app import __version__

ROOT = Path(__file__).resolve().parents[2]
#: Debian's interpreter: what the wheel is built for and what a user's venv would use.
SYSTEM_PYTHON = "/usr/bin/python3"


def c_sources() -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "app").rglob("*.c"))


def clean_env() -> dict[str, str]:
    """The environment without this test run's Python settings (PYTHONPATH, the .venv on PATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    return env


def test_make_targets_exist() -> None:
    out = subprocess.run(["make", "-n", "dist", "deb"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "installer/dist.py" in out.stdout
    assert "installer/deb/build.py" in out.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, str(ROOT / "installer" / "dist.py"), "--out", str(out)],
        cwd=ROOT,
        check=True,
        timeout=900,
    )
    (sdist,) = out.glob("shieldwright-*.tar.gz")
    (wheel,) = out.glob("shieldwright-*.whl")
    return sdist, wheel


@pytest.mark.slow
def test_sdist_holds_the_sources(dists: tuple[Path, Path]) -> None:
    sdist, _ = dists
    assert sdist.name == f"shieldwright-{__version__}.tar.gz"
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert c_sources(), "app/luks/_xts.c is gone?"
    for needed in ["pyproject.toml", "setup.py", "app/__main__.py", "app/cli.py", *c_sources()]:
        assert needed in names, needed
    # Every module of the packages is in it.
    for py in (ROOT / "app").rglob("*.py"):
        assert py.relative_to(ROOT).as_posix() in names, py


@pytest.mark.slow
def test_wheel_holds_the_compiled_extensions(dists: tuple[Path, Path]) -> None:
    _, wheel = dists
    assert re.fullmatch(rf"shieldwright-{re.escape(__version__)}-(cp3\d+)-\1-linux_x86_64\.whl", wheel.name)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = zf.read(f"shieldwright-{__version__}.dist-info/entry_points.txt").decode()
    for source in c_sources():
        stem = source.removesuffix(".c")
        assert any(n.startswith(stem + ".cpython-3") and n.endswith("-linux-gnu.so") for n in names), source
    assert "shieldwright = app.__main__:main" in entry_points
    assert "wizard_pages/__init__.py" in names


@pytest.mark.slow
def test_wheel_installs_into_a_clean_venv_and_runs(
    dists: tuple[Path, Path], tmp_path: Path, small_disk: Path
) -> None:
    _, wheel = dists
    venv = tmp_path / "venv"
    env = clean_env()
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, env=env, timeout=300)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        env=env,
        timeout=1200,
    )
    # Run from an empty directory, so nothing of the source tree can be imported by accident.
    work = tmp_path / "work"
    work.mkdir()

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)

    version = run(str(venv / "bin" / "shieldwright"), "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"shieldwright {__version__}"

    where = run(
        str(venv / "bin" / "python"),
        "-c",
        "import app, app.luks._xts, app.catalog._maphash; print(app.__file__)",
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(venv)), where.stdout

    inspect = run(str(venv / "bin" / "shieldwright"), "inspect", "--json", str(small_disk))
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["partitions"], inspect.stdout
