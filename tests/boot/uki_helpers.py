"""Shared inputs for the UKI tests, and the independent tools grading them: objdump, objcopy, systemd-measure.

The Debian cloud kernel and the demo busybox initrd are made once per test process (functools.cache) and
shared by every module, because extracting the kernel .deb takes a second or two.
"""

from __future__ import annotations

import atexit
import functools
import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from platformdirs import user_cache_path

from app.boot.uki import HOST_STUB, UkiInputs, build_uki
from app.signing.keys import load_signer
from app.signing.signer import KeySigner
from app.template.demo import KernelFiles, build_initrd, extract_kernel, fetch_kernel_deb
from tests.conftest import require_tool, run

SNAKEOIL_CERT = Path("/usr/share/ovmf/PkKek-1-snakeoil.pem")
SNAKEOIL_KEY = Path("/usr/share/ovmf/PkKek-1-snakeoil.key")
SYSTEMD_MEASURE = Path("/lib/systemd/systemd-measure")
CMDLINE = "console=ttyS0 panic=-1 shieldwright.test=poweroff"
OS_RELEASE = 'ID=shieldwright-test\nPRETTY_NAME="Shieldwright Test 1"\n'


def scratch_dir(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, d, True)
    return d


@functools.cache
def kernel_files() -> KernelFiles:
    deb = fetch_kernel_deb(user_cache_path("shieldwright") / "debs")
    return extract_kernel(deb, scratch_dir("sw-kernel-"))


@functools.cache
def kernel() -> bytes:
    return kernel_files().vmlinuz.read_bytes()


@functools.cache
def initrd() -> bytes:
    return build_initrd(kernel_files())


@functools.cache
def stub() -> bytes:
    return HOST_STUB.read_bytes()


@functools.cache
def snakeoil() -> KeySigner:
    return load_signer(SNAKEOIL_CERT, SNAKEOIL_KEY, b"snakeoil")


def inputs(**overrides: object) -> UkiInputs:
    base = dict(linux=kernel(), initrds=[initrd()], cmdline=CMDLINE, os_release=OS_RELEASE)
    return UkiInputs(**{**base, **overrides})  # type: ignore[arg-type]


@functools.cache
def basic_uki() -> bytes:
    """Kernel + busybox initrd + command line + os-release on the host stub, unsigned."""
    return build_uki(inputs())


@functools.cache
def signed_uki() -> bytes:
    return build_uki(inputs(), signer=snakeoil())


# --- independent tools ---------------------------------------------------------------------------------


def objdump_sections(path: Path) -> dict[str, dict[str, int]]:
    """``objdump -h``: name → size, vma, file offset (hex columns parsed)."""
    require_tool("objdump")
    out = run("objdump", "-h", path).stdout
    rows = re.findall(r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", out, re.M)
    return {name: {"size": int(size, 16), "vma": int(vma, 16), "offset": int(off, 16)}
            for name, size, vma, off in rows}  # fmt: skip


def objcopy_section(path: Path, name: str, dst: Path) -> Path:
    """The section's bytes as objcopy extracts them (its size is what objdump reports)."""
    require_tool("objcopy")
    run("objcopy", "-O", "binary", f"--only-section={name}", path, dst)
    return dst


def systemd_measure(
    sections: dict[str, Path], banks: Sequence[str], phases: Sequence[str]
) -> dict[str, dict[str, str]]:
    """``systemd-measure calculate --json=short`` → {bank: {phase path: hex}}; "" is ``--phase=:``."""
    assert SYSTEMD_MEASURE.exists(), "systemd-measure is missing (package systemd)"
    args = [f"--{name.lstrip('.')}={path}" for name, path in sections.items()]
    args += [f"--bank={b}" for b in banks]
    args += [f"--phase={p or ':'}" for p in phases]
    out = run(SYSTEMD_MEASURE, "calculate", *args, "--json=short").stdout
    result: dict[str, dict[str, str]] = {}
    for bank, entries in json.loads(out).items():
        result[bank] = {e.get("phase", ""): e["hash"] for e in entries}
        assert all(e["pcr"] == 11 for e in entries)
    return result
