"""PE/COFF layout: just the fields Authenticode needs, parsed and validated by hand.

Why not pefile alone: pefile is forgiving by design (it parses malware), warns instead of failing, and
can raise assorted exceptions on hostile input. A signer must refuse what firmware would hash
differently, so this module checks every offset it later slices with and turns every problem into
:class:`PeFormatError`. The checksum is computed here too, with a one-line modular trick instead of
pefile's per-dword loop (a 14 MiB kernel in milliseconds); tests compare it against pefile.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from app.errors import PeFormatError

PE32_MAGIC, PE32_PLUS_MAGIC = 0x10B, 0x20B
#: Index of the Certificate Table ("security") data directory.
SECURITY_DIR = 4
WIN_CERT_REVISION_2_0 = 0x0200
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002
MAX_SECTIONS = 96  # the PE/COFF specification's limit (and the Windows loader's)


def _bad(message: str) -> PeFormatError:
    return PeFormatError(message, "the file is not a valid PE/COFF (EFI) image, or it is truncated")


@dataclass(frozen=True)
class Section:
    name: str
    virtual_address: int
    virtual_size: int
    pointer_to_raw_data: int
    size_of_raw_data: int


@dataclass(frozen=True)
class WinCertificate:
    """One WIN_CERTIFICATE entry of the attribute certificate table."""

    offset: int  # file offset of the entry
    revision: int
    cert_type: int
    data: bytes  # bCertificate (for PKCS_SIGNED_DATA: DER PKCS#7, possibly zero-padded by some signers)

    def encode(self) -> bytes:
        """The entry as stored: header + data, zero-padded to 8 bytes (dwLength stays unpadded)."""
        raw = struct.pack("<IHH", 8 + len(self.data), self.revision, self.cert_type) + self.data
        return raw + b"\0" * (-len(raw) % 8)


@dataclass(frozen=True)
class PeLayout:
    """Offsets of everything Authenticode hashes or rewrites, validated against the file size."""

    file_size: int
    machine: int
    magic: int
    checksum_offset: int
    security_entry_offset: int | None  # None when NumberOfRvaAndSizes <= 4
    size_of_headers: int
    sections: tuple[Section, ...]
    cert_table_offset: int  # 0 when unsigned
    cert_table_size: int

    @property
    def signed_end(self) -> int:
        """Where the image proper ends: the start of the certificate table, or the file end."""
        return self.cert_table_offset if self.cert_table_size else self.file_size


def parse_layout(data: bytes) -> PeLayout:
    """Validate the headers and section table of a PE image; PeFormatError on anything amiss."""
    size = len(data)
    if size < 64:
        raise _bad(f"file too short for a PE image ({size} bytes)")
    if data[:2] != b"MZ":
        raise _bad("no MZ signature: not a PE/COFF image")
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    if e_lfanew < 4 or e_lfanew + 24 > size:
        raise _bad(f"PE header offset {e_lfanew:#x} lies outside the file")
    if data[e_lfanew : e_lfanew + 4] != b"PE\0\0":
        raise _bad("no PE signature at the offset the DOS header gives")
    coff = e_lfanew + 4
    machine, n_sections, _, _, _, opt_size, _ = struct.unpack_from("<HHIIIHH", data, coff)
    if n_sections > MAX_SECTIONS:
        raise _bad(f"{n_sections} sections (at most {MAX_SECTIONS} are allowed)")
    oh = coff + 20
    if opt_size < 2 or oh + opt_size > size:
        raise _bad("the optional header is missing or extends beyond the end of the file")
    (magic,) = struct.unpack_from("<H", data, oh)
    if magic == PE32_MAGIC:
        fixed, dirs_at = 96, 92
    elif magic == PE32_PLUS_MAGIC:
        fixed, dirs_at = 112, 108
    else:
        raise _bad(f"unknown optional header magic {magic:#x}")
    if opt_size < fixed:
        raise _bad(f"optional header is {opt_size} bytes, too short for its magic")
    (size_of_headers,) = struct.unpack_from("<I", data, oh + 60)
    (n_dirs,) = struct.unpack_from("<I", data, oh + dirs_at)
    if n_dirs > 16 or fixed + 8 * n_dirs > opt_size:
        raise _bad(f"{n_dirs} data directories do not fit the optional header")
    sec_table = oh + opt_size
    sec_end = sec_table + 40 * n_sections
    if sec_end > size:
        raise _bad("the section table extends beyond the end of the file")
    if size_of_headers > size:
        raise _bad("SizeOfHeaders extends beyond the end of the file")
    if size_of_headers < sec_end:
        raise _bad("SizeOfHeaders ends inside the section table")

    security_entry = None
    ct_off = ct_size = 0
    if n_dirs > SECURITY_DIR:
        security_entry = oh + fixed + 8 * SECURITY_DIR
        ct_off, ct_size = struct.unpack_from("<II", data, security_entry)
        if ct_size == 0 and ct_off == 0:
            pass
        elif ct_size == 0 or ct_off == 0:
            raise _bad(f"inconsistent certificate table entry (offset {ct_off:#x}, size {ct_size})")
        elif ct_off + ct_size > size:
            raise _bad("the certificate table extends beyond the end of the file")
        elif ct_off % 8:
            raise _bad(f"the certificate table at {ct_off:#x} is not 8-byte aligned")
        elif ct_off + ct_size != size:
            raise _bad("the certificate table is not at the end of the file")
        elif ct_off < size_of_headers:
            raise _bad("the certificate table overlaps the headers")
    image_end = ct_off if ct_size else size

    sections = []
    for i in range(n_sections):
        raw = data[sec_table + 40 * i : sec_table + 40 * (i + 1)]
        name_b, vsize, va, raw_size, raw_ptr = struct.unpack_from("<8sIIII", raw)
        name = name_b.rstrip(b"\0").decode("ascii", errors="replace")
        if raw_size:
            if raw_ptr < size_of_headers:
                raise _bad(f"section {name!r} overlaps the headers (raw data at {raw_ptr:#x})")
            if raw_ptr + raw_size > image_end:
                where = (
                    "the certificate table"
                    if ct_size and raw_ptr + raw_size <= size
                    else "the end of the file"
                )
                raise _bad(f"section {name!r} extends beyond {where}")
        sections.append(Section(name, va, vsize, raw_ptr, raw_size))
    return PeLayout(size, machine, magic, oh + 64, security_entry, size_of_headers, tuple(sections),
                    ct_off, ct_size)  # fmt: skip


def certificate_entries(data: bytes, layout: PeLayout) -> list[WinCertificate]:
    """The WIN_CERTIFICATE entries of the certificate table (each 8-byte aligned), in file order."""
    entries = []
    pos, end = layout.cert_table_offset, layout.cert_table_offset + layout.cert_table_size
    while pos < end:
        if end - pos < 8:
            if any(data[pos:end]):
                raise _bad("garbage after the last certificate table entry")
            break
        length, revision, cert_type = struct.unpack_from("<IHH", data, pos)
        if length < 8 or pos + length > end:
            raise _bad(f"certificate table entry at {pos:#x} has an impossible length {length}")
        entries.append(WinCertificate(pos, revision, cert_type, bytes(data[pos + 8 : pos + length])))
        pos += length + (-length % 8)
    return entries


def pe_checksum(data: bytes, checksum_offset: int) -> int:
    """The PE CheckSum (imagehlp's CheckSumMappedFile): 16-bit one's-complement sum + file length.

    The one's-complement sum of little-endian 16-bit words equals the whole file read as one little-endian
    integer modulo 0xFFFF (2**16 ≡ 1), with 0xFFFF standing for a non-zero multiple. The CheckSum field
    itself counts as zero.
    """
    buf = bytearray(data)
    buf[checksum_offset : checksum_offset + 4] = b"\0\0\0\0"
    value = int.from_bytes(buf, "little")
    folded = value % 0xFFFF
    if folded == 0 and value:
        folded = 0xFFFF
    return (folded + len(data)) & 0xFFFFFFFF
