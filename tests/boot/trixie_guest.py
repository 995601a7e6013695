"""Test support: a Debian 13 (trixie) base image whose initrd unlocks a LUKS2 root with a systemd-tpm2 token.

Unlocking with a TPM needs systemd >= 255 in the initrd; Debian 12 has 252, trixie 257. The recipe is the
one verified on this platform (../shared/reference/tpm-unlock.md): ``mmdebstrap`` a minimal trixie with
systemd, systemd-cryptsetup, cryptsetup, tpm2-tss and tpm2-tools (dracut's tpm2-tss module requires the
``tpm2`` binary), install the cloud kernel without an initrd, then build one with dracut
(``hostonly=no``; systemd, crypt, systemd-cryptsetup, tpm2-tss, systemd-pcrphase). The disk: a GPT with an
empty ESP and a discoverable x86-64 root (ext4 of the tree), so the UKI needs no root= on its command
line: systemd-stub sets LoaderDevicePartUUID, systemd-gpt-auto-generator finds the root, sees LUKS and
unlocks it with ``tpm2-device=auto``. The root's init (``init=`` :data:`MARKER_INIT`) prints
:data:`ROOT_MARKER` with the device it was mounted from, then powers the machine off. Booted by systemd
instead (:data:`SYSTEMD_CMDLINE`), the root applies specialization credentials, runs Debian's cloud-init
with NoCloud (:data:`CLOUD_CFG`) and :data:`REPORT_UNIT` says what the VM got.

Built once as root (``mmdebstrap --mode=auto``: root here, unshare otherwise; ~35 s plus the image) and
cached under ~/.cache/shieldwright/fixtures keyed by every input below. The trixie tree is kept too:
its cryptsetup and systemd-cryptenroll are the independent readers of our token (run with ``chroot``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_cache_path

from app.disk import partition_types as pt
from app.disk.partitioning import NewPartition, create_gpt

MiB = 1024 * 1024
FIXTURES = user_cache_path("shieldwright") / "fixtures"
MIRROR = "http://deb.debian.org/debian"
SUITE = "trixie"
PACKAGES = (
    "systemd", "systemd-sysv", "udev", "kmod", "e2fsprogs", "systemd-cryptsetup", "cryptsetup", "dracut",
    "systemd-boot-efi", "libtss2-esys-3.0.2-0t64", "libtss2-rc0t64", "libtss2-mu-4.0.1-0t64",
    "libtss2-tcti-device0t64", "tpm2-tools", "zstd", "cloud-init",
)  # fmt: skip
#: cloud-init as an image made for NoCloud has it: NoCloud first (ds-identify then enables cloud-init
#: without looking, as the seed is written later in the boot), no network to render (the VM has none).
CLOUD_CFG = """\
datasource_list: [ NoCloud, None ]
network: {config: disabled}
"""
DRACUT_CONF = """\
hostonly="no"
add_dracutmodules+=" systemd crypt systemd-cryptsetup tpm2-tss systemd-pcrphase "
add_drivers+=" virtio_blk dm_crypt xts aesni_intel ext4 "
compress="zstd"
"""
ROOT_MARKER = "SHIELDWRIGHT-TRIXIE-ROOT"
MARKER_INIT = "/usr/local/sbin/shieldwright-root"
#: The root's init: say which device the root came from (the unlocked mapping), then power off.
MARKER_SCRIPT = f"""\
#!/bin/sh
source=$(while read dev mnt rest; do [ "$mnt" = / ] && echo "$dev"; done < /proc/mounts)
echo "{ROOT_MARKER} from $source" > /dev/console
sync
echo o > /proc/sysrq-trigger
sleep 30
"""
#: The UKI's command line: no root= (gpt-auto finds it), our init, the serial console, reset on panic.
CMDLINE = f"console=ttyS0 init={MARKER_INIT} panic=-1 systemd.show_status=1"
#: The root booted by systemd itself (no init=), writable, first boot without prompts: the services that
#: apply credentials run, then :data:`REPORT_UNIT` says what the VM was specialized with and powers off.
SYSTEMD_CMDLINE = "console=ttyS0 rw panic=-1 systemd.show_status=1 systemd.firstboot=no"
REPORT_DONE = "SHIELDWRIGHT-SPECIALIZED"
REPORT_SCRIPT = f"""\
#!/bin/sh
{{
echo "SW-SPEC hostname=$(cat /proc/sys/kernel/hostname) etc=$(cat /etc/hostname)"
echo "SW-SPEC keys=$(base64 -w0 /root/.ssh/authorized_keys 2>/dev/null)"
f=/etc/shieldwright/hello.txt
echo "SW-SPEC file=$(base64 -w0 $f 2>/dev/null) mode=$(stat -c %a $f 2>/dev/null)"
s=/var/lib/cloud/seed/nocloud
echo "SW-SPEC seed=$(stat -c %a $s $s/user-data $s/meta-data 2>/dev/null | tr '\\n' ' ')"
echo "SW-SPEC cloudinit=$(base64 -w0 /run/cloud-init/result.json 2>/dev/null)"
f=/etc/shieldwright/from-cloud-init.txt
echo "SW-SPEC cloudfile=$(base64 -w0 $f 2>/dev/null)"
echo "SW-SPEC iid=$(cat /var/lib/cloud/data/instance-id 2>/dev/null)"
echo "SW-SPEC cycles=$(journalctl -b -q --no-pager | grep -c 'ordering cycle')"
u=cloud-init-local.service
echo "SW-SPEC order=$(systemctl show -P DropInPaths $u) after=$(systemctl show -P After $u)"
echo "SW-SPEC root=$(sed -n 's/^root:\\([^:]*\\):.*/\\1/p' /etc/shadow)"
echo "SW-SPEC failed=$(systemctl --failed --no-legend --plain | cut -d' ' -f1 | tr '\\n' ' ')"
echo "{REPORT_DONE}"
}} > /dev/console 2>&1
systemctl --no-block poweroff
"""
#: Without default dependencies: multi-user.target is not ordered after it, so it can wait for cloud-final
#: (which is ordered after multi-user.target).
REPORT_UNIT = """\
[Unit]
Description=Shieldwright test: report the specialization values applied
DefaultDependencies=no
After=sysinit.target basic.target systemd-user-sessions.service cloud-final.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/shieldwright-report

