"""Boot a disk image in QEMU on real UEFI firmware (OVMF) with a software TPM (swtpm); capture the console.

The only proof that a signed UKI, a shim fallback CSV or an exported template really boots under Secure
Boot, and that the predicted PCR values are what a TPM measures, is a boot on the real firmware. Tests use
:func:`boot`, and the product can use it for a "test boot". Qt-free, no root, and nothing left running:
QEMU and swtpm are killed and their runtime directory removed in every case.

Telling a guest reset from a power-off (QEMU 7.2): with ``-no-reboot`` both end the QEMU process with
exit status 0, and ``-action reboot=shutdown`` is the same thing, so neither the status nor the action tells
them apart. QMP does: QEMU starts paused (``-S``) with a monitor on a socketpair we hold the other end of,
we negotiate (``qmp_capabilities``) and resume (``cont``), and the ``SHUTDOWN`` event QEMU sends before it
exits carries ``reason`` ``"guest-reset"`` (firmware ``ResetSystem``, ``reboot -f``, a ``panic=-1`` panic)
or ``"guest-shutdown"`` (ACPI power-off). :func:`boot` with ``resets`` boots again on the former.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import dataclasses
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.boot.vtpm import CommandLogTail, read_pcrs
from app.errors import ShieldwrightError
from app.progress import CancelToken
from app.tools import require_tool, run_tool

MiB = 1024 * 1024
#: How much of one run's console is kept in memory (characters): its start and its end. A boot to a
#: systemd root prints ~100 K; a guest that floods its serial port must not fill the host's memory.
CONSOLE_HEAD_CHARS = 2 * MiB
CONSOLE_TAIL_CHARS = 6 * MiB
#: The console file is read in pieces of at most this many bytes; a line longer than this many characters
#: reaches an ``on_console`` callback in pieces.
_CONSOLE_READ = MiB
_CONSOLE_LINE_CHARS = 64 * 1024
#: An escape sequence is held back for its end at most this long (OSC strings are the long ones).
_ESCAPE_HOLD = 256

#: Debian 12 ``ovmf`` files (package ``ovmf``): the 4 MiB builds, the only ones trixie still ships.
OVMF_DIR = Path("/usr/share/OVMF")
#: Debian's variable stores (VARS templates), by the name ``shieldwright firmware vars`` gives them.
VARS_TEMPLATES = {
    "microsoft": "OVMF_VARS_4M.ms.fd",  # Microsoft's KEK and db (boots a Microsoft-signed shim)
    "snakeoil": "OVMF_VARS_4M.snakeoil.fd",  # Debian's snakeoil key as PK, KEK and db
    "empty": "OVMF_VARS_4M.fd",  # no keys: setup mode, Secure Boot off
}
#: Debian's snakeoil test key pair, enrolled as PK, KEK and db in ``OVMF_VARS_4M.snakeoil.fd``.
SNAKEOIL_CERT = Path("/usr/share/ovmf/PkKek-1-snakeoil.pem")
SNAKEOIL_KEY = Path("/usr/share/ovmf/PkKek-1-snakeoil.key")
SNAKEOIL_PASSPHRASE = b"snakeoil"

#: The firmware's last words when every boot option failed (after "failed to load Boot0001 ...: Access
#: Denied" for an image Secure Boot refused); it then waits for a key press forever, hence a stop text.
FIRMWARE_NO_BOOT_OPTION = "BdsDxe: No bootable option or device was found."
#: A boot option Secure Boot refused: ``BdsDxe: failed to load Boot0001 "..." from ...: Access Denied``.
_REFUSAL = re.compile(
    r"^BdsDxe: failed to (?:load|start) (Boot[0-9A-Fa-f]{4}) .*: (Access Denied|Security Violation)$"
)
#: The firmware handing over to a loaded image, and the kernel's first console line: timing milestones.
FIRMWARE_STARTING_IMAGE = "BdsDxe: starting Boot"
KERNEL_BANNER = "Linux version "

#: ECMA-48 control sequences (CSI with intermediates, e.g. systemd's soft reset ``ESC [ ! p``), OSC strings
#: (``ESC ] 104 BEL``) and the two-byte charset/keypad escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[=>]")
#: The start of one of those that more text could still complete (a stray ESC before plain text is not).
_ANSI_OPEN = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[()])?")
#: A test of each PCR extend the vTPM received: a text (why to stop the run there) or None to go on.
ExtendStop = Callable[[int, dict[str, bytes]], str | None]
#: Receives the console as it grows, in whole lines.
ConsoleSink = Callable[[str], None]

#: sun_path is 108 bytes including the NUL.
_MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class Firmware:
    """An OVMF build: the read-only CODE image and the VARS template each boot starts from a copy of."""

    code: Path
    vars_template: Path
    secure_boot: bool
    description: str

    @classmethod
    def snakeoil(cls) -> Firmware:
        """Secure Boot on, Debian's snakeoil certificate as PK, KEK and db: sign with :data:`SNAKEOIL_KEY`."""
        return cls(
            OVMF_DIR / "OVMF_CODE_4M.secboot.fd",
            OVMF_DIR / VARS_TEMPLATES["snakeoil"],
            True,
            "OVMF Secure Boot, snakeoil keys",
        )

    @classmethod
    def microsoft(cls) -> Firmware:
        """Secure Boot on, Microsoft's keys enrolled (as in a cloud VM): boots a Microsoft-signed shim."""
        return cls(
            OVMF_DIR / "OVMF_CODE_4M.secboot.fd",
            OVMF_DIR / VARS_TEMPLATES["microsoft"],
            True,
            "OVMF Secure Boot, Microsoft keys",
        )

    @classmethod
    def insecure(cls) -> Firmware:
        """No Secure Boot (empty variable store): boots anything; measured boot still works."""
        code, store = OVMF_DIR / "OVMF_CODE_4M.fd", OVMF_DIR / VARS_TEMPLATES["empty"]
        return cls(code, store, False, "OVMF without Secure Boot")

    def check(self) -> None:
        for path in (self.code, self.vars_template):
            if not path.is_file():
                raise ShieldwrightError(f"{path} is not installed", "run `make setup` (package ovmf)")


