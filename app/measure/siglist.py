"""EFI signature lists: the values of PK, KEK, db and dbx, parsed and built.

A signature database is a concatenation of ``EFI_SIGNATURE_LIST`` structures (UEFI 2.10 §32.4.1)::

    SignatureType GUID ‖ u32 SignatureListSize ‖ u32 SignatureHeaderSize ‖ u32 SignatureSize
    ‖ SignatureHeader[SignatureHeaderSize] ‖ EFI_SIGNATURE_DATA[…] (each SignatureSize bytes)

and each ``EFI_SIGNATURE_DATA`` is ``SignatureOwner GUID ‖ SignatureData``. All integers are little-endian;
GUIDs are in the firmware's mixed-endian layout (``uuid.bytes_le``). The ``EFI_SIGNATURE_DATA`` bytes of
the db entry that verified an image are what firmware measures into PCR 7 (EV_EFI_VARIABLE_AUTHORITY,
edk2 DxeImageVerificationLib/Measurement.c), so the owner GUID is part of what a prediction must know.
"""

from __future__ import annotations

import functools
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

from app.errors import SigningError
from app.measure.events import MeasureError
from app.signing.certificates import parsed_certificate

# -- signature types (UEFI 2.10 §32.4.1; edk2 MdePkg/Include/Guid/ImageAuthentication.h) -----------------
EFI_CERT_SHA256_GUID = uuid.UUID("c1c41626-504c-4092-aca9-41f936934328")
EFI_CERT_RSA2048_GUID = uuid.UUID("3c5766e8-269c-4e34-aa14-ed776e85b3b6")
EFI_CERT_RSA2048_SHA256_GUID = uuid.UUID("e2b36190-879b-4a3d-ad8d-f2e7bba32784")
EFI_CERT_SHA1_GUID = uuid.UUID("826ca512-cf10-4ac9-b187-be01496631bd")
EFI_CERT_RSA2048_SHA1_GUID = uuid.UUID("67f8444f-8743-48f1-a328-1eaab8736b80")
EFI_CERT_X509_GUID = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
EFI_CERT_SHA224_GUID = uuid.UUID("0b6e5233-a65c-44c9-9407-d9ab83bfc8bd")
EFI_CERT_SHA384_GUID = uuid.UUID("ff3e5307-9fd0-48c9-85f1-8ad56c701e01")
EFI_CERT_SHA512_GUID = uuid.UUID("093e0fae-a6c4-4f50-9f1b-d41e2b89c19a")
EFI_CERT_X509_SHA256_GUID = uuid.UUID("3bd2a492-96c0-4079-b420-fcf98ef103ed")
EFI_CERT_X509_SHA384_GUID = uuid.UUID("7076876e-80c2-4ee6-aad2-28b349a6865b")
EFI_CERT_X509_SHA512_GUID = uuid.UUID("446dbf63-2502-4cda-bcfa-2465d2b0fe9d")

# -- signature owners ---------------------------------------------------------------------------------
#: Microsoft's owner GUID on its KEK and db certificates and the dbx hashes it publishes.
MICROSOFT_OWNER_GUID = uuid.UUID("77fa9abd-0359-4d32-bd60-28f4e78f784b")
#: OVMF's EnrollDefaultKeys application (OvmfPkg/EnrollDefaultKeys); mkosi uses it for its own db cert.
OVMF_ENROLL_DEFAULT_KEYS_GUID = uuid.UUID("a0baa8a3-041d-48a8-bc87-c36d121b5e3d")
#: Shieldwright's owner GUID for certificates it enrolls from plain certificate files (``firmware vars
#: --add-db``, a certificate directory without ``owner.txt``). Fixed forever: it is measured into PCR 7.
SHIELDWRIGHT_OWNER_GUID = uuid.UUID("d6d93ac7-5a0b-4305-a125-a8f2f7bdafd1")

