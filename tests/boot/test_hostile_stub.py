"""Hostile stubs and UKIs: a marker version of thousands of digits, stub alignments and addresses that
would make the UKI writer allocate gigabytes or overflow the 32-bit header fields. Each is refused (or,
for ``uki inspect``, shown as an unknown stub) with the boot package's own errors, in small memory."""

from __future__ import annotations

import resource
import struct
from pathlib import Path

import pytest

from app.boot.errors import PcrPredictionError, UkiError
from app.boot.peimage import NewSection, append_sections, read_pe
from app.boot.stub import StubInfo, detect_stub, measured_sections
from app.boot.uki import UkiInputs, build_uki, inspect_uki
from tests.hostile.measure import PEAK_BOUND_KIB, cli, run_measured
from tests.hostile.samples import fake_bzimage, tiny_pe

MARKER_252 = b"#### LoaderInfo: systemd-stub 252 ####"
#: Where tiny_pe puts the optional header and the section table (e_lfanew 0x40, 16 data directories).
_OPT = 0x40 + 24
_TABLE = 0x40 + 4 + 20 + 112 + 16 * 8
_BUILD_ARGS = ("--cmdline", "quiet", "--os-release", "ID=hostile")


def _long_version_uki(digits: int = 5000) -> bytes:
    marker = b"#### LoaderInfo: systemd-stub " + b"9" * digits + b" ####"
    return tiny_pe([(".sdmagic", len(marker), marker), (".linux", 0x400, fake_bzimage())])


def _stub(
    *, file_alignment: int | None = None, va: int | None = None, size_of_image: int | None = None
) -> bytes:
    """A 1 KiB systemd-stub look-alike (one .sdmagic section) with header fields overwritten."""
    stub = bytearray(tiny_pe([(".sdmagic", len(MARKER_252), MARKER_252)]))
    if file_alignment is not None:
        struct.pack_into("<I", stub, _OPT + 36, file_alignment)
    if va is not None:
        struct.pack_into("<I", stub, _TABLE + 12, va)
    if size_of_image is not None:
        struct.pack_into("<I", stub, _OPT + 56, size_of_image)
    return bytes(stub)


def _clean_refusal(result_code: int, stderr: str) -> str:
    """The project's refusal: exit 2, one ``shieldwright: error:`` line, no traceback, and not the generic
    line for an untranslated exception (which points at the log's traceback)."""
    assert result_code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shieldwright: error: "), stderr
    assert "details in" not in lines[0] and "cannot be processed" not in lines[0], lines[0]
    return lines[0]


# --- 9: an endless version in the LoaderInfo marker -------------------------------------------------------


def test_a_marker_with_a_5000_digit_version_is_an_unknown_stub() -> None:
    """Regression: int() of the 5000-digit major raised ValueError (Python's 4300-digit limit) out of
    ``inspect_uki`` (which only expects UkiError)."""
    uki = _long_version_uki()
    assert detect_stub(read_pe(uki)) is None
    info = inspect_uki(uki)
    assert info.stub is None
    assert all(s.measured is None for s in info.sections)


def test_a_long_version_parses_to_no_major_and_a_short_error() -> None:
    long = "9" * 5000
    assert StubInfo("systemd-stub", long).major is None
    assert StubInfo("systemd-stub", long).to_dict()["major"] is None
    assert StubInfo("systemd-stub", "255.4-1").major == 255
    with pytest.raises(PcrPredictionError, match="cannot read a systemd version") as info:
        measured_sections(long)
    assert len(info.value.message) < 200
    assert measured_sections("v255")[-1] == ".pcrpkey"


