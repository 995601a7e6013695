"""Build the demo base image: a small, real, bootable GPT disk made only from Debian packages.

The wizard, the tests and the screenshots need a base image shaped like a confidential-VM template
input without shipping one: an ESP (FAT32, systemd-boot), an XBOOTLDR partition (ext4: a Debian cloud
kernel, a busybox initrd, a Boot Loader Spec entry) and a discoverable x86-64 root (ext4, busybox).
With ``boot_loader="shim"`` the ESP instead starts with Debian's Microsoft-signed shim and its fallback
laid out as Debian installs them for removable-media boot (:data:`SHIM_ESP_FILES`): the shape of a cloud
image, which boots on firmware with Microsoft's keys once a template build adds its UKI and the fallback's
``BOOTX64.CSV``.
Built as an ordinary user: each filesystem is made in its own file (``mkfs.ext4 -d``, mtools), then
copied into the sparse image at its partition's offset. GUIDs and UUIDs derive from fixed names, so
they are stable; the initrd and root print marker lines the QEMU tests wait for (see ``_INIT``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_cache_path

from app.boot.cpio import CpioWriter
from app.disk import partition_types as pt
from app.disk.formats.raw import RawImage
from app.disk.partitioning import NewPartition, PlacedPartition, create_gpt
from app.disk.publish import publish, refuse_existing
from app.errors import CancelledError, ShieldwrightError, ToolMissingError
from app.progress import CancelToken, NullProgress, Progress
from app.tools import run_tool

MiB = 1024 * 1024
DISK_SIZE = 512 * MiB
ESP_SIZE = 100 * MiB  # FAT32 needs >= 65525 clusters; 100 MiB also leaves room for UKIs later
XBOOTLDR_SIZE = 128 * MiB


#: Metapackage whose single dependency names the current versioned cloud kernel.
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
#: The boot loaders the demo ESP can start with (``build_demo_image(boot_loader=...)``).
BOOT_LOADERS = ("systemd-boot", "shim")
#: Debian's shim, signed by Microsoft's UEFI CA; and the fallback and MokManager, signed by Debian (the
#: certificate shim carries), which shim therefore accepts.
SHIM_PACKAGE = "shim-signed"
SHIM_HELPERS_PACKAGE = "shim-helpers-amd64-signed"
SHIM_SIGNED = "usr/lib/shim/shimx64.efi.signed"
FALLBACK_SIGNED = "usr/lib/shim/fbx64.efi.signed"
MOKMANAGER_SIGNED = "usr/lib/shim/mmx64.efi.signed"
#: Shim's directory under \EFI on Debian: where a template build puts the fallback's BOOTX64.CSV.
SHIM_VENDOR_DIR = "debian"
#: ESP path → file of the unpacked shim packages, as ``grub-install --removable`` (with shim) lays Debian
#: out, minus GRUB: shim at the removable path finds ``fbx64.efi`` beside it and runs it; the fallback reads
#: ``\EFI\debian\BOOTX64.CSV``, creates the boot entry for ``\EFI\debian\shimx64.efi`` and resets.
SHIM_ESP_FILES = {
    "EFI/BOOT/BOOTX64.EFI": SHIM_SIGNED,
    "EFI/BOOT/fbx64.efi": FALLBACK_SIGNED,
    "EFI/BOOT/mmx64.efi": MOKMANAGER_SIGNED,
    f"EFI/{SHIM_VENDOR_DIR}/shimx64.efi": SHIM_SIGNED,
    f"EFI/{SHIM_VENDOR_DIR}/fbx64.efi": FALLBACK_SIGNED,
    f"EFI/{SHIM_VENDOR_DIR}/mmx64.efi": MOKMANAGER_SIGNED,
}
SYSTEMD_BOOT_EFI = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
BUSYBOX = Path("/bin/busybox")
#: Console marker lines later QEMU tests wait for.
INITRD_MARKER = "shieldwright-demo: initrd reached"
ROOT_MARKER = "shieldwright-demo: root reached"
ENTRY_TOKEN = "shieldwright-demo"
KERNEL_CMDLINE = "console=tty0 console=ttyS0 panic=-1"
#: Modules the initrd loads (with their dependencies) to see a virtio disk; ext4 is built in.
INITRD_MODULES = ("virtio_pci", "virtio_blk")
#: Fixed timestamps (2024-01-01) so files and filesystems do not depend on the build time.
EPOCH = 1704067200

_NAMESPACE = uuid.UUID("9b7a3c52-1f0e-4d8e-a6c1-5d1e0c0de5a1")
#: busybox applets linked in /bin of initrd and root: all the two init scripts use, and a few for a shell.
_APPLETS = (
    "[", "ash", "cat", "cp", "cttyhack", "dd", "dmesg", "echo", "false", "grep", "head", "hostname",
    "insmod", "ln", "ls", "lsmod", "mkdir", "mknod", "more", "mount", "mv", "od", "poweroff", "printf",
    "ps", "readlink", "reboot", "rm", "sed", "setsid", "sh", "sleep", "stat", "switch_root", "sync",
    "tail", "test", "tr", "true", "umount", "uname", "vi", "wc",
)  # fmt: skip


def _guid(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


@dataclass(frozen=True)
class KernelFiles:
    """What the demo takes from the kernel package: the kernel, its version, and modules for the initrd."""

    version: str
    vmlinuz: Path
    config: Path
    modules: tuple[tuple[str, Path], ...]  # (path under /lib/modules/<version>/, file), in load order


@dataclass(frozen=True)
class ShimFiles:
    """Debian's signed shim, fallback and MokManager, unpacked; ``versions`` maps package → version."""

    shim: Path
    fallback: Path
    mokmanager: Path
    versions: dict[str, str]

    def by_package_path(self) -> dict[str, Path]:
        return {SHIM_SIGNED: self.shim, FALLBACK_SIGNED: self.fallback, MOKMANAGER_SIGNED: self.mokmanager}


