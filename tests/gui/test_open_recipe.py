"""Done-means 1 of issue 18: File › Open recipe fills every page of the template wizard from a saved recipe,
the secrets are asked for (as in a replay), and Generate gives the same template as ``shieldwright build``
of that recipe.

The recipe is written by the engine's own writer with a value other than the default wherever a page can
show one (one protected partition of two, a catalog certificate of its own with an encrypted key, a command
line and an os-release of its own, PCR 11 only, the removable path, 512-byte sectors, pbkdf2 with an explicit
cost and unlock time, a template version and block size, the provisioning passphrase read from a file). Each
page is then looked at as a user would see it. The build and the comparison with the CLI's build of the same
recipe file pin ``os.urandom`` to one seeded DRBG in both processes, as ``test_recipe_roundtrip`` explains
(LUKS2 keys, salts and UUIDs are random by design); templates are compared with sgdisk, osslsigncode (the
UKI each ESP holds) and the catalogs' per-partition digests.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWizard

from app.disk.layout import inspect_image
from app.gui.dialogs.passphrase import PassphraseDialog
from app.gui.frame import MainWindow
from app.gui.start_page import Flow
from app.gui.wizard import PageId, ShieldwrightWizard
from app.luks import container as luks_container
from app.progress import CancelToken
from app.signing import keys
from app.template.build.boot import image_boot_files, ref_of
from app.template.recipe import (
    BootOptions,
    CatalogOptions,
    EncryptionOptions,
    OutputOptions,
    PcrOptions,
    Recipe,
    SecretSource,
    SigningOptions,
    UkiOptions,
)
from app.template.recipe_file import load_recipe, save_recipe
from tests.conftest import sgdisk_partitions
from tests.gui.conftest import SigningFiles
from tests.gui.test_frame import make_frame, use_temp_config
from tests.gui.test_recipe_roundtrip import (
    DIGEST_ITERATIONS,
    DRBG_SOURCE,
    SEED,
    WRAPPER,
    catalog_digests,
    disk_guid,
    esp_uki,
    seeded_random,
)
from tests.signing.pe_helpers import osslsigncode_calculated_digest
from wizard_pages.certificates import Role

TASK_TIMEOUT_MS = 60_000
BUILD_TIMEOUT_MS = 180_000
REPO = Path(__file__).resolve().parents[2]
KEY_PASSPHRASE = "catalog key passphrase"
PROVISIONING_PASSPHRASE = "correct horse battery staple recipe"
CMDLINE = "console=ttyS0 quiet rd.shieldwright.demo=1"
OS_RELEASE = 'NAME="Demo web server"\nID=demo-web\nVERSION_ID="2.3"\nPRETTY_NAME="Demo web server 2.3"\n'


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch) -> Path:
    return use_temp_config(tmp_path, monkeypatch)


@pytest.fixture
def frame(qtbot, runner, config_home, tmp_path) -> MainWindow:
    return make_frame(qtbot, runner, tmp_path)


def write_recipe(tmp_path: Path, image: Path, uefi: SigningFiles) -> tuple[Path, Recipe]:
    """A recipe choosing something other than the default on every page, saved by the engine's writer."""
    keydir = tmp_path / "catalog-keys"
    keydir.mkdir()
    catalog_key = keys.generate_key("rsa2048")
    catalog_cert = keys.generate_self_signed(catalog_key, common_name="Open recipe catalog signing",
                                             organization="Test Org", days=30)  # fmt: skip
    cert_path = keys.write_certificate(catalog_cert, keydir / "catalog.crt")
    key_path = keys.write_private_key(catalog_key, keydir / "catalog.key", passphrase=KEY_PASSPHRASE.encode())
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "key-passphrase").write_text(KEY_PASSPHRASE + "\n")
    (secrets / "provisioning-passphrase").write_text(PROVISIONING_PASSPHRASE + "\n")
    for f in secrets.iterdir():
        f.chmod(0o600)

    layout = inspect_image(str(image))
    found = image_boot_files(image, layout, cancel=CancelToken())
    kernel = found.kernels[0]
    protectable = [p.number for p in layout.partitions if p.protectable]
    assert len(protectable) >= 2, protectable
    root = next(p.number for p in layout.partitions if p.role == "root")
    out = tmp_path / "wizard"
    out.mkdir()
    recipe = Recipe(
        base_image=image,
        protect=[root],
        signing=SigningOptions(
            uefi_cert=uefi.cert,
            uefi_key=uefi.key,
            catalog_cert=cert_path,
            catalog_key=key_path,
            key_passphrase=SecretSource.file(secrets / "key-passphrase"),
        ),  # fmt: skip
        uki=UkiOptions(
            source="image",
            kernel=ref_of(kernel.kernel),
            initrds=[ref_of(f) for f in kernel.initrds],
            cmdline=CMDLINE,
            os_release=OS_RELEASE,
        ),  # fmt: skip
        encryption=EncryptionOptions(
            sector_size=512,
            kdf="pbkdf2",
            iter_time_ms=750,
            kdf_params={"iterations": 1000, "hash": "sha256"},
            passphrase=SecretSource.file(secrets / "provisioning-passphrase"),
        ),  # fmt: skip
        catalog=CatalogOptions(name="Demo web server", version="2.3.0.1", block_size=256 * 1024),
        boot=BootOptions(install_removable=True),
        output=OutputOptions(out / "template.raw", "raw"),
        pcr=PcrOptions(pcrs=[11]),
    )
    path = tmp_path / "recipes" / "demo-web.recipe.toml"
    path.parent.mkdir()
    save_recipe(recipe, path)
    return path, load_recipe(path)


