"""The ``"numpy-tweaks"`` engine of :class:`app.luks.xts.XtsCipher`: bulk AES-XTS-plain64 without C.

Used where ``app/luks/_xts.c`` could not be compiled. A chunk takes one ECB call for the first tweak of
every sector, NumPy for the tweak of every block (multiplications by alpha in GF(2^128)), and one OpenSSL
XTS pass between two XORs (see :meth:`_PiecePlan.crypt`), in cache-sized pieces of :data:`_PIECE_BYTES`.
NumPy is imported only with this module (it costs ~70 ms of a start-up).
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from app.luks.xts_lane import Lane

#: Bytes handled per tweak/XOR/ECB round: small enough that the tweaks, the data and the ECB output
#: stay in the CPU caches between passes (2 MiB measured fastest here; 8 MiB pieces ran ~30 % slower).
_PIECE_BYTES = 2 * 1024 * 1024

_U64 = np.uint64


#: Columns per transposed copy in :func:`_tweak_columns` (8 measured fastest for 256..1024 sectors).
_TRANSPOSE_BAND = 8


_MASK64 = (1 << 64) - 1


def _gf128_mul(a: int, b: int) -> int:
    """a * b in GF(2^128) with the XTS polynomial (bit i = x^i); cost grows with b's bit length."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if a >> 128:
            a ^= (1 << 128) | 0x87
    return r


def _alpha_pow(k: int) -> int:
    """alpha^k (alpha = x): x^k folded by x^128 = x^7 + x^2 + x + 1."""
    v = 1
    for _ in range(k):
        v = _gf128_mul(v, 2)
    return v


def _clmul_87(v: int) -> int:
    """v * (x^7 + x^2 + x + 1), carry-less: what the bits shifted out past x^127 fold back as."""
    return v ^ (v << 1) ^ (v << 2) ^ (v << 7)


#: _clmul_87 of every byte: the fold for shifts of at most 8 bits.
_FOLD8 = np.array([_clmul_87(v) for v in range(256)], dtype=_U64)


def _times_alpha_k(
    src_lo: np.ndarray,
    src_hi: np.ndarray,
    dst_lo: np.ndarray,
    dst_hi: np.ndarray,
    k: int,
    t: np.ndarray,
    o: np.ndarray,
) -> None:
    """dst = src * alpha^k for 1 <= k <= 64: shift the 128-bit (hi:lo) left by k, fold the carried-out
    bits o back as o * (x^7 + x^2 + x + 1) (carry-less). ``t`` and ``o`` are scratch of src's size."""
    if k == 64:  # a word move; the carried-out bits are src_hi itself
        o = src_hi
        np.copyto(dst_hi, src_lo)
        np.left_shift(o, _U64(1), out=dst_lo)
        np.bitwise_xor(dst_lo, o, out=dst_lo)
        shifts: tuple[int, ...] = (2, 7)
    else:
        np.right_shift(src_hi, _U64(64 - k), out=o)
        np.left_shift(src_hi, _U64(k), out=dst_hi)
        np.right_shift(src_lo, _U64(64 - k), out=t)
        np.bitwise_or(dst_hi, t, out=dst_hi)
        np.left_shift(src_lo, _U64(k), out=dst_lo)
        if k <= 8:  # o < 256: the whole fold is one table lookup
            np.take(_FOLD8, o.view(np.int64), out=t)
            np.bitwise_xor(dst_lo, t, out=dst_lo)
            return
        np.bitwise_xor(dst_lo, o, out=dst_lo)
        shifts = (1, 2, 7)
    for s in shifts:
        np.left_shift(o, _U64(s), out=t)
        np.bitwise_xor(dst_lo, t, out=dst_lo)
    if k > 57:  # o has more than 57 bits: o << 7 spills into the high word
        for s in (63, 62, 57):
            np.right_shift(o, _U64(s), out=t)
            np.bitwise_xor(dst_hi, t, out=dst_hi)


#: The arguments of one :func:`_times_alpha_k` call.
_Step = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]


