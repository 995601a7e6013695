"""The disk layout's non-colour cues as painter paths: a padlock (encrypted) and a shield (protected).

Shared by the bar's segments and its legend, so both draw the same glyph.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF
from PySide6.QtGui import QPainterPath


def padlock_paths(x: float, y: float, size: float) -> tuple[QPainterPath, QPainterPath]:
    """A padlock in a ``size``-square box at (x, y): (filled body, stroked arc shackle)."""
    path = QPainterPath()
    body_h = size * 0.55
    path.addRoundedRect(QRectF(x, y + size - body_h, size, body_h), size * 0.12, size * 0.12)
    shackle = QPainterPath()
    sw = size * 0.62
    sx = x + (size - sw) / 2
    shackle.moveTo(sx, y + size - body_h)
    shackle.lineTo(sx, y + sw / 2)
    shackle.arcTo(QRectF(sx, y, sw, sw), 180, -180)
    shackle.lineTo(sx + sw, y + size - body_h)
    return path, shackle


def shield_path(x: float, y: float, size: float) -> QPainterPath:
    """A heater shield in a ``size``-square box at (x, y)."""
    w = size * 0.86
    left = x + (size - w) / 2
    path = QPainterPath()
    path.moveTo(left + w / 2, y)
    path.lineTo(left + w, y + size * 0.16)
    path.lineTo(left + w, y + size * 0.48)
    path.cubicTo(left + w, y + size * 0.78, left + w * 0.72, y + size * 0.92, left + w / 2, y + size)
    path.cubicTo(left + w * 0.28, y + size * 0.92, left, y + size * 0.78, left, y + size * 0.48)
    path.lineTo(left, y + size * 0.16)
    path.closeSubpath()
    return path
