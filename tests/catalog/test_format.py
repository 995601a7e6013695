"""The catalog content codec and its CMS wrapping: round trips, strict decoding, fuzzing."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.catalog.format import (
    MAGIC,
    Catalog,
    CatalogError,
    CatalogPartition,
    decode_content,
    encode_content,
    parse_version,
    read_catalog,
    sign_catalog,
)
from app.errors import ShieldwrightError, SignatureError
from app.signing.cms import sign_cms

MiB = 1024 * 1024


def _part(number: int, first: int, sectors: int, seed: bytes, block_size: int = MiB) -> CatalogPartition:
    size = sectors * 512
    n = -(-size // block_size)
    digests = b"".join(hashlib.sha256(seed + i.to_bytes(4, "little")).digest() for i in range(n))
    return CatalogPartition.from_digests(
        number=number, partition_guid=f"{number:08x}-0000-4000-8000-000000000001",
        type_guid="4f68bce3-e8cd-4db1-96e7-fbcaf984b709", first_lba=first, last_lba=first + sectors - 1,
        size_bytes=size, block_digests=digests,
    )  # fmt: skip


def sample() -> Catalog:
    return Catalog(
        template_name="Démo Linux",  # non-ASCII survives (UTF-8 JSON)
        template_version="1.2.3.65535",
        created="2026-01-31T12:00:00Z",
        disk_guid="74aafd76-4c03-42f1-a0d6-f2e6e1acaf14",
        block_size=MiB,
        partitions=[_part(2, 34816, 16384, b"a"), _part(3, 51200, 32774, b"b")],
    )


def split(content: bytes) -> tuple[dict, bytes]:
    (h,) = struct.unpack_from("<I", content, 7)
    return json.loads(content[11 : 11 + h]), content[11 + h :]


def join(header: object, digests: bytes, raw: bytes | None = None) -> bytes:
    body = raw if raw is not None else json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(body)) + body + digests


# --- round trips ------------------------------------------------------------------------------------------


def test_round_trip() -> None:
    cat = sample()
    content = encode_content(cat)
    assert content.startswith(b"SWVSC1\n")
    back = decode_content(content)
    assert back == cat
    assert back.partitions[1].block_count == 17  # 16 MiB + 3 KiB: a short last block
    assert back.version_tuple == (1, 2, 3, 65535)
    header, digests = split(content)
    assert list(header) == ["format_version", "template_name", "template_version", "created", "disk_guid",
                            "hash", "block_size", "partitions"]  # fmt: skip
    assert header["format_version"] == 1 and len(digests) == (8 + 17) * 32


def test_extra_keys_are_kept_and_signed() -> None:
    cat = sample()
    cat.extra = {"build": {"recipe": "x.toml"}, "note": "hi"}
    cat.partitions[0].extra = {"label": "boot"}
    back = decode_content(encode_content(cat))
    assert back.extra == cat.extra and back.partitions[0].extra == {"label": "boot"}


@pytest.mark.parametrize("kind", ["signer", "ec"])
def test_signed_round_trip(catalog_keys, kind: str) -> None:
    key = catalog_keys[kind]
    der = sign_catalog(sample(), key.signer)
    signed = read_catalog(der, trusted=[key.cert])
    assert signed.catalog == sample()
    assert signed.signer_certificate == key.cert
    assert signed.signing_time == datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert len(signed.signer_fingerprint) == 64


def test_read_catalog_rejects_an_untrusted_signer(catalog_keys) -> None:
    der = sign_catalog(sample(), catalog_keys["signer"].signer)
    with pytest.raises(SignatureError, match="not trusted"):
        read_catalog(der, trusted=[catalog_keys["other"].cert])


def test_read_catalog_accepts_a_chain_to_a_trusted_ca(catalog_keys) -> None:
    der = sign_catalog(sample(), catalog_keys["leaf"].signer)
    assert (
        read_catalog(der, trusted=[catalog_keys["ca"].cert]).signer_certificate == catalog_keys["leaf"].cert
    )


def test_read_catalog_rejects_other_signed_content(catalog_keys) -> None:
    der = sign_cms(b"hello", catalog_keys["signer"].signer)
    with pytest.raises(CatalogError, match="magic"):
        read_catalog(der)
    detached = sign_cms(encode_content(sample()), catalog_keys["signer"].signer, detached=True)
    with pytest.raises(SignatureError):
        read_catalog(detached)
    for garbage in (b"", b"\x30\x03\x02\x01\x01", encode_content(sample())):
        with pytest.raises(SignatureError):
            read_catalog(garbage)


@pytest.mark.parametrize("with_trust", [True, False])
def test_every_flipped_catalog_byte_fails(catalog_keys, with_trust: bool) -> None:
    """Done-means 2, exhaustively: no single changed bit anywhere in the file (content, signed attributes,
    signature, embedded certificate, CMS framing) gets through - with or without a trust anchor."""
    key = catalog_keys["signer"]
    der = sign_catalog(sample(), key.signer)
    trusted = [key.cert] if with_trust else None
    for pos in range(len(der)):
        bad = bytearray(der)
        bad[pos] ^= 0x01 if pos % 2 else 0x80
        with pytest.raises(ShieldwrightError):
            read_catalog(bytes(bad), trusted=trusted)


def test_invalid_catalogs_are_never_signed(catalog_keys) -> None:
    cat = sample()
    cat.template_version = "1.0"
    with pytest.raises(CatalogError, match="a.b.c.d"):
        sign_catalog(cat, catalog_keys["signer"].signer)


# --- strict decoding --------------------------------------------------------------------------------------


def _set(path: tuple, value: object):
    def edit(h: dict) -> None:
        target = h
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _drop(path: tuple):
    def edit(h: dict) -> None:
        target = h
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return edit


BAD_HEADERS = {
    "format 2": _set(("format_version",), 2),
    "format as string": _set(("format_version",), "1"),
    "format as bool": _set(("format_version",), True),
    "no name": _drop(("template_name",)),
    "empty name": _set(("template_name",), "  "),
    "name with newline": _set(("template_name",), "a\nb"),
    "name too long": _set(("template_name",), "x" * 257),
    "name not a string": _set(("template_name",), 5),
    "version 3 parts": _set(("template_version",), "1.0.0"),
    "version part too big": _set(("template_version",), "1.0.0.65536"),
    "version leading zero": _set(("template_version",), "01.0.0.0"),
    "version negative": _set(("template_version",), "1.0.0.-1"),
    "version letters": _set(("template_version",), "a.b.c.d"),
    "version as list": _set(("template_version",), [1, 0, 0, 0]),
    "created not UTC": _set(("created",), "2026-01-31T12:00:00+01:00"),
    "created no T": _set(("created",), "2026-01-31 12:00:00Z"),
    "created invalid date": _set(("created",), "2026-02-30T12:00:00Z"),
    "disk guid upper": _set(("disk_guid",), "74AAFD76-4C03-42F1-A0D6-F2E6E1ACAF14"),
    "disk guid null": _set(("disk_guid",), None),
    "hash sha512": _set(("hash",), "sha512"),
    "block size 3000": _set(("block_size",), 3000),
    "block size 2048": _set(("block_size",), 2048),
    "block size 128M": _set(("block_size",), 128 * MiB),
    "block size float": _set(("block_size",), 1048576.0),
    "partitions empty": _set(("partitions",), []),
    "partitions object": _set(("partitions",), {}),
    "partition not object": _set(("partitions", 0), 2),
    "number zero": _set(("partitions", 0, "number"), 0),
    "number bool": _set(("partitions", 0, "number"), True),
    "duplicate number": _set(("partitions", 1, "number"), 2),
    "partition guid bad": _set(("partitions", 0, "partition_guid"), "nope"),
    "type guid missing": _drop(("partitions", 0, "type_guid")),
    "first lba zero": _set(("partitions", 0, "first_lba"), 0),
    "last before first": _set(("partitions", 0, "last_lba"), 10),
    "size vs lbas": _set(("partitions", 0, "size_bytes"), 16384 * 512 + 1),
    "size string": _set(("partitions", 0, "size_bytes"), "8388608"),
    "digest upper": lambda h: h["partitions"][0].update(digest=h["partitions"][0]["digest"].upper()),
    "digest other": _set(("partitions", 0, "digest"), "00" * 32),
    "digest short": _set(("partitions", 0, "digest"), "ab"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_strict_header(case: str) -> None:
    header, digests = split(encode_content(sample()))
    header = copy.deepcopy(header)
    BAD_HEADERS[case](header)
    with pytest.raises(CatalogError):
        decode_content(join(header, digests))


def test_block_count_must_match_the_digests() -> None:
    header, digests = split(encode_content(sample()))
    header["partitions"][0]["block_count"] = 7  # the digest bytes still add up: 7 + 18 = 8 + 17
    header["partitions"][1]["block_count"] = 18
    with pytest.raises(CatalogError, match="block_count"):
        decode_content(join(header, digests))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda c: c[:-1],  # truncated digests
        lambda c: c + b"\x00",  # trailing byte
        lambda c: c[:-32],  # one digest missing
        lambda c: b"SWVSC2\n" + c[7:],  # other magic
        lambda c: c[:7] + struct.pack("<I", 10**9) + c[11:],  # header length past the end
        lambda c: c[:9],  # shorter than magic + length
        lambda c: c[:-1] + bytes([c[-1] ^ 1]),  # a block digest changed: digest-of-digests fails
    ],
)
def test_strict_layout(mangle) -> None:
    with pytest.raises(CatalogError):
        decode_content(mangle(encode_content(sample())))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"format_version":1,"format_version":1}',  # duplicate key
        b"[1, 2]",  # not an object
        b"\xff\xfe{}",  # not UTF-8
        b'{"format_version": NaN}',
        b"{" * 100_000,  # deep nesting
        b'{"block_size": ' + b"9" * 5000 + b"}",  # huge integer literal
    ],
)
def test_strict_json(raw: bytes) -> None:
    with pytest.raises(CatalogError):
        decode_content(join(None, b"", raw=raw))


def test_duplicate_key_inside_a_partition() -> None:
    content = encode_content(sample())
    header_raw = split_raw(content)
    patched = header_raw.replace(b'"number":2,', b'"number":2,"number":2,', 1)
    assert patched != header_raw
    with pytest.raises(CatalogError, match="repeats"):
        decode_content(join(None, content[11 + len(header_raw) :], raw=patched))


def split_raw(content: bytes) -> bytes:
    (h,) = struct.unpack_from("<I", content, 7)
    return content[11 : 11 + h]


def test_parse_version_orders_numerically() -> None:
    assert parse_version("1.10.0.0") > parse_version("1.9.65535.65535")
    assert parse_version("0.0.0.0") == (0, 0, 0, 0)


# --- fuzzing ------------------------------------------------------------------------------------------------


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SEED = encode_content(sample())


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.none() | st.integers(0, len(SEED)))  # fmt: skip
def test_mutated_content_raises_only_catalog_errors(edits: list[tuple[int, int]], cut: int | None) -> None:
    blob = bytearray(SEED)
    for pos, value in edits:
        blob[pos] = value
    if cut is not None:
        del blob[cut:]
    with contextlib.suppress(CatalogError):
        decode_content(bytes(blob))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
HEADER_PATHS = [
    *[(k,) for k in ("format_version", "template_name", "template_version", "created", "disk_guid", "hash")],
    ("block_size",), ("partitions",), ("partitions", 0), ("partitions", 1, "number"),
    ("partitions", 0, "first_lba"), ("partitions", 0, "last_lba"), ("partitions", 1, "size_bytes"),
    ("partitions", 0, "block_count"), ("partitions", 1, "digest"), ("partitions", 0, "type_guid"),
]  # fmt: skip


@FUZZ
@given(path=st.sampled_from(HEADER_PATHS), value=JSON_VALUES)
def test_any_json_value_anywhere_raises_only_catalog_errors(path: tuple, value: object) -> None:
    header, digests = split(SEED)
    _set(path, value)(header)
    with contextlib.suppress(CatalogError):
        decode_content(join(header, digests))
