"""Keys and certificates: openssl judges what we generate and write, and openssl's files load in ours."""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.errors import (
    KeyMismatchError,
    OutputExistsError,
    ShieldwrightError,
    SigningError,
    WrongPassphraseError,
)
from app.signing.keys import (
    KEY_TYPES,
    generate_key,
    generate_self_signed,
    is_pkcs12,
    load_certificate,
    load_certificates,
    load_pkcs12,
    load_private_key,
    load_signer,
    parse_subject,
    write_certificate,
    write_pkcs12,
    write_private_key,
)
from app.signing.signer import KeySigner
from tests.conftest import require_tool, run

PASSPHRASE = b"tr0ub4dor & 3 horses"


def openssl(*args: str | os.PathLike[str]) -> str:
    require_tool("openssl")
    return run("openssl", *args).stdout


def openssl_fails(*args: str | os.PathLike[str]) -> bool:
    proc = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    return proc.returncode != 0


def pass_file(tmp_path: Path, secret: bytes = PASSPHRASE, name: str = "pass.txt") -> Path:
    p = tmp_path / name
    p.write_bytes(secret)
    return p


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    key = generate_key("rsa2048")
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="module")
def rsa_cert(rsa_key):
    return generate_self_signed(rsa_key, common_name="Test db", organization="Test Corp", days=365)


