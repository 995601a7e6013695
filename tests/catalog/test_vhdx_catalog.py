"""Issue 19, "Done means" 3: a VHDX template carries its signed catalog as a user metadata item.

``vsc extract`` reads it from there first and gives the bytes of ``<output>.vsc``; ``qemu-img check`` and
``qemu-img convert`` (independent readers that must ignore the item) still accept the file and read the
same disk; ``shieldwright verify`` checks that copy and says when the ESP holds a different one. The item
is found in the file by a parser written here from MS-VHDX, not by the engine's reader. Damaged, oversized
and absent items give a one-line error or fall back to the ESP, with bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from app.catalog.create import create_catalog
from app.catalog.extract import extract_catalog
from app.catalog.format import ESP_CATALOG_PATH
from app.disk.formats import vhdx
from app.disk.image import open_image
from app.disk.writers import write_image
from app.errors import CorruptImageError
from app.template.verify import CATALOG_COPIES_CHECK, verify_template
from tests import template_helpers as th
from tests.catalog.helpers import writable_copy
from tests.conftest import require_tool, run
from tests.hostile.measure import PEAK_BOUND_KIB, cli, run_measured
from tests.template_helpers import ALL_CHECKS, Template

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
KiB = 1024
#: The item's GUID as docs/formats/vsc.md gives it (text form), not taken from the engine.
DOCUMENTED_GUID = "281be772-a3a3-4bcd-a965-658ee1f80000"


# --- an independent reader of the metadata table (MS-VHDX 2.2.3 region table, 2.6.1 metadata table) ------


def regions(path: Path) -> dict[str, tuple[int, int, int]]:
    """``{region GUID text: (file offset, length, index of its entry)}`` from region table 1."""
    with open(path, "rb") as f:
        f.seek(192 * KiB)
        table = f.read(64 * KiB)
    assert table[:4] == b"regi"
    count = struct.unpack_from("<I", table, 8)[0]
    out = {}
    for i in range(count):
        gid, offset, length, _ = struct.unpack_from("<16sQII", table, 16 + 32 * i)
        out[str(uuid.UUID(bytes_le=gid))] = (offset, length, i)
    return out


def metadata_entries(path: Path) -> list[tuple[str, int, int, int]]:
    """``(item GUID text, file offset, length, flags)`` of every metadata table entry."""
    region_off, _, _ = regions(path)["8b7ca206-4790-4b9a-b8fe-575f050f886e"]
    with open(path, "rb") as f:
        f.seek(region_off)
        table = f.read(64 * KiB)
    assert table[:8] == b"metadata"
    count = struct.unpack_from("<H", table, 10)[0]
    out = []
    for i in range(count):
        gid, offset, length, flags, _ = struct.unpack_from("<16sIIII", table, 32 + 32 * i)
        out.append((str(uuid.UUID(bytes_le=gid)), region_off + offset, length, flags))
    return out


def catalog_parts(path: Path) -> list[tuple[str, int, int, int]]:
    """The catalog's items, in GUID order (part 0 first)."""
    return sorted(e for e in metadata_entries(path) if e[0][:-4] == DOCUMENTED_GUID[:-4])


def item_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        return b"".join(os.pread(f.fileno(), length, off) for _, off, length, _ in catalog_parts(path))


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bit by bit: independent of app.disk.crc32c."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def reseal(buf: bytearray) -> None:
    buf[4:8] = bytes(4)
    struct.pack_into("<I", buf, 4, crc32c(bytes(buf)))


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(small_disk: Path) -> Template:
    return th.build_template(small_disk)


def to_vhdx(raw: Path, dst: Path, vsc: bytes | None) -> Path:
    with open_image(raw) as image:
        write_image(image, dst, "vhdx", vhdx_user_items=vhdx.catalog_items(vsc) if vsc else ())
    return dst


