"""Seal a secret to a VM's vTPM offline: a KEYEDHASH object in TPM2_Import (duplication) form.

What ``systemd-cryptenroll --tpm2-device-key=SRK`` does (systemd ≥ 255 ``tpm2_calculate_seal``): a
sealed data object whose only authorisation is the PCR policy, duplicated to the SRK with an outer
wrapper only — the seed is agreed with the SRK (ECDH with an ephemeral key for ECC, RSA-OAEP for RSA),
the sensitive area is encrypted with a key derived from it (KDFa "STORAGE") and protected by an HMAC
(KDFa "INTEGRITY"); TPM 2.0 Part 1 §23.3. tpm2-pytss's ``wrap`` implements exactly that; we choose the
object. The result is systemd's ``tpm2-blob``: TPM2B_PRIVATE ‖ TPM2B_PUBLIC ‖ TPM2B_ENCRYPTED_SECRET,
the three inputs of TPM2_Import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tpm2_pytss.constants import TPM2_ALG
from tpm2_pytss.types import TPM2B_DIGEST, TPM2B_SENSITIVE
from tpm2_pytss.utils import wrap

from app.tpm.srk import Srk

#: systemd seals 32 random bytes; the LUKS2 keyslot's passphrase is their base64 text.
SECRET_SIZE = 32


@dataclass(frozen=True)
class SealedSecret:
    """A secret and its sealed form. ``secret`` is a bytearray the caller wipes once it is enrolled."""

    secret: bytearray = field(repr=False)
    private: bytes  # marshalled TPM2B_PRIVATE (the duplicate)
    public: bytes  # marshalled TPM2B_PUBLIC (KEYEDHASH, authPolicy = the PCR policy)
    seed: bytes  # marshalled TPM2B_ENCRYPTED_SECRET (the seed, for the SRK)

    @property
    def blob(self) -> bytes:
        """systemd's ``tpm2-blob``: the three TPM2B's in TPM2_Import order."""
        return self.private + self.public + self.seed


def seal_to_srk(srk: Srk, policy: bytes, secret: bytes | bytearray | None = None) -> SealedSecret:
    """Seal ``secret`` (default: :data:`SECRET_SIZE` fresh random bytes) to ``srk`` under ``policy``.

    The object's attributes are 0, as systemd's: no fixedTPM/fixedParent (a duplicate cannot have them),
    no userWithAuth (only the policy authorises), nameAlg sha256, scheme NULL.
    """
    value = bytearray(secret if secret is not None else os.urandom(SECRET_SIZE))
    sensitive, public = TPM2B_SENSITIVE.keyedhash_from_secret(
        bytes(value), nameAlg=TPM2_ALG.SHA256, objectAttributes=0
    )
    public.publicArea.authPolicy = TPM2B_DIGEST(policy)
    _key, duplicate, seed = wrap(srk.public.publicArea, public, sensitive)
    return SealedSecret(value, bytes(duplicate.marshal()), bytes(public.marshal()), bytes(seed.marshal()))
