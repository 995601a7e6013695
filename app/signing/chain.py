"""Certificate path validation for code signing (RFC 5280 section 6), as OpenSSL and osslsigncode judge it.

A signature is only as good as the chain from its signer to a certificate the user trusts, and an
attacker controls every certificate embedded in a signature. :func:`check_chain` builds and checks the
path with :mod:`cryptography.x509.verification` (pyca's TLS engine) under a code-signing profile.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.x509 import verification as xv
from cryptography.x509.oid import ExtendedKeyUsageOID

from app.errors import SignatureError
from app.signing.certificates import CERT_ERRORS
from app.untrusted import printable

#: How many intermediate certificates a path may have between the signer and the trust anchor.
MAX_DEPTH = 8

#: How many candidate validation moments are tried (each costs at most the verifier's signature budget).
MAX_MOMENTS = 16

_CODE_SIGNING_EKUS = (ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)
_NOT_VALID_AT = "cert is not valid at validation time"
_NO_COMMON_MOMENT = "it does not chain to the given certificates through ones valid at one common moment"
#: A reason longer than this is cut (the verifier may quote an attacker's extension at length).
_MAX_REASON = 300


def _name(cert: x509.Certificate) -> str:
    """The subject as text, raw: everything that reaches a message goes through printable() once."""
    try:
        return cert.subject.rfc4514_string() or "(empty subject)"
    except CERT_ERRORS:
        return "(unreadable subject)"


def _ca_basic_constraints(_policy: object, cert: x509.Certificate, ext: x509.BasicConstraints) -> None:
    if not ext.ca:
        raise ValueError(f"{_name(cert)} may not issue certificates: its basicConstraints say cA FALSE")


def _ca_key_usage(_policy: object, cert: x509.Certificate, ext: x509.KeyUsage | None) -> None:
    if ext is not None and not ext.key_cert_sign:
        raise ValueError(f"{_name(cert)} may not issue certificates: its keyUsage lacks keyCertSign")


def _signer_key_usage(_policy: object, cert: x509.Certificate, ext: x509.KeyUsage | None) -> None:
    if ext is not None and not ext.digital_signature:
        raise ValueError(f"{_name(cert)} may not sign: its keyUsage lacks digitalSignature")


def _code_signing_eku(_policy: object, cert: x509.Certificate, ext: x509.ExtendedKeyUsage | None) -> None:
    if ext is not None and not any(oid in ext for oid in _CODE_SIGNING_EKUS):
        raise ValueError(f"{_name(cert)} is not for code signing: its extendedKeyUsage lacks codeSigning")


def _policies() -> tuple[xv.ExtensionPolicy, xv.ExtensionPolicy]:
    """(CA policy, signer policy): the code-signing profile of the module docstring."""
    agnostic = xv.Criticality.AGNOSTIC
    ca = (
        xv.ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, agnostic, _ca_basic_constraints)
        .may_be_present(x509.KeyUsage, agnostic, _ca_key_usage)
        .may_be_present(x509.ExtendedKeyUsage, agnostic, _code_signing_eku)
    )
    signer = (
        xv.ExtensionPolicy.permit_all()
        .may_be_present(x509.KeyUsage, agnostic, _signer_key_usage)
        .may_be_present(x509.ExtendedKeyUsage, agnostic, _code_signing_eku)
    )
    return ca, signer


def _moments(cert: x509.Certificate, others: Sequence[x509.Certificate]) -> list[datetime]:
    """Start dates of ``cert`` and ``others`` inside ``cert``'s validity, the signer's own first.

    The verifier checks a chain at one moment; the moment at which every certificate of a chain was valid,
    when it exists, is the latest start date among them, so these are the candidates. Certificates never
    valid together (a CA that expired before the signer was issued) form no chain.
    """
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    found = [start]
    for other in others:
        when = other.not_valid_before_utc
        if start <= when <= end and when not in found:
            found.append(when)
    return found[:MAX_MOMENTS]


def _reason(exc: Exception) -> str:
    """The verifier's message without its framing (prefixes, the certificate's repr), raw."""
    text = re.sub(r"\s*\(encountered processing <Certificate.*$", "", str(exc), flags=re.S)
    text = re.sub(r"^(validation failed: |candidates exhausted: )+", "", text)
    text = text.replace("Python extension validator failed: ValueError: ", "")
    if "CA certificate has no basicConstraints" in text:
        return "an issuer may not issue certificates: it has no basicConstraints (cA TRUE)"
    if "basicConstraints.cA must be asserted" in text:
        return "an issuer may not issue certificates: its basicConstraints say cA FALSE"
    if "all candidates exhausted with no interior errors" in text:
        return "it does not chain to the given certificates"
    text = text.strip() or "it does not chain to the given certificates"
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON] + "..."


def check_chain(
    cert: x509.Certificate, pool: Sequence[x509.Certificate], trusted: Sequence[x509.Certificate]
) -> None:
    """Accept ``cert`` when it is one of ``trusted`` or chains to one through issuers in ``pool`` (the
    certificates embedded in the signature); else SignatureError. The rules:

    - every issuer is a CA: basicConstraints with cA TRUE (none, or cA FALSE, issues nothing); its keyUsage,
      when present, allows keyCertSign; every pathLenConstraint holds;
    - the signer's keyUsage, when present, allows digitalSignature;
    - an extendedKeyUsage, on the signer or an issuer, includes codeSigning or anyExtendedKeyUsage (what
      osslsigncode, sbverify and Windows demand of an Authenticode signer); none means any;
    - an unrecognised critical extension refuses the certificate; at most :data:`MAX_DEPTH` intermediates;
    - the verifier's own profile: X.509 v3, RSA of at least 2048 bits or ECDSA on P-256/384/521, SHA-2
      signatures, positive serials of at most 20 octets;
    - validity periods are not enforced (UEFI firmware ignores them; ``certificates.py`` reports expiry),
      but the chain's certificates must have been valid together at some moment (:func:`_moments`).

    A trusted certificate given as the signer itself is its own anchor (our generated db certificates:
    self-signed, CA:FALSE, keyUsage digitalSignature, EKU codeSigning).
    """
    subject = _name(cert)
    if not trusted:
        raise SignatureError(printable(f"the signer {subject} is not trusted: no trusted certificate given"))
    ca_policy, signer_policy = _policies()
    store = xv.Store(list(trusted))
    reasons: list[str] = []
    for moment in _moments(cert, [*trusted, *pool]):
        verifier = (
            xv.PolicyBuilder()
            .store(store)
            .time(moment)
            .max_chain_depth(MAX_DEPTH)
            .extension_policies(ca_policy=ca_policy, ee_policy=signer_policy)
            .build_client_verifier()
        )
        try:
            verifier.verify(cert, list(pool))
            return
        except (xv.VerificationError, *CERT_ERRORS) as exc:  # a damaged field, an unsupported name form
            reasons.append(_reason(exc))
    timeless = [r for r in reasons if _NOT_VALID_AT not in r]
    reason = timeless[0] if timeless else _NO_COMMON_MOMENT
    raise SignatureError(printable(f"the signer {subject} is not trusted: {reason}"))
