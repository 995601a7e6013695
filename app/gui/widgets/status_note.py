"""A wrapped one-line status under a control: a quiet hint, plain text, or a problem in red.

The Encryption page says several such things (the KDF cost, the passphrase rating, the recovery key, the
re-layout summary); one label class keeps them looking alike. Colour is never the only cue: the text says
what is wrong.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel, QWidget

#: The red of a problem (GNOME's "destructive" red, readable on light and dark palettes).
PROBLEM_COLOR = "#c01c28"


class NoteLabel(QLabel):
    """Plain, word-wrapped text shown as a hint (greyed) until :meth:`set_note` says otherwise."""

    def __init__(
        self, parent: QWidget | None = None, *, name: str = "", text: str = "", selectable: bool = False
    ) -> None:
        super().__init__(parent)
        if name:
            self.setObjectName(name)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.PlainText)
        if selectable:
            self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.set_note(text)

    def set_note(self, text: str, *, problem: bool = False, plain: bool = False) -> None:
        """Show ``text``: greyed as a hint, in the text colour with ``plain``, red with ``problem``."""
        self.setText(text)
        self.setStyleSheet(f"color: {PROBLEM_COLOR};" if problem else "")
        if not problem:
            role = QPalette.ColorRole.WindowText if plain else QPalette.ColorRole.PlaceholderText
            self.setForegroundRole(role)
