"""The Review page's content: its engine calls, the equivalent command, output names, and the summary rows.

Split from the page so the page keeps its widgets and actions. Every value comes from the state (the
recipe's option classes) or from the engine (the options table, artefact names, cipher, PCR 11), never
restated here; the two calls that touch files run in the executor.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QCoreApplication

from app.boot import pcr
from app.errors import ShieldwrightError
from app.findings import Finding
from app.gui.presentation import describe_kdf, display_name, human_size
from app.gui.state import SigningChoice, WizardState
from app.gui.widgets.certificate_details import thumbprint_hex
from app.gui.widgets.review_summary_view import Group, Row
from app.template.build.export import SUFFIXES
from app.template.build.keys import CIPHER, KEY_BITS
from app.template.checks import (
    private_host_file_problems,
    private_host_files,
    published_host_files,
    validate_recipe,
)
from app.template.options import equivalent_argv, unflagged_choices
from app.template.pipeline import artifact_paths
from app.template.recipe import Recipe, RecipeError, default_recovery_key_file, parse_image_ref
from app.template.recipe_file import save_recipe

#: How the wizard allows a private host file (the hint of its ERROR finding).
PRIVATE_HINT = 'use another file, or tick "Publish private host files" below if it is meant to be public'
#: The PCR bank shown on the page: SHA-256, before any systemd phase word is measured.
PCR_BANK = "sha256"


def tr(text: str) -> str:
    return QCoreApplication.translate("ReviewPage", text)


@dataclass(frozen=True)
class ReviewCheck:
    """What the background check found: the recipe's findings, and PCR 11 of the UKI built so far."""

    findings: list[Finding]
    #: PCR 11 (SHA-256) after the UKI's stub ran, before any systemd phase; None when unknown.
    pcr11: str | None = None
    #: Why PCR 11 is not shown (no UKI yet, cannot be predicted).
    pcr_note: str = ""
    #: Host files published in the clear whose mode is private (their paths as text).
    private_files: tuple[str, ...] = ()


# -- engine calls (run in the executor) ---------------------------------------------------------------


def check_recipe(recipe: Recipe, uki: bytes | None, allow_private: bool = False) -> ReviewCheck:
    """Runs in the executor: validate the recipe (it may look at files), look at the modes of the host files
    it publishes (an ERROR for a private one unless ``allow_private``) and predict PCR 11."""
    findings = list(validate_recipe(recipe))
    problems = private_host_file_problems(recipe, allow=allow_private, hint=PRIVATE_HINT)
    findings += [p.finding() for p in problems]
    private = tuple(str(f.path) for f, _ in private_host_files(recipe))
    pcr11, note = None, ""
    if uki is None:
        note = "build the UKI on the Boot image page to see it"
    else:
        try:
            pcr11 = pcr.predict_pcr11(uki, banks=(PCR_BANK,))[PCR_BANK][""]
        except ShieldwrightError as exc:
            note = exc.one_line()
    return ReviewCheck(findings, pcr11, note, private)


def save_recipe_file(recipe: Recipe, path: str, overwrite: bool = False) -> Path:
    """Runs in the executor: write the recipe TOML. ``overwrite`` only once the user said *Replace*; else an
    existing file (even one that appeared since the page asked) is an OutputExistsError, never replaced."""
    return save_recipe(recipe, Path(path), overwrite=overwrite)


# -- the equivalent command --------------------------------------------------------------------------------


