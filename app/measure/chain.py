"""The boot chain of a template, found from its ESP exactly as firmware and shim follow it.

Firmware boots the removable-media path ``\\EFI\\BOOT\\BOOTX64.EFI`` (a template has no boot entries yet).
That file is either a UKI (booted directly), or shim. Shim started from ``\\EFI\\BOOT`` runs the fallback
``fbx64.efi`` beside it, which reads ``\\EFI\\<vendor>\\BOOTX64.CSV``, creates a boot entry
``\\EFI\\<vendor>\\<loader>`` with the CSV's load option, and resets when a TPM is present (rhboot/shim
fallback.c), so the boot that counts is the next one: firmware → ``\\EFI\\<vendor>\\shimx64.efi`` → the UKI
the load option names. Anything else (GRUB, systemd-boot, a shim without fallback) is refused: we would
be guessing what it loads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.boot.errors import UkiError
from app.boot.peimage import read_pe
from app.boot.stub import detect_stub
from app.boot.uki import UkiInfo, inspect_uki
from app.disk.esp import EspFileMissingError, list_esp, normalize_path, read_esp_file
from app.disk.formats.raw import RawImage
from app.disk.image import DiskImage, open_image
from app.disk.layout import layout_of
from app.disk.model import Partition, Role
from app.disk.partfile import partition_file
from app.errors import PeFormatError
from app.measure.events import MeasureError
from app.untrusted import printable

REMOVABLE_PATH = "\\EFI\\BOOT\\BOOTX64.EFI"
FALLBACK_NAME = "fbx64.efi"
#: The oldest shim whose measurements we model: 16 loads a UKI's inner kernel itself, unmeasured
#: (rhboot/shim 16.0 loader protocol); older shims let firmware measure it into PCR 4 (formats.md §3.3).
MIN_SHIM_MAJOR = 16
_SHIM_VERSION = re.compile(rb"\$Version: ([0-9][0-9A-Za-z.+~-]{0,40}) \$")


@dataclass(frozen=True)
class BootApp:
    """One EFI application the firmware or shim loads: where it is, its bytes, and what it is."""

    path: str  # ESP path with backslashes, e.g. \EFI\debian\shimx64.efi
    data: bytes
    kind: str  # "shim" | "uki"
    version: str = ""  # shim's version, the stub's systemd version
    uki: UkiInfo | None = None

    @property
    def label(self) -> str:
        return f"{self.path} ({self.kind} {self.version})" if self.version else f"{self.path} ({self.kind})"


@dataclass(frozen=True)
class BootChain:
    """The applications of the measured boot, in load order, and how they were found."""

    apps: tuple[BootApp, ...]
    notes: tuple[str, ...]

    @property
    def uki(self) -> BootApp:
        return self.apps[-1]

    @property
    def shim(self) -> BootApp | None:
        return next((a for a in self.apps if a.kind == "shim"), None)

    def to_dict(self) -> dict[str, object]:
        return {
            "apps": [{"path": a.path, "kind": a.kind, "version": a.version} for a in self.apps],
            "notes": list(self.notes),
        }


def find_boot_chain(template: str | Path) -> BootChain:
    """The boot chain of the template image at ``template`` (any format the disk layer reads)."""
    with open_image(template) as image:
        layout = layout_of(image)
        esps = [p for p in layout.partitions if p.role is Role.ESP]
        if len(esps) != 1:
            raise MeasureError(f"{template} has {len(esps)} EFI System Partitions",
                               "the boot chain is found in the template's one ESP")  # fmt: skip
        with open_esp(image, esps[0], layout.sector_size) as esp:
            return chain_from_esp(esp)


class EspReader:
    """An ESP as firmware will find it: the FAT's files, with ``planned`` (ESP path → bytes) written over
    them — so a build predicts its chain before it writes anything. FAT is case-insensitive: paths are
    matched in :func:`app.disk.esp.normalize_path` form, lower-cased."""

    def __init__(
        self, image: DiskImage, part: Partition, sector_size: int, planned: dict[str, bytes] | None = None
    ) -> None:
        self.image, self.part, self.sector_size = image, part, sector_size
        self.planned = {_key(p): data for p, data in (planned or {}).items()}
        self._paths: dict[str, str] | None = None

    def files(self) -> dict[str, str]:
        """Lower-cased path (``/efi/boot/bootx64.efi``) → the path as stored."""
        if self._paths is None:
            entries = list_esp(self.image, self.part, self.sector_size)
            self._paths = {e.path.lower(): e.path for e in entries if not e.is_dir}
            self._paths.update({p: p for p in self.planned})
        return self._paths

    def find(self, path: str) -> str | None:
        return self.files().get(_key(path))

    def read(self, path: str, missing: str = "", hint: str = "the template's ESP is incomplete") -> bytes:
        """The file at ``path``; MeasureError ``missing`` (default: that it is missing) when there is none."""
        if self.find(path) is None:
            raise MeasureError(missing or f"the ESP has no {path}", hint)
        if _key(path) in self.planned:
            return self.planned[_key(path)]
        try:
            return read_esp_file(self.image, self.part, self.sector_size, path)
        except EspFileMissingError as exc:
            raise MeasureError(exc.message, hint) from None


def _key(path: str) -> str:
    return normalize_path(path).lower()


@contextlib.contextmanager
def open_esp(
    image: DiskImage, part: Partition, sector_size: int, planned: dict[str, bytes] | None = None
) -> Iterator[EspReader]:
    """An :class:`EspReader` on ``part`` of ``image``. Every read is an mtools run on a file: the ESP of
    a raw image is read in place, any other format's is copied out once for all of them."""
    with partition_file(image, part, sector_size) as (path, offset):
        view = RawImage(path)
        try:
            first = offset // sector_size
            moved = dataclasses.replace(
                part, first_lba=first, last_lba=first + part.last_lba - part.first_lba
            )
            yield EspReader(view, moved, sector_size, planned)
        finally:
            view.close()


