"""One look for the wizard's read-only result tables (catalog digests, artefacts, PCR values)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget


def one_tab_stop(view: QAbstractItemView) -> None:
    """Tab leaves the table instead of walking its cells (the arrow keys move between them)."""
    view.setTabKeyNavigation(False)


def setup_readonly_table(
    table: QTableWidget,
    stretch_column: int,
    *,
    selection: QAbstractItemView.SelectionMode = QAbstractItemView.SelectionMode.SingleSelection,
    row_padding: int = 10,
) -> None:
    """Rows selectable but not editable, long values elided in the middle (digests keep both ends),
    columns sized to their contents except ``stretch_column``, which takes the rest; one Tab stop."""
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    one_tab_stop(table)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(selection)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    table.verticalHeader().hide()
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + row_padding)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(stretch_column, QHeaderView.ResizeMode.Stretch)
    header.setHighlightSections(False)
