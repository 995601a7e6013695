"""Encrypting partitions of a real image, graded by sgdisk, cryptsetup, qemu-img and an independent XTS.

The input is conftest's ``small_disk`` (made by sgdisk + mkfs). Our output must satisfy:
``sgdisk -v`` clean; identity of every partition kept; copied partitions byte-identical; the input
unchanged; each encrypted partition, cut out with ``dd``, is a LUKS2 container cryptsetup dumps
without warnings and opens with the passphrase and the recovery key (not with a wrong one); and the
volume key cryptsetup dumps decrypts the data segment - with ``cryptography``'s own per-sector XTS,
not ours - back to the original partition bytes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import app.disk.writers as writers
import app.luks.relaid_image as relaid_image
from app.disk.image import open_image
from app.disk.layout import layout_of
from app.disk.writers import CHUNK
from app.errors import CancelledError, OutOfSpaceError
from app.luks.container import DEFAULT_DATA_OFFSET, LuksParams, create_header, new_volume_key
from app.luks.imageops import Keyslot, encrypt_partitions
from app.luks.kdf import KdfParams
from app.luks.relaid_image import PartitionCrypto, RelaidImage, encrypt_image, gpt_bytes
from app.luks.relayout import AlreadyEncryptedError, PartitionTooSmallError, plan_relayout
from app.luks.xts import XtsCipher
from app.progress import CancelToken, ProgressState
from tests.conftest import MiB, luks_format, require_tool, run, sgdisk_partitions

PASSPHRASE = b"correct horse battery staple"
WRONG = b"correct horse battery stapler"
RECOVERY = b"cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv"


def fast_kdf():
    """pbkdf2 at cryptsetup's minimum (1000 iterations): the KDF is not what these tests are about."""
    return KdfParams.pbkdf2(iterations=1000)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


