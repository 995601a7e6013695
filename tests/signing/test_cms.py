"""CMS SignedData: openssl cms verifies ours, ours verifies openssl's, and a changed byte fails both."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import SignatureError
from app.signing import cms
from tests.conftest import require_tool, run
from tests.signing.pe_helpers import TestKey, openssl_key

CONTENT = b"Volume Signature Catalog stand-in\n\x00\x01\x02 binary bytes \xff\r\n"
KINDS = ("rsa", "p256", "p384")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TestKey]:
    d = tmp_path_factory.mktemp("cmskeys")
    out = {kind: openssl_key(d, f"cms-{kind}", kind) for kind in KINDS}
    out["ca"] = openssl_key(d, "cms-ca")
    out["leaf"] = openssl_key(d, "cms-leaf", ca=(out["ca"],))
    return out


def _hash_for(kind: str) -> str:
    return "sha384" if kind == "p384" else "sha256"


def _openssl_verify(
    tmp: Path, sig: bytes, ca: Path, content: bytes | None = None
) -> subprocess.CompletedProcess:
    require_tool("openssl")
    sig_path, out_path = tmp / "sig.der", tmp / "out.bin"
    sig_path.write_bytes(sig)
    cmd = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sig_path), "-CAfile", str(ca),
           "-purpose", "any", "-out", str(out_path)]  # fmt: skip
    if content is not None:
        (tmp / "content.bin").write_bytes(content)
        cmd += ["-content", str(tmp / "content.bin")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    proc.stdout = out_path.read_bytes().decode("latin-1") if proc.returncode == 0 else ""
    return proc


def _openssl_sign(tmp: Path, key: TestKey, content: bytes, *, detached: bool, md: str = "sha256") -> bytes:
    src, out = tmp / "in.bin", tmp / "openssl.p7"
    src.write_bytes(content)
    run(
        "openssl",
        "cms",
        "-sign",
        "-binary",
        "-outform",
        "DER",
        *([] if detached else ["-nodetach"]),
        "-nosmimecap",
        "-md",
        md,
        "-in",
        src,
        "-signer",
        key.cert_path,
        "-inkey",
        key.key_path,
        "-out",
        out,
    )
    return out.read_bytes()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("detached", [False, True])
def test_openssl_verifies_ours(keys: dict[str, TestKey], kind: str, detached: bool, tmp_path: Path) -> None:
    key = keys[kind]
    sig = cms.sign_cms(CONTENT, key.signer, detached=detached, hash_name=_hash_for(kind))  # type: ignore[arg-type]
    proc = _openssl_verify(tmp_path, sig, key.cert_path, CONTENT if detached else None)
    assert proc.returncode == 0, proc.stderr
    assert "Verification successful" in proc.stderr
    assert proc.stdout.encode("latin-1") == CONTENT


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("detached", [False, True])
def test_ours_verifies_openssls(keys: dict[str, TestKey], kind: str, detached: bool, tmp_path: Path) -> None:
    key = keys[kind]
    sig = _openssl_sign(tmp_path, key, CONTENT, detached=detached, md=_hash_for(kind))
    result = cms.verify_cms(sig, content=CONTENT if detached else None, trusted=[key.cert])
    assert result.signer == key.cert
    assert result.content_type == cms.OID_DATA
    assert result.content == (None if detached else CONTENT)
    assert result.hash_name == _hash_for(kind)
    assert result.signing_time is not None
    assert abs(result.signing_time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


def test_verification_result_reports_what_was_signed(keys: dict[str, TestKey]) -> None:
    when = dt.datetime(2051, 2, 3, 4, 5, 6, tzinfo=dt.UTC)  # a GeneralizedTime signing time
    sig = cms.sign_cms(CONTENT, keys["rsa"].signer, signing_time=when, content_type_oid="1.2.3.4.5")
    result = cms.verify_cms(sig, trusted=[keys["rsa"].cert])
    assert (result.content_type, result.content, result.signing_time) == ("1.2.3.4.5", CONTENT, when)
    assert result.signed_data.version == 3  # RFC 5652: non-data eContentType


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize("source", ["ours", "openssl"])
@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_changed_content_fails_both(keys: dict[str, TestKey], source: str, kind: str, tmp_path: Path) -> None:
    key = keys[kind]
    sig = (cms.sign_cms(CONTENT, key.signer, detached=True) if source == "ours"
           else _openssl_sign(tmp_path, key, CONTENT, detached=True))  # fmt: skip
    changed = _flip(CONTENT, 5)
    with pytest.raises(SignatureError, match="message digest mismatch"):
        cms.verify_cms(sig, content=changed, trusted=[key.cert])
    assert _openssl_verify(tmp_path, sig, key.cert_path, changed).returncode != 0
    # and the untouched pair still verifies in both, so the failures above are about the change
    cms.verify_cms(sig, content=CONTENT, trusted=[key.cert])
    assert _openssl_verify(tmp_path, sig, key.cert_path, CONTENT).returncode == 0


@pytest.mark.parametrize("source", ["ours", "openssl"])
@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_changed_signature_fails_both(
    keys: dict[str, TestKey], source: str, kind: str, tmp_path: Path
) -> None:
    key = keys[kind]
    sig = (cms.sign_cms(CONTENT, key.signer) if source == "ours"
           else _openssl_sign(tmp_path, key, CONTENT, detached=False))  # fmt: skip
    # The signature value is the last field of the last SignerInfo: the final bytes of the DER.
    bad = _flip(sig, len(sig) - 3)
    with pytest.raises(SignatureError):
        cms.verify_cms(bad, trusted=[key.cert])
    assert _openssl_verify(tmp_path, bad, key.cert_path).returncode != 0


def test_changed_encapsulated_content_fails_both(keys: dict[str, TestKey], tmp_path: Path) -> None:
    key = keys["rsa"]
    sig = cms.sign_cms(CONTENT, key.signer)
    bad = sig.replace(CONTENT, _flip(CONTENT, 0))
    assert bad != sig
    with pytest.raises(SignatureError, match="message digest mismatch"):
        cms.verify_cms(bad, trusted=[key.cert])
    assert _openssl_verify(tmp_path, bad, key.cert_path).returncode != 0


def test_chain_to_a_trusted_ca(keys: dict[str, TestKey], tmp_path: Path) -> None:
    leaf, ca = keys["leaf"], keys["ca"]
    sig = cms.sign_cms(CONTENT, leaf.signer)  # the chain (the CA) is embedded
    assert cms.verify_cms(sig, trusted=[ca.cert]).signer == leaf.cert
    assert _openssl_verify(tmp_path, sig, ca.cert_path).returncode == 0
    with pytest.raises(SignatureError, match="not trusted"):
        cms.verify_cms(sig, trusted=[keys["rsa"].cert])
    # no trust anchors given: signature checked, chain not
    assert cms.verify_cms(sig).signer == leaf.cert


def test_chain_missing_from_the_signature(keys: dict[str, TestKey]) -> None:
    leaf, ca = keys["leaf"], keys["ca"]
    sig = cms.sign_cms(CONTENT, leaf.signer, include_chain=False)
    sd = cms.parse_signed_data(sig)
    assert sd.certificates == (leaf.cert,)
    assert cms.verify_cms(sig, trusted=[ca.cert]).signer == leaf.cert  # the anchor itself is the issuer


def test_wrong_signer_certificate_is_not_trusted(keys: dict[str, TestKey]) -> None:
    sig = cms.sign_cms(CONTENT, keys["rsa"].signer)
    with pytest.raises(SignatureError, match="not trusted"):
        cms.verify_cms(sig, trusted=[keys["p256"].cert])


def test_detached_needs_content(keys: dict[str, TestKey]) -> None:
    sig = cms.sign_cms(CONTENT, keys["rsa"].signer, detached=True)
    with pytest.raises(SignatureError, match="detached"):
        cms.verify_cms(sig)


def test_encapsulated_with_other_content_given(keys: dict[str, TestKey]) -> None:
    sig = cms.sign_cms(CONTENT, keys["rsa"].signer)
    with pytest.raises(SignatureError, match="differs"):
        cms.verify_cms(sig, content=b"something else")


@pytest.mark.parametrize("blob", [b"", b"garbage", b"\x30\x03\x02\x01\x01", bytes(200)])
def test_garbage_is_a_signature_error(blob: bytes) -> None:
    with pytest.raises(SignatureError):
        cms.verify_cms(blob, content=b"x")


def test_truncated_signatures_are_signature_errors(keys: dict[str, TestKey]) -> None:
    sig = cms.sign_cms(CONTENT, keys["p256"].signer)
    for cut in range(0, len(sig), 7):
        with pytest.raises(SignatureError):
            cms.verify_cms(sig[:cut], trusted=[keys["p256"].cert])


@pytest.fixture(scope="module")
def fuzz_seed(keys: dict[str, TestKey]) -> bytes:
    return cms.sign_cms(CONTENT, keys["p256"].signer)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=3))
def test_mutated_signatures_raise_only_signature_errors(fuzz_seed: bytes, keys: dict[str, TestKey],
                                                        edits: list[tuple[int, int]]) -> None:  # fmt: skip
    blob = bytearray(fuzz_seed)
    for pos, value in edits:
        blob[pos % len(blob)] = value
    with contextlib.suppress(SignatureError):
        cms.verify_cms(bytes(blob), trusted=[keys["p256"].cert])


# -- strictness: the bytes outside the signature ------------------------------------------------------
# Every CMS user (catalog, build manifest, shielding data) promises that one changed byte of a file we
# signed fails verification, so verify_cms itself closes what the signature does not cover.


@pytest.fixture(scope="module")
def small_sig(keys: dict[str, TestKey]) -> bytes:
    """A small signed CMS: P-256, self-signed signer, a few bytes of content."""
    return cms.sign_cms(b"tiny", keys["p256"].signer)


@pytest.mark.parametrize("with_trust", [True, False])
def test_every_flipped_bit_fails(small_sig: bytes, keys: dict[str, TestKey], with_trust: bool) -> None:
    """Exhaustively: each bit of each byte (content, signed attributes, signature, embedded certificate,
    SignedData version, algorithm parameters, framing), with and without a trust anchor."""
    trusted = [keys["p256"].cert] if with_trust else None
    assert cms.verify_cms(small_sig, trusted=trusted).content == b"tiny"
    accepted = []
    for pos in range(len(small_sig)):
        for bit in range(8):
            bad = bytearray(small_sig)
            bad[pos] ^= 1 << bit
            try:
                cms.verify_cms(bytes(bad), trusted=trusted)
            except SignatureError:
                continue
            accepted.append((pos, bit))
    assert accepted == []


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, (old, data.count(old))
    return data.replace(old, new)


def test_ours_binds_the_signer_certificate(keys: dict[str, TestKey]) -> None:
    key = keys["rsa"]
    si = cms.parse_signed_data(cms.sign_cms(CONTENT, key.signer)).signer_infos[0]
    (value,) = si.attribute_values(cms.OID_SIGNING_CERTIFICATE_V2) or ()
    assert value.raw == cms.der.decode(cms.signing_certificate_v2(key.cert)).children[1].children[0].raw


def test_damaged_embedded_certificate_is_not_replaced_by_the_trusted_copy(keys: dict[str, TestKey]) -> None:
    """The old gap: a changed byte in the embedded certificate's issuer made it stop matching the signer,
    and verification quietly used the trusted copy instead."""
    key = keys["rsa"]
    sig = cms.sign_cms(CONTENT, key.signer, include_chain=False)
    subject = b"cms-rsa"  # self-signed: issuer and subject; the issuer comes first in the certificate
    bad = bytearray(sig)
    bad[sig.index(subject)] ^= 0x01
    with pytest.raises(SignatureError, match="not among the certificates"):
        cms.verify_cms(bytes(bad), trusted=[key.cert])


def test_signing_certificate_attribute_must_name_the_signer(keys: dict[str, TestKey]) -> None:
    key, other = keys["rsa"], keys["p256"]
    sig = cms.sign_signed_data(
        cms.der.octet_string(CONTENT), key.signer, content_type_oid=cms.OID_DATA, signing_certificate=False,
        extra_attributes=[cms.signing_certificate_v2(other.cert)],
    )  # fmt: skip
    with pytest.raises(SignatureError, match="signingCertificateV2 names"):
        cms.verify_cms(sig, trusted=[key.cert])
    with pytest.raises(SignatureError, match="signingCertificateV2 names"):
        cms.verify_cms(sig)


def test_signed_data_version_must_fit_the_content(keys: dict[str, TestKey]) -> None:
    sig = cms.sign_cms(CONTENT, keys["rsa"].signer)
    assert cms.parse_signed_data(sig).version == 1
    version = sig.index(b"\x02\x01\x01\x31")  # SignedData: version INTEGER, then the digestAlgorithms SET
    for wrong in (0, 3, 4, 5):
        bad = sig[:version] + bytes([2, 1, wrong]) + sig[version + 3 :]
        with pytest.raises(SignatureError, match=f"version {wrong} should be 1"):
            cms.verify_cms(bad, trusted=[keys["rsa"].cert])
    other_type = cms.sign_cms(CONTENT, keys["rsa"].signer, content_type_oid="1.2.3.4.5")
    bad = _replace_once(other_type, b"\x02\x01\x03\x31", b"\x02\x01\x01\x31")
    with pytest.raises(SignatureError, match="version 1 should be 3"):
        cms.verify_cms(bad)


def test_algorithm_parameters_must_be_absent_or_null(keys: dict[str, TestKey]) -> None:
    key = keys["rsa"]
    sig = cms.sign_cms(CONTENT, key.signer)
    # the SignerInfo's rsaEncryption carries NULL (the last one: the certificate's key comes first)
    rsa_null = cms.der.oid(cms.OID_RSA_ENCRYPTION) + b"\x05\x00"
    at = sig.rindex(rsa_null) + len(rsa_null) - 2
    with pytest.raises(SignatureError, match="only NULL or none"):
        cms.verify_cms(sig[:at] + b"\x04" + sig[at + 1 :], trusted=[key.cert])
    # the digest algorithm's parameters are absent (RFC 5754); NULL is valid too, anything else is not
    sha256 = cms.digest_algorithm_id("sha256")
    assert sig.count(sha256) == 2  # digestAlgorithms and the SignerInfo
    with_null = _reencode(sig, sha256, cms.digest_algorithm_id("sha256", null_params=True))
    assert cms.verify_cms(with_null, trusted=[key.cert]).signer == key.cert
    octets = cms.der.sequence(cms.der.oid(cms.HASH_OIDS["sha256"]), b"\x04\x00")
    with pytest.raises(SignatureError, match="only NULL or none"):
        cms.verify_cms(_reencode(sig, sha256, octets), trusted=[key.cert])


def _reencode(data: bytes, old: bytes, new: bytes) -> bytes:
    """``data`` with every ``old`` element replaced by ``new`` and every enclosing length fixed up."""
    el = cms.der.decode(data)

    def walk(e: cms.der.Element) -> bytes:
        if e.raw == old:
            return new
        if not e.constructed or old not in e.raw:
            return e.raw
        return cms.der.tlv(e.tag, b"".join(walk(c) for c in e.children), tag_class=e.tag_class,
                           constructed=True)  # fmt: skip

    return walk(el)


def test_openssl_cades_signature_verifies_and_binds(keys: dict[str, TestKey], tmp_path: Path) -> None:
    """``openssl cms -sign -cades`` writes signingCertificateV2 with an issuerSerial: we check both."""
    key = keys["p256"]
    src, out = tmp_path / "in.bin", tmp_path / "cades.p7"
    src.write_bytes(CONTENT)
    run("openssl", "cms", "-sign", "-cades", "-binary", "-nodetach", "-outform", "DER", "-in", src,
        "-signer", key.cert_path, "-inkey", key.key_path, "-out", out)  # fmt: skip
    sig = out.read_bytes()
    assert cms.parse_signed_data(sig).signer_infos[0].attribute_values(cms.OID_SIGNING_CERTIFICATE_V2)
    assert cms.verify_cms(sig, trusted=[key.cert]).signer == key.cert
    assert cms.verify_cms(sig).content == CONTENT


def test_openssl_nocerts_signature_verifies_with_the_given_certificate(
    keys: dict[str, TestKey], tmp_path: Path
) -> None:
    """A signature that embeds no certificate at all may take its signer from the trusted ones."""
    key = keys["rsa"]
    src, out = tmp_path / "in.bin", tmp_path / "nocerts.p7"
    src.write_bytes(CONTENT)
    run("openssl", "cms", "-sign", "-nocerts", "-binary", "-nodetach", "-outform", "DER", "-in", src,
        "-signer", key.cert_path, "-inkey", key.key_path, "-out", out)  # fmt: skip
    sig = out.read_bytes()
    assert cms.parse_signed_data(sig).certificates == ()
    assert cms.verify_cms(sig, trusted=[key.cert]).signer == key.cert
    with pytest.raises(SignatureError, match="not in the signature"):
        cms.verify_cms(sig)


@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_openssl_cades_verify_accepts_ours(keys: dict[str, TestKey], kind: str, tmp_path: Path) -> None:
    """openssl checks our signingCertificateV2 when asked to (``-cades``), and accepts it."""
    require_tool("openssl")
    key = keys[kind]
    path = tmp_path / "ours.p7"
    path.write_bytes(cms.sign_cms(CONTENT, key.signer))
    cmd = ["openssl", "cms", "-verify", "-cades", "-binary", "-inform", "DER", "-in", str(path),
           "-CAfile", str(key.cert_path), "-purpose", "any", "-out", str(tmp_path / "out")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").read_bytes() == CONTENT
