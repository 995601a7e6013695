"""The Signature catalog page and the progress panel, against the real catalog engine and the demo image.

Digests are checked against what the engine's reader decodes from the signed catalog *and* against an
independent recomputation (hashlib over the raw image at the offsets sgdisk reports). To watch progress
move and to cancel mid-way, the hashing threads' reads are slowed down (the engine itself is unchanged).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QValidator

from app.catalog.format import CatalogError, check_template_name, parse_version, read_catalog
from app.disk.layout import inspect_image
from app.gui.state import CatalogChoice, SigningChoice, WizardState
from app.gui.widgets.catalog_validators import name_state, version_state
from app.gui.widgets.progress_panel import ProgressPanel, human_duration
from app.gui.wizard import PageId, step_titles
from app.progress import ProgressState
from app.signing import keys
from app.signing.certificates import describe_certificate
from app.signing.signer import KeySigner
from app.template.recipe import CATALOG_BLOCK_SIZES, CatalogOptions
from app.template.recipe_file import recipe_to_dict
from tests.build_helpers import make_keys
from tests.conftest import require_tool, sgdisk_partitions
from tests.gui.conftest import advance_button, open_and_wait
from wizard_pages.catalog import SAVE, CatalogPage

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
TASK_TIMEOUT_MS = 60_000
SIGNER_CN = "Test catalog signing"


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer() -> KeySigner:
    key = keys.generate_key("rsa2048")
    cert = keys.generate_self_signed(key, common_name=SIGNER_CN, organization="Test Org", days=30)
    return KeySigner(key, cert)


def make_state(image: Path, signer: KeySigner) -> WizardState:
    state = WizardState()
    state.set_image(image, inspect_image(image))
    choice = SigningChoice(
        Path("catalog.crt"),
        Path("catalog.key"),
        signer,
        describe_certificate(signer.certificate, purpose="catalog"),
    )
    state.uefi_signing = state.catalog_signing = choice
    return state


@pytest.fixture
def page(qtbot, runner, demo_image, signer) -> CatalogPage:
    p = CatalogPage(make_state(demo_image, signer), runner)
    qtbot.addWidget(p)
    p.resize(900, 560)
    p.show()
    qtbot.waitExposed(p)
    return p


@pytest.fixture
def slow_reads(monkeypatch):
    """Make the engine hash with 2 threads reading 128 KiB at a time, each read ``delay[0]`` s slower.

    Two threads whatever the machine, so the run takes the same time everywhere (the demo's protected
    partitions hold ~17 MiB of data at 4 KiB blocks: ~135 reads, ~2.7 s at the default delay).
    """
    from app.catalog import hasher
    from app.disk.formats.raw import RawImage

    delay = [0.04]
    monkeypatch.setattr(hasher, "default_jobs", lambda: 2)
    monkeypatch.setattr(hasher, "read_size", lambda jobs: 128 * 1024)
    # The hasher may map the file and hash it natively, or read into buffers: make it read, slowly.
    monkeypatch.setattr(hasher, "MAPPED_HASHING", False, raising=False)
    original = RawImage.read

    def read(self, offset: int, length: int) -> bytes:
        if threading.current_thread().name.startswith("vsc-hash"):
            time.sleep(delay[0])
        return original(self, offset, length)

    monkeypatch.setattr(RawImage, "read", read)
    original_into = getattr(RawImage, "readinto", None)
    if original_into is not None:

        def readinto(self, offset: int, buffer) -> None:
            if threading.current_thread().name.startswith("vsc-hash"):
                time.sleep(delay[0])
            return original_into(self, offset, buffer)

        monkeypatch.setattr(RawImage, "readinto", readinto)
    return delay


def engine_says(check, value: str) -> str:
    """The engine's refusal of ``value`` as the page shows it (``Message (hint)``, capitalised)."""
    with pytest.raises(CatalogError) as refused:
        check(value)
    text = refused.value.one_line()
    return text[:1].upper() + text[1:]


def hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vsc-hash")]


