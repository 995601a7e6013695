"""Read a TCG PC Client crypto-agile event log (what ``/sys/kernel/security/tpm0/binary_bios_measurements``
holds) into :class:`~app.measure.events.Event` s, and replay it to PCR values.

Layout (TCG PC Client Platform Firmware Profile, PFP, §10.2): one SHA-1-format ``TCG_PCR_EVENT`` whose data
is the ``TCG_EfiSpecIDEventStruct`` ("Spec ID Event03": the algorithms and digest sizes of the log), then
``TCG_PCR_EVENT2`` records (pcrIndex u32, eventType u32, ``TPML_DIGEST_VALUES``, eventSize u32, event).
All integers are little-endian.

The log is untrusted input: every length is checked against the bytes that remain, anything inconsistent
is a :class:`MeasureError` naming the byte offset, and every string decoded from it is made printable.
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from app.measure.events import (
    ALG_IDS,
    DIGEST_SIZES,
    EFI_GLOBAL_VARIABLE,
    EFI_IMAGE_SECURITY_DATABASE,
    SHIM_LOCK_GUID,
    Event,
    EventType,
    MeasureError,
    Source,
    event_type_name,
)
from app.untrusted import printable, read_bounded

#: Refuse logs and event counts beyond these: real boot logs are tens of KiB with a few hundred events.
MAX_LOG_SIZE = 64 * 1024 * 1024
MAX_EVENTS = 100_000
#: A TPM has a handful of banks; more algorithms than this in the Spec ID event is not a real log.
MAX_ALGORITHMS = 32
#: Descriptions are for people: longer decoded strings are cut (a kernel command line fits).
MAX_DESCRIPTION = 4096

#: TPM_ALG_IDs beyond events.ALG_IDS that a log may use (TPM 2.0 Part 2 §6.3): name, digest size.
_MORE_ALGS = {0x0027: ("sha3_256", 32), 0x0028: ("sha3_384", 48), 0x0029: ("sha3_512", 64)}
#: hashlib's name for a bank, where it differs.
_HASHLIB_NAMES = {"sm3_256": "sm3"}

_SPEC_ID_SIGNATURE = b"Spec ID Event03\0"
_STARTUP_LOCALITY = b"StartupLocality\0"
_HINT = (
    "the file is not a complete TCG event log; copy /sys/kernel/security/tpm0/binary_bios_measurements again"
)


@dataclass
class EventLog:
    """A parsed log: its ``banks`` (from the Spec ID event, in its order), its ``events`` (all but the Spec
    ID header; other EV_NO_ACTION events kept), the TPM2_Startup locality and the PFP version it claims."""

    banks: tuple[str, ...]
    events: list[Event]
    startup_locality: int = 0
    spec: str = ""
    uintn_size: int = 8  # bytes of a UINTN in the firmware that wrote it (Spec ID uintnSize)
    digest_sizes: dict[str, int] = field(default_factory=dict)  # bank → digest size, from the Spec ID event

    def replay(self, pcrs: Iterable[int] | None = None) -> dict[str, dict[int, str]]:
        """``{bank: {pcr: hex}}`` for every bank of the log hashlib can compute, from the PCRs' reset values:
        zeros, except PCR 0 after a locality 3 TPM2_Startup (…03) or an H-CRTM (…04) (PFP §10.4.5.3).
        Without ``pcrs``, the PCRs the log extends; with them, exactly those."""
        wanted = None if pcrs is None else set(pcrs)
        out: dict[str, dict[int, str]] = {}
        for bank in self.banks:
            algorithm = _hashlib_algorithm(bank)
            if algorithm is None:
                continue  # e.g. an unknown TPM_ALG_ID: parsed, not replayable
            size = hashlib.new(algorithm).digest_size
            values: dict[int, bytes] = {}
            for ev in self.events:
                if ev.type == EventType.EV_NO_ACTION or (wanted is not None and ev.pcr not in wanted):
                    continue
                old = values.get(ev.pcr, self._reset_value(ev.pcr, size))
                values[ev.pcr] = hashlib.new(algorithm, old + ev.digests[bank]).digest()
            for pcr in sorted(wanted or ()):
                values.setdefault(pcr, self._reset_value(pcr, size))
            out[bank] = {pcr: v.hex() for pcr, v in sorted(values.items())}
        return out

    def _reset_value(self, pcr: int, size: int) -> bytes:
        if pcr == 0 and self.startup_locality in (3, 4):
            return bytes(size - 1) + bytes([self.startup_locality])
        return bytes(size)


def _hashlib_algorithm(bank: str) -> str | None:
    name = _HASHLIB_NAMES.get(bank, bank)
    return name if name in hashlib.algorithms_available else None


def _fail(offset: int, message: str, hint: str = _HINT) -> MeasureError:
    return MeasureError(f"corrupt event log at byte {offset}: {message}", hint)


class _Reader:
    """Bounds-checked little-endian reads over the log; a short read is a MeasureError at its offset."""

    def __init__(self, data: bytes, base: int = 0) -> None:
        self.data = data
        self.pos = 0
        self.base = base  # offset of ``data`` in the log, for messages

    def offset(self) -> int:
        return self.base + self.pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, size: int, what: str) -> bytes:
        if size > self.remaining():
            raise _fail(
                self.offset(), f"{what} needs {size} bytes, only {self.remaining()} remain (truncated log)"
            )
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "little")

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "little")


@dataclass(frozen=True)
class _SpecId:
    algorithms: dict[int, tuple[str, int]]  # TPM_ALG_ID → (bank, digest size), in log order
    spec: str
    uintn_size: int


def parse_event_log(data: bytes) -> EventLog:
    """The crypto-agile event log in ``data``; a MeasureError (naming the byte offset) if it is not one.

    Each event's ``source`` says who measured it, from what the log shows (a log does not name the
    measuring component, so this is a best reading):

    - ``shim``: EV_EFI_VARIABLE_* events of shim's SHIM_LOCK GUID variables (SbatLevel, MokList, "Shim"),
      EV_EFI_VARIABLE_AUTHORITY events after the first EV_EFI_BOOT_SERVICES_APPLICATION (firmware measures
      the authority that verified the first application before measuring the application itself, so later
      authority events come from shim verifying its 2nd stage), and EV_IPL in PCR 14 (MokList*, MokSBState);
    - ``stub``: EV_IPL and EV_EVENT_TAG events in PCR 11, 12 and 13 (systemd-stub);
    - ``log``: other EV_IPL and EV_EVENT_TAG events (a boot loader or the kernel; the log does not say);
    - ``firmware``: everything else.
    """
    if len(data) > MAX_LOG_SIZE:
        raise MeasureError(
            f"the event log is {len(data)} bytes, more than the {MAX_LOG_SIZE} bytes a boot log can be",
            "give the TCG event log (binary_bios_measurements), not another file",
        )
    if not data:
        raise _fail(0, "the file is empty")
    reader = _Reader(data)
    spec_id = _read_spec_id(reader)
    log = EventLog(
        banks=tuple(bank for bank, _ in spec_id.algorithms.values()),
        events=[],
        spec=spec_id.spec,
        uintn_size=spec_id.uintn_size,
        digest_sizes=dict(spec_id.algorithms.values()),
    )
    # Where only padding is left: the unused rest of a firmware log area (all 0x00 or all 0xFF).
    content_end = min(len(data.rstrip(b"\0")), len(data.rstrip(b"\xff")))
    seen_locality = seen_application = False
    while reader.pos < content_end:
        if len(log.events) >= MAX_EVENTS:
            raise _fail(reader.pos, f"more than {MAX_EVENTS} events", "this is not a boot event log")
        ev = _read_event(reader, spec_id)
        if _is_startup_locality(ev.type, ev.data) and ev.pcr == 0 and not seen_locality:
            log.startup_locality, seen_locality = ev.data[-1], True  # the first one counts (PFP §10.4.5.3)
        source = _source(ev.pcr, ev.type, ev.data, seen_application)
        seen_application |= ev.type == EventType.EV_EFI_BOOT_SERVICES_APPLICATION
        description = describe_event(ev.pcr, ev.type, ev.data, uintn_size=spec_id.uintn_size)
        log.events.append(Event(ev.pcr, ev.type, ev.digests, description, source, ev.data))
    return log


def _is_startup_locality(event_type: int, data: bytes) -> bool:
    """EV_NO_ACTION "StartupLocality\\0" + u8 locality (PFP §10.4.5.3)."""
    return (
        event_type == EventType.EV_NO_ACTION
        and len(data) == len(_STARTUP_LOCALITY) + 1
        and data.startswith(_STARTUP_LOCALITY)
    )


def _read_spec_id(reader: _Reader) -> _SpecId:
    """The SHA-1-format first event and its TCG_EfiSpecIDEventStruct (PFP §10.4.5.1)."""
    # TCG_PCR_EVENT: pcrIndex u32, eventType u32, digest[20], eventSize u32, event (PFP §10.2.1).
    if reader.remaining() < 32:
        raise _fail(0, f"{reader.remaining()} bytes are too few for the log's first event (32 at least)")
    reader.u32("pcrIndex")
    event_type = reader.u32("eventType")
    reader.take(20, "SHA-1 digest")
    size_at = reader.pos
    size = reader.u32("eventSize")
    body = reader.data[reader.pos : reader.pos + min(size, reader.remaining())]
    signed = body.startswith(_SPEC_ID_SIGNATURE[:15]) or _SPEC_ID_SIGNATURE.startswith(body)  # or cut short
    if event_type != EventType.EV_NO_ACTION or not signed:
        found = (
            printable(body[:15].decode("ascii", "backslashreplace")) if body.startswith(b"Spec ID") else ""
        )
        raise MeasureError(
            "not a crypto-agile (TPM 2.0) event log: it does not start with a 'Spec ID Event03' event"
            + (f" but with {found!r} (an old SHA-1-only TCG 1.2 log)" if found else "; it may be an old "
               "SHA-1-only TCG 1.2 log, or no event log at all"),
            "TPM 2.0 firmware writes the crypto-agile format: give a copy of "
            "/sys/kernel/security/tpm0/binary_bios_measurements from a TPM 2.0 machine",
        )  # fmt: skip
    if size > reader.remaining():
        raise _fail(size_at, f"the first event's {size} bytes of data run past the end of the log")
    if not body.startswith(_SPEC_ID_SIGNATURE):  # eventSize cuts it short, or no NUL
        raise _fail(reader.pos, f"the first event's {size} bytes do not hold the 'Spec ID Event03' signature")
    spec = _Reader(body, reader.pos)
    spec.take(16, "Spec ID signature")
    spec.u32("platformClass")
    minor, major, errata = spec.u8("specVersionMinor"), spec.u8("specVersionMajor"), spec.u8("specErrata")
    uintn_at = spec.offset()
    uintn_code = spec.u8("uintnSize")
    if uintn_code not in (1, 2):
        raise _fail(uintn_at, f"uintnSize is {uintn_code}, not 1 (32-bit) or 2 (64-bit)")
    count_at = spec.offset()
    count = spec.u32("numberOfAlgorithms")
    if not 0 < count <= MAX_ALGORITHMS or 4 * count > spec.remaining():
        raise _fail(
            count_at,
            f"the Spec ID event claims {count} algorithms; its {spec.remaining()} remaining bytes hold "
            f"at most {min(spec.remaining() // 4, MAX_ALGORITHMS)}",
        )
    algorithms: dict[int, tuple[str, int]] = {}
    for _ in range(count):
        at = spec.offset()
        alg, digest_size = spec.u16("algorithmId"), spec.u16("digestSize")
        bank, expected = _bank(alg)
        if alg in algorithms:
            raise _fail(at, f"algorithm {bank} is listed twice in the Spec ID event")
        if digest_size == 0 or (expected and digest_size != expected):
            raise _fail(at, f"algorithm {bank} has digest size {digest_size}, not {expected or 'above 0'}")
        algorithms[alg] = (bank, digest_size)
    spec.take(spec.u8("vendorInfoSize"), "vendorInfo")
    reader.pos += size
    return _SpecId(algorithms, f"{major}.{minor} errata {errata}", 4 if uintn_code == 1 else 8)


def _bank(alg: int) -> tuple[str, int]:
    """The bank name and digest size of a TPM_ALG_ID; ``("0x…", 0)`` for one we do not know."""
    if alg in ALG_IDS:
        return ALG_IDS[alg], DIGEST_SIZES[ALG_IDS[alg]]
    return _MORE_ALGS.get(alg, (f"0x{alg:04x}", 0))


@dataclass(frozen=True)
class _RawEvent:
    pcr: int
    type: int
    digests: dict[str, bytes]
    data: bytes


def _read_event(reader: _Reader, spec_id: _SpecId) -> _RawEvent:
    """One TCG_PCR_EVENT2 (PFP §10.2.2): every digest's algorithm must be one the Spec ID event lists."""
    start = reader.pos
    pcr = reader.u32("pcrIndex")
    event_type = reader.u32("eventType")
    count_at = reader.pos
    count = reader.u32("digest count")
    if count != len(spec_id.algorithms):
        raise _fail(
            count_at, f"the event has {count} digests, the Spec ID event lists {len(spec_id.algorithms)} "
            "algorithms",
        )  # fmt: skip
    digests: dict[str, bytes] = {}
    for _ in range(count):
        at = reader.pos
        alg = reader.u16("hashAlg")
        if alg not in spec_id.algorithms:
            raise _fail(at, f"digest algorithm 0x{alg:04x} is not listed in the Spec ID event")
        bank, size = spec_id.algorithms[alg]
        if bank in digests:
            raise _fail(at, f"the event at byte {start} has two {bank} digests")
        digests[bank] = reader.take(size, f"{bank} digest")
    size_at = reader.pos
    size = reader.u32("eventSize")
    if size > reader.remaining():
        raise _fail(
            size_at,
            f"event data of {size} bytes runs past the end of the log ({reader.remaining()} bytes left)",
        )
    return _RawEvent(pcr, event_type, digests, reader.take(size, "event data"))


