"""Help › User guide (``docs/user-guide.md``, shown in a window of its own) and Help › Keyboard shortcuts
(the frame's real shortcuts, read from its actions and its wizard's buttons)."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QImage, QTextDocument
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.gui.widgets.tables import setup_readonly_table

GUIDE_NAME = "user-guide.md"


def user_guide_candidates() -> list[Path]:
    """Where the user guide may be: the source tree's docs/, then where a package installs documentation."""
    repo = Path(__file__).resolve().parents[3] / "docs" / GUIDE_NAME
    return [
        repo,
        Path(sys.prefix) / "share" / "doc" / "shieldwright" / GUIDE_NAME,
        Path("/usr/share/doc/shieldwright") / GUIDE_NAME,
    ]


def user_guide_path(candidates: list[Path] | None = None) -> Path | None:
    """The first user guide found, or None."""
    return next((p for p in (candidates or user_guide_candidates()) if p.is_file()), None)


class GuideBrowser(QTextBrowser):
    """A text browser that shows the guide's screenshots no wider than itself (no sideways scrolling)."""

    #: Screenshots are drawn at most this wide (they are taken at 1000 px).
    MAX_IMAGE_WIDTH = 720

    def loadResource(self, kind: int, url: QUrl | str) -> object:  # noqa: N802 - Qt's name
        data = super().loadResource(kind, url)
        if kind != QTextDocument.ResourceType.ImageResource.value:
            return data
        image = data if isinstance(data, QImage) else QImage.fromData(data) if data else QImage()
        width = min(self.MAX_IMAGE_WIDTH, max(200, self.viewport().width() - 40))
        if image.isNull() or image.width() <= width:
            return data
        return image.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)


class GuideWindow(QDialog):
    """The user guide (Markdown, with its screenshots) in a non-modal window; links to other documents of
    the guide's folder open in it too, web links in the browser."""

    def __init__(self, path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("userGuide")
        self.setWindowTitle(self.tr("Shieldwright User Guide"))
        self.setWindowFlag(Qt.WindowType.WindowMaximizeButtonHint, True)
        self.browser = GuideBrowser(self)
        self.browser.setObjectName("guideBrowser")
        self.browser.setAccessibleName(self.tr("User guide"))
        self.browser.setOpenExternalLinks(True)
        self.browser.setSearchPaths([str(path.parent)])
        self.browser.setSource(QUrl.fromLocalFile(str(path)), QTextDocument.ResourceType.MarkdownResource)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 1)
        layout.addWidget(buttons)
        self.resize(820, 640)


class ShortcutsDialog(QDialog):
    """A table of (keys, what they do), non-modal."""

    def __init__(self, rows: list[tuple[str, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("keyboardShortcuts")
        self.setWindowTitle(self.tr("Keyboard Shortcuts"))
        intro = QLabel(
            self.tr(
                "Besides these, Alt with the underlined letter of a button or field activates it, Tab moves "
                "to the next control and Space presses the focused button."
            ),
            self,
        )
        intro.setWordWrap(True)
        self.table = QTableWidget(len(rows), 2, self)
        self.table.setObjectName("shortcutsTable")
        self.table.setHorizontalHeaderLabels([self.tr("Keys"), self.tr("Action")])
        self.table.setAccessibleName(self.tr("Keyboard shortcuts"))
        setup_readonly_table(self.table, 1)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        for row, (keys, action) in enumerate(rows):
            key_item, action_item = QTableWidgetItem(keys), QTableWidgetItem(action)
            action_item.setToolTip(action)
            self.table.setItem(row, 0, key_item)
            self.table.setItem(row, 1, action_item)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.resize(560, 520)

    def rows(self) -> list[tuple[str, str]]:
        out = []
        for row in range(self.table.rowCount()):
            keys, action = self.table.item(row, 0), self.table.item(row, 1)
            out.append((keys.text() if keys else "", action.text() if action else ""))
        return out
