"""File › Open recipe: the wizard's state filled from a saved recipe (Qt-free).

Every page reads its part of :class:`~app.gui.state.WizardState` when it is made or entered, so a wizard
made on :func:`state_from_recipe` shows the recipe on every page. Two choices are about the image and are
reset whenever an image is opened (the protected partitions, the UKI options): :class:`RecipeWizardState`
applies the recipe's once the recipe's own base image has been inspected. Secrets are never in a recipe:
the wizard asks for them as a replay does (the signing key's passphrase when it is encrypted, the
provisioning passphrase on the Encryption page, or read from the file or variable the recipe names).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from app.disk.model import DiskLayout
from app.gui.state import CatalogChoice, EncryptionChoice, OutputChoice, UkiChoice, WizardState
from app.template.recipe import Recipe


def same_file(a: Path | str, b: Path | str) -> bool:
    """``a`` and ``b`` name the same file (the page may hand back a resolved or relative path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


@dataclass
class RecipeWizardState(WizardState):
    """A WizardState that gives the recipe's image-bound choices to the recipe's base image."""

    #: The recipe whose protected partitions and UKI options wait for its base image to be inspected.
    pending_recipe: Recipe | None = field(default=None, repr=False, compare=False)

    def set_image(self, path: Path | None, layout: DiskLayout | None) -> None:
        super().set_image(path, layout)
        recipe = self.pending_recipe
        if recipe is None or path is None or layout is None or not same_file(path, recipe.base_image):
            return
        self.pending_recipe = None  # once: an image opened again later gets the defaults
        self.protected = set(recipe.protect)
        self.uki = UkiChoice(options=copy.deepcopy(recipe.uki))


def state_from_recipe(recipe: Recipe) -> RecipeWizardState:
    """A fresh state holding every choice of ``recipe`` (the signing certificates are loaded by the
    Certificates page, the base image by the Base image page: see ``ShieldwrightWizard.from_recipe``)."""
    enc = copy.deepcopy(recipe.encryption)
    state = RecipeWizardState(pending_recipe=recipe)
    state.catalog_same_as_uefi = recipe.signing.catalog_cert is None
    state.encryption = EncryptionChoice(
        options=enc,
        # A replay asks for the passphrase (or reads the file or variable named): the page does the same.
        passphrase_generated=False,
        recovery_key=enc.recovery_key_file is not None,
    )
    state.catalog = CatalogChoice(options=dataclasses.replace(recipe.catalog))
    state.boot = dataclasses.replace(recipe.boot)
    state.pcr = copy.deepcopy(recipe.pcr)
    state.output = OutputChoice(options=dataclasses.replace(recipe.output))
    return state
