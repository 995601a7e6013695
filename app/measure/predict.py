"""Predict PCR 4, 7 and 11 for a template's boot chain on a target firmware, event by event.

The events, per component (formats.md §3; verified against real OVMF + shim + systemd-stub logs, see
tests/data/eventlogs/README.md):

- firmware: the profile's PCR 7 variables + separator and PCR 4 action + separator; then, for the first
  application, EV_EFI_VARIABLE_AUTHORITY (the db entry that admits it) into PCR 7 and
  EV_EFI_BOOT_SERVICES_APPLICATION (its Authenticode hash) into PCR 4.
- shim (≥ 16): its SbatLevel variable into PCR 7, then for the UKI the db entry that admits it again into
  PCR 7 (shim does not know firmware measured it) and the UKI's Authenticode hash into PCR 4. The kernel
  inside the UKI is not measured into PCR 4 (shim ≥ 16 loads it for the stub, unmeasured).
- the UKI's stub: PCR 11, each measured section's name and contents (:mod:`app.boot.pcr`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.boot.pcr import uki_measurements
from app.boot.uki import UkiInfo
from app.errors import ShieldwrightError
from app.measure.authority import verifying_entry
from app.measure.chain import BootApp, BootChain, find_boot_chain
from app.measure.events import (
    EFI_IMAGE_SECURITY_DATABASE,
    SHIM_LOCK_GUID,
    Event,
    EventType,
    MeasureError,
    hashes,
    replay,
    variable_event,
)
from app.measure.profile import FirmwareProfile
from app.measure.shim import sbat_level
from app.measure.siglist import SignatureEntry
from app.signing.authenticode import measured_digest
from app.untrusted import printable

#: The PCRs a template's policy binds by default: boot applications, Secure Boot authorities, the UKI.
DEFAULT_PCRS = (4, 7, 11)
PREDICTED_PCRS = (4, 7, 11)


@dataclass(frozen=True)
class Prediction:
    """The predicted events and PCR values (``pcrs[bank][pcr]``, PCR 11 before any systemd phase)."""

    banks: tuple[str, ...]
    events: tuple[Event, ...]
    pcrs: dict[str, dict[int, str]]
    chain: BootChain
    profile: FirmwareProfile

    def to_dict(self, bank: str = "sha256") -> dict[str, object]:
        """The ``pcr predict --json`` document (a contract: keys and lower-case hex)."""
        if bank not in self.pcrs:
            raise MeasureError(f"no {bank} prediction", f"predicted banks: {', '.join(self.banks)}")
        return {
            "bank": bank,
            "pcrs": {str(n): v for n, v in self.pcrs[bank].items()},
            "events": [ev.to_dict(bank) for ev in self.events],
        }


def predict_template(
    template: str | Path, profile: FirmwareProfile, banks: Sequence[str] | None = None
) -> Prediction:
    """Find the template's boot chain in its ESP and predict it on ``profile``'s firmware."""
    return predict_chain(find_boot_chain(template), profile, banks)


def predict_chain(
    chain: BootChain, profile: FirmwareProfile, banks: Sequence[str] | None = None
) -> Prediction:
    use = tuple(banks) if banks else profile.banks
    missing = [b for b in use if b not in profile.banks]
    if missing:
        raise MeasureError(
            f"the {profile.description} has no {', '.join(missing)} bank",
            f"ask for one of {', '.join(profile.banks)}",
        )
    db = profile.variables.db_entries()
    dbx = profile.variables.dbx_entries()
    events: list[Event] = [*profile.pcr7_prefix, *profile.pcr4_prefix]
    measured_by = "firmware"
    for app in chain.apps:
        if app.kind == "shim":
            events += _authority(app, db, dbx, measured_by, use)
            events.append(_application(app, measured_by, use))
            events.append(_sbat_level(app, use))
            measured_by = "shim"
        else:
            events += _authority(app, db, dbx, measured_by, use)
            events.append(_application(app, measured_by, use))
    uki = chain.uki.uki
    assert uki is not None
    events += pcr11_events(uki, use)
    pcrs = replay(events, use, PREDICTED_PCRS)
    return Prediction(use, tuple(events), pcrs, chain, profile)


def _authority(
    app: BootApp, db: Sequence[SignatureEntry], dbx: Sequence[SignatureEntry], by: str, banks: Sequence[str]
) -> list[Event]:
    entry = verifying_entry(app.data, db, dbx, app.path)
    cert = entry.certificate
    what = (
        printable(cert.subject.rfc4514_string()) if cert is not None else f"{entry.kind} {entry.data.hex()}"
    )
    return [
        variable_event(
            7,
            EventType.EV_EFI_VARIABLE_AUTHORITY,
            "db",
            EFI_IMAGE_SECURITY_DATABASE,
            entry.esd,
            f"db: {what} (admits {app.path})",
            by,
            banks,
        )
    ]


def _application(app: BootApp, by: str, banks: Sequence[str]) -> Event:
    digests = {b: measured_digest(app.data, b) for b in banks}
    return Event(4, EventType.EV_EFI_BOOT_SERVICES_APPLICATION, digests, app.label, by)


def _sbat_level(app: BootApp, banks: Sequence[str]) -> Event:
    level = sbat_level(app.data, app.path)
    return variable_event(
        7,
        EventType.EV_EFI_VARIABLE_AUTHORITY,
        "SbatLevel",
        SHIM_LOCK_GUID,
        level,
        "SbatLevel (shim's SBAT revocations)",
        "shim",
        banks,
    )


def pcr11_events(uki: UkiInfo, banks: Sequence[str]) -> list[Event]:
    """The stub's EV_IPL events: for each measured section in its order, H(name NUL) then H(contents)
    (described as ``".linux (name)"`` and ``".linux"``; the stub logs the name for both)."""
    try:
        measured = uki_measurements(uki)
    except ShieldwrightError as exc:
        raise MeasureError(exc.message, exc.hint) from None
    out: list[Event] = []
    for name, contents in measured:
        out.append(Event(11, EventType.EV_IPL, hashes(name.encode() + b"\0", banks), f"{name} (name)", "uki"))
        out.append(Event(11, EventType.EV_IPL, {b: contents.digest(b) for b in banks}, name, "uki"))
    return out
