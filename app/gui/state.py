"""What the wizard has chosen so far, Qt-free (it becomes the build Recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.disk.model import DiskLayout
from app.findings import has_errors

if TYPE_CHECKING:
    from app.signing.certificates import CertificateInfo
    from app.signing.signer import Signer


@dataclass
class SigningChoice:
    """The certificate (and key) chosen for one signing role, and what was loaded from it.

    Only the paths are a *choice*: they go into the recipe. ``signer`` holds the decrypted private key
    in memory for this session and is never serialised (a replayed recipe prompts for the passphrase
    again); ``info`` is the certificate as ``describe_certificate`` saw it for this role's purpose.
    The key passphrase is deliberately not a field: it is used once to load the key and then dropped.
    """

    cert_path: Path
    #: The private key file; None when the key is inside ``cert_path`` (a PKCS#12 file or a PEM bundle).
    key_path: Path | None = None
    signer: Signer | None = field(default=None, repr=False, compare=False)
    info: CertificateInfo | None = field(default=None, compare=False)

    @property
    def usable(self) -> bool:
        """A key is loaded and the certificate has no ERROR finding for this role."""
        return self.signer is not None and self.info is not None and not has_errors(self.info.findings)

    def to_recipe_dict(self) -> dict[str, str]:
        """Paths only: ``{"certificate": …, "key": …}`` (no key when it is in the certificate file)."""
        out = {"certificate": str(self.cert_path)}
        if self.key_path is not None:
            out["key"] = str(self.key_path)
        return out


@dataclass
class WizardState:
    """Choices made across pages. Pages write here; nothing here knows about Qt."""

    #: The base image the user opened (None until one was inspected successfully).
    image_path: Path | None = None
    #: What ``inspect_image`` found in it.
    layout: DiskLayout | None = None
    #: GPT partition numbers chosen for protection (encryption + catalog).
    protected: set[int] = field(default_factory=set)
    #: Signs the UKI (Authenticode); its certificate must be in the VM firmware's Secure Boot db.
    uefi_signing: SigningChoice | None = None
    #: Signs the Volume Signature Catalog and the manifest. When ``catalog_same_as_uefi`` is set this is
    #: the UEFI certificate again, described for the catalog purpose (pages keep it in step).
    catalog_signing: SigningChoice | None = None
    #: The catalog is signed with the UEFI image signing certificate (the default).
    catalog_same_as_uefi: bool = True

    def set_image(self, path: Path | None, layout: DiskLayout | None) -> None:
        """A new image replaces the old one and resets the choices made about it to the defaults."""
        self.image_path = path
        self.layout = layout
        self.protected = (
            {p.number for p in layout.partitions if p.protectable and p.protect_by_default}
            if layout
            else set()
        )

    @property
    def signing_ready(self) -> bool:
        """Both roles have a loaded key and a certificate without ERROR findings."""
        return bool(self.uefi_signing and self.uefi_signing.usable) and bool(
            self.catalog_signing and self.catalog_signing.usable
        )

    def to_recipe_dict(self) -> dict[str, Any]:
        """The choices as plain data for the recipe: **paths, never secrets**.

        Passphrases are not stored anywhere in the state, and the in-memory signers (decrypted keys)
        are left out on purpose: ``shieldwright build`` prompts for a passphrase or reads it from a file
        or an environment variable, exactly as the CLI does.
        """
        signing: dict[str, Any] = {}
        if self.uefi_signing is not None:
            signing["uefi"] = self.uefi_signing.to_recipe_dict()
        if self.catalog_same_as_uefi:
            signing["catalog"] = {"same_as_uefi": True}
        elif self.catalog_signing is not None:
            signing["catalog"] = {"same_as_uefi": False, **self.catalog_signing.to_recipe_dict()}
        recipe: dict[str, Any] = {"signing": signing}
        if self.image_path is not None:
            recipe["image"] = {"path": str(self.image_path), "protected": sorted(self.protected)}
        return recipe
