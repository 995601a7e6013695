"""Shielding Data wizard, page 6: generate - sign, encrypt and write the ``.shd`` in the background, then show
what was written (its clear header, read back from the file) and test it against a template.

*Test against a template…* is ``shieldwright shield test``: the template's (or a .vsc's) signed catalog is
read in the background and the data's qualifiers judged against it, one reason per qualifier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QPushButton, QStyle, QWidget

from app.gui.shielding_state import ShieldingState
from app.gui.tasks import TaskRunner
from app.gui.widgets.status_note import NoteLabel
from app.untrusted import printable
from wizard_pages.shielding_common import (
    QUALIFIER_FILTERS,
    Applicability,
    Generated,
    ShieldingPage,
    applies_to,
    generate,
)

GENERATE, TEST = "generate", "test"


class ShieldingGeneratePage(ShieldingPage):
    """Runs the generation, then shows the file's header summary; Test against a template…."""

    #: Generating ended (written, or refused inline).
    generateFinished = Signal()
    #: A test against a template ended.
    testFinished = Signal()

    def __init__(self, state: ShieldingState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("Generate"))
        self.setSubTitle(self.tr("The shielding data is signed, encrypted and written."))
        self.setFinalPage(True)
        self.test_result: Applicability | None = None
        style = self.style()
        self.status = NoteLabel(self, name="generateStatus", selectable=True)
        self.header_view = QPlainTextEdit(self)
        self.header_view.setObjectName("shdHeader")
        self.header_view.setReadOnly(True)
        self.header_view.setAccessibleName(self.tr("What the file says"))
        self.retry_button = QPushButton(self.tr("Generate &again"), self)
        self.retry_button.setObjectName("generateAgain")
        self.retry_button.clicked.connect(self.start)
        self.test_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DialogApplyButton),
            self.tr("&Test against a template…"),
            self,
        )
        self.test_button.setObjectName("testTemplate")
        self.test_button.setToolTip(self.tr("Whether a template (or its .vsc) qualifies for this data"))
        self.test_button.clicked.connect(self.choose_template)
        self.test_label = NoteLabel(self, name="testResult", selectable=True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.test_button)
        buttons.addWidget(self.retry_button)
        buttons.addStretch(1)
        layout = self.body_layout()
        layout.setSpacing(6)
        layout.addWidget(self.status)
        layout.addWidget(self.header_view, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.test_label)
        layout.addWidget(self.error_panel)

    # -- QWizardPage ------------------------------------------------------------------------------

    def initializePage(self) -> None:
        if self.state.written is None and self.task(GENERATE) is None:
            self.start()

    def isComplete(self) -> bool:
        return self.task(GENERATE) is None

    # -- generating -------------------------------------------------------------------------------

    def start(self) -> None:
        state = self.state
        owner = state.guardian(state.owner)
        if owner is None or state.output is None:
            self.error_panel.show_error(
                self.tr("No owner or no file chosen."), self.tr("Go back and choose.")
            )
            return
        self.error_panel.clear()
        qualifiers = [e.qualifier for e in state.qualifiers]
        self.run_task(GENERATE, generate, state.output, state.overwrite, owner, state.chosen_guardians(),
                      qualifiers, state.policy, state.payload(), on_success=self._on_generated,
                      on_finished=self._on_finished)  # fmt: skip
        self.status.set_note(self.tr("Signing and encrypting…"), plain=True)
        self._update()

    def _on_generated(self, generated: Generated) -> None:
        self.state.written, self.state.summary = generated.path, generated.data
        self.status.set_note(self.tr("Written: %1").replace("%1", str(generated.path)), plain=True)
        self.header_view.setPlainText("\n".join(self.header_lines(generated.data.header)))

    def _on_finished(self) -> None:
        if self.state.written is None:
            self.status.set_note(self.tr("Nothing was written."), problem=True)
        self._update()
        self.generateFinished.emit()

    def header_lines(self, header: dict[str, Any]) -> list[str]:
        """The clear header read back from the file, in the words of ``shield show``."""
        tr = self.tr
        owner = header.get("owner") or {}
        lines = [
            tr("Signature: valid, by the owner %1").replace("%1", printable(str(owner.get("subject", "")))),
            tr("Created: %1").replace("%1", printable(str(header.get("created", "")))),
            tr("Policy: %1").replace("%1", printable(str(header.get("policy", "")))),
            tr("Owner: %1 (signing %2)").replace("%1", printable(str(owner.get("name", ""))))
            .replace("%2", printable(str(owner.get("signing_sha256", "")))),
        ]  # fmt: skip
        for g in header.get("guardians", []):
            lines.append(tr("Guardian: %1: %2 (%3…)").replace("%1", printable(str(g.get("name"))))
                         .replace("%2", printable(str(g.get("subject"))))
                         .replace("%3", str(g.get("sha256", ""))[:16]))  # fmt: skip
        if self.state.summary is not None:
            for q in self.state.summary.qualifiers:
                lines.append(tr("Qualifier: %1").replace("%1", printable(q.describe())))
        items = ", ".join(printable(str(i)) for i in header.get("payload_items", []))
        lines.append(tr("Encrypted values: %1").replace("%1", items))
        return lines

    # -- testing ----------------------------------------------------------------------------------

    def choose_template(self) -> None:
        start = self.state.qualifiers[0].source.parent if self.state.qualifiers else Path.home()
        self.file_dialog("test", self.tr("Test the shielding data against a template"), start, self.test,
                         filters=QUALIFIER_FILTERS)  # fmt: skip

    def test(self, path: str | Path) -> None:
        data = self.state.summary
        if data is None:
            return
        self.error_panel.clear()
        self.test_result = None
        self.test_label.set_note(self.tr("Reading the template's catalog…"), plain=True)
        self.run_task(TEST, applies_to, data, Path(path), on_success=self._on_tested,
                      on_finished=self._on_test_finished)  # fmt: skip
        self._update()

    def _on_tested(self, result: Applicability) -> None:
        self.test_result = result
        head = (self.tr("✓ Applicable to %1 %2 (%3):") if result.applicable
                else self.tr("✗ NOT applicable to %1 %2 (%3):"))  # fmt: skip
        text = head.replace("%1", printable(result.name)).replace("%2", printable(result.version))
        text = text.replace("%3", result.template.name)
        reasons = "\n".join(f"  {printable(r)}" for r in result.reasons)
        self.test_label.set_note(f"{text}\n{reasons}", problem=not result.applicable, plain=True)

    def _on_test_finished(self) -> None:
        if self.test_result is None:
            self.test_label.set_note("")
        self._update()
        self.testFinished.emit()

    def _update(self) -> None:
        generating = self.task(GENERATE) is not None
        written = self.state.written is not None
        self.test_button.setEnabled(written and self.task(TEST) is None)
        self.retry_button.setVisible(not generating and not written)
        self.completeChanged.emit()
