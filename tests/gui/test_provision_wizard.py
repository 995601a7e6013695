"""The Provision a VM disk wizard, walked for real: a template built from the demo image (Debian's snakeoil
key signs its UKI, an openssl-made certificate its catalog), a vTPM created through the Target page (swtpm),
the PCR policy predicted on OVMF's snakeoil variable store, and the real ``provision``.

Graded by independent readers: the host's cryptsetup reads the written container (a ``systemd-tpm2`` token
and keyslot; the provisioning passphrase refused unless it was kept), and the file system says whether an
output or a staging directory was left behind. Refusals (a wrong passphrase, a signer nobody trusts) come
from the engine and must show inline on the Provision page with nothing written; a cancel stops the real
engine while it writes (its progress is held at the write step until the page cancels). Shielding data made by
the engine for the template (an openssl-made fabric key pair opens it) gives the passphrase and a host name,
which mtools finds in the written ESP as a TPM-sealed systemd credential.
"""

from __future__ import annotations

import base64
import logging
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from app.boot import vm
from app.gui.provision_state import CREATE_VTPM, SHIELDING_DATA, SRK_FILE, ProvisionState, TrustedFile
from app.gui.provision_wizard import ProvisionPageId, ProvisionWizard
from app.gui.state import CatalogChoice, OutputChoice, SigningChoice
from app.progress import ProgressState
from app.shielding.guardians import import_guardian, new_owner
from app.shielding.payload import Payload
from app.shielding.qualifiers import qualifier_for
from app.shielding.shd import create_shielding_data
from app.signing.certificates import describe_certificate
from app.signing.keys import load_certificates
from app.template.provision import NEVER_SEAL, UNLOCK_PHASE, provision
from app.template.recipe import CatalogOptions, OutputOptions, PcrOptions
from app.tpm.vtpm_dir import CREDENTIALS_KEY_FILE, create_vtpm, srk_path
from tests.build_helpers import PASSPHRASE, build, extract_partition, make_keys, make_recipe, sha256_file
from tests.gui.conftest import make_signing_files
from tests.luks.cryptsetup import luks_dump, test_passphrase
from tests.shielding.keys import openssl_pair

pytestmark = pytest.mark.slow

SNAKEOIL_VARS = vm.Firmware.snakeoil().vars_template
ROOT = 3  # the demo image's root partition, the one the template encrypts
TASK_TIMEOUT_MS = 60_000
RUN_TIMEOUT_MS = 180_000


@dataclass(frozen=True)
class Built:
    template: Path
    certs: list[Path]