#: Type GUID → (kind, SignatureData size; None = variable, X.509 DER). Sizes from edk2
#: SecurityPkg/Library/AuthVariableLib/AuthService.c ``mSupportSigItem``.
SIGNATURE_TYPES: dict[uuid.UUID, tuple[str, int | None]] = {
    EFI_CERT_SHA256_GUID: ("sha256", 32),
    EFI_CERT_RSA2048_GUID: ("rsa2048", 256),
    EFI_CERT_RSA2048_SHA256_GUID: ("rsa2048-sha256", 256),
    EFI_CERT_SHA1_GUID: ("sha1", 20),
    EFI_CERT_RSA2048_SHA1_GUID: ("rsa2048-sha1", 256),
    EFI_CERT_X509_GUID: ("x509", None),
    EFI_CERT_SHA224_GUID: ("sha224", 28),
    EFI_CERT_SHA384_GUID: ("sha384", 48),
    EFI_CERT_SHA512_GUID: ("sha512", 64),
    # EFI_CERT_X509_SHAxxx: ToBeSignedHash ‖ EFI_TIME TimeOfRevocation (16 bytes).
    EFI_CERT_X509_SHA256_GUID: ("x509-sha256", 32 + 16),
    EFI_CERT_X509_SHA384_GUID: ("x509-sha384", 48 + 16),
    EFI_CERT_X509_SHA512_GUID: ("x509-sha512", 64 + 16),
}

#: SignatureType GUID (16) ‖ SignatureListSize ‖ SignatureHeaderSize ‖ SignatureSize (u32 each).
LIST_HEADER = struct.Struct("<16sIII")
#: The EFI_SIGNATURE_DATA owner GUID that precedes each signature.
OWNER_SIZE = 16
#: The largest signature database we read: far above any real one (Microsoft's dbx is ~30 KiB, OVMF
#: caps an authenticated variable at 33 KiB), small enough that a hostile input costs nothing.
MAX_DATABASE_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class SignatureEntry:
    """One EFI_SIGNATURE_DATA of a list whose SignatureType is ``type_guid``."""

    type_guid: uuid.UUID
    owner: uuid.UUID
    data: bytes

    @property
    def esd(self) -> bytes:
        """The EFI_SIGNATURE_DATA bytes (owner GUID ‖ data): what firmware measures as the authority."""
        return self.owner.bytes_le + self.data

    @property
    def kind(self) -> str:
        """``x509``, ``sha256``, … (:data:`SIGNATURE_TYPES`), or ``unknown`` for a type we do not know."""
        known = SIGNATURE_TYPES.get(self.type_guid)
        return known[0] if known else "unknown"

    @functools.cached_property
    def certificate(self) -> x509.Certificate | None:
        """The X.509 certificate of an EFI_CERT_X509 entry, else None. MeasureError when it is not DER or
        cannot be read completely (parsed now, so no later use of a field raises cryptography's errors)."""
        if self.type_guid != EFI_CERT_X509_GUID:
            return None
        try:
            return parsed_certificate(self.data, "the certificate")
        except SigningError as exc:
            raise MeasureError(
                f"an EFI_CERT_X509 signature holds no readable DER certificate ({exc.message})",
                "the signature database is corrupt",
            ) from None


