"""The AF splitter: round trip, layout, and agreement with an independent transcription of af.c."""

from __future__ import annotations

import hashlib
import os

import pytest

from app.luks import af


def _diffuse(buf: bytes) -> bytes:
    out = b""
    for i in range(0, len(buf), 32):
        out += hashlib.sha256((i // 32).to_bytes(4, "big") + buf[i : i + 32]).digest()[: len(buf[i : i + 32])]
    return out


@pytest.mark.parametrize("key_size", [16, 32, 33, 64])
def test_roundtrip_and_size(key_size: int) -> None:
    key = os.urandom(key_size)
    material = af.af_split(key)
    assert len(material) == af.af_size(key_size) == (key_size * 4000 + 511) // 512 * 512
    assert af.af_merge(material, key_size) == key
    assert af.af_split(key) != material  # random stripes


def test_merge_matches_independent_transcription() -> None:
    key_size, stripes = 64, 10
    material = os.urandom(key_size * stripes)
    buf = bytes(key_size)
    for i in range(stripes - 1):
        buf = _diffuse(
            bytes(a ^ b for a, b in zip(buf, material[i * key_size : (i + 1) * key_size], strict=True))
        )
    expected = bytes(a ^ b for a, b in zip(buf, material[(stripes - 1) * key_size :], strict=True))
    assert af.af_merge(material, key_size, stripes) == expected


def test_one_damaged_stripe_loses_the_key() -> None:
    key = os.urandom(64)
    material = af.af_split(key)
    material[1000] ^= 1
    assert af.af_merge(material, 64) != key


def test_short_material_and_bad_hash_rejected() -> None:
    with pytest.raises(ValueError):
        af.af_merge(bytes(100), 64)
    with pytest.raises(ValueError):
        af.af_split(bytes(32), hash_name="nope")
