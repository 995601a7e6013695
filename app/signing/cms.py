"""CMS SignedData (RFC 5652): sign and verify, encapsulated or detached, RSA and ECDSA.

One implementation serves plain CMS (the catalog, the manifest, shielding data: eContentType id-data,
``openssl cms -verify`` accepts it) and Authenticode's PKCS#7 v1.5 flavour (SignedData version 1,
SpcIndirectDataContent). The messageDigest always hashes the *contents octets* of the eContent value, so
:func:`sign_signed_data` takes the complete eContent DER and :func:`sign_cms` wraps plain bytes in an
OCTET STRING. Signing goes through a :class:`~app.signing.signer.Signer` (no private key here), and both
sides are strict (see :func:`sign_signed_data`, :func:`verify_cms`): one changed byte of a file we signed
fails verification, with a one-line :class:`SignatureError`.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from app.errors import SignatureError, SigningError
from app.signing import der
from app.signing.certificates import CERT_ERRORS, parsed_certificate
from app.signing.chain import check_chain
from app.signing.signer import HashName, Signer, hash_algorithm

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
#: ESS signingCertificate (RFC 2634, SHA-1 ESSCertID) and signingCertificateV2 (RFC 5035).
OID_SIGNING_CERTIFICATE = "1.2.840.113549.1.9.16.2.12"
OID_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"

#: Digest algorithms by name; sha1 is recognised only to name it in a refusal.
HASH_OIDS: dict[HashName, str] = {
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
_HASH_BY_OID: dict[str, HashName] = {v: k for k, v in HASH_OIDS.items()}
_SHA1_OID = "1.3.14.3.2.26"

OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
_RSA_WITH = {
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
}
_ECDSA_WITH = {
    "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
}
_ECDSA_OID = {v: k for k, v in _ECDSA_WITH.items()}


def _hash(hash_name: str, data: bytes) -> bytes:
    return hashlib.new(hash_name, data).digest()


def _algorithm_id(oid: str, *, null_params: bool) -> bytes:
    return der.sequence(der.oid(oid), der.null()) if null_params else der.sequence(der.oid(oid))


def digest_algorithm_id(hash_name: str, *, null_params: bool = False) -> bytes:
    """AlgorithmIdentifier of a hash. RFC 5754 says omit the parameters (openssl cms does);
    Authenticode signers (sbsign, signtool) write NULL, and every verifier accepts both."""
    if hash_name not in HASH_OIDS:
        raise SigningError(f"unsupported hash algorithm {hash_name}", "use sha256, sha384 or sha512")
    return _algorithm_id(HASH_OIDS[hash_name], null_params=null_params)


def attribute(oid: str, value: bytes) -> bytes:
    """An Attribute with one value (``value`` is its complete DER)."""
    return der.sequence(der.oid(oid), der.set_of([value]))


def signing_certificate_v2(cert: x509.Certificate) -> bytes:
    """The ESS signingCertificateV2 attribute naming ``cert`` by SHA-256 (the DEFAULT hash: omitted)."""
    cert_id = der.sequence(der.octet_string(_hash("sha256", cert.public_bytes(serialization.Encoding.DER))))
    return attribute(OID_SIGNING_CERTIFICATE_V2, der.sequence(der.sequence(cert_id)))


def issuer_and_serial(cert: x509.Certificate) -> tuple[bytes, bytes]:
    """The exact DER of the certificate's issuer Name and serialNumber INTEGER, copied from the certificate.

    Copying (rather than re-encoding ``cert.issuer``) keeps string types byte-identical, which is what
    verifiers compare when they look for the signer's certificate.
    """
    cert_el = der.decode(cert.public_bytes(serialization.Encoding.DER))
    tbs = cert_el.items(what="certificate")[0].items(what="tbsCertificate")
    i = 1 if tbs and tbs[0].is_(0, der.CONTEXT) else 0
    if len(tbs) < i + 4:
        raise SigningError("the certificate's tbsCertificate is too short", "the certificate is corrupt")
    return tbs[i + 2].expect(der.SEQUENCE, what="issuer Name").raw, tbs[i].expect(der.INTEGER).raw


# ------------------------------------------------------------------------------------------------
# Signing
# ------------------------------------------------------------------------------------------------


def sign_cms(
    content: bytes,
    signer: Signer,
    *,
    detached: bool = False,
    content_type_oid: str = OID_DATA,
    hash_name: HashName = "sha256",
    signing_time: datetime | None = None,
    include_chain: bool = True,
) -> bytes:
    """A DER ContentInfo holding SignedData over ``content`` (encapsulated unless ``detached``), with the
    signer's certificate bound in by a signingCertificateV2 attribute."""
    return sign_signed_data(
        der.octet_string(content),
        signer,
        detached=detached,
        content_type_oid=content_type_oid,
        hash_name=hash_name,
        signing_time=signing_time,
        include_chain=include_chain,
    )


