"""Pair the kernels found in a base image with their initrds, by version (Qt-free, no I/O).

``list_boot_files`` reports kernels and initrds separately; an image may hold several kernel versions.
Two layouts are recognised:

- versioned names in one directory (Debian/Fedora ``/boot``): ``vmlinuz-6.1.0-28-cloud-amd64`` with
  ``initrd.img-6.1.0-28-cloud-amd64``, ``initramfs-6.8.0.img``, ``initrd-6.8.0``;
- the kernel-install / Boot Loader Specification layout on an XBOOTLDR or ESP:
  ``/<entry-token>/<version>/linux`` with ``/<entry-token>/<version>/initrd*``.

Initrds whose names carry no version (``initrd``, ``initrd.img``) pair with the kernels in the same
directory. Microcode initrds (``intel-ucode.img``, ``amd-ucode.img``, ``early_ucode.cpio``) in the same
directory go first, as boot loaders load them first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

_KERNEL_PREFIXES = ("vmlinuz", "vmlinux", "bzimage", "linux", "kernel")
_INITRD_RE = re.compile(
    r"^(?:initrd(?:\.img)?|initramfs)(?:[-_](?P<version>.+?))?(?:\.img|\.gz|\.zst|\.xz)?$"
)
_UCODE_RE = re.compile(r"(?:^|[-_])(?:intel|amd)[-_]ucode|early[-_]ucode|microcode", re.IGNORECASE)


class _BootFile(Protocol):
    @property
    def partition_number(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def kind(self) -> str: ...


F = TypeVar("F", bound=_BootFile)


@dataclass
class KernelEntry(Generic[F]):
    """One kernel with the initrds that belong to it (microcode first), and its version if known."""

    kernel: F
    version: str | None
    initrds: list[F] = field(default_factory=list)


def _split(path: str) -> tuple[str, str]:
    path = path.replace("\\", "/")
    directory, _, name = path.rpartition("/")
    return directory, name


def kernel_version(path: str) -> str | None:
    """``6.1.0-28`` from ``/boot/vmlinuz-6.1.0-28``; from ``/token/6.1.0-28/linux`` the directory name."""
    directory, name = _split(path)
    lower = name.lower()
    for prefix in _KERNEL_PREFIXES:
        if lower.startswith(prefix + "-") and len(name) > len(prefix) + 1:
            return name[len(prefix) + 1 :]
    if lower in _KERNEL_PREFIXES or lower.removesuffix(".efi") in _KERNEL_PREFIXES:
        parent = directory.rpartition("/")[2]
        return parent if parent and parent[:1].isdigit() else None
    return None


def initrd_version(path: str) -> str | None:
    """``6.1.0-28`` from ``initrd.img-6.1.0-28`` or ``initramfs-6.1.0-28.img``; else the BLS directory."""
    directory, name = _split(path)
    match = _INITRD_RE.match(name)
    if match and match.group("version"):
        return match.group("version")
    parent = directory.rpartition("/")[2]
    return parent if parent[:1].isdigit() else None


def is_microcode(path: str) -> bool:
    return bool(_UCODE_RE.search(_split(path)[1]))


def pair_kernels(files: Iterable[F]) -> list[KernelEntry[F]]:
    """Every kernel in ``files`` (in order) with the initrds of the same partition and version.

    An initrd without a version pairs with the kernels in its own directory; microcode goes first.
    """
    files = list(files)
    kernels = [f for f in files if f.kind == "kernel"]
    initrds = [f for f in files if f.kind == "initrd"]
    entries: list[KernelEntry[F]] = []
    for kernel in kernels:
        version = kernel_version(kernel.path)
        kdir = _split(kernel.path)[0]
        mine: list[F] = []
        for initrd in initrds:
            if initrd.partition_number != kernel.partition_number:
                continue
            idir = _split(initrd.path)[0]
            iversion = initrd_version(initrd.path)
            if is_microcode(initrd.path):
                if idir == kdir:
                    mine.append(initrd)
            elif version is not None and iversion == version or iversion is None and idir == kdir:
                mine.append(initrd)
        mine.sort(key=lambda f: not is_microcode(f.path))  # stable: microcode first, else as listed
        entries.append(KernelEntry(kernel, version, mine))
    return entries
