"""Our newc writer, read back by GNU cpio (the independent reader)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from app.boot.cpio import CpioWriter
from tests.conftest import require_tool


def test_gnu_cpio_lists_every_entry_with_its_type_and_owner(tmp_path: Path) -> None:
    w = CpioWriter(mtime=1704067200)
    w.directory("bin")
    w.file("bin/hello", b"#!/bin/sh\necho hi\n", 0o755)
    w.symlink("bin/sh", "hello")
    w.device("console", 0o600, 5, 1)
    w.file("odd-length", b"abc", 0o644)  # exercises the 4-byte padding
    archive = tmp_path / "a.cpio"
    archive.write_bytes(w.finish())
    listing = subprocess.run(
        [require_tool("cpio"), "-itv", "--quiet", "-F", str(archive)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    by_name = {line.split()[-1] if "->" not in line else line.split()[-3]: line for line in listing}
    assert set(by_name) == {"bin", "bin/hello", "bin/sh", "console", "odd-length"}
    assert by_name["bin"].startswith("drwxr-xr-x")
    assert by_name["bin/hello"].startswith("-rwxr-xr-x")
    assert by_name["bin/sh"].startswith("lrwxrwxrwx") and by_name["bin/sh"].endswith("-> hello")
    assert by_name["console"].startswith("crw-------")
    assert all(" root " in line for line in listing)


def test_gnu_cpio_extracts_file_contents(tmp_path: Path) -> None:
    w = CpioWriter()
    w.file("a", b"x" * 5, 0o644)
    w.file("b", b"second", 0o600)
    (tmp_path / "a.cpio").write_bytes(w.finish())
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        [require_tool("cpio"), "-id", "--quiet", "-F", str(tmp_path / "a.cpio")], cwd=out, check=True
    )
    assert (out / "a").read_bytes() == b"xxxxx" and (out / "b").read_bytes() == b"second"
