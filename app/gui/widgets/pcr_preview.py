"""The predicted PCR 11 values of a UKI, per boot phase, for one PCR bank at a time.

Pure presentation of ``predict_pcr11``'s result ``{bank: {phase_path: hex}}``: the widget never hashes.
Values are monospace and middle-elided (the full value is in the tooltip); Ctrl+C or the context menu
copies the full values of the selected rows. Values of a UKI that no longer matches the inputs are dimmed
(:meth:`PcrPreview.set_stale`), and the note line says so. The explanation and the note keep their size
whatever they say, so the table never moves.
"""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QFontDatabase, QGuiApplication, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.boot.pcr import BANKS as PCR_BANKS
from app.boot.pcr import DEFAULT_PHASES as PHASES
from app.gui.widgets.elided_label import StatusLine
from app.gui.widgets.status_note import PROBLEM_COLOR
from app.gui.widgets.tables import setup_readonly_table

#: The banks the engine predicts, in the order offered: sha256 first (what TPM2 policies use).
BANKS = ("sha256", *(b for b in PCR_BANKS if b != "sha256"))
BANK_LABELS = {"sha256": "SHA-256", "sha1": "SHA-1", "sha384": "SHA-384", "sha512": "SHA-512"}


class PcrPreview(QWidget):
    """Bank selector, a plain-language explanation, and a phase → value table."""

    #: The bank shown changed (the combo's data, e.g. "sha256").
    bankChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pcrPreview")
        self.setAccessibleName(self.tr("PCR 11 prediction"))
        self._predictions: dict[str, dict[str, str]] = {}
        self._measured: list[str] | None = None
        self._unavailable: str | None = None
        #: The values shown are of a UKI that no longer matches the inputs (dimmed).
        self.stale = False

        self.caption = QLabel(self.tr("PCR 11 &prediction"), self)
        font = self.caption.font()
        font.setBold(True)
        self.caption.setFont(font)
        self.bank_combo = QComboBox(self)
        self.bank_combo.setAccessibleName(self.tr("PCR bank"))
        self.bank_combo.setToolTip(self.tr("The hash algorithm of the PCR bank to show"))
        for bank in BANKS:
            self.bank_combo.addItem(BANK_LABELS[bank], bank)
        bank_label = QLabel(self.tr("Ban&k:"), self)
        bank_label.setBuddy(self.bank_combo)
        self.bank_combo.currentIndexChanged.connect(self._on_bank_changed)

        self.explanation = QLabel(
            self.tr(
                "PCR 11 records what systemd-stub measures of the UKI. An initrd without systemd sees the "
                "first value; a systemd initrd extends PCR 11 at each boot phase and reaches the values "
                "below it."
            ),
            self,
        )
        self.explanation.setWordWrap(True)
        self.explanation.setTextFormat(Qt.TextFormat.PlainText)
        self.explanation.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        # Which sections were measured, that the values are stale, or why there are none: two lines kept.
        self.note = StatusLine(self, lines=2, name="pcrNote")
        self.note.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.table = QTableWidget(0, 2, self)
        self.table.setObjectName("pcrTable")
        self.table.setAccessibleName(self.tr("Predicted PCR 11 values"))
        self.table.setHorizontalHeaderLabels([self.tr("Boot phase"), self.tr("PCR 11 value")])
        setup_readonly_table(
            self.table, 1, selection=QAbstractItemView.SelectionMode.ExtendedSelection, row_padding=8
        )
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.copy_action = QAction(self.tr("&Copy value"), self.table)
        self.copy_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Copy))
        self.copy_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.copy_action.triggered.connect(self.copy_selected)
        self.table.addAction(self.copy_action)
        self.caption.setBuddy(self.table)

        top = QHBoxLayout()
        top.addWidget(self.caption)
        top.addStretch(1)
        top.addWidget(bank_label)
        top.addWidget(self.bank_combo)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.explanation)
        layout.addWidget(self.note)
        layout.addWidget(self.table, 1)
        QWidget.setTabOrder(self.bank_combo, self.table)
        self.set_predictions(None)

    # -- content ----------------------------------------------------------------------------------

    def set_predictions(self, predictions: Mapping[str, Mapping[str, str]] | None) -> None:
        """Show ``{bank: {phase_path: hex}}`` (None: an empty table); new values are current."""
        self._predictions = {b: dict(p) for b, p in (predictions or {}).items()}
        self._unavailable = None
        self.stale = False
        for i in range(self.bank_combo.count()):  # offer only the banks that were predicted
            bank = self.bank_combo.itemData(i)
            item = self.bank_combo.model().item(i)  # type: ignore[attr-defined]
            item.setEnabled(not self._predictions or bank in self._predictions)
        self._fill()
        self._show_note()

    def set_measured_sections(self, names: list[str] | None) -> None:
        """Name the sections this UKI's stub measures (when they are known)."""
        self._measured = list(names) if names else None
        self._show_note()

    def show_unavailable(self, message: str) -> None:
        """Say why there are no values (e.g. the stub's version is unknown) instead of an empty table."""
        self._unavailable = message
        self._show_note()

    def unavailable_text(self) -> str | None:
        """Why there are no values, when the owner said so."""
        return self._unavailable

    def set_stale(self, stale: bool) -> None:
        """The values are of a UKI that no longer matches the inputs: dim them (and say so) until new ones
        come; the full values stay in the tooltips and the copy."""
        if stale == self.stale:
            return
        self.stale = stale
        self._fill()
        self._show_note()

    def _show_note(self) -> None:
        if self._unavailable is not None:
            text, problem = self._unavailable, True
        elif self.stale and self._predictions:
            text, problem = self.tr("Out of date: these values are of the last UKI built. Rebuild it."), False
        elif self._measured:
            text, problem = self.tr("Measured sections: %1").replace("%1", " ".join(self._measured)), False
        else:
            text, problem = "", False
        self.note.setText(text)
        self.note.setStyleSheet(f"color: {PROBLEM_COLOR};" if problem else "")
        stale = self.stale and not problem and bool(text)  # said in the text colour: it matters now
        self.note.setForegroundRole(
            QPalette.ColorRole.WindowText if stale else QPalette.ColorRole.PlaceholderText
        )
        self._describe()

    def _describe(self) -> None:
        """The accessible description: what the table shows now (the bank and the boot phases, that the values
        are stale), or why there are none."""
        phases = [phase for phase, _value in self.shown_rows()]
        if phases:
            after = [phase.rpartition(":")[2] or self.tr("the stub only") for phase in phases]
            text = self.tr("Predicted PCR 11 values of the UKI in the %1 bank, after: %2")
            text = text.replace("%1", self.bank_combo.currentText()).replace("%2", ", ".join(after))
            if self.stale:
                text += ". " + self.tr("Out of date: rebuild the UKI")
        else:
            text = self._unavailable or self.tr("No predicted values yet: they come with the UKI")
        self.setAccessibleDescription(text)

    def bank(self) -> str:
        return str(self.bank_combo.currentData())

    def set_bank(self, bank: str) -> None:
        index = self.bank_combo.findData(bank)
        if index < 0:
            raise ValueError(f"unknown PCR bank {bank!r}")
        self.bank_combo.setCurrentIndex(index)

    def value(self, phase: str) -> str | None:
        """The full value shown for ``phase`` in the current bank."""
        return self._predictions.get(self.bank(), {}).get(phase)

    def shown_rows(self) -> list[tuple[str, str]]:
        """(phase path, full value) of every row, top to bottom."""
        return [(self._cell(r, 0), self._cell(r, 1)) for r in range(self.table.rowCount())]

    def _cell(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return "" if item is None else str(item.data(Qt.ItemDataRole.UserRole))

    def phase_label(self, phase: str) -> str:
        """``none (stub only)``, ``enter-initrd``, ``…:leave-initrd``: paths are cumulative; the last word."""
        if phase == "":
            return self.tr("none (stub only)")
        head, _, last = phase.rpartition(":")
        return f"…:{last}" if head else last

    def phase_tooltip(self, phase: str) -> str:
        if phase == "":
            return self.tr(
                "After systemd-stub measured the UKI's sections: what an initrd without systemd sees, "
                "and what the TPM shows until the initrd extends PCR 11."
            )
        words = phase.split(":")
        return self.tr("After a systemd initrd extended PCR 11 with: %1").replace("%1", ", ".join(words))

    def _fill(self) -> None:
        values = self._predictions.get(self.bank(), {})
        phases = [p for p in PHASES if p in values] + [p for p in values if p not in PHASES]
        self.table.setRowCount(len(phases))
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        for row, phase in enumerate(phases):
            name = QTableWidgetItem(self.phase_label(phase))
            name.setData(Qt.ItemDataRole.UserRole, phase)
            name.setToolTip(self.phase_tooltip(phase))
            if phase:
                name.setFont(mono)
            value = QTableWidgetItem(values[phase])
            value.setData(Qt.ItemDataRole.UserRole, values[phase])
            value.setFont(mono)
            value.setToolTip(values[phase])
            value.setData(
                Qt.ItemDataRole.AccessibleTextRole,
                (
                    self.tr("Out of date: PCR 11 after %1: %2")
                    if self.stale
                    else self.tr("PCR 11 after %1: %2")
                )
                .replace("%1", self.phase_label(phase))
                .replace("%2", values[phase]),
            )
            for item in (name, value):
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                if self.stale:  # the text colour of disabled text: readable, clearly not current
                    item.setForeground(
                        self.palette().brush(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
                    )
            self.table.setItem(row, 0, name)
            self.table.setItem(row, 1, value)
        self.copy_action.setEnabled(bool(phases))
        self._fit_height(len(phases))

    def _fit_height(self, rows: int) -> None:
        """Exactly as tall as the rows (at least the five default phases), so no space is wasted."""
        rows = max(rows, len(PHASES))
        height = self.table.horizontalHeader().sizeHint().height()
        height += rows * self.table.verticalHeader().defaultSectionSize() + 2 * self.table.frameWidth()
        self.table.setFixedHeight(height)

    def _on_bank_changed(self) -> None:
        self._fill()
        self._describe()
        self.bankChanged.emit(self.bank())

    def copy_selected(self) -> str:
        """Copy the full values of the selected rows (or all rows) to the clipboard, one per line."""
        rows = sorted({i.row() for i in self.table.selectedIndexes()}) or range(self.table.rowCount())
        shown = self.shown_rows()
        text = "\n".join(
            f"{shown[r][1]}  {shown[r][0] or '-'}" if len(rows) > 1 else shown[r][1] for r in rows
        )
        if text:
            QGuiApplication.clipboard().setText(text)
        return text
