"""EFI signature lists: ours against virt-fw-sigdb (virt-firmware, run as a program: the independent oracle),
hand-assembled bytes, and hostile edits that may only ever raise MeasureError."""

from __future__ import annotations

import hashlib
import struct
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.measure import siglist
from app.measure.events import MeasureError
from app.measure.siglist import (
    EFI_CERT_SHA256_GUID,
    EFI_CERT_X509_GUID,
    MICROSOFT_OWNER_GUID,
    SHIELDWRIGHT_OWNER_GUID,
    SignatureEntry,
    build_signature_list,
    parse_signature_lists,
    x509_signature_list,
)
from app.signing.keys import generate_key, generate_self_signed
from tests.conftest import run
from tests.measure.test_varstore import virt_tool

OWNER = uuid.UUID("11111111-2222-3333-4444-555555555555")


def _cert_der(cn: str) -> bytes:
    return generate_self_signed(generate_key("p256"), common_name=cn).public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def certs() -> list[bytes]:
    return [_cert_der("siglist test one"), _cert_der("siglist test two, a longer name")]


def test_known_guids() -> None:
    """The GUIDs from the UEFI spec, as written there; the variable GUIDs are events.py's, not redefined."""
    assert str(siglist.EFI_CERT_X509_GUID) == "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"
    assert str(siglist.EFI_CERT_SHA256_GUID) == "c1c41626-504c-4092-aca9-41f936934328"
    assert str(MICROSOFT_OWNER_GUID) == "77fa9abd-0359-4d32-bd60-28f4e78f784b"
    assert not hasattr(siglist, "EFI_GLOBAL_VARIABLE") and not hasattr(siglist, "SHIM_LOCK_GUID")


def test_x509_list_layout_by_hand(certs: list[bytes]) -> None:
    """SignatureType ‖ ListSize ‖ HeaderSize 0 ‖ SignatureSize ‖ owner (mixed-endian) ‖ DER."""
    der = certs[0]
    data = x509_signature_list(der, OWNER)
    expected = (
        bytes.fromhex("a159c0a5e494a74a87b5ab155c2bf072")
        + struct.pack("<III", 28 + 16 + len(der), 0, 16 + len(der))
        + bytes.fromhex("11111111222233334444555555555555")
        + der
    )
    assert data == expected
    (entry,) = parse_signature_lists(data, "db")
    assert entry.kind == "x509" and entry.owner == OWNER and entry.data == der
    assert entry.esd == OWNER.bytes_le + der
    assert entry.certificate is not None
    assert entry.certificate.public_bytes(Encoding.DER) == der


def test_build_groups_hashes_and_separates_certificates(certs: list[bytes]) -> None:
    h1, h2 = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    entries = [
        SignatureEntry(EFI_CERT_X509_GUID, OWNER, certs[0]),
        SignatureEntry(EFI_CERT_X509_GUID, OWNER, certs[0]),  # same size: still a list of its own
        SignatureEntry(EFI_CERT_SHA256_GUID, OWNER, h1),
        SignatureEntry(EFI_CERT_SHA256_GUID, MICROSOFT_OWNER_GUID, h2),
    ]
    data = build_signature_list(entries)
    assert parse_signature_lists(data, "db") == entries
    assert len(data) == 3 * 28 + 2 * (16 + len(certs[0])) + 2 * 48  # two cert lists, one hash list
    assert parse_signature_lists(b"", "dbx") == []
    with pytest.raises(MeasureError, match="sha256 signature must be 32 bytes"):
        build_signature_list([SignatureEntry(EFI_CERT_SHA256_GUID, OWNER, b"short")])
    with pytest.raises(MeasureError):
        x509_signature_list(b"not a certificate", OWNER)


def test_we_read_what_virt_fw_sigdb_writes(tmp_path: Path, certs: list[bytes]) -> None:
    """virt-fw-sigdb builds a database of a certificate and two hashes; we read the same entries."""
    pem = tmp_path / "c.pem"
    der = certs[1]
    from cryptography import x509

    pem.write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))
    h1, h2 = hashlib.sha256(b"one").hexdigest(), hashlib.sha256(b"two").hexdigest()
    out = tmp_path / "t.esl"
    ms = str(MICROSOFT_OWNER_GUID)
    run(virt_tool("virt-fw-sigdb"), "--add-cert", str(OWNER), pem, "--add-hash", ms, h1, "--add-hash", ms, h2,
        "--output", out)  # fmt: skip
    entries = parse_signature_lists(out.read_bytes(), "t.esl")
    assert [(e.kind, e.owner, e.data) for e in entries] == [
        ("x509", OWNER, der),
        ("sha256", MICROSOFT_OWNER_GUID, bytes.fromhex(h1)),
        ("sha256", MICROSOFT_OWNER_GUID, bytes.fromhex(h2)),
    ]
    # and what we build, virt-fw-sigdb reads (its printout names our certificate and both hashes)
    ours = tmp_path / "ours.esl"
    ours.write_bytes(build_signature_list(entries))
    printed = run(virt_tool("virt-fw-sigdb"), "--input", ours, "--print").stdout
    printed += run(virt_tool("virt-fw-sigdb"), "--input", ours, "--print").stderr
    assert "siglist type=guid:EfiCertX509 count=1" in printed
    assert "siglist type=guid:EfiCertSha256 count=2" in printed
    assert h1 in printed and h2 in printed and "siglist test two" in printed
    assert ours.read_bytes() == out.read_bytes()


