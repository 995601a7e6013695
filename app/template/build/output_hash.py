"""The SHA-256 of a raw template without reading it back: its bytes are produced again from the input.

The ESP changes after the streaming pass, so the output cannot be hashed while it is written, and
reading it back costs a disk read of every byte (it was written with O_DIRECT). Everything but the ESP
is a pure function of the input, the plan, the GPT and the volume keys (AES-XTS is deterministic), so
one more encryption pass over the input, still in the page cache, gives the same bytes; the ESP ranges
are read from the file. The build's tests compare this digest with a SHA-256 of the finished file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from app.disk.formats.raw import RawImage
from app.disk.image import DiskImage
from app.disk.writers import CHUNK
from app.progress import CancelToken, NullProgress, Progress


def sha256_regenerated(
    view: DiskImage,
    output: Path,
    from_file: Sequence[tuple[int, int]],
    *,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    step: str = "Hashing the output",
) -> str:
    """Hex SHA-256 of the raw disk ``view``, with each ``(offset, length)`` of ``from_file`` taken from the
    file ``output`` instead (see the module docstring). ``view.virtual_size`` is the output's size."""
    progress = progress or NullProgress()
    cancel = cancel or CancelToken()
    size = view.virtual_size
    h = hashlib.sha256()
    with RawImage(Path(output)) as file:
        if file.virtual_size != size:
            raise ValueError(f"{output} is not {size} bytes long: not the raw disk of this view")
        progress.begin(step, size)
        for pos in range(0, size, CHUNK):  # the view's read-ahead expects CHUNK-aligned reads
            cancel.check()
            end = min(pos + CHUNK, size)
            data = view.read(pos, end - pos)
            for start, length in from_file:
                lo, hi = max(pos, start), min(end, start + length)
                if lo < hi:
                    data = _patched(data, lo - pos, file.read(lo, hi - lo))
            h.update(data)
            progress.update(end)
    return h.hexdigest()


def _patched(data: bytes, at: int, piece: bytes) -> bytes:
    if len(piece) == len(data):
        return piece
    buf = bytearray(data)
    buf[at : at + len(piece)] = piece
    return bytes(buf)
