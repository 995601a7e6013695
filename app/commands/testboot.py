"""``shieldwright test-boot``: boot a template under QEMU + OVMF Secure Boot + swtpm and compare its PCRs.

Prints the serial console as the boot runs, then a table of PCR 4, 7 and 11: predicted (``pcr predict``
on the same variable store) and measured (read from the vTPM when the firmware measured
ExitBootServices). Exit status: 0 every PCR matches; 1 a PCR differs or the boot never got there; 2 the
template's chain cannot be predicted, or QEMU/swtpm/OVMF are missing.
"""

from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = """\
Boot TEMPLATE on OVMF's Secure Boot firmware with a software TPM (swtpm), stop when the firmware
measures ExitBootServices (everything PCR 4, 7 and 11 will hold is measured by then), read the vTPM's
PCRs and compare them with the prediction for the same firmware variables.

Without --firmware-vars the firmware gets Microsoft's keys (Debian's OVMF_VARS_4M.ms.fd) with the
certificate that signed the template's UKI added to db: the firmware of a cloud VM whose db trusts the
template's key. With --firmware-vars FILE.fd a copy of FILE is booted (FILE is never written; make one
with `shieldwright firmware vars`). QEMU uses KVM when /dev/kvm is usable, software emulation otherwise
(a boot takes 10-30 s under emulation). The template is attached read-only (a snapshot overlay).

PCR 11 is predicted at kernel start; on a fast machine the kernel may reach systemd's first boot
phase before the boot is stopped, and the table says which phase value PCR 11 matched.

Exit status: 0 PCR 4, 7 and 11 match; 1 a PCR differs or the boot did not reach ExitBootServices; 2 the
chain cannot be predicted or a tool is missing.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "test-boot",
        help="boot a template on Secure Boot firmware with a vTPM; compare PCR 4/7/11 with the prediction",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("template", help="template image (raw, qcow2, vhdx, vhd)")
    p.add_argument(
        "--firmware-vars",
        metavar="FILE.fd",
        help="OVMF variable store to boot with (default: Microsoft's keys + the UKI's signer in db)",
    )
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="give up after S seconds (300)")
    p.add_argument("--bank", default="sha256", choices=("sha1", "sha256"), help="PCR bank (default sha256)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON (no console)")
    p.set_defaults(func=cmd_test_boot)


def cmd_test_boot(args: argparse.Namespace) -> int:
    from app.errors import ShieldwrightError  # lazy: keeps --help light
    from app.measure.testboot import check_rows, run_test_boot

    if args.timeout <= 0:
        raise ShieldwrightError("--timeout must be more than 0 seconds", "e.g. --timeout 300")

    def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    result = run_test_boot(
        args.template, firmware_vars=args.firmware_vars, bank=args.bank, timeout=args.timeout,
        on_console=None if args.json else show,
    )  # fmt: skip
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        print()
        return 0 if result.matches else 1
    print()
    print(f"Firmware: OVMF Secure Boot, {result.firmware} ({result.accel}, {result.boot.elapsed:.1f} s)")
    for note in result.prediction.chain.notes:
        print(f"Chain: {note}")
    if result.problem:
        print(f"Boot: {result.problem}")
    print()
    print(f"PCR  {'predicted (' + args.bank + ')':<66} {'measured':<66} result")
    for pcr, predicted, measured, verdict in check_rows(result):
        print(f"{pcr:>3}  {predicted:<66} {measured:<66} {verdict}")
    print()
    print("match" if result.matches else "MISMATCH: the template does not boot to the predicted PCR values")
    return 0 if result.matches else 1
