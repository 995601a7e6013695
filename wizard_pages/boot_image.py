"""Wizard page 3: the boot image — a Unified Kernel Image (UKI), built, signed and measured.

The UKI bundles the kernel, its initrd(s), the command line and os-release behind systemd-stub; it is
signed with the UEFI image signing certificate (Certificates page) so Secure Boot accepts it, and
systemd-stub measures its sections into PCR 11. The page chooses where the kernel comes from (the base
image's XBOOTLDR/ESP/root, files, or a UKI already in ``\\EFI\\Linux``), edits the command line and
os-release, and builds. Every engine call (listing the image's boot files, reading them, building,
inspecting, predicting PCR 11) runs in the app's executor through the TaskRunner; the page shows the
results — sections, PCR 11 per phase, the signer — or the engine's error, inline.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSignalBlocker, QSize, Qt, Signal
from PySide6.QtGui import QFontDatabase, QPalette, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QStyle,
    QTableView,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from app.errors import ShieldwrightError
from app.gui.models.uki_sections_model import Column as SectionColumn
from app.gui.models.uki_sections_model import UkiSectionsModel
from app.gui.presentation import human_size
from app.gui.state import BootChoice, WizardState
from app.gui.tasks import BackgroundTask, TaskRunner
from app.gui.widgets.busy import busy_bar
from app.gui.widgets.certificate_details import thumbprint_hex
from app.gui.widgets.error_panel import ErrorPanel
from app.gui.widgets.pcr_preview import BANKS, PcrPreview
from app.progress import CancelToken

if TYPE_CHECKING:
    from app.boot.pairing import KernelEntry
    from app.boot.sources import BootFile
    from app.disk.model import DiskLayout
    from app.signing.certificates import CertificateInfo
    from app.signing.signer import Signer

log = logging.getLogger(__name__)

#: The host's systemd-stub, used when no stub file is chosen.
HOST_STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
#: The command line offered when the image has none to suggest.
DEFAULT_CMDLINE = "console=tty0 console=ttyS0"
#: os-release offered when the image has no /etc/os-release the engine can read.
DEFAULT_OS_RELEASE = 'NAME="Linux"\nID=linux\nPRETTY_NAME="Linux (Shieldwright template)"\n'
KERNEL_FILTERS = ("Kernels (vmlinuz* bzImage* linux*)", "All files (*)")
INITRD_FILTERS = ("Initrds (initrd* initramfs* *.img *.cpio*)", "All files (*)")
STUB_FILTERS = ("systemd-stub (*.efi.stub *.efi)", "All files (*)")

#: systemd-stub's measuring order (``UnifiedSection``), for listing the measured sections.
MEASURE_ORDER = (
    ".linux",
    ".osrel",
    ".cmdline",
    ".initrd",
    ".ucode",
    ".splash",
    ".dtb",
    ".uname",
    ".sbat",
    ".pcrpkey",
)
_ROOT_RE = re.compile(r"(?:^|\s)root=", re.MULTILINE)


# -- engine calls (run in the executor) -------------------------------------------------------------


@dataclass
class ImageBootFiles:
    """What the base image offers: kernels paired with initrds, existing UKIs, and its os-release."""

    kernels: list[KernelEntry[BootFile]]
    ukis: list[BootFile]
    os_release: str | None = None
    cmdline: str | None = None


def _scan_image(
    image_path: Path, layout: DiskLayout, *, cancel: CancelToken, progress: object
) -> ImageBootFiles:
    """List the image's kernels (paired with their initrds) and UKIs. Runs in the executor."""
    from app.boot import sources
    from app.boot.pairing import pair_kernels
    from app.disk.image import open_image

    with open_image(image_path) as image:
        files = sources.list_boot_files(image, layout, cancel=cancel)
    # The engine offers no reader for the image's /etc/os-release (or a BLS entry's options) yet:
    # the page suggests its defaults. Fill these two when it does.
    os_release = cmdline = None
    return ImageBootFiles(
        kernels=pair_kernels(files),
        ukis=[f for f in files if f.kind == "uki"],
        os_release=os_release,
        cmdline=cmdline,
    )


@dataclass
class BuildRequest:
    """A snapshot of the inputs, so edits made while the build runs cannot change it."""

    choice: BootChoice
    image_path: Path | None
    layout: DiskLayout | None
    signer: Signer | None = field(repr=False)
    key: tuple[Any, ...]


@dataclass
class BuildResult:
    uki: bytes = field(repr=False)
    info: Any  # app.boot.uki.UkiInfo
    pcrs: dict[str, dict[str, str]]
    #: The certificate that signed the UKI (None: unsigned).
    signer: CertificateInfo | None
    key: tuple[Any, ...]
    #: Why PCR 11 could not be predicted (``pcrs`` is then empty).
    pcr_error: ShieldwrightError | None = None


