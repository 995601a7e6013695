"""The shared "long operation" panel: step, bar, ``NN% — done of total — rate — time left``, two-stage Cancel.

It follows a :class:`~app.gui.tasks.BackgroundTask` started ``with_progress=True`` (its ~10 Hz
``progressChanged``) and says "estimating…" until the rate is known (gui.md §1.3). Cancel asks inline
(*Stop* / *Keep running*: no modal dialog, so no nested event loop under qasync), then emits
:attr:`ProgressPanel.cancelRequested` and shows "Stopping…" until the task ends; the owner cancels.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.gui.presentation import human_size

if TYPE_CHECKING:
    from app.gui.tasks import BackgroundTask
    from app.progress import ProgressState

#: The bar's resolution (0.1 %).
BAR_MAXIMUM = 1000
#: Rate and time left are shown only after this long, so a slow first read does not mislead.
ESTIMATE_AFTER_S = 1.0


def human_duration(seconds: float) -> str:
    """``3 s``, ``1 min 20 s``, ``12 min``, ``2 h 5 min``: coarser as it gets longer."""
    s = max(1, math.ceil(seconds))
    if s < 60:
        return f"{s} s"
    minutes, sec = divmod(s, 60)
    if minutes < 10:
        return f"{minutes} min {sec} s" if sec else f"{minutes} min"
    if minutes < 60:
        return f"{minutes + (sec >= 30)} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


class ProgressPanel(QFrame):
    """Step label, progress bar, one line of numbers, and a two-stage Cancel. Hidden when idle."""

    #: The user confirmed the stop; the owner should cancel the task (the panel shows "Stopping…").
    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("progressPanel")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName(self.tr("Progress"))
        self.setAccessibleDescription(
            self.tr(
                "The operation under way: its step, a progress bar, how much is done and the time left, "
                "and Cancel, which asks before it stops"
            )
        )
        self._task: BackgroundTask | None = None
        self._unit = "bytes"
        self._stopping = False
        self._started = 0.0

        self.step_label = QLabel(self)
        self.step_label.setObjectName("progressStep")
        self.step_label.setTextFormat(Qt.TextFormat.PlainText)
        font = self.step_label.font()
        font.setBold(True)
        self.step_label.setFont(font)

        self.bar = QProgressBar(self)
        self.bar.setRange(0, BAR_MAXIMUM)
        self.bar.setTextVisible(False)
        self.bar.setAccessibleName(self.tr("Progress"))  # the operation's title once it starts
        self.bar.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

        self.detail_label = QLabel(self)
        self.detail_label.setObjectName("progressDetail")
        self.detail_label.setTextFormat(Qt.TextFormat.PlainText)

        self.cancel_button = QPushButton(self.tr("&Cancel"), self)
        self.cancel_button.setObjectName("progressCancel")
        self.cancel_button.clicked.connect(self.request_cancel)

        # The inline confirmation (stage two), hidden until Cancel is clicked.
        self.confirm_label = QLabel(self)
        self.confirm_label.setObjectName("progressConfirm")
        self.confirm_label.setTextFormat(Qt.TextFormat.PlainText)
        self.stop_button = QPushButton(self.tr("&Stop"), self)
        self.stop_button.setObjectName("progressStop")
        self.stop_button.clicked.connect(self.confirm_cancel)
        self.keep_button = QPushButton(self.tr("&Keep running"), self)
        self.keep_button.setObjectName("progressKeep")
        self.keep_button.clicked.connect(self.keep_running)

        top = QHBoxLayout()
        top.setSpacing(8)
        top.addWidget(self.step_label, 1)
        top.addWidget(self.confirm_label)
        top.addWidget(self.stop_button)
        top.addWidget(self.keep_button)
        top.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.bar)
        layout.addWidget(self.detail_label)
        self.detail_label.setForegroundRole(QPalette.ColorRole.WindowText)

        QWidget.setTabOrder(self.stop_button, self.keep_button)
        QWidget.setTabOrder(self.keep_button, self.cancel_button)
        self.set_confirm_text(self.tr("Stop now?"))
        self._show_confirm(False)
        self.hide()

    # -- public API -------------------------------------------------------------------------------

    @property
    def task(self) -> BackgroundTask | None:
        return self._task

    @property
    def running(self) -> bool:
        return self._task is not None

    @property
    def stopping(self) -> bool:
        """Stop was confirmed and the task has not finished yet."""
        return self._stopping

    def set_confirm_text(self, text: str) -> None:
        """The question of the second stage, e.g. "Stop hashing?"."""
        self.confirm_label.setText(text)

    def start(self, task: BackgroundTask, title: str, *, unit: str = "bytes") -> None:
        """Show the panel for ``task`` (started ``with_progress=True``) until its ``finished``.

        ``unit`` is ``"bytes"`` (sizes and a rate), ``"items"`` (plain "k of n") or ``"percent"`` (only the
        share done: the counts mean nothing to a reader).
        """
        if self._task is not None:
            self._disconnect(self._task)
        self._task = task
        self._unit = unit
        self._stopping = False
        self._started = time.monotonic()
        self.step_label.setText(title)
        self.bar.setAccessibleName(title)
        self.bar.setRange(0, 0)  # busy until the first report says how much there is
        self.detail_label.setText(self.tr("Starting…"))
        self.cancel_button.setText(self.tr("&Cancel"))
        self.cancel_button.setEnabled(True)
        self.cancel_button.setAccessibleName(self.tr("Cancel %1").replace("%1", title))
        self._show_confirm(False)
        task.progressChanged.connect(self.update_progress)
        task.finished.connect(self._on_finished)
        self.show()

    def update_progress(self, state: ProgressState) -> None:
        """Show ``state`` (called ~10 Hz by the task; cheap)."""
        if state.total <= 0:
            self.bar.setRange(0, 0)
            if not self._stopping:
                self.detail_label.setText(state.step or self.tr("Starting…"))
            return
        if self.bar.maximum() != BAR_MAXIMUM:
            self.bar.setRange(0, BAR_MAXIMUM)
        value = round(state.fraction * BAR_MAXIMUM)
        if value != self.bar.value():
            self.bar.setValue(value)
        if not self._stopping:
            self.detail_label.setText(self.describe(state))

    def describe(self, state: ProgressState) -> str:
        """``NN% — 1.2 GiB of 4 GiB — 850 MiB/s — about 3 s left`` (or "estimating…")."""
        percent = math.floor(state.fraction * 100)
        parts = [f"{percent}%"]
        if self._unit == "bytes":
            parts.append(
                self.tr("%1 of %2")
                .replace("%1", human_size(state.done))
                .replace("%2", human_size(state.total))
            )
        elif self._unit == "items":
            parts.append(
                self.tr("%1 of %2").replace("%1", f"{state.done:,}").replace("%2", f"{state.total:,}")
            )
        eta = state.eta()
        known = eta is not None and time.monotonic() - self._started >= ESTIMATE_AFTER_S
        if known and self._unit == "bytes":
            parts.append(self.tr("%1/s").replace("%1", human_size(round(state.rate()))))
        if state.done >= state.total:
            parts.append(self.tr("finishing…"))
        elif known:
            assert eta is not None
            parts.append(self.tr("about %1 left").replace("%1", human_duration(eta)))
        else:
            parts.append(self.tr("estimating…"))
        return " — ".join(parts)

    # -- two-stage cancel -------------------------------------------------------------------------

    def request_cancel(self) -> None:
        """Stage one: ask inline whether to stop."""
        if self._task is None or self._stopping:
            return
        self._show_confirm(True)
        self.keep_button.setFocus(Qt.FocusReason.OtherFocusReason)

    def keep_running(self) -> None:
        self._show_confirm(False)
        self.cancel_button.setFocus(Qt.FocusReason.OtherFocusReason)

    def confirm_cancel(self) -> None:
        """Stage two: emit :attr:`cancelRequested` and say "Stopping…" until the task finishes."""
        if self._task is None or self._stopping:
            return
        self._stopping = True
        self._show_confirm(False)
        self.cancel_button.setText(self.tr("Stopping…"))
        self.cancel_button.setEnabled(False)
        self.detail_label.setText(self.tr("Stopping… waiting for the current work to finish."))
        self.cancelRequested.emit()

    # -- internals --------------------------------------------------------------------------------

    def _show_confirm(self, visible: bool) -> None:
        for w in (self.confirm_label, self.stop_button, self.keep_button):
            w.setVisible(visible)
        self.cancel_button.setVisible(not visible)

    def _disconnect(self, task: BackgroundTask) -> None:
        task.progressChanged.disconnect(self.update_progress)
        task.finished.disconnect(self._on_finished)

    def _on_finished(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._disconnect(task)
        self._stopping = False
        self._show_confirm(False)
        self.hide()
