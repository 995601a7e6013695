"""The partition model: what ``inspect`` reports and what the wizard shows. Plain dataclasses.

JSON keys are part of the CLI contract (``shieldwright inspect --json``); GUIDs are lower-case strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from app.findings import Finding, Severity, has_errors

__all__ = ["DiskLayout", "Finding", "Partition", "Role", "Severity"]


class Role(StrEnum):
    """What a partition is *for* in a template; drives colour in the layout bar and protection defaults."""

    ESP = "esp"
    XBOOTLDR = "xbootldr"
    ROOT = "root"
    USR = "usr"
    VERITY = "verity"
    SWAP = "swap"
    HOME = "home"
    DATA = "data"
    OTHER = "other"


@dataclass(frozen=True)
class Partition:
    number: int  # 1-based GPT entry index
    name: str
    type_guid: str
    type_name: str
    partition_guid: str
    first_lba: int
    last_lba: int
    size_bytes: int
    content: str  # "fat" "ext2" "ext3" "ext4" "xfs" "btrfs" "luks1" "luks2" "swap" "empty" "unknown"
    role: Role = Role.OTHER
    attributes: int = 0

    @property
    def encrypted(self) -> bool:
        return self.content in ("luks1", "luks2")

    @property
    def protectable(self) -> bool:
        """Whether the template build may encrypt this partition. The ESP never: firmware must read it."""
        return self.role is not Role.ESP

    @property
    def protect_by_default(self) -> bool:
        return self.role in (Role.ROOT, Role.USR, Role.XBOOTLDR)

    def to_dict(self) -> dict[str, object]:
        return {
            "number": self.number,
            "name": self.name,
            "type_guid": self.type_guid,
            "type_name": self.type_name,
            "partition_guid": self.partition_guid,
            "first_lba": self.first_lba,
            "last_lba": self.last_lba,
            "size_bytes": self.size_bytes,
            "content": self.content,
        }


@dataclass
class DiskLayout:
    """Everything ``inspect`` learns about an image."""

    path: str
    format: str
    virtual_size: int
    sector_size: int
    disk_guid: str | None
    partitions: list[Partition] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return has_errors(self.findings)

    def to_dict(self) -> dict[str, object]:
        """The ``inspect --json`` document: exactly these keys."""
        return {
            "format": self.format,
            "virtual_size": self.virtual_size,
            "sector_size": self.sector_size,
            "disk_guid": self.disk_guid,
            "partitions": [p.to_dict() for p in self.partitions],
            "findings": [f.to_dict() for f in self.findings],
        }