@pytest.fixture(scope="module")
def built(demo_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A template (its UKI also at \\EFI\\BOOT\\BOOTX64.EFI, so OVMF boots it without shim) and the
    certificates of its two signers."""
    work = tmp_path_factory.mktemp("provision-gui")
    keys = make_keys(work)
    result = build(make_recipe(demo_image, work / "template.raw", keys, install_removable=True), keys)
    work.chmod(0o555)  # nothing may be written beside the template by these tests
    return Built(result.output, [keys.uefi_cert, keys.catalog.cert_path])


@dataclass(frozen=True)
class Shielding:
    """Shielding data for the built template (and for another version of it), and the key pair of the
    fabric it was made for."""

    data: Path
    other_version: Path
    cert: Path
    key: Path


#: The systemd-creds header of a credential sealed to a TPM (CRED_AES256_GCM_BY_TPM2_HMAC).
TPM_CREDENTIAL_MAGIC = bytes.fromhex("0c7cc07b117645919c4b0bea08bc20fe")
HOSTNAME = "vm-gui"


@pytest.fixture(scope="module")
def shielding(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Shielding:
    d = tmp_path_factory.mktemp("shielding")
    store = d / "guardians"
    owner = new_owner("owner", store=store)
    key, crt = openssl_pair(d, "fabric", "rsa:3072")
    fabric = import_guardian("fabric", crt, store=store)
    exact = qualifier_for(built.template)
    other = type(exact)(exact.signer_sha256, exact.template_name, "9.9.9.9", "equals")
    made = []
    for name, qualifier in (("data.shd", exact), ("other.shd", other)):
        payload = Payload(bytearray(PASSPHRASE.encode()), hostname=HOSTNAME, user_data=b"#cloud-config\n")
        (d / name).write_bytes(create_shielding_data(owner, [fabric], [qualifier], "shielded", payload))
        made.append(d / name)
    return Shielding(made[0], made[1], crt, key)


@pytest.fixture
def pwizard(qtbot, runner) -> ProvisionWizard:
    w = ProvisionWizard(runner)
    qtbot.addWidget(w)
    w.resize(1000, 700)
    w.show()
    qtbot.waitExposed(w)
    return w


def idle(qtbot, page, timeout: int = TASK_TIMEOUT_MS) -> None:
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=timeout)


def choose_template(qtbot, w: ProvisionWizard, template: Path, certs: list[Path]) -> None:
    page = w.template_page
    page.set_template(template)
    for cert in certs:
        page.add_certificate(cert)
        qtbot.waitUntil(
            lambda cert=cert: any(t.path == cert for t in w.state.trusted), timeout=TASK_TIMEOUT_MS
        )
    qtbot.waitUntil(lambda: not page.is_busy() and page.report is not None, timeout=TASK_TIMEOUT_MS)


def next_page(qtbot, w: ProvisionWizard, expected: ProvisionPageId) -> None:
    assert w.currentPage().isComplete()
    qtbot.mouseClick(w.button(QWizard.WizardButton.NextButton), Qt.MouseButton.LeftButton)
    assert w.currentId() == expected


def to_output_page(qtbot, w: ProvisionWizard, built: Built, tmp_path: Path, certs: list[Path] | None = None,
                   srk_file: Path | None = None) -> None:  # fmt: skip
    """Template → Target (a vTPM created on the page, or ``srk_file``) → PCR policy (snakeoil store)."""
    choose_template(qtbot, w, built.template, built.certs if certs is None else certs)
    next_page(qtbot, w, ProvisionPageId.TARGET)
    target = w.target_page
    if srk_file is None:
        target.create_vtpm(tmp_path / "vm-tpm")
    else:
        target.set_srk_file(srk_file)
    idle(qtbot, target)
    assert w.state.srk is not None, target.error_panel.message_label.text()
    next_page(qtbot, w, ProvisionPageId.POLICY)
    policy = w.policy_page
    policy.set_profile("vars", SNAKEOIL_VARS)
    idle(qtbot, policy)
    assert policy.sealed is not None, policy.error_panel.message_label.text()
    next_page(qtbot, w, ProvisionPageId.OUTPUT)


def provision_now(qtbot, w: ProvisionWizard, output: Path, passphrase: str = PASSPHRASE, keep: bool = False):
    page = w.output_page
    qtbot.keyClicks(page.passphrase_edit, passphrase)
    page.keep_check.setChecked(keep)
    page.set_output(output)
    assert page.isComplete()
    qtbot.mouseClick(w.button(QWizard.WizardButton.CommitButton), Qt.MouseButton.LeftButton)
    assert w.currentId() == ProvisionPageId.PROVISION
    run = w.run_page
    qtbot.waitUntil(lambda: not run.is_running(), timeout=RUN_TIMEOUT_MS)
    return run


@pytest.mark.parametrize("keep", [False, True], ids=["passphrase-removed", "passphrase-kept"])
def test_the_flow_writes_a_vm_disk_with_a_tpm_token(qtbot, pwizard, built, tmp_path, caplog, keep):
    caplog.set_level(logging.DEBUG)
    w, before = pwizard, sha256_file(built.template)
    assert "▸ Template" in w.steps.labels[ProvisionPageId.TEMPLATE].text()
    to_output_page(qtbot, w, built, tmp_path)
    # Page 1 showed who signed it and every check passed against the two trusted certificates.
    identity = w.template_page.identity_label.text()
    assert "Pipeline test" in identity and "1.2.3.4" in identity and "catalog-signer" in identity
    assert w.template_page.checks.rows() and all(ok for ok, _ in w.template_page.checks.rows())
    # Page 2 showed the SRK it created.
    srk_text = w.target_page.srk_label.text()
    assert "NIST P-256" in srk_text and str(srk_path(tmp_path / "vm-tpm")) in srk_text
    assert (tmp_path / "vm-tpm" / "srk.tpm2b_public").is_file()

    out = tmp_path / "vm.raw"
    run = provision_now(qtbot, w, out, keep=keep)
    assert run.result is not None, run.error_panel.message_label.text()
    assert run.isComplete() and out.is_file() and sha256_file(built.template) == before
    assert run.steps_seen and run.steps.count() == len(run.steps_seen)  # whatever steps the engine reports
    assert all(run.steps.item(i).text().startswith("✓ ") for i in range(run.steps.count()))
    # The passphrase did its work: wiped from the state and the field, and never logged.
    assert w.state.passphrase is None and w.output_page.passphrase_edit.text() == ""
    assert PASSPHRASE not in caplog.text

    next_page(qtbot, w, ProvisionPageId.DONE)
    done, result = w.done_page, run.result
    assert done.policy_label.text() == result.policy_hash and len(result.policy_hash) == 64
    assert done.sealed_values() == result.pcr_values and set(result.pcr_values) == {4, 7, 11}
    assert "✓ Provision" in w.steps.labels[ProvisionPageId.PROVISION].text()
    (container,) = result.containers
    row = done.container_rows()[0]
    assert (
        row[0] == str(ROOT)
        and row[1] == str(container.tpm_keyslot)
        and f"token {container.token_id}" in row[2]
    )
    assert ("kept" in row[3]) if keep else (f"keyslot {container.removed_keyslot} removed" in row[3])

    # The host's cryptsetup: a systemd-tpm2 token bound to the new keyslot; the passphrase only if kept.
    part = extract_partition(out, ROOT, tmp_path / "root.luks")
    dump = luks_dump(part)
    assert "systemd-tpm2" in dump and "tpm2-hash-pcrs:   4+7+11" in dump
    assert f"  {container.tpm_keyslot}: luks2" in dump
    code = test_passphrase(part, PASSPHRASE, tmp_path)
    assert code == 0 if keep else code != 0


def browse(qtbot, page, button, key: str, path: Path, filter_text: str) -> None:
    """Click ``button`` and choose ``path`` in the non-blocking file dialog it opens, as a user does."""
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    dialog = page.open_dialog(key)
    assert dialog is not None and dialog.isVisible() and filter_text in dialog.nameFilters()
    dialog.selectFile(str(path))
    dialog.accept()
    qtbot.waitUntil(lambda: page.open_dialog(key) is None)


def choose_shielding_data(qtbot, w: ProvisionWizard, shd: Path, shielding: Shielding) -> None:
    page = w.output_page
    assert not page.shd_button.isEnabled()  # typed is the default
    page.shielding_radio.click()
    assert w.state.passphrase_source == SHIELDING_DATA and page.shd_button.isEnabled()
    assert not page.passphrase_edit.isEnabled() and not page.isComplete()
    browse(qtbot, page, page.shd_button, "shielding-data", shd, "Shielding data (*.shd)")
    certificates = "Certificates (*.crt *.pem *.cer *.der)"
    browse(qtbot, page, page.cert_button, "guardian-cert", shielding.cert, certificates)
    assert not page.isComplete()  # the key is still missing
    browse(qtbot, page, page.key_button, "guardian-key", shielding.key, "Private keys (*.key *.pem *.der)")
    assert (w.state.shielding_data, w.state.guardian_cert, w.state.guardian_key) == (
        shd, shielding.cert, shielding.key)  # fmt: skip
    assert page.shd_label.full_text() == str(shd)


def commit_and_wait(qtbot, w: ProvisionWizard):
    assert w.output_page.isComplete()
    qtbot.mouseClick(w.button(QWizard.WizardButton.CommitButton), Qt.MouseButton.LeftButton)
    assert w.currentId() == ProvisionPageId.PROVISION
    run = w.run_page
    qtbot.waitUntil(lambda: not run.is_running(), timeout=RUN_TIMEOUT_MS)
    return run


def test_the_passphrase_and_a_host_name_come_from_shielding_data(
    qtbot, pwizard, built, shielding, tmp_path, caplog
):
    """The page's shielding data is opened with the fabric's key pair; its passphrase provisions the disk and
    its host name is written into the ESP as a credential sealed to the vTPM the wizard created."""
    caplog.set_level(logging.DEBUG)
    w = pwizard
    to_output_page(qtbot, w, built, tmp_path)
    assert (tmp_path / "vm-tpm" / CREDENTIALS_KEY_FILE).is_file()
    choose_shielding_data(qtbot, w, shielding.data, shielding)
    summary = w.output_page.summary_label.text()
    assert str(tmp_path / "vm-tpm" / CREDENTIALS_KEY_FILE) in summary
    out = tmp_path / "vm.raw"
    w.output_page.set_output(out)
    run = commit_and_wait(qtbot, w)
    assert run.result is not None, run.error_panel.message_label.text()
    assert out.is_file() and run.steps_seen[0] == "Opening the shielding data"
    part = extract_partition(out, ROOT, tmp_path / "root.luks")
    assert test_passphrase(part, PASSPHRASE, tmp_path) != 0 and "systemd-tpm2" in luks_dump(part)

    next_page(qtbot, w, ProvisionPageId.DONE)
    done = w.done_page
    written = done.credentials_written()
    assert written == list(run.result.credentials) and done.credentials_label.isVisibleTo(done)
    names = sorted(p.lower().rsplit(".efi.extra.d/", 1)[1] for p in written)
    assert names == ["systemd.unit-dropin.cloud-init-local.service.cred", "tmpfiles.extra.cred"]
    assert "sealed to the vTPM's credentials key under PCRs 4, 7" in done.credentials_note.text()
    # mtools reads the written ESP: each credential is a TPM-sealed blob, in systemd-creds' base64 text
    # for the services that import tmpfiles.extra, as it is for the generator that reads the drop-in.
    esp = extract_partition(out, 1, tmp_path / "esp.img")
    for path in written:
        data = subprocess.run(["mtype", "-i", str(esp), f"::{path}"], capture_output=True, check=True,
                              env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}).stdout  # fmt: skip
        cred = data if "unit-dropin" in path else base64.b64decode(data)
        assert cred[:16] == TPM_CREDENTIAL_MAGIC and HOSTNAME.encode() not in cred
    # Nothing of the payload reached the log (the shielding data's path did).
    assert PASSPHRASE not in caplog.text and HOSTNAME not in caplog.text
    assert str(shielding.data) in caplog.text
    assert w.state.passphrase is None and w.output_page.passphrase_edit.text() == ""


def test_an_encrypted_recipient_key_is_opened_with_the_passphrase_typed(
    qtbot, pwizard, built, shielding, tmp_path, caplog
):
    """The recipient's key encrypted by openssl: its passphrase is typed on the page, used in the task, and
    wiped (in the state and the task's copy) once the disk is written; it never reaches the log."""
    caplog.set_level(logging.DEBUG)
    locked, secret = tmp_path / "fabric-locked.key", "recipient key passphrase"
    subprocess.run(["openssl", "pkey", "-in", str(shielding.key), "-aes256", "-passout", f"pass:{secret}",
                    "-out", str(locked)], check=True, capture_output=True)  # fmt: skip
    w = pwizard
    to_output_page(qtbot, w, built, tmp_path)
    choose_shielding_data(qtbot, w, shielding.data, shielding)
    page = w.output_page
    page.set_guardian_key(locked)
    assert page.key_passphrase_edit.isEnabled()
    qtbot.keyClicks(page.key_passphrase_edit, secret)
    assert bytes(w.state.guardian_key_passphrase) == secret.encode()
    held = w.state.guardian_key_passphrase
    page.set_output(tmp_path / "vm.raw")
    run = commit_and_wait(qtbot, w)
    assert run.result is not None, run.error_panel.message_label.text()
    assert held == bytearray(len(secret)) and w.state.guardian_key_passphrase is None  # wiped when written
    assert page.key_passphrase_edit.text() == "" and secret not in caplog.text


def test_shielding_data_for_another_template_version_is_refused_inline(
    qtbot, pwizard, built, shielding, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    w = pwizard
    to_output_page(qtbot, w, built, tmp_path)
    choose_shielding_data(qtbot, w, shielding.other_version, shielding)
    out = tmp_path / "vm.raw"
    w.output_page.set_output(out)
    run = commit_and_wait(qtbot, w)
    assert run.result is None and run.error_panel.isVisible()
    message = run.error_panel.message_label.text()
    assert "does not apply" in message and "9.9.9.9" in message
    assert "shield test" in run.error_panel.hint_label.text()
    assert run.back_button.isVisible() and "Nothing was written" in run.nothing_written_label.text()
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".vm.raw")]
    assert PASSPHRASE not in caplog.text


def test_shielding_data_with_values_needs_the_credentials_key(qtbot, pwizard, built, shielding, tmp_path):
    """An SRK file with no credentials.tpm2b_public beside it: the page says so before, the engine refuses
    the host name it could not deliver, inline, and writes nothing."""
    vtpm = tmp_path / "elsewhere"
    create_vtpm(vtpm)
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "srk.tpm2b_public").write_bytes(srk_path(vtpm).read_bytes())
    w = pwizard
    to_output_page(qtbot, w, built, tmp_path, srk_file=lone / "srk.tpm2b_public")
    assert w.state.srk_mode == SRK_FILE
    choose_shielding_data(qtbot, w, shielding.data, shielding)
    assert "No credentials key" in w.output_page.summary_label.text()
    out = tmp_path / "vm.raw"
    w.output_page.set_output(out)
    run = commit_and_wait(qtbot, w)
    assert run.result is None
    assert "no credentials key was given" in run.error_panel.message_label.text()
    assert not out.exists()


