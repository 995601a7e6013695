"""``shieldwright firmware``: OVMF variable stores for test boots — write one with our certificates
enrolled (``vars``), list one or a certificate directory (``show``).

``vars`` never modifies the installed OVMF files; names and subjects from a store are printed escaped.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from app.commands._overwrite import add_force_option
from app.errors import OutputExistsError, ShieldwrightError
from app.untrusted import printable

if TYPE_CHECKING:
    from app.measure.secureboot import SecureBootVariables
    from app.measure.varstore import VarStore

#: The stores ``vars`` starts from (app.boot.vm.VARS_TEMPLATES' keys, spelled out so ``--help`` needs no
#: engine import; a test checks they agree).
BASE_NAMES = ("microsoft", "snakeoil", "empty")
#: app.measure.siglist.SHIELDWRIGHT_OWNER_GUID, spelled out so ``--help`` needs no engine import (a test
#: checks they agree).
DEFAULT_OWNER = "d6d93ac7-5a0b-4305-a125-a8f2f7bdafd1"

VARS_DESCRIPTION = f"""\
Write an OVMF variable store (VARS .fd) for test boots: a copy of one of Debian's stores in
/usr/share/OVMF with certificates appended to db and KEK.

  --microsoft  OVMF_VARS_4M.ms.fd: Secure Boot on; PK Debian's, KEK Debian's + Microsoft KEK CA 2011,
               db Microsoft Windows Production PCA 2011 + Microsoft UEFI CA 2011 (boots a
               Microsoft-signed shim)
  --snakeoil   OVMF_VARS_4M.snakeoil.fd: Secure Boot on; PK, KEK and db Debian's snakeoil test key
               (/usr/share/ovmf/PkKek-1-snakeoil.pem)
  --empty      OVMF_VARS_4M.fd: no keys at all. Without a PK the firmware is in setup mode, so Secure
               Boot stays off whatever is added to db

