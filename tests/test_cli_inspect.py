"""``shieldwright inspect`` end to end, as a subprocess: every format, the JSON contract, damaged inputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import sgdisk_partitions

ROOT = Path(__file__).resolve().parents[1]
TOP_KEYS = {"format", "virtual_size", "sector_size", "disk_guid", "partitions", "findings"}
PART_KEYS = {
    "number",
    "name",
    "type_guid",
    "type_name",
    "partition_guid",
    "first_lba",
    "last_lba",
    "size_bytes",
    "content",
}
FORMAT_NAMES = {"raw": "raw", "vhd": "vhd", "vhdx": "vhdx", "vhdx-fixed": "vhdx", "qcow2": "qcow2"}
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def inspect(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "inspect", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("shieldwright: error:")


@pytest.mark.parametrize("fmt", list(FORMAT_NAMES))
def test_json_for_every_format(small_disk: Path, small_disk_formats: dict[str, Path], fmt: str) -> None:
    proc = inspect("--json", small_disk_formats[fmt])
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == TOP_KEYS
    assert doc["format"] == FORMAT_NAMES[fmt]
    assert doc["virtual_size"] == small_disk.stat().st_size
    assert doc["sector_size"] == 512
    assert GUID.match(doc["disk_guid"])
    for p in doc["partitions"]:
        assert set(p) == PART_KEYS
        assert GUID.match(p["type_guid"]) and GUID.match(p["partition_guid"])
    keys = ("number", "type_guid", "partition_guid", "first_lba", "last_lba", "name")
    assert [{k: p[k] for k in keys} for p in doc["partitions"]] == sgdisk_partitions(small_disk)
    assert [p["content"] for p in doc["partitions"]] == ["fat", "ext4", "ext4", "swap"]
    for f in doc["findings"]:
        assert set(f) == {"severity", "message"}
    assert not any(f["severity"] == "error" for f in doc["findings"])


def test_plain_text_mentions_every_partition(small_disk: Path) -> None:
    proc = inspect(small_disk)
    assert proc.returncode == 0, proc.stderr
    for p in sgdisk_partitions(small_disk):
        assert p["partition_guid"] in proc.stdout
        assert re.search(
            rf"^\s*{p['number']}\s+{p['first_lba']}\s+{p['last_lba']}\s.*{p['name']}$", proc.stdout, re.M
        )
    assert "Format:       raw" in proc.stdout


def _copy(src: Path, tmp_path: Path, name: str = "copy.raw") -> Path:
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


def test_zeroed_primary_header_exits_1(small_disk: Path, tmp_path: Path) -> None:
    disk = _copy(small_disk, tmp_path)
    with open(disk, "r+b") as f:
        f.seek(512)
        f.write(bytes(512))
    proc = inspect("--json", disk)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    keys = ("number", "type_guid", "partition_guid", "first_lba", "last_lba", "name")
    assert [{k: p[k] for k in keys} for p in doc["partitions"]] == sgdisk_partitions(small_disk)
    assert any(f["severity"] == "error" and "backup" in f["message"] for f in doc["findings"])
    text = inspect(disk)
    assert text.returncode == 1 and "ERROR" in text.stdout and "Primary GPT is damaged" in text.stdout


def test_bad_entry_crc_exits_1(small_disk: Path, tmp_path: Path) -> None:
    disk = _copy(small_disk, tmp_path)
    with open(disk, "r+b") as f:
        f.seek(2 * 512 + 56)  # name of partition 1 in the primary entry array
        f.write("Z".encode("utf-16-le"))
    proc = inspect("--json", disk)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["partitions"][0]["name"] == "ESP"  # from the intact backup
    assert any("CRC" in f["message"] for f in doc["findings"] if f["severity"] == "error")


def test_no_gpt_still_reports_the_image(small_disk: Path, tmp_path: Path) -> None:
    disk = _copy(small_disk, tmp_path)
    with open(disk, "r+b") as f:
        f.seek(512)
        f.write(bytes(512))
        f.seek(-512, 2)
        f.write(bytes(512))
    proc = inspect("--json", disk)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["format"] == "raw" and doc["virtual_size"] == small_disk.stat().st_size
    assert doc["partitions"] == [] and doc["disk_guid"] is None
    assert doc["findings"][0]["message"].startswith("No GPT partition table found")


def test_truncated_vhdx_exits_2(small_disk_formats: dict[str, Path], tmp_path: Path) -> None:
    src = small_disk_formats["vhdx"]
    cut = tmp_path / "cut.vhdx"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert_clean_error(inspect(cut))
    assert_clean_error(inspect("--json", cut))


def test_random_bytes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(1024 * 1024))
    proc = inspect(junk)
    assert proc.returncode in (1, 2), proc.stderr
    assert "Traceback" not in proc.stderr
    if proc.returncode == 2:
        assert_clean_error(proc)
    else:
        assert "No GPT partition table found" in proc.stdout


@pytest.mark.parametrize("case", ["empty", "directory", "missing"])
def test_not_an_image_exits_2(tmp_path: Path, case: str) -> None:
    path = tmp_path / case
    if case == "empty":
        path.write_bytes(b"")
    elif case == "directory":
        path.mkdir()
    assert_clean_error(inspect(path))
    assert_clean_error(inspect("--json", path))


def test_inspect_is_fast(small_disk_formats: dict[str, Path]) -> None:
    """In process: GPT + a few KiB per partition, whatever the container."""
    import time

    from app.disk.layout import inspect_image

    for path in small_disk_formats.values():
        inspect_image(path)  # warm imports
        t0 = time.perf_counter()
        layout = inspect_image(path)
        assert time.perf_counter() - t0 < 0.25, path
        assert len(layout.partitions) == 4
