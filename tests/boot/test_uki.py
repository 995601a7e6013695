"""UKI build and inspect, graded by binutils (objdump/objcopy), pefile and sbverify."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pefile
import pytest

from app.boot.errors import KernelFormatError, UkiError
from app.boot.peimage import NewSection, append_sections, read_pe
from app.boot.uki import DEFAULT_SBAT, SBAT_HEADER, UkiInputs, build_uki, inspect_uki
from app.signing.authenticode import sign_pe
from tests.boot.uki_helpers import (
    CMDLINE,
    OS_RELEASE,
    SNAKEOIL_CERT,
    basic_uki,
    initrd,
    inputs,
    kernel,
    kernel_files,
    objcopy_section,
    objdump_sections,
    signed_uki,
    snakeoil,
    stub,
)
from tests.signing.pe_helpers import SYSTEMD_BOOT, openssl_key, sbverify

ADDED = (".osrel", ".cmdline", ".uname", ".initrd", ".linux", ".sbat")


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _pe(data: bytes) -> pefile.PE:
    """pefile's full parse; it must find nothing wrong beyond what it already reports for the stub
    (Debian's 252 stub has overlapping relocation blocks, harmless and not ours to fix)."""
    pe = pefile.PE(data=data)
    assert pe.get_warnings() == pefile.PE(data=stub()).get_warnings()
    assert pefile.PE(data=data, fast_load=True).get_warnings() == []  # what ukify treats as errors
    return pe


def _round(x: int, a: int) -> int:
    return -(-x // a) * a


def test_objdump_lists_the_sections_inspect_reports(tmp_path: Path) -> None:
    path = _write(tmp_path, "uki.efi", basic_uki())
    dumped = objdump_sections(path)
    info = inspect_uki(basic_uki())
    assert [s.name for s in info.sections] == list(dumped)
    for s in info.sections:
        assert dumped[s.name] == {"size": s.virtual_size, "vma": s.virtual_address, "offset": s.file_offset}
    assert set(ADDED) <= set(dumped)


def test_section_hashes_match_objcopy_and_raw_offsets(tmp_path: Path) -> None:
    data = basic_uki()
    path = _write(tmp_path, "uki.efi", data)
    for s in inspect_uki(data).sections:
        extracted = objcopy_section(path, s.name, tmp_path / f"sec{s.name}").read_bytes()
        assert len(extracted) == s.virtual_size
        assert hashlib.sha256(extracted).hexdigest() == s.sha256, s.name
        by_offset = data[s.file_offset : s.file_offset + s.virtual_size]
        assert hashlib.sha256(by_offset).hexdigest() == s.sha256, s.name


def test_sections_hold_exactly_the_inputs(tmp_path: Path) -> None:
    path = _write(tmp_path, "uki.efi", basic_uki())

    def section(name: str) -> bytes:
        return objcopy_section(path, name, tmp_path / f"x{name}").read_bytes()

    assert section(".linux") == kernel()
    assert section(".initrd") == initrd()
    assert section(".cmdline") == CMDLINE.encode()
    assert section(".osrel") == OS_RELEASE.encode()
    assert section(".uname") == kernel_files().version.encode()
    stub_sbat = pefile.PE(data=stub())
    stub_lines = next(s for s in stub_sbat.sections if s.Name.rstrip(b"\0") == b".sbat").get_data()
    stub_lines = stub_lines[: next(s for s in stub_sbat.sections if s.Name.rstrip(b"\0") == b".sbat")
                            .Misc_VirtualSize].rstrip(b"\0").decode().splitlines()  # fmt: skip
    sbat = section(".sbat")
    assert sbat.endswith(b"\n\0")
    lines = sbat[:-2].decode().split("\n")
    assert lines == [SBAT_HEADER, *stub_lines[1:], DEFAULT_SBAT]
    assert lines.count(SBAT_HEADER) == 1 and stub_lines[0] == SBAT_HEADER
    info = inspect_uki(basic_uki())
    assert info.cmdline == CMDLINE and info.uname == kernel_files().version
    assert info.os_release_fields == {"ID": "shieldwright-test", "PRETTY_NAME": "Shieldwright Test 1"}
    assert info.stub is not None and info.stub.kind == "systemd-stub" and info.stub.major == 252
    assert info.sbat is not None and info.sbat.endswith(DEFAULT_SBAT + "\n")


def test_placement_follows_ukify_rules() -> None:
    data = basic_uki()
    pe = _pe(data)
    oh = pe.OPTIONAL_HEADER
    fa, sa = oh.FileAlignment, oh.SectionAlignment
    stub_pe = pefile.PE(data=stub())
    stub_names = [s.Name.rstrip(b"\0").decode() for s in stub_pe.sections]
    names = [s.Name.rstrip(b"\0").decode() for s in pe.sections]
    # The stub's sections keep their virtual addresses; ours follow, in ukify's order.
    for s in stub_pe.sections:
        name = s.Name.rstrip(b"\0").decode()
        if name != ".sbat":
            out = next(o for o in pe.sections if o.Name == s.Name)
            assert (out.VirtualAddress, out.Misc_VirtualSize) == (s.VirtualAddress, s.Misc_VirtualSize)
    ours = [n for n in names if n not in stub_names or n == ".sbat"]
    assert ours == [".osrel", ".cmdline", ".uname", ".initrd", ".linux", ".sbat"]
    previous_end = 0
    for s in sorted(pe.sections, key=lambda s: s.VirtualAddress):
        name = s.Name.rstrip(b"\0").decode()
        assert s.VirtualAddress >= previous_end, f"{name} overlaps the section before it in memory"
        previous_end = s.VirtualAddress + s.Misc_VirtualSize
        assert s.PointerToRawData % fa == 0 and s.SizeOfRawData % fa == 0
        if name in ADDED:
            assert s.VirtualAddress % sa == 0
            assert s.Misc_VirtualSize <= s.SizeOfRawData
    sizes = {s.Name.rstrip(b"\0").decode(): s.Misc_VirtualSize for s in pe.sections}
    assert sizes[".linux"] == len(kernel()) and sizes[".initrd"] == len(initrd())
    assert sizes[".cmdline"] == len(CMDLINE)
    last = max(pe.sections, key=lambda s: s.VirtualAddress)
    assert oh.SizeOfImage == _round(last.VirtualAddress + last.Misc_VirtualSize, sa)
    assert oh.CheckSum == pe.generate_checksum()
    assert pe.FILE_HEADER.PointerToSymbolTable == 0 and pe.FILE_HEADER.NumberOfSymbols == 0
    linux = next(s for s in pe.sections if s.Name.rstrip(b"\0") == b".linux")
    assert linux.Characteristics & 0x20 and linux.Characteristics & 0x40000000


def test_signed_uki_verifies_with_sbverify_and_keeps_a_valid_checksum(tmp_path: Path) -> None:
    data = signed_uki()
    path = _write(tmp_path, "signed.efi", data)
    ok = sbverify(path, SNAKEOIL_CERT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    other = openssl_key(tmp_path, "other")
    assert sbverify(path, other.cert_path).returncode != 0
    assert sbverify(_write(tmp_path, "unsigned.efi", basic_uki()), SNAKEOIL_CERT).returncode != 0
    pe = _pe(data)
    assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum()
    info = inspect_uki(data)
    assert len(info.signatures) == 1 and info.signatures[0]["digest_matches"] is True
    assert info.signatures[0]["subject"] == snakeoil().certificate.subject.rfc4514_string()
    # Signing appends the certificate table and changes nothing the stub measures.
    assert [s.sha256 for s in info.sections] == [s.sha256 for s in inspect_uki(basic_uki()).sections]


def test_several_initrds_are_padded_to_four_bytes_and_none_is_allowed() -> None:
    first, second = b"A" * 5, b"B" * 7
    info = inspect_uki(build_uki(inputs(initrds=[first, second])))
    assert info.section_data(".initrd") == first + b"\0\0\0" + second + b"\0"
    without = inspect_uki(build_uki(inputs(initrds=[])))
    assert without.section(".initrd") is None
    with pytest.raises(UkiError, match="initrd 2 is empty"):
        build_uki(inputs(initrds=[first, b""]))


def test_all_optional_sections_grow_the_headers_and_stay_valid(tmp_path: Path) -> None:
    bmp = b"BM" + bytes(100)
    dtb = b"\xd0\x0d\xfe\xed" + bytes(60)
    pcrpkey = b"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"
    data = build_uki(inputs(splash=bmp, dtb=dtb, pcrpkey=pcrpkey, uname="6.1.0-test"), signer=snakeoil())
    pe = _pe(data)
    first_raw = min(s.PointerToRawData for s in pe.sections)
    table_end = pe.sections[-1].get_file_offset() + 40
    assert table_end <= pe.OPTIONAL_HEADER.SizeOfHeaders <= first_raw
    assert pe.OPTIONAL_HEADER.SizeOfHeaders % pe.OPTIONAL_HEADER.FileAlignment == 0
    path = _write(tmp_path, "full.efi", data)
    dumped = objdump_sections(path)
    for name, content in ((".splash", bmp), (".dtb", dtb), (".pcrpkey", pcrpkey), (".uname", b"6.1.0-test")):
        assert dumped[name]["size"] == len(content)
        assert objcopy_section(path, name, tmp_path / f"o{name}").read_bytes() == content
    assert sbverify(path, SNAKEOIL_CERT).returncode == 0
    assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum()


def test_not_a_pe_stub_is_refused() -> None:
    with pytest.raises(UkiError, match="stub is not a valid PE image"):
        build_uki(inputs(stub=b"this is not an EFI program" * 10))


def test_signed_stub_is_refused() -> None:
    signed = sign_pe(stub(), snakeoil())
    with pytest.raises(UkiError, match="stub is signed") as exc:
        build_uki(inputs(stub=signed))
    assert "unsigned stub" in exc.value.hint


def test_a_stub_that_is_not_systemd_stub_is_refused() -> None:
    with pytest.raises(UkiError, match="not a systemd-stub"):
        build_uki(inputs(stub=SYSTEMD_BOOT.read_bytes()))
    with pytest.raises(UkiError, match="already holds a kernel"):
        build_uki(inputs(stub=basic_uki()))


def test_kernel_that_is_not_a_bzimage_is_refused() -> None:
    with pytest.raises(KernelFormatError, match="ELF"):
        build_uki(inputs(linux=Path("/bin/busybox").read_bytes()))
    with pytest.raises(KernelFormatError):
        build_uki(inputs(linux=b"\0" * 4096))


@pytest.mark.parametrize("field", ["cmdline", "os_release", "uname"])
def test_nul_in_text_sections_is_refused(field: str) -> None:
    with pytest.raises(UkiError, match="NUL"):
        build_uki(inputs(**{field: "console=ttyS0\0evil"}))


def test_splash_and_dtb_are_checked() -> None:
    with pytest.raises(UkiError, match="BMP"):
        build_uki(inputs(splash=b"\x89PNG\r\n"))
    with pytest.raises(UkiError, match="devicetree"):
        build_uki(inputs(dtb=b"not a dtb"))


def _stub_with_section(name: str, data: bytes) -> bytes:
    """The host stub plus one section (pefile cannot add sections, so our appender makes the fixture)."""
    return append_sections(read_pe(stub()), [NewSection(name, data)])


def test_a_section_the_stub_already_has_is_refused_unless_replaced() -> None:
    stub_with_cmdline = _stub_with_section(".cmdline", b"quiet")
    with pytest.raises(UkiError, match="already has a .cmdline section"):
        build_uki(inputs(stub=stub_with_cmdline))
    built = build_uki(inputs(stub=stub_with_cmdline, replace=frozenset({".cmdline"})))
    info = inspect_uki(built)
    assert [s.name for s in info.sections].count(".cmdline") == 1
    assert info.cmdline == CMDLINE
    pe = _pe(built)
    assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum()


def test_custom_sbat_replaces_the_default_entry_and_is_validated() -> None:
    extra = "sbat,1,SBAT Version,sbat,1,https://example\nmyos,2,My OS,myos,1.0,https://example.org\n"
    info = inspect_uki(build_uki(inputs(sbat=extra)))
    assert info.sbat is not None
    lines = info.sbat.splitlines()
    assert lines[0] == SBAT_HEADER and lines[-1] == "myos,2,My OS,myos,1.0,https://example.org"
    assert DEFAULT_SBAT not in lines and lines.count(SBAT_HEADER) == 1
    with pytest.raises(UkiError, match="bad SBAT entry"):
        build_uki(inputs(sbat="just,two"))


def test_uki_inputs_defaults_and_positional_order() -> None:
    positional = UkiInputs(kernel(), [initrd()], CMDLINE, OS_RELEASE, None, None, None, None, None, None)
    assert build_uki(positional) == basic_uki()  # deterministic: same inputs, same bytes


def test_inspect_refuses_a_pe_that_is_not_a_uki() -> None:
    with pytest.raises(UkiError, match="no .linux section"):
        inspect_uki(stub())


def test_stub_symbol_table_is_dropped() -> None:
    (symtab, nsyms) = struct.unpack_from("<II", stub(), struct.unpack_from("<I", stub(), 0x3C)[0] + 4 + 8)
    assert symtab and nsyms  # the Debian 252 stub ships one; ukify strips it
    assert len(basic_uki()) % 512 == 0
