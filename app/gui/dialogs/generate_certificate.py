"""The "Generate certificate" dialog: a new key and a self-signed code-signing certificate.

Key generation and the writes run off the GUI thread (RSA-4096 takes a moment); :attr:`generated` carries
the paths and the in-memory signer, so the page uses the certificate at once. Nothing is overwritten, and a
failed attempt removes the files it wrote.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.errors import OutputExistsError, ShieldwrightError
from app.gui.tasks import BackgroundTask, TaskRunner
from app.gui.widgets.busy import busy_bar
from app.gui.widgets.error_panel import ErrorPanel
from app.progress import CancelToken, ProgressState
from app.signing import keys
from app.signing.signer import KeySigner

log = logging.getLogger(__name__)

#: How each of the engine's key types (:data:`app.signing.keys.KEY_TYPES`, offered in its order, the first
#: being the default) is named in the dialog.
KEY_TYPE_LABELS = {
    "rsa2048": "RSA 2048 bits",
    "rsa3072": "RSA 3072 bits",
    "rsa4096": "RSA 4096 bits",
    "p256": "ECDSA P-256",
    "p384": "ECDSA P-384",
}

DEFAULT_VALIDITY_YEARS = 10


def default_key_directory() -> Path:
    """Where generated keys go unless the user picks another folder."""
    return Path.home() / "shieldwright-keys"


@dataclass(frozen=True)
class GenerateRequest:
    """Everything the background job needs. ``passphrase`` is dropped with the request object."""

    common_name: str
    organization: str | None
    key_type: str
    days: int
    directory: Path
    cert_name: str
    key_name: str
    der_name: str | None = None
    pkcs12_name: str | None = None
    passphrase: bytes | None = field(default=None, repr=False)

    @property
    def cert_path(self) -> Path:
        return self.directory / self.cert_name

    @property
    def key_path(self) -> Path:
        return self.directory / self.key_name

    def outputs(self) -> list[Path]:
        names = [self.key_name, self.cert_name, self.der_name, self.pkcs12_name]
        return [self.directory / n for n in names if n]


@dataclass
class GeneratedCertificate:
    """What a generation produced: the files (in the order written) and the loaded signer."""

    cert_path: Path
    key_path: Path
    files: list[Path]
    signer: KeySigner = field(repr=False)
    key_encrypted: bool = False


def generate_certificate_files(
    request: GenerateRequest, *, cancel: CancelToken, progress: ProgressState
) -> GeneratedCertificate:
    """Runs in the executor: generate the key and certificate, then write every requested file."""
    for path in request.outputs():  # fail before the (slow) key generation; the writes re-check anyway
        if os.path.lexists(path):
            raise OutputExistsError(f"{path} already exists", "choose other file names or another folder")
    progress.begin("generate", 3)
    key = keys.generate_key(request.key_type)
    progress.update(1)
    cert = keys.generate_self_signed(
        key, common_name=request.common_name, organization=request.organization, days=request.days
    )
    progress.update(2)
    cancel.check()  # closed while the key was being generated: write nothing
    if not request.directory.exists():
        try:
            request.directory.mkdir(mode=0o700, parents=True)
        except OSError as exc:
            raise ShieldwrightError(
                f"cannot create the folder {request.directory}: {exc.strerror or exc}",
                "choose another folder",
            ) from None
    written: list[Path] = []
    try:
        written.append(keys.write_private_key(key, request.key_path, request.passphrase))
        written.append(keys.write_certificate(cert, request.cert_path))
        if request.der_name:
            written.append(keys.write_certificate(cert, request.directory / request.der_name, der=True))
        if request.pkcs12_name and request.passphrase:
            written.append(
                keys.write_pkcs12(
                    key,
                    cert,
                    request.directory / request.pkcs12_name,
                    request.passphrase,
                    friendly_name=request.common_name,
                )
            )
    except BaseException:
        for path in written:  # all or nothing: no key without its certificate
            path.unlink(missing_ok=True)
        raise
    progress.update(3)
    return GeneratedCertificate(
        cert_path=request.cert_path,
        key_path=request.key_path,
        files=written,
        signer=KeySigner(key, cert),
        key_encrypted=bool(request.passphrase),
    )


def validity_days(amount: int, unit: str, today: dt.date | None = None) -> int:
    """``amount`` years (calendar years from today, so leap days count) or days, as a number of days."""
    if unit == "days":
        return amount
    today = today or dt.datetime.now(dt.UTC).date()
    try:
        end = today.replace(year=today.year + amount)
    except ValueError:  # 29 February → 28 February
        end = today.replace(year=today.year + amount, day=28)
    return (end - today).days


def _free_stem(directory: Path, stem: str, suffixes: tuple[str, ...]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``… so that none of the default file names exists yet."""
    candidate, n = stem, 1
    while any((directory / f"{candidate}{s}").exists() for s in suffixes):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


