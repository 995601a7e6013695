"""Hostile LUKS2 headers with valid-looking checksums: an extendable-output checksum algorithm and JSON
metadata nested hundreds of levels deep. Both are LuksHeaderErrors when read, so no later consumer
(``luks dump``'s deepcopy, the comparison of the two copies) meets a TypeError or RecursionError."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app.luks.container import read_header, unlock
from app.luks.errors import LuksHeaderError
from app.luks.header import CHECKSUM_ALGORITHMS, MAX_JSON_DEPTH, build_copy, build_metadata, read_metadata
from tests.conftest import MiB, run
from tests.hostile.samples import cheap_luks_area

ROOT = Path(__file__).resolve().parents[2]
_ALG_AT, _ALG_SIZE = 72, 32  # checksum_alg in the binary header (cryptsetup's struct luks2_hdr_disk)
_CSUM_AT, _CSUM_SIZE = 448, 64


def _reader(data: bytes):  # type: ignore[no-untyped-def]
    return lambda offset, length: data[offset : offset + length]


def _nested(depth: int) -> Any:
    """``[[...[]...]]``: ``depth`` arrays inside each other (built as text: json.loads makes it)."""
    return json.loads("[" * depth + "]" * depth)


def _with_json(area: bytes, change, *, primary_only: bool = False) -> bytes:  # type: ignore[no-untyped-def]
    """``area`` with its metadata JSON changed by ``change`` and resealed (both copies, or the primary)."""
    meta = read_metadata(_reader(area))
    change(meta.json)
    copies = build_copy(meta, False) if primary_only else build_metadata(meta)
    return copies + area[len(copies) :]


def _shake_copy(copy: bytes) -> bytes:
    """One metadata copy claiming checksum_alg ``shake_128``, with a shake_128 checksum over it."""
    out = bytearray(copy)
    out[_ALG_AT : _ALG_AT + _ALG_SIZE] = b"shake_128".ljust(_ALG_SIZE, b"\0")
    out[_CSUM_AT : _CSUM_AT + _CSUM_SIZE] = bytes(_CSUM_SIZE)
    out[_CSUM_AT : _CSUM_AT + 32] = hashlib.shake_128(bytes(out)).digest(32)
    return bytes(out)


def _shake_area(area: bytes, *, primary_only: bool = False) -> bytes:
    hdr_size = read_metadata(_reader(area)).hdr_size
    primary = _shake_copy(area[:hdr_size])
    secondary = area[hdr_size : 2 * hdr_size]
    if not primary_only:
        secondary = _shake_copy(secondary)
    return primary + secondary + area[2 * hdr_size :]


@pytest.fixture(scope="module")
def area() -> bytes:
    return cheap_luks_area()


# --- 11: checksum algorithms ------------------------------------------------------------------------------


def test_an_extendable_output_checksum_algorithm_is_a_header_error(area: bytes) -> None:
    """Regression: ``shake_128`` passed hashlib.new, then digest() raised TypeError (it needs a length)."""
    with pytest.raises(LuksHeaderError, match="not a fixed-size hash"):
        read_metadata(_reader(_shake_area(area)))
    with pytest.raises(LuksHeaderError):
        read_header(_reader(_shake_area(area)))


def test_a_shake_primary_falls_back_to_the_secondary(area: bytes) -> None:
    meta = read_metadata(_reader(_shake_area(area, primary_only=True)))
    assert meta.checksum_alg == "sha256"
    assert any("primary header unusable" in p for p in meta.problems)


@pytest.mark.parametrize("alg", ["sha1", "sha512", "sha3-256", "blake2b-512", "sm3"])
def test_fixed_size_algorithms_cryptsetup_names_round_trip(area: bytes, alg: str) -> None:
    meta = read_metadata(_reader(area))
    meta.checksum_alg = alg
    assert read_metadata(_reader(build_metadata(meta) + area[2 * meta.hdr_size :])).checksum_alg == alg


def test_our_writer_refuses_an_unknown_checksum_algorithm(area: bytes) -> None:
    meta = read_metadata(_reader(area))
    for alg in ("shake_256", "SHA256", "x" * 31):
        assert alg not in CHECKSUM_ALGORITHMS
        meta.checksum_alg = alg
        with pytest.raises(LuksHeaderError):
            build_metadata(meta)


# --- 12: JSON nesting depth -------------------------------------------------------------------------------


def test_json_nested_600_deep_is_a_header_error(area: bytes) -> None:
    """Regression: 1.2 KB of ``[[[...]]]`` parsed, then ``LuksHeader.to_dict``'s deepcopy (``luks dump``)
    raised RecursionError."""
    deep = _with_json(area, lambda j: j["config"].__setitem__("x", _nested(600)))
    with pytest.raises(LuksHeaderError, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        read_metadata(_reader(deep))
    with pytest.raises(LuksHeaderError):
        read_header(_reader(deep))


def test_json_depth_limit_is_exact(area: bytes) -> None:
    # The top object, "config", then the arrays: MAX_JSON_DEPTH containers in all is still accepted.
    ok = _with_json(area, lambda j: j["config"].__setitem__("x", _nested(MAX_JSON_DEPTH - 2)))
    header = read_header(_reader(ok))
    assert header.to_dict()["metadata"]["config"]["x"] == _nested(MAX_JSON_DEPTH - 2)
    too_deep = _with_json(area, lambda j: j["config"].__setitem__("x", _nested(MAX_JSON_DEPTH - 1)))
    with pytest.raises(LuksHeaderError):
        read_metadata(_reader(too_deep))


def test_a_deep_primary_falls_back_to_the_secondary(area: bytes) -> None:
    deep = _with_json(area, lambda j: j["tokens"].__setitem__("0", {"type": "x", "y": _nested(600)}),
                      primary_only=True)  # fmt: skip
    meta = read_metadata(_reader(deep))
    assert meta.json["tokens"] == {}
    assert any("nests deeper" in p for p in meta.problems)


# --- through the CLI --------------------------------------------------------------------------------------


def _disk(path: Path, luks_area: bytes) -> Path:
    """A 20 MiB GPT disk whose partition 1 (at 1 MiB) starts with ``luks_area``."""
    with open(path, "wb") as f:
        f.truncate(20 * MiB)
    run("sgdisk", "-n", "1:2048:+14M", "-t", "1:8309", path)
    with open(path, "r+b") as f:
        f.seek(MiB)
        f.write(luks_area)
    return path


def _dump(image: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "luks", "dump", str(image), "--partition", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )


def _clean_refusal(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shieldwright: error: "), proc.stderr
    assert "details in" not in lines[0], lines[0]  # the line for an exception no engine code translated
    return lines[0]


def test_luks_dump_refuses_hostile_headers_cleanly(area: bytes, tmp_path: Path) -> None:
    good = _dump(_disk(tmp_path / "good.img", area))
    assert good.returncode == 0, good.stderr
    deep = _disk(
        tmp_path / "deep.img", _with_json(area, lambda j: j["config"].__setitem__("x", _nested(600)))
    )
    assert "nests deeper than" in _clean_refusal(_dump(deep))
    shake = _disk(tmp_path / "shake.img", _shake_area(area))
    assert "not a fixed-size hash" in _clean_refusal(_dump(shake))


# --- the volume key digest's size --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 19, 65, 6 * 1024])
def test_a_digest_cryptsetup_would_not_read_is_refused_before_pbkdf2(area: bytes, size: int) -> None:
    """PBKDF2 runs its iterations once per 32-byte block of output: a 6 KiB digest (what fits this 16 KiB
    header) was 192 times the header's iterations, and a 4 MiB JSON area holds megabytes. cryptsetup reads
    20 to 64 bytes."""
    long_digest = base64.b64encode(bytes(size)).decode()
    changed = _with_json(area, lambda j: j["digests"]["0"].__setitem__("digest", long_digest))
    started = time.monotonic()
    with pytest.raises(LuksHeaderError, match=f"digest is {size} bytes, not 20 to 64"):
        unlock(changed, b"hostile")
    assert time.monotonic() - started < 5


def test_a_real_digest_still_unlocks(area: bytes) -> None:
    assert len(unlock(area, b"hostile")) == 64
