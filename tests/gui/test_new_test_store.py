"""The PCR policy page's *New store…*: an OVMF variable store with the template's certificate in db, made
from the page and predicted on at once.

The demo UKI is signed with Debian's snakeoil key, and the Signing certificates page's UEFI certificate is
that key's certificate. Microsoft's store does not admit the UKI; with the certificate added to db it
does. The written file is graded by virt-fw-vars (virt-firmware, run as a program): it equals what
``virt-fw-vars --add-db`` writes from the same store and certificate.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from PySide6.QtCore import Qt

from app.boot import vm
from app.gui.dialogs.new_test_store import SAVE_DIALOG, NewTestStoreDialog
from app.gui.state import SigningChoice
from app.measure.siglist import SHIELDWRIGHT_OWNER_GUID
from app.signing.certificates import describe_certificate
from app.signing.keys import load_signer
from tests.conftest import run
from tests.gui.test_pcr_policy_page import TIMEOUT_MS, demo_with_uki, make_state, rows, wait_predicted
from tests.measure.test_varstore import STORES, virt_json, virt_tool
from wizard_pages.pcr_policy import PcrPolicyPage

SNAKEOIL_SUBJECT = x509.load_pem_x509_certificate(vm.SNAKEOIL_CERT.read_bytes()).subject.rfc4514_string()


def _no_time(variables: dict) -> dict:
    return {k: {f: x for f, x in v.items() if f != "time"} for k, v in variables.items()}


@pytest.fixture(scope="module")
def demo(demo_image: Path):
    return demo_with_uki(demo_image)


@pytest.fixture
def page(qtbot, runner, demo) -> PcrPolicyPage:
    state = make_state(demo)
    signer = load_signer(vm.SNAKEOIL_CERT, vm.SNAKEOIL_KEY, vm.SNAKEOIL_PASSPHRASE)
    state.uefi_signing = SigningChoice(vm.SNAKEOIL_CERT, vm.SNAKEOIL_KEY, signer,
                                       describe_certificate(signer.certificate, purpose="uefi"))  # fmt: skip
    p = PcrPolicyPage(state, runner)
    qtbot.addWidget(p)
    p.resize(780, 520)
    p.show()
    p.initializePage()
    wait_predicted(qtbot, p)
    return p


def open_store_dialog(qtbot, page: PcrPolicyPage) -> NewTestStoreDialog:
    qtbot.mouseClick(page.new_store_button, Qt.MouseButton.LeftButton)
    dialog = page.new_store_dialog
    assert dialog is not None and dialog.isVisible()  # open(), not exec(): we got here
    return dialog


def save_as(qtbot, page: PcrPolicyPage, dialog: NewTestStoreDialog, path: Path) -> None:
    """Press Save as… and choose ``path`` in the save dialog, as a user does; wait for the page."""
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    saver = dialog.open_dialog(SAVE_DIALOG)
    assert saver is not None and saver.isVisible()
    saver.selectFile(str(path))
    saver.accept()
    qtbot.waitUntil(lambda: not dialog.is_busy() or page.new_store_dialog is None, timeout=TIMEOUT_MS)
    wait_predicted(qtbot, page)


def test_a_microsoft_store_with_the_template_certificate_is_written_and_predicted_on(qtbot, page, tmp_path):
    dialog = open_store_dialog(qtbot, page)
    assert dialog.base() == "microsoft"
    assert dialog.add_db_check.isChecked() and dialog.subject_label.text() == SNAKEOIL_SUBJECT
    out = tmp_path / "vm-vars.fd"
    with qtbot.waitSignal(page.predictionFinished, timeout=TIMEOUT_MS):
        save_as(qtbot, page, dialog, out)
    qtbot.waitUntil(lambda: page.new_store_dialog is None)

    # virt-fw-vars, from the same store and certificate, writes the same variables.
    theirs = tmp_path / "theirs.fd"
    run(virt_tool("virt-fw-vars"), "--input", STORES["microsoft"], "--add-db", str(SHIELDWRIGHT_OWNER_GUID),
        vm.SNAKEOIL_CERT, "--output", theirs)  # fmt: skip
    assert _no_time(virt_json(out, tmp_path)) == _no_time(virt_json(theirs, tmp_path))

    # It is the policy's profile now, and the UKI is admitted by the entry added.
    assert page.state.pcr.firmware_vars == out and page.profile_combo.currentData() == "vars"
    assert page.path_label.full_text() == str(out)
    assert not page.error_panel.isVisible() and page.isComplete()
    authority = rows(page, 7)[-1]
    assert authority[0] == "EV_EFI_VARIABLE_AUTHORITY" and "SnakeOil" in authority[1]


def test_without_the_certificate_the_store_does_not_admit_the_uki(qtbot, page, tmp_path):
    dialog = open_store_dialog(qtbot, page)
    dialog.add_db_check.setChecked(False)
    assert dialog.cert_note.isVisible() and "only what its own keys signed" in dialog.cert_note.text()
    out = tmp_path / "ms-only.fd"
    with qtbot.waitSignal(page.predictionFinished, timeout=TIMEOUT_MS):
        save_as(qtbot, page, dialog, out)
    assert _no_time(virt_json(out, tmp_path)) == _no_time(virt_json(STORES["microsoft"], tmp_path))
    assert page.state.pcr.firmware_vars == out
    assert page.error_panel.isVisible() and not page.isComplete()  # the engine's refusal, inline


def test_snakeoil_base_and_no_certificate_chosen(qtbot, runner, demo, tmp_path):
    state = make_state(demo)  # no UEFI certificate chosen yet
    page = PcrPolicyPage(state, runner)
    qtbot.addWidget(page)
    page.show()
    page.initializePage()
    wait_predicted(qtbot, page)
    dialog = open_store_dialog(qtbot, page)
    assert not dialog.add_db_check.isEnabled() and not dialog.add_db_check.isChecked()
    assert "No UEFI signing certificate" in dialog.cert_note.text() and dialog.cert_note.isVisible()
    dialog.base_buttons["snakeoil"].setChecked(True)
    out = tmp_path / "snakeoil.fd"
    with qtbot.waitSignal(page.predictionFinished, timeout=TIMEOUT_MS):
        save_as(qtbot, page, dialog, out)
    # The demo UKI is snakeoil-signed: Debian's snakeoil store admits it as it is.
    assert _no_time(virt_json(out, tmp_path)) == _no_time(virt_json(STORES["snakeoil"], tmp_path))
    assert page.state.pcr.firmware_vars == out and page.isComplete()


def test_an_existing_file_is_replaced_only_after_the_save_dialog_asked(qtbot, page, tmp_path):
    out = tmp_path / "old.fd"
    out.write_bytes(b"old store")
    dialog = open_store_dialog(qtbot, page)
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    saver = dialog.open_dialog(SAVE_DIALOG)
    assert saver is not None
    assert not saver.testOption(saver.Option.DontConfirmOverwrite)  # Qt asks before replacing
    saver.reject()
    qtbot.waitUntil(lambda: dialog.open_dialog(SAVE_DIALOG) is None)
    assert out.read_bytes() == b"old store" and not dialog.is_busy() and dialog.isVisible()

    dialog._submit(str(out))  # what the save dialog does once the user said "replace"
    qtbot.waitUntil(lambda: page.new_store_dialog is None, timeout=TIMEOUT_MS)
    wait_predicted(qtbot, page)
    assert out.read_bytes()[:9] != b"old store" and page.state.pcr.firmware_vars == out


def test_a_write_that_fails_is_an_inline_error_and_the_profile_stays(qtbot, page, tmp_path):
    missing = tmp_path / "no-such-dir" / "vars.fd"
    dialog = open_store_dialog(qtbot, page)
    dialog.base_buttons["snakeoil"].setChecked(True)
    dialog._submit(str(missing))
    qtbot.waitUntil(lambda: dialog.error_panel.isVisible(), timeout=TIMEOUT_MS)
    assert not dialog.is_busy() and dialog.isVisible() and dialog.base() == "snakeoil"
    assert "no-such-dir" in dialog.error_panel.message_label.text()
    assert not missing.exists() and page.state.pcr.firmware is None

    dialog.reject()  # Cancel: nothing written, the page as it was
    qtbot.waitUntil(lambda: page.new_store_dialog is None)
    assert list(tmp_path.iterdir()) == [] and page.state.pcr.firmware is None


def test_the_installed_store_is_never_written(qtbot, page):
    before = STORES["microsoft"].read_bytes()
    dialog = open_store_dialog(qtbot, page)
    dialog._submit(str(STORES["microsoft"]))
    qtbot.waitUntil(lambda: dialog.error_panel.isVisible(), timeout=TIMEOUT_MS)
    assert "installed OVMF store" in dialog.error_panel.message_label.text()
    assert STORES["microsoft"].read_bytes() == before and page.state.pcr.firmware is None
    dialog.reject()
