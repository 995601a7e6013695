"""Load and generate signing keys and certificates; write them safely.

The one place that turns files into key objects, so every caller gets the same clear errors: a wrong or
missing passphrase is a :class:`WrongPassphraseError` (never echoing the passphrase), a key that does not
belong to its certificate a :class:`KeyMismatchError`, and anything else unreadable or unsupported a
:class:`SigningError` with a one-line message. Formats are detected from the content, never from the file
name, because ``.pem``/``.crt``/``.cer``/``.key``/``.pfx`` are used for everything in the wild.

Supported keys are what UEFI firmware, sbsign and CMS verifiers all handle: RSA (>= 1024 bits to load, the
inspection flags < 2048) and ECDSA on P-256/P-384/P-521. DSA and EdDSA keys are refused up front rather
than failing later inside a signature.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.errors import KeyMismatchError, SigningError, WrongPassphraseError
from app.signing.certificates import CERT_ERRORS, parsed_certificate
from app.signing.output import write_output
from app.signing.signer import KeySigner
from app.untrusted import printable, read_bounded

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

#: Key types we generate. RSA-2048 first: it is what UEFI firmware is guaranteed to accept in db.
KEY_TYPES = ("rsa2048", "rsa3072", "rsa4096", "p256", "p384")

_RSA_BITS = {"rsa2048": 2048, "rsa3072": 3072, "rsa4096": 4096}
_CURVES: dict[str, type[ec.EllipticCurve]] = {"p256": ec.SECP256R1, "p384": ec.SECP384R1}
_SUPPORTED_CURVES = ("secp256r1", "secp384r1", "secp521r1")
_MIN_RSA_BITS = 1024

#: Certificates, keys and PKCS#12 files are small; refuse to slurp a disk image picked by mistake.
_MAX_FILE_SIZE = 8 * 1024 * 1024

_PEM_MARKER = b"-----BEGIN "


# --- generating --------------------------------------------------------------------------------------


def generate_key(key_type: str) -> PrivateKey:
    """A new private key of one of :data:`KEY_TYPES` (RSA with e = 65537)."""
    if key_type in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[key_type])
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type]())
    raise SigningError(f"unknown key type {key_type!r}", f"use one of {', '.join(KEY_TYPES)}")


def parse_subject(text: str) -> tuple[str, str | None]:
    """``"CN=Example db,O=Example Corp"`` → ``("Example db", "Example Corp")``; a bare name is the CN.

    Only CN and O are accepted: they are what firmware setup screens and ``mokutil`` show, and a
    signing certificate needs nothing else. Attribute names are case-insensitive, spaces around commas
    are ignored, and ``\\,`` escapes a comma inside a value (RFC 4514 style).
    """
    text = text.strip()
    if not text:
        raise SigningError("the subject is empty", 'give e.g. "CN=Example db,O=Example Corp"')
    if "=" not in text:
        return text, None
    values: dict[str, str] = {}
    for part in _split_unescaped(text, ","):
        key, sep, value = part.partition("=")
        key, value = key.strip().upper(), _unescape(value.strip())
        if not sep or key not in ("CN", "O"):
            raise SigningError(
                f"unsupported subject part {part.strip()!r}",
                'only CN and O are used, e.g. "CN=Example db,O=Example"',
            )
        if key in values:
            raise SigningError(f"the subject gives {key} twice", "give each of CN and O at most once")
        if not value:
            raise SigningError(f"the subject's {key} is empty", "give it a value or leave it out")
        values[key] = value
    if "CN" not in values:
        raise SigningError("the subject has no CN (common name)", 'give e.g. "CN=Example db,O=Example Corp"')
    return values["CN"], values.get("O")


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    out, escaped = [], False
    for ch in value:
        if escaped or ch != "\\":
            out.append(ch)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def generate_self_signed(
    key: PrivateKey,
    *,
    common_name: str,
    organization: str | None = None,
    days: int = 3650,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """A self-signed code-signing certificate for ``key``: the shape sbsign/UEFI db and CMS verifiers want.

    KeyUsage digitalSignature (critical), EKU codeSigning, BasicConstraints CA=false (critical), subject
    and authority key identifiers, a random positive serial, SHA-256. Valid from ``not_before`` (default:
    now, to the second) for ``days`` days.
    """
    _check_key(key)
    if days < 1:
        raise SigningError(f"the validity must be at least one day, not {days}", "give a positive --days")
    start = (not_before or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    try:
        end = start + dt.timedelta(days=days)
    except OverflowError:
        raise SigningError(f"a validity of {days} days is too long", "give fewer days") from None
    try:
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []
        name = x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    except ValueError as exc:  # e.g. CN longer than 64 characters
        raise SigningError(f"invalid subject: {exc}", "CN and O are at most 64 characters") from None
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


# --- loading -----------------------------------------------------------------------------------------


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    p = Path(path)
    data = read_bounded(p, _MAX_FILE_SIZE, SigningError, "check the path")
    if len(data) > _MAX_FILE_SIZE:
        raise SigningError(f"{p} is larger than {_MAX_FILE_SIZE} bytes: not {what}", "check the file name")
    if not data.strip():
        raise SigningError(f"{p} is empty", f"expected {what}")
    return data


def _is_pem(data: bytes) -> bool:
    return _PEM_MARKER in data


def _der_header(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(tag, content start, content length) of the DER element at ``pos``, or None if malformed."""
    if pos + 2 > len(data):
        return None
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        return tag, pos, first
    count = first & 0x7F
    if count == 0 or count > 4 or pos + count > len(data):
        return None
    return tag, pos + count, int.from_bytes(data[pos : pos + count], "big")


