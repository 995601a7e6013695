"""What shim ≥ 15.8 writes to its SbatLevel variable, and so measures into PCR 7.

Shim carries two SBAT revocation levels in its ``.sbatlevel`` section (rhboot/shim sbat_var.S):
``u32 version (0) ‖ u32 previous ‖ u32 latest`` — offsets counted from the end of the version field —
then NUL-terminated strings. With no ``SbatPolicy`` variable set shim applies "previous" when the stored
SbatLevel is older or absent (sbat.c ``set_sbat_uefi_variable``), then measures the variable's contents
as EV_EFI_VARIABLE_AUTHORITY (SbatLevel, SHIM_LOCK). A store already holding a newer level keeps it:
the prediction assumes a fresh NVRAM, as a new VM from the template has.
"""

from __future__ import annotations

import struct

from app.boot.peimage import read_pe
from app.errors import PeFormatError
from app.measure.events import MeasureError

_MAX_LEVEL = 4096


def _long_name(image: bytes, name: str) -> str:
    """A section name, resolving ``/N`` (offset N in the COFF string table: PE/COFF spec, Section Table)
    — how linkers name sections longer than 8 bytes, as shim's ``.sbatlevel``."""
    if not name.startswith("/") or not name[1:].isdigit():
        return name
    (pe_offset,) = struct.unpack_from("<I", image, 0x3C)
    symbols, count = struct.unpack_from("<II", image, pe_offset + 4 + 8)
    start = symbols + 18 * count + int(name[1:])
    end = image.find(b"\0", start, start + 64)
    return image[start:end].decode("ascii", errors="replace") if 0 < start < end else name


def sbat_levels(shim: bytes, what: str) -> tuple[bytes, bytes]:
    """(previous, latest) SbatLevel strings of a shim, without their NUL."""
    try:
        pe = read_pe(shim)
    except PeFormatError as exc:
        raise MeasureError(f"{what}: {exc.message}", exc.hint) from None
    section = next((s for s in pe.sections if _long_name(shim, s.name) == ".sbatlevel"), None)
    if section is None:
        raise MeasureError(
            f"{what} has no .sbatlevel section (shim older than 15.8?)", "only shim 16 or newer is predicted"
        )
    data = pe.file_data_of(section)
    if len(data) < 12:
        raise MeasureError(f"{what}: .sbatlevel is too short", "the shim binary is damaged")
    version, previous, latest = struct.unpack_from("<III", data)
    if version != 0:
        raise MeasureError(f"{what}: .sbatlevel version {version} is unknown", "only version 0 is known")

    def string(offset: int) -> bytes:
        start = 4 + offset
        end = data.find(b"\0", start, start + _MAX_LEVEL)
        if start >= len(data) or end < 0:
            raise MeasureError(f"{what}: .sbatlevel offset {offset} is out of range", "the shim is damaged")
        return data[start:end]

    return string(previous), string(latest)


def sbat_level(shim: bytes, what: str) -> bytes:
    """The SbatLevel a fresh NVRAM holds after this shim first ran: its "previous" level."""
    return sbat_levels(shim, what)[0]
