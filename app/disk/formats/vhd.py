"""Fixed VHD: a raw disk followed by a 512-byte big-endian "conectix" footer.

Only the fixed subformat is read natively: it is what Azure takes and it is raw data plus a footer.
Dynamic and differencing VHDs are refused with a conversion hint rather than half-supported.
The footer helpers here are shared with the writer so reader and writer agree on one layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from app.disk.formats._common import LinearImage
from app.errors import CorruptImageError, TruncatedImageError, UnsupportedImageError

FOOTER_SIZE = 512
COOKIE = b"conectix"
DISK_FIXED, DISK_DYNAMIC, DISK_DIFFERENCING = 2, 3, 4

# cookie features version dataOffset timestamp creatorApp creatorVersion creatorOS originalSize
# currentSize cylinders heads spt diskType checksum uniqueId savedState
_FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB")

CONVERT_HINT = "convert it to raw first, e.g. `qemu-img convert -O raw in.vhd out.raw`"


@dataclass(frozen=True)
class Footer:
    disk_type: int
    current_size: int
    original_size: int
    checksum: int
    raw: bytes


def footer_checksum(footer: bytes | bytearray) -> int:
    """One's complement of the byte sum with the checksum field (bytes 64-67) taken as zero."""
    return ~(sum(footer[:64]) + sum(footer[68:FOOTER_SIZE])) & 0xFFFFFFFF


def parse_footer(raw: bytes) -> Footer:
    """Decode a footer that starts with the cookie (the caller checked); no validation beyond size."""
    fields = _FOOTER.unpack_from(raw)
    return Footer(
        disk_type=fields[13],
        current_size=fields[9],
        original_size=fields[8],
        checksum=fields[14],
        raw=bytes(raw[:FOOTER_SIZE]),
    )


def chs_geometry(size: int) -> tuple[int, int, int]:
    """(cylinders, heads, sectors per track) for ``size`` bytes, per the VHD specification's algorithm."""
    total = size // 512
    total = min(total, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return cth // heads, heads, spt


def build_footer(size: int, timestamp: int, unique_id: bytes) -> bytes:
    """A fixed-disk footer for a ``size``-byte disk (``timestamp`` in seconds since 2000-01-01 UTC).

    The creator app is "win " (Hyper-V). That is not vanity: readers decide from it whether the disk
    size is currentSize or the CHS product, and CHS cannot express most MiB-multiple sizes exactly.
    QEMU only trusts currentSize for a short list of creators ("win ", "qem2", "d2v ", ...); with
    any other name it would see a disk up to ~8 MiB short and lose the GPT backup header.
    Hyper-V and Azure always use currentSize.
    """
    cyl, heads, spt = chs_geometry(size)
    raw = bytearray(
        _FOOTER.pack(
            COOKIE,
            2,
            0x00010000,
            0xFFFFFFFFFFFFFFFF,
            timestamp & 0xFFFFFFFF,
            b"win ",
            0x000A0000,
            b"Wi2k",
            size,
            size,
            cyl,
            heads,
            spt,
            DISK_FIXED,
            0,
            unique_id,
            0,
        )
    )
    raw += bytes(FOOTER_SIZE - len(raw))
    struct.pack_into(">I", raw, 64, footer_checksum(raw))
    return bytes(raw)


class VhdImage(LinearImage):
    """A fixed VHD, read as the raw data in front of its footer (a sparse file's holes skipped, as a raw
    image's)."""

    format = "vhd"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            if self.file_size < FOOTER_SIZE:
                raise CorruptImageError(f"{self.path}: too small to be a VHD", "choose a disk image file")
            footer_raw = self._pread(FOOTER_SIZE, self.file_size - FOOTER_SIZE, "VHD footer")
            if not footer_raw.startswith(COOKIE):
                raise CorruptImageError(f"{self.path}: VHD footer is missing", "choose a disk image file")
            footer = parse_footer(footer_raw)
            if footer.checksum != footer_checksum(footer_raw):
                raise CorruptImageError(
                    f"{self.path}: VHD footer checksum mismatch",
                    "the file is damaged; copy the image again",
                )
            if footer.disk_type in (DISK_DYNAMIC, DISK_DIFFERENCING):
                raise UnsupportedImageError(
                    f"{self.path} is a dynamic or differencing VHD, which is not supported", CONVERT_HINT
                )
            if footer.disk_type != DISK_FIXED:
                raise CorruptImageError(
                    f"{self.path}: VHD footer has unknown disk type {footer.disk_type}",
                    "the file is damaged; copy the image again",
                )
            if footer.current_size + FOOTER_SIZE > self.file_size:
                raise TruncatedImageError(
                    f"{self.path} is truncated: the VHD declares {footer.current_size} bytes of data "
                    f"but the file holds only {max(self.file_size - FOOTER_SIZE, 0)}",
                    "the copy or download is incomplete; copy the image again",
                )
        except BaseException:
            self.close()
            raise
        self.virtual_size = footer.current_size
