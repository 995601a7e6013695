"""Guardians: the owner's key pairs and the hosting fabrics' encryption certificates, kept per user.

An *owner guardian* has a signing key pair (it signs the ``.shd``) and an encryption key pair (the owner
can always open its own data); a *guardian* of a fabric is an encryption certificate, optionally with its
signing certificate, imported from the fabric (Microsoft: the HGS guardian metadata). Local guardians live
in the user's XDG data directory, one directory per name (mode 0700), private keys 0600 and never
overwritten. Encryption keys are RSA: the CMS EnvelopedData is made with ``cryptography``'s PKCS#7
envelope API, which takes RSA recipients only (cryptography 50); signing keys may be RSA or ECDSA.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID
from platformdirs import user_data_path

from app.errors import ShieldwrightError, SigningError
from app.signing.keys import (
    PrivateKey,
    generate_key,
    is_pkcs12_file,
    load_certificates,
    load_pkcs12,
    load_private_key,
    write_private_key,
)

#: Key types an owner may generate: encryption keys must be RSA (see the module doc).
SIGNING_KEY_TYPES = ("rsa3072", "p256", "p384")
ENCRYPTION_KEY_TYPES = ("rsa3072",)
KINDS = ("owner", "guardian")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
META = "guardian.json"
FILES = {"signing_cert": "signing.crt", "signing_key": "signing.key", "encryption_cert": "encryption.crt",
         "encryption_key": "encryption.key"}  # fmt: skip


class GuardianError(ShieldwrightError):
    """A guardian that cannot be made, found or used."""


def default_store() -> Path:
    """``$XDG_DATA_HOME/shieldwright/guardians`` (``~/.local/share/...``)."""
    return user_data_path("shieldwright") / "guardians"


def cert_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class Guardian:
    """A guardian as stored: its name and kind, its certificates, and for an owner where its keys are."""

    name: str
    kind: str
    encryption_cert: x509.Certificate
    signing_cert: x509.Certificate | None = None
    directory: Path | None = None

    @property
    def subject(self) -> str:
        return self.encryption_cert.subject.rfc4514_string()

    @property
    def encryption_sha256(self) -> str:
        return cert_sha256(self.encryption_cert)

    @property
    def signing_sha256(self) -> str | None:
        return cert_sha256(self.signing_cert) if self.signing_cert is not None else None

    def signing_key(self) -> PrivateKey:
        return self._key("signing_key")

    def encryption_key(self) -> PrivateKey:
        return self._key("encryption_key")

    def _key(self, which: str) -> PrivateKey:
        if self.kind != "owner" or self.directory is None:
            raise GuardianError(
                f"guardian {self.name!r} has no private keys here", "only an owner guardian does"
            )
        return load_private_key(self.directory / FILES[which])

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "subject": self.subject,
            "encryption_sha256": self.encryption_sha256,
            "signing_sha256": self.signing_sha256,
        }


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise GuardianError(f"{name!r} is not a guardian name", "use 1-64 letters, digits, '.', '_' or '-'")
    return name


def _certificate(key: PrivateKey, name: str, purpose: str, days: int) -> x509.Certificate:
    """A self-signed end-entity certificate: signing (digitalSignature) or encryption (keyEncipherment).

    No extendedKeyUsage: ``openssl cms -verify`` checks the S/MIME signing purpose, which an EKU of
    codeSigning would fail; keyUsage says what the key is for."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} shielding data {purpose}")])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    usage = purpose == "signing"
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=usage, content_commitment=False, key_encipherment=not usage,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )  # fmt: skip
    return builder.sign(key, hashes.SHA256())


def new_owner(name: str, *, signing: str = "p256", store: Path | None = None, days: int = 3650) -> Guardian:
    """Generate an owner guardian: a signing key pair (``signing``: RSA 3072, P-256 or P-384) and an RSA
    3072 encryption key pair, self-signed certificates, written to a new directory in ``store``."""
    check_name(name)
    if signing not in SIGNING_KEY_TYPES:
        raise GuardianError(
            f"unknown signing key type {signing!r}", f"use one of {', '.join(SIGNING_KEY_TYPES)}"
        )
    sign_key, enc_key = generate_key(signing), generate_key(ENCRYPTION_KEY_TYPES[0])
    sign_cert = _certificate(sign_key, name, "signing", days)
    enc_cert = _certificate(enc_key, name, "encryption", days)
    return _store(name, "owner", enc_cert, sign_cert, store, keys=(sign_key, enc_key))


def import_owner(
    name: str, *, signing_cert: Path, signing_key: Path | None, encryption_cert: Path,
    encryption_key: Path | None, passphrase: bytes | None = None, store: Path | None = None,
) -> Guardian:  # fmt: skip
    """An owner guardian from existing files (keys stored unencrypted, 0600): each certificate with its key
    file (PEM or DER), or a PKCS#12 file holding both (its key file then None); one passphrase for all."""
    check_name(name)
    s_cert, s_key = _cert_and_key(signing_cert, signing_key, passphrase, "signing")
    e_cert, e_key = _cert_and_key(encryption_cert, encryption_key, passphrase, "encryption")
    for cert, key, what in ((s_cert, s_key, "signing"), (e_cert, e_key, "encryption")):
        if _spki(_public_key(cert, f"the {what} certificate")) != _spki(key.public_key()):
            raise GuardianError(
                f"the {what} key does not match the {what} certificate", "give matching files"
            )
    _check_encryption_cert(e_cert, str(encryption_cert))
    return _store(name, "owner", e_cert, s_cert, store, keys=(s_key, e_key))


