"""Our writers, graded by qemu-img (check / info / compare) and by reading the output back."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from app.disk.image import DiskImage, open_image
from app.disk.writers import SUBCHUNK, _nonzero_runs, write_image
from app.errors import CancelledError, ImageError
from app.progress import CancelToken, ProgressState
from tests.conftest import MiB, require_tool, run

QEMU_NAME = {"raw": "raw", "vhdx": "vhdx", "vhd": "vpc"}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("direct", [False, True], ids=["page-cache", "o-direct"])
@pytest.mark.parametrize("source", ["raw", "vhdx"])
@pytest.mark.parametrize("fmt", ["raw", "vhdx", "vhd"])
def test_written_image_matches_source(small_disk_formats, tmp_path, source, fmt, direct):
    require_tool("qemu-img")
    src_path = small_disk_formats[source]
    raw_path = small_disk_formats["raw"]
    before = sha256(src_path)
    dst = tmp_path / f"out.{fmt}"
    progress = ProgressState()
    with open_image(src_path) as src:
        assert write_image(src, dst, fmt, progress=progress, direct=direct) == dst
        size = src.virtual_size
        src_data = src.read(0, size)
    assert sha256(src_path) == before, "the input must never be modified"
    assert progress.step == f"Writing {fmt}" and progress.done == progress.total == size
    assert leftovers(tmp_path) == [dst.name], "no temporary files may remain"

    qfmt = QEMU_NAME[fmt]
    info = json.loads(run("qemu-img", "info", "--output=json", "-f", qfmt, dst).stdout)
    assert info["format"] == qfmt
    expected_size = -(-size // MiB) * MiB if fmt == "vhd" else size
    assert info["virtual-size"] == expected_size
    if fmt == "vhdx":
        run("qemu-img", "check", "-f", "vhdx", dst)
        # Autodetection must also recognise it (not just our own reader).
        assert json.loads(run("qemu-img", "info", "--output=json", dst).stdout)["format"] == "vhdx"
    run("qemu-img", "compare", "-q", "-f", "raw", "-F", qfmt, raw_path, dst)

    with open_image(dst) as out:
        assert out.format == fmt
        assert out.virtual_size == expected_size
        assert out.read(0, size) == src_data
        assert out.read(size, out.virtual_size - size) == bytes(out.virtual_size - size)
        if fmt == "vhdx":
            assert out.declared_sector_size == 512


def test_raw_output_is_sparse(small_disk_formats, tmp_path):
    dst = tmp_path / "sparse.raw"
    with open_image(small_disk_formats["vhdx"]) as src:
        write_image(src, dst, "raw")
    assert dst.stat().st_size == 44 * MiB
    assert dst.stat().st_blocks * 512 < 30 * MiB, "zero regions must be holes, not written zeros"


def test_vhdx_small_blocks_store_only_data(small_disk, tmp_path):
    dst = tmp_path / "1m.vhdx"
    with open_image(small_disk) as src:
        write_image(src, dst, "vhdx", block_size=1 * MiB)
        data = src.read(0, src.virtual_size)
    run("qemu-img", "check", "-f", "vhdx", dst)
    run("qemu-img", "compare", "-q", "-f", "raw", "-F", "vhdx", small_disk, dst)
    with open_image(dst) as out:
        assert out.block_size == 1 * MiB
        ranges = list(out.allocated_ranges())
        assert sum(n for _, n in ranges) < out.virtual_size // 2, "zero blocks must not be stored"
        for start, n in ranges:
            assert out.read(start, n) == data[start : start + n]
    assert dst.stat().st_size < 30 * MiB


def test_vhdx_4k_sectors(small_disk, tmp_path):
    """A 4 KiB-sector source is written with a 4 KiB LogicalSectorSize (QEMU cannot read those: ours only)."""

    class FourK(DiskImage):
        format = "raw"
        declared_sector_size = 4096

        def __init__(self, inner: DiskImage) -> None:
            super().__init__(inner.path)
            self.inner, self.virtual_size = inner, inner.virtual_size

        def read(self, offset: int, length: int) -> bytes:
            return self.inner.read(offset, length)

    dst = tmp_path / "4k.vhdx"
    with open_image(small_disk) as inner:
        write_image(FourK(inner), dst, "vhdx", block_size=2 * MiB)
        data = inner.read(0, inner.virtual_size)
    with open_image(dst) as out:
        assert out.declared_sector_size == 4096 and out.block_size == 2 * MiB
        assert out.read(0, out.virtual_size) == data


class CancelAfter(ProgressState):
    """A Progress that presses Cancel once ``limit`` bytes are done, like the GUI's button would."""

    def __init__(self, token: CancelToken, limit: int) -> None:
        super().__init__()
        self.token, self.limit = token, limit

    def update(self, done: int) -> None:
        super().update(done)
        if done >= self.limit:
            self.token.cancel()


