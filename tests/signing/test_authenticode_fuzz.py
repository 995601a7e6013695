"""Mutated PE headers may only ever fail with a ShieldwrightError — never IndexError, struct.error, ...

Each example overwrites a few bytes (or 32-bit fields) of systemd-stub's DOS header e_lfanew, COFF header,
optional header, data directories or section table — of the unsigned stub and of a signed copy, so the
certificate table and the PKCS#7 inside it get damaged too.
"""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pefile
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import ShieldwrightError
from app.signing.authenticode import authenticode_digest, list_signatures, sign_pe, verify_pe
from tests.signing.pe_helpers import STUB, openssl_key

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    key = openssl_key(tmp_path_factory.mktemp("fuzzkey"), "fuzz")
    unsigned = STUB.read_bytes()
    signed = sign_pe(unsigned, key.signer)
    pe = pefile.PE(data=unsigned, fast_load=True)
    coff = pe.FILE_HEADER.get_file_offset()
    oh = pe.OPTIONAL_HEADER.get_file_offset()
    sections = pe.sections[0].get_file_offset()
    regions = {
        "e_lfanew": (0x3C, 4),
        "coff": (coff, 20),
        "optional": (oh, 112),
        "directories": (oh + 112, 8 * pe.OPTIONAL_HEADER.NumberOfRvaAndSizes),
        "sections": (sections, 40 * pe.FILE_HEADER.NumberOfSections),
    }
    ct_off = struct.unpack_from("<I", signed, oh + 112 + 8 * 4)[0]
    return {"unsigned": unsigned, "signed": signed, "regions": regions, "ct": (ct_off, len(signed) - ct_off),
            "cert": key.cert}  # fmt: skip


_edit = st.tuples(
    st.sampled_from(["e_lfanew", "coff", "optional", "directories", "sections", "cert-table"]),
    st.integers(0, 10_000),  # position within the region (modulo its size)
    st.one_of(
        st.integers(0, 255).map(lambda b: bytes([b])),
        st.sampled_from(
            [b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x00\x10\x00\x00", b"\xff\xff\xff\x7f", b"\x01\x00\x00\x00"]
        ),
    ),
)


@FUZZ
@given(which=st.sampled_from(["unsigned", "signed"]), edits=st.lists(_edit, min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 200_000)))  # fmt: skip
def test_mutated_headers_raise_only_our_errors(seeds: dict, which: str, edits: list, cut: int | None) -> None:
    data = bytearray(seeds[which])  # type: ignore[arg-type]
    for region, pos, value in edits:
        start, size = seeds["ct"] if region == "cert-table" else seeds["regions"][region]
        if region == "cert-table" and which == "unsigned":
            continue
        at = start + pos % size
        data[at : at + len(value)] = value
    if cut is not None:
        del data[cut:]
    blob = bytes(data)
    for call in (authenticode_digest, list_signatures, lambda d: verify_pe(d, [seeds["cert"]])):
        with contextlib.suppress(ShieldwrightError):
            call(blob)


def test_fuzz_target_is_pristine_when_unmutated(seeds: dict) -> None:
    """Guard: the seeds themselves parse and verify, so the fuzz exercises real parsing paths."""
    assert list_signatures(seeds["unsigned"]) == []  # type: ignore[arg-type]
    (result,) = verify_pe(seeds["signed"], [seeds["cert"]])  # type: ignore[arg-type]
    assert result.valid
    assert Path(STUB).exists()
