"""Secrets read from pipes, FIFOs and ``<(...)``: all of them, the same way everywhere, up to a bound.

The oracle for "the keyslot really holds the whole passphrase" is cryptsetup (``open --test-passphrase``) on
the partition cut out of the produced image with ``dd`` at the LBAs sgdisk reports.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app import secrets
from app.commands._util import add_passphrase_options, read_passphrase
from app.luks.imageops import Keyslot, encrypt_partitions
from app.luks.kdf import KdfParams
from app.luks.passphrase import MIN_LENGTH, Strength, assess
from app.template.recipe import RecipeError, SecretSource, read_secret
from tests.build_helpers import extract_partition, make_keys
from tests.luks.cryptsetup import test_passphrase as cryptsetup_opens

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = b"piped provisioning passphrase 5e1c"


@contextmanager
def fifo_with(tmp_path: Path, data: bytes, name: str = "secret.fifo") -> Iterator[Path]:
    """A named pipe that a writer thread fills with ``data`` (in small pieces, as a slow producer would)."""
    path = tmp_path / name
    os.mkfifo(path)

    def write() -> None:
        with open(path, "wb", buffering=0) as f:
            for i in range(0, len(data), 7):
                f.write(data[i : i + 7])

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield path
    finally:
        writer.join(timeout=10)
        assert not writer.is_alive(), "the reader never opened the FIFO"


def test_every_reader_takes_the_whole_secret_from_a_fifo(tmp_path: Path) -> None:
    """Regression (issue 17 item 1): failed on ecab7db because the recipe's reader sized its buffer from
    st_size, which is 0 for a FIFO, and returned the first byte of the passphrase only."""
    with fifo_with(tmp_path, PASSPHRASE + b"\n", "a") as fifo:
        got = read_secret(SecretSource.file(fifo), prompt_text="P: ", interactive=False)
    assert got == bytearray(PASSPHRASE)
    # lazy: the regression test also runs on ecab7db, which lacks this function
    from app.commands._util import read_passphrase_buffer

    parser = argparse.ArgumentParser()
    add_passphrase_options(parser, "passphrase")
    with fifo_with(tmp_path, PASSPHRASE + b"\n", "b") as fifo:
        args = parser.parse_args(["--passphrase-file", str(fifo)])
        assert read_passphrase_buffer(args, "passphrase") == bytearray(PASSPHRASE)
    with fifo_with(tmp_path, PASSPHRASE, "c") as fifo:
        args = parser.parse_args(["--passphrase-file", str(fifo)])
        assert read_passphrase(args, "passphrase") == PASSPHRASE


def test_a_pipe_without_end_is_refused_at_the_stated_maximum(tmp_path: Path) -> None:
    """Regression (issue 17 item 1): failed on ecab7db because /dev/zero (st_size 0) was read as a one-byte
    passphrase instead of being refused; now reading stops after MAX_SECRET_BYTES and says why."""
    with pytest.raises(RecipeError, match="more than 65536 bytes: not a passphrase") as info:
        read_secret(SecretSource.file("/dev/zero"), prompt_text="P: ", interactive=False, key="x.passphrase")
    assert info.value.key == "x.passphrase"

    exactly = b"x" * secrets.MAX_SECRET_BYTES
    with fifo_with(tmp_path, exactly, "max") as fifo:
        assert secrets.read_secret_file(fifo) == bytearray(exactly)
    with fifo_with(tmp_path, exactly + b"y", "over") as fifo, pytest.raises(secrets.SecretError):
        secrets.read_secret_file(fifo)
    big = tmp_path / "big"
    big.write_bytes(exactly + b"\n")
    with pytest.raises(secrets.SecretError, match="is 65537 bytes"):
        secrets.read_secret_file(big)


def test_an_image_encrypted_with_a_fifo_passphrase_opens_with_all_of_it(
    small_disk: Path, tmp_path: Path
) -> None:
    """Regression (issue 17 item 1): failed on ecab7db because the keyslot was made from the first byte of
    the FIFO's passphrase, so cryptsetup refused the real passphrase (and took the first character)."""
    with fifo_with(tmp_path, PASSPHRASE + b"\n") as fifo:
        secret = read_secret(SecretSource.file(fifo), prompt_text="P: ", interactive=False)
    out = tmp_path / "enc.raw"
    try:
        encrypt_partitions(small_disk, out, [3], [Keyslot(secret, KdfParams.pbkdf2(iterations=1000))])
    finally:
        secret[:] = bytes(len(secret))
    part = extract_partition(out, 3, tmp_path / "p3.luks")
    assert cryptsetup_opens(part, PASSPHRASE, tmp_path) == 0
    assert cryptsetup_opens(part, PASSPHRASE[:1], tmp_path) != 0


