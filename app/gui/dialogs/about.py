"""Help › About Shieldwright: what it is, its licence, and the versions it runs on - Qt and PySide6,
cryptography and its OpenSSL, the host's systemd-stub (the one UKIs are built on by default) - looked up
for real (the stub is read in the background), with *Copy versions* for a bug report."""

from __future__ import annotations

from PySide6 import __version__ as PYSIDE_VERSION
from PySide6.QtCore import Qt, Signal, qVersion
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import __version__
from app.gui.diagnostics import Version, collect_versions, versions_text
from app.gui.tasks import TaskRunner
from app.gui.widgets.tables import setup_readonly_table

LICENSE = "GPL-3.0-or-later"


def gather_versions_args() -> tuple[str, str, str]:
    """The Qt facts :func:`~app.gui.diagnostics.collect_versions` takes, read in the GUI thread."""
    return qVersion(), PYSIDE_VERSION, QGuiApplication.platformName()


class AboutDialog(QDialog):
    """Non-modal; the versions appear once the background look-up is done (:attr:`versionsShown`)."""

    #: The versions are shown (the look-up finished, or failed and says so).
    versionsShown = Signal()

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("aboutDialog")
        self.setWindowTitle(self.tr("About Shieldwright"))
        self.versions: list[Version] | None = None
        self._failed = False

        icon = QLabel(self)
        icon.setPixmap(QGuiApplication.windowIcon().pixmap(64, 64))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        title = QLabel(self.tr("Shieldwright %1").replace("%1", __version__), self)
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        title.setFont(font)
        self.description = QLabel(
            self.tr(
                "Builds signed, encrypted template disks for Shielded and Confidential VMs, the shielding "
                "data that lets a VM be provisioned from them, and provisions VM disks.\n\n"
                "Licence: %1. This program comes with absolutely no warranty."
            ).replace("%1", LICENSE),
            self,
        )
        self.description.setWordWrap(True)
        self.description.setTextFormat(Qt.TextFormat.PlainText)
        head = QVBoxLayout()
        head.addWidget(title)
        head.addWidget(self.description)
        top = QHBoxLayout()
        top.addWidget(icon)
        top.addLayout(head, 1)

        caption = QLabel(self.tr("&Versions in use"), self)
        self.table = QTableWidget(0, 2, self)
        self.table.setObjectName("versionsTable")
        self.table.setHorizontalHeaderLabels([self.tr("Component"), self.tr("Version")])
        self.table.setAccessibleName(self.tr("Versions in use"))
        setup_readonly_table(self.table, 1)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        caption.setBuddy(self.table)
        self.status = QLabel(self.tr("Looking up versions…"), self)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.copy_button = QPushButton(self.tr("&Copy versions"), self)
        self.copy_button.setToolTip(self.tr("Copy the versions to the clipboard, for a bug report"))
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy_versions)
        self.buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addSpacing(6)
        layout.addWidget(caption)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self.resize(620, 480)

        # The rest is looked up off the GUI thread (the stub is read and parsed).
        self.task = runner.start(collect_versions, *gather_versions_args(), name="about-versions")
        self.task.succeeded.connect(self._show_versions)
        self.task.failed.connect(lambda error: self._show_failure(error.one_line()))
        self.task.finished.connect(self._on_finished)

    def _show_versions(self, versions: list[Version]) -> None:
        self.versions = versions
        self.table.setRowCount(len(versions))
        for row, v in enumerate(versions):
            name = QTableWidgetItem(v.name)
            value = QTableWidgetItem(v.version + (f" — {v.detail}" if v.detail else ""))
            value.setToolTip(v.line())
            self.table.setItem(row, 0, name)
            self.table.setItem(row, 1, value)
        self.status.clear()
        self.status.hide()
        self.copy_button.setEnabled(True)

    def _show_failure(self, message: str) -> None:
        self._failed = True
        self.status.setText(self.tr("The versions could not be looked up: %1").replace("%1", message))

    def _on_finished(self) -> None:
        if self.versions is None and self.task.error is not None and not self._failed:
            self._show_failure(self.tr("an unexpected error (see the log)"))
        self.versionsShown.emit()

    def version_of(self, name: str) -> str | None:
        """The version shown for ``name`` (tests read it)."""
        for row in range(self.table.rowCount()):
            item, value = self.table.item(row, 0), self.table.item(row, 1)
            if item is not None and value is not None and item.text() == name:
                return value.text()
        return None

    def copy_versions(self) -> None:
        if self.versions is not None:
            QGuiApplication.clipboard().setText(versions_text(self.versions))
