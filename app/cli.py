"""The command-line face of the engine.

Every subcommand maps to one engine call. Input errors (:class:`ShieldwrightError`) print one line
``shieldwright: error: MESSAGE (HINT)`` to stderr and exit with the error's code; they never print a
traceback. Without a subcommand the wizard opens (optionally on an image given as the only argument).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from app import __version__
from app.commands import COMMAND_MODULES
from app.errors import ShieldwrightError

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shieldwright",
        description="Build signed, encrypted template disks for Shielded / Confidential VMs. "
        "Without a subcommand, opens the wizard.",
    )
    parser.add_argument("--version", action="version", version=f"shieldwright {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"app.commands.{name}").register(sub)
    return parser


def subcommands() -> list[str]:
    """Names of all subcommands (a first positional argument that is none of these is an image)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def main(argv: list[str]) -> int:
    positional = [a for a in argv if not a.startswith("-")]
    asks_parser = any(a in ("-h", "--help", "--version") for a in argv)
    if not asks_parser and (not positional or positional[0] not in subcommands()):
        # No subcommand: the wizard, optionally opened on one image.
        from app.gui.application import run_wizard

        return run_wizard(positional[0] if positional else None, debug="--debug" in argv)

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if args.command is None:
        build_parser().print_help()
        return 2
    try:
        return args.func(args)
    except ShieldwrightError as exc:
        print(f"shieldwright: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("shieldwright: cancelled", file=sys.stderr)
        return 130
