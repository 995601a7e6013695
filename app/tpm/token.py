"""systemd's ``systemd-tpm2`` LUKS2 token: write it as systemd ≥ 255 does, read it back for ``luks dump``.

The keys, exactly as ``systemd-cryptenroll --tpm2-device-key`` (systemd 257) writes them for a literal PCR
policy (../shared/reference/tpm-unlock.md; systemd src/shared/tpm2-util.c ``tpm2_make_luks2_json``):
``type``, ``keyslots``, ``tpm2-blob`` (base64 of TPM2B_PRIVATE ‖ TPM2B_PUBLIC ‖ TPM2B_ENCRYPTED_SECRET),
``tpm2-pcrs``, ``tpm2-pcr-bank``, ``tpm2-primary-alg``, ``tpm2-policy-hash`` (hex), ``tpm2_srk`` (base64
of the SRK's ESYS_TR serialization). Keys for features we do not use (PIN, signed policies, pcrlock) are
absent, as systemd leaves them. The keyslot's passphrase is the base64 text of the sealed secret
(systemd cryptenroll-tpm2.c: "base64 encode the key to use, for compat with homed").
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import ShieldwrightError
from app.tpm.seal import SealedSecret
from app.tpm.srk import Srk

TOKEN_TYPE = "systemd-tpm2"


class TokenError(ShieldwrightError):
    """A systemd-tpm2 token that cannot be read."""


def keyslot_passphrase(secret: bytes | bytearray) -> bytearray:
    """The LUKS2 passphrase systemd derives from an unsealed secret: its base64 text (with padding)."""
    return bytearray(base64.b64encode(bytes(secret)))


def systemd_tpm2_token(
    sealed: SealedSecret, srk: Srk, pcrs: list[int] | tuple[int, ...], bank: str, policy: bytes
) -> dict[str, Any]:
    """The token object (without ``keyslots``: :func:`app.luks.container.add_token` binds it)."""
    return {
        "type": TOKEN_TYPE,
        "tpm2-blob": base64.b64encode(sealed.blob).decode(),
        "tpm2-pcrs": sorted(pcrs),
        "tpm2-pcr-bank": bank,
        "tpm2-primary-alg": srk.kind,
        "tpm2-policy-hash": policy.hex(),
        "tpm2_srk": base64.b64encode(srk.esys_serialization()).decode(),
    }


@dataclass(frozen=True)
class Tpm2TokenInfo:
    """What ``luks dump`` shows of a systemd-tpm2 token: the policy, never anything secret (there is none)."""

    keyslots: tuple[int, ...]
    pcrs: tuple[int, ...]
    bank: str
    primary_alg: str
    policy_hash: str
    srk_handle: int | None
    srk_name: str | None
    blob_size: int

    def to_dict(self) -> dict[str, object]:
        return {
            "keyslots": list(self.keyslots),
            "pcrs": list(self.pcrs),
            "bank": self.bank,
            "primary_alg": self.primary_alg,
            "policy_hash": self.policy_hash,
            "srk_handle": None if self.srk_handle is None else f"0x{self.srk_handle:08x}",
            "srk_name": self.srk_name,
            "blob_bytes": self.blob_size,
        }


def read_systemd_tpm2_token(token: Mapping[str, Any]) -> Tpm2TokenInfo:
    """Decode a ``systemd-tpm2`` token; :class:`TokenError` for one systemd would not read either."""
    if token.get("type") != TOKEN_TYPE:
        raise TokenError(f"not a {TOKEN_TYPE} token", "")
    try:
        keyslots = tuple(int(k) for k in token.get("keyslots", []))
        pcrs = tuple(int(n) for n in token.get("tpm2-pcrs", []))
        bank = str(token.get("tpm2-pcr-bank", "sha256"))
        alg = str(token.get("tpm2-primary-alg", "ecc"))
        blob = token.get("tpm2-blob")
        blobs = blob if isinstance(blob, list) else [blob]
        size = sum(len(base64.b64decode(str(b), validate=True)) for b in blobs)
        policy = token.get("tpm2-policy-hash", "")
        policy_hex = ",".join(policy) if isinstance(policy, list) else str(policy)
        handle = name = None
        srk = token.get("tpm2_srk")
        if srk is not None:
            raw = base64.b64decode(str(srk), validate=True)
            if len(raw) >= 6:
                handle = int.from_bytes(raw[:4], "big")
                size_name = int.from_bytes(raw[4:6], "big")
                name = raw[6 : 6 + size_name].hex()
    except (TypeError, ValueError):
        raise TokenError("the systemd-tpm2 token has a malformed field", "systemd did not write it") from None
    return Tpm2TokenInfo(keyslots, pcrs, bank, alg, policy_hex, handle, name, size)
