"""OVMF variable stores: read, edit, write — graded by virt-fw-vars (virt-firmware, run as a program, never
imported: it is GPL-2.0-only) on Debian's three 4 MiB stores, and by hostile edits that may only ever raise
MeasureError.

Debian's ``OVMF_VARS_4M.ms.fd`` and ``.snakeoil.fd`` were made by booting OVMF (EnrollDefaultKeys), so they
hold superseded copies of ConIn, ConOut, … (State 0x3c): reading them proves deleted records are skipped.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.measure.events import EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE, MeasureError
from app.measure.secureboot import POLICY_VARIABLES
from app.measure.siglist import MICROSOFT_OWNER_GUID, x509_signature_list
from app.measure.varstore import (
    SECURE_BOOT_ENABLE_GUID,
    VAR_HEADER,
    Variable,
    attribute_names,
    read_varstore,
    secure_boot_state,
)
from app.signing.keys import generate_key, generate_self_signed
from tests.conftest import run

OVMF = Path("/usr/share/OVMF")
STORES = {
    "empty": OVMF / "OVMF_VARS_4M.fd",
    "microsoft": OVMF / "OVMF_VARS_4M.ms.fd",
    "snakeoil": OVMF / "OVMF_VARS_4M.snakeoil.fd",
}
OWNER = uuid.UUID("5f0b4a4e-3c59-4d6a-9e0e-2a8f1b6c7d11")
#: Where the variable area ends in Debian's 4 MiB stores (OvmfPkg VarStore.fdf.inc: 0x40000 live bytes);
#: the event log, FTW working block and spare area follow.
STORE_END = 0x40000


def virt_tool(name: str) -> str:
    """virt-firmware's commands: installed into the venv by ``pip install -e .[test]``."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        raise AssertionError(f"{name} is not installed; pip install -e '.[test]' (virt-firmware)")
    return found


def virt_json(path: Path, tmp_path: Path) -> dict[tuple[str, uuid.UUID], dict[str, object]]:
    """{(name, guid): {"attr", "data" (hex), "time" (hex, authenticated only)}} as virt-fw-vars reads it."""
    out = tmp_path / f"{path.name}.json"
    run(virt_tool("virt-fw-vars"), "--input", path, "--output-json", out)
    return {(v["name"], uuid.UUID(v["guid"])): v for v in json.loads(out.read_text())["variables"]}


def ours_as_json(path: Path | bytes) -> dict[tuple[str, uuid.UUID], dict[str, object]]:
    """Our reading, in virt-fw-vars' JSON shape (it writes "time" only when the timestamp is not zero)."""
    out: dict[tuple[str, uuid.UUID], dict[str, object]] = {}
    for v in read_varstore(path).variables.values():
        d: dict[str, object] = {
            "name": v.name,
            "guid": str(v.vendor),
            "attr": v.attributes,
            "data": v.data.hex(),
        }
        if v.timestamp != bytes(16):
            d["time"] = v.timestamp.hex()
        out[v.key] = d
    return out


def _no_time(variables: dict[tuple[str, uuid.UUID], dict[str, object]]) -> dict[object, object]:
    return {k: {f: x for f, x in v.items() if f != "time"} for k, v in variables.items()}


def fresh_cert_der(cn: str = "Shieldwright varstore test") -> bytes:
    return generate_self_signed(generate_key("p256"), common_name=cn).public_bytes(Encoding.DER)


@pytest.mark.parametrize("which", sorted(STORES))
def test_we_read_what_virt_fw_vars_reads(which: str, tmp_path: Path) -> None:
    """Every variable — name, GUID, attributes, data, timestamp — for each of Debian's stores."""
    theirs = virt_json(STORES[which], tmp_path)
    assert ours_as_json(STORES[which]) == theirs
    assert (len(theirs) == 0) == (which == "empty")


def test_superseded_copies_are_skipped() -> None:
    """The ms store holds ConIn five times; only the last (VAR_ADDED) copy is current."""
    image = STORES["microsoft"].read_bytes()
    records = image.count(b"C\0o\0n\0I\0n\0\0\0")
    assert records > 1
    store = read_varstore(image)
    assert sum(1 for v in store.variables.values() if v.name == "ConIn") == 1
    assert ("BootOrder", EFI_GLOBAL_VARIABLE) not in store.variables  # deleted, never re-added


