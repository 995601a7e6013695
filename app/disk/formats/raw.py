"""Raw images: the file (or block device) *is* the disk.

``allocated_ranges`` asks the filesystem for its data extents (SEEK_DATA/SEEK_HOLE) so sparse raw
images are copied and hashed without reading their holes; where that is not supported it falls back to
"all of it", which is always correct.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

from app.disk.formats._common import FileImage


class RawImage(FileImage):
    format = "raw"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        # A size that is not a multiple of 512 is still accepted here; the GPT layer complains.
        self.virtual_size = self.file_size

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        if not length:
            return b""
        return self._pread(length, offset)

    def readinto(self, offset: int, buffer: memoryview) -> None:
        self._check_range(offset, len(buffer))
        if len(buffer):
            self._pread_into(buffer, offset)

    def linear_file(self) -> tuple[int, int] | None:
        return (self._fd, 0) if self._fd >= 0 else None  # the file is the disk

    def allocated_ranges(self) -> Iterator[tuple[int, int]]:
        size = self.virtual_size
        if not size:
            return
        # A private fd: lseek moves the file position, which read() (pread) never relies on anyway.
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            yield (0, size)
            return
        try:
            extents = list(_data_extents(fd, size))
        except OSError:
            extents = [(0, size)]
        finally:
            os.close(fd)
        yield from extents


def _data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole up to EOF
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield (start, end - start)
        pos = end
