"""No command replaces an existing file unless told to with ``--force``.

The check runs before any work; the write itself goes through :func:`app.signing.output.write_output`,
whose refusal is enforced by the kernel (``link(2)``), so a file that appears in between is kept too.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from app.errors import OutputExistsError
from app.signing.output import write_output


def add_force_option(parser: argparse.ArgumentParser, what: str = "OUT") -> None:
    parser.add_argument("--force", action="store_true", help=f"replace {what} if it already exists")


def check_output(path: str | os.PathLike[str], force: bool) -> Path:
    """``path``, or OutputExistsError when it exists (even as a dangling symlink) and ``force`` is off."""
    out = Path(path)
    if not force and os.path.lexists(out):
        raise OutputExistsError(f"{out} already exists", "give --force to replace it, or choose another path")
    return out


def write_new(path: Path, data: bytes, force: bool) -> None:
    """Write ``data`` to ``path`` atomically, replacing an existing file only with ``force``."""
    try:
        write_output(path, data, overwrite=force)
    except OutputExistsError as exc:  # appeared after check_output: same refusal, same hint
        raise OutputExistsError(exc.message, "give --force to replace it, or choose another path") from None