def test_secure_boot_state_of_debian_stores(tmp_path: Path) -> None:
    for which, on in (("empty", False), ("microsoft", True), ("snakeoil", True)):
        state = secure_boot_state(read_varstore(STORES[which]))
        theirs = virt_json(STORES[which], tmp_path)
        assert state.secure_boot is on, which
        for name, vendor in POLICY_VARIABLES.items():
            expected = bytes.fromhex(str(theirs[(name, vendor)]["data"])) if (name, vendor) in theirs else b""
            assert state.value(name) == expected, (which, name)
    ms = secure_boot_state(read_varstore(STORES["microsoft"]))
    subjects = [e.certificate.subject.rfc4514_string() for e in ms.db_entries() if e.certificate]
    assert any("Microsoft Corporation UEFI CA 2011" in s for s in subjects)
    assert all(e.owner == MICROSOFT_OWNER_GUID for e in ms.db_entries())
    assert [e.kind for e in ms.dbx_entries()] == ["sha256"]
    assert [n for n, _g, _d in ms.measured_variables()] == ["SecureBoot", "PK", "KEK", "db", "dbx"]


def test_secure_boot_derivation() -> None:
    """OVMF's rule: PK present (user mode) and SecureBootEnable absent or 1."""
    store = read_varstore(STORES["microsoft"])
    assert secure_boot_state(store).secure_boot
    enable = store.get("SecureBootEnable", SECURE_BOOT_ENABLE_GUID)
    assert enable is not None and enable.data == b"\x01"
    store.set(Variable("SecureBootEnable", SECURE_BOOT_ENABLE_GUID, enable.attributes, b"\x00"))
    assert not secure_boot_state(store).secure_boot
    store.delete("SecureBootEnable", SECURE_BOOT_ENABLE_GUID)
    assert secure_boot_state(store).secure_boot
    assert store.delete("PK", EFI_GLOBAL_VARIABLE) and not store.delete("PK", EFI_GLOBAL_VARIABLE)
    state = secure_boot_state(store)
    assert not state.secure_boot and state.pk == b"" and state.db


@pytest.mark.parametrize("which", sorted(STORES))
def test_unchanged_store_writes_back_equal(which: str, tmp_path: Path) -> None:
    """Same size, same FV header, same bytes after the variable area; virt-fw-vars reads the same variables.
    The empty store comes back byte for byte (no superseded copies to compact away)."""
    original = STORES[which].read_bytes()
    written = read_varstore(STORES[which]).to_bytes()
    assert len(written) == len(original)
    assert written[:0x48] == original[:0x48]  # FV header, checksum included
    assert written[STORE_END:] == original[STORE_END:]  # event log, FTW working block, spare: untouched
    assert (written == original) == (which == "empty")
    out = tmp_path / "written.fd"
    out.write_bytes(written)
    assert virt_json(out, tmp_path) == virt_json(STORES[which], tmp_path)


def test_appended_db_matches_virt_fw_vars_add_db(tmp_path: Path) -> None:
    """Our db append and `virt-fw-vars --add-db GUID CERT` give the same variables (timestamps aside:
    virt-fw-vars stamps db with the current time, we keep the stored one)."""
    der = fresh_cert_der()
    cert = tmp_path / "db.der"
    cert.write_bytes(der)
    store = read_varstore(STORES["microsoft"])
    store.append("db", EFI_IMAGE_SECURITY_DATABASE, x509_signature_list(der, OWNER))
    ours = tmp_path / "ours.fd"
    ours.write_bytes(store.to_bytes())
    theirs = tmp_path / "theirs.fd"
    run(
        virt_tool("virt-fw-vars"),
        "--input",
        STORES["microsoft"],
        "--add-db",
        str(OWNER),
        cert,
        "--output",
        theirs,
    )
    assert _no_time(virt_json(ours, tmp_path)) == _no_time(virt_json(theirs, tmp_path))
    assert _no_time(ours_as_json(ours)) == _no_time(ours_as_json(theirs))
    entries = secure_boot_state(read_varstore(ours)).db_entries()
    assert entries[-1].owner == OWNER and entries[-1].data == der and len(entries) == 3


