"""Kernels, initrds and UKIs already inside a base image, found and read without mounting anything.

Where they live (UAPI Boot Loader Specification; Debian's kernel-install/initramfs-tools layouts):

* the XBOOTLDR partition (mounted at /boot): ``/<entry-token>/<version>/linux`` + ``initrd`` (BLS type #1),
  ``/EFI/Linux/*.efi`` (type #2 UKIs), or Debian-style ``vmlinuz-*``/``initrd.img-*`` at its top;
* the root partition's ``/boot`` directory (when /boot is not a partition of its own);
* the ESP: ``/EFI/Linux/*.efi`` UKIs, or type #1 entries when there is no XBOOTLDR.

ext2/3/4 is read with ``debugfs`` (read-only: no ``-w``), FAT with mtools (:mod:`app.disk.esp`). Files
are classified by name, the way boot loaders find them; the caller checks the contents (``inspect_kernel``
refuses anything that is not a bzImage). Symbolic links are skipped: Debian's ``/vmlinuz`` links point
at the real files, which are listed themselves. Encrypted and other filesystems are skipped.
"""

from __future__ import annotations

import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.disk.esp import list_esp, read_esp_file
from app.disk.image import DiskImage
from app.disk.model import DiskLayout, Partition, Role
from app.disk.partfile import partition_file
from app.errors import ShieldwrightError
from app.progress import CancelToken
from app.tools import run_tool

Kind = Literal["kernel", "initrd", "uki"]
EXT_FS = ("ext2", "ext3", "ext4")
#: How deep below the scanned directory we look (BLS type #1 entries are two levels down).
MAX_DEPTH = 4
MAX_ENTRIES = 5000
_ENV = {"DEBUGFS_PAGER": "__none__", "PAGER": "__none__"}


@dataclass(frozen=True)
class BootFile:
    partition_number: int
    path: str  # absolute inside that partition's filesystem, "/" separated
    kind: Kind
    size: int

    def to_dict(self) -> dict[str, object]:
        return {"partition": self.partition_number, "path": self.path, "kind": self.kind, "size": self.size}


def classify(path: str) -> Kind | None:
    """What a boot file is, by the names boot loaders and distributions use; None for anything else."""
    parts = path.lower().strip("/").split("/")
    name = parts[-1]
    if name.endswith(".efi"):
        return "uki" if len(parts) >= 3 and parts[-3:-1] == ["efi", "linux"] else None
    if name in ("linux", "vmlinuz", "bzimage") or name.startswith(("vmlinuz-", "bzimage-")):
        return "kernel"
    if name in ("initrd", "initramfs") or name.startswith(("initrd.img", "initrd-", "initramfs-")):
        return None if name.endswith((".bak", ".old-dkms")) else "initrd"
    return None


def _scan_roots(part: Partition) -> tuple[str, ...] | None:
    """Directories to search on ``part``, or None to skip it."""
    if part.role is Role.ESP and part.content == "fat":
        return ("/",)
    if part.role is Role.XBOOTLDR and part.content in (*EXT_FS, "fat"):
        return ("/",)
    if part.role is Role.ROOT and part.content in EXT_FS:
        return ("/boot",)
    return None


def list_boot_files(
    image: DiskImage, layout: DiskLayout, *, cancel: CancelToken | None = None
) -> list[BootFile]:
    """Every kernel, initrd and UKI on the image's ESP, XBOOTLDR and root partitions, by partition."""
    found: list[BootFile] = []
    for part in layout.partitions:
        roots = _scan_roots(part)
        if roots is None:
            continue
        files: Iterator[tuple[str, int]]
        if part.content == "fat":
            files = ((e.path, e.size) for e in list_esp(image, part, layout.sector_size) if not e.is_dir)
        else:
            files = _ext_files(image, part, layout.sector_size, roots, cancel)
        for path, size in files:
            kind = classify(path)
            under = any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)
            if kind and size and under:
                found.append(BootFile(part.number, path, kind, size))
    return found


def read_boot_file(image: DiskImage, layout: DiskLayout, boot_file: BootFile) -> bytes:
    """The contents of a file :func:`list_boot_files` returned."""
    part = next((p for p in layout.partitions if p.number == boot_file.partition_number), None)
    if part is None:
        raise ShieldwrightError(
            f"the image has no partition {boot_file.partition_number}", "list the files again"
        )
    if part.content == "fat":
        return read_esp_file(image, part, layout.sector_size, boot_file.path)
    if part.content not in EXT_FS:
        raise ShieldwrightError(f"partition {part.number} holds {part.content}, which cannot be read here",
                                "only ext2/3/4 and FAT partitions are read")  # fmt: skip
    with partition_file(image, part, layout.sector_size) as (path, offset), \
            tempfile.TemporaryDirectory(prefix="shieldwright-boot-") as tmp:  # fmt: skip
        out = Path(tmp) / "file"
        _debugfs(path, offset, f'dump "{_quote(boot_file.path)}" "{out}"')
        if not out.is_file():
            raise ShieldwrightError(
                f"cannot read {boot_file.path} from partition {part.number}",
                "the file may have been removed, or the filesystem is damaged (check it with e2fsck -n)",
            )
        data = out.read_bytes()
    if len(data) != boot_file.size:
        raise ShieldwrightError(f"{boot_file.path} on partition {part.number} changed size while reading",
                                "list the files again")  # fmt: skip
    return data


def _quote(path: str) -> str:
    if '"' in path or "\n" in path:
        raise ShieldwrightError(f"cannot read a file named {path!r}", "rename it")
    return path


def _debugfs(path: Path, offset: int, command: str) -> str:
    device = f"{path}?offset={offset}" if offset else str(path)
    return run_tool("debugfs", "-R", command, device, env=_ENV,
                    hint="the partition does not hold a readable ext2/3/4 filesystem")  # fmt: skip


def _ext_files(image: DiskImage, part: Partition, sector_size: int, roots: tuple[str, ...],
               cancel: CancelToken | None) -> Iterator[tuple[str, int]]:  # fmt: skip
    """(path, size) of the regular files below ``roots``, breadth first, bounded in depth and count."""
    out: list[tuple[str, int]] = []
    with partition_file(image, part, sector_size, cancel) as (path, offset):
        queue = [(r, 0) for r in roots]
        seen = 0
        while queue:
            directory, depth = queue.pop(0)
            if cancel is not None:
                cancel.check()
            listing = _debugfs(path, offset, f'ls -p "{_quote(directory)}"')
            for name, mode, size in _parse_ls(listing):
                seen += 1
                if seen > MAX_ENTRIES:
                    return iter(out)
                child = directory.rstrip("/") + "/" + name
                if stat.S_ISDIR(mode) and depth < MAX_DEPTH:
                    queue.append((child, depth + 1))
                elif stat.S_ISREG(mode):
                    out.append((child, size))
    return iter(out)


def _parse_ls(text: str) -> Iterator[tuple[str, int, int]]:
    """``ls -p`` lines ``/inode/mode/uid/gid/name/size/`` → (name, mode, size); "." and ".." left out."""
    for line in text.splitlines():
        if not (line.startswith("/") and line.endswith("/")):
            continue
        parts = line[1:-1].split("/")
        if len(parts) < 6:
            continue
        name = "/".join(parts[4:-1])
        try:
            mode = int(parts[1], 8)
            size = int(parts[-1]) if parts[-1] else 0
        except ValueError:
            continue
        if name in (".", ".."):
            continue
        yield name, mode, size
