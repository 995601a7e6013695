"""The "New variable store" dialog: an OVMF variable store with the template's certificate enrolled in db.

A test boot, and a PCR 4/7 prediction on OVMF, need firmware whose db admits the template's UKI. The
dialog gathers what ``shieldwright firmware vars --microsoft|--snakeoil --add-db CERT -o FILE.fd`` takes:
the keys to start from, the certificate (the Signing certificates page's UEFI certificate, as loaded) and
the file,
asked with a save dialog that asks before replacing a file. The caller writes the store in the background
on :attr:`NewTestStoreDialog.submitted` (:func:`~app.measure.teststore.write_test_store`), then calls
:meth:`~NewTestStoreDialog.succeed` (it closes) or :meth:`~NewTestStoreDialog.show_error` (inline, the
choices kept). Non-blocking: ``open()`` it, never ``exec()``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.file_dialogs import VARS_FILTERS, open_file_dialog
from app.gui.widgets.error_panel import ErrorPanel
from app.gui.widgets.status_note import NoteLabel
from app.measure.teststore import SECURE_BOOT_BASES
from app.untrusted import printable

SAVE_DIALOG = "new-store"
#: The dialog's width, and the indent of the texts under a radio button or checkbox.
WIDTH, INDENT = 560, 24

#: What each base store holds, for people (Debian's OVMF_VARS_4M.ms.fd and OVMF_VARS_4M.snakeoil.fd).
BASE_TEXTS = {
    "microsoft": (
        "&Microsoft's keys",
        "Microsoft's KEK and db (Windows Production PCA 2011, UEFI CA 2011), as on a cloud VM: boots a "
        "Microsoft-signed shim, and with the certificate below in db, the template's UKI.",
    ),
    "snakeoil": (
        "Debian's &snakeoil test key",
        "The snakeoil key as PK, KEK and db: boots only what that key or the certificate below signed. "
        "For test boots.",
    ),
}


@dataclass(frozen=True)
class NewStoreRequest:
    """What :func:`~app.measure.teststore.write_test_store` needs. ``overwrite``: the file existed when it
    was chosen, and the save dialog asked before replacing it."""

    base: str
    add_db: x509.Certificate | None
    output: Path
    overwrite: bool


class NewTestStoreDialog(QDialog):
    """Keys to start from, whether to add the template's certificate to db, then *Save as…*."""

    #: A file was chosen: a :class:`NewStoreRequest`. The dialog stays open (busy) until told how it went.
    submitted = Signal(object)

    def __init__(
        self,
        certificate: x509.Certificate | None,  # the template's UEFI certificate
        directory: Path,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("newTestStoreDialog")
        self.setWindowTitle(self.tr("New OVMF variable store"))
        self.certificate = certificate
        self.directory = directory
        self._busy = False
        self._dialogs: dict[str, Any] = {}
        self._build_ui()
        self._update()
        self.fit_height(grow_only=False)

    def _build_ui(self) -> None:
        intro = QLabel(
            self.tr(
                "A copy of one of Debian's OVMF variable stores with the template's UEFI certificate added "
                "to db: the firmware of a VM that trusts the template's key. Use it to predict PCR 4 and 7 "
                "and to test-boot the template. The installed OVMF files are not changed."
            ),
            self,
        )
        intro.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)

        self.base_group = QButtonGroup(self)
        self.base_buttons: dict[str, QRadioButton] = {}
        for base in SECURE_BOOT_BASES:
            caption, description = BASE_TEXTS[base]
            button = QRadioButton(self.tr(caption), self)
            button.setObjectName(f"{base}Base")
            note = NoteLabel(self, name=f"{base}BaseNote", text=self.tr(description))
            note.setContentsMargins(INDENT, 0, 0, 4)
            self.base_group.addButton(button)
            self.base_buttons[base] = button
            layout.addWidget(button)
            layout.addWidget(note)
        self.base_buttons[SECURE_BOOT_BASES[0]].setChecked(True)

        self.add_db_check = QCheckBox(self.tr("&Add the template's UEFI certificate to db"), self)
        self.add_db_check.setObjectName("addTemplateCertificate")
        self.add_db_check.setChecked(self.certificate is not None)
        self.add_db_check.setEnabled(self.certificate is not None)
        self.add_db_check.toggled.connect(self._update)
        layout.addWidget(self.add_db_check)
        subject = printable(self.certificate.subject.rfc4514_string()) if self.certificate is not None else ""
        # The subject wraps under the checkbox (a checkbox's own text cannot).
        self.subject_label = NoteLabel(self, name="certificateSubject", text=subject, selectable=True)
        self.subject_label.setContentsMargins(INDENT, 0, 0, 0)
        self.subject_label.setVisible(bool(subject))
        self.add_db_check.setAccessibleDescription(subject)
        layout.addWidget(self.subject_label)
        self.cert_note = NoteLabel(self, name="certificateNote")
        self.cert_note.setContentsMargins(INDENT, 0, 0, 0)
        layout.addWidget(self.cert_note)

        self.error_panel = ErrorPanel(self)
        layout.addWidget(self.error_panel)
        layout.addStretch(1)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setText(self.tr("Sa&ve as…"))
        self.buttons.accepted.connect(self.choose_file)  # not accept(): the caller says when it is done
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.main_layout = layout
        self.setMinimumWidth(WIDTH)

    # -- input ------------------------------------------------------------------------------------

    def base(self) -> str:
        return next(name for name, button in self.base_buttons.items() if button.isChecked())

    def choose_file(self) -> None:
        """Ask for the new store's file (the dialog asks before replacing one), then submit."""
        if self._busy:
            return
        open_file_dialog(
            self, self._dialogs, SAVE_DIALOG, self.tr("Save the OVMF variable store"), self.directory,
            self._submit, filters=VARS_FILTERS, save=True, suffix="fd",
            select=str(self.directory / f"ovmf-vars-{self.base()}.fd"),
        )  # fmt: skip

    def open_dialog(self, key: str = SAVE_DIALOG) -> Any:
        """The save dialog while it is open (tests drive it)."""
        return self._dialogs.get(key)

    def _submit(self, path: str) -> None:
        if self._busy:
            return
        output = Path(path)
        add_db = self.certificate if self.add_db_check.isChecked() else None
        self.error_panel.clear()
        self.set_busy(True)
        self.submitted.emit(NewStoreRequest(self.base(), add_db, output, os.path.lexists(output)))

    def _update(self) -> None:
        if self.certificate is None:
            note = self.tr(
                "No UEFI signing certificate is chosen yet (Signing certificates page): the store will not "
                "admit the template's UKI."
            )
        elif not self.add_db_check.isChecked():
            note = self.tr("Without it, the store admits only what its own keys signed.")
        else:
            note = ""
        self.cert_note.set_note(note, problem=self.certificate is None)
        self.cert_note.setVisible(bool(note))
        if self.isVisible():
            self.fit_height()
        self.save_button.setEnabled(not self._busy)
        self.save_button.setText(self.tr("Saving…") if self._busy else self.tr("Sa&ve as…"))

    # -- caller API -------------------------------------------------------------------------------

    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        for button in self.base_buttons.values():
            button.setEnabled(not busy)
        self.add_db_check.setEnabled(not busy and self.certificate is not None)
        self._update()

    def is_busy(self) -> bool:
        return self._busy

    def fit_height(self, *, grow_only: bool = True) -> None:
        """Tall enough for every wrapped text at the current width (a top-level dialog's layout does not
        size itself by height-for-width)."""
        self.main_layout.activate()
        width = max(self.width(), self.minimumWidth())
        needed = max(self.minimumSizeHint().height(), self.heightForWidth(width))
        self.resize(width, max(needed, self.height()) if grow_only else needed)

    def show_error(self, message: str, hint: str = "") -> None:
        """Writing failed: say why inline and keep the choices."""
        self.set_busy(False)
        self.error_panel.show_error(message, hint)
        self.fit_height()

    def succeed(self) -> None:
        """The store was written: close."""
        self.set_busy(False)
        self.accept()

    def done(self, result: int) -> None:
        for dialog in list(self._dialogs.values()):
            dialog.close()
        super().done(result)
