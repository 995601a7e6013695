"""Bulk AES-XTS must equal a per-sector OpenSSL XTS bit for bit, and cryptsetup's own ciphertext."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from app.luks.xts import XtsCipher, xts_reference_decrypt, xts_reference_encrypt
from tests.luks.cryptsetup import cryptsetup, dump_volume_key

MiB = 1024 * 1024


@pytest.mark.parametrize("sector_size", [512, 1024, 2048, 4096])
@pytest.mark.parametrize("seed", range(6))
def test_bulk_equals_reference(sector_size: int, seed: int) -> None:
    rng = random.Random(seed * 7919 + sector_size)
    key = rng.randbytes(rng.choice([32, 64]))
    cipher = XtsCipher(key, sector_size)
    for _ in range(4):  # one object over several chunk sizes: the scratch buffers get resized
        sectors = rng.choice([1, 2, 3, 7, 31, 64, 129, 300])
        offset = rng.randrange(0, 1 << 40) // sector_size * sector_size
        data = rng.randbytes(sectors * sector_size)
        expected = xts_reference_encrypt(key, data, offset, sector_size)
        assert cipher.encrypt(data, offset) == expected
        assert cipher.decrypt(expected, offset) == data
        assert xts_reference_decrypt(key, expected, offset, sector_size) == data


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_large_chunks_equal_reference(sector_size: int) -> None:
    key = os.urandom(64)
    cipher = XtsCipher(key, sector_size)
    for size in (1 * MiB, 4 * MiB + 3 * sector_size):
        data = os.urandom(size)
        offset = 123 * MiB
        assert cipher.encrypt(data, offset) == xts_reference_encrypt(key, data, offset, sector_size)


def test_iv_counts_512_byte_units_for_4096_sectors() -> None:
    """Sector k of a 4096-byte-sector segment uses IV 8k: equal to 512-sector XTS of its first 512 bytes."""
    key = os.urandom(64)
    data = os.urandom(4096)
    big = XtsCipher(key, 4096).encrypt(data, 5 * 4096)
    # the first XTS block of a data unit depends only on the tweak: IV 40 in 512-byte units
    small = XtsCipher(key, 512).encrypt(data[:512], 40 * 512)
    assert big[:16] == small[:16]
    assert big[:16] != XtsCipher(key, 512).encrypt(data[:512], 5 * 512)[:16]


def test_encrypt_into_and_roundtrip() -> None:
    key = os.urandom(64)
    cipher = XtsCipher(key, 4096)
    data = os.urandom(64 * 4096)
    out = bytearray(len(data))
    cipher.encrypt_into(data, 8192, out)
    assert bytes(out) == cipher.encrypt(data, 8192)
    back = bytearray(len(data))
    cipher.decrypt_into(out, 8192, back)
    assert bytes(back) == data
    assert cipher.encrypt(b"", 0) == b""


def test_rejects_bad_arguments() -> None:
    key = os.urandom(64)
    with pytest.raises(ValueError):
        XtsCipher(key[:48])
    with pytest.raises(ValueError):
        XtsCipher(bytes(32) * 2)  # equal halves
    with pytest.raises(ValueError):
        XtsCipher(key, 1000)
    cipher = XtsCipher(key, 4096)
    with pytest.raises(ValueError):
        cipher.encrypt(bytes(4000), 0)
    with pytest.raises(ValueError):
        cipher.encrypt(bytes(4096), 512)
    assert key.hex() not in repr(cipher)


@pytest.mark.parametrize("sector_size", [4096, 512])
def test_equals_cryptsetup_ciphertext(tmp_path: Path, sector_size: int) -> None:
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
    assert XtsCipher(key, sector_size).decrypt(ciphertext, 0) == plain
    assert XtsCipher(key, sector_size).encrypt(plain, 0) == ciphertext


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_iv_wraps_modulo_2_64_like_plain64(sector_size: int) -> None:
    """plain64 keeps the low 64 bits of the sector number: a segment offset past 2^64 * 512 wraps."""
    key = os.urandom(64)
    data = os.urandom(4 * sector_size)
    offset = ((1 << 64) - sector_size // 512) * 512  # the second sector's IV is 2^64, i.e. 0
    expected = xts_reference_encrypt(key, data, offset, sector_size)
    assert XtsCipher(key, sector_size).encrypt(data, offset) == expected
    assert expected[sector_size : 2 * sector_size] == xts_reference_encrypt(
        key, data[sector_size:][:sector_size], 0, sector_size
    )


def test_lanes_let_threads_encrypt_at_once_without_mixing_their_work() -> None:
    """Four threads on a two-lane cipher (so they also queue for a lane): every chunk equals the reference."""
    from concurrent.futures import ThreadPoolExecutor

    key = os.urandom(64)
    cipher = XtsCipher(key, 4096, lanes=2)
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
