"""create_gpt graded by sgdisk: the table it writes must be one sgdisk finds clean and reads back as asked."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from app.disk.partitioning import (
    NewPartition,
    PlacedPartition,
    _parted_errors,
    _write_with_parted,
    create_gpt,
)
from app.errors import PartitionTableError
from tests.conftest import require_tool, run, sgdisk_partitions

MiB = 1024 * 1024
ESP = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
XBOOTLDR = "bc13c2ff-59e6-4262-a352-b275fd6f7172"
ROOT_X86_64 = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
SWAP = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"
DISK_GUID = "5357a1d3-0000-4000-8000-000000000001"

LAYOUT = [
    NewPartition("ESP", ESP, 33 * MiB, partition_guid="5357a1d3-0000-4000-8000-00000000000e"),
    NewPartition("XBOOTLDR", XBOOTLDR, 8 * MiB + 512),  # not a MiB multiple: the next start must realign
    NewPartition("swap", SWAP, 4 * MiB, attributes=1 << 63),
    NewPartition("root-x86-64", ROOT_X86_64, None),
]


@pytest.fixture
def table(tmp_path: Path) -> tuple[Path, list[PlacedPartition]]:
    require_tool("sgdisk")
    path = tmp_path / "disk.raw"
    return path, create_gpt(path, 80 * MiB, LAYOUT, disk_guid=DISK_GUID)


def test_sgdisk_finds_no_problems(table: tuple[Path, list[PlacedPartition]]) -> None:
    path, _ = table
    assert "No problems found" in run("sgdisk", "-v", path).stdout
    assert path.stat().st_size == 80 * MiB
    assert DISK_GUID in run("sgdisk", "-p", path).stdout.lower()


def test_sgdisk_reads_back_names_types_and_guids(table: tuple[Path, list[PlacedPartition]]) -> None:
    path, placed = table
    seen = sgdisk_partitions(path)
    assert [p["number"] for p in seen] == [1, 2, 3, 4]
    assert [p["name"] for p in seen] == [r.name for r in LAYOUT]
    assert [p["type_guid"] for p in seen] == [r.type_guid for r in LAYOUT]
    assert [p["partition_guid"] for p in seen] == [p.partition_guid for p in placed]
    assert seen[0]["partition_guid"] == LAYOUT[0].partition_guid
    assert all(uuid.UUID(p.partition_guid).version == 4 for p in placed[1:])  # random when not given
    assert [(p["first_lba"], p["last_lba"]) for p in seen] == [(p.first_lba, p.last_lba) for p in placed]


def test_starts_are_mib_aligned_and_sizes_exact(table: tuple[Path, list[PlacedPartition]]) -> None:
    path, placed = table
    seen = sgdisk_partitions(path)
    assert all(p["first_lba"] % 2048 == 0 for p in seen)
    assert seen[0]["first_lba"] == 2048
    for req, p in zip(LAYOUT[:3], placed[:3], strict=True):
        assert p.size_bytes == -(-req.size_bytes // 512) * 512
    assert seen[2]["first_lba"] == 2048 + (33 + 8 + 1) * 2048  # XBOOTLDR's extra sector costs a MiB
    assert "Attribute flags: 8000000000000000" in run("sgdisk", "-i", "3", path).stdout


def test_rest_of_disk_fills_to_last_usable_lba(table: tuple[Path, list[PlacedPartition]]) -> None:
    path, placed = table
    out = run("sgdisk", "-p", path).stdout
    last_usable = int(out.split("last usable sector is")[1].split()[0])
    assert sgdisk_partitions(path)[-1]["last_lba"] == last_usable == placed[-1].last_lba
    assert last_usable == 80 * MiB // 512 - 34


def test_explicit_start_is_honoured(tmp_path: Path) -> None:
    """Re-layouts place partitions themselves (e.g. leave room before a shifted partition)."""
    path = tmp_path / "disk.raw"
    create_gpt(
        path,
        32 * MiB,
        [
            NewPartition("a", ROOT_X86_64, 4 * MiB),
            NewPartition("b", SWAP, 4 * MiB, start_lba=16 * 2048),
        ],
    )
    assert [p["first_lba"] for p in sgdisk_partitions(path)] == [2048, 16 * 2048]
    assert "No problems found" in run("sgdisk", "-v", path).stdout


def test_rewrite_keeps_data_and_replaces_table(tmp_path: Path) -> None:
    path = tmp_path / "disk.raw"
    create_gpt(path, 16 * MiB, [NewPartition("old", SWAP, 2 * MiB), NewPartition("x", SWAP, 2 * MiB)])
    with open(path, "r+b") as f:
        f.seek(4 * MiB)
        f.write(b"payload")
    create_gpt(path, 16 * MiB, [NewPartition("new", ROOT_X86_64, None)])
    assert [p["name"] for p in sgdisk_partitions(path)] == ["new"]
    assert path.read_bytes()[4 * MiB : 4 * MiB + 7] == b"payload"


@pytest.mark.parametrize(
    "layout",
    [
        [NewPartition("big", ROOT_X86_64, 16 * MiB)],  # larger than the disk
        [NewPartition("a", SWAP, 8 * MiB), NewPartition("b", SWAP, 8 * MiB)],  # the second does not fit
        [NewPartition("a", SWAP, None), NewPartition("b", SWAP, MiB)],  # "rest" not last
        [NewPartition("a", SWAP, MiB), NewPartition("b", SWAP, MiB, start_lba=2050)],  # overlap
        [NewPartition("x" * 37, SWAP, MiB)],  # name too long for GPT
        [NewPartition("a", "not-a-guid", MiB)],
        [],
    ],
)
def test_bad_requests_raise_partition_table_error(tmp_path: Path, layout: list[NewPartition]) -> None:
    path = tmp_path / "disk.raw"
    with pytest.raises(PartitionTableError) as info:
        create_gpt(path, 16 * MiB, layout)
    assert "\n" not in info.value.message
    assert not path.exists()  # validated before touching the file


def test_libparted_errors_are_wrapped(tmp_path: Path) -> None:
    """A libparted refusal (here: overlap, bypassing our own check) becomes a one-line PartitionTableError."""
    path = tmp_path / "disk.raw"
    path.write_bytes(bytes(16 * MiB))
    planned = [
        PlacedPartition(1, "a", SWAP, str(uuid.uuid4()), 2048, 4095),
        PlacedPartition(2, "b", SWAP, str(uuid.uuid4()), 4000, 8000),
    ]
    with pytest.raises(PartitionTableError, match="overlapping"), _parted_errors("cannot write"):
        _write_with_parted(path, planned)


def test_disk_too_small_for_gpt(tmp_path: Path) -> None:
    with pytest.raises(PartitionTableError):
        create_gpt(tmp_path / "tiny.raw", 16 * 1024, [NewPartition("a", SWAP, 512)])
