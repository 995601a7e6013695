"""Small hostile inputs, built byte by byte: each declares sizes far beyond what the file holds.

Every builder writes what a careless or malicious producer could hand us - a 1.5 KB UKI whose section
claims a gigabyte in memory, a nearly empty sparse VHDX whose header asks for a 1 GiB log or a 64 TiB
disk, a qcow2 of a few MiB whose clusters expand into a disk larger than the free space, a LUKS2 header
whose keyslot names its own KDF costs. Checksums are made valid so the readers get past them.
"""

from __future__ import annotations

import base64
import os
import struct
import uuid
from collections.abc import Sequence
from pathlib import Path

from app.disk.crc32c import crc32c
from app.disk.formats import vhdx
from app.luks.container import LuksParams, add_token, create_header
from app.luks.header import build_metadata, read_metadata
from app.luks.kdf import KdfParams
from tests.conftest import MiB, run

GiB = 1024 * MiB
TiB = 1024 * GiB


# --- PE / UKI --------------------------------------------------------------------------------------------


def _round(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def tiny_pe(sections: Sequence[tuple[str, int, bytes]], *, file_alignment: int = 0x200) -> bytes:
    """A minimal PE32+ EFI application with ``(name, VirtualSize, file data)`` sections, nothing else.

    Section data is placed FileAlignment-aligned after the headers; virtual addresses follow each other
    4 KiB-aligned from 0x1000, each section's span being its VirtualSize.
    """
    e_lfanew, opt_size = 0x40, 112 + 16 * 8
    table = e_lfanew + 4 + 20 + opt_size
    headers = _round(table + 40 * len(sections), file_alignment)
    out = bytearray(headers)
    out[0:2] = b"MZ"
    struct.pack_into("<I", out, 0x3C, e_lfanew)
    out[e_lfanew : e_lfanew + 4] = b"PE\0\0"
    struct.pack_into("<HHIIIHH", out, e_lfanew + 4, 0x8664, len(sections), 0, 0, 0, opt_size, 0x22)
    va, pos = 0x1000, headers
    rows, blobs = [], []
    for name, vsize, data in sections:
        raw = _round(len(data), file_alignment)
        rows.append(struct.pack("<8sIIIIIIHHI", name.encode(), vsize, va, raw, pos if raw else 0, 0, 0, 0, 0,
                                0x40000040))  # fmt: skip
        blobs.append(data + bytes(raw - len(data)))
        va = _round(va + max(vsize, 1), 0x1000)
        pos += raw
    opt = e_lfanew + 24
    struct.pack_into("<HBBIIIII", out, opt, 0x20B, 0, 0, 0, 0, 0, 0x1000, 0x1000)
    struct.pack_into("<QII", out, opt + 24, 0, 0x1000, file_alignment)
    struct.pack_into("<II", out, opt + 56, va, headers)
    struct.pack_into("<H", out, opt + 68, 10)  # EFI application
    struct.pack_into("<I", out, opt + 108, 16)
    for i, row in enumerate(rows):
        out[table + 40 * i : table + 40 * (i + 1)] = row
    return bytes(out) + b"".join(blobs)


def fake_bzimage(version: str = "6.1.0-hostile") -> bytes:
    """The smallest kernel the setup-header check accepts: a bzImage header and a version string."""
    data = bytearray(0x400)
    struct.pack_into("<H", data, 0x1FE, 0xAA55)
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x206, 0x020F)
    data[0x211] = 0x01  # LOADED_HIGH
    struct.pack_into("<H", data, 0x20E, 0x300 - 0x200)
    data[0x300 : 0x300 + len(version) + 1] = version.encode() + b"\0"
    return bytes(data)


def huge_section_uki(virtual_size: int = 1 * GiB) -> bytes:
    """A 1.5 KB "UKI" whose .linux section maps ``virtual_size`` bytes from 512 in the file."""
    return tiny_pe([(".osrel", 13, b"ID=hostile\n\0\0"), (".linux", virtual_size, b"\xaa" * 0x200)])


