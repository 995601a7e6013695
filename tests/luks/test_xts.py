"""Bulk AES-XTS must equal a per-sector OpenSSL XTS bit for bit, and cryptsetup's own ciphertext - with
either engine (the compiled per-sector loop and the NumPy tweak arithmetic)."""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.luks.xts import DEFAULT_ENGINE, ENGINES, XtsCipher, xts_reference_decrypt, xts_reference_encrypt
from tests.luks.cryptsetup import cryptsetup, dump_volume_key

MiB = 1024 * 1024


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def test_the_compiled_engine_is_built_and_the_default() -> None:
    """setup.py compiles app/luks/_xts.c at install; an install that lost it would run ~2x slower."""
    # lazy: a missing extension fails this test, not the import of every XTS test
    from app.luks import _xts

    assert DEFAULT_ENGINE == "openssl-sectors"
    assert XtsCipher(os.urandom(64)).engine == "openssl-sectors"
    assert _xts.__file__.endswith(".so")


def test_compiled_loop_refuses_what_it_cannot_do_safely() -> None:
    """The C checks its buffers itself (it is called with the GIL released, on raw pointers)."""
    # lazy: as above, the compiled extension may be missing
    from app.luks import _xts

    ctx = _xts.context(os.urandom(64), True)
    buf = bytearray(4 * 4096)
    view = memoryview(buf)
    with pytest.raises(ValueError, match="overlap"):
        _xts.crypt(ctx, view[:8192], view[4096:12288], 4096, 0)
    with pytest.raises(ValueError, match="too small"):
        _xts.crypt(ctx, bytes(8192), bytearray(4096), 4096, 0)
    with pytest.raises(ValueError, match="whole sectors"):
        _xts.crypt(ctx, bytes(4000), bytearray(4096), 4096, 0)
    with pytest.raises(ValueError, match="whole sectors"):
        _xts.crypt(ctx, bytes(4096), bytearray(4096), 1000, 0)
    with pytest.raises(TypeError):
        _xts.crypt(ctx, bytes(4096), bytes(4096), 4096, 0)  # read-only output
    with pytest.raises(ValueError, match="32 or 64"):
        _xts.context(bytes(48), True)
    with pytest.raises(ValueError):
        _xts.crypt(object(), bytes(4096), bytearray(4096), 4096, 0)  # not a context
    assert buf == bytearray(4 * 4096)  # nothing was written by any refused call


@pytest.mark.parametrize("sector_size", [512, 1024, 2048, 4096])
@pytest.mark.parametrize("seed", range(6))
def test_bulk_equals_reference(sector_size: int, seed: int, engine: str) -> None:
    rng = random.Random(seed * 7919 + sector_size)
    key = rng.randbytes(rng.choice([32, 64]))
    cipher = XtsCipher(key, sector_size, engine=engine)
    for _ in range(4):  # one object over several chunk sizes: the scratch buffers get resized
        sectors = rng.choice([1, 2, 3, 7, 31, 64, 129, 300])
        offset = rng.randrange(0, 1 << 40) // sector_size * sector_size
        data = rng.randbytes(sectors * sector_size)
        expected = xts_reference_encrypt(key, data, offset, sector_size)
        assert cipher.encrypt(data, offset) == expected
        assert cipher.decrypt(expected, offset) == data
        assert xts_reference_decrypt(key, expected, offset, sector_size) == data


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_large_chunks_equal_reference(sector_size: int, engine: str) -> None:
    key = os.urandom(64)
    cipher = XtsCipher(key, sector_size, engine=engine)
    for size in (1 * MiB, 4 * MiB + 3 * sector_size):
        data = os.urandom(size)
        offset = 123 * MiB
        assert cipher.encrypt(data, offset) == xts_reference_encrypt(key, data, offset, sector_size)


def test_iv_counts_512_byte_units_for_4096_sectors(engine: str) -> None:
    """Sector k of a 4096-byte-sector segment uses IV 8k: equal to 512-sector XTS of its first 512 bytes."""
    key = os.urandom(64)
    data = os.urandom(4096)
    big = XtsCipher(key, 4096, engine=engine).encrypt(data, 5 * 4096)
    # the first XTS block of a data unit depends only on the tweak: IV 40 in 512-byte units
    small = XtsCipher(key, 512, engine=engine).encrypt(data[:512], 40 * 512)
    assert big[:16] == small[:16]
    assert big[:16] != XtsCipher(key, 512, engine=engine).encrypt(data[:512], 5 * 512)[:16]


