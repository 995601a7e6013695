"""What e2fsprogs says an ext4 filesystem uses: the independent reference for the free-space map tests.

``dumpe2fs`` lists each group's free blocks, inode table, flags and unused inodes. The blocks a sparse
template must keep are all blocks but the free ones and the never-initialised inode-table tails (groups
without ``ITABLE_ZEROED``: the table past ``inodes_per_group - unused inodes``, which the kernel zeroes at
the first mount and nothing reads before).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

Ranges = list[tuple[int, int]]  # (first, end) half-open, ascending, disjoint

_GROUP = re.compile(r"^Group (\d+): \(Blocks (\d+)-(\d+)\)[^\[\n]*(?:\[([^\]]*)\])?", re.M)


@dataclass(frozen=True)
class Ext4Facts:
    block_size: int
    block_count: int
    free: Ranges
    uninit_itable: Ranges
    inode_tables: Ranges

    @property
    def keep(self) -> Ranges:
        """Blocks that must stay ciphertext: everything but the free blocks and the uninitialised tails."""
        return subtract([(0, self.block_count)], merge(self.free + self.uninit_itable))

    def keep_bytes(self) -> Ranges:
        return [(a * self.block_size, b * self.block_size) for a, b in self.keep]


def merge(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for a, b in sorted(ranges):
        if a >= b:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def subtract(ranges: Ranges, remove: Ranges) -> Ranges:
    """``ranges`` minus ``remove`` (both ascending and disjoint)."""
    out: Ranges = []
    j = 0
    for a, b in ranges:
        pos = a
        while j < len(remove) and remove[j][1] <= pos:
            j += 1
        k = j
        while k < len(remove) and remove[k][0] < b:
            if remove[k][0] > pos:
                out.append((pos, remove[k][0]))
            pos = max(pos, remove[k][1])
            k += 1
        if pos < b:
            out.append((pos, b))
    return out


def total(ranges: Ranges) -> int:
    return sum(b - a for a, b in ranges)


def dumpe2fs(fs: Path) -> Ext4Facts:
    tool = shutil.which("dumpe2fs") or shutil.which("dumpe2fs", path="/usr/sbin:/sbin")
    assert tool, "dumpe2fs is not installed"
    proc = subprocess.run([tool, str(fs)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout

    def header(name: str) -> int:
        m = re.search(rf"^{name}:\s+(\d+)", text, re.M)
        assert m, name
        return int(m.group(1))

    bs, count = header("Block size"), header("Block count")
    ipg, isz = header("Inodes per group"), header("Inode size")
    features = re.search(r"^Filesystem features:(.*)$", text, re.M)
    csum = features is not None and any(
        f in features.group(1).split() for f in ("uninit_bg", "metadata_csum")
    )
    free: Ranges = []
    tails: Ranges = []
    tables: Ranges = []
    starts = list(_GROUP.finditer(text))
    for i, m in enumerate(starts):
        body = text[m.end() : starts[i + 1].start() if i + 1 < len(starts) else len(text)]
        flags = (m.group(4) or "").replace(" ", "").split(",")
        it = re.search(r"Inode table at (\d+)-(\d+)", body)
        assert it, body
        t0, t1 = int(it.group(1)), int(it.group(2)) + 1
        tables.append((t0, t1))
        fb = re.search(r"^  Free blocks: ?(.*)$", body, re.M)
        for part in (fb.group(1) if fb else "").split(","):
            part = part.strip()
            if part:
                a, _, b = part.partition("-")
                free.append((int(a), int(b or a) + 1))
        unused = re.search(r"(\d+) unused inodes", body)
        if csum and unused and "ITABLE_ZEROED" not in flags:
            used_inodes = ipg - int(unused.group(1))
            used_blocks = -(-used_inodes // (bs // isz))
            if t0 + used_blocks < t1:
                tails.append((t0 + used_blocks, t1))
    return Ext4Facts(bs, count, merge(free), merge(tails), merge(tables))
