"""Done-means 1: OpenSSL verifies our catalogs and an independent script, written from the spec alone,
recomputes every block digest from the image and agrees. Also: the spec's example and shell recipe are right.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from app.catalog.create import create_catalog
from app.catalog.format import decode_content
from app.catalog.verify import verify_catalog
from app.disk.image import open_image
from tests.catalog import vsc_reference
from tests.catalog.helpers import flip_byte, writable_copy
from tests.conftest import MiB, require_tool

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "formats" / "vsc.md"
SCRIPT = Path(vsc_reference.__file__)


def reference(disk: Path, vsc: Path, ca: Path) -> subprocess.CompletedProcess[str]:
    require_tool("openssl")
    require_tool("sgdisk")
    return subprocess.run([sys.executable, SCRIPT, disk, vsc, ca], capture_output=True, text=True)


def test_the_reference_uses_no_shieldwright_code() -> None:
    text = SCRIPT.read_text()
    assert not re.search(r"^\s*(from|import)\s+(app|tests)\b", text, re.M)


@pytest.mark.parametrize(
    ("disk_name", "numbers", "block_size", "key", "anchor"),
    [
        ("small", [2, 3], MiB, "signer", "signer"),
        ("small", [3, 4], 4096, "ec", "ec"),
        ("odd", [2], MiB, "signer", "signer"),  # short last block, mostly holes
        ("odd", [2], 65536, "leaf", "ca"),  # a CA-issued signer, the CA as trust anchor
    ],
)
def test_openssl_and_the_reference_agree(
    small_disk, odd_disk, catalog_keys, tmp_path: Path, disk_name, numbers, block_size, key, anchor
) -> None:
    disk = small_disk if disk_name == "small" else odd_disk
    vsc = tmp_path / "t.vsc"
    vsc.write_bytes(create_catalog(disk, numbers, name="Ref", version="1.0.0.7",
                                   signer=catalog_keys[key].signer, block_size=block_size))  # fmt: skip
    proc = reference(disk, vsc, catalog_keys[anchor].cert_path)
    assert (proc.returncode, proc.stdout.strip()) == (0, "OK"), proc.stdout + proc.stderr


def test_both_locate_the_same_changed_block(odd_disk, catalog_keys, tmp_path: Path) -> None:
    vsc = tmp_path / "t.vsc"
    signer = catalog_keys["signer"].signer
    vsc.write_bytes(
        create_catalog(odd_disk, [2], name="Ref", version="1.0.0.0", signer=signer, block_size=65536)
    )
    disk = writable_copy(odd_disk, tmp_path / "d.raw")
    flip_byte(disk, 10240 * 512 + 16 * MiB + 2000)  # inside the short last block
    proc = reference(disk, vsc, catalog_keys["signer"].cert_path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == ["partition 2: block 256 at byte offset 16777216 differs"]
    with open_image(disk) as image:
        ours = verify_catalog(image, vsc.read_bytes())
    assert [(m.partition_number, m.block_index, m.byte_offset) for m in ours.mismatches] == [
        (2, 256, 16 * MiB)
    ]


def test_openssl_rejects_a_changed_catalog(small_disk, catalog_keys, tmp_path: Path) -> None:
    der = create_catalog(small_disk, [3], name="Ref", version="1.0.0.0", signer=catalog_keys["signer"].signer)
    for pos in (len(der) // 3, len(der) // 2, len(der) - 40):
        bad = bytearray(der)
        bad[pos] ^= 0x01
        vsc = tmp_path / f"bad{pos}.vsc"
        vsc.write_bytes(bad)
        proc = reference(small_disk, vsc, catalog_keys["signer"].cert_path)
        assert proc.returncode == 1 and proc.stdout.startswith("catalog rejected: openssl cms -verify failed")


def test_a_wrong_trust_anchor_is_rejected_by_openssl(small_disk, catalog_keys, tmp_path: Path) -> None:
    vsc = tmp_path / "t.vsc"
    vsc.write_bytes(create_catalog(small_disk, [3], name="Ref", version="1.0.0.0",
                                   signer=catalog_keys["signer"].signer))  # fmt: skip
    assert reference(small_disk, vsc, catalog_keys["other"].cert_path).returncode == 1


# --- the spec's own example and recipe ---------------------------------------------------------------------


def _spec_example() -> dict:
    block = SPEC.read_text().split("```json\n", 1)[1].split("```", 1)[0]
    return json.loads(block)


def test_the_spec_example_is_what_the_text_says() -> None:
    """Rebuild the example's content (all-zero partitions) by hand and check every number the spec states."""
    header = _spec_example()
    text = SPEC.read_text()
    zero = {n: hashlib.sha256(bytes(n)).digest() for n in (MiB, 3072)}
    digests = b""
    for p in header["partitions"]:
        full, tail = divmod(p["size_bytes"], header["block_size"])
        mine = zero[MiB] * full + (zero[tail] if tail else b"")
        assert len(mine) // 32 == p["block_count"]
        assert hashlib.sha256(mine).hexdigest() == p["digest"]
        digests += mine
    body = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    content = b"SWVSC1\n" + struct.pack("<I", len(body)) + body + digests
    assert len(body) == 752 and len(content) == 1563
    assert "752 bytes" in text and "**1563 bytes**" in text
    assert content[:11].hex(" ") in text
    assert zero[MiB].hex() in text and zero[3072].hex() in text
    assert decode_content(content).partitions[1].block_count == 17


def test_the_spec_shell_recipe_finds_a_changed_block(odd_disk, catalog_keys, tmp_path: Path) -> None:
    require_tool("openssl")
    der = create_catalog(odd_disk, [2], name="Sh", version="1.0.0.0", signer=catalog_keys["signer"].signer)
    (tmp_path / "template.vsc").write_bytes(der)
    disk = writable_copy(odd_disk, tmp_path / "disk.raw")
    flip_byte(disk, 10240 * 512 + 9 * MiB + 5)
    blocks = re.findall(r"```sh\n(.*?)```", SPEC.read_text(), re.S)
    verify_sig, check_blocks = blocks
    signer = catalog_keys["signer"].cert_path
    subprocess.run(["bash", "-ec", verify_sig.replace("signer.pem", str(signer))], cwd=tmp_path, check=True,
                   capture_output=True)  # fmt: skip
    head, loop = check_blocks.split("for i in", 1)
    values = "number=2; first_lba=10240; size_bytes=16780288; block_count=17; BS=1048576; S=512\n"
    script = values + head + "D=$((11 + H))\nfor i in" + loop
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["partition 2: block 9 (byte offset 9437184) differs"]
