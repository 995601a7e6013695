"""The read-only virtual disk every format reader implements (:class:`DiskImage`).

A :class:`DiskImage` is the disk a VM would see: ``read(offset, length)`` returns its bytes whatever
the container, unallocated regions read as zeros, and ``allocated_ranges()`` tells which regions may
hold data so copies and hashes can skip holes. Callers import it from :mod:`app.disk.image`.
"""

from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from app.errors import ImageError

#: Logical sector sizes a disk (its GPT, a VHDX's metadata, a catalog's partition sizes) may have.
SECTOR_SIZES = (512, 4096)


class DiskImage(ABC):
    """A read-only virtual disk."""

    #: "raw" | "vhd" | "vhdx" | "qcow2"
    format: str
    #: Size of the virtual disk in bytes.
    virtual_size: int
    #: Logical sector size the container declares (VHDX metadata), or None if it does not say.
    declared_sector_size: int | None = None

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @abstractmethod
    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes of the virtual disk from ``offset``; holes read as zeros.

        Reading past ``virtual_size`` raises :class:`ImageError`. A container that turns out to be
        truncated or corrupt while reading raises the matching :class:`ImageError` subclass.
        """

    def readinto(self, offset: int, buffer: memoryview) -> None:
        """Fill ``buffer`` (a writable byte view) with the disk's bytes from ``offset``, as :meth:`read`.

        For the hot loops (hashing, verifying): a reader that can ``preadv`` straight into the caller's
        reused buffer saves allocating and faulting in fresh memory for every read. This default copies.
        """
        buffer[:] = self.read(offset, len(buffer))

    def linear_file(self) -> tuple[int, int] | None:
        """``(fd, shift)`` when the whole virtual disk lies in one file unchanged — virtual offset ``v`` is
        file offset ``v + shift`` — so a hasher may map the file instead of reading it; else None.

        The fd stays owned by the image (valid until :meth:`close`).
        """
        return None

    def allocated_ranges(self) -> Iterator[tuple[int, int]]:
        """``(offset, length)`` regions that may hold non-zero data, ascending, non-overlapping.

        Everything outside them reads as zeros. The default says "all of it".
        """
        if self.virtual_size:
            yield (0, self.virtual_size)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the file handle."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.virtual_size:
            raise ImageError(
                f"read of {length} bytes at offset {offset} is outside the {self.virtual_size}-byte disk",
                "the partition table points past the end of the disk",
            )


def check_readable_file(path: Path) -> os.stat_result:
    """Stat ``path`` and turn every "this is not a readable file" case into a one-line ImageError."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file", "check the path") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied", "check the file's permissions") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot open ({exc.strerror})", "check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{path} is a directory, not a disk image", "choose an image file")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise ImageError(f"{path} is not a regular file", "choose an image file")
    if not os.access(path, os.R_OK):
        raise ImageError(f"{path}: permission denied", "check the file's permissions")
    return st
