"""Issue 17 on the Review page: the wizard asks before replacing a recipe file (item 8), and shows - and
refuses unless allowed - host files that the template would publish in the clear (item 7).

Driven through the real pages on the demo image (tests/gui/test_review_page.py's ``drive_to_review``); the
files are graded by their bytes, the page by what it shows and whether Generate is enabled, and the hand-over
to the build by the request the Generate page makes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from app.findings import Severity
from tests.gui.test_generate_page import fake_builder
from tests.gui.test_review_page import TASK_TIMEOUT_MS, drive_to_review
from wizard_pages.review import ReviewPage


@pytest.fixture
def review(qtbot, wizard, demo_image, signing_files, fast_kdf, tmp_path) -> ReviewPage:
    (tmp_path / "out").mkdir()
    wizard.resize(1000, 700)
    page = drive_to_review(qtbot, wizard, demo_image, signing_files, tmp_path / "out" / "demo.raw")
    assert page.isComplete(), page.findings.messages()
    return page


def _choose(qtbot, review: ReviewPage, path: Path, signal_name: str) -> None:
    dialog = review.choose_recipe_path()
    with qtbot.waitSignal(getattr(review, signal_name), timeout=TASK_TIMEOUT_MS):
        dialog.fileSelected.emit(str(path))
    dialog.reject()


# -- item 8: a recipe file is replaced only after asking ---------------------------------------------------


def test_saving_over_an_existing_file_asks_inline_first(qtbot, wizard, review, tmp_path: Path) -> None:
    """Regression (issue 17 item 8): failed on ecab7db because choosing an existing file replaced it at once
    (the page never asked; the Qt file dialog's own question depends on the platform's dialog)."""
    precious = tmp_path / "keep-me.toml"
    precious.write_bytes(b"# somebody's recipe, or a key with a .toml name\n")
    before = precious.read_bytes()

    dialog = review.choose_recipe_path()
    dialog.fileSelected.emit(str(precious))  # what choosing the file in the dialog does
    dialog.reject()
    qtbot.wait(50)
    qtbot.waitUntil(lambda: not review.is_busy(), timeout=TASK_TIMEOUT_MS)
    assert precious.read_bytes() == before  # nothing written while asking
    assert review.replace_panel.isVisible() and str(precious) in review.replace_label.text()
    assert not review.save_button.isEnabled()
    qtbot.mouseClick(review.keep_button, Qt.MouseButton.LeftButton)
    assert precious.read_bytes() == before and not review.replace_panel.isVisible()
    assert "kept" in review.status_label.text()

    _choose(qtbot, review, precious, "replaceAsked")
    with qtbot.waitSignal(review.saveFinished, timeout=TASK_TIMEOUT_MS):
        qtbot.mouseClick(review.replace_button, Qt.MouseButton.LeftButton)
    assert "format_version = 2" in precious.read_text()
    assert review.saved_recipe == precious and not review.replace_panel.isVisible()


def test_a_new_file_is_saved_without_a_question(qtbot, review, tmp_path: Path) -> None:
    path = tmp_path / "new.toml"
    _choose(qtbot, review, path, "saveFinished")
    assert path.is_file() and not review.replace_panel.isVisible()


def test_a_file_that_appears_after_asking_is_still_not_replaced(qtbot, review, tmp_path: Path) -> None:
    """The engine refuses too (save_recipe without overwrite): the page's question is not the only guard."""
    path = tmp_path / "race.toml"
    real_saver = review._saver

    def saver(recipe, target, overwrite):
        Path(target).write_text("# appeared meanwhile\n")
        return real_saver(recipe, target, overwrite)

    review._saver = saver
    _choose(qtbot, review, path, "saveFinished")
    assert path.read_text() == "# appeared meanwhile\n"
    assert review.error_panel.isVisible() and "exists" in review.error_panel.message_label.text()


# -- item 7: host files in the clear -----------------------------------------------------------------------


@pytest.fixture
def private_initrd(tmp_path: Path) -> tuple[Path, Path]:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"MZ" + os.urandom(4096))
    kernel.chmod(0o644)
    initrd = tmp_path / "secret-initrd"
    initrd.write_bytes(b"not for publication\n")
    initrd.chmod(0o600)
    return kernel, initrd


def test_a_private_host_file_blocks_generate_until_allowed_and_is_listed(
    qtbot, wizard, review, private_initrd
) -> None:
    """Regression (issue 17 item 7): failed on ecab7db because the page neither listed the host files that go
    into the template in the clear nor refused a private one: Generate was enabled for a 0600 initrd."""
    kernel, initrd = private_initrd
    uki = wizard.state.uki.options
    uki.source, uki.kernel, uki.initrds = "files", str(kernel), [str(initrd)]
    with qtbot.waitSignal(review.checkFinished, timeout=TASK_TIMEOUT_MS):
        review.start_check()
    errors = [m for m, s in zip(review.findings.messages(), review.findings.severities(), strict=True)
              if s == "error"]  # fmt: skip
    assert len(errors) == 1 and "uki.initrds[0]" in errors[0].lower() and str(initrd) in errors[0], errors
    assert not review.isComplete()
    assert not wizard.button(QWizard.WizardButton.CommitButton).isEnabled()
    summary = review.summary_text()
    assert "Host files in the clear" in summary
    assert f"kernel: {kernel}" in summary and f"initrd: {initrd} — PRIVATE" in summary
    assert review.private_check.isVisible() and not review.private_check.isChecked()

    with qtbot.waitSignal(review.checkFinished, timeout=TASK_TIMEOUT_MS):
        review.private_check.setChecked(True)
    assert "error" not in review.findings.severities(), review.findings.messages()
    assert any(str(initrd) in m for m in review.findings.messages())  # still shown, as a warning
    assert review.isComplete() and wizard.field("allowPrivateInputs") is True

    # The choice reaches the build.
    seen = []
    generate = wizard.generate_page
    builder = fake_builder()

    def spy(request, build_progress, *, cancel, progress):
        seen.append(request.allow_private_inputs)
        return builder(request, build_progress, cancel=cancel, progress=progress)

    generate._builder = spy
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.CommitButton), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not generate.is_running(), timeout=TASK_TIMEOUT_MS)
    assert seen == [True]


def test_public_host_files_are_listed_without_a_choice(qtbot, wizard, review, private_initrd) -> None:
    kernel, initrd = private_initrd
    initrd.chmod(0o644)
    uki = wizard.state.uki.options
    uki.source, uki.kernel, uki.initrds = "files", str(kernel), [str(initrd)]
    with qtbot.waitSignal(review.checkFinished, timeout=TASK_TIMEOUT_MS):
        review.start_check()
    assert review.isComplete(), review.findings.messages()
    assert not review.private_check.isVisible()
    summary = review.summary_text()
    assert f"initrd: {initrd}" in summary and "PRIVATE" not in summary
    assert all(f.severity is not Severity.ERROR for f in review._check.findings)
