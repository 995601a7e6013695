"""The working set of one thread of an :class:`app.luks.xts.XtsCipher` engine (a *lane*).

Shared by both engines (:mod:`app.luks.xts`, :mod:`app.luks.xts_tweaks`). A lane's contexts and output
buffer are reused, so steady-state encryption does not page-fault fresh memory for every chunk.
"""

from __future__ import annotations


class Lane:
    """One thread's working set of an XTS engine: its contexts and an output buffer, none of which two
    threads may use at once. Subclasses implement :meth:`crypt_into`."""

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
