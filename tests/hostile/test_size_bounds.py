"""Tiny hostile inputs must not exhaust memory, CPU or disk (issue 17, item 6).

Each test runs the real command in a child process and measures its peak memory (``wait4``'s
``ru_maxrss``) against :data:`~tests.hostile.measure.PEAK_BOUND_KIB`, its time, and what it may write
(``RLIMIT_FSIZE``). Limits in the child are a safety belt: a regression fails here instead of filling the
disk or the RAM of the machine running the suite.
"""

from __future__ import annotations

import hashlib
import resource
import shutil
import signal
import struct
import textwrap
import threading
import time
from pathlib import Path

import pytest

from app.disk.image import open_image
from app.errors import CancelledError, CorruptImageError
from app.luks import kdf
from app.luks.container import unlock
from app.luks.errors import LuksUnsupportedError
from app.progress import CancelToken
from tests.conftest import run
from tests.hostile import samples
from tests.hostile.measure import PEAK_BOUND_KIB, child_env, cli, python, run_measured

GiB = samples.GiB


def _refused_small(result, *needles: str) -> None:
    """Peak memory under the bound, then a one-line error (exit 2) without a traceback."""
    assert result.peak_kib < PEAK_BOUND_KIB, result.describe()
    assert result.returncode == 2, result.describe()
    assert "Traceback" not in result.stderr and result.stderr.startswith("shieldwright: error: "), (
        result.stderr
    )
    for needle in needles:
        assert needle in result.stderr, result.stderr


# --- PE / UKI --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def huge_uki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("uki") / "hostile.efi"
    path.write_bytes(samples.huge_section_uki(1 * GiB))
    assert path.stat().st_size == 1536
    return path


@pytest.mark.parametrize("command", ["inspect", "pcr11"])
def test_uki_with_a_huge_virtual_size_is_refused_without_allocating_it(huge_uki: Path, command: str) -> None:
    """Regression (issue 17 item 6): failed on ecab7db because ``uki inspect``/``uki pcr11`` materialised
    the section's VirtualSize (1 GiB of zeros from a 1.5 KB file, then hashed it): peak 2.1 GB."""
    result = run_measured(cli("uki", command, huge_uki), timeout=60)
    _refused_small(result, "maps 1073741824 bytes", "zero fill")


def test_verify_of_a_template_with_a_huge_section_uki_stays_small(tmp_path: Path) -> None:
    """Regression (issue 17 item 6): failed on ecab7db because ``verify`` inspected the ESP's UKI by
    materialising its 1 GiB VirtualSize (peak above 1 GiB)."""
    image = samples.esp_image_with(
        tmp_path / "t.img", {"/EFI/Linux/x.efi": samples.huge_section_uki(1 * GiB)}
    )
    result = run_measured(cli("verify", image), timeout=120, env=child_env(TMPDIR=str(tmp_path)))
    assert result.peak_kib < PEAK_BOUND_KIB, result.describe()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.describe()
    assert "UKI \\EFI\\Linux\\x.efi: section '.linux' maps 1073741824 bytes" in result.stdout, result.stdout


def test_zero_fill_within_the_bound_is_hashed_without_materialising(tmp_path: Path) -> None:
    """Regression (issue 17 item 6): failed on ecab7db because a section's zero fill was allocated (twice)
    to be hashed: 48 MiB of VirtualSize past a 512-byte section peaked at ~150 MiB. Under the 64 MiB bound
    it still inspects, hashed in pieces: the digest is that of the mapped bytes."""
    vsize = 48 * 2**20
    path = tmp_path / "fill.efi"
    path.write_bytes(samples.huge_section_uki(vsize))
    expected = hashlib.sha256(b"\xaa" * 0x200 + bytes(vsize - 0x200)).hexdigest()
    result = run_measured(cli("uki", "inspect", path), timeout=60)
    assert result.peak_kib < 100 * 1024, result.describe()
    assert result.returncode == 0 and expected in result.stdout, result.describe()


# --- VHDX ------------------------------------------------------------------------------------------------


def test_vhdx_log_length_from_the_header_is_not_allocated(tmp_path: Path) -> None:
    """Regression (issue 17 item 6): failed on ecab7db because the VHDX reader read the whole log the
    header declares (1 GiB from a nearly empty sparse file) in one piece: peak 1.07 GB."""
    path = samples.vhdx_with_huge_log(tmp_path / "log.vhdx", 1 * GiB)
    assert path.stat().st_blocks * 512 < 16 * 2**20  # nearly empty
    result = run_measured(cli("inspect", path), timeout=60)
    assert result.returncode == 1 and "No GPT" in result.stdout, result.describe()  # opened, then read
    assert result.peak_kib < PEAK_BOUND_KIB, result.describe()
    assert result.seconds < 20, result.describe()


