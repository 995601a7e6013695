"""``shieldwright vtpm new``: a swtpm state directory with systemd's SRK persistent at 0x81000001.

Checked with tpm2-tools on a swtpm running that directory: the key at 0x81000001 is the file we wrote,
and it is the key systemd's template gives (``tpm2_createprimary`` with the template of
reference/tpm-unlock.md creates the same public key again: primaries are derived from the hierarchy seed).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.tpm.srk import load_srk
from tests.tpm.swtpm_tools import tools_tpm

pytestmark = pytest.mark.slow

SYSTEMD_SRK = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt"


def shieldwright(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize(("kind", "alg"), [("ecc", "ecc256:aes128cfb"), ("rsa", "rsa2048:aes128cfb")])
def test_the_persistent_srk_is_systemds_and_the_file_holds_it(tmp_path: Path, kind: str, alg: str) -> None:
    state = tmp_path / "vm1-tpm"
    done = shieldwright("vtpm", "new", state, "--srk", kind, "--pcr-banks", "sha1,sha256")
    assert done.returncode == 0, done.stderr
    written = (state / "srk.tpm2b_public").read_bytes()
    assert load_srk(state / "srk.tpm2b_public").kind == kind
    assert (state.stat().st_mode & 0o777) == 0o700
    with tools_tpm(state) as tpm:
        tpm.tool("tpm2_readpublic", "-c", "0x81000001", "-f", "tss", "-o", tmp_path / "read.pub")
        assert (tmp_path / "read.pub").read_bytes() == written
        tpm.tool("tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", alg, "-a", SYSTEMD_SRK,
                 "-c", tmp_path / "again.ctx", "-f", "tss", "-o", tmp_path / "again.pub")  # fmt: skip
        assert (tmp_path / "again.pub").read_bytes() == written
        banks = tpm.tool("tpm2_pcrread", "sha1:0+sha256:0").stdout
        assert "sha1:" in banks and "sha256:" in banks


def test_an_existing_directory_is_never_touched(tmp_path: Path) -> None:
    state = tmp_path / "busy"
    state.mkdir()
    (state / "tpm2-00.permall").write_bytes(b"another VM's TPM")
    done = shieldwright("vtpm", "new", state)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "never overwritten" in done.stderr
    assert [p.name for p in state.iterdir()] == ["tpm2-00.permall"]
    assert (state / "tpm2-00.permall").read_bytes() == b"another VM's TPM"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert shieldwright("vtpm", "new", empty).returncode == 0
    bad = shieldwright("vtpm", "new", tmp_path / "x", "--pcr-banks", "md5")
    assert bad.returncode == 2 and not (tmp_path / "x").exists()
