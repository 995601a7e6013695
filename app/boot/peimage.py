"""PE section tables for UKIs: read sections as the loader maps them, and append sections the ukify way.

Offset validation is :func:`app.signing.pe.parse_layout`'s job (every problem a PeFormatError); this
module adds what building a UKI needs on top: alignments, SizeOfImage, characteristics, and a writer
(:func:`append_sections`).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from app.boot.errors import UkiError
from app.errors import PeFormatError
from app.signing.pe import PE32_PLUS_MAGIC, parse_layout, pe_checksum

SCN_CNT_CODE = 0x00000020
SCN_CNT_INITIALIZED_DATA = 0x00000040
SCN_MEM_READ = 0x40000000
FILE_LOCAL_SYMS_STRIPPED = 0x0008
DEBUG_DIR = 6
_SECTION = struct.Struct("<8sIIIIIIHHI")
#: Most bytes all sections together may map beyond their file data (the zero fill up to VirtualSize).
#: ukify writes VirtualSize = data length (no fill); systemd-stub's and a bzImage's own sections need a few
#: KiB to a few MiB of .bss. VirtualSize is a u32 per section, so without a bound a 1.5 KB file could ask
#: every reader to hash (or allocate) 96 x 4 GiB of zeros.
MAX_ZERO_FILL = 64 * 1024 * 1024
_ZEROS = bytes(1024 * 1024)
#: PE/COFF optional header: FileAlignment "should be a power of 2 between 512 and 64 K, inclusive";
#: a SectionAlignment below the page size must equal FileAlignment.
_MIN_FILE_ALIGNMENT, _MAX_FILE_ALIGNMENT, _PAGE_SIZE = 512, 64 * 1024, 4096
#: Largest value of the u32 header fields (addresses, sizes, file offsets) the writer fills in.
_U32_MAX = 0xFFFFFFFF
_BROKEN_STUB_HINT = "the stub is damaged or not a real systemd-stub; use the one systemd installs"


def round_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment if alignment > 1 else value


@dataclass(frozen=True)
class PeSection:
    """One section header, as the loader sees it."""

    name: str
    virtual_address: int
    virtual_size: int
    pointer_to_raw_data: int
    size_of_raw_data: int
    characteristics: int
    header: bytes  # the 40 raw header bytes


@dataclass(frozen=True)
class MappedSection:
    """A section's bytes as the loader maps them - file data, then zeros up to VirtualSize - without
    materialising the zeros (they are hashed in 1 MiB pieces)."""

    raw: bytes  # the file data inside VirtualSize
    zero_fill: int

    def __len__(self) -> int:
        return len(self.raw) + self.zero_fill

    def digest(self, algorithm: str) -> bytes:
        """``hashlib.new(algorithm, bytes(self)).digest()``, streamed."""
        h = hashlib.new(algorithm, self.raw)
        zeros, left = memoryview(_ZEROS), self.zero_fill
        while left:
            n = min(left, len(zeros))
            h.update(zeros[:n])
            left -= n
        return h.digest()

    def to_bytes(self) -> bytes:
        return self.raw + bytes(self.zero_fill) if self.zero_fill else self.raw


@dataclass(frozen=True)
class PeImage:
    """The parts of a PE image's headers a section writer needs (offsets are file offsets)."""

    data: bytes
    coff: int
    optional: int
    section_table: int
    magic: int
    machine: int
    section_alignment: int
    file_alignment: int
    size_of_image: int
    size_of_headers: int
    symbol_table: int
    n_symbols: int
    n_dirs: int
    sections: tuple[PeSection, ...]
    signed: bool

    def section(self, name: str) -> PeSection | None:
        """The first section called ``name`` (the stub's own lookup also takes the first)."""
        return next((s for s in self.sections if s.name == name), None)

    def mapped(self, section: PeSection) -> MappedSection:
        """The section as mapped (VirtualSize bytes, zero-filled past SizeOfRawData), zeros not allocated."""
        take = min(section.virtual_size, section.size_of_raw_data)
        start = section.pointer_to_raw_data
        raw = self.data[start : start + take] if take else b""
        return MappedSection(bytes(raw), section.virtual_size - len(raw))

    def data_of(self, section: PeSection) -> bytes:
        """The section as mapped: VirtualSize bytes, zero-filled past SizeOfRawData (as the stub measures).

        At most the file size plus :data:`MAX_ZERO_FILL` (``read_pe`` refuses more); prefer
        :meth:`mapped` where the zeros need not exist."""
        return self.mapped(section).to_bytes()

    def file_data_of(self, section: PeSection) -> bytes:
        """The section's file data inside VirtualSize: its mapped bytes without the zero fill."""
        return self.mapped(section).raw

    def data_directory(self, index: int) -> tuple[int, int]:
        if index >= self.n_dirs:
            return 0, 0
        fixed = 112 if self.magic == PE32_PLUS_MAGIC else 96
        return struct.unpack_from("<II", self.data, self.optional + fixed + 8 * index)


