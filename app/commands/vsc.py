"""``shieldwright vsc``: create, verify, show and extract Volume Signature Catalogs (``.vsc``).

A catalog is written atomically once complete and signed, so a cancel leaves no file. Text from a
catalog is printed escaped; ``verify``'s exit codes are in its ``--help``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.commands._overwrite import add_force_option, check_output, write_new
from app.commands._trust import EXIT_CODE_HELP, add_trust_options, signer_not_checked
from app.commands._util import (
    TerminalProgress,
    add_passphrase_options,
    load_signer_from_args,
    same_file,
)
from app.errors import ShieldwrightError
from app.untrusted import printable

if TYPE_CHECKING:
    from app.catalog.format import SignedCatalog
    from app.catalog.verify import VerifyResult

_SIZE = re.compile(r"(\d+)\s*(|k|kib|m|mib)", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2}


def _block_size(text: str) -> int:
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in bytes (e.g. 1048576 or 1M)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vsc = sub.add_parser("vsc", help="Volume Signature Catalogs: create, verify, show, extract")
    vsub = vsc.add_subparsers(dest="vsc_command", metavar="ACTION", required=True)

    p = vsub.add_parser("create", help="hash partitions of an image and write a signed catalog")
    p.add_argument("image", help="disk image (any supported format; never modified)")
    p.add_argument(
        "--partition", type=int, action="append", required=True, metavar="N",
        help="GPT number of a partition to protect (repeat for more)",
    )  # fmt: skip
    p.add_argument("--name", required=True, help="template name")
    p.add_argument("--version", required=True, metavar="X.Y.Z.W", help="template version, each part < 65536")
    p.add_argument(
        "--cert", required=True, metavar="C", help="signing certificate (PEM/DER, + chain) or PKCS#12"
    )
    p.add_argument("--key", metavar="K", help="private key (PEM/DER); omit for PKCS#12 or a combined PEM")
    add_passphrase_options(p, what="the private key or PKCS#12 file")
    p.add_argument(
        "--block-size", type=_block_size, default=1024 * 1024, metavar="BYTES",
        help="hash block size, a power of two from 4K to 64M (default 1M)",
    )  # fmt: skip
    p.add_argument("--jobs", type=int, metavar="N", help="hashing threads (default: one per CPU)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="catalog file (written atomically)")
    add_force_option(p)
    p.set_defaults(func=cmd_create)

    p = vsub.add_parser(
        "verify",
        help="check an image against a catalog; exit 0 only if every block matches",
        description="Check the catalog's signature and its signer (--trust), its header against the "
        "image's GPT, and every block. Without --trust the signer is NOT checked. Exit status: 0 all match; "
        "1 a block differs, the signature is bad or untrusted, or the header does not match the disk; "
        f"2 unreadable input; {EXIT_CODE_HELP}.",
    )
    p.add_argument("image", help="disk image (any supported format)")
    p.add_argument("vsc", help="catalog file (.vsc)")
    add_trust_options(p, "--trust", what="the catalog")
    p.add_argument("--jobs", type=int, metavar="N", help="hashing threads (default: one per CPU)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_verify)

    p = vsub.add_parser("show", help="print a catalog's header and signer (its signature is checked)")
    p.add_argument("vsc", help="catalog file (.vsc)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_show)

    p = vsub.add_parser(
        "extract",
        help="copy the catalog out of a template image (its VHDX metadata, else its ESP)",
        description="Copy a template's signed catalog out of the image: from the VHDX metadata when the "
        "image is a VHDX that carries it (a damaged copy there is an error, not skipped), else from "
        "\\EFI\\Shieldwright\\template.vsc in its ESP. The catalog's signature is checked, not its signer.",
    )
    p.add_argument("image", help="template disk image")
    p.add_argument(
        "--from", dest="source", choices=("auto", "vhdx", "esp"), default="auto",
        help="where to read it: auto (VHDX metadata, else the ESP; the default), vhdx or esp only",
    )  # fmt: skip
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="catalog file (written atomically)")
    add_force_option(p)
    p.set_defaults(func=cmd_extract)


# -- helpers ------------------------------------------------------------------------------------------------


def _read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise ShieldwrightError(f"{path} is a directory, not {what}", "give a file") from None
    except OSError as exc:
        raise ShieldwrightError(f"cannot read {path}: {exc.strerror or exc}", "check the path") from None


def _signer_dict(signed: SignedCatalog) -> dict[str, object]:
    cert = signed.signer_certificate
    return {
        "subject": signed.signer_subject,
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "sha256_fingerprint": signed.signer_fingerprint,
    }


def _summary(signed: SignedCatalog) -> dict[str, object]:
    """``vsc show --json``: the header (without block digests) plus the signer."""
    return {
        **signed.catalog.header(),
        "signer": _signer_dict(signed),
        "signing_time": signed.signing_time.isoformat() if signed.signing_time else None,
    }


# -- handlers -----------------------------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    # lazy: app.catalog loads cryptography; the parser (and `--help`) must not
    from app.catalog.create import create_catalog
    from app.catalog.format import check_block_size, check_template_name, parse_version, read_catalog

    image, out = Path(args.image), Path(args.output)
    if same_file(image, out):
        raise ShieldwrightError("the output is the input image", "give a different -o path")
    check_output(out, args.force)  # before hashing: a refusal should not cost a pass over the disk
    check_template_name(args.name)
    parse_version(args.version)
    check_block_size(args.block_size)
    # before hashing: a wrong passphrase should not cost a pass over the disk
    signer = load_signer_from_args(args)
    progress = TerminalProgress()
    try:
        der = create_catalog(
            image, args.partition, name=args.name, version=args.version, signer=signer,
            block_size=args.block_size, jobs=args.jobs, progress=progress,
        )  # fmt: skip
    finally:
        progress.close()
    write_new(out, der, args.force)
    cat = read_catalog(der).catalog
    print(out)
    for p in cat.partitions:
        print(f"partition {p.number}: {p.block_count} blocks, digest {p.digest}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    # lazy: app.catalog loads cryptography
    from app.catalog.verify import verify_catalog
    from app.disk.image import open_image
    from app.signing.keys import load_certificates

    data = _read_file(args.vsc, "a catalog")
    trusted = load_certificates(args.trust) if args.trust else None
    progress = TerminalProgress()
    try:
        with open_image(args.image) as image:
            result = verify_catalog(image, data, trusted=trusted, progress=progress, jobs=args.jobs)
    finally:
        progress.close()
    trust_checked = trusted is not None
    if args.json:
        print(json.dumps(_verify_json(result, trust_checked, args.no_trust_check), indent=2))
    else:
        _print_verify(result, trust_checked, args.no_trust_check)
    if not result.ok:
        if result.mismatches:
            m = result.mismatches[0]
            what = (
                f"{result.mismatch_count} block(s) differ from the catalog; first: partition "
                f"{m.partition_number} at byte offset {m.byte_offset}"
            )
        else:
            what = result.problems[0]
        print(f"shieldwright: error: verification FAILED: {printable(what)}", file=sys.stderr)
        return 1
    if not trust_checked and not args.no_trust_check:
        raise signer_not_checked("--trust")
    return 0


def _verify_json(result: VerifyResult, trust_checked: bool, any_signer: bool) -> dict[str, object]:
    """``ok`` is the exit status's verdict: without a trust anchor only ``--no-trust-check`` makes it true."""
    signed = result.signed
    return {
        "ok": result.ok and (trust_checked or any_signer),
        "trust_checked": trust_checked,
        "catalog": _summary(signed) if signed else None,
        "blocks_checked": result.blocks_checked,
        "mismatch_count": result.mismatch_count,
        "mismatches": [
            {
                "partition": m.partition_number,
                "block_index": m.block_index,
                "byte_offset": m.byte_offset,
                "disk_offset": m.disk_offset,
            }
            for m in result.mismatches
        ],  # fmt: skip
        "problems": result.problems,
    }


