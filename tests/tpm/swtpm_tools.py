"""Test support: a swtpm on TCP that tpm2-tools talk to (``-T swtpm:host=127.0.0.1,port=P``).

tpm2-tss's swtpm TCTI uses port P for commands and P+1 for control, so two consecutive free ports are
found by binding both, then handed to swtpm by number (swtpm's ``fd=`` for a TCP control channel does not
accept a second client; the window between our close and swtpm's bind is tiny, and a clash fails loudly).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ToolsTpm:
    state: Path
    port: int

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def tool(self, *args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a tpm2-tools command against this TPM."""
        done = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                              env={**os.environ, "TPM2TOOLS_TCTI": self.tcti})  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {done.stderr}")
        return done


def _consecutive_listeners() -> tuple[socket.socket, socket.socket]:
    for _ in range(50):
        first = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        first.bind(("127.0.0.1", 0))
        port = first.getsockname()[1]
        second = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            second.bind(("127.0.0.1", port + 1))
        except OSError:
            first.close()
            second.close()
            continue
        first.listen(1)
        second.listen(1)
        return first, second
    raise RuntimeError("no two consecutive free TCP ports")


@contextmanager
def tools_tpm(state: Path, banks: str = "sha256") -> Iterator[ToolsTpm]:
    """A swtpm on ``state`` (manufactured there if new; TPM2_Startup done), reachable by tpm2-tools."""
    state = state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    if not any(state.glob("tpm2-*.permall")):
        setup = [
            "swtpm_setup",
            "--tpm2",
            "--tpm-state",
            str(state),
            "--pcr-banks",
            banks,
            "--config",
            os.devnull,
        ]
        subprocess.run(setup, check=True, capture_output=True)
    data, ctrl = _consecutive_listeners()
    with data, ctrl:
        port = data.getsockname()[1]
    proc = subprocess.Popen(
        ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}", "--flags", "not-need-init,startup-clear",
         "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
         "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):  # until swtpm listens
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port + 1)) == 0:
                break
        time.sleep(0.05)
    try:
        yield ToolsTpm(state, port)
    finally:
        proc.kill()
        proc.wait()


def create_systemd_srk(tpm: ToolsTpm, work: Path, alg: str = "ecc256:aes128cfb") -> Path:
    """systemd's SRK made and persisted by tpm2-tools alone (reference/tpm-unlock.md); its TPM2B_PUBLIC."""
    ctx, out = work / "srk.ctx", work / "srk.tpm2b_public"
    attributes = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt"
    tpm.tool("tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", alg, "-a", attributes, "-c", ctx)
    tpm.tool("tpm2_evictcontrol", "-C", "o", "-c", ctx, "0x81000001")
    tpm.tool("tpm2_readpublic", "-c", "0x81000001", "-f", "tss", "-o", out)
    tpm.tool("tpm2_flushcontext", "-t")
    return out