def read_pe(data: bytes) -> PeImage:
    """Parse and validate ``data`` (PeFormatError when it is not a sound PE image)."""
    layout = parse_layout(data)
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    coff = e_lfanew + 4
    _, n_sections, _, symtab, n_symbols, opt_size, _ = struct.unpack_from("<HHIIIHH", data, coff)
    optional = coff + 20
    section_alignment, file_alignment = struct.unpack_from("<II", data, optional + 32)
    size_of_image, size_of_headers = struct.unpack_from("<II", data, optional + 56)
    dirs_at = 108 if layout.magic == PE32_PLUS_MAGIC else 92
    (n_dirs,) = struct.unpack_from("<I", data, optional + dirs_at)
    table = optional + opt_size
    sections = []
    for i in range(n_sections):
        header = data[table + 40 * i : table + 40 * (i + 1)]
        name_b, vsize, va, raw_size, raw_ptr, _, _, _, _, chars = _SECTION.unpack(header)
        name = name_b.rstrip(b"\0").decode("ascii", errors="replace")
        sections.append(PeSection(name, va, vsize, raw_ptr, raw_size, chars, bytes(header)))
    _check_zero_fill(sections)
    return PeImage(
        data=data,
        coff=coff,
        optional=optional,
        section_table=table,
        magic=layout.magic,
        machine=layout.machine,
        section_alignment=section_alignment or 1,
        file_alignment=file_alignment or 1,
        size_of_image=size_of_image,
        size_of_headers=size_of_headers,
        symbol_table=symtab,
        n_symbols=n_symbols,
        n_dirs=n_dirs,
        sections=tuple(sections),
        signed=bool(layout.cert_table_size),
    )


def _check_zero_fill(sections: Sequence[PeSection]) -> None:
    """Refuse sections that together map more than :data:`MAX_ZERO_FILL` zeros past their file data."""
    fill = [(s, max(0, s.virtual_size - s.size_of_raw_data)) for s in sections]
    if sum(n for _, n in fill) <= MAX_ZERO_FILL:
        return
    worst, _ = max(fill, key=lambda item: item[1])
    raise PeFormatError(
        f"section {worst.name!r} maps {worst.virtual_size} bytes but holds only {worst.size_of_raw_data} "
        f"in the file; the sections' zero fill exceeds the {MAX_ZERO_FILL // 2**20} MiB a UKI, stub or "
        "kernel can need",
        "the file is damaged or hostile; build the UKI again (ukify sets VirtualSize to the data length)",
    )


@dataclass(frozen=True)
class NewSection:
    name: str
    data: bytes
    code: bool = False  # .linux: ukify marks it CNT_CODE ("old kernels using EFI handover run inline")


@dataclass(frozen=True)
class _Slot:
    name: str
    virtual_address: int
    virtual_size: int
    data: bytes  # raw contents (unpadded); empty for sections without file data
    characteristics: int
    template: bytes | None  # the stub's header, for the fields we do not rewrite
    original_pointer: int | None = None