[Install]
WantedBy=multi-user.target
"""
#: What systemd-cryptsetup shows when no token unlocked the volume and it falls back to a passphrase.
PASSPHRASE_PROMPT = "Please enter passphrase for disk"
#: What systemd shows when the TPM would not unseal and no passphrase keyslot is left to ask for (seen
#: with the provisioning passphrase removed: the root device then times out and the initrd stops).
CRYPTSETUP_FAILED = "Failed to start systemd-cryptsetup"
ESP_SIZE = 100 * MiB
ROOT_SIZE = 640 * MiB
ROOT_NUMBER = 2
_BUILDER_VERSION = "4"


@dataclass(frozen=True)
class TrixieGuest:
    """The cached guest: the base image, the UKI's inputs (kernel, initrd, trixie's systemd-stub) and the
    trixie tree (for its cryptsetup and systemd-cryptenroll)."""

    image: Path
    vmlinuz: Path
    initrd: Path
    stub: Path
    rootfs: Path

    def chroot(self, *argv: str | Path, input_file: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run a trixie program in its tree (``unshare -r`` first when we are not root); ``input_file`` is
        copied into the tree's /tmp and its path there replaces the literal ``@FILE@`` in ``argv``."""
        inside = ""
        if input_file is not None:
            inside = f"/tmp/{input_file.name}"
            shutil.copyfile(input_file, self.rootfs / inside.lstrip("/"))
        args = [str(a).replace("@FILE@", inside) for a in argv]
        prefix = [] if os.geteuid() == 0 else ["unshare", "--map-root-user"]
        try:
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
            argv = [*prefix, "chroot", str(self.rootfs), *args]
            return subprocess.run(argv, capture_output=True, text=True, env=env)
        finally:
            if inside:
                (self.rootfs / inside.lstrip("/")).unlink(missing_ok=True)


