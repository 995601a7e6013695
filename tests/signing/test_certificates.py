"""Certificate inspection: fields match what openssl reports, findings match the certificate's real flaws."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from app.findings import Severity
from app.signing.certificates import UEFI_ECDSA_WARNING, describe_certificate
from app.signing.keys import generate_key, generate_self_signed, load_certificate
from tests.conftest import require_tool, run

NOW = dt.datetime.now(dt.UTC)


def openssl(*args: str | os.PathLike[str]) -> str:
    require_tool("openssl")
    return run("openssl", *args).stdout


def openssl_cert(tmp_path: Path, *extra: str, key: str = "rsa:2048", days: int = 365) -> Path:
    """A self-signed certificate made by ``openssl req -x509`` (its defaults: no KU, no EKU)."""
    cert = tmp_path / f"cert-{len(list(tmp_path.glob('cert-*')))}.pem"
    openssl(
        "req",
        "-x509",
        "-newkey",
        key,
        "-nodes",
        "-keyout",
        tmp_path / "key.pem",
        "-out",
        cert,
        "-subj",
        "/CN=OpenSSL Made/O=Elsewhere",
        "-days",
        str(days),
        *extra,
    )
    return cert


def by_severity(info, severity: Severity) -> list[str]:
    return [f.message for f in info.findings if f.severity is severity]


@pytest.fixture(scope="module")
def good_cert():
    return generate_self_signed(generate_key("rsa2048"), common_name="Good db", organization="Good Corp")


def test_fresh_certificate_is_clean_except_self_signed(good_cert) -> None:
    info = describe_certificate(good_cert, purpose="uefi")
    assert by_severity(info, Severity.ERROR) == []
    assert by_severity(info, Severity.WARNING) == []
    assert by_severity(info, Severity.INFO) == ["the certificate is self-signed"]
    assert info.self_signed
    assert info.key_type == "RSA" and info.key_size == 2048 and info.curve is None
    assert info.key_usage == ["digitalSignature"] and info.extended_key_usage == ["codeSigning"]
    assert info.common_name == "Good db"
    assert info.subject == info.issuer == "CN=Good db,O=Good Corp"
    assert info.not_before.tzinfo is not None and info.not_before.utcoffset() == dt.timedelta(0)
    assert int(info.serial, 16) == good_cert.serial_number


def test_expired_certificate_is_an_error() -> None:
    cert = generate_self_signed(
        generate_key("p256"), common_name="Old", days=10, not_before=NOW - dt.timedelta(days=30)
    )
    info = describe_certificate(cert)
    assert any("expired" in m for m in by_severity(info, Severity.ERROR))
    # …but it was fine while it was valid:
    then = describe_certificate(cert, now=NOW - dt.timedelta(days=25))
    assert by_severity(then, Severity.ERROR) == []


def test_not_yet_valid_certificate_is_an_error() -> None:
    cert = generate_self_signed(
        generate_key("p256"), common_name="Future", not_before=NOW + dt.timedelta(days=2)
    )
    assert any("not valid before" in m for m in by_severity(describe_certificate(cert), Severity.ERROR))


def test_expiring_soon_is_a_warning(tmp_path: Path) -> None:
    info = describe_certificate(load_certificate(openssl_cert(tmp_path, days=10)))
    assert any("expires soon" in m for m in by_severity(info, Severity.WARNING))
    assert by_severity(info, Severity.ERROR) == []


def test_rsa_1024_made_by_openssl_is_an_error(tmp_path: Path) -> None:
    info = describe_certificate(load_certificate(openssl_cert(tmp_path, key="rsa:1024")))
    assert info.key_size == 1024
    assert any("RSA-1024" in m for m in by_severity(info, Severity.ERROR))


def test_openssl_default_certificate_lacks_code_signing(tmp_path: Path) -> None:
    info = describe_certificate(load_certificate(openssl_cert(tmp_path)))
    assert info.extended_key_usage == []
    assert any("codeSigning" in m for m in by_severity(info, Severity.WARNING))
    assert info.self_signed and by_severity(info, Severity.INFO) == ["the certificate is self-signed"]


def test_eku_without_code_signing_is_an_error(tmp_path: Path) -> None:
    """The chain check (app.signing.chain) rejects such a signer, as osslsigncode does: signing with it
    would make a template its own verification refuses."""
    cert = openssl_cert(tmp_path, "-addext", "extendedKeyUsage=serverAuth,clientAuth")
    info = describe_certificate(load_certificate(cert))
    assert info.extended_key_usage == ["serverAuth", "clientAuth"]
    assert any("codeSigning" in m for m in by_severity(info, Severity.ERROR)) and info.has_errors


def test_key_usage_without_digital_signature_is_an_error(tmp_path: Path) -> None:
    cert = openssl_cert(tmp_path, "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    info = describe_certificate(load_certificate(cert))
    assert info.key_usage == ["keyCertSign", "cRLSign"]
    assert any("digitalSignature" in m for m in by_severity(info, Severity.ERROR))


def test_ecdsa_for_uefi_is_a_warning_but_fine_for_catalogs(tmp_path: Path) -> None:
    params = tmp_path / "p384.pem"
    openssl("genpkey", "-genparam", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", params)
    cert = load_certificate(
        openssl_cert(tmp_path, "-addext", "extendedKeyUsage=codeSigning", key=f"ec:{params}")
    )
    uefi = describe_certificate(cert, purpose="uefi")
    assert uefi.key_type == "ECDSA" and uefi.curve == "secp384r1" and uefi.key_size == 384
    assert by_severity(uefi, Severity.WARNING) == [UEFI_ECDSA_WARNING]
    assert by_severity(describe_certificate(cert, purpose="catalog"), Severity.WARNING) == []
    assert by_severity(describe_certificate(cert), Severity.WARNING) == []


def test_certificate_issued_by_another_is_not_self_signed(tmp_path: Path) -> None:
    ca = openssl_cert(tmp_path)
    leaf_key, csr, leaf = tmp_path / "leaf.key", tmp_path / "leaf.csr", tmp_path / "leaf.pem"
    openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", leaf_key, "-out", csr, "-subj", "/CN=Leaf"
    )
    ext = tmp_path / "ext.cnf"
    ext.write_text("extendedKeyUsage=codeSigning\nkeyUsage=critical,digitalSignature\n")
    openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        tmp_path / "key.pem",
        "-CAcreateserial",
        "-out",
        leaf,
        "-days",
        "100",
        "-extfile",
        ext,
    )
    info = describe_certificate(load_certificate(leaf))
    assert not info.self_signed and info.issuer == "O=Elsewhere,CN=OpenSSL Made"
    assert info.findings == []


def test_fingerprints_and_serial_match_openssl(tmp_path: Path) -> None:
    path = openssl_cert(tmp_path)
    info = describe_certificate(load_certificate(path))

    def fingerprint(algo: str) -> str:
        out = openssl("x509", "-in", path, "-noout", "-fingerprint", f"-{algo}")
        return out.strip().split("=", 1)[1].replace(":", "")

    assert info.sha256_fingerprint == fingerprint("sha256")
    assert info.sha1_fingerprint == fingerprint("sha1")
    serial = openssl("x509", "-in", path, "-noout", "-serial").strip().split("=", 1)[1]
    assert int(info.serial, 16) == int(serial, 16)


def test_to_dict_is_json_with_iso_dates(good_cert) -> None:
    data = json.loads(json.dumps(describe_certificate(good_cert).to_dict()))
    assert dt.datetime.fromisoformat(data["not_after"]) == good_cert.not_valid_after_utc
    assert dt.datetime.fromisoformat(data["not_before"]).tzinfo is not None
    assert data["findings"] == [{"severity": "info", "message": "the certificate is self-signed"}]
    assert data["key_type"] == "RSA" and data["extended_key_usage"] == ["codeSigning"]
