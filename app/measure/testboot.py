"""Test boot: boot a template on real firmware with a vTPM; compare the PCRs it measured with the prediction.

The template is booted under QEMU on OVMF's Secure Boot build with swtpm, on a variable store in which
the template's UEFI certificate is enrolled: the user's (copied; their file is never written), or one
made for the boot from Microsoft's store with the UKI's signer certificate added to db — the firmware a
cloud with the template's key enrolled runs. The run is stopped when the firmware measures
ExitBootServices into PCR 5 (``EV_EFI_ACTION "Exit Boot Services Invocation"``, TCG PC Client PFP
§10.4.4): everything PCR 4, 7 and 11 will hold has been measured by then, and the kernel has changed
nothing yet. The vTPM's PCRs are read while swtpm still runs, and compared with :mod:`app.measure.predict`.
PCR 11 may be caught a phase later (systemd's ``enter-initrd``) on a fast machine: the comparison says
which phase value it equals.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from app.boot import vm
from app.boot.pcr import DEFAULT_PHASES, extend, extend_digest, zero
from app.disk.image import open_image
from app.errors import ShieldwrightError
from app.measure.chain import BootChain, find_boot_chain
from app.measure.predict import PREDICTED_PCRS, Prediction, predict_chain
from app.measure.profile import profile_from_vars
from app.measure.teststore import build_test_store
from app.progress import CancelToken
from app.signing.authenticode import signer_chains

#: What OVMF measures into PCR 5 when the OS loader calls ExitBootServices (edk2 Tcg2Dxe
#: ``OnExitBootServices``: EFI_EXIT_BOOT_SERVICES_INVOCATION).
EXIT_BOOT_SERVICES = b"Exit Boot Services Invocation"
STOPPED_AT_EXIT_BOOT_SERVICES = "ExitBootServices measured"
#: QEMU's drive format for each image format (a VHD is QEMU's "vpc").
QEMU_FORMATS = {"raw": "raw", "qcow2": "qcow2", "vhdx": "vhdx", "vhd": "vpc"}
#: With ``vtpm``: how systemd shows the root's LUKS2 unlock on the console (systemd.show_status), and the
#: first PCR 15 extend after ExitBootServices — systemd-cryptsetup's ``tpm2-measure-pcr`` (on for a
#: gpt-auto root) and systemd-pcrfs measure into PCR 15 only once the root is open.
#: (The unit's name is cut short with "…" on an 80-column console: match its start only.)
UNLOCKED_TEXTS = ("Finished systemd-cryptsetup",)
LOCKED_TEXTS = ("Failed to start systemd-cryptsetup", "Please enter passphrase for disk")
UNLOCKED_BY_PCR15 = "PCR 15 measured (the root was unlocked)"
#: Shim's fallback resets once after creating the boot entry; one more for a firmware that resets too.
MAX_RESETS = 2
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class PcrCheck:
    """One PCR: the predicted value, what the vTPM holds, and — for PCR 11 — which phase value it equals."""

    pcr: int
    predicted: str
    measured: str | None
    phase: str | None = None  # PCR 11 only: "" (kernel start) or the systemd phase path it matched

    @property
    def matches(self) -> bool:
        return self.measured is not None and (self.measured == self.predicted or self.phase is not None)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "predicted": self.predicted,
            "measured": self.measured,
            "match": self.matches,
        }
        if self.pcr == 11:
            out["phase"] = self.phase
        return out


@dataclass(frozen=True)
class TestBootResult:
    """What a test boot showed."""

    __test__ = False  # not a pytest class

    prediction: Prediction
    bank: str
    checks: tuple[PcrCheck, ...]
    boot: vm.BootResult
    firmware: str  # the variable store booted, in words
    accel: str
    reached_exit_boot_services: bool = False
    #: With a VM's vTPM: "unlocked", "locked" (systemd could not open the root with the TPM), or
    #: "unknown" (the boot ended before either showed); None without one.
    unlock: str | None = None

    @property
    def matches(self) -> bool:
        """PCR 4, 7 and 11 are the predicted values, and with a VM's vTPM its root was unlocked."""
        pcrs = self.reached_exit_boot_services and all(c.matches for c in self.checks)
        return pcrs and self.unlock in (None, "unlocked")

    @property
    def problem(self) -> str | None:
        """Why the boot did not get to the measurement (or the root), in one line; None when it did."""
        if self.reached_exit_boot_services:
            if self.unlock == "locked":
                return f"systemd did not unlock the root with the vTPM ({self.boot.stopped_by})"
            if self.unlock == "unknown":
                return f"the boot ended before systemd unlocked the root ({self.boot.ended})"
            return None
        refusals = self.boot.refusals
        if self.boot.secure_boot_refused:
            return f"the firmware refused the boot: {refusals[0]}"
        if self.boot.ended == "timeout":
            return f"the boot did not reach ExitBootServices within {self.boot.elapsed:.0f} s"
        if self.boot.ended == "no-boot-option":
            return "the firmware found nothing it could boot"
        if self.boot.ended == "exited":
            return f"the machine stopped before ExitBootServices ({self.boot.exit_reason or 'exited'})"
        return f"the boot ended before ExitBootServices ({self.boot.ended})"

    def to_dict(self) -> dict[str, object]:
        """The ``test-boot --json`` document."""
        return {
            "bank": self.bank,
            "match": self.matches,
            "firmware": self.firmware,
            "accel": self.accel,
            "reached_exit_boot_services": self.reached_exit_boot_services,
            "unlock": self.unlock,
            "problem": self.problem,
            "boot_seconds": self.boot.elapsed,
            "resets": self.boot.resets,
            "pcrs": {str(c.pcr): c.to_dict() for c in self.checks},
        }


