"""Large, mostly empty base images for the sparse-ciphertext tests and ``benchmarks/bench_scale.py``.

A GPT disk of ``virtual_gib`` GiB: the demo image's ESP and XBOOTLDR (its kernel and initrd, so a build can
make a UKI) copied byte for byte, and an x86-64 root filling the rest: ext4 made by ``mkfs.ext4 -d`` from a
tree holding one big file of incompressible, deterministic bytes (an AES-CTR keystream) and a few hundred
small files, ``data_mib`` MiB in all. mke2fs runs with ``-E nodiscard,lazy_itable_init=1``: the inode
tables past the files' inodes are left for the kernel to initialise at the first mount, as mke2fs does on
any device that does not zero on discard (on a plain file it would punch holes and flag them zeroed).

Everything is made with qemu-img, sgdisk, mkfs.ext4 and dd (no mounting, no root) and cached under
``~/.cache/shieldwright/fixtures/<key>/`` by its inputs (sizes, options, this file's and the demo
builder's source): ``base.<fmt>`` for each format asked for, and ``root.ext4``, the root filesystem
alone (the plaintext reference).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from app.disk.formats.raw import RawImage

MiB = 1024 * 1024
GiB = 1024 * MiB
FIXTURE_VERSION = 1
FS_UUID = "5a1e5a1e-0000-4000-8000-000000000064"
MKFS_OPTIONS = ("-b", "4096", "-E", f"nodiscard,lazy_itable_init=1,hash_seed={FS_UUID}")
SMALL_FILES = 400
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shieldwright" / "fixtures"


@dataclass(frozen=True)
class SparseBase:
    directory: Path
    images: dict[str, Path]  # format -> base image
    root: Path  # the root filesystem alone
    virtual_size: int


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not found:
        raise AssertionError(f"{name} is not installed; installer/apt-packages.txt must list its package")
    return found


def _run(*cmd: str | Path) -> str:
    proc = subprocess.run([_tool(str(cmd[0])), *map(str, cmd[1:])], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def _key(virtual_gib: int, data_mib: int) -> str:
    import app.template.demo as demo

    h = hashlib.sha256()
    h.update(repr((FIXTURE_VERSION, virtual_gib, data_mib, MKFS_OPTIONS, SMALL_FILES)).encode())
    h.update(Path(__file__).read_bytes())
    h.update(Path(demo.__file__).read_bytes())
    return h.hexdigest()[:16]


def partition_lbas(image: Path) -> dict[int, tuple[int, int]]:
    """``{number: (first_lba, last_lba)}`` as ``sgdisk -p`` prints them."""
    out = _run("sgdisk", "-p", image)
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit() and len(ln.split()) > 3]
    return {int(r[0]): (int(r[1]), int(r[2])) for r in rows}


def keystream(path: Path, size: int, seed: bytes) -> None:
    """``size`` bytes of AES-256-CTR keystream (incompressible, deterministic, fast) into ``path``."""
    enc = Cipher(algorithms.AES(hashlib.sha256(seed).digest()), modes.CTR(bytes(16))).encryptor()
    zeros = bytes(8 * MiB)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(zeros))
            f.write(enc.update(zeros[:n]))
            left -= n


def _tree(d: Path, data_mib: int) -> Path:
    tree = d / "root-tree"
    for sub in ("etc", "usr/share/doc", "var/lib"):
        (tree / sub).mkdir(parents=True)
    (tree / "etc" / "os-release").write_text('NAME="Sparse"\nID=sparse\nPRETTY_NAME="Sparse fixture root"\n')
    small_total = 0
    for i in range(SMALL_FILES):
        size = 512 + (i * 7919) % (96 * 1024)  # 0.5-96 KiB, spread
        keystream(tree / "usr/share/doc" / f"f{i:04d}", size, b"small %d" % i)
        small_total += size
    keystream(tree / "var/lib" / "data.bin", data_mib * MiB - small_total, b"big")
    return tree


def _copy_allocated(src: Path, dst: Path, at: int) -> None:
    """Copy the data extents of the sparse file ``src`` into ``dst`` at byte ``at`` (holes stay holes)."""
    with RawImage(src) as image:
        ranges = list(image.allocated_ranges())
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        for start, length in ranges:
            done = 0
            while done < length:
                n = os.copy_file_range(
                    fin.fileno(), fout.fileno(), length - done, start + done, at + start + done
                )
                if n <= 0:
                    raise AssertionError("copy_file_range made no progress")
                done += n


def sparse_base(
    virtual_gib: int, data_mib: int = 2048, formats: tuple[str, ...] = ("vhdx",), cache: Path | None = None
) -> SparseBase:
    """The fixture (see the module docstring), built on first use and cached."""
    directory = (cache or CACHE) / f"sparse-{virtual_gib}g-{data_mib}m-{_key(virtual_gib, data_mib)}"
    directory.mkdir(parents=True, exist_ok=True)
    raw, root = directory / "base.raw", directory / "root.ext4"
    images = {fmt: directory / f"base.{fmt}" for fmt in formats}
    missing = [fmt for fmt, p in images.items() if not p.exists()]
    if not root.exists() or (missing and not raw.exists()):
        _build(directory, virtual_gib, data_mib)
    for fmt in missing:
        partial = directory / f".base.{fmt}.partial"
        options = "subformat=dynamic" if fmt == "vhdx" else "cluster_size=65536"
        _run("qemu-img", "convert", "-f", "raw", "-O", fmt, "-o", options, raw, partial)
        partial.rename(images[fmt])
    if raw.exists() and "raw" not in formats:
        raw.unlink()  # 2 GiB of data less in the cache; rebuilt from scratch if another format is wanted
    return SparseBase(directory, images, root, virtual_gib * GiB)


def _build(d: Path, virtual_gib: int, data_mib: int) -> None:
    from app.template.demo import build_demo_image

    work = d / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        demo = build_demo_image(work / "demo.img")
        src = partition_lbas(demo)
        esp_mib = (src[1][1] - src[1][0] + 1) * 512 // MiB
        xb_mib = (src[2][1] - src[2][0] + 1) * 512 // MiB
        raw = work / "base.raw"
        with open(raw, "wb") as f:
            f.truncate(virtual_gib * GiB)
        _run("sgdisk", "-a", "2048", "-n", f"1:0:+{esp_mib}M", "-t", "1:ef00", "-c", "1:ESP",
             "-n", f"2:0:+{xb_mib}M", "-t", "2:ea00", "-c", "2:XBOOTLDR",
             "-n", "3:0:0", "-t", "3:8304", "-c", "3:root-x86-64", raw)  # fmt: skip
        dst = partition_lbas(raw)
        for n in (1, 2):
            (a, b), (c, _) = src[n], dst[n]
            _run("dd", f"if={demo}", f"of={raw}", "bs=512", f"skip={a}", f"seek={c}", f"count={b - a + 1}",
                 "conv=notrunc,sparse", "status=none")  # fmt: skip
        demo.unlink()
        first, last = dst[3]
        root = work / "root.ext4"
        with open(root, "wb") as f:
            f.truncate((last - first + 1) * 512)
        tree = _tree(work, data_mib)
        _run("mkfs.ext4", "-q", "-F", *MKFS_OPTIONS, "-L", "root", "-U", FS_UUID, "-d", tree, root)
        shutil.rmtree(tree)
        _copy_allocated(root, raw, first * 512)
        raw.rename(d / "base.raw")
        root.rename(d / "root.ext4")
    finally:
        shutil.rmtree(work, ignore_errors=True)
