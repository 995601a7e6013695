"""The VSC file format: content encoding, strict decoding, CMS signing and signature-checked reading.

Normative spec: ``docs/formats/vsc.md``. A ``.vsc`` file is a DER CMS SignedData (eContentType id-data,
content encapsulated, so ``openssl cms -verify`` prints it) whose content is::

    b"SWVSC1\\n" | u32le header length | UTF-8 JSON header | raw 32-byte block digests, partition by partition

The decoder is deliberately strict - exact key types, no duplicate keys, counts that add up, every
per-partition digest recomputed - because a provisioning host acts on what it decodes: a catalog that
two readers could interpret differently is a catalog an attacker can shape. Every malformed input raises
:class:`CatalogError` (a :class:`ShieldwrightError`), never a raw ``ValueError`` or ``KeyError``.
Unknown keys are allowed (forward compatibility) and kept in ``extra``.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app.catalog.limits import DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, MAX_NAME_LENGTH, MIN_BLOCK_SIZE
from app.catalog.signature import sign_content, verify_content
from app.disk.image import SECTOR_SIZES
from app.errors import ShieldwrightError, SignatureError
from app.signing.cms import OID_DATA
from app.signing.signer import Signer
from app.untrusted import has_type, is_json_int

MAGIC = b"SWVSC1\n"
FORMAT_VERSION = 1
DIGEST_SIZE = 32  # SHA-256
#: Where a template keeps its catalog inside the ESP (the build writes it, ``vsc extract`` reads it).
ESP_CATALOG_PATH = "\\EFI\\Shieldwright\\template.vsc"

_HEADER_KEYS = ("format_version", "template_name", "template_version", "created", "disk_guid", "hash",
                "block_size", "partitions")  # fmt: skip
_PARTITION_KEYS = ("number", "partition_guid", "type_guid", "first_lba", "last_lba", "size_bytes",
                   "block_count", "digest")  # fmt: skip
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CREATED = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,9})?Z")
_VERSION_PART = re.compile(r"0|[1-9][0-9]{0,4}")
#: What a one-line name shown to admins may not hold: C0 and C1 controls and DEL (U+0085 NEL among them), line
#: and paragraph separators, and the bidirectional overrides and isolates that reorder what is displayed.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class CatalogError(ShieldwrightError):
    """A catalog (or a request to make one) is malformed: bad header, counts, digests or parameters."""


# --- parameter checks (also used by the CLI and the wizard to validate input early) -----------------------


def parse_version(text: object) -> tuple[int, int, int, int]:
    """``"a.b.c.d"`` -> four ints, each 0..65535, plain decimal (like Microsoft's template versions).

    Returned as a tuple so version rules (``==``, ``>=``) compare naturally.
    """
    parts = text.split(".") if isinstance(text, str) else []
    if len(parts) != 4 or not all(_VERSION_PART.fullmatch(p) for p in parts):
        raise CatalogError(f"template version {text!r} is not of the form a.b.c.d", "for example 1.0.0.0")
    a, b, c, d = (int(p) for p in parts)
    if any(v > 65535 for v in (a, b, c, d)):
        raise CatalogError(f"template version {text!r} has a part above 65535", "each part must be < 65536")
    return a, b, c, d


def check_template_name(name: object) -> str:
    """A template name: 1..256 characters, no control, line-breaking or bidi-override characters, not just
    spaces. It is shown on one line by every tool that reads a catalog or shielding data."""
    if not isinstance(name, str) or not name.strip():
        raise CatalogError("the template name is empty", "give the template a name")
    if len(name) > MAX_NAME_LENGTH:
        raise CatalogError(f"the template name is longer than {MAX_NAME_LENGTH} characters", "shorten it")
    if _CONTROL.search(name):
        raise CatalogError("the template name contains control characters", "use printable characters only")
    return name


def check_block_size(block_size: object) -> int:
    """A power of two from 4 KiB to 64 MiB: small enough to localise damage, large enough to hash fast."""
    if (
        not isinstance(block_size, int)
        or isinstance(block_size, bool)
        or not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE
        or block_size & (block_size - 1)
    ):
        raise CatalogError(
            f"block size {block_size!r} is not a power of two between 4096 and {MAX_BLOCK_SIZE}",
            "use e.g. 1048576 (1 MiB, the default)",
        )
    return block_size


def block_count(size_bytes: int, block_size: int) -> int:
    """Blocks covering ``size_bytes``: the last one may be short."""
    return -(-size_bytes // block_size)


def utc_now() -> str:
    """The current time as the catalog's ``created`` string (RFC 3339, UTC, whole seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_created(text: object) -> datetime:
    """An RFC 3339 UTC timestamp (``Z`` suffix, optional fraction) as an aware datetime."""
    m = _CREATED.fullmatch(text) if isinstance(text, str) else None
    try:
        if m is None:
            raise ValueError
        when = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise CatalogError(
            f"created time {text!r} is not an RFC 3339 UTC timestamp", "e.g. 2026-01-31T12:00:00Z"
        ) from None
    if m.group(2):
        when = when.replace(microsecond=int((m.group(2)[1:] + "000000")[:6]))
    return when


# --- the model ------------------------------------------------------------------------------------------


@dataclass
class CatalogPartition:
    """One protected partition: where it is, and the digest of each of its blocks."""

    number: int  # GPT entry number (1-based)
    partition_guid: str
    type_guid: str
    first_lba: int
    last_lba: int
    size_bytes: int
    block_count: int
    digest: str  # hex SHA-256 of block_digests
    block_digests: bytes = field(repr=False)  # block_count * 32 bytes
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_digests(
        cls,
        *,
        number: int,
        partition_guid: str,
        type_guid: str,
        first_lba: int,
        last_lba: int,
        size_bytes: int,
        block_digests: bytes,
    ) -> CatalogPartition:
        """Fill in ``block_count`` and ``digest`` from the block digests (what hashers and sinks return)."""
        block_digests = bytes(block_digests)
        return cls(
            number=number,
            partition_guid=partition_guid,
            type_guid=type_guid,
            first_lba=first_lba,
            last_lba=last_lba,
            size_bytes=size_bytes,
            block_count=len(block_digests) // DIGEST_SIZE,
            digest=hashlib.sha256(block_digests).hexdigest(),
            block_digests=block_digests,
        )

    @property
    def sector_size(self) -> int:
        return self.size_bytes // (self.last_lba - self.first_lba + 1)

    @property
    def offset(self) -> int:
        """Byte offset of the partition on the disk."""
        return self.first_lba * self.sector_size

    def block_digest(self, index: int) -> bytes:
        return self.block_digests[index * DIGEST_SIZE : (index + 1) * DIGEST_SIZE]

    def header(self) -> dict[str, Any]:
        """This partition's entry in the JSON header (no block digests)."""
        fixed = {k: getattr(self, k) for k in _PARTITION_KEYS}
        return {**fixed, **self.extra}


@dataclass
class Catalog:
    """The decoded content of a catalog (what was signed, before or after signing)."""

    template_name: str
    template_version: str  # "a.b.c.d"
    created: str  # RFC 3339 UTC
    disk_guid: str
    hash: str = "sha256"
    block_size: int = DEFAULT_BLOCK_SIZE
    partitions: list[CatalogPartition] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def version_tuple(self) -> tuple[int, int, int, int]:
        return parse_version(self.template_version)

    @property
    def created_datetime(self) -> datetime:
        return parse_created(self.created)

    def partition(self, number: int) -> CatalogPartition:
        for p in self.partitions:
            if p.number == number:
                return p
        raise KeyError(number)

    def header(self) -> dict[str, Any]:
        """The JSON header as a dict: the standard keys in spec order, then ``extra``."""
        fixed: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "template_name": self.template_name,
            "template_version": self.template_version,
            "created": self.created,
            "disk_guid": self.disk_guid,
            "hash": self.hash,
            "block_size": self.block_size,
            "partitions": [p.header() for p in self.partitions],
        }
        return {**fixed, **self.extra}


