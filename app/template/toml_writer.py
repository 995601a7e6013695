"""A small TOML writer for our own documents (the stdlib reads TOML but cannot write it).

It writes exactly what the recipe needs and nothing more: a header comment, top-level values, then one
``[table]`` per nested dict, whose own dict values become inline tables. Values are strings, integers,
booleans, arrays of those, and inline tables. Every output is read back by :mod:`tomllib` in the tests,
which is the only judge that matters. Floats, dates and arrays of tables are deliberately unsupported.
"""

from __future__ import annotations

import re
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else _string(k)


def _string(s: str) -> str:
    """A basic string; multi-line when ``s`` has line breaks, so texts such as an os-release stay readable."""
    multiline = "\n" in s
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\n" if multiline else "\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    body = "".join(out)
    # TOML trims the newline right after the opening quotes, so the text starts on the next line as is.
    return f'"""\n{body}"""' if multiline else f'"{body}"'


def value(v: Any) -> str:
    """One TOML value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {value(x)}" for k, x in v.items()) + " }" if v else "{}"
    raise TypeError(f"cannot write a {type(v).__name__} as TOML")


def dumps(doc: dict[str, Any], header: str = "") -> str:
    """``doc`` as TOML text: ``header`` (already ``#``-commented), top-level values, then the tables."""
    lines = [header] if header else []
    lines += [f"{_key(k)} = {value(v)}\n" for k, v in doc.items() if not isinstance(v, dict)]
    for k, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"\n[{_key(k)}]\n")
            lines += [f"{_key(kk)} = {value(vv)}\n" for kk, vv in table.items()]
    return "".join(lines)
