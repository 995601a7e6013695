"""The Boot image page's "Kernel and initrd" box: where the template's UKI comes from.

The recipe's three UKI sources (:data:`app.template.recipe.UKI_SOURCES`) as radio buttons: a kernel of the
base image with the initrds the engine paired with it, kernel and initrd files, or a UKI already in the
image and what to do with it (:data:`~app.template.recipe.EXISTING_ACTIONS`). The box shows what the engine
found and what the user picked; the page turns that into the recipe's options.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from app.boot.pairing import KernelEntry
from app.boot.sources import BootFile
from app.gui.presentation import human_size
from app.gui.widgets.elided_label import StatusLine
from app.template.build.boot import ref_of
from app.template.recipe import EXISTING_ACTIONS, UKI_SOURCES


def _panel(parent: QWidget) -> tuple[QWidget, QGridLayout]:
    """An indented panel under its radio button."""
    panel = QWidget(parent)
    grid = QGridLayout(panel)
    grid.setContentsMargins(22, 0, 0, 0)
    grid.setVerticalSpacing(2)
    return panel, grid


class BootSourceBox(QGroupBox):
    """Image kernel | files | existing UKI, each with its panel. The page connects the file buttons."""

    #: The user changed the source, the kernel, the initrd files, the existing UKI or the action.
    edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle(self.tr("Kernel and initrd"))
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self._kernel_file: Path | None = None
        self.image_radio = QRadioButton(self.tr("From the base &image"), self)
        self.files_radio = QRadioButton(self.tr("From &files…"), self)
        self.uki_radio = QRadioButton(self.tr("E&xisting UKI in the image"), self)
        self.source_group = QButtonGroup(self)
        for i, radio in enumerate((self.image_radio, self.files_radio, self.uki_radio)):  # UKI_SOURCES' order
            self.source_group.addButton(radio, i)
        self.source_group.idToggled.connect(lambda _id, checked: self.edited.emit() if checked else None)

        # From the image: a kernel (with its initrds).
        self.kernel_combo = QComboBox(self)
        self.kernel_combo.setAccessibleName(self.tr("Kernel from the base image"))
        self.kernel_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.kernel_combo.setMinimumContentsLength(20)
        self.kernel_combo.currentIndexChanged.connect(self.edited)
        kernel_label = QLabel(self.tr("Ke&rnel:"), self)
        kernel_label.setBuddy(self.kernel_combo)
        # Two lines whatever the kernel's path: the box keeps its size, a longer path is elided.
        self.initrds_label = StatusLine(self, lines=2, elide=Qt.TextElideMode.ElideMiddle)
        self.initrds_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.image_panel, grid = _panel(self)
        grid.addWidget(kernel_label, 0, 0)
        grid.addWidget(self.kernel_combo, 0, 1)
        grid.addWidget(self.initrds_label, 1, 1)
        grid.setColumnStretch(1, 1)

        # From files.
        self.kernel_file_label = StatusLine(self, elide=Qt.TextElideMode.ElideMiddle)
        self.kernel_file_label.setFont(mono)
        self.kernel_file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.kernel_file_button = QPushButton(self.tr("C&hoose kernel…"), self)
        self.initrd_list = QListWidget(self)
        self.initrd_list.setAccessibleName(self.tr("Initrd files"))
        self.initrd_list.setFont(mono)
        self.initrd_list.setMaximumHeight(self.fontMetrics().height() * 3 + 10)
        self.initrd_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.add_initrd_button = QPushButton(self.tr("Add initr&d…"), self)
        self.remove_initrd_button = QPushButton(self.tr("Re&move"), self)
        self.remove_initrd_button.clicked.connect(self.remove_selected_initrd)
        self.files_panel, fgrid = _panel(self)
        fgrid.addWidget(self.kernel_file_button, 0, 0)
        fgrid.addWidget(self.kernel_file_label, 0, 1, 1, 2)
        fgrid.addWidget(self.add_initrd_button, 1, 0)
        fgrid.addWidget(self.initrd_list, 1, 1, 2, 2)
        fgrid.addWidget(self.remove_initrd_button, 2, 0, Qt.AlignmentFlag.AlignTop)
        fgrid.setColumnStretch(1, 1)

        # An existing UKI, and what to do with it.
        self.uki_combo = QComboBox(self)
        self.uki_combo.setAccessibleName(self.tr("Existing UKI"))
        self.uki_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.uki_combo.setMinimumContentsLength(20)
        self.uki_combo.currentIndexChanged.connect(self.edited)
        self.action_combo = QComboBox(self)
        self.action_combo.setAccessibleName(self.tr("What to do with the existing UKI"))
        labels = {
            "keep": self.tr("Keep as it is"),
            "resign": self.tr("Re-sign with the UEFI certificate"),
            "replace": self.tr("Replace with a new UKI"),
        }
        for action in EXISTING_ACTIONS:
            self.action_combo.addItem(labels[action], action)
        self.action_combo.setCurrentIndex(self.action_combo.findData("resign"))
        self.action_combo.currentIndexChanged.connect(self.edited)
        action_label = QLabel(self.tr("&Action:"), self)
        action_label.setBuddy(self.action_combo)
        self.uki_panel, ugrid = _panel(self)
        ugrid.addWidget(self.uki_combo, 0, 0, 1, 2)
        ugrid.addWidget(action_label, 1, 0)
        ugrid.addWidget(self.action_combo, 1, 1)
        ugrid.setColumnStretch(1, 1)

        column = QVBoxLayout(self)
        column.setSpacing(3)
        for radio, panel in ((self.image_radio, self.image_panel), (self.files_radio, self.files_panel),
                             (self.uki_radio, self.uki_panel)):  # fmt: skip
            column.addWidget(radio)
            column.addWidget(panel)

    # -- what the image offers ----------------------------------------------------------------------

    def set_found(self, kernels: Sequence[KernelEntry[BootFile]], ukis: Sequence[BootFile]) -> None:
        """Offer the image's kernels (with their initrds) and UKIs; the first of each is selected."""
        with QSignalBlocker(self.kernel_combo), QSignalBlocker(self.uki_combo):
            self.kernel_combo.clear()
            for entry in kernels:
                self.kernel_combo.addItem(entry.version or entry.kernel.path.rpartition("/")[2], entry)
                self.kernel_combo.setItemData(
                    self.kernel_combo.count() - 1, self._kernel_tooltip(entry), Qt.ItemDataRole.ToolTipRole
                )
            self.uki_combo.clear()
            for f in ukis:
                self.uki_combo.addItem(self._file_text(f), f)

    # -- the choice ---------------------------------------------------------------------------------

    def source(self) -> str:
        """One of :data:`UKI_SOURCES`."""
        return UKI_SOURCES[max(0, self.source_group.checkedId())]

    def set_source(self, source: str) -> None:
        self.source_group.button(UKI_SOURCES.index(source)).setChecked(True)

    def entry(self) -> KernelEntry[BootFile] | None:
        """The image's kernel chosen, with its initrds."""
        return self.kernel_combo.currentData()

    def select_kernel(self, ref: str | None) -> None:
        """Select the image's kernel ``"PARTNUM:/path"`` when it is offered."""
        for i in range(self.kernel_combo.count()):
            if ref is not None and ref_of(self.kernel_combo.itemData(i).kernel) == ref:
                self.kernel_combo.setCurrentIndex(i)

    def existing_uki(self) -> BootFile | None:
        return self.uki_combo.currentData()

    def select_uki(self, ref: str | None) -> None:
        for i in range(self.uki_combo.count()):
            if ref is not None and ref_of(self.uki_combo.itemData(i)) == ref:
                self.uki_combo.setCurrentIndex(i)

    def action(self) -> str:
        """One of :data:`EXISTING_ACTIONS`."""
        return str(self.action_combo.currentData())

    def set_action(self, action: str | None) -> None:
        self.action_combo.setCurrentIndex(max(0, self.action_combo.findData(action or "resign")))

    def kernel_file(self) -> Path | None:
        return self._kernel_file

    def set_kernel_file(self, path: Path | None) -> None:
        self._kernel_file = path
        self.kernel_file_label.setText(str(path) if path else self.tr("none chosen"))
        self.kernel_file_label.setToolTip(str(path or ""))

    def initrd_files(self) -> list[Path]:
        return [
            Path(self.initrd_list.item(i).data(Qt.ItemDataRole.UserRole))
            for i in range(self.initrd_list.count())
        ]

    def set_initrd_files(self, paths: Sequence[Path]) -> None:
        self.initrd_list.clear()
        for path in paths:
            self.add_initrd_file(path)

    def add_initrd_file(self, path: Path) -> None:
        item = QListWidgetItem(path.name)
        item.setData(Qt.ItemDataRole.UserRole, str(path))
        item.setToolTip(str(path))
        self.initrd_list.addItem(item)
        self.remove_initrd_button.setEnabled(True)

    def remove_selected_initrd(self) -> None:
        row = self.initrd_list.currentRow()
        if row >= 0:
            self.initrd_list.takeItem(row)
            self.edited.emit()

    # -- showing ------------------------------------------------------------------------------------

    def refresh(self, scanning: bool) -> None:
        """Show the panel of the chosen source, and what the chosen kernel brings."""
        has_kernels = self.kernel_combo.count() > 0
        self.image_radio.setEnabled(has_kernels)
        self.kernel_combo.setEnabled(has_kernels)
        self.uki_radio.setVisible(self.uki_combo.count() > 0)
        source = self.source()
        self.image_panel.setVisible(
            source == "image" or (source == "existing" and self.action() == "replace")
        )
        self.files_panel.setVisible(source == "files")
        self.uki_panel.setVisible(source == "existing")
        entry = self.entry()
        if scanning:
            self.initrds_label.setText(self.tr("Looking for kernels in the image…"))
        elif entry is None:
            self.initrds_label.setText(self.tr("No kernel found in the base image."))
        else:
            self.initrds_label.setText(self._entry_description(entry))
        self.initrds_label.setToolTip(self._kernel_tooltip(entry) if entry is not None else "")
        self.set_kernel_file(self._kernel_file)
        self.remove_initrd_button.setEnabled(self.initrd_list.count() > 0)

    @staticmethod
    def _file_text(f: BootFile) -> str:
        return f"{f.path} (partition {f.partition_number}, {human_size(f.size)})"

    def _kernel_tooltip(self, entry: KernelEntry[BootFile]) -> str:
        return "\n".join(self._file_text(f) for f in (entry.kernel, *entry.initrds))

    def _entry_description(self, entry: KernelEntry[BootFile]) -> str:
        """``Partition 2, /token/6.1.0/: linux + initrd`` (full paths for files elsewhere)."""
        directory, _, name = entry.kernel.path.rpartition("/")
        names = [name] + [
            f.path.rpartition("/")[2] if f.path.rpartition("/")[0] == directory else f.path
            for f in entry.initrds
        ]
        if not entry.initrds:
            names.append(self.tr("no initrd found"))
        return (
            self.tr("Partition %1, %2/: %3")
            .replace("%1", str(entry.kernel.partition_number))
            .replace("%2", directory)
            .replace("%3", " + ".join(names))
        )
