"""Firmware profile "certificates given as files": PK, KEK, db and dbx read from a directory.

For a target whose variable store we cannot read (a cloud's firmware, a physical machine) but whose keys
we know. The layout, all names case-sensitive::

    DIR/owner.txt       optional: one GUID, the SignatureOwner of every certificate given as a
                        certificate file (default: SHIELDWRIGHT_OWNER_GUID). It is part of the
                        EFI_SIGNATURE_DATA firmware measures into PCR 7, so it must be the one enrolled.
    DIR/PK.EXT          the platform key: exactly one certificate. Without PK the firmware is in setup
                        mode and Secure Boot is off.
    DIR/KEK.EXT         key exchange keys       } each either one file VAR.EXT or a directory VAR/
    DIR/db.EXT          allowed signatures      } holding any number of *.EXT files, used in name
    DIR/dbx.EXT         forbidden signatures    } order; a variable without either is empty

    EXT: .pem .crt .cer .der   certificates (PEM: one or more; DER: one), each enrolled as an
                               EFI_CERT_X509 signature list of its own with the owner above
         .esl                  EFI signature lists (the variable's raw value, e.g. from efi-readvar or
                               virt-fw-vars), used as they are, owners included
         .auth                 a signed update (EFI_VARIABLE_AUTHENTICATION_2 ‖ signature lists, e.g.
                               Microsoft's dbx update): the signature lists after the header are used;
                               the signature is not checked, the files are what the user chose to trust

Anything else in DIR or in a VAR/ directory is refused, so a typo (``DB.pem``, ``db.txt``) is an error,
not a silently empty db.
"""

from __future__ import annotations

import os
import struct
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from app.errors import ShieldwrightError
from app.measure.events import MeasureError
from app.measure.secureboot import POLICY_VARIABLES, SecureBootVariables
from app.measure.siglist import (
    EFI_CERT_X509_GUID,
    MAX_DATABASE_SIZE,
    SHIELDWRIGHT_OWNER_GUID,
    parse_signature_lists,
    x509_signature_list,
)
from app.signing.keys import load_certificates
from app.untrusted import read_bounded

OWNER_FILE = "owner.txt"
CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der")
ESL_SUFFIX = ".esl"
AUTH_SUFFIX = ".auth"
SUFFIXES = (*CERT_SUFFIXES, ESL_SUFFIX, AUTH_SUFFIX)
#: One line for error hints.
LAYOUT = (
    "the directory holds PK, KEK, db and dbx, each as one file VAR.pem/.crt/.cer/.der/.esl/.auth or a "
    "directory VAR/ of such files, and optionally owner.txt"
)
# EFI_VARIABLE_AUTHENTICATION_2 (UEFI 2.10 §8.2.2): EFI_TIME TimeStamp (16) ‖ WIN_CERTIFICATE_UEFI_GUID
# {u32 dwLength, u16 wRevision, u16 wCertificateType, CertType GUID, CertData}; dwLength covers all of it.
AUTH2_HEADER = struct.Struct("<16sIHH16s")
WIN_CERT_TYPE_EFI_GUID = 0x0EF1
EFI_CERT_TYPE_PKCS7_GUID = uuid.UUID("4aafd29d-68df-49ee-8aa9-347d375665a7")


