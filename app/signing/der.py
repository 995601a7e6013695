"""A small, strict DER codec: just what CMS SignedData and Authenticode need.

Why our own: the project's libraries (cryptography, pefile) do not expose a general ASN.1 codec, and a
signature parser is an attack surface, so the decoder is deliberately strict and boring. It accepts only
DER: definite, minimally encoded lengths; primitive/constructed forms as the universal types demand;
minimal INTEGER and OID encodings. Every malformation raises :class:`DerError` (a SigningError) —
never IndexError, ValueError or RecursionError — and nesting is bounded by ``max_depth``.

Decoding keeps each element's exact encoding (:attr:`Element.raw`): signatures are checked over the
bytes as received, never over a re-encoding, and certificates pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from app.errors import SigningError

# Tag classes (the top two bits of the identifier octet).
UNIVERSAL, APPLICATION, CONTEXT, PRIVATE = 0, 1, 2, 3

# Universal tag numbers.
BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTF8_STRING = 0x0C
SEQUENCE = 0x10
SET = 0x11
PRINTABLE_STRING = 0x13
IA5_STRING = 0x16
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
BMP_STRING = 0x1E

#: Universal types that DER always encodes in primitive form.
_PRIMITIVE_ONLY = {BOOLEAN, INTEGER, BIT_STRING, OCTET_STRING, NULL, OID, UTF8_STRING, PRINTABLE_STRING,
                   IA5_STRING, UTC_TIME, GENERALIZED_TIME, BMP_STRING}  # fmt: skip
_CONSTRUCTED_ONLY = {SEQUENCE, SET}

DEFAULT_MAX_DEPTH = 32
#: Lengths beyond this are refused outright (no signature or certificate is anywhere near 256 MiB).
MAX_LENGTH = 1 << 28


class DerError(SigningError):
    """The bytes are not valid DER (or not the structure expected)."""

    def __init__(self, message: str, hint: str = "the signature or certificate data is corrupt") -> None:
        super().__init__(message, hint)


@dataclass(frozen=True)
class Element:
    """One decoded TLV: identifier, contents octets and the exact encoding (``raw``).

    Children of a constructed element are decoded on first use, so structures we only pass through
    (certificates, handed whole to ``cryptography``) are checked by their own parser, not ours.
    """

    tag_class: int
    constructed: bool
    tag: int
    content: bytes
    raw: bytes
    depth: int = field(default=0, repr=False)
    max_depth: int = field(default=DEFAULT_MAX_DEPTH, repr=False)

    @cached_property
    def children(self) -> tuple[Element, ...]:
        if not self.constructed:
            return ()
        return tuple(_decode_seq(self.content, 0, len(self.content), self.depth + 1, self.max_depth))

    # -- shape checks -------------------------------------------------------------------------------
    def is_(self, tag: int, tag_class: int = UNIVERSAL) -> bool:
        return self.tag == tag and self.tag_class == tag_class

    def expect(self, tag: int, tag_class: int = UNIVERSAL, what: str = "") -> Element:
        """Self, if it has this tag; otherwise a DerError naming ``what`` was expected."""
        if not self.is_(tag, tag_class):
            raise DerError(f"expected {what or _tag_name(tag, tag_class)}, found {self.describe()}")
        return self

    def items(self, tag: int = SEQUENCE, tag_class: int = UNIVERSAL, *, what: str = "",
              count: tuple[int, int] | None = None) -> tuple[Element, ...]:  # fmt: skip
        """The children of a constructed element with this tag, optionally checking how many there are."""
        self.expect(tag, tag_class, what)
        if not self.constructed:
            raise DerError(f"{what or self.describe()} must be constructed")
        if count is not None and not count[0] <= len(self.children) <= count[1]:
            n, (low, high) = len(self.children), count
            raise DerError(f"{what or self.describe()} has {n} elements, expected {low}..{high}")
        return self.children

    def describe(self) -> str:
        return _tag_name(self.tag, self.tag_class)

    # -- typed values -------------------------------------------------------------------------------
    def as_int(self) -> int:
        self.expect(INTEGER)
        c = self.content
        if not c:
            raise DerError("empty INTEGER")
        if len(c) > 1 and ((c[0] == 0 and c[1] < 0x80) or (c[0] == 0xFF and c[1] >= 0x80)):
            raise DerError("INTEGER is not minimally encoded")
        return int.from_bytes(c, "big", signed=True)

    def as_oid(self) -> str:
        self.expect(OID)
        return decode_oid(self.content)

    def as_octets(self) -> bytes:
        return self.expect(OCTET_STRING).content

    def as_bool(self) -> bool:
        self.expect(BOOLEAN)
        if self.content not in (b"\x00", b"\xff"):
            raise DerError("BOOLEAN must be 0x00 or 0xFF in DER")
        return self.content == b"\xff"

    def as_null(self) -> None:
        self.expect(NULL)
        if self.content:
            raise DerError("NULL with contents")

    def as_time(self) -> datetime:
        """UTCTime or GeneralizedTime (DER form: UTC, ``Z``, seconds present) as an aware datetime."""
        text = self.content.decode("ascii", errors="replace")
        if self.is_(UTC_TIME):
            fmt, width = "%y%m%d%H%M%SZ", 13
        elif self.is_(GENERALIZED_TIME):
            fmt, width = "%Y%m%d%H%M%SZ", 15
            if "." in text:  # fractional seconds: DER allows them without trailing zeros; drop them
                head, _, frac = text.partition(".")
                if not frac.endswith("Z") or not frac[:-1].isdigit() or frac[:-1].endswith("0"):
                    raise DerError(f"bad GeneralizedTime {text!r}")
                text = head + "Z"
        else:
            raise DerError(f"expected a time, found {self.describe()}")
        if len(text) != width or not text[:-1].isdigit():
            raise DerError(f"bad time value {text!r}")
        try:
            value = datetime.strptime(text, fmt)
        except ValueError:
            raise DerError(f"bad time value {text!r}") from None
        if self.is_(UTC_TIME) and value.year >= 2050:  # RFC 5280: YY >= 50 means 19YY
            value = value.replace(year=value.year - 100)
        return value.replace(tzinfo=UTC)


def _tag_name(tag: int, tag_class: int) -> str:
    if tag_class == CONTEXT:
        return f"[{tag}]"
    if tag_class != UNIVERSAL:
        return f"tag {tag} (class {tag_class})"
    names = {BOOLEAN: "BOOLEAN", INTEGER: "INTEGER", BIT_STRING: "BIT STRING", OCTET_STRING: "OCTET STRING",
             NULL: "NULL", OID: "OBJECT IDENTIFIER", SEQUENCE: "SEQUENCE", SET: "SET", UTC_TIME: "UTCTime",
             GENERALIZED_TIME: "GeneralizedTime", BMP_STRING: "BMPString", IA5_STRING: "IA5String",
             UTF8_STRING: "UTF8String", PRINTABLE_STRING: "PrintableString"}  # fmt: skip
    return names.get(tag, f"universal tag {tag}")


# ------------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------------


def decode(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH, deep: bool = False) -> Element:
    """Exactly one DER element filling all of ``data``; ``deep`` checks every nested element now."""
    data = bytes(data)
    element, end = _decode_one(data, 0, len(data), 0, max_depth)
    if end != len(data):
        raise DerError(f"{len(data) - end} trailing bytes after the DER element")
    if deep:
        pending = [element]
        while pending:
            pending.extend(pending.pop().children)
    return element


def decode_prefix(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[Element, int]:
    """The DER element at the start of ``data`` and where it ends (for blobs padded after the DER)."""
    data = bytes(data)
    return _decode_one(data, 0, len(data), 0, max_depth)


def decode_all(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> list[Element]:
    """Consecutive DER elements filling all of ``data`` (possibly none)."""
    data = bytes(data)
    return _decode_seq(data, 0, len(data), 0, max_depth)


def _decode_seq(data: bytes, pos: int, end: int, depth: int, max_depth: int) -> list[Element]:
    out = []
    while pos < end:
        element, pos = _decode_one(data, pos, end, depth, max_depth)
        out.append(element)
    return out


def _decode_one(data: bytes, pos: int, end: int, depth: int, max_depth: int) -> tuple[Element, int]:
    if depth > max_depth:
        raise DerError(f"DER nesting deeper than {max_depth} levels")
    start = pos
    if pos >= end:
        raise DerError("truncated DER: missing tag")
    first = data[pos]
    pos += 1
    tag_class, constructed, tag = first >> 6, bool(first & 0x20), first & 0x1F
    if tag == 0x1F:  # high tag number form, base 128
        tag = 0
        for count in range(5):
            if pos >= end:
                raise DerError("truncated DER: tag number")
            b = data[pos]
            pos += 1
            if count == 0 and b == 0x80:
                raise DerError("tag number is not minimally encoded")
            tag = (tag << 7) | (b & 0x7F)
            if not b & 0x80:
                break
        else:
            raise DerError("tag number too large")
        if tag < 0x1F:
            raise DerError("low tag number in high-tag form")
    if pos >= end:
        raise DerError("truncated DER: missing length")
    lb = data[pos]
    pos += 1
    if lb < 0x80:
        length = lb
    elif lb == 0x80:
        raise DerError("indefinite length is not allowed in DER")
    else:
        n = lb & 0x7F
        if n > 4:
            raise DerError("DER length field too long")
        if pos + n > end:
            raise DerError("truncated DER: length")
        length = int.from_bytes(data[pos : pos + n], "big")
        if data[pos] == 0 or length < 0x80:
            raise DerError("DER length is not minimally encoded")
        pos += n
    if length > MAX_LENGTH:
        raise DerError("DER element is implausibly large")
    if pos + length > end:
        raise DerError(f"truncated DER: element needs {length} bytes, {end - pos} left")
    content_start, pos = pos, pos + length
    if tag_class == UNIVERSAL:
        if tag == 0:
            raise DerError("end-of-contents octets are not allowed in DER")
        if constructed and tag in _PRIMITIVE_ONLY:
            raise DerError(f"{_tag_name(tag, tag_class)} must be primitive in DER")
        if not constructed and tag in _CONSTRUCTED_ONLY:
            raise DerError(f"{_tag_name(tag, tag_class)} must be constructed")
    element = Element(tag_class, constructed, tag, data[content_start:pos], data[start:pos], depth, max_depth)
    return element, pos


def decode_oid(content: bytes) -> str:
    if not content:
        raise DerError("empty OBJECT IDENTIFIER")
    if len(content) > 128:
        raise DerError("OBJECT IDENTIFIER too long")
    if content[-1] & 0x80:
        raise DerError("truncated OBJECT IDENTIFIER")
    arcs: list[int] = []
    value, fresh = 0, True
    for b in content:
        if fresh and b == 0x80:
            raise DerError("OBJECT IDENTIFIER arc is not minimally encoded")
        value = (value << 7) | (b & 0x7F)
        fresh = not b & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


# ------------------------------------------------------------------------------------------------
# Encoding
# ------------------------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _identifier(tag: int, tag_class: int, constructed: bool) -> bytes:
    lead = (tag_class << 6) | (0x20 if constructed else 0)
    if tag < 0x1F:
        return bytes([lead | tag])
    groups = []
    while True:
        groups.append(tag & 0x7F)
        tag >>= 7
        if not tag:
            break
    groups.reverse()
    return bytes([lead | 0x1F]) + bytes([g | 0x80 for g in groups[:-1]] + [groups[-1]])


def tlv(tag: int, content: bytes, *, tag_class: int = UNIVERSAL, constructed: bool | None = None) -> bytes:
    """One element; ``constructed`` defaults to True for SEQUENCE/SET and context tags wrapping others."""
    if constructed is None:
        constructed = tag_class == UNIVERSAL and tag in _CONSTRUCTED_ONLY
    return _identifier(tag, tag_class, constructed) + _length(len(content)) + content


def integer(value: int) -> bytes:
    n = max(1, (value.bit_length() + 8) // 8)  # room for the sign bit
    body = value.to_bytes(n, "big", signed=True)
    while len(body) > 1 and ((body[0] == 0 and body[1] < 0x80) or (body[0] == 0xFF and body[1] >= 0x80)):
        body = body[1:]
    return tlv(INTEGER, body)


def oid(dotted: str) -> bytes:
    try:
        arcs = [int(a) for a in dotted.split(".")]
    except ValueError:
        raise DerError(f"bad OID {dotted!r}") from None
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or min(arcs) < 0:
        raise DerError(f"bad OID {dotted!r}")
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1]] + arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(OID, bytes(body))


def octet_string(data: bytes) -> bytes:
    return tlv(OCTET_STRING, bytes(data))


def bit_string(data: bytes, unused_bits: int = 0) -> bytes:
    return tlv(BIT_STRING, bytes([unused_bits]) + bytes(data))


def null() -> bytes:
    return b"\x05\x00"


def boolean(value: bool) -> bytes:
    return tlv(BOOLEAN, b"\xff" if value else b"\x00")


def bmp_string(text: str) -> bytes:
    return tlv(BMP_STRING, text.encode("utf-16-be"))


def sequence(*parts: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(parts))


def set_of(parts: Iterable[bytes]) -> bytes:
    """SET OF: DER sorts the encoded elements (X.690 11.6)."""
    return tlv(SET, b"".join(sorted(parts)))


def explicit(number: int, inner: bytes) -> bytes:
    """``[number] EXPLICIT``: a constructed context tag around a complete encoding."""
    return tlv(number, inner, tag_class=CONTEXT, constructed=True)


def implicit(number: int, encoded: bytes) -> bytes:
    """``[number] IMPLICIT``: re-tag a complete encoding, keeping its contents and constructed bit."""
    element = decode(encoded)
    return tlv(number, element.content, tag_class=CONTEXT, constructed=element.constructed)


def time(value: datetime) -> bytes:
    """UTCTime for 1950–2049, GeneralizedTime otherwise (RFC 5280 4.1.2.5 / RFC 5652 11.3)."""
    if value.tzinfo is None:
        raise DerError("times must be timezone-aware")
    value = value.astimezone(UTC)
    if 1950 <= value.year < 2050:
        return tlv(UTC_TIME, value.strftime("%y%m%d%H%M%SZ").encode())
    return tlv(GENERALIZED_TIME, f"{value.year:04d}{value.strftime('%m%d%H%M%S')}Z".encode())
