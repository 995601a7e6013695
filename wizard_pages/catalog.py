"""Wizard page: the Volume Signature Catalog (template name, version, block size; compute, verify, save).

Like the Microsoft Template Disk Wizard's *Signature Catalog* page, the user gives the template a
friendly name and a version ``a.b.c.d``; shielding data later trusts templates by signer + name +
version. The page can compute the catalog right away in *catalog-only* mode: it hashes the protected
partitions of the base image as they stand (the build computes the final catalog over the encrypted
output). Hashing, signing, decoding and verifying all run in the app's executor through the TaskRunner
(``create_catalog``/``read_catalog``/``verify_catalog``); the page only shows what they return. Progress
and the two-stage Cancel are the shared :class:`ProgressPanel`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QPalette, QValidator
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
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
from app.gui.presentation import display_name, human_size
from app.gui.state import (
    CATALOG_BLOCK_SIZES,
    CatalogChoice,
    CatalogPartitionSummary,
    CatalogSummary,
    WizardState,
)
from app.gui.tasks import BackgroundTask, TaskRunner
from app.gui.widgets.error_panel import ErrorPanel
from app.gui.widgets.progress_panel import ProgressPanel
from app.gui.widgets.tables import setup_readonly_table

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

    from app.catalog.verify import VerifyResult
    from app.progress import CancelToken, Progress
    from app.signing.signer import Signer

log = logging.getLogger(__name__)

CATALOG_FILTERS = ("Volume signature catalogs (*.vsc)", "All files (*)")
#: Longest template name accepted (the engine's limit, app.catalog.format.MAX_NAME_LENGTH).
MAX_NAME_LENGTH = 256
#: How many mismatches the error panel names before "and N more".
MISMATCHES_SHOWN = 3
_VERSION_PART_MAX = 65535


# -- validation (Qt-free helpers, used by the validators and the tests) -------------------------------


def name_problem(text: str) -> str | None:
    """Why ``text`` is not a usable template name, or None (English; the page shows its own words)."""
    if not text.strip():
        return "empty"
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text):
        return "control character"
    if len(text) > MAX_NAME_LENGTH:
        return "too long"
    return None


def version_state(text: str) -> QValidator.State:
    """``a.b.c.d``, each part 0-65535 without leading zeros: Acceptable; a prefix of one: Intermediate."""
    parts = text.split(".")
    if len(parts) > 4:
        return QValidator.State.Invalid
    for part in parts:
        if not part:
            continue
        if not (part.isascii() and part.isdigit()) or (len(part) > 1 and part[0] == "0"):
            return QValidator.State.Invalid
        if int(part) > _VERSION_PART_MAX:
            return QValidator.State.Invalid
    if len(parts) == 4 and all(parts):
        return QValidator.State.Acceptable
    return QValidator.State.Intermediate


class TemplateNameValidator(QValidator):
    """Refuses control characters and overlong names; an empty name is Intermediate (not yet valid)."""

    def validate(self, text: str, pos: int) -> QValidator.State:
        problem = name_problem(text)
        if problem is None:
            return QValidator.State.Acceptable
        return QValidator.State.Intermediate if problem == "empty" else QValidator.State.Invalid


class VersionValidator(QValidator):
    """``a.b.c.d``, each part an integer 0-65535 (System.Version, as ``Protect-TemplateDisk`` takes it)."""

    def validate(self, text: str, pos: int) -> QValidator.State:
        return version_state(text)


# -- work done in the executor ---------------------------------------------------------------------


@dataclass(frozen=True)
class ComputedCatalog:
    """A signed catalog (DER) and what the engine decoded from it."""

    signed: bytes
    summary: CatalogSummary


def summarize_catalog(der: bytes) -> CatalogSummary:
    """Runs in the executor: decode ``der`` with the engine's reader (which checks the signature)."""
    from app.catalog.format import read_catalog

    signed = read_catalog(der)
    cat = signed.catalog
    return CatalogSummary(
        template_name=cat.template_name,
        template_version=cat.template_version,
        block_size=cat.block_size,
        partitions=tuple(
            CatalogPartitionSummary(p.number, p.size_bytes, p.block_count, p.digest) for p in cat.partitions
        ),
        signer_subject=signed.signer_subject,
        signing_time=signed.signing_time,
        size_bytes=len(der),
    )


