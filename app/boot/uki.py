"""Unified Kernel Images: build one from a systemd-stub and its parts, sign it, and inspect any UKI.

The build follows systemd's ukify (``make_uki``, ``pe_add_sections``), so what we make is what the stub
and systemd-measure expect; :func:`build_uki` lists the rules.
"""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from app.boot.errors import UkiError
from app.boot.kernel import KernelInfo, inspect_kernel
from app.boot.peimage import NewSection, PeImage, append_sections, read_pe
from app.boot.stub import StubInfo, detect_stub, measured_sections
from app.errors import PeFormatError, ShieldwrightError, ToolMissingError
from app.signing.authenticode import SignatureInfo, authenticode_digest, list_signatures, sign_pe
from app.signing.signer import Signer

#: The stub the host's systemd-boot-efi package installs (systemd 252 on Debian 12).
HOST_STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
SBAT_HEADER = "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md"
#: ukify's default extra SBAT entry for a UKI.
DEFAULT_SBAT = "uki,1,UKI,uki,1,https://uapi-group.org/specifications/specs/unified_kernel_image/"
MACHINE_X86_64 = 0x8664
#: ukify's section order for a profile-less UKI.
SECTION_ORDER = (".osrel", ".cmdline", ".dtb", ".uname", ".splash", ".pcrpkey", ".initrd", ".linux", ".sbat")
_STUB_HINT = f"give a systemd-stub, such as {HOST_STUB}"


@dataclass
class UkiInputs:
    """Everything a UKI is built from. ``stub=None`` means the host's stub, ``uname=None`` "detect"."""

    linux: bytes
    initrds: list[bytes] = field(default_factory=list)
    cmdline: str = ""
    os_release: str = ""
    stub: bytes | None = None
    uname: str | None = None
    sbat: str | None = None  # extra SBAT entries (with or without the "sbat,1,…" header); None: ukify's
    splash: bytes | None = None
    dtb: bytes | None = None
    pcrpkey: bytes | None = None
    #: Sections the stub already has that ours may replace (besides .sbat, which is always merged).
    replace: frozenset[str] = frozenset()


def host_stub() -> bytes:
    """The host's systemd-stub; a missing package is a ToolMissingError."""
    try:
        return HOST_STUB.read_bytes()
    except FileNotFoundError:
        raise ToolMissingError(
            f"{HOST_STUB} is not installed", "run `make setup` (package systemd-boot-efi)"
        ) from None
    except OSError as exc:
        raise ShieldwrightError(f"cannot read {HOST_STUB}: {exc.strerror}", "check its permissions") from None


def read_stub(data: bytes) -> tuple[PeImage, StubInfo]:
    """Parse and check a stub: a PE32+ x86-64 image carrying a systemd-stub marker, not signed."""
    try:
        pe = read_pe(data)
    except PeFormatError as exc:
        raise UkiError(f"the stub is not a valid PE image: {exc.message}", _STUB_HINT) from None
    if pe.signed:
        raise UkiError("the stub is signed; refusing to build on it",
                       "use the unsigned stub: the finished UKI is signed as a whole")  # fmt: skip
    if pe.machine != MACHINE_X86_64:
        raise UkiError(f"the stub is for machine type {pe.machine:#06x}, not x86-64", _STUB_HINT)
    if pe.section(".linux") is not None:
        raise UkiError("the stub already holds a kernel (.linux): it is a UKI, not a stub", _STUB_HINT)
    info = detect_stub(pe)
    if info is None or info.kind != "systemd-stub":
        what = info.kind if info else "no systemd-stub version marker (.sdmagic)"
        raise UkiError(f"the stub is not a systemd-stub ({what})", _STUB_HINT)
    return pe, info


