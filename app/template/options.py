"""One table, :data:`OPTIONS`, names every choice of a template build once.

Each :class:`Option` is a recipe key (``catalog.name``), the :class:`~app.template.recipe.Recipe` field it
fills, its type and default, and - when pipelines need it - the ``shieldwright build`` flag that sets it, with
its help. The recipe reader and writer (:mod:`app.template.recipe_file`), the ``build`` options
(:mod:`app.commands.build`) and the wizard's "equivalent command" (:func:`equivalent_argv`) are all derived
from it, so a choice has one name from the recipe to the page to the flag. ukify's ``ConfigItem`` table is
the model; docs/formats/recipe.md documents the same keys.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.catalog.limits import DEFAULT_BLOCK_SIZE
from app.luks.params import KDF_KINDS
from app.template.recipe import (
    DEFAULT_ITER_TIME_MS,
    DEFAULT_VENDOR_DIR,
    EXISTING_ACTIONS,
    OUTPUT_FORMATS,
    POLICY_BANKS,
    POLICY_PCRS,
    SECTOR_SIZES,
    UKI_SOURCES,
    Recipe,
    SecretSource,
)

#: How a value is spelt in TOML and parsed from a flag. "ref" and "refs" are references into the base image
#: ("PARTNUM:/path") or, with ``uki.source = "files"``, paths on this machine.
Kind = Literal["int", "str", "bool", "path", "int_list", "ref", "refs", "secret", "kdf_params"]

#: The default of a key that has none ("leave it out").
NONE: Any = None


@dataclass(frozen=True)
class Option:
    """One recipe key, and its ``build`` flag when it has one."""

    key: str
    kind: Kind
    help: str
    required: bool = False
    default: Any = NONE
    #: The values the recipe checks accept (argparse offers them as the flag's choices too).
    choices: tuple[Any, ...] | None = None
    flag: str | None = None
    metavar: str | None = None
    #: Keys reset to their defaults when the flag changes this key's value (a new UEFI certificate makes the
    #: recipe's UEFI key meaningless; a new KDF makes its explicit cost meaningless).
    clears: tuple[str, ...] = ()
    #: What a required key holds, for "required key is missing (…)".
    what: str = ""

    @property
    def section(self) -> str | None:
        """The recipe table (``"catalog"``), or None for a top-level key."""
        return self.key.split(".")[0] if "." in self.key else None

    @property
    def name(self) -> str:
        """The key inside its table, which is also the option class's field name."""
        return self.key.rsplit(".", 1)[-1]

    @property
    def dest(self) -> str | None:
        """The argparse destination of the flag (``--iter-time`` → ``iter_time``)."""
        return None if self.flag is None else self.flag.lstrip("-").replace("-", "_")

    def holder(self, recipe: Recipe) -> Any:
        """The object whose field this key is: the recipe, or one of its option classes."""
        return recipe if self.section is None else getattr(recipe, self.section)

    def get(self, recipe: Recipe) -> Any:
        return getattr(self.holder(recipe), self.name)

    def set(self, recipe: Recipe, value: Any) -> None:
        setattr(self.holder(recipe), self.name, value)


def _opt(key: str, kind: Kind, help: str, **kw: Any) -> Option:
    return Option(key, kind, help, **kw)


