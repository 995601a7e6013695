"""Done-means 4: wizard → Save recipe → ``shieldwright build RECIPE`` gives the same template as the wizard.

The wizard builds a template on the demo image (its Generate page, the real pipeline), its Review page
saves the recipe, and ``shieldwright build RECIPE --passphrase-file F -o OUT2`` runs in a subprocess. Both
templates must have the same partition layout (disk and partition GUIDs, type GUIDs, first/last LBAs, as
``sgdisk`` reads them), the same UKI (its Authenticode digest as ``osslsigncode`` computes it, from the
UKI each ESP holds, extracted with ``mcopy``) and the same catalog (per-partition digests).

Why randomness is pinned, and how: a LUKS2 container's volume key, keyslot salts, anti-forensic stripes
and UUID are random by design, so two honest builds of one recipe never produce the same ciphertext - and
the catalog hashes ciphertext. So, *for this test only*, both builds draw ``os.urandom`` from the same
seeded DRBG: the wizard's build in this process (monkeypatched while it runs), the CLI's build in its
subprocess through a small wrapper script written to the test's tmp dir, which patches ``os.urandom``
before running ``python -m app``. The product has no switch for this (no environment variable, no hidden
option). For the same reason the volume-key digest's pbkdf2 iteration count, which the LUKS2 writer
measures on the machine at build time (~125 ms, like cryptsetup), is pinned in both. The recovery key is
left off here: a replayed recipe generates a *new* recovery key (the wizard's
is shown to the user and never saved), which would add a different keyslot and shift the random stream;
the provisioning passphrase, which both builds share, is written to the file the CLI reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from app.catalog.format import read_catalog
from app.gui.wizard import PageId
from app.luks import container as luks_container
from app.template.recipe_file import load_recipe
from tests.conftest import require_tool, run, sgdisk_partitions
from tests.gui.test_review_page import drive_to_review, save_recipe_and_wait
from tests.signing.pe_helpers import osslsigncode_calculated_digest

BUILD_TIMEOUT_MS = 180_000
SEED = b"shieldwright recipe round trip"
#: The volume-key digest's pbkdf2 iterations (measured per machine at build time, like cryptsetup's).
DIGEST_ITERATIONS = 1000
REPO = Path(__file__).resolve().parents[2]
ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"

#: One DRBG implementation for both builds: an AES-CTR keystream over a fixed seed.
DRBG_SOURCE = '''
import hashlib
import threading

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class SeededRandom:
    """A deterministic stand-in for os.urandom (tests only): the AES-256-CTR keystream of a fixed seed."""

    def __init__(self, seed: bytes) -> None:
        key = hashlib.sha256(seed).digest()
        self._stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(self, n: int) -> bytes:
        with self._lock:
            self.calls += 1
            return self._stream.update(bytes(n))
'''

WRAPPER = """
import os
import random  # before os.urandom is replaced: they keep the real one, as in the wizard's process,
import runpy
import secrets  # where they were imported long before the build (temporary file names use them)
import sys

sys.path.insert(0, {repo!r})
namespace = {{}}
exec({drbg!r}, namespace)
os.urandom = namespace["SeededRandom"]({seed!r})
import app.luks.container  # noqa: E402

app.luks.container._digest_iterations = lambda: {iterations!r}
sys.argv = ["shieldwright", *sys.argv[1:]]
runpy.run_module("app", run_name="__main__", alter_sys=True)
"""


def seeded_random():
    namespace: dict = {}
    exec(DRBG_SOURCE, namespace)
    return namespace["SeededRandom"](SEED)


def disk_guid(image: Path) -> str:
    out = run("sgdisk", "-p", image).stdout
    line = next(ln for ln in out.splitlines() if "Disk identifier (GUID)" in ln)
    return line.split(":", 1)[1].strip().lower()


def esp_uki(image: Path, uki_name: str, tmp: Path) -> Path:
    """The UKI in the template's ESP, copied out with mtools (an independent FAT reader)."""
    require_tool("mcopy")
    esp = next(p for p in sgdisk_partitions(image) if p["type_guid"] == ESP_TYPE)
    dest = tmp / f"{image.name}.{uki_name}"
    run("mcopy", "-n", "-i", f"{image}@@{esp['first_lba'] * 512}", f"::/EFI/Linux/{uki_name}", dest)
    return dest


