"""An owner imported from files made by openssl: a certificate with its key file, or a PKCS#12 bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.shielding.guardians import GuardianError, import_owner, load_guardian
from app.signing.keys import load_certificate
from tests.shielding.keys import openssl, openssl_pair


def test_an_owner_is_imported_from_pkcs12_bundles(tmp_path: Path) -> None:
    s_key, s_crt = openssl_pair(tmp_path, "owner signing", "ec")
    e_key, e_crt = openssl_pair(tmp_path, "owner encryption", "rsa:3072")
    s_p12, e_p12 = tmp_path / "signing.p12", tmp_path / "encryption.p12"
    for key, crt, out in ((s_key, s_crt, s_p12), (e_key, e_crt, e_p12)):
        openssl("pkcs12", "-export", "-inkey", key, "-in", crt, "-out", out, "-passout", "pass:bundle pw")
    store = tmp_path / "store"
    owner = import_owner("imported", signing_cert=s_p12, signing_key=None, encryption_cert=e_p12,
                         encryption_key=None, passphrase=b"bundle pw", store=store)  # fmt: skip
    again = load_guardian("imported", store=store)
    assert again.kind == "owner" and again.encryption_sha256 == owner.encryption_sha256
    assert again.encryption_cert == load_certificate(e_crt)
    keys = [p for p in (store / "imported").iterdir() if p.suffix == ".key"]
    assert len(keys) == 2 and all(p.stat().st_mode & 0o777 == 0o600 for p in keys)
    assert b"ENCRYPTED" not in b"".join(p.read_bytes() for p in keys)  # kept unencrypted, 0600


def test_what_is_missing_or_extra_is_named(tmp_path: Path) -> None:
    s_key, s_crt = openssl_pair(tmp_path, "signing", "ec")
    e_key, e_crt = openssl_pair(tmp_path, "encryption", "rsa:3072")
    p12 = tmp_path / "signing.p12"
    openssl("pkcs12", "-export", "-inkey", s_key, "-in", s_crt, "-out", p12, "-passout", "pass:pw")
    store = tmp_path / "store"
    with pytest.raises(GuardianError, match="is a PKCS#12 file holding its key"):
        import_owner("o", signing_cert=p12, signing_key=s_key, encryption_cert=e_crt, encryption_key=e_key,
                     passphrase=b"pw", store=store)  # fmt: skip
    with pytest.raises(GuardianError, match="no encryption key file given"):
        import_owner("o", signing_cert=s_crt, signing_key=s_key, encryption_cert=e_crt, encryption_key=None,
                     store=store)  # fmt: skip
    assert not (store / "o").exists()
