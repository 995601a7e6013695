"""OVMF variable stores (``OVMF_VARS*.fd``): read, edit and write the firmware's non-volatile variables.

The file is an edk2 firmware volume (PI 1.8 vol. 3 §3.2.1 ``EFI_FIRMWARE_VOLUME_HEADER``, FileSystemGuid
``EFI_SYSTEM_NV_DATA_FV_GUID``) laid out by OvmfPkg/VarStore.fdf.inc::

    FV header (+ block map) ‖ VARIABLE_STORE_HEADER ‖ variable records … 0xFF … ‖ event log ‖
    fault-tolerant-write working block ‖ FTW spare area

Records are ``AUTHENTICATED_VARIABLE_HEADER`` + UTF-16LE name + data (edk2
MdeModulePkg/Include/Guid/VariableFormat.h). The firmware never rewrites a record in place: an update
appends a new copy and marks the old one deleted, so a store a running OVMF wrote holds superseded
copies; reading keeps only the current ones. Writing compacts (as edk2's reclaim does): current records
only, the rest of the store 0xFF; every byte after the store (event log, FTW areas) is kept as it was.
"""

from __future__ import annotations

import os
import struct
import uuid
from dataclasses import dataclass

from app.measure.events import EFI_IMAGE_SECURITY_DATABASE, MeasureError
from app.measure.secureboot import OPTIONAL_DATABASES, POLICY_VARIABLES, SecureBootVariables
from app.untrusted import read_bounded

#: FileSystemGuid of a variable store FV (edk2 MdePkg/Include/Guid/SystemNvDataGuid.h).
EFI_SYSTEM_NV_DATA_FV_GUID = uuid.UUID("fff12b8d-7696-4c8b-a985-2747075b4f50")
#: VARIABLE_STORE_HEADER.Signature of a store of authenticated records (edk2 AuthenticatedVariableFormat.h).
EFI_AUTHENTICATED_VARIABLE_GUID = uuid.UUID("aaf32c78-947b-439a-a180-2e144ec37792")
#: The same for the older store without authentication fields (gEfiVariableGuid), which we do not write.
EFI_VARIABLE_GUID = uuid.UUID("ddcf3616-3275-4164-98b6-fe85707ffe7d")
#: SecureBootEnable (OvmfPkg / SecurityPkg SecureBootConfigDxe): the user's "enforce" switch.
SECURE_BOOT_ENABLE_GUID = uuid.UUID("f0a30bc7-af08-4556-99c4-001009c93a44")

# EFI_FIRMWARE_VOLUME_HEADER up to the block map: ZeroVector[16], FileSystemGuid, FvLength u64,
# Signature "_FVH", Attributes u32, HeaderLength u16, Checksum u16, ExtHeaderOffset u16, Reserved u8,
# Revision u8; then EFI_FV_BLOCK_MAP_ENTRY {NumBlocks u32, Length u32}… ended by {0, 0}.
FV_HEADER = struct.Struct("<16s16sQ4sIHHHBB")
FV_CHECKSUM_OFFSET = 50
FV_BLOCK = struct.Struct("<II")
FV_SIGNATURE = b"_FVH"
# VARIABLE_STORE_HEADER: Signature GUID, Size u32, Format u8, State u8, Reserved u16, Reserved1 u32.
STORE_HEADER = struct.Struct("<16sIBBHI")
VARIABLE_STORE_FORMATTED = 0x5A
VARIABLE_STORE_HEALTHY = 0xFE
# AUTHENTICATED_VARIABLE_HEADER: StartId u16, State u8, Reserved u8, Attributes u32, MonotonicCount u64,
# TimeStamp EFI_TIME (16 bytes), PubKeyIndex u32, NameSize u32, DataSize u32, VendorGuid.
VAR_HEADER = struct.Struct("<HBBIQ16sIII16s")
VARIABLE_DATA = 0x55AA
# Record states: bits are cleared one by one as flash allows (VariableFormat.h).
VAR_HEADER_VALID_ONLY = 0x7F
VAR_ADDED = 0x3F
VAR_IN_DELETED_TRANSITION = 0xFE
VAR_DELETED = 0xFD
#: An update in progress: the old copy is marked this before its replacement is written. It is current
#: only when no VAR_ADDED copy exists (edk2 VariableParsing.c ``FindVariableEx``).
VAR_ADDED_IN_TRANSITION = VAR_ADDED & VAR_IN_DELETED_TRANSITION
#: Records start on 4-byte boundaries; name and data follow the header unpadded on x86 (``HEADER_ALIGN``,
#: ``ALIGNMENT`` 1 in VariableFormat.h).
HEADER_ALIGNMENT = 4

