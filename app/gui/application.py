"""Application bootstrap: QApplication, logging, error reporting, the qasync loop, the wizard, shutdown.

Order matters (gui.md §4): the QApplication exists before any widget; the executor is ours, so at
exit we shut it down ourselves with ``cancel_futures=True, wait=False`` instead of letting a loop
``close()`` wait for a thread stuck in a long read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import os
import signal
import sys
import traceback
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from PySide6.QtCore import QObject, QTimer, QtMsgType, Signal, Slot, qInstallMessageHandler
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from app import APP_ID, __version__
from app.errors import ShieldwrightError
from app.gui.frame import MainWindow
from app.gui.start_page import Flow
from app.gui.tasks import TaskRunner
from app.logfile import log_file_path

log = logging.getLogger(__name__)

APP_NAME = "Shieldwright"
ICON_PATH = Path(__file__).resolve().parents[2] / "resources" / "icons" / f"{APP_ID}.svg"
_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"

ExcHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]


# -- logging ----------------------------------------------------------------------------------------


def setup_logging(debug: bool = False) -> Path:
    """Log to a rotating file in the XDG state dir; with ``debug`` at DEBUG level and to stderr too."""
    path = log_file_path()
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_shieldwright", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(path, maxBytes=2 * 1024 * 1024, backupCount=3))
    except OSError as exc:  # a read-only home must not stop the wizard
        print(f"shieldwright: cannot write the log file {path}: {exc.strerror}", file=sys.stderr)
    if debug:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        handler._shieldwright = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    qInstallMessageHandler(_qt_message_handler)
    log.info("Shieldwright %s starting (log %s)", __version__, path)
    return path


_QT_LEVELS = {
    QtMsgType.QtDebugMsg: logging.DEBUG,
    QtMsgType.QtInfoMsg: logging.INFO,
    QtMsgType.QtWarningMsg: logging.WARNING,
    QtMsgType.QtCriticalMsg: logging.ERROR,
    QtMsgType.QtFatalMsg: logging.CRITICAL,
}


def _qt_message_handler(mode: QtMsgType, context: object, message: str) -> None:
    logging.getLogger("qt").log(_QT_LEVELS.get(mode, logging.WARNING), "%s", message)


# -- error reporting ---------------------------------------------------------------------------------


class ErrorReporter(QObject):
    """``sys.excepthook`` replacement: log the traceback, then show a readable, non-blocking dialog.

    The hook may run in any thread; the dialog is created in the GUI thread through a queued signal.
    """

    _report = Signal(object)

    def __init__(self, log_path: Path | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.log_path = log_path
        self.dialogs: list[QMessageBox] = []
        self._previous: ExcHook | None = None
        self._report.connect(self._show)

    def install(self) -> ErrorReporter:
        self._previous = sys.excepthook
        sys.excepthook = self.excepthook
        return self

    def uninstall(self) -> None:
        if self._previous is not None and sys.excepthook == self.excepthook:
            sys.excepthook = self._previous
        self._previous = None

    def excepthook(self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            QApplication.quit()
            return
        if isinstance(exc, ShieldwrightError):
            log.error("error: %s", exc.one_line())
        else:
            log.critical("unexpected error", exc_info=(exc_type, exc, tb))
        with contextlib.suppress(RuntimeError):  # the reporter is gone (late shutdown): the log has it
            self._report.emit(exc)

    @Slot(object)
    def _show(self, exc: BaseException) -> None:
        parent: QWidget | None = QApplication.activeWindow()
        box = QMessageBox(parent)
        box.setIcon(QMessageBox.Icon.Critical)
        box.setWindowTitle(self.tr("Shieldwright"))
        if isinstance(exc, ShieldwrightError):
            box.setText(exc.message)
            box.setInformativeText(exc.hint)
        else:
            where = str(self.log_path) if self.log_path else self.tr("the log")
            box.setText(self.tr("Unexpected error"))
            box.setInformativeText(
                self.tr(
                    "Shieldwright ran into a problem it did not expect: %1\n\n"
                    "The details were written to %2. Please include that file when you report the problem."
                )
                .replace("%1", f"{type(exc).__name__}: {exc}")
                .replace("%2", where)
            )
            box.setDetailedText("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        box.setStandardButtons(QMessageBox.StandardButton.Close)
        self.dialogs.append(box)
        box.finished.connect(lambda _result, b=box: self._closed(b))
        box.open()  # never exec(): we may be inside an async slot (qasync#59)

    def _closed(self, box: QMessageBox) -> None:
        if box in self.dialogs:
            self.dialogs.remove(box)
        box.deleteLater()


# -- the loop ------------------------------------------------------------------------------------------


def run_event_loop(app: QApplication, main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on a qasync loop over ``app``, on every Python we support."""
    import qasync  # lazy: it takes the Qt binding already imported (PySide6), else the first one installed

    if sys.version_info >= (3, 12):
        return asyncio.run(main, loop_factory=lambda: qasync.QEventLoop(app))
    return qasync.run(main)  # an event-loop policy under the hood on 3.11


