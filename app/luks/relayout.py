"""Plan the re-layout of a disk whose partitions get LUKS2-encrypted (pure arithmetic, no I/O).

The LUKS2 header must sit in front of the data segment, and the segment must hold the *whole*
plaintext, so each encrypted partition grows by the header space and every later partition moves right
(by whole MiB); the disk grows so the backup GPT lands at the new end. Numbers, GUIDs, type GUIDs, names
and attributes never change, so ``PARTUUID=``, gpt-auto and fstab labels still find their partitions.
Every request that could only produce a broken template is refused with a :class:`RelayoutError`.
:mod:`app.luks.relaid_image` executes a plan.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.disk.model import DiskLayout, Partition, Role
from app.disk.partitioning import NewPartition
from app.errors import ShieldwrightError
from app.luks.params import LUKS_SECTOR_SIZES

MiB = 1024 * 1024
#: Output LBAs always count 512-byte sectors (create_gpt writes 512-byte-sector tables only).
LBA = 512
#: Partitions and the disk end are kept on 1 MiB boundaries, like every modern partitioner.
ALIGN = MiB
#: GPT with 128 entries: protective MBR + header + 32 sectors of entries in front; 33 sectors behind.
GPT_FRONT_SECTORS = 34
GPT_BACK_SECTORS = 33
#: Below this a partition holds no filesystem worth protecting (BIOS-boot or metadata partitions).
MIN_PLAINTEXT = MiB
#: LUKS2 encryption sector sizes a re-laid-out template may use, the default first.


class RelayoutError(ShieldwrightError):
    """The requested encryption cannot be laid out on this disk."""


class NoSuchPartitionError(RelayoutError):
    """A partition number that is not in the table."""


class NotEncryptableError(RelayoutError):
    """A partition that must stay readable in clear (the ESP)."""


class AlreadyEncryptedError(RelayoutError):
    """The partition already holds a LUKS container; its plaintext is out of reach."""


class PartitionTooSmallError(RelayoutError):
    """The partition is too small to be a protected volume."""


class UnsupportedLayoutError(RelayoutError):
    """A disk geometry or numbering the re-layout does not handle."""


@dataclass(frozen=True)
class PlannedPartition:
    """One partition of the output disk and where its bytes come from.

    ``src_first_lba``/``src_last_lba`` locate it in the input, ``first_lba``/``last_lba`` in the
    output (inclusive, 512-byte LBAs). For an encrypted partition the output holds ``data_offset``
    bytes of LUKS2 header, then ``data_size`` bytes of ciphertext: the ``plaintext_size`` input
    bytes followed by zeros up to a whole LUKS sector.
    """

    number: int
    name: str
    type_guid: str
    partition_guid: str
    attributes: int
    src_first_lba: int
    src_last_lba: int
    first_lba: int
    last_lba: int
    encrypt: bool
    data_offset: int = 0
    data_size: int = 0

    @property
    def src_offset(self) -> int:
        return self.src_first_lba * LBA

    @property
    def plaintext_size(self) -> int:
        """Bytes of the input partition (all of them are carried over, encrypted or not)."""
        return (self.src_last_lba - self.src_first_lba + 1) * LBA

    @property
    def offset(self) -> int:
        return self.first_lba * LBA

    @property
    def size_bytes(self) -> int:
        return (self.last_lba - self.first_lba + 1) * LBA

    @property
    def end(self) -> int:
        """Output byte offset just past the partition."""
        return (self.last_lba + 1) * LBA

    @property
    def growth(self) -> int:
        return self.size_bytes - self.plaintext_size

    def new_partition(self) -> NewPartition:
        """The request that makes :func:`create_gpt` write exactly this entry."""
        return NewPartition(
            name=self.name,
            type_guid=self.type_guid,
            size_bytes=self.size_bytes,
            partition_guid=self.partition_guid,
            start_lba=self.first_lba,
            attributes=self.attributes,
        )


@dataclass(frozen=True)
class RelayoutPlan:
    """The output disk: its size, GUID and partitions (in number order, which is also disk order)."""

    src_size: int
    disk_size: int
    disk_guid: str | None
    data_offset: int
    sector_size: int  # LUKS2 encryption sector size of the encrypted partitions
    partitions: tuple[PlannedPartition, ...]

    @property
    def encrypted(self) -> tuple[PlannedPartition, ...]:
        return tuple(p for p in self.partitions if p.encrypt)

    def partition(self, number: int) -> PlannedPartition:
        for p in self.partitions:
            if p.number == number:
                return p
        raise KeyError(number)

    def new_partitions(self) -> list[NewPartition]:
        return [p.new_partition() for p in self.partitions]


def plan_relayout(
    layout: DiskLayout, encrypt: Iterable[int], data_offset: int, *, sector_size: int = 4096
) -> RelayoutPlan:
    """Where every partition of ``layout`` goes when the partitions numbered ``encrypt`` get LUKS2.

    ``data_offset`` is the LUKS2 header space (the segment offset, 16 MiB by default) and
    ``sector_size`` the LUKS2 encryption sector size: a plaintext that is not a whole number of
    sectors is padded with zeros at the end of the data segment (the filesystem never sees them).
    Raises a :class:`RelayoutError` subclass for every request that cannot work.
    """
    wanted = set(encrypt)
    if sector_size not in LUKS_SECTOR_SIZES:
        raise RelayoutError(f"LUKS2 sector size {sector_size} is not supported", "use 4096 or 512")
    if data_offset <= 0 or data_offset % 4096:
        raise RelayoutError(
            f"LUKS2 data offset {data_offset} is not a positive multiple of 4096", "use the default 16 MiB"
        )
    if not wanted:
        raise RelayoutError("no partition to encrypt", "name at least one with --partition N")
    _check_disk(layout)
    parts = sorted(layout.partitions, key=lambda p: p.first_lba)
    by_number = {p.number: p for p in parts}
    missing = sorted(wanted - set(by_number))
    if missing:
        have = ", ".join(str(n) for n in sorted(by_number)) or "none"
        raise NoSuchPartitionError(
            f"partition {join_numbers(missing)} {'is' if len(missing) == 1 else 'are'} not on this disk "
            f"(its partitions: {have})",
            "run `shieldwright inspect IMAGE` to see the numbers",
        )
    _check_order(layout, parts)
    for n in sorted(wanted):
        _check_encryptable(by_number[n], sector_size)

    planned: list[PlannedPartition] = []
    shift = 0  # bytes every following partition moves right; a multiple of ALIGN
    for p in parts:
        enc = p.number in wanted
        first = p.first_lba + shift // LBA
        if enc:
            data_size = _round_up(p.size_bytes, sector_size)
            size = data_offset + data_size
        else:
            data_size, size = 0, p.size_bytes
        last = first + size // LBA - 1
        planned.append(
            PlannedPartition(
                number=p.number,
                name=p.name,
                type_guid=p.type_guid,
                partition_guid=p.partition_guid,
                attributes=p.attributes,
                src_first_lba=p.first_lba,
                src_last_lba=p.last_lba,
                first_lba=first,
                last_lba=last,
                encrypt=enc,
                data_offset=data_offset if enc else 0,
                data_size=data_size,
            )
        )
        shift = _round_up(shift + size - p.size_bytes, ALIGN)

    # The backup GPT moves to the new end; keep whatever room the input had after its partitions.
    disk_size = _round_up(layout.virtual_size + shift, ALIGN)
    needed = (planned[-1].last_lba + 1 + GPT_BACK_SECTORS) * LBA if planned else 0
    disk_size = max(disk_size, _round_up(needed, ALIGN))
    planned.sort(key=lambda q: q.number)
    return RelayoutPlan(
        src_size=layout.virtual_size,
        disk_size=disk_size,
        disk_guid=layout.disk_guid,
        data_offset=data_offset,
        sector_size=sector_size,
        partitions=tuple(planned),
    )


def _check_disk(layout: DiskLayout) -> None:
    if layout.disk_guid is None:
        raise UnsupportedLayoutError(
            f"{layout.path} has no readable GPT", "run `shieldwright inspect` on it to see why"
        )
    if layout.sector_size != LBA:
        raise UnsupportedLayoutError(
            f"{layout.path} uses {layout.sector_size}-byte logical sectors; re-laying it out for "
            "encryption is only supported on 512-byte-sector disks",
            "convert the base image to a 512-byte-sector disk first",
        )


def _check_order(layout: DiskLayout, parts: list[Partition]) -> None:
    """Partitions inside the disk, not overlapping, numbered 1..n in disk order (what create_gpt writes)."""
    prev: Partition | None = None
    for p in parts:
        if p.first_lba < GPT_FRONT_SECTORS:
            raise UnsupportedLayoutError(
                f"partition {p.number} starts at LBA {p.first_lba}, inside the area a 128-entry GPT needs",
                "move it to LBA 2048 or later on a copy of the image",
            )
        if (p.last_lba + 1) * LBA > layout.virtual_size:
            raise UnsupportedLayoutError(
                f"partition {p.number} ends at LBA {p.last_lba}, beyond the end of the disk",
                "fix the partition table first (`shieldwright inspect` shows the problem)",
            )
        if prev is not None and p.first_lba <= prev.last_lba:
            raise UnsupportedLayoutError(
                f"partitions {prev.number} and {p.number} overlap",
                "fix the partition table first (`shieldwright inspect` shows the problem)",
            )
        prev = p
    numbers = [p.number for p in parts]
    if numbers != list(range(1, len(parts) + 1)):
        raise UnsupportedLayoutError(
            f"partition numbers {', '.join(map(str, numbers))} (in disk order) are not 1..{len(parts)} "
            "in disk order, which the re-laid-out table must keep",
            "renumber a copy of the image with `sgdisk --sort`",
        )


def _check_encryptable(p: Partition, sector_size: int) -> None:
    if p.role is Role.ESP:
        raise NotEncryptableError(
            f"partition {p.number} is the EFI System Partition, which is never encrypted: "
            "the firmware must read it before anything can unlock a key",
            "encrypt the root (and XBOOTLDR) partitions; the ESP is protected by signing what it holds",
        )
    if p.content in ("luks1", "luks2"):
        raise AlreadyEncryptedError(
            f"partition {p.number} already holds a {p.content.upper()} container, whose contents "
            "cannot be read without its key",
            "leave it out of --partition and protect it catalog-only (hashed as it is, not re-encrypted)",
        )
    if p.size_bytes < max(MIN_PLAINTEXT, sector_size):
        raise PartitionTooSmallError(
            f"partition {p.number} is {p.size_bytes} bytes; a protected volume needs at least "
            f"{max(MIN_PLAINTEXT, sector_size) // 1024} KiB",
            "encrypt partitions that hold a filesystem",
        )


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


def join_numbers(numbers: list[int]) -> str:
    """``1``, ``1 and 2``, ``1, 2 and 3``."""
    text = [str(n) for n in numbers]
    return ", ".join(text[:-1]) + " and " + text[-1] if len(text) > 1 else text[0]
