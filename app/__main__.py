"""``shieldwright`` / ``python -m app``: no subcommand opens the wizard, a subcommand runs the CLI."""

from __future__ import annotations

import sys

from app.cli import main as cli_main
from app.secrets import forbid_core_dumps


def main(argv: list[str] | None = None) -> int:
    forbid_core_dumps()  # both faces hold passphrases and volume keys in memory
    return cli_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
