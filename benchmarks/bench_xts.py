"""Bulk AES-XTS-plain64 (app.luks.xts.XtsCipher) against a naive per-sector loop and OpenSSL's own XTS.

    .venv/bin/python benchmarks/bench_xts.py [--size-mib 256] [--chunk-mib 8]

1. Bulk: ``XtsCipher.encrypt_into`` (a caller-owned output buffer, as a streaming writer uses it) over
   ``--size-mib`` of random data in ``--chunk-mib`` chunks, one thread, for 4096-byte sectors (LUKS2
   default here) and 512-byte sectors; also ``XtsCipher.encrypt``, which returns new ``bytes`` (one
   more copy of every byte). Both engines: the default compiled per-sector loop (``openssl-sectors``,
   app/luks/_xts.c, the system libcrypto) and the NumPy tweak arithmetic (``numpy-tweaks``, the fallback).
2. Naive: one ``cryptography`` XTS context per sector, the obvious Python loop, on a smaller sample
   (timing is linear in the sector count) and scaled; same sector sizes.
3. ``openssl speed -evp aes-256-xts -seconds 3``: the system OpenSSL's C speed (its largest block size,
   which is one XTS data unit per call: no Python, no tweak bookkeeping); and, as the real ceiling of
   what the bulk path calls, ``cryptography``'s own (bundled) OpenSSL XTS over 2 MiB data units - the
   bulk path's one cipher pass, without its tweak arithmetic.

Each figure is the best of ``--rounds`` runs. Prints MB/s (10^6 bytes per second) for each and the
ratios bulk/naive and bulk/openssl.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402

from app.luks.xts import DEFAULT_ENGINE, ENGINES, XtsCipher  # noqa: E402

MiB = 1024 * 1024


def bulk_rate(key: bytes, data: bytes, sector_size: int, total: int, into: bool, engine: str) -> float:
    """MB/s of XtsCipher.encrypt_into (or .encrypt) over ``total`` bytes, cycling over one chunk ``data``."""
    cipher = XtsCipher(key, sector_size, engine=engine)
    out = bytearray(len(data))
    cipher.encrypt_into(data, 0, out)  # warm-up: scratch buffers allocated once
    cipher.encrypt(data, 0)
    start = time.perf_counter()
    offset = 0
    while offset < total:
        if into:
            cipher.encrypt_into(data, offset, out)
        else:
            cipher.encrypt(data, offset)
        offset += len(data)
    return offset / (time.perf_counter() - start) / 1e6


def naive_rate(key: bytes, data: bytes, sector_size: int) -> float:
    """MB/s of one cryptography XTS context per sector over ``data``."""
    start = time.perf_counter()
    out = []
    for pos in range(0, len(data), sector_size):
        enc = Cipher(algorithms.AES(key), modes.XTS((pos // 512).to_bytes(16, "little"))).encryptor()
        out.append(enc.update(data[pos : pos + sector_size]) + enc.finalize())
    return len(data) / (time.perf_counter() - start) / 1e6


def bundled_rate(key: bytes, data: bytes, seconds: float = 1.0) -> float:
    """MB/s of cryptography's XTS over ``data`` as one data unit per call (one reused context)."""
    enc = Cipher(algorithms.AES(key), modes.XTS(bytes(16))).encryptor()
    out = bytearray(len(data) + 16)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        enc.update_into(data, out)
        done += len(data)
    return done / (time.perf_counter() - start) / 1e6


def openssl_rate(seconds: int) -> tuple[float, str]:
    """OpenSSL's aes-256-xts MB/s at its largest block size, and that size's label."""
    proc = subprocess.run(
        ["openssl", "speed", "-evp", "aes-256-xts", "-seconds", str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    )
    header = next(line for line in proc.stdout.splitlines() if line.startswith("type"))
    row = next(line for line in proc.stdout.splitlines() if line.lower().startswith("aes-256-xts"))
    sizes = re.findall(r"(\d+) bytes", header)
    values = re.findall(r"([\d.]+)k", row)
    return float(values[-1]) * 1000 / 1e6, f"{sizes[-1]}-byte blocks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="bytes encrypted by the bulk run")
    parser.add_argument("--chunk-mib", type=int, default=8, help="chunk size of the bulk run")
    parser.add_argument("--openssl-seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each measurement; the best is kept")
    args = parser.parse_args()
    key = os.urandom(64)
    chunk = os.urandom(args.chunk_mib * MiB)
    total = args.size_mib * MiB
    ossl, ossl_size = openssl_rate(args.openssl_seconds)
    print(f"openssl speed -evp aes-256-xts ({ossl_size}): {ossl:8.0f} MB/s")
    bundled = bundled_rate(key, chunk[: 2 * MiB])
    print(f"cryptography's bundled OpenSSL XTS (2 MiB data units): {bundled:8.0f} MB/s")
    print(f"default engine: {DEFAULT_ENGINE}")
    for sector_size, sample_mib in ((4096, 32), (512, 8)):
        sample = os.urandom(sample_mib * MiB)
        bulk = dict.fromkeys(ENGINES, 0.0)
        copying = dict.fromkeys(ENGINES, 0.0)
        naive = 0.0
        for _ in range(args.rounds):  # interleaved, so that a noisy moment hits every contender alike
            for engine in ENGINES:
                for into, best in ((True, bulk), (False, copying)):
                    best[engine] = max(best[engine], bulk_rate(key, chunk, sector_size, total, into, engine))
            naive = max(naive, naive_rate(key, sample, sector_size))
        print(f"\n{sector_size}-byte sectors")
        for engine in ENGINES:
            label = f"bulk {engine}: encrypt_into ({args.size_mib} MiB, {args.chunk_mib} MiB chunks, 1 core)"
            print(f"  {label:76s} {bulk[engine]:8.0f} MB/s")
            label = "  the same with .encrypt (returns new bytes: one more copy)"
            print(f"  {label:76s} {copying[engine]:8.0f} MB/s")
        label = f"naive per-sector XTS loop ({sample_mib} MiB sample, scaled)"
        print(f"  {label:76s} {naive:8.0f} MB/s")
        for engine in ENGINES:
            rate = bulk[engine]
            print(f"  {engine:16s} bulk / naive = {rate / naive:5.2f}x   (.encrypt / naive = "
                  f"{copying[engine] / naive:5.2f}x)   bulk / openssl = {rate / ossl:5.2f}x   "
                  f"bulk / bundled XTS = {rate / bundled:5.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