def open_recipe_in(qtbot, frame: MainWindow, path: Path) -> ShieldwrightWizard:
    """File › Open recipe…, the file chosen in the dialog; the catalog key's passphrase typed when asked."""
    frame.open_recipe_action.trigger()
    dialog = frame.open_dialog("open-recipe")
    assert isinstance(dialog, QFileDialog) and dialog.isVisible()
    with qtbot.waitSignal(frame.recipeOpened, timeout=TASK_TIMEOUT_MS):
        dialog.fileSelected.emit(str(path))
        dialog.accept()
    wizard = frame.flow
    assert isinstance(wizard, ShieldwrightWizard) and wizard.opened_from == path
    box = wizard.certificates_page.catalog_box
    qtbot.waitUntil(lambda: box.passphrase_dialog is not None, timeout=TASK_TIMEOUT_MS)
    prompt: PassphraseDialog = box.passphrase_dialog
    assert "catalog.key" in prompt.prompt.text()
    prompt.submit("wrong")
    qtbot.waitUntil(lambda: prompt.error_label.isVisible(), timeout=TASK_TIMEOUT_MS)
    prompt.submit(KEY_PASSPHRASE)
    qtbot.waitUntil(lambda: not wizard.recipe_pending(), timeout=TASK_TIMEOUT_MS)
    return wizard


def next_page(qtbot, wizard: ShieldwrightWizard, expected: PageId) -> None:
    button = wizard.button(QWizard.WizardButton.NextButton)
    qtbot.waitUntil(button.isEnabled, timeout=TASK_TIMEOUT_MS)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert wizard.currentId() == expected


