"""A writer of the "newc" cpio format (070701 headers) that the Linux kernel unpacks as an initramfs.

Written in Python rather than with ``cpio -o`` so that device nodes and root ownership need no root,
and so archives are reproducible (fixed inode numbers and timestamps).
"""

from __future__ import annotations


class CpioWriter:
    """Builds a newc archive in memory. Every entry is owned by root and stamped ``mtime``."""

    def __init__(self, mtime: int = 0) -> None:
        self._mtime = mtime
        self._out = bytearray()
        self._ino = 0
        self._seen: set[str] = set()

    def directory(self, name: str) -> None:
        if name not in self._seen:
            self._entry(name, 0o040755, b"", nlink=2)

    def file(self, name: str, data: bytes, perm: int) -> None:
        self._entry(name, 0o100000 | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def device(self, name: str, perm: int, major: int, minor: int) -> None:
        self._entry(name, 0o020000 | perm, b"", rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, b"", ino=0)
        return bytes(self._out)

    def _entry(
        self,
        name: str,
        mode: int,
        data: bytes,
        nlink: int = 1,
        rdev: tuple[int, int] = (0, 0),
        ino: int | None = None,
    ) -> None:
        self._seen.add(name)
        if ino is None:
            self._ino += 1
            ino = self._ino
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, nlink, self._mtime if mode else 0, len(data), 0, 0, *rdev, len(encoded), 0)
        self._out += b"070701" + b"".join(b"%08X" % v for v in fields) + encoded
        self._pad()
        self._out += data
        self._pad()

    def _pad(self) -> None:
        self._out += b"\0" * (-len(self._out) % 4)
