"""A read-only summary of grouped (label, value) rows, shown as one rich-text view.

One QTextBrowser rather than a grid of labels: a screen reader reads it top to bottom, the text can be
selected and copied as a whole, and it scrolls when the window is small. The Review page fills it.
"""

from __future__ import annotations

import html

from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QFrame, QSizePolicy, QTextBrowser, QWidget

#: ``(label, value, monospace)``.
Row = tuple[str, str, bool]
#: ``(title, rows)``.
Group = tuple[str, list[Row]]


class SummaryView(QTextBrowser):
    """Groups of rows: a bold title per group, then muted labels beside their values."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(120)

    def set_groups(self, groups: list[Group]) -> None:
        muted = self.palette().color(QPalette.ColorRole.PlaceholderText).name()
        parts = ["<table cellspacing='0' cellpadding='2' width='100%'>"]
        for title, rows in groups:
            parts.append(f"<tr><td colspan='2' style='padding-top:6px'><b>{html.escape(title)}</b></td></tr>")
            for label, value, mono in rows:
                cell = html.escape(value).replace("\n", "<br>")
                if mono:
                    cell = f"<span style='font-family:monospace'>{cell}</span>"
                parts.append(
                    f"<tr><td style='color:{muted}; padding-left:12px' width='28%' valign='top'>"
                    f"{html.escape(label)}</td><td valign='top'>{cell}</td></tr>"
                )
        parts.append("</table>")
        self.setHtml("".join(parts))
