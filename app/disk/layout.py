"""``inspect``: an image's partitions, what they hold, and whether it can be a template base.

Only the GPT and a few KiB per partition are read, so inspecting a sparse multi-GiB VHDX takes
milliseconds. Findings are one-line, plain-English sentences; any ERROR means "do not build a
template from this image as it is" (``inspect`` then exits 1).
"""

from __future__ import annotations

import os

from app.disk import partition_types as pt
from app.disk.content import detect_content
from app.disk.gpt import GptEntry, GptTable, read_gpt
from app.disk.image import DiskImage, open_image
from app.disk.model import DiskLayout, Finding, Partition, Role, Severity

MiB = 1024 * 1024


def inspect_image(path: str | os.PathLike[str]) -> DiskLayout:
    """Open ``path`` (any supported format) and describe it. Unreadable images raise ImageError."""
    with open_image(path) as image:
        return layout_of(image)


def layout_of(image: DiskImage) -> DiskLayout:
    """Describe an already opened image: GPT, partitions with content, validation findings."""
    table = read_gpt(image)
    findings = list(table.findings)
    partitions: list[Partition] = []
    for entry in table.entries:
        if entry.first_lba > entry.last_lba:
            # No sane size exists; leaving it out keeps every Partition in the model well-formed.
            findings.append(
                Finding(
                    Severity.ERROR,
                    f"Partition {entry.number} ends (LBA {entry.last_lba}) before it starts "
                    f"(LBA {entry.first_lba}); it was left out",
                )
            )
            continue
        partitions.append(_partition(image, table, entry))
    partitions.sort(key=lambda p: p.number)
    if table.found:
        findings += _geometry_findings(table, partitions)
        findings += _role_findings(partitions)
        findings += _sector_findings(table)
    return DiskLayout(
        path=str(image.path),
        format=image.format,
        virtual_size=image.virtual_size,
        sector_size=table.sector_size,
        disk_guid=table.disk_guid,
        partitions=partitions,
        findings=findings,
    )


def _partition(image: DiskImage, table: GptTable, entry: GptEntry) -> Partition:
    ss = table.sector_size
    type_name, role = pt.classify(entry.type_guid)
    size = (entry.last_lba - entry.first_lba + 1) * ss
    return Partition(
        number=entry.number,
        name=entry.name,
        type_guid=entry.type_guid,
        type_name=type_name,
        partition_guid=entry.partition_guid,
        first_lba=entry.first_lba,
        last_lba=entry.last_lba,
        size_bytes=size,
        content=detect_content(image, entry.first_lba * ss, size)
        if entry.first_lba < table.total_sectors
        else "unknown",
        role=role,
        attributes=entry.attributes,
    )


def _numbers(parts: list[Partition]) -> str:
    nums = [str(p.number) for p in parts]
    return ", ".join(nums[:-1]) + " and " + nums[-1] if len(nums) > 1 else (nums[0] if nums else "")


def _geometry_findings(table: GptTable, parts: list[Partition]) -> list[Finding]:
    """Placement: inside the disk, inside the usable area, no overlaps, 1 MiB alignment, unique GUIDs."""
    out: list[Finding] = []
    last_lba = table.total_sectors - 1
    for p in parts:
        if p.last_lba > last_lba:
            out.append(
                Finding(
                    Severity.ERROR,
                    f"Partition {p.number} ends at LBA {p.last_lba}, "
                    f"beyond the end of the disk (last LBA {last_lba})",
                )
            )
        elif p.first_lba < table.first_usable_lba or p.last_lba > table.last_usable_lba:
            out.append(
                Finding(
                    Severity.ERROR,
                    f"Partition {p.number} (LBAs {p.first_lba}-{p.last_lba}) lies outside the usable area "
                    f"(LBAs {table.first_usable_lba}-{table.last_usable_lba}) and overlaps the GPT itself",
                )
            )
        if (p.first_lba * table.sector_size) % MiB:
            out.append(
                Finding(
                    Severity.WARNING,
                    f"Partition {p.number} starts at LBA {p.first_lba}, not on a 1 MiB boundary: "
                    "slower I/O on most storage; realign it before building a template",
                )
            )
    # Sweep in start order, remembering the partition that reaches furthest: O(n log n) even for
    # a (hostile) table with thousands of entries.
    by_start = sorted(parts, key=lambda p: (p.first_lba, p.number))
    reach: Partition | None = None
    for p in by_start:
        if reach is not None and p.first_lba <= reach.last_lba:
            a, b = sorted((reach, p), key=lambda q: q.number)
            lo, hi = p.first_lba, min(p.last_lba, reach.last_lba)
            out.append(
                Finding(Severity.ERROR, f"Partitions {a.number} and {b.number} overlap (LBAs {lo}-{hi})")
            )
        if reach is None or p.last_lba > reach.last_lba:
            reach = p
    seen: dict[str, Partition] = {}
    for p in parts:
        other = seen.setdefault(p.partition_guid, p)
        if other is not p:
            out.append(
                Finding(
                    Severity.ERROR,
                    f"Partitions {other.number} and {p.number} have the same unique GUID {p.partition_guid}: "
                    "PARTUUID references and the volume catalog would be ambiguous",
                )
            )
    return out


