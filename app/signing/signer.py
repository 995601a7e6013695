"""The Signer abstraction: a certificate plus a way to sign bytes with its private key.

Callers (Authenticode, CMS, the catalog, the manifest) only ever see a :class:`Signer`, so a signer
backed by a hardware token or a remote KMS can slot in later without touching them: it needs a
certificate, an optional chain, and a ``sign`` that returns a raw signature over ``data``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

#: Hash algorithms a Signer must support, by name.
HashName = Literal["sha256", "sha384", "sha512"]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def hash_algorithm(name: HashName) -> hashes.HashAlgorithm:
    return _HASHES[name]()


@runtime_checkable
class Signer(Protocol):
    """Signs on behalf of ``certificate``; ``sign`` hashes ``data`` itself (RSA PKCS#1 v1.5, DER ECDSA)."""

    @property
    def certificate(self) -> x509.Certificate: ...

    @property
    def chain(self) -> list[x509.Certificate]: ...

    @property
    def key_type(self) -> Literal["rsa", "ecdsa"]: ...

    def sign(self, data: bytes, hash_name: HashName = "sha256") -> bytes: ...


@dataclass
class KeySigner:
    """A Signer over a private key held in memory (loaded from a file or generated)."""

    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def key_type(self) -> Literal["rsa", "ecdsa"]:
        return "rsa" if isinstance(self.private_key, rsa.RSAPrivateKey) else "ecdsa"

    def sign(self, data: bytes, hash_name: HashName = "sha256") -> bytes:
        algorithm = hash_algorithm(hash_name)
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(data, padding.PKCS1v15(), algorithm)
        return self.private_key.sign(data, ec.ECDSA(algorithm))

    def __repr__(self) -> str:  # never show key material
        return f"KeySigner(subject={self.certificate.subject.rfc4514_string()!r}, key_type={self.key_type!r})"
