"""Check a disk image against a signed catalog: signature, trust, header vs GPT, and every block.

Verification reports instead of raising for everything a catalog or image can get wrong (bad signature,
untrusted signer, moved or missing partition, changed blocks), so the CLI can print all of it and the
wizard can show it; only an image that cannot be read at all raises (:class:`ImageError`), and a cancel
raises :class:`CancelledError`. ``ok`` is true only when nothing at all was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509

from app.catalog.format import DIGEST_SIZE, CatalogError, CatalogPartition, SignedCatalog, read_catalog
from app.catalog.hasher import BlockHasher
from app.disk.image import DiskImage
from app.disk.layout import layout_of
from app.disk.model import DiskLayout
from app.errors import SignatureError
from app.progress import CancelToken, Progress
from app.signing.chain import check_chain


@dataclass(frozen=True)
class Mismatch:
    """A block whose digest differs from the catalog's."""

    partition_number: int
    byte_offset: int  # of the block, from the start of the partition
    block_index: int
    disk_offset: int = 0  # of the block, from the start of the disk


@dataclass
class VerifyResult:
    ok: bool
    signer: x509.Certificate | None
    mismatches: list[Mismatch] = field(default_factory=list)  # the first ``max_mismatches``, in disk order
    problems: list[str] = field(default_factory=list)  # signature, trust and header findings, one line each
    signed: SignedCatalog | None = None
    mismatch_count: int = 0  # all differing blocks, even beyond ``max_mismatches``
    blocks_checked: int = 0


def verify_catalog(
    image: DiskImage,
    signed: SignedCatalog | bytes,
    *,
    trusted: Sequence[x509.Certificate] | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    max_mismatches: int = 10,
    jobs: int | None = None,
) -> VerifyResult:
    """Verify ``image`` against ``signed`` (a ``.vsc`` file's bytes, or an already verified catalog).

    With ``trusted``, the signer must be one of those certificates or chain to one. Block size comes
    from the catalog. Partitions whose geometry does not match the image are reported, not hashed.
    """
    if not isinstance(signed, SignedCatalog):
        try:
            signed = read_catalog(signed, trusted=trusted)
        except (SignatureError, CatalogError) as exc:
            return VerifyResult(ok=False, signer=None, problems=[exc.one_line()])
    elif trusted is not None:
        try:
            check_chain(signed.signer_certificate, signed.certificates, trusted)
        except SignatureError as exc:
            return VerifyResult(
                ok=False, signer=signed.signer_certificate, problems=[exc.one_line()], signed=signed
            )

    cat = signed.catalog
    layout = layout_of(image)
    problems = header_problems(cat.disk_guid, cat.partitions, layout)
    hashable = [p for p in cat.partitions if _geometry_matches(p, layout)]
    result = VerifyResult(ok=False, signer=signed.signer_certificate, problems=problems, signed=signed)
    if hashable:
        with BlockHasher(jobs) as hasher:
            actual = hasher.hash_ranges(
                image, [(p.offset, p.size_bytes) for p in hashable], cat.block_size,
                step="Verifying partition" + ("s " if len(hashable) > 1 else " ")
                + ", ".join(str(p.number) for p in hashable),
                progress=progress, cancel=cancel,
            )  # fmt: skip
        for p, digests in sorted(zip(hashable, actual, strict=True), key=lambda pd: pd[0].offset):
            _compare(p, digests, cat.block_size, result, max_mismatches)
    result.ok = not result.problems and result.mismatch_count == 0
    return result


def _geometry_matches(p: CatalogPartition, layout: DiskLayout) -> bool:
    found = next((q for q in layout.partitions if q.number == p.number), None)
    return (
        found is not None
        and (found.first_lba, found.last_lba, found.size_bytes) == (p.first_lba, p.last_lba, p.size_bytes)
        and (found.last_lba + 1) * layout.sector_size <= layout.virtual_size
    )


def header_problems(disk_guid: str, partitions: Sequence[CatalogPartition], layout: DiskLayout) -> list[str]:
    """What differs between the catalog's header and the image's GPT, one sentence per difference."""
    out: list[str] = []
    if layout.disk_guid is None:
        return ["the image has no GPT partition table"]
    if layout.disk_guid != disk_guid:
        out.append(f"the disk GUID is {layout.disk_guid}, the catalog was made for {disk_guid}")
    by_number = {q.number: q for q in layout.partitions}
    for p in partitions:
        q = by_number.get(p.number)
        if q is None:
            out.append(f"partition {p.number} is in the catalog but not on the disk")
            continue
        for key in ("partition_guid", "type_guid", "first_lba", "last_lba", "size_bytes"):
            have, want = getattr(q, key), getattr(p, key)
            if have != want:
                out.append(f"partition {p.number}: {key} is {have}, the catalog says {want}")
        if (q.last_lba + 1) * layout.sector_size > layout.virtual_size:
            out.append(f"partition {p.number} extends past the end of the disk")
    return out


def _compare(p: CatalogPartition, actual: bytes, block_size: int, result: VerifyResult, limit: int) -> None:
    result.blocks_checked += p.block_count
    if actual == p.block_digests:
        return
    expected = p.block_digests
    for i in range(p.block_count):
        a = i * DIGEST_SIZE
        if actual[a : a + DIGEST_SIZE] != expected[a : a + DIGEST_SIZE]:
            result.mismatch_count += 1
            if len(result.mismatches) < limit:
                result.mismatches.append(Mismatch(p.number, i * block_size, i, p.offset + i * block_size))