def sign_signed_data(
    econtent: bytes,
    signer: Signer,
    *,
    content_type_oid: str,
    detached: bool = False,
    hash_name: HashName = "sha256",
    signing_time: datetime | None = None,
    include_chain: bool = True,
    extra_attributes: Sequence[bytes] = (),
    version: int | None = None,
    null_digest_params: bool = False,
    signing_certificate: bool = True,
) -> bytes:
    """SignedData over ``econtent``, the complete DER of the eContent value.

    ``extra_attributes`` are complete Attribute encodings added to the signed attributes (Authenticode's
    SpcSpOpusInfo). ``version`` defaults to RFC 5652's rule (1 for id-data, else 3); Authenticode needs 1.
    ``signing_certificate`` adds the ESS signingCertificateV2 attribute (RFC 5035; SHA-256, the hash
    algorithm omitted as the DEFAULT, as OpenSSL writes it) binding the signer's certificate into the
    signed attributes: plain CMS always; Authenticode leaves it out so its signatures stay byte for byte
    what sbsign, osslsigncode and firmware know.
    """
    inner = der.decode(econtent)
    digest = _hash(hash_name, inner.content)
    when = (signing_time or datetime.now(UTC)).replace(microsecond=0)
    if when.tzinfo is None:
        raise SigningError("signing time must carry a time zone", "pass an aware datetime")
    attrs = [
        attribute(OID_CONTENT_TYPE, der.oid(content_type_oid)),
        attribute(OID_SIGNING_TIME, der.time(when)),
        attribute(OID_MESSAGE_DIGEST, der.octet_string(digest)),
        *extra_attributes,
        *([signing_certificate_v2(signer.certificate)] if signing_certificate else []),
    ]
    signed_attrs = der.set_of(attrs)  # what the signature covers: the SET, tag 0x31
    signature = signer.sign(signed_attrs, hash_name)

    cert = signer.certificate
    if signer.key_type == "rsa":
        sig_alg = _algorithm_id(OID_RSA_ENCRYPTION, null_params=True)  # as openssl and sbsign write it
    else:
        sig_alg = _algorithm_id(_ECDSA_OID[hash_name], null_params=False)
    issuer, serial = issuer_and_serial(cert)
    digest_alg = digest_algorithm_id(hash_name, null_params=null_digest_params)
    signer_info = der.sequence(
        der.integer(1),
        der.sequence(issuer, serial),
        digest_alg,
        der.implicit(0, signed_attrs),
        sig_alg,
        der.octet_string(signature),
    )
    certs = [cert] + (list(signer.chain) if include_chain else [])
    cert_ders = list(dict.fromkeys(c.public_bytes(serialization.Encoding.DER) for c in certs))
    encap = der.sequence(der.oid(content_type_oid), *([] if detached else [der.explicit(0, econtent)]))
    if version is None:
        version = 1 if content_type_oid == OID_DATA else 3
    signed_data = der.sequence(
        der.integer(version),
        der.set_of([digest_alg]),
        encap,
        der.implicit(0, der.set_of(cert_ders)),
        der.set_of([signer_info]),
    )
    return der.sequence(der.oid(OID_SIGNED_DATA), der.explicit(0, signed_data))


