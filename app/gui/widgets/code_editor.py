"""A small monospace editor for a kernel command line or an os-release text.

A NUL character can never get in (the stub would cut the text there): a typed or pasted one is removed
at once and :attr:`CodeEditor.nulRemoved` lets the page say so.
"""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, QSize, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QPlainTextEdit, QSizePolicy, QWidget


class CodeEditor(QPlainTextEdit):
    """A monospace editor ``lines`` lines tall; Tab moves the focus; NUL characters never get in."""

    #: A NUL character was typed or pasted and removed.
    nulRemoved = Signal()

    def __init__(self, lines: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setTabChangesFocus(True)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self._lines = lines
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        #: The last edit brought a NUL character, which was removed.
        self.nul_removed = False
        self.textChanged.connect(self._strip_nul)  # first: every other handler sees the clean text

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        margins = self.contentsMargins()
        height = self.fontMetrics().lineSpacing() * self._lines + 2 * int(self.document().documentMargin())
        return QSize(hint.width(), height + margins.top() + margins.bottom())

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()

    def _strip_nul(self) -> None:
        text = self.toPlainText()
        if "\0" not in text:
            self.nul_removed = False
            return
        position = self.textCursor().position()
        with QSignalBlocker(self):
            self.setPlainText(text.replace("\0", ""))
            cursor = self.textCursor()
            cursor.setPosition(min(position, len(self.toPlainText())))
            self.setTextCursor(cursor)
        self.textChanged.emit()  # the others see the clean text (this handler runs again and resets the flag)
        self.nul_removed = True  # until the next edit
        self.nulRemoved.emit()
