"""Which systemd-stub is inside a UKI, and which sections that version measures into PCR 11.

The PCR 11 prediction must follow the stub that will actually run: the list of measured sections grew
over time, and a section a stub does not know is simply not measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.boot.errors import PcrPredictionError
from app.boot.peimage import PeImage
from app.untrusted import shortened

#: Longest version text a marker may carry. Real ones are short (``257.9-1~bpo12+1``, a distro's
#: ``252-46.el9_5.2``); a longer one is not taken as a marker, so a hostile stub cannot make us convert
#: thousands of digits (int() refuses more than 4300) or print kilobytes of "version".
MAX_VERSION_LENGTH = 64
#: Digits of a major version we convert; systemd's are three digits, this leaves room without overflow.
_MAJOR_DIGITS = 9
#: The ``.sdmagic`` marker (src/boot/efi/stub.c): ``#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####``.
MAGIC = re.compile(
    rb"#### LoaderInfo: (?P<kind>systemd-(?:stub|boot|addon)) (?P<version>[^ \0]{1,%d}) ####"
    % MAX_VERSION_LENGTH
)

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
        """The leading number of the version, None when there is none (or it is absurdly long)."""
        return _major(self.version, allow_prefix=False)

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
    shown = shortened(str(version), MAX_VERSION_LENGTH)
    if major is None:
        raise PcrPredictionError(
            f"cannot read a systemd version from {shortened(repr(version), MAX_VERSION_LENGTH)}",
            "give e.g. 252 or 255",
        )
    if major < MEASURED_SECTIONS[0][0]:
        raise PcrPredictionError(
            f"systemd-stub {shown} measures no UKI sections into PCR 11 (that began with systemd 252)",
            "build the UKI with systemd-stub 252 or newer",
        )
    return [sections for first, sections in MEASURED_SECTIONS if first <= major][-1]


def _major(version: str, *, allow_prefix: bool = True) -> int | None:
    """The leading major number (``"v255"``, ``" 252.39-1"`` when ``allow_prefix``), else None.

    At most :data:`_MAJOR_DIGITS` digits: ``--stub-version`` is user text and a marker's version is the
    input's, and int() of 5000 digits is a ValueError (Python's 4300-digit limit), not "unknown"."""
    pattern = r"\s*v?(\d+)" if allow_prefix else r"(\d+)"
    m = re.match(pattern, version)
    if m is None or len(m.group(1)) > _MAJOR_DIGITS:
        return None
    return int(m.group(1))
