"""OutputFile: page-cache and O_DIRECT writes land the same bytes; refusals fall back; errors surface."""

from __future__ import annotations

import errno
import mmap
import os
import random
from pathlib import Path

import pytest

from app.disk import outfile
from app.disk.outfile import DIRECT_ALIGN, DIRECT_CHUNK, OutputFile
from tests.conftest import MiB

SIZE = 24 * MiB


def direct_io_works(directory: Path) -> bool:
    """Whether this filesystem takes an aligned O_DIRECT write (ext4 does; older tmpfs does not)."""
    probe = directory / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError:
        return False
    buf = mmap.mmap(-1, DIRECT_ALIGN)
    try:
        os.pwrite(fd, buf, 0)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        buf.close()
        probe.unlink()


def runs(seed: int) -> list[tuple[int, bytes]]:
    """Non-overlapping writes: aligned and not, shorter than a page, one chunk, and several chunks."""
    rng = random.Random(seed)
    out, pos = [], 0
    lengths = [DIRECT_CHUNK, 3 * DIRECT_CHUNK + 512, 4096, 100, DIRECT_CHUNK - 4096, 5000, 2 * MiB + 7]
    for i, n in enumerate(lengths):
        pos += [0, 4096, 513, 8192, 1, 65536, 4096][i]  # gaps (holes) of various alignments
        out.append((pos, rng.randbytes(n)))
        pos += n
    assert pos < SIZE
    return out


def write_all(path: Path, direct: bool, pieces: list[tuple[int, bytes]]) -> OutputFile:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    out = OutputFile(fd, path, direct=direct)
    try:
        os.ftruncate(fd, SIZE)
        for offset, data in pieces:
            out.write(data, offset)
        out.flush()
    finally:
        out.close()
        os.close(fd)
    return out


def expected(pieces: list[tuple[int, bytes]]) -> bytes:
    buf = bytearray(SIZE)
    for offset, data in pieces:
        buf[offset : offset + len(data)] = data
    return bytes(buf)


@pytest.mark.parametrize("direct", [False, True])
def test_every_byte_lands_where_it_was_written(tmp_path: Path, direct: bool) -> None:
    pieces = runs(1)
    out = write_all(tmp_path / "out.raw", direct, pieces)
    assert (tmp_path / "out.raw").read_bytes() == expected(pieces)
    if direct and direct_io_works(tmp_path):
        aligned = sum(len(d) // DIRECT_ALIGN * DIRECT_ALIGN for o, d in pieces if o % DIRECT_ALIGN == 0)
        assert out.direct_writes == aligned  # the aligned parts went direct, the rest through the cache
    else:
        assert out.direct_writes == 0


def test_a_filesystem_refusing_direct_writes_gets_page_cache_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.pwrite
    refused = []

    def pwrite(fd: int, data, offset: int) -> int:
        if fd != own_fd[0]:  # the O_DIRECT descriptor
            refused.append(offset)
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real(fd, data, offset)

    own_fd = [-1]
    real_init = OutputFile.__init__

    def init(self, fd, path, *, direct=False):
        own_fd[0] = fd
        real_init(self, fd, path, direct=direct)

    monkeypatch.setattr(OutputFile, "__init__", init)
    monkeypatch.setattr(os, "pwrite", pwrite)
    pieces = runs(2)
    out = write_all(tmp_path / "out.raw", True, pieces)
    assert (tmp_path / "out.raw").read_bytes() == expected(pieces)
    assert out.direct_writes == 0 and not out.direct
    if direct_io_works(tmp_path):
        assert len(refused) == 1, "after the first refusal nothing more is tried with O_DIRECT"


@pytest.mark.parametrize("direct", [False, True])
def test_a_full_disk_on_the_writing_thread_is_raised_to_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    real = os.pwrite
    written = [0]

    def pwrite(fd: int, data, offset: int) -> int:
        written[0] += len(data)
        if written[0] > 6 * MiB:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    path = tmp_path / "out.raw"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    out = OutputFile(fd, path, direct=direct)
    try:
        with pytest.raises(OSError) as info:
            for i in range(8):
                out.write(bytes([i + 1]) * DIRECT_CHUNK, i * DIRECT_CHUNK)
            out.flush()
        assert info.value.errno == errno.ENOSPC
    finally:
        out.close()  # must not hang with writes still queued
        os.close(fd)


def test_close_drops_queued_writes_and_releases_everything(tmp_path: Path) -> None:
    path = tmp_path / "out.raw"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    out = OutputFile(fd, path, direct=True)
    for i in range(outfile.DIRECT_BUFFERS + 2):
        out.write(bytes(DIRECT_CHUNK), i * DIRECT_CHUNK)
    out.close()
    out.close()  # idempotent
    os.close(fd)
    assert not out.direct
