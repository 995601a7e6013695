"""WizardState → Recipe: what the wizard chose, as the Recipe that ``shieldwright build`` replays.

Lives in the GUI package because it knows the wizard's state model, but imports no Qt (WizardState
does not either), so it is tested without a display. The Review page uses it for "Save recipe…" and
"Show equivalent command", and the Generate page builds from the same Recipe, which is what makes a saved
recipe give the same template as the wizard.

What does not carry over, on purpose: secrets (the provisioning passphrase and the recovery key stay in
the wizard's memory; a replay prompts for the passphrase or reads the file the user named, and writes a
*new* recovery key to ``encryption.recovery_key_file``), the loaded signing keys (a replay loads them from
their paths again), and computed results (the UKI and catalog are rebuilt by the build).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.template.recipe import (
    BootOptions,
    CatalogOptions,
    EncryptionOptions,
    OutputOptions,
    Recipe,
    RecipeError,
    SecretSource,
    SigningOptions,
    UkiOptions,
    default_recovery_key_file,
    kdf_params_dict,
)

#: The wizard's names (app.gui.state.BOOT_SOURCES / EXISTING_UKI_ACTIONS) → the recipe's.
_SOURCES = {"image": "image", "files": "files", "existing-uki": "existing"}
_ACTIONS = {"keep": "keep", "re-sign": "resign", "replace": "replace"}


def recipe_from_wizard_state(
    state: Any,
    *,
    output: Path | None = None,
    output_format: str | None = None,
    recovery_key_file: Path | None = None,
    key_passphrase: SecretSource | None = None,
    boot: BootOptions | None = None,
) -> Recipe:
    """The Recipe for ``state`` (an :class:`app.gui.state.WizardState`, or anything shaped like it).

    The output path and format come from ``state.output`` (the Review page's choice) unless given here.
    When the user asked for a recovery key, a replay writes the new one to ``recovery_key_file`` (default:
    beside the output, see :func:`app.template.recipe.default_recovery_key_file`). A choice the wizard has not
    made yet raises :class:`RecipeError` naming the recipe key and the page to visit; values are not
    judged here - run :func:`app.template.recipe.validate_recipe` on the result for that.
    """
    if state.image_path is None:
        raise RecipeError(
            "base_image: no base image chosen yet", "open one on the Base image page", key="base_image"
        )
    chosen_output = getattr(state, "output", None)
    out_path = output if output is not None else getattr(chosen_output, "path", None)
    if out_path is None:
        raise RecipeError(
            "output.path: no output file chosen yet", "choose it on the Review page", key="output.path"
        )
    out_format = output_format or getattr(chosen_output, "format", None) or "raw"
    protect = sorted(state.protected)
    return Recipe(
        base_image=Path(state.image_path),
        protect=protect,
        signing=_signing(state, key_passphrase or SecretSource.prompt()),
        uki=_uki(state.boot),
        encryption=_encryption(state.encryption, protect, Path(out_path), recovery_key_file),
        catalog=_catalog(state.catalog),
        boot=boot or BootOptions(),
        output=OutputOptions(Path(out_path), out_format),
    )


def _signing(state: Any, passphrase: SecretSource) -> SigningOptions:
    uefi = state.uefi_signing
    if uefi is None:
        raise RecipeError(
            "signing.uefi_cert: no UEFI signing certificate chosen yet",
            "load or generate one on the Signing certificates page",
            key="signing.uefi_cert",
        )
    catalog_cert = catalog_key = None
    if not state.catalog_same_as_uefi:
        catalog = state.catalog_signing
        if catalog is None:
            raise RecipeError(
                "signing.catalog_cert: no catalog signing certificate chosen yet",
                "load one on the Signing certificates page, or sign the catalog with the UEFI certificate",
                key="signing.catalog_cert",
            )
        catalog_cert, catalog_key = catalog.cert_path, catalog.key_path
    return SigningOptions(
        uefi_cert=Path(uefi.cert_path),
        uefi_key=None if uefi.key_path is None else Path(uefi.key_path),
        catalog_cert=None if catalog_cert is None else Path(catalog_cert),
        catalog_key=None if catalog_key is None else Path(catalog_key),
        key_passphrase=passphrase,
    )


def _ref(boot_file: Any) -> str:
    """A BootFile (partition number + path in its filesystem) as the recipe's ``PARTNUM:/path``."""
    return f"{boot_file.partition_number}:{boot_file.path}"


def _uki(boot: Any) -> UkiOptions:
    if not boot.configured:
        return UkiOptions()  # nothing chosen: the build's defaults (newest kernel in the image)
    source = _SOURCES[boot.source]
    out = UkiOptions(source=source)
    if source == "existing":
        out.existing_uki = _ref(boot.existing_uki)
        out.existing_action = _ACTIONS[boot.existing_action]
    if boot.kernel_from_image:
        out.kernel = _ref(boot.kernel)
        out.initrds = [_ref(f) for f in boot.initrds]
    elif source == "files":
        out.kernel = str(boot.kernel_path)
        out.initrds = [str(p) for p in boot.initrd_paths]
    if boot.builds_new_uki:
        # The texts exactly as shown in the wizard (even empty): the replay must build the same UKI.
        out.cmdline = boot.cmdline
        out.os_release = boot.os_release
        out.stub = None if boot.stub_path is None else Path(boot.stub_path)
    return out


def _encryption(
    enc: Any, protect: list[int], output: Path, recovery_key_file: Path | None
) -> EncryptionOptions:
    if enc is None:
        return EncryptionOptions()  # the Encryption page was never shown: the defaults
    chosen = sorted(enc.partitions)
    return EncryptionOptions(
        sector_size=enc.sector_size,
        kdf=enc.kdf,
        iter_time_ms=enc.iter_time_ms,
        kdf_params=kdf_params_dict(enc.kdf_params) if enc.kdf_ready else None,
        passphrase=SecretSource.file(enc.passphrase_file) if enc.passphrase_file else SecretSource.prompt(),
        recovery_key_file=(recovery_key_file or default_recovery_key_file(output))
        if enc.recovery_key
        else None,
        # None = "every protected partition"; a protected partition left out (e.g. already LUKS2) is
        # catalogued only, and the recipe must say so explicitly.
        partitions=None if chosen == protect else chosen,
    )


def _catalog(catalog: Any) -> CatalogOptions:
    if catalog is None:
        raise RecipeError(
            "catalog.name: no template name chosen yet",
            "fill in the Signature catalog page",
            key="catalog.name",
        )
    return CatalogOptions(
        name=catalog.template_name, version=catalog.template_version, block_size=catalog.block_size
    )
