"""The Generate page: the real build on the demo image, then the Finished page; cancel; close; failure.

The success and cancel tests run the real pipeline (``run_build``) on the demo image with a cheap KDF
(pbkdf2, 1000 iterations, from the Encryption page's calibration being replaced) and grade the result
with hashlib and the engine's ``verify_template``. To cancel *during the write step*, the engine's
progress object is slowed down while that step runs (the engine itself is unchanged). Closing the
wizard during a build and a failing build use a stand-in builder, since only the page's behaviour is
under test there.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from app.errors import ShieldwrightError
from app.gui.wizard import PageId
from tests.gui.test_review_page import drive_to_review

BUILD_TIMEOUT_MS = 180_000
TASK_TIMEOUT_MS = 60_000
STEP_RE = re.compile(r"^Step (\d+) of (\d+): (.+)$")


def ready_review(qtbot, wizard, demo_image, signing_files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    wizard.resize(1000, 700)
    review = drive_to_review(qtbot, wizard, demo_image, signing_files, out / "demo.raw")
    assert review.isComplete(), review.findings.messages()
    return review, out


def click_generate(qtbot, wizard) -> None:
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.CommitButton), Qt.MouseButton.LeftButton)
    assert wizard.currentId() == PageId.BUILD


def fake_builder(hold: threading.Event | None = None, error: ShieldwrightError | None = None):
    """Stands in for run_generate: three steps reported into the engine's real BuildProgress."""

    def build(request, build_progress, *, cancel, progress):
        for k, name in enumerate(("Open", "Write", "Sign"), 1):
            build_progress.start_step(k, name, 3)
            build_progress.begin(name, 100)
            for i in range(10):
                cancel.check()
                build_progress.update((i + 1) * 10)
                time.sleep(0.01)
            while hold is not None and not hold.is_set() and k == 2:
                cancel.check()
                time.sleep(0.01)
            if error is not None and k == 2:
                request.wipe()
                raise error
        request.wipe()
        return SimpleNamespace(output=request.output)

    return build


def use_fake(page, builder) -> None:
    page._builder = builder


# -- stand-in builder: page behaviour ---------------------------------------------------------------------


def test_closing_the_wizard_during_a_build_asks_and_stops_first(
    qtbot, wizard, demo_image, signing_files, fast_kdf, tmp_path
):
    review, out = ready_review(qtbot, wizard, demo_image, signing_files, tmp_path)
    hold = threading.Event()
    page = wizard.generate_page
    use_fake(page, fake_builder(hold))
    click_generate(qtbot, wizard)
    qtbot.waitUntil(lambda: page.steps_seen[-1:] == [(2, "Write")] if page.steps_seen else False,
                    timeout=TASK_TIMEOUT_MS)  # fmt: skip
    assert page.step_label.text() == "Step 2 of 3: Write"
    panel = page.progress_panel

    # The wizard's Cancel (or Escape, or the close button) only asks, inline.
    wizard.reject()
    assert wizard.isVisible() and page.is_running()
    assert panel.stop_button.isVisible() and "close" in panel.confirm_label.text()
    qtbot.mouseClick(panel.keep_button, Qt.MouseButton.LeftButton)
    assert page.is_running() and not panel.stop_button.isVisible()
    # Escape: the same question; this time stop. The build stops cooperatively, then the wizard closes.
    qtbot.keyClick(wizard, Qt.Key.Key_Escape)
    assert wizard.isVisible() and panel.stop_button.isVisible()
    with qtbot.waitSignal(wizard.finished, timeout=TASK_TIMEOUT_MS):
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    assert not wizard.isVisible() and not page.is_running()
    assert page.error is not None and page.error.message == "Cancelled"
    assert wizard.state.encryption.passphrase is None  # done() still wipes the secrets


def test_a_stop_signal_cancels_the_build_without_asking_then_closes(
    qtbot, wizard, demo_image, signing_files, fast_kdf, tmp_path
):
    """Regression (issue 17 item 9): failed on ecab7db because the wizard had no answer to SIGTERM/SIGHUP
    (``terminate`` did not exist): the process died at once and a running build left its staging behind."""
    review, out = ready_review(qtbot, wizard, demo_image, signing_files, tmp_path)
    hold = threading.Event()
    page = wizard.generate_page
    use_fake(page, fake_builder(hold))
    click_generate(qtbot, wizard)
    qtbot.waitUntil(lambda: page.steps_seen[-1:] == [(2, "Write")] if page.steps_seen else False,
                    timeout=TASK_TIMEOUT_MS)  # fmt: skip
    with qtbot.waitSignal(wizard.finished, timeout=TASK_TIMEOUT_MS):
        wizard.terminate()
        assert not page.progress_panel.stop_button.isVisible()  # no question asked
    assert not page.is_running() and page.error is not None and page.error.message == "Cancelled"
    assert wizard.state.encryption.passphrase is None