# -- who measured it -----------------------------------------------------------------------------------


def _source(pcr: int, event_type: int, data: bytes, seen_application: bool) -> Source:
    """The rule documented in :func:`parse_event_log`."""
    if event_type in _VARIABLE_TYPES:
        var = _variable(data)
        if var is not None and var[1] == SHIM_LOCK_GUID:
            return "shim"
        if event_type == EventType.EV_EFI_VARIABLE_AUTHORITY and seen_application:
            return "shim"
    if event_type in (EventType.EV_IPL, EventType.EV_EVENT_TAG):
        if pcr in (11, 12, 13):
            return "stub"
        if pcr == 14 and event_type == EventType.EV_IPL:
            return "shim"
        return "log"
    return "firmware"


# -- descriptions --------------------------------------------------------------------------------------

_VARIABLE_TYPES = frozenset({
    EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, EventType.EV_EFI_VARIABLE_BOOT, EventType.EV_EFI_VARIABLE_BOOT2,
    EventType.EV_EFI_VARIABLE_AUTHORITY,
})  # fmt: skip
_IMAGE_TYPES = {
    EventType.EV_EFI_BOOT_SERVICES_APPLICATION: "EFI application",
    EventType.EV_EFI_BOOT_SERVICES_DRIVER: "EFI boot services driver",
    EventType.EV_EFI_RUNTIME_SERVICES_DRIVER: "EFI runtime services driver",
}
_VENDORS = {
    EFI_GLOBAL_VARIABLE: "EFI global variable",
    EFI_IMAGE_SECURITY_DATABASE: "EFI image security database",
    SHIM_LOCK_GUID: "shim",
}
_TABLES = {
    uuid.UUID("eb9d2d31-2d88-11d3-9a16-0090273fc14d"): "SMBIOS",
    uuid.UUID("f2fd1544-9794-4a2c-992e-e5bbcf20e394"): "SMBIOS3",
    uuid.UUID("8868e871-e4f1-11d3-bc22-0080c73c8881"): "ACPI 2.0",
    uuid.UUID("eb9d2d30-2d88-11d3-9a16-0090273fc14d"): "ACPI 1.0",
}
#: EV_EVENT_TAG ids: systemd-stub (src/boot/measure.h) and the Linux EFI stub (drivers/firmware/efi/libstub).
_TAGS = {
    0x6C46F751: "devicetree addon",
    0x49DFFE0F: "initrd addon",
    0xDAC08E1A: "ucode addon",
    0x8F3B22EC: "Linux initrd",
    0x8F3B22ED: "Linux load options",
}


