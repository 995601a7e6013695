"""The template disk wizard: a QWizard whose pages are added by id, with a step list on the side.

It runs on its own or inside the frame (:mod:`app.gui.frame`), which opens it blank, on an image, or
filled from a saved recipe (:meth:`ShieldwrightWizard.from_recipe`), and which offers *Start over* and
*Build another* on its Summary page. Cancel, Escape and the close button ask before anything would be lost
(a generated passphrase shown only in this session, choices not saved as a recipe); during a build the
Generate page asks, inline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import QCoreApplication, Signal
from PySide6.QtWidgets import QWidget, QWizard

from app.errors import ShieldwrightError
from app.gui.provision_state import ProvisionState
from app.gui.provision_wizard import ProvisionWizard
from app.gui.recipe_state import state_from_recipe
from app.gui.shielding_state import ShieldingState
from app.gui.shielding_wizard import ShieldingWizard
from app.gui.state import WizardState
from app.gui.step_wizard import StepWizard
from app.gui.tasks import TaskRunner
from app.gui.widgets.step_list import StepList
from app.template.recipe import Recipe, RecipeError, SecretSource, read_secret
from wizard_pages.base_image import BaseImagePage
from wizard_pages.boot_image import BootImagePage
from wizard_pages.catalog import CatalogPage
from wizard_pages.certificates import CertificatesPage, Role
from wizard_pages.encryption import EncryptionPage
from wizard_pages.finished import FinishedPage
from wizard_pages.generate import GeneratePage
from wizard_pages.pcr_policy import PcrPolicyPage
from wizard_pages.review import ReviewPage

__all__ = ["PageId", "ShieldwrightWizard", "StepList", "WizardState"]

log = logging.getLogger(__name__)


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


class ShieldwrightWizard(StepWizard):
    """The template disk wizard. Pages share one :class:`WizardState` and one :class:`TaskRunner`."""

    #: *Start over* on the Summary page (shown when :attr:`offer_start_over`): the frame shows its start page.
    startOverRequested = Signal()
    #: *Build another* on the Summary page: the frame opens a new wizard filled from this recipe.
    buildAnotherRequested = Signal(object)
    #: A recipe given to :meth:`apply_recipe` is on every page: its image is inspected and its certificates
    #: are loaded (or failed to, which their pages say).
    recipeApplied = Signal()

    def __init__(
        self, runner: TaskRunner, state: WizardState | None = None, parent: QWidget | None = None
    ) -> None:
        title = QCoreApplication.translate("ShieldwrightWizard", "Shieldwright — Template Disk Wizard")
        super().__init__(runner, "shieldwrightWizard", title, parent)
        self.state = state or WizardState()
        #: Show *Start over* and *Build another* on the Summary page (the frame handles them).
        self.offer_start_over = False
        #: The recipe file this wizard was filled from, if any, and the recipe it held.
        self.opened_from: Path | None = None
        self.opened_recipe: Recipe | None = None
        #: Where a replay reads the signing keys' passphrases (no page chooses it): from the recipe given.
        self._key_passphrases: tuple[SecretSource, SecretSource | None] | None = None
        #: The recipe last saved from the frame's File menu (the Review page tracks its own button).
        self.saved_recipe: Recipe | None = None
        self._recipe_steps: set[str] = set()

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

        # Start over / Build another, on the Summary page only (and only inside the frame).
        self.setButtonText(QWizard.WizardButton.CustomButton1, self.tr("Start &over"))
        self.setButtonText(QWizard.WizardButton.CustomButton2, self.tr("Build &another…"))
        self.button(QWizard.WizardButton.CustomButton1).setToolTip(
            self.tr("Back to the start page: create another template, shielding data, or provision a disk")
        )
        self.button(QWizard.WizardButton.CustomButton2).setToolTip(
            self.tr(
                "A new template with the same choices (change the version or the output); the secrets are "
                "asked for again"
            )
        )
        self.customButtonClicked.connect(self._on_custom_button)

        self.show_steps(step_titles)

    # -- opening ----------------------------------------------------------------------------------

    @classmethod
    def from_recipe(
        cls, runner: TaskRunner, recipe: Recipe, parent: QWidget | None = None, *, path: Path | None = None
    ) -> ShieldwrightWizard:
        """A wizard with every page filled from ``recipe`` (read from ``path``, if from a file); its image
        is being inspected and its certificates loaded when this returns (:attr:`recipeApplied` follows)."""
        wizard = cls(runner, state_from_recipe(recipe), parent)
        wizard.opened_from = path
        wizard.opened_recipe = recipe if path is not None else None
        wizard._key_passphrases = (recipe.signing.key_passphrase, recipe.signing.catalog_key_passphrase)
        wizard.apply_recipe(recipe)
        return wizard

    def apply_recipe(self, recipe: Recipe) -> None:
        """Open the recipe's base image and load its certificates (asking for a key's passphrase if it is
        encrypted), and take the provisioning passphrase from the file or variable the recipe names - as a
        replay does. The state must come from :func:`~app.gui.recipe_state.state_from_recipe`."""
        log.info("filling the wizard from a recipe (base image %s)", recipe.base_image)
        self._recipe_steps = {"image", "certificates"}
        page = self.base_image_page
        page.inspectionFinished.connect(lambda: self._recipe_step_done("image"))
        self.open_image(recipe.base_image)

        signing = recipe.signing
        catalog = (signing.catalog_cert, signing.catalog_key) if signing.catalog_cert is not None else None
        self.load_certificates(
            (signing.uefi_cert, signing.uefi_key), catalog, lambda: self._recipe_step_done("certificates")
        )

        source = recipe.encryption.passphrase
        if source.kind in ("file", "env"):
            self._recipe_steps.add("passphrase")
            task = self.runner.start(
                read_secret, source, prompt_text="", interactive=False, key="encryption.passphrase",
                name="recipe-passphrase",
            )  # fmt: skip
            task.succeeded.connect(self._use_recipe_passphrase)
            task.failed.connect(self._recipe_passphrase_failed)
            task.finished.connect(lambda: self._recipe_step_done("passphrase"))

    def load_certificates(
        self,
        uefi: tuple[Path, Path | None],
        catalog: tuple[Path, Path | None] | None = None,
        on_done: Callable[[], object] | None = None,
    ) -> None:
        """Load the UEFI signing certificate (and key file), then the catalog's if it has its own (one
        passphrase prompt at a time); ``on_done`` once both loads ended, whatever their outcome."""
        certs = self.certificates_page
        certs.catalog_box.same_check.setChecked(catalog is None)

        def uefi_done() -> None:
            certs.uefi_box.loadFinished.disconnect(uefi_done)
            if catalog is not None:
                certs.catalog_box.loadFinished.connect(catalog_done)
                certs.load(Role.CATALOG, *catalog)
            elif on_done is not None:
                on_done()

        def catalog_done() -> None:
            certs.catalog_box.loadFinished.disconnect(catalog_done)
            if on_done is not None:
                on_done()

        certs.uefi_box.loadFinished.connect(uefi_done)
        certs.load(Role.UEFI, *uefi)

    def recipe_pending(self) -> bool:
        """A recipe given to :meth:`apply_recipe` is still being applied."""
        return bool(self._recipe_steps)

    def _recipe_step_done(self, step: str) -> None:
        if step in self._recipe_steps:
            self._recipe_steps.discard(step)
            if not self._recipe_steps:
                self.recipeApplied.emit()

    def _use_recipe_passphrase(self, secret: bytearray) -> None:
        box = self.encryption_page.passphrase_box
        try:
            text = secret.decode("utf-8")
        except UnicodeDecodeError:
            self._recipe_passphrase_failed(
                RecipeError("the provisioning passphrase is not UTF-8 text", "", key="encryption.passphrase")
            )
            return
        finally:
            secret[:] = bytes(len(secret))
        box.enter_radio.setChecked(True)
        box.passphrase_edit.setText(text)
        box.confirm_edit.setText(text)
        del text

    def _recipe_passphrase_failed(self, error: ShieldwrightError) -> None:
        self.encryption_page.error_panel.show_error(
            self.tr("The recipe's provisioning passphrase could not be read: %1").replace(
                "%1", error.message
            ),
            self.tr("Enter the passphrase below, or fix the file and open the recipe again."),
        )

    def open_image(self, path: str | Path) -> None:
        """Open ``path`` on the Base image page (used for the command-line argument)."""
        self.base_image_page.open_image(path)

    def page_shown(self, page_id: int) -> None:
        summary = page_id == PageId.SUMMARY and self.offer_start_over
        self.setOption(QWizard.WizardOption.HaveCustomButton1, summary)
        self.setOption(QWizard.WizardOption.HaveCustomButton2, summary)

    def _on_custom_button(self, which: int) -> None:
        button = QWizard.WizardButton(which)  # Qt passes the plain number
        if button == QWizard.WizardButton.CustomButton1:
            self.startOverRequested.emit()
        elif button == QWizard.WizardButton.CustomButton2:
            recipe = self.current_recipe()
            if recipe is not None:
                self.buildAnotherRequested.emit(recipe)

    def current_recipe(self) -> Recipe | None:
        """The recipe of the current choices, or None while one is missing. Where the signing keys'
        passphrases come from in a replay is not a page's choice: kept as the recipe opened said."""
        sources = self._key_passphrases
        try:
            if sources is None:
                return self.state.recipe()
            recipe = self.state.recipe(key_passphrase=sources[0])
        except ShieldwrightError:
            return None
        recipe.signing.catalog_key_passphrase = sources[1]
        return recipe

    # -- the other wizards --------------------------------------------------------------------------

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
        provision.run_may_close()
        provision.raise_()
        provision.activateWindow()
        return False

    # -- closing ------------------------------------------------------------------------------------

    def is_running(self) -> bool:
        """A build, or a provisioning this wizard opened, is running."""
        provision = self.provision_wizard
        return self.generate_page.is_running() or (provision is not None and provision.is_running())

    def unsaved_work(self) -> list[str]:
        """What closing now would lose, in words (empty: nothing)."""
        reasons: list[str] = []
        enc = self.state.encryption
        built = self.state.output is not None and self.state.output.result is not None
        if enc is not None and enc.passphrase and enc.passphrase_generated:
            reasons.append(
                self.tr("the generated provisioning passphrase of the template just built (shown only here)")
                if built
                else self.tr("the generated provisioning passphrase (shown only in this wizard)")
            )
        if (
            enc is not None
            and enc.recovery_key
            and enc.recovery_key_value
            and not enc.recovery_key_acknowledged
        ):
            reasons.append(self.tr("the recovery key, not confirmed as stored"))
        if not built and self.state.image_path is not None and not self.choices_saved():
            reasons.append(self.tr("your choices, not saved as a recipe (File › Save recipe…)"))
        for child in (self.provision_wizard, self.shielding_wizard):
            if child is not None and child.isVisible():
                reasons.extend(child.unsaved_work())
        return reasons

    def choices_saved(self) -> bool:
        """The current choices are in a recipe file saved from this wizard (Review or the File menu)."""
        if self.review_page.recipe_is_saved():
            return True
        current = self.current_recipe()
        return current is not None and current in (self.saved_recipe, self.opened_recipe)

    def run_may_close(self) -> bool:
        """No build or provisioning runs; else the one running asks (inline) and closes once stopped."""
        return self.generate_page.request_close() and self._provisioning_may_close()

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
            self.discard()

    def _close_after_build(self) -> None:
        self.discard()

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
