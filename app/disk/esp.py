"""The EFI System Partition: list, read and write its FAT filesystem through mtools, never mounting.

Paths may be given as ``\\EFI\\Linux\\x.efi`` (how firmware and shim spell them), ``/EFI/Linux/x.efi`` or
``EFI/Linux/x.efi``; listings use the ``/EFI/...`` form. FAT is case-insensitive, and so are lookups here.
Writing is transactional (:func:`write_esp_files`), and input images are never written. The shim fallback
CSV (:func:`shim_fallback_csv`) makes shim boot the UKI directly.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from app.disk.formats.raw import RawImage
from app.disk.image import DiskImage
from app.disk.model import Partition
from app.disk.partfile import CHUNK, copy_partition, partition_file, partition_range
from app.errors import ShieldwrightError
from app.progress import CancelToken
from app.tools import run_tool

_ENV = {"MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": os.devnull}
#: Characters FAT long names cannot hold (plus control characters).
_BAD_CHARS = set('"*:<>?|') | {chr(c) for c in range(32)}
_DIR_HEADER = re.compile(r"^Directory for ::(?P<dir>/.*?)\s*$")
#: One ``mdir -a`` entry: 8.3 name, size or <DIR>, date, time, then the long name if there is one.
_ENTRY = re.compile(
    r"^(?P<short>.{8}) (?P<ext>.{3}) +(?P<size><DIR>|\d+) +\d{4}-\d\d-\d\d +\d{1,2}:\d\d"
    r"(?: +(?P<long>\S.*?))?\s*$"
)
DEFAULT_LOADER = "shimx64.efi"
#: Where our UKIs go (UAPI Boot Loader Specification, type #2 entries).
UKI_DIR = "\\EFI\\Linux"


class EspFileMissingError(ShieldwrightError):
    """The ESP has no file at the path asked for."""


@dataclass(frozen=True)
class EspEntry:
    path: str  # "/EFI/BOOT/BOOTX64.EFI"
    size: int  # 0 for directories
    is_dir: bool

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "size": self.size, "is_dir": self.is_dir}


def normalize_path(path: str) -> str:
    """``\\EFI\\Linux\\x.efi`` → ``/EFI/Linux/x.efi``; refuses empty, relative-escaping or non-FAT names."""
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if not parts:
        raise ShieldwrightError(f"bad ESP path {path!r}", "give a path such as \\EFI\\Linux\\uki.efi")
    for p in parts:
        if p in (".", "..") or set(p) & _BAD_CHARS or p.endswith((" ", ".")) or len(p) > 255:
            raise ShieldwrightError(f"bad ESP path {path!r}: {p!r} cannot be a FAT file name",
                                    "use letters, digits, '-', '_' and '.'")  # fmt: skip
    return "/" + "/".join(parts)


def _drive(path: Path, offset: int) -> str:
    return f"{path}@@{offset}" if offset else str(path)


def _mtools(
    tool: str,
    path: Path,
    offset: int,
    *args: str | os.PathLike[str],
    cancel: CancelToken | None = None,
    hint: str = "",
) -> str:
    hint = hint or "the partition does not hold a readable FAT filesystem"
    return run_tool(tool, "-i", _drive(path, offset), *args, cancel=cancel, env=_ENV, hint=hint)


def _list(path: Path, offset: int, cancel: CancelToken | None = None) -> list[EspEntry]:
    """Every file and directory, parsed from ``mdir -/ -a`` (recursive, hidden files included)."""
    try:
        out = _mtools("mdir", path, offset, "-/", "-a", "::/", cancel=cancel)
    except ShieldwrightError as exc:
        # mdir says 'File "::/" not found' for a valid FAT whose root directory is empty (a fresh
        # ESP); media that is not FAT fails differently ("non DOS media") and is still an error.
        if '"::/" not found' in exc.message:
            return []
        raise
    entries: list[EspEntry] = []
    current: str | None = None
    for line in out.splitlines():
        header = _DIR_HEADER.match(line)
        if header:
            current = header.group("dir").rstrip("/")
            continue
        m = _ENTRY.match(line)
        if current is None or not m:
            continue
        name = m.group("long")
        if not name:
            short, ext = m.group("short").rstrip(), m.group("ext").rstrip()
            name = f"{short}.{ext}" if ext else short
        if name in (".", ".."):
            continue
        is_dir = m.group("size") == "<DIR>"
        entries.append(EspEntry(f"{current}/{name}", 0 if is_dir else int(m.group("size")), is_dir))
    return entries


def list_esp(image: DiskImage, part: Partition, sector_size: int) -> list[EspEntry]:
    """All files and directories of the ESP (``part``) of ``image``, in mdir's order."""
    with partition_file(image, part, sector_size) as (path, offset):
        return _list(path, offset)


