"""Wizard page: Template ready — the artefacts with their sizes and SHA-256, Open folder, Verify.

Like the Microsoft wizard's *Summary* it names the template (name, version) and the certificate that
signed the catalog and its issuer; beyond it, it lists every file the build wrote — the template, the
catalog, the manifest and its CMS signature, the report — with size and SHA-256, computed in the app's
executor (a TaskRunner task with progress and Cancel), so the user can copy the digests into a ticket.
*Open folder* and *Open report* hand the paths to the desktop (``QDesktopServices.openUrl``); *Verify*
runs :func:`app.template.verify.verify_template` in the background and lists each check with ✓ or ✗.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices, QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from app.errors import CancelledError, ShieldwrightError
from app.gui.presentation import human_size, is_dark
from app.gui.state import WizardState
from app.gui.tasks import BackgroundTask, TaskRunner
from app.gui.widgets.certificate_details import thumbprint_hex
from app.gui.widgets.error_panel import ErrorPanel
from app.gui.widgets.progress_panel import ProgressPanel
from app.gui.widgets.tables import setup_readonly_table

if TYPE_CHECKING:
    from app.progress import CancelToken, Progress

log = logging.getLogger(__name__)

HASH_CHUNK = 4 * 1024 * 1024
#: Artefacts whose content is a secret: listed, never hashed or shown.
SECRET_ROLES = ("recovery_key",)


@dataclass(frozen=True)
class Artifact:
    """One file the build wrote."""

    role: str  # template, catalog, manifest, manifest_signature, report
    label: str
    path: Path


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str


def artifacts_of(result: Any) -> list[Artifact]:
    """The files of a BuildResult, in the order a user cares about them (missing ones left out)."""
    roles = (
        ("output", "template", "Template"),
        ("catalog", "catalog", "Signature catalog"),
        ("manifest", "manifest", "Manifest"),
        ("manifest_signature", "manifest_signature", "Manifest signature"),
        ("report", "report", "Report"),
        ("recovery_key_file", "recovery_key", "Recovery key (secret)"),
    )
    out = []
    for attr, role, label in roles:
        value = getattr(result, attr, None)
        if value:
            out.append(Artifact(role, label, Path(value)))
    return out


def hash_files(paths: Sequence[Path], *, progress: Progress, cancel: CancelToken) -> dict[Path, FileDigest]:
    """Runs in the executor: size and SHA-256 of each file (holes read as zeros, like any reader)."""
    sizes = {Path(p): os.stat(p).st_size for p in paths}
    progress.begin("hash", sum(sizes.values()))
    out: dict[Path, FileDigest] = {}
    for path, size in sizes.items():
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while chunk := f.read(HASH_CHUNK):
                    cancel.check()
                    digest.update(chunk)
                    progress.advance(len(chunk))
        except OSError as exc:
            raise ShieldwrightError(
                f"cannot read {path}: {exc.strerror}", "was it moved or deleted?"
            ) from None
        out[path] = FileDigest(size, digest.hexdigest())
    return out


def verify(
    template: Path,
    vsc: Path | None,
    trusted: list[Any] | None,
    *,
    progress: Progress,
    cancel: CancelToken,
) -> Any:
    """Runs in the executor: the engine's end-to-end check of the exported template."""
    from app.template.verify import verify_template

    return verify_template(template, vsc=vsc, trusted=trusted, progress=progress, cancel=cancel)


class Column:
    NAME, FILE, SIZE, SHA256 = range(4)


