"""The page that runs a flow's one long task (Generate, Provision): Stop, and a close that waits for it.

Stop (the progress panel's button, or the wizard closing) ends the task at its next check, and the engine
removes what it wrote. Closing the wizard during the run asks inline, on the progress panel: a second
click confirms, *Keep running* takes it back. Once the task has stopped, :attr:`RunPage.closeRequested`
closes the wizard. A stop signal (SIGTERM, SIGHUP) cancels without asking. Nothing here is modal: a
dialog's own event loop must not run inside an async slot (qasync#59).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from PySide6.QtCore import Signal

from app.gui.page import WizardPage
from app.gui.widgets.progress_panel import ProgressPanel

log = logging.getLogger(__name__)


class RunPage(WizardPage):
    """A :class:`WizardPage` whose :attr:`progress_panel` shows the task named :attr:`RUN_TASK`.

    Entering the page starts the run (:meth:`start`); going back, which the page allows only after a
    failure or a cancel, stops it; Next is enabled once the run has left a :attr:`result`. A page sets the
    panel's question with :meth:`ask_before_stop` as it starts the task, connects the panel's *Keep
    running* to :meth:`keep_running`, and calls :meth:`close_if_asked` last when the task has finished."""

    #: The user asked to close the wizard during the run, confirmed, and the run has now stopped.
    closeRequested = Signal()
    #: The task's name in the page's runner.
    RUN_TASK: ClassVar[str]
    progress_panel: ProgressPanel
    #: What the last run produced (None: none yet, or it failed).
    result: Any = None
    _close_when_stopped = False

    def start(self) -> None:
        """Start the run on a snapshot of the choices (nothing while one runs)."""
        raise NotImplementedError

    def stop_question(self, closing: bool) -> str:
        """The panel's question before Stop (``closing``: the wizard is closing), e.g. "Stop generating?
        Nothing will be kept."."""
        raise NotImplementedError

    def initializePage(self) -> None:  # noqa: N802 - Qt's name
        self.start()

    def cleanupPage(self) -> None:  # noqa: N802 - Qt's name
        self.cancel()

    def isComplete(self) -> bool:  # noqa: N802 - Qt's name
        return not self.is_running() and self.result is not None

    def is_running(self) -> bool:
        return self.task(self.RUN_TASK) is not None

    def ask_before_stop(self) -> None:
        """A new run: no close is pending, and Stop asks the plain question."""
        self._close_when_stopped = False
        self.progress_panel.set_confirm_text(self.stop_question(closing=False))

    def cancel(self) -> None:
        """Ask the task to stop (cooperative: it ends at its next check and removes what it wrote)."""
        task = self.task(self.RUN_TASK)
        if task is not None:
            log.info("cancelling the %s task", self.RUN_TASK)
            task.cancel()

    def request_close(self) -> bool:
        """The wizard wants to close: True if it may now; else ask inline (two-stage) and close later."""
        if not self.is_running():
            return True
        panel = self.progress_panel
        if not panel.stopping:
            panel.set_confirm_text(self.stop_question(closing=True))
            panel.request_cancel()
        self._close_when_stopped = True
        return False

    def stop_and_close(self) -> bool:
        """A stop signal: cancel without asking. True if the wizard may close now; else
        :attr:`closeRequested` follows once the task has stopped and removed what it wrote."""
        if not self.is_running():
            return True
        self._close_when_stopped = True
        self.cancel()
        return False

    def keep_running(self) -> None:
        """*Keep running* on the panel: the close asked for is off."""
        self._close_when_stopped = False
        self.progress_panel.set_confirm_text(self.stop_question(closing=False))

    def close_if_asked(self) -> None:
        """The task has finished: close the wizard if that was asked during the run."""
        close, self._close_when_stopped = self._close_when_stopped, False
        if close:
            self.closeRequested.emit()
