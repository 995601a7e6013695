"""The DER codec: known encodings, round trips, certificates made by cryptography, and strict refusals."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import SigningError
from app.signing import der
from app.signing.der import DerError


@pytest.mark.parametrize(
    ("value", "hexed"),
    [(0, "020100"), (127, "02017f"), (128, "02020080"), (256, "02020100"), (-1, "0201ff"),
     (-128, "020180"), (-129, "0202ff7f"), (2**64, "0209010000000000000000")],
)  # fmt: skip
def test_integer_known_encodings(value: int, hexed: str) -> None:
    assert der.integer(value).hex() == hexed
    assert der.decode(bytes.fromhex(hexed)).as_int() == value


@pytest.mark.parametrize(
    ("dotted", "hexed"),
    [("1.2.840.113549.1.7.2", "06092a864886f70d010702"), ("2.16.840.1.101.3.4.2.1", "0609608648016503040201"),
     ("1.3.6.1.4.1.311.2.1.4", "060a2b060104018237020104"), ("2.999.3", "0603883703")],
)  # fmt: skip
def test_oid_known_encodings(dotted: str, hexed: str) -> None:
    assert der.oid(dotted).hex() == hexed
    assert der.decode(bytes.fromhex(hexed)).as_oid() == dotted


@pytest.mark.parametrize(("n", "prefix"), [(0, "0400"), (127, "047f"), (128, "048180"), (256, "04820100")])
def test_length_forms(n: int, prefix: str) -> None:
    encoded = der.octet_string(b"\xaa" * n)
    assert encoded.hex().startswith(prefix)
    assert der.decode(encoded).as_octets() == b"\xaa" * n


def test_set_of_is_sorted_and_sequence_keeps_order() -> None:
    a, b = der.integer(2), der.integer(1)
    assert der.set_of([a, b]) == bytes.fromhex("3106") + b + a
    assert der.sequence(a, b) == bytes.fromhex("3006") + a + b


def test_explicit_and_implicit_tags() -> None:
    inner = der.integer(5)
    assert der.explicit(0, inner).hex() == "a003020105"
    assert der.implicit(1, inner).hex() == "810105"
    assert der.implicit(0, der.sequence(inner)).hex() == "a003020105"
    el = der.decode(der.explicit(3, inner))
    assert el.is_(3, der.CONTEXT) and el.constructed and el.children[0].as_int() == 5


def test_times_utc_and_generalized() -> None:
    t = dt.datetime(2026, 5, 17, 8, 9, 10, tzinfo=dt.UTC)
    assert der.time(t) == b"\x17\x0d" + b"260517080910Z"
    late = dt.datetime(2051, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert der.time(late) == b"\x18\x0f" + b"20510102030405Z"
    assert der.decode(der.time(t)).as_time() == t
    assert der.decode(der.time(late)).as_time() == late
    assert der.decode(b"\x17\x0d" + b"500101000000Z").as_time().year == 1950
    assert der.decode(b"\x17\x0d" + b"491231235959Z").as_time().year == 2049


def test_null_boolean_bmp() -> None:
    assert der.null() == b"\x05\x00" and der.decode(der.null()).as_null() is None
    assert der.decode(der.boolean(True)).as_bool() is True
    assert der.decode(der.boolean(False)).as_bool() is False
    assert der.bmp_string("ab") == b"\x1e\x04\x00a\x00b"


def test_decodes_a_certificate_made_by_cryptography() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "der test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(0x00FF_1234_5678).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    blob = cert.public_bytes(serialization.Encoding.DER)
    root = der.decode(blob, deep=True)
    assert root.raw == blob
    tbs, alg, sig = root.items(count=(3, 3))
    assert tbs.children[0].is_(0, der.CONTEXT)
    assert tbs.children[1].as_int() == cert.serial_number
    assert alg.children[0].as_oid() == cert.signature_algorithm_oid.dotted_string
    assert sig.is_(der.BIT_STRING)
    assert tbs.children[3].raw == cert.issuer.public_bytes()


@pytest.mark.parametrize(
    "bad",
    [
        "",  # nothing
        "30",  # no length
        "3005020101",  # content shorter than length
        "308003020101 0000",  # indefinite length
        "04810100",  # non-minimal long-form length
        "0482000100",  # leading zero length byte
        "020100ff",  # trailing bytes
        "2203020101",  # constructed INTEGER
        "1000",  # primitive SEQUENCE
        "0000",  # end-of-contents
        "1f0100",  # low tag number in high-tag form
        "0489ffffffffffffffffff",  # length field too long
    ],
)
def test_malformed_is_refused(bad: str) -> None:
    with pytest.raises(DerError):
        der.decode(bytes.fromhex(bad.replace(" ", "")), deep=True)


@pytest.mark.parametrize(
    ("hexed", "method"),
    [("02020001", "as_int"), ("0202ff80", "as_int"), ("0200", "as_int"), ("0600", "as_oid"),
     ("06028001", "as_oid"), ("060181", "as_oid"), ("010101", "as_bool"), ("050101", "as_null"),
     ("170d3236313332353030303030305a", "as_time"), ("1703323630", "as_time"), ("040100", "as_int")],
)  # fmt: skip
def test_malformed_values_are_refused(hexed: str, method: str) -> None:
    with pytest.raises(DerError):
        getattr(der.decode(bytes.fromhex(hexed)), method)()


def test_nesting_depth_is_limited() -> None:
    blob = b"\x05\x00"
    for _ in range(200):
        blob = der.sequence(blob)
    with pytest.raises(DerError, match="nesting"):
        der.decode(blob, deep=True)
    shallow = der.sequence(der.sequence(der.null()))
    assert der.decode(shallow, deep=True, max_depth=2).children[0].children[0].is_(der.NULL)


def test_errors_are_signing_errors() -> None:
    assert issubclass(DerError, SigningError)


def _touch_everything(el: der.Element) -> None:
    pending = [el]
    while pending:
        e = pending.pop()
        for method in ("as_int", "as_oid", "as_octets", "as_bool", "as_null", "as_time"):
            with contextlib.suppress(DerError):
                getattr(e, method)()
        pending.extend(e.children)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_raise_der_errors(blob: bytes) -> None:
    with contextlib.suppress(DerError):
        _touch_everything(der.decode(blob, deep=True))


_SAMPLE = der.sequence(
    der.integer(1), der.oid("1.2.840.113549.1.7.1"), der.explicit(0, der.octet_string(b"x" * 130)),
    der.set_of([der.boolean(True), der.null()]), der.time(dt.datetime(2030, 1, 1, tzinfo=dt.UTC)),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_SAMPLE) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, len(_SAMPLE)))  # fmt: skip
def test_mutated_der_only_raises_der_errors(edits: list[tuple[int, int]], cut: int) -> None:
    blob = bytearray(_SAMPLE)
    for pos, value in edits:
        blob[pos] = value
    with contextlib.suppress(DerError):
        _touch_everything(der.decode(bytes(blob[: max(cut, 1)] if cut < len(blob) else blob), deep=True))