def _key() -> str:
    h = hashlib.sha256()
    for part in (_BUILDER_VERSION, SUITE, MIRROR, " ".join(PACKAGES), DRACUT_CONF, MARKER_SCRIPT,
                 REPORT_SCRIPT, REPORT_UNIT, CLOUD_CFG, str(ESP_SIZE), str(ROOT_SIZE)):  # fmt: skip
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def trixie_guest() -> TrixieGuest:
    """The cached guest, built first if needed (see the module doc)."""
    home = FIXTURES / f"trixie-tpm-{_key()}"
    guest = TrixieGuest(home / "base.img", home / "vmlinuz", home / "initrd.img", home / "linuxx64.efi.stub",
                        home / "rootfs")  # fmt: skip
    if (home / "complete").exists():
        return guest
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    try:
        _build(home, guest)
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise
    (home / "complete").write_text("ok\n")
    return guest


def _run(*argv: str | Path) -> None:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-3000:]}")


def _build(home: Path, guest: TrixieGuest) -> None:
    conf = home / "dracut.conf"
    conf.write_text(DRACUT_CONF)
    marker = home / "marker.sh"
    marker.write_text(MARKER_SCRIPT)
    report, unit = home / "report.sh", home / "report.service"
    report.write_text(REPORT_SCRIPT)
    unit.write_text(REPORT_UNIT)
    cloud_cfg = home / "cloud.cfg"
    cloud_cfg.write_text(CLOUD_CFG)
    _run(
        "mmdebstrap", "--mode=auto", "--variant=minbase", f"--include={','.join(PACKAGES)}",
        "--customize-hook=chroot \"$1\" env INITRD=No DEBIAN_FRONTEND=noninteractive "
        "apt-get install -y -q --no-install-recommends linux-image-cloud-amd64",
        f"--customize-hook=cp {conf} \"$1/etc/dracut.conf.d/90-shieldwright.conf\"",
        "--customize-hook=kver=$(ls \"$1/lib/modules\"); "
        "chroot \"$1\" dracut --force --kver \"$kver\" /boot/initrd.img-$kver",
        f"--customize-hook=install -m 0755 {marker} \"$1{MARKER_INIT}\"",
        "--customize-hook=echo shieldwright-trixie > \"$1/etc/hostname\"",
        f"--customize-hook=install -m 0755 {report} \"$1/usr/local/sbin/shieldwright-report\"",
        f"--customize-hook=install -m 0644 {unit} \"$1/etc/systemd/system/shieldwright-report.service\"",
        "--customize-hook=ln -s /etc/systemd/system/shieldwright-report.service "
        "\"$1/etc/systemd/system/multi-user.target.wants/shieldwright-report.service\"",
        f"--customize-hook=cp {cloud_cfg} \"$1/etc/cloud/cloud.cfg.d/99-shieldwright.cfg\"",
        # Masked for this test VM, which has no network to wait for, and under TCG would spend ~40 s (past
        # the 90 s start timeout when cloud-init runs beside it) locking firmware code for pcrlock
        # policies, which it does not use.
        "--customize-hook=for u in systemd-networkd-wait-online.service $(cd \"$1/usr/lib/systemd/system\" "
        "&& ls systemd-pcrlock*.service); do ln -sf /dev/null \"$1/etc/systemd/system/$u\"; done",
        # Prepared for first-boot provisioning (systemd-firstboot(1)): root unprovisioned, machine-id unset.
        "--customize-hook=sed -i 's/^root:[^:]*:/root:!unprovisioned:/' \"$1/etc/shadow\"",
        SUITE, guest.rootfs, MIRROR,
    )  # fmt: skip
    # After mmdebstrap, whose own clean-up empties /etc/machine-id after the hooks ran: "uninitialized"
    # makes the first boot a first boot (machine-id(5)); an empty file does not.
    (guest.rootfs / "etc" / "machine-id").write_text("uninitialized\n")
    boot = guest.rootfs / "boot"
    shutil.copyfile(next(boot.glob("vmlinuz-*")), guest.vmlinuz)
    shutil.copyfile(next(boot.glob("initrd.img-*")), guest.initrd)
    shutil.copyfile(guest.rootfs / "usr/lib/systemd/boot/efi/linuxx64.efi.stub", guest.stub)

    esp, root = home / "esp.img", home / "root.img"
    with open(esp, "wb") as f:
        f.truncate(ESP_SIZE)
    _run("mkfs.vfat", "-F", "32", "-n", "ESP", esp)
    with open(root, "wb") as f:
        f.truncate(ROOT_SIZE)
    _run("mkfs.ext4", "-q", "-F", "-L", "root", "-d", guest.rootfs, root)
    size = ESP_SIZE + ROOT_SIZE + 4 * MiB
    placed = create_gpt(guest.image, size, [
        NewPartition("esp", pt.ESP, ESP_SIZE),
        NewPartition("root", pt.ROOT_X86_64, ROOT_SIZE),
    ])  # fmt: skip
    assert [p.number for p in placed] == [1, ROOT_NUMBER]
    for part, src in zip(placed, (esp, root), strict=True):
        _run("dd", f"if={src}", f"of={guest.image}", "bs=1M", f"seek={part.offset}", "oflag=seek_bytes",
             "conv=notrunc,sparse", "status=none")  # fmt: skip
    esp.unlink()
    root.unlink()


