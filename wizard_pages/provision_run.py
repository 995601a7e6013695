"""Provision wizard, page 5: the provisioning runs - steps, progress, a two-stage Cancel - like Generate.

Entering the page runs :func:`~app.template.provision.provision` in the executor on the state's request and a
*copy* of the passphrase (wiped when the run ends) - or, with shielding data, on the passphrase and the
specialization values the task opens from it (:func:`~wizard_pages.provision_common.
run_provision_from_shielding_data`, which wipes that passphrase when the run ends). The engine reports into
its own progress object, which the page copies into the task's at the 10 Hz tick (steps whose work cannot be
counted show a busy bar); every step it begins is listed. A refusal (a template that fails verification, a
wrong passphrase, shielding data made for another template, …) is shown inline with the engine's hint; a
cancel or a failure leaves nothing behind, which the page checks and says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QStyle,
    QWidget,
)

from app.errors import CancelledError, ShieldwrightError
from app.gui.provision_state import ProvisionState, ShieldingSource
from app.gui.run_page import RunPage
from app.gui.tasks import TaskRunner
from app.gui.widgets.progress_panel import ProgressPanel, human_duration
from app.progress import ProgressState
from app.template.provision import ProvisionResult
from wizard_pages.provision_common import ProvisionPage, run_provision, run_provision_from_shielding_data

log = logging.getLogger(__name__)


class StepRecorder(ProgressState):
    """The engine's progress, remembering every step it began (a fast step may start and end between two
    of the page's 10 Hz looks; the list keeps it)."""

    def __init__(self) -> None:
        super().__init__()
        self.begun: list[str] = []

    def begin(self, step: str, total: int) -> None:
        super().begin(step, total)
        self.begun.append(step)  # one writer thread; list.append is atomic


