"""Write a :class:`DiskImage` out as raw, dynamic VHDX or fixed VHD - atomically.

The output goes to a hidden ``.{name}.partial-XXXXXXXX`` file next to ``dst``, is fsynced and then
renamed over ``dst``; any exception (including cancellation) deletes the partial file, so a
half-written image never exists under the final name. The source is only ever read.

All three writers share one loop: walk the source's allocated ranges in 4 MiB chunks, skip chunks
that are all zeros, and write the rest where the format wants them (:class:`~app.disk.outfile.OutputFile`:
through the page cache, or with O_DIRECT on request). Holes are never written, so raw output is sparse
and VHDX output only holds blocks with data.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import struct
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from app.disk.formats import vhd, vhdx
from app.disk.formats.raw import RawImage
from app.disk.image import SECTOR_SIZES, WRITE_FORMATS, DiskImage
from app.disk.outfile import OutputFile, Writeback, pwrite_all
from app.disk.publish import publish, refuse_existing
from app.errors import ImageError, OutOfSpaceError, UnsupportedImageError
from app.progress import CancelToken, NullProgress, Progress

MiB = 1024 * 1024
#: Read/write unit: big enough for throughput, small enough to cancel promptly.
CHUNK = 4 * MiB
#: Zero runs this large inside a non-zero chunk are also left as holes (keeps raw output sparse).
SUBCHUNK = 64 * 1024
_ZERO_CHUNK = bytes(CHUNK)
_ZERO_SUB = bytes(SUBCHUNK)
_ZERO_16 = bytes(16)
VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z


def write_image(
    src: DiskImage,
    dst: Path,
    fmt: str,
    *,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    block_size: int = 32 * MiB,
    fsync: bool = True,
    direct: bool = False,
    overwrite: bool = True,
    vhdx_user_items: Sequence[tuple[bytes, bytes]] = (),
) -> Path:
    """Write ``src``'s virtual disk to ``dst`` as ``fmt`` ("raw", "vhdx" dynamic, "vhd" fixed).

    ``block_size`` is the VHDX payload block size (power of two, 1-256 MiB). Returns ``dst``.
    ``vhdx_user_items`` are ``(GUID as stored, bytes)`` user metadata items (MS-VHDX §2.6.1.2: IsUser,
    neither required nor virtual-disk metadata, so other readers skip them) written into the VHDX's
    metadata region, e.g. :func:`app.disk.formats.vhdx.catalog_items`; each at most 1 MiB.
    Writeback to the disk is started as the data goes out (so the kernel writes while we compute);
    ``fsync=False`` skips the final wait for it, for a caller that changes the file further and
    fsyncs it once at its own end. ``direct`` writes the data with O_DIRECT where the filesystem allows
    it (see :mod:`app.disk.outfile`): for a caller that will not read the bytes back soon.
    ``overwrite=False`` refuses an existing ``dst`` (:class:`OutputExistsError`), before writing anything
    and again, race-free, when the finished file takes its name (:func:`app.disk.publish.publish`).
    """
    if fmt not in WRITE_FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {WRITE_FORMATS}")
    if fmt == "vhdx" and (block_size < MiB or block_size > 256 * MiB or block_size & (block_size - 1)):
        raise ValueError(f"VHDX block size {block_size} must be a power of two between 1 and 256 MiB")
    user_items = list(vhdx_user_items)
    _check_user_items(user_items, fmt)
    dst = Path(dst)
    _refuse_overwriting_source(src, dst)
    refuse_existing(dst, overwrite)
    progress = progress or NullProgress()
    cancel = cancel or CancelToken()

    tmp, fd = _create_partial(dst)
    try:
        out = OutputFile(fd, tmp, direct=direct)
        try:
            if fmt == "raw":
                _write_raw(src, out, progress, cancel)
            elif fmt == "vhd":
                _write_vhd(src, out, progress, cancel)
            else:
                _write_vhdx(src, out, progress, cancel, block_size, user_items)
            out.flush()
            if fsync:
                os.fsync(fd)
        finally:
            out.close()
            os.close(fd)
        publish(tmp, dst, overwrite=overwrite)
    except OSError as exc:
        _unlink_quietly(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutOfSpaceError(
                f"not enough space on {dst.parent.resolve()} to write {dst.name} "
                f"(needs up to {src.virtual_size / 2**30:.2f} GiB)",
                "free some space or write the output elsewhere; no partial file was left",
            ) from None
        raise ImageError(
            f"cannot write {dst}: {exc.strerror or exc}", "check free space and permissions of the target"
        ) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(dst.parent)
    return dst


# -- plumbing ------------------------------------------------------------------------------------


def _check_user_items(items: list[tuple[bytes, bytes]], fmt: str) -> None:
    if items and fmt != "vhdx":
        raise ValueError(f"user metadata items can only be stored in a VHDX, not in {fmt}")
    if len(items) > vhdx.MAX_USER_ITEMS:
        raise ValueError(f"{len(items)} user metadata items; a VHDX holds at most {vhdx.MAX_USER_ITEMS}")
    ids = [gid for gid, _ in items]
    if len(set(ids)) != len(ids) or any(len(gid) != 16 or gid == vhdx.ZERO_GUID for gid in ids):
        raise ValueError("user metadata item GUIDs must be 16 bytes, non-zero and distinct")
    if any(len(data) > vhdx.MAX_ITEM_LENGTH for _, data in items):
        raise ValueError(f"a VHDX metadata item holds at most {vhdx.MAX_ITEM_LENGTH} bytes")


def _refuse_overwriting_source(src: DiskImage, dst: Path) -> None:
    try:
        same = dst.exists() and os.path.samefile(dst, src.path)
    except OSError:
        same = False
    if same:
        raise ImageError(f"{dst} is the input image", "choose a different output file name")


def _create_partial(dst: Path) -> tuple[Path, int]:
    """A new hidden file next to ``dst`` (same filesystem, so the final rename is atomic)."""
    parent = dst.parent if str(dst.parent) else Path(".")
    for _ in range(100):
        tmp = parent / f".{dst.name}.partial-{secrets.token_hex(4)}"
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ImageError(f"cannot create {dst}: {exc.strerror}", "check the target folder") from None
    raise ImageError(f"cannot create a temporary file next to {dst}", "clean up .partial files there")


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: some filesystems refuse directory fsync)."""
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _is_zero(data: bytes) -> bool:
    return data == _ZERO_CHUNK if len(data) == CHUNK else data == bytes(len(data))