def build_template(guest: TrixieGuest, template: Path, cmdline: str, name: str) -> Path:
    """A raw template of the guest by the build pipeline: root encrypted (a cheap KDF), the UKI from the
    guest's kernel, initrd and trixie's stub with ``cmdline``, signed with the snakeoil key the snakeoil
    variables trust, installed as ``\\EFI\\BOOT\\BOOTX64.EFI``, its PCRs predicted on those variables."""
    from app.boot import vm
    from app.signing.keys import load_signer
    from app.template.pipeline import BuildInputs, run_build
    from app.template.recipe import (
        BootOptions,
        CatalogOptions,
        EncryptionOptions,
        OutputOptions,
        PcrOptions,
        Recipe,
        SigningOptions,
        UkiOptions,
    )
    from tests.build_helpers import FAST_KDF, PASSPHRASE

    recipe = Recipe(
        base_image=guest.image,
        protect=[ROOT_NUMBER],
        signing=SigningOptions(uefi_cert=vm.SNAKEOIL_CERT, uefi_key=vm.SNAKEOIL_KEY),
        uki=UkiOptions(
            source="files",
            kernel=str(guest.vmlinuz),
            initrds=[str(guest.initrd)],
            cmdline=cmdline,
            stub=guest.stub,
        ),  # fmt: skip
        encryption=EncryptionOptions(kdf="pbkdf2", kdf_params=dict(FAST_KDF)),
        catalog=CatalogOptions(name=name, version="1.0.0.0", block_size=MiB),
        boot=BootOptions(install_removable=True),
        output=OutputOptions(path=template, format="raw"),
        pcr=PcrOptions(firmware_vars=vm.Firmware.snakeoil().vars_template),
    )
    signer = load_signer(vm.SNAKEOIL_CERT, vm.SNAKEOIL_KEY, passphrase=vm.SNAKEOIL_PASSPHRASE)
    run_build(BuildInputs(recipe, signer, signer, bytearray(PASSPHRASE.encode())))
    return template