def read_at(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def xts_decrypt(key: bytes, data: bytes, sector_size: int) -> bytes:
    """Independent per-sector AES-XTS-plain64 (IV = offset in 512-byte units, as LUKS2 does)."""
    out = bytearray()
    for pos in range(0, len(data), sector_size):
        tweak = (pos // 512).to_bytes(16, "little")
        dec = Cipher(algorithms.AES(key), modes.XTS(tweak)).decryptor()
        out += dec.update(data[pos : pos + sector_size]) + dec.finalize()
    return bytes(out)


def cut_partition(image: Path, first_lba: int, last_lba: int, dst: Path) -> Path:
    """The partition as its own file, by dd (the way a VM's /dev/sdaN would present it)."""
    run("dd", f"if={image}", f"of={dst}", "bs=512", f"skip={first_lba}",
        f"count={last_lba - first_lba + 1}", "status=none")  # fmt: skip
    return dst


def cryptsetup(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("cryptsetup"), *map(str, args)], capture_output=True, text=True)


def key_file(tmp: Path, secret: bytes, name: str) -> Path:
    path = tmp / name
    path.write_bytes(secret)
    return path


@pytest.fixture(scope="module")
def encrypted(small_disk: Path, tmp_path_factory: pytest.TempPathFactory):
    """small_disk with XBOOTLDR (2) and root (3) encrypted, one passphrase + a recovery key each."""
    out_dir = tmp_path_factory.mktemp("enc")
    before = sha256(small_disk)
    out = out_dir / "enc.raw"
    slots = [Keyslot(bytearray(PASSPHRASE), fast_kdf()), Keyslot(bytearray(RECOVERY), fast_kdf())]
    progress = ProgressState()
    plan = encrypt_partitions(small_disk, out, [2, 3], slots, progress=progress)
    return {"out": out, "plan": plan, "before": before, "dir": out_dir, "progress": progress}


def test_gpt_is_valid_and_identities_are_kept(small_disk, encrypted):
    out, plan = encrypted["out"], encrypted["plan"]
    proc = run("sgdisk", "-v", out)
    assert "No problems found" in proc.stdout, proc.stdout
    old, new = sgdisk_partitions(small_disk), sgdisk_partitions(out)
    assert len(old) == len(new) == 4
    for a, b in zip(old, new, strict=True):
        for key in ("number", "type_guid", "partition_guid", "name"):
            assert a[key] == b[key]
        p = plan.partition(b["number"])
        assert (b["first_lba"], b["last_lba"]) == (p.first_lba, p.last_lba)
        assert b["first_lba"] % 2048 == 0
    grown = {
        b["number"]: (b["last_lba"] - b["first_lba"]) - (a["last_lba"] - a["first_lba"])
        for a, b in zip(old, new, strict=True)
    }
    assert grown == {1: 0, 2: DEFAULT_DATA_OFFSET // 512, 3: DEFAULT_DATA_OFFSET // 512, 4: 0}
    assert out.stat().st_size == small_disk.stat().st_size + 2 * DEFAULT_DATA_OFFSET
    with open_image(out) as img:
        assert layout_of(img).disk_guid == layout_of(open_image(small_disk)).disk_guid


def test_input_unchanged_and_copied_partitions_identical(small_disk, encrypted):
    out, plan = encrypted["out"], encrypted["plan"]
    assert sha256(small_disk) == encrypted["before"]
    for n in (1, 4):
        p = plan.partition(n)
        assert not p.encrypt
        assert read_at(out, p.offset, p.size_bytes) == read_at(small_disk, p.src_offset, p.plaintext_size)
    progress = encrypted["progress"]
    assert progress.step.startswith("Encrypting partitions 2 and 3")
    assert progress.done == progress.total == plan.disk_size


def test_raw_output_keeps_holes(encrypted):
    out = encrypted["out"]
    allocated = out.stat().st_blocks * 512
    # The ciphertext (8 + 16 MiB) is dense; the ESP/swap holes and most of the header areas are not.
    assert allocated < out.stat().st_size - 16 * MiB, (allocated, out.stat().st_size)


@pytest.mark.parametrize("number", [2, 3])
def test_cryptsetup_accepts_the_container(small_disk, encrypted, number, tmp_path):
    plan = encrypted["plan"]
    p = plan.partition(number)
    part = cut_partition(encrypted["out"], p.first_lba, p.last_lba, tmp_path / f"p{number}.img")

    dump = cryptsetup("luksDump", part)
    assert dump.returncode == 0, dump.stderr
    assert dump.stderr == "" and "WARNING" not in dump.stdout.upper(), dump.stdout + dump.stderr
    assert "Version:       \t2" in dump.stdout or re.search(r"Version:\s+2", dump.stdout)
    assert re.search(r"offset:\s+16777216 \[bytes\]", dump.stdout)
    assert re.search(r"sector:\s+4096 \[bytes\]", dump.stdout)
    assert "aes-xts-plain64" in dump.stdout

    for secret, ok in ((PASSPHRASE, True), (RECOVERY, True), (WRONG, False)):
        kf = key_file(tmp_path, secret, "key")
        proc = cryptsetup("open", "--test-passphrase", "--key-file", kf, part)
        assert (proc.returncode == 0) is ok, (secret == WRONG, proc.stderr)

    kf = key_file(tmp_path, PASSPHRASE, "key")
    proc = cryptsetup("luksDump", "--dump-volume-key", "--batch-mode", "--key-file", kf, part)
    assert proc.returncode == 0, proc.stderr
    hex_part = proc.stdout.split("MK dump:", 1)[1]
    key = bytes.fromhex("".join(re.findall(r"\b[0-9a-f]{2}\b", hex_part)))
    assert len(key) == 64

    data = read_at(part, DEFAULT_DATA_OFFSET, p.data_size)
    plain = xts_decrypt(key, data, 4096)
    original = read_at(small_disk, p.src_offset, p.plaintext_size)
    assert plain[: p.plaintext_size] == original
    assert plain[p.plaintext_size :] == bytes(p.data_size - p.plaintext_size)


def _crypto_for(plan, sector_size=4096):
    """Fixed headers and ciphers, so two outputs of one plan can be compared byte for byte."""
    out = {}
    for p in plan.encrypted:
        vk = new_volume_key(512)
        params = LuksParams(sector_size=sector_size, data_offset=plan.data_offset)
        header = create_header(vk, params, keyslots=[(bytearray(PASSPHRASE), fast_kdf())])
        out[p.number] = PartitionCrypto(header, XtsCipher(vk, sector_size=sector_size))
    return out


@pytest.mark.parametrize("fmt", ["vhdx", "vhd"])
def test_vhdx_and_vhd_outputs_equal_the_raw_one(small_disk, tmp_path, fmt):
    require_tool("qemu-img")
    with open_image(small_disk) as src:
        layout = layout_of(src)
        plan = plan_relayout(layout, {3}, DEFAULT_DATA_OFFSET)
        crypto = _crypto_for(plan)
        raw = encrypt_image(src, layout, plan, tmp_path / "out.raw", crypto=crypto)
        other = encrypt_image(src, layout, plan, tmp_path / f"out.{fmt}", crypto=crypto, out_format=fmt)
    qemu_fmt = {"vhdx": "vhdx", "vhd": "vpc"}[fmt]
    if fmt == "vhdx":
        run("qemu-img", "check", "-f", "vhdx", other)
    run("qemu-img", "compare", "-f", "raw", "-F", qemu_fmt, raw, other)
    assert "No problems found" in run("sgdisk", "-v", raw).stdout


def test_block_hook_sees_every_encrypted_byte_in_order(small_disk, tmp_path):
    seen: dict[int, hashlib._Hash] = {}
    offsets: dict[int, int] = {}

    def on_block(number: int, offset: int, data: memoryview) -> None:
        if number in (2, 3):
            assert offset == offsets.get(number, 0)
            offsets[number] = offset + len(data)
            seen.setdefault(number, hashlib.sha256()).update(data)

    out = tmp_path / "hooked.raw"
    plan = encrypt_partitions(
        small_disk, out, [2, 3], [Keyslot(bytearray(PASSPHRASE), fast_kdf())], on_block=on_block
    )
    for n in (2, 3):
        p = plan.partition(n)
        assert offsets[n] == p.size_bytes
        assert seen[n].hexdigest() == hashlib.sha256(read_at(out, p.offset, p.size_bytes)).hexdigest()


def test_sector_size_512(small_disk, tmp_path):
    out = tmp_path / "s512.raw"
    plan = encrypt_partitions(
        small_disk, out, [3], [Keyslot(bytearray(PASSPHRASE), fast_kdf())], sector_size=512
    )
    p = plan.partition(3)
    part = cut_partition(out, p.first_lba, p.last_lba, tmp_path / "p.img")
    kf = key_file(tmp_path, PASSPHRASE, "key")
    proc = cryptsetup("luksDump", "--dump-volume-key", "--batch-mode", "--key-file", kf, part)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"sector:\s+512 \[bytes\]", cryptsetup("luksDump", part).stdout)
    key = bytes.fromhex("".join(re.findall(r"\b[0-9a-f]{2}\b", proc.stdout.split("MK dump:", 1)[1])))
    plain = xts_decrypt(key, read_at(part, DEFAULT_DATA_OFFSET, p.data_size), 512)
    assert plain == read_at(small_disk, p.src_offset, p.plaintext_size)


class CancelAfter(ProgressState):
    def __init__(self, token: CancelToken, after: int) -> None:
        super().__init__()
        self.token, self.after = token, after

    def update(self, done: int) -> None:
        super().update(done)
        if done >= self.after:
            self.token.cancel()


def test_cancel_mid_way_leaves_nothing(small_disk, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = sha256(small_disk)
    token = CancelToken()
    progress = CancelAfter(token, 30 * MiB)  # inside the encrypted root
    with pytest.raises(CancelledError):
        encrypt_partitions(
            small_disk, out_dir / "x.raw", [3], [Keyslot(bytearray(PASSPHRASE), fast_kdf())],
            progress=progress, cancel=token,
        )  # fmt: skip
    assert 30 * MiB <= progress.done < progress.total
    assert list(out_dir.iterdir()) == []
    assert sha256(small_disk) == before


def test_full_disk_is_a_clean_error_leaving_nothing(small_disk, tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    real_pwrite = os.pwrite
    written = [0]

    def pwrite(fd, data, offset):
        if written[0] > 20 * MiB:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written[0] += len(data)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(writers.os, "pwrite", pwrite)
    with pytest.raises(OutOfSpaceError) as e:
        encrypt_partitions(small_disk, out_dir / "x.raw", [3], [Keyslot(bytearray(PASSPHRASE), fast_kdf())])
    assert "not enough space on" in e.value.message and "GiB" in e.value.message
    assert str(out_dir) in e.value.message
    assert list(out_dir.iterdir()) == []


def test_too_little_free_space_is_refused_before_writing(small_disk, tmp_path, monkeypatch):
    real = os.statvfs

    class Tiny:
        def __init__(self, st):
            self.f_frsize, self.f_bavail = st.f_frsize, 1

    monkeypatch.setattr(relaid_image.os, "statvfs", lambda p: Tiny(real(p)))
    with pytest.raises(OutOfSpaceError, match="need at least 0.02 GiB"):
        encrypt_partitions(small_disk, tmp_path / "x.raw", [3], [Keyslot(bytearray(PASSPHRASE), fast_kdf())])
    assert list(tmp_path.iterdir()) == []


def test_already_luks_partition_is_refused_with_catalog_only(small_disk, tmp_path):
    disk = tmp_path / "luks-root.raw"
    shutil.copyfile(small_disk, disk)
    disk.chmod(0o644)
    container = luks_format(tmp_path / "c.luks", size=16 * MiB)
    run("dd", f"if={container}", f"of={disk}", "bs=1M", "seek=25", "conv=notrunc", "status=none")
    with pytest.raises(AlreadyEncryptedError) as e:
        encrypt_partitions(disk, tmp_path / "out.raw", [3], [Keyslot(bytearray(PASSPHRASE), fast_kdf())])
    assert "LUKS2" in e.value.message and "catalog-only" in e.value.hint
    assert not (tmp_path / "out.raw").exists()


def test_too_small_partition_is_refused(tmp_path):
    disk = tmp_path / "tiny.raw"
    with open(disk, "wb") as f:
        f.truncate(24 * MiB)
    run("sgdisk", "-a", "2048", "-n", "1:0:+16M", "-t", "1:ef00", "-n", "2:0:+256K", "-t", "2:8304", disk)
    with pytest.raises(PartitionTooSmallError, match="at least 1024 KiB"):
        encrypt_partitions(disk, tmp_path / "out.raw", [2], [Keyslot(bytearray(PASSPHRASE), fast_kdf())])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.raw"]


@pytest.mark.parametrize("fmt", ["vhdx", "qcow2"])
def test_any_input_format(small_disk, small_disk_formats, tmp_path, fmt):
    out = tmp_path / "from.raw"
    plan = encrypt_partitions(
        small_disk_formats[fmt], out, [3], [Keyslot(bytearray(PASSPHRASE), fast_kdf())], out_format="raw"
    )
    assert "No problems found" in run("sgdisk", "-v", out).stdout
    for n in (1, 2, 4):
        p = plan.partition(n)
        assert read_at(out, p.offset, p.size_bytes) == read_at(small_disk, p.src_offset, p.plaintext_size)
    p = plan.partition(3)
    part = cut_partition(out, p.first_lba, p.last_lba, tmp_path / "p3.img")
    proc = cryptsetup("open", "--test-passphrase", "--key-file", key_file(tmp_path, PASSPHRASE, "k"), part)
    assert proc.returncode == 0, proc.stderr


def test_view_reads_any_pattern_and_the_hook_refuses_gaps(small_disk):
    """Read-ahead never changes bytes, whatever the order of reads; a hooked view insists on order."""
    with open_image(small_disk) as src:
        layout = layout_of(src)
        plan = plan_relayout(layout, {2, 3}, DEFAULT_DATA_OFFSET)
        crypto = _crypto_for(plan)
        head, tail = gpt_bytes(plan)
        with RelaidImage(src, plan, crypto, head, tail, readahead=False) as plain_view:
            reference = plain_view.read(0, plan.disk_size)
        with RelaidImage(src, plan, crypto, head, tail) as view:
            pieces, pos, step = [], 0, MiB + 512
            while pos < plan.disk_size:
                n = min(step, plan.disk_size - pos)
                pieces.append(view.read(pos, n))
                pos += n
                step = 3 * MiB - 4096 if step == MiB + 512 else MiB + 512
            assert b"".join(pieces) == reference
            assert view.read(40 * MiB, 4096) == reference[40 * MiB : 40 * MiB + 4096]  # backwards
        with RelaidImage(src, plan, crypto, head, tail) as view:
            # the writer's own chunking: every read after the first of a partition comes from the queue
            # of read-aheads; a jump back and forth in the middle drops the queue and refills it
            got, pos = [], 0
            while pos < plan.disk_size:
                n = min(CHUNK - pos % CHUNK, plan.disk_size - pos)
                got.append(view.read(pos, n))
                if pos == 20 * MiB:
                    assert view.read(4 * MiB, 4096) == reference[4 * MiB : 4 * MiB + 4096]
                pos += n
            assert b"".join(got) == reference
        hooked = RelaidImage(src, plan, crypto, head, tail, on_block=lambda n, o, d: None)
        with hooked, pytest.raises(RuntimeError, match="once, in order"):
            hooked.read(plan.partition(3).offset + MiB, 4096)
