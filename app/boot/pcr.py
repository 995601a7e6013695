"""PCR 11 prediction for UKIs, replicating systemd-measure byte for byte.

The measured sections depend on the stub's version (:mod:`app.boot.stub`); the algorithm is systemd's
``measure_kernel``/``measure_phase`` (src/boot/measure.c), see :func:`pcr11_from_sections`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

from app.boot.errors import PcrPredictionError
from app.boot.peimage import MappedSection, read_pe
from app.boot.stub import UNPREDICTABLE, measured_sections
from app.boot.uki import UkiInfo, inspect_uki

#: TPM 2.0 banks systemd-measure supports, with their digest sizes.
BANK_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
#: Their TPM_ALG_IDs (TPM 2.0 Part 2 §6.3), as event logs and TPM commands name them.
TPM_ALG_IDS = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}
BANKS = tuple(BANK_SIZES)
#: The kernel value, then systemd-measure's default phase paths (its ``arg_phase`` default).
DEFAULT_PHASES = (
    "",
    "enter-initrd",
    "enter-initrd:leave-initrd",
    "enter-initrd:leave-initrd:sysinit",
    "enter-initrd:leave-initrd:sysinit:ready",
)
#: Words systemd-pcrextend measures (ukify's KNOWN_PHASES); others are accepted if they look like words.
KNOWN_PHASE_WORDS = ("enter-initrd", "leave-initrd", "sysinit", "ready", "shutdown", "final")
_WORD = re.compile(r"[a-z0-9][a-z0-9._-]*")


def _bank(bank: str) -> str:
    name = bank.lower().replace("-", "")
    if name not in BANK_SIZES:
        raise PcrPredictionError(f"unknown PCR bank {bank!r}", f"use one of {', '.join(BANKS)}")
    return name


def zero(bank: str) -> str:
    """The reset value of a PCR in ``bank`` (all zeros), as hex."""
    return "00" * BANK_SIZES[_bank(bank)]


def extend_digest(bank: str, value_hex: str, digest: bytes) -> str:
    """TPM2_PCR_Extend: ``H(value || digest)``. ``digest`` must already be a ``bank`` digest (an event's
    measured hash, e.g. an Authenticode digest for PCR 4)."""
    bank = _bank(bank)
    if len(digest) != BANK_SIZES[bank]:
        raise ValueError(f"a {bank} digest is {BANK_SIZES[bank]} bytes, not {len(digest)}")
    value = bytes.fromhex(value_hex)
    if len(value) != BANK_SIZES[bank]:
        raise ValueError(f"a {bank} PCR value is {BANK_SIZES[bank]} bytes, not {len(value)}")
    return hashlib.new(bank, value + digest).hexdigest()


def extend(bank: str, value_hex: str, data: bytes | MappedSection) -> str:
    """Measure ``data``: extend ``H(data)`` into ``value_hex`` (how the stub and pcrextend measure)."""
    bank = _bank(bank)
    digest = data.digest(bank) if isinstance(data, MappedSection) else hashlib.new(bank, data).digest()
    return extend_digest(bank, value_hex, digest)


def normalize_phase(path: str) -> str:
    """systemd-measure's ``normalize_phase``: drop empty words, so ``":"`` and ``""`` both mean no phase."""
    words = [w for w in path.split(":") if w]
    for w in words:
        if not _WORD.fullmatch(w):
            raise PcrPredictionError(f"bad boot phase word {w!r} in {path!r}",
                                     f"phase words are e.g. {', '.join(KNOWN_PHASE_WORDS)}")  # fmt: skip
    return ":".join(words)


def pcr11_from_sections(
    sections: Mapping[str, bytes | MappedSection],
    order: Sequence[str],
    *,
    banks: Sequence[str] = ("sha256",),
    phases: Sequence[str] = DEFAULT_PHASES,
) -> dict[str, dict[str, str]]:
    """PCR 11 per bank and phase path, measuring ``sections`` (name → mapped bytes) in ``order``.

    A :class:`MappedSection` is hashed without materialising its zero fill.

    From an all-zero PCR, for each section in the stub's order (not file order), skipping absent and empty
    ones: extend ``H(name + "\\0")``, then ``H(contents)`` (the section's VirtualSize bytes). That is the
    value when the kernel starts (phase path ``""``). systemd then extends ``H(word)`` (UTF-8, no NUL) for
    each word of a phase path ``enter-initrd:leave-initrd:…``, each path starting from the kernel value.
    """
    paths = [normalize_phase(p) for p in phases]
    result: dict[str, dict[str, str]] = {}
    for bank in dict.fromkeys(_bank(b) for b in banks):
        value = zero(bank)
        for name in order:
            contents = sections.get(name)
            if not contents:
                continue
            value = extend(bank, value, name.encode() + b"\0")
            value = extend(bank, value, contents)
        per_phase: dict[str, str] = {}
        for path in paths:
            v = value
            for word in path.split(":") if path else ():
                v = extend(bank, v, word.encode())
            per_phase[path] = v
        result[bank] = per_phase
    return result


def uki_measurements(uki: UkiInfo, *, stub_version: str | None = None) -> list[tuple[str, MappedSection]]:
    """The sections the UKI's stub measures into PCR 11, in its order, absent and empty ones left out:
    (name, mapped contents). Each is extended as ``H(name NUL)`` then ``H(contents)``.

    The measured sections follow the stub's version as found in the UKI, or ``stub_version`` when given
    (for vendor builds that backport). PcrPredictionError when they cannot be known.
    """
    if stub_version is None:
        if uki.stub is None or uki.stub.kind != "systemd-stub":
            raise PcrPredictionError(
                "cannot tell which sections this UKI's stub measures: it has no systemd-stub version marker",
                "give the stub's systemd version explicitly",
            )
        stub_version = uki.stub.version
    order = measured_sections(stub_version)
    pe = read_pe(uki.data)
    names = [s.name for s in pe.sections]
    for name in order:
        if names.count(name) > 1:
            raise PcrPredictionError(f"the UKI has {names.count(name)} {name} sections",
                                     "a UKI has each measured section once")  # fmt: skip
        if name in UNPREDICTABLE and name in names:
            raise PcrPredictionError(
                f"the UKI has a {name} section, whose measurement depends on the machine it boots on",
                "PCR 11 prediction supports UKIs without profiles, automatic DTBs, HWIDs and firmware",
            )
    sections = {s.name: pe.mapped(s) for s in pe.sections if s.name in order}
    return [(name, sections[name]) for name in order if sections.get(name)]


def predict_pcr11(
    uki: bytes | bytearray | UkiInfo,
    banks: Sequence[str] = ("sha256",),
    phases: Sequence[str] = DEFAULT_PHASES,
    *,
    stub_version: str | None = None,
) -> dict[str, dict[str, str]]:
    """PCR 11 after the UKI's stub runs (phase ``""``) and after each phase path, per bank.

    ``uki`` is the UKI's bytes or an :class:`app.boot.uki.UkiInfo`; see :func:`uki_measurements`.
    """
    info = uki if isinstance(uki, UkiInfo) else inspect_uki(bytes(uki))
    measured = uki_measurements(info, stub_version=stub_version)
    return pcr11_from_sections(dict(measured), [n for n, _ in measured], banks=banks, phases=phases)
