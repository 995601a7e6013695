"""A question asked inside the page - a sentence and two buttons - instead of a modal dialog.

A modal ``exec()`` inside an async slot would spin a nested event loop (gui.md §4); this frame is shown
in the page's layout, and its answer arrives as a signal. The Review page asks it before replacing a file.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget


class InlineQuestion(QFrame):
    """A sentence with a yes and a no button; hidden until :meth:`ask`."""

    #: The yes button was clicked.
    accepted = Signal()
    #: The no button was clicked.
    rejected = Signal()

    def __init__(self, yes_text: str, no_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.yes_button = QPushButton(yes_text, self)
        self.yes_button.clicked.connect(self.accepted)
        self.no_button = QPushButton(no_text, self)
        self.no_button.clicked.connect(self.rejected)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label, 1)
        row.addWidget(self.yes_button)
        row.addWidget(self.no_button)
        self.hide()

    def ask(self, text: str) -> None:
        """Show the question, the yes button focused."""
        self.label.setText(text)
        self.show()
        self.yes_button.setFocus()
