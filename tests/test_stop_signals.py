"""Issue 17 item 9: SIGTERM and SIGHUP stop a command the way Ctrl-C does, leaving nothing behind.

A real ``shieldwright build`` process on a qcow2 base (so plaintext copies of partitions are made in
``$TMPDIR`` for debugfs) gets the signal mid-build; the exit code, the last stderr line, the output folder
and a private ``$TMPDIR`` are then looked at. Any other command is covered in-process: a handler that gets
SIGTERM unwinds through its ``finally`` blocks and the CLI exits 143.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import cli
from app.commands import disk as disk_commands
from tests.build_helpers import PASSPHRASE, BuildKeys, make_keys
from tests.conftest import require_tool, run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> BuildKeys:
    return make_keys(tmp_path_factory.mktemp("issue17-signal-keys"))


@pytest.fixture(scope="module")
def qcow2_base(demo_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("qemu-img")
    path = tmp_path_factory.mktemp("issue17-qcow2") / "base.qcow2"
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", demo_image, path)
    return path


@pytest.fixture(scope="module")
def passfile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("issue17-signal-pass") / "p.pass"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


def _interrupt_build(base: Path, keys: BuildKeys, passfile: Path, tmp_path: Path, sig: int, step: str):
    """Start a build, send ``sig`` once stderr shows ``step`` (at step 2, once a partition copy exists in
    $TMPDIR); return (process, stderr, output folder, $TMPDIR)."""
    out, tmpdir = tmp_path / "out", tmp_path / "tmpdir"
    out.mkdir()
    tmpdir.mkdir()
    argv = [sys.executable, "-m", "app", "build", "--base", str(base), "-o", str(out / "t.raw"),
            "--name", "Signals", "--protect", "3", "--uefi-cert", str(keys.uefi_cert),
            "--uefi-key", str(keys.uefi_key), "--key-passphrase-file", str(keys.passphrase_file),
            "--passphrase-file", str(passfile), "--kdf", "pbkdf2", "--iter-time", "1"]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(step):
            break
        assert time.monotonic() < deadline, "".join(seen)
    if step.startswith("Step 2/"):  # wait (a little) for a plaintext partition copy to exist
        until = time.monotonic() + 10
        while not any(tmpdir.iterdir()) and time.monotonic() < until:
            time.sleep(0.005)
    proc.send_signal(sig)
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    return proc, "".join(seen) + rest, out, tmpdir


@pytest.mark.parametrize(
    ("sig", "step"),
    [(signal.SIGTERM, "Step 2/9"), (signal.SIGTERM, "Step 5/9"), (signal.SIGHUP, "Step 5/9")],
    ids=["SIGTERM-uki", "SIGTERM-write", "SIGHUP-write"],
)
def test_a_stop_signal_cancels_the_build_and_leaves_nothing(
    qcow2_base: Path, keys: BuildKeys, passfile: Path, tmp_path: Path, sig: int, step: str
) -> None:
    """Regression (issue 17 item 9): failed on ecab7db because SIGTERM and SIGHUP kept their default action:
    the process died on the spot (returncode -15 / -1) and left the hidden staging directory in the output
    folder and, with a qcow2 base, plaintext partition copies in $TMPDIR."""
    proc, err, out, tmpdir = _interrupt_build(qcow2_base, keys, passfile, tmp_path, sig, step)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "shieldwright: error: Cancelled (nothing was written; the base image is unchanged)"
    )
    assert list(out.iterdir()) == []  # no template, no hidden staging directory
    assert list(tmpdir.iterdir()) == []  # no plaintext partition copy, no temporary file
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_sigterm_in_any_command_unwinds_and_exits_143(monkeypatch, capsys, tmp_path: Path) -> None:
    """Regression (issue 17 item 9): failed on ecab7db because SIGTERM killed any command outright: its
    ``finally`` blocks (which delete temporary files) never ran."""
    temp = tmp_path / "partial.tmp"

    def long_command(args):
        temp.write_bytes(b"plaintext")
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes: we never get far
                time.sleep(0.01)
            return 0
        finally:
            temp.unlink()

    monkeypatch.setattr(disk_commands, "cmd_inspect", long_command)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["inspect", "x.img"]) == 143
    assert capsys.readouterr().err == "shieldwright: cancelled (SIGTERM)\n"
    assert not temp.exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the CLI's handler was removed again


def test_an_ignored_sighup_stays_ignored(monkeypatch, capsys) -> None:
    """Under ``nohup`` SIGHUP is ignored on purpose: the CLI must not turn it back on."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:

        def command(args):
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
            return 0

        monkeypatch.setattr(disk_commands, "cmd_inspect", command)
        assert cli.main(["inspect", "x.img"]) == 0
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
