"""Provision wizard, page 3: the PCR policy the disk is sealed under - target firmware, PCRs and bank.

The firmware row and the PCR checklist are the PCR Policy page's (:class:`FirmwareProfileRow`,
:class:`PcrChecklist` over ``PCR_MEANINGS``), without "no profile" (provisioning predicts PCR 4 and 7 on
the target's firmware) and without the boot-path choice (the template's ESP is what it is). The page loads
the profile and predicts the template's boot chain on it in the background
(:func:`~wizard_pages.provision_common.forecast`), then shows the values a provisioning seals to and the
policy hash (:func:`~app.template.provision.sealed_policy`: the engine's PCR check and PCR 11 at
``UNLOCK_PHASE``). Why PCR 5, 10 and 15 are never offered is the engine's ``NEVER_SEAL``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from app.errors import ShieldwrightError
from app.gui.provision_state import CREATE_VTPM, ProvisionState
from app.gui.tasks import TaskRunner
from app.gui.widgets.busy import busy_bar
from app.gui.widgets.firmware_profile_row import FIRMWARE_OPTIONS, FirmwareProfileRow, profile_kind
from app.gui.widgets.pcr_checklist import PcrChecklist
from app.gui.widgets.pcr_preview import BANK_LABELS
from app.gui.widgets.status_note import NoteLabel
from app.gui.widgets.tables import setup_readonly_table
from app.template.pcr_policy import PCR_MEANINGS
from app.template.provision import NEVER_SEAL, UNLOCK_PHASE, SealedPolicy, sealed_policy
from wizard_pages.pcr_policy import PROFILE_FILTERS
from wizard_pages.provision_common import PolicyForecast, ProvisionPage, forecast

log = logging.getLogger(__name__)

FORECAST = "forecast"


class ProvisionPolicyPage(ProvisionPage):
    """Target firmware, PCRs and bank; the sealed values and the policy hash."""

    #: A prediction ended (successfully or not) and the page shows it.
    predictionFinished = Signal()

    def __init__(self, state: ProvisionState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("PCR policy"))
        self.setSubTitle(
            self.tr(
                "The boot state the VM's vTPM must be in to unseal the key: the PCRs below, with the values "
                "predicted for this template booting on the target firmware. Any other state gets the "
                "passphrase prompt."
            )
        )
        self._paths: dict[str, Path] = {}
        self._forecast: PolicyForecast | None = None
        self._forecast_for: tuple[object, ...] | None = None
        self._error: ShieldwrightError | None = None
        self.sealed: SealedPolicy | None = None
        self._problem = ""
        self._build_ui()
        self._load_choice()
        self._show()

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.firmware = FirmwareProfileRow(self)
        self.firmware.profile_combo.removeItem(0)  # "None": provisioning needs the target's firmware
        self.firmware.removable_check.hide()  # the template's boot path was chosen when it was built
        self.firmware.kindActivated.connect(self._on_kind_activated)
        self.firmware.chooseClicked.connect(lambda: self.choose_profile_file())
        self.firmware.bankChosen.connect(self._on_bank_chosen)
        self.profile_combo, self.bank_combo = self.firmware.profile_combo, self.firmware.bank_combo
        self.chain_label = NoteLabel(self, name="chainNote", selectable=True)
        self.chain_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.busy = busy_bar(self, self.tr("Predicting"), max_width=80)
        keep = self.busy.sizePolicy()
        keep.setRetainSizeWhenHidden(True)
        self.busy.setSizePolicy(keep)
        chain_row = QHBoxLayout()
        chain_row.addWidget(self.chain_label, 1)
        chain_row.addWidget(self.busy, 0, Qt.AlignmentFlag.AlignTop)

        self.checklist = PcrChecklist(PCR_MEANINGS, self)
        self.checklist.changed.connect(self._on_pcrs_changed)
        numbers = sorted(NEVER_SEAL)
        never = "; ".join(f"{n}: {NEVER_SEAL[n]}" for n in numbers)
        listed = ", ".join(map(str, numbers[:-1])) + self.tr(" and ") + str(numbers[-1])
        self.never_label = NoteLabel(
            self, name="neverSealed",
            text=self.tr("PCR %1 are never sealed - %2.").replace("%1", listed).replace("%2", never),
        )  # fmt: skip

        self.values_caption = QLabel(self.tr("Sealed values"), self)
        font = self.values_caption.font()
        font.setBold(True)
        self.values_caption.setFont(font)
        self.table = QTableWidget(0, 3, self)
        self.table.setObjectName("sealedValues")
        self.table.setAccessibleName(self.tr("Sealed PCR values"))
        self.table.setHorizontalHeaderLabels([self.tr("PCR"), self.tr("Value"), self.tr("When")])
        setup_readonly_table(self.table, 1)
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        rows = len(PCR_MEANINGS)
        self.table.setFixedHeight(
            self.table.horizontalHeader().sizeHint().height()
            + rows * self.table.verticalHeader().defaultSectionSize() + 2 * self.table.frameWidth() + 2
        )  # fmt: skip
        self.pcr11_label = NoteLabel(
            self, name="pcr11Note",
            text=self.tr("PCR 11 is sealed at its value after systemd's %1 phase, when the initrd unlocks "
                         "the root; the running system extends it further and can no longer unseal the key.")
            .replace("%1", UNLOCK_PHASE),
        )  # fmt: skip
        self.policy_label = QLabel(self)
        self.policy_label.setObjectName("policyHash")
        self.policy_label.setTextFormat(Qt.TextFormat.PlainText)
        self.policy_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problem_label = NoteLabel(self, name="policyProblem")

        layout = self.body_layout()
        layout.setSpacing(5)
        layout.addWidget(self.firmware)
        layout.addLayout(chain_row)
        layout.addSpacing(4)
        layout.addWidget(self.checklist)
        layout.addWidget(self.never_label)
        layout.addSpacing(4)
        layout.addWidget(self.values_caption)
        layout.addWidget(self.table)
        layout.addWidget(self.pcr11_label)
        layout.addWidget(self.policy_label)
        layout.addWidget(self.problem_label)
        layout.addWidget(self.error_panel)
        layout.addStretch(1)

    # -- state <-> widgets ------------------------------------------------------------------------

    def _load_choice(self) -> None:
        policy = self.state.pcr
        chosen = policy.firmware
        if chosen is not None:
            self._paths[chosen[0]] = Path(chosen[1])
        kind, path = chosen if chosen is not None else (self.firmware.kind(), None)
        self.firmware.show_choice(kind, path, policy.bank, False)
        if path is None:
            self.firmware.path_label.set_full_text(self.tr("(choose the target's firmware)"))
        self.checklist.set_checked(policy.pcrs)

    def set_profile(self, kind: str, path: str | Path) -> None:
        """Seal for the firmware profile ``kind`` (``vars``, ``log``, ``certs``) at ``path``."""
        policy = self.state.pcr
        for opt in FIRMWARE_OPTIONS:
            setattr(policy, opt.name, Path(path) if kind == profile_kind(opt) else None)
        self._paths[kind] = Path(path)
        self._load_choice()
        self.refresh()

    def _on_kind_activated(self, kind: str | None) -> None:
        if kind is None:
            return
        if kind in self._paths:
            self.set_profile(kind, self._paths[kind])
        else:
            self.choose_profile_file(kind)

    def choose_profile_file(self, kind: str | None = None) -> None:
        kind = kind or self.firmware.kind()
        if kind is None:
            return
        current = self._paths.get(kind)
        start = current.parent if current is not None else (
            self.state.template.parent if self.state.template is not None else Path.home()
        )  # fmt: skip
        titles = {"vars": self.tr("Choose the target's OVMF variable store"),
                  "log": self.tr("Choose an event log of the target"),
                  "certs": self.tr("Choose the folder of the target's PK, KEK, db and dbx")}  # fmt: skip
        dialog = self.file_dialog(
            "firmware-profile", titles.get(kind, kind), start, lambda path: self.set_profile(kind, path),
            filters=PROFILE_FILTERS.get(kind, ()), select=str(current) if current is not None else None,
        )  # fmt: skip
        if kind == "certs":
            dialog.setFileMode(QFileDialog.FileMode.Directory)
            dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.finished.connect(lambda _result: self._load_choice())

    def _on_bank_chosen(self, bank: str) -> None:
        self.state.pcr.bank = bank
        self.refresh()

    def _on_pcrs_changed(self) -> None:
        self.state.pcr.pcrs = self.checklist.checked()
        self._show()

    # -- predicting -------------------------------------------------------------------------------

    def initializePage(self) -> None:
        self._load_choice()
        self.refresh()

    def _key(self) -> tuple[object, ...]:
        return (self.state.template, self.state.pcr.firmware, self.state.pcr.bank)

    def refresh(self) -> None:
        """Load the profile and predict again if the template, the profile or the bank changed."""
        template, firmware = self.state.template, self.state.pcr.firmware
        key = self._key()
        if template is None or firmware is None:
            self.cancel_task(FORECAST)
            self._forecast, self._error, self._forecast_for = None, None, None
            self.state.profile = None
            self._show()
            return
        if key == self._forecast_for:
            self._show()
            return
        self._forecast, self._error, self._forecast_for = None, None, key
        self.state.profile = None
        self.error_panel.clear()
        kind, path = firmware
        log.info("predicting the template's PCRs on the %s profile %s (%s)", kind, path, self.state.pcr.bank)
        self.run_task(FORECAST, forecast, template, kind, Path(path), self.state.pcr.bank,
                      on_success=self._on_forecast, on_failure=self._on_forecast_failed,
                      on_finished=self._on_forecast_finished)  # fmt: skip
        self._show()

    def _on_forecast(self, result: PolicyForecast) -> None:
        self._forecast = result
        self.state.profile = result.profile

    def _on_forecast_failed(self, error: ShieldwrightError) -> None:
        self._error = error
        self.show_error(error)

    def _on_forecast_finished(self) -> None:
        self._show()
        self.predictionFinished.emit()

    # -- showing ----------------------------------------------------------------------------------

    def _show(self) -> None:
        self._show_chain()
        self._show_policy()
        self.completeChanged.emit()

    def _show_chain(self) -> None:
        predicting = self.task(FORECAST) is not None
        self.busy.setVisible(predicting)
        result = self._forecast
        if predicting:
            self.chain_label.set_note(self.tr("Predicting the template's boot on this firmware…"))
        elif result is not None:
            notes = "; ".join(result.prediction.chain.notes)
            text = self.tr("Predicted on the %1: %2.").replace("%1", result.profile.description)
            self.chain_label.set_note(text.replace("%2", notes), plain=True)
        elif self.state.pcr.firmware is None:
            self.chain_label.set_note(self.tr(
                "Choose the target's firmware: its OVMF variable store, an event log of a boot on it, or its "
                "Secure Boot certificates. PCR 4 and 7 depend on it."
            ))  # fmt: skip
        else:
            self.chain_label.set_note("")

    def _show_policy(self) -> None:
        bank = self.state.pcr.bank
        self.sealed, self._problem = None, ""
        result = self._forecast
        if result is not None:
            try:
                self.sealed = sealed_policy(result.prediction, self.state.pcr.pcrs, bank)
            except ShieldwrightError as exc:
                self._problem = f"{exc.message[:1].upper()}{exc.message[1:]}: {exc.hint}."
        banks = self.state.vtpm_banks
        if not self._problem and self.state.srk_mode == CREATE_VTPM and banks and bank not in banks:
            self._problem = (
                self.tr("The vTPM created for this VM has only the %1 bank: choose it, or create the vTPM "
                        "again.")
                .replace("%1", ", ".join(BANK_LABELS.get(b, b) for b in banks))
            )  # fmt: skip
        self.problem_label.set_note(self._problem, problem=bool(self._problem))
        self.problem_label.setVisible(bool(self._problem))
        sealed = self.sealed
        self.table.setRowCount(0)
        if sealed is None:
            self.policy_label.setText("")
            return
        self.table.setRowCount(len(sealed.values))
        for row, (pcr, value) in enumerate(sorted(sealed.values.items())):
            name = PCR_MEANINGS.get(pcr, ("", ""))[0]
            pcr_item = QTableWidgetItem(f"{pcr} · {name}" if name else str(pcr))
            value_item = QTableWidgetItem(value)
            value_item.setFont(self._mono)
            value_item.setToolTip(value)
            value_item.setData(Qt.ItemDataRole.UserRole, value)
            when = self.tr("after %1").replace("%1", UNLOCK_PHASE) if pcr == 11 else self.tr("at boot")
            for col, item in enumerate((pcr_item, value_item, QTableWidgetItem(when))):
                self.table.setItem(row, col, item)
        self.policy_label.setText(
            self.tr("Policy hash (PolicyPCR, %1 bank): %2")
            .replace("%1", BANK_LABELS.get(bank, bank))
            .replace("%2", sealed.policy_hash)
        )

    def values(self) -> dict[int, str]:
        """The sealed values shown, per PCR."""
        out = {}
        for row in range(self.table.rowCount()):
            pcr, value = self.table.item(row, 0), self.table.item(row, 1)
            if pcr is not None and value is not None:
                out[int(pcr.text().split(" ")[0])] = str(value.data(Qt.ItemDataRole.UserRole))
        return out

    def problem(self) -> str:
        """Why Next is refused ("" when it is not)."""
        return self._problem

    # -- QWizardPage ------------------------------------------------------------------------------

    def isComplete(self) -> bool:
        if self.is_busy() or self._forecast_for != self._key() or self.state.profile is None:
            return False
        return self.sealed is not None and not self._problem