def build_uki(inputs: UkiInputs, *, signer: Signer | None = None) -> bytes:
    """The UKI's bytes (signed with ``signer`` when given); :class:`UkiError` for unusable inputs.

    As ukify: sections in :data:`SECTION_ORDER` (file order does not matter for PCR 11, the stub measures
    in its own order); an empty section is left out (the stub and systemd-measure treat it as absent);
    several initrds are each padded to 4 bytes and concatenated, one is taken as is, none is allowed;
    ``.uname`` defaults to the kernel's setup-header version; ``.sbat`` merges the stub's, the kernel's and
    ours under one header (:func:`merge_sbat`). Texts are UTF-8 without a terminating NUL, and a NUL inside
    one is refused (the stub would cut the command line there, and the measured bytes would no longer be
    what the kernel sees). A signed stub is refused; a section the stub already has is refused unless
    ``inputs.replace`` names it (``.sbat`` is always replaced).
    """
    stub, _ = read_stub(inputs.stub if inputs.stub is not None else host_stub())
    kernel = inspect_kernel(inputs.linux)
    for name, text in (("command line", inputs.cmdline), ("os-release", inputs.os_release),
                       ("uname", inputs.uname or "")):  # fmt: skip
        if "\0" in text:
            raise UkiError(
                f"the {name} contains a NUL character", "remove it; the stub would cut the text there"
            )
    for i, initrd in enumerate(inputs.initrds, 1):
        if not initrd:
            raise UkiError(f"initrd {i} is empty", "give a real initrd (a cpio archive) or leave it out")
    if inputs.splash is not None and inputs.splash[:2] != b"BM":
        raise UkiError("the splash image is not a BMP file", "convert it to BMP (the stub only shows BMP)")
    if inputs.dtb is not None and inputs.dtb[:4] != b"\xd0\x0d\xfe\xed":
        raise UkiError("the devicetree is not a flattened devicetree blob (.dtb)", "compile it with dtc")
    uname = inputs.uname if inputs.uname is not None else kernel.uname
    contents = {
        ".osrel": inputs.os_release.encode(),
        ".cmdline": inputs.cmdline.encode(),
        ".dtb": inputs.dtb or b"",
        ".uname": (uname or "").encode(),
        ".splash": inputs.splash or b"",
        ".pcrpkey": inputs.pcrpkey or b"",
        ".initrd": join_initrds(inputs.initrds),
        ".linux": inputs.linux,
        ".sbat": merge_sbat(stub, inputs.linux, inputs.sbat).encode(),
    }
    new = [
        NewSection(name, contents[name], code=name == ".linux") for name in SECTION_ORDER if contents[name]
    ]
    unsigned = append_sections(stub, new, replace_existing={".sbat", *inputs.replace})
    if signer is None:
        return unsigned
    return sign_pe(unsigned, signer, name="the UKI")


def join_initrds(initrds: list[bytes]) -> bytes:
    """ukify's ``join_initrds``: one initrd as is; several each padded to 4 bytes, then concatenated."""
    if len(initrds) == 1:
        return initrds[0]
    return b"".join(i + bytes(-len(i) % 4) for i in initrds)


def _sbat_entries(text: str, where: str) -> list[str]:
    """The entries of an SBAT text (its ``sbat,`` header line dropped), each checked for six fields."""
    lines = [ln.strip() for ln in text.replace("\0", "").splitlines() if ln.strip()]
    if lines and lines[0].startswith("sbat,"):
        lines = lines[1:]
    for line in lines:
        fields = line.split(",")
        if len(fields) < 6 or not fields[0] or not fields[1].isdigit():
            raise UkiError(f"bad SBAT entry in {where}: {line!r}",
                           "each line is component,generation,vendor,package,version,url")  # fmt: skip
    return lines


def merge_sbat(stub: PeImage, linux: bytes, extra: str | None) -> str:
    """ukify's ``merge_sbat``: one header, the stub's and kernel's entries, then ours; ends ``\\n\\0``."""
    entries: list[str] = []
    sources = [stub]
    with contextlib.suppress(PeFormatError):  # a kernel without an EFI stub has no .sbat to merge
        sources.append(read_pe(linux))
    for pe in sources:
        section = pe.section(".sbat")
        if section is None:
            continue
        text = pe.file_data_of(section).rstrip(b"\0").decode("utf-8", errors="replace")
        if text.startswith("sbat,"):
            entries += _sbat_entries(text, "the stub" if pe is stub else "the kernel")
    if extra is None:
        entries.append(DEFAULT_SBAT)
    else:
        entries += _sbat_entries(extra, "the SBAT text")
    return SBAT_HEADER + "\n" + "\n".join(entries) + "\n\0"


# ------------------------------------------------------------------------------------------------
# Inspect
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UkiSection:
    """A section as the loader maps it. ``sha256`` covers exactly ``virtual_size`` bytes (zero-filled past
    the raw data): the bytes the stub measures and ``objdump -h`` reports as the section's size."""

    name: str
    virtual_address: int
    virtual_size: int
    raw_size: int
    file_offset: int
    sha256: str
    measured: bool | None  # measured into PCR 11 by this UKI's stub; None when the stub is unknown

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "virtual_address": self.virtual_address,
            "virtual_size": self.virtual_size,
            "raw_size": self.raw_size,
            "file_offset": self.file_offset,
            "sha256": self.sha256,
            "measured": self.measured,
        }


