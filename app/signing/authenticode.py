"""Authenticode for PE/COFF (EFI) images: digest, sign (refuse / replace / append), list, verify.

The digest follows EDK2's DxeImageVerificationLib and sbsign exactly, because firmware is the verifier
that matters (:func:`authenticode_digest`). Signatures are PKCS#7 SignedData v1 over an
SpcIndirectDataContent (:mod:`app.signing.cms`) stored as WIN_CERTIFICATE entries; several entries, each
8-byte aligned, is how UEFI takes more than one signature (EDK2 accepts the image if any one is trusted).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509

from app.errors import PeFormatError, SignatureError, SigningError
from app.signing import cms, der
from app.signing.pe import (
    WIN_CERT_REVISION_2_0,
    WIN_CERT_TYPE_PKCS_SIGNED_DATA,
    PeLayout,
    WinCertificate,
    certificate_entries,
    parse_layout,
    pe_checksum,
)
from app.signing.signer import HashName, Signer

SPC_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"
SPC_PE_IMAGE_DATA = "1.3.6.1.4.1.311.2.1.15"
SPC_SP_OPUS_INFO = "1.3.6.1.4.1.311.2.1.12"
SPC_STATEMENT_TYPE = "1.3.6.1.4.1.311.2.1.11"
SPC_INDIVIDUAL_SP_KEY_PURPOSE = "1.3.6.1.4.1.311.2.1.21"

SignMode = Literal["refuse", "replace", "append"]


# ------------------------------------------------------------------------------------------------
# Digest
# ------------------------------------------------------------------------------------------------


def authenticode_digest(data: bytes, hash_name: str = "sha256") -> bytes:
    """The Authenticode digest of a PE image, as firmware computes it (and as a signature must carry).

    Headers without CheckSum and the security directory entry, sections sorted by PointerToRawData, then
    trailing data up to the certificate table, counting "bytes hashed so far" as the trailing data's offset
    (as EDK2 does; it differs from hashing linearly only when sections leave gaps). A signed part that is
    not a multiple of 8 bytes is hashed as if zero-padded to 8, because signing pads it so.
    """
    return _digest(data, parse_layout(data), hash_name)


def measured_digest(data: bytes, bank: str) -> bytes:
    """The PE image hash firmware extends into PCR 4, in any TPM bank (SHA-1 included): the
    Authenticode digest (edk2 DxeTpm2MeasureBootLib ``Tcg2MeasurePeImage`` hashes the same bytes)."""
    return _digest(data, parse_layout(data), bank, any_hash=True)


def _digest(data: bytes, layout: PeLayout, hash_name: str, *, any_hash: bool = False) -> bytes:
    if hash_name not in cms.HASH_OIDS and not (any_hash and hash_name in hashlib.algorithms_guaranteed):
        raise SigningError(f"unsupported hash algorithm {hash_name}", "use sha256, sha384 or sha512")
    h = hashlib.new(hash_name)
    view = memoryview(data)
    cks = layout.checksum_offset
    h.update(view[:cks])
    if layout.security_entry_offset is None:
        h.update(view[cks + 4 : layout.size_of_headers])
    else:
        sec = layout.security_entry_offset
        h.update(view[cks + 4 : sec])
        h.update(view[sec + 8 : layout.size_of_headers])
    hashed = layout.size_of_headers
    for s in sorted((s for s in layout.sections if s.size_of_raw_data), key=lambda s: s.pointer_to_raw_data):
        h.update(view[s.pointer_to_raw_data : s.pointer_to_raw_data + s.size_of_raw_data])
        hashed += s.size_of_raw_data
    end = layout.signed_end
    if end > hashed:
        h.update(view[hashed:end])
    h.update(b"\0" * (-end % 8))  # only ever non-zero for unsigned images: the pad signing will add
    return h.digest()


# ------------------------------------------------------------------------------------------------
# SpcIndirectDataContent
# ------------------------------------------------------------------------------------------------


def spc_indirect_data(digest: bytes, hash_name: str) -> bytes:
    """SpcIndirectDataContent for a PE image, laid out as sbsign writes it (src/idc.c)."""
    obsolete = der.tlv(0, "<<<Obsolete>>>".encode("utf-16-be"), tag_class=der.CONTEXT, constructed=False)
    pe_image_data = der.sequence(der.bit_string(b""), der.explicit(0, der.explicit(2, obsolete)))
    return der.sequence(
        der.sequence(der.oid(SPC_PE_IMAGE_DATA), pe_image_data),
        der.sequence(cms.digest_algorithm_id(hash_name, null_params=True), der.octet_string(digest)),
    )


def _parse_spc_indirect_data(econtent: der.Element) -> tuple[str, bytes]:
    """(hash name or digest OID, digest) from an SpcIndirectDataContent."""
    data, digest_info = econtent.items(what="SpcIndirectDataContent", count=(2, 2))
    data_type = data.items(what="SpcAttributeTypeAndOptionalValue", count=(1, 2))[0].as_oid()
    if data_type != SPC_PE_IMAGE_DATA:
        raise SignatureError(f"the signature is not for a PE image (data type {data_type})")
    alg, digest = digest_info.items(what="DigestInfo", count=(2, 2))
    alg_oid = alg.items(what="AlgorithmIdentifier", count=(1, 2))[0].as_oid()
    hash_name = next((n for n, o in cms.HASH_OIDS.items() if o == alg_oid), alg_oid)
    return hash_name, digest.as_octets()


# ------------------------------------------------------------------------------------------------
# Listing
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureInfo:
    """One embedded signature as it claims to be (nothing verified except the digest comparison)."""

    index: int
    subject: str | None
    issuer: str | None
    serial: int | None
    digest_algorithm: str | None
    signed_digest: bytes | None
    digest_matches: bool
    signing_time: datetime | None
    signer: x509.Certificate | None
    error: str | None = None  # why the entry could not be read, when it could not


def _signed_entries(data: bytes) -> tuple[PeLayout, list[WinCertificate]]:
    layout = parse_layout(data)
    entries = [e for e in certificate_entries(data, layout) if e.cert_type == WIN_CERT_TYPE_PKCS_SIGNED_DATA]
    return layout, entries


def _pkcs7_bytes(entry: WinCertificate) -> bytes:
    """The entry's PKCS#7 DER: some signers count zero padding in dwLength, so trim to the outer TLV."""
    try:
        _, end = der.decode_prefix(entry.data)
    except SigningError:
        return entry.data  # let the real parse report it
    if end < len(entry.data) and not any(entry.data[end:]):
        return entry.data[:end]
    return entry.data


