"""Test support for booting UKIs on OVMF Secure Boot + swtpm: a probe initrd, an ESP, and PCR parsing.

The runner itself (QEMU, swtpm, console tailing, cleanup) is :mod:`app.boot.vm`, which the product reuses;
this module holds only what a *test* guest needs.

The probe initrd is a busybox ``/init`` and nothing else: no modules. Debian's 6.1 cloud kernel builds the
TPM drivers in (``CONFIG_TCG_TPM=y``, ``CONFIG_TCG_TIS=y`` — QEMU's ``tpm-tis`` device, found through
ACPI ``MSFT0101`` — and ``CONFIG_TCG_CRB=y``; only ``tpm_vtpm_proxy`` is a module), the 8250 serial console
too, and the probe needs no disk, so the virtio modules :func:`app.template.demo.build_initrd` loads are not
needed either. The demo initrd cannot serve: its ``/init`` prints no PCRs.

What the probe prints (after mounting sysfs, waiting up to 5 s for ``/sys/class/tpm/tpm0``)::

    SHIELDWRIGHT-BOOT-OK
    PCR11=<HEX>                  sha256 bank, from /sys/class/tpm/tpm0/pcr-sha256/11 (kernel >= 5.12)
    PCR<n>.<bank>=<HEX>          every PCR in PROBE_PCRS for every active bank (pcr-<bank> directories)
    SHIELDWRIGHT-PROBE-DONE

then ``poweroff -f``, which with QEMU's ``-no-reboot`` ends the run. No systemd runs, so nothing extends
PCR 11 with phase words: what the guest reads is exactly the stub's section measurements. Note also the
kernel's EFI stub measures the initrd it gets from systemd-stub (``LINUX_EFI_INITRD_MEDIA_GUID``) into
PCR 9 — it says so on the console, "EFI stub: Measured initrd data into PCR 9".
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from app.boot.cpio import CpioWriter
from app.boot.vm import make_esp_image

BOOT_MARKER = "SHIELDWRIGHT-BOOT-OK"
DONE_MARKER = "SHIELDWRIGHT-PROBE-DONE"
#: The PCRs the probe prints: boot code, authority (4, 7); initrd as the kernel measured it (9); UKI (11).
PROBE_PCRS = (4, 7, 9, 11)
#: ``console=ttyS0``: the serial console is the only output QEMU captures. ``panic=-1``: a panic reboots at
#: once, which ``-no-reboot`` turns into QEMU exiting rather than a hang until the timeout.
PROBE_CMDLINE = "console=ttyS0 panic=-1"
BUSYBOX = Path("/bin/busybox")

_PROBE_INIT = r"""#!/bin/sh
# Shieldwright boot probe: say we got here, print the TPM's PCRs, power off.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "@BOOT_MARKER@"
i=0
while [ ! -d /sys/class/tpm/tpm0 ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -r /sys/class/tpm/tpm0/pcr-sha256/11 ]; then
    echo "PCR11=$(cat /sys/class/tpm/tpm0/pcr-sha256/11)"
else
    echo "PCR11=unavailable (no /sys/class/tpm/tpm0/pcr-sha256)"
fi
for bank in /sys/class/tpm/tpm0/pcr-*; do
    [ -d "$bank" ] || continue
    for n in @PCRS@; do
        echo "PCR$n.${bank##*/pcr-}=$(cat "$bank/$n")"
    done
done
echo "@DONE_MARKER@"
poweroff -f
"""

_APPLETS = ("sh", "mount", "echo", "cat", "sleep", "poweroff", "[", "test")
_PCR_LINE = re.compile(r"^PCR(\d+)\.(\w+)=([0-9A-Fa-f]+)\s*$", re.MULTILINE)


def probe_init() -> str:
    """The probe's ``/init`` script."""
    return (
        _PROBE_INIT.replace("@BOOT_MARKER@", BOOT_MARKER)
        .replace("@DONE_MARKER@", DONE_MARKER)
        .replace("@PCRS@", " ".join(str(n) for n in PROBE_PCRS))
    )


def build_probe_initrd() -> bytes:
    """A gzip newc cpio: static busybox, its applet links, /dev/console and the probe ``/init`` (~1 MiB).

    /dev/console must be in the archive: the kernel opens it for init's stdio before devtmpfs could exist.
    """
    archive = CpioWriter(mtime=0)
    for d in ("bin", "dev", "proc", "sys"):
        archive.directory(d)
    archive.device("dev/console", 0o600, 5, 1)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in _APPLETS:
        archive.symlink(f"bin/{applet}", "busybox")
    archive.file("init", probe_init().encode(), 0o755)
    return gzip.compress(archive.finish(), compresslevel=9, mtime=0)


def esp_with_uki(path: Path, uki: bytes) -> Path:
    """A whole-disk FAT image with ``uki`` as the removable-media boot path ``\\EFI\\BOOT\\BOOTX64.EFI``."""
    return make_esp_image(path, {"EFI/BOOT/BOOTX64.EFI": uki})


def guest_pcrs(console: str) -> dict[str, dict[int, str]]:
    """``{bank: {pcr: lowercase hex}}`` from the probe's ``PCR<n>.<bank>=<HEX>`` lines."""
    out: dict[str, dict[int, str]] = {}
    for number, bank, value in _PCR_LINE.findall(console):
        out.setdefault(bank, {})[int(number)] = value.lower()
    return out
