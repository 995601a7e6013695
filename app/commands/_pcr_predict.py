"""``shieldwright pcr predict`` and ``pcr diff``: PCR 4, 7 and 11 of a template on a target firmware.

The firmware options (one of ``--firmware-vars``, ``--firmware-log``, ``--firmware-certs``) are the same
words as the recipe's ``[pcr]`` keys and the build's flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from app.template.options import option

if TYPE_CHECKING:
    from app.measure.compare import EventMatch
    from app.measure.events import Event
    from app.measure.predict import Prediction
    from app.measure.profile import FirmwareProfile

#: The recipe keys of the firmware profiles: their flags, help and names come from the options table, so
#: `pcr predict` and `build` spell them alike; the profile kind is the key's suffix.
FIRMWARE_KEYS = ("pcr.firmware_vars", "pcr.firmware_log", "pcr.firmware_certs")


def add_firmware_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    group = p.add_mutually_exclusive_group(required=required)
    for key in FIRMWARE_KEYS:
        opt = option(key)
        assert opt.flag is not None
        group.add_argument(opt.flag, metavar=opt.metavar, dest=opt.name, help=opt.help)


def profile_from_args(args: argparse.Namespace) -> FirmwareProfile:
    from app.measure.profile import load_profile  # lazy: keeps --help light

    for key in FIRMWARE_KEYS:
        name = option(key).name
        path = getattr(args, name, None)
        if path:
            return load_profile(name.removeprefix("firmware_"), path)
    raise AssertionError("argparse requires one firmware option")


def register_actions(pcr_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = pcr_sub.add_parser(
        "predict",
        help="predict PCR 4, 7 and 11 of a template booting on a target firmware",
        description="Find the template's boot chain in its ESP (\\EFI\\BOOT\\BOOTX64.EFI: a UKI, or shim "
        "with its fallback and BOOTX64.CSV) and predict every event of PCR 4, 7 and 11 on the firmware "
        "given. PCR 11 is the value when the kernel starts, before any systemd boot phase. Exit status: 0 "
        "predicted; 2 the chain or the firmware cannot be predicted (the reason is printed).",
    )
    p.add_argument("template", help="template image (raw, qcow2, vhdx, vhd)")
    add_firmware_options(p, required=True)
    p.add_argument("--bank", default="sha256", help="PCR bank to print (default sha256)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_predict)

    p = pcr_sub.add_parser(
        "diff",
        help="compare a template's prediction with a real event log, event by event",
        description="Predict the template on the firmware given and compare PCR 4, 7 and 11 with the event "
        "log. Exit status: 0 the three PCRs match; 1 they differ (the differing events are listed); 2 "
        "unreadable input or a chain that cannot be predicted.",
    )
    p.add_argument("template", help="template image")
    p.add_argument("eventlog", help="TCG event log (binary_bios_measurements)")
    add_firmware_options(p, required=True)
    p.add_argument("--bank", default="sha256", help="PCR bank to compare (default sha256)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_diff)


def _predict(args: argparse.Namespace) -> Prediction:
    from app.measure.predict import predict_template  # lazy: keeps --help light

    profile = profile_from_args(args)
    return predict_template(args.template, profile, [args.bank])


def cmd_predict(args: argparse.Namespace) -> int:
    prediction = _predict(args)
    if args.json:
        json.dump(prediction.to_dict(args.bank), sys.stdout, indent=2)
        print()
        return 0
    out = sys.stdout
    print(f"Firmware: {prediction.profile.description}", file=out)
    for note in prediction.chain.notes:
        print(f"Chain: {note}", file=out)
    print(file=out)
    _print_events(prediction.events, args.bank)
    print(file=out)
    for pcr, value in prediction.pcrs[args.bank].items():
        print(f"PCR {pcr:>2} {args.bank}: {value}", file=out)
    return 0


def _print_events(events: tuple[Event, ...] | list[Event], bank: str) -> None:
    for ev in events:
        digest = ev.digests.get(bank, b"").hex() or "-"
        print(f"{ev.pcr:>3}  {ev.type_name:<34} {digest[:16]}…  {ev.source:<8} {ev.description}")


def cmd_diff(args: argparse.Namespace) -> int:
    from app.measure.compare import diff_with_log  # lazy: keeps --help light
    from app.measure.eventlog import read_event_log  # lazy

    prediction = _predict(args)
    diff = diff_with_log(
        list(prediction.events), read_event_log(args.eventlog), bank=args.bank, pcrs=(4, 7, 11)
    )
    predicted = prediction.pcrs[args.bank]
    ok = all(diff.logged[n] == predicted[n] for n in (4, 7, 11))
    if args.json:
        doc = {
            "bank": args.bank,
            "match": ok,
            "pcrs": {str(n): {"predicted": predicted[n], "log": diff.logged[n]} for n in (4, 7, 11)},
            "events": [_match_dict(m, args.bank) for m in diff.matches],
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0 if ok else 1
    for n in (4, 7, 11):
        same = "match" if diff.logged[n] == predicted[n] else "DIFFER"
        print(f"PCR {n:>2}: {same}  predicted {predicted[n]}  log {diff.logged[n]}")
    if diff.differing():
        print()
        for m in diff.differing():
            ev = m.predicted or m.actual
            assert ev is not None
            print(f"{m.status:<8} PCR {m.pcr:>2} {ev.type_name:<34} {ev.description}")
    return 0 if ok else 1


def _match_dict(m: EventMatch, bank: str) -> dict[str, object]:
    return {
        "pcr": m.pcr,
        "status": m.status,
        "predicted": m.predicted.to_dict(bank) if m.predicted else None,
        "log": m.actual.to_dict(bank) if m.actual else None,
    }