def _is_zero_piece(data: bytes, i: int) -> bool:
    """Whether ``data[i : i + SUBCHUNK]`` is all zeros. The first 16 bytes decide most non-zero pieces
    without copying anything (``startswith`` compares in place); only a piece that starts with zeros is
    sliced (a copy) for the full memcmp - memoryview == bytes would compare item by item."""
    if not data.startswith(_ZERO_16, i):
        return False
    piece = data[i : i + SUBCHUNK]
    return piece == _ZERO_SUB if len(piece) == SUBCHUNK else piece == bytes(len(piece))


def _nonzero_runs(data: bytes) -> Iterator[tuple[int, memoryview]]:
    """``(relative offset, bytes)`` runs of ``data`` left after dropping all-zero 64 KiB pieces."""
    view = memoryview(data)
    run_start = -1
    for i in range(0, len(data), SUBCHUNK):
        zero = _is_zero_piece(data, i)
        if zero and run_start >= 0:
            yield run_start, view[run_start:i]
            run_start = -1
        elif not zero and run_start < 0:
            run_start = i
    if run_start >= 0:
        yield run_start, view[run_start:]


def _data_chunks(
    src: DiskImage, progress: Progress, cancel: CancelToken, step: str
) -> Iterator[tuple[int, memoryview]]:
    """``(offset, data)`` for every non-zero run of ``src``, in order; reports progress and cancels.

    Runs never cross a multiple of :data:`CHUNK` (so never straddle a VHDX block, which is larger).
    """
    size = src.virtual_size
    progress.begin(step, size)
    cancel.check()
    for start, length in src.allocated_ranges():
        pos, end = start, start + length
        while pos < end:
            cancel.check()
            n = min(CHUNK, end - pos, CHUNK - pos % CHUNK)
            data = src.read(pos, n)
            if not _is_zero(data):
                for rel, run in _nonzero_runs(data):
                    yield pos + rel, run
            pos += n
            progress.update(pos)
    cancel.check()
    progress.update(size)