def test_vhdx_bat_of_a_64_tib_disk_is_not_materialised(tmp_path: Path) -> None:
    """Regression (issue 17 item 6): failed on ecab7db because the reader read the whole BAT (513 MiB of
    a sparse file) and built an 8-byte offset per block of a 64 TiB disk: peak 1.59 GB, 11 s."""
    path = samples.vhdx_with_huge_disk(tmp_path / "disk.vhdx", 64 * samples.TiB)
    assert path.stat().st_blocks * 512 < 16 * 2**20
    result = run_measured(cli("inspect", "--json", path), timeout=60)
    assert result.returncode == 1 and '"virtual_size": 70368744177664' in result.stdout, result.describe()
    assert result.peak_kib < PEAK_BOUND_KIB, result.describe()
    assert result.seconds < 20, result.describe()


def test_vhdx_blocks_sharing_file_space_are_refused(tmp_path: Path) -> None:
    """Regression (issue 17 item 6): failed on ecab7db because BAT entries could all name the same file
    block: a small file then described any amount of data for copies to expand. Each present block now
    owns its file space, so the data a VHDX maps is bounded by its size."""
    path = samples.small_vhdx(tmp_path / "shared.vhdx")
    run("qemu-io", "-f", "vhdx", "-c", "write -P 0xa5 2M 1M", path)
    with open(path, "r+b") as f:
        head = f.read(2**20)
        _, bat, _ = samples.bat_region(head)
        f.seek(bat)
        entry0 = f.read(8)
        assert struct.unpack("<Q", entry0)[0] & 7 == 6  # FULLY_PRESENT
        f.seek(bat + 16)  # block 2 (no bitmap entry before block 4096 with 1 MiB blocks)
        f.write(entry0)
    with pytest.raises(CorruptImageError, match="share file space"):
        open_image(path)


def test_qcow2_l1_entries_sharing_an_l2_table_are_refused(tmp_path: Path) -> None:
    """Regression (issue 17 item 6): failed on ecab7db because every L1 entry could point at one L2 table,
    letting a few KiB of tables describe terabytes of allocated clusters."""
    path = tmp_path / "shared.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", path, "8M")
    run("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 4k", "-c", "write -P 0xa5 3M 4k", path)
    with open(path, "r+b") as f:
        f.seek(40)
        (l1_off,) = struct.unpack(">Q", f.read(8))
        f.seek(l1_off)
        first, second = struct.unpack(">QQ", f.read(16))
        assert first and second and first != second  # two L2 tables (each covers 2 MiB)
        f.seek(l1_off + 8)
        f.write(struct.pack(">Q", first))
    with pytest.raises(CorruptImageError, match="L2 table at offset .* twice"):
        open_image(path)


# --- qcow2 -> $TMPDIR ------------------------------------------------------------------------------------


def test_verify_refuses_to_expand_a_partition_beyond_the_free_space(tmp_path: Path) -> None:
    """Regression (issue 17 item 6): failed on ecab7db because ``verify`` copied the ESP of a few-MiB
    qcow2 whose clusters all map one 2 MiB cluster into $TMPDIR, expanding it towards twice the free
    space (stopped here by RLIMIT_FSIZE: EFBIG, a traceback). Now refused before anything is written."""
    free = shutil.disk_usage(tmp_path).free
    image = samples.expanding_qcow2(tmp_path / "t.qcow2", 2 * free + 2**30)
    assert image.stat().st_size < 64 * 2**20
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = run_measured(
        cli("verify", image),
        timeout=120,
        env=child_env(TMPDIR=str(scratch)),
        limits={resource.RLIMIT_FSIZE: 256 * 2**20},
    )
    _refused_small(result, "not enough space in", "TMPDIR")
    assert not any(scratch.iterdir()), list(scratch.iterdir())


_COPY = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from app.disk.image import open_image
    from app.disk.partfile import copy_partition
    from app.errors import OutOfSpaceError
    with open_image({image!r}) as img:
        try:
            copy_partition(img, 2**20, img.virtual_size - 2**21, Path({copy!r}))
        except OutOfSpaceError as exc:
            print(exc.one_line(), file=sys.stderr)
            sys.exit(2)
    """
)


def test_copy_partition_refuses_before_writing(tmp_path: Path) -> None:
    """Regression (issue 17 item 6): failed on ecab7db because copy_partition wrote whatever the image
    mapped, with no look at the free space (in a child process limited by RLIMIT_FSIZE, as this test must
    never fill the disk). Now: needed = the range's allocated bytes plus the reserve, checked first."""
    free = shutil.disk_usage(tmp_path).free
    image = samples.expanding_qcow2(tmp_path / "e.qcow2", 2 * free + 2**30)
    copy = tmp_path / "copy.img"
    result = run_measured(
        python(_COPY.format(image=str(image), copy=str(copy))),
        timeout=60,
        limits={resource.RLIMIT_FSIZE: 256 * 2**20},
    )
    assert result.returncode == 2 and "set TMPDIR" in result.stderr, result.describe()
    assert not copy.exists()