def equivalent_command(recipe: Recipe | None, saved: Path | None, error: str = "") -> tuple[str, str]:
    """The command that replays ``recipe`` and a note on what it leaves out: ``shieldwright build SAVED``
    when the saved recipe file says the same, else the options table's flags (:func:`equivalent_argv`),
    naming the choices only the saved recipe replays (:func:`unflagged_choices`). ``("", why)`` while a
    choice is missing (``error`` says which)."""
    if saved is not None:
        note = tr("Replays the saved recipe. Add --passphrase-file FILE to run it unattended.")
        return shlex.join(["shieldwright", "build", str(saved)]), note
    if recipe is None:
        return "", tr("No command yet: %1").replace("%1", error)
    left = unflagged_choices(recipe)
    if not left:
        note = tr("The flags say every choice; a saved recipe would say the same.")
    else:
        note = tr(
            "No flag says %1: the command leaves them to the build's defaults. Save the recipe to replay "
            "every choice exactly."
        ).replace("%1", ", ".join(left))
    return shlex.join(equivalent_argv(recipe)), note


# -- output names ------------------------------------------------------------------------------------------


def format_label(fmt: str) -> str:
    return {
        "raw": tr("Raw disk image (.raw)"),
        "vhdx": tr("VHDX (.vhdx)"),
        "vhd": tr("Fixed VHD (.vhd)"),
        "qcow2": tr("QCOW2 (.qcow2)"),
    }.get(fmt, fmt)


def extension(fmt: str) -> str:
    """The file name extension of ``fmt`` (without the dot): the first suffix the engine maps to it."""
    return next((s for s, f in SUFFIXES.items() if f == fmt), "." + fmt)[1:]


def format_for_path(path: Path) -> str | None:
    """The format a known extension stands for (the engine's mapping, as ``build -o`` reads it)."""
    return SUFFIXES.get(path.suffix.lower())


def with_format_suffix(path: Path, fmt: str) -> Path:
    """``path`` with the extension of ``fmt`` when it has a known image extension (else unchanged)."""
    return path.with_suffix("." + extension(fmt)) if format_for_path(path) is not None else path