def build_demo_image(
    path: Path,
    *,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    cache_dir: Path | None = None,
    overwrite: bool = True,
    boot_loader: str = "systemd-boot",
) -> Path:
    """Build the demo base image at ``path`` and return it (an existing ``path`` only with ``overwrite``).

    All work happens in a temporary directory beside ``path``; the image appears at ``path`` only when
    complete (atomic rename), and the temporary directory is removed on success, failure and cancel.
    The kernel .deb is downloaded once into ``cache_dir`` (default ``~/.cache/shieldwright/debs``), and so
    are the shim packages for ``boot_loader="shim"`` (see :data:`SHIM_ESP_FILES`).
    """
    if boot_loader not in BOOT_LOADERS:
        raise ShieldwrightError(
            f"unknown boot loader {boot_loader!r}", f"choose one of: {', '.join(BOOT_LOADERS)}"
        )
    path = Path(path)
    progress = progress or NullProgress()
    cancel = cancel or CancelToken()
    refuse_existing(path, overwrite)
    if cache_dir is None:
        cache_dir = user_cache_path("shieldwright") / "debs"
    cancel.check()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise ShieldwrightError(
            f"cannot write to {path.parent}: {e.strerror}", "choose a directory you can write to"
        ) from e
    try:
        _build(path, work, Path(cache_dir), progress, cancel, overwrite, boot_loader)
    except OSError as e:  # disk full, permissions changed under us...
        where = f" ({e.filename})" if e.filename else ""
        raise ShieldwrightError(
            f"cannot build the demo image: {e.strerror}{where}", "check free space and permissions"
        ) from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _build(
    path: Path,
    work: Path,
    cache_dir: Path,
    progress: Progress,
    cancel: CancelToken,
    overwrite: bool = True,
    boot_loader: str = "systemd-boot",
) -> None:
    """The build proper, in ``work``; the finished image is renamed onto ``path`` as the last act."""
    steps = _Steps(progress, cancel)
    with steps("Fetching the Debian cloud kernel"):
        deb = fetch_kernel_deb(cache_dir, cancel=cancel)
    with steps("Unpacking the kernel"):
        kernel = extract_kernel(deb, work / "deb", cancel=cancel)
    shim: ShimFiles | None = None
    if boot_loader == "shim":
        with steps("Fetching Debian's signed shim"):
            shim_debs = fetch_shim_debs(cache_dir, cancel=cancel)
        with steps("Unpacking the shim"):
            shim = extract_shim(shim_debs, work / "shim", cancel=cancel)
    with steps("Building the initrd"):
        initrd = work / "initrd.img"
        initrd.write_bytes(build_initrd(kernel))
    with steps("Partitioning"):
        image = work / "disk.img"
        esp, xbootldr, root = create_gpt(image, DISK_SIZE, _layout(), disk_guid=_guid("disk"))
    with steps("Building the ESP"):
        esp_img = _build_esp(work, esp.size_bytes, cancel, shim)
    with steps("Building the XBOOTLDR partition"):
        xbootldr_img = _build_xbootldr(work, xbootldr.size_bytes, kernel, initrd, cancel)
    with steps("Building the root filesystem"):
        root_img = _build_root(work, root.size_bytes, cancel)
    _write_partitions(image, [(esp, esp_img), (xbootldr, xbootldr_img), (root, root_img)], progress, cancel)
    cancel.check()
    publish(image, path, overwrite=overwrite)


