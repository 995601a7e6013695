"""Shared fixtures: small real disk images made by independent tools (sgdisk, mkfs, qemu-img).

Nothing here uses Shieldwright's own writers, so tests of our readers are graded by other programs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.tools import find_tool

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The window remembers its geometry, folders and recent recipes: no test (nor a process it starts) may read or
# write the user's own settings. Tests that look at the settings point XDG_CONFIG_HOME at their tmp dir.
os.environ["XDG_CONFIG_HOME"] = _CONFIG_HOME = tempfile.mkdtemp(prefix="shieldwright-test-config-")
atexit.register(shutil.rmtree, _CONFIG_HOME, True)

# A shell without job control starts background commands (`make test &`) with SIGINT ignored, and children
# inherit that: the tests that press Ctrl-C on a child process would then see it ignored.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

MiB = 1024 * 1024


def run(*cmd: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """Run a tool (found on PATH or in /usr/sbin), failing the test with its stderr if it fails."""
    argv = [find_tool(str(cmd[0])) or str(cmd[0])] + [str(c) for c in cmd[1:]]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass(frozen=True)
class PartSpec:
    size_mib: int
    typecode: str  # sgdisk short type code
    name: str
    fs: str | None  # "vfat" "ext4" "swap" "xfs-like" or None for no filesystem


#: ESP, XBOOTLDR, discoverable x86-64 root, swap: the shape of a template base image, small.
SMALL_LAYOUT = (
    PartSpec(16, "ef00", "ESP", "vfat"),
    PartSpec(8, "ea00", "XBOOTLDR", "ext4"),
    PartSpec(16, "8304", "root-x86-64", "ext4"),
    PartSpec(2, "8200", "swap", "swap"),
)


def _make_fs(fs: str, path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
    if fs == "vfat":
        run("mkfs.vfat", "-n", "ESP", path)
    elif fs == "ext4":
        run("mkfs.ext4", "-q", "-F", "-L", path.stem, path)
    elif fs == "swap":
        run("mkswap", path)
    else:
        raise ValueError(fs)


def make_gpt_image(path: Path, layout=SMALL_LAYOUT, disk_mib: int | None = None) -> Path:
    """A raw GPT disk: sgdisk lays out ``layout`` 1 MiB-aligned, each filesystem made by its mkfs."""
    disk_mib = disk_mib or sum(p.size_mib for p in layout) + 2
    with open(path, "wb") as f:
        f.truncate(disk_mib * MiB)
    args: list[str] = []
    for i, p in enumerate(layout, 1):
        args += ["-n", f"{i}:0:+{p.size_mib}M", "-t", f"{i}:{p.typecode}", "-c", f"{i}:{p.name}"]
    run("sgdisk", "-a", "2048", *args, path)
    start = 2048 * 512
    for i, p in enumerate(layout, 1):
        if p.fs:
            part = path.with_name(f"{path.name}.p{i}")
            _make_fs(p.fs, part, p.size_mib * MiB)
            run(
                "dd",
                f"if={part}",
                f"of={path}",
                "bs=1M",
                f"seek={start // MiB}",
                "conv=notrunc,sparse",
                "status=none",
            )
            part.unlink()
        start += p.size_mib * MiB
    return path


def sgdisk_partitions(path: Path) -> list[dict[str, object]]:
    """The partitions as ``sgdisk -p`` / ``sgdisk -i`` report them: the independent reference."""
    out = run("sgdisk", "-p", path).stdout
    parts = []
    in_table = False
    for line in out.splitlines():
        if line.strip().startswith("Number"):
            in_table = True
            continue
        if in_table and line.strip():
            number = int(line.split()[0])
            info = run("sgdisk", "-i", str(number), path).stdout
            fields = dict(
                (k.strip(), v.strip()) for k, v in (ln.split(":", 1) for ln in info.splitlines() if ":" in ln)
            )
            parts.append(
                {
                    "number": number,
                    "type_guid": fields["Partition GUID code"].split()[0].lower(),
                    "partition_guid": fields["Partition unique GUID"].lower(),
                    "first_lba": int(fields["First sector"].split()[0]),
                    "last_lba": int(fields["Last sector"].split()[0]),
                    "name": fields["Partition name"].strip("'"),
                }
            )
    return parts


def luks_format(path: Path, kind: str = "luks2", size: int = 20 * MiB) -> Path:
    """A real LUKS container made by cryptsetup in a plain file (no loop device, no root needed).

    A cheap pbkdf2 keeps it fast; the key is a throwaway file beside it.
    """
    require_tool("cryptsetup")
    with open(path, "wb") as f:
        f.truncate(size)
    key = path.with_name(path.name + ".key")
    key.write_bytes(b"not-a-secret")
    run("cryptsetup", "luksFormat", "--type", kind, "--batch-mode", "--pbkdf", "pbkdf2",
        "--pbkdf-force-iterations", "1000", "--key-file", key, path)  # fmt: skip
    return path


def qemu_convert(src: Path, dst: Path, fmt: str, *opts: str) -> Path:
    """Convert with qemu-img (``fmt`` is qemu's name: raw, vpc, vhdx, qcow2)."""
    extra = ["-o", ",".join(opts)] if opts else []
    run("qemu-img", "convert", "-f", "raw", "-O", fmt, *extra, src, dst)
    return dst


@pytest.fixture(scope="session")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 44 MiB raw GPT disk with ESP (FAT), XBOOTLDR (ext4), x86-64 root (ext4) and swap. Read-only!"""
    path = tmp_path_factory.mktemp("small") / "small.raw"
    make_gpt_image(path)
    path.chmod(0o444)
    return path


@pytest.fixture(scope="session")
def small_disk_formats(small_disk: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same disk as raw, fixed VHD, dynamic VHDX, fixed VHDX and qcow2, all converted by qemu-img."""
    d = tmp_path_factory.mktemp("formats")
    out = {"raw": small_disk}
    out["vhd"] = qemu_convert(small_disk, d / "small.vhd", "vpc", "subformat=fixed", "force_size=on")
    out["vhdx"] = qemu_convert(small_disk, d / "small.vhdx", "vhdx", "subformat=dynamic")
    out["vhdx-fixed"] = qemu_convert(small_disk, d / "small-fixed.vhdx", "vhdx", "subformat=fixed")
    out["qcow2"] = qemu_convert(small_disk, d / "small.qcow2", "qcow2")
    for p in out.values():
        os.chmod(p, 0o444)
    return out


def require_tool(name: str) -> str:
    """Path of an external tool the test needs; its absence is a setup bug, so fail loudly (never skip)."""
    found = find_tool(name)
    if not found:
        raise AssertionError(f"{name} is not installed; installer/apt-packages.txt must list its package")
    return found


@pytest.fixture(scope="session")
def demo_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo base image from ``shieldwright demo-image`` (kernel .deb cached under ~/.cache). Read-only!"""
    from app.template.demo import build_demo_image

    path = tmp_path_factory.mktemp("demo") / "demo.img"
    build_demo_image(path)
    path.chmod(0o444)
    return path
