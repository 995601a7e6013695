"""Issue 18's geometry checks: the window at a given size on the start page and every page of the flows.

:func:`tour` drives a :class:`~app.gui.frame.MainWindow` through the start page and every page of each flow
and reports, per page, sibling widgets that overlap, labels clipped without an ellipsis, widgets out of their
parent or the window at the side, and widgets a layout squeezed below their width (or a wrapped text below
the height of its lines). ``tests/gui/test_geometry.py`` runs it in its own process at 800×600, and
runs this module (:func:`main`) in a subprocess with ``QT_SCALE_FACTOR=2`` at 960×520 (1920×1080 at 200 %
less a panel): the QApplication of a pytest process cannot change its scale factor.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractScrollArea,
    QApplication,
    QLabel,
    QLayout,
    QScrollBar,
    QSizePolicy,
    QWidget,
    QWizard,
    QWizardPage,
)

from app.gui.application import create_application
from app.gui.frame import MainWindow
from app.gui.page import PageBody, WizardPage
from app.gui.settings import MAX_RECENT, Settings
from app.gui.start_page import Flow
from app.gui.state import OutputChoice
from app.gui.tasks import TaskRunner
from app.gui.wizard import ShieldwrightWizard
from app.template.recipe import OutputOptions
from tests.gui.test_issue18_defects import clipped_labels
from wizard_pages.certificates import Role
from wizard_pages.generate import GeneratePage
from wizard_pages.provision_run import ProvisionRunPage

#: The window sizes checked (logical pixels): a small screen, and 1920×1080 at 200 % less a panel.
SMALL = QSize(800, 600)
HIDPI = QSize(960, 520)
TIMEOUT_S = 60.0
#: Pages whose entering starts real work (a build, a provisioning): shown in the page area, not entered.
NOT_ENTERED: tuple[type[QWizardPage], ...] = (GeneratePage, ProvisionRunPage)


# -- settling ------------------------------------------------------------------------------------------------


def spin_until(done: Callable[[], bool], timeout: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        QApplication.processEvents()
        time.sleep(0.01)
    return True


def settle() -> None:
    """Let layouts settle: a part that reflows (two rows instead of one) changes its height, a scroll bar
    appears, the width changes again - a few rounds of events."""
    for _ in range(4):
        QApplication.processEvents()
        time.sleep(0.02)
    QApplication.processEvents()


# -- the checks ----------------------------------------------------------------------------------------------


def describe(w: QWidget) -> str:
    text = w.text() if isinstance(w, (QLabel, QAbstractButton)) else ""
    name = w.objectName() or w.accessibleName()
    return f"{type(w).__name__} {name!r}" + (f" {text[:40]!r}" if text else "")


def _shown(root: QWidget) -> Iterator[QWidget]:
    """Visible widgets under ``root`` that are part of it (no popups or dialogs, which are windows)."""
    for w in root.findChildren(QWidget):
        if w.isVisible() and not w.isWindow() and w.window() is root.window():
            yield w


def _scroll_internals(parent: QWidget) -> bool:
    """``parent`` is a scroll area, or its viewport: Qt places those children itself (the viewport, the
    scroll bars and their containers, headers and corner widgets in the margins; the contents move as they
    scroll, and a view's cells and editors are the view's business)."""
    if isinstance(parent, QAbstractScrollArea):
        return True
    area = parent.parentWidget()
    return isinstance(area, QAbstractScrollArea) and area.viewport() is parent


def overlapping_siblings(root: QWidget) -> list[str]:
    """Visible widgets with the same parent whose rectangles share more than 1 px each way.

    Exempt: the children of scroll areas and of their viewports (see :func:`_scroll_internals`; a scroll
    bar over the contents is its job), and scroll bars anywhere. A hidden page of a stacked widget or
    layout is not visible, so it is never compared."""
    by_parent: dict[int, list[QWidget]] = {}
    parents: dict[int, QWidget] = {}
    for w in _shown(root):
        parent = w.parentWidget()
        if parent is None or _scroll_internals(parent) or isinstance(w, QScrollBar):
            continue
        by_parent.setdefault(id(parent), []).append(w)
        parents[id(parent)] = parent
    out = []
    for key, children in by_parent.items():
        for i, a in enumerate(children):
            for b in children[i + 1 :]:
                common = a.geometry().intersected(b.geometry())
                if common.width() > 1 and common.height() > 1:
                    out.append(f"{describe(a)} {a.geometry().getRect()} overlaps {describe(b)} "
                               f"{b.geometry().getRect()} in {describe(parents[key])}")  # fmt: skip
    return out


def pushed_out(root: QWidget) -> list[str]:
    """Visible widgets that stick out of their parent, or the window, at the left or right (where they are
    cut off), and page bodies whose contents are wider than what shows of them: a page too wide for the
    window that the wizard did not widen (a body scrolls only up and down). The contents of other scroll
    areas scroll sideways on purpose."""
    out = []
    for w in _shown(root):
        parent = w.parentWidget()
        if parent is None:
            continue
        if isinstance(parent, QAbstractScrollArea) or isinstance(w, QScrollBar):
            continue  # Qt's own placing of viewport, bars and margins widgets
        area = parent.parentWidget()
        if isinstance(area, QAbstractScrollArea) and area.viewport() is parent:
            if isinstance(area, PageBody) and w.width() > parent.width() + 1:
                out.append(f"{describe(w)} is {w.width()} px wide in a page body {parent.width()} px wide")
            continue
        g = w.geometry()
        if g.left() < -1 or g.right() > parent.width() + 1:
            out.append(f"{describe(w)} {g.getRect()} sticks out of {describe(parent)} ({parent.width()} px)")
    right = root.width()
    for w in _shown(root):
        if any(_scrolls_sideways(a) and a.viewport().isAncestorOf(w) for a in _ancestors(w, root)):
            continue
        edge = QRect(w.mapTo(root, QPoint(0, 0)), w.size())
        if edge.left() < -1 or edge.right() > right + 1:
            out.append(f"{describe(w)} {edge.getRect()} is outside the window ({right} px)")
    return out


def least_width(w: QWidget) -> int:
    """The width a layout gives ``w`` at the least (Qt's ``qSmartMinSize``): its minimum width if set, else
    none if its policy ignores its hints, its minimum size hint if it may shrink, else its size hint."""
    if w.minimumWidth() > 0:
        return w.minimumWidth()
    policy = w.sizePolicy().horizontalPolicy()
    if policy == QSizePolicy.Policy.Ignored:
        return 0
    if policy.value & QSizePolicy.PolicyFlag.ShrinkFlag.value:
        return max(w.minimumSizeHint().width(), 0)
    return max(w.sizeHint().width(), w.minimumSizeHint().width(), 0)


def squeezed(root: QWidget) -> list[str]:
    """Visible widgets in a layout that got narrower than they can be (a button's text cut, a field too
    narrow to read): a window smaller than its layouts' minimum squeezes them."""
    out = []
    for w in _shown(root):
        parent = w.parentWidget()
        if parent is None or _scroll_internals(parent) or isinstance(w, QScrollBar):
            continue
        if not _in_layout(parent.layout(), w):
            continue  # placed by its parent's own code (the bar's segments, the wizard's internals)
        need = min(least_width(w), w.maximumWidth())
        if w.width() < need - 1:
            out.append(f"{describe(w)} is {w.width()} px wide, less than its {need} px")
        if isinstance(w, QLabel) and w.wordWrap() and w.text():
            tall = w.heightForWidth(w.width())  # every line of a wrapped text, at the width it has
            if w.height() < min(tall, w.maximumHeight()) - 1:
                out.append(f"{describe(w)} is {w.height()} px high, less than the {tall} px of its lines")
    return out


def _in_layout(layout: QLayout | None, w: QWidget) -> bool:
    if layout is None:
        return False
    for i in range(layout.count()):
        item = layout.itemAt(i)
        if item.widget() is w or _in_layout(item.layout(), w):
            return True
    return False


def _scrolls_sideways(w: QWidget) -> bool:
    """A scroll area whose contents may be wider than it (every one but a page body)."""
    return isinstance(w, QAbstractScrollArea) and not isinstance(w, PageBody)


def _ancestors(w: QWidget, root: QWidget) -> Iterator[QWidget]:
    parent = w.parentWidget()
    while parent is not None and parent is not root:
        yield parent
        parent = parent.parentWidget()


def clipped(root: QWidget) -> list[str]:
    """Issue 18's clipped labels, over the window and over what shows of each page body (a label in a body
    is judged by the width of the body's viewport: the body does not scroll sideways)."""
    found = clipped_labels(root)
    for body in root.findChildren(PageBody):
        if body.isVisible():
            found += [f"{s} (in the page body)" for s in clipped_labels(body.viewport())]
    return sorted(set(found))


def problems(window: QWidget) -> list[str]:
    """Everything wrong with the window as it shows now."""
    settle()
    return [
        *(f"overlap: {p}" for p in overlapping_siblings(window)),
        *(f"clipped: {p}" for p in clipped(window)),
        *(f"outside: {p}" for p in pushed_out(window)),
        *(f"squeezed: {p}" for p in squeezed(window)),
    ]


# -- the tour --------------------------------------------------------------------------------------------


class Tour:
    """The window at ``size`` through the start page and every page of the flows; :attr:`found` maps
    ``flow/page`` to its problems (only pages with some), :attr:`sizes` the window's size on each page."""

    def __init__(self, window: MainWindow, size: QSize) -> None:
        self.window = window
        self.size = size
        self.found: dict[str, list[str]] = {}
        self.sizes: dict[str, tuple[int, int]] = {}
        #: The window's minimum size on each page (it follows what the page needs).
        self.minimums: dict[str, tuple[int, int]] = {}
        self.visited: list[str] = []

    def check(self, where: str) -> None:
        self.window.resize(self.size)
        settle()
        self.visited.append(where)
        self.sizes[where] = self.window.size().toTuple()
        self.minimums[where] = self.window.minimumSize().toTuple()
        found = problems(self.window)
        if self.window.size() != self.size:
            found.insert(0, f"the window is {self.window.size().toTuple()}, not {self.size.toTuple()} "
                            f"(its minimum: {self.window.minimumSize().toTuple()})")  # fmt: skip
        if found:
            self.found[where] = found

    def flow(self, kind: Flow, image: Path | None = None) -> QWizard:
        self.window.request_flow(kind, image=image)
        wizard = self.window.flow
        assert wizard is not None
        if image is not None and isinstance(wizard, ShieldwrightWizard):
            page = wizard.base_image_page
            if not spin_until(lambda: wizard.state.image_path is not None and not page.is_busy()):
                raise AssertionError(f"opening {image} did not finish")
        return wizard

    def pages(
        self, wizard: QWizard, prepare: Callable[[QWizardPage], None] | None = None
    ) -> Iterator[QWizardPage]:
        """Show each page of ``wizard`` in turn (entered as Next would, where the wizard lets us and it
        starts no build; else laid out in the page area as it would be) and yield it once it is idle."""
        for page_id in wizard.pageIds():
            page = wizard.page(page_id)
            if not isinstance(page, NOT_ENTERED) and wizard.currentId() != page_id:
                wizard.setCurrentId(page_id)
            shown_instead = None
            if wizard.currentId() != page_id:  # behind a commit page or an incomplete one
                shown_instead = wizard.currentPage()
                shown_instead.hide()
                if prepare is not None:
                    prepare(page)
                page.show()
            if isinstance(page, WizardPage) and not spin_until(lambda p=page: not p.is_busy()):
                raise AssertionError(f"{type(page).__name__} stayed busy")
            yield page
            if shown_instead is not None:
                page.hide()
                shown_instead.show()

    def close(self, wizard: QWizard) -> None:
        wizard.confirm_discard = False  # type: ignore[attr-defined]
        wizard.discard()  # type: ignore[attr-defined]
        spin_until(lambda: self.window.flow is None, 10)


def tour(
    window: MainWindow,
    size: QSize,
    image: Path,
    signing: tuple[Path, Path] | None = None,
    finished_result: Any = None,
) -> Tour:
    """Check the start page and every page of the three flows at ``size``: the template wizard on ``image``,
    with the ``signing`` certificate and key loaded on its Certificates page if given, and its Summary page
    showing ``finished_result`` (a build result) if given."""
    t = Tour(window, size)
    t.check("start page")

    wizard = t.flow(Flow.TEMPLATE, image)
    assert isinstance(wizard, ShieldwrightWizard)

    certs, boot, finished = wizard.certificates_page, wizard.boot_image_page, wizard.finished_page

    def prepare(page: QWizardPage) -> None:  # the Summary page, not entered: show it on a build result
        if finished_result is not None and page is finished:
            output = OutputOptions(finished_result.output, "raw")
            wizard.state.output = OutputChoice(output, result=finished_result)
            finished.initializePage()

    for page in t.pages(wizard, prepare):
        t.check(f"template/{type(page).__name__}")
        if page is certs and signing is not None:
            certs.load(Role.UEFI, *signing)
            if not spin_until(lambda: not certs.is_busy() and wizard.state.signing_ready):
                raise AssertionError("loading the signing certificate did not finish")
            t.check("template/CertificatesPage, a certificate loaded")
        if page is boot and signing is not None:
            boot.build()
            if not spin_until(lambda: not boot.is_busy() and boot.isComplete()):
                raise AssertionError("building the UKI did not finish")
            t.check("template/BootImagePage, a UKI built")
    t.close(wizard)

    for kind in (Flow.PROVISION, Flow.SHIELDING):
        wizard = t.flow(kind)
        for page in t.pages(wizard):
            t.check(f"{kind.value}/{type(page).__name__}")
        t.close(wizard)
    return t


def recent_recipes(folder: Path, settings: Settings) -> None:
    """As many recent recipes as the start page lists, with long names."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(MAX_RECENT):
        path = folder / f"web-server-with-a-rather-long-template-name-{n}.0.0.0.recipe.toml"
        path.write_text("format_version = 2\n")
        settings.add_recent_recipe(path)


def make_window(runner: TaskRunner, folder: Path) -> MainWindow:
    """The frame with settings of its own in ``folder`` (never the user's), recent recipes listed."""
    settings = Settings(folder / "config" / "shieldwright.conf")
    recent_recipes(folder / "recipes", settings)
    window = MainWindow(runner, settings, log_path=folder / "log" / "shieldwright.log")
    window.show()
    return window


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.gui.layout_checks WIDTH HEIGHT IMAGE [CERT KEY]``: print one JSON line - the device
    pixel ratio, the pages visited, the window's size on each, the problems found."""
    parser = argparse.ArgumentParser()
    parser.add_argument("width", type=int)
    parser.add_argument("height", type=int)
    parser.add_argument("image", type=Path)
    parser.add_argument("signing", type=Path, nargs="*")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = create_application()  # as the application makes it (its icon is on the start page)
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="geometry-worker")
    runner = TaskRunner(executor)
    with tempfile.TemporaryDirectory(prefix="shieldwright-geometry-") as tmp:
        window = make_window(runner, Path(tmp))
        try:
            signing = (args.signing[0], args.signing[1]) if len(args.signing) == 2 else None
            t = tour(window, QSize(args.width, args.height), args.image, signing)
            ratio = window.devicePixelRatioF()
        finally:
            runner.shutdown()
            executor.shutdown(wait=True)
            window.close()
    report = {
        "ratio": ratio,
        "visited": t.visited,
        "sizes": t.sizes,
        "minimums": t.minimums,
        "problems": t.found,
    }
    print(json.dumps(report))
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
