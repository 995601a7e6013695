"""Which blocks an ext2/ext3/ext4 filesystem uses, read offline from its block bitmaps (no mount, no root).

Facts from the kernel's ext4 "Disk Layout" document (Documentation/filesystems/ext4): the superblock is at
byte 1024; groups of ``s_blocks_per_group`` blocks start at ``s_first_data_block``; the group descriptor
table starts in the block after the superblock's, ``s_desc_size`` bytes per group with the 64bit feature,
else 32; each group has a one-block bitmap, one bit per block, bit ``i`` of byte ``k`` for block ``8k+i``.
With ``flex_bg`` the bitmaps and inode tables of a group may live in another group (that group's bitmap
marks them). With ``uninit_bg``/``metadata_csum`` (the "group descriptor checksum" features) a group
flagged ``BLOCK_UNINIT`` has no bitmap on disk: its used blocks are the superblock backup, the descriptor
table and the reserved GDT blocks (if the group carries a backup) plus its own bitmaps and inode table
where they lie in it - what the kernel's ``ext4_init_block_bitmap`` computes. A group not flagged
``ITABLE_ZEROED`` has an inode table whose tail past the last used inode (``bg_itable_unused``) was never
initialised: neither the kernel nor e2fsck reads it (the kernel zeroes it in the background at the first
mount, ``ext4_init_inode_table``), so it is reported as free.

Everything is read group by group: memory is one bitmap and a list of those uninitialised inode-table
tails (16 bytes per group at most), never the disk. Any inconsistency raises :class:`Ext4MapError`
(one line); a feature whose free-space semantics this reader does not know raises
:class:`Ext4Unsupported`. Callers then treat the whole partition as used.
"""

from __future__ import annotations

import re
import struct
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from app.errors import ShieldwrightError
from app.progress import CancelToken

#: ``read(offset, length)`` within the partition; must return exactly ``length`` bytes.
Reader = Callable[[int, int], bytes]

SUPERBLOCK_OFFSET = 1024
SUPERBLOCK_SIZE = 1024
MAGIC = 0xEF53

# s_state
STATE_VALID = 0x0001
STATE_ERROR = 0x0002
# s_feature_compat
COMPAT_SPARSE_SUPER2 = 0x0200
# s_feature_incompat
INCOMPAT_COMPRESSION = 0x0001
INCOMPAT_FILETYPE = 0x0002
INCOMPAT_RECOVER = 0x0004
INCOMPAT_JOURNAL_DEV = 0x0008
INCOMPAT_META_BG = 0x0010
INCOMPAT_EXTENTS = 0x0040
INCOMPAT_64BIT = 0x0080
INCOMPAT_MMP = 0x0100
INCOMPAT_FLEX_BG = 0x0200
INCOMPAT_EA_INODE = 0x0400
INCOMPAT_DIRDATA = 0x1000
INCOMPAT_CSUM_SEED = 0x2000
INCOMPAT_LARGEDIR = 0x4000
INCOMPAT_INLINE_DATA = 0x8000
INCOMPAT_ENCRYPT = 0x10000
INCOMPAT_CASEFOLD = 0x20000
#: Incompatible features that do not change what the block bitmaps mean.
INCOMPAT_KNOWN = (
    INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_MMP | INCOMPAT_FLEX_BG
    | INCOMPAT_EA_INODE | INCOMPAT_DIRDATA | INCOMPAT_CSUM_SEED | INCOMPAT_LARGEDIR | INCOMPAT_INLINE_DATA
    | INCOMPAT_ENCRYPT | INCOMPAT_CASEFOLD
)  # fmt: skip
# s_feature_ro_compat
RO_COMPAT_SPARSE_SUPER = 0x0001
RO_COMPAT_GDT_CSUM = 0x0010
RO_COMPAT_HAS_SNAPSHOT = 0x0080
RO_COMPAT_BIGALLOC = 0x0200
RO_COMPAT_METADATA_CSUM = 0x0400
#: Read-only-compatible features that do not change what the block bitmaps mean (sparse_super,
#: large_file, btree_dir, huge_file, gdt_csum, dir_nlink, extra_isize, quota, metadata_csum, readonly,
#: project, shared_blocks, verity, orphan_present). Not: has_snapshot (0x80), bigalloc (0x200, one bit
#: per cluster), replica (0x800).
RO_COMPAT_KNOWN = 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0010 | 0x0020 | 0x0040 | 0x0100 | 0x0400 | 0x1000
RO_COMPAT_KNOWN |= 0x2000 | 0x4000 | 0x8000 | 0x10000
# bg_flags
BG_INODE_UNINIT = 0x0001
BG_BLOCK_UNINIT = 0x0002
BG_INODE_ZEROED = 0x0004

