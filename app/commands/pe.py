"""``shieldwright pe``: Authenticode digest, sign, verify and list for EFI images (UKIs, kernels, shim).

``sign`` never modifies its input; signer names from the file are printed escaped. ``verify``'s exit
codes are in its ``--help``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.commands._overwrite import add_force_option, check_output, write_new
from app.commands._trust import EXIT_CODE_HELP, add_trust_options, signer_not_checked
from app.commands._util import add_passphrase_options, load_signer_from_args, same_file
from app.errors import ShieldwrightError
from app.untrusted import printable

if TYPE_CHECKING:
    from app.signing.authenticode import SignMode


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pe = sub.add_parser("pe", help="Authenticode for PE/EFI images: digest, sign, verify, list")
    pe_sub = pe.add_subparsers(dest="pe_command", metavar="ACTION", required=True)

    p = pe_sub.add_parser("digest", help="print the Authenticode SHA-256 digest (hex)")
    p.add_argument("file", help="PE/EFI image")
    p.set_defaults(func=cmd_digest)

    p = pe_sub.add_parser("sign", help="write a signed copy of an image (the input is never modified)")
    p.add_argument("file", help="PE/EFI image to sign")
    p.add_argument(
        "--cert", required=True, metavar="C", help="signing certificate (PEM/DER, + chain) or PKCS#12"
    )
    p.add_argument("--key", metavar="K", help="private key (PEM/DER); omit for PKCS#12 or a combined PEM")
    add_passphrase_options(p, what="the private key or PKCS#12 file")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true", help="keep existing signatures and add ours")
    mode.add_argument("--replace", action="store_true", help="drop existing signatures")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="signed image (written atomically)")
    add_force_option(p)
    p.set_defaults(func=cmd_sign)

    p = pe_sub.add_parser(
        "verify",
        help="check every signature; exit 0 when at least one verifies and its signer is trusted",
        description="Check every Authenticode signature: the image digest, the CMS signature and, with "
        "--cert, the signer's chain. Without --cert the signer is NOT checked. Exit status: 0 a signature "
        f"verifies (and is trusted); 1 none does; 2 unreadable input; {EXIT_CODE_HELP}.",
    )
    p.add_argument("file", help="PE/EFI image")
    add_trust_options(p, "--cert", "--trust", what="the image")
    p.set_defaults(func=cmd_verify)

    p = pe_sub.add_parser("list", help="list the embedded signatures")
    p.add_argument("file", help="PE/EFI image")
    p.set_defaults(func=cmd_list)


def _read_image(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ShieldwrightError(f"cannot read {path}: {exc.strerror or exc}", "check the path") from None


def cmd_digest(args: argparse.Namespace) -> int:
    # lazy: app.signing loads cryptography; the parser (and `--help`) must not
    from app.signing.authenticode import authenticode_digest

    print(authenticode_digest(_read_image(args.file)).hex())
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    # lazy: app.signing loads cryptography
    from app.signing.authenticode import sign_pe

    src, out = Path(args.file), Path(args.output)
    if same_file(src, out):
        raise ShieldwrightError(
            "the output is the input file", "give a different -o path; the input is never modified"
        )
    check_output(out, args.force)
    data = _read_image(args.file)
    signer = load_signer_from_args(args)
    mode: SignMode = "append" if args.append else "replace" if args.replace else "refuse"
    signed = sign_pe(data, signer, mode=mode, name=args.file)
    write_new(out, signed, args.force)
    print(out)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    # lazy: app.signing loads cryptography
    from app.signing.authenticode import verify_pe
    from app.signing.keys import load_certificates

    trusted = load_certificates(args.trust) if args.trust else None
    results = verify_pe(_read_image(args.file), trusted)
    if not results:
        print(f"shieldwright: error: {args.file} is not signed", file=sys.stderr)
        return 1
    for r in results:
        who = printable(r.info.subject or "(unknown signer)")
        status = "OK" if r.valid else "FAILED"
        detail = "" if r.valid else f": {printable(r.reason)}"
        print(f"signature {r.info.index}: {status:<6} {who}{detail}")
    if any(r.valid for r in results):
        if trusted is None:
            print("NOT CHECKED: no --cert given, so no signer was checked against a trusted certificate")
            if not args.no_trust_check:
                raise signer_not_checked("--cert")
        return 0
    against = f" against {args.trust}" if args.trust else ""
    print(f"shieldwright: error: no signature of {args.file} verifies{against}", file=sys.stderr)
    return 1


def cmd_list(args: argparse.Namespace) -> int:
    # lazy: app.signing loads cryptography
    from app.signing.authenticode import list_signatures

    sigs = list_signatures(_read_image(args.file))
    if not sigs:
        print("no signatures")
        return 0
    for s in sigs:
        if s.error:
            print(f"{s.index}  unreadable: {printable(s.error)}")
            continue
        match = "digest matches" if s.digest_matches else "DIGEST MISMATCH"
        when = s.signing_time.isoformat() if s.signing_time else "-"
        serial = f"{s.serial:x}" if s.serial is not None else "-"
        print(f"{s.index}  {s.digest_algorithm}  {match}  signed {when}")
        print(f"   subject {printable(s.subject or '(certificate not embedded)')}")
        print(f"   issuer  {printable(s.issuer or '-')}  serial {serial}")
    return 0
