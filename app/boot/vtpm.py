"""Talk to a running swtpm through its control socket: hand it a data channel and read PCRs.

QEMU drives swtpm the same way: it connects to the control socket and passes one end of a socket pair
with ``CMD_SET_DATAFD`` (swtpm's tpm_ioctl.h; SCM_RIGHTS), then sends TPM 2.0 commands on it. After QEMU
is gone swtpm keeps its state — PCRs included — until it is stopped, so a test boot can stop the guest
at a chosen moment and read what the vTPM really holds. TPM structures are marshalled with tpm2-pytss.
"""

from __future__ import annotations

import array
import contextlib
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tpm2_pytss.types import TPML_DIGEST, TPML_PCR_SELECTION

from app.boot.pcr import BANK_SIZES, TPM_ALG_IDS
from app.errors import ShieldwrightError

#: swtpm control commands (tpm_ioctl.h).
CMD_INIT = 2
CMD_SHUTDOWN = 3
CMD_SET_DATAFD = 16
#: TPM 2.0: TPM_ST_NO_SESSIONS, TPM_CC_PCR_Read (TPM 2.0 Part 2 §6.5, §6.9).
_TPM_ST_NO_SESSIONS = 0x8001
_TPM_CC_PCR_READ = 0x0000017E
_TIMEOUT = 10.0