@dataclass(frozen=True)
class SignedCatalog:
    """A catalog whose CMS signature verified, with who signed it and when."""

    catalog: Catalog
    signer_certificate: x509.Certificate
    signing_time: datetime | None
    #: Every certificate embedded in the signature (the signer's chain), for later trust checks.
    certificates: tuple[x509.Certificate, ...] = ()

    @property
    def signer_subject(self) -> str:
        return self.signer_certificate.subject.rfc4514_string()

    @property
    def signer_fingerprint(self) -> str:
        """Hex SHA-256 of the signer certificate's DER: how shielding data names a trusted signer."""
        return hashlib.sha256(self.signer_certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


# --- validation shared by encoder and decoder -----------------------------------------------------------


def _check_partition(p: CatalogPartition, block_size: int, where: str) -> None:
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise CatalogError(f"{where}: {what}", "the catalog is malformed")

    need(is_json_int(p.number) and 1 <= p.number < 2**32, f"number {p.number!r} is not a GPT entry number")
    for key in ("partition_guid", "type_guid"):
        value = getattr(p, key)
        need(isinstance(value, str) and _GUID.fullmatch(value) is not None, f"{key} {value!r} is not a GUID")
    need(is_json_int(p.first_lba) and p.first_lba >= 1, f"first_lba {p.first_lba!r} is not a valid LBA")
    need(
        is_json_int(p.last_lba) and p.last_lba >= p.first_lba, f"last_lba {p.last_lba!r} is before first_lba"
    )
    sectors = p.last_lba - p.first_lba + 1
    need(
        is_json_int(p.size_bytes) and any(p.size_bytes == sectors * ss for ss in SECTOR_SIZES),
        f"size_bytes {p.size_bytes!r} is not (last_lba - first_lba + 1) x 512 or x 4096",
    )
    need(
        is_json_int(p.block_count) and p.block_count == block_count(p.size_bytes, block_size),
        f"block_count {p.block_count!r} does not cover {p.size_bytes} bytes in {block_size}-byte blocks",
    )
    need(has_type(p.digest, str) and _HEX64.fullmatch(p.digest) is not None, "digest is not 64 hex digits")
    need(
        has_type(p.block_digests, (bytes, bytearray)) and len(p.block_digests) == p.block_count * DIGEST_SIZE,
        f"has {len(p.block_digests) if has_type(p.block_digests, (bytes, bytearray)) else 0} digest bytes, "
        f"expected {p.block_count} x {DIGEST_SIZE}",
    )
    need(hashlib.sha256(p.block_digests).hexdigest() == p.digest, "digest does not match its block digests")
    need(has_type(p.extra, dict) and not set(p.extra) & set(_PARTITION_KEYS), "extra keys clash")


def validate(cat: Catalog) -> None:
    """Raise :class:`CatalogError` unless ``cat`` is a well-formed catalog (spec section "Validity")."""
    check_template_name(cat.template_name)
    parse_version(cat.template_version)
    parse_created(cat.created)
    if not has_type(cat.disk_guid, str) or not _GUID.fullmatch(cat.disk_guid):
        raise CatalogError(
            f"disk_guid {cat.disk_guid!r} is not a lower-case GUID", "the catalog is malformed"
        )
    if cat.hash != "sha256":
        raise CatalogError(f"unsupported hash {cat.hash!r}", "only sha256 is defined")
    check_block_size(cat.block_size)
    if not has_type(cat.partitions, list) or not cat.partitions:
        raise CatalogError("the catalog lists no partitions", "catalogue at least one partition")
    seen: set[int] = set()
    for i, p in enumerate(cat.partitions):
        if not isinstance(p, CatalogPartition):
            raise CatalogError(f"partition entry {i} is not an object", "the catalog is malformed")
        _check_partition(p, cat.block_size, f"partition entry {i}")
        if p.number in seen:
            raise CatalogError(f"partition {p.number} is listed twice", "the catalog is malformed")
        seen.add(p.number)
    if not has_type(cat.extra, dict) or set(cat.extra) & set(_HEADER_KEYS):
        raise CatalogError("extra header keys clash with standard keys", "rename them")


# --- encoding -------------------------------------------------------------------------------------------


def encode_content(cat: Catalog) -> bytes:
    """The bytes that get signed: magic, u32le header length, compact UTF-8 JSON header, block digests."""
    validate(cat)
    header = json.dumps(cat.header(), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    return b"".join(
        [MAGIC, struct.pack("<I", len(header)), header, *(p.block_digests for p in cat.partitions)]
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise CatalogError(f"the header repeats the key {k!r}", "the catalog is malformed")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise CatalogError(f"the header contains {name}, which is not JSON", "the catalog is malformed")


def _header_json(data: bytes) -> dict[str, Any]:
    if len(data) < len(MAGIC) + 4 or not data.startswith(MAGIC):
        raise CatalogError("not a Shieldwright volume signature catalog (bad magic)", "is this a .vsc file?")
    (length,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    if length > len(data) - start:
        raise CatalogError(f"the header length {length} runs past the end of the catalog", "it is truncated")
    try:
        text = data[start : start + length].decode("utf-8")
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except CatalogError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise CatalogError(
            f"the catalog header is not UTF-8 JSON: {reason}", "the catalog is malformed"
        ) from None
    if not isinstance(header, dict):
        raise CatalogError("the catalog header is not a JSON object", "the catalog is malformed")
    return header


def _need_keys(obj: dict[str, Any], keys: Sequence[str], where: str) -> None:
    missing = [k for k in keys if k not in obj]
    if missing:
        raise CatalogError(f"{where} lacks {', '.join(missing)}", "the catalog is malformed")


def decode_content(data: bytes) -> Catalog:
    """Parse and fully validate catalog content (the CMS's encapsulated bytes); strict, see the module doc."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CatalogError("catalog content must be bytes", "")
    data = bytes(data)
    header = _header_json(data)
    _need_keys(header, _HEADER_KEYS, "the header")
    version = header["format_version"]
    if not is_json_int(version) or version != FORMAT_VERSION:
        raise CatalogError(
            f"catalog format_version {version!r} is not supported (this reader knows {FORMAT_VERSION})",
            "use a newer Shieldwright",
        )
    for key in ("template_name", "template_version", "created", "disk_guid", "hash"):
        if not isinstance(header[key], str):
            raise CatalogError(f"header key {key} must be a string", "the catalog is malformed")
    if not is_json_int(header["block_size"]):
        raise CatalogError("header key block_size must be an integer", "the catalog is malformed")
    if not isinstance(header["partitions"], list):
        raise CatalogError("header key partitions must be a list", "the catalog is malformed")

    pos = len(MAGIC) + 4 + struct.unpack_from("<I", data, len(MAGIC))[0]
    partitions: list[CatalogPartition] = []
    for i, entry in enumerate(header["partitions"]):
        where = f"partition entry {i}"
        if not isinstance(entry, dict):
            raise CatalogError(f"{where} is not an object", "the catalog is malformed")
        _need_keys(entry, _PARTITION_KEYS, where)
        count = entry["block_count"]
        if not is_json_int(count) or count < 0:
            raise CatalogError(
                f"{where}: block_count must be a non-negative integer", "the catalog is malformed"
            )
        end = pos + count * DIGEST_SIZE
        if end > len(data):
            raise CatalogError(
                f"{where}: its block digests run past the end of the catalog", "it is truncated"
            )
        fixed = {k: entry[k] for k in _PARTITION_KEYS}
        extra = {k: v for k, v in entry.items() if k not in _PARTITION_KEYS}
        partitions.append(CatalogPartition(**fixed, block_digests=data[pos:end], extra=extra))
        pos = end
    if pos != len(data):
        raise CatalogError(
            f"the catalog has {len(data) - pos} bytes after the last block digest", "the catalog is malformed"
        )
    cat = Catalog(
        template_name=header["template_name"],
        template_version=header["template_version"],
        created=header["created"],
        disk_guid=header["disk_guid"],
        hash=header["hash"],
        block_size=header["block_size"],
        partitions=partitions,
        extra={k: v for k, v in header.items() if k not in _HEADER_KEYS},
    )
    validate(cat)
    return cat


# --- signing and reading ----------------------------------------------------------------------------------


def sign_catalog(cat: Catalog, signer: Signer) -> bytes:
    """The ``.vsc`` file: DER CMS SignedData over :func:`encode_content`, content encapsulated (id-data).

    The CMS signingTime is the catalog's ``created`` time, so the two never disagree; the signer's
    certificate is bound into the signed attributes (see :mod:`app.catalog.signature`).
    """
    content = encode_content(cat)
    return sign_content(content, signer, parse_created(cat.created).replace(microsecond=0))


def read_catalog(der: bytes, *, trusted: Sequence[x509.Certificate] | None = None) -> SignedCatalog:
    """Verify a ``.vsc`` file's signature (and, with ``trusted``, that its signer chains to one of them),
    then decode its content. Signature problems raise ``SignatureError``; content problems ``CatalogError``.
    """
    if not has_type(der, (bytes, bytearray)) or not der:
        raise SignatureError("the catalog file is empty", "is this a .vsc file?")
    result = verify_content(bytes(der), trusted)
    if result.content_type != OID_DATA or result.content is None:
        raise SignatureError("the signature does not carry catalog content (expected encapsulated id-data)")
    return SignedCatalog(
        catalog=decode_content(result.content),
        signer_certificate=result.signer,
        signing_time=result.signing_time,
        certificates=tuple(result.certificates),
    )