# ------------------------------------------------------------------------------------------------
# Parsing and verification
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignerInfo:
    """One SignerInfo, parsed but not yet verified."""

    sid_issuer: bytes | None  # raw DER issuer Name (issuerAndSerialNumber)
    sid_serial: int | None
    sid_key_id: bytes | None  # subjectKeyIdentifier form
    digest_oid: str
    signed_attrs: der.Element | None  # the [0] IMPLICIT element as received
    signature_oid: str
    signature: bytes
    version: int = 1
    digest_params: bytes | None = None  # raw DER of the AlgorithmIdentifier parameters, None when absent
    signature_params: bytes | None = None

    @property
    def hash_name(self) -> HashName | None:
        return _HASH_BY_OID.get(self.digest_oid)

    def attribute_values(self, oid: str) -> tuple[der.Element, ...] | None:
        """The values of a signed attribute, or None when absent; a repeated attribute is an error."""
        if self.signed_attrs is None:
            return None
        found = None
        for attr in self.signed_attrs.children:
            parts = attr.items(what="Attribute", count=(2, 2))
            if parts[0].as_oid() == oid:
                if found is not None:
                    raise SignatureError(f"signed attribute {oid} appears twice")
                found = parts[1].items(der.SET, what="attribute values")
        return found

    @property
    def signing_time(self) -> datetime | None:
        values = self.attribute_values(OID_SIGNING_TIME)
        if not values:
            return None
        if len(values) != 1:
            raise SignatureError("signingTime attribute must have exactly one value")
        return values[0].as_time()


@dataclass(frozen=True)
class SignedData:
    """A parsed SignedData: what it claims, before any check."""

    version: int
    digest_oids: tuple[str, ...]
    content_type: str
    econtent: der.Element | None  # the eContent value (inside [0] EXPLICIT), None when detached
    certificates: tuple[x509.Certificate, ...]
    signer_infos: tuple[SignerInfo, ...]
    digest_params: tuple[bytes | None, ...] = ()  # per digestAlgorithms entry, as in SignerInfo
    #: The version RFC 5652 section 5.1 prescribes for what this SignedData holds.
    expected_version: int = 1

    @property
    def content(self) -> bytes | None:
        """The encapsulated content's octets (for id-data: the content itself)."""
        return None if self.econtent is None else self.econtent.content


def parse_signed_data(data: bytes) -> SignedData:
    """Parse a DER ContentInfo(SignedData); malformed input raises SignatureError (via DerError)."""
    try:
        return _parse_signed_data(data)
    except SigningError as exc:
        if isinstance(exc, SignatureError):
            raise
        raise SignatureError(f"malformed signature: {exc.message}", exc.hint) from None


