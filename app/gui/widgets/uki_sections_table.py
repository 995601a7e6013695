"""The table of a UKI's PE sections (a view of :class:`~app.gui.models.uki_sections_model.UkiSectionsModel`).

Read-only rows, one line each, hashes elided in the middle (the full value is in the tooltip).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from app.gui.models.uki_sections_model import Column, UkiSectionsModel
from app.gui.widgets.tables import one_tab_stop


class UkiSectionsTable(QTableView):
    """Sections in file order: name, address, sizes, and the SHA-256 column taking the spare width."""

    def __init__(self, model: UkiSectionsModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ukiSections")
        self.setModel(model)
        one_tab_stop(self)
        self.setAccessibleName(self.tr("UKI sections"))
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(Column.SHA256, QHeaderView.ResizeMode.Stretch)
        header.setHighlightSections(False)
