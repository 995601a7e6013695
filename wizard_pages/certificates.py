"""Wizard page 2: the signing certificates, one per role.

*UEFI image signing* signs the UKI (its certificate must be in the VM firmware's Secure Boot db); *catalog
signing* signs the Volume Signature Catalog and the manifest, and is the UEFI certificate unless the user
chooses another. Each role loads a certificate (with its key file, or a PKCS#12 file) or generates one; the
engine loads and describes it off the GUI thread, and passphrases go from the prompt to that load only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.errors import ShieldwrightError, WrongPassphraseError
from app.gui.dialogs.generate_certificate import (
    GenerateCertificateDialog,
    GeneratedCertificate,
    default_key_directory,
)
from app.gui.dialogs.passphrase import PassphraseDialog
from app.gui.page import WizardPage
from app.gui.state import WizardState
from app.gui.tasks import BackgroundTask, TaskRunner
from app.gui.widgets.adaptive_box import AdaptiveBox
from app.gui.widgets.busy import busy_bar
from app.gui.widgets.certificate_details import CertificateDetails
from app.gui.widgets.error_panel import ErrorPanel
from app.signing.certificates import CertificateInfo
from wizard_pages.certificates_loading import (
    LoadedCertificate,
    NeedsKey,
    Role,
    describe_for_roles,
    load_for_roles,
)

__all__ = ["CatalogRoleBox", "CertificatesPage", "Role", "SigningRoleBox"]

log = logging.getLogger(__name__)

CERT_FILTERS = (
    "Certificates and PKCS#12 files (*.pem *.crt *.cer *.der *.p12 *.pfx)",
    "PKCS#12 files (*.p12 *.pfx)",
    "All files (*)",
)
KEY_FILTERS = ("Private keys (*.key *.pem *.der)", "All files (*)")


class SigningRoleBox(QGroupBox):
    """One role: Load…/Generate… buttons, the chosen files, inline errors, and the certificate details.

    Its loads run as the page's ``load-<role>-certificate`` task and its file chooser is the page's
    ``<role>-certificate-file`` dialog, so the page's busy state covers both.
    """

    #: The loaded certificate changed (loaded, generated, cleared, or a load failed).
    loadedChanged = Signal()
    #: A load or generation attempt ended and its outcome is shown (success, error, or abandoned).
    loadFinished = Signal()
    #: Busy state changed (a task started or ended, a prompt opened or closed).
    busyChanged = Signal()

    def __init__(
        self, role: Role, page: CertificatesPage, *, title: str, description: str, load_text: str,
        generate_text: str,
    ) -> None:  # fmt: skip
        super().__init__(title, page)
        self.role = role
        self._page = page
        self.task_key = f"load-{role.value}-certificate"
        self.dialog_key = f"{role.value}-certificate-file"
        self.loaded: LoadedCertificate | None = None
        self.passphrase_dialog: PassphraseDialog | None = None
        self.generate_dialog: GenerateCertificateDialog | None = None
        self._pending: tuple[Path, Path | None] | None = None
        self.setObjectName(f"{role.value}SigningBox")
        self.setAccessibleName(title.replace("&", ""))

        self.description = QLabel(description, self)
        self.description.setWordWrap(True)
        self.description.setTextFormat(Qt.TextFormat.PlainText)
        self.description.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.description.setVisible(bool(description))

        style = self.style()
        self.load_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DialogOpenButton), load_text, self
        )
        self.load_button.setToolTip(
            self.tr("Load a certificate (PEM or DER) and its private key, or a PKCS#12 file (.p12, .pfx)")
        )
        self.load_button.clicked.connect(self.choose_file)
        self.generate_button = QPushButton(generate_text, self)
        self.generate_button.setToolTip(self.tr("Create a new key and a self-signed certificate"))
        self.generate_button.clicked.connect(self.open_generate_dialog)
        self.busy_bar = busy_bar(self, self.tr("Loading certificate"), max_width=80)
        self.busy_bar.hide()
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.busy_bar)
        buttons.addStretch(1)

        self.files_label = QLabel(self)
        self.files_label.setObjectName("filesLabel")
        self.files_label.setTextFormat(Qt.TextFormat.PlainText)
        self.files_label.setWordWrap(True)
        self.files_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.files_label.hide()

        self.error_panel = ErrorPanel(self)
        self.details = CertificateDetails(self)

        self.body = QVBoxLayout(self)
        self.body.setSpacing(6)
        self.body.addWidget(self.description)
        self.body.addLayout(buttons)
        self.body.addWidget(self.files_label)
        self.body.addWidget(self.error_panel)
        self.body.addWidget(self.details)
        self.body.addStretch(1)
        self.refresh()

    @property
    def task(self) -> BackgroundTask | None:
        """The running load of this role, if any."""
        return self._page.task(self.task_key)

    @property
    def file_chooser(self) -> QFileDialog | None:
        """This role's open file dialog (certificate or key file), if any."""
        return self._page.open_dialog(self.dialog_key)

    # -- loading ----------------------------------------------------------------------------------

    def choose_file(self) -> None:
        """A non-blocking file dialog for the certificate or PKCS#12 file."""
        self._open_file_chooser(self.tr("Load certificate"), CERT_FILTERS, self.load)

    def _open_file_chooser(self, title: str, filters: tuple[str, ...], on_selected: Any) -> QFileDialog:
        opened = self.file_chooser
        dialog = self._page.file_dialog(
            self.dialog_key, title, self._start_directory(), on_selected, filters=filters
        )
        if dialog is not opened:
            dialog.finished.connect(self.busyChanged)  # after the page forgot it: not busy any more
        self.busyChanged.emit()
        return dialog

    def _start_directory(self) -> Path:
        if self.loaded is not None:
            return self.loaded.cert_path.parent
        directory = self._page.key_directory
        return directory if directory.is_dir() else Path.home()

    def load(self, cert_path: str | Path, key_path: str | Path | None = None) -> None:
        """Load ``cert_path`` (and ``key_path``) in the background; a bare certificate asks for its key."""
        cert = Path(cert_path)
        key = Path(key_path) if key_path is not None else None
        log.info("loading the %s signing certificate %s (key %s)", self.role.value, cert, key)
        self._set_loaded(None)
        self.error_panel.clear()
        self._pending = (cert, key)
        self._start(load_for_roles, cert, key, None)

    def _start(self, fn: Any, *args: Any) -> None:
        """Run ``fn`` as this role's load (a running one is superseded: its outcome never arrives)."""
        self._page.error_panel.clear()
        task = self._page.run_task(
            self.task_key,
            fn,
            *args,
            on_success=self._on_loaded,
            on_failure=self._on_failed,
            on_finished=lambda: self._on_task_finished(task),
        )
        self._set_busy()

    def _on_loaded(self, result: LoadedCertificate | NeedsKey) -> None:
        if isinstance(result, NeedsKey):
            self._ask_for_key(result.cert_path)
            return
        if self.passphrase_dialog is not None:
            self.passphrase_dialog.succeed()
        self._set_loaded(result)

    def _ask_for_key(self, cert_path: Path) -> None:
        dialog = self._open_file_chooser(
            self.tr("Private key for %1").replace("%1", cert_path.name),
            KEY_FILTERS,
            lambda key_path: self.load(cert_path, key_path),
        )
        dialog.setLabelText(QFileDialog.DialogLabel.Accept, self.tr("Use key"))
        dialog.rejected.connect(lambda: self._key_not_chosen(cert_path))

    def _key_not_chosen(self, cert_path: Path) -> None:
        self._pending = None
        self.error_panel.show_error(
            self.tr("%1 holds no private key, and no key file was chosen.").replace("%1", cert_path.name),
            self.tr("Load it again and choose its key file, or load a PKCS#12 (.p12, .pfx) file."),
        )
        self.loadFinished.emit()

    def _on_failed(self, error: ShieldwrightError) -> None:
        if isinstance(error, WrongPassphraseError) and self._pending is not None:
            if self.passphrase_dialog is None:
                self._ask_for_passphrase()
            else:
                self.passphrase_dialog.show_wrong_passphrase()
            return
        if self.passphrase_dialog is not None:
            self._close_passphrase_dialog()
        self.error_panel.show_error(error.message, error.hint)

    def _ask_for_passphrase(self) -> None:
        assert self._pending is not None
        cert, key = self._pending
        what = self.tr("“%1”").replace("%1", (key or cert).name)
        dialog = PassphraseDialog(what, self)
        dialog.submitted.connect(self._try_passphrase)
        dialog.rejected.connect(self._on_passphrase_cancelled)
        self.passphrase_dialog = dialog
        dialog.open()
        self.busyChanged.emit()

    def _try_passphrase(self, passphrase: bytes) -> None:
        if self._pending is None:
            return
        cert, key = self._pending
        self._start(load_for_roles, cert, key, passphrase)
        del passphrase  # the task holds the only reference until it is done

    def _on_passphrase_cancelled(self) -> None:
        dialog, self.passphrase_dialog = self.passphrase_dialog, None
        if dialog is not None:
            dialog.deleteLater()
        self._page.cancel_task(self.task_key)  # an attempt was running: forget its outcome
        self.error_panel.show_error(
            self.tr("Not loaded: the key is encrypted and no passphrase was given."),
            self.tr("Load it again to enter the passphrase."),
        )
        self._pending = None
        self._set_busy()
        self.loadFinished.emit()

    def _close_passphrase_dialog(self) -> None:
        dialog, self.passphrase_dialog = self.passphrase_dialog, None
        if dialog is not None:
            dialog.rejected.disconnect(self._on_passphrase_cancelled)
            dialog.reject()
            dialog.deleteLater()

    def _on_task_finished(self, task: BackgroundTask) -> None:
        if task.error is not None and not isinstance(task.error, ShieldwrightError):
            self._close_passphrase_dialog()  # a bug: the page's error panel says so
        if self.passphrase_dialog is not None and self.passphrase_dialog.result():
            self.passphrase_dialog.deleteLater()
            self.passphrase_dialog = None
        self._set_busy()
        if self.passphrase_dialog is None and self.file_chooser is None:  # not waiting for the user
            self._pending = None
            self.loadFinished.emit()

    # -- generating -------------------------------------------------------------------------------

    def open_generate_dialog(self) -> GenerateCertificateDialog:
        """Open the (non-blocking) Generate dialog; its result is loaded as soon as it is written."""
        if self.generate_dialog is not None:
            self.generate_dialog.raise_()
            return self.generate_dialog
        names = {
            Role.UEFI: (self.tr("UEFI image signing"), "uefi-signing"),
            Role.CATALOG: (self.tr("Template catalog signing"), "catalog-signing"),
        }
        common_name, stem = names[self.role]
        dialog = GenerateCertificateDialog(
            self._page.runner, self, common_name=common_name, file_stem=stem,
            directory=self._page.key_directory,
        )  # fmt: skip
        dialog.generated.connect(self._on_generated)
        dialog.finished.connect(self._on_generate_dialog_closed)
        self.generate_dialog = dialog
        dialog.open()
        return dialog

    def _on_generate_dialog_closed(self) -> None:
        dialog, self.generate_dialog = self.generate_dialog, None
        if dialog is not None:
            dialog.deleteLater()

    def _on_generated(self, result: GeneratedCertificate) -> None:
        self._set_loaded(None)
        self.error_panel.clear()
        self._pending = (result.cert_path, result.key_path)
        self._start(describe_for_roles, result.signer, result.cert_path, result.key_path)

    # -- showing ----------------------------------------------------------------------------------

    def _set_loaded(self, loaded: LoadedCertificate | None) -> None:
        self.loaded = loaded
        self.refresh()
        self.loadedChanged.emit()

    def refresh(self) -> None:
        """Show this role's own loaded certificate (files and details)."""
        loaded = self.loaded
        if loaded is None:
            self.files_label.hide()
            self.files_label.clear()
            self.files_label.setToolTip("")
        else:
            if loaded.key_path is None or loaded.key_path == loaded.cert_path:
                text = self.tr("From %1").replace("%1", loaded.cert_path.name)
                tip = str(loaded.cert_path)
            else:
                text = (
                    self.tr("From %1 with key %2")
                    .replace("%1", loaded.cert_path.name)
                    .replace("%2", loaded.key_path.name)
                )
                tip = f"{loaded.cert_path}\n{loaded.key_path}"
            self.files_label.setText(text)
            self.files_label.setToolTip(tip)
            self.files_label.show()
        self.show_info(
            loaded.infos[self.role] if loaded else None,
            placeholder=self.tr("No certificate loaded yet: load one or generate one."),
        )

    def show_info(self, info: CertificateInfo | None, placeholder: str | None = None) -> None:
        self.details.set_info(info, placeholder=placeholder)

    def is_busy(self) -> bool:
        """A load runs, or a file or passphrase prompt of this role waits for the user."""
        return self.task is not None or self.passphrase_dialog is not None or self.file_chooser is not None

    def _set_busy(self) -> None:
        running = self.task is not None
        self.busy_bar.setVisible(running)
        if self.passphrase_dialog is not None:
            self.passphrase_dialog.set_busy(running)
        self.busyChanged.emit()


