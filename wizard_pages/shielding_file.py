"""Shielding Data wizard, page 1: the ``.shd`` file to write and the policy (Microsoft's *Shielded* or
*Encryption supported*), each explained in plain words.

An existing file is replaced only after the page asked, inline.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QWidget,
)

from app.gui.file_dialogs import SHD_FILTERS
from app.gui.shielding_state import ShieldingState
from app.gui.tasks import TaskRunner
from app.gui.widgets.review_inline_question import InlineQuestion
from app.gui.widgets.status_note import NoteLabel
from app.shielding.shd import POLICIES
from wizard_pages.shielding_common import ShieldingPage


class ShieldingFilePage(ShieldingPage):
    """The output file (with an inline replace question) and the policy."""

    def __init__(self, state: ShieldingState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("Shielding data file and policy"))
        self.setSubTitle(
            self.tr(
                "Shielding data carries a template's provisioning passphrase and the VM's specialization "
                "values, encrypted to the fabrics you choose and signed by you, the owner."
            )
        )
        self._replace_ok: Path | None = None
        self._build_ui()

    def _build_ui(self) -> None:
        self.output_edit = QLineEdit(self)
        self.output_edit.setObjectName("shieldingOutput")
        self.output_edit.setAccessibleName(self.tr("Shielding data file"))
        self.output_edit.setPlaceholderText(self.tr("/path/to/DATA.shd"))
        self.output_edit.textEdited.connect(lambda text: self.set_output(text, typed=True))
        self.browse_button = QPushButton(self.tr("&Browse…"), self)
        self.browse_button.clicked.connect(self.choose_output)
        self.replace_panel = InlineQuestion(self.tr("&Replace"), self.tr("Choose an&other…"), self)
        self.replace_panel.setObjectName("replaceShd")
        self.replace_panel.accepted.connect(self.confirm_replace)
        self.replace_panel.rejected.connect(self.choose_output)
        row = QHBoxLayout()
        row.addWidget(self.output_edit, 1)
        row.addWidget(self.browse_button)
        caption = QLabel(self.tr("&File:"), self)
        caption.setBuddy(self.output_edit)

        explanations = {
            "shielded": (
                self.tr("&Shielded"),
                self.tr(
                    "The fabric may run the VM only as a shielded VM: its disks and state stay encrypted, "
                    "fabric admins get no console, no debugger and no way to read its memory or vTPM. "
                    "Choose this unless you need the fabric's help to repair the VM."
                ),
            ),
            "encryption-supported": (
                self.tr("&Encryption supported"),
                self.tr(
                    "The VM's disks and vTPM are encrypted the same way, but fabric admins keep their "
                    "console and troubleshooting access. For VMs you trust the fabric to look after."
                ),
            ),
        }
        self.policy_group = QButtonGroup(self)
        self.policy_buttons: dict[str, QRadioButton] = {}
        policies = QGridLayout()
        policies.setHorizontalSpacing(10)
        policies.setVerticalSpacing(2)
        for row_no, policy in enumerate(POLICIES):
            label, text = explanations.get(policy, (policy, ""))
            button = QRadioButton(label, self)
            button.setObjectName(f"policy-{policy}")
            button.toggled.connect(lambda on, p=policy: self._on_policy(p) if on else None)
            self.policy_group.addButton(button)
            self.policy_buttons[policy] = button
            policies.addWidget(button, 2 * row_no, 0)
            policies.addWidget(NoteLabel(self, text=text), 2 * row_no + 1, 0)
            policies.setRowMinimumHeight(2 * row_no + 1, 0)
        self.policy_buttons.get(self.state.policy, next(iter(self.policy_buttons.values()))).setChecked(True)

        policy_caption = QLabel(self.tr("Policy"), self)
        font = policy_caption.font()
        font.setBold(True)
        policy_caption.setFont(font)

        layout = self.body_layout()
        layout.setSpacing(8)
        top = QHBoxLayout()
        top.addWidget(caption)
        top.addLayout(row, 1)
        layout.addLayout(top)
        layout.addWidget(self.replace_panel)
        layout.addSpacing(10)
        layout.addWidget(policy_caption)
        layout.addLayout(policies)
        layout.addWidget(self.error_panel)
        layout.addStretch(1)

    # -- QWizardPage ------------------------------------------------------------------------------

    def initializePage(self) -> None:
        if self.state.output is None:
            self.state.output = Path.home() / "shielding-data.shd"
        self._show()

    def isComplete(self) -> bool:
        output = self.state.output
        if output is None or not output.name or output.is_dir():
            return False
        return not output.exists() or self._replace_ok == output

    def validatePage(self) -> bool:
        self.state.overwrite = self.state.output is not None and self._replace_ok == self.state.output
        self._show()
        return self.isComplete()

    # -- actions ----------------------------------------------------------------------------------

    def _on_policy(self, policy: str) -> None:
        self.state.policy = policy

    def choose_output(self) -> None:
        self.replace_panel.hide()
        current = self.state.output
        start = current.parent if current is not None else Path.home()
        self.file_dialog("output", self.tr("Write the shielding data to"), start, self.set_output, save=True,
                         filters=SHD_FILTERS, select=current.name if current else None,
                         confirm_overwrite=False)  # fmt: skip

    def set_output(self, path: str | Path, *, typed: bool = False) -> None:
        text = str(path).strip()
        self.state.output = Path(text).expanduser() if text else None
        self._show(typed=typed)

    def confirm_replace(self) -> None:
        self._replace_ok = self.state.output
        self._show()

    def _show(self, *, typed: bool = False) -> None:
        output = self.state.output
        if not typed:
            self.output_edit.setText(str(output) if output else "")
        if output is not None and output.is_file() and self._replace_ok != output:
            question = self.tr("%1 already exists. Replace it with the new shielding data?")
            if typed:  # keep the focus where the user types
                self.replace_panel.label.setText(question.replace("%1", str(output)))
                self.replace_panel.show()
            else:
                self.replace_panel.ask(question.replace("%1", str(output)))
        else:
            self.replace_panel.hide()
        self.completeChanged.emit()
