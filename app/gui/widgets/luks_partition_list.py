"""The list of partitions that may become LUKS2 containers: which can, how much each grows, which are ticked.

The re-layout planner (:func:`app.luks.relayout.plan_relayout`, pure arithmetic, cheap enough for the GUI
thread) decides, with the engine's LUKS2 data offset; the list only shows its answers. A partition the
planner refuses (the ESP, one already encrypted, one too small) is greyed out with the reason and has no
checkbox.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from PySide6.QtCore import QCoreApplication, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTreeWidget, QTreeWidgetItem, QWidget

from app.disk.model import DiskLayout, Partition
from app.errors import ShieldwrightError
from app.gui.presentation import content_label, display_name, human_size, role_label
from app.luks.params import DEFAULT_DATA_OFFSET
from app.luks.relayout import (
    AlreadyEncryptedError,
    NotEncryptableError,
    PartitionTooSmallError,
    PlannedPartition,
    RelayoutError,
    RelayoutPlan,
    UnsupportedLayoutError,
    plan_relayout,
)


def _tr(text: str) -> str:
    return QCoreApplication.translate("LuksPartitionList", text)


def plan(layout: DiskLayout, numbers: Collection[int], sector_size: int) -> RelayoutPlan:
    """The re-layout that encrypts ``numbers`` (raises the planner's :class:`RelayoutError`)."""
    return plan_relayout(layout, set(numbers), DEFAULT_DATA_OFFSET, sector_size=sector_size)


@dataclass(frozen=True)
class PartitionOption:
    """One partition as the page offers it: encryptable (with its planned size) or not (with why)."""

    partition: Partition
    planned: PlannedPartition | None
    reason: str = ""
    details: str = ""

    @property
    def encryptable(self) -> bool:
        return self.planned is not None


def partition_options(
    layout: DiskLayout, sector_size: int
) -> tuple[list[PartitionOption], ShieldwrightError | None]:
    """Ask the re-layout planner about each partition alone; a disk-level refusal is returned separately."""
    options: list[PartitionOption] = []
    for p in layout.partitions:
        try:
            planned = plan(layout, {p.number}, sector_size)
        except UnsupportedLayoutError as exc:
            return [
                PartitionOption(q, None, _tr("The disk cannot be re-laid out")) for q in layout.partitions
            ], exc
        except RelayoutError as exc:
            if isinstance(exc, NotEncryptableError):
                reason = _tr("EFI System Partition: the firmware must read it")
            elif isinstance(exc, AlreadyEncryptedError):
                reason = _tr("Already %1: protected by the catalog only").replace("%1", p.content.upper())
            elif isinstance(exc, PartitionTooSmallError):
                reason = _tr("Too small to hold a protected volume")
            else:
                reason = exc.message
            details = exc.message[:1].upper() + exc.message[1:] + (f".\n{exc.hint}" if exc.hint else "")
            options.append(PartitionOption(p, None, reason, details))
            continue
        options.append(PartitionOption(p, planned.partition(p.number)))
    return options, None


class LuksPartitionList(QTreeWidget):
    """One row per partition, a checkbox on those that can be encrypted."""

    COL_NUMBER, COL_NAME, COL_TYPE, COL_SIZE, COL_ENCRYPTED, COL_NOTE = range(6)

    #: The user ticked or unticked a partition; the ticked numbers, sorted.
    checkedChanged = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("encryptPartitions")
        self.setAccessibleName(self.tr("Partitions to encrypt"))
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setHeaderLabels(
            [self.tr("#"), self.tr("Name"), self.tr("Type"), self.tr("Size"), self.tr("Encrypted size"),
             self.tr("Note")]
        )  # fmt: skip
        header = self.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(self.COL_NOTE, QHeaderView.ResizeMode.Stretch)
        self._options: dict[int, PartitionOption] = {}
        self._selected: set[int] = set()
        self._filling = False
        self.itemChanged.connect(self._on_item_changed)
        self.fit_height()

    def fill(
        self, layout: DiskLayout | None, sector_size: int, wanted: Collection[int], protected: Collection[int]
    ) -> tuple[list[int], ShieldwrightError | None]:
        """Show ``layout`` for ``sector_size``, ticking the partitions of ``wanted`` that can be encrypted.

        Returns the ticked numbers and the planner's refusal of the whole disk, if any. ``protected``
        (the Base image page's marks) only adds a note.
        """
        self._filling = True
        try:
            self.clear()
            self._options = {}
            options, disk_error = partition_options(layout, sector_size) if layout else ([], None)
            self._selected = {
                o.partition.number for o in options if o.encryptable and o.partition.number in wanted
            }
            for option in options:
                self._add_row(option, option.partition.number in protected)
        finally:
            self._filling = False
        self.fit_height()
        return sorted(self._selected), disk_error

    def fit_height(self) -> None:
        """As tall as its rows (3 to 6 of them, then it scrolls): the boxes below need the room."""
        rows = max(3, min(self.topLevelItemCount(), 6))
        row_height = self.sizeHintForRow(0) if self.topLevelItemCount() else 0
        row_height = max(row_height, self.fontMetrics().height() + 6)
        self.setFixedHeight(self.header().sizeHint().height() + rows * row_height + 2 * self.frameWidth() + 2)

    def item(self, number: int) -> QTreeWidgetItem | None:
        """The row of partition ``number``."""
        for i in range(self.topLevelItemCount()):
            it = self.topLevelItem(i)
            if it is not None and it.data(self.COL_NUMBER, Qt.ItemDataRole.UserRole) == number:
                return it
        return None

    def option(self, number: int) -> PartitionOption | None:
        return self._options.get(number)

    def _add_row(self, option: PartitionOption, protected: bool) -> None:
        p = option.partition
        self._options[p.number] = option
        item = QTreeWidgetItem(self)
        item.setData(self.COL_NUMBER, Qt.ItemDataRole.UserRole, p.number)
        item.setText(self.COL_NUMBER, str(p.number))
        item.setText(self.COL_NAME, display_name(p))
        item.setText(self.COL_TYPE, f"{role_label(p.role)} · {content_label(p)}")
        item.setText(self.COL_SIZE, human_size(p.size_bytes))
        item.setTextAlignment(self.COL_SIZE, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        planned = option.planned
        if planned is not None:
            item.setText(
                self.COL_ENCRYPTED,
                self.tr("%1 (+%2)")
                .replace("%1", human_size(planned.size_bytes))
                .replace("%2", human_size(planned.growth)),
            )
            item.setToolTip(
                self.COL_ENCRYPTED,
                self.tr("%1 of LUKS2 header in front of the %2 of encrypted data")
                .replace("%1", human_size(planned.data_offset))
                .replace("%2", human_size(planned.data_size)),
            )
            item.setFlags(
                Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsUserCheckable
            )
            checked = p.number in self._selected
            item.setCheckState(self.COL_NUMBER, Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            item.setText(self.COL_NOTE, self.tr("Marked protect on the Base image page") if protected else "")
        else:
            item.setText(self.COL_ENCRYPTED, "–")
            item.setText(self.COL_NOTE, option.reason)
            item.setFlags(Qt.ItemFlag.ItemIsSelectable)  # greyed out, no checkbox to tick
            item.setCheckState(self.COL_NUMBER, Qt.CheckState.Unchecked)
            for col in range(self.columnCount()):
                item.setToolTip(col, option.details or option.reason)
        item.setData(
            self.COL_NUMBER,
            Qt.ItemDataRole.AccessibleTextRole,
            self.tr("Partition %1, %2").replace("%1", str(p.number)).replace("%2", display_name(p)),
        )

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if self._filling or column != self.COL_NUMBER:
            return
        number = item.data(self.COL_NUMBER, Qt.ItemDataRole.UserRole)
        option = self._options.get(number)
        if option is None or not option.encryptable:  # never, whoever set the check state
            if item.checkState(self.COL_NUMBER) != Qt.CheckState.Unchecked:
                item.setCheckState(self.COL_NUMBER, Qt.CheckState.Unchecked)
            return
        if item.checkState(self.COL_NUMBER) == Qt.CheckState.Checked:
            self._selected.add(number)
        else:
            self._selected.discard(number)
        self.checkedChanged.emit(sorted(self._selected))
