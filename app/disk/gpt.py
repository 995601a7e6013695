"""Read a GUID Partition Table (UEFI spec, chapter 5) from any :class:`DiskImage`, trusting nothing.

Base images come from anywhere, so every field is range-checked and both copies of the table are
read: the primary (LBA 1) and the backup (normally the last LBA). A damaged primary with a good
backup still yields the partitions, plus an ERROR finding, because building a template on a disk
whose primary GPT is broken would ship that damage to every VM. Any input bytes give a
:class:`GptTable` (possibly empty, with findings); only container read failures raise, and those are
:class:`~app.errors.ImageError`.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field

from app.disk.image import SECTOR_SIZES, DiskImage
from app.disk.model import Finding, Severity

SIGNATURE = b"EFI PART"
HEADER_MIN = 92
ENTRY_MIN = 128
MAX_ENTRY_ARRAY = 1024 * 1024  # bytes; the spec minimum is 16 KiB, real tables never exceed this

_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")  # 92 bytes, through the entry-array CRC
_ENTRY = struct.Struct("<16s16sQQQ72s")  # 128 bytes

REPAIR_HINT = "repair a copy with gdisk (r, c to load the backup table, w to write both copies)"


@dataclass(frozen=True)
class GptEntry:
    """One used slot of the entry array."""

    number: int  # 1-based slot index, what gdisk and the kernel call the partition number
    type_guid: str
    partition_guid: str
    first_lba: int
    last_lba: int
    attributes: int
    name: str


@dataclass(frozen=True)
class GptHeader:
    revision: int
    header_size: int
    current_lba: int
    backup_lba: int
    first_usable_lba: int
    last_usable_lba: int
    disk_guid: str
    entries_lba: int
    num_entries: int
    entry_size: int
    entries_crc: int


@dataclass
class GptTable:
    """What was read. ``header`` is None when neither copy is usable (then ``entries`` is empty)."""

    sector_size: int
    total_sectors: int
    header: GptHeader | None = None
    entries: list[GptEntry] = field(default_factory=list)
    source: str | None = None  # "primary" | "backup" | None
    mbr: str = "missing"  # "protective" | "hybrid" | "mbr" (a plain MBR table) | "missing"
    findings: list[Finding] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.header is not None

    @property
    def disk_guid(self) -> str | None:
        return self.header.disk_guid if self.header else None

    @property
    def first_usable_lba(self) -> int:
        return self.header.first_usable_lba if self.header else 0

    @property
    def last_usable_lba(self) -> int:
        return self.header.last_usable_lba if self.header else 0


class _Bad(Exception):
    """Internal: why one copy of the GPT was rejected (its message ends up in a finding)."""


def _guid(raw: bytes) -> str:
    # GPT stores GUIDs mixed-endian: the first three fields little-endian, the rest as bytes.
    return str(uuid.UUID(bytes_le=raw))


def _utf16_name(raw: bytes) -> str:
    """UTF-16LE, ends at the first NUL code unit; undecodable units become U+FFFD rather than failing."""
    for i in range(0, len(raw) - 1, 2):
        if raw[i] == 0 and raw[i + 1] == 0:
            raw = raw[:i]
            break
    return raw.decode("utf-16-le", errors="replace")


def _read(image: DiskImage, offset: int, length: int) -> bytes | None:
    """Bytes of the disk, or None if the range is not on it (a bad LBA is a finding, not an error)."""
    if offset < 0 or length < 0 or offset + length > image.virtual_size:
        return None
    return image.read(offset, length)


def _parse_header(image: DiskImage, lba: int, ss: int, total: int) -> tuple[GptHeader, bytes]:
    """The header at ``lba`` and its raw entry array, or :class:`_Bad` saying what is wrong."""
    sector = _read(image, lba * ss, ss)
    if sector is None:
        raise _Bad("header is outside the disk")
    if sector[:8] != SIGNATURE:
        raise _Bad("no 'EFI PART' header signature" if sector.strip(b"\0") else "header is blank (all zeros)")
    fields = _HEADER.unpack_from(sector)
    (_sig, revision, hsize, hcrc, _res, current, backup, first_u, last_u, dguid, elba, count, esize, ecrc) = (
        fields
    )
    if not HEADER_MIN <= hsize <= ss:
        raise _Bad(f"header size {hsize} is invalid")
    raw = bytearray(sector[:hsize])
    raw[16:20] = b"\0\0\0\0"
    if zlib.crc32(raw) != hcrc:
        raise _Bad("header CRC mismatch")
    if current != lba:
        raise _Bad(f"header says it is at LBA {current}, but it was read from LBA {lba}")
    if esize < ENTRY_MIN or esize % 8 or count * esize > MAX_ENTRY_ARRAY:
        raise _Bad(f"entry array geometry is invalid ({count} entries of {esize} bytes)")
    if not (0 < first_u <= last_u < total):
        raise _Bad(f"usable LBA range {first_u}-{last_u} does not fit the {total}-sector disk")
    array_sectors = -(-count * esize // ss)
    if elba < 1 or elba + array_sectors > total or elba <= lba < elba + array_sectors:
        raise _Bad(f"entry array at LBA {elba} is outside the disk")
    array = _read(image, elba * ss, count * esize)
    if array is None:  # pragma: no cover - excluded by the range check above
        raise _Bad("entry array is outside the disk")
    if zlib.crc32(array) != ecrc:
        raise _Bad("partition entry array CRC mismatch")
    header = GptHeader(
        revision, hsize, current, backup, first_u, last_u, _guid(dguid), elba, count, esize, ecrc
    )
    return header, array


def _parse_entries(array: bytes, header: GptHeader) -> list[GptEntry]:
    entries = []
    for i in range(header.num_entries):
        chunk = array[i * header.entry_size : i * header.entry_size + ENTRY_MIN]
        tguid, pguid, first, last, attrs, name = _ENTRY.unpack(chunk)
        if tguid == bytes(16):
            continue  # an unused slot
        entries.append(GptEntry(i + 1, _guid(tguid), _guid(pguid), first, last, attrs, _utf16_name(name)))
    return entries


def _mbr_kind(image: DiskImage) -> str:
    """Classify LBA 0: a protective MBR has one 0xEE record; extra records make it hybrid."""
    sector = _read(image, 0, 512)
    if sector is None or sector[510:512] != b"\x55\xaa":
        return "missing"
    types = [sector[446 + 16 * i + 4] for i in range(4)]
    if 0xEE in types:
        return "hybrid" if any(t not in (0, 0xEE) for t in types) else "protective"
    return "mbr" if any(types) else "missing"


def read_gpt_copy(image: DiskImage, lba: int, ss: int, total: int) -> tuple[GptHeader, bytes] | str:
    """One GPT copy (header at ``lba`` + its entry array), or why it is unusable.

    ``read_gpt`` picks between the copies; a verifier that must judge each copy on its own (an
    exported template needs both intact) calls this directly.
    """
    try:
        return _parse_header(image, lba, ss, total)
    except _Bad as bad:
        return str(bad)


def read_gpt(image: DiskImage) -> GptTable:
    """Parse the GPT of ``image``; see the module docstring for what is reported how."""
    declared = image.declared_sector_size
    sizes = [declared] if declared in SECTOR_SIZES else []
    sizes += [s for s in SECTOR_SIZES if s not in sizes]
    mbr = _mbr_kind(image)

    first_problem: dict[int, str] = {}
    for ss in sizes:
        total = image.virtual_size // ss
        if total < 3:
            continue
        primary = read_gpt_copy(image, 1, ss, total)
        if isinstance(primary, tuple):
            table = _from_primary(image, ss, total, *primary)
        else:
            first_problem[ss] = primary
            backup = read_gpt_copy(image, total - 1, ss, total)
            if not isinstance(backup, tuple):
                continue
            table = _from_backup(ss, total, primary, *backup)
        table.mbr = mbr
        _mbr_findings(table)
        if declared and ss != declared:
            table.findings.append(
                Finding(
                    Severity.ERROR,
                    f"The GPT is written for {ss}-byte sectors, but the image declares {declared}-byte "
                    "logical sectors: a VM would not find the partitions",
                )
            )
        return table

    ss = sizes[0]
    table = GptTable(sector_size=ss, total_sectors=image.virtual_size // ss, mbr=mbr)
    if mbr == "mbr":
        why = "the disk has an MBR (DOS) partition table; templates need GPT, convert a copy with gdisk"
    else:
        why = first_problem.get(ss, "the disk is too small to hold one")
    table.findings.append(Finding(Severity.ERROR, f"No GPT partition table found ({why})"))
    return table


def _from_primary(image: DiskImage, ss: int, total: int, header: GptHeader, array: bytes) -> GptTable:
    table = GptTable(ss, total, header, _parse_entries(array, header), "primary")
    last = total - 1
    candidates = [header.backup_lba] if 1 < header.backup_lba < total else []
    if last not in candidates:
        candidates.append(last)
    problem = "backup header is missing"
    for lba in candidates:
        backup = read_gpt_copy(image, lba, ss, total)
        if isinstance(backup, str):
            problem = backup
            continue
        bheader, barray = backup
        if bheader.disk_guid != header.disk_guid or barray != array:
            table.findings.append(
                Finding(Severity.WARNING, "The backup GPT differs from the primary; the primary was used")
            )
        if lba != last:
            table.findings.append(
                Finding(
                    Severity.WARNING,
                    f"The backup GPT is at LBA {lba}, not at the end of the disk (LBA {last}): the image was "
                    "probably resized; fix a copy with sgdisk -e",
                )
            )
        return table
    table.findings.append(
        Finding(
            Severity.WARNING,
            f"The backup GPT is damaged or missing ({problem}); the primary GPT is intact. "
            "Fix a copy with sgdisk -e (rewrites the backup)",
        )
    )
    return table


def _from_backup(ss: int, total: int, problem: str, header: GptHeader, array: bytes) -> GptTable:
    table = GptTable(ss, total, header, _parse_entries(array, header), "backup")
    table.findings.append(
        Finding(
            Severity.ERROR,
            f"Primary GPT is damaged ({problem}); partitions were read from the backup GPT. "
            f"Do not use it as a template base until repaired: {REPAIR_HINT}",
        )
    )
    return table


def _mbr_findings(table: GptTable) -> None:
    if table.mbr == "hybrid":
        table.findings.append(
            Finding(
                Severity.WARNING,
                "The MBR is a hybrid MBR (it lists partitions besides the GPT): firmware or tools may "
                "use the MBR view; convert a copy to a plain protective MBR with gdisk (x, n, w)",
            )
        )
    elif table.mbr in ("missing", "mbr"):
        table.findings.append(
            Finding(
                Severity.WARNING,
                "The protective MBR is missing: MBR-only tools may think the disk is empty and overwrite it; "
                "gdisk writes one when it saves a copy (w)",
            )
        )
