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
from app.untrusted import is_json_int

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
    """Decode a ``systemd-tpm2`` token; :class:`TokenError` for one systemd would not read either.

    The token comes from a disk, so every field is checked for the JSON type systemd's
    ``tpm2_parse_luks2_json`` expects (systemd 257 tpm2-util.c): PCRs as unsigned numbers below 24, the
    blob base64 text (or a list of them), the policy hash hex (or a list), ``tpm2_srk`` base64.
    """
    if token.get("type") != TOKEN_TYPE:
        raise TokenError(f"not a {TOKEN_TYPE} token", "")
    keyslots = _numbers(token.get("keyslots", []), "keyslots", MAX_KEYSLOT, text_too=True)
    pcrs = _numbers(token.get("tpm2-pcrs", []), "tpm2-pcrs", MAX_PCR)
    bank, alg = token.get("tpm2-pcr-bank", "sha256"), token.get("tpm2-primary-alg", "ecc")
    if not isinstance(bank, str) or not isinstance(alg, str):
        raise _malformed("tpm2-pcr-bank or tpm2-primary-alg")
    size = sum(len(_base64(blob, "tpm2-blob")) for blob in _texts(token.get("tpm2-blob"), "tpm2-blob"))
    policies = _texts(token.get("tpm2-policy-hash", ""), "tpm2-policy-hash")
    for policy in policies:
        _hex(policy, "tpm2-policy-hash")
    handle = name = None
    srk = token.get("tpm2_srk")
    if srk is not None:
        if not isinstance(srk, str):
            raise _malformed("tpm2_srk")
        raw = _base64(srk, "tpm2_srk")
        if len(raw) >= 6:
            handle = int.from_bytes(raw[:4], "big")
            size_name = int.from_bytes(raw[4:6], "big")
            name = raw[6 : 6 + size_name].hex()
    return Tpm2TokenInfo(keyslots, pcrs, bank, alg, ",".join(policies), handle, name, size)


#: The highest keyslot number LUKS2 has (cryptsetup's LUKS2_KEYSLOTS_MAX is 32) and PCR number a TPM has.
MAX_KEYSLOT, MAX_PCR = 31, 23


def _malformed(field: str) -> TokenError:
    return TokenError(f"the systemd-tpm2 token's {field} is malformed", "systemd did not write this token")


def _numbers(value: object, field: str, highest: int, *, text_too: bool = False) -> tuple[int, ...]:
    """A JSON list of numbers 0..``highest`` (LUKS2 keyslot lists hold them as decimal strings)."""
    if not isinstance(value, list):
        raise _malformed(field)
    out = []
    for item in value:
        if text_too and isinstance(item, str) and item.isascii() and item.isdecimal() and len(item) <= 3:
            item = int(item)
        if not is_json_int(item) or not 0 <= item <= highest:
            raise _malformed(field)
        out.append(item)
    return tuple(out)


def _texts(value: object, field: str) -> list[str]:
    """A string, or a non-empty list of strings (systemd ≥ 257 may write several blobs and policies)."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) for item in items):
        raise _malformed(field)
    return [str(item) for item in items]


def _base64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error is a ValueError
        raise _malformed(field) from None


def _hex(text: str, field: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise _malformed(field) from None
