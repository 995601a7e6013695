"""Untrusted text is printed with every non-printing character escaped (issue 17, item 10); untrusted files
are read only up to their bound."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import ShieldwrightError
from app.untrusted import is_json_int, printable, read_bounded, shortened


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


# -- read_bounded -------------------------------------------------------------------------------------


class _ReadError(ShieldwrightError):
    pass


def test_read_bounded_reads_one_byte_past_the_limit_and_no_more(tmp_path):
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(b"abc")
    big.write_bytes(b"x" * 1000)
    assert read_bounded(small, 10, _ReadError, "hint") == b"abc"
    assert read_bounded(big, 10, _ReadError, "hint") == b"x" * 11
    # A device that never ends and reports no size: still only limit + 1 bytes.
    assert read_bounded("/dev/zero", 4096, _ReadError, "hint") == bytes(4097)


def test_read_bounded_turns_os_errors_into_the_callers_one_line_error(tmp_path):
    with pytest.raises(_ReadError) as missing:
        read_bounded(tmp_path / "nope", 10, _ReadError, "check the path", what="the key file")
    assert missing.value.message == f"cannot read the key file {tmp_path / 'nope'}: No such file or directory"
    assert missing.value.hint == "check the path"
    with pytest.raises(_ReadError, match="Is a directory"):
        read_bounded(tmp_path, 10, _ReadError, "give a file")


def test_shortened_keeps_short_text_and_cuts_long_text_to_the_limit() -> None:
    assert shortened("abc", 5) == "abc"
    assert shortened("x" * 100, 40) == "x" * 37 + "..."
    cut = shortened("a" * 100 + "/name.toml", 40, keep_end=10)
    assert len(cut) == 40 and cut.endswith(".../name.toml")


def test_json_int_is_not_a_bool() -> None:
    assert is_json_int(0) and is_json_int(-(10**30))
    assert not any(is_json_int(v) for v in (True, False, 1.0, "1", None))
