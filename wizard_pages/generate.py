"""Wizard page: Generate — the build runs (Microsoft's *Generate* step), with progress, details and Cancel.

Entering the page runs :func:`app.template.pipeline.run_build` in the executor on a snapshot of the choices
(the state's recipe, the loaded signers, a *copy* of the passphrase wiped when the build ends, the recovery
key). At the task's 10 Hz tick it shows "Step k of n", the current step (bar, rate, time left, two-stage
Cancel) and the engine's log (*Save report…*). A cancelled or failed build leaves nothing behind; the page
checks and says so, and offers *Back to Review*. Closing the wizard during a build asks first, inline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStyle,
    QWidget,
)

from app.errors import CancelledError, ShieldwrightError
from app.gui.run_page import RunPage
from app.gui.state import WizardState
from app.gui.tasks import TaskRunner
from app.gui.widgets.build_step_panel import BuildStepPanel
from app.gui.widgets.log_view import LogView
from app.gui.widgets.progress_panel import human_duration
from app.template.pipeline import BuildInputs, BuildProgress, artifact_paths, run_build
from app.template.recipe import Recipe
from wizard_pages.review import ALLOW_PRIVATE_FIELD

if TYPE_CHECKING:
    from app.progress import CancelToken, ProgressState
    from app.signing.signer import Signer

log = logging.getLogger(__name__)

#: The overall bar's resolution (0.1 %).
OVERALL_UNITS = 1000


# -- the build, in the executor ---------------------------------------------------------------------


@dataclass
class GenerateRequest:
    """A snapshot of everything the build needs, taken in the GUI thread when the page starts it."""

    recipe: Recipe
    uefi_signer: Signer = field(repr=False)
    catalog_signer: Signer = field(repr=False)
    #: A copy of the provisioning passphrase, wiped when the build ends.
    passphrase: bytearray = field(repr=False)
    recovery_key: str | None = field(default=None, repr=False)
    output: Path | None = None
    #: The Review page's "Publish private host files" (wizard field ``allowPrivateInputs``).
    allow_private_inputs: bool = False

    def wipe(self) -> None:
        self.passphrase[:] = bytes(len(self.passphrase))


def new_build_progress() -> BuildProgress:
    """The engine's progress object for one build (created in the GUI thread, written by the engine)."""
    return BuildProgress()


def run_generate(request: GenerateRequest, build_progress: Any, *, cancel: CancelToken,
                 progress: ProgressState) -> Any:  # fmt: skip
    """Runs in the executor: the whole build. The passphrase copy is wiped whatever happens."""
    try:
        inputs = BuildInputs(
            recipe=request.recipe,
            uefi_signer=request.uefi_signer,
            catalog_signer=request.catalog_signer,
            provisioning_passphrase=request.passphrase,
            recovery_key=request.recovery_key,
            allow_private_inputs=request.allow_private_inputs,
        )
        return run_build(inputs, progress=build_progress, cancel=cancel)
    finally:
        request.wipe()


# -- the page -------------------------------------------------------------------------------------------


