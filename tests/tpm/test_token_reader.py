"""Reading a ``systemd-tpm2`` token from a disk: what systemd writes reads back, anything else is a
:class:`TokenError`, never another exception.

A token's JSON comes from the disk being inspected. Python's JSON parser accepts ``Infinity`` and
``NaN`` and numbers of any size, and ``"²".isdigit()`` is true while ``int("²")`` fails: before this
reader checked each field's type, ``"tpm2-pcrs": [Infinity]`` escaped as an OverflowError (``luks dump`` and
``test-boot --vtpm``'s policy check ended on the CLI's generic "cannot be processed" line, not our error).
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.tpm.token import TOKEN_TYPE, TokenError, read_systemd_tpm2_token

#: A token as ``systemd-cryptenroll --tpm2-device-key`` (systemd 257) writes it, through JSON.
GOOD = json.loads(
    json.dumps(
        {
            "type": TOKEN_TYPE,
            "keyslots": ["1"],
            "tpm2-blob": base64.b64encode(bytes(range(200))).decode(),
            "tpm2-pcrs": [4, 7, 11],
            "tpm2-pcr-bank": "sha256",
            "tpm2-primary-alg": "ecc",
            "tpm2-policy-hash": "ab" * 32,
            "tpm2_srk": base64.b64encode(bytes.fromhex("810000010004000b1234") + bytes(8)).decode(),
        }
    )
)


def test_what_systemd_writes_reads_back() -> None:
    info = read_systemd_tpm2_token(GOOD)
    assert (info.keyslots, info.pcrs, info.bank, info.primary_alg) == ((1,), (4, 7, 11), "sha256", "ecc")
    assert info.policy_hash == "ab" * 32 and info.blob_size == 200
    assert info.srk_handle == 0x81000001 and info.srk_name == "000b1234"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tpm2-pcrs", [float("inf")]),  # was an OverflowError
        ("tpm2-pcrs", [float("nan")]),
        ("tpm2-pcrs", [24]),
        ("tpm2-pcrs", [-1]),
        ("tpm2-pcrs", [True]),
        ("tpm2-pcrs", ["4"]),
        ("tpm2-pcrs", 4),
        ("tpm2-pcrs", [10**400]),
        ("keyslots", ["\u00b2"]),  # isdigit(), but not a number int() reads
        ("keyslots", [float("inf")]),
        ("keyslots", ["32"]),
        ("tpm2-blob", None),  # was read as the base64 of "None"
        ("tpm2-blob", []),
        ("tpm2-blob", "not base64!"),
        ("tpm2-blob", [1, 2]),
        ("tpm2-policy-hash", "xyz"),
        ("tpm2-policy-hash", {"a": 1}),
        ("tpm2-pcr-bank", 256),
        ("tpm2_srk", 7),
        ("tpm2_srk", "%%%"),
    ],
)
def test_each_malformed_field_is_named(field: str, value: object) -> None:
    with pytest.raises(TokenError) as refused:
        read_systemd_tpm2_token({**GOOD, field: value})
    assert field in refused.value.message and refused.value.hint


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(sorted(GOOD)), JSON, max_size=5))
def test_any_json_in_any_field_is_read_or_refused_with_our_error(changes: dict[str, object]) -> None:
    token = {**GOOD, **changes, "type": TOKEN_TYPE}
    try:
        info = read_systemd_tpm2_token(token)
    except TokenError as exc:
        assert exc.message.startswith("the systemd-tpm2 token's ") and exc.hint
        return
    assert all(0 <= n <= 23 for n in info.pcrs) and all(0 <= k <= 31 for k in info.keyslots)