# Attributes (UEFI 2.10 §8.2).
EFI_VARIABLE_NON_VOLATILE = 0x01
EFI_VARIABLE_BOOTSERVICE_ACCESS = 0x02
EFI_VARIABLE_RUNTIME_ACCESS = 0x04
EFI_VARIABLE_HARDWARE_ERROR_RECORD = 0x08
EFI_VARIABLE_AUTHENTICATED_WRITE_ACCESS = 0x10
EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS = 0x20
EFI_VARIABLE_APPEND_WRITE = 0x40
EFI_VARIABLE_ENHANCED_AUTHENTICATED_ACCESS = 0x80
#: Short names, as ``firmware show`` prints them.
ATTRIBUTE_NAMES = {
    0x01: "NV",
    0x02: "BS",
    0x04: "RT",
    0x08: "HR",
    0x10: "AW",
    0x20: "AT",
    0x40: "AP",
    0x80: "EA",
}
#: PK, KEK, db, dbx: non-volatile, boot and runtime, time-based authenticated (UEFI §32.3.1).
SECURE_BOOT_ATTRIBUTES = (
    EFI_VARIABLE_NON_VOLATILE
    | EFI_VARIABLE_BOOTSERVICE_ACCESS
    | EFI_VARIABLE_RUNTIME_ACCESS
    | EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS
)
#: An EFI_TIME of all zeros: the timestamp of variables we create, so output is reproducible and any
#: later signed update is newer.
ZERO_TIME = bytes(16)
#: The largest file we read: OVMF's are 128 KiB to 4 MiB (a combined OVMF.fd included).
MAX_FILE_SIZE = 16 * 1024 * 1024
_HINT = "give an OVMF variable store (OVMF_VARS*.fd); this one is damaged or of another kind"


@dataclass(frozen=True)
class Variable:
    """One UEFI variable as stored: ``timestamp`` is the raw 16-byte EFI_TIME (zeros unless authenticated)."""

    name: str
    vendor: uuid.UUID
    attributes: int
    data: bytes
    timestamp: bytes = ZERO_TIME
    monotonic_count: int = 0
    pubkey_index: int = 0

    @property
    def key(self) -> tuple[str, uuid.UUID]:
        return (self.name, self.vendor)


def attribute_names(attributes: int) -> str:
    """``NV|BS|RT|AT`` for 0x27; unknown bits as hex."""
    names = [n for bit, n in ATTRIBUTE_NAMES.items() if attributes & bit]
    rest = attributes & ~sum(ATTRIBUTE_NAMES)
    return "|".join(names + ([f"0x{rest:x}"] if rest else [])) or "-"


