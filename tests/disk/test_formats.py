"""The format readers against images made by qemu-img: every byte must match the raw source."""

from __future__ import annotations

import os
import shutil
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.disk.crc32c import crc32c
from app.disk.formats import vhdx
from app.disk.image import open_image
from app.errors import (
    CorruptImageError,
    ImageError,
    TruncatedImageError,
    UnsupportedImageError,
)
from tests.conftest import MiB, qemu_convert, run

ALL_FORMATS = ["raw", "vhd", "vhdx", "vhdx-fixed", "qcow2"]
EXPECTED_NAME = {"raw": "raw", "vhd": "vhd", "vhdx": "vhdx", "vhdx-fixed": "vhdx", "qcow2": "qcow2"}


def read_all(img, chunk: int = 4 * MiB) -> bytes:
    return b"".join(img.read(o, min(chunk, img.virtual_size - o)) for o in range(0, img.virtual_size, chunk))


def readinto_all(img, chunk: int = 4 * MiB) -> bytes:
    """The disk through ``readinto``, into one reused buffer that starts full of 0xEE (so a hole that is
    not zero-filled, or a short fill, shows)."""
    buf = bytearray(b"\xee" * chunk)
    parts = []
    for o in range(0, img.virtual_size, chunk):
        view = memoryview(buf)[: min(chunk, img.virtual_size - o)]
        img.readinto(o, view)
        parts.append(bytes(view))
        buf[:] = b"\xee" * chunk
    return b"".join(parts)


def writable_copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)
    return dst


def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.fixture(scope="module")
def raw_bytes(small_disk: Path) -> bytes:
    return small_disk.read_bytes()


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_every_format_reads_back_identical(small_disk_formats, raw_bytes, fmt):
    with open_image(small_disk_formats[fmt]) as img:
        assert img.format == EXPECTED_NAME[fmt]
        assert img.virtual_size == len(raw_bytes)
        assert read_all(img) == raw_bytes
        # Odd, unaligned reads across block / cluster boundaries too.
        end = len(raw_bytes)
        for off, n in [(0, 1), (511, 2), (MiB - 3, 7), (32 * MiB - 5000, 12345), (end - 17, 17)]:
            assert img.read(off, n) == raw_bytes[off : off + n], (off, n)
        assert img.read(len(raw_bytes), 0) == b""
        assert readinto_all(img) == raw_bytes
        assert readinto_all(img, 3 * MiB + 4097) == raw_bytes  # runs cut mid-cluster and mid-block


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_read_outside_disk_is_an_image_error(small_disk_formats, fmt):
    with open_image(small_disk_formats[fmt]) as img:
        with pytest.raises(ImageError):
            img.read(img.virtual_size - 10, 11)
        with pytest.raises(ImageError):
            img.readinto(img.virtual_size - 10, memoryview(bytearray(11)))


def test_vhdx_declares_512_byte_sectors(small_disk_formats):
    for fmt in ("vhdx", "vhdx-fixed"):
        with open_image(small_disk_formats[fmt]) as img:
            assert img.declared_sector_size == 512
    with open_image(small_disk_formats["raw"]) as img:
        assert img.declared_sector_size is None


def test_detection_is_by_content_not_name(small_disk_formats, tmp_path):
    misnamed = tmp_path / "disk.raw"
    shutil.copyfile(small_disk_formats["vhdx"], misnamed)
    with open_image(misnamed) as img:
        assert img.format == "vhdx"


@pytest.mark.parametrize("fmt", ["raw", "vhd", "vhdx", "qcow2"])  # raw and fixed VHD: the file's holes
def test_allocated_ranges_skip_unwritten_regions(small_disk_formats, raw_bytes, fmt):
    with open_image(small_disk_formats[fmt]) as img:
        ranges = list(img.allocated_ranges())
        assert ranges, "the disk has data, so something must be allocated"
        total = sum(n for _, n in ranges)
        assert total < img.virtual_size, "unwritten regions must not be reported as allocated"
        pos = 0
        for start, length in ranges:
            assert start >= pos and length > 0, "ranges must be ascending, non-overlapping and not adjacent"
            assert start + length <= img.virtual_size
            gap = img.read(pos, start - pos)
            assert gap == bytes(len(gap)) and raw_bytes[pos:start] == gap
            pos = start + length
            if pos < img.virtual_size:
                assert start + length < img.virtual_size
        assert img.read(pos, img.virtual_size - pos) == bytes(img.virtual_size - pos)
        for a, b in zip(ranges, ranges[1:], strict=False):
            assert a[0] + a[1] < b[0], "adjacent ranges must be merged"


def test_compressed_and_v2_qcow2(small_disk, raw_bytes, tmp_path):
    compressed = tmp_path / "c.qcow2"
    run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", small_disk, compressed)
    v2 = qemu_convert(small_disk, tmp_path / "v2.qcow2", "qcow2", "compat=0.10", "cluster_size=4096")
    for path in (compressed, v2):
        with open_image(path) as img:
            assert img.format == "qcow2"
            assert read_all(img, 3 * MiB + 512) == raw_bytes
            assert readinto_all(img, 3 * MiB + 512) == raw_bytes


