"""Issue 17 item 10 (the CLI boundary): no exception escapes ``shieldwright`` as a traceback.

Whatever a command raises that no engine code translated - RecursionError, MemoryError, ValueError,
OverflowError, a Rust panic from ``cryptography``'s KDF (pyo3's PanicException, a BaseException), or a plain
bug - the user sees one line ``shieldwright: error: MESSAGE (HINT)`` whose hint names the log file, and the
traceback is in that log file only. The panic is a real one, not a stand-in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli
from app.commands import disk as disk_commands

ROOT = Path(__file__).resolve().parents[1]


def _real_kdf_panic() -> None:
    """cryptography's PBKDF2 panics (in Rust) on an iteration count beyond u32, as a foreign LUKS2 header
    can ask for."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    PBKDF2HMAC(hashes.SHA256(), 32, b"salt", 2**40).derive(b"passphrase")


def _recurse(n: int = 0) -> int:
    return _recurse(n + 1) + 1


def _raise(exc: BaseException):
    def command(args):
        raise exc

    return command


CASES = {
    "RecursionError": (lambda args: _recurse(), 2, "nested too deeply"),
    "MemoryError": (_raise(MemoryError()), 2, "not enough memory"),
    "ValueError": (_raise(ValueError("invalid literal for int() with base 10: '\\x1b[2J'")), 2, "ValueError"),
    "OverflowError": (
        _raise(OverflowError("cannot fit 'int' into an index-sized integer")),
        2,
        "OverflowError",
    ),
    "PanicException": (lambda args: _real_kdf_panic(), 2, "cryptographic library"),
    "TypeError (a bug)": (_raise(TypeError("unsupported operand")), 70, "internal error (TypeError)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unexpected_exceptions_become_one_line_and_a_logged_traceback(
    case: str, monkeypatch, capsys, tmp_path: Path
) -> None:
    """Regression (issue 17 item 10): failed on ecab7db because app.cli.main caught ShieldwrightError and
    KeyboardInterrupt only: every one of these escaped as a Python traceback (the panic as a BaseException
    that not even ``except Exception`` catches)."""
    handler, code, words = CASES[case]
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(disk_commands, "cmd_inspect", handler)
    assert cli.main(["inspect", "disk.img"]) == code
    err = capsys.readouterr().err
    lines = err.splitlines()
    log = tmp_path / "state" / "shieldwright" / "log" / "shieldwright.log"
    assert len(lines) == 1 and lines[0].startswith("shieldwright: error: "), err
    assert words in lines[0] and f"details in {log}" in lines[0]
    assert "Traceback" not in err and "\x1b" not in err  # nothing of the input's text either
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "`shieldwright inspect` failed" in text
    assert case.split()[0] in text
    assert (log.stat().st_mode & 0o777) == 0o600


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    """The same through a real interpreter and its real stderr (the panic's own Rust message aside, which
    the Rust runtime writes before Python sees the exception)."""
    code = (
        "import sys\n"
        "import app.commands.disk as d\n"
        "def boom(args):\n"
        "    raise RecursionError('maximum recursion depth exceeded')\n"
        "d.cmd_inspect = boom\n"
        "from app.cli import main\n"
        "sys.exit(main(['inspect', 'disk.img']))\n"
    )
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("shieldwright: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert "RecursionError" in (tmp_path / "state" / "shieldwright" / "log" / "shieldwright.log").read_text()


def test_an_unwritable_log_still_gives_one_line(monkeypatch, capsys, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("a file where the log directory would go")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setattr(disk_commands, "cmd_inspect", _raise(ValueError("x")))
    assert cli.main(["inspect", "disk.img"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "the log file could not be written" in lines[0]
