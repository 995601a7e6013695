"""``shieldwright pcr``: read TCG event logs, predict and compare PCR 4, 7 and 11 (filled in by issue 14).

``pcr log EVENTLOG [--json] [--pcr N ...]`` lists a crypto-agile event log's events and the PCR values they
replay to, per bank. ``--json`` prints ``{"pcrs": {bank: {"0": hex, ...}}, "events": [...]}``, events in the
sha256 bank when the log has it (else its first bank). Text from the log is printed escaped.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from app.commands._pcr_predict import register_actions

if TYPE_CHECKING:
    from app.measure.eventlog import EventLog


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pcr = sub.add_parser("pcr", help="TPM PCRs: read event logs, predict PCR 4/7/11, compare")
    pcr_sub = pcr.add_subparsers(dest="pcr_command", metavar="ACTION", required=True)
    register_actions(pcr_sub)
    _register_log(pcr_sub)


def _pcr_index(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a PCR number: {text!r}") from None
    if not 0 <= value <= 23:
        raise argparse.ArgumentTypeError(f"PCR {value} does not exist (a TPM 2.0 PC has PCRs 0 to 23)")
    return value


def add_pcr_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--pcr N [N ...]`` (repeatable): which PCRs ``what`` covers; default all."""
    p.add_argument(
        "--pcr", dest="pcrs", metavar="N", type=_pcr_index, nargs="+", action="extend",
        help=f"only these PCRs (repeatable; default: {what})",
    )  # fmt: skip


def _register_log(pcr_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = pcr_sub.add_parser(
        "log",
        help="list a TCG event log's events and replay it to PCR values",
        description="Read a TPM 2.0 (crypto-agile) TCG event log, e.g. a copy of "
        "/sys/kernel/security/tpm0/binary_bios_measurements, list its events and print the PCR values "
        "it replays to in every bank. Exit status: 0 read; 2 unreadable or not an event log.",
    )
    p.add_argument("eventlog", metavar="EVENTLOG", help="binary event log file")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_pcr_option(p, "every PCR the log extends")
    p.set_defaults(func=cmd_log)


def _event_bank(log: EventLog) -> str:
    return "sha256" if "sha256" in log.banks else log.banks[0]


def cmd_log(args: argparse.Namespace) -> int:
    from app.measure.eventlog import read_event_log  # lazy: the engine stays out of the parser

    log = read_event_log(args.eventlog)
    wanted = None if args.pcrs is None else set(args.pcrs)
    events = [e for e in log.events if wanted is None or e.pcr in wanted]
    replayed = log.replay(wanted)
    banks = sorted(replayed, key=lambda b: (b != "sha256", log.banks.index(b)))
    bank = _event_bank(log)
    if args.json:
        pcrs = {b: {str(pcr): value for pcr, value in replayed[b].items()} for b in banks}
        print(json.dumps({"pcrs": pcrs, "events": [e.to_dict(bank) for e in events]}, indent=2))
        return 0
    width = max((len(e.type_name) for e in events), default=4)
    print(f"PCR  {'TYPE':<{width}}  {bank.upper():<{2 * log.digest_sizes[bank]}}  DESCRIPTION")
    for e in events:
        print(f"{e.pcr:>3}  {e.type_name:<{width}}  {e.digest_hex(bank)}  {e.description}")
    if log.startup_locality:
        print(f"\nTPM2_Startup at locality {log.startup_locality} (PCR 0 starts from that value)")
    for b in banks:
        print(f"\nPCRs ({b}):")
        for pcr, value in replayed[b].items():
            print(f"{pcr:>3}  {value}")
    skipped = [b for b in log.banks if b not in replayed]
    if skipped:
        print(f"\nnot replayed (no hash implementation): {', '.join(skipped)}")
    return 0
