"""``shieldwright uki``: build, inspect, pcr11, install — end to end through the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.boot.pcr import DEFAULT_PHASES
from tests.boot.uki_helpers import (
    SNAKEOIL_CERT,
    SNAKEOIL_KEY,
    initrd,
    kernel,
    objcopy_section,
    systemd_measure,
)
from tests.signing.pe_helpers import sbverify

ROOT = Path(__file__).resolve().parents[1]
HEX = set("0123456789abcdef")


def shieldwright(
    *args: str | os.PathLike[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "app", "uki", *map(str, args)]
    env = {**os.environ, **(env or {})}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shieldwright: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cliuki")
    (d / "vmlinuz").write_bytes(kernel())
    (d / "initrd").write_bytes(initrd())
    (d / "os-release").write_text('ID=cli\nPRETTY_NAME="CLI Test"\n')
    return d


@pytest.fixture(scope="module")
def signed(d: Path) -> Path:
    out = d / "signed.efi"
    proc = shieldwright("build", "--linux", d / "vmlinuz", "--initrd", d / "initrd",
                        "--cmdline", "  console=ttyS0   panic=-1 ", "--os-release", f"@{d / 'os-release'}",
                        "--cert", SNAKEOIL_CERT, "--key", SNAKEOIL_KEY, "--key-passphrase-env", "SW_PASS",
                        "-o", out, env={"SW_PASS": "snakeoil"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    return out


def test_build_signs_and_inspect_reports(signed: Path, d: Path) -> None:
    assert sbverify(signed, SNAKEOIL_CERT).returncode == 0
    proc = shieldwright("inspect", signed, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    keys = (
        "path",
        "size",
        "stub",
        "sections",
        "cmdline",
        "os_release",
        "uname",
        "sbat",
        "kernel",
        "signatures",
    )
    assert set(doc) >= {*keys, "authenticode_sha256"}
    assert doc["cmdline"] == "console=ttyS0 panic=-1"  # TEXT has its whitespace collapsed, like ukify
    assert doc["os_release"]["fields"]["PRETTY_NAME"] == "CLI Test"
    assert doc["stub"]["kind"] == "systemd-stub" and doc["stub"]["major"] == 252
    assert len(doc["signatures"]) == 1 and doc["signatures"][0]["digest_matches"] is True
    names = [s["name"] for s in doc["sections"]]
    assert {".linux", ".initrd", ".cmdline", ".osrel", ".uname", ".sbat"} <= set(names)
    linux = next(s for s in doc["sections"] if s["name"] == ".linux")
    assert linux["virtual_size"] == len(kernel()) and linux["measured"] is True
    text = shieldwright("inspect", signed)
    assert text.returncode == 0 and ".linux" in text.stdout and "systemd-stub 252" in text.stdout


def test_unsigned_build_notes_it(d: Path) -> None:
    out = d / "unsigned.efi"
    proc = shieldwright("build", "--linux", d / "vmlinuz", "--initrd", d / "initrd", "--cmdline", "quiet",
                        "--os-release", "ID=x", "-o", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "unsigned" in proc.stderr and out.exists()


def test_pcr11_json_shapes_and_values(signed: Path, d: Path) -> None:
    proc = shieldwright("pcr11", signed, "--json")
    assert proc.returncode == 0, proc.stderr
    one = json.loads(proc.stdout)
    assert set(one) == {"bank", "phases"} and one["bank"] == "sha256"
    assert list(one["phases"]) == list(DEFAULT_PHASES)
    assert all(len(v) == 64 and set(v) <= HEX for v in one["phases"].values())

    proc = shieldwright("pcr11", signed, "--bank", "sha256", "--bank", "sha1", "--json")
    both = json.loads(proc.stdout)
    assert isinstance(both, list) and [o["bank"] for o in both] == ["sha256", "sha1"]
    assert both[0] == one

    sections = {
        n: objcopy_section(signed, n, d / f"cli{n}") for n in (".linux", ".osrel", ".cmdline", ".initrd")
    }
    expected = systemd_measure(sections, ("sha256", "sha1"), DEFAULT_PHASES)
    assert {o["bank"]: o["phases"] for o in both} == expected

    phase = shieldwright("pcr11", signed, "--phase", ":", "--phase", "enter-initrd", "--json")
    assert json.loads(phase.stdout)["phases"] == {p: one["phases"][p] for p in ("", "enter-initrd")}
    text = shieldwright("pcr11", signed)
    assert text.returncode == 0 and one["phases"][""] in text.stdout


def test_missing_initrd_is_one_line(d: Path) -> None:
    proc = shieldwright("build", "--linux", d / "vmlinuz", "--initrd", d / "nope.img", "--cmdline", "x",
                        "--os-release", "ID=x", "-o", d / "x.efi")  # fmt: skip
    assert_one_line_error(proc, "initrd", "nope.img", "no such file")
    assert not (d / "x.efi").exists()


def test_nul_in_cmdline_file_is_one_line(d: Path) -> None:
    (d / "cmdline").write_bytes(b"console=ttyS0\0 evil")
    proc = shieldwright("build", "--linux", d / "vmlinuz", "--cmdline", f"@{d / 'cmdline'}",
                        "--os-release", "ID=x", "-o", d / "x.efi")  # fmt: skip
    assert_one_line_error(proc, "NUL")


def test_kernel_that_is_not_a_bzimage_is_one_line(d: Path) -> None:
    proc = shieldwright("build", "--linux", "/bin/busybox", "--cmdline", "x", "--os-release", "ID=x",
                        "-o", d / "x.efi")  # fmt: skip
    assert_one_line_error(proc, "bzImage")


def test_stub_problems_are_one_line(d: Path) -> None:
    (d / "notpe").write_bytes(b"hello" * 100)
    proc = shieldwright("build", "--linux", d / "vmlinuz", "--cmdline", "x", "--os-release", "ID=x",
                        "--stub", d / "notpe", "-o", d / "x.efi")  # fmt: skip
    assert_one_line_error(proc, "stub is not a valid PE image")


def test_signed_stub_is_one_line(d: Path, signed: Path) -> None:
    from app.boot.uki import HOST_STUB
    from app.signing.authenticode import sign_pe
    from tests.boot.uki_helpers import snakeoil

    (d / "signed-stub.efi").write_bytes(sign_pe(HOST_STUB.read_bytes(), snakeoil()))
    proc = shieldwright("build", "--linux", d / "vmlinuz", "--cmdline", "x", "--os-release", "ID=x",
                        "--stub", d / "signed-stub.efi", "-o", d / "x.efi")  # fmt: skip
    assert_one_line_error(proc, "stub is signed")


def test_inspect_and_pcr11_errors_are_one_line(d: Path, signed: Path) -> None:
    assert_one_line_error(shieldwright("inspect", d / "initrd"), "not a PE")
    assert_one_line_error(shieldwright("inspect", d / "missing.efi"), "no such file")
    assert_one_line_error(shieldwright("pcr11", signed, "--bank", "md5"), "unknown PCR bank")
    assert_one_line_error(shieldwright("pcr11", signed, "--stub-version", "250"), "252")


def test_install_writes_a_copy_with_the_uki(demo_image: Path, d: Path, signed: Path) -> None:
    out = d / "installed.img"
    proc = shieldwright("install", demo_image, "--uki", signed, "--id", "demo", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert "shimx64.efi" in proc.stderr  # the demo ESP has no shim: the CSV is inert until it is installed
    from tests.conftest import sgdisk_partitions

    offset = sgdisk_partitions(out)[0]["first_lba"] * 512  # type: ignore[operator]
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": os.devnull}
    got = subprocess.run(
        ["mtype", "-i", f"{out}@@{offset}", "::/EFI/Linux/demo.efi"], capture_output=True, env=env
    )
    assert got.stdout == signed.read_bytes()
    same = shieldwright("install", demo_image, "--uki", signed, "--id", "demo", "-o", demo_image)
    assert_one_line_error(same, "input image")
    not_uki = shieldwright("install", demo_image, "--uki", d / "initrd", "--id", "demo", "-o", d / "y.img")
    assert_one_line_error(not_uki, "not a PE")
