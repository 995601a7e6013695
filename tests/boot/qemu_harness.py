"""Test support for booting UKIs on OVMF Secure Boot + swtpm: a probe initrd, an ESP, and PCR parsing.

The runner itself (QEMU, swtpm, console tailing, cleanup) is :mod:`app.boot.vm`, which the product reuses;
this module holds only what a *test* guest needs.

The probe initrd is a busybox ``/init`` and nothing else: no modules. Debian's 6.1 cloud kernel builds the
TPM drivers in (``CONFIG_TCG_TPM=y``, ``CONFIG_TCG_TIS=y`` — QEMU's ``tpm-tis`` device, found through
ACPI ``MSFT0101`` — and ``CONFIG_TCG_CRB=y``; only ``tpm_vtpm_proxy`` is a module), the 8250 serial console
too, and the probe needs no disk, so the virtio modules :func:`app.template.demo.build_initrd` loads are not
needed either. The demo initrd cannot serve: its ``/init`` prints no PCRs.

What the probe prints (after mounting sysfs and securityfs, waiting up to 5 s for ``/sys/class/tpm/tpm0``)::

    SHIELDWRIGHT-BOOT-OK
    SHIELDWRIGHT-EVENTLOG-BEGIN
    <base64, 76 a line>          /sys/kernel/security/tpm0/binary_bios_measurements: the firmware's log
    SHIELDWRIGHT-EVENTLOG-END
    SHIELDWRIGHT-EVENTLOG-SHA256=<hex>   sha256sum of the log, so a garbled console is caught
    PCR11=<HEX>                  sha256 bank, from /sys/class/tpm/tpm0/pcr-sha256/11 (kernel >= 5.12)
    PCR<n>.<bank>=<HEX>          every PCR in PROBE_PCRS for every active bank (pcr-<bank> directories)
    SHIELDWRIGHT-PROBE-DONE

then ``poweroff -f`` (or ``reboot -f``, a guest reset), which with QEMU's ``-no-reboot`` ends the run.
Before the log the probe lowers the console log level (``dmesg -n 1``) so no kernel message lands in the
middle of the base64 (the sha256 catches one that still does). No systemd runs, so nothing extends
PCR 11 with phase words: what the guest reads is exactly the stub's section measurements. Note also the
kernel's EFI stub measures the initrd it gets from systemd-stub (``LINUX_EFI_INITRD_MEDIA_GUID``) into
PCR 9 — it says so on the console, "EFI stub: Measured initrd data into PCR 9".
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
from pathlib import Path

from app.boot.cpio import CpioWriter
from app.boot.vm import make_esp_image

BOOT_MARKER = "SHIELDWRIGHT-BOOT-OK"
DONE_MARKER = "SHIELDWRIGHT-PROBE-DONE"
EVENTLOG_BEGIN = "SHIELDWRIGHT-EVENTLOG-BEGIN"
EVENTLOG_END = "SHIELDWRIGHT-EVENTLOG-END"
EVENTLOG_SHA256 = "SHIELDWRIGHT-EVENTLOG-SHA256="
#: The PCRs the probe prints: the firmware's 0-7 (boot code 4, Secure Boot authority 7 among them); the
#: initrd as the kernel measured it (9); the UKI's sections (11); shim's MokList, MokListX and
#: MokListTrusted (14; untouched without shim).
PROBE_PCRS = (0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 14)
#: ``console=ttyS0``: the serial console is the only output QEMU captures. ``panic=-1``: a panic reboots at
#: once, which ``-no-reboot`` turns into QEMU exiting rather than a hang until the timeout.
PROBE_CMDLINE = "console=ttyS0 panic=-1"
BUSYBOX = Path("/bin/busybox")
#: Real event logs captured from the probe, and the PCRs the guest read beside them (see its README.md).
EVENTLOG_DIR = Path(__file__).resolve().parents[1] / "data" / "eventlogs"

_PROBE_INIT = r"""#!/bin/sh
# Shieldwright boot probe: say we got here, print the TPM's PCRs, power off.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security
echo "@BOOT_MARKER@"
i=0
while [ ! -d /sys/class/tpm/tpm0 ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
dmesg -n 1
log=/sys/kernel/security/tpm0/binary_bios_measurements
echo "@EVENTLOG_BEGIN@"
[ -r "$log" ] && base64 "$log"
echo "@EVENTLOG_END@"
[ -r "$log" ] && echo "@EVENTLOG_SHA256@$(sha256sum "$log" | cut -d ' ' -f 1)"
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
@END@ -f
"""

_APPLETS = (
    "sh", "mount", "echo", "cat", "sleep", "poweroff", "reboot", "[", "test", "base64", "dmesg",
    "sha256sum", "cut",
)  # fmt: skip
_PCR_LINE = re.compile(r"^PCR(\d+)\.(\w+)=([0-9A-Fa-f]+)\s*$", re.MULTILINE)


def probe_init(end: str = "poweroff") -> str:
    """The probe's ``/init`` script; it ends with ``poweroff -f``, or ``reboot -f`` (a guest reset)."""
    if end not in ("poweroff", "reboot"):
        raise ValueError(f"the probe ends with poweroff or reboot, not {end!r}")
    return (
        _PROBE_INIT.replace("@END@", end)
        .replace("@BOOT_MARKER@", BOOT_MARKER)
        .replace("@DONE_MARKER@", DONE_MARKER)
        .replace("@EVENTLOG_BEGIN@", EVENTLOG_BEGIN)
        .replace("@EVENTLOG_END@", EVENTLOG_END)
        .replace("@EVENTLOG_SHA256@", EVENTLOG_SHA256)
        .replace("@PCRS@", " ".join(str(n) for n in PROBE_PCRS))
    )


def build_probe_initrd(end: str = "poweroff") -> bytes:
    """A gzip newc cpio: static busybox, its applet links, /dev/console and the probe ``/init`` (~1 MiB).

    ``end="reboot"`` makes the probe reset the machine instead of powering off (``boot(resets=...)``).

    /dev/console must be in the archive: the kernel opens it for init's stdio before devtmpfs could exist.
    """
    archive = CpioWriter(mtime=0)
    for d in ("bin", "dev", "proc", "sys"):
        archive.directory(d)
    archive.device("dev/console", 0o600, 5, 1)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in _APPLETS:
        archive.symlink(f"bin/{applet}", "busybox")
    archive.file("init", probe_init(end).encode(), 0o755)
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


def guest_event_log(console: str) -> bytes:
    """The firmware's TCG event log the probe printed (base64 between the EVENTLOG markers), as bytes.

    Raises ``ValueError`` if the markers are missing, the base64 is broken, or the bytes do not match the
    sha256 the guest printed — a console line mangled by a kernel message must not pass as a log.
    """
    start = console.find(EVENTLOG_BEGIN)
    end = console.find(EVENTLOG_END, start + 1)
    if start < 0 or end < 0:
        raise ValueError("the console holds no event log (no SHIELDWRIGHT-EVENTLOG-BEGIN/END)")
    body = "".join(console[start + len(EVENTLOG_BEGIN) : end].split())
    try:
        log = base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the event log's base64 is damaged: {exc}") from exc
    if not log:
        raise ValueError("the guest had no event log (binary_bios_measurements missing or empty)")
    digest = re.search(re.escape(EVENTLOG_SHA256) + r"([0-9a-f]{64})", console[end:])
    if digest is None or hashlib.sha256(log).hexdigest() != digest.group(1):
        raise ValueError("the event log does not match the sha256 the guest printed")
    return log


def save_capture(name: str, console: str, directory: Path = EVENTLOG_DIR) -> tuple[Path, Path]:
    """Write the probe's event log to ``<name>.bin`` and its PCRs to ``<name>.json`` in ``directory``.

    The JSON is ``{bank: {"<pcr>": lowercase hex}}`` exactly as the guest read sysfs, so a replay of the
    log can be checked against what the TPM really held.
    """
    log = guest_event_log(console)
    pcrs = guest_pcrs(console)
    if not pcrs:
        raise ValueError("the console holds no PCR lines")
    directory.mkdir(parents=True, exist_ok=True)
    bin_path, json_path = directory / f"{name}.bin", directory / f"{name}.json"
    bin_path.write_bytes(log)
    table = {bank: {str(n): v for n, v in sorted(values.items())} for bank, values in sorted(pcrs.items())}
    json_path.write_text(json.dumps(table, indent=2) + "\n")
    return bin_path, json_path