@pytest.fixture(scope="module")
def with_item(template: Template, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template as a VHDX carrying its catalog the way ``shieldwright build`` writes it."""
    path = to_vhdx(template.path, tmp_path_factory.mktemp("vhdx") / "t.vhdx", template.vsc)
    path.chmod(0o444)
    return path


def shieldwright(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "app", *map(str, args)]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shieldwright: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- the item as written ------------------------------------------------------------------------------------


def test_the_item_is_a_user_item_with_the_documented_guid(with_item: Path, template: Template) -> None:
    assert str(uuid.UUID(bytes_le=vhdx.CATALOG_ITEM)) == DOCUMENTED_GUID
    parts = catalog_parts(with_item)
    assert [(g, flags) for g, _, _, flags in parts] == [(DOCUMENTED_GUID, 1)]  # IsUser only
    assert item_bytes(with_item) == template.vsc
    doc = (ROOT / "docs/formats/vsc.md").read_text()
    assert DOCUMENTED_GUID in doc and "IsUser" in doc
    # the system items keep their flags (IsRequired, IsVirtualDisk), so nothing else changed
    others = {g: flags for g, _, _, flags in metadata_entries(with_item) if g != DOCUMENTED_GUID}
    assert sorted(others.values()) == [4, 6, 6, 6, 6]


def test_vsc_extract_gives_the_catalog_bytes(with_item: Path, template: Template, tmp_path: Path) -> None:
    for extra in ((), ("--from", "vhdx")):
        out = tmp_path / f"out{len(extra)}.vsc"
        proc = shieldwright("vsc", "extract", with_item, "-o", out, *extra)
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == template.vsc


def test_qemu_img_accepts_it_and_reads_the_same_disk(
    with_item: Path, template: Template, tmp_path: Path
) -> None:
    require_tool("qemu-img")
    check = subprocess.run(
        ["qemu-img", "check", "-f", "vhdx", str(with_item)], capture_output=True, text=True
    )
    assert check.returncode == 0 and "No errors were found" in check.stdout, check.stdout + check.stderr
    info = json.loads(run("qemu-img", "info", "--output=json", with_item).stdout)
    assert info["format"] == "vhdx" and info["virtual-size"] == template.path.stat().st_size
    converted = tmp_path / "converted.raw"
    run("qemu-img", "convert", "-f", "vhdx", "-O", "raw", with_item, converted)
    digest = hashlib.sha256(converted.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(template.path.read_bytes()).hexdigest()
    with open_image(with_item) as image:
        ours = image.read(0, image.virtual_size)
    assert hashlib.sha256(ours).hexdigest() == digest
    # qemu-img's own VHDX copy drops the item (it does not know it) and still reads the same disk
    copy = tmp_path / "copy.vhdx"
    run("qemu-img", "convert", "-f", "vhdx", "-O", "vhdx", with_item, copy)
    assert catalog_parts(copy) == []
    assert run("qemu-img", "compare", with_item, copy).returncode == 0


def test_a_catalog_larger_than_one_item_is_split_into_1_mib_parts(template: Template, tmp_path: Path) -> None:
    # not a catalog, only its outer DER SEQUENCE header: the reader checks no more, extract_catalog does
    blob = b"\x30\x84" + (2 * MiB + 12345 - 6).to_bytes(4, "big") + os.urandom(2 * MiB + 12345 - 6)
    path = to_vhdx(template.path, tmp_path / "big.vhdx", blob)
    parts = catalog_parts(path)
    assert [g for g, _, _, _ in parts] == [DOCUMENTED_GUID[:-4] + f"{k:04x}" for k in range(3)]
    assert [length for _, _, length, _ in parts] == [MiB, MiB, 12345]
    assert item_bytes(path) == blob
    with vhdx.VhdxImage(path) as image:
        assert image.catalog_item() == blob
    size, meta_len = path.stat().st_size, regions(path)["8b7ca206-4790-4b9a-b8fe-575f050f886e"][1]
    assert meta_len == 3 * MiB  # 128 KiB + 2 MiB + 12345 bytes, rounded up to whole MiB
    assert subprocess.run(["qemu-img", "check", str(path)], capture_output=True).returncode == 0
    assert size == (to_vhdx(template.path, tmp_path / "none.vhdx", None).stat().st_size + 2 * MiB)


def test_verify_checks_the_vhdx_catalog(with_item: Path, template: Template) -> None:
    report = verify_template(with_item, trusted=[template.key.cert])
    assert report.ok, report.failed
    assert [c.name for c in report.checks] == ALL_CHECKS
    catalog = next(c for c in report.checks if c.name == "Catalog")
    assert "from the VHDX metadata (the ESP holds the same catalog)" in catalog.detail
    proc = shieldwright("verify", with_item, "--trust", template.key.cert_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "from the VHDX metadata" in proc.stdout


def test_a_different_catalog_in_the_vhdx_is_read_first_and_the_difference_reported(
    template: Template, tmp_path: Path
) -> None:
    replaced = create_catalog(
        template.path, [3], name="Replaced", version="9.9.9.9", signer=template.key.signer
    )
    path = to_vhdx(template.path, tmp_path / "replaced.vhdx", replaced)
    assert extract_catalog(path) == replaced
    assert extract_catalog(path, source="esp") == template.vsc
    report = verify_template(path, trusted=[template.key.cert])
    assert not report.ok and {c.name for c in report.failed} == {CATALOG_COPIES_CHECK}
    detail = report.failed[0].detail
    assert "differs from" in detail and ESP_CATALOG_PATH in detail
    assert (
        hashlib.sha256(replaced).hexdigest() in detail and hashlib.sha256(template.vsc).hexdigest() in detail
    )
    assert "Replaced 9.9.9.9" in next(c.detail for c in report.checks if c.name == "Catalog")
    # a catalog file given explicitly is used alone, as before
    vsc = tmp_path / "t.vsc"
    vsc.write_bytes(template.vsc)
    assert verify_template(path, vsc=vsc, trusted=[template.key.cert]).ok


# --- damaged, oversized, absent -----------------------------------------------------------------------------


def test_a_damaged_item_is_a_one_line_error_not_the_esp_copy(
    with_item: Path, template: Template, tmp_path: Path
) -> None:
    path = writable_copy(with_item, tmp_path / "damaged.vhdx")
    ((_, offset, length, _),) = catalog_parts(path)
    with open(path, "r+b") as f:
        byte = os.pread(f.fileno(), 1, offset + length // 2)
        os.pwrite(f.fileno(), bytes([byte[0] ^ 0x20]), offset + length // 2)
    one_line_error(shieldwright("vsc", "extract", path, "-o", tmp_path / "o.vsc"),
                   "the catalog in the VHDX metadata is damaged", "--from esp")  # fmt: skip
    assert not (tmp_path / "o.vsc").exists()
    proc = shieldwright("vsc", "extract", path, "-o", tmp_path / "o.vsc", "--from", "esp")
    assert proc.returncode == 0 and (tmp_path / "o.vsc").read_bytes() == template.vsc
    # verify: the copies check fails and says why; the ESP's catalog is still checked against the disk
    report = verify_template(path, trusted=[template.key.cert])
    assert {c.name for c in report.failed} == {CATALOG_COPIES_CHECK}
    assert "the catalog in the VHDX metadata is damaged" in report.failed[0].detail
    assert next(c for c in report.checks if c.name == "Catalog").detail.startswith("from the ESP")
    assert subprocess.run(["qemu-img", "check", str(path)], capture_output=True).returncode == 0


def _set_parts(path: Path, lengths: list[int], *, region_len: int | None = None) -> None:
    """Rewrite the catalog's table entries of ``path`` (in place) to parts of ``lengths``, 1 MiB apart from
    128 KiB on, in a metadata region moved to the end of the file and grown (sparse) to hold them, or to
    ``region_len``; both region tables resealed. The bytes of the parts are holes (zeros)."""
    regs = regions(path)
    meta_off, _, meta_index = regs["8b7ca206-4790-4b9a-b8fe-575f050f886e"]
    with open(path, "r+b") as f:
        fd = f.fileno()
        table = bytearray(os.pread(fd, MiB, meta_off))
        count = struct.unpack_from("<H", table, 10)[0]
        system = [table[32 + 32 * i : 64 + 32 * i] for i in range(count)]
        system = [e for e in system if bytes(e[:14]) != vhdx.CATALOG_ITEM[:14]]
        new_off = -(-os.fstat(fd).st_size // MiB) * MiB
        start = 128 * KiB
        new_len = region_len or -(-(start + len(lengths) * MiB) // MiB) * MiB
        region = bytearray(table[: 64 * KiB + 4 * KiB])  # the table and the system items
        region[32:] = bytes(len(region) - 32)
        struct.pack_into("<H", region, 10, len(system) + len(lengths))
        for i, entry in enumerate(system):
            region[32 + 32 * i : 64 + 32 * i] = entry
        region[64 * KiB :] = table[64 * KiB : 68 * KiB]
        for k, length in enumerate(lengths):
            at = 32 + 32 * (len(system) + k)
            struct.pack_into("<16sIIII", region, at, vhdx.catalog_item_id(k), start + k * MiB, length, 1, 0)
        os.ftruncate(fd, new_off + new_len)
        os.pwrite(fd, bytes(region), new_off)
        for base in (192 * KiB, 256 * KiB):
            rt = bytearray(os.pread(fd, 64 * KiB, base))
            struct.pack_into("<QI", rt, 16 + 32 * meta_index + 16, new_off, new_len)
            reseal(rt)
            os.pwrite(fd, bytes(rt), base)


@pytest.mark.parametrize(
    ("lengths", "needle"),
    [
        ([MiB] * 65, "declares 65 parts"),
        ([MiB, MiB + 1], "part 1 has an invalid length"),
        ([MiB - 1, 5], "part 0 has an invalid length"),
    ],
    ids=["too-many-parts", "part-over-1-MiB", "short-middle-part"],
)
def test_an_oversized_or_malformed_item_is_refused_before_reading(
    with_item: Path, tmp_path: Path, lengths: list[int], needle: str
) -> None:
    path = writable_copy(with_item, tmp_path / "bad.vhdx")
    _set_parts(path, lengths)
    with pytest.raises(CorruptImageError, match=needle):
        extract_catalog(path)
    one_line_error(shieldwright("vsc", "extract", path, "-o", tmp_path / "o.vsc"), needle)
    with vhdx.VhdxImage(path) as image:  # the disk itself still reads: the item is not needed for that
        assert image.has_catalog_item and image.read(0, 512)[510:] == b"\x55\xaa"


def test_a_missing_part_and_an_item_past_the_region_are_refused(with_item: Path, tmp_path: Path) -> None:
    path = writable_copy(with_item, tmp_path / "gap.vhdx")
    _set_parts(path, [MiB, MiB, 100])
    with open(path, "r+b") as f:  # renumber part 1 as part 3
        meta_off = regions(path)["8b7ca206-4790-4b9a-b8fe-575f050f886e"][0]
        table = os.pread(f.fileno(), 64 * KiB, meta_off)
        at = table.find(vhdx.catalog_item_id(1))
        os.pwrite(f.fileno(), vhdx.catalog_item_id(3), meta_off + at)
    with pytest.raises(CorruptImageError, match="lacks part 1"):
        extract_catalog(path)
    path = writable_copy(with_item, tmp_path / "past.vhdx")
    _set_parts(path, [MiB], region_len=MiB)  # part 0 ends at 1 MiB + 128 KiB: past the region's end
    with pytest.raises(CorruptImageError, match="part 0 lies outside the metadata region"):
        extract_catalog(path)


@pytest.mark.parametrize("der_header", [False, True], ids=["holes", "der-header-then-holes"])
def test_the_largest_hostile_item_costs_bounded_memory(
    with_item: Path, tmp_path: Path, der_header: bool
) -> None:
    """64 parts of 1 MiB (the most we read) that are holes in a sparse file, refused in one line under the
    hostile-input memory bound: at once when part 0 is not the start of a 64 MiB DER SEQUENCE, after
    reading them all when it is."""
    path = writable_copy(with_item, tmp_path / "hostile.vhdx")
    _set_parts(path, [MiB] * 64)
    if der_header:
        _, offset, _, _ = catalog_parts(path)[0]
        with open(path, "r+b") as f:
            os.pwrite(f.fileno(), b"\x30\x84" + (64 * MiB - 6).to_bytes(4, "big"), offset)
    assert os.stat(path).st_blocks * 512 < 64 * MiB  # sparse: the parts are not on disk
    result = run_measured(cli("vsc", "extract", path, "-o", tmp_path / "o.vsc"), timeout=60)
    assert result.returncode == 2 and result.peak_kib < PEAK_BOUND_KIB, result.describe()
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "VHDX metadata" in lines[0], result.stderr
    expected = "is damaged: malformed signature" if der_header else "does not start with a DER SEQUENCE"
    assert expected in lines[0], lines[0]


def test_a_vhdx_without_the_item_extracts_from_the_esp(template: Template, tmp_path: Path) -> None:
    require_tool("qemu-img")
    plain = tmp_path / "qemu.vhdx"
    run("qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic", template.path, plain)
    ours = to_vhdx(template.path, tmp_path / "ours.vhdx", None)
    for path in (plain, ours):
        assert catalog_parts(path) == []
        out = tmp_path / f"{path.stem}.vsc"
        proc = shieldwright("vsc", "extract", path, "-o", out)
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == template.vsc
        one_line_error(shieldwright("vsc", "extract", path, "-o", tmp_path / "x.vsc", "--from", "vhdx"),
                       "has no catalog in its VHDX metadata")  # fmt: skip
        catalog = next(
            c for c in verify_template(path, trusted=[template.key.cert]).checks if c.name == "Catalog"
        )
        assert catalog.ok and catalog.detail.startswith("from the ESP")
    one_line_error(shieldwright("vsc", "extract", template.path, "-o", tmp_path / "x.vsc", "--from", "vhdx"),
                   "is no VHDX")  # fmt: skip


def test_the_writer_refuses_items_it_cannot_store(template: Template, tmp_path: Path) -> None:
    with open_image(template.path) as image:
        for fmt, items, needle in [
            ("raw", [(vhdx.CATALOG_ITEM, b"x")], "only be stored in a VHDX"),
            ("vhdx", [(vhdx.CATALOG_ITEM, bytes(MiB + 1))], "at most"),
            ("vhdx", [(vhdx.CATALOG_ITEM, b"a"), (vhdx.CATALOG_ITEM, b"b")], "distinct"),
        ]:
            with pytest.raises(ValueError, match=needle):
                write_image(image, tmp_path / f"x.{fmt}", fmt, vhdx_user_items=items)
    with pytest.raises(ValueError):
        vhdx.catalog_items(bytes(vhdx.MAX_CATALOG_BYTES + 1))
    assert not list(tmp_path.iterdir())


# --- the build ----------------------------------------------------------------------------------------------


def test_a_vhdx_build_carries_its_catalog(demo_image: Path, tmp_path: Path) -> None:
    """Done 3 end to end: ``shieldwright build`` to VHDX; ``vsc extract`` gives ``<output>.vsc`` byte for
    byte, qemu-img checks and converts the file, ``shieldwright verify`` checks the VHDX's catalog."""
    from tests.build_helpers import build, make_keys, make_recipe

    require_tool("qemu-img")
    keys = make_keys(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = build(make_recipe(demo_image, out_dir / "template.vhdx", keys, fmt="vhdx"), keys)
    vsc = result.catalog.read_bytes()
    assert item_bytes(result.output) == vsc
    extracted = tmp_path / "extracted.vsc"
    proc = shieldwright("vsc", "extract", result.output, "-o", extracted)
    assert proc.returncode == 0, proc.stderr
    assert extracted.read_bytes() == vsc
    check = subprocess.run(
        ["qemu-img", "check", "-f", "vhdx", str(result.output)], capture_output=True, text=True
    )
    assert check.returncode == 0 and "No errors were found" in check.stdout, check.stdout + check.stderr
    converted = tmp_path / "converted.raw"
    run("qemu-img", "convert", "-f", "vhdx", "-O", "raw", result.output, converted)
    with open_image(result.output) as image, open(converted, "rb") as raw:
        assert raw.seek(0, 2) == image.virtual_size
        for pos in range(0, image.virtual_size, 16 * MiB):
            n = min(16 * MiB, image.virtual_size - pos)
            assert os.pread(raw.fileno(), n, pos) == image.read(pos, n), pos
    proc = shieldwright("verify", result.output, "--trust", keys.uefi_cert, "--trust", keys.catalog.cert_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "from the VHDX metadata (the ESP holds the same catalog)" in proc.stdout
    log = json.loads(result.manifest.read_text())
    assert not any("VHDX metadata" in note for note in log["notes"])  # only an oversized catalog is a note
