"""A verification's checks, one line each: ``✓ name — detail`` or, red and bold, ``✗ name — detail``.

The glyph is the cue (never colour alone); a screen reader hears "Passed: …" or "Failed: …". Before there
are checks the list shows one greyed sentence saying what will be checked (or why nothing was).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QSizePolicy, QStyle, QWidget

from app.gui.presentation import is_dark


class CheckList(QListWidget):
    """The checks of a verification (objects with ``name``, ``ok`` and ``detail``)."""

    def __init__(self, parent: QWidget | None = None, *, name: str = "checks") -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setWordWrap(True)
        self.setSpacing(2)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def show_note(self, text: str, *, icon: QStyle.StandardPixmap | None = None) -> None:
        """No checks: one greyed line (with an icon, e.g. information)."""
        self.clear()
        item = QListWidgetItem(text)
        if icon is not None:
            item.setIcon(self.style().standardIcon(icon))
        item.setForeground(self.palette().brush(QPalette.ColorRole.PlaceholderText))
        item.setData(Qt.ItemDataRole.UserRole, None)
        item.setToolTip(text)
        self.addItem(item)

    def show_checks(self, checks: Iterable[Any]) -> None:
        self.clear()
        bad = QColor(255, 110, 110) if is_dark(self.palette()) else QColor(190, 30, 30)
        for check in checks:
            detail = getattr(check, "detail", "") or ""
            text = f"{'✓' if check.ok else '✗'} {check.name}" + (f" — {detail}" if detail else "")
            item = QListWidgetItem(text)
            if not check.ok:
                item.setForeground(bad)
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            item.setData(Qt.ItemDataRole.UserRole, bool(check.ok))
            item.setData(
                Qt.ItemDataRole.AccessibleTextRole,
                (self.tr("Passed: %1") if check.ok else self.tr("Failed: %1")).replace("%1", text[2:]),
            )
            item.setToolTip(text)
            self.addItem(item)

    def rows(self) -> list[tuple[bool, str]]:
        """``(passed, text)`` per check shown (empty while a note is shown)."""
        out = []
        for i in range(self.count()):
            item = self.item(i)
            ok = item.data(Qt.ItemDataRole.UserRole)
            if ok is not None:
                out.append((bool(ok), item.text()))
        return out

    def note(self) -> str:
        """The note shown instead of checks ("" when checks are shown)."""
        item = self.item(0) if self.count() == 1 else None
        return item.text() if item is not None and item.data(Qt.ItemDataRole.UserRole) is None else ""
