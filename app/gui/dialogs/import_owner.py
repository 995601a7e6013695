"""The "Import owner" dialog: an owner guardian made elsewhere, from its certificate and key files.

The dialog only gathers the files: the caller runs the engine's
:func:`~app.shielding.guardians.import_owner` in the background on :attr:`ImportOwnerDialog.submitted`,
then calls :meth:`~ImportOwnerDialog.succeed` (it closes) or :meth:`~ImportOwnerDialog.show_error` (it says
so inline and keeps every field, so a wrong file is fixed without typing the others again). Non-blocking:
``open()`` it, never ``exec()``. The passphrase is handed over as a ``bytearray`` the caller wipes, cleared
from the field when the dialog closes, and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.file_dialogs import KEY_FILTERS, open_file_dialog
from app.gui.widgets.error_panel import ErrorPanel

CERT_FILTERS = ("Certificates and PKCS#12 (*.crt *.pem *.cer *.der *.p12 *.pfx)", "All files (*)")

#: The four files, in the order asked: (field, caption, accessible name, file dialog title).
FILES = (
    ("signing_cert", "&Signing certificate:", "Signing certificate file", "The owner's signing certificate"),
    ("signing_key", "Signing &key:", "Signing key file", "The owner's signing private key"),
    ("encryption_cert", "&Encryption certificate:", "Encryption certificate file",
     "The owner's encryption certificate (RSA)"),
    ("encryption_key", "Encryption ke&y:", "Encryption key file", "The owner's encryption private key"),
)  # fmt: skip


@dataclass
class OwnerFiles:
    """What :func:`~app.shielding.guardians.import_owner` needs. The caller wipes ``passphrase``."""

    name: str
    signing_cert: Path
    signing_key: Path | None
    encryption_cert: Path
    encryption_key: Path | None
    passphrase: bytearray | None = field(default=None, repr=False)

    def wipe(self) -> None:
        """Overwrite the passphrase copy (best effort: the field's text was a Python string too)."""
        if self.passphrase is not None:
            self.passphrase[:] = bytes(len(self.passphrase))
            self.passphrase = None


class ImportOwnerDialog(QDialog):
    """Name the owner, give its signing and encryption certificates and keys, and an optional passphrase."""

    #: Import pressed: an :class:`OwnerFiles`. The dialog stays open (busy) until told how it went.
    submitted = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("importOwnerDialog")
        self.setWindowTitle(self.tr("Import owner"))
        self._busy = False
        self._dialogs: dict[str, Any] = {}
        #: The path fields, by :class:`OwnerFiles` field name.
        self.paths: dict[str, QLineEdit] = {}
        self.browse_buttons: dict[str, QPushButton] = {}
        self._build_ui()
        self._update()

    def _build_ui(self) -> None:
        intro = QLabel(
            self.tr(
                "An owner you already have: its signing certificate and key, and its RSA encryption "
                "certificate and key (PEM or DER; a PKCS#12 file holds both: leave its key field empty). The "
                "keys are kept here unencrypted, readable only by you."
            ),
            self,
        )
        intro.setWordWrap(True)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.name_edit = QLineEdit(self)
        self.name_edit.setObjectName("ownerName")
        self.name_edit.setPlaceholderText(self.tr("name, e.g. contoso-owner"))
        self.name_edit.setAccessibleName(self.tr("Owner's name"))
        self._add_row(form, self.tr("&Name:"), self.name_edit, self.name_edit)
        for key, caption, accessible, title in FILES:
            edit = QLineEdit(self)
            edit.setObjectName(f"{key}Path")
            edit.setAccessibleName(self.tr(accessible))
            browse = QPushButton(self.tr("Browse…"), self)  # four of them: the captions carry the mnemonics
            browse.setObjectName(f"{key}Browse")
            browse.setAccessibleName(self.tr("Browse for the %1").replace("%1", self.tr(accessible).lower()))
            filters = KEY_FILTERS if key.endswith("_key") else CERT_FILTERS
            browse.clicked.connect(
                lambda _=False, k=key, t=title, f=filters: self.choose_file(k, self.tr(t), f)
            )
            row = QHBoxLayout()
            row.addWidget(edit, 1)
            row.addWidget(browse)
            self._add_row(form, self.tr(caption), row, edit)
            self.paths[key] = edit
            self.browse_buttons[key] = browse
        self.passphrase_edit = QLineEdit(self)
        self.passphrase_edit.setObjectName("ownerKeyPassphrase")
        self.passphrase_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase_edit.setPlaceholderText(self.tr("only if the keys are encrypted"))
        self.passphrase_edit.setAccessibleName(self.tr("Key passphrase"))
        self._add_row(form, self.tr("Key &passphrase:"), self.passphrase_edit, self.passphrase_edit)

        self.error_panel = ErrorPanel(self)

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText(self.tr("&Import"))
        self.buttons.accepted.connect(self._submit)  # not accept(): the caller says when it is done
        self.buttons.rejected.connect(self.reject)

        self.main_layout = layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.error_panel)
        layout.addStretch(1)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(540)
        for edit in (self.name_edit, *self.paths.values()):
            edit.textChanged.connect(self._update)

    def _add_row(
        self, form: QFormLayout, caption: str, field_: QWidget | QHBoxLayout, buddy: QWidget
    ) -> None:
        label = QLabel(caption, self)
        label.setBuddy(buddy)
        form.addRow(label, field_)

    # -- input ------------------------------------------------------------------------------------

    def choose_file(self, key: str, title: str, filters: tuple[str, ...]) -> None:
        """A non-blocking file dialog for the ``key`` field, starting where the files given so far are."""
        given = [e.text().strip() for e in (self.paths[key], *self.paths.values()) if e.text().strip()]
        directory = Path(given[0]).expanduser().parent if given else Path.home()
        open_file_dialog(self, self._dialogs, key, title, directory, self.paths[key].setText, filters=filters)

    def open_dialog(self, key: str) -> Any:
        """The ``key`` field's file dialog while it is open (tests drive it)."""
        return self._dialogs.get(key)

    def request(self) -> OwnerFiles:
        """The files the fields name, and a wipeable copy of the passphrase (None when empty)."""
        text = self.passphrase_edit.text()

        def path(key: str) -> Path | None:
            given = self.paths[key].text().strip()
            return Path(given).expanduser() if given else None

        signing_cert, encryption_cert = path("signing_cert"), path("encryption_cert")
        assert signing_cert is not None and encryption_cert is not None  # Import needs both (_complete)
        return OwnerFiles(
            self.name_edit.text().strip(), signing_cert, path("signing_key"), encryption_cert,
            path("encryption_key"), passphrase=bytearray(text.encode()) if text else None,
        )  # fmt: skip

    def _complete(self) -> bool:
        """A name and both certificates (a key field may stay empty for a PKCS#12 file: the engine says
        which it needs)."""
        needed = (self.name_edit, self.paths["signing_cert"], self.paths["encryption_cert"])
        return all(e.text().strip() for e in needed)

    def _update(self) -> None:
        self.ok_button.setEnabled(not self._busy and self._complete())
        self.ok_button.setText(self.tr("Importing…") if self._busy else self.tr("&Import"))

    def _submit(self) -> None:
        if self._busy or not self._complete():
            return
        self.error_panel.clear()
        self.set_busy(True)
        self.submitted.emit(self.request())

    # -- caller API -------------------------------------------------------------------------------

    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        for w in (self.name_edit, *self.paths.values(), *self.browse_buttons.values(), self.passphrase_edit):
            w.setEnabled(not busy)
        self._update()

    def show_error(self, message: str, hint: str = "", *, wrong_passphrase: bool = False) -> None:
        """The import failed: say why and keep the fields, so the user fixes one and presses Import again
        (a wrong passphrase is cleared, to be typed again)."""
        self.set_busy(False)
        self.error_panel.show_error(message, hint)
        self.main_layout.activate()  # grow to show the panel instead of squeezing the rows
        self.resize(self.width(), max(self.height(), self.heightForWidth(self.width())))
        if wrong_passphrase:
            self.passphrase_edit.clear()
            self.passphrase_edit.setFocus()
        else:
            self.name_edit.setFocus()

    def succeed(self) -> None:
        """The owner was imported: close."""
        self.set_busy(False)
        self.accept()

    def is_busy(self) -> bool:
        return self._busy

    def done(self, result: int) -> None:
        self.passphrase_edit.clear()
        for dialog in list(self._dialogs.values()):
            dialog.close()
        super().done(result)
