"""Disk subcommands: inspect, convert, demo-image."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.commands._overwrite import add_force_option, check_output
from app.commands._util import TerminalProgress
from app.disk.image import WRITE_FORMATS
from app.template.build.report import human_size
from app.untrusted import printable


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("inspect", help="show an image's format, partitions and findings")
    p.add_argument("image", help="disk image (raw, VHD, VHDX or qcow2)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("convert", help="copy a disk image into another format")
    p.add_argument("source", help="input disk image (any supported format)")
    p.add_argument("dest", help="output path (written atomically)")
    p.add_argument("--format", required=True, choices=WRITE_FORMATS, help="output format")
    add_force_option(p, "DEST")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("demo-image", help="build a small bootable demo base image (GPT, ESP, XBOOTLDR, root)")
    p.add_argument("path", help="where to write the raw image")
    p.add_argument(
        "--boot-loader",
        choices=("systemd-boot", "shim"),
        default="systemd-boot",
        help="what the ESP boots from \\EFI\\BOOT: systemd-boot (default), or Debian's Microsoft-signed "
        "shim with its fallback, as cloud images have (downloads shim-signed and shim-helpers-amd64-signed)",
    )
    add_force_option(p, "PATH")
    p.set_defaults(func=cmd_demo_image)


def cmd_inspect(args: argparse.Namespace) -> int:
    # lazy: ~20 ms of image-format and partition modules that the parser (and `--help`) does not need
    from app.disk.layout import inspect_image

    layout = inspect_image(args.image)
    if args.json:
        json.dump(layout.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"Image:        {layout.path}")
        print(f"Format:       {layout.format}")
        print(f"Virtual size: {human_size(layout.virtual_size)} ({layout.virtual_size} bytes)")
        print(f"Sector size:  {layout.sector_size}")
        print(f"Disk GUID:    {layout.disk_guid or '-'}")
        # GPT names and findings (which quote names and labels) come from the image: escaped, so a
        # hostile image cannot move the cursor or rewrite what is shown.
        if layout.partitions:
            print()
            cols = f"{'#':>3}  {'First LBA':>10}  {'Last LBA':>10}  {'Size':>10}  {'Content':<8}"
            print(f"{cols}  {'Type':<24}  Name")
            for p in layout.partitions:
                print(
                    f"{p.number:>3}  {p.first_lba:>10}  {p.last_lba:>10}  {human_size(p.size_bytes):>10}  "
                    f"{p.content:<8}  {p.type_name:<24}  {printable(p.name)}"
                )
                print(f"{'':>5}type {p.type_guid}  partition {p.partition_guid}")
        if layout.findings:
            print()
            for f in layout.findings:
                print(f"{f.severity.upper():<7}  {printable(f.message)}")
    return 1 if layout.has_errors else 0


def cmd_convert(args: argparse.Namespace) -> int:
    # lazy: app.disk.writers loads numpy
    from app.disk.image import open_image
    from app.disk.writers import write_image

    check_output(args.dest, args.force)  # before opening the source, let alone copying it
    progress = TerminalProgress()
    try:
        with open_image(args.source) as src:
            write_image(src, Path(args.dest), args.format, progress=progress, overwrite=args.force)
    finally:
        progress.close()
    return 0


def cmd_demo_image(args: argparse.Namespace) -> int:
    # lazy: ~40 ms of imports (platformdirs, subprocess, the GPT writer) that only demo-image needs
    from app.template.demo import build_demo_image

    check_output(args.path, args.force)  # before any download or build
    progress = TerminalProgress()
    try:
        build_demo_image(
            Path(args.path), progress=progress, overwrite=args.force, boot_loader=args.boot_loader
        )
    finally:
        progress.close()
    print(args.path)
    return 0
