"""Issue 14: a template built from a base image with Debian's Microsoft-signed shim boots through shim's
fallback on OVMF with Microsoft's keys (plus our certificate in db), and its measurements are what they
should be. The chain and the fixtures are :mod:`tests.boot.shim_chain`.

First boot: removable path → shim → fallback, which creates the boot entry from our ``BOOTX64.CSV`` and
resets (after a 5 s "Press any key to stop system reset" countdown: a TPM is present). Second boot: the new
entry → ``\\EFI\\debian\\shimx64.efi`` → our UKI → kernel → the probe, which prints the event log and PCRs.

Graded by others: the boot entry as ``virt-fw-vars --print`` reads it from the variable store, the event
log replayed by ``tpm2_eventlog`` (tpm2-tools) against the PCRs the guest read from its TPM, and the
Authenticode digests of shim and the UKI (``osslsigncode``-checked elsewhere) found in PCR 4's events.

Timings under TCG on the 2-core host: template build ~7 s; first boot ~12 s to the reset (firmware ~6.5 s,
fallback's countdown 5 s); second boot ~13 s to the probe's power-off (kernel banner at ~10 s). The whole
file ~45 s (the shim base image is cached under ~/.cache/shieldwright/fixtures; building it costs ~7 s).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from app.boot import vm
from app.signing.authenticode import authenticode_digest
from tests.boot import qemu_harness as harness
from tests.boot.shim_chain import (
    BANKS,
    UKI_ID,
    ShimChainBoot,
    boot_shim_chain,
    virt_fw_vars,
)
from tests.conftest import require_tool, run

pytestmark = [pytest.mark.slow, pytest.mark.vm]

MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}
#: The firmware starting the entry the fallback made: ``BdsDxe: loading Boot0003 "<label>" from
#: HD(1,GPT,...)/\EFI\debian\shimx64.efi``.
ENTRY_LINE = re.compile(r'BdsDxe: (?:loading|starting) (Boot[0-9A-F]{4}) "([^"]+)" from HD\(1,GPT,[^)]*\)'
                        r"/\\EFI\\debian\\shimx64\.efi")  # fmt: skip


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> ShimChainBoot:
    return boot_shim_chain(tmp_path_factory.mktemp("shim-chain"))


def _where(chain: ShimChainBoot) -> str:
    runs = [(r.ended, r.exit_reason, r.elapsed, r.seen) for r in chain.result.runs]
    return f"runs={runs}\n{chain.result.tail()}"


def _esp_file(image: Path, name: str, dest: Path) -> bytes:
    """A file of the template's ESP (partition 1), copied out by mtools at the offset sgdisk reports."""
    first = next(int(ln.split()[1]) for ln in run("sgdisk", "-p", image).stdout.splitlines()
                 if ln.split()[:1] == ["1"])  # fmt: skip
    subprocess.run(["mcopy", "-o", "-i", f"{image}@@{first * 512}", f"::/{name}", dest],
                   env=MTOOLS_ENV, check=True, capture_output=True)  # fmt: skip
    return dest.read_bytes()


def test_fallback_creates_the_boot_entry_and_resets_once(chain: ShimChainBoot) -> None:
    first, second = chain.result.runs  # exactly one reset was followed
    where = _where(chain)
    assert first.ended == "exited" and first.exit_reason == "guest-reset", where
    assert harness.BOOT_MARKER not in first.console and vm.KERNEL_BANNER not in first.console, where
    assert "Reset System" in first.console, where  # the fallback's last words before ResetSystem
    match = ENTRY_LINE.search(second.console)
    assert match and match.group(2) == UKI_ID, where  # the second boot ran the entry the fallback made
    assert not ENTRY_LINE.search(first.console), where
    assert vm.reset_line(1) in chain.result.console


def test_the_entry_is_in_the_variable_store(chain: ShimChainBoot) -> None:
    """virt-fw-vars reads the NVRAM the fallback wrote: shim in \\EFI\\debian, our UKI as its load option,
    first in BootOrder."""
    listing = run(virt_fw_vars(), "-i", chain.vars_file, "--print").stdout
    entries = dict(re.findall(r"^(Boot[0-9A-F]{4})\s*: boot entry: (.*)$", listing, re.MULTILINE))
    ours = [n for n, text in entries.items() if f'title="{UKI_ID}"' in text]
    assert len(ours) == 1, listing
    text = entries[ours[0]]
    assert "FilePath(\\EFI\\debian\\shimx64.efi)" in text, text
    optdata = bytes.fromhex(text.split("optdata=")[1].split()[0])
    assert optdata.decode("utf-16-le").startswith(f"\\EFI\\Linux\\{UKI_ID}.efi "), optdata
    order = re.search(r"^BootOrder\s*: boot order: (.*)$", listing, re.MULTILINE)
    assert order and order.group(1).split(", ")[0] == ours[0][4:], listing


