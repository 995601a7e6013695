"""The application window: a menu, a start page offering the three flows, and the flow being worked on.

One window holds one flow at a time - the template wizard, the Shielding Data wizard or the Provision a VM
disk wizard - embedded below the menu; the start page shows when none is open. Each flow gets its own
:class:`TaskRunner` on the application's executor, so closing one stops exactly its own work.

- **File**: New template disk / New shielding data / Provision a VM disk, Open recipe… (fills the template
  wizard from a saved recipe; secrets are asked for, as in a replay), Open recent, Save recipe…, Close wizard,
  Quit. **Help**: User guide, Keyboard shortcuts, Save diagnostics… (the log and the versions, never a
  secret), About (the versions in use). The menu titles carry no mnemonic (the pages use nearly every letter
  with Alt); F10 opens the menu, as in GNOME.
- Closing a flow or quitting asks first when something would be lost (the flow's ``unsaved_work()``); during
  a build the frame asks whether to stop it, and quits once it has stopped and cleaned up.
- Remembered (:class:`~app.gui.settings.Settings`): window geometry, last folders, recent recipes, the last
  signing certificates by path (loaded again on the Certificates page of a new template). Never a secret.
- Every dialog is non-blocking (``open()`` and signals, never ``exec()``: qasync#59).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, cast

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QScreen, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QMainWindow,
    QMenu,
    QMessageBox,
    QStackedWidget,
    QWidget,
    QWizard,
)

from app.errors import ShieldwrightError
from app.gui.diagnostics import default_bundle_name, write_diagnostics
from app.gui.dialogs.about import AboutDialog, gather_versions_args
from app.gui.dialogs.help import GuideWindow, ShortcutsDialog, user_guide_candidates, user_guide_path
from app.gui.discard import ask_to_discard
from app.gui.file_dialogs import RECIPE_FILTERS, open_file_dialog
from app.gui.provision_wizard import ProvisionWizard
from app.gui.settings import Settings
from app.gui.shielding_wizard import ShieldingWizard
from app.gui.start_page import Flow, StartPage
from app.gui.state import OutputChoice
from app.gui.tasks import TaskRunner
from app.gui.wizard import PageId, ShieldwrightWizard
from app.logfile import log_file_path
from app.template.recipe import OutputOptions, Recipe
from app.template.recipe_file import load_recipe, save_recipe
from wizard_pages.review_summary import default_output_path, safe_stem

log = logging.getLogger(__name__)

DIAGNOSTICS_FILTERS = ("Zip archives (*.zip)", "All files (*)")
#: File › Open recipe (except on the Base image page, where Ctrl+O opens the image).
OPEN_KEYS = QKeySequence("Ctrl+O")
#: The window's size the first time (later: the size it had when it was closed).
DEFAULT_SIZE = (1040, 740)


def first_size(screen: QScreen | None) -> QSize:
    """:data:`DEFAULT_SIZE`, made to fit the screen's free area (an 800×600 screen, a panel)."""
    width, height = DEFAULT_SIZE
    if screen is not None:
        free = screen.availableGeometry()
        width, height = min(width, free.width()), min(height, free.height())
    return QSize(width, height)


class FlowWizard(Protocol):
    """What the frame needs of a flow (the three wizards have it)."""

    runner: TaskRunner
    confirm_discard: bool

    def is_running(self) -> bool: ...
    def unsaved_work(self) -> list[str]: ...
    def discard(self) -> None: ...
    def terminate(self) -> None: ...


