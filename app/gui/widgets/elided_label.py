"""Labels that never clip silently: elided to fit, the full text in the tooltip and the accessible name.

:class:`ElidedLabel` is one line for long paths (elided in the middle). :class:`StatusLine` is a status
that changes with the page's state: its height is reserved for a fixed number of lines whatever it says, so
the controls around it never move, and text beyond those lines ends in an ellipsis.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QFont, QFontMetrics, QResizeEvent, QTextLayout, QTextOption
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class ElidedLabel(QLabel):
    """A one-line label that elides its text in the middle to fit; the full text is the tooltip."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(60)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self.setAccessibleName(text)
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        self.setText(
            self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideMiddle, max(self.width(), 60))
        )


def elide_lines(
    text: str, font: QFont, width: int, lines: int, mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight
) -> tuple[str, bool]:
    """``text`` word-wrapped at ``width`` pixels into at most ``lines`` lines, the last one elided at its
    end when more text follows (one line: elided with ``mode``); and whether anything was left out."""
    width = max(width, 1)
    metrics = QFontMetrics(font)
    if lines <= 1:
        flat = " ".join(text.splitlines())
        shown = metrics.elidedText(flat, mode, width)
        return shown, shown != flat
    paragraphs = text.split("\n")
    wrapped: list[tuple[int, int, int]] = []  # (paragraph, start, length) of every line as drawn
    for index, paragraph in enumerate(paragraphs):
        layout = QTextLayout(paragraph, font)
        option = QTextOption()
        option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        layout.setTextOption(option)
        layout.beginLayout()
        count = 0
        while True:
            line = layout.createLine()
            if not line.isValid():
                break
            line.setLineWidth(width)
            wrapped.append((index, line.textStart(), line.textLength()))
            count += 1
        layout.endLayout()
        if count == 0:
            wrapped.append((index, 0, 0))
    if len(wrapped) <= lines:
        return "\n".join(paragraphs[i][s : s + n].rstrip() for i, s, n in wrapped), False
    kept = [paragraphs[i][s : s + n].rstrip() for i, s, n in wrapped[: lines - 1]]
    index, start, _ = wrapped[lines - 1]
    rest = " ".join([paragraphs[index][start:], *paragraphs[index + 1 :]])
    kept.append(metrics.elidedText(rest, Qt.TextElideMode.ElideRight, width))
    return "\n".join(kept), True


class StatusLine(QLabel):
    """A status that reserves the height of ``lines`` lines whatever it says (nothing around it moves when
    it changes), wraps within them and elides what does not fit; then the full text is its tooltip.

    :meth:`text` is the full text, as set; what is drawn is :meth:`shown_text`. The accessible name is the
    full text too.
    """

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        lines: int = 1,
        elide: Qt.TextElideMode = Qt.TextElideMode.ElideRight,
        name: str = "",
    ) -> None:
        super().__init__(parent)
        if name:
            self.setObjectName(name)
        self._full = ""
        self._tooltip = ""
        self._lines = max(1, lines)
        self._mode = elide
        self.elided = False
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setWordWrap(False)  # we wrap ourselves, within the reserved lines
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(40)
        self._fit_height()

    # -- the text -----------------------------------------------------------------------------------

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._full = text or ""
        self.setAccessibleName(self._full)
        self._relayout()

    def text(self) -> str:
        """The full text (what was set), not the elided one drawn."""
        return self._full

    def clear(self) -> None:
        self.setText("")

    def shown_text(self) -> str:
        """What is drawn: the text wrapped into the reserved lines, elided if it did not fit."""
        return super().text()

    def setToolTip(self, tip: str) -> None:  # noqa: N802 - Qt's name
        """A tooltip of the owner's; while the text is elided the full text comes first in it."""
        self._tooltip = tip
        self._relayout()

    # -- layout -------------------------------------------------------------------------------------

    def reserved_lines(self) -> int:
        return self._lines

    def _fit_height(self) -> None:
        margins = self.contentsMargins()
        height = self._lines * self.fontMetrics().lineSpacing() + margins.top() + margins.bottom()
        self.setFixedHeight(height + 2 * self.margin())

    def _relayout(self) -> None:
        width = self.contentsRect().width() - 2 * self.margin()
        shown, self.elided = elide_lines(self._full, self.font(), width, self._lines, self._mode)
        super().setText(shown)
        if self.elided:  # the whole text, then the owner's tooltip if it says more
            extra = self._tooltip if self._tooltip and self._tooltip != self._full else ""
            super().setToolTip(self._full + ("\n" + extra if extra else ""))
        else:
            super().setToolTip(self._tooltip)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._relayout()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._fit_height()
            self._relayout()
