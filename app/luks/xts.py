"""Bulk AES-XTS with plain64 IVs, as LUKS2's ``aes-xts-plain64`` uses it.

Why not one ``modes.XTS`` object per sector: creating a cipher context costs a few microseconds, which
caps a per-sector loop at ~130 MB/s for 512-byte sectors and ~700 MB/s for 4096-byte ones. Two engines
do whole chunks instead, with identical output:

``"openssl-sectors"`` (the default where it was built): :mod:`app.luks._xts`, a few lines of C that keep
one OpenSSL XTS context and, per sector, only re-set its IV and encrypt - with the GIL released. It is
compiled at install (``setup.py``, against the system libcrypto) and ran at ~5.9 GB/s on one core here
for 4096-byte sectors, ~2.5x the NumPy engine.

``"numpy-tweaks"`` (where the C part could not be built): one ECB call, NumPy, and one cipher pass:

1. the first tweak of every sector, ``E_k2(le128(iv))``, from ONE ECB encryption of all sector numbers;
2. the tweak of block *j* of a sector is that times alpha^j in GF(2^128) (the XTS polynomial
   x^128 + x^7 + x^2 + x + 1). They are computed as uint64 (lo, hi) pairs, doubling the number of
   known columns per step (multiply by alpha^k = shift by k bits, fold the k carried-out bits back with
   0x87); columns 128..255 follow from the identity alpha^128 = 1 + alpha + alpha^2 + alpha^7, i.e. an
   XOR of four earlier columns;
3. XOR, one AES pass over the chunk, XOR again. The AES pass is OpenSSL's own XTS over the whole piece
   as a single data unit, with the masks of step 2 adjusted so that its tweaks cancel out (see
   :meth:`_PiecePlan.crypt`): same bytes as an ECB pass between the XORs, but OpenSSL's XTS is vectorised
   and ran ~3x faster than its ECB on the machines measured.

A chunk is processed in pieces of :data:`_PIECE_BYTES` so that masks, data and the cipher buffer stay in
the CPU caches between those passes; each piece size gets a :class:`_PiecePlan` with its arrays and
NumPy views built once.

IV: plain64 is the sector number in **512-byte units** even for 4096-byte sectors (LUKS2 never uses
``iv_large_sectors``), so the sector at byte offset X of the segment has IV X // 512.

An engine's working set (contexts, scratch buffers, the buffer ``encrypt`` returns a copy of) is a
*lane*, reused so that steady-state encryption does not page-fault fresh memory for every chunk; a lane
serves one thread at a time, and :class:`XtsCipher` has as many as it is asked for.
"""

from __future__ import annotations

import queue

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:  # compiled by setup.py at install; see app/luks/_xts.c
    from app.luks import _xts as _native
except ImportError:  # pragma: no cover - an install without a C compiler: the NumPy engine does the work
    _native = None

#: The engines :class:`XtsCipher` can use, and the one it uses unless told otherwise.
ENGINES = ("openssl-sectors", "numpy-tweaks")
DEFAULT_ENGINE = "openssl-sectors" if _native is not None else "numpy-tweaks"

#: Bytes handled per tweak/XOR/ECB round: small enough that the tweaks, the data and the ECB output
#: stay in the CPU caches between passes (2 MiB measured fastest here; 8 MiB pieces ran ~30 % slower).
_PIECE_BYTES = 2 * 1024 * 1024

#: Anything exposing the buffer protocol (collections.abc.Buffer is 3.12+).
Buffer = bytes | bytearray | memoryview

_U64 = np.uint64
_VALID_SECTOR_SIZES = (512, 1024, 2048, 4096)


