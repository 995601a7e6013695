"""``shieldwright luks`` end to end, as subprocesses: exit codes, one-line errors, no secret ever printed."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool, run

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = "s3cret-Passphrase-for-cli-tests"
NEW_PASSPHRASE = "another-Secret-added-later"
WRONG = "not-the-passphrase"
MODHEX = re.compile(r"^[cbdefghijklnrtuv]{8}(-[cbdefghijklnrtuv]{8}){7}$")
FAST = ("--kdf", "pbkdf2", "--iter-time", "1")


def sw(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def secrets_in(proc: subprocess.CompletedProcess[str], *secrets: str) -> list[str]:
    return [s for s in secrets if s and (s in proc.stdout or s in proc.stderr)]


def assert_clean_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli-luks")
    out = {}
    for name, value in (("pass", PASSPHRASE), ("new", NEW_PASSPHRASE), ("wrong", WRONG)):
        out[name] = d / f"{name}.txt"
        out[name].write_text(value + "\n")  # a trailing newline, as editors write it
    out["dir"] = d
    return out


@pytest.fixture(scope="module")
def encrypted(small_disk: Path, files: dict[str, Path]) -> dict[str, object]:
    d = files["dir"]
    out, rk = d / "enc.raw", d / "recovery.txt"
    proc = sw("luks", "encrypt", small_disk, "--partition", "3", "--passphrase-file", files["pass"],
              "--recovery-key-file", rk, *FAST, "-o", out)  # fmt: skip
    return {"proc": proc, "out": out, "rk": rk}


def test_encrypt_writes_image_and_private_recovery_key(encrypted, small_disk):
    proc, out, rk = encrypted["proc"], encrypted["out"], encrypted["rk"]
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and str(out) in proc.stdout
    assert "partition 3: LUKS2" in proc.stdout
    assert stat.S_IMODE(rk.stat().st_mode) == 0o600
    key = rk.read_text().strip()
    assert MODHEX.match(key), key
    assert secrets_in(proc, PASSPHRASE, key) == []
    assert "No problems found" in run("sgdisk", "-v", out).stdout


def test_test_accepts_passphrase_and_recovery_key_rejects_wrong(encrypted, files):
    ok = sw("luks", "test", encrypted["out"], "--partition", "3", "--passphrase-file", files["pass"])
    assert ok.returncode == 0, ok.stderr
    rec = sw("luks", "test", encrypted["out"], "--partition", "3", "--passphrase-file", encrypted["rk"])
    assert rec.returncode == 0, rec.stderr
    bad = sw("luks", "test", encrypted["out"], "--partition", "3", "--passphrase-file", files["wrong"])
    line = assert_clean_error(bad, 1)
    assert "no keyslot of partition 3 opens" in line
    env = sw("luks", "test", encrypted["out"], "--partition", "3", "--passphrase-env", "SW_PASS",
             env={"SW_PASS": PASSPHRASE})  # fmt: skip
    assert env.returncode == 0, env.stderr
    key = encrypted["rk"].read_text().strip()
    for proc in (ok, rec, bad, env):
        assert secrets_in(proc, PASSPHRASE, WRONG, key) == []


def test_test_on_unreadable_input_exits_2(files, tmp_path):
    proc = sw(
        "luks", "test", tmp_path / "missing.raw", "--partition", "3", "--passphrase-file", files["pass"]
    )
    assert "no such file" in assert_clean_error(proc, 2)


def test_dump_json_and_text(encrypted):
    proc = sw("luks", "dump", encrypted["out"], "--partition", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    text = json.dumps(doc)
    assert "aes-xts-plain64" in text and "pbkdf2" in text
    human = sw("luks", "dump", encrypted["out"], "--partition", "3")
    assert human.returncode == 0, human.stderr
    assert "LUKS2" in human.stdout and "Keyslots:" in human.stdout


def test_dump_inside_vhdx_output(small_disk, files):
    out = files["dir"] / "enc.vhdx"
    proc = sw("luks", "encrypt", small_disk, "--partition", "2", "--passphrase-file", files["pass"],
              *FAST, "--format", "vhdx", "-o", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run(require_tool("qemu-img"), "check", "-f", "vhdx", out)
    dump = sw("luks", "dump", out, "--partition", "2", "--json")
    assert dump.returncode == 0, dump.stderr
    assert sw("luks", "test", out, "--partition", "2", "--passphrase-file", files["pass"]).returncode == 0


def test_dump_of_a_plain_partition_is_a_clean_error(small_disk):
    line = assert_clean_error(sw("luks", "dump", small_disk, "--partition", "1"))
    assert "partition 1 holds fat" in line


def test_add_key_writes_a_new_image_that_opens_with_both(encrypted, files, tmp_path):
    src = encrypted["out"]
    before = src.read_bytes()
    out = tmp_path / "more.raw"
    proc = sw("luks", "add-key", src, "--partition", "3", "--passphrase-file", files["pass"],
              "--new-passphrase-file", files["new"], *FAST, "-o", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert secrets_in(proc, PASSPHRASE, NEW_PASSPHRASE) == []
    assert src.read_bytes() == before, "add-key never changes its input"
    for f in (files["pass"], files["new"]):
        assert sw("luks", "test", out, "--partition", "3", "--passphrase-file", f).returncode == 0
    assert sw("luks", "test", src, "--partition", "3", "--passphrase-file", files["new"]).returncode == 1
    # cryptsetup agrees, on the partition cut out of the new image
    part = tmp_path / "p3.img"
    layout = json.loads(sw("inspect", "--json", out).stdout)
    p3 = next(p for p in layout["partitions"] if p["number"] == 3)
    run("dd", f"if={out}", f"of={part}", "bs=512", f"skip={p3['first_lba']}",
        f"count={p3['last_lba'] - p3['first_lba'] + 1}", "status=none")  # fmt: skip
    kf = tmp_path / "k"
    kf.write_text(NEW_PASSPHRASE)
    check = subprocess.run([require_tool("cryptsetup"), "open", "--test-passphrase", "--key-file", kf, part])
    assert check.returncode == 0


def test_add_key_recovery_and_wrong_passphrase(encrypted, files, tmp_path):
    rk = tmp_path / "rk2.txt"
    out = tmp_path / "rk.raw"
    bad = sw("luks", "add-key", encrypted["out"], "--partition", "3", "--passphrase-file", files["wrong"],
             "--recovery-key-file", rk, "-o", out)  # fmt: skip
    assert "opens with this passphrase" in assert_clean_error(bad, 1)
    assert not out.exists() and not rk.exists(), "a failed add-key leaves no image and no key file"
    proc = sw("luks", "add-key", encrypted["out"], "--partition", "3", "--passphrase-file", files["pass"],
              "--recovery-key-file", rk, "-o", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    key = rk.read_text().strip()
    assert MODHEX.match(key) and secrets_in(proc, PASSPHRASE, key) == []
    assert sw("luks", "test", out, "--partition", "3", "--passphrase-file", rk).returncode == 0


def test_refusals_are_one_line_errors(small_disk, encrypted, files, tmp_path):
    out = tmp_path / "x.raw"
    esp = sw(
        "luks",
        "encrypt",
        small_disk,
        "--partition",
        "1",
        "--passphrase-file",
        files["pass"],
        *FAST,
        "-o",
        out,
    )
    assert "EFI System Partition" in assert_clean_error(esp)
    missing = sw("luks", "encrypt", small_disk, "--partition", "9", "--passphrase-file", files["pass"], *FAST,
                 "-o", out)  # fmt: skip
    assert "partition 9 is not on this disk" in assert_clean_error(missing)
    again = sw("luks", "encrypt", encrypted["out"], "--partition", "3", "--passphrase-file", files["pass"],
               *FAST, "-o", out)  # fmt: skip
    assert "catalog-only" in assert_clean_error(again)
    nopass = sw("luks", "encrypt", small_disk, "--partition", "3", *FAST, "-o", out)
    assert "no passphrase given" in assert_clean_error(nopass)
    exists = sw("luks", "encrypt", small_disk, "--partition", "3", "--passphrase-file", files["pass"],
                "--recovery-key-file", encrypted["rk"], *FAST, "-o", out)  # fmt: skip
    assert "already exists" in assert_clean_error(exists)
    assert not out.exists()
    for proc in (esp, missing, again, nopass, exists):
        assert secrets_in(proc, PASSPHRASE) == []