def _read(path: Path, offset: int, esp_path: str, part: Partition) -> bytes:
    norm = normalize_path(esp_path)
    with tempfile.TemporaryDirectory(prefix="shieldwright-esp-") as tmp:
        dst = Path(tmp) / "file"
        try:
            _mtools("mcopy", path, offset, "-n", f"::{norm}", dst)
        except ShieldwrightError as exc:
            if "not found" in exc.message.lower():
                raise EspFileMissingError(
                    f"the ESP (partition {part.number}) has no file {norm.replace('/', chr(92))}",
                    "check the path; ESP paths look like \\EFI\\BOOT\\BOOTX64.EFI",
                ) from None
            raise
        if not dst.is_file():
            raise EspFileMissingError(f"{norm} in the ESP (partition {part.number}) is not a file",
                                      "give the path of a file")  # fmt: skip
        return dst.read_bytes()


def read_esp_file(image: DiskImage, part: Partition, sector_size: int, path: str) -> bytes:
    """One file's contents; :class:`EspFileMissingError` when there is no such file."""
    with partition_file(image, part, sector_size) as (file, offset):
        return _read(file, offset, path, part)


def write_esp_files(
    raw_image: Path,
    part: Partition,
    sector_size: int,
    files: Mapping[str, bytes],
    *,
    mtime: float | None = None,
    cancel: CancelToken | None = None,
    fsync: bool = True,
    current: tuple[DiskImage, int] | None = None,
) -> None:
    """Add or replace ``files`` (ESP path → contents) in the ESP of the raw image at ``raw_image``, in place.

    Missing directories are created; every other file is kept. ``mtime`` (seconds since the epoch) stamps
    the new files, for reproducible images; by default mtools uses the current time. ``fsync=False`` leaves
    the final fsync to a caller that fsyncs the image once at its end (an fsync waits for the whole
    file's dirty pages, not just the ESP's). ``current`` is ``(image, byte offset)`` of a copy of the ESP
    as it is now in ``raw_image`` - the input it was copied from unchanged - to read instead of
    ``raw_image`` (whose pages the build wrote with O_DIRECT, so they would come from the disk).

    Transactional: the partition is copied into a temporary file, changed there with ``mmd``/``mcopy -o``
    (mtools keeps the FAT consistent), and only when every change succeeded are the changed blocks written
    back, so a full ESP or a bad path leaves the image as it was. Only for a raw *output* image.
    """
    offset, size = partition_range(part, sector_size)
    raw_image = Path(raw_image)
    if raw_image.stat().st_size < offset + size:
        raise ShieldwrightError(f"{raw_image} is smaller than its partition table says",
                                "write the ESP into a complete raw image")  # fmt: skip
    targets = {normalize_path(p): data for p, data in files.items()}
    with contextlib.ExitStack() as stack:
        if current is None:
            current = (stack.enter_context(RawImage(raw_image)), offset)
        _write_files(raw_image, offset, size, targets, mtime, cancel, fsync, current)


def _write_files(
    raw_image: Path,
    offset: int,
    size: int,
    targets: Mapping[str, bytes],
    mtime: float | None,
    cancel: CancelToken | None,
    fsync: bool,
    current: tuple[DiskImage, int],
) -> None:
    with tempfile.TemporaryDirectory(prefix="shieldwright-esp-") as tmp:
        fs = Path(tmp) / "esp.img"
        copy_partition(current[0], current[1], size, fs, cancel)
        existing = {e.path.lower(): e for e in _list(fs, 0, cancel)}
        for n, (target, data) in enumerate(targets.items()):
            parents = target.split("/")[1:-1]
            for depth in range(1, len(parents) + 1):
                directory = "/" + "/".join(parents[:depth])
                entry = existing.get(directory.lower())
                if entry is None:
                    _make_directory(fs, Path(tmp), directory, mtime, cancel)
                    existing[directory.lower()] = EspEntry(directory, 0, True)
                elif not entry.is_dir:
                    raise ShieldwrightError(f"{entry.path} in the ESP is a file, not a directory",
                                            "remove or rename it first")  # fmt: skip
            entry = existing.get(target.lower())
            if entry is not None and entry.is_dir:
                raise ShieldwrightError(f"{entry.path} in the ESP is a directory", "choose another file name")
            src = Path(tmp) / f"src{n}"
            src.write_bytes(data)
            keep_time: list[str] = []
            if mtime is not None:
                os.utime(src, (mtime, mtime))
                keep_time = ["-m"]
            _mtools("mcopy", fs, 0, "-o", *keep_time, src, f"::{target}", cancel=cancel,
                    hint="the ESP may be full; make it larger")  # fmt: skip
            existing[target.lower()] = EspEntry(target, len(data), False)
        _write_back(fs, raw_image, offset, size, cancel, fsync, current)


