"""The set-up script is idempotent and quiet once everything is installed (the suite runs after it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def setup(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "installer/setup.sh", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_setup_is_quiet_when_nothing_is_missing() -> None:
    # --check first: it never installs, so a stale environment fails here instead of being rebuilt mid-run.
    check = setup("--check")
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")
    proc = setup()
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_setup_check_reports_a_stale_venv(tmp_path) -> None:
    import shutil

    copy = tmp_path / "repo"
    (copy / "installer").mkdir(parents=True)
    for name in ("installer/setup.sh", "installer/apt-packages.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, copy / name)
    proc = subprocess.run(["bash", "installer/setup.sh", "--check"], cwd=copy, capture_output=True, text=True)
    assert proc.returncode == 1
    assert ".venv is missing" in proc.stdout


@pytest.mark.parametrize("source", ["app/luks/_xts.c", "app/catalog/_maphash.c"])
def test_a_changed_c_module_makes_the_venv_stale(tmp_path, source: str) -> None:
    """The .venv holds the compiled C modules: editing one must rebuild it like a new dependency."""
    import shutil

    copy = tmp_path / "repo"
    (copy / "installer").mkdir(parents=True)
    for name in ("installer/setup.sh", "installer/apt-packages.txt", "pyproject.toml", "setup.py",
                 "app/luks/_xts.c", "app/catalog/_maphash.c", ".venv/.shieldwright-stamp"):  # fmt: skip
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, copy / name)
    (copy / ".venv/bin").mkdir()
    (copy / ".venv/bin/python").symlink_to(ROOT / ".venv/bin/python")

    def check() -> subprocess.CompletedProcess[str]:
        command = ["bash", "installer/setup.sh", "--check"]
        return subprocess.run(command, cwd=copy, capture_output=True, text=True)

    assert (check().returncode, check().stdout) == (0, "")
    with open(copy / source, "a") as f:
        f.write("/* edited */\n")
    proc = check()
    assert proc.returncode == 1
    assert "older than pyproject.toml, setup.py or its C sources" in proc.stdout


def test_every_listed_package_is_installed() -> None:
    wanted = [
        line.strip()
        for line in (ROOT / "installer/apt-packages.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "qemu-utils" in wanted and "gdisk" in wanted
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *wanted], capture_output=True, text=True
    ).stdout
    installed = {ln.split()[0].split(":")[0] for ln in out.splitlines() if ln.split()[1:2] == ["ii"]}
    assert set(wanted) - installed == set()
