"""Writing key, certificate and signature-list files: complete or absent, never half-written.

Every output goes to a hidden temporary name in the destination directory first and is moved into place
only when fully written, so a crash or a full disk never leaves a truncated key or certificate behind.

Private files (keys, PKCS#12) are created with ``O_CREAT | O_EXCL`` and mode 0600, so they are never
readable by others, not even for an instant. "Do not overwrite" is enforced by the kernel, not by a racy
``exists()`` check: the finished temporary file is *hard-linked* to the final name, and ``link(2)`` fails
when that name exists (``rename(2)`` would silently replace it). Filesystems without hard links (FAT,
some FUSE mounts) fall back to creating the final name directly with ``O_EXCL`` — still never overwriting,
only no longer atomic.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from app.errors import OutputExistsError, ShieldwrightError

#: link(2) errors meaning "this filesystem cannot hard-link", not "the target exists".
_NO_LINK_ERRNOS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV, errno.ENOSYS}


def _exists_error(path: Path) -> OutputExistsError:
    return OutputExistsError(f"{path} already exists", "remove it or choose another output path")


def _os_error(path: Path, exc: OSError) -> ShieldwrightError:
    return ShieldwrightError(f"cannot write {path}: {exc.strerror or exc}", "check the path and permissions")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _create_temp(directory: Path, name: str, mode: int) -> tuple[Path, int]:
    """A new hidden file next to the destination (same filesystem, so link/rename stay atomic)."""
    for _ in range(100):
        tmp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileExistsError:
            continue
    raise ShieldwrightError(f"cannot create a temporary file in {directory}", "check the directory")


def write_output(
    path: str | os.PathLike[str], data: bytes, *, private: bool = False, overwrite: bool = False
) -> Path:
    """Write ``data`` to ``path`` atomically; ``private`` files are 0600, others 0666 minus the umask.

    Raises :class:`OutputExistsError` when ``path`` exists and ``overwrite`` is false (always for
    ``private`` files: keys are never replaced in place).
    """
    dst = Path(path)
    if private:
        overwrite = False
    mode = 0o600 if private else 0o666
    if not overwrite and os.path.lexists(dst):
        raise _exists_error(dst)  # early, friendly; the link below is the real guarantee
    try:
        tmp, fd = _create_temp(dst.parent, dst.name, mode)
    except OSError as exc:
        raise _os_error(dst, exc) from None
    try:
        try:
            if private:
                os.fchmod(fd, 0o600)  # exactly 0600 even under an odd umask such as 0o277
            _write_all(fd, data)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, dst)
        else:
            _link_new(tmp, dst, data, mode)
    except OSError as exc:
        raise _os_error(dst, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst


def _link_new(tmp: Path, dst: Path, data: bytes, mode: int) -> None:
    """Give ``tmp`` the name ``dst`` without ever replacing an existing ``dst``."""
    try:
        os.link(tmp, dst)
        return
    except FileExistsError:
        raise _exists_error(dst) from None
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            raise
    try:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        raise _exists_error(dst) from None
    try:
        if mode == 0o600:
            os.fchmod(fd, 0o600)
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        dst.unlink(missing_ok=True)
        raise
    os.close(fd)
