"""LUKS2 binary headers and JSON areas: read (with checksum validation and recovery) and write.

On disk (cryptsetup's docs/on-disk-format-luks2, lib/luks2/luks2.h): two copies of the metadata, at
offset 0 ("LUKS\\xba\\xbe") and at ``hdr_size`` ("SKUL\\xba\\xbe"). Each copy is a 4096-byte big-endian
binary header followed by the JSON area (``hdr_size - 4096`` bytes: a NUL-terminated JSON text, then
zeros). Each copy's checksum covers the whole ``hdr_size`` bytes with the checksum field zeroed, and
each copy has its own random salt, so the two checksums differ.

Reading follows cryptsetup: a copy counts only if its magic, size, offset and checksum are right; with
two good copies the higher ``seqid`` wins; with one, the other is reported as damaged (cryptsetup
would repair it on the next write, and so do we: writes always produce both copies).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid as uuid_mod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.luks.errors import LuksHeaderError, LuksUnsupportedError
from app.untrusted import shortened

MAGIC_PRIMARY = b"LUKS\xba\xbe"
MAGIC_SECONDARY = b"SKUL\xba\xbe"
BINARY_HEADER_SIZE = 4096
#: Allowed metadata (binary header + JSON area) sizes, which are also the secondary header offsets.
HDR_SIZES = tuple(0x4000 << i for i in range(9))  # 16 KiB … 4 MiB
DEFAULT_HDR_SIZE = 0x4000
_CSUM_OFFSET, _CSUM_SIZE = 448, 64
# magic, version, hdr_size, seqid, label, checksum_alg, salt, uuid, subsystem, hdr_offset, pad, csum, pad
_FORMAT = ">6sHQQ48s32s64s40s48sQ184s64s3584s"
assert struct.calcsize(_FORMAT) == BINARY_HEADER_SIZE

Reader = Callable[[int, int], bytes]


@dataclass
class Metadata:
    """One consistent LUKS2 metadata state: the binary-header fields and the parsed JSON."""

    json: dict[str, Any]
    hdr_size: int = DEFAULT_HDR_SIZE
    seqid: int = 1
    label: str = ""
    subsystem: str = ""
    uuid: str = field(default_factory=lambda: str(uuid_mod.uuid4()))
    checksum_alg: str = "sha256"
    #: Human-readable problems found while reading (a damaged copy, copies out of sync).
    problems: list[str] = field(default_factory=list)


def _cstr(raw: bytes, what: str) -> str:
    text = raw.split(b"\0", 1)[0]
    try:
        return text.decode("ascii" if what == "uuid" else "utf-8")
    except UnicodeDecodeError:
        raise LuksHeaderError(f"LUKS2 header {what} is not valid text") from None


def _field(text: str, size: int, what: str) -> bytes:
    raw = text.encode()
    if len(raw) >= size or b"\0" in raw:
        raise LuksHeaderError(f"LUKS2 {what} must be at most {size - 1} bytes without NULs")
    return raw.ljust(size, b"\0")


#: Header checksum algorithms, as cryptsetup names them (its crypto backends' hash tables, e.g.
#: lib/crypto_backend/crypto_openssl.c), with hashlib's name. Only fixed-size digests that fit the 64-byte
#: checksum field: hashlib.new() would also take an extendable-output "shake_128", whose digest() needs a
#: length (a TypeError), or anything else OpenSSL happens to offer.
CHECKSUM_ALGORITHMS = {
    "md5": "md5",  # not in the table, but its OpenSSL backend falls back to EVP_get_digestbyname
    "sha1": "sha1",
    "sha224": "sha224",
    "sha256": "sha256",  # what cryptsetup writes
    "sha384": "sha384",
    "sha512": "sha512",
    "sha3-224": "sha3_224",
    "sha3-256": "sha3_256",
    "sha3-384": "sha3_384",
    "sha3-512": "sha3_512",
    "ripemd160": "ripemd160",
    "sm3": "sm3",
    "blake2b-512": "blake2b",
    "blake2s-256": "blake2s",
    "whirlpool": "whirlpool",
    "stribog256": "stribog256",
    "stribog512": "stribog512",
}
#: Deepest JSON nesting (objects and arrays) a LUKS2 metadata area may have. cryptsetup parses it with
#: json-c's default tokener (json_tokener_parse_verbose, JSON_TOKENER_DEFAULT_DEPTH = 32), so a deeper
#: header does not open there either; real ones nest 4 or 5 levels. Bounding it here keeps every consumer
#: of the parsed JSON (deepcopy in ``luks dump``, comparing the two copies) clear of RecursionError.
MAX_JSON_DEPTH = 32


def _checksum(alg: str, data: bytes | bytearray) -> bytes:
    name = CHECKSUM_ALGORITHMS.get(alg)
    if name is None:
        raise LuksHeaderError(
            f"LUKS2 checksum algorithm {shortened(repr(alg), 40)} is not a fixed-size hash cryptsetup knows",
            "the header is damaged or was not written by cryptsetup",
        )
    try:
        h = hashlib.new(name)
    except ValueError:
        raise LuksUnsupportedError(f"LUKS2 checksum algorithm {alg!r} is not supported") from None
    if h.digest_size > _CSUM_SIZE:  # none of the above; a guard should the table grow
        raise LuksHeaderError(f"LUKS2 checksum algorithm {alg!r} does not fit the checksum field")
    h.update(data)
    return h.digest()


def _json_depth_ok(obj: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``obj`` nests at most ``limit`` objects/arrays deep (walked without recursion)."""
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: list[object] | tuple[object, ...] = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def encode_json(obj: dict[str, Any], hdr_size: int) -> bytes:
    """The JSON area: compact JSON text, NUL, zero padding. Too large is a :class:`LuksHeaderError`."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()
    area = hdr_size - BINARY_HEADER_SIZE
    if len(text) >= area:
        raise LuksHeaderError(
            f"LUKS2 metadata needs {len(text) + 1} bytes but the JSON area holds {area}",
            "use a larger metadata size",
        )
    return text.ljust(area, b"\0")


def build_copy(meta: Metadata, secondary: bool, salt: bytes | None = None) -> bytes:
    """One metadata copy (``hdr_size`` bytes) with its own fresh salt and checksum."""
    if meta.hdr_size not in HDR_SIZES:
        raise LuksHeaderError(f"LUKS2 metadata size {meta.hdr_size} is not one of {HDR_SIZES}")
    head = struct.pack(
        _FORMAT,
        MAGIC_SECONDARY if secondary else MAGIC_PRIMARY,
        2,
        meta.hdr_size,
        meta.seqid,
        _field(meta.label, 48, "label"),
        _field(meta.checksum_alg, 32, "checksum algorithm"),
        salt if salt is not None else os.urandom(64),
        _field(meta.uuid, 40, "UUID"),
        _field(meta.subsystem, 48, "subsystem"),
        meta.hdr_size if secondary else 0,
        bytes(184),
        bytes(64),
        bytes(3584),
    )
    copy = bytearray(head + encode_json(meta.json, meta.hdr_size))
    digest = _checksum(meta.checksum_alg, copy)
    copy[_CSUM_OFFSET : _CSUM_OFFSET + len(digest)] = digest
    return bytes(copy)


def build_metadata(meta: Metadata) -> bytes:
    """Both copies, primary then secondary: ``2 * hdr_size`` bytes for offset 0 of the device."""
    return build_copy(meta, False) + build_copy(meta, True)


@dataclass
class _Copy:
    meta: Metadata
    offset: int


def _read(read: Reader, offset: int, length: int) -> bytes:
    try:
        data = read(offset, length)
    except (OSError, ValueError) as exc:
        raise LuksHeaderError(f"cannot read the LUKS2 header: {exc}") from None
    return bytes(data or b"")


def _parse_copy(read: Reader, offset: int, secondary: bool) -> _Copy:
    """Parse and verify one copy; any problem is a :class:`LuksHeaderError` saying what."""
    which = "secondary" if secondary else "primary"
    raw = _read(read, offset, BINARY_HEADER_SIZE)
    if len(raw) < BINARY_HEADER_SIZE:
        raise LuksHeaderError(f"{which} LUKS2 header is truncated")
    (magic, version, hdr_size, seqid, label, alg, _salt, uuid, subsystem, hdr_offset, _p, csum, _p2) = (
        struct.unpack(_FORMAT, raw)
    )
    if magic != (MAGIC_SECONDARY if secondary else MAGIC_PRIMARY):
        raise LuksHeaderError(f"no {which} LUKS header magic at offset {offset}")
    if version != 2:
        raise LuksUnsupportedError(f"LUKS version {version} is not supported (only LUKS2)")
    if hdr_size not in HDR_SIZES:
        raise LuksHeaderError(f"{which} LUKS2 header has an invalid metadata size {hdr_size}")
    if hdr_offset != offset:
        raise LuksHeaderError(f"{which} LUKS2 header claims offset {hdr_offset} but sits at {offset}")
    alg_name = _cstr(alg, "checksum algorithm")
    area = _read(read, offset + BINARY_HEADER_SIZE, hdr_size - BINARY_HEADER_SIZE)
    if len(area) < hdr_size - BINARY_HEADER_SIZE:
        raise LuksHeaderError(f"{which} LUKS2 JSON area is truncated")
    whole = bytearray(raw + area)
    expected = _checksum(
        alg_name, bytes(whole[:_CSUM_OFFSET]) + bytes(_CSUM_SIZE) + bytes(whole[_CSUM_OFFSET + _CSUM_SIZE :])
    )
    if csum[: len(expected)] != expected:
        raise LuksHeaderError(f"{which} LUKS2 header checksum does not match")
    text = area.split(b"\0", 1)[0]
    try:
        obj = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise LuksHeaderError(f"{which} LUKS2 JSON metadata is not valid JSON") from None
    if not isinstance(obj, dict):
        raise LuksHeaderError(f"{which} LUKS2 JSON metadata is not an object")
    if not _json_depth_ok(obj):
        raise LuksHeaderError(
            f"{which} LUKS2 JSON metadata nests deeper than {MAX_JSON_DEPTH} levels",
            "cryptsetup refuses such a header too; it is damaged or hostile",
        )
    meta = Metadata(
        json=obj,
        hdr_size=hdr_size,
        seqid=seqid,
        label=_cstr(label, "label"),
        subsystem=_cstr(subsystem, "subsystem"),
        uuid=_cstr(uuid, "uuid"),
        checksum_alg=alg_name,
    )
    return _Copy(meta, offset)


def read_metadata(read: Reader) -> Metadata:
    """The current metadata of the LUKS2 device behind ``read(offset, length)``.

    Raises :class:`LuksHeaderError` when neither copy is usable (the message names the primary's
    problem, the usual case being "not LUKS at all").
    """
    try:
        primary: _Copy | None = _parse_copy(read, 0, False)
        primary_problem = ""
    except LuksUnsupportedError:
        raise
    except LuksHeaderError as exc:
        primary, primary_problem = None, exc.message
    offsets = [primary.meta.hdr_size] if primary else list(HDR_SIZES)
    secondary: _Copy | None = None
    secondary_problem = ""
    for off in offsets:
        try:
            secondary = _parse_copy(read, off, True)
            break
        except LuksHeaderError as exc:
            if not secondary_problem or primary:
                secondary_problem = exc.message
    if primary is None and secondary is None:
        raise LuksHeaderError(
            primary_problem, "this is not a LUKS2 container, or both header copies are damaged"
        )
    if primary and secondary:
        best = secondary if secondary.meta.seqid > primary.meta.seqid else primary
        if secondary.meta.seqid != primary.meta.seqid or secondary.meta.json != primary.meta.json:
            best.meta.problems.append(
                f"the two LUKS2 header copies differ (seqid {primary.meta.seqid} and {secondary.meta.seqid});"
                f" using the {'secondary' if best is secondary else 'primary'}"
            )
        return best.meta
    if primary:
        assert primary is not None
        primary.meta.problems.append(f"secondary header unusable: {secondary_problem}")
        return primary.meta
    assert secondary is not None
    secondary.meta.problems.append(f"primary header unusable: {primary_problem}; using the secondary copy")
    return secondary.meta
