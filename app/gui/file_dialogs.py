"""One non-blocking file dialog per key, for pages and the main window alike.

Never ``exec()``: a nested event loop inside an async slot is what qasync forbids. The caller keeps a
``{key: dialog}`` dict so asking again raises the open dialog instead of stacking a second one, and tests
can reach the dialog while it is open.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QWidget

#: File dialog filters used by more than one page or window (the first entry is the one selected).
RECIPE_FILTERS = ("Shieldwright recipes (*.toml)", "All files (*)")
CERT_FILTERS = ("Certificates (*.crt *.pem *.cer *.der)", "All files (*)")
KEY_FILTERS = ("Private keys (*.key *.pem *.der)", "All files (*)")
SHD_FILTERS = ("Shielding data (*.shd)", "All files (*)")
VARS_FILTERS = ("OVMF variable stores (*.fd)", "All files (*)")


def open_file_dialog(
    parent: QWidget,
    dialogs: MutableMapping[str, Any],
    key: str,
    title: str,
    directory: Path | str,
    on_selected: Callable[[str], Any],
    *,
    filters: Sequence[str] = (),
    save: bool = False,
    select: str | None = None,
    suffix: str | None = None,
    confirm_overwrite: bool = True,
) -> QFileDialog:
    """Open (or raise) the ``key`` file dialog. ``save`` asks for a new file name, with the dialog's own
    overwrite question unless ``confirm_overwrite`` is False (for callers that ask inline, non-blocking).
    ``filters`` are translated in ``parent``'s context."""
    existing = dialogs.get(key)
    if isinstance(existing, QFileDialog):
        existing.raise_()
        existing.activateWindow()
        return existing
    dialog = QFileDialog(parent, title, str(directory))
    dialog.setObjectName(f"{key}Dialog")
    if save:
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setFileMode(QFileDialog.FileMode.AnyFile)
        if not confirm_overwrite:
            dialog.setOption(QFileDialog.Option.DontConfirmOverwrite, True)
    else:
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
    if filters:
        dialog.setNameFilters([parent.tr(f) for f in filters])
    if select:
        dialog.selectFile(select)
    if suffix:
        dialog.setDefaultSuffix(suffix)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.fileSelected.connect(on_selected)
    dialog.finished.connect(lambda _result: dialogs.pop(key, None))
    dialogs[key] = dialog
    dialog.open()
    return dialog