def describe_event(pcr: int, type: int, data: bytes, *, uintn_size: int = 8) -> str:
    """A one-line description of an event for people, decoded from its data (untrusted: every decoded string
    is made printable); the type's name when the data says nothing more. ``uintn_size`` is the firmware's
    UINTN width in bytes (4 or 8), needed for image load events and handoff tables."""
    _ = pcr  # the same type reads the same in every PCR; kept so callers need not know that
    try:
        text = _describe(type, data, uintn_size)
    except (ValueError, IndexError, struct.error, OverflowError):  # a malformed payload: say only the type
        text = ""
    text = text or event_type_name(type)
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def _describe(event_type: int, data: bytes, uintn: int) -> str:
    t = EventType
    if event_type in (t.EV_EFI_ACTION, t.EV_ACTION):
        return _ascii(data)
    if event_type == t.EV_SEPARATOR:
        return "separator" if data.count(0) == len(data) else "separator (error)"
    if event_type in _VARIABLE_TYPES:
        return _describe_variable(data)
    if event_type in _IMAGE_TYPES:
        return _image_path(data, uintn) or _IMAGE_TYPES[EventType(event_type)]
    if event_type == t.EV_IPL:
        return _text(data)
    if event_type == t.EV_EVENT_TAG:
        return _describe_tag(data)
    if event_type == t.EV_EFI_GPT_EVENT:
        return "GPT"
    if event_type == t.EV_POST_CODE:
        if len(data) == 16 and not _looks_like_text(data):
            return "POST code, " + _blob(data)
        return "POST code" + (f": {_ascii(data)}" if data else "")
    if event_type == t.EV_S_CRTM_VERSION:
        version = _text(data)
        return "S-CRTM version" + (f" {version}" if version else "")
    if event_type == t.EV_EFI_PLATFORM_FIRMWARE_BLOB:
        return "firmware blob, " + _blob(data)
    if event_type == t.EV_EFI_PLATFORM_FIRMWARE_BLOB2:  # u8 size, description, base u64, length u64
        name = _ascii(data[1 : 1 + data[0]])
        return f"firmware blob {name}, " + _blob(data[1 + data[0] :])
    if event_type == t.EV_EFI_HANDOFF_TABLES:
        return "EFI handoff tables" + _tables(data, uintn)
    if event_type == t.EV_EFI_HANDOFF_TABLES2:  # u8 size, description, then UEFI_HANDOFF_TABLE_POINTERS
        name = _ascii(data[1 : 1 + data[0]])
        return "EFI handoff tables" + (f": {name}" if name else _tables(data[1 + data[0] :], uintn))
    if event_type == t.EV_EFI_HCRTM_EVENT:
        return "H-CRTM"
    if event_type == t.EV_NO_ACTION:
        return _describe_no_action(data)
    return ""