class VarStore:
    """An OVMF variable store: ``variables`` (current values, in store order) over the original bytes.

    Edit with :meth:`set`, :meth:`append` and :meth:`delete`; :meth:`to_bytes` writes a store of the same
    size with the same FV header (checksum recomputed) and the same bytes after the variable area.
    """

    def __init__(
        self,
        image: bytes,
        store_offset: int,
        store_size: int,
        variables: dict[tuple[str, uuid.UUID], Variable],
    ):
        self._image = image
        self._store_offset = store_offset
        self._store_size = store_size
        self.variables = variables

    @property
    def capacity(self) -> int:
        """Bytes available for variable records (the store minus its header)."""
        return self._store_size - STORE_HEADER.size

    def used(self) -> int:
        """Bytes the current variables take when written."""
        return len(self._records())

    def get(self, name: str, vendor: uuid.UUID) -> Variable | None:
        return self.variables.get((name, vendor))

    def set(self, variable: Variable) -> None:
        """Add ``variable`` or replace the variable of the same name and vendor (keeping its place)."""
        _check_variable(variable)
        self.variables[variable.key] = variable

    def append(
        self, name: str, vendor: uuid.UUID, data: bytes, attributes: int = SECURE_BOOT_ATTRIBUTES
    ) -> Variable:
        """Append ``data`` to a variable's value, or create it with ``attributes``: what an
        EFI_VARIABLE_APPEND_WRITE does to db. An existing variable keeps its attributes and timestamp (edk2
        moves the timestamp only forward on append, and ours has no time to offer)."""
        old = self.get(name, vendor)
        if old is None:
            new = Variable(name, vendor, attributes, bytes(data))
        else:
            new = Variable(
                name,
                vendor,
                old.attributes,
                old.data + data,
                old.timestamp,
                old.monotonic_count,
                old.pubkey_index,
            )
        self.set(new)
        return new

    def delete(self, name: str, vendor: uuid.UUID) -> bool:
        """Remove a variable; False when there was none."""
        return self.variables.pop((name, vendor), None) is not None

    def _records(self) -> bytes:
        out = bytearray()
        for var in self.variables.values():
            _check_variable(var)
            name = (var.name + "\0").encode("utf-16-le")
            out += VAR_HEADER.pack(
                VARIABLE_DATA, VAR_ADDED, 0, var.attributes, var.monotonic_count, var.timestamp,
                var.pubkey_index, len(name), len(var.data), var.vendor.bytes_le,
            )  # fmt: skip
            out += name + var.data
            out += b"\xff" * (-len(out) % HEADER_ALIGNMENT)
        return bytes(out)

    def to_bytes(self) -> bytes:
        """The store with the current variables, as large as the input; MeasureError if they do not fit."""
        records = self._records()
        if len(records) > self.capacity:
            raise MeasureError(
                f"the variables need {len(records)} bytes; the variable store holds {self.capacity}",
                "enroll fewer or smaller certificates, or start from a larger store",
            )
        start = self._store_offset + STORE_HEADER.size
        end = self._store_offset + self._store_size
        image = bytearray(self._image)
        image[start:end] = records + b"\xff" * (self.capacity - len(records))
        # The FV header (its length is where the store starts) sums to 0 with its Checksum field.
        struct.pack_into("<H", image, FV_CHECKSUM_OFFSET, 0)
        checksum = -_sum16(image[: self._store_offset]) & 0xFFFF
        struct.pack_into("<H", image, FV_CHECKSUM_OFFSET, checksum)
        return bytes(image)


def _sum16(data: bytes | bytearray) -> int:
    """Sum of the little-endian 16-bit words, modulo 2**16 (the FV header checksum, PI vol. 3 §3.2.1)."""
    words: tuple[int, ...] = struct.unpack(f"<{len(data) // 2}H", data)
    return sum(words) & 0xFFFF


def _check_variable(var: Variable) -> None:
    """What a record can hold: a non-empty UTF-16 name without NUL, a 16-byte EFI_TIME, fields in range."""
    hint = "a UEFI variable name is non-empty UTF-16 without NUL"
    if not var.name or "\0" in var.name:
        raise MeasureError(f"invalid variable name {var.name!r}", hint)
    try:
        var.name.encode("utf-16-le")
    except UnicodeEncodeError:
        raise MeasureError(f"invalid variable name {var.name!r}", hint) from None
    if len(var.timestamp) != 16 or not (
        0 <= var.attributes < 2**32 and 0 <= var.monotonic_count < 2**64 and 0 <= var.pubkey_index < 2**32
    ):
        raise MeasureError(f"variable {var.name!r} has a field out of range", "check the Variable's values")


