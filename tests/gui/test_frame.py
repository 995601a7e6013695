"""The frame: menu, start page, flows embedded in one window, asking before anything is lost, Help (About
with real versions, keyboard shortcuts, user guide, diagnostics) and settings remembered between runs.

Every test runs with ``XDG_CONFIG_HOME`` in its tmp dir (the ``config_home`` fixture), so the user's own
settings are never read or written; one test checks that by watching the real file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from types import SimpleNamespace

import cryptography
import pytest
from cryptography.hazmat.backends.openssl import backend as openssl_backend
from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QByteArray, Qt, qVersion
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QWizard

from app.boot.uki import HOST_STUB, read_stub
from app.gui import frame as frame_module
from app.gui.diagnostics import REDACTED
from app.gui.discard import open_question
from app.gui.frame import MainWindow
from app.gui.provision_wizard import ProvisionWizard
from app.gui.settings import Settings, settings_path
from app.gui.shielding_wizard import ShieldingWizard
from app.gui.start_page import Flow
from app.gui.state import OutputChoice, SigningChoice
from app.gui.wizard import PageId, ShieldwrightWizard
from app.template.recipe import OutputOptions
from tests.gui.conftest import INSPECT_TIMEOUT_MS, make_signing_files
from wizard_pages.certificates import Role

TASK_TIMEOUT_MS = 60_000
REPO = Path(__file__).resolve().parents[2]


# -- fixtures and helpers (test_open_recipe uses them too) -------------------------------------------


def use_temp_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings go to the test's own config dir, never the user's."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def make_frame(qtbot, runner, tmp_path: Path) -> MainWindow:
    window = MainWindow(runner, Settings(), log_path=tmp_path / "log" / "shieldwright.log")
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch) -> Path:
    return use_temp_config(tmp_path, monkeypatch)


@pytest.fixture
def frame(qtbot, runner, config_home, tmp_path) -> MainWindow:
    return make_frame(qtbot, runner, tmp_path)


def template_flow(frame: MainWindow) -> ShieldwrightWizard:
    flow = frame.flow
    assert isinstance(flow, ShieldwrightWizard), flow
    return flow


def open_template_on(qtbot, frame: MainWindow, image: Path) -> ShieldwrightWizard:
    frame.request_flow(Flow.TEMPLATE)
    wizard = template_flow(frame)
    with qtbot.waitSignal(wizard.base_image_page.inspectionFinished, timeout=INSPECT_TIMEOUT_MS):
        wizard.open_image(image)
    return wizard


def answer(qtbot, frame_or_wizard, discard: bool) -> None:
    """Answer the open "would be lost" question with *Discard* or *Keep working*."""
    question = open_question(frame_or_wizard)
    assert question is not None, "no question was asked"
    button = question.discard_button if discard else question.keep_button
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: open_question(frame_or_wizard) is None, timeout=3000)


def goto_encryption(qtbot, wizard: ShieldwrightWizard) -> None:
    """The Encryption page, whose passphrase is generated on entry (the KDF calibration is the cheap one)."""
    wizard.setCurrentId(PageId.ENCRYPTION)
    page = wizard.encryption_page
    qtbot.waitUntil(lambda: not page.is_calibrating(), timeout=TASK_TIMEOUT_MS)
    assert wizard.state.encryption.passphrase and wizard.state.encryption.passphrase_generated


# -- menu and start page -----------------------------------------------------------------------------------


def menu_texts(menu) -> list[str]:
    return [a.text() for a in menu.actions() if not a.isSeparator()]


def test_the_menu_has_the_flows_recipes_and_help(frame):
    assert [m.title() for m in (frame.file_menu, frame.help_menu)] == ["File", "Help"]
    assert menu_texts(frame.file_menu) == [
        "New &template disk", "New s&hielding data", "&Provision a VM disk", "&Open recipe…", "Open &recent",
        "&Save recipe…", "&Close wizard", "&Quit",
    ]  # fmt: skip
    assert menu_texts(frame.help_menu) == [
        "User &guide", "&Keyboard shortcuts", "Save &diagnostics…", "&About Shieldwright",
    ]  # fmt: skip
    for menu in (frame.file_menu, frame.help_menu):  # unique mnemonics within each menu
        keys = [QKeySequence.mnemonic(t).toString() for t in menu_texts(menu)]
        assert len(set(keys)) == len(keys) and "" not in keys, keys
    shortcuts = {a.text(): a.shortcut() for a in frame.file_menu.actions() + frame.help_menu.actions()}
    assert {name: keys.toString() for name, keys in shortcuts.items() if not keys.isEmpty()} == {
        "New &template disk": "Ctrl+N", "&Open recipe…": "Ctrl+O", "&Save recipe…": "Ctrl+S",
        "&Close wizard": "Ctrl+W", "&Quit": "Ctrl+Q", "User &guide": "F1",
    }  # fmt: skip
    # On the start page there is no template to save or wizard to close.
    assert frame.stack.currentWidget() is frame.start_page and frame.windowTitle() == "Shieldwright"
    assert not frame.save_recipe_action.isEnabled() and not frame.close_flow_action.isEnabled()


def test_the_start_page_opens_each_flow_and_escape_brings_it_back(qtbot, frame):
    expected = {
        Flow.TEMPLATE: (ShieldwrightWizard, "Shieldwright — Template Disk Wizard"),
        Flow.SHIELDING: (ShieldingWizard, "Shieldwright — Shielding Data"),
        Flow.PROVISION: (ProvisionWizard, "Shieldwright — Provision a VM Disk"),
    }
    for flow, (cls, title) in expected.items():
        qtbot.mouseClick(frame.start_page.flow_buttons[flow], Qt.MouseButton.LeftButton)
        wizard = frame.flow
        assert isinstance(wizard, cls) and frame.flow_kind is flow
        # Embedded in the window, not a window of its own.
        assert not wizard.isWindow() and wizard.isVisible() and frame.stack.currentWidget() is wizard
        assert frame.windowTitle() == title
        assert frame.save_recipe_action.isEnabled() == (flow is Flow.TEMPLATE)
        # Nothing chosen yet, so nothing to lose: Escape closes the wizard at once, back to the start page.
        qtbot.keyClick(wizard, Qt.Key.Key_Escape)
        qtbot.waitUntil(lambda: frame.flow is None, timeout=3000)
        assert frame.stack.currentWidget() is frame.start_page and frame.isVisible()


def test_cancel_and_escape_ask_before_discarding_a_generated_passphrase(qtbot, frame, small_disk, fast_kdf):
    """Defect (issue 18): Cancel and Esc quit at once outside a build, discarding generated secrets."""
    wizard = open_template_on(qtbot, frame, small_disk)
    goto_encryption(qtbot, wizard)
    passphrase = wizard.state.encryption.passphrase

    # Escape: asked, with what would be lost; Keep working keeps everything.
    qtbot.keyClick(wizard, Qt.Key.Key_Escape)
    question = open_question(wizard)
    assert question is not None and question.defaultButton() is question.keep_button
    text = question.informativeText()
    assert "generated provisioning passphrase" in text and "not saved as a recipe" in text
    answer(qtbot, wizard, discard=False)
    assert frame.flow is wizard and wizard.isVisible() and any(passphrase)

    # Cancel: the same question; Discard closes the wizard and wipes the passphrase.
    qtbot.mouseClick(wizard.button(QWizard.WizardButton.CancelButton), Qt.MouseButton.LeftButton)
    answer(qtbot, wizard, discard=True)
    qtbot.waitUntil(lambda: frame.flow is None, timeout=3000)
    assert not any(passphrase) and frame.stack.currentWidget() is frame.start_page


def test_quitting_asks_when_something_would_be_lost_and_closes_at_once_otherwise(
    qtbot, frame, small_disk, fast_kdf
):
    wizard = open_template_on(qtbot, frame, small_disk)
    goto_encryption(qtbot, wizard)
    closed: list[bool] = []
    frame.closed.connect(lambda: closed.append(True))
    frame.close()
    assert frame.isVisible() and not closed
    answer(qtbot, frame, discard=False)
    assert frame.isVisible() and frame.flow is wizard
    frame.quit_action.trigger()
    answer(qtbot, frame, discard=True)
    qtbot.waitUntil(lambda: bool(closed), timeout=3000)
    assert not frame.isVisible() and frame.flow is None
    assert wizard.state.encryption.passphrase is None  # done() wiped it


def test_a_new_flow_replaces_the_current_one_only_after_asking(qtbot, frame, small_disk, fast_kdf):
    wizard = open_template_on(qtbot, frame, small_disk)
    goto_encryption(qtbot, wizard)
    frame.new_shielding_action.trigger()
    answer(qtbot, frame, discard=False)
    assert frame.flow is wizard
    frame.new_shielding_action.trigger()
    answer(qtbot, frame, discard=True)
    assert isinstance(frame.flow, ShieldingWizard)
    assert wizard.state.encryption.passphrase is None


def test_the_shielding_flow_asks_too_once_choices_were_made(qtbot, frame, tmp_path):
    frame.request_flow(Flow.SHIELDING)
    wizard = frame.flow
    assert isinstance(wizard, ShieldingWizard)
    wizard.state.output, wizard.state.store = tmp_path / "vm.shd", tmp_path / "guardians"  # never the user's
    wizard.next()
    assert len(wizard.visitedIds()) == 2
    qtbot.keyClick(wizard, Qt.Key.Key_Escape)
    question = open_question(wizard)
    assert question is not None and "Shielding Data" in question.informativeText()
    answer(qtbot, wizard, discard=True)
    qtbot.waitUntil(lambda: frame.flow is None, timeout=3000)


def test_start_over_and_build_another_after_generate(qtbot, frame, small_disk, tmp_path):
    """Defect (issue 18): no "start over" / "build another" after Generate."""
    wizard = open_template_on(qtbot, frame, small_disk)
    state = wizard.state
    state.catalog.options.name, state.catalog.options.version = "Pipeline test", "1.2.3.4"
    template = tmp_path / "pipeline.raw"
    state.output = OutputChoice(OutputOptions(template, "raw"), result=None)
    start_over = wizard.button(QWizard.WizardButton.CustomButton1)
    another = wizard.button(QWizard.WizardButton.CustomButton2)
    assert not start_over.isVisible() and not another.isVisible()  # only after Generate
    # The Summary page after a build (its result stands in for the build's).
    state.output.result = SimpleNamespace(output=template, summary={})
    wizard.setCurrentId(PageId.SUMMARY)
    assert wizard.currentId() == PageId.SUMMARY
    assert start_over.isVisible() and start_over.text() == "Start &over"
    assert another.isVisible() and another.text() == "Build &another…"

    # Build another: a new template wizard with the same choices (nothing to lose: nothing generated).
    files = make_signing_files(tmp_path / "keys")
    state.uefi_signing = SigningChoice(files.cert, files.key)  # the certificate the build was signed with
    recipe = wizard.current_recipe()
    assert recipe is not None
    qtbot.mouseClick(another, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: frame.flow is not wizard and frame.flow is not None, timeout=3000)
    again = template_flow(frame)
    assert again.state.catalog.options.name == "Pipeline test" and again.state.output.path == template
    assert again.catalog_page.name_edit.text() == "Pipeline test"
    qtbot.waitUntil(lambda: not again.recipe_pending(), timeout=INSPECT_TIMEOUT_MS)

    # Start over: back to the start page.
    again.state.output.result = SimpleNamespace(output=template, summary={})
    again.setCurrentId(PageId.SUMMARY)
    qtbot.mouseClick(again.button(QWizard.WizardButton.CustomButton1), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: frame.flow is None, timeout=3000)
    assert frame.stack.currentWidget() is frame.start_page


# -- Help ------------------------------------------------------------------------------------------------


def test_about_shows_the_real_versions(qtbot, frame):
    frame.about_action.trigger()
    about = frame.about_dialog
    assert about is not None and about.isVisible() and not about.isModal()
    qtbot.waitUntil(lambda: about.versions is not None, timeout=TASK_TIMEOUT_MS)
    from app import __version__

    assert about.version_of("Shieldwright") == __version__
    assert about.version_of("PySide6") == pyside_version
    assert about.version_of("Qt").startswith(qVersion())
    assert about.version_of("cryptography") == cryptography.__version__
    assert about.version_of("OpenSSL").startswith(openssl_backend.openssl_version_text())
    # The stub the engine reads, independently: its LoaderInfo marker, found by a plain byte search.
    marker = HOST_STUB.read_bytes().split(b"#### LoaderInfo: systemd-stub ", 1)[1].split(b" ####")[0]
    assert about.version_of("systemd-stub").startswith(marker.decode())
    assert about.version_of("systemd-stub").startswith(read_stub(HOST_STUB.read_bytes())[1].version)
    qtbot.mouseClick(about.copy_button, Qt.MouseButton.LeftButton)
    copied = QApplication.clipboard().text()
    assert f"PySide6: {pyside_version}" in copied and f"cryptography: {cryptography.__version__}" in copied


def test_about_says_when_no_stub_is_found(qtbot, frame, monkeypatch, tmp_path):
    from app.gui import diagnostics

    real = diagnostics.stub_version
    monkeypatch.setattr(diagnostics, "stub_version", lambda: real(tmp_path / "no.stub"))
    about = frame.show_about()
    qtbot.waitUntil(lambda: about.versions is not None, timeout=TASK_TIMEOUT_MS)
    assert about.version_of("systemd-stub").startswith("not found")


def test_keyboard_shortcuts_lists_the_real_shortcuts(qtbot, frame):
    frame.request_flow(Flow.TEMPLATE)
    frame.shortcuts_action.trigger()
    dialog = frame.shortcuts_dialog
    assert dialog is not None and dialog.isVisible()
    rows = dict(dialog.rows())
    native = QKeySequence.SequenceFormat.NativeText
    for action in (frame.save_recipe_action, frame.quit_action, frame.guide_action, frame.close_flow_action):
        assert rows[action.shortcut().toString(native)] == action.text().replace("&", "")
    wizard = template_flow(frame)
    next_keys = QKeySequence.mnemonic(wizard.buttonText(QWizard.WizardButton.NextButton)).toString(native)
    assert rows[next_keys] == "Next page" and next_keys == "Alt+N"
    assert "F10" in rows and "Esc" in rows
    # On the Base image page, Ctrl+O opens an image (the page's own shortcut): the list says so.
    assert wizard.currentId() == PageId.BASE_IMAGE
    assert rows["Ctrl+O"] == "Open a base image (on the Base image page)"
    assert frame.open_recipe_action.shortcut().isEmpty()
    dialog.close()
    # Elsewhere Ctrl+O opens a recipe, and it is real.
    frame.close_flow()
    assert frame.open_recipe_action.shortcut().toString() == "Ctrl+O"
    frame.activateWindow()
    qtbot.waitActive(frame)
    qtbot.keyClick(frame.focusWidget() or frame, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: frame.open_dialog("open-recipe") is not None, timeout=3000)
    frame.open_dialog("open-recipe").reject()
    frame.menu_shortcut.activated.emit()  # F10
    qtbot.waitUntil(frame.file_menu.isVisible, timeout=3000)
    frame.file_menu.close()


def test_user_guide_opens_the_guide_or_says_it_is_missing(qtbot, frame, monkeypatch, tmp_path):
    missing = [tmp_path / "nowhere" / "user-guide.md"]
    monkeypatch.setattr(frame_module, "user_guide_candidates", lambda: missing)
    monkeypatch.setattr(frame_module, "user_guide_path", lambda: None)
    box = frame.show_user_guide()
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert "not installed" in box.text() and str(missing[0]) in box.informativeText()
    box.close()

    guide = tmp_path / "docs" / "user-guide.md"
    guide.parent.mkdir()
    guide.write_text("# Shieldwright user guide\n\nCreate a **template** first.\n")
    monkeypatch.setattr(frame_module, "user_guide_path", lambda: guide)
    window = frame.show_user_guide()
    assert window is frame.guide_window and window.isVisible()
    assert "Create a template first." in window.browser.toPlainText()


def test_diagnostics_bundle_the_log_and_versions_never_a_secret(qtbot, frame, small_disk, fast_kdf, tmp_path):
    wizard = open_template_on(qtbot, frame, small_disk)
    goto_encryption(qtbot, wizard)
    secret = bytes(wizard.state.encryption.passphrase)
    # A log line that (by some bug) holds the passphrase: the bundle must not carry it.
    frame.log_path.parent.mkdir(parents=True, exist_ok=True)
    frame.log_path.write_bytes(b"2026-01-01 INFO app: a line\n2026-01-01 DEBUG leaked " + secret + b"\n")
    frame.log_path.with_name("shieldwright.log.1").write_bytes(b"an older line\n")
    frame.diagnostics_action.trigger()
    dialog = frame.open_dialog("diagnostics")
    assert isinstance(dialog, QFileDialog) and dialog.selectedFiles()[0].endswith(".zip")
    out = tmp_path / "bundle.zip"
    with qtbot.waitSignal(frame.fileSaved, timeout=TASK_TIMEOUT_MS) as saved:
        dialog.fileSelected.emit(str(out))
    dialog.reject()
    assert saved.args == [out] and out.is_file()
    assert out.stat().st_mode & 0o077 == 0  # the user's paths are in the log: private
    with zipfile.ZipFile(out) as bundle:
        names = sorted(bundle.namelist())
        assert names == ["log/shieldwright.log", "log/shieldwright.log.1", "versions.txt"]
        data = {n: bundle.read(n) for n in names}
    assert f"PySide6: {pyside_version}".encode() in data["versions.txt"]
    assert b"systemd-stub: " in data["versions.txt"] and b"OpenSSL: " in data["versions.txt"]
    assert b"a line" in data["log/shieldwright.log"] and REDACTED in data["log/shieldwright.log"]
    for content in data.values():
        assert secret not in content
        for word in secret.split(b"-"):
            assert word not in content
    assert Settings().folder("diagnostics") == tmp_path


# -- settings ----------------------------------------------------------------------------------------------


def test_settings_live_in_the_xdg_config_dir_and_hold_no_secret(
    qtbot, frame, config_home, small_disk, signing_files, fast_kdf
):
    assert settings_path() == config_home / "shieldwright" / "shieldwright.conf"
    wizard = open_template_on(qtbot, frame, small_disk)
    assert frame.open_recipe_action.shortcut().isEmpty()  # the Base image page's Ctrl+O opens an image
    wizard.next()
    assert frame.open_recipe_action.shortcut().toString() == "Ctrl+O"  # elsewhere, a recipe
    certs = wizard.certificates_page
    certs.load(Role.UEFI, signing_files.cert, signing_files.key)
    qtbot.waitUntil(lambda: not certs.is_busy() and wizard.state.signing_ready, timeout=TASK_TIMEOUT_MS)
    goto_encryption(qtbot, wizard)
    frame.resize(1111, 777)
    frame.settings.sync()
    text = settings_path().read_bytes()
    assert str(signing_files.cert).encode() in text and str(small_disk.parent).encode() in text
    secret = bytes(wizard.state.encryption.passphrase)
    assert secret not in text and not any(w in text for w in secret.split(b"-"))
    assert set(Settings().keys()) <= {
        "certificates/uefi_cert", "certificates/uefi_key", "certificates/catalog_cert",
        "certificates/catalog_key", "folders/certificates", "folders/image", "folders/recipe",
        "folders/diagnostics", "recent/recipes", "window/geometry",
    }  # fmt: skip


def test_the_last_certificates_are_loaded_again_in_a_new_template(
    qtbot, frame, small_disk, signing_files, fast_kdf
):
    settings = Settings()
    settings.set_certificate("uefi", signing_files.cert, signing_files.key)
    wizard = open_template_on(qtbot, frame, small_disk)
    wizard.next()
    certs = wizard.certificates_page
    qtbot.waitUntil(lambda: not certs.is_busy() and wizard.state.signing_ready, timeout=TASK_TIMEOUT_MS)
    assert wizard.state.uefi_signing.cert_path == signing_files.cert
    assert certs.key_directory == signing_files.cert.parent


SECOND_INSTANCE = textwrap.dedent(
    """
    import json, sys
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path
    from app.gui.application import create_application
    from app.gui.frame import MainWindow
    from app.gui.start_page import Flow
    from app.gui.tasks import TaskRunner

    app = create_application()
    executor = ThreadPoolExecutor(1)
    runner = TaskRunner(executor, app)
    window = MainWindow(runner)
    if sys.argv[1] == "write":
        window.resize(777, 555)
        window.show()
        window.settings.add_recent_recipe(Path(sys.argv[2]))
        window.settings.set_folder("image", Path(sys.argv[3]))
        app.processEvents()
        window.close()
    else:
        window.show()
        app.processEvents()
        print(json.dumps({
            "size": [window.width(), window.height()],
            "recent": [str(p) for p in window.settings.recent_recipes()],
            "start_recent": [str(p) for p in window.start_page.recent()],
            "image_folder": str(window.settings.folder("image")),
        }))
        window.request_flow(Flow.TEMPLATE)
        app.processEvents()
        print(json.dumps({"open_starts_in": str(window.flow.base_image_page.image_directory)}))
        window.close()
    runner.shutdown()
    """
)


def test_settings_persist_across_two_app_instances(config_home, tmp_path):
    """Two real processes: the first resizes its window and records a recipe and a folder, then quits; the
    second finds them (temporary config dir)."""
    recipe = tmp_path / "recipes" / "web.recipe.toml"
    recipe.parent.mkdir()
    recipe.write_text("format_version = 2\n")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(config_home),
           "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": str(REPO)}  # fmt: skip
    script = tmp_path / "instance.py"
    script.write_text(SECOND_INSTANCE)
    run = [sys.executable, str(script)]
    first = subprocess.run(
        [*run, "write", str(recipe), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    assert (config_home / "shieldwright" / "shieldwright.conf").is_file()
    second = subprocess.run([*run, "read"], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    *_, shown, opened = second.stdout.strip().splitlines()
    seen = json.loads(shown)
    assert seen["size"] == [777, 555]
    assert seen["recent"] == [str(recipe)] and seen["start_recent"] == [str(recipe)]
    assert seen["image_folder"] == str(tmp_path)
    assert json.loads(opened)["open_starts_in"] == str(tmp_path)  # the Base image page's Open… starts there


def test_the_first_window_fits_the_screen(qtbot, runner, config_home):
    """Without a saved geometry the window opens at its default size, or the screen's free area if that is
    smaller (the offscreen screen is 800 wide, the default 1040)."""
    window = MainWindow(runner, Settings())
    qtbot.addWidget(window)
    window.show()
    free = window.screen().availableGeometry()
    assert free.width() < 1040  # what makes this test mean something
    assert window.width() <= free.width() and window.height() <= free.height()
    assert window.width() >= 780 and window.height() >= min(700, free.height() - 40)


def test_geometry_is_restored_and_recent_recipes_are_kept_in_order(qtbot, runner, config_home, tmp_path):
    settings = Settings()
    paths = [tmp_path / f"r{i}.toml" for i in range(10)]
    for p in paths:
        p.write_text("")
        settings.add_recent_recipe(p)
    assert settings.recent_recipes() == paths[::-1][:8]
    settings.add_recent_recipe(paths[5])
    assert settings.recent_recipes()[0] == paths[5] and len(settings.recent_recipes()) == 8
    first = MainWindow(runner, Settings())
    qtbot.addWidget(first)
    first.show()
    first.resize(760, 580)
    first.close()
    second = MainWindow(runner, Settings())
    qtbot.addWidget(second)
    # (the offscreen screen is 800 x 600: a window restored larger is fitted to it)
    assert (second.width(), second.height()) == (760, 580)
    second._fill_recent_menu()
    texts = [a.text() for a in second.recent_menu.actions() if not a.isSeparator()]
    assert texts[0] == "&1 r5.toml" and texts[-1] == "&Clear list"
    assert isinstance(Settings().window_geometry(), QByteArray)


def test_the_users_own_settings_file_is_never_touched(qtbot, runner, config_home, monkeypatch):
    real = Path(os.path.expanduser("~")) / ".config" / "shieldwright" / "shieldwright.conf"
    before = real.stat().st_mtime_ns if real.exists() else None
    window = MainWindow(runner)
    qtbot.addWidget(window)
    window.show()
    window.close()
    assert (real.stat().st_mtime_ns if real.exists() else None) == before
    assert (config_home / "shieldwright" / "shieldwright.conf").is_file()
