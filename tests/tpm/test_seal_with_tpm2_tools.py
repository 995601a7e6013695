"""Done means 1: a secret we seal offline is imported, loaded and unsealed by tpm2-tools on a swtpm, under
its SRK, exactly when the PCRs hold the values we sealed to — and not after one more extend.

Everything on the TPM side is tpm2-tools (the SRK made with ``tpm2_createprimary`` and persisted at
0x81000001, ``tpm2_import``/``tpm2_load``/``tpm2_unseal`` with a ``tpm2_policypcr`` session): our code only
reads the SRK file and writes the blob.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from app.tpm.policy import policy_pcr_digest
from app.tpm.seal import seal_to_srk
from app.tpm.srk import load_srk
from tests.tpm.swtpm_tools import ToolsTpm, create_systemd_srk, tools_tpm

pytestmark = pytest.mark.slow

PCRS = (4, 7, 11)


def _pcrs(tpm: ToolsTpm) -> dict[int, bytes]:
    out = tpm.tool("tpm2_pcrread", "sha256:" + ",".join(map(str, PCRS))).stdout
    return {int(n): bytes.fromhex(v) for n, v in re.findall(r"^\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)", out, re.M)}


def _unseal(tpm: ToolsTpm, work: Path, ctx: Path) -> tuple[bool, bytes]:
    session = work / "session.ctx"
    tpm.tool("tpm2_startauthsession", "--policy-session", "-S", session)
    try:
        tpm.tool("tpm2_policypcr", "-S", session, "-l", "sha256:" + ",".join(map(str, PCRS)))
        out = work / "unsealed.bin"
        out.unlink(missing_ok=True)
        done = tpm.tool("tpm2_unseal", "-c", ctx, "-p", f"session:{session}", "-o", out, check=False)
        return done.returncode == 0, out.read_bytes() if done.returncode == 0 else b""
    finally:
        tpm.tool("tpm2_flushcontext", session)


@pytest.mark.parametrize("alg", ["ecc256:aes128cfb", "rsa2048:aes128cfb"])
def test_tpm2_tools_unseal_exactly_at_the_predicted_pcrs(tmp_path: Path, alg: str) -> None:
    with tools_tpm(tmp_path / "state") as tpm:
        srk = load_srk(create_systemd_srk(tpm, tmp_path, alg))
        assert srk.kind == alg[:3]
        now = _pcrs(tpm)
        event = hashlib.sha256(b"the UKI").digest()
        predicted = {**now, 11: hashlib.sha256(now[11] + event).digest()}  # after one more extend of PCR 11
        policy = policy_pcr_digest("sha256", predicted)
        sealed = seal_to_srk(srk, policy)
        for name, data in (
            ("dup.priv", sealed.private),
            ("dup.pub", sealed.public),
            ("dup.seed", sealed.seed),
        ):
            (tmp_path / name).write_bytes(data)
        tpm.tool("tpm2_import", "-C", "0x81000001", "-u", tmp_path / "dup.pub", "-i", tmp_path / "dup.priv",
                 "-s", tmp_path / "dup.seed", "-r", tmp_path / "imported.priv")  # fmt: skip
        ctx = tmp_path / "sealed.ctx"
        pub, imported = tmp_path / "dup.pub", tmp_path / "imported.priv"
        tpm.tool("tpm2_load", "-C", "0x81000001", "-u", pub, "-r", imported, "-c", ctx)

        assert _unseal(tpm, tmp_path, ctx) == (False, b"")  # PCR 11 not there yet
        tpm.tool("tpm2_pcrextend", f"11:sha256={event.hex()}")
        assert _unseal(tpm, tmp_path, ctx) == (True, bytes(sealed.secret))
        tpm.tool("tpm2_pcrextend", f"11:sha256={event.hex()}")
        assert _unseal(tpm, tmp_path, ctx) == (False, b"")


def test_our_policy_digest_is_the_tpms_trial_policy(tmp_path: Path) -> None:
    """tpm2_policypcr in a trial session over a file of PCR values computes the digest the TPM will
    demand; ours is the same, for one PCR and for three."""
    with tools_tpm(tmp_path / "state") as tpm:
        for pcrs in ((7,), (4, 7, 11)):
            values = {n: hashlib.sha256(bytes([n])).digest() for n in pcrs}
            values_file = tmp_path / "pcrs.bin"
            values_file.write_bytes(b"".join(values[n] for n in sorted(values)))
            session, digest = tmp_path / "trial.ctx", tmp_path / "policy.bin"
            tpm.tool("tpm2_startauthsession", "-S", session)
            tpm.tool("tpm2_policypcr", "-S", session, "-l", "sha256:" + ",".join(map(str, pcrs)),
                     "-f", values_file, "-L", digest)  # fmt: skip
            tpm.tool("tpm2_flushcontext", session)
            assert policy_pcr_digest("sha256", values) == digest.read_bytes()
