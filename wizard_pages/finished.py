"""Wizard page: Template ready — the artefacts with their sizes and SHA-256, Open folder, Verify.

Like the Microsoft wizard's *Summary* it names the template and the certificate that signed the catalog;
it also lists every file the build wrote with the size and SHA-256 the build recorded (its result's
summary: the files are not read again, a template can be many GB). *Open folder* and *Open report* hand
paths to the desktop (and say so, with the path to copy, when no application opens them); *Verify* runs
:func:`app.template.verify.verify_template` in the background and lists each check with ✓ or ✗. *Provision
a VM disk…* asks the frame to open the provision wizard on this template, its signer certificates trusted
and the PCR policy's firmware, PCRs and bank preselected; *Create shielding data…* the Shielding Data
wizard with this template's qualifier prefilled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from app.errors import CancelledError, ShieldwrightError
from app.gui.page import WizardPage
from app.gui.presentation import human_size
from app.gui.provision_state import ProvisionState, TrustedFile
from app.gui.shielding_state import ShieldingState
from app.gui.state import WizardState
from app.gui.tasks import TaskRunner
from app.gui.widgets.adaptive_box import AdaptiveBox
from app.gui.widgets.certificate_details import thumbprint_hex
from app.gui.widgets.check_list import CheckList
from app.gui.widgets.progress_panel import ProgressPanel
from app.gui.widgets.tables import setup_readonly_table
from app.template.verify import verify_template

if TYPE_CHECKING:
    from app.progress import CancelToken, Progress

log = logging.getLogger(__name__)

#: Artefacts whose content is a secret: listed, never shown.
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


def digests_of(result: Any) -> dict[Path, FileDigest]:
    """The size and SHA-256 of each file, as the build recorded them (``summary["artefacts"]``)."""
    summary = getattr(result, "summary", None) or {}
    return {
        Path(a["path"]): FileDigest(int(a["size_bytes"]), str(a["sha256"]))
        for a in summary.get("artefacts", [])
        if a.get("sha256")
    }


def verify(
    template: Path,
    vsc: Path | None,
    trusted: list[Any] | None,
    *,
    progress: Progress,
    cancel: CancelToken,
) -> Any:
    """Runs in the executor: the engine's end-to-end check of the exported template."""
    return verify_template(template, vsc=vsc, trusted=trusted, progress=progress, cancel=cancel)


class Column:
    NAME, FILE, SIZE, SHA256 = range(4)


