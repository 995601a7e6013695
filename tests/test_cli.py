"""CLI dispatch: subcommands run the engine; errors are one line; no subcommand means the wizard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app import cli
from app.commands import COMMAND_MODULES
from app.commands import disk as disk_commands
from app.errors import CancelledError, ImageError

ROOT = Path(__file__).resolve().parents[1]


def sw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_help_lists_subcommands() -> None:
    proc = sw("--help")
    assert proc.returncode == 0
    for name in ("inspect", "convert", "demo-image"):
        assert name in proc.stdout


def test_no_subcommand_opens_the_wizard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []
    import app.gui.application as application

    monkeypatch.setattr(application, "run_wizard", lambda image, debug: calls.append((image, debug)) or 0)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    image = tmp_path / "some.vhdx"
    image.write_bytes(b"")
    assert cli.main([]) == 0
    assert cli.main([str(image), "--debug"]) == 0
    assert calls == [(None, False), (str(image), True)]


def sw_env(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``sw`` with the display variables replaced by ``env`` (none by default: no display)."""
    import os

    clean = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={**clean, **env},
    )  # fmt: skip


def test_a_mistyped_command_is_an_unknown_command_with_a_close_match() -> None:
    """Issue 18: ``shieldwright isnpect`` opened the wizard on an image named "isnpect" (and without a display
    aborted with exit 134). A word that is no command and no file is refused the way argparse refuses."""
    proc = sw_env("isnpect", QT_QPA_PLATFORM="offscreen")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("usage: shieldwright")
    assert (
        proc.stderr.splitlines()[-1]
        == "shieldwright: error: unknown command 'isnpect' (did you mean 'inspect'?)"
    )
    far = sw_env("zzzz", QT_QPA_PLATFORM="offscreen")
    assert far.returncode == 2
    assert (
        far.stderr.splitlines()[-1] == "shieldwright: error: unknown command 'zzzz' (see shieldwright --help)"
    )
    missing = sw_env("no-such-dir/base.vhdx", QT_QPA_PLATFORM="offscreen")
    assert missing.returncode == 2
    assert "no such file: 'no-such-dir/base.vhdx'" in missing.stderr.splitlines()[-1]
    option = sw_env("--frobnicate", QT_QPA_PLATFORM="offscreen")
    assert option.returncode == 2
    assert option.stderr.splitlines()[-1] == "shieldwright: error: unrecognized arguments: --frobnicate"


def test_without_a_display_the_wizard_says_so_in_one_line(tmp_path: Path) -> None:
    """Issue 18: without a display Qt aborted the process (exit 134, a core dump's worth of noise)."""
    for args in ((), (str(ROOT / "pyproject.toml"),)):  # no image, and an existing file
        proc = sw_env(*args)
        assert proc.returncode == 69, (proc.returncode, proc.stderr)  # EX_UNAVAILABLE, not Qt's abort (134)
        assert proc.stderr.count("\n") == 1
        assert proc.stderr.startswith("shieldwright: error: no display to open the wizard on: ")
        assert "xvfb-run" in proc.stderr and "subcommand" in proc.stderr
    forced = sw_env(QT_QPA_PLATFORM="wayland")
    assert forced.returncode == 69
    assert "WAYLAND_DISPLAY is not set" in forced.stderr


def test_a_display_that_does_not_answer_is_one_line_not_a_qt_abort(tmp_path: Path) -> None:
    """A named display nobody serves: Qt's fatal "no platform plugin" becomes one line and exit 69."""
    proc = sw_env(DISPLAY=":97", QT_QPA_PLATFORM="xcb", XDG_STATE_HOME=str(tmp_path))
    assert proc.returncode == 69, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("shieldwright: error: the wizard cannot open a window: ")
    assert ":97" in proc.stderr and "xvfb-run" in proc.stderr


def test_display_problem_follows_the_platform_qt_will_use() -> None:
    assert cli.display_problem({}) is not None
    assert cli.display_problem({"DISPLAY": ":0"}) is None
    assert cli.display_problem({"WAYLAND_DISPLAY": "wayland-0"}) is None
    assert cli.display_problem({"QT_QPA_PLATFORM": "offscreen"}) is None
    assert cli.display_problem({"QT_QPA_PLATFORM": "vnc:size=800x600"}) is None
    assert cli.display_problem({"QT_QPA_PLATFORM": "xcb", "WAYLAND_DISPLAY": "wayland-0"}) is not None
    assert cli.display_problem({"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"}) is None


def test_engine_errors_print_one_line_and_exit_with_their_code(monkeypatch, capsys) -> None:
    def boom(args):
        raise ImageError("disk.img is truncated", "copy it again")

    monkeypatch.setattr(disk_commands, "cmd_inspect", boom)
    parser_main = cli.main(["inspect", "disk.img"])  # handlers are bound when main builds the parser
    err = capsys.readouterr().err
    assert parser_main == 2
    assert err == "shieldwright: error: disk.img is truncated (copy it again)\n"


def test_cancel_exits_130(monkeypatch, capsys) -> None:
    def cancelled(args):
        raise CancelledError()

    monkeypatch.setattr(disk_commands, "cmd_convert", cancelled)
    assert cli.main(["convert", "a", "b", "--format", "raw"]) == 130
    assert capsys.readouterr().err.startswith("shieldwright: error: Cancelled")


def test_passphrases_come_from_a_file_or_the_environment(tmp_path: Path, monkeypatch) -> None:
    import argparse

    from app.commands._util import add_passphrase_options, read_passphrase
    from app.errors import ShieldwrightError

    parser = argparse.ArgumentParser()
    add_passphrase_options(parser)
    secret = tmp_path / "pass"
    secret.write_bytes(b"correct horse\n")
    assert read_passphrase(parser.parse_args(["--key-passphrase-file", str(secret)])) == b"correct horse"
    monkeypatch.setenv("SW_TEST_PASS", "from-env")
    assert read_passphrase(parser.parse_args(["--key-passphrase-env", "SW_TEST_PASS"])) == b"from-env"
    assert read_passphrase(parser.parse_args([])) is None  # no source, no prompt asked for
    with pytest.raises(ShieldwrightError) as missing:
        read_passphrase(parser.parse_args(["--key-passphrase-env", "SW_TEST_UNSET_VARIABLE"]))
    assert "SW_TEST_UNSET_VARIABLE" in missing.value.message


def test_restated_choices_agree_with_their_owners() -> None:
    """The parser cannot import the key types' owner (that would load cryptography into every CLI start), so
    ``cert`` restates them: it must say what its owner says. (The LUKS, catalog and image choices have light
    owners, app.luks.params, app.catalog.limits and app.disk.image, that the parser imports directly.)"""
    from app.commands import cert
    from app.signing.keys import KEY_TYPES

    assert cert.KEY_TYPE_CHOICES == KEY_TYPES


def test_the_parser_loads_no_heavy_library() -> None:
    """Building the parser (every ``--help``) imports each command module: these load none of the engine's
    heavy libraries at import time; their handlers import the engine when they run. (``build`` takes its
    flags from the recipe's option table, so it loads the recipe model.)"""
    light = [f"app.commands.{name}" for name in COMMAND_MODULES]
    heavy = {"cryptography", "numpy", "pefile", "PySide6"}
    code = (
        f"import importlib, sys\nfor name in {light!r}:\n    importlib.import_module(name)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {heavy!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