def catalog_digests(vsc: Path) -> dict[int, str]:
    catalog = read_catalog(vsc.read_bytes()).catalog
    return {p.number: p.digest for p in catalog.partitions}


def test_saved_recipe_replayed_by_the_cli_gives_the_same_template(
    qtbot, wizard, demo_image, signing_files, fast_kdf, tmp_path, monkeypatch
):
    out1, out2 = tmp_path / "wizard", tmp_path / "cli"
    out1.mkdir()
    out2.mkdir()
    wizard.resize(1000, 700)
    # No recovery key (see the module docstring); everything else as a user would leave it.
    state = wizard.state
    review = drive_to_review(qtbot, wizard, demo_image, signing_files, out1 / "template.raw")
    state.encryption.recovery_key = False
    review.start_check()
    qtbot.waitUntil(lambda: not review.is_busy(), timeout=60_000)
    assert review.isComplete(), review.findings.messages()

    recipe_path = tmp_path / "recipe" / "template.toml"
    recipe_path.parent.mkdir()
    save_recipe_and_wait(qtbot, review, recipe_path)
    assert load_recipe(recipe_path) == state.recipe()

    # The wizard's build, with os.urandom pinned while it runs.
    drbg = seeded_random()
    monkeypatch.setattr(os, "urandom", drbg)
    monkeypatch.setattr(luks_container, "_digest_iterations", lambda: DIGEST_ITERATIONS)
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.CommitButton), Qt.MouseButton.LeftButton)
    page = wizard.generate_page
    assert wizard.currentId() == PageId.BUILD
    qtbot.waitUntil(lambda: not page.is_running(), timeout=BUILD_TIMEOUT_MS)
    monkeypatch.undo()
    assert page.error is None, page.error.one_line()
    assert drbg.calls > 0  # the build did draw randomness (volume keys, salts, UUIDs)
    wizard_result = state.output.result

    # The CLI's build of the saved recipe, the same DRBG in its own process.
    passphrase_file = tmp_path / "provisioning-passphrase"
    passphrase_file.write_bytes(bytes(state.encryption.passphrase))
    passphrase_file.chmod(0o600)
    wrapper = tmp_path / "seeded_shieldwright.py"
    wrapper.write_text(
        WRAPPER.format(repo=str(REPO), drbg=DRBG_SOURCE, seed=SEED, iterations=DIGEST_ITERATIONS)
    )
    template2 = out2 / "template.raw"
    proc = subprocess.run(
        [
            sys.executable,
            str(wrapper),
            "build",
            str(recipe_path),
            "--passphrase-file",
            str(passphrase_file),
            "-o",
            str(template2),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=BUILD_TIMEOUT_MS / 1000,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert state.encryption.passphrase.decode() not in proc.stdout + proc.stderr

    template1 = Path(wizard_result.output)
    assert template1 == out1 / "template.raw" and template2.is_file()

    # Same partition layout: disk GUID, and per partition its GUIDs, LBAs and name.
    assert disk_guid(template1) == disk_guid(template2)
    assert sgdisk_partitions(template1) == sgdisk_partitions(template2)
    assert sgdisk_partitions(template1) != sgdisk_partitions(demo_image)  # re-laid out (LUKS2 headers)

    # Same UKI: its Authenticode digest, computed by osslsigncode on the UKI each ESP holds.
    recipe = load_recipe(recipe_path)
    uki_name = f"{recipe.uki_id}.efi"
    uki1, uki2 = esp_uki(template1, uki_name, tmp_path), esp_uki(template2, uki_name, tmp_path)
    assert osslsigncode_calculated_digest(uki1) == osslsigncode_calculated_digest(uki2)

    # Same catalog: the per-partition digests of the protected (encrypted) partitions.
    vsc1 = Path(wizard_result.catalog)
    vsc2 = next(p for p in out2.iterdir() if p.suffix == ".vsc")
    digests1, digests2 = catalog_digests(vsc1), catalog_digests(vsc2)
    assert sorted(digests1) == sorted(state.protected)
    assert digests1 == digests2
