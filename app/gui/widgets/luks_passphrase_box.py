"""The provisioning passphrase: generated (128 random bits, Copy, Regenerate) or typed twice and rated.

Generating and rating are :mod:`app.luks.passphrase`'s; the box only shows them and says which passphrase
is usable through :attr:`LuksPassphraseBox.passphraseChanged`. A copy goes through
:mod:`app.gui.secret_clipboard`, which takes it off the clipboard again. The text lives in the line edits
only until :meth:`LuksPassphraseBox.clear_secrets`.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QButtonGroup,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.gui.secret_clipboard import secret_clipboard
from app.gui.widgets.status_note import NoteLabel
from app.luks import passphrase as passphrases


class LuksPassphraseBox(QGroupBox):
    """Generate or enter the passphrase that opens the containers once, for the provisioning service."""

    #: The usable passphrase changed: its text (None while there is none) and whether it was generated.
    passphraseChanged = Signal(object, bool)

    def __init__(self, parent: QWidget | None = None, *, generated: bool = True) -> None:
        super().__init__(parent)
        self.setTitle(self.tr("Provisioning passphrase"))
        self.generate_radio = QRadioButton(self.tr("&Generate"), self)
        self.enter_radio = QRadioButton(self.tr("Enter &my own"), self)
        self.mode_group = QButtonGroup(self)
        self.mode_group.addButton(self.generate_radio)
        self.mode_group.addButton(self.enter_radio)
        self.generate_radio.setChecked(generated)
        self.enter_radio.setChecked(not generated)
        self.generate_radio.toggled.connect(self._on_mode_changed)
        modes = QHBoxLayout()
        modes.addWidget(self.generate_radio)
        modes.addWidget(self.enter_radio)
        modes.addStretch(1)

        self.passphrase_stack = QStackedWidget(self)
        self.passphrase_stack.addWidget(self._generate_page())
        self.passphrase_stack.addWidget(self._enter_page())
        self.passphrase_stack.setCurrentIndex(0 if generated else 1)

        layout = QVBoxLayout(self)
        layout.setSpacing(6)
        layout.addLayout(modes)
        layout.addWidget(self.passphrase_stack)
        layout.addStretch(1)
        self._update_hint()

    def _generate_page(self) -> QWidget:
        page = QWidget(self)
        self.generated_edit = QLineEdit(page)
        self.generated_edit.setObjectName("generatedPassphrase")
        self.generated_edit.setReadOnly(True)
        self.generated_edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.generated_edit.setAccessibleName(self.tr("Generated passphrase"))
        self.generated_edit.setMinimumWidth(self.generated_edit.fontMetrics().horizontalAdvance("x" * 42))
        self.copy_button = QPushButton(self.tr("&Copy"), page)
        self.copy_button.setToolTip(self.tr("Copy the passphrase to the clipboard"))
        self.copy_button.clicked.connect(self.copy_passphrase)
        self.regenerate_button = QPushButton(self.tr("&Regenerate"), page)
        self.regenerate_button.setToolTip(
            self.tr("Make a new random passphrase (%1 bits)").replace("%1", str(passphrases.ENTROPY_BITS))
        )
        self.regenerate_button.clicked.connect(self.regenerate)
        self.generated_note = NoteLabel(
            page,
            text=self.tr(
                "%1 random bits, in letters that type the same on every keyboard layout. It is shown only "
                "while this wizard is open: copy it to where the provisioning service reads it."
            ).replace("%1", str(passphrases.ENTROPY_BITS)),
        )
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.regenerate_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.generated_edit)
        layout.addLayout(buttons)
        layout.addWidget(self.generated_note)
        layout.addStretch(1)
        return page

    def _enter_page(self) -> QWidget:
        page = QWidget(self)
        self.passphrase_edit = QLineEdit(page)
        self.passphrase_edit.setObjectName("passphraseEdit")
        self.passphrase_edit.setAccessibleName(self.tr("Passphrase"))
        self.confirm_edit = QLineEdit(page)
        self.confirm_edit.setObjectName("confirmEdit")
        self.confirm_edit.setAccessibleName(self.tr("Repeat passphrase"))
        self.passphrase_hint = NoteLabel(page, name="passphraseHint")
        form = QFormLayout(page)
        form.setContentsMargins(0, 0, 0, 0)
        for caption, edit in ((self.tr("Passp&hrase:"), self.passphrase_edit),
                              (self.tr("Repe&at:"), self.confirm_edit)):  # fmt: skip
            edit.setEchoMode(QLineEdit.EchoMode.Password)
            edit.textChanged.connect(self._on_entered_changed)
            label = QLabel(caption, page)
            label.setBuddy(edit)
            form.addRow(label, edit)
        form.addRow("", self.passphrase_hint)
        return page

    # -- API ----------------------------------------------------------------------------------------

    @property
    def generated(self) -> bool:
        return self.generate_radio.isChecked()

    def ensure_generated(self) -> None:
        """In Generate mode, make a passphrase if there is none yet (the page is shown)."""
        if self.generated and not self.generated_edit.text():
            self.regenerate()

    def regenerate(self) -> None:
        """A new random passphrase replaces the shown one."""
        text = passphrases.generate()
        self.generated_edit.setText(text)
        if self.generated:
            self.passphraseChanged.emit(text, True)

    def copy_passphrase(self) -> None:
        """Copy the generated passphrase; cleared from the clipboard after a short while and at quit."""
        secret_clipboard().copy(self.generated_edit.text())

    def clear_secrets(self) -> None:
        """Empty the line edits (best effort: Qt keeps its own copies)."""
        for edit in (self.generated_edit, self.passphrase_edit, self.confirm_edit):
            edit.clear()

    # -- internals ----------------------------------------------------------------------------------

    def _on_mode_changed(self) -> None:
        self.passphrase_stack.setCurrentIndex(0 if self.generated else 1)
        if self.generated:
            if not self.generated_edit.text():
                self.regenerate()
            self.passphraseChanged.emit(self.generated_edit.text(), True)
        else:
            self._on_entered_changed()
            self.passphrase_edit.setFocus()

    def _on_entered_changed(self) -> None:
        if self.generated:
            return
        ok = self._update_hint()
        self.passphraseChanged.emit(self.passphrase_edit.text() if ok else None, False)

    def _update_hint(self) -> bool:
        """Show how the typed passphrase rates; True when it may be used."""
        text, again = self.passphrase_edit.text(), self.confirm_edit.text()
        rating = passphrases.assess(text)
        S = passphrases.Strength
        minimum = str(passphrases.MIN_LENGTH)
        if rating.strength is S.EMPTY:
            self.passphrase_hint.set_note(
                self.tr("At least %1 characters; a few unrelated words are easy to type.").replace(
                    "%1", minimum
                )
            )
            return False
        if rating.strength is S.TOO_SHORT:
            self.passphrase_hint.set_note(
                self.tr("Too short: use at least %1 characters.").replace("%1", minimum), problem=True
            )
            return False
        if text != again:
            problem = bool(again)  # not yet typed: no need to shout
            self.passphrase_hint.set_note(
                self.tr("The passphrases do not match.") if problem else self.tr("Repeat the passphrase."),
                problem=problem,
            )
            return False
        words = {
            S.WEAK: self.tr("Weak (at most about %1 bits): easy to guess. Consider Generate."),
            S.FAIR: self.tr("Fair (at most about %1 bits)."),
            S.STRONG: self.tr("Strong (about %1 bits at most)."),
        }
        self.passphrase_hint.set_note(words[rating.strength].replace("%1", str(rating.estimated_bits)))
        return True
