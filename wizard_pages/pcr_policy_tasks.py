"""The PCR policy page's background work and how its results read.

The prediction is the engine's :func:`~app.template.pcr_policy.predict_planned` (what the build's step 3
predicts); the comparison reads a real event log with :func:`~app.measure.eventlog.read_event_log` and
aligns it with :func:`~app.measure.compare.compare_events`, as ``shieldwright pcr diff`` does. The rest
turns those results into the tree's rows (:class:`~app.gui.widgets.pcr_event_tree.PcrGroup`) and the
one-line summary of a comparison; the policy's own rules are the recipe checks'.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication

from app.errors import ShieldwrightError
from app.gui.state import WizardState
from app.gui.widgets.pcr_event_tree import EventRow, PcrGroup
from app.measure.compare import EventMatch, diff_with_log
from app.measure.eventlog import read_event_log
from app.measure.events import Event
from app.template.checks import pcr_problems
from app.template.pcr_policy import PCR_MEANINGS, PolicyPrediction
from app.template.recipe import (
    PcrOptions,
    default_uki_id,
)


def _tr(text: str) -> str:
    return QCoreApplication.translate("PcrPolicyPage", text)


def uki_id_of(state: WizardState) -> str:
    """The UKI's file name stem as the recipe will have it (``Recipe.uki_id``): ``boot.uki_id``, else from
    the template name chosen so far (the Catalog page comes later; only descriptions depend on it)."""
    name = state.catalog.options.name if state.catalog is not None else ""
    return state.boot.uki_id or default_uki_id(name)


def policy_problems(policy: PcrOptions) -> list[str]:
    """The build's checks of ``[pcr]`` (:func:`app.template.checks.pcr_problems`), one line each."""
    return [p.finding().message for p in pcr_problems(policy)]


# -- comparing with an event log ---------------------------------------------------------------------


@dataclass(frozen=True)
class LogComparison:
    """A prediction aligned with a real event log, in one bank."""

    path: Path
    bank: str
    pcrs: tuple[int, ...]
    matches: tuple[EventMatch, ...]
    #: The PCR values the log replays to in ``bank`` (empty when the log cannot be replayed in it).
    logged: dict[int, str]

    def of(self, pcr: int) -> list[EventMatch]:
        return [m for m in self.matches if m.pcr == pcr]

    def differing(self, pcr: int) -> int:
        """How many of ``pcr``'s events do not match."""
        return sum(1 for m in self.of(pcr) if m.status != "match")


def compare_with_log(
    path: str | Path, predicted: Sequence[Event], bank: str, pcrs: Sequence[int]
) -> LogComparison:
    """Read the event log at ``path`` and align ``predicted`` with it in ``bank`` for ``pcrs``
    (what ``shieldwright pcr diff`` does)."""
    diff = diff_with_log(list(predicted), read_event_log(path), bank=bank, pcrs=pcrs)
    return LogComparison(Path(path), bank, diff.pcrs, diff.matches, diff.logged)


def comparison_summary(comparison: LogComparison) -> str:
    """``PCR 4 differs: 1 event; PCR 7 matches; PCR 11 differs: 3 events``."""
    parts = []
    for pcr in comparison.pcrs:
        n = comparison.differing(pcr)
        if n == 0:
            parts.append(_tr("PCR %1 matches").replace("%1", str(pcr)))
        else:
            events = _tr("1 event") if n == 1 else _tr("%1 events").replace("%1", str(n))
            parts.append(_tr("PCR %1 differs: %2").replace("%1", str(pcr)).replace("%2", events))
    return "; ".join(parts)


# -- the tree's rows ---------------------------------------------------------------------------------


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _event_row(event: Event, bank: str) -> EventRow:
    digest = event.digests.get(bank)
    return EventRow(event.type_name, event.description, digest.hex() if digest else None, event.source)


def _match_row(match: EventMatch, bank: str) -> EventRow:
    shown = match.predicted or match.actual
    assert shown is not None
    logged = match.actual.digests.get(bank) if match.actual is not None else None
    row = _event_row(shown, bank)
    return EventRow(
        row.type_name, row.description, None if match.predicted is None else row.digest, row.source,
        match.status, logged.hex() if logged else None,
        match.actual.description if match.actual is not None else "",
    )  # fmt: skip


def _group(pcr: int, policy: PcrOptions, value: str | None, **kw: Any) -> PcrGroup:
    name, meaning = PCR_MEANINGS[pcr]
    return PcrGroup(pcr, name, _sentence(meaning), value, in_policy=pcr in policy.pcrs, **kw)


def pcr_groups(
    prediction: PolicyPrediction | None,
    policy: PcrOptions,
    *,
    error: ShieldwrightError | None = None,
    comparison: LogComparison | None = None,
) -> list[PcrGroup]:
    """One group per PCR the engine explains (:data:`PCR_MEANINGS`), with the prediction's value and events
    in its bank, the comparison's verdicts when there is one, and why a PCR has no value."""
    # A prediction is shown in its own bank until the one for a newly chosen bank arrives.
    bank = prediction.banks[0] if prediction is not None else policy.bank
    groups = []
    for pcr in sorted(PCR_MEANINGS):
        group = functools.partial(_group, pcr, policy)
        if prediction is None:
            note = _tr("not predicted") if error is not None else "—"
            groups.append(group(None, note=note, note_tooltip=error.one_line() if error is not None else ""))
        elif pcr not in prediction.predicted_pcrs:
            tip = _tr(
                "PCR %1 depends on the target firmware: choose its variable store, an event log of it or its "
                "certificates to predict it."
            ).replace("%1", str(pcr))
            groups.append(group(None, note=_tr("needs a firmware profile"), note_tooltip=tip))
        elif comparison is not None:
            matches = comparison.of(pcr)
            status = "match" if all(m.status == "match" for m in matches) else "differs"
            rows = tuple(_match_row(m, bank) for m in matches)
            value = prediction.pcrs[bank][pcr]
            groups.append(group(value, events=rows, status=status, logged_value=comparison.logged.get(pcr)))
        else:
            rows = tuple(_event_row(e, bank) for e in prediction.events if e.pcr == pcr)
            groups.append(group(prediction.pcrs[bank][pcr], events=rows))
    return groups
