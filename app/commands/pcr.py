"""``shieldwright pcr``: read TCG event logs, predict and compare PCR 4, 7 and 11 (filled in by issue 14)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pcr = sub.add_parser("pcr", help="TPM PCRs: read event logs, predict PCR 4/7/11, compare")
    pcr.add_subparsers(dest="pcr_command", metavar="ACTION", required=True)
