"""Provision a VM disk from a template: its LUKS2 containers unlock with the VM's vTPM, and only in the
boot state the owner approved.

What Microsoft's fabric does at provisioning and the confidential images rely on, done offline on the
image file: the template is verified first (its signed catalog and UKIs against a trusted signer — a
modified template is refused), then each encrypted container gets a keyslot whose passphrase is a fresh
random secret sealed to the VM's SRK under a PolicyPCR of the predicted PCRs, bound by a ``systemd-tpm2``
token exactly as ``systemd-cryptenroll --tpm2-device-key`` writes it; the provisioning passphrase's
keyslot is then removed (the well-known passphrase stops working) unless it is to be kept. A recovery
key's keyslot stays. Only the LUKS2 header areas differ from the template, so the cost is one
verification pass and one sparse copy; the output appears only complete, the template is never written.

PCR 11 is sealed at its ``enter-initrd`` value: systemd-pcrphase-initrd extends it before cryptsetup runs
(reference/tpm-unlock.md). PCRs other than 4, 7 and 11 are refused — 5 (the GPT), 10 (IMA) and 15
(machine id, root file system, volume key) change on every boot or after the unlock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from app.boot.pcr import extend
from app.disk.esp import normalize_path, write_esp_files
from app.disk.image import WRITE_FORMATS, DiskImage, open_image
from app.disk.layout import layout_of
from app.disk.writers import copy_raw, patch_file, write_image
from app.errors import CancelledError, ShieldwrightError, WrongPassphraseError
from app.luks.container import (
    LuksHeader,
    add_keyslot,
    add_token,
    read_header,
    remove_keyslot,
    unlock_keyslot,
    wipe,
)
from app.luks.imageops import PatchedImage, read_luks_partition
from app.luks.kdf import PBKDF2_MIN_ITERATIONS, KdfParams
from app.measure.predict import PREDICTED_PCRS, Prediction, predict_template
from app.measure.profile import FirmwareProfile
from app.progress import CancelToken, NullProgress, Progress, ProgressState
from app.shielding.payload import Payload
from app.shielding.qualifiers import applicability, load_signed_catalog
from app.shielding.shd import load_shielding_data
from app.shielding.specialize import BINARY_CREDENTIALS, instance_id_for, specialization_credentials
from app.signing.keys import PrivateKey
from app.template.build.export import check_format, export
from app.template.build.staging import Staging
from app.template.verify import TemplateReport, verify_template
from app.tpm.credential import credential_text, encrypt_credential
from app.tpm.policy import policy_pcr_digest
from app.tpm.seal import seal_to_srk
from app.tpm.srk import Srk
from app.tpm.token import (
    TOKEN_TYPE,
    TokenError,
    keyslot_passphrase,
    read_systemd_tpm2_token,
    systemd_tpm2_token,
)

#: The systemd boot phase whose PCR 11 value is current when the root is unlocked.
UNLOCK_PHASE = "enter-initrd"
#: PCRs a template's policy can bind (those we predict); why the others are refused.
SEALABLE_PCRS = PREDICTED_PCRS
NEVER_SEAL = {
    5: "it holds the GPT, which changes with the partition table",
    10: "IMA extends it differently on every boot",
    15: "systemd extends it with the machine id, the root file system and the volume key after the unlock",
}
#: systemd's keyslot KDF for a high-entropy secret (cryptsetup_set_minimal_pbkdf: PBKDF2-SHA512, 1000).
TPM_KEYSLOT_KDF = KdfParams.pbkdf2(iterations=PBKDF2_MIN_ITERATIONS, hash="sha512")


class ProvisionError(ShieldwrightError):
    """A template that cannot be provisioned as asked."""


@dataclass(frozen=True)
class ProvisionRequest:
    """Everything a provisioning needs except the provisioning passphrase."""

    template: Path
    output: Path
    srk: Srk
    profile: FirmwareProfile
    pcrs: tuple[int, ...] = PREDICTED_PCRS
    bank: str = "sha256"
    keep_passphrase: bool = False
    out_format: str | None = None
    trusted: Sequence[x509.Certificate] | None = None
    accept_any_signer: bool = False
    overwrite: bool = False
    #: The specialization values to deliver (from shielding data), sealed to ``credentials_key``: the
    #: public key of systemd's legacy primary of the same vTPM (``vtpm new``'s credentials.tpm2b_public).
    specialization: Payload | None = field(default=None, repr=False)
    credentials_key: Srk | None = None


@dataclass(frozen=True)
class ProvisionedContainer:
    partition: int
    tpm_keyslot: int
    token_id: int
    removed_keyslot: int | None
    kept_keyslots: tuple[int, ...]


@dataclass(frozen=True)
class ProvisionResult:
    output: Path
    format: str
    policy_hash: str
    pcr_values: dict[int, str]
    containers: tuple[ProvisionedContainer, ...]
    verification: TemplateReport
    prediction: Prediction = field(repr=False)
    #: ESP paths of the credentials written (the specialization values).
    credentials: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """The ``provision --json`` document."""
        return {
            "output": str(self.output),
            "format": self.format,
            "policy_hash": self.policy_hash,
            "pcrs": {str(n): v for n, v in sorted(self.pcr_values.items())},
            "bank": self.prediction.banks[0],
            "containers": [dataclasses.asdict(c) for c in self.containers],
            "credentials": list(self.credentials),
        }


def payload_from_shielding_data(
    shielding_data: str | Path, template: str | Path, certificate: x509.Certificate, key: PrivateKey
) -> Payload:
    """What a ``.shd`` carries for ``template`` (the provisioning passphrase and the specialization
    values): its owner signature verified, its volume ID qualifiers checked against the template's signed
    catalog first (refused when none applies), then opened with a recipient's certificate and key. It
    stays in memory (the caller wipes the passphrase); nothing of the payload touches disk in clear."""
    data = load_shielding_data(shielding_data)
    ok, reasons = applicability(data.qualifiers, load_signed_catalog(template))
    if not ok:
        raise ProvisionError(
            f"the shielding data does not apply to this template: {'; '.join(reasons)}",
            "use shielding data made for this template (`shieldwright shield test DATA.shd TEMPLATE`)",
        )
    return data.open(certificate, key)


def passphrase_from_shielding_data(
    shielding_data: str | Path, template: str | Path, certificate: x509.Certificate, key: PrivateKey
) -> bytearray:
    """Only the provisioning passphrase of :func:`payload_from_shielding_data` (the caller wipes it)."""
    return payload_from_shielding_data(shielding_data, template, certificate, key).provisioning_passphrase


@dataclass(frozen=True)
class PolicyCheck:
    """Whether a boot state satisfies a container's systemd-tpm2 token."""

    partition: int
    token_id: int
    pcrs: tuple[int, ...]
    satisfied: bool