@dataclass(frozen=True)
class BootRun:
    """One QEMU run inside a :func:`boot` call: the first boot, or the boot after a guest reset.

    ``started`` is seconds after the first run started; ``elapsed`` and the times in ``seen`` count from
    this run's own start. ``ended`` as in :class:`BootResult`. ``exit_reason`` is the ``reason`` of QEMU's
    QMP ``SHUTDOWN`` event when QEMU exited by itself: ``"guest-reset"`` (the guest reset the machine — a
    firmware ``ResetSystem``, ``reboot -f``, a ``panic=-1`` panic), ``"guest-shutdown"`` (power-off),
    ``"guest-panic"``; None when QEMU did not exit by itself (killed at a stop text or timeout) or sent no
    event. ``stopped_by``: the ``stop_on`` text that ended the run — also when the guest printed it and
    exited before the next look at the console (``ended`` is then ``"stop"`` and ``exit_reason`` is set).
    ``console`` is the run's console as :class:`BoundedConsole` keeps it: whole unless the guest printed
    more than :data:`CONSOLE_HEAD_CHARS` + :data:`CONSOLE_TAIL_CHARS` characters.
    """

    started: float
    elapsed: float
    ended: str
    exit_reason: str | None = None
    stopped_by: str | None = None
    seen: dict[str, float] = field(default_factory=dict)
    console: str = ""