class _Steps:
    """``with steps("name"):`` reports a one-unit step and checks for cancel before and after it."""

    def __init__(self, progress: Progress, cancel: CancelToken) -> None:
        self.progress, self.cancel = progress, cancel

    def __call__(self, name: str) -> _Steps:
        self.cancel.check()
        self.progress.begin(name, 1)
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.progress.update(1)
            self.cancel.check()


def _layout() -> list[NewPartition]:
    return [
        NewPartition("ESP", pt.ESP, ESP_SIZE, partition_guid=_guid("partition/esp")),
        NewPartition("XBOOTLDR", pt.XBOOTLDR, XBOOTLDR_SIZE, partition_guid=_guid("partition/xbootldr")),
        NewPartition("root-x86-64", pt.ROOT_X86_64, None, partition_guid=_guid("partition/root")),
    ]


# --- external tools -----------------------------------------------------------------------------


def _run(
    *cmd: str | os.PathLike[str],
    cancel: CancelToken,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    hint: str = "",
) -> str:
    """:func:`app.tools.run_tool` with SOURCE_DATE_EPOCH fixed, so tools that stamp times are reproducible."""
    env = {"SOURCE_DATE_EPOCH": str(EPOCH), **(env or {})}
    return run_tool(*cmd, cancel=cancel, cwd=cwd, env=env, hint=hint)


# --- the kernel package -------------------------------------------------------------------------


def _apt_fields(package: str, cancel: CancelToken) -> dict[str, str] | None:
    """``apt-cache show`` of the candidate version as a dict, or None when apt does not know it."""
    try:
        text = _run("apt-cache", "show", "--no-all-versions", package, cancel=cancel)
    except ToolMissingError:
        raise
    except ShieldwrightError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        if not line[0].isspace() and ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    return fields or None


def fetch_kernel_deb(cache_dir: Path, *, cancel: CancelToken | None = None) -> Path:
    """The current Debian cloud kernel .deb, downloaded with ``apt-get download`` into ``cache_dir``.

    The versioned package is the metapackage's dependency. A cached .deb is reused when its SHA-256
    matches apt's; with no apt lists at all, the newest cached kernel is used so the demo builds offline.
    """
    cancel = cancel or CancelToken()
    package = _versioned_kernel(_apt_fields(KERNEL_METAPACKAGE, cancel))
    return _fetch_deb(
        package or KERNEL_METAPACKAGE, "linux-image-*-cloud-amd64_*.deb", cache_dir, cancel,
        known=package is not None,
    )  # fmt: skip


def fetch_shim_debs(cache_dir: Path, *, cancel: CancelToken | None = None) -> dict[str, Path]:
    """``shim-signed`` and ``shim-helpers-amd64-signed`` .debs (package → file), cached like the kernel.

    The cache is keyed by version: the .deb's name carries it, a cached file is reused while its SHA-256
    is apt's candidate's, and a newer version replaces the older one. No root and no install: apt-get
    download only fetches and verifies the file.
    """
    cancel = cancel or CancelToken()
    return {
        package: _fetch_deb(package, f"{package}_*.deb", cache_dir, cancel)
        for package in (SHIM_PACKAGE, SHIM_HELPERS_PACKAGE)
    }


