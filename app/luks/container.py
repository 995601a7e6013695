"""A whole LUKS2 header area: create it, read it, unlock it, add and remove keyslots and tokens.

The *header area* is the first ``data_offset`` bytes of the partition: both metadata copies, the keyslots
area (each keyslot's AF-split volume key, aes-xts-plain64 under the KDF output, 512-byte sectors, IV
restarting at 0 per keyslot) and padding. Every operation returns a new header area instead of editing a
device (a failure never leaves half a header behind); writes bump ``seqid`` and rewrite both copies, as
cryptsetup does. Volume and keyslot keys live in ``bytearray`` buffers wiped with :func:`wipe`; nothing
secret is logged, put in an exception or shown by a ``repr``.
"""

from __future__ import annotations

import base64
import copy
import functools
import hmac
import os
import time
import uuid as uuid_mod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from app.errors import WrongPassphraseError
from app.luks import af
from app.luks.errors import LuksError, LuksHeaderError, LuksUnsupportedError
from app.luks.header import BINARY_HEADER_SIZE, HDR_SIZES, Metadata, Reader, build_metadata, read_metadata
from app.luks.kdf import MAX_PBKDF2_ITERATIONS, KdfParams, Passphrase, derive, digest_hash, run_interruptibly
from app.luks.params import DEFAULT_DATA_OFFSET, SEGMENT_CIPHER
from app.luks.xts import SECTOR_SIZES, XtsCipher
from app.untrusted import has_type, printable

MiB = 1024 * 1024
MAX_KEYSLOTS = 32
MAX_TOKENS = 32
MAX_KEYSLOTS_SIZE = 128 * MiB
KEYSLOT_CIPHER = "aes-xts-plain64"
KEYSLOT_KEY_SIZE = 64  # bytes: AES-256-XTS for the keyslot area, like cryptsetup's default
DIGEST_SALT_SIZE = 32
#: systemd's modhex alphabet (src/shared/recovery-key.c): hex digits a keyboard layout cannot mangle.
MODHEX = "cbdefghijklnrtuv"


def wipe(buf: bytearray | memoryview | None) -> None:
    """Overwrite a secret buffer with zeros (best effort: Python may have copied it elsewhere)."""
    if buf is not None:
        memoryview(buf).cast("B")[:] = bytes(len(memoryview(buf).cast("B")))


@dataclass
class LuksParams:
    """Layout choices for a new container. Defaults are cryptsetup's (16 KiB metadata, 16 MiB offset)."""

    sector_size: int = 4096
    key_bits: int = 512
    metadata_size: int = 16384
    data_offset: int = DEFAULT_DATA_OFFSET
    label: str | None = None
    subsystem: str | None = None
    uuid: str | None = None
    #: Volume-key digest iterations; None = about 125 ms here like cryptsetup (at least 1000).
    digest_iterations: int | None = None

    def validate(self) -> None:
        if self.sector_size not in SECTOR_SIZES:
            raise LuksError(f"sector size {self.sector_size} is not 512, 1024, 2048 or 4096")
        if self.key_bits not in (256, 512):
            raise LuksError(f"key size {self.key_bits} bits is not 256 or 512 (AES-128/256-XTS)")
        if self.metadata_size not in HDR_SIZES:
            raise LuksError(f"metadata size {self.metadata_size} is not a power of two from 16 KiB to 4 MiB")
        keyslots = self.data_offset - 2 * self.metadata_size
        if self.data_offset % 4096 or keyslots < 0 or keyslots > MAX_KEYSLOTS_SIZE:
            raise LuksError(
                f"data offset {self.data_offset} must be a multiple of 4096 leaving 0 to 128 MiB for keyslots"
            )
        if self.uuid is not None:
            try:
                uuid_mod.UUID(self.uuid)
            except ValueError:
                raise LuksError(f"{self.uuid!r} is not a UUID") from None


_digest_rate: float | None = None


def _digest_iterations() -> int:
    """pbkdf2-sha256 iterations for ~125 ms (cryptsetup's LUKS_MKD_ITERATIONS_MS), measured once."""
    global _digest_rate
    if _digest_rate is None:
        start = time.perf_counter()
        PBKDF2HMAC(digest_hash("sha256")(), 32, bytes(32), 20000).derive(bytes(64))
        _digest_rate = 20000 / max(time.perf_counter() - start, 1e-6)
    return max(1000, int(_digest_rate * 0.125))


