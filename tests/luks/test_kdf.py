"""Keyslot KDFs: known answers, JSON form, calibration that follows the requested time."""

from __future__ import annotations

import hashlib
import time

import pytest

from app.errors import CancelledError, ShieldwrightError
from app.luks import kdf
from app.luks.errors import LuksHeaderError, LuksUnsupportedError
from app.luks.kdf import KdfParams, _RustPanic, calibrate, derive, run_interruptibly
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


def test_costs_beyond_the_bounds_are_refused_before_any_work() -> None:
    """A foreign keyslot's costs are bounded (app.luks.kdf's module doc): beyond them, a one-line refusal."""
    with pytest.raises(LuksUnsupportedError, match="iterations is more than"):
        KdfParams.pbkdf2(kdf.MAX_PBKDF2_ITERATIONS + 1).validate()
    KdfParams.pbkdf2(kdf.MAX_PBKDF2_ITERATIONS).validate()
    with pytest.raises(LuksUnsupportedError, match="GiB-passes"):
        KdfParams.argon2id(65, 2**20, 4).validate()  # 65 passes over 1 GiB
    KdfParams.argon2id(64, 2**20, 4).validate()


def test_calibration_stays_within_the_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an impossibly fast machine, calibration still asks for no more than derive() accepts."""
    monkeypatch.setattr(kdf, "_timed", lambda params, cancel=None: 1e-6)
    assert calibrate("pbkdf2", iter_time_ms=60_000).iterations == kdf.MAX_PBKDF2_ITERATIONS
    params = calibrate("argon2id", iter_time_ms=60_000, max_memory_kib=2**20, parallel=4)
    params.validate()
    assert params.time * params.memory_kib <= kdf.MAX_ARGON2_WORK_KIB


def test_worker_failures_reach_the_caller_and_panics_become_errors() -> None:
    """run_interruptibly hands back what the worker raised; a pyo3 PanicException (a BaseException, so it
    would escape every ``except Exception``) arrives as an ordinary exception derive() translates."""

    class PanicException(BaseException):  # the name pyo3 gives its panics
        pass

    def boom() -> bytes:
        raise ValueError("bad parameters")

    def panic() -> bytes:
        raise PanicException("called `Result::unwrap()` on an `Err` value")

    with pytest.raises(ValueError, match="bad parameters"):
        run_interruptibly(boom)
    with pytest.raises(_RustPanic):
        run_interruptibly(panic)
    assert run_interruptibly(lambda: b"key") == b"key"