@dataclass(frozen=True)
class BootResult:
    """What one boot showed. ``console`` is the serial output as text (CR and terminal escapes removed).

    ``ended``: ``"exited"`` — QEMU exited by itself (guest powered off, or reset with ``-no-reboot``);
    ``"stop"`` — a ``stop_on`` text appeared (``stopped_by`` says which); ``"no-boot-option"`` — the firmware
    ran out of boot options; ``"timeout"``. ``seen`` maps each watched text (``stop_on`` and the milestones
    :data:`FIRMWARE_STARTING_IMAGE`, :data:`KERNEL_BANNER`, :data:`FIRMWARE_NO_BOOT_OPTION`) to the seconds
    after QEMU started when it first appeared — how we know what a boot costs.

    With ``boot(resets=N)`` the machine may be booted several times: ``runs`` holds each boot (its own
    console, timings and exit reason), ``console`` their consoles joined by :func:`reset_line` lines,
    ``ended``/``stopped_by``/``exit_reason`` are the last run's, ``elapsed`` the total, and ``seen`` the
    first appearance of each text counted from the first run's start.
    """

    console: str
    ended: str
    elapsed: float
    stopped_by: str | None = None
    seen: dict[str, float] = field(default_factory=dict)
    qemu_stderr: str = ""
    runs: tuple[BootRun, ...] = ()
    exit_reason: str | None = None
    #: ``{bank: {pcr: hex}}`` read from the vTPM after the last run, when :func:`boot` was asked to
    #: (``read_pcrs``) and swtpm was still running (QEMU was stopped, not shut down by the guest).
    pcrs: dict[str, dict[int, str]] | None = None

    @property
    def resets(self) -> int:
        """How many guest resets were followed by another boot."""
        return max(len(self.runs) - 1, 0)

    @property
    def refusals(self) -> list[str]:
        """The firmware's "failed to load/start BootXXXX ...: Access Denied / Security Violation" lines."""
        return [line.strip() for line in self.console.splitlines() if _REFUSAL.match(line.strip())]

    @property
    def secure_boot_refused(self) -> bool:
        """True when the firmware refused a boot option with Access Denied (a Secure Boot signature failure).

        ``Security Violation`` alone does not count: OVMF's Secure Boot build answers that for its own
        built-in shell on every boot that reaches it, whatever happened to the disk.
        """
        return any(line.endswith(": Access Denied") for line in self.refusals)

    def tail(self, chars: int = 3000) -> str:
        """The end of the console, for assertion messages."""
        return self.console[-chars:]