def is_pkcs12(data: bytes) -> bool:
    """True when ``data`` looks like a DER PFX: SEQUENCE { INTEGER 3, ... } (certificates and keys differ)."""
    outer = _der_header(data, 0)
    if outer is None or outer[0] != 0x30:
        return False
    inner = _der_header(data, outer[1])
    return (
        inner is not None and inner[0] == 0x02 and inner[2] == 1 and data[inner[1] : inner[1] + 1] == b"\x03"
    )


def is_pkcs12_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` holds a PKCS#12 (so a caller knows to ask for its passphrase before loading)."""
    return is_pkcs12(_read(path, "a certificate or PKCS#12 file"))


def _check_key(key: object, source: str = "the key") -> PrivateKey:
    """The key if Shieldwright can sign with it; a SigningError naming what it is otherwise."""
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise SigningError(
                f"{source} is RSA-{key.key_size}, too small to sign with",
                "use an RSA key of 2048 bits or more",
            )
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in _SUPPORTED_CURVES:
            raise SigningError(
                f"{source} uses the elliptic curve {key.curve.name}, which is not supported",
                "use RSA-2048 or ECDSA P-256/P-384",
            )
        return key
    kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "") or "unknown"
    raise SigningError(
        f"{source} is a {kind} key, which is not supported for signing", "use RSA-2048 or ECDSA P-256/P-384"
    )


def load_private_key(path: str | os.PathLike[str], passphrase: bytes | None = None) -> PrivateKey:
    """A private key from PEM (PKCS#8 or traditional, encrypted or not) or DER.

    A passphrase given for an unencrypted key is ignored (the key is usable; nothing is weakened).
    """
    data = _read(path, "a private key")
    if is_pkcs12(data):
        raise SigningError(f"{path} is a PKCS#12 file, not a bare private key", "give it as the certificate")
    loader = serialization.load_pem_private_key if _is_pem(data) else serialization.load_der_private_key
    try:
        try:
            key = loader(data, passphrase or None)
        except TypeError:
            if not passphrase:
                raise WrongPassphraseError(
                    f"the private key {path} is encrypted and no passphrase was given", "give its passphrase"
                ) from None
            key = loader(data, None)  # a passphrase for an unencrypted key
    except ValueError as exc:
        # A wrong passphrase usually fails the padding check ("bad decrypt ... password"), but about one in
        # 256 decrypts to garbage with valid padding and fails to parse instead: still a wrong passphrase
        # when the file is an encrypted key.
        if "password" in str(exc).lower() or (passphrase and _is_encrypted_key(loader, data)):
            raise WrongPassphraseError(
                f"wrong passphrase for the private key {path}", "check the passphrase"
            ) from None
        raise SigningError(f"{path} is not a readable private key (PEM or DER)", "check the file") from None
    except UnsupportedAlgorithm:
        raise SigningError(
            f"{path} holds a key of an unsupported type", "use RSA or ECDSA P-256/P-384"
        ) from None
    return _check_key(key, f"the key in {path}")


def _is_encrypted_key(loader: Callable[[bytes, bytes | None], object], data: bytes) -> bool:
    """Whether ``data`` is an encrypted private key (its loader asks for a password), not a bad file."""
    try:
        loader(data, None)
    except TypeError:
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False
    return False


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """All certificates in a PEM bundle (in file order), or the single certificate of a DER file, each read
    completely now (:func:`~app.signing.certificates.parsed_certificate`): a damaged one is refused here,
    before any caller has written or stored anything."""
    data = _read(path, "a certificate")
    if is_pkcs12(data):
        raise SigningError(f"{path} is a PKCS#12 file, not a bare certificate", "open it with its passphrase")
    try:
        if _is_pem(data):
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except CERT_ERRORS:  # not only ValueError: e.g. InvalidVersion for a version field of 3
        if _is_pem(data) and b"PRIVATE KEY-----" in data:
            raise SigningError(
                f"{path} holds a private key, not a certificate", "give the certificate"
            ) from None
        raise SigningError(
            f"{path} is not a readable X.509 certificate (PEM or DER)", "check the file"
        ) from None
    if len(certs) == 1:
        return [parsed_certificate(certs[0], f"the certificate in {path}", "check the file")]
    return [parsed_certificate(c, f"certificate {i} of {len(certs)} in {path}", "check the file")
            for i, c in enumerate(certs, 1)]  # fmt: skip


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """The (first) certificate in a PEM or DER file."""
    return load_certificates(path)[0]


def load_pkcs12(
    path: str | os.PathLike[str], passphrase: bytes | None
) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
    """(key, certificate, additional certificates) from a PKCS#12 / PFX file."""
    data = _read(path, "a PKCS#12 file")
    # OpenSSL distinguishes "no password" from "empty password"; try both when none was given.
    attempts = [passphrase] if passphrase else [None, b""]
    loaded = None
    for attempt in attempts:
        try:
            loaded = pkcs12.load_key_and_certificates(data, attempt)
            break
        except ValueError as exc:
            if "password" not in str(exc).lower():
                raise SigningError(f"{path} is not a readable PKCS#12 file", "check the file") from None
        except UnsupportedAlgorithm:
            raise SigningError(
                f"{path} uses an unsupported PKCS#12 encryption", "re-export it with AES-256 (openssl pkcs12)"
            ) from None
        except CERT_ERRORS:  # a certificate inside that cryptography refuses outright (InvalidVersion)
            raise SigningError(f"{path} is not a readable PKCS#12 file", "check the file") from None
    if loaded is None:
        if passphrase:
            raise WrongPassphraseError(
                f"wrong passphrase for the PKCS#12 file {path}", "check the passphrase"
            )
        raise WrongPassphraseError(f"the PKCS#12 file {path} needs a passphrase", "give its passphrase")
    key, cert, extra = loaded
    if cert is None:
        raise SigningError(f"the PKCS#12 file {path} holds no certificate", "export it with its certificate")
    if key is None:
        raise SigningError(f"the PKCS#12 file {path} holds no private key", "export it with its private key")
    cert = parsed_certificate(cert, f"the certificate in the PKCS#12 file {path}", "check the file")
    extra = [parsed_certificate(c, f"additional certificate {i} in the PKCS#12 file {path}", "check the file")
             for i, c in enumerate(extra, 1)]  # fmt: skip
    key = _check_key(key, f"the key in {path}")
    _check_match(key, cert, path)
    return key, cert, extra


def _check_match(key: PrivateKey, cert: x509.Certificate, where: str | os.PathLike[str]) -> None:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        cert_spki = cert.public_key().public_bytes(*spki)
    except (ValueError, UnsupportedAlgorithm):
        raise SigningError(f"the certificate in {where} has an unsupported public key", "") from None
    if key.public_key().public_bytes(*spki) != cert_spki:
        raise KeyMismatchError(
            f"the private key does not belong to the certificate {printable(cert.subject.rfc4514_string())} "
            f"({where})",
            "give the key the certificate was issued for",
        )


def load_signer(
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str] | None = None,
    passphrase: bytes | None = None,
) -> KeySigner:
    """A Signer from a PKCS#12 file, or from a certificate (+ chain, same PEM) and its private key.

    Without ``key_path`` the key is looked for in the certificate's own PEM file (a combined
    cert+key file). The passphrase is the PKCS#12's or the key's.
    """
    data = _read(cert_path, "a certificate or PKCS#12 file")
    if is_pkcs12(data):
        if key_path is not None:
            raise SigningError(
                f"{cert_path} is a PKCS#12 file that already holds the key", "do not give a separate key"
            )
        key, cert, chain = load_pkcs12(cert_path, passphrase)
        return KeySigner(key, cert, chain)
    certs = load_certificates(cert_path)
    if key_path is None:
        if not (_is_pem(data) and b"PRIVATE KEY-----" in data):
            raise SigningError(f"no private key given for {cert_path}", "give the key file too")
        key_path = cert_path
    key = load_private_key(key_path, passphrase)
    _check_match(key, certs[0], key_path)
    return KeySigner(key, certs[0], certs[1:])


# --- writing -----------------------------------------------------------------------------------------


def write_certificate(
    cert: x509.Certificate, path: str | os.PathLike[str], *, der: bool = False, overwrite: bool = False
) -> Path:
    """Write a certificate as PEM (default) or DER; certificates are public, so the mode follows the umask."""
    encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
    return write_output(path, cert.public_bytes(encoding), overwrite=overwrite)


def write_private_key(key: PrivateKey, path: str | os.PathLike[str], passphrase: bytes | None = None) -> Path:
    """Write a PKCS#8 PEM key, 0600 from creation, never overwriting; encrypted when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return write_output(path, data, private=True)


def write_pkcs12(
    key: PrivateKey,
    cert: x509.Certificate,
    path: str | os.PathLike[str],
    passphrase: bytes,
    *,
    friendly_name: str | None = None,
    chain: Sequence[x509.Certificate] = (),
) -> Path:
    """Write a passphrase-protected PKCS#12 (AES-256; OpenSSL 3, Windows 10+), 0600, never overwriting."""
    if not passphrase:
        raise SigningError("a PKCS#12 file needs a passphrase", "give a passphrase to protect it")
    name = friendly_name.encode() if friendly_name else None
    data = pkcs12.serialize_key_and_certificates(
        name, key, cert, list(chain) or None, serialization.BestAvailableEncryption(passphrase)
    )
    return write_output(path, data, private=True)
