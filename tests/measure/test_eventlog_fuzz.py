"""Hostile event logs: only MeasureError escapes, time and memory stay bounded (issue 14, "Event logs").

Hypothesis edits valid logs (the synthetic one of test_eventlog, and every captured real log): the fields
that carry sizes and counts get extreme values, bits flip, bytes land anywhere, the log is cut short or
replaced by random bytes. A log that still parses must replay and describe itself in printable text.
Headers claiming 2^32 of something are refused at once, without allocating what they claim.
"""

from __future__ import annotations

import os
import struct
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.measure.eventlog import MAX_DESCRIPTION, MAX_EVENTS, MAX_LOG_SIZE, parse_event_log
from app.measure.events import MeasureError
from tests.hostile.measure import PEAK_BOUND_KIB, cli, run_measured
from tests.measure.test_eventlog import (
    APP,
    BLOB2,
    EV_EVENT_TAG,
    EV_IPL,
    EV_NO_ACTION,
    GLOBAL,
    REAL_LOGS,
    SAMPLE,
    TABLES,
    VAR,
    build,
    event,
    image_load,
    spec_id,
    var_data,
)

SUITE = settings(
    max_examples=int(os.environ.get("SW_HOSTILE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
EXTREMES = (0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
            2**32, 2**63 - 1, 2**64 - 1)  # fmt: skip

#: Event data whose own length fields are worth attacking (UEFI_VARIABLE_DATA, image load, tags, …).
PAYLOADS = [
    (0, EV_NO_ACTION, b"StartupLocality\0\x03"),
    *SAMPLE,
    (1, VAR, var_data("Boot0001", GLOBAL, struct.pack("<IH", 1, 0) + "Disk\0".encode("utf-16-le"))),
    (4, APP, image_load("\\EFI\\BOOT\\BOOTIA32.EFI", uintn=8)),
    (12, EV_EVENT_TAG, struct.pack("<II", 0x49DFFE0F, 6) + "a\0b".encode("utf-16-le")),
    (0, BLOB2, b"\x05PEIFV" + struct.pack("<QQ", 0x820000, 0xE0000)),
    (1, TABLES, struct.pack("<Q", 1) + bytes(24)),
    (14, EV_IPL, b"MokList\0"),
]


def fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of every size, count and id in a log, found by walking the PFP layout here."""
    out = [(0, 4), (4, 4), (28, 4)]
    body = 32
    count_at = body + 24
    count = int.from_bytes(data[count_at : count_at + 4], "little")
    out += [(body + 23, 1), (count_at, 4)]
    sizes = {}
    for i in range(count):
        alg, size = struct.unpack_from("<HH", data, count_at + 4 + 4 * i)
        sizes[alg] = size
        out += [(count_at + 4 + 4 * i, 2), (count_at + 6 + 4 * i, 2)]
    pos = body + int.from_bytes(data[28:32], "little")
    out.append((count_at + 4 + 4 * count, 1))
    while pos + 12 <= len(data):
        out += [(pos, 4), (pos + 4, 4), (pos + 8, 4)]
        n = int.from_bytes(data[pos + 8 : pos + 12], "little")
        pos += 12
        for _ in range(n):
            out.append((pos, 2))
            pos += 2 + sizes[int.from_bytes(data[pos : pos + 2], "little")]
        out.append((pos, 4))
        size = int.from_bytes(data[pos : pos + 4], "little")
        start = pos + 4
        out += [
            (start + k, w) for k, w in ((0, 1), (0, 4), (8, 8), (16, 8), (24, 8), (32, 2)) if k + w <= size
        ]
        pos = start + size
    return out


SEEDS = [build(PAYLOADS), *(p.read_bytes() for p in REAL_LOGS)]
SEED_FIELDS = [fields(s) for s in SEEDS]


def parses_or_refuses(data: bytes) -> None:
    """The property: MeasureError, or a log that replays and whose descriptions are printable and short."""
    try:
        log = parse_event_log(data)
    except MeasureError as exc:
        assert exc.message.isprintable() and exc.hint, exc.one_line()
        return
    assert len(log.events) <= MAX_EVENTS
    log.replay()
    for ev in log.events:
        assert ev.description.isprintable() and len(ev.description) <= MAX_DESCRIPTION, ev
        assert set(ev.digests) == set(log.banks)


def test_the_seeds_are_valid() -> None:
    for seed in SEEDS:
        assert parse_event_log(seed).events


@SUITE
@given(data=st.data())
def test_field_edits_and_byte_edits(data: st.DataObject) -> None:
    which = data.draw(st.integers(0, len(SEEDS) - 1))
    buf = bytearray(SEEDS[which])
    for _ in range(data.draw(st.integers(1, 4))):
        if data.draw(st.booleans()):
            offset, width = data.draw(st.sampled_from(SEED_FIELDS[which]))
            value = data.draw(st.sampled_from(EXTREMES) | st.integers(0, 2 ** (8 * width) - 1))
            buf[offset : offset + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
        else:
            offset = data.draw(st.integers(0, len(buf) - 1))
            buf[offset : offset + 16] = data.draw(st.binary(min_size=1, max_size=16))
    parses_or_refuses(bytes(buf[: len(SEEDS[which])]))


@SUITE
@given(which=st.integers(0, len(SEEDS) - 1), flips=st.lists(st.integers(0, 2**31), min_size=1, max_size=8))
def test_bit_flips(which: int, flips: list[int]) -> None:
    buf = bytearray(SEEDS[which])
    for flip in flips:
        bit = flip % (8 * len(buf))
        buf[bit // 8] ^= 1 << (bit % 8)
    parses_or_refuses(bytes(buf))


@SUITE
@given(which=st.integers(0, len(SEEDS) - 1), cut=st.integers(0, 2**31), tail=st.binary(max_size=64))
def test_truncations_and_random_tails(which: int, cut: int, tail: bytes) -> None:
    seed = SEEDS[which]
    parses_or_refuses(seed[: cut % (len(seed) + 1)] + tail)


@SUITE
@given(junk=st.binary(max_size=512), keep_header=st.booleans())
@example(junk=b"", keep_header=True)
def test_random_bytes(junk: bytes, keep_header: bool) -> None:
    parses_or_refuses((spec_id() if keep_header else b"") + junk)


# -- huge claims: refused fast, without allocating them ------------------------------------------------------


def _event_with_data_field(pcr: int, type_: int, data: bytes, offset: int, value: bytes) -> bytes:
    return event(pcr, type_, data[:offset] + value + data[offset + len(value) :])


HUGE_CLAIMS = {
    "numberOfAlgorithms 2^32-1": spec_id(count=0xFFFFFFFF),
    "header eventSize 2^32-1": spec_id()[:28] + struct.pack("<I", 0xFFFFFFFF) + spec_id()[32:],
    "digest count 2^32-1": spec_id() + struct.pack("<III", 4, 5, 0xFFFFFFFF) + bytes(64),
    "eventSize 2^32-1": spec_id() + event(4, 5, b"x")[:-5] + struct.pack("<I", 0xFFFFFFFF) + bytes(64),
    "variable name length 2^64-1": spec_id()
    + _event_with_data_field(7, VAR, var_data("db", GLOBAL, b"x"), 16, b"\xff" * 8),
    "variable data length 2^64-1": spec_id()
    + _event_with_data_field(7, VAR, var_data("db", GLOBAL, b"x"), 24, b"\xff" * 8),
    "device path length 2^64-1": spec_id()
    + _event_with_data_field(4, APP, image_load("\\a"), 24, b"\xff" * 8),
    "handoff table count 2^64-1": spec_id() + event(1, TABLES, b"\xff" * 8 + bytes(24)),
    "event tag size 2^32-1": spec_id() + event(12, EV_EVENT_TAG, struct.pack("<II", 1, 0xFFFFFFFF) + b"ab"),
    "blob description 255": spec_id() + event(0, BLOB2, b"\xff" + b"x" * 8),
}


@pytest.mark.parametrize("name", HUGE_CLAIMS)
def test_huge_claims_are_handled_at_once_in_bounded_memory(name: str) -> None:
    data = HUGE_CLAIMS[name]
    tracemalloc.start()
    try:
        start = time.monotonic()
        parses_or_refuses(data)
        seconds = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 1, seconds
    assert peak < 1024 * 1024 + 64 * len(data), peak


def test_a_huge_header_claim_is_one_line_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "hostile.bin"
    path.write_bytes(HUGE_CLAIMS["numberOfAlgorithms 2^32-1"])
    result = run_measured(cli("pcr", "log", path), timeout=60)
    assert result.returncode == 2 and result.peak_kib < PEAK_BOUND_KIB, result.describe()
    assert (
        result.stderr.startswith("shieldwright: error: corrupt event log at byte 56: ")
        and result.stderr.count("\n") == 1
    ), result.stderr


@pytest.mark.parametrize("case", ["too many events", "too large"])
def test_limits_are_refused_in_bounded_memory_through_the_cli(tmp_path: Path, case: str) -> None:
    path = tmp_path / "hostile.bin"
    if case == "too many events":
        path.write_bytes(spec_id(("sha1",)) + event(8, EV_IPL, b"", ("sha1",)) * (MAX_EVENTS + 1))
        needle = f"more than {MAX_EVENTS} events"
    else:
        with open(path, "wb") as f:  # sparse: the test does not write 64 MiB
            f.write(spec_id())
            f.truncate(MAX_LOG_SIZE + 1)
        needle = "more than the 67108864 bytes"
    result = run_measured(cli("pcr", "log", path), timeout=120)
    assert result.returncode == 2 and needle in result.stderr, result.describe()
    assert result.peak_kib < PEAK_BOUND_KIB, result.describe()
