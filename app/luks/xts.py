"""Bulk AES-XTS with plain64 IVs, as LUKS2's ``aes-xts-plain64`` uses it.

Why not one ``modes.XTS`` object per sector: creating a cipher context costs a few microseconds, which
caps a per-sector loop at ~130 MB/s for 512-byte sectors and ~700 MB/s for 4096-byte ones. Two engines
do whole chunks instead, with identical output:

``"openssl-sectors"`` (the default where it was built): :mod:`app.luks._xts`, a few lines of C that keep
one OpenSSL XTS context and, per sector, only re-set its IV and encrypt - with the GIL released. It is
compiled at install (``setup.py``, against the system libcrypto) and ran at 4.4-5.9 GB/s on one core
here for 4096-byte sectors, 1.9-2.5x the NumPy engine in the same runs (benchmarks/bench_xts.py).

``"numpy-tweaks"`` (where the C part could not be built): :mod:`app.luks.xts_tweaks`, which computes
every block's tweak of a chunk at once with NumPy around one OpenSSL XTS pass.

IV: plain64 is the sector number in **512-byte units** even for 4096-byte sectors (LUKS2 never uses
``iv_large_sectors``), so the sector at byte offset X of the segment has IV X // 512.

An engine's working set (contexts, scratch buffers, the buffer ``encrypt`` returns a copy of) is a
*lane*, reused so that steady-state encryption does not page-fault fresh memory for every chunk; a lane
serves one thread at a time, and :class:`XtsCipher` has as many as it is asked for.
"""

from __future__ import annotations

import queue

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

try:  # compiled by setup.py at install; see app/luks/_xts.c
    from app.luks import _xts as _native
except ImportError:  # pragma: no cover - an install without a C compiler: the NumPy engine does the work
    _native = None

#: The engines :class:`XtsCipher` can use, and the one it uses unless told otherwise.
ENGINES = ("openssl-sectors", "numpy-tweaks")
DEFAULT_ENGINE = "openssl-sectors" if _native is not None else "numpy-tweaks"

#: Anything exposing the buffer protocol (collections.abc.Buffer is 3.12+).
Buffer = bytes | bytearray | memoryview

_VALID_SECTOR_SIZES = (512, 1024, 2048, 4096)


def _check(data_len: int, offset: int, sector_size: int) -> None:
    if sector_size not in _VALID_SECTOR_SIZES:
        raise ValueError(f"sector size must be one of {_VALID_SECTOR_SIZES}, not {sector_size}")
    if data_len % sector_size or offset % sector_size or offset < 0:
        raise ValueError("data length and offset must be non-negative multiples of the sector size")


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
        from app.luks.xts_tweaks import TweakLane  # NumPy: imported only when this engine is used

        first = TweakLane(bytes(key), k2, sector_size)
        self._idle.put(first)
        for _ in range(lanes - 1):
            self._idle.put(TweakLane(bytes(key), k2, sector_size, first.unit_tweak))

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
