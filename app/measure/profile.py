"""Firmware profiles: where the target's Secure Boot state comes from.

- ``vars``: an OVMF/edk2 variable store file (``*.fd``) — the VM's NVRAM before first boot.
- ``certs``: PK, KEK, db and dbx given as files (:mod:`app.measure.certdir`).
- ``log``: a TCG event log of any boot on the target platform. Its firmware part is reused as logged —
  the PCR 7 variable events and separator, and PCR 4's events before the first boot application — and db and
  dbx are read back from the logged variable data, so an admin can target a cloud whose firmware they
  cannot read.

For ``vars`` and ``certs`` the firmware part is computed as OVMF/edk2 measures it (formats.md §3.2, §3.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.measure.certdir import load_cert_dir
from app.measure.eventlog import read_event_log
from app.measure.events import (
    COMPUTABLE_BANKS,
    EFI_GLOBAL_VARIABLE,
    EFI_IMAGE_SECURITY_DATABASE,
    Event,
    EventType,
    MeasureError,
    efi_action,
    parse_uefi_variable_data,
    separator,
    variable_event,
)
from app.measure.secureboot import SecureBootVariables
from app.measure.varstore import read_varstore, secure_boot_state

PROFILE_KINDS = ("vars", "certs", "log")
#: edk2 Tcg2Dxe OnReadyToBoot: PCR 4's first event, before the separators (UefiTcgPlatform.h).
CALLING_EFI_APPLICATION = "Calling EFI Application from Boot Option"


@dataclass(frozen=True)
class FirmwareProfile:
    """The target firmware: its Secure Boot variables and the events it makes before the boot
    application runs (``pcr7_prefix``: variables + separator; ``pcr4_prefix``: action + separator)."""

    kind: str
    path: str
    variables: SecureBootVariables
    pcr7_prefix: tuple[Event, ...]
    pcr4_prefix: tuple[Event, ...]
    banks: tuple[str, ...] = COMPUTABLE_BANKS

    @property
    def description(self) -> str:
        what = {"vars": "variable store", "certs": "certificates", "log": "event log"}[self.kind]
        return f"{what} {self.path}"

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "path": self.path, "secure_boot": self.variables.secure_boot}


def computed_prefixes(variables: SecureBootVariables) -> tuple[tuple[Event, ...], tuple[Event, ...]]:
    """PCR 7 and PCR 4 before the boot application, as edk2 measures them.

    PCR 7 (Tcg2Dxe ``MeasureSecureBootPolicy``): EV_EFI_VARIABLE_DRIVER_CONFIG for SecureBoot, PK, KEK,
    db, dbx — an absent variable measured with no data — then dbt and dbr only when present, then the
    separator. PCR 4 (``OnReadyToBoot``): the EV_EFI_ACTION, then the separator.
    """
    config = EventType.EV_EFI_VARIABLE_DRIVER_CONFIG
    items = variables.measured_variables()
    pcr7 = [variable_event(7, config, n, g, d, n, "firmware") for n, g, d in items]
    pcr7.append(separator(7))
    pcr4 = (efi_action(4, CALLING_EFI_APPLICATION), separator(4))
    return tuple(pcr7), pcr4


def _require_secure_boot(variables: SecureBootVariables, where: str) -> None:
    if not variables.secure_boot:
        raise MeasureError(
            f"{where} has Secure Boot off (no PK enrolled, or setup mode)",
            "PCR 7 is only predicted for a firmware with Secure Boot on",
        )


def profile_from_vars(path: str | Path) -> FirmwareProfile:
    variables = secure_boot_state(read_varstore(Path(path)))
    _require_secure_boot(variables, str(path))
    pcr7, pcr4 = computed_prefixes(variables)
    return FirmwareProfile("vars", str(path), variables, pcr7, pcr4)


def profile_from_certs(path: str | Path) -> FirmwareProfile:
    variables = load_cert_dir(Path(path))
    _require_secure_boot(variables, str(path))
    pcr7, pcr4 = computed_prefixes(variables)
    return FirmwareProfile("certs", str(path), variables, pcr7, pcr4)


def profile_from_log(path: str | Path) -> FirmwareProfile:
    """The firmware part of a real boot's event log (see the module doc)."""
    log = read_event_log(path)
    banks = tuple(b for b in log.banks if b in COMPUTABLE_BANKS)
    if not banks:
        raise MeasureError(
            f"{path} has no bank we can compute", "the log needs sha1, sha256, sha384 or sha512"
        )
    pcr7: list[Event] = []
    for ev in (e for e in log.events if e.pcr == 7 and e.type != EventType.EV_NO_ACTION):
        pcr7.append(ev)
        if ev.type == EventType.EV_SEPARATOR:
            break
    else:
        raise MeasureError(f"{path} has no PCR 7 separator", "give the log of a complete UEFI boot")
    pcr4: list[Event] = []
    for ev in (e for e in log.events if e.pcr == 4 and e.type != EventType.EV_NO_ACTION):
        if ev.type == EventType.EV_EFI_BOOT_SERVICES_APPLICATION:
            break
        pcr4.append(ev)
    if not any(e.type == EventType.EV_SEPARATOR for e in pcr4):
        raise MeasureError(
            f"{path} has no PCR 4 separator before the boot application",
            "give the log of a complete UEFI boot",
        )
    variables = _variables_from_events(pcr7, str(path))
    _require_secure_boot(variables, str(path))
    return FirmwareProfile("log", str(path), variables, tuple(pcr7), tuple(pcr4), banks)


def _variables_from_events(events: list[Event], where: str) -> SecureBootVariables:
    found: dict[str, bytes] = {}
    for ev in events:
        if ev.type != EventType.EV_EFI_VARIABLE_DRIVER_CONFIG:
            continue
        name, vendor, data = parse_uefi_variable_data(ev.data)
        if vendor in (EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE):
            found[name] = data
    missing = [n for n in ("SecureBoot", "db") if n not in found]
    if missing:
        raise MeasureError(
            f"{where} does not log {' and '.join(missing)} in PCR 7",
            "give the log of a UEFI Secure Boot boot",
        )
    known = ("SecureBoot", "PK", "KEK", "db", "dbx")
    return SecureBootVariables(
        secure_boot=found["SecureBoot"] == b"\x01",
        pk=found.get("PK", b""),
        kek=found.get("KEK", b""),
        db=found["db"],
        dbx=found.get("dbx", b""),
        extra={k: v for k, v in found.items() if k not in known},
    )


def load_profile(kind: str, path: str | Path) -> FirmwareProfile:
    """The profile of ``kind`` ("vars", "certs", "log") read from ``path``."""
    loaders = {"vars": profile_from_vars, "certs": profile_from_certs, "log": profile_from_log}
    if kind not in loaders:
        raise MeasureError(f"unknown firmware profile {kind!r}", f"use one of {', '.join(PROFILE_KINDS)}")
    return loaders[kind](path)
