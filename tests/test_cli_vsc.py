"""``shieldwright vsc``: create, verify, show, extract - end to end through the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.catalog.format import ESP_CATALOG_PATH, read_catalog
from tests.catalog.helpers import flip_byte, make_big_disk, writable_copy
from tests.conftest import MiB, run, sgdisk_partitions
from tests.signing.pe_helpers import TestKey, openssl_key

ROOT = Path(__file__).resolve().parents[1]


def shieldwright(
    *args: str | os.PathLike[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "app", "vsc", *map(str, args)]
    env = {**os.environ, **(env or {})}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shieldwright: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clivsc")


@pytest.fixture(scope="module")
def key(d: Path) -> TestKey:
    return openssl_key(d, "vsc-signer")


@pytest.fixture(scope="module")
def other(d: Path) -> TestKey:
    return openssl_key(d, "vsc-other", "p256")


def create_args(image: Path, key: TestKey, out: Path, *extra: str) -> list:
    return ["create", image, "--partition", "2", "--partition", "3", "--name", "CLI template", "--version",
            "1.2.3.4", "--cert", key.cert_path, "--key", key.key_path, "-o", out, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def vsc(small_disk: Path, key: TestKey, d: Path) -> Path:
    out = d / "small.vsc"
    proc = shieldwright(*create_args(small_disk, key, out))
    assert proc.returncode == 0, proc.stderr
    return out


def part_offset(path: Path, number: int) -> int:
    return int(next(p for p in sgdisk_partitions(path) if p["number"] == number)["first_lba"]) * 512  # type: ignore[call-overload]


# --- create / show ----------------------------------------------------------------------------------------


def test_create_writes_a_signed_catalog(vsc: Path, key: TestKey) -> None:
    signed = read_catalog(vsc.read_bytes(), trusted=[key.cert])
    cat = signed.catalog
    assert (cat.template_name, cat.template_version, cat.block_size) == ("CLI template", "1.2.3.4", MiB)
    assert [p.number for p in cat.partitions] == [2, 3]
    assert not [p for p in vsc.parent.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_create_prints_the_digests(small_disk: Path, key: TestKey, tmp_path: Path) -> None:
    out = tmp_path / "x.vsc"
    proc = shieldwright(*create_args(small_disk, key, out, "--block-size", "4K", "--jobs", "1"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(out)
    assert re.fullmatch(r"partition 2: 2048 blocks, digest [0-9a-f]{64}", lines[1])
    assert re.fullmatch(r"partition 3: 4096 blocks, digest [0-9a-f]{64}", lines[2])
    assert read_catalog(out.read_bytes()).catalog.block_size == 4096


def test_show(vsc: Path) -> None:
    proc = shieldwright("show", vsc)
    assert proc.returncode == 0, proc.stderr
    assert "template:   CLI template" in proc.stdout and "version:    1.2.3.4" in proc.stdout
    assert "signer:     CN=vsc-signer" in proc.stdout
    assert re.search(r"^partition 3: LBA \d+-\d+ \(16777216 bytes\), 16 blocks", proc.stdout, re.M)


def test_show_json(vsc: Path, small_disk: Path) -> None:
    proc = shieldwright("show", vsc, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["format_version"] == 1 and doc["template_name"] == "CLI template"
    assert doc["signer"]["subject"] == "CN=vsc-signer" and len(doc["signer"]["sha256_fingerprint"]) == 64
    ref = {p["number"]: p for p in sgdisk_partitions(small_disk)}
    for p in doc["partitions"]:
        assert (p["first_lba"], p["partition_guid"]) == (
            ref[p["number"]]["first_lba"],
            ref[p["number"]]["partition_guid"],
        )


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (["--version", "1.2.3"], "a.b.c.d"),
        (["--version", "1.2.3.70000"], "65536"),
        (["--name", " "], "template name is empty"),
        (["--block-size", "3000"], "power of two"),
        (["--partition", "9"], "no partition 9"),
        (["--partition", "1"], "EFI System Partition"),
        (["--jobs", "0"], "hashing threads"),
    ],
)
def test_create_input_errors(
    small_disk: Path, key: TestKey, tmp_path: Path, change: list[str], fragment: str
) -> None:
    args = create_args(small_disk, key, tmp_path / "x.vsc")
    if change[0] == "--partition":
        i = args.index("--partition")
        del args[i : i + 4]
    else:
        i = args.index(change[0]) if change[0] in args else len(args)
        del args[i : i + (2 if change[0] in args else 0)]
    proc = shieldwright(*args, *change)
    assert_one_line_error(proc, 2, fragment)
    assert not list(tmp_path.iterdir())


def test_create_with_a_mismatched_key(small_disk: Path, key: TestKey, other: TestKey, tmp_path: Path) -> None:
    args = create_args(small_disk, key, tmp_path / "x.vsc")
    args[args.index("--key") + 1] = other.key_path
    assert_one_line_error(shieldwright(*args), 2, "does not belong")


def test_create_with_an_encrypted_key(small_disk: Path, key: TestKey, tmp_path: Path) -> None:
    enc = tmp_path / "enc.key"
    run("openssl", "pkey", "-in", key.key_path, "-aes256", "-passout", "pass:s3cret", "-out", enc)
    args = create_args(small_disk, key, tmp_path / "x.vsc", "--key-passphrase-env", "VSC_PASS")
    args[args.index("--key") + 1] = enc
    proc = shieldwright(*args, env={"VSC_PASS": "s3cret"})
    assert proc.returncode == 0, proc.stderr
    assert_one_line_error(shieldwright(*args, env={"VSC_PASS": "wrong"}), 2)


def test_create_into_a_missing_directory(small_disk: Path, key: TestKey, tmp_path: Path) -> None:
    assert_one_line_error(
        shieldwright(*create_args(small_disk, key, tmp_path / "no" / "x.vsc")), 2, "cannot write"
    )


# --- verify -----------------------------------------------------------------------------------------------


def test_verify_ok(small_disk: Path, vsc: Path, key: TestKey) -> None:
    proc = shieldwright("verify", small_disk, vsc, "--trust", key.cert_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "OK: all 24 blocks match"
    proc = shieldwright("verify", small_disk, vsc, "--json", "--no-trust-check")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["ok"] is True and doc["trust_checked"] is False
    assert doc["mismatches"] == [] and doc["blocks_checked"] == 24


def test_verify_without_trust_does_not_report_success(small_disk: Path, vsc: Path, other: TestKey,
                                                       tmp_path: Path) -> None:  # fmt: skip
    """Regression (issue 17 item 5): failed on ecab7db because ``vsc verify`` without ``--trust`` exited 0
    (and said ``"ok": true``) for a catalog anyone could have re-signed."""
    forged = tmp_path / "forged.vsc"  # the same disk, catalogued and signed by an attacker's key
    assert shieldwright(*create_args(small_disk, other, forged)).returncode == 0
    for catalog in (vsc, forged):
        proc = shieldwright("verify", small_disk, catalog)
        assert_one_line_error(proc, 3, "signer was NOT checked", "--trust", "--no-trust-check")
        assert "signer:  CN=" in proc.stdout and "(NOT checked: no --trust)" in proc.stdout
        assert proc.stdout.splitlines()[-1] == "all 24 blocks match, but the signer was NOT checked"
        proc = shieldwright("verify", small_disk, catalog, "--json")
        assert proc.returncode == 3 and json.loads(proc.stdout)["ok"] is False
        proc = shieldwright("verify", small_disk, catalog, "--no-trust-check")
        assert proc.returncode == 0 and "OK: all 24 blocks match; the signer was NOT checked" in proc.stdout
    proc = shieldwright("verify", small_disk, forged, "--trust", ROOT / "nonexistent", "--no-trust-check")
    assert proc.returncode == 2 and "not allowed with" in proc.stderr


def test_verify_help_states_the_chain_rules_and_expiry() -> None:
    text = " ".join(shieldwright("verify", "--help").stdout.split())
    assert "RFC 5280" in text and "Expiry is NOT checked" in text and "--no-trust-check" in text


def test_verify_names_the_changed_block(small_disk: Path, vsc: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path / "d.raw")
    start = part_offset(disk, 3)
    flip_byte(disk, start + 7 * MiB + 99)
    proc = shieldwright("verify", disk, vsc)
    assert_one_line_error(proc, 1, "1 block(s) differ", "partition 3 at byte offset 7340032")
    assert (
        f"mismatch: partition 3 block 7 at byte offset 7340032 (disk offset {start + 7 * MiB})" in proc.stdout
    )
    doc = json.loads(shieldwright("verify", disk, vsc, "--json").stdout)
    assert doc["ok"] is False and doc["mismatch_count"] == 1
    assert doc["mismatches"] == [
        {"partition": 3, "block_index": 7, "byte_offset": 7 * MiB, "disk_offset": start + 7 * MiB}
    ]


def test_verify_a_changed_catalog_fails(small_disk: Path, vsc: Path, tmp_path: Path) -> None:
    data = vsc.read_bytes()
    for pos in (100, len(data) // 2, len(data) - 5):
        bad = tmp_path / f"bad{pos}.vsc"
        bad.write_bytes(data[:pos] + bytes([data[pos] ^ 0x10]) + data[pos + 1 :])
        proc = shieldwright("verify", small_disk, bad)
        assert_one_line_error(proc, 1, "verification FAILED")


def test_verify_with_the_wrong_trust_fails(small_disk: Path, vsc: Path, other: TestKey) -> None:
    proc = shieldwright("verify", small_disk, vsc, "--trust", other.cert_path)
    assert_one_line_error(proc, 1, "not trusted")
    assert (
        json.loads(shieldwright("verify", small_disk, vsc, "--trust", other.cert_path, "--json").stdout)["ok"]
        is False
    )


def test_unreadable_inputs_exit_2(small_disk: Path, vsc: Path, tmp_path: Path) -> None:
    assert_one_line_error(shieldwright("verify", small_disk, tmp_path / "missing.vsc"), 2, "cannot read")
    assert_one_line_error(shieldwright("verify", tmp_path / "missing.raw", vsc), 2, "no such file")
    assert_one_line_error(shieldwright("verify", small_disk, vsc, "--trust", tmp_path / "no.pem"), 2)
    assert_one_line_error(shieldwright("show", tmp_path), 2, "directory")
    garbage = tmp_path / "garbage.vsc"
    garbage.write_bytes(b"not a catalog")
    assert_one_line_error(shieldwright("show", garbage), 2)


# --- cancel -----------------------------------------------------------------------------------------------


def test_ctrl_c_leaves_no_output(key: TestKey, tmp_path_factory: pytest.TempPathFactory) -> None:
    """SIGINT while hashing (seen on a terminal's progress line): exit 130, no catalog, no temp file."""
    work = tmp_path_factory.mktemp("cancel")
    disk = make_big_disk(work / "big.raw", 512)
    out = work / "big.vsc"
    master, slave = pty.openpty()
    args = ["create", disk, "--partition", "1", "--name", "n", "--version", "1.0.0.0", "--block-size", "4096",
            "--cert", key.cert_path, "--key", key.key_path, "--jobs", "1", "-o", out]  # fmt: skip
    argv = [sys.executable, "-m", "app", "vsc", *map(str, args)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while not re.search(rb"Hashing partition 1: \d+%", seen) and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                seen += os.read(master, 4096)
        assert re.search(rb"Hashing partition 1: \d+%", seen), seen
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(20)
        elapsed = time.monotonic() - t0
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert code == 130, seen
    assert b"Traceback" not in seen and b"cancelled" in seen
    assert elapsed < 5
    assert sorted(p.name for p in work.iterdir()) == ["big.raw"]


# --- extract ----------------------------------------------------------------------------------------------


def _put_in_esp(image: Path, data: bytes, tmp: Path) -> None:
    """Store ``data`` at ESP_CATALOG_PATH with mtools (not our ESP code)."""
    drive = f"{image}@@{part_offset(image, 1)}"
    src = tmp / "template.vsc"
    src.write_bytes(data)
    env_path = ESP_CATALOG_PATH.replace("\\", "/")
    run("mmd", "-i", drive, "::/EFI")
    run("mmd", "-i", drive, "::/EFI/Shieldwright")
    run("mcopy", "-i", drive, src, f"::{env_path}")
    src.unlink()


def test_extract_copies_the_catalog_out_of_the_esp(small_disk: Path, vsc: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path / "t.raw")
    _put_in_esp(disk, vsc.read_bytes(), tmp_path)
    out = tmp_path / "out.vsc"
    proc = shieldwright("extract", disk, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == vsc.read_bytes()
    assert shieldwright("verify", disk, out, "--no-trust-check").returncode == 0
    proc = shieldwright("extract", disk, "-o", out)
    assert_one_line_error(proc, 2, "already exists", "--force")
    assert shieldwright("extract", disk, "-o", out, "--force").returncode == 0


def test_create_never_replaces_an_existing_output_without_force(small_disk: Path, key: TestKey,
                                                                tmp_path: Path) -> None:  # fmt: skip
    """Regression (issue 17 item 8): failed on ecab7db because ``vsc create -o`` replaced an existing file."""
    out = tmp_path / "precious"
    out.write_bytes(b"someone else's file")
    assert_one_line_error(shieldwright(*create_args(small_disk, key, out)), 2, "already exists", "--force")
    assert out.read_bytes() == b"someone else's file"
    assert shieldwright(*create_args(small_disk, key, out, "--force")).returncode == 0
    read_catalog(out.read_bytes(), trusted=[key.cert])


def test_extract_without_a_catalog(small_disk: Path, tmp_path: Path) -> None:
    proc = shieldwright("extract", small_disk, "-o", tmp_path / "o.vsc")
    assert_one_line_error(proc, 2, "has no catalog", "\\EFI\\Shieldwright\\template.vsc")
    assert not (tmp_path / "o.vsc").exists()


def test_extract_refuses_a_damaged_catalog(small_disk: Path, vsc: Path, tmp_path: Path) -> None:
    disk = writable_copy(small_disk, tmp_path / "t.raw")
    data = bytearray(vsc.read_bytes())
    data[len(data) // 2] ^= 1
    _put_in_esp(disk, bytes(data), tmp_path)
    assert_one_line_error(shieldwright("extract", disk, "-o", tmp_path / "o.vsc"), 2)
    assert not (tmp_path / "o.vsc").exists()


def test_extract_from_a_disk_without_esp(tmp_path: Path) -> None:
    disk = tmp_path / "noesp.raw"
    with open(disk, "wb") as f:
        f.truncate(8 * MiB)
    run("sgdisk", "-n", "1:2048:+4M", "-t", "1:8304", disk)
    assert_one_line_error(
        shieldwright("extract", disk, "-o", tmp_path / "o.vsc"), 2, "no EFI System Partition"
    )