def load_cert_dir(path: str | os.PathLike[str]) -> SecureBootVariables:
    """The Secure Boot variables a directory laid out as in the module doc describes.

    Secure Boot counts as on exactly when a PK is given: firmware with these keys enrolled is in user mode.
    """
    root = Path(path)
    if not root.is_dir():
        raise MeasureError(f"{root} is not a directory", LAYOUT)
    sources: dict[str, list[Path]] = {name: [] for name in POLICY_VARIABLES}
    given: dict[str, str] = {}
    owner = SHIELDWRIGHT_OWNER_GUID
    for entry in sorted(root.iterdir()):
        if entry.name == OWNER_FILE and entry.is_file():
            owner = _read_owner(entry)
            continue
        if entry.is_dir():
            var = entry.name
        elif entry.is_file() and entry.suffix in SUFFIXES:
            var = entry.stem
        else:
            var = ""
        if var not in sources:
            raise MeasureError(f"unexpected {entry.name!r} in {root}", LAYOUT)
        if var in given:
            raise MeasureError(f"{root} gives {var} twice ({given[var]} and {entry.name})", LAYOUT)
        given[var] = entry.name
        sources[var] = _files_of(entry) if entry.is_dir() else [entry]
    values = {var: b"".join(_value_of(f, var, owner) for f in files) for var, files in sources.items()}
    for var, value in values.items():  # the whole value, as firmware will read it (size bound included)
        parse_signature_lists(value, f"{var} in {root}")
    pk_entries = parse_signature_lists(values["PK"], "PK")
    if values["PK"] and (len(pk_entries) != 1 or pk_entries[0].type_guid != EFI_CERT_X509_GUID):
        raise MeasureError(
            f"{root}: PK holds {len(pk_entries)} entries", "the platform key is exactly one X.509 certificate"
        )
    return SecureBootVariables(
        secure_boot=bool(values["PK"]), pk=values["PK"], kek=values["KEK"], db=values["db"], dbx=values["dbx"]
    )


def _files_of(directory: Path) -> list[Path]:
    files = sorted(directory.iterdir())
    for f in files:
        if f.suffix not in SUFFIXES or not f.is_file():
            raise MeasureError(f"unexpected {f.name!r} in {directory}", LAYOUT)
    return files


def _read_owner(path: Path) -> uuid.UUID:
    text = _read(path, 256).decode("ascii", errors="replace").strip()
    try:
        return uuid.UUID(text)
    except ValueError:
        raise MeasureError(
            f"{path} does not hold one GUID", "write the owner GUID, e.g. " + str(SHIELDWRIGHT_OWNER_GUID)
        ) from None


def _read(path: Path, limit: int) -> bytes:
    data = read_bounded(path, limit, MeasureError, "check the path")
    if len(data) > limit:
        raise MeasureError(f"{path} is larger than {limit} bytes", LAYOUT)
    return data


def _value_of(path: Path, var: str, owner: uuid.UUID) -> bytes:
    """The signature lists ``path`` contributes to ``var``."""
    what = f"{var} ({path})"
    if path.suffix in CERT_SUFFIXES:
        try:
            certs = load_certificates(path)
        except ShieldwrightError as exc:
            raise MeasureError(f"{var}: {exc.message}", exc.hint) from None
        return b"".join(x509_signature_list(c.public_bytes(Encoding.DER), owner) for c in certs)
    data = _read(path, MAX_DATABASE_SIZE)
    if path.suffix == AUTH_SUFFIX:
        data = _strip_auth_header(data, what)
    if not parse_signature_lists(data, what):
        raise MeasureError(f"{what} holds no signature list", "remove the empty file")
    return data


def _strip_auth_header(data: bytes, what: str) -> bytes:
    """The signature lists after an EFI_VARIABLE_AUTHENTICATION_2 header (signature not checked)."""
    if len(data) < AUTH2_HEADER.size:
        raise MeasureError(
            f"{what}: too short for an authenticated variable header", "give a .auth update file"
        )
    _time, length, _revision, cert_type, guid = AUTH2_HEADER.unpack_from(data)
    if cert_type != WIN_CERT_TYPE_EFI_GUID or uuid.UUID(bytes_le=guid) != EFI_CERT_TYPE_PKCS7_GUID:
        raise MeasureError(
            f"{what}: not a PKCS#7 EFI_VARIABLE_AUTHENTICATION_2 header", "give a .auth update file"
        )
    if length < AUTH2_HEADER.size - 16 or 16 + length > len(data):
        raise MeasureError(
            f"{what}: the authentication header's dwLength {length} does not fit", "give a .auth update file"
        )
    return data[16 + length :]
