"""The Certificates page's engine calls (run off the GUI thread): load a signer and describe it per role.

A certificate file without its key is not an error here but :class:`NeedsKey`, so the page can ask for
the key file; every other problem is the engine's :class:`~app.errors.SigningError`, shown as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import get_args

from app.errors import SigningError
from app.gui.state import SigningChoice
from app.signing import keys
from app.signing.certificates import CertificateInfo, Purpose, describe_certificate
from app.signing.signer import Signer


class Role(StrEnum):
    """A signing role; the values are the engine's purposes (:data:`app.signing.certificates.Purpose`)."""

    UEFI = "uefi"
    CATALOG = "catalog"


assert {role.value for role in Role} == set(get_args(Purpose)), "Role must name the engine's purposes"


@dataclass
class LoadedCertificate:
    """A loaded signer and its certificate described for every role (cheap; saves a task on toggling)."""

    cert_path: Path
    key_path: Path | None
    signer: Signer
    infos: dict[Role, CertificateInfo]

    def choice(self, role: Role) -> SigningChoice:
        return SigningChoice(self.cert_path, self.key_path, self.signer, self.infos[role])


@dataclass(frozen=True)
class NeedsKey:
    """The chosen file is a certificate without its private key: ask for the key file."""

    cert_path: Path


def describe_for_roles(signer: Signer, cert_path: Path, key_path: Path | None) -> LoadedCertificate:
    """Runs in the executor: the signer's certificate, described for every role."""
    infos = {role: describe_certificate(signer.certificate, purpose=role.value) for role in Role}
    return LoadedCertificate(cert_path, key_path, signer, infos)


def load_for_roles(
    cert_path: Path, key_path: Path | None = None, passphrase: bytes | None = None
) -> LoadedCertificate | NeedsKey:
    """Runs in the executor: load the signer (PKCS#12, or certificate + key) and describe it.

    Without ``key_path`` a certificate that carries no key is answered with :class:`NeedsKey` rather
    than an error, so the page can ask for the key file.
    """
    try:
        signer = keys.load_signer(cert_path, key_path, passphrase)
    except SigningError as exc:
        if key_path is not None or type(exc) is not SigningError:  # wrong passphrase, mismatch: as is
            raise
        try:
            keys.load_certificate(cert_path)  # a plain certificate? then only its key is missing
        except SigningError:
            raise exc from None
        return NeedsKey(cert_path)
    return describe_for_roles(signer, cert_path, key_path)
