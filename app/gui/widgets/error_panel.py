"""An inline error box (icon, one-line message, hint), shown where the user looks instead of a dialog."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QStyle, QVBoxLayout, QWidget


class ErrorPanel(QFrame):
    """An inline error box: icon, one-line message, hint. Hidden until ``show_error``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorPanel")
        self.setStyleSheet(
            "#errorPanel { background: rgba(220, 50, 47, 0.12); border: 1px solid rgba(200, 40, 40, 0.75);"
            " border-radius: 6px; }"
        )
        icon = QLabel(self)
        icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxCritical).pixmap(32, 32))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.message_label = QLabel(self)
        self.message_label.setObjectName("errorMessage")
        font = self.message_label.font()
        font.setBold(True)
        self.message_label.setFont(font)
        self.hint_label = QLabel(self)
        self.hint_label.setObjectName("errorHint")
        for label in (self.message_label, self.hint_label):
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setTextFormat(Qt.TextFormat.PlainText)
        text = QVBoxLayout()
        text.setSpacing(2)
        text.addWidget(self.message_label)
        text.addWidget(self.hint_label)
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 8, 10, 8)
        row.addWidget(icon)
        row.addLayout(text, 1)
        self.hide()

    def show_error(self, message: str, hint: str = "") -> None:
        # Engine messages are written to follow "shieldwright: " on a terminal, so start lower-case.
        message, hint = _sentence(message), _sentence(hint)
        self.message_label.setText(message)
        self.hint_label.setText(hint)
        self.hint_label.setVisible(bool(hint))
        self.setAccessibleName(self.tr("Error: %1").replace("%1", message))
        self.setAccessibleDescription(hint)
        self.show()

    def clear(self) -> None:
        self.hide()
        self.message_label.clear()
        self.hint_label.clear()


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
