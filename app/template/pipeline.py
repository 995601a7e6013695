"""The template build: a :class:`~app.template.recipe.Recipe` in; a signed, encrypted template and papers out.

:func:`run_build` runs the ordered :data:`STEPS` (open, UKI, PCR, keyslots, the one streaming pass, catalog,
ESP, export, manifest), each reporting into a :class:`BuildProgress` and honouring a
:class:`~app.progress.CancelToken`. Everything is written under a hidden staging directory beside the output
and renamed into place only at the end, so a cancel or failure leaves nothing; the input is only read.
docs/architecture.md walks through the steps and why they are ordered so.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.boot.errors import PcrPredictionError
from app.boot.pcr import predict_pcr11
from app.catalog.create import check_partitions
from app.catalog.format import (
    ESP_CATALOG_PATH,
    Catalog,
    CatalogPartition,
    check_block_size,
    check_template_name,
    parse_version,
    sign_catalog,
    utc_now,
)
from app.disk.esp import DEFAULT_LOADER, list_esp, write_esp_files
from app.disk.image import DiskImage, open_image
from app.disk.layout import layout_of
from app.disk.model import DiskLayout
from app.errors import CancelledError, OutputExistsError, ShieldwrightError
from app.findings import Severity
from app.luks.container import generate_recovery_key
from app.luks.kdf import KdfParams
from app.luks.params import DEFAULT_DATA_OFFSET
from app.luks.relaid_image import RelaidImage, encrypt_image, gpt_bytes, plan_sparse
from app.luks.relayout import plan_relayout
from app.measure.predict import Prediction
from app.measure.profile import load_profile
from app.progress import CancelToken, Progress, ProgressState
from app.signing.output import write_output
from app.signing.signer import Signer
from app.template.build import boot as boot_step
from app.template.build import export as export_step
from app.template.build import keys as keys_step
from app.template.build.output_hash import sha256_regenerated
from app.template.build.progress import BuildProgress, ProgressSnapshot
from app.template.build.report import human_size, render_report
from app.template.build.sinks import AsyncSinks
from app.template.build.staging import FileHasher, Staging, fsync_file, os_error, sha256_file
from app.template.checks import output_collision, private_host_file_problems
from app.template.manifest import (
    ArtefactPaths,
    BuildRecord,
    build_manifest,
    encode_manifest,
    sha256_hex,
    sign_manifest,
)
from app.template.pcr_policy import planned_esp_files, predict_on_image, the_esp
from app.template.recipe import Recipe

__all__ = [
    "ESP_CATALOG_PATH",
    "STEPS",
    "BuildError",
    "BuildInputs",
    "BuildProgress",
    "BuildResult",
    "ProgressSnapshot",
    "artifact_paths",
    "default_protect",
    "run_build",
]

#: The build's steps, in order (what "step k of n" counts).
STEPS = (
    "Open base image",
    "Build and sign the UKI",
    "Predict PCR values",
    "Create LUKS2 keyslots",
    "Write the template (copy, encrypt, hash)",
    "Sign the catalog",
    "Update the ESP",
    "Export",
    "Manifest and report",
)
#: PCR banks predicted into the manifest (virtual TPMs of the major clouds use SHA-256).
PCR_BANKS = ("sha256",)


class BuildError(ShieldwrightError):
    """The recipe cannot be built from this base image as it is."""


@dataclass
class BuildInputs:
    """What a build needs besides the recipe's plain choices: loaded signers and the secrets.

    The CLI loads the signers from the recipe's paths and reads the passphrase from its source; the wizard
    passes its in-memory signers and passphrase. The caller owns (and wipes) ``provisioning_passphrase``.
    ``recovery_key`` is enrolled when given; when it is None and the recipe names a
    ``recovery_key_file``, the build generates one and writes it there (mode 0600).
    """

    recipe: Recipe
    uefi_signer: Signer
    catalog_signer: Signer
    provisioning_passphrase: bytearray = field(repr=False)
    recovery_key: str | None = field(default=None, repr=False)
    #: Replace existing output files (the image and its .vsc, manifest, signature and report).
    overwrite: bool = False
    #: Publish host files (kernel, initrds, stub) that other users may not read - in the clear, in the ESP.
    #: Off, such a file is refused (the CLI's ``--allow-private-inputs``, the Review page's checkbox).
    allow_private_inputs: bool = False


@dataclass(frozen=True)
class BuildResult:
    """The committed files, and a JSON-ready summary (paths, digests, PCR 11, timings; no secrets)."""

    output: Path
    manifest: Path
    manifest_signature: Path
    report: Path
    catalog: Path
    summary: dict[str, Any]
    recovery_key_file: Path | None = None


def artifact_paths(output: str | os.PathLike[str]) -> dict[str, Path]:
    """Every file a build of ``output`` writes, by role: template, catalog, manifest, manifest_signature,
    report (the names the Review page announces before the build runs)."""
    p = ArtefactPaths.for_output(Path(output))
    return {"template": p.output, "catalog": p.catalog, "manifest": p.manifest,
            "manifest_signature": p.signature, "report": p.report}  # fmt: skip


def default_protect(layout: DiskLayout) -> list[int]:
    """The partitions a template protects when nobody says otherwise: root, /usr and XBOOTLDR."""
    return [p.number for p in layout.partitions if p.protectable and p.protect_by_default]


def run_build(
    inputs: BuildInputs,
    *,
    progress: BuildProgress | Progress | None = None,
    cancel: CancelToken | None = None,
) -> BuildResult:
    """Build the template ``inputs.recipe`` describes; see the module docstring.

    ``progress`` is best a :class:`BuildProgress` (any other Progress receives the per-step updates).
    Raises :class:`~app.errors.CancelledError` on cancel and a :class:`~app.errors.ShieldwrightError` with a
    one-line message for any input or environment problem (a full disk is an
    :class:`~app.errors.OutOfSpaceError`); in every such case no output file and no temporary file remain.
    """
    if not isinstance(progress, BuildProgress):
        progress = BuildProgress(forward=progress)
    cancel = cancel or CancelToken()
    build = _Build(inputs, progress, cancel)
    try:
        result = build.run()
    except CancelledError:
        progress.note("Cancelled: nothing was written")
        progress.finish("cancelled")
        raise
    except ShieldwrightError as exc:
        progress.note(f"Failed: {exc.one_line()}")
        progress.finish("failed")
        raise
    except OSError as exc:
        staging: Staging | None = vars(build).get("staging")  # unset if the first step failed early
        folder = staging.dir.parent if staging is not None else None
        err = os_error(exc, f"in step {progress.step_index} ({progress.step_name})", folder)
        progress.note(f"Failed: {err.one_line()}")
        progress.finish("failed")
        raise err from None
    except BaseException as exc:  # a bug (or Ctrl-C in the calling thread): the caller reports it
        progress.note(f"Failed: internal error ({type(exc).__name__})")
        progress.finish("failed")
        raise
    finally:
        build.close()
    progress.finish("done")
    return result


def _source_date_epoch() -> float | None:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) stamps the new ESP files; unset or invalid means "now"."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return float(value) if value.isascii() and value.isdigit() else None


class _Build:
    """One build's state as it moves through the steps; :meth:`close` releases everything it holds.

    Each step sets the attributes the later ones use; those :meth:`close` releases are declared here.
    """

    image: DiskImage
    staging: Staging
    input_hasher: FileHasher
    keys_pool: ThreadPoolExecutor
    keys_job: Future[tuple[KdfParams, keys_step.PreparedKeys, bool]]
    keys: keys_step.PreparedKeys

    def __init__(self, inputs: BuildInputs, progress: BuildProgress, cancel: CancelToken) -> None:
        self.inputs, self.recipe, self.progress, self.cancel = inputs, inputs.recipe, progress, cancel
        self.notes: list[str] = []
        self.started = time.monotonic()
        self.prediction: Prediction | None = None

    # -- plumbing ------------------------------------------------------------------------------------

    def note(self, line: str, *, manifest: bool = False) -> None:
        """A log line; ``manifest`` lines also go into the manifest's and report's notes."""
        self.progress.note(line)
        if manifest:
            self.notes.append(line)

    def run(self) -> BuildResult:
        steps: list[Callable[[], None]] = [
            self._open, self._uki, self._pcrs, self._keys, self._write, self._catalog, self._esp,
            self._export, self._finish,
        ]  # fmt: skip
        assert len(steps) == len(STEPS)
        for number, (name, step) in enumerate(zip(STEPS, steps, strict=True), 1):
            self.progress.start_step(number, name, len(STEPS))
            self.cancel.check()
            t0 = time.monotonic()
            step()
            seconds = time.monotonic() - t0
            self.progress.end_step(seconds)
            self.note(f"  done in {seconds:.1f} s")
        summary = self.result.summary  # completed now that the last step's time is known
        summary["steps"] = [{"name": n, "seconds": round(s, 3)} for n, s in self.progress.step_seconds]
        summary["elapsed_seconds"] = round(time.monotonic() - self.started, 3)
        return self.result

    def close(self) -> None:
        """Release what the steps that ran so far created (a failed step leaves later attributes unset)."""
        made = vars(self)
        hasher: FileHasher | None = made.get("input_hasher")
        pool: ThreadPoolExecutor | None = made.get("keys_pool")
        prepared: keys_step.PreparedKeys | None = made.get("keys")
        image: DiskImage | None = made.get("image")
        staging: Staging | None = made.get("staging")
        if hasher is not None:
            hasher.stop()
        if pool is not None:  # a failed or cancelled build still waits for the KDF in flight
            pool.shutdown(wait=True, cancel_futures=True)
            job = self.keys_job
            if prepared is None and job.done() and not job.cancelled() and job.exception() is None:
                prepared = self.keys = job.result()[1]  # never taken by _keys: cleared below like any other
        if prepared is not None:
            prepared.crypto.clear()  # the data ciphers hold the volume keys (in OpenSSL contexts)
        if image is not None:
            image.close()
        if staging is not None and not staging.committed:
            staging.remove()

    # -- 1. open -------------------------------------------------------------------------------------

    def _open(self) -> None:
        r = self.recipe
        self.base = Path(r.base_image)
        self.fmt = export_step.check_format(r.output.format)
        check_template_name(r.catalog.name)
        parse_version(r.catalog.version)
        check_block_size(r.catalog.block_size)
        if not self.inputs.provisioning_passphrase:
            raise BuildError(
                "the provisioning passphrase is empty", "give the passphrase the VM will be unlocked with"
            )
        self.paths = ArtefactPaths.for_output(Path(r.output.path))
        self.recovery_file = Path(r.encryption.recovery_key_file) if r.encryption.recovery_key_file else None
        self._check_outputs()
        self._check_host_files()

        self.image = open_image(self.base)
        self.layout = layout_of(self.image)
        errors = [f for f in self.layout.findings if f.severity is Severity.ERROR]
        if errors:
            raise BuildError(f"the base image cannot be a template: {errors[0].message}",
                             f"run `shieldwright inspect {self.base}` to see every finding")  # fmt: skip
        self.protect = sorted(check_partitions(self.layout, list(r.protect)))
        encrypt = r.encrypted_partitions
        if not encrypt:
            raise BuildError(
                "no protected partition is to be encrypted",
                "a template encrypts at least its root; a catalog alone is `shieldwright vsc create`",
            )
        self.plan = plan_relayout(
            self.layout, encrypt, DEFAULT_DATA_OFFSET, sector_size=r.encryption.sector_size
        )
        try:
            self.esp = the_esp(self.layout)
        except ShieldwrightError as exc:
            raise BuildError(exc.message, exc.hint) from None
        self.staging = Staging(self.paths.output)
        self.input_hasher = FileHasher(self.base)

        st = self.base.stat()
        self.input_size = st.st_size
        self.input_stamp = _stamp(st)
        only = [n for n in self.protect if n not in encrypt]
        self.note(f"Base image {self.base} ({self.image.format}, {human_size(self.layout.virtual_size)}, "
                  f"{len(self.layout.partitions)} partitions)")  # fmt: skip
        self.note(f"Protecting partition(s) {_join(self.protect)}: encrypting {_join(encrypt)}"
                  + (f", catalog only {_join(only)}" if only else ""))  # fmt: skip
        self.note(f"Output {self.paths.output} ({self.fmt}, {human_size(self.plan.disk_size)})")
        self.sparse = plan_sparse(self.image, self.plan, r.encryption.sparse_ciphertext, cancel=self.cancel)
        for line in self.sparse.notes:
            self.note(line, manifest=True)

    def _check_outputs(self) -> None:
        """Before anything is written: no output is the input, none replaces a file unless asked, and the
        recovery key file is none of the others (renamed over, it would be lost while reported written)."""
        base = self.base
        for path in self.paths.all():
            if _same_file(path, base):
                raise BuildError(
                    f"{path} is the base image", "the input is never modified: choose another output"
                )
        if self.recovery_file is not None:
            clash = output_collision(self.recovery_file, self.recipe)
            if clash is not None:
                raise BuildError(f"the recovery key file {self.recovery_file} is {clash}",
                                 "choose a separate file for the recovery key")  # fmt: skip
        if not self.inputs.overwrite:
            for path in self.paths.all():
                if os.path.lexists(path):
                    raise OutputExistsError(
                        f"{path} already exists", "remove it or choose another output path"
                    )
        if self.recovery_file is not None and os.path.lexists(self.recovery_file):
            raise OutputExistsError(f"the recovery key file {self.recovery_file} already exists",
                                    "move it away (it may hold the key of an earlier template)")  # fmt: skip

    def _check_host_files(self) -> None:
        """Refuse, before anything is written, host files the UKI would publish although other users may
        not read them (unless allowed); the UKI build checks each file again as it reads it."""
        problems = private_host_file_problems(self.recipe, allow=self.inputs.allow_private_inputs)
        for p in problems:
            if p.severity is Severity.ERROR:
                raise BuildError(f"{p.key}: {p.text}", p.hint)
            self.note(f"{p.key}: {p.text} ({p.hint})", manifest=True)

    # -- 2. UKI --------------------------------------------------------------------------------------

    def _uki(self) -> None:
        self._start_keys()
        self.uki = boot_step.make_uki(self.recipe.uki, self.image, self.layout, self.inputs.uefi_signer,
                            cancel=self.cancel, note=self.note,
                            allow_private=self.inputs.allow_private_inputs)  # fmt: skip
        for f in self.uki.host_files:
            self.note(f"Published in the clear (ESP): host file {f.path} as {f.role} (mode {f.mode:04o}, "
                      f"SHA-256 {f.sha256})")  # fmt: skip
        info = self.uki.info
        self.note(self.uki.describe())
        self.note(f"UKI Authenticode SHA-256 {info.authenticode_sha256}")
        subject = self.inputs.uefi_signer.certificate.subject.rfc4514_string()
        if self.uki.signed:
            self.note(f"UKI signed by {subject}")
        else:
            self.note(f"the kept UKI is not signed by the UEFI certificate {subject}: Secure Boot with that "
                      "certificate in db will refuse it", manifest=True)  # fmt: skip

    # -- 3. PCRs -------------------------------------------------------------------------------------

    def _pcrs(self) -> None:
        try:
            banks = list(dict.fromkeys((*PCR_BANKS, self.recipe.pcr.bank)))
            self.pcrs = {b: dict(v) for b, v in predict_pcr11(self.uki.info, banks=banks).items()}
        except PcrPredictionError as exc:
            self.pcrs = {}
            self.note(f"PCR 11 cannot be predicted: {exc.one_line()}", manifest=True)
            return
        for bank, phases in self.pcrs.items():
            self.note(f"PCR 11 ({bank}) at kernel start: {phases['']}")
        self._firmware_pcrs()

    def _firmware_pcrs(self) -> None:
        """PCR 4 and 7 on the recipe's target firmware, for the chain the finished ESP will hold (the base
        image's files with this build's written over them), before anything is written: a chain that
        cannot be predicted stops the build here."""
        policy = self.recipe.pcr
        if policy.firmware is None:
            self.note("no firmware profile ([pcr] firmware_vars, firmware_log or firmware_certs): PCR 4 "
                      "and 7 are not predicted, only PCR 11", manifest=True)  # fmt: skip
            return
        kind, path = policy.firmware
        profile = load_profile(kind, path)
        banks = list(dict.fromkeys((*PCR_BANKS, policy.bank)))
        self.prediction = predict_on_image(
            self.image, self.esp, self.layout.sector_size, self._planned_esp_files(), profile, banks
        )
        for note in self.prediction.chain.notes:
            self.note(f"Boot chain: {note}")
        self.note(f"Firmware profile: {profile.description}")
        for bank in banks:
            for n in (4, 7):
                self.note(f"PCR {n} ({bank}): {self.prediction.pcrs[bank][n]}")

    # -- 4. keys -------------------------------------------------------------------------------------

    def _start_keys(self) -> None:
        """Start creating the LUKS2 headers and data ciphers on a thread of their own.

        Why: they do not depend on the UKI, and their cost is KDF work (the volume-key digest, the keyslot
        KDF and its calibration) that runs outside the GIL - so it overlaps the UKI build and signing
        instead of following it. Only this one thread derives keys (never two KDFs at once). Progress goes
        to a private :class:`~app.progress.ProgressState` that :meth:`_keys` shows when its step comes.
        """

        self.recovery_key = self.inputs.recovery_key
        if self.recovery_key is not None:
            # The caller (the wizard) already showed this key once and had the user store it: it is
            # enrolled but never written beside the template it unlocks.
            self.recovery_file = None
        elif self.recovery_file is not None:
            self.recovery_key = generate_recovery_key()
        self.keys_progress = ProgressState()
        self.keys_pool = ThreadPoolExecutor(1, thread_name_prefix="luks-keys")
        self.keys_job = self.keys_pool.submit(self._derive_keys, self.keys_progress)

    def _derive_keys(self, progress: Progress) -> tuple[KdfParams, keys_step.PreparedKeys, bool]:
        kdf, calibrated = keys_step.kdf_for(self.recipe.encryption, self.cancel)
        prepared = keys_step.prepare_keys(
            self.plan, self.inputs.provisioning_passphrase, kdf, self.recovery_key, progress=progress,
            cancel=self.cancel,
        )  # fmt: skip
        return kdf, prepared, calibrated

    def _keys(self) -> None:
        enc = self.recipe.encryption
        self.progress.begin("Creating LUKS2 keyslots" if enc.kdf_params is not None
                            else f"Calibrating {enc.kdf} for {enc.iter_time_ms} ms, creating LUKS2 keyslots",
                            0)  # fmt: skip
        shown = False
        while True:
            try:
                kdf, self.keys, calibrated = self.keys_job.result(timeout=0.1)
                break
            except TimeoutError:  # still deriving: show how far the keys thread got
                state = self.keys_progress
                if state.total and not shown:
                    self.progress.begin(state.step, state.total)
                    shown = True
                if shown:
                    self.progress.update(state.done)
        self.note(
            f"Keyslot KDF {kdf!r}" + (f" (calibrated here for {enc.iter_time_ms} ms)" if calibrated else "")
        )
        for luks in self.keys.luks:
            kinds = ", ".join(f"{k.id}: {k.kind}" for k in luks.keyslots)
            self.note(f"Partition {luks.partition}: LUKS2 UUID {luks.uuid}, keyslots {kinds}")

    # -- 5. the streaming pass -----------------------------------------------------------------------

    def _write(self) -> None:
        sizes = {n: self.plan.partition(n).size_bytes for n in self.protect}
        sinks = AsyncSinks(sizes, self.recipe.catalog.block_size)
        self.raw = self.staging.path("template.raw")
        self.gpt = gpt_bytes(self.plan)
        # A raw output is hashed by producing its bytes again (template.build.output_hash), never read back:
        # written with O_DIRECT it costs no page-cache work. Other formats read the raw file back to
        # convert it, so it goes through the page cache.
        direct = self.fmt == "raw"
        try:
            encrypt_image(
                self.image, self.layout, self.plan, self.raw, crypto=self.keys.crypto, out_format="raw",
                progress=self.progress, cancel=self.cancel, on_block=sinks, fsync=False, direct=direct,
                gpt=self.gpt, used=self.sparse.maps,
            )  # fmt: skip
            self.block_digests = sinks.finish()
        finally:
            sinks.close()
        if not direct:
            self.keys.crypto.clear()  # else the output hash needs the ciphers once more
        self.note(f"Wrote the template ({human_size(self.plan.disk_size)}); hashed partition(s) "
                  f"{_join(self.protect)} as they were written")  # fmt: skip

    # -- 6. catalog ----------------------------------------------------------------------------------

    def _catalog(self) -> None:
        c = self.recipe.catalog
        parts = []
        for n in self.protect:
            q = self.plan.partition(n)
            parts.append(CatalogPartition.from_digests(
                number=n, partition_guid=q.partition_guid, type_guid=q.type_guid, first_lba=q.first_lba,
                last_lba=q.last_lba, size_bytes=q.size_bytes, block_digests=self.block_digests[n],
            ))  # fmt: skip
        self.catalog = Catalog(
            template_name=c.name,
            template_version=c.version,
            created=utc_now(),
            disk_guid=str(self.plan.disk_guid),
            block_size=c.block_size,
            partitions=parts,
        )
        self.vsc = sign_catalog(self.catalog, self.inputs.catalog_signer)
        self.vsc_file = self.staging.path("template.vsc")
        self.vsc_file.write_bytes(self.vsc)
        for p in parts:
            self.note(f"Catalog: partition {p.number}, {p.block_count} blocks, digest {p.digest}")
        subject = self.inputs.catalog_signer.certificate.subject.rfc4514_string()
        self.note(f"Catalog signed by {subject} ({len(self.vsc)} bytes)")

    # -- 7. ESP --------------------------------------------------------------------------------------

    def _planned_esp_files(self) -> dict[str, bytes]:
        """The boot files this build installs: the UKI, shim's fallback CSV, and the UKI again as
        ``\\EFI\\BOOT\\BOOTX64.EFI`` with ``boot.install_removable``."""
        return planned_esp_files(self.recipe.boot, self.recipe.uki_id, self.uki.data)

    def _esp(self) -> None:
        b = self.recipe.boot
        files = self._planned_esp_files()
        self.uki_paths = [p for p, data in files.items() if data is self.uki.data]
        files[ESP_CATALOG_PATH] = self.vsc
        self.esp_files = files
        vendor = b.vendor_dir.replace("/", "\\").strip("\\").removeprefix("EFI\\").removeprefix("efi\\")
        shim = f"/efi/{vendor}/{DEFAULT_LOADER}".lower()
        present = {e.path.lower() for e in list_esp(self.image, self.esp, self.layout.sector_size)}
        if shim not in present and not b.install_removable:
            self.note(
                f"the ESP has no \\EFI\\{vendor}\\{DEFAULT_LOADER}: the fallback CSV takes effect once shim "
                "is installed there (or build with boot.install_removable)",
                manifest=True,
            )
        planned = self.plan.partition(self.esp.number)
        esp_out = dataclasses.replace(self.esp, first_lba=planned.first_lba, last_lba=planned.last_lba)
        # The ESP was copied unchanged: its present bytes come from the input (in the page cache).
        current = (self.image, self.esp.first_lba * self.layout.sector_size)
        # The partition's LBAs count the disk's logical sectors (4096 bytes on a 4Kn disk), not 512 bytes.
        write_esp_files(self.raw, esp_out, self.layout.sector_size, files, mtime=_source_date_epoch(),
                        cancel=self.cancel, fsync=False, current=current)  # fmt: skip
        for path, data in files.items():
            self.note(f"ESP: {path} ({len(data)} bytes)")

    # -- 8. export -----------------------------------------------------------------------------------

    def _export(self) -> None:
        target = self.staging.path(f"template.{self.fmt}")
        self.final = export_step.export(
            self.raw, target, self.fmt, progress=self.progress, cancel=self.cancel, catalog=self.vsc
        )
        if self.fmt == "vhdx":  # the catalog rides in the VHDX metadata (docs/formats/vsc.md 1.1)
            line, notable = export_step.vhdx_catalog_note(self.vsc)
            self.note(line, manifest=notable)
        if self.final == self.raw:
            self.output_sha256 = self._hash_raw_output()
        else:
            self.raw.unlink()
            self.output_sha256 = sha256_file(self.final, progress=self.progress, cancel=self.cancel,
                                             step="Hashing the output")  # fmt: skip
        fsync_file(self.final)  # the streaming pass and the ESP update left that to here
        self.output_size = self.final.stat().st_size
        self.note(f"Output {self.fmt}: {human_size(self.output_size)}, SHA-256 {self.output_sha256}")

    def _hash_raw_output(self) -> str:
        """SHA-256 of the staged raw template from the input once more, the ESP from the file (see
        :mod:`app.template.build.output_hash`)."""
        esp = self.plan.partition(self.esp.number)
        try:
            with RelaidImage(
                self.image, self.plan, self.keys.crypto, *self.gpt, used=self.sparse.maps
            ) as view:
                return sha256_regenerated(view, self.raw, [(esp.offset, esp.size_bytes)],
                                          progress=self.progress, cancel=self.cancel)  # fmt: skip
        finally:
            self.keys.crypto.clear()

    def _check_input_unchanged(self) -> None:
        """Refuse to finish if something wrote to the base image while the build read it: its digest, the
        ciphertext and the raw output's digest (computed from the input once more) would not agree."""
        try:
            changed = _stamp(self.base.stat()) != self.input_stamp
        except OSError:
            changed = True
        if changed:
            raise BuildError(f"the base image {self.base} changed while the build was reading it",
                             "make sure nothing writes to it during a build, then build again")  # fmt: skip

    def _firmware_pcr_values(self) -> dict[str, dict[str, str]]:
        """``{bank: {"4": hex, "7": hex}}`` when a firmware profile was given, else empty."""
        if self.prediction is None:
            return {}
        return {b: {str(n): v[n] for n in (4, 7)} for b, v in self.prediction.pcrs.items()}

    def _pcr_policy(self) -> dict[str, object]:
        """The manifest's ``pcr_policy``: the selection, its bank, the firmware and which PCRs are known."""
        policy = self.recipe.pcr
        profile = self.prediction.profile if self.prediction else None
        return {
            "pcrs": sorted(policy.pcrs),
            "bank": policy.bank,
            "firmware": profile.to_dict() if profile else None,
            "predicted": [4, 7, 11] if self.prediction else [11],
            "boot_chain": self.prediction.chain.to_dict() if self.prediction else None,
        }

    # -- 9. manifest, report, commit -------------------------------------------------------------------

    def _finish(self) -> None:
        input_sha256 = self.input_hasher.result(progress=self.progress, cancel=self.cancel)
        self._check_input_unchanged()
        self.note(f"Input SHA-256 {input_sha256}")
        r, paths = self.recipe, self.paths
        record = BuildRecord(
            template_name=r.catalog.name, template_version=r.catalog.version, created=self.catalog.created,
            input_path=self.base, input_format=self.image.format, input_size=self.input_size,
            input_sha256=input_sha256, layout=self.layout, output_paths=paths, output_format=self.fmt,
            output_size=self.output_size, output_sha256=self.output_sha256,
            output_virtual_size=self.plan.disk_size, plan=self.plan, protected=self.protect, uki=self.uki,
            uki_paths=self.uki_paths, esp_partition=self.esp.number, esp_files=self.esp_files, pcrs=self.pcrs,
            pcr_policy=self._pcr_policy(), firmware_pcrs=self._firmware_pcr_values(),
            catalog=self.catalog, catalog_sha256=sha256_hex(self.vsc), catalog_esp_path=ESP_CATALOG_PATH,
            uefi_certificate=self.inputs.uefi_signer.certificate,
            catalog_certificate=self.inputs.catalog_signer.certificate, luks=self.keys.luks,
            recovery_key_file=self.recovery_file, notes=self.notes, sparse_ciphertext=self.sparse.manifest(),
            step_seconds=list(self.progress.step_seconds),
        )  # fmt: skip
        doc = build_manifest(record)
        manifest = encode_manifest(doc)
        signature = sign_manifest(manifest, self.inputs.catalog_signer)
        artefacts = [
            ("template", paths.output, self.output_size, self.output_sha256),
            ("catalog", paths.catalog, len(self.vsc), sha256_hex(self.vsc)),
            ("manifest", paths.manifest, len(manifest), sha256_hex(manifest)),
            ("manifest_signature", paths.signature, len(signature), sha256_hex(signature)),
        ]
        report = render_report(
            doc, [(role, p.name, size, digest) for role, p, size, digest in artefacts]
        ).encode()
        artefacts.append(("report", paths.report, len(report), sha256_hex(report)))
        staged = {"manifest": manifest, "manifest_signature": signature, "report": report}
        for name, data in staged.items():
            self.staging.path(name).write_bytes(data)
        self.cancel.check()  # the last moment a cancel is honoured: after this the files are in place

        def write_recovery_key() -> list[Path]:
            if self.recovery_file is None or self.recovery_key is None:
                return []
            write_output(self.recovery_file, (self.recovery_key + "\n").encode("ascii"), private=True)
            return [self.recovery_file]

        moves = [(self.vsc_file, paths.catalog)] + [
            (self.staging.path(n), getattr(paths, _ATTR[n])) for n in staged
        ]
        moves.append((self.final, paths.output))  # the image last: whoever waits for it finds its papers
        self.staging.commit(moves, overwrite=self.inputs.overwrite, extra=write_recovery_key)
        for role, path, size, digest in artefacts:
            self.note(f"Wrote {role} {path} ({human_size(size)}, SHA-256 {digest})")
        if self.recovery_file is not None and self.recovery_key is not None:
            self.note(f"Wrote the recovery key to {self.recovery_file} (mode 0600): store it safely")
        self.result = BuildResult(
            output=paths.output,
            manifest=paths.manifest,
            manifest_signature=paths.signature,
            report=paths.report,
            catalog=paths.catalog,
            recovery_key_file=self.recovery_file if self.recovery_key else None,
            summary=self._summary(doc, artefacts),
        )

    def _summary(self, doc: dict[str, Any], artefacts: list[tuple[str, Path, int, str]]) -> dict[str, Any]:
        return {
            "ok": True,
            "output": str(self.paths.output),
            "format": self.fmt,
            "template": doc["template"],
            "artefacts": [
                {"role": role, "path": str(p), "size_bytes": size, "sha256": digest}
                for role, p, size, digest in artefacts
            ],  # fmt: skip
            "input": {"path": str(self.base), "sha256": doc["input"]["sha256"]},
            "partitions": doc["partitions"]["after"],
            "uki": {k: doc["uki"][k] for k in ("sha256", "authenticode_sha256", "esp_paths", "cmdline")},
            "pcr_predictions": doc["pcr_predictions"],
            "catalog": {k: doc["catalog"][k] for k in ("path", "sha256", "esp_path", "partitions")},
            "luks": doc["luks"],
            "recovery_key_file": str(self.recovery_file)
            if self.recovery_file and self.recovery_key
            else None,
            "notes": list(self.notes),
            "steps": [],  # filled in by run() once the last step has ended
            "elapsed_seconds": None,
        }


_ATTR = {"manifest": "manifest", "manifest_signature": "signature", "report": "report"}


def _join(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers) or "none"


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    """What changes when a file is written to (or replaced)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.abspath(a) == os.path.abspath(b) or (a.exists() and os.path.samefile(a, b))
    except OSError:
        return False