def check_sealed_policies(disk: str | Path, measured: dict[int, str], bank: str) -> list[PolicyCheck]:
    """For each systemd-tpm2 token on ``disk``: does the PCR state ``measured`` (values at
    ExitBootServices, PCR 11 before any phase) satisfy its PolicyPCR once systemd has entered the initrd?
    The token holds only the policy hash, so this says yes or no, not which PCR moved."""
    out: list[PolicyCheck] = []
    with open_image(disk) as image:
        for part in layout_of(image).partitions:
            if part.content != "luks2":
                continue
            header = read_luks_partition(image, part.number).header
            for token_id, token in sorted(header.tokens.items()):
                if token.get("type") != TOKEN_TYPE:
                    continue
                try:
                    info = read_systemd_tpm2_token(token)
                except TokenError:
                    out.append(PolicyCheck(part.number, token_id, (), False))
                    continue
                if info.bank != bank or any(n not in measured for n in info.pcrs):
                    out.append(PolicyCheck(part.number, token_id, info.pcrs, False))
                    continue
                values = at_unlock({n: measured[n] for n in info.pcrs}, bank)
                ok = policy_pcr_digest(bank, values).hex() == info.policy_hash
                out.append(PolicyCheck(part.number, token_id, info.pcrs, ok))
    return out