def test_new_variables_and_capacity() -> None:
    store = read_varstore(STORES["empty"])
    store.append("db", EFI_IMAGE_SECURITY_DATABASE, x509_signature_list(fresh_cert_der(), OWNER))
    store.set(Variable("Shieldwright\u00e9", OWNER, 0x7, b"\x01\x02\x03"))
    back = read_varstore(store.to_bytes())
    assert back.variables == store.variables
    db = back.get("db", EFI_IMAGE_SECURITY_DATABASE)
    assert db is not None and db.attributes == 0x27 and attribute_names(db.attributes) == "NV|BS|RT|AT"
    assert not secure_boot_state(back).secure_boot  # no PK: setup mode
    store.set(Variable("Huge", OWNER, 0x7, bytes(store.capacity)))
    with pytest.raises(MeasureError, match="the variable store holds"):
        store.to_bytes()
    with pytest.raises(MeasureError):
        store.set(Variable("", OWNER, 0x7, b""))


def _records(image: bytes) -> list[tuple[int, int, str]]:
    """(offset, state, name) of every record, by walking the store by hand (VariableFormat.h)."""
    out, pos = [], 0x64
    while image[pos : pos + 2] == b"\xaa\x55":
        *_, name_size, data_size, _guid = VAR_HEADER.unpack_from(image, pos)
        name = image[pos + VAR_HEADER.size : pos + VAR_HEADER.size + name_size - 2].decode("utf-16-le")
        out.append((pos, image[pos + 2], name))
        pos = (pos + VAR_HEADER.size + name_size + data_size + 3) & ~3
    return out


def test_in_transition_copy_is_current_only_without_an_added_one() -> None:
    """edk2 FindVariableEx: a copy in VAR_IN_DELETED_TRANSITION (0x3e) counts when no VAR_ADDED copy exists
    (an update interrupted before the new copy was complete); virt-fw-vars would drop it."""
    image = bytearray(STORES["microsoft"].read_bytes())
    records = _records(bytes(image))
    (lang,) = [pos for pos, state, name in records if name == "Lang" and state == 0x3F]
    image[lang + 2] = 0x3E
    assert read_varstore(bytes(image)).get("Lang", EFI_GLOBAL_VARIABLE) is not None
    image[lang + 2] = 0x3C  # deleted
    assert read_varstore(bytes(image)).get("Lang", EFI_GLOBAL_VARIABLE) is None
    image[lang + 2] = 0x7F  # header only: its data never written
    assert read_varstore(bytes(image)).get("Lang", EFI_GLOBAL_VARIABLE) is None
    (last_conin,) = [pos for pos, state, name in records if name == "ConIn" and state == 0x3F]
    old_conin = max(pos for pos, state, name in records if name == "ConIn" and state == 0x3C)
    image[old_conin + 2] = 0x3E  # an older copy in transition loses to the VAR_ADDED one
    conin = read_varstore(bytes(image)).get("ConIn", EFI_GLOBAL_VARIABLE)
    assert conin is not None and len(conin.data) == VAR_HEADER.unpack_from(image, last_conin)[8]
    image[old_conin + 2] = 0x3F  # two current copies: corrupt
    with pytest.raises(MeasureError, match="second current copy"):
        read_varstore(bytes(image))


@pytest.mark.parametrize(
    ("offset", "value", "fragment"),
    [
        (40, b"_FVX", "no firmware volume signature"),
        (16, bytes(16), "not a variable store"),
        (32, struct.pack("<Q", 1 << 40), "FvLength"),
        (48, struct.pack("<H", 0x47), "HeaderLength"),
        (50, b"\x00\x00", "checksum"),
        (0x48, bytes(16), "not an authenticated one"),
        (0x58, struct.pack("<I", 1 << 31), "Size"),
        (0x5D, b"\x00", "not formatted and healthy"),
        (0x64 + 36, struct.pack("<I", 0xFFFFFFFF), "run past the store end"),
        (0xB8 + 36, struct.pack("<I", 3), "NUL-terminated"),  # certdb, the first current record
        (0xB8 + 60, b"\x00\xd8", "not valid UTF-16"),
        (0x8000, b"junk", "unexpected bytes after the last variable record"),
    ],
)
def test_malformed_stores_are_one_line_errors(offset: int, value: bytes, fragment: str) -> None:
    image = bytearray(STORES["microsoft"].read_bytes())
    image[offset : offset + len(value)] = value
    with pytest.raises(MeasureError) as info:
        read_varstore(bytes(image))
    assert fragment in info.value.message and "\n" not in info.value.one_line()