def _list(type_guid: uuid.UUID, list_size: int, header: int, sig_size: int, body: bytes) -> bytes:
    return type_guid.bytes_le + struct.pack("<III", list_size, header, sig_size) + body


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\x00" * 10, "too short for a signature list header"),
        (_list(EFI_CERT_SHA256_GUID, 28 + 48 + 1, 0, 48, bytes(48)), "does not fit"),
        (_list(EFI_CERT_SHA256_GUID, 27, 0, 48, b""), "does not fit"),
        (_list(EFI_CERT_SHA256_GUID, 28, 0, 48, b""), "not a whole number"),
        (_list(EFI_CERT_SHA256_GUID, 28 + 47, 0, 47, bytes(47)), "wrong for sha256"),
        (_list(EFI_CERT_SHA256_GUID, 28 + 48 + 4, 4, 48, bytes(52)), "SignatureHeaderSize is 4"),
        (_list(EFI_CERT_SHA256_GUID, 28 + 8, 0, 8, bytes(8)), "smaller than the owner GUID"),
        (_list(EFI_CERT_SHA256_GUID, 28 + 96, 0, 48, bytes(95)), "does not fit"),
        (_list(EFI_CERT_X509_GUID, 28 + 20, 0, 20, bytes(20)), "offset 28 is not a DER certificate"),
        (_list(EFI_CERT_SHA256_GUID, 0xFFFFFFFF, 0, 48, bytes(48)), "does not fit"),
    ],
)
def test_malformed_lists_are_one_line_errors(data: bytes, fragment: str) -> None:
    with pytest.raises(MeasureError) as info:
        parse_signature_lists(data, "db")
    assert fragment in info.value.message and "\n" not in info.value.one_line()
    assert info.value.message.startswith("db: ") and "offset" in info.value.message


def test_unknown_types_are_kept() -> None:
    other = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
    (entry,) = parse_signature_lists(_list(other, 28 + 20, 0, 20, OWNER.bytes_le + b"abcd"), "db")
    assert entry.kind == "unknown" and entry.data == b"abcd" and entry.certificate is None


def test_size_bound() -> None:
    with pytest.raises(MeasureError, match="too large"):
        parse_signature_lists(bytes(siglist.MAX_DATABASE_SIZE + 1), "dbx")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_signature_lists_only_raise_measure_error(certs: list[bytes], data: st.DataObject) -> None:
    """Bit flips, overwritten size fields, truncation and extension of a db with a certificate and hashes."""
    seed = bytearray(
        build_signature_list(
            [
                SignatureEntry(EFI_CERT_X509_GUID, OWNER, certs[0]),
                SignatureEntry(EFI_CERT_SHA256_GUID, OWNER, bytes(32)),
                SignatureEntry(EFI_CERT_SHA256_GUID, SHIELDWRIGHT_OWNER_GUID, bytes(range(32))),
            ]
        )
    )
    second = 28 + 16 + len(certs[0])
    size_fields = [16, 20, 24, second + 16, second + 20, second + 24]
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "field", "cut", "grow"]))
        if action == "flip" and seed:
            pos = data.draw(st.integers(0, len(seed) - 1))
            seed[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "field":
            pos = data.draw(st.sampled_from(size_fields))
            value = data.draw(
                st.sampled_from([0, 1, 15, 16, 28, 0x7FFFFFFF, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1)
            )
            seed[pos : pos + 4] = value.to_bytes(4, "little")
        elif action == "cut":
            del seed[data.draw(st.integers(0, len(seed))) :]
        else:
            seed += data.draw(st.binary(max_size=64))
    try:
        entries = parse_signature_lists(bytes(seed), "db")
    except MeasureError as exc:
        assert "\n" not in exc.one_line()
    else:
        for e in entries:
            _ = e.esd, e.kind, e.certificate