def _print_verify(result: VerifyResult, trust_checked: bool, any_signer: bool) -> None:
    signed = result.signed
    if signed is not None:
        cat = signed.catalog
        name, created = printable(cat.template_name), printable(cat.created)
        print(f"catalog: {name} {cat.template_version}, created {created}")
        unchecked = "" if trust_checked else " (NOT checked: no --trust)"
        print(f"signer:  {printable(signed.signer_subject)}{unchecked}")
    for problem in result.problems:
        print(f"problem: {printable(problem)}")
    for m in result.mismatches:
        print(
            f"mismatch: partition {m.partition_number} block {m.block_index} at byte offset {m.byte_offset} "
            f"(disk offset {m.disk_offset})"
        )
    if result.mismatch_count > len(result.mismatches):
        print(f"... and {result.mismatch_count - len(result.mismatches)} more differing blocks")
    if result.ok and trust_checked:
        print(f"OK: all {result.blocks_checked} blocks match")
    elif result.ok and any_signer:
        print(f"OK: all {result.blocks_checked} blocks match; the signer was NOT checked (--no-trust-check)")
    elif result.ok:
        print(f"all {result.blocks_checked} blocks match, but the signer was NOT checked")


def cmd_show(args: argparse.Namespace) -> int:
    # lazy: app.catalog loads cryptography
    from app.catalog.format import read_catalog

    signed = read_catalog(_read_file(args.vsc, "a catalog"))
    if args.json:
        print(json.dumps(_summary(signed), indent=2))  # ASCII: C1 controls and bidi overrides escaped too
        return 0
    cat = signed.catalog
    print(f"template:   {printable(cat.template_name)}")
    print(f"version:    {cat.template_version}")
    print(f"created:    {printable(cat.created)}")
    print(f"signer:     {printable(signed.signer_subject)} (signature valid; trust not checked)")
    print(f"  sha256:   {signed.signer_fingerprint}")
    print(f"disk GUID:  {cat.disk_guid}")
    print(f"blocks:     {cat.block_size} bytes, {cat.hash}")
    for p in cat.partitions:
        print(
            f"partition {p.number}: LBA {p.first_lba}-{p.last_lba} ({p.size_bytes} bytes), "
            f"{p.block_count} blocks, GUID {p.partition_guid}, type {p.type_guid}"
        )
        print(f"  digest {p.digest}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    # lazy: app.catalog loads cryptography
    from app.catalog.extract import extract_catalog

    image, out = Path(args.image), Path(args.output)
    if same_file(image, out):
        raise ShieldwrightError("the output is the input image", "give a different -o path")
    check_output(out, args.force)
    write_new(out, extract_catalog(image, source=args.source), args.force)
    print(out)
    return 0
