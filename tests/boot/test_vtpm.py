"""app.boot.vtpm against a real swtpm: after the client that drove it (QEMU, here a stand-in speaking
QEMU's control protocol) is gone, the PCRs are still there to read; and swtpm's command log gives the
extends it received. The oracle for the values is hashlib on the digests extended."""

from __future__ import annotations

import array
import hashlib
import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from app.boot.vtpm import CMD_SET_DATAFD, CommandLogTail, logged_commands, logged_extends, read_pcrs

pytestmark = pytest.mark.slow

CMD_INIT = 2
DIGEST = bytes(range(32))


def _extend_command(pcr: int, digest: bytes) -> bytes:
    """TPM2_PCR_Extend(pcr, sha256:digest) with an empty password session (TPM 2.0 Part 3 §22.2)."""
    auth = struct.pack(">IHBH", 0x40000009, 0, 0, 0)
    body = struct.pack(">II", pcr, len(auth)) + auth + struct.pack(">IH", 1, 0x000B) + digest
    return struct.pack(">HII", 0x8002, 10 + len(body), 0x182) + body


def _drive(path: Path, extends: list[tuple[int, bytes]]) -> None:
    """Be QEMU for a moment: CMD_INIT, a data channel by CMD_SET_DATAFD, TPM2_Startup, the extends; then
    hang up (swtpm keeps running with its state)."""
    ctrl = socket.socket(socket.AF_UNIX)
    ctrl.connect(str(path))
    ctrl.sendall(struct.pack(">II", CMD_INIT, 0))
    assert ctrl.recv(4) == bytes(4)
    ours, theirs = socket.socketpair()
    ctrl.sendmsg([struct.pack(">I", CMD_SET_DATAFD)],
                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno()]))])  # fmt: skip
    assert ctrl.recv(4) == bytes(4)
    ours.sendall(bytes.fromhex("80010000000c000001440000"))  # TPM2_Startup(CLEAR)
    assert ours.recv(64)[6:10] == bytes(4)
    for pcr, digest in extends:
        ours.sendall(_extend_command(pcr, digest))
        assert ours.recv(64)[6:10] == bytes(4)
    for s in (ours, theirs, ctrl):
        s.close()
    time.sleep(0.2)


@pytest.fixture
def swtpm(tmp_path: Path):  # type: ignore[no-untyped-def]
    state = Path(os.path.realpath(tmp_path))
    subprocess.run(["swtpm_setup", "--tpm2", "--tpm-state", str(state), "--pcr-banks", "sha1,sha256",
                    "--config", os.devnull], check=True, capture_output=True)  # fmt: skip
    path = state / "ctrl.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    log = state / "swtpm.log"
    proc = subprocess.Popen(
        ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}", "--ctrl",
         f"type=unixio,fd={listener.fileno()}", "--log", f"file={log},level=20"],
        pass_fds=(listener.fileno(),),
    )  # fmt: skip
    listener.close()
    yield path, log
    proc.kill()
    proc.wait()


def test_pcrs_are_read_after_the_driving_client_is_gone(swtpm) -> None:  # type: ignore[no-untyped-def]
    path, log = swtpm
    _drive(path, [(4, DIGEST)])

    pcrs = read_pcrs(path, ["sha256", "sha1"], range(24))
    assert pcrs["sha256"][4] == hashlib.sha256(bytes(32) + DIGEST).hexdigest()
    assert pcrs["sha256"][7] == "00" * 32 and len(pcrs["sha1"]) == 24 and len(pcrs["sha256"]) == 24

    extends = logged_extends(logged_commands(log.read_text()))
    assert extends == [(4, {"sha256": DIGEST})]


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_a_growing_log_yields_each_extend_once_when_it_is_complete(swtpm, tmp_path: Path, chunk: int) -> None:  # type: ignore[no-untyped-def]
    """What a test boot watches: swtpm's real log, written out in pieces of any size, gives every extend
    exactly once and only after its last hex line is complete."""
    path, log = swtpm
    second = hashlib.sha256(b"second").digest()
    _drive(path, [(4, DIGEST), (5, second)])
    text = log.read_bytes()
    flat = text.decode().replace(" ", "").replace("\n", "").lower()
    assert _extend_command(5, second).hex() in flat  # the log holds the command's bytes as hex lines

    growing = tmp_path / "growing.log"
    growing.write_bytes(b"")
    tail = CommandLogTail(growing)
    seen: list[tuple[int, dict[str, bytes]]] = []
    with open(growing, "ab") as f:
        for at in range(0, len(text), chunk):
            f.write(text[at : at + chunk])
            f.flush()
            seen += tail.new_extends()
    seen += tail.new_extends()
    assert seen == [(4, {"sha256": DIGEST}), (5, {"sha256": second})]
    # Whole lines, but the second extend's last hex line missing: it is not reported yet.
    body = text[: text.rindex(b" SWTPM_IO_Write")].rstrip(b"\n")
    cut = body.rindex(b"\n") + 1
    partial = tmp_path / "partial.log"
    partial.write_bytes(text[:cut])
    assert CommandLogTail(partial).new_extends() == [(4, {"sha256": DIGEST})]