class GeneratePage(RunPage):
    """Runs the build on entry; shows the steps, the current step's progress, the log, and the outcome."""

    #: The build ended (succeeded, failed or cancelled) and the outcome is shown.
    buildFinished = Signal()
    RUN_TASK = "build"
    progress_panel: BuildStepPanel

    def __init__(
        self,
        state: WizardState,
        runner: TaskRunner,
        parent: QWidget | None = None,
        *,
        builder: Callable[..., Any] = run_generate,
        progress_factory: Callable[[], Any] = new_build_progress,
        recipe_maker: Callable[[WizardState], Recipe] | None = None,
    ) -> None:
        super().__init__(state, runner, parent)
        self._builder = builder
        self._progress_factory = progress_factory
        self._recipe_maker = recipe_maker
        self._build_progress: Any = None
        self._progress_state: ProgressState | None = None
        self._shown_step = 0
        self._log_seen = 0
        self._started = 0.0
        self._elapsed = 0.0
        self._output: Path | None = None
        self._recovery_file: Path | None = None
        self._existing_before: set[Path] = set()
        self.result: Any = None
        self.error: ShieldwrightError | None = None
        #: Every step (k, name) the page has shown, in order (for tests and the report).
        self.steps_seen: list[tuple[int, str]] = []

        self.setTitle(self.tr("Generate"))
        self.setSubTitle(
            self.tr(
                "Shieldwright builds and signs the UKI, encrypts the protected partitions while writing the "
                "template in one pass, hashes every written block for the catalog, and signs the manifest."
            )
        )
        self._build_ui()

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.step_label = QLabel(self)
        self.step_label.setObjectName("buildStep")
        self.step_label.setTextFormat(Qt.TextFormat.PlainText)
        font = self.step_label.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.1)
        self.step_label.setFont(font)
        self.elapsed_label = QLabel(self)
        self.elapsed_label.setObjectName("buildElapsed")
        self.elapsed_label.setTextFormat(Qt.TextFormat.PlainText)
        self.elapsed_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        top = QHBoxLayout()
        top.addWidget(self.step_label, 1)
        top.addWidget(self.elapsed_label)

        self.overall_bar = QProgressBar(self)
        self.overall_bar.setObjectName("overallProgress")
        self.overall_bar.setAccessibleName(self.tr("Overall progress"))
        self.overall_bar.setTextVisible(True)
        self.overall_bar.setFormat(self.tr("%p% overall"))
        self.overall_bar.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

        self.progress_panel = BuildStepPanel(self)
        self.progress_panel.set_confirm_text(self.stop_question(closing=False))
        self.progress_panel.cancelRequested.connect(self.cancel)
        self.progress_panel.keep_button.clicked.connect(self.keep_running)

        self.result_label = QLabel(self)
        self.result_label.setObjectName("buildResult")
        self.result_label.setWordWrap(True)
        self.result_label.setTextFormat(Qt.TextFormat.PlainText)
        self.result_icon = QLabel(self)
        self.result_icon.setPixmap(
            self.style().standardIcon(QStyle.StandardPixmap.SP_DialogApplyButton).pixmap(20, 20)
        )
        result_row = QHBoxLayout()
        result_row.addWidget(self.result_icon)
        result_row.addWidget(self.result_label, 1)

        self.nothing_written_label = QLabel(self)
        self.nothing_written_label.setObjectName("nothingWritten")
        self.nothing_written_label.setWordWrap(True)
        self.nothing_written_label.setTextFormat(Qt.TextFormat.PlainText)
        self.back_button = QPushButton(
            self.style().standardIcon(QStyle.StandardPixmap.SP_ArrowBack), self.tr("Back to Re&view"), self
        )
        self.back_button.setObjectName("backToReview")
        self.back_button.setToolTip(self.tr("Change the choices and generate again"))
        self.back_button.clicked.connect(self.back_to_review)
        failure_row = QHBoxLayout()
        failure_row.addWidget(self.nothing_written_label, 1)
        failure_row.addWidget(self.back_button, 0, Qt.AlignmentFlag.AlignTop)

        self.log_view = LogView(self, runner=self.runner, title=self.tr("&Details"), expanded=True)
        self.log_view.set_report_header(self._report_header)
        self.log_view.reportSaved.connect(
            lambda path: self.elapsed_label.setText(self.tr("Report saved to %1").replace("%1", str(path)))
        )
        self.log_view.reportFailed.connect(self.error_panel.show_error)

        layout = self.body_layout()
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addWidget(self.overall_bar)
        layout.addWidget(self.progress_panel)
        layout.addLayout(result_row)
        layout.addWidget(self.error_panel)
        layout.addLayout(failure_row)
        layout.addWidget(self.log_view, 1)
        self._show_outcome(None)

    # -- running ----------------------------------------------------------------------------------

    def _request(self) -> GenerateRequest:
        state = self.state
        recipe = self._recipe_maker(state) if self._recipe_maker is not None else state.recipe()
        enc = state.encryption
        passphrase = bytearray(enc.passphrase) if enc is not None and enc.passphrase else bytearray()
        recovery = enc.key_for_build() if enc is not None else None
        uefi = state.uefi_signing.signer if state.uefi_signing is not None else None
        catalog_choice = state.catalog_signer_choice
        catalog = catalog_choice.signer if catalog_choice is not None else None
        if uefi is None or catalog is None:
            raise ShieldwrightError("no signing key is loaded", "load it on the Signing certificates page")
        output = state.output.path if state.output is not None else None
        allow_private = bool(self.field(ALLOW_PRIVATE_FIELD)) if self.wizard() is not None else False
        return GenerateRequest(recipe, uefi, catalog, passphrase, recovery, output, allow_private)

    def start(self) -> None:
        """Start the build on a snapshot of the current choices."""
        if self.is_running():
            return
        self.result = None
        self.error = None
        self.steps_seen = []
        self._shown_step = 0
        self._log_seen = 0
        self.log_view.clear()
        self.error_panel.clear()
        self._show_outcome(None)
        if self.state.output is not None:
            self.state.output.result = None
        try:
            request = self._request()
        except ShieldwrightError as exc:
            self._fail(exc)
            return
        self._output = request.output
        # The recipe names a recovery key file for replays; this build is handed the key and writes none.
        self._recovery_file = (
            request.recipe.encryption.recovery_key_file if request.recovery_key is None else None
        )
        self._existing_before = {p for p in self._artifacts() if p.exists()}
        self._build_progress = self._progress_factory()
        self._started = time.monotonic()
        self._elapsed = 0.0
        log.info("generating the template %s", request.output)
        task = self.run_task(self.RUN_TASK, self._builder, request, self._build_progress, with_progress=True,
                             on_success=self._on_succeeded, on_failure=self._on_failed,
                             on_finished=self._on_finished)  # fmt: skip
        self._progress_state = task.progress
        # Ours first: it copies the engine's step into task.progress before the panel reads it.
        task.progressChanged.connect(self._on_progress)
        self.ask_before_stop()
        self.progress_panel.start(task, self.tr("Preparing…"))
        self.step_label.setText(self.tr("Starting…"))
        self.overall_bar.setRange(0, 0)

    def stop_question(self, closing: bool) -> str:
        if closing:
            return self.tr("Stop generating and close? Nothing will be kept.")
        return self.tr("Stop generating? Nothing will be kept.")

    def _on_progress(self, state: ProgressState) -> None:
        """10 Hz: copy the engine's step into the task's state (the panel shows it), the steps, the log."""
        if self._build_progress is None:
            return
        snap = self._build_progress.snapshot()
        if snap.step_index != self._shown_step and snap.step_index > 0:
            self._shown_step = snap.step_index
            self.steps_seen.append((snap.step_index, snap.step_name))
            self.progress_panel.step_label.setText(snap.step_name)
            self.progress_panel.bar.setAccessibleName(snap.step_name)
            state.begin(snap.detail or snap.step_name, snap.total)
        elif snap.total != state.total or snap.done < state.done:
            state.begin(snap.detail or snap.step_name, snap.total)  # a new phase inside the step
        self.progress_panel.set_unit(snap.unit)  # the engine says what the step counts
        if snap.done != state.done:
            state.update(snap.done)
        self._show_steps(snap)
        lines, self._log_seen = self._build_progress.lines_since(self._log_seen)
        if lines:
            self.log_view.append_lines(lines)
        self._elapsed = time.monotonic() - self._started
        self.elapsed_label.setText(self.tr("Elapsed %1").replace("%1", human_duration(self._elapsed)))

    def _show_steps(self, snap: Any) -> None:
        if snap.step_count <= 0 or snap.step_index <= 0:
            return
        self.step_label.setText(
            self.tr("Step %1 of %2: %3")
            .replace("%1", str(snap.step_index))
            .replace("%2", str(snap.step_count))
            .replace("%3", snap.step_name)
        )
        # The engine weighs the steps by their cost and never lets the share go back (a step's second
        # phase, e.g. hashing after converting the output, starts where the first one ended).
        self.overall_bar.setRange(0, OVERALL_UNITS)
        self.overall_bar.setValue(round(snap.overall * OVERALL_UNITS))

    def _on_succeeded(self, result: Any) -> None:
        self.result = result
        if self.state.output is not None:
            self.state.output.result = result

    def _on_failed(self, error: ShieldwrightError) -> None:
        self.error = error

    def _on_finished(self) -> None:
        if self._build_progress is not None and self._progress_state is not None:
            self._on_progress(self._progress_state)  # the last lines and the final step
        if self.result is None and self.error is None:  # a bug: the excepthook logged it
            self.error = ShieldwrightError(
                "the template could not be generated because of an unexpected error",
                "the details were written to the log",
            )
        self._elapsed = time.monotonic() - self._started
        if self.result is not None:
            self._succeed()
        else:
            self._fail(self.error or ShieldwrightError("the build ended without a result"))
        self.buildFinished.emit()
        self.close_if_asked()

    # -- outcome ----------------------------------------------------------------------------------

    def _artifacts(self) -> list[Path]:
        if self._output is None:
            return []
        paths = list(artifact_paths(self._output).values())
        return paths + ([Path(self._recovery_file)] if self._recovery_file else [])

    def leftovers(self) -> list[Path]:
        """Output files present now that were not there before the build (after a failure: none)."""
        return sorted(p for p in self._artifacts() if p.exists() and p not in self._existing_before)

    def _succeed(self) -> None:
        count = self._shown_step or len(self.steps_seen)
        self.overall_bar.setRange(0, 1)
        self.overall_bar.setValue(1)
        self.step_label.setText(self.tr("Done: the template is ready."))
        output = getattr(self.result, "output", None)
        self._show_outcome(
            True,
            self.tr("All %1 steps finished in %2. Wrote %3. Click Next to see the files and verify them.")
            .replace("%1", str(count))
            .replace("%2", human_duration(self._elapsed))
            .replace("%3", str(output) if output else self.tr("the template")),
        )

    def _fail(self, error: ShieldwrightError) -> None:
        self.error = error
        cancelled = isinstance(error, CancelledError)
        self.overall_bar.setRange(0, 1)
        self.overall_bar.setValue(0)
        self.step_label.setText(self.tr("Cancelled.") if cancelled else self.tr("Generating failed."))
        if cancelled:
            self.error_panel.show_error(self.tr("Generating was cancelled."), error.hint)
        else:
            self.error_panel.show_error(error.message, error.hint)
        left = self.leftovers()
        if left:
            note = self.tr("Files that remain from this run: %1").replace(
                "%1", ", ".join(str(p) for p in left)
            )
        else:
            folder = self._output.parent if self._output is not None else None
            note = self.tr("Nothing was written: no output file was left behind") + (
                self.tr(" in %1.").replace("%1", str(folder)) if folder else "."
            )
            note += " " + self.tr("The base image was not modified.")
        self.nothing_written_label.setText(note)
        self._show_outcome(False)
        if not cancelled:
            self.log_view.set_expanded(True)

    def _show_outcome(self, ok: bool | None, text: str = "") -> None:
        self.result_label.setText(text)
        self.result_label.setVisible(ok is True)
        self.result_icon.setVisible(ok is True)
        self.nothing_written_label.setVisible(ok is False)
        self.back_button.setVisible(ok is False)
        if ok is not True:
            self.result_label.clear()

    def back_to_review(self) -> None:
        """After a failure or a cancel: back to the Review page (the commit page blocks the wizard's Back)."""
        wizard = self.wizard()
        if not self.is_running() and wizard is not None:
            wizard.back()

    def _report_header(self) -> str:
        state = self.state
        lines = [self.tr("Shieldwright build report")]
        if state.image_path is not None:
            lines.append(self.tr("Base image: %1").replace("%1", str(state.image_path)))
        if self._output is not None:
            lines.append(self.tr("Output: %1").replace("%1", str(self._output)))
        if state.catalog is not None:
            o = state.catalog.options
            lines.append(self.tr("Template: %1 %2").replace("%1", o.name).replace("%2", o.version))
        if self.error is not None:
            lines.append(self.tr("Outcome: %1").replace("%1", self.error.one_line()))
        elif self.result is not None:
            lines.append(self.tr("Outcome: success"))
        return "\n".join(lines)