def test_uki_inspect_and_pcr11_of_a_long_version_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "longver.efi"
    path.write_bytes(_long_version_uki())
    shown = run_measured(cli("uki", "inspect", path), timeout=60)
    assert shown.returncode == 0, shown.describe()
    assert "unknown (no LoaderInfo marker)" in shown.stdout
    refused = run_measured(cli("uki", "pcr11", path), timeout=60)
    assert "no systemd-stub version marker" in _clean_refusal(refused.returncode, refused.stderr)
    given = run_measured(cli("uki", "pcr11", path, "--stub-version", "9" * 5000), timeout=60)
    line = _clean_refusal(given.returncode, given.stderr)
    assert "cannot read a systemd version" in line and len(line) < 300


# --- 10: stub alignments and addresses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"file_alignment": 0x40000000, "va": 0x40000000}, "FileAlignment 0x40000000"),
        ({"file_alignment": 0x300}, "FileAlignment 0x300"),
        ({"file_alignment": 0x100}, "FileAlignment 0x100"),
        ({"file_alignment": 0x2000}, "SectionAlignment 0x1000"),  # SectionAlignment below FileAlignment
        ({"va": 0xFFFFF000}, "outside its image"),
        ({"va": 0x100}, "outside its image"),  # inside the headers
    ],
)
def test_stub_layouts_the_writer_cannot_follow_are_refused(fields: dict[str, int], needle: str) -> None:
    stub = read_pe(_stub(**fields))
    with pytest.raises(UkiError, match=needle):
        append_sections(stub, [NewSection(".linux", fake_bzimage(), code=True)])
    with pytest.raises(UkiError, match=needle):
        build_uki(UkiInputs(linux=fake_bzimage(), stub=stub.data))


def test_appended_sections_past_4_gib_are_refused_not_a_struct_error() -> None:
    """Regression: a stub section at 0xFFFFF000 (inside a SizeOfImage of 4 GiB - 1) put the appended
    section at 2^32, and packing it raised struct.error."""
    stub = read_pe(_stub(va=0xFFFFF000, size_of_image=0xFFFFFFFF))
    with pytest.raises(UkiError, match="would not fit the 4 GiB"):
        append_sections(stub, [NewSection(".osrel", b"ID=x\n")])


def test_a_sound_tiny_stub_still_builds() -> None:
    uki = build_uki(UkiInputs(linux=fake_bzimage(), stub=_stub()))
    assert read_pe(uki).section(".linux") is not None


def test_uki_build_with_a_1_gib_file_alignment_stub_stays_small(tmp_path: Path) -> None:
    """Regression: a 1 KiB stub with FileAlignment 1 GiB made ``append_sections`` allocate a gigabyte of
    header padding, then another per appended section. Now refused before the writer allocates anything;
    the child's address space is capped so the old behaviour fails fast instead of swapping."""
    stub = tmp_path / "bigfa.efi"
    stub.write_bytes(_stub(file_alignment=0x40000000, va=0x40000000))
    assert stub.stat().st_size == 1024
    kernel = tmp_path / "bz"
    kernel.write_bytes(fake_bzimage())
    result = run_measured(
        cli("uki", "build", "--linux", kernel, "--stub", stub, *_BUILD_ARGS, "-o", tmp_path / "out.efi"),
        timeout=60,
        limits={resource.RLIMIT_AS: 2 * 2**30},
    )
    assert result.peak_kib < PEAK_BOUND_KIB, result.describe()
    assert "FileAlignment 0x40000000" in _clean_refusal(result.returncode, result.stderr)
    assert not (tmp_path / "out.efi").exists()


def test_uki_build_with_a_stub_section_near_4_gib_through_the_cli(tmp_path: Path) -> None:
    stub = tmp_path / "highva.efi"
    stub.write_bytes(_stub(va=0xFFFFF000, size_of_image=0xFFFFFFFF))
    kernel = tmp_path / "bz"
    kernel.write_bytes(fake_bzimage())
    result = run_measured(
        cli("uki", "build", "--linux", kernel, "--stub", stub, *_BUILD_ARGS, "-o", tmp_path / "out.efi"),
        timeout=60,
    )
    assert "would not fit the 4 GiB" in _clean_refusal(result.returncode, result.stderr)
