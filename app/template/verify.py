"""Check an exported template end to end: GPT, ESP, signed UKIs, the signed catalog, LUKS2 headers.

What a template's consumer (or CI after ``shieldwright build``) runs before trusting it. Each check
reports instead of raising, so one damaged area never hides the others. Without trusted certificates a
failed :data:`SIGNER_CHECK` says the signer was NOT checked (a re-signed template passes every other
check), unless the caller accepts any signer. Only unreadable input raises.

The catalog checked is a file the caller gives, else the one in a VHDX's metadata, else the ESP's. When a
VHDX carries one and its ESP another, :data:`CATALOG_COPIES_CHECK` fails (saying so) and the VHDX's is
checked against the disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from app.boot.uki import uki_uname
from app.catalog.extract import vhdx_catalog
from app.catalog.format import ESP_CATALOG_PATH
from app.catalog.verify import verify_catalog
from app.disk import gpt
from app.disk.esp import UKI_DIR, EspFileMissingError, list_esp, read_esp_file
from app.disk.formats.raw import RawImage
from app.disk.image import DiskImage, open_image
from app.disk.layout import layout_of
from app.disk.model import DiskLayout, Partition, Role
from app.disk.partfile import copy_partition, readable_in_place
from app.errors import ShieldwrightError
from app.findings import Severity
from app.luks.container import read_header
from app.progress import CancelToken, NullProgress, Progress
from app.signing.authenticode import authenticode_digest, verify_pe
from app.tools import require_tool

MiB = 1024 * 1024

#: The name of the check that fails when no trusted certificate was given (see the module docstring).
SIGNER_CHECK = "Signer"
#: Present only for a VHDX that carries a catalog in its metadata and whose ESP holds a different one, or
#: whose metadata item is damaged: it always fails then.
CATALOG_COPIES_CHECK = "Catalog copies"
SIGNER_NOT_CHECKED = (
    "NOT checked: no trusted certificate was given, so a template whose catalog and UKIs anyone re-signed "
    "would pass every other check"
)


@dataclass(frozen=True)
class Check:
    """One verdict: ``name`` says what was checked ("GPT", "UKI \\EFI\\Linux\\x.efi"), ``detail`` why it
    passed or, for a failure, what is wrong (one line)."""

    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class TemplateReport:
    ok: bool
    checks: list[Check] = field(default_factory=list)
    path: str = ""

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "ok": self.ok, "checks": [c.to_dict() for c in self.checks]}


def verify_template(
    path: str | os.PathLike[str],
    *,
    vsc: str | os.PathLike[str] | None = None,
    trusted: Sequence[x509.Certificate] | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    jobs: int | None = None,
    accept_any_signer: bool = False,
) -> TemplateReport:
    """Run every check on the template at ``path`` (any supported image format); see the module doc.

    ``vsc``: a catalog file to check against instead of the one in the image (the VHDX metadata's, else the
    ESP's; see the module docstring). ``trusted``: certificates the
    UKI and catalog signers must be (or chain to); None checks the signatures but not who made them, and
    adds a failed :data:`SIGNER_CHECK` unless ``accept_any_signer``.
    """
    progress = progress or NullProgress()
    cancel = cancel or CancelToken()
    catalog_der = _read_vsc(Path(vsc)) if vsc is not None else None
    checks: list[Check] = []
    with open_image(path) as image:
        progress.begin("Checking the partition table", 1)
        layout = layout_of(image)
        checks.append(_check_gpt(image, layout))
        progress.update(1)
        cancel.check()
        copies: Check | None = None
        with tempfile.TemporaryDirectory(prefix="shieldwright-verify-") as tmp:
            # A raw template's ESP is read where it lies, and its copy for fsck.fat is made while the
            # catalog is hashed; any other format's ESP is copied out first, as every read needs it.
            esp, esp_check = _find_esp(image, layout)
            if esp is not None and not readable_in_place(image):
                esp, esp_check = _copy_esp(esp, Path(tmp), progress, cancel)
            try:
                if catalog_der is None:
                    catalog_der, where, copies = _catalog_from_image(image, esp)
                else:
                    where = f"from {vsc}"
                # The catalog (every protected block, all cores) runs while the ESP and the UKIs are
                # checked here, so the small checks add little to a verify's time (benchmarks/bench_vsc.py).
                hashing = cancel.child()
                with ThreadPoolExecutor(1, thread_name_prefix="verify-catalog") as pool:
                    catalog = pool.submit(
                        _check_catalog, image, catalog_der, where, trusted, progress, hashing, jobs
                    )
                    try:
                        if esp_check is None:  # a raw template's ESP, not yet checked
                            assert esp is not None
                            esp_check = _fsck_esp(esp, Path(tmp), cancel)
                        checks.append(esp_check)
                        checks += _check_ukis(esp, trusted, cancel)
                    except BaseException:
                        hashing.cancel()
                        raise
                    catalog_check = catalog.result()
            finally:
                if esp is not None and esp.image is not image:
                    esp.image.close()
        checks.append(catalog_check)
        if copies is not None:
            checks.append(copies)
        progress.begin("Checking the LUKS2 headers", 1)
        checks += _check_luks(image, layout)
        progress.update(1)
    if trusted is None and not accept_any_signer:
        checks.append(Check(SIGNER_CHECK, False, SIGNER_NOT_CHECKED))
    return TemplateReport(ok=all(c.ok for c in checks), checks=checks, path=str(path))


def _read_vsc(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise ShieldwrightError(f"{path} is a directory, not a catalog", "give the .vsc file") from None
    except OSError as exc:
        raise ShieldwrightError(f"cannot read {path}: {exc.strerror or exc}", "check the path") from None


# --- GPT --------------------------------------------------------------------------------------------------


def _check_gpt(image: DiskImage, layout: DiskLayout) -> Check:
    table = gpt.read_gpt(image)
    errors = [f.message for f in layout.findings if f.severity is Severity.ERROR]
    if not table.found:
        return Check("GPT", False, errors[0] if errors else "no GPT partition table")
    ss, total = table.sector_size, table.total_sectors
    # read_gpt reports a damaged backup only as a WARNING (a base image still works); a template must
    # ship both copies intact, so each copy is parsed on its own here, with read_gpt's own parser.
    primary = gpt.read_gpt_copy(image, 1, ss, total)
    backup = gpt.read_gpt_copy(image, total - 1, ss, total)
    problems = []
    if isinstance(primary, str):
        problems.append(f"primary GPT (LBA 1): {primary}")
    if isinstance(backup, str):
        problems.append(f"backup GPT (last LBA {total - 1}): {backup}")
    if not isinstance(primary, str) and not isinstance(backup, str):
        (p_head, p_array), (b_head, b_array) = primary, backup
        if p_head.disk_guid != b_head.disk_guid or p_array != b_array:
            problems.append("the backup GPT differs from the primary")
        elif p_head.backup_lba != total - 1 or b_head.backup_lba != 1:
            problems.append("the GPT copies do not point at each other")
    problems += [e for e in errors if not problems or "GPT" not in e]
    if problems:
        return Check("GPT", False, "; ".join(problems[:3]))
    warnings = [f.message for f in layout.findings if f.severity is Severity.WARNING]
    count = len(layout.partitions)
    detail = f"primary and backup valid and identical, disk GUID {table.disk_guid}, {count} partitions"
    if warnings:
        detail += f"; {len(warnings)} warning(s), first: {warnings[0]}"
    return Check("GPT", True, detail)


# --- ESP --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Esp:
    """Where the ESP is read: in the template itself (raw), or in a plain copy opened as a raw image
    whose one partition starts at 0, so the :mod:`app.disk.esp` readers use the copy directly."""

    image: DiskImage
    part: Partition
    sector_size: int


def _find_esp(image: DiskImage, layout: DiskLayout) -> tuple[_Esp | None, Check | None]:
    """The one ESP (its check still to run: None), or None and the failed check."""
    esps = [p for p in layout.partitions if p.role is Role.ESP]
    if len(esps) != 1:
        what = "no EFI System Partition" if not esps else f"{len(esps)} EFI System Partitions"
        return None, Check("ESP", False, f"the template has {what}; it needs exactly one")
    esp, ss = esps[0], layout.sector_size
    if esp.first_lba * ss + esp.size_bytes > image.virtual_size:
        return None, Check("ESP", False, f"partition {esp.number} extends past the end of the disk")
    return _Esp(image, esp, ss), None


def _copy_esp(esp: _Esp, tmp: Path, progress: Progress, cancel: CancelToken) -> tuple[_Esp, Check]:
    """The ESP copied out of a non-raw template (read from the copy from then on), and its check."""
    progress.begin(f"Checking the ESP (partition {esp.part.number})", 1)
    copy, check = _copy_and_fsck(esp, tmp, cancel)
    progress.update(1)
    moved = dataclasses.replace(esp.part, first_lba=0, last_lba=esp.part.last_lba - esp.part.first_lba)
    return _Esp(RawImage(copy), moved, esp.sector_size), check


def _fsck_esp(esp: _Esp, tmp: Path, cancel: CancelToken) -> Check:
    """The check of an ESP read in place: fsck.fat of a copy, removed after."""
    copy, check = _copy_and_fsck(esp, tmp, cancel)
    copy.unlink()
    return check


def _copy_and_fsck(esp: _Esp, tmp: Path, cancel: CancelToken) -> tuple[Path, Check]:
    offset = esp.part.first_lba * esp.sector_size
    copy = copy_partition(esp.image, offset, esp.part.size_bytes, tmp / "esp.img", cancel)
    clean, said = _fsck_fat(copy)
    return copy, Check("ESP", clean, f"partition {esp.part.number}: {said}")


def _fsck_fat(path: Path) -> tuple[bool, str]:
    """``fsck.fat -n`` (check only, never repair) on ``path``: (clean, what it said)."""
    fsck = require_tool("fsck.fat")
    proc = subprocess.run(
        [fsck, "-n", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        env={**os.environ, "LC_ALL": "C"},
        stdin=subprocess.DEVNULL,
    )
    noise = ("fsck.fat ", "Leaving filesystem unchanged.", str(path) + ":")
    said = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    summary = next((ln for ln in said if ln.startswith(str(path) + ":")), "")
    findings = [ln for ln in said if not ln.startswith(noise)]
    if proc.returncode == 0:
        return True, "fsck.fat -n finds no problems" + (
            f" ({summary.split(':', 1)[1].strip()})" if summary else ""
        )
    return False, "fsck.fat -n: " + (" ".join(findings[:3]) if findings else f"exit status {proc.returncode}")


# --- UKIs -------------------------------------------------------------------------------------------------


def _check_ukis(
    esp: _Esp | None, trusted: Sequence[x509.Certificate] | None, cancel: CancelToken
) -> list[Check]:
    if esp is None:
        return [Check("UKI", False, "no ESP to read UKIs from")]
    try:
        entries = list_esp(esp.image, esp.part, esp.sector_size)
    except ShieldwrightError as exc:
        return [Check("UKI", False, f"cannot list the ESP: {exc.message}")]
    ukis = [
        e.path
        for e in entries
        if not e.is_dir and e.path.lower().startswith("/efi/linux/") and e.path.lower().endswith(".efi")
        and e.path.count("/") == 3
    ]  # fmt: skip
    if not ukis:
        return [Check("UKI", False, f"no UKI in {UKI_DIR}: nothing for shim or the firmware to boot")]
    checks = []
    for uki_path in ukis:
        cancel.check()
        name = "UKI " + uki_path.replace("/", "\\")
        data = read_esp_file(esp.image, esp.part, esp.sector_size, uki_path)
        ok, detail = _uki_verdict(data, trusted)
        checks.append(Check(name, ok, detail))
    return checks


def _uki_verdict(data: bytes, trusted: Sequence[x509.Certificate] | None) -> tuple[bool, str]:
    try:
        kernel = uki_uname(data)
        results = verify_pe(data, trusted)
    except ShieldwrightError as exc:
        return False, exc.message
    if not results:
        return False, "not signed: Secure Boot firmware will refuse to start it"
    valid = [r for r in results if r.valid]
    if not valid:
        return False, f"signature does not verify: {results[0].reason}"
    first = valid[0].info
    signer = first.subject or "an unnamed signer"
    trust = "trusted" if trusted is not None else "signer not checked: no trusted certificate given"
    uname = f", kernel {kernel}" if kernel else ""
    # A valid signature's digest is the image's own, computed once by verify_pe.
    digest = first.signed_digest if first.digest_algorithm == "sha256" else None
    sha256 = (digest or authenticode_digest(data)).hex()
    return True, f"signed by {signer} ({trust}){uname}, Authenticode SHA-256 {sha256}"


# --- catalog ----------------------------------------------------------------------------------------------


def _catalog_from_image(image: DiskImage, esp: _Esp | None) -> tuple[bytes | None, str, Check | None]:
    """The catalog to check, where it came from, and a failed :data:`CATALOG_COPIES_CHECK` when the VHDX
    metadata's copy is damaged or differs from the ESP's."""
    esp_der, esp_where = _catalog_from_esp(esp)
    try:
        der = vhdx_catalog(image)
    except ShieldwrightError as exc:
        return esp_der, esp_where, Check(CATALOG_COPIES_CHECK, False, exc.message)
    if der is None:
        return esp_der, esp_where, None
    if esp_der is None:
        return der, f"from the VHDX metadata (the ESP has none: {esp_where})", None
    if esp_der == der:
        return der, "from the VHDX metadata (the ESP holds the same catalog)", None
    differ = Check(
        CATALOG_COPIES_CHECK,
        False,
        f"the catalog in the VHDX metadata (SHA-256 {hashlib.sha256(der).hexdigest()}) differs from "
        f"{ESP_CATALOG_PATH} in the ESP (SHA-256 {hashlib.sha256(esp_der).hexdigest()}): one of them was "
        "replaced; the VHDX metadata's was checked against the disk",
    )
    return der, "from the VHDX metadata", differ


def _catalog_from_esp(esp: _Esp | None) -> tuple[bytes | None, str]:
    if esp is None:
        return None, "no ESP to read the catalog from; give the catalog file"
    try:
        return read_esp_file(esp.image, esp.part, esp.sector_size, ESP_CATALOG_PATH), "from the ESP"
    except EspFileMissingError:
        return None, f"no {ESP_CATALOG_PATH} in the ESP; give the catalog file"
    except ShieldwrightError as exc:
        return None, f"cannot read {ESP_CATALOG_PATH} from the ESP: {exc.message}"


def _check_catalog(
    image: DiskImage,
    der: bytes | None,
    where: str,
    trusted: Sequence[x509.Certificate] | None,
    progress: Progress,
    cancel: CancelToken,
    jobs: int | None,
) -> Check:
    if der is None:
        return Check("Catalog", False, where)
    result = verify_catalog(image, der, trusted=trusted, progress=progress, cancel=cancel, jobs=jobs)
    if not result.ok:
        if result.problems:
            return Check("Catalog", False, f"{where}: " + "; ".join(result.problems[:3]))
        m = result.mismatches[0]
        return Check(
            "Catalog",
            False,
            f"{where}: {result.mismatch_count} block(s) differ from the catalog; first: partition "
            f"{m.partition_number} at byte offset {m.byte_offset}",
        )
    assert result.signed is not None
    cat = result.signed.catalog
    numbers = ", ".join(str(p.number) for p in cat.partitions)
    trust = "trusted" if trusted is not None else "signer not checked: no trusted certificate given"
    return Check(
        "Catalog",
        True,
        f"{where}: {cat.template_name} {cat.template_version} signed by {result.signed.signer_subject} "
        f"({trust}); all {result.blocks_checked} blocks of partition(s) {numbers} match",
    )


# --- LUKS2 ------------------------------------------------------------------------------------------------


def _check_luks(image: DiskImage, layout: DiskLayout) -> list[Check]:
    checks = []
    for part in layout.partitions:
        start, size = part.first_lba * layout.sector_size, part.size_bytes
        if part.role is Role.ESP or start + size > image.virtual_size:
            continue  # the ESP is never encrypted; a partition past the end is the GPT check's finding
        name = f"LUKS2 partition {part.number}"
        if part.content == "luks1":
            checks.append(Check(name, False, "a LUKS1 container: templates use LUKS2 (TPM2 tokens need it)"))
            continue

        def read(offset: int, length: int, start: int = start, size: int = size) -> bytes:
            if offset < 0 or length < 0 or offset + length > size:
                raise ValueError("the LUKS2 header points past the end of the partition")
            return image.read(start + offset, length)

        try:
            header = read_header(read)
        except ShieldwrightError as exc:
            if part.content == "luks2":  # it says LUKS2 at the start, yet no usable header: damaged
                checks.append(Check(name, False, exc.message))
            continue  # not a LUKS container at all (with both header copies gone it cannot be told apart)
        if header.problems:
            checks.append(Check(name, False, "; ".join(header.problems)))
            continue
        checks.append(
            Check(
                name,
                True,
                f"both header copies valid; UUID {header.uuid}, {len(header.keyslots)} keyslot(s), "
                f"{header.encryption}, {header.sector_size}-byte sectors, "
                f"data at {header.data_offset // MiB} MiB",
            )
        )
    if not checks:
        checks.append(
            Check(
                "LUKS2",
                False,
                "no partition holds a LUKS2 container: a template's protected partitions are encrypted",
            )
        )
    return checks
