"""How big should one ``pwrite`` be? Writing ~2 GiB of fresh data into a new file, per slice size.

    .venv/bin/python benchmarks/bench_write_slices.py [--mib 2080] [--rounds 2] [--dir DIR]

Why this exists: ``app.disk.writers`` writes its 4 MiB chunks as :data:`~app.disk.outfile.WRITE_SLICE`
pieces. On the ext4-in-a-VM machines this project is built on, one 4 MiB ``pwrite`` into the page cache was
several times slower than the same bytes as 256 KiB ``pwrite``\\s; this measures it again, next to
``cp --sparse=never`` of a file of the same size (the build benchmark's baseline). Each variant writes the
same bytes (a pool of 16 random 4 MiB chunks, cycled), then fsyncs; rounds are interleaved so a noisy
moment hits every variant. Prints seconds to write, to fsync, and MB/s of the total, best round each.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.disk.outfile import WRITE_SLICE  # noqa: E402

MiB = 1024 * 1024
CHUNK = 4 * MiB


def write_file(path: Path, pool: list[bytes], chunks: int, slice_size: int) -> tuple[float, float]:
    """Seconds to pwrite ``chunks`` chunks in ``slice_size`` pieces, and to fsync afterwards."""
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, chunks * CHUNK)
        for i in range(chunks):
            view = memoryview(pool[i % len(pool)])
            for j in range(0, CHUNK, slice_size):
                os.pwrite(fd, view[j : j + slice_size], i * CHUNK + j)
        written = time.perf_counter()
        os.fsync(fd)
    finally:
        os.close(fd)
    return written - start, time.perf_counter() - written


def copy_file(src: Path, dst: Path) -> tuple[float, float]:
    start = time.perf_counter()
    subprocess.run(["cp", "--sparse=never", str(src), str(dst)], check=True)
    copied = time.perf_counter()
    subprocess.run(["sync", str(dst)], check=True)
    return copied - start, time.perf_counter() - copied


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=2080, help="file size in MiB (default 2080)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: system temp)")
    args = ap.parse_args()
    chunks = args.mib * MiB // CHUNK
    pool = [os.urandom(CHUNK) for _ in range(16)]
    slices = sorted({4 * MiB, 1 * MiB, WRITE_SLICE, 64 * 1024}, reverse=True)
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-slices-", dir=args.dir) as tmp:
        d = Path(tmp)
        source = d / "source.raw"
        write_file(source, pool, chunks, WRITE_SLICE)
        for _ in range(args.rounds):
            for size in slices:
                out = d / "out.raw"
                label = f"pwrite {size // 1024} KiB" + (" (WRITE_SLICE)" if size == WRITE_SLICE else "")
                results.setdefault(label, []).append(write_file(out, pool, chunks, size))
                out.unlink()
                subprocess.run(["sync"], check=True)
            out = d / "copy.raw"
            results.setdefault("cp --sparse=never + sync", []).append(copy_file(source, out))
            out.unlink()
            subprocess.run(["sync"], check=True)
    total = chunks * CHUNK
    print(f"{total / MiB:.0f} MiB of fresh data into a new file, best of {args.rounds} interleaved rounds:")
    for label, runs in results.items():
        w, f = min(runs, key=sum)
        print(f"  {label:28s} write {w:5.2f} s  fsync {f:5.2f} s  {total / (w + f) / 1e6:7.0f} MB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