def chain_from_esp(esp: EspReader) -> BootChain:
    """The chain firmware and shim follow through ``esp`` (see the module doc)."""
    first = esp.read(
        REMOVABLE_PATH,
        f"the ESP has no {REMOVABLE_PATH}, the path firmware boots a new disk from",
        "install shim there, or build with boot.install_removable",
    )
    kind, version = classify(first, REMOVABLE_PATH)
    if kind == "uki":
        return BootChain((_uki_app(REMOVABLE_PATH, first),), ("firmware boots the UKI directly",))
    if esp.find("\\EFI\\BOOT\\" + FALLBACK_NAME) is None:
        raise MeasureError(
            f"{REMOVABLE_PATH} is shim, but \\EFI\\BOOT has no {FALLBACK_NAME}",
            "without fallback shim loads GRUB; install shim's fallback (shim-helpers)",
        )
    csvs = sorted(
        p
        for p in esp.files().values()
        if re.fullmatch(r"/efi/[^/]+/bootx64\.csv", p.lower()) and not p.lower().startswith("/efi/boot/")
    )
    if len(csvs) != 1:
        found = ", ".join(csvs) or "none"
        raise MeasureError(
            f"shim's fallback would read {len(csvs)} BOOTX64.CSV files ({found})",
            "a template installs exactly one, in shim's vendor directory",
        )
    vendor_dir = csvs[0].rsplit("/", 1)[0]
    loader, option = parse_fallback_csv(esp.read(csvs[0]), csvs[0])
    loader_path = f"{vendor_dir}/{loader}".replace("/", "\\")
    shim_data = esp.read(
        loader_path,
        f"{csvs[0]} names {loader_path}, which the ESP does not hold",
        "install shim in its vendor directory",
    )
    kind2, shim_version = classify(shim_data, loader_path)
    if kind2 != "shim":
        raise MeasureError(f"{loader_path} is not shim", "the fallback CSV must name shim")
    _check_shim_version(shim_version, loader_path)
    uki_path = option.replace("/", "\\")
    uki_data = esp.read(
        uki_path, f"the fallback entry's load option names {uki_path}, which the ESP does not hold",
        "check the UKI path in BOOTX64.CSV",
    )  # fmt: skip
    uki = _uki_app(uki_path, uki_data)
    shim = BootApp(loader_path, shim_data, "shim", shim_version)
    notes = (
        f"firmware boots {REMOVABLE_PATH} (shim {version}); its fallback creates a boot entry from "
        f"{csvs[0].replace('/', chr(92))} and resets; the next boot measures {loader_path} then {uki_path}",
    )
    return BootChain((shim, uki), notes)


