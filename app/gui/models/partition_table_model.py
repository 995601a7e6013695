"""A table of a DiskLayout's partitions with a checkable Protect column."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication

from app.disk.model import DiskLayout, Partition
from app.gui.presentation import (
    content_label,
    human_size,
    not_protectable_reason,
    partition_tooltip,
    role_color,
)

_Index = QModelIndex | QPersistentModelIndex


class Column(IntEnum):
    PROTECT = 0
    NUMBER = 1
    NAME = 2
    TYPE = 3
    SIZE = 4
    CONTENT = 5
    FIRST_LBA = 6
    LAST_LBA = 7
    PARTITION_GUID = 8


class PartitionTableModel(QAbstractTableModel):
    """One row per partition, in the layout's order. The Protect column is the user's choice."""

    #: The set of protected partition numbers changed (by the user or by ``set_protected``).
    protectionChanged = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._layout: DiskLayout | None = None
        self._partitions: list[Partition] = []
        self._protected: set[int] = set()
        self._headers = {
            Column.PROTECT: self.tr("Protect"),
            Column.NUMBER: self.tr("#"),
            Column.NAME: self.tr("Name"),
            Column.TYPE: self.tr("Type"),
            Column.SIZE: self.tr("Size"),
            Column.CONTENT: self.tr("Content"),
            Column.FIRST_LBA: self.tr("First LBA"),
            Column.LAST_LBA: self.tr("Last LBA"),
            Column.PARTITION_GUID: self.tr("Partition GUID"),
        }

    # -- public API -------------------------------------------------------------------------------

    def set_disk_layout(self, layout: DiskLayout | None, protected: Iterable[int] | None = None) -> None:
        """Show ``layout``; ``protected`` defaults to each partition's ``protect_by_default``."""
        self.beginResetModel()
        self._layout = layout
        self._partitions = list(layout.partitions) if layout else []
        if protected is None:
            protected = (p.number for p in self._partitions if p.protectable and p.protect_by_default)
        self._protected = {n for n in protected if self._protectable(n)}
        self.endResetModel()
        self.protectionChanged.emit()

    def disk_layout(self) -> DiskLayout | None:
        return self._layout

    def protected_numbers(self) -> set[int]:
        return set(self._protected)

    def set_protected(self, number: int, protected: bool) -> bool:
        """Choose whether partition ``number`` is protected; False if it cannot be."""
        row = self.row_of(number)
        if row is None or not self._partitions[row].protectable:
            return False
        if (number in self._protected) == protected:
            return True
        (self._protected.add if protected else self._protected.discard)(number)
        first = self.index(row, 0)
        self.dataChanged.emit(first, self.index(row, self.columnCount() - 1))
        self.protectionChanged.emit()
        return True

    def partition(self, row: int) -> Partition:
        return self._partitions[row]

    def row_of(self, number: int) -> int | None:
        return next((i for i, p in enumerate(self._partitions) if p.number == number), None)

    def _protectable(self, number: int) -> bool:
        row = self.row_of(number)
        return row is not None and self._partitions[row].protectable

    # -- QAbstractTableModel ----------------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's idiom
        return 0 if parent.isValid() else len(self._partitions)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self._headers[Column(section)]
        horizontal_tip = orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole
        if horizontal_tip and section == Column.PROTECT:
            return self.tr("Encrypt this partition and list it in the signed volume catalog")
        return None

    def flags(self, index: _Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
        if index.column() == Column.PROTECT:
            if self._partitions[index.row()].protectable:
                flags |= Qt.ItemFlag.ItemIsUserCheckable
            else:
                flags &= ~Qt.ItemFlag.ItemIsEnabled  # drawn greyed; the tooltip says why
        return flags

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        p = self._partitions[index.row()]
        col = Column(index.column())
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(p, col)
        if role == Qt.ItemDataRole.CheckStateRole and col == Column.PROTECT:
            checked = p.number in self._protected
            return Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == Column.PROTECT:
                if not p.protectable:
                    return not_protectable_reason(p)
                return self.tr("Encrypt partition %1 and list it in the signed volume catalog").replace(
                    "%1", str(p.number)
                )
            return partition_tooltip(p, p.number in self._protected)
        if role == Qt.ItemDataRole.DecorationRole and col == Column.NUMBER:
            return role_color(p.role, QGuiApplication.palette())
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (
            Column.NUMBER,
            Column.SIZE,
            Column.FIRST_LBA,
            Column.LAST_LBA,
        ):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.FontRole and col == Column.PARTITION_GUID:
            return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        if role == Qt.ItemDataRole.AccessibleTextRole and col == Column.PROTECT:
            return self.tr("Protect partition %1").replace("%1", str(p.number))
        if role == Qt.ItemDataRole.UserRole:
            return p.number
        return None

    def _display(self, p: Partition, col: Column) -> str | None:
        if col == Column.PROTECT:
            return None
        return {
            Column.NUMBER: str(p.number),
            Column.NAME: p.name,
            Column.TYPE: p.type_name,
            Column.SIZE: human_size(p.size_bytes),
            Column.CONTENT: content_label(p),
            Column.FIRST_LBA: str(p.first_lba),
            Column.LAST_LBA: str(p.last_lba),
            Column.PARTITION_GUID: p.partition_guid,
        }[col]

    def setData(self, index: _Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid() or index.column() != Column.PROTECT or role != Qt.ItemDataRole.CheckStateRole:
            return False
        state = value if isinstance(value, Qt.CheckState) else Qt.CheckState(int(value))
        return self.set_protected(self._partitions[index.row()].number, state == Qt.CheckState.Checked)