class MainWindow(QMainWindow):
    """The frame. ``runner`` is the application's (About, diagnostics and recipe files use it); each flow
    gets a runner of its own on the same executor."""

    #: The window closed for good (the application quits).
    closed = Signal()
    #: The flow shown changed (the new one, or None for the start page).
    flowChanged = Signal(object)
    #: A recipe opened from File › Open recipe (or a recent one) is in a new template wizard (its path).
    recipeOpened = Signal(object)
    #: A recipe file or the diagnostics bundle was written, or failed to be (the path, or None).
    fileSaved = Signal(object)

    def __init__(
        self,
        runner: TaskRunner,
        settings: Settings | None = None,
        *,
        log_path: Path | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("shieldwrightWindow")
        self.runner = runner
        self.settings = settings or Settings()
        self.log_path = log_path if log_path is not None else log_file_path()
        #: The flow shown, if any (a wizard embedded in the window).
        self.flow: QWizard | None = None
        self.flow_kind: Flow | None = None
        #: A quit was confirmed: close the window once the flow is gone.
        self._quitting = False
        self._may_close = False
        self._closed = False
        self.about_dialog: AboutDialog | None = None
        self.shortcuts_dialog: ShortcutsDialog | None = None
        self.guide_window: GuideWindow | None = None
        self._dialogs: dict[str, QWidget] = {}
        #: Template wizards whose Certificates page was offered the last certificates already.
        self._certificates_offered: weakref.WeakSet[QWizard] = weakref.WeakSet()

        self.stack = QStackedWidget(self)
        self.start_page = StartPage(self.stack)
        self.start_page.flowChosen.connect(lambda kind: self.request_flow(Flow(kind)))
        self.start_page.openRecipeRequested.connect(self.open_recipe_dialog)
        self.start_page.recentRecipeChosen.connect(self.open_recipe)
        self.stack.addWidget(self.start_page)
        self.setCentralWidget(self.stack)
        self.statusBar().setSizeGripEnabled(False)
        self._build_menus()

        geometry = self.settings.window_geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(first_size(self.screen()))
        self.show_start_page()

    # -- menus ------------------------------------------------------------------------------------

    def _action(
        self, menu: QMenu, text: str, slot: Callable[[], object], shortcut: QKeySequence | None = None,
        tip: str = "",
    ) -> QAction:  # fmt: skip
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        # No mnemonics in the bar: Alt+F and Alt+H belong to the pages' fields ("&File:", "&Host name:").
        self.file_menu = bar.addMenu(self.tr("File"))
        self.file_menu.setObjectName("fileMenu")
        m = self.file_menu
        self.new_template_action = self._action(
            m, self.tr("New &template disk"), lambda: self.request_flow(Flow.TEMPLATE),
            QKeySequence("Ctrl+N"),
            self.tr("Create a signed, encrypted template disk from a prepared image"),
        )  # fmt: skip
        self.new_shielding_action = self._action(
            m, self.tr("New s&hielding data"), lambda: self.request_flow(Flow.SHIELDING), None,
            self.tr("Create shielding data for VMs made from trusted templates"),
        )  # fmt: skip
        self.provision_action = self._action(
            m, self.tr("&Provision a VM disk"), lambda: self.request_flow(Flow.PROVISION), None,
            self.tr("Seal a template's disk to one VM's vTPM"),
        )  # fmt: skip
        m.addSeparator()
        self.open_recipe_action = self._action(
            m, self.tr("&Open recipe…"), self.open_recipe_dialog, OPEN_KEYS,
            self.tr("Fill the template wizard from a saved recipe"),
        )  # fmt: skip
        self.recent_menu = m.addMenu(self.tr("Open &recent"))
        self.recent_menu.setObjectName("recentMenu")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.save_recipe_action = self._action(
            m, self.tr("&Save recipe…"), self.save_recipe_dialog, QKeySequence("Ctrl+S"),
            self.tr("Save the template wizard's choices as a recipe for shieldwright build (no secret)"),
        )  # fmt: skip
        m.addSeparator()
        self.close_flow_action = self._action(
            m, self.tr("&Close wizard"), self.close_flow, QKeySequence("Ctrl+W"),
            self.tr("Close the wizard and go back to the start page"),
        )  # fmt: skip
        self.quit_action = self._action(m, self.tr("&Quit"), self.close, QKeySequence("Ctrl+Q"))

        self.help_menu = bar.addMenu(self.tr("Help"))
        self.help_menu.setObjectName("helpMenu")
        h = self.help_menu
        self.guide_action = self._action(h, self.tr("User &guide"), self.show_user_guide, QKeySequence("F1"))
        self.shortcuts_action = self._action(h, self.tr("&Keyboard shortcuts"), self.show_shortcuts)
        self.diagnostics_action = self._action(
            h, self.tr("Save &diagnostics…"), self.save_diagnostics_dialog, None,
            self.tr("Save the log and the versions in use to a file for a bug report (no secret)"),
        )  # fmt: skip
        h.addSeparator()
        self.about_action = self._action(h, self.tr("&About Shieldwright"), self.show_about)

        self.menu_shortcut = QShortcut(QKeySequence(Qt.Key.Key_F10), self)
        self.menu_shortcut.activated.connect(self.open_menu)
        self._fill_recent_menu()

    def open_menu(self) -> None:
        """F10: open the File menu (then the arrow keys move through the menus)."""
        bar = self.menuBar()
        bar.setFocus(Qt.FocusReason.ShortcutFocusReason)
        bar.setActiveAction(self.file_menu.menuAction())

    def _fill_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        recent = self.settings.recent_recipes()
        for n, path in enumerate(recent, start=1):
            text = f"&{n} {path.name}" if n < 10 else path.name
            action = menu.addAction(text)
            action.setToolTip(str(path))
            action.setStatusTip(str(path))
            action.setEnabled(path.is_file())
            action.triggered.connect(lambda _checked=False, p=path: self.open_recipe(p))
        if recent:
            menu.addSeparator()
            menu.addAction(self.tr("&Clear list"), self.clear_recent_recipes)
        else:
            menu.addAction(self.tr("No recent recipes")).setEnabled(False)
        self.start_page.set_recent(recent)

    def clear_recent_recipes(self) -> None:
        self.settings.clear_recent_recipes()
        self._fill_recent_menu()

    def _update_actions(self) -> None:
        self.save_recipe_action.setEnabled(isinstance(self.flow, ShieldwrightWizard))
        self.close_flow_action.setEnabled(self.flow is not None)
        # The Base image page opens an image with Ctrl+O: there, the page's (more specific) shortcut wins
        # instead of both being ambiguous and neither working.
        self.open_recipe_action.setShortcut(QKeySequence() if self._page_has_open() else OPEN_KEYS)

    def _page_has_open(self) -> bool:
        flow = self.flow
        return isinstance(flow, ShieldwrightWizard) and flow.currentId() == PageId.BASE_IMAGE

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """The keyboard shortcuts in force: the menus' actions, F10, and the wizards' buttons."""
        native = QKeySequence.SequenceFormat.NativeText
        rows: list[tuple[str, str]] = []
        for menu in (self.file_menu, self.help_menu):
            for action in menu.actions():
                if not action.shortcut().isEmpty():
                    rows.append((action.shortcut().toString(native), action.text().replace("&", "")))
        if self._page_has_open():
            rows.append((OPEN_KEYS.toString(native), self.tr("Open a base image (on the Base image page)")))
        rows.append((QKeySequence(Qt.Key.Key_F10).toString(native), self.tr("Open the menu")))
        wizard = self.flow if self.flow is not None else QWizard(self)
        try:
            names = {
                QWizard.WizardButton.BackButton: self.tr("Back to the previous page"),
                QWizard.WizardButton.NextButton: self.tr("Next page"),
                QWizard.WizardButton.FinishButton: self.tr("Finish the wizard"),
            }
            for button, what in names.items():
                keys = QKeySequence.mnemonic(wizard.buttonText(button))
                if not keys.isEmpty():
                    rows.append((keys.toString(native), what))
        finally:
            if wizard is not self.flow:
                wizard.deleteLater()
        rows.append((self.tr("Enter"), self.tr("The highlighted button (Next, or Generate on Review)")))
        rows.append((QKeySequence(Qt.Key.Key_Escape).toString(native),
                     self.tr("Close the wizard (asks first when something would be lost; during a build, "
                             "whether to stop it)")))  # fmt: skip
        return rows

    # -- flows ------------------------------------------------------------------------------------

    def show_start_page(self) -> None:
        self._fill_recent_menu()
        self.stack.setCurrentWidget(self.start_page)
        self.setWindowTitle(self.tr("Shieldwright"))
        self._update_actions()
        self.start_page.flow_buttons[Flow.TEMPLATE].setFocus()

    def request_flow(self, kind: Flow, *, image: Path | str | None = None) -> None:
        """Open ``kind`` (a template wizard on ``image`` if given); the flow shown is closed first, asking
        if something would be lost."""

        def make() -> None:
            wizard = self._make_flow(kind)
            self._show_flow(wizard, kind)
            if image is not None and isinstance(wizard, ShieldwrightWizard):
                wizard.open_image(image)

        self._replace_flow(make)

    def _make_flow(self, kind: Flow, recipe: Recipe | None = None, path: Path | None = None) -> QWizard:
        runner = TaskRunner(self.runner.executor)
        wizard: QWizard
        if kind is Flow.TEMPLATE:
            if recipe is not None:
                wizard = ShieldwrightWizard.from_recipe(runner, recipe, self.stack, path=path)
            else:
                wizard = ShieldwrightWizard(runner, parent=self.stack)
        elif kind is Flow.SHIELDING:
            wizard = ShieldingWizard(runner, parent=self.stack)
        else:
            wizard = ProvisionWizard(runner, parent=self.stack)
        runner.setParent(wizard)
        return wizard

    def _show_flow(self, wizard: QWizard, kind: Flow) -> None:
        wizard.setWindowFlags(Qt.WindowType.Widget)  # embedded below the menu, not a window of its own
        wizard.finished.connect(lambda _result, w=wizard: self._on_flow_finished(w))
        if isinstance(wizard, ShieldwrightWizard):
            wizard.offer_start_over = True
            wizard.startOverRequested.connect(self.start_over)
            wizard.buildAnotherRequested.connect(self.build_another)
            wizard.certificates_page.certificatesChanged.connect(
                lambda w=wizard: self._remember_certificates(w)
            )
            wizard.base_image_page.inspectionFinished.connect(lambda w=wizard: self._remember_image_folder(w))
            wizard.currentIdChanged.connect(lambda page, w=wizard: self._on_template_page(w, page))
            wizard.currentIdChanged.connect(self._update_actions)
            folder = self.settings.folder("certificates")
            if folder is not None:
                wizard.certificates_page.key_directory = folder
            wizard.base_image_page.image_directory = self.settings.folder("image")
        self.flow, self.flow_kind = wizard, kind
        self.stack.addWidget(wizard)
        self.stack.setCurrentWidget(wizard)
        self.setWindowTitle(wizard.windowTitle())
        self._update_actions()
        self.flowChanged.emit(wizard)

    def _replace_flow(self, then: Callable[[], None], action: str | None = None) -> None:
        """Close the flow shown (asking first if something would be lost), then run ``then``."""
        flow = self.flow
        if flow is None:
            then()
            return
        f = cast(FlowWizard, flow)
        if f.is_running():
            self.statusBar().showMessage(self.tr("Finish or stop what is running first."), 8000)
            flow.reject()  # asks, inline, whether to stop
            return

        def discard() -> None:
            self._close_flow_now(flow)
            then()

        ask_to_discard(self, f.unsaved_work(), discard, action=action or self.tr("Close the current wizard"))

    def _close_flow_now(self, flow: QWizard) -> None:
        cast(FlowWizard, flow).discard()  # done(): its tasks stop, its secrets are wiped
        self._remove_flow(flow)

    def close_flow(self) -> None:
        """File › Close wizard (Ctrl+W): back to the start page, asking first if something would be lost."""
        if self.flow is not None:
            self._replace_flow(self.show_start_page)

    def start_over(self) -> None:
        """*Start over* on the template wizard's Summary page."""
        self._replace_flow(self.show_start_page, self.tr("Start over"))

    def build_another(self, recipe: Recipe) -> None:
        """*Build another*: a new template wizard filled with the same choices (secrets asked again)."""

        def make() -> None:
            self._show_flow(self._make_flow(Flow.TEMPLATE, recipe), Flow.TEMPLATE)
            self.statusBar().showMessage(
                self.tr("Same choices as the template just built: change its version or output, and enter "
                        "the passphrases again."), 15000,
            )  # fmt: skip

        self._replace_flow(make, self.tr("Build another"))

    def _on_flow_finished(self, flow: QWizard) -> None:
        """A flow closed itself (Finish, Cancel, Escape, after a build stopped): back to the start page, or
        quit if a quit was waiting for it."""
        was_current = flow is self.flow
        self._remove_flow(flow)
        if self._quitting:
            self._may_close = True
            self.close()
        elif was_current:
            self.show_start_page()

    def _remove_flow(self, flow: QWizard) -> None:
        if self.stack.indexOf(flow) >= 0:
            self.stack.removeWidget(flow)
            flow.deleteLater()
        if flow is self.flow:
            self.flow, self.flow_kind = None, None
            self._update_actions()
            self.flowChanged.emit(None)

    # -- settings hooks -----------------------------------------------------------------------------

    def _remember_certificates(self, wizard: ShieldwrightWizard) -> None:
        state = wizard.state
        if state.uefi_signing is not None and state.uefi_signing.usable:
            self.settings.set_certificate("uefi", state.uefi_signing.cert_path, state.uefi_signing.key_path)
            if state.catalog_same_as_uefi:
                self.settings.set_certificate("catalog", None)
            elif state.catalog_signing is not None and state.catalog_signing.usable:
                choice = state.catalog_signing
                self.settings.set_certificate("catalog", choice.cert_path, choice.key_path)

    def _remember_image_folder(self, wizard: ShieldwrightWizard) -> None:
        if wizard.state.image_path is not None:
            self.settings.set_folder("image", Path(wizard.state.image_path).absolute().parent)

    def _on_template_page(self, wizard: ShieldwrightWizard, page: int) -> None:
        """The first visit to Certificates of a new template loads the last certificates used (by path)."""
        if page != PageId.CERTIFICATES or wizard in self._certificates_offered:
            return
        self._certificates_offered.add(wizard)
        certs = wizard.certificates_page
        if wizard.opened_from is not None or wizard.recipe_pending() or wizard.state.uefi_signing is not None:
            return
        if certs.is_busy() or certs.uefi_box.loaded is not None:
            return
        uefi = self.settings.certificate("uefi")
        if uefi is None:
            return
        catalog = self.settings.certificate("catalog")
        log.info("loading the last signing certificates used (%s)", uefi[0])
        wizard.load_certificates(uefi, catalog)
        self.statusBar().showMessage(
            self.tr("Loading the signing certificate used last time, %1.").replace("%1", uefi[0].name), 8000
        )

    # -- recipes ----------------------------------------------------------------------------------

    def _file_dialog(
        self, key: str, title: str, directory: Path, on_selected: Callable[[str], Any], *,
        filters: tuple[str, ...], save: bool = False, select: str | None = None, suffix: str | None = None,
    ) -> QFileDialog:  # fmt: skip
        """A non-blocking file dialog, one per ``key`` (asking again raises it); the frame asks about
        overwriting itself, non-blocking."""
        return open_file_dialog(
            self, self._dialogs, key, title, directory, on_selected, filters=filters, save=save,
            select=select, suffix=suffix, confirm_overwrite=False,
        )  # fmt: skip

    def open_dialog(self, key: str) -> QWidget | None:
        """The frame's ``key`` dialog while it is open (tests drive it): ``open-recipe``, ``save-recipe``,
        ``diagnostics``, ``replace``, ``message``."""
        return self._dialogs.get(key)

    def open_recipe_dialog(self) -> QFileDialog:
        return self._file_dialog(
            "open-recipe", self.tr("Open recipe"), self.settings.start_folder("recipe"), self.open_recipe,
            filters=RECIPE_FILTERS,
        )  # fmt: skip

    def open_recipe(self, path: str | Path) -> None:
        """Read ``path`` (in the background); if it is a valid recipe, a new template wizard shows it on
        every page - after closing the flow shown, asking first if something would be lost."""
        path = Path(path)
        log.info("opening recipe %s", path)
        task = self.runner.start(load_recipe, path, name="open-recipe")
        task.succeeded.connect(lambda recipe: self._on_recipe_loaded(path, recipe))
        task.failed.connect(lambda error: self._on_recipe_failed(path, error))

    def _on_recipe_loaded(self, path: Path, recipe: Recipe) -> None:
        self.settings.add_recent_recipe(path)
        self._fill_recent_menu()

        def make() -> None:
            wizard = self._make_flow(Flow.TEMPLATE, recipe, path)
            self._show_flow(wizard, Flow.TEMPLATE)
            asked = [self.tr("the signing key's passphrase (if the key is encrypted)")]
            if recipe.encryption.passphrase.kind == "prompt":
                asked.append(self.tr("the provisioning passphrase (on the Encryption page)"))
            self.statusBar().showMessage(
                self.tr("Opened %1: check each page. A recipe holds no secret, so you are asked for %2.")
                .replace("%1", path.name)
                .replace("%2", self.tr(" and ").join(asked)),
                20000,
            )
            self.recipeOpened.emit(path)

        self._replace_flow(make, self.tr("Open the recipe"))

    def _on_recipe_failed(self, path: Path, error: ShieldwrightError) -> None:
        if not path.exists():
            self.settings.remove_recent_recipe(path)
            self._fill_recent_menu()
        self.show_message(
            self.tr("Cannot open the recipe %1").replace("%1", path.name), error.message, error.hint,
            QMessageBox.Icon.Warning,
        )  # fmt: skip

    def _recipe_to_save(self, wizard: ShieldwrightWizard) -> Recipe:
        """The wizard's recipe; without an output chosen yet, the one the Review page would propose."""
        state = wizard.state
        if state.output is None or state.output.options is None:
            default = default_output_path(state)
            if default is not None:
                state.output = OutputChoice(OutputOptions(default, "raw"))
        recipe = wizard.current_recipe()
        return recipe if recipe is not None else state.recipe()  # the latter raises, saying what is missing

    def save_recipe_dialog(self) -> QFileDialog | None:
        """File › Save recipe: the template wizard's choices (no secret) to a TOML file."""
        wizard = self.flow
        if not isinstance(wizard, ShieldwrightWizard):
            return None
        try:
            recipe = self._recipe_to_save(wizard)
        except ShieldwrightError as exc:
            self.show_message(self.tr("The recipe is not complete yet"), exc.message, exc.hint)
            return None
        state = wizard.state
        folder = self.settings.folder("recipe")
        if folder is None:
            folder = (wizard.opened_from or state.image_path or Path.home() / "x").parent
        name = wizard.opened_from.name if wizard.opened_from is not None else None
        if name is None and state.catalog is not None:
            name = f"{safe_stem(state.catalog.options.name, state.catalog.options.version)}.recipe.toml"
        return self._file_dialog(
            "save-recipe", self.tr("Save recipe"), folder,
            lambda chosen: self._save_recipe_to(wizard, recipe, Path(chosen)),
            filters=RECIPE_FILTERS, save=True, select=name or "template.recipe.toml", suffix="toml",
        )  # fmt: skip

    def _save_recipe_to(self, wizard: ShieldwrightWizard, recipe: Recipe, path: Path) -> None:
        if path.exists():
            self._ask_replace(path, lambda: self.save_recipe_file(wizard, recipe, path, overwrite=True))
        else:
            self.save_recipe_file(wizard, recipe, path)

    def save_recipe_file(
        self, wizard: ShieldwrightWizard, recipe: Recipe, path: Path, *, overwrite: bool = False
    ) -> None:
        """Write ``recipe`` to ``path`` in the background."""
        task = self.runner.start(save_recipe, recipe, path, overwrite=overwrite, name="save-recipe")

        def saved(written: Path) -> None:
            wizard.saved_recipe = recipe
            self.settings.add_recent_recipe(written)
            self._fill_recent_menu()
            self.statusBar().showMessage(
                self.tr("Recipe saved to %1 (no secret).").replace("%1", str(written))
            )
            self.fileSaved.emit(written)

        def failed(error: ShieldwrightError) -> None:
            self.show_message(
                self.tr("The recipe was not saved"), error.message, error.hint, QMessageBox.Icon.Warning
            )
            self.fileSaved.emit(None)

        task.succeeded.connect(saved)
        task.failed.connect(failed)

    def _ask_replace(self, path: Path, replace: Callable[[], None]) -> None:
        text = self.tr("%1 already exists. Replace it?").replace("%1", str(path))
        box = QMessageBox(QMessageBox.Icon.Question, self.tr("Replace file?"), text, parent=self)
        yes = box.addButton(self.tr("&Replace"), QMessageBox.ButtonRole.AcceptRole)
        keep = box.addButton(self.tr("&Keep it"), QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        self._dialogs["replace"] = box

        def answered(_result: int) -> None:
            self._dialogs.pop("replace", None)
            if box.clickedButton() is yes:
                replace()
            box.deleteLater()

        box.finished.connect(answered)
        box.open()

    def show_message(
        self, text: str, message: str, hint: str = "", icon: QMessageBox.Icon = QMessageBox.Icon.Information
    ) -> QMessageBox:
        """A non-blocking message box (one at a time)."""
        old = self._dialogs.pop("message", None)
        if old is not None:
            old.close()
        box = QMessageBox(icon, self.tr("Shieldwright"), text, QMessageBox.StandardButton.Close, self)
        box.setInformativeText("\n\n".join(t for t in (message[:1].upper() + message[1:], hint) if t))
        box.setObjectName("frameMessage")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def closed(_result: int) -> None:
            if self._dialogs.get("message") is box:
                del self._dialogs["message"]

        box.finished.connect(closed)
        self._dialogs["message"] = box
        box.open()
        return box

    # -- help -------------------------------------------------------------------------------------

    def show_about(self) -> AboutDialog:
        if self.about_dialog is None:
            self.about_dialog = AboutDialog(self.runner, self)
            self.about_dialog.finished.connect(self._about_closed)
        self.about_dialog.show()  # non-modal (and never exec())
        self.about_dialog.raise_()
        return self.about_dialog

    def _about_closed(self) -> None:
        dialog, self.about_dialog = self.about_dialog, None
        if dialog is not None:
            dialog.deleteLater()

    def show_shortcuts(self) -> ShortcutsDialog:
        if self.shortcuts_dialog is not None:
            self.shortcuts_dialog.deleteLater()
        self.shortcuts_dialog = ShortcutsDialog(self.shortcut_rows(), self)
        self.shortcuts_dialog.show()
        return self.shortcuts_dialog

    def show_user_guide(self) -> QWidget:
        """The user guide in a window of its own, or a message saying where it was looked for."""
        path = user_guide_path()
        if path is None:
            where = "\n".join(str(p) for p in user_guide_candidates())
            return self.show_message(
                self.tr("The user guide is not installed."),
                self.tr("It was looked for in:\n%1").replace("%1", where),
                self.tr("The same guide is in the project's docs/ folder online."),
            )
        if self.guide_window is None:
            self.guide_window = GuideWindow(path, self)
        self.guide_window.show()
        self.guide_window.raise_()
        return self.guide_window

    def secrets_in_memory(self) -> list[bytes]:
        """The secrets the flows hold right now (the diagnostics bundle makes sure none is in it)."""
        found: list[bytes] = []
        flows: list[Any] = [self.flow]
        if isinstance(self.flow, ShieldwrightWizard):
            flows += [self.flow.provision_wizard, self.flow.shielding_wizard]
        for flow in flows:
            state = getattr(flow, "state", None)
            if state is None:
                continue
            for holder in (state, getattr(state, "encryption", None)):
                for name in ("passphrase", "recovery_key_value"):
                    value = getattr(holder, name, None) if holder is not None else None
                    if value:
                        found.append(bytes(value))
        return found

    def save_diagnostics_dialog(self) -> QFileDialog:
        return self._file_dialog(
            "diagnostics", self.tr("Save diagnostics"), self.settings.start_folder("diagnostics"),
            lambda p: self.save_diagnostics(Path(p)), filters=DIAGNOSTICS_FILTERS, save=True,
            select=default_bundle_name(), suffix="zip",
        )  # fmt: skip

    def save_diagnostics(self, path: Path) -> None:
        """Write the log and the versions to ``path`` (a zip) in the background; never a secret."""
        if path.exists() and self._dialogs.get("replace") is None:
            self._ask_replace(path, lambda: self._write_diagnostics(path))
        else:
            self._write_diagnostics(path)

    def _write_diagnostics(self, path: Path) -> None:
        for handler in logging.getLogger().handlers:
            handler.flush()
        versions_args = gather_versions_args()
        secrets = self.secrets_in_memory()

        def work() -> Path:
            from app.gui.diagnostics import collect_versions

            return write_diagnostics(path, collect_versions(*versions_args), self.log_path, secrets)

        task = self.runner.start(work, name="save-diagnostics")

        def saved(written: Path) -> None:
            self.settings.set_folder("diagnostics", written.parent)
            self.statusBar().showMessage(
                self.tr("Diagnostics saved to %1: the log and the versions, no secret.").replace(
                    "%1", str(written)
                )
            )
            self.fileSaved.emit(written)

        def failed(error: ShieldwrightError) -> None:
            self.show_message(self.tr("The diagnostics were not saved"), error.message, error.hint,
                              QMessageBox.Icon.Warning)  # fmt: skip
            self.fileSaved.emit(None)

        task.succeeded.connect(saved)
        task.failed.connect(failed)
        task.finished.connect(lambda: secrets.clear())

    # -- closing ----------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        # The close button, File › Quit, Ctrl+Q and Ctrl+C in the terminal all come here.
        if self._closed:
            event.accept()
            return
        if not self._may_close and self.flow is not None:
            event.ignore()
            self.request_quit()
            return
        self._closed = True
        self.settings.set_window_geometry(self.saveGeometry())
        for window in (
            self.about_dialog,
            self.shortcuts_dialog,
            self.guide_window,
            *list(self._dialogs.values()),
        ):
            if window is not None:
                window.close()
        event.accept()
        self.closed.emit()

    def request_quit(self) -> None:
        """Quit, asking first when something would be lost; a running build is stopped (and what it wrote
        removed) before the window closes."""
        flow = self.flow
        if flow is None:
            self._may_close = True
            self.close()
            return
        f = cast(FlowWizard, flow)
        reasons = list(f.unsaved_work())
        running = f.is_running()
        if running:
            reasons.insert(
                0, self.tr("the work running now (it is stopped, and what it wrote so far removed)")
            )

        def quit_now() -> None:
            # The flow closes (at once, or once a running build has stopped and cleaned up); then
            # _on_flow_finished closes the window.
            self._quitting = True
            if f.is_running():
                f.terminate()
            else:
                f.discard()

        ask_to_discard(self, reasons, quit_now, action=self.tr("Quit"))

    def terminate(self) -> None:
        """SIGTERM or SIGHUP: stop what runs without asking, and close once it has cleaned up."""
        self._quitting = True
        flow = self.flow
        if flow is None:
            self._may_close = True
            self.close()
            return
        cast(FlowWizard, flow).terminate()