def _fetch_deb(
    package: str, cached_glob: str, cache_dir: Path, cancel: CancelToken, *, known: bool = True
) -> Path:
    """apt's candidate of ``package`` in ``cache_dir``: reused when cached with apt's SHA-256, else
    downloaded; offline (no apt lists, no mirror), the newest cached file matching ``cached_glob``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = sorted(cache_dir.glob(cached_glob), key=lambda p: p.stat().st_mtime)
    info = _apt_fields(package, cancel) if known else None
    if not info or "Version" not in info:
        if cached:
            return cached[-1]
        raise ToolMissingError(
            f"apt does not know the Debian package {package}",
            "run `sudo apt-get update` (the demo image is built from Debian packages)",
        )
    target = cache_dir / Path(info.get("Filename", f"{package}_{info['Version']}_amd64.deb")).name
    if target.exists() and _sha256(target) == info.get("SHA256", "").lower():
        return target
    try:
        _apt_download(f"{package}={info['Version']}", target, cancel)
    except CancelledError:
        raise
    except ShieldwrightError:
        if cached:  # offline with stale lists: an older package still makes a perfectly good demo
            return cached[-1]
        raise
    for old in cached:  # a newer version replaces the older ones; the cache holds one
        if old != target:
            old.unlink(missing_ok=True)
    return target


def _apt_download(spec: str, target: Path, cancel: CancelToken) -> None:
    """``apt-get download spec`` into a private directory beside ``target``, then rename onto it, so an
    interrupted download never leaves a partial .deb under the cached name."""
    download = Path(tempfile.mkdtemp(prefix=".download.", dir=target.parent))
    try:
        # As root, apt would hand the download to its _apt user, who cannot write into a user's cache
        # (it warns and falls back); say so up front, which also works where root has no capabilities.
        sandbox = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
        _run(
            "apt-get",
            *sandbox,
            "download",
            spec,
            cancel=cancel,
            cwd=download,
            hint="check the network connection to the Debian mirror",
        )
        debs = list(download.glob("*.deb"))
        if len(debs) != 1:
            raise ShieldwrightError(f"apt-get download {spec} produced no .deb", "try again")
        os.replace(debs[0], target)  # apt-get verified it against the signed package lists
    finally:
        shutil.rmtree(download, ignore_errors=True)


def _versioned_kernel(meta: Mapping[str, str] | None) -> str | None:
    """``linux-image-6.1.0-56-cloud-amd64`` from the metapackage's ``Depends`` field."""
    if not meta:
        return None
    for alternative in meta.get("Depends", "").replace("|", ",").split(","):
        name = alternative.split("(")[0].strip()
        if name.startswith("linux-image-") and name != KERNEL_METAPACKAGE:
            return name
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def extract_kernel(deb: Path, dest: Path, *, cancel: CancelToken | None = None) -> KernelFiles:
    """Unpack the kernel .deb (``dpkg-deb -x``) and pick the kernel and the initrd's modules.

    Debian's cloud kernel builds ext4 and the 8250 serial console in, but virtio_pci and virtio_blk are
    modules; their dependencies are read from each module's ``.modinfo`` (the .deb has no modules.dep).
    Bookworm ships modules uncompressed (CONFIG_MODULE_COMPRESS_NONE); compressed ones are refused.
    """
    cancel = cancel or CancelToken()
    dest.mkdir(parents=True, exist_ok=True)
    _run("dpkg-deb", "-x", deb, dest, cancel=cancel, hint=f"the cached package may be damaged; delete {deb}")
    kernels = sorted((dest / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise ShieldwrightError(
            f"{deb.name} does not hold exactly one /boot/vmlinuz-*", "use a kernel package"
        )
    version = kernels[0].name.removeprefix("vmlinuz-")
    moddir = dest / "lib" / "modules" / version
    by_name: dict[str, tuple[Path, list[str]]] = {}
    for ko in moddir.rglob("*.ko*"):
        if ko.suffix != ".ko":
            raise ShieldwrightError(
                f"compressed kernel module {ko.name} is not supported", "use a Debian 12 kernel"
            )
        info = _modinfo(ko.read_bytes())
        name = info.get("name", ko.stem.replace("-", "_"))
        by_name[name] = (ko, [d for d in info.get("depends", "").split(",") if d])
    config = dest / "boot" / f"config-{version}"
    builtin = _builtin_config(config)
    ordered: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in ordered or name in chain:
            return
        if name not in by_name:
            if builtin.get(name):
                return
            raise ShieldwrightError(f"kernel {version} has no module {name}", "use a Debian cloud kernel")
        for dep in by_name[name][1]:
            visit(dep, (*chain, name))
        ordered.append(name)

    for wanted in INITRD_MODULES:
        visit(wanted, ())
    modules = tuple((str(by_name[n][0].relative_to(moddir)), by_name[n][0]) for n in ordered)
    return KernelFiles(version, kernels[0], config, modules)


def extract_shim(debs: Mapping[str, Path], dest: Path, *, cancel: CancelToken | None = None) -> ShimFiles:
    """Unpack the shim packages (``dpkg-deb -x``) and find the signed shim, fallback and MokManager."""
    cancel = cancel or CancelToken()
    dest.mkdir(parents=True, exist_ok=True)
    versions: dict[str, str] = {}
    for package, deb in debs.items():
        _run(
            "dpkg-deb",
            "-x",
            deb,
            dest,
            cancel=cancel,
            hint=f"the cached package may be damaged; delete {deb}",
        )
        versions[package] = _run("dpkg-deb", "-f", deb, "Version", cancel=cancel).strip()
    files = [dest / rel for rel in (SHIM_SIGNED, FALLBACK_SIGNED, MOKMANAGER_SIGNED)]
    for f in files:
        if not f.is_file():
            raise ShieldwrightError(
                f"the shim packages hold no /{f.relative_to(dest)}",
                "use Debian's shim-signed packages (amd64)",
            )
    return ShimFiles(files[0], files[1], files[2], versions)


def _builtin_config(config: Path) -> dict[str, bool]:
    """Which of our wanted modules the kernel config builds in (``=y``), keyed by module name."""
    if not config.exists():
        return {}
    text = config.read_text(errors="replace")
    return {
        name: f"CONFIG_{option}=y" in text
        for name, option in (("virtio_pci", "VIRTIO_PCI"), ("virtio_blk", "VIRTIO_BLK"), ("virtio", "VIRTIO"))
    }


def _modinfo(elf: bytes) -> dict[str, str]:
    """The ``.modinfo`` section of an ELF64 little-endian kernel module as key → first value."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return {}
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize)
        return name, offset, size

    _, str_off, _ = section(shstrndx)
    info: dict[str, str] = {}
    for i in range(shnum):
        name_off, offset, size = section(i)
        end = elf.index(b"\0", str_off + name_off)
        if elf[str_off + name_off : end] == b".modinfo":
            for item in elf[offset : offset + size].split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, value)
    return info


# --- the initrd ---------------------------------------------------------------------------------

#: The initrd's /init: prints INITRD_MARKER, then ``PCR11=<hex>`` (sha256 bank) when the VM has a TPM;
#: ``shieldwright.test=poweroff`` powers off right there. Otherwise it loads the virtio modules, finds the
#: root by its DPS type GUID and switches to it; the root's init (``_ROOT_INIT``) prints ROOT_MARKER and
#: powers off when any ``shieldwright.test=`` option is given, else starts a shell.
_INIT = r"""#!/bin/sh
# Shieldwright demo initrd. Kernel command line options it understands:
#   shieldwright.test=poweroff   print the marker line and power off at once
#   shieldwright.test=<other>    continue; the root's init powers off after its own marker line
#   root=/dev/XXX                use this root device instead of the GPT's x86-64 root type GUID
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "@INITRD_MARKER@ (kernel $(uname -r))"
test_mode=""
root_dev=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        shieldwright.test=*) test_mode="${arg#shieldwright.test=}" ;;
        root=/dev/*) root_dev="${arg#root=}" ;;
    esac
done
# With a TPM (the cloud kernel has the drivers built in), print PCR 11 as the TPM holds it: a template's
# end-to-end test compares it with the build's prediction. Without one this costs at most 1 s.
i=0
while [ ! -d /sys/class/tpm/tpm0 ] && [ "$i" -lt 10 ]; do sleep 0.1; i=$((i + 1)); done
if [ -r /sys/class/tpm/tpm0/pcr-sha256/11 ]; then
    echo "PCR11=$(cat /sys/class/tpm/tpm0/pcr-sha256/11)"
fi
if [ "$test_mode" = poweroff ]; then
    echo "shieldwright-demo: powering off (shieldwright.test=poweroff)"
    sync
    poweroff -f
fi
for ko in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$(uname -r)/$ko" || echo "shieldwright-demo: insmod $ko failed"
done

# Print /dev/<partition> of the first partition whose GPT type is the discoverable x86-64 root
# (UAPI DPS) and that is not marked no-auto (attribute bit 63), reading the GPT with dd and od.
find_root() {
    for sys in /sys/block/*; do
        disk="${sys##*/}"
        [ -b "/dev/$disk" ] || continue
        ss=$(cat "$sys/queue/logical_block_size" 2>/dev/null || echo 512)
        sig=$(dd if="/dev/$disk" bs="$ss" skip=1 count=1 2>/dev/null | od -An -c -N8 | tr -d ' ')
        [ "$sig" = "EFIPART" ] || continue
        set -- $(dd if="/dev/$disk" bs="$ss" skip=1 count=1 2>/dev/null | od -An -tu4 -j72 -N16)
        lba=$1 count=$3 size=$4
        [ "$size" -ge 128 ] 2>/dev/null || continue
        n=0
        dd if="/dev/$disk" bs="$ss" skip="$lba" count=$(( (count * size + ss - 1) / ss )) 2>/dev/null |
        od -An -tx1 -v -w"$size" | while read -r line; do
            n=$((n + 1))
            [ "$n" -le "$count" ] || break
            set -- $line
            [ "$1$2$3$4$5$6$7$8$9${10}${11}${12}${13}${14}${15}${16}" = "@ROOT_TYPE@" ] || continue
            [ $(( 0x${56} & 0x80 )) -eq 0 ] || continue
            for part in "$sys"/"$disk"*; do
                if [ "$(cat "$part/partition" 2>/dev/null)" = "$n" ]; then
                    echo "/dev/${part##*/}"
                    exit 0
                fi
            done
        done
    done
}

