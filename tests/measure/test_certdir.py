"""The "certificates given as files" profile: a directory of PK, KEK, db, dbx files read into the same
variable values virt-fw-vars enrolls from the same certificates (the independent oracle), and every layout
mistake refused with a one-line error."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.measure.certdir import load_cert_dir
from app.measure.events import EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE, MeasureError
from app.measure.siglist import SHIELDWRIGHT_OWNER_GUID, x509_signature_list
from app.measure.varstore import read_varstore, secure_boot_state
from app.signing.keys import generate_key, generate_self_signed
from tests.conftest import run
from tests.measure.test_varstore import STORES, virt_json, virt_tool

OWNER = uuid.UUID("0f6a2b64-7d3c-4e8e-9a51-3c2d1e0f9b87")


def _cert(cn: str) -> x509.Certificate:
    return generate_self_signed(generate_key("p256"), common_name=cn)


@pytest.fixture(scope="module")
def certs() -> dict[str, x509.Certificate]:
    return {name: _cert(f"certdir test {name}") for name in ("pk", "kek1", "kek2", "db1", "db2")}


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def test_directory_equals_what_virt_fw_vars_enrolls(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, certs: dict[str, x509.Certificate]
) -> None:
    """PK.pem, KEK/ (a PEM and a DER file), db.pem (a bundle of two), dbx.auth (virt-fw-vars' own signed-
    update file of the snakeoil dbx), owner.txt: the values equal virt-fw-vars --set-pk/--add-kek/--add-db
    with the same owner on the empty store, and the snakeoil store's dbx."""
    d = tmp_path / "keys"
    (d / "KEK").mkdir(parents=True)
    (d / "owner.txt").write_text(f"{OWNER}\n")
    (d / "PK.pem").write_bytes(_pem(certs["pk"]))
    (d / "KEK" / "1.pem").write_bytes(_pem(certs["kek1"]))
    (d / "KEK" / "2.der").write_bytes(_der(certs["kek2"]))
    (d / "db.pem").write_bytes(_pem(certs["db1"]) + _pem(certs["db2"]))
    auth = tmp_path_factory.mktemp("auth")
    run(virt_tool("virt-fw-vars"), "--input", STORES["snakeoil"], "--output-auth", auth)
    (d / "dbx.auth").write_bytes((auth / "dbx.auth").read_bytes())

    pems = tmp_path / "pems"
    pems.mkdir()
    for name, cert in certs.items():
        (pems / f"{name}.pem").write_bytes(_pem(cert))
    out = tmp_path / "virt.fd"
    o = str(OWNER)
    run(virt_tool("virt-fw-vars"), "--input", STORES["empty"], "--set-pk", o, pems / "pk.pem",
        "--add-kek", o, pems / "kek1.pem", "--add-kek", o, pems / "kek2.pem",
        "--add-db", o, pems / "db1.pem", "--add-db", o, pems / "db2.pem", "--output", out)  # fmt: skip
    theirs = virt_json(out, tmp_path)

    state = load_cert_dir(d)
    assert state.secure_boot
    assert state.pk == bytes.fromhex(str(theirs[("PK", EFI_GLOBAL_VARIABLE)]["data"]))
    assert state.kek == bytes.fromhex(str(theirs[("KEK", EFI_GLOBAL_VARIABLE)]["data"]))
    assert state.db == bytes.fromhex(str(theirs[("db", EFI_IMAGE_SECURITY_DATABASE)]["data"]))
    assert state.dbx == secure_boot_state(read_varstore(STORES["snakeoil"])).dbx
    assert [e.owner for e in state.db_entries()] == [OWNER, OWNER]
    assert state.extra == {}


def test_defaults_and_empty_variables(tmp_path: Path, certs: dict[str, x509.Certificate]) -> None:
    """Without owner.txt certificates get Shieldwright's owner; without PK Secure Boot is off; an .esl file
    is used as it is; a directory may be empty."""
    (tmp_path / "db.crt").write_bytes(_der(certs["db1"]))
    esl = x509_signature_list(_der(certs["kek1"]), OWNER)
    (tmp_path / "KEK.esl").write_bytes(esl)
    (tmp_path / "dbx").mkdir()
    state = load_cert_dir(tmp_path)
    assert not state.secure_boot and state.pk == b"" and state.dbx == b""
    assert state.kek == esl
    assert state.db == x509_signature_list(_der(certs["db1"]), SHIELDWRIGHT_OWNER_GUID)


def _auth(esl: bytes, cert_type: int = 0x0EF1, guid: str = "4aafd29d-68df-49ee-8aa9-347d375665a7") -> bytes:
    """EFI_VARIABLE_AUTHENTICATION_2 with 5 bytes of (unchecked) PKCS#7, then the lists."""
    return (
        bytes(16) + struct.pack("<IHH", 24 + 5, 0x200, cert_type) + uuid.UUID(guid).bytes_le + b"pkcs7" + esl
    )


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"DB.pem": "db1"}, "unexpected 'DB.pem'"),
        ({"db.txt": "db1"}, "unexpected 'db.txt'"),
        ({"README": "db1"}, "unexpected 'README'"),
        ({"db.pem": "db1", "db/x.pem": "db1"}, "gives db twice"),
        ({"db.pem": "db1", "db.der": "db1"}, "gives db twice"),
        ({"db/x.txt": "db1"}, "unexpected 'x.txt'"),
        ({"db/sub/x.pem": "db1"}, "unexpected 'sub'"),
        ({"PK.pem": "pk+kek1"}, "PK holds 2 entries"),
        ({"owner.txt": "not a guid"}, "does not hold one GUID"),
        ({"db.esl": ""}, "holds no signature list"),
        ({"db.esl": "garbage"}, "db ("),
        ({"db.pem": "garbage"}, "db: "),
        ({"dbx.auth": "short"}, "too short"),
        ({"dbx.auth": "auth-wrong-type"}, "not a PKCS#7"),
        ({"dbx.auth": "auth-long"}, "dwLength"),
    ],
)
def test_layout_mistakes_are_refused(
    tmp_path: Path, certs: dict[str, x509.Certificate], files: dict[str, str], fragment: str
) -> None:
    esl = x509_signature_list(_der(certs["db1"]), OWNER)
    contents = {
        "db1": _pem(certs["db1"]),
        "pk+kek1": _pem(certs["pk"]) + _pem(certs["kek1"]),
        "not a guid": b"{not-a-guid}\n",
        "": b"",
        "garbage": b"\x01" * 40,
        "short": b"\x00" * 20,
        "auth-wrong-type": _auth(esl, cert_type=0x0002),
        "auth-long": _auth(esl)[:16] + struct.pack("<I", 10**6) + _auth(esl)[20:],
    }
    for name, what in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents[what])
    with pytest.raises(MeasureError) as info:
        load_cert_dir(tmp_path)
    assert fragment in info.value.message, info.value.message
    assert "\n" not in info.value.one_line()


def test_auth_file_by_hand(tmp_path: Path, certs: dict[str, x509.Certificate]) -> None:
    esl = x509_signature_list(_der(certs["db2"]), OWNER)
    (tmp_path / "db.auth").write_bytes(_auth(esl))
    assert load_cert_dir(tmp_path).db == esl


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(MeasureError, match="is not a directory"):
        load_cert_dir(tmp_path / "nothing")
