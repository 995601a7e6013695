"""Damaged X.509 certificates from outside: every reader refuses them with Shieldwright's own one-line
errors, never cryptography's (it decodes names, keys and extensions lazily, so a damaged field used to
surface wherever it was first touched: after an output was written, after a guardian was stored), and
nothing is written.

Each damage is made here by patching the DER of a freshly generated, valid certificate; cryptography loads
the result (or refuses it outright), and only reading the damaged field fails.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from app.errors import ShieldwrightError, SignatureError, SigningError
from app.measure.events import MeasureError
from app.measure.siglist import (
    EFI_CERT_X509_GUID,
    LIST_HEADER,
    SHIELDWRIGHT_OWNER_GUID,
    SignatureEntry,
    parse_signature_lists,
    x509_signature_list,
)
from app.shielding.guardians import import_guardian, import_owner, list_guardians
from app.signing.certificates import describe_certificate, parsed_certificate
from app.signing.chain import check_chain
from app.signing.cms import parse_signed_data, sign_cms, verify_cms
from app.signing.keys import load_certificates
from app.signing.signer import KeySigner
from app.tpm.srk import SrkError, srk_from_bytes

ROOT = Path(__file__).resolve().parents[2]
CN = b"AAAA"  # the subject (and issuer) common name, a 4-character UTF8String the damages patch
SAN_DNS = b"zzzz"  # a dNSName in the SubjectAltName, patched into another GeneralName form
BASIC_CONSTRAINTS_OID = bytes.fromhex("0603551d13")


# --- making damaged certificates ---------------------------------------------------------------------------


def _tlv(tag: int, content: bytes) -> bytes:
    """One DER element (definite length, short or long form)."""
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _split(element: bytes) -> tuple[int, bytes]:
    """(tag, content) of one DER element."""
    first = element[1]
    if first < 0x80:
        return element[0], element[2 : 2 + first]
    count = first & 0x7F
    length = int.from_bytes(element[2 : 2 + count], "big")
    return element[0], element[2 + count : 2 + count + length]


def _children(content: bytes) -> list[bytes]:
    """The complete DER elements that make up ``content``."""
    out, pos = [], 0
    while pos < len(content):
        first = content[pos + 1]
        head, length = (2, first) if first < 0x80 else (2 + (first & 0x7F), 0)
        if first >= 0x80:
            length = int.from_bytes(content[pos + 2 : pos + head], "big")
        out.append(content[pos : pos + head + length])
        pos += head + length
    return out


def _certificate(kind: str = "ec") -> tuple[rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, bytes]:
    """(key, DER) of a valid self-signed CA certificate: CN AAAA, basicConstraints, a SAN dNSName zzzz."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        _RSA_KEY if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN.decode())])
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(start).not_valid_after(start + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SAN_DNS.decode())]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return key, cert.public_bytes(serialization.Encoding.DER)


def _replace(der: bytes, old: bytes, new: bytes) -> bytes:
    """Same-length patch: every outer length stays valid."""
    assert len(old) == len(new) and old in der
    return der.replace(old, new)


def version_3(der: bytes) -> bytes:
    """The version field says 3 (v4), which X.509 does not have: cryptography's InvalidVersion."""
    return _replace(der, bytes.fromhex("a003020102"), bytes.fromhex("a003020103"))


def invalid_utf8(der: bytes) -> bytes:
    """Subject and issuer CN a UTF8String holding invalid UTF-8: a ValueError once the name is decoded."""
    return _replace(der, b"\x0c\x04" + CN, bytes.fromhex("0c04fffefd41"))


def san_x400(der: bytes) -> bytes:
    """The SAN's GeneralName an x400Address [3]: UnsupportedGeneralNameType once extensions are read."""
    return _replace(der, b"\x82\x04" + SAN_DNS, bytes.fromhex("a30404024142"))


def san_edi_party(der: bytes) -> bytes:
    """The SAN's GeneralName an ediPartyName [5]: UnsupportedGeneralNameType too."""
    return _replace(der, b"\x82\x04" + SAN_DNS, bytes.fromhex("a50404024142"))


def unknown_key(der: bytes) -> bytes:
    """The SubjectPublicKeyInfo's algorithm an OID nobody knows: UnsupportedAlgorithm from public_key()."""
    if bytes.fromhex("06072a8648ce3d0201") in der:  # id-ecPublicKey → 1.2.840.10045.2.127
        return _replace(der, bytes.fromhex("06072a8648ce3d0201"), bytes.fromhex("06072a8648ce3d027f"))
    # rsaEncryption → 1.2.840.113549.1.1.127
    return _replace(der, bytes.fromhex("06092a864886f70d010101"), bytes.fromhex("06092a864886f70d01017f"))


