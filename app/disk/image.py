"""Disk image formats and the read side of all of them, behind one small interface.

:func:`open_image` opens a file read-only as a :class:`DiskImage` (raw, fixed VHD, VHDX or qcow2,
chosen by its contents); the input is never modified.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.disk.formats import detect_and_open
from app.disk.formats.base import SECTOR_SIZES, DiskImage, check_readable_file

__all__ = [
    "FORMATS",
    "SECTOR_SIZES",
    "SUFFIXES",
    "WRITE_FORMATS",
    "DiskImage",
    "check_readable_file",
    "open_image",
]

#: Every image format, by the name ``DiskImage.format`` reports: :func:`open_image` reads them all, and
#: each is an output format (qcow2 through ``qemu-img convert`` from raw).
FORMATS = ("raw", "vhdx", "vhd", "qcow2")
#: The formats :func:`app.disk.writers.write_image` writes itself.
WRITE_FORMATS = ("raw", "vhdx", "vhd")
#: File name suffixes that name an output format (inputs are recognised by content, never by name).
SUFFIXES = {".raw": "raw", ".img": "raw", ".vhdx": "vhdx", ".vhd": "vhd", ".qcow2": "qcow2"}


def open_image(path: str | os.PathLike[str]) -> DiskImage:
    """Open ``path`` read-only, detecting its format from its contents (never from its name)."""
    return detect_and_open(Path(path))
