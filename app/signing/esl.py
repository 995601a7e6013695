"""EFI signature lists (``.esl``): how a certificate is enrolled into a VM's Secure Boot ``db``.

UEFI 2.10 §32.4.1: a variable's data is a sequence of EFI_SIGNATURE_LISTs, each

    SignatureType (GUID) ‖ u32 SignatureListSize ‖ u32 SignatureHeaderSize ‖ u32 SignatureSize
    ‖ header (SignatureHeaderSize bytes) ‖ N × (SignatureOwner GUID ‖ SignatureData)

with all signatures in a list of the same size. X.509 certificates differ in size, so each goes in a list
of its own (what efitools' ``cert-to-efi-sig-list`` and virt-firmware write). GUIDs are stored in the EFI
mixed-endian layout, i.e. :attr:`uuid.UUID.bytes_le`; integers are little-endian.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.errors import SigningError

EFI_CERT_X509_GUID = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
EFI_CERT_SHA256_GUID = uuid.UUID("c1c41626-504c-4092-aca9-41f936934328")

#: The SignatureOwner Shieldwright writes unless told otherwise. A fixed value (not a random one) keeps
#: the output reproducible and lets anyone reading a VM's db see which entries Shieldwright enrolled.
SHIELDWRIGHT_OWNER_GUID = uuid.UUID("24c247ac-6986-46ce-b16a-61c338496dd3")

_HEADER = struct.Struct("<16sIII")  # SignatureType, SignatureListSize, SignatureHeaderSize, SignatureSize
_GUID_SIZE = 16


def build_esl(certs: Sequence[x509.Certificate], owner: uuid.UUID = SHIELDWRIGHT_OWNER_GUID) -> bytes:
    """One EFI_SIGNATURE_LIST of type EFI_CERT_X509_GUID per certificate, concatenated, in order."""
    out = bytearray()
    for cert in certs:
        der = cert.public_bytes(serialization.Encoding.DER)
        signature_size = _GUID_SIZE + len(der)
        out += _HEADER.pack(EFI_CERT_X509_GUID.bytes_le, _HEADER.size + signature_size, 0, signature_size)
        out += owner.bytes_le + der
    return bytes(out)


def parse_esl(data: bytes) -> list[tuple[uuid.UUID, uuid.UUID, bytes]]:
    """Every signature in ``data`` as (SignatureType, SignatureOwner, SignatureData).

    Empty input is an empty list (an empty ``db``). Anything that does not add up exactly — a list
    running past the end, a zero or too-small SignatureSize, a list size that is not header plus a whole
    number of signatures, trailing bytes — raises :class:`SigningError`.
    """
    entries: list[tuple[uuid.UUID, uuid.UUID, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < _HEADER.size:
            raise SigningError(f"truncated EFI signature list header at offset {pos}", "the file is damaged")
        raw_type, list_size, header_size, signature_size = _HEADER.unpack_from(data, pos)
        sig_type = uuid.UUID(bytes_le=raw_type)
        if list_size > len(data) - pos:
            raise SigningError(
                f"EFI signature list at offset {pos} claims {list_size} bytes, only {len(data) - pos} remain",
                "the file is truncated or damaged",
            )
        if signature_size < _GUID_SIZE + 1:
            raise SigningError(
                f"EFI signature list at offset {pos} has an invalid signature size {signature_size}",
                "the file is damaged",
            )
        body = list_size - _HEADER.size - header_size
        if body <= 0 or body % signature_size:
            raise SigningError(
                f"EFI signature list at offset {pos} is not a whole number of signatures",
                "the file is damaged",
            )
        start = pos + _HEADER.size + header_size
        for off in range(start, start + body, signature_size):
            owner = uuid.UUID(bytes_le=data[off : off + _GUID_SIZE])
            entries.append((sig_type, owner, bytes(data[off + _GUID_SIZE : off + signature_size])))
        pos += list_size
    return entries
