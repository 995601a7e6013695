"""Provision wizard, page 4: the template's provisioning passphrase, keep it or not, and the VM disk to write.

The passphrase is typed into a password field and held only in memory (:class:`ProvisionState`, wiped when
the wizard closes or the disk is written); it is never logged. Or it comes from shielding data made for the
template (``provision --shielding-data``): the page takes only the paths of the ``.shd`` and of a
recipient's certificate and key; the Provision page opens it. The output is a new file: an existing one is
replaced only after the page asked, inline (the engine refuses it otherwise). This is the commit page:
*Provision* starts the work.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QWidget,
    QWizard,
)

from app.gui.file_dialogs import CERT_FILTERS, KEY_FILTERS, SHD_FILTERS
from app.gui.provision_state import SHIELDING_DATA, TYPED, ProvisionState
from app.gui.tasks import TaskRunner
from app.gui.widgets.elided_label import ElidedLabel
from app.gui.widgets.review_inline_question import InlineQuestion
from app.gui.widgets.review_output_field import OutputFileField
from app.gui.widgets.status_note import NoteLabel
from app.template.provision import CREDENTIAL_FORMATS
from app.template.recipe import OUTPUT_FORMATS
from wizard_pages.provision_common import ProvisionPage
from wizard_pages.review_summary import extension, format_for_path, format_label, with_format_suffix

#: The format list's first entry: the engine's default (the template's format when it can be written).
SAME_FORMAT = ""


class ProvisionOutputPage(ProvisionPage):
    """Passphrase (typed, or from shielding data), keep-passphrase, output path and format (with an inline
    replace question)."""

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
        self.typed_radio = QRadioButton(self.tr("&Type the provisioning passphrase"), self)
        self.typed_radio.setObjectName("passphraseTyped")
        self.shielding_radio = QRadioButton(self.tr("Take it from &shielding data"), self)
        self.shielding_radio.setObjectName("passphraseFromShieldingData")
        self.source_group = QButtonGroup(self)
        self.source_group.addButton(self.typed_radio)
        self.source_group.addButton(self.shielding_radio)
        self.typed_radio.setChecked(self.state.passphrase_source != SHIELDING_DATA)
        self.shielding_radio.setChecked(self.state.passphrase_source == SHIELDING_DATA)
        self.source_group.buttonToggled.connect(self._on_source_toggled)

        self.passphrase_edit = QLineEdit(self)
        self.passphrase_edit.setObjectName("provisioningPassphrase")
        self.passphrase_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase_edit.setAccessibleName(self.tr("Provisioning passphrase"))
        self.passphrase_edit.textChanged.connect(self._on_passphrase_changed)
        self.passphrase_hint = NoteLabel(
            self, name="passphraseHint",
            text=self.tr("Used once, in memory: never saved or logged, and wiped when the disk is written."),
        )  # fmt: skip

        self.shd_label, self.shd_button = self._file_row(
            "shieldingDataPath", "browseShieldingData", self.tr("Choose the shielding data file"),
            self.choose_shielding_data,
        )  # fmt: skip
        self.cert_label, self.cert_button = self._file_row(
            "guardianCertificatePath", "browseGuardianCertificate",
            self.tr("Choose the recipient's certificate"), self.choose_guardian_cert,
        )  # fmt: skip
        self.key_label, self.key_button = self._file_row(
            "guardianKeyPath", "browseGuardianKey", self.tr("Choose the recipient's private key"),
            self.choose_guardian_key,
        )  # fmt: skip
        self.key_passphrase_edit = QLineEdit(self)
        self.key_passphrase_edit.setObjectName("guardianKeyPassphrase")
        self.key_passphrase_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_passphrase_edit.setPlaceholderText(self.tr("only if the private key is encrypted"))
        self.key_passphrase_edit.setAccessibleName(self.tr("Passphrase of the private key"))
        self.key_passphrase_edit.textChanged.connect(self.state.set_guardian_key_passphrase)
        self.shielding_hint = NoteLabel(
            self, name="shieldingDataHint",
            text=self.tr("The key pair (PEM or DER) of a guardian or of the owner it was made for. It must "
                         "apply to this template and is opened in memory only; its host name, SSH keys, "
                         "password hash and files are sealed to the VM's vTPM as systemd credentials."),
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

        caption = QLabel(self.tr("P&assphrase:"), self)
        caption.setBuddy(self.passphrase_edit)
        self._passphrase_caption = caption
        self._file_captions = [
            self._caption(self.tr("Sh&ielding data:"), self.shd_button),
            self._caption(self.tr("&Certificate:"), self.cert_button),
            self._caption(self.tr("Private ke&y:"), self.key_button),
            self._caption(self.tr("K&ey passphrase:"), self.key_passphrase_edit),
        ]
        out_caption = QLabel(self.tr("VM &disk:"), self)
        out_caption.setBuddy(self.output_field.change_button)
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        grid.setColumnMinimumWidth(0, 14)  # the indent under a radio button
        grid.addWidget(self.typed_radio, 0, 0, 1, 4)
        grid.addWidget(caption, 1, 1)
        grid.addWidget(self.passphrase_edit, 1, 2, 1, 2)
        grid.addWidget(self.passphrase_hint, 2, 2, 1, 2)
        grid.setRowMinimumHeight(3, 8)
        grid.addWidget(self.shielding_radio, 4, 0, 1, 4)
        rows = ((self.shd_label, self.shd_button), (self.cert_label, self.cert_button),
                (self.key_label, self.key_button))  # fmt: skip
        for row, (label, button) in enumerate(rows, start=5):
            grid.addWidget(self._file_captions[row - 5], row, 1)
            grid.addWidget(label, row, 2)
            grid.addWidget(button, row, 3)
        grid.addWidget(self._file_captions[3], 8, 1)
        grid.addWidget(self.key_passphrase_edit, 8, 2, 1, 2)
        grid.addWidget(self.shielding_hint, 9, 2, 1, 2)
        grid.setRowMinimumHeight(10, 14)
        grid.addWidget(self.keep_check, 11, 0, 1, 4)
        grid.addWidget(self.keep_hint, 12, 0, 1, 4)
        grid.setRowMinimumHeight(13, 14)
        grid.addWidget(out_caption, 14, 0, 1, 2)
        grid.addWidget(self.output_field, 14, 2, 1, 2)
        grid.addWidget(self.replace_panel, 15, 2, 1, 2)
        grid.setColumnStretch(2, 1)

        self.summary_label = NoteLabel(self, name="provisionSummary", selectable=True)
        self.summary_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self._show_source()

        layout = self.body_layout()
        layout.setSpacing(8)
        layout.addLayout(grid)
        layout.addSpacing(8)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.error_panel)
        layout.addStretch(1)

    def _file_row(self, name: str, button_name: str, accessible: str, choose: Callable[[], None]
                  ) -> tuple[ElidedLabel, QPushButton]:  # fmt: skip
        """A chosen file's path (elided, whole in its tooltip) and its Browse… button."""
        label = ElidedLabel(self)
        label.setObjectName(name)
        button = QPushButton(self.tr("Browse…"), self)
        button.setObjectName(button_name)
        button.setAccessibleName(accessible)
        button.clicked.connect(choose)
        return label, button

    def _caption(self, text: str, buddy: QWidget) -> QLabel:
        label = QLabel(text, self)
        label.setBuddy(buddy)
        return label

    # -- QWizardPage ------------------------------------------------------------------------------

    def initializePage(self) -> None:
        if self._chosen_output is None:
            self.state.output = self._default_output()
        self._show()
        if self.state.passphrase_source == TYPED:
            self.passphrase_edit.setFocus()

    def isComplete(self) -> bool:
        output = self.state.output
        if not self.state.passphrase_ready() or output is None:
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

    def _on_source_toggled(self) -> None:
        typed = self.typed_radio.isChecked()
        self.state.passphrase_source = TYPED if typed else SHIELDING_DATA
        self._show()
        if typed:
            self.passphrase_edit.setFocus()

    # -- shielding data ---------------------------------------------------------------------------

    def _start_dir(self, current: Path | None) -> Path:
        if current is not None:
            return current.parent
        for known in (self.state.shielding_data, self.state.guardian_cert, self.state.guardian_key,
                      self.state.template):  # fmt: skip
            if known is not None:
                return known.parent
        return Path.home()

    def choose_shielding_data(self) -> None:
        current = self.state.shielding_data
        self.file_dialog("shielding-data", self.tr("Choose the shielding data"), self._start_dir(current),
                         self.set_shielding_data, filters=SHD_FILTERS,
                         select=str(current) if current else None)  # fmt: skip

    def choose_guardian_cert(self) -> None:
        current = self.state.guardian_cert
        title = self.tr("Choose the certificate of a recipient of the shielding data")
        self.file_dialog("guardian-cert", title, self._start_dir(current), self.set_guardian_cert,
                         filters=CERT_FILTERS,
                         select=str(current) if current else None)  # fmt: skip

    def choose_guardian_key(self) -> None:
        current = self.state.guardian_key
        self.file_dialog("guardian-key", self.tr("Choose that recipient's private key"),
                         self._start_dir(current), self.set_guardian_key, filters=KEY_FILTERS,
                         select=str(current) if current else None)  # fmt: skip

    def set_shielding_data(self, path: str | Path) -> None:
        """Take the passphrase from the shielding data in ``path`` (opened when provisioning)."""
        self.state.shielding_data = Path(path)
        self.shielding_radio.setChecked(True)
        self._show()

    def set_guardian_cert(self, path: str | Path) -> None:
        self.state.guardian_cert = Path(path)
        self.shielding_radio.setChecked(True)
        self._show()

    def set_guardian_key(self, path: str | Path) -> None:
        self.state.guardian_key = Path(path)
        self.shielding_radio.setChecked(True)
        self._show()

    # -- keep -------------------------------------------------------------------------------------

    def _on_keep_toggled(self, checked: bool) -> None:
        self.state.keep_passphrase = checked
        self._show()

    def clear_secrets(self) -> None:
        """Empty the password fields (best effort: Qt keeps its own copies)."""
        self.passphrase_edit.clear()
        self.key_passphrase_edit.clear()

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
        self._show_source()
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

    def _show_source(self) -> None:
        """The chosen source's controls enabled, the other's greyed; the chosen files' paths."""
        state = self.state
        typed = state.passphrase_source != SHIELDING_DATA
        self._passphrase_caption.setEnabled(typed)
        self.passphrase_edit.setEnabled(typed)
        self.passphrase_hint.setEnabled(typed)
        none = self.tr("(none chosen)")
        for label, path in ((self.shd_label, state.shielding_data), (self.cert_label, state.guardian_cert),
                            (self.key_label, state.guardian_key)):  # fmt: skip
            label.set_full_text(str(path) if path is not None else none)
        widgets: list[QWidget] = [
            *self._file_captions, self.shd_label, self.cert_label, self.key_label, self.shd_button,
            self.cert_button, self.key_button, self.key_passphrase_edit, self.shielding_hint,
        ]  # fmt: skip
        for widget in widgets:
            widget.setEnabled(not typed)

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
        if state.passphrase_source == SHIELDING_DATA:
            lines += self._shielding_summary()
        if self._replace_ok is not None and self._replace_ok == state.output:
            lines.append(self.tr("%1 will be replaced once the VM disk is complete.").replace(
                "%1", str(state.output)))  # fmt: skip
        return "\n".join(lines)

    def _shielding_summary(self) -> list[str]:
        """Where the shielding data's specialization values will go, and what would stop them, before the
        engine is asked (it refuses them without a credentials key, or into a VHDX or VHD)."""
        state = self.state
        lines = []
        key = state.credentials_key_path()
        if key is not None and key.is_file():
            lines.append(self.tr("Specialization values in the shielding data: sealed to the vTPM's "
                                 "credentials key %1.").replace("%1", str(key)))  # fmt: skip
        else:
            where = str(key) if key is not None else self.tr("no vTPM chosen")
            lines.append(self.tr("No credentials key (%1): shielding data that carries specialization values "
                                 "(a host name, SSH keys…) is refused.").replace("%1", where))  # fmt: skip
        fmt = state.out_format or (format_for_path(state.template) if state.template is not None else None)
        if fmt is not None and fmt not in CREDENTIAL_FORMATS:
            lines.append(self.tr("Specialization values are written into a raw or qcow2 disk only, not %1.")
                         .replace("%1", format_label(fmt)))  # fmt: skip
        return lines
