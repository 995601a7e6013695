"""``shieldwright pe``: digest, sign, verify, list — end to end through the real CLI in a subprocess."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pefile
import pytest

from tests.conftest import run
from tests.signing.pe_helpers import STUB, TestKey, openssl_key, osslsigncode_unsigned_digest, sbverify

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = "correct horse battery staple"


def shieldwright(
    *args: str | os.PathLike[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", "pe", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)  # fmt: skip


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shieldwright: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clipe")


@pytest.fixture(scope="module")
def key(d: Path) -> TestKey:
    return openssl_key(d, "cli-signer")


@pytest.fixture(scope="module")
def other(d: Path) -> TestKey:
    return openssl_key(d, "cli-other")


@pytest.fixture(scope="module")
def stub(d: Path) -> Path:
    path = d / "stub.efi"
    path.write_bytes(STUB.read_bytes())
    return path


@pytest.fixture(scope="module")
def signed(d: Path, stub: Path, key: TestKey) -> Path:
    out = d / "stub.signed.efi"
    proc = shieldwright("sign", stub, "--cert", key.cert_path, "--key", key.key_path, "-o", out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_digest_matches_osslsigncode(stub: Path, d: Path) -> None:
    proc = shieldwright("digest", stub)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == osslsigncode_unsigned_digest(stub, d).hex()


def test_sign_then_verify(signed: Path, stub: Path, key: TestKey) -> None:
    assert hashlib.sha256(stub.read_bytes()).digest() == hashlib.sha256(STUB.read_bytes()).digest()
    assert sbverify(signed, key.cert_path).returncode == 0
    proc = shieldwright("verify", signed, "--cert", key.cert_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "signature 0: OK" in proc.stdout and "CN=cli-signer" in proc.stdout
    pe = pefile.PE(str(signed))
    assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum()


def test_verify_without_cert_does_not_report_success(
    signed: Path, stub: Path, other: TestKey, d: Path
) -> None:
    """Regression (issue 17 item 5): failed on ecab7db because ``pe verify`` without ``--cert`` exited 0 for
    an image anyone could have re-signed; now it says the signer was NOT checked and exits 3."""
    forged = d / "forged.efi"  # an attacker's re-signature (osslsigncode, not our signer)
    run("osslsigncode", "sign", "-certs", other.cert_path, "-key", other.key_path, "-h", "sha256",
        "-in", stub, "-out", forged)  # fmt: skip
    for image in (signed, forged):
        proc = shieldwright("verify", image)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert "signature 0: OK" in proc.stdout and "NOT CHECKED" in proc.stdout
        assert_one_line_error(proc, "signer was NOT checked", "--cert", "--no-trust-check")
        proc = shieldwright("verify", image, "--no-trust-check")  # the explicit opt-out
        assert proc.returncode == 0 and "NOT CHECKED" in proc.stdout and not proc.stderr
    assert shieldwright("verify", forged, "--trust", d / "cli-signer.pem").returncode == 1


def test_trust_and_no_trust_check_exclude_each_other(signed: Path, key: TestKey) -> None:
    proc = shieldwright("verify", signed, "--cert", key.cert_path, "--no-trust-check")
    assert proc.returncode == 2 and "not allowed with" in proc.stderr


def test_verify_help_states_the_chain_rules_and_expiry() -> None:
    text = " ".join(shieldwright("verify", "--help").stdout.split())
    assert "RFC 5280" in text and "Expiry is NOT checked" in text and "--no-trust-check" in text


def test_verify_with_the_wrong_cert_fails(signed: Path, other: TestKey) -> None:
    proc = shieldwright("verify", signed, "--cert", other.cert_path)
    assert proc.returncode == 1
    assert "signature 0: FAILED" in proc.stdout and "not trusted" in proc.stdout
    assert_one_line_error(proc, "no signature")


def test_verify_unsigned_fails(stub: Path) -> None:
    proc = shieldwright("verify", stub)
    assert proc.returncode == 1
    assert_one_line_error(proc, "not signed")


def test_list(signed: Path) -> None:
    proc = shieldwright("list", signed)
    assert proc.returncode == 0
    assert "sha256" in proc.stdout and "digest matches" in proc.stdout and "CN=cli-signer" in proc.stdout


def test_sign_signed_refused_then_append_and_replace(
    signed: Path, d: Path, key: TestKey, other: TestKey
) -> None:
    out = d / "twice.efi"
    proc = shieldwright("sign", signed, "--cert", other.cert_path, "--key", other.key_path, "-o", out)
    assert_one_line_error(proc, "already signed (1 signature)", "--append", "--replace")
    assert not out.exists()

    proc = shieldwright(
        "sign", signed, "--cert", other.cert_path, "--key", other.key_path, "--append", "-o", out
    )
    assert proc.returncode == 0, proc.stderr
    listed = shieldwright("list", out).stdout
    assert "CN=cli-signer" in listed and "CN=cli-other" in listed
    for k in (key, other):
        assert shieldwright("verify", out, "--cert", k.cert_path).returncode == 0
        assert sbverify(out, k.cert_path).returncode == 0

    replaced = d / "replaced.efi"
    proc = shieldwright(
        "sign", out, "--cert", other.cert_path, "--key", other.key_path, "--replace", "-o", replaced
    )
    assert proc.returncode == 0, proc.stderr
    assert "CN=cli-signer" not in shieldwright("list", replaced).stdout
    assert shieldwright("verify", replaced, "--cert", key.cert_path).returncode == 1
    assert shieldwright("verify", replaced, "--cert", other.cert_path).returncode == 0


def test_output_equal_to_input_is_refused(d: Path, key: TestKey) -> None:
    path = d / "inplace.efi"
    path.write_bytes(STUB.read_bytes())
    before = path.read_bytes()
    proc = shieldwright(
        "sign", path, "--cert", key.cert_path, "--key", key.key_path, "-o", d / "." / "inplace.efi"
    )
    assert_one_line_error(proc, "output is the input")
    assert path.read_bytes() == before


def test_sign_never_replaces_an_existing_output_without_force(d: Path, stub: Path, key: TestKey) -> None:
    """Regression (issue 17 item 8): failed on ecab7db because ``pe sign -o`` replaced an existing file."""
    out = d / "precious.efi"
    out.write_bytes(b"someone else's file")
    argv = ["sign", stub, "--cert", key.cert_path, "--key", key.key_path, "-o", out]
    assert_one_line_error(shieldwright(*argv), "already exists", "--force")
    assert out.read_bytes() == b"someone else's file"
    assert shieldwright(*argv, "--force").returncode == 0
    assert sbverify(out, key.cert_path).returncode == 0


def test_encrypted_key_with_passphrase_file_and_env(d: Path, stub: Path, key: TestKey) -> None:
    enc = d / "enc.key"
    run("openssl", "pkey", "-in", key.key_path, "-aes256", "-passout", f"pass:{PASSPHRASE}", "-out", enc)
    pass_file = d / "pass.txt"
    pass_file.write_text(PASSPHRASE + "\n")
    out = d / "enc-signed.efi"
    proc = shieldwright(
        "sign", stub, "--cert", key.cert_path, "--key", enc, "--key-passphrase-file", pass_file, "-o", out
    )
    assert proc.returncode == 0, proc.stderr
    assert PASSPHRASE not in proc.stdout + proc.stderr
    proc = shieldwright(
        "sign",
        stub,
        "--cert",
        key.cert_path,
        "--key",
        enc,
        "--key-passphrase-env",
        "SW_PASS",
        "-o",
        out,
        "--force",
        env={"SW_PASS": PASSPHRASE},
    )
    assert proc.returncode == 0, proc.stderr
    assert shieldwright("verify", out, "--cert", key.cert_path).returncode == 0


# -- bad inputs: non-zero exit, one line, no traceback ------------------------------------------------


def _corrupt_section_table(data: bytes) -> bytes:
    pe = pefile.PE(data=data, fast_load=True)
    out = bytearray(data)
    struct.pack_into("<I", out, pe.sections[2].get_file_offset() + 20, len(data) + 0x1000)  # PointerToRawData
    return bytes(out)


@pytest.mark.parametrize(
    ("name", "make", "fragment"),
    [
        ("truncated.efi", lambda b: b[:0x2000], "beyond the end of the file"),
        ("tiny.efi", lambda b: b[:40], "too short"),
        ("badsections.efi", _corrupt_section_table, "section"),
        ("not-pe.txt", lambda b: b"hello, this is not a PE file at all\n" * 4, "MZ"),
    ],
)
@pytest.mark.parametrize("action", ["digest", "verify", "list", "sign"])
def test_bad_images(name: str, make, fragment: str, action: str, d: Path, key: TestKey) -> None:
    path = d / name
    path.write_bytes(make(STUB.read_bytes()))
    extra = (
        ["--cert", key.cert_path, "--key", key.key_path, "-o", d / f"{name}.out"] if action == "sign" else []
    )
    proc = shieldwright(action, path, *extra)
    assert_one_line_error(proc, fragment)
    assert proc.returncode == 2


def test_missing_file(d: Path) -> None:
    assert_one_line_error(shieldwright("digest", d / "nope.efi"), "cannot read")


def test_wrong_passphrase(d: Path, stub: Path, key: TestKey) -> None:
    enc = d / "wrong.key"
    run("openssl", "pkey", "-in", key.key_path, "-aes256", "-passout", f"pass:{PASSPHRASE}", "-out", enc)
    proc = shieldwright(
        "sign",
        stub,
        "--cert",
        key.cert_path,
        "--key",
        enc,
        "--key-passphrase-env",
        "SW_PASS",
        "-o",
        d / "x.efi",
        env={"SW_PASS": "not it"},
    )
    assert_one_line_error(proc, "passphrase")
    assert "not it" not in proc.stderr
    # no passphrase at all, and no terminal to prompt on
    proc = shieldwright("sign", stub, "--cert", key.cert_path, "--key", enc, "-o", d / "x.efi")
    assert_one_line_error(proc, "passphrase")
    assert not (d / "x.efi").exists()


def test_wrong_pkcs12_passphrase(d: Path, stub: Path, key: TestKey) -> None:
    p12 = d / "signer.p12"
    run("openssl", "pkcs12", "-export", "-inkey", key.key_path, "-in", key.cert_path, "-passout",
        f"pass:{PASSPHRASE}", "-out", p12)  # fmt: skip
    proc = shieldwright("sign", stub, "--cert", p12, "--key-passphrase-env", "SW_PASS", "-o", d / "p.efi",
                        env={"SW_PASS": "wrong"})  # fmt: skip
    assert_one_line_error(proc, "passphrase")
    proc = shieldwright("sign", stub, "--cert", p12, "--key-passphrase-env", "SW_PASS", "-o", d / "p.efi",
                        env={"SW_PASS": PASSPHRASE})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert shieldwright("verify", d / "p.efi", "--cert", key.cert_path).returncode == 0


def test_mismatched_key(d: Path, stub: Path, key: TestKey, other: TestKey) -> None:
    proc = shieldwright("sign", stub, "--cert", key.cert_path, "--key", other.key_path, "-o", d / "m.efi")
    assert_one_line_error(proc, "does not belong")
    assert not (d / "m.efi").exists()
