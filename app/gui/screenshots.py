"""``python -m app.gui.screenshots OUTDIR IMAGE``: render the window and the wizard's pages to PNGs (docs).

The window first (``--frame-only`` stops there and needs no IMAGE): its start page with recent recipes, its
File menu open, and Help › About with the versions looked up for real - with settings in a temporary folder,
never the user's.

Drives a real wizard offscreen through every page on IMAGE with the real engine - a throw-away signing
certificate, a UKI, a PCR policy on a variable store that trusts that certificate (compared with a captured
event log of another boot), a calibrated KDF, a catalog, then a build into a temporary folder (reads slowed
down to catch Generate mid-write), a real test boot of it, and the Provision a VM disk wizard opened from the
Finished page on that template (a vTPM created for it, the PCR policy's variable store), then the Shielding
Data wizard for that template (a throw-away guardian store) - and saves ``OUTDIR/<page>.png`` for each page
(``make screenshots``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QEventLoop, QPoint
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import QApplication, QWidget

from app.disk.formats.raw import RawImage
from app.gui.application import create_application
from app.gui.frame import MainWindow
from app.gui.provision_wizard import ProvisionPageId
from app.gui.settings import Settings
from app.gui.state import OutputChoice
from app.gui.tasks import TaskRunner
from app.gui.wizard import PageId, ShieldwrightWizard
from app.signing import keys
from app.signing.signer import KeySigner
from app.template.recipe import OutputOptions
from wizard_pages.certificates import Role

#: The size the documentation screenshots are taken at (logical pixels).
SCREENSHOT_SIZE = (1000, 640)
#: A real boot's TCG event log (tests/data/eventlogs: another UKI, on Debian's snakeoil keys) to compare with.
SAMPLE_EVENT_LOG = (
    Path(__file__).resolve().parents[2] / "tests" / "data" / "eventlogs" / "ovmf-snakeoil-uki.bin"
)


def dark_palette() -> QPalette:
    """A dark palette as a dark desktop theme hands one to Qt (Fusion's usual dark colours): the window
    follows whatever palette it is given, so the dark screenshots are taken with this one."""
    palette = QPalette()
    role, group = QPalette.ColorRole, QPalette.ColorGroup
    for r, colour in {
        role.Window: "#2b2b2b", role.WindowText: "#e6e6e6", role.Base: "#1e1e1e",
        role.AlternateBase: "#262626", role.ToolTipBase: "#3a3a3a", role.ToolTipText: "#e6e6e6",
        role.PlaceholderText: "#8c8c8c", role.Text: "#e6e6e6", role.Button: "#353535",
        role.ButtonText: "#e6e6e6", role.BrightText: "#ff6b6b", role.Link: "#6cb4ff",
        role.Highlight: "#2f65ca", role.HighlightedText: "#ffffff", role.Light: "#4a4a4a",
        role.Midlight: "#404040", role.Mid: "#303030", role.Dark: "#202020", role.Shadow: "#101010",
    }.items():  # fmt: skip
        palette.setColor(r, QColor(colour))
    for r in (role.WindowText, role.Text, role.ButtonText):
        palette.setColor(group.Disabled, r, QColor("#7a7a7a"))
    return palette


def _spin_until(app: QApplication, done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.01)
    return True


#: Recipes the start page lists as recent in its screenshot (written to a temporary folder).
EXAMPLE_RECIPES = (
    "web-server-1.2.0.0.recipe.toml",
    "database-3.0.1.0.recipe.toml",
    "build-agent-1.0.0.0.recipe.toml",
)


def take_frame_screenshots(outdir: Path, timeout: float = 60.0) -> list[Path]:
    """The window: ``start-page.png`` (recent recipes listed), ``menu.png`` (File open), ``about.png``."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # read when the QApplication is made
    app = create_application()
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shieldwright-shot")
    runner = TaskRunner(executor, app)
    with tempfile.TemporaryDirectory(prefix="shieldwright-shot-") as tmp:
        settings = Settings(Path(tmp) / "config" / "shieldwright.conf")  # never the user's settings
        recipes = Path(tmp) / "templates"
        recipes.mkdir()
        home = os.environ.get("HOME")
        os.environ["HOME"] = tmp  # the list shows ~/templates, as it would for a user
        for name in reversed(EXAMPLE_RECIPES):
            (recipes / name).write_text("format_version = 2\n")
            settings.add_recent_recipe(recipes / name)
        window = MainWindow(runner, settings)
        try:
            window.resize(*SCREENSHOT_SIZE)
            window.show()
            _spin_until(app, lambda: False, 0.3)
            outdir.mkdir(parents=True, exist_ok=True)
            shots = [_grab(window, outdir / "start-page.png")]
            shots.append(_menu_screenshot(app, window, outdir / "menu.png"))
            about = window.show_about()
            if not _spin_until(app, lambda: about.versions is not None, timeout):
                raise SystemExit("screenshots: looking up the versions for About did not finish")
            about.copy_button.setFocus()
            _spin_until(app, lambda: False, 0.3)
            shots.append(_grab(about, outdir / "about.png"))
            about.close()
            return shots
        finally:
            runner.shutdown()
            window.close()
            window.deleteLater()
            if home is not None:
                os.environ["HOME"] = home


def _menu_screenshot(app: QApplication, window: MainWindow, out: Path) -> Path:
    """The window with its File menu open: the menu is a window of its own, painted onto the window's grab."""
    menu = window.file_menu
    bar = window.menuBar()
    bar.setActiveAction(menu.menuAction())
    _spin_until(app, lambda: menu.isVisible(), 3.0)
    if not menu.isVisible():  # no popup from the menu bar on this platform: open it where it would be
        menu.popup(bar.mapToGlobal(bar.actionGeometry(menu.menuAction()).bottomLeft()))
    menu.setActiveAction(window.open_recipe_action)
    _spin_until(app, lambda: False, 0.3)
    picture = window.grab()
    painter = QPainter(picture)
    painter.drawPixmap(window.mapFromGlobal(menu.pos()) - QPoint(0, 0), menu.grab())
    painter.end()
    menu.close()
    bar.setActiveAction(None)  # type: ignore[arg-type]
    if not picture.save(str(out)):
        raise SystemExit(f"screenshots: cannot write {out}")
    return out


def take_screenshots(outdir: Path, image: Path, timeout: float = 60.0) -> list[Path]:
    shots = take_frame_screenshots(outdir, timeout)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # read when the QApplication is made
    app = create_application()
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shieldwright-shot")
    runner = TaskRunner(executor, app)
    wizard = ShieldwrightWizard(runner)
    wizard.confirm_discard = False  # closed at the end without asking about the secrets it made
    # The PCR policy's variable store must outlive the build (the recipe names it).
    store_dir = tempfile.TemporaryDirectory(prefix="shieldwright-shot-")
    try:
        wizard.resize(*SCREENSHOT_SIZE)
        wizard.show()
        page = wizard.base_image_page
        wizard.open_image(image)
        if not _spin_until(app, lambda: not page.is_busy(), timeout):
            raise SystemExit(f"screenshots: inspecting {image} took longer than {timeout:.0f} s")
        if page.error_panel.isVisible():
            raise SystemExit(f"screenshots: {image}: {page.error_panel.message_label.text()}")
        # Show a selected partition (the root, if there is one) with keyboard focus, as a user would.
        segments = page.bar.partition_segments()
        target = next((s for s in segments if s.partition.role == "root"), segments[0] if segments else None)
        if target is not None:
            target.setFocus()
        _spin_until(app, lambda: False, 0.3)  # let layouts and repaints settle
        outdir.mkdir(parents=True, exist_ok=True)
        out = outdir / "base-image.png"
        if not wizard.grab().save(str(out)):
            raise SystemExit(f"screenshots: cannot write {out}")
        shots += [out, _certificates_screenshot(app, wizard, outdir, timeout)]
        shots.append(_boot_image_screenshot(app, wizard, outdir, timeout))
        shots.append(_pcr_policy_screenshot(app, wizard, outdir, timeout, Path(store_dir.name)))
        shots.append(_encryption_screenshot(app, wizard, outdir, timeout))
        shots.append(_catalog_screenshot(app, wizard, outdir, timeout))
        shots.extend(_build_screenshots(app, wizard, outdir, timeout))
        return shots
    finally:
        runner.shutdown()
        wizard.close()
        wizard.deleteLater()
        store_dir.cleanup()


def _certificates_screenshot(
    app: QApplication, wizard: ShieldwrightWizard, outdir: Path, timeout: float
) -> Path:
    wizard.next()
    page = wizard.certificates_page
    if wizard.currentId() != PageId.CERTIFICATES:
        raise SystemExit("screenshots: the wizard did not move to the Certificates page")
    with tempfile.TemporaryDirectory(prefix="shieldwright-shot-") as tmp:
        key = keys.generate_key("rsa2048")
        cert = keys.generate_self_signed(key, common_name="Example Corp UEFI signing 2026",
                                         organization="Example Corp", days=3650)  # fmt: skip
        cert_path = keys.write_certificate(cert, Path(tmp) / "uefi-signing.crt")
        key_path = keys.write_private_key(key, Path(tmp) / "uefi-signing.key")
        page.key_directory = Path(tmp)
        page.load(Role.UEFI, cert_path, key_path)
        if not _spin_until(app, lambda: not page.is_busy() and page.uefi_box.loaded is not None, timeout):
            raise SystemExit("screenshots: loading the generated certificate did not finish")
        page.uefi_box.load_button.setFocus()
        _spin_until(app, lambda: False, 0.3)
        out = outdir / "certificates.png"
        if not wizard.grab().save(str(out)):
            raise SystemExit(f"screenshots: cannot write {out}")
    return out


def _boot_image_screenshot(
    app: QApplication, wizard: ShieldwrightWizard, outdir: Path, timeout: float
) -> Path:
    """The Boot image page after building a UKI from the image's kernel, signed with the generated cert."""
    wizard.setCurrentId(PageId.BOOT_IMAGE)  # initializes it, like Next
    page = wizard.boot_image_page
    if wizard.currentId() != PageId.BOOT_IMAGE:
        raise SystemExit("screenshots: the wizard did not move to the Boot image page")
    if not _spin_until(app, lambda: not page.is_busy(), timeout):
        raise SystemExit("screenshots: looking for the image's kernels did not finish")
    page.build()
    if not _spin_until(app, lambda: not page.is_busy(), timeout):
        raise SystemExit("screenshots: building the UKI did not finish")
    if page.error_panel.isVisible() or not page.isComplete():
        raise SystemExit(f"screenshots: building the UKI failed: {page.error_panel.message_label.text()}")
    page.build_button.setFocus()
    _spin_until(app, lambda: False, 0.3)
    out = outdir / "boot-image.png"
    if not wizard.grab().save(str(out)):
        raise SystemExit(f"screenshots: cannot write {out}")
    return out


def _pcr_policy_screenshot(
    app: QApplication, wizard: ShieldwrightWizard, outdir: Path, timeout: float, store_dir: Path
) -> Path:
    """The PCR policy page on the target's variable store - Microsoft's keys with the generated certificate
    added to db, as ``shieldwright firmware vars`` makes it - compared with a captured log of another boot."""
    wizard.setCurrentId(PageId.PCR_POLICY)  # initializes it, like Next
    page = wizard.pcr_policy_page
    if wizard.currentId() != PageId.PCR_POLICY:
        raise SystemExit("screenshots: the wizard did not move to the PCR policy page")
    if wizard.state.uefi_signing is None:
        raise SystemExit("screenshots: no UEFI signing certificate is chosen")
    page.removable_check.setChecked(True)  # the demo ESP starts systemd-boot: firmware must find the UKI
    # The store made as a user makes it: New store…, Microsoft's keys + the template's certificate.
    dialog = page.open_new_store_dialog()
    _spin_until(app, lambda: False, 0.3)
    _grab(dialog, outdir / "new-store.png")
    dialog._submit(str(store_dir / "target-vars.fd"))
    if not _spin_until(app, lambda: page.new_store_dialog is None, timeout):
        raise SystemExit(f"screenshots: the store was not written: {dialog.error_panel.message_label.text()}")
    if not _spin_until(app, lambda: not page.is_busy(), timeout):
        raise SystemExit("screenshots: the PCR prediction did not finish")
    if page.prediction() is None:
        raise SystemExit(f"screenshots: PCR prediction failed: {page.error_panel.message_label.text()}")
    if SAMPLE_EVENT_LOG.is_file():  # in a source checkout
        page.compare_with(SAMPLE_EVENT_LOG)
        if not _spin_until(app, lambda: not page.is_busy(), timeout) or page.comparison() is None:
            raise SystemExit(f"screenshots: comparing failed: {page.error_panel.message_label.text()}")
    # PCR 4 and 11 open (the boot applications and the UKI's sections), PCR 7's variables folded away.
    page.tree.setFocus()
    for pcr, expanded in ((4, True), (7, False), (11, True)):
        item = page.tree.pcr_item(pcr)
        if item is not None:
            item.setExpanded(expanded)
            if pcr == 4:
                page.tree.setCurrentItem(item)
    _spin_until(app, lambda: False, 0.3)
    return _grab(wizard, outdir / "pcr-policy.png")


def _test_boot_screenshot(
    app: QApplication, wizard: ShieldwrightWizard, outdir: Path, template: Path
) -> Path:
    """The Test boot dialog after a real boot of the template just built, on the PCR policy's store."""
    dialog = wizard.pcr_policy_page.start_test_boot(template)
    dialog.resize(*SCREENSHOT_SIZE)
    if not _spin_until(app, lambda: not dialog.is_running(), 600):
        raise SystemExit("screenshots: the test boot did not finish")
    if dialog.boot_result is None:
        raise SystemExit(f"screenshots: the test boot failed: {dialog.status_label.text()}")
    dialog.close_button.setFocus()
    _spin_until(app, lambda: False, 0.3)
    out = outdir / "test-boot.png"
    if not dialog.grab().save(str(out)):
        raise SystemExit(f"screenshots: cannot write {out}")
    dialog.close()
    return out


def _encryption_screenshot(
    app: QApplication, wizard: ShieldwrightWizard, outdir: Path, timeout: float
) -> Path:
    wizard.setCurrentId(PageId.ENCRYPTION)  # initializes it, like Next
    page = wizard.encryption_page
    if wizard.currentId() != PageId.ENCRYPTION:
        raise SystemExit("screenshots: the wizard did not move to the Encryption page")
    if not _spin_until(app, lambda: not page.is_calibrating(), timeout):
        raise SystemExit("screenshots: the KDF calibration did not finish")
    if not page.choice.kdf_ready:
        raise SystemExit(f"screenshots: calibration failed: {page.params_value.text()}")
    chosen = page.options.partitions
    encrypted = sorted(wizard.state.protected if chosen is None else chosen)
    roles = {n: o.partition.role for n in encrypted if (o := page.option(n)) is not None}
    root = next((n for n, role in roles.items() if role == "root"), None)
    item = page.item(root) if root is not None else None
    if item is not None:
        page.tree.setCurrentItem(item)
    page.tree.setFocus()
    _spin_until(app, lambda: False, 0.3)
    out = outdir / "encryption.png"
    if not wizard.grab().save(str(out)):
        raise SystemExit(f"screenshots: cannot write {out}")
    return out


def _catalog_screenshot(app: QApplication, wizard: ShieldwrightWizard, outdir: Path, timeout: float) -> Path:
    """The Signature catalog page after computing (catalog-only) and verifying the catalog for real."""
    wizard.setCurrentId(PageId.CATALOG)  # initializes it, like Next
    page = wizard.catalog_page
    if wizard.currentId() != PageId.CATALOG:
        raise SystemExit("screenshots: the wizard did not move to the Signature catalog page")
    page.name_edit.setText("Demo web server")
    for step in (page.compute, page.verify):
        step()
        if not _spin_until(app, lambda: not page.is_busy(), timeout):
            raise SystemExit(f"screenshots: {step.__name__} on the catalog page did not finish")
        if page.error_panel.isVisible():
            raise SystemExit(f"screenshots: catalog {step.__name__}: {page.error_panel.message_label.text()}")
    page.verify_button.setFocus()
    _spin_until(app, lambda: False, 0.3)
    out = outdir / "catalog.png"
    if not wizard.grab().save(str(out)):
        raise SystemExit(f"screenshots: cannot write {out}")
    return out


def _grab(wizard: QWidget, out: Path) -> Path:
    if not wizard.grab().save(str(out)):
        raise SystemExit(f"screenshots: cannot write {out}")
    return out


def _build_screenshots(
    app: QApplication, wizard: ShieldwrightWizard, outdir: Path, timeout: float
) -> list[Path]:
    """Review, Generate (mid-run, in the write step), Finished (the build's digests, verified) and a test boot
    of the template, for real.

    The template is written to a temporary folder (deleted afterwards). To catch Generate mid-run, the
    worker threads' reads of the base image are slowed down until the write step is well under way; the
    engine itself is unchanged.
    """
    state = wizard.state
    shots: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="shieldwright-shot-") as tmp:
        # The certificate screenshot's files are gone; the recipe names files, so write them again.
        signer = state.uefi_signing.signer if state.uefi_signing is not None else None
        if not isinstance(signer, KeySigner):
            raise SystemExit("screenshots: the generated signing key is not loaded")
        cert_path = keys.write_certificate(signer.certificate, Path(tmp) / "uefi-signing.crt")
        key_path = keys.write_private_key(signer.private_key, Path(tmp) / "uefi-signing.key")
        for choice in (state.uefi_signing, state.catalog_signing):
            if choice is not None:
                choice.cert_path, choice.key_path = cert_path, key_path
        output = Path(tmp) / "templates" / "demo-web-server-1.0.0.0.raw"
        state.output = OutputChoice(OutputOptions(output, "raw"))
        output.parent.mkdir()
        wizard.setCurrentId(PageId.REVIEW)
        review = wizard.review_page
        if not _spin_until(app, lambda: not review.is_busy(), timeout):
            raise SystemExit("screenshots: checking the recipe did not finish")
        if not review.isComplete():
            raise SystemExit(f"screenshots: the recipe is not valid: {review.findings.messages()}")
        review.command_button.setChecked(True)
        review.summary.verticalScrollBar().setValue(0)
        _spin_until(app, lambda: False, 0.3)
        shots.append(_grab(wizard, outdir / "review.png"))
        review.command_button.setChecked(False)

        slow = threading.Event()
        slow.set()
        original = RawImage.read

        def read(self: RawImage, offset: int, length: int) -> bytes:
            if slow.is_set() and threading.current_thread() is not threading.main_thread():
                time.sleep(0.03)
            return original(self, offset, length)

        RawImage.read = read  # type: ignore[method-assign,assignment]
        try:
            wizard.next()  # the commit button: Generate
            page = wizard.generate_page
            if wizard.currentId() != PageId.BUILD:
                raise SystemExit("screenshots: Generate did not start the build")

            def mid_write() -> bool:
                bar = page.progress_panel.bar
                in_write = "writ" in page.step_label.text().lower()
                far_enough = bar.maximum() > 0 and bar.value() > bar.maximum() // 4
                return not page.is_running() or (in_write and far_enough)

            if not _spin_until(app, mid_write, timeout * 3):
                raise SystemExit("screenshots: the build never reached the write step")
            if not page.is_running():
                why = page.error_panel.message_label.text()
                raise SystemExit(f"screenshots: the build ended early: {why}")
            _spin_until(app, lambda: False, 1.2)  # a rate and a time left
            shots.append(_grab(wizard, outdir / "generate.png"))
            slow.clear()
            if not _spin_until(app, lambda: not page.is_running(), timeout * 5):
                raise SystemExit("screenshots: the build did not finish")
        finally:
            RawImage.read = original  # type: ignore[method-assign]
        if not page.isComplete():
            raise SystemExit(f"screenshots: the build failed: {page.error_panel.message_label.text()}")

        wizard.next()
        finished = wizard.finished_page
        finished.verify()
        if not _spin_until(app, lambda: not finished.is_busy(), timeout * 3):
            raise SystemExit("screenshots: verifying the template did not finish")
        finished.verify_button.setFocus()
        _spin_until(app, lambda: False, 0.3)
        shots.append(_grab(wizard, outdir / "finished.png"))
        shots.append(_test_boot_screenshot(app, wizard, outdir, output))
        shots.extend(_provision_screenshots(app, wizard, outdir, timeout, Path(tmp)))
        shots.extend(_shielding_screenshots(app, wizard, outdir, timeout, Path(tmp)))
    return shots


