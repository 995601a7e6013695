"""The base of every wizard page: shared state, background tasks, an inline error panel, file dialogs.

Picard's ``SetupWizardPage`` is the model. What every page did by hand - keep the wizard's state and task
runner, start an engine call off the GUI thread and route its outcome back, supersede a running call with a
newer one, say "unexpected error, see the log" for a bug, keep one non-blocking file dialog per purpose, and
tell the wizard that completeness may have changed - lives here once. Pages lay out their own widgets
(including :attr:`error_panel`) and call the engine for every rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

from PySide6.QtCore import QEvent, QSize, Qt, QUrl
from PySide6.QtWidgets import QBoxLayout, QFileDialog, QFrame, QScrollArea, QVBoxLayout, QWidget, QWizardPage

from app.errors import ShieldwrightError
from app.gui.file_dialogs import open_file_dialog
from app.gui.state import WizardState
from app.gui.tasks import BackgroundTask, TaskRunner
from app.gui.widgets.error_panel import ErrorPanel

log = logging.getLogger(__name__)

Slot = Callable[..., Any]
BoxLayout = TypeVar("BoxLayout", bound=QBoxLayout)


class _BodyContents(QWidget):
    """What a :class:`PageBody` scrolls. QScrollArea makes a widget whose layout wraps text at least as tall
    as its *preferred* height for the width; this one asks for its minimum height for the width, so tables
    and text views shrink to their minimum before the page scrolls - as they did before it could."""

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt's name
        layout = self.layout()
        if layout is None:
            return super().heightForWidth(width)
        return layout.totalMinimumHeightForWidth(width)


class PageBody(QScrollArea):
    """A page's contents, scrolling vertically when the window is too short for them (800×600, or a laptop
    at 200 %) instead of making the window taller than the screen.

    It looks like no scroll area at all: no frame, no background of its own, no Tab stop. It scrolls only
    up and down: its minimum width is what the contents need, so a narrow window cuts nothing off at the
    side - the wizard, and the window, cannot get narrower than that.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pageBody")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the page's own controls are the Tab stops
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        #: The widget that scrolls: the page's widgets are laid out in it.
        self.contents = _BodyContents(self)
        self.contents.setObjectName("pageBodyContents")
        self.setWidget(self.contents)
        # Transparent: the page's background shows through, as before the page scrolled.
        self.viewport().setAutoFillBackground(False)
        self.contents.setAutoFillBackground(False)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        """As wide as the contents need, with room for the vertical scroll bar; any height (it scrolls)."""
        hint = super().minimumSizeHint()
        need = self.contents.minimumSizeHint().expandedTo(self.contents.minimumSize()).width()
        need += self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()
        return QSize(max(hint.width(), need), hint.height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        """The contents' size hint as it is now (QScrollArea keeps the first one, and caps it)."""
        hint = self.contents.sizeHint()
        return QSize(
            hint.width() + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth(),
            hint.height() + 2 * self.frameWidth(),
        )

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.LayoutRequest:
            # The contents' layout changed (a panel shown, a longer text): the page's layout must ask
            # again how wide the body has to be.
            self.updateGeometry()
        return super().event(event)


class WizardPage(QWizardPage):
    """A page of the template wizard. Subclasses set their title and build their widgets."""

    def __init__(
        self, state: WizardState, runner: TaskRunner, parent: QWidget | None = None, *, title: str = "",
        subtitle: str = "",
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self.state = state
        self.runner = runner
        self.setTitle(title)
        self.setSubTitle(subtitle)
        #: The page's inline error box; the page puts it in its layout.
        self.error_panel = ErrorPanel(self)
        self._tasks: dict[str, BackgroundTask] = {}
        self._dialogs: dict[str, QFileDialog] = {}
        self._body: PageBody | None = None

    @overload
    def body_layout(self) -> QVBoxLayout: ...
    @overload
    def body_layout(self, kind: Callable[[QWidget], BoxLayout]) -> BoxLayout: ...
    def body_layout(self, kind: Callable[[QWidget], QBoxLayout] = QVBoxLayout) -> QBoxLayout:
        """The layout of the page's contents (a new ``kind`` of box layout), inside a :class:`PageBody` that
        scrolls when the window is short. Called once, where a page would lay itself out."""
        if self._body is not None:
            raise RuntimeError("the page's body is laid out already")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self._body = PageBody(self)
        outer.addWidget(self._body)
        return kind(self._body.contents)

    @property
    def body_area(self) -> PageBody | None:
        """The scroll area holding the page's contents (None until :meth:`body_layout`)."""
        return self._body

    # -- background tasks ---------------------------------------------------------------------------

    def run_task(
        self,
        key: str,
        fn: Callable[..., Any],
        *args: Any,
        on_success: Slot | None = None,
        on_failure: Slot | None = None,
        on_finished: Slot | None = None,
        with_progress: bool = False,
        **kwargs: Any,
    ) -> BackgroundTask:
        """Run ``fn(*args, **kwargs)`` in the app's executor as the page's ``key`` task.

        A running task of the same ``key`` is cancelled and forgotten first (its outcome never arrives).
        ``on_failure`` gets the :class:`ShieldwrightError`; without it the error panel shows it. A bug (any
        other exception) is shown as "unexpected error, see the log" once the task ends. ``on_finished``
        always comes last; :meth:`is_busy` is already False by then.
        """
        self.cancel_task(key)
        task = self.runner.start(fn, *args, name=key, with_progress=with_progress, **kwargs)
        self._tasks[key] = task

        def current(slot: Slot) -> Slot:  # a superseded task's outcome never reaches the page
            return lambda *a: slot(*a) if self._tasks.get(key) is task else None

        if on_success is not None:
            task.succeeded.connect(current(on_success))
        task.failed.connect(current(on_failure or self.show_error))
        task.finished.connect(current(lambda: self._task_done(key, task, on_finished)))
        self.completeChanged.emit()
        return task

    def _task_done(self, key: str, task: BackgroundTask, on_finished: Slot | None) -> None:
        del self._tasks[key]
        if task.error is not None and not isinstance(task.error, ShieldwrightError):
            # A bug: the excepthook logged it (and shows the details); say so where the user looks.
            self.error_panel.show_error(
                self.tr("The operation failed because of an unexpected error."),
                self.tr("The details were written to the log."),
            )
        if on_finished is not None:
            on_finished()
        self.completeChanged.emit()

    def task(self, key: str) -> BackgroundTask | None:
        """The running ``key`` task, if any."""
        return self._tasks.get(key)

    def cancel_task(self, key: str) -> None:
        """Cancel the running ``key`` task and forget it (nothing it reports reaches the page)."""
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
            self.completeChanged.emit()

    def cancel_tasks(self) -> None:
        for key in list(self._tasks):
            self.cancel_task(key)

    def is_busy(self) -> bool:
        """A background task of this page is running."""
        return bool(self._tasks)

    def show_error(self, error: ShieldwrightError) -> None:
        self.error_panel.show_error(error.message, error.hint)

    def open_on_desktop(self, opener: Callable[[QUrl], Any], path: Path, what: str) -> bool:
        """Hand ``path`` to the desktop (``opener`` is ``QDesktopServices.openUrl``); when nothing opens it
        (no desktop handler, no ``xdg-open``), say so with the path, selectable to copy. ``what`` names it
        ("the folder", "the report")."""
        if opener(QUrl.fromLocalFile(str(path))):
            return True
        log.warning("no application opened %s", path)
        self.error_panel.show_error(
            self.tr("No application on this desktop could open %1.").replace("%1", what),
            self.tr("Open it yourself: %1").replace("%1", str(path)),
        )
        return False

    # -- file dialogs -------------------------------------------------------------------------------

    def file_dialog(
        self,
        key: str,
        title: str,
        directory: Path | str,
        on_selected: Callable[[str], Any],
        *,
        filters: Sequence[str] = (),
        save: bool = False,
        select: str | None = None,
        confirm_overwrite: bool = True,
    ) -> QFileDialog:
        """A non-blocking file dialog, one per ``key`` (:func:`app.gui.file_dialogs.open_file_dialog`)."""
        return open_file_dialog(
            self, self._dialogs, key, title, directory, on_selected, filters=filters, save=save,
            select=select, confirm_overwrite=confirm_overwrite,
        )  # fmt: skip

    def open_dialog(self, key: str) -> QFileDialog | None:
        """The ``key`` file dialog while it is open (tests drive it)."""
        return self._dialogs.get(key)
