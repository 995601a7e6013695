"""The *Shielding Data* wizard: the file and policy, the owner and guardians, the volume ID qualifiers, the
specialization values, a review, then the generation - ``shieldwright shield create`` as a wizard, after
Microsoft's Shielding Data File wizard.

A :class:`app.gui.step_wizard.StepWizard` (its look, step list and close rules), pages by id. It shares the
application's :class:`TaskRunner` but stops only its own pages' tasks; the template wizard's Finished page
opens it non-modally with the template just built as a qualifier, and it is constructible on its own.
"""

from __future__ import annotations

from enum import IntEnum

from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QWidget

from app.gui.shielding_state import ShieldingState
from app.gui.step_wizard import StepWizard
from app.gui.tasks import TaskRunner
from wizard_pages.shielding_common import ShieldingPage
from wizard_pages.shielding_file import ShieldingFilePage
from wizard_pages.shielding_generate import ShieldingGeneratePage
from wizard_pages.shielding_guardians import ShieldingGuardiansPage
from wizard_pages.shielding_qualifiers import ShieldingQualifiersPage
from wizard_pages.shielding_review import ShieldingReviewPage
from wizard_pages.shielding_values import ShieldingValuesPage

__all__ = ["ShieldingPageId", "ShieldingState", "ShieldingWizard"]


class ShieldingPageId(IntEnum):
    FILE = 10
    GUARDIANS = 20
    QUALIFIERS = 30
    VALUES = 40
    REVIEW = 50
    GENERATE = 60


def step_titles() -> dict[int, str]:
    """The side panel's names for the steps, in order."""

    def tr(text: str) -> str:
        return QCoreApplication.translate("ShieldingWizard", text)

    return {
        ShieldingPageId.FILE: tr("File and policy"),
        ShieldingPageId.GUARDIANS: tr("Owner, guardians"),
        ShieldingPageId.QUALIFIERS: tr("Qualifiers"),
        ShieldingPageId.VALUES: tr("Specialization"),
        ShieldingPageId.REVIEW: tr("Review"),
        ShieldingPageId.GENERATE: tr("Generate"),
    }


class ShieldingWizard(StepWizard):
    """Create shielding data. Pages share one :class:`ShieldingState`."""

    def __init__(
        self, runner: TaskRunner, state: ShieldingState | None = None, parent: QWidget | None = None
    ) -> None:
        title = QCoreApplication.translate("ShieldingWizard", "Shieldwright — Shielding Data")
        super().__init__(runner, "shieldingWizard", title, parent)
        self.state = state or ShieldingState()

        self.file_page = ShieldingFilePage(self.state, runner, self)
        self.setPage(ShieldingPageId.FILE, self.file_page)
        self.guardians_page = ShieldingGuardiansPage(self.state, runner, self)
        self.setPage(ShieldingPageId.GUARDIANS, self.guardians_page)
        self.qualifiers_page = ShieldingQualifiersPage(self.state, runner, self)
        self.setPage(ShieldingPageId.QUALIFIERS, self.qualifiers_page)
        self.values_page = ShieldingValuesPage(self.state, runner, self)
        self.setPage(ShieldingPageId.VALUES, self.values_page)
        self.review_page = ShieldingReviewPage(self.state, runner, self)
        self.setPage(ShieldingPageId.REVIEW, self.review_page)
        self.generate_page = ShieldingGeneratePage(self.state, runner, self)
        self.setPage(ShieldingPageId.GENERATE, self.generate_page)
        self.generate_page.generateFinished.connect(self._on_generated)
        self.setStartId(ShieldingPageId.FILE)
        self.qualifiers_page.take_prefill()  # the template's catalog is read while the user starts
        self.show_steps(step_titles)

    def pages(self) -> tuple[ShieldingPage, ...]:
        return (self.file_page, self.guardians_page, self.qualifiers_page, self.values_page, self.review_page,
                self.generate_page)  # fmt: skip

    def _on_generated(self) -> None:
        if self.state.written is not None:  # the passphrase did its work
            self.values_page.clear_secrets()
            self.state.clear_secrets()

    def is_running(self) -> bool:
        """The shielding data file is being written."""
        return self.generate_page.is_busy()

    def unsaved_work(self) -> list[str]:
        """What closing now would lose, in words (empty: nothing)."""
        if self.state.written is None and len(self.visitedIds()) > 1:
            return [self.tr("your choices in Shielding Data (no file was generated yet)")]
        return []

    def terminate(self) -> None:
        """Close for a stop signal: whatever runs is cancelled (done() does it), without asking."""
        self.discard()

    def done(self, result: int) -> None:
        # Stop this wizard's own work only: the runner may be shared with the template wizard.
        for page in self.pages():
            page.cancel_tasks()
        self.values_page.clear_secrets()
        self.state.clear_secrets()
        super().done(result)
