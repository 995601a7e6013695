"""Shared plumbing for the container readers: one read-only fd, pread, and run coalescing.

Every reader maps the virtual disk onto the file in units (VHDX blocks, qcow2 clusters). A large read
(hashing and encryption read 4-64 MiB at a time) would be slow as one pread per unit, so
:class:`MappedImage` merges units that are contiguous in the file - and adjacent holes - into single
preads / single zero buffers. ``os.pread`` has no shared file position, so concurrent ``read()`` calls
from hashing threads are safe as long as the subclass's lookup structures are.
"""

from __future__ import annotations

import errno
import os
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path

from app.disk.formats.base import DiskImage
from app.errors import CorruptImageError, ImageError, TruncatedImageError

#: Returned by :meth:`MappedImage._lookup` for a region that reads as zeros.
HOLE = -1

KiB = 1024
MiB = 1024 * KiB
_ZEROS = bytes(MiB)


def open_ro(path: Path) -> int:
    """Open ``path`` read-only (and close-on-exec), turning OS errors into ImageError."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ImageError(f"{path}: cannot open ({exc.strerror})", "check the path and permissions") from None


def file_size(fd: int) -> int:
    """Size of a regular file or block device (st_size is 0 for the latter)."""
    return os.lseek(fd, 0, os.SEEK_END)


def pread_exact(fd: int, length: int, offset: int, path: Path, what: str = "data") -> bytes:
    """``length`` bytes at ``offset``; a short read means the container is truncated."""
    try:
        data = os.pread(fd, length, offset)
        while len(data) < length:
            more = os.pread(fd, length - len(data), offset + len(data))
            if not more:
                break
            data += more
    except OSError as exc:
        raise ImageError(
            f"{path}: read error at offset {offset} ({exc.strerror})", "check the disk"
        ) from None
    if len(data) < length:
        raise TruncatedImageError(
            f"{path} is truncated: {what} at offset {offset} extends past the end of the file",
            "the copy or download is incomplete; copy the image again",
        )
    return data


def pread_into(fd: int, buffer: memoryview, offset: int, path: Path, what: str = "data") -> None:
    """Fill ``buffer`` from ``offset`` with ``preadv`` (no new memory); a short read means truncation."""
    done, length = 0, len(buffer)
    try:
        while done < length:
            n = os.preadv(fd, [buffer[done:]], offset + done)
            if not n:
                break
            done += n
    except OSError as exc:
        raise ImageError(
            f"{path}: read error at offset {offset} ({exc.strerror})", "check the disk"
        ) from None
    if done < length:
        raise TruncatedImageError(
            f"{path} is truncated: {what} at offset {offset} extends past the end of the file",
            "the copy or download is incomplete; copy the image again",
        )


def zero_fill(buffer: memoryview) -> None:
    """Set ``buffer`` to zeros in 1 MiB strides of one shared zero block (no buffer-sized allocation)."""
    for start in range(0, len(buffer), len(_ZEROS)):
        part = buffer[start : start + len(_ZEROS)]
        part[:] = _ZEROS[: len(part)]


def data_spans(fd: int, offset: int, length: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` parts of ``[offset, offset + length)`` that may hold data.

    Holes of a sparse file read as zeros and are skipped (``SEEK_DATA``/``SEEK_HOLE``), so scanning a
    structure whose size the file declares costs what the file really holds, not what it claims.
    Where the filesystem cannot tell, the whole range is one span. Moves the fd's position (readers
    here only use pread).
    """
    pos, end = offset, offset + length
    while pos < end:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            stop = min(os.lseek(fd, start, os.SEEK_HOLE), end)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: nothing but a hole from pos to the end of the file
                yield pos, end
            return
        if start >= end:
            return
        yield start, stop
        pos = stop


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Merge ascending ``(offset, length)`` ranges that touch or overlap."""
    cur_start = cur_end = -1
    for start, length in ranges:
        if length <= 0:
            continue
        if cur_end >= start:
            cur_end = max(cur_end, start + length)
            continue
        if cur_end > cur_start:
            yield (cur_start, cur_end - cur_start)
        cur_start, cur_end = start, start + length
    if cur_end > cur_start:
        yield (cur_start, cur_end - cur_start)


class FileImage(DiskImage):
    """A DiskImage backed by one read-only file descriptor."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._fd = open_ro(self.path)
        try:
            self.file_size = file_size(self._fd)
        except BaseException:
            self.close()
            raise

    def _pread(self, length: int, offset: int, what: str = "data") -> bytes:
        if offset + length > self.file_size:
            # Checked up front so a corrupt length never allocates a huge buffer for a read that must fail.
            raise TruncatedImageError(
                f"{self.path} is truncated: {what} at offset {offset} extends past the end of the file",
                "the copy or download is incomplete; copy the image again",
            )
        return pread_exact(self._fd, length, offset, self.path, what)

    def _pread_into(self, buffer: memoryview, offset: int, what: str = "data") -> None:
        if offset + len(buffer) > self.file_size:
            raise TruncatedImageError(
                f"{self.path} is truncated: {what} at offset {offset} extends past the end of the file",
                "the copy or download is incomplete; copy the image again",
            )
        pread_into(self._fd, buffer, offset, self.path, what)

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


