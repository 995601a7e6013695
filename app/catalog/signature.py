"""The catalog's CMS envelope: sign with the signer's certificate bound in, verify strictly.

Plain CMS leaves a few bytes outside the signature: the embedded certificates, the SignedData version,
algorithm parameters. A verifier that falls back on a trusted copy of the signer's certificate, or that
ignores a parameter, would accept a file with one of those bytes changed - yet "one changed byte of the
catalog fails verification" is a promise of the format. So:

- the signer's certificate is bound into the signed attributes with the standard ESS
  ``signingCertificateV2`` attribute (RFC 5035; OpenSSL 3 checks it too), and the certificate embedded in
  the file must hash to it;
- the SignedData version must be the one RFC 5652 section 5.1 prescribes, and every AlgorithmIdentifier's
  parameters must be absent or NULL (the only encodings RFC 3370/5754/5758 allow for these algorithms).

Everything else is :func:`app.signing.cms.verify_cms`'s job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.errors import SignatureError, SigningError
from app.signing import der
from app.signing.cms import OID_DATA, CmsVerification, attribute, sign_signed_data, verify_cms
from app.signing.signer import Signer

OID_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
_HASH_OIDS = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}


def _cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def signing_certificate_v2(cert: x509.Certificate) -> bytes:
    """The ESS signingCertificateV2 attribute naming ``cert`` by SHA-256 (the DEFAULT hash: omitted)."""
    cert_id = der.sequence(der.octet_string(hashlib.sha256(_cert_der(cert)).digest()))
    return attribute(OID_SIGNING_CERTIFICATE_V2, der.sequence(der.sequence(cert_id)))


def sign_content(content: bytes, signer: Signer, signing_time: datetime) -> bytes:
    """DER SignedData, id-data, content encapsulated, SHA-256, with the signer's certificate bound in."""
    return sign_signed_data(
        der.octet_string(content),
        signer,
        content_type_oid=OID_DATA,
        signing_time=signing_time,
        extra_attributes=[signing_certificate_v2(signer.certificate)],
    )


def verify_content(data: bytes, trusted: Sequence[x509.Certificate] | None) -> CmsVerification:
    """:func:`verify_cms` plus the strict checks of the module docstring; failures are SignatureErrors."""
    result = verify_cms(data, trusted=trusted)
    try:
        _check_structure(data)
        _check_signer_binding(result)
    except SignatureError:
        raise
    except SigningError as exc:  # DerError from walking the structure
        raise SignatureError(f"malformed signature: {exc.message}") from None
    return result


def _check_algorithm(el: der.Element, what: str) -> None:
    parts = el.items(what=what, count=(1, 2))
    if len(parts) == 2 and parts[1].raw != b"\x05\x00":
        raise SignatureError(f"the {what} has parameters where only NULL or none are allowed")


def _check_structure(data: bytes) -> None:
    ci = der.decode(data).items(what="ContentInfo", count=(2, 2))
    (sd_el,) = ci[1].items(0, der.CONTEXT, what="[0] content", count=(1, 1))
    sd = sd_el.items(what="SignedData", count=(4, 6))
    for alg in sd[1].items(der.SET, what="digestAlgorithms"):
        _check_algorithm(alg, "digest algorithm")
    infos = sd[-1].items(der.SET, what="signerInfos")
    versions = set()
    for si in infos:
        parts = si.items(what="SignerInfo", count=(5, 7))
        versions.add(parts[0].as_int())
        _check_algorithm(parts[2], "digest algorithm")
        sig_alg = parts[4] if parts[3].is_(0, der.CONTEXT) else parts[3]
        _check_algorithm(sig_alg, "signature algorithm")
    expected = 3 if 3 in versions else 1  # RFC 5652 5.1 for id-data without attribute certificates
    if sd[0].as_int() != expected:
        raise SignatureError(f"SignedData version {sd[0].as_int()} should be {expected} (RFC 5652)")


def _check_signer_binding(result: CmsVerification) -> None:
    """The signer's certificate must be embedded and, when the ESS attribute is present, be the one signed."""
    embedded = [c for c in result.certificates if _cert_der(c) == _cert_der(result.signer)]
    if not embedded:
        # Catalogs travel alone to VM owners; a missing or damaged embedded certificate must not be papered
        # over by a trusted copy given for the check.
        raise SignatureError("the signer's certificate is missing from the catalog or damaged")
    si = result.signed_data.signer_infos[0]
    values = si.attribute_values(OID_SIGNING_CERTIFICATE_V2)
    if values is None:
        return
    if len(values) != 1:
        raise SignatureError("signingCertificateV2 must have exactly one value")
    cert_ids = values[0].items(what="SigningCertificateV2", count=(1, 2))[0].items(what="certs")
    if not cert_ids:
        raise SignatureError("signingCertificateV2 names no certificate")
    fields = cert_ids[0].items(what="ESSCertIDv2", count=(1, 3))
    hash_name = "sha256"
    if fields[0].is_(der.SEQUENCE):
        oid = fields[0].items(what="hashAlgorithm", count=(1, 2))[0].as_oid()
        if oid not in _HASH_OIDS:
            raise SignatureError(f"signingCertificateV2 uses an unsupported hash {oid}")
        hash_name = _HASH_OIDS[oid]
        fields = fields[1:]
    if not fields:
        raise SignatureError("signingCertificateV2 lacks the certificate hash")
    if fields[0].as_octets() != hashlib.new(hash_name, _cert_der(result.signer)).digest():
        raise SignatureError("the embedded signer certificate is not the one that was signed")
