"""A partition of any disk image as a plain file that filesystem tools (debugfs, mtools) can open.

Those tools cannot read VHDX or qcow2, and we never mount or loop-attach anything. For a raw image the
tools are pointed at the image itself with an offset (``debugfs 'img?offset=N'``, ``mtools -i img@@N``),
which costs nothing; any other format is copied partition-first into a sparse temporary file through
:class:`DiskImage` (holes and zero blocks skipped), deleted afterwards. The input is only ever read.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from app.disk.image import DiskImage
from app.disk.model import Partition
from app.progress import CancelToken

CHUNK = 4 * 1024 * 1024
#: Characters the tools treat specially in an image name (ext2fs's "?options", mtools' "@@offset").
_SPECIAL = ("?", "@@")


def partition_range(part: Partition, sector_size: int) -> tuple[int, int]:
    """(byte offset, byte length) of ``part`` on the disk."""
    return part.first_lba * sector_size, part.size_bytes


def copy_partition(
    image: DiskImage, offset: int, size: int, dst: Path, cancel: CancelToken | None = None
) -> Path:
    """Write bytes ``[offset, offset+size)`` of ``image`` to ``dst`` as a sparse file."""
    end = offset + size
    with open(dst, "wb") as out:
        out.truncate(size)
        for start, length in image.allocated_ranges():
            pos, stop = max(start, offset), min(start + length, end)
            while pos < stop:
                if cancel is not None:
                    cancel.check()
                n = min(CHUNK, stop - pos)
                data = image.read(pos, n)
                if data.count(0) != len(data):
                    out.seek(pos - offset)
                    out.write(data)
                pos += n
    return dst


@contextlib.contextmanager
def partition_file(
    image: DiskImage, part: Partition, sector_size: int, cancel: CancelToken | None = None
) -> Iterator[tuple[Path, int]]:
    """``(path, offset)`` where the partition's bytes can be read by a tool, valid inside the ``with``."""
    offset, size = partition_range(part, sector_size)
    if image.format == "raw" and not any(s in str(image.path) for s in _SPECIAL):
        yield image.path, offset
        return
    with tempfile.TemporaryDirectory(prefix="shieldwright-part-") as tmp:
        path = copy_partition(image, offset, size, Path(tmp) / f"partition{part.number}.img", cancel)
        yield path, 0