def _make_directory(
    fs: Path, tmp: Path, directory: str, mtime: float | None, cancel: CancelToken | None
) -> None:
    """``mmd`` stamps a new directory with the clock; with ``mtime`` it is copied in (``mcopy -s -m``) from an
    empty local directory carrying that time, so the same inputs give the same ESP bytes."""
    if mtime is None:
        _mtools("mmd", fs, 0, f"::{directory}", cancel=cancel)
        return
    parent, name = directory.rsplit("/", 1)
    local = Path(tempfile.mkdtemp(dir=tmp)) / name
    local.mkdir()
    os.utime(local, (mtime, mtime))
    _mtools("mcopy", fs, 0, "-s", "-m", local, f"::{parent or '/'}", cancel=cancel)


def _write_back(
    fs: Path,
    raw_image: Path,
    offset: int,
    size: int,
    cancel: CancelToken | None,
    fsync: bool,
    current: tuple[DiskImage, int],
) -> None:
    """Copy the blocks of ``fs`` that differ from ``current`` into the image (the others, holes included,
    stay as they are)."""
    image, at = current
    with open(fs, "rb") as new, open(raw_image, "r+b") as out:
        done = 0
        while done < size:
            if cancel is not None:
                cancel.check()
            chunk = new.read(min(CHUNK, size - done))
            if not chunk:
                break
            if image.read(at + done, len(chunk)) != chunk:
                out.seek(offset + done)
                out.write(chunk)
            done += len(chunk)
        out.flush()
        if fsync:
            os.fsync(out.fileno())


# ------------------------------------------------------------------------------------------------
# Shim fallback and the install plan
# ------------------------------------------------------------------------------------------------


def shim_fallback_csv(
    loader: str = DEFAULT_LOADER, label: str = "", uki_path: str = "", comment: str = ""
) -> bytes:
    """``BOOTX64.CSV`` telling shim's fallback to create a boot entry that makes shim load ``uki_path``.

    UTF-16LE with a BOM, one CRLF-terminated line ``loader,label,uki_path ,comment``. Shim's fallback.efi,
    run from ``\\EFI\\BOOT\\`` when no boot entry exists, reads ``\\EFI\\<vendor>\\BOOTX64.CSV`` (rhboot/shim
    README.fallback, fallback.c ``try_boot_csv``) and creates ``Boot####`` = ``\\EFI\\<vendor>\\<loader>``
    with the third field as load options. Shim takes the first word of its load options as the second
    stage (load-options.c ``split_load_options``), which needs a space or a NUL after the path; fallback
    stores the field without the NUL, hence the space before the comma.
    """
    if not label:
        raise ShieldwrightError("the boot entry needs a label", "give a name such as the OS name")
    path = "\\" + normalize_path(uki_path).lstrip("/").replace("/", "\\")
    for what, value in (("loader", loader), ("label", label), ("UKI path", path), ("comment", comment)):
        if "," in value or "\r" in value or "\n" in value or "\0" in value:
            raise ShieldwrightError(f"the {what} {value!r} contains a comma or a line break",
                                    "the CSV has no quoting; leave them out")  # fmt: skip
    if " " in path:
        raise ShieldwrightError(f"the UKI path {path!r} contains a space",
                                "shim splits its load options at spaces; use a name without one")  # fmt: skip
    if not loader or "\\" in loader or "/" in loader:
        raise ShieldwrightError(
            f"bad loader name {loader!r}", "give a file name in the CSV's directory, e.g. shimx64.efi"
        )
    line = f"{loader},{label},{path} ,{comment}\r\n"
    return ("\ufeff" + line).encode("utf-16-le")


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def plan_esp_install(
    uki_id: str,
    uki: bytes,
    vendor_dir: str = "debian",
    *,
    label: str | None = None,
    loader: str = DEFAULT_LOADER,
) -> dict[str, bytes]:
    """The ESP files that install ``uki``: ``\\EFI\\Linux\\<id>.efi`` and ``\\EFI\\<vendor>\\BOOTX64.CSV``.

    ``vendor_dir`` is the directory shim lives in (``\\EFI\\debian`` on Debian); fallback only reads CSVs
    from there, and the CSV's first field names shim relative to it.
    """
    if not _ID.fullmatch(uki_id):
        raise ShieldwrightError(
            f"bad UKI id {uki_id!r}",
            "use 1-64 letters, digits, '.', '_', '+' or '-', starting with a letter or digit",
        )
    vendor = vendor_dir.replace("/", "\\").strip("\\")
    if vendor.upper().startswith("EFI\\"):
        vendor = vendor[4:]
    if not vendor or "\\" in vendor or vendor.upper() in ("BOOT", "LINUX"):
        raise ShieldwrightError(f"bad vendor directory {vendor_dir!r}",
                                "give the name of shim's directory under \\EFI, e.g. debian")  # fmt: skip
    uki_path = f"{UKI_DIR}\\{uki_id}.efi"
    csv = shim_fallback_csv(loader, label or uki_id, uki_path, f"Shieldwright UKI {uki_id}")
    return {uki_path: uki, f"\\EFI\\{vendor}\\BOOTX64.CSV": csv}
