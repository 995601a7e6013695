"""CRC-32C (Castagnoli), the checksum VHDX uses for its headers, region tables and log entries.

Pure Python on purpose: no dependency for a few checksums per image. It is only ever run over 4 KiB
headers and 64 KiB region tables, which are mostly zero padding, so the byte loop stops at the last
non-zero byte and the zero tail is folded in with a precomputed GF(2) operator (as zlib's
``crc32_combine`` does). A 64 KiB region table with a handful of entries costs well under a millisecond.
"""

from __future__ import annotations

_POLY = 0x82F63B78  # reflected Castagnoli polynomial


def _make_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def _mat_times(mat: list[int], vec: int) -> int:
    out = 0
    i = 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _mat_square(mat: list[int]) -> list[int]:
    return [_mat_times(mat, mat[n]) for n in range(32)]


def _make_zero_operators() -> list[list[int]]:
    """``ops[k]`` advances the raw CRC register over ``2**k`` zero bytes (k = 0..47)."""
    one_bit = [_POLY] + [1 << n for n in range(31)]  # one zero *bit*
    op = one_bit
    for _ in range(3):  # 8 bits = 1 byte
        op = _mat_square(op)
    ops = [op]
    for _ in range(47):
        ops.append(_mat_square(ops[-1]))
    return ops


_ZERO_OPS = _make_zero_operators()


def _advance_zeros(reg: int, count: int) -> int:
    k = 0
    while count:
        if count & 1:
            reg = _mat_times(_ZERO_OPS[k], reg)
        count >>= 1
        k += 1
    return reg


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C of ``data``; pass a previous result as ``crc`` to continue a running checksum."""
    data = bytes(data)
    body = data.rstrip(b"\0")
    reg = crc ^ 0xFFFFFFFF
    table = _TABLE
    for b in body:
        reg = table[(reg ^ b) & 0xFF] ^ (reg >> 8)
    zeros = len(data) - len(body)
    if zeros:
        reg = _advance_zeros(reg, zeros)
    return reg ^ 0xFFFFFFFF
