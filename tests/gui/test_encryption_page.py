"""The Encryption page: partitions from the protect marks, KDF calibration, passphrase, recovery key, secrets.

Partition sizes and eligibility come from the real re-layout planner on a real image (and on hand-made
layouts for the refusals); the KDF calibration runs for real once (short unlock time) and is otherwise
replaced by a fake so the tests stay fast and can hold a calibration open to cancel it.
"""

from __future__ import annotations

import json
import re
import stat
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QLineEdit

from app.disk.layout import inspect_image
from app.disk.model import DiskLayout, Partition, Role
from app.errors import CancelledError
from app.gui.dialogs.recovery_key import RecoveryKeyDialog
from app.gui.discard import open_question
from app.gui.state import CatalogChoice, EncryptionChoice, SigningChoice, WizardState
from app.gui.wizard import PageId
from app.luks import kdf
from app.luks.kdf import KdfParams
from app.template.recipe import CatalogOptions, EncryptionOptions, SecretSource, kdf_params_dict
from app.template.recipe_file import recipe_to_dict
from tests.gui.conftest import advance_button, open_and_wait
from wizard_pages.encryption import EncryptionPage

MiB = 1024 * 1024
TIMEOUT_MS = 30_000
MODHEX = "cbdefghijklnrtuv"  # systemd src/shared/recovery-key.c
RECOVERY_RE = re.compile(rf"^[{MODHEX}]{{8}}(-[{MODHEX}]{{8}}){{7}}$")
PASSPHRASE_RE = re.compile(rf"^[{MODHEX}]{{4}}(-[{MODHEX}]{{4}}){{7}}$")
FAKE_ARGON2 = KdfParams.argon2id(4, 1048576, 4)
LONG_PASSPHRASE = "correct horse battery staple"


