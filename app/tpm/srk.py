"""The Storage Root Key a secret is sealed to: systemd's SRK, read from a file the target wrote.

systemd ≥ 255 seals to the persistent key at 0x81000001 (``systemd-tpm2-setup`` creates it when absent):
a primary in the owner hierarchy, ECC NIST P-256 when the TPM has it, else RSA 2048, with the template
below (systemd src/shared/tpm2-util.c ``tpm2_get_srk_template``; verified byte for byte against
``tpm2_createprimary`` in ../shared/reference/tpm-unlock.md). Its public key is what ``systemd-analyze
srk`` or ``tpm2_readpublic -c 0x81000001 -f tss`` write: a marshalled TPM2B_PUBLIC (92 bytes for
P-256). A PEM public key is accepted too: the TPM2B_PUBLIC is then rebuilt from the template and the key,
which is exact only for a key made from this template (never "the TCG template": unique must be empty).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tpm2_pytss.constants import TPM2_ALG, TPMA_OBJECT
from tpm2_pytss.types import TPM2B_PUBLIC, TPMT_PUBLIC

from app.errors import ShieldwrightError
from app.untrusted import read_bounded

#: Where systemd keeps its SRK (TPM2_SRK_HANDLE; TCG "Provisioning Guidance" §7.8 reserves it).
SRK_HANDLE = 0x81000001
#: fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt.
SRK_ATTRIBUTES = (
    TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.NODA | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT
)  # fmt: skip
#: systemd's "legacy" primary (tpm2-util.c ``tpm2_get_legacy_template``, "Do not modify"): the SRK's
#: attributes without noDA. ``systemd-creds`` seals credentials under it, created transiently at every
#: encrypt and decrypt, never under the persistent SRK (its ``tpm2_seal`` is called without ``ret_srk``).
#: noDA is part of the template, so it is another key than the SRK from the same owner seed.
LEGACY_ATTRIBUTES = SRK_ATTRIBUTES & ~TPMA_OBJECT.NODA
#: The algorithm specs of systemd's two SRK templates (tpm2-pytss ``TPMT_PUBLIC.parse`` syntax).
SRK_KINDS = {"ecc": "ecc256:aes128cfb", "rsa": "rsa2048:aes128cfb"}
#: An SRK file is a few hundred bytes (an RSA 2048 TPM2B_PUBLIC is 282); refuse anything far larger.
MAX_SRK_FILE = 64 * 1024
_ESYS_TR_KEY_RESOURCE = 1  # tss2 IESYSC_KEY_RSRC


class SrkError(ShieldwrightError):
    """An SRK public key that cannot be read or is not a storage parent systemd would use."""


def srk_template(kind: str = "ecc") -> TPMT_PUBLIC:
    """systemd's SRK template (unique empty): what ``vtpm new`` creates and makes persistent."""
    return TPMT_PUBLIC.parse(SRK_KINDS[kind], objectAttributes=SRK_ATTRIBUTES)


def legacy_primary_template(kind: str = "ecc") -> TPMT_PUBLIC:
    """The template of systemd's legacy primary, the parent of a TPM-bound credential (unique empty)."""
    return TPMT_PUBLIC.parse(SRK_KINDS[kind], objectAttributes=LEGACY_ATTRIBUTES)


