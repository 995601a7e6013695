"""Write a GPT partition table onto a raw image file with pyparted, as an ordinary user.

libparted is the partitioner every distribution ships and tests: it lays out the protective MBR, both
GPT headers and entry arrays, and refuses overlaps. libparted 3.5 cannot set the disk and partition GUIDs
or most type GUIDs (``Partition.type_uuid`` needs 3.6), so those are patched into both entry arrays
afterwards (:func:`_patch_gpt_entries`). The table is committed to the file only, never to the kernel.
"""

from __future__ import annotations

import os
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from app.errors import PartitionTableError

#: libparted always treats image files as 512-byte-sector devices; all LBAs here count 512-byte sectors.
SECTOR_SIZE = 512
#: Partition starts are aligned to 1 MiB, like every modern partitioner (sgdisk, parted, fdisk).
ALIGNMENT_BYTES = 1024 * 1024
#: GPT names are 36 UTF-16 code units.
MAX_NAME_LENGTH = 36

_GPT_SIGNATURE = b"EFI PART"
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")  # the 92 bytes of a GPT header
_ENTRY_GUIDS = struct.Struct("<16s16s")  # type GUID, unique GUID at offset 0 of an entry
_ENTRY_ATTRS_OFFSET = 48


@dataclass(frozen=True)
class NewPartition:
    """A partition to create.

    ``size_bytes`` None means "up to the last usable sector" (only for the last partition). Sizes are
    rounded up to whole sectors. ``start_lba`` None places the partition at the next 1 MiB boundary
    after the previous one; re-layouts pass explicit starts. ``partition_guid`` None draws a random one;
    re-layouts pass the original so ``PARTUUID=`` references keep working.
    """

    name: str
    type_guid: str
    size_bytes: int | None
    partition_guid: str | None = None
    start_lba: int | None = None
    attributes: int = 0


