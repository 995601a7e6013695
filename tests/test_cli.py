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


def test_no_subcommand_opens_the_wizard(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    import app.gui.application as application

    monkeypatch.setattr(application, "run_wizard", lambda image, debug: calls.append((image, debug)) or 0)
    assert cli.main([]) == 0
    assert cli.main(["some.vhdx", "--debug"]) == 0
    assert calls == [(None, False), ("some.vhdx", True)]


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
