"""Versions of what Shieldwright runs on (Help › About) and the diagnostics bundle (Help › Save diagnostics…).

The bundle is a zip of ``versions.txt`` and the log files - never a secret: nothing else is read, and
every secret the caller still holds in memory (a passphrase, a recovery key) is replaced by
``[secret removed]`` wherever it appears, in case a bug ever let one reach the log.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import os
import platform
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from app import __version__
from app.boot.uki import HOST_STUB, host_stub, read_stub
from app.errors import ShieldwrightError

log = logging.getLogger(__name__)

#: What replaces a secret found in the bundle.
REDACTED = b"[secret removed]"
#: Secrets shorter than this are not searched for (they would match innocent text).
MIN_SECRET_LENGTH = 8
#: At most this much of each log file goes into the bundle (its end: the most recent lines).
MAX_LOG_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Version:
    """One line of Help › About: what, which version (or why none), and where it was found."""

    name: str
    version: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.name}: {self.version}" + (f" ({self.detail})" if self.detail else "")


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def openssl_version() -> str:
    """The OpenSSL that ``cryptography`` uses, e.g. "OpenSSL 3.0.15 3 Sep 2024"."""
    from cryptography.hazmat.backends.openssl import backend

    return str(backend.openssl_version_text())


def stub_version(path: Path = HOST_STUB) -> Version:
    """The host's systemd-stub (the one a UKI is built on unless another is chosen), as the engine reads
    its LoaderInfo marker; "not found" with the reason otherwise."""
    try:
        data = host_stub() if path == HOST_STUB else path.read_bytes()
        _pe, info = read_stub(data)
    except ShieldwrightError as exc:
        return Version("systemd-stub", "not found", exc.message)
    except OSError as exc:
        return Version("systemd-stub", "not found", f"{path}: {exc.strerror}")
    return Version("systemd-stub", info.version, str(path))


def os_name() -> str:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return platform.platform()
    return release.get("PRETTY_NAME") or release.get("NAME") or platform.platform()


def collect_versions(qt_version: str, pyside_version: str, platform_name: str = "") -> list[Version]:
    """Everything About shows and the bundle records. Runs off the GUI thread (it reads the stub); the Qt
    facts are passed in by the caller."""
    import cryptography

    return [
        Version("Shieldwright", __version__),
        Version("Python", platform.python_version(), sys.executable),
        Version("Qt", qt_version, f"platform {platform_name}" if platform_name else ""),
        Version("PySide6", pyside_version),
        Version("qasync", _dist_version("qasync")),
        Version("cryptography", cryptography.__version__),
        Version("OpenSSL", openssl_version(), "used by cryptography"),
        Version("pefile", _dist_version("pefile")),
        Version("tpm2-pytss", _dist_version("tpm2-pytss")),
        stub_version(),
        Version("Operating system", os_name(), f"Linux {platform.release()} {platform.machine()}"),
    ]


def versions_text(versions: Iterable[Version]) -> str:
    return "".join(v.line() + "\n" for v in versions)


def log_files(log_path: Path) -> list[Path]:
    """The log file and its rotated copies (``.1`` … as RotatingFileHandler names them), newest first."""
    found = [log_path] if log_path.is_file() else []
    n = 1
    while (rotated := log_path.with_name(f"{log_path.name}.{n}")).is_file():
        found.append(rotated)
        n += 1
    return found


def _read_tail(path: Path) -> bytes:
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - MAX_LOG_BYTES))
        return f.read(MAX_LOG_BYTES)


def redact(data: bytes, secrets: Iterable[bytes]) -> bytes:
    """``data`` with every occurrence of each secret (of at least :data:`MIN_SECRET_LENGTH` bytes)
    replaced by :data:`REDACTED`."""
    for secret in sorted((bytes(s) for s in secrets if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True):
        data = data.replace(secret, REDACTED)
    return data


def default_bundle_name(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now()
    return f"shieldwright-diagnostics-{now:%Y%m%d-%H%M%S}.zip"


def write_diagnostics(
    path: Path, versions: list[Version], log_path: Path | None, secrets: Iterable[bytes] = ()
) -> Path:
    """Write the bundle to ``path`` (mode 0600, replaced atomically): ``versions.txt`` and the log files.
    Runs off the GUI thread."""
    path = Path(path)
    hidden = [bytes(s) for s in secrets]
    header = (
        f"Shieldwright diagnostics, {dt.datetime.now().astimezone():%Y-%m-%d %H:%M:%S %z}\n"
        f"Log file: {log_path if log_path is not None else 'none'}\n\n"
    )
    try:
        fd, tmp = tempfile.mkstemp(prefix=".shieldwright-diagnostics-", suffix=".zip", dir=path.parent)
    except OSError as exc:
        raise ShieldwrightError(
            f"cannot write in {path.parent}: {exc.strerror}", "choose another folder"
        ) from None
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as bundle:
            bundle.writestr("versions.txt", redact((header + versions_text(versions)).encode(), hidden))
            for log_file in log_files(log_path) if log_path is not None else []:
                try:
                    bundle.writestr(f"log/{log_file.name}", redact(_read_tail(log_file), hidden))
                except OSError as exc:  # rotated away meanwhile, or unreadable: say so in the bundle
                    bundle.writestr(f"log/{log_file.name}.missing", f"{exc.strerror}\n")
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ShieldwrightError(f"cannot write {path}: {exc.strerror}", "choose another folder") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("diagnostics saved to %s", path)
    return path
