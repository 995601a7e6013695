"""Keyslot KDFs: known answers, JSON form, calibration that follows the requested time."""

from __future__ import annotations

import hashlib
import time

import pytest

from app.errors import CancelledError, ShieldwrightError
from app.luks.errors import LuksHeaderError, LuksUnsupportedError
from app.luks.kdf import KdfParams, calibrate, derive
from app.progress import CancelToken


def test_pbkdf2_matches_hashlib() -> None:
    params = KdfParams("pbkdf2", 1000, None, None, b"s" * 32)
    assert derive(params, "pässword", 64) == hashlib.pbkdf2_hmac(
        "sha256", "pässword".encode(), b"s" * 32, 1000, 64
    )
    assert isinstance(derive(params, b"x", 32), bytearray)


def test_argon2id_deterministic_and_parameter_sensitive() -> None:
    """cryptsetup checks argon2id for real in test_container; here: same inputs, same key; any change, not."""
    p = KdfParams("argon2id", 1, 32768, 4, b"\x01" * 32)
    a = derive(p, b"pw", 64)
    assert a == derive(p, bytearray(b"pw"), 64)
    assert a != derive(KdfParams("argon2id", 2, 32768, 4, b"\x01" * 32), b"pw", 64)
    assert a != derive(KdfParams("argon2id", 1, 32768, 2, b"\x01" * 32), b"pw", 64)


def test_json_roundtrip_and_validation() -> None:
    for p in (KdfParams.pbkdf2(1234), KdfParams.argon2id(4, 65536, 4)):
        assert KdfParams.from_json(p.to_json()) == p
    assert KdfParams.pbkdf2(1000).salt != KdfParams.pbkdf2(1000).salt
    with pytest.raises(LuksHeaderError):
        KdfParams.from_json({"type": "pbkdf2", "hash": "sha256", "iterations": "1000", "salt": "AA=="})
    with pytest.raises(LuksHeaderError):
        KdfParams.from_json({"type": "argon2id", "time": 1, "memory": 1024, "salt": "!!"})
    with pytest.raises(LuksUnsupportedError):
        KdfParams.from_json({"type": "scrypt", "salt": ""})
    with pytest.raises(ShieldwrightError):
        derive(KdfParams("argon2id", 1, 4, 4, b"s" * 32), b"pw", 64)  # memory below 8 * lanes
    assert "salt" not in repr(KdfParams.pbkdf2(1000))


def test_calibrate_pbkdf2_follows_iter_time() -> None:
    fast = calibrate("pbkdf2", iter_time_ms=20)
    slow = calibrate("pbkdf2", iter_time_ms=200)
    assert fast.type == "pbkdf2" and fast.iterations >= 1000
    assert slow.iterations > 3 * fast.iterations
    start = time.perf_counter()
    derive(slow, b"pw", 64)
    assert 0.05 < time.perf_counter() - start < 1.0


def test_calibrate_argon2id_caps_memory_and_hits_time() -> None:
    params = calibrate("argon2id", iter_time_ms=300, max_memory_kib=16384, parallel=2)
    assert params.type == "argon2id" and params.memory_kib == 16384 and params.parallel == 2
    assert params.time >= 4
    start = time.perf_counter()
    derive(params, b"pw", 64)
    assert 0.1 < time.perf_counter() - start < 1.2


def test_calibrate_argon2id_lowers_memory_when_min_time_too_slow() -> None:
    params = calibrate("argon2id", iter_time_ms=30, max_memory_kib=1048576, parallel=1)
    assert params.time == 4
    assert params.memory_kib is not None and params.memory_kib < 1048576


def test_calibrate_cancels_and_rejects_unknown() -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        calibrate("argon2id", iter_time_ms=50, cancel=token)
    with pytest.raises(LuksUnsupportedError):
        calibrate("scrypt")