class CatalogRoleBox(SigningRoleBox):
    """The catalog role, which by default reuses the UEFI signing certificate."""

    def __init__(self, page: CertificatesPage, **kwargs: str) -> None:
        super().__init__(Role.CATALOG, page, **kwargs)
        self.same_check = QCheckBox(self.tr("Use the &UEFI signing certificate"), self)
        self.same_check.setToolTip(
            self.tr("Sign the catalog and the manifest with the UEFI image signing certificate")
        )
        self.body.insertWidget(1, self.same_check)


class CertificatesPage(WizardPage):
    """Choose (load or generate) the UEFI image signing and the catalog signing certificates."""

    #: The certificates shown changed (a load or generation finished, or the catalog choice was toggled).
    certificatesChanged = Signal()

    def __init__(self, state: WizardState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(state, runner, parent)
        #: Where generated keys are saved by default (and where the file dialogs start).
        self.key_directory: Path = default_key_directory()
        self.setTitle(self.tr("Signing certificates"))
        self.setSubTitle(
            self.tr(
                "UEFI image signing signs the boot image (UKI); its certificate must be in the VM "
                "firmware's Secure Boot db. Catalog signing signs the Volume Signature Catalog and the "
                "manifest; shielding data names this signer to trust the template."
            )
        )
        self.uefi_box = SigningRoleBox(
            Role.UEFI,
            self,
            title=self.tr("UEFI image signing"),
            description=self.tr("Signs the UKI. Enrol its certificate in the VM firmware's db."),
            load_text=self.tr("&Load…"),
            generate_text=self.tr("&Generate…"),
        )
        self.catalog_box = CatalogRoleBox(
            self,
            title=self.tr("Catalog signing"),
            description=self.tr("Signs the catalog and manifest. Identifies the template signer."),
            load_text=self.tr("L&oad…"),
            generate_text=self.tr("Gene&rate…"),
        )
        self.catalog_box.same_check.setChecked(state.catalog_same_as_uefi)
        self.catalog_box.same_check.toggled.connect(self._on_same_toggled)

        for box in (self.uefi_box, self.catalog_box):
            box.loadedChanged.connect(self._sync)
            box.busyChanged.connect(self.completeChanged)
            box.loadFinished.connect(self.certificatesChanged)

        row = AdaptiveBox(self, spacing=10)  # one role under the other when both do not fit side by side
        row.box.addWidget(self.uefi_box, 1)
        row.box.addWidget(self.catalog_box, 1)
        layout = self.body_layout()
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.error_panel)  # a bug in a load; each role shows its own errors
        layout.addWidget(row)

        # Tab order: the UEFI role top to bottom, then the catalog role.
        chain: list[QWidget] = [
            self.uefi_box.load_button,
            self.uefi_box.generate_button,
            self.uefi_box.details.sha256_value,
            self.uefi_box.details.findings,
            self.catalog_box.same_check,
            self.catalog_box.load_button,
            self.catalog_box.generate_button,
            self.catalog_box.details.sha256_value,
            self.catalog_box.details.findings,
        ]
        for first, second in zip(chain, chain[1:], strict=False):
            QWidget.setTabOrder(first, second)
        self._sync()

    # -- public API (also used by the screenshot tool and the tests) ----------------------------------

    def box(self, role: Role) -> SigningRoleBox:
        return self.uefi_box if role is Role.UEFI else self.catalog_box

    def load(self, role: Role, cert_path: str | Path, key_path: str | Path | None = None) -> None:
        """Load a certificate for ``role`` as if chosen in the Load dialog."""
        self.box(role).load(cert_path, key_path)

    def is_busy(self) -> bool:
        """A load runs, or a role waits for the user (a file or passphrase prompt)."""
        return super().is_busy() or self.uefi_box.is_busy() or self.catalog_box.is_busy()

    # -- state ------------------------------------------------------------------------------------

    def _on_same_toggled(self, same: bool) -> None:
        self.state.catalog_same_as_uefi = same
        self._sync()
        self.certificatesChanged.emit()

    def _sync(self) -> None:
        """Write both roles into the WizardState and show the catalog role's effective certificate."""
        uefi = self.uefi_box.loaded
        self.state.uefi_signing = uefi.choice(Role.UEFI) if uefi else None
        same = self.catalog_box.same_check.isChecked()
        catalog = uefi if same else self.catalog_box.loaded
        self.state.catalog_signing = catalog.choice(Role.CATALOG) if catalog else None
        box = self.catalog_box
        for w in (box.load_button, box.generate_button):
            w.setEnabled(not same)
        if same:
            box.error_panel.clear()
            box.files_label.setVisible(uefi is not None)
            box.files_label.setText(self.tr("Same certificate as UEFI image signing") if uefi else "")
            box.show_info(
                uefi.infos[Role.CATALOG] if uefi else None,
                placeholder=self.tr("Load or generate the UEFI image signing certificate first."),
            )
        else:
            box.refresh()
        self.completeChanged.emit()

    # -- QWizardPage ------------------------------------------------------------------------------

    def isComplete(self) -> bool:
        return not self.is_busy() and self.state.signing_ready
