"""The LUKS anti-forensic (AF) splitter, as cryptsetup's lib/luks1/af.c implements it.

A keyslot does not store the volume key encrypted as such but spread over ``stripes`` (4000) random-
looking stripes: losing any one stripe (a few bytes overwritten when the slot is wiped) makes the key
unrecoverable, which is what makes keyslot removal effective on disks that remap sectors.

    buf = 0
    for each of the first stripes-1 stripes s_i (random):  buf = diffuse(buf XOR s_i)
    last stripe = key XOR buf

``diffuse`` hashes each digest-sized chunk j of the buffer as H(be32(j) || chunk), truncated to the chunk.
"""

from __future__ import annotations

import hashlib
import os

#: cryptsetup's fixed stripe count for LUKS1 and LUKS2 keyslots.
STRIPES = 4000


def af_size(key_size: int, stripes: int = STRIPES) -> int:
    """Bytes of AF material for a key, rounded up to whole 512-byte sectors (``AF_split_sectors``)."""
    return (key_size * stripes + 511) // 512 * 512


def _diffuse(buf: bytes | bytearray, hash_name: str) -> bytes:
    digest_size = hashlib.new(hash_name).digest_size
    out = bytearray()
    for j, pos in enumerate(range(0, len(buf), digest_size)):
        chunk = buf[pos : pos + digest_size]
        out += hashlib.new(hash_name, j.to_bytes(4, "big") + bytes(chunk)).digest()[: len(chunk)]
    return bytes(out)


def _xor(a: bytes | bytearray | memoryview, b: bytes | bytearray | memoryview) -> bytes:
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")


def _check_hash(hash_name: str) -> None:
    if hash_name not in hashlib.algorithms_available:
        raise ValueError(f"unsupported AF hash {hash_name!r}")


def af_split(key: bytes | bytearray, stripes: int = STRIPES, hash_name: str = "sha256") -> bytearray:
    """AF material (``af_size(len(key))`` bytes, zero tail) from which :func:`af_merge` recovers ``key``."""
    _check_hash(hash_name)
    n = len(key)
    randomness = os.urandom(n * (stripes - 1))
    out = bytearray(af_size(n, stripes))
    out[: len(randomness)] = randomness
    buf = bytes(n)
    for i in range(stripes - 1):
        buf = _diffuse(_xor(buf, randomness[i * n : (i + 1) * n]), hash_name)
    out[(stripes - 1) * n : stripes * n] = _xor(key, buf)
    return out


def af_merge(
    material: bytes | bytearray, key_size: int, stripes: int = STRIPES, hash_name: str = "sha256"
) -> bytearray:
    """The key that :func:`af_split` spread over ``material``."""
    _check_hash(hash_name)
    n = key_size
    if len(material) < n * stripes:
        raise ValueError("AF material shorter than key_size * stripes")
    view = memoryview(material)
    buf = bytes(n)
    for i in range(stripes - 1):
        buf = _diffuse(_xor(buf, view[i * n : (i + 1) * n]), hash_name)
    return bytearray(_xor(view[(stripes - 1) * n : stripes * n], buf))
