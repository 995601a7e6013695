"""The shielding data file (``.shd``, format version 1; docs/formats/shielding-data.md is the contract).

A DER CMS SignedData signed with the owner's signing key, its encapsulated id-data content::

    b"SWSHD1\\n" ‖ u32 little-endian header length ‖ UTF-8 JSON header ‖ DER CMS EnvelopedData

The header is in the clear and signed: policy, owner, guardians, volume ID qualifiers and the *names* of
the payload's items — nothing secret. The EnvelopedData (AES-256-CBC, one RSA recipient per guardian and
one for the owner's encryption certificate; ``cryptography``'s PKCS#7 envelope API) holds the payload.
``openssl cms -verify`` checks the outer signature with the owner certificate as CA; ``openssl cms
-decrypt`` opens the inner part with any recipient's key. Reading is bounded whatever the file claims.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from app.errors import ShieldwrightError
from app.shielding.guardians import Guardian, cert_sha256
from app.shielding.payload import Payload
from app.shielding.qualifiers import Qualifier, QualifierError
from app.signing import der
from app.signing.cms import OID_DATA, sign_cms, verify_cms
from app.signing.keys import PrivateKey
from app.signing.signer import KeySigner
from app.untrusted import is_json_int, read_bounded

MAGIC = b"SWSHD1\n"
FORMAT_VERSION = 1
POLICIES = ("shielded", "encryption-supported")
#: Bounds on what a file may claim (docs/security.md): the whole file, the clear header, recipients.
MAX_FILE = 4 * 1024 * 1024
MAX_HEADER = 256 * 1024
MAX_GUARDIANS = 64
MAX_QUALIFIERS = 256
OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
HEADER_KEYS = ("format_version", "created", "policy", "owner", "guardians", "qualifiers", "payload_items")
#: The keys of the header's owner and of each guardian entry (all strings), as the writer makes them.
OWNER_KEYS = frozenset({"name", "subject", "signing_sha256", "encryption_sha256"})
GUARDIAN_KEYS = frozenset({"name", "subject", "sha256"})
#: Content encryption algorithms ``cryptography`` decrypts (AES-128/256-CBC), and names for others met.
OID_AES_CBC = frozenset({"2.16.840.1.101.3.4.1.2", "2.16.840.1.101.3.4.1.42"})
_CIPHER_NAMES = {
    "1.2.840.113549.3.7": "3DES (des-ede3-cbc)",
    "2.16.840.1.101.3.4.1.22": "AES-192-CBC",
    "1.2.392.200011.61.1.1.1.2": "Camellia-128-CBC",
    "1.2.392.200011.61.1.1.1.3": "Camellia-192-CBC",
    "1.2.392.200011.61.1.1.1.4": "Camellia-256-CBC",
}


class ShieldingDataError(ShieldwrightError):
    """A shielding data file that cannot be made, read or opened."""


@dataclass(frozen=True)
class ShieldingData:
    """A ``.shd`` whose signature verified: its clear header, the signer, and the sealed payload."""

    header: dict[str, object]
    signer: x509.Certificate
    enveloped: bytes  # DER ContentInfo(EnvelopedData)

    @property
    def policy(self) -> str:
        return str(self.header["policy"])

    @property
    def qualifiers(self) -> list[Qualifier]:
        return [Qualifier.from_dict(q) for q in self.header["qualifiers"]]  # type: ignore[attr-defined]

    def open(self, certificate: x509.Certificate, key: PrivateKey) -> Payload:
        """The payload, decrypted with a recipient's certificate and RSA private key."""
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ShieldingDataError("shielding data opens with an RSA key only", "give the encryption key")
        cipher = _content_cipher(self.enveloped)
        if cipher is not None and cipher not in OID_AES_CBC:
            raise _unsupported_cipher(cipher)
        try:
            plain = pkcs7.pkcs7_decrypt_der(self.enveloped, certificate, key, [])
        except UnsupportedAlgorithm:  # another algorithm cryptography does not take (e.g. key transport)
            raise _unsupported_cipher(cipher) from None
        except ValueError:
            raise ShieldingDataError(
                "this certificate and key cannot open the shielding data",
                "give the key of a guardian or of the owner it was made for",
            ) from None
        try:
            return Payload.from_json(plain)
        finally:
            del plain