class ProvisionRunPage(RunPage, ProvisionPage):
    """Runs the provisioning on entry; shows its steps, the current one's progress, and the outcome."""

    #: The run ended (succeeded, failed or cancelled) and the outcome is shown.
    provisionFinished = Signal()
    RUN_TASK = "provision"

    def __init__(
        self, state: ProvisionState, runner: TaskRunner, parent: QWidget | None = None, *,
        provisioner: Callable[..., Any] = run_provision,
        shielded_provisioner: Callable[..., Any] = run_provision_from_shielding_data,
    ) -> None:  # fmt: skip
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("Provision"))
        self.setSubTitle(
            self.tr(
                "Shieldwright verifies the template, seals a fresh key per container to the VM's SRK under "
                "the PCR policy, and writes the VM disk. Only the LUKS2 headers differ from the template."
            )
        )
        self._provisioner = provisioner
        self._shielded_provisioner = shielded_provisioner
        self._engine: StepRecorder | None = None
        self._task_progress: ProgressState | None = None
        self._started = 0.0
        self._output: Path | None = None
        self._existed_before = False
        self.result: ProvisionResult | None = None
        self.error: ShieldwrightError | None = None
        #: Every step the engine began, in order.
        self.steps_seen: list[str] = []
        self._build_ui()

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.step_label = QLabel(self)
        self.step_label.setObjectName("provisionStep")
        self.step_label.setTextFormat(Qt.TextFormat.PlainText)
        font = self.step_label.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.1)
        self.step_label.setFont(font)
        self.elapsed_label = QLabel(self)
        self.elapsed_label.setTextFormat(Qt.TextFormat.PlainText)
        self.elapsed_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        top = QHBoxLayout()
        top.addWidget(self.step_label, 1)
        top.addWidget(self.elapsed_label)

        self.progress_panel = ProgressPanel(self)
        self.progress_panel.cancelRequested.connect(self.cancel)
        self.progress_panel.keep_button.clicked.connect(self.keep_running)

        self.steps = QListWidget(self)
        self.steps.setObjectName("provisionSteps")
        self.steps.setAccessibleName(self.tr("Provisioning steps"))
        self.steps.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        rows = 4
        self.steps.setFixedHeight(
            self.steps.fontMetrics().lineSpacing() * rows + 2 * self.steps.frameWidth() + 8
        )

        self.result_icon = QLabel(self)
        self.result_icon.setPixmap(
            self.style().standardIcon(QStyle.StandardPixmap.SP_DialogApplyButton).pixmap(20, 20)
        )
        self.result_label = QLabel(self)
        self.result_label.setObjectName("provisionResult")
        self.result_label.setWordWrap(True)
        self.result_label.setTextFormat(Qt.TextFormat.PlainText)
        result_row = QHBoxLayout()
        result_row.addWidget(self.result_icon)
        result_row.addWidget(self.result_label, 1)

        self.nothing_written_label = QLabel(self)
        self.nothing_written_label.setObjectName("nothingWritten")
        self.nothing_written_label.setWordWrap(True)
        self.nothing_written_label.setTextFormat(Qt.TextFormat.PlainText)
        self.back_button = QPushButton(
            self.style().standardIcon(QStyle.StandardPixmap.SP_ArrowBack),
            self.tr("Back to the c&hoices"),
            self,
        )
        self.back_button.setObjectName("backToChoices")
        self.back_button.clicked.connect(self.back_to_choices)
        failure_row = QHBoxLayout()
        failure_row.addWidget(self.nothing_written_label, 1)
        failure_row.addWidget(self.back_button, 0, Qt.AlignmentFlag.AlignTop)

        layout = self.body_layout()
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addWidget(self.progress_panel)
        layout.addLayout(result_row)
        layout.addWidget(self.error_panel)
        layout.addLayout(failure_row)
        layout.addWidget(self.steps)
        layout.addStretch(1)
        self._show_outcome(None)

    # -- running ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Provision on a snapshot of the choices."""
        if self.is_running():
            return
        self.result, self.error, self.state.result = None, None, None
        self.steps_seen = []
        self.steps.clear()
        self.error_panel.clear()
        self.elapsed_label.clear()
        self._show_outcome(None)
        try:
            request = self.state.request()
            source = self.state.shielding_source()
        except ShieldwrightError as exc:
            self._fail(exc)
            return
        self._output = request.output
        self._existed_before = request.output.exists()
        self._engine = StepRecorder()
        self._started = time.monotonic()
        # Paths only: the passphrase and the shielding data's values are never logged.
        secret: bytearray | ShieldingSource
        if source is None:
            log.info("provisioning %s from %s", request.output, request.template)
            work, secret = self._provisioner, self.state.passphrase_copy()
        else:
            log.info("provisioning %s from %s, the passphrase from the shielding data %s", request.output,
                     request.template, source.shielding_data)  # fmt: skip
            work, secret = self._shielded_provisioner, source
        task = self.run_task(self.RUN_TASK, work, request, secret, self._engine,
                             with_progress=True, on_success=self._on_succeeded, on_failure=self._on_failed,
                             on_finished=self._on_finished)  # fmt: skip
        self._task_progress = task.progress
        task.progressChanged.connect(self._on_progress)  # first: the panel reads what this copies
        self.ask_before_stop()
        self.progress_panel.start(task, self.tr("Starting…"))
        self.step_label.setText(self.tr("Provisioning the VM disk…"))

    def stop_question(self, closing: bool) -> str:
        if closing:
            return self.tr("Stop provisioning and close? Nothing will be kept.")
        return self.tr("Stop provisioning? Nothing will be kept.")

    def _on_progress(self, state: ProgressState) -> None:
        """10 Hz: the engine's step into the task's state (uncountable steps as busy) and the step list."""
        engine = self._engine
        if engine is None:
            return
        step, total, done = engine.step, engine.total, engine.done
        counted = total if total > 1 else 0
        begun = engine.begun[len(self.steps_seen) :]
        for name in begun:
            self.steps_seen.append(name)
            self._list_step(name)
        if begun and step:
            self.progress_panel.step_label.setText(step)
            self.progress_panel.bar.setAccessibleName(step)
            state.begin(step, counted)
        elif counted != state.total or done < state.done:
            state.begin(step, counted)
        if counted:
            state.update(done)
        self.elapsed_label.setText(human_duration(time.monotonic() - self._started))

    def _list_step(self, step: str) -> None:
        """The steps before ``step`` ticked, ``step`` added as the current one (bold)."""
        self._tick_steps()
        item = QListWidgetItem("▸ " + step)
        font = item.font()
        font.setBold(True)
        item.setFont(font)
        self.steps.addItem(item)
        self.steps.scrollToBottom()

    def _tick_steps(self) -> None:
        for i in range(self.steps.count()):
            item = self.steps.item(i)
            item.setText("✓ " + item.text()[2:])
            font = item.font()
            font.setBold(False)
            item.setFont(font)

    def _on_succeeded(self, result: ProvisionResult) -> None:
        self.result = result
        self.state.result = result

    def _on_failed(self, error: ShieldwrightError) -> None:
        self.error = error

    def _on_finished(self) -> None:
        if self._task_progress is not None:
            self._on_progress(self._task_progress)  # the last step
        if self.result is None and self.error is None:  # a bug: the excepthook logged it
            self.error = ShieldwrightError(
                "the VM disk could not be written because of an unexpected error",
                "the details were written to the log",
            )
        if self.result is not None:
            self._succeed(self.result)
        else:
            self._fail(self.error or ShieldwrightError("the provisioning ended without a result"))
        self.provisionFinished.emit()
        self.close_if_asked()

    # -- outcome ----------------------------------------------------------------------------------

    def leftovers(self) -> list[Path]:
        """The output, if this run left it behind (after a failure: never)."""
        out = self._output
        return [out] if out is not None and out.exists() and not self._existed_before else []

    def _succeed(self, result: ProvisionResult) -> None:
        self._tick_steps()
        self.step_label.setText(self.tr("Done: the VM disk is ready."))
        self._show_outcome(
            True,
            self.tr("Wrote %1 in %2. Click Next for the policy and the keyslots.")
            .replace("%1", str(result.output))
            .replace("%2", human_duration(time.monotonic() - self._started)),
        )

    def _fail(self, error: ShieldwrightError) -> None:
        self.error = error
        cancelled = isinstance(error, CancelledError)
        self.step_label.setText(self.tr("Cancelled.") if cancelled else self.tr("Provisioning failed."))
        if self.steps.count():
            last = self.steps.item(self.steps.count() - 1)
            last.setText(("■ " if cancelled else "✗ ") + last.text()[2:])
            font = last.font()
            font.setBold(False)
            last.setFont(font)
        if cancelled:
            self.error_panel.show_error(self.tr("Provisioning was cancelled."))
        else:
            self.error_panel.show_error(error.message, error.hint)
        left = self.leftovers()
        if left:
            note = self.tr("Files that remain from this run: %1").replace("%1", ", ".join(map(str, left)))
        else:
            folder = self._output.parent if self._output is not None else None
            note = self.tr("Nothing was written: no VM disk was left behind") + (
                self.tr(" in %1.").replace("%1", str(folder)) if folder else "."
            )
            note += " " + self.tr("The template was not modified.")
        self.nothing_written_label.setText(note)
        self._show_outcome(False)

    def _show_outcome(self, ok: bool | None, text: str = "") -> None:
        self.result_label.setText(text if ok else "")
        self.result_label.setVisible(ok is True)
        self.result_icon.setVisible(ok is True)
        self.nothing_written_label.setVisible(ok is False)
        self.back_button.setVisible(ok is False)

    def back_to_choices(self) -> None:
        """After a failure or a cancel: back to the passphrase and output (the commit page blocks Back)."""
        wizard = self.wizard()
        if not self.is_running() and wizard is not None:
            wizard.back()