if [ -z "$root_dev" ]; then
    tries=0
    while [ -z "$root_dev" ] && [ "$tries" -lt 50 ]; do
        root_dev=$(find_root | head -n 1)
        [ -n "$root_dev" ] || { sleep 0.1; tries=$((tries + 1)); }
    done
fi
if [ -n "$root_dev" ] && mount -t ext4 -o ro "$root_dev" /newroot && [ -x /newroot/sbin/init ]; then
    echo "shieldwright-demo: switching to root $root_dev"
    mount --move /dev /newroot/dev
    umount /sys /proc
    exec switch_root /newroot /sbin/init
fi
echo "shieldwright-demo: no usable root partition found"
if [ -z "$test_mode" ]; then
    echo "shieldwright-demo: starting a shell; exit it to power off"
    setsid cttyhack sh
fi
sync
poweroff -f
"""

_ROOT_INIT = r"""#!/bin/sh
# Shieldwright demo root init: print a marker, then power off (any shieldwright.test= option) or run a shell.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
[ -c /dev/null ] || mount -t devtmpfs devtmpfs /dev
. /etc/os-release
hostname -F /etc/hostname
echo "@ROOT_MARKER@ ($PRETTY_NAME, kernel $(uname -r))"
case " $(cat /proc/cmdline) " in
    *" shieldwright.test="*)
        echo "shieldwright-demo: powering off"
        sync
        poweroff -f
        ;;
