"""``shieldwright verify TEMPLATE``: check an exported template end to end before trusting it.

One line per check (GPT, ESP, each UKI, the catalog, each LUKS2 container), ✓ or ✗ with the reason.
Exit codes: 0 every check passed; 1 a check failed; 2 unreadable input (a missing image, an unreadable
``--vsc`` or ``--trust`` file); 130 cancelled.
"""

from __future__ import annotations

import argparse
import json
import sys

from app.commands._util import TerminalProgress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check a built template: GPT, ESP, UKI signatures, catalog, LUKS2 headers",
        description="Check an exported template end to end: both GPT copies, the ESP's FAT (fsck.fat -n "
        "on a copy), the Authenticode signature of every UKI in \\EFI\\Linux, the signed catalog (from the "
        "ESP or --vsc) against every block, and both header copies of every LUKS2 container. The image is "
        "only read. Exit status: 0 all checks pass; 1 a check failed; 2 unreadable input.",
    )
    p.add_argument("template", help="template disk image (raw, VHD, VHDX or qcow2)")
    p.add_argument("--vsc", metavar="FILE", help="check against this catalog instead of the one in the ESP")
    p.add_argument(
        "--trust",
        metavar="CERT",
        action="append",
        help="certificate(s) (PEM bundle or DER) the UKI and catalog signers must be or chain to; repeatable",
    )
    p.add_argument("--jobs", type=int, metavar="N", help="hashing threads (default: one per CPU)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_verify)


def _marks() -> tuple[str, str]:
    """✓/✗ where the terminal can show them, else plain words (a C-locale pipe must not crash us)."""
    try:
        "✓✗".encode(sys.stdout.encoding or "ascii")
        return "✓", "✗"
    except (UnicodeEncodeError, LookupError):
        reconfigure = getattr(sys.stdout, "reconfigure", None)
        if reconfigure is not None:  # and a template name in a check's detail must not crash us either
            reconfigure(errors="backslashreplace")
        return "ok  ", "FAIL"


def cmd_verify(args: argparse.Namespace) -> int:
    from app.signing.keys import load_certificates
    from app.template_verify import verify_template

    trusted = [c for path in args.trust for c in load_certificates(path)] if args.trust else None
    progress = TerminalProgress()
    try:
        report = verify_template(
            args.template, vsc=args.vsc, trusted=trusted, progress=progress, jobs=args.jobs
        )
    finally:
        progress.close()
    if args.json:
        print(
            json.dumps(
                {**report.to_dict(), "trust_checked": trusted is not None}, indent=2, ensure_ascii=False
            )
        )
    else:
        good, bad = _marks()
        for check in report.checks:
            print(f"{good if check.ok else bad} {check.name}: {check.detail}")
        if report.ok:
            print(f"OK: all {len(report.checks)} checks passed")
    if not report.ok:
        failed = report.failed
        print(
            f"shieldwright: error: verification FAILED: {len(failed)} of {len(report.checks)} checks; "
            f"first: {failed[0].name}: {failed[0].detail}",
            file=sys.stderr,
        )
        return 1
    return 0