@dataclass(frozen=True)
class PlacedPartition:
    """A partition as written: GPT number (1-based), inclusive LBA range, GUIDs lower-case."""

    number: int
    name: str
    type_guid: str
    partition_guid: str
    first_lba: int
    last_lba: int
    attributes: int = 0

    @property
    def offset(self) -> int:
        return self.first_lba * SECTOR_SIZE

    @property
    def size_bytes(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR_SIZE


def create_gpt(
    path: Path,
    size_bytes: int,
    partitions: Sequence[NewPartition],
    disk_guid: str | None = None,
) -> list[PlacedPartition]:
    """Write a fresh GPT with ``partitions`` onto the raw image ``path`` and return where they landed.

    The file is created if missing and set to exactly ``size_bytes`` (sparse); data outside the GPT
    structures is left alone, so filesystems may be written before or after. Any existing partition
    table is replaced. Raises :class:`PartitionTableError` if the layout does not fit or is invalid.
    """
    path = Path(path)
    if size_bytes <= 0 or size_bytes % SECTOR_SIZE:
        raise PartitionTableError(
            f"disk size {size_bytes} is not a positive multiple of {SECTOR_SIZE} bytes",
            "choose a size in whole sectors",
        )
    total_sectors = size_bytes // SECTOR_SIZE
    # Primary header + 128 entries of 128 bytes in front, the same again at the end.
    first_usable = 2 + 32
    last_usable = total_sectors - 1 - 32 - 1
    if last_usable < first_usable:
        raise PartitionTableError(f"disk of {size_bytes} bytes is too small for a GPT", "use a larger disk")
    disk_uuid = _parse_guid(disk_guid, "disk GUID") if disk_guid else uuid.uuid4()
    planned = _plan(partitions, first_usable, last_usable)

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise PartitionTableError(
            f"cannot open {path}: {e.strerror}", "check the path and permissions"
        ) from e
    try:
        os.ftruncate(fd, size_bytes)
    except OSError as e:
        raise PartitionTableError(f"cannot resize {path}: {e.strerror}", "check free space") from e
    finally:
        os.close(fd)

    with _parted_errors(f"cannot write the partition table of {path}"):
        _write_with_parted(path, planned)
    _patch_gpt_entries(path, disk_uuid, planned)
    return planned


def _plan(partitions: Sequence[NewPartition], first_usable: int, last_usable: int) -> list[PlacedPartition]:
    """Turn requests into exact LBA ranges, checking names, GUIDs, alignment and fit ourselves.

    Doing the arithmetic here (not with libparted's constraint solver) keeps the result predictable:
    the caller gets exactly the starts it asked for, or an error that says why not.
    """
    if not partitions:
        raise PartitionTableError("no partitions requested", "request at least one partition")
    if len(partitions) > 128:
        raise PartitionTableError(f"{len(partitions)} partitions requested", "a GPT holds at most 128")
    align = ALIGNMENT_BYTES // SECTOR_SIZE
    placed: list[PlacedPartition] = []
    next_free = first_usable
    for number, req in enumerate(partitions, 1):
        label = f"partition {number} ({req.name!r})"
        if len(req.name.encode("utf-16-le")) > 2 * MAX_NAME_LENGTH:
            raise PartitionTableError(f"{label}: name longer than {MAX_NAME_LENGTH} characters", "shorten it")
        type_uuid = _parse_guid(req.type_guid, f"{label} type GUID")
        part_uuid = _parse_guid(req.partition_guid, f"{label} GUID") if req.partition_guid else uuid.uuid4()
        if not 0 <= req.attributes < 1 << 64:
            raise PartitionTableError(f"{label}: attributes out of range", "use a 64-bit value")
        if req.start_lba is None:
            start = -(-next_free // align) * align
        else:
            start = req.start_lba
            if start < next_free:
                raise PartitionTableError(
                    f"{label} starts at LBA {start}, before the first free LBA {next_free}",
                    "partitions must be in order and must not overlap",
                )
        if req.size_bytes is None:
            if number != len(partitions):
                raise PartitionTableError(f"{label}: only the last partition can fill the rest of the disk")
            end = last_usable
        else:
            if req.size_bytes <= 0:
                raise PartitionTableError(f"{label}: size must be positive", "give a size in bytes")
            end = start + -(-req.size_bytes // SECTOR_SIZE) - 1
        if end > last_usable or start > end:
            need = (end - last_usable) * SECTOR_SIZE if end > last_usable else 0
            raise PartitionTableError(
                f"{label} does not fit: it would end at LBA {end}, the last usable LBA is {last_usable}"
                + (f" ({need} bytes short)" if need else ""),
                "make the disk larger or the partitions smaller",
            )
        placed.append(
            PlacedPartition(number, req.name, str(type_uuid), str(part_uuid), start, end, req.attributes)
        )
        next_free = end + 1
    return placed


def _write_with_parted(path: Path, planned: Sequence[PlacedPartition]) -> None:
    """Create the label and partitions with libparted at exactly the planned ranges, then commit."""
    # lazy: pyparted loads libparted, and most commands never partition
    import parted

    device = parted.getDevice(str(path))
    try:
        if device.sectorSize != SECTOR_SIZE:
            raise PartitionTableError(
                f"{path} has {device.sectorSize}-byte sectors",
                f"only {SECTOR_SIZE}-byte sectors are supported",
            )
        disk = parted.freshDisk(device, "gpt")
        for p in planned:
            geometry = parted.Geometry(device=device, start=p.first_lba, end=p.last_lba)
            part = parted.Partition(disk=disk, type=parted.PARTITION_NORMAL, geometry=geometry)
            disk.addPartition(part, constraint=parted.Constraint(exactGeom=geometry))
            part.set_name(p.name)
            if hasattr(part.getPedPartition(), "set_type_uuid"):  # libparted >= 3.6
                part.type_uuid = uuid.UUID(p.type_guid).bytes_le
            if part.number != p.number:
                raise PartitionTableError(f"libparted numbered partition {p.number} as {part.number}")
        # commitToDevice, not commit: the OS half would ask the kernel to re-read a block device.
        disk.commitToDevice()
    finally:
        device.removeFromCache()


def _patch_gpt_entries(path: Path, disk_guid: uuid.UUID, planned: Sequence[PlacedPartition]) -> None:
    """Set disk GUID and each entry's type GUID, unique GUID and attributes in both GPT copies.

    Reads the primary header to find the backup, checks both CRCs before touching anything (so we
    never "fix" a table we did not just write), then rewrites entry arrays and headers.
    """
    try:
        with open(path, "r+b") as f:
            primary = _read_header(f, 1)
            backup = _read_header(f, primary[6])  # alternate LBA
            for lba, header in ((1, primary), (primary[6], backup)):
                entries_lba, count, entry_size = header[10], header[11], header[12]
                f.seek(entries_lba * SECTOR_SIZE)
                entries = bytearray(f.read(count * entry_size))
                if zlib.crc32(entries) != header[13]:
                    raise PartitionTableError(f"GPT entry array at LBA {entries_lba} has a bad CRC")
                for p in planned:
                    at = (p.number - 1) * entry_size
                    first, last = struct.unpack_from("<QQ", entries, at + 32)
                    if (first, last) != (p.first_lba, p.last_lba):
                        raise PartitionTableError(f"GPT entry {p.number} is not where libparted was told")
                    _ENTRY_GUIDS.pack_into(
                        entries, at, uuid.UUID(p.type_guid).bytes_le, uuid.UUID(p.partition_guid).bytes_le
                    )
                    struct.pack_into("<Q", entries, at + _ENTRY_ATTRS_OFFSET, p.attributes)
                fields = list(header)
                fields[9] = disk_guid.bytes_le
                fields[13] = zlib.crc32(entries)
                fields[3] = 0
                raw = bytearray(_HEADER.pack(*fields))
                struct.pack_into("<I", raw, 16, zlib.crc32(raw[: fields[2]]))
                f.seek(entries_lba * SECTOR_SIZE)
                f.write(entries)
                f.seek(lba * SECTOR_SIZE)
                f.write(raw)
    except OSError as e:
        raise PartitionTableError(f"cannot update the GPT of {path}: {e.strerror}") from e


def _read_header(f: BinaryIO, lba: int) -> tuple[Any, ...]:
    """The GPT header at ``lba`` as a tuple of :data:`_HEADER` fields, after checking signature and CRC."""
    f.seek(lba * SECTOR_SIZE)
    sector = f.read(SECTOR_SIZE)
    if len(sector) < _HEADER.size or not sector.startswith(_GPT_SIGNATURE):
        raise PartitionTableError(f"no GPT header at LBA {lba} after libparted wrote it")
    fields = _HEADER.unpack_from(sector)
    size = fields[2]
    if not _HEADER.size <= size <= SECTOR_SIZE:
        raise PartitionTableError(f"GPT header at LBA {lba} has an invalid size {size}")
    raw = bytearray(sector[:size])
    struct.pack_into("<I", raw, 16, 0)
    if zlib.crc32(raw) != fields[3]:
        raise PartitionTableError(f"GPT header at LBA {lba} has a bad CRC")
    return fields


def _parse_guid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        raise PartitionTableError(
            f"invalid {what}: {text!r}", "write it as xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
        ) from None


def _parted_exception_types() -> tuple[type[BaseException], ...]:
    """Every exception class pyparted defines: they share no common base, so collect them."""
    # lazy: libparted, as in _write_with_parted
    import _ped
    import parted

    found = {
        obj
        for module in (_ped, parted)
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Exception)
    }
    return tuple(found)


# libparted reports problems through one process-wide exception handler; serialise our use of it.
_PARTED_LOCK = threading.Lock()


@contextmanager
def _parted_errors(context: str) -> Iterator[None]:
    """Run libparted calls with a handler that answers every question "cancel", and turn errors into
    :class:`PartitionTableError` with libparted's own one-line message.

    Without our handler libparted may print "Fix/Ignore/Cancel?" style prompts; a library must never
    prompt. Warnings with only an OK/Ignore answer are ignored (they are informational for files).
    """
    # lazy: libparted, as in _write_with_parted
    import _ped
    import parted

    messages: list[str] = []

    def handler(exc_type: int, options: int, message: str) -> int:
        messages.append(" ".join(str(message).split()))
        if exc_type in (_ped.EXCEPTION_TYPE_INFORMATION, _ped.EXCEPTION_TYPE_WARNING) and options in (
            _ped.EXCEPTION_OPT_OK_CANCEL,
            _ped.EXCEPTION_OPT_IGNORE_CANCEL,
        ):
            return int(
                _ped.EXCEPTION_RESOLVE_OK
                if options == _ped.EXCEPTION_OPT_OK_CANCEL
                else _ped.EXCEPTION_RESOLVE_IGNORE
            )
        if options in (_ped.EXCEPTION_OPT_YES_NO,):
            return int(_ped.EXCEPTION_RESOLVE_NO)
        return int(_ped.EXCEPTION_RESOLVE_CANCEL)

    with _PARTED_LOCK:
        parted.register_exn_handler(handler)
        try:
            yield
        except PartitionTableError:
            raise
        except _parted_exception_types() as e:
            detail = messages[-1] if messages else (" ".join(str(e).split()) or type(e).__name__)
            raise PartitionTableError(
                f"{context}: {detail}", "check the image file and the requested layout"
            ) from e
        finally:
            parted.clear_exn_handler()
