"""The template's UKI: where its kernel comes from, how it is built and signed, and what it is called.

A recipe's UKI options (:class:`app.template.recipe.UkiOptions`) say one of three things:

- ``source="image"`` (the default): build from the base image's own kernel. ``kernel`` names it as
  ``"PARTNUM:/path"`` (e.g. ``"2:/shieldwright-demo/6.1.0-28-cloud-amd64/linux"``); without it the kernels on
  the XBOOTLDR partition and the root's ``/boot`` are listed and the **newest** (by version, compared
  number by number) is taken. ``initrds`` name the initrds the same way; without them the kernel's own
  (paired by version, microcode first; :func:`app.boot.pairing.pair_kernels`) are used.
- ``source="files"``: build from ``kernel`` and ``initrds`` given as file paths.
- ``source="existing"``: a UKI already in the image (``existing_uki`` names it as ``"PARTNUM:/path"``; without
  it, the only one there is) is kept as it is (``existing_action="keep"``), re-signed (``"resign"``) or
  replaced by a new one built from the image's newest kernel (``"replace"``).

The stub is ``stub`` (a path) or, when None, the host's systemd-stub. A command line of None becomes
:data:`DEFAULT_CMDLINE` (a UKI without ``.cmdline`` would take its command line from the boot entry, which
PCR 11 does not cover); an os-release of None is read from the image's root (``/etc/os-release``, else
``/usr/lib/os-release``), else :data:`DEFAULT_OS_RELEASE`. A given text, even an empty one, is used as is.
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

from app.boot.pairing import KernelEntry, pair_kernels
from app.boot.sources import BootFile, list_boot_files, read_boot_file
from app.boot.uki import UkiInfo, UkiInputs, build_uki, inspect_uki
from app.disk.image import DiskImage
from app.disk.model import DiskLayout, Role
from app.disk.partfile import partition_file
from app.errors import ShieldwrightError
from app.progress import CancelToken
from app.signing.signer import Signer
from app.tools import run_tool

#: The command line a template UKI gets when the recipe gives none (serial and VGA consoles; the root is
#: found by its partition type, so no ``root=``).
DEFAULT_CMDLINE = "console=tty0 console=ttyS0"
DEFAULT_OS_RELEASE = 'NAME="Linux"\nID=linux\nPRETTY_NAME="Linux (Shieldwright template)"\n'
UKI_SOURCES = ("image", "files", "existing")
EXISTING_ACTIONS = ("keep", "resign", "replace")
_REF = re.compile(r"(\d+):(/.*)")


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


def parse_ref(text: str, what: str) -> tuple[int, str]:
    """``"2:/boot/vmlinuz-6.1"`` → ``(2, "/boot/vmlinuz-6.1")``."""
    m = _REF.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m:
        raise BootSourceError(
            f"the {what} {text!r} is not of the form PARTITION:/path", "for example 2:/vmlinuz-6.1.0-28-amd64"
        )
    return int(m.group(1)), m.group(2)


def ref_of(f: BootFile) -> str:
    return f"{f.partition_number}:{f.path}"


def version_key(version: str | None) -> tuple[tuple[int, int | str], ...]:
    """Compare versions number by number (``6.1.0-28`` > ``6.1.0-9``); text parts compare as text."""
    parts = re.findall(r"\d+|[^\d]+", version or "")
    return tuple((1, int(p)) if p.isdigit() else (0, p) for p in parts)


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
    after the recipe was checked is still caught (issue 17 item 7).
    """

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.files: list[PublishedFile] = []

    def read(self, path: str | os.PathLike[str], key: str, role: str) -> bytes:
        from app.template.checks import PRIVATE_INPUT_HINT, is_private_mode, private_file_text

        try:
            with open(path, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                private = is_private_mode(mode)
                if private and not self.allow_private:
                    raise PrivateInputError(f"{key}: {private_file_text(path, mode)}", PRIVATE_INPUT_HINT)
                data = f.read()
        except OSError as exc:
            raise BootSourceError(
                f"cannot read the {role} {path}: {exc.strerror or exc}", "check the path"
            ) from None
        self.files.append(PublishedFile(key, role, str(path), len(data), hashlib.sha256(data).hexdigest(),
                                        stat.S_IMODE(mode), private))  # fmt: skip
        return data


class _ImageFiles:
    """The boot files of the base image, listed once and read on demand."""

    def __init__(self, image: DiskImage, layout: DiskLayout, cancel: CancelToken) -> None:
        self.image, self.layout, self.cancel = image, layout, cancel
        self._files: list[BootFile] | None = None

    @property
    def files(self) -> list[BootFile]:
        if self._files is None:
            self._files = list_boot_files(self.image, self.layout, cancel=self.cancel)
        return self._files

    def find(self, ref: str, what: str) -> BootFile:
        number, path = parse_ref(ref, what)
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
    options: Any,
    image: DiskImage,
    layout: DiskLayout,
    signer: Signer,
    *,
    cancel: CancelToken,
    note: Callable[[str], None] = lambda line: None,
    allow_private: bool = False,
) -> BuiltUki:
    """The signed UKI the recipe's ``options`` (an :class:`app.template.recipe.UkiOptions`) describe.

    Host files (kernel, initrds, stub) that other users may not read are refused with a
    :class:`PrivateInputError` unless ``allow_private``: the UKI goes into the ESP in the clear.
    """
    from app.boot.uki import HOST_STUB
    from app.signing.authenticode import sign_pe, verify_pe

    source = getattr(options, "source", "image") or "image"
    if source not in UKI_SOURCES:
        raise BootSourceError(f"unknown UKI source {source!r}", f"use one of {', '.join(UKI_SOURCES)}")
    files = _ImageFiles(image, layout, cancel)
    if source == "existing":
        action = getattr(options, "existing_action", None) or "resign"
        if action not in EXISTING_ACTIONS:
            raise BootSourceError(f"unknown action {action!r} for an existing UKI",
                                  f"use one of {', '.join(EXISTING_ACTIONS)}")  # fmt: skip
        if action != "replace":
            uki_file = _existing_uki(files, getattr(options, "existing_uki", None))
            data = files.read(uki_file)
            inspect_uki(data)  # refuse a file that is not a UKI before signing it
            if action == "resign":
                data = sign_pe(data, signer, mode="replace", name=uki_file.path)
            info = inspect_uki(data)
            signed = any(v.valid for v in verify_pe(data, trusted=[signer.certificate]))
            return BuiltUki(data, info, source, "kept" if action == "keep" else "re-signed", ref_of(uki_file),
                            (), "existing", info.cmdline, signed)  # fmt: skip

    host = _HostReader(allow_private)
    stub_path = getattr(options, "stub", None)
    stub = host.read(stub_path or HOST_STUB, "uki.stub", "stub") if stub_path or HOST_STUB.exists() else None
    if source == "files":
        kernel_path = getattr(options, "kernel", None)
        if not kernel_path:
            raise BootSourceError(
                "the recipe's UKI source is files but names no kernel", "give the kernel file"
            )
        linux = host.read(str(kernel_path), "uki.kernel", "kernel")
        initrd_names = [str(p) for p in getattr(options, "initrds", None) or []]
        initrds = [host.read(p, f"uki.initrds[{i}]", "initrd") for i, p in enumerate(initrd_names)]
        kernel_name = str(kernel_path)
    else:  # "image", or an existing UKI being replaced: the image's kernel
        kernel_ref = getattr(options, "kernel", None) if source == "image" else None
        initrd_refs = list(getattr(options, "initrds", None) or []) if source == "image" else []
        if kernel_ref:
            kernel = files.find(str(kernel_ref), "kernel")
            paired = next((e for e in files.kernels() if e.kernel == kernel), None)
            chosen_initrds = [files.find(str(r), "initrd") for r in initrd_refs] if initrd_refs else (
                paired.initrds if paired else [])  # fmt: skip
        else:
            entry = newest_kernel(files.kernels())
            kernel = entry.kernel
            chosen_initrds = (
                [files.find(str(r), "initrd") for r in initrd_refs] if initrd_refs else entry.initrds
            )
            note(f"Newest kernel in the image: {ref_of(kernel)} (version {entry.version or 'unknown'})")
        linux = files.read(kernel)
        initrds = [files.read(f) for f in chosen_initrds]
        initrd_names = [ref_of(f) for f in chosen_initrds]
        kernel_name = ref_of(kernel)

    cmdline = getattr(options, "cmdline", None)
    if cmdline is None:
        cmdline = DEFAULT_CMDLINE
    os_release = getattr(options, "os_release", None)
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
                    cmdline, True, tuple(host.files))  # fmt: skip


def _existing_uki(files: _ImageFiles, ref: str | None) -> BootFile:
    if ref:
        return files.find(str(ref), "UKI")
    ukis = [f for f in files.files if f.kind == "uki"]
    if len(ukis) != 1:
        names = ", ".join(ref_of(f) for f in ukis) or "none"
        raise BootSourceError(f"the recipe keeps an existing UKI but does not say which (found: {names})",
                              "name it as PARTITION:/EFI/Linux/NAME.efi")  # fmt: skip
    return ukis[0]
