"""The ext4 free-space map (app.disk.fsmap), graded by dumpe2fs on filesystems mkfs.ext4 and debugfs made.

Safety first: every block e2fsprogs reports in use (bar the never-initialised inode-table tails, see
tests/disk/ext4_reference.py) must be in our used map; and the map must not be needlessly coarse. Damaged
superblocks, descriptors and bitmaps give a one-line reason and no map (the partition is then encrypted in
full), never an exception of another kind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.disk.formats.raw import RawImage
from app.disk.fsmap import UNIT, FsScan, UsedMap, scan_partition, unit_for
from app.disk.fsmap import ext4 as fsext4
from app.disk.image import DiskImage
from app.errors import ShieldwrightError
from app.progress import CancelToken
from tests.conftest import MiB, run
from tests.disk.ext4_reference import Ranges, dumpe2fs, merge, subtract, total

pytestmark = pytest.mark.slow


class BytesImage(DiskImage):
    """A disk held in memory (for fuzzing without a file per example)."""

    format = "raw"

    def __init__(self, data: bytes | bytearray) -> None:
        super().__init__(Path("memory"))
        self.data = bytes(data)
        self.virtual_size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        return self.data[offset : offset + length]


def _tree(d: Path) -> Path:
    tree = d / "tree"
    (tree / "docs").mkdir(parents=True)
    for i in range(60):
        (tree / "docs" / f"f{i:02d}").write_bytes(os.urandom(1000 + 37_000 * (i % 7)))
    (tree / "big.bin").write_bytes(os.urandom(9 * MiB))
    return tree


def make_fs(d: Path, name: str, size: int, *opts: str, delete: bool = True) -> Path:
    """``mkfs.ext4 -d`` of a small tree into a ``size``-byte file, then some files deleted with debugfs
    (free blocks between used ones)."""
    d.mkdir(parents=True, exist_ok=True)
    fs = d / f"{name}.img"
    with open(fs, "wb") as f:
        f.truncate(size)
    tree = _tree(d / name)
    run("mkfs.ext4", "-q", "-F", *opts, "-d", tree, fs)
    shutil.rmtree(tree.parent)
    if delete:
        script = d / f"{name}.debugfs"
        script.write_text("".join(f"rm /docs/f{i:02d}\n" for i in range(0, 60, 3)))
        run("debugfs", "-w", "-f", script, fs)
    return fs


def _our_used(fs: Path) -> Ranges:
    with open(fs, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        runs = list(fsext4.used_blocks(lambda at, n: os.pread(f.fileno(), n, at), size))
    return [(a, a + n) for a, n in runs]


VARIANTS = {
    "ext4 (discard: tables flagged zeroed)": ("-t", "ext4"),
    "ext4 lazy inode tables": ("-t", "ext4", "-E", "nodiscard,lazy_itable_init=1"),
    "ext4 1 KiB blocks": ("-t", "ext4", "-b", "1024", "-E", "nodiscard,lazy_itable_init=1"),
    "ext4 2 KiB blocks, 128-byte inodes": ("-t", "ext4", "-b", "2048", "-I", "128"),
    "ext4 32-bit, no flex_bg": ("-t", "ext4", "-O", "^64bit,^flex_bg"),
    "ext4 uninit_bg (no metadata_csum)": (
        "-t",
        "ext4",
        "-O",
        "^metadata_csum,uninit_bg",
        "-E",
        "nodiscard,lazy_itable_init=1",
    ),  # fmt: skip
    "ext4 sparse_super2": ("-t", "ext4", "-O", "sparse_super2"),
    "ext4 every group a backup": ("-t", "ext4", "-O", "^sparse_super,^resize_inode", "-b", "1024"),
    "ext4 flex_bg 4": ("-t", "ext4", "-G", "4", "-E", "nodiscard,lazy_itable_init=1"),
    "ext3": ("-t", "ext3"),
    "ext2": ("-t", "ext2"),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_used_blocks_cover_everything_e2fsprogs_says_is_in_use(name: str, tmp_path: Path) -> None:
    fs = make_fs(tmp_path, "fs", 700 * MiB, *VARIANTS[name])
    facts = dumpe2fs(fs)
    ours = _our_used(fs)
    missing = subtract(facts.keep, ours)
    assert missing == [], f"blocks in use that the map calls free: {missing[:10]}"
    # Not needlessly coarse: what we keep beyond e2fsprogs' own count stays within a few bitmap bytes.
    extra = subtract(ours, facts.keep)
    assert total(extra) <= 8 * len(ours), (total(extra), len(ours))
    if any("lazy_itable_init=1" in o for o in VARIANTS[name]):
        assert facts.uninit_itable, "the fixture should have never-initialised inode tables"
        assert subtract(facts.uninit_itable, ours) == facts.uninit_itable  # left out of the map
    else:
        assert subtract(facts.inode_tables, ours) == []


def test_scan_partition_maps_a_partition_of_a_disk(tmp_path: Path) -> None:
    """An ext4 smaller than its partition, inside a disk: units, the tail after the filesystem and the
    LUKS padding count as used; the map's clear units are all free blocks."""
    fs = make_fs(tmp_path, "fs", 300 * MiB, "-t", "ext4", "-b", "4096", "-E", "nodiscard,lazy_itable_init=1")
    disk = tmp_path / "disk.raw"
    offset, part_size = 3 * MiB, 310 * MiB + 4096 * 3 + 512  # not a whole number of units
    with open(disk, "wb") as f:
        f.truncate(offset + part_size + MiB)
    run(
        "dd", f"if={fs}", f"of={disk}", "bs=1M", f"seek={offset // MiB}", "conv=notrunc,sparse", "status=none"
    )
    with RawImage(disk) as image:
        scan = scan_partition(image, offset, part_size, map_size=part_size + 3584)
    assert scan.filesystem == "ext4" and scan.used is not None, scan
    used = scan.used
    assert used.unit == UNIT and used.size == part_size + 3584
    facts = dumpe2fs(fs)
    clear = list(used.clear_runs())
    assert clear and all(b <= facts.block_count * facts.block_size for _, b in clear)  # the tail is used
    bs = facts.block_size
    free_bytes = [(a * bs, b * bs) for a, b in merge(facts.free + facts.uninit_itable)]
    assert subtract(clear, free_bytes) == []  # every clear byte is free space
    count, clear_bytes, digest = used.summary()
    assert count == len(clear) and clear_bytes == total(clear) == used.clear_bytes and len(digest) == 64
    assert used.used_bytes + used.clear_bytes == used.size
    assert clear_bytes > 200 * MiB  # the filesystem holds ~12 MiB of files


