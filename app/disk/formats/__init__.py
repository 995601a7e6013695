"""Format detection: which reader opens a file, decided by its contents, never by its name."""

from __future__ import annotations

import os
from pathlib import Path

from app.disk.formats import vhd
from app.disk.formats._common import file_size, open_ro
from app.disk.formats.base import DiskImage, check_readable_file
from app.disk.formats.raw import RawImage
from app.errors import ImageError, UnsupportedImageError

QCOW2_MAGIC = b"QFI\xfb"


def detect_format(path: Path) -> str:
    """ "raw" | "vhd" | "vhdx" | "qcow2" by magic; refuses empty files and dynamic VHDs."""
    path = Path(path)
    check_readable_file(path)
    fd = open_ro(path)
    try:
        size = file_size(fd)
        if size == 0:
            raise ImageError(f"{path} is empty", "choose the disk image file, not an empty placeholder")
        try:
            first = os.pread(fd, 512, 0)
            tail = os.pread(fd, 512, size - 512) if size >= 512 else b""
        except OSError as exc:
            raise ImageError(f"{path}: read error ({exc.strerror})", "check the disk") from None
    finally:
        os.close(fd)
    if first.startswith(b"vhdxfile"):
        return "vhdx"
    if first.startswith(QCOW2_MAGIC):
        return "qcow2"
    if tail.startswith(vhd.COOKIE):
        return "vhd"
    # Dynamic/differencing VHDs start with a copy of the footer; a fixed one never does.
    if (
        first.startswith(vhd.COOKIE)
        and len(first) >= vhd.FOOTER_SIZE
        and vhd.parse_footer(first).disk_type in (vhd.DISK_DYNAMIC, vhd.DISK_DIFFERENCING)
    ):
        raise UnsupportedImageError(
            f"{path} is a dynamic or differencing VHD, which is not supported", vhd.CONVERT_HINT
        )
    return "raw"


def detect_and_open(path: Path) -> DiskImage:
    """Open ``path`` with the reader its contents call for (see :func:`app.disk.image.open_image`)."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "vhdx":
        # lazy: the VHDX and qcow2 readers load NumPy (~70 ms); raw and VHD images never need it
        from app.disk.formats.vhdx import VhdxImage

        return VhdxImage(path)
    if fmt == "qcow2":
        # lazy: as above (NumPy)
        from app.disk.formats.qcow2 import Qcow2Image

        return Qcow2Image(path)
    if fmt == "vhd":
        return vhd.VhdImage(path)
    return RawImage(path)
