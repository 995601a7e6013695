"""Issue 18, "Done 2": the wizard is usable at 800×600 at 100 %, and at 200 % on 1920×1080.

The window (menu, status bar and the flow) is put at 800×600 - and must really be that size: its minimum
allows it - and shown on the start page and every page of the three flows: the template wizard on the demo
image (the Certificates page also with a certificate loaded, the Boot image page also with a UKI built, the
Summary page on a build result), Provision a VM disk and Shielding Data. On each, no two visible sibling
widgets overlap, no label is clipped without an ellipsis (in a page's scrolling body: within what shows of
it), nothing is pushed out of its parent or the window at the side, and nothing is squeezed below the width
it needs (or a wrapped text below the height of its lines). The page bodies scroll up and down instead.

At 200 % the same tour runs in a subprocess with ``QT_SCALE_FACTOR=2`` (a pytest process has one
QApplication, whose scale factor is fixed), in a 960×520 window: 1920×1080 pixels at 200 % less a panel.
The checks are in :mod:`tests.gui.layout_checks`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from app.gui.page import PageBody, WizardPage
from app.gui.widgets.disk_layout_legend import DiskLayoutLegend
from tests.gui.layout_checks import HIDPI, SMALL, make_window, settle, tour
from tests.gui.test_finished_page import fake_result  # noqa: F401 - a fixture
from tests.gui.test_issue18_defects import all_wizards, mnemonic_owners

REPO = Path(__file__).resolve().parents[2]
#: The start page, the template wizard's 9 pages (Certificates and Boot image twice), 6 + 6 others.
PAGES_VISITED = 1 + 9 + 2 + 6 + 6


def report(found: dict[str, list[str]]) -> str:
    return "\n".join(f"{where}:\n  " + "\n  ".join(problems) for where, problems in found.items())


def test_every_page_fits_800_by_600(qtbot, runner, demo_image, signing_files, fake_result, tmp_path):  # noqa: F811
    window = make_window(runner, tmp_path)
    qtbot.addWidget(window)
    qtbot.waitExposed(window)
    window.resize(SMALL)
    settle()
    assert window.size() == SMALL, window.minimumSize()
    done = tour(window, SMALL, demo_image, (signing_files.cert, signing_files.key), fake_result)
    assert len(done.visited) == PAGES_VISITED, done.visited
    assert set(done.sizes.values()) == {SMALL.toTuple()}, done.sizes  # on every page, not only the first
    assert done.found == {}, report(done.found)


def test_every_page_fits_960_by_520_at_200_percent(demo_image, signing_files, tmp_path):
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "QT_SCALE_FACTOR": "2",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PYTHONPATH": str(REPO),
    }
    env.pop("QT_AUTO_SCREEN_SCALE_FACTOR", None)
    args = [str(HIDPI.width()), str(HIDPI.height()), str(demo_image), str(signing_files.cert),
            str(signing_files.key)]  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "tests.gui.layout_checks", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["ratio"] == 2.0  # really at 200 %
    assert len(seen["visited"]) == PAGES_VISITED, seen["visited"]  # the Summary page without a build result
    assert {tuple(size) for size in seen["sizes"].values()} == {HIDPI.toTuple()}, seen["sizes"]
    assert seen["problems"] == {}, report(seen["problems"])


def test_every_page_lays_out_in_a_scrolling_body(qtbot, runner):
    """Each page of the three wizards puts its widgets in one :class:`PageBody` (none left beside it, where
    they would sit over it): it scrolls up and down only, and has no frame, background, Tab stop or
    mnemonic of its own."""
    for wizard in all_wizards(qtbot, runner):
        for page_id in wizard.pageIds():
            page = wizard.page(page_id)
            assert isinstance(page, WizardPage), type(page)
            body = page.body_area
            assert isinstance(body, PageBody), type(page).__name__
            beside = page.findChildren(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly)
            assert [type(w).__name__ for w in beside if w is not body and not w.isWindow()] == []
            assert body.frameShape() == QFrame.Shape.NoFrame and body.widgetResizable()
            assert body.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
            assert not body.viewport().autoFillBackground() and not body.contents.autoFillBackground()
            assert body.focusPolicy() == Qt.FocusPolicy.NoFocus
            assert not mnemonic_owners([body, body.viewport(), body.contents])


def test_the_legend_stacks_in_two_rows_when_narrow_and_goes_back_when_wide(qtbot):
    host = QWidget()  # the page: it asks only for the legend's minimum size hint
    qtbot.addWidget(host)
    legend = DiskLayoutLegend(host)
    QVBoxLayout(host).addWidget(legend)
    wide = legend.sizeHint().width()  # in one row, as made
    host.show()
    labels = [w for w in legend.findChildren(QLabel) if w.text()]

    def rows() -> int:
        return len({w.mapTo(legend, w.rect().topLeft()).y() for w in labels})

    host.resize(wide + 40, 100)
    settle()
    assert legend.side_by_side() and rows() == 1
    assert legend.minimumSizeHint().width() < wide * 2 // 3  # it asks the page for the width of a pair
    host.resize(legend.minimumSizeHint().width() + 20, 100)
    settle()
    assert not legend.side_by_side() and rows() == 2  # two by two
    assert all(w.mapTo(legend, w.rect().topRight()).x() <= legend.width() for w in labels)
    host.resize(wide + 40, 100)
    settle()
    assert legend.side_by_side() and rows() == 1
