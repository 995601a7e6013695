"""Which parts of a partition its filesystem uses, read offline from the image (no mounting, no root).

:func:`scan_partition` reads a partition's free-space map and returns a :class:`UsedMap`: the partition in
units of :data:`UNIT` bytes (coarser on huge partitions, so the map never exceeds :data:`MAX_UNITS`
bytes), each either *used* (some block in it is, or may be, in use) or *clear* (no filesystem block in it
is in use). Only ext2/3/4 is read today (:mod:`app.disk.fsmap.ext4`); any other content, and any ext4
the reader does not trust, yields no map and a one-line reason: the caller must then treat the whole
partition as used. A hole of the *image* is never a reason to call a unit clear: a filesystem may keep an
allocated block of zeros as a hole.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from app.disk.content import BTRFS_MAGIC_AT, detect_content
from app.disk.fsmap import ext4
from app.disk.image import DiskImage
from app.errors import ImageError
from app.progress import CancelToken

__all__ = ["MAX_UNITS", "UNIT", "FsScan", "UsedMap", "scan_partition", "unit_for"]

KiB = 1024
#: Granularity of the map: a multiple of every LUKS2 sector size and of ext4's usual 4 KiB blocks, and the
#: piece size below which the image writer keeps zero runs anyway.
UNIT = 64 * KiB
#: The map's size bound (one byte per unit): 4 MiB, i.e. 256 GiB at 64 KiB units; larger partitions get
#: larger units.
MAX_UNITS = 1 << 22

_USED, _CLEAR = b"\x01", b"\x00"
BTRFS_MAGIC = b"_BHRfS_M"


def unit_for(size: int) -> int:
    """The unit for a ``size``-byte region: :data:`UNIT`, doubled until the map fits in :data:`MAX_UNITS`."""
    unit = UNIT
    while -(-size // unit) > MAX_UNITS:
        unit *= 2
    return unit


class UsedMap:
    """Used and clear ``unit``-sized pieces of a ``size``-byte region (one byte per unit, see the module).

    Offsets are bytes from the region's start; the last unit may be short. A new map is all clear;
    :meth:`mark` makes units used.
    """

    def __init__(self, size: int, unit: int) -> None:
        if size < 0 or unit <= 0:
            raise ValueError(f"invalid map of {size} bytes in {unit}-byte units")
        self.size = size
        self.unit = unit
        self._units = bytearray(-(-size // unit))

    # -- building -------------------------------------------------------------------------------------

    def mark(self, offset: int, length: int) -> None:
        """Every unit that ``[offset, offset + length)`` touches becomes used (clipped to the region)."""
        lo, hi = max(0, offset), min(self.size, offset + length)
        if lo >= hi:
            return
        a, b = lo // self.unit, -(-hi // self.unit)
        self._units[a:b] = _USED * (b - a)

    def mark_all(self) -> None:
        self._units[:] = _USED * len(self._units)

    # -- queries --------------------------------------------------------------------------------------

    def _bytes(self, index: int) -> int:
        return min(index * self.unit, self.size)

    def next_used(self, pos: int) -> tuple[int, int] | None:
        """``(start, end)`` of the used run holding ``pos``, else of the first one after it; None if none."""
        i = max(0, pos) // self.unit
        a = self._units.find(_USED, i)
        if a < 0:
            return None
        b = self._units.find(_CLEAR, a)
        if b < 0:
            b = len(self._units)
        return (max(pos, self._bytes(a)), self._bytes(b))

    def used_runs(self, lo: int = 0, hi: int | None = None) -> Iterator[tuple[int, int]]:
        """``(start, end)`` used runs, clipped to ``[lo, hi)``, ascending."""
        hi = self.size if hi is None else min(hi, self.size)
        pos = max(0, lo)
        while pos < hi:
            run = self.next_used(pos)
            if run is None or run[0] >= hi:
                return
            yield (max(run[0], pos), min(run[1], hi))
            pos = run[1]

    def clear_runs(self) -> Iterator[tuple[int, int]]:
        """``(start, end)`` clear runs, ascending."""
        i = 0
        n = len(self._units)
        while i < n:
            a = self._units.find(_CLEAR, i)
            if a < 0:
                return
            b = self._units.find(_USED, a)
            if b < 0:
                b = n
            yield (self._bytes(a), self._bytes(b))
            i = b

    def is_clear(self, lo: int, hi: int) -> bool:
        """Whether no used unit touches ``[lo, hi)``."""
        lo, hi = max(0, lo), min(self.size, hi)
        if lo >= hi:
            return True
        return self._units.find(_USED, lo // self.unit, -(-hi // self.unit)) < 0

    @property
    def used_bytes(self) -> int:
        full = self._units.count(_USED) * self.unit
        if self._units and self._units[-1]:
            full -= len(self._units) * self.unit - self.size  # the short last unit
        return full

    @property
    def clear_bytes(self) -> int:
        return self.size - self.used_bytes

    def summary(self) -> tuple[int, int, str]:
        """``(clear regions, clear bytes, digest)``: the digest is the hex SHA-256 of every clear region as
        two little-endian u64 (offset, length), in order."""
        h = hashlib.sha256()
        count = total = 0
        for a, b in self.clear_runs():
            h.update(struct.pack("<QQ", a, b - a))
            count += 1
            total += b - a
        return count, total, h.hexdigest()


@dataclass(frozen=True)
class FsScan:
    """What :func:`scan_partition` found: the filesystem's name and its map, or why there is no map."""

    filesystem: str
    used: UsedMap | None
    reason: str = ""


def scan_partition(
    image: DiskImage,
    offset: int,
    size: int,
    *,
    map_size: int | None = None,
    unit: int | None = None,
    cancel: CancelToken | None = None,
) -> FsScan:
    """The used map of the ``size``-byte partition at ``offset`` of ``image`` (see the module docstring).

    ``map_size`` (at least ``size``) extends the map beyond the partition, the extra counted as used
    (e.g. the zero padding up to a whole LUKS2 sector). A read error of the image itself is raised (the
    build could not read the partition either); anything wrong with the filesystem gives no map.
    """
    map_size = size if map_size is None else map_size
    if map_size < size:
        raise ValueError("the map must cover the partition")
    if offset < 0 or offset + size > image.virtual_size:
        raise ImageError(
            f"a {size}-byte partition at {offset} is outside the disk", "check the partition table"
        )

    def read(at: int, length: int) -> bytes:
        if at < 0 or length < 0 or at + length > size:
            raise ext4.Ext4MapError(f"a read of {length} bytes at {at} is outside the partition")
        return image.read(offset + at, length)

    content = detect_content(image, offset, size)
    if content not in ("ext2", "ext3", "ext4"):
        return FsScan(
            content, None, f"it holds {_name(content)}, whose free space this version does not read"
        )
    if size >= BTRFS_MAGIC_AT + 8 and read(BTRFS_MAGIC_AT, 8) == BTRFS_MAGIC:
        # mkfs.btrfs keeps the first 64 KiB, so an old ext superblock there may be stale: whose map is it?
        return FsScan(content, None, f"it holds both {content} and btrfs signatures (one of them stale)")
    used = UsedMap(map_size, unit or unit_for(map_size))
    try:
        for start, length in ext4.used_byte_ranges(read, size, cancel):
            used.mark(start, length)
    except ext4.Ext4MapError as exc:
        return FsScan(content, None, exc.message)
    used.mark(size, map_size - size)
    return FsScan(content, used)


def _name(content: str) -> str:
    return {"unknown": "no filesystem this version recognises", "empty": "only zeros"}.get(content, content)
