"""Provision wizard, page 1: the template, and the certificates its signers must be.

Choosing a template reads its catalog (name, version, who signed it) and verifies it end to end in the
background against the trusted certificates (:func:`~app.template.verify.verify_template`, the Finished
page's *Verify*). The verification is informational - provisioning verifies the template itself first -
so Next does not wait for it, but a template that failed it goes no further: it would be refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QStyle,
    QWidget,
)

from app.catalog.format import SignedCatalog
from app.errors import CancelledError, ShieldwrightError
from app.gui.provision_state import ProvisionState, TrustedFile
from app.gui.tasks import TaskRunner
from app.gui.widgets.certificate_details import thumbprint_hex
from app.gui.widgets.check_list import CheckList
from app.gui.widgets.elided_label import ElidedLabel
from app.gui.widgets.progress_panel import ProgressPanel
from app.gui.widgets.status_note import NoteLabel
from app.signing.certificates import describe_certificate
from app.template.verify import TemplateReport
from wizard_pages.provision_common import ProvisionPage, load_trusted, read_identity, verify

log = logging.getLogger(__name__)

IDENTITY, VERIFY, TRUST = "identity", "verify", "trust"
TEMPLATE_FILTERS = ("Disk images (*.raw *.img *.qcow2 *.vhdx *.vhd)", "All files (*)")
CERT_FILTERS = ("Certificates (*.crt *.pem *.cer *.der)", "All files (*)")


class ProvisionTemplatePage(ProvisionPage):
    """The template file, its catalog's identity, the trusted signer certificates, the verification."""

    #: The verification ended (passed, failed, stopped) and the page shows it.
    verifyFinished = Signal()
    #: Reading the template's catalog ended.
    identityFinished = Signal()

    def __init__(
        self, state: ProvisionState, runner: TaskRunner, parent: QWidget | None = None, *,
        verifier: Callable[..., TemplateReport] = verify,
    ) -> None:  # fmt: skip
        super().__init__(state, runner, parent)
        self._verifier = verifier
        self.setTitle(self.tr("Template"))
        self.setSubTitle(
            self.tr(
                "The template to provision a VM disk from, and the certificates that must have signed its "
                "UKI and catalog. A template that was modified, or signed by anyone else, is refused."
            )
        )
        self.identity: SignedCatalog | None = None
        self.report: TemplateReport | None = None
        self._identity_error: ShieldwrightError | None = None
        self._verified_for: tuple[object, ...] | None = None
        self._stopped = False
        self._build_ui()
        self._show()

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        style = self.style()
        self.template_label = ElidedLabel(self)
        self.template_label.setObjectName("templatePath")
        self.choose_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DialogOpenButton), self.tr("C&hoose…"), self
        )
        self.choose_button.setObjectName("chooseTemplate")
        self.choose_button.clicked.connect(self.choose_template)
        template_caption = QLabel(self.tr("&Template:"), self)
        template_caption.setBuddy(self.choose_button)
        self.identity_label = NoteLabel(self, name="templateIdentity", selectable=True)

        self.trust_list = QListWidget(self)
        self.trust_list.setObjectName("trustedCertificates")
        self.trust_list.setAccessibleName(self.tr("Trusted signer certificates"))
        rows = 3
        self.trust_list.setFixedHeight(self.trust_list.fontMetrics().lineSpacing() * rows + 14)
        self.trust_list.currentRowChanged.connect(lambda _row: self._show_trust_buttons())
        self.add_button = QPushButton(self.tr("&Add…"), self)
        self.add_button.setObjectName("addTrusted")
        self.add_button.setToolTip(
            self.tr("Add a certificate file (PEM or DER) the template's signer must be")
        )
        self.add_button.clicked.connect(self.choose_certificate)
        self.remove_button = QPushButton(self.tr("&Remove"), self)
        self.remove_button.setObjectName("removeTrusted")
        self.remove_button.clicked.connect(self.remove_selected)
        trust_caption = QLabel(self.tr("Trusted si&gners:"), self)
        trust_caption.setBuddy(self.trust_list)
        trust_caption.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.trust_hint = NoteLabel(
            self, name="trustHint",
            text=self.tr("The certificates the template was signed with (its UEFI and catalog signing "
                         "certificates), or a CA they chain to."),
        )  # fmt: skip

        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(4)
        grid.addWidget(template_caption, 0, 0)
        grid.addWidget(self.template_label, 0, 1)
        grid.addWidget(self.choose_button, 0, 2)
        grid.addWidget(self.identity_label, 1, 1, 1, 2)
        grid.addWidget(trust_caption, 2, 0)
        grid.addWidget(self.trust_list, 2, 1, 2, 1)
        grid.addWidget(self.add_button, 2, 2)
        grid.addWidget(self.remove_button, 3, 2, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.trust_hint, 4, 1, 1, 2)
        grid.setColumnStretch(1, 1)

        self.progress_panel = ProgressPanel(self)
        self.progress_panel.set_confirm_text(self.tr("Stop verifying? Provisioning verifies it anyway."))
        self.progress_panel.cancelRequested.connect(self.stop_verifying)
        caption = QLabel(self.tr("Verification"), self)
        font = caption.font()
        font.setBold(True)
        caption.setFont(font)
        self.status_label = NoteLabel(self, name="verifyStatus")
        caption_row = QHBoxLayout()
        caption_row.addWidget(caption)
        caption_row.addSpacing(8)
        caption_row.addWidget(self.status_label, 1)
        self.checks = CheckList(self, name="templateChecks")
        self.checks.setAccessibleName(self.tr("Verification checks"))
        self.checks.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

        layout = self.body_layout()
        layout.setSpacing(6)
        layout.addLayout(grid)
        layout.addWidget(self.error_panel)
        layout.addWidget(self.progress_panel)
        layout.addLayout(caption_row)
        layout.addWidget(self.checks, 1)

    # -- choices ----------------------------------------------------------------------------------

    def choose_template(self) -> None:
        current = self.state.template
        start = current.parent if current is not None else Path.home()
        self.file_dialog("template", self.tr("Choose the template"), start, self.set_template,
                         filters=TEMPLATE_FILTERS, select=str(current) if current else None)  # fmt: skip

    def set_template(self, path: str | Path) -> None:
        """Provision from ``path``: read its catalog and verify it (in the background)."""
        self.state.template = Path(path)
        self.state.result = None
        self.refresh()

    def choose_certificate(self) -> None:
        start = self.state.trusted[-1].path.parent if self.state.trusted else Path.home()
        self.file_dialog("certificate", self.tr("Choose a trusted signer certificate"), start,
                         self.add_certificate, filters=CERT_FILTERS)  # fmt: skip

    def add_certificate(self, path: str | Path) -> None:
        """Trust the certificates in ``path`` (loaded in the background)."""
        self.error_panel.clear()
        self.run_task(TRUST, load_trusted, Path(path), on_success=self._on_trusted_loaded,
                      on_finished=self._show)  # fmt: skip
        self._show_trust_buttons()  # one certificate file at a time

    def _on_trusted_loaded(self, entry: TrustedFile) -> None:
        self.state.trusted = [t for t in self.state.trusted if t.path != entry.path] + [entry]
        self.refresh()

    def remove_selected(self) -> None:
        row = self.trust_list.currentRow()
        if 0 <= row < len(self.state.trusted):
            del self.state.trusted[row]
            self.refresh()

    # -- background work --------------------------------------------------------------------------

    def initializePage(self) -> None:
        self.refresh()

    def _verify_key(self) -> tuple[object, ...]:
        return (self.state.template, tuple(id(c) for c in self.state.trusted_certificates()))

    def refresh(self) -> None:
        """Read the catalog and verify again if the template or the trusted certificates changed (or the
        last verification was stopped)."""
        template = self.state.template
        key = self._verify_key()
        if template is None:
            self._show()
            return
        if key != self._verified_for or (self._stopped and self.task(VERIFY) is None):
            if self._verified_for is None or key[0] != self._verified_for[0]:
                self.identity, self._identity_error = None, None
                self.error_panel.clear()
                self.run_task(IDENTITY, read_identity, template, on_success=self._on_identity,
                              on_failure=self._on_identity_failed,
                              on_finished=self._on_identity_finished)  # fmt: skip
            elif self._identity_error is None:
                self.error_panel.clear()  # the last verification's error, if any
            self._verified_for, self.report, self._stopped = key, None, False
            log.info("verifying the template %s", template)
            task = self.run_task(
                VERIFY, self._verifier, template, self.state.trusted_certificates(), with_progress=True,
                on_success=self._on_verified, on_failure=self._on_verify_failed,
                on_finished=self._on_verify_finished,
            )  # fmt: skip
            self.progress_panel.set_confirm_text(self.tr("Stop verifying? Provisioning verifies it anyway."))
            self.progress_panel.start(task, self.tr("Verifying the template"))
        self._show()

    def stop_verifying(self) -> None:
        """Stop a running verification (the Provision page verifies the template itself)."""
        task = self.task(VERIFY)
        if task is not None:
            task.cancel()

    def _on_identity(self, identity: SignedCatalog) -> None:
        self.identity = identity

    def _on_identity_failed(self, error: ShieldwrightError) -> None:
        self._identity_error = error
        self.show_error(error)

    def _on_identity_finished(self) -> None:
        self._show()
        self.identityFinished.emit()

    def _on_verified(self, report: TemplateReport) -> None:
        self.report = report

    def _on_verify_failed(self, error: ShieldwrightError) -> None:
        if isinstance(error, CancelledError):
            self._stopped = True
        else:
            self.show_error(error)

    def _on_verify_finished(self) -> None:
        self._show()
        self.verifyFinished.emit()

    # -- showing ----------------------------------------------------------------------------------

    def _show(self) -> None:
        state = self.state
        self.template_label.set_full_text(str(state.template) if state.template else self.tr("(none chosen)"))
        self._show_identity()
        shown = [
            self.trust_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.trust_list.count())
        ]
        if shown != [str(t.path) for t in state.trusted]:
            self.trust_list.clear()
            for entry in state.trusted:
                names = [describe_certificate(c).subject for c in entry.certificates]
                item = QListWidgetItem(f"{entry.path.name} — {'; '.join(names)}")
                item.setToolTip(str(entry.path))
                item.setData(Qt.ItemDataRole.UserRole, str(entry.path))
                self.trust_list.addItem(item)
        self._show_trust_buttons()
        self._show_checks()
        self.completeChanged.emit()

    def _show_trust_buttons(self) -> None:
        self.remove_button.setEnabled(self.trust_list.currentRow() >= 0)
        self.add_button.setEnabled(self.task(TRUST) is None)

    def _show_identity(self) -> None:
        identity = self.identity
        if self.state.template is None:
            self.identity_label.set_note(self.tr("Choose a template built by Shieldwright."))
        elif identity is None:
            busy = self.task(IDENTITY) is not None
            self.identity_label.set_note(self.tr("Reading its catalog…") if busy else "")
        else:
            cat, signer = identity.catalog, describe_certificate(identity.signer_certificate)
            self.identity_label.set_note(
                self.tr("“%1”, version %2 - catalog signed by %3 (SHA-256 %4…)")
                .replace("%1", cat.template_name).replace("%2", cat.template_version)
                .replace("%3", signer.subject)
                .replace("%4", thumbprint_hex(signer.sha256_fingerprint)[:23]),
                plain=True,
            )  # fmt: skip

    def _show_checks(self) -> None:
        report = self.report
        if report is None:
            self.status_label.set_note("")
        elif report.ok:
            self.status_label.set_note(self.tr("Every check passed."), plain=True)
        else:
            self.status_label.set_note(
                self.tr("%1 check(s) failed: provisioning refuses this template.").replace(
                    "%1", str(len(report.failed))
                ),
                problem=True,
            )
        if report is not None:
            self.checks.show_checks(report.checks)
        elif self.task(VERIFY) is not None:
            self.checks.show_note(
                self.tr("Verifying: the partition table, the ESP, the UKI's signature, the catalog's "
                        "signature and every block, the LUKS2 headers…")
            )  # fmt: skip
        elif self._stopped:
            self.checks.show_note(self.tr("Verification stopped: provisioning verifies the template first."),
                                  icon=QStyle.StandardPixmap.SP_MessageBoxInformation)  # fmt: skip
        else:
            self.checks.show_note(self.tr("Not verified yet."))

    def verification_failed(self) -> bool:
        """The verification finished and found problems (provisioning would refuse the template)."""
        return self.report is not None and not self.report.ok

    # -- QWizardPage ------------------------------------------------------------------------------

    def isComplete(self) -> bool:
        if self.state.template is None or not self.state.trusted or self.task(TRUST) is not None:
            return False
        return self.identity is not None and not self.verification_failed()
