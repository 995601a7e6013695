"""Comparing a prediction with a log event by event (issue 14): match, differs, missing, extra."""

from __future__ import annotations

import hashlib

import pytest

from app.measure.compare import EventMatch, compare_events
from app.measure.eventlog import parse_event_log
from app.measure.events import Event, MeasureError
from tests.measure.test_eventlog import (
    APP,
    EV_EFI_ACTION,
    EV_IPL,
    EV_NO_ACTION,
    EV_SEPARATOR,
    REAL_LOGS,
    SAMPLE,
    VAR,
    build,
)


def ev(pcr: int, type_: int, payload: bytes, banks: tuple[str, ...] = ("sha1", "sha256")) -> Event:
    return Event(
        pcr, type_, {b: hashlib.new(b, payload).digest() for b in banks}, payload.decode(), "firmware"
    )


ACTION = ev(4, EV_EFI_ACTION, b"Calling EFI Application from Boot Option")
SEP4 = ev(4, EV_SEPARATOR, b"\0\0\0\0")
SHIM = ev(4, APP, b"shim")
UKI = ev(4, APP, b"uki v1")
PCR4 = [ACTION, SEP4, SHIM, UKI]


def rows(matches: list[EventMatch]) -> list[tuple[int, str, str | None, str | None]]:
    return [
        (m.pcr, m.status, m.predicted and m.predicted.description, m.actual and m.actual.description)
        for m in matches
    ]


def test_identical_sequences_match_event_by_event() -> None:
    got = compare_events(PCR4, list(PCR4), bank="sha256", pcrs=[4])
    assert [m.status for m in got] == ["match"] * 4
    assert all(m.predicted is m.actual for m in got)


def test_a_changed_uki_digest_differs_in_place() -> None:
    actual = [ACTION, SEP4, SHIM, ev(4, APP, b"uki v2")]
    assert rows(compare_events(PCR4, actual, bank="sha256", pcrs=[4])) == [
        (4, "match", ACTION.description, ACTION.description),
        (4, "match", SEP4.description, SEP4.description),
        (4, "match", "shim", "shim"),
        (4, "differs", "uki v1", "uki v2"),
    ]


def test_an_inserted_event_is_extra_and_a_dropped_one_missing() -> None:
    inserted = [ACTION, SEP4, ev(4, APP, b"grub"), SHIM, UKI]
    assert [m.status for m in compare_events(PCR4, inserted, bank="sha256", pcrs=[4])] == [
        "match", "match", "extra", "match", "match"
    ]  # fmt: skip
    dropped = [ACTION, SEP4, UKI]
    got = compare_events(PCR4, dropped, bank="sha256", pcrs=[4])
    assert rows(got)[2] == (4, "missing", "shim", None)
    assert [m.status for m in got] == ["match", "match", "missing", "match"]


def test_a_stretch_with_a_new_type_and_a_changed_digest() -> None:
    """Predicted [action, shim, uki]; logged [action, IPL, shim', uki]: the IPL is extra, shim differs."""
    predicted = [ACTION, SHIM, UKI]
    actual = [ACTION, ev(4, EV_IPL, b"loader"), ev(4, APP, b"shim 16"), UKI]
    assert rows(compare_events(predicted, actual, bank="sha256", pcrs=[4])) == [
        (4, "match", ACTION.description, ACTION.description),
        (4, "extra", None, "loader"),
        (4, "differs", "shim", "shim 16"),
        (4, "match", "uki v1", "uki v1"),
    ]


def test_a_different_type_is_missing_plus_extra_not_differs() -> None:
    got = compare_events([ACTION, SEP4], [ev(4, EV_IPL, b"other"), SEP4], bank="sha1", pcrs=[4])
    assert [m.status for m in got] == ["missing", "extra", "match"]


def test_pcrs_in_ascending_order_others_left_out_no_action_ignored() -> None:
    sep7 = ev(7, EV_SEPARATOR, b"\0\0\0\0")
    db = ev(7, VAR, b"db")
    locality = ev(0, EV_NO_ACTION, b"StartupLocality")
    predicted = [db, ACTION, sep7, SEP4, ev(11, EV_IPL, b".linux")]
    actual = [locality, ACTION, ev(7, EV_NO_ACTION, b"x"), db, SEP4, sep7, ev(9, EV_IPL, b"grub")]
    got = compare_events(predicted, actual, bank="sha256", pcrs=(7, 0, 4, 9))
    assert [(m.pcr, m.status) for m in got] == [(4, "match"), (4, "match"), (7, "match"), (7, "match"),
                                                (9, "extra")]  # fmt: skip
    assert compare_events(predicted, actual, bank="sha256", pcrs=[]) == []


def test_repeated_identical_events_align_in_order_and_the_result_is_deterministic() -> None:
    predicted = [SEP4, SEP4, SHIM, SEP4]
    actual = [SEP4, SHIM, SEP4, SEP4]
    first = compare_events(predicted, actual, bank="sha256", pcrs=[4])
    assert first == compare_events(predicted, actual, bank="sha256", pcrs=[4])
    statuses = [m.status for m in first]
    assert statuses.count("match") == 3 and statuses.count("missing") == 1 and statuses.count("extra") == 1


def test_an_event_without_the_bank_is_refused() -> None:
    sha1_only = ev(4, APP, b"uki", ("sha1",))
    with pytest.raises(MeasureError, match="no sha256 digest"):
        compare_events([ACTION, sha1_only], [ACTION], bank="sha256", pcrs=[4])
    assert [m.status for m in compare_events([sha1_only], [SHIM], bank="sha1", pcrs=[4])] == ["differs"]


def test_a_parsed_log_against_itself_and_a_changed_copy() -> None:
    seeds = [build(SAMPLE), *(p.read_bytes() for p in REAL_LOGS)]
    for seed in seeds:
        log = parse_event_log(seed)
        pcrs = range(24)
        same = compare_events(log.events, log.events, bank="sha256", pcrs=pcrs)
        extended = [e for e in log.events if e.type != EV_NO_ACTION and e.pcr < 24]
        assert [m.status for m in same] == ["match"] * len(extended)
        app = next(e for e in log.events if e.type == APP)
        changed = [
            Event(e.pcr, e.type, {**e.digests, "sha256": bytes(32)}, e.description, e.source, e.data)
            if e is app else e
            for e in log.events
        ]  # fmt: skip
        diff = [
            m for m in compare_events(log.events, changed, bank="sha256", pcrs=pcrs) if m.status != "match"
        ]
        assert [(m.pcr, m.status, m.predicted is app) for m in diff] == [(4, "differs", True)]
