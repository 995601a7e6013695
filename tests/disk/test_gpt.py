"""GPT parsing and layout findings, graded by sgdisk/fdisk and by hand-damaged copies of real tables."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.disk import partition_types as pt
from app.disk.gpt import read_gpt
from app.disk.image import DiskImage
from app.disk.layout import layout_of
from app.disk.model import DiskLayout, Severity
from app.errors import ShieldwrightError
from tests.conftest import MiB, PartSpec, luks_format, make_gpt_image, require_tool, run, sgdisk_partitions

SECTOR = 512


class FileImage(DiskImage):
    """A raw image read straight from a file: this test's own reader, independent of app.disk.formats."""

    format = "raw"

    def __init__(self, path: Path, declared_sector_size: int | None = None) -> None:
        super().__init__(path)
        self.data = Path(path).read_bytes()
        self.virtual_size = len(self.data)
        self.declared_sector_size = declared_sector_size

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        return self.data[offset : offset + length]


class OverlayImage(DiskImage):
    """A base disk with its first and last sectors replaced by mutable copies (cheap per fuzz example)."""

    format = "raw"

    def __init__(self, base: bytes, head_len: int, tail_len: int) -> None:
        super().__init__(Path("overlay.raw"))
        self.base = base
        self.virtual_size = len(base)
        self.head = bytearray(base[:head_len])
        self.tail_at = len(base) - tail_len
        self.tail = bytearray(base[self.tail_at :])

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        out = bytearray(self.base[offset : offset + length])
        end = offset + length
        if offset < len(self.head):
            n = min(end, len(self.head)) - offset
            out[:n] = self.head[offset : offset + n]
        if end > self.tail_at:
            start = max(offset, self.tail_at)
            out[start - offset :] = self.tail[start - self.tail_at : end - self.tail_at]
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        for i, b in enumerate(data):
            pos = offset + i
            if pos < len(self.head):
                self.head[pos] = b
            elif pos >= self.tail_at:
                self.tail[pos - self.tail_at] = b


def parts_as_sgdisk(layout: DiskLayout) -> list[dict[str, object]]:
    keys = ("number", "type_guid", "partition_guid", "first_lba", "last_lba", "name")
    return [{k: getattr(p, k) for k in keys} for p in layout.partitions]


def messages(layout: DiskLayout, severity: Severity | None = None) -> list[str]:
    return [f.message for f in layout.findings if severity is None or f.severity is severity]


def writable_copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy.raw"
    shutil.copyfile(src, dst)
    return dst


# --- independent GPT patching (test tooling: edits a real table, keeps both copies' CRCs right) ----