# --- LUKS2 KDF costs -------------------------------------------------------------------------------------

_UNLOCK = textwrap.dedent(
    """
    import sys
    from tests.hostile import samples
    from app.luks.container import unlock
    from app.errors import ShieldwrightError
    area = samples.with_keyslot_kdf(samples.cheap_luks_area(), {kdf!r})
    try:
        unlock(area, b"hostile")
    except ShieldwrightError as exc:
        print("refused:", type(exc).__name__, exc.one_line(), file=sys.stderr)
        sys.exit(2)
    """
)


@pytest.mark.parametrize(
    "kdf_json",
    [
        {"type": "pbkdf2", "hash": "sha256", "iterations": 2**31 + 1},
        {"type": "argon2id", "time": 2**31, "memory": 4 * 2**20, "cpus": 4},
    ],
    ids=["pbkdf2-2^31", "argon2id-4GiB-2^31"],
)
def test_foreign_keyslot_costs_are_refused_before_any_work(kdf_json: dict) -> None:
    """Regression (issue 17 items 6, 10): failed on ecab7db because a foreign header's KDF costs were used
    as given - 2**31 + 1 pbkdf2 iterations crashed OpenSSL's Rust binding (a PanicException traceback),
    2**31 argon2 passes over 4 GiB ran for hours (killed here after 20 s, at 4.1 GB). Now both are refused
    at once with a one-line message naming the cost."""
    result = run_measured(python(_UNLOCK.format(kdf=kdf_json)), timeout=20, env=child_env())
    assert not result.timed_out and result.returncode == 2, result.describe()
    assert "refused: LuksUnsupportedError" in result.stderr and "Shieldwright computes" in result.stderr
    assert result.seconds < 10 and result.peak_kib < PEAK_BOUND_KIB, result.describe()


def test_argon2_memory_beyond_half_the_ram_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (issue 17 item 6): failed on ecab7db because the memory a foreign keyslot asks for was
    allocated whatever the machine has (here: 64 MiB asked on a "128 MiB machine" was simply run)."""
    monkeypatch.setattr(kdf, "physical_memory_kib", lambda: 128 * 1024)
    area = samples.with_keyslot_kdf(
        samples.cheap_luks_area(), {"type": "argon2id", "time": 4, "memory": 65 * 1024, "cpus": 1}
    )
    with pytest.raises(LuksUnsupportedError) as err:
        unlock(area, b"hostile")
    assert "65 MiB of memory" in err.value.message and "64 MiB allowed here" in err.value.message


_LONG_DERIVE = textwrap.dedent(
    """
    import sys, time
    from app.luks.kdf import KdfParams, derive
    print("start", time.monotonic(), flush=True)
    try:
        derive(KdfParams.pbkdf2({iterations}), b"pw", 64)
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
        sys.exit(130)
    print("finished", flush=True)
    """
)


def test_ctrl_c_interrupts_a_long_key_derivation_within_a_second() -> None:
    """Regression (issue 17 item 6): failed on ecab7db because the KDF ran on the main thread inside
    OpenSSL, where Ctrl-C is only seen when it returns (here 2**28 iterations: about 40 s)."""
    result = run_measured(
        python(_LONG_DERIVE.format(iterations=2**28)),
        timeout=15,
        env=child_env(),
        signals=[(0.5, signal.SIGINT)],
        signals_after=b"start",
    )
    assert not result.timed_out and result.returncode == 130, result.describe()
    words = result.stdout.split()
    assert words[0::2] == ["start", "interrupted"]
    # The signal comes 0.5 s after "start" (CLOCK_MONOTONIC is one clock for both processes).
    assert float(words[3]) - float(words[1]) < 1.5, result.stdout


def test_cancel_token_stops_waiting_for_a_key_derivation() -> None:
    """Regression (issue 17 item 6): failed on ecab7db because derive() took no CancelToken: the wizard's
    Cancel could not stop a keyslot unlock."""
    token = CancelToken()
    threading.Timer(0.2, token.cancel).start()
    start = time.monotonic()
    with pytest.raises(CancelledError):
        kdf.derive(kdf.KdfParams.pbkdf2(2**28), b"pw", 64, cancel=token)
    assert time.monotonic() - start < 1.0
