"""Images and keys for catalog tests, made by independent tools (sgdisk, openssl, plain file writes)."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from tests.conftest import MiB, run

SECTOR = 512


def naive_digests(path: Path, offset: int, size: int, block_size: int) -> bytes:
    """The reference: read the partition block by block from the raw file and hash each, no cleverness."""
    out = bytearray()
    with open(path, "rb") as f:
        for pos in range(0, size, block_size):
            f.seek(offset + pos)
            out += hashlib.sha256(f.read(min(block_size, size - pos))).digest()
    return bytes(out)


def make_odd_disk(path: Path) -> Path:
    """A sparse 40 MiB raw GPT disk whose partition 2 is 16 MiB + 3 KiB (a short last 1 MiB block).

    Partition 1: ESP-typed, 4 MiB, no filesystem. Partition 2: x86-64 root, LBAs 10240..43013, holding data
    only in a few places - a dense 3 MiB run, small pieces at unaligned offsets (one straddling a block
    boundary), and the last 1000 bytes - so most of it is holes and the hole/data edges fall mid-block.
    """
    with open(path, "wb") as f:
        f.truncate(40 * MiB)
    run(
        "sgdisk",
        "-a",
        "2048",
        "-n",
        "1:2048:+4M",
        "-t",
        "1:ef00",
        "-n",
        "2:10240:+32774",
        "-t",
        "2:8304",
        path,
    )
    start, size = 10240 * SECTOR, 32774 * SECTOR
    rng = random.Random(5)
    pieces = [(MiB + 100, 5000), (7 * MiB - 10, 20), (9 * MiB, 3 * MiB), (size - 1000, 1000)]
    with open(path, "r+b") as f:
        for off, n in pieces:
            f.seek(start + off)
            f.write(rng.randbytes(n))
    return path


def writable_copy(src: Path, dst: Path) -> Path:
    """A sparse-preserving writable copy (cp --sparse=always keeps holes as holes)."""
    run("cp", "--sparse=always", src, dst)
    os.chmod(dst, 0o644)
    return dst


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def make_big_disk(path: Path, mib: int) -> Path:
    """A dense raw GPT disk of ``mib`` MiB: partition 1 fills it with non-zero data (slow at 4 KiB blocks)."""
    with open(path, "wb") as f:
        f.truncate(mib * MiB)
    run("sgdisk", "-a", "2048", "-n", "1:2048:-1M", "-t", "1:8304", path)
    chunk = (bytes(range(1, 256)) * (8 * MiB // 255 + 1))[: 8 * MiB]
    with open(path, "r+b") as f:
        f.seek(MiB)
        for _ in range((mib - 2) // 8):
            f.write(chunk)
    return path