def read_varstore(source: bytes | str | os.PathLike[str]) -> VarStore:
    """Parse an OVMF variable store from a file or its bytes.

    Strict: the FV header (signature, GUID, length, block map, checksum), the store header (authenticated
    format, formatted and healthy) and every record (start id, sizes inside the store, a NUL-terminated
    UTF-16 name) are checked, and after the last record the store must be erased (0xFF). Any fault is a
    one-line :class:`MeasureError` with its offset. Deleted and superseded copies are skipped, so a store a
    running OVMF wrote reads as its current values.
    """
    if isinstance(source, bytes | bytearray):
        image, label = bytes(source), "the variable store"
    else:
        image, label = _read(source), os.fspath(source)
    if len(image) > MAX_FILE_SIZE:
        raise MeasureError(f"{label}: {len(image)} bytes is too large for a variable store", _HINT)
    if len(image) < FV_HEADER.size + FV_BLOCK.size * 2:
        raise MeasureError(f"{label}: {len(image)} bytes is too short for a firmware volume header", _HINT)
    _zero, fs_guid, fv_length, signature, _attrs, header_length, _csum, ext_offset, _res, revision = (
        FV_HEADER.unpack_from(image)
    )
    if signature != FV_SIGNATURE:
        raise MeasureError(f"{label}: no firmware volume signature '_FVH' at offset 40", _HINT)
    if uuid.UUID(bytes_le=fs_guid) != EFI_SYSTEM_NV_DATA_FV_GUID:
        raise MeasureError(
            f"{label}: the firmware volume at offset 0 is not a variable store "
            f"(FileSystemGuid {uuid.UUID(bytes_le=fs_guid)})",
            "give the VARS file (OVMF_VARS*.fd), not the CODE file",
        )
    if fv_length > len(image) or fv_length < FV_HEADER.size:
        raise MeasureError(f"{label}: FvLength {fv_length} does not fit the {len(image)}-byte file", _HINT)
    if header_length % 2 or not FV_HEADER.size + 2 * FV_BLOCK.size <= header_length <= fv_length:
        raise MeasureError(f"{label}: FV HeaderLength {header_length} is invalid", _HINT)
    if revision != 2:
        raise MeasureError(f"{label}: FV header revision {revision} is not 2", _HINT)
    if ext_offset != 0:
        raise MeasureError(
            f"{label}: an FV extension header (offset {ext_offset}) is not expected here", _HINT
        )
    if _sum16(image[:header_length]):
        raise MeasureError(f"{label}: the firmware volume header checksum is wrong", _HINT)
    _check_block_map(image, header_length, fv_length, label)

    store_offset = header_length
    if fv_length - store_offset < STORE_HEADER.size:
        raise MeasureError(f"{label}: no room for a variable store header at offset {store_offset}", _HINT)
    store_guid, store_size, store_format, store_state, _r0, _r1 = STORE_HEADER.unpack_from(
        image, store_offset
    )
    if uuid.UUID(bytes_le=store_guid) != EFI_AUTHENTICATED_VARIABLE_GUID:
        kind = (
            "an unauthenticated store" if uuid.UUID(bytes_le=store_guid) == EFI_VARIABLE_GUID else "unknown"
        )
        raise MeasureError(
            f"{label}: the variable store at offset {store_offset} is {kind}, not an authenticated one",
            "give a Secure Boot capable OVMF VARS file",
        )
    if not STORE_HEADER.size <= store_size <= fv_length - store_offset:
        raise MeasureError(
            f"{label}: variable store Size {store_size} does not fit the firmware volume", _HINT
        )
    if store_format != VARIABLE_STORE_FORMATTED or store_state != VARIABLE_STORE_HEALTHY:
        raise MeasureError(
            f"{label}: the variable store is not formatted and healthy "
            f"(Format 0x{store_format:02x}, State 0x{store_state:02x})",
            _HINT,
        )
    variables = _read_records(image, store_offset + STORE_HEADER.size, store_offset + store_size, label)
    return VarStore(image, store_offset, store_size, variables)


def _read(path: str | os.PathLike[str]) -> bytes:
    return read_bounded(path, MAX_FILE_SIZE, MeasureError, "check the path")


def _check_block_map(image: bytes, header_length: int, fv_length: int, label: str) -> None:
    """The block map ends with {0, 0} inside the header and its blocks add up to FvLength."""
    total = 0
    for pos in range(FV_HEADER.size, header_length - FV_BLOCK.size + 1, FV_BLOCK.size):
        blocks, length = FV_BLOCK.unpack_from(image, pos)
        if blocks == 0 and length == 0:
            if total != fv_length:
                raise MeasureError(
                    f"{label}: the FV block map covers {total} bytes, not FvLength {fv_length}", _HINT
                )
            return
        total += blocks * length
    raise MeasureError(f"{label}: the FV block map has no terminating entry", _HINT)


