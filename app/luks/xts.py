"""Bulk AES-XTS with plain64 IVs, as LUKS2's ``aes-xts-plain64`` uses it.

Why not one ``modes.XTS`` object per sector: creating a cipher context costs a few microseconds, which
caps a per-sector loop at ~120 MB/s for 512-byte sectors. Here a whole chunk is done with two ECB
passes and NumPy:

1. the first tweak of every sector, ``E_k2(le128(iv))``, from ONE ECB encryption of all sector numbers;
2. the tweak of block *j* of a sector is that times alpha^j in GF(2^128) (the XTS polynomial
   x^128 + x^7 + x^2 + x + 1). They are computed as uint64 (lo, hi) pairs, doubling the number of
   known columns per step (multiply by alpha^k = shift by k bits, fold the k carried-out bits back with
   0x87); columns 128..255 follow from the identity alpha^128 = 1 + alpha + alpha^2 + alpha^7, i.e. an
   XOR of four earlier columns;
3. XOR, one ECB pass (key1) over the chunk, XOR again.

IV: plain64 is the sector number in **512-byte units** even for 4096-byte sectors (LUKS2 never uses
``iv_large_sectors``), so the sector at byte offset X of the segment has IV X // 512.

An :class:`XtsCipher` keeps scratch buffers sized for the last chunk size so that steady-state
encryption does not page-fault fresh memory for every chunk; it is therefore not thread-safe: use
one object per thread.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

#: Anything exposing the buffer protocol (collections.abc.Buffer is 3.12+).
Buffer = bytes | bytearray | memoryview

_U64 = np.uint64
_VALID_SECTOR_SIZES = (512, 1024, 2048, 4096)


def _check(data_len: int, offset: int, sector_size: int) -> None:
    if sector_size not in _VALID_SECTOR_SIZES:
        raise ValueError(f"sector size must be one of {_VALID_SECTOR_SIZES}, not {sector_size}")
    if data_len % sector_size or offset % sector_size or offset < 0:
        raise ValueError("data length and offset must be non-negative multiples of the sector size")


def _tweak_columns(t0: np.ndarray, blocks: int, out: np.ndarray, scratch: dict[str, np.ndarray]) -> None:
    """Fill ``out`` (shape (n, blocks, 2), uint64 lo/hi) with ``t0[i] * alpha^j``.

    Everything runs in a (j, sector) layout so that every NumPy call is over one contiguous block (a
    2-D slice with short rows costs a C inner loop per row, and overlapping slices of one array make
    NumPy copy its inputs); one transposed copy of 16-byte items then puts the tweaks in data order.
    """
    n = t0.shape[0]
    lo = scratch["lo"][: blocks * n].reshape(blocks, n)
    hi = scratch["hi"][: blocks * n].reshape(blocks, n)
    tmp, carry = scratch["tmp"], scratch["carry"]
    lo[0], hi[0] = t0[:, 0], t0[:, 1]
    k = 1
    while k < min(blocks, 128):  # columns [k, 2k) = columns [0, k) * alpha^k
        m = k * n
        src_lo, src_hi = lo[:k].reshape(-1), hi[:k].reshape(-1)
        dst_lo, dst_hi = lo[k : 2 * k].reshape(-1), hi[k : 2 * k].reshape(-1)
        t, o = tmp[:m], carry[:m]
        if k < 64:
            # (hi:lo) << k; o = the k bits shifted out of the top
            np.right_shift(src_hi, _U64(64 - k), out=o)
            np.left_shift(src_hi, _U64(k), out=dst_hi)
            np.right_shift(src_lo, _U64(64 - k), out=t)
            np.bitwise_or(dst_hi, t, out=dst_hi)
            np.left_shift(src_lo, _U64(k), out=dst_lo)
            np.bitwise_xor(dst_lo, o, out=dst_lo)
        else:  # k == 64: a word move
            np.copyto(o, src_hi)
            np.copyto(dst_hi, src_lo)
            np.copyto(dst_lo, o)
        # fold o * x^128 = o * (x^7 + x^2 + x + 1) back in (carry-less)
        for s in (1, 2, 7):
            np.left_shift(o, _U64(s), out=t)
            np.bitwise_xor(dst_lo, t, out=dst_lo)
        if k > 57:  # o has more than 57 bits: o << 7 spills into the high word
            for s in (63, 62, 57):
                np.right_shift(o, _U64(s), out=t)
                np.bitwise_xor(dst_hi, t, out=dst_hi)
        k *= 2
    j = 128
    while j < blocks:  # t*alpha^j = t*alpha^(j-128) ^ t*alpha^(j-127) ^ t*alpha^(j-126) ^ t*alpha^(j-121)
        w = min(121, blocks - j)
        for a in (lo, hi):
            d = a[j : j + w].reshape(-1)
            np.bitwise_xor(a[j - 128 : j - 128 + w].reshape(-1), a[j - 127 : j - 127 + w].reshape(-1), out=d)
            np.bitwise_xor(d, a[j - 126 : j - 126 + w].reshape(-1), out=d)
            np.bitwise_xor(d, a[j - 121 : j - 121 + w].reshape(-1), out=d)
        j += w
    pairs = scratch["pairs"][: blocks * n * 2].reshape(blocks, n, 2)
    np.copyto(pairs[:, :, 0], lo)
    np.copyto(pairs[:, :, 1], hi)
    np.copyto(
        out.reshape(-1).view("V16").reshape(n, blocks), pairs.reshape(-1).view("V16").reshape(blocks, n).T
    )


class XtsCipher:
    """AES-XTS-plain64 over whole chunks of a LUKS2 data segment (or keyslot area, with sector_size 512).

    ``key`` is both XTS halves (64 bytes for AES-256-XTS, 32 for AES-128-XTS). The object holds the
    key only inside OpenSSL contexts; it keeps no copy of it.
    """

    def __init__(self, key: bytes | bytearray, sector_size: int = 4096) -> None:
        if len(key) not in (32, 64):
            raise ValueError("an AES-XTS key is 32 or 64 bytes")
        if sector_size not in _VALID_SECTOR_SIZES:
            raise ValueError(f"sector size must be one of {_VALID_SECTOR_SIZES}, not {sector_size}")
        half = len(key) // 2
        k1, k2 = bytes(key[:half]), bytes(key[half:])
        if k1 == k2:
            raise ValueError("the two halves of an XTS key must differ")
        self.sector_size = sector_size
        self._blocks = sector_size // 16
        self._enc1 = Cipher(algorithms.AES(k1), modes.ECB()).encryptor()
        self._dec1 = Cipher(algorithms.AES(k1), modes.ECB()).decryptor()
        self._enc2 = Cipher(algorithms.AES(k2), modes.ECB()).encryptor()
        self._sectors = -1
        self._ws: dict[str, np.ndarray] = {}
        self._work = bytearray()

    def __repr__(self) -> str:  # never show key material
        return f"XtsCipher(sector_size={self.sector_size})"

    def _workspace(self, sectors: int) -> None:
        if sectors == self._sectors:
            return
        n, blocks = sectors, self._blocks
        half = max(1, min(blocks, 128) // 2)
        self._ws = {
            "lo": np.empty(blocks * n, _U64),
            "hi": np.empty(blocks * n, _U64),
            "tmp": np.empty(half * n, _U64),
            "carry": np.empty(half * n, _U64),
            "pairs": np.empty(2 * blocks * n, _U64),
            "tweaks": np.empty((n, self._blocks, 2), _U64),
            "t0": np.empty(2 * n + 2, _U64),
            "sec": np.zeros((n, 2), _U64),
        }
        self._work = bytearray(sectors * self.sector_size + 16)  # ECB output (+16: OpenSSL's slack)
        self._sectors = sectors

    def _tweaks(self, offset: int, sectors: int) -> np.ndarray:
        ws = self._ws
        sec = ws["sec"]
        step = self.sector_size // 512
        np.multiply(np.arange(sectors, dtype=_U64), _U64(step), out=sec[:, 0])
        sec[:, 0] += _U64(offset // 512)  # wraps mod 2^64 like plain64
        t0 = ws["t0"]
        self._enc2.update_into(memoryview(sec).cast("B"), memoryview(t0).cast("B"))
        tw = ws["tweaks"]
        _tweak_columns(t0[: 2 * sectors].reshape(sectors, 2), self._blocks, tw, ws)
        return tw.reshape(-1)

    def _crypt(self, data: Buffer, offset: int, ecb, out: bytearray | memoryview | None) -> bytes | None:
        mv = memoryview(data).cast("B")
        _check(len(mv), offset, self.sector_size)
        sectors = len(mv) // self.sector_size
        if sectors == 0:
            return b"" if out is None else None
        self._workspace(sectors)
        tw = self._tweaks(offset, sectors)
        work = self._work
        w64 = np.frombuffer(work, _U64, tw.size)
        np.bitwise_xor(np.frombuffer(mv, _U64), tw, out=w64)
        ecb.update_into(memoryview(work)[: len(mv)], work)  # in place: OpenSSL ECB allows it
        if out is None:
            np.bitwise_xor(w64, tw, out=w64)
            return bytes(memoryview(work)[: len(mv)])
        dst = memoryview(out).cast("B")
        if len(dst) < len(mv):
            raise ValueError("output buffer too small")
        np.bitwise_xor(w64, tw, out=np.frombuffer(dst, _U64, tw.size))
        return None

    def encrypt(self, data: Buffer, offset: int) -> bytes:
        """Ciphertext of ``data``, which starts ``offset`` bytes into the segment (both sector multiples)."""
        result = self._crypt(data, offset, self._enc1, None)
        assert result is not None
        return result

    def decrypt(self, data: Buffer, offset: int) -> bytes:
        """Plaintext of ``data``, which starts ``offset`` bytes into the segment (both sector multiples)."""
        result = self._crypt(data, offset, self._dec1, None)
        assert result is not None
        return result

    def encrypt_into(self, data: Buffer, offset: int, out: bytearray | memoryview) -> None:
        """Like :meth:`encrypt` but writes into ``out`` (at least ``len(data)`` bytes): saves one copy."""
        self._crypt(data, offset, self._enc1, out)

    def decrypt_into(self, data: Buffer, offset: int, out: bytearray | memoryview) -> None:
        """Like :meth:`decrypt` but writes into ``out`` (at least ``len(data)`` bytes)."""
        self._crypt(data, offset, self._dec1, out)


def _reference(key: bytes | bytearray, data: bytes, offset: int, sector_size: int, encrypt: bool) -> bytes:
    _check(len(data), offset, sector_size)
    out = bytearray()
    for pos in range(0, len(data), sector_size):
        tweak = (((offset + pos) // 512) % (1 << 64)).to_bytes(16, "little")
        cipher = Cipher(algorithms.AES(bytes(key)), modes.XTS(tweak))
        ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        out += ctx.update(data[pos : pos + sector_size]) + ctx.finalize()
    return bytes(out)


def xts_reference_encrypt(key: bytes | bytearray, data: bytes, offset: int, sector_size: int = 4096) -> bytes:
    """Per-sector AES-XTS-plain64 with one OpenSSL XTS context per sector: slow, obviously right."""
    return _reference(key, data, offset, sector_size, True)


def xts_reference_decrypt(key: bytes | bytearray, data: bytes, offset: int, sector_size: int = 4096) -> bytes:
    """Inverse of :func:`xts_reference_encrypt`."""
    return _reference(key, data, offset, sector_size, False)
