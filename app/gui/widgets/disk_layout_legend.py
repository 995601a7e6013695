"""The legend under the disk layout bar: what its non-colour cues mean (shield, padlock, hatching, grey)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from app.disk.model import Role
from app.gui.presentation import contrasting_text, free_color, role_color
from app.gui.widgets.disk_layout_glyphs import padlock_paths, shield_path


class DiskLayoutLegend(QWidget):
    """What the bar's non-colour cues mean: shield, padlock, hatching, grey."""

    ICON = 16

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("diskLayoutLegend")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        entries = [
            ("protected", self.tr("Protected (will be encrypted)")),
            ("encrypted", self.tr("Already encrypted")),
            ("unknown", self.tr("Unknown or empty content")),
            ("free", self.tr("Unallocated")),
        ]
        self._icons: list[tuple[QLabel, str]] = []
        for kind, text in entries:
            icon = QLabel(self)
            icon.setFixedSize(self.ICON, self.ICON)
            label = QLabel(text, self)
            label.setForegroundRole(QPalette.ColorRole.WindowText)
            self._icons.append((icon, kind))
            row.addWidget(icon)
            row.addWidget(label)
            row.addSpacing(12)
        row.addStretch(1)
        self._render_icons()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._render_icons()

    def _render_icons(self) -> None:
        pal = self.palette()
        dpr = self.devicePixelRatioF()
        for label, kind in self._icons:
            pixmap = QPixmap(int(self.ICON * dpr), int(self.ICON * dpr))
            pixmap.setDevicePixelRatio(dpr)
            pixmap.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pixmap)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            ink = pal.color(QPalette.ColorRole.WindowText)
            box = QRectF(1, 1, self.ICON - 2, self.ICON - 2)
            if kind == "protected":
                painter.setPen(QPen(ink, 1.2))
                fill = QColor(ink)
                fill.setAlpha(150)
                painter.setBrush(fill)
                painter.drawPath(shield_path(2, 1, self.ICON - 3))
            elif kind == "encrypted":
                body, shackle = padlock_paths(2, 1, self.ICON - 3)
                painter.setPen(QPen(ink, 1.6))
                painter.drawPath(shackle)
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(ink)
                painter.drawPath(body)
            elif kind == "unknown":
                fill = role_color(Role.OTHER, pal)
                painter.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1))
                painter.setBrush(fill)
                painter.drawRoundedRect(box, 2, 2)
                hatch = QColor(contrasting_text(fill))
                hatch.setAlpha(90)
                painter.setBrush(QBrush(hatch, Qt.BrushStyle.BDiagPattern))
                painter.drawRoundedRect(box, 2, 2)
            else:
                painter.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1, Qt.PenStyle.DashLine))
                painter.setBrush(free_color(pal))
                painter.drawRoundedRect(box, 2, 2)
            painter.end()
            label.setPixmap(pixmap)
