"""The small indeterminate "working…" bar shown while a background task runs."""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar, QSizePolicy, QWidget


def busy_bar(
    parent: QWidget,
    accessible_name: str,
    *,
    max_width: int | None = None,
    max_height: int | None = None,
    compact: bool = True,
) -> QProgressBar:
    """An indeterminate bar without text; ``compact`` keeps it from stretching across its row."""
    bar = QProgressBar(parent)
    bar.setRange(0, 0)
    bar.setTextVisible(False)
    bar.setAccessibleName(accessible_name)
    if max_width is not None:
        bar.setMaximumWidth(max_width)
    if max_height is not None:
        bar.setMaximumHeight(max_height)
    if compact:
        bar.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
    return bar
