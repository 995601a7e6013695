"""GUI fixtures: an app-owned executor per test (shut down afterwards), the wizard, signing files, a cheap
KDF, helpers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtWidgets import QPushButton, QWizard

from app.gui.tasks import TaskRunner
from app.gui.wizard import ShieldwrightWizard
from app.luks import kdf
from app.luks.kdf import KdfParams
from app.signing import keys
from app.signing.signer import KeySigner

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


@dataclass(frozen=True)
class SigningFiles:
    cert: Path
    key: Path
    signer: KeySigner


def make_signing_files(directory: Path, common_name: str = "Review test UEFI signing") -> SigningFiles:
    directory.mkdir(parents=True, exist_ok=True)
    key = keys.generate_key("rsa2048")
    cert = keys.generate_self_signed(key, common_name=common_name, organization="Test Org", days=30)
    cert_path = keys.write_certificate(cert, directory / "uefi.crt")
    key_path = keys.write_private_key(key, directory / "uefi.key")
    return SigningFiles(cert_path, key_path, KeySigner(key, cert))


@pytest.fixture(scope="module")
def signing_files(tmp_path_factory: pytest.TempPathFactory) -> SigningFiles:
    return make_signing_files(tmp_path_factory.mktemp("signing"))


def cheap_kdf(kind: str, iter_time_ms: int = 2000, max_memory_kib: int = 1048576,
              parallel: int | None = None, cancel=None) -> KdfParams:  # fmt: skip
    """Stands in for kdf.calibrate: a fixed, cheap cost (the build then derives keyslots quickly)."""
    return KdfParams.pbkdf2(1000) if kind == "pbkdf2" else KdfParams.argon2id(1, 32 * 1024, 1)


@pytest.fixture
def fast_kdf(monkeypatch) -> None:
    monkeypatch.setattr(kdf, "calibrate", cheap_kdf)
