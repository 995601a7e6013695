"""The Review page: the summary of what Generate will do, validation, output, Save recipe, the command.

The wizard is driven through its real pages on the demo image (certificates loaded on the Certificates
page, the UKI built on the Boot image page, keys made on the Encryption page, the template named on the
Catalog page), then jumps to Review. The KDF calibration is replaced by a cheap fixed cost (pbkdf2, 1000
iterations) so builds in the other tests stay fast. The saved recipe is graded by the engine's own
reader (``load_recipe``) against ``WizardState.recipe()`` and by a plain text search for secrets; the
equivalent command against the options table (``equivalent_argv``).
"""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWizard

from app.findings import Finding, Severity
from app.gui.state import OutputChoice
from app.gui.wizard import PageId
from app.template.options import equivalent_argv, unflagged_choices
from app.template.recipe import OutputOptions, SecretSource, parse_image_ref
from app.template.recipe_file import load_recipe
from tests.gui.conftest import SigningFiles, open_and_wait
from wizard_pages.certificates import Role
from wizard_pages.review import ReviewCheck, ReviewPage, check_recipe, default_output_path

TASK_TIMEOUT_MS = 60_000
TEMPLATE_NAME = "Demo web server"


# -- shared with the Generate, Finished and round-trip tests --------------------------------------------


def drive_to_review(qtbot, wizard, image: Path, signing: SigningFiles, output: Path | None) -> ReviewPage:
    """Base image → Certificates (load) → Boot image (build) → Encryption (pbkdf2, keys) → Catalog → Review.

    ``output`` None keeps the Review page's default output path.
    """
    open_and_wait(qtbot, wizard, image)
    wizard.next()
    assert wizard.currentId() == PageId.CERTIFICATES
    certs = wizard.certificates_page
    certs.load(Role.UEFI, signing.cert, signing.key)
    qtbot.waitUntil(lambda: not certs.is_busy() and wizard.state.signing_ready, timeout=TASK_TIMEOUT_MS)

    wizard.setCurrentId(PageId.BOOT_IMAGE)
    boot = wizard.boot_image_page
    qtbot.waitUntil(lambda: not boot.is_busy(), timeout=TASK_TIMEOUT_MS)
    with qtbot.waitSignal(boot.buildFinished, timeout=TASK_TIMEOUT_MS):
        boot.build()
    assert boot.isComplete(), boot.error_panel.message_label.text()

    wizard.setCurrentId(PageId.ENCRYPTION)
    enc = wizard.encryption_page
    qtbot.waitUntil(lambda: not enc.is_calibrating(), timeout=TASK_TIMEOUT_MS)
    enc.kdf_combo.setCurrentIndex(enc.kdf_combo.findData("pbkdf2"))
    qtbot.waitUntil(lambda: not enc.is_calibrating() and enc.choice.kdf_ready, timeout=TASK_TIMEOUT_MS)
    assert enc.choice.kdf_params.type == "pbkdf2" and enc.choice.kdf_params.time == 1000
    dialog = enc.show_recovery_key()
    dialog.stored_check.setChecked(True)
    qtbot.mouseClick(dialog.close_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: enc.recovery_dialog is None)
    assert enc.isComplete()

    wizard.setCurrentId(PageId.CATALOG)
    wizard.catalog_page.name_edit.setText(TEMPLATE_NAME)

    review = wizard.review_page
    if output is not None:
        # The default (beside the read-only demo image, shared by every test) is tested on its own.
        wizard.state.output = OutputChoice(OutputOptions(output, "raw"))
    wizard.setCurrentId(PageId.REVIEW)
    assert wizard.currentPage() is review
    qtbot.waitUntil(lambda: not review.is_busy(), timeout=TASK_TIMEOUT_MS)
    return review


