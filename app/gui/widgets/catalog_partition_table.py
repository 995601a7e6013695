"""The protected partitions of a catalog: number, name, size, block count and, once computed, the digest.

Before a catalog is computed the block count is the engine's :func:`app.catalog.format.block_count` for
the chosen block size and the digest says "not computed"; afterwards both are what the engine decoded
from the signed catalog (:class:`app.gui.state.CatalogPartitionSummary`). The full digest is kept in each
cell (the view elides it in the middle) for copying and for screen readers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QPalette
from PySide6.QtWidgets import QSizePolicy, QTableWidget, QTableWidgetItem, QWidget

from app.catalog.format import block_count
from app.disk.model import Partition
from app.gui.presentation import display_name, human_size
from app.gui.state import CatalogPartitionSummary
from app.gui.widgets.tables import setup_readonly_table


class CatalogPartitionTable(QTableWidget):
    """One row per protected partition; :meth:`show_partitions` fills it."""

    NUMBER, NAME, SIZE, BLOCKS, DIGEST = range(5)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 5, parent)
        self.setObjectName("catalogPartitions")
        self.setAccessibleName(self.tr("Protected partitions"))
        self.setHorizontalHeaderLabels(
            [self.tr("#"), self.tr("Name"), self.tr("Size"), self.tr("Blocks"), self.tr("Digest (SHA-256)")]
        )
        setup_readonly_table(self, self.DIGEST)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)

    def show_partitions(
        self,
        partitions: Sequence[Partition],
        computed: Mapping[int, CatalogPartitionSummary],
        block_size: int,
    ) -> None:
        """One row per partition; ``computed`` holds the catalog's entries (empty before computing)."""
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        self.setRowCount(len(partitions))
        for row, p in enumerate(partitions):
            result = computed.get(p.number)
            blocks = result.block_count if result else block_count(p.size_bytes, block_size)
            size = QTableWidgetItem(human_size(p.size_bytes))
            size.setToolTip(self.tr("%1 bytes").replace("%1", f"{p.size_bytes:,}"))
            size.setTextAlignment(right)
            count = QTableWidgetItem(f"{blocks:,}")
            count.setTextAlignment(right)
            if result:
                digest = QTableWidgetItem(result.digest)
                digest.setToolTip(result.digest)
                digest.setData(Qt.ItemDataRole.UserRole, result.digest)
                digest.setFont(self._mono)
                digest.setData(Qt.ItemDataRole.AccessibleTextRole, result.digest)
            else:
                digest = QTableWidgetItem(self.tr("not computed"))
                digest.setForeground(self.palette().brush(QPalette.ColorRole.PlaceholderText))
            number = QTableWidgetItem(str(p.number))
            number.setTextAlignment(right)
            for col, item in enumerate((number, QTableWidgetItem(display_name(p)), size, count, digest)):
                self.setItem(row, col, item)

    def partition_digests(self) -> dict[int, str]:
        """The full digests shown, by partition number (empty until computed)."""
        out: dict[int, str] = {}
        for row in range(self.rowCount()):
            digest, number = self.item(row, self.DIGEST), self.item(row, self.NUMBER)
            if digest is not None and number is not None and digest.data(Qt.ItemDataRole.UserRole):
                out[int(number.text())] = digest.data(Qt.ItemDataRole.UserRole)
        return out
