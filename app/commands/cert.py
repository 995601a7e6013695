"""``shieldwright cert``: make, inspect and export signing certificates.

``cert new`` makes a key and a self-signed code-signing certificate, ``cert show`` inspects one (exit 1
on an error finding), ``cert esl`` exports an EFI signature list for a VM's db. Passphrases never come
from argv, where ``ps`` shows them.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from app.commands._util import add_passphrase_options, read_passphrase
from app.errors import OutputExistsError, ShieldwrightError
from app.untrusted import printable

if TYPE_CHECKING:
    from cryptography import x509

#: app.signing.keys.KEY_TYPES, restated: importing it loads cryptography into every CLI start (a test
#: checks that the two agree).
KEY_TYPE_CHOICES = ("rsa2048", "rsa3072", "rsa4096", "p256", "p384")

NO_ARGV_PASSPHRASES = (
    "Passphrases are never taken from the command line (other users can read it); use "
    "--key-passphrase-file, --key-passphrase-env, or type it at the prompt."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cert = sub.add_parser(
        "cert",
        help="make, inspect and export signing certificates",
        description="Make, inspect and export signing certificates. " + NO_ARGV_PASSPHRASES,
    )
    cert.set_defaults(func=lambda args: _usage(cert))
    csub = cert.add_subparsers(dest="cert_command", metavar="ACTION")

    p = csub.add_parser(
        "new",
        help="generate a key and a self-signed code-signing certificate",
        description="Generate a private key and a self-signed code-signing certificate (KeyUsage "
        "digitalSignature, EKU codeSigning). Without a passphrase the key is written unencrypted. "
        + NO_ARGV_PASSPHRASES,
    )
    p.add_argument(
        "--subject",
        required=True,
        metavar="TEXT",
        help='"CN=Example db,O=Example Corp", or just a name (used as the CN)',
    )
    p.add_argument(
        "--key-type",
        choices=KEY_TYPE_CHOICES,
        default="rsa2048",
        help="key algorithm (default rsa2048: the only type every UEFI firmware accepts for db "
        "signatures; larger RSA and ECDSA keys are fine for catalog signing)",
    )
    p.add_argument("--days", type=int, default=3650, metavar="N", help="validity in days (default 3650)")
    p.add_argument("--out-cert", required=True, metavar="FILE", help="write the certificate (PEM) here")
    p.add_argument(
        "--out-key", required=True, metavar="FILE", help="write the private key (PEM, mode 0600) here"
    )
    p.add_argument("--out-der", metavar="FILE", help="also write the certificate as DER (for firmware menus)")
    p.add_argument(
        "--out-p12", metavar="FILE", help="also write key + certificate as PKCS#12 (needs a passphrase)"
    )
    add_passphrase_options(p, what="the new private key (and PKCS#12)")
    p.set_defaults(func=cmd_new)

    p = csub.add_parser(
        "show",
        help="show a certificate's details and findings (exit 1 on errors)",
        description="Show a certificate (PEM, DER or PKCS#12) and what is wrong with it for signing. "
        "Exits 1 when a finding is an error. " + NO_ARGV_PASSPHRASES,
    )
    p.add_argument("file", help="certificate (PEM/DER) or PKCS#12 file")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument(
        "--purpose",
        choices=("uefi", "catalog"),
        help="also check fitness for UEFI image signing or catalog signing",
    )
    add_passphrase_options(p, what="a PKCS#12 file")
    p.set_defaults(func=cmd_show)

    p = csub.add_parser(
        "esl",
        help="export certificates as an EFI signature list for a VM's db",
        description="Write an EFI signature list (EFI_CERT_X509_GUID, one list per certificate) for "
        "enrolling the certificate(s) in a VM's Secure Boot db (e.g. with virt-fw-vars or efi-updatevar).",
    )
    p.add_argument("cert", help="certificate file (PEM, possibly several, or DER) or PKCS#12")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="where to write the .esl (never replaced)"
    )
    p.add_argument(
        "--owner",
        metavar="GUID",
        help="SignatureOwner GUID (default: Shieldwright's fixed owner GUID "
        "24c247ac-6986-46ce-b16a-61c338496dd3, so output is reproducible and recognisable)",
    )
    add_passphrase_options(p, what="a PKCS#12 file")
    p.set_defaults(func=cmd_esl)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _note(text: str) -> None:
    print(f"shieldwright: note: {text}", file=sys.stderr)


def cmd_new(args: argparse.Namespace) -> int:
    # lazy: app.signing loads cryptography; the parser (and `--help`) must not
    from app.signing.certificates import describe_certificate
    from app.signing.keys import (
        generate_key,
        generate_self_signed,
        parse_subject,
        write_certificate,
        write_pkcs12,
        write_private_key,
    )

    common_name, organization = parse_subject(args.subject)
    if args.days < 1:
        raise ShieldwrightError(
            f"--days must be at least 1, not {args.days}", "give a positive number of days"
        )
    outputs = [Path(o) for o in (args.out_cert, args.out_key, args.out_der, args.out_p12) if o]
    if len({o.resolve() for o in outputs}) != len(outputs):
        raise ShieldwrightError("two outputs name the same file", "give each output its own path")
    for out in outputs:  # check all before writing any, so a refusal leaves nothing half-done
        if out.exists() or out.is_symlink():
            raise OutputExistsError(f"{out} already exists", "remove it or choose another output path")
    passphrase = (
        read_passphrase(args, prompt="Passphrase for the new key (empty: none): ", confirm=True) or None
    )
    if args.out_p12 and passphrase is None:
        raise ShieldwrightError(
            "--out-p12 needs a passphrase", "give --key-passphrase-file or --key-passphrase-env"
        )

    key = generate_key(args.key_type)
    cert = generate_self_signed(key, common_name=common_name, organization=organization, days=args.days)
    written: list[Path] = []
    try:
        written.append(write_certificate(cert, args.out_cert))
        written.append(write_private_key(key, args.out_key, passphrase))
        if args.out_der:
            written.append(write_certificate(cert, args.out_der, der=True))
        if args.out_p12:
            assert passphrase is not None
            written.append(write_pkcs12(key, cert, args.out_p12, passphrase, friendly_name=common_name))
    except BaseException:
        for path in written:  # all or nothing: a lone certificate without its key is useless
            path.unlink(missing_ok=True)
        raise
    if passphrase is None:
        _note(f"the private key {args.out_key} is NOT encrypted (no passphrase given); keep it safe")
    info = describe_certificate(cert)
    print(f"Subject:      {printable(info.subject)}")
    print(f"Key:          {args.key_type}")
    print(f"Valid until:  {info.not_after.strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"SHA-256:      {info.sha256_fingerprint}")
    for path in written:
        print(f"Wrote:        {path}")
    return 0


def _load_certificates(args: argparse.Namespace, path: str) -> list[x509.Certificate]:
    """The certificates in ``path``: a PEM bundle, a DER file, or a PKCS#12 (asking for its passphrase)."""
    # lazy: app.signing loads cryptography
    from app.signing.keys import is_pkcs12_file, load_certificates, load_pkcs12

    if is_pkcs12_file(path):
        passphrase = read_passphrase(args, prompt=f"Passphrase for {path}: ")
        _key, cert, chain = load_pkcs12(path, passphrase)
        return [cert, *chain]
    return load_certificates(path)


