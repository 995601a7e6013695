"""A wizard's side panel: every step of the process, the current one bold and marked, the done ones ticked.

Shared by the three wizard frames: the owner gives the titles by page id (a callable, so they are translated
when shown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics, QPalette
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget


class StepList(QFrame):
    """The heading "Steps", then one label per page id: ``▸ current``, ``✓ done``, the rest greyed."""

    def __init__(self, titles: Callable[[], Mapping[int, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._titles = titles
        self.setObjectName("stepList")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setAutoFillBackground(True)
        self.setBackgroundRole(QPalette.ColorRole.AlternateBase)
        self.setAccessibleName(self.tr("Steps"))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 16, 14, 16)
        layout.setSpacing(10)
        heading = QLabel(self.tr("Steps"), self)
        font = heading.font()
        font.setBold(True)
        font.setCapitalization(QFont.Capitalization.AllUppercase)
        font.setPointSizeF(font.pointSizeF() * 0.85)
        heading.setFont(font)
        heading.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        layout.addWidget(heading)
        #: The label of each page id, in order.
        self.labels: dict[int, QLabel] = {}
        for page_id, title in titles().items():
            label = QLabel(title, self)
            label.setTextFormat(Qt.TextFormat.PlainText)
            self.labels[page_id] = label
            layout.addWidget(label)
        layout.addStretch(1)
        # As wide as the longest step when it is the current one (bold, marked) and no wider: the page beside
        # it needs the room at 800×600, and it must not move when the current step changes.
        bold = QFont(self.font())
        bold.setBold(True)
        widest = max((QFontMetrics(bold).horizontalAdvance(f"▸ {t}") for t in titles().values()), default=0)
        margins = layout.contentsMargins()
        self.setMinimumWidth(widest + margins.left() + margins.right() + 2)
        self.set_current(None, ())

    def set_current(self, current: int | None, visited: Iterable[int]) -> None:
        titles, done = self._titles(), set(visited)
        order = list(self.labels)
        if current in self.labels:
            self.setAccessibleDescription(
                self.tr("Step %1 of %2: %3")
                .replace("%1", str(order.index(current) + 1))
                .replace("%2", str(len(order)))
                .replace("%3", titles[current])
            )
        else:
            self.setAccessibleDescription(self.tr("%1 steps").replace("%1", str(len(order))))
        for page_id, label in self.labels.items():
            font = label.font()
            font.setBold(page_id == current)
            label.setFont(font)
            title = titles[page_id]
            if page_id == current:
                label.setText(f"▸ {title}")
                label.setForegroundRole(QPalette.ColorRole.WindowText)
                label.setAccessibleName(self.tr("%1 (current step)").replace("%1", title))
            elif page_id in done:
                label.setText(f"✓ {title}")
                label.setForegroundRole(QPalette.ColorRole.WindowText)
                label.setAccessibleName(self.tr("%1 (done)").replace("%1", title))
            else:
                label.setText(f"   {title}")
                label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
                label.setAccessibleName(title)
