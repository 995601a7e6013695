"""The template's UKI: what it is built from, how it is signed, and the wizard's preview of it.

:func:`make_uki` is the one UKI builder, following the recipe's ``[uki]`` options (docs/formats/recipe.md):
from a kernel of the base image (by default the newest, with its own initrds), from host files, or from a
UKI already in the image, kept, re-signed or replaced. Its defaults: :data:`DEFAULT_CMDLINE`, the image's
os-release else :data:`DEFAULT_OS_RELEASE`, the host's systemd-stub. The build calls it; the wizard's Boot
image page lists the image's boot files with :func:`image_boot_files` and calls :func:`preview_uki` (the
same UKI, plus its PCR 11 and its signer).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.boot.errors import PcrPredictionError
from app.boot.pairing import KernelEntry, pair_kernels
from app.boot.pcr import BANKS, predict_pcr11
from app.boot.sources import BootFile, list_boot_files, read_boot_file
from app.boot.stub import measured_sections
from app.boot.uki import HOST_STUB, UkiInfo, UkiInputs, build_uki, inspect_uki
from app.disk.image import DiskImage, open_image
from app.disk.model import DiskLayout, Role
from app.disk.partfile import partition_file
from app.errors import ShieldwrightError
from app.progress import CancelToken
from app.signing.authenticode import list_signatures, sign_pe, verify_pe
from app.signing.certificates import CertificateInfo, describe_certificate
from app.signing.signer import Signer
from app.template.checks import PRIVATE_INPUT_HINT, is_private_mode, private_file_text
from app.template.recipe import EXISTING_ACTIONS, UKI_SOURCES, RecipeError, UkiOptions, parse_image_ref
from app.tools import run_tool

#: The command line a template UKI gets when the recipe gives none (serial and VGA consoles; the root is
#: found by its partition type, so no ``root=``).
DEFAULT_CMDLINE = "console=tty0 console=ttyS0"
#: The os-release a template UKI gets when the recipe gives none and the image has none readable.
DEFAULT_OS_RELEASE = 'NAME="Linux"\nID=linux\nPRETTY_NAME="Linux (Shieldwright template)"\n'


class BootSourceError(ShieldwrightError):
    """The recipe's kernel, initrd or UKI cannot be found or read."""


class PrivateInputError(BootSourceError):
    """A host file that other users may not read would be published in the clear (not allowed)."""


@dataclass(frozen=True)
class PublishedFile:
    """A host file copied into the UKI, hence in the clear into the template's ESP: what the manifest and
    the report list (``key`` the recipe key, ``role`` kernel/initrd/stub, the bytes' SHA-256 and size,
    the file's mode when it was read, and whether that mode was private - published only when allowed)."""

    key: str
    role: str
    path: str
    size_bytes: int
    sha256: str
    mode: int
    private: bool

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "role": self.role, "path": self.path, "size_bytes": self.size_bytes,
                "sha256": self.sha256, "mode": f"{self.mode:04o}", "private": self.private}  # fmt: skip


@dataclass(frozen=True)
class BuiltUki:
    """The UKI that goes into the template, and where it came from (for the log and the manifest)."""

    data: bytes = field(repr=False)
    info: UkiInfo = field(repr=False)
    source: str  # "image" | "files" | "existing"
    action: str  # "built" | "kept" | "re-signed"
    kernel: str | None  # "2:/path" or a file path; for kept/re-signed UKIs the UKI's reference
    initrds: tuple[str, ...]
    stub: str  # "host" or a path
    cmdline: str | None
    signed: bool  # carries our UEFI signature
    #: Every host file inside the UKI (kernel, initrds, stub read from this computer's filesystem).
    host_files: tuple[PublishedFile, ...] = ()

    def describe(self) -> str:
        what = {"built": "built from", "kept": "kept as it is:", "re-signed": "re-signed:"}[self.action]
        initrds = (
            f" + {len(self.initrds)} initrd{'s' if len(self.initrds) != 1 else ''}" if self.initrds else ""
        )
        stub = self.info.stub
        stub_text = f", {stub.kind} {stub.version}" if stub is not None else ""
        return f"UKI {what} {self.kernel}{initrds}{stub_text} ({self.info.size} bytes)"

    def manifest(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "action": self.action,
            "kernel": self.kernel,
            "initrds": list(self.initrds),
            "stub_file": self.stub,
        }


def ref_of(f: BootFile) -> str:
    """The recipe's reference ``"PARTNUM:/path"`` to a file of the base image."""
    return f"{f.partition_number}:{f.path}"