def esp_image_with(path: Path, files: dict[str, bytes], esp_mib: int = 40) -> Path:
    """A raw GPT disk whose only partition is a FAT ESP at 1 MiB holding ``files`` (``/EFI/...`` paths)."""
    fat = path.with_suffix(".fat")
    with open(fat, "wb") as f:
        f.truncate(esp_mib * MiB)
    run("mkfs.vfat", "-F", "32", "-n", "ESP", fat)
    for name, data in files.items():
        parts = name.strip("/").split("/")
        for depth in range(1, len(parts)):
            run("mmd", "-D", "s", "-i", fat, "::/" + "/".join(parts[:depth]))
        src = path.with_suffix(".src")
        src.write_bytes(data)
        run("mcopy", "-o", "-i", fat, src, "::/" + "/".join(parts))
        src.unlink()
    with open(path, "wb") as f:
        f.truncate((esp_mib + 2) * MiB)
    run("sgdisk", "-n", f"1:2048:+{esp_mib}M", "-t", "1:ef00", path)
    with open(path, "r+b") as f, open(fat, "rb") as src_f:
        f.seek(MiB)
        f.write(src_f.read())
    fat.unlink()
    return path


# --- VHDX ------------------------------------------------------------------------------------------------


def small_vhdx(path: Path) -> Path:
    """An 8 MiB dynamic VHDX (1 MiB blocks) with a little data, made by qemu-img/qemu-io."""
    run("qemu-img", "create", "-q", "-f", "vhdx", "-o", "block_size=1M,subformat=dynamic", path, "8M")
    run("qemu-io", "-f", "vhdx", "-c", "write -P 0x5a 0 1M", path)
    return path


def _reseal(buf: bytearray, offset: int, size: int) -> None:
    block = bytearray(buf[offset : offset + size])
    block[4:8] = b"\0\0\0\0"
    struct.pack_into("<I", buf, offset + 4, crc32c(block))


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _regions(head: bytes) -> dict[bytes, tuple[int, int, int]]:
    """region GUID → (entry offset in the header section, file offset, length)."""
    base = vhdx.REGION_TABLE_OFFSETS[0]
    count = struct.unpack_from("<I", head, base + 8)[0]
    out = {}
    for i in range(count):
        at = base + 16 + 32 * i
        gid, off, length, _ = vhdx.REGION_ENTRY.unpack_from(head, at)
        out[gid] = (at - base, off, length)
    return out


def bat_region(head: bytes) -> tuple[int, int, int]:
    """(entry offset in the region table, file offset, length) of the BAT region of a VHDX header section."""
    return _regions(head)[vhdx.BAT_GUID]


def vhdx_with_huge_log(path: Path, log_length: int = 1 * GiB) -> Path:
    """A sparse VHDX whose headers name a non-empty LogGuid and a ``log_length`` log (holding zeros)."""
    small_vhdx(path)
    with open(path, "rb") as f:
        head = bytearray(f.read(MiB))
    log_offset = 1 * GiB
    for off in vhdx.HEADER_OFFSETS:
        struct.pack_into("<16s", head, off + 48, uuid.uuid4().bytes_le)  # LogGuid
        struct.pack_into("<IQ", head, off + 68, log_length, log_offset)  # LogLength, LogOffset
        _reseal(head, off, vhdx.HEADER_SIZE)
    _patch(path, 0, bytes(head))
    with open(path, "r+b") as f:
        f.truncate(log_offset + log_length)
    return path


def vhdx_with_huge_disk(path: Path, virtual_size: int = 64 * TiB) -> Path:
    """A sparse VHDX of ``virtual_size`` (1 MiB blocks): its BAT region is hundreds of MiB of zeros."""
    small_vhdx(path)
    with open(path, "rb") as f:
        head = bytearray(f.read(MiB))
        meta_entry, meta_off, _ = _regions(head)[vhdx.METADATA_GUID]
        f.seek(meta_off)
        table = f.read(vhdx.METADATA_TABLE_SIZE)
    for i in range(struct.unpack_from("<H", table, 10)[0]):
        gid, off, _, _, _ = vhdx.METADATA_ENTRY.unpack_from(table, 32 + 32 * i)
        if gid == vhdx.VIRTUAL_DISK_SIZE:
            _patch(path, meta_off + off, struct.pack("<Q", virtual_size))
    ratio = vhdx.chunk_ratio(512, MiB)
    bat_len = _round(8 * vhdx.bat_entry_count(virtual_size, MiB, ratio), MiB)
    bat_off = 64 * MiB
    for base in vhdx.REGION_TABLE_OFFSETS:
        entry, _, _ = _regions(head)[vhdx.BAT_GUID]
        struct.pack_into("<QI", head, base + entry + 16, bat_off, bat_len)
        _reseal(head, base, vhdx.REGION_TABLE_SIZE)
    _patch(path, 0, bytes(head))
    with open(path, "r+b") as f:
        f.truncate(bat_off + bat_len)
    return path