def test_a_wrong_passphrase_is_refused_inline_and_nothing_is_written(qtbot, pwizard, built, tmp_path):
    w = pwizard
    to_output_page(qtbot, w, built, tmp_path)
    out = tmp_path / "vm.raw"
    run = provision_now(qtbot, w, out, passphrase="not the provisioning passphrase")
    assert run.result is None and not run.isComplete()
    assert run.error_panel.isVisible()
    assert "does not open partition 3" in run.error_panel.message_label.text()
    assert "passphrase the template was built with" in run.error_panel.hint_label.text()
    assert run.back_button.isVisible() and "Nothing was written" in run.nothing_written_label.text()
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".vm.raw")]
    # Back to the choices, retype, and it works.
    qtbot.mouseClick(run.back_button, Qt.MouseButton.LeftButton)
    assert w.currentId() == ProvisionPageId.OUTPUT
    w.output_page.passphrase_edit.clear()
    run = provision_now(qtbot, w, out)
    assert run.result is not None and out.is_file()


def test_a_template_signed_by_someone_else_is_refused(qtbot, pwizard, built, tmp_path):
    """Page 1 shows the failed checks and keeps Next off; and when its verification has not finished (a big
    template), the Provision page refuses the template inline, with nothing written."""
    stranger = make_signing_files(tmp_path / "stranger", common_name="Somebody else").cert
    w = pwizard
    choose_template(qtbot, w, built.template, [stranger])
    page = w.template_page
    assert page.verification_failed() and not page.isComplete()
    assert not w.button(QWizard.WizardButton.NextButton).isEnabled()
    assert "provisioning refuses this template" in page.status_label.text()
    assert any(not ok for ok, _ in page.checks.rows())

    # A page-1 verification that is still running lets the user go on; the engine then refuses.
    hold = threading.Event()

    def slow_verify(template, trusted, *, progress, cancel):
        while not hold.wait(0.01):
            cancel.check()
        raise AssertionError("never finishes")

    page._verifier = slow_verify
    page.trust_list.setCurrentRow(0)
    page.remove_selected()  # the trust changes: the template is verified again, slowly this time
    page.add_certificate(stranger)
    qtbot.waitUntil(lambda: page.task("verify") is not None and page.isComplete(), timeout=TASK_TIMEOUT_MS)
    vtpm = tmp_path / "made-by-engine"
    create_vtpm(vtpm)
    next_page(qtbot, w, ProvisionPageId.TARGET)
    w.target_page.set_srk_file(srk_path(vtpm))
    idle(qtbot, w.target_page)
    assert "NIST P-256" in w.target_page.srk_label.text()
    next_page(qtbot, w, ProvisionPageId.POLICY)
    w.policy_page.set_profile("vars", SNAKEOIL_VARS)
    idle(qtbot, w.policy_page)
    next_page(qtbot, w, ProvisionPageId.OUTPUT)
    out = tmp_path / "vm.raw"
    run = provision_now(qtbot, w, out)
    assert page.task("verify") is None  # entering the Provision page stopped the informational one
    assert run.result is None and "failed verification" in run.error_panel.message_label.text()
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".vm.raw")]


