"""The template disk wizard: a QWizard whose pages are added by id, with a step list on the side."""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QWidget, QWizard

from app.gui.provision_state import ProvisionState
from app.gui.provision_wizard import ProvisionWizard
from app.gui.shielding_state import ShieldingState
from app.gui.shielding_wizard import ShieldingWizard
from app.gui.state import WizardState
from app.gui.tasks import TaskRunner
from app.gui.widgets.step_list import StepList
from wizard_pages.base_image import BaseImagePage
from wizard_pages.boot_image import BootImagePage
from wizard_pages.catalog import CatalogPage
from wizard_pages.certificates import CertificatesPage
from wizard_pages.encryption import EncryptionPage
from wizard_pages.finished import FinishedPage
from wizard_pages.generate import GeneratePage
from wizard_pages.pcr_policy import PcrPolicyPage
from wizard_pages.review import ReviewPage

__all__ = ["PageId", "ShieldwrightWizard", "StepList", "WizardState"]


class PageId(IntEnum):
    """Page ids, spaced so pages can be inserted later without renumbering."""

    BASE_IMAGE = 10
    CERTIFICATES = 20
    BOOT_IMAGE = 30
    PCR_POLICY = 40
    ENCRYPTION = 50
    CATALOG = 60
    REVIEW = 70
    BUILD = 80
    SUMMARY = 90


def step_titles() -> dict[int, str]:
    """The side panel's names for every step of the process, in order."""

    def tr(text: str) -> str:
        return QCoreApplication.translate("ShieldwrightWizard", text)

    return {
        PageId.BASE_IMAGE: tr("Base image"),
        PageId.CERTIFICATES: tr("Certificates"),
        PageId.BOOT_IMAGE: tr("Boot image"),
        PageId.PCR_POLICY: tr("PCR policy"),
        PageId.ENCRYPTION: tr("Encryption"),
        PageId.CATALOG: tr("Signature catalog"),
        PageId.REVIEW: tr("Review"),
        PageId.BUILD: tr("Generate"),
        PageId.SUMMARY: tr("Summary"),
    }


class ShieldwrightWizard(QWizard):
    """The template disk wizard. Pages share one :class:`WizardState` and one :class:`TaskRunner`."""

    def __init__(
        self, runner: TaskRunner, state: WizardState | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.runner = runner
        self.state = state or WizardState()
        self.setObjectName("shieldwrightWizard")
        self.setWindowTitle(self.tr("Shieldwright — Template Disk Wizard"))
        # ClassicStyle keeps the native look on Linux (Picard uses ModernStyle only on Windows).
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.NoDefaultButton, False)
        self.setMinimumSize(960, 640)

        self.base_image_page = BaseImagePage(self.state, runner, self)
        self.setPage(PageId.BASE_IMAGE, self.base_image_page)
        self.certificates_page = CertificatesPage(self.state, runner, self)
        self.setPage(PageId.CERTIFICATES, self.certificates_page)
        self.boot_image_page = BootImagePage(self.state, runner, self)
        self.setPage(PageId.BOOT_IMAGE, self.boot_image_page)
        self.pcr_policy_page = PcrPolicyPage(self.state, runner, self)
        self.setPage(PageId.PCR_POLICY, self.pcr_policy_page)
        self.encryption_page = EncryptionPage(self.state, runner, self)
        self.setPage(PageId.ENCRYPTION, self.encryption_page)
        self.catalog_page = CatalogPage(self.state, runner, self)
        self.setPage(PageId.CATALOG, self.catalog_page)
        self.review_page = ReviewPage(self.state, runner, self)
        self.setPage(PageId.REVIEW, self.review_page)
        self.generate_page = GeneratePage(self.state, runner, self)
        self.setPage(PageId.BUILD, self.generate_page)
        self.finished_page = FinishedPage(self.state, runner, self)
        self.setPage(PageId.SUMMARY, self.finished_page)
        # Closing during a build asks first (inline, no nested loop); the page closes us once stopped.
        self.generate_page.closeRequested.connect(self._close_after_build)
        #: The Provision a VM disk wizard the Finished page opened (non-modal), if any.
        self.provision_wizard: ProvisionWizard | None = None
        self.finished_page.provisionRequested.connect(self.open_provision_wizard)
        #: The Shielding Data wizard the Finished page opened (non-modal), if any.
        self.shielding_wizard: ShieldingWizard | None = None
        self.finished_page.shieldingRequested.connect(self.open_shielding_wizard)
        self.setStartId(PageId.BASE_IMAGE)

        self.steps = StepList(step_titles, self)
        self.setSideWidget(self.steps)
        self.currentIdChanged.connect(self._on_page_changed)

    def open_image(self, path: str | Path) -> None:
        """Open ``path`` on the Base image page (used for the command-line argument)."""
        self.base_image_page.open_image(path)

    def _on_page_changed(self, page_id: int) -> None:
        visited = [i for i in self.visitedIds() if i != page_id]
        self.steps.set_current(page_id if page_id != -1 else None, visited)

    def open_provision_wizard(self, state: ProvisionState | None = None) -> ProvisionWizard:
        """Show the Provision a VM disk wizard (non-modal) on ``state``; while one is open it is raised."""
        self.provision_wizard = _one_window(
            self.provision_wizard, lambda: ProvisionWizard(self.runner, state, self)
        )
        return self.provision_wizard

    def open_shielding_wizard(self, state: ShieldingState | None = None) -> ShieldingWizard:
        """Show the Shielding Data wizard (non-modal) on ``state``; while one is open it is raised."""
        self.shielding_wizard = _one_window(
            self.shielding_wizard, lambda: ShieldingWizard(self.runner, state, self)
        )
        return self.shielding_wizard

    def _provisioning_may_close(self) -> bool:
        """No provisioning is running; else the provision wizard asks (inline) and is raised."""
        provision = self.provision_wizard
        if provision is None or not provision.is_running():
            return True
        provision.request_close()
        provision.raise_()
        provision.activateWindow()
        return False

    def reject(self) -> None:
        # Cancel, Escape and the window's close button all come here: a running build must not just vanish.
        if not self.generate_page.request_close() or not self._provisioning_may_close():
            return
        super().reject()

    def accept(self) -> None:
        if not self._provisioning_may_close():
            return
        super().accept()

    def terminate(self) -> None:
        """Close for a stop signal: a running build is cancelled without asking, and we close once it has
        stopped (its staging files removed), never leaving it half-done behind a vanished window."""
        if self.provision_wizard is not None:
            self.provision_wizard.terminate()
        if self.generate_page.stop_and_close():
            super().reject()

    def _close_after_build(self) -> None:
        super().reject()

    def done(self, result: int) -> None:
        # Closing the wizard stops whatever it started; the application shuts the executor down.
        self.runner.cancel_all()
        # The LUKS passphrase and recovery key live only as long as the wizard (best effort wipe).
        self.encryption_page.clear_secrets()
        self.state.clear_secrets()
        if self.provision_wizard is not None and self.provision_wizard.isVisible():
            self.provision_wizard.done(result)  # its passphrase goes too
        if self.shielding_wizard is not None and self.shielding_wizard.isVisible():
            self.shielding_wizard.done(result)
        super().done(result)


W = TypeVar("W", bound=QWidget)


def _one_window(current: W | None, make: Callable[[], W]) -> W:
    """One non-modal window at a time: raise ``current`` while it is shown, else show a new one."""
    if current is not None and current.isVisible():
        current.raise_()
        current.activateWindow()
        return current
    if current is not None:
        current.deleteLater()
    window = make()
    window.show()
    return window
