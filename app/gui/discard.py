""" "Discard this work?" - asked before a flow or the application closes when something would be lost
(a generated passphrase shown only in this session, choices not saved as a recipe).

Non-blocking (``open()``, never ``exec()``: we may be inside an async slot, qasync#59); one question per
window at a time, and *Keep working* is the default and the Escape answer, so a stray Enter or Esc never
discards anything.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QLabel, QMessageBox, QPushButton, QWidget

_OPEN_ATTR = "_shieldwright_discard_question"


class DiscardQuestion(QMessageBox):
    """The question itself; :attr:`discard_button` and :attr:`keep_button` for tests and keyboard users."""

    def __init__(self, parent: QWidget, title: str, reasons: list[str], action: str) -> None:
        super().__init__(parent)
        self.setObjectName("discardQuestion")
        self.setIcon(QMessageBox.Icon.Warning)
        self.setWindowTitle(title)
        self.setText(self.tr("%1? This would be lost:").replace("%1", action))
        self.setInformativeText("\n".join(f"• {r}" for r in reasons))
        self.discard_button: QPushButton = self.addButton(
            self.tr("&Discard and %1").replace("%1", action.lower()), QMessageBox.ButtonRole.DestructiveRole
        )
        self.keep_button: QPushButton = self.addButton(
            self.tr("&Keep working"), QMessageBox.ButtonRole.RejectRole
        )
        self.setDefaultButton(self.keep_button)
        # QMessageBox sizes itself to its shortest line: give the list of what would be lost room to read.
        informative = self.findChild(QLabel, "qt_msgbox_informativelabel")
        if informative is not None:
            informative.setMinimumWidth(self.fontMetrics().horizontalAdvance("x" * 60))
        self.setEscapeButton(self.keep_button)


def ask_to_discard(
    parent: QWidget,
    reasons: list[str],
    on_discard: Callable[[], object],
    *,
    action: str | None = None,
    title: str | None = None,
    on_keep: Callable[[], object] | None = None,
) -> DiscardQuestion | None:
    """Call ``on_discard`` now if ``reasons`` is empty; else ask (non-blocking) and call it only on
    *Discard*. While a question is open for ``parent`` it is raised instead of asking twice. Returns the
    question shown, if any."""
    if not reasons:
        on_discard()
        return None
    existing = getattr(parent, _OPEN_ATTR, None)
    if isinstance(existing, DiscardQuestion) and existing.isVisible():
        existing.raise_()
        existing.activateWindow()
        return existing
    box = DiscardQuestion(parent, title or parent.tr("Shieldwright"), reasons, action or parent.tr("Close"))
    setattr(parent, _OPEN_ATTR, box)

    def answered(_result: int) -> None:
        setattr(parent, _OPEN_ATTR, None)
        discard = box.clickedButton() is box.discard_button
        box.deleteLater()
        if discard:
            on_discard()
        elif on_keep is not None:
            on_keep()

    box.finished.connect(answered)
    box.open()
    return box


def open_question(parent: QWidget) -> DiscardQuestion | None:
    """The discard question open for ``parent``, if any (tests answer it)."""
    box = getattr(parent, _OPEN_ATTR, None)
    return box if isinstance(box, DiscardQuestion) and box.isVisible() else None
