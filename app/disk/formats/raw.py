"""Raw images: the file (or block device) *is* the disk.

Reads, and the data extents that let a sparse raw image be copied and hashed without reading its holes,
come from :class:`app.disk.formats._common.LinearImage`.
"""

from __future__ import annotations

from pathlib import Path

from app.disk.formats._common import LinearImage


class RawImage(LinearImage):
    format = "raw"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        # A size that is not a multiple of 512 is still accepted here; the GPT layer complains.
        self.virtual_size = self.file_size
