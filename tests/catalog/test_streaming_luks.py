"""The streaming sink inside the LUKS re-layout writer: hashing ciphertext as it is written must give the
catalog that hashing the finished output image gives - for encrypted and for copied (holey) partitions."""

from __future__ import annotations

from pathlib import Path

from app.catalog.hasher import BlockHasher, PartitionSinks
from app.disk.image import open_image
from app.disk.layout import layout_of
from app.luks.container import DEFAULT_DATA_OFFSET
from app.luks.imageops import Keyslot, encrypt_partitions
from app.luks.kdf import KdfParams
from app.luks.relayout import plan_relayout


def test_sinks_fed_by_the_writer_match_a_second_pass(small_disk: Path, tmp_path: Path) -> None:
    with open_image(small_disk) as src:
        plan = plan_relayout(layout_of(src), [3], DEFAULT_DATA_OFFSET, sector_size=4096)
    sizes = {n: plan.partition(n).size_bytes for n in (2, 3)}  # 2 is copied (with holes), 3 encrypted
    sinks = PartitionSinks(sizes, 65536)
    out = tmp_path / "enc.raw"
    keyslot = Keyslot(bytearray(b"streaming sink test"), KdfParams.pbkdf2(iterations=1000))
    encrypt_partitions(small_disk, out, [3], [keyslot], on_block=sinks)
    streamed = sinks.finish()
    with open_image(out) as image, BlockHasher(jobs=2) as hasher:
        layout = layout_of(image)
        for n in (2, 3):
            part = next(p for p in layout.partitions if p.number == n)
            assert part.size_bytes == sizes[n]
            assert streamed[n] == hasher.hash_partition(image, part, layout.sector_size, 65536), (
                f"partition {n}"
            )
        assert next(p for p in layout.partitions if p.number == 3).content == "luks2"
