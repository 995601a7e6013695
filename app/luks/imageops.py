"""LUKS2 operations on disk images: encrypt partitions, read a header, add a key, test a passphrase.

The engine calls behind ``shieldwright luks ...``: they join the re-layout plan, the one-pass writer,
the LUKS2 header code and the XTS cipher. Every operation reads its input image read-only, in any
supported format, and writes a *new* image: an image is never changed in place.

Secrets: volume keys live in ``bytearray``s that are zeroed once the image is written; passphrases
are taken as given (callers keep them in mutable buffers where they can) and never appear in a
message or a log line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.disk.image import WRITE_FORMATS, DiskImage, open_image
from app.disk.layout import layout_of
from app.disk.model import Partition
from app.disk.writers import write_image
from app.errors import ShieldwrightError, WrongPassphraseError
from app.luks.container import (
    LuksHeader,
    LuksParams,
    add_keyslot,
    create_header,
    new_volume_key,
    read_header,
    unlock,
)
from app.luks.errors import LuksError
from app.luks.kdf import KdfParams
from app.luks.params import DEFAULT_DATA_OFFSET
from app.luks.relaid_image import READAHEAD, BlockHook, PartitionCrypto, encrypt_image
from app.luks.relayout import RelayoutError, RelayoutPlan, plan_relayout
from app.luks.xts import XtsCipher
from app.progress import CancelToken, NullProgress, Progress

MiB = 1024 * 1024
#: The largest header area we read back (cryptsetup allows data offsets far beyond; we write 16 MiB).
MAX_HEADER_AREA = 256 * MiB


class NotLuksError(LuksError):
    """The partition does not start with a LUKS2 header."""


class WrongLuksPassphraseError(WrongPassphraseError):
    """No keyslot opens with the given passphrase. Exit code 1: the image is fine, the secret is not."""

    exit_code = 1


@dataclass(frozen=True)
class Keyslot:
    """A secret for a new keyslot and how hard its KDF is (a ``KdfParams``)."""

    secret: bytes | bytearray
    kdf: KdfParams


def encrypt_partitions(
    src_path: Path,
    out: Path,
    numbers: Sequence[int],
    keyslots: Sequence[Keyslot],
    *,
    sector_size: int = 4096,
    data_offset: int = DEFAULT_DATA_OFFSET,
    out_format: str = "raw",
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    on_block: BlockHook | None = None,
    overwrite: bool = True,
) -> RelayoutPlan:
    """Write ``out``: ``src_path`` with partitions ``numbers`` LUKS2-encrypted, each with ``keyslots``.

    Every encrypted partition gets its own random volume key and UUID; all get the same keyslots
    (keyslot 0 = the first secret). Returns the plan that was executed (where everything went).
    ``overwrite=False`` never replaces an existing ``out``.
    """
    if not keyslots:
        raise RelayoutError("no passphrase for the new keyslot", "give a passphrase")
    progress = progress or NullProgress()
    cancel = cancel or CancelToken()
    with open_image(src_path) as src:
        layout = layout_of(src)
        plan = plan_relayout(layout, numbers, data_offset, sector_size=sector_size)
        volume_keys: list[bytearray] = []
        try:
            crypto: dict[int, PartitionCrypto] = {}
            progress.begin("Creating LUKS2 keyslots", len(plan.encrypted) * len(keyslots))
            for i, p in enumerate(plan.encrypted):
                cancel.check()
                vk = new_volume_key(512)
                volume_keys.append(vk)
                params = LuksParams(sector_size=sector_size, data_offset=plan.data_offset)
                header = create_header(vk, params, keyslots=[(k.secret, k.kdf) for k in keyslots])
                cipher = XtsCipher(vk, sector_size=sector_size, lanes=READAHEAD)
                crypto[p.number] = PartitionCrypto(header, cipher)
                progress.update((i + 1) * len(keyslots))
            encrypt_image(
                src,
                layout,
                plan,
                Path(out),
                crypto=crypto,
                out_format=out_format,
                progress=progress,
                cancel=cancel,
                on_block=on_block,
                overwrite=overwrite,
            )
        finally:
            for vk in volume_keys:
                vk[:] = bytes(len(vk))
    return plan


@dataclass
class LuksPartition:
    """A LUKS2 partition found in an image: the partition, its parsed header and its header area.

    ``offset`` is where the partition starts in the disk, in bytes: its first LBA times the disk's
    *logical sector size* (512 or 4096) - never ``first_lba * 512``, which on a 4K disk points into
    another partition's data.
    """

    partition: Partition
    header: LuksHeader
    header_area: bytes
    offset: int


def read_luks_partition(image: DiskImage, number: int) -> LuksPartition:
    """Parse the LUKS2 header at the start of partition ``number`` of ``image`` (any format)."""
    layout = layout_of(image)
    part = next((p for p in layout.partitions if p.number == number), None)
    if part is None:
        have = ", ".join(str(p.number) for p in layout.partitions) or "none"
        raise RelayoutError(
            f"partition {number} is not on this disk (its partitions: {have})",
            "run `shieldwright inspect IMAGE` to see the numbers",
        )
    start, size = part.first_lba * layout.sector_size, part.size_bytes
    if start + size > image.virtual_size:
        raise RelayoutError(
            f"partition {number} reaches beyond the end of the disk", "fix the partition table"
        )

    def read(offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > size:
            raise NotLuksError(
                f"partition {number}: the LUKS2 header points past the end of the partition",
                "the header is damaged",
            )
        return image.read(start + offset, length)

    if part.content != "luks2":
        what = "a LUKS1 container" if part.content == "luks1" else f"{part.content}, not LUKS2"
        raise NotLuksError(
            f"partition {number} holds {what}", "name the partition that holds the LUKS2 container"
        )
    header = read_header(read)
    area = header.data_offset
    if not 0 < area <= min(size, MAX_HEADER_AREA):
        raise NotLuksError(
            f"partition {number}: LUKS2 data offset {area} is implausible", "the header is damaged"
        )
    return LuksPartition(part, header, read(0, area), start)


def unlock_partition(lp: LuksPartition, passphrase: bytes | bytearray) -> bytearray:
    """The volume key of ``lp`` under ``passphrase``; :class:`WrongLuksPassphraseError` if none opens."""
    try:
        return unlock(lp.header_area, passphrase)
    except WrongPassphraseError:
        raise WrongLuksPassphraseError(
            f"no keyslot of partition {lp.partition.number} opens with this passphrase",
            "check the passphrase (a file's trailing newline is ignored)",
        ) from None


def test_passphrase(src_path: Path, number: int, passphrase: bytes | bytearray) -> None:
    """Return when ``passphrase`` opens partition ``number``; raise WrongLuksPassphraseError if not."""
    with open_image(src_path) as image:
        lp = read_luks_partition(image, number)
    key = unlock_partition(lp, passphrase)
    key[:] = bytes(len(key))


test_passphrase.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def add_key(
    src_path: Path,
    out: Path,
    number: int,
    passphrase: bytes | bytearray,
    new: Keyslot,
    *,
    out_format: str | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``out``: ``src_path`` with a keyslot for ``new`` added to partition ``number``'s header.

    ``passphrase`` must open an existing keyslot. The output format defaults to the input's (raw
    for qcow2, which we do not write). Only the header area differs from the input; it goes where the
    partition starts on *this* disk (its logical sector size), and is read back from ``out`` before we
    return (:func:`_check_written`): an output that does not hold the new header is deleted, not reported.
    ``overwrite=False`` never replaces an existing ``out`` (``link(2)``, see :mod:`app.disk.publish`).
    """
    out = Path(out)
    with open_image(src_path) as image:
        lp = read_luks_partition(image, number)
        key = unlock_partition(lp, passphrase)
        try:
            area = add_keyslot(lp.header_area, key, new.secret, new.kdf)
        finally:
            key[:] = bytes(len(key))
        if len(area) != len(lp.header_area):  # pragma: no cover - the header writer keeps the size
            raise RuntimeError("add_keyslot changed the size of the header area")
        fmt = out_format or (image.format if image.format in WRITE_FORMATS else "raw")
        patched = PatchedImage(image, {lp.offset: area})
        write_image(patched, out, fmt, progress=progress, cancel=cancel, overwrite=overwrite)
    _check_written(out, lp, area)
    return out


