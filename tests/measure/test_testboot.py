"""Test boot's comparison and verdicts, without a boot (the boots are in test_predict_boots and
tests/boot/test_shim_chain)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.boot import vm
from app.measure import testboot

PREDICTED = hashlib.sha256(b"kernel start").hexdigest()


def _extend(value: str, word: str) -> str:
    return hashlib.sha256(bytes.fromhex(value) + hashlib.sha256(word.encode()).digest()).hexdigest()


def _result(boot: vm.BootResult, measured: dict[int, str | None]) -> testboot.TestBootResult:
    checks = tuple(testboot._check(n, PREDICTED, measured.get(n), "sha256") for n in (4, 7, 11))
    prediction: Any = None  # not read by the verdicts
    return testboot.TestBootResult(prediction, "sha256", checks, boot, "store", "tcg")


def test_pcr11_caught_a_phase_later_matches_and_says_which() -> None:
    after = _extend(PREDICTED, "enter-initrd")
    check = testboot._check(11, PREDICTED, after, "sha256")
    assert check.matches and check.phase == "enter-initrd"
    assert testboot.phase_text(check.phase) == "after enter-initrd"
    assert testboot._check(11, PREDICTED, PREDICTED, "sha256").phase == ""
    # Not a phase of this value, and PCR 4 and 7 have no phases.
    assert not testboot._check(11, PREDICTED, _extend(PREDICTED, "other"), "sha256").matches
    assert not testboot._check(4, PREDICTED, after, "sha256").matches


def test_a_differing_pcr_fails_and_rows_name_it() -> None:
    boot = vm.BootResult("", "stop", 8.0, testboot.STOPPED_AT_EXIT_BOOT_SERVICES)
    other = hashlib.sha256(b"other").hexdigest()
    result = _result(boot, {4: PREDICTED, 7: other, 11: PREDICTED})
    assert not result.matches and result.problem is None
    rows = testboot.check_rows(result)
    assert [r[3] for r in rows] == ["match", "DIFFERS", "match"]
    assert rows[1][2] == other


def test_no_verdict_without_reaching_exit_boot_services() -> None:
    """Matching values read before the measurement (a stopped or refused boot) are not a pass."""
    refused = 'BdsDxe: failed to load Boot0001 "UEFI Misc Device" from PciRoot(0x0): Access Denied'
    boot = vm.BootResult(refused + "\n" + vm.FIRMWARE_NO_BOOT_OPTION + "\n", "no-boot-option", 5.0)
    result = _result(boot, {4: PREDICTED, 7: PREDICTED, 11: PREDICTED})
    assert not result.matches
    assert result.problem == f"the firmware refused the boot: {refused}"
    timeout = _result(vm.BootResult("", "timeout", 300.0), {})
    assert timeout.problem == "the boot did not reach ExitBootServices within 300 s"
    assert [r[3] for r in testboot.check_rows(timeout)] == ["not read"] * 3


def test_the_stop_is_the_exit_boot_services_event_only() -> None:
    ebs = {bank: hashlib.new(bank, testboot.EXIT_BOOT_SERVICES).digest() for bank in ("sha1", "sha256")}
    assert testboot._stop_at_exit_boot_services(5, ebs) == testboot.STOPPED_AT_EXIT_BOOT_SERVICES
    assert testboot._stop_at_exit_boot_services(4, ebs) is None
    assert testboot._stop_at_exit_boot_services(5, {"sha256": bytes(32)}) is None


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", "test-boot", *map(str, args)], capture_output=True,
                          text=True)  # fmt: skip


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    missing = _cli(tmp_path / "nope.raw")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    bad = _cli(tmp_path / "nope.raw", "--timeout", "0")
    assert bad.returncode == 2 and "--timeout" in bad.stderr
    not_an_image = tmp_path / "text.raw"
    not_an_image.write_bytes(b"hello" * 1000)
    out = _cli(not_an_image)
    assert out.returncode == 2 and out.stderr.startswith("shieldwright: error: "), out.stderr


@pytest.mark.parametrize("name", ["microsoft", "snakeoil", "empty"])
def test_test_stores_read_back(name: str) -> None:
    from app.measure.teststore import build_test_store
    from app.signing.keys import load_certificates

    made = build_test_store(name, add_db=load_certificates(vm.SNAKEOIL_CERT))
    assert made.state.secure_boot == (name != "empty")
    assert made.added[0][0] == "db"
