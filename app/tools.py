"""Running the external programs the engine relies on (mkfs, mtools, apt, qemu-img, …).

One place decides how a tool is found and how its failure reads: a missing tool is a
:class:`ToolMissingError` telling the user to run ``make setup``; a failing tool is a
:class:`ShieldwrightError` carrying the tool's last stderr line, which is nearly always the cause.
Runs are cancellable: the token is polled every 100 ms and the tool is killed on cancel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from app.errors import ShieldwrightError, ToolMissingError
from app.progress import CancelToken

#: mkfs.*, debugfs, fsck.* live here on Debian, off an ordinary user's PATH.
SBIN_DIRS = ("/usr/sbin", "/sbin")


def find_tool(name: str) -> str | None:
    """Absolute path of ``name`` on PATH or in the sbin directories, or None."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))


def require_tool(name: str) -> str:
    """Like :func:`find_tool`, but a missing tool is a :class:`ToolMissingError`."""
    found = find_tool(name)
    if not found:
        raise ToolMissingError(f"{name} is not installed", "run `make setup` to install the system packages")
    return found


def run_tool(
    *cmd: str | os.PathLike[str],
    cancel: CancelToken | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    hint: str = "",
) -> str:
    """Run a tool with ``LC_ALL=C`` (stable messages), polling ``cancel`` while it runs; return stdout."""
    argv = [require_tool(str(cmd[0]))] + [str(c) for c in cmd[1:]]
    full_env = {**os.environ, "LC_ALL": "C", **(env or {})}
    proc = subprocess.Popen(
        argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    while True:
        try:
            out, err = proc.communicate(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            if cancel is not None and cancel.cancelled:
                proc.kill()
                proc.communicate()
                cancel.check()
    if proc.returncode != 0:
        lines = [ln.strip() for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise ShieldwrightError(f"{Path(argv[0]).name} failed: {last}", hint)
    return out.decode(errors="replace")
