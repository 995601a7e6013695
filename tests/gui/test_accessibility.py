"""Issue 18, accessibility: every interactive element of the window, of every page of the three wizards and
of every dialog has an accessible name, and the project's custom widgets a name and a description that says
what they show.

The check walks what a screen reader sees: :func:`QAccessible.queryAccessibleInterface` of the window, then
``child(i)`` recursively, hidden widgets included (a progress panel's Stop button is named before it shows).
An element is interactive by its role (buttons, check and radio boxes, combo boxes, fields, spin boxes,
sliders, tabs, lists, tables, trees, progress bars, links, menu items) or because it takes focus (the disk
layout bar's partition segments). Exempt, each for a reason:

* scroll bars: Qt's own parts of every scroll area, announced by their role and orientation; Qt names none,
  and a name would add nothing;
* the cells and headers of item views, and a combo box's popup list and line edit: parts of the view or the
  combo box, which carries the name (an empty cell is empty, not unnamed);
* labels (``QLabel``) and separators: a label reads its own text and is no control.

On Linux Qt answers a combo box's Name with its current text even when it has a name of its own; that is its
value, not what it is for, so a combo box counts as named only by its accessible name or its label (a buddy
label, a group box: the "labelled by" relation a screen reader follows).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import shiboken6
from PySide6.QtCore import QObject
from PySide6.QtGui import QAccessible, QAccessibleInterface
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QLabel,
    QLineEdit,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
    QWizard,
)

from app.gui.dialogs.about import AboutDialog
from app.gui.dialogs.help import GuideWindow
from app.gui.frame import MainWindow
from app.gui.page import WizardPage
from app.gui.settings import Settings
from app.gui.widgets.build_step_panel import BuildStepPanel
from app.gui.widgets.disk_layout_bar import DiskLayoutBar, PartitionSegment
from app.gui.widgets.disk_layout_legend import DiskLayoutLegend
from app.gui.widgets.log_view import LogView
from app.gui.widgets.pcr_event_tree import PcrEventTree, PcrGroup
from app.gui.widgets.pcr_preview import PcrPreview
from app.gui.widgets.progress_panel import ProgressPanel
from app.gui.widgets.step_list import StepList
from app.gui.wizard import PageId
from tests.gui.conftest import open_and_wait
from tests.gui.test_issue18_defects import all_dialogs, all_wizards

Role = QAccessible.Role
NAME = QAccessible.Text.Name
DESCRIPTION = QAccessible.Text.Description
REPO = Path(__file__).resolve().parents[2]

#: Roles a user operates or reads as one control: each needs a name.
INTERACTIVE_ROLES = {
    Role.Button, Role.CheckBox, Role.RadioButton, Role.ComboBox, Role.EditableText, Role.SpinBox,
    Role.Slider, Role.Dial, Role.PageTab, Role.Table, Role.List, Role.Tree, Role.ProgressBar, Role.Link,
    Role.MenuItem, Role.ButtonMenu, Role.ButtonDropDown, Role.ButtonDropGrid, Role.HotkeyField,
}  # fmt: skip
#: Qt's own parts, announced by their role (see the module's docstring).
EXEMPT_ROLES = {Role.ScrollBar, Role.Separator}
#: Whose children are items (cells, headers, a popup's rows), not controls of their own.
ITEM_CONTAINERS = {Role.Table, Role.List, Role.Tree, Role.ComboBox}
#: The project's custom widgets: each needs a name and a description, whatever its role.
CUSTOM_WIDGETS: tuple[type[QWidget], ...] = (
    DiskLayoutBar, PartitionSegment, DiskLayoutLegend, PcrPreview, PcrEventTree, ProgressPanel,
    BuildStepPanel, StepList, LogView,
)  # fmt: skip
#: How long a page's background work (an inspection, a check) may take to show its outcome.
SETTLE_S = 60.0


# -- the walk --------------------------------------------------------------------------------------------


@dataclass
class Walk:
    """What the walk found: the interactive elements it checked, the problems, every name and description."""

    #: (role, name) of every interactive element checked, in the order walked.
    elements: list[tuple[str, str]] = field(default_factory=list)
    #: How many custom widgets were met.
    custom: int = 0
    problems: list[str] = field(default_factory=list)
    #: The objects of the problems, in order (a test of the walk itself looks at them).
    offenders: list[QObject | None] = field(default_factory=list)
    #: Every name and description met (no secret may be in one).
    texts: list[str] = field(default_factory=list)
    _seen: set[tuple[int, int]] = field(default_factory=set)
    _reported: set[tuple[int, str]] = field(default_factory=set)

    @property
    def checked(self) -> int:
        return len(self.elements)

    def report(self, obj: QObject | None, kind: str, message: str) -> None:
        """Add ``message`` unless ``obj`` was reported for ``kind`` already (from another page's walk)."""
        key = (pointer(obj) if obj is not None else id(message), kind)
        if key not in self._reported:
            self._reported.add(key)
            self.problems.append(message)
            self.offenders.append(obj)

    def message(self) -> str:
        return f"{len(self.problems)} problems in {self.checked} interactive elements:\n" + "\n".join(
            self.problems
        )


def pointer(obj: QObject) -> int:
    return int(shiboken6.getCppPointer(obj)[0])


def describe(iface: QAccessibleInterface) -> str:
    """The element for a message: its role, class, object name and text, and its parents."""
    obj = iface.object()
    if obj is None:
        return iface.role().name
    path = []
    parent = obj.parent()
    while isinstance(parent, QWidget) and len(path) < 4:
        path.append(parent.objectName() or type(parent).__name__)
        parent = parent.parent()
    text = getattr(obj, "text", None)
    shown = f" {str(text())[:40]!r}" if isinstance(obj, QWidget) and callable(text) else ""
    hidden = " (hidden)" if iface.state().invisible else ""
    what = f"{iface.role().name} {type(obj).__name__} {obj.objectName()!r}{shown}{hidden}"
    return f"{what} in {' < '.join(path)}"


def accessible_name(iface: QAccessibleInterface) -> str:
    """What a screen reader announces the element as. A combo box: its own name, or its label's."""
    if iface.role() != Role.ComboBox:
        return iface.text(NAME).strip()
    widget = iface.object()
    own = widget.accessibleName().strip() if isinstance(widget, QWidget) else ""
    labels = [label.text(NAME).strip() for label, _ in iface.relations(QAccessible.RelationFlag.Label)]
    return own or next((text for text in labels if text), "")


def is_interactive(iface: QAccessibleInterface) -> bool:
    role = iface.role()
    if role in EXEMPT_ROLES or role == Role.StaticText and isinstance(iface.object(), QLabel):
        return False
    return role in INTERACTIVE_ROLES or bool(iface.state().focusable)


def walk(root: QObject, where: str, found: Walk) -> None:
    """Check ``root`` and everything under it in the accessibility tree."""
    iface = QAccessible.queryAccessibleInterface(root)
    assert iface is not None and iface.isValid(), root
    _walk(iface, where, found, depth=0)


def _walk(iface: QAccessibleInterface, where: str, found: Walk, depth: int) -> None:
    obj = iface.object()
    key = (pointer(obj) if obj is not None else id(iface), int(iface.role().value))
    if key in found._seen or depth > 60:
        return
    found._seen.add(key)
    found.texts += [iface.text(NAME), iface.text(DESCRIPTION)]
    if is_interactive(iface):
        name = accessible_name(iface)
        found.elements.append((iface.role().name, name))
        if not name:
            found.report(obj, "name", f"{where}: unnamed {describe(iface)}")
    if isinstance(obj, CUSTOM_WIDGETS):
        found.custom += 1
        check_described(iface, where, found)
    if iface.role() in ITEM_CONTAINERS:
        return
    for i in range(iface.childCount()):
        child = iface.child(i)
        if child is not None and child.isValid():
            _walk(child, where, found, depth + 1)


def check_described(iface: QAccessibleInterface, where: str, found: Walk) -> None:
    if not iface.text(NAME).strip() or not iface.text(DESCRIPTION).strip():
        found.report(
            iface.object(),
            "description",
            f"{where}: custom widget without a name or a description: {describe(iface)}: "
            f"name {iface.text(NAME)!r}, description {iface.text(DESCRIPTION)!r}",
        )


def check_custom_widgets(root: QWidget, where: str, found: Walk) -> None:
    """Every custom widget under ``root``, found by its class (whether the walk met it or not), has a name
    and a description."""
    for widget in root.findChildren(QWidget):
        if isinstance(widget, CUSTOM_WIDGETS):
            check_described(QAccessible.queryAccessibleInterface(widget), where, found)


def settle(pages: Iterable[QWidget] = ()) -> None:
    """Let the pages' background work (an inspection, a check) finish, so what they show is there."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        for _ in range(3):
            QApplication.processEvents()
        if not any(isinstance(p, WizardPage) and p.is_busy() for p in pages) or time.monotonic() > deadline:
            return
        time.sleep(0.02)


def walk_wizard(wizard: QWizard, where: str, found: Walk) -> int:
    """Show every page of ``wizard`` in turn (so its content is filled in) and walk it; then the wizard's
    frame (its buttons, the step list). Returns the number of pages."""
    wizard.show()
    ids = wizard.pageIds()
    for page_id in ids:
        wizard.setCurrentId(page_id)
        page = wizard.page(page_id)
        settle([page])
        name = f"{where} › {type(page).__name__}"
        walk(page, name, found)
        check_custom_widgets(page, name, found)
    walk(wizard, where, found)
    check_custom_widgets(wizard, where, found)
    return len(ids)


# -- every window, page and dialog ----------------------------------------------------------------------


@pytest.fixture
def config_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def test_the_main_window_its_menus_and_the_shortcuts_name_every_control(qtbot, runner, config_home, tmp_path):
    window = MainWindow(runner, Settings(), log_path=tmp_path / "log" / "shieldwright.log")
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    found = Walk()
    walk(window, "MainWindow", found)
    check_custom_widgets(window, "MainWindow", found)
    walk(window.show_shortcuts(), "ShortcutsDialog", found)  # made from the window's actions
    assert found.problems == [], found.message()
    names = {name for _role, name in found.elements}
    assert {"Create a template disk", "Recent recipes", "File", "Open recent", "About Shieldwright",
            "Keyboard shortcuts"} <= names  # fmt: skip
    assert found.checked >= 20, found.checked  # the flow buttons, the menus and their items, the table


def test_every_page_of_the_three_wizards_names_every_control(qtbot, runner):
    found = Walk()
    pages = sum(walk_wizard(wizard, type(wizard).__name__, found) for wizard in all_wizards(qtbot, runner))
    assert pages >= 21
    assert found.problems == [], found.message()
    assert found.checked >= 150, found.checked
    assert found.custom >= 12, found.custom  # 3 step lists, 5 progress panels, PCR views, log, legend, bar


def test_the_template_wizard_with_an_image_open_names_every_control(qtbot, wizard, demo_image):
    """With an image the tables have rows and the disk layout bar has a focusable segment per partition."""
    open_and_wait(qtbot, wizard, demo_image)
    found = Walk()
    walk_wizard(wizard, "ShieldwrightWizard with an image", found)
    assert found.problems == [], found.message()
    assert found.checked >= 100, found.checked
    segments = [name for role, name in found.elements if name.startswith("Partition ")]
    assert len(segments) == len(wizard.base_image_page.bar.partition_segments()) == 3, segments
    # No secret is in a name or a description: the generated passphrase is only the field's value.
    passphrase = wizard.encryption_page.passphrase_box.generated_edit.text()
    assert len(passphrase) >= 16
    assert not [t for t in found.texts if passphrase in t]


def test_every_dialog_names_every_control(qtbot, runner, tmp_path):
    about, guide = AboutDialog(runner), GuideWindow(REPO / "docs" / "user-guide.md")
    qtbot.addWidget(about)
    qtbot.addWidget(guide)
    dialogs: list[QDialog] = [*all_dialogs(qtbot, runner, tmp_path), about, guide]
    found = Walk()
    for dialog in dialogs:
        dialog.show()
        settle()
        walk(dialog, type(dialog).__name__, found)
        check_custom_widgets(dialog, type(dialog).__name__, found)
    assert found.problems == [], found.message()
    assert found.checked >= 30, found.checked


# -- the walk finds what it looks for ---------------------------------------------------------------------


def test_the_walk_reports_unnamed_controls_and_undescribed_custom_widgets(qtbot):
    """So the tests above cannot pass for want of looking: an icon-only button, a combo box named only by its
    value, a field without a label and a progress panel without its description are all reported."""
    root = QWidget()
    qtbot.addWidget(root)
    icon_only = QToolButton(root)
    icon_only.setIcon(root.style().standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton))
    combo = QComboBox(root)
    combo.addItems(["SHA-256", "SHA-1"])
    field_ = QLineEdit(root)
    labelled = QLineEdit(root)
    QLabel("&Name:", root).setBuddy(labelled)
    named = QComboBox(root)
    named.setAccessibleName("Bank")
    panel = ProgressPanel(root)
    panel.setAccessibleDescription("")
    layout = QVBoxLayout(root)
    for w in (icon_only, combo, field_, labelled, named, panel):
        layout.addWidget(w)
    found = Walk()
    walk(root, "test", found)
    assert found.offenders == [icon_only, combo, field_, panel], found.message()
    assert ("EditableText", "Name:") in found.elements and ("ComboBox", "Bank") in found.elements


# -- the custom widgets say what they show ----------------------------------------------------------------


def test_the_disk_layout_bar_lists_its_partitions_and_keeps_the_list_current(qtbot, wizard, demo_image):
    bar = wizard.base_image_page.bar
    assert bar.accessibleName() == "Disk layout"
    assert bar.accessibleDescription() == "No image opened"
    open_and_wait(qtbot, wizard, demo_image)
    bar.set_protected([])
    assert bar.accessibleDescription() == "1: ESP 100 MiB, 2: XBOOTLDR 128 MiB, 3: root-x86-64 283 MiB"
    bar.set_protected([3])
    assert bar.accessibleDescription().endswith(", 3: root-x86-64 (protected) 283 MiB")
    bar.set_disk_layout(None)
    assert bar.accessibleDescription() == "No image opened"


def test_the_pcr_preview_describes_its_bank_phases_and_staleness(qtbot):
    preview = PcrPreview()
    qtbot.addWidget(preview)
    assert preview.accessibleName() == "PCR 11 prediction"
    assert preview.accessibleDescription().startswith("No predicted values yet")
    values = {"": "ab" * 32, "enter-initrd": "cd" * 32, "enter-initrd:leave-initrd": "ef" * 32}
    preview.set_predictions({"sha256": values, "sha1": {"": "12" * 20}})
    assert preview.accessibleDescription() == (
        "Predicted PCR 11 values of the UKI in the SHA-256 bank, "
        "after: the stub only, enter-initrd, leave-initrd"
    )
    preview.set_bank("sha1")
    assert preview.accessibleDescription().endswith("in the SHA-1 bank, after: the stub only")
    preview.set_stale(True)
    assert preview.accessibleDescription().endswith(". Out of date: rebuild the UKI")
    preview.set_predictions(None)
    preview.show_unavailable("The stub's version is unknown.")
    assert preview.accessibleDescription() == "The stub's version is unknown."


def test_the_pcr_event_tree_describes_its_pcrs_and_the_comparison(qtbot):
    tree = PcrEventTree()
    qtbot.addWidget(tree)
    assert tree.accessibleName() and tree.accessibleDescription() == "No PCRs to show"

    def groups(*statuses: str | None) -> list[PcrGroup]:
        return [
            PcrGroup(4, "Boot applications", "What booted.", "ab" * 32, status=statuses[0]),
            PcrGroup(7, "Secure Boot policy", "The keys.", "cd" * 32, status=statuses[1]),
        ]

    tree.show_groups(groups(None, None))
    description = tree.accessibleDescription()
    assert description.startswith("PCRs 4, 7, each with its predicted value")
    assert "event log" not in description
    tree.show_groups(groups("match", "match"))
    assert tree.accessibleDescription().endswith(". Compared with an event log: every PCR matches")
    tree.show_groups(groups("match", "differs"))
    assert tree.accessibleDescription().endswith(". Compared with an event log, which differs in PCR 7")


def test_the_step_list_says_which_step_is_current(qtbot, wizard):
    steps = wizard.findChild(StepList)
    total = len(steps.labels)
    assert steps.accessibleDescription() == f"Step 1 of {total}: Base image"
    wizard.setCurrentId(PageId.CERTIFICATES)
    assert steps.accessibleDescription().startswith(f"Step 2 of {total}: ")
