"""The disk layout bar: one focusable child widget per partition (KDE Partition Manager style).

Each :class:`PartitionSegment` is a real widget, so it gets its own tooltip, keyboard focus and
accessible name; free space between partitions is a grey, non-focusable :class:`FreeSegment`.
Widths are proportional to size, with a minimum and "levelled" so tiny partitions (a 2 MiB swap next
to a 30 GiB root) stay visible and clickable. Colour shows the partition's role; encryption (padlock),
unknown/empty content (hatching) and protection (shield + bold border) have non-colour cues too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFocusEvent,
    QFontMetrics,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QResizeEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.disk.model import DiskLayout, Partition
from app.gui.presentation import (
    content_label,
    contrasting_text,
    display_name,
    free_color,
    human_size,
    partition_tooltip,
    role_color,
    role_label,
)
from app.gui.widgets.disk_layout_glyphs import padlock_paths, shield_path

MiB = 1024 * 1024
#: Gaps up to this size are alignment padding (the GPT's first MiB), not free space worth showing.
GAP_THRESHOLD = MiB


def level_widths(sizes: Sequence[int], total: int, minimum: int) -> list[int]:
    """Integer widths summing to ``total``, proportional to ``sizes`` but none below ``minimum``.

    Segments that would fall below the minimum are pinned to it and the pixels are taken from the
    others in proportion (KPM's ``levelChildrenWidths``); rounding loss goes to the largest remainders.
    """
    n = len(sizes)
    if n == 0:
        return []
    if total <= n * minimum:
        base, extra = divmod(max(total, 0), n)
        return [base + (1 if i < extra else 0) for i in range(n)]
    pinned = [False] * n
    while True:
        free_px = total - minimum * sum(pinned)
        free_size = sum(s for s, p in zip(sizes, pinned, strict=True) if not p)
        unpinned = n - sum(pinned)
        exact = [
            float(minimum) if p else (s / free_size * free_px if free_size > 0 else free_px / unpinned)
            for s, p in zip(sizes, pinned, strict=True)
        ]
        newly = [i for i in range(n) if not pinned[i] and exact[i] < minimum]
        if not newly:
            break
        for i in newly:
            pinned[i] = True
        if all(pinned):
            exact = [total / n] * n
            break
    widths = [math.floor(w) for w in exact]
    order = sorted(range(n), key=lambda i: exact[i] - widths[i], reverse=True)
    for i in order[: total - sum(widths)]:
        widths[i] += 1
    return widths


@dataclass(frozen=True)
class _Region:
    """One piece of the bar: a partition, or free space of ``size`` bytes."""

    size: int
    partition: Partition | None = None


def layout_regions(layout: DiskLayout) -> list[_Region]:
    """The partitions in disk order with the free gaps (larger than alignment padding) between them."""
    regions: list[_Region] = []
    pos = 0
    ss = layout.sector_size or 512
    for p in sorted(layout.partitions, key=lambda p: p.first_lba):
        start = p.first_lba * ss
        if start - pos > GAP_THRESHOLD:
            regions.append(_Region(start - pos))
        regions.append(_Region(max(p.size_bytes, 1), p))
        pos = max(pos, (p.last_lba + 1) * ss)
    if layout.virtual_size - pos > GAP_THRESHOLD:
        regions.append(_Region(layout.virtual_size - pos))
    return regions


class FreeSegment(QWidget):
    """Unallocated space: grey, dashed, not focusable."""

    def __init__(self, size_bytes: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.size_bytes = size_bytes
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        text = self.tr("Unallocated space: %1").replace("%1", human_size(size_bytes))
        self.setToolTip(text)
        self.setAccessibleName(text)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        rect = QRectF(self.rect()).adjusted(1.5, 1.5, -1.5, -1.5)
        painter.setBrush(free_color(pal))
        pen = QPen(pal.color(QPalette.ColorRole.Mid), 1, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawRoundedRect(rect, 4, 4)
        fm = QFontMetrics(self.font())
        label = human_size(self.size_bytes)
        if fm.horizontalAdvance(label) + 8 <= rect.width():
            painter.setPen(contrasting_text(free_color(pal)))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, label)


class PartitionSegment(QWidget):
    """One partition in the bar: focusable, with tooltip, accessible name and its own painting."""

    def __init__(self, bar: DiskLayoutBar, partition: Partition) -> None:
        super().__init__(bar)
        self._bar = bar
        self.partition = partition
        self.protected = False
        self.selected = False
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_Hover)
        self._update_texts()

    @property
    def number(self) -> int:
        return self.partition.number

    def set_protected(self, protected: bool) -> None:
        if protected != self.protected:
            self.protected = protected
            self._update_texts()
            self.update()

    def set_selected(self, selected: bool) -> None:
        if selected != self.selected:
            self.selected = selected
            self.update()

    def _update_texts(self) -> None:
        p = self.partition
        self.setToolTip(partition_tooltip(p, self.protected))
        self.setAccessibleName(
            self.tr("Partition %1, %2, %3, %4")
            .replace("%1", str(p.number))
            .replace("%2", display_name(p))
            .replace("%3", p.type_name)
            .replace("%4", human_size(p.size_bytes))
        )
        facts = [role_label(p.role), content_label(p)]
        if p.encrypted:
            facts.append(self.tr("encrypted"))
        if self.protected:
            facts.append(self.tr("selected for protection"))
        self.setAccessibleDescription(", ".join(facts))

    # -- interaction ------------------------------------------------------------------------------

    def focusInEvent(self, event: QFocusEvent) -> None:
        super().focusInEvent(event)
        self._bar._segment_activated(self)
        self.update()

    def focusOutEvent(self, event: QFocusEvent) -> None:
        super().focusOutEvent(event)
        self.update()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            if self.hasFocus():
                self._bar._segment_activated(self)
            else:
                self.setFocus(Qt.FocusReason.MouseFocusReason)
            event.accept()
            return
        super().mousePressEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if not self._bar._navigate(self, event.key()):
            super().keyPressEvent(event)

    # -- painting ---------------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        p = self.partition
        pal = self.palette()
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        fill = role_color(p.role, pal)
        ink = contrasting_text(fill)
        outer = QRectF(self.rect()).adjusted(1, 1, -1, -1)

        # Body; a protected partition gets a bold dark border, the selected one a highlight ring.
        border = QColor(ink)
        border.setAlpha(200 if self.protected else 70)
        painter.setPen(QPen(border, 2.5 if self.protected else 1))
        painter.setBrush(fill.lighter(108) if self.underMouse() else fill)
        inset = 1.25 if self.protected else 0.5
        painter.drawRoundedRect(outer.adjusted(inset, inset, -inset, -inset), 4, 4)

        if p.content in ("unknown", "empty"):
            hatch = QColor(ink)
            hatch.setAlpha(55)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QBrush(hatch, Qt.BrushStyle.BDiagPattern))
            painter.drawRoundedRect(outer.adjusted(2, 2, -2, -2), 3, 3)

        if self.selected:
            ring = pal.color(QPalette.ColorRole.Highlight)
            painter.setPen(QPen(ring, 3))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(outer.adjusted(0.5, 0.5, -0.5, -0.5), 5, 5)

        # Glyphs in the top-left corner: shield (protected), padlock (encrypted).
        glyph = 12.0
        gx, gy = outer.left() + 6, outer.top() + 6
        glyph_room = outer.width() >= glyph + 12
        if self.protected and glyph_room:
            painter.setPen(QPen(ink, 1.2))
            shield_fill = QColor(ink)
            shield_fill.setAlpha(150)
            painter.setBrush(shield_fill)
            painter.drawPath(shield_path(gx, gy, glyph))
            gx += glyph + 4
        if p.encrypted and outer.right() - gx >= glyph + 6:
            body, shackle = padlock_paths(gx, gy, glyph)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(ink, 1.6))
            painter.drawPath(shackle)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(ink)
            painter.drawPath(body)

        self._paint_label(painter, outer, ink)

        if self.hasFocus():
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(ink, 1, Qt.PenStyle.DashLine))
            painter.drawRect(self.rect().adjusted(5, 5, -6, -6))

    def _paint_label(self, painter: QPainter, rect: QRectF, ink: QColor) -> None:
        """Name and size on two lines if they fit, else the number and size, else the number, else nothing."""
        p = self.partition
        fm = QFontMetrics(self.font())
        room = rect.adjusted(6, 4, -6, -4)
        size = human_size(p.size_bytes)
        candidates = [
            (f"{p.number}  {display_name(p)}", size),
            (f"{p.number}  {display_name(p)}",),
            (str(p.number), size),
            (str(p.number),),
        ]
        for lines in candidates:
            if fm.height() * len(lines) > room.height():
                continue
            if all(fm.horizontalAdvance(line) <= room.width() for line in lines):
                break
        else:
            return
        painter.setPen(ink)
        block_h = fm.height() * len(lines)
        top = room.top() + (room.height() - block_h) / 2
        bold = self.font()
        bold.setBold(True)
        for i, line in enumerate(lines):
            painter.setFont(bold if i == 0 else self.font())
            line_rect = QRectF(room.left(), top + i * fm.height(), room.width(), fm.height())
            painter.drawText(line_rect, Qt.AlignmentFlag.AlignCenter, line)
        painter.setFont(self.font())

    def sizeHint(self) -> QSize:
        return QSize(DiskLayoutBar.MIN_SEGMENT_WIDTH, DiskLayoutBar.HEIGHT)


class DiskLayoutBar(QWidget):
    """A horizontal map of a disk: one child widget per partition, free space in grey."""

    #: A partition segment was clicked or got keyboard focus (its GPT number).
    partitionSelected = Signal(int)

    MIN_SEGMENT_WIDTH = 40
    SPACING = 2
    HEIGHT = 60

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout: DiskLayout | None = None
        self._regions: list[_Region] = []
        self._widgets: list[QWidget] = []
        self._segments: list[PartitionSegment] = []
        self._selected: int | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName(self.tr("Disk layout"))
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)

    # -- public API -------------------------------------------------------------------------------

    def set_disk_layout(self, layout: DiskLayout | None) -> None:
        """Show ``layout`` (or nothing), replacing the current segments."""
        for old in self._widgets:
            old.hide()
            old.deleteLater()
        self._layout = layout
        self._widgets, self._segments, self._selected = [], [], None
        self._regions = layout_regions(layout) if layout else []
        for region in self._regions:
            if region.partition is None:
                w: QWidget = FreeSegment(region.size, self)
            else:
                w = seg = PartitionSegment(self, region.partition)
                self._segments.append(seg)
            self._widgets.append(w)
        # Tab order follows disk order.
        for a, b in zip(self._segments, self._segments[1:], strict=False):
            QWidget.setTabOrder(a, b)
        self._describe()
        self._place_children()
        for w in self._widgets:
            w.show()
        self.update()

    def disk_layout(self) -> DiskLayout | None:
        return self._layout

    def partition_segments(self) -> list[PartitionSegment]:
        """The partition segments, in disk order (free-space segments excluded)."""
        return list(self._segments)

    def segment(self, number: int) -> PartitionSegment | None:
        return next((s for s in self._segments if s.number == number), None)

    def set_protected(self, numbers: Iterable[int]) -> None:
        chosen = set(numbers)
        for seg in self._segments:
            seg.set_protected(seg.number in chosen)
        self._describe()

    def _describe(self) -> None:
        """The accessible description says what the bar draws, in disk order: ``1: ESP 100 MiB,
        2: root (LUKS2, protected) 1.5 GiB, unallocated 20 MiB``."""
        if self._layout is None:
            self.setAccessibleDescription(self.tr("No image opened"))
            return
        pieces = []
        for w in self._widgets:
            if isinstance(w, PartitionSegment):
                p = w.partition
                marks = [p.content.upper()] if p.encrypted else []
                if w.protected:
                    marks.append(self.tr("protected"))
                text = f"{p.number}: {display_name(p)}" + (f" ({', '.join(marks)})" if marks else "")
                pieces.append(f"{text} {human_size(p.size_bytes)}")
            elif isinstance(w, FreeSegment):
                pieces.append(self.tr("unallocated %1").replace("%1", human_size(w.size_bytes)))
        self.setAccessibleDescription(", ".join(pieces) if self._segments else self.tr("No partitions"))

    def select_partition(self, number: int | None) -> None:
        """Highlight ``number`` without taking focus or emitting ``partitionSelected``."""
        self._selected = number
        for seg in self._segments:
            seg.set_selected(seg.number == number)

    def selected_partition(self) -> int | None:
        return self._selected

    # -- children ---------------------------------------------------------------------------------

    def _segment_activated(self, seg: PartitionSegment) -> None:
        self.select_partition(seg.number)
        self.partitionSelected.emit(seg.number)

    def _navigate(self, seg: PartitionSegment, key: int) -> bool:
        """Left/Right/Home/End move focus between partition segments; True if the key was handled."""
        if not self._segments:
            return False
        i = self._segments.index(seg)
        target = {
            Qt.Key.Key_Left: max(i - 1, 0),
            Qt.Key.Key_Right: min(i + 1, len(self._segments) - 1),
            Qt.Key.Key_Home: 0,
            Qt.Key.Key_End: len(self._segments) - 1,
        }.get(Qt.Key(key))
        if target is None:
            return False
        self._segments[target].setFocus(Qt.FocusReason.OtherFocusReason)
        return True

    def _place_children(self) -> None:
        if not self._widgets:
            return
        n = len(self._widgets)
        usable = self.width() - self.SPACING * (n - 1)
        widths = level_widths([r.size for r in self._regions], usable, self.MIN_SEGMENT_WIDTH)
        x = 0
        for w, width in zip(self._widgets, widths, strict=True):
            w.setGeometry(x, 0, width, self.height())
            x += width + self.SPACING

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place_children()

    def sizeHint(self) -> QSize:
        n = max(len(self._widgets), 1)
        return QSize(max(400, n * (self.MIN_SEGMENT_WIDTH + self.SPACING)), self.HEIGHT)

    def minimumSizeHint(self) -> QSize:
        n = max(len(self._widgets), 1)
        return QSize(n * (self.MIN_SEGMENT_WIDTH + self.SPACING), self.HEIGHT)

    def paintEvent(self, event: QPaintEvent) -> None:
        if self._layout is not None and self._widgets:
            return
        # Empty state: a dashed drop zone.
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        painter.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1.2, Qt.PenStyle.DashLine))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(QRectF(self.rect()).adjusted(1, 1, -1, -1), 6, 6)
        painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        text = (
            self.tr("No partitions")
            if self._layout is not None
            else self.tr("No image opened: choose one with Open image… or drop it here")
        )
        painter.drawText(QRectF(self.rect()), Qt.AlignmentFlag.AlignCenter, text)