def _ascii(data: bytes) -> str:
    """ASCII text (PFP: EV_EFI_ACTION and most strings), trailing NULs dropped, other bytes as ``\\xNN``."""
    cut = data[: MAX_DESCRIPTION * 4].rstrip(b"\0")
    return printable(cut.decode("ascii", "backslashreplace"))


def _text(data: bytes) -> str:
    """A string in UTF-16LE (systemd-stub, UEFI) when every other byte is NUL, else UTF-8 (grub, shim)."""
    cut = data[: MAX_DESCRIPTION * 4]
    if len(cut) >= 2 and len(cut) % 2 == 0 and cut[1::2].count(0) == len(cut) // 2:
        return printable(cut.decode("utf-16-le", "replace").rstrip("\0"))
    return printable(cut.rstrip(b"\0").decode("utf-8", "backslashreplace"))


def _looks_like_text(data: bytes) -> bool:
    stripped = data.rstrip(b"\0")
    return bool(stripped) and all(0x20 <= b < 0x7F for b in stripped)


def _blob(data: bytes) -> str:
    """UEFI_PLATFORM_FIRMWARE_BLOB: BlobBase u64, BlobLength u64 (PFP §10.4.3)."""
    base, length = struct.unpack_from("<QQ", data)
    return f"{length} bytes at 0x{base:x}"