# -- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture
def review(qtbot, wizard, demo_image, signing_files, fast_kdf, tmp_path) -> ReviewPage:
    wizard.resize(1000, 700)
    return drive_to_review(qtbot, wizard, demo_image, signing_files, tmp_path / "out" / "demo.raw")


# -- the page -------------------------------------------------------------------------------------------


def test_review_is_the_commit_page_with_a_generate_button(qtbot, wizard, review, tmp_path):
    assert review.title() == "Review"
    assert review.isCommitPage()
    assert "▸ Review" in wizard.steps.labels[PageId.REVIEW].text()
    commit = wizard.button(QWizard.WizardButton.CommitButton)
    assert commit.isVisible() and commit.text().replace("&", "") == "Generate"
    # The output folder does not exist yet: an ERROR finding, and Generate stays disabled.
    assert "error" in review.findings.severities()
    assert any("output.path" in m.lower() for m in review.findings.messages())
    assert not commit.isEnabled() and not review.isComplete()
    (tmp_path / "out").mkdir()
    with qtbot.waitSignal(review.checkFinished, timeout=TASK_TIMEOUT_MS):
        review.start_check()
    assert "error" not in review.findings.severities(), review.findings.messages()
    assert review.isComplete() and commit.isEnabled()
    # It names what will be written, and that the base image is only read.
    text = review.confirm_label.text()
    assert "demo.raw" in text and str(tmp_path / "out") in text and "demo.img" in text
    assert "never modified" in text


def test_summary_shows_every_choice_and_never_a_secret(qtbot, wizard, review, signing_files):
    state = wizard.state
    text = review.summary_text()
    groups = [g for g, _ in review.summary_groups()]
    assert groups == [
        "1. Base image",
        "2. Signing certificates",
        "3. Boot image (UKI)",
        "4. Encryption",
        "5. Signature catalog",
        "6. Output",
    ]
    # Base image and layout.
    assert str(state.image_path) in text
    for p in state.layout.partitions:
        assert p.name in text
    # Signing: subject and SHA-256 thumbprint.
    info = state.uefi_signing.info
    assert info.subject in text
    thumb = ":".join(info.sha256_fingerprint.upper()[i : i + 2] for i in range(0, 64, 2))
    assert thumb in text
    # UKI: kernel, command line, and PCR 11 (no phase) as the engine predicts it for the built UKI.
    from app.boot.pcr import predict_pcr11

    uki = state.uki.options
    assert parse_image_ref(uki.kernel)[1] in text and uki.cmdline in text
    pcr11 = predict_pcr11(state.uki.uki, banks=("sha256",))["sha256"][""]
    assert pcr11 in text
    # Encryption: partitions, cipher, sector size, KDF, recovery key yes.
    enc = state.encryption
    assert "aes-xts-plain64, 512-bit key" in text and "4096 bytes" in text
    assert "pbkdf2-sha256: 1,000 iterations" in text
    assert "Recovery key\tyes" in text.replace("\n", "\t") or "yes — the key you stored" in text
    # Catalog and output.
    assert TEMPLATE_NAME in text and "1.0.0.0" in text and "1 MiB" in text
    assert str(state.output.path) in text and "Raw disk image" in text
    # Never the passphrase nor the recovery key, anywhere on the page.
    passphrase = enc.passphrase.decode()
    recovery = enc.recovery_key_value.decode()
    everything = "\n".join(
        [text, review.confirm_label.text(), review.command_line(), *review.findings.messages()]
    )
    assert passphrase not in everything and recovery not in everything
    assert "set (not shown)" in text


def test_changing_the_format_renames_the_output_and_revalidates(qtbot, review):
    assert review.output.path.suffix == ".raw"
    with qtbot.waitSignal(review.checkFinished, timeout=TASK_TIMEOUT_MS):
        review.format_combo.setCurrentIndex(review.format_combo.findData("vhdx"))
    assert review.output.options.format == "vhdx" and review.output.path.name == "demo.vhdx"
    assert "VHDX" in review.summary_text() and "demo.vhdx" in review.confirm_label.text()
    with qtbot.waitSignal(review.checkFinished, timeout=TASK_TIMEOUT_MS):
        review.set_output_path(review.output.path.with_name("other.qcow2"))
    assert review.output.options.format == "qcow2"
    assert review.format_combo.currentData() == "qcow2"


