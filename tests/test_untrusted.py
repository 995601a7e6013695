"""Untrusted text is printed with every non-printing character escaped (issue 17, item 10)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.untrusted import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("root-x86-64", "root-x86-64"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),  # clear screen
        ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),  # retitle the terminal
        ("abc\u202edef", "abc\\u202edef"),  # right-to-left override
        ("x\ry", "x\\x0dy"),  # carriage return overwrites the line
        ("line\u2028sep", "line\\u2028sep"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("Café 日本 ü", "Café 日本 ü"),
        ("\\EFI\\Linux\\a.efi", "\\EFI\\Linux\\a.efi"),  # EFI paths stay readable
    ],
)
def test_printable_escapes_what_would_not_draw(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_newlines_kept_only_on_request() -> None:
    assert printable("a\nb\tc") == "a\\x0ab\\x09c"
    assert printable("a\nb\tc", keep_newlines=True) == "a\nb\tc"


@given(st.text())
def test_output_has_no_control_or_format_characters(text: str) -> None:
    out = printable(text)
    assert all(unicodedata.category(ch) not in {"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp"} for ch in out)
