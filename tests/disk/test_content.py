"""Content detection, graded by real mkfs/mkswap/cryptsetup output (magic bytes only where no tool exists)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from app.disk.content import detect_content
from app.disk.image import DiskImage
from tests.conftest import MiB, luks_format, require_tool, run


class BytesImage(DiskImage):
    """A raw disk held in memory; counts reads so tests can hold detect_content to its read budget."""

    format = "raw"

    def __init__(self, data: bytes | bytearray) -> None:
        super().__init__(Path("memory.raw"))
        self.data = bytes(data)
        self.virtual_size = len(self.data)
        self.reads: list[tuple[int, int]] = []

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        self.reads.append((offset, length))
        return self.data[offset : offset + length]


def _file(tmp_path: Path, size: int = 20 * MiB) -> Path:
    path = tmp_path / "part.img"
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def _detect_file(path: Path, prefix: int = 0) -> str:
    """Detect the file's content placed ``prefix`` bytes into a disk (so offsets are exercised)."""
    image = BytesImage(bytes(prefix) + path.read_bytes())
    return detect_content(image, prefix, path.stat().st_size)


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        (["mkfs.vfat"], "fat"),
        (["mkfs.vfat", "-F", "12"], "fat"),
        (["mkfs.vfat", "-F", "16"], "fat"),
        (["mkfs.vfat", "-F", "32", "-S", "4096"], "fat"),
        (["mkfs.ext2", "-q", "-F"], "ext2"),
        (["mkfs.ext3", "-q", "-F"], "ext3"),
        (["mkfs.ext4", "-q", "-F"], "ext4"),
        (["mkswap"], "swap"),
    ],
)
def test_real_filesystems(tmp_path: Path, cmd: list[str], expected: str) -> None:
    require_tool(cmd[0])
    path = _file(tmp_path, 40 * MiB if "32" in cmd else 20 * MiB)
    run(*cmd, path)
    assert _detect_file(path) == expected
    assert _detect_file(path, prefix=1 * MiB) == expected


def test_fat32(tmp_path: Path) -> None:
    path = _file(tmp_path, 40 * MiB)
    run("mkfs.vfat", "-F", "32", path)
    assert path.read_bytes()[82:87] == b"FAT32"
    assert _detect_file(path) == "fat"


def _luks_format(tmp_path: Path, kind: str) -> Path:
    return luks_format(tmp_path / "part.img", kind)


@pytest.mark.parametrize("kind", ["luks1", "luks2"])
def test_luks(tmp_path: Path, kind: str) -> None:
    path = _luks_format(tmp_path, kind)
    assert _detect_file(path) == kind
    assert _detect_file(path, prefix=3 * MiB) == kind


def test_luks2_with_damaged_primary_header_is_found_by_secondary(tmp_path: Path) -> None:
    path = _luks_format(tmp_path, "luks2")
    data = bytearray(path.read_bytes())
    data[:4096] = bytes(4096)  # primary binary header gone; "SKUL" secondary at 16 KiB remains
    assert data[0x4000:0x4004] == b"SKUL"
    assert detect_content(BytesImage(data), 0, len(data)) == "luks2"


def test_xfs(tmp_path: Path) -> None:
    path = _file(tmp_path, 300 * MiB)
    run(require_tool("mkfs.xfs"), "-q", path)
    assert _detect_file(path) == "xfs"
    # The magic alone is enough.
    data = bytearray(2 * MiB)
    data[0:4] = b"XFSB"
    assert detect_content(BytesImage(data), 0, len(data)) == "xfs"


def test_btrfs(tmp_path: Path) -> None:
    path = _file(tmp_path, 128 * MiB)
    run(require_tool("mkfs.btrfs"), "-q", path)
    assert _detect_file(path) == "btrfs"
    data = bytearray(2 * MiB)
    data[0x10040:0x10048] = b"_BHRfS_M"
    assert detect_content(BytesImage(data), 0, len(data)) == "btrfs"
    # The same bytes one byte off are not btrfs.
    shifted = bytearray(2 * MiB)
    shifted[0x10041:0x10049] = b"_BHRfS_M"
    assert detect_content(BytesImage(shifted), 0, len(shifted)) != "btrfs"


def test_empty_and_unknown() -> None:
    zeros = BytesImage(bytes(4 * MiB))
    assert detect_content(zeros, 1 * MiB, 2 * MiB) == "empty"
    noise = BytesImage(os.urandom(1 * MiB))
    assert detect_content(noise, 0, 1 * MiB) == "unknown"
    # Zeros at the start but data before 64 KiB: not empty.
    data = bytearray(1 * MiB)
    data[60000] = 1
    assert detect_content(BytesImage(data), 0, len(data)) == "unknown"
    # Data after 64 KiB does not count: "empty" is a cheap check by design.
    data = bytearray(1 * MiB)
    data[70000] = 1
    assert detect_content(BytesImage(data), 0, len(data)) == "empty"


def test_mbr_sector_is_not_fat() -> None:
    """0x55AA alone (every MBR has it) must not make a partition "fat"."""
    data = bytearray(1 * MiB)
    data[446 + 4] = 0x83
    data[510:512] = b"\x55\xaa"
    assert detect_content(BytesImage(data), 0, len(data)) == "unknown"


def test_ext_magic_decides_over_a_stale_fat_boot_sector(tmp_path: Path) -> None:
    path = _file(tmp_path)
    run("mkfs.vfat", path)
    fat_boot = path.read_bytes()[:512]
    run("mkfs.ext4", "-q", "-F", path)
    data = bytearray(path.read_bytes())
    data[:512] = fat_boot
    assert detect_content(BytesImage(data), 0, len(data)) == "ext4"


def test_ext_feature_rules() -> None:
    def sb(compat: int, incompat: int, ro: int) -> BytesImage:
        data = bytearray(1 * MiB)
        struct.pack_into("<H", data, 1024 + 0x38, 0xEF53)
        struct.pack_into("<III", data, 1024 + 0x5C, compat, incompat, ro)
        return BytesImage(data)

    assert detect_content(sb(0, 0x2, 0x1), 0, MiB) == "ext2"
    assert detect_content(sb(0x4, 0x2, 0x1), 0, MiB) == "ext3"
    assert detect_content(sb(0x4, 0x2 | 0x40, 0x1), 0, MiB) == "ext4"  # extents
    assert detect_content(sb(0x4, 0x2, 0x400), 0, MiB) == "ext4"  # metadata_csum
    assert detect_content(sb(0, 0x8, 0), 0, MiB) == "unknown"  # external journal device


def test_read_budget_and_bounds() -> None:
    """At most two reads per partition, none past the disk end, small ones."""
    image = BytesImage(bytes(3 * MiB))
    assert detect_content(image, 1 * MiB, 1 * MiB) == "empty"
    assert len(image.reads) <= 2
    assert sum(n for _, n in image.reads) <= 64 * 1024 + 4096
    image.reads.clear()
    # A partition that claims to run 10 MiB past the end of a 3 MiB disk.
    assert detect_content(image, 2 * MiB, 10 * MiB) == "empty"
    assert all(off + n <= image.virtual_size for off, n in image.reads)
    # Starting beyond the end: nothing to read.
    image.reads.clear()
    assert detect_content(image, 5 * MiB, 1 * MiB) == "unknown"
    assert image.reads == []


def test_tiny_regions() -> None:
    image = BytesImage(b"LUKS\xba\xbe\x00\x02" + bytes(504))
    assert detect_content(image, 0, 512) == "luks2"
    assert detect_content(image, 0, 5) == "unknown"
    assert detect_content(BytesImage(bytes(512)), 0, 512) == "empty"
