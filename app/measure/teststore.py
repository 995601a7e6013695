"""OVMF variable stores for test boots: one of Debian's stores with certificates appended to db and KEK.

``shieldwright firmware vars`` writes one to a file; a test boot makes one in its scratch directory (the
Microsoft store with the template's signing certificate added to db, as a cloud with the template's key
enrolled would have). The installed OVMF files are read, never written.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.boot.vm import OVMF_DIR, VARS_TEMPLATES
from app.errors import ShieldwrightError
from app.measure.events import EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE
from app.measure.secureboot import SecureBootVariables
from app.measure.siglist import SHIELDWRIGHT_OWNER_GUID, x509_signature_list
from app.measure.varstore import VarStore, read_varstore, secure_boot_state
from app.signing.output import write_output

#: The stores a test store starts from that boot with Secure Boot on (``empty`` has no PK: setup mode).
SECURE_BOOT_BASES = ("microsoft", "snakeoil")


@dataclass(frozen=True)
class TestStore:
    """A variable store's bytes, what was added to it, and the Secure Boot state it reads back as."""

    data: bytes
    store: VarStore
    state: SecureBootVariables
    added: list[tuple[str, x509.Certificate]] = field(default_factory=list)


def build_test_store(
    base: str,
    *,
    add_db: Sequence[x509.Certificate] = (),
    add_kek: Sequence[x509.Certificate] = (),
    owner: uuid.UUID | None = None,
) -> TestStore:
    """Debian's ``base`` store (a key of :data:`app.boot.vm.VARS_TEMPLATES`) with each certificate
    appended to its variable as an EFI_CERT_X509 signature list of its own (as ``virt-fw-vars --add-db
    GUID CERT`` does), owned by ``owner`` (default Shieldwright's GUID, part of the PCR 7 authority
    event)."""
    path = OVMF_DIR / VARS_TEMPLATES[base]
    if not path.is_file():
        raise ShieldwrightError(f"{path} is not installed", "install the ovmf package (`make setup`)")
    owner = owner or SHIELDWRIGHT_OWNER_GUID
    store = read_varstore(path)
    added: list[tuple[str, x509.Certificate]] = []
    additions = (("KEK", EFI_GLOBAL_VARIABLE, add_kek), ("db", EFI_IMAGE_SECURITY_DATABASE, add_db))
    for var, vendor, certs in additions:
        for cert in certs:
            store.append(var, vendor, x509_signature_list(cert.public_bytes(Encoding.DER), owner))
            added.append((var, cert))
    data = store.to_bytes()
    state = secure_boot_state(read_varstore(data))  # what we write must read back
    return TestStore(data, store, state, added)


def write_test_store(
    base: str,
    output: str | os.PathLike[str],
    *,
    add_db: Sequence[x509.Certificate] = (),
    add_kek: Sequence[x509.Certificate] = (),
    owner: uuid.UUID | None = None,
    overwrite: bool = False,
) -> TestStore:
    """:func:`build_test_store`, written to ``output`` atomically: an existing file is replaced only with
    ``overwrite``, the installed OVMF store never."""
    out = Path(output)
    installed = OVMF_DIR / VARS_TEMPLATES[base]
    if out.exists() and installed.exists() and os.path.samefile(out, installed):
        raise ShieldwrightError("the output is the installed OVMF store", "choose a different file")
    made = build_test_store(base, add_db=add_db, add_kek=add_kek, owner=owner)
    write_output(out, made.data, overwrite=overwrite)
    return made