def _parse_signed_data(data: bytes) -> SignedData:
    ci = der.decode(data).items(what="ContentInfo", count=(2, 2))
    if ci[0].as_oid() != OID_SIGNED_DATA:
        raise SignatureError(f"not a CMS SignedData (content type {ci[0].as_oid()})")
    (sd_el,) = ci[1].items(0, der.CONTEXT, what="[0] content", count=(1, 1))
    sd = sd_el.items(what="SignedData", count=(4, 6))
    version = sd[0].as_int()
    digest_algs = [_algorithm(a) for a in sd[1].items(der.SET, what="digestAlgorithms")]
    encap = sd[2].items(what="EncapsulatedContentInfo", count=(1, 2))
    content_type = encap[0].as_oid()
    econtent = None
    if len(encap) == 2:
        (econtent,) = encap[1].items(0, der.CONTEXT, what="[0] eContent", count=(1, 1))
        if content_type == OID_DATA:
            econtent.expect(der.OCTET_STRING, what="id-data eContent OCTET STRING")
    certificates: list[x509.Certificate] = []
    choices: set[int] = set()  # context tags of the non-X.509 certificate / revocation choices present
    rest = list(sd[3:])
    if rest and rest[0].is_(0, der.CONTEXT):
        for c in rest.pop(0).items(0, der.CONTEXT, what="certificates"):
            if c.is_(der.SEQUENCE):
                certificates.append(_load_certificate(c.raw, len(certificates)))
            elif c.tag_class == der.CONTEXT and c.tag in (1, 2, 3) and c.constructed:
                choices.add(c.tag)  # attribute certificates, other formats: not ours to use
            else:
                raise SignatureError(f"malformed SignedData: {c.describe()} is not a certificate choice")
    if rest and rest[0].is_(1, der.CONTEXT):
        for crl in rest.pop(0).items(1, der.CONTEXT, what="crls"):  # checked, then unused (as firmware)
            if crl.is_(1, der.CONTEXT) and crl.constructed:
                choices.add(5)  # otherRevocationInfoFormat
            else:
                _load_crl(crl)
    if len(rest) != 1:
        raise SignatureError("malformed SignedData: expected signerInfos last")
    infos = tuple(_parse_signer_info(si) for si in rest[0].items(der.SET, what="signerInfos"))
    # RFC 5652 section 5.1
    if 3 in choices or 5 in choices:
        expected = 5
    elif 2 in choices:
        expected = 4
    elif 1 in choices or content_type != OID_DATA or any(si.version == 3 for si in infos):
        expected = 3
    else:
        expected = 1
    return SignedData(
        version,
        tuple(oid for oid, _ in digest_algs),
        content_type,
        econtent,
        tuple(certificates),
        infos,
        tuple(params for _, params in digest_algs),
        expected,
    )


def _load_certificate(raw: bytes, index: int) -> x509.Certificate:
    """An embedded certificate, with every field we later use parsed now (cryptography parses lazily),
    so a damaged certificate is one clear SignatureError here rather than a ValueError somewhere later."""
    try:
        return parsed_certificate(raw, f"embedded certificate {index}")
    except SigningError as exc:
        raise SignatureError(exc.message, exc.hint) from None


def _load_crl(el: der.Element) -> None:
    """An embedded CertificateList must at least be one (a certificate set re-tagged as CRLs is not)."""
    try:
        x509.load_der_x509_crl(el.expect(der.SEQUENCE, what="CertificateList").raw)
    except (ValueError, UnsupportedAlgorithm):
        raise SignatureError("malformed SignedData: an embedded CRL is not a CertificateList") from None


def _algorithm(el: der.Element) -> tuple[str, bytes | None]:
    """(OID, raw DER of the parameters or None when absent) of an AlgorithmIdentifier."""
    parts = el.items(what="AlgorithmIdentifier", count=(1, 2))
    return parts[0].as_oid(), parts[1].raw if len(parts) == 2 else None