def version_key(version: str | None) -> tuple[tuple[int, int | str], ...]:
    """Compare versions number by number (``6.1.0-28`` > ``6.1.0-9``); text parts compare as text."""
    parts = re.findall(r"\d+|[^\d]+", version or "")
    # isdecimal, not isdigit: "²" is a digit int() cannot read (a file name in a hostile image)
    return tuple((1, int(p)) if p.isdecimal() else (0, p) for p in parts)


def newest_kernel(entries: Sequence[KernelEntry[BootFile]]) -> KernelEntry[BootFile]:
    """The kernel with the highest version (ties: the first listed, XBOOTLDR before root)."""
    if not entries:
        raise BootSourceError(
            "the base image has no kernel in its XBOOTLDR partition or the root's /boot",
            "give the kernel and initrd files in the recipe (uki source = files)",
        )
    return max(enumerate(entries), key=lambda ie: (version_key(ie[1].version), -ie[0]))[1]


class _HostReader:
    """Reads the host files a UKI is built from, refusing private ones unless allowed, and records each.

    The mode is taken from the open file (``fstat``), so what is judged is what is read: a file swapped
    after the recipe was checked is still caught.
    """

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.files: list[PublishedFile] = []

    def read(self, path: str | os.PathLike[str], key: str, role: str) -> bytes:
        try:
            with open(path, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                private = is_private_mode(mode)
                if private and not self.allow_private:
                    raise PrivateInputError(f"{key}: {private_file_text(os.fspath(path), mode)}",
                                            PRIVATE_INPUT_HINT)  # fmt: skip
                data = f.read()
        except OSError as exc:
            raise BootSourceError(
                f"cannot read the {role} {os.fspath(path)}: {exc.strerror or exc}", "check the path"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        self.files.append(PublishedFile(key, role, os.fspath(path), len(data), digest, stat.S_IMODE(mode),
                                        private))  # fmt: skip
        return data


class _ImageFiles:
    """The boot files of the base image, listed once (or given, already listed) and read on demand."""

    def __init__(
        self, image: DiskImage, layout: DiskLayout, cancel: CancelToken, listed: Sequence[BootFile] | None
    ) -> None:
        self.image, self.layout, self.cancel = image, layout, cancel
        self._files: list[BootFile] | None = None if listed is None else list(listed)

    @property
    def files(self) -> list[BootFile]:
        if self._files is None:
            self._files = list_boot_files(self.image, self.layout, cancel=self.cancel)
        return self._files

    def find(self, ref: str, what: str) -> BootFile:
        try:
            number, path = parse_image_ref(ref)
        except RecipeError as exc:
            raise BootSourceError(f"the {what} {exc.message}", exc.hint) from None
        for f in self.files:
            if f.partition_number == number and f.path.lower() == path.lower():
                return f
        raise BootSourceError(
            f"the base image has no {what} {ref}",
            "the wizard's Boot image page lists the kernels, initrds and UKIs of an image",
        )

    def read(self, f: BootFile) -> bytes:
        self.cancel.check()
        return read_boot_file(self.image, self.layout, f)

    def kernels(self) -> list[KernelEntry[BootFile]]:
        """Kernels where /boot lives, paired with their initrds: the XBOOTLDR partition when it has any
        (it *is* /boot then, and the root's /boot is only its mount point), else the root's /boot.

        Listing the XBOOTLDR alone first spares a walk through a large root filesystem with debugfs.
        """
        if self._files is None:
            for roles in ((Role.XBOOTLDR,), (Role.ROOT,)):
                parts = [p for p in self.layout.partitions if p.role in roles]
                if not parts:
                    continue
                sub = dataclasses.replace(self.layout, partitions=parts)
                found = pair_kernels(f for f in list_boot_files(self.image, sub, cancel=self.cancel)
                                     if f.kind in ("kernel", "initrd"))  # fmt: skip
                if found:
                    return found
            return []
        roles_of = {p.number: p.role for p in self.layout.partitions}
        boot = [f for f in self.files if roles_of.get(f.partition_number) in (Role.XBOOTLDR, Role.ROOT)]
        return pair_kernels(boot)


def read_os_release(image: DiskImage, layout: DiskLayout, cancel: CancelToken | None = None) -> str | None:
    """The image's os-release text from its (ext2/3/4) root partition, or None when it cannot be read.

    ``cancel`` stops the copy a non-raw image needs (a plaintext copy of the root in $TMPDIR) early.
    """
    roots = [p for p in layout.partitions if p.role is Role.ROOT and p.content in ("ext2", "ext3", "ext4")]
    for part in roots:
        with partition_file(image, part, layout.sector_size, cancel) as (path, offset), \
                tempfile.TemporaryDirectory(prefix="shieldwright-osrel-") as tmp:  # fmt: skip
            device = f"{path}?offset={offset}" if offset else str(path)
            for candidate in ("/etc/os-release", "/usr/lib/os-release"):
                out = Path(tmp) / "os-release"
                try:
                    run_tool("debugfs", "-R", f'dump "{candidate}" "{out}"', device,
                             env={"DEBUGFS_PAGER": "__none__", "PAGER": "__none__"})  # fmt: skip
                except ShieldwrightError:
                    continue
                if out.is_file():
                    text = out.read_text("utf-8", errors="replace")
                    if "=" in text and len(text) < 65536:
                        return text
    return None


def make_uki(
    options: UkiOptions,
    image: DiskImage,
    layout: DiskLayout,
    signer: Signer | None,
    *,
    cancel: CancelToken,
    note: Callable[[str], None] = lambda line: None,
    allow_private: bool = False,
    boot_files: Sequence[BootFile] | None = None,
) -> BuiltUki:
    """The UKI the recipe's ``options`` describe, signed with ``signer``.

    Without ``signer`` a built UKI is unsigned and a kept one is reported as not carrying our signature
    (a preview); ``existing_action="resign"`` needs one. Host files (kernel, initrds, stub) that other
    users may not read are refused with a :class:`PrivateInputError` unless ``allow_private``: the UKI goes
    into the ESP in the clear. ``boot_files`` are the image's boot files when already listed.
    """
    source = options.source or "image"
    if source not in UKI_SOURCES:
        raise BootSourceError(f"unknown UKI source {source!r}", f"use one of {', '.join(UKI_SOURCES)}")
    files = _ImageFiles(image, layout, cancel, boot_files)
    if source == "existing":
        action = options.existing_action or "resign"
        if action not in EXISTING_ACTIONS:
            raise BootSourceError(f"unknown action {action!r} for an existing UKI",
                                  f"use one of {', '.join(EXISTING_ACTIONS)}")  # fmt: skip
        if action != "replace":
            return _existing(files, options.existing_uki, action, signer)

    host = _HostReader(allow_private)
    stub_path = options.stub
    stub = host.read(stub_path or HOST_STUB, "uki.stub", "stub") if stub_path or HOST_STUB.exists() else None
    if source == "files":
        if not options.kernel:
            raise BootSourceError(
                "the recipe's UKI source is files but names no kernel", "give the kernel file"
            )
        linux = host.read(str(options.kernel), "uki.kernel", "kernel")
        initrd_names = [str(p) for p in options.initrds]
        initrds = [host.read(p, f"uki.initrds[{i}]", "initrd") for i, p in enumerate(initrd_names)]
        kernel_name = str(options.kernel)
    else:  # "image", or an existing UKI replaced by one built the same way
        initrd_refs = [str(r) for r in options.initrds]
        if options.kernel:
            kernel = files.find(str(options.kernel), "kernel")
            paired = None if initrd_refs else next((e for e in files.kernels() if e.kernel == kernel), None)
            chosen_initrds = paired.initrds if paired else [files.find(r, "initrd") for r in initrd_refs]
        else:
            entry = newest_kernel(files.kernels())
            kernel = entry.kernel
            chosen_initrds = [files.find(r, "initrd") for r in initrd_refs] if initrd_refs else entry.initrds
            note(f"Newest kernel in the image: {ref_of(kernel)} (version {entry.version or 'unknown'})")
        linux = files.read(kernel)
        initrds = [files.read(f) for f in chosen_initrds]
        initrd_names = [ref_of(f) for f in chosen_initrds]
        kernel_name = ref_of(kernel)

    cmdline = options.cmdline
    if cmdline is None:
        cmdline = DEFAULT_CMDLINE
    os_release = options.os_release
    if os_release is None:
        os_release = read_os_release(image, layout, cancel)
        if os_release is None:
            note("The image has no readable os-release; using a generic one")
            os_release = DEFAULT_OS_RELEASE
    cancel.check()
    inputs = UkiInputs(linux=linux, initrds=initrds, cmdline=cmdline, os_release=os_release, stub=stub)
    data = build_uki(inputs, signer=signer)
    stub_name = str(stub_path) if stub_path else "host"
    return BuiltUki(data, inspect_uki(data), source, "built", kernel_name, tuple(initrd_names), stub_name,
                    cmdline, signer is not None, tuple(host.files))  # fmt: skip


def _existing(files: _ImageFiles, ref: str | None, action: str, signer: Signer | None) -> BuiltUki:
    """An existing UKI of the image, kept as it is or re-signed."""
    uki_file = _existing_uki(files, ref)
    data = files.read(uki_file)
    inspect_uki(data)  # refuse a file that is not a UKI before signing it
    if action == "resign":
        if signer is None:
            raise BootSourceError("there is no UEFI signing key to re-sign the existing UKI with",
                                  "load the UEFI signing certificate and its key")  # fmt: skip
        data = sign_pe(data, signer, mode="replace", name=uki_file.path)
    info = inspect_uki(data)
    signed = signer is not None and any(v.valid for v in verify_pe(data, trusted=[signer.certificate]))
    return BuiltUki(data, info, "existing", "kept" if action == "keep" else "re-signed", ref_of(uki_file),
                    (), "existing", info.cmdline, signed)  # fmt: skip


def _existing_uki(files: _ImageFiles, ref: str | None) -> BootFile:
    if ref:
        return files.find(str(ref), "UKI")
    ukis = [f for f in files.files if f.kind == "uki"]
    if len(ukis) != 1:
        names = ", ".join(ref_of(f) for f in ukis) or "none"
        raise BootSourceError(f"the recipe keeps an existing UKI but does not say which (found: {names})",
                              "name it as PARTITION:/EFI/Linux/NAME.efi")  # fmt: skip
    return ukis[0]


# --- the wizard's preview -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageBootFiles:
    """The boot files of a base image: every one found, the kernels paired with their initrds, the UKIs."""

    files: tuple[BootFile, ...]
    kernels: tuple[KernelEntry[BootFile], ...]
    ukis: tuple[BootFile, ...]


def image_boot_files(image_path: Path, layout: DiskLayout, *, cancel: CancelToken) -> ImageBootFiles:
    """List the kernels, initrds and UKIs of every partition of the image at ``image_path``."""
    with open_image(image_path) as image:
        files = list_boot_files(image, layout, cancel=cancel)
    return ImageBootFiles(
        tuple(files), tuple(pair_kernels(files)), tuple(f for f in files if f.kind == "uki")
    )


@dataclass(frozen=True)
class UkiPreview:
    """A UKI as the build would make it, with what the wizard shows about it."""

    built: BuiltUki
    #: PCR 11 per bank and phase path; empty when it cannot be predicted (``pcr_error`` says why).
    pcrs: dict[str, dict[str, str]]
    pcr_error: PcrPredictionError | None
    #: The certificate of the UKI's first Authenticode signature (None: unsigned).
    signer: CertificateInfo | None
    #: The sections its stub measures into PCR 11, in the stub's measuring order (empty: unknown).
    measured: tuple[str, ...]


def preview_uki(
    options: UkiOptions,
    image_path: Path,
    layout: DiskLayout,
    signer: Signer | None,
    *,
    cancel: CancelToken,
    boot_files: Sequence[BootFile] | None = None,
    banks: Sequence[str] = BANKS,
) -> UkiPreview:
    """Make the UKI ``options`` describe with :func:`make_uki` (unsigned without ``signer``), and predict
    its PCR 11 for ``banks``.

    Private host files are allowed here: nothing is published yet, and the Review page and the build judge
    them. A UKI whose PCR 11 cannot be predicted (a kept one with an unknown stub) is still a preview.
    """
    with open_image(image_path) as image:
        built = make_uki(options, image, layout, signer, cancel=cancel, allow_private=True,
                         boot_files=boot_files)  # fmt: skip
    pcr_error = None
    try:
        pcrs = {b: dict(v) for b, v in predict_pcr11(built.info, banks=banks).items()}
    except PcrPredictionError as exc:
        pcrs, pcr_error = {}, exc
    certificates = [s.signer for s in list_signatures(built.data) if s.signer is not None]
    signed_by = describe_certificate(certificates[0], purpose="uefi") if certificates else None
    return UkiPreview(built, pcrs, pcr_error, signed_by, measured_order(built.info))


def measured_order(info: UkiInfo) -> tuple[str, ...]:
    """The UKI's sections its stub measures, in the order it measures them (not the file order)."""
    names = {s.name for s in info.sections if s.measured}
    if not names or info.stub is None:
        return ()
    return tuple(n for n in measured_sections(info.stub.version) if n in names)