def _check(data_len: int, offset: int, sector_size: int) -> None:
    if sector_size not in _VALID_SECTOR_SIZES:
        raise ValueError(f"sector size must be one of {_VALID_SECTOR_SIZES}, not {sector_size}")
    if data_len % sector_size or offset % sector_size or offset < 0:
        raise ValueError("data length and offset must be non-negative multiples of the sector size")


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
        self.sec_lo, self.sec_bytes = sec[:, 0], memoryview(sec).cast("B")
        t0 = np.empty(2 * n + 2, _U64)  # +16 bytes: OpenSSL's update_into slack
        self.t0_bytes, self.t0_head = memoryview(t0).cast("B"), t0[: 2 * n]
        lo, hi = np.empty((head, n), _U64), np.empty((head, n), _U64)
        self.first = ((lo[0], t0[0 : 2 * n : 2]), (hi[0], t0[1 : 2 * n : 2]))
        tmp, carry = np.empty(max(1, head // 2) * n, _U64), np.empty(max(1, head // 2) * n, _U64)
        self.steps = []  # columns [k, 2k) = columns [0, k) * alpha^k
        k = 1
        while k < head:
            m = k * n
            flat = (lo[:k], hi[:k], lo[k : 2 * k], hi[k : 2 * k])
            self.steps.append((*(a.reshape(-1) for a in flat), k, tmp[:m], carry[:m]))
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

    def compute_tweaks(self, enc2, first_iv: int) -> np.ndarray:
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

    def crypt(self, enc2, unit, src: memoryview, first_iv: int, dst: memoryview) -> None:
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


class _Lane:
    """One thread's working set of an :class:`XtsCipher` (see the module docstring): the engine's
    contexts and an output buffer - none of which two threads may use at once."""

    def __init__(self, sector_size: int) -> None:
        self.sector_size = sector_size
        self.out = bytearray()

    def crypt(
        self, mv: memoryview, offset: int, encrypt: bool, out: bytearray | memoryview | None
    ) -> bytes | None:
        returns_bytes = out is None
        if out is None:  # a reused buffer: a fresh multi-MiB bytearray per call page-faults every time
            if len(self.out) < len(mv):
                self.out = bytearray(len(mv))
            out = memoryview(self.out)[: len(mv)]
        dst = memoryview(out).cast("B")
        if len(dst) < len(mv):
            raise ValueError("output buffer too small")
        self.crypt_into(mv, offset, encrypt, dst[: len(mv)])
        return bytes(dst[: len(mv)]) if returns_bytes else None

    def crypt_into(self, mv: memoryview, offset: int, encrypt: bool, dst: memoryview) -> None:
        raise NotImplementedError


class _SectorLane(_Lane):
    """The ``"openssl-sectors"`` engine: one OpenSSL XTS context per direction, driven by app.luks._xts."""

    def __init__(self, key: bytes, sector_size: int) -> None:
        super().__init__(sector_size)
        assert _native is not None
        try:
            self.contexts = {True: _native.context(key, True), False: _native.context(key, False)}
        except ValueError as exc:  # OpenSSL's own check, e.g. equal key halves
            raise ValueError(f"OpenSSL refused the XTS key: {exc}") from None

    def crypt_into(self, mv: memoryview, offset: int, encrypt: bool, dst: memoryview) -> None:
        _native.crypt(self.contexts[encrypt], mv, dst, self.sector_size, (offset // 512) % (1 << 64))


class _TweakLane(_Lane):
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


class XtsCipher:
    """AES-XTS-plain64 over whole chunks of a LUKS2 data segment (or keyslot area, with sector_size 512).

    ``key`` is both XTS halves (64 bytes for AES-256-XTS, 32 for AES-128-XTS). The object holds the
    key only inside OpenSSL contexts; it keeps no copy of it.

    ``lanes`` is how many threads may encrypt with it at once: each lane is a working set of its own
    (contexts, plans, buffer), made up front while the key is at hand, and a call borrows an idle one
    (waiting if every lane is busy). One lane is one thread at a time, like a plain OpenSSL context.

    ``engine`` is one of :data:`ENGINES` (default :data:`DEFAULT_ENGINE`); both give the same bytes.
    """

    def __init__(
        self, key: bytes | bytearray, sector_size: int = 4096, *, lanes: int = 1, engine: str | None = None
    ) -> None:
        engine = engine or DEFAULT_ENGINE
        if engine not in ENGINES:
            raise ValueError(f"unknown XTS engine {engine!r}; expected one of {ENGINES}")
        if engine == "openssl-sectors" and _native is None:
            raise ValueError("the openssl-sectors XTS engine was not built (reinstall with a C compiler)")
        if len(key) not in (32, 64):
            raise ValueError("an AES-XTS key is 32 or 64 bytes")
        if sector_size not in _VALID_SECTOR_SIZES:
            raise ValueError(f"sector size must be one of {_VALID_SECTOR_SIZES}, not {sector_size}")
        if lanes < 1:
            raise ValueError("an XTS cipher needs at least one lane")
        half = len(key) // 2
        k1, k2 = bytes(key[:half]), bytes(key[half:])
        if k1 == k2:
            raise ValueError("the two halves of an XTS key must differ")
        self.sector_size, self.engine, self.lanes = sector_size, engine, lanes
        self._idle: queue.SimpleQueue[_Lane] = queue.SimpleQueue()
        if engine == "openssl-sectors":
            for _ in range(lanes):
                self._idle.put(_SectorLane(bytes(key), sector_size))
            return
        first = _TweakLane(bytes(key), k2, sector_size)
        self._idle.put(first)
        for _ in range(lanes - 1):
            self._idle.put(_TweakLane(bytes(key), k2, sector_size, first.unit_tweak))

    def __repr__(self) -> str:  # never show key material
        return f"XtsCipher(sector_size={self.sector_size}, lanes={self.lanes}, engine={self.engine!r})"

    def _crypt(
        self, data: Buffer, offset: int, encrypt: bool, out: bytearray | memoryview | None
    ) -> bytes | None:
        mv = memoryview(data).cast("B")
        _check(len(mv), offset, self.sector_size)
        lane = self._idle.get()
        try:
            return lane.crypt(mv, offset, encrypt, out)
        finally:
            self._idle.put(lane)

    def encrypt(self, data: Buffer, offset: int) -> bytes:
        """Ciphertext of ``data``, which starts ``offset`` bytes into the segment (both sector multiples)."""
        result = self._crypt(data, offset, True, None)
        assert result is not None
        return result

    def decrypt(self, data: Buffer, offset: int) -> bytes:
        """Plaintext of ``data``, which starts ``offset`` bytes into the segment (both sector multiples)."""
        result = self._crypt(data, offset, False, None)
        assert result is not None
        return result

    def encrypt_into(self, data: Buffer, offset: int, out: bytearray | memoryview) -> None:
        """Like :meth:`encrypt` but writes into ``out`` (at least ``len(data)`` bytes): saves one copy."""
        self._crypt(data, offset, True, out)

    def decrypt_into(self, data: Buffer, offset: int, out: bytearray | memoryview) -> None:
        """Like :meth:`decrypt` but writes into ``out`` (at least ``len(data)`` bytes)."""
        self._crypt(data, offset, False, out)


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
