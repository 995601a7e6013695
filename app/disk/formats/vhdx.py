"""VHDX reader (MS-VHDX), native and random-access.

Everything is validated at open time - both headers and region tables with CRC-32C, the metadata
items, every BAT entry against the file size - so a damaged or truncated file fails up front with a
:class:`CorruptImageError` / :class:`TruncatedImageError` instead of halfway through a long hash.

Sizes come from the file, so nothing is materialised in proportion to them: the log is scanned and the
BAT decoded in 1 MiB pieces (a sparse file can declare a 4 GiB log and a 512 MiB BAT while holding
almost nothing), and only *present* blocks are kept, 16 bytes each. Present blocks must not overlap each
other or the BAT and metadata regions, so their number is bounded by what the file really holds. Only
what a template base image needs is supported: dynamic and fixed disks with fully-present or absent
blocks. Differencing disks, partially-present blocks and a log that still needs replaying are refused
with a hint. The structure layouts and GUIDs live here and are shared with the writer.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from app.disk.crc32c import crc32c
from app.disk.formats._common import HOLE, MappedImage, MiB, data_spans, merge_ranges
from app.disk.formats.base import SECTOR_SIZES
from app.errors import CorruptImageError, TruncatedImageError, UnsupportedImageError

KiB = 1024
FILE_ID = b"vhdxfile"
HEADER_OFFSETS = (64 * KiB, 128 * KiB)
HEADER_SIZE = 4 * KiB
REGION_TABLE_OFFSETS = (192 * KiB, 256 * KiB)
REGION_TABLE_SIZE = 64 * KiB
METADATA_TABLE_SIZE = 64 * KiB
MAX_ENTRIES = 2047
MAX_VIRTUAL_SIZE = 64 * 1024**4  # 64 TiB, the format's limit

#: header: signature crc seq FileWriteGuid DataWriteGuid LogGuid LogVersion Version LogLength LogOffset
HEADER = struct.Struct("<4sIQ16s16s16sHHIQ")
REGION_HEADER = struct.Struct("<4sIII")
REGION_ENTRY = struct.Struct("<16sQII")
METADATA_HEADER = struct.Struct("<8sHH20s")
METADATA_ENTRY = struct.Struct("<16sIIII")


def guid(text: str) -> bytes:
    """A GUID as stored on disk (Microsoft mixed-endian)."""
    return uuid.UUID(text).bytes_le


BAT_GUID = guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
METADATA_GUID = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
FILE_PARAMETERS = guid("caa16737-fa36-4d43-b3b6-33f0aa44e76b")
VIRTUAL_DISK_SIZE = guid("2fa54224-cd1b-4876-b211-5dbed83bf4b8")
PAGE83 = guid("beca12ab-b2e6-4523-93ef-c309e000c746")
LOGICAL_SECTOR_SIZE = guid("8141bf1d-a96f-4709-ba47-f233a8faab5f")
PHYSICAL_SECTOR_SIZE = guid("cda348c7-445d-4471-9cc9-e9885251c556")
PARENT_LOCATOR = guid("a8d35f2d-b30b-454d-abf7-d3d84834ab0c")
ZERO_GUID = bytes(16)

META_IS_USER, META_IS_VIRTUAL_DISK, META_IS_REQUIRED = 1, 2, 4
#: MS-VHDX §2.6.1.2: a metadata item is at most 1 MB long; at most 1,024 entries may be user items.
MAX_ITEM_LENGTH = 1 * MiB
MAX_USER_ITEMS = 1024

#: Shieldwright's user metadata item: a template's signed Volume Signature Catalog (the ``.vsc`` bytes),
#: flags IsUser only (not IsVirtualDisk, not IsRequired: every other reader skips it). A catalog longer
#: than :data:`MAX_ITEM_LENGTH` continues in the items whose GUIDs end in ``0001``, ``0002``, ... (part k's
#: GUID is this one with k in its last two bytes); every part but the last is exactly 1 MiB.
#: docs/formats/vsc.md section 1.1 describes it.
CATALOG_ITEM = guid("281be772-a3a3-4bcd-a965-658ee1f80000")
#: Largest catalog read from (and written into) VHDX metadata: the whole catalog is held in memory, and a
#: hostile file may declare the most it can. 64 MiB is two million block digests (2 TiB of protected data
#: in 1 MiB blocks); a larger catalog stays in the ESP and beside the image only.
MAX_CATALOG_BYTES = 64 * MiB
CATALOG_DAMAGED_HINT = (
    "use the .vsc file beside the image, or read the ESP's copy with `shieldwright vsc extract --from esp`"
)

# Payload block states (bits 0-2 of a BAT entry)
NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED, UNMAPPED_V095, FULLY_PRESENT, PARTIALLY_PRESENT = 0, 1, 2, 3, 5, 6, 7
_HOLE_STATES = frozenset({NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED, UNMAPPED_V095})

#: Bytes of log or BAT read and decoded at a time.
SCAN_CHUNK = 1 * MiB

DAMAGED_HINT = "the VHDX file is damaged; copy the image again or repair a copy with `qemu-img check -r all`"
TRUNCATED_HINT = "the copy or download is incomplete; copy the image again"


def checksum_ok(buf: bytes) -> bool:
    """CRC-32C over ``buf`` with its checksum field (bytes 4-7) zeroed, compared with that field."""
    stored: int = struct.unpack_from("<I", buf, 4)[0]
    return crc32c(buf[:4] + b"\0\0\0\0" + buf[8:]) == stored


def with_checksum(buf: bytes | bytearray) -> bytes:
    """``buf`` with its CRC-32C filled in at bytes 4-7."""
    out = bytearray(buf)
    out[4:8] = b"\0\0\0\0"
    struct.pack_into("<I", out, 4, crc32c(out))
    return bytes(out)


def catalog_item_id(part: int) -> bytes:
    """The item GUID (as stored) of part ``part`` of the catalog; part 0 is :data:`CATALOG_ITEM` itself."""
    return CATALOG_ITEM[:14] + part.to_bytes(2, "big")


def catalog_items(vsc: bytes) -> list[tuple[bytes, bytes]]:
    """``(item GUID, bytes)`` of the user metadata items that carry the catalog ``vsc`` (1 MiB pieces)."""
    if not vsc or len(vsc) > MAX_CATALOG_BYTES:
        raise ValueError(f"a {len(vsc)}-byte catalog cannot be stored in VHDX metadata")
    return [
        (catalog_item_id(k), vsc[pos : pos + MAX_ITEM_LENGTH])
        for k, pos in enumerate(range(0, len(vsc), MAX_ITEM_LENGTH))
    ]


def chunk_ratio(logical_sector_size: int, block_size: int) -> int:
    """Payload blocks per sector-bitmap block: one bitmap block (2**23 bits) covers this many."""
    return (2**23 * logical_sector_size) // block_size


def bat_entry_count(virtual_size: int, block_size: int, ratio: int) -> int:
    """BAT entries of a non-differencing disk: payload entries plus an interleaved bitmap entry per chunk."""
    blocks = -(-virtual_size // block_size)
    return blocks + (blocks - 1) // ratio if blocks else 0


def _der_length(head: bytes) -> int | None:
    """Total length of the DER SEQUENCE whose first bytes are ``head`` (a ``.vsc`` is one), else None."""
    if len(head) < 2 or head[0] != 0x30:
        return None
    if head[1] < 0x80:
        return 2 + head[1]
    n = head[1] & 0x7F
    if not 1 <= n <= 4 or len(head) < 2 + n:
        return None
    return 2 + n + int.from_bytes(head[2 : 2 + n], "big")


@dataclass(frozen=True)
class _Header:
    seq: int
    log_guid: bytes
    version: int
    log_length: int
    log_offset: int


class VhdxImage(MappedImage):
    """A dynamic or fixed VHDX, opened read-only; the present blocks' offsets are kept (16 bytes each)."""

    format = "vhdx"

    label = "VHDX"
    damaged_hint = DAMAGED_HINT

    def _open(self) -> None:
        if self.file_size < 1 * MiB:
            raise TruncatedImageError(
                f"{self.path} is truncated: a VHDX is at least 1 MiB but the file has {self.file_size} bytes",
                TRUNCATED_HINT,
            )
        head = self._pread(1 * MiB, 0, "VHDX header section")
        if head[:8] != FILE_ID:
            raise self._corrupt("file identifier is missing")
        header = self._active_header(head)
        if self._log_needs_replay(header):
            raise UnsupportedImageError(
                f"{self.path}: the VHDX log has not been replayed (the disk was not shut down cleanly)",
                "replay the log on a copy with `qemu-img check -r all copy.vhdx`, or attach and detach it "
                "once in Hyper-V",
            )
        regions = self._region_table(head)
        bat_off, bat_len = regions[BAT_GUID]
        meta_off, meta_len = regions[METADATA_GUID]
        self._read_metadata(meta_off, meta_len)
        reserved = [(0, 1 * MiB), (bat_off, bat_len), (meta_off, meta_len)]
        log_off, log_len = header.log_offset, header.log_length
        if log_len and log_off >= 1 * MiB and not (log_off | log_len) % MiB:  # a valid log location
            reserved.append((log_off, log_len))
        self._read_bat(bat_off, bat_len, reserved)

    def _active_header(self, head: bytes) -> _Header:
        valid: list[_Header] = []
        for off in HEADER_OFFSETS:
            buf = head[off : off + HEADER_SIZE]
            if buf[:4] != b"head" or not checksum_ok(buf):
                continue
            _, _, seq, _, _, log_guid, _, version, log_len, log_off = HEADER.unpack_from(buf)
            valid.append(_Header(seq, log_guid, version, log_len, log_off))
        if not valid:
            raise self._corrupt("headers are both damaged (checksum mismatch)")
        hdr = max(valid, key=lambda h: h.seq)
        if hdr.version != 1:
            raise UnsupportedImageError(
                f"{self.path}: VHDX header version {hdr.version} is not supported",
                "convert it with `qemu-img convert -O raw`",
            )
        return hdr

    def _log_needs_replay(self, hdr: _Header) -> bool:
        """True if the log holds entries for the current LogGuid (data not yet in the BAT/blocks).

        A zero LogGuid means an empty log. A non-zero one only matters if some 4 KiB-aligned log
        entry ("loge") carries that GUID, as in QEMU's ``vhdx_parse_log``; we do not replay logs, so
        any such entry - valid or not - refuses the image rather than risk reading stale data.
        """
        if hdr.log_guid == ZERO_GUID:
            return False
        if hdr.log_offset < 1 * MiB or hdr.log_offset % MiB or hdr.log_length % MiB or not hdr.log_length:
            raise self._corrupt("log location is invalid")
        if hdr.log_offset + hdr.log_length > self.file_size:
            raise TruncatedImageError(
                f"{self.path} is truncated: the VHDX log at offset {hdr.log_offset} extends past the end "
                "of the file",
                TRUNCATED_HINT,
            )
        return any(
            b"loge" in log
            and any(
                log[off : off + 4] == b"loge" and log[off + 32 : off + 48] == hdr.log_guid
                for off in range(0, len(log), 4 * KiB)
            )
            for _, log in self._scan(hdr.log_offset, hdr.log_length, 4 * KiB, "VHDX log")
        )

    def _scan(self, offset: int, length: int, unit: int, what: str) -> Iterator[tuple[int, bytes]]:
        """``(file offset, bytes)`` of the parts of ``[offset, offset + length)`` that hold data, in pieces
        of at most SCAN_CHUNK bytes on ``unit`` boundaries (counted from ``offset``); holes are skipped."""
        end = offset + length
        for start, stop in data_spans(self._fd, offset, length):
            start = offset + (start - offset) // unit * unit
            stop = min(end, offset + -(-(stop - offset) // unit) * unit)
            for pos in range(start, stop, SCAN_CHUNK):
                yield pos, self._pread(min(SCAN_CHUNK, stop - pos), pos, what)

    def _region_table(self, head: bytes) -> dict[bytes, tuple[int, int]]:
        for off in REGION_TABLE_OFFSETS:
            buf = head[off : off + REGION_TABLE_SIZE]
            if buf[:4] == b"regi" and checksum_ok(buf):
                break
        else:
            raise self._corrupt("region tables are both damaged (checksum mismatch)")
        _, _, count, _ = REGION_HEADER.unpack_from(buf)
        if count > MAX_ENTRIES:
            raise self._corrupt(f"region table has {count} entries")
        regions: dict[bytes, tuple[int, int]] = {}
        for i in range(count):
            gid, offset, length, flags = REGION_ENTRY.unpack_from(buf, 16 + 32 * i)
            if gid not in (BAT_GUID, METADATA_GUID):
                if flags & 1:
                    raise UnsupportedImageError(
                        f"{self.path}: VHDX requires an unknown region {uuid.UUID(bytes_le=gid)}",
                        "convert it with `qemu-img convert -O raw` on a system that understands it",
                    )
                continue
            if gid in regions:
                raise self._corrupt("region table lists a region twice")
            if offset < 1 * MiB or offset % MiB or length == 0 or length % MiB:
                raise self._corrupt(f"region at offset {offset} length {length} is not 1 MiB aligned")
            regions[gid] = (offset, length)
        if BAT_GUID not in regions or METADATA_GUID not in regions:
            raise self._corrupt("region table lacks the BAT or the metadata region")
        (a_off, a_len), (b_off, b_len) = regions[BAT_GUID], regions[METADATA_GUID]
        if a_off < b_off + b_len and b_off < a_off + a_len:
            raise self._corrupt("BAT and metadata regions overlap")
        return regions

    def _read_metadata(self, region_off: int, region_len: int) -> None:
        if region_len < METADATA_TABLE_SIZE:
            raise self._corrupt("metadata region is too small")
        table = self._pread(METADATA_TABLE_SIZE, region_off, "VHDX metadata table")
        sig, _, count, _ = METADATA_HEADER.unpack_from(table)
        if sig != b"metadata":
            raise self._corrupt("metadata table signature is missing")
        if count > MAX_ENTRIES:
            raise self._corrupt(f"metadata table has {count} entries")
        items: dict[bytes, bytes] = {}
        self._metadata_region = (region_off, region_len)
        self._catalog_parts: dict[int, tuple[int, int]] = {}  # part -> (offset in the region, length)
        self._catalog_duplicate: int | None = None
        for i in range(count):
            item_id, offset, length, flags, _ = METADATA_ENTRY.unpack_from(table, 32 + 32 * i)
            if flags & META_IS_USER and item_id[:14] == CATALOG_ITEM[:14]:
                part = int.from_bytes(item_id[14:], "big")
                if part in self._catalog_parts:
                    self._catalog_duplicate = part
                self._catalog_parts.setdefault(part, (offset, length))
                continue  # checked when the catalog is asked for: the disk itself reads without it
            known = item_id in (
                FILE_PARAMETERS,
                VIRTUAL_DISK_SIZE,
                PAGE83,
                LOGICAL_SECTOR_SIZE,
                PHYSICAL_SECTOR_SIZE,
                PARENT_LOCATOR,
            )
            if not known:
                if flags & META_IS_REQUIRED:
                    raise UnsupportedImageError(
                        f"{self.path}: VHDX requires an unknown metadata item {uuid.UUID(bytes_le=item_id)}",
                        "convert it with `qemu-img convert -O raw` on a system that understands it",
                    )
                continue
            if length == 0:
                continue
            if offset < METADATA_TABLE_SIZE or offset + length > region_len or length > 1 * MiB:
                raise self._corrupt("metadata item lies outside the metadata region")
            items[item_id] = self._pread(length, region_off + offset, "VHDX metadata item")

        def item(gid: bytes, size: int, name: str) -> bytes:
            data = items.get(gid)
            if data is None or len(data) < size:
                raise self._corrupt(f"metadata lacks {name}")
            return data

        block_size, bits = struct.unpack_from("<II", item(FILE_PARAMETERS, 8, "FileParameters"))
        if bits & 2 or PARENT_LOCATOR in items:
            raise UnsupportedImageError(
                f"{self.path} is a differencing VHDX (it has a parent disk), which is not supported",
                "merge it into a standalone disk first, e.g. `qemu-img convert -O vhdx child.vhdx out.vhdx`",
            )
        if block_size < 1 * MiB or block_size > 256 * MiB or block_size & (block_size - 1):
            raise self._corrupt(f"block size {block_size} is invalid (must be a power of two, 1-256 MiB)")
        size = struct.unpack_from("<Q", item(VIRTUAL_DISK_SIZE, 8, "VirtualDiskSize"))[0]
        logical = struct.unpack_from("<I", item(LOGICAL_SECTOR_SIZE, 4, "LogicalSectorSize"))[0]
        physical = struct.unpack_from("<I", item(PHYSICAL_SECTOR_SIZE, 4, "PhysicalSectorSize"))[0]
        if logical not in SECTOR_SIZES:
            raise self._corrupt(f"logical sector size {logical} is invalid")
        if physical not in SECTOR_SIZES:
            raise self._corrupt(f"physical sector size {physical} is invalid")
        if size % logical or size > MAX_VIRTUAL_SIZE:
            raise self._corrupt(f"virtual disk size {size} is invalid")
        self.block_size = block_size
        self.virtual_size = size
        self.declared_sector_size = logical
        self.physical_sector_size = physical
        self.chunk_ratio = chunk_ratio(logical, block_size)

    def _read_bat(self, region_off: int, region_len: int, reserved: list[tuple[int, int]]) -> None:
        """Decode the BAT in pieces, keeping the present blocks only; ``reserved`` are ``(offset, length)``
        file ranges no data block may overlap (header section, BAT, metadata)."""
        bs = self.block_size
        nblocks = -(-self.virtual_size // bs)
        entries = bat_entry_count(self.virtual_size, bs, self.chunk_ratio)
        if entries * 8 > region_len:
            raise self._corrupt(f"BAT region ({region_len} bytes) is too small for {entries} entries")
        if region_off + entries * 8 > self.file_size:
            raise TruncatedImageError(
                f"{self.path} is truncated: the VHDX block allocation table extends past the end of the file",
                TRUNCATED_HINT,
            )
        blocks: list[np.ndarray] = []
        offsets: list[np.ndarray] = []
        for pos, raw in self._scan(region_off, entries * 8, 8, "VHDX BAT"):
            first = (pos - region_off) // 8
            if raw.count(0) == len(raw):
                continue  # all NOT_PRESENT: the usual state of a sparse disk's BAT
            found = self._decode_bat(np.frombuffer(raw, dtype="<u8"), first, nblocks)
            if found is not None:
                blocks.append(found[0])
                offsets.append(found[1])
        self._blocks = np.concatenate(blocks) if blocks else np.zeros(0, np.int64)
        self._block_offsets = np.concatenate(offsets) if offsets else np.zeros(0, np.int64)
        self._check_overlaps(nblocks, reserved)

    def _decode_bat(self, bat: np.ndarray, first: int, nblocks: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(block numbers, file offsets) of the present blocks among BAT entries ``first…``; refuses bad
        states and blocks outside the file, reporting the lowest block at fault as a scan in order would."""
        index = np.arange(first, first + len(bat), dtype=np.int64)
        payload = (index + 1) % (self.chunk_ratio + 1) != 0  # every ratio+1-th entry is a bitmap entry
        block = (index - index // (self.chunk_ratio + 1))[payload]
        entry = bat[payload]
        state = (entry & np.uint64(7)).astype(np.int64)
        # FileOffsetMB has 44 bits: clamp before scaling so int64 cannot overflow (2**42 MiB is past any file)
        file_off = np.minimum(entry >> np.uint64(20), np.uint64(2**42)).astype(np.int64) * MiB
        last_len = self.virtual_size - (nblocks - 1) * self.block_size
        need = np.where(block == nblocks - 1, last_len, self.block_size)
        present = state == FULLY_PRESENT
        bad = ~np.isin(state, (*_HOLE_STATES, FULLY_PRESENT))
        bad |= present & ((file_off < 1 * MiB) | (file_off + need > self.file_size))
        if bad.any():
            k = int(np.argmax(bad))
            self._refuse_block(int(block[k]), int(entry[k]))
        if not present.any():
            return None
        return block[present], file_off[present]

    def _refuse_block(self, i: int, entry: int) -> None:
        state, file_off = entry & 7, (entry >> 20) * MiB
        if state == PARTIALLY_PRESENT:
            raise UnsupportedImageError(
                f"{self.path} has partially present blocks (a differencing disk), which is not supported",
                "merge it into a standalone disk first, e.g. `qemu-img convert -O vhdx`",
            )
        if state != FULLY_PRESENT:
            raise self._corrupt(f"block {i} has invalid state {state}")
        if file_off < 1 * MiB:
            raise self._corrupt(f"block {i} points into the header section")
        raise TruncatedImageError(
            f"{self.path} is truncated: data block {i} at offset {file_off} lies past the end "
            f"of the {self.file_size}-byte file",
            TRUNCATED_HINT,
        )

    def _check_overlaps(self, nblocks: int, reserved: list[tuple[int, int]]) -> None:
        """Data blocks must not share file space with each other or with the structures: otherwise a tiny
        file could map the same bytes a million times (and every copy of the disk would expand them)."""
        if not len(self._blocks):
            return
        last_len = self.virtual_size - (nblocks - 1) * self.block_size
        order = np.argsort(self._block_offsets, kind="stable")
        starts = self._block_offsets[order]
        ends = starts + np.where(self._blocks[order] == nblocks - 1, last_len, self.block_size)
        clash = starts[1:] < ends[:-1]
        if clash.any():
            k = int(np.argmax(clash))
            a, b = sorted((int(self._blocks[order][k]), int(self._blocks[order][k + 1])))
            raise self._corrupt(f"blocks {a} and {b} share file space at offset {int(starts[k + 1])}")
        for off, length in reserved:
            hit = (starts < off + length) & (ends > off)
            if hit.any():
                i = int(self._blocks[order][int(np.argmax(hit))])
                raise self._corrupt(f"block {i} overlaps the VHDX structures at offset {off}")

    # -- the catalog item --------------------------------------------------------------------------

    @property
    def has_catalog_item(self) -> bool:
        """Whether the metadata table lists Shieldwright's catalog item (:data:`CATALOG_ITEM`)."""
        return bool(self._catalog_parts)

    def catalog_item(self) -> bytes | None:
        """The catalog stored in this VHDX's metadata (:data:`CATALOG_ITEM` and its continuations), or None
        when the table lists none. The table entries are checked before anything is read - parts numbered
        0..n-1, each inside the metadata region, all but the last exactly 1 MiB, together at most
        :data:`MAX_CATALOG_BYTES`, the DER SEQUENCE header at the start of part 0 declaring that total - so
        a hostile file costs at most that much memory. The rest of the bytes is not interpreted here
        (:func:`app.catalog.format.read_catalog` checks them)."""
        parts = self._catalog_parts
        if not parts:
            return None
        n = len(parts)
        if n > MAX_CATALOG_BYTES // MAX_ITEM_LENGTH or max(parts) >= MAX_CATALOG_BYTES // MAX_ITEM_LENGTH:
            raise self._catalog_damaged(
                f"declares {max(n, max(parts) + 1)} parts of up to 1 MiB, more than the "
                f"{MAX_CATALOG_BYTES // MiB} MiB a catalog may have here"
            )
        if self._catalog_duplicate is not None:
            raise self._catalog_damaged(f"lists part {self._catalog_duplicate} twice")
        missing = next((k for k in range(n) if k not in parts), None)
        if missing is not None:
            raise self._catalog_damaged(f"lacks part {missing} (it lists {n} parts up to {max(parts)})")
        region_off, region_len = self._metadata_region
        total = 0
        for k in range(n):
            offset, length = parts[k]
            if length == 0 or length > MAX_ITEM_LENGTH or (k < n - 1 and length != MAX_ITEM_LENGTH):
                raise self._catalog_damaged(f"part {k} has an invalid length of {length} bytes")
            if offset < METADATA_TABLE_SIZE or offset + length > region_len:
                raise self._catalog_damaged(f"part {k} lies outside the metadata region")
            total += length
        head = self._pread(min(parts[0][1], 6), region_off + parts[0][0], "the catalog in the VHDX metadata")
        if _der_length(head) != total:  # e.g. a sparse file's holes: refused before 64 MiB are read
            raise self._catalog_damaged(f"does not start with a DER SEQUENCE of its {total} bytes")
        data = bytearray(total)
        view = memoryview(data)
        for k in range(n):
            offset, length = parts[k]
            self._pread_into(view[k * MAX_ITEM_LENGTH : k * MAX_ITEM_LENGTH + length],
                             region_off + offset, "the catalog in the VHDX metadata")  # fmt: skip
        return bytes(data)

    def _catalog_damaged(self, what: str) -> CorruptImageError:
        return CorruptImageError(
            f"{self.path}: the catalog item in the VHDX metadata {what}", CATALOG_DAMAGED_HINT
        )

    # -- reading ---------------------------------------------------------------------------------

    def _lookup(self, offset: int) -> tuple[int, int]:
        idx, within = divmod(offset, self.block_size)
        n = self.block_size - within
        k = int(np.searchsorted(self._blocks, idx))
        if k < len(self._blocks) and self._blocks[k] == idx:
            return int(self._block_offsets[k]) + within, n
        return HOLE, n

    def allocated_ranges(self) -> Iterator[tuple[int, int]]:
        bs, size = self.block_size, self.virtual_size
        yield from merge_ranges((i * bs, min(bs, size - i * bs)) for i in self._blocks.tolist())
