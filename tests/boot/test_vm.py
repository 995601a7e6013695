"""The VM runner (:mod:`app.boot.vm`) and the probe harness, without a full boot: parsing, ESP, cleanup."""

from __future__ import annotations

import gzip
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from app.boot import vm
from app.errors import CancelledError, ShieldwrightError
from app.progress import CancelToken
from tests.boot import qemu_harness as harness
from tests.conftest import require_tool, run

#: What OVMF (Debian 12, Secure Boot build) really printed on the serial console for an unsigned UKI.
REFUSED_CONSOLE = (
    b"\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01H"
    b'BdsDxe: loading Boot0001 "UEFI Non-Block Boot Device" from PciRoot(0x0)/Pci(0x1,0x0)\r\n'
    b'BdsDxe: failed to load Boot0001 "UEFI Non-Block Boot Device" from PciRoot(0x0)/Pci(0x1,0x0): '
    b"Access Denied\r\n"
    b'BdsDxe: loading Boot0002 "EFI Internal Shell" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)'
    b"/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1)\r\n"
    b'BdsDxe: failed to start Boot0002 "EFI Internal Shell" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)'
    b"/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1): Security Violation\r\n"
    b"BdsDxe: No bootable option or device was found.\r\n"
    b"BdsDxe: Press any key to enter the Boot Manager Menu.\r\n"
)
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def test_console_text_drops_escapes_and_carriage_returns() -> None:
    text = vm.console_text(REFUSED_CONSOLE)
    assert "\x1b" not in text and "\r" not in text
    assert text.startswith('BdsDxe: loading Boot0001 "UEFI Non-Block Boot Device"')
    assert vm.FIRMWARE_NO_BOOT_OPTION in text.splitlines()


def test_refusal_is_recognised_and_the_shell_alone_does_not_count() -> None:
    refused = vm.BootResult(vm.console_text(REFUSED_CONSOLE), "no-boot-option", 6.4)
    assert refused.secure_boot_refused
    assert [r.split('"')[1] for r in refused.refusals] == ["UEFI Non-Block Boot Device", "EFI Internal Shell"]
    shell_only = "\n".join(line for line in refused.console.splitlines() if "Access Denied" not in line)
    assert not vm.BootResult(shell_only, "no-boot-option", 6.4).secure_boot_refused
    assert vm.BootResult("BdsDxe: starting Boot0001\nLinux version 6.1\n", "exited", 9.0).refusals == []


def test_guest_pcrs_parses_every_bank() -> None:
    console = (
        "SHIELDWRIGHT-BOOT-OK\nPCR11=AB12\nPCR4.sha1=00FF\nPCR11.sha1=0A0B\n"
        "PCR11.sha256=AB12\n[    2.1] reboot: Power down\nPCR7.sha256=C0DE  \n"
    )
    assert harness.guest_pcrs(console) == {"sha1": {4: "00ff", 11: "0a0b"}, "sha256": {11: "ab12", 7: "c0de"}}


def test_probe_initrd_holds_busybox_and_a_parsable_init(tmp_path: Path) -> None:
    require_tool("cpio")

    raw = gzip.decompress(harness.build_probe_initrd())
    names = subprocess.run(
        ["cpio", "-t", "--quiet"], input=raw, capture_output=True, check=True
    ).stdout.split()
    assert {b"init", b"bin/busybox", b"bin/sh", b"bin/poweroff", b"dev/console"} <= set(names)
    init = tmp_path / "init"
    init.write_text(harness.probe_init())
    subprocess.run([harness.BUSYBOX, "sh", "-n", init], check=True)  # the shell that will run it parses it
    text = harness.probe_init()
    assert harness.BOOT_MARKER in text and harness.DONE_MARKER in text and "poweroff -f" in text
    assert "/sys/class/tpm/tpm0/pcr-sha256/11" in text


def test_esp_image_is_clean_fat_with_the_file(tmp_path: Path) -> None:
    require_tool("fsck.fat")
    payload = os.urandom(300_000)
    esp = harness.esp_with_uki(tmp_path / "esp.img", payload)
    run("fsck.fat", "-n", esp)
    out = tmp_path / "back.efi"
    subprocess.run(["mcopy", "-i", esp, "::/EFI/BOOT/BOOTX64.EFI", out], env=MTOOLS_ENV, check=True)
    assert out.read_bytes() == payload
    assert esp.stat().st_size % (1024 * 1024) == 0 and esp.stat().st_size >= len(payload)


def test_missing_disk_and_missing_firmware_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ShieldwrightError, match="does not exist"):
        vm.boot(tmp_path / "nope.img")
    broken = vm.Firmware(tmp_path / "CODE.fd", tmp_path / "VARS.fd", True, "missing")
    (tmp_path / "disk.img").write_bytes(bytes(512))
    with pytest.raises(ShieldwrightError, match="CODE.fd is not installed") as info:
        vm.boot(tmp_path / "disk.img", firmware=broken)
    assert "package ovmf" in info.value.hint


def _children(names: tuple[str, ...]) -> list[str]:
    """Live (non-zombie) child processes of this test process with one of ``names``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == os.getpid() and state != "Z" and comm.startswith(names):
            found.append(comm)
    return found


@pytest.fixture
def private_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point tempfile at an empty directory so a leftover runtime directory would show."""
    d = tmp_path / "t"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.mark.slow
@pytest.mark.vm
def test_timeout_ends_the_run_and_leaves_nothing_behind(tmp_path: Path, private_tmpdir: Path) -> None:
    """A guest that has not finished when the time is up is cut off; nothing is left running or on disk."""
    disk = tmp_path / "blank.img"
    disk.write_bytes(bytes(1024 * 1024))
    result = vm.boot(disk, timeout=3, stop_on=("never printed",))
    assert result.ended in ("timeout", "no-boot-option")
    assert result.elapsed < 30
    assert list(private_tmpdir.iterdir()) == []
    assert _children(("qemu-system", "swtpm")) == []


@pytest.mark.slow
@pytest.mark.vm
def test_cancel_kills_qemu_and_swtpm(tmp_path: Path, private_tmpdir: Path) -> None:
    disk = tmp_path / "blank.img"
    disk.write_bytes(bytes(1024 * 1024))
    token = CancelToken()
    timer = threading.Timer(2.0, token.cancel)  # pressed while QEMU runs the firmware
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(CancelledError):
            vm.boot(disk, timeout=60, stop_on=("never printed",), cancel=token)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 10
    assert list(private_tmpdir.iterdir()) == []
    assert _children(("qemu-system", "swtpm")) == []
