"""The Recipe: every choice of a template build, as plain dataclasses (the model, and nothing else).

The wizard's state holds these option classes, ``shieldwright build`` fills them from a recipe file and
flags, and the pipeline executes them; what changes the template is here and nothing else is. A passphrase
is never a field: a :class:`SecretSource` says where it comes from and :func:`read_secret` fetches it at
build time. The keys and their flags are in :mod:`app.template.options`, the TOML file in
:mod:`app.template.recipe_file`, the value rules in :mod:`app.template.checks`; the format is
docs/formats/recipe.md.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import secrets
from app.catalog.limits import BLOCK_SIZES, DEFAULT_BLOCK_SIZE
from app.disk.image import FORMATS as IMAGE_FORMATS
from app.errors import ShieldwrightError
from app.luks.params import LUKS_SECTOR_SIZES

if TYPE_CHECKING:
    from app.luks.kdf import KdfParams

#: The recipe format this code reads and writes (the ``format_version`` key).
FORMAT_VERSION = 2
#: Versions this reader accepts: 1 has no [pcr] table (docs/formats/recipe.md §7).
READABLE_VERSIONS = (1, 2)
SECRET_KINDS = ("prompt", "file", "env")
#: Where the UKI comes from: built from the base image's kernel, built from files, or an existing UKI.
UKI_SOURCES = ("image", "files", "existing")
#: What happens to an existing UKI: kept as is, re-signed with the UEFI key, or replaced by a new one.
EXISTING_ACTIONS = ("keep", "resign", "replace")
#: The choices below are owned by the engine; the recipe offers them under these names.
SECTOR_SIZES = LUKS_SECTOR_SIZES
OUTPUT_FORMATS = IMAGE_FORMATS
CATALOG_BLOCK_SIZES = BLOCK_SIZES
#: The template version the wizard proposes and ``build`` takes without a recipe.
DEFAULT_TEMPLATE_VERSION = "1.0.0.0"
DEFAULT_ITER_TIME_MS = 2000
MAX_ITER_TIME_MS = 600_000
DEFAULT_VENDOR_DIR = "debian"

#: ``PARTNUM:/path/in/that/partition's/filesystem``.
_IMAGE_REF = re.compile(r"(?P<number>[1-9][0-9]{0,3}):(?P<path>/.*)", re.DOTALL)
HINT_DOC = "see docs/formats/recipe.md"


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


#: The PCRs a template's policy may bind, each predicted offline (app.measure.predict).
POLICY_PCRS = (4, 7, 11)
#: The PCR banks a policy may use (app.boot.pcr.BANK_SIZES; stated here so the recipe stays light).
POLICY_BANKS = ("sha256", "sha384", "sha512", "sha1")


@dataclass
class PcrOptions:
    """The PCR policy: which PCRs the VM's vTPM must show, in which bank, and the target firmware whose
    Secure Boot state PCR 7 (and the boot path of PCR 4) depends on — one of an OVMF variable store, a TCG
    event log of the target, or a directory of certificates. Without a firmware profile only PCR 11 is
    predicted."""

    firmware_vars: Path | None = None
    firmware_log: Path | None = None
    firmware_certs: Path | None = None
    pcrs: list[int] = field(default_factory=lambda: list(POLICY_PCRS))
    bank: str = "sha256"

    @property
    def firmware(self) -> tuple[str, Path] | None:
        """(profile kind, path) of the firmware profile chosen, or None."""
        for kind in ("vars", "log", "certs"):
            path = getattr(self, f"firmware_{kind}")
            if path is not None:
                return kind, path
        return None


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
    pcr: PcrOptions = field(default_factory=PcrOptions)
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


def parse_image_ref(ref: object) -> tuple[int, str]:
    """``"2:/vmlinuz-6.1.0"`` → ``(2, "/vmlinuz-6.1.0")``: a file inside a partition of the base image."""
    m = _IMAGE_REF.fullmatch(ref) if isinstance(ref, str) else None
    if m is None:
        raise RecipeError(f"{ref!r} is not a reference PARTNUM:/path", "e.g. 2:/vmlinuz-6.1.0-28-amd64")
    return int(m.group("number")), m.group("path")


def explicit_kdf(enc: EncryptionOptions) -> KdfParams | None:
    """``enc.kdf_params`` as a :class:`~app.luks.kdf.KdfParams` (fresh salt), or None to calibrate."""
    from app.luks.kdf import KdfParams  # lazy: cryptography, only when a KDF cost is used

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


def short_repr(value: Any) -> str:
    """``repr`` cut to 60 characters, for quoting a bad value in a one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    where = f" ({key})" if key else ""
    try:
        if source.kind == "file":
            return secrets.read_secret_file(Path(source.value or ""), where=where)
        if source.kind == "env":
            return secrets.read_secret_env(source.value or "", where=where)
    except secrets.SecretError as exc:
        raise RecipeError(exc.message, exc.hint, key=key) from None
    if source.kind != "prompt":
        raise RecipeError(f"{key or 'secret'}: {source.kind!r} is not a secret source", HINT_DOC, key=key)
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