@pytest.mark.slow
def test_open_recipe_fills_every_page_and_builds_the_cli_template(
    qtbot, frame, demo_image, signing_files, tmp_path, monkeypatch
):
    frame.resize(1000, 700)
    path, recipe = write_recipe(tmp_path, demo_image, signing_files)
    wizard = open_recipe_in(qtbot, frame, path)
    assert frame.windowTitle() == "Shieldwright — Template Disk Wizard"
    assert path in frame.settings.recent_recipes()
    root = recipe.protect[0]

    # Base image: the recipe's image, and only its one protected partition.
    base = wizard.base_image_page
    assert wizard.currentId() == PageId.BASE_IMAGE
    assert base.path_value.text() == str(demo_image)
    assert base.model.protected_numbers() == {root}

    # Certificates: the UEFI one, and the catalog's own (its encrypted key unlocked by the passphrase typed).
    next_page(qtbot, wizard, PageId.CERTIFICATES)
    certs = wizard.certificates_page
    assert certs.uefi_box.loaded.cert_path == signing_files.cert
    assert not certs.catalog_box.same_check.isChecked()
    assert certs.catalog_box.loaded.cert_path == recipe.signing.catalog_cert
    assert "Open recipe catalog signing" in certs.catalog_box.loaded.infos[Role.CATALOG].subject

    # Boot image: the recipe's kernel, command line and os-release; the UKI is built as usual.
    next_page(qtbot, wizard, PageId.BOOT_IMAGE)
    boot = wizard.boot_image_page
    qtbot.waitUntil(lambda: not boot.is_busy(), timeout=TASK_TIMEOUT_MS)
    assert boot.source_box.source() == "image"
    assert ref_of(boot.source_box.entry().kernel) == recipe.uki.kernel
    assert boot.cmdline_edit.toPlainText() == CMDLINE
    assert boot.os_release_edit.toPlainText() == OS_RELEASE
    with qtbot.waitSignal(boot.buildFinished, timeout=TASK_TIMEOUT_MS):
        qtbot.mouseClick(boot.build_button, Qt.MouseButton.LeftButton)
    assert boot.isComplete(), boot.error_panel.message_label.text()

    # PCR policy: PCR 11 only, the removable path, the bank.
    next_page(qtbot, wizard, PageId.PCR_POLICY)
    pcr = wizard.pcr_policy_page
    assert pcr.checklist.checked() == [11]
    assert pcr.removable_check.isChecked()
    assert pcr.bank_combo.currentData() == "sha256"

    # Encryption: 512-byte sectors, pbkdf2 at the recipe's cost (not calibrated again), the partition, and
    # the provisioning passphrase read from the file the recipe names - typed in, not generated.
    next_page(qtbot, wizard, PageId.ENCRYPTION)
    enc = wizard.encryption_page
    assert enc.sector_combo.currentData() == 512
    assert enc.kdf_combo.currentData() == "pbkdf2" and enc.iter_spin.value() == 750
    assert not enc.is_calibrating() and enc.options.kdf_params == {"iterations": 1000, "hash": "sha256"}
    numbers = [p.number for p in wizard.state.layout.partitions]
    checked = [
        n for n in numbers if (i := enc.item(n)) is not None and i.checkState(0) == Qt.CheckState.Checked
    ]
    assert checked == [root]
    box = enc.passphrase_box
    assert not box.generated and box.passphrase_edit.text() == PROVISIONING_PASSPHRASE
    assert bytes(wizard.state.encryption.passphrase).decode() == PROVISIONING_PASSPHRASE
    assert not enc.recovery_check.isChecked()

    # Signature catalog: name, version, block size.
    next_page(qtbot, wizard, PageId.CATALOG)
    cat = wizard.catalog_page
    assert (cat.name_edit.text(), cat.version_edit.text()) == ("Demo web server", "2.3.0.1")
    assert cat.block_combo.currentData() == 256 * 1024
    if not cat.isComplete():  # the page may still want its catalog computed before Next
        cat.compute()
        qtbot.waitUntil(lambda: not cat.is_busy(), timeout=TASK_TIMEOUT_MS)

    # Review: the recipe's output and passphrase file; the recipe made of the pages is the recipe opened.
    next_page(qtbot, wizard, PageId.REVIEW)
    review = wizard.review_page
    qtbot.waitUntil(lambda: not review.is_busy(), timeout=TASK_TIMEOUT_MS)
    assert review.output_field.path_label.full_text() == str(recipe.output.path)
    assert review.passphrase_field.file_label.text() == str(recipe.encryption.passphrase.value)
    summary = review.summary_text()
    assert "Demo web server" in summary and "2.3.0.1" in summary and CMDLINE in summary
    assert wizard.current_recipe() == recipe
    assert review.isComplete(), review.findings.messages()
    assert wizard.unsaved_work() == []  # typed from a file, saved in the recipe: nothing would be lost

    # Generate, with os.urandom pinned while it runs.
    drbg = seeded_random()
    monkeypatch.setattr(os, "urandom", drbg)
    monkeypatch.setattr(luks_container, "_digest_iterations", lambda: DIGEST_ITERATIONS)
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.CommitButton), Qt.MouseButton.LeftButton)
    page = wizard.generate_page
    assert wizard.currentId() == PageId.BUILD
    qtbot.waitUntil(lambda: not page.is_running(), timeout=BUILD_TIMEOUT_MS)
    monkeypatch.undo()
    assert page.error is None, page.error.one_line()
    assert drbg.calls > 0
    result = wizard.state.output.result

    # `shieldwright build RECIPE -o OUT2`, the same DRBG in its own process; every secret from the recipe's
    # files (nothing on the command line, no terminal).
    out2 = tmp_path / "cli"
    out2.mkdir()
    wrapper = tmp_path / "seeded_shieldwright.py"
    wrapper.write_text(
        WRAPPER.format(repo=str(REPO), drbg=DRBG_SOURCE, seed=SEED, iterations=DIGEST_ITERATIONS)
    )
    template2 = out2 / "template.raw"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    argv = [sys.executable, str(wrapper), "build", str(path), "-o", str(template2)]
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=BUILD_TIMEOUT_MS / 1000, cwd=tmp_path, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr

    template1 = Path(result.output)
    assert template1 == recipe.output.path and template2.is_file()
    assert disk_guid(template1) == disk_guid(template2)
    assert sgdisk_partitions(template1) == sgdisk_partitions(template2)
    uki_name = f"{recipe.uki_id}.efi"
    uki1, uki2 = esp_uki(template1, uki_name, tmp_path), esp_uki(template2, uki_name, tmp_path)
    assert osslsigncode_calculated_digest(uki1) == osslsigncode_calculated_digest(uki2)
    digests1 = catalog_digests(Path(result.catalog))
    digests2 = catalog_digests(next(p for p in out2.iterdir() if p.suffix == ".vsc"))
    assert sorted(digests1) == [root] and digests1 == digests2

    # After Generate: Build another opens a new wizard with the same choices, asking nothing (the
    # passphrase came from a file, and nothing else is only in memory).
    wizard.next()
    assert wizard.currentId() == PageId.SUMMARY
    another = wizard.button(QWizard.WizardButton.CustomButton2)
    assert another.isVisible()
    qtbot.mouseClick(another, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: frame.flow is not wizard and frame.flow is not None, timeout=3000)
    again = frame.flow
    assert isinstance(again, ShieldwrightWizard)
    assert again.catalog_page.version_edit.text() == "2.3.0.1"
    assert wizard.state.encryption is None or wizard.state.encryption.passphrase is None  # wiped on close
    # The catalog key is encrypted: asked for again (never remembered); not answering leaves it unloaded.
    catalog_box = again.certificates_page.catalog_box
    qtbot.waitUntil(lambda: catalog_box.passphrase_dialog is not None, timeout=TASK_TIMEOUT_MS)
    catalog_box.passphrase_dialog.reject()
    qtbot.waitUntil(lambda: not again.recipe_pending(), timeout=TASK_TIMEOUT_MS)