def _write_sparse(
    src: DiskImage,
    out: OutputFile,
    progress: Progress,
    cancel: CancelToken,
    step: str,
    place: Callable[[int], int] = lambda pos: pos,
) -> None:
    for pos, data in _data_chunks(src, progress, cancel, step):
        out.write(data, place(pos))
    out.flush()  # every data write done before the caller sizes the file or writes metadata


# -- raw -----------------------------------------------------------------------------------------


def _write_raw(src: DiskImage, out: OutputFile, progress: Progress, cancel: CancelToken) -> None:
    os.ftruncate(out.fd, src.virtual_size)
    _write_sparse(src, out, progress, cancel, "Writing raw")


# -- fixed VHD -----------------------------------------------------------------------------------


def _write_vhd(src: DiskImage, out: OutputFile, progress: Progress, cancel: CancelToken) -> None:
    """Raw data padded to a whole MiB (Azure requires it), then the footer."""
    size = -(-src.virtual_size // MiB) * MiB
    os.ftruncate(out.fd, size + vhd.FOOTER_SIZE)
    _write_sparse(src, out, progress, cancel, "Writing vhd")
    footer = vhd.build_footer(size, int(time.time()) - VHD_EPOCH, uuid.uuid4().bytes)
    pwrite_all(out.fd, footer, size)


# -- dynamic VHDX --------------------------------------------------------------------------------

LOG_OFFSET = 1 * MiB
LOG_LENGTH = 1 * MiB
METADATA_OFFSET = 2 * MiB
#: Where the metadata region puts the user items: after the system items (which take 48 bytes at 64 KiB).
USER_ITEMS_OFFSET = 128 * 1024


def _write_vhdx(
    src: DiskImage,
    out: OutputFile,
    progress: Progress,
    cancel: CancelToken,
    block_size: int,
    user_items: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Layout: header section | log (1 MiB, empty) | metadata (1 MiB, more for user items) | BAT | data.

    Data blocks are appended in virtual order as the first non-zero chunk of each block shows up;
    the BAT and the headers are written last, once every block is in place.
    """
    logical = src.declared_sector_size or 512
    if logical not in SECTOR_SIZES:
        raise UnsupportedImageError(f"sector size {logical} cannot be stored in a VHDX", "use 512 or 4096")
    size = -(-src.virtual_size // logical) * logical
    if size > vhdx.MAX_VIRTUAL_SIZE:
        raise UnsupportedImageError(
            f"a {size}-byte disk is larger than VHDX allows (64 TiB)", "write raw instead"
        )
    ratio = vhdx.chunk_ratio(logical, block_size)
    entries = vhdx.bat_entry_count(size, block_size, ratio)
    bat_length = max(MiB, -(-entries * 8 // MiB) * MiB)
    metadata = _vhdx_metadata(size, block_size, logical, user_items)
    bat_offset = METADATA_OFFSET + len(metadata)
    data_start = bat_offset + bat_length

    block_offsets: dict[int, int] = {}
    next_free = data_start

    def place(pos: int) -> int:
        nonlocal next_free
        block, within = divmod(pos, block_size)
        if block not in block_offsets:
            block_offsets[block] = next_free
            next_free += block_size
        return block_offsets[block] + within

    fd = out.fd
    os.ftruncate(fd, data_start)
    _write_sparse(src, out, progress, cancel, "Writing vhdx", place)
    os.ftruncate(fd, next_free)  # every allocated block is whole in the file, also the last one

    # Blocks never written stay PAYLOAD_BLOCK_NOT_PRESENT (entry 0): with no parent they read as
    # zeros, and it is what Hyper-V and QEMU use for unwritten blocks of a dynamic disk. Sector-bitmap
    # entries stay 0 (SB_BLOCK_NOT_PRESENT): only differencing disks have bitmaps.
    bat = bytearray(entries * 8)
    for block, off in block_offsets.items():
        struct.pack_into("<Q", bat, 8 * (block + block // ratio), (off // MiB) << 20 | vhdx.FULLY_PRESENT)
    pwrite_all(fd, bytes(bat), bat_offset)
    pwrite_all(fd, metadata, METADATA_OFFSET)
    pwrite_all(fd, _vhdx_header_section(bat_offset, bat_length, len(metadata)), 0)


def _vhdx_metadata(
    size: int, block_size: int, logical: int, user_items: Sequence[tuple[bytes, bytes]] = ()
) -> bytes:
    """The whole metadata region (a multiple of 1 MiB): the table, the system items from 64 KiB, the user
    items (flags IsUser only) from :data:`USER_ITEMS_OFFSET`, each on a 4 KiB boundary."""
    disk_item = vhdx.META_IS_REQUIRED | vhdx.META_IS_VIRTUAL_DISK
    items = [
        (vhdx.FILE_PARAMETERS, struct.pack("<II", block_size, 0), vhdx.META_IS_REQUIRED),
        (vhdx.VIRTUAL_DISK_SIZE, struct.pack("<Q", size), disk_item),
        (vhdx.PAGE83, uuid.uuid4().bytes_le, disk_item),
        (vhdx.LOGICAL_SECTOR_SIZE, struct.pack("<I", logical), disk_item),
        (vhdx.PHYSICAL_SECTOR_SIZE, struct.pack("<I", 4096), disk_item),
    ]
    placed: list[tuple[bytes, int, bytes, int]] = []  # (GUID, offset in the region, bytes, flags)
    offset = vhdx.METADATA_TABLE_SIZE
    for gid, data, flags in items:
        placed.append((gid, offset, data, flags))
        offset += len(data)
    offset = USER_ITEMS_OFFSET
    for gid, data in user_items:
        placed.append((gid, offset if data else 0, data, vhdx.META_IS_USER))  # empty: offset 0 (§2.6.1.2)
        offset += -(-len(data) // 4096) * 4096
    region = bytearray(max(MiB, -(-offset // MiB) * MiB))
    vhdx.METADATA_HEADER.pack_into(region, 0, b"metadata", 0, len(placed), bytes(20))
    for i, (gid, at, data, flags) in enumerate(placed):
        vhdx.METADATA_ENTRY.pack_into(region, 32 + 32 * i, gid, at, len(data), flags, 0)
        region[at : at + len(data)] = data
    return bytes(region)


def _vhdx_header_section(bat_offset: int, bat_length: int, metadata_length: int) -> bytes:
    """File identifier, two headers (sequence 1 and 2) and two identical region tables: the first 320 KiB."""
    section = bytearray(320 * 1024)
    section[0:8] = vhdx.FILE_ID
    creator = "Shieldwright".encode("utf-16-le")
    section[8 : 8 + len(creator)] = creator
    file_write, data_write = uuid.uuid4().bytes_le, uuid.uuid4().bytes_le
    for seq, off in enumerate(vhdx.HEADER_OFFSETS, start=1):
        hdr = bytearray(vhdx.HEADER_SIZE)
        vhdx.HEADER.pack_into(
            hdr, 0, b"head", 0, seq, file_write, data_write, vhdx.ZERO_GUID, 0, 1, LOG_LENGTH, LOG_OFFSET
        )
        section[off : off + vhdx.HEADER_SIZE] = vhdx.with_checksum(hdr)
    table = bytearray(vhdx.REGION_TABLE_SIZE)
    vhdx.REGION_HEADER.pack_into(table, 0, b"regi", 0, 2, 0)
    vhdx.REGION_ENTRY.pack_into(table, 16, vhdx.BAT_GUID, bat_offset, bat_length, 1)
    vhdx.REGION_ENTRY.pack_into(table, 48, vhdx.METADATA_GUID, METADATA_OFFSET, metadata_length, 1)
    table_bytes = vhdx.with_checksum(table)
    for off in vhdx.REGION_TABLE_OFFSETS:
        section[off : off + vhdx.REGION_TABLE_SIZE] = table_bytes
    return bytes(section)


# -- a raw file copied by the kernel ---------------------------------------------------------------

#: copy_file_range chunk: big enough to keep syscalls rare, small enough for a cancel within ~0.1 s.
COPY_CHUNK = 64 * MiB


def copy_raw(
    src: Path,
    dst: Path,
    *,
    patches: dict[int, bytes] | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    fsync: bool = True,
) -> Path:
    """Copy the raw image ``src`` to the new file ``dst`` with its holes, then write ``patches``
    (offset → bytes) over the copy; fsync (unless ``fsync`` is False: for a caller that patches the file
    later, see :func:`patch_file`). The data moves with ``copy_file_range`` (in the kernel, or a reflink
    where the filesystem shares extents), so a raw-to-raw copy costs what ``cp`` does. ``dst`` must not
    exist (the caller publishes it). Falls back to read/write where the kernel cannot copy between the
    two files."""
    progress = progress or NullProgress()
    cancel = cancel or CancelToken()
    with open(src, "rb") as fin:
        size = os.fstat(fin.fileno()).st_size
        with RawImage(Path(src)) as image:
            ranges = list(image.allocated_ranges())
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            os.ftruncate(fd, size)
            progress.begin("Copying the disk", sum(n for _, n in ranges))
            writeback = Writeback(fd)  # the disk starts writing now, not at the final fsync
            done = 0
            for start, length in ranges:
                pos, end = start, start + length
                while pos < end:
                    cancel.check()
                    n = _copy_range(fin.fileno(), fd, pos, min(COPY_CHUNK, end - pos))
                    pos += n
                    done += n
                    writeback.wrote(n)
                    progress.update(done)
            for offset, data in sorted((patches or {}).items()):
                pwrite_all(fd, data, offset)
            if fsync:
                os.fsync(fd)
        except OSError as exc:
            _unlink_quietly(dst)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutOfSpaceError(f"not enough space on {dst.parent.resolve()} to write {dst.name}",
                                      "free some space or write the output elsewhere") from None  # fmt: skip
            raise ImageError(
                f"cannot write {dst}: {exc.strerror or exc}", "check the target folder"
            ) from None
        except BaseException:
            _unlink_quietly(dst)
            raise
        finally:
            os.close(fd)
    return Path(dst)


def _copy_range(fd_in: int, fd_out: int, offset: int, length: int) -> int:
    try:
        n = os.copy_file_range(fd_in, fd_out, length, offset, offset)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
        n = 0
    if n > 0:
        return n
    data = os.pread(fd_in, length, offset)  # no kernel copy here (another filesystem, old kernel)
    if not data:
        raise OSError(errno.EIO, "the source ended early")
    pwrite_all(fd_out, data, offset)
    return len(data)


def patch_file(path: Path, patches: dict[int, bytes]) -> None:
    """Write ``patches`` (offset → bytes) into the existing file ``path`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        for offset, data in sorted(patches.items()):
            pwrite_all(fd, data, offset)
        os.fsync(fd)
    except OSError as exc:
        raise ImageError(f"cannot write {path}: {exc.strerror or exc}", "check the target folder") from None
    finally:
        os.close(fd)