class FinishedPage(QWizardPage):
    """The artefacts with digests, Open folder, Open report, and Verify."""

    #: Hashing the artefacts ended and the table shows the digests (or why not).
    hashingFinished = Signal()
    #: Verifying ended and the checks are listed.
    verifyFinished = Signal()

    def __init__(
        self,
        state: WizardState,
        runner: TaskRunner,
        parent: QWidget | None = None,
        *,
        hasher: Callable[..., dict[Path, FileDigest]] = hash_files,
        verifier: Callable[..., Any] = verify,
        opener: Callable[[QUrl], Any] = QDesktopServices.openUrl,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self._runner = runner
        self._hasher = hasher
        self._verifier = verifier
        self._opener = opener
        self._task: BackgroundTask | None = None
        self._task_kind = ""
        self._shown_for: Any = None
        self.artifacts: list[Artifact] = []
        self.digests: dict[Path, FileDigest] = {}
        self.verify_report: Any = None

        self.setTitle(self.tr("Template ready"))
        self.setSubTitle(
            self.tr(
                "The template is written and signed. Keep the catalog and the signed manifest with it; VM "
                "owners need the catalog (or its signer, name and version) for their shielding data."
            )
        )
        self.setFinalPage(True)
        self._build_ui()

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        style = self.style()
        self.identity_label = QLabel(self)
        self.identity_label.setObjectName("templateIdentity")
        self.identity_label.setWordWrap(True)
        self.identity_label.setTextFormat(Qt.TextFormat.PlainText)
        self.identity_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.identity_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.table = QTableWidget(0, 4, self)
        self.table.setObjectName("artifacts")
        self.table.setAccessibleName(self.tr("Files written"))
        self.table.setHorizontalHeaderLabels(
            [self.tr("Artefact"), self.tr("File"), self.tr("Size"), self.tr("SHA-256")]
        )
        setup_readonly_table(self.table, Column.SHA256)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)

        self.open_folder_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DirOpenIcon), self.tr("Open &folder"), self
        )
        self.open_folder_button.setObjectName("openFolder")
        self.open_folder_button.clicked.connect(self.open_folder)
        self.open_report_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_FileIcon), self.tr("Open &report"), self
        )
        self.open_report_button.setObjectName("openReport")
        self.open_report_button.clicked.connect(self.open_report)
        self.verify_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DialogApplyButton), self.tr("&Verify"), self
        )
        self.verify_button.setObjectName("verifyTemplate")
        self.verify_button.setToolTip(
            self.tr("Check the template end to end: GPT, ESP, UKI signature, catalog and every block, LUKS2")
        )
        self.verify_button.clicked.connect(self.verify)
        self.status_label = QLabel(self)
        self.status_label.setObjectName("finishedStatus")
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_folder_button)
        buttons.addWidget(self.open_report_button)
        buttons.addWidget(self.verify_button)
        buttons.addSpacing(8)
        buttons.addWidget(self.status_label, 1)

        self.progress_panel = ProgressPanel(self)
        self.progress_panel.cancelRequested.connect(self.cancel)

        self.checks_caption = QLabel(self.tr("Verification"), self)
        font = self.checks_caption.font()
        font.setBold(True)
        self.checks_caption.setFont(font)
        self.checks = QListWidget(self)
        self.checks.setObjectName("verifyChecks")
        self.checks.setAccessibleName(self.tr("Verification checks"))
        self.checks.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.checks.setWordWrap(True)
        self.checks.setSpacing(2)
        self.checks.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

        self.error_panel = ErrorPanel(self)

        layout = QVBoxLayout(self)
        layout.setSpacing(6)
        layout.addWidget(self.identity_label)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_panel)
        layout.addWidget(self.error_panel)
        layout.addWidget(self.checks_caption)
        layout.addWidget(self.checks, 1)
        self._show_checks(None)

    # -- QWizardPage ------------------------------------------------------------------------------

    def initializePage(self) -> None:
        result = self.state.output.result if self.state.output is not None else None
        if result is not self._shown_for:
            self._shown_for = result
            self.artifacts = artifacts_of(result) if result is not None else []
            self.digests = {}
            self.verify_report = None
            self._show_checks(None)
            self._fill_table()
            self._show_identity()
            if self.artifacts:
                self.compute_digests()
        self.refresh()

    def cleanupPage(self) -> None:
        self.cancel()

    def isComplete(self) -> bool:
        return True  # Finish closes the wizard; hashing or verifying is stopped by the wizard's done()

    def is_busy(self) -> bool:
        return self._task is not None

    # -- showing ----------------------------------------------------------------------------------

    def _show_identity(self) -> None:
        state = self.state
        lines = []
        if state.catalog is not None:
            lines.append(
                self.tr("Template “%1”, version %2.")
                .replace("%1", state.catalog.template_name)
                .replace("%2", state.catalog.template_version)
            )
        signer = state.catalog_signer_choice
        if signer is not None and signer.info is not None:
            lines.append(
                self.tr("Catalog and manifest signed by %1 (SHA-256 %2), issued by %3.")
                .replace("%1", signer.info.subject)
                .replace("%2", thumbprint_hex(signer.info.sha256_fingerprint)[:23] + "…")
                .replace("%3", signer.info.issuer)
            )
        self.identity_label.setText("\n".join(lines))

    def _fill_table(self) -> None:
        self.table.setRowCount(len(self.artifacts))
        for row, art in enumerate(self.artifacts):
            digest = self.digests.get(art.path)
            name = QTableWidgetItem(self.tr(art.label))
            file_item = QTableWidgetItem(art.path.name)
            file_item.setToolTip(str(art.path))
            size = QTableWidgetItem(human_size(digest.size) if digest else "")
            size.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if digest is not None:
                size.setToolTip(self.tr("%1 bytes").replace("%1", f"{digest.size:,}"))
                sha = QTableWidgetItem(digest.sha256)
                sha.setFont(self._mono)
                sha.setToolTip(digest.sha256)
                sha.setData(Qt.ItemDataRole.UserRole, digest.sha256)
                sha.setData(Qt.ItemDataRole.AccessibleTextRole, digest.sha256)
            else:
                if art.role in SECRET_ROLES:
                    text = self.tr("secret (mode 0600), not shown")
                else:
                    text = self.tr("computing…") if self._task_kind == "hash" else ""
                sha = QTableWidgetItem(text)
                sha.setForeground(self.palette().brush(QPalette.ColorRole.PlaceholderText))
            for col, item in enumerate((name, file_item, size, sha)):
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(Column.SHA256, QHeaderView.ResizeMode.Stretch)
        height = self.table.horizontalHeader().height() + 2 * self.table.frameWidth() + 2
        height += sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setFixedHeight(height)

    def table_digests(self) -> dict[str, str]:
        """The SHA-256 shown per file name (empty until computed)."""
        out = {}
        for row in range(self.table.rowCount()):
            value = self.table.item(row, Column.SHA256).data(Qt.ItemDataRole.UserRole)
            if value:
                out[self.table.item(row, Column.FILE).text()] = value
        return out

    def refresh(self) -> None:
        busy = self.is_busy()
        template = self._artifact("template")
        self.open_folder_button.setEnabled(template is not None)
        self.open_report_button.setEnabled(self._artifact("report") is not None)
        self.verify_button.setEnabled(not busy and template is not None)

    def _artifact(self, role: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.role == role), None)

    def _show_checks(self, report: Any) -> None:
        self.checks.clear()
        style = self.style()
        if report is None:
            item = QListWidgetItem(
                style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation),
                self.tr(
                    "Not verified yet. Verify checks the partition table, the ESP, the UKI's signature, the "
                    "catalog's signature and every block, and the LUKS2 headers."
                ),
            )
            item.setForeground(self.palette().brush(QPalette.ColorRole.PlaceholderText))
            item.setData(Qt.ItemDataRole.UserRole, None)
            self.checks.addItem(item)
            return
        bad = QColor(255, 110, 110) if is_dark(self.palette()) else QColor(190, 30, 30)
        for check in getattr(report, "checks", []):
            mark = "✓" if check.ok else "✗"
            detail = getattr(check, "detail", "") or ""
            text = f"{mark} {check.name}" + (f" — {detail}" if detail else "")
            # The ✓/✗ glyph is the cue (not colour alone); a failed check is also red and bold.
            item = QListWidgetItem(text)
            if not check.ok:
                item.setForeground(bad)
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            item.setData(Qt.ItemDataRole.UserRole, bool(check.ok))
            item.setData(
                Qt.ItemDataRole.AccessibleTextRole,
                (self.tr("Passed: %1") if check.ok else self.tr("Failed: %1")).replace("%1", text[2:]),
            )
            item.setToolTip(text)
            self.checks.addItem(item)

    def check_rows(self) -> list[tuple[bool, str]]:
        """``(passed, text)`` per check shown (empty before a verification)."""
        rows = []
        for i in range(self.checks.count()):
            ok = self.checks.item(i).data(Qt.ItemDataRole.UserRole)
            if ok is not None:
                rows.append((bool(ok), self.checks.item(i).text()))
        return rows

    # -- actions ----------------------------------------------------------------------------------

    def open_folder(self) -> None:
        template = self._artifact("template")
        if template is not None:
            self._opener(QUrl.fromLocalFile(str(template.path.parent)))

    def open_report(self) -> None:
        report = self._artifact("report")
        if report is not None:
            self._opener(QUrl.fromLocalFile(str(report.path)))

    def compute_digests(self) -> None:
        """Size and SHA-256 of every artefact, in the background."""
        if self.is_busy() or not self.artifacts:
            return
        public = [a.path for a in self.artifacts if a.role not in SECRET_ROLES]
        task = self._runner.start(self._hasher, public, name="hash-artifacts",
                                  with_progress=True)  # fmt: skip
        self._begin(task, "hash", self.tr("Computing SHA-256 of the files"))
        self._fill_table()

    def verify(self) -> None:
        """Verify the template end to end in the background."""
        template = self._artifact("template")
        if self.is_busy() or template is None:
            return
        catalog = self._artifact("catalog")
        # The certificates the build signed with (catalog first): without any, the engine's Signer check
        # says the signer was NOT checked instead of reporting success.
        trusted: list[Any] = []
        for choice in (self.state.catalog_signer_choice, self.state.uefi_signing):
            if choice is not None and choice.signer is not None and choice.signer.certificate not in trusted:
                trusted.append(choice.signer.certificate)
        self.verify_report = None
        self._show_checks(None)
        task = self._runner.start(
            self._verifier, template.path, catalog.path if catalog else None, trusted or None,
            name="verify-template", with_progress=True,
        )  # fmt: skip
        self._begin(task, "verify", self.tr("Verifying the template"))

    def _begin(self, task: BackgroundTask, kind: str, title: str) -> None:
        self._task, self._task_kind = task, kind
        self.error_panel.clear()
        self.status_label.clear()
        self.progress_panel.set_confirm_text(
            self.tr("Stop computing the digests?") if kind == "hash" else self.tr("Stop verifying?")
        )
        self.progress_panel.start(task, title)
        task.succeeded.connect(self._on_succeeded)
        task.failed.connect(self._on_failed)
        task.finished.connect(self._on_finished)
        self.refresh()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _on_succeeded(self, result: Any) -> None:
        if self._task_kind == "hash":
            self.digests = dict(result)
        else:
            self.verify_report = result
            self._show_checks(result)
            ok = bool(getattr(result, "ok", False))
            self.status_label.setText(
                self.tr("Verified: every check passed.") if ok else self.tr("Verification found problems.")
            )

    def _on_failed(self, error: ShieldwrightError) -> None:
        if isinstance(error, CancelledError):
            self.status_label.setText(
                self.tr("Cancelled: the digests were not computed.")
                if self._task_kind == "hash"
                else self.tr("Cancelled: the template was not verified.")
            )
            return
        self.error_panel.show_error(error.message, error.hint)

    def _on_finished(self) -> None:
        task, kind = self._task, self._task_kind
        self._task, self._task_kind = None, ""
        if task is not None:
            task.succeeded.disconnect(self._on_succeeded)
            task.failed.disconnect(self._on_failed)
            task.finished.disconnect(self._on_finished)
            if task.error is not None and not isinstance(task.error, ShieldwrightError):
                self.error_panel.show_error(
                    self.tr("An unexpected error stopped this."),
                    self.tr("The details were written to the log."),
                )
        if kind == "hash":
            self._fill_table()
            self.refresh()
            self.hashingFinished.emit()
        else:
            self.refresh()
            self.verifyFinished.emit()