@pytest.mark.parametrize(
    ("name", "opts", "reason"),
    [
        ("meta_bg", ("-t", "ext4", "-O", "meta_bg,^resize_inode"), "meta_bg"),
        ("bigalloc", ("-t", "ext4", "-O", "bigalloc", "-C", "16384"), "bigalloc"),
    ],
)
def test_features_whose_map_is_not_read_give_no_map(name: str, opts: tuple[str, ...], reason: str,
                                                    tmp_path: Path) -> None:  # fmt: skip
    fs = make_fs(tmp_path, name, 300 * MiB, *opts, delete=False)
    with RawImage(fs) as image:
        scan = scan_partition(image, 0, image.virtual_size)
    assert scan.used is None and reason in scan.reason, scan


@pytest.mark.parametrize(
    ("command", "reason"),
    [("feature needs_recovery", "needs recovery"), ("ssv state 0", "not marked clean")],
)
def test_a_filesystem_not_cleanly_unmounted_gives_no_map(command: str, reason: str, tmp_path: Path) -> None:
    fs = make_fs(tmp_path, "fs", 200 * MiB, "-t", "ext4", delete=False)
    run("debugfs", "-w", "-R", command, fs)
    with RawImage(fs) as image:
        scan = scan_partition(image, 0, image.virtual_size)
    assert scan.used is None and reason in scan.reason, scan


def test_other_filesystems_and_oversized_ext4_give_no_map(tmp_path: Path) -> None:
    xfs = tmp_path / "xfs.img"
    with open(xfs, "wb") as f:
        f.truncate(320 * MiB)
    run("mkfs.xfs", "-q", xfs)
    btrfs = tmp_path / "btrfs.img"
    with open(btrfs, "wb") as f:
        f.truncate(200 * MiB)
    run("mkfs.btrfs", "-q", btrfs)
    empty = tmp_path / "empty.img"
    with open(empty, "wb") as f:
        f.truncate(8 * MiB)
    for path, name in ((xfs, "xfs"), (btrfs, "btrfs"), (empty, "only zeros")):
        with RawImage(path) as image:
            scan = scan_partition(image, 0, image.virtual_size)
        assert scan.used is None and name in scan.reason, scan
    fs = make_fs(tmp_path, "fs", 100 * MiB, "-t", "ext4", delete=False)
    with RawImage(fs) as image:
        scan = scan_partition(image, 0, 90 * MiB)  # the partition table says less than mkfs was given
    assert scan.used is None and "larger than its partition" in scan.reason


def test_a_stale_ext4_superblock_under_btrfs_gives_no_map(tmp_path: Path) -> None:
    """mkfs.btrfs leaves the first 64 KiB alone: an old ext4 superblock there must not be believed."""
    fs = make_fs(tmp_path, "fs", 200 * MiB, "-t", "ext4", delete=False)
    btrfs = tmp_path / "btrfs.img"
    with open(btrfs, "wb") as f:
        f.truncate(200 * MiB)
    run("mkfs.btrfs", "-q", btrfs)
    run("dd", f"if={btrfs}", f"of={fs}", "bs=64K", "conv=notrunc,sparse", "status=none")  # zeros skipped
    with RawImage(fs) as image:
        scan = scan_partition(image, 0, image.virtual_size)
    assert scan.used is None and "both ext4 and btrfs" in scan.reason, scan


