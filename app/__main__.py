"""``shieldwright`` / ``python -m app``: no subcommand opens the wizard, a subcommand runs the CLI."""

from __future__ import annotations

import contextlib
import ctypes
import sys

from app.cli import main as cli_main
from app.secrets import forbid_core_dumps

#: glibc's mallopt parameter for the number of malloc arenas (malloc.h).
M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def share_malloc_arenas() -> None:
    """Cap glibc's malloc arenas at two, before any thread starts.

    glibc gives threads arenas of their own (up to 8 per core). The build's threads (read-ahead, XTS lanes,
    hashing, writing) allocate and free 4 MiB buffers in turn, and memory freed in one arena cannot serve
    another: a 64 GiB sparse build peaked at 303-321 MiB RSS with the default and 235-266 MiB with two
    arenas, no slower (benchmarks/bench_scale.py, issue 19). Elsewhere than glibc this does nothing.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, MALLOC_ARENAS)


def main(argv: list[str] | None = None) -> int:
    forbid_core_dumps()  # both faces hold passphrases and volume keys in memory
    share_malloc_arenas()
    return cli_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
