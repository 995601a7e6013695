"""shieldwright(1), generated from the argparse parser by installer/manpage.py, read with ``man -l``."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from app import __version__
from app.cli import build_parser
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]


def load_manpage() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sw_manpage", ROOT / "installer" / "manpage.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def command_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every subcommand's parser, nested ones included (``cert new``, ``uki pcr11``, ...)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += [sub, *command_parsers(sub)]
    return found


def render(page: Path, width: int = 200) -> subprocess.CompletedProcess[str]:
    require_tool("man")
    env = {**os.environ, "MANWIDTH": str(width), "MANPAGER": "cat", "PAGER": "cat", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        ["man", "--warnings", "-E", "UTF-8", "-l", str(page)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def plain(text: str) -> str:
    """man's output with its typographic minus and hyphen folded to ASCII."""
    return text.replace("\u2212", "-").replace("\u2010", "-")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("man") / "shieldwright.1"
    subprocess.run(
        [sys.executable, str(ROOT / "installer" / "manpage.py"), "-o", str(out)],
        check=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "1767225600"},
        timeout=120,
    )
    return out


def test_man_reads_the_page_without_a_warning(page: Path) -> None:
    result = render(page)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"groff/man warnings:\n{result.stderr}"
    text = plain(result.stdout)
    assert "SHIELDWRIGHT(1)" in text
    assert f"shieldwright {__version__}" in text
    assert "2026-01-01" in text  # SOURCE_DATE_EPOCH, not today


def test_every_subcommand_and_option_is_documented(page: Path) -> None:
    text = plain(render(page).stdout)
    parsers = command_parsers(build_parser())
    assert len(parsers) > 40  # the CLI has ~50 commands and actions; a walk that finds few is broken
    missing = []
    for sub in parsers:
        start = text.find(f"\n   {sub.prog}\n")  # the command's own section heading
        if start < 0:
            missing.append(f"section {sub.prog!r}")
            continue
        section = text[start : text.find("\n   shieldwright ", start + 1)]
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                if option not in section:
                    missing.append(f"{sub.prog} {option}")
    assert not missing, "not in the man page: " + ", ".join(missing)


def test_exit_statuses_come_from_the_code(page: Path) -> None:
    from app.cli import EXIT_INPUT, EXIT_INTERNAL

    text = plain(render(page).stdout)
    exit_section = text[text.index("EXIT STATUS") : text.index("FILES")]
    for code in (0, 1, EXIT_INPUT, EXIT_INTERNAL):
        assert f"\n       {code} " in exit_section


def test_roff_escaping() -> None:
    manpage = load_manpage()
    # A leading dot would be a roff request, a backslash an escape, non-ASCII a raw byte.
    lines = manpage.paragraphs(".hidden C:\\path \u2014 5\u00d7\u2026 \u4e2d")
    assert lines[0] == ".PP"
    assert lines[1] == "\\&.hidden C:\\epath \\(em 5\\(mu\\&... \\[u4E2D]"
    # An indented block stays verbatim (no fill), a plain one is joined into one filled paragraph.
    lines = manpage.paragraphs("one\ntwo\n\n  --a  first\n  --b  second\n")
    assert lines == [".PP", "one two", ".PP", ".nf", "  \\-\\-a  first", "  \\-\\-b  second", ".fi"]


def test_generated_page_is_ascii_and_escaped(page: Path) -> None:
    text = page.read_bytes().decode("ascii")  # raises on any raw non-ASCII byte
    body = [ln for ln in text.splitlines() if not ln.startswith('.\\"')]
    requests = {ln.split()[0] for ln in body if ln.startswith(".")}
    known = {".TH", ".SH", ".SS", ".PP", ".TP", ".B", ".BR", ".RS", ".RE", ".nf", ".fi", ".br", ".ad", ".nh"}
    assert requests <= known, f"unexpected requests (an unescaped leading dot?): {requests - known}"