def _parse_signer_info(el: der.Element) -> SignerInfo:
    parts = list(el.items(what="SignerInfo", count=(5, 7)))
    version = parts[0].as_int()
    sid = parts[1]
    issuer = serial = key_id = None
    if sid.is_(der.SEQUENCE):
        ias = sid.items(what="IssuerAndSerialNumber", count=(2, 2))
        issuer, serial = ias[0].expect(der.SEQUENCE, what="issuer Name").raw, ias[1].as_int()
        if version != 1:
            raise SignatureError(f"SignerInfo version {version} does not fit an issuerAndSerialNumber")
    elif sid.is_(0, der.CONTEXT) and not sid.constructed:
        key_id = sid.content
        if version != 3:
            raise SignatureError(f"SignerInfo version {version} does not fit a subjectKeyIdentifier")
    else:
        raise SignatureError(f"unsupported SignerInfo sid {sid.describe()}")
    digest_oid, digest_params = _algorithm(parts[2])
    rest = parts[3:]
    signed_attrs = None
    if rest and rest[0].is_(0, der.CONTEXT):
        signed_attrs = rest.pop(0)
        for attr in signed_attrs.items(0, der.CONTEXT, what="signedAttrs"):
            attr.items(what="Attribute", count=(2, 2))[1].items(der.SET, what="attribute values")
    if len(rest) < 2:
        raise SignatureError("malformed SignerInfo: missing signature")
    signature_oid, signature_params = _algorithm(rest[0])
    signature = rest[1].as_octets()
    if len(rest) > 3 or (len(rest) == 3 and not rest[2].is_(1, der.CONTEXT)):
        raise SignatureError("malformed SignerInfo: unexpected trailing field")
    if len(rest) == 3:  # unsignedAttrs: outside the signature (timestamps live here); shape only
        for attr in rest[2].items(1, der.CONTEXT, what="unsignedAttrs"):
            attr.items(what="Attribute", count=(2, 2))[1].items(der.SET, what="attribute values")
    return SignerInfo(issuer, serial, key_id, digest_oid, signed_attrs, signature_oid, signature,
                      version, digest_params, signature_params)  # fmt: skip


@dataclass(frozen=True)
class CmsVerification:
    """What a verified SignedData says: who signed, what, when."""

    signer: x509.Certificate
    content_type: str
    content: bytes | None  # the encapsulated content (octets), None when detached
    signing_time: datetime | None
    hash_name: str
    certificates: tuple[x509.Certificate, ...]
    signed_data: SignedData


def verify_cms(
    data: bytes,
    *,
    content: bytes | None = None,
    trusted: Sequence[x509.Certificate] | None = None,
) -> CmsVerification:
    """Verify a DER CMS SignedData (every SignerInfo); ``content`` is required for detached signatures.

    With ``trusted``, the signer must be one of those certificates or chain to one through certificates
    embedded in the signature (:func:`app.signing.chain.check_chain`). Returns the first signer's details;
    raises SignatureError otherwise.

    Checked: the messageDigest, the contentType attribute, the signature over the signed attributes as
    received (re-encoded as a SET, never re-sorted), and - because a few bytes of a SignedData lie outside
    the signature - the SignedData version RFC 5652 section 5.1 prescribes (or the caller's, Authenticode's
    1), the SignerInfo version its sid form prescribes, every AlgorithmIdentifier's parameters absent or
    NULL (RFC 3370/5754/5758), a signingCertificate(V2) attribute, when present, naming the certificate that
    verifies, and that certificate taken from the signature itself. A trusted certificate stands in for the
    signer's only when the signature embeds none (``openssl cms -sign -nocerts``), never when an embedded
    one fails to match. Files without the attribute (``openssl cms -sign`` without ``-cades``) still verify.
    """
    sd = parse_signed_data(data)
    if sd.econtent is None:
        if content is None:
            raise SignatureError("the signature is detached", "give the signed content to verify it against")
        digest_input = content
    else:
        if content is not None and content != sd.econtent.content:
            raise SignatureError("the given content differs from the content inside the signature")
        digest_input = sd.econtent.content
    return verify_signed_data(sd, digest_input, trusted=trusted)


def verify_signed_data(
    sd: SignedData,
    digest_input: bytes,
    *,
    trusted: Sequence[x509.Certificate] | None = None,
    version: int | None = None,
) -> CmsVerification:
    """Check every SignerInfo of a parsed SignedData over ``digest_input`` (eContent contents octets).

    ``version`` is the SignedData version to demand instead of RFC 5652's (Authenticode: 1).
    """
    if not sd.signer_infos:
        raise SignatureError("the SignedData has no signers")
    expected = sd.expected_version if version is None else version
    if sd.version != expected:
        rule = "RFC 5652 section 5.1" if version is None else "this format"
        raise SignatureError(f"SignedData version {sd.version} should be {expected} ({rule})")
    for params in sd.digest_params:
        _check_params(params, "a digestAlgorithms entry")
    results = [_verify_signer(sd, si, digest_input, trusted) for si in sd.signer_infos]
    signer, si = results[0]
    try:
        when = si.signing_time
    except SigningError as exc:
        raise SignatureError(f"malformed signingTime: {exc.message}") from None
    return CmsVerification(signer, sd.content_type, sd.content, when, si.hash_name or "", sd.certificates, sd)


