"""Parts side by side when the width allows, one under the other when it does not.

Qt has no wrapping layout. A row of parts that is too wide for a narrow window (800×600, or a laptop at
200 %) would force the window wider or be cut off; :class:`AdaptiveBox` stacks its parts instead, and goes
back to one row when there is room again.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QBoxLayout, QWidget

Direction = QBoxLayout.Direction


class AdaptiveBox(QWidget):
    """A widget whose :attr:`box` lays its parts out left to right if they fit at their minimum widths,
    else top to bottom. Its minimum width is the widest part's: it never forces the window wider."""

    def __init__(self, parent: QWidget | None = None, *, spacing: int = 6) -> None:
        super().__init__(parent)
        #: The parts' layout: add widgets, layouts, stretch and spacing to it as to a QHBoxLayout.
        self.box = QBoxLayout(Direction.LeftToRight, self)
        self.box.setContentsMargins(0, 0, 0, 0)
        self.box.setSpacing(spacing)

    def side_by_side(self) -> bool:
        return self.box.direction() == Direction.LeftToRight

    def _parts_width(self) -> tuple[int, int]:
        """The width the parts need side by side, and the widest part's (margins included in both)."""
        total = widest = 0
        count = 0
        for i in range(self.box.count()):
            item = self.box.itemAt(i)
            spacer = item.spacerItem() if item is not None else None
            if spacer is not None:  # fixed spacing along the box (a stretch has none); flipped when stacked
                hint = spacer.sizeHint()
                total += hint.width() if self.side_by_side() else hint.height()
                continue
            if item is None or item.isEmpty():
                continue
            width = item.minimumSize().width()
            total += width
            widest = max(widest, width)
            count += 1
        margins = self.box.contentsMargins()
        extra = margins.left() + margins.right()
        return total + max(count - 1, 0) * max(self.box.spacing(), 0) + extra, widest + extra

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        """The widest part's width (stacked, they fit in it), and the height as laid out now."""
        hint = super().minimumSizeHint()
        return QSize(self._parts_width()[1], hint.height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.reflow()

    def event(self, event: QEvent) -> bool:
        handled = super().event(event)
        if event.type() == QEvent.Type.LayoutRequest:  # a part got wider or narrower, or was shown or hidden
            self.reflow()
        return handled

    def reflow(self) -> None:
        """Side by side if the parts fit in the width the widget has now, else stacked."""
        wanted = Direction.LeftToRight if self.width() >= self._parts_width()[0] else Direction.TopToBottom
        if self.box.direction() != wanted:
            self.box.setDirection(wanted)
            self.updateGeometry()  # the height changed: the owner's layout makes room