def _read_records(image: bytes, start: int, end: int, label: str) -> dict[tuple[str, uuid.UUID], Variable]:
    added: dict[tuple[str, uuid.UUID], tuple[int, Variable]] = {}
    in_transition: dict[tuple[str, uuid.UUID], tuple[int, Variable]] = {}
    pos = start
    while end - pos >= VAR_HEADER.size:
        (start_id, state, _res, attributes, count, timestamp, pubkey_index, name_size, data_size,
         vendor) = VAR_HEADER.unpack_from(image, pos)  # fmt: skip
        if start_id != VARIABLE_DATA:
            break
        where = f"{label}: variable record at offset {pos}"
        body = end - pos - VAR_HEADER.size
        if name_size > body or data_size > body - name_size:
            raise MeasureError(
                f"{where}: NameSize {name_size} + DataSize {data_size} run past the store end at {end}", _HINT
            )
        name_at = pos + VAR_HEADER.size
        data_at = name_at + name_size
        if state in (VAR_ADDED, VAR_ADDED_IN_TRANSITION):
            var = Variable(
                _decode_name(image[name_at:data_at], where), uuid.UUID(bytes_le=vendor), attributes,
                image[data_at : data_at + data_size], timestamp, count, pubkey_index,
            )  # fmt: skip
            table = added if state == VAR_ADDED else in_transition
            if var.key in table:
                raise MeasureError(f"{where}: a second current copy of variable {var.name!r}", _HINT)
            table[var.key] = (pos, var)
        pos = data_at + data_size
        pos += -pos % HEADER_ALIGNMENT
    tail = image[min(pos, end) : end]
    if tail.count(0xFF) != len(tail):
        raise MeasureError(f"{label}: unexpected bytes after the last variable record (offset {pos})", _HINT)
    for key, item in in_transition.items():
        added.setdefault(key, item)
    return {key: var for key, (_pos, var) in sorted(added.items(), key=lambda kv: kv[1][0])}


def _decode_name(raw: bytes, where: str) -> str:
    if len(raw) < 2 or len(raw) % 2 or raw[-2:] != b"\0\0":
        raise MeasureError(f"{where}: the name is not a NUL-terminated UTF-16 string", _HINT)
    try:
        text = raw[:-2].decode("utf-16-le")
    except UnicodeDecodeError:
        raise MeasureError(f"{where}: the name is not valid UTF-16", _HINT) from None
    if not text or "\0" in text:
        raise MeasureError(f"{where}: the name is empty or holds a NUL", _HINT)
    return text


def secure_boot_state(store: VarStore) -> SecureBootVariables:
    """The Secure Boot policy the store boots with: PK, KEK, db, dbx (and dbt/dbr) as stored.

    ``SecureBoot`` itself is not in the store: it is a volatile variable OVMF derives at every boot (edk2
    SecurityPkg/Library/AuthVariableLib/AuthVariableLib.c ``AuthVariableLibInitialize``). With PK present
    the platform is in user mode, otherwise in setup mode; SecureBoot is 1 only in user mode with the
    non-volatile ``SecureBootEnable`` switch (SECURE_BOOT_ENABLE_GUID) at 1 — OVMF creates it as 1 when
    it is missing in user mode, and deletes it in setup mode. ``CustomMode`` does not enter: OVMF resets
    it to standard mode at each boot.
    """
    values = {n: store.get(n, vendor) for n, vendor in POLICY_VARIABLES.items()}
    pk = values["PK"]
    enable = store.get("SecureBootEnable", SECURE_BOOT_ENABLE_GUID)
    user_mode = pk is not None
    secure_boot = user_mode and (enable is None or enable.data[:1] == b"\x01")
    extra = {
        n: v.data for n in OPTIONAL_DATABASES if (v := store.get(n, EFI_IMAGE_SECURITY_DATABASE)) is not None
    }
    return SecureBootVariables(
        secure_boot=secure_boot,
        pk=pk.data if pk else b"",
        kek=values["KEK"].data if values["KEK"] else b"",
        db=values["db"].data if values["db"] else b"",
        dbx=values["dbx"].data if values["dbx"] else b"",
        extra=extra,
    )