class VtpmError(ShieldwrightError):
    """swtpm could not be reached or answered something unexpected."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise VtpmError("swtpm closed the connection", "check the swtpm log")
        out += chunk
    return out


def exchange(data: socket.socket, command: bytes) -> bytes:
    """Send one TPM command on a data channel; the whole response (header, code and body)."""
    data.sendall(command)
    header = _recv_exact(data, 10)
    _tag, size, _rc = struct.unpack(">HII", header)
    if size < 10 or size > 64 * 1024:
        raise VtpmError(f"swtpm answered a response of {size} bytes", "check the swtpm log")
    return header + _recv_exact(data, size - 10)


def _transmit(data: socket.socket, command: bytes) -> bytes:
    response = exchange(data, command)
    (rc,) = struct.unpack_from(">I", response, 6)
    if rc != 0:
        raise VtpmError(f"the vTPM answered TPM2_PCR_Read with error 0x{rc:x}", "check the swtpm log")
    return response[10:]


def _control(ctrl: socket.socket, command: int, payload: bytes = b"", fds: list[int] | None = None) -> None:
    message = struct.pack(">I", command) + payload
    if fds:
        ctrl.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        ctrl.sendall(message)
    (result,) = struct.unpack(">I", _recv_exact(ctrl, 4))
    if result != 0:
        raise VtpmError(f"swtpm refused control command {command} (error {result})", "check the swtpm log")


@contextlib.contextmanager
def data_channel(ctrl_socket: Path, *, init: bool = False) -> Iterator[socket.socket]:
    """A data channel to the swtpm listening on ``ctrl_socket`` (QEMU's way in: CMD_SET_DATAFD).

    ``init``: first initialise a freshly started swtpm (CMD_INIT), as QEMU does before its first command;
    the TPM then still needs TPM2_Startup. Leaving the block closes the channel; swtpm keeps running.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ctrl:
        ctrl.settimeout(_TIMEOUT)
        try:
            ctrl.connect(str(ctrl_socket))
        except OSError as exc:
            raise VtpmError(
                f"cannot reach swtpm at {ctrl_socket}: {exc.strerror}", "is swtpm running?"
            ) from None
        if init:
            _control(ctrl, CMD_INIT, struct.pack(">I", 0))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours, theirs:
            ours.settimeout(_TIMEOUT)
            _control(ctrl, CMD_SET_DATAFD, fds=[theirs.fileno()])
            yield ours


def shutdown_swtpm(ctrl_socket: Path) -> None:
    """CMD_SHUTDOWN: swtpm saves its state and exits (after the TPM itself was shut down in order)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ctrl:
        ctrl.settimeout(_TIMEOUT)
        ctrl.connect(str(ctrl_socket))
        _control(ctrl, CMD_SHUTDOWN)


def read_pcrs(
    ctrl_socket: Path, banks: Sequence[str], pcrs: Iterable[int] = range(24)
) -> dict[str, dict[int, str]]:
    """``{bank: {pcr: hex}}`` read with TPM2_PCR_Read from the swtpm listening on ``ctrl_socket``."""
    wanted = sorted(set(pcrs))
    out: dict[str, dict[int, str]] = {bank: {} for bank in banks}
    with data_channel(ctrl_socket) as ours:
        for bank in banks:
            todo = list(wanted)
            while todo:  # a response carries at most 8 digests (TPML_DIGEST)
                selection = TPML_PCR_SELECTION.parse(f"{bank}:{','.join(str(n) for n in todo)}")
                payload = selection.marshal()
                command = struct.pack(">HII", _TPM_ST_NO_SESSIONS, 10 + len(payload), _TPM_CC_PCR_READ)
                body = _transmit(ours, command + payload)
                returned, offset = TPML_PCR_SELECTION.unmarshal(body[4:])
                digests, _ = TPML_DIGEST.unmarshal(body[4 + offset :])
                got = _selected(returned)
                if not got:
                    raise VtpmError(f"the vTPM has no {bank} bank", "give the banks the vTPM was made with")
                for n, digest in zip(got, digests, strict=True):
                    out[bank][n] = bytes(digest).hex()
                todo = [n for n in todo if n not in got]
    return out


def _selected(selection: TPML_PCR_SELECTION) -> list[int]:
    numbers: list[int] = []
    for i in range(selection.count):
        s = selection.pcrSelections[i]
        select = bytes(s.pcrSelect)[: s.sizeofSelect]
        numbers += [8 * byte + bit for byte, v in enumerate(select) for bit in range(8) if v >> bit & 1]
    return numbers


# -- what the vTPM was asked to extend (swtpm's --log level=20 dumps every command) ------------------

_TPM_CC_PCR_EXTEND = 0x00000182


def logged_commands(log_text: str) -> list[bytes]:
    """The TPM commands in a swtpm log written with ``--log level=20`` (``SWTPM_IO_Read: length N``
    followed by hex lines), in order; a command cut short at the end of the log is left out."""
    commands: list[bytes] = []
    want = 0
    current: list[str] = []
    for line in log_text.splitlines():
        if line.startswith(" SWTPM_IO_Read: length "):
            want, current = int(line.rsplit(" ", 1)[1]), []
            continue
        if want and line.startswith(" ") and all(len(w) == 2 for w in line.split()):
            current += line.split()
            if len(current) >= want:
                commands.append(bytes.fromhex("".join(current[:want])))
                want = 0
            continue
        want = 0
    return commands


def logged_extends(commands: list[bytes]) -> list[tuple[int, dict[str, bytes]]]:
    """(PCR, {bank: digest}) of every TPM2_PCR_Extend among ``commands`` (TPM 2.0 Part 3 §22.2)."""
    out = []
    for cmd in commands:
        if len(cmd) < 18 or struct.unpack_from(">I", cmd, 6)[0] != _TPM_CC_PCR_EXTEND:
            continue
        pcr = struct.unpack_from(">I", cmd, 10)[0]
        if struct.unpack_from(">H", cmd, 0)[0] == 0x8002:  # sessions: skip the authorization area
            (auth_size,) = struct.unpack_from(">I", cmd, 14)
            pos = 18 + auth_size
        else:
            pos = 14
        if pos + 4 > len(cmd):
            continue
        (count,) = struct.unpack_from(">I", cmd, pos)
        pos += 4
        digests: dict[str, bytes] = {}
        for _ in range(min(count, 16)):
            if pos + 2 > len(cmd):
                break
            (alg,) = struct.unpack_from(">H", cmd, pos)
            name = TPM_ALG_IDS.get(alg)
            if name is None:
                break
            digests[name] = cmd[pos + 2 : pos + 2 + BANK_SIZES[name]]
            pos += 2 + BANK_SIZES[name]
        if pcr < 24:
            out.append((pcr, digests))
    return out


_READ_MARKER = " SWTPM_IO_Read: length "


class CommandLogTail:
    """The PCR extends of a growing swtpm command log (``--log level=20``), as each command completes.

    Polled while the guest runs (a test boot stops at the firmware's ExitBootServices measurement): each
    call reads what was appended since the last one and returns the extends of the commands that are now
    complete. A command whose hex lines are still being written waits for the next call.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial_line = b""
        self._pending = ""  # complete lines not yet returned: at most the start of one command

    def new_extends(self) -> list[tuple[int, dict[str, bytes]]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial_line + data
        cut = data.rfind(b"\n") + 1
        self._partial_line = data[cut:]
        self._pending += data[:cut].decode("ascii", errors="replace")
        last = self._pending.rfind(_READ_MARKER)
        if last < 0:
            self._pending = ""
            return []
        if logged_commands(self._pending[last:]):  # the last command is complete: take everything
            text, self._pending = self._pending, ""
        else:
            text, self._pending = self._pending[:last], self._pending[last:]
        return logged_extends(logged_commands(text))
