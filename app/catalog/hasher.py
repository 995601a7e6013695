"""Hash every block of a partition on all cores, skipping holes; or hash blocks as a writer streams them.

``hashlib`` and ``DiskImage.readinto`` (a ``preadv``) release the GIL, so a thread pool scales across cores
as long as Python does little per byte: each task covers many blocks (:data:`TASK_BYTES`), reads them in a
few large ``preadv`` calls into its thread's reused buffer (no fresh memory to fault in per read) and
writes each digest straight into the partition's digest array. :class:`BlockHasher` cancels within
200 ms and bounds memory; :class:`StreamingBlockHasher` gives the same digests from bytes a writer feeds.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import lru_cache

from app.catalog.format import DIGEST_SIZE, CatalogError, CatalogPartition, block_count, check_block_size
from app.disk.image import DiskImage
from app.disk.model import DiskLayout, Partition
from app.errors import CancelledError, ImageError
from app.progress import CancelToken, NullProgress, Progress
from app.untrusted import has_type

try:  # compiled by setup.py at install; see app/catalog/_maphash.c
    from app.catalog import _maphash as _native

    MAPPED_HASHING = True
except ImportError:  # pragma: no cover - an install without a C compiler reads into buffers instead
    MAPPED_HASHING = False

MiB = 1024 * 1024
#: Work per task: big enough that Python's per-task cost is noise, small enough to spread over the pool.
TASK_BYTES = 32 * MiB
#: Upper bound of data held by running tasks together (read buffers).
IN_FLIGHT_BUDGET = 128 * MiB
MAX_READ = 8 * MiB
MIN_READ = MiB
MAX_JOBS = 64
#: How often the waiting thread looks at the cancel token and publishes progress.
POLL_SECONDS = 0.05
#: Holes shorter than this between data are read rather than skipped: hashing 256 KiB of zeros costs less
#: than an extra task, and it keeps the task list short on finely fragmented (qcow2, VHDX) images.
MERGE_GAP = 256 * 1024


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_JOBS))


def read_size(jobs: int) -> int:
    """Bytes per ``read`` in a task: 8 MiB, less when many workers would together exceed the budget."""
    size = MAX_READ
    while size > MIN_READ and size * jobs > IN_FLIGHT_BUDGET:
        size //= 2
    return size


@lru_cache(maxsize=64)
def zero_digest(length: int) -> bytes:
    """SHA-256 of ``length`` zero bytes, hashed in 1 MiB steps so a 64 MiB block costs no 64 MiB buffer."""
    h = hashlib.sha256()
    chunk = bytes(min(length, MiB))
    left = length
    while left:
        n = min(left, len(chunk))
        h.update(memoryview(chunk)[:n])
        left -= n
    return h.digest()


def zero_digests(size_bytes: int, block_size: int) -> bytearray:
    """The digests of a ``size_bytes`` partition that is all zeros (the starting point before data)."""
    n = block_count(size_bytes, block_size)
    out = bytearray(zero_digest(block_size) * n)
    tail = size_bytes - (n - 1) * block_size if n else 0
    if n and tail != block_size:
        out[-DIGEST_SIZE:] = zero_digest(tail)
    return out


def hash_blocks(data: bytes | bytearray | memoryview, block_size: int) -> bytes:
    """Digests of ``data`` cut into ``block_size`` blocks (the last may be short). The reference loop."""
    mv = memoryview(data)
    return b"".join(hashlib.sha256(mv[i : i + block_size]).digest() for i in range(0, len(mv), block_size))


# --- planning ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Span:
    """A task: ``nbytes`` from ``disk_offset``, i.e. blocks of partition job ``job`` from ``first_block``."""

    job: int
    first_block: int
    disk_offset: int
    nbytes: int


@dataclass
class _Job:
    """One partition being hashed: where it is and the digest buffer tasks fill in."""

    offset: int
    size: int
    digests: bytearray


def data_block_intervals(
    ranges: Sequence[tuple[int, int]], offset: int, size: int, block_size: int, gap: int = 0
) -> list[tuple[int, int]]:
    """Block index intervals ``[lo, hi)`` of the partition at ``offset`` that touch allocated ``ranges``.

    Any block not in an interval lies entirely in a hole and reads as zeros. Ranges are ascending
    ``(disk_offset, length)``; the result is ascending, with intervals at most ``gap`` blocks apart merged.
    """
    out: list[tuple[int, int]] = []
    end = offset + size
    for start, length in ranges:
        a, b = max(start, offset), min(start + length, end)
        if a >= b:
            if start >= end:
                break
            continue
        lo, hi = (a - offset) // block_size, -(-(b - offset) // block_size)
        if out and lo <= out[-1][1] + gap:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _spans(
    job: int, offset: int, size: int, block_size: int, intervals: Iterable[tuple[int, int]]
) -> Iterator[_Span]:
    per_task = max(1, TASK_BYTES // block_size)
    for lo, hi in intervals:
        for first in range(lo, hi, per_task):
            last = min(first + per_task, hi)
            start = first * block_size
            nbytes = min(last * block_size, size) - start
            yield _Span(job, first, offset + start, nbytes)


# --- the pool -----------------------------------------------------------------------------------------------


class _Stopped(Exception):
    """A task saw the stop flag: the result is being thrown away anyway."""


class _Counter:
    """Bytes hashed so far, added to by workers and read by the waiting thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n


