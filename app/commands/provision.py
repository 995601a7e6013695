"""``shieldwright provision``: a VM disk from a template, unlocked by the VM's vTPM in the approved state.

Secrets never come from argv: the provisioning passphrase comes from ``--passphrase-file``,
``--passphrase-env`` or a terminal prompt. Exit status: 0 written; 2 bad input, a template that fails
verification, a wrong passphrase or a chain that cannot be predicted (nothing is written); 3 no
``--trust`` given (and no ``--no-trust-check``); 130 cancelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from app.commands._overwrite import add_force_option, check_output
from app.commands._pcr_predict import add_firmware_options, profile_from_args
from app.commands._trust import CHAIN_RULES, add_trust_options, signer_not_checked
from app.commands._util import TerminalProgress, add_passphrase_options, read_passphrase_buffer

if TYPE_CHECKING:
    from app.shielding.payload import Payload
    from app.tpm.srk import Srk

DESCRIPTION = f"""\
Write VM_DISK: TEMPLATE with, in every LUKS2 container, a keyslot that the VM's vTPM unlocks, bound by a
systemd-tpm2 token as systemd-cryptenroll writes it (systemd >= 255 unlocks it in the initrd, with no
passphrase typed), and only while PCRs --pcrs hold the values predicted for TEMPLATE booting on the
firmware given (PCR 11 at systemd's enter-initrd phase, when the root is unlocked). The provisioning
passphrase's keyslot is removed, so the well-known passphrase stops working, unless --keep-passphrase;
a recovery key's keyslot stays.

TEMPLATE is verified first (GPT, ESP, signed UKIs, the signed catalog over every protected block, LUKS2
headers) against --trust: a modified template, or one signed by anyone else, is refused and nothing is
written. {CHAIN_RULES}

--srk is the VM's Storage Root Key public key: DIR/srk.tpm2b_public from `shieldwright vtpm new DIR`,
or `systemd-analyze srk` / `tpm2_readpublic -c 0x81000001 -f tss` run on the VM, or its PEM. Only the
LUKS2 headers differ from TEMPLATE (and, with specialization values, the ESP); VM_DISK appears only when
complete; TEMPLATE is never written.

With --shielding-data, its specialization values (host name, root's SSH keys and password hash, files,
cloud-init user-data) are delivered as systemd credentials sealed to the same vTPM under PCRs 4 and 7
(those of --pcrs), put beside the UKI in the ESP: systemd >= 256 in the VM applies them at boot (see
docs/user-guide.md for what each needs). They are sealed to --credentials-key,
DIR/credentials.tpm2b_public from `shieldwright vtpm new DIR` (the default when it lies beside --srk).
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "provision",
        help="make a VM disk from a template: sealed to the VM's vTPM, unlocked in the approved boot state",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("template", help="template image (raw, qcow2, vhdx, vhd)")
    p.add_argument("--srk", required=True, help="the VM's SRK public key (a TPM2B_PUBLIC or PEM file)")
    add_passphrase_options(p, "passphrase", "the template's provisioning keyslot (default: prompt)")
    p.add_argument(
        "--shielding-data", metavar="DATA.shd",
        help="take the provisioning passphrase from shielding data for this template (opened with "
        "--guardian-key/--guardian-cert, a recipient's key pair; checked to apply first)",
    )  # fmt: skip
    p.add_argument("--guardian-key", metavar="KEY", help="private key of a recipient of --shielding-data")
    p.add_argument("--guardian-cert", metavar="CERT", help="certificate of that recipient")
    add_passphrase_options(p, "guardian-key-passphrase", "--guardian-key, if it is encrypted")
    p.add_argument(
        "--credentials-key", metavar="FILE",
        help="the vTPM's credentials key (credentials.tpm2b_public; default: beside --srk) to seal the "
        "shielding data's specialization values to",
    )  # fmt: skip
    add_trust_options(p, "--trust", what="the template's UKIs and catalog", repeatable=True)
    p.add_argument(
        "--pcrs", default="4,7,11", metavar="LIST",
        help="PCRs the key is sealed to, comma-separated, a subset of 4,7,11 (default 4,7,11)",
    )  # fmt: skip
    add_firmware_options(p, required=True)
    p.add_argument("--bank", default="sha256", help="PCR bank: sha256 (default), sha384, sha512 or sha1")
    p.add_argument("--keep-passphrase", action="store_true",
                   help="keep the provisioning passphrase's keyslot (default: remove it)")  # fmt: skip
    p.add_argument("--format", choices=("raw", "vhdx", "vhd", "qcow2"),
                   help="output format (default: the template's format)")  # fmt: skip
    p.add_argument("-o", "--output", required=True, metavar="VM_DISK", help="the VM disk to write")
    add_force_option(p, "VM_DISK")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_provision)


