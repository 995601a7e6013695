"""PolicyPCR digests: the policy a sealed secret carries, computed from predicted PCR values.

TPM 2.0 Part 3 §23.7 (TPM2_PolicyPCR): ``policyDigest' = H(policyDigest ‖ TPM_CC_PolicyPCR ‖ pcrs ‖
digestTPM)``, where ``pcrs`` is the marshalled TPML_PCR_SELECTION and ``digestTPM`` the hash of the
selected PCR values concatenated in ascending PCR order; a trial session starts from all zeros. The
policy hash is the session's hash algorithm (sha256, as systemd uses), whatever the PCR bank.
systemd computes the same value (``tpm2_calculate_policy_pcr``) and compares it with the token's
``tpm2-policy-hash`` before it unseals.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping

from tpm2_pytss.types import TPML_PCR_SELECTION

from app.boot.pcr import BANK_SIZES
from app.errors import ShieldwrightError

TPM_CC_POLICY_PCR = 0x0000017F
POLICY_HASH = "sha256"


class PolicyError(ShieldwrightError):
    """PCR values that cannot make a policy."""


def pcr_selection(bank: str, pcrs: list[int] | tuple[int, ...]) -> bytes:
    """The marshalled TPML_PCR_SELECTION of ``pcrs`` in ``bank`` (3 select bytes, as TPMs and systemd use)."""
    return bytes(TPML_PCR_SELECTION.parse(f"{bank}:{','.join(str(n) for n in sorted(pcrs))}").marshal())


def policy_pcr_digest(bank: str, values: Mapping[int, bytes | str]) -> bytes:
    """The PolicyPCR digest binding ``values`` (PCR → value, raw or hex) of ``bank``."""
    if bank not in BANK_SIZES:
        raise PolicyError(f"unknown PCR bank {bank!r}", f"use one of {', '.join(BANK_SIZES)}")
    if not values:
        raise PolicyError("a PCR policy needs at least one PCR", "select PCRs, e.g. 4, 7 and 11")
    raw: dict[int, bytes] = {}
    for pcr, value in values.items():
        if not 0 <= pcr <= 23:
            raise PolicyError(f"PCR {pcr} does not exist", "a TPM 2.0 PC has PCRs 0 to 23")
        data = bytes.fromhex(value) if isinstance(value, str) else bytes(value)
        if len(data) != BANK_SIZES[bank]:
            raise PolicyError(f"the value of PCR {pcr} is not a {bank} digest", "give the predicted value")
        raw[pcr] = data
    digest_tpm = hashlib.new(POLICY_HASH, b"".join(raw[n] for n in sorted(raw))).digest()
    start = bytes(hashlib.new(POLICY_HASH).digest_size)
    return hashlib.new(
        POLICY_HASH,
        start + struct.pack(">I", TPM_CC_POLICY_PCR) + pcr_selection(bank, list(raw)) + digest_tpm,
    ).digest()