@pytest.fixture(scope="module")
def openssl_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An RSA key + self-signed certificate made by openssl alone."""
    d = tmp_path_factory.mktemp("openssl")
    key, cert = d / "key.pem", d / "cert.pem"
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-subj",
        "/CN=OpenSSL made/O=Elsewhere",
        "-days",
        "30",
    )
    return key, cert


# --- generation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_generated_certificate_as_openssl_reads_it(key_type: str, tmp_path: Path) -> None:
    key = generate_key(key_type)
    start = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    cert = generate_self_signed(
        key, common_name="Example db", organization="Example Corp", days=400, not_before=start
    )
    path = write_certificate(cert, tmp_path / "cert.pem")
    text = openssl("x509", "-in", path, "-noout", "-text")

    assert re.search(r"X509v3 Key Usage: critical\s+Digital Signature\s*\n", text), text
    assert re.search(r"X509v3 Extended Key Usage:\s+Code Signing\s*\n", text), text
    assert re.search(r"X509v3 Basic Constraints: critical\s+CA:FALSE", text), text
    assert "X509v3 Subject Key Identifier" in text and "X509v3 Authority Key Identifier" in text
    assert "Not Before: Jan  2 03:04:05 2025 GMT" in text
    assert "Not After : Feb  6 03:04:05 2026 GMT" in text  # 400 days later
    assert re.search(r"Subject: O ?= ?Example Corp, CN ?= ?Example db", text), text
    serial = int(openssl("x509", "-in", path, "-noout", "-serial").strip().split("=")[1], 16)
    assert serial > 0 and serial == cert.serial_number
    if key_type.startswith("rsa"):
        assert f"Public-Key: ({key_type[3:]} bit)" in text
        assert "Signature Algorithm: sha256WithRSAEncryption" in text
    else:
        assert {"p256": "prime256v1", "p384": "secp384r1"}[key_type] in text
        assert "Signature Algorithm: ecdsa-with-SHA256" in text
    # openssl agrees the self-signature is valid.
    at = str(int(start.timestamp()) + 86400)
    assert ": OK" in openssl(
        "verify", "-CAfile", path, "-partial_chain", "-attime", at, "-purpose", "any", path
    )


def test_unknown_key_type_is_a_signing_error() -> None:
    with pytest.raises(SigningError):
        generate_key("rsa1024")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CN=Example db,O=Example Corp", ("Example db", "Example Corp")),
        ("cn=Example db, o=Example Corp", ("Example db", "Example Corp")),
        ("O=Org,CN=Name", ("Name", "Org")),
        ("Just A Name", ("Just A Name", None)),
        (r"CN=Smith\, John", ("Smith, John", None)),
    ],
)
def test_parse_subject(text: str, expected: tuple[str, str | None]) -> None:
    assert parse_subject(text) == expected


@pytest.mark.parametrize("text", ["", "O=Only Org", "CN=a,OU=b", "CN=", "CN=a,CN=b", "CN=a,garbage"])
def test_parse_subject_rejects(text: str) -> None:
    with pytest.raises(SigningError):
        parse_subject(text)


def test_overlong_common_name_is_a_signing_error(rsa_key) -> None:
    with pytest.raises(SigningError):
        generate_self_signed(rsa_key, common_name="x" * 65)


# --- writing keys ------------------------------------------------------------------------------------


def test_private_key_is_0600_even_with_an_open_umask(rsa_key, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = write_private_key(rsa_key, tmp_path / "key.pem")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # openssl reads it as an unencrypted key.
    assert "BEGIN PRIVATE KEY" in openssl("pkey", "-in", path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]  # no temp file left behind


def test_private_key_refuses_to_overwrite(rsa_key, tmp_path: Path) -> None:
    target = tmp_path / "key.pem"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        write_private_key(rsa_key, target)
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]
    # A dangling symlink is an existing name too: never write through it.
    link = tmp_path / "link.pem"
    link.symlink_to(tmp_path / "elsewhere.pem")
    with pytest.raises(OutputExistsError):
        write_private_key(rsa_key, link)
    assert not (tmp_path / "elsewhere.pem").exists()


def test_certificate_overwrite_only_when_asked(rsa_cert, tmp_path: Path) -> None:
    target = tmp_path / "cert.pem"
    target.write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        write_certificate(rsa_cert, target)
    assert target.read_bytes() == b"old"
    write_certificate(rsa_cert, target, der=True, overwrite=True)
    assert load_certificate(target) == rsa_cert
    assert "Code Signing" in openssl("x509", "-inform", "DER", "-in", target, "-noout", "-text")


def test_write_into_missing_directory_is_a_clean_error(rsa_key, tmp_path: Path) -> None:
    with pytest.raises(ShieldwrightError):  # not a bare OSError
        write_private_key(rsa_key, tmp_path / "nope" / "key.pem")


def test_encrypted_key_opens_only_with_the_right_passphrase(rsa_key, tmp_path: Path) -> None:
    path = write_private_key(rsa_key, tmp_path / "key.pem", PASSPHRASE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in path.read_bytes()
    # openssl, the independent reader, opens it with the passphrase and not without.
    good, bad = pass_file(tmp_path), pass_file(tmp_path, b"wrong", "bad.txt")
    assert "BEGIN PRIVATE KEY" in openssl("pkey", "-in", path, "-passin", f"file:{good}")
    assert openssl_fails("pkey", "-in", path, "-passin", f"file:{bad}")

    loaded = load_private_key(path, PASSPHRASE)
    assert loaded.private_numbers() == rsa_key.private_numbers()
    with pytest.raises(WrongPassphraseError) as wrong:
        load_private_key(path, b"wrong passphrase 123")
    assert (
        "wrong passphrase 123" not in str(wrong.value)
        and "wrong passphrase 123" not in wrong.value.one_line()
    )
    with pytest.raises(WrongPassphraseError):
        load_private_key(path, None)


def test_loads_openssl_keys_in_every_encoding(tmp_path: Path) -> None:
    base = tmp_path / "k.pem"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", base)
    pw = pass_file(tmp_path)
    variants = {
        "pkcs8.pem": ("pkey", "-in", base),
        "enc-pkcs8.pem": ("pkey", "-in", base, "-aes256", "-passout", f"file:{pw}"),
        "traditional.pem": ("ec", "-in", base),
        "enc-traditional.pem": ("ec", "-in", base, "-aes256", "-passout", f"file:{pw}"),
        "key.der": ("pkey", "-in", base, "-outform", "DER"),
        "enc.der": ("pkcs8", "-topk8", "-in", base, "-outform", "DER", "-passout", f"file:{pw}"),
    }
    expected = load_private_key(base).private_numbers()
    for name, args in variants.items():
        out = tmp_path / name
        openssl(*args, "-out", out)
        needs = "enc" in name
        key = load_private_key(out, PASSPHRASE if needs else None)
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.private_numbers() == expected, name
        if needs:
            with pytest.raises(WrongPassphraseError):
                load_private_key(out, b"nope")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n\n",
        b"hello, I am not a key\n",
        b"\x30\x82\x01\x00\x02\x01\x00" + b"\x00" * 10,
        b"-----BEGIN PRIVATE KEY-----\nnot base64 !!\n-----END PRIVATE KEY-----\n",
    ],
    ids=["empty", "blank", "text", "bad-der", "bad-pem"],
)
def test_garbage_keys_and_certificates_are_one_line_signing_errors(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(content)
    for loader in (load_private_key, load_certificate, load_certificates):
        with pytest.raises(SigningError) as err:
            loader(path)
        assert "\n" not in err.value.one_line()
        assert type(err.value) is SigningError


def test_truncated_files_are_signing_errors(rsa_key, rsa_cert, tmp_path: Path) -> None:
    key = write_private_key(rsa_key, tmp_path / "key.pem")
    cert = write_certificate(rsa_cert, tmp_path / "cert.der", der=True)
    for src, loader in ((key, load_private_key), (cert, load_certificate)):
        cut = tmp_path / f"cut-{src.name}"
        cut.write_bytes(src.read_bytes()[: len(src.read_bytes()) // 2])
        with pytest.raises(SigningError):
            loader(cut)


def test_missing_file_is_a_signing_error(tmp_path: Path) -> None:
    with pytest.raises(SigningError, match="cannot read"):
        load_certificate(tmp_path / "absent.pem")


@pytest.mark.parametrize(
    "make",
    [
        ("genpkey", "-algorithm", "ed25519", "-out", "{out}"),
        ("dsaparam", "-genkey", "-noout", "-out", "{out}", "1024"),
        ("genrsa", "-out", "{out}", "512"),
    ],
    ids=["ed25519", "dsa", "rsa512"],
)
def test_unsupported_keys_are_signing_errors(make: tuple[str, ...], tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    openssl(*(a.format(out=path) for a in make))
    with pytest.raises(SigningError) as err:
        load_private_key(path)
    assert not isinstance(err.value, WrongPassphraseError)
    assert "not supported" in str(err.value) or "too small" in str(err.value)


# --- PKCS#12 -----------------------------------------------------------------------------------------


def test_our_pkcs12_opens_in_openssl(rsa_key, rsa_cert, tmp_path: Path) -> None:
    chain_key = generate_key("p256")
    chain_cert = generate_self_signed(chain_key, common_name="Chain CA")
    path = write_pkcs12(
        rsa_key, rsa_cert, tmp_path / "id.p12", PASSPHRASE, friendly_name="Test db", chain=[chain_cert]
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pw = pass_file(tmp_path)
    info = openssl("pkcs12", "-info", "-in", path, "-passin", f"file:{pw}", "-nokeys")
    assert "subject=CN = Test db" in info or "subject=O = Test Corp, CN = Test db" in info
    assert "friendlyName: Test db" in info
    assert "Chain CA" in info
    keys = openssl("pkcs12", "-in", path, "-passin", f"file:{pw}", "-nocerts", "-noenc")
    assert "BEGIN PRIVATE KEY" in keys
    assert openssl_fails("pkcs12", "-info", "-in", path, "-passin", "pass:wrong", "-nokeys")
    with pytest.raises(OutputExistsError):
        write_pkcs12(rsa_key, rsa_cert, path, PASSPHRASE)
    with pytest.raises(SigningError):
        write_pkcs12(rsa_key, rsa_cert, tmp_path / "nopass.p12", b"")
    # …and ours reads it back.
    key, cert, chain = load_pkcs12(path, PASSPHRASE)
    assert cert == rsa_cert and chain == [chain_cert]
    assert key.private_numbers() == rsa_key.private_numbers()


def test_openssl_pkcs12_loads_in_ours(openssl_pair, tmp_path: Path) -> None:
    key_path, cert_path = openssl_pair
    pw = pass_file(tmp_path)
    p12 = tmp_path / "openssl.pfx"
    openssl("pkcs12", "-export", "-inkey", key_path, "-in", cert_path, "-passout", f"file:{pw}", "-out", p12)
    assert is_pkcs12(p12.read_bytes())
    key, cert, chain = load_pkcs12(p12, PASSPHRASE)
    assert cert == load_certificate(cert_path) and chain == []
    assert key.private_numbers() == load_private_key(key_path).private_numbers()

    with pytest.raises(WrongPassphraseError) as err:
        load_pkcs12(p12, b"Sup3r-wrong")
    assert "Sup3r-wrong" not in err.value.one_line()
    with pytest.raises(WrongPassphraseError):
        load_pkcs12(p12, None)

    # load_signer detects PKCS#12 by content, whatever the extension.
    disguised = tmp_path / "looks-like.pem"
    disguised.write_bytes(p12.read_bytes())
    signer = load_signer(disguised, passphrase=PASSPHRASE)
    assert isinstance(signer, KeySigner) and signer.certificate == cert


def test_pkcs12_without_passphrase_loads_with_none(openssl_pair, tmp_path: Path) -> None:
    key_path, cert_path = openssl_pair
    p12 = tmp_path / "empty.p12"
    openssl("pkcs12", "-export", "-inkey", key_path, "-in", cert_path, "-passout", "pass:", "-out", p12)
    _key, cert, _chain = load_pkcs12(p12, None)
    assert cert == load_certificate(cert_path)


def test_corrupt_pkcs12_is_a_signing_error(rsa_key, rsa_cert, tmp_path: Path) -> None:
    good = write_pkcs12(rsa_key, rsa_cert, tmp_path / "id.p12", PASSPHRASE).read_bytes()
    bad = tmp_path / "bad.p12"
    bad.write_bytes(good[:40])
    with pytest.raises(SigningError):
        load_pkcs12(bad, PASSPHRASE)


# --- signers -----------------------------------------------------------------------------------------


def test_load_signer_from_pem_pair_with_chain(openssl_pair, rsa_cert, tmp_path: Path) -> None:
    key_path, cert_path = openssl_pair
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(cert_path.read_bytes() + write_certificate(rsa_cert, tmp_path / "c.pem").read_bytes())
    signer = load_signer(bundle, key_path)
    assert signer.certificate == load_certificate(cert_path)
    assert signer.chain == [rsa_cert]
    assert len(load_certificates(bundle)) == 2
    # the signature verifies with the certificate's public key (openssl as the judge)
    data = tmp_path / "data.bin"
    data.write_bytes(b"sign me")
    sig = tmp_path / "sig.bin"
    sig.write_bytes(signer.sign(data.read_bytes()))
    pub = tmp_path / "pub.pem"
    openssl("x509", "-in", cert_path, "-pubkey", "-noout", "-out", pub)
    assert "Verified OK" in openssl("dgst", "-sha256", "-verify", pub, "-signature", sig, data)


def test_load_signer_from_combined_pem(openssl_pair, tmp_path: Path) -> None:
    key_path, cert_path = openssl_pair
    combined = tmp_path / "combined.pem"
    combined.write_bytes(cert_path.read_bytes() + key_path.read_bytes())
    assert load_signer(combined).certificate == load_certificate(cert_path)


def test_encrypted_key_signer_and_mismatch(openssl_pair, rsa_key, rsa_cert, tmp_path: Path) -> None:
    key_path, cert_path = openssl_pair
    ours = write_private_key(rsa_key, tmp_path / "ours.pem", PASSPHRASE)
    cert = write_certificate(rsa_cert, tmp_path / "ours.crt")
    assert load_signer(cert, ours, PASSPHRASE).certificate == rsa_cert
    with pytest.raises(KeyMismatchError):
        load_signer(cert_path, ours, PASSPHRASE)
    with pytest.raises(KeyMismatchError):
        load_signer(cert, key_path)
    with pytest.raises(SigningError, match="no private key"):
        load_signer(cert)


# --- the no-overwrite guarantee itself ---------------------------------------------------------------


def test_link_refuses_even_when_the_early_check_is_raced(rsa_key, tmp_path: Path, monkeypatch) -> None:
    """The friendly exists() check can lose a race; link(2) is what really refuses to overwrite."""
    target = tmp_path / "key.pem"
    target.write_bytes(b"created by someone else in the meantime")
    monkeypatch.setattr(os.path, "lexists", lambda _p: False)
    with pytest.raises(OutputExistsError):
        write_private_key(rsa_key, target)
    assert target.read_bytes() == b"created by someone else in the meantime"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]


def test_filesystem_without_hard_links_still_never_overwrites(rsa_key, tmp_path: Path, monkeypatch) -> None:
    def no_links(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    old = os.umask(0)
    try:
        path = write_private_key(rsa_key, tmp_path / "key.pem", PASSPHRASE)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_private_key(path, PASSPHRASE).private_numbers() == rsa_key.private_numbers()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]
    monkeypatch.setattr(os.path, "lexists", lambda _p: False)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        write_private_key(rsa_key, path)
    assert path.read_bytes() == before


def test_a_key_file_given_as_certificate_says_so(rsa_key, tmp_path: Path) -> None:
    path = write_private_key(rsa_key, tmp_path / "key.pem")
    with pytest.raises(SigningError, match="private key, not a certificate"):
        load_certificate(path)


def test_an_endless_pipe_given_as_a_certificate_or_key_is_refused_at_the_limit() -> None:
    """Regression (issue 17 item 6): failed on ecab7db because the reader trusted ``st_size``, which is 0
    for /dev/zero, and then read the whole endless file into memory."""
    with pytest.raises(SigningError, match="larger than"):
        load_certificates("/dev/zero")
    with pytest.raises(SigningError, match="larger than"):
        load_private_key("/dev/zero")


def test_a_wrong_passphrase_that_decrypts_with_valid_padding_is_still_a_wrong_passphrase(
    tmp_path: Path,
) -> None:
    """About one wrong passphrase in 256 decrypts an OpenSSL "traditional" encrypted key (AES-CBC) to
    garbage whose padding checks out; the parse then fails instead of the decrypt. It is still a wrong
    passphrase, not an unreadable file (seen once in CI: the wizard closed its passphrase prompt)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = tmp_path / "key.pem"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", tmp_path / "k")
    openssl("ec", "-in", tmp_path / "k", "-aes256", "-passout", f"file:{pass_file(tmp_path)}", "-out", key)
    data = key.read_bytes()
    collision = None
    for i in range(20_000):  # one in ~256 has valid padding; the traditional KDF (one MD5) is cheap
        guess = f"wrong-{i}".encode()
        try:
            load_pem_private_key(data, guess)
        except ValueError as exc:
            if "password" not in str(exc).lower():
                collision = guess
                break
    assert collision is not None, "no wrong passphrase with valid padding in 20 000 tries"
    with pytest.raises(WrongPassphraseError):
        load_private_key(key, collision)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SigningError) as err:
        load_private_key(garbage, b"any")
    assert not isinstance(err.value, WrongPassphraseError)