def _idle(page: Any) -> Callable[[], bool]:
    return lambda: not page.is_busy()


def _provision_screenshots(
    app: QApplication, wizard: ShieldwrightWizard, outdir: Path, timeout: float, workdir: Path
) -> list[Path]:
    """The Provision a VM disk wizard, opened from the Finished page on the template just built: its PCR
    policy page (a vTPM created for the VM, the PCR policy page's variable store) and its Done page after a
    real provisioning into ``workdir``."""
    wizard.finished_page.provision()
    provision = wizard.provision_wizard
    if provision is None:
        raise SystemExit("screenshots: the Finished page did not open the provision wizard")
    provision.resize(*SCREENSHOT_SIZE)
    provision.confirm_discard = False
    try:
        pages: list[tuple[Any, Callable[[], object], str]] = [
            (provision.template_page, lambda: None, "verifying the template"),
            (provision.target_page, lambda: provision.target_page.create_vtpm(workdir / "vm1-tpm"),
             "creating the vTPM"),
            (provision.policy_page, lambda: None, "predicting the PCR policy"),
        ]  # fmt: skip
        for page, action, what in pages:
            action()
            if not _spin_until(app, _idle(page), timeout * 2):
                raise SystemExit(f"screenshots: {what} did not finish")
            if not page.isComplete():
                raise SystemExit(f"screenshots: {what} failed: {page.error_panel.message_label.text()}")
            if page is not provision.policy_page:
                provision.next()
        provision.policy_page.checklist.checks[4].setFocus()
        _spin_until(app, lambda: False, 0.3)
        shots = [_grab(provision, outdir / "provision.png")]
        provision.next()
        enc = wizard.state.encryption
        if enc is None or not enc.passphrase:
            raise SystemExit("screenshots: the template's provisioning passphrase is not in memory")
        provision.output_page.passphrase_edit.setText(enc.passphrase.decode())
        provision.output_page.set_output(workdir / "vm1.raw")
        provision.next()  # the commit button: Provision
        run = provision.run_page
        if provision.currentId() != ProvisionPageId.PROVISION:
            raise SystemExit("screenshots: Provision did not start")
        if not _spin_until(app, lambda: not run.is_running(), timeout * 5) or run.result is None:
            raise SystemExit(f"screenshots: provisioning failed: {run.error_panel.message_label.text()}")
        provision.next()
        provision.done_page.open_folder_button.setFocus()
        _spin_until(app, lambda: False, 0.3)
        shots.append(_grab(provision, outdir / "provisioned.png"))
        return shots
    finally:
        provision.close()


