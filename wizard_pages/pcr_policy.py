"""Wizard page: the PCR policy — what the VM's vTPM will measure when the template boots on its firmware.

The page edits the recipe's :class:`~app.template.recipe.PcrOptions` (the firmware profile: an OVMF variable
store, an event log of the target, or its certificates; the PCRs of the policy; the bank) and
``boot.install_removable`` (the boot path PCR 4 measures). It shows, per PCR, what the engine predicts for
the planned template (:func:`~app.template.pcr_policy.predict_planned`, the build's step 3): the events in
order and the values. *Compare with event log…* aligns the prediction with a real boot's log (as
``shieldwright pcr diff``); *Test boot…* boots a built template and compares the PCRs it measured
(:class:`~app.gui.dialogs.test_boot.TestBootDialog`, as ``shieldwright test-boot``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QPushButton, QSizePolicy, QStyle, QWidget

from app.errors import ShieldwrightError
from app.gui.dialogs.new_test_store import NewStoreRequest, NewTestStoreDialog
from app.gui.dialogs.test_boot import BootFunction, TestBootDialog
from app.gui.file_dialogs import VARS_FILTERS
from app.gui.page import WizardPage
from app.gui.state import WizardState
from app.gui.tasks import TaskRunner
from app.gui.widgets.busy import busy_bar
from app.gui.widgets.firmware_profile_row import FIRMWARE_OPTIONS, FirmwareProfileRow, profile_kind
from app.gui.widgets.pcr_checklist import PcrChecklist
from app.gui.widgets.pcr_event_tree import PcrEventTree
from app.gui.widgets.pcr_preview import BANK_LABELS
from app.gui.widgets.status_note import NoteLabel
from app.measure.testboot import run_test_boot
from app.measure.teststore import write_test_store
from app.template.pcr_policy import PCR_MEANINGS, PolicyPrediction, predict_planned
from wizard_pages.pcr_policy_tasks import (
    LogComparison,
    compare_with_log,
    comparison_summary,
    pcr_groups,
    policy_problems,
    uki_id_of,
)

log = logging.getLogger(__name__)

#: Task keys and file dialog keys.
PREDICT, COMPARE, NEW_STORE = "predict-pcrs", "compare-log", "new-store"
PROFILE_DIALOG, LOG_DIALOG, TEMPLATE_DIALOG = "firmware-profile", "event-log", "test-boot-template"
PROFILE_FILTERS = {
    "vars": VARS_FILTERS,
    "log": ("TCG event logs (binary_bios_measurements *.bin *.log)", "All files (*)"),
}
LOG_FILTERS = PROFILE_FILTERS["log"]
TEMPLATE_FILTERS = ("Disk images (*.raw *.img *.qcow2 *.vhdx *.vhd)", "All files (*)")


class PcrPolicyPage(WizardPage):
    """Choose the target firmware, the PCRs and the bank; see each PCR's events and values; check them."""

    #: A prediction ended (successfully or not) and the page shows it.
    predictionFinished = Signal()
    #: A comparison with an event log ended and the page shows it.
    comparisonFinished = Signal()

    def __init__(
        self, state: WizardState, runner: TaskRunner, parent: QWidget | None = None, *,
        test_boot: BootFunction = run_test_boot,
    ) -> None:  # fmt: skip
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("PCR policy"))
        self.setSubTitle(
            self.tr(
                "What the VM's TPM will measure when the template boots on the target firmware, event by "
                "event: PCR 4 and 7 depend on that firmware, PCR 11 on the UKI. Check the prediction against "
                "an event log of a real boot, or boot a built template."
            )
        )
        self._test_boot = test_boot
        #: The file last chosen for each profile kind, so switching kinds back keeps it.
        self._paths: dict[str, Path] = {}
        self._prediction: PolicyPrediction | None = None
        self._error: ShieldwrightError | None = None
        self._predicted_for: tuple[object, ...] | None = None
        self._comparison: LogComparison | None = None
        #: The log compared, and the (profile, bank) it was compared for: a new prediction for the same
        #: profile and bank is compared again; another profile or bank drops the comparison.
        self._log: tuple[Path, object] | None = None
        self.test_boot_dialog: TestBootDialog | None = None
        self.new_store_dialog: NewTestStoreDialog | None = None
        self._build_ui()
        self._load_choice()
        self._show()

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.firmware = FirmwareProfileRow(self)
        self.firmware.kindActivated.connect(self._on_kind_activated)
        self.firmware.chooseClicked.connect(lambda: self.choose_profile_file())
        self.firmware.newStoreClicked.connect(self.open_new_store_dialog)
        self.firmware.bankChosen.connect(self._on_bank_chosen)
        self.firmware.removableToggled.connect(self._on_removable_toggled)
        # The inputs, as tests and the screenshot tool reach them.
        self.profile_combo, self.bank_combo = self.firmware.profile_combo, self.firmware.bank_combo
        self.path_label, self.choose_button = self.firmware.path_label, self.firmware.choose_button
        self.new_store_button = self.firmware.new_store_button
        self.removable_check = self.firmware.removable_check
        self.chain_label = NoteLabel(self, name="chainNote", selectable=True)
        self.chain_label.setFixedHeight(self.chain_label.fontMetrics().lineSpacing() * 2 + 2)
        self.chain_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        self.checklist = PcrChecklist(PCR_MEANINGS, self)
        self.checklist.changed.connect(self._on_pcrs_changed)
        self.tree = PcrEventTree(self)
        # A dozen rows at least: in a short window the page scrolls rather than squash the events to a slit.
        self.tree.setMinimumHeight(self.tree.fontMetrics().lineSpacing() * 12)

        style = self.style()
        self.compare_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_FileDialogContentsView),
            self.tr("Com&pare with event log…"), self,
        )  # fmt: skip
        self.compare_button.setObjectName("compareLog")
        self.compare_button.setToolTip(
            self.tr("Compare every predicted event with a TCG event log of a real boot "
                    "(/sys/kernel/security/tpm0/binary_bios_measurements)")
        )  # fmt: skip
        self.compare_button.clicked.connect(self.choose_event_log)
        self.test_boot_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), self.tr("&Test boot…"), self
        )
        self.test_boot_button.setObjectName("testBoot")
        self.test_boot_button.setToolTip(
            self.tr("Boot a built template on OVMF Secure Boot with a software TPM and compare its PCRs")
        )
        self.test_boot_button.clicked.connect(self.choose_test_boot_template)
        self.busy_bar = busy_bar(self, self.tr("Predicting"), max_width=80)
        keep = self.busy_bar.sizePolicy()
        keep.setRetainSizeWhenHidden(True)
        self.busy_bar.setSizePolicy(keep)
        self.summary_label = NoteLabel(self, name="comparisonSummary", selectable=True)
        self.summary_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.summary_label.setMinimumHeight(self.summary_label.fontMetrics().lineSpacing() * 2 + 2)
        self.summary_label.setAlignment(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        actions = QHBoxLayout()
        actions.addWidget(self.compare_button)
        actions.addWidget(self.test_boot_button)
        actions.addWidget(self.busy_bar)
        actions.addWidget(self.summary_label, 1)

        layout = self.body_layout()
        layout.setSpacing(5)
        layout.addWidget(self.firmware)
        layout.addWidget(self.chain_label)
        layout.addSpacing(2)
        layout.addWidget(self.checklist)
        layout.addWidget(self.error_panel)
        layout.addWidget(self.tree, 1)
        layout.addLayout(actions)

        chain: list[QWidget] = [
            self.profile_combo, self.choose_button, self.new_store_button, self.bank_combo,
            self.removable_check, *self.checklist.checks.values(), self.tree, self.compare_button,
            self.test_boot_button,
        ]  # fmt: skip
        for first, second in zip(chain, chain[1:], strict=False):
            QWidget.setTabOrder(first, second)

    # -- state <-> widgets ------------------------------------------------------------------------

    def _load_choice(self) -> None:
        """Show ``state.pcr`` and ``state.boot.install_removable``."""
        policy = self.state.pcr
        chosen = policy.firmware
        if chosen is not None:
            self._paths[chosen[0]] = Path(chosen[1])
        kind, path = chosen if chosen is not None else (None, None)
        self.firmware.show_choice(kind, path, policy.bank, bool(self.state.boot.install_removable))
        self.checklist.set_checked(policy.pcrs)

    def profile(self) -> tuple[str, Path] | None:
        """The firmware profile of the policy: (kind, path), or None."""
        return self.state.pcr.firmware

    def set_profile(self, kind: str | None, path: str | Path | None = None) -> None:
        """Predict on the firmware profile ``kind`` (``vars``, ``log``, ``certs``) at ``path``; None: no
        profile (PCR 11 only). A new profile drops the comparison with an event log."""
        policy = self.state.pcr
        for opt in FIRMWARE_OPTIONS:
            setattr(policy, opt.name, Path(path) if kind == profile_kind(opt) and path is not None else None)
        if kind is not None and path is not None:
            self._paths[kind] = Path(path)
        self._load_choice()
        self._policy_changed()

    def _on_kind_activated(self, kind: str | None) -> None:
        if kind is None:
            self.set_profile(None)
        elif kind in self._paths:
            self.set_profile(kind, self._paths[kind])
        else:
            self.choose_profile_file(kind)

    def choose_profile_file(self, kind: str | None = None) -> None:
        """Ask for the file (a folder for certificates) of the profile ``kind`` (default: the chosen one);
        closing the dialog without a choice keeps the profile as it was."""
        kind = kind or self.firmware.kind()
        if kind is None:
            return
        current = self._paths.get(kind)
        start = Path.home() if current is None else current.parent
        titles = {"vars": self.tr("Choose the target's OVMF variable store"),
                  "log": self.tr("Choose an event log of the target"),
                  "certs": self.tr("Choose the folder of the target's PK, KEK, db and dbx")}  # fmt: skip
        dialog = self.file_dialog(
            PROFILE_DIALOG, titles.get(kind, kind), start, lambda path: self.set_profile(kind, path),
            filters=PROFILE_FILTERS.get(kind, ()), select=str(current) if current is not None else None,
        )  # fmt: skip
        if kind == "certs":
            dialog.setFileMode(QFileDialog.FileMode.Directory)
            dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        # Closed without a choice: the combo shows the profile that is still in force.
        dialog.finished.connect(lambda _result: self._load_choice())

    # -- a new variable store -----------------------------------------------------------------------

    def open_new_store_dialog(self) -> NewTestStoreDialog:
        """Open (or raise) the non-blocking "New OVMF variable store" dialog, offering the Signing
        certificates page's UEFI certificate for db."""
        dialog = self.new_store_dialog
        if dialog is not None:
            dialog.raise_()
            dialog.activateWindow()
            return dialog
        uefi = self.state.uefi_signing
        certificate = uefi.signer.certificate if uefi is not None and uefi.signer is not None else None
        current = self._paths.get("vars")
        image = self.state.image_path
        directory = current.parent if current else image.parent if image else Path.home()
        dialog = NewTestStoreDialog(certificate, directory, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.submitted.connect(self.write_new_store)
        dialog.finished.connect(lambda _result: setattr(self, "new_store_dialog", None))
        self.new_store_dialog = dialog
        dialog.open()
        return dialog

    def write_new_store(self, request: NewStoreRequest) -> None:
        """Write the store in the background; once written it is the policy's firmware profile."""
        add_db = [request.add_db] if request.add_db is not None else []
        self.run_task(NEW_STORE, write_test_store, request.base, request.output, add_db=add_db,
                      overwrite=request.overwrite, on_success=lambda _made: self._on_store_written(request),
                      on_failure=self._on_store_failed, on_finished=self._on_store_done)  # fmt: skip

    def _on_store_written(self, request: NewStoreRequest) -> None:
        if self.new_store_dialog is not None:
            self.new_store_dialog.succeed()
        log.info("wrote the OVMF variable store %s (%s keys)", request.output, request.base)
        self.set_profile("vars", request.output)

    def _on_store_failed(self, error: ShieldwrightError) -> None:
        dialog = self.new_store_dialog
        if dialog is None:  # closed meanwhile: the page says it
            self.show_error(error)
            return
        dialog.show_error(error.message, error.hint)

    def _on_store_done(self) -> None:
        dialog = self.new_store_dialog
        if dialog is not None and dialog.is_busy():  # a bug, not the engine's refusal (see run_task)
            dialog.show_error(
                self.tr("The variable store could not be written because of an unexpected error."),
                self.tr("The details were written to the log."),
            )

    def _on_bank_chosen(self, bank: str) -> None:
        self.state.pcr.bank = bank
        self._policy_changed()

    def _on_removable_toggled(self, checked: bool) -> None:
        self.state.boot.install_removable = checked
        self.refresh_prediction()

    def _on_pcrs_changed(self) -> None:
        self.state.pcr.pcrs = self.checklist.checked()
        self._show()

    def _policy_changed(self) -> None:
        """The profile or the bank changed: the comparison was for another prediction."""
        self.clear_comparison()
        self.refresh_prediction()

    # -- predicting -------------------------------------------------------------------------------

    def initializePage(self) -> None:
        """Entering the page: show the state and predict again if anything it depends on changed."""
        self._load_choice()
        self.refresh_prediction()

    def _prediction_key(self) -> tuple[object, ...]:
        state, uki = self.state, self.state.uki.uki
        boot = state.boot
        return (
            str(state.image_path), id(state.layout), (len(uki), hash(uki)) if uki is not None else None,
            uki_id_of(state), (boot.uki_id, boot.vendor_dir, boot.install_removable), state.pcr.firmware,
            state.pcr.bank,
        )  # fmt: skip

    def _missing_input(self) -> tuple[str, str] | None:
        if self.state.image_path is None or self.state.layout is None:
            return self.tr("No base image is open."), self.tr("Open one on the Base image page.")
        if self.state.uki.uki is None:
            return (
                self.tr("No UKI has been built yet, so there is nothing to predict."),
                self.tr("Build it on the Boot image page: PCR 11 measures its sections, PCR 4 its hash."),
            )
        return None

    def refresh_prediction(self, *, force: bool = False) -> None:
        """Predict in the background for the present choices (superseding a running prediction), unless the
        shown prediction is already for them."""
        missing = self._missing_input()
        if missing is not None:
            self.cancel_task(PREDICT)
            self._prediction, self._error, self._predicted_for = None, None, None
            self.error_panel.show_error(*missing)
            self._show()
            return
        key = self._prediction_key()
        if key == self._predicted_for and not force:
            self._show()
            return
        state = self.state
        assert state.image_path is not None and state.layout is not None and state.uki.uki is not None
        policy, boot = copy.deepcopy(state.pcr), dataclasses.replace(state.boot)
        log.info("predicting the PCR policy (firmware %s, bank %s)", policy.firmware, policy.bank)
        self.run_task(
            PREDICT, predict_planned, state.image_path, state.layout, boot, uki_id_of(state), state.uki.uki,
            policy, on_success=lambda result: self._on_predicted(result, key),
            on_failure=lambda error: self._on_predict_failed(error, key),
            on_finished=self._on_predict_finished,
        )  # fmt: skip
        self._show()

    def _on_predicted(self, result: PolicyPrediction, key: tuple[object, ...]) -> None:
        self._prediction, self._error, self._predicted_for = result, None, key
        self.error_panel.clear()
        if self._log is not None:
            path, compared_for = self._log
            if compared_for == (self.state.pcr.firmware, self.state.pcr.bank):
                self._comparison = None
                self.compare_with(path)  # the same log, against the new prediction
            else:
                self.clear_comparison()

    def _on_predict_failed(self, error: ShieldwrightError, key: tuple[object, ...]) -> None:
        self._prediction, self._error, self._predicted_for = None, error, key
        self._comparison = None
        self.show_error(error)

    def _on_predict_finished(self) -> None:
        self._show()
        self.predictionFinished.emit()

    def prediction(self) -> PolicyPrediction | None:
        """The prediction shown (None while there is none, or it failed)."""
        return self._prediction

    # -- comparing with an event log ----------------------------------------------------------------

    def choose_event_log(self) -> None:
        start = self._log[0].parent if self._log is not None else Path.home()
        self.file_dialog(LOG_DIALOG, self.tr("Compare with an event log"), start, self.compare_with,
                         filters=LOG_FILTERS)  # fmt: skip

    def compare_with(self, path: str | Path) -> None:
        """Compare the prediction with the event log at ``path``, event by event (in the background)."""
        prediction = self._prediction
        if prediction is None:
            return
        policy = self.state.pcr
        self._log = (Path(path), (policy.firmware, policy.bank))
        self.error_panel.clear()
        self.run_task(
            COMPARE, compare_with_log, Path(path), prediction.events, policy.bank, prediction.predicted_pcrs,
            on_success=self._on_compared, on_failure=self._on_compare_failed,
            on_finished=self._on_compare_finished,
        )  # fmt: skip
        self._show()

    def _on_compared(self, comparison: LogComparison) -> None:
        self._comparison = comparison

    def _on_compare_failed(self, error: ShieldwrightError) -> None:
        self._comparison, self._log = None, None
        self.show_error(error)

    def _on_compare_finished(self) -> None:
        self._show()
        self.comparisonFinished.emit()

    def clear_comparison(self) -> None:
        self.cancel_task(COMPARE)
        self._comparison, self._log = None, None
        self._show()

    def comparison(self) -> LogComparison | None:
        return self._comparison

    # -- test boot --------------------------------------------------------------------------------

    def choose_test_boot_template(self) -> None:
        """Ask for a built template (the Review page's output when it exists), then boot it."""
        dialog = self.test_boot_dialog
        if dialog is not None and dialog.is_running():
            dialog.raise_()
            dialog.activateWindow()
            return
        output = self.state.output.path if self.state.output is not None else None
        built = output is not None and output.is_file()
        image = self.state.image_path
        start = output.parent if built and output is not None else image.parent if image else Path.home()
        self.file_dialog(TEMPLATE_DIALOG, self.tr("Choose the template to boot"), start, self.start_test_boot,
                         filters=TEMPLATE_FILTERS, select=str(output) if built else None)  # fmt: skip

    def start_test_boot(self, template: str | Path) -> TestBootDialog:
        """Boot ``template`` in a non-modal dialog: on the policy's variable store when the profile is one,
        else on the test boot's default firmware (Microsoft's keys + the UKI's signer in db)."""
        running = self.test_boot_dialog
        if running is not None and running.is_running():
            running.raise_()
            return running
        profile = self.profile()
        firmware_vars = profile[1] if profile is not None and profile[0] == "vars" else None
        note = ""
        if profile is not None and firmware_vars is None:
            note = self.tr("the chosen firmware profile is not a variable store, so it cannot be booted")
        dialog = TestBootDialog(
            self.runner, template, firmware_vars=firmware_vars, firmware_note=note, bank=self.state.pcr.bank,
            boot=self._test_boot, parent=self,
        )  # fmt: skip
        if running is not None:
            running.deleteLater()
        self.test_boot_dialog = dialog
        dialog.show()
        dialog.start()
        return dialog

    # -- showing ----------------------------------------------------------------------------------

    def _show(self) -> None:
        policy = self.state.pcr
        bank = self._prediction.banks[0] if self._prediction is not None else policy.bank
        self.tree.set_bank_label(BANK_LABELS.get(bank, bank))
        self.tree.show_groups(pcr_groups(self._prediction, policy, error=self._error,
                                         comparison=self._comparison))  # fmt: skip
        predicting, comparing = self.task(PREDICT) is not None, self.task(COMPARE) is not None
        self.busy_bar.setVisible(predicting or comparing)
        self._show_chain(predicting)
        self._show_summary(comparing)
        self.compare_button.setEnabled(self._prediction is not None and not comparing)
        self.completeChanged.emit()

    def _show_chain(self, predicting: bool) -> None:
        prediction = self._prediction
        problems = policy_problems(self.state.pcr)
        if problems:
            self.chain_label.set_note("; ".join(problems), problem=True)
        elif predicting and prediction is None:
            self.chain_label.set_note(self.tr("Predicting…"))
        elif prediction is None:
            self.chain_label.set_note("")
        elif prediction.profile is None or prediction.chain is None:
            self.chain_label.set_note(self.tr(
                "No firmware profile: only PCR 11 is predicted, and the build will do the same. PCR 4 and 7 "
                "depend on the target firmware."
            ))  # fmt: skip
        else:
            text = "; ".join(prediction.chain.notes)
            described = prediction.profile.description
            self.chain_label.set_note(self.tr("Predicted on the %1: %2.").replace("%1", described)
                                      .replace("%2", text), plain=True)  # fmt: skip

    def _show_summary(self, comparing: bool) -> None:
        comparison = self._comparison
        if comparing:
            self.summary_label.set_note(self.tr("Comparing with the event log…"))
        elif comparison is not None:
            head = self.tr("Compared with %1:").replace("%1", comparison.path.name)
            self.summary_label.set_note(f"{head} {comparison_summary(comparison)}.", plain=True)
            self.summary_label.setToolTip(str(comparison.path))
        else:
            self.summary_label.set_note(self.tr("Compare with an event log of a real boot to see which "
                                                "events differ."))  # fmt: skip
            self.summary_label.setToolTip("")

    # -- QWizardPage ------------------------------------------------------------------------------

    def isComplete(self) -> bool:
        """Next needs a prediction of the present choices, except that without a firmware profile a PCR 11
        the engine cannot predict only costs a note in the build (as there)."""
        if self.is_busy() or self._missing_input() is not None or policy_problems(self.state.pcr):
            return False
        if self._predicted_for != self._prediction_key():
            return False
        return self._prediction is not None or self.state.pcr.firmware is None
