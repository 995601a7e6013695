"""The template's identity in the catalog: name, version, hash block size, and who signs it.

The name and version fields validate with the catalog engine's rules (:mod:`.catalog_validators`), the
block sizes offered are the recipe's :data:`~app.template.recipe.CATALOG_BLOCK_SIZES`. The signer is
shown, not chosen here (the Certificates page chooses it). :attr:`CatalogIdentityForm.edited` says that
any of the three inputs changed.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGridLayout, QLabel, QLineEdit, QSizePolicy, QWidget

from app.catalog.limits import DEFAULT_BLOCK_SIZE, MAX_NAME_LENGTH
from app.gui.presentation import human_size
from app.gui.widgets.catalog_validators import TemplateNameValidator, VersionValidator
from app.template.recipe import CATALOG_BLOCK_SIZES, DEFAULT_TEMPLATE_VERSION, CatalogOptions


class CatalogIdentityForm(QWidget):
    """Template name, version and block size (editable), and the catalog signer (shown)."""

    #: The name, the version or the block size changed (by the user or :meth:`load`).
    edited = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name_edit = QLineEdit(self)
        self.name_edit.setObjectName("templateName")
        self.name_edit.setPlaceholderText(self.tr("e.g. Debian 12 web server"))
        self.name_edit.setValidator(TemplateNameValidator(self.name_edit))
        self.name_edit.setMaxLength(MAX_NAME_LENGTH)
        self.name_edit.setAccessibleName(self.tr("Template name"))
        self.name_edit.setToolTip(
            self.tr("A friendly name for the template disk; shielding data must name it exactly")
        )
        self.name_edit.textChanged.connect(self.edited)

        self.version_edit = QLineEdit(self)
        self.version_edit.setObjectName("templateVersion")
        self.version_edit.setValidator(VersionValidator(self.version_edit))
        self.version_edit.setPlaceholderText(DEFAULT_TEMPLATE_VERSION)
        self.version_edit.setAccessibleName(self.tr("Template version"))
        self.version_edit.setToolTip(self.tr("Four numbers a.b.c.d, each from 0 to 65535"))
        self.version_edit.setMaximumWidth(
            self.fontMetrics().horizontalAdvance("65535.65535.65535.65535") + 24
        )
        self.version_edit.textChanged.connect(self.edited)

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
        self.block_combo.currentIndexChanged.connect(self.edited)

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

        form = QGridLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
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

    def load(self, options: CatalogOptions) -> None:
        """Show ``options`` (an unknown block size shows the default)."""
        self.name_edit.setText(options.name)
        self.version_edit.setText(options.version)
        index = self.block_combo.findData(options.block_size)
        self.block_combo.setCurrentIndex(
            index if index >= 0 else self.block_combo.findData(DEFAULT_BLOCK_SIZE)
        )

    def store(self, options: CatalogOptions) -> None:
        """Write the inputs to ``options`` (the name without surrounding spaces)."""
        options.name = self.name_edit.text().strip()
        options.version = self.version_edit.text()
        options.block_size = int(self.block_combo.currentData())

    def inputs_valid(self) -> bool:
        """The engine accepts the name and the version (what the validators ask it)."""
        return self.name_edit.hasAcceptableInput() and self.version_edit.hasAcceptableInput()

    def show_signer(self, subject: str | None, fingerprint: str = "") -> None:
        if subject is None:
            self.signer_value.setText(self.tr("none chosen"))
            self.signer_value.setToolTip("")
            return
        self.signer_value.setText(subject)
        self.signer_value.setToolTip(
            self.tr("%1\nSHA-256 %2").replace("%1", subject).replace("%2", fingerprint)
        )

    def set_inputs_enabled(self, enabled: bool) -> None:
        """Enable or disable the inputs; the signer stays readable (selectable) while a task runs."""
        for w in (self.name_edit, self.version_edit, self.block_combo):
            w.setEnabled(enabled)