#: Every recipe key, in the order of docs/formats/recipe.md (and of a saved recipe).
OPTIONS: tuple[Option, ...] = (
    _opt("format_version", "int", "the recipe format version", required=True,
         what="the recipe format version, 1"),
    _opt("base_image", "path", "base disk image (raw, VHD, VHDX or qcow2; never modified)",
         required=True, flag="--base", metavar="IMAGE", what="the base disk image's path"),
    _opt("protect", "int_list", "GPT number of a partition to protect (encrypt + catalog); repeat for more "
         "(default without a recipe: root, /usr and XBOOTLDR)", required=True, flag="--protect",
         metavar="N", what="an array of GPT partition numbers"),
    _opt("signing.uefi_cert", "path", "certificate that signs the UKI (in the VM firmware's db)",
         required=True, flag="--uefi-cert", metavar="C", clears=("signing.uefi_key",),
         what="the UEFI signing certificate's path"),
    _opt("signing.uefi_key", "path", "its private key (omit for PKCS#12 or a combined PEM)",
         flag="--uefi-key", metavar="K"),
    _opt("signing.catalog_cert", "path", "certificate that signs the catalog and the manifest (default: "
         "the UEFI certificate)", flag="--catalog-cert", metavar="C", clears=("signing.catalog_key",)),
    _opt("signing.catalog_key", "path", "its private key", flag="--catalog-key", metavar="K"),
    _opt("signing.key_passphrase", "secret", "passphrase of the signing key(s)", default=SecretSource(),
         flag="--key-passphrase-file", metavar="FILE", clears=("signing.catalog_key_passphrase",)),
    _opt("signing.catalog_key_passphrase", "secret", "passphrase of the catalog key (none: the same as "
         "signing.key_passphrase)"),
    _opt("uki.source", "str", "where the UKI comes from", default="image", choices=UKI_SOURCES),
    _opt("uki.kernel", "ref", "the kernel: a reference into the image, or a file with source \"files\""),
    _opt("uki.initrds", "refs", "the initrds, in load order", default=[]),
    _opt("uki.cmdline", "str", "kernel command line of the UKI", flag="--cmdline", metavar="TEXT"),
    _opt("uki.os_release", "str", "os-release text of the UKI"),
    _opt("uki.stub", "path", "systemd-stub to build on (none: the host's)"),
    _opt("uki.existing_uki", "str", "the existing UKI in the ESP, PARTNUM:/EFI/Linux/NAME.efi"),
    _opt("uki.existing_action", "str", "what to do with an existing UKI", choices=EXISTING_ACTIONS),
    _opt("encryption.partitions", "int_list", "protected partitions to encrypt (none: all)"),
    _opt("encryption.sector_size", "int", "LUKS2 encryption sector size", default=4096,
         choices=SECTOR_SIZES),
    _opt("encryption.kdf", "str", "keyslot KDF (default argon2id)", default="argon2id", choices=KDF_KINDS,
         flag="--kdf", clears=("encryption.kdf_params",)),
    _opt("encryption.iter_time_ms", "int", f"KDF unlock time to calibrate for, like cryptsetup (default "
         f"{DEFAULT_ITER_TIME_MS})", default=DEFAULT_ITER_TIME_MS, flag="--iter-time", metavar="MS",
         clears=("encryption.kdf_params",)),
    _opt("encryption.kdf_params", "kdf_params", "explicit KDF cost instead of a calibration"),
    _opt("encryption.passphrase", "secret", "the provisioning passphrase (LUKS2 keyslot 0)",
         default=SecretSource(), flag="--passphrase-file", metavar="FILE"),
    _opt("encryption.recovery_key_file", "path", "add a recovery keyslot; write the generated key to FILE "
         "(mode 0600)", flag="--recovery-key-file", metavar="FILE"),
    _opt("encryption.sparse_ciphertext", "bool", "leave what the (ext4) filesystem does not use unencrypted "
         "holes: smaller, faster, shows which blocks are in use", default=False),
    _opt("catalog.name", "str", "template name", required=True, flag="--name", what="the template name"),
    _opt("catalog.version", "str", "template version (default without a recipe: 1.0.0.0)", required=True,
         flag="--version", metavar="A.B.C.D", what="the template version a.b.c.d"),
    _opt("catalog.block_size", "int", "catalog hash block size in bytes", default=DEFAULT_BLOCK_SIZE),
    _opt("boot.uki_id", "str", "the UKI's file name stem in \\EFI\\Linux (none: from the template name)"),
    _opt("boot.vendor_dir", "str", "shim's directory under \\EFI", default=DEFAULT_VENDOR_DIR),
    _opt("boot.install_removable", "bool", "also install the UKI as \\EFI\\BOOT\\BOOTX64.EFI (images "
         "without shim)", default=False, flag="--install-removable"),
    _opt("pcr.firmware_vars", "path", "the target VM's OVMF variable store: predict PCR 4 and 7 on it",
         flag="--firmware-vars", metavar="FILE.fd", clears=("pcr.firmware_log", "pcr.firmware_certs")),
    _opt("pcr.firmware_log", "path", "a TCG event log of a boot on the target: predict PCR 4 and 7 from its "
         "firmware part", flag="--firmware-log", metavar="EVENTLOG",
         clears=("pcr.firmware_vars", "pcr.firmware_certs")),
    _opt("pcr.firmware_certs", "path", "the target's PK, KEK, db and dbx as files: predict PCR 4 and 7",
         flag="--firmware-certs", metavar="DIR", clears=("pcr.firmware_vars", "pcr.firmware_log")),
    _opt("pcr.pcrs", "int_list", "the PCRs the policy binds", default=list(POLICY_PCRS)),
    _opt("pcr.bank", "str", "the PCR bank of the policy", default="sha256", choices=POLICY_BANKS),
    _opt("output.path", "path", "the template image (default: the recipe's)", required=True, flag="--output",
         metavar="OUT", what="the output image's path"),
    _opt("output.format", "str", "output format (default: the recipe's, else from -o's extension, else raw)",
         default="raw", choices=OUTPUT_FORMATS, flag="--format"),
)  # fmt: skip

