"""The PCRs a policy may bind, side by side: a checkbox with each PCR's name, and in plain words what it holds
and what changes it (the engine's ``PCR_MEANINGS``; the widget states nothing itself)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QVBoxLayout, QWidget

from app.gui.widgets.adaptive_box import AdaptiveBox
from app.gui.widgets.status_note import NoteLabel


class PcrChecklist(AdaptiveBox):
    """One column per PCR: "PCR 4 · Boot applications" and its explanation underneath."""

    #: The user ticked or unticked a PCR.
    changed = Signal()

    def __init__(self, meanings: Mapping[int, tuple[str, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pcrChecklist")
        self.checks: dict[int, QCheckBox] = {}
        self.explanations: dict[int, NoteLabel] = {}
        row = self.box  # side by side; one under the other in a narrow window
        row.setSpacing(16)
        for pcr, (name, meaning) in sorted(meanings.items()):
            text = meaning[:1].upper() + meaning[1:]
            # The PCR's number is its mnemonic (Alt+4, Alt+7, Alt+1 for 11).
            check = QCheckBox(self.tr("PCR &%1 · %2").replace("%1", str(pcr)).replace("%2", name), self)
            check.setObjectName(f"pcr{pcr}Check")
            check.setToolTip(text)
            check.setAccessibleDescription(text)
            check.toggled.connect(self._on_toggled)
            explanation = NoteLabel(self, name=f"pcr{pcr}Meaning", text=text)
            explanation.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
            column = QVBoxLayout()
            column.setSpacing(2)
            column.addWidget(check)
            column.addWidget(explanation, 1)
            row.addLayout(column, 1)
            self.checks[pcr] = check
            self.explanations[pcr] = explanation
        self._syncing = False

    def set_checked(self, pcrs: Iterable[int]) -> None:
        """Tick exactly ``pcrs`` (without emitting ``changed``)."""
        chosen = set(pcrs)
        self._syncing = True
        try:
            for pcr, check in self.checks.items():
                check.setChecked(pcr in chosen)
        finally:
            self._syncing = False

    def checked(self) -> list[int]:
        """The ticked PCRs, in ascending order."""
        return [pcr for pcr, check in sorted(self.checks.items()) if check.isChecked()]

    def _on_toggled(self) -> None:
        if not self._syncing:
            self.changed.emit()
