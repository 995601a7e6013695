"""PCR 4, 7 and 11 predictions proved on real boots of whole templates: a UKI installed as
``\\EFI\\BOOT\\BOOTX64.EFI`` on OVMF Secure Boot with Debian's snakeoil keys, no shim.

Two templates from the demo image, built by the project's real build with the probe initrd of
:mod:`tests.boot.qemu_harness` (which prints the firmware's event log and the vTPM's PCRs): A, and B with
another command line (so another UKI). Each is booted once (sha1 + sha256 vTPM banks). Oracles: the PCRs
the guest's kernel reads from the vTPM, and the event log firmware wrote.

- ``pcr predict`` on the variable store equals what the vTPM holds, and the build's manifest says the same.
- A's captured event log as the firmware profile predicts B's boot; ``pcr diff`` of B against A's log
  names exactly PCR 4's UKI event and PCR 11's changed section; of A against its own log, nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

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
from tests.boot.qemu_harness import DONE_MARKER, PROBE_CMDLINE, guest_event_log, guest_pcrs
from tests.boot.shim_chain import probe_kernel_and_initrd
from tests.build_helpers import FAST_KDF, PASSPHRASE

pytestmark = [pytest.mark.vm, pytest.mark.slow]

BANKS = ("sha1", "sha256")
SNAKEOIL_VARS = vm.Firmware.snakeoil().vars_template
MiB = 1024 * 1024


@dataclass(frozen=True)
class Booted:
    template: Path
    manifest: dict[str, object]
    pcrs: dict[str, dict[int, str]]
    log: Path
    seconds: float


def _build(base: Path, work: Path, cmdline: str, name: str) -> tuple[Path, dict[str, object]]:
    vmlinuz, initrd = probe_kernel_and_initrd(work)
    signer = load_signer(vm.SNAKEOIL_CERT, vm.SNAKEOIL_KEY, passphrase=vm.SNAKEOIL_PASSPHRASE)
    recipe = Recipe(
        base_image=base,
        protect=[3],
        signing=SigningOptions(uefi_cert=vm.SNAKEOIL_CERT, uefi_key=vm.SNAKEOIL_KEY),
        uki=UkiOptions(source="files", kernel=str(vmlinuz), initrds=[str(initrd)], cmdline=cmdline),
        encryption=EncryptionOptions(kdf="pbkdf2", kdf_params=dict(FAST_KDF)),
        catalog=CatalogOptions(name=name, version="1.0.0.0", block_size=MiB),
        boot=BootOptions(install_removable=True),
        output=OutputOptions(path=work / "template.raw", format="raw"),
        pcr=PcrOptions(firmware_vars=SNAKEOIL_VARS, bank="sha1"),
    )
    result = run_build(BuildInputs(recipe, signer, signer, bytearray(PASSPHRASE.encode())))
    return result.output, json.loads(result.manifest.read_text())


def _boot(template: Path, work: Path) -> tuple[dict[str, dict[int, str]], Path, float]:
    result = vm.boot(template, firmware=vm.Firmware.snakeoil(), pcr_banks=BANKS, timeout=300.0)
    assert DONE_MARKER in result.console, result.tail()
    log = work / "eventlog.bin"
    log.write_bytes(guest_event_log(result.console))
    return guest_pcrs(result.console), log, result.elapsed


@pytest.fixture(scope="module")
def booted(demo_image: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Booted]:
    out = {}
    for name, cmdline in (("A", PROBE_CMDLINE), ("B", PROBE_CMDLINE + " quiet")):
        work = tmp_path_factory.mktemp(f"template-{name}")
        template, manifest = _build(demo_image, work, cmdline, f"Direct UKI {name}")
        pcrs, log, seconds = _boot(template, work)
        out[name] = Booted(template, manifest, pcrs, log, seconds)
    return out


def shieldwright(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True)


def predict(template: Path, *profile: object, bank: str) -> dict[str, object]:
    done = shieldwright("pcr", "predict", template, *profile, "--bank", bank, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("bank", BANKS)
@pytest.mark.parametrize("which", ["A", "B"])
def test_prediction_on_the_variable_store_is_what_the_vtpm_measured(
    booted: dict[str, Booted], which: str, bank: str
) -> None:
    b = booted[which]
    doc = predict(b.template, "--firmware-vars", SNAKEOIL_VARS, bank=bank)
    assert doc["bank"] == bank
    assert doc["pcrs"] == {n: b.pcrs[bank][int(n)] for n in ("4", "7", "11")}


@pytest.mark.parametrize("bank", BANKS)
def test_the_manifest_carries_the_same_values(booted: dict[str, Booted], bank: str) -> None:
    b = booted["A"]
    predictions = b.manifest["pcr_predictions"][bank]  # type: ignore[index]
    assert predictions["4"] == b.pcrs[bank][4] and predictions["7"] == b.pcrs[bank][7]
    assert predictions["11"][""] == b.pcrs[bank][11]
    policy = b.manifest["pcr_policy"]
    assert policy["pcrs"] == [4, 7, 11] and policy["predicted"] == [4, 7, 11]  # type: ignore[index]
    assert policy["firmware"]["kind"] == "vars"  # type: ignore[index]


def test_one_templates_log_predicts_another_templates_boot(booted: dict[str, Booted]) -> None:
    a, b = booted["A"], booted["B"]
    assert a.pcrs["sha256"][11] != b.pcrs["sha256"][11] and a.pcrs["sha256"][4] != b.pcrs["sha256"][4]
    for bank in BANKS:
        doc = predict(b.template, "--firmware-log", a.log, bank=bank)
        assert doc["pcrs"] == {n: b.pcrs[bank][int(n)] for n in ("4", "7", "11")}


def test_diff_names_exactly_the_changed_events(booted: dict[str, Booted]) -> None:
    a, b = booted["A"], booted["B"]
    same = shieldwright("pcr", "diff", a.template, a.log, "--firmware-log", a.log, "--json")
    assert same.returncode == 0, same.stdout + same.stderr
    assert all(e["status"] == "match" for e in json.loads(same.stdout)["events"])

    other = shieldwright("pcr", "diff", b.template, a.log, "--firmware-vars", SNAKEOIL_VARS, "--json")
    assert other.returncode == 1, other.stdout + other.stderr
    doc = json.loads(other.stdout)
    assert doc["pcrs"]["7"]["predicted"] == doc["pcrs"]["7"]["log"]
    changed = [
        (
            e["pcr"],
            e["status"],
            (e["predicted"] or e["log"])["type"],
            (e["predicted"] or e["log"])["description"],
        )
        for e in doc["events"]
        if e["status"] != "match"
    ]
    assert changed == [
        (4, "differs", "EV_EFI_BOOT_SERVICES_APPLICATION", next(d for p, s, t, d in changed if p == 4)),
        (11, "differs", "EV_IPL", ".cmdline"),
    ]
    assert "\\EFI\\BOOT\\BOOTX64.EFI" in changed[0][3]
    text = shieldwright("pcr", "diff", b.template, a.log, "--firmware-vars", SNAKEOIL_VARS)
    assert text.returncode == 1 and "differs  PCR 11 EV_IPL" in text.stdout


# -- test-boot: the product's own boot-and-compare, checked against what the guest's kernel read -------


def run_test_boot(template: Path, *args: object) -> tuple[int, dict[str, object]]:
    done = shieldwright("test-boot", template, *args, "--json", "--timeout", 300)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_test_boot_reads_what_the_guest_read(booted: dict[str, Booted]) -> None:
    """``test-boot --firmware-vars`` (sha1): the PCRs it reads from the vTPM at ExitBootServices are the
    ones the guest's kernel read from its vTPM on the same firmware, and the prediction equals them."""
    a = booted["A"]
    code, doc = run_test_boot(a.template, "--firmware-vars", SNAKEOIL_VARS, "--bank", "sha1")
    assert code == 0 and doc["match"] and doc["reached_exit_boot_services"], doc
    pcrs = doc["pcrs"]
    assert {n: pcrs[n]["measured"] for n in ("4", "7", "11")} == {  # type: ignore[index]
        n: a.pcrs["sha1"][int(n)] for n in ("4", "7", "11")
    }
    assert pcrs["11"]["phase"] == ""  # type: ignore[index]


def test_test_boot_defaults_to_microsoft_keys_with_the_template_signer_in_db(
    booted: dict[str, Booted], tmp_path: Path
) -> None:
    """Without a store: Microsoft's store + the UKI's signer in db. PCR 4 and 11 do not depend on db and
    equal the snakeoil boot's; PCR 7 does, and equals ``pcr predict`` on the store `firmware vars` makes."""
    b = booted["B"]
    code, doc = run_test_boot(b.template)
    assert code == 0 and doc["match"], doc
    assert "Microsoft keys + " in str(doc["firmware"]) and "SnakeOil" in str(doc["firmware"])
    measured = {n: doc["pcrs"][n]["measured"] for n in ("4", "7", "11")}  # type: ignore[index]
    assert measured["4"] == b.pcrs["sha256"][4] and measured["11"] == b.pcrs["sha256"][11]
    assert measured["7"] != b.pcrs["sha256"][7]
    store = tmp_path / "ms-plus-snakeoil.fd"
    made = shieldwright("firmware", "vars", "--microsoft", "--add-db", vm.SNAKEOIL_CERT, "-o", store)
    assert made.returncode == 0, made.stderr
    assert predict(b.template, "--firmware-vars", store, bank="sha256")["pcrs"]["7"] == measured["7"]
