"""Wizard page 3: the boot image — a Unified Kernel Image (UKI), built, signed and measured.

The page chooses the recipe's UKI options (where the kernel comes from, the command line, os-release and
the stub) and previews the UKI with the engine's :func:`~app.template.build.boot.preview_uki`: the same
UKI the build makes, signed with the UEFI signing certificate, with its sections, PCR 11 per boot phase
and its signer. The image's boot files are listed once per image, in the background like the preview.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QStyle, QVBoxLayout, QWidget

from app.boot.uki import HOST_STUB
from app.errors import ShieldwrightError
from app.gui.models.uki_sections_model import UkiSectionsModel
from app.gui.page import WizardPage
from app.gui.presentation import human_size
from app.gui.state import WizardState
from app.gui.tasks import TaskRunner
from app.gui.widgets.boot_source import BootSourceBox
from app.gui.widgets.busy import busy_bar
from app.gui.widgets.certificate_details import thumbprint_hex
from app.gui.widgets.code_editor import CodeEditor
from app.gui.widgets.elided_label import ElidedLabel, StatusLine
from app.gui.widgets.notice import Notice
from app.gui.widgets.pcr_preview import PcrPreview
from app.gui.widgets.uki_sections_table import UkiSectionsTable
from app.template.build.boot import (
    DEFAULT_CMDLINE,
    DEFAULT_OS_RELEASE,
    ImageBootFiles,
    UkiPreview,
    image_boot_files,
    preview_uki,
    ref_of,
)

log = logging.getLogger(__name__)

KERNEL_FILTERS = ("Kernels (vmlinuz* bzImage* linux*)", "All files (*)")
INITRD_FILTERS = ("Initrds (initrd* initramfs* *.img *.cpio*)", "All files (*)")
STUB_FILTERS = ("systemd-stub (*.efi.stub *.efi)", "All files (*)")
_ROOT_RE = re.compile(r"(?:^|\s)root=", re.MULTILINE)


class BootImagePage(WizardPage):
    """Choose the kernel source, edit the command line and os-release, build and sign the UKI."""

    #: Scanning the base image for kernels ended (with or without an error) and the page shows it.
    scanFinished = Signal()
    #: A build ended (successfully or not) and the page shows its outcome.
    buildFinished = Signal()

    def __init__(self, state: WizardState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("Boot image"))
        self.setSubTitle(
            self.tr(
                "The Unified Kernel Image (UKI) bundles the kernel, the initrd and the command line. It is "
                "signed for Secure Boot, and systemd-stub measures it into PCR 11."
            )
        )
        self._scanned_for: tuple[Path | None, int] | None = None
        self._found: ImageBootFiles | None = None
        self._result: UkiPreview | None = None
        self._result_key: tuple[object, ...] | None = None
        #: The stub file chosen (None: the host's), kept while the source builds no UKI.
        self._stub: Path | None = None
        self._syncing = False
        self._build_ui()
        self._load_choice()
        self._refresh()

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.source_box = BootSourceBox(self)
        self.source_box.edited.connect(self._on_inputs_edited)
        self.source_box.kernel_file_button.clicked.connect(self.choose_kernel_file)
        self.source_box.add_initrd_button.clicked.connect(self.choose_initrd_file)

        # Stub.
        # Reserved, elided status lines: their text changes with the build, the columns must not move.
        self.stub_label = StatusLine(self, name="stubLabel")
        self.stub_path_label = ElidedLabel(self)
        self.stub_path_label.setObjectName("stubPath")
        self.stub_path_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.stub_path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stub_file_button = QPushButton(self.tr("&Stub file…"), self)
        self.stub_file_button.setToolTip(
            self.tr("Build on another systemd-stub (an unsigned linuxx64.efi.stub)")
        )
        self.stub_file_button.clicked.connect(self.choose_stub_file)
        self.host_stub_button = QPushButton(self.tr("&Use host stub"), self)
        self.host_stub_button.clicked.connect(lambda: self.set_stub_file(None))
        stub_row = QGridLayout()
        stub_row.setVerticalSpacing(0)
        stub_row.addWidget(QLabel(self.tr("Stub:"), self), 0, 0)
        stub_row.addWidget(self.stub_label, 0, 1, 1, 3)
        stub_row.addWidget(self.stub_path_label, 1, 1)
        stub_row.addWidget(self.stub_file_button, 1, 2)
        stub_row.addWidget(self.host_stub_button, 1, 3)
        stub_row.setColumnStretch(1, 1)

        # Command line and os-release.
        self.cmdline_edit = CodeEditor(2, self)
        self.cmdline_edit.setObjectName("cmdlineEdit")
        self.cmdline_edit.setAccessibleName(self.tr("Kernel command line"))
        self.cmdline_edit.textChanged.connect(self._on_cmdline_edited)
        cmdline_label = QLabel(self.tr("Kernel &command line:"), self)
        cmdline_label.setBuddy(self.cmdline_edit)
        self.cmdline_notice = Notice(self)
        self.os_release_edit = CodeEditor(3, self)
        self.os_release_edit.setObjectName("osReleaseEdit")
        self.os_release_edit.setAccessibleName(self.tr("os-release"))
        self.os_release_edit.setToolTip(
            self.tr("The .osrel section: which OS boot menus and tools say this UKI boots")
        )
        self.os_release_edit.textChanged.connect(self._on_inputs_edited)
        os_label = QLabel(self.tr("&os-release:"), self)
        os_label.setBuddy(self.os_release_edit)

        # Build.
        play = self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay)
        self.build_button = QPushButton(play, self.tr("Bui&ld UKI"), self)
        self.build_button.setObjectName("buildButton")
        self.build_button.setToolTip(self.tr("Build the UKI, sign it and predict PCR 11"))
        self.build_button.clicked.connect(self.build)
        self.busy_bar = busy_bar(self, self.tr("Working"), max_width=120)
        self.busy_bar.hide()
        self.status_label = StatusLine(self, lines=2, name="buildStatus")
        build_row = QHBoxLayout()
        build_row.addWidget(self.build_button)
        build_row.addWidget(self.busy_bar)
        build_row.addWidget(self.status_label, 1)
        self.signer_notice = Notice(self)

        left = QVBoxLayout()
        left.setSpacing(5)
        left.addWidget(self.source_box)
        left.addLayout(stub_row)
        for widget in (cmdline_label, self.cmdline_edit, self.cmdline_notice, os_label, self.os_release_edit):
            left.addWidget(widget)
        left.addLayout(build_row)
        left.addWidget(self.signer_notice)
        left.addStretch(1)

        # Results.
        self.sections_model = UkiSectionsModel(self)
        self.sections_table = UkiSectionsTable(self.sections_model, self)
        sections_label = QLabel(self.tr("S&ections"), self)
        font = sections_label.font()
        font.setBold(True)
        sections_label.setFont(font)
        sections_label.setBuddy(self.sections_table)
        self.pcr_preview = PcrPreview(self)
        right = QVBoxLayout()
        right.setSpacing(5)
        right.addWidget(self.error_panel)
        right.addWidget(sections_label)
        right.addWidget(self.sections_table, 1)
        right.addWidget(self.pcr_preview)

        columns = self.body_layout(QHBoxLayout)
        columns.setContentsMargins(0, 0, 0, 0)
        columns.setSpacing(14)
        columns.addLayout(left, 5)
        columns.addLayout(right, 6)

        box = self.source_box
        chain: list[QWidget] = [
            box.image_radio, box.kernel_combo, box.files_radio, box.kernel_file_button, box.add_initrd_button,
            box.initrd_list, box.remove_initrd_button, box.uki_radio, box.uki_combo, box.action_combo,
            self.stub_file_button, self.host_stub_button, self.cmdline_edit, self.os_release_edit,
            self.build_button, self.sections_table, self.pcr_preview.bank_combo, self.pcr_preview.table,
        ]  # fmt: skip
        for first, second in zip(chain, chain[1:], strict=False):
            QWidget.setTabOrder(first, second)

    # -- entering the page ------------------------------------------------------------------------

    def initializePage(self) -> None:
        """Scan the base image for kernels (once per image) and re-check the built UKI's signer."""
        key = (self.state.image_path, id(self.state.layout))
        if self.state.layout is not None and key != self._scanned_for:
            self._load_choice()
            self.scan_image()
        self._refresh()

    def cleanupPage(self) -> None:
        """Going Back keeps everything (no registered fields to reset)."""

    def scan_image(self) -> None:
        layout, path = self.state.layout, self.state.image_path
        if layout is None or path is None:
            return
        self._scanned_for = (path, id(layout))
        self._found = self._result = None
        self.sections_model.set_sections(None)
        self.pcr_preview.set_predictions(None)
        self.source_box.set_found((), ())
        self.error_panel.clear()
        self.run_task(
            "scan",
            lambda *, cancel, progress: image_boot_files(path, layout, cancel=cancel),
            with_progress=True,
            on_success=self._on_scanned,
            on_failure=self._on_scan_failed,
            on_finished=self._on_scan_finished,
        )
        self._refresh()

    def _on_scanned(self, found: ImageBootFiles) -> None:
        self._found = found
        options = self.state.uki.options
        self._syncing = True
        try:
            self.source_box.set_found(found.kernels, found.ukis)
            self.source_box.select_kernel(options.kernel if options.kernel_from_image else None)
            self.source_box.select_uki(options.existing_uki)
            self.source_box.set_source(_source_for(options.source, found))
        finally:
            self._syncing = False
        self._store_choice()
        if not found.kernels and not found.ukis:
            self.error_panel.show_error(
                self.tr("No kernel was found in the base image."),
                self.tr("Choose the kernel and initrd files instead (From files…)."),
            )

    def _on_scan_failed(self, error: ShieldwrightError) -> None:
        self.show_error(error)
        self._syncing = True
        self.source_box.set_source("files")
        self._syncing = False
        self._store_choice()

    def _on_scan_finished(self) -> None:
        self._refresh()
        self.scanFinished.emit()

    # -- state <-> widgets ------------------------------------------------------------------------

    def _load_choice(self) -> None:
        """Show ``state.uki.options`` in the widgets (the defaults for texts not given)."""
        o = self.state.uki.options
        self._syncing = True
        try:
            self.source_box.set_source(o.source)
            self.source_box.set_action(o.existing_action)
            files = o.source == "files"
            self.source_box.set_kernel_file(Path(o.kernel) if files and o.kernel else None)
            self.source_box.set_initrd_files([Path(p) for p in o.initrds] if files else [])
            for edit, text in ((self.cmdline_edit, o.cmdline or DEFAULT_CMDLINE),
                               (self.os_release_edit, o.os_release or DEFAULT_OS_RELEASE)):  # fmt: skip
                if edit.toPlainText() != text:
                    edit.setPlainText(text)
            self._stub = o.stub
        finally:
            self._syncing = False

    def _store_choice(self) -> None:
        """Write the widgets into ``state.uki.options``, with only the keys the source uses (the built UKI
        stays; ``is_current`` judges it)."""
        box, o = self.source_box, self.state.uki.options
        o.source = box.source()
        o.existing_action = box.action() if o.source == "existing" else None
        uki = box.existing_uki() if o.source == "existing" else None
        o.existing_uki = ref_of(uki) if uki is not None else None
        entry = box.entry() if o.kernel_from_image else None
        if entry is not None:
            o.kernel, o.initrds = ref_of(entry.kernel), [ref_of(f) for f in entry.initrds]
        elif o.source == "files":
            kernel = box.kernel_file()
            o.kernel, o.initrds = (str(kernel) if kernel else None), [str(p) for p in box.initrd_files()]
        else:
            o.kernel, o.initrds = None, []
        new = o.builds_new_uki
        o.cmdline = self.cmdline_edit.toPlainText() if new else None
        o.os_release = self.os_release_edit.toPlainText() if new else None
        o.stub = self._stub if new else None

    def _on_inputs_edited(self) -> None:
        if self._syncing:
            return
        self._store_choice()
        self._refresh()

    def _on_cmdline_edited(self) -> None:
        self._on_inputs_edited()
        self._show_cmdline_notice()

    # -- files ------------------------------------------------------------------------------------

    def _start_directory(self) -> Path:
        for p in (self.source_box.kernel_file(), *self.source_box.initrd_files(), self._stub):
            if p is not None and p.parent.is_dir():
                return p.parent
        return Path.home()

    def _choose(self, title: str, filters: tuple[str, ...], on_selected: Callable[[str], Any]) -> None:
        self.file_dialog("boot-file", title, self._start_directory(), on_selected, filters=filters)

    def choose_kernel_file(self) -> None:
        self._choose(self.tr("Choose the kernel"), KERNEL_FILTERS, self.set_kernel_file)

    def choose_initrd_file(self) -> None:
        self._choose(self.tr("Add an initrd"), INITRD_FILTERS, self.add_initrd_file)

    def choose_stub_file(self) -> None:
        self._choose(self.tr("Choose a systemd-stub"), STUB_FILTERS, self.set_stub_file)

    def set_kernel_file(self, path: str | Path) -> None:
        """Use the kernel file ``path`` (and switch to "From files")."""
        self.source_box.set_kernel_file(Path(path))
        self.source_box.files_radio.setChecked(True)
        self._on_inputs_edited()

    def add_initrd_file(self, path: str | Path) -> None:
        self.source_box.add_initrd_file(Path(path))
        self.source_box.files_radio.setChecked(True)
        self._on_inputs_edited()

    def set_stub_file(self, path: str | Path | None) -> None:
        """Build on the stub file ``path`` (None: the host's default stub)."""
        self._stub = Path(path) if path else None
        self._on_inputs_edited()

    # -- building ---------------------------------------------------------------------------------

    def signer_id(self) -> str | None:
        """Identifies the UEFI signing certificate the UKI must be signed with (None: unsigned)."""
        choice = self.state.uefi_signing
        if choice is None or choice.signer is None:
            return None
        return choice.info.sha256_fingerprint if choice.info is not None else str(id(choice.signer))

    def build(self) -> None:
        """Build (or keep/re-sign) the UKI for the current inputs in the background."""
        self._store_choice()
        image_path, layout = self.state.image_path, self.state.layout
        if image_path is None or layout is None:
            self.error_panel.show_error(
                self.tr("No base image is open."), self.tr("Open one on the Base image page.")
            )
            return
        uki = self.state.uki
        key = uki.inputs_key(self.signer_id())
        options = dataclasses.replace(uki.options, initrds=list(uki.options.initrds))  # a snapshot
        choice = self.state.uefi_signing
        signer = choice.signer if choice is not None else None
        boot_files = self._found.files if self._found is not None else None
        self.error_panel.clear()
        log.info("building the UKI (%s)", options.source)
        self.run_task(
            "build",
            lambda *, cancel, progress: preview_uki(
                options, image_path, layout, signer, cancel=cancel, boot_files=boot_files
            ),
            with_progress=True,
            on_success=lambda result: self._on_built(result, key),
            on_finished=self._on_build_finished,
        )
        self._refresh()

    def _on_built(self, result: UkiPreview, key: tuple[object, ...]) -> None:
        self._result, self._result_key = result, key
        self.state.uki.uki, self.state.uki.built_for = result.built.data, key
        self.sections_model.set_sections(result.built.info.sections)
        self.pcr_preview.set_predictions(result.pcrs)
        self.pcr_preview.set_measured_sections(list(result.measured) or None)
        if result.pcr_error is not None:
            self.pcr_preview.show_unavailable(
                self.tr("PCR 11 cannot be predicted: %1").replace("%1", result.pcr_error.one_line())
            )

    def _on_build_finished(self) -> None:
        self._refresh()
        self.buildFinished.emit()

    def result(self) -> UkiPreview | None:
        """The last build's outcome (shown even when stale; ``isComplete`` says whether it is current)."""
        return self._result

    # -- showing ----------------------------------------------------------------------------------

    def _refresh(self) -> None:
        o = self.state.uki.options
        scanning, building = self.task("scan") is not None, self.task("build") is not None
        self.source_box.refresh(scanning)
        new_uki = o.builds_new_uki
        for w in (self.cmdline_edit, self.os_release_edit, self.stub_file_button):
            w.setEnabled(new_uki)
        self.host_stub_button.setVisible(self._stub is not None)
        self.host_stub_button.setEnabled(new_uki)
        self.stub_label.setText(self._stub_text())
        self.stub_path_label.set_full_text(str(self._stub or HOST_STUB))
        self._show_cmdline_notice()
        self.build_button.setText(
            self.tr("Bui&ld UKI") if new_uki
            else self.tr("Re-sign UKI") if o.existing_action == "resign"
            else self.tr("Inspect UKI")
        )  # fmt: skip
        self.build_button.setEnabled(not scanning and not building and self.state.uki.configured)
        self.busy_bar.setVisible(scanning or building)
        self._show_status(scanning, building)
        self._show_signer()
        self.completeChanged.emit()

    def _show_status(self, scanning: bool, building: bool) -> None:
        uki = self.state.uki
        stale = uki.uki is not None and not uki.is_current(self.signer_id())
        font = self.status_label.font()
        font.setBold(stale and not building)
        self.status_label.setFont(font)
        if scanning:
            text = self.tr("Looking for kernels in the base image…")
        elif building:
            text = self.tr("Building…") if uki.options.builds_new_uki else self.tr("Reading the UKI…")
        elif uki.uki is None:
            text = self.tr("Not built yet.")
        elif stale:
            text = self.tr("Rebuild needed: the inputs or the signing certificate changed.")
        else:
            text = self.tr("Built: %1 UKI.").replace("%1", human_size(len(uki.uki)))
        self.status_label.setText(text)
        # What the last build showed stays readable, but dimmed while it no longer matches the inputs.
        self.pcr_preview.set_stale(stale)
        disabled_text = self.palette().brush(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        self.sections_model.set_dimmed(disabled_text if stale else None)

    def _current_result(self) -> UkiPreview | None:
        """The last preview, when it is the UKI the state holds for the present inputs and signer."""
        uki = self.state.uki
        current = uki.is_current(self.signer_id()) and uki.built_for == self._result_key
        return self._result if current else None

    def _show_signer(self) -> None:
        result = self._current_result()
        if result is not None:
            info = result.signer
            if info is None:
                self.signer_notice.set_text(self.tr("Unsigned — Secure Boot will refuse it."), warning=True)
                return
            # Four lines of 8 bytes: a hex string cannot word-wrap, and two lines of 16 would set the
            # column's width (it would move when the UKI is built).
            thumb = thumbprint_hex(info.sha256_fingerprint)
            rows = "\n".join(thumb[i : i + 24].rstrip(":") for i in range(0, len(thumb), 24))
            self.signer_notice.set_text(
                self.tr("Signed by %1\nSHA-256 thumbprint:\n%2")
                .replace("%1", info.subject)
                .replace("%2", rows),
                warning=False,
            )
            return
        o, choice = self.state.uki.options, self.state.uefi_signing
        if o.source == "existing" and o.existing_action == "keep":
            text = self.tr("Kept as it is: its own signature (if any) is shown after reading it.")
            self.signer_notice.set_text(text, warning=False)
        elif choice is None or choice.signer is None:
            text = self.tr(
                "No UEFI signing certificate: the UKI will be unsigned — Secure Boot will refuse it."
            )
            self.signer_notice.set_text(text, warning=True)
        else:
            subject = choice.info.subject if choice.info is not None else str(choice.cert_path)
            self.signer_notice.set_text(self.tr("Will be signed by %1").replace("%1", subject), warning=False)

    def _show_cmdline_notice(self) -> None:
        if _ROOT_RE.search(self.cmdline_edit.toPlainText()):
            text = self.tr(
                "root= is not needed and can break the encrypted template: systemd-gpt-auto-generator "
                "finds the root partition by its discoverable partition type."
            )
            self.cmdline_notice.set_text(text, warning=True)
        elif self.cmdline_edit.nul_removed:
            text = self.tr("NUL characters cannot be part of a kernel command line; it was removed.")
            self.cmdline_notice.set_text(text, warning=True)
        else:
            text = self.tr(
                "No root= needed: systemd-gpt-auto-generator finds the root by its partition type."
            )
            self.cmdline_notice.set_text(text, warning=False)

    def _stub_text(self) -> str:
        result = self._current_result()
        stub = result.built.info.stub if result is not None else None
        version = stub.version if stub is not None and stub.kind == "systemd-stub" else None
        kind = self.tr("Host default") if self._stub is None else self.tr("File")
        return self.tr("%1 · systemd %2").replace("%1", kind).replace("%2", version) if version else kind

    # -- QWizardPage ------------------------------------------------------------------------------

    def isComplete(self) -> bool:
        return not self.is_busy() and self.state.uki.is_current(self.signer_id())


def _source_for(chosen: str, found: ImageBootFiles) -> str:
    """The UKI source to show once the image is scanned: the one already chosen (by the user, or by a
    recipe being opened) while the image can serve it, else the image's kernel, its UKI, or files."""
    if chosen == "files" or (chosen == "existing" and found.ukis) or (chosen == "image" and found.kernels):
        return chosen
    return "image" if found.kernels else "existing" if found.ukis else "files"
