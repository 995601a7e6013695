"""Generate shieldwright(1) from the CLI's own argparse parser (app.cli.build_parser), every subcommand.

    .venv/bin/python installer/manpage.py -o shieldwright.1      # then: man -l shieldwright.1

The page is built at package time, so it never lags behind ``--help``: each command and action gets a
section with its usage, description, arguments (by argparse group) and epilog. Descriptions written for
``RawDescriptionHelpFormatter`` keep their indented blocks verbatim; other text is filled by roff.
The date is SOURCE_DATE_EPOCH's when set (reproducible builds), else today's.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Non-ASCII characters in help texts, as roff glyphs (anything else becomes \[uXXXX]).
_GLYPHS = {
    "\u2014": r"\(em",
    "\u2013": r"\(en",
    "\u2026": r"\&...",
    "\u2018": r"\(oq",
    "\u2019": r"\(cq",
    "\u201c": r"\(lq",
    "\u201d": r"\(rq",
    "\u2192": r"\(->",
    "\u2190": r"\(<-",
    "\u2265": r"\(>=",
    "\u2264": r"\(<=",
    "\u00d7": r"\(mu",
    "\u00a0": r"\ ",
}

_DEFAULT_GROUPS = {"positional arguments", "options", "optional arguments"}


def escape(text: str) -> str:
    """``text`` as roff input: backslashes, minus signs and non-ASCII made explicit."""
    out = []
    for ch in text.replace("\\", r"\e").replace("-", r"\-"):
        if ord(ch) < 128:
            out.append(ch)
        else:
            out.append(_GLYPHS.get(ch, f"\\[u{ord(ch):04X}]"))
    return "".join(out)


def _line(text: str) -> str:
    """One input line; a leading ``.`` or ``'`` would be read as a request, so it is guarded."""
    return "\\&" + text if text.startswith((".", "'")) else text


def paragraphs(text: str) -> list[str]:
    """roff for a block of help text: blank lines separate paragraphs; a paragraph with indented lines is
    kept verbatim (a table or list laid out by hand), any other is filled."""
    lines: list[str] = []
    text = text.strip("\n")
    for block in re.split(r"\n\s*\n", text):
        if not block.strip():
            continue
        rows = block.splitlines()
        if any(row.startswith((" ", "\t")) for row in rows):
            lines += [".PP", ".nf"] + [_line(escape(row.rstrip()) or "\\&") for row in rows] + [".fi"]
        else:
            lines += [".PP", _line(escape(" ".join(row.strip() for row in rows)))]
    return lines


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(parser.prog, width=100_000, max_help_position=100_000)


def usage(parser: argparse.ArgumentParser) -> list[str]:
    """The usage line: the command in bold, then its arguments; each bracketed group kept on one line."""
    fmt = _formatter(parser)
    fmt.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    text = fmt.format_help().strip()
    args = text[len(parser.prog) :].strip() if text.startswith(parser.prog) else text
    items, depth, current = [], 0, ""
    for ch in args:
        depth += 1 if ch in "[(" else -1 if ch in "])" else 0
        if ch == " " and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    items.append(current)
    # A required option and its value are one item too (`--out-cert FILE`, not a break between them).
    takes_value = {o for a in parser._actions if a.nargs != 0 for o in a.option_strings}
    joined: list[str] = []
    for item in items:
        if joined and joined[-1] in takes_value:
            joined[-1] += " " + item
        else:
            joined.append(item)
    # Short groups are unbreakable (`[--format FMT]` never splits); long ones may wrap inside.
    words = [escape(w).replace(" ", "\\ ") if len(w) <= 60 else escape(w) for w in joined if w]
    # Left-adjusted: a justified usage line spreads its arguments over the whole width.
    return [".PP", ".ad l", f'.B "{escape(parser.prog)}"'] + [_line(w) for w in words] + [".br", ".ad"]


def invocation(action: argparse.Action, fmt: argparse.HelpFormatter) -> str:
    """``\\fB\\-\\-out\\fR \\fIFILE\\fR``: option strings in bold, the value's name in italics."""
    if not action.option_strings:
        return "\\fI" + escape(fmt._metavar_formatter(action, action.dest)(1)[0]) + "\\fR"
    names = ", ".join(f"\\fB{escape(o)}\\fR" for o in action.option_strings)
    if action.nargs == 0:
        return names
    value = fmt._format_args(action, action.dest.upper())
    return f"{names} \\fI{escape(value)}\\fR"


def arguments(parser: argparse.ArgumentParser, skip_help: bool) -> list[str]:
    """Each argument group: ``.TP`` per argument with its (expanded) help; subcommands are listed apart."""
    fmt = _formatter(parser)
    lines: list[str] = []
    for group in parser._action_groups:
        shown = [
            a
            for a in group._group_actions
            if a.help != argparse.SUPPRESS
            and not isinstance(a, argparse._SubParsersAction)
            and not (skip_help and isinstance(a, argparse._HelpAction))
        ]
        if not shown:
            continue
        if group.title and group.title not in _DEFAULT_GROUPS:
            lines += [".PP", f"\\fI{escape(group.title)}:\\fR"]
            if group.description:
                lines += paragraphs(group.description)
        for action in shown:
            lines += [".TP", invocation(action, fmt)]
            help_text = fmt._expand_help(action) if action.help else ""
            lines.append(_line(escape(" ".join(help_text.split()))) if help_text else "\\&")
    return lines


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand of ``parser``, aliases once."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield name, helps.get(name, ""), sub


