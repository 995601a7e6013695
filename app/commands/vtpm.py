"""``shieldwright vtpm new DIR``: a vTPM state directory for a QEMU/libvirt VM, its SRK ready for sealing."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Create DIR as a new swtpm state directory (what libvirt keeps per VM; run it with
`swtpm socket --tpm2 --tpmstate dir=DIR ...`), create systemd's Storage Root Key in it and make it
persistent at 0x81000001, as systemd-tpm2-setup would on the VM's first boot, and write its public key
to DIR/srk.tpm2b_public. Give that file to `shieldwright provision --srk` to make a disk only this vTPM
unlocks, before the VM ever boots. DIR/credentials.tpm2b_public is the public key of systemd's legacy
primary (the parent of the credentials systemd-creds seals): provisioning seals shielding data's
specialization values to it. DIR must not exist or be empty: a vTPM is never overwritten.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vtpm = sub.add_parser("vtpm", help="virtual TPMs for QEMU/libvirt VMs")
    actions = vtpm.add_subparsers(dest="vtpm_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "new", help="create a vTPM state directory with systemd's SRK", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("directory", metavar="DIR", help="new directory for the vTPM's state")
    p.add_argument(
        "--srk", choices=("ecc", "rsa"), default="ecc",
        help="SRK kind: ecc (NIST P-256, systemd's choice when the TPM has it) or rsa (RSA 2048)",
    )  # fmt: skip
    p.add_argument(
        "--pcr-banks", default="sha256", metavar="BANKS",
        help="PCR banks to allocate, comma-separated (default sha256; e.g. sha1,sha256)",
    )  # fmt: skip
    p.set_defaults(func=cmd_new)


def cmd_new(args: argparse.Namespace) -> int:
    from app.errors import ShieldwrightError  # lazy: keeps --help light
    from app.tpm.vtpm_dir import create_vtpm, srk_path

    banks = [b.strip() for b in args.pcr_banks.split(",") if b.strip()]
    unknown = [b for b in banks if b not in ("sha1", "sha256", "sha384", "sha512")]
    if not banks or unknown:
        raise ShieldwrightError(
            f"--pcr-banks {args.pcr_banks!r} is not a list of banks", "e.g. sha256 or sha1,sha256"
        )
    srk = create_vtpm(args.directory, banks=banks, kind=args.srk)
    print(srk_path(args.directory))
    print(f"SRK at 0x81000001: {srk.describe()}")
    return 0