def new_volume_key(bits: int = 512) -> bytearray:
    """A fresh random volume key (the caller wipes it when done)."""
    if bits not in (256, 512):
        raise LuksError(f"key size {bits} bits is not 256 or 512")
    return bytearray(os.urandom(bits // 8))


def generate_recovery_key() -> str:
    """A systemd-style recovery key: 32 random bytes as 64 modhex characters in 8 dash-separated groups.

    The string itself is the keyslot passphrase (that is what systemd-cryptenroll --recovery-key
    enrolls and what systemd-cryptsetup accepts at the prompt). Its 256 bits of entropy make a costly
    KDF pointless; systemd uses a minimal pbkdf2 for it.
    """
    raw = os.urandom(32)
    chars = "".join(MODHEX[b >> 4] + MODHEX[b & 15] for b in raw)
    return "-".join(chars[i : i + 8] for i in range(0, 64, 8))


# --- parsed view ---------------------------------------------------------------------------------------


def _decimal(text: str) -> bool:
    """ASCII digits only: ``"²".isdigit()`` is true, and int() refuses it."""
    return text.isascii() and text.isdigit()


def _u64(value: Any, what: str) -> int:
    """A LUKS2 string-uint64 (a decimal JSON string)."""
    if not isinstance(value, str) or not _decimal(value) or len(value) > 20 or int(value) >= 2**64:
        raise LuksHeaderError(f"LUKS2 {what} is not a uint64 string")
    return int(value)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LuksHeaderError(f"LUKS2 {what} is not an integer")
    return value


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LuksHeaderError(f"LUKS2 {what} is not a JSON object")
    return value


def _ids(obj: dict[str, Any], what: str, limit: int) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for key, value in _obj(obj, what).items():
        if not _decimal(key) or int(key) >= limit:
            raise LuksHeaderError(f"LUKS2 {what} id {key!r} is invalid")
        out[int(key)] = _obj(value, f"{what} {key}")
    return out


def _id_list(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, str) and _decimal(v) for v in value):
        raise LuksHeaderError(f"LUKS2 {what} is not a list of id strings")
    return [int(v) for v in value]


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (TypeError, ValueError):
        raise LuksHeaderError(f"LUKS2 {what} is not base64") from None


@dataclass
class Keyslot:
    """A parsed ``luks2`` keyslot: where its material is and how its key is derived."""

    id: int
    key_size: int
    area_offset: int
    area_size: int
    area_encryption: str
    area_key_size: int
    af_stripes: int
    af_hash: str
    kdf: KdfParams
    priority: int = 1

    @classmethod
    def from_json(cls, slot_id: int, obj: dict[str, Any]) -> Keyslot:
        if obj.get("type") != "luks2":
            raise LuksUnsupportedError(f"keyslot {slot_id} has type {obj.get('type')!r}, not luks2")
        area = _obj(obj.get("area"), f"keyslot {slot_id} area")
        afo = _obj(obj.get("af"), f"keyslot {slot_id} af")
        if area.get("type") != "raw" or afo.get("type") != "luks1":
            raise LuksUnsupportedError(f"keyslot {slot_id} uses an area or AF type we do not handle")
        slot = cls(
            id=slot_id,
            key_size=_int(obj.get("key_size"), "keyslot key_size"),
            area_offset=_u64(area.get("offset"), "keyslot area offset"),
            area_size=_u64(area.get("size"), "keyslot area size"),
            area_encryption=str(area.get("encryption")),
            area_key_size=_int(area.get("key_size"), "keyslot area key_size"),
            af_stripes=_int(afo.get("stripes"), "keyslot AF stripes"),
            af_hash=str(afo.get("hash")),
            kdf=KdfParams.from_json(_obj(obj.get("kdf"), f"keyslot {slot_id} kdf")),
            priority=_int(obj.get("priority", 1), "keyslot priority"),
        )
        if (
            not 1 <= slot.key_size <= 512
            or not 1 <= slot.af_stripes <= 4000
            or slot.area_key_size not in (32, 64)
        ):
            raise LuksHeaderError(f"keyslot {slot_id} has out-of-range sizes")
        if af.af_size(slot.key_size, slot.af_stripes) > slot.area_size:
            raise LuksHeaderError(f"keyslot {slot_id} area is too small for its key material")
        return slot

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "type": "luks2",
            "key_size": self.key_size,
            "af": {"type": "luks1", "stripes": self.af_stripes, "hash": self.af_hash},
            "area": {
                "type": "raw",
                "offset": str(self.area_offset),
                "size": str(self.area_size),
                "encryption": self.area_encryption,
                "key_size": self.area_key_size,
            },
            "kdf": self.kdf.to_json(),
        }
        if self.priority != 1:
            obj["priority"] = self.priority
        return obj


