"""The PCR policy page on the demo base image, with a UKI built for it and signed with Debian's snakeoil key.

Expected values come from the engine's public functions on the same inputs (``predict_planned``, the
profile loader's error), and from independent oracles: the UKI's sections as ``pefile`` reads them (their
names and SHA-256), hashlib for the fixed firmware events and the PCR replay, the PCR 7 value the captured
real boot on the same variable store measured (``tests/data/eventlogs/ovmf-snakeoil-uki.json``), and the
captured log's events as ``tpm2_eventlog`` (tpm2-tools) decodes them. The page is graded on showing them
faithfully and on its behaviour (profile choice, Next, comparison, Test boot).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pefile
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWizard

from app.boot import vm
from app.disk.layout import inspect_image
from app.disk.model import DiskLayout
from app.errors import ShieldwrightError
from app.gui.state import OutputChoice, WizardState
from app.gui.wizard import PageId
from app.measure.profile import load_profile
from app.progress import CancelToken
from app.signing.keys import load_signer
from app.template.build.boot import preview_uki
from app.template.pcr_policy import PCR_MEANINGS, predict_planned
from app.template.recipe import OutputOptions, UkiOptions
from tests.conftest import run
from wizard_pages.pcr_policy import LOG_DIALOG, PROFILE_DIALOG, TEMPLATE_DIALOG, PcrPolicyPage

TIMEOUT_MS = 60_000
SNAKEOIL_VARS = vm.Firmware.snakeoil().vars_template
INSECURE_VARS = vm.Firmware.insecure().vars_template
EVENTLOGS = Path(__file__).resolve().parents[1] / "data" / "eventlogs"
SNAKEOIL_LOG = EVENTLOGS / "ovmf-snakeoil-uki.bin"


# -- fixtures and helpers ---------------------------------------------------------------------------


def demo_with_uki(demo_image: Path) -> tuple[Path, DiskLayout, bytes]:
    """The demo image, its layout, and a UKI of its newest kernel signed with the snakeoil key."""
    layout = inspect_image(demo_image)
    signer = load_signer(vm.SNAKEOIL_CERT, vm.SNAKEOIL_KEY, vm.SNAKEOIL_PASSPHRASE)
    built = preview_uki(UkiOptions(), demo_image, layout, signer, cancel=CancelToken()).built
    return demo_image, layout, built.data


@pytest.fixture(scope="module")
def demo(demo_image: Path) -> tuple[Path, DiskLayout, bytes]:
    return demo_with_uki(demo_image)


def make_state(demo: tuple[Path, DiskLayout, bytes], *, removable: bool = True) -> WizardState:
    image, layout, uki = demo
    state = WizardState()
    state.set_image(image, layout)
    state.uki.set_built(uki, None)
    state.boot.install_removable = removable  # the demo ESP boots systemd-boot: firmware must find the UKI
    return state


def wait_predicted(qtbot, page: PcrPolicyPage) -> None:
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TIMEOUT_MS)


def enter(qtbot, page: PcrPolicyPage) -> None:
    """What QWizard does when the page is shown; then wait for the prediction."""
    page.initializePage()
    wait_predicted(qtbot, page)


@pytest.fixture
def page(qtbot, runner, demo) -> PcrPolicyPage:
    p = PcrPolicyPage(make_state(demo), runner)
    qtbot.addWidget(p)
    p.resize(780, 520)
    p.show()
    enter(qtbot, p)
    return p


def choose_profile(qtbot, page: PcrPolicyPage, kind: str, path: Path) -> None:
    """Pick ``kind`` in the combo and ``path`` in the file dialog it opens, as a user does."""
    combo = page.profile_combo
    combo.setCurrentIndex(combo.findData(kind))
    combo.activated.emit(combo.currentIndex())
    dialog = page.open_dialog(PROFILE_DIALOG)
    if dialog is None:  # the file chosen before for this kind was taken again: choose another with Choose…
        wait_predicted(qtbot, page)
        qtbot.mouseClick(page.choose_button, Qt.MouseButton.LeftButton)
        dialog = page.open_dialog(PROFILE_DIALOG)
    assert dialog is not None and dialog.isVisible()  # open(), not exec(): we got here
    dialog.selectFile(str(path))
    with qtbot.waitSignal(page.predictionFinished, timeout=TIMEOUT_MS):
        dialog.accept()
    qtbot.waitUntil(lambda: page.open_dialog(PROFILE_DIALOG) is None)
    wait_predicted(qtbot, page)


def choose_none(qtbot, page: PcrPolicyPage) -> None:
    combo = page.profile_combo
    combo.setCurrentIndex(combo.findData(None))
    with qtbot.waitSignal(page.predictionFinished, timeout=TIMEOUT_MS):
        combo.activated.emit(combo.currentIndex())
    wait_predicted(qtbot, page)


def engine(page: PcrPolicyPage, demo: tuple[Path, DiskLayout, bytes]):
    image, layout, uki = demo
    state = page.state
    return predict_planned(image, layout, state.boot, "shieldwright", uki, state.pcr)


def rows(page: PcrPolicyPage, pcr: int) -> list[tuple[str, str, str, str, str]]:
    return page.tree.event_texts(pcr)


def pcr_value(page: PcrPolicyPage, pcr: int) -> str:
    item = page.tree.pcr_item(pcr)
    assert item is not None
    return str(item.data(2, Qt.ItemDataRole.UserRole) or item.text(2))


def uki_sections(uki: bytes) -> dict[str, bytes]:
    """Section name → contents (VirtualSize bytes), read by pefile, not by our PE reader."""
    pe = pefile.PE(data=uki, fast_load=True)
    out = {}
    for s in pe.sections:
        name = s.Name.rstrip(b"\0").decode()
        out[name] = s.get_data()[: s.Misc_VirtualSize]
    pe.close()
    return out


def replay_sha256(digests: list[str]) -> str:
    value = bytes(32)
    for d in digests:
        value = hashlib.sha256(value + bytes.fromhex(d)).digest()
    return value.hex()


def tpm2_eventlog_events(log: Path) -> list[tuple[int, str, str]]:
    """(PCR, event type, sha256 digest) of every event, as tpm2-tools decodes the log."""
    text = run("tpm2_eventlog", log).stdout.split("\npcrs:", 1)[0]
    out = []
    for block in text.split("\n- EventNum:")[1:]:
        pcr = re.search(r"PCRIndex: (\d+)", block)
        kind = re.search(r"EventType: (\w+)", block)
        digest = re.search(r"AlgorithmId: sha256\n\s+Digest: \"([0-9a-f]+)\"", block)
        if pcr and kind and digest:
            out.append((int(pcr.group(1)), kind.group(1), digest.group(1)))
    return out


# -- in the wizard ----------------------------------------------------------------------------------


def test_the_page_sits_between_boot_image_and_encryption(qtbot, wizard):
    ids = wizard.pageIds()
    assert ids == sorted(ids) and PageId.PCR_POLICY in ids
    page = wizard.page(PageId.PCR_POLICY)
    assert page is wizard.pcr_policy_page and page.title() == "PCR policy"
    assert wizard.page(PageId.BOOT_IMAGE).nextId() == PageId.PCR_POLICY
    assert page.nextId() == PageId.ENCRYPTION
    wizard.setCurrentId(PageId.PCR_POLICY)
    assert "▸ PCR policy" in wizard.steps.labels[PageId.PCR_POLICY].text()
    # Reached without a base image or a UKI: say so where the user looks, and no Next.
    assert page.error_panel.isVisible()
    assert "base image" in page.error_panel.message_label.text().lower()
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()


def test_without_a_uki_the_page_says_where_to_build_it(qtbot, runner, demo):
    state = make_state(demo)
    state.uki.set_built(None)
    page = PcrPolicyPage(state, runner)
    qtbot.addWidget(page)
    page.show()
    enter(qtbot, page)
    assert page.error_panel.isVisible()
    assert "No UKI has been built yet" in page.error_panel.message_label.text()
    assert "Boot image page" in page.error_panel.hint_label.text()
    assert page.prediction() is None and not page.isComplete()


# -- profile choice ---------------------------------------------------------------------------------


def test_none_predicts_pcr_11_only_and_allows_next(qtbot, page, demo):
    assert page.state.pcr.firmware is None and page.profile_combo.currentData() is None
    assert page.tree.pcrs() == [4, 7, 11]  # every PCR is explained, predicted or not
    for pcr in (4, 7):
        assert rows(page, pcr) == []
        assert pcr_value(page, pcr) == "needs a firmware profile"
    expected = engine(page, demo)
    assert expected.predicted_pcrs == (11,)
    assert pcr_value(page, 11) == expected.pcrs["sha256"][11]
    assert [r[:4] for r in rows(page, 11)] == [
        (e.type_name, e.description, e.digest_hex("sha256"), e.source) for e in expected.events
    ]
    assert "only PCR 11" in page.chain_label.text()
    assert page.isComplete() and not page.error_panel.isVisible()


def test_choosing_a_variable_store_adds_pcr_4_and_7(qtbot, page, demo):
    choose_profile(qtbot, page, "vars", SNAKEOIL_VARS)
    pcr = page.state.pcr
    assert pcr.firmware_vars == SNAKEOIL_VARS and pcr.firmware_log is None and pcr.firmware_certs is None
    assert page.path_label.full_text() == str(SNAKEOIL_VARS)
    assert [r[0] for r in rows(page, 4)][:2] == ["EV_EFI_ACTION", "EV_SEPARATOR"]
    assert [r[0] for r in rows(page, 7)][-2:] == ["EV_SEPARATOR", "EV_EFI_VARIABLE_AUTHORITY"]
    assert page.isComplete() and not page.error_panel.isVisible()
    assert str(SNAKEOIL_VARS) in page.chain_label.text()

    # Back to None: PCR 11 only, and the recipe has no firmware profile.
    choose_none(qtbot, page)
    assert page.state.pcr.firmware is None
    assert rows(page, 4) == [] and rows(page, 7) == [] and rows(page, 11)
    # Choosing the store again takes the file chosen before, without asking.
    combo = page.profile_combo
    combo.setCurrentIndex(combo.findData("vars"))
    with qtbot.waitSignal(page.predictionFinished, timeout=TIMEOUT_MS):
        combo.activated.emit(combo.currentIndex())
    assert page.open_dialog(PROFILE_DIALOG) is None and page.state.pcr.firmware_vars == SNAKEOIL_VARS


def test_closing_the_file_dialog_keeps_the_profile(qtbot, page):
    combo = page.profile_combo
    combo.setCurrentIndex(combo.findData("log"))
    combo.activated.emit(combo.currentIndex())
    dialog = page.open_dialog(PROFILE_DIALOG)
    assert dialog is not None and "*.bin" in " ".join(dialog.nameFilters())
    dialog.reject()
    qtbot.waitUntil(lambda: page.open_dialog(PROFILE_DIALOG) is None)
    assert page.state.pcr.firmware is None and combo.currentData() is None


def test_a_certificate_folder_is_chosen_as_a_folder(qtbot, page, tmp_path):
    keys = tmp_path / "target-keys"
    keys.mkdir()
    for name in ("PK", "KEK", "db"):  # the snakeoil store's keys, as files
        (keys / f"{name}.pem").write_bytes(vm.SNAKEOIL_CERT.read_bytes())
    combo = page.profile_combo
    combo.setCurrentIndex(combo.findData("certs"))
    combo.activated.emit(combo.currentIndex())
    dialog = page.open_dialog(PROFILE_DIALOG)
    assert dialog is not None and dialog.fileMode() == dialog.FileMode.Directory
    dialog.setDirectory(str(tmp_path))
    dialog.selectFile(str(keys))
    with qtbot.waitSignal(page.predictionFinished, timeout=TIMEOUT_MS):
        dialog.accept()
    wait_predicted(qtbot, page)
    assert page.state.pcr.firmware_certs == keys and page.state.pcr.firmware_vars is None
    assert not page.error_panel.isVisible() and page.isComplete()
    assert [r[0] for r in rows(page, 7)][-1] == "EV_EFI_VARIABLE_AUTHORITY" and "SnakeOil" in rows(page, 7)[
        -1
    ][1]


def test_a_store_without_secure_boot_is_refused_inline_and_blocks_next(qtbot, wizard, demo):
    image, layout, uki = demo
    state = wizard.state
    state.set_image(image, layout)
    state.uki.set_built(uki, None)
    state.boot.install_removable = True
    wizard.setCurrentId(PageId.PCR_POLICY)
    page = wizard.pcr_policy_page
    wait_predicted(qtbot, page)
    next_button = wizard.button(QWizard.WizardButton.NextButton)
    assert next_button.isEnabled()  # None: PCR 11 only

    choose_profile(qtbot, page, "vars", INSECURE_VARS)
    with pytest.raises(ShieldwrightError) as refused:
        load_profile("vars", INSECURE_VARS)
    message = page.error_panel.message_label.text()
    assert page.error_panel.isVisible() and message.lower() == refused.value.message.lower()
    assert page.error_panel.hint_label.text().lower() == refused.value.hint.lower()
    assert page.prediction() is None and not next_button.isEnabled()
    assert pcr_value(page, 4) == "not predicted"

    choose_profile(qtbot, page, "vars", SNAKEOIL_VARS)
    assert not page.error_panel.isVisible() and next_button.isEnabled()


def test_a_chain_firmware_cannot_predict_is_refused(qtbot, runner, demo):
    """Without the UKI at the removable path the demo ESP boots systemd-boot, whose choice no one predicts."""
    page = PcrPolicyPage(make_state(demo, removable=False), runner)
    qtbot.addWidget(page)
    page.show()
    enter(qtbot, page)
    assert page.isComplete()  # PCR 11 needs no chain
    choose_profile(qtbot, page, "vars", SNAKEOIL_VARS)
    assert page.error_panel.isVisible() and "systemd-boot" in page.error_panel.message_label.text()
    assert not page.isComplete()
    with qtbot.waitSignal(page.predictionFinished, timeout=TIMEOUT_MS):
        page.removable_check.setChecked(True)
    wait_predicted(qtbot, page)
    assert page.state.boot.install_removable and page.isComplete() and not page.error_panel.isVisible()


# -- the event tree for the demo template -----------------------------------------------------------


def test_event_tree_of_the_demo_template(qtbot, page, demo):
    choose_profile(qtbot, page, "vars", SNAKEOIL_VARS)
    expected = engine(page, demo)
    assert expected.predicted_pcrs == (4, 7, 11)
    for pcr in (4, 7, 11):
        events = [e for e in expected.events if e.pcr == pcr]
        assert [r[:4] for r in rows(page, pcr)] == [
            (e.type_name, e.description, e.digest_hex("sha256"), e.source) for e in events
        ]
        # The value shown is the engine's, and what the shown digests replay to.
        assert (
            pcr_value(page, pcr)
            == expected.pcrs["sha256"][pcr]
            == replay_sha256([r[2] for r in rows(page, pcr)])
        )
        name = PCR_MEANINGS[pcr][0]
        assert name in page.tree.pcr_item(pcr).text(0)

    # PCR 11: each measured section's name, then its contents, in the stub's order (DESIGN.md).
    sections = uki_sections(demo[2])
    pcr11 = rows(page, 11)
    names = [r[1] for r in pcr11[1::2]]
    assert [r[1] for r in pcr11[::2]] == [f"{n} (name)" for n in names]
    assert all(n in sections for n in names)
    core = [n for n in names if n in (".linux", ".osrel", ".cmdline", ".initrd")]
    assert core == [".linux", ".osrel", ".cmdline", ".initrd"]
    for name, contents in zip(pcr11[::2], pcr11[1::2], strict=True):
        assert name[0] == contents[0] == "EV_IPL"
        assert name[2] == hashlib.sha256(contents[1].encode() + b"\0").hexdigest()
        assert contents[2] == hashlib.sha256(sections[contents[1]]).hexdigest()

    # PCR 4: the boot option action, the separator, the UKI firmware starts at the removable path.
    pcr4 = rows(page, 4)
    assert [r[0] for r in pcr4] == ["EV_EFI_ACTION", "EV_SEPARATOR", "EV_EFI_BOOT_SERVICES_APPLICATION"]
    assert pcr4[0][2] == hashlib.sha256(b"Calling EFI Application from Boot Option").hexdigest()
    assert pcr4[1][2] == hashlib.sha256(bytes(4)).hexdigest()
    assert "\\EFI\\BOOT\\BOOTX64.EFI" in pcr4[2][1]

    # PCR 7: the Secure Boot variables, the separator, the db entry that admits the UKI.
    pcr7 = rows(page, 7)
    assert [r[:2] for r in pcr7[:5]] == [("EV_EFI_VARIABLE_DRIVER_CONFIG", v)
                                         for v in ("SecureBoot", "PK", "KEK", "db", "dbx")]  # fmt: skip
    assert pcr7[5][0] == "EV_SEPARATOR" and pcr7[6][0] == "EV_EFI_VARIABLE_AUTHORITY"
    assert "SnakeOil" in pcr7[6][1]
    # A real boot on this store of a UKI with this signer measured exactly this PCR 7.
    measured = json.loads((EVENTLOGS / "ovmf-snakeoil-uki.json").read_text())
    assert pcr_value(page, 7) == measured["sha256"]["7"]

    # The value is copyable in full.
    page.tree.setCurrentItem(page.tree.pcr_item(11))
    page.tree.setFocus()
    qtbot.keyClick(page.tree, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QGuiApplication.clipboard().text() == expected.pcrs["sha256"][11]


def test_another_bank_is_predicted_in_that_bank(qtbot, page, demo):
    choose_profile(qtbot, page, "vars", SNAKEOIL_VARS)
    with qtbot.waitSignal(page.predictionFinished, timeout=TIMEOUT_MS):
        page.bank_combo.setCurrentIndex(page.bank_combo.findData("sha1"))
    wait_predicted(qtbot, page)
    assert page.state.pcr.bank == "sha1"
    expected = engine(page, demo)
    assert pcr_value(page, 7) == expected.pcrs["sha1"][7] and len(pcr_value(page, 7)) == 40
    assert "SHA-1" in page.tree.headerItem().text(2)


def test_pcrs_left_out_of_the_policy_are_still_explained(qtbot, page):
    checks = page.checklist.checks
    assert set(checks) == set(PCR_MEANINGS) and page.state.pcr.pcrs == [4, 7, 11]
    checks[7].click()
    assert page.state.pcr.pcrs == [4, 11]
    item = page.tree.pcr_item(7)
    assert item is not None and item.text(1) == "not in the policy" and page.isComplete()
    for check in (checks[4], checks[11]):
        check.click()
    assert page.state.pcr.pcrs == [] and not page.isComplete()
    assert "no PCRs given" in page.chain_label.text()  # the recipe check's words
    checks[11].click()
    assert page.state.pcr.pcrs == [11] and page.isComplete()


# -- compare with an event log ----------------------------------------------------------------------


def test_compare_with_a_log_marks_the_changed_events(qtbot, page, demo):
    """The captured log booted another UKI (the probe's) on the same snakeoil store with the same signer."""
    choose_profile(qtbot, page, "vars", SNAKEOIL_VARS)
    qtbot.mouseClick(page.compare_button, Qt.MouseButton.LeftButton)
    dialog = page.open_dialog(LOG_DIALOG)
    assert dialog is not None and dialog.isVisible()
    dialog.selectFile(str(SNAKEOIL_LOG))
    with qtbot.waitSignal(page.comparisonFinished, timeout=TIMEOUT_MS):
        dialog.accept()
    assert not page.error_panel.isVisible()

    status = {pcr: [r[4] for r in rows(page, pcr)] for pcr in (4, 7, 11)}
    assert status[7] == ["matches"] * 7  # same store, same signer: every firmware event and the separator
    assert status[4] == ["matches", "matches", "differs"]  # the action and separator; another UKI
    assert [r[0] for r in rows(page, 4)][2] == "EV_EFI_BOOT_SERVICES_APPLICATION"
    # PCR 11: the section names match; a section's contents match exactly when tpm2-tools found its
    # digest in the log's PCR 11 (the probe UKI's os-release, command line and initrd are not the demo's).
    logged = {d for pcr, _type, d in tpm2_eventlog_events(SNAKEOIL_LOG) if pcr == 11}
    sections = uki_sections(demo[2])
    pcr11 = rows(page, 11)
    for name_row, contents_row in zip(pcr11[::2], pcr11[1::2], strict=True):
        assert name_row[4] == "matches"
        same = hashlib.sha256(sections[contents_row[1]]).hexdigest() in logged
        assert contents_row[4] == ("matches" if same else "differs"), contents_row
    changed = [r[1] for r in pcr11[1::2] if r[4] == "differs"]
    assert {".osrel", ".cmdline", ".initrd"} <= set(changed)

    summary = page.summary_label.text()
    assert "ovmf-snakeoil-uki.bin" in summary
    assert "PCR 4 differs: 1 event; PCR 7 matches; " in summary
    assert f"PCR 11 differs: {len(changed)} events" in summary
    assert page.tree.pcr_item(7).text(4) == "matches" and page.tree.pcr_item(4).text(4) == "differs"

    # Another bank is another prediction: the comparison is dropped, not shown against it.
    with qtbot.waitSignal(page.predictionFinished, timeout=TIMEOUT_MS):
        page.bank_combo.setCurrentIndex(page.bank_combo.findData("sha1"))
    wait_predicted(qtbot, page)
    assert page.comparison() is None and all(r[4] == "" for r in rows(page, 4))
    assert "ovmf-snakeoil-uki.bin" not in page.summary_label.text()


def test_an_unreadable_log_is_an_inline_error(qtbot, page, tmp_path):
    bad = tmp_path / "log.bin"
    bad.write_bytes(b"not an event log" * 10)
    with qtbot.waitSignal(page.comparisonFinished, timeout=TIMEOUT_MS):
        page.compare_with(bad)
    assert page.error_panel.isVisible() and page.comparison() is None
    assert page.isComplete()  # the prediction stands; only the comparison failed


# -- test boot --------------------------------------------------------------------------------------


class FakeBoot:
    """Stands in for run_test_boot: records its arguments, then fails (this page test boots nothing)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, template: Path, **kwargs: Any) -> Any:
        self.calls.append({"template": template, **kwargs})
        raise ShieldwrightError("not booted in this test")


def test_test_boot_boots_the_review_output_on_the_chosen_store(qtbot, runner, demo, tmp_path):
    fake = FakeBoot()
    state = make_state(demo)
    template = tmp_path / "template.raw"
    template.write_bytes(b"\0" * 4096)
    state.output = OutputChoice(OutputOptions(template, "raw"))
    page = PcrPolicyPage(state, runner, test_boot=fake)
    qtbot.addWidget(page)
    page.show()
    enter(qtbot, page)
    choose_profile(qtbot, page, "vars", SNAKEOIL_VARS)

    qtbot.mouseClick(page.test_boot_button, Qt.MouseButton.LeftButton)
    chooser = page.open_dialog(TEMPLATE_DIALOG)
    assert chooser is not None and Path(chooser.selectedFiles()[0]) == template  # the Review page's output
    chooser.accept()
    qtbot.waitUntil(lambda: page.test_boot_dialog is not None, timeout=TIMEOUT_MS)
    dialog = page.test_boot_dialog
    assert dialog is not None and dialog.isVisible() and not dialog.isModal()
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=TIMEOUT_MS)
    assert fake.calls[0]["template"] == template
    assert fake.calls[0]["firmware_vars"] == SNAKEOIL_VARS and fake.calls[0]["bank"] == "sha256"
    assert str(SNAKEOIL_VARS) in dialog.firmware_label.text()
    assert dialog.error_panel.isVisible()
    dialog.close()

    # An event log cannot be booted: the test boot's own firmware, and the dialog says which.
    choose_profile(qtbot, page, "log", SNAKEOIL_LOG)
    dialog = page.start_test_boot(template)
    qtbot.waitUntil(lambda: not dialog.is_running(), timeout=TIMEOUT_MS)
    assert fake.calls[1]["firmware_vars"] is None
    assert (
        "Microsoft" in dialog.firmware_label.text() and "not a variable store" in dialog.firmware_label.text()
    )
    dialog.close()