class LinearImage(FileImage):
    """An image whose virtual disk is the first :attr:`virtual_size` bytes of its file, as they are: a raw
    image, or a fixed VHD (its footer follows the data). Subclasses set ``virtual_size``.

    :meth:`allocated_ranges` asks the filesystem for the file's data extents (SEEK_DATA/SEEK_HOLE), so a
    sparse file is copied and hashed without reading its holes; where that is not supported it says "all
    of it", which is always correct.
    """

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
        return (self._fd, 0) if self._fd >= 0 else None  # the file is the disk, from its start

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
            spans = list(data_spans(fd, 0, size))
        finally:
            os.close(fd)
        yield from ((start, stop - start) for start, stop in spans)


class MappedImage(FileImage):
    """A container whose virtual disk is a sequence of mapped units; subclasses supply the mapping.

    Subclasses parse their structures in :meth:`_open`; a failure there closes the file again.
    """

    #: Format name used in error messages ("VHDX", "qcow2").
    label: str
    #: What to do about a damaged container of this format.
    damaged_hint: str

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    @abstractmethod
    def _open(self) -> None:
        """Read and validate the container's headers and maps."""

    def _corrupt(self, what: str) -> CorruptImageError:
        return CorruptImageError(f"{self.path}: {self.label} {what}", self.damaged_hint)

    @abstractmethod
    def _lookup(self, offset: int) -> tuple[int | bytes, int]:
        """Where virtual ``offset`` lives, as ``(target, n)``.

        ``n`` > 0 is how many bytes from ``offset`` share the same mapping (to the end of the unit).
        ``target`` is a file offset, :data:`HOLE`, or ``bytes`` already holding those ``n`` bytes
        (decompressed data).
        """

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        parts: list[bytes] = []
        for target, n in self._runs(offset, length):
            if isinstance(target, bytes):
                parts.append(target)
            elif target == HOLE:
                parts.append(bytes(n))
            else:
                parts.append(self._pread(n, target))
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def readinto(self, offset: int, buffer: memoryview) -> None:
        self._check_range(offset, len(buffer))
        pos = 0
        for target, n in self._runs(offset, len(buffer)):
            part = buffer[pos : pos + n]
            if isinstance(target, bytes):
                part[:] = target
            elif target == HOLE:
                zero_fill(part)
            else:
                self._pread_into(part, target)
            pos += n

    def _runs(self, offset: int, length: int) -> Iterator[tuple[int | bytes, int]]:
        """``(target, n)`` runs covering ``[offset, offset + length)``: units contiguous in the file, and
        adjacent holes, merged into one run each; decompressed data (``bytes``) as its own run."""
        run_target = HOLE - 1  # no pending run
        run_len = 0
        pos, end = offset, offset + length
        while pos < end:
            target, n = self._lookup(pos)
            n = min(n, end - pos)
            if isinstance(target, bytes):
                if run_len:
                    yield run_target, run_len
                run_target, run_len = HOLE - 1, 0
                yield target[:n], n
            elif (target == HOLE and run_target == HOLE) or (
                target >= 0 and run_target >= 0 and run_target + run_len == target
            ):
                run_len += n
            else:
                if run_len:
                    yield run_target, run_len
                run_target, run_len = target, n
            pos += n
        if run_len:
            yield run_target, run_len