def blocking_provisioner(seen_staging: list[bool], output: Path):
    """The real provisioning, its progress held - once the engine has made its staging directory beside the
    output, at the first step it then begins (the disk being written) - until the page cancels."""

    def staging_exists() -> bool:
        return any(p.name.startswith(f".{output.name}.") for p in output.parent.iterdir())

    class HoldWhileWriting(ProgressState):
        def __init__(self, outer: ProgressState, cancel) -> None:
            super().__init__()
            self.outer, self.cancel = outer, cancel

        def begin(self, step: str, total: int) -> None:
            self.outer.begin(step, total)
            if not seen_staging and staging_exists():
                seen_staging.append(True)
                while not self.cancel.cancelled:
                    threading.Event().wait(0.01)

        def update(self, done: int) -> None:
            self.outer.update(done)

    def run(request, passphrase, engine_progress, *, progress, cancel):
        try:
            return provision(
                request, passphrase, progress=HoldWhileWriting(engine_progress, cancel), cancel=cancel
            )
        finally:
            passphrase[:] = bytes(len(passphrase))

    return run


def test_cancel_during_provisioning_leaves_nothing(qtbot, pwizard, built, tmp_path):
    w = pwizard
    to_output_page(qtbot, w, built, tmp_path)
    out = tmp_path / "vm.raw"
    seen: list[bool] = []
    w.run_page._provisioner = blocking_provisioner(seen, out)
    page = w.output_page
    qtbot.keyClicks(page.passphrase_edit, PASSPHRASE)
    page.set_output(out)
    qtbot.mouseClick(w.button(QWizard.WizardButton.CommitButton), Qt.MouseButton.LeftButton)
    run, panel = w.run_page, w.run_page.progress_panel
    qtbot.waitUntil(lambda: seen == [True], timeout=RUN_TIMEOUT_MS)  # a staging directory exists now
    qtbot.waitUntil(lambda: len(run.steps_seen) >= 1 and panel.isVisible(), timeout=TASK_TIMEOUT_MS)
    # Two stages, like Generate: Cancel asks inline, Keep running goes on, Stop stops.
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert panel.stop_button.isVisible() and "Nothing will be kept" in panel.confirm_label.text()
    qtbot.mouseClick(panel.keep_button, Qt.MouseButton.LeftButton)
    assert run.is_running() and not panel.stop_button.isVisible()
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not run.is_running(), timeout=TASK_TIMEOUT_MS)
    assert run.error is not None and run.error.message == "Cancelled"
    assert run.step_label.text() == "Cancelled." and "Nothing was written" in run.nothing_written_label.text()
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".vm.raw")]