def _read_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ShieldwrightError(
            f"cannot read the {what} {path}: {exc.strerror}", "choose another file"
        ) from None


def _build(request: BuildRequest) -> BuildResult:
    """Build (or keep, or re-sign) the UKI, inspect it, predict PCR 11 for every bank."""
    from app.boot import pcr, uki
    from app.boot.errors import PcrPredictionError
    from app.signing.authenticode import list_signatures, sign_pe
    from app.signing.certificates import describe_certificate

    choice = request.choice

    def from_image(f: BootFile) -> bytes:
        from app.boot.sources import read_boot_file
        from app.disk.image import open_image

        if request.image_path is None or request.layout is None:
            raise ShieldwrightError("no base image is open", "open one on the Base image page")
        with open_image(request.image_path) as image:
            return read_boot_file(image, request.layout, f)

    if not choice.builds_new_uki:
        if choice.existing_uki is None:
            raise ShieldwrightError("no UKI was chosen", "choose one of the image's UKIs")
        data = from_image(choice.existing_uki)
        if choice.existing_action == "re-sign":
            if request.signer is None:
                raise ShieldwrightError(
                    "there is no UEFI signing certificate to re-sign the UKI with",
                    "load or generate one on the Certificates page",
                )
            data = sign_pe(data, request.signer, mode="replace", name=choice.existing_uki.path)
    else:
        if choice.kernel_from_image:
            if choice.kernel is None:
                raise ShieldwrightError("no kernel was chosen", "choose a kernel from the image")
            linux = from_image(choice.kernel)
            initrds = [from_image(f) for f in choice.initrds]
        else:
            if choice.kernel_path is None:
                raise ShieldwrightError("no kernel file was chosen", "choose the kernel (vmlinuz) file")
            linux = _read_file(choice.kernel_path, "kernel")
            initrds = [_read_file(p, "initrd") for p in choice.initrd_paths]
        stub = _read_file(choice.stub_path, "stub") if choice.stub_path is not None else None
        inputs = uki.UkiInputs(
            linux=linux,
            initrds=initrds,
            cmdline=choice.cmdline,
            os_release=choice.os_release,
            stub=stub,
            uname=None,
            sbat=None,
            splash=None,
            dtb=None,
            pcrpkey=None,
        )
        data = uki.build_uki(inputs, signer=request.signer)
    info = uki.inspect_uki(data)
    pcr_error = None
    try:
        pcrs = pcr.predict_pcr11(info, banks=BANKS)
    except PcrPredictionError as exc:  # e.g. a kept UKI whose stub we cannot identify: still usable
        pcrs, pcr_error = {}, exc
    signed_by = None
    for sig in list_signatures(data):
        if sig.signer is not None:
            signed_by = describe_certificate(sig.signer, purpose="uefi")
            break
    return BuildResult(data, info, {b: dict(v) for b, v in pcrs.items()}, signed_by, request.key, pcr_error)


# -- small widgets ------------------------------------------------------------------------------------


class Notice(QFrame):
    """An inline note: an icon and a wrapped line, in a neutral ("hint") or a warning style."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("notice")
        self.icon = QLabel(self)
        self.icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 3, 6, 3)
        row.setSpacing(6)
        row.addWidget(self.icon)
        row.addWidget(self.label, 1)
        self.warning = False
        self.set_text("", warning=False)

    def set_text(self, text: str, *, warning: bool) -> None:
        self.warning = warning
        self.label.setText(text)
        pixmap = (
            QStyle.StandardPixmap.SP_MessageBoxWarning
            if warning
            else QStyle.StandardPixmap.SP_MessageBoxInformation
        )
        size = self.fontMetrics().height()
        self.icon.setPixmap(self.style().standardIcon(pixmap).pixmap(size, size))
        self.setStyleSheet(
            "#notice { background: rgba(230, 160, 0, 0.16); border: 1px solid rgba(200, 130, 0, 0.8);"
            " border-radius: 4px; }"
            if warning
            else "#notice { border: none; }"
        )
        self.label.setForegroundRole(
            QPalette.ColorRole.WindowText if warning else QPalette.ColorRole.PlaceholderText
        )
        self.setAccessibleName((self.tr("Warning: %1") if warning else "%1").replace("%1", text))


class ElidedLabel(QLabel):
    """A one-line label that elides its text in the middle to fit; the full text is the tooltip."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(60)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self.setAccessibleName(text)
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        self.setText(
            self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideMiddle, max(self.width(), 60))
        )


