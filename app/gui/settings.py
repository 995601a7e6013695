"""What Shieldwright remembers between runs: window geometry, last folders, recent recipes, and the last
signing certificates *by path*. Never a secret: there is no generic setter, only the typed ones below, and
none of them takes a passphrase, a key or a recovery key.

The file is the one ``QSettings(IniFormat, UserScope, "shieldwright", "shieldwright")`` uses,
``$XDG_CONFIG_HOME/shieldwright/shieldwright.conf``, but its path is worked out (platformdirs) each time a
:class:`Settings` is made rather than once per process as Qt does, so a test (or a user) pointing
``XDG_CONFIG_HOME`` elsewhere gets a separate file.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_config_path
from PySide6.QtCore import QByteArray, QSettings

#: QSettings' organization and application names (the folder and the file name under the config dir).
ORGANIZATION = "shieldwright"
APPLICATION = "shieldwright"
#: How many recent recipes File › Open Recent lists.
MAX_RECENT = 8
#: The folders remembered, by purpose (each file dialog of the frame starts in its own).
FOLDER_KEYS = ("recipe", "image", "certificates", "diagnostics")
#: The signing roles remembered (the certificate and key *paths* of each).
CERTIFICATE_ROLES = ("uefi", "catalog")


def settings_path() -> Path:
    """``$XDG_CONFIG_HOME/shieldwright/shieldwright.conf`` (read from the environment now)."""
    return user_config_path(ORGANIZATION, appauthor=False, roaming=False) / f"{APPLICATION}.conf"


class Settings:
    """Typed access to the settings file; every write is synced at once (two instances may run)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or settings_path()
        self._q = QSettings(str(self.path), QSettings.Format.IniFormat)

    def sync(self) -> None:
        self._q.sync()

    # -- window -----------------------------------------------------------------------------------

    def window_geometry(self) -> QByteArray | None:
        value = self._q.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_window_geometry(self, geometry: QByteArray) -> None:
        self._q.setValue("window/geometry", geometry)
        self._q.sync()

    # -- folders ----------------------------------------------------------------------------------

    def folder(self, key: str) -> Path | None:
        """The last folder used for ``key`` (one of :data:`FOLDER_KEYS`) if it still exists."""
        value = self._q.value(f"folders/{_known(key, FOLDER_KEYS)}")
        if not isinstance(value, str) or not value:
            return None
        path = Path(value)
        return path if path.is_dir() else None

    def set_folder(self, key: str, folder: Path | str) -> None:
        self._q.setValue(f"folders/{_known(key, FOLDER_KEYS)}", os.fspath(folder))
        self._q.sync()

    def start_folder(self, key: str) -> Path:
        """Where a file dialog for ``key`` starts: the last folder used, else the home folder."""
        return self.folder(key) or Path.home()

    # -- recent recipes ---------------------------------------------------------------------------

    def recent_recipes(self) -> list[Path]:
        """Most recent first (files that vanished are still listed; opening one says so)."""
        value = self._q.value("recent/recipes")
        if isinstance(value, str):  # QSettings gives a one-element list back as a plain string
            value = [value]
        if not isinstance(value, list):
            return []
        return [Path(v) for v in value if isinstance(v, str) and v][:MAX_RECENT]

    def add_recent_recipe(self, path: Path | str) -> list[Path]:
        """Put ``path`` (absolute) first; the list is cut to :data:`MAX_RECENT`."""
        path = Path(os.path.abspath(path))
        recent = [path] + [p for p in self.recent_recipes() if p != path]
        self._set_recent(recent[:MAX_RECENT])
        self.set_folder("recipe", path.parent)
        return self.recent_recipes()

    def remove_recent_recipe(self, path: Path | str) -> None:
        self._set_recent([p for p in self.recent_recipes() if p != Path(path)])

    def clear_recent_recipes(self) -> None:
        self._set_recent([])

    def _set_recent(self, paths: list[Path]) -> None:
        if paths:
            self._q.setValue("recent/recipes", [str(p) for p in paths])
        else:
            self._q.remove("recent/recipes")
        self._q.sync()

    # -- certificates (paths only) ----------------------------------------------------------------

    def certificate(self, role: str) -> tuple[Path, Path | None] | None:
        """The last certificate (and key file) loaded for ``role``, if the certificate file still exists."""
        role = _known(role, CERTIFICATE_ROLES)
        cert, key = self._q.value(f"certificates/{role}_cert"), self._q.value(f"certificates/{role}_key")
        if not isinstance(cert, str) or not cert or not Path(cert).is_file():
            return None
        key_path = Path(key) if isinstance(key, str) and key else None
        if key_path is not None and not key_path.is_file():
            return None
        return Path(cert), key_path

    def set_certificate(self, role: str, cert: Path | None, key: Path | None = None) -> None:
        """Remember the *paths* of ``role``'s certificate and key file (None forgets them)."""
        role = _known(role, CERTIFICATE_ROLES)
        if cert is None:
            self._q.remove(f"certificates/{role}_cert")
            self._q.remove(f"certificates/{role}_key")
        else:
            self._q.setValue(f"certificates/{role}_cert", os.fspath(Path(cert).absolute()))
            self._q.setValue(f"certificates/{role}_key", os.fspath(Path(key).absolute()) if key else "")
            self.set_folder("certificates", Path(cert).absolute().parent)
        self._q.sync()

    def keys(self) -> list[str]:
        """Every key in the file (tests list them to show nothing else is stored)."""
        return list(self._q.allKeys())


def _known(key: str, known: tuple[str, ...]) -> str:
    if key not in known:
        raise ValueError(f"unknown settings key {key!r} (one of {', '.join(known)})")
    return key
