"""Where Shieldwright's log file lives, and how an unexpected error's traceback gets there (and only there).

The wizard logs to a rotating file (:mod:`app.gui.application`); the command line prints one line per error
and keeps tracebacks out of the terminal and out of CI logs. Both use the same file,
``$XDG_STATE_HOME/shieldwright/log/shieldwright.log`` (platformdirs' user log directory), so a bug report
needs one path whichever face failed. Created with mode 0600: paths of a user's files are in it.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from platformdirs import user_log_path

from app import __version__


def log_file_path() -> Path:
    """``$XDG_STATE_HOME/shieldwright/log/shieldwright.log`` (platformdirs' user log dir)."""
    return user_log_path("shieldwright") / "shieldwright.log"


def append_traceback(exc: BaseException, context: str) -> Path | None:
    """Append ``exc``'s traceback to the log file under a dated ``context`` line; the file's path, or None
    when it cannot be written (a read-only home must not turn one error into two)."""
    path = log_file_path()
    try:
        text = "".join(traceback.format_exception(exc))
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        entry = f"{stamp} ERROR   shieldwright {__version__}: {context}\n{text}"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8", errors="replace") as f:
            f.write(entry)
    except (OSError, MemoryError, RecursionError, ValueError):
        return None
    return path