def compute_and_wait(qtbot, page: CatalogPage, name: str = "Demo web server") -> None:
    page.name_edit.setText(name)
    assert page.compute_button.isEnabled(), page.status_label.text()
    with qtbot.waitSignal(page.operationFinished, timeout=TASK_TIMEOUT_MS):
        qtbot.mouseClick(page.compute_button, Qt.MouseButton.LeftButton)
    assert not page.is_busy()


def independent_digests(image: Path, block_size: int, numbers: set[int]) -> dict[int, str]:
    """SHA-256 over each partition's block digests, from sgdisk's offsets and plain file reads."""
    out: dict[int, str] = {}
    with open(image, "rb") as f:
        for part in sgdisk_partitions(image):
            if part["number"] not in numbers:
                continue
            start, size = part["first_lba"] * 512, (part["last_lba"] - part["first_lba"] + 1) * 512
            f.seek(start)
            digests = hashlib.sha256()
            for off in range(0, size, block_size):
                digests.update(hashlib.sha256(f.read(min(block_size, size - off))).digest())
            out[part["number"]] = digests.hexdigest()
    return out


# -- the page ---------------------------------------------------------------------------------------


def test_page_shows_inputs_partitions_and_signer(qtbot, page):
    state = page.state
    assert page.title() == "Signature catalog"
    assert "every block" in page.subTitle() and "signed" in page.subTitle()
    assert page.version_edit.text() == "1.0.0.0"
    sizes = [page.block_combo.itemData(i) for i in range(page.block_combo.count())]
    assert sizes == list(CATALOG_BLOCK_SIZES) and sizes[0] == 4096 and sizes[-1] == 64 * MiB
    assert [page.block_combo.itemText(i) for i in (0, sizes.index(MiB), len(sizes) - 1)] == [
        "4 KiB", "1 MiB", "64 MiB",
    ]  # fmt: skip
    assert page.block_combo.currentData() == MiB
    # The protected partitions (XBOOTLDR and root on the demo image), with sizes and block counts.
    protected = sorted(state.protected)
    assert protected and page.table.rowCount() == len(protected)
    for row, number in enumerate(protected):
        part = next(p for p in state.layout.partitions if p.number == number)
        assert page.table.item(row, 0).text() == str(number)
        assert page.table.item(row, 2).toolTip() == f"{part.size_bytes:,} bytes"
        assert page.table.item(row, 3).text() == f"{-(-part.size_bytes // MiB):,}"
        assert page.table.item(row, 4).text() == "not computed"
    assert SIGNER_CN in page.signer_value.text()
    assert "Catalog-only" in page.note_label.text() and "encrypted output" in page.note_label.text()
    # No name yet: not complete, Compute waits for a name. Computing here is optional (issue 18): a valid
    # name and version are enough for Next, the build computes the catalog of the encrypted output.
    assert not page.isComplete()
    assert not page.compute_button.isEnabled()
    assert not page.verify_button.isEnabled() and not page.save_button.isEnabled()
    page.name_edit.setText("WS2016")
    assert page.compute_button.isEnabled() and page.isComplete() and not page.state.catalog_ready
    # Keyboard and screen readers.
    assert page.compute_button.text() == "Comp&ute"  # Alt+C is the progress panel's Cancel
    assert page.save_button.text() == "S&ave catalog…"
    assert page.name_edit.accessibleName() == "Template name"
    assert page.version_edit.accessibleName() == "Template version"
    assert page.table.accessibleName() == "Protected partitions"


def test_compute_needs_a_signer_and_protected_partitions(qtbot, runner, demo_image, signer):
    state = make_state(demo_image, signer)
    state.uefi_signing = state.catalog_signing = None
    p = CatalogPage(state, runner)
    qtbot.addWidget(p)
    p.name_edit.setText("WS2016")
    assert not p.compute_button.isEnabled()
    assert "Certificates page" in p.status_label.text()
    assert p.signer_value.text() == "none chosen"