def _headers(f, ss: int = SECTOR) -> list[int]:
    f.seek(0, 2)
    return [1, f.tell() // ss - 1]


def patch_entry(path: Path, number: int, ss: int = SECTOR, **fields: object) -> None:
    """Change first/last LBA or unique GUID of entry ``number`` in both GPTs and fix all CRCs."""
    with open(path, "r+b") as f:
        for lba in _headers(f, ss):
            f.seek(lba * ss)
            hdr = bytearray(f.read(ss))
            hsize = struct.unpack_from("<I", hdr, 12)[0]
            elba, count, esize = struct.unpack_from("<QII", hdr, 72)
            f.seek(elba * ss)
            array = bytearray(f.read(count * esize))
            base = (number - 1) * esize
            if "first_lba" in fields:
                struct.pack_into("<Q", array, base + 32, fields["first_lba"])
            if "last_lba" in fields:
                struct.pack_into("<Q", array, base + 40, fields["last_lba"])
            if "guid_raw" in fields:
                array[base + 16 : base + 32] = fields["guid_raw"]
            f.seek(elba * ss)
            f.write(array)
            struct.pack_into("<I", hdr, 88, zlib.crc32(array))
            struct.pack_into("<I", hdr, 16, 0)
            struct.pack_into("<I", hdr, 16, zlib.crc32(hdr[:hsize]))
            f.seek(lba * ss)
            f.write(hdr)


def fix_crcs(image: OverlayImage, ss: int = SECTOR) -> None:
    """Recompute array and header CRCs of both headers after fuzzing, so garbage fields reach the parser."""
    for lba in (1, image.virtual_size // ss - 1):
        hdr = bytearray(image.read(lba * ss, ss))
        hsize = struct.unpack_from("<I", hdr, 12)[0]
        elba, count, esize = struct.unpack_from("<QII", hdr, 72)
        if count * esize <= MiB and elba > 0 and (elba * ss + count * esize) <= image.virtual_size:
            struct.pack_into("<I", hdr, 88, zlib.crc32(image.read(elba * ss, count * esize)))
        if 92 <= hsize <= ss:
            struct.pack_into("<I", hdr, 16, 0)
            struct.pack_into("<I", hdr, 16, zlib.crc32(hdr[:hsize]))
        image.write(lba * ss, bytes(hdr))


# --- the intact table --------------------------------------------------------------------------------


def test_small_disk_matches_sgdisk(small_disk: Path) -> None:
    layout = layout_of(FileImage(small_disk))
    assert parts_as_sgdisk(layout) == sgdisk_partitions(small_disk)
    assert layout.sector_size == 512
    assert [p.content for p in layout.partitions] == ["fat", "ext4", "ext4", "swap"]
    assert [p.type_name for p in layout.partitions][:3] == [
        "EFI System Partition",
        "XBOOTLDR (extended boot)",
        "Linux root (x86-64)",
    ]
    assert all(p.size_bytes == (p.last_lba - p.first_lba + 1) * 512 for p in layout.partitions)
    assert layout.findings == []
    assert not layout.has_errors
    out = run("sgdisk", "-p", small_disk).stdout
    guid_line = next(ln for ln in out.splitlines() if ln.startswith("Disk identifier (GUID)"))
    assert layout.disk_guid == guid_line.split(":", 1)[1].strip().lower()


def test_table_geometry(small_disk: Path) -> None:
    table = read_gpt(FileImage(small_disk))
    total = small_disk.stat().st_size // 512
    assert table.source == "primary" and table.mbr == "protective"
    assert table.first_usable_lba == 34 and table.last_usable_lba == total - 34
    assert table.header.backup_lba == total - 1
    assert table.header.num_entries == 128 and table.header.entry_size == 128


# --- damage ---------------------------------------------------------------------------------------


def test_zeroed_primary_header_uses_backup(small_disk: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path)
    with open(disk, "r+b") as f:
        f.seek(512)
        f.write(bytes(512))
    layout = layout_of(FileImage(disk))
    assert parts_as_sgdisk(layout) == sgdisk_partitions(small_disk)
    errors = messages(layout, Severity.ERROR)
    assert len(errors) == 1 and "Primary GPT is damaged" in errors[0] and "backup" in errors[0]
    assert "repair" in errors[0] and "gdisk" in errors[0]
    assert read_gpt(FileImage(disk)).source == "backup"


def test_corrupt_primary_entry_array_uses_backup(small_disk: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path)
    name_of_entry_2 = 2 * 512 + 128 + 56  # LBA 2, second entry, name field
    with open(disk, "r+b") as f:
        f.seek(name_of_entry_2)
        assert f.read(2) == "X".encode("utf-16-le")
        f.seek(name_of_entry_2)
        f.write("Y".encode("utf-16-le"))
    layout = layout_of(FileImage(disk))
    assert [p.name for p in layout.partitions] == ["ESP", "XBOOTLDR", "root-x86-64", "swap"]
    assert parts_as_sgdisk(layout) == sgdisk_partitions(small_disk)
    errors = messages(layout, Severity.ERROR)
    assert len(errors) == 1 and "entry array CRC mismatch" in errors[0]


def test_bad_header_crc_uses_backup(small_disk: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path)
    with open(disk, "r+b") as f:
        f.seek(512 + 56)  # disk GUID inside the header, so only the header CRC breaks
        f.write(b"\xff")
    layout = layout_of(FileImage(disk))
    assert parts_as_sgdisk(layout) == sgdisk_partitions(small_disk)
    assert any("header CRC mismatch" in m for m in messages(layout, Severity.ERROR))


def test_damaged_backup_is_a_warning(small_disk: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path)
    with open(disk, "r+b") as f:
        f.seek(-512, 2)
        f.write(bytes(512))
    layout = layout_of(FileImage(disk))
    assert parts_as_sgdisk(layout) == sgdisk_partitions(small_disk)
    assert not layout.has_errors
    warnings = messages(layout, Severity.WARNING)
    assert len(warnings) == 1 and "backup GPT is damaged or missing" in warnings[0]


def test_both_headers_zeroed_is_no_gpt(small_disk: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path)
    with open(disk, "r+b") as f:
        f.seek(512)
        f.write(bytes(512))
        f.seek(-512, 2)
        f.write(bytes(512))
    layout = layout_of(FileImage(disk))
    assert layout.partitions == [] and layout.disk_guid is None
    assert layout.virtual_size == small_disk.stat().st_size and layout.format == "raw"
    assert [f.severity for f in layout.findings] == [Severity.ERROR]
    assert layout.findings[0].message.startswith("No GPT partition table found")


def test_all_zero_and_tiny_disks() -> None:
    class Mem(FileImage):
        def __init__(self, data: bytes) -> None:
            DiskImage.__init__(self, Path("mem"))
            self.data, self.virtual_size, self.declared_sector_size = data, len(data), None

    for data in (b"", bytes(1), bytes(512), bytes(1024), bytes(4 * MiB)):
        layout = layout_of(Mem(data))
        assert layout.partitions == []
        assert messages(layout, Severity.ERROR)[0].startswith("No GPT partition table found")


def test_mbr_disk_says_so(tmp_path: Path) -> None:
    require_tool("sfdisk")
    disk = tmp_path / "mbr.raw"
    with open(disk, "wb") as f:
        f.truncate(8 * MiB)
    proc = run("sh", "-c", f"printf 'label: dos\\nsize=4MiB, type=83\\n' | sfdisk -q {disk}")
    assert proc.returncode == 0
    layout = layout_of(FileImage(disk))
    (error,) = messages(layout, Severity.ERROR)
    assert "No GPT partition table found" in error and "MBR" in error


def test_missing_and_hybrid_protective_mbr(small_disk: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path)
    with open(disk, "r+b") as f:
        f.write(bytes(512))
    layout = layout_of(FileImage(disk))
    assert parts_as_sgdisk(layout) == sgdisk_partitions(small_disk)
    assert any("protective MBR is missing" in m for m in messages(layout, Severity.WARNING))
    assert not layout.has_errors

    disk = writable_copy(small_disk, tmp_path)
    with open(disk, "r+b") as f:
        f.seek(446 + 16 + 4)  # second MBR record: a FAT32 LBA partition beside the 0xEE one
        f.write(b"\x0c")
    layout = layout_of(FileImage(disk))
    assert read_gpt(FileImage(disk)).mbr == "hybrid"
    assert any("hybrid MBR" in m for m in messages(layout, Severity.WARNING))


# --- 4K sectors -----------------------------------------------------------------------------------


def make_4k_disk(path: Path) -> Path:
    """A 4096-byte-sector GPT by util-linux fdisk (sfdisk 2.38 has no --sector-size; fdisk -b does)."""
    require_tool("fdisk")
    with open(path, "wb") as f:
        f.truncate(64 * MiB)
    script = (
        f"g\\nn\\n1\\n\\n+8M\\nt\\n{pt.ESP}\\n"
        f"n\\n2\\n\\n+16M\\nt\\n2\\n{pt.ROOT_X86_64}\\n"
        "x\\nn\\n1\\nESP\\nn\\n2\\nroot\\nr\\nw\\n"
    )
    run("sh", "-c", f"printf '{script}' | fdisk -b 4096 {path}")
    return path


def fdisk_partitions(path: Path) -> list[dict[str, object]]:
    out = run("fdisk", "-b", "4096", "-l", "-o", "Device,Start,End,Type-UUID,UUID,Name", path).stdout
    rows = []
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("Device"))
    for ln in lines[start + 1 :]:
        if not ln.strip():
            continue
        dev, first, last, tguid, uguid, name = ln.split(None, 5)
        rows.append(
            {
                "number": int(dev.rsplit("img", 1)[1]),
                "type_guid": tguid.lower(),
                "partition_guid": uguid.lower(),
                "first_lba": int(first),
                "last_lba": int(last),
                "name": name.strip(),
            }
        )
    return rows


def test_4k_sector_gpt(tmp_path: Path) -> None:
    disk = make_4k_disk(tmp_path / "4k.img")
    layout = layout_of(FileImage(disk))
    assert layout.sector_size == 4096
    assert parts_as_sgdisk(layout) == fdisk_partitions(disk)
    assert [p.size_bytes for p in layout.partitions] == [8 * MiB, 16 * MiB]
    assert not layout.has_errors
    (warning,) = messages(layout, Severity.WARNING)
    assert "4096-byte logical sectors" in warning and "LUKS2" in warning
    # A container that declares 4K sectors gets the same answer, probing nothing else.
    assert parts_as_sgdisk(layout_of(FileImage(disk, declared_sector_size=4096))) == fdisk_partitions(disk)


def test_4k_gpt_with_zeroed_primary_uses_backup(tmp_path: Path) -> None:
    disk = make_4k_disk(tmp_path / "4k.img")
    expected = fdisk_partitions(disk)
    with open(disk, "r+b") as f:
        f.seek(4096)
        f.write(bytes(4096))
    layout = layout_of(FileImage(disk))
    assert layout.sector_size == 4096
    assert parts_as_sgdisk(layout) == expected
    assert any("Primary GPT is damaged" in m for m in messages(layout, Severity.ERROR))


def test_declared_sector_size_mismatch_is_an_error(small_disk: Path) -> None:
    layout = layout_of(FileImage(small_disk, declared_sector_size=4096))
    assert layout.sector_size == 512
    assert parts_as_sgdisk(layout) == sgdisk_partitions(small_disk)
    assert any("declares 4096-byte" in m for m in messages(layout, Severity.ERROR))


# --- layout findings ------------------------------------------------------------------------------


@pytest.mark.parametrize("back", [7, 0])  # 8 shared sectors, and the boundary case of exactly one
def test_overlapping_partitions(small_disk: Path, tmp_path: Path, back: int) -> None:
    disk = writable_copy(small_disk, tmp_path)
    p2_last = sgdisk_partitions(small_disk)[1]["last_lba"]
    patch_entry(disk, 3, first_lba=p2_last - back)
    assert "overlap" in run("sgdisk", "-v", disk).stdout  # sgdisk agrees the table now overlaps
    layout = layout_of(FileImage(disk))
    errors = messages(layout, Severity.ERROR)
    assert errors == [f"Partitions 2 and 3 overlap (LBAs {p2_last - back}-{p2_last})"]
    assert layout.partitions[2].first_lba == p2_last - back


def test_partition_nested_inside_another(small_disk: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path)
    p1 = sgdisk_partitions(small_disk)[0]
    patch_entry(disk, 4, first_lba=p1["first_lba"] + 2048, last_lba=p1["first_lba"] + 4095)
    errors = messages(layout_of(FileImage(disk)), Severity.ERROR)
    lo = p1["first_lba"] + 2048
    assert errors == [f"Partitions 1 and 4 overlap (LBAs {lo}-{lo + 2047})"]


def test_partition_beyond_disk_end(small_disk: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path)
    total = disk.stat().st_size // 512
    patch_entry(disk, 4, last_lba=total + 100)
    layout = layout_of(FileImage(disk))
    errors = messages(layout, Severity.ERROR)
    assert (
        len(errors) == 1 and errors[0].startswith("Partition 4 ends at LBA") and "beyond the end" in errors[0]
    )
    assert layout.partitions[3].content == "swap"  # still probed where it lies on the disk


def test_partition_outside_usable_area(small_disk: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path)
    patch_entry(disk, 1, first_lba=2)
    layout = layout_of(FileImage(disk))
    errors = messages(layout, Severity.ERROR)
    assert len(errors) == 1 and "Partition 1" in errors[0] and "outside the usable area" in errors[0]
    assert any("Partition 1 starts at LBA 2" in m for m in messages(layout, Severity.WARNING))


def test_reversed_partition_is_left_out(small_disk: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path)
    patch_entry(disk, 4, first_lba=88000, last_lba=87000)
    layout = layout_of(FileImage(disk))
    assert [p.number for p in layout.partitions] == [1, 2, 3]
    assert any(m.startswith("Partition 4 ends") for m in messages(layout, Severity.ERROR))


def test_duplicate_unique_guid(small_disk: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path)
    with open(disk, "rb") as f:
        f.seek(2 * 512 + 16)
        guid_of_1 = f.read(16)
    patch_entry(disk, 2, guid_raw=guid_of_1)
    errors = messages(layout_of(FileImage(disk)), Severity.ERROR)
    assert len(errors) == 1 and "Partitions 1 and 2 have the same unique GUID" in errors[0]


def test_misaligned_partitions(tmp_path: Path) -> None:
    disk = tmp_path / "misaligned.raw"
    with open(disk, "wb") as f:
        f.truncate(16 * MiB)
    run("sgdisk", "-a", "1", "-n", "1:34:+4M", "-t", "1:ef00", "-n", "2:0:+4M", "-t", "2:8304", disk)
    layout = layout_of(FileImage(disk))
    assert parts_as_sgdisk(layout) == sgdisk_partitions(disk)
    warnings = messages(layout, Severity.WARNING)
    assert len(warnings) == 2
    assert warnings[0].startswith("Partition 1 starts at LBA 34, not on a 1 MiB boundary")
    assert warnings[1].startswith("Partition 2 starts at LBA")
    assert not layout.has_errors


def _disk(tmp_path: Path, *specs: PartSpec) -> DiskLayout:
    return layout_of(FileImage(make_gpt_image(tmp_path / "d.raw", specs)))


def test_no_esp_and_generic_root(tmp_path: Path) -> None:
    layout = _disk(tmp_path, PartSpec(4, "8300", "root", "ext4"))
    errors = messages(layout, Severity.ERROR)
    assert len(errors) == 2
    assert errors[0].startswith("No EFI System Partition")
    assert errors[1].startswith("No discoverable x86-64 root partition")
    assert "0fc63daf-8483-4772-8e79-3d69d8477de4" in errors[1] and pt.ROOT_X86_64 in errors[1]
    assert "partition 1" in errors[1] and "systemd-gpt-auto-generator" in errors[1]


def test_foreign_root_and_two_esps(tmp_path: Path) -> None:
    layout = _disk(
        tmp_path,
        PartSpec(4, "ef00", "ESP", "vfat"),
        PartSpec(4, "ef00", "ESP2", "vfat"),
        PartSpec(4, "8305", "root-arm64", "ext4"),
    )
    errors = messages(layout, Severity.ERROR)
    assert len(errors) == 2
    assert errors[0].startswith("Partitions 1 and 2 are all EFI System Partitions")
    assert "partition 3 is a root for aarch64" in errors[1]


def test_esp_not_fat(tmp_path: Path) -> None:
    layout = _disk(tmp_path, PartSpec(4, "ef00", "ESP", "ext4"), PartSpec(4, "8304", "root", "ext4"))
    assert not layout.has_errors
    assert messages(layout, Severity.WARNING) == [
        "The EFI System Partition (partition 1) holds ext4, not FAT: firmware can only read FAT"
    ]


@pytest.mark.parametrize("kind", ["luks2", "luks1"])
def test_encrypted_root(tmp_path: Path, kind: str) -> None:
    require_tool("cryptsetup")
    disk = make_gpt_image(
        tmp_path / "d.raw", (PartSpec(4, "ef00", "ESP", "vfat"), PartSpec(20, "8304", "root", None))
    )
    container = luks_format(tmp_path / "root.luks", kind)
    run("dd", f"if={container}", f"of={disk}", "bs=1M", "seek=5", "conv=notrunc", "status=none")
    layout = layout_of(FileImage(disk))
    assert layout.partitions[1].content == kind and layout.partitions[1].encrypted
    assert not layout.has_errors
    severity = Severity.INFO if kind == "luks2" else Severity.WARNING
    (msg,) = messages(layout, severity)
    assert "partition 2" in msg and kind.upper() in msg


# --- fuzz -----------------------------------------------------------------------------------------

HEAD, TAIL = 34 * SECTOR, 33 * SECTOR


@pytest.fixture(scope="module")
def small_disk_bytes(small_disk: Path) -> bytes:
    return small_disk.read_bytes()


@settings(max_examples=200, deadline=None)
@given(
    patches=st.lists(
        st.tuples(st.booleans(), st.integers(0, HEAD - 1), st.integers(0, 255)), min_size=1, max_size=40
    ),
    zero_sector=st.none() | st.integers(0, 66),
    fix=st.booleans(),
)
def test_fuzzed_gpt_never_crashes(small_disk_bytes: bytes, patches, zero_sector, fix: bool) -> None:
    image = OverlayImage(small_disk_bytes, HEAD, TAIL)
    size = image.virtual_size
    for in_tail, pos, value in patches:
        image.write(size - TAIL + pos % TAIL if in_tail else pos, bytes([value]))
    if zero_sector is not None:
        at = zero_sector * SECTOR if zero_sector < 34 else size - TAIL + (zero_sector - 34) * SECTOR
        image.write(at, bytes(SECTOR))
    if fix:
        fix_crcs(image)
    try:
        layout = layout_of(image)
    except ShieldwrightError:
        return
    assert layout.sector_size in (512, 4096)
    for p in layout.partitions:
        assert p.size_bytes > 0 and p.first_lba <= p.last_lba
    if layout.partitions:
        assert layout.disk_guid is not None
    for f in layout.findings:
        assert "\n" not in f.message and f.message
