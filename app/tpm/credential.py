"""systemd encrypted credentials bound to a VM's vTPM, made offline: what ``systemd-creds encrypt
--with-key=tpm2`` writes, but sealed by duplication (no TPM here) to the VM's TPM.

The format (systemd 257 src/shared/creds-util.c; every integer little-endian, every header zero-padded to
8 bytes): ``encrypted_credential_header`` {id CRED_AES256_GCM_BY_TPM2_HMAC, key_size 32, block_size 1,
iv_size 12, tag_size 16, iv} ‖ ``tpm2_credential_header`` {pcr_mask u64, pcr_bank u16, primary_alg u16,
blob_size u32, policy_hash_size u32, blob, policy hash — the blob first, despite the field's name} ‖
AES-256-GCM of (``metadata_credential_header`` {timestamp u64, not_after u64, name_size u32, name} ‖ the
data), the two headers as AAD, the 16-byte tag last. The key is SHA-256 of the sealed 32-byte secret.

The blob is TPM2B_PRIVATE ‖ TPM2B_PUBLIC ‖ TPM2B_ENCRYPTED_SECRET: systemd's ``tpm2_unseal`` imports such a
duplicate (TPM2_Import, outer wrapper only) under the primary the header names, which for a credential is
never the persistent SRK but systemd's *legacy* primary (:func:`app.tpm.srk.legacy_primary_template`),
recreated from the owner seed; so the parent here is that key's public area, read from the VM's vTPM
when it was made (``vtpm new``). Services read credentials base64-encoded (``ImportCredential=`` in 257
decodes them); the name is left empty, as systemd skips the name check then.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Mapping

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from tpm2_pytss.constants import TPM2_ALG

from app.errors import ShieldwrightError
from app.tpm.policy import policy_pcr_digest
from app.tpm.seal import seal_to_srk
from app.tpm.srk import Srk

#: CRED_AES256_GCM_BY_TPM2_HMAC (creds-util.h): sealed to a TPM only, no host key.
CRED_TPM2_HMAC = bytes.fromhex("0c7cc07b117645919c4b0bea08bc20fe")
KEY_SIZE, BLOCK_SIZE, IV_SIZE, TAG_SIZE = 32, 1, 12, 16
#: "no time limit": systemd's USEC_INFINITY.
USEC_INFINITY = 0xFFFF_FFFF_FFFF_FFFF
BANK_ALGS = {"sha1": TPM2_ALG.SHA1, "sha256": TPM2_ALG.SHA256, "sha384": TPM2_ALG.SHA384,
             "sha512": TPM2_ALG.SHA512}  # fmt: skip
#: The plaintext bound (systemd's CREDENTIAL_SIZE_MAX is 1 MiB for the encrypted file).
MAX_CREDENTIAL = 512 * 1024


class CredentialError(ShieldwrightError):
    """A credential that cannot be made."""


def _pad8(data: bytes) -> bytes:
    return data + bytes(-len(data) % 8)


def encrypt_credential(
    data: bytes, parent: Srk, bank: str = "sha256", pcr_values: Mapping[int, str] | None = None,
    *, timestamp_usec: int | None = None,
) -> bytes:  # fmt: skip
    """The binary credential carrying ``data``, which only the TPM holding ``parent``'s private key opens,
    and only while the PCRs of ``bank`` hold ``pcr_values`` (none: bound to the TPM alone, systemd's
    ``--tpm2-pcrs=`` empty, whose policy hash is then all zeros)."""
    if len(data) > MAX_CREDENTIAL:
        raise CredentialError(f"a credential of {len(data)} bytes is too large",
                              f"at most {MAX_CREDENTIAL // 1024} KiB")  # fmt: skip
    if bank not in BANK_ALGS:
        raise CredentialError(f"unknown PCR bank {bank!r}", f"use one of {', '.join(BANK_ALGS)}")
    values = dict(pcr_values or {})
    mask = sum(1 << n for n in values)
    policy = policy_pcr_digest(bank, values) if values else bytes(32)
    sealed = seal_to_srk(parent, policy)
    try:
        key = bytearray(hashlib.sha256(bytes(sealed.secret)).digest())
    finally:
        sealed.secret[:] = bytes(len(sealed.secret))
    iv = os.urandom(IV_SIZE)
    primary_alg = TPM2_ALG.ECC if parent.kind == "ecc" else TPM2_ALG.RSA
    blob = sealed.blob
    header = _pad8(CRED_TPM2_HMAC + struct.pack("<IIII", KEY_SIZE, BLOCK_SIZE, IV_SIZE, TAG_SIZE) + iv)
    tpm2 = _pad8(struct.pack("<QHHII", mask, BANK_ALGS[bank], primary_alg, len(blob), len(policy)) + blob
                 + policy)  # fmt: skip
    stamp = timestamp_usec if timestamp_usec is not None else USEC_INFINITY
    metadata = _pad8(struct.pack("<QQI", stamp, USEC_INFINITY, 0))  # empty name: no name check
    try:
        sealed_data = AESGCM(bytes(key)).encrypt(iv, metadata + data, header + tpm2)
    finally:
        key[:] = bytes(len(key))
    return header + tpm2 + sealed_data


def credential_text(credential: bytes) -> bytes:
    """A credential as ``systemd-creds encrypt`` writes it: base64, lines of 79 columns, a final newline
    (systemd 257's ``ImportCredential=`` and ``LoadCredentialEncrypted=`` read only this form)."""
    text = base64.b64encode(credential)
    return b"\n".join(text[i : i + 79] for i in range(0, len(text), 79)) + b"\n"
