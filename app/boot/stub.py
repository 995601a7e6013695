"""Which systemd-stub is inside a UKI, and which sections that version measures into PCR 11.

The PCR 11 prediction must follow the stub that will actually run: the list of measured sections grew
over time, and a section a stub does not know is simply not measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.boot.errors import PcrPredictionError
from app.boot.peimage import PeImage

#: The ``.sdmagic`` marker (src/boot/efi/stub.c): ``#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####``.
MAGIC = re.compile(rb"#### LoaderInfo: (?P<kind>systemd-(?:stub|boot|addon)) (?P<version>[^ \0]+) ####")

_BASE = (".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb")
#: (first systemd version, measured sections in measurement order), newest last. The order is the stub's
#: ``UnifiedSection`` enum (src/fundamental/tpm-pcr.h, later uki.h; ``.pcrsig`` is never measured). 252
#: began measuring (systemd#24146); 254 added ``.uname`` (#27358) and ``.sbat`` (#28187); 256 ``.ucode``
#: (#31872); 257 ``.profile .dtbauto .hwids``; 258 ``.efifw``.
MEASURED_SECTIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (252, (*_BASE, ".pcrpkey")),
    (254, (*_BASE, ".uname", ".sbat", ".pcrpkey")),
    (256, (".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname", ".sbat",
           ".pcrpkey")),
    (257, (".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname", ".sbat",
           ".pcrpkey", ".profile", ".dtbauto", ".hwids")),
    (258, (".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname", ".sbat",
           ".pcrpkey", ".profile", ".dtbauto", ".hwids", ".efifw")),
)  # fmt: skip
#: Measured by some stub, but in a way a static prediction cannot follow (profile choice, DTB matching
#: against the running hardware, firmware blobs chosen by HWID). UKIs holding them are refused.
UNPREDICTABLE = (".profile", ".dtbauto", ".hwids", ".efifw")


@dataclass(frozen=True)
class StubInfo:
    """The stub's self-description from its LoaderInfo marker."""

    kind: str  # "systemd-stub" (or "systemd-boot"/"systemd-addon" when someone passed the wrong file)
    version: str  # e.g. "252.39-1~deb12u2"

    @property
    def major(self) -> int | None:
        m = re.match(r"\d+", self.version)
        return int(m.group()) if m else None

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "version": self.version, "major": self.major}


def detect_stub(pe: PeImage) -> StubInfo | None:
    """The LoaderInfo marker from ``.sdmagic``, else from anywhere in the stub's own sections."""
    sdmagic = pe.section(".sdmagic")
    # File data only: the marker is text, never in a section's zero fill.
    candidates = [pe.file_data_of(sdmagic)] if sdmagic else []
    candidates += [pe.file_data_of(s) for s in pe.sections if s.name not in (".linux", ".initrd", ".sdmagic")]
    for blob in candidates:
        m = MAGIC.search(blob)
        if m:
            return StubInfo(m.group("kind").decode(), m.group("version").decode("ascii", errors="replace"))
    return None


def measured_sections(version: str | int) -> tuple[str, ...]:
    """The sections a systemd-stub of ``version`` measures into PCR 11, in its measurement order.

    Distributions backport (RHEL 9's "252" measures ``.uname`` and ``.sbat``), so callers may pass the
    version explicitly instead of the one :func:`detect_stub` found.
    """
    major = version if isinstance(version, int) else _major(version)
    if major is None:
        raise PcrPredictionError(f"cannot read a systemd version from {version!r}", "give e.g. 252 or 255")
    if major < MEASURED_SECTIONS[0][0]:
        raise PcrPredictionError(
            f"systemd-stub {version} measures no UKI sections into PCR 11 (that began with systemd 252)",
            "build the UKI with systemd-stub 252 or newer",
        )
    return [sections for first, sections in MEASURED_SECTIONS if first <= major][-1]


def _major(version: str) -> int | None:
    m = re.match(r"\s*v?(\d+)", version)
    return int(m.group(1)) if m else None
