"""An inline note beside a control: an icon and a wrapped line, neutral (a hint) or a warning.

Lighter than the error panel: it explains a choice where it is made, and turns into a warning when the
choice is risky (e.g. ``root=`` on a template's kernel command line).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QStyle, QWidget


class Notice(QFrame):
    """An inline note: an icon and a wrapped line, in a neutral ("hint") or a warning style."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("notice")
        self.icon = QLabel(self)
        self.icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 3, 6, 3)
        row.setSpacing(6)
        row.addWidget(self.icon)
        row.addWidget(self.label, 1)
        self.warning = False
        self.set_text("", warning=False)

    def set_text(self, text: str, *, warning: bool) -> None:
        self.warning = warning
        self.label.setText(text)
        pixmap = (
            QStyle.StandardPixmap.SP_MessageBoxWarning
            if warning
            else QStyle.StandardPixmap.SP_MessageBoxInformation
        )
        size = self.fontMetrics().height()
        self.icon.setPixmap(self.style().standardIcon(pixmap).pixmap(size, size))
        self.setStyleSheet(
            "#notice { background: rgba(230, 160, 0, 0.16); border: 1px solid rgba(200, 130, 0, 0.8);"
            " border-radius: 4px; }"
            if warning
            else "#notice { border: none; }"
        )
        self.label.setForegroundRole(
            QPalette.ColorRole.WindowText if warning else QPalette.ColorRole.PlaceholderText
        )
        self.setAccessibleName((self.tr("Warning: %1") if warning else "%1").replace("%1", text))
