"""The Finished ("Template ready") page on its own: artefacts, digests, Open folder/report, Verify, Cancel.

A BuildResult-shaped object points at real files written here, its summary holding their sizes and
digests as the build records them (graded by hashlib over those files); the page must show those and never
read the files again. The verifier is the real ``verify_template`` where a real template is needed (see
test_generate_page.py, which runs the whole build and then this page) and a stand-in here.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QUrl

from app.gui.state import CatalogChoice, OutputChoice, SigningChoice, WizardState
from app.signing.certificates import describe_certificate
from app.template.recipe import CatalogOptions, OutputOptions
from app.template.verify import Check, TemplateReport
from tests.gui.conftest import make_signing_files
from wizard_pages.finished import FinishedPage

TASK_TIMEOUT_MS = 30_000
MiB = 1024 * 1024


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_result(tmp_path: Path) -> SimpleNamespace:
    out = tmp_path / "out"
    out.mkdir()
    template = out / "demo.raw"
    with open(template, "wb") as f:  # sparse, with some data: holes hash as zeros
        f.truncate(12 * MiB)
        f.seek(5 * MiB)
        f.write(os.urandom(300_000))
    files = {
        "output": template,
        "catalog": out / "demo.raw.vsc",
        "manifest": out / "demo.raw.manifest.json",
        "manifest_signature": out / "demo.raw.manifest.json.p7s",
        "report": out / "demo.raw.report.html",
    }
    for name, path in files.items():
        if name != "output":
            path.write_bytes(os.urandom(1000 + len(name)))
    roles = {"output": "template"}
    artefacts = [
        {"role": roles.get(name, name), "path": str(path), "size_bytes": path.stat().st_size,
         "sha256": sha256_of(path)}
        for name, path in files.items()
    ]  # fmt: skip
    return SimpleNamespace(**files, summary={"ok": True, "artefacts": artefacts})


@pytest.fixture
def state(tmp_path: Path, fake_result) -> WizardState:
    files = make_signing_files(tmp_path / "sig", common_name="Finished page catalog signer")
    st = WizardState()
    choice = SigningChoice(files.cert, files.key, files.signer,
                           describe_certificate(files.signer.certificate, purpose="catalog"))  # fmt: skip
    st.uefi_signing = st.catalog_signing = choice
    st.catalog = CatalogChoice(CatalogOptions("Demo web server", "1.2.3.4"))
    st.output = OutputChoice(OutputOptions(fake_result.output, "raw"), result=fake_result)
    return st


class Opener:
    def __init__(self) -> None:
        self.urls: list[QUrl] = []

    def __call__(self, url: QUrl) -> bool:
        self.urls.append(url)
        return True


def make_page(qtbot, runner, state, **kwargs) -> FinishedPage:
    page = FinishedPage(state, runner, **kwargs)
    qtbot.addWidget(page)
    page.resize(900, 560)
    page.show()
    qtbot.waitExposed(page)
    return page


def test_lists_artefacts_with_size_and_sha256(qtbot, runner, state, fake_result):
    page = make_page(qtbot, runner, state)
    assert page.title() == "Template ready" and page.isFinalPage()
    page.initializePage()
    names = [page.table.item(r, 0).text() for r in range(page.table.rowCount())]
    assert names == ["Template", "Signature catalog", "Manifest", "Manifest signature", "Report"]
    expected = {
        p.name: sha256_of(p)
        for p in (
            fake_result.output,
            fake_result.catalog,
            fake_result.manifest,
            fake_result.manifest_signature,
            fake_result.report,
        )
    }
    assert page.table_digests() == expected
    assert page.digests[fake_result.output].size == 12 * MiB
    assert page.table.item(0, 2).text() == "12 MiB"
    # The MS Summary page's content: template identity, catalog signer and issuer.
    identity = page.identity_label.text()
    assert "Demo web server" in identity and "1.2.3.4" in identity
    assert "Finished page catalog signer" in identity and "issued by" in identity
    # Entering again (Back/Next) changes nothing.
    page.initializePage()
    assert not page.is_busy() and page.table_digests() == expected


def test_the_digests_come_from_the_build_result_not_from_reading_the_files(
    qtbot, runner, state, fake_result, monkeypatch
):
    """Issue 13: the page re-read and re-hashed every artefact (a second multi-GB read of a real template)
    although the build result holds their digests; any open of an artefact or any SHA-256 now fails."""
    artefacts = {str(p) for p in (fake_result.output, fake_result.catalog, fake_result.manifest,
                                  fake_result.manifest_signature, fake_result.report)}  # fmt: skip
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, *args, **kwargs):
        if str(file) in artefacts:
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def spy_os_open(path, *args, **kwargs):
        if str(path) in artefacts:
            opened.append(str(path))
        return real_os_open(path, *args, **kwargs)

    def no_hashing(*args, **kwargs):
        raise AssertionError("the Finished page hashed something")

    page = make_page(qtbot, runner, state)
    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr(hashlib, "sha256", no_hashing)
    page.initializePage()
    qtbot.wait(200)  # a background task would have started by now
    assert not page.is_busy() and runner.running == frozenset()
    monkeypatch.undo()
    assert opened == []
    assert page.table_digests() == {
        Path(a["path"]).name: a["sha256"] for a in fake_result.summary["artefacts"]
    }
    assert page.digests[fake_result.output].size == 12 * MiB


def test_a_result_without_recorded_digests_says_so(qtbot, runner, state, fake_result):
    fake_result.summary = {}
    page = make_page(qtbot, runner, state)
    page.initializePage()
    assert page.table_digests() == {} and not page.is_busy()
    assert page.table.item(0, 3).text() == "not recorded by the build"


def test_open_folder_and_report(qtbot, runner, state, fake_result):
    opener = Opener()
    page = make_page(qtbot, runner, state, opener=opener)
    page.initializePage()
    page.open_folder_button.click()
    page.open_report_button.click()
    assert [u.toLocalFile() for u in opener.urls] == [str(fake_result.output.parent), str(fake_result.report)]


def test_verify_lists_each_check(qtbot, runner, state, fake_result):
    calls = []

    def verifier(template, vsc, trusted, *, progress, cancel):
        calls.append((template, vsc, trusted, threading.current_thread().name))
        progress.begin("verify", 10)
        progress.update(10)
        return TemplateReport(
            ok=False,
            checks=[
                Check("GPT", True, "both copies agree"),
                Check("Catalog", False, "block 7 of partition 3 differs"),
            ],
            path=str(template),
        )

    page = make_page(qtbot, runner, state, verifier=verifier)
    page.initializePage()
    assert page.check_rows() == [] and "Not verified yet" in page.checks.item(0).text()
    with qtbot.waitSignal(page.verifyFinished, timeout=TASK_TIMEOUT_MS):
        page.verify_button.click()
    template, vsc, trusted, thread = calls[0]
    assert template == fake_result.output and vsc == fake_result.catalog
    assert trusted == [state.catalog_signing.signer.certificate]
    assert thread.startswith("test-gui-worker")  # off the GUI thread
    assert page.check_rows() == [
        (True, "✓ GPT — both copies agree"),
        (False, "✗ Catalog — block 7 of partition 3 differs"),
    ]
    assert page.status_label.text() == "Verification found problems."


def test_verify_trusts_every_certificate_the_build_signed_with(qtbot, runner, state, fake_result, tmp_path):
    """Regression (issue 17 item 5): failed on ecab7db because with no catalog signer recorded the page
    verified with no trusted certificate at all (the signer not checked, yet reported as passed)."""
    calls = []

    def verifier(template, vsc, trusted, *, progress, cancel):
        calls.append(trusted)
        return TemplateReport(ok=True, checks=[Check("GPT", True, "fine")], path=str(template))

    other = make_signing_files(tmp_path / "uefi", common_name="Finished page UEFI signer")
    info = describe_certificate(other.signer.certificate, purpose="uefi")
    state.uefi_signing = SigningChoice(other.cert, other.key, other.signer, info)
    state.catalog_same_as_uefi, state.catalog_signing = False, None
    page = make_page(qtbot, runner, state, verifier=verifier)
    page.initializePage()
    with qtbot.waitSignal(page.verifyFinished, timeout=TASK_TIMEOUT_MS):
        page.verify_button.click()
    assert calls == [[other.signer.certificate]]


def test_verifying_can_be_cancelled_in_two_stages(qtbot, runner, state):
    started = threading.Event()

    def slow_verifier(template, vsc, trusted, *, progress, cancel):
        progress.begin("verify", 100)
        started.set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            cancel.check()
            time.sleep(0.01)
        raise AssertionError("never cancelled")

    page = make_page(qtbot, runner, state, verifier=slow_verifier)
    page.initializePage()
    page.verify_button.click()
    assert started.wait(5) and page.is_busy()
    panel = page.progress_panel
    assert panel.isVisible() and not page.verify_button.isEnabled()
    panel.cancel_button.click()
    assert panel.stop_button.isVisible() and page.is_busy()  # stage one only asks
    with qtbot.waitSignal(page.verifyFinished, timeout=TASK_TIMEOUT_MS):
        panel.stop_button.click()
    assert page.status_label.text() == "Cancelled: the template was not verified."
    assert page.check_rows() == [] and not panel.isVisible()
    assert page.verify_button.isEnabled()
