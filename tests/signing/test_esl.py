"""EFI signature lists: efitools reads ours back, we read efitools', and malformed input is a SigningError."""

from __future__ import annotations

import contextlib
import struct
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import SigningError
from app.signing.esl import EFI_CERT_X509_GUID, SHIELDWRIGHT_OWNER_GUID, build_esl, parse_esl
from app.signing.keys import generate_key, generate_self_signed, write_certificate
from tests.conftest import require_tool, run

OWNER = uuid.UUID("12345678-9abc-def0-1122-334455667788")  # asymmetric: catches byte order


@pytest.fixture(scope="module")
def certs():
    rsa = generate_self_signed(generate_key("rsa2048"), common_name="ESL db one")
    ec = generate_self_signed(generate_key("p256"), common_name="ESL db two, a longer name")
    return [rsa, ec]


def der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_efitools_reads_our_esl(certs, tmp_path: Path) -> None:
    require_tool("sig-list-to-certs")
    esl = tmp_path / "db.esl"
    esl.write_bytes(build_esl(certs, OWNER))
    out = run("sig-list-to-certs", esl, tmp_path / "out").stdout
    assert out.count("X509 Header") == 2
    assert out.lower().count(str(OWNER)) == 2
    assert (tmp_path / "out-0.der").read_bytes() == der(certs[0])
    assert (tmp_path / "out-1.der").read_bytes() == der(certs[1])


def test_we_read_efitools_esl(certs, tmp_path: Path) -> None:
    require_tool("cert-to-efi-sig-list")
    pem = write_certificate(certs[0], tmp_path / "c.pem")
    esl = tmp_path / "efitools.esl"
    run("cert-to-efi-sig-list", "-g", str(OWNER), pem, esl)
    assert parse_esl(esl.read_bytes()) == [(EFI_CERT_X509_GUID, OWNER, der(certs[0]))]
    # and byte-for-byte what we build
    assert build_esl(certs[:1], OWNER) == esl.read_bytes()


def test_round_trip_and_default_owner(certs) -> None:
    assert parse_esl(build_esl(certs)) == [
        (EFI_CERT_X509_GUID, SHIELDWRIGHT_OWNER_GUID, der(c)) for c in certs
    ]
    assert parse_esl(b"") == []


def test_parses_multi_signature_hash_lists() -> None:
    sha256_guid = uuid.UUID("c1c41626-504c-4092-aca9-41f936934328")
    digests = [bytes([i]) * 32 for i in range(3)]
    body = b"".join(OWNER.bytes_le + d for d in digests)
    data = sha256_guid.bytes_le + struct.pack("<III", 28 + len(body), 0, 48) + body
    assert parse_esl(data) == [(sha256_guid, OWNER, d) for d in digests]


def _header(list_size: int, header_size: int, sig_size: int) -> bytes:
    return EFI_CERT_X509_GUID.bytes_le + struct.pack("<III", list_size, header_size, sig_size)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00" * 10,  # shorter than a header
        _header(1000, 0, 100) + b"\x00" * 100,  # list runs past the end
        _header(28, 0, 0),  # zero signature size
        _header(28 + 16, 0, 16) + b"\x00" * 16,  # signature with no data
        _header(28 + 50, 0, 40) + b"\x00" * 50,  # not a whole number of signatures
        _header(28, 0, 20),  # a list with no signatures
        _header(28 + 20, 0xFFFFFFFF, 20) + b"\x00" * 20,  # absurd header size
        _header(10, 0, 20) + b"\x00" * 20,  # list size smaller than its own header
    ],
)
def test_malformed_esl_is_a_signing_error(data: bytes) -> None:
    with pytest.raises(SigningError):
        parse_esl(data)


def test_truncated_and_trailing_garbage(certs) -> None:
    good = build_esl(certs, OWNER)
    for cut in (1, 27, 28, 100, len(good) - 1):
        with pytest.raises(SigningError):
            parse_esl(good[:cut])
    with pytest.raises(SigningError):
        parse_esl(good + b"\x01\x02")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_signing_error(data: bytes) -> None:
    try:
        entries = parse_esl(data)
    except SigningError:
        return
    for sig_type, owner, payload in entries:
        assert isinstance(sig_type, uuid.UUID) and isinstance(owner, uuid.UUID) and payload


_VALID = build_esl([generate_self_signed(generate_key("p256"), common_name="fuzz")], OWNER)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=6),
    st.integers(0, len(_VALID)),
)
def test_mutated_esl_raises_only_signing_error(edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_VALID)
    for pos, value in edits:
        data[pos] = value
    with contextlib.suppress(SigningError):
        parse_esl(bytes(data[:cut]) if cut else bytes(data))
