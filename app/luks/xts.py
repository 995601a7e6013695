"""Bulk AES-XTS with plain64 IVs, as LUKS2's ``aes-xts-plain64`` uses it.

One ``modes.XTS`` context per sector caps throughput at ~130-700 MB/s, so two engines do whole chunks,
with identical output: ``"openssl-sectors"`` (:mod:`app.luks._xts`, a few lines of C compiled at install
that re-set one OpenSSL context's IV per sector, GIL released; the default) and ``"numpy-tweaks"``
(:mod:`app.luks.xts_tweaks`, where the C part could not be built). The IV is the sector's offset in
**512-byte units** even for 4096-byte sectors (LUKS2 never uses ``iv_large_sectors``).
"""

from __future__ import annotations

import queue

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from app.luks.xts_lane import Lane

try:  # compiled by setup.py at install; see app/luks/_xts.c
    from app.luks import _xts as _native

    NATIVE_BUILT = True
except ImportError:  # pragma: no cover - an install without a C compiler: the NumPy engine does the work
    NATIVE_BUILT = False

#: The engines :class:`XtsCipher` can use, and the one it uses unless told otherwise.
ENGINES = ("openssl-sectors", "numpy-tweaks")
DEFAULT_ENGINE = "openssl-sectors" if NATIVE_BUILT else "numpy-tweaks"

#: Anything exposing the buffer protocol (collections.abc.Buffer is 3.12+).
Buffer = bytes | bytearray | memoryview

#: Encryption sector sizes LUKS2 allows.
SECTOR_SIZES = (512, 1024, 2048, 4096)


def _check(data_len: int, offset: int, sector_size: int) -> None:
    if sector_size not in SECTOR_SIZES:
        raise ValueError(f"sector size must be one of {SECTOR_SIZES}, not {sector_size}")
    if data_len % sector_size or offset % sector_size or offset < 0:
        raise ValueError("data length and offset must be non-negative multiples of the sector size")


class _SectorLane(Lane):
    """The ``"openssl-sectors"`` engine: one OpenSSL XTS context per direction, driven by app.luks._xts."""

    def __init__(self, key: bytes, sector_size: int) -> None:
        super().__init__(sector_size)
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
    (contexts, plans, the reused output buffer; :class:`~app.luks.xts_lane.Lane`), made up front while the
    key is at hand, and a call borrows an idle one (waiting if every lane is busy).

    ``engine`` is one of :data:`ENGINES` (default :data:`DEFAULT_ENGINE`); both give the same bytes.
    """

    def __init__(
        self, key: bytes | bytearray, sector_size: int = 4096, *, lanes: int = 1, engine: str | None = None
    ) -> None:
        engine = engine or DEFAULT_ENGINE
        if engine not in ENGINES:
            raise ValueError(f"unknown XTS engine {engine!r}; expected one of {ENGINES}")
        if engine == "openssl-sectors" and not NATIVE_BUILT:
            raise ValueError("the openssl-sectors XTS engine was not built (reinstall with a C compiler)")
        if len(key) not in (32, 64):
            raise ValueError("an AES-XTS key is 32 or 64 bytes")
        if sector_size not in SECTOR_SIZES:
            raise ValueError(f"sector size must be one of {SECTOR_SIZES}, not {sector_size}")
        if lanes < 1:
            raise ValueError("an XTS cipher needs at least one lane")
        half = len(key) // 2
        k1, k2 = bytes(key[:half]), bytes(key[half:])
        if k1 == k2:
            raise ValueError("the two halves of an XTS key must differ")
        self.sector_size, self.engine, self.lanes = sector_size, engine, lanes
        self._idle: queue.SimpleQueue[Lane] = queue.SimpleQueue()
        if engine == "openssl-sectors":
            for _ in range(lanes):
                self._idle.put(_SectorLane(bytes(key), sector_size))
            return
        # lazy: the NumPy engine (and NumPy, ~70 ms) is loaded only where it is used
        from app.luks.xts_tweaks import TweakLane

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