def _pcr_list(text: str) -> list[int]:
    from app.errors import ShieldwrightError  # lazy: keeps --help light

    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ShieldwrightError(f"--pcrs {text!r} is not a list of PCRs", "e.g. --pcrs 4,7,11") from None


def _from_shielding_data(args: argparse.Namespace) -> Payload:
    from app.errors import ShieldwrightError, WrongPassphraseError  # lazy
    from app.signing.keys import load_certificates, load_private_key
    from app.template.provision import payload_from_shielding_data

    if args.passphrase_file or args.passphrase_env:
        raise ShieldwrightError("give the passphrase or --shielding-data, not both", "drop one of them")
    if not args.guardian_key or not args.guardian_cert:
        raise ShieldwrightError("--shielding-data needs --guardian-key and --guardian-cert",
                                "give the key pair of a guardian (or owner) it was made for")  # fmt: skip
    cert = load_certificates(args.guardian_cert)[0]
    key_passphrase = read_passphrase_buffer(args, "guardian-key-passphrase")
    try:
        try:
            key = load_private_key(args.guardian_key, bytes(key_passphrase) if key_passphrase else None)
        except WrongPassphraseError as exc:
            if key_passphrase is not None:
                raise
            if not sys.stdin.isatty():
                raise WrongPassphraseError(
                    exc.message, "give --guardian-key-passphrase-file or --guardian-key-passphrase-env"
                ) from None
            key_passphrase = read_passphrase_buffer(args, "guardian-key-passphrase",
                                                    prompt="Passphrase of the guardian key: ")  # fmt: skip
            key = load_private_key(args.guardian_key, bytes(key_passphrase) if key_passphrase else None)
    finally:
        if key_passphrase is not None:
            key_passphrase[:] = bytes(len(key_passphrase))
    return payload_from_shielding_data(args.shielding_data, args.template, cert, key)


def _credentials_key(args: argparse.Namespace) -> Srk | None:
    """--credentials-key, or the vTPM's file beside --srk; None when neither exists."""
    from pathlib import Path

    from app.tpm.srk import load_srk
    from app.tpm.vtpm_dir import credentials_key_path, find_credentials_key

    if args.credentials_key:
        return load_srk(args.credentials_key)
    return find_credentials_key(credentials_key_path(Path(args.srk).parent))


def cmd_provision(args: argparse.Namespace) -> int:
    # lazy: the engine loads cryptography and tpm2-pytss; the parser (and `--help`) must not
    from app.errors import ShieldwrightError
    from app.signing.keys import load_certificates
    from app.template.provision import ProvisionRequest, check_pcrs, provision
    from app.tpm.srk import load_srk

    if not args.trust and not args.no_trust_check:
        raise signer_not_checked("--trust")
    pcrs = check_pcrs(_pcr_list(args.pcrs))
    out = check_output(args.output, args.force)
    srk = load_srk(args.srk)
    trusted = [c for path in args.trust for c in load_certificates(path)] if args.trust else None
    profile = profile_from_args(args)
    passphrase: bytearray | None
    payload = None
    if args.shielding_data:
        payload = _from_shielding_data(args)
        passphrase = payload.provisioning_passphrase
    else:
        passphrase = read_passphrase_buffer(
            args, "passphrase", prompt="The template's provisioning passphrase: "
        )
    if passphrase is None:
        raise ShieldwrightError("no provisioning passphrase", "give --passphrase-file or --passphrase-env")
    request = ProvisionRequest(
        args.template, out, srk, profile, pcrs=pcrs, bank=args.bank, keep_passphrase=args.keep_passphrase,
        out_format=args.format, trusted=trusted, accept_any_signer=args.no_trust_check, overwrite=args.force,
        specialization=payload, credentials_key=_credentials_key(args) if payload is not None else None,
    )  # fmt: skip
    progress = TerminalProgress()
    try:
        result = provision(request, passphrase, progress=progress)
    finally:
        passphrase[:] = bytes(len(passphrase))
        progress.close()
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        print()
        return 0
    print(result.output)
    selection = ",".join(map(str, pcrs))
    print(f"Sealed to {srk.describe()}, PCRs {selection} ({args.bank}), policy {result.policy_hash}")
    for n, value in sorted(result.pcr_values.items()):
        note = " (after enter-initrd)" if n == 11 else ""
        print(f"  PCR {n:>2}: {value}{note}")
    for c in result.containers:
        removed = "" if c.removed_keyslot is None else f"; provisioning keyslot {c.removed_keyslot} removed"
        print(f"Partition {c.partition}: TPM keyslot {c.tpm_keyslot}, token {c.token_id}{removed}")
    for path in result.credentials:
        print(f"Credential {path} (sealed to the vTPM's credentials key)")
    return 0
