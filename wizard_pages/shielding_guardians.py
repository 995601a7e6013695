"""Shielding Data wizard, page 2: the owner who signs the data, and the fabric guardians that may open it.

The local guardians are listed from the guardian store (:func:`~app.shielding.guardians.list_guardians`);
an owner is created here (its keys generated in the background) and a fabric's guardian imported from its
encryption certificate. The engine's refusals (a name taken, an elliptic-curve certificate) show inline.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
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
from app.gui.shielding_state import ShieldingState
from app.gui.tasks import TaskRunner
from app.gui.widgets.status_note import NoteLabel
from app.gui.widgets.tables import setup_readonly_table
from app.shielding.guardians import Guardian, default_store
from wizard_pages.shielding_common import (
    CERT_FILTERS,
    ShieldingPage,
    create_owner,
    import_fabric_guardian,
    list_store,
)

SIGNING_CHOICES = (("ECDSA P-256", "p256"), ("ECDSA P-384", "p384"), ("RSA 3072", "rsa3072"))
LIST, CREATE, IMPORT = "list", "create", "import"


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

        owner_grid = QGridLayout()
        owner_grid.setHorizontalSpacing(8)
        owner_grid.setVerticalSpacing(4)
        caption = QLabel(self.tr("&Owner:"), self)
        caption.setBuddy(self.owner_combo)
        owner_grid.addWidget(caption, 0, 0)
        owner_grid.addWidget(self.owner_combo, 0, 1, 1, 3)
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
        self.guardian_note = NoteLabel(self, name="guardianNote")

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
        layout.addWidget(self.guardian_note)
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

    # -- showing ----------------------------------------------------------------------------------

    def _fill(self) -> None:
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
                name.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
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
        where = self.state.store or default_store()
        self.store_label.set_note(self.tr("Local guardians are kept in %1.").replace("%1", str(where)))
        if not busy:
            self.guardiansChanged.emit()
        self.completeChanged.emit()

    def show_error(self, error: ShieldwrightError) -> None:
        self.error_panel.show_error(error.message, error.hint)
