"""A small template disk for the verify tests, assembled from engines that already exist, plus damage.

The template is what a build produces, in miniature: the 44 MiB ``small_disk`` with its root (partition 3)
LUKS2-encrypted (cheap pbkdf2), a signed UKI and the shim fallback CSV in the ESP, and a signed catalog of
partition 3 at ``ESP_CATALOG_PATH``. The UKI wraps a synthetic bzImage (a valid setup header around
random bytes): verify checks signatures and structure, not whether the kernel boots, and building around
the real kernel would cost seconds per test run. Keys come from openssl, not from our key code.

Built once per test process (functools.cache) and shared read-only; tests damage writable copies.
"""

from __future__ import annotations

import atexit
import functools
import random
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.boot.uki import UkiInputs, build_uki
from app.catalog.create import create_catalog
from app.catalog.format import ESP_CATALOG_PATH
from app.disk.esp import plan_esp_install, write_esp_files
from app.disk.layout import inspect_image
from app.disk.model import Role
from app.luks.imageops import Keyslot, encrypt_partitions
from app.luks.kdf import KdfParams
from tests.catalog.helpers import flip_byte, writable_copy
from tests.conftest import MiB, run
from tests.signing.pe_helpers import TestKey, openssl_key

UKI_ESP_PATH = "\\EFI\\Linux\\test.efi"
UKI_CHECK = "UKI " + UKI_ESP_PATH
ALL_CHECKS = ["GPT", "ESP", UKI_CHECK, "Catalog", "LUKS2 partition 3"]
SECTOR = 512


@dataclass(frozen=True)
class Template:
    path: Path  # read-only
    vsc: bytes
    uki: bytes
    key: TestKey  # signs the UKI and the catalog
    other: TestKey  # an unrelated signer (wrong trust)
    esp_offset: int
    root_offset: int  # partition 3, the LUKS2 container


def fake_kernel(size: int = 64 * 1024) -> bytes:
    """Random bytes with an x86 boot protocol 2.15 setup header: enough for build_uki, which checks it."""
    k = bytearray(random.Random(7).randbytes(size))
    k[0:2] = b"\0\0"  # not a PE: no EFI stub of its own
    k[0x1FE:0x200] = b"\x55\xaa"
    k[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", k, 0x206, 0x020F)
    struct.pack_into("<H", k, 0x20E, 0)  # no version string
    k[0x211] = 0x01  # LOADED_HIGH: a bzImage
    return bytes(k)


@functools.cache
def build_template(small_disk: Path) -> Template:
    work = Path(tempfile.mkdtemp(prefix="sw-template-"))
    atexit.register(shutil.rmtree, work, True)
    key, other = openssl_key(work, "template-signer"), openssl_key(work, "someone-else")
    out = work / "template.raw"
    encrypt_partitions(small_disk, out, [3], [Keyslot(bytearray(b"provisioning"), KdfParams.pbkdf2(1000))])
    uki = build_uki(
        UkiInputs(linux=fake_kernel(), cmdline="quiet", os_release="ID=test\n"), signer=key.signer
    )
    vsc = create_catalog(out, [3], name="Verify test", version="1.2.3.4", signer=key.signer)
    layout = inspect_image(out)
    esp = next(p for p in layout.partitions if p.role is Role.ESP)
    root = next(p for p in layout.partitions if p.number == 3)
    esp_offset = esp.first_lba * layout.sector_size
    # The ESP of small_disk is empty, and listing an empty FAT root fails in mtools' mdir (which
    # write_esp_files runs first), so give it a directory the way an installer would.
    run("mmd", "-i", f"{out}@@{esp_offset}", "::/EFI")
    files = plan_esp_install("test", uki)
    files[ESP_CATALOG_PATH] = vsc
    write_esp_files(out, esp, layout.sector_size, files)
    out.chmod(0o444)
    return Template(out, vsc, uki, key, other, esp_offset, root.first_lba * layout.sector_size)


def copy_of(t: Template, dst: Path) -> Path:
    return writable_copy(t.path, dst)


def find_unique(image: Path, needle: bytes) -> int:
    """Offset of ``needle`` in ``image``, which must hold it exactly once (so we damage the right bytes)."""
    data = image.read_bytes()
    pos = data.find(needle)
    assert pos >= 0 and data.find(needle, pos + 1) < 0, "needle not found exactly once"
    return pos


# --- damage -------------------------------------------------------------------------------------------------


def flip_in_uki(t: Template, image: Path) -> None:
    middle = len(t.uki) // 2
    flip_byte(image, find_unique(image, t.uki[middle : middle + 512]) + 100)


def flip_in_catalog(t: Template, image: Path) -> None:
    flip_byte(image, find_unique(image, t.vsc[200:712]) + 50)


def flip_in_protected_data(t: Template, image: Path) -> None:
    flip_byte(image, t.root_offset + 20 * MiB + 12345)  # past the 16 MiB LUKS2 header: ciphertext


def flip_in_luks_secondary_header(t: Template, image: Path) -> None:
    flip_byte(image, t.root_offset + 16384 + 4096 + 10)  # the secondary copy's JSON area


def flip_in_primary_gpt(t: Template, image: Path) -> None:
    flip_byte(image, SECTOR + 40)  # header: first usable LBA (covered by the header CRC)


def flip_in_primary_gpt_entries(t: Template, image: Path) -> None:
    flip_byte(image, 2 * SECTOR + 128 + 40)  # entry 2's first LBA (covered by the entry array CRC)


def flip_in_backup_gpt(t: Template, image: Path) -> None:
    flip_byte(image, image.stat().st_size - SECTOR + 40)


def flip_in_second_fat(t: Template, image: Path) -> None:
    """Make the ESP's two FAT copies differ (what fsck.fat reports; mtools happily reads the first)."""
    with open(image, "rb") as f:
        f.seek(t.esp_offset)
        boot = f.read(512)
    reserved, fats, per_fat = (
        struct.unpack_from("<H", boot, 14)[0],
        boot[16],
        struct.unpack_from("<H", boot, 22)[0],
    )
    assert fats == 2 and per_fat, "expected FAT16 with two FATs (mkfs.vfat on 16 MiB)"
    flip_byte(image, t.esp_offset + (reserved + per_fat) * 512 + 4000)
