"""Damaged containers may only ever fail with a ShieldwrightError - never IndexError, struct.error, ...

Each example overwrites random byte ranges of a small pristine image in the structures the readers
parse, optionally re-sealing the checksums so the damage gets past them into the deeper parsing.
"""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.disk.crc32c import crc32c
from app.disk.formats import vhd, vhdx
from app.disk.image import open_image
from app.errors import ShieldwrightError
from tests.conftest import MiB, run

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _pattern_image(tmp: Path, fmt: str, *opts: str) -> bytes:
    """An 8 MiB disk with data in a few places, in ``fmt``, made by qemu-img/qemu-io."""
    path = tmp / f"seed.{fmt}"
    run("qemu-img", "create", "-q", "-f", fmt, *(["-o", ",".join(opts)] if opts else []), path, "8M")
    run("qemu-io", "-f", fmt, "-c", "write -P 0x5a 0 1M", "-c", "write -P 0xa5 5M 512k", path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("fuzzseed")
    return {
        "vhdx": _pattern_image(tmp, "vhdx", "block_size=1M", "subformat=dynamic"),
        "vhd": _pattern_image(tmp, "vpc", "subformat=fixed", "force_size=on"),
        "qcow2": _pattern_image(tmp, "qcow2", "cluster_size=4096"),
    }


def _vhdx_targets(data: bytes) -> list[tuple[int, int]]:
    """Spans of the pristine file to damage: the whole header section once, and - so that random
    edits actually land on fields rather than padding - the populated start of each structure."""
    table = vhdx.REGION_TABLE_OFFSETS[0]
    count = struct.unpack_from("<I", data, table + 8)[0]
    spans = [(0, MiB), (0, 64)]
    spans += [(off, 128) for off in vhdx.HEADER_OFFSETS]
    spans += [(off, 16 + 32 * count) for off in vhdx.REGION_TABLE_OFFSETS]
    for i in range(count):
        gid, off, _, _ = vhdx.REGION_ENTRY.unpack_from(data, table + 16 + 32 * i)
        if gid == vhdx.METADATA_GUID:
            entries = struct.unpack_from("<H", data, off + 10)[0]
            spans += [(off, 32 + 32 * entries), (off + 64 * 1024, 64), (off, 64 * 1024 + 4096)]
        else:
            spans += [(off, 128), (off, 64 * 1024)]
    return spans


def _reseal_vhdx(buf: bytearray) -> None:
    for off, size in itertools.chain(
        ((o, vhdx.HEADER_SIZE) for o in vhdx.HEADER_OFFSETS),
        ((o, vhdx.REGION_TABLE_SIZE) for o in vhdx.REGION_TABLE_OFFSETS),
    ):
        block = bytearray(buf[off : off + size])
        block[4:8] = b"\0\0\0\0"
        struct.pack_into("<I", buf, off + 4, crc32c(block))


def _reseal_vhd(buf: bytearray) -> None:
    footer = buf[-512:]
    struct.pack_into(">I", buf, len(buf) - 512 + 64, vhd.footer_checksum(bytes(footer)))


def _exercise(path: Path) -> None:
    """Open and read a little, the way inspect / hashing would."""
    try:
        with open_image(path) as img:
            size = img.virtual_size
            for off in (0, size // 2, max(size - 4096, 0)):
                n = min(MiB, size - off)
                img.read(off, n)
                img.readinto(off, memoryview(bytearray(n)))
            ranges = list(itertools.islice(img.allocated_ranges(), 64))
            for start, length in ranges[:4]:
                img.read(start, min(length, 64 * 1024))
    except ShieldwrightError as exc:
        assert exc.message and "\n" not in exc.message


edits = st.lists(
    st.tuples(st.integers(0, 10_000_000), st.integers(1, 16), st.binary(min_size=1, max_size=16)),
    min_size=1,
    max_size=6,
)


def _apply(seed: bytes, spans: list[tuple[int, int]], picks) -> bytearray:
    buf = bytearray(seed)
    for where, n, payload in picks:
        start, size = spans[where % len(spans)]
        off = start + (where // len(spans)) % size
        chunk = (payload * n)[: max(1, min(n * len(payload), 64))]
        buf[off : off + len(chunk)] = chunk
    return buf


@FUZZ
@given(picks=edits, reseal=st.booleans())
def test_fuzzed_vhdx_only_raises_project_errors(seeds, tmp_path, picks, reseal):
    seed = seeds["vhdx"]
    buf = _apply(seed, _vhdx_targets(seed), picks)
    if reseal:
        _reseal_vhdx(buf)
    path = tmp_path / "f.vhdx"
    path.write_bytes(buf)
    _exercise(path)


@FUZZ
@given(picks=edits, reseal=st.booleans())
def test_fuzzed_vhd_footer_only_raises_project_errors(seeds, tmp_path, picks, reseal):
    seed = seeds["vhd"]
    buf = _apply(seed, [(len(seed) - 512, 512)], picks)
    if reseal:
        _reseal_vhd(buf)
    path = tmp_path / "f.vhd"
    path.write_bytes(buf)
    _exercise(path)


@FUZZ
@given(picks=edits)
def test_fuzzed_qcow2_header_only_raises_project_errors(seeds, tmp_path, picks):
    seed = seeds["qcow2"]
    l1_off = struct.unpack_from(">Q", seed, 40)[0]
    buf = _apply(seed, [(0, 112), (0, 4096), (l1_off, 64)], picks)
    path = tmp_path / "f.qcow2"
    path.write_bytes(buf)
    _exercise(path)


def test_seeds_are_readable(seeds, tmp_path):
    """The fuzz seeds themselves open and hold the pattern, so the fuzzing starts from valid files."""
    for fmt, data in seeds.items():
        path = tmp_path / f"ok.{fmt}"
        path.write_bytes(data)
        with open_image(path) as img:
            assert img.read(0, MiB) == b"\x5a" * MiB
            assert img.read(5 * MiB, 512 * 1024) == b"\xa5" * 512 * 1024
            assert img.read(2 * MiB, MiB) == bytes(MiB)
