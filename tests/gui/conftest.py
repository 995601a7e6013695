"""GUI fixtures: an app-owned executor per test (shut down afterwards), the wizard, helpers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PySide6.QtWidgets import QPushButton, QWizard

from app.gui.tasks import TaskRunner
from app.gui.wizard import ShieldwrightWizard

INSPECT_TIMEOUT_MS = 30_000


@pytest.fixture
def runner(qapp) -> Iterator[TaskRunner]:
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-gui-worker")
    task_runner = TaskRunner(executor)
    yield task_runner
    task_runner.shutdown()
    executor.shutdown(wait=True)  # no worker thread may outlive its test
    leaked = [t for t in threading.enumerate() if t.name.startswith("test-gui-worker")]
    assert not leaked, leaked


@pytest.fixture
def wizard(qtbot, runner: TaskRunner) -> ShieldwrightWizard:
    w = ShieldwrightWizard(runner)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def open_and_wait(qtbot, wizard: ShieldwrightWizard, path: Path | str) -> None:
    """Open ``path`` on the Base image page and wait until the inspection's outcome is shown."""
    page = wizard.base_image_page
    with qtbot.waitSignal(page.inspectionFinished, timeout=INSPECT_TIMEOUT_MS):
        wizard.open_image(path)
    assert not page.is_busy()


def advance_button(wizard: QWizard) -> QPushButton:
    """The button that moves the wizard forward from the current page: Next, or Finish on the last page."""
    next_button = wizard.button(QWizard.WizardButton.NextButton)
    return next_button if next_button.isVisible() else wizard.button(QWizard.WizardButton.FinishButton)
