"""LUKS2 containers we write, judged by cryptsetup; containers cryptsetup writes, read by us."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import ShieldwrightError, WrongPassphraseError
from app.luks.container import (
    LuksParams,
    add_keyslot,
    add_token,
    create_header,
    generate_recovery_key,
    new_volume_key,
    read_header,
    read_header_area,
    remove_keyslot,
    unlock,
    unlock_keyslot,
)
from app.luks.errors import LuksError, LuksHeaderError
from app.luks.header import Metadata, build_metadata, read_metadata
from app.luks.kdf import KdfParams
from app.luks.xts import XtsCipher
from tests.conftest import luks_format, run
from tests.luks.cryptsetup import dump_json, dump_volume_key, luks_dump, test_passphrase

MiB = 1024 * 1024
PAYLOAD = 4 * MiB
PBKDF2 = KdfParams("pbkdf2", 1000, None, None, b"\0" * 32)  # salts are replaced per keyslot anyway
ARGON2 = KdfParams("argon2id", 1, 32768, 4, b"\0" * 32)


def independent_decrypt(key: bytes, data: bytes, sector_size: int) -> bytes:
    """Per-sector AES-XTS with cryptography's XTS mode, IV = byte offset / 512: not our code."""
    out = bytearray()
    for pos in range(0, len(data), sector_size):
        dec = Cipher(algorithms.AES(key), modes.XTS((pos // 512).to_bytes(16, "little"))).decryptor()
        out += dec.update(data[pos : pos + sector_size]) + dec.finalize()
    return bytes(out)


def reader(data: bytes):
    return lambda offset, length: data[offset : offset + length]


def write_container(path: Path, header: bytes, volume_key: bytes | bytearray, sector_size: int) -> bytes:
    """Header area, then PAYLOAD random bytes encrypted with our bulk XTS. Returns the plaintext."""
    plain = os.urandom(PAYLOAD)
    with open(path, "wb") as f:
        f.write(header)
        f.write(XtsCipher(volume_key, sector_size).encrypt(plain, 0))
    return plain


@pytest.fixture(scope="module", params=[4096, 512])
def made(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A container of ours with a pbkdf2, an argon2id and a recovery-key keyslot."""
    sector_size = request.param
    volume_key = new_volume_key()
    recovery = generate_recovery_key()
    params = LuksParams(
        sector_size=sector_size, label="root-x86-64", subsystem="shieldwright", digest_iterations=1000
    )
    header = create_header(
        volume_key, params, [(b"first pass", PBKDF2), ("second pässphrase", ARGON2), (recovery, PBKDF2)]
    )
    path = tmp_path_factory.mktemp("made") / "c.luks"
    plain = write_container(path, header, volume_key, sector_size)
    return {
        "path": path,
        "vk": bytes(volume_key),
        "plain": plain,
        "ss": sector_size,
        "recovery": recovery,
        "hdr": header,
    }


def test_header_area_layout(made) -> None:
    header = made["hdr"]
    assert len(header) == 16 * MiB
    assert header[:6] == b"LUKS\xba\xbe" and header[16384 : 16384 + 6] == b"SKUL\xba\xbe"
    assert header[104:168] != header[16384 + 104 : 16384 + 168]  # per-copy salts


def test_luksdump_shows_everything_without_warnings(made) -> None:
    out = luks_dump(made["path"])
    assert "Version:       \t2" in out
    assert "Label:         \troot-x86-64" in out and "Subsystem:     \tshieldwright" in out
    assert re.search(r"offset: 16777216 \[bytes\]\s+length: \(whole device\)\s+cipher: aes-xts-plain64", out)
    assert f"sector: {made['ss']} [bytes]" in out
    for slot in ("0", "1", "2"):
        assert f"  {slot}: luks2" in out
    assert "PBKDF:      argon2id" in out and "PBKDF:      pbkdf2" in out
    meta = dump_json(made["path"])
    assert meta["digests"]["0"]["keyslots"] == ["0", "1", "2"]
    assert meta["segments"]["0"] == {
        "type": "crypt", "offset": "16777216", "size": "dynamic", "iv_tweak": "0",
        "encryption": "aes-xts-plain64", "sector_size": made["ss"],
    }  # fmt: skip
    assert meta["config"] == {"json_size": "12288", "keyslots_size": "16744448"}
    assert meta["keyslots"]["1"]["kdf"]["memory"] == 32768


def test_cryptsetup_accepts_each_passphrase_and_rejects_wrong(made, tmp_path: Path) -> None:
    for passphrase in (b"first pass", "second pässphrase", made["recovery"]):
        assert test_passphrase(made["path"], passphrase, tmp_path) == 0
    assert test_passphrase(made["path"], b"first pas", tmp_path) == 2
    assert test_passphrase(made["path"], made["recovery"].upper() + "x", tmp_path) == 2


def test_cryptsetup_volume_key_decrypts_whole_segment(made, tmp_path: Path) -> None:
    key = dump_volume_key(made["path"], b"first pass", tmp_path)
    assert key == made["vk"]
    data = made["path"].read_bytes()[16 * MiB :]
    assert len(data) == PAYLOAD
    assert independent_decrypt(key, data, made["ss"]) == made["plain"]


def test_we_unlock_our_own(made) -> None:
    assert unlock(made["hdr"], b"first pass") == made["vk"]
    assert unlock_keyslot(made["hdr"], made["recovery"]) == (2, bytearray(made["vk"]))
    with pytest.raises(WrongPassphraseError) as err:
        unlock(made["hdr"], b"nope")
    assert "nope" not in str(err.value) and "nope" not in err.value.hint
    header = read_header(reader(made["hdr"]))
    assert header.sector_size == made["ss"] and header.data_offset == 16 * MiB
    assert sorted(header.keyslots) == [0, 1, 2] and header.problems == []
    assert header.label == "root-x86-64"
    assert json.loads(json.dumps(header.to_dict()))["metadata"]["segments"]["0"]["type"] == "crypt"
    assert made["vk"].hex() not in repr(header)


def test_recovery_key_format() -> None:
    key = generate_recovery_key()
    groups = key.split("-")
    assert len(key) == 71 and len(groups) == 8 and all(len(g) == 8 for g in groups)
    assert set(key.replace("-", "")) <= set("cbdefghijklnrtuv")
    assert generate_recovery_key() != key


def test_add_and_remove_keyslots_seen_by_cryptsetup(made, tmp_path: Path) -> None:
    header = made["hdr"]
    volume_key = unlock(header, b"first pass")
    header = remove_keyslot(header, 0)
    header = add_keyslot(header, volume_key, b"added later", ARGON2)
    path = tmp_path / "c.luks"
    shutil.copyfile(made["path"], path)
    with open(path, "r+b") as f:
        f.write(header)
    out = luks_dump(path)
    assert "  0: luks2" in out  # the new keyslot took the freed id 0 (and its area) ...
    assert test_passphrase(path, b"first pass", tmp_path) == 2
    assert test_passphrase(path, b"added later", tmp_path) == 0
    assert test_passphrase(path, "second pässphrase", tmp_path) == 0
    meta = dump_json(path)
    assert sorted(meta["keyslots"]) == ["0", "1", "2"]
    assert meta["keyslots"]["0"]["kdf"]["type"] == "argon2id"
    assert meta["keyslots"]["0"]["area"]["offset"] == "32768"
    assert sorted(meta["digests"]["0"]["keyslots"]) == ["0", "1", "2"]
    assert read_header(reader(header)).seqid == 3
    header = remove_keyslot(header, 2)
    with open(path, "r+b") as f:
        f.write(header)
    assert "  2: luks2" not in luks_dump(path)
    assert test_passphrase(path, made["recovery"], tmp_path) == 2
    with pytest.raises(LuksError):
        add_keyslot(header, os.urandom(64), b"x", PBKDF2)  # not this container's key
    with pytest.raises(LuksError):
        remove_keyslot(remove_keyslot(header, 1), 0)  # the last one


def test_token_shows_in_luksdump(made, tmp_path: Path) -> None:
    token = {"type": "systemd-tpm2", "tpm2-blob": "AAAA", "tpm2-pcrs": [7], "tpm2-pcr-bank": "sha256",
             "tpm2-primary-alg": "ecc", "tpm2-policy-hash": "00" * 32, "tpm2-pin": False}  # fmt: skip
    header, token_id = add_token(made["hdr"], token, [1])
    assert token_id == 0
    path = tmp_path / "c.luks"
    shutil.copyfile(made["path"], path)
    with open(path, "r+b") as f:
        f.write(header)
    out = luks_dump(path)
    assert re.search(r"Tokens:\s+0: systemd-tpm2", out)
    assert dump_json(path)["tokens"]["0"] == {**token, "keyslots": ["1"]}
    header, second = add_token(header, {"type": "shieldwright-test", "note": "x"}, [0, 2])
    assert second == 1
    # removing keyslot 1 drops the token bound only to it, keeps the other
    header = remove_keyslot(header, 1)
    tokens = read_header(reader(header)).tokens
    assert list(tokens) == [1] and tokens[1]["keyslots"] == ["0", "2"]
    with pytest.raises(LuksError):
        add_token(header, {"type": "luks2-keyring"}, [0])
    with pytest.raises(LuksError):
        add_token(header, {"type": "x"}, [5])
    with pytest.raises(LuksHeaderError):
        add_token(header, {"type": "x", "big": "a" * 20000}, [0])  # does not fit in a 12 KiB JSON area


@pytest.mark.parametrize("pbkdf", ["pbkdf2", "argon2id"])
def test_we_read_and_unlock_cryptsetup_containers(tmp_path: Path, pbkdf: str) -> None:
    path = tmp_path / "theirs.luks"
    if pbkdf == "pbkdf2":
        luks_format(path)
    else:
        path.write_bytes(bytes(20 * MiB))
        key = path.with_name(path.name + ".key")
        key.write_bytes(b"not-a-secret")
        run("cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode", "--pbkdf", "argon2id",
            "--pbkdf-force-iterations", "4", "--pbkdf-memory", "32768", "--pbkdf-parallel", "2",
            "--label", "theirs", "--key-file", key, path)  # fmt: skip
    data = path.read_bytes()
    header = read_header(reader(data))
    assert header.problems == []
    assert header.keyslots[0].kdf.type == pbkdf
    area = read_header_area(reader(data))
    volume_key = unlock(area, b"not-a-secret")
    assert bytes(volume_key) == dump_volume_key(path, b"not-a-secret", tmp_path)
    with pytest.raises(WrongPassphraseError):
        unlock(area, b"not-a-secreT")
    # and cryptsetup accepts a keyslot we add to its container
    new_area = add_keyslot(area, volume_key, b"ours too", PBKDF2)
    with open(path, "r+b") as f:
        f.write(new_area)
    assert test_passphrase(path, b"ours too", tmp_path) == 0
    assert test_passphrase(path, b"not-a-secret", tmp_path) == 0
    luks_dump(path)


def test_damaged_primary_is_read_from_secondary(made, tmp_path: Path) -> None:
    damaged = bytearray(made["hdr"])
    damaged[4096 + 10] ^= 0x01  # inside the primary JSON area
    header = read_header(reader(bytes(damaged)))
    assert any("primary" in p for p in header.problems)
    assert sorted(header.keyslots) == [0, 1, 2]
    assert unlock(bytes(damaged), b"first pass") == made["vk"]
    path = tmp_path / "damaged.luks"
    shutil.copyfile(made["path"], path)
    with open(path, "r+b") as f:
        f.write(damaged)
    assert test_passphrase(path, b"first pass", tmp_path) == 0  # cryptsetup agrees
    assert dump_volume_key(path, b"first pass", tmp_path) == made["vk"]
    # both copies damaged: a clean error
    damaged[16384 + 4096 + 10] ^= 0x01
    with pytest.raises(LuksHeaderError):
        read_header(reader(bytes(damaged)))


def test_newer_secondary_wins() -> None:
    volume_key = new_volume_key()
    old = create_header(volume_key, LuksParams(digest_iterations=1000), [(b"a", PBKDF2)])
    new = add_keyslot(old, volume_key, b"b", PBKDF2)
    mixed = old[:16384] + new[16384:]  # primary at seqid 1, secondary at seqid 2
    header = read_header(reader(mixed))
    assert header.seqid == 2 and sorted(header.keyslots) == [0, 1]
    assert any("differ" in p for p in header.problems)


def test_not_luks_and_bad_params() -> None:
    with pytest.raises(LuksHeaderError):
        read_header(reader(bytes(1 * MiB)))
    with pytest.raises(LuksHeaderError):
        read_header(reader(b""))
    volume_key = new_volume_key()
    with pytest.raises(LuksError):
        create_header(volume_key, LuksParams(sector_size=1000), [(b"a", PBKDF2)])
    with pytest.raises(LuksError):
        create_header(volume_key, LuksParams(metadata_size=20000), [(b"a", PBKDF2)])
    with pytest.raises(LuksError):
        create_header(new_volume_key(256), LuksParams(), [(b"a", PBKDF2)])
    with pytest.raises(LuksError):
        create_header(volume_key, LuksParams(), [])
    with pytest.raises(LuksError):  # keyslots area too small for one 258048-byte keyslot
        create_header(
            volume_key, LuksParams(data_offset=2 * 16384 + 4096, digest_iterations=1000), [(b"a", PBKDF2)]
        )


def test_larger_metadata_and_small_offset(tmp_path: Path) -> None:
    volume_key = new_volume_key()
    params = LuksParams(metadata_size=65536, data_offset=4 * MiB, uuid="12345678-1234-5678-9abc-123456789abc",
                        digest_iterations=1000)  # fmt: skip
    header = create_header(volume_key, params, [(b"pw", PBKDF2)])
    assert len(header) == 4 * MiB
    path = tmp_path / "c.luks"
    path.write_bytes(header + XtsCipher(volume_key, 4096).encrypt(bytes(MiB), 0))
    out = luks_dump(path)
    assert (
        "Metadata area: \t65536 [bytes]" in out
        and "UUID:          \t12345678-1234-5678-9abc-123456789abc" in out
    )
    assert test_passphrase(path, b"pw", tmp_path) == 0


@pytest.fixture(scope="module")
def small_header() -> bytes:
    return create_header(new_volume_key(), LuksParams(digest_iterations=1000), [(b"pw", PBKDF2)])[: 2 * 16384]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_header_bytes_raise_only_shieldwright_errors(
    small_header: bytes, data: st.DataObject
) -> None:
    buf = bytearray(small_header)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        buf = buf[: data.draw(st.integers(0, len(buf)))]
    with contextlib.suppress(ShieldwrightError):
        read_header(reader(bytes(buf)))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=8)
    | st.sampled_from(["0", "1", "18446744073709551616", "dynamic"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_json_with_valid_checksums_raises_only_shieldwright_errors(
    small_header: bytes, data: st.DataObject
) -> None:
    meta = read_metadata(reader(small_header))
    paths = [p for p in _paths(meta.json) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        target = meta.json
        try:
            for step in path[:-1]:
                target = target[step]
            if data.draw(st.booleans()) and isinstance(target, dict):
                del target[path[-1]]
            else:
                target[path[-1]] = data.draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    blob = build_metadata(Metadata(json=meta.json, hdr_size=meta.hdr_size, seqid=meta.seqid + 1))
    with contextlib.suppress(ShieldwrightError):
        read_header(reader(blob))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("keyslots", "\u00b2"), {}, "keyslot id '²' is invalid"),
        (("config", "keyslots_size"), "\u00b2", "keyslots_size is not a uint64 string"),
        (("digests", "0", "segments"), ["\u00b2"], "segments is not a list of id strings"),
    ],
)
def test_digits_int_cannot_read_are_named(small_header: bytes, path, value, message) -> None:
    """``"²".isdigit()`` is true and ``int("²")`` fails: such ids and sizes were refused only as
    "malformed LUKS2 JSON metadata (ValueError)"; now as what they are."""
    meta = read_metadata(reader(small_header))
    target = meta.json
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    blob = build_metadata(Metadata(json=meta.json, hdr_size=meta.hdr_size, seqid=meta.seqid + 1))
    with pytest.raises(LuksHeaderError, match=re.escape(message)):
        read_header(reader(blob))