#: Group descriptors read per I/O.
GDT_READ = 1024 * 1024
#: Sanity bound on the number of groups (2^32 4 KiB blocks, the 64bit maximum, is 131072 groups; a
#: 1 KiB-block filesystem has more, smaller groups).
MAX_GROUPS = 1 << 24

_NONZERO = re.compile(rb"[^\x00]+")


class Ext4MapError(ShieldwrightError):
    """The ext2/3/4 structures are inconsistent: the free-space map cannot be trusted."""


class Ext4Unsupported(Ext4MapError):
    """A valid filesystem with a feature or state whose free-space map this reader does not use."""


@dataclass(frozen=True)
class Ext4Superblock:
    """The superblock fields the free-space map needs, checked for consistency."""

    block_size: int
    blocks_count: int
    first_data_block: int
    blocks_per_group: int
    inodes_per_group: int
    inode_size: int
    desc_size: int
    reserved_gdt_blocks: int
    compat: int
    incompat: int
    ro_compat: int
    backup_bgs: tuple[int, int]

    @property
    def groups(self) -> int:
        return -(-(self.blocks_count - self.first_data_block) // self.blocks_per_group)

    @property
    def gdt_blocks(self) -> int:
        """Blocks of the group descriptor table (each backup is as long)."""
        return -(-self.groups * self.desc_size // self.block_size)

    @property
    def itable_blocks(self) -> int:
        """Blocks of one group's inode table."""
        return -(-self.inodes_per_group * self.inode_size // self.block_size)

    @property
    def has_group_csum(self) -> bool:
        """uninit_bg or metadata_csum: only then do BLOCK_UNINIT and bg_itable_unused mean anything."""
        return bool(self.ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM))

    @property
    def size_bytes(self) -> int:
        return self.blocks_count * self.block_size

    def group_start(self, group: int) -> int:
        return self.first_data_block + group * self.blocks_per_group

    def has_super(self, group: int) -> bool:
        """Whether ``group`` holds a superblock backup (``ext4_bg_has_super``; over-inclusive is safe)."""
        if group == 0:
            return True
        if self.compat & COMPAT_SPARSE_SUPER2:
            return group in self.backup_bgs
        if group == 1 or not self.ro_compat & RO_COMPAT_SPARSE_SUPER:
            return True
        if not group & 1:
            return False
        return any(_is_power(group, base) for base in (3, 5, 7))


@dataclass(frozen=True)
class GroupDescriptor:
    group: int
    block_bitmap: int
    inode_bitmap: int
    inode_table: int
    flags: int
    itable_unused: int


def _is_power(n: int, base: int) -> bool:
    while n > 1 and n % base == 0:
        n //= base
    return n == 1


def parse_superblock(raw: bytes, partition_size: int) -> Ext4Superblock:
    """The superblock in ``raw`` (the 1024 bytes at partition byte 1024), checked against ``partition_size``.

    Raises :class:`Ext4MapError` when it is not a usable ext2/3/4 superblock, :class:`Ext4Unsupported`
    for features or states whose block bitmaps cannot be taken as they are.
    """
    if len(raw) < SUPERBLOCK_SIZE:
        raise Ext4MapError("the ext4 superblock is cut short")
    (magic, state) = struct.unpack_from("<HH", raw, 0x38)
    if magic != MAGIC:
        raise Ext4MapError("no ext2/3/4 superblock (bad magic)")
    (_inodes, blocks_lo, _r, _free_b, _free_i, first_data, log_block, log_cluster, bpg, _cpg, ipg) = (
        struct.unpack_from("<11I", raw, 0)
    )
    rev = struct.unpack_from("<I", raw, 0x4C)[0]
    inode_size = struct.unpack_from("<H", raw, 0x58)[0] if rev >= 1 else 128
    compat, incompat, ro_compat = struct.unpack_from("<III", raw, 0x5C)
    reserved_gdt = struct.unpack_from("<H", raw, 0xCE)[0]
    desc_size_field = struct.unpack_from("<H", raw, 0xFE)[0]
    blocks_hi = struct.unpack_from("<I", raw, 0x150)[0]
    backup_bgs = struct.unpack_from("<II", raw, 0x24C)

    if incompat & INCOMPAT_JOURNAL_DEV:
        raise Ext4Unsupported("an external ext4 journal, not a filesystem")
    if incompat & INCOMPAT_RECOVER:
        raise Ext4Unsupported(
            "the ext4 journal needs recovery (not cleanly unmounted): its bitmaps may be out of date"
        )
    if not state & STATE_VALID or state & STATE_ERROR:
        raise Ext4Unsupported("the ext4 filesystem is not marked clean: its bitmaps may be out of date")
    if incompat & INCOMPAT_META_BG:
        raise Ext4Unsupported("ext4 meta_bg descriptor layout is not read")
    unknown = incompat & ~INCOMPAT_KNOWN
    if unknown:
        raise Ext4Unsupported(f"ext4 incompatible feature bits {unknown:#x} are not known")
    if ro_compat & RO_COMPAT_BIGALLOC or log_cluster != log_block:
        raise Ext4Unsupported("ext4 bigalloc (cluster bitmaps) is not read")
    unknown = ro_compat & ~RO_COMPAT_KNOWN
    if unknown:
        raise Ext4Unsupported(f"ext4 read-only-compatible feature bits {unknown:#x} are not known")

    if log_block > 6:
        raise Ext4MapError(f"ext4 block size 2^{10 + log_block} is out of range")
    block_size = 1024 << log_block
    blocks = blocks_lo | (blocks_hi << 32 if incompat & INCOMPAT_64BIT else 0)
    if first_data_block_expected(block_size) != first_data:
        raise Ext4MapError(f"ext4 first data block {first_data} does not match the block size {block_size}")
    if not 8 <= bpg <= 8 * block_size or bpg % 8:
        raise Ext4MapError(f"ext4 blocks per group {bpg} is out of range")
    if not 1 <= ipg <= 8 * block_size:
        raise Ext4MapError(f"ext4 inodes per group {ipg} is out of range")
    if inode_size < 128 or inode_size > block_size or inode_size & (inode_size - 1):
        raise Ext4MapError(f"ext4 inode size {inode_size} is invalid")
    if incompat & INCOMPAT_64BIT:
        desc_size = desc_size_field
        if desc_size < 64 or desc_size > 1024 or desc_size & (desc_size - 1):
            raise Ext4MapError(f"ext4 group descriptor size {desc_size} is invalid")
    else:
        desc_size = 32
    if blocks <= first_data:
        raise Ext4MapError(f"ext4 block count {blocks} is too small")
    if blocks * block_size > partition_size:
        raise Ext4MapError(
            f"the ext4 filesystem ({blocks * block_size} bytes) is larger than its partition "
            f"({partition_size} bytes)"
        )
    sb = Ext4Superblock(
        block_size=block_size,
        blocks_count=blocks,
        first_data_block=first_data,
        blocks_per_group=bpg,
        inodes_per_group=ipg,
        inode_size=inode_size,
        desc_size=desc_size,
        reserved_gdt_blocks=reserved_gdt,
        compat=compat,
        incompat=incompat,
        ro_compat=ro_compat,
        backup_bgs=(int(backup_bgs[0]), int(backup_bgs[1])),
    )
    if sb.groups > MAX_GROUPS:
        raise Ext4MapError(f"ext4 group count {sb.groups} is out of range")
    if sb.first_data_block + 1 + sb.gdt_blocks > blocks:
        raise Ext4MapError("the ext4 group descriptor table runs past the end of the filesystem")
    if sb.itable_blocks > bpg:
        raise Ext4MapError("an ext4 inode table is larger than a block group")
    return sb


def first_data_block_expected(block_size: int) -> int:
    """Block 1 holds the superblock on 1 KiB-block filesystems; block 0 otherwise."""
    return 1 if block_size == 1024 else 0


def read_superblock(read: Reader, partition_size: int) -> Ext4Superblock:
    if partition_size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE:
        raise Ext4MapError("the partition is too small for an ext2/3/4 superblock")
    return parse_superblock(read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE), partition_size)


def descriptors(
    read: Reader, sb: Ext4Superblock, cancel: CancelToken | None = None
) -> Iterator[GroupDescriptor]:
    """Every group's descriptor, in group order, read :data:`GDT_READ` bytes at a time and checked."""
    table = (sb.first_data_block + 1) * sb.block_size
    per_read = max(1, GDT_READ // sb.desc_size)
    wide = sb.desc_size >= 64
    blocks = sb.blocks_count
    for first in range(0, sb.groups, per_read):
        if cancel is not None:
            cancel.check()
        count = min(per_read, sb.groups - first)
        raw = read(table + first * sb.desc_size, count * sb.desc_size)
        for i in range(count):
            at = i * sb.desc_size
            bb, ib, it, _fb, _fi, _dirs, flags, _exclude, _bbc, _ibc, unused_lo = struct.unpack_from(
                "<IIIHHHHIHHH", raw, at
            )
            unused = unused_lo
            if wide:
                bb_hi, ib_hi, it_hi = struct.unpack_from("<III", raw, at + 0x20)
                unused |= struct.unpack_from("<H", raw, at + 0x32)[0] << 16
                bb, ib, it = bb | bb_hi << 32, ib | ib_hi << 32, it | it_hi << 32
            group = first + i
            for what, block, length in (("block bitmap", bb, 1), ("inode bitmap", ib, 1),
                                        ("inode table", it, sb.itable_blocks)):  # fmt: skip
                if block < sb.first_data_block or block + length > blocks:
                    raise Ext4MapError(
                        f"ext4 group {group}'s {what} at block {block} is outside the filesystem"
                    )
            yield GroupDescriptor(group, bb, ib, it, flags, unused)


def _uninit_itable_tail(sb: Ext4Superblock, d: GroupDescriptor) -> tuple[int, int] | None:
    """``(first block, count)`` of the part of ``d``'s inode table that was never initialised, if any.

    Only with the group checksum features and without ``ITABLE_ZEROED``: the kernel then zeroes exactly
    these blocks itself (``ext4_init_inode_table``) and nothing reads them before. An implausible
    ``bg_itable_unused`` (more than the group's inodes) means no tail: the whole table counts as used.
    """
    if not sb.has_group_csum or d.flags & BG_INODE_ZEROED:
        return None
    if d.itable_unused > sb.inodes_per_group:
        return None
    used_inodes = sb.inodes_per_group - d.itable_unused
    per_block = sb.block_size // sb.inode_size
    used_blocks = -(-used_inodes // per_block)
    if used_blocks >= sb.itable_blocks:
        return None
    return (d.inode_table + used_blocks, sb.itable_blocks - used_blocks)


def _range_mask(lo: int, hi: int) -> int:
    return ((1 << (hi - lo)) - 1) << lo if hi > lo else 0


def _runs(bits: int, nbits: int) -> Iterator[tuple[int, int]]:
    """``(first, count)`` runs of set bits of ``bits`` (bit i = block i); exact at every run's edges, a run
    may take in a few free blocks that share bitmap bytes with used ones inside it (a safe superset)."""
    data = bits.to_bytes(-(-nbits // 8), "little")
    for m in _NONZERO.finditer(data):
        a, b = m.span()
        first = 8 * a + ((data[a] & -data[a]).bit_length() - 1)
        last = 8 * (b - 1) + data[b - 1].bit_length()
        yield (first, last - first)


def used_blocks(
    read: Reader, partition_size: int, cancel: CancelToken | None = None
) -> Iterator[tuple[int, int]]:
    """``(first block, count)`` runs of the blocks the filesystem uses, ascending and merged.

    Includes the blocks before ``s_first_data_block`` (the boot block of 1 KiB-block filesystems), every
    block a group's bitmap marks, each group's own metadata, and the superblock backups and descriptor
    tables; excludes never-initialised inode-table tails (see the module docstring). Raises
    :class:`Ext4MapError` as soon as something does not add up (nothing yielded is then to be used).
    """
    sb = read_superblock(read, partition_size)
    tails_start, tails_len = array("Q"), array("Q")
    for d in descriptors(read, sb, cancel):
        tail = _uninit_itable_tail(sb, d)
        if tail is not None:
            tails_start.append(tail[0])
            tails_len.append(tail[1])
    order = sorted(range(len(tails_start)), key=tails_start.__getitem__) if _unsorted(tails_start) else None
    if order is not None:
        tails_start = array("Q", (tails_start[i] for i in order))
        tails_len = array("Q", (tails_len[i] for i in order))
    yield from _merge(_group_runs(read, sb, tails_start, tails_len, cancel))


def _unsorted(values: array[int]) -> bool:
    return any(values[i] > values[i + 1] for i in range(len(values) - 1))


def _group_runs(
    read: Reader,
    sb: Ext4Superblock,
    tails_start: array[int],
    tails_len: array[int],
    cancel: CancelToken | None,
) -> Iterator[tuple[int, int]]:
    if sb.first_data_block:
        yield (0, sb.first_data_block)
    base_meta = 1 + sb.gdt_blocks + sb.reserved_gdt_blocks
    t = 0  # first tail not wholly before the current group
    for d in descriptors(read, sb, cancel):
        g = d.group
        gs = sb.group_start(g)
        n = min(sb.blocks_per_group, sb.blocks_count - gs)
        ge = gs + n
        if sb.has_group_csum and d.flags & BG_BLOCK_UNINIT:
            bits = 0
        else:
            raw = read(d.block_bitmap * sb.block_size, -(-n // 8))
            bits = int.from_bytes(raw, "little") & ((1 << n) - 1)
        if sb.has_super(g):
            bits |= _range_mask(0, min(n, base_meta))
        for block, length in ((d.block_bitmap, 1), (d.inode_bitmap, 1), (d.inode_table, sb.itable_blocks)):
            lo, hi = max(block, gs), min(block + length, ge)
            if lo < hi:
                bits |= _range_mask(lo - gs, hi - gs)
        while t < len(tails_start) and tails_start[t] + tails_len[t] <= gs:
            t += 1
        i = t
        while i < len(tails_start) and tails_start[i] < ge:
            lo, hi = max(tails_start[i], gs), min(tails_start[i] + tails_len[i], ge)
            if lo < hi:
                bits &= ~_range_mask(lo - gs, hi - gs)
            i += 1
        for first, count in _runs(bits, n):
            yield (gs + first, count)


def _merge(runs: Iterator[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    pending: tuple[int, int] | None = None
    for start, count in runs:
        if pending is not None and pending[0] + pending[1] >= start:
            pending = (pending[0], max(pending[0] + pending[1], start + count) - pending[0])
            continue
        if pending is not None:
            yield pending
        pending = (start, count)
    if pending is not None:
        yield pending


def used_byte_ranges(
    read: Reader, partition_size: int, cancel: CancelToken | None = None
) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` byte ranges of the partition the filesystem uses or may use: :func:`used_blocks`
    in bytes, plus everything after the filesystem's end (not the filesystem's to give away)."""
    sb = read_superblock(read, partition_size)
    bs = sb.block_size
    for first, count in used_blocks(read, partition_size, cancel):
        yield (first * bs, count * bs)
    if sb.size_bytes < partition_size:
        yield (sb.size_bytes, partition_size - sb.size_bytes)
