"""The block hasher against a naive hashlib loop, its hole skipping, streaming sink, bounds and cancel."""

from __future__ import annotations

import errno
import hashlib
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.catalog import hasher as hasher_module
from app.catalog.hasher import (
    BlockHasher,
    PartitionSinks,
    StreamingBlockHasher,
    data_block_intervals,
    hash_partitions,
    zero_digest,
)
from app.disk.image import DiskImage, open_image
from app.disk.layout import layout_of
from app.disk.model import Partition
from app.errors import CancelledError, ImageError
from app.progress import CancelToken, ProgressState
from tests.catalog.helpers import naive_digests
from tests.conftest import MiB, run, sgdisk_partitions

SECTOR = 512


def partition(image: DiskImage, number: int) -> Partition:
    return next(p for p in layout_of(image).partitions if p.number == number)


def reference(raw: Path, number: int, block_size: int) -> bytes:
    """Digests computed from sgdisk's view of the raw image by plain reads and hashlib."""
    p = next(q for q in sgdisk_partitions(raw) if q["number"] == number)
    first, last = int(p["first_lba"]), int(p["last_lba"])  # type: ignore[call-overload]
    return naive_digests(raw, first * SECTOR, (last - first + 1) * SECTOR, block_size)


@pytest.fixture(params=["mapped", "read"])
def hashing_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test over raw files both ways: hashed where they lie in the page cache (the C extension,
    app/catalog/_maphash.c) and read into buffers (what every other format, and a build without a C
    compiler, uses)."""
    if request.param == "mapped":
        assert hasher_module.MAPPED_HASHING, "the C extension app.catalog._maphash is not built"
    else:
        monkeypatch.setattr(hasher_module, "MAPPED_HASHING", False)
    return str(request.param)


# --- digests equal the naive loop ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["raw", "vhd", "vhdx", "vhdx-fixed", "qcow2"])
def test_formats_match_naive_hashlib(small_disk_formats: dict[str, Path], fmt: str) -> None:
    expected = {n: reference(small_disk_formats["raw"], n, MiB) for n in (2, 3, 4)}
    with open_image(small_disk_formats[fmt]) as image, BlockHasher(jobs=2) as hasher:
        for n in (2, 3, 4):
            got = hasher.hash_partition(image, partition(image, n), SECTOR, MiB)
            assert got == expected[n], f"partition {n} of the {fmt} copy"


@pytest.mark.parametrize("block_size", [4096, 65536, MiB, 16 * MiB, 64 * MiB])
def test_sparse_image_with_unaligned_holes(odd_disk: Path, block_size: int, hashing_path: str) -> None:
    with open_image(odd_disk) as image:
        part = partition(image, 2)
        start = part.first_lba * SECTOR
        inside = [
            (s, n) for s, n in image.allocated_ranges() if s < start + part.size_bytes and s + n > start
        ]
        allocated = sum(min(s + n, start + part.size_bytes) - max(s, start) for s, n in inside)
        assert 0 < allocated < part.size_bytes // 2, "the fixture must really be mostly holes"
        progress = ProgressState()
        with BlockHasher(jobs=2) as hasher:
            got = hasher.hash_partition(image, part, SECTOR, block_size, progress=progress)
    assert got == naive_digests(odd_disk, start, part.size_bytes, block_size)
    # progress counts what is read: the allocated bytes rounded out to whole blocks, never the holes
    assert allocated <= progress.total <= allocated + 2 * block_size * len(inside)
    assert progress.done == progress.total


def test_short_last_block(odd_disk: Path, hashing_path: str) -> None:
    with open_image(odd_disk) as image, BlockHasher() as hasher:
        part = partition(image, 2)
        assert part.size_bytes == 16 * MiB + 3072
        got = hasher.hash_partition(image, part, SECTOR, MiB)
        tail = image.read(part.first_lba * SECTOR + 16 * MiB, 3072)
    assert len(got) == 17 * 32
    assert got[-32:] == hashlib.sha256(tail).digest()
    assert tail != bytes(3072)  # the fixture puts data there, so this is not the zero-digest shortcut


def test_all_hole_partition_uses_zero_digests_of_the_right_lengths(tmp_path: Path) -> None:
    path = tmp_path / "empty.raw"
    with open(path, "wb") as f:
        f.truncate(8 * MiB)
    run("sgdisk", "-n", "1:2048:8195", path)  # 6148 sectors: 3 MiB + 2048 bytes
    with open_image(path) as image, BlockHasher(jobs=2) as hasher:
        got = hasher.hash_partition(image, partition(image, 1), SECTOR, MiB)
    assert got == zero_digest(MiB) * 3 + hashlib.sha256(bytes(2048)).digest()
    assert got == naive_digests(path, 2048 * SECTOR, 6148 * SECTOR, MiB)


def test_jobs_1_and_2_agree(odd_disk: Path, small_disk: Path) -> None:
    for path, number in ((odd_disk, 2), (small_disk, 3)):
        with open_image(path) as image:
            part = partition(image, number)
            with BlockHasher(jobs=1) as one, BlockHasher(jobs=2) as two:
                assert one.hash_partition(image, part, SECTOR, 4096) == two.hash_partition(
                    image, part, SECTOR, 4096
                )


def test_hash_partitions_builds_catalog_entries(small_disk: Path) -> None:
    with open_image(small_disk) as image:
        layout = layout_of(image)
        parts = hash_partitions(image, layout, [3, 2], MiB, jobs=2)
    by_sgdisk = {int(p["number"]): p for p in sgdisk_partitions(small_disk)}  # type: ignore[call-overload]
    assert [p.number for p in parts] == [3, 2]
    for p in parts:
        ref = by_sgdisk[p.number]
        assert (p.first_lba, p.last_lba) == (ref["first_lba"], ref["last_lba"])
        assert (p.partition_guid, p.type_guid) == (ref["partition_guid"], ref["type_guid"])
        assert p.block_digests == reference(small_disk, p.number, MiB)
        assert p.digest == hashlib.sha256(p.block_digests).hexdigest()


def test_data_block_intervals() -> None:
    bs = 100
    # partition at 1000, 1050 bytes: blocks 0..10 (the last is 50 bytes)
    ranges = [(0, 1010), (1150, 10), (1160, 100), (1990, 5), (2040, 500)]
    assert data_block_intervals(ranges, 1000, 1050, bs) == [(0, 3), (9, 11)]  # touching intervals merge
    assert data_block_intervals([], 1000, 1050, bs) == []
    assert data_block_intervals([(5000, 10)], 1000, 1050, bs) == []
    short_holes = [(1000, 10), (1300, 10)]  # blocks 0 and 3: two blocks of hole between them
    assert data_block_intervals(short_holes, 1000, 1050, bs, gap=1) == [(0, 1), (3, 4)]
    assert data_block_intervals(short_holes, 1000, 1050, bs, gap=2) == [(0, 4)]  # cheaper to read the hole


# --- the streaming sink ---------------------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [4096, MiB])
def test_streaming_equals_hash_partition(odd_disk: Path, block_size: int) -> None:
    rng = random.Random(block_size)
    with open_image(odd_disk) as image, BlockHasher(jobs=2) as hasher:
        part = partition(image, 2)
        expected = hasher.hash_partition(image, part, SECTOR, block_size)
        data = image.read(part.first_lba * SECTOR, part.size_bytes)
    sink = StreamingBlockHasher(part.size_bytes, block_size)
    pos = 0
    while pos < len(data):
        n = min(rng.choice([1, 7, 511, 4096, 5000, 65536, 3 * MiB + 17]), len(data) - pos)
        sink.feed(pos, memoryview(data)[pos : pos + n])
        pos += n
    assert sink.finish() == expected
    assert sink.finish() == expected  # idempotent


def test_streaming_treats_gaps_and_the_tail_as_zeros(odd_disk: Path) -> None:
    """A writer that skips holes feeds only allocated pieces; the digests must not change."""
    with open_image(odd_disk) as image, BlockHasher(jobs=1) as hasher:
        part = partition(image, 2)
        start = part.first_lba * SECTOR
        expected = hasher.hash_partition(image, part, SECTOR, 65536)
        sink = StreamingBlockHasher(part.size_bytes, 65536)
        for s, n in image.allocated_ranges():
            a, b = max(s, start), min(s + n, start + part.size_bytes - 1000)  # leave the tail unfed
            if a < b:
                sink.feed(a - start, image.read(a, b - a))
    assert sink.finish() != zero_digest(65536)
    assert sink.finish()[:-32] == expected[:-32]
    assert (
        sink.finish()[-32:] == hashlib.sha256(bytes(3072)).digest()
    )  # the unfed 1000-byte tail reads as zeros


def test_streaming_refuses_out_of_order_and_overlong_writes() -> None:
    sink = StreamingBlockHasher(10_000, 4096)
    sink.feed(0, b"a" * 5000)
    with pytest.raises(ValueError, match="out-of-order"):
        sink.feed(4999, b"b")
    with pytest.raises(ValueError, match="runs past"):
        sink.feed(5000, b"c" * 5001)
    sink.finish()
    with pytest.raises(RuntimeError):
        sink.feed(5000, b"d")


def test_partition_sinks_dispatch_like_the_block_hook() -> None:
    sinks = PartitionSinks({2: 8192, 3: 5000}, 4096)
    payload = bytes(range(256)) * 32
    sinks(1, 0, b"ignored: not protected")
    sinks(2, 0, payload)
    sinks(3, 0, payload[:5000])
    out = sinks.finish()
    assert out[2] == hashlib.sha256(payload[:4096]).digest() + hashlib.sha256(payload[4096:]).digest()
    assert out[3] == hashlib.sha256(payload[:4096]).digest() + hashlib.sha256(payload[4096:5000]).digest()


# --- bounds, errors and cancellation ---------------------------------------------------------------------


class EndlessImage(DiskImage):
    """A huge synthetic disk of non-zero bytes that records its reads: hashing it would take minutes."""

    format = "raw"

    def __init__(self, size: int, delay: float = 0.0, fail_at: int | None = None) -> None:
        super().__init__(Path("endless"))
        self.virtual_size = size
        self.delay = delay
        self.fail_at = fail_at
        self.lock = threading.Lock()
        self.reads: list[tuple[int, int]] = []
        self.active = 0
        self.max_active = 0
        self.broken = False  # set by a failing test so a runaway hasher ends instead of hashing for minutes

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        with self.lock:
            self.reads.append((offset, length))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.broken or (self.fail_at is not None and offset >= self.fail_at):
                raise ImageError("simulated read error")
            if self.delay:
                time.sleep(self.delay)
            return b"\xa5" * length
        finally:
            with self.lock:
                self.active -= 1


def big_partition(size: int) -> Partition:
    guid = "00000000-0000-4000-8000-000000000001"
    root = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
    return Partition(1, "p", root, "root", guid, 2048, 2048 + size // SECTOR - 1, size, "unknown")


@pytest.mark.parametrize("block_size", [4096, MiB, 64 * MiB])
def test_cancel_from_another_thread_returns_within_200ms(block_size: int) -> None:
    image = EndlessImage(64 * 1024 * MiB + MiB)
    progress, cancel = ProgressState(), CancelToken()
    outcome: list[BaseException | bytes] = []
    returned = threading.Event()

    def work() -> None:
        try:
            with BlockHasher(jobs=2) as hasher:
                part = big_partition(64 * 1024 * MiB)
                outcome.append(
                    hasher.hash_partition(image, part, SECTOR, block_size, progress=progress, cancel=cancel)
                )
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)
        returned.set()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not progress.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert progress.done, "hashing never got going"
    t0 = time.monotonic()
    cancel.cancel()
    returned.wait(5)
    elapsed = time.monotonic() - t0
    image.broken = True
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], CancelledError)
    assert elapsed < 0.2, f"cancel took {elapsed * 1000:.0f} ms"
    assert not [t for t in threading.enumerate() if t.name.startswith("vsc-hash")], "workers left running"


def test_memory_in_flight_is_bounded() -> None:
    """Reads never exceed the per-task read size and only ``jobs`` run at once, whatever the block size."""
    for block_size in (4096, 64 * MiB):
        image = EndlessImage(2 * 1024 * MiB, delay=0.002)
        with BlockHasher(jobs=2) as hasher:
            hasher.hash_ranges(image, [(0, 256 * MiB)], block_size)
        assert max(n for _, n in image.reads) <= hasher.piece <= 8 * MiB
        assert image.max_active <= 2
        assert image.max_active * hasher.piece < 256 * MiB
    assert BlockHasher(jobs=64).piece * 64 <= 128 * MiB


def test_read_errors_propagate_and_stop_the_pool() -> None:
    image = EndlessImage(1024 * MiB, fail_at=300 * MiB)
    with BlockHasher(jobs=2) as hasher, pytest.raises(ImageError, match="simulated"):
        hasher.hash_ranges(image, [(0, 1024 * MiB)], MiB)
    assert not [t for t in threading.enumerate() if t.name.startswith("vsc-hash")]


def test_holes_are_never_read(odd_disk: Path, hashing_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_image(odd_disk) as raw:
        part = partition(raw, 2)
        start, end = part.first_lba * SECTOR, part.first_lba * SECTOR + part.size_bytes
        allocated = list(raw.allocated_ranges())
        reads: list[tuple[int, int]] = []
        if hashing_path == "mapped":
            original_map = hasher_module._native.hash_mapped

            def recording_map(fd: int, offset: int, length: int, block_size: int, out: memoryview) -> None:
                reads.append((offset, length))
                original_map(fd, offset, length, block_size, out)

            monkeypatch.setattr(hasher_module._native, "hash_mapped", recording_map)
        else:
            original = raw.readinto

            def recording_readinto(offset: int, buffer: memoryview) -> None:
                reads.append((offset, len(buffer)))
                original(offset, buffer)

            raw.readinto = recording_readinto  # type: ignore[method-assign]
        with BlockHasher(jobs=2) as hasher:
            hasher.hash_partition(raw, part, SECTOR, 65536)
    assert reads
    for off, n in reads:
        assert start <= off and off + n <= end
        # every read overlaps allocated data within one block's distance
        assert any(s < off + n + 65536 and off < s + m + 65536 for s, m in allocated), (off, n)
    assert sum(n for _, n in reads) < part.size_bytes // 2


# --- hashing in the page cache (app/catalog/_maphash.c) ---------------------------------------------------


def test_a_file_that_cannot_be_mapped_is_read_instead(
    odd_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object) -> None:
        raise OSError(errno.ENODEV, "No such device")

    monkeypatch.setattr(hasher_module._native, "hash_mapped", refuse)
    with open_image(odd_disk) as image, BlockHasher(jobs=2) as hasher:
        part = partition(image, 2)
        got = hasher.hash_partition(image, part, SECTOR, MiB)
    assert got == naive_digests(odd_disk, part.first_lba * SECTOR, part.size_bytes, MiB)


SHRINKING_FILE = """
import os, sys
from pathlib import Path
from app.catalog import _maphash, hasher as hasher_module
from app.catalog.hasher import BlockHasher
from app.disk.image import open_image
from app.errors import ImageError

