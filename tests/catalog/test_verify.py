"""Creating and verifying catalogs: changed blocks are found and located, bad signatures and trust fail."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from app.catalog.create import create_catalog
from app.catalog.format import CatalogError, read_catalog
from app.catalog.verify import Mismatch, verify_catalog
from app.disk.image import open_image
from app.disk.layout import layout_of
from app.errors import CancelledError
from app.progress import CancelToken, ProgressState
from tests.catalog.helpers import flip_byte, naive_digests, writable_copy
from tests.conftest import MiB, luks_format, run, sgdisk_partitions

SECTOR = 512


def part_offset(path: Path, number: int) -> int:
    p = next(q for q in sgdisk_partitions(path) if q["number"] == number)
    return int(p["first_lba"]) * SECTOR  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def catalogued(small_disk: Path, catalog_keys) -> bytes:
    """A catalog of partitions 2 (XBOOTLDR) and 3 (root) of ``small_disk``, 1 MiB blocks."""
    return create_catalog(
        small_disk, [2, 3], name="Small", version="1.0.0.0", signer=catalog_keys["signer"].signer
    )


def verify(path: Path, der, **kw):
    with open_image(path) as image:
        return verify_catalog(image, der, **kw)


def test_intact_image_verifies(small_disk: Path, catalogued: bytes, catalog_keys) -> None:
    result = verify(small_disk, catalogued, trusted=[catalog_keys["signer"].cert])
    assert result.ok and not result.problems and not result.mismatches
    assert result.signer == catalog_keys["signer"].cert
    assert result.blocks_checked == 8 + 16
    cat = read_catalog(catalogued).catalog
    assert [p.number for p in cat.partitions] == [2, 3]
    assert cat.partitions[1].block_digests == naive_digests(
        small_disk, part_offset(small_disk, 3), 16 * MiB, MiB
    )


@pytest.mark.parametrize("fmt", ["vhd", "vhdx", "qcow2"])
def test_other_formats_of_the_same_disk_verify(small_disk_formats, catalogued: bytes, fmt: str) -> None:
    assert verify(small_disk_formats[fmt], catalogued).ok


def test_one_flipped_byte_is_located(small_disk: Path, catalogued: bytes, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path / "d.raw")
    start = part_offset(disk, 3)
    flip_byte(disk, start + 5 * MiB + 123)
    result = verify(disk, catalogued)
    assert not result.ok
    assert result.mismatches == [Mismatch(3, 5 * MiB, 5, start + 5 * MiB)]
    assert result.mismatch_count == 1 and not result.problems


def test_a_byte_written_into_a_hole_is_found(small_disk: Path, catalogued: bytes, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path / "d.raw")
    start = part_offset(disk, 2)
    with open_image(disk) as image:
        ranges = list(image.allocated_ranges())
    ends = [s + n for s, n in ranges if start <= s + n < start + 8 * MiB - 4096]
    hole = next(e for e in ends if not any(a <= e < a + m for a, m in ranges))  # first byte of a hole
    flip_byte(disk, hole + 17)
    result = verify(disk, catalogued)
    block = (hole + 17 - start) // MiB
    assert result.mismatches == [Mismatch(2, block * MiB, block, start + block * MiB)]


def test_changes_outside_protected_partitions_do_not_matter(
    small_disk: Path, catalogued: bytes, tmp_path
) -> None:
    disk = writable_copy(small_disk, tmp_path / "d.raw")
    flip_byte(disk, part_offset(disk, 4) + 1000)  # swap, not catalogued
    flip_byte(disk, part_offset(disk, 1) + 3 * MiB)  # ESP
    assert verify(disk, catalogued).ok


def test_many_mismatches_are_counted_and_the_first_listed(
    small_disk: Path, catalogued: bytes, tmp_path
) -> None:
    disk = writable_copy(small_disk, tmp_path / "d.raw")
    for n, block in [(3, 15), (2, 0), (3, 2)] + [(3, b) for b in range(4, 13)]:
        flip_byte(disk, part_offset(disk, n) + block * MiB + 7)
    result = verify(disk, catalogued, max_mismatches=10)
    assert result.mismatch_count == 12
    assert [(m.partition_number, m.block_index) for m in result.mismatches] == [(2, 0), (3, 2)] + [
        (3, b) for b in range(4, 12)
    ]


def test_flipped_catalog_bytes_fail(small_disk: Path, catalogued: bytes, catalog_keys) -> None:
    for pos in range(0, len(catalogued), 13):
        bad = bytearray(catalogued)
        bad[pos] ^= 0x01
        result = verify(small_disk, bytes(bad), trusted=[catalog_keys["signer"].cert])
        assert not result.ok and result.problems, f"flip at {pos} was accepted"


def test_wrong_trust_fails_right_trust_passes(small_disk: Path, catalogued: bytes, catalog_keys) -> None:
    result = verify(small_disk, catalogued, trusted=[catalog_keys["other"].cert])
    assert not result.ok and "not trusted" in result.problems[0]
    signed = read_catalog(catalogued)  # an already decoded catalog goes through the same trust check
    assert not verify(small_disk, signed, trusted=[catalog_keys["other"].cert]).ok
    assert verify(small_disk, signed, trusted=[catalog_keys["signer"].cert]).ok


def test_chain_to_a_trusted_ca(small_disk: Path, catalog_keys) -> None:
    der = create_catalog(small_disk, [3], name="Small", version="2.0.0.0", signer=catalog_keys["leaf"].signer)
    assert verify(small_disk, der, trusted=[catalog_keys["ca"].cert]).ok
    assert not verify(small_disk, der, trusted=[catalog_keys["signer"].cert]).ok


def test_gpt_changes_are_problems(small_disk: Path, catalogued: bytes, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path / "d.raw")
    new_guid = str(uuid.uuid4())
    run("sgdisk", "-u", f"3:{new_guid}", "-U", "R", disk)
    result = verify(disk, catalogued)
    assert not result.ok and result.mismatch_count == 0
    assert any(p.startswith("the disk GUID is") for p in result.problems)
    assert any(p.startswith(f"partition 3: partition_guid is {new_guid}") for p in result.problems)


def test_a_resized_partition_is_reported_not_hashed(
    small_disk: Path, catalogued: bytes, tmp_path: Path
) -> None:
    disk = writable_copy(small_disk, tmp_path / "d.raw")
    first = part_offset(disk, 3) // SECTOR
    run("sgdisk", "-d", "3", "-n", f"3:{first}:+8M", "-t", "3:8304", disk)
    run("sgdisk", "-d", "2", disk)
    result = verify(disk, catalogued)
    assert not result.ok
    assert "partition 2 is in the catalog but not on the disk" in result.problems
    assert any(p.startswith("partition 3: last_lba") for p in result.problems)
    assert result.blocks_checked == 0


def test_catalog_only_template_with_a_luks_partition(tmp_path: Path, catalog_keys) -> None:
    """A partition that is already LUKS2 is catalogued as its ciphertext, as it stands."""
    disk = tmp_path / "enc.raw"
    with open(disk, "wb") as f:
        f.truncate(20 * MiB)
    run("sgdisk", "-a", "2048", "-n", "1:2048:+2M", "-t", "1:ef00", "-n", "2:0:+16M", "-t", "2:8304", disk)
    container = luks_format(tmp_path / "c.luks", size=16 * MiB)
    run("dd", f"if={container}", f"of={disk}", "bs=1M", "seek=3", "conv=notrunc,sparse", "status=none")
    with open_image(disk) as image:
        assert next(p for p in layout_of(image).partitions if p.number == 2).content == "luks2"
    der = create_catalog(
        disk, [2], name="Enc", version="1.0.0.0", signer=catalog_keys["ec"].signer, block_size=4096
    )
    cat = read_catalog(der).catalog
    assert cat.partitions[0].block_digests == naive_digests(container, 0, 16 * MiB, 4096)
    assert verify(disk, der, trusted=[catalog_keys["ec"].cert]).ok
    flip_byte(disk, 3 * MiB + 40_000)  # ciphertext byte
    result = verify(disk, der)
    assert result.mismatches == [Mismatch(2, 36864, 9, 3 * MiB + 36864)]


def test_create_refuses_bad_requests_before_hashing(small_disk: Path, catalog_keys) -> None:
    signer = catalog_keys["signer"].signer
    cases = [
        ({"numbers": [9]}, "no partition 9"),
        ({"numbers": [1]}, "EFI System Partition"),
        ({"numbers": [3, 3]}, "twice"),
        ({"numbers": []}, "no partition"),
        ({"version": "1.0"}, "a.b.c.d"),
        ({"name": ""}, "empty"),
        ({"block_size": 1000}, "power of two"),
    ]
    for change, message in cases:
        kw = {"numbers": [3], "name": "n", "version": "1.0.0.0", "block_size": MiB} | change
        numbers = kw.pop("numbers")
        with pytest.raises(CatalogError, match=message):
            create_catalog(small_disk, numbers, signer=signer, **kw)


def test_cancel_during_create_and_verify(small_disk: Path, catalogued: bytes, catalog_keys) -> None:
    class CancelOnFirstUpdate(ProgressState):
        def __init__(self, token: CancelToken) -> None:
            super().__init__()
            self.token = token

        def update(self, done: int) -> None:
            super().update(done)
            self.token.cancel()

    token = CancelToken()
    with pytest.raises(CancelledError):
        signer = catalog_keys["signer"].signer
        progress = CancelOnFirstUpdate(token)
        create_catalog(small_disk, [2, 3], name="n", version="1.0.0.0", signer=signer,
                       block_size=4096, jobs=1, progress=progress, cancel=token)  # fmt: skip
    token = CancelToken()
    with open_image(small_disk) as image, pytest.raises(CancelledError):
        verify_catalog(image, catalogued, progress=CancelOnFirstUpdate(token), cancel=token, jobs=1)


def test_digest_of_digests_matches_independent_hash(small_disk: Path, catalogued: bytes) -> None:
    for p in read_catalog(catalogued).catalog.partitions:
        assert p.digest == hashlib.sha256(naive_digests(small_disk, part_offset(small_disk, p.number),
                                                        p.size_bytes, MiB)).hexdigest()  # fmt: skip