def check_pcrs(pcrs: Sequence[int]) -> tuple[int, ...]:
    """The policy's PCR selection, sorted; refuses PCRs we do not predict (and says why for 5/10/15)."""
    chosen = tuple(sorted(set(pcrs)))
    if not chosen:
        raise ProvisionError("no PCRs selected", "seal to 4, 7 and 11 (the default), or a subset")
    for n in chosen:
        if n in NEVER_SEAL:
            raise ProvisionError(f"PCR {n} cannot be sealed to: {NEVER_SEAL[n]}", "use 4, 7 and 11")
        if n not in SEALABLE_PCRS:
            raise ProvisionError(f"PCR {n} is not predicted", "seal to a subset of 4, 7 and 11")
    return chosen


def sealed_values(prediction: Prediction, pcrs: Sequence[int], bank: str) -> dict[int, str]:
    """The PCR values the VM's vTPM holds when systemd unlocks the root: PCR 11 after ``enter-initrd``."""
    return at_unlock({n: prediction.pcrs[bank][n] for n in pcrs}, bank)


def at_unlock(values: dict[int, str], bank: str) -> dict[int, str]:
    """PCR values at ExitBootServices as they stand when systemd unlocks the root: PCR 11 extended with
    the ``enter-initrd`` phase word, the others unchanged."""
    out = dict(values)
    if 11 in out:
        out[11] = extend(bank, out[11], UNLOCK_PHASE.encode())
    return out


@dataclass(frozen=True)
class SealedPolicy:
    """What a provisioning with this selection seals to: the PCR values (11 at the unlock) and the hash."""

    pcrs: tuple[int, ...]
    values: dict[int, str]
    policy_hash: str


def sealed_policy(prediction: Prediction, pcrs: Sequence[int], bank: str) -> SealedPolicy:
    """The values and PolicyPCR digest :func:`provision` seals to for ``pcrs`` (refused as it refuses
    them): what the wizard previews before anything is written."""
    chosen = check_pcrs(pcrs)
    values = sealed_values(prediction, chosen, bank)
    return SealedPolicy(chosen, values, policy_pcr_digest(bank, values).hex())


