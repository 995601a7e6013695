"""Compare a predicted event sequence with a real log's, event by event, so a PCR mismatch names its cause.

Per PCR, the two sequences are aligned on (event type, digest in the chosen bank) with difflib's matcher
(longest matching blocks first, deterministic, no junk heuristic). Aligned pairs are ``match``. Within a
stretch that does not align, events are paired in order while their types agree (``differs``: the same
measurement with another digest, e.g. PCR 4's UKI after a rebuild); an unpaired predicted event is
``missing`` from the log, an unpaired logged event is ``extra``. EV_NO_ACTION events are never extended,
so they are ignored on both sides.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from app.measure.eventlog import EventLog
from app.measure.events import Event, EventType, MeasureError

Status = Literal["match", "differs", "missing", "extra"]


@dataclass(frozen=True)
class EventMatch:
    """One row of a comparison: a predicted event, a logged one, or a pair of them."""

    pcr: int
    status: Status
    predicted: Event | None
    actual: Event | None


def compare_events(
    predicted: Sequence[Event], actual: Sequence[Event], *, bank: str, pcrs: Iterable[int]
) -> list[EventMatch]:
    """The alignment of ``predicted`` with ``actual`` in ``bank``, PCR by PCR in ascending order, each in
    sequence order; events of other PCRs are left out. An extended event without a ``bank`` digest is a
    MeasureError (the comparison would be meaningless)."""
    out: list[EventMatch] = []
    for pcr in sorted(set(pcrs)):
        want = _extended(predicted, pcr, bank, "predicted")
        got = _extended(actual, pcr, bank, "logged")
        out += _align(pcr, want, got, bank)
    return out


def _extended(events: Sequence[Event], pcr: int, bank: str, side: str) -> list[Event]:
    picked = [e for e in events if e.pcr == pcr and e.type != EventType.EV_NO_ACTION]
    for e in picked:
        if bank not in e.digests:
            raise MeasureError(
                f"the {side} event {e.type_name} in PCR {pcr} has no {bank} digest",
                "compare in a bank both the prediction and the log have",
            )
    return picked


def _align(pcr: int, want: list[Event], got: list[Event], bank: str) -> list[EventMatch]:
    def key(e: Event) -> tuple[int, bytes]:
        return e.type, e.digests[bank]

    matcher = difflib.SequenceMatcher(None, [key(e) for e in want], [key(e) for e in got], autojunk=False)
    out: list[EventMatch] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out += [EventMatch(pcr, "match", p, a) for p, a in zip(want[i1:i2], got[j1:j2], strict=True)]
        else:
            out += _pair_by_type(pcr, want[i1:i2], got[j1:j2])
    return out


def _pair_by_type(pcr: int, want: list[Event], got: list[Event]) -> list[EventMatch]:
    """A stretch that does not align: walk both in order; same type → ``differs``; otherwise the logged
    event is ``extra`` if the predicted one's type still comes later in the log, else that one is
    ``missing``."""
    out: list[EventMatch] = []
    ahead = Counter(a.type for a in got)  # types in got[j:], so the walk stays linear
    i = j = 0
    while i < len(want) and j < len(got):
        if want[i].type == got[j].type:
            out.append(EventMatch(pcr, "differs", want[i], got[j]))
            ahead[got[j].type] -= 1
            i, j = i + 1, j + 1
        elif ahead[want[i].type]:
            out.append(EventMatch(pcr, "extra", None, got[j]))
            ahead[got[j].type] -= 1
            j += 1
        else:
            out.append(EventMatch(pcr, "missing", want[i], None))
            i += 1
    out += [EventMatch(pcr, "missing", p, None) for p in want[i:]]
    out += [EventMatch(pcr, "extra", None, a) for a in got[j:]]
    return out


@dataclass(frozen=True)
class LogDiff:
    """A prediction aligned with a real event log in one bank: the rows and what the log replays to."""

    bank: str
    pcrs: tuple[int, ...]
    matches: tuple[EventMatch, ...]
    logged: dict[int, str]

    def differing(self) -> list[EventMatch]:
        return [m for m in self.matches if m.status != "match"]


def diff_with_log(predicted: Sequence[Event], log: EventLog, *, bank: str, pcrs: Iterable[int]) -> LogDiff:
    """What ``pcr diff`` and the PCR Policy page show: MeasureError when the log lacks ``bank``."""
    wanted = tuple(sorted(set(pcrs)))
    if bank not in log.banks:
        raise MeasureError(f"the event log has no {bank} bank", f"it has {', '.join(log.banks) or 'none'}")
    matches = compare_events(predicted, log.events, bank=bank, pcrs=wanted)
    return LogDiff(bank, wanted, tuple(matches), dict(log.replay(wanted)[bank]))