def parse_signature_lists(data: bytes, what: str) -> list[SignatureEntry]:
    """Every entry of the signature database ``data`` (the value of PK, KEK, db or dbx), in order.

    Strict: each list's sizes must add up exactly, known types must have their fixed signature size and no
    header (what edk2 accepts), X.509 entries must be DER certificates. Any malformation is a one-line
    :class:`MeasureError` naming ``what`` and the offset. Empty ``data`` is an empty database.
    """
    if len(data) > MAX_DATABASE_SIZE:
        raise MeasureError(
            f"{what}: {len(data)} bytes is too large for a signature database",
            f"at most {MAX_DATABASE_SIZE} bytes are read",
        )
    entries: list[SignatureEntry] = []
    hint = f"{what} is not a valid EFI_SIGNATURE_LIST sequence (UEFI §32.4.1)"
    offset = 0
    while offset < len(data):
        if len(data) - offset < LIST_HEADER.size:
            raise MeasureError(
                f"{what}: {len(data) - offset} trailing bytes at offset {offset} are too short for a "
                "signature list header",
                hint,
            )
        raw_type, list_size, header_size, sig_size = LIST_HEADER.unpack_from(data, offset)
        type_guid = uuid.UUID(bytes_le=raw_type)
        where = f"{what}: signature list at offset {offset}"
        if list_size < LIST_HEADER.size or list_size > len(data) - offset:
            raise MeasureError(
                f"{where}: SignatureListSize {list_size} does not fit the {len(data) - offset} bytes left",
                hint,
            )
        if header_size != 0:
            raise MeasureError(f"{where}: SignatureHeaderSize is {header_size}, not 0", hint)
        if sig_size < OWNER_SIZE:
            raise MeasureError(f"{where}: SignatureSize {sig_size} is smaller than the owner GUID", hint)
        body = list_size - LIST_HEADER.size
        if body == 0 or body % sig_size:
            raise MeasureError(
                f"{where}: {body} bytes of signatures are not a whole number of {sig_size}-byte entries", hint
            )
        known = SIGNATURE_TYPES.get(type_guid)
        if known is not None and known[1] is not None and sig_size != OWNER_SIZE + known[1]:
            raise MeasureError(
                f"{where}: SignatureSize {sig_size} is wrong for {known[0]} "
                f"(must be {OWNER_SIZE + known[1]})",
                hint,
            )
        for pos in range(offset + LIST_HEADER.size, offset + list_size, sig_size):
            entry = SignatureEntry(
                type_guid,
                uuid.UUID(bytes_le=data[pos : pos + OWNER_SIZE]),
                data[pos + OWNER_SIZE : pos + sig_size],
            )
            if type_guid == EFI_CERT_X509_GUID:
                try:
                    entry.certificate  # noqa: B018 - parsed (and cached) to check it
                except MeasureError:
                    raise MeasureError(
                        f"{what}: the X.509 entry at offset {pos} is not a DER certificate", hint
                    ) from None
            entries.append(entry)
        offset += list_size
    return entries


def build_signature_list(entries: Iterable[SignatureEntry]) -> bytes:
    """Signature lists holding ``entries`` in order: consecutive hashes of one type share a list; each
    certificate gets a list of its own (as edk2's enrollment and virt-fw-vars write them)."""
    out = bytearray()
    group: list[SignatureEntry] = []

    def flush() -> None:
        if group:
            sig_size = OWNER_SIZE + len(group[0].data)
            out.extend(
                LIST_HEADER.pack(
                    group[0].type_guid.bytes_le, LIST_HEADER.size + sig_size * len(group), 0, sig_size
                )
            )
            out.extend(b"".join(e.esd for e in group))
            group.clear()

    for entry in entries:
        known = SIGNATURE_TYPES.get(entry.type_guid)
        if known is not None and known[1] is not None and len(entry.data) != known[1]:
            raise MeasureError(
                f"a {known[0]} signature must be {known[1]} bytes, not {len(entry.data)}",
                "give the raw digest or key",
            )
        fixed = known is not None and known[1] is not None
        if group and not (fixed and group[0].type_guid == entry.type_guid):
            flush()
        group.append(entry)
    flush()
    return bytes(out)


def x509_signature_list(cert_der: bytes, owner: uuid.UUID) -> bytes:
    """One EFI_SIGNATURE_LIST of type EFI_CERT_X509 holding the DER certificate ``cert_der``."""
    entry = SignatureEntry(EFI_CERT_X509_GUID, owner, bytes(cert_der))
    entry.certificate  # noqa: B018 - raises MeasureError unless it is a DER certificate
    return build_signature_list([entry])
