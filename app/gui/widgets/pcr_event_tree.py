"""The PCRs of a policy as a tree: one row per PCR (its name, what changes it, its predicted value), under it
the events that extend it, in order (type, description, digest, the component that measures it), and - after
a comparison with a real event log - whether each event matches, differs, is missing or is extra.

Pure presentation of rows the page made from the engine's results: the widget never hashes or compares.
Digests and values are monospace and elided in the middle (the full value is in the tooltip); Ctrl+C or the
context menu copies the full value of the current row. The comparison is spelt out in a Status column with
an icon, never by colour alone; PCRs left out of the policy are greyed and say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import (
    QAction,
    QFontDatabase,
    QFontMetrics,
    QGuiApplication,
    QIcon,
    QKeyEvent,
    QKeySequence,
    QPalette,
)
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QStyle, QTreeWidget, QTreeWidgetItem, QWidget

#: Comparison verdicts (app.measure.compare's statuses).
STATUSES = ("match", "differs", "missing", "extra")


def _tr(text: str) -> str:
    return QCoreApplication.translate("PcrEventTree", text)


def status_text(status: str) -> str:
    """How a comparison verdict reads in the Status column."""
    return {
        "match": _tr("matches"),
        "differs": _tr("differs"),
        "missing": _tr("missing"),
        "extra": _tr("extra"),
    }[status]


def status_explanation(status: str) -> str:
    return {
        "match": _tr("The event log has this event with this digest."),
        "differs": _tr("The event log has this event with another digest."),
        "missing": _tr("Missing from the event log: the log does not have this event."),
        "extra": _tr("Extra: the event log has this event, the prediction does not."),
    }[status]


class Column(IntEnum):
    EVENT = 0
    DESCRIPTION = 1
    DIGEST = 2
    SOURCE = 3
    STATUS = 4


@dataclass(frozen=True)
class EventRow:
    """One event as the tree shows it: the predicted event, or the logged one for ``extra``."""

    type_name: str
    description: str
    #: Hex digest in the bank shown (None: the event has no digest in that bank).
    digest: str | None
    source: str
    #: The comparison's verdict (None: not compared).
    status: str | None = None
    #: The log's digest (``differs``, ``extra``), and its description when it reads otherwise.
    logged_digest: str | None = None
    logged_description: str = ""


@dataclass(frozen=True)
class PcrGroup:
    """One PCR: its name and meaning, its predicted value (or why there is none), and its events."""

    pcr: int
    name: str
    meaning: str
    value: str | None
    #: Shown instead of a value when there is none (e.g. "needs a firmware profile"), with its tooltip.
    note: str = ""
    note_tooltip: str = ""
    in_policy: bool = True
    events: tuple[EventRow, ...] = ()
    #: The comparison's verdict for the whole PCR ("match" or "differs"; None: not compared).
    status: str | None = None
    #: The PCR value the compared log replays to.
    logged_value: str | None = None


class PcrEventTree(QTreeWidget):
    """PCR rows with their events as children; expanded PCRs stay expanded across updates."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pcrEventTree")
        self.setAccessibleName(self.tr("PCRs and their events"))
        self.setColumnCount(len(Column))
        self.setHeaderLabels(
            [self.tr("PCR / event"), self.tr("Description"), self.tr("Digest"), self.tr("Source"),
             self.tr("Status")]
        )  # fmt: skip
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setAlternatingRowColors(True)
        self.setUniformRowHeights(True)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setRootIsDecorated(True)
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(Column.DESCRIPTION, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(40)
        metrics = self.fontMetrics()
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        mono_width = QFontMetrics(self._mono).horizontalAdvance("0" * 15)
        # Room for the longest event type one level down (elided, with a tooltip, when narrower).
        widest = metrics.horizontalAdvance("EV_EFI_BOOT_SERVICES_APPLICATION")
        self.setColumnWidth(Column.EVENT, widest + 2 * self.indentation() + 12)
        self.setColumnWidth(Column.DIGEST, mono_width + 8)
        self.setColumnWidth(Column.SOURCE, metrics.horizontalAdvance("firmware") + 18)
        self.setColumnWidth(Column.STATUS, metrics.horizontalAdvance(status_text("match")) + 40)

        self.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.copy_action = QAction(self.tr("&Copy value"), self)
        self.copy_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Copy))
        self.copy_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.copy_action.triggered.connect(self.copy_current)
        self.addAction(self.copy_action)

        self._groups: list[PcrGroup] = []
        self._collapsed: set[int] = set()
        self.itemCollapsed.connect(self._remember_collapsed)
        self.itemExpanded.connect(self._remember_expanded)
        self._describe()

    # -- content ----------------------------------------------------------------------------------

    def set_bank_label(self, label: str) -> None:
        """Name the bank of the Digest column ("SHA-256")."""
        self.headerItem().setText(Column.DIGEST, self.tr("Digest (%1)").replace("%1", label))

    def show_groups(self, groups: Sequence[PcrGroup]) -> None:
        """Replace the rows (expansion and the current PCR are kept)."""
        current = self.current_pcr()
        self._groups = list(groups)
        self.setUpdatesEnabled(False)
        try:
            self.clear()
            for group in groups:
                item = self._pcr_item(group)
                self.addTopLevelItem(item)
                for row in group.events:
                    item.addChild(self._event_item(row, group.in_policy))
                item.setExpanded(group.pcr not in self._collapsed)
                if group.pcr == current:
                    self.setCurrentItem(item)
        finally:
            self.setUpdatesEnabled(True)
        self.copy_action.setEnabled(bool(groups))
        self._describe()

    def _describe(self) -> None:
        """The accessible description: which PCRs the rows are, and how a comparison came out."""
        if not self._groups:
            self.setAccessibleDescription(self.tr("No PCRs to show"))
            return
        text = self.tr("PCRs %1, each with its predicted value and, under it, the events that extend it")
        text = text.replace("%1", ", ".join(str(g.pcr) for g in self._groups))
        compared = [g for g in self._groups if g.status is not None]
        if compared:
            differ = ", ".join(str(g.pcr) for g in compared if g.status != "match")
            text += ". " + (
                self.tr("Compared with an event log, which differs in PCR %1").replace("%1", differ)
                if differ
                else self.tr("Compared with an event log: every PCR matches")
            )
        self.setAccessibleDescription(text)

    def _pcr_item(self, group: PcrGroup) -> QTreeWidgetItem:
        item = QTreeWidgetItem()
        title = self.tr("PCR %1 · %2").replace("%1", str(group.pcr)).replace("%2", group.name)
        item.setText(Column.EVENT, title)
        item.setToolTip(Column.EVENT, f"{title}: {group.meaning}")
        font = item.font(Column.EVENT)
        font.setBold(True)
        item.setFont(Column.EVENT, font)
        # The meaning is in the checklist beside the tree, and in the tooltips here; the column stays short.
        item.setText(Column.DESCRIPTION, "" if group.in_policy else self.tr("not in the policy"))
        item.setToolTip(Column.DESCRIPTION, group.meaning)
        if group.value is not None:
            item.setText(Column.DIGEST, group.value)
            item.setFont(Column.DIGEST, self._mono)
            tip = self.tr("Predicted PCR %1: %2").replace("%1", str(group.pcr)).replace("%2", group.value)
            if group.logged_value is not None:
                tip += "\n" + self.tr("The event log replays to: %1").replace("%1", group.logged_value)
            item.setToolTip(Column.DIGEST, tip)
            item.setData(Column.DIGEST, Qt.ItemDataRole.UserRole, group.value)
        else:
            item.setText(Column.DIGEST, group.note)
            item.setToolTip(Column.DIGEST, group.note_tooltip or group.note)
        item.setData(Column.EVENT, Qt.ItemDataRole.UserRole, group.pcr)
        if group.status is not None:
            self._set_status(item, group.status, pcr_level=True)
        spoken = f"{title}. {group.value or group.note}"
        if not group.in_policy:
            spoken += ". " + self.tr("Not in the policy")
        if group.status is not None:
            spoken += f". {status_text(group.status)}"
        item.setData(Column.EVENT, Qt.ItemDataRole.AccessibleTextRole, spoken)
        if not group.in_policy:
            self._dim(item)
        return item

    def _event_item(self, row: EventRow, in_policy: bool) -> QTreeWidgetItem:
        item = QTreeWidgetItem()
        item.setText(Column.EVENT, row.type_name)
        item.setToolTip(Column.EVENT, row.type_name)
        description = row.description
        item.setText(Column.DESCRIPTION, description)
        tip = description
        if row.logged_description and row.logged_description != description:
            tip += "\n" + self.tr("In the log: %1").replace("%1", row.logged_description)
        item.setToolTip(Column.DESCRIPTION, tip)
        digest = row.digest if row.digest is not None else row.logged_digest
        item.setText(Column.DIGEST, digest or "—")
        item.setFont(Column.DIGEST, self._mono)
        digest_tip = digest or self.tr("no digest in this bank")
        if row.status == "differs" and row.logged_digest is not None:
            digest_tip = self.tr("Predicted: %1\nIn the log: %2").replace("%1", row.digest or "—")
            digest_tip = digest_tip.replace("%2", row.logged_digest)
        elif row.status == "extra":
            digest_tip = self.tr("In the log: %1").replace("%1", row.logged_digest or "—")
        item.setToolTip(Column.DIGEST, digest_tip)
        item.setData(Column.DIGEST, Qt.ItemDataRole.UserRole, digest)
        item.setText(Column.SOURCE, row.source)
        item.setToolTip(Column.SOURCE, self.tr("Measured by: %1").replace("%1", row.source))
        if row.status is not None:
            self._set_status(item, row.status, pcr_level=False)
        if not in_policy:
            self._dim(item)
        return item

    def _set_status(self, item: QTreeWidgetItem, status: str, *, pcr_level: bool) -> None:
        text = status_text(status)
        item.setText(Column.STATUS, text)
        item.setIcon(Column.STATUS, self.status_icon(status))
        item.setToolTip(
            Column.STATUS,
            self.tr("Every event matches the log.") if pcr_level and status == "match"
            else self.tr("Some events differ from the log.") if pcr_level
            else status_explanation(status),
        )  # fmt: skip
        item.setData(Column.STATUS, Qt.ItemDataRole.UserRole, status)

    def status_icon(self, status: str) -> QIcon:
        pixmap = {
            "match": QStyle.StandardPixmap.SP_DialogApplyButton,
            "differs": QStyle.StandardPixmap.SP_MessageBoxWarning,
            "missing": QStyle.StandardPixmap.SP_MessageBoxCritical,
            "extra": QStyle.StandardPixmap.SP_MessageBoxInformation,
        }[status]
        return self.style().standardIcon(pixmap)

    def _dim(self, item: QTreeWidgetItem) -> None:
        brush = self.palette().brush(QPalette.ColorGroup.Active, QPalette.ColorRole.PlaceholderText)
        for column in Column:
            item.setForeground(column, brush)

    # -- expansion --------------------------------------------------------------------------------

    def _remember_collapsed(self, item: QTreeWidgetItem) -> None:
        pcr = item.data(Column.EVENT, Qt.ItemDataRole.UserRole)
        if item.parent() is None and pcr is not None:
            self._collapsed.add(int(pcr))

    def _remember_expanded(self, item: QTreeWidgetItem) -> None:
        pcr = item.data(Column.EVENT, Qt.ItemDataRole.UserRole)
        if item.parent() is None and pcr is not None:
            self._collapsed.discard(int(pcr))

    # -- reading back (copy, tests, the screenshot tool) ---------------------------------------------

    def _top_items(self) -> list[QTreeWidgetItem]:
        return [item for i in range(self.topLevelItemCount()) if (item := self.topLevelItem(i)) is not None]

    def pcr_item(self, pcr: int) -> QTreeWidgetItem | None:
        return next(
            (i for i in self._top_items() if i.data(Column.EVENT, Qt.ItemDataRole.UserRole) == pcr), None
        )

    def pcrs(self) -> list[int]:
        """The PCR rows, top to bottom."""
        return [int(item.data(Column.EVENT, Qt.ItemDataRole.UserRole)) for item in self._top_items()]

    def group(self, pcr: int) -> PcrGroup | None:
        return next((g for g in self._groups if g.pcr == pcr), None)

    def event_texts(self, pcr: int) -> list[tuple[str, str, str, str, str]]:
        """(type, description, full digest, source, status text) of ``pcr``'s event rows, in order."""
        item = self.pcr_item(pcr)
        children = [] if item is None else [c for i in range(item.childCount()) if (c := item.child(i))]
        role = Qt.ItemDataRole.UserRole
        return [
            (c.text(Column.EVENT), c.text(Column.DESCRIPTION), c.data(Column.DIGEST, role) or "",
             c.text(Column.SOURCE), c.text(Column.STATUS))
            for c in children
        ]  # fmt: skip

    def current_pcr(self) -> int | None:
        item = self.currentItem()
        while item is not None and item.parent() is not None:
            item = item.parent()
        return None if item is None else int(item.data(Column.EVENT, Qt.ItemDataRole.UserRole))

    def keyPressEvent(self, event: QKeyEvent) -> None:
        # The item view's own Copy would take the first column's text: copy the full value instead.
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copy_current()
            event.accept()
            return
        super().keyPressEvent(event)

    def copy_current(self) -> str:
        """Copy the full digest (or PCR value) of the current row to the clipboard."""
        item = self.currentItem()
        value = item.data(Column.DIGEST, Qt.ItemDataRole.UserRole) if item is not None else None
        if value:
            QGuiApplication.clipboard().setText(str(value))
        return str(value or "")