def test_change_opens_a_non_blocking_dialog(qtbot, review, tmp_path):
    dialog = review.choose_output_path()  # returns at once: open(), never exec()
    assert dialog.isVisible()
    assert review.change_button.isEnabled() is False  # one dialog at a time
    target = tmp_path / "chosen.raw"
    with qtbot.waitSignal(review.checkFinished, timeout=TASK_TIMEOUT_MS):
        dialog.fileSelected.emit(str(target))
    dialog.reject()
    qtbot.waitUntil(lambda: review.change_button.isEnabled())
    assert review.output.path == target
    assert "error" not in review.findings.severities(), review.findings.messages()


def test_default_output_is_beside_the_base_image(qtbot, wizard, demo_image, signing_files, fast_kdf):
    page = drive_to_review(qtbot, wizard, demo_image, signing_files, None)
    expected = demo_image.parent / "Demo-web-server-1.0.0.0.raw"
    assert page.output.path == expected == default_output_path(wizard.state)


def test_validation_errors_block_generate(qtbot, wizard, review, tmp_path):
    (tmp_path / "out").mkdir()
    wizard.state.catalog.options.version = "1.0"  # the Catalog page would refuse it; the engine must too
    with qtbot.waitSignal(review.checkFinished, timeout=TASK_TIMEOUT_MS):
        review.start_check()
    assert "error" in review.findings.severities()
    assert any("catalog.version" in m.lower() for m in review.findings.messages())
    assert not review.isComplete()
    assert not wizard.button(QWizard.WizardButton.CommitButton).isEnabled()
    assert not review.validatePage()


def test_check_recipe_reports_pcr_unavailable_without_uki(wizard, review):
    recipe = wizard.state.recipe()
    result = check_recipe(recipe, None)
    assert isinstance(result, ReviewCheck) and result.pcr11 is None and "Boot image" in result.pcr_note
    assert all(isinstance(f, Finding) for f in result.findings)
    assert not any(f.severity is Severity.INFO and "passphrase" in f.message for f in result.findings)


# -- save recipe and the equivalent command --------------------------------------------------------------


def save_recipe_and_wait(qtbot, review: ReviewPage, path: Path) -> None:
    dialog = review.choose_recipe_path()
    assert dialog.isVisible()
    assert dialog.selectedFiles()[0].endswith("Demo-web-server-1.0.0.0.recipe.toml")
    with qtbot.waitSignal(review.saveFinished, timeout=TASK_TIMEOUT_MS):
        dialog.fileSelected.emit(str(path))
    dialog.reject()
    assert not review.error_panel.isVisible(), review.error_panel.message_label.text()


def test_save_recipe_round_trips_and_holds_no_secret(qtbot, wizard, review, tmp_path):
    (tmp_path / "out").mkdir()
    path = tmp_path / "recipes" / "demo.recipe.toml"
    path.parent.mkdir()
    save_recipe_and_wait(qtbot, review, path)
    assert review.saved_recipe == path and str(path) in review.status_label.text()

    expected = wizard.state.recipe()
    assert load_recipe(path) == expected
    text = path.read_text()
    data = tomllib.loads(text)
    enc = wizard.state.encryption
    assert enc.passphrase.decode() not in text
    assert enc.recovery_key_value.decode() not in text
    for word in enc.passphrase.decode().split("-"):
        assert word not in text  # not even a piece of it
    # The provisioning passphrase comes from a prompt when replayed.
    assert data["encryption"]["passphrase"] == "prompt"
    # The private key is referenced by path, never embedded.
    assert "PRIVATE KEY" not in text and "uefi.key" in text


