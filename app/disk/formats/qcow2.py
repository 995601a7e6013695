"""qcow2 reader (versions 2 and 3), native.

Why native rather than shelling out to ``qemu-img convert`` / ``qemu-nbd``: a template build hashes and
encrypts the disk with random-access reads from several threads, and a temporary raw copy would double
the disk space and the I/O; qemu-nbd needs root or a kernel module. A qcow2 *reader* for standalone
images is small: header, L1 table, L2 tables (cached), zero clusters and zlib-compressed clusters.
Everything a template base image has no business using - backing files, encryption, external data
files, extended L2 entries (subclusters), zstd compression, unknown incompatible features - is refused
with :class:`UnsupportedImageError` instead of being read wrongly.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import threading
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from app.disk.formats._common import HOLE, MappedImage, MiB, merge_ranges
from app.errors import CorruptImageError, ImageError, TruncatedImageError, UnsupportedImageError

log = logging.getLogger(__name__)

MAGIC = b"QFI\xfb"
#: magic version backing_off backing_size cluster_bits size crypt l1_size l1_off rc_off rc_clusters
#: nb_snapshots snapshots_off
HEADER_V2 = struct.Struct(">4sIQIIQIIQQIIQ")
#: incompatible compatible autoclear refcount_order header_length
HEADER_V3 = struct.Struct(">QQQII")

INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
KNOWN_INCOMPAT = 0x1F

OFFSET_MASK = 0x00FFFFFFFFFFFE00
FLAG_COMPRESSED = 1 << 62
FLAG_ZERO = 1
MAX_L1_BYTES = 32 * MiB  # QEMU's QCOW_MAX_L1_SIZE

DAMAGED_HINT = "the qcow2 file is damaged; check a copy with `qemu-img check`"
CONVERT_HINT = "make a standalone copy first: `qemu-img convert -O qcow2 in.qcow2 standalone.qcow2`"


class Qcow2Image(MappedImage):
    """A standalone qcow2 image; L2 tables are read on demand and kept in a small LRU cache."""

    format = "qcow2"

    label = "qcow2"
    damaged_hint = DAMAGED_HINT

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._l2_cache: OrderedDict[int, array[int]] = OrderedDict()
        self._cluster_cache: OrderedDict[int, bytes] = OrderedDict()
        super().__init__(path)

    def _unsupported(self, what: str, hint: str = CONVERT_HINT) -> UnsupportedImageError:
        return UnsupportedImageError(f"{self.path}: qcow2 {what} is not supported", hint)

    def _open(self) -> None:
        hdr = self._pread(HEADER_V2.size, 0, "qcow2 header")
        (
            magic,
            version,
            backing_off,
            _backing_size,
            cluster_bits,
            size,
            crypt,
            l1_size,
            l1_off,
            _rc_off,
            _rc_clusters,
            _nb_snap,
            _snap_off,
        ) = HEADER_V2.unpack(hdr)
        if magic != MAGIC:
            raise self._corrupt("magic is missing")
        if version not in (2, 3):
            raise self._unsupported(f"version {version}", "convert it with a newer `qemu-img convert -O raw`")
        if not 9 <= cluster_bits <= 21:
            raise self._corrupt(f"cluster size 2^{cluster_bits} is invalid")
        cluster_size = 1 << cluster_bits
        if version == 3:
            v3 = self._pread(HEADER_V3.size, HEADER_V2.size, "qcow2 header")
            incompat, _compat, _autoclear, _rc_order, header_len = HEADER_V3.unpack(v3)
            if header_len < 104 or header_len > cluster_size:
                raise self._corrupt(f"header length {header_len} is invalid")
            if incompat & ~KNOWN_INCOMPAT:
                raise self._unsupported(
                    f"incompatible feature bits {incompat & ~KNOWN_INCOMPAT:#x}",
                    "convert it with a newer `qemu-img convert -O raw`",
                )
            if incompat & INCOMPAT_CORRUPT:
                raise CorruptImageError(
                    f"{self.path}: qemu marked this qcow2 image corrupt",
                    "repair a copy with `qemu-img check -r all` and use that",
                )
            if incompat & INCOMPAT_DATA_FILE:
                raise self._unsupported("with an external data file")
            if incompat & INCOMPAT_EXTL2:
                raise self._unsupported("with extended L2 entries (subclusters)")
            if incompat & INCOMPAT_COMPRESSION:
                ctype = self._pread(1, 104, "qcow2 header")[0] if header_len > 104 else 0
                if ctype != 0:
                    raise self._unsupported(
                        "compression other than zlib",
                        "recompress it: `qemu-img convert -O qcow2 -o compression_type=zlib -c in out`",
                    )
            if incompat & INCOMPAT_DIRTY:
                log.warning("%s: qcow2 dirty bit set (not closed cleanly); reading it anyway", self.path)
        if backing_off:
            raise self._unsupported("with a backing file")
        if crypt:
            raise self._unsupported("encryption", "decrypt it: `qemu-img convert -O raw` with its secret")
        l2_bits = cluster_bits - 3
        covered_per_l1 = cluster_size << l2_bits
        needed_l1 = -(-size // covered_per_l1)
        if size >= 1 << 63 or l1_size < needed_l1:
            raise self._corrupt(f"L1 table ({l1_size} entries) is too small for a {size}-byte disk")
        if needed_l1 * 8 > MAX_L1_BYTES:
            raise self._corrupt(f"L1 table of {needed_l1} entries is absurdly large")
        if needed_l1 and (l1_off % cluster_size or l1_off < cluster_size):
            raise self._corrupt(f"L1 table offset {l1_off} is invalid")
        l1 = array("Q")
        l1.frombytes(self._pread(needed_l1 * 8, l1_off, "qcow2 L1 table") if needed_l1 else b"")
        if sys.byteorder == "little":
            l1.byteswap()
        self._check_l1_unique(l1)
        self.virtual_size = size
        self.version = version
        self.cluster_bits = cluster_bits
        self.cluster_size = cluster_size
        self._l2_bits = l2_bits
        self._l1 = l1
        self._covered_per_l1 = covered_per_l1
        self._csize_shift = 62 - (cluster_bits - 8)
        self._csize_mask = (1 << (cluster_bits - 8)) - 1
        self._coffset_mask = (1 << self._csize_shift) - 1
        self._l2_cache_max = max(4, 16 * MiB // cluster_size)

    def _check_l1_unique(self, l1: array[int]) -> None:
        """Two L1 entries never share an L2 table in a sound image (snapshots have L1 tables of their own).
        A shared one would let a few KiB of tables describe terabytes of allocated data."""
        tables = np.frombuffer(l1, dtype=np.uint64) & np.uint64(OFFSET_MASK)
        used = np.sort(tables[tables != 0])
        twice = np.flatnonzero(used[1:] == used[:-1])
        if len(twice):
            raise self._corrupt(f"L1 table points at the L2 table at offset {int(used[twice[0]])} twice")

    # -- tables ----------------------------------------------------------------------------------

    def _l2_table(self, l1_index: int) -> array[int] | None:
        """The L2 table for ``l1_index`` as host-order integers, or None if unallocated."""
        l2_off = self._l1[l1_index] & OFFSET_MASK
        if not l2_off:
            return None
        with self._lock:
            table = self._l2_cache.get(l2_off)
            if table is not None:
                self._l2_cache.move_to_end(l2_off)
                return table
        if l2_off % self.cluster_size:
            raise self._corrupt(f"L2 table offset {l2_off} is not cluster aligned")
        table = array("Q")
        table.frombytes(self._pread(self.cluster_size, l2_off, "qcow2 L2 table"))
        if sys.byteorder == "little":
            table.byteswap()
        with self._lock:
            self._l2_cache[l2_off] = table
            while len(self._l2_cache) > self._l2_cache_max:
                self._l2_cache.popitem(last=False)
        return table

    def _compressed_cluster(self, entry: int) -> bytes:
        coffset = entry & self._coffset_mask
        with self._lock:
            data = self._cluster_cache.get(coffset)
            if data is not None:
                self._cluster_cache.move_to_end(coffset)
                return data
        nsectors = ((entry >> self._csize_shift) & self._csize_mask) + 1
        csize = nsectors * 512 - (coffset & 511)
        try:
            # The last compressed cluster may end before its last sector does: allow a short read.
            raw = os.pread(self._fd, csize, coffset)
        except OSError as exc:
            raise ImageError(
                f"{self.path}: read error at offset {coffset} ({exc.strerror})", "check the disk"
            ) from None
        if not raw:
            raise TruncatedImageError(
                f"{self.path} is truncated: compressed cluster at offset {coffset} is past the end",
                "the copy or download is incomplete; copy the image again",
            )
        try:
            data = zlib.decompressobj(-15).decompress(raw, self.cluster_size)
        except zlib.error:
            raise self._corrupt(f"compressed cluster at offset {coffset} does not decompress") from None
        if len(data) != self.cluster_size:
            raise self._corrupt(f"compressed cluster at offset {coffset} decompresses to {len(data)} bytes")
        with self._lock:
            self._cluster_cache[coffset] = data
            while len(self._cluster_cache) > 8:
                self._cluster_cache.popitem(last=False)
        return data

    # -- reading ---------------------------------------------------------------------------------

    def _lookup(self, offset: int) -> tuple[int | bytes, int]:
        cluster, within = offset >> self.cluster_bits, offset & (self.cluster_size - 1)
        l1_index = cluster >> self._l2_bits
        table = self._l2_table(l1_index)
        if table is None:  # the whole L2 range is unallocated
            return HOLE, (l1_index + 1) * self._covered_per_l1 - offset
        entry = table[cluster & ((1 << self._l2_bits) - 1)]
        n = self.cluster_size - within
        if entry & FLAG_COMPRESSED:
            return self._compressed_cluster(entry)[within:], n
        if self.version >= 3 and entry & FLAG_ZERO:
            return HOLE, n
        host = entry & OFFSET_MASK
        if not host:
            return HOLE, n
        if host % self.cluster_size:
            raise self._corrupt(f"data cluster offset {host} is not cluster aligned")
        return host + within, n

    def allocated_ranges(self) -> Iterator[tuple[int, int]]:
        """Allocated clusters as merged ranges, one L2 table at a time with numpy (a hostile L1 can point
        every entry at one full L2 table: millions of entries that a Python loop would take minutes on)."""
        size = self.virtual_size
        l1 = np.frombuffer(self._l1, dtype=np.uint64)
        used = np.flatnonzero(l1 & np.uint64(OFFSET_MASK)).tolist()

        def ranges() -> Iterator[tuple[int, int]]:
            for l1_index in used:
                table = self._l2_table(l1_index)
                if table is None:
                    continue
                for start, length in self._table_runs(table, l1_index):
                    if start >= size:
                        return
                    yield start, min(length, size - start)

        yield from merge_ranges(ranges())

    def _table_runs(self, table: array[int], l1_index: int) -> Iterator[tuple[int, int]]:
        """``(offset, length)`` of each run of consecutive allocated clusters in one L2 table."""
        e = np.frombuffer(table, dtype=np.uint64)
        zero_flag = np.uint64(FLAG_ZERO if self.version >= 3 else 0)
        allocated = ((e & np.uint64(FLAG_COMPRESSED)) != 0) | (
            ((e & np.uint64(OFFSET_MASK)) != 0) & ((e & zero_flag) == 0)
        )
        index = np.flatnonzero(allocated)
        if not len(index):
            return
        breaks = np.flatnonzero(np.diff(index) != 1)
        firsts = index[np.concatenate(([0], breaks + 1))].tolist()
        lasts = index[np.concatenate((breaks, [len(index) - 1]))].tolist()
        base, cs = l1_index << self._l2_bits, self.cluster_size
        for first, last in zip(firsts, lasts, strict=True):
            yield (base + first) * cs, (last - first + 1) * cs