class FinishedPage(WizardPage):
    """The artefacts with digests, Open folder, Open report, and Verify."""

    #: Verifying ended and the checks are listed.
    verifyFinished = Signal()
    #: *Provision a VM disk…*: the provision flow's starting state (the frame opens the provision wizard).
    provisionRequested = Signal(object)
    #: *Create shielding data…*: the shielding flow's starting state (the frame opens its wizard).
    shieldingRequested = Signal(object)

    def __init__(
        self,
        state: WizardState,
        runner: TaskRunner,
        parent: QWidget | None = None,
        *,
        verifier: Callable[..., Any] = verify,
        opener: Callable[[QUrl], Any] = QDesktopServices.openUrl,
    ) -> None:
        super().__init__(state, runner, parent)
        self._verifier = verifier
        self._opener = opener
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
            style.standardIcon(QStyle.StandardPixmap.SP_DirOpenIcon), self.tr("Open f&older"), self
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
        self.provision_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DriveHDIcon), self.tr("&Provision a VM disk…"), self
        )
        self.provision_button.setObjectName("provisionVmDisk")
        self.provision_button.setToolTip(
            self.tr("Make a VM disk from this template whose encrypted root the VM's vTPM unlocks")
        )
        self.provision_button.clicked.connect(self.provision)
        self.shielding_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_VistaShield), self.tr("Create s&hielding data…"), self
        )
        self.shielding_button.setObjectName("createShieldingData")
        self.shielding_button.setToolTip(
            self.tr(
                "Make shielding data (a .shd) for this template: its passphrase, for the fabrics you trust"
            )
        )
        self.shielding_button.clicked.connect(self.create_shielding_data)
        self.status_label = QLabel(self)
        self.status_label.setObjectName("finishedStatus")
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        files, next_steps = QHBoxLayout(), QHBoxLayout()  # one row, or two in a narrow window
        files.addWidget(self.open_folder_button)
        files.addWidget(self.open_report_button)
        files.addWidget(self.verify_button)
        next_steps.addWidget(self.provision_button)
        next_steps.addWidget(self.shielding_button)
        buttons = AdaptiveBox(self)
        for part in (files, next_steps):
            part.addStretch(1)
            buttons.box.addLayout(part)
        buttons.box.addStretch(1)

        self.progress_panel = ProgressPanel(self)
        self.progress_panel.set_confirm_text(self.tr("Stop verifying?"))
        self.progress_panel.cancelRequested.connect(self.cancel)

        self.checks_caption = QLabel(self.tr("Verification"), self)
        font = self.checks_caption.font()
        font.setBold(True)
        self.checks_caption.setFont(font)
        self.checks = CheckList(self, name="verifyChecks")
        self.checks.setAccessibleName(self.tr("Verification checks"))

        layout = self.body_layout()
        layout.setSpacing(6)
        layout.addWidget(self.identity_label)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        layout.addWidget(self.status_label)
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
            self.digests = digests_of(result) if result is not None else {}
            self.verify_report = None
            self._show_checks(None)
            self._fill_table()
            self._show_identity()
        self.refresh()

    def cleanupPage(self) -> None:
        self.cancel()

    def isComplete(self) -> bool:
        return True  # Finish closes the wizard; a verification is stopped by the wizard's done()

    # -- showing ----------------------------------------------------------------------------------

    def _show_identity(self) -> None:
        state = self.state
        lines = []
        if state.catalog is not None:
            o = state.catalog.options
            lines.append(self.tr("Template “%1”, version %2.").replace("%1", o.name).replace("%2", o.version))
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
        muted = self.palette().brush(QPalette.ColorRole.PlaceholderText)
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
                secret = art.role in SECRET_ROLES
                sha = QTableWidgetItem(
                    self.tr("secret (mode 0600), not shown")
                    if secret
                    else self.tr("not recorded by the build")
                )
                sha.setForeground(muted)
            for col, item in enumerate((name, file_item, size, sha)):
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(Column.SHA256, QHeaderView.ResizeMode.Stretch)
        height = self.table.horizontalHeader().height() + 2 * self.table.frameWidth() + 2
        height += sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setFixedHeight(height)

    def table_digests(self) -> dict[str, str]:
        """The SHA-256 shown per file name."""
        out = {}
        for row in range(self.table.rowCount()):
            sha, name = self.table.item(row, Column.SHA256), self.table.item(row, Column.FILE)
            value = sha.data(Qt.ItemDataRole.UserRole) if sha is not None else None
            if value and name is not None:
                out[name.text()] = value
        return out

    def refresh(self) -> None:
        template = self._artifact("template")
        self.open_folder_button.setEnabled(template is not None)
        self.open_report_button.setEnabled(self._artifact("report") is not None)
        self.verify_button.setEnabled(not self.is_busy() and template is not None)
        self.provision_button.setEnabled(template is not None)
        self.shielding_button.setEnabled(template is not None)

    def _artifact(self, role: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.role == role), None)

    def _show_checks(self, report: Any) -> None:
        if report is None:
            self.checks.show_note(
                self.tr(
                    "Not verified yet. Verify checks the partition table, the ESP, the UKI's signature, the "
                    "catalog's signature and every block, and the LUKS2 headers."
                ),
                icon=QStyle.StandardPixmap.SP_MessageBoxInformation,
            )
        else:
            self.checks.show_checks(getattr(report, "checks", []))

    def check_rows(self) -> list[tuple[bool, str]]:
        """``(passed, text)`` per check shown (empty before a verification)."""
        return self.checks.rows()

    # -- actions ----------------------------------------------------------------------------------

    def open_folder(self) -> None:
        template = self._artifact("template")
        if template is not None:
            self.error_panel.clear()
            self.open_on_desktop(self._opener, template.path.parent, self.tr("the folder"))

    def open_report(self) -> None:
        report = self._artifact("report")
        if report is not None:
            self.error_panel.clear()
            self.open_on_desktop(self._opener, report.path, self.tr("the report"))

    def provision_state(self) -> ProvisionState | None:
        """The provision flow on this template: the certificates it was signed with trusted, the PCR policy
        page's firmware, PCRs and bank preselected (None before a template was written)."""
        template = self._artifact("template")
        if template is None:
            return None
        trusted: list[TrustedFile] = []
        for choice in (self.state.catalog_signer_choice, self.state.uefi_signing):
            if choice is None or choice.signer is None:
                continue
            cert = choice.signer.certificate
            if all(cert not in t.certificates for t in trusted):
                trusted.append(TrustedFile(choice.cert_path, [cert]))
        return ProvisionState.for_template(template.path, trusted, self.state.pcr)

    def provision(self) -> None:
        """*Provision a VM disk…*: ask the frame to open the provision wizard on this template."""
        state = self.provision_state()
        if state is not None:
            self.provisionRequested.emit(state)

    def shielding_state(self) -> ShieldingState | None:
        """The shielding data flow for this template: its qualifier prefilled (None before a build)."""
        template = self._artifact("template")
        return ShieldingState.for_template(template.path) if template is not None else None

    def create_shielding_data(self) -> None:
        """*Create shielding data…*: ask the frame to open the shielding data wizard for this template."""
        state = self.shielding_state()
        if state is not None:
            self.shieldingRequested.emit(state)

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
        self.error_panel.clear()
        self.status_label.clear()
        task = self.run_task(
            "verify", self._verifier, template.path, catalog.path if catalog else None, trusted or None,
            with_progress=True, on_success=self._on_verified, on_failure=self._on_failed,
            on_finished=self._on_finished,
        )  # fmt: skip
        self.progress_panel.start(task, self.tr("Verifying the template"))
        self.refresh()

    def cancel(self) -> None:
        """Ask a running verification to stop (it reports "Cancelled" when it has)."""
        task = self.task("verify")
        if task is not None:
            task.cancel()

    def _on_verified(self, report: Any) -> None:
        self.verify_report = report
        self._show_checks(report)
        ok = bool(getattr(report, "ok", False))
        self.status_label.setText(
            self.tr("Verified: every check passed.") if ok else self.tr("Verification found problems.")
        )

    def _on_failed(self, error: ShieldwrightError) -> None:
        if isinstance(error, CancelledError):
            self.status_label.setText(self.tr("Cancelled: the template was not verified."))
        else:
            self.show_error(error)

    def _on_finished(self) -> None:
        self.refresh()
        self.verifyFinished.emit()
