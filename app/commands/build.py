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
from app.disk.image import SUFFIXES
from app.errors import CancelledError, ShieldwrightError, WrongPassphraseError
from app.findings import Severity
from app.progress import CancelToken
from app.template.options import SHORT_FLAGS, Option, apply_flag, flagged, option
from app.template.recipe import (
    DEFAULT_TEMPLATE_VERSION,
    BootOptions,
    CatalogOptions,
    EncryptionOptions,
    OutputOptions,
    Recipe,
    RecipeError,
    SigningOptions,
    UkiOptions,
    read_secret,
)

PRIVATE_HINT = "use another file; if it is meant to be public, chmod o+r it or pass --allow-private-inputs"
#: Without a recipe these flags must say enough to build (the rest has defaults, ``--protect`` included).
_WITHOUT_RECIPE = ("base_image", "output.path", "catalog.name", "signing.uefi_cert")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    for opt in flagged():  # every recipe key with a flag: app.template.options is the one table
        p.add_argument(*flag_names(opt), **_argparse_kwargs(opt))
    p.add_argument("--json", action="store_true", help="print the build summary as JSON on stdout")
    p.add_argument("--allow-private-inputs", action="store_true",
                   help="publish host files (UKI kernel, initrds, stub) that other users may not read: "
                        "the UKI sits unencrypted in the ESP, so they are refused without this")  # fmt: skip
    p.add_argument("--save-recipe", metavar="FILE", help="write the effective recipe to FILE, then build "
                   "(an existing FILE is replaced only with --force)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace existing output files (and --save-recipe's)")
    p.set_defaults(func=cmd_build)


def flag_names(opt: Option) -> list[str]:
    assert opt.flag is not None
    short = SHORT_FLAGS.get(opt.flag)
    return [short, opt.flag] if short else [opt.flag]


def _argparse_kwargs(opt: Option) -> dict[str, Any]:
    """How argparse reads ``opt``'s flag: its type, repetition, choices and help come from the table."""
    kwargs: dict[str, Any] = {"dest": opt.dest, "help": opt.help}
    if opt.kind == "bool":
        return {**kwargs, "action": "store_true", "default": None}
    if opt.metavar:
        kwargs["metavar"] = opt.metavar
    if opt.kind in ("int", "int_list"):
        kwargs["type"] = int
    if opt.kind == "int_list":
        kwargs["action"] = "append"
    if opt.choices is not None:
        kwargs["choices"] = opt.choices
    return kwargs


# -- the effective recipe ---------------------------------------------------------------------------------


def effective_recipe(args: argparse.Namespace) -> Recipe:
    """The recipe file (if any) with the options applied; a new recipe from the options alone otherwise."""
    from app.template.recipe_file import load_recipe  # lazy: the recipe checks load the engine

    recipe = load_recipe(args.recipe) if args.recipe else _recipe_from_flags(args)
    for opt in flagged():
        raw = getattr(args, opt.dest or "")
        if raw is not None:
            apply_flag(recipe, opt, raw)
    if args.output and not args.format:  # the output's extension says the format
        recipe.output.format = SUFFIXES.get(recipe.output.path.suffix.lower(), recipe.output.format)
    if not recipe.protect:
        recipe.protect = _default_protect(recipe.base_image)
    return recipe


def _spoken(words: list[str]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


def _recipe_from_flags(args: argparse.Namespace) -> Recipe:
    """A recipe with every default, to be filled by the flags; refused when they cannot say enough."""
    needed = [option(k) for k in _WITHOUT_RECIPE]
    missing = [flag_names(o)[0] for o in needed if not getattr(args, o.dest or "")]
    if missing:
        raise ShieldwrightError(
            f"no recipe given, and {', '.join(missing)} missing",
            "give a recipe file, or at least " + _spoken([flag_names(o)[0] for o in needed]),
        )
    return Recipe(
        base_image=Path(),
        protect=[],
        signing=SigningOptions(uefi_cert=Path()),
        uki=UkiOptions(),
        encryption=EncryptionOptions(),
        catalog=CatalogOptions(name="", version=DEFAULT_TEMPLATE_VERSION),
        boot=BootOptions(),
        output=OutputOptions(path=Path()),
    )


def _default_protect(base: Path) -> list[int]:
    from app.disk.layout import inspect_image  # lazy: only without --protect
    from app.template.pipeline import default_protect  # lazy: the pipeline loads the whole engine

    numbers = default_protect(inspect_image(base))
    if not numbers:
        raise ShieldwrightError(f"{base} has no root, /usr or XBOOTLDR partition to protect by default",
                                "name the partitions with --protect N")  # fmt: skip
    return numbers


def _check(recipe: Any, allow_private: bool = False) -> None:
    """The recipe's findings (warnings printed, the first error raised) before anything is asked or written,
    host files the UKI would publish although private included."""
    from app.template.checks import private_host_file_problems, validate_recipe  # lazy: they load the engine

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
    from app.signing.keys import load_signer  # lazy: key loading only when building

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
    from app.template.pipeline import BuildProgress, run_build  # lazy: loads the whole engine

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
    unless ``--force`` (a mistyped name must not replace a key or an image)."""
    from app.template.checks import output_collision  # lazy: the checks load the engine
    from app.template.recipe_file import save_recipe  # lazy: the checks load the engine

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
    from app.template.pipeline import BuildInputs  # lazy: loads the whole engine

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
