"""Execute a re-layout plan: the output disk as a read-only :class:`DiskImage` computed on the fly.

:func:`encrypt_image` hands a :class:`RelaidImage` to :func:`app.disk.writers.write_image`, which
already writes any ``DiskImage`` as sparse raw, dynamic VHDX or fixed VHD (temp name, fsync, atomic
rename, holes skipped): all three formats in one streaming pass, with no intermediate raw file. The
view yields the new GPT, copied partitions, and for encrypted ones the LUKS2 header area followed by
AES-XTS ciphertext; encryption runs ahead of the reader on :data:`READAHEAD` threads, and an
``on_block`` hook sees every output partition byte as it is produced (the catalog hashes it there).

Sparse ciphertext (``used``, from :func:`plan_sparse`): the units of an encrypted partition's data
segment that its filesystem does not use are neither read, encrypted nor written; they stay holes of
the output (reading as zeros, which the guest decrypts to garbage in blocks its filesystem never reads)
and hash as zero blocks in the catalog. Only a filesystem's own free-space map may clear a unit
(:mod:`app.disk.fsmap`); a hole of the base image never does.
"""

from __future__ import annotations

import bisect
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from app.disk.fsmap import FsScan, UsedMap, scan_partition
from app.disk.image import WRITE_FORMATS, DiskImage
from app.disk.model import DiskLayout
from app.disk.partitioning import create_gpt
from app.disk.writers import CHUNK as WRITE_CHUNK
from app.disk.writers import write_image
from app.errors import OutOfSpaceError
from app.luks.relayout import (
    GPT_BACK_SECTORS,
    GPT_FRONT_SECTORS,
    LBA,
    PlannedPartition,
    RelayoutError,
    RelayoutPlan,
    join_numbers,
)
from app.progress import CancelToken, NullProgress, Progress

#: Chunks encrypted ahead of the reader, each on a thread of its own (two cores: one encrypts while the
#: other hashes or writes, and the reader never waits for a single AES pass).
READAHEAD = 2
#: ``on_block(partition_number, offset_in_output_partition, data)``; see :class:`RelaidImage`.
BlockHook = Callable[[int, int, memoryview], None]


class SectorCipher(Protocol):
    """What encryption needs of :class:`app.luks.xts.XtsCipher`: safe to call from the :data:`READAHEAD`
    threads at once (an XtsCipher with that many lanes; with fewer, the threads take turns)."""

    def encrypt(self, data: bytes, offset: int) -> bytes:
        """Ciphertext of whole sectors starting at byte ``offset`` of the data segment."""
        ...


@dataclass(frozen=True)
class PartitionCrypto:
    """What an encrypted partition is written with: its LUKS2 header area and its data cipher.

    ``header`` is exactly ``plan.data_offset`` bytes (binary headers, JSON, keyslots area);
    ``cipher`` encrypts the data segment under the volume key that header wraps.
    """

    header: bytes
    cipher: SectorCipher


@dataclass(frozen=True)
class _Region:
    start: int  # output byte offset
    end: int
    kind: str  # "bytes" (GPT, LUKS header) | "copy" | "cipher"
    part: PlannedPartition | None = None
    data: bytes = b""