def _role_findings(parts: list[Partition]) -> list[Finding]:
    """What a template needs: exactly one ESP and a discoverable x86-64 root."""
    out: list[Finding] = []
    esps = [p for p in parts if p.role is Role.ESP]
    if not esps:
        out.append(
            Finding(
                Severity.ERROR,
                f"No EFI System Partition (type {pt.ESP}): UEFI firmware would find nothing to boot",
            )
        )
    elif len(esps) > 1:
        # ERROR, not WARNING: which ESP the firmware boots from depends on its own boot-entry and
        # removable-media rules, while the build installs the signed UKI, the shim fallback CSV and
        # the volume catalog into exactly one. With two, the VM may boot the unsigned/old one and
        # the measured PCRs would not match the sealed policy.
        out.append(
            Finding(
                Severity.ERROR,
                f"Partitions {_numbers(esps)} are all EFI System Partitions: firmware may boot from either; "
                "keep one and change the others' type",
            )
        )
    for p in esps:
        if p.content not in ("fat", "empty", "unknown"):
            out.append(
                Finding(
                    Severity.WARNING,
                    f"The EFI System Partition (partition {p.number}) holds {p.content}, not FAT: "
                    "firmware can only read FAT",
                )
            )

    roots = [p for p in parts if p.type_guid == pt.ROOT_X86_64]
    if not roots:
        out.append(Finding(Severity.ERROR, _no_root_message(parts)))
    elif len(roots) > 1:
        out.append(
            Finding(
                Severity.WARNING,
                f"Partitions {_numbers(roots)} are all x86-64 root partitions: systemd picks one by label "
                "version, make sure it is the intended one",
            )
        )
    for p in roots:
        if p.content == "luks2":
            out.append(
                Finding(
                    Severity.INFO,
                    f"The root partition (partition {p.number}) is already LUKS2-encrypted; "
                    "the build cannot read or hash its contents without its key",
                )
            )
        elif p.content == "luks1":
            out.append(
                Finding(
                    Severity.WARNING,
                    f"The root partition (partition {p.number}) is LUKS1-encrypted: LUKS1 cannot hold "
                    "systemd TPM2 tokens; convert a copy with cryptsetup convert --type luks2",
                )
            )
    return out


def _no_root_message(parts: list[Partition]) -> str:
    base = (
        f"No discoverable x86-64 root partition (type {pt.ROOT_X86_64}): "
        "systemd-gpt-auto-generator finds the root by this type, and the template's UKI has no root= option"
    )
    foreign = [p for p in parts if p.type_guid in pt.FOREIGN_ROOTS]
    if foreign:
        p = foreign[0]
        return f"{base}; partition {p.number} is a root for {pt.FOREIGN_ROOTS[p.type_guid]}, not x86-64"
    generic = [p for p in parts if p.type_guid == pt.LINUX_GENERIC]
    if generic:
        p = generic[0]
        return (
            f"{base}; if partition {p.number} (generic Linux filesystem, {pt.LINUX_GENERIC}) is the root, "
            f"change its type to {pt.ROOT_X86_64} (on a copy: sgdisk -t {p.number}:8304)"
        )
    return base


def _sector_findings(table: GptTable) -> list[Finding]:
    ss = table.sector_size
    if ss == 512:
        return []
    return [
        Finding(
            Severity.WARNING,
            f"The disk uses {ss}-byte logical sectors: the GPT only works if the VM's virtual disk "
            f"also presents {ss}-byte sectors (fixed VHD is always 512; some firmware and clouds "
            f"support only 512), and LUKS2 will use {ss}-byte encryption sectors",
        )
    ]