def test_passphrase_file_is_recorded_when_chosen(qtbot, wizard, review, tmp_path):
    (tmp_path / "out").mkdir()
    secret = tmp_path / "provisioning.txt"
    secret.write_text("not the real one\n")
    secret.chmod(0o600)
    dialog = review.choose_passphrase_file()
    with qtbot.waitSignal(review.checkFinished, timeout=TASK_TIMEOUT_MS):
        dialog.fileSelected.emit(str(secret))
    dialog.reject()
    assert wizard.state.encryption.options.passphrase == SecretSource.file(secret)
    assert review.passphrase_combo.currentData() == "file"
    path = tmp_path / "with-file.toml"
    save_recipe_and_wait(qtbot, review, path)
    data = tomllib.loads(path.read_text())
    assert data["encryption"]["passphrase"] == {"file": str(secret)} or data["encryption"]["passphrase"] == {
        "file": secret.name
    }
    assert "not the real one" not in path.read_text()
    assert load_recipe(path) == wizard.state.recipe()
    # Back to the prompt.
    review.passphrase_combo.setCurrentIndex(0)
    review.passphrase_combo.activated.emit(0)
    assert wizard.state.encryption.options.passphrase == SecretSource.prompt()


def test_equivalent_command_names_the_saved_recipe(qtbot, wizard, review, tmp_path):
    (tmp_path / "out").mkdir()
    qtbot.mouseClick(review.command_button, Qt.MouseButton.LeftButton)
    assert review.command_panel.isVisible() and review.command_text.isReadOnly()
    flags = shlex.split(review.command_text.toPlainText())
    assert flags[:2] == ["shieldwright", "build"]
    assert flags[flags.index("--base") + 1] == str(wizard.state.image_path)
    assert flags[flags.index("--name") + 1] == TEMPLATE_NAME
    assert flags[flags.index("--uefi-cert") + 1] == str(wizard.state.uefi_signing.cert_path)
    assert [flags[i + 1] for i, f in enumerate(flags) if f == "--protect"] == [
        str(n) for n in sorted(wizard.state.protected)
    ]
    # One table: the command is the options table's argv for the state's recipe, and the note names the
    # choices no flag says (the kernel chosen in the image, the calibrated KDF cost, …).
    recipe = wizard.state.recipe()
    assert flags == equivalent_argv(recipe)
    left = unflagged_choices(recipe)
    assert "uki.kernel" in left and "encryption.kdf_params" in left
    assert all(key in review.command_note.text() for key in left)

    path = tmp_path / "my recipe.toml"  # a space: the command must quote it
    save_recipe_and_wait(qtbot, review, path)
    command = review.command_text.toPlainText()
    assert shlex.split(command) == ["shieldwright", "build", str(path)]
    assert str(path) in command
    qtbot.mouseClick(review.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == command
    # A change after saving: the saved file no longer says it, so the flags form comes back.
    with qtbot.waitSignal(review.checkFinished, timeout=TASK_TIMEOUT_MS):
        review.format_combo.setCurrentIndex(review.format_combo.findData("qcow2"))
    assert not review.recipe_is_saved()
    assert "--format qcow2" in review.command_text.toPlainText()


def test_generate_button_moves_to_the_generate_page(qtbot, wizard, review, tmp_path, monkeypatch):
    """Only the hand-over: the build itself is tested in test_generate_page.py."""
    (tmp_path / "out").mkdir()
    with qtbot.waitSignal(review.checkFinished, timeout=TASK_TIMEOUT_MS):
        review.start_check()
    started = []
    monkeypatch.setattr(wizard.generate_page, "start", lambda: started.append(True))
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.CommitButton), Qt.MouseButton.LeftButton)
    assert wizard.currentId() == PageId.BUILD and started == [True]
    assert not wizard.button(QWizard.WizardButton.BackButton).isEnabled()  # past the commit point
