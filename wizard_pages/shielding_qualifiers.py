"""Shielding Data wizard, page 3: the volume ID qualifiers - which templates the data may be used with.

Each qualifier is read from a template's signed catalog: a ``.vsc`` file, or the template itself (its ESP is
read in the background). The list shows the template's name and version and who signed its catalog; a rule
per row says which versions qualify (Microsoft's *equals*, *greater than*, *greater than or equal*).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QSizePolicy,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from app.gui.shielding_state import QualifierEntry, ShieldingState
from app.gui.tasks import TaskRunner
from app.gui.widgets.status_note import NoteLabel
from app.gui.widgets.tables import setup_readonly_table
from app.shielding.qualifiers import RULES
from wizard_pages.shielding_common import QUALIFIER_FILTERS, ShieldingPage, read_qualifier

READ = "read"
RULE_LABELS = {
    "equals": "equals",
    "greater-than": "greater than",
    "greater-or-equal": "greater than or equal",
}


class Column:
    TEMPLATE, VERSION, RULE, SIGNER, SHA256 = range(5)


class ShieldingQualifiersPage(ShieldingPage):
    """The qualifiers table, Add from file…, Remove."""

    #: Reading a catalog ended (added, or refused inline).
    qualifierRead = Signal()

    def __init__(self, state: ShieldingState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("Volume ID qualifiers"))
        self.setSubTitle(
            self.tr(
                "Name the templates this data is for. A fabric opens it only to provision a VM from a "
                "template whose catalog has the same signer and name, and a version the rule admits."
            )
        )
        self._build_ui()

    def _build_ui(self) -> None:
        style = self.style()
        self.table = QTableWidget(0, 5, self)
        self.table.setObjectName("qualifierTable")
        self.table.setAccessibleName(self.tr("Volume ID qualifiers"))
        self.table.setHorizontalHeaderLabels(
            [self.tr("Template"), self.tr("Version"), self.tr("Rule"), self.tr("Catalog signer"),
             self.tr("Signer SHA-256")]
        )  # fmt: skip
        setup_readonly_table(self.table, Column.SHA256, row_padding=14)
        self.table.horizontalHeader().setSectionResizeMode(Column.SIGNER, QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(Column.SIGNER, 220)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.itemSelectionChanged.connect(self._update)

        self.add_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_FileDialogNewFolder), self.tr("&Add from file…"), self
        )
        self.add_button.setObjectName("addQualifier")
        self.add_button.setToolTip(self.tr("A template's catalog (.vsc) or the template itself"))
        self.add_button.clicked.connect(self.choose_source)
        self.remove_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_TrashIcon), self.tr("&Remove"), self
        )
        self.remove_button.setObjectName("removeQualifier")
        self.remove_button.clicked.connect(self.remove_selected)
        self.status = NoteLabel(self, name="qualifierStatus")
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addSpacing(8)
        buttons.addWidget(self.status, 1)

        layout = self.body_layout()
        layout.setSpacing(6)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.error_panel)

    # -- QWizardPage ------------------------------------------------------------------------------

    def initializePage(self) -> None:
        self.take_prefill()
        self._fill()

    def take_prefill(self) -> None:
        """Add the qualifier of the template the flow was opened on (once, in the background)."""
        prefill, self.state.prefill = self.state.prefill, None
        if prefill is not None:
            self.add_source(prefill)

    def isComplete(self) -> bool:
        return not self.is_busy() and bool(self.state.qualifiers)

    # -- actions ----------------------------------------------------------------------------------

    def choose_source(self) -> None:
        start = self.state.qualifiers[-1].source.parent if self.state.qualifiers else Path.home()
        self.file_dialog("qualifier", self.tr("Add the catalog or the template a qualifier names"), start,
                         self.add_source, filters=QUALIFIER_FILTERS)  # fmt: skip

    def add_source(self, path: str | Path) -> None:
        """Read ``path``'s signed catalog in the background and add its qualifier (rule: equals)."""
        self.error_panel.clear()
        self.run_task(READ, read_qualifier, Path(path), on_success=self._on_read, on_finished=self._on_done)
        self._update()

    def _on_read(self, entry: QualifierEntry) -> None:
        if any(e.qualifier == entry.qualifier for e in self.state.qualifiers):
            self.error_panel.show_error(
                self.tr("%1 is already in the list.").replace("%1", entry.qualifier.describe()),
                self.tr("Change its rule instead."),
            )
            return
        self.state.qualifiers.append(entry)
        self._fill()

    def _on_done(self) -> None:
        self._update()
        self.qualifierRead.emit()

    def remove_selected(self) -> None:
        row = self.table.currentRow()
        if 0 <= row < len(self.state.qualifiers):
            del self.state.qualifiers[row]
            self._fill()

    def set_rule(self, row: int, rule: str) -> None:
        entry = self.state.qualifiers[row]
        entry.qualifier = replace(entry.qualifier, rule=rule)
        self._update()

    # -- showing ----------------------------------------------------------------------------------

    def _fill(self) -> None:
        entries = self.state.qualifiers
        self.table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            q = entry.qualifier
            name = QTableWidgetItem(q.template_name)
            name.setToolTip(str(entry.source))
            signer = QTableWidgetItem(entry.signer_subject)
            signer.setToolTip(entry.signer_subject)
            sha = QTableWidgetItem(q.signer_sha256)
            sha.setToolTip(q.signer_sha256)
            for col, item in ((Column.TEMPLATE, name), (Column.VERSION, QTableWidgetItem(q.version)),
                              (Column.SIGNER, signer), (Column.SHA256, sha)):  # fmt: skip
                self.table.setItem(row, col, item)
            combo = QComboBox(self.table)
            combo.setObjectName(f"qualifierRule{row}")
            combo.setAccessibleName(self.tr("Rule for %1").replace("%1", q.template_name))
            for rule in RULES:
                combo.addItem(self.tr(RULE_LABELS.get(rule, rule)), rule)
            combo.setCurrentIndex(combo.findData(q.rule))
            combo.currentIndexChanged.connect(lambda _i, r=row, c=combo: self.set_rule(r, c.currentData()))
            self.table.setCellWidget(row, Column.RULE, combo)
        self.table.resizeColumnToContents(Column.RULE)
        self._update()

    def rule_combo(self, row: int) -> QComboBox:
        widget = self.table.cellWidget(row, Column.RULE)
        assert isinstance(widget, QComboBox)
        return widget

    def _update(self) -> None:
        reading = self.task(READ) is not None
        self.add_button.setEnabled(not reading)
        self.remove_button.setEnabled(not reading and self.table.currentRow() >= 0)
        if reading:
            self.status.set_note(self.tr("Reading the catalog…"), plain=True)
        elif not self.state.qualifiers:
            self.status.set_note(
                self.tr(
                    "Add at least one template or catalog: shielding data must name the templates it is for."
                ),  # fmt: skip
                problem=True,
            )
        else:
            lines = [e.qualifier.describe() for e in self.state.qualifiers]
            text = self.tr("Applies to a template when any of: %1").replace("%1", "; ".join(lines))
            self.status.set_note(text, plain=True)
        self.completeChanged.emit()
