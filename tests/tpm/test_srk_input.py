"""An SRK public key file comes from the VM's host: whatever it holds, reading it gives an :class:`Srk` or a
one-line :class:`SrkError`, never another exception (tpm2-pytss unmarshalling and cryptography's PEM loader
raise several kinds)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st
from tpm2_pytss.types import TPM2B_PUBLIC

from app.tpm.srk import SrkError, srk_from_bytes, srk_template

#: systemd's ECC SRK as a marshalled TPM2B_PUBLIC (unique empty: the bytes are what is fuzzed).
GOOD = bytes(TPM2B_PUBLIC(publicArea=srk_template("ecc")).marshal())


def _pem(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _read_or_refuse(data: bytes) -> None:
    try:
        srk = srk_from_bytes(data)
    except SrkError as exc:
        assert "\n" not in exc.message and exc.hint
        return
    assert srk.kind in ("ecc", "rsa")


def test_the_template_reads_back() -> None:
    assert srk_from_bytes(GOOD).kind == "ecc"


@pytest.mark.parametrize(
    "key",
    [
        dsa.generate_private_key(1024),
        ed25519.Ed25519PrivateKey.generate(),
        ec.generate_private_key(ec.SECP384R1()),
        rsa.generate_private_key(65537, 1024),
    ],
    ids=["dsa", "ed25519", "p384", "rsa1024"],
)
def test_other_keys_are_refused(key) -> None:
    with pytest.raises(SrkError, match="neither a NIST P-256 nor an RSA 2048 key"):
        srk_from_bytes(_pem(key))


@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, len(GOOD)), st.binary(max_size=8))  # fmt: skip
def test_edited_and_cut_srks_are_read_or_refused(edits, cut: int, tail: bytes) -> None:
    data = bytearray(GOOD)
    for at, value in edits:
        data[at] = value
    _read_or_refuse(bytes(data[:cut]) + tail)


@given(st.binary(max_size=400) | st.binary(max_size=200).map(lambda b: b"-----BEGIN PUBLIC KEY-----\n" + b))
def test_random_bytes_and_pems_are_refused(data: bytes) -> None:
    _read_or_refuse(data)
