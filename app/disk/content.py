"""What a partition holds, told from magic numbers (like ``blkid``, but only the kinds a template has).

``inspect`` runs this on every partition and must stay fast even on a sparse VHDX of many GiB, so it
reads at most two small pieces per partition: the first 4 KiB (FAT, ext*, XFS, LUKS, swap), and only
if that says nothing, the rest of the first 64 KiB plus a few bytes (btrfs superblock, LUKS2
secondary header, "all zeros"). Returned names are the model's ``Partition.content`` vocabulary.
"""

from __future__ import annotations

import struct

from app.disk.image import DiskImage

HEAD = 4096
#: "empty" means this much (or the whole partition, if smaller) reads as zeros.
EMPTY_PROBE = 64 * 1024
BTRFS_MAGIC_AT = 64 * 1024 + 0x40
TAIL_END = BTRFS_MAGIC_AT + 8

# ext2/3/4 superblock: at byte 1024 of the partition.
_EXT_SB = 1024
_EXT_MAGIC = 0xEF53
# Feature bits ext3 does not have: any of them makes it ext4 (same rule as libblkid).
_EXT4_INCOMPAT = 0x0040 | 0x0080 | 0x0100 | 0x0200 | 0x0400 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000
_EXT4_RO_COMPAT = 0x0008 | 0x0010 | 0x0020 | 0x0040 | 0x0100 | 0x0200 | 0x0400
_EXT3_HAS_JOURNAL = 0x0004  # compat
_EXT_JOURNAL_DEV = 0x0008  # incompat: an external journal, not a filesystem

# Where a LUKS2 secondary header can start (it follows the primary, whose size is one of these).
_LUKS2_SECONDARY_OFFSETS = (0x4000, 0x8000, 0x10000)
_SWAP_MAGICS = (b"SWAPSPACE2", b"SWAP-SPACE")
_SWAP_PAGE_SIZES = (4096, 8192, 16384, 65536)


def detect_content(image: DiskImage, offset: int, size: int) -> str:
    """Content of the ``size``-byte region at ``offset``: "fat" "ext2" "ext3" "ext4" "xfs" "btrfs"
    "luks1" "luks2" "swap" "empty" or "unknown".

    A region reaching past the end of the disk is probed only where it lies on the disk (the layout
    check reports the overrun); nothing is read outside the image.
    """
    size = max(0, min(size, image.virtual_size - offset)) if offset >= 0 else 0
    if size == 0:
        return "unknown"
    head = image.read(offset, min(size, HEAD))
    found = detect_in_head(head)
    if found:
        return found
    tail_len = min(size, TAIL_END) - len(head)
    tail = image.read(offset + len(head), tail_len) if tail_len > 0 else b""
    return detect_in_first_64k(head + tail, size)


def detect_in_head(head: bytes) -> str | None:
    """Everything decidable from the first 4 KiB, strongest signatures first."""
    luks = _luks(head, 0)
    if luks:
        return luks
    if head[:4] == b"XFSB":
        return "xfs"
    ext = _ext(head)
    if ext:
        return ext
    if len(head) >= 4096 and head[4086:4096] in _SWAP_MAGICS:
        return "swap"
    if _fat(head):
        return "fat"
    return None


def detect_in_first_64k(data: bytes, size: int) -> str:
    """The slower checks, given up to 64 KiB + 72 bytes from the partition start."""
    if data[BTRFS_MAGIC_AT : BTRFS_MAGIC_AT + 8] == b"_BHRfS_M":
        return "btrfs"
    for off in _LUKS2_SECONDARY_OFFSETS:
        if _luks(data, off) == "luks2":
            return "luks2"
    for page in _SWAP_PAGE_SIZES[1:]:
        if data[page - 10 : page] in _SWAP_MAGICS:
            return "swap"
    probe = data[: min(size, EMPTY_PROBE)]
    if not probe.strip(b"\0"):
        return "empty"
    return "unknown"


def _luks(data: bytes, off: int) -> str | None:
    """LUKS1/LUKS2 by magic + version; a LUKS2 secondary header ("SKUL") counts as LUKS2."""
    magic, version = data[off : off + 6], data[off + 6 : off + 8]
    if len(version) < 2:
        return None
    (ver,) = struct.unpack(">H", version)
    if magic == b"LUKS\xba\xbe":
        return {1: "luks1", 2: "luks2"}.get(ver)
    if magic == b"SKUL\xba\xbe" and ver == 2:
        return "luks2"
    return None


def _ext(head: bytes) -> str | None:
    sb = head[_EXT_SB : _EXT_SB + 0x68]
    if len(sb) < 0x68 or struct.unpack_from("<H", sb, 0x38)[0] != _EXT_MAGIC:
        return None
    compat, incompat, ro_compat = struct.unpack_from("<III", sb, 0x5C)
    if incompat & _EXT_JOURNAL_DEV:
        return None
    if incompat & _EXT4_INCOMPAT or ro_compat & _EXT4_RO_COMPAT:
        return "ext4"
    if compat & _EXT3_HAS_JOURNAL:
        return "ext3"
    return "ext2"


def _fat(head: bytes) -> bool:
    """A FAT boot sector: sane BIOS Parameter Block plus the 0x55AA signature or a "FAT" type string.

    The BPB check keeps random data (and MBR-like sectors, which also end in 0x55AA) from passing.
    """
    if len(head) < 512:
        return False
    bytes_per_sector, sectors_per_cluster, reserved, fats = struct.unpack_from("<HBHB", head, 11)
    root_entries, total16, _media, fat_size16 = struct.unpack_from("<HHBH", head, 17)
    total32, fat_size32 = struct.unpack_from("<I", head, 32)[0], struct.unpack_from("<I", head, 36)[0]
    bpb_ok = (
        bytes_per_sector in (512, 1024, 2048, 4096)
        and sectors_per_cluster in (1, 2, 4, 8, 16, 32, 64, 128)
        and reserved >= 1
        and fats in (1, 2)
        and (total16 or total32)
        and (fat_size16 or fat_size32)
        and head[0] in (0xEB, 0xE9)
    )
    if not bpb_ok:
        return False
    signed = head[510:512] == b"\x55\xaa"
    typed = head[54:57] == b"FAT" or head[82:87] == b"FAT32"
    # FAT32 has no fixed root directory; FAT12/16 have one (so root_entries is a weak extra check).
    return bool(signed or typed) and (root_entries > 0 or fat_size32 > 0)
