"""The Certificates page against the real signing engine; inputs made with cryptography and openssl."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit

from app.gui.dialogs.generate_certificate import GenerateCertificateDialog
from app.gui.state import CatalogChoice, SigningChoice, WizardState
from app.gui.wizard import PageId
from app.template.recipe import CatalogOptions, RecipeError
from app.template.recipe_file import recipe_to_dict
from tests.conftest import require_tool
from tests.gui.conftest import advance_button, open_and_wait
from wizard_pages.certificates import CertificatesPage, Role, SigningRoleBox

LOAD_TIMEOUT_MS = 30_000
PASSPHRASE = "correct horse battery staple"


# -- inputs, made without Shieldwright ------------------------------------------------------------------


def make_cert(
    directory: Path,
    name: str,
    *,
    not_before: dt.datetime | None = None,
    days: int = 365,
    key_type: str = "rsa",
    passphrase: str | None = None,
    common_name: str | None = None,
) -> tuple[Path, Path]:
    """A self-signed code-signing certificate (PEM) and its key (PEM, encrypted with ``passphrase``)."""
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if key_type == "p256"
        else rsa.generate_private_key(65537, 2048)
    )
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"Test {name}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return cert_path, key_path


def openssl_sha256(cert_path: Path) -> str:
    out = subprocess.run(
        [require_tool("openssl"), "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert_path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.strip().split("=", 1)[1].upper()


# -- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture
def page(qtbot, wizard, small_disk, tmp_path) -> CertificatesPage:
    """The wizard showing the Certificates page (after a real base image); keys go to tmp_path."""
    p = wizard.certificates_page
    p.key_directory = tmp_path / "keys"
    open_and_wait(qtbot, wizard, small_disk)
    wizard.next()
    assert wizard.currentId() == PageId.CERTIFICATES and p.isVisible()
    return p


def load_and_wait(
    qtbot, page: CertificatesPage, role: Role, cert: Path, key: Path | None = None
) -> SigningRoleBox:
    box = page.box(role)
    with qtbot.waitSignal(box.loadFinished, timeout=LOAD_TIMEOUT_MS):
        page.load(role, cert, key)
    assert not page.is_busy()
    return box


def wait_for_passphrase_prompt(qtbot, box: SigningRoleBox):
    qtbot.waitUntil(lambda: box.passphrase_dialog is not None and box.passphrase_dialog.isVisible(),
                    timeout=LOAD_TIMEOUT_MS)  # fmt: skip
    return box.passphrase_dialog


def open_generate_dialog(qtbot, box: SigningRoleBox) -> GenerateCertificateDialog:
    qtbot.mouseClick(box.generate_button, Qt.MouseButton.LeftButton)  # returns: open(), not exec()
    dialog = box.generate_dialog
    assert dialog is not None and dialog.isVisible() and dialog.isModal()
    return dialog


def generate_and_wait(qtbot, dialog: GenerateCertificateDialog, box: SigningRoleBox) -> None:
    assert dialog.generate_button.isEnabled(), dialog.problems()
    with (
        qtbot.waitSignal(dialog.generationFinished, timeout=LOAD_TIMEOUT_MS),
        qtbot.waitSignal(box.loadFinished, timeout=LOAD_TIMEOUT_MS),
    ):
        qtbot.mouseClick(dialog.generate_button, Qt.MouseButton.LeftButton)


def severities(box: SigningRoleBox) -> list[str]:
    return box.details.findings.severities()


def recipe_of(state: WizardState) -> dict:
    """What "Save recipe" would write for ``state`` (absolute paths); pages not visited yet get stand-ins."""
    filled = dataclasses.replace(
        state,
        image_path=state.image_path or Path("/base.img"),
        catalog=state.catalog or CatalogChoice(CatalogOptions("Test", "1.0.0.0")),
    )
    return recipe_to_dict(filled.recipe(output=Path("/out.raw")), "/")


# -- the page ---------------------------------------------------------------------------------------


def test_page_follows_base_image_and_starts_incomplete(qtbot, wizard, page):
    assert wizard.page(PageId.CERTIFICATES) is page
    assert wizard.visitedIds() == [PageId.BASE_IMAGE, PageId.CERTIFICATES]
    assert page.title() == "Signing certificates"
    assert "Secure Boot db" in page.subTitle() and "Volume Signature Catalog" in page.subTitle()
    assert "▸ Certificates" in wizard.steps.labels[PageId.CERTIFICATES].text()
    assert "✓ Base image" in wizard.steps.labels[PageId.BASE_IMAGE].text()
    assert not page.isComplete()
    assert not advance_button(wizard).isEnabled()
    assert page.catalog_box.same_check.isChecked() and wizard.state.catalog_same_as_uefi
    assert not page.catalog_box.load_button.isEnabled()
    assert page.uefi_box.details.placeholder.isVisible()
    assert page.uefi_box.load_button.text() == "&Load…"
    assert page.uefi_box.generate_button.text() == "&Generate…"
    assert page.catalog_box.same_check.text() == "Use the &UEFI signing certificate"
    assert page.uefi_box.accessibleName() == "UEFI image signing"
    assert page.catalog_box.accessibleName() == "Catalog signing"


def test_load_dialog_is_non_blocking(qtbot, page):
    box = page.uefi_box
    qtbot.mouseClick(box.load_button, Qt.MouseButton.LeftButton)
    dialog = box.file_chooser
    assert dialog is not None and dialog.isVisible()
    filters = " ".join(dialog.nameFilters())
    for pattern in ("*.pem", "*.crt", "*.cer", "*.der", "*.p12", "*.pfx", "(*)"):
        assert pattern in filters
    assert box.is_busy() and not page.isComplete()
    dialog.reject()
    qtbot.waitUntil(lambda: box.file_chooser is None)
    assert not box.is_busy()


def test_generate_from_page_fills_details(qtbot, wizard, page, tmp_path):
    box = page.uefi_box
    dialog = open_generate_dialog(qtbot, box)
    assert dialog.key_type_combo.currentData() == "rsa2048"
    assert "RSA-2048" in dialog.key_type_note.text()
    assert dialog.validity_spin.value() == 10 and dialog.validity_unit.currentData() == "years"
    assert dialog.passphrase_edit.echoMode() == QLineEdit.EchoMode.Password
    assert dialog.confirm_edit.echoMode() == QLineEdit.EchoMode.Password
    out = tmp_path / "generated"
    dialog.cn_edit.setText("Shieldwright Test UEFI")
    dialog.org_edit.setText("Test Org")
    dialog.folder_edit.setText(str(out))
    generate_and_wait(qtbot, dialog, box)

    cert, key, der = out / "uefi-signing.crt", out / "uefi-signing.key", out / "uefi-signing.cer"
    listed = [dialog.files_list.item(i).text() for i in range(dialog.files_list.count())]
    assert listed == [str(key), str(cert), str(der)]
    assert dialog.files_list.isVisible() and not dialog.error_panel.isVisible()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in key.read_bytes()  # no passphrase given: unencrypted PKCS#8

    details = box.details
    assert "CN=Shieldwright Test UEFI" in details.subject_value.text()
    assert "O=Test Org" in details.subject_value.text()
    assert details.key_value.text() == "RSA 2048 bits"
    assert details.thumbprint() == openssl_sha256(cert)
    assert details.sha256_value.font().fixedPitch() or "mono" in details.sha256_value.font().family().lower()
    assert details.sha256_value.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse
    assert "valid for 36" in details.validity_value.text()  # ten years, in days
    assert "codeSigning" in details.eku_value.text()
    assert "error" not in severities(box)
    assert box.files_label.text() == "From uefi-signing.crt with key uefi-signing.key"

    state = wizard.state
    assert state.uefi_signing.cert_path == cert and state.uefi_signing.key_path == key
    assert state.uefi_signing.signer is not None
    # The catalog reuses it by default, described for its own purpose.
    assert page.catalog_box.details.thumbprint() == openssl_sha256(cert)
    assert state.catalog_signing.cert_path == cert
    assert page.isComplete() and advance_button(wizard).isEnabled()

    assert dialog.close_button.text() == "&Close"
    qtbot.mouseClick(dialog.close_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: box.generate_dialog is None)


def test_generate_with_passphrase_pkcs12_and_ecdsa(qtbot, page, tmp_path):
    box = page.uefi_box
    dialog = open_generate_dialog(qtbot, box)
    out = tmp_path / "out"
    dialog.folder_edit.setText(str(out))
    dialog.set_key_type("p256")
    dialog.validity_unit.setCurrentIndex(dialog.validity_unit.findData("days"))
    dialog.validity_spin.setValue(400)
    dialog.pkcs12_check.setChecked(True)
    assert not dialog.generate_button.isEnabled()  # PKCS#12 needs a passphrase
    assert dialog.problem_label.isVisible() and "PKCS#12" in dialog.problem_label.text()
    dialog.passphrase_edit.setText(PASSPHRASE)
    dialog.confirm_edit.setText(PASSPHRASE + "x")
    assert not dialog.generate_button.isEnabled()  # mismatch blocks Generate
    assert dialog.problem_label.text() == "The passphrases do not match."
    dialog.confirm_edit.setText(PASSPHRASE)
    assert not dialog.problem_label.isVisible()
    generate_and_wait(qtbot, dialog, box)

    key, p12 = out / "uefi-signing.key", out / "uefi-signing.p12"
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in key.read_bytes()
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600
    assert str(p12) in [dialog.files_list.item(i).text() for i in range(dialog.files_list.count())]
    assert dialog.passphrase_edit.text() == "" and dialog.confirm_edit.text() == ""
    # openssl opens the PKCS#12 with the passphrase: it holds the certificate the page shows.
    pem = subprocess.run(
        [require_tool("openssl"), "pkcs12", "-in", str(p12), "-nokeys", "-passin", f"pass:{PASSPHRASE}"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex().upper() == (
        box.details.thumbprint().replace(":", "")
    )
    assert box.details.key_value.text() == "ECDSA P-256 (256 bits)"
    assert "valid for 399 more days" in box.details.validity_value.text()
    # ECDSA is a warning for UEFI image signing only; the catalog (same certificate) has no such warning.
    assert "warning" in severities(box)
    assert any("RSA-2048" in m for m in box.details.findings.messages())
    assert not any("RSA-2048" in m for m in page.catalog_box.details.findings.messages())
    assert page.isComplete()  # warnings do not block
    dialog.reject()


def test_generate_refuses_to_overwrite(qtbot, page, tmp_path):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "mine.crt").write_text("precious")
    box = page.uefi_box
    dialog = open_generate_dialog(qtbot, box)
    dialog.folder_edit.setText(str(out))
    dialog.cert_name_edit.setText("mine.crt")
    dialog.key_name_edit.setText("mine.key")
    assert dialog.generate_button.isEnabled()
    with qtbot.waitSignal(dialog.generationFinished, timeout=LOAD_TIMEOUT_MS):
        qtbot.mouseClick(dialog.generate_button, Qt.MouseButton.LeftButton)
    assert dialog.error_panel.isVisible()
    assert "already exists" in dialog.error_panel.message_label.text()
    assert (out / "mine.crt").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["mine.crt"]  # nothing else written
    assert dialog.isVisible() and dialog.generate_button.isEnabled()  # fix the name and try again
    assert box.loaded is None and not page.isComplete()
    dialog.reject()


def test_default_file_names_avoid_existing_files(qtbot, page):
    page.key_directory.mkdir(parents=True)
    (page.key_directory / "uefi-signing.key").write_text("old key")
    dialog = open_generate_dialog(qtbot, page.uefi_box)
    assert dialog.folder_edit.text() == str(page.key_directory)
    assert dialog.cert_name_edit.text() == "uefi-signing-2.crt"
    assert dialog.key_name_edit.text() == "uefi-signing-2.key"
    dialog.reject()


def test_expired_certificate_shows_error_and_blocks_next(qtbot, wizard, page, tmp_path):
    now = dt.datetime.now(dt.UTC)
    cert, key = make_cert(tmp_path, "expired", not_before=now - dt.timedelta(days=730), days=1)
    box = load_and_wait(qtbot, page, Role.UEFI, cert, key)
    assert box.loaded is not None  # it loads; it just cannot be used
    assert "error" in severities(box)
    assert any("expired" in m for m in box.details.findings.messages())
    assert box.details.findings.messages()[0].startswith("The certificate expired")  # errors first
    assert "expired 72" in box.details.validity_value.text()  # ~729 days ago
    assert box.details.validity_value.font().bold()
    assert wizard.state.uefi_signing is not None and not wizard.state.uefi_signing.usable
    assert not page.isComplete()
    assert not advance_button(wizard).isEnabled()


def test_valid_certificate_and_key_complete_the_page(qtbot, wizard, page, tmp_path):
    cert, key = make_cert(tmp_path, "good")
    box = load_and_wait(qtbot, page, Role.UEFI, cert, key)
    assert not box.error_panel.isVisible()
    assert box.details.thumbprint() == openssl_sha256(cert)
    assert box.details.issuer_value.text() == "Same as subject (self-signed)"
    assert severities(box) == ["info"]  # self-signed
    assert page.isComplete() and advance_button(wizard).isEnabled()
    assert wizard.state.signing_ready


def test_encrypted_key_prompts_and_retries_wrong_passphrase(qtbot, wizard, page, tmp_path):
    cert, key = make_cert(tmp_path, "locked", passphrase=PASSPHRASE)
    box = page.uefi_box
    page.load(Role.UEFI, cert, key)
    dialog = wait_for_passphrase_prompt(qtbot, box)
    assert dialog.isModal() and "locked.key" in dialog.prompt.text()
    assert dialog.passphrase_edit.echoMode() == QLineEdit.EchoMode.Password
    assert not dialog.error_label.isVisible()
    assert not page.isComplete()

    dialog.submit("not the passphrase")
    qtbot.waitUntil(lambda: dialog.error_label.isVisible() and box.task is None, timeout=LOAD_TIMEOUT_MS)
    assert dialog.error_label.text() == "Wrong passphrase. Please try again."
    assert dialog.isVisible() and dialog.passphrase_edit.isEnabled() and dialog.passphrase_edit.text() == ""
    assert box.loaded is None
    assert not page.isComplete() and not advance_button(wizard).isEnabled()

    with qtbot.waitSignal(box.loadFinished, timeout=LOAD_TIMEOUT_MS):
        dialog.submit(PASSPHRASE)
    assert box.passphrase_dialog is None and not dialog.isVisible()
    assert box.loaded is not None and box.details.thumbprint() == openssl_sha256(cert)
    assert dialog.attempts == 2
    assert page.isComplete() and advance_button(wizard).isEnabled()


def test_cancelled_passphrase_prompt_leaves_role_empty(qtbot, page, tmp_path):
    cert, key = make_cert(tmp_path, "locked", passphrase=PASSPHRASE)
    box = page.uefi_box
    page.load(Role.UEFI, cert, key)
    dialog = wait_for_passphrase_prompt(qtbot, box)
    with qtbot.waitSignal(box.loadFinished, timeout=LOAD_TIMEOUT_MS):
        dialog.reject()
    assert box.passphrase_dialog is None
    assert box.error_panel.isVisible() and "no passphrase" in box.error_panel.message_label.text()
    assert box.loaded is None and not page.isComplete() and not page.is_busy()


def test_pkcs12_with_passphrase(qtbot, wizard, page, tmp_path):
    cert, key = make_cert(tmp_path, "bundle")
    p12 = tmp_path / "bundle.pfx"
    subprocess.run(
        [require_tool("openssl"), "pkcs12", "-export", "-in", str(cert), "-inkey", str(key), "-out", str(p12),
         "-passout", f"pass:{PASSPHRASE}"],
        check=True, capture_output=True,
    )  # fmt: skip
    box = page.uefi_box
    page.load(Role.UEFI, p12)
    dialog = wait_for_passphrase_prompt(qtbot, box)
    assert "bundle.pfx" in dialog.prompt.text()
    with qtbot.waitSignal(box.loadFinished, timeout=LOAD_TIMEOUT_MS):
        dialog.submit(PASSPHRASE)
    assert box.details.thumbprint() == openssl_sha256(cert)
    assert box.files_label.text() == "From bundle.pfx"
    assert wizard.state.uefi_signing.key_path is None
    assert recipe_of(wizard.state)["signing"] == {"uefi_cert": str(p12), "key_passphrase": "prompt"}
    assert page.isComplete()


def test_mismatched_key_shows_error_inline(qtbot, wizard, page, tmp_path):
    cert, _ = make_cert(tmp_path, "one")
    _, other_key = make_cert(tmp_path, "two")
    box = load_and_wait(qtbot, page, Role.UEFI, cert, other_key)
    assert box.error_panel.isVisible()
    assert "does not belong" in box.error_panel.message_label.text()
    assert box.error_panel.hint_label.text()
    assert box.loaded is None and wizard.state.uefi_signing is None
    assert not page.isComplete()


def test_certificate_without_key_asks_for_key_file(qtbot, page, tmp_path):
    cert, key = make_cert(tmp_path, "split")
    box = page.uefi_box
    page.load(Role.UEFI, cert)
    qtbot.waitUntil(
        lambda: box.file_chooser is not None and box.file_chooser.isVisible(), timeout=LOAD_TIMEOUT_MS
    )
    chooser = box.file_chooser
    assert "Private key for split.crt" in chooser.windowTitle()
    assert box.loaded is None and not page.isComplete()
    with qtbot.waitSignal(box.loadFinished, timeout=LOAD_TIMEOUT_MS):
        chooser.findChild(QLineEdit, "fileNameEdit").setText(str(key))  # type the path, press "Use key"
        chooser.accept()
    assert box.loaded is not None and box.loaded.key_path == key
    assert page.isComplete()


def test_certificate_without_key_and_no_key_chosen(qtbot, page, tmp_path):
    cert, _ = make_cert(tmp_path, "split")
    box = page.uefi_box
    page.load(Role.UEFI, cert)
    qtbot.waitUntil(
        lambda: box.file_chooser is not None and box.file_chooser.isVisible(), timeout=LOAD_TIMEOUT_MS
    )
    with qtbot.waitSignal(box.loadFinished, timeout=LOAD_TIMEOUT_MS):
        box.file_chooser.reject()
    assert box.error_panel.isVisible() and "no private key" in box.error_panel.message_label.text()
    assert not page.is_busy() and not page.isComplete()


def test_garbage_file_shows_error_inline(qtbot, page, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"this is not a certificate\n" * 10)
    box = load_and_wait(qtbot, page, Role.UEFI, junk)
    assert box.error_panel.isVisible()
    assert "junk.pem" in box.error_panel.message_label.text()
    assert box.loaded is None and not page.isComplete()


def test_unexpected_error_in_a_load_is_shown_on_the_page(qtbot, page, tmp_path, monkeypatch):
    cert, key = make_cert(tmp_path, "good")
    hooked: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, e, tb: hooked.append(e))

    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr("wizard_pages.certificates.load_for_roles", broken)
    box = load_and_wait(qtbot, page, Role.UEFI, cert, key)
    assert [type(e) for e in hooked] == [RuntimeError]
    assert page.error_panel.isVisible() and "unexpected error" in page.error_panel.message_label.text()
    assert box.loaded is None and not page.isComplete()
    monkeypatch.undo()
    load_and_wait(qtbot, page, Role.UEFI, cert, key)  # the next attempt clears the notice
    assert not page.error_panel.isVisible() and page.isComplete()


def test_same_as_uefi_checkbox(qtbot, wizard, page, tmp_path):
    state = wizard.state
    uefi_cert, uefi_key = make_cert(tmp_path, "uefi")
    catalog_cert, catalog_key = make_cert(tmp_path, "catalog")
    catalog = page.catalog_box
    # Nothing loaded: the catalog says where its certificate comes from.
    assert "UEFI image signing certificate first" in catalog.details.placeholder.text()

    load_and_wait(qtbot, page, Role.UEFI, uefi_cert, uefi_key)
    assert catalog.details.thumbprint() == openssl_sha256(uefi_cert)
    assert catalog.files_label.text() == "Same certificate as UEFI image signing"
    assert state.catalog_signing.cert_path == uefi_cert and state.catalog_signing.signer is not None
    assert page.isComplete()

    catalog.same_check.setChecked(False)  # own certificate: nothing chosen yet
    assert not state.catalog_same_as_uefi
    assert catalog.load_button.isEnabled() and catalog.generate_button.isEnabled()
    assert catalog.details.placeholder.isVisible() and not catalog.files_label.isVisible()
    assert state.catalog_signing is None
    assert not page.isComplete()

    load_and_wait(qtbot, page, Role.CATALOG, catalog_cert, catalog_key)
    assert catalog.details.thumbprint() == openssl_sha256(catalog_cert)
    assert state.catalog_signing.cert_path == catalog_cert
    assert page.isComplete()
    uefi_paths = {"uefi_cert": str(uefi_cert), "uefi_key": str(uefi_key), "key_passphrase": "prompt"}
    assert recipe_of(state)["signing"] == {
        **uefi_paths,
        "catalog_cert": str(catalog_cert),
        "catalog_key": str(catalog_key),
    }

    catalog.same_check.setChecked(True)  # back to the UEFI certificate; the own one is remembered
    assert catalog.details.thumbprint() == openssl_sha256(uefi_cert)
    assert state.catalog_signing.cert_path == uefi_cert
    assert not catalog.load_button.isEnabled()
    assert recipe_of(state)["signing"] == uefi_paths  # no catalog certificate: the UEFI one signs
    catalog.same_check.setChecked(False)
    assert catalog.details.thumbprint() == openssl_sha256(catalog_cert)


def test_expired_uefi_certificate_blocks_the_catalog_too(qtbot, page, tmp_path):
    now = dt.datetime.now(dt.UTC)
    cert, key = make_cert(tmp_path, "old", not_before=now - dt.timedelta(days=730), days=1)
    load_and_wait(qtbot, page, Role.UEFI, cert, key)
    assert "error" in severities(page.catalog_box)
    assert not page.state.catalog_signing.usable


def test_recipe_dict_has_paths_and_never_the_passphrase(qtbot, wizard, page, tmp_path):
    cert, key = make_cert(tmp_path, "secret", passphrase=PASSPHRASE)
    box = page.uefi_box
    page.load(Role.UEFI, cert, key)
    dialog = wait_for_passphrase_prompt(qtbot, box)
    with qtbot.waitSignal(box.loadFinished, timeout=LOAD_TIMEOUT_MS):
        dialog.submit(PASSPHRASE)
    state = wizard.state
    recipe = recipe_of(state)
    assert recipe["signing"] == {"uefi_cert": str(cert), "uefi_key": str(key), "key_passphrase": "prompt"}
    dumped = json.dumps(recipe) + repr(state) + repr(state.uefi_signing)
    assert PASSPHRASE not in dumped and "horse" not in dumped
    assert "PRIVATE KEY" not in dumped and "KeySigner" not in dumped  # the in-memory key stays out


def test_signing_choice_recipe_dict_without_qt():
    state = WizardState()
    with pytest.raises(RecipeError, match="signing.uefi_cert"):  # no certificate chosen: no recipe yet
        recipe_of(state)
    state.uefi_signing = SigningChoice(Path("/k/uefi.p12"))
    assert recipe_of(state)["signing"] == {"uefi_cert": "/k/uefi.p12", "key_passphrase": "prompt"}
    state.catalog_same_as_uefi = False
    state.catalog_signing = SigningChoice(Path("/k/cat.crt"), Path("/k/cat.key"))
    assert recipe_of(state)["signing"] == {
        "uefi_cert": "/k/uefi.p12",
        "catalog_cert": "/k/cat.crt",
        "catalog_key": "/k/cat.key",
        "key_passphrase": "prompt",
    }
    assert not state.signing_ready  # paths alone are not loaded signers


def test_tab_order_and_accessible_names(page):
    uefi, catalog = page.uefi_box, page.catalog_box
    assert uefi.load_button.nextInFocusChain() is not None
    order = [uefi.load_button]
    widget = uefi.load_button
    for _ in range(12):
        widget = widget.nextInFocusChain()
        order.append(widget)
    wanted = [uefi.generate_button, uefi.details.sha256_value, uefi.details.findings, catalog.same_check,
              catalog.load_button, catalog.generate_button]  # fmt: skip
    positions = [order.index(w) for w in wanted]
    assert positions == sorted(positions)
    assert uefi.details.sha256_value.accessibleName() == "SHA-256 thumbprint"
    assert uefi.details.findings.accessibleName() == "Certificate findings"


def test_closing_generate_dialog_while_generating_writes_nothing(qtbot, page, tmp_path):
    box = page.uefi_box
    dialog = open_generate_dialog(qtbot, box)
    out = tmp_path / "abandoned"
    dialog.folder_edit.setText(str(out))
    dialog.set_key_type("rsa4096")  # slow enough (hundreds of ms) to close the dialog meanwhile
    qtbot.mouseClick(dialog.generate_button, Qt.MouseButton.LeftButton)
    task = dialog._task
    assert task is not None and dialog.busy_bar.isVisible() and not dialog.generate_button.isEnabled()
    dialog.reject()
    qtbot.waitUntil(lambda: task.done, timeout=LOAD_TIMEOUT_MS)
    assert task.cancel_token.cancelled
    assert not out.exists() or list(out.iterdir()) == []
    assert box.loaded is None and box.generate_dialog is None