class _PiecePlan:
    """Scratch arrays and prebuilt NumPy views for one piece of ``n`` sectors.

    Building the views (slices, reshapes, the transposition bands) once per piece size instead of per
    piece matters: a piece takes ~150 NumPy calls, and their Python-side overhead was ~100 us of the
    ~800 us a 2 MiB piece took.
    """

    def __init__(self, n: int, sector_size: int, unit_tweak: int) -> None:
        blocks = sector_size // 16
        head = min(blocks, 128)
        # What OpenSSL's one-data-unit XTS pass applies at the start of sector k of the piece (see crypt).
        step, v, starts = _alpha_pow(blocks), unit_tweak, np.empty((n, 2), _U64)
        for k in range(n):
            starts[k] = (v & _MASK64, v >> 64)
            v = _gf128_mul(v, step)
        self.unit_starts = starts.reshape(-1)
        self.iv_base = np.arange(n, dtype=_U64) * _U64(sector_size // 512)  # IV of each sector - first IV
        sec = np.zeros((n, 2), _U64)
        self.sec_lo, self.sec_bytes = sec[:, 0], sec.data.cast("B")
        t0 = np.empty(2 * n + 2, _U64)  # +16 bytes: OpenSSL's update_into slack
        self.t0_bytes, self.t0_head = t0.data.cast("B"), t0[: 2 * n]
        lo, hi = np.empty((head, n), _U64), np.empty((head, n), _U64)
        self.first = ((lo[0], t0[0 : 2 * n : 2]), (hi[0], t0[1 : 2 * n : 2]))
        tmp, carry = np.empty(max(1, head // 2) * n, _U64), np.empty(max(1, head // 2) * n, _U64)
        # columns [k, 2k) = columns [0, k) * alpha^k: the arguments of _times_alpha_k
        self.steps: list[_Step] = []
        k = 1
        while k < head:
            m = k * n
            src_lo, src_hi, dst_lo, dst_hi = (
                a.reshape(-1) for a in (lo[:k], hi[:k], lo[k : 2 * k], hi[k : 2 * k])
            )
            self.steps.append((src_lo, src_hi, dst_lo, dst_hi, k, tmp[:m], carry[:m]))
            k *= 2
        pairs = np.empty((blocks, n, 2), _U64)
        self.interleave = ((pairs[:head, :, 0], lo), (pairs[:head, :, 1], hi))
        rows = pairs.reshape(blocks, 2 * n)
        # t*alpha^j = t*alpha^(j-128) ^ t*alpha^(j-127) ^ t*alpha^(j-126) ^ t*alpha^(j-121)
        self.recurrence = []
        j = 128
        while j < blocks:
            w = min(121, blocks - j)
            self.recurrence.append(
                tuple(rows[i : i + w].reshape(-1) for i in (j, j - 128, j - 127, j - 126, j - 121))
            )
            j += w
        tweaks = np.empty((n, blocks, 2), _U64)
        src = pairs.reshape(-1).view("V16").reshape(blocks, n)
        dst = tweaks.reshape(-1).view("V16").reshape(n, blocks)
        self.bands = [
            (dst[:, j : j + _TRANSPOSE_BAND], src[j : j + _TRANSPOSE_BAND].T)
            for j in range(0, blocks, _TRANSPOSE_BAND)
        ]
        self.tweaks = tweaks.reshape(-1)
        self.work = bytearray(n * sector_size + 16)  # the XTS pass's buffer (+16: OpenSSL's slack)
        self.work64 = np.frombuffer(self.work, _U64, self.tweaks.size)
        self.work_in = memoryview(self.work)[: n * sector_size]

    def compute_tweaks(self, enc2: CipherContext, first_iv: int) -> np.ndarray:
        """Every block's mask, in data order, for the piece whose first sector has IV ``first_iv``: its XTS
        tweak adjusted for the one-data-unit pass (see :meth:`crypt`).

        1. one ECB (key2) of all sector numbers, XORed with ``unit_starts``; 2. columns 0..127 as lo/hi
        planes in a (j, sector) layout, doubling the known columns per step; 3. interleave into 16-byte
        items, columns 128.. by XOR (the recurrence does not care which word is which); 4. transpose
        into data order in bands of :data:`_TRANSPOSE_BAND` columns.
        """
        np.add(self.iv_base, _U64(first_iv % (1 << 64)), out=self.sec_lo)  # wraps like plain64
        enc2.update_into(self.sec_bytes, self.t0_bytes)
        np.bitwise_xor(self.t0_head, self.unit_starts, out=self.t0_head)
        for dst, src in self.first:
            np.copyto(dst, src)
        for step in self.steps:
            _times_alpha_k(*step)
        for dst, src in self.interleave:
            np.copyto(dst, src)
        for d, a, b, c, e in self.recurrence:
            np.bitwise_xor(a, b, out=d)
            np.bitwise_xor(d, c, out=d)
            np.bitwise_xor(d, e, out=d)
        for dst, src in self.bands:
            np.copyto(dst, src)
        return self.tweaks

    def crypt(
        self, enc2: CipherContext, unit: CipherContext, src: memoryview, first_iv: int, dst: memoryview
    ) -> None:
        """XOR with the masks, one XTS pass over the piece as a single data unit, XOR again into ``dst``.

        ``unit`` is an OpenSSL XTS context with a fixed IV: every update is one data unit whose block J is
        masked with W_J = E_k2(IV) * alpha^J. Sector k's block j needs M = T_k * alpha^j instead, where
        J = k * blocks + j, so W_J = S_k * alpha^j with S_k = E_k2(IV) * alpha^(k * blocks) (the
        precomputed ``unit_starts``). Pre- and post-XOR with D = (T_k ^ S_k) * alpha^j turns OpenSSL's
        masks into ours: E(P ^ D ^ W) ^ W ^ D = E(P ^ M) ^ M. The masks D come from the same expansion
        as the tweaks, started from T_k ^ S_k. Why not plain ECB between the XORs: OpenSSL's XTS runs
        ~3x faster than its ECB here (vectorised AES), and the expansion costs the same either way.
        """
        tw = self.compute_tweaks(enc2, first_iv)
        np.bitwise_xor(np.frombuffer(src, _U64), tw, out=self.work64)
        unit.update_into(self.work_in, self.work)  # in place: OpenSSL XTS allows it
        np.bitwise_xor(self.work64, tw, out=np.frombuffer(dst, _U64, tw.size))


class TweakLane(Lane):
    """The ``"numpy-tweaks"`` engine: piece plans and the contexts of their ECB and XTS passes."""

    def __init__(self, key: bytes, k2: bytes, sector_size: int, unit_tweak: int | None = None) -> None:
        super().__init__(sector_size)
        self.enc2 = Cipher(algorithms.AES(k2), modes.ECB()).encryptor()
        unit = Cipher(algorithms.AES(key), modes.XTS(bytes(16)))
        self.unit_enc, self.unit_dec = unit.encryptor(), unit.decryptor()
        if unit_tweak is None:
            unit_tweak = int.from_bytes(self.enc2.update(bytes(16)), "little")  # E_k2(IV 0)
        self.unit_tweak = unit_tweak
        self.plans: dict[int, _PiecePlan] = {}

    def plan(self, sectors: int) -> _PiecePlan:
        """The plan for pieces of ``sectors`` sectors: the full-piece one and at most one other (a tail)."""
        plan = self.plans.get(sectors)
        if plan is None:
            full = max(1, _PIECE_BYTES // self.sector_size)
            for n in [n for n in self.plans if n != full]:
                del self.plans[n]
            plan = self.plans[sectors] = _PiecePlan(sectors, self.sector_size, self.unit_tweak)
        return plan

    def crypt_into(self, mv: memoryview, offset: int, encrypt: bool, dst: memoryview) -> None:
        unit = self.unit_enc if encrypt else self.unit_dec
        piece = max(1, _PIECE_BYTES // self.sector_size) * self.sector_size
        for pos in range(0, len(mv), piece):
            end = min(pos + piece, len(mv))
            plan = self.plan((end - pos) // self.sector_size)
            plan.crypt(self.enc2, unit, mv[pos:end], (offset + pos) // 512, dst[pos:end])
