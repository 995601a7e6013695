"""A table of a UKI's PE sections as ``inspect_uki`` reports them (name, address, sizes, SHA-256).

Sections of a UKI that no longer matches the inputs are drawn dimmed (:meth:`UkiSectionsModel.set_dimmed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QFontDatabase

from app.boot.uki import UkiSection
from app.gui.presentation import human_size

_Index = QModelIndex | QPersistentModelIndex

#: What the sections mean, for the Section column's tooltip (UAPI UKI specification).
SECTION_MEANINGS = {
    ".linux": "The Linux kernel (bzImage)",
    ".initrd": "The initial RAM disk(s), concatenated",
    ".cmdline": "The kernel command line",
    ".osrel": "The os-release file: which OS this UKI boots",
    ".uname": "The kernel version (uname -r)",
    ".sbat": "SBAT revocation metadata (stub and UKI lines)",
    ".splash": "The boot splash image",
    ".dtb": "A devicetree",
    ".pcrpkey": "The public key for signed PCR 11 policies",
    ".pcrsig": "Signed PCR 11 policies (not measured)",
    ".ucode": "CPU microcode initrd",
}


class Column(IntEnum):
    NAME = 0
    ADDRESS = 1
    VIRTUAL_SIZE = 2
    RAW_SIZE = 3
    SHA256 = 4


def sha256_text(value: str) -> str:
    """Lower-case hex."""
    return value.lower()


class UkiSectionsModel(QAbstractTableModel):
    """One row per PE section, in file order. ``UserRole`` gives the exact number (or the full hash)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._sections: list[UkiSection] = []
        self._dimmed: QBrush | None = None
        self._headers = {
            Column.NAME: self.tr("Section"),
            Column.ADDRESS: self.tr("Address"),
            Column.VIRTUAL_SIZE: self.tr("Virtual size"),
            Column.RAW_SIZE: self.tr("Raw size"),
            Column.SHA256: self.tr("SHA-256"),
        }

    def set_sections(self, sections: Sequence[UkiSection] | None) -> None:
        self.beginResetModel()
        self._sections = list(sections or ())
        self.endResetModel()

    def set_dimmed(self, brush: QBrush | None) -> None:
        """Draw every row with ``brush`` (the sections are of a stale UKI), or normally (None)."""
        if (brush is None) == (self._dimmed is None):
            return
        self._dimmed = brush
        if self._sections:
            last = self.index(len(self._sections) - 1, len(Column) - 1)
            self.dataChanged.emit(self.index(0, 0), last, [Qt.ItemDataRole.ForegroundRole])

    @property
    def dimmed(self) -> bool:
        return self._dimmed is not None

    def section(self, row: int) -> UkiSection:
        return self._sections[row]

    def names(self) -> list[str]:
        return [s.name for s in self._sections]

    # -- QAbstractTableModel ----------------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's idiom
        return 0 if parent.isValid() else len(self._sections)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(Column)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self._headers[Column(section)]
        if role == Qt.ItemDataRole.ToolTipRole:
            return {
                Column.ADDRESS: self.tr(
                    "Virtual address: where the section is loaded, relative to the image base"
                ),
                Column.VIRTUAL_SIZE: self.tr("The section's data length: what the stub measures"),
                Column.RAW_SIZE: self.tr("Bytes in the file (rounded up to the file alignment)"),
                Column.SHA256: self.tr("SHA-256 of the section's data (virtual size bytes)"),
            }.get(Column(section))
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        s = self._sections[index.row()]
        col = Column(index.column())
        if role == Qt.ItemDataRole.DisplayRole:
            return {
                Column.NAME: s.name,
                Column.ADDRESS: f"0x{s.virtual_address:x}",
                Column.VIRTUAL_SIZE: human_size(s.virtual_size),
                Column.RAW_SIZE: human_size(s.raw_size),
                Column.SHA256: sha256_text(s.sha256),
            }[col]
        if role == Qt.ItemDataRole.UserRole:
            return {
                Column.NAME: s.name,
                Column.ADDRESS: s.virtual_address,
                Column.VIRTUAL_SIZE: s.virtual_size,
                Column.RAW_SIZE: s.raw_size,
                Column.SHA256: sha256_text(s.sha256),
            }[col]
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == Column.NAME:
                meaning = SECTION_MEANINGS.get(s.name)
                lines = [self.tr(meaning)] if meaning else []
                if s.measured is not None:
                    lines.append(
                        self.tr("Measured into PCR 11") if s.measured else self.tr("Not measured into PCR 11")
                    )
                return "\n".join(lines) or None
            if col in (Column.VIRTUAL_SIZE, Column.RAW_SIZE):
                size = s.virtual_size if col == Column.VIRTUAL_SIZE else s.raw_size
                return self.tr("%1 bytes").replace("%1", f"{size:,}")
            if col == Column.SHA256:
                return sha256_text(s.sha256)
            return None
        if role == Qt.ItemDataRole.ForegroundRole:
            return self._dimmed
        if role == Qt.ItemDataRole.FontRole and col in (Column.NAME, Column.ADDRESS, Column.SHA256):
            return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (
            Column.ADDRESS,
            Column.VIRTUAL_SIZE,
            Column.RAW_SIZE,
        ):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None