def _variable(data: bytes) -> tuple[str, uuid.UUID, bytes] | None:
    """UEFI_VARIABLE_DATA (PFP §10.4.3): GUID, u64 name length (chars), u64 data length, UTF-16LE name,
    data; ``None`` when the lengths do not fit."""
    if len(data) < 32:
        return None
    vendor = uuid.UUID(bytes_le=data[:16])
    name_chars, value_size = struct.unpack_from("<QQ", data, 16)
    if name_chars > (len(data) - 32) // 2 or value_size > len(data) - 32 - 2 * name_chars:
        return None
    name = data[32 : 32 + 2 * name_chars].decode("utf-16-le", "replace")
    start = 32 + 2 * name_chars
    return name, vendor, data[start : start + value_size]


def _describe_variable(data: bytes) -> str:
    var = _variable(data)
    if var is None:
        return ""
    name, vendor, value = var
    text = f"{printable(name)} ({_VENDORS.get(vendor, str(vendor))})"
    if vendor == EFI_GLOBAL_VARIABLE and name == "SecureBoot" and len(value) == 1:
        text += ": enabled" if value[0] else ": disabled"
    elif vendor == EFI_GLOBAL_VARIABLE and name.startswith("Boot") and len(name) == 8 and len(value) > 6:
        label = _utf16z(value, 6)  # EFI_LOAD_OPTION: Attributes u32, FilePathListLength u16, Description
        text += f": {label}" if label else ""
    return text


