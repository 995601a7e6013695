"""Authenticode on systemd-stub and a real Debian kernel, graded by osslsigncode, sbverify, sbsign, pefile."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pefile
import pytest

from app.errors import PeFormatError, SignatureError
from app.signing.authenticode import authenticode_digest, list_signatures, sign_pe, verify_pe
from app.signing.pe import parse_layout, pe_checksum
from tests.conftest import require_tool, run
from tests.signing.pe_helpers import (
    STUB,
    SYSTEMD_BOOT,
    TestKey,
    keep_only_signature,
    kernel_image,
    openssl_key,
    osslsigncode_calculated_digest,
    osslsigncode_unsigned_digest,
    osslsigncode_verify,
    sbverify,
    security_dir,
    win_certificates,
)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("authenticode")


@pytest.fixture(scope="module")
def key_a(work: Path) -> TestKey:
    return openssl_key(work, "signer-a")


@pytest.fixture(scope="module")
def key_b(work: Path) -> TestKey:
    return openssl_key(work, "signer-b")


@pytest.fixture(scope="module")
def stub() -> bytes:
    data = STUB.read_bytes()
    assert len(data) % 8, "the test relies on an unaligned unsigned stub (padding behaviour)"
    return data


@pytest.fixture(scope="module")
def kernel(work: Path) -> bytes:
    """Debian's signed cloud kernel (one WIN_CERTIFICATE by Debian's signer)."""
    return kernel_image(work / "kernel").read_bytes()


def _write(work: Path, name: str, data: bytes) -> Path:
    path = work / name
    path.write_bytes(data)
    return path


def _sbsign(work: Path, key: TestKey, src: Path, name: str) -> bytes:
    require_tool("sbsign")
    out = work / name
    run("sbsign", "--key", key.key_path, "--cert", key.cert_path, "--output", out, src)
    return out.read_bytes()


# -- digest ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [STUB, SYSTEMD_BOOT], ids=["stub", "systemd-boot"])
def test_unsigned_digest_matches_osslsigncode(path: Path, work: Path) -> None:
    assert authenticode_digest(path.read_bytes()) == osslsigncode_unsigned_digest(path, work)


def test_signed_kernel_digest_matches_osslsigncode_and_debian(kernel: bytes, work: Path) -> None:
    path = _write(work, "vmlinuz", kernel)
    ours = authenticode_digest(kernel)
    assert ours == osslsigncode_calculated_digest(path)
    (debian,) = list_signatures(kernel)
    assert debian.signed_digest == ours and debian.digest_matches
    assert debian.subject is not None and "Debian" in debian.subject
    assert debian.digest_algorithm == "sha256"


def test_unsigned_kernel_digest_matches_osslsigncode(kernel: bytes, work: Path) -> None:
    entry_at, off, _ = security_dir(kernel)
    stripped = bytearray(kernel[:off])
    struct.pack_into("<II", stripped, entry_at, 0, 0)
    path = _write(work, "vmlinuz-unsigned", bytes(stripped))
    assert authenticode_digest(bytes(stripped)) == osslsigncode_unsigned_digest(path, work)
    assert authenticode_digest(bytes(stripped)) == authenticode_digest(kernel)


def test_digest_survives_signing(stub: bytes, key_a: TestKey) -> None:
    signed = sign_pe(stub, key_a.signer)
    assert authenticode_digest(signed) == authenticode_digest(stub)
    assert len(signed) % 8 == 0


def test_checksum_agrees_with_pefile(stub: bytes, kernel: bytes) -> None:
    for data in (stub, kernel):
        layout = parse_layout(data)
        assert pe_checksum(data, layout.checksum_offset) == pefile.PE(data=data).generate_checksum()


# -- our signatures, judged by sbverify and osslsigncode -------------------------------------------


@pytest.mark.parametrize("target", ["stub", "kernel"])
def test_our_signature_passes_sbverify_and_osslsigncode(target: str, request: pytest.FixtureRequest,
                                                        work: Path, key_a: TestKey) -> None:  # fmt: skip
    data = request.getfixturevalue(target)
    original = bytes(data)
    signed = sign_pe(data, key_a.signer, mode="replace")
    assert data == original
    path = _write(work, f"{target}.ours.efi", signed)
    proc = sbverify(path, key_a.cert_path)
    assert proc.returncode == 0 and "Signature verification OK" in proc.stdout + proc.stderr, proc.stderr
    proc = osslsigncode_verify(path, key_a.cert_path)
    assert proc.returncode == 0 and "Signature verification: ok" in proc.stdout, proc.stdout + proc.stderr
    assert osslsigncode_calculated_digest(path) == authenticode_digest(data)
    pe = pefile.PE(data=signed)
    assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum()
    (result,) = verify_pe(signed, [key_a.cert])
    assert result.valid and result.info.subject == "CN=signer-a"


def test_sbverify_rejects_our_signature_with_another_cert(stub: bytes, work: Path, key_a: TestKey,
                                                           key_b: TestKey) -> None:  # fmt: skip
    path = _write(work, "stub.a.efi", sign_pe(stub, key_a.signer))
    assert sbverify(path, key_b.cert_path).returncode != 0
    (result,) = verify_pe(path.read_bytes(), [key_b.cert])
    assert not result.valid and "not trusted" in result.reason


def test_tampered_image_fails_ours_and_sbverify(stub: bytes, work: Path, key_a: TestKey) -> None:
    signed = bytearray(sign_pe(stub, key_a.signer))
    text = parse_layout(bytes(signed)).sections[0]
    signed[text.pointer_to_raw_data + 100] ^= 0xFF
    path = _write(work, "stub.tampered.efi", bytes(signed))
    assert sbverify(path, key_a.cert_path).returncode != 0
    (result,) = verify_pe(bytes(signed), [key_a.cert])
    assert not result.valid and "digest mismatch" in result.reason
    assert not list_signatures(bytes(signed))[0].digest_matches


def test_opt_in_signing_certificate_passes_sbverify_and_osslsigncode(stub: bytes, work: Path,
                                                                     key_a: TestKey) -> None:  # fmt: skip
    """Plain CMS always binds the signer's certificate (signingCertificateV2); Authenticode only on request,
    and the tools (and firmware's OpenSSL) take the extra signed attribute in their stride."""
    signed = sign_pe(stub, key_a.signer, signing_certificate=True)
    assert b"\x06\x0b\x2a\x86\x48\x86\xf7\x0d\x01\x09\x10\x02\x2f" in signed  # the attribute's OID
    assert b"\x06\x0b\x2a\x86\x48\x86\xf7\x0d\x01\x09\x10\x02\x2f" not in sign_pe(stub, key_a.signer)
    path = _write(work, "stub.sigcert.efi", signed)
    assert sbverify(path, key_a.cert_path).returncode == 0
    proc = osslsigncode_verify(path, key_a.cert_path)
    assert proc.returncode == 0 and "Signature verification: ok" in proc.stdout, proc.stdout + proc.stderr
    (result,) = verify_pe(signed, [key_a.cert])
    assert result.valid, result.reason


def test_signed_data_version_other_than_1_is_refused(stub: bytes, key_a: TestKey) -> None:
    """Authenticode is PKCS#7 v1.5: SignedData version 1 (RFC 5652 would say 3 for its content type)."""
    signed = sign_pe(stub, key_a.signer)
    _, table, _ = security_dir(signed)
    at = signed.index(b"\x02\x01\x01\x31", table)  # SignedData version, then the digestAlgorithms SET
    bad = signed[:at] + b"\x02\x01\x03" + signed[at + 3 :]
    (result,) = verify_pe(bad, [key_a.cert])
    assert not result.valid and "version 3 should be 1" in result.reason


# -- sbsign's signatures, judged by us ---------------------------------------------------------------


def test_sbsign_signature_verifies_with_ours(work: Path, key_a: TestKey, key_b: TestKey) -> None:
    signed = _sbsign(work, key_a, STUB, "stub.sbsign.efi")
    (result,) = verify_pe(signed, [key_a.cert])
    assert result.valid, result.reason
    assert result.info.signed_digest == authenticode_digest(STUB.read_bytes())
    (untrusted,) = verify_pe(signed, [key_b.cert])
    assert not untrusted.valid


def test_sbsign_on_the_kernel_verifies_with_ours(kernel: bytes, work: Path, key_b: TestKey) -> None:
    src = _write(work, "vmlinuz.for-sbsign", kernel)
    signed = _sbsign(work, key_b, src, "vmlinuz.sbsign")  # sbsign appends to Debian's signature
    debian, ours_b = verify_pe(signed)
    assert debian.valid and ours_b.valid
    assert [r.valid for r in verify_pe(signed, [key_b.cert])] == [False, True]


# -- refuse / append / replace ------------------------------------------------------------------------


def test_signing_a_signed_image_is_refused(kernel: bytes, key_a: TestKey) -> None:
    with pytest.raises(SignatureError, match=r"already signed \(1 signature\)") as info:
        sign_pe(kernel, key_a.signer, name="vmlinuz")
    assert "--append" in info.value.hint and "--replace" in info.value.hint


def test_append_keeps_both_and_both_verify(work: Path, key_a: TestKey, key_b: TestKey) -> None:
    first = _sbsign(work, key_a, STUB, "stub.first.efi")
    both = sign_pe(first, key_b.signer, mode="append")
    assert both[: len(first) - security_dir(first)[2]][:0x3C] == first[:0x3C]
    results = verify_pe(both, [key_a.cert, key_b.cert])
    assert [r.valid for r in results] == [True, True]
    assert [r.info.subject for r in results] == ["CN=signer-a", "CN=signer-b"]
    assert win_certificates(both)[0] == win_certificates(first)[0]
    path = _write(work, "stub.both.efi", both)
    # sbverify accepts a multi-signature image when any entry verifies against the given cert
    assert sbverify(path, key_a.cert_path).returncode == 0
    assert sbverify(path, key_b.cert_path).returncode == 0
    # and each entry on its own passes sbverify and osslsigncode (which reads only single-entry tables)
    for index, key in enumerate((key_a, key_b)):
        single = _write(work, f"stub.only{index}.efi", keep_only_signature(both, index))
        assert sbverify(single, key.cert_path).returncode == 0
        other = key_b if key is key_a else key_a
        assert sbverify(single, other.cert_path).returncode != 0
        proc = osslsigncode_verify(single, key.cert_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    pe = pefile.PE(data=both)
    assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum()


def test_append_to_the_debian_kernel(kernel: bytes, work: Path, key_a: TestKey) -> None:
    both = sign_pe(kernel, key_a.signer, mode="append")
    debian, ours = verify_pe(both)
    assert debian.valid and ours.valid
    assert [r.valid for r in verify_pe(both, [key_a.cert])] == [False, True]
    single = _write(work, "vmlinuz.only-ours", keep_only_signature(both, 1))
    assert sbverify(single, key_a.cert_path).returncode == 0
    assert osslsigncode_verify(single, key_a.cert_path).returncode == 0


def test_replace_leaves_exactly_one(work: Path, key_a: TestKey, key_b: TestKey) -> None:
    both = sign_pe(sign_pe(STUB.read_bytes(), key_a.signer), key_b.signer, mode="append")
    assert len(list_signatures(both)) == 2
    replaced = sign_pe(both, key_a.signer, mode="replace")
    (only,) = verify_pe(replaced, [key_a.cert])
    assert only.valid and only.info.subject == "CN=signer-a"
    assert len(win_certificates(replaced)) == 1
    path = _write(work, "stub.replaced.efi", replaced)
    assert osslsigncode_verify(path, key_a.cert_path).returncode == 0
    assert sbverify(path, key_b.cert_path).returncode != 0


def test_input_is_never_modified(stub: bytes, key_a: TestKey) -> None:
    buffer = bytearray(stub)
    before = hashlib.sha256(buffer).digest()
    sign_pe(buffer, key_a.signer)  # type: ignore[arg-type]
    assert hashlib.sha256(buffer).digest() == before


def test_unsigned_image_has_no_signatures(stub: bytes) -> None:
    assert list_signatures(stub) == [] and verify_pe(stub) == []


# -- malformed images ----------------------------------------------------------------------------------


def _patched(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _offsets(data: bytes) -> dict[str, int]:
    pe = pefile.PE(data=data, fast_load=True)
    return {
        "e_lfanew": pe.DOS_HEADER.e_lfanew,
        "oh": pe.OPTIONAL_HEADER.get_file_offset(),
        "sections": pe.sections[0].get_file_offset(),
        "nsections": pe.FILE_HEADER.get_file_offset() + 2,
    }


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("truncated", "too short"),
        ("truncated-sections", "beyond the end"),
        ("no-mz", "MZ"),
        ("bad-lfanew", "outside the file"),
        ("no-pe", "no PE signature"),
        ("bad-magic", "magic"),
        ("section-table-beyond-eof", "section table"),
        ("section-overlaps-headers", "overlaps the headers"),
        ("section-beyond-eof", "beyond the end of the file"),
        ("cert-table-beyond-eof", "beyond the end of the file"),
        ("cert-table-unaligned", "not 8-byte aligned"),
    ],
)
def test_malformed_images_raise_pe_format_error(case: str, message: str, stub: bytes, key_a: TestKey) -> None:
    o = _offsets(stub)
    signed = sign_pe(stub, key_a.signer)
    sec_entry, ct_off, ct_size = security_dir(signed)
    data = {
        "truncated": stub[:50],
        "truncated-sections": stub[:0x11000],
        "no-mz": b"ZM" + stub[2:],
        "bad-lfanew": _patched(stub, 0x3C, "<I", len(stub) + 16),
        "no-pe": _patched(stub, o["e_lfanew"], "<I", 0x4551),
        "bad-magic": _patched(stub, o["oh"], "<H", 0x30B),
        "section-table-beyond-eof": _patched(stub[:0x300], o["nsections"], "<H", 60),
        "section-overlaps-headers": _patched(stub, o["sections"] + 20, "<I", 0x200),
        "section-beyond-eof": _patched(stub, o["sections"] + 20, "<I", 0x7FFF_0000),
        "cert-table-beyond-eof": _patched(signed, sec_entry, "<II", ct_off, ct_size + 8),
        "cert-table-unaligned": _patched(signed[:-4], sec_entry, "<II", ct_off - 4, ct_size),
    }[case]
    for call in (authenticode_digest, list_signatures, verify_pe):
        with pytest.raises(PeFormatError, match=message):
            call(data)
    with pytest.raises(PeFormatError, match=message):
        sign_pe(data, key_a.signer, mode="replace")


def test_ecdsa_signature_passes_sbverify_and_osslsigncode(stub: bytes, work: Path) -> None:
    """ECDSA works end to end (certificates.py warns that UEFI firmware generally expects RSA)."""
    ec_key = openssl_key(work, "signer-ec", "p256")
    path = _write(work, "stub.ec.efi", sign_pe(stub, ec_key.signer))
    assert sbverify(path, ec_key.cert_path).returncode == 0
    assert osslsigncode_verify(path, ec_key.cert_path).returncode == 0
    (result,) = verify_pe(path.read_bytes(), [ec_key.cert])
    assert result.valid
