"""The set-up script is idempotent and quiet once everything is installed (the suite runs after it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_setup_is_quiet_when_nothing_is_missing() -> None:
    proc = subprocess.run(["bash", "installer/setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""


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
