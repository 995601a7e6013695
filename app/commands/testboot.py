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
from typing import Any

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

With --vtpm DIR (a VM's vTPM state, as `vtpm new DIR` made it) TEMPLATE is a VM disk provisioned for
that VM (`shieldwright provision`): it boots on a copy of DIR (DIR is never written) past
ExitBootServices until systemd unlocks the root with the vTPM (the first PCR 15 measurement, or
"Finished systemd-cryptsetup" on the console) or says it cannot (its cryptsetup unit fails, or it
asks for a passphrase). The PCRs compared are replayed from what the vTPM was asked to extend up to
ExitBootServices; they are this disk's predicted values, so "match" with a locked root means the disk's
boot chain (or the firmware) is no longer the one the VM was provisioned for. It then also says, for each
systemd-tpm2 token on the disk, whether the PCRs this boot reached (PCR 11 after enter-initrd) satisfy
the token's sealed policy.

Exit status: 0 PCR 4, 7 and 11 match (and with --vtpm the root was unlocked); 1 a PCR differs, the boot
did not reach ExitBootServices, or the root stayed locked; 2 the chain cannot be predicted or a tool is
missing.
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
    p.add_argument(
        "--vtpm", metavar="DIR",
        help="boot a provisioned VM disk on (a copy of) this VM's vTPM; report if its root unlocked",
    )  # fmt: skip
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="give up after S seconds (300)")
    p.add_argument("--bank", default="sha256", choices=("sha1", "sha256"), help="PCR bank (default sha256)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON (no console)")
    p.set_defaults(func=cmd_test_boot)


def _sealed_policies(args: argparse.Namespace, result: Any) -> list[Any] | None:
    """With --vtpm: whether the PCRs this boot reached satisfy each systemd-tpm2 token on the disk."""
    if not args.vtpm or not result.reached_exit_boot_services:
        return None
    from app.template.provision import check_sealed_policies  # lazy: keeps --help light

    measured = {c.pcr: c.measured for c in result.checks if c.measured is not None}
    return check_sealed_policies(args.template, measured, args.bank)


def cmd_test_boot(args: argparse.Namespace) -> int:
    from app.errors import ShieldwrightError  # lazy: keeps --help light
    from app.measure.testboot import check_rows, run_test_boot

    if args.timeout <= 0:
        raise ShieldwrightError("--timeout must be more than 0 seconds", "e.g. --timeout 300")

    def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    result = run_test_boot(
        args.template, firmware_vars=args.firmware_vars, bank=args.bank, timeout=args.timeout, vtpm=args.vtpm,
        on_console=None if args.json else show,
    )  # fmt: skip
    sealed = _sealed_policies(args, result)
    if args.json:
        doc = result.to_dict()
        if sealed is not None:
            doc["sealed_policies"] = [
                {
                    "partition": c.partition,
                    "token": c.token_id,
                    "pcrs": list(c.pcrs),
                    "satisfied": c.satisfied,
                }
                for c in sealed
            ]
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0 if result.matches else 1
    print()
    print(f"Firmware: OVMF Secure Boot, {result.firmware} ({result.accel}, {result.boot.elapsed:.1f} s)")
    for note in result.prediction.chain.notes:
        print(f"Chain: {note}")
    if result.unlock is not None:
        print(f"Root: {result.unlock} ({result.boot.stopped_by or result.boot.ended})")
    for c in sealed or []:
        verdict = "satisfied" if c.satisfied else "NOT satisfied"
        pcrs = "+".join(map(str, c.pcrs))
        print(f"Sealed policy, partition {c.partition} token {c.token_id} (PCRs {pcrs}): {verdict}")
    if result.problem:
        print(f"Boot: {result.problem}")
    print()
    print(f"PCR  {'predicted (' + args.bank + ')':<66} {'measured':<66} result")
    for pcr, predicted, measured, verdict in check_rows(result):
        print(f"{pcr:>3}  {predicted:<66} {measured:<66} {verdict}")
    print()
    if result.matches:
        print("match" + (" and the root was unlocked" if result.unlock else ""))
    elif result.unlock not in (None, "unlocked"):
        print("LOCKED: the VM did not unlock its root with its vTPM")
    else:
        print("MISMATCH: the template does not boot to the predicted PCR values")
    return 0 if result.matches else 1
