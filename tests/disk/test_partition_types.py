"""Partition type table: DPS GUIDs map to the roles the template build relies on."""

from __future__ import annotations

import re

import pytest

from app.disk import partition_types as pt
from app.disk.model import Role
from tests.conftest import run

GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.mark.parametrize(
    ("guid", "role"),
    [
        ("c12a7328-f81f-11d2-ba4b-00a0c93ec93b", Role.ESP),
        ("bc13c2ff-59e6-4262-a352-b275fd6f7172", Role.XBOOTLDR),
        ("4f68bce3-e8cd-4db1-96e7-fbcaf984b709", Role.ROOT),
        ("8484680c-9521-48c6-9c11-b0720656f69e", Role.USR),
        ("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5", Role.VERITY),
        ("77ff5f63-e7b6-4633-acf4-1565b864c0e6", Role.VERITY),
        ("41092b05-9fc8-4523-994f-2def0408b176", Role.VERITY),
        ("e7bb33fb-06cf-4e81-8273-e543b413e2e2", Role.VERITY),
        ("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f", Role.SWAP),
        ("933ac7e1-2eb4-4f13-b844-0e14e2aef915", Role.HOME),
        ("3b8f8425-20e0-4f3b-907f-1a25a76f98e8", Role.DATA),
        ("4d21b016-b534-45c2-a9fb-5c16e091fd2d", Role.DATA),
        ("7ec6f557-3bc5-4aca-b293-16ef5df639d1", Role.DATA),
        ("0fc63daf-8483-4772-8e79-3d69d8477de4", Role.DATA),
        ("b921b045-1df0-41c3-af44-4c6f280d3fae", Role.ROOT),
        ("b0e01050-ee5f-4390-949a-9101b17104e9", Role.USR),
        ("44479540-f297-41b2-9af7-d131d5f0458a", Role.ROOT),
        ("75250d76-8cc6-458e-bd66-bd47cc81a812", Role.USR),
        ("21686148-6449-6e6f-744e-656564454649", Role.OTHER),
        ("8da63339-0007-60c0-c436-083ac8230908", Role.OTHER),
        ("e3c9e316-0b5c-4db8-817d-f92df00215ae", Role.OTHER),
        ("de94bba4-06d1-4d40-a16a-bfd50179d6ac", Role.OTHER),
    ],
)
def test_known_roles(guid: str, role: Role) -> None:
    name, got = pt.classify(guid)
    assert got is role
    assert name != "Unknown type"


def test_lookup_ignores_case() -> None:
    assert pt.classify("C12A7328-F81F-11D2-BA4B-00A0C93EC93B") == pt.classify(pt.ESP)
    assert pt.type_name(pt.ROOT_X86_64.upper()) == "Linux root (x86-64)"


def test_unknown_type() -> None:
    assert pt.classify("01234567-89ab-cdef-0123-456789abcdef") == ("Unknown type", Role.OTHER)
    assert pt.role_of("") is Role.OTHER


def test_table_is_well_formed() -> None:
    names = [name for name, _ in pt.PARTITION_TYPES.values()]
    assert len(names) == len(set(names)), "two types share a friendly name"
    assert max(map(len, names)) <= 24, "the CLI's Type column is 24 characters wide"
    for guid in pt.PARTITION_TYPES:
        assert GUID_RE.match(guid), guid
    for required in (pt.LINUX_LVM, pt.LINUX_RAID, pt.MS_BASIC_DATA, pt.BIOS_BOOT, pt.LINUX_RESERVED):
        assert required in pt.PARTITION_TYPES


def test_gdisk_agrees_the_types_exist(tmp_path) -> None:
    """gdisk knows every non-signature GUID in the table by a name, i.e. none is a typo."""
    disk = tmp_path / "t.img"
    with open(disk, "wb") as f:
        f.truncate(4 * 1024 * 1024)
    signature_types = {pt.ROOT_X86_64_VERITY_SIG, pt.USR_X86_64_VERITY_SIG}  # newer than gdisk 1.0.9
    guids = sorted(set(pt.PARTITION_TYPES) - signature_types)
    args: list[str] = []
    for i, guid in enumerate(guids, 1):
        args += ["-n", f"{i}:0:+8", "-t", f"{i}:{guid}"]
    run("sgdisk", "-o", "-a", "1", *args, disk)  # one write: sgdisk sleeps a second after each
    for i, guid in enumerate(guids, 1):
        info = run("sgdisk", "-i", str(i), disk).stdout
        line = next(ln for ln in info.splitlines() if ln.startswith("Partition GUID code"))
        assert guid.upper() in line
        assert "(Unknown)" not in line, line