def test_the_wizard_process_exits_on_sigterm_with_its_code(demo_image, tmp_path):
    """A real wizard process (offscreen) closes on SIGTERM and exits 143, like the CLI."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.Popen([sys.executable, "-m", "app", str(demo_image)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        log = tmp_path / "state" / "shieldwright" / "log" / "shieldwright.log"
        deadline = time.monotonic() + 60
        while not (log.exists() and "starting" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the event loop is running
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


def test_a_failed_build_shows_why_and_allows_going_back(
    qtbot, wizard, demo_image, signing_files, fast_kdf, tmp_path
):
    review, out = ready_review(qtbot, wizard, demo_image, signing_files, tmp_path)
    page = wizard.generate_page
    use_fake(page, fake_builder(error=ShieldwrightError("the output disk is full", "free some space")))
    click_generate(qtbot, wizard)
    qtbot.waitUntil(lambda: not page.is_running(), timeout=TASK_TIMEOUT_MS)
    assert page.error_panel.isVisible()
    assert page.error_panel.message_label.text() == "The output disk is full"
    assert page.error_panel.hint_label.text() == "Free some space"
    assert page.nothing_written_label.isVisible()
    note = page.nothing_written_label.text()
    assert "Nothing was written" in note and str(out) in note
    assert page.log_view.lines() == ["Step 1/3: Open", "Step 2/3: Write"]
    assert not page.isComplete() and not wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    assert page.back_button.isVisible()
    qtbot.mouseClick(page.back_button, Qt.MouseButton.LeftButton)
    assert wizard.currentId() == PageId.REVIEW
    # And Generate again starts a new build.
    use_fake(page, fake_builder())
    click_generate(qtbot, wizard)
    qtbot.waitUntil(lambda: not page.is_running(), timeout=TASK_TIMEOUT_MS)
    assert page.error is None and not page.error_panel.isVisible()


def test_save_report_writes_the_log(qtbot, wizard, demo_image, signing_files, fast_kdf, tmp_path):
    ready_review(qtbot, wizard, demo_image, signing_files, tmp_path)
    page = wizard.generate_page
    use_fake(page, fake_builder())
    click_generate(qtbot, wizard)
    qtbot.waitUntil(lambda: not page.is_running(), timeout=TASK_TIMEOUT_MS)
    view = page.log_view
    dialog = view.choose_report_path()
    assert dialog.isVisible() and not view.save_button.isEnabled()
    target = tmp_path / "report.txt"
    with qtbot.waitSignal(view.reportSaved, timeout=TASK_TIMEOUT_MS):
        dialog.fileSelected.emit(str(target))
    dialog.reject()
    text = target.read_text()
    assert "Shieldwright build report" in text and str(wizard.state.image_path) in text
    assert "Step 1/3: Open\nStep 2/3: Write\nStep 3/3: Sign" in text
    assert wizard.state.encryption.passphrase.decode() not in text


# -- the real build ---------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_generate_builds_the_template_then_finished_verifies_it(
    qtbot, wizard, demo_image, signing_files, fast_kdf, tmp_path
):
    from app.template.pipeline import STEPS

    review, out = ready_review(qtbot, wizard, demo_image, signing_files, tmp_path)
    page = wizard.generate_page
    requests = []
    builder = page._builder

    def spy(request, build_progress, *, cancel, progress):
        requests.append(request)
        return builder(request, build_progress, cancel=cancel, progress=progress)

    page._builder = spy
    base_digest = sha256_file(demo_image)
    labels: list[str] = []

    def watch() -> bool:
        text = page.step_label.text()
        if not labels or labels[-1] != text:
            labels.append(text)
        return not page.is_running()

    click_generate(qtbot, wizard)
    assert page.is_running() and page.title() == "Generate"
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()  # not before success
    qtbot.waitUntil(watch, timeout=BUILD_TIMEOUT_MS)
    assert page.error is None, page.error.one_line()
    assert page.isComplete() and wizard.button(QWizard.WizardButton.NextButton).isEnabled()

    # "Step k of n" moved through the steps, in order, with n the engine's step count.
    shown = [STEP_RE.match(t) for t in labels]
    steps = [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in shown if m]
    assert {n for _, n, _ in steps} == {len(STEPS)}
    ks = [k for k, _, _ in steps]
    assert ks == sorted(ks) and len(set(ks)) >= 3
    assert all(STEPS[k - 1] == name for k, _, name in steps)
    # At 10 Hz a short step can start and end between two looks; the last one is always shown.
    seen = [k for k, _ in page.steps_seen]
    assert seen == sorted(set(seen)) and seen[-1] == len(STEPS)
    assert all(STEPS[k - 1] == name for k, name in page.steps_seen)
    assert page.step_label.text().startswith("Done")
    # The details log has the engine's lines.
    assert len(page.log_view.lines()) >= 3
    # The passphrase copy handed to the engine was wiped; the wizard's own is intact.
    assert requests and not any(requests[0].passphrase)
    assert wizard.state.encryption.passphrase and any(wizard.state.encryption.passphrase)
    # The input was only read.
    assert sha256_file(demo_image) == base_digest

    result = wizard.state.output.result
    assert Path(result.output) == out / "demo.raw" and Path(result.output).is_file()

    # Finished: every artefact with its size and SHA-256 as the build recorded them, which hashlib confirms
    # (the page shows them at once: it does not read the files again).
    finished = wizard.finished_page
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.NextButton), Qt.MouseButton.LeftButton)
    assert wizard.currentId() == PageId.SUMMARY and finished.title() == "Template ready"
    assert not finished.is_busy()
    roles = [a.role for a in finished.artifacts]
    assert roles == ["template", "catalog", "manifest", "manifest_signature", "report"]
    expected = {a.path.name: sha256_file(a.path) for a in finished.artifacts}
    assert finished.table_digests() == expected
    for a in finished.artifacts:
        assert finished.digests[a.path].size == a.path.stat().st_size
    # The recovery key was shown once on the Encryption page and stored by the user: it is enrolled,
    # but no file holding it is written beside the template it unlocks.
    key = wizard.state.encryption.recovery_key_value.decode()
    assert not list(out.glob("*recovery*"))
    texts = [p.read_text(errors="replace") for p in out.iterdir() if p.suffix in (".json", ".html")]
    assert texts and all(key not in text for text in texts)
    assert wizard.button(QWizard.WizardButton.FinishButton).isVisible()

    # Verify: the engine's end-to-end check, every check passing.
    with qtbot.waitSignal(finished.verifyFinished, timeout=BUILD_TIMEOUT_MS):
        qtbot.mouseClick(finished.verify_button, Qt.MouseButton.LeftButton)
    rows = finished.check_rows()
    assert rows and all(ok for ok, _ in rows), rows
    assert all(text.startswith("✓ ") for _, text in rows)
    assert finished.status_label.text() == "Verified: every check passed."
    assert finished.verify_report.ok


@pytest.fixture
def slow_write(monkeypatch):
    """Slow the worker threads' reads of the base image down while ``slow`` is set (the engine unchanged)."""
    from app.disk.formats.raw import RawImage

    slow = threading.Event()
    original = RawImage.read

    def read(self, offset: int, length: int) -> bytes:
        if slow.is_set() and threading.current_thread() is not threading.main_thread():
            time.sleep(0.02)
        return original(self, offset, length)

    monkeypatch.setattr(RawImage, "read", read)
    return slow


