"""The x86 setup header parser: a real Debian cloud kernel, and everything that is not a bzImage."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from app.boot.errors import KernelFormatError
from app.boot.kernel import inspect_kernel
from app.errors import ShieldwrightError
from tests.boot.uki_helpers import kernel, kernel_files


def test_debian_cloud_kernel_is_a_bzimage_with_its_version() -> None:
    data = kernel()
    info = inspect_kernel(data)
    assert info.is_bzimage
    assert info.size == len(data)
    # The .deb names the kernel vmlinuz-<version>: that version is what `uname -r` prints.
    assert info.uname == kernel_files().version
    assert info.version_string is not None and info.version_string.startswith(kernel_files().version + " (")
    # Bookworm kernels speak boot protocol 2.15, are relocatable, and carry the EFI stub + 64-bit handover
    # entry systemd-stub 252 jumps to.
    major, minor = map(int, info.setup_version.split("."))
    assert (major, minor) >= (2, 12)
    assert info.relocatable and info.is_pe and info.efi_handover_64
    assert info.to_dict()["uname"] == info.uname


def test_elf_is_refused_with_a_clear_message() -> None:
    elf = Path("/bin/busybox").read_bytes()
    with pytest.raises(KernelFormatError) as exc:
        inspect_kernel(elf)
    assert "ELF" in exc.value.message and "bzImage" in exc.value.one_line()
    assert isinstance(exc.value, ShieldwrightError)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "bytes"),
        (b"MZ" + bytes(4094), "setup header"),
        (bytes(range(256)) * 64, "setup header"),
    ],
)
def test_non_kernels_are_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(KernelFormatError) as exc:
        inspect_kernel(data)
    assert fragment in exc.value.message


def _patched(offset: int, fmt: str, value: int) -> bytes:
    data = bytearray(kernel()[:65536])
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


def test_zimage_and_old_protocols_are_refused() -> None:
    with pytest.raises(KernelFormatError, match="zImage"):
        inspect_kernel(_patched(0x211, "<B", 0))  # loadflags: LOADED_HIGH cleared
    with pytest.raises(KernelFormatError, match="too old or damaged"):
        inspect_kernel(_patched(0x206, "<H", 0x0100))
    with pytest.raises(KernelFormatError, match="too old or damaged"):
        inspect_kernel(_patched(0x1FE, "<H", 0))  # boot_flag


def test_unparsable_version_string_leaves_uname_unknown() -> None:
    data = bytearray(kernel()[:65536])
    (pointer,) = struct.unpack_from("<H", data, 0x20E)
    data[pointer + 0x200 : pointer + 0x200 + 12] = b"NOT A VERSION"[:12]
    info = inspect_kernel(bytes(data))
    assert info.uname is None
    assert info.version_string is not None and info.version_string.startswith("NOT A VERSIO")
    no_pointer = _patched(0x20E, "<H", 0)
    assert inspect_kernel(no_pointer).version_string is None