def test_build_reads_passphrase_files_given_as_process_substitution(demo_image: Path, tmp_path: Path) -> None:
    """Regression (issue 17 item 1): failed on ecab7db because ``build --passphrase-file <(...)`` exited 0
    with a keyslot that opened with the first character of the passphrase only."""
    keys = make_keys(tmp_path)
    out = tmp_path / "t.raw"
    argv = ["build", "--base", demo_image, "-o", out, "--name", "Pipe test", "--version", "1.0.0.0",
            "--protect", "3", "--uefi-cert", keys.uefi_cert, "--uefi-key", keys.uefi_key,
            "--catalog-cert", keys.catalog.cert_path, "--catalog-key", keys.catalog.key_path,
            "--kdf", "pbkdf2", "--iter-time", "1"]  # fmt: skip
    command = " ".join(shlex.quote(str(a)) for a in [sys.executable, "-m", "app", *argv])
    script = (
        f"{command} --key-passphrase-file {shlex.quote(str(keys.passphrase_file))} "
        '--passphrase-file <(printf "%s\\n" "$SW_PIPE_PASS")'
    )
    env = {**os.environ, "SW_PIPE_PASS": PASSPHRASE.decode()}
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert PASSPHRASE.decode() not in proc.stdout + proc.stderr
    part = extract_partition(out, 3, tmp_path / "p3.luks")
    assert cryptsetup_opens(part, PASSPHRASE, tmp_path) == 0
    assert cryptsetup_opens(part, PASSPHRASE[:1], tmp_path) != 0


def test_luks_reads_dev_stdin_from_a_pipe(small_disk: Path, tmp_path: Path) -> None:
    """``--passphrase-file /dev/stdin`` with the passphrase piped in: the same reader, the whole secret."""
    out = tmp_path / "enc.raw"
    proc = subprocess.run(
        [sys.executable, "-m", "app", "luks", "encrypt", small_disk, "--partition", "3",
         "--passphrase-file", "/dev/stdin", "--kdf", "pbkdf2", "--iter-time", "1", "-o", out],
        cwd=ROOT, input=PASSPHRASE + b"\n", capture_output=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b"", "a 34-character passphrase draws no warning"
    part = extract_partition(out, 3, tmp_path / "p3.luks")
    assert cryptsetup_opens(part, PASSPHRASE, tmp_path) == 0


def test_the_cli_warns_about_a_short_new_passphrase(small_disk: Path, tmp_path: Path) -> None:
    """Regression (issue 17 item 1): failed on ecab7db because a 4-character passphrase was used without a
    word. It is still used (a script may have its reasons), with one warning line that shows no secret."""
    short = tmp_path / "short.pass"
    short.write_text("abc1\n")
    out = tmp_path / "enc.raw"
    proc = subprocess.run(
        [sys.executable, "-m", "app", "luks", "encrypt", small_disk, "--partition", "3",
         "--passphrase-file", short, "--kdf", "pbkdf2", "--iter-time", "1", "-o", out],
        cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("shieldwright: warning: the new passphrase has only 4 characters")
    assert "at least 12" in line and "abc1" not in proc.stdout + proc.stderr


def test_one_strength_rule_for_the_cli_and_the_wizard() -> None:
    assert MIN_LENGTH == secrets.MIN_PASSPHRASE_LENGTH
    eleven, twelve = "é" * 5 + "abcdef", "é" * 6 + "abcdef"  # characters, not UTF-8 bytes
    assert secrets.short_passphrase_problem(eleven.encode()) and assess(eleven).strength is Strength.TOO_SHORT
    assert secrets.short_passphrase_problem(twelve.encode()) is None and assess(twelve).acceptable


def test_the_process_forbids_core_dumps() -> None:
    """Issue 17 item 11: a crash with a passphrase in memory writes no core file (RLIMIT_CORE soft limit 0),
    for the CLI and the wizard alike (both start in app.__main__.main)."""
    code = (  # app.cli.main is replaced before app.__main__ binds it: no wizard starts
        "import resource, app.cli\n"
        "app.cli.main = lambda argv: print(resource.getrlimit(resource.RLIMIT_CORE)[0]) or 0\n"
        "import app.__main__ as m\n"
        "m.main([])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "0"