@dataclass(frozen=True)
class Srk:
    """A target's SRK: its public area, TPM name (nameAlg ‖ H(public)), kind and persistent handle."""

    public: TPM2B_PUBLIC
    handle: int = SRK_HANDLE

    @property
    def kind(self) -> str:
        """``"ecc"`` or ``"rsa"``: the token's ``tpm2-primary-alg``."""
        return "ecc" if self.public.publicArea.type == TPM2_ALG.ECC else "rsa"

    @property
    def name(self) -> bytes:
        return bytes(self.public.get_name().marshal()[2:])

    def public_bytes(self) -> bytes:
        """The marshalled TPM2B_PUBLIC (the ``srk.tpm2b_public`` file)."""
        return bytes(self.public.marshal())

    def esys_serialization(self) -> bytes:
        """The SRK as ``Esys_TR_Serialize`` writes it and systemd stores it in ``tpm2_srk``: handle ‖
        TPM2B_NAME ‖ resource type (key) ‖ TPM2B_PUBLIC (tss2 esys_tr.c ``iesys_MU_IESYS_RESOURCE``)."""
        name = self.name
        return (
            struct.pack(">IH", self.handle, len(name)) + name + struct.pack(">I", _ESYS_TR_KEY_RESOURCE)
            + self.public_bytes()
        )  # fmt: skip

    def describe(self) -> str:
        curve = (
            "NIST P-256"
            if self.kind == "ecc"
            else f"RSA {self.public.publicArea.parameters.rsaDetail.keyBits}"
        )
        return f"{curve} SRK, name {self.name.hex()[:16]}…"


def srk_from_bytes(data: bytes, where: str = "the SRK") -> Srk:
    """An SRK from a marshalled TPM2B_PUBLIC or a PEM public key; checks it is a storage parent."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return _from_pem(data, where)
    try:
        public, used = TPM2B_PUBLIC.unmarshal(data)
    except Exception:  # tpm2-pytss raises TSS2_Exception or ValueError on bad bytes
        raise SrkError(
            f"{where} is not a TPM2B_PUBLIC or a PEM public key",
            "write it with `systemd-analyze srk > srk.tpm2b_public` or `shieldwright vtpm new`",
        ) from None
    if used != len(data):
        raise SrkError(
            f"{where} has {len(data) - used} bytes after its TPM2B_PUBLIC", "give the file as written"
        )
    srk = Srk(public)
    _check_parent(srk, where)
    return srk


def load_srk(path: str | Path) -> Srk:
    path = Path(path)
    data = read_bounded(path, MAX_SRK_FILE, SrkError, "give the target's SRK public key file")
    if len(data) > MAX_SRK_FILE:
        raise SrkError(f"{path} is too large for an SRK public key", "give the target's srk.tpm2b_public")
    return srk_from_bytes(data, str(path))


def _from_pem(data: bytes, where: str) -> Srk:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise SrkError(f"{where} is not a PEM public key", "give the SRK's public key") from None
    except UnsupportedAlgorithm:  # a key type or curve cryptography does not know: not an SRK either
        raise SrkError(
            f"{where} is a public key of an unsupported type", "systemd's SRK is NIST P-256 or RSA 2048"
        ) from None
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        kind = "ecc"
    elif isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048:
        kind = "rsa"
    else:
        raise SrkError(
            f"{where} is neither a NIST P-256 nor an RSA 2048 key", "systemd's SRK is one of those"
        )
    # The key's point or modulus as the TPM's unique field, in systemd's template (not from_pem's defaults).
    template = srk_template(kind)
    template.unique = TPM2B_PUBLIC.from_pem(data).publicArea.unique
    return Srk(TPM2B_PUBLIC(publicArea=template))


def _check_parent(srk: Srk, where: str) -> None:
    area = srk.public.publicArea
    attrs = int(area.objectAttributes)
    needed = int(TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT)
    if area.type not in (TPM2_ALG.ECC, TPM2_ALG.RSA) or attrs & needed != needed:
        raise SrkError(
            f"{where} is not a storage key (restricted, decrypt)", "give the SRK, not the EK or another key"
        )
    if area.nameAlg != TPM2_ALG.SHA256:
        raise SrkError(f"{where} has name algorithm {area.nameAlg}, not sha256", "give systemd's SRK")
    sym = area.parameters.asymDetail.symmetric
    if sym.algorithm != TPM2_ALG.AES or sym.keyBits.aes != 128 or sym.mode.aes != TPM2_ALG.CFB:
        raise SrkError(f"{where} is not an AES-128-CFB storage parent", "give systemd's SRK")
    if area.type == TPM2_ALG.ECC and area.parameters.eccDetail.curveID != 3:  # TPM2_ECC_NIST_P256
        raise SrkError(f"{where} is an ECC key on another curve than NIST P-256", "give systemd's SRK")
