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
    reached = boot.stopped_by == testboot.STOPPED_AT_EXIT_BOOT_SERVICES
    return testboot.TestBootResult(prediction, "sha256", checks, boot, "store", "tcg", reached)


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
    watch = testboot._Extends(follow_unlock=False)
    assert watch(4, {"sha256": bytes(32)}) is None
    assert watch(5, {"sha256": bytes(32)}) is None
    assert watch(4, ebs) is None  # the right digest in another PCR
    assert watch(5, ebs) == testboot.STOPPED_AT_EXIT_BOOT_SERVICES


def test_with_a_vms_vtpm_the_boot_goes_on_to_the_first_pcr15_extend() -> None:
    """Booting a VM's vTPM: PCR 15 before ExitBootServices means nothing; after it, the root was unlocked.
    The PCRs at ExitBootServices are replayed from the extends before it, later ones left out."""
    ebs = {"sha256": hashlib.sha256(testboot.EXIT_BOOT_SERVICES).digest()}
    d1, d2 = hashlib.sha256(b"one").digest(), hashlib.sha256(b"two").digest()
    watch = testboot._Extends(follow_unlock=True)
    assert watch(15, {"sha256": d1}) is None
    assert watch(4, {"sha256": d1}) is None
    assert watch(5, ebs) is None and watch.exit_boot_services
    assert watch(11, {"sha256": d2}) is None  # systemd's enter-initrd: after the point we compare at
    assert watch(15, {"sha256": d2}) == testboot.UNLOCKED_BY_PCR15
    expected4 = hashlib.sha256(bytes(32) + d1).hexdigest()
    assert watch.pcrs("sha256", (4, 7, 11)) == {4: expected4, 7: "00" * 32, 11: "00" * 32}


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


@pytest.mark.slow
def test_missing_stores_and_vtpms_are_one_line(tmp_path: Path, demo_image: Path) -> None:
    """Before anything boots: a --firmware-vars that does not exist, a --vtpm that is no vTPM."""
    from tests.build_helpers import build, make_keys, make_recipe

    keys = make_keys(tmp_path)
    template = build(make_recipe(demo_image, tmp_path / "t.raw", keys, install_removable=True), keys).output
    for args, words in (
        (("--firmware-vars", tmp_path / "none.fd"), "cannot read"),
        (("--vtpm", tmp_path), "is not a vTPM state directory"),
    ):
        done = _cli(template, *args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


@pytest.mark.parametrize("name", ["microsoft", "snakeoil", "empty"])
def test_test_stores_read_back(name: str) -> None:
    from app.measure.teststore import build_test_store
    from app.signing.keys import load_certificates

    made = build_test_store(name, add_db=load_certificates(vm.SNAKEOIL_CERT))
    assert made.state.secure_boot == (name != "empty")
    assert made.added[0][0] == "db"