# --- qcow2 -----------------------------------------------------------------------------------------------


def expanding_qcow2(path: Path, virtual_size: int, *, cluster_bits: int = 21) -> Path:
    """A qcow2 of a few MiB whose disk has a valid GPT and one ESP filling it, every ESP cluster mapped to
    the same host cluster of 0x5a bytes: a copy of the ESP expands to nearly ``virtual_size`` bytes.

    Each L1 entry has an L2 table of its own (a sound L1 never shares one); the data is what is shared.
    """
    cs = 1 << cluster_bits
    per_l2 = cs // 8
    covered = cs * per_l2
    virtual_size = _round(virtual_size, covered)
    raw = path.with_suffix(".gpt")
    with open(raw, "wb") as f:
        f.truncate(virtual_size)
    run("sgdisk", "-n", "1:2048:0", "-t", "1:ef00", "-c", "1:ESP", raw)
    with open(raw, "rb") as f:
        gpt_head = f.read(cs)
        f.seek(virtual_size - cs)
        gpt_tail = f.read(cs)
    raw.unlink()

    n_l1 = virtual_size // covered
    l1_clusters = _round(8 * n_l1, cs) // cs
    first_l2 = 1 + l1_clusters
    head_c, tail_c, pattern_c = (first_l2 + n_l1 + i for i in range(3))
    copied = 1 << 63

    def entry(cluster: int) -> int:
        return (cluster * cs) | copied

    l1 = b"".join(struct.pack(">Q", entry(first_l2 + i)) for i in range(n_l1))
    full = struct.pack(">Q", entry(pattern_c)) * per_l2
    tables = []
    for i in range(n_l1):
        table = bytearray(full)
        if i == 0:
            struct.pack_into(">Q", table, 0, entry(head_c))
        if i == n_l1 - 1:
            struct.pack_into(">Q", table, 8 * (per_l2 - 1), entry(tail_c))
        tables.append(bytes(table))
    header = struct.pack(">4sIQIIQIIQQIIQ", b"QFI\xfb", 3, 0, 0, cluster_bits, virtual_size, 0, n_l1, cs,
                         0, 0, 0, 0)  # fmt: skip
    header += struct.pack(">QQQII", 0, 0, 0, 4, 104)
    with open(path, "wb") as f:
        f.write(header.ljust(cs, b"\0"))
        f.write(l1.ljust(l1_clusters * cs, b"\0"))
        for table in tables:
            f.write(table)
        f.write(gpt_head)
        f.write(gpt_tail)
        f.write(b"\x5a" * cs)
    return path


# --- LUKS2 -----------------------------------------------------------------------------------------------


def cheap_luks_area(passphrase: bytes = b"hostile", *, tpm2_token: bool = False) -> bytes:
    """A complete LUKS2 header area from our writer, one cheap pbkdf2 keyslot, 16 KiB metadata; with
    ``tpm2_token`` a systemd-tpm2 token (fields as systemd writes them) bound to the keyslot."""
    params = LuksParams(metadata_size=16384, data_offset=2 * 16384 + 512 * 1024, digest_iterations=1000)
    area = create_header(os.urandom(64), params, [(passphrase, KdfParams.pbkdf2(1000))])
    if tpm2_token:
        token = {"type": "systemd-tpm2", "tpm2-blob": base64.b64encode(bytes(200)).decode(),
                 "tpm2-pcrs": [4, 7, 11], "tpm2-pcr-bank": "sha256", "tpm2-primary-alg": "ecc",
                 "tpm2-policy-hash": "ab" * 32, "tpm2_srk": base64.b64encode(bytes(10)).decode()}  # fmt: skip
        area = add_token(area, token, [0])[0]
    return area


def with_keyslot_kdf(area: bytes, kdf: dict[str, object]) -> bytes:
    """``area`` with keyslot 0's ``kdf`` object replaced (salt kept) and both header copies resealed."""
    meta = read_metadata(lambda off, n: area[off : off + n])
    slot = meta.json["keyslots"]["0"]
    slot["kdf"] = {**kdf, "salt": slot["kdf"]["salt"]}
    copies = build_metadata(meta)
    return copies + area[len(copies) :]
