"""``shieldwright shield``: shielding data — guardians, ``.shd`` files, applicability, opening.

Secrets never come from argv: the provisioning passphrase from ``--passphrase-file``/``--passphrase-env``
or a prompt; the admin password only as a crypt(3) *hash* from a file. Exit status: 0 done (``test``:
applicable); 1 ``test``: not applicable; 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.commands._overwrite import add_force_option, check_output, write_new
from app.commands._util import add_passphrase_options, read_passphrase_buffer
from app.untrusted import printable

RULE_NAMES = ("equals", "greater-than", "greater-or-equal")  # app.shielding.qualifiers.RULES (a test checks)
POLICY_NAMES = ("shielded", "encryption-supported")  # app.shielding.shd.POLICIES (a test checks)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    shield = sub.add_parser("shield", help="shielding data: guardians, create, show, test, open")
    actions = shield.add_subparsers(dest="shield_command", metavar="ACTION", required=True)

    guardian = actions.add_parser("guardian", help="local guardians: the owner's keys, fabrics' certificates")
    g = guardian.add_subparsers(dest="guardian_command", metavar="ACTION", required=True)
    p = g.add_parser("new", help="generate an owner guardian (signing + RSA 3072 encryption key pairs)")
    p.add_argument("name")
    p.add_argument("--signing-key", choices=("p256", "p384", "rsa3072"), default="p256",
                   help="signing key type (default p256); the encryption key is RSA 3072")  # fmt: skip
    p.set_defaults(func=cmd_guardian_new)
    p = g.add_parser("import", help="import a hosting fabric's guardian (its encryption certificate)")
    p.add_argument("cert", help="the guardian's encryption certificate (PEM or DER, RSA)")
    p.add_argument("--name", required=True)
    p.add_argument("--signing-cert", help="the guardian's signing certificate, if it has one")
    p.set_defaults(func=cmd_guardian_import)
    p = g.add_parser("list", help="list local guardians")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_guardian_list)
    p = g.add_parser("remove", help="remove a local guardian (an owner's private keys need --yes)")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="really delete an owner guardian's private keys")
    p.set_defaults(func=cmd_guardian_remove)
    p = g.add_parser("export", help="print a guardian's certificates (PEM, public data only)")
    p.add_argument("name")
    p.set_defaults(func=cmd_guardian_export)

    p = actions.add_parser("create", help="create shielding data for templates (a .shd file)")
    p.add_argument("--owner", required=True, help="the owner guardian that signs the data")
    p.add_argument("--guardian", action="append", default=[], metavar="NAME",
                   help="a fabric guardian that may open the data; repeatable")  # fmt: skip
    p.add_argument("--qualifier", action="append", required=True, metavar="VSC_OR_TEMPLATE[:RULE]",
                   help=f"a template the data is for: its .vsc or the template; RULE {'|'.join(RULE_NAMES)} "
                   "(default equals); repeatable")  # fmt: skip
    p.add_argument("--policy", choices=POLICY_NAMES, default="shielded")
    add_passphrase_options(p, "passphrase", "the template's provisioning keyslot (default: prompt)")
    p.add_argument("--hostname")
    p.add_argument("--ssh-key", action="append", default=[], metavar="FILE",
                   help="an SSH public key file (authorized_keys lines); repeatable")  # fmt: skip
    p.add_argument("--password-hash-file", metavar="FILE", help="the admin password's crypt(3) hash")
    p.add_argument("--user-data", metavar="FILE", help="cloud-init user-data")
    p.add_argument("--file", action="append", default=[], metavar="SRC:DEST[:MODE]",
                   help="a file for the VM (mode octal, default 0644); repeatable")  # fmt: skip
    p.add_argument("-o", "--output", required=True, metavar="DATA.shd")
    add_force_option(p, "DATA.shd")
    p.set_defaults(func=cmd_create)

    p = actions.add_parser("show", help="show a .shd's clear header and the owner signature's status")
    p.add_argument("data", metavar="DATA.shd")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = actions.add_parser("test", help="is the shielding data applicable to a template? (exit 0 yes, 1 no)")
    p.add_argument("data", metavar="DATA.shd")
    p.add_argument("template", metavar="VSC_OR_TEMPLATE")
    p.set_defaults(func=cmd_test)

    p = actions.add_parser(
        "open", help="decrypt the payload with a guardian's or the owner's key (0600 file)"
    )
    p.add_argument("data", metavar="DATA.shd")
    p.add_argument("--key", required=True, help="the recipient's private key (PEM/DER)")
    p.add_argument("--cert", required=True, help="the recipient's certificate")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="new file for the payload (never replaced)"
    )
    p.set_defaults(func=cmd_open)


def cmd_guardian_new(args: argparse.Namespace) -> int:
    from app.shielding.guardians import new_owner  # lazy: keeps --help light

    g = new_owner(args.name, signing=args.signing_key)
    print(g.directory)
    print(f"owner guardian {g.name}: signing {g.signing_sha256}, encryption {g.encryption_sha256}")
    return 0


def cmd_guardian_import(args: argparse.Namespace) -> int:
    from app.shielding.guardians import import_guardian  # lazy

    g = import_guardian(
        args.name, Path(args.cert), signing_cert=Path(args.signing_cert) if args.signing_cert else None
    )
    print(f"guardian {g.name}: {printable(g.subject)}, encryption {g.encryption_sha256}")
    return 0


def cmd_guardian_list(args: argparse.Namespace) -> int:
    from app.shielding.guardians import list_guardians  # lazy

    found = list_guardians()
    if args.json:
        json.dump([g.to_dict() for g in found], sys.stdout, indent=2)
        print()
        return 0
    for g in found:
        print(f"{g.name:<24} {g.kind:<9} {printable(g.subject)}  {g.encryption_sha256[:16]}…")
    return 0


def cmd_guardian_remove(args: argparse.Namespace) -> int:
    from app.errors import ShieldwrightError  # lazy
    from app.shielding.guardians import load_guardian, remove_guardian

    if load_guardian(args.name).kind == "owner" and not args.yes:
        raise ShieldwrightError(
            f"{args.name!r} is an owner guardian: removing it deletes its private keys",
            "the owner then cannot open the data it made; give --yes if that is what you want",
        )
    removed = remove_guardian(args.name)
    print(f"removed {removed.kind} guardian {removed.name}")
    return 0


def cmd_guardian_export(args: argparse.Namespace) -> int:
    from app.shielding.guardians import export_guardian  # lazy

    sys.stdout.write(export_guardian(args.name).decode())
    return 0


def _qualifier(text: str):  # type: ignore[no-untyped-def]
    from app.shielding.qualifiers import qualifier_for  # lazy

    path, _, rule = text.rpartition(":") if text.rsplit(":", 1)[-1] in RULE_NAMES else (text, "", "equals")
    return qualifier_for(path, rule or "equals")


def cmd_create(args: argparse.Namespace) -> int:
    from app.errors import ShieldwrightError
    from app.secrets import read_secret_file, wipe
    from app.shielding.guardians import load_guardian
    from app.shielding.payload import Payload, PayloadFile, read_payload_file, read_ssh_keys
    from app.shielding.shd import create_shielding_data

    out = check_output(args.output, args.force)
    owner = load_guardian(args.owner)
    guardians = [load_guardian(name) for name in args.guardian]
    qualifiers = [_qualifier(text) for text in args.qualifier]
    files = []
    for spec in args.file:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise ShieldwrightError(f"--file {spec!r} is not SRC:DEST[:MODE]", "e.g. motd.txt:/etc/motd:0644")
        try:
            mode = int(parts[2], 8) if len(parts) == 3 else 0o644
        except ValueError:
            raise ShieldwrightError(
                f"--file {spec!r}: {parts[2]!r} is not an octal mode", "e.g. 0644"
            ) from None
        files.append(PayloadFile(parts[1], mode, read_payload_file(parts[0], "--file")))
    passphrase = read_passphrase_buffer(args, "passphrase", prompt="The template's provisioning passphrase: ")
    if passphrase is None:
        raise ShieldwrightError("no provisioning passphrase", "give --passphrase-file or --passphrase-env")
    hash_buf = (
        read_secret_file(args.password_hash_file, where=" (--password-hash-file)")
        if args.password_hash_file
        else None
    )
    try:
        payload = Payload(
            passphrase,
            hostname=args.hostname,
            admin_password_hash=_password_hash(hash_buf, args.password_hash_file),
            ssh_authorized_keys=[key for path in args.ssh_key for key in read_ssh_keys(path)],
            user_data=read_payload_file(args.user_data, "--user-data") if args.user_data else None,
            files=files,
        )
        data = create_shielding_data(owner, guardians, qualifiers, args.policy, payload)
    finally:
        wipe(passphrase)
        wipe(hash_buf)
    write_new(out, data, args.force)
    print(out)
    print(f"for {len(qualifiers)} template(s), opened by {', '.join([*args.guardian, args.owner])}")
    return 0


def _password_hash(buf: bytearray | None, path: str | None) -> str | None:
    """The hash read from ``--password-hash-file`` as text; bytes that are not UTF-8 are a one-line error
    (decoded outside the ``except`` so no exception keeps a copy of the bytes; the caller wipes ``buf``)."""
    from app.shielding.payload import PayloadError  # lazy

    if buf is None:
        return None
    text: str | None
    try:
        text = buf.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None:
        raise PayloadError(
            f"--password-hash-file {printable(str(path))!r} is not UTF-8 text",
            "give the crypt(3) hash, e.g. from `openssl passwd -6`, never the password",
        )
    return text.strip()


def cmd_show(args: argparse.Namespace) -> int:
    from app.shielding.shd import load_shielding_data  # lazy

    sd = load_shielding_data(args.data)
    signer = sd.signer.subject.rfc4514_string()
    if args.json:
        json.dump({"header": sd.header, "signature": {"valid": True, "signer": signer}}, sys.stdout, indent=2)
        print()
        return 0
    h = sd.header
    owner = h["owner"]
    assert isinstance(owner, dict)
    print(f"Signature:  valid, by the owner {printable(signer)}")
    print(f"Created:    {printable(str(h['created']))}")
    print(f"Policy:     {h['policy']}")
    print(f"Owner:      {printable(str(owner['name']))} (signing {owner['signing_sha256']})")
    for g in h["guardians"]:  # type: ignore[attr-defined]
        print(
            f"Guardian:   {printable(str(g['name']))}: {printable(str(g['subject']))} ({g['sha256'][:16]}…)"
        )
    for q in sd.qualifiers:
        print(f"Qualifier:  {printable(q.describe())}")
    print(f"Payload:    {', '.join(printable(str(i)) for i in h['payload_items'])}")  # type: ignore[attr-defined]
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from app.shielding.qualifiers import applicability, load_signed_catalog  # lazy
    from app.shielding.shd import load_shielding_data

    sd = load_shielding_data(args.data)
    catalog = load_signed_catalog(args.template)
    ok, reasons = applicability(sd.qualifiers, catalog)
    print("applicable" if ok else "NOT applicable")
    for why in reasons:
        print(f"  {printable(why)}")
    return 0 if ok else 1


def cmd_open(args: argparse.Namespace) -> int:
    from app.shielding.shd import load_shielding_data  # lazy
    from app.signing.keys import load_certificates, load_private_key
    from app.signing.output import write_output

    out = check_output(args.output, False)
    sd = load_shielding_data(args.data)
    payload = sd.open(load_certificates(args.cert)[0], load_private_key(args.key))
    data = payload.to_json()
    try:
        write_output(out, data, private=True)  # 0600 from creation, never over an existing file
    finally:
        payload.provisioning_passphrase[:] = bytes(len(payload.provisioning_passphrase))
    print(out)
    return 0