class FakeCalibrate:
    """Stands in for kdf.calibrate: records calls and threads; ``hold`` keeps it running until cancelled."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.threads: list[str] = []
        self.hold = False
        self.started = threading.Event()
        self.stopped = threading.Event()

    def __call__(self, kind: str, iter_time_ms: int = 2000, max_memory_kib: int = 1048576,
                 parallel: int | None = None, cancel=None) -> KdfParams:  # fmt: skip
        self.calls.append((kind, iter_time_ms))
        self.threads.append(threading.current_thread().name)
        self.started.set()
        deadline = time.monotonic() + 20
        while self.hold and time.monotonic() < deadline:
            if cancel is not None and cancel.cancelled:
                self.stopped.set()
                raise CancelledError()
            time.sleep(0.005)
        return KdfParams.pbkdf2(123_456) if kind == "pbkdf2" else replace(FAKE_ARGON2)


@pytest.fixture
def fake_kdf(monkeypatch) -> FakeCalibrate:
    fake = FakeCalibrate()
    monkeypatch.setattr(kdf, "calibrate", fake)
    return fake


@pytest.fixture(scope="module")
def small_layout(small_disk) -> DiskLayout:
    return inspect_image(small_disk)


def make_page(qtbot, runner, layout: DiskLayout, protected: set[int] | None = None) -> EncryptionPage:
    state = WizardState()
    state.set_image(Path(layout.path), layout)
    if protected is not None:
        state.protected = protected
    page = EncryptionPage(state, runner)
    qtbot.addWidget(page)
    page.resize(800, 560)
    page.show()
    return page


def enter(qtbot, page: EncryptionPage) -> None:
    """What QWizard does when the page is shown; then wait for the first (auto) calibration."""
    page.initializePage()
    qtbot.waitUntil(lambda: not page.is_calibrating(), timeout=TIMEOUT_MS)


@pytest.fixture
def page(qtbot, runner, small_layout, fake_kdf) -> EncryptionPage:
    p = make_page(qtbot, runner, small_layout)
    enter(qtbot, p)
    return p


def acknowledge_recovery_key(qtbot, page: EncryptionPage) -> str:
    dialog = page.show_recovery_key()
    key = dialog.key_label.text()
    dialog.stored_check.setChecked(True)
    qtbot.mouseClick(dialog.close_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.recovery_dialog is None)
    return key


# -- in the wizard ------------------------------------------------------------------------------------


def goto_encryption(qtbot, wizard, small_disk) -> EncryptionPage:
    """Base image → Certificates → Encryption, jumping over the pages in between (tested on their own)."""
    open_and_wait(qtbot, wizard, small_disk)
    wizard.next()
    assert wizard.currentId() == PageId.CERTIFICATES
    wizard.setCurrentId(PageId.ENCRYPTION)  # initializes the page like Next does
    page = wizard.encryption_page
    assert wizard.currentId() == PageId.ENCRYPTION and wizard.currentPage() is page
    qtbot.waitUntil(lambda: not page.is_calibrating(), timeout=TIMEOUT_MS)
    return page


def test_wizard_shows_encryption_after_certificates(qtbot, wizard, small_disk, fake_kdf):
    ids = wizard.pageIds()
    assert ids == sorted(ids) and PageId.CERTIFICATES in ids and PageId.ENCRYPTION in ids
    before = [i for i in ids if i < PageId.ENCRYPTION]
    assert PageId.CERTIFICATES in before  # Certificates → (Boot, PCR policy when built) → Encryption
    assert wizard.page(before[-1]).nextId() == PageId.ENCRYPTION
    assert list(wizard.steps.labels).index(PageId.ENCRYPTION) > list(wizard.steps.labels).index(
        PageId.PCR_POLICY
    )

    page = goto_encryption(qtbot, wizard, small_disk)
    assert wizard.visitedIds() == [PageId.BASE_IMAGE, PageId.CERTIFICATES, PageId.ENCRYPTION]
    assert "▸ Encryption" in wizard.steps.labels[PageId.ENCRYPTION].text()
    assert "✓ Certificates" in wizard.steps.labels[PageId.CERTIFICATES].text()
    assert page.title() == "Encryption"
    assert "LUKS2" in page.subTitle() and "provisioning" in page.subTitle() and "TPM" in page.subTitle()
    assert fake_kdf.calls == [("argon2id", 2000)]  # auto-calibrated once, on first show
    assert wizard.state.encryption is page.choice
    assert page.options.partitions == [2, 3]
    assert not advance_button(wizard).isEnabled()  # the recovery key was not acknowledged yet
    acknowledge_recovery_key(qtbot, page)
    assert advance_button(wizard).isEnabled()
    wizard.back()
    wizard.setCurrentId(PageId.ENCRYPTION)
    assert wizard.currentPage() is page
    assert fake_kdf.calls == [("argon2id", 2000)]  # not again
    assert page.options.partitions == [2, 3] and page.isComplete()


def test_closing_the_wizard_wipes_the_secrets(qtbot, wizard, small_disk, fake_kdf):
    page = goto_encryption(qtbot, wizard, small_disk)
    acknowledge_recovery_key(qtbot, page)
    passphrase, recovery = page.choice.passphrase, page.choice.recovery_key_value
    assert passphrase and recovery and any(passphrase) and any(recovery)
    wizard.reject()  # asks first: the generated passphrase is shown only in this wizard
    question = open_question(wizard)
    assert question is not None and "generated provisioning passphrase" in question.informativeText()
    question.discard_button.click()
    assert not any(passphrase) and not any(recovery)  # the very buffers were overwritten
    assert page.choice.passphrase is None and page.choice.recovery_key_value is None
    assert (
        page.passphrase_box.generated_edit.text() == "" and page.passphrase_box.passphrase_edit.text() == ""
    )


# -- partitions ----------------------------------------------------------------------------------------


def test_default_selection_follows_protect_marks(qtbot, page, small_layout):
    by_number = {p.number: p for p in small_layout.partitions}
    assert [page.item(n).text(page.tree.COL_NAME) for n in (1, 2, 3, 4)] == [
        "ESP",
        "XBOOTLDR",
        "root-x86-64",
        "swap",
    ]
    checked = {
        n for n in (1, 2, 3, 4) if page.item(n).checkState(page.tree.COL_NUMBER) == Qt.CheckState.Checked
    }
    assert checked == page.state.protected == set(page.options.partitions) == {2, 3}

    esp = page.item(1)
    assert not esp.flags() & Qt.ItemFlag.ItemIsUserCheckable
    assert not esp.flags() & Qt.ItemFlag.ItemIsEnabled
    assert "EFI System Partition" in esp.text(page.tree.COL_NOTE)
    assert "never encrypted" in esp.toolTip(page.tree.COL_NAME)  # the engine's full reason
    assert page.item(4).flags() & Qt.ItemFlag.ItemIsUserCheckable  # swap: may be encrypted, not by default

    # Each encrypted partition grows by the 16 MiB LUKS2 header (sizes here are whole 4 KiB sectors).
    for n in (2, 3, 4):
        grown = (by_number[n].size_bytes + 16 * MiB) // MiB
        assert page.item(n).text(page.tree.COL_ENCRYPTED) == f"{grown} MiB (+16 MiB)"
    assert page.summary_label.text().startswith("Partitions 2 and 3 will be encrypted")

    page.item(4).setCheckState(page.tree.COL_NUMBER, Qt.CheckState.Checked)
    assert page.options.partitions == [2, 3, 4]
    esp.setCheckState(page.tree.COL_NUMBER, Qt.CheckState.Checked)  # programmatic: still ignored for the ESP
    assert 1 not in page.options.partitions
    for n in (2, 3, 4):
        page.item(n).setCheckState(page.tree.COL_NUMBER, Qt.CheckState.Unchecked)
    assert page.options.partitions == []
    assert page.summary_label.text() == "Select at least one partition to encrypt."
    acknowledge_recovery_key(qtbot, page)
    assert not page.isComplete()  # at least one partition
    page.item(3).setCheckState(page.tree.COL_NUMBER, Qt.CheckState.Checked)
    assert page.isComplete()
    assert page.summary_label.text().startswith("Partition 3 will be encrypted")

    page.sector_combo.setCurrentIndex(page.sector_combo.findData(512))
    assert page.options.sector_size == 512 and page.options.partitions == [3]


def test_protect_marks_changed_on_base_image_reset_the_selection(qtbot, page):
    page.item(4).setCheckState(page.tree.COL_NUMBER, Qt.CheckState.Checked)
    page.initializePage()  # back and forth without changes: the user's choice stays
    assert page.options.partitions == [2, 3, 4]
    page.state.protected = {3, 4}
    page.initializePage()
    assert page.options.partitions == [3, 4]


def _partition(number: int, first_mib: int, size_mib: float, role: Role, content: str) -> Partition:
    first = first_mib * 2048
    last = first + int(size_mib * 2048) - 1
    return Partition(number, f"p{number}", "0fc63daf-8483-4772-8e79-3d69d8477de4", "Linux", f"guid-{number}",
                     first, last, (last - first + 1) * 512, content, role)  # fmt: skip


def test_refusals_from_the_planner_are_shown(qtbot, runner, fake_kdf):
    parts = [
        _partition(1, 1, 16, Role.ESP, "fat"),
        _partition(2, 17, 16, Role.ROOT, "luks2"),
        _partition(3, 33, 0.5, Role.DATA, "unknown"),
        _partition(4, 34, 16, Role.HOME, "ext4"),
    ]
    layout = DiskLayout("/x.img", "raw", 64 * MiB, 512, "11111111-2222-3333-4444-555555555555", parts)
    page = make_page(qtbot, runner, layout, protected={2, 3, 4})
    enter(qtbot, page)
    assert page.options.partitions == [4]  # the protected ones that can be encrypted
    assert "Already LUKS2" in page.item(2).text(page.tree.COL_NOTE)
    assert "Too small" in page.item(3).text(page.tree.COL_NOTE)
    for n in (1, 2, 3):
        assert not page.item(n).flags() & Qt.ItemFlag.ItemIsUserCheckable
    assert not page.error_panel.isVisible()

    four_k = replace(layout, sector_size=4096)  # the re-layout refuses the whole disk
    page2 = make_page(qtbot, runner, four_k, protected={4})
    enter(qtbot, page2)
    assert page2.error_panel.isVisible() and "512-byte" in page2.error_panel.message_label.text()
    assert page2.options.partitions == [] and not page2.isComplete()
    assert all(not page2.item(n).flags() & Qt.ItemFlag.ItemIsUserCheckable for n in (1, 2, 3, 4))


# -- passphrase ------------------------------------------------------------------------------------------


def test_generated_passphrase_copy_and_regenerate(qtbot, page):
    assert page.passphrase_box.generate_radio.isChecked()
    text = page.passphrase_box.generated_edit.text()
    assert PASSPHRASE_RE.match(text), text
    assert len(text.replace("-", "")) * 4 >= 128  # 32 modhex characters × 4 bits
    assert page.passphrase_box.generated_edit.isReadOnly()
    assert (
        page.passphrase_box.generated_edit.font().fixedPitch()
        or "mono" in page.passphrase_box.generated_edit.font().family().lower()
    )
    assert bytes(page.choice.passphrase) == text.encode()
    assert page.choice.passphrase_generated
    assert "only while this wizard is open" in page.passphrase_box.generated_note.text()

    qtbot.mouseClick(page.passphrase_box.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == text

    qtbot.mouseClick(page.passphrase_box.regenerate_button, Qt.MouseButton.LeftButton)
    new = page.passphrase_box.generated_edit.text()
    assert new != text and PASSPHRASE_RE.match(new)
    assert bytes(page.choice.passphrase) == new.encode()


def test_entered_passphrase_must_be_long_and_repeated(qtbot, page):
    page.recovery_check.setChecked(False)  # isolate the passphrase rule
    assert page.isComplete()  # generated passphrase, calibrated, no recovery key
    generated = page.passphrase_box.generated_edit.text()
    qtbot.mouseClick(page.passphrase_box.enter_radio, Qt.MouseButton.LeftButton)
    assert page.passphrase_box.passphrase_stack.currentIndex() == 1
    assert page.passphrase_box.passphrase_edit.echoMode() == QLineEdit.EchoMode.Password
    assert page.passphrase_box.confirm_edit.echoMode() == QLineEdit.EchoMode.Password
    assert not page.isComplete() and page.choice.passphrase is None

    qtbot.keyClicks(page.passphrase_box.passphrase_edit, "short")
    qtbot.keyClicks(page.passphrase_box.confirm_edit, "short")
    assert not page.isComplete()
    assert page.passphrase_box.passphrase_hint.text() == "Too short: use at least 12 characters."

    page.passphrase_box.passphrase_edit.setText(LONG_PASSPHRASE)
    page.passphrase_box.confirm_edit.setText(LONG_PASSPHRASE + "!")
    assert not page.isComplete()
    assert page.passphrase_box.passphrase_hint.text() == "The passphrases do not match."

    page.passphrase_box.confirm_edit.setText(LONG_PASSPHRASE)
    assert page.isComplete()
    assert page.passphrase_box.passphrase_hint.text().startswith("Strong")
    assert bytes(page.choice.passphrase) == LONG_PASSPHRASE.encode() and not page.choice.passphrase_generated

    page.passphrase_box.confirm_edit.setText("x" * 11 + "y")  # 12 characters but different: blocked again
    assert not page.isComplete()

    qtbot.mouseClick(
        page.passphrase_box.generate_radio, Qt.MouseButton.LeftButton
    )  # back: the same generated one
    assert bytes(page.choice.passphrase) == generated.encode() and page.isComplete()


# -- KDF calibration -------------------------------------------------------------------------------------


def test_real_calibration_runs_in_the_background(qtbot, runner, small_layout, monkeypatch):
    real = kdf.calibrate
    threads: list[str] = []

    def spy(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(kdf, "calibrate", spy)
    page = make_page(qtbot, runner, small_layout)
    assert page.cipher_value.text() == "AES-256-XTS (aes-xts-plain64, 512-bit key)"
    assert page.sector_combo.currentData() == 4096 and page.kdf_combo.currentData() == "argon2id"
    assert page.iter_spin.value() == 2000
    page.iter_spin.setValue(100)  # keep the real measurement short
    page._auto_calibrated = True  # no automatic run: this test presses the button
    page.initializePage()
    assert not page.choice.kdf_ready and not page.isComplete()
    assert page.params_value.text() == "Not calibrated: press Calibrate."

    qtbot.mouseClick(page.calibrate_button, Qt.MouseButton.LeftButton)
    assert page.is_calibrating()  # returned at once: the work is elsewhere
    assert page.busy_bar.isVisible() and page.stop_button.isVisible()
    assert not page.calibrate_button.isEnabled()
    with qtbot.waitSignal(page.calibrationFinished, timeout=TIMEOUT_MS):
        pass
    assert threads and threads[0] != threading.main_thread().name
    params = page.choice.kdf_params
    assert params is not None and params.type == "argon2id"
    params.validate()
    assert params.time >= 4 and params.parallel <= 4
    memory = f"{params.memory_kib * 1024 / MiB:.1f}".removesuffix(".0")
    assert page.params_value.text().startswith(f"argon2id: {params.time} iterations, {memory} MiB")
    assert page.params_value.text().endswith(f"{params.parallel} lanes ≈ 0.1 s")
    assert not page.busy_bar.isVisible() and not page.stop_button.isVisible()

    with qtbot.waitSignal(page.calibrationFinished, timeout=TIMEOUT_MS):
        page.kdf_combo.setCurrentIndex(page.kdf_combo.findData("pbkdf2"))  # calibrates the new KDF
    assert page.choice.kdf_params.type == "pbkdf2" and page.choice.kdf_params.iterations >= 1000
    assert re.fullmatch(r"pbkdf2-sha256: [\d,]+ iterations ≈ 0\.1 s", page.params_value.text())

    page.iter_spin.setValue(200)  # the parameters no longer fit the unlock time
    assert not page.choice.kdf_ready and not page.isComplete()


def test_cancel_stops_a_calibration(qtbot, page, fake_kdf):
    page.recovery_check.setChecked(False)
    assert page.isComplete()
    fake_kdf.hold = True
    fake_kdf.started.clear()
    qtbot.mouseClick(page.calibrate_button, Qt.MouseButton.LeftButton)
    assert page.is_calibrating() and not page.isComplete()
    assert page.params_value.text() == "Measuring argon2id on this computer…"
    qtbot.waitUntil(fake_kdf.started.is_set, timeout=TIMEOUT_MS)
    qtbot.mouseClick(page.stop_button, Qt.MouseButton.LeftButton)
    assert not page.is_calibrating()  # the page is idle at once
    assert not page.busy_bar.isVisible() and page.calibrate_button.isEnabled()
    assert page.params_value.text().startswith("Calibration stopped")
    assert not page.choice.kdf_ready and not page.isComplete()
    assert fake_kdf.stopped.wait(5)  # and the worker really stopped
    fake_kdf.hold = False
    with qtbot.waitSignal(page.calibrationFinished, timeout=TIMEOUT_MS):
        qtbot.mouseClick(page.calibrate_button, Qt.MouseButton.LeftButton)
    assert page.choice.kdf_ready and page.isComplete()
    assert page.params_value.text() == "argon2id: 4 iterations, 1 GiB, 4 lanes ≈ 2.0 s"


# -- recovery key ------------------------------------------------------------------------------------------


def test_a_copied_passphrase_leaves_the_clipboard_with_the_wizard(qtbot, page):
    """Regression (issue 17 item 11): failed on ecab7db because the generated passphrase (and a copied
    recovery key) stayed on the clipboard after the wizard had forgotten them."""
    text = page.passphrase_box.generated_edit.text()
    qtbot.mouseClick(page.passphrase_box.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == text
    page.clear_secrets()  # what the wizard does when it closes
    assert QGuiApplication.clipboard().text() == ""


def test_recovery_key_dialog_save_and_acknowledge(qtbot, page, tmp_path):
    assert page.recovery_check.isChecked()
    assert not page.isComplete()  # everything else is ready: only the recovery key is missing
    qtbot.mouseClick(page.recovery_button, Qt.MouseButton.LeftButton)  # returns: open(), not exec()
    dialog = page.recovery_dialog
    assert isinstance(dialog, RecoveryKeyDialog) and dialog.isVisible() and dialog.isModal()
    key = dialog.key_label.text()
    assert RECOVERY_RE.match(key), key
    assert bytes(page.choice.recovery_key_value) == key.encode()
    assert dialog.key_label.font().fixedPitch() or "mono" in dialog.key_label.font().family().lower()
    assert dialog.key_label.font().pointSizeF() > page.font().pointSizeF()
    assert dialog.key_label.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse
    assert not dialog.close_button.isEnabled()

    qtbot.mouseClick(dialog.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == key

    target = tmp_path / "keys" / "template-recovery.txt"
    target.parent.mkdir()
    file_dialog = dialog.choose_file()
    assert file_dialog.isVisible()
    file_dialog.selectFile(str(target))
    file_dialog.accept()
    assert target.read_text() == key + "\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert dialog.saved_path == target and str(target) in dialog.status_label.text()

    file_dialog = dialog.choose_file()  # the same name again: refused, nothing replaced
    file_dialog.selectFile(str(target))
    file_dialog.accept()
    assert dialog.error_panel.isVisible() and "already exists" in dialog.error_panel.message_label.text()
    assert target.read_text() == key + "\n"

    dialog.reject()  # Esc without the checkbox: not stored
    qtbot.waitUntil(lambda: page.recovery_dialog is None)
    assert not page.isComplete() and not page.choice.recovery_key_acknowledged
    assert "not confirmed" in page.recovery_status.text()

    dialog = page.show_recovery_key()  # not acknowledged yet: the same key again
    assert dialog.key_label.text() == key
    dialog.stored_check.setChecked(True)
    assert dialog.close_button.isEnabled()
    qtbot.mouseClick(dialog.close_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.recovery_dialog is None)
    assert page.choice.recovery_key_acknowledged and page.isComplete()
    assert page.recovery_button.text() == "Ne&w recovery key…"
    assert "will not be shown again" in page.recovery_status.text()

    dialog = page.show_recovery_key()  # after acknowledging, only a *new* key can be shown
    assert dialog.key_label.text() != key and RECOVERY_RE.match(dialog.key_label.text())
    assert not page.isComplete()
    dialog.reject()
    assert not page.isComplete()

    page.recovery_check.setChecked(False)  # no recovery key at all: nothing to acknowledge
    assert page.choice.recovery_key_value is None and page.isComplete()
    assert not page.recovery_button.isEnabled()


# -- recipe and secrets --------------------------------------------------------------------------------------


def recipe_of(state: WizardState, tmp_path: Path) -> dict:
    """What "Save recipe" writes for ``state`` (the other pages' choices filled in with placeholders)."""
    state.uefi_signing = SigningChoice(tmp_path / "uefi.crt")
    state.catalog = CatalogChoice(CatalogOptions("Encryption test", "1.0.0.0"))
    return recipe_to_dict(state.recipe(output=tmp_path / "out" / "t.raw"), tmp_path)


def test_recipe_never_contains_the_passphrase_or_recovery_key(qtbot, page, tmp_path):
    key = acknowledge_recovery_key(qtbot, page)
    passphrase = page.passphrase_box.generated_edit.text()
    assert page.isComplete()
    recipe = recipe_of(page.state, tmp_path)
    # No "partitions": every protected partition (2 and 3) is encrypted. The cipher is not a choice.
    assert recipe["encryption"] == {
        "sector_size": 4096,
        "kdf": "argon2id",
        "iter_time_ms": 2000,
        "kdf_params": {"time": 4, "memory_kib": 1048576, "parallel": 4},
        "passphrase": "prompt",
        "recovery_key_file": "out/t.raw.recovery-key.txt",
        "sparse_ciphertext": False,
    }
    assert page.state.recipe(output=tmp_path / "t.raw").encrypted_partitions == [2, 3]
    dumped = json.dumps(recipe) + repr(page.state) + repr(page.choice)
    # Whole secrets only: a 4-letter modhex group can occur by chance inside hex digests and GUIDs.
    for secret in (passphrase, key, passphrase.replace("-", ""), key.replace("-", "")):
        assert secret not in dumped


def test_encryption_choice_is_plain_data(tmp_path):
    choice = EncryptionChoice(EncryptionOptions(partitions=[3]))
    choice.set_passphrase("first hidden passphrase", generated=False)
    old = choice.passphrase
    choice.set_passphrase("second hidden passphrase", generated=False)
    assert old == bytearray(len(old))  # the replaced buffer was wiped
    choice.set_recovery_key("cbdefghi-" * 7 + "cbdefghi")
    assert not choice.recovery_key_acknowledged and not choice.keys_ready
    choice.recovery_key_acknowledged = True
    assert choice.keys_ready and not choice.kdf_ready
    choice.options.kdf = "pbkdf2"
    choice.options.kdf_params = kdf_params_dict(KdfParams.pbkdf2(5000))
    assert choice.kdf_ready and choice.kdf_params.type == "pbkdf2" and choice.kdf_params.iterations == 5000
    choice.options.passphrase = SecretSource.file("/secrets/provisioning.txt")
    choice.recovery_key = False
    state = WizardState()
    state.set_image(tmp_path / "base.img", None)
    state.protected = {2, 3}
    state.encryption = choice
    assert recipe_of(state, tmp_path)["encryption"] == {
        "partitions": [3],
        "sector_size": 4096,
        "kdf": "pbkdf2",
        "iter_time_ms": 2000,
        "kdf_params": {"iterations": 5000, "hash": "sha256"},
        "passphrase": {"file": "/secrets/provisioning.txt"},
        "sparse_ciphertext": False,
    }
    assert "hidden" not in repr(choice) and "cbdefghi" not in repr(choice)
    pw, rk = choice.passphrase, choice.recovery_key_value
    choice.clear_secrets()
    assert pw == bytearray(len(pw)) and rk == bytearray(len(rk))
    assert choice.passphrase is None and choice.recovery_key_value is None and not choice.keys_ready
    state.encryption = None  # until the page was shown: the recipe's defaults
    assert state.recipe(output=tmp_path / "t.raw").encryption == EncryptionOptions()


def test_mnemonics_tab_order_and_accessible_names(page):
    box = page.passphrase_box
    texts = [page.partitions_caption.text(), page.calibrate_button.text(), box.generate_radio.text(),
             box.enter_radio.text(), box.copy_button.text(), box.regenerate_button.text(),
             page.recovery_check.text(), page.recovery_button.text(), page.stop_button.text()]  # fmt: skip
    letters = [t[t.index("&") + 1].lower() for t in texts]
    assert len(set(letters)) == len(letters) and not set(letters) & {"b", "n", "f"}  # Back, Next, Finish
    assert page.tree.accessibleName() == "Partitions to encrypt"
    assert page.passphrase_box.generated_edit.accessibleName() == "Generated passphrase"
    assert page.sector_combo.nextInFocusChain() is page.kdf_combo
    assert page.kdf_combo.nextInFocusChain() is page.iter_spin
    assert page.passphrase_box.copy_button.nextInFocusChain() is page.passphrase_box.regenerate_button
    assert page.recovery_check.nextInFocusChain() is page.recovery_button
