"""The re-layout arithmetic on synthetic layouts: growth, shifts, alignment, disk size, refusals."""

from __future__ import annotations

import uuid

import pytest

from app.disk import partition_types as pt
from app.disk.model import DiskLayout, Partition, Role
from app.errors import ShieldwrightError
from app.luks.relayout import (
    AlreadyEncryptedError,
    NoSuchPartitionError,
    NotEncryptableError,
    PartitionTooSmallError,
    RelayoutError,
    UnsupportedLayoutError,
    plan_relayout,
)

MiB = 1024 * 1024
HDR = 16 * MiB
LBAS_PER_MIB = 2048


def part(number, first_mib, size_mib=None, *, role=Role.OTHER, content="ext4", last_lba=None, attrs=0):
    first = int(first_mib * LBAS_PER_MIB)
    last = last_lba if last_lba is not None else first + int(size_mib * LBAS_PER_MIB) - 1
    type_guid = {Role.ESP: pt.ESP, Role.ROOT: pt.ROOT_X86_64, Role.XBOOTLDR: pt.XBOOTLDR}.get(
        role, pt.LINUX_GENERIC
    )
    return Partition(
        number=number,
        name=f"p{number}",
        type_guid=type_guid,
        type_name="x",
        partition_guid=str(uuid.uuid4()),
        first_lba=first,
        last_lba=last,
        size_bytes=(last - first + 1) * 512,
        content=content,
        role=role,
        attributes=attrs,
    )


def layout(parts, disk_mib=None, sector_size=512, disk_guid="11111111-2222-3333-4444-555555555555"):
    size = disk_mib * MiB if disk_mib else max(p.last_lba for p in parts) * 512 + 2 * MiB
    return DiskLayout("x.raw", "raw", size, sector_size, disk_guid, list(parts))


def template(disk_mib=44):
    """The conftest small_disk shape: ESP 16, XBOOTLDR 8, root 16, swap 2 (MiB), from 1 MiB."""
    return layout(
        [
            part(1, 1, 16, role=Role.ESP, content="fat"),
            part(2, 17, 8, role=Role.XBOOTLDR),
            part(3, 25, 16, role=Role.ROOT),
            part(4, 41, 2, content="swap"),
        ],
        disk_mib=disk_mib,
    )


def test_encrypting_root_grows_it_by_the_header_and_shifts_what_follows():
    lay = template()
    plan = plan_relayout(lay, {3}, HDR)
    esp, xbl, root, swap = plan.partitions
    assert (esp.first_lba, esp.last_lba) == (lay.partitions[0].first_lba, lay.partitions[0].last_lba)
    assert (xbl.first_lba, xbl.last_lba) == (lay.partitions[1].first_lba, lay.partitions[1].last_lba)
    assert root.first_lba == 25 * LBAS_PER_MIB, "the encrypted partition starts where it did"
    assert root.size_bytes == 16 * MiB + HDR and root.growth == HDR
    assert root.data_offset == HDR and root.data_size == 16 * MiB == root.plaintext_size
    assert root.src_offset == 25 * MiB
    assert swap.first_lba == (41 + 16) * LBAS_PER_MIB and swap.size_bytes == 2 * MiB
    assert swap.src_first_lba == 41 * LBAS_PER_MIB and not swap.encrypt
    assert plan.disk_size == 44 * MiB + HDR
    assert plan.disk_guid == lay.disk_guid and plan.src_size == lay.virtual_size


def test_identity_is_kept_for_every_partition():
    lay = template()
    plan = plan_relayout(lay, {2, 3}, HDR)
    for old, new in zip(lay.partitions, plan.partitions, strict=True):
        assert (new.number, new.name, new.type_guid, new.partition_guid, new.attributes) == (
            old.number,
            old.name,
            old.type_guid,
            old.partition_guid,
            old.attributes,
        )
        req = new.new_partition()
        assert (req.start_lba, req.partition_guid, req.type_guid) == (
            new.first_lba,
            old.partition_guid,
            old.type_guid,
        )
        assert req.size_bytes == new.size_bytes


def test_two_encrypted_partitions_accumulate_the_shift():
    plan = plan_relayout(template(), {2, 3}, HDR)
    _, xbl, root, swap = plan.partitions
    assert xbl.size_bytes == 8 * MiB + HDR
    assert root.first_lba == (25 + 16) * LBAS_PER_MIB
    assert root.size_bytes == 16 * MiB + HDR
    assert swap.first_lba == (41 + 32) * LBAS_PER_MIB
    assert plan.disk_size == (44 + 32) * MiB
    assert [p.number for p in plan.encrypted] == [2, 3]