def _check_written(out: Path, before: LuksPartition, area: bytes) -> None:
    """Re-read ``out``: partition ``before.partition.number`` must start where it did with exactly ``area``.

    Costs one header-area read; catches a header written to the wrong place (the 4K-sector bug) or a
    writer that changed the layout. On a mismatch ``out`` is removed and a LuksError raised.
    """
    number = before.partition.number
    try:
        with open_image(out) as image:
            lp = read_luks_partition(image, number)
        same = lp.offset == before.offset and lp.header_area == area
    except ShieldwrightError:
        same = False
    if not same:
        out.unlink(missing_ok=True)
        raise LuksError(
            f"partition {number}: the new LUKS2 header did not read back from {out}",
            "nothing was kept; please report this with `shieldwright inspect` of the input",
        )


class PatchedImage(DiskImage):
    """``inner`` with byte ranges replaced: new header areas, copied in one pass. ``patches`` maps an
    offset to the bytes written there; the ranges must not overlap."""

    def __init__(self, inner: DiskImage, patches: dict[int, bytes]) -> None:
        super().__init__(inner.path)
        self.inner = inner
        self.patches = sorted(patches.items())
        for (a, da), (b, _) in zip(self.patches, self.patches[1:], strict=False):
            if a + len(da) > b:
                raise ValueError("patches overlap")
        self.format = inner.format
        self.virtual_size = inner.virtual_size
        self.declared_sector_size = inner.declared_sector_size

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        base = self.inner.read(offset, length)
        buf: bytearray | None = None
        for start, data in self.patches:
            lo, hi = max(offset, start), min(offset + length, start + len(data))
            if lo >= hi:
                continue
            if buf is None:
                buf = bytearray(base)
            buf[lo - offset : hi - offset] = data[lo - start : hi - start]
        return base if buf is None else bytes(buf)

    def allocated_ranges(self) -> Iterator[tuple[int, int]]:
        spans = [(s, s + n) for s, n in self.inner.allocated_ranges()]
        spans += [(start, start + len(data)) for start, data in self.patches]
        merged: list[list[int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        for start, end in merged:
            yield (start, end - start)
