"""A "Details" log of a long operation, with *Save report…* (GParted's "Save Details", KPM's report).

The owner appends lines as they come (the Generate page feeds the pipeline's log lines at ~10 Hz); the
view keeps every line for the report, shows them in a read-only monospace area behind a *Details*
toggle, and follows the end unless the user scrolled up to read. *Save report…* opens a non-blocking
file dialog (``open()``, never ``exec()``: we may be inside an async slot, gui.md §4) and writes the
report - an optional header from the owner, then the lines - through the TaskRunner when one is given.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QPalette, QTextCursor, QTextOption
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.errors import ShieldwrightError

if TYPE_CHECKING:
    from app.gui.tasks import BackgroundTask, TaskRunner

log = logging.getLogger(__name__)

REPORT_FILTERS = ("Text files (*.txt *.log)", "All files (*)")


def write_report(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` (UTF-8). The file dialog already asked before replacing a file."""
    target = Path(path)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ShieldwrightError(
            f"cannot write the report {target}: {exc.strerror}", "choose another folder"
        ) from None
    return target


class LogView(QWidget):
    """A *Details* toggle, a read-only monospace log, and *Save report…*."""

    #: The report was written to this path.
    reportSaved = Signal(object)
    #: Writing the report failed (message, hint).
    reportFailed = Signal(str, str)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        runner: TaskRunner | None = None,
        title: str = "",
        expanded: bool = False,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("logView")
        self._runner = runner
        self._lines: list[str] = []
        self._header: Callable[[], str] | None = None
        self._default_name = "shieldwright-report.txt"
        self._directory: Path | None = None
        self._file_dialog: QFileDialog | None = None
        self._save_task: BackgroundTask | None = None

        self.toggle = QToolButton(self)
        self.toggle.setObjectName("logToggle")
        self.toggle.setText(title or self.tr("&Details"))
        self.setAccessibleName(self.toggle.text().replace("&", ""))  # the title, without its mnemonic
        self.setAccessibleDescription(
            self.tr("The operation's log, one line per event, and Save report, which writes it to a file")
        )
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setAutoRaise(True)
        self.toggle.toggled.connect(self.set_expanded)

        self.count_label = QLabel(self)
        self.count_label.setObjectName("logCount")
        self.count_label.setTextFormat(Qt.TextFormat.PlainText)
        self.count_label.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.save_button = QPushButton(
            self.style().standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton),
            self.tr("Save &report…"),
            self,
        )
        self.save_button.setObjectName("saveReport")
        self.save_button.setToolTip(self.tr("Save these details as a text file (for a support request)"))
        self.save_button.clicked.connect(self.choose_report_path)

        self.text = QPlainTextEdit(self)
        self.text.setObjectName("logText")
        self.text.setReadOnly(True)
        self.text.setUndoRedoEnabled(False)
        # Long lines (digests, paths) wrap at the edge, anywhere if need be: none is cut off unseen, and the
        # report keeps each line whole.
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.text.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setAccessibleName(self.tr("Details log"))
        self.text.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.text.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.toggle)
        top.addWidget(self.count_label, 1)
        top.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.text, 1)
        self.toggle.setChecked(expanded)
        self.set_expanded(expanded)
        self._update_count()

    # -- content ----------------------------------------------------------------------------------

    def append_lines(self, lines: Iterable[str]) -> None:
        """Add ``lines`` at the end; the view follows them unless the user scrolled up."""
        new = [line.rstrip("\n") for line in lines]
        if not new:
            return
        self._lines.extend(new)
        bar = self.text.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 2
        cursor = QTextCursor(self.text.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        prefix = "\n" if self.text.document().characterCount() > 1 else ""
        cursor.insertText(prefix + "\n".join(new))
        if at_end:
            bar.setValue(bar.maximum())
        self._update_count()

    def append(self, line: str) -> None:
        self.append_lines([line])

    def lines(self) -> list[str]:
        return list(self._lines)

    def clear(self) -> None:
        self._lines.clear()
        self.text.clear()
        self._update_count()

    def set_report_header(self, header: Callable[[], str] | None) -> None:
        """A callable giving the report's first lines (what was built, from what), asked when saving."""
        self._header = header

    def set_default_file(self, directory: Path | None, name: str) -> None:
        """Where the save dialog starts and the file name it proposes."""
        self._directory, self._default_name = directory, name

    def report_text(self) -> str:
        head = self._header() if self._header is not None else ""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        parts = [head.rstrip("\n")] if head else []
        parts.append(self.tr("Report saved %1").replace("%1", stamp))
        parts.append("")
        parts.extend(self._lines)
        return "\n".join(parts) + "\n"

    # -- showing ----------------------------------------------------------------------------------

    def set_expanded(self, on: bool) -> None:
        self.text.setVisible(on)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        if self.toggle.isChecked() != on:
            self.toggle.setChecked(on)
        self.setSizePolicy(
            QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding if on else QSizePolicy.Policy.Fixed
        )

    def expanded(self) -> bool:
        return self.toggle.isChecked()

    def _update_count(self) -> None:
        self.count_label.setText(self.tr("%n line(s)", "", len(self._lines)) if self._lines else "")
        self.save_button.setEnabled(
            bool(self._lines) and self._file_dialog is None and self._save_task is None
        )

    # -- saving -----------------------------------------------------------------------------------

    def choose_report_path(self) -> QFileDialog | None:
        """A non-blocking Save dialog; the report is written when a file is chosen."""
        if self._file_dialog is not None:
            self._file_dialog.raise_()
            return self._file_dialog
        start = self._directory if self._directory is not None else Path.home()
        dialog = QFileDialog(self, self.tr("Save report"), str(start))
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setFileMode(QFileDialog.FileMode.AnyFile)
        dialog.setNameFilters([self.tr(f) for f in REPORT_FILTERS])
        dialog.setDefaultSuffix("txt")
        dialog.selectFile(self._default_name)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(self.save_report)
        dialog.finished.connect(self._on_dialog_closed)
        self._file_dialog = dialog
        dialog.open()
        self._update_count()
        return dialog

    def _on_dialog_closed(self, _result: int) -> None:
        self._file_dialog = None
        self._update_count()

    def save_report(self, path: str | Path) -> None:
        """Write the report to ``path`` (in the background when the view has a runner)."""
        text = self.report_text()
        if self._runner is None:
            try:
                self._on_saved(write_report(path, text))
            except ShieldwrightError as exc:
                self._on_failed(exc)
            return
        task = self._runner.start(write_report, str(path), text, name="save-report")
        self._save_task = task
        task.succeeded.connect(self._on_saved)
        task.failed.connect(self._on_failed)
        task.finished.connect(self._on_save_finished)
        self._update_count()

    def _on_saved(self, path: Path) -> None:
        log.info("report saved to %s", path)
        self.reportSaved.emit(path)

    def _on_failed(self, error: ShieldwrightError) -> None:
        self.reportFailed.emit(error.message, error.hint)

    def _on_save_finished(self) -> None:
        task, self._save_task = self._save_task, None
        if task is not None:
            task.succeeded.disconnect(self._on_saved)
            task.failed.disconnect(self._on_failed)
            task.finished.disconnect(self._on_save_finished)
        self._update_count()
