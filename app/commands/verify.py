"""``shieldwright verify TEMPLATE``: check an exported template end to end before trusting it.

One line per check (:mod:`app.template.verify`), text from the image printed escaped; exit codes in the
command's ``--help``.
"""

from __future__ import annotations

import argparse
import json
import sys

from app.commands._trust import EXIT_CODE_HELP, add_trust_options, signer_not_checked
from app.commands._util import TerminalProgress
from app.untrusted import printable


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify",
        help="check a built template: GPT, ESP, UKI signatures, catalog, LUKS2 headers",
        description="Check an exported template end to end: both GPT copies, the ESP's FAT (fsck.fat -n "
        "on a copy), the Authenticode signature of every UKI in \\EFI\\Linux, the signed catalog (from the "
        "VHDX metadata, else the ESP, or --vsc) against every block, and both header copies of every LUKS2 "
        "container. The image is only read. Without --trust the signer is NOT checked. Exit status: 0 all "
        f"checks pass; 1 a check failed; 2 unreadable input; {EXIT_CODE_HELP}.",
    )
    p.add_argument("template", help="template disk image (raw, VHD, VHDX or qcow2)")
    p.add_argument("--vsc", metavar="FILE", help="check against this catalog instead of the template's own")
    add_trust_options(p, "--trust", what="the UKIs and the catalog", repeatable=True)
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
    # lazy: the verifier loads cryptography and every engine package; the parser (and `--help`) must not
    from app.signing.keys import load_certificates
    from app.template.verify import SIGNER_CHECK, verify_template

    trusted = [c for path in args.trust for c in load_certificates(path)] if args.trust else None
    progress = TerminalProgress()
    try:
        report = verify_template(
            args.template, vsc=args.vsc, trusted=trusted, progress=progress, jobs=args.jobs,
            accept_any_signer=args.no_trust_check,
        )  # fmt: skip
    finally:
        progress.close()
    if args.json:
        # ensure_ascii: a JSON string escapes C0 controls only; C1 controls and bidi overrides must not pass
        print(json.dumps({**report.to_dict(), "trust_checked": trusted is not None}, indent=2))
    else:
        good, bad = _marks()
        for check in report.checks:
            print(f"{good if check.ok else bad} {printable(check.name)}: {printable(check.detail)}")
        if report.ok:
            unchecked = "; the signer was NOT checked (--no-trust-check)" if trusted is None else ""
            print(f"OK: all {len(report.checks)} checks passed{unchecked}")
    failed = [c for c in report.failed if c.name != SIGNER_CHECK]
    if failed:
        print(
            f"shieldwright: error: verification FAILED: {len(report.failed)} of {len(report.checks)} checks; "
            f"first: {printable(failed[0].name)}: {printable(failed[0].detail)}",
            file=sys.stderr,
        )
        return 1
    if not report.ok:
        raise signer_not_checked("--trust")
    return 0