def _verify_signer(
    sd: SignedData, si: SignerInfo, digest_input: bytes, trusted: Sequence[x509.Certificate] | None
) -> tuple[x509.Certificate, SignerInfo]:
    hash_name = si.hash_name
    if hash_name is None:
        name = "SHA-1" if si.digest_oid == _SHA1_OID else si.digest_oid
        raise SignatureError(f"unsupported digest algorithm {name}", "sign with SHA-256")
    if si.digest_oid not in sd.digest_oids:
        raise SignatureError("the signer's digest algorithm is missing from SignedData.digestAlgorithms")
    _check_params(si.digest_params, "signer's digest algorithm")
    _check_params(si.signature_params, "signer's signature algorithm")
    cert = _signer_certificate(sd, si, trusted)
    digest = _hash(hash_name, digest_input)
    try:
        if si.signed_attrs is None:
            if sd.content_type != OID_DATA:
                raise SignatureError("signed attributes are required for this content type")
            signed_bytes = digest_input
        else:
            ct = si.attribute_values(OID_CONTENT_TYPE)
            if not ct or len(ct) != 1 or ct[0].as_oid() != sd.content_type:
                raise SignatureError("the contentType attribute is missing or does not match the content")
            md = si.attribute_values(OID_MESSAGE_DIGEST)
            if not md or len(md) != 1:
                raise SignatureError("the messageDigest attribute is missing")
            if md[0].as_octets() != digest:
                raise SignatureError("message digest mismatch: the content was changed after signing")
            check_signing_certificate(si, cert)
            signed_bytes = b"\x31" + si.signed_attrs.raw[1:]  # [0] IMPLICIT → SET, as signed
    except SignatureError:
        raise
    except SigningError as exc:
        raise SignatureError(f"malformed signed attributes: {exc.message}") from None
    _check_signature(cert, si, hash_name, signed_bytes)
    if trusted is not None:
        check_chain(cert, sd.certificates, trusted)
    return cert, si


def _check_params(params: bytes | None, what: str) -> None:
    if params is not None and params != b"\x05\x00":
        raise SignatureError(f"the {what} has parameters where only NULL or none are allowed")


def _signer_certificate(
    sd: SignedData, si: SignerInfo, trusted: Sequence[x509.Certificate] | None
) -> x509.Certificate:
    """The certificate that must verify ``si``: the embedded one; a trusted one only if none is embedded."""
    if sd.certificates:
        matches = [c for c in sd.certificates if find_signer_certificate(si, [c]) is not None]
        if not matches:
            raise SignatureError(
                "the signer's certificate is not among the certificates in the signature",
                "the signature is damaged, or was made without embedding its signer's certificate",
            )
        if len({c.public_bytes(serialization.Encoding.DER) for c in matches}) > 1:
            raise SignatureError("the signature embeds two different certificates for its signer")
        return matches[0]
    cert = find_signer_certificate(si, list(trusted or ()))
    if cert is None:
        raise SignatureError("the signer's certificate is not in the signature", "give it with --cert")
    return cert