def append_sections(
    stub: PeImage, new: Sequence[NewSection], *, replace_existing: Collection[str] = ()
) -> bytes:
    """A copy of ``stub`` with ``new`` sections added, unsigned and with a correct CheckSum.

    A name the stub already has is an error unless it is in ``replace_existing``: then the stub's section
    gets the new contents, in place when they fit before the next section's virtual address, else the
    stub's header is dropped and the section is appended like a new one.

    Placement follows ukify's ``pe_add_sections``: file offsets aligned to FileAlignment, VirtualAddress to
    SectionAlignment after the highest section, VirtualSize the exact data length (the stub measures
    VirtualSize bytes), SizeOfImage recomputed, a trailing COFF symbol table dropped. Unlike ukify, which
    edits in place, the file is laid out again (headers, then each section's data in table order): only
    file offsets move, never a virtual address, so the headers may grow and a replaced section that would
    overlap the next one in memory moves to the end (the 252 stub's ``.sbat`` has only 256 bytes before
    ``.sdmagic``; ukify writes past that and lets the loader clobber the tail).
    """
    if stub.signed:
        raise UkiError("the stub is signed; refusing to add sections to it",
                       "use the unsigned stub: the finished UKI is signed as a whole")  # fmt: skip
    check_stub_layout(stub)
    sa = stub.section_alignment
    slots: list[_Slot | None] = [
        _Slot(s.name, s.virtual_address, s.virtual_size,
              stub.data[s.pointer_to_raw_data : s.pointer_to_raw_data + s.size_of_raw_data],
              s.characteristics, s.header, s.pointer_to_raw_data if s.size_of_raw_data else None)
        for s in stub.sections
    ]  # fmt: skip
    n_stub = len(slots)
    seen: set[str] = set()
    appended: list[NewSection] = []
    for sec in new:
        if not sec.name.isascii() or not sec.name.isprintable() or not 0 < len(sec.name) <= 8:
            raise UkiError(f"bad section name {sec.name!r}", "names are 1-8 printable ASCII characters")
        if sec.name in seen:
            raise UkiError(f"section {sec.name} given twice", "give each section once")
        seen.add(sec.name)
        index = next((i for i, s in enumerate(slots[:n_stub]) if s is not None and s.name == sec.name), None)
        if index is None:
            appended.append(sec)
            continue
        if sec.name not in replace_existing:
            raise UkiError(f"the stub already has a {sec.name} section",
                           f"replace it explicitly, or use a stub without {sec.name}")  # fmt: skip
        old = slots[index]
        assert old is not None
        room = _next_address(slots, old) - old.virtual_address
        if len(sec.data) <= room:
            slots[index] = replace(old, virtual_size=len(sec.data), data=sec.data)
        else:
            slots[index] = None
            appended.append(sec)
    kept = [s for s in slots if s is not None]
    for sec in appended:
        end = max((s.virtual_address + (s.virtual_size or len(s.data)) for s in kept), default=0)
        chars = SCN_MEM_READ | (SCN_CNT_CODE if sec.code else SCN_CNT_INITIALIZED_DATA)
        kept.append(_Slot(sec.name, round_up(end, sa), len(sec.data), sec.data, chars, None))
    return _write(stub, kept, added=[s for s in kept if s.template is None])


def check_stub_layout(stub: PeImage) -> None:
    """Refuse a stub whose alignments or section addresses the writer cannot lay out in bounded memory.

    :func:`parse_layout` only checks file offsets; the writer also pads the headers and every section to
    FileAlignment and places new sections after the highest address. A 1 KiB stub claiming a FileAlignment
    of 1 GiB would make it allocate a gigabyte per section, one with a section near 4 GiB would push ours
    past what the 32-bit header fields hold. Bounds from the PE/COFF specification (optional header,
    Windows-specific fields): FileAlignment a power of two from 512 to 64 KiB; SectionAlignment a power of
    two at least FileAlignment, and equal to it when below the 4 KiB page size; every section inside
    SizeOfImage (the image's size in memory).
    """
    fa, sa = stub.file_alignment, stub.section_alignment
    if not (_power_of_two(fa) and _MIN_FILE_ALIGNMENT <= fa <= _MAX_FILE_ALIGNMENT):
        raise UkiError(f"the stub's FileAlignment {fa:#x} is not a power of two from 512 to 64 KiB (PE/COFF)",
                       _BROKEN_STUB_HINT)  # fmt: skip
    if not (_power_of_two(sa) and sa >= fa and (sa >= _PAGE_SIZE or sa == fa)):
        raise UkiError(f"the stub's SectionAlignment {sa:#x} does not fit its FileAlignment {fa:#x}",
                       _BROKEN_STUB_HINT)  # fmt: skip
    for s in stub.sections:
        holds = bool(s.virtual_size or s.size_of_raw_data)
        low = holds and s.virtual_address < stub.size_of_headers  # would overlap the mapped headers
        if low or s.virtual_address + s.virtual_size > stub.size_of_image:
            raise UkiError(
                f"the stub's section {s.name!r} at {s.virtual_address:#x} ({s.virtual_size} bytes) lies "
                f"outside its image (headers {stub.size_of_headers:#x}, SizeOfImage {stub.size_of_image:#x})",
                _BROKEN_STUB_HINT,
            )