class GenerateCertificateDialog(QDialog):
    """Generate a key pair and a self-signed signing certificate (non-blocking: use ``open()``)."""

    #: A certificate was generated and written: a :class:`GeneratedCertificate`.
    generated = Signal(object)
    #: The generation ended (successfully or not) and the dialog shows the outcome.
    generationFinished = Signal()

    def __init__(
        self,
        runner: TaskRunner,
        parent: QWidget | None = None,
        *,
        common_name: str = "",
        file_stem: str = "signing",
        directory: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("generateCertificateDialog")
        self.setWindowTitle(self.tr("Generate signing certificate"))
        self.setModal(True)
        self._runner = runner
        self._task: BackgroundTask | None = None
        self._folder_dialog: QFileDialog | None = None
        self.result_value: GeneratedCertificate | None = None
        directory = directory or default_key_directory()
        stem = _free_stem(directory, file_stem, (".crt", ".key", ".cer", ".p12"))
        self._build_ui(common_name, directory, stem)
        self._update_state()

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self, common_name: str, directory: Path, stem: str) -> None:
        intro = QLabel(
            self.tr(
                "Creates a new private key and a self-signed code-signing certificate for it. Keep the "
                "key safe: whoever has it can sign images this template's VMs will trust."
            ),
            self,
        )
        intro.setWordWrap(True)

        self.cn_edit = QLineEdit(common_name, self)
        self.cn_edit.setPlaceholderText(self.tr("e.g. Example Corp UEFI signing 2026"))
        self.cn_edit.setMaxLength(64)
        self.cn_edit.setAccessibleName(self.tr("Common name"))
        self.org_edit = QLineEdit(self)
        self.org_edit.setPlaceholderText(self.tr("optional"))
        self.org_edit.setMaxLength(64)
        self.org_edit.setAccessibleName(self.tr("Organization"))

        self.key_type_combo = QComboBox(self)
        for key_type in keys.KEY_TYPES:
            self.key_type_combo.addItem(self.tr(KEY_TYPE_LABELS.get(key_type, key_type)), key_type)
        self.key_type_combo.setAccessibleName(self.tr("Key type"))
        self.key_type_note = QLabel(
            self.tr("UEFI firmware expects RSA-2048 keys in the Secure Boot db."), self
        )
        self.key_type_note.setToolTip(
            self.tr(
                "Keep RSA-2048 for the UEFI image signing certificate unless you know the VM firmware "
                "accepts other keys. The catalog signing certificate may use any of these types."
            )
        )
        self._make_hint(self.key_type_note)

        self.validity_spin = QSpinBox(self)
        self.validity_spin.setRange(1, 100)
        self.validity_spin.setValue(DEFAULT_VALIDITY_YEARS)
        self.validity_spin.setAccessibleName(self.tr("Validity"))
        self.validity_unit = QComboBox(self)
        self.validity_unit.addItem(self.tr("years"), "years")
        self.validity_unit.addItem(self.tr("days"), "days")
        self.validity_unit.setAccessibleName(self.tr("Validity unit"))
        self.validity_unit.currentIndexChanged.connect(self._on_unit_changed)
        validity_row = QHBoxLayout()
        validity_row.addWidget(self.validity_spin)
        validity_row.addWidget(self.validity_unit)
        validity_row.addStretch(1)

        self.folder_edit = QLineEdit(str(directory), self)
        self.folder_edit.setAccessibleName(self.tr("Save in folder"))
        self.browse_button = QPushButton(self.tr("&Browse…"), self)
        self.browse_button.setToolTip(self.tr("Choose the folder for the new files"))
        self.browse_button.clicked.connect(self.choose_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.browse_button)

        self.cert_name_edit = QLineEdit(f"{stem}.crt", self)
        self.cert_name_edit.setAccessibleName(self.tr("Certificate file name"))
        self.key_name_edit = QLineEdit(f"{stem}.key", self)
        self.key_name_edit.setAccessibleName(self.tr("Private key file name"))
        self.der_check = QCheckBox(self)  # its text names the file: see _update_state
        self.der_check.setChecked(True)

        self.passphrase_edit = QLineEdit(self)
        self.passphrase_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase_edit.setPlaceholderText(self.tr("optional"))
        self.passphrase_edit.setAccessibleName(self.tr("Key passphrase"))
        self.confirm_edit = QLineEdit(self)
        self.confirm_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.confirm_edit.setAccessibleName(self.tr("Repeat key passphrase"))
        self.passphrase_note = QLabel(self)
        self._make_hint(self.passphrase_note)
        self.pkcs12_check = QCheckBox(self)  # its text names the file: see _update_state
        self.pkcs12_check.setToolTip(
            self.tr("Key and certificate in one file, protected by the key passphrase")
        )

        self.problem_label = QLabel(self)
        self.problem_label.setObjectName("problemLabel")
        self.problem_label.setWordWrap(True)
        self.problem_label.setTextFormat(Qt.TextFormat.PlainText)
        self.problem_label.setStyleSheet("#problemLabel { color: #c01c28; }")
        self.problem_label.hide()

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        rows: list[tuple[str, QWidget | QHBoxLayout, QWidget | None]] = [
            (self.tr("Common &name:"), self.cn_edit, self.cn_edit),
            (self.tr("&Organization:"), self.org_edit, self.org_edit),
            (self.tr("&Key type:"), self.key_type_combo, self.key_type_combo),
            ("", self.key_type_note, None),
            (self.tr("&Valid for:"), validity_row, self.validity_spin),
            (self.tr("&Save in:"), folder_row, self.folder_edit),
            (self.tr("&Certificate file:"), self.cert_name_edit, self.cert_name_edit),
            ("", self.der_check, None),
            (self.tr("Private ke&y file:"), self.key_name_edit, self.key_name_edit),
            (self.tr("Key &passphrase:"), self.passphrase_edit, self.passphrase_edit),
            (self.tr("&Repeat passphrase:"), self.confirm_edit, self.confirm_edit),
            ("", self.passphrase_note, None),
            ("", self.pkcs12_check, None),
        ]
        for caption, field_, buddy in rows:
            if buddy is None:  # a note or option belonging to the row above
                form.addRow("", field_)
                continue
            caption_label = QLabel(caption, self)
            caption_label.setBuddy(buddy)
            form.addRow(caption_label, field_)

        self.error_panel = ErrorPanel(self)

        self.busy_bar = busy_bar(self, self.tr("Generating"), max_width=160, compact=False)
        self.busy_label = QLabel(self.tr("Generating the key and certificate…"), self)
        busy_row = QHBoxLayout()
        busy_row.addWidget(self.busy_bar)
        busy_row.addWidget(self.busy_label)
        busy_row.addStretch(1)
        for busy_widget in (self.busy_bar, self.busy_label):
            busy_widget.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
            busy_widget.hide()

        self.files_caption = QLabel(self.tr("Files &written:"), self)
        self.files_list = QListWidget(self)
        self.files_list.setObjectName("writtenFiles")
        self.files_list.setAccessibleName(self.tr("Files written"))
        self.files_list.setMaximumHeight(self.fontMetrics().height() * 5 + 12)
        self.files_caption.setBuddy(self.files_list)
        self.files_caption.hide()
        self.files_list.hide()

        self.buttons = QDialogButtonBox(self)
        self.generate_button = self.buttons.addButton(
            self.tr("&Generate"), QDialogButtonBox.ButtonRole.ActionRole
        )
        self.generate_button.setDefault(True)
        self.generate_button.setAutoDefault(True)
        self.generate_button.clicked.connect(self.generate)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.close_button.clicked.connect(self._close_clicked)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.problem_label)
        layout.addWidget(self.error_panel)
        layout.addLayout(busy_row)
        layout.addWidget(self.files_caption)
        layout.addWidget(self.files_list)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(560)

        for edit in (
            self.cn_edit,
            self.folder_edit,
            self.cert_name_edit,
            self.key_name_edit,
            self.passphrase_edit,
            self.confirm_edit,
        ):
            edit.textChanged.connect(self._update_state)
        self.pkcs12_check.toggled.connect(self._update_state)
        self.der_check.toggled.connect(self._update_state)
        QWidget.setTabOrder(self.cn_edit, self.org_edit)
        QWidget.setTabOrder(self.org_edit, self.key_type_combo)
        QWidget.setTabOrder(self.key_type_combo, self.validity_spin)
        QWidget.setTabOrder(self.validity_spin, self.validity_unit)
        QWidget.setTabOrder(self.validity_unit, self.folder_edit)
        QWidget.setTabOrder(self.folder_edit, self.browse_button)
        QWidget.setTabOrder(self.browse_button, self.cert_name_edit)
        QWidget.setTabOrder(self.cert_name_edit, self.key_name_edit)
        QWidget.setTabOrder(self.key_name_edit, self.der_check)
        QWidget.setTabOrder(self.der_check, self.passphrase_edit)
        QWidget.setTabOrder(self.passphrase_edit, self.confirm_edit)
        QWidget.setTabOrder(self.confirm_edit, self.pkcs12_check)
        QWidget.setTabOrder(self.pkcs12_check, self.generate_button)
        QWidget.setTabOrder(self.generate_button, self.close_button)

    @staticmethod
    def _make_hint(label: QLabel) -> None:
        font = label.font()
        font.setPointSizeF(font.pointSizeF() * 0.9)
        label.setFont(font)
        label.setForegroundRole(QPalette.ColorRole.PlaceholderText)

    # -- input ------------------------------------------------------------------------------------

    def _on_unit_changed(self) -> None:
        if self.validity_unit.currentData() == "days":
            self.validity_spin.setRange(1, 36500)
        else:
            self.validity_spin.setRange(1, 100)

    def set_key_type(self, key_type: str) -> None:
        index = self.key_type_combo.findData(key_type)
        if index < 0:
            raise ValueError(key_type)
        self.key_type_combo.setCurrentIndex(index)

    def choose_folder(self) -> None:
        """A non-blocking folder chooser."""
        if self._folder_dialog is not None:
            self._folder_dialog.raise_()
            return
        dialog = QFileDialog(self, self.tr("Save the new files in"), self.folder_edit.text())
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(self.folder_edit.setText)
        dialog.finished.connect(self._on_folder_dialog_closed)
        self._folder_dialog = dialog
        dialog.open()

    def _on_folder_dialog_closed(self) -> None:
        self._folder_dialog = None

    def problems(self) -> list[str]:
        """Why Generate is disabled (empty when the input is complete and consistent)."""
        out: list[str] = []
        if not self.cn_edit.text().strip():
            out.append(self.tr("Enter a common name for the certificate."))
        if not self.folder_edit.text().strip():
            out.append(self.tr("Choose the folder to save the files in."))
        names = [self.cert_name_edit.text().strip(), self.key_name_edit.text().strip()]
        if not all(names):
            out.append(self.tr("Enter the certificate and key file names."))
        elif any("/" in n or n in (".", "..") for n in names):
            out.append(self.tr("File names cannot contain '/'; choose the folder with Browse."))
        elif len(set(self._output_names())) != len(self._output_names()):
            out.append(self.tr("The certificate and key need different file names."))
        if self.passphrase_edit.text() != self.confirm_edit.text():
            out.append(self.tr("The passphrases do not match."))
        elif self.pkcs12_check.isChecked() and not self.passphrase_edit.text():
            out.append(self.tr("A PKCS#12 file needs a passphrase: enter one, or untick PKCS#12."))
        return out

    def _visible_problem(self) -> str | None:
        """The problem worth saying in words (empty fields speak for themselves)."""
        mismatch = self.passphrase_edit.text() != self.confirm_edit.text()
        if mismatch and self.confirm_edit.text():
            return self.tr("The passphrases do not match.")
        if self.pkcs12_check.isChecked() and not self.passphrase_edit.text():
            return self.tr("A PKCS#12 file needs a passphrase: enter one, or untick PKCS#12.")
        others = [p for p in self.problems() if "'/'" in p or "different file names" in p]
        return others[0] if others else None

    def _output_names(self) -> list[str]:
        stem = Path(self.cert_name_edit.text().strip()).stem
        names = [self.cert_name_edit.text().strip(), self.key_name_edit.text().strip()]
        if self.der_check.isChecked():
            names.append(f"{stem}.cer")
        if self.pkcs12_check.isChecked():
            names.append(f"{stem}.p12")
        return names

    def _update_state(self) -> None:
        busy = self._task is not None
        done = self.result_value is not None
        problem = self._visible_problem()
        self.problem_label.setText(problem or "")
        self.problem_label.setVisible(bool(problem) and not done)
        self.confirm_edit.setAccessibleDescription(problem or "")
        if self.passphrase_edit.text():
            self.passphrase_note.setText(self.tr("The key file will be encrypted with this passphrase."))
        elif not done:  # after generating, the fields are cleared but the note stays true
            self.passphrase_note.setText(
                self.tr("Leave empty to store the key unencrypted (file mode 0600).")
            )
        stem = Path(self.cert_name_edit.text().strip()).stem or "…"
        self.der_check.setText(
            self.tr("Also save a &DER copy (%1) for enrolling in firmware").replace("%1", f"{stem}.cer")
        )
        self.pkcs12_check.setText(self.tr("Also e&xport a PKCS#12 file (%1)").replace("%1", f"{stem}.p12"))
        self.generate_button.setEnabled(not busy and not done and not self.problems())

    def request(self) -> GenerateRequest:
        """The request the current input describes (``problems()`` must be empty)."""
        stem = Path(self.cert_name_edit.text().strip()).stem
        amount = self.validity_spin.value()
        passphrase = self.passphrase_edit.text()
        return GenerateRequest(
            common_name=self.cn_edit.text().strip(),
            organization=self.org_edit.text().strip() or None,
            key_type=self.key_type_combo.currentData(),
            days=validity_days(amount, self.validity_unit.currentData()),
            directory=Path(self.folder_edit.text().strip()).expanduser(),
            cert_name=self.cert_name_edit.text().strip(),
            key_name=self.key_name_edit.text().strip(),
            der_name=f"{stem}.cer" if self.der_check.isChecked() else None,
            pkcs12_name=f"{stem}.p12" if self.pkcs12_check.isChecked() else None,
            passphrase=passphrase.encode("utf-8") if passphrase else None,
        )

    # -- generating -------------------------------------------------------------------------------

    def generate(self) -> None:
        """Start generating in the background (the Generate button)."""
        if self._task is not None or self.result_value is not None or self.problems():
            return
        request = self.request()
        log.info("generating a %s certificate in %s", request.key_type, request.directory)
        self.error_panel.clear()
        task = self._runner.start(generate_certificate_files, request, name="generate-certificate",
                                  with_progress=True)  # fmt: skip
        task.succeeded.connect(self._on_generated)
        task.failed.connect(self._on_failed)
        task.finished.connect(self._on_finished)
        self._task = task
        self._set_busy(True)

    def is_busy(self) -> bool:
        return self._task is not None

    def _set_busy(self, busy: bool) -> None:
        self.busy_bar.setVisible(busy)
        self.busy_label.setVisible(busy)
        for w in self._inputs():
            w.setEnabled(not busy and self.result_value is None)
        self._update_state()

    def _inputs(self) -> list[QWidget]:
        return [
            self.cn_edit,
            self.org_edit,
            self.key_type_combo,
            self.validity_spin,
            self.validity_unit,
            self.folder_edit,
            self.browse_button,
            self.cert_name_edit,
            self.key_name_edit,
            self.der_check,
            self.passphrase_edit,
            self.confirm_edit,
            self.pkcs12_check,
        ]

    def _on_generated(self, result: GeneratedCertificate) -> None:
        self.result_value = result
        self.passphrase_edit.clear()
        self.confirm_edit.clear()
        self.files_list.clear()
        for path in result.files:
            self.files_list.addItem(str(path))
        self.files_caption.show()
        self.files_list.show()
        self.close_button.setText(self.tr("&Close"))
        self.generate_button.hide()
        self.close_button.setDefault(True)
        self.generated.emit(result)

    def _on_failed(self, error: ShieldwrightError) -> None:
        self.error_panel.show_error(error.message, error.hint)

    def _on_finished(self) -> None:
        task, self._task = self._task, None
        if task is not None and task.error is not None and not isinstance(task.error, ShieldwrightError):
            self.error_panel.show_error(
                self.tr("The certificate could not be generated because of an unexpected error."),
                self.tr("The details were written to the log."),
            )
        self._set_busy(False)
        if self.result_value is not None:
            self.close_button.setFocus()
        self.generationFinished.emit()

    def _close_clicked(self) -> None:
        if self.result_value is not None:
            self.accept()
        else:
            self.reject()

    def done(self, result: int) -> None:
        if self._task is not None:  # closed while generating: write nothing (checked before the writes)
            self._task.cancel()
        self.passphrase_edit.clear()
        self.confirm_edit.clear()
        super().done(result)
