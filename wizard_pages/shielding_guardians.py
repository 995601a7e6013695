"""Shielding Data wizard, page 2: the owner who signs the data, and the fabric guardians that may open it.

The local guardians are listed from the guardian store (:func:`~app.shielding.guardians.list_guardians`);
an owner is created here (its keys generated in the background) or imported from its files (the
:class:`~app.gui.dialogs.import_owner.ImportOwnerDialog`), and a fabric's guardian imported from its
encryption certificate or removed. The engine's refusals (a name taken, an elliptic-curve certificate, a
key that does not match its certificate) show inline. Owners are not removed here: they hold private keys.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from app.errors import ShieldwrightError, WrongPassphraseError
from app.gui.dialogs.import_owner import ImportOwnerDialog, OwnerFiles
from app.gui.file_dialogs import CERT_FILTERS
from app.gui.shielding_state import ShieldingState
from app.gui.tasks import TaskRunner
from app.gui.widgets.status_note import NoteLabel
from app.gui.widgets.tables import setup_readonly_table
from app.shielding.guardians import Guardian, default_store
from wizard_pages.shielding_common import (
    ShieldingPage,
    create_owner,
    import_fabric_guardian,
    import_owner_files,
    list_store,
    remove_fabric_guardian,
)

SIGNING_CHOICES = (("ECDSA P-256", "p256"), ("ECDSA P-384", "p384"), ("RSA 3072", "rsa3072"))
LIST, CREATE, IMPORT, IMPORT_OWNER, REMOVE = "list", "create", "import", "import-owner", "remove"


def _bold(label: QLabel) -> QLabel:
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label


class ShieldingGuardiansPage(ShieldingPage):
    """Owner (choose or create), fabric guardians (check, import)."""

    #: Listing, creating or importing ended (the page is idle).
    guardiansChanged = Signal()

    def __init__(self, state: ShieldingState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("Owner and guardians"))
        self.setSubTitle(
            self.tr(
                "You, the owner, sign the shielding data and can always open it. Each guardian you check - "
                "a hosting fabric's encryption certificate - can open it too, to provision your VMs."
            )
        )
        self._filling = False
        #: The "Import owner" dialog while it is open.
        self.import_owner_dialog: ImportOwnerDialog | None = None
        #: The "Remove the guardian?" question while it is open.
        self.remove_question: QMessageBox | None = None
        self._build_ui()

    def _build_ui(self) -> None:
        self.owner_combo = QComboBox(self)
        self.owner_combo.setObjectName("ownerCombo")
        self.owner_combo.setAccessibleName(self.tr("Owner"))
        self.owner_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.owner_combo.currentIndexChanged.connect(self._on_owner_chosen)
        self.owner_details = NoteLabel(self, name="ownerDetails", selectable=True)
        self.owner_name = QLineEdit(self)
        self.owner_name.setObjectName("newOwnerName")
        self.owner_name.setPlaceholderText(self.tr("name, e.g. contoso-owner"))
        self.owner_name.setAccessibleName(self.tr("New owner's name"))
        self.signing_combo = QComboBox(self)
        self.signing_combo.setObjectName("ownerSigningKey")
        self.signing_combo.setAccessibleName(self.tr("Signing key type"))
        for label, value in SIGNING_CHOICES:
            self.signing_combo.addItem(label, value)
        self.create_button = QPushButton(self.tr("&Create owner"), self)
        self.create_button.setObjectName("createOwner")
        self.create_button.clicked.connect(lambda: self.create_owner(self.owner_name.text().strip()))
        self.import_owner_button = QPushButton(self.tr("Im&port owner…"), self)
        self.import_owner_button.setObjectName("importOwner")
        self.import_owner_button.setToolTip(
            self.tr("An owner you already have: its signing and encryption certificates and keys")
        )
        self.import_owner_button.clicked.connect(self.open_import_owner)

        owner_grid = QGridLayout()
        owner_grid.setHorizontalSpacing(8)
        owner_grid.setVerticalSpacing(4)
        caption = QLabel(self.tr("&Owner:"), self)
        caption.setBuddy(self.owner_combo)
        owner_grid.addWidget(caption, 0, 0)
        owner_grid.addWidget(self.owner_combo, 0, 1, 1, 2)
        owner_grid.addWidget(self.import_owner_button, 0, 3)
        owner_grid.addWidget(self.owner_details, 1, 1, 1, 3)
        new_caption = QLabel(self.tr("Ne&w owner:"), self)
        new_caption.setBuddy(self.owner_name)
        owner_grid.addWidget(new_caption, 2, 0)
        owner_grid.addWidget(self.owner_name, 2, 1)
        owner_grid.addWidget(self.signing_combo, 2, 2)
        owner_grid.addWidget(self.create_button, 2, 3)
        owner_grid.setColumnStretch(1, 1)

        self.table = QTableWidget(0, 3, self)
        self.table.setObjectName("guardianTable")
        self.table.setAccessibleName(self.tr("Guardians that may open the data"))
        self.table.setHorizontalHeaderLabels([self.tr("Guardian"), self.tr("Subject"), self.tr("SHA-256")])
        setup_readonly_table(self.table, 2)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.itemSelectionChanged.connect(self._update_remove)
        self.guardian_note = NoteLabel(self, name="guardianNote")
        self.remove_button = QPushButton(self.tr("&Remove…"), self)
        self.remove_button.setObjectName("removeGuardian")
        self.remove_button.setToolTip(
            self.tr(
                "Remove the selected fabric guardian from this computer. Owners are not removed here: they "
                "hold private keys (use shieldwright shield guardian remove)."
            )
        )
        self.remove_button.clicked.connect(self.ask_remove)
        note_row = QHBoxLayout()
        note_row.addWidget(self.guardian_note, 1)
        note_row.addWidget(self.remove_button, 0, Qt.AlignmentFlag.AlignTop)

        self.import_name = QLineEdit(self)
        self.import_name.setObjectName("importGuardianName")
        self.import_name.setPlaceholderText(self.tr("name, e.g. fabric-east"))
        self.import_name.setAccessibleName(self.tr("Imported guardian's name"))
        self.import_button = QPushButton(self.tr("&Import certificate…"), self)
        self.import_button.setObjectName("importGuardian")
        self.import_button.setToolTip(self.tr("The fabric's RSA encryption certificate (PEM or DER)"))
        self.import_button.clicked.connect(self.choose_certificate)
        import_row = QHBoxLayout()
        import_caption = QLabel(self.tr("I&mport a fabric guardian:"), self)
        import_caption.setBuddy(self.import_name)
        import_row.addWidget(import_caption)
        import_row.addWidget(self.import_name, 1)
        import_row.addWidget(self.import_button)

        self.store_label = NoteLabel(self, name="guardianStore", selectable=True)

        layout = self.body_layout()
        layout.setSpacing(6)
        layout.addLayout(owner_grid)
        layout.addSpacing(6)
        layout.addWidget(_bold(QLabel(self.tr("Guardians that may open the data"), self)))
        layout.addWidget(self.table, 1)
        layout.addLayout(note_row)
        layout.addLayout(import_row)
        layout.addWidget(self.error_panel)
        layout.addWidget(self.store_label)

    # -- QWizardPage ------------------------------------------------------------------------------

    def initializePage(self) -> None:
        self.refresh()

    def isComplete(self) -> bool:
        return not self.is_busy() and self.state.guardian(self.state.owner) is not None

    # -- the store --------------------------------------------------------------------------------

    def refresh(self) -> None:
        """List the store's guardians again (in the background: each certificate is read)."""
        self.run_task(LIST, list_store, self.state.store, on_success=self._on_listed,
                      on_finished=self._update)  # fmt: skip
        self._update()

    def _on_listed(self, guardians: list[Guardian]) -> None:
        self.state.known = list(guardians)
        names = {g.name for g in guardians}
        self.state.guardians = [n for n in self.state.guardians if n in names]
        if self.state.owner not in {g.name for g in self.state.owners()}:
            owners = self.state.owners()
            self.state.owner = owners[0].name if owners else None
        self._fill()

    def create_owner(self, name: str) -> None:
        self.error_panel.clear()
        signing = self.signing_combo.currentData()
        self.run_task(CREATE, create_owner, name, signing, self.state.store, on_success=self._on_created,
                      on_finished=self._update)  # fmt: skip
        self._update()

    def _on_created(self, owner: Guardian) -> None:
        self.owner_name.clear()
        self.state.owner = owner.name
        self.refresh()

    def choose_certificate(self) -> None:
        self.file_dialog("guardian-cert", self.tr("Import a fabric guardian's encryption certificate"),
                         Path.home(), self.import_certificate, filters=CERT_FILTERS)  # fmt: skip

    def import_certificate(self, path: str) -> None:
        self.error_panel.clear()
        name = self.import_name.text().strip()
        self.run_task(IMPORT, import_fabric_guardian, name, Path(path), self.state.store,
                      on_success=self._on_imported, on_finished=self._update)  # fmt: skip
        self._update()

    def _on_imported(self, guardian: Guardian) -> None:
        self.import_name.clear()
        if guardian.name not in self.state.guardians:
            self.state.guardians.append(guardian.name)  # imported to be used: checked
        self.refresh()

    def open_import_owner(self) -> ImportOwnerDialog:
        """Open (or raise) the non-blocking "Import owner" dialog."""
        dialog = self.import_owner_dialog
        if dialog is not None:
            dialog.raise_()
            dialog.activateWindow()
            return dialog
        dialog = ImportOwnerDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.submitted.connect(self.import_owner)
        dialog.finished.connect(lambda _result: setattr(self, "import_owner_dialog", None))
        self.import_owner_dialog = dialog
        dialog.open()
        return dialog

    def import_owner(self, files: OwnerFiles) -> None:
        """Import an owner in the background; the dialog, while open, shows how it went."""
        self.error_panel.clear()
        self.run_task(IMPORT_OWNER, import_owner_files, files, self.state.store,
                      on_success=self._on_owner_imported, on_failure=self._on_owner_import_failed,
                      on_finished=self._on_owner_import_done)  # fmt: skip
        self._update()

    def _on_owner_imported(self, owner: Guardian) -> None:
        if self.import_owner_dialog is not None:
            self.import_owner_dialog.succeed()
        self.state.owner = owner.name
        self.refresh()

    def _on_owner_import_failed(self, error: ShieldwrightError) -> None:
        dialog = self.import_owner_dialog
        if dialog is None:  # closed meanwhile: the page says it
            self.show_error(error)
            return
        dialog.show_error(error.message, error.hint, wrong_passphrase=isinstance(error, WrongPassphraseError))

    def _on_owner_import_done(self) -> None:
        dialog = self.import_owner_dialog
        if dialog is not None and dialog.is_busy():  # a bug, not the engine's refusal (see run_task)
            dialog.show_error(
                self.tr("The owner could not be imported because of an unexpected error."),
                self.tr("The details were written to the log."),
            )
        self._update()

    def selected_guardian(self) -> Guardian | None:
        """The guardian of the table's selected row, if one is."""
        rows = self.table.selectionModel().selectedRows()
        item = self.table.item(rows[0].row(), 0) if rows else None
        return self.state.guardian(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def select_guardian(self, name: str) -> None:
        """Select ``name``'s row, as a click does."""
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == name:
                self.table.selectRow(row)

    def ask_remove(self) -> QMessageBox | None:
        """Ask (non-blocking) before removing the selected fabric guardian; owners are never offered."""
        guardian = self.selected_guardian()
        if guardian is None or guardian.kind != "guardian" or self.is_busy():
            return None
        if self.remove_question is not None:
            self.remove_question.raise_()
            return self.remove_question
        question = self.tr("Remove the guardian '%1' from this computer?").replace("%1", guardian.name)
        box = QMessageBox(QMessageBox.Icon.Question, self.tr("Remove guardian"), question, parent=self)
        box.setObjectName("removeGuardianQuestion")
        box.setInformativeText(self.tr("Shielding data already made for it still opens with its key."))
        remove = box.addButton(self.tr("&Remove"), QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        self.remove_question = box

        def answered(_result: int) -> None:
            self.remove_question = None
            clicked: QAbstractButton | None = box.clickedButton()
            box.deleteLater()
            if clicked is remove:
                self.remove_guardian(guardian.name)

        box.finished.connect(answered)
        box.open()
        return box

    def remove_guardian(self, name: str) -> None:
        """Remove the fabric guardian ``name`` in the background (the engine refuses an owner)."""
        self.error_panel.clear()
        self.run_task(REMOVE, remove_fabric_guardian, name, self.state.store, on_success=self._on_removed,
                      on_finished=self._update)  # fmt: skip
        self._update()

    def _on_removed(self, guardian: Guardian) -> None:
        self.state.guardians = [n for n in self.state.guardians if n != guardian.name]  # the others stay
        self.refresh()

    # -- showing ----------------------------------------------------------------------------------

    def _fill(self) -> None:
        selected = self.selected_guardian()
        self._filling = True
        try:
            self.owner_combo.clear()
            for g in self.state.owners():
                self.owner_combo.addItem(g.name, g.name)
            index = self.owner_combo.findData(self.state.owner)
            self.owner_combo.setCurrentIndex(index)
            others = [g for g in self.state.known if g.name != self.state.owner]
            self.table.setRowCount(len(others))
            for row, g in enumerate(others):
                name = QTableWidgetItem(g.name if g.kind == "guardian" else f"{g.name} (owner)")
                name.setFlags(
                    Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsUserCheckable
                )
                name.setData(Qt.ItemDataRole.UserRole, g.name)
                checked = g.name in self.state.guardians
                name.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
                subject = QTableWidgetItem(g.subject)
                subject.setToolTip(g.subject)
                sha = QTableWidgetItem(g.encryption_sha256)
                sha.setToolTip(self.tr("SHA-256 of the encryption certificate: %1").replace(
                    "%1", g.encryption_sha256))  # fmt: skip
                for col, item in enumerate((name, subject, sha)):
                    self.table.setItem(row, col, item)
            self.table.clearSelection()
            if selected is not None:
                self.select_guardian(selected.name)  # still there after a refresh: still selected
        finally:
            self._filling = False
        self._show_owner()
        self._show_note()

    def _on_owner_chosen(self, index: int) -> None:
        if self._filling or index < 0:
            return
        self.state.owner = self.owner_combo.itemData(index)
        self._fill()
        self.completeChanged.emit()

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 0:
            return
        name = item.data(Qt.ItemDataRole.UserRole)
        chosen = [n for n in self.state.guardians if n != name]
        if item.checkState() == Qt.CheckState.Checked:
            chosen.append(name)
        self.state.guardians = chosen
        self._show_note()

    def set_guardian_checked(self, name: str, checked: bool) -> None:
        """Check or uncheck ``name`` in the table, as a click does."""
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == name:
                item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def _show_owner(self) -> None:
        owner = self.state.guardian(self.state.owner)
        if owner is None:
            self.owner_details.set_note(self.tr("No owner yet: create one below (name and signing key)."))
            return
        self.owner_details.set_note(
            self.tr("%1\nsigning SHA-256 %2\nencryption SHA-256 %3")
            .replace(
                "%1", owner.signing_cert.subject.rfc4514_string() if owner.signing_cert else owner.subject
            )
            .replace("%2", owner.signing_sha256 or "")
            .replace("%3", owner.encryption_sha256),
            plain=True,
        )

    def _show_note(self) -> None:
        chosen = self.state.chosen_guardians()
        if chosen:
            text = self.tr("Opened by the owner and %1.").replace("%1", ", ".join(g.name for g in chosen))
            self.guardian_note.set_note(text, plain=True)
        else:
            self.guardian_note.set_note(
                self.tr(
                    "No guardian checked: only the owner can open this data, so no fabric can provision "
                    "from it."
                )  # fmt: skip
            )

    def _update(self) -> None:
        busy = self.is_busy()
        creating, importing = self.task(CREATE) is not None, self.task(IMPORT) is not None
        self.create_button.setEnabled(not busy)
        self.create_button.setText(self.tr("Generating keys…") if creating else self.tr("&Create owner"))
        self.import_button.setEnabled(not busy)
        self.import_button.setText(self.tr("Importing…") if importing else self.tr("&Import certificate…"))
        self.import_owner_button.setEnabled(not busy)
        self._update_remove()
        where = self.state.store or default_store()
        self.store_label.set_note(self.tr("Local guardians are kept in %1.").replace("%1", str(where)))
        if not busy:
            self.guardiansChanged.emit()
        self.completeChanged.emit()

    def _update_remove(self) -> None:
        """Remove… acts on a selected fabric guardian, never on an owner."""
        selected = self.selected_guardian()
        self.remove_button.setEnabled(
            not self.is_busy() and selected is not None and selected.kind == "guardian"
        )

    def show_error(self, error: ShieldwrightError) -> None:
        self.error_panel.show_error(error.message, error.hint)