@dataclass
class LuksHeader:
    """A parsed LUKS2 header: identity, keyslots, digests, the data segment, tokens.

    ``problems`` lists recoverable damage found while reading (e.g. a corrupt primary copy).
    """

    uuid: str
    label: str
    subsystem: str
    seqid: int
    metadata_size: int
    keyslots_size: int
    keyslots: dict[int, Keyslot]
    digests: dict[int, dict[str, Any]]
    segments: dict[int, dict[str, Any]]
    tokens: dict[int, dict[str, Any]]
    config: dict[str, Any]
    sector_size: int
    data_offset: int
    encryption: str
    problems: list[str] = field(default_factory=list)
    json: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def keyslots_offset(self) -> int:
        return 2 * self.metadata_size

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary for ``luks dump --json`` (no key material: salts and digests are public)."""
        return {
            "version": 2,
            "uuid": self.uuid,
            "label": self.label,
            "subsystem": self.subsystem,
            "seqid": self.seqid,
            "metadata_size": self.metadata_size,
            "keyslots_size": self.keyslots_size,
            "data_offset": self.data_offset,
            "sector_size": self.sector_size,
            "encryption": self.encryption,
            "problems": list(self.problems),
            "metadata": copy.deepcopy(self.json),
        }

    @classmethod
    def from_metadata(cls, meta: Metadata) -> LuksHeader:
        """Validate the JSON and build the parsed view; anything malformed is a :class:`LuksHeaderError`."""
        try:
            return cls._from_metadata(meta)
        except LuksError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise LuksHeaderError(f"malformed LUKS2 JSON metadata ({type(exc).__name__})") from None

    @classmethod
    def _from_metadata(cls, meta: Metadata) -> LuksHeader:
        obj = meta.json
        for key in ("keyslots", "tokens", "segments", "digests", "config"):
            _obj(obj.get(key), key)
        config = obj["config"]
        if _u64(config.get("json_size"), "config json_size") != meta.hdr_size - BINARY_HEADER_SIZE:
            raise LuksHeaderError("LUKS2 config json_size does not match the header size")
        keyslots_size = _u64(config.get("keyslots_size"), "config keyslots_size")
        if keyslots_size % 4096 or keyslots_size > MAX_KEYSLOTS_SIZE:
            raise LuksHeaderError("LUKS2 keyslots_size is not 4 KiB aligned or is too large")
        if "requirements" in config and _obj(config["requirements"], "requirements").get("mandatory"):
            raise LuksUnsupportedError(
                "this LUKS2 container has mandatory requirements (e.g. an unfinished re-encryption)"
            )
        keyslots: dict[int, Keyslot] = {}
        for sid, sobj in _ids(obj["keyslots"], "keyslot", MAX_KEYSLOTS).items():
            if sobj.get("type") != "luks2":
                continue  # e.g. "reencrypt": tolerated as cryptsetup does, but never unlocked here
            slot = Keyslot.from_json(sid, sobj)
            lo, hi = 2 * meta.hdr_size, 2 * meta.hdr_size + keyslots_size
            if slot.area_offset < lo or slot.area_offset + slot.area_size > hi:
                raise LuksHeaderError(f"keyslot {sid} area lies outside the keyslots area")
            keyslots[sid] = slot
        segments = _ids(obj["segments"], "segment", 32)
        digests = _ids(obj["digests"], "digest", 32)
        tokens = _ids(obj["tokens"], "token", MAX_TOKENS)
        for did, d in digests.items():
            _id_list(d.get("keyslots"), f"digest {did} keyslots")
            _id_list(d.get("segments"), f"digest {did} segments")
        for tid, t in tokens.items():
            if not isinstance(t.get("type"), str):
                raise LuksHeaderError(f"LUKS2 token {tid} has no type")
            _id_list(t.get("keyslots"), f"token {tid} keyslots")
        if 0 not in segments:
            raise LuksUnsupportedError("this LUKS2 container has no data segment 0")
        seg = segments[0]
        if seg.get("type") != "crypt":
            raise LuksUnsupportedError(f"LUKS2 segment type {seg.get('type')!r} is not supported")
        sector_size = _int(seg.get("sector_size"), "segment sector_size")
        if sector_size not in SECTOR_SIZES:
            raise LuksHeaderError(f"LUKS2 segment sector size {sector_size} is invalid")
        data_offset = _u64(seg.get("offset"), "segment offset")
        if data_offset < 2 * meta.hdr_size + keyslots_size and data_offset != 0:
            raise LuksHeaderError("LUKS2 data segment overlaps the metadata or keyslots area")
        return cls(
            uuid=meta.uuid,
            label=meta.label,
            subsystem=meta.subsystem,
            seqid=meta.seqid,
            metadata_size=meta.hdr_size,
            keyslots_size=keyslots_size,
            keyslots=keyslots,
            digests=digests,
            segments=segments,
            tokens=tokens,
            config=config,
            sector_size=sector_size,
            data_offset=data_offset,
            encryption=str(seg.get("encryption")),
            problems=list(meta.problems),
            json=obj,
        )


def read_header(read: Reader) -> LuksHeader:
    """Parse the LUKS2 header of the partition behind ``read(offset, length)``.

    Raises a :class:`~app.luks.errors.LuksHeaderError` (or another ShieldwrightError) for anything that
    is not a usable LUKS2 header; never a raw exception for bad bytes.
    """
    return LuksHeader.from_metadata(read_metadata(read))


def _area_reader(header_area: bytes | bytearray | memoryview) -> Reader:
    view = memoryview(header_area)

    def read(offset: int, length: int) -> bytes:
        return bytes(view[offset : offset + length])

    return read


def _meta_of(header_area: bytes | bytearray | memoryview) -> tuple[Metadata, LuksHeader]:
    meta = read_metadata(_area_reader(header_area))
    return meta, LuksHeader.from_metadata(meta)


# --- keyslot crypto ------------------------------------------------------------------------------------


#: The sizes of a volume key digest cryptsetup reads (luks2_digest_pbkdf2.c).
DIGEST_MIN_SIZE, DIGEST_MAX_SIZE = 20, 64


def _check_volume_key(header: LuksHeader, key: bytes | bytearray, segment: int = 0) -> bool:
    """Does ``key`` match the digest bound to ``segment``?"""
    for d in header.digests.values():
        if str(segment) not in d.get("segments", []) or d.get("type") != "pbkdf2":
            continue
        try:
            salt = _b64(d["salt"], "digest salt")
            expected = _b64(d["digest"], "digest")
            iterations = _int(d["iterations"], "digest iterations")
            algo = digest_hash(str(d["hash"]))
        except KeyError:
            raise LuksHeaderError("LUKS2 digest is missing a field") from None
        if not 1 <= iterations < 2**32 or len(salt) == 0:
            raise LuksHeaderError("LUKS2 digest parameters are out of range")
        # PBKDF2 runs all its iterations once per hash-sized block of output: a digest of a megabyte would
        # cost 30 000 times the iterations. cryptsetup reads 20 bytes (LUKS1's size) up to 64
        # (luks2_digest_pbkdf2.c: checkHashBuf[64]), so a longer one is not a LUKS2 digest.
        if not DIGEST_MIN_SIZE <= len(expected) <= DIGEST_MAX_SIZE:
            raise LuksHeaderError(
                f"LUKS2 digest is {len(expected)} bytes, not {DIGEST_MIN_SIZE} to {DIGEST_MAX_SIZE}",
                "the header is damaged or was not written by cryptsetup",
            )
        if iterations > MAX_PBKDF2_ITERATIONS:  # a foreign header's cost: bounded like a keyslot's
            raise LuksUnsupportedError(
                f"the volume key digest asks for {iterations} pbkdf2 iterations, more than the "
                f"{MAX_PBKDF2_ITERATIONS} Shieldwright computes"
            )
        kdf = PBKDF2HMAC(algo(), len(expected), salt, iterations)
        got = run_interruptibly(functools.partial(kdf.derive, bytes(key)))
        return hmac.compare_digest(got, expected)
    raise LuksUnsupportedError("no pbkdf2 digest for the data segment")


def _make_digest(key: bytes | bytearray, keyslots: list[int], iterations: int) -> dict[str, Any]:
    salt = os.urandom(DIGEST_SALT_SIZE)
    value = PBKDF2HMAC(digest_hash("sha256")(), 32, salt, iterations).derive(bytes(key))
    return {
        "type": "pbkdf2",
        "keyslots": [str(k) for k in keyslots],
        "segments": ["0"],
        "hash": "sha256",
        "iterations": iterations,
        "salt": base64.b64encode(salt).decode(),
        "digest": base64.b64encode(value).decode(),
    }


def _encrypt_slot(volume_key: bytes | bytearray, passphrase: Passphrase, kdf: KdfParams) -> bytes:
    """The keyslot's on-disk material: AF-split key, aes-xts-plain64 under the KDF output, IV from 0."""
    material = af.af_split(volume_key)
    key = derive(kdf, passphrase, KEYSLOT_KEY_SIZE)
    try:
        return XtsCipher(key, 512).encrypt(material, 0)
    finally:
        wipe(key)
        wipe(material)