def duplicate_extension(der: bytes) -> bytes:
    """basicConstraints twice: DuplicateExtension once extensions are read (lengths rebuilt around it)."""
    cert_tag, cert_content = _split(der)
    tbs, *rest = _children(cert_content)
    tbs_tag, tbs_content = _split(tbs)
    fields = _children(tbs_content)
    wrapper_tag, wrapper = _split(fields[-1])
    list_tag, exts_content = _split(wrapper)
    exts = _children(exts_content)
    (bc,) = [e for e in exts if BASIC_CONSTRAINTS_OID in e]
    fields[-1] = _tlv(wrapper_tag, _tlv(list_tag, b"".join([*exts, bc])))
    return _tlv(cert_tag, _tlv(tbs_tag, b"".join(fields)) + b"".join(rest))


Damage = Callable[[bytes], bytes]
#: Damages that keep the certificate's length (so it can be swapped into a signature in place).
SAME_LENGTH: dict[str, Damage] = {
    "version-3": version_3,
    "invalid-utf8-subject": invalid_utf8,
    "san-x400Address": san_x400,
    "san-ediPartyName": san_edi_party,
    "unknown-key-oid": unknown_key,
}
DAMAGES: dict[str, Damage] = {**SAME_LENGTH, "duplicate-extension": duplicate_extension}
#: Damages cryptography accepts at load time (it fails only later, on the damaged field): a Certificate.
LAZY = [name for name in DAMAGES if name != "version-3"]

_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_GOOD_KEY, GOOD = _certificate("ec")
_RSA_CERT = _certificate("rsa")[1]


def damaged(name: str, der: bytes = GOOD) -> bytes:
    return DAMAGES[name](der)


def lazy_certificate(name: str, der: bytes = GOOD) -> x509.Certificate:
    """The damaged certificate as cryptography loads it, its damage not yet noticed."""
    return x509.load_der_x509_certificate(damaged(name, der))


def pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def assert_typed(exc: ShieldwrightError) -> None:
    """One-line message and a hint, as every Shieldwright error carries them."""
    assert exc.message and "\n" not in exc.message and exc.hint


def test_the_damages_are_what_they_claim() -> None:
    """Sanity: each patch breaks the field it names, with the exception the readers used to let escape."""
    assert x509.load_der_x509_certificate(GOOD).extensions  # the original is fine
    with pytest.raises(x509.InvalidVersion):
        x509.load_der_x509_certificate(damaged("version-3"))
    with pytest.raises(ValueError):
        lazy_certificate("invalid-utf8-subject").subject.rfc4514_string()
    for name in ("san-x400Address", "san-ediPartyName"):
        with pytest.raises(x509.UnsupportedGeneralNameType):
            list(lazy_certificate(name).extensions)
    with pytest.raises(x509.DuplicateExtension):
        list(lazy_certificate("duplicate-extension").extensions)
    with pytest.raises(UnsupportedAlgorithm):
        lazy_certificate("unknown-key-oid").public_key()


# --- the one owner: parsed_certificate ---------------------------------------------------------------------


@pytest.mark.parametrize("name", DAMAGES)
def test_parsed_certificate_refuses_every_damage(name: str) -> None:
    with pytest.raises(SigningError, match=r"^the thing is malformed or unsupported: ") as info:
        parsed_certificate(damaged(name), "the thing")
    assert_typed(info.value)


def test_parsed_certificate_keeps_a_good_one() -> None:
    cert = parsed_certificate(GOOD, "the thing")
    assert parsed_certificate(cert, "the thing") is cert


# --- defect 1: CMS readers (PE signatures, catalogs, shielding data) ---------------------------------------


def _signed_with_embedded(name: str) -> bytes:
    """A CMS SignedData made with the good certificate, the embedded copy then damaged in place."""
    good_cert = x509.load_der_x509_certificate(GOOD)
    data = sign_cms(b"hello", KeySigner(_GOOD_KEY, good_cert))
    assert data.count(GOOD) == 1
    return data.replace(GOOD, damaged(name))


