"""PCR 11 prediction against systemd-measure 252 (the host's, matching the host's stub), plus the rules.

systemd-measure gets the sections as objcopy extracts them from the UKI, so neither our section reader
nor our hashing is involved on its side. It only accepts the sections stub 252 measures, which is the
point: ``.uname`` and ``.sbat`` are in our UKIs and must not count.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app.boot.errors import PcrPredictionError
from app.boot.pcr import (
    DEFAULT_PHASES,
    extend,
    extend_digest,
    normalize_phase,
    pcr11_from_sections,
    predict_pcr11,
    zero,
)
from app.boot.stub import measured_sections
from app.boot.uki import build_uki, inspect_uki
from tests.boot.uki_helpers import basic_uki, inputs, objcopy_section, signed_uki, systemd_measure

STUB_252_MEASURES = (".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey")


def _measure_file(uki: bytes, tmp_path: Path, banks: tuple[str, ...]) -> dict[str, dict[str, str]]:
    path = tmp_path / "uki.efi"
    path.write_bytes(uki)
    names = {s.name for s in inspect_uki(uki).sections} & set(STUB_252_MEASURES)
    sections = {n: objcopy_section(path, n, tmp_path / f"s{n}") for n in sorted(names)}
    return systemd_measure(sections, banks, DEFAULT_PHASES)


@pytest.mark.parametrize("which", ["basic", "signed", "two-initrds", "all-sections"])
def test_prediction_equals_systemd_measure_for_all_phases(which: str, tmp_path: Path) -> None:
    uki = {
        "basic": basic_uki,
        "signed": signed_uki,
        "two-initrds": lambda: build_uki(inputs(initrds=[b"first-initrd", b"second"])),
        "all-sections": lambda: build_uki(
            inputs(splash=b"BM" + bytes(64), dtb=b"\xd0\x0d\xfe\xed" + bytes(28), pcrpkey=b"-----BEGIN KEY")
        ),
    }[which]()  # fmt: skip
    banks = ("sha256", "sha1")
    expected = _measure_file(uki, tmp_path, banks)
    predicted = predict_pcr11(uki, banks=banks)
    assert predicted == expected
    assert set(predicted["sha256"]) == set(DEFAULT_PHASES)
    assert len(predicted["sha1"][""]) == 40 and len(predicted["sha256"][""]) == 64


def test_sha384_and_sha512_banks_match_systemd_measure(tmp_path: Path) -> None:
    banks = ("sha384", "sha512")
    assert predict_pcr11(basic_uki(), banks=banks, phases=("", "enter-initrd")) == {
        b: {p: v for p, v in values.items() if p in ("", "enter-initrd")}
        for b, values in _measure_file(basic_uki(), tmp_path, banks).items()
    }


def test_uname_and_sbat_do_not_count_for_stub_252() -> None:
    info = inspect_uki(basic_uki())
    assert info.section(".uname") is not None and info.section(".sbat") is not None
    assert info.section(".uname").measured is False and info.section(".sbat").measured is False
    assert info.section(".linux").measured is True
    other_uname = build_uki(inputs(uname="9.9.9-other"))
    assert predict_pcr11(other_uname) == predict_pcr11(basic_uki())
    other_cmdline = build_uki(inputs(cmdline="console=ttyS0"))
    assert predict_pcr11(other_cmdline)[("sha256")][""] != predict_pcr11(basic_uki())["sha256"][""]


def test_newer_stub_versions_measure_uname_and_sbat() -> None:
    info = inspect_uki(basic_uki())
    as_252 = predict_pcr11(info)
    as_255 = predict_pcr11(info, stub_version="255.4-1")
    assert as_252 != as_255
    sections = {name: info.section_data(name) or b"" for name in (".linux", ".osrel", ".cmdline", ".initrd",
                                                                   ".uname", ".sbat")}  # fmt: skip
    assert as_255 == pcr11_from_sections(sections, measured_sections(255))
    assert measured_sections(255)[6:9] == (".uname", ".sbat", ".pcrpkey")
    assert measured_sections("252.39-1~deb12u2") == STUB_252_MEASURES
    assert measured_sections(256)[4] == ".ucode"


# --- the rules, by hand ---------------------------------------------------------------------------------


def _h(data: bytes, bank: str = "sha256") -> bytes:
    return hashlib.new(bank, data).digest()


def test_extend_is_hash_of_old_value_and_measured_digest() -> None:
    start = zero("sha256")
    assert start == "00" * 32 and zero("sha1") == "00" * 20
    expected = hashlib.sha256(bytes(32) + _h(b"hello")).hexdigest()
    assert extend("sha256", start, b"hello") == expected
    assert extend_digest("sha256", start, _h(b"hello")) == expected
    with pytest.raises(ValueError):
        extend_digest("sha256", start, b"short")
    with pytest.raises(PcrPredictionError, match="unknown PCR bank"):
        zero("md5")


def test_sections_are_measured_in_stub_order_name_then_contents_skipping_empty() -> None:
    order = (".linux", ".osrel", ".cmdline", ".initrd")
    sections = {".cmdline": b"quiet", ".initrd": b"", ".linux": b"KERNEL", ".uname": b"6.1"}
    value = bytes(32)
    for name, contents in ((".linux", b"KERNEL"), (".cmdline", b"quiet")):  # .osrel absent, .initrd empty
        value = hashlib.sha256(value + _h(name.encode() + b"\0")).digest()
        value = hashlib.sha256(value + _h(contents)).digest()
    result = pcr11_from_sections(sections, order, phases=("", "enter-initrd", "enter-initrd:leave-initrd"))
    assert result["sha256"][""] == value.hex()
    after_enter = hashlib.sha256(value + _h(b"enter-initrd")).digest()
    assert result["sha256"]["enter-initrd"] == after_enter.hex()
    assert (
        result["sha256"]["enter-initrd:leave-initrd"]
        == hashlib.sha256(after_enter + _h(b"leave-initrd")).hexdigest()
    )
    # Dictionary order is irrelevant; the stub's order is what counts.
    reordered = dict(reversed(list(sections.items())))
    assert pcr11_from_sections(reordered, order) == pcr11_from_sections(sections, order)
    # A different order gives a different value: order matters.
    assert pcr11_from_sections(sections, (".cmdline", ".linux"))["sha256"][""] != value.hex()


def test_phase_paths_are_normalized_like_systemd_measure() -> None:
    assert normalize_phase(":") == "" and normalize_phase("") == ""
    assert normalize_phase(":enter-initrd::leave-initrd:") == "enter-initrd:leave-initrd"
    with pytest.raises(PcrPredictionError, match="bad boot phase"):
        normalize_phase("enter initrd")
    result = pcr11_from_sections({".linux": b"k"}, (".linux",), phases=(":", "enter-initrd"))
    assert list(result["sha256"]) == ["", "enter-initrd"]


def test_unknown_or_ancient_stubs_cannot_be_predicted() -> None:
    with pytest.raises(PcrPredictionError, match="systemd 252"):
        measured_sections(251)
    with pytest.raises(PcrPredictionError, match="version"):
        measured_sections("unknown")
    with pytest.raises(PcrPredictionError, match="systemd 252"):
        predict_pcr11(basic_uki(), stub_version="250")


def test_uki_without_stub_marker_needs_an_explicit_version() -> None:
    data = bytearray(basic_uki())
    at = data.find(b"#### LoaderInfo: systemd-stub")
    data[at : at + 8] = b"XXXXXXXX"
    with pytest.raises(PcrPredictionError, match="no systemd-stub version marker"):
        predict_pcr11(bytes(data))
    assert predict_pcr11(bytes(data), stub_version="252") == predict_pcr11(basic_uki())