@dataclass(frozen=True)
class UkiInfo:
    """What ``inspect_uki`` learns. ``data`` is the UKI itself, kept for PCR prediction (not in to_dict)."""

    size: int
    sections: tuple[UkiSection, ...]
    stub: StubInfo | None
    kernel: KernelInfo | None  # None when .linux is not a bzImage (then the UKI cannot boot via our stub)
    cmdline: str | None
    os_release: str | None
    os_release_fields: dict[str, str]
    uname: str | None
    sbat: str | None
    authenticode_sha256: str
    signatures: tuple[dict[str, object], ...]
    data: bytes = field(repr=False, compare=False)

    def section(self, name: str) -> UkiSection | None:
        return next((s for s in self.sections if s.name == name), None)

    def section_data(self, name: str) -> bytes | None:
        """The mapped bytes of the first section called ``name`` (what the stub measures)."""
        pe = read_pe(self.data)
        s = pe.section(name)
        return pe.data_of(s) if s else None

    def to_dict(self) -> dict[str, object]:
        return {
            "size": self.size,
            "stub": self.stub.to_dict() if self.stub else None,
            "sections": [s.to_dict() for s in self.sections],
            "cmdline": self.cmdline,
            "os_release": {"raw": self.os_release, "fields": self.os_release_fields},
            "uname": self.uname,
            "sbat": self.sbat,
            "kernel": self.kernel.to_dict() if self.kernel else None,
            "authenticode_sha256": self.authenticode_sha256,
            "signatures": list(self.signatures),
        }


def _uki_pe(data: bytes) -> PeImage:
    pe = read_pe(data)
    if pe.section(".linux") is None:
        raise UkiError("not a UKI: the image has no .linux section", "give a unified kernel image (.efi)")
    return pe


def uki_uname(data: bytes) -> str | None:
    """A UKI's ``.uname`` (None without one), with :func:`inspect_uki`'s errors but none of its hashing:
    what a check that verifies the signature anyway needs (``shieldwright verify``)."""
    pe = _uki_pe(data)
    s = pe.section(".uname")
    return pe.file_data_of(s).decode("utf-8", errors="replace") if s else None


def inspect_uki(data: bytes) -> UkiInfo:
    """Describe a UKI; PeFormatError for a broken PE, UkiError for a PE without ``.linux``."""
    pe = _uki_pe(data)
    linux = pe.section(".linux")
    assert linux is not None
    stub = detect_stub(pe)
    measured: tuple[str, ...] | None = None
    if stub is not None and stub.kind == "systemd-stub":
        try:
            measured = measured_sections(stub.version)
        except UkiError:
            measured = ()
    sections = []
    for s in pe.sections:
        mapped = pe.mapped(s)  # hashed without allocating the zero fill
        sections.append(UkiSection(
            name=s.name, virtual_address=s.virtual_address, virtual_size=s.virtual_size,
            raw_size=s.size_of_raw_data, file_offset=s.pointer_to_raw_data,
            sha256=mapped.digest("sha256").hex(),
            measured=None if measured is None else bool(mapped) and s.name in measured,
        ))  # fmt: skip

    def text(name: str) -> str | None:
        # The zero fill past the file data is NULs, no text: leave it out rather than decode it.
        s = pe.section(name)
        return pe.file_data_of(s).decode("utf-8", errors="replace") if s else None

    try:
        kernel = inspect_kernel(pe.file_data_of(linux))
    except UkiError:
        kernel = None
    os_release = text(".osrel")
    sbat = text(".sbat")
    return UkiInfo(
        size=len(data),
        sections=tuple(sections),
        stub=stub,
        kernel=kernel,
        cmdline=text(".cmdline"),
        os_release=os_release,
        os_release_fields=parse_os_release(os_release or ""),
        uname=text(".uname"),
        sbat=sbat.rstrip("\0") if sbat is not None else None,
        authenticode_sha256=authenticode_digest(data).hex(),
        signatures=tuple(_signature_dict(s) for s in list_signatures(data)),
        data=data,
    )


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5) ``KEY=value`` lines, shell quoting removed; malformed lines are skipped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        try:
            parts = shlex.split(value, comments=False, posix=True)
        except ValueError:
            continue
        fields[key.strip()] = " ".join(parts)
    return fields


def _signature_dict(sig: SignatureInfo) -> dict[str, object]:
    return {
        "index": sig.index,
        "subject": sig.subject,
        "issuer": sig.issuer,
        "serial": f"{sig.serial:x}" if sig.serial is not None else None,
        "digest_algorithm": sig.digest_algorithm,
        "digest_matches": sig.digest_matches,
        "signing_time": sig.signing_time.isoformat() if sig.signing_time else None,
        "error": sig.error,
    }
