"""Where a file is written and in which format: the path (elided in the middle), *Change…*, a format list.

The Review page uses it for the template; the page decides what a change means (a Save dialog, a new
extension), the field only shows and reports.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

from app.gui.widgets.elided_label import ElidedLabel


class OutputFileField(QWidget):
    """``path … [Change…]  Format: [combo]``."""

    #: *Change…* was clicked.
    changeRequested = Signal()
    #: The user chose another format (its data value, e.g. ``"vhdx"``).
    formatChosen = Signal(str)

    def __init__(self, formats: Sequence[tuple[str, str]], parent: QWidget | None = None) -> None:
        """``formats``: ``(label, value)`` pairs, in the order offered."""
        super().__init__(parent)
        self._syncing = False
        self.path_label = ElidedLabel(self)  # long paths lose their middle, not the file name
        self.change_button = QPushButton(self.tr("C&hange…"), self)
        self.change_button.clicked.connect(self.changeRequested)
        self.format_combo = QComboBox(self)
        self.format_combo.setAccessibleName(self.tr("Output format"))
        for label, value in formats:
            self.format_combo.addItem(label, value)
        self.format_combo.currentIndexChanged.connect(self._on_format_changed)
        caption = QLabel(self.tr("&Format:"), self)
        caption.setBuddy(self.format_combo)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        row.addWidget(self.path_label, 1)
        row.addWidget(self.change_button)
        row.addWidget(caption)
        row.addWidget(self.format_combo)

    def set_path(self, text: str) -> None:
        self.path_label.set_full_text(text)

    def set_format(self, value: str) -> None:
        """Show ``value`` as the chosen format without reporting it as the user's choice."""
        self._syncing = True
        try:
            self.format_combo.setCurrentIndex(max(self.format_combo.findData(value), 0))
        finally:
            self._syncing = False

    def _on_format_changed(self) -> None:
        if not self._syncing:
            self.formatChosen.emit(str(self.format_combo.currentData()))
