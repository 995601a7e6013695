"""``shieldwright luks``: outputs that collide (items 3 and 8 of issue 17) and header text on a terminal (10).

Each refusal must come before anything is written: no image, no recovery key file, the existing file as it
was. Header labels are set with cryptsetup itself (``config --label/--subsystem``), not with our writer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.build_helpers import extract_partition, lba_ranges
from tests.conftest import run
from tests.luks.cryptsetup import cryptsetup

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = "outputs-test passphrase 91d2"
FAST = ("--kdf", "pbkdf2", "--iter-time", "1")


def sw(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300)  # fmt: skip


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("shieldwright: error: ")
    return line


@pytest.fixture(scope="module")
def passfile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("luks-outputs") / "pass.txt"
    path.write_text(PASSPHRASE + "\n")
    return path


@pytest.fixture(scope="module")
def encrypted(small_disk: Path, passfile: Path) -> Path:
    out = passfile.parent / "enc.raw"
    proc = sw(
        "luks", "encrypt", small_disk, "--partition", "3", "--passphrase-file", passfile, *FAST, "-o", out
    )
    assert proc.returncode == 0, proc.stderr
    out.chmod(0o444)
    return out


# -- item 3: the recovery key file is never another output or the input -------------------------------------


def test_encrypt_refuses_a_recovery_key_file_that_is_the_output(small_disk: Path, passfile: Path, tmp_path):
    """Regression (issue 17 item 3): failed on ecab7db because ``--recovery-key-file X -o X`` wrote the key
    to X, then the image over it, and reported "recovery key written to X" (the key was lost)."""
    x = tmp_path / "x.img"
    proc = sw("luks", "encrypt", small_disk, "--partition", "3", "--passphrase-file", passfile,
              "--recovery-key-file", x, *FAST, "-o", x)  # fmt: skip
    line = one_line_error(proc)
    assert "recovery key file" in line and "is the output image" in line
    assert not x.exists(), "nothing was written"
    # The same file under another spelling is the same file.
    (tmp_path / "sub").mkdir()
    proc = sw("luks", "encrypt", small_disk, "--partition", "3", "--passphrase-file", passfile,
              "--recovery-key-file", tmp_path / "sub" / ".." / "x.img", *FAST, "-o", x)  # fmt: skip
    assert "is the output image" in one_line_error(proc)
    assert list(tmp_path.iterdir()) == [tmp_path / "sub"]


def test_add_key_refuses_a_recovery_key_file_that_is_the_output(encrypted: Path, passfile: Path, tmp_path):
    """Regression (issue 17 item 3): failed on ecab7db because ``add-key --recovery-key-file X -o X`` replaced
    the freshly written recovery key with the image and still reported the key as written."""
    x = tmp_path / "x.img"
    proc = sw("luks", "add-key", encrypted, "--partition", "3", "--passphrase-file", passfile,
              "--recovery-key-file", x, "-o", x)  # fmt: skip
    assert "is the output image" in one_line_error(proc)
    assert not x.exists()


def test_a_recovery_key_file_that_is_the_input_is_refused(encrypted: Path, passfile: Path, tmp_path):
    before = encrypted.stat()
    proc = sw("luks", "add-key", encrypted, "--partition", "3", "--passphrase-file", passfile,
              "--recovery-key-file", encrypted, "-o", tmp_path / "o.img")  # fmt: skip
    assert "is the input image" in one_line_error(proc)
    assert encrypted.stat().st_mtime_ns == before.st_mtime_ns and not (tmp_path / "o.img").exists()


# -- item 8: an existing output is replaced only with --force ----------------------------------------------


def test_encrypt_does_not_replace_an_existing_output_without_force(
    small_disk: Path, passfile: Path, tmp_path
):
    """Regression (issue 17 item 8): failed on ecab7db because ``luks encrypt -o FILE`` silently replaced an
    existing FILE."""
    out = tmp_path / "precious.raw"
    out.write_bytes(b"precious data")
    proc = sw("luks", "encrypt", small_disk, "--partition", "3", "--passphrase-file", passfile, *FAST,
              "--recovery-key-file", tmp_path / "rk.txt", "-o", out)  # fmt: skip
    line = one_line_error(proc)
    assert "already exists" in line and "--force" in line
    assert out.read_bytes() == b"precious data"
    assert not (tmp_path / "rk.txt").exists(), "refused before the recovery key was written"
    forced = sw("luks", "encrypt", small_disk, "--partition", "3", "--passphrase-file", passfile, *FAST,
                "--force", "-o", out)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert "No problems found" in run("sgdisk", "-v", out).stdout


def test_add_key_does_not_replace_an_existing_output_without_force(encrypted: Path, passfile: Path, tmp_path):
    """Regression (issue 17 item 8): failed on ecab7db because ``luks add-key -o FILE`` silently replaced an
    existing FILE."""
    out = tmp_path / "precious.raw"
    out.write_bytes(b"precious data")
    proc = sw("luks", "add-key", encrypted, "--partition", "3", "--passphrase-file", passfile,
              "--new-passphrase-file", passfile, *FAST, "-o", out)  # fmt: skip
    assert "already exists" in one_line_error(proc)
    assert out.read_bytes() == b"precious data"
    forced = sw("luks", "add-key", encrypted, "--partition", "3", "--passphrase-file", passfile,
                "--new-passphrase-file", passfile, *FAST, "--force", "-o", out)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    same = sw("luks", "add-key", encrypted, "--partition", "3", "--passphrase-file", passfile,
              "--new-passphrase-file", passfile, *FAST, "--force", "-o", encrypted)  # fmt: skip
    assert "is the input image" in one_line_error(same), "--force never means the input"


# -- item 10: header text is printed escaped ----------------------------------------------------------------


def test_dump_prints_labels_from_the_header_escaped(encrypted: Path, tmp_path: Path) -> None:
    """Regression (issue 17 item 10): failed on ecab7db because ``luks dump`` printed the LUKS2 label and
    subsystem raw, so a header could send terminal escape sequences (retitle, clear, rewrite lines)."""
    part = extract_partition(encrypted, 3, tmp_path / "p3.luks")
    label, subsystem = "\x1b]0;owned\x07\x1b[2Jlabel", "sub\x1b[1A\u202esys"
    proc = cryptsetup("config", "--label", label, "--subsystem", subsystem, part)
    assert proc.returncode == 0, proc.stderr
    image = tmp_path / "hostile.raw"
    image.write_bytes(encrypted.read_bytes())
    first, _ = lba_ranges(image)[3]
    run("dd", f"if={part}", f"of={image}", "bs=512", f"seek={first}", "conv=notrunc,sparse", "status=none")
    dump = sw("luks", "dump", image, "--partition", "3")
    assert dump.returncode == 0, dump.stderr
    assert "\x1b" not in dump.stdout and "\x07" not in dump.stdout and "\u202e" not in dump.stdout
    assert "Label:         \\x1b]0;owned\\x07\\x1b[2Jlabel" in dump.stdout
    assert "Subsystem:     sub\\x1b[1A\\u202esys" in dump.stdout
    as_json = sw("luks", "dump", image, "--partition", "3", "--json")
    assert as_json.returncode == 0 and "\x1b" not in as_json.stdout and "\\u001b]0;owned" in as_json.stdout
