"""Provision wizard, page 4: the template's provisioning passphrase, keep it or not, and the VM disk to write.

The passphrase is typed into a password field and held only in memory (:class:`ProvisionState`, wiped when
the wizard closes or the disk is written); it is never logged. The output is a new file: an existing one is
replaced only after the page asked, inline (the engine refuses it otherwise). This is the commit page:
*Provision* starts the work.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QGridLayout, QLabel, QLineEdit, QWidget, QWizard

from app.gui.provision_state import ProvisionState
from app.gui.tasks import TaskRunner
from app.gui.widgets.review_inline_question import InlineQuestion
from app.gui.widgets.review_output_field import OutputFileField
from app.gui.widgets.status_note import NoteLabel
from app.template.recipe import OUTPUT_FORMATS
from wizard_pages.provision_common import ProvisionPage
from wizard_pages.review_summary import extension, format_for_path, format_label, with_format_suffix

#: The format list's first entry: the engine's default (the template's format when it can be written).
SAME_FORMAT = ""


class ProvisionOutputPage(ProvisionPage):
    """Passphrase, keep-passphrase, output path and format (with an inline replace question)."""

    def __init__(self, state: ProvisionState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("Passphrase and output"))
        self.setSubTitle(
            self.tr(
                "The passphrase the template was built with opens its containers once, to add the vTPM's "
                "keyslot. The template itself is never changed: the VM disk is a new file."
            )
        )
        self.setCommitPage(True)
        self.setButtonText(QWizard.WizardButton.CommitButton, self.tr("&Provision"))
        #: The output path the user chose (None: the default beside the template).
        self._chosen_output: Path | None = None
        #: The existing file the user agreed to replace.
        self._replace_ok: Path | None = None
        self._build_ui()

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.passphrase_edit = QLineEdit(self)
        self.passphrase_edit.setObjectName("provisioningPassphrase")
        self.passphrase_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase_edit.setAccessibleName(self.tr("Provisioning passphrase"))
        self.passphrase_edit.textChanged.connect(self._on_passphrase_changed)
        self.passphrase_hint = NoteLabel(
            self, name="passphraseHint",
            text=self.tr("Used once, in memory: never saved or logged, and wiped when the disk is written."),
        )  # fmt: skip

        self.keep_check = QCheckBox(self.tr("&Keep the provisioning passphrase"), self)
        self.keep_check.setObjectName("keepPassphrase")
        self.keep_check.setChecked(self.state.keep_passphrase)
        self.keep_check.toggled.connect(self._on_keep_toggled)
        self.keep_hint = NoteLabel(
            self, name="keepHint",
            text=self.tr("Off: its keyslot is removed, so the well-known passphrase no longer opens this "
                         "VM's disk (a recovery key's keyslot stays)."),
        )  # fmt: skip

        self.output_field = OutputFileField(
            [(self.tr("Same as the template"), SAME_FORMAT)] + [(format_label(f), f) for f in OUTPUT_FORMATS],
            self,
        )
        self.output_field.setObjectName("provisionOutput")
        self.output_field.changeRequested.connect(self.choose_output)
        self.output_field.formatChosen.connect(self._on_format_chosen)
        self.replace_panel = InlineQuestion(self.tr("&Replace"), self.tr("Choose an&other…"), self)
        self.replace_panel.setObjectName("replaceOutput")
        self.replace_panel.accepted.connect(self.confirm_replace)
        self.replace_panel.rejected.connect(self.choose_output)

        caption = QLabel(self.tr("Provisioning p&assphrase:"), self)
        caption.setBuddy(self.passphrase_edit)
        out_caption = QLabel(self.tr("VM &disk:"), self)
        out_caption.setBuddy(self.output_field.change_button)
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        grid.addWidget(caption, 0, 0)
        grid.addWidget(self.passphrase_edit, 0, 1)
        grid.addWidget(self.passphrase_hint, 1, 1)
        grid.setRowMinimumHeight(2, 8)
        grid.addWidget(self.keep_check, 3, 1)
        grid.addWidget(self.keep_hint, 4, 1)
        grid.setRowMinimumHeight(5, 14)
        grid.addWidget(out_caption, 6, 0)
        grid.addWidget(self.output_field, 6, 1)
        grid.addWidget(self.replace_panel, 7, 1)
        grid.setColumnStretch(1, 1)

        self.summary_label = NoteLabel(self, name="provisionSummary", selectable=True)
        self.summary_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        layout = self.body_layout()
        layout.setSpacing(8)
        layout.addLayout(grid)
        layout.addSpacing(8)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.error_panel)
        layout.addStretch(1)

    # -- QWizardPage ------------------------------------------------------------------------------

    def initializePage(self) -> None:
        if self._chosen_output is None:
            self.state.output = self._default_output()
        self._show()
        self.passphrase_edit.setFocus()

    def isComplete(self) -> bool:
        output = self.state.output
        if not self.state.passphrase or output is None:
            return False
        return not output.exists() or self._replace_ok == output

    def validatePage(self) -> bool:
        """*Provision*: the choices are taken as they stand (the output re-checked: it may have appeared)."""
        output = self.state.output
        if output is not None and output.exists() and self._replace_ok != output:
            self._show()
            return False
        self.state.overwrite = output is not None and self._replace_ok == output
        return self.isComplete()

    # -- passphrase -------------------------------------------------------------------------------

    def _on_passphrase_changed(self, text: str) -> None:
        self.state.set_passphrase(text)
        self.completeChanged.emit()

    def _on_keep_toggled(self, checked: bool) -> None:
        self.state.keep_passphrase = checked
        self._show()

    def clear_secrets(self) -> None:
        """Empty the password field (best effort: Qt keeps its own copies)."""
        self.passphrase_edit.clear()

    # -- output -----------------------------------------------------------------------------------

    def _default_output(self) -> Path | None:
        """``<template>-vm<ext>`` beside the template (``-vm-2``… when taken)."""
        template = self.state.template
        if template is None:
            return None
        fmt = self.state.out_format
        suffix = "." + extension(fmt) if fmt else template.suffix
        base, n = template.with_name(f"{template.stem}-vm{suffix}"), 1
        candidate = base
        while candidate.exists():
            n += 1
            candidate = template.with_name(f"{template.stem}-vm-{n}{suffix}")
        return candidate

    def choose_output(self) -> None:
        """A non-blocking Save dialog for the VM disk (the page asks itself when the file exists)."""
        self.replace_panel.hide()
        current = self.state.output
        start = current.parent if current is not None else Path.home()
        self.file_dialog("output", self.tr("Write the VM disk to"), start, self.set_output, save=True,
                         select=current.name if current else None, confirm_overwrite=False)  # fmt: skip

    def set_output(self, path: str | Path) -> None:
        """Write the VM disk to ``path``; a known extension also chooses the format."""
        path = Path(path)
        self._chosen_output = path
        fmt = format_for_path(path)
        if fmt is not None:
            self.state.out_format = fmt
            self.output_field.set_format(fmt)
        self.state.output = path
        self._show()

    def _on_format_chosen(self, value: str) -> None:
        fmt = value or None
        self.state.out_format = fmt
        output = self.state.output
        if output is not None and fmt is not None:
            self.state.output = with_format_suffix(output, fmt)
        elif output is not None and self._chosen_output is None:
            self.state.output = self._default_output()
        self._show()

    def confirm_replace(self) -> None:
        """*Replace*: the existing file will be replaced once the VM disk is complete."""
        self._replace_ok = self.state.output
        self._show()

    # -- showing ----------------------------------------------------------------------------------

    def _show(self) -> None:
        state, output = self.state, self.state.output
        self.output_field.set_path(str(output) if output else "")
        self.output_field.set_format(state.out_format or SAME_FORMAT)
        if output is not None and output.exists() and self._replace_ok != output:
            self.replace_panel.ask(
                self.tr("%1 already exists. Replace it with the VM disk?").replace("%1", str(output))
            )
        else:
            self.replace_panel.hide()
        self.summary_label.set_note(self._summary(), plain=True)
        self.completeChanged.emit()

    def _summary(self) -> str:
        state = self.state
        lines = []
        if state.template is not None:
            lines.append(self.tr("Template: %1").replace("%1", str(state.template)))
        if state.srk is not None:
            lines.append(self.tr("Sealed to: %1").replace("%1", state.srk.describe()))
        where = self.tr(" on the %1").replace("%1", state.profile.description) if state.profile else ""
        lines.append(
            self.tr("PCRs %1 (%2)%3")
            .replace("%1", ", ".join(str(n) for n in sorted(state.pcr.pcrs)))
            .replace("%2", state.pcr.bank)
            .replace("%3", where)
        )
        if self._replace_ok is not None and self._replace_ok == state.output:
            lines.append(self.tr("%1 will be replaced once the VM disk is complete.").replace(
                "%1", str(state.output)))  # fmt: skip
        return "\n".join(lines)