def test_encrypt_into_and_roundtrip(engine: str) -> None:
    key = os.urandom(64)
    cipher = XtsCipher(key, 4096, engine=engine)
    data = os.urandom(64 * 4096)
    out = bytearray(len(data))
    cipher.encrypt_into(data, 8192, out)
    assert bytes(out) == cipher.encrypt(data, 8192)
    back = bytearray(len(data))
    cipher.decrypt_into(out, 8192, back)
    assert bytes(back) == data
    cipher.decrypt_into(out, 8192, out)  # in place
    assert bytes(out) == data
    assert cipher.encrypt(b"", 0) == b""
    with pytest.raises(ValueError, match="too small"):
        cipher.encrypt_into(data, 0, bytearray(len(data) - 4096))


def test_rejects_bad_arguments(engine: str) -> None:
    key = os.urandom(64)
    with pytest.raises(ValueError):
        XtsCipher(key[:48], engine=engine)
    with pytest.raises(ValueError):
        XtsCipher(bytes(32) * 2, engine=engine)  # equal halves
    with pytest.raises(ValueError):
        XtsCipher(key, 1000, engine=engine)
    with pytest.raises(ValueError, match="unknown XTS engine"):
        XtsCipher(key, engine="rot13")
    cipher = XtsCipher(key, 4096, engine=engine)
    with pytest.raises(ValueError):
        cipher.encrypt(bytes(4000), 0)
    with pytest.raises(ValueError):
        cipher.encrypt(bytes(4096), 512)
    assert key.hex() not in repr(cipher)


@pytest.mark.parametrize("sector_size", [4096, 512])
def test_equals_cryptsetup_ciphertext(tmp_path: Path, sector_size: int, engine: str) -> None:
    """cryptsetup's offline `reencrypt --encrypt` (userspace, no dm) makes the ciphertext; we match it."""
    plain = os.urandom(2 * MiB)
    image = tmp_path / "plain.img"
    image.write_bytes(plain)
    with open(image, "r+b") as f:
        f.truncate(2 * MiB + 32 * MiB)
    key_file = tmp_path / "pw"
    key_file.write_bytes(b"pw")
    proc = cryptsetup("reencrypt", "--encrypt", "--type", "luks2", "--reduce-device-size", "32M",
                      "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", key_file,
                      "--batch-mode", "--sector-size", str(sector_size), image)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    key = dump_volume_key(image, b"pw", tmp_path)
    assert len(key) == 64
    ciphertext = image.read_bytes()[16 * MiB : 16 * MiB + len(plain)]
    assert ciphertext != plain
    assert XtsCipher(key, sector_size, engine=engine).decrypt(ciphertext, 0) == plain
    assert XtsCipher(key, sector_size, engine=engine).encrypt(plain, 0) == ciphertext


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_iv_wraps_modulo_2_64_like_plain64(sector_size: int, engine: str) -> None:
    """plain64 keeps the low 64 bits of the sector number: a segment offset past 2^64 * 512 wraps."""
    key = os.urandom(64)
    data = os.urandom(4 * sector_size)
    offset = ((1 << 64) - sector_size // 512) * 512  # the second sector's IV is 2^64, i.e. 0
    expected = xts_reference_encrypt(key, data, offset, sector_size)
    assert XtsCipher(key, sector_size, engine=engine).encrypt(data, offset) == expected
    assert expected[sector_size : 2 * sector_size] == xts_reference_encrypt(
        key, data[sector_size:][:sector_size], 0, sector_size
    )


def test_lanes_let_threads_encrypt_at_once_without_mixing_their_work(engine: str) -> None:
    """Four threads on a two-lane cipher (so they also queue for a lane): every chunk equals the reference."""
    key = os.urandom(64)
    cipher = XtsCipher(key, 4096, lanes=2, engine=engine)
    assert "lanes=2" in repr(cipher) and key.hex() not in repr(cipher)
    rng = random.Random(5)
    jobs = [
        (rng.randbytes(rng.choice([1, 3, 600]) * 4096), rng.randrange(0, 1 << 30) * 4096) for _ in range(24)
    ]

    def run(job: tuple[bytes, int]) -> bytes:
        return cipher.encrypt(*job)

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(run, jobs))
    for (data, offset), ciphertext in zip(jobs, got, strict=True):
        assert ciphertext == xts_reference_encrypt(key, data, offset, 4096)
    with pytest.raises(ValueError):
        XtsCipher(key, 4096, lanes=0)
