"""Wizard page 1: choose the base image, see its partitions, choose which ones to protect.

The page never reads the image itself: ``inspect_image`` runs off the GUI thread, and the page shows the
DiskLayout it returns (or the error it raises, inline) and writes the image and the protected partitions
into the state.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QStyle,
    QTableView,
    QWidget,
)

from app.disk.image import SUFFIXES
from app.disk.layout import inspect_image
from app.disk.model import DiskLayout
from app.errors import ShieldwrightError
from app.findings import Severity
from app.gui.models.partition_table_model import Column, PartitionTableModel
from app.gui.page import WizardPage
from app.gui.presentation import human_size
from app.gui.state import WizardState
from app.gui.tasks import TaskRunner
from app.gui.widgets.busy import busy_bar
from app.gui.widgets.disk_layout_bar import DiskLayoutBar
from app.gui.widgets.disk_layout_legend import DiskLayoutLegend
from app.gui.widgets.elided_label import StatusLine
from app.gui.widgets.findings_list import FindingsList
from app.gui.widgets.tables import one_tab_stop

__all__ = ["BaseImagePage"]

log = logging.getLogger(__name__)

#: The file dialog's filters: every suffix the engine knows for an image (inputs are read by content).
IMAGE_FILTERS = (
    "Disk images (" + " ".join(f"*{suffix}" for suffix in SUFFIXES) + ")",
    "All files (*)",
)
#: The page's one background task and its one file dialog.
INSPECT_TASK = "inspect-image"
IMAGE_DIALOG = "image"


class BaseImagePage(WizardPage):
    """Open a base image and choose the partitions to protect."""

    #: An inspection ended (successfully or not) and the page shows its outcome.
    inspectionFinished = Signal()

    def __init__(self, state: WizardState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("Base image"))
        self.setSubTitle(
            self.tr(
                "Open the prepared disk image to turn into a template (raw, VHD, VHDX or qcow2), or drop "
                "it here. Check the partitions to protect: they will be encrypted and listed in the signed "
                "catalog."
            )
        )
        self._pending_path: Path | None = None
        #: Where *Open…* starts before an image is open (the frame sets the folder of the last one).
        self.image_directory: Path | None = None
        self._layout: DiskLayout | None = None
        self._syncing = False
        self.setAcceptDrops(True)
        self._build_ui()
        self._show_layout(None)

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        style = self.style()
        self.open_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DialogOpenButton), self.tr("&Open image…"), self
        )
        self.open_button.setToolTip(self.tr("Choose a disk image file (Ctrl+O)"))
        self.open_button.clicked.connect(self.choose_image)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Open), self, self.choose_image)

        self.busy_bar = busy_bar(self, self.tr("Inspecting image"), max_width=160)
        self.busy_label = QLabel(self.tr("Inspecting image…"), self)
        for w in (self.busy_bar, self.busy_label):
            w.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
            w.setVisible(False)

        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addSpacing(8)
        top.addWidget(self.busy_bar)
        top.addWidget(self.busy_label)
        top.addStretch(1)

        # File facts.
        self.path_value = StatusLine(self, elide=Qt.TextElideMode.ElideMiddle, name="imagePath")  # long paths
        self.format_value = QLabel(self)
        self.size_value = QLabel(self)
        self.guid_value = QLabel(self)
        facts = QGridLayout()
        facts.setHorizontalSpacing(10)
        facts.setVerticalSpacing(4)
        pairs = [
            (self.tr("File:"), self.path_value, 0, 0, 3),
            (self.tr("Format:"), self.format_value, 1, 0, 1),
            (self.tr("Virtual size:"), self.size_value, 1, 2, 1),
            (self.tr("Disk GUID:"), self.guid_value, 2, 0, 3),  # a row of its own: 800 px is not enough
        ]
        for caption, value, row, col, span in pairs:
            label = QLabel(caption, self)
            label.setBuddy(value)
            facts.addWidget(label, row, col, Qt.AlignmentFlag.AlignLeft)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setTextFormat(Qt.TextFormat.PlainText)
            facts.addWidget(value, row, col + 1, 1, span)
        facts.setColumnStretch(1, 1)
        facts.setColumnStretch(3, 2)

        self.bar = DiskLayoutBar(self)
        self.bar.partitionSelected.connect(self._on_bar_selected)
        self.legend = DiskLayoutLegend(self)

        self.model = PartitionTableModel(self)
        self.model.protectionChanged.connect(self._on_protection_changed)
        self.table = QTableView(self)
        self.table.setObjectName("partitionTable")
        self.table.setModel(self.model)
        self.table.setAccessibleName(self.tr("Partitions"))
        one_tab_stop(self.table)  # Tab moves on; the arrow keys walk the rows, Space ticks Protect
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setIconSize(QSize(12, 12))
        self.table.verticalHeader().hide()
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 10)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(Column.PARTITION_GUID, QHeaderView.ResizeMode.Stretch)
        header.setHighlightSections(False)
        self.table.selectionModel().currentRowChanged.connect(self._on_table_row_changed)

        self.findings_caption = QLabel(self.tr("&Findings"), self)
        self.findings = FindingsList(self)
        self.findings_caption.setBuddy(self.findings)
        partitions_caption = QLabel(self.tr("&Partitions"), self)
        partitions_caption.setBuddy(self.table)

        layout = self.body_layout()
        layout.setSpacing(8)
        layout.addLayout(top)
        layout.addLayout(facts)
        layout.addWidget(self.error_panel)
        layout.addSpacing(2)
        layout.addWidget(self.bar)
        layout.addWidget(self.legend)
        layout.addWidget(partitions_caption)
        layout.addWidget(self.table, 3)
        layout.addWidget(self.findings_caption)
        layout.addWidget(self.findings, 1)

        # Tab order: Open, the bar's segments (added as they appear), the table, the findings.
        QWidget.setTabOrder(self.open_button, self.table)
        QWidget.setTabOrder(self.table, self.findings)

    # -- opening ----------------------------------------------------------------------------------

    def choose_image(self) -> None:
        """Show a non-blocking file dialog; the chosen file is opened when the dialog closes."""
        start = self.state.image_path.parent if self.state.image_path else self.image_directory or Path.home()
        self.file_dialog(
            IMAGE_DIALOG, self.tr("Open base image"), start, self.open_image, filters=IMAGE_FILTERS
        )

    def open_image(self, path: str | Path) -> None:
        """Inspect ``path`` in the background; a newer request supersedes a running one."""
        path = Path(path)
        log.info("opening base image %s", path)
        self.cancel_task(INSPECT_TASK)
        self._pending_path = path
        self.error_panel.clear()
        self._show_layout(None)
        self.path_value.setText(str(path))
        self.run_task(
            INSPECT_TASK,
            inspect_image,
            str(path),
            on_success=self._on_inspected,
            on_failure=self._on_failed,
            on_finished=self._on_task_finished,
        )
        self._show_busy()

    def _on_inspected(self, layout: DiskLayout) -> None:
        self.state.set_image(self._pending_path, layout)
        self._show_layout(layout)

    def _on_failed(self, error: ShieldwrightError) -> None:
        self.state.set_image(None, None)
        self.show_error(error)

    def _on_task_finished(self) -> None:
        if self._layout is None:  # no layout shown: the image is not usable, whatever went wrong
            self.state.set_image(None, None)
        self._show_busy()
        self.inspectionFinished.emit()

    def _show_busy(self) -> None:
        busy = self.is_busy()
        self.busy_bar.setVisible(busy)
        self.busy_label.setVisible(busy)

    # -- showing ----------------------------------------------------------------------------------

    def _show_layout(self, layout: DiskLayout | None) -> None:
        self._layout = layout
        self.model.set_disk_layout(layout, self.state.protected if layout else ())
        self.bar.set_disk_layout(layout)
        self.bar.set_protected(self.model.protected_numbers())
        previous: QWidget = self.open_button
        for seg in self.bar.partition_segments():
            QWidget.setTabOrder(previous, seg)
            previous = seg
        QWidget.setTabOrder(previous, self.table)
        if layout is None:
            if not self.is_busy():
                self.path_value.setText(self.tr("none - open an image to begin"))
            for w in (self.format_value, self.size_value, self.guid_value):
                w.setText("–")
        else:
            self.path_value.setText(layout.path or str(self._pending_path))
            self.format_value.setText(layout.format.upper())
            self.size_value.setText(
                self.tr("%1 (%2 bytes)")
                .replace("%1", human_size(layout.virtual_size))
                .replace("%2", f"{layout.virtual_size:,}")
            )
            self.guid_value.setText(layout.disk_guid or self.tr("none"))
        self.findings.set_findings(layout.findings if layout is not None else None)
        errors = [f for f in layout.findings if f.severity is Severity.ERROR] if layout else []
        if errors:
            # Say why Next is disabled right where the user looks, not only in the findings list.
            more = len(errors) - 1
            self.error_panel.show_error(
                errors[0].message,
                self.tr("This image cannot be made into a template as it is.")
                + " "
                + (
                    self.tr("%n more problem(s) are listed under Findings.", "", more)
                    if more
                    else self.tr("Fix the image, or open another one.")
                ),
            )
        if layout is not None and layout.partitions:
            self.table.selectRow(0)
        self.completeChanged.emit()

    # -- selection and protection sync ------------------------------------------------------------

    def _on_bar_selected(self, number: int) -> None:
        row = self.model.row_of(number)
        if row is None or self._syncing:
            return
        self._syncing = True
        try:
            index = self.model.index(row, Column.NUMBER)
            self.table.selectionModel().setCurrentIndex(
                index,
                QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
            )
            self.table.scrollTo(index)
        finally:
            self._syncing = False

    def _on_table_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.bar.select_partition(self.model.partition(current.row()).number)
        else:
            self.bar.select_partition(None)

    def _on_protection_changed(self) -> None:
        numbers = self.model.protected_numbers()
        if self._layout is not None:
            self.state.protected = numbers
        self.bar.set_protected(numbers)

    # -- QWizardPage ------------------------------------------------------------------------------

    def isComplete(self) -> bool:
        return self._layout is not None and not self.is_busy() and not self._layout.has_errors

    # -- drag and drop ----------------------------------------------------------------------------

    @staticmethod
    def _dropped_file(event: QDragEnterEvent | QDropEvent) -> Path | None:
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if len(urls) != 1 or not urls[0].isLocalFile():
            return None
        return Path(urls[0].toLocalFile())

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_file(event) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_file(event)
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_image(path)
