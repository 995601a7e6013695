"""Provision wizard, page 6: the VM disk is written - where, the policy it is sealed under, what changed.

Everything shown is the engine's :class:`~app.template.provision.ProvisionResult`: the output and its
format, the policy hash, the sealed PCR values (PCR 11 at ``UNLOCK_PHASE``), and per container the TPM
keyslot, its ``systemd-tpm2`` token, the removed provisioning keyslot and the keyslots left; after shielding
data, the credentials written into the ESP. *Open folder* hands the folder to the desktop (and says so,
with the path, when no application opens it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QFontDatabase
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from app.gui.provision_state import CREATE_VTPM, ProvisionState
from app.gui.tasks import TaskRunner
from app.gui.widgets.pcr_preview import BANK_LABELS
from app.gui.widgets.status_note import NoteLabel
from app.gui.widgets.tables import setup_readonly_table
from app.template.pcr_policy import PCR_MEANINGS
from app.template.provision import CREDENTIAL_PCRS, UNLOCK_PHASE, ProvisionResult
from wizard_pages.provision_common import ProvisionPage


class ContainerColumn:
    PARTITION, KEYSLOT, TOKEN, PASSPHRASE, KEYSLOTS = range(5)


class ProvisionDonePage(ProvisionPage):
    """The output, the policy hash and sealed values, the containers' keyslots and tokens; Open folder."""

    def __init__(
        self, state: ProvisionState, runner: TaskRunner, parent: QWidget | None = None, *,
        opener: Callable[[QUrl], Any] = QDesktopServices.openUrl,
    ) -> None:  # fmt: skip
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("VM disk ready"))
        self.setSubTitle(
            self.tr(
                "The VM's systemd (255 or later) unlocks the encrypted root with its vTPM, with nothing "
                "typed, as long as it boots in the state below. Any other boot state gets the passphrase "
                "prompt."
            )
        )
        self.setFinalPage(True)
        self._opener = opener
        self._shown_for: ProvisionResult | None = None
        self._build_ui()

    def _build_ui(self) -> None:
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.output_label = NoteLabel(self, name="provisionedOutput", selectable=True)
        self.output_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.open_folder_button = QPushButton(
            self.style().standardIcon(QStyle.StandardPixmap.SP_DirOpenIcon), self.tr("&Open folder"), self
        )
        self.open_folder_button.setObjectName("openFolder")
        self.open_folder_button.clicked.connect(self.open_folder)
        top = QHBoxLayout()
        top.addWidget(self.output_label, 1)
        top.addWidget(self.open_folder_button, 0, Qt.AlignmentFlag.AlignTop)

        self.policy_caption = self._caption(self.tr("Policy"))
        self.policy_label = QLabel(self)
        self.policy_label.setObjectName("policyHash")
        self.policy_label.setFont(mono)
        self.policy_label.setTextFormat(Qt.TextFormat.PlainText)
        self.policy_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.policy_note = NoteLabel(self, name="policyNote")

        self.pcr_table = QTableWidget(0, 3, self)
        self.pcr_table.setObjectName("sealedValues")
        self.pcr_table.setAccessibleName(self.tr("Sealed PCR values"))
        self.pcr_table.setHorizontalHeaderLabels([self.tr("PCR"), self.tr("Sealed value"), self.tr("When")])
        setup_readonly_table(self.pcr_table, 1)

        self.containers_caption = self._caption(self.tr("Encrypted containers"))
        self.containers = QTableWidget(0, 5, self)
        self.containers.setObjectName("provisionedContainers")
        self.containers.setAccessibleName(self.tr("Provisioned containers"))
        self.containers.setHorizontalHeaderLabels([
            self.tr("Partition"), self.tr("TPM keyslot"), self.tr("systemd-tpm2 token"),
            self.tr("Provisioning passphrase"), self.tr("Keyslots now"),
        ])  # fmt: skip
        setup_readonly_table(self.containers, ContainerColumn.KEYSLOTS)
        self._mono = mono

        self.credentials_caption = self._caption(self.tr("Specialization values"))
        self.credentials_note = NoteLabel(self, name="credentialsNote", selectable=True)
        self.credentials_label = NoteLabel(self, name="credentialsWritten", selectable=True)
        self.credentials_label.setFont(mono)
        self.credentials_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.next_note = NoteLabel(self, name="nextSteps", selectable=True)

        layout = self.body_layout()
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addWidget(self.policy_caption)
        layout.addWidget(self.policy_label)
        layout.addWidget(self.policy_note)
        layout.addWidget(self.pcr_table)
        layout.addWidget(self.containers_caption)
        layout.addWidget(self.containers)
        layout.addWidget(self.credentials_caption)
        layout.addWidget(self.credentials_note)
        layout.addWidget(self.credentials_label)
        layout.addWidget(self.next_note)
        layout.addWidget(self.error_panel)  # e.g. no application opens the folder (at the end: nothing moves)
        layout.addStretch(1)

    def _caption(self, text: str) -> QLabel:
        label = QLabel(text, self)
        font = label.font()
        font.setBold(True)
        label.setFont(font)
        return label

    # -- QWizardPage ------------------------------------------------------------------------------

    def initializePage(self) -> None:
        result = self.state.result
        if result is not None and result is not self._shown_for:
            self._shown_for = result
            self._show(result)
        self.open_folder_button.setEnabled(result is not None)

    # -- showing ----------------------------------------------------------------------------------

    def _show(self, result: ProvisionResult) -> None:
        state = self.state
        srk = state.srk.describe() if state.srk is not None else self.tr("the VM's SRK")
        self.output_label.set_note(
            self.tr("Wrote %1 (%2). Sealed to the %3")
            .replace("%1", str(result.output)).replace("%2", result.format).replace("%3", srk),
            plain=True,
        )  # fmt: skip
        bank = result.prediction.banks[0] if result.prediction.banks else state.pcr.bank
        self.policy_label.setText(result.policy_hash)
        self.policy_label.setToolTip(self.tr("The PolicyPCR digest in each container's systemd-tpm2 token"))
        self.policy_note.set_note(
            self.tr(
                "PolicyPCR over PCRs %1 in the %2 bank, predicted on the %3; PCR 11 as it is after "
                "systemd's %4 phase, when the initrd unlocks the root."
            )
            .replace("%1", ", ".join(str(n) for n in sorted(result.pcr_values)))
            .replace("%2", BANK_LABELS.get(bank, bank))
            .replace("%3", result.prediction.profile.description)
            .replace("%4", UNLOCK_PHASE)
        )
        self._fill_pcrs(result)
        self._fill_containers(result)
        self._show_credentials(result)
        note = [self.tr("The template was verified first: all %1 checks passed.").replace(
            "%1", str(len(result.verification.checks)))]  # fmt: skip
        if state.srk_mode == CREATE_VTPM and state.vtpm_dir is not None:
            note.append(
                self.tr("Boot the VM with the vTPM in %1 (swtpm --tpmstate dir=%1).").replace(
                    "%1", str(state.vtpm_dir))
            )  # fmt: skip
        self.next_note.set_note(" ".join(note))

    def _show_credentials(self, result: ProvisionResult) -> None:
        """What the shielding data delivered (its ESP paths); hidden when nothing was."""
        for widget in (self.credentials_caption, self.credentials_note, self.credentials_label):
            widget.setVisible(bool(result.credentials))
        pcrs = ", ".join(str(n) for n in sorted(result.pcr_values) if n in CREDENTIAL_PCRS)
        self.credentials_note.set_note(
            self.tr(
                "From the shielding data, as systemd credentials sealed to the vTPM's credentials key under "
                "PCRs %1, beside each UKI in the ESP; systemd (256 or later) applies them at boot:"
            ).replace("%1", pcrs or self.tr("none"))
        )
        self.credentials_label.set_note("\n".join(result.credentials), plain=True)
        self.credentials_label.setToolTip("\n".join(result.credentials))

    def credentials_written(self) -> list[str]:
        """The credentials' ESP paths as the page lists them."""
        text = self.credentials_label.text() if self.credentials_label.isVisibleTo(self) else ""
        return [line for line in text.splitlines() if line]

    def _fill_pcrs(self, result: ProvisionResult) -> None:
        values = sorted(result.pcr_values.items())
        self.pcr_table.setRowCount(len(values))
        for row, (pcr, value) in enumerate(values):
            name = PCR_MEANINGS.get(pcr, ("", ""))[0]
            value_item = QTableWidgetItem(value)
            value_item.setFont(self._mono)
            value_item.setToolTip(value)
            value_item.setData(Qt.ItemDataRole.UserRole, value)
            when = self.tr("after %1").replace("%1", UNLOCK_PHASE) if pcr == 11 else self.tr("at boot")
            items = (
                QTableWidgetItem(f"{pcr} · {name}" if name else str(pcr)),
                value_item,
                QTableWidgetItem(when),
            )
            for col, item in enumerate(items):
                self.pcr_table.setItem(row, col, item)
        self._fit_height(self.pcr_table)

    def _fill_containers(self, result: ProvisionResult) -> None:
        self.containers.setRowCount(len(result.containers))
        for row, c in enumerate(result.containers):
            removed = (
                self.tr("kept (keyslot still opens it)")
                if c.removed_keyslot is None
                else self.tr("keyslot %1 removed").replace("%1", str(c.removed_keyslot))
            )
            cells = (
                str(c.partition), str(c.tpm_keyslot), self.tr("token %1").replace("%1", str(c.token_id)),
                removed, ", ".join(str(k) for k in c.kept_keyslots),
            )  # fmt: skip
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col in (ContainerColumn.PARTITION, ContainerColumn.KEYSLOT):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.containers.setItem(row, col, item)
        self._fit_height(self.containers)

    @staticmethod
    def _fit_height(table: QTableWidget) -> None:
        height = table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth() + 2
        height += sum(table.rowHeight(r) for r in range(table.rowCount()))
        table.setFixedHeight(height)

    def container_rows(self) -> list[list[str]]:
        """The containers table as text, row by row."""
        table = self.containers
        return [
            [
                item.text() if (item := table.item(r, c)) is not None else ""
                for c in range(table.columnCount())
            ]
            for r in range(table.rowCount())
        ]

    def sealed_values(self) -> dict[int, str]:
        out = {}
        for row in range(self.pcr_table.rowCount()):
            pcr, value = self.pcr_table.item(row, 0), self.pcr_table.item(row, 1)
            if pcr is not None and value is not None:
                out[int(pcr.text().split(" ")[0])] = str(value.data(Qt.ItemDataRole.UserRole))
        return out

    # -- actions ----------------------------------------------------------------------------------

    def open_folder(self) -> None:
        result = self.state.result
        if result is not None:
            self.error_panel.clear()
            self.open_on_desktop(self._opener, result.output.parent, self.tr("the folder"))
