"""Which db entry lets an image run: the EFI_SIGNATURE_DATA firmware (and shim) measure into PCR 7.

edk2 DxeImageVerificationLib: for each Authenticode signature of the image, in order, the image is
refused if dbx holds its hash or a certificate of its chain; else the first db entry that verifies it wins
— an EFI_CERT_SHA256 entry equal to the image's Authenticode hash, or an X.509 certificate that is the
signer or one of its issuers (OpenSSL with db as trust store, time not checked). That entry is measured
as EV_EFI_VARIABLE_AUTHORITY ("db", EFI_IMAGE_SECURITY_DATABASE, EFI_SIGNATURE_DATA). Shim does the same
for the images it loads (shim verify.c ``check_db_cert``/``check_db_hash``).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from app.errors import PeFormatError
from app.measure.events import MeasureError
from app.measure.siglist import SignatureEntry
from app.signing.authenticode import authenticode_digest, signer_chains

#: How many issuers we follow up from a signer (UEFI chains are 2–3 deep).
MAX_CHAIN = 8


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _path(signer: x509.Certificate, carried: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The signer and the issuers the signature carries, up as far as they go."""
    path = [signer]
    while len(path) < MAX_CHAIN:
        up = next((c for c in carried if c not in path and _issued_by(path[-1], c)), None)
        if up is None:
            break
        path.append(up)
    return path


def _chains_to(path: Sequence[x509.Certificate], anchor: x509.Certificate) -> bool:
    return any(c == anchor or _issued_by(c, anchor) for c in path)


def verifying_entry(
    image: bytes, db: Sequence[SignatureEntry], dbx: Sequence[SignatureEntry], what: str
) -> SignatureEntry:
    """The db entry that admits ``image``; MeasureError when dbx revokes it or nothing in db admits it."""
    try:
        digests = {"sha256": authenticode_digest(image, "sha256")}
        chains = signer_chains(image)
    except PeFormatError as exc:
        raise MeasureError(f"{what}: {exc.message}", exc.hint) from None
    for entry in dbx:
        if entry.kind == "sha256" and entry.data == digests["sha256"]:
            raise MeasureError(
                f"{what} is revoked: dbx holds its hash", "a firmware with this dbx refuses it"
            )
    paths = [_path(signer, carried) for signer, carried in chains]
    for path in paths:
        for entry in dbx:
            cert = entry.certificate
            if cert is not None and _chains_to(path, cert):
                raise MeasureError(
                    f"{what} is revoked: dbx holds a certificate of its signer's chain",
                    "a firmware with this dbx refuses it",
                )
    for path in paths:
        for entry in db:
            cert = entry.certificate
            if cert is not None and _chains_to(path, cert):
                return entry
    for entry in db:
        if entry.kind == "sha256" and entry.data == digests["sha256"]:
            return entry
    signers = "; ".join(p[0].subject.rfc4514_string() for p in paths) or "unsigned"
    raise MeasureError(
        f"nothing in db admits {what} (signed by: {signers})",
        "enrol the signing certificate in the firmware's db, or sign with one it holds",
    )
