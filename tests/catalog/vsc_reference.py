"""An independent VSC verifier written from docs/formats/vsc.md alone - no Shieldwright code.

    python tests/catalog/vsc_reference.py DISK.raw CATALOG.vsc SIGNER_OR_CA.pem

1. ``openssl cms -verify -inform DER -binary -CAfile CA -purpose any`` checks the signature and gives
   the content (doc section 9).
2. The content is split with ``struct`` and ``json`` (doc sections 2-3, 5): magic, u32le header length,
   JSON header, then 32-byte digests per partition in header order; each partition's ``digest`` is checked.
3. Geometry comes from ``sgdisk`` (sector size, first/last sector, GUIDs) - not from the catalog - and every
   block (doc section 4, last block short) is re-read from the raw file and hashed with hashlib.

Prints one line per problem and exits 1 if there is any, else prints "OK" and exits 0.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path


def tool(name: str) -> str:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") or name


def openssl_content(vsc: Path, ca: Path) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "content"
        cmd = ["cms", "-verify", "-inform", "DER", "-binary", "-in", str(vsc), "-CAfile", str(ca)]
        cmd += ["-purpose", "any", "-out", str(out)]
        proc = subprocess.run([tool("openssl"), *cmd], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ValueError(f"openssl cms -verify failed: {proc.stderr.strip().splitlines()[:1]}")
        return out.read_bytes()


def parse(content: bytes) -> tuple[dict, list[bytes]]:
    """The header and, per partition (header order), its block digests; raises ValueError if malformed."""
    if content[:7] != b"SWVSC1\n":
        raise ValueError("bad magic")
    (hlen,) = struct.unpack_from("<I", content, 7)
    header = json.loads(content[11 : 11 + hlen].decode("utf-8"))
    if header["format_version"] != 1 or header["hash"] != "sha256":
        raise ValueError("unsupported version or hash")
    pos, digests = 11 + hlen, []
    for p in header["partitions"]:
        n = p["block_count"]
        if n != -(-p["size_bytes"] // header["block_size"]):
            raise ValueError(f"partition {p['number']}: wrong block_count")
        chunk = content[pos : pos + 32 * n]
        if len(chunk) != 32 * n or hashlib.sha256(chunk).hexdigest() != p["digest"]:
            raise ValueError(f"partition {p['number']}: digest-of-digests mismatch")
        digests.append(chunk)
        pos += 32 * n
    if pos != len(content):
        raise ValueError("trailing bytes after the digests")
    return header, digests


def sgdisk_view(disk: Path) -> tuple[int, str, dict[int, dict]]:
    """Sector size, disk GUID and partitions (first/last sector, GUIDs) as sgdisk reports them."""
    out = subprocess.run([tool("sgdisk"), "-p", str(disk)], capture_output=True, text=True, check=True).stdout
    sector = int(re.search(r"Sector size \(logical\)[^:]*: (\d+)", out).group(1))  # type: ignore[union-attr]
    disk_guid = re.search(r"Disk identifier \(GUID\): (\S+)", out).group(1).lower()  # type: ignore[union-attr]
    parts = {}
    for line in out.split("Number", 1)[1].splitlines()[1:]:
        if line.strip():
            number = int(line.split()[0])
            cmd = [tool("sgdisk"), "-i", str(number), str(disk)]
            info = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            field = dict(ln.split(":", 1) for ln in info.splitlines() if ":" in ln)
            parts[number] = {
                "first_lba": int(field["First sector"].split()[0]),
                "last_lba": int(field["Last sector"].split()[0]),
                "type_guid": field["Partition GUID code"].split()[0].lower(),
                "partition_guid": field["Partition unique GUID"].strip().lower(),
            }
    return sector, disk_guid, parts


def check(disk: Path, vsc: Path, ca: Path) -> list[str]:
    try:
        header, digests = parse(openssl_content(vsc, ca))
    except (ValueError, KeyError, TypeError) as exc:
        return [f"catalog rejected: {exc}"]
    sector, disk_guid, parts = sgdisk_view(disk)
    problems = [] if disk_guid == header["disk_guid"] else ["disk GUID differs"]
    bs = header["block_size"]
    with open(disk, "rb") as f:
        for p, want in zip(header["partitions"], digests, strict=True):
            gpt = parts.get(p["number"])
            if gpt is None:
                problems.append(f"partition {p['number']} missing")
                continue
            for key in ("first_lba", "last_lba", "type_guid", "partition_guid"):
                if gpt[key] != p[key]:
                    problems.append(f"partition {p['number']}: {key} differs")
            size = (gpt["last_lba"] - gpt["first_lba"] + 1) * sector
            if size != p["size_bytes"]:
                problems.append(f"partition {p['number']}: size differs")
                continue
            for i in range(p["block_count"]):
                f.seek(gpt["first_lba"] * sector + i * bs)
                block = f.read(min(bs, size - i * bs))
                if hashlib.sha256(block).digest() != want[32 * i : 32 * i + 32]:
                    problems.append(f"partition {p['number']}: block {i} at byte offset {i * bs} differs")
    return problems


def main(argv: list[str]) -> int:
    disk, vsc, ca = (Path(a) for a in argv)
    problems = check(disk, vsc, ca)
    for line in problems:
        print(line)
    if not problems:
        print("OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
