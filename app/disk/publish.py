"""Giving a finished output its final name, never replacing an existing file without consent.

Outputs are written under a hidden temporary name and renamed when complete, so a half-written file never
exists under the final name. ``rename(2)`` silently replaces whatever holds that name, though, so unless
the caller allows it (the CLI's ``--force``, the wizard's question) the name is taken with ``link(2)``,
which fails when the name exists: the kernel's guarantee, not a racy ``exists()``. Filesystems without
hard links (FAT, some FUSE mounts) fall back to a check and a rename.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from app.errors import OutputExistsError

#: link(2) errors meaning "this filesystem cannot hard-link", not "the target exists".
_NO_LINK_ERRNOS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV, errno.ENOSYS}


def exists_error(dst: Path) -> OutputExistsError:
    return OutputExistsError(f"{dst} already exists", "give --force to replace it, or choose another path")


def refuse_existing(dst: str | os.PathLike[str], overwrite: bool) -> None:
    """:class:`OutputExistsError` early (before any work) when ``dst`` exists and may not be replaced."""
    if not overwrite and os.path.lexists(dst):
        raise exists_error(Path(dst))


def publish(tmp: Path, dst: Path, *, overwrite: bool) -> None:
    """Move the complete file ``tmp`` to ``dst``; without ``overwrite`` an existing ``dst`` is kept and
    :class:`OutputExistsError` raised (``tmp`` is then left for the caller to remove)."""
    if overwrite:
        os.replace(tmp, dst)
        return
    try:
        os.link(tmp, dst)
    except FileExistsError:
        raise exists_error(dst) from None
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            raise
        refuse_existing(dst, False)
        os.replace(tmp, dst)
        return
    with contextlib.suppress(OSError):
        os.unlink(tmp)