def _open_slot(area: bytes, slot: Keyslot, passphrase: Passphrase) -> bytearray:
    """The candidate volume key this keyslot yields for ``passphrase`` (right or wrong)."""
    if slot.area_encryption != KEYSLOT_CIPHER:
        raise LuksUnsupportedError(f"keyslot {slot.id} is encrypted with {printable(slot.area_encryption)}")
    length = af.af_size(slot.key_size, slot.af_stripes)
    if len(area) < slot.area_offset + length:
        raise LuksHeaderError(f"keyslot {slot.id} area is beyond the end of the header data")
    key = derive(slot.kdf, passphrase, slot.area_key_size)
    material = bytearray()
    try:
        material = bytearray(
            XtsCipher(key, 512).decrypt(area[slot.area_offset : slot.area_offset + length], 0)
        )
        return af.af_merge(material, slot.key_size, slot.af_stripes, slot.af_hash)
    except ValueError:
        raise LuksUnsupportedError(f"keyslot {slot.id} uses parameters we cannot handle") from None
    finally:
        wipe(key)
        wipe(material)


def unlock_keyslot(
    header_area: bytes | bytearray | memoryview, passphrase: Passphrase, keyslot: int | None = None
) -> tuple[int, bytearray]:
    """``(keyslot id, volume key)`` for the first keyslot ``passphrase`` opens (or only ``keyslot``).

    Like cryptsetup, keyslots with priority 0 ("ignore") are tried only when named explicitly, and
    priority-2 ("prefer") slots go first. A wrong passphrase is :class:`WrongPassphraseError`.
    """
    _, header = _meta_of(header_area)
    area = bytes(header_area)
    if keyslot is not None:
        if keyslot not in header.keyslots:
            raise LuksError(f"keyslot {keyslot} is not in use")
        order = [header.keyslots[keyslot]]
    else:
        order = sorted(
            (s for s in header.keyslots.values() if s.priority > 0), key=lambda s: (-s.priority, s.id)
        )
    if not order:
        raise LuksError("the container has no usable keyslot")
    for slot in order:
        candidate = _open_slot(area, slot, passphrase)
        if _check_volume_key(header, candidate):
            return slot.id, candidate
        wipe(candidate)
    raise WrongPassphraseError(
        "no keyslot accepts this passphrase"
        if keyslot is None
        else f"keyslot {keyslot} rejects this passphrase",
        "check the passphrase (and its keyboard layout); a passphrase file must not end in a newline",
    )


