"""The Test boot dialog: a live console fed from the worker thread, the verdicts, Stop, and one real boot.

Most tests inject a boot function that writes console lines from the worker thread and returns a
:class:`TestBootResult` made of the engine's own types, so the table is the engine's ``check_rows`` of it.
The real test builds a template from the demo image with Debian's snakeoil keys (the project's build, as in
tests/measure/test_predict_boots.py), boots it through the PCR policy page on the snakeoil variable store,
and checks that the table says every PCR matches.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from app.boot import vm
from app.errors import CancelledError, ShieldwrightError
from app.gui.dialogs.test_boot import TestBootDialog
from app.gui.state import WizardState
from app.measure.testboot import STOPPED_AT_EXIT_BOOT_SERVICES, PcrCheck, TestBootResult
from app.template.recipe import PcrOptions
from wizard_pages.pcr_policy import PcrPolicyPage

TIMEOUT_MS = 20_000
PREDICTED = {n: hashlib.sha256(f"pcr {n}".encode()).hexdigest() for n in (4, 7, 11)}
OTHER = hashlib.sha256(b"another boot").hexdigest()
LINES = ['BdsDxe: loading Boot0001 "UEFI Misc Device"', "BdsDxe: starting Boot0001", "EFI stub: Booting"]


def result(measured: dict[int, str | None], *, reached: bool = True) -> TestBootResult:
    boot = vm.BootResult(
        "\n".join(LINES),
        "stop" if reached else "timeout",
        9.4,
        STOPPED_AT_EXIT_BOOT_SERVICES if reached else None,
    )
    checks = tuple(PcrCheck(n, PREDICTED[n], measured.get(n)) for n in (4, 7, 11))
    prediction: Any = SimpleNamespace(chain=SimpleNamespace(notes=("firmware boots the UKI directly",)))
    return TestBootResult(prediction, "sha256", checks, boot, "variable store /x/vars.fd", "kvm", reached)


class ScriptedBoot:
    """A boot function: writes LINES to the console from the worker thread (one at a time, waiting for the
    test to let it go on after the first), then returns ``outcome`` — or, when cancelled, stops like the
    engine does (CancelledError)."""

    def __init__(self, outcome: TestBootResult | BaseException) -> None:
        self.outcome = outcome
        self.go_on = threading.Event()
        self.threads: list[str] = []
        self.kwargs: dict[str, Any] = {}
        self.cancelled = threading.Event()

    def __call__(self, template: Path, *, on_console, cancel, **kwargs: Any) -> TestBootResult:
        self.kwargs = {"template": template, **kwargs}
        self.threads.append(threading.current_thread().name)
        on_console(LINES[0] + "\n")
        deadline = time.monotonic() + 15
        while not self.go_on.is_set() and time.monotonic() < deadline:
            if cancel.cancelled:
                self.cancelled.set()
                raise CancelledError()
            time.sleep(0.01)
        on_console("".join(line + "\n" for line in LINES[1:]))
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def open_dialog(qtbot, runner, boot: ScriptedBoot, **kwargs: Any) -> TestBootDialog:
    dialog = TestBootDialog(runner, Path("/templates/web.raw"), boot=boot, **kwargs)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.start()
    return dialog


def test_the_console_fills_live_and_the_table_shows_the_verdicts(qtbot, runner):
    boot = ScriptedBoot(result(dict(PREDICTED)))
    dialog = open_dialog(qtbot, runner, boot, firmware_vars=Path("/x/vars.fd"))
    assert not dialog.isModal() and QApplication.activeModalWidget() is None
    # The first line arrives while the boot still runs (from the worker thread, drained at 10 Hz).
    qtbot.waitUntil(lambda: LINES[0] in dialog.console_text(), timeout=TIMEOUT_MS)
    assert dialog.is_running() and dialog.stop_button.isEnabled()
    assert dialog.status_label.text().startswith("Booting")
    assert [r[3] for r in dialog.table_rows()] == ["not read yet"] * 3  # the table's place is kept
    assert boot.threads and boot.threads[0] != threading.current_thread().name

    with qtbot.waitSignal(dialog.bootFinished, timeout=TIMEOUT_MS):
        boot.go_on.set()
    assert dialog.console_text().splitlines() == LINES
    assert dialog.table_rows() == [(str(n), PREDICTED[n], PREDICTED[n], "match") for n in (4, 7, 11)]
    assert dialog.verdict_label.text().startswith("✓ Match")
    assert "Chain: firmware boots the UKI directly" in dialog.firmware_label.text()
    assert "ExitBootServices" in dialog.status_label.text() and "9.4 s" in dialog.status_label.text()
    assert (
        "variable store /x/vars.fd" in dialog.firmware_label.text() and "kvm" in dialog.firmware_label.text()
    )
    assert not dialog.stop_button.isEnabled() and not dialog.is_running()
    assert boot.kwargs["firmware_vars"] == Path("/x/vars.fd") and boot.kwargs["bank"] == "sha256"


def test_a_differing_pcr_and_a_boot_that_never_got_there(qtbot, runner):
    boot = ScriptedBoot(result({4: PREDICTED[4], 7: OTHER, 11: PREDICTED[11]}))
    boot.go_on.set()
    dialog = open_dialog(qtbot, runner, boot)
    # Before the result (it arrives through the event loop): which firmware the default boot uses.
    assert "Microsoft's keys" in dialog.firmware_label.text()
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=TIMEOUT_MS)
    assert [r[3] for r in dialog.table_rows()] == ["match", "DIFFERS", "match"]
    assert dialog.table_rows()[1][2] == OTHER
    assert dialog.verdict_label.text().startswith("✗ Mismatch")
    assert dialog.firmware_label.text().startswith("Firmware: OVMF Secure Boot, variable store /x/vars.fd")

    timeout = ScriptedBoot(result({}, reached=False))
    timeout.go_on.set()
    dialog = open_dialog(qtbot, runner, timeout)
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=TIMEOUT_MS)
    assert [r[3] for r in dialog.table_rows()] == ["not read"] * 3
    assert dialog.status_label.text() == "Problem: the boot did not reach ExitBootServices within 9 s"
    assert dialog.verdict_label.text().startswith("✗ No verdict")


def test_stop_cancels_the_boot(qtbot, runner):
    boot = ScriptedBoot(result(dict(PREDICTED)))
    dialog = open_dialog(qtbot, runner, boot)
    qtbot.waitUntil(lambda: LINES[0] in dialog.console_text(), timeout=TIMEOUT_MS)
    with qtbot.waitSignal(dialog.bootFinished, timeout=TIMEOUT_MS):
        qtbot.mouseClick(dialog.stop_button, Qt.MouseButton.LeftButton)
        assert dialog.status_label.text().startswith("Stopping")
    assert boot.cancelled.is_set() and isinstance(dialog.error, CancelledError)
    assert dialog.status_label.text().startswith("Stopped: the test boot was cancelled")
    assert dialog.boot_result is None and not dialog.error_panel.isVisible()
    assert [r[3] for r in dialog.table_rows()] == ["not read yet"] * 3


def test_closing_while_booting_stops_the_boot(qtbot, runner):
    boot = ScriptedBoot(result(dict(PREDICTED)))
    dialog = open_dialog(qtbot, runner, boot)
    qtbot.waitUntil(lambda: LINES[0] in dialog.console_text(), timeout=TIMEOUT_MS)
    with qtbot.waitSignal(dialog.bootFinished, timeout=TIMEOUT_MS):
        dialog.close()
    assert boot.cancelled.is_set() and not dialog.isVisible()


def test_an_engine_error_is_shown_inline(qtbot, runner):
    refusal = ShieldwrightError(
        "the UKI \\EFI\\BOOT\\BOOTX64.EFI carries no signature that verifies",
        "sign it, or give --firmware-vars",
    )
    boot = ScriptedBoot(refusal)
    boot.go_on.set()
    dialog = open_dialog(qtbot, runner, boot)
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=TIMEOUT_MS)
    assert dialog.error_panel.isVisible()
    assert dialog.error_panel.message_label.text().startswith("The UKI \\EFI\\BOOT\\BOOTX64.EFI carries")
    assert dialog.status_label.text() == "The test boot could not run."


# -- one real boot ------------------------------------------------------------------------------------


@pytest.mark.vm
@pytest.mark.slow
def test_a_real_test_boot_matches_the_prediction(qtbot, runner, demo_image, tmp_path):
    from tests.build_helpers import build, make_keys, make_recipe

    keys = make_keys(tmp_path)
    recipe = make_recipe(demo_image, tmp_path / "template.raw", keys, install_removable=True)
    template = build(recipe, keys).output

    state = WizardState()
    state.pcr = PcrOptions(firmware_vars=vm.Firmware.snakeoil().vars_template)
    page = PcrPolicyPage(state, runner)
    qtbot.addWidget(page)
    dialog = page.start_test_boot(template)
    assert dialog.isVisible() and not dialog.isModal()
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=300_000)
    result = dialog.boot_result
    assert result is not None, dialog.status_label.text() + dialog.error_panel.message_label.text()
    rows = dialog.table_rows()
    assert [r[0] for r in rows] == ["4", "7", "11"]
    assert all(r[3].startswith("match") for r in rows), (rows, dialog.console_text()[-2000:])
    assert all(r[1] == r[2] or r[0] == "11" for r in rows)
    assert dialog.verdict_label.text().startswith("✓ Match")
    assert "ExitBootServices" in dialog.status_label.text()
    assert str(vm.Firmware.snakeoil().vars_template) in dialog.firmware_label.text()
    assert "BdsDxe" in dialog.console_text()  # the firmware's own lines, live from the serial console