def _is_exit_boot_services(pcr: int, digests: dict[str, bytes]) -> bool:
    wanted = {bank: hashlib.new(bank, EXIT_BOOT_SERVICES).digest() for bank in digests}
    return pcr == 5 and bool(digests) and digests == wanted


class _Extends:
    """Watches the vTPM's extends: stops at ExitBootServices (a plain test boot), or — booting a VM's
    vTPM — keeps going and stops at the first PCR 15 extend after it (the root was unlocked). Keeps
    every extend before ExitBootServices, so the PCRs at that point can be replayed."""

    def __init__(self, follow_unlock: bool) -> None:
        self.follow_unlock = follow_unlock
        self.before: list[tuple[int, dict[str, bytes]]] = []
        self.exit_boot_services = False

    def __call__(self, pcr: int, digests: dict[str, bytes]) -> str | None:
        if not self.exit_boot_services:
            self.before.append((pcr, digests))
            if _is_exit_boot_services(pcr, digests):
                self.exit_boot_services = True
                return None if self.follow_unlock else STOPPED_AT_EXIT_BOOT_SERVICES
            return None
        return UNLOCKED_BY_PCR15 if pcr == 15 else None

    def pcrs(self, bank: str, wanted: Sequence[int]) -> dict[int, str]:
        """PCR values replayed from the extends before ExitBootServices (PCRs 4, 7, 11 start at zero)."""
        values = {n: zero(bank) for n in wanted}
        for pcr, digests in self.before:
            if pcr in values and bank in digests:
                values[pcr] = extend_digest(bank, values[pcr], digests[bank])
        return values


def uki_signers(chain: BootChain) -> list[x509.Certificate]:
    """The certificates whose signatures on the chain's UKI verify (what db must hold for it to boot)."""
    return [signer for signer, _chain in signer_chains(chain.uki.data)]