def test_file_save_recipe_writes_the_wizards_choices(qtbot, frame, demo_image, signing_files, tmp_path):
    path, recipe = write_recipe(tmp_path, demo_image, signing_files)
    wizard = open_recipe_in(qtbot, frame, path)
    wizard.catalog_page.version_edit.setText("2.3.0.2")  # a change: now unsaved
    assert any("not saved as a recipe" in r for r in wizard.unsaved_work())
    frame.save_recipe_action.trigger()
    dialog = frame.open_dialog("save-recipe")
    assert isinstance(dialog, QFileDialog) and dialog.selectedFiles()[0].endswith("demo-web.recipe.toml")
    out = tmp_path / "recipes" / "v2.recipe.toml"
    with qtbot.waitSignal(frame.fileSaved, timeout=TASK_TIMEOUT_MS) as saved:
        dialog.fileSelected.emit(str(out))
    dialog.reject()
    assert saved.args == [out]
    assert load_recipe(out) == wizard.current_recipe() and load_recipe(out).catalog.version == "2.3.0.2"
    assert load_recipe(out).signing.key_passphrase == recipe.signing.key_passphrase  # kept from the file
    assert frame.settings.recent_recipes()[0] == out
    assert not any("not saved as a recipe" in r for r in wizard.unsaved_work())
    text = out.read_text()
    assert PROVISIONING_PASSPHRASE not in text and KEY_PASSPHRASE not in text
    # Saving over a file asks first (non-blocking); Keep it writes nothing.
    frame.save_recipe_action.trigger()
    dialog = frame.open_dialog("save-recipe")
    dialog.fileSelected.emit(str(out))
    dialog.reject()
    question = frame.open_dialog("replace")
    assert isinstance(question, QMessageBox) and question.isVisible()
    before = out.read_bytes()
    question.reject()
    qtbot.waitUntil(lambda: frame.open_dialog("replace") is None, timeout=3000)
    assert out.read_bytes() == before


