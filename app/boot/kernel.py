"""The x86 Linux boot protocol's setup header: is this a bzImage, and which kernel version is it?

Why parse it: systemd-stub (v252 on Debian 12) starts the kernel through the EFI handover protocol, which
needs a bzImage, so a vmlinux ELF or an arm64 Image must be refused before a UKI is built around it.
The ``.uname`` section is taken from the setup header's ``kernel_version`` string, the way ukify's
``Uname.scrape_x86`` does (docs.kernel.org/arch/x86/boot.html, "The Real-Mode Kernel Header").
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from app.boot.errors import KernelFormatError

#: Offsets inside the image (the setup header starts at 0x1F1).
BOOT_FLAG = 0x1FE  # u16 0xAA55
HEADER_MAGIC = 0x202  # "HdrS"
VERSION = 0x206  # u16 boot protocol version
KERNEL_VERSION = 0x20E  # u16 pointer to the version string, minus 0x200
LOADFLAGS = 0x211
RELOCATABLE = 0x234
XLOADFLAGS = 0x236
MIN_SIZE = 0x250

LOADED_HIGH = 0x01  # loadflags bit 0: protected-mode code at 0x100000, i.e. a bzImage
XLF_KERNEL_64 = 0x01
XLF_EFI_HANDOVER_64 = 0x08
#: ukify's ``Uname.VERSION_PATTERN``: "6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP …".
_UNAME = re.compile(r"(?P<version>[a-z0-9._-]+) \([^ )]+\) (?:#.*)")

_HINT = "give the kernel as installed in /boot (vmlinuz-*, an x86 bzImage), not a vmlinux ELF or an archive"


@dataclass(frozen=True)
class KernelInfo:
    """What the setup header says about a kernel image."""

    size: int
    setup_version: str  # boot protocol version, e.g. "2.15"
    setup_sects: int
    loadflags: int
    xloadflags: int  # 0 before protocol 2.12
    relocatable: bool
    is_pe: bool  # carries an EFI stub (MZ + PE header): firmware could start it directly
    version_string: str | None  # the whole kernel_version string
    uname: str | None  # its first word, as `uname -r` prints it; None when unparsable

    @property
    def is_bzimage(self) -> bool:
        return bool(self.loadflags & LOADED_HIGH)

    @property
    def efi_handover_64(self) -> bool:
        """The 64-bit EFI handover entry systemd-stub 252 jumps to."""
        return bool(self.xloadflags & XLF_EFI_HANDOVER_64)

    def to_dict(self) -> dict[str, object]:
        return {
            "size": self.size,
            "bzimage": self.is_bzimage,
            "setup_version": self.setup_version,
            "relocatable": self.relocatable,
            "efi_stub": self.is_pe,
            "efi_handover_64": self.efi_handover_64,
            "version_string": self.version_string,
            "uname": self.uname,
        }


def inspect_kernel(data: bytes) -> KernelInfo:
    """Parse the setup header; :class:`KernelFormatError` unless ``data`` is an x86 bzImage."""
    if len(data) < MIN_SIZE:
        raise KernelFormatError(f"the kernel is only {len(data)} bytes: not a Linux kernel image", _HINT)
    if data[:4] == b"\x7fELF":
        raise KernelFormatError("the kernel is an ELF file (vmlinux), not a bzImage", _HINT)
    if data[HEADER_MAGIC : HEADER_MAGIC + 4] != b"HdrS":
        raise KernelFormatError("the kernel has no x86 setup header ('HdrS' at 0x202): not a bzImage", _HINT)
    (boot_flag,) = struct.unpack_from("<H", data, BOOT_FLAG)
    (version,) = struct.unpack_from("<H", data, VERSION)
    if boot_flag != 0xAA55 or version < 0x0200:
        raise KernelFormatError(
            f"the kernel's setup header is too old or damaged "
            f"(boot protocol {version >> 8}.{version & 0xFF})",
            _HINT,
        )
    loadflags = data[LOADFLAGS]
    if not loadflags & LOADED_HIGH:
        raise KernelFormatError("the kernel is a zImage (loaded low), not a bzImage", _HINT)
    xloadflags = struct.unpack_from("<H", data, XLOADFLAGS)[0] if version >= 0x020C else 0
    relocatable = bool(data[RELOCATABLE]) if version >= 0x0205 else False
    version_string = _version_string(data)
    match = _UNAME.match(version_string or "")
    return KernelInfo(
        size=len(data),
        setup_version=f"{version >> 8}.{version & 0xFF}",
        setup_sects=data[0x1F1] or 4,
        loadflags=loadflags,
        xloadflags=xloadflags,
        relocatable=relocatable,
        is_pe=_is_pe(data),
        version_string=version_string,
        uname=match.group("version") if match else None,
    )


def _version_string(data: bytes) -> str | None:
    (pointer,) = struct.unpack_from("<H", data, KERNEL_VERSION)
    if not pointer:
        return None
    start = pointer + 0x200
    raw = data[start : start + 256].split(b"\0", 1)[0]
    text = raw.decode("ascii", errors="replace").strip()
    return text or None


def _is_pe(data: bytes) -> bool:
    if data[:2] != b"MZ":
        return False
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    return e_lfanew + 4 <= len(data) and data[e_lfanew : e_lfanew + 4] == b"PE\0\0"
