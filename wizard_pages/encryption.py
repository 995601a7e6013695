"""Wizard page: Encryption. The protected partitions become LUKS2 containers; choose the keys that open them.

The page edits the recipe's :class:`~app.template.recipe.EncryptionOptions` (partitions, sector size, KDF
and its calibrated cost) and keeps the keys in :class:`app.gui.state.EncryptionChoice`, in memory only:
the provisioning passphrase (generated, or typed twice) and an optional recovery key, shown once in
:class:`RecoveryKeyDialog` and acknowledged before Next. Every rule is the engine's: the re-layout planner
decides what can be encrypted, :func:`app.luks.kdf.calibrate` measures the KDF cost in the background, the
cipher is the build's. Secrets are wiped (and taken off the clipboard) when the wizard closes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.errors import CancelledError, ShieldwrightError
from app.gui.dialogs.recovery_key import RecoveryKeyDialog
from app.gui.page import WizardPage
from app.gui.presentation import describe_kdf, human_size
from app.gui.secret_clipboard import secret_clipboard
from app.gui.state import EncryptionChoice, WizardState
from app.gui.tasks import BackgroundTask, TaskRunner
from app.gui.widgets.adaptive_box import AdaptiveBox
from app.gui.widgets.busy import busy_bar
from app.gui.widgets.luks_partition_list import LuksPartitionList, PartitionOption, plan
from app.gui.widgets.luks_passphrase_box import LuksPassphraseBox
from app.gui.widgets.status_note import NoteLabel
from app.luks import kdf
from app.luks.container import generate_recovery_key
from app.luks.params import KDF_KINDS
from app.luks.relayout import RelayoutError
from app.template.build.keys import CIPHER, KEY_BITS
from app.template.recipe import DEFAULT_ITER_TIME_MS, SECTOR_SIZES, kdf_params_dict

if TYPE_CHECKING:
    from app.luks.kdf import KdfParams
    from app.progress import CancelToken, ProgressState
    from app.template.recipe import EncryptionOptions

log = logging.getLogger(__name__)

#: The unlock times the spin box offers (a range for the GUI; the recipe allows more).
ITER_TIME_RANGE_MS = (100, 20000)
CALIBRATE = "calibrate-kdf"


def _calibrate(kind: str, iter_time_ms: int, *, cancel: CancelToken, progress: ProgressState) -> KdfParams:
    """Runs in the executor (``kdf.calibrate`` is looked up at call time, so tests can substitute it)."""
    progress.begin("calibrate", 0)
    return kdf.calibrate(kind, iter_time_ms=iter_time_ms, cancel=cancel)


class EncryptionPage(WizardPage):
    """Partitions to encrypt, cipher and KDF, the provisioning passphrase and the recovery key."""

    #: A KDF calibration ended (found parameters, failed, or was stopped) and the page shows the outcome.
    calibrationFinished = Signal()

    def __init__(self, state: WizardState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("Encryption"))
        self.setSubTitle(
            self.tr(
                "The partitions to protect become LUKS2 containers that the provisioning passphrase opens. "
                "Provision a VM disk (after the build) seals a key to the VM's TPM and removes the "
                "passphrase."
            )
        )
        self.choice: EncryptionChoice = state.encryption or EncryptionChoice()
        self._synced_for: tuple[int, frozenset[int]] | None = None
        self._auto_calibrated = False
        self._calibration: BackgroundTask | None = None
        self._message: str | None = None
        self.recovery_dialog: RecoveryKeyDialog | None = None
        self._build_ui()
        self._show_kdf_state()
        self._update_recovery()

    @property
    def options(self) -> EncryptionOptions:
        """The recipe's ``[encryption]`` choices (the page's part of the state)."""
        return self.choice.options

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.partitions_caption = QLabel(self.tr("&Partitions to encrypt"), self)
        font = self.partitions_caption.font()
        font.setBold(True)
        self.partitions_caption.setFont(font)
        self.tree = LuksPartitionList(self)
        self.tree.checkedChanged.connect(self._on_checked_changed)
        self.partitions_caption.setBuddy(self.tree)
        self.summary_label = NoteLabel(self, name="relayoutSummary")

        self.cipher_box = self._cipher_box()
        self.passphrase_box = LuksPassphraseBox(self, generated=self.choice.passphrase_generated)
        self.passphrase_box.passphraseChanged.connect(self._on_passphrase_changed)
        self.recovery_box = self._recovery_box()
        keys_column = QVBoxLayout()
        keys_column.setSpacing(6)
        keys_column.addWidget(self.passphrase_box, 1)
        keys_column.addWidget(self.recovery_box)
        columns = AdaptiveBox(self, spacing=10)  # in a narrow window the keys go under the cipher
        columns.box.addWidget(self.cipher_box, 5)
        columns.box.addLayout(keys_column, 6)

        layout = self.body_layout()
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.error_panel)
        layout.addWidget(self.partitions_caption)
        layout.addWidget(self.tree)
        layout.addWidget(self.summary_label)
        layout.addSpacing(4)
        layout.addWidget(columns, 1)

        box = self.passphrase_box
        chain: list[QWidget] = [
            self.tree, self.sector_combo, self.kdf_combo, self.iter_spin, self.calibrate_button,
            self.stop_button, box.generate_radio, box.enter_radio, box.generated_edit, box.copy_button,
            box.regenerate_button, box.passphrase_edit, box.confirm_edit, self.recovery_check,
            self.recovery_button,
        ]  # fmt: skip
        for first, second in zip(chain, chain[1:], strict=False):
            QWidget.setTabOrder(first, second)

    def _cipher_box(self) -> QGroupBox:
        """Cipher (the build's, not a choice), sector size, KDF, unlock time and the calibrated cost."""
        box = QGroupBox(self.tr("Cipher and key derivation"), self)
        # An XTS key is two AES keys: a 512-bit key is AES-256.
        cipher = (
            f"AES-{KEY_BITS // 2}-XTS ({CIPHER}, " + self.tr("%1-bit key").replace("%1", str(KEY_BITS)) + ")"
        )
        self.cipher_value = QLabel(cipher, box)
        self.cipher_value.setObjectName("cipherValue")
        self.cipher_value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        sector_notes = {4096: self.tr("recommended"), 512: self.tr("for old kernels and tools")}
        self.sector_combo = QComboBox(box)
        for size in SECTOR_SIZES:
            note = f" ({sector_notes[size]})" if size in sector_notes else ""
            self.sector_combo.addItem(self.tr("%1 bytes").replace("%1", str(size)) + note, size)
        self.sector_combo.setAccessibleName(self.tr("Sector size"))
        self.sector_combo.setCurrentIndex(self.sector_combo.findData(self.options.sector_size))
        self.sector_combo.currentIndexChanged.connect(self._on_sector_changed)
        kdf_names = {"argon2id": self.tr("Argon2id (recommended)"), "pbkdf2": self.tr("PBKDF2-SHA256")}
        self.kdf_combo = QComboBox(box)
        for kind in KDF_KINDS:
            self.kdf_combo.addItem(kdf_names.get(kind, kind), kind)
        self.kdf_combo.setAccessibleName(self.tr("Key derivation function"))
        self.kdf_combo.setCurrentIndex(self.kdf_combo.findData(self.options.kdf))
        self.kdf_combo.currentIndexChanged.connect(self._on_kdf_changed)
        self.iter_spin = QSpinBox(box)
        self.iter_spin.setRange(*ITER_TIME_RANGE_MS)
        self.iter_spin.setSingleStep(250)
        self.iter_spin.setSuffix(self.tr(" ms"))
        self.iter_spin.setValue(self.options.iter_time_ms or DEFAULT_ITER_TIME_MS)
        self.iter_spin.setAccessibleName(self.tr("Unlock time"))
        self.iter_spin.setToolTip(
            self.tr("How long one unlock attempt should take on this computer (cryptsetup's --iter-time)")
        )
        self.iter_spin.valueChanged.connect(self._on_iter_time_changed)
        self.calibrate_button = QPushButton(self.tr("Ca&librate"), box)
        self.calibrate_button.setToolTip(
            self.tr("Measure the KDF cost that takes the unlock time on this computer")
        )
        self.calibrate_button.clicked.connect(self.calibrate)
        iter_row = QHBoxLayout()
        iter_row.addWidget(self.iter_spin)
        iter_row.addWidget(self.calibrate_button)
        iter_row.addStretch(1)

        self.busy_bar = busy_bar(box, self.tr("Calibrating"), max_width=90, max_height=12)
        self.stop_button = QPushButton(self.tr("St&op"), box)
        self.stop_button.setToolTip(self.tr("Stop the calibration"))
        self.stop_button.clicked.connect(self.cancel_calibration)
        self.params_value = NoteLabel(box, name="kdfParams", selectable=True)
        params_row = QHBoxLayout()
        params_row.addWidget(self.busy_bar)
        params_row.addWidget(self.params_value, 1)
        params_row.addWidget(self.stop_button)

        # A grid, not a QFormLayout: in a box no taller than it needs (the keys under it in a narrow window)
        # QFormLayout shares the height out by its rows' size hints, not the wrapped notes' heights, and
        # cuts them.
        form = QGridLayout(box)
        form.setColumnStretch(1, 1)
        rows: tuple[tuple[str, QWidget | QHBoxLayout, QWidget], ...] = (
            (self.tr("Cipher:"), self.cipher_value, self.cipher_value),
            (self.tr("&Sector size:"), self.sector_combo, self.sector_combo),
            (self.tr("Key &derivation:"), self.kdf_combo, self.kdf_combo),
            (self.tr("Unlock &time:"), iter_row, self.iter_spin),
            (self.tr("Parameters:"), params_row, self.params_value),
        )
        for row, (caption, field_, buddy) in enumerate(rows):
            label = QLabel(caption, box)
            label.setBuddy(buddy)
            form.addWidget(label, row, 0)
            if isinstance(field_, QWidget):
                form.addWidget(field_, row, 1)
            else:
                form.addLayout(field_, row, 1)
        self.kdf_note = NoteLabel(
            box,
            text=self.tr(
                "Every unlock attempt costs this much time and memory - for someone guessing passphrases "
                "too. It is measured on this computer, like cryptsetup's --iter-time."
            ),
        )
        form.addWidget(self.kdf_note, form.rowCount(), 0, 1, 2)
        form.setRowStretch(form.rowCount(), 1)  # a taller box (beside the keys) leaves the room at the bottom
        return box

    def _recovery_box(self) -> QGroupBox:
        box = QGroupBox(self.tr("Recovery key"), self)
        self.recovery_check = QCheckBox(self.tr("Add a recovery &key"), box)
        self.recovery_check.setToolTip(
            self.tr("A second keyslot with a random key (systemd's format) for when everything else fails")
        )
        self.recovery_check.setChecked(self.choice.recovery_key)
        self.recovery_check.toggled.connect(self._on_recovery_toggled)
        self.recovery_button = QPushButton(self.tr("Sho&w recovery key…"), box)
        self.recovery_button.clicked.connect(self.show_recovery_key)
        self.recovery_status = NoteLabel(box, name="recoveryStatus")
        row = QHBoxLayout()
        row.addWidget(self.recovery_check)
        row.addWidget(self.recovery_button)
        row.addStretch(1)
        layout = QVBoxLayout(box)
        layout.setSpacing(6)
        layout.addLayout(row)
        layout.addWidget(self.recovery_status)
        return box

    # -- QWizardPage --------------------------------------------------------------------------------

    def initializePage(self) -> None:
        """Every time the page is entered: follow the Base image page; the first time, make the keys."""
        self.state.encryption = self.choice
        key = (id(self.state.layout), frozenset(self.state.protected))
        if key != self._synced_for:
            # The first time, a subset already chosen (by a recipe being opened) stays; afterwards a
            # change of image or of protected partitions re-applies the defaults.
            first = self._synced_for is None
            self._synced_for = key
            self._fill_partitions(reset=not (first and self.options.partitions is not None))
        self.passphrase_box.ensure_generated()
        if not self.choice.kdf_ready and not self.is_calibrating() and not self._auto_calibrated:
            self._auto_calibrated = True
            self.calibrate()
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return (
            bool(self.options.partitions)
            and not self.is_busy()
            and self.choice.kdf_ready
            and self.choice.keys_ready
            and self.recovery_dialog is None
        )

    # -- partitions ---------------------------------------------------------------------------------

    def item(self, number: int) -> QTreeWidgetItem | None:
        """The list row of partition ``number`` (tests and the screenshot tool use this)."""
        return self.tree.item(number)

    def option(self, number: int) -> PartitionOption | None:
        return self.tree.option(number)

    def _fill_partitions(self, reset: bool) -> None:
        """Rebuild the list for the current layout and sector size; ``reset`` re-applies the defaults
        (the protected partitions), else a partition that can no longer be encrypted drops out."""
        self.error_panel.clear()
        wanted = self.state.protected if reset else set(self.options.partitions or ())
        selected, disk_error = self.tree.fill(
            self.state.layout, self.options.sector_size, wanted, self.state.protected
        )
        if disk_error is not None:
            self.show_error(disk_error)
        self.options.partitions = selected
        self._update_summary()

    def _on_checked_changed(self, numbers: list[int]) -> None:
        self.options.partitions = numbers
        self._update_summary()
        self.completeChanged.emit()

    def _update_summary(self) -> None:
        layout, numbers = self.state.layout, self.options.partitions
        if layout is None:
            self.summary_label.set_note(self.tr("Open a base image first."), problem=True)
            return
        if not numbers:
            self.summary_label.set_note(self.tr("Select at least one partition to encrypt."), problem=True)
            return
        try:
            relayout = plan(layout, numbers, self.options.sector_size)
        except RelayoutError as exc:  # each alone was fine; together they should be too
            self.summary_label.set_note(exc.message, problem=True)
            return
        encrypted = [str(p.number) for p in relayout.encrypted]
        if len(encrypted) == 1:
            text = self.tr("Partition %1 will be encrypted").replace("%1", encrypted[0])
        else:
            joined = (
                self.tr("%1 and %2").replace("%1", ", ".join(encrypted[:-1])).replace("%2", encrypted[-1])
            )
            text = self.tr("Partitions %1 will be encrypted").replace("%1", joined)
        text += (
            self.tr(": the disk grows from %1 to %2 to make room for the LUKS2 headers")
            .replace("%1", human_size(relayout.src_size))
            .replace("%2", human_size(relayout.disk_size))
        )
        moved = any(p.first_lba != p.src_first_lba for p in relayout.partitions)
        text += self.tr(", and the partitions after them move.") if moved else "."
        if self.options.sparse_ciphertext:  # set by a loaded recipe; the page has no control for it
            text += self.tr(" Space their ext4 filesystems do not use stays unencrypted holes (sparse "
                            "ciphertext): anyone holding the image sees which blocks are used.")  # fmt: skip
        self.summary_label.set_note(text)

    def _on_sector_changed(self) -> None:
        self.options.sector_size = int(self.sector_combo.currentData())
        self._fill_partitions(reset=False)
        self.completeChanged.emit()

    # -- KDF calibration ----------------------------------------------------------------------------

    def is_calibrating(self) -> bool:
        return self.task(CALIBRATE) is not None

    def calibrate(self) -> None:
        """Measure the KDF cost for the chosen KDF and unlock time in the background."""
        kind, iter_time = self.options.kdf, self.iter_spin.value()
        self.options.iter_time_ms = iter_time
        self.options.kdf_params = None
        self._message = None
        log.info("calibrating %s for %d ms", kind, iter_time)
        self._calibration = self.run_task(
            CALIBRATE, _calibrate, kind, iter_time, with_progress=True, on_success=self._on_calibrated,
            on_failure=self._on_calibration_failed, on_finished=self._on_calibration_finished,
        )  # fmt: skip
        self._show_kdf_state()

    def cancel_calibration(self) -> None:
        """Stop: the page is idle at once; the worker stops at its next cancel check."""
        if not self.is_calibrating():
            return
        self.cancel_task(CALIBRATE)
        self._show_kdf_state(self.tr("Calibration stopped. Press Calibrate to measure again."), problem=True)
        self.calibrationFinished.emit()

    def _on_calibrated(self, params: KdfParams) -> None:
        self.options.kdf_params = kdf_params_dict(params)
        log.info("calibrated: %r", params)

    def _on_calibration_failed(self, error: ShieldwrightError) -> None:
        if isinstance(error, CancelledError):
            self._message = self.tr("Calibration stopped. Press Calibrate to measure again.")
        else:
            self._message = self.tr("Calibration failed: %1").replace("%1", error.one_line())

    def _on_calibration_finished(self) -> None:
        message, self._message = self._message, None
        task = self._calibration
        if task is not None and task.error is not None and not isinstance(task.error, ShieldwrightError):
            message = self.tr(
                "Calibration failed because of an unexpected error; the details are in the log."
            )
        self._show_kdf_state(message, problem=message is not None)
        self.calibrationFinished.emit()

    def _show_kdf_state(self, message: str | None = None, problem: bool = False) -> None:
        busy = self.is_calibrating()
        self.busy_bar.setVisible(busy)
        self.stop_button.setVisible(busy)
        self.calibrate_button.setEnabled(not busy)
        params = self.choice.kdf_params
        if busy:
            self.params_value.set_note(
                self.tr("Measuring %1 on this computer…").replace("%1", self.options.kdf)
            )
        elif message:
            self.params_value.set_note(message, problem=problem)
        elif params is not None:
            self.params_value.set_note(describe_kdf(params, self.options.iter_time_ms), plain=True)
        else:
            self.params_value.set_note(self.tr("Not calibrated: press Calibrate."), problem=True)

    def _on_kdf_changed(self) -> None:
        self.options.kdf = str(self.kdf_combo.currentData())
        self.options.kdf_params = None  # the old cost is another KDF's
        self.calibrate()  # a discrete choice: measure the new KDF right away

    def _on_iter_time_changed(self, value: int) -> None:
        self.cancel_task(CALIBRATE)  # a running measurement is for the old time
        self.options.iter_time_ms = value
        self.options.kdf_params = None
        self._show_kdf_state()
        self.completeChanged.emit()

    # -- passphrase -----------------------------------------------------------------------------------

    def _on_passphrase_changed(self, text: str | None, generated: bool) -> None:
        self.choice.set_passphrase(text, generated=generated)
        self.completeChanged.emit()

    # -- recovery key ---------------------------------------------------------------------------------

    def _on_recovery_toggled(self, on: bool) -> None:
        self.choice.recovery_key = on
        if not on:
            self.choice.set_recovery_key(None)
        self._update_recovery()
        self.completeChanged.emit()

    def show_recovery_key(self) -> RecoveryKeyDialog:
        """Open the (non-blocking) recovery key dialog; an acknowledged key is replaced by a new one."""
        if self.recovery_dialog is not None:
            self.recovery_dialog.raise_()
            return self.recovery_dialog
        if self.choice.recovery_key_value is None or self.choice.recovery_key_acknowledged:
            self.choice.set_recovery_key(generate_recovery_key())
        assert self.choice.recovery_key_value is not None
        dialog = RecoveryKeyDialog(self.choice.recovery_key_value.decode("ascii"), self)
        dialog.finished.connect(self._on_recovery_dialog_finished)
        self.recovery_dialog = dialog
        dialog.open()
        self._update_recovery()
        self.completeChanged.emit()
        return dialog

    def _on_recovery_dialog_finished(self, result: int) -> None:
        dialog, self.recovery_dialog = self.recovery_dialog, None
        if dialog is not None:
            if result and dialog.acknowledged and self.choice.recovery_key_value is not None:
                self.choice.recovery_key_acknowledged = True
            dialog.deleteLater()
        self._update_recovery()
        self.completeChanged.emit()

    def _update_recovery(self) -> None:
        choice = self.choice
        self.recovery_button.setEnabled(choice.recovery_key)
        acknowledged = choice.recovery_key_value is not None and choice.recovery_key_acknowledged
        self.recovery_button.setText(
            self.tr("Ne&w recovery key…") if acknowledged else self.tr("Sho&w recovery key…")
        )
        self.recovery_button.setToolTip(
            self.tr("Replace the stored key with a new one; the old one will not be enrolled")
            if acknowledged
            else self.tr("Show the recovery key once, to copy or save it")
        )
        status = self.recovery_status
        if not choice.recovery_key:
            status.set_note(
                self.tr("No recovery key: only the provisioning passphrase opens the encrypted partitions.")
            )
        elif acknowledged:
            status.set_note(self.tr("✓ Recovery key stored. It will not be shown again."), plain=True)
        elif choice.recovery_key_value is not None:
            status.set_note(
                self.tr("Shown, but not confirmed as stored: show it again and confirm."), problem=True
            )
        else:
            status.set_note(self.tr("Show the recovery key and store it to continue."))

    # -- secrets ----------------------------------------------------------------------------------------

    def clear_secrets(self) -> None:
        """Forget the passphrase and recovery key (the wizard closes). Best effort: Qt and Python copy."""
        if self.recovery_dialog is not None:
            self.recovery_dialog.finished.disconnect(self._on_recovery_dialog_finished)
            self.recovery_dialog.reject()
            self.recovery_dialog.deleteLater()
            self.recovery_dialog = None
        self.passphrase_box.clear_secrets()
        self.choice.clear_secrets()
        secret_clipboard().clear()  # a copied passphrase or recovery key goes with them