def compute_catalog(
    image: str,
    numbers: list[int],
    *,
    name: str,
    version: str,
    signer: Signer,
    block_size: int,
    progress: Progress,
    cancel: CancelToken,
) -> ComputedCatalog:
    """Runs in the executor: hash, sign, and decode the result for display."""
    from app.catalog.create import create_catalog

    der = create_catalog(
        image, numbers, name=name, version=version, signer=signer, block_size=block_size,
        progress=progress, cancel=cancel,
    )  # fmt: skip
    return ComputedCatalog(der, summarize_catalog(der))


def verify_catalog(
    image: str,
    signed: bytes,
    *,
    trusted: Sequence[Certificate] | None = None,
    progress: Progress,
    cancel: CancelToken,
) -> VerifyResult:
    """Runs in the executor: the engine's verification (signature, trust, header, every block)."""
    from app.catalog.verify import verify_catalog as verify
    from app.disk.image import open_image

    with open_image(image) as disk:
        return verify(disk, signed, trusted=trusted, progress=progress, cancel=cancel)


def _write_catalog(path: str, data: bytes) -> Path:
    """Runs in the executor. The file dialog already asked before replacing an existing file."""
    from app.signing.output import write_output

    return write_output(path, data, overwrite=True)


def default_file_name(name: str, version: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.") or "template"
    return f"{stem}-{version}.vsc"


def _utc_text(moment: dt.datetime | None) -> str:
    if moment is None:
        return "?"
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class Column:
    NUMBER, NAME, SIZE, BLOCKS, DIGEST = range(5)


# -- the page ---------------------------------------------------------------------------------------


class CatalogPage(QWizardPage):
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
        super().__init__(parent)
        self.state = state
        if state.catalog is None:
            state.catalog = CatalogChoice()
        self._runner = runner
        self._computer = computer
        self._verifier = verifier
        self._task: BackgroundTask | None = None
        self._task_kind = ""
        self._task_inputs: tuple[object, ...] | None = None
        self._file_dialog: QFileDialog | None = None
        self._syncing = False

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
        self.name_edit = QLineEdit(self)
        self.name_edit.setObjectName("templateName")
        self.name_edit.setPlaceholderText(self.tr("e.g. Debian 12 web server"))
        self.name_edit.setValidator(TemplateNameValidator(self.name_edit))
        self.name_edit.setMaxLength(MAX_NAME_LENGTH)
        self.name_edit.setAccessibleName(self.tr("Template name"))
        self.name_edit.setToolTip(
            self.tr("A friendly name for the template disk; shielding data must name it exactly")
        )
        self.name_edit.textChanged.connect(self._on_inputs_edited)

        self.version_edit = QLineEdit(self)
        self.version_edit.setObjectName("templateVersion")
        self.version_edit.setValidator(VersionValidator(self.version_edit))
        self.version_edit.setPlaceholderText("1.0.0.0")
        self.version_edit.setAccessibleName(self.tr("Template version"))
        self.version_edit.setToolTip(self.tr("Four numbers a.b.c.d, each from 0 to 65535"))
        self.version_edit.setMaximumWidth(
            self.fontMetrics().horizontalAdvance("65535.65535.65535.65535") + 24
        )
        self.version_edit.textChanged.connect(self._on_inputs_edited)

        self.block_combo = QComboBox(self)
        self.block_combo.setObjectName("blockSize")
        for size in CATALOG_BLOCK_SIZES:
            self.block_combo.addItem(human_size(size), size)
        self.block_combo.setAccessibleName(self.tr("Block size"))
        self.block_combo.setToolTip(
            self.tr(
                "Each partition is hashed in blocks of this size; smaller blocks locate a change more exactly"
            )
        )
        self.block_combo.currentIndexChanged.connect(self._on_inputs_edited)

        self.signer_value = QLabel(self)
        self.signer_value.setObjectName("catalogSigner")
        self.signer_value.setTextFormat(Qt.TextFormat.PlainText)
        self.signer_value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.signer_value.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        name_label = QLabel(self.tr("Template na&me:"), self)
        name_label.setBuddy(self.name_edit)
        version_label = QLabel(self.tr("&Version:"), self)
        version_label.setBuddy(self.version_edit)
        block_label = QLabel(self.tr("Bl&ock size:"), self)
        block_label.setBuddy(self.block_combo)
        signer_label = QLabel(self.tr("Signer:"), self)

        form = QGridLayout()
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(6)
        form.addWidget(name_label, 0, 0)
        form.addWidget(self.name_edit, 0, 1)
        form.addWidget(version_label, 0, 2)
        form.addWidget(self.version_edit, 0, 3)
        form.addWidget(block_label, 1, 0)
        form.addWidget(self.block_combo, 1, 1, Qt.AlignmentFlag.AlignLeft)
        form.addWidget(signer_label, 1, 2)
        form.addWidget(self.signer_value, 1, 3, 1, 2)
        form.setColumnStretch(1, 2)
        form.setColumnStretch(4, 3)

        self.problem_label = QLabel(self)
        self.problem_label.setObjectName("inputProblem")
        self.problem_label.setTextFormat(Qt.TextFormat.PlainText)
        self.problem_label.setWordWrap(True)
        self.problem_label.hide()

        self.note_label = QLabel(
            self.tr(
                "Catalog-only mode: this hashes the protected partitions of the base image as they are now. "
                "The build computes the final catalog over the encrypted output."
            ),
            self,
        )
        self.note_label.setObjectName("catalogOnlyNote")
        self.note_label.setWordWrap(True)
        self.note_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.table = QTableWidget(0, 5, self)
        self.table.setObjectName("catalogPartitions")
        self.table.setAccessibleName(self.tr("Protected partitions"))
        self.table.setHorizontalHeaderLabels(
            [self.tr("#"), self.tr("Name"), self.tr("Size"), self.tr("Blocks"), self.tr("Digest (SHA-256)")]
        )
        setup_readonly_table(self.table, Column.DIGEST)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        partitions_caption = QLabel(self.tr("&Protected partitions"), self)
        partitions_caption.setBuddy(self.table)

        style = self.style()
        self.compute_button = QPushButton(self.tr("&Compute"), self)
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
        self.status_label = QLabel(self)
        self.status_label.setObjectName("catalogStatus")
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        self.status_label.setWordWrap(True)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.verify_button)
        buttons.addWidget(self.save_button)
        buttons.addSpacing(8)
        buttons.addWidget(self.status_label, 1)

        self.progress_panel = ProgressPanel(self)
        self.progress_panel.cancelRequested.connect(self.cancel)

        # The result: who signed it and when (the per-partition digests are in the table).
        self.result_label = QLabel(self)
        self.result_label.setObjectName("catalogResult")
        self.result_label.setTextFormat(Qt.TextFormat.PlainText)
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.result_label.hide()
        self.verified_label = QLabel(self)
        self.verified_label.setObjectName("catalogVerified")
        self.verified_label.setTextFormat(Qt.TextFormat.PlainText)
        self.verified_icon = QLabel(self)
        self.verified_icon.setPixmap(
            style.standardIcon(QStyle.StandardPixmap.SP_DialogApplyButton).pixmap(16, 16)
        )
        verified = QHBoxLayout()
        verified.setSpacing(6)
        verified.addWidget(self.verified_icon)
        verified.addWidget(self.verified_label, 1)
        self._set_verified(None)

        self.error_panel = ErrorPanel(self)

        layout = QVBoxLayout(self)
        layout.setSpacing(6)
        layout.addLayout(form)
        layout.addWidget(self.problem_label)
        layout.addWidget(self.note_label)
        layout.addWidget(partitions_caption)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.result_label)
        layout.addLayout(verified)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_panel)
        layout.addWidget(self.error_panel)

        chain: list[QWidget] = [
            self.name_edit,
            self.version_edit,
            self.block_combo,
            self.table,
            self.compute_button,
            self.verify_button,
            self.save_button,
            self.progress_panel.stop_button,
            self.progress_panel.keep_button,
            self.progress_panel.cancel_button,
        ]
        for first, second in zip(chain, chain[1:], strict=False):
            QWidget.setTabOrder(first, second)

    # -- inputs -----------------------------------------------------------------------------------

    def _load_choice(self) -> None:
        """Show the choice stored in the state (defaults on first visit)."""
        self._syncing = True
        try:
            choice = self.choice
            self.name_edit.setText(choice.template_name)
            self.version_edit.setText(choice.template_version)
            index = self.block_combo.findData(choice.block_size)
            self.block_combo.setCurrentIndex(index if index >= 0 else self.block_combo.findData(1 << 20))
        finally:
            self._syncing = False

    def name(self) -> str:
        return self.name_edit.text().strip()

    def version(self) -> str:
        return self.version_edit.text()

    def block_size(self) -> int:
        return int(self.block_combo.currentData())

    def inputs_valid(self) -> bool:
        return name_problem(self.name_edit.text()) is None and self.version_edit.hasAcceptableInput()

    def _on_inputs_edited(self, *_: object) -> None:
        if self._syncing:
            return
        choice = self.choice
        choice.template_name = self.name()
        choice.template_version = self.version()
        choice.block_size = self.block_size()
        if choice.signed is not None and not self.state.catalog_ready:
            # Name, version and block size are inside the signed catalog: a new one is needed.
            choice.clear_result()
            self._set_verified(None)
            self.status_label.setText(self.tr("The inputs changed: compute the catalog again."))
        self.refresh()

    def _input_problem(self) -> str | None:
        if not self.name_edit.text().strip():
            return None  # the placeholder and the disabled Compute say enough before anything was typed
        if name_problem(self.name_edit.text()) is not None:
            return self.tr("The template name must not contain control characters.")
        if not self.version_edit.hasAcceptableInput():
            return self.tr(
                "The version must be four numbers from 0 to 65535 separated by dots, like 1.0.0.0."
            )
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
        if info is not None:
            self.signer_value.setText(info.subject)
            self.signer_value.setToolTip(
                self.tr("%1\nSHA-256 %2").replace("%1", info.subject).replace("%2", info.sha256_fingerprint)
            )
        else:
            self.signer_value.setText(self.tr("none chosen"))
            self.signer_value.setToolTip("")
        self._fill_table()
        self._show_result()
        busy = self.is_busy()
        for w in (self.name_edit, self.version_edit, self.block_combo):
            w.setEnabled(not busy)
        blocker = self._signer_problem()
        self.compute_button.setEnabled(not busy and blocker is None and self.inputs_valid())
        have = state.catalog_ready
        self.verify_button.setEnabled(not busy and have)
        self.save_button.setEnabled(not busy and have and self._file_dialog is None)
        problem = self._input_problem()
        self.problem_label.setText(problem or "")
        self.problem_label.setVisible(problem is not None)
        if not busy and not have and blocker is not None:
            self.status_label.setText(blocker)
        elif not busy and not have and not self.status_label.text():
            self.status_label.setText(self.tr("Not computed yet."))
        self.completeChanged.emit()

    def _fill_table(self) -> None:
        state = self.state
        layout = state.layout
        summary = self.choice.summary if state.catalog_ready else None
        computed = {p.number: p for p in summary.partitions} if summary else {}
        partitions = [p for p in (layout.partitions if layout else []) if p.number in state.protected]
        bs = self.block_size()
        self.table.setRowCount(len(partitions))
        for row, p in enumerate(partitions):
            result = computed.get(p.number)
            blocks = result.block_count if result else math.ceil(p.size_bytes / bs)
            size = QTableWidgetItem(human_size(p.size_bytes))
            size.setToolTip(self.tr("%1 bytes").replace("%1", f"{p.size_bytes:,}"))
            size.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            count = QTableWidgetItem(f"{blocks:,}")
            count.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if result:
                # Full text; the view elides it in the middle when the column is narrow.
                digest = QTableWidgetItem(result.digest)
                digest.setToolTip(result.digest)
                digest.setData(Qt.ItemDataRole.UserRole, result.digest)
                digest.setFont(self._mono)
                digest.setData(Qt.ItemDataRole.AccessibleTextRole, result.digest)
            else:
                digest = QTableWidgetItem(self.tr("not computed"))
                digest.setForeground(self.palette().brush(QPalette.ColorRole.PlaceholderText))
            number = QTableWidgetItem(str(p.number))
            number.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            for col, item in enumerate((number, QTableWidgetItem(display_name(p)), size, count, digest)):
                self.table.setItem(row, col, item)

    def _show_result(self) -> None:
        summary = self.choice.summary if self.state.catalog_ready else None
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
            .replace("%7", _utc_text(summary.signing_time))
        )
        self.result_label.show()

    def _set_verified(self, text: str | None) -> None:
        self.verified_label.setText(text or "")
        self.verified_label.setVisible(text is not None)
        self.verified_icon.setVisible(text is not None)

    def partition_digests(self) -> dict[int, str]:
        """The full digests shown in the table, by partition number (empty until computed)."""
        out: dict[int, str] = {}
        for row in range(self.table.rowCount()):
            digest = self.table.item(row, Column.DIGEST).data(Qt.ItemDataRole.UserRole)
            if digest:
                out[int(self.table.item(row, Column.NUMBER).text())] = digest
        return out

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
            self._computer,
            str(state.image_path),
            numbers,
            name=self.name(),
            version=self.version(),
            signer=signer_choice.signer,
            block_size=self.block_size(),
        )
        task = self._runner.start(work, name="compute-catalog", with_progress=True)
        self._begin(task, "compute", self.tr("Hashing the protected partitions"))

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
        task = self._runner.start(
            self._verifier, str(state.image_path), choice.signed,
            trusted=trusted, name="verify-catalog", with_progress=True,
        )  # fmt: skip
        self._begin(task, "verify", self.tr("Verifying every block against the catalog"))

    def _begin(self, task: BackgroundTask, kind: str, title: str) -> None:
        self._task, self._task_kind = task, kind
        self.status_label.clear()
        self.progress_panel.set_confirm_text(
            self.tr("Stop hashing?") if kind == "compute" else self.tr("Stop verifying?")
        )
        self.progress_panel.start(task, title)
        task.succeeded.connect(self._on_succeeded)
        task.failed.connect(self._on_failed)
        task.finished.connect(self._on_task_finished)
        self.refresh()

    def cancel(self) -> None:
        """Ask the running compute or verify to stop (cooperative: it ends at its next check)."""
        if self._task is not None:
            log.info("cancelling the catalog %s", self._task_kind)
            self._task.cancel()

    def _on_succeeded(self, result: Any) -> None:
        if self._task_kind == "compute":
            assert isinstance(result, ComputedCatalog) and self._task_inputs is not None
            self.choice.set_result(result.signed, result.summary, self._task_inputs)
            self.status_label.setText(self.tr("Computed and signed."))
        elif self._task_kind == "verify":
            self._show_verification(result)

    def _show_verification(self, result: VerifyResult) -> None:
        if result.ok:
            self._set_verified(self.tr("Catalog verified: %n block(s) match.", "", result.blocks_checked))
            self.status_label.clear()
            return
        problems, mismatches = list(result.problems), list(result.mismatches)
        count = max(result.mismatch_count, len(mismatches))
        lines = [
            self.tr("partition %1 at byte offset %2 (block %3)")
            .replace("%1", str(m.partition_number))
            .replace("%2", f"{m.byte_offset:,}")
            .replace("%3", f"{m.block_index:,}")
            for m in mismatches[:MISMATCHES_SHOWN]
        ]
        more = count - min(len(mismatches), MISMATCHES_SHOWN)
        hint = "; ".join(lines)
        if more > 0:
            hint += "; " + self.tr("and %n more block(s).", "", more)
        elif hint:
            hint += "."
        if mismatches:
            message = self.tr("The image does not match the catalog: %n block(s) differ.", "", count)
            if problems:
                hint = "; ".join(str(p) for p in problems) + (" " + hint if hint else "")
        else:
            message = str(problems[0]) if problems else self.tr("The catalog does not verify.")
            hint = "; ".join(str(p) for p in problems[1:])
        self.error_panel.show_error(message, hint)
        self.status_label.setText(self.tr("Verification failed."))

    def _on_failed(self, error: ShieldwrightError) -> None:
        if isinstance(error, CancelledError):
            what = (
                self.tr("no catalog was computed")
                if self._task_kind == "compute"
                else self.tr("the catalog was not verified")
            )
            self.status_label.setText(self.tr("Cancelled: %1.").replace("%1", what))
            return
        self.error_panel.show_error(error.message, error.hint)
        self.status_label.setText(
            self.tr("Computing failed.") if self._task_kind == "compute" else self.tr("Verifying failed.")
        )

    def _on_task_finished(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.succeeded.disconnect(self._on_succeeded)
            task.failed.disconnect(self._on_failed)
            task.finished.disconnect(self._on_task_finished)
            if task.error is not None and not isinstance(task.error, ShieldwrightError):
                self.error_panel.show_error(
                    self.tr("The catalog could not be computed because of an unexpected error.")
                    if self._task_kind == "compute"
                    else self.tr("The catalog could not be verified because of an unexpected error."),
                    self.tr("The details were written to the log."),
                )
        self._task_kind = ""
        self._task_inputs = None
        self.refresh()
        self.operationFinished.emit()

    # -- saving -----------------------------------------------------------------------------------

    def choose_save_path(self) -> None:
        """A non-blocking Save dialog; the catalog is written when a file is chosen."""
        if self._file_dialog is not None:
            self._file_dialog.raise_()
            return
        if not self.state.catalog_ready:
            return
        start = self.state.image_path.parent if self.state.image_path else Path.home()
        dialog = QFileDialog(self, self.tr("Save catalog"), str(start))
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setFileMode(QFileDialog.FileMode.AnyFile)
        dialog.setNameFilters([self.tr(f) for f in CATALOG_FILTERS])
        dialog.setDefaultSuffix("vsc")
        dialog.selectFile(default_file_name(self.name(), self.version()))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(self.save_to)
        dialog.finished.connect(self._on_file_dialog_closed)
        self._file_dialog = dialog
        dialog.open()
        self.refresh()

    def _on_file_dialog_closed(self, _result: int) -> None:
        self._file_dialog = None
        self.refresh()

    def save_to(self, path: str | Path) -> None:
        """Write the computed catalog to ``path`` (in the background; replaces an existing file)."""
        signed = self.choice.signed
        if signed is None or self.is_busy():
            return
        self.error_panel.clear()
        task = self._runner.start(_write_catalog, str(path), signed, name="save-catalog")
        self._task, self._task_kind = task, "save"
        task.succeeded.connect(self._on_saved)
        task.failed.connect(self._on_save_failed)
        task.finished.connect(self._on_save_finished)
        self.refresh()

    def _on_saved(self, path: Path) -> None:
        log.info("catalog saved to %s", path)
        self.status_label.setText(self.tr("Saved to %1").replace("%1", str(path)))
        self.status_label.setToolTip(str(path))

    def _on_save_failed(self, error: ShieldwrightError) -> None:
        self.error_panel.show_error(error.message, error.hint)

    def _on_save_finished(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.succeeded.disconnect(self._on_saved)
            task.failed.disconnect(self._on_save_failed)
            task.finished.disconnect(self._on_save_finished)
        self._task_kind = ""
        self.refresh()
        self.operationFinished.emit()

    # -- QWizardPage ------------------------------------------------------------------------------

    def is_busy(self) -> bool:
        return self._task is not None

    def isComplete(self) -> bool:
        return not self.is_busy() and self.inputs_valid() and self.state.catalog_ready
