"""The target firmware of a PCR policy in one row: the profile kind, its file, the bank; and the boot path.

The choices are the recipe's keys (``pcr.firmware_vars`` / ``pcr.firmware_log`` / ``pcr.firmware_certs``,
``pcr.bank``, ``boot.install_removable``): their help texts and the banks offered come from the options
table, so the page, the recipe and the ``build`` flags say the same. The owner reacts to the signals and
asks for files; the row only shows what it is told.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.gui.widgets.adaptive_box import AdaptiveBox
from app.gui.widgets.elided_label import ElidedLabel
from app.gui.widgets.pcr_preview import BANK_LABELS
from app.template.options import OPTIONS, Option, option

#: The firmware profile keys of the recipe, in the options table's order; the profile kind is the key's
#: suffix (``pcr.firmware_vars`` → ``vars``), as ``pcr predict`` spells it.
FIRMWARE_OPTIONS: tuple[Option, ...] = tuple(o for o in OPTIONS if o.key.startswith("pcr.firmware_"))


def profile_kind(opt: Option) -> str:
    return opt.name.removeprefix("firmware_")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


class FirmwareProfileRow(QWidget):
    """``Target firmware: [kind ▾] path [Choose…] [New store…]  Bank: [▾]`` and the install-removable
    checkbox."""

    #: The user picked a profile kind in the combo (None: no profile).
    kindActivated = Signal(object)
    #: Choose… was clicked.
    chooseClicked = Signal()
    #: New store… was clicked.
    newStoreClicked = Signal()
    #: The user chose another bank.
    bankChosen = Signal(str)
    #: The user ticked or unticked "install the UKI at the removable path".
    removableToggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._syncing = False
        self.profile_combo = QComboBox(self)
        self.profile_combo.setObjectName("firmwareProfile")
        self.profile_combo.addItem(self.tr("None — predict PCR 11 only"), None)
        tip = self.tr("Without the target's firmware only PCR 11 (the UKI) is predicted")
        self.profile_combo.setItemData(0, tip, Qt.ItemDataRole.ToolTipRole)
        names = {"vars": self.tr("OVMF variable store"), "log": self.tr("Event log of the target"),
                 "certs": self.tr("Certificates (PK, KEK, db, dbx)")}  # fmt: skip
        for opt in FIRMWARE_OPTIONS:
            self.profile_combo.addItem(names.get(profile_kind(opt), opt.key), profile_kind(opt))
            index = self.profile_combo.count() - 1
            self.profile_combo.setItemData(index, _sentence(opt.help), Qt.ItemDataRole.ToolTipRole)
        self.profile_combo.activated.connect(
            lambda i: self.kindActivated.emit(self.profile_combo.itemData(i))
        )
        profile_label = QLabel(self.tr("Target &firmware:"), self)
        profile_label.setBuddy(self.profile_combo)
        self.path_label = ElidedLabel(self)
        self.path_label.setObjectName("firmwarePath")
        self.choose_button = QPushButton(self.tr("C&hoose…"), self)
        self.choose_button.setToolTip(self.tr("Choose the file (or folder) of the firmware profile"))
        self.choose_button.clicked.connect(self.chooseClicked)
        self.new_store_button = QPushButton(self.tr("Ne&w store…"), self)
        self.new_store_button.setObjectName("newStore")
        self.new_store_button.setToolTip(
            self.tr("Make an OVMF variable store with the template's certificate in db, and predict on it")
        )
        self.new_store_button.clicked.connect(self.newStoreClicked)

        self.bank_combo = QComboBox(self)
        self.bank_combo.setObjectName("pcrBank")
        bank = option("pcr.bank")
        for name in bank.choices or ():
            self.bank_combo.addItem(BANK_LABELS.get(name, name), name)
        self.bank_combo.setToolTip(_sentence(bank.help))
        self.bank_combo.currentIndexChanged.connect(self._on_bank_changed)
        bank_label = QLabel(self.tr("Ban&k:"), self)
        bank_label.setBuddy(self.bank_combo)

        removable = option("boot.install_removable")
        self.removable_check = QCheckBox(
            self.tr("&Install the UKI as \\EFI\\BOOT\\BOOTX64.EFI too (for images without shim)"), self
        )
        self.removable_check.setObjectName("installRemovable")
        # The why in the tooltip: the checkbox cannot wrap, and must fit an 800 px window.
        self.removable_check.setToolTip(
            _sentence(removable.help) + self.tr(": the firmware then boots it directly")
        )
        self.removable_check.toggled.connect(self._on_removable_toggled)

        kind_part = QHBoxLayout()
        kind_part.addWidget(profile_label)
        kind_part.addWidget(self.profile_combo)
        kind_part.addWidget(self.path_label, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.choose_button)
        buttons.addWidget(self.new_store_button)
        buttons.addStretch(1)  # under the file, the buttons stay at the left
        profile_row = AdaptiveBox(self)  # the buttons go under the file in a narrow window
        profile_row.box.addLayout(kind_part, 1)
        profile_row.box.addLayout(buttons)
        bank_row = QHBoxLayout()
        bank_row.setContentsMargins(12, 0, 0, 0)
        bank_row.addWidget(bank_label)
        bank_row.addWidget(self.bank_combo)
        bank_row.addStretch(1)  # under the profile, the bank stays at the left, as narrow as its texts
        row = AdaptiveBox(self)  # the bank goes under the profile in a narrow window
        row.box.addWidget(profile_row, 1)
        row.box.addLayout(bank_row)
        row.box.setAlignment(bank_row, Qt.AlignmentFlag.AlignTop)  # level with the profile's first line
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(5)
        layout.addWidget(row)
        layout.addWidget(self.removable_check)

    def show_choice(self, kind: str | None, path: Path | None, bank: str, removable: bool) -> None:
        """Show the profile ``kind`` and its file, the bank and the removable path (no signals)."""
        self._syncing = True
        try:
            self.profile_combo.setCurrentIndex(max(self.profile_combo.findData(kind), 0))
            index = self.bank_combo.findData(bank)
            if index >= 0:
                self.bank_combo.setCurrentIndex(index)
            self.removable_check.setChecked(removable)
        finally:
            self._syncing = False
        self.path_label.set_full_text(str(path) if path is not None else "")
        self.choose_button.setEnabled(kind is not None)

    def kind(self) -> str | None:
        """The profile kind the combo shows."""
        return self.profile_combo.currentData()

    def _on_bank_changed(self) -> None:
        if not self._syncing:
            self.bankChosen.emit(str(self.bank_combo.currentData()))

    def _on_removable_toggled(self, checked: bool) -> None:
        if not self._syncing:
            self.removableToggled.emit(checked)
