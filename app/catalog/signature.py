"""The catalog's CMS envelope: plain CMS from :mod:`app.signing.cms`, plus the one rule the format adds.

:mod:`app.signing.cms` already keeps "one changed byte fails verification" for every CMS user. What is
the catalog's own: a ``.vsc`` travels alone to VM owners, so its signer's certificate must be embedded
(``docs/formats/vsc.md``); a trusted copy given for the check never stands in for it, not even for a
signature that embeds no certificates at all (which plain CMS allows).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.errors import SignatureError
from app.signing.cms import (
    OID_SIGNING_CERTIFICATE_V2,
    CmsVerification,
    sign_cms,
    signing_certificate_v2,
    verify_cms,
)
from app.signing.signer import Signer

__all__ = ["OID_SIGNING_CERTIFICATE_V2", "sign_content", "signing_certificate_v2", "verify_content"]


def _cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def sign_content(content: bytes, signer: Signer, signing_time: datetime) -> bytes:
    """DER SignedData, id-data, content encapsulated, SHA-256, with the signer's certificate bound in."""
    return sign_cms(content, signer, signing_time=signing_time)


def verify_content(data: bytes, trusted: Sequence[x509.Certificate] | None) -> CmsVerification:
    """:func:`verify_cms`, and the signer's certificate must be embedded; failures are SignatureErrors."""
    result = verify_cms(data, trusted=trusted)
    if not any(_cert_der(c) == _cert_der(result.signer) for c in result.certificates):
        raise SignatureError("the signer's certificate is missing from the catalog or damaged")
    return result