def test_version_validator():
    acceptable = QValidator.State.Acceptable
    assert version_state("1.0.0.0") is acceptable
    assert version_state("65535.65535.0.10") is acceptable
    assert version_state("1.0.0") is QValidator.State.Intermediate  # not yet a version
    assert version_state("1.0.0.") is QValidator.State.Intermediate
    for bad in ("1.0.0.70000", "1.0.0.65536", "1.0.0.0.0", "1.a.0.0", "01.0.0.0", "-1.0.0.0", "1.0.0.٣"):
        assert version_state(bad) is QValidator.State.Invalid, bad


def test_version_field_rejects_bad_versions(qtbot, page):
    page.name_edit.setText("WS2016")
    page.version_edit.setText("1.0.0")
    assert not page.version_edit.hasAcceptableInput()
    assert not page.compute_button.isEnabled() and not page.isComplete()
    assert page.problem_label.isVisible() and "a.b.c.d" in page.problem_label.text()
    assert page.problem_label.text() == engine_says(parse_version, "1.0.0")  # the engine's words
    page.version_edit.setText("1.0.0.70000")
    assert not page.version_edit.hasAcceptableInput() and not page.compute_button.isEnabled()
    assert page.problem_label.text() == engine_says(parse_version, "1.0.0.70000")
    assert "65535" in page.problem_label.text()
    # Typed, the part that would exceed 65535 is refused keystroke by keystroke.
    page.version_edit.clear()
    qtbot.keyClicks(page.version_edit, "1.0.0.70000")
    assert page.version_edit.text() == "1.0.0.7000"
    page.version_edit.clear()
    qtbot.keyClicks(page.version_edit, "2.1.0.3")
    assert page.version_edit.hasAcceptableInput() and page.compute_button.isEnabled()
    assert not page.problem_label.isVisible()
    assert page.state.catalog.options.version == "2.1.0.3"


def test_name_validation(qtbot, page):
    intermediate, invalid = QValidator.State.Intermediate, QValidator.State.Invalid
    assert name_state("") is intermediate and name_state("   ") is intermediate  # not yet a name
    assert name_state("web\x07server") is invalid and name_state("a\nb") is invalid
    assert name_state("Debian 12 — web") is QValidator.State.Acceptable
    assert name_state("x" * 257) is invalid and name_state("x" * 256) is QValidator.State.Acceptable
    qtbot.keyClicks(page.name_edit, "web")
    qtbot.keyClick(page.name_edit, Qt.Key.Key_Tab)  # focus moves on; no tab character is inserted
    assert page.name_edit.text() == "web"
    page.name_edit.setText("web\x01server")  # pasted or set: refused as input
    assert not page.compute_button.isEnabled()
    assert "control characters" in page.problem_label.text()
    assert page.problem_label.text() == engine_says(check_template_name, "web\x01server")
    page.name_edit.setText("   ")
    assert not page.compute_button.isEnabled()


@pytest.fixture(scope="module")
def cli_keys(tmp_path_factory: pytest.TempPathFactory):
    return make_keys(tmp_path_factory.mktemp("catalog-cli-keys"))