def unlock(header_area: bytes | bytearray | memoryview, passphrase: Passphrase) -> bytearray:
    """The volume key from whichever keyslot ``passphrase`` opens, else :class:`WrongPassphraseError`."""
    return unlock_keyslot(header_area, passphrase)[1]


# --- writing -------------------------------------------------------------------------------------------


def _free_id(used: Any, limit: int, what: str) -> int:
    for i in range(limit):
        if i not in used:
            return i
    raise LuksError(f"all {limit} LUKS2 {what} are in use")


def _allocate_area(header: LuksHeader, size: int) -> int:
    """First-fit offset for a new keyslot area inside the keyslots area."""
    taken = sorted((s.area_offset, s.area_offset + s.area_size) for s in header.keyslots.values())
    pos, end = header.keyslots_offset, header.keyslots_offset + header.keyslots_size
    for lo, hi in taken:
        if pos + size <= lo:
            return pos
        pos = max(pos, hi)
    if pos + size <= end:
        return pos
    raise LuksError(
        "the keyslots area is full", "remove a keyslot or create the container with a larger data offset"
    )


def _slot_area_size(key_size: int) -> int:
    return (af.af_size(key_size) + 4095) // 4096 * 4096


def _commit(meta: Metadata, header_area: bytearray) -> bytes:
    """Bump seqid, rewrite both metadata copies into ``header_area``, validate, return it as bytes."""
    meta.seqid += 1
    meta.problems = []
    blob = build_metadata(meta)
    header_area[: len(blob)] = blob
    LuksHeader.from_metadata(meta)  # our own output must parse; catches bugs before anyone writes it
    return bytes(header_area)


