"""Provision wizard, page 2: the VM's vTPM - its SRK public key file, or a new vTPM made for this VM.

A file is read with :func:`~app.tpm.srk.load_srk` (``srk.tpm2b_public`` from ``shieldwright vtpm new``,
``systemd-analyze srk`` on the VM, or a PEM). *Create vTPM* runs :func:`~app.tpm.vtpm_dir.create_vtpm`
(``shieldwright vtpm new DIR``) in the background: a swtpm state directory with systemd's SRK persistent
at 0x81000001, in the PCR bank the policy uses; the page then shows the SRK it made.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QStyle,
    QWidget,
)

from app.errors import ShieldwrightError
from app.gui.provision_state import CREATE_VTPM, SRK_FILE, ProvisionState
from app.gui.tasks import TaskRunner
from app.gui.widgets.busy import busy_bar
from app.gui.widgets.elided_label import ElidedLabel
from app.gui.widgets.status_note import NoteLabel
from app.tpm.srk import SRK_HANDLE, SRK_KINDS, Srk
from app.tpm.vtpm_dir import SRK_FILE as SRK_FILE_NAME
from app.tpm.vtpm_dir import srk_path
from wizard_pages.provision_common import ProvisionPage, new_vtpm, read_srk

log = logging.getLogger(__name__)

READ_SRK, CREATE = "read-srk", "create-vtpm"
SRK_FILTERS = (f"SRK public keys ({SRK_FILE_NAME} *.tpm2b_public *.pem)", "All files (*)")
#: How the SRK kinds (``app.tpm.srk.SRK_KINDS``) are offered; ECC first, systemd's choice.
KIND_LABELS = {"ecc": "ECC (NIST P-256)", "rsa": "RSA 2048"}


class ProvisionTargetPage(ProvisionPage):
    """An SRK file, or a vTPM created here; shows the SRK the disk will be sealed to."""

    #: Reading an SRK file or creating a vTPM ended.
    srkFinished = Signal()

    def __init__(self, state: ProvisionState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("Target vTPM"))
        self.setSubTitle(
            self.tr(
                "The VM's TPM: each encrypted container gets a key sealed to its Storage Root Key, which "
                "only that TPM can unseal. Give the SRK of an existing VM, or create a vTPM for a new one."
            )
        )
        self._file_srk: Srk | None = None
        self._created: tuple[Path, Srk] | None = None
        self._build_ui()
        self._show()

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        style = self.style()
        self.file_radio = QRadioButton(self.tr("The VM's SRK public key &file"), self)
        self.file_radio.setObjectName("srkFromFile")
        self.create_radio = QRadioButton(self.tr("C&reate a vTPM for this VM"), self)
        self.create_radio.setObjectName("createVtpm")
        self.mode_group = QButtonGroup(self)
        self.mode_group.addButton(self.file_radio)
        self.mode_group.addButton(self.create_radio)
        self.file_radio.setChecked(self.state.srk_mode == SRK_FILE)
        self.create_radio.setChecked(self.state.srk_mode == CREATE_VTPM)
        self.mode_group.buttonToggled.connect(self._on_mode_toggled)

        self.srk_file_label = ElidedLabel(self)
        self.srk_file_label.setObjectName("srkPath")
        self.choose_srk_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DialogOpenButton), self.tr("C&hoose…"), self
        )
        self.choose_srk_button.setObjectName("chooseSrk")
        self.choose_srk_button.clicked.connect(self.choose_srk_file)
        self.file_hint = NoteLabel(
            self, name="srkFileHint",
            text=self.tr("%1 from `shieldwright vtpm new`, what `systemd-analyze srk` writes on the VM, or "
                         "its PEM public key.").replace("%1", SRK_FILE_NAME),
        )  # fmt: skip

        self.dir_edit = QLineEdit(self)
        self.dir_edit.setObjectName("vtpmDirectory")
        self.dir_edit.setAccessibleName(self.tr("New vTPM directory"))
        self.dir_edit.setPlaceholderText(self.tr("A new, empty directory"))
        self.dir_edit.textEdited.connect(lambda _text: self._show())
        self.browse_button = QPushButton(self.tr("Bro&wse…"), self)
        self.browse_button.setObjectName("browseVtpmDirectory")
        self.browse_button.clicked.connect(self.choose_directory)
        self.kind_combo = QComboBox(self)
        self.kind_combo.setObjectName("srkKind")
        for kind in SRK_KINDS:
            self.kind_combo.addItem(KIND_LABELS.get(kind, kind), kind)
        self.kind_combo.setCurrentIndex(max(self.kind_combo.findData(self.state.vtpm_kind), 0))
        self.kind_combo.setToolTip(self.tr("The SRK systemd makes: ECC when the TPM has it, else RSA"))
        kind_label = QLabel(self.tr("&SRK:"), self)
        kind_label.setBuddy(self.kind_combo)
        self.create_button = QPushButton(self.tr("Create &vTPM"), self)
        self.create_button.setObjectName("createVtpmButton")
        self.create_button.clicked.connect(self.create_vtpm)
        self.busy = busy_bar(self, self.tr("Creating the vTPM"), max_width=80)
        keep = self.busy.sizePolicy()
        keep.setRetainSizeWhenHidden(True)
        self.busy.setSizePolicy(keep)
        self.create_hint = NoteLabel(
            self, name="createHint",
            text=self.tr("A new swtpm state directory (what libvirt keeps per VM; run it with `swtpm socket "
                         "--tpm2 --tpmstate dir=DIR`), with systemd's SRK made persistent at %1 as the VM's "
                         "first boot would.").replace("%1", f"0x{SRK_HANDLE:08x}"),
        )  # fmt: skip

        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(4)
        indent = 24
        grid.setColumnMinimumWidth(0, indent)
        grid.addWidget(self.file_radio, 0, 0, 1, 6)
        grid.addWidget(self.srk_file_label, 1, 1, 1, 4)
        grid.addWidget(self.choose_srk_button, 1, 5)
        grid.addWidget(self.file_hint, 2, 1, 1, 5)
        grid.setRowMinimumHeight(3, 8)
        grid.addWidget(self.create_radio, 4, 0, 1, 6)
        grid.addWidget(self.dir_edit, 5, 1)
        grid.addWidget(self.browse_button, 5, 2)
        grid.addWidget(kind_label, 5, 3, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.kind_combo, 5, 4)
        grid.addWidget(self.create_button, 5, 5)
        grid.addWidget(self.create_hint, 6, 1, 1, 4)
        grid.addWidget(self.busy, 6, 5, Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter)
        grid.setColumnStretch(1, 1)

        self.srk_caption = QLabel(self.tr("Sealed to"), self)
        font = self.srk_caption.font()
        font.setBold(True)
        self.srk_caption.setFont(font)
        self.srk_label = NoteLabel(self, name="srkDescription", selectable=True)

        layout = self.body_layout()
        layout.setSpacing(6)
        layout.addLayout(grid)
        layout.addSpacing(10)
        layout.addWidget(self.srk_caption)
        layout.addWidget(self.srk_label)
        layout.addWidget(self.error_panel)
        layout.addStretch(1)

    # -- choices ----------------------------------------------------------------------------------

    def initializePage(self) -> None:
        if not self.dir_edit.text() and self.state.template is not None:
            self.dir_edit.setText(str(self._free_directory(self.state.template.parent / "vm-tpm")))
        self._show()

    @staticmethod
    def _free_directory(base: Path) -> Path:
        """``base``, or ``base-2``, ``base-3``… : the first that does not exist yet."""
        candidate, n = base, 1
        while candidate.exists():
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")
        return candidate

    def _on_mode_toggled(self) -> None:
        self.state.srk_mode = CREATE_VTPM if self.create_radio.isChecked() else SRK_FILE
        self.error_panel.clear()
        self._sync_state()
        self._show()

    def choose_srk_file(self) -> None:
        current = self.state.srk_path
        start = current.parent if current is not None else Path.home()
        self.file_dialog("srk", self.tr("Choose the VM's SRK public key"), start, self.set_srk_file,
                         filters=SRK_FILTERS, select=str(current) if current else None)  # fmt: skip

    def set_srk_file(self, path: str | Path) -> None:
        """Seal to the SRK in ``path`` (read in the background)."""
        self.file_radio.setChecked(True)
        self.state.srk_path, self._file_srk = Path(path), None
        self.error_panel.clear()
        self._sync_state()
        self.run_task(READ_SRK, read_srk, Path(path), on_success=self._on_srk_read,
                      on_failure=self._on_srk_failed, on_finished=self._on_finished)  # fmt: skip
        self._show()

    def _on_srk_read(self, srk: Srk) -> None:
        self._file_srk = srk
        self._sync_state()

    def _on_srk_failed(self, error: ShieldwrightError) -> None:
        self.show_error(error)

    def choose_directory(self) -> None:
        current = Path(self.dir_edit.text()) if self.dir_edit.text() else None
        start = current.parent if current is not None else Path.home()
        dialog = self.file_dialog("vtpm-dir", self.tr("Choose a new, empty directory for the vTPM"), start,
                                  self.set_directory)  # fmt: skip
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)

    def set_directory(self, path: str | Path) -> None:
        self.create_radio.setChecked(True)
        self.dir_edit.setText(str(path))
        self._show()

    def create_vtpm(self, directory: str | Path | None = None) -> None:
        """Create a vTPM in ``directory`` (default: the one shown) with the chosen SRK kind."""
        self.create_radio.setChecked(True)
        if directory is not None:
            self.dir_edit.setText(str(directory))
        text = self.dir_edit.text().strip()
        if not text:
            return
        target = Path(text).expanduser()
        kind = str(self.kind_combo.currentData())
        banks = (self.state.pcr.bank,)
        self.state.vtpm_kind = kind
        self.error_panel.clear()
        log.info("creating a vTPM in %s (%s SRK, banks %s)", target, kind, ",".join(banks))
        self.run_task(CREATE, new_vtpm, target, kind, banks, with_progress=True,
                      on_success=lambda srk: self._on_created(target, srk, banks),
                      on_failure=self._on_srk_failed, on_finished=self._on_finished)  # fmt: skip
        self._show()

    def _on_created(self, directory: Path, srk: Srk, banks: tuple[str, ...]) -> None:
        self._created = (directory, srk)
        self.state.vtpm_dir, self.state.vtpm_banks = directory, banks
        self._sync_state()

    def _on_finished(self) -> None:
        self._show()
        self.srkFinished.emit()

    def _sync_state(self) -> None:
        """The state's SRK is the one of the chosen way."""
        if self.state.srk_mode == CREATE_VTPM:
            self.state.srk = self._created[1] if self._created is not None else None
        else:
            self.state.srk = self._file_srk

    # -- showing ----------------------------------------------------------------------------------

    def _show(self) -> None:
        creating = self.task(CREATE) is not None
        from_file = self.state.srk_mode == SRK_FILE
        path = self.state.srk_path
        self.srk_file_label.set_full_text(str(path) if path else self.tr("(none chosen)"))
        widgets: tuple[QWidget, ...] = (self.srk_file_label, self.choose_srk_button)
        for widget in widgets:
            widget.setEnabled(from_file)
        widgets = (self.dir_edit, self.browse_button, self.kind_combo)
        for widget in widgets:
            widget.setEnabled(not from_file and not creating)
        self.create_button.setEnabled(not from_file and not creating and bool(self.dir_edit.text().strip()))
        self.file_radio.setEnabled(not creating)
        self.busy.setVisible(creating or self.task(READ_SRK) is not None)
        self.srk_label.set_note(self._srk_text(), plain=self.state.srk is not None)
        self.completeChanged.emit()

    def _srk_text(self) -> str:
        srk = self.state.srk
        if self.task(CREATE) is not None:
            return self.tr("Creating the vTPM (swtpm_setup and systemd's SRK)…")
        if self.task(READ_SRK) is not None:
            return self.tr("Reading the SRK…")
        if srk is None:
            if self.state.srk_mode == SRK_FILE:
                return self.tr("Choose the VM's SRK public key file.")
            return self.tr("Choose a new directory and click Create vTPM.")
        described = srk.describe()
        if self.state.srk_mode == CREATE_VTPM and self._created is not None:
            directory = self._created[0]
            return (
                self.tr("%1, persistent at %2 in the vTPM created in %3 (bank %4). Its public key: %5. Run "
                        "the VM with this vTPM.")
                .replace("%1", described).replace("%2", f"0x{srk.handle:08x}").replace("%3", str(directory))
                .replace("%4", ", ".join(self.state.vtpm_banks)).replace("%5", str(srk_path(directory)))
            )  # fmt: skip
        return self.tr("%1, at %2 (from %3).").replace("%1", described).replace(
            "%2", f"0x{srk.handle:08x}").replace("%3", str(self.state.srk_path))  # fmt: skip

    # -- QWizardPage ------------------------------------------------------------------------------

    def isComplete(self) -> bool:
        return not self.is_busy() and self.state.srk is not None