esac
echo "shieldwright-demo: starting a shell; exit it to power off"
setsid cttyhack sh -l
sync
poweroff -f
"""

OS_RELEASE = """\
NAME="Shieldwright Demo"
ID=shieldwright-demo
VERSION_ID=1
VERSION="1 (busybox)"
PRETTY_NAME="Shieldwright Demo 1 (busybox)"
"""


def _gpt_type_bytes(guid: str) -> str:
    """A GUID as the 32 hex digits of its on-disk (mixed-endian) form, as ``od -tx1`` prints them."""
    return uuid.UUID(guid).bytes_le.hex()


def build_initrd(kernel: KernelFiles) -> bytes:
    """A gzip-compressed newc cpio: busybox, applet links, /dev/console, the virtio modules and /init.

    Written by our own cpio writer so device nodes and root ownership need no root, and the bytes are
    reproducible (fixed mtimes, fixed inode numbers, gzip mtime 0).
    """
    init = _INIT.replace("@INITRD_MARKER@", INITRD_MARKER).replace(
        "@ROOT_TYPE@", _gpt_type_bytes(pt.ROOT_X86_64)
    )
    moddir = f"lib/modules/{kernel.version}"
    archive = CpioWriter(mtime=EPOCH)
    for d in ("bin", "dev", "etc", "lib", "lib/modules", moddir, "newroot", "proc", "run", "sys", "tmp"):
        archive.directory(d)
    archive.symlink("sbin", "bin")
    archive.device("dev/console", 0o600, 5, 1)
    archive.device("dev/null", 0o666, 1, 3)
    archive.file("bin/busybox", _require_busybox().read_bytes(), 0o755)
    for applet in _APPLETS:
        archive.symlink(f"bin/{applet}", "busybox")
    for rel, ko in kernel.modules:
        for parent in reversed(Path(rel).parents[:-1]):
            archive.directory(f"{moddir}/{parent}")
        archive.file(f"{moddir}/{rel}", ko.read_bytes(), 0o644)
    archive.file("lib/modules/load-order", "".join(f"{rel}\n" for rel, _ in kernel.modules).encode(), 0o644)
    archive.file("init", init.encode(), 0o755)
    return gzip.compress(archive.finish(), compresslevel=9, mtime=0)


# --- filesystems --------------------------------------------------------------------------------


def _sparse_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def _build_esp(work: Path, size: int, cancel: CancelToken, shim: ShimFiles | None = None) -> Path:
    """FAT32 with systemd-boot at its own path and loader.conf; at the removable-media path systemd-boot,
    or with ``shim`` Debian's shim, fallback and MokManager as :data:`SHIM_ESP_FILES` lays them out."""
    if not SYSTEMD_BOOT_EFI.exists():
        raise ToolMissingError(
            f"{SYSTEMD_BOOT_EFI} is not installed", "run `make setup` (package systemd-boot-efi)"
        )
    img = _sparse_file(work / "esp.img", size)
    volid = _guid("fs/esp").replace("-", "")[:8]
    _run("mkfs.vfat", "--invariant", "-F", "32", "-n", "ESP", "-i", volid, img, cancel=cancel)
    loader_conf = work / "loader.conf"
    loader_conf.write_text(f"timeout 3\ndefault {ENTRY_TOKEN}.conf\neditor no\n")
    os.utime(loader_conf, (EPOCH, EPOCH))
    env = {"MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": os.devnull}
    files: dict[str, Path] = {
        "EFI/BOOT/BOOTX64.EFI": SYSTEMD_BOOT_EFI,
        "EFI/systemd/systemd-bootx64.efi": SYSTEMD_BOOT_EFI,
        "loader/loader.conf": loader_conf,
    }
    if shim is not None:
        by_path = shim.by_package_path()
        files.update({dst: by_path[src] for dst, src in SHIM_ESP_FILES.items()})
    folders = sorted(
        {"/".join(name.split("/")[:depth]) for name in files for depth in range(1, name.count("/") + 1)}
    )
    _run("mmd", "-i", img, *[f"::/{d}" for d in folders], cancel=cancel, env=env)
    for dst, src in files.items():
        _run("mcopy", "-i", img, "-m", "-o", src, f"::/{dst}", cancel=cancel, env=env)
    return img