def test_qcow2_zero_clusters_read_as_zeros(tmp_path):
    path = tmp_path / "z.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "8M")
    run("qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 2M", "-c", "write -z 1M 64k", path)
    with open_image(path) as img:
        data = img.read(0, 8 * MiB)
        filled = readinto_all(img, 8 * MiB)
    expected = b"\xab" * MiB + bytes(64 * 1024) + b"\xab" * (MiB - 64 * 1024) + bytes(6 * MiB)
    assert data == expected
    assert filled == expected


def test_concurrent_reads_agree(small_disk_formats, raw_bytes):
    for fmt in ("vhdx", "qcow2"):
        with open_image(small_disk_formats[fmt]) as img:
            offsets = list(range(0, img.virtual_size, MiB))
            with ThreadPoolExecutor(4) as pool:
                chunks = list(pool.map(lambda o, img=img: img.read(o, MiB), offsets))
            assert b"".join(chunks) == raw_bytes


# -- damaged and unsupported inputs ----------------------------------------------------------------


def test_truncated_vhdx(small_disk_formats, tmp_path):
    path = writable_copy(small_disk_formats["vhdx"], tmp_path / "t.vhdx")
    # Cut off half the file: that is well inside present data blocks (the headers stay intact).
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(TruncatedImageError) as err:
        open_image(path)
    assert "truncated" in err.value.message and err.value.hint


def test_vhdx_with_one_bad_header_still_opens(small_disk_formats, raw_bytes, tmp_path):
    for off in vhdx.HEADER_OFFSETS:
        path = writable_copy(small_disk_formats["vhdx"], tmp_path / f"h{off}.vhdx")
        patch(path, off + 100, b"\xff\xee")
        with open_image(path) as img:
            assert read_all(img) == raw_bytes


def test_vhdx_with_both_headers_bad_is_corrupt(small_disk_formats, tmp_path):
    path = writable_copy(small_disk_formats["vhdx"], tmp_path / "hh.vhdx")
    for off in vhdx.HEADER_OFFSETS:
        patch(path, off + 100, b"\xff\xee")
    with pytest.raises(CorruptImageError, match="header"):
        open_image(path)


def test_vhdx_region_tables(small_disk_formats, raw_bytes, tmp_path):
    path = writable_copy(small_disk_formats["vhdx"], tmp_path / "r.vhdx")
    patch(path, vhdx.REGION_TABLE_OFFSETS[0] + 20, b"\x01")
    with open_image(path) as img:
        assert read_all(img) == raw_bytes
    patch(path, vhdx.REGION_TABLE_OFFSETS[1] + 20, b"\x01")
    with pytest.raises(CorruptImageError, match="region"):
        open_image(path)


def _set_log_guid(path: Path, log_guid: bytes) -> int:
    """Set LogGuid in both VHDX headers, re-sealing their checksums; returns the LogOffset."""
    for off in vhdx.HEADER_OFFSETS:
        with open(path, "rb") as f:
            f.seek(off)
            buf = bytearray(f.read(vhdx.HEADER_SIZE))
        buf[48:64] = log_guid
        buf[4:8] = b"\0\0\0\0"
        struct.pack_into("<I", buf, 4, crc32c(buf))
        patch(path, off, bytes(buf))
    return struct.unpack_from("<Q", buf, 72)[0]


def test_vhdx_with_pending_log_is_unsupported(small_disk_formats, raw_bytes, tmp_path):
    path = writable_copy(small_disk_formats["vhdx"], tmp_path / "log.vhdx")
    log_guid = os.urandom(16)
    log_offset = _set_log_guid(path, log_guid)
    # A LogGuid alone, with no log entry carrying it, is an empty log: still readable.
    with open_image(path) as img:
        assert read_all(img) == raw_bytes
    # An entry for that GUID means writes that never reached the blocks: refuse.
    patch(path, log_offset + 4096, b"loge" + bytes(28) + log_guid)
    with pytest.raises(UnsupportedImageError) as err:
        open_image(path)
    assert "log" in err.value.message and "qemu-img check -r all" in err.value.hint


def _metadata_item_offset(path: Path, item: bytes) -> int:
    with open(path, "rb") as f:
        head = f.read(MiB)
        table_off = vhdx.REGION_TABLE_OFFSETS[0]
        count = struct.unpack_from("<I", head, table_off + 8)[0]
        for i in range(count):
            gid, off, _, _ = vhdx.REGION_ENTRY.unpack_from(head, table_off + 16 + 32 * i)
            if gid == vhdx.METADATA_GUID:
                meta = off
        f.seek(meta)
        table = f.read(vhdx.METADATA_TABLE_SIZE)
    for i in range(struct.unpack_from("<H", table, 10)[0]):
        gid, off, _, _, _ = vhdx.METADATA_ENTRY.unpack_from(table, 32 + 32 * i)
        if gid == item:
            return meta + off
    raise AssertionError("item not found")


