"""Wizard page: the Volume Signature Catalog (template name, version, block size; compute, verify, save).

Like the Microsoft Template Disk Wizard's *Signature Catalog* page, the user names the template and gives
it a version ``a.b.c.d``; shielding data later trusts templates by signer + name + version. The page edits
the recipe's :class:`~app.template.recipe.CatalogOptions`, judged by the catalog engine's own rules
(:mod:`app.catalog.format`, the ones ``shieldwright build`` applies), and can compute the catalog right away
in *catalog-only* mode over the base image as it stands - optional: the build computes the final one over
the encrypted output, so Next needs only a valid name and version. Hashing, signing, decoding, verifying and
saving run in the background; progress and the two-stage Cancel are the shared :class:`ProgressPanel`. The
status line says what the state is now, in a space kept for it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QStackedWidget, QStyle, QVBoxLayout, QWidget

from app.catalog.format import CatalogError, check_template_name, parse_version
from app.catalog.verify import VerifyResult
from app.errors import CancelledError, ShieldwrightError
from app.gui.page import WizardPage
from app.gui.presentation import human_size
from app.gui.state import CatalogChoice, CatalogSummary, WizardState
from app.gui.tasks import BackgroundTask, TaskRunner
from app.gui.widgets.catalog_identity_form import CatalogIdentityForm
from app.gui.widgets.catalog_partition_table import CatalogPartitionTable
from app.gui.widgets.elided_label import StatusLine
from app.gui.widgets.progress_panel import ProgressPanel
from app.gui.widgets.status_note import PROBLEM_COLOR
from wizard_pages.catalog_tasks import (
    ComputedCatalog,
    compute_catalog,
    default_file_name,
    describe_verification,
    utc_text,
    verify_catalog,
    write_catalog,
)

log = logging.getLogger(__name__)

CATALOG_FILTERS = ("Volume signature catalogs (*.vsc)", "All files (*)")
#: Task keys (one runs at a time) and the Save dialog's key.
COMPUTE, VERIFY, SAVE = "compute-catalog", "verify-catalog", "save-catalog"


def _sentence(error: ShieldwrightError) -> str:
    """The engine's message as the page shows it: ``Message (hint)``, starting with a capital."""
    text = error.one_line()
    return text[:1].upper() + text[1:]


# -- the page ---------------------------------------------------------------------------------------