Each certificate (PEM or DER; every certificate of a PEM bundle) is appended to the variable's value
as an EFI_CERT_X509 signature list of its own, as `virt-fw-vars --add-db GUID CERT` does. Its
owner GUID (--owner; default Shieldwright's, {DEFAULT_OWNER}) is part of what
firmware measures into PCR 7 when the certificate admits an image. The output is written
atomically, never over an existing file without --force.
"""

SHOW_DESCRIPTION = """\
List a variable store's variables (name, vendor GUID, attributes, size) and the certificates and
hashes of PK, KEK, db and dbx; or show the same four of a certificate directory.

A certificate directory (the "certs" firmware profile) holds, names case-sensitive:
  owner.txt    optional: one GUID, the owner of every certificate given as a certificate file
               (default d6d93ac7-5a0b-4305-a125-a8f2f7bdafd1)
  PK.EXT       the platform key, exactly one certificate (no PK: setup mode, Secure Boot off)
  KEK.EXT, db.EXT, dbx.EXT
               each one file, or a directory KEK/, db/, dbx/ of *.EXT files used in name order
  EXT is .pem .crt .cer .der (certificates, one signature list each), .esl (EFI signature lists,
  used as they are) or .auth (a signed update such as Microsoft's dbx update: the lists after its
  authentication header, whose signature is not checked). Anything else is refused.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fw = sub.add_parser("firmware", help="UEFI firmware variable stores (OVMF) for test boots")
    fw_sub = fw.add_subparsers(dest="firmware_command", metavar="ACTION", required=True)

    p = fw_sub.add_parser(
        "vars",
        help="write an OVMF variable store with certificates added to db / KEK",
        description=VARS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    base = p.add_mutually_exclusive_group(required=True)
    for name, what in zip(
        BASE_NAMES,
        ("Microsoft's keys, Secure Boot on", "Debian's snakeoil key, Secure Boot on", "no keys (setup mode)"),
        strict=True,
    ):
        base.add_argument(
            f"--{name}",
            dest="base",
            action="store_const",
            const=name,
            help=f"start from Debian's {name} store: {what}",
        )
    p.add_argument(
        "--add-db",
        action="append",
        default=[],
        metavar="CERT",
        help="append CERT (PEM/DER) to db; repeatable",
    )
    p.add_argument(
        "--add-kek",
        action="append",
        default=[],
        metavar="CERT",
        help="append CERT (PEM/DER) to KEK; repeatable",
    )
    p.add_argument(
        "--owner",
        metavar="GUID",
        default=DEFAULT_OWNER,
        help=f"owner GUID of the added certificates ({DEFAULT_OWNER})",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE.fd", help="the new store (written atomically)"
    )
    add_force_option(p, "FILE.fd")
    p.set_defaults(func=cmd_vars)

    p = fw_sub.add_parser(
        "show",
        help="list a variable store's variables and Secure Boot keys (or a certificate directory's)",
        description=SHOW_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE.fd|DIR", help="an OVMF VARS file, or a certificate directory")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_show)


def _owner(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ShieldwrightError(f"--owner {text!r} is not a GUID", f"e.g. {DEFAULT_OWNER}") from None


def cmd_vars(args: argparse.Namespace) -> int:
    # lazy: app.measure and app.signing load cryptography; the parser (and `--help`) must not
    from app.measure.teststore import write_test_store
    from app.signing.keys import load_certificates

    owner = _owner(args.owner)
    out = Path(args.output)
    add_db = [c for path in args.add_db for c in load_certificates(path)]
    add_kek = [c for path in args.add_kek for c in load_certificates(path)]
    try:
        made = write_test_store(args.base, out, add_db=add_db, add_kek=add_kek, owner=owner,
                                overwrite=args.force)  # fmt: skip
    except OutputExistsError as exc:
        raise OutputExistsError(exc.message, "give --force to replace it, or choose another path") from None
    print(out)
    for var, cert in made.added:
        print(f"added to {var}: {printable(cert.subject.rfc4514_string())} (owner {owner})")
    print(f"Secure Boot: {_secure_boot_text(made.store, made.state)}")
    return 0


def _secure_boot_text(store: VarStore | None, state: SecureBootVariables) -> str:
    """``on`` or ``off (why)``: the reasons of app.measure.varstore.secure_boot_state."""
    if state.secure_boot:
        return "on"
    if not state.pk:
        return "off (no PK: the firmware starts in setup mode)"
    return "off (SecureBootEnable is not 1)" if store is not None else "off"


def cmd_show(args: argparse.Namespace) -> int:
    # lazy: app.measure loads cryptography
    from app.measure.certdir import load_cert_dir
    from app.measure.varstore import attribute_names, read_varstore, secure_boot_state

    path = Path(args.file)
    store = None
    if path.is_dir():
        state = load_cert_dir(path)
    else:
        store = read_varstore(path)
        state = secure_boot_state(store)
    databases = {name: _database(state.value(name), name) for name in ("PK", "KEK", "db", "dbx")}
    variables = [
        {
            "name": v.name,
            "guid": str(v.vendor),
            "attributes": v.attributes,
            "attributes_text": attribute_names(v.attributes),
            "size": len(v.data),
        }
        for v in (store.variables.values() if store is not None else [])
    ]
    if args.json:
        doc: dict[str, object] = {
            "file": str(path),
            "kind": "varstore" if store is not None else "certdir",
            "secure_boot": state.secure_boot,
        }
        if store is not None:
            doc |= {"capacity": store.capacity, "used": store.used(), "variables": variables}
        doc["databases"] = databases
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if store is not None:
        used = f"{store.used()} of {store.capacity} bytes used"
        print(f"{path}: OVMF variable store, {len(variables)} variables, {used}")
        width = max([len(printable(str(v["name"]))) for v in variables] + [4])
        if variables:
            print(f"  {'NAME':<{width}}  {'GUID':<36}  {'ATTRIBUTES':<14}  {'SIZE':>6}")
        for v in variables:
            name = printable(str(v["name"]))
            print(f"  {name:<{width}}  {v['guid']:<36}  {v['attributes_text']:<14}  {v['size']:>6}")
    else:
        print(f"{path}: certificate directory")
    print(f"Secure Boot: {_secure_boot_text(store, state)}")
    for name, info in databases.items():
        _print_database(name, info)
    return 0


def _database(value: bytes, name: str) -> dict[str, object]:
    """PK/KEK/db/dbx for show: size, certificates (subject, issuer, owner, SHA-256), hash counts."""
    # lazy: cryptography
    from cryptography.hazmat.primitives import hashes

    from app.measure.events import MeasureError
    from app.measure.siglist import parse_signature_lists

    info: dict[str, object] = {"present": bool(value), "size": len(value)}
    try:
        entries = parse_signature_lists(value, name)
    except MeasureError as exc:
        info["error"] = exc.message
        return info
    certs: list[dict[str, str]] = []
    counts: dict[str, int] = {}
    for e in entries:
        cert = e.certificate
        if cert is None:
            counts[e.kind] = counts.get(e.kind, 0) + 1
            continue
        certs.append(
            {
                "subject": cert.subject.rfc4514_string(),
                "issuer": cert.issuer.rfc4514_string(),
                "owner": str(e.owner),
                "sha256": cert.fingerprint(hashes.SHA256()).hex(),
            }
        )
    info["certificates"] = certs
    info["hashes"] = counts
    return info


def _print_database(name: str, info: dict[str, object]) -> None:
    if not info["present"]:
        print(f"{name}: absent")
        return
    print(f"{name}: {info['size']} bytes")
    if "error" in info:
        print(f"  unreadable: {printable(str(info['error']))}")
        return
    certs = info["certificates"]
    hashes = info["hashes"]
    assert isinstance(certs, list) and isinstance(hashes, dict)
    for c in certs:
        print(f"  x509    {printable(c['subject'])}  (owner {c['owner']})")
    for kind, count in hashes.items():
        print(f"  {kind:<7} {count} {'entry' if count == 1 else 'entries'}")