def create_shielding_data(
    owner: Guardian,
    guardians: Sequence[Guardian],
    qualifiers: Sequence[Qualifier],
    policy: str,
    payload: Payload,
    *,
    created: dt.datetime | None = None,
) -> bytes:
    """The ``.shd`` bytes (see the module doc)."""
    if owner.kind != "owner" or owner.signing_cert is None:
        raise ShieldingDataError(
            f"{owner.name!r} is not an owner guardian", "create one with `shield guardian new`"
        )
    if policy not in POLICIES:
        raise ShieldingDataError(f"unknown policy {policy!r}", f"use {' or '.join(POLICIES)}")
    if not qualifiers:
        raise ShieldingDataError(
            "no volume ID qualifier", "name at least one template (a .vsc or the template)"
        )
    if len(guardians) > MAX_GUARDIANS or len(qualifiers) > MAX_QUALIFIERS:
        raise ShieldingDataError(
            "too many guardians or qualifiers", f"at most {MAX_GUARDIANS} and {MAX_QUALIFIERS}"
        )
    names = [g.name for g in guardians]
    if len(set(names)) != len(names) or owner.name in names:
        raise ShieldingDataError("a guardian is listed twice", "name each guardian once")
    for q in qualifiers:
        q.check()
    payload.check()
    when = (created or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    header = {
        "format_version": FORMAT_VERSION,
        "created": when.isoformat().replace("+00:00", "Z"),
        "policy": policy,
        "owner": {
            "name": owner.name,
            "subject": owner.signing_cert.subject.rfc4514_string(),
            "signing_sha256": cert_sha256(owner.signing_cert),
            "encryption_sha256": owner.encryption_sha256,
        },
        "guardians": [
            {"name": g.name, "subject": g.subject, "sha256": g.encryption_sha256} for g in guardians
        ],
        "qualifiers": [q.to_dict() for q in qualifiers],
        "payload_items": payload.items(),
    }
    builder = pkcs7.PKCS7EnvelopeBuilder().set_content_encryption_algorithm(algorithms.AES256)
    plain = payload.to_json()
    builder = builder.set_data(plain)
    for recipient in [*guardians, owner]:
        builder = builder.add_recipient(recipient.encryption_cert)
    enveloped = builder.encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    del plain
    clear = json.dumps(header, indent=1).encode()
    content = MAGIC + struct.pack("<I", len(clear)) + clear + enveloped
    signer = KeySigner(owner.signing_key(), owner.signing_cert)
    return sign_cms(content, signer, signing_time=when)


def read_shielding_data(data: bytes, *, where: str = "the shielding data") -> ShieldingData:
    """Verify the owner's signature, then split the content; any damage is a one-line error."""
    if len(data) > MAX_FILE:
        raise ShieldingDataError(f"{where} is larger than {MAX_FILE // 2**20} MiB", "is this a .shd file?")
    try:
        verified = verify_cms(data)
    except ShieldwrightError as exc:
        raise ShieldingDataError(f"{where}: the owner's signature does not verify: {exc.message}",
                                 "the file is damaged or was changed after signing") from None  # fmt: skip
    content = verified.content
    if verified.content_type != OID_DATA or content is None or not content.startswith(MAGIC):
        raise ShieldingDataError(f"{where} is not Shieldwright shielding data", "is this a .shd file?")
    pos = len(MAGIC)
    if len(content) < pos + 4:
        raise ShieldingDataError(f"{where} is truncated", "copy it again")
    (length,) = struct.unpack_from("<I", content, pos)
    pos += 4
    if length > MAX_HEADER or pos + length > len(content):
        raise ShieldingDataError(f"{where} claims a {length}-byte header", "the file is damaged")
    header = _header(content[pos : pos + length], where)
    enveloped = content[pos + length :]
    _check_envelope(enveloped, where)
    owner = header["owner"]
    assert isinstance(owner, dict)
    if cert_sha256(verified.signer) != owner.get("signing_sha256"):
        raise ShieldingDataError(f"{where} is signed by someone else than the owner it names",
                                 "the file was re-signed; do not use it")  # fmt: skip
    return ShieldingData(header, verified.signer, enveloped)


def load_shielding_data(path: str | Path) -> ShieldingData:
    path = Path(path)
    data = read_bounded(path, MAX_FILE, ShieldingDataError, "give a .shd file")
    return read_shielding_data(data, where=str(path))


def _header(raw: bytes, where: str) -> dict[str, object]:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ShieldingDataError(f"{where} has a malformed header", "the file is damaged") from None
    if not isinstance(header, dict) or tuple(header) != HEADER_KEYS:
        raise ShieldingDataError(f"{where}'s header does not have the version 1 keys", "the file is damaged")
    version = header["format_version"]
    if not is_json_int(version) or version != FORMAT_VERSION:
        shown = version if is_json_int(version) and abs(version) < 10**9 else "unknown"
        raise ShieldingDataError(f"{where} is format version {shown}", "this Shieldwright reads version 1")
    owner, guardians, qualifiers = header["owner"], header["guardians"], header["qualifiers"]
    shapes = (isinstance(owner, dict), isinstance(guardians, list), isinstance(qualifiers, list),
              header["policy"] in POLICIES, isinstance(header["payload_items"], list))  # fmt: skip
    if not all(shapes):
        raise ShieldingDataError(f"{where} has a malformed header", "the file is damaged")
    if len(guardians) > MAX_GUARDIANS or len(qualifiers) > MAX_QUALIFIERS:
        raise ShieldingDataError(f"{where} lists too many guardians or qualifiers", "the file is damaged")
    # Every reader (show, test, provision) indexes these without looking: the shapes are checked here once.
    if not isinstance(header["created"], str):
        raise ShieldingDataError(f"{where}'s header has no creation time", "the file is damaged")
    if not _entry_ok(owner, OWNER_KEYS, ("signing_sha256", "encryption_sha256")):
        raise ShieldingDataError(f"{where}'s header has a malformed owner", "the file is damaged")
    for g in guardians:
        if not _entry_ok(g, GUARDIAN_KEYS, ("sha256",)):
            raise ShieldingDataError(f"{where}'s header has a malformed guardian", "the file is damaged")
    if not all(isinstance(item, str) for item in header["payload_items"]):
        raise ShieldingDataError(f"{where}'s header has a malformed payload item", "the file is damaged")
    try:
        for q in qualifiers:
            Qualifier.from_dict(q)
    except (QualifierError, ShieldwrightError) as exc:
        raise ShieldingDataError(
            f"{where} has a bad qualifier: {exc.message}", "the file is damaged"
        ) from None
    return header


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _entry_ok(entry: object, keys: frozenset[str], digests: tuple[str, ...]) -> bool:
    """An owner or guardian entry as the writer makes it: exactly ``keys``, all strings, ``digests`` hex."""
    return (
        isinstance(entry, dict)
        and set(entry) == keys
        and all(isinstance(entry[k], str) for k in keys)
        and all(_is_sha256(entry[k]) for k in digests)
    )


def _content_cipher(enveloped: bytes) -> str | None:
    """The content encryption algorithm's OID of a ContentInfo(EnvelopedData), or None when it cannot be
    found (the decryption library then judges the structure)."""
    try:
        fields = der.decode(enveloped).children[1].children[0].children
        after = fields[[i for i, f in enumerate(fields) if f.is_(der.SET)][0] + 1 :]
        info = next(f for f in after if f.is_(der.SEQUENCE))  # EncryptedContentInfo
        return info.children[1].children[0].as_oid()
    except (ShieldwrightError, ValueError, IndexError, StopIteration):
        return None


def _unsupported_cipher(oid: str | None) -> ShieldingDataError:
    """The refusal of an envelope ``cryptography`` cannot decrypt: by its content encryption algorithm when
    that is the cause, else (e.g. an RSA-OAEP recipient) in general terms."""
    hint = "only AES-CBC envelopes to RSA keys open; make the data again with `shieldwright shield create`"
    if oid is None or oid in OID_AES_CBC:
        return ShieldingDataError("the shielding data's envelope uses an unsupported algorithm", hint)
    name = _CIPHER_NAMES.get(oid, oid[:64])
    return ShieldingDataError(
        f"the shielding data's content encryption algorithm {name} is not supported", hint
    )


def _check_envelope(enveloped: bytes, where: str) -> None:
    """A ContentInfo(EnvelopedData) with at most :data:`MAX_GUARDIANS` + 1 recipients, before any decryption
    library sees it."""
    try:
        info = der.decode(enveloped)
        oid_el, body = info.children[0], info.children[1]
        if der.decode_oid(oid_el.content) != OID_ENVELOPED_DATA:
            raise ValueError("not EnvelopedData")
        fields = body.children[0].children
        recipients = next(f for f in fields if f.is_(der.SET))  # SET OF RecipientInfo
        if len(recipients.children) > MAX_GUARDIANS + 1:
            raise ShieldingDataError(f"{where} has {len(recipients.children)} recipients",
                                     f"at most {MAX_GUARDIANS + 1} are read")  # fmt: skip
    except ShieldingDataError:
        raise
    except (ShieldwrightError, ValueError, IndexError, StopIteration):
        raise ShieldingDataError(f"{where} has a malformed encrypted part", "the file is damaged") from None