@pytest.mark.parametrize("name", SAME_LENGTH)
def test_cms_refuses_a_damaged_embedded_certificate(name: str) -> None:
    data = _signed_with_embedded(name)
    with pytest.raises(SignatureError, match=r"^embedded certificate 0 is malformed or unsupported: "):
        parse_signed_data(data)
    with pytest.raises(SignatureError, match=r"embedded certificate 0 is malformed") as info:
        verify_cms(data)
    assert "\n" not in info.value.message


# --- defect 2: EFI signature lists -------------------------------------------------------------------------


def _x509_list(cert_der: bytes) -> bytes:
    size = 16 + len(cert_der)
    return LIST_HEADER.pack(EFI_CERT_X509_GUID.bytes_le, LIST_HEADER.size + size, 0, size) + (
        SHIELDWRIGHT_OWNER_GUID.bytes_le + cert_der
    )


@pytest.mark.parametrize("name", DAMAGES)
def test_signature_entry_refuses_a_damaged_certificate(name: str) -> None:
    entry = SignatureEntry(EFI_CERT_X509_GUID, SHIELDWRIGHT_OWNER_GUID, damaged(name))
    with pytest.raises(MeasureError, match="no readable DER certificate") as info:
        entry.certificate  # noqa: B018
    assert_typed(info.value)
    with pytest.raises(MeasureError, match=r"db: the X\.509 entry at offset 28 is not a DER certificate"):
        parse_signature_lists(_x509_list(damaged(name)), "db")
    with pytest.raises(MeasureError):
        x509_signature_list(damaged(name), SHIELDWRIGHT_OWNER_GUID)


def test_a_good_signature_list_still_reads() -> None:
    (entry,) = parse_signature_lists(_x509_list(GOOD), "db")
    assert entry.certificate is not None and entry.certificate.subject.rfc4514_string() == "CN=AAAA"


# --- defect 3: certificate files ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["der", "pem"])
@pytest.mark.parametrize("name", DAMAGES)
def test_load_certificates_refuses_a_damaged_file(name: str, encoding: str, tmp_path: Path) -> None:
    path = tmp_path / f"cert.{encoding}"
    path.write_bytes(damaged(name) if encoding == "der" else pem(damaged(name)))
    with pytest.raises(SigningError) as info:
        load_certificates(path)
    assert_typed(info.value)
    assert str(path) in info.value.message


def test_load_certificates_names_the_damaged_one_of_a_bundle(tmp_path: Path) -> None:
    path = tmp_path / "bundle.pem"
    path.write_bytes(pem(GOOD) + pem(damaged("san-x400Address")))
    with pytest.raises(
        SigningError, match=r"^certificate 2 of 2 in .*bundle\.pem is malformed or unsupported"
    ):
        load_certificates(path)
    path.write_bytes(pem(GOOD) + pem(GOOD))
    assert len(load_certificates(path)) == 2


# --- defect 4a/b: describing a certificate -----------------------------------------------------------------


@pytest.mark.parametrize("name", LAZY)
def test_describe_certificate_refuses_a_damaged_certificate(name: str) -> None:
    with pytest.raises(SigningError) as info:
        describe_certificate(lazy_certificate(name))
    assert_typed(info.value)


def test_describe_certificate_still_describes_a_good_one() -> None:
    info = describe_certificate(x509.load_der_x509_certificate(GOOD))
    assert info.subject == "CN=AAAA" and info.self_signed


# --- defect 4f: chain building -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["san-x400Address", "san-ediPartyName", "duplicate-extension"])
def test_check_chain_refuses_a_damaged_certificate(name: str) -> None:
    cert = lazy_certificate(name)
    with pytest.raises(SignatureError, match="is not trusted") as info:
        check_chain(cert, [], [cert])
    assert "\n" not in info.value.message
    good = x509.load_der_x509_certificate(GOOD)
    with pytest.raises(SignatureError):
        check_chain(cert, [good], [good])


# --- defect 4d/e: guardians --------------------------------------------------------------------------------


def _rsa_damaged(name: str) -> bytes:
    """An RSA-2048 certificate (a guardian's encryption certificate must be RSA) with the damage ``name``."""
    return damaged(name, _RSA_CERT)


