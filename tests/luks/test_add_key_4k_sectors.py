"""``luks add-key`` on a disk with 4096-byte logical sectors, graded by fdisk, dd and cryptsetup.

The disk is partitioned by util-linux ``fdisk -b 4096``; its LUKS2 container is made by ``cryptsetup
luksFormat`` and put in place with ``dd``. After ``shieldwright luks add-key`` the partition, cut out with
``dd`` at the LBAs fdisk reports, must open in cryptsetup with the old and the new passphrase, give the same
volume key, and every byte outside its header area must be the input's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.disk import partition_types as pt
from app.disk import writers
from app.luks import imageops
from app.luks.errors import LuksError
from app.luks.imageops import Keyslot, add_key
from app.luks.kdf import KdfParams
from tests.conftest import MiB, require_tool, run
from tests.luks.cryptsetup import cryptsetup, dump_volume_key, luks_dump
from tests.luks.cryptsetup import test_passphrase as cryptsetup_opens

ROOT = Path(__file__).resolve().parents[2]
OLD, NEW = b"the-old-passphrase-4k", b"the-new-passphrase-4k"
SECTOR = 4096


def make_4k_disk(path: Path) -> dict[int, tuple[int, int]]:
    """A 96 MiB disk with 4096-byte sectors (ESP 8 MiB, root 48 MiB) by fdisk; {number: (first, last)}."""
    require_tool("fdisk")
    with open(path, "wb") as f:
        f.truncate(96 * MiB)
    script = f"g\\nn\\n1\\n\\n+8M\\nt\\n{pt.ESP}\\nn\\n2\\n\\n+48M\\nt\\n2\\n{pt.ROOT_X86_64}\\nw\\n"
    run("sh", "-c", f"printf '{script}' | fdisk -b 4096 {path}")
    out = run("fdisk", "-b", "4096", "-l", "-o", "Device,Start,End", path).stdout.splitlines()
    rows = out[next(i for i, ln in enumerate(out) if ln.startswith("Device")) + 1 :]
    parts = {}
    for ln in filter(str.strip, rows):
        dev, first, last = ln.split()
        parts[int(dev.rsplit("img", 1)[1])] = (int(first), int(last))
    return parts


def cut(image: Path, first: int, last: int, dst: Path) -> Path:
    run("dd", f"if={image}", f"of={dst}", f"bs={SECTOR}", f"skip={first}", f"count={last - first + 1}",
        "status=none")  # fmt: skip
    return dst


def luks_disk(tmp_path: Path) -> tuple[Path, tuple[int, int]]:
    """The 4K disk with a cryptsetup-made LUKS2 container (4096-byte sectors) filling partition 2, and
    random bytes in partition 1 and in the container's data area (so any stray write shows)."""
    disk = tmp_path / "4k.img"
    parts = make_4k_disk(disk)
    first, last = parts[2]
    container = tmp_path / "p2.luks"
    with open(container, "wb") as f:
        f.truncate((last - first + 1) * SECTOR)
    key = tmp_path / "old.key"
    key.write_bytes(OLD)
    fast = ("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
    proc = cryptsetup("luksFormat", "--type", "luks2", "--batch-mode", "--sector-size", "4096", *fast,
                      "--key-file", key, container)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data_offset = int(luks_dump(container).split("offset:", 1)[1].split("[bytes]")[0])
    with open(container, "r+b") as f:
        f.seek(data_offset)
        f.write(os.urandom(4 * MiB))
    run("dd", f"if={container}", f"of={disk}", f"bs={SECTOR}", f"seek={first}", "conv=notrunc", "status=none")
    e_first, e_last = parts[1]
    with open(disk, "r+b") as f:
        f.seek(e_first * SECTOR)
        f.write(os.urandom((e_last - e_first + 1) * SECTOR))
    return disk, parts[2]


def sw(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300)  # fmt: skip


def test_add_key_on_a_4k_sector_disk_keeps_the_container(tmp_path: Path) -> None:
    """Regression (issue 17 item 2): failed on ecab7db because add-key wrote the new header at
    ``first_lba * 512`` - inside the ESP of a 4096-byte-sector disk - so the container never got the new
    keyslot and another partition was overwritten, while the command reported success."""
    disk, (first, last) = luks_disk(tmp_path)
    old_pass, new_pass = tmp_path / "old.pass", tmp_path / "new.pass"
    old_pass.write_bytes(OLD + b"\n")
    new_pass.write_bytes(NEW + b"\n")
    before_key = dump_volume_key(cut(disk, first, last, tmp_path / "before.luks"), OLD, tmp_path)
    out = tmp_path / "out.img"
    proc = sw("luks", "add-key", disk, "--partition", "2", "--passphrase-file", old_pass,
              "--new-passphrase-file", new_pass, "--kdf", "pbkdf2", "--iter-time", "1",
              "-o", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr

    part = cut(out, first, last, tmp_path / "after.luks")
    luks_dump(part)  # no warnings from cryptsetup
    assert cryptsetup_opens(part, OLD, tmp_path) == 0
    assert cryptsetup_opens(part, NEW, tmp_path) == 0, "the new keyslot is in the container"
    assert dump_volume_key(part, NEW, tmp_path) == dump_volume_key(part, OLD, tmp_path) == before_key
    # Every byte outside the container's header area is the input's: no other partition was touched,
    # and the data area is intact.
    header_area = int(luks_dump(part).split("offset:", 1)[1].split("[bytes]")[0])
    start = first * SECTOR
    src, dst = disk.read_bytes(), out.read_bytes()
    assert len(src) == len(dst)
    assert dst[:start] == src[:start], "nothing before the container changed (the ESP is intact)"
    assert dst[start + header_area :] == src[start + header_area :], "the data area and the rest are intact"


def test_add_key_reads_the_new_header_back_before_reporting_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 17 item 2): failed on ecab7db because add-key never re-read what it wrote, so an
    output without the new header (here: a writer that drops the patch) was reported as a success."""
    disk, _ = luks_disk(tmp_path)
    real = writers.write_image
    monkeypatch.setattr(imageops, "write_image", lambda src, dst, fmt, **kw: real(src.inner, dst, fmt, **kw))
    out = tmp_path / "out.img"
    with pytest.raises(LuksError, match="did not read back"):
        add_key(disk, out, 2, bytearray(OLD), Keyslot(bytearray(NEW), KdfParams.pbkdf2(iterations=1000)))
    assert not out.exists(), "an output that does not hold the new header is not left behind"