path = Path(sys.argv[1])
with open(path, "wb") as f:
    f.write(b"\\x5a" * (8 << 20))
fd = os.open(path, os.O_RDONLY)
os.truncate(path, 3 << 20)
try:  # the region now runs past the end of the file: touching it raises SIGBUS in the hashing thread
    _maphash.hash_mapped(fd, 2 << 20, 4 << 20, 1 << 20, bytearray(4 * 32))
except OSError as exc:
    print("native:", exc.errno)
path.write_bytes(b"\\x5a" * (8 << 20))
hash_mapped = hasher_module._native.hash_mapped


def cut_first(*args):  # another program cuts the image short while it is being hashed
    os.truncate(path, 3 << 20)
    hash_mapped(*args)


hasher_module._native.hash_mapped = cut_first
with open_image(path) as image, BlockHasher(jobs=1) as hasher:
    try:
        hasher.hash_ranges(image, [(0, 8 << 20)], 1 << 20)
    except ImageError as exc:
        print("hasher:", exc.one_line())
"""


def test_a_file_cut_short_under_the_mapping_is_a_read_error_not_a_crash(tmp_path: Path) -> None:
    """SIGBUS (a mapped page past the end of the file, or a failed disk read) would kill Python; the
    extension catches it in the faulting thread and reports EIO, which the hasher turns into its one-line
    read error. In a child process, so that a regression fails this test instead of killing pytest."""
    child = subprocess.run(
        [sys.executable, "-c", SHRINKING_FILE, str(tmp_path / "shrinks.raw")],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    lines = child.stdout.splitlines()
    assert lines[0] == f"native: {errno.EIO}"
    assert lines[1].startswith("hasher: ") and "read error" in lines[1] and "shrank" in lines[1], lines


def test_cancel_returns_within_200ms_while_hashing_mapped_pages(tmp_path: Path) -> None:
    path = tmp_path / "dense.raw"
    with open(path, "wb") as f:
        chunk = bytes(range(256)) * (4 * 4096)
        for _ in range(768 * MiB // len(chunk)):
            f.write(chunk)
    progress, cancel = ProgressState(), CancelToken()
    outcome: list[BaseException | list[bytes]] = []
    calls: list[int] = []
    original = hasher_module._native.hash_mapped

    def counting(fd: int, offset: int, length: int, block_size: int, out: memoryview) -> None:
        calls.append(length)
        time.sleep(0.005)  # keep it hashing for a while even on a fast machine
        original(fd, offset, length, block_size, out)

    with open_image(path) as image, pytest.MonkeyPatch.context() as mp:
        mp.setattr(hasher_module._native, "hash_mapped", counting)
        thread = threading.Thread(target=lambda: _run_into(outcome, image, progress, cancel), daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not progress.done and time.monotonic() < deadline:
            time.sleep(0.005)
        assert calls, "the mapped path was not used"
        t0 = time.monotonic()
        cancel.cancel()
        thread.join(5)
        elapsed = time.monotonic() - t0
    assert len(outcome) == 1 and isinstance(outcome[0], CancelledError), outcome
    assert elapsed < 0.2, f"cancel took {elapsed * 1000:.0f} ms"


def _run_into(
    outcome: list[BaseException | list[bytes]], image: DiskImage, progress: ProgressState, cancel: CancelToken
) -> None:
    try:
        with BlockHasher(jobs=2) as hasher:
            outcome.append(hasher.hash_ranges(image, [(0, image.virtual_size)], MiB, progress=progress,
                                              cancel=cancel))  # fmt: skip
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        outcome.append(exc)