def run_test_boot(
    template: str | Path,
    *,
    firmware_vars: str | Path | None = None,
    bank: str = "sha256",
    timeout: float = DEFAULT_TIMEOUT,
    accel: str | None = None,
    vtpm: str | Path | None = None,
    on_console: vm.ConsoleSink | None = None,
    cancel: CancelToken | None = None,
) -> TestBootResult:
    """Boot ``template`` to ExitBootServices and compare PCR 4, 7 and 11 with the prediction.

    ``firmware_vars``: the OVMF variable store to boot with (a copy is booted); None makes one from
    Microsoft's store with the UKI's signer certificate added to db. ``accel``: ``"kvm"`` or ``"tcg"``;
    None uses KVM when it is usable. A template whose chain cannot be predicted raises
    :class:`~app.measure.events.MeasureError` before anything boots.

    ``vtpm``: boot a provisioned VM disk on (a copy of) that VM's vTPM state directory and keep going
    past ExitBootServices until systemd unlocks its root (or says it cannot); PCR 4, 7 and 11 are then
    the values replayed from what the vTPM was asked to extend up to ExitBootServices.
    """
    cancel = cancel or CancelToken()
    template = Path(template)
    with open_image(template) as image:
        disk_format = QEMU_FORMATS[image.format]
    chain = find_boot_chain(template)
    accel = accel or ("kvm" if vm.kvm_usable() else "tcg")
    scratch = Path(tempfile.mkdtemp(prefix="sw-testboot-"))
    try:
        store = scratch / "vars.fd"
        if firmware_vars is not None:
            profile_from_vars(firmware_vars)  # a one-line error for a missing or broken store, first
            shutil.copyfile(firmware_vars, store)
            described = f"variable store {firmware_vars}"
        else:
            signers = uki_signers(chain)
            if not signers:
                raise ShieldwrightError(
                    f"the UKI {chain.uki.path} carries no signature that verifies",
                    "sign it (shieldwright build signs it), or give --firmware-vars",
                )
            made = build_test_store("microsoft", add_db=signers[:1])
            store.write_bytes(made.data)
            subject = made.added[0][1].subject.rfc4514_string()
            described = f"Microsoft keys + {subject} in db"
        profile = profile_from_vars(store)
        prediction = predict_chain(chain, profile, [bank])
        firmware = vm.Firmware(vm.OVMF_DIR / "OVMF_CODE_4M.secboot.fd", store, True, described)
        state = None
        if vtpm is not None:
            if not any(Path(vtpm).glob("tpm2-*.permall")):
                raise ShieldwrightError(
                    f"{vtpm} is not a vTPM state directory", "give the DIR of `vtpm new DIR`"
                )
            state = scratch / "tpm"
            shutil.copytree(vtpm, state)  # the VM's own vTPM is never written
        extends = _Extends(follow_unlock=vtpm is not None)
        result = vm.boot(
            template, firmware=firmware, vars_file=store, pcr_banks=(bank,), timeout=timeout,
            disk_format=disk_format, accel=accel, resets=MAX_RESETS if chain.shim else 0,
            tpm_state=state, stop_on=(*UNLOCKED_TEXTS, *LOCKED_TEXTS) if vtpm is not None else (),
            stop_on_extend=extends, read_pcrs_after=() if vtpm is not None else PREDICTED_PCRS,
            on_console=on_console, cancel=cancel,
        )  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if vtpm is None:
        measured: dict[int, str] = (result.pcrs or {}).get(bank, {})
    else:
        measured = extends.pcrs(bank, PREDICTED_PCRS) if extends.exit_boot_services else {}
    checks = tuple(_check(n, prediction.pcrs[bank][n], measured.get(n), bank) for n in PREDICTED_PCRS)
    unlock = _unlock_verdict(result) if vtpm is not None else None
    return TestBootResult(
        prediction, bank, checks, result, described, accel, extends.exit_boot_services, unlock
    )


def _unlock_verdict(result: vm.BootResult) -> str:
    if result.stopped_by in (UNLOCKED_BY_PCR15, *UNLOCKED_TEXTS):
        return "unlocked"
    if result.stopped_by in LOCKED_TEXTS:
        return "locked"
    return "unknown"


def _check(pcr: int, predicted: str, measured: str | None, bank: str) -> PcrCheck:
    if pcr != 11 or measured is None:
        return PcrCheck(pcr, predicted, measured)
    for path in DEFAULT_PHASES:
        value = predicted
        for word in path.split(":") if path else ():
            value = extend(bank, value, word.encode())
        if value == measured:
            return PcrCheck(pcr, predicted, measured, path)
    return PcrCheck(pcr, predicted, measured)


def phase_text(phase: str | None) -> str:
    """``""`` → "at kernel start", ``"enter-initrd"`` → "after enter-initrd"."""
    if phase is None:
        return ""
    return "at kernel start" if phase == "" else f"after {phase.rsplit(':', 1)[-1]}"


def check_rows(result: TestBootResult) -> Sequence[tuple[str, str, str, str]]:
    """(PCR, predicted, measured, verdict) rows for a table: what the CLI prints and the dialog shows."""
    rows = []
    for c in result.checks:
        if c.measured is None:
            verdict = "not read"
        elif c.matches:
            verdict = "match" + (f" ({phase_text(c.phase)})" if c.phase else "")
        else:
            verdict = "DIFFERS"
        rows.append((str(c.pcr), c.predicted, c.measured or "-", verdict))
    return rows