def _write_slot(
    header: LuksHeader,
    meta: Metadata,
    area: bytearray,
    volume_key: bytes | bytearray,
    passphrase: Passphrase,
    kdf: KdfParams,
) -> int:
    slot_id = _free_id(header.keyslots, MAX_KEYSLOTS, "keyslots")
    size = _slot_area_size(len(volume_key))
    offset = _allocate_area(header, size)
    kdf = kdf.with_new_salt()
    kdf.validate()
    material = _encrypt_slot(volume_key, passphrase, kdf)
    area[offset : offset + size] = material + os.urandom(size - len(material))
    slot = Keyslot(
        slot_id, len(volume_key), offset, size, KEYSLOT_CIPHER, KEYSLOT_KEY_SIZE, af.STRIPES, "sha256", kdf
    )
    header.keyslots[slot_id] = slot
    meta.json["keyslots"][str(slot_id)] = slot.to_json()
    for d in meta.json["digests"].values():
        if "0" in d.get("segments", []) and str(slot_id) not in d["keyslots"]:
            d["keyslots"].append(str(slot_id))
    return slot_id


def create_header(
    volume_key: bytes | bytearray, params: LuksParams, keyslots: Sequence[tuple[Passphrase, KdfParams]]
) -> bytes:
    """The complete header area (exactly ``params.data_offset`` bytes) for a new container.

    One keyslot per ``(passphrase, kdf)`` (each with a fresh salt), in order from keyslot 0; the unused
    keyslots area is random like cryptsetup's. The data segment starts at ``data_offset``, size
    ``dynamic`` (to the end of the partition), aes-xts-plain64 with ``params.sector_size``.
    """
    params.validate()
    if len(volume_key) * 8 != params.key_bits:
        raise LuksError(f"the volume key has {len(volume_key) * 8} bits, not {params.key_bits}")
    if not keyslots:
        raise LuksError("a container needs at least one keyslot")
    hdr = params.metadata_size
    keyslots_size = params.data_offset - 2 * hdr
    iterations = params.digest_iterations or _digest_iterations()
    meta = Metadata(
        json={
            "keyslots": {},
            "tokens": {},
            "segments": {
                "0": {
                    "type": "crypt",
                    "offset": str(params.data_offset),
                    "size": "dynamic",
                    "iv_tweak": "0",
                    "encryption": SEGMENT_CIPHER,
                    "sector_size": params.sector_size,
                }
            },
            "digests": {"0": _make_digest(volume_key, [], max(1000, iterations))},
            "config": {"json_size": str(hdr - BINARY_HEADER_SIZE), "keyslots_size": str(keyslots_size)},
        },
        hdr_size=hdr,
        seqid=0,
        label=params.label or "",
        subsystem=params.subsystem or "",
        uuid=params.uuid or str(uuid_mod.uuid4()),
    )
    area = bytearray(params.data_offset)
    area[2 * hdr :] = os.urandom(keyslots_size)
    header = LuksHeader.from_metadata(meta)
    for passphrase, kdf in keyslots:
        _write_slot(header, meta, area, volume_key, passphrase, kdf)
    return _commit(meta, area)


