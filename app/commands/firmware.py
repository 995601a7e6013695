"""``shieldwright firmware``: UEFI variable stores for test boots (filled in by issue 14)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fw = sub.add_parser("firmware", help="UEFI firmware variable stores (OVMF) for test boots")
    fw.add_subparsers(dest="firmware_command", metavar="ACTION", required=True)
