"""The VM runner (:mod:`app.boot.vm`) and the probe harness, without a full boot: parsing, ESP, cleanup."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app import tools as app_tools
from app.boot import vm
from app.boot.uki import UkiInputs, build_uki
from app.errors import CancelledError, ShieldwrightError
from app.progress import CancelToken
from app.signing.keys import load_signer
from tests.boot import qemu_harness as harness
from tests.boot.uki_helpers import kernel
from tests.conftest import MiB, require_tool, run

#: What OVMF (Debian 12, Secure Boot build) really printed on the serial console for an unsigned UKI.
REFUSED_CONSOLE = (
    b"\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01H"
    b'BdsDxe: loading Boot0001 "UEFI Non-Block Boot Device" from PciRoot(0x0)/Pci(0x1,0x0)\r\n'
    b'BdsDxe: failed to load Boot0001 "UEFI Non-Block Boot Device" from PciRoot(0x0)/Pci(0x1,0x0): '
    b"Access Denied\r\n"
    b'BdsDxe: loading Boot0002 "EFI Internal Shell" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)'
    b"/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1)\r\n"
    b'BdsDxe: failed to start Boot0002 "EFI Internal Shell" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)'
    b"/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1): Security Violation\r\n"
    b"BdsDxe: No bootable option or device was found.\r\n"
    b"BdsDxe: Press any key to enter the Boot Manager Menu.\r\n"
)
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def test_console_text_drops_escapes_and_carriage_returns() -> None:
    text = vm.console_text(REFUSED_CONSOLE)
    assert "\x1b" not in text and "\r" not in text
    assert text.startswith('BdsDxe: loading Boot0001 "UEFI Non-Block Boot Device"')
    assert vm.FIRMWARE_NO_BOOT_OPTION in text.splitlines()


def test_console_text_drops_systemds_soft_reset_and_palette_reset() -> None:
    """What systemd printed before the trixie guest's root marker (DECSTR ``ESC [ ! p``, OSC 104)."""
    raw = b"[   32.43] journald: SIGTERM\r\n\x1b[!p\x1b]104\x07\x1b[?7hMARKER from /dev/mapper/root\r\n"
    assert vm.console_text(raw).splitlines()[-1] == "MARKER from /dev/mapper/root"


class _ExitedQemu:
    """A QEMU that has already exited by itself (the guest powered off)."""

    returncode = 0

    def poll(self) -> int:
        return 0

    def kill(self) -> None:
        raise AssertionError("an exited QEMU is not killed")

    def wait(self) -> int:
        return 0


class _PoweredOffQmp:
    shutdown_reason = "guest-shutdown"

    def poll(self) -> None:
        return None


def test_a_stop_text_printed_just_before_power_off_still_counts(tmp_path: Path) -> None:
    """The guest echoes its marker and powers off within one 0.1 s look: the run stopped by the text
    (seen by CI: the marker was on the console yet ``stopped_by`` was None)."""
    console = tmp_path / "console-0.log"
    console.write_bytes(b"booting\r\nROOT from /dev/mapper/root\r\nreboot: Power down\r\n")
    watch = vm._Watch(
        ["ROOT from /dev/mapper/root", "Please enter passphrase"], None, None, vm._ConsoleFeed(None)
    )
    run = watch.run(_ExitedQemu(), _PoweredOffQmp(), console, 5.0, CancelToken())  # type: ignore[arg-type]
    assert (run.ended, run.stopped_by, run.exit_reason) == (
        "stop",
        "ROOT from /dev/mapper/root",
        "guest-shutdown",
    )
    console.write_bytes(b"booting\r\nreboot: Power down\r\n")
    run = watch.run(_ExitedQemu(), _PoweredOffQmp(), console, 5.0, CancelToken())  # type: ignore[arg-type]
    assert (run.ended, run.stopped_by, run.exit_reason) == ("exited", None, "guest-shutdown")