def test_the_code_file_and_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(MeasureError, match="is not a variable store"):
        read_varstore(OVMF / "OVMF_CODE_4M.secboot.fd")
    with pytest.raises(MeasureError, match="cannot read"):
        read_varstore(tmp_path / "missing.fd")
    with pytest.raises(MeasureError, match="too short"):
        read_varstore(b"")


# --- hostile edits ------------------------------------------------------------------------------------------

#: A small store (the empty 4 MiB one with a db certificate and a few variables), its sizes and offsets.
EXTREMES = (
    0,
    1,
    2,
    3,
    0x3C,
    0x3E,
    0x3F,
    0x7F,
    0xFF,
    0x55AA,
    0xFFFF,
    0x10000,
    0x40000,
    0x7FFFFFFF,
    0xFFFFFFFF,
)


class Seed(tuple[bytes, list[tuple[int, int]]]):
    """(image, fields) with a short repr: hypothesis prints fixtures with a failure."""

    def __repr__(self) -> str:
        return f"Seed({len(self[0])} bytes, {len(self[1])} fields)"


@pytest.fixture(scope="module")
def hostile_seed() -> Seed:
    store = read_varstore(STORES["empty"])
    store.append("db", EFI_IMAGE_SECURITY_DATABASE, x509_signature_list(fresh_cert_der(), OWNER))
    store.set(Variable("A", OWNER, 0x7, b"x"))
    store.set(Variable("Boot0000", EFI_GLOBAL_VARIABLE, 0x7, bytes(range(40))))
    image = store.to_bytes()
    fields = [(32, 8), (48, 2), (50, 2), (56, 4), (60, 4), (0x58, 4), (0x5C, 1), (0x5D, 1)]
    for pos, _state, _name in _records(image):
        fields += [(pos, 2), (pos + 2, 1), (pos + 4, 4), (pos + 36, 4), (pos + 40, 4)]
    return Seed((image, fields))


def _reseal(image: bytearray) -> None:
    """Recompute the FV header checksum so edits reach the store behind it."""
    if len(image) < 52:
        return
    (header_length,) = struct.unpack_from("<H", image, 48)
    if 0x48 <= header_length <= len(image) and header_length % 2 == 0:
        image[50:52] = b"\0\0"
        total = sum(struct.unpack_from(f"<{header_length // 2}H", image)) & 0xFFFF
        image[50:52] = struct.pack("<H", -total & 0xFFFF)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@example(data=None)
def test_hostile_stores_only_raise_measure_error(hostile_seed: Seed, data) -> None:
    """Size fields set to extremes, bit flips, truncation: a result or a one-line MeasureError, nothing else;
    and whatever reads also writes back and re-reads."""
    seed, fields = hostile_seed
    image = bytearray(seed)
    if data is None:  # the brief's case: a record claiming a huge NameSize and DataSize
        pos = 0x64
        image[pos + 36 : pos + 44] = struct.pack("<II", 0xFFFFFFF0, 0xFFFFFFF0)
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            action = data.draw(st.sampled_from(["field", "field", "flip", "cut"]))
            if action == "field":
                pos, width = data.draw(st.sampled_from(fields))
                value = data.draw(st.sampled_from(EXTREMES) | st.integers(0, 2 ** (8 * width) - 1))
                image[pos : pos + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
            elif action == "flip" and image:
                pos = data.draw(st.integers(0, min(0x1000, len(image) - 1)))
                image[pos] ^= 1 << data.draw(st.integers(0, 7))
            else:
                del image[data.draw(st.integers(0, len(image))) :]
        if data.draw(st.booleans()):
            _reseal(image)
    try:
        store = read_varstore(bytes(image))
    except MeasureError as exc:
        assert "\n" not in exc.one_line()
        return
    assert read_varstore(store.to_bytes()).variables == store.variables
    try:
        state = secure_boot_state(store)
        for entries in (state.pk_entries, state.kek_entries, state.db_entries, state.dbx_entries):
            entries()
    except MeasureError:
        pass
