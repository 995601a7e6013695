"""Issue 7, "Done means" 1: a template built from the demo image boots under Secure Boot, and the PCR 11 its
vTPM holds is the one the signed manifest predicted.

Real firmware, real TPM, real kernel: QEMU q35 + OVMF Secure Boot with Debian's snakeoil keys enrolled
(:func:`app.boot.vm.boot`) + swtpm boot the WHOLE output disk. The disk has no boot entries in the firmware's
variable store, so OVMF takes the removable-media path ``\\EFI\\BOOT\\BOOTX64.EFI`` of its ESP - where
``boot.install_removable`` put our snakeoil-signed UKI. The UKI's initrd is the demo initrd, which prints
``PCR11=<HEX>`` from ``/sys/class/tpm/tpm0/pcr-sha256/11`` and (``shieldwright.test=poweroff``) powers off.
It runs no systemd, so no phase word is measured: the value must equal the manifest's
``pcr_predictions.sha256["11"][""]``.

The same template then passes every independent check of "Done means" 1: ``cryptsetup open
--test-passphrase`` on the encrypted root, ``vsc verify``, ``shieldwright verify``, ``openssl cms -verify`` of
the manifest. Timing here (TCG, 2 cores): build ~5 s, boot 9-15 s.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.boot import vm
from tests.build_helpers import PASSPHRASE, BuildKeys, build, extract_partition, make_keys, make_recipe
from tests.conftest import require_tool
from tests.luks.cryptsetup import test_passphrase as cryptsetup_test_passphrase

pytestmark = [pytest.mark.slow, pytest.mark.vm]

ROOT = Path(__file__).resolve().parents[1]
#: Serial console only; a panic powers off (``-no-reboot``); the demo initrd powers off after PCR11=.
CMDLINE = "console=ttyS0 panic=-1 shieldwright.test=poweroff"
BOOT_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> BuildKeys:
    return make_keys(tmp_path_factory.mktemp("e2e-keys"))


@pytest.fixture(scope="module")
def template(demo_image: Path, keys: BuildKeys, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("e2e") / "template.raw"
    recipe = make_recipe(demo_image, out, keys, protect=(2, 3), cmdline=CMDLINE, install_removable=True,
                         name="E2E template")  # fmt: skip
    result = build(recipe, keys)
    return result, json.loads(result.manifest.read_text())


def _shieldwright(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )


def test_template_boots_under_secure_boot_and_pcr11_matches_the_manifest(template) -> None:
    result, manifest = template
    assert "\\EFI\\BOOT\\BOOTX64.EFI" in manifest["uki"]["esp_paths"]
    boot = vm.boot(result.output, timeout=BOOT_TIMEOUT)
    where = f"ended={boot.ended} after {boot.elapsed} s, seen={boot.seen}\n{boot.tail()}"
    assert "shieldwright-demo: initrd reached" in boot.console, where
    assert not boot.secure_boot_refused, where
    assert "Secure Boot is enabled" in boot.console, where  # the kernel's EFI stub saw Secure Boot on
    assert boot.ended == "exited", where
    found = re.findall(r"^PCR11=([0-9A-Fa-f]{64})\s*$", boot.console, re.MULTILINE)
    assert found, where
    predicted = manifest["pcr_predictions"]["sha256"]["11"][""]
    assert found[0].lower() == predicted, (found[0], predicted)
    assert found[0].lower() != manifest["pcr_predictions"]["sha256"]["11"]["enter-initrd"]


def test_template_passes_every_independent_check(template, keys: BuildKeys, tmp_path: Path) -> None:
    result, _ = template
    for number in (2, 3):
        part = extract_partition(result.output, number, tmp_path / f"p{number}.img")
        assert cryptsetup_test_passphrase(part, PASSPHRASE, tmp_path) == 0, number
        part.unlink()
    vsc = _shieldwright("vsc", "verify", result.output, result.catalog, "--trust", keys.catalog.cert_path)
    assert vsc.returncode == 0, vsc.stdout + vsc.stderr
    verify = _shieldwright(
        "verify", result.output, "--trust", keys.uefi_cert, "--trust", keys.catalog.cert_path
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "OK: all" in verify.stdout
    require_tool("openssl")
    cms = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(result.manifest_signature),
         "-content", str(result.manifest), "-CAfile", str(keys.catalog.cert_path), "-purpose", "any",
         "-out", os.devnull],
        capture_output=True, text=True,
    )  # fmt: skip
    assert cms.returncode == 0, cms.stderr
