"""``uki build``/``uki install``/``convert``/``demo-image`` never replace a file without ``--force``
(issue 17, item 8), and ``inspect``/``uki inspect`` print text from the input escaped (item 10).

Oracles: the bytes on disk before and after (an untouched file is byte-identical), ``cmp`` with qemu-img's
own conversion for ``convert --force``, and the terminal bytes themselves (no ESC/BEL reaches stdout).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.errors import OutputExistsError
from tests.conftest import MiB, run
from tests.hostile.samples import esp_image_with, fake_bzimage, tiny_pe

ESCAPES = ("\x1b", "\x07", "\x9b")


def shieldwright(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True)


def _existing(path: Path, content: bytes = b"precious, not an image\n") -> bytes:
    path.write_bytes(content)
    return content


def _refused(proc: subprocess.CompletedProcess[str], path: Path, before: bytes) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("shieldwright: error: ") and "already exists" in proc.stderr
    assert "--force" in proc.stderr and "Traceback" not in proc.stderr
    assert path.read_bytes() == before


# --- item 8 --------------------------------------------------------------------------------------------


def test_uki_build_refuses_an_existing_output_unless_forced(tmp_path: Path) -> None:
    """Regression (issue 17 item 8): failed on ecab7db because ``uki build -o`` replaced an existing file
    (it wrote with overwrite=True)."""
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(fake_bzimage())
    out = tmp_path / "uki.efi"
    before = _existing(out)
    argv = ["uki", "build", "--linux", kernel, "--cmdline", "quiet", "--os-release", "ID=t", "-o", out]
    _refused(shieldwright(*argv), out, before)
    forced = shieldwright(*argv, "--force")
    assert forced.returncode == 0, forced.stderr
    assert out.read_bytes()[:2] == b"MZ"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_uki_install_refuses_an_existing_output_unless_forced(tmp_path: Path) -> None:
    """Regression (issue 17 item 8): failed on ecab7db because ``uki install -o`` renamed its result over
    an existing file."""
    image = esp_image_with(tmp_path / "in.img", {"/EFI/BOOT/BOOTX64.EFI": b"MZ"}, esp_mib=34)
    uki = tmp_path / "x.efi"
    uki.write_bytes(tiny_pe([(".osrel", 5, b"ID=t\n"), (".linux", 0x400, fake_bzimage())]))
    out = tmp_path / "out.img"
    before = _existing(out)
    argv = ["uki", "install", image, "--uki", uki, "--id", "x", "-o", out]
    _refused(shieldwright(*argv), out, before)
    forced = shieldwright(*argv, "--force")
    assert forced.returncode == 0, forced.stderr
    listing = run("mdir", "-i", f"{out}@@{MiB}", "-b", "-/", "::/EFI/Linux").stdout
    assert "::/EFI/Linux/x.efi" in listing


def test_convert_refuses_an_existing_output_unless_forced(small_disk: Path, tmp_path: Path) -> None:
    """Regression (issue 17 item 8): failed on ecab7db because ``convert`` renamed its output over an
    existing file."""
    out = tmp_path / "out.raw"
    before = _existing(out)
    _refused(shieldwright("convert", small_disk, out, "--format", "raw"), out, before)
    forced = shieldwright("convert", small_disk, out, "--format", "raw", "--force")
    assert forced.returncode == 0, forced.stderr
    run("cmp", small_disk, out)


def test_demo_image_refuses_an_existing_output(tmp_path: Path) -> None:
    """Regression (issue 17 item 8): failed on ecab7db because ``demo-image PATH`` built the image and
    renamed it over an existing PATH (now refused before any download or build)."""
    out = tmp_path / "demo.img"
    before = _existing(out)
    _refused(shieldwright("demo-image", out), out, before)


def test_publish_without_consent_never_replaces_a_file_that_appeared_meanwhile(tmp_path: Path) -> None:
    """The early check can race with another writer; the final link(2) cannot: the late file is kept."""
    from app.disk.publish import publish

    tmp, dst = tmp_path / ".partial", tmp_path / "out"
    tmp.write_bytes(b"ours")
    dst.write_bytes(b"theirs")
    with pytest.raises(OutputExistsError):
        publish(tmp, dst, overwrite=False)
    assert dst.read_bytes() == b"theirs"
    publish(tmp, dst, overwrite=True)
    assert dst.read_bytes() == b"ours" and not tmp.exists()


# --- item 10 -------------------------------------------------------------------------------------------


def _assert_no_escapes(text: str) -> None:
    for ch in ESCAPES:
        assert ch not in text, f"raw {ch!r} reached the terminal: {text!r}"


def test_inspect_prints_gpt_names_escaped(tmp_path: Path) -> None:
    """Regression (issue 17 item 10): failed on ecab7db because ``inspect`` printed a GPT partition name
    raw, so ESC[2J cleared the screen and ESC]0;…BEL retitled the terminal."""
    image = tmp_path / "esc.img"
    with open(image, "wb") as f:
        f.truncate(8 * MiB)
    run("sgdisk", "-n", "1:2048:+2M", "-t", "1:ef00", "-c", "1:A\x1b[2JB\x1b]0;pwn\x07", image)
    proc = shieldwright("inspect", image)
    _assert_no_escapes(proc.stdout)
    assert "A\\x1b[2JB\\x1b]0;pwn\\x07" in proc.stdout


def test_uki_inspect_prints_texts_from_the_uki_escaped(tmp_path: Path) -> None:
    """Regression (issue 17 item 10): failed on ecab7db because ``uki inspect`` printed the UKI's command
    line, os-release name, uname, SBAT and section names raw."""
    uki = tiny_pe([
        (".osrel", 40, b'PRETTY_NAME="Evil\x1b[31mRed\x1b[0m"\n\0\0\0\0\0\0\0\0\0'),
        (".cmdline", 21, b"quiet \x1b]0;title\x07 ro\0"),
        (".uname", 12, b"6.1\x1b[2Jzzz\0\0"),
        (".sbat", 30, b"sbat,1,x\x1b[1m,y,z,w,u\nq,1,a,b,c,d"),
        ("\x1b[7m.x", 4, b"abcd"),
        (".linux", 0x400, fake_bzimage("6.1\x1b[5mblink (x@y) #1")),
    ])  # fmt: skip
    path = tmp_path / "esc.efi"
    path.write_bytes(uki)
    proc = shieldwright("uki", "inspect", path)
    assert proc.returncode == 0, proc.stderr
    _assert_no_escapes(proc.stdout)
    for shown in ("Evil\\x1b[31mRed\\x1b[0m", "quiet \\x1b]0;title\\x07 ro", "6.1\\x1b[2Jzzz", "x\\x1b[1m",
                  "\\x1b[7m.x", "6.1\\x1b[5mblink"):  # fmt: skip
        assert shown in proc.stdout, (shown, proc.stdout)