def provision(
    request: ProvisionRequest,
    passphrase: bytes | bytearray,
    *,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> ProvisionResult:
    """Write ``request.output``: the template with a vTPM-sealed keyslot and token in every LUKS2
    container (see the module doc). Nothing is written unless every step succeeds."""
    progress = progress or NullProgress()
    cancel = cancel or CancelToken()
    pcrs = check_pcrs(request.pcrs)
    template, output = Path(request.template), Path(request.output)
    if output.resolve() == template.resolve():
        raise ProvisionError(
            "the output is the template itself", "a template is never modified; give a new file"
        )
    with open_image(template) as image:
        source_format = image.format
    fmt = check_format(request.out_format or (source_format if source_format in WRITE_FORMATS else "raw"))
    if output.exists() and not request.overwrite:
        raise ProvisionError(f"{output} already exists", "choose another output, or allow overwriting")
    credentials = _credentials(request)
    if credentials and request.credentials_key is None:
        raise ProvisionError(
            "the shielding data holds specialization values, but no credentials key was given",
            "give the vTPM's credentials.tpm2b_public (`shieldwright vtpm new` writes it beside the SRK)",
        )
    if credentials and fmt not in CREDENTIAL_FORMATS:
        raise ProvisionError(
            f"specialization values are written into the ESP of a raw or qcow2 disk, not {fmt}",
            "provision to raw or qcow2 (convert afterwards with qemu-img if needed)",
        )
    # Three things at once, each only reading the template: the verification (two hashing threads; since
    # they hash the page cache in place, two beat one beside the copy: 1.16-1.19x a sparse copy against
    # 1.43-1.54x, benchmarks/bench_provision.py), the copy of the disk (in
    # the kernel, for a raw template), and here the prediction and the new LUKS2 headers (their KDF work
    # releases the GIL). The output is published only if the template verified;
    # a failed verification stops the copy, and nothing is left.
    written: tuple[str, ...] = ()
    stop = cancel.child()  # stops the copy when the verification fails, and both when the user cancels
    staging = Staging(output)
    pool = ThreadPoolExecutor(2, thread_name_prefix="provision")
    try:
        checking = ProgressState()  # shown once the copy is done and the verification is the rest
        verifying = pool.submit(verify_template, template, trusted=request.trusted, cancel=stop, jobs=2,
                                accept_any_signer=request.accept_any_signer, progress=checking)  # fmt: skip
        verifying.add_done_callback(lambda job: stop.cancel() if _failed(job) else None)
        staged = staging.path("disk." + fmt)
        raw = staging.path("disk.raw") if fmt == "qcow2" else staged  # qcow2: raw first, then qemu-img
        copying = None
        if source_format == "raw" and fmt in ("raw", "qcow2"):
            copying = pool.submit(copy_raw, template, raw, progress=progress, cancel=stop, fsync=False)
        error: BaseException | None = None
        try:
            prediction = predict_template(template, request.profile, [request.bank])
            sealed = sealed_policy(prediction, pcrs, request.bank)
            values, policy = sealed.values, bytes.fromhex(sealed.policy_hash)
            with open_image(template) as image:
                patches, containers = _new_headers(image, request, passphrase, pcrs, policy)
                if copying is None:
                    out_fmt = "raw" if fmt == "qcow2" else fmt
                    write_image(PatchedImage(image, patches), raw, out_fmt, progress=progress, cancel=stop)
            if copying is not None:
                copying.result()
                patch_file(raw, patches)
            if credentials:
                assert request.credentials_key is not None
                key = request.credentials_key
                bank = request.bank
                written = _deliver_credentials(template, raw, credentials, key, prediction, pcrs, bank, stop)
            if fmt == "qcow2":
                export(raw, staged, fmt, progress=progress, cancel=stop)
        except BaseException as exc:  # reported after the verification's verdict, which comes first
            error = exc
            stop.cancel()
        _relay_progress(verifying, checking, progress)
        try:
            report = _verdict(verifying)
        except CancelledError:
            if error is not None and not cancel.cancelled:
                raise error from None  # we stopped the verification because of this error
            raise
        cancel.check()
        if error is not None:
            raise error
        _check_written(staged, patches)
        staging.commit([(staged, output)], overwrite=request.overwrite)
    finally:
        stop.cancel()
        pool.shutdown(wait=True)
        staging.remove()
    return ProvisionResult(output, fmt, policy.hex(), values, containers, report, prediction, written)


def _credentials(request: ProvisionRequest) -> dict[str, bytes]:
    """The specialization credentials' plaintext (none without specialization values); the VM's cloud-init
    instance ID comes from its vTPM's credentials key."""
    if request.specialization is None:
        return {}
    key = request.credentials_key.public_bytes() if request.credentials_key is not None else b""
    return specialization_credentials(request.specialization, instance_id_for(key))


#: Output formats whose ESP the credentials are written into (a raw file, or raw first then qemu-img).
CREDENTIAL_FORMATS = ("raw", "qcow2")
#: PCRs a credential is bound to, of those the disk is sealed to: 4 and 7 hold from ExitBootServices on;
#: PCR 11 moves with every boot phase before the services that read credentials run.
CREDENTIAL_PCRS = (4, 7)


def _deliver_credentials(
    template: Path, raw: Path, credentials: dict[str, bytes], key: Srk, prediction: Prediction,
    pcrs: tuple[int, ...], bank: str, cancel: CancelToken,
) -> tuple[str, ...]:  # fmt: skip
    """Seal each credential to ``key`` under the predicted PCRs 4/7 (those of ``pcrs``) and write it beside
    the UKI of the predicted boot chain (``<uki>.extra.d/<name>.cred``: systemd-stub passes the files beside
    its own image, and that UKI is the boot the PCR values are of). Returns the ESP paths written."""
    values = {n: prediction.pcrs[bank][n] for n in pcrs if n in CREDENTIAL_PCRS}
    uki = normalize_path(prediction.chain.uki.path)
    files: dict[str, bytes] = {}
    for name, plain in sorted(credentials.items()):
        sealed = encrypt_credential(plain, key, bank, values)
        binary = name in BINARY_CREDENTIALS  # read by a generator (see specialize)
        files[f"{uki}.extra.d/{name}.cred"] = sealed if binary else credential_text(sealed)
    with open_image(template) as image:
        layout = layout_of(image)
        esp = next((p for p in layout.partitions if p.role == "esp"), None)
        if esp is None:
            raise ProvisionError("the template has no ESP", "provision a template `shieldwright build` made")
        now = (image, esp.first_lba * layout.sector_size)  # the template's ESP: the output's before this
        write_esp_files(raw, esp, layout.sector_size, files, cancel=cancel, fsync=False, current=now)
    return tuple(sorted(files))


def _relay_progress(job: Future[TemplateReport], state: ProgressState, progress: Progress) -> None:
    """Show the verification's own progress while it finishes after everything else (10 Hz)."""
    step = None
    while not job.done():
        if state.step != step:
            step = state.step
            label = (
                f"Verifying the template ({step[:1].lower()}{step[1:]})" if step else "Verifying the template"
            )
            progress.begin(label, state.total)
        progress.update(state.done)
        wait([job], timeout=0.1)


def _failed(job: Future[TemplateReport]) -> bool:
    return job.cancelled() or job.exception() is not None or not job.result().ok


def _verdict(job: Future[TemplateReport]) -> TemplateReport:
    """The verification's report; ProvisionError naming the first failed check."""
    report = job.result()
    if not report.ok:
        first = report.failed[0]
        raise ProvisionError(
            f"the template failed verification: {first.name}: {first.detail}",
            "only a template that verifies is provisioned; run `shieldwright verify` for every check",
        )
    return report


def _new_headers(
    image: DiskImage, request: ProvisionRequest, passphrase: bytes | bytearray, pcrs: tuple[int, ...],
    policy: bytes,
) -> tuple[dict[int, bytes], tuple[ProvisionedContainer, ...]]:  # fmt: skip
    """Each LUKS2 container's new header area (by its byte offset on the disk) and what changed."""
    layout = layout_of(image)
    luks = [p for p in layout.partitions if p.content == "luks2"]
    if not luks:
        raise ProvisionError(
            "the template has no LUKS2 container", "provision a template `shieldwright build` made"
        )
    patches: dict[int, bytes] = {}
    done: list[ProvisionedContainer] = []
    for part in luks:
        lp = read_luks_partition(image, part.number)
        try:
            opened, key = unlock_keyslot(lp.header_area, passphrase)
        except WrongPassphraseError:
            raise ProvisionError(
                f"the provisioning passphrase does not open partition {part.number}",
                "give the passphrase the template was built with",
            ) from None
        sealed = seal_to_srk(request.srk, policy)
        secret = keyslot_passphrase(sealed.secret)
        try:
            before = set(lp.header.keyslots)
            area = add_keyslot(lp.header_area, key, secret, TPM_KEYSLOT_KDF, key_checked=True)
        finally:
            wipe(key)
            wipe(secret)
            wipe(sealed.secret)
        slot = _only(set(_header(area).keyslots) - before)
        token = systemd_tpm2_token(sealed, request.srk, pcrs, request.bank, policy)
        area, token_id = add_token(area, token, [slot])
        removed = None
        if not request.keep_passphrase:
            area = remove_keyslot(area, opened)
            removed = opened
        kept = tuple(sorted(_header(area).keyslots))
        patches[lp.offset] = area
        done.append(ProvisionedContainer(part.number, slot, token_id, removed, kept))
    return patches, tuple(done)


def _header(area: bytes) -> LuksHeader:
    return read_header(lambda off, n: area[off : off + n])


def _only(ids: set[int]) -> int:
    (slot,) = ids
    return slot


def _check_written(path: Path, patches: dict[int, bytes]) -> None:
    """Re-read the written disk: every new header area is where it belongs, byte for byte."""
    with open_image(path) as image:
        for offset, area in patches.items():
            if image.read(offset, len(area)) != area:
                raise ProvisionError(
                    f"the new LUKS2 header at byte {offset} did not read back from the output",
                    "nothing was kept; please report this",
                )