def test_the_probe_ran_on_the_second_boot_under_secure_boot(chain: ShimChainBoot) -> None:
    second = chain.last
    where = _where(chain)
    assert harness.DONE_MARKER in second.console, where
    assert second.exit_reason == "guest-shutdown" and chain.result.ended == "exited", where
    assert "UEFI Secure Boot is enabled" in second.console, where  # the kernel's EFI stub
    assert not chain.result.secure_boot_refused, where
    assert set(BANKS) <= harness.guest_pcrs(second.console).keys(), where


def _tpm2_eventlog_pcrs(log: Path) -> dict[str, dict[int, str]]:
    """The PCRs tpm2_eventlog computes by replaying ``log``: its final ``pcrs:`` section."""
    require_tool("tpm2_eventlog")
    text = run("tpm2_eventlog", log).stdout.split("\npcrs:", 1)[1]
    out: dict[str, dict[int, str]] = {}
    bank = ""
    for line in text.splitlines():
        if re.fullmatch(r"\s+(\w+):\s*", line):
            bank = line.strip().rstrip(":")
        elif m := re.fullmatch(r"\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*", line):
            out.setdefault(bank, {})[int(m.group(1))] = m.group(2).lower()
    return out


def test_the_event_log_replays_to_the_pcrs_the_guest_read(chain: ShimChainBoot, tmp_path: Path) -> None:
    log = tmp_path / "log.bin"
    log.write_bytes(harness.guest_event_log(chain.last.console))
    replayed = _tpm2_eventlog_pcrs(log)
    read = harness.guest_pcrs(chain.last.console)
    for bank in BANKS:
        assert read[bank].keys() == set(harness.PROBE_PCRS), read[bank]
        for pcr, value in read[bank].items():  # a PCR no event extended is all zero, and not listed
            assert replayed[bank].get(pcr, "0" * len(value)) == value, (bank, pcr)
    assert {4, 7, 14} <= replayed["sha256"].keys()


def test_pcr4_and_pcr7_hold_shim_the_uki_and_both_authorities(chain: ShimChainBoot, tmp_path: Path) -> None:
    """PCR 4: the firmware measured shim, shim measured our UKI (Authenticode digests). PCR 7: the firmware's
    authority event for shim (Microsoft's UEFI CA in db) and shim's for the UKI (our certificate in db)."""
    log = harness.guest_event_log(chain.last.console)
    shim = _esp_file(chain.template, "EFI/debian/shimx64.efi", tmp_path / "shim.efi")
    uki = _esp_file(chain.template, f"EFI/Linux/{UKI_ID}.efi", tmp_path / "uki.efi")
    for image in (shim, uki):
        assert authenticode_digest(image) in log
    assert chain.key.cert.public_bytes(serialization.Encoding.DER) in log
    assert b"Microsoft Corporation UEFI CA 2011" in log
    assert "SbatLevel".encode("utf-16-le") in log  # shim 16 measures its SBAT level into PCR 7


def test_pcr11_is_the_builds_prediction(chain: ShimChainBoot) -> None:
    """Shim does not touch PCR 11: the stub's measurements are exactly what the manifest predicted (the
    manifest predicts the sha256 bank)."""
    manifest = json.loads(chain.manifest.read_text())
    read = harness.guest_pcrs(chain.last.console)
    assert read["sha256"][11] == manifest["pcr_predictions"]["sha256"]["11"][""]


@pytest.mark.parametrize("bank", BANKS)
def test_pcr_predict_and_the_manifest_are_what_the_vtpm_measured(chain: ShimChainBoot, bank: str) -> None:
    """Done means 1: PCR 4, 7 and 11 of ``pcr predict`` on the variable store (as it was before the boot)
    and of the manifest equal the guest's vTPM, through shim's fallback and reset, in both banks."""
    store = chain.vars_file.with_name("vars-before-boot.fd")
    done = subprocess.run(
        [sys.executable, "-m", "app", "pcr", "predict", str(chain.template), "--firmware-vars", str(store),
         "--bank", bank, "--json"], capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    read = harness.guest_pcrs(chain.last.console)[bank]
    assert json.loads(done.stdout)["pcrs"] == {"4": read[4], "7": read[7], "11": read[11]}
    predicted = json.loads(chain.manifest.read_text())["pcr_predictions"][bank]
    assert (predicted["4"], predicted["7"], predicted["11"][""]) == (read[4], read[7], read[11])


def test_test_boot_goes_through_the_fallback_and_reads_the_guests_pcrs(chain: ShimChainBoot) -> None:
    """``test-boot`` with its default firmware (Microsoft's store + the UKI's signer in db, owner
    Shieldwright's GUID: the store this module booted) goes through shim's fallback and reset, and reads
    at ExitBootServices the PCR 4, 7 and 11 the guest's kernel read; exit 0."""
    done = subprocess.run(
        [sys.executable, "-m", "app", "test-boot", str(chain.template), "--json"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["resets"] == 1 and doc["reached_exit_boot_services"], doc
    read = harness.guest_pcrs(chain.last.console)["sha256"]
    assert {n: doc["pcrs"][n]["measured"] for n in ("4", "7", "11")} == {
        n: read[int(n)] for n in ("4", "7", "11")
    }