def cmd_show(args: argparse.Namespace) -> int:
    # lazy: app.signing loads cryptography
    from app.signing.certificates import describe_certificate

    certs = _load_certificates(args, args.file)
    info = describe_certificate(certs[0], purpose=args.purpose)
    others = [describe_certificate(c) for c in certs[1:]]
    if args.json:
        data = info.to_dict()
        if others:
            data["chain"] = [
                {"subject": o.subject, "sha256_fingerprint": o.sha256_fingerprint} for o in others
            ]
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        when = "%Y-%m-%d %H:%M:%S UTC"
        key = f"{info.key_type} {info.key_size or '?'}" + (f" ({info.curve})" if info.curve else "")
        print(f"Subject:      {printable(info.subject)}")  # a certificate's names are the input's text
        print(f"Issuer:       {printable(info.issuer)}")
        print(f"Serial:       {info.serial}")
        print(f"Not before:   {info.not_before.strftime(when)}")
        print(f"Not after:    {info.not_after.strftime(when)}")
        print(f"Key:          {key}")
        print(f"Key usage:    {', '.join(info.key_usage) or '-'}")
        print(f"Ext. usage:   {', '.join(info.extended_key_usage) or '-'}")
        print(f"SHA-256:      {info.sha256_fingerprint}")
        print(f"SHA-1:        {info.sha1_fingerprint}")
        for other in others:
            print(f"Chain:        {printable(other.subject)}  (SHA-256 {other.sha256_fingerprint})")
        if info.findings:
            print()
            for f in info.findings:
                print(f"{f.severity.upper():<7}  {f.message}")
    return 1 if info.has_errors else 0


def cmd_esl(args: argparse.Namespace) -> int:
    # lazy: app.signing loads cryptography
    from app.signing.esl import SHIELDWRIGHT_OWNER_GUID, build_esl
    from app.signing.output import write_output

    owner = SHIELDWRIGHT_OWNER_GUID
    if args.owner:
        try:
            owner = uuid.UUID(args.owner)
        except ValueError:
            raise ShieldwrightError(
                f"--owner {args.owner!r} is not a GUID", "use the form 01234567-89ab-cdef-0123-456789abcdef"
            ) from None
    certs = _load_certificates(args, args.cert)
    write_output(args.output, build_esl(certs, owner))
    print(f"Wrote {args.output}: {len(certs)} certificate(s), owner {owner}")
    return 0