def test_cancel_stops_the_scan(tmp_path: Path) -> None:
    fs = make_fs(tmp_path, "fs", 100 * MiB, "-t", "ext4", delete=False)
    token = CancelToken()
    token.cancel()
    with RawImage(fs) as image, pytest.raises(ShieldwrightError):
        scan_partition(image, 0, image.virtual_size, cancel=token)


# -- the map itself ------------------------------------------------------------------------------------


def test_used_map_runs_and_queries() -> None:
    m = UsedMap(10 * UNIT + 100, UNIT)  # a short last unit
    assert m.next_used(0) is None and m.is_clear(0, m.size) and m.used_bytes == 0
    m.mark(UNIT + 1, 1)  # touches unit 1 only
    m.mark(3 * UNIT - 1, 2)  # units 2 and 3
    m.mark(10 * UNIT + 50, 10)  # the short last unit
    assert list(m.used_runs()) == [(UNIT, 4 * UNIT), (10 * UNIT, m.size)]
    assert list(m.clear_runs()) == [(0, UNIT), (4 * UNIT, 10 * UNIT)]
    assert list(m.used_runs(2 * UNIT + 5, 11 * UNIT)) == [(2 * UNIT + 5, 4 * UNIT), (10 * UNIT, m.size)]
    assert m.next_used(2 * UNIT + 7) == (2 * UNIT + 7, 4 * UNIT)
    assert m.next_used(5 * UNIT) == (10 * UNIT, m.size)
    assert m.is_clear(4 * UNIT, 10 * UNIT) and not m.is_clear(4 * UNIT, 10 * UNIT + 1)
    assert m.used_bytes == 3 * UNIT + 100 and m.clear_bytes == 7 * UNIT
    count, clear, digest = m.summary()
    assert (count, clear) == (2, 7 * UNIT) and len(digest) == 64
    m.mark_all()
    assert m.clear_bytes == 0 and list(m.clear_runs()) == []


def test_unit_grows_so_the_map_stays_small() -> None:
    assert unit_for(64 << 30) == UNIT
    assert unit_for(16 << 40) == 4 * MiB  # 16 TiB: 4 Mi units of 4 MiB


# -- damaged filesystems -------------------------------------------------------------------------------

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("fsfuzz")
    out = {}
    for name, opts in {
        "1k": ("-t", "ext4", "-b", "1024", "-E", "nodiscard,lazy_itable_init=1"),
        "4k": ("-t", "ext4", "-E", "nodiscard,lazy_itable_init=1", "-N", "2048"),
    }.items():
        fs = d / f"{name}.img"
        with open(fs, "wb") as f:
            f.truncate(24 * MiB)
        tree = d / f"tree-{name}"
        tree.mkdir()
        for i in range(20):
            (tree / f"f{i}").write_bytes(os.urandom(20_000 * (i % 5 + 1)))
        run("mkfs.ext4", "-q", "-F", *opts, "-d", tree, fs)
        out[name] = fs.read_bytes()
    return out


def _targets(data: bytes) -> list[tuple[int, int]]:
    """The superblock, the descriptor table and the first bitmaps: where damage reaches the parsing."""
    sb = fsext4.parse_superblock(data[1024:2048], len(data))
    gdt = (sb.first_data_block + 1) * sb.block_size
    first = next(fsext4.descriptors(lambda a, n: data[a : a + n], sb))
    return [(1024, 1024), (gdt, sb.groups * sb.desc_size),
            (first.block_bitmap * sb.block_size, 2 * sb.block_size)]  # fmt: skip


@FUZZ
@given(data=st.data(), which=st.sampled_from(["1k", "4k"]))
def test_damaged_filesystems_give_a_reason_or_a_map_never_a_crash(pristine, data, which: str) -> None:
    image = bytearray(pristine[which])
    targets = _targets(bytes(image))
    for _ in range(data.draw(st.integers(1, 6))):
        start, length = data.draw(st.sampled_from(targets))
        at = start + data.draw(st.integers(0, max(0, length - 1)))
        width = data.draw(st.sampled_from([1, 2, 4, 8]))
        image[at : at + width] = data.draw(st.binary(min_size=width, max_size=width))
    scan = scan_partition(BytesImage(image), 0, len(image), map_size=len(image) + 4096)
    assert isinstance(scan, FsScan)
    if scan.used is None:
        assert scan.reason and "\n" not in scan.reason
    else:
        assert scan.used.used_bytes + scan.used.clear_bytes == scan.used.size
        assert not scan.used.is_clear(len(image), len(image) + 4096)  # the padding is always used