class _Buffers(threading.local):
    """One reusable read buffer per worker thread: reads land in memory that is already faulted in."""

    view: memoryview | None = None

    def get(self, size: int) -> memoryview:
        if self.view is None or len(self.view) != size:
            self.view = memoryview(bytearray(size))
        return self.view


def _hash_span_mapped(
    image: DiskImage,
    span: _Span,
    block_size: int,
    piece: int,
    out: bytearray,
    stop: threading.Event,
    counter: _Counter,
) -> bool:
    """Like :func:`_hash_span`, hashing the file where it lies in the page cache (no copy; see
    app/catalog/_maphash.c). False when the image is not one linear file or the file cannot be mapped:
    the caller reads it instead."""
    linear = image.linear_file() if MAPPED_HASHING else None
    if linear is None:
        return False
    fd, shift = linear
    step = max(piece - piece % block_size, block_size)  # whole blocks per call, stop checked in between
    pos, end = span.disk_offset, span.disk_offset + span.nbytes
    at = span.first_block * DIGEST_SIZE
    view = memoryview(out)
    while pos < end:
        if stop.is_set():
            raise _Stopped
        n = min(step, end - pos)
        blocks = -(-n // block_size)
        try:
            _native.hash_mapped(fd, pos + shift, n, block_size, view[at : at + blocks * DIGEST_SIZE])
        except OSError as exc:
            if exc.errno != errno.EIO:
                if pos == span.disk_offset:
                    return False  # e.g. ENODEV: this file cannot be mapped; nothing written yet
                raise ImageError(
                    f"{image.path}: cannot map offset {pos} ({exc.strerror})", "check the disk"
                ) from None
            raise ImageError(
                f"{image.path}: read error at offset {pos} (the file shrank while being read, or the disk "
                "failed)",
                "check the disk, and that nothing else writes to the image",
            ) from None
        at += blocks * DIGEST_SIZE
        counter.add(n)
        pos += n
    return True


def _hash_span(
    image: DiskImage,
    span: _Span,
    block_size: int,
    buffers: _Buffers,
    piece: int,
    out: bytearray,
    stop: threading.Event,
    counter: _Counter,
) -> None:
    """Write the digests of the blocks of ``span`` into ``out`` at the span's place; reads at most
    ``piece`` bytes at a time into this thread's buffer. Spans never overlap, so workers write disjoint
    slices of ``out`` (same-length slice assignment never resizes it)."""
    if _hash_span_mapped(image, span, block_size, piece, out, stop, counter):
        return
    pos, end = span.disk_offset, span.disk_offset + span.nbytes
    at = span.first_block * DIGEST_SIZE
    sha256 = hashlib.sha256
    if block_size <= piece:
        buf = buffers.get(piece - piece % block_size)
        while pos < end:
            if stop.is_set():
                raise _Stopped
            n = min(len(buf), end - pos)
            view = buf[:n]
            image.readinto(pos, view)
            for i in range(0, n, block_size):
                out[at : at + DIGEST_SIZE] = sha256(view[i : i + block_size]).digest()
                at += DIGEST_SIZE
            counter.add(n)
            pos += n
        return
    buf = buffers.get(piece)
    while pos < end:  # blocks larger than a read: hash each incrementally
        h = sha256()
        block_end = min(pos + block_size, end)
        while pos < block_end:
            if stop.is_set():
                raise _Stopped
            n = min(piece, block_end - pos)
            view = buf[:n]
            image.readinto(pos, view)
            h.update(view)
            counter.add(n)
            pos += n
        out[at : at + DIGEST_SIZE] = h.digest()
        at += DIGEST_SIZE


class BlockHasher:
    """A pool of hashing threads the engine owns; use as a context manager (or call :meth:`close`).

    One hasher may hash many partitions, one call at a time. ``jobs`` defaults to the CPU count.

    Cancellation: tasks check a stop flag between reads (every few milliseconds of work); the waiting
    thread polls the :class:`~app.progress.CancelToken` every 50 ms, stops the tasks and cancels the queued
    ones. Memory: each worker thread keeps one read buffer (:func:`read_size`) for its life and at most
    ``2 x jobs`` tasks are queued, so data in flight stays far below 256 MiB. Holes: blocks entirely outside
    ``DiskImage.allocated_ranges()`` are never read; they get the digest of a zero block of their length.
    """

    def __init__(self, jobs: int | None = None) -> None:
        jobs = default_jobs() if jobs is None else jobs
        if not has_type(jobs, int) or not 1 <= jobs <= MAX_JOBS:
            raise CatalogError(f"{jobs!r} hashing threads is out of range", f"use 1 to {MAX_JOBS} (--jobs)")
        self.jobs = jobs
        self.piece = read_size(jobs)
        self._buffers = _Buffers()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    def __enter__(self) -> BlockHasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker threads (queued work is dropped; running tasks have already been told to stop)."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._closed:
            raise RuntimeError("this BlockHasher is closed")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="vsc-hash")
        return self._pool

    # -- public API ----------------------------------------------------------------------------------------

    def hash_partition(
        self,
        image: DiskImage,
        part: Partition,
        sector_size: int,
        block_size: int,
        *,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
    ) -> bytes:
        """The block digests (``block_count * 32`` bytes) of ``part`` as it stands in ``image``."""
        offset = part.first_lba * sector_size
        (digests,) = self.hash_ranges(
            image, [(offset, part.size_bytes)], block_size, step=f"Hashing partition {part.number}",
            progress=progress, cancel=cancel,
        )  # fmt: skip
        return digests

    def hash_partitions(
        self,
        image: DiskImage,
        layout: DiskLayout,
        numbers: Sequence[int],
        block_size: int,
        *,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
    ) -> list[CatalogPartition]:
        """Hash the partitions ``numbers`` (GPT numbers, in that order) in one pass over one pool."""
        parts = [find_partition(layout, n) for n in numbers]
        ss = layout.sector_size
        step = f"Hashing partition{'s' if len(parts) > 1 else ''} " + ", ".join(str(p.number) for p in parts)
        ranges = [(p.first_lba * ss, p.size_bytes) for p in parts]
        results = self.hash_ranges(image, ranges, block_size, step=step, progress=progress, cancel=cancel)
        return [
            CatalogPartition.from_digests(
                number=p.number,
                partition_guid=p.partition_guid,
                type_guid=p.type_guid,
                first_lba=p.first_lba,
                last_lba=p.last_lba,
                size_bytes=p.size_bytes,
                block_digests=d,
            )  # fmt: skip
            for p, d in zip(parts, results, strict=True)
        ]

    def hash_ranges(
        self,
        image: DiskImage,
        ranges: Sequence[tuple[int, int]],
        block_size: int,
        *,
        step: str = "Hashing",
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
    ) -> list[bytes]:
        """Block digests of each ``(disk_offset, size)`` range of ``image``.

        Progress counts the bytes that are actually read (holes cost nothing, so counting them would
        make the rate and ETA lie); ``total`` is known before the first read.
        """
        check_block_size(block_size)
        progress = progress or NullProgress()
        cancel = cancel or CancelToken()
        cancel.check()
        allocated = list(image.allocated_ranges())
        jobs: list[_Job] = []
        plans: list[list[tuple[int, int]]] = []
        for offset, size in ranges:
            if offset < 0 or size < 0 or offset + size > image.virtual_size:
                raise CatalogError(
                    f"range {offset}+{size} lies outside the {image.virtual_size}-byte disk",
                    "the partition table points past the end of the disk",
                )
            jobs.append(_Job(offset, size, zero_digests(size, block_size)))
            plans.append(data_block_intervals(allocated, offset, size, block_size, MERGE_GAP // block_size))
        total = sum(
            min(hi * block_size, j.size) - lo * block_size
            for j, p in zip(jobs, plans, strict=True)
            for lo, hi in p
        )
        spans = itertools.chain.from_iterable(
            _spans(i, j.offset, j.size, block_size, p)
            for i, (j, p) in enumerate(zip(jobs, plans, strict=True))
        )  # generated as they are submitted: a huge, fragmented disk never has all its tasks in memory
        progress.begin(step, total)
        self._run(image, jobs, spans, block_size, progress, cancel)
        return [bytes(j.digests) for j in jobs]

    # -- the scheduling loop -------------------------------------------------------------------------------

    def _run(
        self,
        image: DiskImage,
        jobs: list[_Job],
        spans: Iterator[_Span],
        block_size: int,
        progress: Progress,
        cancel: CancelToken,
    ) -> None:
        pool = self._executor()
        stop = threading.Event()
        counter = _Counter()
        limit = 2 * self.jobs  # queued + running: keeps every worker busy, bounds memory
        pending = spans
        in_flight: dict[Future[None], _Span] = {}
        reported = -1
        try:
            while True:
                while len(in_flight) < limit:
                    span = next(pending, None)
                    if span is None:
                        break
                    fut = pool.submit(
                        _hash_span, image, span, block_size, self._buffers, self.piece,
                        jobs[span.job].digests, stop, counter,
                    )  # fmt: skip
                    in_flight[fut] = span
                if not in_flight:
                    progress.update(counter.value)
                    break
                done, _ = wait(in_flight, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                for fut in done:
                    del in_flight[fut]
                    fut.result()  # re-raises a read error (ImageError) from the worker
                if counter.value != reported:
                    reported = counter.value
                    progress.update(reported)
                if cancel.cancelled:
                    raise CancelledError()
        except BaseException:
            # Cancel, a read error, or Ctrl-C in the waiting thread: stop the workers promptly and drop
            # the queue; running tasks notice within one read, so return without waiting for them.
            stop.set()
            for fut in in_flight:
                fut.cancel()
            wait(in_flight, timeout=POLL_SECONDS)
            raise


def find_partition(layout: DiskLayout, number: int) -> Partition:
    for p in layout.partitions:
        if p.number == number:
            return p
    have = ", ".join(str(p.number) for p in layout.partitions) or "none"
    raise CatalogError(f"the image has no partition {number}", f"partitions on this disk: {have}")


def hash_partitions(
    image: DiskImage,
    layout: DiskLayout,
    numbers: Sequence[int],
    block_size: int,
    *,
    jobs: int | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> list[CatalogPartition]:
    """:meth:`BlockHasher.hash_partitions` with a pool of its own, shut down before returning."""
    with BlockHasher(jobs) as hasher:
        return hasher.hash_partitions(image, layout, numbers, block_size, progress=progress, cancel=cancel)


# --- streaming ----------------------------------------------------------------------------------------------


class StreamingBlockHasher:
    """Block digests of one partition from bytes fed in order, e.g. ciphertext as a writer produces it.

    ``feed(offset, data)`` takes the partition's bytes at ``offset`` (relative to the partition start).
    Offsets must never go backwards; a forward gap is a hole and hashes as zeros, which is what a
    writer that skips holes means by it. Whole blocks are hashed straight from ``data`` (no copy);
    only a partial block is buffered. :meth:`finish` treats any unfed tail as zeros too and returns the
    same bytes :meth:`BlockHasher.hash_partition` would for the finished partition.
    """

    def __init__(self, size_bytes: int, block_size: int) -> None:
        check_block_size(block_size)
        if not has_type(size_bytes, int) or size_bytes < 0:
            raise ValueError(f"invalid partition size {size_bytes!r}")
        self.size_bytes = size_bytes
        self.block_size = block_size
        self._digests = bytearray()
        self._partial = bytearray()
        self._pos = 0  # bytes consumed so far (hashed + buffered)
        self._result: bytes | None = None

    @property
    def position(self) -> int:
        """The partition offset the next ``feed`` is expected at (or beyond, for a hole)."""
        return self._pos

    def feed(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if self._result is not None:
            raise RuntimeError("feed() after finish()")
        mv = memoryview(data).cast("B")
        if offset < self._pos:
            raise ValueError(
                f"out-of-order write at partition offset {offset}, expected {self._pos} or later"
            )
        if offset + len(mv) > self.size_bytes:
            raise ValueError(
                f"write of {len(mv)} bytes at {offset} runs past the {self.size_bytes}-byte partition"
            )
        if offset > self._pos:
            self._zeros(offset - self._pos)
        self._consume(mv)

    def finish(self) -> bytes:
        """All block digests (``block_count * 32`` bytes); the unfed rest of the partition counts as zeros."""
        if self._result is None:
            self._zeros(self.size_bytes - self._pos)
            if self._partial:
                self._digests += hashlib.sha256(self._partial).digest()  # the short last block
                self._partial.clear()
            self._result = bytes(self._digests)
        return self._result

    def _consume(self, mv: memoryview) -> None:
        bs = self.block_size
        i = 0
        if self._partial:
            take = min(bs - len(self._partial), len(mv))
            self._partial += mv[:take]
            i = take
            if len(self._partial) == bs:
                self._digests += hashlib.sha256(self._partial).digest()
                self._partial.clear()
        while len(mv) - i >= bs:
            self._digests += hashlib.sha256(mv[i : i + bs]).digest()
            i += bs
        if i < len(mv):
            self._partial += mv[i:]
        self._pos += len(mv)

    def _zeros(self, n: int) -> None:
        """Consume ``n`` zero bytes without allocating ``n`` bytes."""
        bs = self.block_size
        if self._partial and n:
            take = min(bs - len(self._partial), n)
            self._consume(memoryview(bytes(take)))
            n -= take
        whole, rest = divmod(n, bs)
        if whole:
            self._digests += zero_digest(bs) * whole
            self._pos += whole * bs
        if rest:
            self._consume(memoryview(bytes(rest)))


class PartitionSinks:
    """One :class:`StreamingBlockHasher` per protected partition, callable as the re-layout's block hook.

    ``sinks(number, offset, data)`` matches ``app.luks.relaid_image.BlockHook``; bytes of partitions not
    in ``sizes`` (unprotected ones the writer copies) are ignored.
    """

    def __init__(self, sizes: Mapping[int, int], block_size: int) -> None:
        self.hashers = {n: StreamingBlockHasher(size, block_size) for n, size in sizes.items()}

    def __call__(self, number: int, offset: int, data: bytes | bytearray | memoryview) -> None:
        hasher = self.hashers.get(number)
        if hasher is not None:
            hasher.feed(offset, data)

    def finish(self) -> dict[int, bytes]:
        return {n: h.finish() for n, h in self.hashers.items()}
