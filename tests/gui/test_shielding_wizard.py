"""The Shielding Data wizard, walked for real: an owner created through the Owner page (its keys generated
by the engine into a temporary guardian store), a fabric guardian imported from an openssl-made
certificate, the demo template's catalog added as a qualifier, the passphrase typed, the file generated.

Graded by independent readers: ``shieldwright shield test`` (a subprocess) says the data applies to the
template, ``openssl cms -verify`` accepts the owner's signature, and the passphrase is not in the file's
bytes. Refusals (a guardian name taken, an elliptic-curve certificate, a bad host name, a password instead
of its hash, no qualifier) come from the engine and must show inline with Next disabled.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWizard

from app.gui.shielding_state import ShieldingState
from app.gui.shielding_wizard import ShieldingPageId, ShieldingWizard
from app.gui.state import OutputChoice
from app.shielding.guardians import new_owner
from app.shielding.shd import load_shielding_data
from app.template.recipe import OutputOptions
from tests.build_helpers import PASSPHRASE, build, make_keys, make_recipe

TASK_TIMEOUT_MS = 60_000
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_real_store(tmp_path, monkeypatch):
    """Whatever a test forgets, the user's own guardian store is never touched."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


@pytest.fixture(scope="module")
def template(demo_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("shielding-gui")
    keys = make_keys(work)
    return build(make_recipe(demo_image, work / "template.raw", keys), keys).output


def openssl_cert(directory: Path, name: str, newkey: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    cert = directory / f"{name}.crt"
    subprocess.run(
        ["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", str(directory / f"{name}.key"),
         "-out", str(cert), "-subj", f"/CN={name} guardian encryption", "-days", "30"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def rsa_cert(directory: Path, name: str = "fabric") -> Path:
    return openssl_cert(directory, name, ["-newkey", "rsa:3072"])


def ec_cert(directory: Path, name: str = "ec-fabric") -> Path:
    return openssl_cert(directory, name, ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])


def make_wizard(qtbot, runner, state: ShieldingState) -> ShieldingWizard:
    w = ShieldingWizard(runner, state)
    qtbot.addWidget(w)
    w.resize(960, 640)
    w.show()
    qtbot.waitExposed(w)
    return w


def idle(qtbot, page) -> None:
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=TASK_TIMEOUT_MS)


def next_page(qtbot, w: ShieldingWizard, expected: ShieldingPageId, button=QWizard.WizardButton.NextButton):
    assert w.currentPage().isComplete()
    assert w.button(button).isEnabled()
    qtbot.mouseClick(w.button(button), Qt.MouseButton.LeftButton)
    assert w.currentId() == expected


def error_text(page) -> str:
    return page.error_panel.message_label.text() if page.error_panel.isVisible() else ""


@pytest.mark.slow
def test_the_flow_writes_shielding_data_that_applies_to_the_template(qtbot, runner, template, tmp_path):
    store, out = tmp_path / "guardians", tmp_path / "out" / "web.shd"
    out.parent.mkdir()
    w = make_wizard(qtbot, runner, ShieldingState(store=store))
    assert "▸ File and policy" in w.steps.labels[ShieldingPageId.FILE].text()

    # File and policy.
    w.file_page.set_output(out)
    w.file_page.policy_buttons["encryption-supported"].click()
    assert w.state.policy == "encryption-supported"
    w.file_page.policy_buttons["shielded"].click()
    next_page(qtbot, w, ShieldingPageId.GUARDIANS)

    # Owner and guardians: the store is empty, so Next waits for an owner.
    page = w.guardians_page
    idle(qtbot, page)
    assert not page.isComplete() and not w.button(QWizard.WizardButton.NextButton).isEnabled()
    qtbot.keyClicks(page.owner_name, "contoso")
    page.signing_combo.setCurrentIndex(page.signing_combo.findData("p384"))
    qtbot.mouseClick(page.create_button, Qt.MouseButton.LeftButton)
    assert page.is_busy() and not page.create_button.isEnabled()
    idle(qtbot, page)
    assert error_text(page) == ""
    assert page.owner_combo.currentData() == "contoso" and w.state.owner == "contoso"
    assert (store / "contoso" / "signing.key").is_file()
    assert "contoso shielding data signing" in page.owner_details.text()
    # A fabric's guardian, imported through the page's file dialog.
    cert = rsa_cert(tmp_path / "fabric")
    page.import_name.setText("fabric-east")
    qtbot.mouseClick(page.import_button, Qt.MouseButton.LeftButton)
    dialog = page.open_dialog("guardian-cert")
    assert dialog is not None
    dialog.fileSelected.emit(str(cert))
    dialog.close()
    idle(qtbot, page)
    assert error_text(page) == ""
    assert w.state.guardians == ["fabric-east"]  # an imported guardian is checked
    assert page.table.rowCount() == 1
    assert page.table.item(0, 0).checkState() == Qt.CheckState.Checked
    assert "fabric guardian encryption" in page.table.item(0, 1).text()
    next_page(qtbot, w, ShieldingPageId.QUALIFIERS)

    # Qualifiers: the template's own catalog (read from its ESP in the background).
    q = w.qualifiers_page
    assert not w.button(QWizard.WizardButton.NextButton).isEnabled()
    q.add_source(template)
    idle(qtbot, q)
    assert error_text(q) == ""
    assert q.table.rowCount() == 1
    assert q.table.item(0, 0).text() == "Pipeline test" and q.table.item(0, 1).text() == "1.2.3.4"
    assert "catalog-signer" in q.table.item(0, 3).text()
    q.rule_combo(0).setCurrentIndex(q.rule_combo(0).findData("greater-or-equal"))
    assert w.state.qualifiers[0].qualifier.rule == "greater-or-equal"
    next_page(qtbot, w, ShieldingPageId.VALUES)

    # Specialization values.
    v = w.values_page
    assert not w.button(QWizard.WizardButton.NextButton).isEnabled()
    qtbot.keyClicks(v.passphrase_edit, PASSPHRASE)
    qtbot.keyClicks(v.hostname_edit, "web-01")
    next_page(qtbot, w, ShieldingPageId.REVIEW)

    summary = w.review_page.summary.toPlainText()
    assert PASSPHRASE not in summary
    assert "provisioning_passphrase, hostname" in summary and "fabric-east" in summary
    assert "Pipeline test, version greater or equal 1.2.3.4" in summary
    next_page(qtbot, w, ShieldingPageId.GENERATE, QWizard.WizardButton.CommitButton)

    gen = w.generate_page
    idle(qtbot, gen)
    assert error_text(gen) == ""
    assert w.state.written == out and out.is_file()
    assert w.state.passphrase is None and v.passphrase_edit.text() == ""  # wiped once written
    header = gen.header_view.toPlainText()
    assert "Policy: shielded" in header and "Guardian: fabric-east" in header and "Owner: contoso" in header
    gen.test(template)
    idle(qtbot, gen)
    assert gen.test_result is not None and gen.test_result.applicable
    assert "Applicable to Pipeline test 1.2.3.4" in gen.test_label.text()

    # Independent readers.
    test = subprocess.run([sys.executable, "-m", "app", "shield", "test", str(out), str(template)],
                          cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert test.returncode == 0, test.stdout + test.stderr
    verify = subprocess.run(
        ["openssl", "cms", "-verify", "-inform", "DER", "-binary", "-in", str(out),
         "-CAfile", str(store / "contoso" / "signing.crt"), "-out", str(tmp_path / "content.bin")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    assert PASSPHRASE.encode() not in out.read_bytes()
    data = load_shielding_data(out)
    assert [g["name"] for g in data.header["guardians"]] == ["fabric-east"]  # type: ignore[union-attr]
    assert data.header["payload_items"] == ["provisioning_passphrase", "hostname"]


@pytest.fixture
def owner_store(tmp_path) -> Path:
    store = tmp_path / "guardians"
    new_owner("owner", store=store)
    return store


def test_a_taken_name_and_an_ec_certificate_are_refused_inline(qtbot, runner, owner_store, tmp_path):
    w = make_wizard(qtbot, runner, ShieldingState(store=owner_store, output=tmp_path / "d.shd"))
    next_page(qtbot, w, ShieldingPageId.GUARDIANS)
    page = w.guardians_page
    idle(qtbot, page)
    assert w.state.owner == "owner"  # the only owner is preselected
    page.import_name.setText("fabric")
    page.import_certificate(str(rsa_cert(tmp_path)))
    idle(qtbot, page)
    assert error_text(page) == "" and page.table.rowCount() == 1
    page.import_name.setText("fabric")
    page.import_certificate(str(rsa_cert(tmp_path / "other", "other")))
    idle(qtbot, page)
    assert "already exists" in error_text(page)
    page.import_name.setText("ec-fabric")
    page.import_certificate(str(ec_cert(tmp_path)))
    idle(qtbot, page)
    assert "elliptic-curve" in error_text(page)
    assert not (owner_store / "ec-fabric").exists() and page.table.rowCount() == 1
    page.owner_name.setText("owner")
    page.create_owner("owner")
    idle(qtbot, page)
    assert "already exists" in error_text(page)
    # Unchecking the guardian leaves the owner alone, and the page says so.
    page.set_guardian_checked("fabric", False)
    assert w.state.chosen_guardians() == [] and "only the owner" in page.guardian_note.text()


def test_no_qualifier_keeps_next_disabled_with_the_reason(qtbot, runner, owner_store, tmp_path):
    w = make_wizard(qtbot, runner, ShieldingState(store=owner_store, output=tmp_path / "d.shd"))
    next_page(qtbot, w, ShieldingPageId.GUARDIANS)
    idle(qtbot, w.guardians_page)
    next_page(qtbot, w, ShieldingPageId.QUALIFIERS)
    q = w.qualifiers_page
    assert not q.isComplete() and not w.button(QWizard.WizardButton.NextButton).isEnabled()
    assert "at least one template" in q.status.text()
    q.add_source(tmp_path / "missing.vsc")
    idle(qtbot, q)
    assert "Cannot read" in error_text(q) and not w.button(QWizard.WizardButton.NextButton).isEnabled()


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("hostname_edit", "web_01!", "is not a host name"),
        ("hash_edit", "correct horse battery staple", "not a crypt(3) hash"),
    ],
    ids=["bad-hostname", "plain-password"],
)
def test_bad_values_are_refused_inline_by_the_engine(qtbot, runner, tmp_path, field, value, words):
    w = make_wizard(qtbot, runner, ShieldingState(store=tmp_path / "guardians"))
    v = w.values_page
    v.initializePage()
    assert not v.isComplete() and "passphrase" in v.verdict.text()
    qtbot.keyClicks(v.passphrase_edit, "secret")
    assert v.isComplete()
    qtbot.keyClicks(getattr(v, field), value)
    assert not v.isComplete()
    assert words in v.verdict.text() and "secret" not in v.verdict.text()
    getattr(v, field).clear()
    assert v.isComplete()
    # A good hash (openssl passwd -6) and an SSH key file are carried; a mode that is not octal is not.
    good = subprocess.run(["openssl", "passwd", "-6", "pw"], capture_output=True, text=True, check=True)
    hash_file = tmp_path / "hash"
    hash_file.write_text(good.stdout)
    v.set_hash_file(hash_file)
    keys = tmp_path / "id.pub"
    keys.write_text("# mine\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBa me@host\n")
    v.add_ssh_keys(keys)
    motd = tmp_path / "motd"
    motd.write_text("hello\n")
    v.add_file(motd, "/etc/motd")
    assert v.isComplete(), v.verdict.text()
    assert "admin_password_hash, ssh_authorized_keys, file:/etc/motd" in v.verdict.text()
    v.files_table.item(0, 2).setText("9z")
    assert not v.isComplete() and "not a file mode" in v.verdict.text()


@pytest.mark.slow
def test_the_finished_page_opens_the_wizard_with_the_qualifier_prefilled(qtbot, wizard, template, tmp_path):
    st = wizard.state
    st.output = OutputChoice(
        OutputOptions(template, "raw"), result=SimpleNamespace(output=template, summary={})
    )
    finished = wizard.finished_page
    finished.initializePage()
    assert finished.shielding_button.isEnabled()
    qtbot.mouseClick(finished.shielding_button, Qt.MouseButton.LeftButton)
    sw = wizard.shielding_wizard
    assert sw is not None and sw.isVisible() and not sw.isModal()
    assert sw.state.output == template.with_suffix(".shd")
    qtbot.waitUntil(lambda: bool(sw.state.qualifiers), timeout=TASK_TIMEOUT_MS)
    entry = sw.state.qualifiers[0]
    assert (entry.qualifier.template_name, entry.qualifier.version, entry.qualifier.rule) == (
        "Pipeline test", "1.2.3.4", "equals")  # fmt: skip
    assert entry.source == template and "catalog-signer" in entry.signer_subject
    # Asking again raises the open wizard instead of opening a second one.
    qtbot.mouseClick(finished.shielding_button, Qt.MouseButton.LeftButton)
    assert wizard.shielding_wizard is sw
    sw.close()


# -- importing an owner, removing a guardian (issue 16) ---------------------------------------------------


def encrypted_rsa_cert(directory: Path, name: str, passphrase: str) -> Path:
    """An RSA 3072 certificate whose key (``name``.key) is encrypted with ``passphrase``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert = directory / f"{name}.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:3072", "-keyout", str(directory / f"{name}.key"),
         "-passout", f"pass:{passphrase}", "-out", str(cert), "-subj", f"/CN={name}", "-days", "30"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def guardians_page(qtbot, runner, store: Path, tmp_path: Path):
    w = make_wizard(qtbot, runner, ShieldingState(store=store, output=tmp_path / "d.shd"))
    next_page(qtbot, w, ShieldingPageId.GUARDIANS)
    idle(qtbot, w.guardians_page)
    return w, w.guardians_page


def test_an_owner_is_imported_from_its_files_and_chosen(qtbot, runner, owner_store, tmp_path):
    files = tmp_path / "owner-files"
    signing = ec_cert(files, "signing")
    other_signing = ec_cert(files / "other", "signing")
    encryption = encrypted_rsa_cert(files, "encryption", "s3cret pass")
    w, page = guardians_page(qtbot, runner, owner_store, tmp_path)
    assert w.state.owner == "owner"

    qtbot.mouseClick(page.import_owner_button, Qt.MouseButton.LeftButton)
    dialog = page.import_owner_dialog
    assert dialog is not None and dialog.isVisible() and not dialog.ok_button.isEnabled()
    qtbot.keyClicks(dialog.name_edit, "imported")
    # One file through the dialog's non-blocking file chooser, the others typed.
    qtbot.mouseClick(dialog.browse_buttons["signing_cert"], Qt.MouseButton.LeftButton)
    chooser = dialog.open_dialog("signing_cert")
    assert chooser is not None
    chooser.fileSelected.emit(str(signing))
    chooser.close()
    assert dialog.paths["signing_cert"].text() == str(signing)
    dialog.paths["signing_key"].setText(str(other_signing.with_suffix(".key")))  # not this certificate's
    dialog.paths["encryption_cert"].setText(str(encryption))
    dialog.paths["encryption_key"].setText(str(encryption.with_suffix(".key")))
    qtbot.keyClicks(dialog.passphrase_edit, "s3cret pass")
    assert dialog.ok_button.isEnabled()

    # A key that is not the certificate's: the engine's words in the dialog, which keeps everything.
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    idle(qtbot, page)
    assert dialog.isVisible() and page.import_owner_dialog is dialog
    assert dialog.error_panel.isVisible()
    assert "signing key does not match the signing certificate" in dialog.error_panel.message_label.text()
    assert dialog.error_panel.hint_label.text() == "Give matching files"
    assert dialog.name_edit.text() == "imported" and dialog.passphrase_edit.text() == "s3cret pass"
    assert dialog.paths["signing_key"].text() == str(other_signing.with_suffix(".key"))
    assert not (owner_store / "imported").exists() and error_text(page) == ""

    # The right key: imported, the dialog closes, the new owner is listed and chosen.
    dialog.paths["signing_key"].setText(str(signing.with_suffix(".key")))
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.import_owner_dialog is None, timeout=TASK_TIMEOUT_MS)  # closed (deleted)
    idle(qtbot, page)
    assert error_text(page) == ""
    assert [page.owner_combo.itemData(i) for i in range(page.owner_combo.count())] == ["imported", "owner"]
    assert page.owner_combo.currentData() == "imported" and w.state.owner == "imported"
    assert "CN=signing guardian encryption" in page.owner_details.text()  # openssl_cert's subject
    for key in ("signing.key", "encryption.key"):
        path = owner_store / "imported" / key
        assert path.stat().st_mode & 0o777 == 0o600, key
        assert b"ENCRYPTED" not in path.read_bytes()  # stored unencrypted (and 0600)
    assert page.isComplete()


def test_a_fabric_guardian_is_removed_after_asking(qtbot, runner, owner_store, tmp_path):
    new_owner("second-owner", store=owner_store)
    w, page = guardians_page(qtbot, runner, owner_store, tmp_path)
    for name in ("fabric-east", "fabric-west"):
        page.import_name.setText(name)
        page.import_certificate(str(rsa_cert(tmp_path / name, name)))
        idle(qtbot, page)
    assert w.state.guardians == ["fabric-east", "fabric-west"]
    assert "owners are not removed here" in page.remove_button.toolTip().lower()

    def row_of(name: str) -> int:
        rows = [r for r in range(page.table.rowCount()) if page.table.item(r, 0).text() == name]
        return rows[0]

    def click_row(name: str) -> None:
        rect = page.table.visualItemRect(page.table.item(row_of(name), 1))  # not the check box
        qtbot.mouseClick(page.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())

    assert not page.remove_button.isEnabled()  # nothing selected
    click_row("second-owner (owner)")
    assert page.selected_guardian().name == "second-owner"
    assert not page.remove_button.isEnabled()  # owners are not removed here
    click_row("fabric-east")
    assert page.remove_button.isEnabled()

    # Cancelled: nothing removed.
    qtbot.mouseClick(page.remove_button, Qt.MouseButton.LeftButton)
    question = page.remove_question
    assert question is not None and question.isVisible()
    assert question.text() == "Remove the guardian 'fabric-east' from this computer?"
    assert "still opens with its key" in question.informativeText()
    qtbot.mouseClick(question.button(QMessageBox.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    assert page.remove_question is None and not page.is_busy()
    assert (owner_store / "fabric-east").is_dir() and page.table.rowCount() == 3

    # Accepted: gone from the list and the store; the other check marks stay.
    qtbot.mouseClick(page.remove_button, Qt.MouseButton.LeftButton)
    question = page.remove_question
    assert question is not None
    [remove] = [
        b for b in question.buttons() if question.buttonRole(b) == QMessageBox.ButtonRole.DestructiveRole
    ]
    qtbot.mouseClick(remove, Qt.MouseButton.LeftButton)
    idle(qtbot, page)
    assert error_text(page) == ""
    assert not (owner_store / "fabric-east").exists() and (owner_store / "fabric-west").is_dir()
    names = [page.table.item(r, 0).text() for r in range(page.table.rowCount())]
    assert names == ["fabric-west", "second-owner (owner)"]
    assert page.table.item(row_of("fabric-west"), 0).checkState() == Qt.CheckState.Checked
    assert w.state.guardians == ["fabric-west"] and w.state.owner == "owner"
    assert not page.remove_button.isEnabled()  # the removed row was the selected one
