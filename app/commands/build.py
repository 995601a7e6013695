"""``shieldwright build [RECIPE.toml]``: build a signed, encrypted template (``Protect-TemplateDisk``).

The recipe holds every choice; like ``Protect-TemplateDisk`` the common ones are also options, which
override the recipe's values or - with ``--base``, ``-o``, ``--name`` and ``--uefi-cert`` at least -
replace a recipe altogether. ``--save-recipe FILE`` writes the effective recipe (recipe + options) before
building, so the same build can be replayed from it.

Secrets never come from the command line (``ps`` shows argv): the provisioning passphrase comes from
``--passphrase-file``, else the recipe's source (a file, an environment variable, or a prompt on the
terminal, asked twice); a signing key's passphrase from ``--key-passphrase-file``, else the recipe's
source, and it is only asked for when the key turns out to be encrypted.

A UKI built from host files (``uki.source = "files"``, a ``uki.stub``) lands unencrypted in the ESP:
a host file other users may not read (``/etc/shadow``, a private key) is refused unless
``--allow-private-inputs``; the manifest and the report list every host file published.
``--save-recipe`` never replaces an existing file without ``--force``, nor names one of the build's files.

Progress goes to stderr: on a terminal a status line (step k/n, bar, rate, ETA) under the log; otherwise
the log's plain lines. The build runs on a worker thread so that Ctrl-C (or SIGTERM, SIGHUP: see
:mod:`app.cli`) only *requests* a cancel: the build stops at its next check, removes every temporary
file, and the command exits with 128 + the signal's number (130 for Ctrl-C) and nothing written.
``--json`` prints the build's summary (paths, digests, PCR 11 predictions) on stdout.

Exit codes: 0 built; 2 bad input (a recipe error, an unreadable or unsuitable image, a wrong key
passphrase, a full disk); 130 cancelled (129 SIGHUP, 143 SIGTERM) - in every failure case nothing is left
in the output folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from app.commands._util import human_size, warn_short_passphrase
from app.errors import CancelledError, ShieldwrightError

FORMATS = ("raw", "vhdx", "vhd", "qcow2")
PRIVATE_HINT = "use another file; if it is meant to be public, chmod o+r it or pass --allow-private-inputs"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="build a signed, encrypted template disk from a recipe and/or options",
        description="Build a template: open the base image (read-only), build and sign a UKI, predict PCR "
        "11, encrypt the protected partitions with LUKS2 in one streaming pass while hashing them for the "
        "signed volume signature catalog, install UKI and catalog in the ESP, export, and write a signed "
        "manifest and an HTML report beside the output. Options override the recipe; --base, -o, --name and "
        "--uefi-cert/--uefi-key are enough without one.",
    )
    p.add_argument("recipe", nargs="?", help="recipe file (.toml); optional when the options say enough")
    p.add_argument("-o", "--output", metavar="OUT", help="the template image (default: the recipe's)")
    p.add_argument("--json", action="store_true", help="print the build summary as JSON on stdout")
    p.add_argument(
        "--base", metavar="IMAGE", help="base disk image (raw, VHD, VHDX or qcow2; never modified)"
    )
    p.add_argument("--protect", metavar="N", type=int, action="append",
                   help="GPT number of a partition to protect (encrypt + catalog); repeat for more "
                        "(default without a recipe: root, /usr and XBOOTLDR)")  # fmt: skip
    p.add_argument("--name", help="template name")
    p.add_argument(
        "--version", metavar="A.B.C.D", help="template version (default without a recipe: 1.0.0.0)"
    )
    p.add_argument(
        "--uefi-cert", metavar="C", help="certificate that signs the UKI (in the VM firmware's db)"
    )
    p.add_argument("--uefi-key", metavar="K", help="its private key (omit for PKCS#12 or a combined PEM)")
    p.add_argument("--catalog-cert", metavar="C", help="certificate that signs the catalog and the manifest "
                   "(default: the UEFI certificate)")  # fmt: skip
    p.add_argument("--catalog-key", metavar="K", help="its private key")
    p.add_argument("--key-passphrase-file", metavar="FILE", help="passphrase of the signing key(s)")
    p.add_argument("--passphrase-file", metavar="FILE", help="the provisioning passphrase (LUKS2 keyslot 0)")
    p.add_argument("--recovery-key-file", metavar="FILE",
                   help="add a recovery keyslot; write the generated key to FILE (mode 0600)")  # fmt: skip
    p.add_argument("--cmdline", metavar="TEXT", help="kernel command line of the UKI")
    p.add_argument("--format", choices=FORMATS, help="output format (default: the recipe's, else from -o's "
                   "extension, else raw)")  # fmt: skip
    p.add_argument("--install-removable", action="store_true",
                   help="also install the UKI as \\EFI\\BOOT\\BOOTX64.EFI (images without shim)")  # fmt: skip
    p.add_argument("--kdf", choices=("argon2id", "pbkdf2"), help="keyslot KDF (default argon2id)")
    p.add_argument("--iter-time", metavar="MS", type=int,
                   help="KDF unlock time to calibrate for, like cryptsetup (default 2000)")  # fmt: skip
    p.add_argument("--allow-private-inputs", action="store_true",
                   help="publish host files (UKI kernel, initrds, stub) that other users may not read: "
                        "the UKI sits unencrypted in the ESP, so they are refused without this")  # fmt: skip
    p.add_argument("--save-recipe", metavar="FILE", help="write the effective recipe to FILE, then build "
                   "(an existing FILE is replaced only with --force)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace existing output files (and --save-recipe's)")
    p.set_defaults(func=cmd_build)


# -- the effective recipe ---------------------------------------------------------------------------------


def _format_for(path: Path) -> str | None:
    from app.template.build.export import SUFFIXES

    return SUFFIXES.get(path.suffix.lower())


def effective_recipe(args: argparse.Namespace) -> Any:
    """The recipe file (if any) with the options applied; a new recipe from the options alone otherwise."""
    from app.template.recipe import (
        BootOptions,
        CatalogOptions,
        EncryptionOptions,
        OutputOptions,
        Recipe,
        SecretSource,
        SigningOptions,
        UkiOptions,
        load_recipe,
    )

    if args.recipe:
        recipe = load_recipe(args.recipe)
    else:
        missing = [opt for opt, value in (("--base", args.base), ("-o", args.output), ("--name", args.name),
                                          ("--uefi-cert", args.uefi_cert)) if not value]  # fmt: skip
        if missing:
            raise ShieldwrightError(
                f"no recipe given, and {', '.join(missing)} missing",
                "give a recipe file, or at least --base, -o, --name and --uefi-cert",
            )
        out = Path(args.output).absolute()
        recipe = Recipe(
            base_image=Path(args.base).absolute(),
            protect=[],
            signing=SigningOptions(uefi_cert=Path(args.uefi_cert).absolute()),
            uki=UkiOptions(),
            encryption=EncryptionOptions(),
            catalog=CatalogOptions(name=args.name, version=args.version or "1.0.0.0"),
            boot=BootOptions(),
            output=OutputOptions(path=out, format=args.format or _format_for(out) or "raw"),
        )
    s, e = recipe.signing, recipe.encryption
    if args.base:
        recipe.base_image = Path(args.base).absolute()
    if args.output:
        recipe.output.path = Path(args.output).absolute()
        recipe.output.format = args.format or _format_for(recipe.output.path) or recipe.output.format
    elif args.format:
        recipe.output.format = args.format
    if args.protect:
        recipe.protect = list(args.protect)
        if e.partitions is not None:
            e.partitions = [n for n in e.partitions if n in recipe.protect] or None
    if args.name:
        recipe.catalog.name = args.name
    if args.version:
        recipe.catalog.version = args.version
    if args.uefi_cert:
        s.uefi_cert = Path(args.uefi_cert).absolute()
        s.uefi_key = None
    if args.uefi_key:
        s.uefi_key = Path(args.uefi_key).absolute()
    if args.catalog_cert:
        s.catalog_cert, s.catalog_key = Path(args.catalog_cert).absolute(), None
    if args.catalog_key:
        s.catalog_key = Path(args.catalog_key).absolute()
    if args.key_passphrase_file:
        s.key_passphrase = SecretSource.file(Path(args.key_passphrase_file).absolute())
        s.catalog_key_passphrase = None
    if args.passphrase_file:
        e.passphrase = SecretSource.file(Path(args.passphrase_file).absolute())
    if args.recovery_key_file:
        e.recovery_key_file = Path(args.recovery_key_file).absolute()
    if args.kdf and args.kdf != e.kdf:
        e.kdf, e.kdf_params = args.kdf, None
    if args.iter_time is not None:
        e.iter_time_ms, e.kdf_params = args.iter_time, None
    if args.cmdline is not None:
        recipe.uki.cmdline = " ".join(args.cmdline.split())
    if args.install_removable:
        recipe.boot.install_removable = True
    if not recipe.protect:
        recipe.protect = _default_protect(recipe.base_image)
    return recipe


def _default_protect(base: Path) -> list[int]:
    from app.disk.layout import inspect_image
    from app.template.pipeline import default_protect

    numbers = default_protect(inspect_image(base))
    if not numbers:
        raise ShieldwrightError(f"{base} has no root, /usr or XBOOTLDR partition to protect by default",
                                "name the partitions with --protect N")  # fmt: skip
    return numbers


def _check(recipe: Any, allow_private: bool = False) -> None:
    """The recipe's findings (warnings printed, the first error raised) before anything is asked or written,
    host files the UKI would publish although private included."""
    from app.findings import Severity
    from app.template.checks import private_host_file_problems
    from app.template.recipe import RecipeError, validate_recipe

    private = private_host_file_problems(recipe, allow=allow_private, hint=PRIVATE_HINT)
    findings = validate_recipe(recipe) + [p.finding() for p in private]
    for f in findings:
        if f.severity is Severity.WARNING:
            print(f"shieldwright: warning: {f.message}", file=sys.stderr)
    errors = [f for f in findings if f.severity is Severity.ERROR]
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise RecipeError(
            f"the recipe cannot be built: {errors[0].message}{more}", "fix the recipe or the options"
        )


# -- secrets and signers -------------------------------------------------------------------------------------


def _load_signer(cert: Path, key: Path | None, source: Any, what: str) -> Any:
    """Load a signer; the passphrase is read from ``source``, and a prompt only when the key needs one."""
    from app.errors import WrongPassphraseError
    from app.signing.keys import load_signer
    from app.template.recipe import read_secret

    interactive = sys.stdin.isatty()
    if source.kind == "prompt":
        try:
            return load_signer(cert, key, None)
        except WrongPassphraseError:
            if not interactive:
                raise
    secret = read_secret(source, prompt_text=f"Passphrase for the {what} key: ", interactive=interactive,
                         key="signing.key_passphrase", option="--key-passphrase-file")  # fmt: skip
    try:
        return load_signer(cert, key, bytes(secret))
    finally:
        secret[:] = bytes(len(secret))


def _provisioning_passphrase(recipe: Any) -> bytearray:
    from app.template.recipe import read_secret

    source = recipe.encryption.passphrase
    interactive = sys.stdin.isatty()
    secret = read_secret(
        source,
        prompt_text="Provisioning passphrase (unlocks the template's LUKS2 volumes): ",
        interactive=interactive,
        key="encryption.passphrase",
        option="--passphrase-file",
    )
    if source.kind == "prompt":
        again = read_secret(source, prompt_text="Repeat it: ", interactive=interactive)
        same = again == secret
        again[:] = bytes(len(again))
        if not same:
            secret[:] = bytes(len(secret))
            raise ShieldwrightError("the passphrases do not match", "type the same passphrase twice")
    if not secret:
        raise ShieldwrightError("the provisioning passphrase is empty", "give a passphrase")
    warn_short_passphrase(secret, "the provisioning passphrase")
    return secret


# -- running with a display ------------------------------------------------------------------------------


class BuildDisplay:
    """Shows a BuildProgress on stderr: log lines, plus a redrawn status line when stderr is a terminal."""

    def __init__(self, progress: Any, stream: Any = None) -> None:
        self.progress = progress
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.seen = 0
        self.status = False

    def refresh(self) -> None:
        lines, self.seen = self.progress.lines_since(self.seen)
        out = []
        if self.status and (lines or not self.tty):
            out.append("\r\033[K")
            self.status = False
        out += [line + "\n" for line in lines]
        if self.tty:
            out.append("\r\033[K" + self.status_line())
            self.status = True
        if out:
            self.stream.write("".join(out))
            self.stream.flush()

    def status_line(self) -> str:
        s = self.progress.snapshot()
        if s.step_index == 0:
            return ""
        width = shutil.get_terminal_size((100, 20)).columns
        # Numbers first, the step's name last: a narrow terminal cuts the name, never the ETA.
        text = f"[{s.step_index}/{s.step_count}]"
        if s.total > 1:
            filled = int(16 * s.fraction)
            text += f" [{'#' * filled}{'.' * (16 - filled)}] {100 * s.fraction:3.0f}%"
            if s.total >= 1 << 20:  # bytes: size, rate and ETA mean something
                text += f" {human_size(s.done)}/{human_size(s.total)}"
                if s.rate > 0:
                    text += f" {s.rate / 1e6:.0f} MB/s"
                if s.eta is not None:
                    text += f" ETA {int(s.eta) // 60}:{int(s.eta) % 60:02d}"
        text += f" {s.step_name}"
        if s.detail and s.detail != s.step_name:
            text += f": {s.detail}"
        return text[: max(10, width - 1)]

    def close(self) -> None:
        self.refresh()
        if self.status:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.status = False


def run_with_display(inputs: Any, stream: Any = None) -> Any:
    """Run the build on a worker thread, showing progress; Ctrl-C requests a cancel and waits for it."""
    from app.progress import CancelToken
    from app.template.pipeline import BuildProgress, run_build

    progress, cancel = BuildProgress(), CancelToken()
    display = BuildDisplay(progress, stream)
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["result"] = run_build(inputs, progress=progress, cancel=cancel)
        except BaseException as exc:  # handed to the main thread, which re-raises it
            outcome["error"] = exc
        finally:
            done.set()

    # Poll the event, not Thread.join: a join interrupted by KeyboardInterrupt can leave is_alive() saying
    # False while the thread still runs (CPython gh-90882), and the build must be waited for to clean up.
    # Event.wait returns as soon as the build ends (a plain sleep would add up to one period to every build).
    threading.Thread(target=work, name="shieldwright-build", daemon=True).start()
    try:
        while not done.is_set():
            try:
                done.wait(0.1)
                display.refresh()
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP (app.cli.Interrupted)
                if not cancel.cancelled:
                    what = str(exc) if getattr(exc, "signum", None) else "Ctrl-C"
                    progress.note(f"{what}: cancelling, removing temporary files ...")
                cancel.cancel()
    finally:
        display.close()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _save_recipe(recipe: Any, path: str, force: bool) -> None:
    """Write the effective recipe; never over one of the build's own files, never over an existing file
    unless ``--force`` (a mistyped name must not replace a key or an image: issue 17 item 8)."""
    from app.template.checks import output_collision
    from app.template.recipe import save_recipe

    clash = output_collision(path, recipe)
    recovery = recipe.encryption.recovery_key_file
    if clash is None and recovery is not None and os.path.abspath(path) == os.path.abspath(recovery):
        clash = f"the recovery key file ({recovery})"
    if clash is not None:
        raise ShieldwrightError(f"--save-recipe {path} is {clash}", "save the recipe under another name")
    saved = save_recipe(recipe, path, overwrite=force)
    print(f"shieldwright: recipe saved to {saved}", file=sys.stderr)


def cmd_build(args: argparse.Namespace) -> int:
    recipe = effective_recipe(args)
    allow_private = bool(getattr(args, "allow_private_inputs", False))
    _check(recipe, allow_private)
    if args.save_recipe:
        _save_recipe(recipe, args.save_recipe, args.force)
    from app.template.pipeline import BuildInputs

    s = recipe.signing
    uefi = _load_signer(s.uefi_cert, s.uefi_key, s.key_passphrase, "UEFI signing")
    catalog = uefi
    if s.catalog_cert is not None:
        catalog = _load_signer(s.catalog_cert, s.catalog_key, s.catalog_passphrase_source, "catalog signing")
    passphrase = _provisioning_passphrase(recipe)
    started = time.monotonic()
    try:
        inputs = BuildInputs(recipe, uefi, catalog, passphrase, overwrite=args.force,
                             allow_private_inputs=allow_private)  # fmt: skip
        result = run_with_display(inputs)
    except CancelledError:
        raise CancelledError("Cancelled", "nothing was written; the base image is unchanged") from None
    finally:
        passphrase[:] = bytes(len(passphrase))
    if args.json:
        print(json.dumps(result.summary, indent=2, ensure_ascii=False))
        return 0
    print(f"Built {result.output} in {time.monotonic() - started:.1f} s")
    for artefact in result.summary["artefacts"]:
        print(f"  {artefact['role']:<19} {artefact['path']}  sha256 {artefact['sha256']}")
    if result.recovery_key_file is not None:
        print(f"  {'recovery key':<19} {result.recovery_key_file}  (store it safely, then delete this copy)")
    pcr = result.summary["pcr_predictions"].get("sha256", {}).get("11", {}).get("")
    if pcr:
        print(f"  PCR 11 (sha256) at kernel start: {pcr}")
    return 0