def check_signing_certificate(si: SignerInfo, cert: x509.Certificate) -> None:
    """When ``si`` carries ESS signingCertificateV2 or signingCertificate, its first ESSCertID (RFC 5035
    section 5.4: the signer's) must hash to ``cert`` and, if it has an issuerSerial, name it."""
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    for oid, name in ((OID_SIGNING_CERTIFICATE_V2, "signingCertificateV2"),
                      (OID_SIGNING_CERTIFICATE, "signingCertificate")):  # fmt: skip
        values = si.attribute_values(oid)
        if values is None:
            continue
        if len(values) != 1:
            raise SignatureError(f"{name} must have exactly one value")
        parts = values[0].items(what=name, count=(1, 2))
        cert_ids = parts[0].items(what=f"{name} certs")
        if len(parts) == 2:
            parts[1].items(what=f"{name} policies")
        if not cert_ids:
            raise SignatureError(f"{name} names no certificate")
        fields = list(cert_ids[0].items(what="ESSCertID", count=(1, 3)))
        hash_name = "sha1" if oid == OID_SIGNING_CERTIFICATE else "sha256"
        if oid == OID_SIGNING_CERTIFICATE_V2 and fields[0].is_(der.SEQUENCE):
            alg_oid, params = _algorithm(fields.pop(0))
            _check_params(params, f"{name} hash algorithm")
            if alg_oid not in _HASH_BY_OID:
                raise SignatureError(f"{name} uses an unsupported hash {alg_oid}")
            hash_name = _HASH_BY_OID[alg_oid]
        if not fields or len(fields) > 2:
            raise SignatureError(f"malformed {name}: expected a certificate hash, optionally an issuerSerial")
        if fields[0].as_octets() != _hash(hash_name, cert_der):
            raise SignatureError(f"the signer's certificate is not the one its signed {name} names")
        if len(fields) == 2:
            _check_issuer_serial(fields[1], cert, name)


def _check_issuer_serial(el: der.Element, cert: x509.Certificate, name: str) -> None:
    general_names, serial = el.items(what="IssuerSerial", count=(2, 2))
    issuer, _ = issuer_and_serial(cert)
    names = [g.items(4, der.CONTEXT, what="directoryName", count=(1, 1))[0].raw
             for g in general_names.items(what="GeneralNames") if g.is_(4, der.CONTEXT)]  # fmt: skip
    if serial.as_int() != _serial(cert) or issuer not in names:
        raise SignatureError(f"the signer's certificate is not the one its signed {name} names")


def find_signer_certificate(
    si: SignerInfo, candidates: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    for cert in candidates:
        if si.sid_key_id is not None:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except (x509.ExtensionNotFound, *CERT_ERRORS):
                continue
            if ski == si.sid_key_id:
                return cert
        elif _serial(cert) == si.sid_serial:
            try:
                issuer, _ = issuer_and_serial(cert)
            except SigningError:
                continue
            if issuer == si.sid_issuer:
                return cert
    return None


def _serial(cert: x509.Certificate) -> int:
    with warnings.catch_warnings():  # a non-positive serial (a damaged copy): not for the user's terminal
        warnings.simplefilter("ignore")
        return cert.serial_number


def _check_signature(cert: x509.Certificate, si: SignerInfo, hash_name: HashName, signed: bytes) -> None:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise SignatureError("the signer's certificate has an unreadable or unsupported public key") from None
    algorithm = hash_algorithm(hash_name)
    try:
        if si.signature_oid == OID_RSA_ENCRYPTION or si.signature_oid in _RSA_WITH:
            if si.signature_oid in _RSA_WITH and _RSA_WITH[si.signature_oid] != hash_name:
                raise SignatureError("the signature algorithm's hash differs from the digest algorithm")
            if not isinstance(key, rsa.RSAPublicKey):
                raise SignatureError("RSA signature but the signer's certificate has no RSA key")
            key.verify(si.signature, signed, padding.PKCS1v15(), algorithm)
        elif si.signature_oid in _ECDSA_WITH:
            if _ECDSA_WITH[si.signature_oid] != hash_name:
                raise SignatureError("the signature algorithm's hash differs from the digest algorithm")
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise SignatureError("ECDSA signature but the signer's certificate has no EC key")
            key.verify(si.signature, signed, ec.ECDSA(algorithm))
        else:
            raise SignatureError(f"unsupported signature algorithm {si.signature_oid}")
    except InvalidSignature:
        raise SignatureError("the signature does not verify with the signer's public key") from None