def create_application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setOrganizationDomain("shieldwright.github.io")
    app.setDesktopFileName(APP_ID)
    icon = QIcon(str(ICON_PATH)) if ICON_PATH.is_file() else QIcon.fromTheme(APP_ID)
    app.setWindowIcon(icon)
    return app


def run_wizard(image: str | None, debug: bool = False) -> int:
    """Open the window - its start page, or the template wizard on ``image`` if given - and return the
    process exit code when it closes."""
    log_path = setup_logging(debug)
    # A display that is named but cannot be opened makes Qt abort the process (qFatal, exit 134): say why
    # in one line and exit instead. (app.cli refuses to start without any display before Qt is loaded.)
    seen: list[str] = []

    def startup_message(mode: QtMsgType, context: object, message: str) -> None:
        _qt_message_handler(mode, context, message)
        seen.append(message.splitlines()[0] if message else "")
        if mode == QtMsgType.QtFatalMsg:
            hint = "run it in a desktop session or under xvfb-run, or use a subcommand: shieldwright --help"
            print(f"shieldwright: error: the wizard cannot open a window: {seen[0]} ({hint}; details in "
                  f"{log_path})", file=sys.stderr, flush=True)  # fmt: skip
            os._exit(69)  # EX_UNAVAILABLE, as app.cli for no display; nothing has started yet

    qInstallMessageHandler(startup_message)
    app = create_application()
    qInstallMessageHandler(_qt_message_handler)
    reporter = ErrorReporter(log_path, app).install()
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="shieldwright-worker")
    runner = TaskRunner(executor, app)
    window = MainWindow(runner, log_path=log_path)
    app.setQuitOnLastWindowClosed(False)  # the coroutine below decides when we are done

    # Ctrl+C in the terminal closes the window (asking first, as its close button does); SIGTERM and SIGHUP
    # cancel a build without asking and close once it has cleaned up. The timer lets Python see a signal
    # while Qt waits. A signal someone chose to ignore (nohup) stays ignored.
    stopped_by: list[int] = []

    def on_stop_signal(signum: int, _frame: object) -> None:
        stopped_by.append(signum)
        window.terminate()

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, lambda *_: window.close())}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            previous[sig] = signal.signal(sig, on_stop_signal)
    heartbeat = QTimer(app)
    heartbeat.start(250)
    heartbeat.timeout.connect(lambda: None)

    async def main() -> int:
        closed = asyncio.Event()
        window.closed.connect(closed.set)
        window.show()
        if image:  # `make run` and `shieldwright IMAGE`: straight into the template wizard on it
            window.request_flow(Flow.TEMPLATE, image=image)
        await closed.wait()
        return 128 + stopped_by[0] if stopped_by else 0

    try:
        code = run_event_loop(app, main())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        heartbeat.stop()
        runner.shutdown()  # cancel tokens; executor.shutdown(wait=False, cancel_futures=True)
        reporter.uninstall()
        window.deleteLater()
        log.info("Shieldwright exiting")
    return code