class FailingImage(DiskImage):
    """Reads fine until ``fail_at``, then fails like a disk going away."""

    format = "raw"

    def __init__(self, inner: DiskImage, fail_at: int) -> None:
        super().__init__(inner.path)
        self.inner, self.fail_at, self.virtual_size = inner, fail_at, inner.virtual_size

    def read(self, offset: int, length: int) -> bytes:
        if offset + length > self.fail_at:
            raise ImageError("simulated read failure", "none")
        return self.inner.read(offset, length)

    def allocated_ranges(self):
        return self.inner.allocated_ranges()


@pytest.mark.parametrize("fmt", ["raw", "vhdx", "vhd"])
def test_cancel_mid_write_leaves_nothing(small_disk_formats, tmp_path, fmt):
    src_path = small_disk_formats["vhdx"]
    before = sha256(src_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    token = CancelToken()
    progress = CancelAfter(token, 10 * MiB)
    with open_image(src_path) as src, pytest.raises(CancelledError):
        write_image(src, out_dir / f"x.{fmt}", fmt, progress=progress, cancel=token)
    assert 10 * MiB <= progress.done < progress.total, "cancel must stop the write part-way"
    assert leftovers(out_dir) == []
    assert sha256(src_path) == before


@pytest.mark.parametrize("fmt", ["raw", "vhdx", "vhd"])
def test_failure_mid_write_leaves_nothing_and_keeps_old_dst(small_disk_formats, tmp_path, fmt):
    dst = tmp_path / f"x.{fmt}"
    dst.write_bytes(b"previous contents")
    with open_image(small_disk_formats["raw"]) as inner, pytest.raises(ImageError, match="simulated"):
        write_image(FailingImage(inner, 20 * MiB), dst, fmt)
    assert leftovers(tmp_path) == [dst.name]
    assert dst.read_bytes() == b"previous contents", "a failed write must not touch an existing output"


def test_refuses_to_overwrite_its_input(small_disk_formats, tmp_path):
    path = tmp_path / "in.raw"
    path.write_bytes(bytes(MiB))
    with open_image(path) as src, pytest.raises(ImageError, match="input"):
        write_image(src, path, "raw")
    assert path.read_bytes() == bytes(MiB)


def test_vhd_footer_geometry_and_rounding(tmp_path):
    """An odd-sized source becomes a whole-MiB fixed VHD that QEMU and our reader size identically."""
    src_path = tmp_path / "odd.raw"
    src_path.write_bytes(os.urandom(3 * MiB + 4096))
    dst = tmp_path / "odd.vhd"
    with open_image(src_path) as src:
        write_image(src, dst, "vhd")
    assert dst.stat().st_size == 4 * MiB + 512
    info = json.loads(run("qemu-img", "info", "--output=json", "-f", "vpc", dst).stdout)
    assert info["virtual-size"] == 4 * MiB
    proc = subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "vpc", src_path, dst])
    assert proc.returncode == 0


def test_zero_pieces_are_skipped_whatever_their_first_bytes(tmp_path):
    """Pieces that start with zeros but hold data later, and ones that are all zeros, in one chunk."""
    data = bytearray(8 * SUBCHUNK)
    data[0] = 1  # piece 0: data at its very start
    data[SUBCHUNK + SUBCHUNK - 1] = 2  # piece 1: zeros up to its last byte
    data[3 * SUBCHUNK + 16] = 3  # piece 3: just past the 16-byte quick check; piece 2 is all zeros
    data[7 * SUBCHUNK + 100] = 4  # pieces 4-6 zeros, piece 7 data
    runs = [(rel, bytes(run)) for rel, run in _nonzero_runs(bytes(data))]
    assert [(rel, len(run)) for rel, run in runs] == [
        (0, 2 * SUBCHUNK),
        (3 * SUBCHUNK, SUBCHUNK),
        (7 * SUBCHUNK, SUBCHUNK),
    ]
    assert all(run == bytes(data[rel : rel + len(run)]) for rel, run in runs)


def test_without_fsync_the_output_is_still_complete(small_disk_formats, tmp_path):
    """fsync=False (the build fsyncs once at its end) changes durability timing, never the bytes."""
    dst = tmp_path / "nofsync.raw"
    with open_image(small_disk_formats["raw"]) as src:
        write_image(src, dst, "raw", fsync=False)
    assert sha256(dst) == sha256(small_disk_formats["raw"])
