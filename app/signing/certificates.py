"""Inspect a certificate: the fields a user checks before trusting it to sign, and findings about it.

The same :class:`CertificateInfo` feeds ``shieldwright cert show`` and the wizard's Certificates page, so
both judge a certificate identically: an ERROR finding (expired, weak RSA, KeyUsage forbidding
signatures) blocks its use, a WARNING is shown (no codeSigning EKU, ECDSA for UEFI, expiring soon),
INFO is context (self-signed).
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from app.errors import SigningError
from app.findings import Finding, Severity, has_errors

Purpose = Literal["uefi", "catalog"]

#: What cryptography raises for a damaged or unsupported certificate: it parses lazily, field by field,
#: and not all of these are ValueErrors.
CERT_ERRORS = (
    ValueError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)

#: A certificate expiring sooner than this gets a warning: templates outlive a month.
EXPIRY_WARNING = dt.timedelta(days=30)

UEFI_ECDSA_WARNING = "UEFI firmware expects RSA-2048 db signatures; many firmwares reject ECDSA"

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}

_KU_NAMES = (
    ("digital_signature", "digitalSignature"),
    ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"),
    ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"),
    ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)


@dataclass(frozen=True)
class CertificateInfo:
    """What a certificate says, in display-ready form. Fingerprints are upper-case hex without colons."""

    subject: str
    issuer: str
    common_name: str | None
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    key_type: str
    key_size: int | None
    curve: str | None
    sha256_fingerprint: str
    sha1_fingerprint: str
    key_usage: list[str]
    extended_key_usage: list[str]
    self_signed: bool
    findings: list[Finding] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return has_errors(self.findings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ISO-8601 dates, findings as severity/message objects."""
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "common_name": self.common_name,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "key_type": self.key_type,
            "key_size": self.key_size,
            "curve": self.curve,
            "sha256_fingerprint": self.sha256_fingerprint,
            "sha1_fingerprint": self.sha1_fingerprint,
            "key_usage": list(self.key_usage),
            "extended_key_usage": list(self.extended_key_usage),
            "self_signed": self.self_signed,
            "findings": [f.to_dict() for f in self.findings],
        }


_DAMAGED = "the certificate is damaged or of a kind not supported"


def parsed_certificate(cert: x509.Certificate | bytes, what: str, hint: str = _DAMAGED) -> x509.Certificate:
    """``cert`` (a certificate object, or DER bytes to load) with every field we read parsed now.

    cryptography decodes names, the key and extensions only when first used, so a damaged certificate from
    outside would otherwise raise its own exceptions wherever that happens to be: after an output was
    written, after a guardian was stored. Here it is one SigningError, ``"{what} is malformed or
    unsupported: reason"``, before anything is done with it. The one owner of that check for every
    certificate that comes from a file, a signature or a signature database.
    """
    try:
        with warnings.catch_warnings():  # e.g. a non-positive serial: not for the user's terminal
            warnings.simplefilter("ignore")
            if isinstance(cert, bytes):
                cert = x509.load_der_x509_certificate(cert)
            cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), cert.serial_number  # noqa: B018
            cert.not_valid_before_utc, cert.not_valid_after_utc  # noqa: B018
            cert.public_key()
            for extension in cert.extensions:
                extension.value  # noqa: B018
    except CERT_ERRORS as exc:
        raise SigningError(f"{what} is malformed or unsupported: {error_reason(exc)}", hint) from None
    return cert


def error_reason(exc: Exception) -> str:
    """The first line of cryptography's message (cut short), or the exception's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else type(exc).__name__


def _key_facts(cert: x509.Certificate) -> tuple[str, int | None, str | None]:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unknown", None, None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ECDSA", key.curve.key_size, key.curve.name
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, None
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, None
    return type(key).__name__.removeprefix("_").replace("PublicKey", ""), None, None


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> Any | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except CERT_ERRORS:  # a malformed or duplicated extension; cryptography parses lazily
        return None


def _key_usage_names(ku: x509.KeyUsage) -> list[str]:
    names = [label for attr, label in _KU_NAMES if getattr(ku, attr)]
    if ku.key_agreement:  # encipher_only / decipher_only are only defined with keyAgreement
        names += [
            label
            for attr, label in (("encipher_only", "encipherOnly"), ("decipher_only", "decipherOnly"))
            if getattr(ku, attr)
        ]
    return names


def _is_self_signed(cert: x509.Certificate) -> bool:
    try:
        if cert.subject != cert.issuer:  # decodes both names: may fail on a damaged certificate
            return False
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, TypeError, *CERT_ERRORS):
        return False
    return True


def _common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def describe_certificate(
    cert: x509.Certificate, *, purpose: Purpose | None = None, now: dt.datetime | None = None
) -> CertificateInfo:
    """Fields and findings of ``cert``; ``purpose`` adds role-specific checks ("uefi": ECDSA warning).

    A certificate that cannot be read completely is a SigningError (:func:`parsed_certificate`)."""
    cert = parsed_certificate(cert, "the certificate")
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    key_type, key_size, curve = _key_facts(cert)
    ku = _extension(cert, x509.KeyUsage)
    eku = _extension(cert, x509.ExtendedKeyUsage)
    eku_names = [_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku] if eku is not None else []
    self_signed = _is_self_signed(cert)

    findings: list[Finding] = []

    def add(severity: Severity, message: str) -> None:
        findings.append(Finding(severity, message))

    when = "%Y-%m-%d %H:%M UTC"
    if now > not_after:
        add(Severity.ERROR, f"the certificate expired on {not_after.strftime(when)}")
    elif now < not_before:
        add(Severity.ERROR, f"the certificate is not valid before {not_before.strftime(when)}")
    elif not_after - now < EXPIRY_WARNING:
        add(Severity.WARNING, f"the certificate expires soon, on {not_after.strftime(when)}")

    if key_type == "RSA" and key_size is not None and key_size < 2048:
        add(Severity.ERROR, f"RSA-{key_size} is too weak; use RSA-2048 or larger")
    elif key_type not in ("RSA", "ECDSA"):
        add(Severity.ERROR, f"{key_type} keys are not supported for signing; use RSA-2048")
    if key_type == "ECDSA" and purpose == "uefi":
        add(Severity.WARNING, UEFI_ECDSA_WARNING)

    if ku is not None and not ku.digital_signature:
        add(Severity.ERROR, "the KeyUsage extension does not allow digitalSignature")
    if eku is None:
        add(Severity.WARNING, "the certificate has no ExtendedKeyUsage; codeSigning is expected")
    elif "codeSigning" not in eku_names and "anyExtendedKeyUsage" not in eku_names:
        add(
            Severity.ERROR,
            "the ExtendedKeyUsage does not include codeSigning, so signature checks (osslsigncode, "
            "sbverify, shieldwright verify --trust) reject its signatures",
        )

    if self_signed:
        add(Severity.INFO, "the certificate is self-signed")

    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        common_name=_common_name(cert),
        serial=format(cert.serial_number, "X"),
        not_before=not_before,
        not_after=not_after,
        key_type=key_type,
        key_size=key_size,
        curve=curve,
        sha256_fingerprint=cert.fingerprint(hashes.SHA256()).hex().upper(),
        sha1_fingerprint=cert.fingerprint(hashes.SHA1()).hex().upper(),
        key_usage=_key_usage_names(ku) if ku is not None else [],
        extended_key_usage=eku_names,
        self_signed=self_signed,
        findings=findings,
    )
