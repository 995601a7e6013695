"""Copying a secret (recovery key, generated passphrase) to the clipboard, and taking it back.

Every program of the session can read the clipboard, and a clipboard manager may keep it, so a copied
secret is cleared after :data:`CLEAR_AFTER_MS`, when the wizard forgets its secrets and when the application
quits - only if the clipboard still holds our text (compared by SHA-256; what the user copied since is
theirs). One object per application (:func:`secret_clipboard`) outlives the dialog it was copied from.
It cannot take back what a clipboard manager or another program has already read.
"""

from __future__ import annotations

import hashlib

from PySide6.QtCore import QCoreApplication, QObject, QTimer
from PySide6.QtGui import QClipboard, QGuiApplication

#: How long a copied secret stays on the clipboard.
CLEAR_AFTER_MS = 30_000


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class SecretClipboard(QObject):
    """Puts a secret on the clipboard and removes it after a while, on :meth:`clear` and at quit."""

    def __init__(self, parent: QObject | None = None, clear_after_ms: int = CLEAR_AFTER_MS) -> None:
        super().__init__(parent)
        self.clear_after_ms = clear_after_ms
        self._digest: bytes | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.clear)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.clear)

    @property
    def pending(self) -> bool:
        """A secret we copied may still be on the clipboard (the timer is running)."""
        return self._digest is not None

    def copy(self, text: str) -> None:
        """Put ``text`` on the clipboard; it is cleared after :attr:`clear_after_ms` unless replaced."""
        QGuiApplication.clipboard().setText(text, QClipboard.Mode.Clipboard)
        self._digest = _digest(text)
        self._timer.start(self.clear_after_ms)

    def clear(self) -> bool:
        """Empty the clipboard if it still holds the secret we put there; True when it did."""
        self._timer.stop()
        ours, self._digest = self._digest, None
        if ours is None:
            return False
        clipboard = QGuiApplication.clipboard()
        if _digest(clipboard.text(QClipboard.Mode.Clipboard)) != ours:
            return False
        clipboard.clear(QClipboard.Mode.Clipboard)
        return True


def secret_clipboard() -> SecretClipboard:
    """The application's one SecretClipboard (created on first use, a child of the QApplication)."""
    app = QCoreApplication.instance()
    assert app is not None, "a QApplication must exist"
    found = app.findChild(SecretClipboard, "secretClipboard")
    if isinstance(found, SecretClipboard):
        return found
    holder = SecretClipboard(app)
    holder.setObjectName("secretClipboard")
    return holder


def seconds(ms: int) -> str:
    """``30`` for 30000: the delay as the status text shows it."""
    return str(round(ms / 1000))