def safe_stem(name: str, version: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.") or "template"
    return f"{stem}-{version}" if version else stem


def default_output_path(state: WizardState, fmt: str = "raw") -> Path | None:
    """``<template-name>-<version>.<ext>`` next to the base image (None without a base image)."""
    if state.image_path is None:
        return None
    o = state.catalog.options if state.catalog is not None else None
    stem = safe_stem(o.name, o.version) if o is not None else safe_stem("", "")
    return state.image_path.parent / f"{stem}.{extension(fmt)}"


def encrypted_partitions(state: WizardState) -> list[int]:
    """The partitions the build encrypts (none before the Encryption page was shown)."""
    if state.encryption is None:
        return []
    chosen = state.encryption.options.partitions
    return sorted(state.protected if chosen is None else chosen)


def passphrase_file(state: WizardState) -> Path | None:
    """The file a replayed recipe reads the provisioning passphrase from (None: it prompts)."""
    source = state.encryption.options.passphrase if state.encryption is not None else None
    return Path(source.value) if source is not None and source.kind == "file" and source.value else None


def recovery_key_file(state: WizardState) -> Path | None:
    """Where the wizard's build writes a recovery key, or None: it writes none when it is handed the key the
    user stored from the Encryption page (always, once that page is done). The recipe still names a file
    beside the output: a replay with ``shieldwright build`` makes a new key and writes it there."""
    enc, path = state.encryption, state.output.path if state.output is not None else None
    if enc is None or not enc.recovery_key or not encrypted_partitions(state) or path is None:
        return None
    return default_recovery_key_file(path) if enc.key_for_build() is None else None


def confirmation_text(state: WizardState) -> str:
    """What Generate writes, and that the base image is only read (the Review page's last words)."""
    path = state.output.path if state.output is not None else None
    if path is None:
        return tr("Choose where the template is written.")
    base = state.image_path.name if state.image_path else "?"
    text = (
        tr(
            "Generate writes the template %1 in %2, with its catalog, signed manifest and report. "
            "The base image %3 is only read, never modified."
        )
        .replace("%1", path.name)
        .replace("%2", str(path.parent))
        .replace("%3", base)
    )
    if path.exists():  # the build never replaces an output it was not told to
        text += " " + tr(
            "%1 already exists: Generate stops rather than replace it — choose another name or move it."
        ).replace("%1", path.name)
    return text


# -- the rows ----------------------------------------------------------------------------------------------


def _in_partition(ref: str) -> str:
    """``2:/vmlinuz`` as ``/vmlinuz (partition 2)``."""
    try:
        number, path = parse_image_ref(ref)
    except RecipeError:
        return ref
    return f"{path} (" + tr("partition %1").replace("%1", str(number)) + ")"


def _path_of(ref: str) -> str:
    try:
        return parse_image_ref(ref)[1]
    except RecipeError:
        return ref


def _signer_rows(label: str, choice: SigningChoice | None) -> list[Row]:
    if choice is None or choice.info is None:
        return [(label, tr("none chosen"), False)]
    info = choice.info
    return [
        (label, info.subject, False),
        (tr("SHA-256 thumbprint"), thumbprint_hex(info.sha256_fingerprint), True),
    ]


def _host_files_text(recipe: Recipe | None, check: ReviewCheck | None) -> str:
    """Every host file the UKI puts in the clear into the ESP, private ones marked (after the check)."""
    if recipe is None:
        return tr("unknown until the choices are complete")
    files = published_host_files(recipe)
    if not files:
        return tr("none — the UKI comes from the base image")
    private = set(check.private_files) if check is not None else set()
    lines = []
    for f in files:
        line = f"{f.role}: {f.path}"
        if str(f.path) in private:
            line += " — " + tr("PRIVATE: other users of this computer cannot read it")
        lines.append(line)
    return "\n".join(lines)


def _base_image(state: WizardState) -> list[Row]:
    layout = state.layout
    if state.image_path is None or layout is None:
        return [(tr("Base image"), tr("none opened"), False)]
    parts = ", ".join(f"{p.number} {display_name(p)} ({human_size(p.size_bytes)})" for p in layout.partitions)
    protected = [p for p in layout.partitions if p.number in state.protected]
    return [
        (tr("File"), str(state.image_path), False),
        (tr("Format and size"),
         f"{layout.format}, {human_size(layout.virtual_size)} — " + tr("read only, never modified"), False),
        (tr("Partitions (GPT)"), parts or tr("none"), False),
        (tr("Protected"), ", ".join(f"{p.number} {display_name(p)}" for p in protected) or tr("none"), False),
    ]  # fmt: skip


def _signing(state: WizardState) -> list[Row]:
    rows = _signer_rows(tr("UEFI image signing"), state.uefi_signing)
    if state.catalog_same_as_uefi:
        rows.append((tr("Catalog and manifest"), tr("signed with the UEFI image signing certificate"), False))
    else:
        rows += _signer_rows(tr("Catalog and manifest"), state.catalog_signing)
    return rows


def _uki(state: WizardState, recipe: Recipe | None, check: ReviewCheck | None) -> list[Row]:
    rows: list[Row] = []
    choice, o = state.uki, state.uki.options
    if not choice.configured:
        rows.append((tr("Kernel"), tr("not chosen"), False))
    else:
        if o.source == "existing" and o.existing_uki is not None:
            action = {"keep": tr("kept as it is"), "resign": tr("re-signed"), "replace": tr("replaced")}
            what = action.get(o.existing_action or "", o.existing_action or "")
            rows.append((tr("Existing UKI"), f"{_in_partition(o.existing_uki)}, {what}", False))
        if o.builds_new_uki:
            if o.kernel_from_image:
                kernel = _in_partition(o.kernel) if o.kernel else ""
                initrds = ", ".join(_path_of(f) for f in o.initrds)
            else:
                kernel, initrds = str(o.kernel), ", ".join(o.initrds)
            rows.append((tr("Kernel"), kernel, False))
            rows.append((tr("Initrd"), initrds or tr("none"), False))
            rows.append((tr("Command line"), o.cmdline or tr("(empty)"), True))
            rows.append((tr("Stub"), str(o.stub) if o.stub else tr("the host's systemd-stub"), False))
    signer = state.uefi_signing
    if signer is not None and signer.info is not None:
        rows.append((tr("Signed by"), signer.info.subject, False))
    else:
        rows.append((tr("Signed by"), tr("nobody — Secure Boot will refuse it"), False))
    pcr = tr("PCR 11 (SHA-256, before any phase)")
    if check is not None and check.pcr11:
        rows.append((pcr, check.pcr11, True))
    elif check is not None:
        rows.append((pcr, tr("not shown: %1").replace("%1", check.pcr_note), False))
    else:
        rows.append((pcr, tr("computing…"), False))
    if choice.configured:
        rows.append((tr("Host files in the clear (ESP)"), _host_files_text(recipe, check), False))
    return rows


def _kdf_text(state: WizardState) -> str:
    enc = state.encryption
    if enc is None:
        return ""
    params = enc.kdf_params
    if params is not None:
        return describe_kdf(params, enc.options.iter_time_ms)
    return tr("%1, not calibrated yet").replace("%1", enc.options.kdf)


def _encryption(state: WizardState) -> list[Row]:
    enc, chosen = state.encryption, encrypted_partitions(state)
    if enc is None or not chosen:
        return [(tr("Partitions"), tr("none encrypted"), False)]
    names = {p.number: display_name(p) for p in (state.layout.partitions if state.layout else [])}
    listed = ", ".join(f"{n} {names.get(n, '')}".strip() for n in chosen)
    return [
        (tr("Partitions"), listed + " — " + tr("LUKS2, encrypted in full"), False),
        (tr("Cipher"), f"{CIPHER}, {KEY_BITS}-bit key", False),
        (tr("Sector size"), tr("%1 bytes").replace("%1", str(enc.options.sector_size)), False),
        (tr("Key derivation"), _kdf_text(state), False),
        (tr("Provisioning passphrase"), tr("set (not shown)") if enc.passphrase else tr("missing"), False),
        (
            tr("Recovery key"),
            (
                tr("yes — the key you stored (Generate writes no file of it)")
                if enc.key_for_build() is not None
                else tr("yes — Generate writes it beside the template")
            )
            if enc.recovery_key
            else tr("no"),
            False,
        ),
    ]


def _catalog(state: WizardState) -> list[Row]:
    if state.catalog is None:
        return [(tr("Catalog"), tr("not configured"), False)]
    o = state.catalog.options
    return [
        (tr("Template name"), o.name or tr("(none)"), False),
        (tr("Version"), o.version, False),
        (tr("Block size"), human_size(o.block_size), False),
        (tr("Stored"), tr("in the ESP and beside the template"), False),
    ]


def _output(state: WizardState, fmt: str) -> list[Row]:
    path = state.output.path if state.output is not None else None
    if path is None:
        return [(tr("Template"), tr("not chosen"), False)]
    also = [p.name for role, p in artifact_paths(path).items() if role != "template"]
    recovery = recovery_key_file(state)
    if recovery is not None:
        also.append(recovery.name + " " + tr("(the recovery key, mode 0600)"))
    return [
        (tr("Template"), str(path), False),
        (tr("Format"), format_label(fmt), False),
        (tr("Also written"), ", ".join(also), False),
    ]


def summary_groups(
    state: WizardState, recipe: Recipe | None, check: ReviewCheck | None, output_format: str
) -> list[Group]:
    """``[(group, [(label, value, monospace), …]), …]`` in the order the build does them. ``recipe`` is
    the state's recipe (None while a choice is missing), ``check`` the last background check."""
    return [
        (tr("1. Base image"), _base_image(state)),
        (tr("2. Signing certificates"), _signing(state)),
        (tr("3. Boot image (UKI)"), _uki(state, recipe, check)),
        (tr("4. Encryption"), _encryption(state)),
        (tr("5. Signature catalog"), _catalog(state)),
        (tr("6. Output"), _output(state, output_format)),
    ]