def test_differencing_vhdx_is_unsupported(small_disk_formats, tmp_path):
    path = writable_copy(small_disk_formats["vhdx"], tmp_path / "diff.vhdx")
    patch(path, _metadata_item_offset(path, vhdx.FILE_PARAMETERS) + 4, struct.pack("<I", 2))  # HasParent
    with pytest.raises(UnsupportedImageError, match="differencing"):
        open_image(path)


def test_vhdx_absurd_block_size_is_corrupt(small_disk_formats, tmp_path):
    path = writable_copy(small_disk_formats["vhdx"], tmp_path / "bs.vhdx")
    patch(path, _metadata_item_offset(path, vhdx.FILE_PARAMETERS), struct.pack("<I", 3 * MiB))
    with pytest.raises(CorruptImageError, match="block size"):
        open_image(path)


def test_vhd_bad_footer_checksum_is_corrupt(small_disk_formats, tmp_path):
    path = writable_copy(small_disk_formats["vhd"], tmp_path / "bad.vhd")
    size = path.stat().st_size
    patch(path, size - 512 + 48, b"\x7f")  # inside currentSize
    with pytest.raises(CorruptImageError, match="checksum"):
        open_image(path)


def test_truncated_vhd(small_disk_formats, tmp_path):
    path = writable_copy(small_disk_formats["vhd"], tmp_path / "t.vhd")
    with open(path, "rb") as f:
        f.seek(-512, os.SEEK_END)
        footer = f.read()
    os.truncate(path, path.stat().st_size - 512 - MiB)
    patch(path, path.stat().st_size - 512, footer)
    with pytest.raises(TruncatedImageError):
        open_image(path)


def test_dynamic_vhd_is_unsupported(small_disk, tmp_path):
    path = qemu_convert(small_disk, tmp_path / "dyn.vhd", "vpc", "subformat=dynamic")
    with pytest.raises(UnsupportedImageError) as err:
        open_image(path)
    assert "dynamic" in err.value.message and "qemu-img convert" in err.value.hint


def test_qcow2_unsupported_features(small_disk, tmp_path):
    base = small_disk
    backed = tmp_path / "backed.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, backed)
    with pytest.raises(UnsupportedImageError, match="backing file"):
        open_image(backed)

    ext = tmp_path / "ext.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", ext, "8M")
    with pytest.raises(UnsupportedImageError, match="extended L2"):
        open_image(ext)

    unknown = tmp_path / "unknown.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", unknown, "8M")
    patch(unknown, 72, struct.pack(">Q", 1 << 40))
    with pytest.raises(UnsupportedImageError, match="incompatible feature"):
        open_image(unknown)

    zstd = tmp_path / "zstd.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", zstd, "8M")
    patch(zstd, 72, struct.pack(">Q", 1 << 3))
    patch(zstd, 104, b"\x01")
    with pytest.raises(UnsupportedImageError, match="compression"):
        open_image(zstd)


def test_qcow2_dirty_bit_only_warns(small_disk_formats, raw_bytes, tmp_path, caplog):
    path = writable_copy(small_disk_formats["qcow2"], tmp_path / "dirty.qcow2")
    patch(path, 72, struct.pack(">Q", 1))
    with open_image(path) as img:
        assert read_all(img) == raw_bytes
    assert "dirty" in caplog.text


def test_raw_with_odd_size_is_still_raw(tmp_path):
    path = tmp_path / "odd.img"
    path.write_bytes(b"x" * 1000)
    with open_image(path) as img:
        assert (img.format, img.virtual_size) == ("raw", 1000)
        assert img.read(990, 10) == b"x" * 10


@pytest.mark.parametrize("case", ["empty", "directory", "missing"])
def test_not_an_image_gives_one_line_error(tmp_path, case):
    path = tmp_path / "thing"
    if case == "empty":
        path.touch()
    elif case == "directory":
        path.mkdir()
    with pytest.raises(ImageError) as err:
        open_image(path)
    expected = {"empty": "is empty", "directory": "is a directory", "missing": "no such file"}[case]
    assert expected in err.value.message
    assert "\n" not in err.value.one_line() and err.value.hint


def test_raw_cut_short_while_open_is_a_truncation_error_for_both_reads(tmp_path):
    """Another process shrinks the file after it was opened: a short ``preadv`` must not leave stale
    buffer bytes in place of the disk's data."""
    path = tmp_path / "shrinks.raw"
    path.write_bytes(b"\x5a" * (4 * MiB))
    with open_image(path) as img:
        os.truncate(path, 3 * MiB)
        with pytest.raises(TruncatedImageError):
            img.read(2 * MiB, 2 * MiB)
        with pytest.raises(TruncatedImageError):
            img.readinto(2 * MiB, memoryview(bytearray(2 * MiB)))