def test_closing_during_provisioning_asks_then_stops_first(qtbot, pwizard, built, tmp_path):
    w = pwizard
    to_output_page(qtbot, w, built, tmp_path)
    out = tmp_path / "vm.raw"
    seen: list[bool] = []
    w.run_page._provisioner = blocking_provisioner(seen, out)
    qtbot.keyClicks(w.output_page.passphrase_edit, PASSPHRASE)
    w.output_page.set_output(out)
    qtbot.mouseClick(w.button(QWizard.WizardButton.CommitButton), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: seen == [True], timeout=RUN_TIMEOUT_MS)
    panel = w.run_page.progress_panel
    w.reject()
    assert w.isVisible() and panel.stop_button.isVisible() and "close" in panel.confirm_label.text()
    with qtbot.waitSignal(w.finished, timeout=TASK_TIMEOUT_MS):
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    assert not w.isVisible() and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".vm.raw")]
    assert w.state.passphrase is None


def test_pcrs_5_10_15_cannot_be_chosen_and_an_empty_selection_is_refused(qtbot, pwizard, built, tmp_path):
    w = pwizard
    w.state.template = built.template
    w.state.srk_mode = CREATE_VTPM
    page = w.policy_page
    page.initializePage()
    assert sorted(page.checklist.checks) == [4, 7, 11]
    never = page.never_label.text()
    for pcr, why in NEVER_SEAL.items():
        assert f"{pcr}: {why}" in never
    page.set_profile("vars", SNAKEOIL_VARS)
    idle(qtbot, page)
    assert page.isComplete() and set(page.values()) == {4, 7, 11}
    assert UNLOCK_PHASE in page.table.item(2, 2).text() and "Policy hash" in page.policy_label.text()
    for check in page.checklist.checks.values():
        check.setChecked(False)
    assert not page.isComplete() and page.values() == {}
    assert "No PCRs selected" in page.problem() and page.problem_label.isVisibleTo(page)
    page.checklist.checks[7].setChecked(True)
    assert page.isComplete() and set(page.values()) == {7} and not page.problem()
    # A bank the vTPM created here does not have is refused.
    w.state.vtpm_banks = ("sha256",)
    page.bank_combo.setCurrentIndex(page.bank_combo.findData("sha1"))
    idle(qtbot, page)
    assert "only the SHA-256 bank" in page.problem()
    assert not page.isComplete()