#: An example admin password hash (``openssl passwd -6``): the screenshot shows a hash, never a password.
EXAMPLE_HASH = "$6$Ow3kqkR8bZpJm4Lx$" + "Qk7o1c9TzV3xYd5F2hLrW8sNqA0eUj6pGm4BvKt" * 2 + "e0Ab7Cd9"


def _shielding_screenshots(
    app: QApplication, wizard: ShieldwrightWizard, outdir: Path, timeout: float, workdir: Path
) -> list[Path]:
    """The Shielding Data wizard, opened from the Finished page on the template just built, page by page:
    an owner created and a fabric guardian imported into a guardian store in ``workdir`` (never the
    user's), the template's qualifier, specialization values, the review, and the generated file tested
    against the template."""
    state = wizard.finished_page.shielding_state()
    if state is None:
        raise SystemExit("screenshots: the Finished page has no template for shielding data")
    state.store = workdir / "guardians"
    state.output = workdir / "web-server.shd"
    shielding = wizard.open_shielding_wizard(state)
    shielding.resize(*SCREENSHOT_SIZE)
    shielding.confirm_discard = False
    shots: list[Path] = []

    def settle_and_grab(name: str) -> None:
        _spin_until(app, lambda: False, 0.3)
        shots.append(_grab(shielding, outdir / f"shielding-{name}.png"))

    def wait(page: Any, what: str) -> None:
        if not _spin_until(app, _idle(page), timeout * 2):
            raise SystemExit(f"screenshots: {what} did not finish")
        if page.error_panel.isVisible():
            raise SystemExit(f"screenshots: {what} failed: {page.error_panel.message_label.text()}")

    try:
        shielding.file_page.policy_buttons["shielded"].setFocus()
        settle_and_grab("file")
        shielding.next()
        guardians = shielding.guardians_page
        wait(guardians, "listing the guardians")
        guardians.owner_name.setText("contoso-owner")
        guardians.create_owner("contoso-owner")
        wait(guardians, "creating the owner")
        fabric_key = keys.generate_key("rsa3072")
        fabric = keys.generate_self_signed(fabric_key, common_name="HGS fabric east encryption",
                                           organization="Fabrikam Hosting", days=365)  # fmt: skip
        guardians.import_name.setText("fabrikam-east")
        guardians.import_certificate(str(keys.write_certificate(fabric, workdir / "fabrikam-east.crt")))
        wait(guardians, "importing the guardian")
        guardians.table.setFocus()
        settle_and_grab("guardians")
        shielding.next()
        qualifiers = shielding.qualifiers_page
        wait(qualifiers, "reading the template's catalog")
        if not qualifiers.isComplete():
            raise SystemExit("screenshots: the template's qualifier was not prefilled")
        qualifiers.table.selectRow(0)
        settle_and_grab("qualifiers")
        shielding.next()
        values = shielding.values_page
        enc = wizard.state.encryption
        if enc is None or not enc.passphrase:
            raise SystemExit("screenshots: the template's provisioning passphrase is not in memory")
        values.passphrase_edit.setText(enc.passphrase.decode())
        values.hostname_edit.setText("web-01")
        values.hash_edit.setText(EXAMPLE_HASH)
        values.hash_edit.setCursorPosition(0)
        pub = workdir / "id_ed25519.pub"
        pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx3c2hpZWxkd3JpZ2h0ZGVtbw admin@workstation\n")
        values.add_ssh_keys(pub)
        motd = workdir / "motd"
        motd.write_text("Provisioned from shielding data.\n")
        values.add_file(motd, "/etc/motd")
        if not values.isComplete():
            raise SystemExit(f"screenshots: the values were refused: {values.verdict.text()}")
        values.hostname_edit.setFocus()
        settle_and_grab("values")
        shielding.next()
        settle_and_grab("review")
        shielding.next()  # the commit button: Generate
        generate = shielding.generate_page
        wait(generate, "generating the shielding data")
        if shielding.state.written is None:
            raise SystemExit("screenshots: no shielding data was written")
        template = wizard.finished_page.shielding_state()
        assert template is not None and template.prefill is not None
        generate.test(template.prefill)
        wait(generate, "testing the shielding data against the template")
        generate.test_button.setFocus()
        settle_and_grab("generate")
        return shots
    finally:
        shielding.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.gui.screenshots", description=__doc__.splitlines()[0]
    )
    parser.add_argument("outdir", type=Path, help="directory for the PNG files")
    parser.add_argument("image", type=Path, nargs="?", help="disk image to open on the Base image page")
    parser.add_argument("--theme", choices=("light", "dark"), default="light",
                        help="the palette: the platform's (light), or a dark desktop theme's")  # fmt: skip
    parser.add_argument("--frame-only", action="store_true",
                        help="only the window: start page, File menu, About (no IMAGE needed)")  # fmt: skip
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.theme == "dark":
        create_application().setPalette(dark_palette())
    if args.frame_only:
        shots = take_frame_screenshots(args.outdir)
    elif args.image is None:
        parser.error("IMAGE is needed (or --frame-only)")
    else:
        shots = take_screenshots(args.outdir, args.image)
    for path in shots:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
