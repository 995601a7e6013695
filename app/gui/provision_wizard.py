"""The *Provision a VM disk* wizard: a template, the VM's vTPM, the PCR policy, the passphrase and output,
then the provisioning with progress and Cancel, and the result - ``shieldwright provision`` as a wizard.

A :class:`app.gui.step_wizard.StepWizard` (its look, step list and close rules), pages by id. It shares the
application's :class:`TaskRunner` but stops only its own pages' tasks; the template wizard's Finished page
opens it non-modally on the template just built, and it is constructible on its own.
"""

from __future__ import annotations

from enum import IntEnum

from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QWidget

from app.gui.provision_state import ProvisionState
from app.gui.step_wizard import StepWizard
from app.gui.tasks import TaskRunner
from wizard_pages.provision_done import ProvisionDonePage
from wizard_pages.provision_output import ProvisionOutputPage
from wizard_pages.provision_policy import ProvisionPolicyPage
from wizard_pages.provision_run import ProvisionRunPage
from wizard_pages.provision_target import ProvisionTargetPage
from wizard_pages.provision_template import ProvisionTemplatePage

__all__ = ["ProvisionPageId", "ProvisionState", "ProvisionWizard"]


class ProvisionPageId(IntEnum):
    """Page ids, spaced so pages can be inserted later without renumbering (shielding data, say)."""

    TEMPLATE = 10
    TARGET = 20
    POLICY = 30
    OUTPUT = 40
    PROVISION = 50
    DONE = 60


def step_titles() -> dict[int, str]:
    """The side panel's names for the steps, in order."""

    def tr(text: str) -> str:
        return QCoreApplication.translate("ProvisionWizard", text)

    return {
        ProvisionPageId.TEMPLATE: tr("Template"),
        ProvisionPageId.TARGET: tr("Target vTPM"),
        ProvisionPageId.POLICY: tr("PCR policy"),
        ProvisionPageId.OUTPUT: tr("Passphrase, output"),
        ProvisionPageId.PROVISION: tr("Provision"),
        ProvisionPageId.DONE: tr("Done"),
    }


class ProvisionWizard(StepWizard):
    """Provision a VM disk from a template. Pages share one :class:`ProvisionState`."""

    def __init__(
        self, runner: TaskRunner, state: ProvisionState | None = None, parent: QWidget | None = None
    ) -> None:
        title = QCoreApplication.translate("ProvisionWizard", "Shieldwright — Provision a VM Disk")
        super().__init__(runner, "provisionWizard", title, parent)
        self.state = state or ProvisionState()

        self.template_page = ProvisionTemplatePage(self.state, runner, self)
        self.setPage(ProvisionPageId.TEMPLATE, self.template_page)
        self.target_page = ProvisionTargetPage(self.state, runner, self)
        self.setPage(ProvisionPageId.TARGET, self.target_page)
        self.policy_page = ProvisionPolicyPage(self.state, runner, self)
        self.setPage(ProvisionPageId.POLICY, self.policy_page)
        self.output_page = ProvisionOutputPage(self.state, runner, self)
        self.setPage(ProvisionPageId.OUTPUT, self.output_page)
        self.run_page = ProvisionRunPage(self.state, runner, self)
        self.setPage(ProvisionPageId.PROVISION, self.run_page)
        self.done_page = ProvisionDonePage(self.state, runner, self)
        self.setPage(ProvisionPageId.DONE, self.done_page)
        self.run_page.closeRequested.connect(self._close_after_run)
        self.run_page.provisionFinished.connect(self._on_provision_finished)
        self.setStartId(ProvisionPageId.TEMPLATE)
        self.show_steps(step_titles)

    def page_shown(self, page_id: int) -> None:
        if page_id == ProvisionPageId.PROVISION:
            # Provisioning verifies the template itself: a verification still running would only compete.
            self.template_page.stop_verifying()

    def _on_provision_finished(self) -> None:
        if self.state.result is not None:  # the passphrase did its work
            self.output_page.clear_secrets()
            self.state.clear_secrets()

    def is_running(self) -> bool:
        return self.run_page.is_running()

    def unsaved_work(self) -> list[str]:
        """What closing now would lose, in words (empty: nothing)."""
        if self.state.result is None and len(self.visitedIds()) > 1:
            return [self.tr("your choices in Provision a VM disk (nothing was provisioned yet)")]
        return []

    def run_may_close(self) -> bool:
        """No provisioning runs; during one the Provision page asks (inline) and closes us once stopped."""
        return self.run_page.request_close()

    def terminate(self) -> None:
        """Close for a stop signal: a run is cancelled without asking; we close once it has cleaned up."""
        if self.run_page.stop_and_close():
            self.discard()

    def _close_after_run(self) -> None:
        self.discard()

    def done(self, result: int) -> None:
        # Stop this wizard's own work only: the runner is shared with the template wizard.
        for page in (self.template_page, self.target_page, self.policy_page, self.output_page, self.run_page,
                     self.done_page):  # fmt: skip
            page.cancel_tasks()
        self.output_page.clear_secrets()
        self.state.clear_secrets()
        super().done(result)
