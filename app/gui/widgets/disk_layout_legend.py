"""The legend under the disk layout bar: what its non-colour cues mean (shield, padlock, hatching, grey)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from app.disk.model import Role
from app.gui.presentation import contrasting_text, free_color, role_color
from app.gui.widgets.adaptive_box import AdaptiveBox
from app.gui.widgets.disk_layout_glyphs import padlock_paths, shield_path


class DiskLayoutLegend(AdaptiveBox):
    """What the bar's non-colour cues mean: shield, padlock, hatching, grey (two by two when narrow)."""

    ICON = 16

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("diskLayoutLegend")
        pairs = (QHBoxLayout(), QHBoxLayout())
        for pair in pairs:
            pair.setSpacing(6)
            self.box.addLayout(pair)
        entries = [
            ("protected", self.tr("Shield"), self.tr("Protected (will be encrypted)")),
            ("encrypted", self.tr("Padlock"), self.tr("Already encrypted")),
            ("unknown", self.tr("Hatching"), self.tr("Unknown or empty content")),
            ("free", self.tr("Grey, dashed"), self.tr("Unallocated")),
        ]
        self.setAccessibleName(self.tr("Disk layout legend"))
        self.setAccessibleDescription(
            "; ".join(self.tr("%1: %2").replace("%1", cue).replace("%2", text) for _, cue, text in entries)
        )
        self._icons: list[tuple[QLabel, str]] = []
        for n, (kind, cue, text) in enumerate(entries):
            row = pairs[n // 2]
            icon = QLabel(self)
            icon.setFixedSize(self.ICON, self.ICON)
            icon.setAccessibleName(cue)  # a picture: say what it shows
            label = QLabel(text, self)
            label.setForegroundRole(QPalette.ColorRole.WindowText)
            self._icons.append((icon, kind))
            row.addWidget(icon)
            row.addWidget(label)
            row.addSpacing(12)
        for pair in pairs:
            pair.addStretch(1)  # stacked, each pair is as wide as the box: the entries stay on the left
        self.box.addStretch(1)
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