def test_cancel_during_the_write_step_leaves_nothing(
    qtbot, wizard, demo_image, signing_files, fast_kdf, tmp_path, slow_write
):
    review, out = ready_review(qtbot, wizard, demo_image, signing_files, tmp_path)
    page = wizard.generate_page
    panel = page.progress_panel
    slow_write.set()
    click_generate(qtbot, wizard)

    def in_write_step() -> bool:
        assert page.is_running(), page.error and page.error.one_line()
        return "writ" in page.step_label.text().lower() and panel.bar.value() > 0

    qtbot.waitUntil(in_write_step, timeout=BUILD_TIMEOUT_MS)
    # Stage one asks, the build goes on; stage two stops it.
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert panel.stop_button.isVisible() and panel.keep_button.isVisible() and page.is_running()
    with qtbot.waitSignal(page.buildFinished, timeout=BUILD_TIMEOUT_MS):
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
        assert panel.cancel_button.text() == "Stopping…" and not panel.cancel_button.isEnabled()
    assert page.error_panel.isVisible()
    assert "cancelled" in page.error_panel.message_label.text().lower()
    assert page.nothing_written_label.isVisible()
    assert "Nothing was written" in page.nothing_written_label.text()
    assert list(out.iterdir()) == []  # no template, no partial file, no catalog, manifest or report
    assert not page.isComplete() and wizard.state.output.result is None
    assert page.back_button.isVisible()
