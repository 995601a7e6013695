"""The findings of a validation (image, certificate, …): one row per finding, errors first, severity icons.

Colour is never the only cue: each row has the standard error/warning/information icon, and its
accessible text and tooltip start with the severity word.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QSizePolicy, QStyle, QWidget

from app.findings import Finding, Severity

_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


class FindingsList(QListWidget):
    """A read-only list of findings that sizes itself to its rows (up to ``max_rows``). An owner that must
    not move when the findings change keeps :meth:`reserved_height` for it."""

    def __init__(self, parent: QWidget | None = None, *, max_rows: int = 5) -> None:
        super().__init__(parent)
        self.max_rows = max_rows
        self.setObjectName("findings")
        self.setAccessibleName(self.tr("Findings"))
        self.setWordWrap(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
        self.set_findings(None)

    def set_findings(self, findings: Iterable[Finding] | None, *, empty_text: str | None = None) -> None:
        """Show ``findings`` sorted by severity; ``None`` means "nothing inspected yet" (an empty list).

        An inspected input without findings gets one "No problems found." row (or ``empty_text``).
        """
        self.clear()
        style = self.style()
        icons = {
            Severity.ERROR: (QStyle.StandardPixmap.SP_MessageBoxCritical, self.tr("Error")),
            Severity.WARNING: (QStyle.StandardPixmap.SP_MessageBoxWarning, self.tr("Warning")),
            Severity.INFO: (QStyle.StandardPixmap.SP_MessageBoxInformation, self.tr("Note")),
        }
        ordered = sorted(findings, key=lambda f: _ORDER[f.severity]) if findings is not None else []
        for finding in ordered:
            pixmap, word = icons[finding.severity]
            message = finding.message[:1].upper() + finding.message[1:]  # engine messages are lower-case
            item = QListWidgetItem(style.standardIcon(pixmap), message)
            item.setData(Qt.ItemDataRole.UserRole, str(finding.severity))
            item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{word}: {message}")
            item.setToolTip(f"{word}: {message}")
            self.addItem(item)
        if findings is not None and not ordered:
            item = QListWidgetItem(
                style.standardIcon(QStyle.StandardPixmap.SP_DialogApplyButton),
                empty_text or self.tr("No problems found."),
            )
            self.addItem(item)
        self._fit_height()

    def severities(self) -> list[str]:
        """Each row's severity: ``"error"``, ``"warning"``, ``"info"``, or ``None`` for "no problems"."""
        return [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())]

    def messages(self) -> list[str]:
        return [self.item(i).text() for i in range(self.count())]

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._fit_height()  # word-wrapped rows grow taller when the list gets narrower

    def reserved_height(self, rows: int | None = None) -> int:
        """The height of ``rows`` (default ``max_rows``) one-line rows with their icons, and the frame."""
        probe = QListWidget()
        probe.setFont(self.font())
        probe.setSpacing(self.spacing())
        probe.addItem(
            QListWidgetItem(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning), "X")
        )
        row = probe.sizeHintForRow(0)
        probe.deleteLater()
        return (rows or self.max_rows) * row + 2 * self.frameWidth() + 4

    def _fit_height(self) -> None:
        """As tall as the first ``max_rows`` rows (wrapped rows count as they are drawn), then scroll."""
        self.doItemsLayout()
        heights = [self.sizeHintForRow(i) for i in range(min(self.count(), self.max_rows))]
        content = sum(heights) if heights else self.fontMetrics().height() + 6
        self.setMaximumHeight(content + 2 * self.frameWidth() + 4)