def add_keyslot(
    header_area: bytes | bytearray | memoryview,
    volume_key: bytes | bytearray,
    passphrase: Passphrase,
    kdf: KdfParams,
    *,
    key_checked: bool = False,
) -> bytes:
    """A copy of ``header_area`` with one more keyslot (the lowest free id) for ``passphrase``.

    ``volume_key`` must be this container's (checked against the digest): get it with :func:`unlock`.
    ``key_checked``: it came from :func:`unlock_keyslot` on this very header, which checked it already
    (the digest's PBKDF2 is the expensive part of adding a keyslot with a minimal KDF).
    """
    meta, header = _meta_of(header_area)
    if not key_checked and not _check_volume_key(header, volume_key):
        raise LuksError("the volume key does not belong to this container")
    area = bytearray(header_area)
    _write_slot(header, meta, area, volume_key, passphrase, kdf)
    return _commit(meta, area)


def remove_keyslot(header_area: bytes | bytearray | memoryview, slot: int, allow_last: bool = False) -> bytes:
    """A copy of ``header_area`` without keyslot ``slot``; its area is overwritten with random bytes.

    The slot is also dropped from digests and tokens, and tokens left with no keyslot are removed (as
    systemd-cryptenroll --wipe-slot does: a TPM2 token without its keyslot is useless). Removing the last
    keyslot would make the data unrecoverable, so it needs ``allow_last=True``.
    """
    meta, header = _meta_of(header_area)
    if slot not in header.keyslots:
        raise LuksError(f"keyslot {slot} is not in use")
    if len(header.keyslots) == 1 and not allow_last:
        raise LuksError(f"keyslot {slot} is the last one", "removing it would make the data unrecoverable")
    victim = header.keyslots[slot]
    area = bytearray(header_area)
    area[victim.area_offset : victim.area_offset + victim.area_size] = os.urandom(victim.area_size)
    sid = str(slot)
    del meta.json["keyslots"][sid]
    for d in meta.json["digests"].values():
        d["keyslots"] = [k for k in d["keyslots"] if k != sid]
    for tid in list(meta.json["tokens"]):
        token = meta.json["tokens"][tid]
        token["keyslots"] = [k for k in token["keyslots"] if k != sid]
        if not token["keyslots"]:
            del meta.json["tokens"][tid]
    return _commit(meta, area)


def add_token(
    header_area: bytes | bytearray | memoryview, token: dict[str, Any], keyslots: list[int]
) -> tuple[bytes, int]:
    """A copy of ``header_area`` with ``token`` (any JSON object with a ``type``) bound to ``keyslots``.

    Returns the new header area and the token id (the lowest free). ``token["keyslots"]`` is set from
    ``keyslots``; the ``luks2-`` type prefix is cryptsetup's and refused. This is what the later
    ``systemd-tpm2`` token (tpm2-blob, tpm2-pcrs, tpm2-policy-hash, …) goes through.
    """
    meta, header = _meta_of(header_area)
    kind = token.get("type") if has_type(token, dict) else None
    if not isinstance(kind, str) or not kind:
        raise LuksError("a LUKS2 token needs a non-empty string 'type'")
    if kind.startswith("luks2-"):
        raise LuksError(f"token type {kind!r} uses the prefix reserved for cryptsetup")
    if not keyslots:
        raise LuksError("a token must be bound to at least one keyslot")
    for k in keyslots:
        if k not in header.keyslots:
            raise LuksError(f"keyslot {k} is not in use")
    tid = _free_id(header.tokens, MAX_TOKENS, "tokens")
    obj = copy.deepcopy(token)
    obj["keyslots"] = [str(k) for k in sorted(set(keyslots))]
    meta.json["tokens"][str(tid)] = obj
    try:
        return _commit(meta, bytearray(header_area)), tid
    except (TypeError, ValueError):
        raise LuksError("the token is not serialisable as JSON") from None


def remove_token(header_area: bytes | bytearray | memoryview, token_id: int) -> bytes:
    """A copy of ``header_area`` without token ``token_id`` (its keyslots stay)."""
    meta, header = _meta_of(header_area)
    if token_id not in header.tokens:
        raise LuksError(f"token {token_id} is not in use")
    del meta.json["tokens"][str(token_id)]
    return _commit(meta, bytearray(header_area))


def read_header_area(read: Callable[[int, int], bytes]) -> bytes:
    """The whole header area (up to the data offset) of the partition behind ``read``.

    Convenience for add/remove operations on an existing image: read, modify, write back.
    """
    header = read_header(read)
    length = header.data_offset or header.keyslots_offset + header.keyslots_size
    data = read(0, length)
    if len(data) < length:
        raise LuksHeaderError("the partition is shorter than its LUKS2 header area")
    return bytes(data)
