"""Small wrappers over the real cryptsetup, run on plain files (no device-mapper, no loop devices)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.conftest import require_tool


def cryptsetup(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run cryptsetup with a C locale; the caller checks the return code."""
    argv = [require_tool("cryptsetup"), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})


def luks_dump(path: Path) -> str:
    """``cryptsetup luksDump``'s stdout; fails the test on any exit code or stderr output (warnings)."""
    proc = cryptsetup("luksDump", path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", f"cryptsetup warned: {proc.stderr}"
    return proc.stdout


def test_passphrase(path: Path, passphrase: bytes | str, tmp: Path) -> int:
    """Exit code of ``cryptsetup open --test-passphrase`` with a key file: 0 accepted, 2 wrong."""
    key = tmp / "passphrase.key"
    key.write_bytes(passphrase.encode() if isinstance(passphrase, str) else passphrase)
    return cryptsetup("open", "--test-passphrase", "--key-file", key, path).returncode


test_passphrase.__test__ = False  # type: ignore[attr-defined]  # a helper, not a pytest test


def dump_volume_key(path: Path, passphrase: bytes | str, tmp: Path) -> bytes:
    """The volume key as cryptsetup recovers it with ``luksDump --dump-volume-key``."""
    key = tmp / "passphrase.key"
    key.write_bytes(passphrase.encode() if isinstance(passphrase, str) else passphrase)
    proc = cryptsetup("luksDump", "--dump-volume-key", "--batch-mode", "--key-file", key, path)
    assert proc.returncode == 0, proc.stderr
    block = proc.stdout.split("MK dump:", 1)[1]
    return bytes.fromhex("".join(re.findall(r"\b[0-9a-f]{2}\b", block)))


def dump_json(path: Path) -> dict:
    """The JSON metadata as cryptsetup reads it (``--dump-json-metadata``)."""
    proc = cryptsetup("luksDump", "--dump-json-metadata", path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
