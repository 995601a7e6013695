"""Values that came from an input file: text made safe to print on a terminal, and type checks.

GPT partition names, LUKS2 labels, os-release fields and certificate subjects are chosen by whoever made
the input. Printed raw, an escape sequence in them can move the cursor, rewrite earlier lines or retitle
the terminal, so a hostile image could make ``inspect`` show something it does not contain. Every command
that prints such text passes it through :func:`printable` first.
"""

from __future__ import annotations

import os
import unicodedata

from app.errors import ShieldwrightError

#: Unicode categories that do not draw a glyph: controls, format characters (bidi overrides among them),
#: unassigned, private use, surrogates, and the line/paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp"})


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every non-printing character shown as a Python-style escape (``\\x1b``, ``\\u202e``).

    Backslashes stay as they are (EFI paths are full of them): an input can spell ``\\x1b`` literally,
    which only shows those four characters. Newlines and tabs are kept only with ``keep_newlines`` (for
    multi-line fields such as a command line shown in a block).
    """
    out: list[str] = []
    for ch in text:
        if keep_newlines and ch in "\n\t":
            out.append(ch)
        elif ch != " " and (unicodedata.category(ch) in _HIDDEN or ch.isspace() and not ch.isprintable()):
            out.append(_escape(ord(ch)))
        else:
            out.append(ch)
    return "".join(out)


def _escape(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shortened(text: str, limit: int, *, keep_end: int = 0) -> str:
    """``text`` for a one-line message: cut to ``limit`` characters with "..." (after its first part, and
    before its last ``keep_end`` characters), so a hostile value cannot flood the line."""
    if len(text) <= limit:
        return text
    head = text[: limit - 3 - keep_end]
    return f"{head}...{text[-keep_end:]}" if keep_end else f"{head}..."


def is_json_int(value: object) -> bool:
    """A JSON integer: ``True`` is an int to Python, not to JSON."""
    return isinstance(value, int) and not isinstance(value, bool)


def has_type(value: object, kind: type | tuple[type, ...]) -> bool:
    """``isinstance`` for a value whose annotation its source may not have honoured (a decoded header, a
    caller's argument): statically the check looks redundant, at run time it is the check."""
    return isinstance(value, kind)


def read_bounded(
    path: str | os.PathLike[str], limit: int, error: type[ShieldwrightError], hint: str, *, what: str = ""
) -> bytes:
    """At most ``limit + 1`` bytes of ``path``: one byte past the limit tells the caller the file is too
    large, whatever ``st_size`` says (a pipe, ``/dev/zero`` and securityfs report no size to trust), and a
    huge file is never read whole. An unreadable path raises ``error("cannot read [WHAT ]PATH: REASON",
    hint)``."""
    try:
        with open(path, "rb") as f:
            return f.read(limit + 1)
    except OSError as exc:
        named = f"{what} {os.fspath(path)}" if what else os.fspath(path)
        raise error(f"cannot read {named}: {exc.strerror or exc}", hint) from None
