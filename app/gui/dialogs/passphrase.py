"""A non-blocking passphrase prompt that stays open while the passphrase is tried.

The caller listens to :attr:`PassphraseDialog.submitted`, tries the passphrase in the background, then
calls :meth:`~PassphraseDialog.succeed` (it closes) or :meth:`~PassphraseDialog.show_wrong_passphrase` (it
says so inline and waits for another try). The typed text is cleared once handed over and never logged.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.gui.widgets.busy import busy_bar


class PassphraseDialog(QDialog):
    """Ask for the passphrase of an encrypted key or PKCS#12 file; retry on a wrong one."""

    #: The user pressed OK with this passphrase (UTF-8 bytes). The dialog stays open until told.
    submitted = Signal(bytes)

    def __init__(self, what: str, parent: QWidget | None = None) -> None:
        """``what`` names the file in the prompt, e.g. ``"the private key uefi.key"``."""
        super().__init__(parent)
        self.setObjectName("passphraseDialog")
        self.setWindowTitle(self.tr("Passphrase needed"))
        self.setModal(True)
        self.attempts = 0

        icon = QLabel(self)
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxQuestion).pixmap(32, 32))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.prompt = QLabel(
            self.tr("%1 is encrypted. Enter its passphrase to unlock it.").replace("%1", what), self
        )
        self.prompt.setWordWrap(True)
        self.prompt.setTextFormat(Qt.TextFormat.PlainText)

        caption = QLabel(self.tr("&Passphrase:"), self)
        self.passphrase_edit = QLineEdit(self)
        self.passphrase_edit.setObjectName("passphraseEdit")
        self.passphrase_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase_edit.setAccessibleName(self.tr("Passphrase"))
        self.passphrase_edit.textChanged.connect(self._update_ok)
        caption.setBuddy(self.passphrase_edit)

        self.error_label = QLabel(self)
        self.error_label.setObjectName("passphraseError")
        self.error_label.setWordWrap(True)
        self.error_label.setTextFormat(Qt.TextFormat.PlainText)
        self.error_label.setStyleSheet("#passphraseError { color: #c01c28; font-weight: bold; }")
        self.error_label.hide()

        self.busy_bar = busy_bar(self, self.tr("Unlocking"), max_height=8, compact=False)
        self.busy_bar.hide()

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText(self.tr("&Unlock"))
        self.buttons.accepted.connect(self._submit)  # not accept(): the caller decides when we are done
        self.buttons.rejected.connect(self.reject)

        top = QHBoxLayout()
        top.addWidget(icon)
        top.addWidget(self.prompt, 1)
        field = QHBoxLayout()
        field.addWidget(caption)
        field.addWidget(self.passphrase_edit, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(field)
        layout.addWidget(self.error_label)
        layout.addWidget(self.busy_bar)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(420)
        self._busy = False
        self._update_ok()

    # -- caller API -----------------------------------------------------------------------------

    def show_wrong_passphrase(self, message: str | None = None) -> None:
        """The passphrase did not work: say so inline and let the user try again."""
        self.set_busy(False)
        self.error_label.setText(message or self.tr("Wrong passphrase. Please try again."))
        self.error_label.show()
        self.passphrase_edit.setAccessibleDescription(self.error_label.text())
        self.passphrase_edit.setFocus()

    def succeed(self) -> None:
        """The passphrase worked: close the dialog."""
        self.set_busy(False)
        self.accept()

    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.busy_bar.setVisible(busy)
        self.passphrase_edit.setEnabled(not busy)
        self._update_ok()

    def submit(self, passphrase: str) -> None:
        """Type ``passphrase`` and press Unlock (keyboard users do the same; tests use this)."""
        self.passphrase_edit.setText(passphrase)
        self._submit()

    # -- internals ------------------------------------------------------------------------------

    def _update_ok(self) -> None:
        self.ok_button.setEnabled(not self._busy and bool(self.passphrase_edit.text()))

    def _submit(self) -> None:
        text = self.passphrase_edit.text()
        if self._busy or not text:
            return
        self.attempts += 1
        self.passphrase_edit.clear()  # the widget does not keep it; the caller drops it after one try
        self.set_busy(True)
        self.submitted.emit(text.encode("utf-8"))
