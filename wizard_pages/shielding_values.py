"""Shielding Data wizard, page 4: the specialization values - the template's provisioning passphrase, and
what the VM is given on first boot: a host name, the admin password's *hash*, SSH public keys, cloud-init
user-data and files.

The passphrase is typed into a password field and held only in memory (wiped when the wizard closes or the
data is written); nothing here is logged. Every value is judged by the engine's
:meth:`~app.shielding.payload.Payload.check`, whose verdict shows inline.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from app.errors import ShieldwrightError
from app.gui.shielding_state import ExtraFile, ShieldingState, wipe_payload
from app.gui.tasks import TaskRunner
from app.gui.widgets.status_note import NoteLabel
from app.gui.widgets.tables import setup_readonly_table
from app.shielding.payload import read_ssh_keys
from wizard_pages.shielding_common import ShieldingPage, check_payload, read_small_file

KEY_FILTERS = ("SSH public keys (*.pub authorized_keys)", "All files (*)")


class ShieldingValuesPage(ShieldingPage):
    """Passphrase, host name, password hash, SSH keys, user-data, files; the engine's verdict inline."""

    def __init__(self, state: ShieldingState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("Specialization values"))
        self.setSubTitle(
            self.tr(
                "The provisioning passphrase lets the fabric unlock the VM's disk once; provisioning seals "
                "the other values to the VM's vTPM for systemd and cloud-init to apply. Only the owner and "
                "guardians see them."
            )
        )
        self._problem: ShieldwrightError | None = None
        self._build_ui()

    def _button(self, text: str, name: str, slot: object) -> QPushButton:
        button = QPushButton(text, self)
        button.setObjectName(name)
        button.clicked.connect(slot)
        return button

    def _build_ui(self) -> None:
        self.passphrase_edit = QLineEdit(self)
        self.passphrase_edit.setObjectName("shdPassphrase")
        self.passphrase_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase_edit.setAccessibleName(self.tr("Provisioning passphrase"))
        self.passphrase_edit.textChanged.connect(self._on_passphrase)
        self.hostname_edit = QLineEdit(self)
        self.hostname_edit.setObjectName("shdHostname")
        self.hostname_edit.setPlaceholderText(self.tr("optional, e.g. web-01"))
        self.hostname_edit.textChanged.connect(self._on_hostname)
        self.hash_edit = QLineEdit(self)
        self.hash_edit.setObjectName("shdPasswordHash")
        self.hash_edit.setPlaceholderText(self.tr("optional: a crypt(3) hash from `openssl passwd -6`"))
        self.hash_edit.setToolTip(self.tr("Give the hash, never the password: $6$…, $y$… or $2b$…"))
        self.hash_edit.textChanged.connect(self._on_hash)
        hash_file = self._button(self.tr("From &file…"), "hashFromFile", self.choose_hash_file)

        self.ssh_label = NoteLabel(self, name="sshKeys")
        ssh_add = self._button(self.tr("Add &keys…"), "addSshKeys", self.choose_ssh_keys)
        self.ssh_clear = self._button(self.tr("Clear"), "clearSshKeys", self.clear_ssh_keys)
        self.user_data_label = NoteLabel(self, name="userData")
        user_data = self._button(self.tr("&Choose…"), "chooseUserData", self.choose_user_data)
        self.user_data_clear = self._button(
            self.tr("Clear"), "clearUserData", lambda: self.set_user_data(None)
        )

        self.files_table = QTableWidget(0, 3, self)
        self.files_table.setObjectName("payloadFiles")
        self.files_table.setAccessibleName(self.tr("Files for the VM"))
        self.files_table.setHorizontalHeaderLabels(
            [self.tr("File"), self.tr("Path in the VM"), self.tr("Mode")]
        )
        setup_readonly_table(self.files_table, 1, row_padding=6)
        self.files_table.setEditTriggers(self.files_table.EditTrigger.AllEditTriggers)
        self.files_table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.files_table.setMinimumHeight(70)
        self.files_table.itemChanged.connect(self._on_file_edited)
        add_file = self._button(self.tr("Add f&ile…"), "addPayloadFile", self.choose_file)
        self.remove_file = self._button(self.tr("Remove"), "removePayloadFile", self.remove_selected_file)

        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(4)

        def row(n: int, caption: str, field: QWidget, *buttons: QPushButton) -> None:
            label = QLabel(caption, self)
            label.setBuddy(field)
            top = Qt.AlignmentFlag.AlignTop if isinstance(field, QTableWidget) else Qt.AlignmentFlag(0)
            grid.addWidget(label, n, 0, top)
            grid.addWidget(field, n, 1)
            box = QHBoxLayout()
            for b in buttons:
                box.addWidget(b)
            box.addStretch(1)
            grid.addLayout(box, n, 2, top)

        row(0, self.tr("Provisioning &passphrase:"), self.passphrase_edit)
        hint = self.tr("The one the template was built with. Held in memory only; never saved or logged.")
        grid.addWidget(NoteLabel(self, text=hint), 1, 1, 1, 2)
        row(2, self.tr("&Host name:"), self.hostname_edit)
        row(3, self.tr("Admin password h&ash:"), self.hash_edit, hash_file)
        row(4, self.tr("SSH public keys:"), self.ssh_label, ssh_add, self.ssh_clear)
        row(5, self.tr("cloud-init user-data:"), self.user_data_label, user_data, self.user_data_clear)
        row(6, self.tr("Files for the VM:"), self.files_table, add_file, self.remove_file)
        grid.setColumnStretch(1, 1)
        grid.setRowStretch(6, 1)

        self.verdict = NoteLabel(self, name="payloadVerdict")
        layout = self.body_layout()
        layout.setSpacing(6)
        layout.addLayout(grid, 1)
        layout.addWidget(self.verdict)
        layout.addWidget(self.error_panel)

    # -- QWizardPage ------------------------------------------------------------------------------

    def initializePage(self) -> None:
        self._judge()
        self.passphrase_edit.setFocus()

    def isComplete(self) -> bool:
        return self._problem is None and bool(self.state.passphrase)

    # -- values -----------------------------------------------------------------------------------

    def _on_passphrase(self, text: str) -> None:
        self.state.set_passphrase(text)
        self._judge()

    def _on_hostname(self, text: str) -> None:
        self.state.hostname = text.strip()
        self._judge()

    def _on_hash(self, text: str) -> None:
        self.state.password_hash = text.strip()
        self._judge()

    def choose_hash_file(self) -> None:
        self.file_dialog(
            "hash", self.tr("The admin password's crypt(3) hash"), Path.home(), self.set_hash_file
        )

    def set_hash_file(self, path: str | Path) -> None:
        try:
            text = read_small_file(Path(path), "the password hash file").decode("utf-8", errors="replace")
        except ShieldwrightError as exc:
            self.show_error(exc)
            return
        self.error_panel.clear()
        self.hash_edit.setText(text.strip())
        self.hash_edit.setCursorPosition(0)

    def choose_ssh_keys(self) -> None:
        self.file_dialog("ssh", self.tr("Add SSH public keys"), Path.home() / ".ssh", self.add_ssh_keys,
                         filters=KEY_FILTERS)  # fmt: skip

    def add_ssh_keys(self, path: str | Path) -> None:
        try:
            lines = read_ssh_keys(Path(path))
        except ShieldwrightError as exc:
            self.show_error(exc)
            return
        self.error_panel.clear()
        self.state.ssh_key_files.append(Path(path))
        self.state.ssh_keys += lines
        self._judge()

    def clear_ssh_keys(self) -> None:
        self.state.ssh_key_files, self.state.ssh_keys = [], []
        self._judge()

    def choose_user_data(self) -> None:
        self.file_dialog("user-data", self.tr("cloud-init user-data"), Path.home(), self.set_user_data)

    def set_user_data(self, path: str | Path | None) -> None:
        if path is None:
            self.state.user_data_file, self.state.user_data = None, None
        else:
            try:
                data = read_small_file(Path(path), "the user-data file")
            except ShieldwrightError as exc:
                self.show_error(exc)
                return
            self.error_panel.clear()
            self.state.user_data_file, self.state.user_data = Path(path), data
        self._judge()

    def choose_file(self) -> None:
        self.file_dialog("file", self.tr("A file for the VM"), Path.home(), self.add_file)

    def add_file(self, path: str | Path, dest: str | None = None, mode: int = 0o644) -> None:
        """Add ``path`` as a file for the VM at ``dest`` (default ``/root/<name>``; editable in the table)."""
        source = Path(path)
        try:
            data = read_small_file(source, "the file")
        except ShieldwrightError as exc:
            self.show_error(exc)
            return
        self.error_panel.clear()
        self.state.files.append(ExtraFile(source, dest or f"/root/{source.name}", mode, data))
        self._judge()

    def remove_selected_file(self) -> None:
        row = self.files_table.currentRow()
        if 0 <= row < len(self.state.files):
            del self.state.files[row]
            self._judge()

    def _on_file_edited(self, item: QTableWidgetItem) -> None:
        row = item.row()
        if not 0 <= row < len(self.state.files) or self.files_table.signalsBlocked():
            return
        entry = self.state.files[row]
        if item.column() == 1:
            entry.path = item.text().strip()
        elif item.column() == 2:
            try:
                entry.mode = int(item.text().strip(), 8)
            except ValueError:
                entry.mode = -1  # the engine refuses it; the verdict says why
        self._judge(refill=False)

    def clear_secrets(self) -> None:
        """Empty the password field (best effort: Qt keeps its own copies)."""
        self.passphrase_edit.clear()

    # -- showing ----------------------------------------------------------------------------------

    def _judge(self, *, refill: bool = True) -> None:
        """Ask the engine about the values as they stand and show its verdict."""
        state = self.state
        if refill:
            self._fill()
        self._problem = check_payload(state) if state.passphrase else None
        if self._problem is not None:
            text = self._problem.message + (f" — {self._problem.hint}" if self._problem.hint else "")
            self.verdict.set_note(text[:1].upper() + text[1:], problem=True)
        elif not state.passphrase:
            self.verdict.set_note(self.tr("Type the template's provisioning passphrase to go on."))
        else:
            self.verdict.set_note(self.tr("The values can be carried (%1).").replace(
                "%1", ", ".join(self._payload_items())), plain=True)  # fmt: skip
        self.completeChanged.emit()

    def _payload_items(self) -> list[str]:
        payload = self.state.payload()
        try:
            return payload.items()
        finally:
            wipe_payload(payload)

    def _fill(self) -> None:
        state = self.state
        if state.ssh_key_files:
            names = ", ".join(p.name for p in state.ssh_key_files)
            self.ssh_label.set_note(
                self.tr("%1 key(s) from %2").replace("%1", str(len(state.ssh_keys))).replace("%2", names),
                plain=True,
            )
        else:
            self.ssh_label.set_note(self.tr("none"))
        self.ssh_clear.setEnabled(bool(state.ssh_key_files))
        if state.user_data_file is not None and state.user_data is not None:
            self.user_data_label.set_note(
                self.tr("%1 (%2 bytes)").replace("%1", state.user_data_file.name)
                .replace("%2", str(len(state.user_data))),
                plain=True,
            )  # fmt: skip
        else:
            self.user_data_label.set_note(self.tr("none"))
        self.user_data_clear.setEnabled(state.user_data is not None)
        self.files_table.blockSignals(True)
        try:
            self.files_table.setRowCount(len(state.files))
            for row, f in enumerate(state.files):
                source = QTableWidgetItem(f.source.name)
                source.setFlags(source.flags() & ~Qt.ItemFlag.ItemIsEditable)
                source.setToolTip(str(f.source))
                self.files_table.setItem(row, 0, source)
                self.files_table.setItem(row, 1, QTableWidgetItem(f.path))
                self.files_table.setItem(row, 2, QTableWidgetItem(f"{f.mode:04o}" if f.mode >= 0 else "?"))
        finally:
            self.files_table.blockSignals(False)
        self.remove_file.setEnabled(bool(state.files))
