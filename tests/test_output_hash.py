"""The output's SHA-256 from its bytes produced again: equal to hashing the file, ESP taken from the file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from app.disk.formats.raw import RawImage
from app.disk.writers import CHUNK
from app.errors import CancelledError
from app.progress import CancelToken, ProgressState
from app.template.build.output_hash import sha256_regenerated


def test_the_digest_is_the_views_bytes_with_the_named_ranges_from_the_file(tmp_path: Path) -> None:
    size = 3 * CHUNK + 5 * 512  # not a whole number of chunks
    view_bytes = bytearray(os.urandom(size))
    source = tmp_path / "view.raw"
    source.write_bytes(view_bytes)
    output = bytearray(view_bytes)
    ranges = [(CHUNK - 4096, 8192), (2 * CHUNK + 512, 1024)]  # one across a chunk boundary
    for offset, length in ranges:
        output[offset : offset + length] = os.urandom(length)
    out = tmp_path / "out.raw"
    out.write_bytes(output)
    progress = ProgressState()
    with RawImage(source) as view:
        got = sha256_regenerated(view, out, ranges, progress=progress)
    assert got == hashlib.sha256(output).hexdigest()
    assert progress.done == progress.total == size

    # Outside the named ranges the file is NOT read: a difference there does not show (by design: the
    # build's tests compare the digest with the finished file, tests/test_pipeline.py).
    output[10] ^= 1
    out.write_bytes(output)
    with RawImage(source) as view:
        assert sha256_regenerated(view, out, ranges) == got


def test_a_file_of_another_size_is_refused_and_cancel_is_honoured(tmp_path: Path) -> None:
    source = tmp_path / "view.raw"
    source.write_bytes(os.urandom(2 * CHUNK))
    short = tmp_path / "short.raw"
    short.write_bytes(bytes(CHUNK))
    with RawImage(source) as view:
        with pytest.raises(ValueError):
            sha256_regenerated(view, short, [])
        token = CancelToken()
        token.cancel()
        with pytest.raises(CancelledError):
            sha256_regenerated(view, source, [], cancel=token)
