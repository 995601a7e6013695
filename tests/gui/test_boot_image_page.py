"""The Boot image page against the real UKI engine and the demo base image.

Expected values come from the engine's own public functions run on the bytes the page built
(``inspect_uki``, ``predict_pcr11``) and from ``cryptography`` for the certificate thumbprint; the page
is graded on showing them faithfully and on its behaviour (validity, warnings, errors).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication

from app.boot.pcr import predict_pcr11
from app.boot.sources import BootFile
from app.boot.uki import UkiInputs, build_uki, inspect_uki
from app.disk.model import Role
from app.errors import ShieldwrightError
from app.gui.models.uki_sections_model import Column
from app.gui.state import CatalogChoice, SigningChoice
from app.gui.wizard import PageId
from app.signing import keys
from app.signing.authenticode import list_signatures
from app.signing.certificates import describe_certificate
from app.signing.signer import KeySigner
from app.template.build.boot import ref_of
from app.template.recipe import CatalogOptions
from app.template.recipe_file import recipe_to_dict
from tests.gui.conftest import advance_button, open_and_wait
from wizard_pages.boot_image import BootImagePage

TASK_TIMEOUT_MS = 60_000


# -- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, KeySigner]:
    """A generated UEFI signing certificate and key (files, as the Certificates page would record)."""
    d = tmp_path_factory.mktemp("signing")
    key = keys.generate_key("rsa2048")
    cert = keys.generate_self_signed(key, common_name="Boot page test UEFI", organization="Test Org", days=30)
    cert_path = keys.write_certificate(cert, d / "uefi.crt")
    key_path = keys.write_private_key(key, d / "uefi.key")
    return cert_path, key_path, KeySigner(key, cert)


def use_signer(wizard, signing) -> KeySigner:
    cert_path, key_path, signer = signing
    info = describe_certificate(signer.certificate, purpose="uefi")
    wizard.state.uefi_signing = SigningChoice(cert_path, key_path, signer, info)
    return signer


def show_page(qtbot, wizard, demo_image: Path) -> BootImagePage:
    """Open the demo image, then go to the Boot image page and wait for its kernel scan."""
    open_and_wait(qtbot, wizard, demo_image)
    wizard.next()
    assert wizard.currentId() == PageId.CERTIFICATES
    wizard.setCurrentId(PageId.BOOT_IMAGE)  # initializes the page like Next does
    page = wizard.boot_image_page
    assert wizard.currentPage() is page and page.isVisible()
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TASK_TIMEOUT_MS)
    return page


@pytest.fixture
def page(qtbot, wizard, demo_image, signing) -> BootImagePage:
    use_signer(wizard, signing)
    return show_page(qtbot, wizard, demo_image)


def build_and_wait(qtbot, page: BootImagePage) -> None:
    assert page.build_button.isEnabled()
    with qtbot.waitSignal(page.buildFinished, timeout=TASK_TIMEOUT_MS):
        qtbot.mouseClick(page.build_button, Qt.MouseButton.LeftButton)
    assert not page.is_busy()


def section_rows(page: BootImagePage) -> dict[str, tuple[int, int, str]]:
    model = page.sections_model
    return {
        model.index(r, Column.NAME).data(): (
            model.index(r, Column.VIRTUAL_SIZE).data(Qt.ItemDataRole.UserRole),
            model.index(r, Column.RAW_SIZE).data(Qt.ItemDataRole.UserRole),
            model.index(r, Column.SHA256).data(Qt.ItemDataRole.UserRole),
        )
        for r in range(model.rowCount())
    }


def sha256_hex(value: str | bytes) -> str:
    return value.hex() if isinstance(value, bytes) else value.lower()


def type_cmdline(qtbot, page: BootImagePage, text: str) -> None:
    edit = page.cmdline_edit
    edit.setFocus()
    edit.moveCursor(edit.textCursor().MoveOperation.End)
    qtbot.keyClicks(edit, text)


# -- the page ---------------------------------------------------------------------------------------


def test_lists_the_demo_kernel_from_the_xbootldr(qtbot, wizard, page):
    layout = wizard.state.layout
    xbootldr = next(p.number for p in layout.partitions if p.role is Role.XBOOTLDR)
    assert page.title() == "Boot image"
    assert "PCR 11" in page.subTitle() and "Secure Boot" in page.subTitle()
    assert "▸ Boot image" in wizard.steps.labels[PageId.BOOT_IMAGE].text()
    assert list(wizard.steps.labels).index(PageId.BOOT_IMAGE) == 2  # right after Certificates

    box = page.source_box
    assert box.image_radio.isChecked() and box.image_panel.isVisible()
    assert box.kernel_combo.count() >= 1
    entry = box.kernel_combo.currentData()
    assert entry.kernel.partition_number == xbootldr
    assert entry.kernel.path.endswith("/linux") and entry.version
    assert entry.version in box.kernel_combo.currentText()
    assert [f.path.rpartition("/")[2] for f in entry.initrds] == ["initrd"]
    assert entry.initrds[0].path.rpartition("/")[0] == entry.kernel.path.rpartition("/")[0]
    assert not page.error_panel.isVisible()
    options = wizard.state.uki.options
    assert options.source == "image" and options.kernel == f"{xbootldr}:{entry.kernel.path}"
    assert options.initrds == [f"{xbootldr}:{f.path}" for f in entry.initrds]
    assert "root=" not in page.cmdline_edit.toPlainText()
    assert page.os_release_edit.toPlainText().strip()

    # Nothing built yet: Next stays disabled, and the page says so.
    assert not page.isComplete()
    assert not advance_button(wizard).isEnabled()
    assert page.status_label.text() == "Not built yet."
    assert not page.signer_notice.warning and "Boot page test UEFI" in page.signer_notice.label.text()


def test_build_shows_sections_pcr11_and_signer(qtbot, wizard, page, signing):
    build_and_wait(qtbot, page)
    assert not page.error_panel.isVisible(), page.error_panel.message_label.text()
    uki = wizard.state.uki.uki
    assert uki is not None and page.isComplete() and advance_button(wizard).isEnabled()

    info = inspect_uki(uki)
    rows = section_rows(page)
    assert {".linux", ".initrd", ".cmdline", ".osrel"} <= set(rows)
    assert list(rows) == [s.name for s in info.sections]
    for s in info.sections:
        assert rows[s.name] == (s.virtual_size, s.raw_size, sha256_hex(s.sha256)), s.name

    expected = predict_pcr11(uki, banks=("sha256", "sha1"))
    preview = page.pcr_preview
    assert preview.bank() == "sha256"
    assert preview.value("") == expected["sha256"][""]
    shown = dict(preview.shown_rows())
    assert shown == expected["sha256"]
    assert {"", "enter-initrd", "enter-initrd:leave-initrd:sysinit:ready"} <= set(shown)
    preview.set_bank("sha1")
    assert dict(preview.shown_rows()) == expected["sha1"]
    value_item = preview.table.item(0, 1)
    assert value_item.toolTip() == expected["sha1"][""]
    assert value_item.font().fixedPitch() or "mono" in value_item.font().family().lower()

    # The signer line is the certificate that signed the built UKI, with its SHA-256 thumbprint.
    _, _, signer = signing
    sigs = list_signatures(uki)
    assert len(sigs) == 1 and sigs[0].signer == signer.certificate
    thumb = signer.certificate.fingerprint(hashes.SHA256()).hex().upper()
    text = page.signer_notice.label.text()
    assert not page.signer_notice.warning
    assert "CN=Boot page test UEFI" in text
    assert thumb == "".join(text.split("SHA-256 thumbprint:", 1)[1].split()).replace(":", "")
    assert "Built:" in page.status_label.text()


def test_root_in_the_command_line_shows_the_warning(qtbot, page):
    notice = page.cmdline_notice
    assert notice.isVisible() and not notice.warning
    assert "systemd-gpt-auto-generator" in notice.label.text()
    type_cmdline(qtbot, page, " root=/dev/sda2")
    assert page.state.uki.options.cmdline.endswith("root=/dev/sda2")
    assert notice.warning and "root=" in notice.label.text()
    assert "discoverable partition type" in notice.label.text()
    assert notice.accessibleName().startswith("Warning:")
    page.cmdline_edit.setPlainText("console=ttyS0 rootwait")  # not root=: no warning
    assert not notice.warning


def test_nul_cannot_enter_the_command_line(qtbot, page):
    page.cmdline_edit.setPlainText("console=ttyS0")
    page.cmdline_edit.moveCursor(page.cmdline_edit.textCursor().MoveOperation.End)
    page.cmdline_edit.insertPlainText(" quiet\0splash")
    assert page.cmdline_edit.toPlainText() == "console=ttyS0 quietsplash"
    assert page.state.uki.options.cmdline == "console=ttyS0 quietsplash"
    assert page.cmdline_notice.warning and "NUL" in page.cmdline_notice.label.text()


def test_editing_the_command_line_after_a_build_needs_a_rebuild(qtbot, wizard, page):
    build_and_wait(qtbot, page)
    assert page.isComplete()
    first = wizard.state.uki.uki
    with qtbot.waitSignal(page.completeChanged):
        type_cmdline(qtbot, page, " quiet")
    assert not page.isComplete()
    assert not advance_button(wizard).isEnabled()
    assert page.status_label.text().startswith("Rebuild needed")
    assert page.status_label.font().bold()

    build_and_wait(qtbot, page)
    assert page.isComplete() and advance_button(wizard).isEnabled()
    assert wizard.state.uki.uki != first
    assert inspect_uki(wizard.state.uki.uki).cmdline.rstrip("\0").endswith("quiet")
    assert page.status_label.text().startswith("Built:")


def test_changing_the_signer_after_a_build_needs_a_rebuild(qtbot, wizard, page):
    build_and_wait(qtbot, page)
    assert page.isComplete()
    wizard.state.uefi_signing = None
    page.initializePage()
    assert not page.isComplete()
    assert page.status_label.text().startswith("Rebuild needed")
    assert page.signer_notice.warning


def test_building_without_a_signer_warns_unsigned(qtbot, wizard, demo_image):
    page = show_page(qtbot, wizard, demo_image)
    assert wizard.state.uefi_signing is None
    assert page.signer_notice.warning and "unsigned" in page.signer_notice.label.text()
    build_and_wait(qtbot, page)
    assert not page.error_panel.isVisible(), page.error_panel.message_label.text()
    assert list_signatures(wizard.state.uki.uki) == []
    assert page.signer_notice.isVisible() and page.signer_notice.warning
    assert page.signer_notice.label.text() == "Unsigned — Secure Boot will refuse it."
    assert page.sections_model.rowCount() > 0


def test_bad_kernel_file_shows_the_engine_error_and_keeps_next_disabled(qtbot, wizard, page, tmp_path):
    kernel = tmp_path / "vmlinuz-bad"
    kernel.write_bytes(os.urandom(64 * 1024))
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"070701" + os.urandom(1024))
    page.set_kernel_file(kernel)
    page.add_initrd_file(initrd)
    assert page.source_box.files_radio.isChecked() and page.source_box.files_panel.isVisible()
    options = wizard.state.uki.options
    assert options.source == "files" and options.kernel == str(kernel)
    assert options.initrds == [str(initrd)]

    build_and_wait(qtbot, page)
    with pytest.raises(ShieldwrightError) as expected:
        build_uki(
            UkiInputs(
                linux=kernel.read_bytes(),
                initrds=[initrd.read_bytes()],
                cmdline=options.cmdline,
                os_release=options.os_release,
            ),
            signer=wizard.state.uefi_signing.signer,
        )
    assert page.error_panel.isVisible()
    shown = page.error_panel.message_label.text()
    assert shown.lower() == expected.value.message.lower()
    assert wizard.state.uki.uki is None
    assert not page.isComplete() and not advance_button(wizard).isEnabled()
    assert page.sections_model.rowCount() == 0


def test_file_dialogs_are_non_blocking(qtbot, page):
    box = page.source_box
    radio = box.files_radio
    qtbot.mouseClick(radio, Qt.MouseButton.LeftButton, pos=QPoint(8, radio.height() // 2))
    assert radio.isChecked() and page.state.uki.options.source == "files"
    assert box.files_panel.isVisible()
    qtbot.mouseClick(box.kernel_file_button, Qt.MouseButton.LeftButton)  # returns: open(), not exec()
    dialog = page.open_dialog("boot-file")
    assert dialog is not None and dialog.isVisible()
    dialog.reject()
    qtbot.waitUntil(lambda: page.open_dialog("boot-file") is None)
    assert page.state.uki.options.kernel is None and not page.build_button.isEnabled()


def test_recipe_has_paths_and_texts_never_the_uki_or_secrets(qtbot, wizard, page, signing):
    build_and_wait(qtbot, page)
    assert page.isComplete()
    state = dataclasses.replace(wizard.state, catalog=CatalogChoice(CatalogOptions("Test", "1.0.0.0")))
    recipe = recipe_to_dict(state.recipe(output=Path("/out.raw")), "/")
    text = json.dumps(recipe)  # plain data only: bytes would not serialise
    uki_keys = recipe["uki"]
    entry = page.source_box.kernel_combo.currentData()
    assert uki_keys.get("source", "image") == "image"
    assert uki_keys["kernel"] == f"{entry.kernel.partition_number}:{entry.kernel.path}"
    assert uki_keys["initrds"] == [f"{f.partition_number}:{f.path}" for f in entry.initrds]
    assert uki_keys["cmdline"] == page.cmdline_edit.toPlainText()
    assert uki_keys["os_release"] == page.os_release_edit.toPlainText()
    assert "stub" not in uki_keys  # the host default

    uki = wizard.state.uki.uki
    assert uki[:64].hex() not in text and "MZ" not in text
    _, key_path, signer = signing
    pem = signer.certificate.public_bytes(serialization.Encoding.PEM).decode()
    assert "PRIVATE KEY" not in text and pem.splitlines()[1] not in text
    assert (recipe["signing"]["uefi_cert"], recipe["signing"]["uefi_key"]) == (str(signing[0]), str(key_path))
    shown = repr(wizard.state.uki)  # the UKI's bytes stay out of repr too
    assert "MZ" not in shown and "uki=b" not in shown and "built_for" not in shown


def test_an_existing_uki_is_chosen_in_the_recipes_terms(qtbot, wizard, page):
    """Keep / re-sign / replace write only the recipe keys that action uses (docs/formats/recipe.md refuses
    kernel, initrds, cmdline, os_release and stub unless a new UKI is built)."""
    found = page._found
    uki = BootFile(1, "/EFI/Linux/debian.efi", "uki", 1 << 20)
    page._on_scanned(dataclasses.replace(found, files=(*found.files, uki), ukis=(uki,)))  # as a scan ends
    page._on_scan_finished()
    box, options = page.source_box, wizard.state.uki.options
    entry = box.kernel_combo.currentData()
    assert box.uki_radio.isVisible() and options.source == "image"

    box.uki_radio.setChecked(True)
    assert (options.source, options.existing_uki) == ("existing", ref_of(uki))
    assert options.existing_action == "resign"
    assert (options.kernel, options.initrds, options.cmdline, options.os_release, options.stub) == (
        None, [], None, None, None)  # fmt: skip
    assert page.build_button.text() == "Re-sign UKI" and not page.cmdline_edit.isEnabled()
    assert not box.image_panel.isVisible() and box.uki_panel.isVisible()
    assert wizard.state.uki.configured and not page.isComplete()

    box.action_combo.setCurrentIndex(box.action_combo.findData("keep"))
    assert options.existing_action == "keep" and page.build_button.text() == "Inspect UKI"
    assert "Kept as it is" in page.signer_notice.label.text()

    box.action_combo.setCurrentIndex(box.action_combo.findData("replace"))
    assert box.image_panel.isVisible() and page.cmdline_edit.isEnabled()
    assert (options.existing_action, options.kernel) == ("replace", ref_of(entry.kernel))
    assert options.initrds == [ref_of(f) for f in entry.initrds]
    assert options.cmdline == page.cmdline_edit.toPlainText() and page.build_button.text() == "Bui&ld UKI"

    box.image_radio.setChecked(True)
    assert (options.source, options.existing_uki, options.existing_action) == ("image", None, None)


def test_pcr_values_can_be_copied(qtbot, wizard, page):
    build_and_wait(qtbot, page)
    preview = page.pcr_preview
    preview.table.selectRow(0)
    preview.table.setFocus()
    qtbot.keySequence(preview.table, "Ctrl+C")
    assert QApplication.clipboard().text() == preview.value("")


def test_keyboard_and_accessibility(page):
    box = page.source_box
    assert box.image_radio.text() == "From the base &image"
    assert box.files_radio.text() == "From &files…"
    assert page.build_button.text() == "Bui&ld UKI"
    assert page.sections_table.accessibleName() == "UKI sections"
    assert page.pcr_preview.table.accessibleName() == "Predicted PCR 11 values"
    assert page.cmdline_edit.accessibleName() == "Kernel command line"
    assert page.cmdline_edit.tabChangesFocus()
    chain = [box.image_radio]
    for _ in range(40):
        chain.append(chain[-1].nextInFocusChain())
    order = [w for w in chain if w in (box.kernel_combo, page.cmdline_edit, page.os_release_edit,
                                       page.build_button, page.sections_table)]  # fmt: skip
    seen = list(dict.fromkeys(order))
    assert seen == [box.kernel_combo, page.cmdline_edit, page.os_release_edit, page.build_button,
                    page.sections_table]  # fmt: skip