def test_creating_a_vtpm_in_a_non_empty_directory_shows_the_engines_error(qtbot, pwizard, tmp_path):
    w = pwizard
    page = w.target_page
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("someone's")
    page.create_vtpm(busy)
    idle(qtbot, page)
    assert page.error_panel.isVisibleTo(page)
    assert "already exists and is not an empty directory" in page.error_panel.message_label.text()
    assert "never overwritten" in page.error_panel.hint_label.text()
    assert w.state.srk is None and not page.isComplete()
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    # A new directory works, and shows the SRK; an RSA one when asked.
    page.kind_combo.setCurrentIndex(page.kind_combo.findData("rsa"))
    page.create_vtpm(tmp_path / "fresh")
    idle(qtbot, page)
    assert w.state.srk is not None and w.state.srk.kind == "rsa" and not page.error_panel.isVisibleTo(page)
    assert "RSA 2048" in page.srk_label.text() and page.isComplete()


def test_an_existing_output_is_replaced_only_when_confirmed_inline(qtbot, pwizard, tmp_path):
    w = pwizard
    page = w.output_page
    existing = tmp_path / "vm.raw"
    existing.write_bytes(b"an older disk")
    qtbot.keyClicks(page.passphrase_edit, "x")
    page.set_output(existing)
    assert page.replace_panel.isVisibleTo(page) and str(existing) in page.replace_panel.label.text()
    assert not page.isComplete() and not page.validatePage()
    qtbot.mouseClick(page.replace_panel.yes_button, Qt.MouseButton.LeftButton)
    assert not page.replace_panel.isVisibleTo(page) and page.isComplete()
    assert page.validatePage() and w.state.overwrite
    # Another existing file asks again.
    other = tmp_path / "other.vhdx"
    other.write_bytes(b"x")
    page.set_output(other)
    assert page.replace_panel.isVisibleTo(page) and not page.isComplete() and w.state.out_format == "vhdx"
    page.passphrase_edit.clear()
    assert w.state.passphrase is None


