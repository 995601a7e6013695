"""The start page: the three things Shieldwright does, a saved recipe to open, and the recent recipes.

It only offers; the frame (:mod:`app.gui.frame`) opens the flow chosen.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from PySide6.QtCore import QEvent, QPointF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPalette, QPixmap, QPolygonF
from PySide6.QtWidgets import (
    QCommandLinkButton,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from app.gui.settings import MAX_RECENT


class Flow(StrEnum):
    """The flows the frame can show; the values name them in settings and tests."""

    TEMPLATE = "template"
    SHIELDING = "shielding"
    PROVISION = "provision"


def flow_texts() -> dict[Flow, tuple[str, str]]:
    """(button text with its mnemonic, description) per flow, as the start page and the File menu say it."""

    def tr(text: str) -> str:
        return QGuiApplication.translate("StartPage", text)

    return {
        Flow.TEMPLATE: (
            tr("Create a &template disk"),
            tr(
                "Turn a prepared Linux disk image into a signed, encrypted template: a signed boot image, "
                "LUKS2-encrypted partitions, a predicted PCR policy and a signed volume signature catalog."
            ),
        ),
        Flow.SHIELDING: (
            tr("Create &shielding data"),
            tr(
                "Per-VM secrets and specialization values, encrypted to the owner and the hosting "
                "fabric's guardians, and bound to the templates they trust."
            ),
        ),
        Flow.PROVISION: (
            tr("&Provision a VM disk"),
            tr(
                "Check a template against its signer and seal its disk to one VM's vTPM under the "
                "template's PCR policy, so the VM unlocks it by itself."
            ),
        ),
    }


class StartPage(QWidget):
    """What the window shows when no flow is open."""

    #: A flow button was pressed.
    flowChosen = Signal(str)
    #: *Open recipe…* was pressed.
    openRecipeRequested = Signal()
    #: A recent recipe was activated (its path).
    recentRecipeChosen = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("startPage")

        heading = QLabel(self.tr("What would you like to do?"), self)
        heading.setObjectName("startHeading")
        font = heading.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        heading.setFont(font)
        heading.setAccessibleName(heading.text())

        self.flow_buttons: dict[Flow, QCommandLinkButton] = {}
        flows = QVBoxLayout()
        flows.setSpacing(4)
        for flow, (text, description) in flow_texts().items():
            button = QCommandLinkButton(text, description, self)
            button.setObjectName(f"{flow.value}FlowButton")
            button.setAccessibleName(text.replace("&", ""))
            button.setAccessibleDescription(description)
            policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
            policy.setHeightForWidth(True)
            button.setSizePolicy(policy)
            button.setIconSize(QSize(ARROW_SIZE, ARROW_SIZE))
            button.clicked.connect(lambda _checked=False, f=flow: self.flowChosen.emit(f.value))
            self.flow_buttons[flow] = button
            flows.addWidget(button)
        self._paint_arrows()

        line = QFrame(self)
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)

        self.recent_caption = QLabel(self.tr("&Recent recipes"), self)
        font = self.recent_caption.font()
        font.setBold(True)
        self.recent_caption.setFont(font)
        self.recent_list = QListWidget(self)
        self.recent_list.setObjectName("recentRecipes")
        self.recent_list.setAccessibleName(self.tr("Recent recipes"))
        self.recent_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.recent_list.setUniformItemSizes(True)
        self.recent_list.itemActivated.connect(self._on_recent_activated)
        self.recent_list.setSpacing(2)
        self.recent_caption.setBuddy(self.recent_list)
        self.recent_empty = QLabel(
            self.tr("None yet. A recipe saved from the template wizard (Review › Save recipe, or File › Save "
                    "recipe) replays every choice; opening it fills the wizard again."),
            self,
        )  # fmt: skip
        self.recent_empty.setWordWrap(True)
        self.recent_empty.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.open_button = QPushButton(
            self.style().standardIcon(QStyle.StandardPixmap.SP_DialogOpenButton),
            self.tr("&Open recipe…"),
            self,
        )
        self.open_button.setToolTip(self.tr("Fill the template wizard from a saved recipe (.toml)"))
        self.open_button.clicked.connect(self.openRecipeRequested)
        recent_head = QHBoxLayout()
        recent_head.addWidget(self.recent_caption)
        recent_head.addStretch(1)
        recent_head.addWidget(self.open_button)

        icon = QLabel(self)
        icon.setPixmap(QGuiApplication.windowIcon().pixmap(48, 48))
        title = QHBoxLayout()
        title.setSpacing(12)
        title.addWidget(icon)
        title.addWidget(heading, 1)

        column = QVBoxLayout()
        column.setSpacing(8)
        column.addStretch(1)
        column.addLayout(title)
        column.addLayout(flows)
        column.addSpacing(4)
        column.addWidget(line)
        column.addLayout(recent_head)
        column.addWidget(self.recent_empty)
        column.addWidget(self.recent_list)
        column.addStretch(2)

        # A readable column in the middle of a wide window.
        outer = QHBoxLayout(self)
        outer.setContentsMargins(24, 18, 24, 18)
        outer.addStretch(1)
        outer.addLayout(column, 12)
        outer.addStretch(1)
        self.set_recent([])

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._paint_arrows()

    def _paint_arrows(self) -> None:
        """The flow buttons' arrows in the palette's text colour: Qt's own is a black picture that all but
        disappears on a dark theme when the desktop has no icon theme to supply one."""
        icon = arrow_icon(self.palette().color(QPalette.ColorRole.ButtonText))
        for button in self.flow_buttons.values():
            button.setIcon(icon)

    def set_recent(self, recipes: list[Path]) -> None:
        """List ``recipes`` (most recent first): the file name, its folder as a tooltip."""
        self.recent_list.clear()
        for path in recipes:
            item = QListWidgetItem(f"{path.name} — {_folder_text(path.parent)}")
            item.setData(Qt.ItemDataRole.UserRole, str(path))
            item.setToolTip(str(path))
            if not path.is_file():
                item.setText(self.tr("%1 (not found)").replace("%1", item.text()))
                item.setForeground(self.palette().brush(QPalette.ColorRole.PlaceholderText))
            self.recent_list.addItem(item)
        has = bool(recipes)
        # As tall as its rows (a short list leaves the page's bottom empty, not a big white box).
        rows = max(1, min(len(recipes), MAX_RECENT))
        row = self.recent_list.sizeHintForRow(0) if has else self.fontMetrics().height()
        self.recent_list.setFixedHeight(
            rows * (row + 2 * self.recent_list.spacing()) + 2 * self.recent_list.frameWidth() + 2
        )
        self.recent_list.setVisible(has)
        self.recent_empty.setVisible(not has)
        if has:
            self.recent_list.setCurrentRow(0)

    def recent(self) -> list[Path]:
        return [
            Path(self.recent_list.item(i).data(Qt.ItemDataRole.UserRole))
            for i in range(self.recent_list.count())
        ]

    def _on_recent_activated(self, item: QListWidgetItem) -> None:
        self.recentRecipeChosen.emit(Path(item.data(Qt.ItemDataRole.UserRole)))


#: The flow buttons' arrow, in logical pixels.
ARROW_SIZE = 24


def arrow_icon(colour: QColor) -> QIcon:
    """A right-pointing arrow in ``colour``, drawn at 1x and 2x so it stays sharp at 200 %."""
    icon = QIcon()
    for scale in (1, 2):
        side = ARROW_SIZE * scale
        pixmap = QPixmap(side, side)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(colour)
        u = side / 24  # the arrow in a 24-unit box
        points = [QPointF(8 * u, 5 * u), QPointF(18 * u, 12 * u), QPointF(8 * u, 19 * u)]
        painter.drawPolygon(QPolygonF(points))
        painter.end()
        icon.addPixmap(pixmap)
    return icon


def _folder_text(folder: Path) -> str:
    """``folder`` with the home folder as ``~``, as file managers and shells show it."""
    home = Path.home()
    try:
        return str(Path("~") / folder.relative_to(home)) if folder != home else "~"
    except ValueError:
        return str(folder)