class RelaidImage(DiskImage):
    """The output disk of ``plan`` over the input ``src`` (see the module docstring).

    Reads of gaps return zeros; ``allocated_ranges`` lists the GPT areas, the allocated parts of copied
    partitions (their holes stay holes) and all of every encrypted partition (ciphertext of zeros is not
    zeros) but the clear units of its ``used`` map, if it has one (they read as zeros). The read-ahead
    guesses ``write_image``'s chunking (a wrong guess only wastes the chunks encrypted in vain); a cipher
    shared by the workers must take :data:`READAHEAD` threads at once
    (:class:`app.luks.xts.XtsCipher` ``lanes``); reads of ``src`` are serialised by a lock (the qcow2
    reader's caches are not thread-safe).

    ``gpt_head``/``gpt_tail`` are the first 34 and last 33 sectors of a GPT written for the plan.
    With ``on_block``, bytes of encrypted partitions must be read exactly once and in order (as
    ``write_image`` does); anything else raises ``RuntimeError`` rather than feed a catalog wrong
    hashes. For copied partitions the hook sees what is read in order; skipped holes are zeros. Clear
    units of an encrypted partition are never fed: the hook may skip them (the catalog hashes a skipped
    range as zeros), nothing else.
    """

    format = "raw"
    declared_sector_size = 512

    def __init__(
        self,
        src: DiskImage,
        plan: RelayoutPlan,
        crypto: dict[int, PartitionCrypto],
        gpt_head: bytes,
        gpt_tail: bytes,
        on_block: BlockHook | None = None,
        readahead: bool = True,
        used: Mapping[int, UsedMap] | None = None,
    ) -> None:
        super().__init__(src.path)
        self.src = src
        self.plan = plan
        self.virtual_size = plan.disk_size
        self._crypto = crypto
        self._on_block = on_block
        self._used = dict(used or {})
        for number, m in self._used.items():
            q = plan.partition(number)
            if not q.encrypt or m.size != q.data_size:
                raise ValueError(f"the used map of partition {number} does not fit its data segment")
        self._next: dict[int, int] = {p.number: 0 for p in plan.encrypted}
        self._pool = ThreadPoolExecutor(READAHEAD, thread_name_prefix="luks-readahead") if readahead else None
        self._ahead: dict[tuple[int, int, int], Future[bytes]] = {}
        self._src_lock = threading.Lock()
        regions = [_Region(0, len(gpt_head), "bytes", data=gpt_head)]
        for p in sorted(plan.partitions, key=lambda q: q.first_lba):
            if p.encrypt:
                header = crypto[p.number].header
                if len(header) != p.data_offset:
                    raise ValueError(f"LUKS2 header area of partition {p.number} is {len(header)} bytes")
                seg = p.offset + p.data_offset
                regions.append(_Region(p.offset, seg, "bytes", p, header))
                regions.append(_Region(seg, p.end, "cipher", p))
            else:
                regions.append(_Region(p.offset, p.end, "copy", p))
        regions.append(_Region(plan.disk_size - len(gpt_tail), plan.disk_size, "bytes", data=gpt_tail))
        self._regions = regions
        self._starts = [r.start for r in regions]

    # -- DiskImage -----------------------------------------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        end = offset + length
        i = max(0, bisect.bisect_right(self._starts, offset) - 1)
        pieces: list[tuple[int, bytes]] = []
        while i < len(self._regions) and self._regions[i].start < end:
            r = self._regions[i]
            lo, hi = max(offset, r.start), min(end, r.end)
            for a, b in self._present(r, lo, hi):
                data = self._read_region(r, a, b)
                if r.part is not None and self._on_block is not None:
                    self._feed(r.part, a - r.part.offset, data)
                pieces.append((a, data))
            i += 1
        if len(pieces) == 1 and pieces[0][0] == offset and len(pieces[0][1]) == length:
            return pieces[0][1]
        out = bytearray(length)
        for lo, data in pieces:
            out[lo - offset : lo - offset + len(data)] = data
        return bytes(out)

    def allocated_ranges(self) -> Iterator[tuple[int, int]]:
        src_ranges = list(self.src.allocated_ranges())
        src_starts = [s for s, _ in src_ranges]
        pending: tuple[int, int] | None = None
        for r in self._regions:
            for start, length in self._region_ranges(r, src_ranges, src_starts):
                if pending and pending[0] + pending[1] == start:
                    pending = (pending[0], pending[1] + length)
                    continue
                if pending:
                    yield pending
                pending = (start, length)
        if pending:
            yield pending

    # -- internals -----------------------------------------------------------------------------

    def _present(self, r: _Region, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """The parts of ``[lo, hi)`` of ``r`` that hold bytes (for a sparse cipher region: its used units)."""
        used = self._used.get(r.part.number) if r.kind == "cipher" and r.part is not None else None
        if used is None:
            if lo < hi:
                yield (lo, hi)
            return
        for a, b in used.used_runs(lo - r.start, hi - r.start):
            yield (r.start + a, r.start + b)

    def _region_ranges(
        self, r: _Region, src_ranges: list[tuple[int, int]], src_starts: list[int]
    ) -> Iterator[tuple[int, int]]:
        if r.kind == "cipher":
            for a, b in self._present(r, r.start, r.end):
                yield (a, b - a)
            return
        if r.kind != "copy":
            yield (r.start, r.end - r.start)
            return
        assert r.part is not None
        lo, hi = r.part.src_offset, r.part.src_offset + r.part.plaintext_size
        delta = r.start - lo
        i = max(0, bisect.bisect_right(src_starts, lo) - 1)
        while i < len(src_ranges) and src_ranges[i][0] < hi:
            s, n = src_ranges[i]
            a, b = max(s, lo), min(s + n, hi)
            if a < b:
                yield (a + delta, b - a)
            i += 1

    def close(self) -> None:
        """Stop the read-ahead worker. The input image stays open: it belongs to the caller."""
        self._drain()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _read_region(self, r: _Region, lo: int, hi: int) -> bytes:
        if r.kind == "bytes":
            return r.data[lo - r.start : hi - r.start]
        p = r.part
        assert p is not None
        if r.kind == "copy":
            with self._src_lock:
                return self.src.read(p.src_offset + lo - r.start, hi - lo)
        key = (r.start, lo, hi)
        future = self._ahead.pop(key, None)
        if future is None:
            self._drain()  # a read the guess missed: what was encrypted ahead is of no use
            data = self._encrypt(r, lo, hi)
        else:
            data = future.result()
        if self._pool is not None:
            used = self._used.get(p.number)
            pos = hi
            while pos < r.end and len(self._ahead) < READAHEAD:
                run_end = r.end
                if used is not None:  # the writer reads used runs only, cut at its chunk boundaries
                    run = used.next_used(pos - r.start)
                    if run is None:
                        break
                    pos, run_end = max(pos, r.start + run[0]), r.start + run[1]
                nxt = min((pos // WRITE_CHUNK + 1) * WRITE_CHUNK, run_end)
                if (r.start, pos, nxt) not in self._ahead:
                    self._ahead[(r.start, pos, nxt)] = self._pool.submit(self._encrypt, r, pos, nxt)
                pos = nxt
        return data

    def _drain(self) -> None:
        """Wait for every pending read-ahead and drop it (a failure for a range nobody asked for is not an
        error)."""
        ahead, self._ahead = self._ahead, {}
        for future in ahead.values():
            future.exception()

    def _encrypt(self, r: _Region, lo: int, hi: int) -> bytes:
        """Ciphertext of output bytes [lo, hi) of the data segment ``r``: whole LUKS sectors around them."""
        p = r.part
        assert p is not None
        ss = self.plan.sector_size
        rel_lo, rel_hi = lo - r.start, hi - r.start
        a = rel_lo - rel_lo % ss
        b = min(-(-rel_hi // ss) * ss, p.data_size)
        n_plain = max(0, min(b, p.plaintext_size) - a)
        with self._src_lock:
            plain = self.src.read(p.src_offset + a, n_plain) if n_plain else b""
        if len(plain) < b - a:
            plain += bytes(b - a - len(plain))  # the zero padding up to a whole LUKS sector
        cipher = self._crypto[p.number].cipher.encrypt(plain, a)
        if (a, b) == (rel_lo, rel_hi):
            return bytes(cipher)
        return bytes(cipher[rel_lo - a : rel_hi - a])

    def _feed(self, p: PlannedPartition, offset: int, data: bytes) -> None:
        assert self._on_block is not None
        if p.encrypt:
            expected = self._next[p.number]
            if offset > expected and self._clear(p, expected, offset):
                expected = offset  # a clear stretch of a sparse partition: the hook hashes it as zeros
            if offset != expected:
                raise RuntimeError(
                    f"partition {p.number} was read at offset {offset}, expected {expected}: "
                    "the block hook needs every byte once, in order"
                )
            self._next[p.number] = offset + len(data)
        self._on_block(p.number, offset, memoryview(data))

    def _clear(self, p: PlannedPartition, lo: int, hi: int) -> bool:
        """Whether output partition bytes ``[lo, hi)`` all lie in clear units of ``p``'s data segment."""
        used = self._used.get(p.number)
        return (
            used is not None and lo >= p.data_offset and used.is_clear(lo - p.data_offset, hi - p.data_offset)
        )

    @property
    def sparse(self) -> bool:
        """Whether some encrypted partition leaves its clear units as holes."""
        return bool(self._used)

    def ciphertext_bytes(self, number: int) -> int:
        """Bytes of ciphertext of partition ``number`` in the output (its data segment less clear units)."""
        p = self.plan.partition(number)
        used = self._used.get(number)
        return used.used_bytes if used is not None else p.data_size

    def unfed(self) -> list[int]:
        """Encrypted partitions whose bytes have not all gone through the hook (empty when complete)."""
        return [
            p.number
            for p in self.plan.encrypted
            if self._next[p.number] != p.size_bytes and not self._clear(p, self._next[p.number], p.size_bytes)
        ]


# -- sparse ciphertext ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparseChoice:
    """How each encrypted partition of a plan is written: ``maps`` for :func:`encrypt_image`'s ``used`` (the
    sparse ones), one note line per partition, and the manifest's ``sparse_ciphertext`` record."""

    enabled: bool
    maps: dict[int, UsedMap]
    notes: list[str]
    partitions: list[dict[str, Any]]

    def manifest(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "partitions": [dict(p) for p in self.partitions]}


def full_record(number: int, data_size: int, reason: str, filesystem: str | None = None) -> dict[str, Any]:
    """The manifest record of a partition encrypted in full."""
    return {"partition": number, "mode": "full", "filesystem": filesystem, "reason": reason,
            "encrypted_bytes": data_size, "clear_regions": 0, "clear_bytes": 0,
            "clear_regions_sha256": None, "unit_bytes": None}  # fmt: skip


def plan_sparse(
    src: DiskImage, plan: RelayoutPlan, enabled: bool, *, cancel: CancelToken | None = None
) -> SparseChoice:
    """Read the free-space map of each partition ``plan`` encrypts when ``enabled`` (see
    :mod:`app.disk.fsmap`); a partition whose map cannot be read is encrypted in full, and its note says
    why. The map covers the data segment: the zero padding after the plaintext counts as used."""
    maps: dict[int, UsedMap] = {}
    notes: list[str] = []
    records: list[dict[str, Any]] = []
    for p in plan.encrypted:
        if not enabled:
            records.append(full_record(p.number, p.data_size, "sparse_ciphertext is off"))
            continue
        scan: FsScan = scan_partition(
            src, p.src_offset, p.plaintext_size, map_size=p.data_size, cancel=cancel
        )
        if scan.used is None:
            notes.append(f"Sparse ciphertext: partition {p.number} is encrypted in full: {scan.reason}")
            records.append(full_record(p.number, p.data_size, scan.reason, scan.filesystem))
            continue
        used = scan.used
        count, clear, digest = used.summary()
        maps[p.number] = used
        records.append({"partition": p.number, "mode": "sparse", "filesystem": scan.filesystem,
                        "reason": None, "encrypted_bytes": used.used_bytes, "clear_regions": count,
                        "clear_bytes": clear, "clear_regions_sha256": digest,
                        "unit_bytes": used.unit})  # fmt: skip
        notes.append(
            f"Sparse ciphertext: partition {p.number} ({scan.filesystem}): {_gib(clear)} that the filesystem "
            f"does not use left as holes in {count} region(s), {_gib(used.used_bytes)} encrypted; anyone "
            "holding the image sees which blocks are in use"
        )
    return SparseChoice(enabled, maps, notes, records)


# -- executing a plan ------------------------------------------------------------------------------


def encrypt_image(
    src: DiskImage,
    layout: DiskLayout,
    plan: RelayoutPlan,
    out: Path,
    *,
    crypto: Mapping[int, PartitionCrypto] | Callable[[int], PartitionCrypto],
    out_format: str = "raw",
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    on_block: BlockHook | None = None,
    fsync: bool = True,
    direct: bool = False,
    gpt: tuple[bytes, bytes] | None = None,
    overwrite: bool = True,
    used: Mapping[int, UsedMap] | None = None,
) -> Path:
    """Write the re-laid-out, encrypted disk of ``plan`` over ``src`` to ``out`` in one streaming pass.

    ``crypto`` gives, for each encrypted partition number, its LUKS2 header area and data cipher
    (a mapping, or a callable asked once per partition). The GPT is written by
    :func:`~app.disk.partitioning.create_gpt` with the plan's explicit starts, GUIDs and attributes;
    copied partitions keep their holes; encrypted ones are written whole. ``out`` appears only when
    complete: an error or a cancel leaves nothing behind, and a full disk is an
    :class:`OutOfSpaceError`. ``src`` is only read. ``on_block`` (see
    :class:`~app.luks.relaid_image.RelaidImage`) sees every output partition byte as it is written.
    Progress is in bytes of the output disk. ``fsync`` and ``direct``: see
    :func:`~app.disk.writers.write_image`. ``gpt`` is :func:`gpt_bytes` of the plan when the caller already
    has it (to regenerate the same output bytes later). ``overwrite=False`` never replaces an existing
    ``out``, not even one that appears while the pass runs. ``used`` (:attr:`SparseChoice.maps`) makes the
    named partitions sparse: their clear units are left as holes (see the module docstring); progress
    then counts the bytes actually read and written, not the disk's size.
    """
    if out_format not in WRITE_FORMATS:
        raise RelayoutError(f"unknown output format {out_format!r}", f"use one of {', '.join(WRITE_FORMATS)}")
    if src.virtual_size != plan.src_size or layout.virtual_size != plan.src_size:
        raise ValueError("the plan was made for a different disk")
    out = Path(out)
    cancel = cancel or CancelToken()
    progress = progress or NullProgress()
    get = crypto.__getitem__ if isinstance(crypto, Mapping) else crypto
    keys = {p.number: get(p.number) for p in plan.encrypted}
    cancel.check()

    head, tail = gpt or gpt_bytes(plan)
    with RelaidImage(src, plan, keys, head, tail, on_block, used=used) as view:
        _write(view, plan, out, out_format, progress, cancel, fsync, direct, overwrite)
        missing = view.unfed() if on_block is not None else []
    if missing:  # a programming error: the catalog would be incomplete
        raise RuntimeError(f"partitions {missing} were not completely seen by the block hook")
    return out


def _write(
    view: RelaidImage,
    plan: RelayoutPlan,
    out: Path,
    out_format: str,
    progress: Progress,
    cancel: CancelToken,
    fsync: bool,
    direct: bool,
    overwrite: bool,
) -> None:
    """write_image with our step name, progress in bytes of work, and a free-space check up front (the
    writer reports ENOSPC itself)."""
    need = sum(n for _, n in view.allocated_ranges())
    _check_free_space(out, sum(view.ciphertext_bytes(p.number) for p in plan.encrypted), need)
    numbers = join_numbers([p.number for p in plan.encrypted])
    step = f"Encrypting partition{'s' if len(plan.encrypted) > 1 else ''} {numbers}"
    # Without sparse partitions progress stays in bytes of the disk (nearly all of it is written).
    work = _WorkProgress(progress, step, view.allocated_ranges if view.sparse else _whole(view), need
                         if view.sparse else view.virtual_size)  # fmt: skip
    write_image(view, out, out_format, progress=work, cancel=cancel, fsync=fsync, direct=direct,
                overwrite=overwrite)  # fmt: skip


def _whole(view: DiskImage) -> Callable[[], Iterator[tuple[int, int]]]:
    return lambda: iter([(0, view.virtual_size)])


def gpt_bytes(plan: RelayoutPlan) -> tuple[bytes, bytes]:
    """The first 34 and last 33 sectors of the plan's GPT, written by libparted on a sparse scratch file."""
    with tempfile.TemporaryDirectory(prefix="shieldwright-gpt-") as tmp:
        path = Path(tmp) / "gpt.raw"
        placed = create_gpt(path, plan.disk_size, plan.new_partitions(), plan.disk_guid)
        got = [(q.first_lba, q.last_lba, q.partition_guid) for q in placed]
        want = [(p.first_lba, p.last_lba, p.partition_guid) for p in plan.partitions]
        if got != want:  # pragma: no cover - create_gpt places explicit starts exactly
            raise RuntimeError("the partition table was not written where it was planned")
        with open(path, "rb") as f:
            head = f.read(GPT_FRONT_SECTORS * LBA)
            f.seek(plan.disk_size - GPT_BACK_SECTORS * LBA)
            tail = f.read(GPT_BACK_SECTORS * LBA)
    return head, tail


def _check_free_space(out: Path, at_least: int, up_to: int) -> None:
    """Refuse before writing when even the ciphertext alone (written wherever it is not clear) cannot fit."""
    try:
        st = os.statvfs(out.parent if str(out.parent) else ".")
    except OSError:
        return  # the writer reports a missing folder clearly
    free = st.f_bavail * st.f_frsize
    if free < at_least:
        raise OutOfSpaceError(
            f"not enough space on {_where(out)}: need at least {_gib(at_least)} "
            f"(up to {_gib(max(at_least, up_to))}), {_gib(free)} free",
            "free some space or write the output elsewhere",
        )


def _where(out: Path) -> str:
    return str(out.parent.resolve()) if str(out.parent) else "."


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


class _WorkProgress:
    """Passes progress through under our own step name (write_image calls its step "Writing raw"), in bytes
    of work: write_image reports its position on the disk, which jumps over holes; this counts only the
    allocated bytes before that position (what was read, encrypted and written), so the ETA of a mostly
    clear disk is that of its data. ``ranges`` (called once) gives the allocated ranges, ``total`` their sum.
    """

    def __init__(
        self, inner: Progress, step: str, ranges: Callable[[], Iterator[tuple[int, int]]], total: int
    ) -> None:
        self.inner, self.step, self.total = inner, step, total
        self._ranges = ranges()
        self._current = next(self._ranges, None)
        self._before = 0  # bytes of the ranges wholly behind the position

    def begin(self, step: str, total: int) -> None:
        self.inner.begin(self.step, self.total)

    def update(self, done: int) -> None:
        while self._current is not None and self._current[0] + self._current[1] <= done:
            self._before += self._current[1]
            self._current = next(self._ranges, None)
        within = 0 if self._current is None else max(0, done - self._current[0])
        self.inner.update(min(self.total, self._before + within))

    def advance(self, amount: int) -> None:
        self.inner.advance(amount)
