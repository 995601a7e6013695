"""Show a LUKS recovery key once: large, selectable, copyable, savable; Close only after "I have stored it".

Non-blocking (callers ``open()`` it, and its Save dialog too). Saving refuses to overwrite and writes mode
0600; Copy goes through :mod:`app.gui.secret_clipboard`, which takes the key back. The key is never
logged. Closing without the checkbox ticked rejects: the caller treats the key as *not* stored.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.errors import ShieldwrightError
from app.gui.secret_clipboard import seconds, secret_clipboard
from app.gui.widgets.error_panel import ErrorPanel
from app.signing.output import write_output

log = logging.getLogger(__name__)

DEFAULT_FILE_NAME = "recovery-key.txt"


def save_secret(path: str | Path, text: str) -> Path:
    """Write ``text`` and a newline to a new 0600 file at ``path`` (refusing to overwrite anything).

    The trailing newline is what ``--passphrase-file`` readers drop, so the file works as a key file.
    """
    return write_output(path, (text + "\n").encode("utf-8"), private=True)


class RecoveryKeyDialog(QDialog):
    """Shows ``key`` with Copy and Save…; Close is enabled only once "I have stored this key" is ticked."""

    #: A copy of the key was written to this file.
    saved = Signal(Path)

    def __init__(self, key: str, parent: QWidget | None = None, *, directory: Path | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("recoveryKeyDialog")
        self.setWindowTitle(self.tr("Recovery key"))
        self.setModal(True)
        self._key = key
        self._directory = directory or Path.home()
        self._file_dialog: QFileDialog | None = None
        self.saved_path: Path | None = None

        icon = QLabel(self)
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(32, 32))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        intro = QLabel(
            self.tr(
                "This recovery key opens the encrypted partitions of the template, and of every VM made from "
                "it, when nothing else can. It is shown only this once: store it somewhere safe (a password "
                "manager, or printed and locked away) before you continue. Anyone who has it can read the "
                "encrypted data."
            ),
            self,
        )
        intro.setWordWrap(True)
        intro.setTextFormat(Qt.TextFormat.PlainText)

        self.key_label = QLabel(key, self)
        self.key_label.setObjectName("recoveryKey")
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(max(font.pointSizeF(), 9.0) * 1.45)
        font.setBold(True)
        self.key_label.setFont(font)
        self.key_label.setTextFormat(Qt.TextFormat.PlainText)
        self.key_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.key_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.key_label.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.key_label.setAccessibleName(self.tr("Recovery key"))
        self.key_label.setAccessibleDescription(
            self.tr("64 characters in 8 groups of 8, separated by dashes")
        )
        self.key_label.setMinimumWidth(self.key_label.fontMetrics().horizontalAdvance(key) + 32)
        frame = QFrame(self)
        frame.setFrameShape(QFrame.Shape.StyledPanel)
        frame_layout = QVBoxLayout(frame)
        frame_layout.setContentsMargins(12, 14, 12, 14)
        frame_layout.addWidget(self.key_label)

        self.copy_button = QPushButton(self.tr("&Copy"), self)
        self.copy_button.setToolTip(self.tr("Copy the recovery key to the clipboard"))
        self.copy_button.clicked.connect(self.copy_to_clipboard)
        self.save_button = QPushButton(
            self.style().standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton), self.tr("&Save…"), self
        )
        self.save_button.setToolTip(
            self.tr("Save the recovery key to a new file only you can read (mode 0600)")
        )
        self.save_button.clicked.connect(self.choose_file)
        self.status_label = QLabel(self)
        self.status_label.setObjectName("saveStatus")
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        actions = QHBoxLayout()
        actions.addWidget(self.copy_button)
        actions.addWidget(self.save_button)
        actions.addWidget(self.status_label, 1)

        self.error_panel = ErrorPanel(self)

        self.stored_check = QCheckBox(self.tr("I have stored this recovery key in a safe &place"), self)
        self.stored_check.toggled.connect(self._update_close)

        self.buttons = QDialogButtonBox(self)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.close_button.setText(self.tr("C&lose"))
        # Close accepts (the key is stored); Esc and the window's close button reject.
        self.close_button.clicked.connect(self.accept)

        top = QHBoxLayout()
        top.addWidget(icon)
        top.addWidget(intro, 1)
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        layout.addLayout(top)
        layout.addWidget(frame)
        layout.addLayout(actions)
        layout.addWidget(self.error_panel)
        layout.addWidget(self.stored_check)
        layout.addWidget(self.buttons)

        for first, second in (
            (self.key_label, self.copy_button),
            (self.copy_button, self.save_button),
            (self.save_button, self.stored_check),
            (self.stored_check, self.close_button),
        ):
            QWidget.setTabOrder(first, second)
        self._update_close()

    # -- API ----------------------------------------------------------------------------------------

    @property
    def acknowledged(self) -> bool:
        return self.stored_check.isChecked()

    def copy_to_clipboard(self) -> None:
        """Copy the key; the clipboard is cleared again after a short while, and when the app quits."""
        holder = secret_clipboard()
        holder.copy(self._key)
        self.status_label.setText(
            self.tr("Copied to the clipboard; it is cleared in %1 s.").replace(
                "%1", seconds(holder.clear_after_ms)
            )
        )

    def choose_file(self) -> QFileDialog:
        """A non-blocking Save dialog; the key is written when a file is chosen."""
        if self._file_dialog is not None:
            self._file_dialog.raise_()
            return self._file_dialog
        dialog = QFileDialog(self, self.tr("Save recovery key"), str(self._directory / DEFAULT_FILE_NAME))
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setFileMode(QFileDialog.FileMode.AnyFile)
        dialog.setNameFilters([self.tr("Text files (*.txt)"), self.tr("All files (*)")])
        dialog.setDefaultSuffix("txt")
        # We refuse to overwrite ourselves (inline error, nothing replaced); no second question needed.
        dialog.setOption(QFileDialog.Option.DontConfirmOverwrite, True)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(self.save_to)
        dialog.finished.connect(self._on_file_dialog_closed)
        self._file_dialog = dialog
        dialog.open()
        return dialog

    def save_to(self, path: str | Path) -> bool:
        """Write the key to ``path`` (0600, never overwriting); show the outcome inline."""
        self.error_panel.clear()
        try:
            written = save_secret(path, self._key)
        except ShieldwrightError as exc:
            self.error_panel.show_error(exc.message, exc.hint)
            return False
        log.info("recovery key saved to %s", written)  # the path only, never the key
        self.saved_path = written
        self.status_label.setText(self.tr("Saved to %1").replace("%1", str(written)))
        self.saved.emit(written)
        return True

    # -- internals ----------------------------------------------------------------------------------

    def _on_file_dialog_closed(self) -> None:
        self._file_dialog = None

    def _update_close(self) -> None:
        self.close_button.setEnabled(self.stored_check.isChecked())
        self.close_button.setDefault(self.stored_check.isChecked())

    def accept(self) -> None:
        if not self.stored_check.isChecked():
            return
        super().accept()

    def done(self, result: int) -> None:
        if self._file_dialog is not None:
            self._file_dialog.reject()
        super().done(result)