def _read_entry(index: int, entry: WinCertificate, digests: dict[str, bytes],
                data: bytes, layout: PeLayout) -> tuple[SignatureInfo, cms.SignedData | None]:  # fmt: skip
    try:
        sd = cms.parse_signed_data(_pkcs7_bytes(entry))
        if sd.content_type != SPC_INDIRECT_DATA or sd.econtent is None:
            raise SignatureError("the signature does not hold an SpcIndirectDataContent")
        try:
            hash_name, signed_digest = _parse_spc_indirect_data(sd.econtent)
        except SignatureError:
            raise
        except SigningError as exc:
            raise SignatureError(f"malformed SpcIndirectDataContent: {exc.message}") from None
        if len(sd.signer_infos) != 1:
            raise SignatureError(f"Authenticode needs exactly one SignerInfo, found {len(sd.signer_infos)}")
        si = sd.signer_infos[0]
        signer = cms.find_signer_certificate(si, sd.certificates)
        try:
            when = si.signing_time
        except SigningError:
            when = None
        if hash_name in cms.HASH_OIDS and hash_name not in digests:
            digests[hash_name] = _digest(data, layout, hash_name)
        matches = digests.get(hash_name) == signed_digest
        info = SignatureInfo(
            index=index,
            subject=signer.subject.rfc4514_string() if signer else None,
            issuer=signer.issuer.rfc4514_string() if signer else None,
            serial=si.sid_serial if si.sid_serial is not None else (signer.serial_number if signer else None),
            digest_algorithm=hash_name,
            signed_digest=signed_digest,
            digest_matches=matches,
            signing_time=when,
            signer=signer,
        )
        return info, sd
    except SignatureError as exc:
        info = SignatureInfo(index, None, None, None, None, None, False, None, None, error=exc.message)
        return info, None


def list_signatures(data: bytes) -> list[SignatureInfo]:
    """One entry per PKCS_SIGNED_DATA WIN_CERTIFICATE, in table order. A damaged entry is listed with
    ``error`` set rather than hiding the others; a damaged *image* raises PeFormatError."""
    layout, entries = _signed_entries(data)
    digests: dict[str, bytes] = {}
    return [_read_entry(i, e, digests, data, layout)[0] for i, e in enumerate(entries)]


# ------------------------------------------------------------------------------------------------
# Verification
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureVerification:
    info: SignatureInfo
    valid: bool
    reason: str  # "ok" or why not, one line