def command_sections(parser: argparse.ArgumentParser) -> list[str]:
    """A ``.SS`` per subcommand, depth first: usage, description, its actions' list, arguments, epilog."""
    lines: list[str] = []
    for _name, summary, sub in subcommands(parser):
        lines += [".SS " + f'"{escape(sub.prog)}"']
        lines += usage(sub)
        lines += paragraphs(sub.description or summary)
        children = list(subcommands(sub))
        if children:
            lines += [".PP", "Actions:", ".RS"]
            for child, child_help, _ in children:
                lines += [".TP", f"\\fB{escape(child)}\\fR", _line(escape(child_help)) or "\\&"]
            lines.append(".RE")
        lines += arguments(sub, skip_help=True)
        if sub.epilog:
            lines += paragraphs(sub.epilog)
        lines += command_sections(sub)
    return lines


def exit_statuses() -> list[tuple[str, str]]:
    """The exit statuses the CLI documents in code (app.cli, app.commands._trust), read from there."""
    import app.cli as cli

    rows = [("0", "success; for a check, nothing found at error level")]
    rows.append(
        ("1", "a check found errors (e.g. `inspect` of an image without a GPT, `verify` of a bad template)")
    )
    known = [
        ("EXIT_INPUT", "the command line is wrong, or an input cannot be read or processed"),
        ("EXIT_NO_DISPLAY", "no subcommand was given (the wizard) and there is no display to open it on"),
        ("EXIT_INTERNAL", "an internal error; the traceback is in the log file"),
    ]
    for name, text in known:
        if isinstance(getattr(cli, name, None), int):
            rows.append((str(getattr(cli, name)), text))
    try:
        from app.commands._trust import EXIT_SIGNER_NOT_CHECKED
    except ImportError:
        pass
    else:
        rows.append(
            (str(EXIT_SIGNER_NOT_CHECKED), "a signature is valid but its signer was not checked (no --trust)")
        )
    rows.sort(key=lambda r: int(r[0]))
    rows.append(("128+N", "stopped by signal N (SIGINT, SIGTERM, SIGHUP): partial outputs are removed"))
    return rows


def page_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.datetime.fromtimestamp(int(epoch), datetime.UTC) if epoch else datetime.datetime.now()
    return when.strftime("%Y-%m-%d")


def generate() -> str:
    from app import __version__
    from app.cli import build_parser

    parser = build_parser()
    lines = [
        '.\\" Generated by installer/manpage.py from the argparse parser of app/cli.py; do not edit.',
        f'.TH SHIELDWRIGHT 1 "{page_date()}" "shieldwright {__version__}" "User Commands"',
        ".nh",  # option names are never hyphenated across lines
        ".SH NAME",
        "shieldwright \\- build signed, encrypted template disks and shielding data for confidential VMs",
        ".SH SYNOPSIS",
        ".B shieldwright",
        "[\\fB\\-\\-debug\\fR] [\\fIIMAGE\\fR]",
        ".br",
        ".B shieldwright",
        "[\\fB\\-\\-debug\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR...]",
        ".br",
        ".B shieldwright",
        "\\fICOMMAND\\fR \\fB\\-\\-help\\fR",
        ".SH DESCRIPTION",
    ]
    lines += paragraphs(parser.description or "")
    lines += paragraphs(
        "Without a command, shieldwright opens the wizard, on IMAGE when one is given. With a command, it "
        "runs that step headless; the commands share one engine with the wizard. Everything works on image "
        "files as an ordinary user: no root, no loop devices, no device-mapper."
    )
    lines += paragraphs(
        "Passphrases are never taken from the command line: use a --...-passphrase-file FILE option (a file, "
        "a pipe or /dev/stdin), a --...-passphrase-env VAR option, or the prompt on a terminal. No command "
        "replaces an existing file unless given --force; outputs are written under a temporary name and "
        "renamed only when complete."
    )
    lines += [".SH OPTIONS"] + arguments(parser, skip_help=False)
    lines += [".SH COMMANDS"]
    lines += [".PP", "Each command takes \\fB\\-h\\fR, \\fB\\-\\-help\\fR for the text below."]
    lines += command_sections(parser)
    lines += [".SH EXIT STATUS"]
    for code, text in exit_statuses():
        lines += [".TP", f"\\fB{escape(code)}\\fR", _line(escape(text))]
    lines += [
        ".SH FILES",
        ".TP",
        "\\fI$XDG_STATE_HOME/shieldwright/log/shieldwright.log\\fR",
        "The log file of the wizard and the command line (default \\fI~/.local/state/shieldwright/log/\\fR);",
        "tracebacks of unexpected errors go there, never to the terminal.",
        ".TP",
        "\\fI/usr/share/OVMF\\fR, \\fI/usr/lib/systemd/boot/efi\\fR",
        "The firmware and systemd\\-stub used for test boots and unified kernel images.",
        ".SH SEE ALSO",
        ".BR cryptsetup (8),",
        ".BR systemd\\-cryptenroll (1),",
        ".BR ukify (1),",
        ".BR qemu\\-img (1),",
        ".BR swtpm (8)",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description="Write shieldwright(1) generated from the CLI's parser.")
    cli.add_argument("-o", "--output", type=Path, help="the roff file to write (default: standard output)")
    args = cli.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    page = generate()
    if args.output:
        args.output.write_text(page, encoding="ascii")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