def _utf16z(data: bytes, start: int) -> str:
    """The NUL-terminated UTF-16LE string at ``start`` (to the end of ``data`` without a NUL), printable."""
    end = start
    while end + 1 < len(data) and (data[end] or data[end + 1]) and end - start < MAX_DESCRIPTION * 2:
        end += 2
    return printable(data[start:end].decode("utf-16-le", "replace"))


def _image_path(data: bytes, uintn: int) -> str:
    """The file path of UEFI_IMAGE_LOAD_EVENT's device path (PFP §10.4.3: location u64, length, link address,
    device path length as UINTN, device path), e.g. ``\\EFI\\BOOT\\BOOTX64.EFI``; ``""`` without one."""
    header = 8 + 3 * uintn
    if len(data) < header:
        return ""
    path_size = int.from_bytes(data[8 + 2 * uintn : header], "little")
    path = data[header : header + min(path_size, len(data) - header)]
    parts: list[str] = []
    pos = nodes = 0
    while pos + 4 <= len(path) and nodes < 64:  # real paths have a handful of nodes
        nodes += 1  # EFI_DEVICE_PATH_PROTOCOL: type u8, subtype u8, length u16 (UEFI §10.3)
        node_type, subtype, length = (
            path[pos],
            path[pos + 1],
            int.from_bytes(path[pos + 2 : pos + 4], "little"),
        )
        if length < 4 or node_type == 0x7F and subtype == 0xFF:
            break
        node = path[pos + 4 : pos + length]
        if node_type == 4 and subtype == 4:  # media, file path: UTF-16 NUL-terminated
            name = _utf16z(node, 0)
            if parts and not parts[-1].endswith("\\") and not name.startswith("\\"):
                parts.append("\\")
            parts.append(name)
        elif node_type == 4 and subtype == 6 and len(node) >= 16:  # media, PIWG firmware file
            parts.append(f"FvFile({uuid.UUID(bytes_le=node[:16])})")
        pos += length
    return "".join(parts)


def _describe_tag(data: bytes) -> str:
    """TCG_PCClientTaggedEvent: taggedEventID u32, taggedEventDataSize u32, data (PFP §10.4.2)."""
    tag, size = struct.unpack_from("<II", data)
    text = _text(data[8 : 8 + size])
    if tag in _TAGS:  # their data is a description already (e.g. "Linux initrd")
        return text or _TAGS[tag]
    return f"event tag 0x{tag:08x}" + (f": {text}" if text else "")


def _tables(data: bytes, uintn: int) -> str:
    """UEFI_HANDOFF_TABLE_POINTERS: NumberOfTables UINTN, {VendorGuid, VendorTable pointer}… (PFP §10.4.3)."""
    count = int.from_bytes(data[:uintn], "little")
    entry = 16 + uintn
    if len(data) < uintn or count > (len(data) - uintn) // entry:
        return ""
    guids = [
        uuid.UUID(bytes_le=data[uintn + i * entry : uintn + i * entry + 16]) for i in range(min(count, 16))
    ]
    return ": " + ", ".join(_TABLES.get(g, str(g)) for g in guids) if guids else ""


def _describe_no_action(data: bytes) -> str:
    if _is_startup_locality(EventType.EV_NO_ACTION, data):
        return f"StartupLocality {data[-1]}"
    for signature in (b"SP800-155 Event", b"NvIndexInstance", b"NvIndexDynamic"):
        if data.startswith(signature):
            return signature.decode()
    return ""


def read_event_log(path: str | os.PathLike[str]) -> EventLog:
    """Parse the log at ``path``, reading no more than a log can be (so a huge file is refused, not read)."""
    if os.path.isdir(path):
        raise MeasureError(f"{os.fspath(path)} is a directory, not an event log", "give a file")
    # securityfs reports size 0: read, do not stat
    return parse_event_log(read_bounded(path, MAX_LOG_SIZE, MeasureError, "check the path"))