#: Bytes a serial console mixes: text, CR/LF, escape sequences' parts, a two-byte and a three-byte character.
_CONSOLE_BYTES = st.lists(
    st.sampled_from([b"a", b"Z", b" ", b"\r", b"\n", b"\x1b", b"[", b"]", b"0", b";", b"!", b"p", b"m", b"(",
                     b"B", b"=", b"\x07", b"\\", b"\xc3\xa9", b"\xe2\x80\xa6", b"\xff"]),
    max_size=120,
).map(b"".join)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(raw=_CONSOLE_BYTES, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8))
@example(raw=b"a\x1b]104\x1b\\b", cuts=[7])  # an OSC string cut between its terminator's two bytes
@example(raw=b"a\x1b]0;t\x1b[0mb\x07c", cuts=[9])  # an OSC string that looks as if a CSI ends it
@example(raw=b"a\xe2\x80\xa6\r\nb", cuts=[2, 5])  # a character, then a CRLF, each cut
def test_a_console_read_in_pieces_reads_as_the_whole(raw: bytes, cuts: list[int]) -> None:
    """Wherever the 0.1 s looks cut the serial bytes (inside a UTF-8 character, between CR and LF, inside
    an escape sequence), the text is that of the whole."""
    decoder = vm.ConsoleDecoder()
    points = sorted({min(c, len(raw)) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    text = "".join(decoder.feed(piece) for piece in pieces) + decoder.feed(b"", final=True)
    assert text == vm.console_text(raw)


FLOOD = 48 * MiB


def test_a_flooded_console_keeps_its_start_and_end_in_bounded_memory(tmp_path: Path) -> None:
    """A guest that prints 48 MiB (a loop on its serial port) costs what the run keeps, not the flood: the
    run keeps the start and the end, says how much it dropped, still sees a stop text cut by a read, and
    hands every character to the live view."""
    console = tmp_path / "console-0.log"
    line = b"\x1b[0;31mflood\x1b[0m " + b"x" * 100 + b"\r\n"
    marker = b"ROOT from /dev/mapper/root"
    with open(console, "wb") as f:
        f.write(b"BdsDxe: starting Boot0001\r\n")
        for _ in range(FLOOD // len(line)):
            f.write(line)
        f.seek(3 * MiB - 10)  # the marker straddles the end of the third 1 MiB read
        f.write(marker)
        f.seek(0, os.SEEK_END)
        f.write(b"last line\r\n")
    handed: list[int] = []
    watch = vm._Watch([marker.decode()], None, None, vm._ConsoleFeed(lambda text: handed.append(len(text))))
    tracemalloc.start()
    try:
        run = watch.run(_ExitedQemu(), _PoweredOffQmp(), console, 5.0, CancelToken())  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (run.ended, run.stopped_by) == ("stop", marker.decode())
    assert vm.FIRMWARE_STARTING_IMAGE in run.seen
    whole = vm.console_text(console.read_bytes())
    head, tail = vm.CONSOLE_HEAD_CHARS, vm.CONSOLE_TAIL_CHARS
    gap = f"\n[… {len(whole) - head - tail} characters of console output not kept …]\n"
    assert run.console == whole[:head] + gap + whole[-tail:]
    assert run.console.startswith("BdsDxe: starting Boot0001\nflood xxx")
    assert run.console.endswith("xxx\nlast line\n")
    assert sum(handed) == len(whole)
    # What is kept, one 1 MiB read and its copies: 34 MiB whether the flood is 24, 48 or 96 MiB. Reading the
    # whole console at each look, as before, peaked at 236 MiB for these 48.
    assert peak < FLOOD, f"{peak / MiB:.0f} MiB"


def test_text_after_a_stray_escape_is_not_held_back() -> None:
    """Only what more bytes could still turn into an escape sequence waits: a stop text printed after a
    stray ESC is seen at once, not when the guest prints again (it may not)."""
    decoder = vm.ConsoleDecoder()
    assert decoder.feed(b"\x1bROOT from /dev/mapper/root\r") == "\x1bROOT from /dev/mapper/root"
    assert decoder.feed(b"\nok \x1b[0") == "\nok "  # a CSI still open waits for its end...
    assert decoder.feed(b"1;32mgreen\x1b") == "green"  # ...and so does a lone ESC at the end
    assert decoder.feed(b"", final=True) == "\x1b"


def test_a_console_line_that_never_ends_reaches_the_live_view_in_pieces() -> None:
    handed: list[str] = []
    feed = vm._ConsoleFeed(handed.append)
    feed.feed("a" * 40_000)
    assert handed == []  # a line still being printed waits for its end...
    feed.feed("b" * 40_000)
    assert [len(t) for t in handed] == [80_000]  # ...unless it grows past the bound
    feed.feed("c\nd")
    feed.feed("", final=True)
    assert handed[1:] == ["c\n", "d", "\n"]


def test_refusal_is_recognised_and_the_shell_alone_does_not_count() -> None:
    refused = vm.BootResult(vm.console_text(REFUSED_CONSOLE), "no-boot-option", 6.4)
    assert refused.secure_boot_refused
    assert [r.split('"')[1] for r in refused.refusals] == ["UEFI Non-Block Boot Device", "EFI Internal Shell"]
    shell_only = "\n".join(line for line in refused.console.splitlines() if "Access Denied" not in line)
    assert not vm.BootResult(shell_only, "no-boot-option", 6.4).secure_boot_refused
    assert vm.BootResult("BdsDxe: starting Boot0001\nLinux version 6.1\n", "exited", 9.0).refusals == []


def test_guest_pcrs_parses_every_bank() -> None:
    console = (
        "SHIELDWRIGHT-BOOT-OK\nPCR11=AB12\nPCR4.sha1=00FF\nPCR11.sha1=0A0B\n"
        "PCR11.sha256=AB12\n[    2.1] reboot: Power down\nPCR7.sha256=C0DE  \n"
    )
    assert harness.guest_pcrs(console) == {"sha1": {4: "00ff", 11: "0a0b"}, "sha256": {11: "ab12", 7: "c0de"}}


def _probe_console(log: bytes, *, digest: str | None = None) -> str:
    """A console as the probe prints it: base64 at 76 a line, the sha256, and kernel noise around."""
    b64 = base64.b64encode(log).decode()
    lines = [b64[i : i + 76] for i in range(0, len(b64), 76)]
    return "\n".join(
        [
            "[    1.20] tpm_tis MSFT0101:00: 2.0 TPM (device-id 0x1, rev-id 1)",
            harness.BOOT_MARKER,
            harness.EVENTLOG_BEGIN,
            *lines,
            harness.EVENTLOG_END,
            f"{harness.EVENTLOG_SHA256}{digest or hashlib.sha256(log).hexdigest()}",
            "PCR11=AB",
            harness.DONE_MARKER,
        ]
    )


def test_guest_event_log_round_trips_and_refuses_damage() -> None:
    log = os.urandom(5000)
    assert harness.guest_event_log(_probe_console(log)) == log
    with pytest.raises(ValueError, match="no event log"):
        harness.guest_event_log("SHIELDWRIGHT-BOOT-OK\nPCR11=AB\n")
    with pytest.raises(ValueError, match="sha256"):
        harness.guest_event_log(_probe_console(log, digest="0" * 64))
    # A kernel line printed into the middle of the base64 is caught, not decoded into a wrong log.
    lines = _probe_console(log).splitlines()
    lines.insert(10, "[    2.00] random: crng init done")
    with pytest.raises(ValueError):
        harness.guest_event_log("\n".join(lines))
    with pytest.raises(ValueError, match="had no event log"):
        harness.guest_event_log(f"{harness.EVENTLOG_BEGIN}\n{harness.EVENTLOG_END}\n")


def test_saved_captures_match_their_pcrs(tmp_path: Path) -> None:
    log = os.urandom(300)
    console = _probe_console(log) + "\nPCR4.sha256=AB\nPCR11.sha1=CD\nPCR0.sha256=EF\n"
    bin_path, json_path = harness.save_capture("x", console, tmp_path)
    assert bin_path.read_bytes() == log
    assert json.loads(json_path.read_text()) == {"sha1": {"11": "cd"}, "sha256": {"0": "ef", "4": "ab"}}


def test_probe_initrd_holds_busybox_and_a_parsable_init(tmp_path: Path) -> None:
    require_tool("cpio")

    raw = gzip.decompress(harness.build_probe_initrd())
    names = subprocess.run(
        ["cpio", "-t", "--quiet"], input=raw, capture_output=True, check=True
    ).stdout.split()
    assert {b"init", b"bin/busybox", b"bin/sh", b"bin/poweroff", b"dev/console", b"bin/base64"} <= set(names)
    init = tmp_path / "init"
    init.write_text(harness.probe_init())
    subprocess.run([harness.BUSYBOX, "sh", "-n", init], check=True)  # the shell that will run it parses it
    text = harness.probe_init()
    assert harness.BOOT_MARKER in text and harness.DONE_MARKER in text and "poweroff -f" in text
    assert "/sys/class/tpm/tpm0/pcr-sha256/11" in text
    assert "mount -t securityfs securityfs /sys/kernel/security" in text
    assert text.index(harness.EVENTLOG_END) < text.index("PCR11=")  # the log comes before the PCRs
    assert 'base64 "$log"' in text and "binary_bios_measurements" in text


def test_esp_image_is_clean_fat_with_the_file(tmp_path: Path) -> None:
    require_tool("fsck.fat")
    payload = os.urandom(300_000)
    esp = harness.esp_with_uki(tmp_path / "esp.img", payload)
    run("fsck.fat", "-n", esp)
    out = tmp_path / "back.efi"
    subprocess.run(["mcopy", "-i", esp, "::/EFI/BOOT/BOOTX64.EFI", out], env=MTOOLS_ENV, check=True)
    assert out.read_bytes() == payload
    assert esp.stat().st_size % (1024 * 1024) == 0 and esp.stat().st_size >= len(payload)


def test_missing_disk_and_missing_firmware_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ShieldwrightError, match="does not exist"):
        vm.boot(tmp_path / "nope.img")
    broken = vm.Firmware(tmp_path / "CODE.fd", tmp_path / "VARS.fd", True, "missing")
    (tmp_path / "disk.img").write_bytes(bytes(512))
    with pytest.raises(ShieldwrightError, match="CODE.fd is not installed") as info:
        vm.boot(tmp_path / "disk.img", firmware=broken)
    assert "package ovmf" in info.value.hint


def _children(names: tuple[str, ...]) -> list[str]:
    """Live (non-zombie) child processes of this test process with one of ``names``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == os.getpid() and state != "Z" and comm.startswith(names):
            found.append(comm)
    return found


@pytest.fixture
def private_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point tempfile at an empty directory so a leftover runtime directory would show."""
    d = tmp_path / "t"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.mark.slow
@pytest.mark.vm
def test_timeout_ends_the_run_and_leaves_nothing_behind(tmp_path: Path, private_tmpdir: Path) -> None:
    """A guest that has not finished when the time is up is cut off; nothing is left running or on disk."""
    disk = tmp_path / "blank.img"
    disk.write_bytes(bytes(1024 * 1024))
    result = vm.boot(disk, timeout=3, stop_on=("never printed",))
    assert result.ended in ("timeout", "no-boot-option")
    assert result.elapsed < 30
    assert list(private_tmpdir.iterdir()) == []
    assert _children(("qemu-system", "swtpm")) == []


@pytest.mark.slow
@pytest.mark.vm
def test_cancel_kills_qemu_and_swtpm(tmp_path: Path, private_tmpdir: Path) -> None:
    disk = tmp_path / "blank.img"
    disk.write_bytes(bytes(1024 * 1024))
    token = CancelToken()
    timer = threading.Timer(2.0, token.cancel)  # pressed while QEMU runs the firmware
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(CancelledError):
            vm.boot(disk, timeout=60, stop_on=("never printed",), cancel=token)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 10
    assert list(private_tmpdir.iterdir()) == []
    assert _children(("qemu-system", "swtpm")) == []


# --- resets and a persistent variable store, without a guest: a stand-in QEMU ---------------------------

#: Speaks just enough QMP; each "boot" appends a line to the variable store (unit=1 pflash) and prints
#: the number of earlier boots it found there, then resets while fewer than $FAKE_RESETS boots came before.
FAKE_QEMU = r"""#!@PYTHON@
import json, os, socket, sys

argv = sys.argv[1:]
if os.environ.get("FAKE_QEMU_FAIL"):
    print("qemu-system-x86_64: -drive if=pflash: Could not open 'nope': No such file", file=sys.stderr)
    sys.exit(1)
opts = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-chardev", "-drive", "-serial")]
fd = int(next(o for o in opts if o.startswith("socket,id=qmp,")).split("fd=")[1])
vars_path = next(o for o in opts if "unit=1" in o).split("file=")[1]
console = next(o for o in opts if o.startswith("file:"))[5:]
qmp = socket.socket(fileno=fd).makefile("rwb")
def send(message):
    qmp.write(json.dumps(message).encode() + b"\r\n")
    qmp.flush()
send({"QMP": {"version": {}, "capabilities": []}})
for _ in range(2):
    json.loads(qmp.readline())
    send({"return": {}})
with open(vars_path, "rb") as f:
    earlier = f.read().count(b"BOOTED\n")
with open(vars_path, "ab") as f:
    f.write(b"BOOTED\n")
with open(console, "w") as f:
    f.write(f"fake boot after {earlier} boots")
reason = "guest-reset" if earlier < int(os.environ.get("FAKE_RESETS", "0")) else "guest-shutdown"
send({"event": "SHUTDOWN", "data": {"guest": True, "reason": reason}})
"""


@pytest.fixture
def fake_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> vm.Firmware:
    """Put the stand-in QEMU in place of qemu-system-x86_64; return a firmware whose files exist."""
    script = tmp_path / "fake-qemu"
    script.write_text(FAKE_QEMU.replace("@PYTHON@", sys.executable))
    script.chmod(0o755)
    real = app_tools.require_tool
    monkeypatch.setattr(
        "app.boot.vm.require_tool", lambda n: str(script) if n == "qemu-system-x86_64" else real(n)
    )
    (tmp_path / "CODE.fd").write_bytes(b"code")
    (tmp_path / "VARS.fd").write_bytes(b"template\n")
    (tmp_path / "disk.img").write_bytes(bytes(512))
    return vm.Firmware(tmp_path / "CODE.fd", tmp_path / "VARS.fd", True, "fake")


def test_resets_boot_again_with_the_callers_variable_store(
    tmp_path: Path, fake_qemu: vm.Firmware, monkeypatch: pytest.MonkeyPatch, private_tmpdir: Path
) -> None:
    monkeypatch.setenv("FAKE_RESETS", "2")
    store = tmp_path / "store.fd"
    store.write_bytes(b"mine\n")
    result = vm.boot(tmp_path / "disk.img", firmware=fake_qemu, tpm=False, vars_file=store, resets=5)
    assert [r.exit_reason for r in result.runs] == ["guest-reset", "guest-reset", "guest-shutdown"]
    assert result.resets == 2 and result.ended == "exited" and result.exit_reason == "guest-shutdown"
    # Written in place, never copied: the caller's file holds every boot's write, the template none.
    assert store.read_bytes() == b"mine\n" + b"BOOTED\n" * 3
    assert (tmp_path / "VARS.fd").read_bytes() == b"template\n"
    assert result.console == (
        "fake boot after 0 boots\n--- reset 1 ---\nfake boot after 1 boots\n--- reset 2 ---\n"
        "fake boot after 2 boots"
    )
    assert [r.console for r in result.runs] == [f"fake boot after {n} boots" for n in range(3)]
    starts = [r.started for r in result.runs]
    assert starts[0] == 0.0 and starts == sorted(starts)
    assert result.elapsed >= result.runs[-1].started
    assert list(private_tmpdir.iterdir()) == []


def test_without_resets_a_reset_ends_the_boot_as_before(
    tmp_path: Path, fake_qemu: vm.Firmware, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_RESETS", "9")
    result = vm.boot(tmp_path / "disk.img", firmware=fake_qemu, tpm=False)
    assert result.ended == "exited" and result.exit_reason == "guest-reset"
    assert len(result.runs) == 1 and result.resets == 0
    assert "--- reset" not in result.console
    assert (tmp_path / "VARS.fd").read_bytes() == b"template\n"  # the call's own copy took the write


def test_the_reset_budget_is_a_limit_and_the_store_copy_lives_across_resets(
    tmp_path: Path, fake_qemu: vm.Firmware, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_RESETS", "9")
    result = vm.boot(tmp_path / "disk.img", firmware=fake_qemu, tpm=False, resets=1)
    assert [r.exit_reason for r in result.runs] == ["guest-reset", "guest-reset"]
    assert result.runs[1].console == "fake boot after 1 boots"  # the copied store survived the reset
    assert (tmp_path / "VARS.fd").read_bytes() == b"template\n"


def test_a_bad_variable_store_or_a_failing_qemu_is_a_clear_error(
    tmp_path: Path, fake_qemu: vm.Firmware, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = tmp_path / "disk.img"
    with pytest.raises(ShieldwrightError, match="nope.fd does not exist"):
        vm.boot(disk, firmware=fake_qemu, tpm=False, vars_file=tmp_path / "nope.fd")
    with pytest.raises(ValueError):
        vm.boot(disk, firmware=fake_qemu, tpm=False, resets=-1)
    monkeypatch.setenv("FAKE_QEMU_FAIL", "1")
    with pytest.raises(ShieldwrightError, match="Could not open 'nope'"):
        vm.boot(disk, firmware=fake_qemu, tpm=False)


@pytest.mark.slow
@pytest.mark.vm
def test_a_real_guest_reset_boots_again_on_a_reset_vtpm(tmp_path: Path) -> None:
    """A probe that ends in ``reboot -f``, booted with ``resets=1``: two boots, each measured from scratch
    (the vTPM's PCRs were reset, so both read the same values), the firmware's writes kept in the store."""
    signer = load_signer(vm.SNAKEOIL_CERT, vm.SNAKEOIL_KEY, passphrase=vm.SNAKEOIL_PASSPHRASE)
    inputs = UkiInputs(
        linux=kernel(),
        initrds=[harness.build_probe_initrd(end="reboot")],
        cmdline=harness.PROBE_CMDLINE,
        os_release="ID=shieldwright-probe\n",
    )
    esp = harness.esp_with_uki(tmp_path / "esp.img", build_uki(inputs, signer=signer))
    store = tmp_path / "vars.fd"
    store.write_bytes(vm.Firmware.snakeoil().vars_template.read_bytes())
    before = store.read_bytes()
    result = vm.boot(esp, pcr_banks=("sha1", "sha256"), vars_file=store, resets=1, timeout=240)
    where = f"ended={result.ended} runs={result.runs!r:.600}\n{result.tail()}"
    assert [r.exit_reason for r in result.runs] == ["guest-reset", "guest-reset"], where
    first, second = (harness.guest_pcrs(r.console) for r in result.runs)
    assert harness.DONE_MARKER in result.runs[1].console and first["sha256"][11], where
    assert first == second, where
    # The same events, not the same bytes: the UKI's load address (ImageLocationInMemory) moves between boots.
    logs = [harness.guest_event_log(r.console) for r in result.runs]
    assert len(logs[0]) == len(logs[1])
    assert result.console.count(vm.reset_line(1)) == 1
    assert vm.KERNEL_BANNER in result.runs[1].seen and result.runs[1].started >= result.runs[0].elapsed
    assert store.read_bytes() != before  # OVMF wrote its boot options into the caller's store
