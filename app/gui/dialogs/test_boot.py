"""Test boot: boot a built template on OVMF Secure Boot with a software TPM and compare the PCRs it measured
with the prediction, with the serial console shown live (what ``shieldwright test-boot`` prints).

The boot is :func:`app.measure.testboot.run_test_boot` (injectable, so tests need not boot), run through the
app's :class:`~app.gui.tasks.TaskRunner`; the dialog holds the task until it ends. The engine hands the
console over in whole lines on its worker thread: they go into a lock-protected buffer that a 10 Hz timer
drains into the console view on the GUI thread (no widget is touched from the worker). Stop cancels the
task's token - the engine then kills QEMU and swtpm. The dialog is non-modal (``show()``/``open()``, never
``exec()``), and its table is the engine's :func:`~app.measure.testboot.check_rows`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QElapsedTimer, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QFontDatabase, QPalette, QTextOption
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.errors import CancelledError, ShieldwrightError
from app.gui.tasks import BackgroundTask, TaskRunner
from app.gui.widgets.busy import busy_bar
from app.gui.widgets.error_panel import ErrorPanel
from app.gui.widgets.tables import setup_readonly_table
from app.measure.predict import PREDICTED_PCRS
from app.measure.testboot import TestBootResult, check_rows, run_test_boot
from app.untrusted import printable

log = logging.getLogger(__name__)

#: How often the console buffer is drained into the view (GNOME Disks' 1/10 s rule).
DRAIN_INTERVAL_MS = 100
#: Lines kept in the console view (a firmware that loops must not eat the memory).
MAX_CONSOLE_LINES = 20_000

BootFunction = Callable[..., TestBootResult]


class TestBootDialog(QDialog):
    """The live console of a test boot, its state, and at the end the measured-vs-predicted table."""

    __test__ = False  # not a pytest class

    #: The boot ended (matched, differed, failed or was stopped) and the dialog shows the outcome.
    bootFinished = Signal()

    def __init__(
        self,
        runner: TaskRunner,
        template: str | Path,
        *,
        firmware_vars: str | Path | None = None,
        firmware_note: str = "",  # why this firmware, e.g. why not the page's profile
        bank: str = "sha256",
        boot: BootFunction = run_test_boot,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("testBootDialog")
        self.setModal(False)
        self.runner = runner
        self.template = Path(template)
        self.firmware_vars = None if firmware_vars is None else Path(firmware_vars)
        self.bank = bank
        self._boot = boot
        self._task: BackgroundTask | None = None
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._clock = QElapsedTimer()
        self._stopping = False
        self.boot_result: TestBootResult | None = None
        self.error: BaseException | None = None
        self.setWindowTitle(self.tr("Test boot — %1").replace("%1", self.template.name))
        self._build_ui(firmware_note)
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_INTERVAL_MS)
        self._timer.timeout.connect(self._drain)
        self.resize(900, 620)

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self, firmware_note: str) -> None:
        intro = QLabel(
            self.tr(
                "Boots %1 on OVMF with Secure Boot and a software TPM until the firmware measures "
                "ExitBootServices, then compares PCR 4, 7 and 11 with the prediction. The template is "
                "attached read-only."
            ).replace("%1", str(self.template)),
            self,
        )
        intro.setWordWrap(True)
        intro.setTextFormat(Qt.TextFormat.PlainText)
        self.firmware_label = QLabel(self)
        self.firmware_label.setObjectName("testBootFirmware")
        self.firmware_label.setWordWrap(True)
        self.firmware_label.setTextFormat(Qt.TextFormat.PlainText)
        self.firmware_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.firmware_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.firmware_label.setText(
            self.tr("Firmware: %1").replace("%1", self._firmware_guess())
            + (f" ({firmware_note})" if firmware_note else "")
        )

        self.busy = busy_bar(self, self.tr("Booting"), max_width=90)
        keep = self.busy.sizePolicy()
        keep.setRetainSizeWhenHidden(True)
        self.busy.setSizePolicy(keep)
        self.status_icon = QLabel(self)
        self.status_icon.setFixedSize(18, 18)
        self.status_label = QLabel(self.tr("Not started."), self)
        self.status_label.setObjectName("testBootStatus")
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        self.status_label.setWordWrap(True)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        status = QHBoxLayout()
        status.addWidget(self.status_icon)
        status.addWidget(self.status_label, 1)
        status.addWidget(self.busy)

        self.console = QPlainTextEdit(self)
        self.console.setObjectName("testBootConsole")
        self.console.setReadOnly(True)
        self.console.setUndoRedoEnabled(False)
        # Long console lines wrap at the edge (anywhere if need be) rather than run off it unseen.
        self.console.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.console.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.console.setMaximumBlockCount(MAX_CONSOLE_LINES)
        self.console.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.console.setAccessibleName(self.tr("Serial console"))
        self.console.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        console_label = QLabel(self.tr("Serial c&onsole"), self)
        console_label.setBuddy(self.console)

        self.table = QTableWidget(len(PREDICTED_PCRS), 4, self)
        self.table.setObjectName("testBootTable")
        self.table.setAccessibleName(self.tr("Measured and predicted PCR values"))
        self.table.setHorizontalHeaderLabels(
            [self.tr("PCR"), self.tr("Predicted (%1)").replace("%1", self.bank), self.tr("Measured"),
             self.tr("Result")]
        )  # fmt: skip
        setup_readonly_table(self.table, 1, row_padding=8)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        height = self.table.horizontalHeader().sizeHint().height() + 2 * self.table.frameWidth()
        height += len(PREDICTED_PCRS) * self.table.verticalHeader().defaultSectionSize()
        self.table.setFixedHeight(height)
        for row, pcr in enumerate(PREDICTED_PCRS):
            self._set_row(row, (str(pcr), "—", "—", self.tr("not read yet")))
        table_label = QLabel(self.tr("&Measured vs predicted"), self)
        table_label.setBuddy(self.table)

        self.verdict_label = QLabel(self)
        self.verdict_label.setObjectName("testBootVerdict")
        self.verdict_label.setTextFormat(Qt.TextFormat.PlainText)
        self.verdict_label.setWordWrap(True)
        font = self.verdict_label.font()
        font.setBold(True)
        self.verdict_label.setFont(font)
        self.verdict_label.setMinimumHeight(self.verdict_label.fontMetrics().lineSpacing() * 2)
        self.verdict_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.error_panel = ErrorPanel(self)

        self.stop_button = QPushButton(
            self.style().standardIcon(QStyle.StandardPixmap.SP_MediaStop), self.tr("&Stop"), self
        )
        self.stop_button.setToolTip(self.tr("Stop the boot (QEMU and the software TPM are stopped)"))
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.close_button = QPushButton(self.tr("&Close"), self)
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.setSpacing(6)
        layout.addWidget(intro)
        layout.addWidget(self.firmware_label)
        layout.addLayout(status)
        layout.addWidget(console_label)
        layout.addWidget(self.console, 1)
        layout.addWidget(table_label)
        layout.addWidget(self.table)
        layout.addWidget(self.verdict_label)
        layout.addWidget(self.error_panel)
        layout.addLayout(buttons)
        QWidget.setTabOrder(self.console, self.table)
        QWidget.setTabOrder(self.table, self.stop_button)
        QWidget.setTabOrder(self.stop_button, self.close_button)

    def _firmware_guess(self) -> str:
        if self.firmware_vars is not None:
            return self.tr("OVMF Secure Boot, variable store %1").replace("%1", str(self.firmware_vars))
        return self.tr(
            "OVMF Secure Boot, Microsoft's keys with the certificate that signed the UKI added to db"
        )

    def _set_status(self, text: str, icon: QStyle.StandardPixmap | None = None) -> None:
        self.status_label.setText(text)
        self.status_label.setAccessibleName(text)
        if icon is None:
            self.status_icon.clear()
        else:
            self.status_icon.setPixmap(self.style().standardIcon(icon).pixmap(16, 16))

    def _set_row(self, row: int, cells: tuple[str, str, str, str]) -> None:
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            item.setData(Qt.ItemDataRole.UserRole, text)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            if column in (1, 2) and text not in ("—", "-"):
                item.setFont(mono)
            if column == 3 and cells[1] != "—":
                matched = text.startswith("match")
                pixmap = (QStyle.StandardPixmap.SP_DialogApplyButton if matched
                          else QStyle.StandardPixmap.SP_MessageBoxWarning)  # fmt: skip
                item.setIcon(self.style().standardIcon(pixmap))
            self.table.setItem(row, column, item)

    # -- running ----------------------------------------------------------------------------------

    def start(self) -> BackgroundTask:
        """Start the boot in the background (once)."""
        if self._task is not None:
            return self._task
        template, firmware_vars, bank, boot = self.template, self.firmware_vars, self.bank, self._boot
        sink = self._feed

        def work(*, cancel: Any, progress: Any) -> TestBootResult:
            return boot(template, firmware_vars=firmware_vars, bank=bank, on_console=sink, cancel=cancel)

        log.info("test boot of %s (firmware vars %s, bank %s)", template, firmware_vars, bank)
        task = self.runner.start(work, name="test-boot", with_progress=True)
        self._task = task
        task.succeeded.connect(self._on_succeeded)
        task.failed.connect(self._on_failed)
        task.finished.connect(self._on_finished)
        self._clock.start()
        self._timer.start()
        self.busy.show()
        self.stop_button.setEnabled(True)
        self.stop_button.setDefault(True)
        self._set_status(self.tr("Booting…"))
        return task

    def is_running(self) -> bool:
        return self._task is not None and not self._task.done

    def stop(self) -> None:
        """Cancel the boot; the engine stops QEMU and swtpm, and the dialog says so once they are gone."""
        if not self.is_running() or self._stopping:
            return
        assert self._task is not None
        self._stopping = True
        self._task.cancel()
        self.stop_button.setEnabled(False)
        self._set_status(self.tr("Stopping the virtual machine…"))

    def _feed(self, text: str) -> None:
        """The engine's console sink: runs on the worker thread, so it only appends to the buffer."""
        with self._lock:
            self._pending.append(text)

    def _drain(self) -> None:
        with self._lock:
            chunks, self._pending = self._pending, []
        if chunks:
            text = printable("".join(chunks), keep_newlines=True)
            bar = self.console.verticalScrollBar()
            at_end = bar.value() >= bar.maximum() - 2
            self.console.appendPlainText(text[:-1] if text.endswith("\n") else text)
            if at_end:  # follow the end, unless the user scrolled up to read
                bar.setValue(bar.maximum())
        if self.is_running() and not self._stopping:
            seconds = self._clock.elapsed() // 1000
            self._set_status(self.tr("Booting… %1 s").replace("%1", str(seconds)))

    def console_text(self) -> str:
        return self.console.toPlainText()

    def table_rows(self) -> list[tuple[str, str, str, str]]:
        """(PCR, predicted, measured, result) as shown, full values."""

        def cell(r: int, c: int) -> str:
            item = self.table.item(r, c)
            return "" if item is None else str(item.data(Qt.ItemDataRole.UserRole))

        return [(cell(r, 0), cell(r, 1), cell(r, 2), cell(r, 3)) for r in range(self.table.rowCount())]

    # -- outcome ----------------------------------------------------------------------------------

    def _on_succeeded(self, result: TestBootResult) -> None:
        self.boot_result = result
        rows = list(check_rows(result))
        self.table.setRowCount(len(rows))
        for row, cells in enumerate(rows):
            self._set_row(row, cells)
        firmware = (
            self.tr("Firmware: %1 (%2, %3 s)").replace("%1", f"OVMF Secure Boot, {result.firmware}")
            .replace("%2", result.accel).replace("%3", f"{result.boot.elapsed:.1f}")
        )  # fmt: skip
        notes = [self.tr("Chain: %1").replace("%1", note) for note in result.prediction.chain.notes]
        self.firmware_label.setText("\n".join([firmware, *notes]))
        if result.problem:
            self._set_status(
                self.tr("Problem: %1").replace("%1", result.problem),
                QStyle.StandardPixmap.SP_MessageBoxWarning,
            )
        else:
            self._set_status(
                self.tr("Stopped when the firmware measured ExitBootServices, after %1 s.").replace(
                    "%1", f"{result.boot.elapsed:.1f}"
                ),
                QStyle.StandardPixmap.SP_DialogApplyButton,
            )
        if result.matches:
            verdict = self.tr("✓ Match: the template boots to the predicted PCR values.")
        elif result.problem:
            verdict = self.tr("✗ No verdict: the boot did not get to the measurement.")
        else:
            verdict = self.tr("✗ Mismatch: the template does not boot to the predicted PCR values.")
        self.verdict_label.setText(verdict)

    def _on_failed(self, error: ShieldwrightError) -> None:
        self.error = error
        if isinstance(error, CancelledError):
            self._set_status(
                self.tr("Stopped: the test boot was cancelled; QEMU and the software TPM were stopped."),
                QStyle.StandardPixmap.SP_MessageBoxInformation,
            )
            self.verdict_label.setText(self.tr("No verdict: the boot was stopped."))
            return
        self._set_status(self.tr("The test boot could not run."), QStyle.StandardPixmap.SP_MessageBoxCritical)
        self.error_panel.show_error(error.message, error.hint)
        self.verdict_label.setText(self.tr("No verdict."))

    def _on_finished(self) -> None:
        task = self._task
        self._timer.stop()
        self._drain()
        self.busy.hide()
        self.stop_button.setEnabled(False)
        self.close_button.setDefault(True)
        if task is not None and task.error is not None and not isinstance(task.error, ShieldwrightError):
            self.error = task.error
            self._set_status(self.tr("The test boot failed because of an unexpected error."),
                             QStyle.StandardPixmap.SP_MessageBoxCritical)  # fmt: skip
            self.error_panel.show_error(
                self.tr("The test boot failed because of an unexpected error."),
                self.tr("The details were written to the log."),
            )
        self.bootFinished.emit()

    # -- closing ----------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        # Closing stops a running boot (the task ends on its own; the runner holds it until then).
        self.stop()
        super().closeEvent(event)

    def reject(self) -> None:
        self.stop()
        super().reject()
