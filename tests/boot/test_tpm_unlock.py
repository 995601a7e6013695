"""Issue 15, Done means 2 and 3: a real Debian 13 guest unlocks its root with its own vTPM, and only then.

The template is built by ``shieldwright build``'s pipeline from the trixie base image of
:mod:`tests.boot.trixie_guest` (root encrypted, UKI with trixie's systemd-stub 257 installed as
``\\EFI\\BOOT\\BOOTX64.EFI``, signed with the snakeoil key OVMF's snakeoil variables trust), provisioned
by ``shieldwright provision`` against a vTPM made by ``shieldwright vtpm new`` (the provisioning
passphrase removed, no recovery key), and booted under QEMU + OVMF Secure Boot + swtpm on that vTPM.

- The guest reaches its root through ``/dev/mapper/root`` with nothing typed.
- Secure Boot off (PCR 7 differs) and a UKI rebuilt with another command line and signed again (PCR 4
  and 11 differ): systemd's TPM unlock fails; with no passphrase keyslot left its cryptsetup unit fails
  (or it asks for a passphrase) and the root is never reached.
- The provisioning passphrase no longer opens the container (the host's cryptsetup), and trixie's own
  cryptsetup and systemd-cryptenroll list our token as systemd-tpm2 with PCRs 4+7+11 in sha256.
Each boot runs on a copy of the vTPM's state, so one boot's measurements never reach another.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.boot import vm
from tests.boot.trixie_guest import (
    CMDLINE,
    CRYPTSETUP_FAILED,
    PASSPHRASE_PROMPT,
    ROOT_MARKER,
    ROOT_NUMBER,
    TrixieGuest,
    build_template,
    trixie_guest,
)
from tests.build_helpers import PASSPHRASE, extract_partition
from tests.luks.cryptsetup import test_passphrase

pytestmark = [pytest.mark.vm, pytest.mark.slow]

SNAKEOIL_VARS = vm.Firmware.snakeoil().vars_template
MiB = 1024 * 1024
#: TCG, two cores shared with the test runner: the unlock boot took 45 s here, the refusals ~35 s.
BOOT_TIMEOUT = 400.0
UNLOCKED = f"{ROOT_MARKER} from /dev/mapper/root"
#: How systemd says the TPM did not unlock the root: it asks for a passphrase, or — the provisioning
#: passphrase removed, no recovery key — its cryptsetup unit fails and the boot stops short of the root.
LOCKED = (PASSPHRASE_PROMPT, CRYPTSETUP_FAILED)


@dataclass(frozen=True)
class Provisioned:
    guest: TrixieGuest
    template: Path
    disk: Path
    vtpm: Path
    work: Path


def shieldwright(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Provisioned:
    guest = trixie_guest()
    work = tmp_path_factory.mktemp("tpm-unlock")
    template = build_template(guest, work / "template.raw", CMDLINE, "Trixie TPM unlock")
    vtpm = work / "vm-tpm"
    made = shieldwright("vtpm", "new", vtpm)
    assert made.returncode == 0, made.stderr
    passphrase = work / "passphrase"
    passphrase.write_text(PASSPHRASE)
    disk = work / "vm.raw"
    srk = vtpm / "srk.tpm2b_public"
    done = shieldwright("provision", template, "--srk", srk, "--passphrase-file", passphrase, "--trust",
                        vm.SNAKEOIL_CERT, "--firmware-vars", SNAKEOIL_VARS, "-o", disk)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return Provisioned(guest, template, disk, vtpm, work)


def _boot(p: Provisioned, disk: Path, firmware: vm.Firmware, name: str) -> vm.BootResult:
    state = p.work / f"tpm-{name}"
    shutil.copytree(p.vtpm, state)
    return vm.boot(disk, firmware=firmware, tpm_state=state, stop_on=[UNLOCKED, *LOCKED],
                   timeout=BOOT_TIMEOUT)  # fmt: skip


def test_the_guest_unlocks_its_root_with_its_vtpm_and_nothing_typed(provisioned: Provisioned) -> None:
    result = _boot(provisioned, provisioned.disk, vm.Firmware.snakeoil(), "good")
    assert result.stopped_by == UNLOCKED, result.tail()
    assert PASSPHRASE_PROMPT not in result.console
    assert "systemd-cryptsetup@root" in result.console or "Cryptography Setup for root" in result.console


def test_with_secure_boot_off_the_root_stays_locked(provisioned: Provisioned) -> None:
    """PCR 7 differs (SecureBoot=0 and no authority event): systemd cannot unseal, and with no passphrase
    keyslot left its cryptsetup unit fails; the root is never reached."""
    result = _boot(provisioned, provisioned.disk, vm.Firmware.insecure(), "insecure")
    assert ROOT_MARKER not in result.console, result.tail()
    assert result.stopped_by in LOCKED, result.tail()


def test_a_rebuilt_uki_with_another_command_line_does_not_unlock(provisioned: Provisioned) -> None:
    """The same disk, its UKI rebuilt with one more kernel argument and signed again with the trusted key
    (so Secure Boot still boots it): PCR 4 (its digest) and 11 (.cmdline) differ, and the root stays
    locked."""
    p = provisioned
    uki = p.work / "other.efi"
    key_pass = p.work / "snakeoil.pass"
    key_pass.write_bytes(vm.SNAKEOIL_PASSPHRASE)
    os_release = "@" + str(p.guest.rootfs / "etc/os-release")
    built = shieldwright("uki", "build", "--linux", p.guest.vmlinuz, "--initrd", p.guest.initrd,
                         "--cmdline", CMDLINE + " sw.variant=2", "--os-release", os_release,
                         "--stub", p.guest.stub, "--cert", vm.SNAKEOIL_CERT, "--key", vm.SNAKEOIL_KEY,
                         "--key-passphrase-file", key_pass, "-o", uki)  # fmt: skip
    assert built.returncode == 0, built.stderr
    other = p.work / "vm-other-uki.raw"
    subprocess.run(["cp", "--sparse=always", str(p.disk), str(other)], check=True)
    info = subprocess.run(["sgdisk", "-i", "1", str(other)], capture_output=True, text=True).stdout
    esp_offset = int(info.split("First sector: ")[1].split()[0]) * 512
    subprocess.run(["mcopy", "-o", "-i", f"{other}@@{esp_offset}", str(uki), "::/EFI/BOOT/BOOTX64.EFI"],
                   check=True, env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})  # fmt: skip
    # Booted by test-boot --vtpm: its console is what the guest printed, its table says which PCRs moved.
    done = shieldwright("test-boot", other, "--vtpm", p.vtpm, "--firmware-vars", SNAKEOIL_VARS,
                        "--timeout", BOOT_TIMEOUT)  # fmt: skip
    console = done.stdout
    assert "sw.variant=2" in console.split("Command line:", 1)[1].splitlines()[0], console[-3000:]
    assert ROOT_MARKER not in console, console[-3000:]
    assert any(text in console for text in LOCKED), console[-3000:]
    assert done.returncode == 1 and "Root: locked" in console and "LOCKED" in console, console[-3000:]
    # What the VM was sealed to is not what this boot measured: the tokens' policy says so offline.
    assert f"Sealed policy, partition {ROOT_NUMBER} token 0 (PCRs 4+7+11): NOT satisfied" in console
    verdicts = {line.split()[0]: line.split()[-1] for line in console.splitlines()
                if line.strip()[:2] in (" 4", " 7", "11", "4 ", "7 ") and len(line.split()) == 4}  # fmt: skip
    # This disk's chain is predicted (the new UKI), so its PCRs match their prediction; what the VM was
    # provisioned for (the old UKI's PCR 4 and 11) is in the sealed policy only, and the root stays locked.
    assert verdicts == {"4": "match", "7": "match", "11": "match"}, console[-1500:]


def test_the_passphrase_is_gone_and_trixies_tools_read_our_token(
    provisioned: Provisioned, tmp_path: Path
) -> None:
    part = extract_partition(provisioned.disk, ROOT_NUMBER, tmp_path / "root.luks")
    assert test_passphrase(part, PASSPHRASE, tmp_path) != 0  # the host's cryptsetup
    header = tmp_path / "root-header.luks"  # the header area is all the tools read
    with open(part, "rb") as src, open(header, "wb") as dst:
        dst.write(src.read(16 * MiB))
    dump = provisioned.guest.chroot("cryptsetup", "luksDump", "@FILE@", input_file=header)
    assert dump.returncode == 0, dump.stderr
    assert "0: systemd-tpm2" in dump.stdout and "tpm2-hash-pcrs:   4+7+11" in dump.stdout
    assert "tpm2-pcr-bank:    sha256" in dump.stdout and "tpm2-srk:         true" in dump.stdout
    listed = provisioned.guest.chroot("systemd-cryptenroll", "@FILE@", input_file=header)
    assert listed.returncode == 0, listed.stderr
    assert [line.split() for line in listed.stdout.splitlines()] == [["SLOT", "TYPE"], ["1", "tpm2"]]


def test_test_boot_with_the_vms_vtpm_reports_the_unlock(provisioned: Provisioned) -> None:
    """``test-boot --vtpm``: the provisioned disk on (a copy of) the VM's vTPM reaches ExitBootServices at
    the predicted PCRs and goes on until systemd unlocks the root; the vTPM directory is not written."""
    before = {p.name: p.read_bytes() for p in provisioned.vtpm.iterdir()}
    done = shieldwright("test-boot", provisioned.disk, "--vtpm", provisioned.vtpm, "--firmware-vars",
                        SNAKEOIL_VARS, "--json", "--timeout", BOOT_TIMEOUT)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["unlock"] == "unlocked" and doc["match"], doc
    assert doc["sealed_policies"] == [
        {"partition": ROOT_NUMBER, "token": 0, "pcrs": [4, 7, 11], "satisfied": True}
    ]
    assert all(doc["pcrs"][n]["match"] for n in ("4", "7", "11")), doc
    assert {p.name: p.read_bytes() for p in provisioned.vtpm.iterdir()} == before