@pytest.mark.parametrize("name", DAMAGES)
def test_guardian_import_refuses_and_stores_nothing(name: str, tmp_path: Path) -> None:
    store = tmp_path / "guardians"
    cert = tmp_path / "fabric.crt"
    cert.write_bytes(_rsa_damaged(name))
    with pytest.raises(ShieldwrightError) as info:
        import_guardian("fabric", cert, store=store)
    assert_typed(info.value)
    assert not (store / "fabric").exists()
    assert list_guardians(store=store) == []
    signing = tmp_path / "signing.crt"
    signing.write_bytes(damaged(name))
    cert.write_bytes(_RSA_CERT)
    with pytest.raises(ShieldwrightError):
        import_guardian("fabric", cert, signing_cert=signing, store=store)
    assert list_guardians(store=store) == []


def test_owner_import_refuses_an_unknown_key_and_stores_nothing(tmp_path: Path) -> None:
    store = tmp_path / "guardians"
    key = tmp_path / "rsa.key"
    key.write_bytes(_RSA_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    good, bad = tmp_path / "good.crt", tmp_path / "bad.crt"
    good.write_bytes(_RSA_CERT)
    bad.write_bytes(_rsa_damaged("unknown-key-oid"))
    for signing, encryption in ((bad, good), (good, bad)):
        with pytest.raises(ShieldwrightError) as info:
            import_owner("owner", signing_cert=signing, signing_key=key, encryption_cert=encryption,
                         encryption_key=key, store=store)  # fmt: skip
        assert_typed(info.value)
        assert list_guardians(store=store) == []
    assert import_owner("owner", signing_cert=good, signing_key=key, encryption_cert=good, encryption_key=key,
                        store=store).subject == "CN=AAAA"  # fmt: skip


# --- defect 5: SRK public keys -----------------------------------------------------------------------------


def _spki_pem(der: bytes) -> bytes:
    return b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END PUBLIC KEY-----\n"


def test_srk_refuses_an_unknown_key_type_or_curve() -> None:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ed = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(*spki)
    unknown_type = _replace(ed, bytes.fromhex("06032b6570"), bytes.fromhex("06032a0304"))  # → 1.2.3.4
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(*spki)
    prime256v1 = bytes.fromhex("06082a8648ce3d030107")
    unknown_curve = _replace(p256, prime256v1, bytes.fromhex("06082a8648ce3d03017f"))
    for der in (unknown_type, unknown_curve):
        with pytest.raises(SrkError) as info:
            srk_from_bytes(_spki_pem(der))
        assert_typed(info.value)


# --- through the command line: one line, exit 2, nothing written -------------------------------------------


def shieldwright(tmp_path: Path, *args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg"), "XDG_STATE_HOME": str(tmp_path / "state")}
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip


def assert_refused(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 2 with one ``shieldwright: error:`` line from a typed error: no traceback, and not the catch-all
    for untranslated exceptions (which names the log file it wrote the traceback to)."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shieldwright: error: "), proc.stderr
    assert "details in" not in lines[0] and "cannot be processed" not in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("name", DAMAGES)
def test_cli_cert_show_refuses(name: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.der"
    path.write_bytes(damaged(name))
    assert_refused(shieldwright(tmp_path, "cert", "show", path), str(path))


@pytest.mark.parametrize("name", DAMAGES)
def test_cli_firmware_vars_refuses_before_writing(name: str, tmp_path: Path) -> None:
    path, out = tmp_path / "bad.der", tmp_path / "out.fd"
    path.write_bytes(damaged(name))
    assert_refused(
        shieldwright(tmp_path, "firmware", "vars", "--empty", "--add-db", path, "-o", out), str(path)
    )
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir() if p.name != "state") == ["bad.der"]


@pytest.mark.parametrize("name", ["invalid-utf8-subject", "duplicate-extension", "san-x400Address"])
def test_cli_firmware_show_refuses_a_damaged_esl(name: str, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "db.esl").write_bytes(_x509_list(damaged(name)))
    assert_refused(shieldwright(tmp_path, "firmware", "show", certs), "is not a DER certificate")


@pytest.mark.parametrize("name", ["invalid-utf8-subject", "unknown-key-oid", "san-x400Address"])
def test_cli_guardian_import_refuses_and_list_still_works(name: str, tmp_path: Path) -> None:
    path = tmp_path / "fabric.crt"
    path.write_bytes(_rsa_damaged(name))
    assert_refused(
        shieldwright(tmp_path, "shield", "guardian", "import", path, "--name", "fabric"), str(path)
    )
    assert not (tmp_path / "xdg" / "shieldwright" / "guardians" / "fabric").exists()
    listed = shieldwright(tmp_path, "shield", "guardian", "list")
    assert listed.returncode == 0 and "fabric" not in listed.stdout, listed.stderr
