"""The event model shared by predictions and real TCG event logs: what was measured, into which PCR, by whom.

An :class:`Event` carries its digest in every bank it was computed for, a description a person can read,
and the component that measured it (firmware, shim, the UKI's stub), so a prediction and a real log can be
compared event by event and replayed to PCR values. Digests of the events firmware and shim create are
defined here once (TCG PC Client Platform Firmware Profile; edk2; shim): separators, EFI actions and
``UEFI_VARIABLE_DATA``.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from app.boot.pcr import BANK_SIZES, BANKS, TPM_ALG_IDS
from app.errors import ShieldwrightError

#: TPM 2.0 banks (TPM_ALG_ID → name, digest size) that firmware logs use.
ALG_IDS = {**TPM_ALG_IDS, 0x0012: "sm3_256"}
DIGEST_SIZES = {**BANK_SIZES, "sm3_256": 32}
#: The banks we can compute ourselves (hashlib).
COMPUTABLE_BANKS = BANKS


class EventType(IntEnum):
    """TCG event types that appear in a UEFI boot (TCG PC Client PFP, table 9)."""

    EV_PREBOOT_CERT = 0x00000000
    EV_POST_CODE = 0x00000001
    EV_NO_ACTION = 0x00000003
    EV_SEPARATOR = 0x00000004
    EV_ACTION = 0x00000005
    EV_EVENT_TAG = 0x00000006
    EV_S_CRTM_CONTENTS = 0x00000007
    EV_S_CRTM_VERSION = 0x00000008
    EV_CPU_MICROCODE = 0x00000009
    EV_PLATFORM_CONFIG_FLAGS = 0x0000000A
    EV_TABLE_OF_DEVICES = 0x0000000B
    EV_COMPACT_HASH = 0x0000000C
    EV_IPL = 0x0000000D
    EV_IPL_PARTITION_DATA = 0x0000000E
    EV_NONHOST_CODE = 0x0000000F
    EV_NONHOST_CONFIG = 0x00000010
    EV_NONHOST_INFO = 0x00000011
    EV_OMIT_BOOT_DEVICE_EVENTS = 0x00000012
    EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
    EV_EFI_VARIABLE_BOOT = 0x80000002
    EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
    EV_EFI_BOOT_SERVICES_DRIVER = 0x80000004
    EV_EFI_RUNTIME_SERVICES_DRIVER = 0x80000005
    EV_EFI_GPT_EVENT = 0x80000006
    EV_EFI_ACTION = 0x80000007
    EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x80000008
    EV_EFI_HANDOFF_TABLES = 0x80000009
    EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000A
    EV_EFI_HANDOFF_TABLES2 = 0x8000000B
    EV_EFI_VARIABLE_BOOT2 = 0x8000000C
    EV_EFI_HCRTM_EVENT = 0x80000010
    EV_EFI_VARIABLE_AUTHORITY = 0x800000E0
    EV_EFI_SPDM_FIRMWARE_BLOB = 0x800000E1
    EV_EFI_SPDM_FIRMWARE_CONFIG = 0x800000E2


def event_type_name(value: int) -> str:
    """``EV_…`` for a known type, else ``0x…`` (a log may carry vendor types)."""
    try:
        return EventType(value).name
    except ValueError:
        return f"0x{value:08x}"


#: Where an event comes from: what a user changes to change it.
Source = str  # "firmware" | "shim" | "uki" | "stub" | "systemd" | "log"


@dataclass(frozen=True)
class Event:
    """One measurement: ``digests`` maps bank → raw digest; ``data`` is the event data as logged (not always
    what was hashed); ``source`` the measuring component; ``description`` for people."""

    pcr: int
    type: int
    digests: Mapping[str, bytes]
    description: str = ""
    source: Source = "firmware"
    data: bytes = field(default=b"", repr=False, compare=False)

    @property
    def type_name(self) -> str:
        return event_type_name(self.type)

    def digest_hex(self, bank: str) -> str:
        return self.digests[bank].hex()

    def to_dict(self, bank: str) -> dict[str, object]:
        """The ``pcr predict --json`` / ``pcr log --json`` shape of one event, in ``bank``."""
        return {
            "pcr": self.pcr,
            "type": self.type_name,
            "digest": self.digests[bank].hex() if bank in self.digests else None,
            "description": self.description,
            "source": self.source,
        }


class MeasureError(ShieldwrightError):
    """A measurement cannot be predicted, or an event log cannot be read or replayed."""


# -- digests of events firmware and shim create -------------------------------------------------------


def hashes(data: bytes, banks: Iterable[str] = COMPUTABLE_BANKS) -> dict[str, bytes]:
    """``data`` hashed in every bank (how firmware measures most events: the digest is H(event data))."""
    return {bank: hashlib.new(bank, data).digest() for bank in banks}


def separator(pcr: int, banks: Iterable[str] = COMPUTABLE_BANKS) -> Event:
    """EV_SEPARATOR: four zero bytes, hashed (TCG PFP §10.4.4; edk2 Tcg2Dxe MeasureSeparatorEvent)."""
    data = b"\0\0\0\0"
    return Event(pcr, EventType.EV_SEPARATOR, hashes(data, banks), "separator", "firmware", data)


def efi_action(
    pcr: int, text: str, banks: Iterable[str] = COMPUTABLE_BANKS, source: Source = "firmware"
) -> Event:
    """EV_EFI_ACTION: the ASCII string, no NUL, hashed (edk2 TcgMeasureAction)."""
    data = text.encode("ascii")
    return Event(pcr, EventType.EV_EFI_ACTION, hashes(data, banks), text, source, data)


#: EFI_GLOBAL_VARIABLE (SecureBoot, PK, KEK, BootOrder, …) and EFI_IMAGE_SECURITY_DATABASE (db, dbx, …).
EFI_GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
EFI_IMAGE_SECURITY_DATABASE = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
#: shim's own variables (SbatLevel, MokList…) and the vendor certificate's authority events.
SHIM_LOCK_GUID = uuid.UUID("605dab50-e046-4300-abb6-3dd810dd8b23")


def uefi_variable_data(name: str, vendor: uuid.UUID, data: bytes) -> bytes:
    """UEFI_VARIABLE_DATA: VariableName GUID (mixed-endian) ‖ u64 name length in characters ‖ u64 data
    length ‖ UTF-16LE name (no NUL) ‖ data (edk2 Measurement.c MeasureVariable; shim tpm.c)."""
    encoded = name.encode("utf-16-le")
    return vendor.bytes_le + struct.pack("<QQ", len(name), len(data)) + encoded + data


def parse_uefi_variable_data(blob: bytes) -> tuple[str, uuid.UUID, bytes]:
    """(name, vendor GUID, data) of a UEFI_VARIABLE_DATA (the layout :func:`uefi_variable_data` writes);
    MeasureError when the lengths do not add up."""
    if len(blob) < 32:
        raise MeasureError(f"UEFI_VARIABLE_DATA of {len(blob)} bytes is shorter than its header",
                           "the event log is damaged")  # fmt: skip
    vendor = uuid.UUID(bytes_le=blob[:16])
    name_chars, data_len = struct.unpack_from("<QQ", blob, 16)
    if 32 + 2 * name_chars + data_len != len(blob):
        raise MeasureError("UEFI_VARIABLE_DATA lengths do not match its size", "the event log is damaged")
    name = blob[32 : 32 + 2 * name_chars].decode("utf-16-le", errors="replace")
    return name, vendor, blob[32 + 2 * name_chars :]


def variable_event(
    pcr: int,
    type_: int,
    name: str,
    vendor: uuid.UUID,
    data: bytes,
    description: str,
    source: Source,
    banks: Iterable[str] = COMPUTABLE_BANKS,
) -> Event:
    """An EV_EFI_VARIABLE_* event: its digest is H(UEFI_VARIABLE_DATA)."""
    blob = uefi_variable_data(name, vendor, data)
    return Event(pcr, type_, hashes(blob, banks), description, source, blob)


# -- replay -------------------------------------------------------------------------------------------


def replay(
    events: Sequence[Event], banks: Iterable[str], pcrs: Iterable[int] | None = None
) -> dict[str, dict[int, str]]:
    """The PCR values ``events`` lead to from reset (all zeros; PCR 0 locality is the caller's business),
    per bank: ``{bank: {pcr: hex}}``. EV_NO_ACTION events are not extended (TCG PFP §10.4.5)."""
    wanted = None if pcrs is None else set(pcrs)
    out: dict[str, dict[int, str]] = {}
    for bank in banks:
        if bank not in COMPUTABLE_BANKS:
            hint = f"replay one of {', '.join(COMPUTABLE_BANKS)}"
            raise MeasureError(f"cannot replay the {bank} bank", hint)
        size = DIGEST_SIZES[bank]
        values: dict[int, bytes] = {}
        for ev in events:
            if ev.type == EventType.EV_NO_ACTION or (wanted is not None and ev.pcr not in wanted):
                continue
            digest = ev.digests.get(bank)
            if digest is None:
                raise MeasureError(
                    f"event {ev.type_name} in PCR {ev.pcr} has no {bank} digest", "replay another bank"
                )
            old = values.get(ev.pcr, bytes(size))
            values[ev.pcr] = hashlib.new(bank, old + digest).digest()
        numbers = sorted(values if wanted is None else wanted)
        out[bank] = {pcr: values.get(pcr, bytes(size)).hex() for pcr in numbers}
    return out
