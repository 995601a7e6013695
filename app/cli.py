"""The command-line face of the engine.

Every subcommand maps to one engine call. Input errors (:class:`ShieldwrightError`) print one line
``shieldwright: error: MESSAGE (HINT)`` to stderr and exit with the error's code; they never print a
traceback. Without a subcommand the wizard opens (optionally on an image given as the only argument).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from app import __version__
from app.errors import ShieldwrightError

log = logging.getLogger(__name__)

SUBCOMMANDS = ("inspect", "convert", "demo-image")


def _human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def cmd_inspect(args: argparse.Namespace) -> int:
    from app.disk.layout import inspect_image

    layout = inspect_image(args.image)
    if args.json:
        json.dump(layout.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"Image:        {layout.path}")
        print(f"Format:       {layout.format}")
        print(f"Virtual size: {_human_size(layout.virtual_size)} ({layout.virtual_size} bytes)")
        print(f"Sector size:  {layout.sector_size}")
        print(f"Disk GUID:    {layout.disk_guid or '-'}")
        if layout.partitions:
            print()
            cols = f"{'#':>3}  {'First LBA':>10}  {'Last LBA':>10}  {'Size':>10}  {'Content':<8}"
            print(f"{cols}  {'Type':<24}  Name")
            for p in layout.partitions:
                print(
                    f"{p.number:>3}  {p.first_lba:>10}  {p.last_lba:>10}  {_human_size(p.size_bytes):>10}  "
                    f"{p.content:<8}  {p.type_name:<24}  {p.name}"
                )
                print(f"{'':>5}type {p.type_guid}  partition {p.partition_guid}")
        if layout.findings:
            print()
            for f in layout.findings:
                print(f"{f.severity.upper():<7}  {f.message}")
    return 1 if layout.has_errors else 0


def cmd_convert(args: argparse.Namespace) -> int:
    from app.disk.image import open_image
    from app.disk.writers import write_image

    with open_image(args.source) as src:
        write_image(src, Path(args.dest), args.format, progress=_TerminalProgress())
    return 0


def cmd_demo_image(args: argparse.Namespace) -> int:
    from app.disk.demo import build_demo_image

    build_demo_image(Path(args.path), progress=_TerminalProgress())
    print(args.path)
    return 0


class _TerminalProgress:
    """Progress on stderr, only when it is a terminal; silent in pipelines."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.step, self.total = "", 0

    def begin(self, step: str, total: int) -> None:
        self.step, self.total = step, total
        if self.tty:
            sys.stderr.write(f"\r\033[K{step}")
            sys.stderr.flush()

    def update(self, done: int) -> None:
        if self.tty and self.total:
            sys.stderr.write(f"\r\033[K{self.step}: {100 * done // self.total}%")
            sys.stderr.flush()

    def advance(self, amount: int) -> None:
        pass

    def __del__(self) -> None:
        if getattr(self, "tty", False):
            sys.stderr.write("\r\033[K")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shieldwright",
        description="Build signed, encrypted template disks for Shielded / Confidential VMs. "
        "Without a subcommand, opens the wizard.",
    )
    parser.add_argument("--version", action="version", version=f"shieldwright {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inspect", help="show an image's format, partitions and findings")
    p.add_argument("image", help="disk image (raw, VHD, VHDX or qcow2)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("convert", help="copy a disk image into another format")
    p.add_argument("source", help="input disk image (any supported format)")
    p.add_argument("dest", help="output path (written atomically)")
    p.add_argument("--format", required=True, choices=("raw", "vhdx", "vhd"), help="output format")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("demo-image", help="build a small bootable demo base image (GPT, ESP, XBOOTLDR, root)")
    p.add_argument("path", help="where to write the raw image")
    p.set_defaults(func=cmd_demo_image)
    return parser


def main(argv: list[str]) -> int:
    positional = [a for a in argv if not a.startswith("-")]
    asks_parser = any(a in ("-h", "--help", "--version") for a in argv)
    if not asks_parser and (not positional or positional[0] not in SUBCOMMANDS):
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
