"""What the three wizards share (Template Disk, Provision a VM Disk, Shielding Data): the look, the step
list at the side, and a close that loses nothing unasked.

A wizard adds its pages, then calls :meth:`StepWizard.show_steps`. It says whether what it runs lets it
close now (:meth:`StepWizard.run_may_close`: a running build or provisioning asks inline, and closes the
wizard itself once stopped) and what a close would lose (:meth:`StepWizard.unsaved_work`). Cancel, Escape
and the close button then ask before discarding that (:func:`app.gui.discard.ask_to_discard`), unless
:attr:`StepWizard.confirm_discard` is off.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QWidget, QWizard

from app.gui.discard import ask_to_discard
from app.gui.tasks import TaskRunner
from app.gui.widgets.step_list import StepList


class StepWizard(QWizard):
    """A QWizard with Shieldwright's look, a :class:`StepList` and the close rules above."""

    def __init__(self, runner: TaskRunner, object_name: str, title: str, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.runner = runner
        #: Cancel, Escape and the close button ask before discarding (see :meth:`unsaved_work`).
        self.confirm_discard = True
        self.setObjectName(object_name)
        self.setWindowTitle(title)
        # ClassicStyle keeps the native look on Linux (Picard uses ModernStyle only on Windows).
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.NoDefaultButton, False)
        # No minimum size set here: QWizard keeps it at what the pages need, and their bodies scroll.
        # The window fits 800×600, and 1920×1080 at 200 % (tests/gui/test_geometry.py).

    def show_steps(self, titles: Callable[[], dict[int, str]]) -> None:
        """Put the step list at the side (``titles``: the steps' names by page id, in order); it follows
        the current page and marks the visited ones."""
        self.steps = StepList(titles, self)
        self.setSideWidget(self.steps)
        self.currentIdChanged.connect(self._on_page_changed)

    def _on_page_changed(self, page_id: int) -> None:
        visited = [i for i in self.visitedIds() if i != page_id]
        self.steps.set_current(page_id if page_id != -1 else None, visited)
        self.page_shown(page_id)

    def page_shown(self, page_id: int) -> None:
        """Page ``page_id`` became the current one (-1: none), for a wizard that reacts to it."""

    def run_may_close(self) -> bool:
        """Nothing running stops a close now; else what runs asks (inline) and this returns False."""
        return True

    def unsaved_work(self) -> list[str]:
        """What closing now would lose, in words (empty: nothing)."""
        return []

    def reject(self) -> None:
        # Cancel, Escape and the window's close button all come here.
        if not self.run_may_close():
            return
        if not self.confirm_discard:
            self.discard()
            return
        ask_to_discard(self, self.unsaved_work(), self.discard, action=self.tr("Close this wizard"))

    def discard(self) -> None:
        """Close without asking (the caller asked); what ran must have been stopped first."""
        QWizard.reject(self)
