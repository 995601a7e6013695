"""The Finished ("Template ready") page on its own: artefacts, digests, Open folder/report, Verify, Cancel.

A BuildResult-shaped object points at real files written here, so the digests are graded by hashlib
over those files; the verifier is the real ``verify_template`` where a real template is needed (see
test_generate_page.py, which runs the whole build and then this page) and a stand-in here to show a
failing check. The page's digest hashing runs for real in the executor.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QUrl

from app.errors import CancelledError
from app.gui.state import CatalogChoice, OutputChoice, SigningChoice, WizardState
from app.signing.certificates import describe_certificate
from app.template.verify import Check, TemplateReport
from tests.gui.test_review_page import make_signing_files
from wizard_pages.finished import FinishedPage, hash_files

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
    return SimpleNamespace(**files, summary={})


@pytest.fixture
def state(tmp_path: Path, fake_result) -> WizardState:
    files = make_signing_files(tmp_path / "sig", common_name="Finished page catalog signer")
    st = WizardState()
    choice = SigningChoice(files.cert, files.key, files.signer,
                           describe_certificate(files.signer.certificate, purpose="catalog"))  # fmt: skip
    st.uefi_signing = st.catalog_signing = choice
    st.catalog = CatalogChoice("Demo web server", "1.2.3.4")
    st.output = OutputChoice(fake_result.output, "raw", result=fake_result)
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
    with qtbot.waitSignal(page.hashingFinished, timeout=TASK_TIMEOUT_MS):
        page.initializePage()
    names = [page.table.item(r, 0).text() for r in range(page.table.rowCount())]
    assert names == ["Template", "Signature catalog", "Manifest", "Manifest signature", "Report"]
    expected = {
        p.name: sha256_of(p)
        for p in (fake_result.output, fake_result.catalog, fake_result.manifest,
                  fake_result.manifest_signature, fake_result.report)  # fmt: skip
    }
    assert page.table_digests() == expected
    assert page.digests[fake_result.output].size == 12 * MiB
    assert page.table.item(0, 2).text() == "12 MiB"
    # The MS Summary page's content: template identity, catalog signer and issuer.
    identity = page.identity_label.text()
    assert "Demo web server" in identity and "1.2.3.4" in identity
    assert "Finished page catalog signer" in identity and "issued by" in identity
    # Entering again (Back/Next) does not hash again.
    page.initializePage()
    assert not page.is_busy()


def test_open_folder_and_report(qtbot, runner, state, fake_result):
    opener = Opener()
    page = make_page(qtbot, runner, state, opener=opener)
    with qtbot.waitSignal(page.hashingFinished, timeout=TASK_TIMEOUT_MS):
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
    with qtbot.waitSignal(page.hashingFinished, timeout=TASK_TIMEOUT_MS):
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
    with qtbot.waitSignal(page.hashingFinished, timeout=TASK_TIMEOUT_MS):
        page.initializePage()
    with qtbot.waitSignal(page.verifyFinished, timeout=TASK_TIMEOUT_MS):
        page.verify_button.click()
    assert calls == [[other.signer.certificate]]


def test_hashing_can_be_cancelled_in_two_stages(qtbot, runner, state, monkeypatch):
    started = threading.Event()

    def slow_hasher(paths, *, progress, cancel):
        progress.begin("hash", 100)
        started.set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            cancel.check()
            time.sleep(0.01)
        raise AssertionError("never cancelled")

    page = make_page(qtbot, runner, state, hasher=slow_hasher)
    page.initializePage()
    assert started.wait(5) and page.is_busy()
    panel = page.progress_panel
    assert panel.isVisible() and not page.verify_button.isEnabled()
    panel.cancel_button.click()
    assert panel.stop_button.isVisible() and page.is_busy()  # stage one only asks
    with qtbot.waitSignal(page.hashingFinished, timeout=TASK_TIMEOUT_MS):
        panel.stop_button.click()
    assert page.status_label.text() == "Cancelled: the digests were not computed."
    assert page.table_digests() == {} and not panel.isVisible()
    assert page.verify_button.isEnabled()


def test_hash_files_matches_hashlib_and_honours_cancel(tmp_path):
    from app.progress import CancelToken, ProgressState

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(os.urandom(9 * MiB + 5))
    b.write_bytes(b"")
    progress = ProgressState()
    got = hash_files([a, b], progress=progress, cancel=CancelToken())
    assert got[a].sha256 == sha256_of(a) and got[b].sha256 == hashlib.sha256().hexdigest()
    assert progress.done == progress.total == 9 * MiB + 5
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        hash_files([a], progress=ProgressState(), cancel=token)
