"""ESP access through mtools, graded by fsck.fat, mdir/mtype at offsets sgdisk reports, and byte compares."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from app.disk.esp import (
    EspFileMissingError,
    list_esp,
    normalize_path,
    plan_esp_install,
    read_esp_file,
    shim_fallback_csv,
    write_esp_files,
)
from app.disk.formats.raw import RawImage
from app.disk.image import open_image
from app.disk.layout import layout_of
from app.disk.model import Role
from app.errors import ShieldwrightError
from app.template.demo import SYSTEMD_BOOT_EFI
from tests.conftest import PartSpec, make_gpt_image, qemu_convert, require_tool, run, sgdisk_partitions

MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": os.devnull}
UKI = b"MZ" + os.urandom(300_000)


def _esp_offset(image: Path) -> tuple[int, int]:
    """(byte offset, size) of partition 1 (the ESP) as sgdisk sees it."""
    p = sgdisk_partitions(image)[0]
    return p["first_lba"] * 512, (p["last_lba"] - p["first_lba"] + 1) * 512  # type: ignore[operator]


def _mtool(tool: str, image: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    require_tool(tool)
    offset, _ = _esp_offset(image)
    return subprocess.run([tool, "-i", f"{image}@@{offset}", *args], capture_output=True, env=MTOOLS_ENV)


def _fsck_clean(image: Path, tmp: Path) -> str:
    offset, size = _esp_offset(image)
    part = tmp / "esp-extract.img"
    with open(image, "rb") as f, open(part, "wb") as out:
        f.seek(offset)
        out.write(f.read(size))
    require_tool("fsck.fat")
    proc = subprocess.run(["fsck.fat", "-n", str(part)], capture_output=True, text=True)
    part.unlink()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _copy(src: Path, dst: Path) -> Path:
    run("cp", "--sparse=always", src, dst)
    dst.chmod(0o644)
    return dst


def _esp(image: Path):
    with open_image(image) as img:
        layout = layout_of(img)
    return next(p for p in layout.partitions if p.role is Role.ESP), layout.sector_size


def test_install_plan_writes_uki_and_csv_and_keeps_the_fat_clean(demo_image: Path, tmp_path: Path) -> None:
    out = _copy(demo_image, tmp_path / "out.img")
    esp, ss = _esp(out)
    before = _mtool("mtype", out, "::/EFI/BOOT/BOOTX64.EFI").stdout
    plan = plan_esp_install("shieldwright-test", UKI, "debian", label="Shieldwright Test")
    assert set(plan) == {"\\EFI\\Linux\\shieldwright-test.efi", "\\EFI\\debian\\BOOTX64.CSV"}
    write_esp_files(out, esp, ss, plan, mtime=1704067200)

    assert "files" in _fsck_clean(out, tmp_path)
    listing = _mtool("mdir", out, "-/", "-b", "::/").stdout.decode().split()
    assert "::/EFI/Linux/shieldwright-test.efi" in listing and "::/EFI/debian/BOOTX64.CSV" in listing
    assert _mtool("mtype", out, "::/EFI/Linux/shieldwright-test.efi").stdout == UKI
    # Existing files are untouched.
    assert _mtool("mtype", out, "::/EFI/BOOT/BOOTX64.EFI").stdout == before == SYSTEMD_BOOT_EFI.read_bytes()
    assert "::/loader/loader.conf" in listing and "::/EFI/systemd/systemd-bootx64.efi" in listing

    csv = _mtool("mtype", out, "::/EFI/debian/BOOTX64.CSV").stdout
    assert csv[:2] == b"\xff\xfe"
    text = csv[2:].decode("utf-16-le")
    assert text.endswith("\r\n") and text.count("\r\n") == 1
    fields = text[:-2].split(",")
    assert fields == ["shimx64.efi", "Shieldwright Test", "\\EFI\\Linux\\shieldwright-test.efi ",
                      "Shieldwright UKI shieldwright-test"]  # fmt: skip


def test_only_the_esp_changes(demo_image: Path, tmp_path: Path) -> None:
    out = _copy(demo_image, tmp_path / "out.img")
    esp, ss = _esp(out)
    write_esp_files(out, esp, ss, {"/EFI/Linux/a.efi": b"x" * 1000})
    offset, size = _esp_offset(out)
    with open(demo_image, "rb") as a, open(out, "rb") as b:
        assert a.read(offset) == b.read(offset)
        a.seek(offset + size)
        b.seek(offset + size)
        assert hashlib.sha256(a.read()).digest() == hashlib.sha256(b.read()).digest()
    assert out.stat().st_size == demo_image.stat().st_size


def test_listing_matches_mdir_and_reads_match_mtype(demo_image: Path) -> None:
    esp, ss = _esp(demo_image)
    with open_image(demo_image) as img:
        entries = list_esp(img, esp, ss)
        bare = _mtool("mdir", demo_image, "-/", "-b", "::/").stdout.decode().split("\n")
        expected = {line[2:].rstrip("/") for line in bare if line.startswith("::/")}
        assert {e.path for e in entries} == expected
        assert {e.path for e in entries if e.is_dir} == {line[2:-1] for line in bare if line.endswith("/")}
        boot = next(e for e in entries if e.path == "/EFI/BOOT/BOOTX64.EFI")
        assert boot.size == SYSTEMD_BOOT_EFI.stat().st_size
        for spelling in ("\\EFI\\BOOT\\BOOTX64.EFI", "/EFI/BOOT/BOOTX64.EFI", "efi/boot/bootx64.efi"):
            assert read_esp_file(img, esp, ss, spelling) == SYSTEMD_BOOT_EFI.read_bytes()


def test_non_raw_images_read_the_same(demo_image: Path, tmp_path: Path) -> None:
    qcow = qemu_convert(demo_image, tmp_path / "demo.qcow2", "qcow2")
    esp, ss = _esp(demo_image)
    with open_image(qcow) as q, open_image(demo_image) as r:
        assert list_esp(q, esp, ss) == list_esp(r, esp, ss)
        assert read_esp_file(q, esp, ss, "\\loader\\loader.conf") == read_esp_file(
            r, esp, ss, "/loader/loader.conf"
        )


def test_missing_file_is_a_clear_error(demo_image: Path) -> None:
    esp, ss = _esp(demo_image)
    with open_image(demo_image) as img, pytest.raises(EspFileMissingError) as exc:
        read_esp_file(img, esp, ss, "\\EFI\\Linux\\nope.efi")
    assert "\\EFI\\Linux\\nope.efi" in exc.value.message and exc.value.hint
    assert isinstance(exc.value, ShieldwrightError)


def test_replacing_a_file_and_writing_twice(demo_image: Path, tmp_path: Path) -> None:
    out = _copy(demo_image, tmp_path / "out.img")
    esp, ss = _esp(out)
    write_esp_files(out, esp, ss, {"\\EFI\\Linux\\x.efi": b"first"})
    write_esp_files(out, esp, ss, {"\\EFI\\Linux\\x.efi": b"second, longer", "\\EFI\\Linux\\y.efi": b"y"})
    assert _mtool("mtype", out, "::/EFI/Linux/x.efi").stdout == b"second, longer"
    assert _mtool("mtype", out, "::/EFI/Linux/y.efi").stdout == b"y"
    _fsck_clean(out, tmp_path)


def test_a_full_esp_leaves_the_image_unchanged(small_disk: Path, tmp_path: Path) -> None:
    out = tmp_path / "small.raw"
    shutil.copyfile(small_disk, out)
    out.chmod(0o644)
    before = hashlib.sha256(out.read_bytes()).digest()
    esp, ss = _esp(out)
    with pytest.raises(ShieldwrightError):
        write_esp_files(out, esp, ss, {"\\EFI\\Linux\\big.efi": bytes(32 * 1024 * 1024)})
    assert hashlib.sha256(out.read_bytes()).digest() == before


def test_a_file_in_the_way_of_a_directory_is_refused(demo_image: Path, tmp_path: Path) -> None:
    out = _copy(demo_image, tmp_path / "out.img")
    esp, ss = _esp(out)
    with pytest.raises(ShieldwrightError, match="is a file, not a directory"):
        write_esp_files(out, esp, ss, {"\\loader\\loader.conf\\x.efi": b"x"})
    with pytest.raises(ShieldwrightError, match="is a directory"):
        write_esp_files(out, esp, ss, {"\\EFI\\BOOT": b"x"})


def test_csv_format_and_validation() -> None:
    csv = shim_fallback_csv("shimx64.efi", "Debian", "\\EFI\\Linux\\deb.efi", "comment")
    assert csv == "\ufeffshimx64.efi,Debian,\\EFI\\Linux\\deb.efi ,comment\r\n".encode("utf-16-le")
    assert (
        shim_fallback_csv(label="L", uki_path="/EFI/Linux/a.efi")
        .decode("utf-16")
        .startswith("shimx64.efi,L,")
    )
    with pytest.raises(ShieldwrightError, match="comma"):
        shim_fallback_csv(label="a,b", uki_path="\\EFI\\Linux\\a.efi")
    with pytest.raises(ShieldwrightError, match="space"):
        shim_fallback_csv(label="a", uki_path="\\EFI\\Linux\\a b.efi")
    with pytest.raises(ShieldwrightError, match="label"):
        shim_fallback_csv(uki_path="\\EFI\\Linux\\a.efi")
    with pytest.raises(ShieldwrightError, match="bad UKI id"):
        plan_esp_install("../evil", b"")
    with pytest.raises(ShieldwrightError, match="vendor"):
        plan_esp_install("ok", b"", "BOOT")
    assert "\\EFI\\fedora\\BOOTX64.CSV" in plan_esp_install("ok", b"", "\\EFI\\fedora")


def test_path_normalization() -> None:
    assert normalize_path("\\EFI\\Linux\\x.efi") == "/EFI/Linux/x.efi"
    assert normalize_path("EFI//Linux/x.efi") == "/EFI/Linux/x.efi"
    for bad in ("", "\\", "/EFI/../x", "/EFI/a:b", "/EFI/x?"):
        with pytest.raises(ShieldwrightError):
            normalize_path(bad)


def test_an_empty_esp_lists_nothing_and_accepts_files(tmp_path: Path) -> None:
    """A freshly formatted ESP has an empty root, which mdir reports as 'not found'."""
    disk = make_gpt_image(tmp_path / "empty-esp.raw", (PartSpec(34, "ef00", "ESP", "vfat"),))
    with RawImage(disk) as image:
        esp = layout_of(image).partitions[0]
        assert list_esp(image, esp, 512) == []
    write_esp_files(disk, esp, 512, {"/EFI/Linux/x.efi": b"MZ-test"})
    with RawImage(disk) as image:
        assert [e.path for e in list_esp(image, esp, 512)] == ["/EFI", "/EFI/Linux", "/EFI/Linux/x.efi"]
        assert read_esp_file(image, esp, 512, "\\EFI\\Linux\\x.efi") == b"MZ-test"


def test_reading_the_present_esp_from_the_input_it_was_copied_from(demo_image: Path, tmp_path: Path) -> None:
    """The build copies the ESP unchanged, then reads its present bytes from the input (page cache) rather
    than from the output: same result as reading the output, and nothing outside the ESP is touched."""
    plain = _copy(demo_image, tmp_path / "plain.img")
    fast = _copy(demo_image, tmp_path / "fast.img")
    esp, ss = _esp(fast)
    files = {"/EFI/Linux/a.efi": UKI, "/EFI/Shieldwright/template.vsc": b"catalog" * 999}
    write_esp_files(plain, esp, ss, files, mtime=1704067200)
    with open_image(demo_image) as base:
        write_esp_files(fast, esp, ss, files, mtime=1704067200, current=(base, esp.first_lba * ss))
    assert plain.read_bytes() == fast.read_bytes()
    assert _mtool("mtype", fast, "::/EFI/Linux/a.efi").stdout == UKI
    _fsck_clean(fast, tmp_path)


def test_the_same_files_and_mtime_give_the_same_esp_bytes_a_second_later(
    demo_image: Path, tmp_path: Path
) -> None:
    """New directories carry ``mtime`` too, not the clock: ``mmd`` stamped them with the current time, so
    two builds of the same inputs differed whenever a second boundary fell between them (a flaky test)."""
    import time

    first = _copy(demo_image, tmp_path / "first.img")
    second = _copy(demo_image, tmp_path / "second.img")
    esp, ss = _esp(first)
    files = {"/EFI/New/Deeper/a.efi": UKI}
    write_esp_files(first, esp, ss, files, mtime=1704067200)
    time.sleep(1.1)
    write_esp_files(second, esp, ss, files, mtime=1704067200)
    assert first.read_bytes() == second.read_bytes()
    listing = _mtool("mdir", second, "-a", "::/EFI/New").stdout.decode()
    assert "2024-01-01" in listing and "Deeper" in listing
    _fsck_clean(second, tmp_path)
