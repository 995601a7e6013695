"""A partition of any disk image as a plain file that filesystem tools (debugfs, mtools) can open.

Those tools cannot read VHDX or qcow2, and we never mount or loop-attach anything. For a raw image the
tools are pointed at the image itself with an offset (``debugfs 'img?offset=N'``, ``mtools -i img@@N``),
which costs nothing; any other format is copied partition-first into a sparse temporary file through
:class:`DiskImage` (holes and zero blocks skipped), deleted afterwards. The input is only ever read.

A copy is refused up front when the target filesystem lacks room for the partition's allocated data
(plus :data:`SPACE_RESERVE`): a small qcow2 or VHDX can map one cluster of data over terabytes of a
partition, and the copy must not fill $TMPDIR trying to expand it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from app.disk.image import DiskImage
from app.disk.model import Partition
from app.errors import ImageError, OutOfSpaceError
from app.progress import CancelToken

CHUNK = 4 * 1024 * 1024
#: Free space a copy leaves on its filesystem, for everyone else.
SPACE_RESERVE = 256 * 1024 * 1024
#: Characters the tools treat specially in an image name (ext2fs's "?options", mtools' "@@offset").
_SPECIAL = ("?", "@@")


def partition_range(part: Partition, sector_size: int) -> tuple[int, int]:
    """(byte offset, byte length) of ``part`` on the disk."""
    return part.first_lba * sector_size, part.size_bytes


def _allocated_within(image: DiskImage, offset: int, end: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of the image's allocated ranges clipped to ``[offset, end)``."""
    for start, length in image.allocated_ranges():
        pos, stop = max(start, offset), min(start + length, end)
        if pos < stop:
            yield pos, stop
        elif start >= end:
            return


def _human(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_free_space(directory: Path, needed: int, what: str) -> None:
    """:class:`OutOfSpaceError` unless ``directory``'s filesystem has ``needed`` bytes + the reserve free."""
    try:
        st = os.statvfs(directory)
    except OSError as exc:
        raise ImageError(f"cannot check free space in {directory}: {exc.strerror}", "check TMPDIR") from None
    free = st.f_bavail * st.f_frsize
    if needed + SPACE_RESERVE > free:
        raise OutOfSpaceError(
            f"not enough space in {directory} for {what}: it needs up to {_human(needed)}, "
            f"{_human(free)} are free",
            "set TMPDIR to a filesystem with more free space, or convert the image to raw first",
        )


def copy_partition(
    image: DiskImage, offset: int, size: int, dst: Path, cancel: CancelToken | None = None
) -> Path:
    """Write bytes ``[offset, offset+size)`` of ``image`` to ``dst`` as a sparse file.

    Refused (:class:`OutOfSpaceError`, nothing written) when ``dst``'s filesystem cannot hold the range's
    allocated data; a full disk during the copy is the same error, with ``dst`` removed.
    """
    end = offset + size
    needed = sum(stop - pos for pos, stop in _allocated_within(image, offset, end))
    check_free_space(Path(dst).parent, needed, f"a copy of {size} bytes of {image.path.name}")
    try:
        with open(dst, "wb") as out:
            out.truncate(size)
            for pos, stop in _allocated_within(image, offset, end):
                while pos < stop:
                    if cancel is not None:
                        cancel.check()
                    n = min(CHUNK, stop - pos)
                    data = image.read(pos, n)
                    if data.count(0) != len(data):
                        out.seek(pos - offset)
                        out.write(data)
                    pos += n
    except OSError as exc:
        Path(dst).unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutOfSpaceError(f"{Path(dst).parent} filled up while copying a partition",
                                  "set TMPDIR to a filesystem with more free space") from None  # fmt: skip
        raise
    except BaseException:
        Path(dst).unlink(missing_ok=True)
        raise
    return dst


def readable_in_place(image: DiskImage) -> bool:
    """Whether tools read ``image``'s partitions in the file itself (a raw image whose path mtools can
    take with an offset), so :func:`partition_file` copies nothing."""
    return image.format == "raw" and not any(s in str(image.path) for s in _SPECIAL)


@contextlib.contextmanager
def partition_file(
    image: DiskImage, part: Partition, sector_size: int, cancel: CancelToken | None = None
) -> Iterator[tuple[Path, int]]:
    """``(path, offset)`` where the partition's bytes can be read by a tool, valid inside the ``with``."""
    offset, size = partition_range(part, sector_size)
    if readable_in_place(image):
        yield image.path, offset
        return
    with tempfile.TemporaryDirectory(prefix="shieldwright-part-") as tmp:
        path = copy_partition(image, offset, size, Path(tmp) / f"partition{part.number}.img", cancel)
        yield path, 0