def test_the_finished_page_opens_the_flow_on_the_template_just_built(qtbot, wizard, tmp_path):
    files = make_signing_files(tmp_path / "sig", common_name="Finished catalog signer")
    st = wizard.state
    choice = SigningChoice(files.cert, files.key, files.signer,
                           describe_certificate(files.signer.certificate, purpose="catalog"))  # fmt: skip
    st.uefi_signing = st.catalog_signing = choice
    st.catalog = CatalogChoice(CatalogOptions("Demo web server", "1.2.3.4"))
    template = tmp_path / "demo.raw"
    template.write_bytes(b"\0" * 4096)
    st.output = OutputChoice(
        OutputOptions(template, "raw"), result=SimpleNamespace(output=template, summary={})
    )
    st.pcr = PcrOptions(firmware_vars=Path(SNAKEOIL_VARS), pcrs=[7, 11], bank="sha256")
    finished = wizard.finished_page
    finished.initializePage()
    assert finished.provision_button.isEnabled()
    qtbot.mouseClick(finished.provision_button, Qt.MouseButton.LeftButton)
    pw = wizard.provision_wizard
    assert pw is not None and pw.isVisible() and not pw.isModal() and wizard.isVisible()
    qtbot.addWidget(pw)
    assert pw.state.template == template
    assert [t.certificates for t in pw.state.trusted] == [[files.signer.certificate]]
    assert pw.state.pcr.firmware == ("vars", Path(SNAKEOIL_VARS)) and pw.state.pcr.pcrs == [7, 11]
    assert pw.template_page.template_label.full_text() == str(template)
    # Asking again raises the same window.
    qtbot.mouseClick(finished.provision_button, Qt.MouseButton.LeftButton)
    assert wizard.provision_wizard is pw
    # The template wizard closing closes it too.
    wizard.done(0)
    assert not pw.isVisible()