def verify_pe(data: bytes, trusted: Sequence[x509.Certificate] | None = None) -> list[SignatureVerification]:
    """Check every embedded signature: image digest, CMS signature, and (given ``trusted``) the chain.

    An unsigned image gives an empty list; the caller decides whether that is a failure.
    """
    layout, entries = _signed_entries(data)
    digests: dict[str, bytes] = {}
    results = []
    for i, entry in enumerate(entries):
        info, sd = _read_entry(i, entry, digests, data, layout)
        if sd is None:
            results.append(SignatureVerification(info, False, info.error or "unreadable signature"))
            continue
        if info.digest_algorithm not in cms.HASH_OIDS:
            results.append(SignatureVerification(info, False, f"unsupported digest {info.digest_algorithm}"))
            continue
        if not info.digest_matches:
            results.append(SignatureVerification(info, False, "image digest mismatch: the image was changed"))
            continue
        try:
            # PKCS#7 v1.5 / the Authenticode spec: SignedData version 1, whatever the content type
            econtent = sd.econtent.content if sd.econtent else b""
            cms.verify_signed_data(sd, econtent, trusted=trusted, version=1)
        except SignatureError as exc:
            results.append(SignatureVerification(info, False, exc.message))
            continue
        results.append(SignatureVerification(info, True, "ok"))
    return results


def signer_chains(data: bytes) -> list[tuple[x509.Certificate, tuple[x509.Certificate, ...]]]:
    """For each embedded signature that verifies (image digest and CMS signature, no trust decision):
    its signer certificate and the certificates the signature carries, in table order.

    UEFI firmware and shim decide trust themselves, against db and their own lists (see
    :mod:`app.measure.authority`); this gives them what to decide on.
    """
    layout, entries = _signed_entries(data)
    digests: dict[str, bytes] = {}
    out = []
    for i, entry in enumerate(entries):
        info, sd = _read_entry(i, entry, digests, data, layout)
        if sd is None or info.signer is None or not info.digest_matches:
            continue
        try:
            econtent = sd.econtent.content if sd.econtent else b""
            cms.verify_signed_data(sd, econtent, trusted=None, version=1)
        except SignatureError:
            continue
        out.append((info.signer, sd.certificates))
    return out


# ------------------------------------------------------------------------------------------------
# Signing
# ------------------------------------------------------------------------------------------------


def sign_pe(
    data: bytes,
    signer: Signer,
    *,
    mode: SignMode = "refuse",
    chain: bool = True,
    hash_name: HashName = "sha256",
    signing_time: datetime | None = None,
    name: str = "the image",
    signing_certificate: bool = False,
) -> bytes:
    """A signed copy of ``data`` (never modified): padded to 8 bytes, signature table appended, checksum set.

    ``mode``: "refuse" raises SignatureError when the image already carries signatures, "replace" drops
    them, "append" keeps them and adds ours as a further WIN_CERTIFICATE entry. ``signing_certificate``
    adds the ESS signingCertificateV2 attribute that plain CMS always carries (off by default: the
    signature then has exactly the attributes sbsign writes, which every firmware and tool knows).
    """
    layout = parse_layout(data)
    if layout.security_entry_offset is None:
        raise PeFormatError(f"{name} has no certificate table directory entry", "it cannot carry a signature")
    existing = certificate_entries(data, layout)
    if existing and mode == "refuse":
        raise SignatureError(
            f"{name} is already signed ({len(existing)} signature{'s' if len(existing) != 1 else ''})",
            "use --append to add a signature or --replace to drop the existing ones",
        )
    if mode not in ("refuse", "replace", "append"):
        raise ValueError(f"bad sign mode {mode!r}")

    image = bytearray(data[: layout.signed_end])
    image += b"\0" * (-len(image) % 8)
    struct.pack_into("<II", image, layout.security_entry_offset, 0, 0)
    digest = _digest(bytes(image), parse_layout(bytes(image)), hash_name)

    idc = spc_indirect_data(digest, hash_name)
    extra = [
        cms.attribute(SPC_SP_OPUS_INFO, der.sequence()),
        cms.attribute(SPC_STATEMENT_TYPE, der.sequence(der.oid(SPC_INDIVIDUAL_SP_KEY_PURPOSE))),
    ]
    pkcs7 = cms.sign_signed_data(
        idc,
        signer,
        content_type_oid=SPC_INDIRECT_DATA,
        hash_name=hash_name,
        signing_time=signing_time,
        include_chain=chain,
        extra_attributes=extra,
        version=1,
        null_digest_params=True,
        signing_certificate=signing_certificate,
    )
    ours = WinCertificate(0, WIN_CERT_REVISION_2_0, WIN_CERT_TYPE_PKCS_SIGNED_DATA, pkcs7)
    kept = existing if mode == "append" else []
    table = b"".join(e.encode() for e in [*kept, ours])
    struct.pack_into("<II", image, layout.security_entry_offset, len(image), len(table))
    out = bytearray(bytes(image) + table)
    struct.pack_into("<I", out, layout.checksum_offset, pe_checksum(bytes(out), layout.checksum_offset))
    return bytes(out)