class CatalogPage(WizardPage):
    """Name and version the template, choose the block size, compute, verify and save the catalog."""

    #: A compute, verify or save ended (successfully, failed, or cancelled) and its outcome is shown.
    operationFinished = Signal()

    def __init__(
        self,
        state: WizardState,
        runner: TaskRunner,
        parent: QWidget | None = None,
        *,
        computer: Callable[..., ComputedCatalog] = compute_catalog,
        verifier: Callable[..., VerifyResult] = verify_catalog,
    ) -> None:
        super().__init__(state, runner, parent)
        if state.catalog is None:
            state.catalog = CatalogChoice()
        self._computer = computer
        self._verifier = verifier
        self._task_inputs: tuple[object, ...] | None = None
        self._syncing = False
        #: What the last compute, verify or save came to (the status line says it while it applies).
        self._outcome: str | None = None
        self.setTitle(self.tr("Signature catalog"))
        self.setSubTitle(
            self.tr(
                "The catalog lists a hash of every block of the protected partitions and is signed by the "
                "catalog signer, so a host can check that the disk is exactly what you approved. The name "
                "and version identify the template to shielding data."
            )
        )
        self._build_ui()
        self._load_choice()
        self.refresh()

    @property
    def choice(self) -> CatalogChoice:
        assert self.state.catalog is not None
        return self.state.catalog

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.form = CatalogIdentityForm(self)
        self.form.edited.connect(self._on_inputs_edited)
        # The inputs, as tests, the screenshot tool and other pages' tests reach them.
        self.name_edit, self.version_edit = self.form.name_edit, self.form.version_edit
        self.block_combo, self.signer_value = self.form.block_combo, self.form.signer_value
        # The name's or version's problem takes the place of the note (same height): nothing moves.
        self.problem_label = StatusLine(self, lines=2, name="inputProblem")
        self.problem_label.setStyleSheet(f"color: {PROBLEM_COLOR};")

        self.note_label = QLabel(
            self.tr(
                "Catalog-only mode, optional: Compute hashes the protected partitions of the base image as "
                "they are now, to check the name, version and signer early or to save that catalog. The "
                "build computes the final catalog over the encrypted output."
            ),
            self,
        )
        self.note_label.setObjectName("catalogOnlyNote")
        self.note_label.setWordWrap(True)
        self.note_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.note_stack = QStackedWidget(self)
        self.note_stack.addWidget(self.note_label)
        self.note_stack.addWidget(self.problem_label)

        self.table = CatalogPartitionTable(self)
        partitions_caption = QLabel(self.tr("&Protected partitions"), self)
        partitions_caption.setBuddy(self.table)

        self.progress_panel = ProgressPanel(self)
        self.progress_panel.cancelRequested.connect(self.cancel)

        # The table takes what the panels that come and go (progress, error, result) need: the buttons and
        # the status line under them stay where they are.
        layout = self.body_layout()
        layout.setSpacing(6)
        layout.addWidget(self.form)
        layout.addWidget(self.note_stack)
        layout.addWidget(partitions_caption)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.progress_panel)
        layout.addWidget(self.error_panel)
        layout.addLayout(self._result_rows())

        chain: list[QWidget] = [
            self.name_edit, self.version_edit, self.block_combo, self.table, self.compute_button,
            self.verify_button, self.save_button, self.progress_panel.stop_button,
            self.progress_panel.keep_button, self.progress_panel.cancel_button,
        ]  # fmt: skip
        for first, second in zip(chain, chain[1:], strict=False):
            QWidget.setTabOrder(first, second)

    def _result_rows(self) -> QVBoxLayout:
        """Who signed the catalog and when, whether it verified, and the Compute/Verify/Save buttons."""
        style = self.style()
        # The per-partition digests are in the table.
        # The result and the verification keep their room while empty: computing moves nothing.
        self.result_label = StatusLine(self, lines=2, name="catalogResult")
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.result_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self._retain_size(self.result_label)
        self.result_label.hide()
        self.verified_label = StatusLine(self, name="catalogVerified")
        self.verified_icon = QLabel(self)
        self.verified_icon.setPixmap(
            style.standardIcon(QStyle.StandardPixmap.SP_DialogApplyButton).pixmap(16, 16)
        )
        for widget in (self.verified_label, self.verified_icon):
            self._retain_size(widget)
        verified = QHBoxLayout()
        verified.setSpacing(6)
        verified.addWidget(self.verified_icon)
        verified.addWidget(self.verified_label, 1)
        self._set_verified(None)

        self.compute_button = QPushButton(self.tr("Comp&ute"), self)
        self.compute_button.setObjectName("computeCatalog")
        self.compute_button.setToolTip(self.tr("Hash the protected partitions and sign the catalog"))
        self.compute_button.clicked.connect(self.compute)
        self.verify_button = QPushButton(self.tr("Ver&ify"), self)
        self.verify_button.setObjectName("verifyCatalog")
        self.verify_button.setToolTip(
            self.tr("Check the signature and every block of the image against the catalog")
        )
        self.verify_button.clicked.connect(self.verify)
        self.save_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton), self.tr("S&ave catalog…"), self
        )
        self.save_button.setObjectName("saveCatalog")
        self.save_button.setToolTip(self.tr("Save the signed catalog (.vsc) to a file"))
        self.save_button.clicked.connect(self.choose_save_path)
        self.status_label = StatusLine(self, name="catalogStatus")
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.verify_button)
        buttons.addWidget(self.save_button)
        buttons.addSpacing(8)
        buttons.addWidget(self.status_label, 1)

        rows = QVBoxLayout()
        rows.setSpacing(6)
        rows.addWidget(self.result_label)
        rows.addLayout(verified)
        rows.addLayout(buttons)
        return rows

    @staticmethod
    def _retain_size(widget: QWidget) -> None:
        policy = widget.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        widget.setSizePolicy(policy)

    # -- inputs -----------------------------------------------------------------------------------

    def _load_choice(self) -> None:
        """Show the choice stored in the state (defaults on first visit)."""
        self._syncing = True
        try:
            self.form.load(self.choice.options)
        finally:
            self._syncing = False

    def name(self) -> str:
        return self.name_edit.text().strip()

    def version(self) -> str:
        return self.version_edit.text()

    def block_size(self) -> int:
        return int(self.block_combo.currentData())

    def inputs_valid(self) -> bool:
        return self.form.inputs_valid()

    def _on_inputs_edited(self) -> None:
        if self._syncing:
            return
        choice = self.choice
        self.form.store(choice.options)
        if choice.signed is not None and not self.state.catalog_ready:
            # Name, version and block size are inside the signed catalog: that one no longer applies.
            choice.clear_result()
            self._set_verified(None)
            self._outcome = self.tr("The inputs changed: the catalog computed before was dropped.")
        self.refresh()

    def _input_problem(self) -> str | None:
        """The engine's message about the name or the version, as ``shieldwright build`` would give it."""
        if not self.name_edit.text().strip():
            return None  # the placeholder and the disabled Compute say enough before anything was typed
        try:
            check_template_name(self.name_edit.text())
            parse_version(self.version())
        except CatalogError as exc:
            return _sentence(exc)
        return None

    def _signer_problem(self) -> str | None:
        state = self.state
        if state.image_path is None or state.layout is None:
            return self.tr("Open a base image first.")
        if not state.protected:
            return self.tr("No partitions are protected: choose them on the Base image page.")
        choice = state.catalog_signer_choice
        if choice is None or choice.signer is None:
            return self.tr("Choose the catalog signing certificate on the Certificates page.")
        return None

    # -- showing ----------------------------------------------------------------------------------

    def initializePage(self) -> None:
        """Entering the page: pick up the image, partitions and signer chosen since the last visit."""
        if self.choice.signed is not None and not self.state.catalog_ready:
            self.choice.clear_result()
            self._set_verified(None)
            self._outcome = None
        self._load_choice()
        self.refresh()

    def cleanupPage(self) -> None:
        """Going Back: stop hashing (the inputs may change); keep the name, version and block size."""
        self.cancel()

    def refresh(self) -> None:
        """Show the state: signer, partitions (with the result when it is current), buttons."""
        state = self.state
        signer_choice = state.catalog_signer_choice
        info = signer_choice.info if signer_choice is not None else None
        self.form.show_signer(info.subject if info else None, info.sha256_fingerprint if info else "")
        summary = self.choice.summary if state.catalog_ready else None
        layout = state.layout
        self.table.show_partitions(
            [p for p in (layout.partitions if layout else []) if p.number in state.protected],
            {p.number: p for p in summary.partitions} if summary else {},
            self.block_size(),
        )
        self._show_result(summary)
        busy = self.is_busy()
        self.form.set_inputs_enabled(not busy)
        blocker = self._signer_problem()
        self.compute_button.setEnabled(not busy and blocker is None and self.inputs_valid())
        have = state.catalog_ready
        self.verify_button.setEnabled(not busy and have)
        self.save_button.setEnabled(not busy and have and self.open_dialog(SAVE) is None)
        problem = self._input_problem()
        self.problem_label.setText(problem or "")
        self.note_stack.setCurrentWidget(self.problem_label if problem is not None else self.note_label)
        self.status_label.setText(self._status_text(busy, have, blocker))
        self.completeChanged.emit()

    def _status_text(self, busy: bool, have: bool, blocker: str | None) -> str:
        """The status line, from the state as it is now (never a message about an earlier state)."""
        if busy:
            return ""  # the progress panel says what is going on
        if blocker is not None and not have:
            return blocker
        if self._outcome is not None:
            return self._outcome
        if have:
            return self.tr("Computed and signed.")
        return self.tr("Not computed here (optional): the build computes the catalog.")

    def _show_result(self, summary: CatalogSummary | None) -> None:
        if summary is None:
            self.result_label.hide()
            self.result_label.clear()
            return
        self.result_label.setText(
            self.tr("Catalog for “%1” version %2: %3 blocks of %4, %5.\nSigned by %6 on %7.")
            .replace("%1", summary.template_name)
            .replace("%2", summary.template_version)
            .replace("%3", f"{summary.total_blocks:,}")
            .replace("%4", human_size(summary.block_size))
            .replace("%5", human_size(summary.size_bytes))
            .replace("%6", summary.signer_subject)
            .replace("%7", utc_text(summary.signing_time))
        )
        self.result_label.show()

    def _set_verified(self, text: str | None) -> None:
        self.verified_label.setText(text or "")
        self.verified_label.setVisible(text is not None)
        self.verified_icon.setVisible(text is not None)

    def partition_digests(self) -> dict[int, str]:
        """The full digests shown in the table, by partition number (empty until computed)."""
        return self.table.partition_digests()

    # -- compute / verify -------------------------------------------------------------------------

    def compute(self) -> None:
        """Hash the protected partitions and sign the catalog in the background."""
        if self.is_busy() or not self.compute_button.isEnabled():
            return
        state = self.state
        signer_choice = state.catalog_signer_choice
        assert state.image_path is not None and signer_choice is not None and signer_choice.signer is not None
        self.choice.clear_result()
        self._set_verified(None)
        self.error_panel.clear()
        self._task_inputs = state.catalog_inputs()
        numbers = sorted(state.protected)
        log.info("computing the catalog of %s partitions %s (block size %d)", state.image_path, numbers,
                 self.block_size())  # fmt: skip
        # partial: ``name`` is the template name here, while TaskRunner.start takes ``name`` for the task.
        work = functools.partial(
            self._computer, str(state.image_path), numbers, name=self.name(), version=self.version(),
            signer=signer_choice.signer, block_size=self.block_size(),
        )  # fmt: skip
        task = self.run_task(
            COMPUTE, work, with_progress=True, on_success=self._on_computed,
            on_failure=functools.partial(self._on_failed, COMPUTE), on_finished=self._on_task_finished,
        )  # fmt: skip
        self._show_progress(task, self.tr("Hashing the protected partitions"), self.tr("Stop hashing?"))

    def verify(self) -> None:
        """Check the computed catalog against the image in the background."""
        if self.is_busy() or not self.state.catalog_ready:
            return
        state, choice = self.state, self.choice
        assert state.image_path is not None and choice.signed is not None
        signer_choice = state.catalog_signer_choice
        if signer_choice is None or signer_choice.signer is None:
            return  # nothing to trust: a catalog is never shown as verified without its signer checked
        # Trust exactly the chosen signer: a catalog signed by anyone else must not verify here.
        trusted = [signer_choice.signer.certificate]
        self._set_verified(None)
        self.error_panel.clear()
        self._task_inputs = state.catalog_inputs()
        task = self.run_task(
            VERIFY, self._verifier, str(state.image_path), choice.signed, trusted=trusted, with_progress=True,
            on_success=self._show_verification, on_failure=functools.partial(self._on_failed, VERIFY),
            on_finished=self._on_task_finished,
        )  # fmt: skip
        self._show_progress(
            task, self.tr("Verifying every block against the catalog"), self.tr("Stop verifying?")
        )

    def _show_progress(self, task: BackgroundTask, title: str, question: str) -> None:
        self._outcome = None
        self.progress_panel.set_confirm_text(question)
        self.progress_panel.start(task, title)
        self.refresh()

    def cancel(self) -> None:
        """Ask the running compute or verify to stop (cooperative: it ends at its next check)."""
        for key in (COMPUTE, VERIFY):
            task = self.task(key)
            if task is not None:
                log.info("cancelling the catalog task %s", key)
                task.cancel()

    def _on_computed(self, result: ComputedCatalog) -> None:
        assert self._task_inputs is not None
        self.choice.set_result(result.signed, result.summary, self._task_inputs)
        self._outcome = self.tr("Computed and signed.")

    def _show_verification(self, result: VerifyResult) -> None:
        if result.ok:
            self._set_verified(self.tr("Catalog verified: %n block(s) match.", "", result.blocks_checked))
            self._outcome = ""  # the verified line above says it
            return
        self.error_panel.show_error(*describe_verification(result))
        self._outcome = self.tr("Verification failed.")

    def _on_failed(self, key: str, error: ShieldwrightError) -> None:
        computing = key == COMPUTE
        if isinstance(error, CancelledError):
            what = (
                self.tr("no catalog was computed") if computing else self.tr("the catalog was not verified")
            )
            self._outcome = self.tr("Cancelled: %1.").replace("%1", what)
            return
        self.show_error(error)
        self._outcome = self.tr("Computing failed.") if computing else self.tr("Verifying failed.")

    def _on_task_finished(self) -> None:
        self._task_inputs = None
        self.refresh()
        self.operationFinished.emit()

    # -- saving -----------------------------------------------------------------------------------

    def choose_save_path(self) -> None:
        """A non-blocking Save dialog; the catalog is written when a file is chosen."""
        existing = self.open_dialog(SAVE)
        if existing is not None:
            existing.raise_()
            return
        if not self.state.catalog_ready:
            return
        start = self.state.image_path.parent if self.state.image_path else Path.home()
        dialog = self.file_dialog(
            SAVE, self.tr("Save catalog"), start, self.save_to, filters=CATALOG_FILTERS, save=True,
            select=default_file_name(self.name(), self.version()),
        )  # fmt: skip
        dialog.setDefaultSuffix("vsc")
        dialog.finished.connect(lambda _result: self.refresh())
        self.refresh()

    def save_to(self, path: str | Path) -> None:
        """Write the computed catalog to ``path`` (in the background; replaces an existing file)."""
        signed = self.choice.signed
        if signed is None or self.is_busy():
            return
        self.error_panel.clear()
        self.run_task(SAVE, write_catalog, str(path), signed, on_success=self._on_saved,
                      on_finished=self._on_task_finished)  # fmt: skip
        self.refresh()

    def _on_saved(self, path: Path) -> None:
        log.info("catalog saved to %s", path)
        self._outcome = self.tr("Saved to %1").replace("%1", str(path))

    # -- QWizardPage ------------------------------------------------------------------------------

    def isComplete(self) -> bool:
        # Computing here is optional: the build computes the catalog of the encrypted output anyway.
        return not self.is_busy() and self.inputs_valid()