def _build_xbootldr(work: Path, size: int, kernel: KernelFiles, initrd: Path, cancel: CancelToken) -> Path:
    """ext4 with the kernel and initrd in the kernel-install layout and a BLS type-1 entry."""
    tree = work / "xbootldr"
    kdir = tree / ENTRY_TOKEN / kernel.version
    kdir.mkdir(parents=True)
    (tree / "loader" / "entries").mkdir(parents=True)
    shutil.copyfile(kernel.vmlinuz, kdir / "linux")
    shutil.copyfile(initrd, kdir / "initrd")
    (tree / "loader" / "entries" / f"{ENTRY_TOKEN}.conf").write_text(
        f"title      Shieldwright demo (busybox)\n"
        f"version    {kernel.version}\n"
        f"sort-key   {ENTRY_TOKEN}\n"
        f"linux      /{ENTRY_TOKEN}/{kernel.version}/linux\n"
        f"initrd     /{ENTRY_TOKEN}/{kernel.version}/initrd\n"
        f"options    {KERNEL_CMDLINE}\n"
    )
    return _make_ext4(work / "xbootldr.img", size, tree, "XBOOTLDR", "fs/xbootldr", cancel)


def _build_root(work: Path, size: int, cancel: CancelToken) -> Path:
    """ext4 with a busybox userland: just enough to show a root was reached and to identify itself."""
    tree = work / "root"
    for d in ("bin", "dev", "etc", "proc", "root", "run", "sys", "tmp", "usr/lib", "var"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    (tree / "sbin").symlink_to("bin")
    shutil.copyfile(_require_busybox(), tree / "bin" / "busybox")
    (tree / "bin" / "busybox").chmod(0o755)
    for applet in _APPLETS:
        (tree / "bin" / applet).symlink_to("busybox")
    (tree / "bin" / "init").write_text(_ROOT_INIT.replace("@ROOT_MARKER@", ROOT_MARKER))
    (tree / "bin" / "init").chmod(0o755)
    (tree / "etc" / "os-release").write_text(OS_RELEASE)
    (tree / "etc" / "hostname").write_text("shieldwright-demo\n")
    (tree / "etc" / "fstab").write_text("# the root is mounted read-only by the initrd; nothing else\n")
    (tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tree / "etc" / "group").write_text("root:x:0:\n")
    (tree / "tmp").chmod(0o1777)
    return _make_ext4(work / "root.img", size, tree, "root", "fs/root", cancel, devices=True)


def _require_busybox() -> Path:
    if not BUSYBOX.exists():
        raise ToolMissingError(f"{BUSYBOX} is not installed", "run `make setup` (package busybox-static)")
    return BUSYBOX


def _make_ext4(
    img: Path,
    size: int,
    tree: Path,
    label: str,
    uuid_name: str,
    cancel: CancelToken,
    *,
    devices: bool = False,
) -> Path:
    """``mkfs.ext4 -d`` from ``tree``, then ``debugfs -w`` to make every inode root-owned, add device
    nodes and pin timestamps: none of which an ordinary user can arrange in the source directory."""
    paths = _tree_paths(tree)
    for p in [tree, *paths]:
        os.utime(p, (EPOCH, EPOCH), follow_symlinks=False)
    fs_uuid = _guid(uuid_name)
    _sparse_file(img, size)
    env = {"E2FSPROGS_FAKE_TIME": str(EPOCH)}
    _run(
        "mkfs.ext4", "-q", "-F", "-b", "4096", "-L", label, "-U", fs_uuid,
        "-E", f"hash_seed={fs_uuid},root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0",
        "-d", tree, img,
        cancel=cancel, env=env,
    )  # fmt: skip
    inodes = ["/" + p.relative_to(tree).as_posix() for p in paths]
    script = [f"sif {p} {field} 0" for p in inodes for field in ("uid", "gid")]
    if devices:
        # debugfs's mknod takes a name in the current directory and leaves the permission bits 0.
        script += ["cd /dev", "mknod console c 5 1", "sif console mode 020600"]
        script += ["mknod null c 1 3", "sif null mode 020666", "cd /"]
        inodes += ["/dev/console", "/dev/null"]
    # Last, so nothing touches them again: ctime comes from the build, and debugfs bumps the rest.
    script += [
        f"sif {p} {field} @{EPOCH}"
        for p in ["/", "/lost+found", *inodes]
        for field in ("atime", "mtime", "ctime", "crtime")
    ]
    commands = img.with_suffix(".debugfs")
    commands.write_text("\n".join(script) + "\n")
    _run("debugfs", "-w", "-f", commands, img, cancel=cancel, env=env)
    return img


def _tree_paths(tree: Path) -> list[Path]:
    """Every path below ``tree`` (not following symlinks), parents before children."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        base = Path(dirpath)
        out += [base / n for n in sorted(dirnames + filenames)]
    return sorted(out, key=lambda p: (len(p.parts), p.as_posix()))


# --- assembling the disk ------------------------------------------------------------------------


def _write_partitions(
    image: Path,
    parts: Sequence[tuple[PlacedPartition, Path]],
    progress: Progress,
    cancel: CancelToken,
) -> None:
    """Copy each filesystem file into the image at its partition's offset, skipping holes and zero
    chunks (the image is freshly truncated, so skipped ranges already read as zeros)."""
    total = sum(p.size_bytes for p, _ in parts)
    progress.begin("Writing partitions", total)
    done = 0
    chunk = 4 * MiB
    zero = bytes(chunk)
    with open(image, "r+b") as out:
        for placed, src in parts:
            size = src.stat().st_size
            if size > placed.size_bytes:
                raise ShieldwrightError(f"{src.name} is larger than partition {placed.number}")
            with RawImage(src) as fs:
                for start, length in fs.allocated_ranges():
                    pos, end = start, start + length
                    while pos < end:
                        cancel.check()
                        data = fs.read(pos, min(chunk, end - pos))
                        if data != zero[: len(data)]:
                            out.seek(placed.offset + pos)
                            out.write(data)
                        pos += len(data)
                        progress.update(done + pos)
            done += placed.size_bytes
            progress.update(done)