def classify(data: bytes, path: str) -> tuple[str, str]:
    """``("uki", stub version)`` or ``("shim", version)``; anything else cannot be predicted."""
    try:
        pe = read_pe(data)
    except PeFormatError as exc:
        raise MeasureError(f"{path} is not an EFI application: {exc.message}", "check the ESP") from None
    if pe.section(".linux") is not None:
        try:
            info = inspect_uki(data)
        except UkiError as exc:
            raise MeasureError(f"{path}: {exc.message}", exc.hint) from None
        return "uki", info.stub.version if info.stub else ""
    sbat_section = pe.section(".sbat")
    sbat = pe.file_data_of(sbat_section).split(b"\0", 1)[0] if sbat_section else b""
    components = {line.split(b",", 1)[0] for line in sbat.splitlines()}
    if b"shim" in components:
        m = _SHIM_VERSION.search(data)
        return "shim", m.group(1).decode() if m else ""
    marker = detect_stub(pe)
    what = marker.kind if marker is not None else ("grub" if b"grub" in components else None)
    described = f"{what}, which" if what else "an EFI application whose choice of what to load"
    raise MeasureError(
        f"{path} is {printable(described)} we cannot predict",
        "boot a UKI directly, or shim with its fallback and a BOOTX64.CSV",
    )


def _check_shim_version(version: str, path: str) -> None:
    m = re.match(r"(\d+)", version)
    if m is None or int(m.group(1)) < MIN_SHIM_MAJOR:
        raise MeasureError(
            f"{path} is shim {printable(version) or '(version unknown)'}: only shim {MIN_SHIM_MAJOR} or "
            "newer is predicted",
            "older shims let firmware measure the UKI's kernel as well; install a current shim",
        )


def parse_fallback_csv(data: bytes, path: str) -> tuple[str, str]:
    """(loader file name, load option) from a BOOTX64.CSV (UCS-2 with BOM; shim README.fallback)."""
    if len(data) > 64 * 1024 or len(data) % 2:
        raise MeasureError(f"{path} is not a UCS-2 boot CSV", "fallback reads UTF-16LE with a BOM")
    text = data.decode("utf-16-le", errors="replace").lstrip("\ufeff")
    line = next((line for line in text.splitlines() if line.strip()), "")
    fields = line.split(",")
    if len(fields) < 3 or not fields[0].strip():
        raise MeasureError(f"{path} has no 'loader,label,options' line", "see shim's README.fallback")
    # shim takes the first word of its load options as the path of the second stage.
    option = fields[2].strip().split(" ", 1)[0]
    if not option:
        raise MeasureError(f"{path} gives shim no second stage", "the third field is the UKI's path")
    return fields[0].strip(), option


def _uki_app(path: str, data: bytes) -> BootApp:
    try:
        info = inspect_uki(data)
    except UkiError as exc:
        raise MeasureError(f"{path}: {exc.message}", exc.hint) from None
    version = info.stub.version if info.stub else ""
    return BootApp(path, data, "uki", version, info)