def test_a_bad_recipe_is_refused_with_its_message_and_the_wizard_shown_stays(
    qtbot, frame, small_disk, tmp_path
):
    frame.request_flow(Flow.TEMPLATE)
    wizard = frame.flow
    bad = tmp_path / "bad.recipe.toml"
    bad.write_text('format_version = 2\nbase_image = "disk.img"\nprotect = [3]\n[catalog]\nnmae = "x"\n')
    frame.open_recipe(bad)
    qtbot.waitUntil(lambda: frame.open_dialog("message") is not None, timeout=TASK_TIMEOUT_MS)
    box = frame.open_dialog("message")
    assert "bad.recipe.toml" in box.text() and box.informativeText()
    assert frame.flow is wizard
    box.close()
    # A recent recipe that vanished is dropped from the list.
    gone = tmp_path / "gone.recipe.toml"
    frame.settings.add_recent_recipe(gone)
    frame.open_recipe(gone)
    qtbot.waitUntil(lambda: frame.open_dialog("message") is not None, timeout=TASK_TIMEOUT_MS)
    assert gone not in frame.settings.recent_recipes()


def test_open_recipe_keeps_the_choices_a_default_would_replace(
    qtbot, frame, demo_image, signing_files, tmp_path
):
    """Three choices that the pages used to replace with their defaults when a recipe was opened: a UKI made
    from kernel files (the scan of the image chose its kernel), encryption of only some protected partitions
    (the Encryption page encrypted them all), a recovery key file of the recipe's own (written back as the
    default file beside the output)."""
    _, base = write_recipe(tmp_path, demo_image, signing_files)
    layout = inspect_image(str(demo_image))
    protectable = [p.number for p in layout.partitions if p.protectable]
    root = base.protect[0]
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    kernel.write_bytes(b"MZ kernel stand-in")
    initrd.write_bytes(b"initrd stand-in")
    recovery = tmp_path / "vault" / "demo.recovery"
    recipe = dataclasses.replace(
        base,
        protect=protectable,
        uki=UkiOptions(source="files", kernel=str(kernel), initrds=[str(initrd)], cmdline=CMDLINE),
        encryption=dataclasses.replace(base.encryption, partitions=[root], recovery_key_file=recovery),
    )
    path = tmp_path / "recipes" / "kept.recipe.toml"
    save_recipe(recipe, path)
    frame.resize(1000, 700)
    wizard = open_recipe_in(qtbot, frame, path)

    next_page(qtbot, wizard, PageId.CERTIFICATES)
    next_page(qtbot, wizard, PageId.BOOT_IMAGE)
    boot = wizard.boot_image_page
    qtbot.waitUntil(lambda: not boot.is_busy(), timeout=TASK_TIMEOUT_MS)
    assert boot.source_box.source() == "files"
    assert boot.source_box.kernel_file() == kernel and boot.source_box.initrd_files() == [initrd]

    wizard.setCurrentId(PageId.ENCRYPTION)
    enc = wizard.encryption_page
    qtbot.waitUntil(lambda: not enc.is_calibrating(), timeout=TASK_TIMEOUT_MS)
    checked = [
        n
        for n in protectable
        if enc.item(n) is not None and enc.item(n).checkState(0) == Qt.CheckState.Checked
    ]
    assert checked == [root] and enc.options.partitions == [root]

    made = wizard.current_recipe()
    assert made is not None
    assert made.uki.source == "files" and made.uki.kernel == str(kernel)
    assert made.encryption.partitions == [root]
    assert made.encryption.recovery_key_file == recovery
