"""Where a replay reads a secret from: "asked for (prompt)" or "read from a file…", and that file.

The Review page uses it for the provisioning passphrase: the recipe holds only where the passphrase comes
from, never the passphrase. The field shows and reports; the page opens the file dialog.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSizePolicy, QWidget


class SecretSourceField(QWidget):
    """A prompt/file choice and the chosen file's path (or a muted note)."""

    #: "read from a file…" was chosen: the owner asks for the file.
    fileRequested = Signal()
    #: "asked for (prompt)" was chosen.
    promptChosen = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox(self)
        self.combo.addItem(self.tr("asked for (prompt)"), "prompt")
        self.combo.addItem(self.tr("read from a file…"), "file")
        self.combo.activated.connect(self._on_activated)
        self.file_label = QLabel(self)
        self.file_label.setTextFormat(Qt.TextFormat.PlainText)
        self.file_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        row.addWidget(self.combo)
        row.addWidget(self.file_label, 1)

    def show_source(self, path: Path | None, *, choosing: bool = False, note: str = "") -> None:
        """``path`` the file (None: prompt, with ``note`` beside it); ``choosing``: a file is being chosen."""
        self.combo.setCurrentIndex(1 if path is not None or choosing else 0)
        self.file_label.setText(str(path) if path is not None else note)
        self.file_label.setToolTip(str(path) if path is not None else "")
        self.file_label.setForegroundRole(
            QPalette.ColorRole.WindowText if path is not None else QPalette.ColorRole.PlaceholderText
        )

    def _on_activated(self, _index: int) -> None:
        if self.combo.currentData() == "file":
            self.fileRequested.emit()
        else:
            self.promptChosen.emit()