def test_the_state_builds_the_engines_request(tmp_path):
    state = ProvisionState(template=tmp_path / "t.raw")
    with pytest.raises(Exception, match="not chosen yet"):
        state.request()
    certs = load_certificates(vm.SNAKEOIL_CERT)
    state = ProvisionState.for_template(tmp_path / "t.raw", [TrustedFile(vm.SNAKEOIL_CERT, certs)] * 2)
    assert state.trusted_certificates() == certs
    state.set_passphrase("secret")
    held = state.passphrase
    copy = state.passphrase_copy()
    state.clear_secrets()
    assert held == bytearray(len(b"secret")) and state.passphrase is None and copy == bytearray(b"secret")


def test_the_state_holds_the_shielding_data_choice_as_paths(tmp_path):
    state = ProvisionState(template=tmp_path / "t.raw", srk_path=tmp_path / "tpm" / "srk.tpm2b_public")
    assert state.shielding_source() is None and not state.passphrase_ready()
    state.passphrase_source = SHIELDING_DATA
    state.shielding_data, state.guardian_cert = tmp_path / "d.shd", tmp_path / "g.crt"
    assert not state.passphrase_ready()
    with pytest.raises(Exception, match="not chosen yet"):
        state.shielding_source()
    state.guardian_key = tmp_path / "g.key"
    assert state.passphrase_ready()
    source = state.shielding_source()
    assert source is not None and source.key == tmp_path / "g.key"
    assert source.credentials_key == tmp_path / "tpm" / CREDENTIALS_KEY_FILE  # beside the SRK file
    state.srk_mode, state.vtpm_dir = CREATE_VTPM, tmp_path / "made"
    assert state.credentials_key_path() == tmp_path / "made" / CREDENTIALS_KEY_FILE


def test_the_encryption_page_points_to_the_provision_flow(wizard):
    subtitle = wizard.encryption_page.subTitle()
    assert "Provision a VM disk" in subtitle and "TPM" in subtitle
