"""Application shell: excepthook dialogs (non-blocking), logging location, and a full start/quit."""

from __future__ import annotations

import logging
import threading
import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from app import APP_ID
from app.errors import ImageError
from app.gui import application
from app.gui.application import ErrorReporter
from app.gui.discard import open_question
from app.gui.frame import MainWindow
from app.gui.wizard import ShieldwrightWizard


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        return caught


def test_excepthook_shows_shieldwright_error_without_blocking(qtbot, tmp_path):
    reporter = ErrorReporter(tmp_path / "shieldwright.log").install()
    try:
        exc = _raise(ImageError("disk.img is truncated", "copy the image again"))
        t0 = time.monotonic()
        application.sys.excepthook(type(exc), exc, exc.__traceback__)
        assert time.monotonic() - t0 < 1.0  # returned: no nested exec()
        qtbot.waitUntil(lambda: len(reporter.dialogs) == 1, timeout=3000)
        box = reporter.dialogs[0]
        assert box.isVisible()
        assert box.text() == "disk.img is truncated"
        assert box.informativeText() == "copy the image again"
        assert box.icon() == QMessageBox.Icon.Critical
        box.close()
        qtbot.waitUntil(lambda: reporter.dialogs == [], timeout=3000)
    finally:
        reporter.uninstall()


def test_excepthook_unexpected_error_names_log(qtbot, tmp_path, caplog):
    log_path = tmp_path / "shieldwright.log"
    reporter = ErrorReporter(log_path).install()
    try:
        exc = _raise(KeyError("boom"))
        with caplog.at_level(logging.ERROR):
            application.sys.excepthook(type(exc), exc, exc.__traceback__)
        assert any("unexpected error" in r.message and r.exc_info for r in caplog.records)
        qtbot.waitUntil(lambda: len(reporter.dialogs) == 1, timeout=3000)
        box = reporter.dialogs[0]
        assert box.text() == "Unexpected error"
        assert str(log_path) in box.informativeText()
        assert "KeyError" in box.detailedText()
        box.close()
    finally:
        reporter.uninstall()


def test_setup_logging_writes_to_xdg_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    root = logging.getLogger()
    level = root.level
    try:
        path = application.setup_logging(debug=True)
        assert path.is_relative_to(tmp_path) and path.name == "shieldwright.log"
        logging.getLogger("app.test").debug("hello from the test")
        for h in root.handlers:
            h.flush()
        assert "hello from the test" in path.read_text()
    finally:
        for h in [h for h in root.handlers if getattr(h, "_shieldwright", False)]:
            root.removeHandler(h)
            h.close()
        root.setLevel(level)


def test_run_wizard_starts_loads_and_quits(qapp, small_disk, tmp_path, monkeypatch):
    """The real entry point: qasync loop, the window opened on the image's template wizard, closed (asking
    first: an image is open), executor shut down."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # never the user's settings
    seen: dict[str, object] = {}

    def find_window() -> MainWindow | None:
        return next((w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)), None)

    deadline = time.monotonic() + 30

    def poll() -> None:
        window = find_window()
        wizard = window.flow if window is not None and window.isVisible() else None
        if isinstance(wizard, ShieldwrightWizard):
            page = wizard.base_image_page
            if not page.is_busy() and page.model.rowCount():
                seen["rows"] = page.model.rowCount()
                seen["title"] = window.windowTitle()
                window.close()  # like closing the window: it asks first, an image is open
                QTimer.singleShot(50, lambda: discard(window))
                return
        if time.monotonic() > deadline:
            if window is not None:
                window.terminate()
            return
        QTimer.singleShot(50, poll)

    def discard(window: MainWindow) -> None:
        question = open_question(window)
        if question is None and time.monotonic() < deadline:
            QTimer.singleShot(50, lambda: discard(window))
        elif question is not None:
            seen["asked"] = True
            question.discard_button.click()
        else:
            window.terminate()

    QTimer.singleShot(50, poll)
    root = logging.getLogger()
    try:
        code = application.run_wizard(str(small_disk), debug=False)
    finally:
        for h in [h for h in root.handlers if getattr(h, "_shieldwright", False)]:
            root.removeHandler(h)
            h.close()
    assert code == 0
    assert seen == {"rows": 4, "title": "Shieldwright — Template Disk Wizard", "asked": True}
    assert qapp.desktopFileName() == APP_ID
    assert qapp.applicationName() == "Shieldwright"
    assert not qapp.windowIcon().isNull()
    assert (tmp_path / "shieldwright" / "log" / "shieldwright.log").is_file()
    # shutdown(wait=False) lets idle workers exit on their own; give them a moment, then none may remain.
    deadline = time.monotonic() + 5
    while any(t.name.startswith("shieldwright-worker") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "executor threads outlived the wizard"
        time.sleep(0.02)
