"""The value rules of a Recipe: what :func:`validate_recipe` reports, key by key.

Kept apart from the model so the rules read as a list. Every problem names the dotted recipe key at fault
(``catalog.version``) because that is what the user must edit; the wizard shows the same sentences.
Where an engine module already owns a rule (template name and version, block size, UKI id, vendor
directory, KDF limits) it is asked rather than copied, so "valid" has one definition.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.boot.uki import HOST_STUB
from app.catalog.format import CatalogError, check_block_size, check_template_name, parse_version
from app.disk.esp import plan_esp_install
from app.errors import ShieldwrightError
from app.findings import Finding, Severity
from app.luks import kdf as luks_kdf
from app.luks.params import KDF_KINDS, PBKDF2_HASHES
from app.template.manifest import ArtefactPaths
from app.template.recipe import (
    DEFAULT_VENDOR_DIR,
    EXISTING_ACTIONS,
    MAX_ITER_TIME_MS,
    OUTPUT_FORMATS,
    POLICY_BANKS,
    POLICY_PCRS,
    READABLE_VERSIONS,
    SECRET_KINDS,
    SECTOR_SIZES,
    UKI_SOURCES,
    CatalogOptions,
    EncryptionOptions,
    PcrOptions,
    Recipe,
    RecipeError,
    SecretSource,
    SigningOptions,
    UkiOptions,
    parse_image_ref,
    short_repr,
)
from app.untrusted import is_json_int, shortened

ERROR, WARNING = Severity.ERROR, Severity.WARNING
_ENV_NAME_HINT = "letters, digits and _, not starting with a digit"


@dataclass(frozen=True)
class Problem:
    severity: Severity
    key: str
    text: str
    hint: str = ""

    def finding(self) -> Finding:
        return Finding(self.severity, f"{self.key}: {self.text}" + (f" ({self.hint})" if self.hint else ""))

    def error(self) -> RecipeError:
        return RecipeError(f"{self.key}: {self.text}", self.hint, key=self.key)


class _Problems(list[Problem]):
    def add(self, key: str, text: str, hint: str = "", severity: Severity = ERROR) -> None:
        self.append(Problem(severity, key, text, hint))

    def choice(self, key: str, value: Any, allowed: tuple[Any, ...]) -> None:
        if value not in allowed or isinstance(value, bool):
            self.add(key, f"{short_repr(value)} is not one of " + ", ".join(repr(a) for a in allowed))


def recipe_problems(r: Recipe, *, check_files: bool) -> list[Problem]:
    """All problems of ``r`` in key order (ERRORs and WARNINGs); files are looked at only with
    ``check_files``."""
    out = _Problems()
    if r.format_version not in READABLE_VERSIONS:
        out.add("format_version", f"{r.format_version!r} is not supported (this Shieldwright reads 1 and 2)")
    _numbers(out, "protect", r.protect, "the protected partitions")
    _signing(out, r.signing)
    _uki(out, r.uki)
    _encryption(out, r.encryption, r.protect)
    _catalog(out, r.catalog)
    _boot(out, r)
    _pcr(out, r.pcr)
    out.choice("output.format", r.output.format, OUTPUT_FORMATS)
    if _same_path(r.output.path, r.base_image):
        out.add("output.path", "is the base image itself", "the input is never modified: choose another path")
    rk = r.encryption.recovery_key_file
    if rk is not None:
        clash = output_collision(rk, r)
        if clash is not None:
            out.add("encryption.recovery_key_file", f"is {clash}", "choose a separate file for the key")
    if check_files:
        _files(out, r)
    return list(out)


def _numbers(out: _Problems, key: str, numbers: Any, what: str) -> None:
    if not isinstance(numbers, list | tuple) or not numbers:
        out.add(key, f"no partitions given ({what})", "give at least one GPT partition number, e.g. [3]")
        return
    seen: set[int] = set()
    for i, n in enumerate(numbers):
        if not is_json_int(n) or not 1 <= n <= 1024:
            out.add(f"{key}[{i}]", f"{short_repr(n)} is not a GPT partition number (1-1024)")
        elif n in seen:
            out.add(key, f"partition {n} is listed twice")
        else:
            seen.add(n)


def _secret(out: _Problems, key: str, s: Any) -> None:
    if not isinstance(s, SecretSource) or s.kind not in SECRET_KINDS:
        out.add(
            key,
            f"{short_repr(getattr(s, 'kind', s))} is not a secret source",
            'use "prompt", { file = "PATH" } or { env = "VARIABLE" }',
        )
    elif s.kind == "prompt" and s.value is not None:
        out.add(key, "a prompt takes no value")
    elif s.kind == "file" and not s.value:
        out.add(f"{key}.file", "the file path is empty")
    elif s.kind == "env" and not (isinstance(s.value, str) and s.value.isidentifier() and s.value.isascii()):
        out.add(f"{key}.env", f"{short_repr(s.value)} is not an environment variable name", _ENV_NAME_HINT)


def _signing(out: _Problems, s: SigningOptions) -> None:
    _secret(out, "signing.key_passphrase", s.key_passphrase)
    if s.catalog_key_passphrase is not None:
        _secret(out, "signing.catalog_key_passphrase", s.catalog_key_passphrase)
    if s.catalog_cert is None:
        if s.catalog_key is not None:
            out.add(
                "signing.catalog_key",
                "is set but signing.catalog_cert is not",
                "give the catalog certificate too, or drop the key to sign with the UEFI certificate",
            )
        if s.catalog_key_passphrase is not None:
            out.add(
                "signing.catalog_key_passphrase",
                "is set but signing.catalog_cert is not",
                "the catalog is signed with the UEFI key, whose passphrase is signing.key_passphrase",
            )


def _ref(out: _Problems, key: str, ref: Any) -> None:
    try:
        parse_image_ref(ref)
    except RecipeError as exc:
        out.add(key, exc.message, exc.hint)


def _uki(out: _Problems, u: UkiOptions) -> None:
    if u.source not in UKI_SOURCES:
        out.choice("uki.source", u.source, UKI_SOURCES)
        return
    if u.source == "existing":
        if u.existing_action not in EXISTING_ACTIONS:
            what = (
                "is required" if u.existing_action is None else f"{short_repr(u.existing_action)} is invalid"
            )
            out.add(
                "uki.existing_action",
                f"{what} when uki.source is 'existing'",
                "one of " + ", ".join(repr(a) for a in EXISTING_ACTIONS),
            )
        if u.existing_uki is None:
            out.add(
                "uki.existing_uki",
                "is required when uki.source is 'existing'",
                "the UKI in the base image's ESP, e.g. 1:/EFI/Linux/debian.efi",
            )
        else:
            _ref(out, "uki.existing_uki", u.existing_uki)
    else:
        for key, v in (("existing_action", u.existing_action), ("existing_uki", u.existing_uki)):
            if v is not None:
                out.add(f"uki.{key}", f"only applies when uki.source is 'existing' (it is {u.source!r})")
    if not u.builds_new_uki:
        unused: dict[str, object] = {"kernel": u.kernel, "initrds": u.initrds or None, "cmdline": u.cmdline,
                                     "os_release": u.os_release, "stub": u.stub}  # fmt: skip
        for key, value in unused.items():
            if value is not None:
                out.add(
                    f"uki.{key}",
                    f"is not used when uki.existing_action is {u.existing_action!r}",
                    'the existing UKI is kept as it is; existing_action = "replace" builds a new one',
                )
        return
    if u.kernel_from_image:
        if u.kernel is not None:
            _ref(out, "uki.kernel", u.kernel)
        elif u.initrds:
            out.add(
                "uki.initrds",
                "given without uki.kernel",
                "name the kernel too, or leave both out for the newest kernel and its initrds",
            )
        for i, ref in enumerate(u.initrds):
            _ref(out, f"uki.initrds[{i}]", ref)
    elif u.kernel is None:
        out.add("uki.kernel", "is required when uki.source is 'files'", "give the kernel image's path")
    for key, text in (("cmdline", u.cmdline), ("os_release", u.os_release)):
        if isinstance(text, str) and "\0" in text:
            out.add(f"uki.{key}", "contains a NUL character", "the stub would cut the text there")


def _encryption(out: _Problems, e: EncryptionOptions, protect: Any) -> None:
    partitions: Any = e.partitions  # checked as data: a Recipe may be built by code, not only from TOML
    if partitions is not None:
        _numbers(out, "encryption.partitions", partitions, "the partitions to encrypt")
        if isinstance(partitions, list | tuple) and isinstance(protect, list | tuple):
            extra = sorted(n for n in set(partitions) - set(protect) if is_json_int(n))
            if extra:
                out.add(
                    "encryption.partitions",
                    f"partition {extra[0]} is not in protect",
                    "only protected partitions are encrypted",
                )
    out.choice("encryption.sector_size", e.sector_size, SECTOR_SIZES)
    out.choice("encryption.kdf", e.kdf, KDF_KINDS)
    if not is_json_int(e.iter_time_ms) or not 1 <= e.iter_time_ms <= MAX_ITER_TIME_MS:
        out.add(
            "encryption.iter_time_ms", f"{short_repr(e.iter_time_ms)} is not between 1 and {MAX_ITER_TIME_MS}"
        )
    elif e.iter_time_ms < 1000 and e.kdf_params is None:
        out.add(
            "encryption.iter_time_ms",
            f"{e.iter_time_ms} ms is less than cryptsetup's default 2000 ms",
            "a cheaper unlock is a cheaper guess for an attacker",
            WARNING,
        )
    _secret(out, "encryption.passphrase", e.passphrase)
    if e.sparse_ciphertext:
        out.add(
            "encryption.sparse_ciphertext",
            "space the encrypted partitions' filesystems do not use is left as unencrypted holes (ext2/3/4; "
            "other filesystems are encrypted in full)",
            "anyone holding the image sees which blocks are in use, not their content (docs/security.md)",
            WARNING,
        )
    if e.kdf_params is not None and e.kdf in KDF_KINDS:
        _kdf_params(out, e.kdf, e.kdf_params)


def _kdf_params(out: _Problems, kdf: str, p: Any) -> None:
    key = "encryption.kdf_params"
    if not isinstance(p, dict):
        out.add(key, f"{short_repr(p)} is not a table")
        return
    wanted = ("iterations", "hash") if kdf == "pbkdf2" else ("time", "memory_kib", "parallel")
    takes = f"{kdf} takes " + ", ".join(wanted)
    for k in p:
        if k not in wanted:
            out.add(f"{key}.{k}", f"unknown key for kdf {kdf!r}", takes)
    numbers_ok = True
    for k in wanted:
        if k == "hash":
            if p.get("hash", "sha256") not in PBKDF2_HASHES:
                out.choice(f"{key}.hash", p.get("hash"), PBKDF2_HASHES)
        elif k not in p:
            out.add(f"{key}.{k}", "required key is missing", takes)
            numbers_ok = False
        elif not is_json_int(p[k]) or not 1 <= p[k] < 2**32:
            out.add(f"{key}.{k}", f"{short_repr(p[k])} is not a positive integer")
            numbers_ok = False
    if not numbers_ok:
        return
    if kdf == "pbkdf2":
        if p["iterations"] < luks_kdf.PBKDF2_MIN_ITERATIONS:
            minimum = luks_kdf.PBKDF2_MIN_ITERATIONS
            out.add(f"{key}.iterations", f"{p['iterations']} is below cryptsetup's minimum {minimum}",
                    "fine for tests, weak for a real template", WARNING)  # fmt: skip
        return
    par, mem = p["parallel"], p["memory_kib"]
    if not 1 <= par <= 16:
        out.add(f"{key}.parallel", f"{par} is not between 1 and 16")
    elif not 8 * par <= mem <= luks_kdf.ARGON2_MAX_MEMORY_KIB:
        out.add(f"{key}.memory_kib", f"{mem} is not between {8 * par} and {luks_kdf.ARGON2_MAX_MEMORY_KIB}")
    if p["time"] < luks_kdf.ARGON2_MIN_TIME:
        out.add(f"{key}.time", f"{p['time']} is below cryptsetup's minimum {luks_kdf.ARGON2_MIN_TIME}",
                "fine for tests, weak for a real template", WARNING)  # fmt: skip


def _catalog(out: _Problems, c: CatalogOptions) -> None:
    try:
        check_template_name(c.name)
    except CatalogError as exc:
        out.add("catalog.name", exc.message, exc.hint)
    try:
        parse_version(c.version)
    except CatalogError as exc:  # the engine's words, as the wizard shows them
        out.add("catalog.version", exc.message, exc.hint)
    try:
        check_block_size(c.block_size)
    except CatalogError as exc:
        out.add("catalog.block_size", exc.message, exc.hint)


def _boot(out: _Problems, r: Recipe) -> None:
    b = r.boot
    # plan_esp_install owns the rules for both names (what shim and FAT accept): ask it.
    if b.uki_id is not None:
        try:
            plan_esp_install(str(b.uki_id), b"", DEFAULT_VENDOR_DIR)
        except ShieldwrightError as exc:
            out.add("boot.uki_id", exc.message, exc.hint)
    try:
        plan_esp_install("x", b"", str(b.vendor_dir))
    except ShieldwrightError as exc:
        out.add("boot.vendor_dir", exc.message, exc.hint)
    if not isinstance(b.install_removable, bool):
        out.add("boot.install_removable", f"{short_repr(b.install_removable)} is not true or false")


def build_files(r: Recipe) -> dict[str, Path]:
    """Every file a build of ``r`` reads or writes whose path must not be shared with another, by what it
    is: the base image, the output and its sidecars (catalog, manifest, signature, report)."""
    files = {"the base image": Path(r.base_image)}
    if r.output.path is not None:
        p = ArtefactPaths.for_output(Path(r.output.path))
        files.update({"the output image": p.output, "the output's catalog": p.catalog,
                      "the output's manifest": p.manifest, "the manifest's signature": p.signature,
                      "the output's report": p.report})  # fmt: skip
    return files


def output_collision(path: Path | str, r: Recipe) -> str | None:
    """What ``path`` (a file the build or the CLI writes besides the template, e.g. the recovery key) would
    collide with - "the output's report (/x/t.raw.report.html)" - or None.

    Why: the build renames its staged files over their destinations at the very end; a recovery key written
    to a sidecar's name would be replaced by the sidecar after being reported as written.
    """
    for what, other in build_files(r).items():
        if _same_path(Path(path), other):
            return f"{what} ({other})"
    return None


# -- host files published in the clear -----------------------------------------------------------------


@dataclass(frozen=True)
class HostFile:
    """A file of this computer that a build copies into the template *in the clear*: the UKI it builds lands
    in the unencrypted ESP, so its kernel, initrds and stub can be read by anyone holding the template."""

    key: str  #: the recipe key naming it, e.g. ``uki.initrds[0]``
    role: str  #: ``kernel``, ``initrd`` or ``stub``
    path: Path


def published_host_files(r: Recipe) -> list[HostFile]:
    """The host files a build of ``r`` puts into the template in the clear, in recipe order.

    ``uki.kernel`` and ``uki.initrds`` with ``source = "files"``, and the stub of any UKI that is built
    (``uki.stub``, or the host's systemd-stub when it names none). Files taken from the base image are not
    host files; an existing UKI kept or re-signed uses none.
    """
    u = r.uki
    if u.source not in UKI_SOURCES or not u.builds_new_uki:
        return []
    files: list[HostFile] = []
    if u.source == "files":
        if u.kernel:
            files.append(HostFile("uki.kernel", "kernel", Path(u.kernel)))
        files += [HostFile(f"uki.initrds[{i}]", "initrd", Path(p)) for i, p in enumerate(u.initrds)]
    files.append(HostFile("uki.stub", "stub", Path(u.stub) if u.stub is not None else HOST_STUB))
    return files


def is_private_mode(mode: int) -> bool:
    """A file that not every user of this computer may read (no read bit for "others": its owner only, or
    its owner and group, like ``/etc/shadow`` 0640, ``~/.ssh/id_*`` 0600, a 0600 kernel image). What a
    build must not publish in the clear unless told to."""
    return not mode & stat.S_IROTH


def private_file_text(path: Path | str, mode: int) -> str:
    """The one sentence for a private host file that would be published (the recipe check and the build)."""
    return (f"{path} is not readable by other users (mode {stat.S_IMODE(mode):o}) and would be published "
            "in the clear in the template's ESP")  # fmt: skip


def private_host_files(r: Recipe) -> list[tuple[HostFile, int]]:
    """The published host files (:func:`published_host_files`) whose mode is private, with that mode.
    Files that cannot be looked at are left to the file checks of :func:`recipe_problems`."""
    found = []
    for f in published_host_files(r):
        try:
            mode = f.path.stat().st_mode
        except OSError:
            continue
        if is_private_mode(mode):
            found.append((f, mode))
    return found


def private_host_file_problems(r: Recipe, *, allow: bool, hint: str = "") -> list[Problem]:
    """An ERROR per published host file (:func:`published_host_files`) with a private mode -
    a WARNING instead when ``allow`` (the CLI's ``--allow-private-inputs``, the Review page's choice).

    Why: a recipe is data a CI job replays; ``uki.initrds = ["/etc/shadow"]`` would otherwise copy that
    file readably into a template that is handed out. Missing files are not reported here
    (the file checks of :func:`recipe_problems` do that). ``hint`` says how this face allows them.
    """
    out = _Problems()
    for f, mode in private_host_files(r):
        text = private_file_text(f.path, mode)
        if allow:
            out.add(f.key, text, "published because private inputs were allowed", WARNING)
        else:
            out.add(f.key, text, hint or PRIVATE_INPUT_HINT)
    return list(out)


#: How a user allows publishing a private host file (the one spelling the CLI and the wizard show).
PRIVATE_INPUT_HINT = "use another file; if it is meant to be public, chmod o+r it or allow private inputs"


def _same_path(a: Path | None, b: Path | None) -> bool:
    if a is None or b is None:
        return False
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def pcr_problems(p: PcrOptions) -> list[Problem]:
    """The problems of ``[pcr]`` alone (what the PCR Policy page checks as the user edits it)."""
    out = _Problems()
    _pcr(out, p)
    return list(out)


def _pcr(out: _Problems, p: PcrOptions) -> None:
    given = [k for k in ("firmware_vars", "firmware_log", "firmware_certs") if getattr(p, k) is not None]
    if len(given) > 1:
        out.add(f"pcr.{given[1]}", f"and pcr.{given[0]} are both given", "choose one firmware profile")
    out.choice("pcr.bank", p.bank, POLICY_BANKS)
    if not p.pcrs:
        out.add("pcr.pcrs", "no PCRs given", f"give some of {list(POLICY_PCRS)}")
        return
    seen: set[int] = set()
    for i, n in enumerate(p.pcrs):
        if not is_json_int(n) or n not in POLICY_PCRS:
            out.add(f"pcr.pcrs[{i}]", f"{short_repr(n)} is not a PCR the policy can bind",
                    f"choose from {list(POLICY_PCRS)}: the PCRs Shieldwright predicts")  # fmt: skip
        elif n in seen:
            out.add("pcr.pcrs", f"PCR {n} is listed twice")
        else:
            seen.add(n)


def _files(out: _Problems, r: Recipe) -> None:
    s, u, e = r.signing, r.uki, r.encryption
    inputs: list[tuple[str, Path | str | None]] = [
        ("base_image", r.base_image),
        ("signing.uefi_cert", s.uefi_cert),
        ("signing.uefi_key", s.uefi_key),
        ("signing.catalog_cert", s.catalog_cert),
        ("signing.catalog_key", s.catalog_key),
        ("uki.stub", u.stub),
    ]
    if u.source == "files":
        inputs.append(("uki.kernel", u.kernel))
        inputs += [(f"uki.initrds[{i}]", p) for i, p in enumerate(u.initrds)]
    secrets = {
        "signing.key_passphrase": s.key_passphrase,
        "signing.catalog_key_passphrase": s.catalog_key_passphrase,
        "encryption.passphrase": e.passphrase,
    }
    for key, source in secrets.items():
        if source is not None and source.kind == "file" and source.value:
            inputs.append((f"{key}.file", source.value))
            _secret_file_mode(out, f"{key}.file", Path(source.value))
    inputs += [("pcr.firmware_vars", r.pcr.firmware_vars), ("pcr.firmware_log", r.pcr.firmware_log)]
    for key, path in inputs:
        if path is not None:
            _input_file(out, key, Path(path))
    certs = r.pcr.firmware_certs
    if certs is not None:
        is_dir = _is_dir(out, "pcr.firmware_certs", Path(certs))
        if is_dir is False:
            out.add("pcr.firmware_certs", f"{_path_text(certs)} is not a directory",
                    "give the directory holding PK, KEK, db, dbx")  # fmt: skip
    for key, out_path in (
        ("output.path", r.output.path),
        ("encryption.recovery_key_file", e.recovery_key_file),
    ):
        if out_path is None:
            continue
        parent = Path(os.path.abspath(out_path)).parent
        parent_is_dir = _is_dir(out, key, parent)
        if parent_is_dir is False:
            out.add(key, f"the directory {_path_text(parent)} does not exist", "create it first")
        elif parent_is_dir and _is_dir(out, key, Path(out_path)):
            out.add(key, f"{_path_text(out_path)} is a directory", "give a file name")


def _path_text(path: Path | str) -> str:
    """``path`` for a one-line message, its middle cut when it is absurdly long (a hostile recipe)."""
    return shortened(str(path), 160, keep_end=57)


#: errnos that mean "nothing is there" to a directory test, as :meth:`pathlib.Path.is_dir` ignores them.
_NOT_THERE = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)


def _is_dir(out: _Problems, key: str, path: Path) -> bool | None:
    """Whether ``path`` is a directory; None (and a problem under ``key``) when the system refuses to look.

    :meth:`pathlib.Path.is_dir` re-raises every other OSError, so a recipe value of 5000 characters
    (ENAMETOOLONG) or a path through an unreadable directory (EACCES) ended the build with an OSError
    instead of naming the recipe key at fault.
    """
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except ValueError:  # an embedded NUL: no such path (as Path.is_dir says)
        return False
    except OSError as exc:
        if exc.errno in _NOT_THERE:
            return False
        out.add(key, f"{_path_text(path)}: {exc.strerror or type(exc).__name__}", "check the path")
        return None


def _input_file(out: _Problems, key: str, path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        out.add(key, f"{_path_text(path)}: no such file", "relative paths start at the recipe's directory")
        return
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a usable path"
        out.add(key, f"{_path_text(path)}: {reason}", "check the path")
        return
    if stat.S_ISDIR(st.st_mode):
        out.add(key, f"{path} is a directory", "give a file")
    elif not os.access(path, os.R_OK):
        out.add(key, f"{path}: permission denied", "check the file's permissions")


def _secret_file_mode(out: _Problems, key: str, path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # _input_file reports it
    if stat.S_ISREG(mode) and mode & 0o077:
        out.add(key, f"{path} can be read by other users (mode {stat.S_IMODE(mode):o})",
                f"chmod 600 {path}", WARNING)  # fmt: skip


def validate_recipe(recipe: Recipe, *, check_files: bool = True) -> list[Finding]:
    """Everything wrong with ``recipe``, each message starting with the dotted key at fault.

    ERROR findings make the build refuse to start; WARNINGs are shown. ``check_files`` also checks that
    input files exist and output directories are there (nothing is parsed: that is the build's job).
    """
    return [p.finding() for p in recipe_problems(recipe, check_files=check_files)]
