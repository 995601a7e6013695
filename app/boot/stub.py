"""Which systemd-stub is inside a UKI, and which sections that version measures into PCR 11.

The PCR 11 prediction must follow the stub that will actually run: the list of measured sections grew
over time, and a section a stub does not know is simply not measured. The version comes from the stub's
``.sdmagic`` section, ``#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####`` (``DECLARE_NOALLOC_SECTION
(".sdmagic", "#### LoaderInfo: systemd-stub " GIT_VERSION " ####")`` in src/boot/efi/stub.c).

Measured sections per version, in the stub's measurement order (the ``UnifiedSection`` enum of
src/fundamental/tpm-pcr.h, later uki.h; ``.pcrsig`` is in the enum but never measured):

* 252, 253: ``.linux .osrel .cmdline .initrd .splash .dtb .pcrpkey`` — PR systemd#24146 introduced PCR 11
  measurements in 252; systemd-measure 252 (``--help``) accepts exactly these sections.
* 254, 255: ``.uname`` and ``.sbat`` added before ``.pcrsig`` — PR systemd#27358 (.uname, May 2023) and
  PR systemd#28187 (.sbat, June 2023), both released in v254.
* 256: ``.ucode`` after ``.initrd`` — PR systemd#31872 (April 2024).
* 257: ``.profile``, ``.dtbauto``, ``.hwids`` after ``.pcrpkey`` (multi-profile UKIs, automatic DTBs).
* 258: ``.efifw``.

Caveat: distributions backport. RHEL 9's "252" has ``.uname`` and ``.sbat`` in its enum
(redhat-plumbers/systemd-rhel9 src/fundamental/tpm-pcr.h), so a vendor build can measure more than its
upstream number says. Callers can pass an explicit version to override the detected one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.boot.errors import PcrPredictionError
from app.boot.peimage import PeImage

MAGIC = re.compile(rb"#### LoaderInfo: (?P<kind>systemd-(?:stub|boot|addon)) (?P<version>[^ \0]+) ####")

_BASE = (".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb")
#: (first systemd version, measured sections in measurement order), newest last.
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
    """The sections a systemd-stub of ``version`` measures into PCR 11, in its measurement order."""
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
