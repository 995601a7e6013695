"""GPT partition type GUIDs: a friendly name and the :class:`Role` a partition plays in a template.

The role decides what the wizard colours, what it offers to encrypt and what ``inspect`` checks, so
the Discoverable Partitions Specification (DPS) types are the ones that matter: systemd finds the ESP,
XBOOTLDR, root and /usr by these GUIDs alone, which is why a template needs them (no ``root=``).
A few common non-DPS types are listed only so that ``inspect`` can name them instead of "Unknown".
GUIDs are lower-case strings, as everywhere in the model. Every name/GUID pair was checked against
gdisk's own table (``sgdisk -t N:GUID`` then ``sgdisk -i N``), except the verity-signature types,
which come from the DPS table.
"""

from __future__ import annotations

from app.disk.model import Role

ESP = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
XBOOTLDR = "bc13c2ff-59e6-4262-a352-b275fd6f7172"
ROOT_X86_64 = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
USR_X86_64 = "8484680c-9521-48c6-9c11-b0720656f69e"
ROOT_X86_64_VERITY = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"
USR_X86_64_VERITY = "77ff5f63-e7b6-4633-acf4-1565b864c0e6"
ROOT_X86_64_VERITY_SIG = "41092b05-9fc8-4523-994f-2def0408b176"
USR_X86_64_VERITY_SIG = "e7bb33fb-06cf-4e81-8273-e543b413e2e2"
ROOT_AARCH64 = "b921b045-1df0-41c3-af44-4c6f280d3fae"
USR_AARCH64 = "b0e01050-ee5f-4390-949a-9101b17104e9"
ROOT_X86 = "44479540-f297-41b2-9af7-d131d5f0458a"
USR_X86 = "75250d76-8cc6-458e-bd66-bd47cc81a812"
SWAP = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"
HOME = "933ac7e1-2eb4-4f13-b844-0e14e2aef915"
SRV = "3b8f8425-20e0-4f3b-907f-1a25a76f98e8"
VAR = "4d21b016-b534-45c2-a9fb-5c16e091fd2d"
TMP = "7ec6f557-3bc5-4aca-b293-16ef5df639d1"
LINUX_GENERIC = "0fc63daf-8483-4772-8e79-3d69d8477de4"
BIOS_BOOT = "21686148-6449-6e6f-744e-656564454649"
LINUX_LVM = "e6d6d379-f507-44c2-a23c-238f2a3df928"
LINUX_RAID = "a19d880f-05fc-4d3b-a006-743f0f84911e"
LINUX_RESERVED = "8da63339-0007-60c0-c436-083ac8230908"
MS_BASIC_DATA = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"
MS_RESERVED = "e3c9e316-0b5c-4db8-817d-f92df00215ae"
WINDOWS_RECOVERY = "de94bba4-06d1-4d40-a16a-bfd50179d6ac"

UNKNOWN: tuple[str, Role] = ("Unknown type", Role.OTHER)

#: lower-case type GUID -> (friendly name, role)
PARTITION_TYPES: dict[str, tuple[str, Role]] = {
    ESP: ("EFI System Partition", Role.ESP),
    XBOOTLDR: ("XBOOTLDR (extended boot)", Role.XBOOTLDR),
    ROOT_X86_64: ("Linux root (x86-64)", Role.ROOT),
    USR_X86_64: ("Linux /usr (x86-64)", Role.USR),
    ROOT_X86_64_VERITY: ("Root verity (x86-64)", Role.VERITY),
    USR_X86_64_VERITY: ("/usr verity (x86-64)", Role.VERITY),
    ROOT_X86_64_VERITY_SIG: ("Root verity sig (x86-64)", Role.VERITY),
    USR_X86_64_VERITY_SIG: ("/usr verity sig (x86-64)", Role.VERITY),
    # Other architectures' roots are still roots (the wizard protects them by default); inspect
    # separately complains that a template for x86-64 VMs has no x86-64 root.
    ROOT_AARCH64: ("Linux root (aarch64)", Role.ROOT),
    USR_AARCH64: ("Linux /usr (aarch64)", Role.USR),
    ROOT_X86: ("Linux root (x86)", Role.ROOT),
    USR_X86: ("Linux /usr (x86)", Role.USR),
    SWAP: ("Linux swap", Role.SWAP),
    HOME: ("Linux /home", Role.HOME),
    SRV: ("Linux /srv", Role.DATA),
    VAR: ("Linux /var", Role.DATA),
    TMP: ("Linux /var/tmp", Role.DATA),
    LINUX_GENERIC: ("Linux filesystem", Role.DATA),
    LINUX_LVM: ("Linux LVM", Role.DATA),
    LINUX_RAID: ("Linux RAID", Role.DATA),
    LINUX_RESERVED: ("Linux reserved", Role.OTHER),
    BIOS_BOOT: ("BIOS boot", Role.OTHER),
    MS_BASIC_DATA: ("Microsoft basic data", Role.DATA),
    MS_RESERVED: ("Microsoft reserved", Role.OTHER),
    WINDOWS_RECOVERY: ("Windows recovery", Role.OTHER),
}

#: Root types of architectures other than x86-64: recognised so inspect can say "wrong architecture".
FOREIGN_ROOTS: dict[str, str] = {ROOT_AARCH64: "aarch64", ROOT_X86: "x86 (32-bit)"}


def classify(type_guid: str) -> tuple[str, Role]:
    """``(friendly name, role)`` for a type GUID in any letter case; unknown GUIDs are ``Role.OTHER``."""
    return PARTITION_TYPES.get(type_guid.strip().lower(), UNKNOWN)


def type_name(type_guid: str) -> str:
    return classify(type_guid)[0]


def role_of(type_guid: str) -> Role:
    return classify(type_guid)[1]