@functools.cache
def kvm_usable() -> bool:
    """QEMU can run this machine under KVM here: /dev/kvm opens, and a KVM guest survives its start.

    Opening /dev/kvm is not enough: nested or sandboxed KVM can refuse the vCPU's MSRs, and QEMU then
    aborts the moment the machine starts ("failed to set MSR"). So a bare machine of the same kind is
    started and given 1.5 s; checked once per process.
    """
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError:
        return False
    qemu_bin = shutil.which("qemu-system-x86_64")
    if qemu_bin is None:
        return False
    probe = subprocess.Popen(
        [qemu_bin, "-accel", "kvm", "-cpu", "max", "-machine", "q35,smm=on", "-m", "64", "-nodefaults",
         "-display", "none", "-no-reboot"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        probe.wait(timeout=1.5)
    except subprocess.TimeoutExpired:
        return True
    finally:
        if probe.poll() is None:
            probe.kill()
        probe.wait()
    return False


def reset_line(number: int) -> str:
    """The line :func:`boot` puts in the console before the boot that follows guest reset ``number``."""
    return f"--- reset {number} ---"


def console_text(raw: bytes) -> str:
    """Serial bytes as plain text: UTF-8 (errors replaced), CRLF → LF, terminal escapes removed."""
    decoder = ConsoleDecoder()
    return decoder.feed(raw, final=True)


class ConsoleDecoder:
    """:func:`console_text` for a console that arrives in pieces: each piece is turned into text as it
    comes, and what could still change meaning - a cut UTF-8 character, a CR that may be a CRLF's first
    half, an escape sequence not yet ended (up to :data:`_ESCAPE_HOLD` characters) - waits for the next.
    The pieces' texts joined equal :func:`console_text` of the bytes joined (but for an OSC string longer
    than that, whose start is then shown as text). Text after a stray ESC does not wait: a stop text
    there is seen when it arrives."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""

    def feed(self, data: bytes, *, final: bool = False) -> str:
        text = self._held + self._utf8.decode(data, final)
        cut = len(text)
        if not final:
            if text.endswith("\r"):
                cut -= 1
            esc = text.find("\x1b", max(cut - _ESCAPE_HOLD, 0), cut)
            while esc >= 0 and not _ANSI_OPEN.fullmatch(text, esc, cut):
                esc = text.find("\x1b", esc + 1, cut)
            if esc >= 0:  # the first escape that more text could still complete
                cut = esc
        self._held = text[cut:]
        return _ANSI.sub("", text[:cut].replace("\r\n", "\n").replace("\r", "\n"))


class BoundedConsole:
    """A run's console text, kept within ``head + tail`` characters however much the guest prints: the
    first ``head`` (the firmware's lines), a line saying how much was dropped, and the last ``tail``."""

    def __init__(self, head: int = CONSOLE_HEAD_CHARS, tail: int = CONSOLE_TAIL_CHARS) -> None:
        self.head_limit, self.tail_limit = head, tail
        self.head = ""
        self.tail: collections.deque[str] = collections.deque()
        self.tail_chars = 0
        self.dropped = 0

    def append(self, text: str) -> None:
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += text[:room]
            text = text[room:]
        if not text:
            return
        self.tail.append(text)
        self.tail_chars += len(text)
        while self.tail_chars > self.tail_limit:
            over = self.tail_chars - self.tail_limit
            first = self.tail[0]
            if len(first) <= over:
                self.tail.popleft()
                self.tail_chars -= len(first)
                self.dropped += len(first)
            else:
                self.tail[0] = first[over:]
                self.tail_chars -= over
                self.dropped += over

    def text(self) -> str:
        gap = f"\n[… {self.dropped} characters of console output not kept …]\n" if self.dropped else ""
        return self.head + gap + "".join(self.tail)


def make_esp_image(path: Path, files: dict[str, bytes], *, cancel: CancelToken | None = None) -> Path:
    """A FAT image at ``path`` holding ``files`` (``"EFI/BOOT/BOOTX64.EFI"`` → bytes), for :func:`boot`.

    OVMF boots a whole-disk FAT filesystem (no partition table) as a removable medium, running
    ``\\EFI\\BOOT\\BOOTX64.EFI`` — the least that exercises the firmware's Secure Boot check. Built with
    ``mkfs.vfat`` and mtools on a plain file: no mount, no root. The size is the data plus 50 % and 4 MiB,
    so mkfs picks FAT12/16 for small payloads; OVMF reads either.
    """
    cancel = cancel or CancelToken()
    payload = sum(len(data) for data in files.values())
    size = (payload * 3 // 2 + 4 * MiB + MiB - 1) // MiB * MiB
    with open(path, "wb") as f:
        f.truncate(size)
    env = {"MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": os.devnull}
    run_tool("mkfs.vfat", "-n", "ESP", path, cancel=cancel)
    staging = Path(tempfile.mkdtemp(prefix=".esp-", dir=path.parent))
    try:
        made: set[str] = set()
        for name, data in files.items():
            parts = name.strip("/").split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder not in made:
                    run_tool("mmd", "-i", path, f"::/{folder}", cancel=cancel, env=env)
                    made.add(folder)
            src = staging / "file"
            src.write_bytes(data)
            run_tool("mcopy", "-i", path, "-o", src, f"::/{'/'.join(parts)}", cancel=cancel, env=env)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def boot(
    disk: Path,
    *,
    firmware: Firmware | None = None,
    tpm: bool = True,
    tpm_state: Path | None = None,
    pcr_banks: Sequence[str] = ("sha256",),
    stop_on: Sequence[str] = (),
    timeout: float = 120.0,
    memory_mib: int = 512,
    disk_format: str = "raw",
    accel: str = "tcg",
    vars_file: Path | None = None,
    resets: int = 0,
    stop_on_extend: ExtendStop | None = None,
    read_pcrs_after: Sequence[int] = (),
    on_console: ConsoleSink | None = None,
    cancel: CancelToken | None = None,
) -> BootResult:
    """Boot ``disk`` (attached as virtio-blk, ``snapshot=on``) and return the console.

    Each call starts from a fresh copy of the firmware's VARS template (the same enrolled keys every time),
    unless ``vars_file`` is given: then QEMU writes that file in place (the caller owns it; it is not
    copied), so variables the guest sets — boot entries shim's fallback creates — outlive the call.
    The console is tailed every 0.1 s; a run ends when QEMU exits (the guest powered off or reset), a
    ``stop_on`` text appears, the firmware has nothing left to boot, on ``timeout``, or on cancel.

    ``resets``: when QEMU exits because the guest reset the machine (QMP ``SHUTDOWN`` with reason
    ``guest-reset``; ``-no-reboot`` turns the reset into an exit), boot again, up to ``resets`` times, with
    the same variable store and the same vTPM state — how shim's fallback, which resets after creating its
    boot entry, gets to the second, normal boot. The disk's ``snapshot=on`` overlay does not survive a
    reset (nothing in the boot chain writes the disk). ``timeout`` bounds the whole call, all boots.

    ``tpm_state``: keep the vTPM in this directory (manufactured there on first use with ``pcr_banks``);
    without it a fresh vTPM lives in the runtime directory and is gone afterwards. ``stop_on``: texts after
    which there is nothing more to learn (the run is cut short there). ``stop_on_extend`` sees every PCR
    extend the vTPM receives, from swtpm's command log, and cuts the run short when it returns a text
    (``stopped_by``) — e.g. at the firmware's ExitBootServices measurement, before the kernel changes
    anything. ``read_pcrs_after``: after the last run, if swtpm is still up (QEMU was stopped rather than
    shut down by the guest), read these PCRs of every bank in ``pcr_banks`` into ``BootResult.pcrs``.
    ``on_console`` gets the console as it grows (whole lines; the reset lines included).
    Infrastructure failures (a tool missing, swtpm or QEMU failing to start) raise
    :class:`ShieldwrightError`; what the guest did — boot, refusal, hang — is in the :class:`BootResult`,
    never an exception.
    """
    firmware = firmware or Firmware.snakeoil()
    cancel = cancel or CancelToken()
    firmware.check()
    if resets < 0:
        raise ValueError("resets must be >= 0")
    qemu_bin = require_tool("qemu-system-x86_64")
    disk = Path(disk).resolve()
    if not disk.is_file():
        raise ShieldwrightError(f"{disk} does not exist", "give a disk image file")
    if vars_file is not None:
        vars_file = Path(vars_file).resolve()
        if not vars_file.is_file():
            raise ShieldwrightError(f"{vars_file} does not exist", "give an OVMF variable store (VARS) file")
        if not os.access(vars_file, os.R_OK | os.W_OK):
            raise ShieldwrightError(
                f"{vars_file} is not writable", "the firmware writes its variables there; fix its permissions"
            )
    runtime = Path(tempfile.mkdtemp(prefix="sw-vm-")).resolve()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sink = _ConsoleFeed(on_console)
        if vars_file is None:
            vars_file = runtime / "vars.fd"
            shutil.copyfile(firmware.vars_template, vars_file)
        # smm=on + a secure pflash: the Secure Boot CODE build keeps its variable store behind SMM, so the
        # guest cannot rewrite db itself (the configuration libvirt and mkosi use). TCG by default: KVM is not
        # available everywhere this runs. -no-reboot turns poweroff, a panic=-1 panic and a firmware reset
        # into QEMU exiting; snapshot=on sends writes to a throw-away overlay (the image is never modified).
        # -S + QMP: QEMU waits, paused, until we have negotiated the monitor, so no event is missed.
        base_argv = [
            qemu_bin, "-accel", accel, "-cpu", "max", "-m", str(memory_mib), "-smp", "1",
            "-machine", "q35,smm=on", "-global", "ICH9-LPC.disable_s3=1",
            "-global", "driver=cfi.pflash01,property=secure,value=on",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={firmware.code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_file}",
            "-drive", f"file={disk},format={disk_format},if=virtio,snapshot=on",
            "-nodefaults", "-display", "none", "-no-reboot", "-S",
        ]  # fmt: skip
        state = Path(tpm_state).resolve() if tpm_state is not None else runtime / "tpm"
        deadline = time.monotonic() + timeout
        pcrs: dict[str, dict[int, str]] | None = None
        runs: list[BootRun] = []
        stderrs: list[str] = []
        first_start: float | None = None  # when the first QEMU started: runs' times count from it
        while True:
            number = len(runs)
            swtpm: subprocess.Popen[bytes] | None = None
            argv = [*base_argv, "-serial", f"file:{runtime / f'console-{number}.log'}"]
            if tpm:
                # A fresh swtpm per run on the same state: QEMU shuts its TPM down when it exits.
                swtpm, tpm_socket = start_swtpm(state, runtime, pcr_banks, cancel)
                procs.append(swtpm)
                argv += [
                    "-chardev", f"socket,id=chrtpm,path={tpm_socket}",
                    "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0",
                ]  # fmt: skip
            first_start = time.monotonic() if first_start is None else first_start
            if number:
                sink.line(reset_line(number))
            watch = _Watch(stop_on, stop_on_extend, runtime / "swtpm.log" if tpm else None, sink)
            run = _run_qemu(argv, runtime, number, procs, watch, deadline, first_start, cancel)
            runs.append(run)
            stderr_path = runtime / f"qemu-{number}.stderr"
            stderrs.append(stderr_path.read_bytes().decode(errors="replace"))
            if run.ended == "exited" and procs[-1].returncode != 0 and not run.console and number == 0:
                if swtpm is not None:
                    _stop(swtpm)
                raise _start_failure(procs[-1], stderr_path, runtime)
            again = run.ended == "exited" and run.exit_reason == "guest-reset" and number < resets
            if swtpm is not None:
                if not again and read_pcrs_after and swtpm.poll() is None:
                    pcrs = read_pcrs(tpm_socket, pcr_banks, read_pcrs_after)
                # QEMU shut its TPM down when it exited by itself; a stopped QEMU left swtpm running.
                _stop(swtpm, grace=5.0 if run.ended == "exited" or run.exit_reason else 0.0)
            if again:
                continue
            break
        return dataclasses.replace(_combine(runs, "".join(stderrs)), pcrs=pcrs)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        shutil.rmtree(runtime, ignore_errors=True)


def _run_qemu(
    argv: list[str],
    runtime: Path,
    number: int,
    procs: list[subprocess.Popen[bytes]],
    watch: _Watch,
    deadline: float,
    first_start: float,
    cancel: CancelToken,
) -> BootRun:
    """Start QEMU (paused, ``-S``) with a QMP monitor on a socketpair, resume it, and watch the run.

    The QEMU process is appended to ``procs`` at once, so the caller's cleanup kills it whatever happens.
    """
    ours, theirs = socket.socketpair()
    argv = [*argv, "-chardev", f"socket,id=qmp,fd={theirs.fileno()}", "-mon", "chardev=qmp,mode=control"]
    stderr_path = runtime / f"qemu-{number}.stderr"
    started = time.monotonic()
    with ours, open(stderr_path, "wb") as stderr:
        with theirs:
            qemu = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, pass_fds=(theirs.fileno(),)
            )
        procs.append(qemu)
        qmp = _Qmp(ours)
        if not qmp.start(min(30.0, max(deadline - time.monotonic(), 1.0))):
            if qemu.poll() is None:
                qemu.kill()
            qemu.wait()
            raise _start_failure(qemu, stderr_path, runtime)
        console = runtime / f"console-{number}.log"
        return watch.run(qemu, qmp, console, deadline - time.monotonic(), cancel, started - first_start)


def _start_failure(qemu: subprocess.Popen[bytes], stderr_path: Path, runtime: Path) -> ShieldwrightError:
    """QEMU died before it ran a guest: its last stderr line (and swtpm's) as the error."""
    said = stderr_path.read_bytes().decode(errors="replace") if stderr_path.exists() else ""
    last = (said.strip().splitlines() or [f"exit status {qemu.returncode}"])[-1]
    swtpm_err = runtime / "swtpm.stderr"
    tpm_said = swtpm_err.read_text(errors="replace").strip() if swtpm_err.exists() else ""
    hint = f"swtpm said: {tpm_said.splitlines()[-1]}" if tpm_said else "check the QEMU and swtpm installation"
    return ShieldwrightError(f"qemu-system-x86_64 failed: {last}", hint)


def _stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Let a process that should be exiting (swtpm after QEMU's shutdown) finish; kill it after ``grace``
    (at once with 0: swtpm writes its permanent state as it changes, so a kill loses nothing)."""
    if grace > 0:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _combine(runs: Sequence[BootRun], qemu_stderr: str) -> BootResult:
    """One :class:`BootResult` from the runs of a call: consoles joined by reset lines, times merged."""
    parts: list[str] = []
    seen: dict[str, float] = {}
    for number, run in enumerate(runs):
        if number:
            if parts and not parts[-1].endswith("\n"):
                parts.append("\n")
            parts.append(reset_line(number) + "\n")
        parts.append(run.console)
        for marker, at in run.seen.items():
            seen.setdefault(marker, round(run.started + at, 1))
    last = runs[-1]
    elapsed = round(last.started + last.elapsed, 1)
    return BootResult(
        "".join(parts), last.ended, elapsed, last.stopped_by, seen, qemu_stderr, tuple(runs), last.exit_reason
    )


class _Qmp:
    """The client end of QEMU's QMP monitor on a socketpair: negotiate, resume the guest, collect events.

    QMP sends no events before ``qmp_capabilities``; QEMU is started with ``-S`` and resumed with ``cont``
    only after the negotiation, so every event of the run is seen. Events QEMU wrote before it exited are
    still in the socket afterwards, so the ``SHUTDOWN`` reason is never lost to a race.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.events: list[dict[str, object]] = []
        self.closed = False

    def start(self, timeout: float) -> bool:
        """Negotiate and resume the guest; False when QEMU closed the monitor (it failed to start)."""
        self.sock.settimeout(timeout)
        try:
            if self._next(lambda m: "QMP" in m) is None:
                return False
            for command in ("qmp_capabilities", "cont"):
                self.sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
                if self._next(lambda m: "return" in m or "error" in m) is None:
                    return False
        except (TimeoutError, OSError):
            return False
        self.sock.setblocking(False)
        return True

    def _next(self, wanted: Callable[[dict[str, object]], bool]) -> dict[str, object] | None:
        """Read messages (blocking) until one matches ``wanted``; events on the way are kept."""
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                message = self._parse(line)
                if message is not None and wanted(message):
                    return message
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                return None
            self.buffer += data

    def _parse(self, line: bytes) -> dict[str, object] | None:
        try:
            message = json.loads(line)
        except ValueError:
            return None
        if not isinstance(message, dict):
            return None
        if "event" in message:
            self.events.append(message)
        return message

    def poll(self) -> None:
        """Take in whatever QEMU has sent, without blocking."""
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self._parse(line)

    @property
    def shutdown_reason(self) -> str | None:
        """The ``reason`` of the last ``SHUTDOWN`` event (``guest-reset``, ``guest-shutdown``, ...)."""
        for event in reversed(self.events):
            data = event.get("data")
            if event.get("event") == "SHUTDOWN" and isinstance(data, dict):
                reason = data.get("reason")
                return reason if isinstance(reason, str) else None
        return None


def start_swtpm(
    state: Path, runtime: Path, pcr_banks: Sequence[str], cancel: CancelToken
) -> tuple[subprocess.Popen[bytes], Path]:
    """Manufacture the vTPM in ``state`` if it is new, then start swtpm on a control socket we bound.

    Returns the process and the control socket's path (``runtime/swtpm.sock``); its command log is
    ``runtime/swtpm.log``. The caller stops the process.

    swtpm wants absolute paths, and a unix socket path must stay under 108 bytes (hence a short runtime
    directory under the system temp directory). ``swtpm_setup --config /dev/null`` skips EK certificates
    and never reads the user's configuration.
    Binding and listening here and handing swtpm the descriptor (``--ctrl type=unixio,fd=N``, as mkosi
    does) means the socket accepts connections before QEMU starts: no polling for the socket file, no race
    between swtpm's bind and listen.
    """
    swtpm_bin = require_tool("swtpm")
    path = runtime / "swtpm.sock"
    if len(str(path)) > _MAX_SOCKET_PATH:
        raise ShieldwrightError(
            f"the swtpm socket path {path} is too long for a unix socket", "set TMPDIR to a short directory"
        )
    path.unlink(missing_ok=True)  # the previous run's swtpm bound it
    state.mkdir(parents=True, exist_ok=True)
    if not any(state.glob("tpm2-*.permall")):
        run_tool(
            "swtpm_setup", "--tpm2", "--tpm-state", state, "--pcr-banks", ",".join(pcr_banks),
            "--config", os.devnull, cancel=cancel, hint="check the swtpm installation (package swtpm-tools)",
        )  # fmt: skip
    cancel.check()
    log = runtime / "swtpm.log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        fd = listener.fileno()
        # stdout/stderr to a file, not a pipe nobody drains while the guest runs.
        with open(runtime / "swtpm.stderr", "wb") as stderr:
            proc = subprocess.Popen(
                [swtpm_bin, "socket", "--tpm2", "--tpmstate", f"dir={state}",
                 "--ctrl", f"type=unixio,fd={fd}", "--log", f"file={log},level=20"],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, pass_fds=(fd,),
            )  # fmt: skip
    return proc, path


class _ConsoleFeed:
    """Hands the console to an ``on_console`` callback in whole lines, across runs."""

    def __init__(self, sink: ConsoleSink | None) -> None:
        self.sink = sink
        self.pending = ""  # the current run's last line, not yet ended
        self.ended = True  # what was handed over last ended a line

    def feed(self, new: str, *, final: bool = False) -> None:
        """Take the text the console grew by; at a run's end (``final``) its last line is ended."""
        if self.sink is None:
            return
        text = self.pending + new
        cut = len(text) if final else text.rfind("\n") + 1
        if len(text) - cut > _CONSOLE_LINE_CHARS:  # a "line" that never ends is handed over as it grows
            cut = len(text)
        if cut:
            self.sink(text[:cut])
            self.ended = text[cut - 1] == "\n"
        self.pending = text[cut:]
        if final:
            if not self.ended:
                self.sink("\n")
            self.ended = True

    def line(self, text: str) -> None:
        if self.sink is not None:
            self.sink(text + "\n")


class _Watch:
    """What ends one QEMU run besides QEMU exiting: stop texts on the console, a PCR extend, a timeout."""

    def __init__(
        self, stop_on: Sequence[str], stop_on_extend: ExtendStop | None, tpm_log: Path | None,
        console: _ConsoleFeed,
    ) -> None:  # fmt: skip
        self.stop_on = stop_on
        self.stop_on_extend = stop_on_extend
        self.tail = CommandLogTail(tpm_log) if stop_on_extend is not None and tpm_log is not None else None
        self.console = console

    def extend_stop(self) -> str | None:
        if self.tail is None or self.stop_on_extend is None:
            return None
        for pcr, digests in self.tail.new_extends():
            why = self.stop_on_extend(pcr, digests)
            if why is not None:
                return why
        return None

    def run(
        self,
        qemu: subprocess.Popen[bytes],
        qmp: _Qmp,
        console_path: Path,
        timeout: float,
        cancel: CancelToken,
        started: float = 0.0,
    ) -> BootRun:
        """Tail the console until QEMU exits, a stop text or extend appears, the firmware gives up, or time
        runs out."""
        start = time.monotonic()
        stop_on = self.stop_on
        watched = [*stop_on, FIRMWARE_NO_BOOT_OPTION, FIRMWARE_STARTING_IMAGE, KERNEL_BANNER]
        overlap = max(map(len, watched)) - 1  # a marker may straddle two looks
        seen: dict[str, float] = {}
        kept, decoder = BoundedConsole(), ConsoleDecoder()
        read, recent = 0, ""

        def take(text: str) -> None:
            nonlocal recent
            kept.append(text)
            self.console.feed(text)
            now = round(time.monotonic() - start, 1)
            window = recent + text
            for marker in watched:
                if marker not in seen and marker in window:
                    seen[marker] = now
            recent = window[-overlap:]

        ended, stopped_by = "timeout", None
        while True:
            exited = qemu.poll() is not None  # read the console *after* this, so nothing printed is missed
            extend_hit = self.extend_stop()
            if extend_hit is not None and qemu.poll() is None:
                qemu.kill()  # at once: the guest must not run on past the measurement
            if console_path.exists():
                with open(console_path, "rb") as f:
                    f.seek(read)
                    while chunk := f.read(_CONSOLE_READ):
                        read += len(chunk)
                        take(decoder.feed(chunk))
            if exited:  # the console is complete: nothing held back waits for more
                take(decoder.feed(b"", final=True))
            now = time.monotonic() - start
            hit = next((m for m in stop_on if m in seen), None)
            if extend_hit is not None:
                seen.setdefault(extend_hit, round(now, 1))
                ended, stopped_by = "stop", extend_hit
            elif hit is not None:  # before `exited`: a guest may print its stop text and power off at once
                ended, stopped_by = "stop", hit
            elif exited:
                ended = "exited"
            elif FIRMWARE_NO_BOOT_OPTION in seen:
                ended = "no-boot-option"
            elif now > timeout:
                ended = "timeout"
            elif cancel.cancelled:
                qemu.kill()
                cancel.check()
            else:
                qmp.poll()
                time.sleep(0.1)
                continue
            break
        if qemu.poll() is None:
            qemu.kill()
        qemu.wait()
        take(decoder.feed(b"", final=True))
        self.console.feed("", final=True)
        qmp.poll()  # what QEMU said before it exited is still in the socket
        reason = qmp.shutdown_reason if exited else None
        elapsed = round(time.monotonic() - start, 1)
        return BootRun(round(started, 1), elapsed, ended, reason, stopped_by, seen, kept.text())
