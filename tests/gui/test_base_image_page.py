"""The Base image page against real images inspected by the real engine (``inspect_image``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication, QWizard

from app.disk.model import Role
from app.gui.models.partition_table_model import Column
from app.gui.presentation import role_color
from tests.conftest import PartSpec, make_gpt_image, sgdisk_partitions
from tests.gui.conftest import advance_button, open_and_wait
from wizard_pages.base_image import IMAGE_DIALOG

# Expected by construction of tests/conftest.py's SMALL_LAYOUT (and checked against sgdisk below).
SMALL_TYPES = ["EFI System", "XBOOTLDR", "root (x86-64)", "swap"]


def _rows(model) -> list[dict[Column, object]]:
    return [
        {c: model.index(r, c).data() for c in Column}
        | {"check": model.index(r, Column.PROTECT).data(Qt.CheckStateRole)}
        for r in range(model.rowCount())
    ]


def test_starts_empty_and_incomplete(wizard):
    page = wizard.base_image_page
    assert wizard.currentPage() is page
    assert page.title() == "Base image"
    assert page.subTitle()
    assert wizard.windowTitle() == "Shieldwright — Template Disk Wizard"
    # As small as its pages let it be, and that fits an 800×600 screen (tests/gui/test_geometry.py).
    assert 0 < wizard.minimumWidth() <= 800 and 0 < wizard.minimumHeight() <= 600
    assert not page.isComplete()
    assert not advance_button(wizard).isEnabled()
    assert page.model.rowCount() == 0
    assert page.bar.partition_segments() == []
    assert page.open_button.text() == "&Open image…"


def test_small_disk_fills_table_and_bar_in_order(qtbot, wizard, small_disk):
    page = wizard.base_image_page
    open_and_wait(qtbot, wizard, small_disk)
    reference = sgdisk_partitions(small_disk)

    assert page.model.rowCount() == len(reference) == 4
    rows = _rows(page.model)
    for row, ref in zip(rows, reference, strict=True):
        assert row[Column.NUMBER] == str(ref["number"])
        assert row[Column.NAME] == ref["name"]
        assert row[Column.FIRST_LBA] == str(ref["first_lba"])
        assert row[Column.LAST_LBA] == str(ref["last_lba"])
        assert row[Column.PARTITION_GUID] == ref["partition_guid"]
    for row, fragment in zip(rows, SMALL_TYPES, strict=True):
        assert fragment in row[Column.TYPE]

    segments = page.bar.partition_segments()
    assert [s.number for s in segments] == [r["number"] for r in reference]
    # Left to right in disk order, each visible with at least the minimum width.
    xs = [s.geometry().x() for s in segments]
    assert xs == sorted(xs)
    assert all(s.isVisible() and s.width() >= page.bar.MIN_SEGMENT_WIDTH for s in segments)
    # The bigger partitions get wider segments (root 16 MiB > XBOOTLDR 8 MiB).
    assert segments[2].width() > segments[1].width()

    assert page.format_value.text() == "RAW"
    assert "44 MiB" in page.size_value.text()
    assert page.path_value.text() == str(small_disk)
    assert not page.error_panel.isVisible()
    assert page.isComplete()
    assert advance_button(wizard).isEnabled()
    assert wizard.state.image_path == Path(small_disk)
    assert wizard.state.layout is not None and len(wizard.state.layout.partitions) == 4


def test_protect_defaults_and_toggle_update_state(qtbot, wizard, small_disk):
    page = wizard.base_image_page
    open_and_wait(qtbot, wizard, small_disk)
    model = page.model
    checks = [model.index(r, Column.PROTECT).data(Qt.CheckStateRole) for r in range(4)]
    # ESP shows unchecked, XBOOTLDR and root checked, swap unchecked.
    assert checks == [
        Qt.CheckState.Unchecked,
        Qt.CheckState.Checked,
        Qt.CheckState.Checked,
        Qt.CheckState.Unchecked,
    ]
    assert wizard.state.protected == {2, 3}
    esp_flags = model.flags(model.index(0, Column.PROTECT))
    assert not esp_flags & Qt.ItemFlag.ItemIsUserCheckable
    assert "firmware" in model.index(0, Column.PROTECT).data(Qt.ToolTipRole)
    assert model.flags(model.index(3, Column.PROTECT)) & Qt.ItemFlag.ItemIsUserCheckable
    # The bar marks exactly the protected partitions.
    assert [s.protected for s in page.bar.partition_segments()] == [False, True, True, False]

    # Toggle swap on, root off: through the model as the view's checkbox does.
    assert model.setData(model.index(3, Column.PROTECT), Qt.CheckState.Checked.value, Qt.CheckStateRole)
    assert model.setData(model.index(2, Column.PROTECT), Qt.CheckState.Unchecked, Qt.CheckStateRole)
    assert wizard.state.protected == {2, 4}
    assert [s.protected for s in page.bar.partition_segments()] == [False, True, False, True]
    assert "selected for protection" in page.bar.segment(4).accessibleDescription()
    # The ESP refuses.
    assert not model.setData(model.index(0, Column.PROTECT), Qt.CheckState.Checked, Qt.CheckStateRole)
    assert wizard.state.protected == {2, 4}


def test_protect_checkbox_toggles_with_mouse(qtbot, wizard, small_disk):
    page = wizard.base_image_page
    open_and_wait(qtbot, wizard, small_disk)
    table = page.table
    index = page.model.index(3, Column.PROTECT)  # swap
    rect = table.visualRect(index)
    # The check indicator sits at the left of the cell; click it like a user.
    style_option_pos = QPoint(rect.left() + 10, rect.center().y())
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=style_option_pos)
    assert 4 in wizard.state.protected


def test_keyboard_navigation_between_segments(qtbot, wizard, small_disk):
    page = wizard.base_image_page
    open_and_wait(qtbot, wizard, small_disk)
    wizard.activateWindow()
    segments = page.bar.partition_segments()
    selected: list[int] = []
    page.bar.partitionSelected.connect(selected.append)

    segments[0].setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is segments[0])
    qtbot.keyClick(segments[0], Qt.Key.Key_Right)
    assert QApplication.focusWidget() is segments[1]
    qtbot.keyClick(segments[1], Qt.Key.Key_Right)
    assert QApplication.focusWidget() is segments[2]
    qtbot.keyClick(segments[2], Qt.Key.Key_Left)
    assert QApplication.focusWidget() is segments[1]
    qtbot.keyClick(segments[1], Qt.Key.Key_End)
    assert QApplication.focusWidget() is segments[-1]
    qtbot.keyClick(segments[-1], Qt.Key.Key_Right)  # stays on the last one
    assert QApplication.focusWidget() is segments[-1]
    qtbot.keyClick(segments[-1], Qt.Key.Key_Home)
    assert QApplication.focusWidget() is segments[0]
    assert selected[-5:] == [2, 3, 2, 4, 1]
    # Focus in the bar selects the row in the table.
    assert page.table.currentIndex().row() == 0
    assert all(s.focusPolicy() == Qt.FocusPolicy.StrongFocus for s in segments)


def test_selection_syncs_between_bar_and_table(qtbot, wizard, small_disk):
    page = wizard.base_image_page
    open_and_wait(qtbot, wizard, small_disk)
    segments = page.bar.partition_segments()
    with qtbot.waitSignal(page.bar.partitionSelected) as blocker:
        qtbot.mouseClick(segments[2], Qt.MouseButton.LeftButton)
    assert blocker.args == [3]
    assert page.table.currentIndex().row() == 2
    page.table.selectRow(1)
    assert page.bar.selected_partition() == 2
    assert segments[1].selected and not segments[2].selected


def test_tooltips_and_accessible_names_mention_type(qtbot, wizard, small_disk):
    page = wizard.base_image_page
    open_and_wait(qtbot, wizard, small_disk)
    layout = wizard.state.layout
    for seg, part in zip(page.bar.partition_segments(), layout.partitions, strict=True):
        assert part.type_name in seg.toolTip()
        assert part.type_guid in seg.toolTip()
        assert part.partition_guid in seg.toolTip()
        assert part.type_name in seg.accessibleName()
        assert f"Partition {part.number}" in seg.accessibleName()
        assert seg.accessibleDescription()
    row_tip = page.model.index(2, Column.TYPE).data(Qt.ToolTipRole)
    assert layout.partitions[2].type_guid in row_tip


def test_table_swatch_matches_bar_colour(qtbot, wizard, small_disk):
    page = wizard.base_image_page
    open_and_wait(qtbot, wizard, small_disk)
    swatch = page.model.index(0, Column.NUMBER).data(Qt.DecorationRole)
    assert swatch == role_color(Role.ESP, QApplication.palette())
    assert swatch != page.model.index(2, Column.NUMBER).data(Qt.DecorationRole)


@pytest.fixture(scope="module")
def bad_images(small_disk_formats, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    random_file = d / "random.img"
    random_file.write_bytes(os.urandom(3 * 1024 * 1024))
    empty = d / "empty.img"
    empty.write_bytes(b"")
    vhdx = small_disk_formats["vhdx"].read_bytes()
    truncated = d / "truncated.vhdx"
    truncated.write_bytes(vhdx[: len(vhdx) // 2])
    return {"random": random_file, "empty": empty, "truncated-vhdx": truncated, "missing": d / "nope.img"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("random", "No GPT"),
        ("empty", "empty"),
        ("truncated-vhdx", "truncated"),
        ("missing", "no such file"),
    ],
)
def test_invalid_image_shows_error_inline_and_blocks_next(qtbot, wizard, bad_images, name, expected):
    page = wizard.base_image_page
    open_and_wait(qtbot, wizard, bad_images[name])
    assert page.error_panel.isVisible()
    assert page.error_panel.message_label.isVisible()
    assert expected.lower() in page.error_panel.message_label.text().lower()
    assert page.error_panel.hint_label.text()  # a hint saying what to do
    assert not page.isComplete()
    assert not advance_button(wizard).isEnabled()
    assert not wizard.button(QWizard.WizardButton.NextButton).isEnabled()
    assert wizard.state.layout is None or wizard.state.layout.has_errors


def test_error_then_good_image_recovers(qtbot, wizard, bad_images, small_disk):
    page = wizard.base_image_page
    open_and_wait(qtbot, wizard, bad_images["empty"])
    assert page.error_panel.isVisible() and not page.isComplete()
    with qtbot.waitSignal(page.completeChanged):
        open_and_wait(qtbot, wizard, small_disk)
    assert not page.error_panel.isVisible()
    assert page.isComplete() and advance_button(wizard).isEnabled()


def test_error_finding_shows_layout_but_blocks_next(qtbot, wizard, tmp_path):
    # A GPT with a root and a data partition but no ESP (no ef00): the engine reports an ERROR finding.
    image = make_gpt_image(
        tmp_path / "no-esp.raw",
        (PartSpec(8, "8304", "root-x86-64", "ext4"), PartSpec(4, "8300", "data", None)),
    )
    page = wizard.base_image_page
    open_and_wait(qtbot, wizard, image)
    assert page.model.rowCount() == 2
    assert [s.number for s in page.bar.partition_segments()] == [1, 2]
    messages = [page.findings.item(i).text() for i in range(page.findings.count())]
    severities = [page.findings.item(i).data(Qt.UserRole) for i in range(page.findings.count())]
    assert "error" in severities
    assert any("EFI System Partition" in m for m in messages)
    assert page.error_panel.isVisible()
    assert not page.isComplete()
    assert not advance_button(wizard).isEnabled()
    # The empty "data" partition is hatched, i.e. drawn as unknown/empty content.
    assert page.bar.segment(2).partition.content in ("empty", "unknown")


def test_unexpected_error_clears_the_image_and_says_so(qtbot, wizard, small_disk, monkeypatch):
    page = wizard.base_image_page
    open_and_wait(qtbot, wizard, small_disk)
    hooked: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, e, tb: hooked.append(e))

    def broken(path: str):
        raise RuntimeError("a bug")

    monkeypatch.setattr("wizard_pages.base_image.inspect_image", broken)
    open_and_wait(qtbot, wizard, small_disk)
    assert [type(e) for e in hooked] == [RuntimeError]  # logged and shown by the excepthook
    assert page.error_panel.isVisible() and "unexpected error" in page.error_panel.message_label.text()
    assert wizard.state.image_path is None and wizard.state.layout is None
    assert page.model.rowCount() == 0
    assert not page.isComplete() and not advance_button(wizard).isEnabled()


def _drop_event(mime: QMimeData) -> QDropEvent:
    action, button = Qt.DropAction.CopyAction, Qt.MouseButton.LeftButton
    return QDropEvent(QPointF(50, 50), action, mime, button, Qt.NoModifier)


def test_drop_one_file_opens_it(qtbot, wizard, small_disk):
    page = wizard.base_image_page
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(small_disk))])
    event = QDropEvent(
        QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.NoModifier
    )
    with qtbot.waitSignal(page.inspectionFinished, timeout=30_000):
        page.dropEvent(event)
    assert event.isAccepted()
    assert page.model.rowCount() == 4


def test_drop_of_two_files_is_refused(qtbot, wizard, small_disk):
    page = wizard.base_image_page
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(small_disk)), QUrl.fromLocalFile(str(small_disk))])
    event = QDropEvent(
        QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.NoModifier
    )
    page.dropEvent(event)
    assert not event.isAccepted()
    assert not page.is_busy()


def test_open_dialog_is_non_blocking(qtbot, wizard):
    page = wizard.base_image_page
    qtbot.mouseClick(page.open_button, Qt.MouseButton.LeftButton)  # returns: the dialog is open(), not exec()
    dialog = page.open_dialog(IMAGE_DIALOG)
    assert dialog is not None and dialog.isVisible()
    filters = " ".join(dialog.nameFilters())
    for pattern in ("*.img", "*.raw", "*.vhd", "*.vhdx", "*.qcow2", "(*)"):
        assert pattern in filters
    dialog.reject()
    qtbot.waitUntil(lambda: page.open_dialog(IMAGE_DIALOG) is None)


def test_open_starts_in_the_folder_of_the_last_image(qtbot, wizard, tmp_path):
    """The frame hands the page the folder of the image opened last (settings); Open… starts there."""
    page = wizard.base_image_page
    page.image_directory = tmp_path
    qtbot.mouseClick(page.open_button, Qt.MouseButton.LeftButton)
    dialog = page.open_dialog(IMAGE_DIALOG)
    assert dialog is not None and Path(dialog.directory().absolutePath()) == tmp_path
    dialog.reject()
    qtbot.waitUntil(lambda: page.open_dialog(IMAGE_DIALOG) is None)


@pytest.mark.parametrize("fmt", ["vhd", "vhdx", "qcow2"])
def test_other_formats_show_the_same_partitions(qtbot, wizard, small_disk_formats, fmt):
    page = wizard.base_image_page
    open_and_wait(qtbot, wizard, small_disk_formats[fmt])
    assert page.format_value.text() == fmt.upper()
    assert page.model.rowCount() == 4
    assert [s.number for s in page.bar.partition_segments()] == [1, 2, 3, 4]


def test_demo_image(qtbot, wizard, demo_image):
    page = wizard.base_image_page
    open_and_wait(qtbot, wizard, demo_image)
    layout = wizard.state.layout
    assert layout is not None and layout.partitions
    assert page.model.rowCount() == len(layout.partitions)
    assert [s.number for s in page.bar.partition_segments()] == [p.number for p in layout.partitions]
    roles = {p.role for p in layout.partitions}
    assert {Role.ESP, Role.ROOT} <= roles
    assert page.isComplete() and advance_button(wizard).isEnabled()