BY_KEY: dict[str, Option] = {o.key: o for o in OPTIONS}
#: The recipe's tables, in order.
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(o.section for o in OPTIONS if o.section is not None))
#: Short spellings argparse also accepts for a flag.
SHORT_FLAGS = {"--output": "-o"}


def option(key: str) -> Option:
    return BY_KEY[key]


def flagged() -> list[Option]:
    """The options a ``build`` flag can set, in table order."""
    return [o for o in OPTIONS if o.flag is not None]


def default_of(opt: Option) -> Any:
    """A fresh default value (lists are not shared between recipes)."""
    return list(opt.default) if isinstance(opt.default, list) else opt.default


# -- flags -> recipe ----------------------------------------------------------------------------------------


def flag_value(opt: Option, raw: Any) -> Any:
    """The recipe value a parsed flag stands for: absolute paths, file secret sources, a one-line command
    line (whitespace folded, as a shell-typed line would be)."""
    if opt.kind == "path":
        return Path(raw).absolute()
    if opt.kind == "secret":
        return SecretSource.file(Path(raw).absolute())
    if opt.key == "uki.cmdline":
        return " ".join(str(raw).split())
    if opt.kind == "int_list":
        return list(raw)
    return raw


def apply_flag(recipe: Recipe, opt: Option, raw: Any) -> None:
    """Set ``opt``'s key from its flag's parsed value; the keys it ``clears`` return to their defaults when
    the value changes (a new certificate drops the old key path, a new KDF its explicit cost)."""
    value = flag_value(opt, raw)
    changed = opt.get(recipe) != value
    opt.set(recipe, value)
    if changed:
        for key in opt.clears:
            BY_KEY[key].set(recipe, default_of(BY_KEY[key]))
    if opt.key == "protect" and recipe.encryption.partitions is not None:
        # Encrypted partitions are protected ones: what is no longer protected is no longer encrypted.
        kept = [n for n in recipe.encryption.partitions if n in recipe.protect]
        recipe.encryption.partitions = kept or None


# -- recipe -> flags ----------------------------------------------------------------------------------------


def flag_args(opt: Option, value: Any) -> list[str]:
    """``value`` of ``opt`` as command-line words (``["--protect", "2", "--protect", "3"]``); [] when the flag
    cannot say it (a prompt or an environment variable as a secret source, a default)."""
    assert opt.flag is not None
    if value is None or value == default_of(opt) and opt.kind in ("bool", "secret"):
        return []
    if opt.kind == "bool":
        return [opt.flag] if value else []
    if opt.kind == "secret":
        return [opt.flag, os.fspath(value.value)] if value.kind == "file" and value.value else []
    if opt.kind == "int_list":
        return [word for item in value for word in (opt.flag, str(item))]
    return [opt.flag, os.fspath(value) if isinstance(value, Path) else str(value)]


def equivalent_argv(recipe: Recipe, *, program: Sequence[str] = ("shieldwright", "build")) -> list[str]:
    """The ``shieldwright build`` command line that sets every flagged choice of ``recipe``.

    Keys with no flag (the kernel chosen in the image, os-release, sector and block sizes, an explicit KDF
    cost, …) are left to the build's defaults: :func:`unflagged_choices` names those that differ, so a caller
    can say that only the saved recipe replays them.
    """
    argv = list(program)
    for opt in flagged():
        value = opt.get(recipe)
        # The format always: without it, the build would take it from the output's extension.
        if opt.required or opt.key == "output.format" or value != default_of(opt):
            argv += flag_args(opt, value)
    return argv


def unflagged_choices(recipe: Recipe) -> list[str]:
    """The keys of ``recipe`` that differ from their defaults and that no flag can set."""
    return [
        o.key
        for o in OPTIONS
        if o.flag is None and o.key != "format_version" and o.get(recipe) != default_of(o)
    ]