class CodeEditor(QPlainTextEdit):
    """A small monospace editor for a command line or os-release; NUL characters never get in."""

    #: A NUL character was typed or pasted and removed.
    nulRemoved = Signal()

    def __init__(self, lines: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setTabChangesFocus(True)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self._lines = lines
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        #: The last edit brought a NUL character, which was removed.
        self.nul_removed = False
        self.textChanged.connect(self._strip_nul)  # first: every other handler sees the clean text

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        margins = self.contentsMargins()
        height = self.fontMetrics().lineSpacing() * self._lines + 2 * int(self.document().documentMargin())
        return QSize(hint.width(), height + margins.top() + margins.bottom())

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()

    def _strip_nul(self) -> None:
        text = self.toPlainText()
        if "\0" not in text:
            self.nul_removed = False
            return
        position = self.textCursor().position()
        with QSignalBlocker(self):
            self.setPlainText(text.replace("\0", ""))
            cursor = self.textCursor()
            cursor.setPosition(min(position, len(self.toPlainText())))
            self.setTextCursor(cursor)
        self.textChanged.emit()  # the others see the clean text (this handler runs again and resets the flag)
        self.nul_removed = True  # until the next edit
        self.nulRemoved.emit()


# -- the page -------------------------------------------------------------------------------------------


class BootImagePage(QWizardPage):
    """Choose the kernel source, edit the command line and os-release, build and sign the UKI."""

    #: Scanning the base image for kernels ended (with or without an error) and the page shows it.
    scanFinished = Signal()
    #: A build ended (successfully or not) and the page shows its outcome.
    buildFinished = Signal()

    def __init__(
        self,
        state: WizardState,
        runner: TaskRunner,
        parent: QWidget | None = None,
        *,
        scanner: Callable[..., ImageBootFiles] = _scan_image,
        builder: Callable[[BuildRequest], BuildResult] = _build,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self._runner = runner
        self._scanner = scanner
        self._builder = builder
        self._scan_task: BackgroundTask | None = None
        self._build_task: BackgroundTask | None = None
        self._scanned_for: tuple[Path | None, int] | None = None
        self._image_files: ImageBootFiles | None = None
        self._result: BuildResult | None = None
        self._file_dialog: QFileDialog | None = None
        self._syncing = False
        self.setTitle(self.tr("Boot image"))
        self.setSubTitle(
            self.tr(
                "The Unified Kernel Image (UKI) bundles the kernel, the initrd and the command line. It is "
                "signed for Secure Boot, and systemd-stub measures it into PCR 11."
            )
        )
        self._build_ui()
        self._load_choice()
        self._refresh()

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        style = self.style()
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)

        # Source.
        self.source_box = QGroupBox(self.tr("Kernel and initrd"), self)
        self.image_radio = QRadioButton(self.tr("From the base &image"), self.source_box)
        self.files_radio = QRadioButton(self.tr("From &files…"), self.source_box)
        self.uki_radio = QRadioButton(self.tr("E&xisting UKI in the image"), self.source_box)
        self.source_group = QButtonGroup(self)
        for i, radio in enumerate((self.image_radio, self.files_radio, self.uki_radio)):
            self.source_group.addButton(radio, i)
        self.source_group.idToggled.connect(self._on_source_toggled)

        self.kernel_combo = QComboBox(self.source_box)
        self.kernel_combo.setAccessibleName(self.tr("Kernel from the base image"))
        self.kernel_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.kernel_combo.setMinimumContentsLength(20)
        self.kernel_combo.currentIndexChanged.connect(self._on_inputs_edited)
        kernel_label = QLabel(self.tr("Ke&rnel:"), self.source_box)
        kernel_label.setBuddy(self.kernel_combo)
        self.initrds_label = QLabel(self.source_box)
        self.initrds_label.setTextFormat(Qt.TextFormat.PlainText)
        self.initrds_label.setWordWrap(True)
        self.initrds_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.image_panel = QWidget(self.source_box)
        grid = QGridLayout(self.image_panel)
        grid.setContentsMargins(22, 0, 0, 0)
        grid.setVerticalSpacing(2)
        grid.addWidget(kernel_label, 0, 0)
        grid.addWidget(self.kernel_combo, 0, 1)
        grid.addWidget(self.initrds_label, 1, 1)
        grid.setColumnStretch(1, 1)

        self.kernel_file_label = QLabel(self.source_box)
        self.kernel_file_label.setTextFormat(Qt.TextFormat.PlainText)
        self.kernel_file_label.setFont(mono)
        self.kernel_file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.kernel_file_button = QPushButton(self.tr("C&hoose kernel…"), self.source_box)
        self.kernel_file_button.clicked.connect(self.choose_kernel_file)
        self.initrd_list = QListWidget(self.source_box)
        self.initrd_list.setAccessibleName(self.tr("Initrd files"))
        self.initrd_list.setFont(mono)
        self.initrd_list.setMaximumHeight(self.fontMetrics().height() * 3 + 10)
        self.initrd_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.add_initrd_button = QPushButton(self.tr("Add initr&d…"), self.source_box)
        self.add_initrd_button.clicked.connect(self.choose_initrd_file)
        self.remove_initrd_button = QPushButton(self.tr("Re&move"), self.source_box)
        self.remove_initrd_button.clicked.connect(self.remove_selected_initrd)
        self.files_panel = QWidget(self.source_box)
        fgrid = QGridLayout(self.files_panel)
        fgrid.setContentsMargins(22, 0, 0, 0)
        fgrid.setVerticalSpacing(2)
        fgrid.addWidget(self.kernel_file_button, 0, 0)
        fgrid.addWidget(self.kernel_file_label, 0, 1, 1, 2)
        fgrid.addWidget(self.add_initrd_button, 1, 0)
        fgrid.addWidget(self.initrd_list, 1, 1, 2, 2)
        fgrid.addWidget(self.remove_initrd_button, 2, 0, Qt.AlignmentFlag.AlignTop)
        fgrid.setColumnStretch(1, 1)

        self.uki_combo = QComboBox(self.source_box)
        self.uki_combo.setAccessibleName(self.tr("Existing UKI"))
        self.uki_combo.currentIndexChanged.connect(self._on_inputs_edited)
        self.action_combo = QComboBox(self.source_box)
        self.action_combo.setAccessibleName(self.tr("What to do with the existing UKI"))
        for text, action in (
            (self.tr("Keep as it is"), "keep"),
            (self.tr("Re-sign with the UEFI certificate"), "re-sign"),
            (self.tr("Replace with a new UKI"), "replace"),
        ):
            self.action_combo.addItem(text, action)
        self.action_combo.currentIndexChanged.connect(self._on_inputs_edited)
        action_label = QLabel(self.tr("&Action:"), self.source_box)
        action_label.setBuddy(self.action_combo)
        self.uki_panel = QWidget(self.source_box)
        ugrid = QGridLayout(self.uki_panel)
        ugrid.setContentsMargins(22, 0, 0, 0)
        ugrid.setVerticalSpacing(2)
        ugrid.addWidget(self.uki_combo, 0, 0, 1, 2)
        ugrid.addWidget(action_label, 1, 0)
        ugrid.addWidget(self.action_combo, 1, 1)
        ugrid.setColumnStretch(1, 1)

        source = QVBoxLayout(self.source_box)
        source.setSpacing(3)
        source.addWidget(self.image_radio)
        source.addWidget(self.image_panel)
        source.addWidget(self.files_radio)
        source.addWidget(self.files_panel)
        source.addWidget(self.uki_radio)
        source.addWidget(self.uki_panel)

        # Stub.
        self.stub_label = QLabel(self)
        self.stub_label.setObjectName("stubLabel")
        self.stub_label.setTextFormat(Qt.TextFormat.PlainText)
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
        stub_caption = QLabel(self.tr("Stub:"), self)
        stub_row = QGridLayout()
        stub_row.setVerticalSpacing(0)
        stub_row.addWidget(stub_caption, 0, 0)
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
        self.cmdline_notice.setObjectName("notice")
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
        self.build_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), self.tr("Bui&ld UKI"), self
        )
        self.build_button.setObjectName("buildButton")
        self.build_button.setToolTip(self.tr("Build the UKI, sign it and predict PCR 11"))
        self.build_button.clicked.connect(self.build)
        self.busy_bar = busy_bar(self, self.tr("Working"), max_width=120)
        self.busy_bar.hide()
        self.status_label = QLabel(self)
        self.status_label.setObjectName("buildStatus")
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        self.status_label.setWordWrap(True)
        build_row = QHBoxLayout()
        build_row.addWidget(self.build_button)
        build_row.addWidget(self.busy_bar)
        build_row.addWidget(self.status_label, 1)

        self.signer_notice = Notice(self)
        self.signer_notice.setObjectName("notice")
        left = QVBoxLayout()
        left.setSpacing(5)
        left.addWidget(self.source_box)
        left.addLayout(stub_row)
        left.addWidget(cmdline_label)
        left.addWidget(self.cmdline_edit)
        left.addWidget(self.cmdline_notice)
        left.addWidget(os_label)
        left.addWidget(self.os_release_edit)
        left.addLayout(build_row)
        left.addWidget(self.signer_notice)
        left.addStretch(1)

        # Results.
        self.error_panel = ErrorPanel(self)
        self.sections_model = UkiSectionsModel(self)
        self.sections_table = QTableView(self)
        self.sections_table.setObjectName("ukiSections")
        self.sections_table.setModel(self.sections_model)
        self.sections_table.setAccessibleName(self.tr("UKI sections"))
        self.sections_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.sections_table.setAlternatingRowColors(True)
        self.sections_table.setWordWrap(False)
        self.sections_table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.sections_table.verticalHeader().hide()
        self.sections_table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        header = self.sections_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(SectionColumn.SHA256, QHeaderView.ResizeMode.Stretch)
        header.setHighlightSections(False)
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

        columns = QHBoxLayout(self)
        columns.setContentsMargins(0, 0, 0, 0)
        columns.setSpacing(14)
        columns.addLayout(left, 5)
        columns.addLayout(right, 6)

        chain: list[QWidget] = [
            self.image_radio,
            self.kernel_combo,
            self.files_radio,
            self.kernel_file_button,
            self.add_initrd_button,
            self.initrd_list,
            self.remove_initrd_button,
            self.uki_radio,
            self.uki_combo,
            self.action_combo,
            self.stub_file_button,
            self.host_stub_button,
            self.cmdline_edit,
            self.os_release_edit,
            self.build_button,
            self.sections_table,
            self.pcr_preview.bank_combo,
            self.pcr_preview.table,
        ]
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
        if self._scan_task is not None:
            self._scan_task.cancel()
            self._detach(self._scan_task, self._on_scanned, self._on_scan_failed, self._on_scan_finished)
        self._scanned_for = (path, id(layout))
        self._image_files = None
        self._result = None
        self.sections_model.set_sections(None)
        self.pcr_preview.set_predictions(None)
        with QSignalBlocker(self.kernel_combo), QSignalBlocker(self.uki_combo):
            self.kernel_combo.clear()
            self.uki_combo.clear()
        self.error_panel.clear()
        task = self._runner.start(self._scanner, path, layout, name="list-boot-files", with_progress=True)
        task.succeeded.connect(self._on_scanned)
        task.failed.connect(self._on_scan_failed)
        task.finished.connect(self._on_scan_finished)
        self._scan_task = task
        self._refresh()

    def _on_scanned(self, found: ImageBootFiles) -> None:
        self._image_files = found
        boot = self.state.boot
        with QSignalBlocker(self.kernel_combo), QSignalBlocker(self.uki_combo):
            self.kernel_combo.clear()
            for entry in found.kernels:
                self.kernel_combo.addItem(self._kernel_text(entry), entry)
                self.kernel_combo.setItemData(
                    self.kernel_combo.count() - 1, self._kernel_tooltip(entry), Qt.ItemDataRole.ToolTipRole
                )
            self.uki_combo.clear()
            for f in found.ukis:
                self.uki_combo.addItem(self._file_text(f), f)
        if found.kernels:
            source = "image"
        elif found.ukis:
            source = "existing-uki"
        else:
            source = "files"
        # Suggestions from the image replace the defaults, never the user's own text.
        if found.os_release and boot.os_release in ("", DEFAULT_OS_RELEASE):
            boot.os_release = found.os_release
        if found.cmdline and boot.cmdline in ("", DEFAULT_CMDLINE):
            boot.cmdline = _without_root(found.cmdline)
        boot.source = source
        self._load_choice()
        self._store_choice()
        if not found.kernels and not found.ukis:
            self.error_panel.show_error(
                self.tr("No kernel was found in the base image."),
                self.tr("Choose the kernel and initrd files instead (From files…)."),
            )

    def _on_scan_failed(self, error: ShieldwrightError) -> None:
        self.error_panel.show_error(error.message, error.hint)
        self.state.boot.source = "files"
        self._load_choice()

    def _on_scan_finished(self) -> None:
        task, self._scan_task = self._scan_task, None
        self._report_unexpected(task, self.tr("The base image could not be searched for kernels"))
        self._refresh()
        self.scanFinished.emit()

    # -- state <-> widgets ------------------------------------------------------------------------

    def _load_choice(self) -> None:
        """Show ``state.boot`` in the widgets (defaults for empty texts)."""
        boot = self.state.boot
        if not boot.cmdline:
            boot.cmdline = DEFAULT_CMDLINE
        if not boot.os_release:
            boot.os_release = DEFAULT_OS_RELEASE
        self._syncing = True
        try:
            radio = {"image": self.image_radio, "files": self.files_radio, "existing-uki": self.uki_radio}
            radio[boot.source].setChecked(True)
            if self.cmdline_edit.toPlainText() != boot.cmdline:
                self.cmdline_edit.setPlainText(boot.cmdline)
            if self.os_release_edit.toPlainText() != boot.os_release:
                self.os_release_edit.setPlainText(boot.os_release)
            self.action_combo.setCurrentIndex(max(0, self.action_combo.findData(boot.existing_action)))
            self.initrd_list.clear()
            for p in boot.initrd_paths:
                self._add_initrd_item(p)
        finally:
            self._syncing = False

    def _store_choice(self) -> None:
        """Write the widgets into ``state.boot`` (the built UKI stays; ``is_current`` judges it)."""
        boot = self.state.boot
        boot.source = ("image", "files", "existing-uki")[max(0, self.source_group.checkedId())]
        entry = self.kernel_combo.currentData()
        boot.kernel = entry.kernel if entry is not None else None
        boot.initrds = list(entry.initrds) if entry is not None else []
        boot.existing_uki = self.uki_combo.currentData()
        boot.existing_action = str(self.action_combo.currentData())
        boot.initrd_paths = [
            Path(self.initrd_list.item(i).data(Qt.ItemDataRole.UserRole))
            for i in range(self.initrd_list.count())
        ]
        boot.cmdline = self.cmdline_edit.toPlainText()
        boot.os_release = self.os_release_edit.toPlainText()

    def _on_source_toggled(self, _id: int, checked: bool) -> None:
        if checked:
            self._on_inputs_edited()

    def _on_inputs_edited(self) -> None:
        if self._syncing:
            return
        self._store_choice()
        self._refresh()

    def _on_cmdline_edited(self) -> None:
        self._on_inputs_edited()
        self._show_cmdline_notice()

    # -- files ------------------------------------------------------------------------------------

    def _open_file_dialog(
        self, title: str, filters: tuple[str, ...], on_selected: Callable[[str], None]
    ) -> None:
        if self._file_dialog is not None:
            self._file_dialog.raise_()
            return
        dialog = QFileDialog(self, title, str(self._start_directory()))
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setNameFilters([self.tr(f) for f in filters])
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(on_selected)
        dialog.finished.connect(self._on_file_dialog_closed)
        self._file_dialog = dialog
        dialog.open()  # never exec(): we may be inside an async slot (qasync#59)

    def _on_file_dialog_closed(self) -> None:
        self._file_dialog = None

    def _start_directory(self) -> Path:
        boot = self.state.boot
        for p in (boot.kernel_path, *boot.initrd_paths, boot.stub_path):
            if p is not None and p.parent.is_dir():
                return p.parent
        return Path.home()

    def choose_kernel_file(self) -> None:
        self._open_file_dialog(self.tr("Choose the kernel"), KERNEL_FILTERS, self.set_kernel_file)

    def choose_initrd_file(self) -> None:
        self._open_file_dialog(self.tr("Add an initrd"), INITRD_FILTERS, self.add_initrd_file)

    def choose_stub_file(self) -> None:
        self._open_file_dialog(self.tr("Choose a systemd-stub"), STUB_FILTERS, self.set_stub_file)

    def set_kernel_file(self, path: str | Path) -> None:
        """Use the kernel file ``path`` (and switch to "From files")."""
        self.state.boot.kernel_path = Path(path)
        self.files_radio.setChecked(True)
        self._on_inputs_edited()

    def add_initrd_file(self, path: str | Path) -> None:
        self._add_initrd_item(Path(path))
        self.files_radio.setChecked(True)
        self._on_inputs_edited()

    def _add_initrd_item(self, path: Path) -> None:
        item = QListWidgetItem(path.name)
        item.setData(Qt.ItemDataRole.UserRole, str(path))
        item.setToolTip(str(path))
        self.initrd_list.addItem(item)

    def remove_selected_initrd(self) -> None:
        row = self.initrd_list.currentRow()
        if row >= 0:
            self.initrd_list.takeItem(row)
            self._on_inputs_edited()

    def set_stub_file(self, path: str | Path | None) -> None:
        """Build on the stub file ``path`` (None: the host's default stub)."""
        self.state.boot.stub_path = Path(path) if path else None
        self._refresh()

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
        if self._build_task is not None:
            self._build_task.cancel()
            self._detach(self._build_task, self._on_built, self._on_build_failed, self._on_build_finished)
        choice = self.state.uefi_signing
        signer = choice.signer if choice is not None else None
        key = self.state.boot.inputs_key(self.signer_id())
        request = BuildRequest(
            choice=copy.copy(self.state.boot),
            image_path=self.state.image_path,
            layout=self.state.layout,
            signer=signer,
            key=key,
        )
        request.choice.initrds = list(request.choice.initrds)
        request.choice.initrd_paths = list(request.choice.initrd_paths)
        request.choice.uki = None
        self.error_panel.clear()
        log.info("building the UKI (%s)", self.state.boot.source)
        task = self._runner.start(self._builder, request, name="build-uki")
        task.succeeded.connect(self._on_built)
        task.failed.connect(self._on_build_failed)
        task.finished.connect(self._on_build_finished)
        self._build_task = task
        self._refresh()

    def _on_built(self, result: BuildResult) -> None:
        self._result = result
        self.state.boot.uki = result.uki
        self.state.boot.built_for = result.key
        self.sections_model.set_sections(result.info.sections)
        self.pcr_preview.set_predictions(result.pcrs)
        # In the order the stub measures them (systemd's UnifiedSection enum), not the PE order.
        measured = sorted(
            (sec.name for sec in result.info.sections if sec.measured),
            key=lambda n: MEASURE_ORDER.index(n) if n in MEASURE_ORDER else len(MEASURE_ORDER),
        )
        self.pcr_preview.set_measured_sections(measured or None)
        if result.pcr_error is not None:
            self.pcr_preview.show_unavailable(
                self.tr("PCR 11 cannot be predicted: %1").replace("%1", result.pcr_error.one_line())
            )

    def _on_build_failed(self, error: ShieldwrightError) -> None:
        self.error_panel.show_error(error.message, error.hint)

    def _on_build_finished(self) -> None:
        task, self._build_task = self._build_task, None
        self._report_unexpected(task, self.tr("The UKI could not be built because of an unexpected error"))
        self._refresh()
        self.buildFinished.emit()

    # -- showing ----------------------------------------------------------------------------------

    def _refresh(self) -> None:
        boot = self.state.boot
        scanning, building = self._scan_task is not None, self._build_task is not None
        found = self._image_files
        has_kernels = bool(found and found.kernels)
        has_ukis = bool(found and found.ukis)
        self.image_radio.setEnabled(has_kernels)
        self.uki_radio.setVisible(has_ukis)
        source = boot.source
        self.image_panel.setVisible(
            source == "image" or (source == "existing-uki" and boot.existing_action == "replace")
        )
        self.kernel_combo.setEnabled(has_kernels)
        self.files_panel.setVisible(source == "files")
        self.uki_panel.setVisible(source == "existing-uki")
        entry = self.kernel_combo.currentData()
        if scanning:
            self.initrds_label.setText(self.tr("Looking for kernels in the image…"))
        elif entry is None:
            self.initrds_label.setText(self.tr("No kernel found in the base image."))
        else:
            self.initrds_label.setText(self._entry_description(entry))
        self.initrds_label.setToolTip(self._kernel_tooltip(entry) if entry is not None else "")
        self.kernel_file_label.setText(str(boot.kernel_path) if boot.kernel_path else self.tr("none chosen"))
        self.kernel_file_label.setToolTip(str(boot.kernel_path or ""))
        self.remove_initrd_button.setEnabled(self.initrd_list.count() > 0)

        new_uki = boot.builds_new_uki
        for w in (self.cmdline_edit, self.os_release_edit, self.stub_file_button):
            w.setEnabled(new_uki)
        self.host_stub_button.setVisible(boot.stub_path is not None)
        self.host_stub_button.setEnabled(new_uki)
        self.stub_label.setText(self._stub_text())
        self.stub_path_label.set_full_text(str(boot.stub_path or HOST_STUB))
        self._show_cmdline_notice()
        self.build_button.setText(
            self.tr("Bui&ld UKI")
            if new_uki
            else self.tr("Re-sign UKI")
            if boot.existing_action == "re-sign"
            else self.tr("Inspect UKI")
        )
        self.build_button.setEnabled(not scanning and not building and boot.configured)
        self.busy_bar.setVisible(scanning or building)
        self._show_status(scanning, building)
        self._show_signer()
        self.completeChanged.emit()

    def _show_status(self, scanning: bool, building: bool) -> None:
        boot = self.state.boot
        font = self.status_label.font()
        stale = boot.uki is not None and not boot.is_current(self.signer_id())
        font.setBold(stale and not building)
        self.status_label.setFont(font)
        if scanning:
            text = self.tr("Looking for kernels in the base image…")
        elif building:
            text = self.tr("Building…") if boot.builds_new_uki else self.tr("Reading the UKI…")
        elif boot.uki is None:
            text = self.tr("Not built yet.")
        elif stale:
            text = self.tr("Rebuild needed: the inputs or the signing certificate changed.")
        else:
            text = self.tr("Built: %1 UKI.").replace("%1", human_size(len(boot.uki)))
        self.status_label.setText(text)
        self.status_label.setAccessibleName(text)

    def _show_signer(self) -> None:
        result = self._result
        boot = self.state.boot
        if result is not None and boot.is_current(self.signer_id()) and boot.built_for == result.key:
            info = result.signer
            if info is None:
                self.signer_notice.set_text(self.tr("Unsigned — Secure Boot will refuse it."), warning=True)
            else:
                thumb = thumbprint_hex(info.sha256_fingerprint)
                half = len(thumb) // 2 + 1  # two lines of 16 bytes: a hex string cannot word-wrap
                self.signer_notice.set_text(
                    self.tr("Signed by %1\nSHA-256 thumbprint:\n%2\n%3")
                    .replace("%1", info.subject)
                    .replace("%2", thumb[:half].rstrip(":"))
                    .replace("%3", thumb[half:]),
                    warning=False,
                )
            return
        choice = self.state.uefi_signing
        if boot.source == "existing-uki" and boot.existing_action == "keep":
            self.signer_notice.set_text(
                self.tr("Kept as it is: its own signature (if any) is shown after reading it."), warning=False
            )
        elif choice is None or choice.signer is None:
            self.signer_notice.set_text(
                self.tr(
                    "No UEFI signing certificate: the UKI will be unsigned — Secure Boot will refuse it."
                ),
                warning=True,
            )
        else:
            subject = choice.info.subject if choice.info is not None else str(choice.cert_path)
            self.signer_notice.set_text(self.tr("Will be signed by %1").replace("%1", subject), warning=False)

    def _show_cmdline_notice(self) -> None:
        text = self.cmdline_edit.toPlainText()
        if _ROOT_RE.search(text):
            self.cmdline_notice.set_text(
                self.tr(
                    "root= is not needed and can break the encrypted template: systemd-gpt-auto-generator "
                    "finds the root partition by its discoverable partition type."
                ),
                warning=True,
            )
        elif self.cmdline_edit.nul_removed:
            self.cmdline_notice.set_text(
                self.tr("NUL characters cannot be part of a kernel command line; it was removed."),
                warning=True,
            )
        else:
            self.cmdline_notice.set_text(
                self.tr("No root= needed: systemd-gpt-auto-generator finds the root by its partition type."),
                warning=False,
            )

    def _stub_text(self) -> str:
        boot = self.state.boot
        version = self._stub_version()
        kind = self.tr("Host default") if boot.stub_path is None else self.tr("File")
        return self.tr("%1 · systemd %2").replace("%1", kind).replace("%2", version) if version else kind

    def _stub_version(self) -> str | None:
        result = self._result
        if result is None or not self.state.boot.is_current(self.signer_id()):
            return None
        stub = result.info.stub
        return stub.version if stub is not None and stub.kind == "systemd-stub" else None

    @staticmethod
    def _file_text(f: BootFile) -> str:
        return f"{f.path} (partition {f.partition_number}, {human_size(f.size)})"

    def _kernel_text(self, entry: KernelEntry[BootFile]) -> str:
        return entry.version or entry.kernel.path.rpartition("/")[2]

    def _entry_description(self, entry: KernelEntry[BootFile]) -> str:
        """``Partition 2, /token/6.1.0/: linux + initrd`` (full paths for files elsewhere)."""
        directory, _, name = entry.kernel.path.rpartition("/")
        names = [name] + [
            f.path.rpartition("/")[2] if f.path.rpartition("/")[0] == directory else f.path
            for f in entry.initrds
        ]
        if not entry.initrds:
            names.append(self.tr("no initrd found"))
        return (
            self.tr("Partition %1, %2/: %3")
            .replace("%1", str(entry.kernel.partition_number))
            .replace("%2", directory)
            .replace("%3", " + ".join(names))
        )

    def _kernel_tooltip(self, entry: KernelEntry[BootFile]) -> str:
        lines = [self._file_text(entry.kernel)] + [self._file_text(f) for f in entry.initrds]
        return "\n".join(lines)

    # -- plumbing ---------------------------------------------------------------------------------

    @staticmethod
    def _detach(
        task: BackgroundTask, ok: Callable[..., None], bad: Callable[..., None], end: Callable[[], None]
    ) -> None:
        task.succeeded.disconnect(ok)
        task.failed.disconnect(bad)
        task.finished.disconnect(end)

    def _report_unexpected(self, task: BackgroundTask | None, message: str) -> None:
        if task is not None and task.error is not None and not isinstance(task.error, ShieldwrightError):
            self.error_panel.show_error(message, self.tr("The details were written to the log."))

    def is_busy(self) -> bool:
        return self._scan_task is not None or self._build_task is not None

    def result(self) -> BuildResult | None:
        """The last build's outcome (shown even when stale; ``isComplete`` says whether it is current)."""
        return self._result

    # -- QWizardPage ------------------------------------------------------------------------------

    def isComplete(self) -> bool:
        return not self.is_busy() and self.state.boot.is_current(self.signer_id())


def _without_root(cmdline: str) -> str:
    """A suggested command line minus ``root=`` (the root is found by its partition type)."""
    return " ".join(word for word in cmdline.split() if not word.startswith("root="))