def import_guardian(
    name: str, encryption_cert: Path, *, signing_cert: Path | None = None, store: Path | None = None
) -> Guardian:
    """A fabric's guardian: its encryption certificate (and optionally its signing certificate)."""
    check_name(name)
    e_cert = _one_cert(encryption_cert)
    _check_encryption_cert(e_cert, str(encryption_cert))
    s_cert = _one_cert(signing_cert) if signing_cert is not None else None
    return _store(name, "guardian", e_cert, s_cert, store)


def _spki(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined, no-any-return]


def _cert_and_key(
    cert_path: Path, key_path: Path | None, passphrase: bytes | None, what: str
) -> tuple[x509.Certificate, PrivateKey]:
    """A certificate and its key: from a PKCS#12 file, or a certificate file and a key file."""
    if is_pkcs12_file(cert_path):
        if key_path is not None:
            raise GuardianError(f"the {what} certificate {cert_path} is a PKCS#12 file holding its key",
                                "leave its key file empty")  # fmt: skip
        key, cert, _chain = load_pkcs12(cert_path, passphrase)
        return cert, key
    if key_path is None:
        raise GuardianError(f"no {what} key file given for {cert_path}",
                            "give the key file, or a PKCS#12 file holding certificate and key")  # fmt: skip
    return _one_cert(cert_path), load_private_key(key_path, passphrase)


def _one_cert(path: Path) -> x509.Certificate:
    certs = load_certificates(path)
    if len(certs) != 1:
        raise GuardianError(f"{path} holds {len(certs)} certificates", "give a file with exactly one")
    return certs[0]


def _public_key(cert: x509.Certificate, where: str) -> CertificatePublicKeyTypes:
    """The certificate's public key; the loaders parse it up front, this keeps any other caller typed."""
    try:
        return cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise GuardianError(f"{where} has an unreadable or unsupported public key",
                            "use an RSA or ECDSA certificate") from None  # fmt: skip


def _check_encryption_cert(cert: x509.Certificate, where: str) -> None:
    key = _public_key(cert, where)
    if not isinstance(key, rsa.RSAPublicKey):
        what = "an elliptic-curve" if isinstance(key, ec.EllipticCurvePublicKey) else "a non-RSA"
        raise GuardianError(f"{where} has {what} key; shielding data is encrypted to RSA keys only",
                            "use the guardian's RSA encryption certificate")  # fmt: skip
    if key.key_size < 2048:
        raise GuardianError(f"{where} has an RSA {key.key_size} key", "use RSA 2048 or larger")


def _store(
    name: str, kind: str, enc: x509.Certificate, sign: x509.Certificate | None, store: Path | None,
    keys: Sequence[PrivateKey] = (),
) -> Guardian:  # fmt: skip
    root = store or default_store()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = root / name
    try:
        target.mkdir(mode=0o700)
    except FileExistsError:
        raise GuardianError(
            f"a guardian named {name!r} already exists", "choose another name, or remove it"
        ) from None
    try:
        pem = serialization.Encoding.PEM
        (target / FILES["encryption_cert"]).write_bytes(enc.public_bytes(pem))
        if sign is not None:
            (target / FILES["signing_cert"]).write_bytes(sign.public_bytes(pem))
        if keys:
            write_private_key(keys[0], target / FILES["signing_key"])
            write_private_key(keys[1], target / FILES["encryption_key"])
        created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        (target / META).write_text(json.dumps({"name": name, "kind": kind, "created": created}) + "\n")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return Guardian(name, kind, enc, sign, target)


def load_guardian(name: str, *, store: Path | None = None) -> Guardian:
    check_name(name)
    target = (store or default_store()) / name
    try:
        meta = json.loads((target / META).read_text())
        kind = meta["kind"]
        if kind not in KINDS:
            raise ValueError(kind)
        enc = _one_cert(target / FILES["encryption_cert"])
        sign_path = target / FILES["signing_cert"]
        sign = _one_cert(sign_path) if sign_path.exists() else None
    except FileNotFoundError:
        raise GuardianError(
            f"no guardian named {name!r}", "see `shieldwright shield guardian list`"
        ) from None
    except (ValueError, KeyError, TypeError, SigningError):  # SigningError: a certificate that does not load
        raise GuardianError(f"guardian {name!r} is damaged", f"look at {target}") from None
    if kind == "owner" and sign is None:
        raise GuardianError(f"owner guardian {name!r} has no signing certificate", f"look at {target}")
    return Guardian(name, kind, enc, sign, target)


def list_guardians(*, store: Path | None = None) -> list[Guardian]:
    root = store or default_store()
    if not root.is_dir():
        return []
    return [load_guardian(p.name, store=root) for p in sorted(root.iterdir()) if (p / META).is_file()]


def remove_guardian(name: str, *, store: Path | None = None) -> Guardian:
    """Remove a local guardian's directory (for an owner: its private keys too — data it signed can then
    no longer be opened by the owner, only by its guardians). Returns what was removed."""
    g = load_guardian(name, store=store)
    assert g.directory is not None
    shutil.rmtree(g.directory)
    return g


def export_guardian(name: str, *, store: Path | None = None) -> bytes:
    """The guardian's certificates as PEM (encryption first, then signing): public data only."""
    g = load_guardian(name, store=store)
    pem = serialization.Encoding.PEM
    return g.encryption_cert.public_bytes(pem) + (g.signing_cert.public_bytes(pem) if g.signing_cert else b"")
