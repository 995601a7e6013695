"""``make dist``: the sdist and, built from it, the wheel, both into dist/ (PEP 517, no extra tool).

What pypa/build does, in a few lines: a private build environment (build/dist-env) with the
``[build-system] requires`` of pyproject.toml, the sdist from the source tree, then the wheel from the
unpacked sdist, which proves the sdist is complete. setup.py marks the C extension (app/luks/_xts.c)
optional, so a wheel without it would build quietly; here that is an error, as is a missing entry point.

    .venv/bin/python installer/dist.py [--out dist]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The interpreter of the build environment: Debian's, the one the wheel's ABI tag is for (cp311).
BASE_PYTHON = os.environ.get("SHIELDWRIGHT_BUILD_PYTHON", "/usr/bin/python3")


def build_env(base: Path) -> Path:
    """build/dist-env with the build-system requirements; rebuilt when those change. Its python."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    stamp_text = json.dumps([BASE_PYTHON, requires])
    python = base / "bin" / "python"
    stamp = base / ".requires"
    if python.exists() and stamp.exists() and stamp.read_text() == stamp_text:
        return python
    shutil.rmtree(base, ignore_errors=True)
    subprocess.run([BASE_PYTHON, "-m", "venv", str(base)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *requires, "wheel"], check=True)
    stamp.write_text(stamp_text)
    return python


def _hook(python: Path, cwd: Path, hook: str, out: Path) -> str:
    """Run a setuptools PEP 517 hook in ``cwd``; the file name it returns."""
    code = f"import sys; from setuptools import build_meta as b; print(b.{hook}(sys.argv[1]))"
    result = subprocess.run([str(python), "-c", code, str(out)], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise SystemExit(f"dist: {hook} failed in {cwd}:\n{tail}")
    return result.stdout.strip().splitlines()[-1]


def check_wheel(wheel: Path, c_sources: list[str]) -> None:
    """The wheel holds a compiled module for each C source of the sdist (app/luks/_xts.c, ...), the
    packages and the ``shieldwright`` entry point."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        scripts = zf.read(entry).decode() if entry else ""
    problems = []
    for source in c_sources:
        stem = source.removesuffix(".c")
        if not any(n.startswith(stem + ".") and n.endswith(".so") for n in names):
            problems.append(f"no {stem}*.so: {source} did not compile (is libssl-dev installed?)")
    for needed in ("app/__main__.py", "app/cli.py", "wizard_pages/__init__.py"):
        if needed not in names:
            problems.append(f"{needed} is missing")
    if "shieldwright = app.__main__:main" not in scripts:
        problems.append("the shieldwright console script is missing")
    if problems:
        raise SystemExit(f"dist: {wheel.name}: " + "; ".join(problems))


def check_sdist(sdist: Path) -> list[str]:
    """The sdist holds the build files and every C source of the tree; those sources."""
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    c_sources = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "app").rglob("*.c"))
    missing = [n for n in ("setup.py", "pyproject.toml", "app/cli.py", *c_sources) if n not in names]
    if missing:
        raise SystemExit(f"dist: {sdist.name} lacks {', '.join(missing)}")
    return c_sources


def build(out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    python = build_env(ROOT / "build" / "dist-env")
    with tempfile.TemporaryDirectory(prefix="dist.", dir=ROOT / "build") as tmp_name:
        tmp = Path(tmp_name)
        sdist = tmp / _hook(python, ROOT, "build_sdist", tmp)
        c_sources = check_sdist(sdist)
        with tarfile.open(sdist) as tf:
            tf.extractall(tmp / "src", filter="data")
        (unpacked,) = (tmp / "src").iterdir()
        wheel = tmp / _hook(python, unpacked, "build_wheel", tmp)
        check_wheel(wheel, c_sources)
        results = []
        for made in (sdist, wheel):
            target = out / made.name
            shutil.move(made, target)
            results.append(target)
    return results[0], results[1]


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description="Build the sdist and the wheel into a directory.")
    cli.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory (default: dist/)")
    args = cli.parse_args(argv)
    for path in build(args.out.resolve()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {digest[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