def build_says_about(name: str, image: Path, keys, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``shieldwright build --name NAME``, stopped before any work: the key passphrase is wrong, which the
    build finds only after it has checked the recipe (so a refused name is reported first)."""
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the passphrase")
    wrong.chmod(0o600)
    argv = ["build", "--base", str(image), "-o", str(tmp_path / "t.raw"), "--name", name, "--version",
            "1.0.0.0", "--protect", "3", "--uefi-cert", str(keys.uefi_cert), "--uefi-key", str(keys.uefi_key),
            "--key-passphrase-file", str(wrong), "--passphrase-file", str(wrong), "--kdf", "pbkdf2",
            "--iter-time", "1"]  # fmt: skip
    return subprocess.run([sys.executable, "-m", "app", *argv], cwd=ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip


@pytest.mark.parametrize(
    "name",
    ["Web\x85server", "Web\u2028server", "Web\x01server", "Web\x7fserver"],
    ids=["U+0085", "U+2028", "U+0001", "U+007F"],
)
def test_page_and_build_agree_on_the_template_name(qtbot, page, demo_image, cli_keys, tmp_path, name):
    """Regression (issue 13): the page had its own name rule, and a name with U+0085 passed
    ``shieldwright build`` but not the wizard. Both now ask the engine's ``check_template_name``."""
    try:
        check_template_name(name)
        refusal = None
    except CatalogError as exc:
        refusal = exc.message
    page.name_edit.setText(name)
    proc = build_says_about(name, demo_image, cli_keys, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    if refusal is None:  # accepted by both: the build goes on to the key (and fails there)
        assert page.inputs_valid() and page.compute_button.isEnabled() and not page.problem_label.isVisible()
        assert "catalog.name" not in proc.stderr and "wrong passphrase" in proc.stderr, proc.stderr
        compute_and_wait(qtbot, page, name)  # and the engine signs a catalog with that name
        assert read_catalog(page.state.catalog.signed).catalog.template_name == name
    else:  # refused by both, in the engine's words
        assert not page.inputs_valid() and not page.compute_button.isEnabled()
        assert page.problem_label.text() == engine_says(check_template_name, name)
        assert f"catalog.name: {refusal}" in proc.stderr, proc.stderr


def test_compute_with_the_real_engine(qtbot, page, demo_image):
    state = page.state
    compute_and_wait(qtbot, page, "Demo web server")
    assert not page.error_panel.isVisible(), page.error_panel.message_label.text()
    assert page.isComplete() and state.catalog_ready
    signed = state.catalog.signed
    assert isinstance(signed, bytes) and signed
    # What the engine's reader decodes (signature checked against the signer) is what the page shows.
    decoded = read_catalog(signed, trusted=[page.state.catalog_signing.signer.certificate])
    cat = decoded.catalog
    assert (cat.template_name, cat.template_version, cat.block_size) == ("Demo web server", "1.0.0.0", MiB)
    expected = {p.number: p.digest for p in cat.partitions}
    assert set(expected) == state.protected
    assert page.partition_digests() == expected
    for row in range(page.table.rowCount()):
        number = int(page.table.item(row, 0).text())
        item = page.table.item(row, 4)
        assert item.toolTip() == expected[number]
        assert page.table.item(row, 3).text() == f"{cat.partition(number).block_count:,}"
    # ... and what an independent recomputation over the raw file gives.
    assert independent_digests(demo_image, MiB, state.protected) == expected
    result = page.result_label.text()
    assert page.result_label.isVisible()
    assert "Demo web server" in result and SIGNER_CN in result
    assert f"{sum(p.block_count for p in cat.partitions):,} blocks of 1 MiB" in result
    assert decoded.signing_time is not None
    assert decoded.signing_time.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") in result
    assert page.verify_button.isEnabled() and page.save_button.isEnabled()
    assert not page.progress_panel.isVisible()
    assert hash_threads() == []


def test_compute_shows_progress_moving(qtbot, page, slow_reads):
    page.block_combo.setCurrentIndex(page.block_combo.findData(4096))
    values: list[int] = []
    texts: list[str] = []
    panel = page.progress_panel
    panel.bar.valueChanged.connect(values.append)
    page.name_edit.setText("Demo")
    qtbot.mouseClick(page.compute_button, Qt.MouseButton.LeftButton)
    assert page.is_busy() and panel.isVisible() and not page.isComplete()  # not while hashing
    assert not page.name_edit.isEnabled() and not page.block_combo.isEnabled()
    assert not page.compute_button.isEnabled()

    def sample() -> bool:
        texts.append(panel.detail_label.text())
        return not page.is_busy()

    qtbot.waitUntil(sample, timeout=TASK_TIMEOUT_MS)
    moving = [v for v in values if 0 < v < 1000]
    assert len(set(moving)) >= 2, values
    assert values == sorted(values)  # never goes backwards
    shown = [t for t in texts if re.match(r"\d+% — [\d.]+ (B|KiB|MiB) of [\d.]+ MiB — ", t)]
    assert shown, texts
    assert any(t.endswith("estimating…") for t in shown)  # before the rate is known
    assert any(re.search(r"— [\d.]+ (KiB|MiB)/s — about \d+ s left$", t) for t in shown), shown
    # The result is the engine's.
    assert page.isComplete() and not panel.isVisible()
    cat = read_catalog(page.state.catalog.signed).catalog
    assert cat.block_size == 4096
    assert page.partition_digests() == {p.number: p.digest for p in cat.partitions}


def test_cancel_is_two_stage_and_stops_the_compute(qtbot, page, slow_reads):
    slow_reads[0] = 0.08
    panel = page.progress_panel
    page.block_combo.setCurrentIndex(page.block_combo.findData(4096))
    page.name_edit.setText("Demo")
    requests: list[bool] = []
    panel.cancelRequested.connect(lambda: requests.append(True))
    qtbot.mouseClick(page.compute_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.bar.value() > 0, timeout=TASK_TIMEOUT_MS)

    # Stage one: Cancel only asks, inline; Keep running goes back.
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert panel.confirm_label.isVisible() and panel.confirm_label.text() == "Stop hashing?"
    assert panel.stop_button.isVisible() and panel.keep_button.isVisible()
    assert not panel.cancel_button.isVisible()
    assert requests == [] and page.is_busy()
    qtbot.mouseClick(panel.keep_button, Qt.MouseButton.LeftButton)
    assert panel.cancel_button.isVisible() and not panel.stop_button.isVisible()
    before = panel.bar.value()
    qtbot.waitUntil(lambda: panel.bar.value() > before, timeout=TASK_TIMEOUT_MS)  # it kept running

    # Stage two: Stop cancels; "Stopping…" until the task has really ended.
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    started = time.monotonic()
    with qtbot.waitSignal(page.operationFinished, timeout=5000):
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
        assert requests == [True]
        assert panel.cancel_button.text() == "Stopping…" and not panel.cancel_button.isEnabled()
        assert panel.stopping
    assert time.monotonic() - started < 2.0
    assert panel.bar.value() < 1000
    assert not panel.isVisible() and not panel.running
    assert page.status_label.text() == "Cancelled: no catalog was computed."
    assert not page.error_panel.isVisible()
    assert page.isComplete() and page.state.catalog.signed is None  # the build computes it anyway
    assert page.partition_digests() == {} and not page.result_label.isVisible()
    assert page.compute_button.isEnabled() and page.name_edit.isEnabled()
    qtbot.waitUntil(lambda: hash_threads() == [], timeout=5000)


def test_verify_reports_success(qtbot, page):
    compute_and_wait(qtbot, page)
    total = sum(p.block_count for p in read_catalog(page.state.catalog.signed).catalog.partitions)
    with qtbot.waitSignal(page.operationFinished, timeout=TASK_TIMEOUT_MS):
        qtbot.mouseClick(page.verify_button, Qt.MouseButton.LeftButton)
    assert page.verified_label.isVisible()
    assert page.verified_label.text() == f"Catalog verified: {total} block(s) match."
    assert not page.error_panel.isVisible()
    assert page.isComplete()


def test_verify_names_the_changed_block(qtbot, runner, demo_image, signer, tmp_path):
    copy = tmp_path / "demo-copy.img"
    subprocess.run(["cp", "--sparse=always", str(demo_image), str(copy)], check=True)
    copy.chmod(0o644)
    p = CatalogPage(make_state(copy, signer), runner)
    qtbot.addWidget(p)
    p.show()
    p.block_combo.setCurrentIndex(p.block_combo.findData(64 * 1024))
    compute_and_wait(qtbot, p)
    root = max(p.state.protected)
    part = next(q for q in sgdisk_partitions(copy) if q["number"] == root)
    offset = 3 * 64 * 1024 + 100  # inside block 3
    with open(copy, "r+b") as f:
        f.seek(part["first_lba"] * 512 + offset)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    with qtbot.waitSignal(p.operationFinished, timeout=TASK_TIMEOUT_MS):
        p.verify()
    assert not p.verified_label.isVisible()
    assert p.error_panel.isVisible()
    assert p.error_panel.message_label.text() == "The image does not match the catalog: 1 block(s) differ."
    assert p.error_panel.hint_label.text() == f"Partition {root} at byte offset {3 * 64 * 1024:,} (block 3)."
    assert p.status_label.text() == "Verification failed."


def test_changing_inputs_invalidates_the_result(qtbot, page):
    compute_and_wait(qtbot, page, "WS2016")
    assert page.state.catalog_ready
    page.name_edit.setText("WS2016b")
    assert not page.state.catalog_ready and page.state.catalog.signed is None
    assert page.partition_digests() == {} and not page.result_label.isVisible()
    assert not page.verify_button.isEnabled() and not page.save_button.isEnabled()
    assert "dropped" in page.status_label.text()
    page.name_edit.setText("WS2016")  # back to the old name: the dropped catalog does not come back
    assert not page.state.catalog_ready

    compute_and_wait(qtbot, page, "WS2016")
    page.version_edit.setText("1.0.0.1")
    assert not page.state.catalog_ready and page.state.catalog.signed is None

    compute_and_wait(qtbot, page, "WS2016")
    page.block_combo.setCurrentIndex(page.block_combo.findData(64 * 1024))
    assert not page.state.catalog_ready and page.state.catalog.signed is None

    # Changes made on other pages (the protected partitions) are noticed when the page is entered again.
    compute_and_wait(qtbot, page, "WS2016")
    page.state.protected = {max(page.state.protected)}
    assert not page.state.catalog_ready
    page.initializePage()
    assert page.state.catalog.signed is None
    assert page.table.rowCount() == 1


def test_recipe_has_name_version_and_block_size_only(qtbot, page, tmp_path):
    page.block_combo.setCurrentIndex(page.block_combo.findData(4096))
    compute_and_wait(qtbot, page, "Demo web server")
    signed = page.state.catalog.signed
    recipe = recipe_to_dict(page.state.recipe(output=tmp_path / "t.raw"), tmp_path)
    assert recipe["catalog"] == {"name": "Demo web server", "version": "1.0.0.0", "block_size": 4096}
    text = json.dumps(recipe)  # plain data: no bytes, no key objects anywhere
    assert signed.hex()[:64] not in text
    for digest in page.partition_digests().values():
        assert digest not in text
    assert "BEGIN" not in text and "signer" not in text
    assert CatalogChoice().options == CatalogOptions(name="", version="1.0.0.0", block_size=MiB)


def test_save_catalog(qtbot, page, tmp_path):
    compute_and_wait(qtbot, page, "Demo web server")
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)  # returns: open(), not exec()
    dialog = page.open_dialog(SAVE)
    assert dialog is not None and dialog.isVisible()
    assert dialog.selectedFiles()[0].endswith("Demo-web-server-1.0.0.0.vsc")
    assert "*.vsc" in " ".join(dialog.nameFilters())
    assert not page.save_button.isEnabled()
    dialog.reject()
    qtbot.waitUntil(lambda: page.open_dialog(SAVE) is None)
    assert page.save_button.isEnabled()

    out = tmp_path / "template.vsc"
    with qtbot.waitSignal(page.operationFinished, timeout=TASK_TIMEOUT_MS):
        page.save_to(out)
    assert out.read_bytes() == page.state.catalog.signed
    assert page.status_label.text() == f"Saved to {out}"
    # openssl accepts it as CMS signed by the catalog signer and prints the catalog content
    # (``-purpose any``: a code-signing certificate is not an S/MIME one).
    cert = tmp_path / "signer.pem"
    keys.write_certificate(page.state.catalog_signing.signer.certificate, cert)
    content = subprocess.run(
        [require_tool("openssl"), "cms", "-verify", "-inform", "DER", "-binary", "-in", str(out),
         "-CAfile", str(cert), "-purpose", "any"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert content.startswith(b"SWVSC1\n")


def test_wizard_has_the_catalog_step(qtbot, wizard, demo_image, signer):
    assert wizard.page(PageId.CATALOG) is wizard.catalog_page
    assert step_titles()[PageId.CATALOG] == "Signature catalog"
    assert wizard.steps.labels[PageId.CATALOG].text().strip() == "Signature catalog"
    assert wizard.state.catalog is not None  # the page set the defaults
    # Entered with an image and a signer chosen, the page picks them up; Next follows isComplete().
    open_and_wait(qtbot, wizard, demo_image)
    choice = make_state(demo_image, signer).catalog_signing
    wizard.state.uefi_signing = wizard.state.catalog_signing = choice
    wizard.setCurrentId(PageId.CATALOG)
    page = wizard.catalog_page
    assert wizard.currentPage() is page and page.isVisible()
    assert "▸ Signature catalog" in wizard.steps.labels[PageId.CATALOG].text()
    assert page.table.rowCount() == len(wizard.state.protected) and SIGNER_CN in page.signer_value.text()
    assert not advance_button(wizard).isEnabled()  # no template name yet
    page.name_edit.setText("Demo web server")
    assert advance_button(wizard).isEnabled()  # computing here is optional
    page.version_edit.setText("1.0.0")
    assert not advance_button(wizard).isEnabled()  # not a version
    page.version_edit.setText("1.0.0.2")
    compute_and_wait(qtbot, page)
    assert advance_button(wizard).isEnabled()


# -- the progress panel -----------------------------------------------------------------------------


def test_human_duration():
    assert human_duration(0.2) == "1 s"
    assert human_duration(3) == "3 s"
    assert human_duration(80) == "1 min 20 s"
    assert human_duration(12 * 60 + 40) == "13 min"
    assert human_duration(2 * 3600 + 5 * 60) == "2 h 5 min"


def test_progress_text_rate_and_eta(qtbot):
    panel = ProgressPanel()
    qtbot.addWidget(panel)
    state = ProgressState()
    state.begin("Hashing", 4 * 1024 * MiB)
    state.update(1024 * MiB)
    # Not enough samples yet: no rate, no time left.
    assert panel.describe(state) == "25% — 1 GiB of 4 GiB — estimating…"
    now = time.monotonic()
    state._samples = [(now - 2.0, 0), (now, 1024 * MiB)]  # 512 MiB/s over the window
    panel._started = now - 2.0
    assert panel.describe(state) == "25% — 1 GiB of 4 GiB — 512 MiB/s — about 6 s left"
    state.update(4 * 1024 * MiB)
    assert panel.describe(state).startswith("100% — 4 GiB of 4 GiB")


def test_progress_panel_follows_a_task_and_cancels_in_two_stages(qtbot, runner):
    go_on = threading.Event()

    def job(*, cancel, progress):
        progress.begin("Working", 100)
        for i in range(100):
            progress.update(i)
            if i == 50:
                go_on.wait(10)
            cancel.check()
            time.sleep(0.01)
        return "done"

    panel = ProgressPanel()
    qtbot.addWidget(panel)
    panel.show()
    task = runner.start(job, with_progress=True)
    panel.start(task, "Working hard", unit="items")
    panel.set_confirm_text("Stop working?")
    panel.cancelRequested.connect(task.cancel)
    assert panel.isVisible() and panel.running and panel.step_label.text() == "Working hard"
    assert panel.bar.accessibleName() == "Working hard"
    qtbot.waitUntil(lambda: panel.bar.value() >= 500, timeout=5000)
    assert re.match(r"50% — 50 of 100 — ", panel.detail_label.text())
    panel.cancel_button.click()
    assert panel.confirm_label.text() == "Stop working?" and panel.stop_button.isVisible()
    assert not task.cancel_token.cancelled
    with qtbot.waitSignal(task.finished, timeout=5000):
        panel.stop_button.click()
        assert task.cancel_token.cancelled
        assert panel.detail_label.text().startswith("Stopping…")
        go_on.set()
    assert task.error is not None and not panel.isVisible() and not panel.running