def _power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _next_address(slots: Sequence[_Slot | None], slot: _Slot) -> int:
    later = [s.virtual_address for s in slots if s is not None and s.virtual_address > slot.virtual_address]
    return min(later, default=slot.virtual_address + max(slot.virtual_size, len(slot.data)))


def _write(stub: PeImage, slots: list[_Slot], added: list[_Slot]) -> bytes:
    fa, sa = stub.file_alignment, stub.section_alignment
    table_end = stub.section_table + 40 * len(slots)
    size_of_headers = max(round_up(stub.size_of_headers, fa), round_up(table_end, fa))
    lowest = min((s.virtual_address for s in slots if s.virtual_size or s.data), default=size_of_headers)
    if size_of_headers > lowest:
        raise UkiError(f"not enough header space in the stub for {len(slots)} sections",
                       "use a stub with fewer sections or leave out optional sections")  # fmt: skip

    pointers: list[int] = []
    pos = size_of_headers
    for s in slots:
        if s.data:
            ptr = round_up(pos, fa)
            pointers.append(ptr)
            pos = ptr + round_up(len(s.data), fa)
        else:
            pointers.append(0)
    # Addresses and file offsets are u32 fields (PE/COFF section table, SizeOfImage): refuse a layout
    # that does not fit before any byte is allocated for it.
    image_end = round_up(
        max((s.virtual_address + (s.virtual_size or len(s.data)) for s in slots), default=0), sa
    )
    if image_end > _U32_MAX or pos > _U32_MAX:
        raise UkiError(f"the UKI would not fit the 4 GiB a PE image can address (it would end at "
                       f"{image_end:#x} in memory, {pos:#x} in the file)",
                       "use a stub whose sections start low (as systemd's do) and smaller parts")  # fmt: skip
    _, debug_size = stub.data_directory(DEBUG_DIR)
    moved = any(s.original_pointer not in (None, p) for s, p in zip(slots, pointers, strict=True))
    if debug_size and moved:
        raise UkiError("the stub has a debug directory with file offsets that would have to move",
                       "use a stub without debug information (as systemd installs it)")  # fmt: skip

    out = bytearray(size_of_headers)
    out[: stub.size_of_headers] = stub.data[: min(stub.size_of_headers, size_of_headers)]
    out[stub.section_table : size_of_headers] = bytes(size_of_headers - stub.section_table)
    for i, (s, ptr) in enumerate(zip(slots, pointers, strict=True)):
        relocs, n_relocs = 0, 0
        if s.template is not None:
            _, _, _, _, _, relocs, _, n_relocs, _, _ = _SECTION.unpack(s.template)
        header = _SECTION.pack(s.name.encode(), s.virtual_size, s.virtual_address,
                               round_up(len(s.data), fa) if s.data else 0, ptr,
                               relocs, 0, n_relocs, 0, s.characteristics)  # fmt: skip
        out[stub.section_table + 40 * i : stub.section_table + 40 * (i + 1)] = header
    coff, opt = stub.coff, stub.optional
    struct.pack_into("<H", out, coff + 2, len(slots))
    if stub.symbol_table or stub.n_symbols:
        struct.pack_into("<II", out, coff + 8, 0, 0)
        (chars,) = struct.unpack_from("<H", out, coff + 18)
        struct.pack_into("<H", out, coff + 18, chars | FILE_LOCAL_SYMS_STRIPPED)
    (initialized,) = struct.unpack_from("<I", out, opt + 8)
    initialized = min(initialized + sum(s.virtual_size for s in added), 0xFFFFFFFF)
    struct.pack_into("<I", out, opt + 8, initialized)
    struct.pack_into("<II", out, opt + 56, image_end, size_of_headers)

    for s, ptr in zip(slots, pointers, strict=True):
        if not s.data:
            continue
        out += bytes(ptr - len(out))
        out += s.data
        out += bytes(-len(s.data) % fa)
    checksum_at = opt + 64
    struct.pack_into("<I", out, checksum_at, 0)
    struct.pack_into("<I", out, checksum_at, pe_checksum(bytes(out), checksum_at))
    result = bytes(out)
    parse_layout(result)  # our own output must pass the same validation as any input
    return result
