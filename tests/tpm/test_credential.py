"""A credential we make offline opens on the VM's vTPM the way systemd 257 opens it: its blob imported under
systemd's legacy primary (recreated by tpm2-tools from the template), unsealed in a PolicyPCR session, and
the AES-256-GCM part opened with SHA-256 of the secret over the headers as AAD (systemd creds-util.c,
read here from the layout, not from our writer). Only while the PCRs hold the values it was made for.

The guest boot (tests/boot/test_specialization.py) is the proof that systemd itself reads it; this test
pins the pieces one by one with tools that are not ours.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.tpm.credential import CRED_TPM2_HMAC, credential_text, encrypt_credential
from app.tpm.srk import load_srk
from tests.tpm.swtpm_tools import ToolsTpm, tools_tpm

pytestmark = pytest.mark.slow

#: systemd's legacy primary (tpm2-util.c tpm2_get_legacy_template): the SRK's attributes without noda.
LEGACY = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|decrypt"


def shieldwright(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True)


def _pcrs(tpm: ToolsTpm, pcrs: tuple[int, ...]) -> dict[int, str]:
    out = tpm.tool("tpm2_pcrread", "sha256:" + ",".join(map(str, pcrs))).stdout
    return {int(n): v.lower() for n, v in re.findall(r"^\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)", out, re.M)}


def _tpm2b(data: bytes, at: int) -> int:
    return at + 2 + struct.unpack_from(">H", data, at)[0]


def _open(tpm: ToolsTpm, work: Path, cred: bytes, pcrs: tuple[int, ...]) -> bytes | None:
    """systemd's decrypt, step by step: the headers as creds-util.c lays them out, the TPM by tpm2-tools."""
    assert cred[:16] == CRED_TPM2_HMAC
    key_size, block_size, iv_size, tag_size = struct.unpack_from("<IIII", cred, 16)
    assert (key_size, block_size, iv_size, tag_size) == (32, 1, 12, 16)
    iv = cred[32 : 32 + iv_size]
    p = 32 + iv_size + (-(32 + iv_size) % 8)
    mask, bank, primary_alg, blob_size, policy_size = struct.unpack_from("<QHHII", cred, p)
    assert bank == 0x000B and primary_alg == 0x0023 and mask == sum(1 << n for n in pcrs)
    blob = cred[p + 20 : p + 20 + blob_size]
    t_end = p + 20 + blob_size + policy_size
    aad_end = t_end + (-t_end % 8)
    priv_end = _tpm2b(blob, 0)
    pub_end = _tpm2b(blob, priv_end)
    for name, part in (("c.priv", blob[:priv_end]), ("c.pub", blob[priv_end:pub_end]),
                       ("c.seed", blob[pub_end:])):  # fmt: skip
        (work / name).write_bytes(part)
    primary, ctx = work / "legacy.ctx", work / "cred.ctx"
    tpm.tool("tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc256:aes128cfb", "-a", LEGACY,
             "-c", primary)  # fmt: skip
    tpm.tool("tpm2_flushcontext", "-t")  # swtpm has no resource manager: free the slots tools leave used
    tpm.tool("tpm2_import", "-C", primary, "-u", work / "c.pub", "-i", work / "c.priv", "-s", work / "c.seed",
             "-r", work / "imported.priv")  # fmt: skip
    tpm.tool("tpm2_flushcontext", "-t")
    tpm.tool("tpm2_load", "-C", primary, "-u", work / "c.pub", "-r", work / "imported.priv", "-c", ctx)
    tpm.tool("tpm2_flushcontext", "-t")
    session, out = work / "session.ctx", work / "secret.bin"
    tpm.tool("tpm2_startauthsession", "--policy-session", "-S", session)
    try:
        if pcrs:
            tpm.tool("tpm2_policypcr", "-S", session, "-l", "sha256:" + ",".join(map(str, pcrs)))
        done = tpm.tool("tpm2_unseal", "-c", ctx, "-p", f"session:{session}", "-o", out, check=False)
    finally:
        tpm.tool("tpm2_flushcontext", session)
        tpm.tool("tpm2_flushcontext", "-t")
    if done.returncode != 0:
        return None
    key = hashlib.sha256(out.read_bytes()).digest()
    plain = AESGCM(key).decrypt(iv, cred[aad_end:], cred[:aad_end])
    stamp, not_after, name_size = struct.unpack_from("<QQI", plain, 0)
    assert not_after == 2**64 - 1 and name_size == 0
    return plain[24:]  # the metadata header (20 bytes) padded to 8


def test_the_vtpm_records_systemds_legacy_primary(tmp_path: Path) -> None:
    state = tmp_path / "vm-tpm"
    assert shieldwright("vtpm", "new", state).returncode == 0
    written = (state / "credentials.tpm2b_public").read_bytes()
    with tools_tpm(state) as tpm:
        tpm.tool("tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc256:aes128cfb", "-a", LEGACY,
                 "-c", tmp_path / "p.ctx", "-f", "tss", "-o", tmp_path / "legacy.pub")  # fmt: skip
        assert (tmp_path / "legacy.pub").read_bytes() == written
    assert written != (state / "srk.tpm2b_public").read_bytes()  # noda makes it another key


@pytest.mark.parametrize("pcrs", [(4, 7), ()])
def test_a_credential_opens_on_its_vtpm_only_at_its_pcrs(tmp_path: Path, pcrs: tuple[int, ...]) -> None:
    state = tmp_path / "vm-tpm"
    assert shieldwright("vtpm", "new", state).returncode == 0
    parent = load_srk(state / "credentials.tpm2b_public")
    data = b"f+ /etc/hostname 0644 root root - shielded-vm\n"
    with tools_tpm(state) as tpm:
        values = _pcrs(tpm, pcrs) if pcrs else {}
        cred = encrypt_credential(data, parent, "sha256", values)
        text = credential_text(cred)
        assert all(len(line) <= 79 for line in text.splitlines()) and base64.b64decode(text) == cred
        assert _open(tpm, tmp_path, cred, pcrs) == data
        if pcrs:
            tpm.tool("tpm2_pcrextend", f"7:sha256={'11' * 32}")
            assert _open(tpm, tmp_path, cred, pcrs) is None  # PCR 7 moved: the TPM refuses
    other = tmp_path / "other-tpm"
    assert shieldwright("vtpm", "new", other).returncode == 0
    with tools_tpm(other) as tpm, pytest.raises(AssertionError, match="tpm2_import failed"):
        _open(tpm, tmp_path, cred, pcrs)  # another VM's vTPM cannot even import it