def test_partitions_never_overlap_and_stay_aligned_with_odd_sizes():
    # A root whose size is not a whole LUKS sector, packed right against its neighbours.
    lay = layout(
        [
            part(1, 1, 16, role=Role.ESP, content="fat"),
            part(2, 17, last_lba=17 * LBAS_PER_MIB + 3 * LBAS_PER_MIB + 4),  # 3 MiB + 5 sectors
            part(3, 21, 4),
            part(4, 25, last_lba=25 * LBAS_PER_MIB + 5 * LBAS_PER_MIB + 8),
        ],
        disk_mib=40,
    )
    plan = plan_relayout(lay, {2, 4}, HDR, sector_size=4096)
    p1, p2, p3, p4 = plan.partitions
    assert p2.plaintext_size == 3 * MiB + 5 * 512
    assert p2.data_size == 3 * MiB + 4096, "padded up to a whole 4096-byte LUKS sector"
    assert p2.size_bytes == HDR + p2.data_size
    for a, b in zip(plan.partitions, plan.partitions[1:], strict=False):
        assert a.last_lba < b.first_lba
    assert p3.first_lba % LBAS_PER_MIB == 0 and p4.first_lba % LBAS_PER_MIB == 0
    assert p3.first_lba >= 21 * LBAS_PER_MIB + HDR // 512
    assert plan.disk_size % MiB == 0
    assert plan.disk_size >= (p4.last_lba + 1 + 33) * 512
    # With 512-byte LUKS sectors no padding is needed.
    plan512 = plan_relayout(lay, {2}, HDR, sector_size=512)
    assert plan512.partition(2).data_size == plan512.partition(2).plaintext_size


def test_gaps_before_partitions_are_kept():
    lay = layout([part(1, 1, 16, role=Role.ESP, content="fat"), part(2, 100, 4), part(3, 200, 4)], 300)
    plan = plan_relayout(lay, {2}, HDR)
    assert plan.partition(2).first_lba == 100 * LBAS_PER_MIB
    assert plan.partition(3).first_lba == (200 + 16) * LBAS_PER_MIB
    assert plan.disk_size == 316 * MiB


def test_last_partition_filling_the_disk_still_fits_with_the_backup_gpt():
    total = 64 * LBAS_PER_MIB
    lay = layout([part(1, 1, 16, role=Role.ESP, content="fat"), part(2, 17, last_lba=total - 34)], 64)
    plan = plan_relayout(lay, {2}, HDR)
    p2 = plan.partition(2)
    assert p2.data_size % 4096 == 0 and p2.data_size >= p2.plaintext_size
    assert (p2.last_lba + 1 + 33) * 512 <= plan.disk_size
    assert plan.disk_size % MiB == 0


def test_unknown_partition_is_refused_with_the_numbers_there_are():
    with pytest.raises(NoSuchPartitionError) as e:
        plan_relayout(template(), {3, 7}, HDR)
    assert "partition 7" in e.value.message and "1, 2, 3, 4" in e.value.message
    assert "inspect" in e.value.hint


def test_esp_is_refused():
    with pytest.raises(NotEncryptableError) as e:
        plan_relayout(template(), {1, 3}, HDR)
    assert "EFI System Partition" in e.value.message and "firmware" in e.value.message


@pytest.mark.parametrize("kind", ["luks1", "luks2"])
def test_already_luks_is_refused_offering_catalog_only(kind):
    lay = template()
    lay.partitions[2] = part(3, 25, 16, role=Role.ROOT, content=kind)
    with pytest.raises(AlreadyEncryptedError) as e:
        plan_relayout(lay, {3}, HDR)
    assert kind.upper() in e.value.message
    assert "catalog-only" in e.value.hint


def test_too_small_partition_is_refused_with_the_minimum():
    lay = layout([part(1, 1, 16, role=Role.ESP, content="fat"), part(2, 17, 0.5), part(3, 18, 4)], 30)
    with pytest.raises(PartitionTooSmallError) as e:
        plan_relayout(lay, {2}, HDR)
    assert "524288 bytes" in e.value.message and "at least 1024 KiB" in e.value.message


def test_4k_sector_disk_is_refused():
    with pytest.raises(UnsupportedLayoutError, match="4096-byte logical sectors"):
        plan_relayout(layout(template().partitions, 44, sector_size=4096), {3}, HDR)


def test_numbering_out_of_disk_order_is_refused_with_sgdisk_sort():
    parts = template().partitions
    swapped = [parts[0], parts[1], part(4, 25, 16, role=Role.ROOT), part(3, 41, 2)]
    with pytest.raises(UnsupportedLayoutError) as e:
        plan_relayout(layout(swapped, 44), {4}, HDR)
    assert "sgdisk --sort" in e.value.hint


def test_overlaps_and_no_gpt_are_refused():
    parts = [part(1, 1, 16, role=Role.ESP, content="fat"), part(2, 10, 8)]
    with pytest.raises(UnsupportedLayoutError, match="overlap"):
        plan_relayout(layout(parts, 40), {2}, HDR)
    with pytest.raises(UnsupportedLayoutError, match="no readable GPT"):
        plan_relayout(layout(template().partitions, 44, disk_guid=None), {3}, HDR)
    beyond = [part(1, 1, 16, role=Role.ESP, content="fat"), part(2, 17, 30)]
    with pytest.raises(UnsupportedLayoutError, match="beyond the end"):
        plan_relayout(layout(beyond, 40), {2}, HDR)


@pytest.mark.parametrize(
    ("encrypt", "data_offset", "sector_size"),
    [(set(), HDR, 4096), ({3}, 1000, 4096), ({3}, 0, 4096), ({3}, HDR, 1024)],
)
def test_bad_parameters_are_refused(encrypt, data_offset, sector_size):
    with pytest.raises(RelayoutError):
        plan_relayout(template(), encrypt, data_offset, sector_size=sector_size)


def test_refusals_are_user_errors_with_hints():
    for bad in ({9}, {1}):
        with pytest.raises(ShieldwrightError) as e:
            plan_relayout(template(), bad, HDR)
        assert e.value.hint and "\n" not in e.value.one_line()
