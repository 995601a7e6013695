"""The Recipe: every choice of a template build as plain dataclasses, with TOML load/save and validation.

The Recipe is the contract between the faces of Shieldwright: the wizard fills one
(:func:`app.gui.recipe_bridge.recipe_from_wizard_state`), ``shieldwright build recipe.toml`` loads one, and
the pipeline executes one. "Save recipe" + ``build`` must give the same template, so everything that
changes the template is here, and nothing else is. The file format is specified in
``docs/formats/recipe.md``.

Rules that make a recipe safe to keep in a repository and to replay in CI:

- **No secrets, by construction.** A passphrase is never a field: :class:`SecretSource` only says where
  it comes from (a prompt, a file, an environment variable), and :func:`read_secret` fetches it at build
  time into a ``bytearray`` the caller wipes.
- **Typos are errors.** An unknown key, a missing required key or a value of the wrong type raises
  :class:`RecipeError` naming the exact dotted key (``catalog.version``), so a misspelt option can never
  be silently ignored and the build run with a default instead.
- **Paths are relative to the recipe file**, so a recipe and its inputs can move together; loading
  resolves them to absolute paths, saving writes them relative again when they are near the recipe.

Value checks live in one place, :func:`validate_recipe` (findings, used by the wizard and the CLI);
:func:`recipe_from_dict` refuses any ERROR among them that needs no file access.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import ShieldwrightError
from app.findings import Finding, Severity
from app.template import toml_writer

if TYPE_CHECKING:
    from app.luks.kdf import KdfParams

#: The recipe format this code reads and writes (the ``format_version`` key).
FORMAT_VERSION = 1
SECRET_KINDS = ("prompt", "file", "env")
#: Where the UKI comes from: built from the base image's kernel, built from files, or an existing UKI.
UKI_SOURCES = ("image", "files", "existing")
#: What happens to an existing UKI: kept as is, re-signed with the UEFI key, or replaced by a new one.
EXISTING_ACTIONS = ("keep", "resign", "replace")
SECTOR_SIZES = (4096, 512)
KDF_KINDS = ("argon2id", "pbkdf2")
PBKDF2_HASHES = ("sha256", "sha384", "sha512", "sha1")
OUTPUT_FORMATS = ("raw", "vhdx", "vhd", "qcow2")
DEFAULT_BLOCK_SIZE = 1 << 20
DEFAULT_ITER_TIME_MS = 2000
MAX_ITER_TIME_MS = 600_000
DEFAULT_VENDOR_DIR = "debian"
#: A recipe is a few KiB of TOML: a larger file (or an endless pipe) is not one, and is not read further.
MAX_RECIPE_BYTES = 1 << 20
#: Paths up to this many ``..`` steps away from the recipe's directory are saved relative to it.
MAX_RELATIVE_UP = 2

#: ``PARTNUM:/path/in/that/partition's/filesystem``.
_IMAGE_REF = re.compile(r"(?P<number>[1-9][0-9]{0,3}):(?P<path>/.*)", re.DOTALL)
_HINT_DOC = "see docs/formats/recipe.md"


class RecipeError(ShieldwrightError):
    """A recipe is malformed or inconsistent. ``key`` is the dotted key at fault (``catalog.version``)."""

    def __init__(self, message: str, hint: str = "", *, key: str | None = None) -> None:
        super().__init__(message, hint)
        self.key = key


# --- the model -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretSource:
    """Where a secret comes from - never the secret itself.

    ``kind`` "prompt": ask on the terminal (only if the secret is actually needed, e.g. the key is
    encrypted); "file": ``value`` is the path of a file holding it (one trailing newline is ignored);
    "env": ``value`` is the name of an environment variable holding it.
    """

    kind: str = "prompt"
    value: str | None = None

    @classmethod
    def prompt(cls) -> SecretSource:
        return cls("prompt", None)

    @classmethod
    def file(cls, path: str | os.PathLike[str]) -> SecretSource:
        return cls("file", os.fspath(path))

    @classmethod
    def env(cls, name: str) -> SecretSource:
        return cls("env", name)

    def describe(self) -> str:
        """How a user would say it: "a prompt", "file /x/pass.txt", "environment variable X"."""
        if self.kind == "file":
            return f"file {self.value}"
        if self.kind == "env":
            return f"environment variable {self.value}"
        return "a prompt"


@dataclass
class SigningOptions:
    """Signing certificates and keys, by path. ``catalog_cert`` None: the catalog (and the manifest) are
    signed with the UEFI certificate too. A key path None means the key is in the certificate file
    (PKCS#12 or a PEM bundle)."""

    uefi_cert: Path
    uefi_key: Path | None = None
    catalog_cert: Path | None = None
    catalog_key: Path | None = None
    key_passphrase: SecretSource = field(default_factory=SecretSource)
    #: None: the catalog key's passphrase comes from ``key_passphrase`` as well.
    catalog_key_passphrase: SecretSource | None = None

    @property
    def catalog_passphrase_source(self) -> SecretSource:
        """Where the catalog key's passphrase comes from (``key_passphrase`` unless set separately)."""
        return self.catalog_key_passphrase or self.key_passphrase


@dataclass
class UkiOptions:
    """How the template's Unified Kernel Image is made.

    For ``source`` "image" (and "existing" with ``existing_action`` "replace") ``kernel`` and ``initrds``
    are references ``"PARTNUM:/path/in/fs"`` into the base image; ``kernel`` None means "the newest
    kernel in the image's /boot, with its initrds" (then ``initrds`` must be empty). For "files" they
    are file paths (absolute once loaded). ``cmdline``/``os_release``/``stub`` None leave the choice to
    the build (its defaults); a given text, even "", is used exactly.
    """

    source: str = "image"
    kernel: str | None = None
    initrds: list[str] = field(default_factory=list)
    cmdline: str | None = None
    os_release: str | None = None
    stub: Path | None = None
    #: For ``source`` "existing": "keep" | "resign" | "replace" (required there, refused elsewhere).
    existing_action: str | None = None
    #: For ``source`` "existing": the UKI in the base image's ESP, ``"PARTNUM:/EFI/Linux/name.efi"``.
    existing_uki: str | None = None

    @property
    def builds_new_uki(self) -> bool:
        return self.source != "existing" or self.existing_action == "replace"

    @property
    def kernel_from_image(self) -> bool:
        return self.source == "image" or (self.source == "existing" and self.existing_action == "replace")


@dataclass
class EncryptionOptions:
    """LUKS2 choices. The cipher is not a choice (aes-xts-plain64, 512-bit key).

    ``kdf_params`` None: calibrate ``kdf`` to ``iter_time_ms`` at build time, like cryptsetup. Explicit
    params (e.g. the wizard's calibration): argon2id ``{time, memory_kib, parallel}``, pbkdf2
    ``{iterations, hash}``. ``recovery_key_file`` None: no recovery key; else the build adds a recovery
    keyslot and writes the generated key there (mode 0600).
    """

    sector_size: int = 4096
    kdf: str = "argon2id"
    iter_time_ms: int = DEFAULT_ITER_TIME_MS
    kdf_params: dict[str, Any] | None = None
    passphrase: SecretSource = field(default_factory=SecretSource)
    recovery_key_file: Path | None = None
    #: Leave the never-written parts of encrypted partitions as holes (faster, but shows what is unused).
    sparse_ciphertext: bool = False
    #: The protected partitions to encrypt; None: all of them. A protected partition that is not
    #: encrypted (e.g. already LUKS2) is only catalogued.
    partitions: list[int] | None = None


@dataclass
class CatalogOptions:
    """The template's identity in the Volume Signature Catalog, and the hash block size."""

    name: str
    version: str
    block_size: int = DEFAULT_BLOCK_SIZE


@dataclass
class BootOptions:
    """How the UKI is installed in the ESP: ``\\EFI\\Linux\\<uki_id>.efi`` plus the shim fallback CSV in
    ``\\EFI\\<vendor_dir>``; ``install_removable`` also installs it as ``\\EFI\\BOOT\\BOOTX64.EFI``
    (for images without shim). ``uki_id`` None: derived from the template name (:func:`default_uki_id`).
    """

    uki_id: str | None = None
    vendor_dir: str = DEFAULT_VENDOR_DIR
    install_removable: bool = False


@dataclass
class OutputOptions:
    path: Path
    format: str = "raw"


@dataclass
class Recipe:
    """Everything a template build needs, except secrets."""

    base_image: Path
    #: GPT numbers of the protected partitions (encrypted and catalogued).
    protect: list[int]
    signing: SigningOptions
    uki: UkiOptions
    encryption: EncryptionOptions
    catalog: CatalogOptions
    boot: BootOptions
    output: OutputOptions
    format_version: int = FORMAT_VERSION

    @property
    def encrypted_partitions(self) -> list[int]:
        """The partitions the build LUKS2-encrypts (``encryption.partitions``, default all protected)."""
        chosen = self.encryption.partitions
        return sorted(self.protect if chosen is None else chosen)

    @property
    def uki_id(self) -> str:
        """``boot.uki_id``, or the id derived from the template name."""
        return self.boot.uki_id or default_uki_id(self.catalog.name)


def default_uki_id(template_name: str) -> str:
    """A UKI file name stem from a template name: "Web Server 2" → "web-server-2" (FAT- and shim-safe)."""
    slug = re.sub(r"[^a-z0-9._+-]+", "-", template_name.lower()).lstrip("._+-")[:64].rstrip("-")
    return slug or "shieldwright"


def parse_image_ref(ref: str) -> tuple[int, str]:
    """``"2:/vmlinuz-6.1.0"`` → ``(2, "/vmlinuz-6.1.0")``: a file inside a partition of the base image."""
    m = _IMAGE_REF.fullmatch(ref) if isinstance(ref, str) else None
    if m is None:
        raise RecipeError(f"{ref!r} is not a reference PARTNUM:/path", "e.g. 2:/vmlinuz-6.1.0-28-amd64")
    return int(m.group("number")), m.group("path")


def explicit_kdf(enc: EncryptionOptions) -> KdfParams | None:
    """``enc.kdf_params`` as a :class:`~app.luks.kdf.KdfParams` (fresh salt), or None to calibrate."""
    from app.luks.kdf import KdfParams

    p = enc.kdf_params
    if p is None:
        return None
    if enc.kdf == "pbkdf2":
        return KdfParams.pbkdf2(int(p["iterations"]), str(p.get("hash", "sha256")))
    return KdfParams.argon2id(int(p["time"]), int(p["memory_kib"]), int(p["parallel"]))


def kdf_params_dict(params: KdfParams) -> dict[str, Any]:
    """The recipe's ``encryption.kdf_params`` for a calibrated :class:`~app.luks.kdf.KdfParams` (no salt:
    every keyslot gets a fresh one)."""
    if params.type == "pbkdf2":
        return {"iterations": params.time, "hash": params.hash}
    return {"time": params.time, "memory_kib": params.memory_kib, "parallel": params.parallel}


def default_recovery_key_file(output: Path) -> Path:
    """Where a replayed build writes a new recovery key when the user asked for one: beside the output."""
    return output.with_name(output.name + ".recovery-key.txt")


# --- reading dicts ----------------------------------------------------------------------------------------

_MISSING: Any = object()


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def short_repr(value: Any) -> str:
    """``repr`` cut to 60 characters, for quoting a bad value in a one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Table:
    """One table of the recipe being read: knows its dotted name and which keys were consumed, so that
    whatever is left at :meth:`finish` is an unknown key (a typo) and refused."""

    def __init__(self, data: Any, name: str, base_dir: Path) -> None:
        if not isinstance(data, dict):
            raise RecipeError(f"{name}: expected a table, got {_type_name(data)}", _HINT_DOC, key=name)
        self.data, self.name, self.base_dir = data, name, base_dir
        self.used: set[str] = set()

    def key(self, k: str) -> str:
        return f"{self.name}.{k}" if self.name else k

    def _raw(self, k: str, required: bool, what: str) -> Any:
        self.used.add(k)
        if k in self.data:
            return self.data[k]
        if required:
            raise RecipeError(f"{self.key(k)}: required key is missing ({what})", _HINT_DOC, key=self.key(k))
        return _MISSING

    def _wrong(self, k: str, value: Any, what: str) -> RecipeError:
        return RecipeError(
            f"{self.key(k)}: expected {what}, got {_type_name(value)} {short_repr(value)}",
            _HINT_DOC,
            key=self.key(k),
        )

    def string(self, k: str, *, required: bool = False, default: Any = None, what: str = "a string") -> Any:
        v = self._raw(k, required, what)
        if v is _MISSING:
            return default
        if not isinstance(v, str):
            raise self._wrong(k, v, what)
        return v

    def integer(
        self, k: str, *, required: bool = False, default: Any = None, what: str = "an integer"
    ) -> Any:
        v = self._raw(k, required, what)
        if v is _MISSING:
            return default
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._wrong(k, v, what)
        return v

    def boolean(self, k: str, *, default: bool = False) -> bool:
        v = self._raw(k, False, "true or false")
        if v is _MISSING:
            return default
        if not isinstance(v, bool):
            raise self._wrong(k, v, "true or false")
        return v

    def int_list(self, k: str, *, required: bool = False, default: Any = None, what: str = "") -> Any:
        what = what or "an array of integers"
        v = self._raw(k, required, what)
        if v is _MISSING:
            return default
        if not isinstance(v, list):
            raise self._wrong(k, v, what)
        for i, item in enumerate(v):
            if not isinstance(item, int) or isinstance(item, bool):
                raise self._wrong(f"{k}[{i}]", item, "an integer")
        return list(v)

    def str_list(self, k: str) -> list[str]:
        v = self._raw(k, False, "an array of strings")
        if v is _MISSING:
            return []
        if not isinstance(v, list):
            raise self._wrong(k, v, "an array of strings")
        for i, item in enumerate(v):
            if not isinstance(item, str):
                raise self._wrong(f"{k}[{i}]", item, "a string")
        return list(v)

    def path(self, k: str, *, required: bool = False, what: str = "a file path") -> Path | None:
        v = self.string(k, required=required, what=what)
        return None if v is None else _resolve(v, self.key(k), self.base_dir)

    def secret(self, k: str, *, default: Any = _MISSING) -> Any:
        """A :class:`SecretSource`. The value is never quoted in an error: it may be a pasted secret."""
        what = '"prompt", { file = "PATH" } or { env = "VARIABLE" }'
        v = self._raw(k, False, what)
        if v is _MISSING:
            return SecretSource() if default is _MISSING else default
        key = self.key(k)
        if v == "prompt":
            return SecretSource.prompt()
        if isinstance(v, dict) and len(v) == 1:
            ((kind, value),) = v.items()
            if kind not in ("file", "env"):
                raise RecipeError(
                    f"{key}.{kind}: unknown key (a secret is read from a file or an env variable)",
                    _suggest(kind, ("file", "env")),
                    key=f"{key}.{kind}",
                )
            if not isinstance(value, str):
                raise RecipeError(f"{key}.{kind}: expected a string, got {_type_name(value)}", key=key)
            if kind == "file":
                return SecretSource.file(_resolve(value, f"{key}.file", self.base_dir))
            return SecretSource.env(value)
        got = "a table with several keys" if isinstance(v, dict) else _type_name(v)
        raise RecipeError(
            f"{key}: expected {what}, got {got}",
            "a recipe never holds a secret itself, only where the build reads it from",
            key=key,
        )

    def table(self, k: str, *, required: bool = False) -> _Table | None:
        v = self._raw(k, required, "a table")
        if v is _MISSING:
            return None
        return _Table(v, self.key(k), self.base_dir)

    def finish(self) -> None:
        unknown = [k for k in self.data if k not in self.used]
        if unknown:
            k = unknown[0]
            raise RecipeError(f"{self.key(k)}: unknown key", _suggest(k, list(self.used)), key=self.key(k))


def _suggest(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"did you mean {close[0]!r}?" if close else f"remove it ({_HINT_DOC} lists every key)"


def _resolve(value: str, key: str, base_dir: Path) -> Path:
    """A recipe path: ``~`` expanded, relative ones taken from the recipe's directory, normalised."""
    if not value or "\0" in value:
        raise RecipeError(f"{key}: {short_repr(value)} is not a path", "give a file path", key=key)
    return Path(os.path.abspath(os.path.join(base_dir, os.path.expanduser(value))))


def recipe_from_dict(d: dict[str, Any], base_dir: str | os.PathLike[str]) -> Recipe:
    """Build a Recipe from parsed TOML (``base_dir``: where relative paths start, the recipe's directory).

    Raises :class:`RecipeError` for an unknown or missing key, a wrong type, or any value error that
    :func:`validate_recipe` finds without looking at files.
    """
    top = _Table(d, "", Path(base_dir))
    version = top.integer(
        "format_version", required=True, what=f"the recipe format version, {FORMAT_VERSION}"
    )
    if version != FORMAT_VERSION:
        raise RecipeError(
            f"format_version: {version} is not supported (this Shieldwright reads recipe format "
            f"{FORMAT_VERSION})",
            "use the Shieldwright version that wrote it" if version > FORMAT_VERSION else _HINT_DOC,
            key="format_version",
        )
    base_image = top.path("base_image", required=True, what="the base disk image's path")
    protect = top.int_list("protect", required=True, what="an array of GPT partition numbers")
    signing = _signing(top.table("signing", required=True))  # type: ignore[arg-type]
    uki = _uki(top.table("uki"))
    encryption = _encryption(top.table("encryption"))
    catalog = _catalog(top.table("catalog", required=True))  # type: ignore[arg-type]
    boot = _boot(top.table("boot"))
    output = _output(top.table("output", required=True))  # type: ignore[arg-type]
    top.finish()
    recipe = Recipe(
        base_image=base_image,  # type: ignore[arg-type]
        protect=protect,
        signing=signing,
        uki=uki,
        encryption=encryption,
        catalog=catalog,
        boot=boot,
        output=output,
        format_version=version,
    )
    from app.template.checks import recipe_problems

    for p in recipe_problems(recipe, check_files=False):
        if p.severity is Severity.ERROR:
            raise p.error()
    return recipe


def _signing(t: _Table) -> SigningOptions:
    out = SigningOptions(
        uefi_cert=t.path("uefi_cert", required=True, what="the UEFI signing certificate's path"),  # type: ignore[arg-type]
        uefi_key=t.path("uefi_key"),
        catalog_cert=t.path("catalog_cert"),
        catalog_key=t.path("catalog_key"),
        key_passphrase=t.secret("key_passphrase"),
        catalog_key_passphrase=t.secret("catalog_key_passphrase", default=None),
    )
    t.finish()
    return out


def _uki(t: _Table | None) -> UkiOptions:
    if t is None:
        return UkiOptions()
    source = t.string("source", default="image")
    kernel = t.string("kernel")
    initrds = t.str_list("initrds")
    if source == "files":  # file paths are resolved against the recipe; image references stay as written
        kernel = None if kernel is None else str(_resolve(kernel, t.key("kernel"), t.base_dir))
        initrds = [str(_resolve(v, f"{t.key('initrds')}[{i}]", t.base_dir)) for i, v in enumerate(initrds)]
    out = UkiOptions(
        source=source,
        kernel=kernel,
        initrds=initrds,
        cmdline=t.string("cmdline"),
        os_release=t.string("os_release"),
        stub=t.path("stub"),
        existing_action=t.string("existing_action"),
        existing_uki=t.string("existing_uki"),
    )
    t.finish()
    return out


def _encryption(t: _Table | None) -> EncryptionOptions:
    if t is None:
        return EncryptionOptions()
    params = t.table("kdf_params")
    kdf_params: dict[str, Any] | None = None
    if params is not None:
        kdf_params = {}
        for k, v in params.data.items():
            if k == "hash":
                kdf_params[k] = params.string(k)
            elif k in ("time", "memory_kib", "parallel", "iterations"):
                kdf_params[k] = params.integer(k)
            else:  # kept, so validation names it against the chosen kdf
                params.used.add(k)
                kdf_params[k] = v
    out = EncryptionOptions(
        sector_size=t.integer("sector_size", default=4096),
        kdf=t.string("kdf", default="argon2id"),
        iter_time_ms=t.integer("iter_time_ms", default=DEFAULT_ITER_TIME_MS),
        kdf_params=kdf_params,
        passphrase=t.secret("passphrase"),
        recovery_key_file=t.path("recovery_key_file"),
        sparse_ciphertext=t.boolean("sparse_ciphertext"),
        partitions=t.int_list("partitions"),
    )
    t.finish()
    return out


def _catalog(t: _Table) -> CatalogOptions:
    out = CatalogOptions(
        name=t.string("name", required=True, what="the template name"),
        version=t.string("version", required=True, what="the template version a.b.c.d"),
        block_size=t.integer("block_size", default=DEFAULT_BLOCK_SIZE),
    )
    t.finish()
    return out


def _boot(t: _Table | None) -> BootOptions:
    if t is None:
        return BootOptions()
    out = BootOptions(
        uki_id=t.string("uki_id"),
        vendor_dir=t.string("vendor_dir", default=DEFAULT_VENDOR_DIR),
        install_removable=t.boolean("install_removable"),
    )
    t.finish()
    return out


def _output(t: _Table) -> OutputOptions:
    out = OutputOptions(
        path=t.path("path", required=True, what="the output image's path"),  # type: ignore[arg-type]
        format=t.string("format", default="raw"),
    )
    t.finish()
    return out


# --- writing dicts ------------------------------------------------------------------------------------------


def _portable(path: Path | str, base_dir: Path) -> str:
    """``path`` relative to ``base_dir`` when it is inside it or at most MAX_RELATIVE_UP levels up
    (sharing more than the filesystem root), else absolute. Always "/"-separated."""
    absolute = os.path.abspath(path)
    base = os.path.abspath(base_dir)
    rel = os.path.relpath(absolute, base)
    ups = 0
    for part in Path(rel).parts:
        if part != "..":
            break
        ups += 1
    if ups <= MAX_RELATIVE_UP and os.path.commonpath([absolute, base]) != os.path.abspath(os.sep):
        return Path(rel).as_posix()
    return absolute


def _secret_dict(s: SecretSource, base_dir: Path) -> Any:
    if s.kind == "file":
        return {"file": _portable(s.value or "", base_dir)}
    if s.kind == "env":
        return {"env": s.value}
    return "prompt"


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def recipe_to_dict(recipe: Recipe, base_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The recipe as TOML-ready data (None values left out); paths relative to ``base_dir`` when close."""
    base = Path(base_dir)

    def rel(p: Path | None) -> str | None:
        return None if p is None else _portable(p, base)

    s, u, e, c, b, o = (
        recipe.signing,
        recipe.uki,
        recipe.encryption,
        recipe.catalog,
        recipe.boot,
        recipe.output,
    )
    files = u.source == "files"
    uki: dict[str, Any] = {
        "source": u.source,
        "kernel": rel(Path(u.kernel)) if files and u.kernel is not None else u.kernel,
        "initrds": [rel(Path(p)) if files else p for p in u.initrds] if u.initrds or u.kernel else None,
        "cmdline": u.cmdline,
        "os_release": u.os_release,
        "stub": rel(u.stub),
        "existing_uki": u.existing_uki,
        "existing_action": u.existing_action,
    }
    return {
        "format_version": recipe.format_version,
        "base_image": rel(recipe.base_image),
        "protect": list(recipe.protect),
        "signing": _drop_none(
            {
                "uefi_cert": rel(s.uefi_cert),
                "uefi_key": rel(s.uefi_key),
                "catalog_cert": rel(s.catalog_cert),
                "catalog_key": rel(s.catalog_key),
                "key_passphrase": _secret_dict(s.key_passphrase, base),
                "catalog_key_passphrase": None
                if s.catalog_key_passphrase is None
                else _secret_dict(s.catalog_key_passphrase, base),
            }
        ),
        "uki": _drop_none(uki),
        "encryption": _drop_none(
            {
                "partitions": None if e.partitions is None else list(e.partitions),
                "sector_size": e.sector_size,
                "kdf": e.kdf,
                "iter_time_ms": e.iter_time_ms,
                "kdf_params": None if e.kdf_params is None else dict(e.kdf_params),
                "passphrase": _secret_dict(e.passphrase, base),
                "recovery_key_file": rel(e.recovery_key_file),
                "sparse_ciphertext": e.sparse_ciphertext,
            }
        ),
        "catalog": {"name": c.name, "version": c.version, "block_size": c.block_size},
        "boot": _drop_none(
            {"uki_id": b.uki_id, "vendor_dir": b.vendor_dir, "install_removable": b.install_removable}
        ),
        "output": {"path": rel(o.path), "format": o.format},
    }


# --- files ----------------------------------------------------------------------------------------------

_HEADER_COMMENT = (
    "# Shieldwright recipe: build it with `shieldwright build THIS-FILE` (format: docs/formats/recipe.md).\n"
    "# It holds no secrets: passphrases are prompted for, or read from the file or environment variable\n"
    "# named here. Relative paths start at this file's directory.\n\n"
)


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and check a recipe file; relative paths in it are taken from its directory."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_RECIPE_BYTES + 1)  # bounded: a pipe or /dev/zero has no st_size to trust
    except IsADirectoryError:
        raise RecipeError(f"{path} is a directory, not a recipe", "give the .toml file") from None
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.strerror or exc}", "check the path") from None
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path} is larger than {MAX_RECIPE_BYTES} bytes: not a recipe", "check the path")
    try:
        d = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RecipeError(f"{path} is not UTF-8 text", "a recipe is a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path} is not valid TOML: {exc}", _HINT_DOC) from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise RecipeError(
            f"{path} nests arrays or tables too deeply", "a recipe is a flat TOML file"
        ) from None
    except ValueError as exc:  # e.g. an integer of more digits than int() converts
        raise RecipeError(f"{path} is not valid TOML: {exc}", _HINT_DOC) from None
    return recipe_from_dict(d, path.absolute().parent)


def save_recipe(recipe: Recipe, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``recipe`` to ``path`` atomically (complete or not at all), paths relative to its directory.

    An existing ``path`` is replaced only with ``overwrite`` (the CLI's ``--force``, or the wizard's file
    dialog having asked): a mistyped ``--save-recipe`` must not destroy a key or an image. Otherwise
    :class:`~app.errors.OutputExistsError`. There is nothing secret to leak: a Recipe holds
    :class:`SecretSource` references only.
    """
    from app.signing.output import write_output

    path = Path(path)
    text = toml_writer.dumps(recipe_to_dict(recipe, path.absolute().parent), _HEADER_COMMENT)
    return write_output(path, text.encode("utf-8"), overwrite=overwrite)


# --- validation ---------------------------------------------------------------------------------------------


def validate_recipe(recipe: Recipe, *, check_files: bool = True) -> list[Finding]:
    """Everything wrong with ``recipe``, each message starting with the dotted key at fault.

    ERROR findings make the build refuse to start; WARNINGs are shown. ``check_files`` also checks that
    input files exist and output directories are there (nothing is parsed: that is the build's job).
    The rules themselves are in :mod:`app.template.checks`.
    """
    from app.template.checks import recipe_problems

    return [p.finding() for p in recipe_problems(recipe, check_files=check_files)]


# --- secrets ---------------------------------------------------------------------------------------------


def read_secret(
    source: SecretSource,
    *,
    prompt_text: str,
    interactive: bool,
    key: str | None = None,
    option: str | None = None,
) -> bytearray:
    """Fetch the secret ``source`` points at, as a ``bytearray`` the caller wipes after use.

    file: its bytes to EOF (pipes and FIFOs too), minus one trailing newline; env: the variable's value;
    prompt: ``getpass`` when ``interactive``, else a :class:`RecipeError` telling which recipe key (``key``)
    or command-line option (``option``) gives the secret instead. The reading is :mod:`app.secrets`', the
    one reader every command shares; errors become :class:`RecipeError` naming ``key``. The secret never
    appears in a message.
    """
    from app import secrets

    where = f" ({key})" if key else ""
    try:
        if source.kind == "file":
            return secrets.read_secret_file(Path(source.value or ""), where=where)
        if source.kind == "env":
            return secrets.read_secret_env(source.value or "", where=where)
    except secrets.SecretError as exc:
        raise RecipeError(exc.message, exc.hint, key=key) from None
    if source.kind != "prompt":
        raise RecipeError(f"{key or 'secret'}: {source.kind!r} is not a secret source", _HINT_DOC, key=key)
    what = prompt_text.strip().rstrip(":").strip() or "a passphrase"
    if not interactive:
        ways = [f'{key} = {{ file = "PATH" }} or {{ env = "VARIABLE" }} in the recipe'] if key else []
        if option:
            ways.append(f"the option {option}")
        raise RecipeError(
            f"cannot ask for {what[:1].lower() + what[1:]}: there is no terminal to prompt on",
            "give it with " + (" or ".join(ways) if ways else "a file or an environment variable"),
            key=key,
        )
    return secrets.prompt_secret(prompt_text)
