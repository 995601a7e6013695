"""The Secure Boot policy a firmware boots with: the values of PK, KEK, db, dbx and whether it is enforced.

Two profiles produce it: an OVMF variable store (:func:`app.measure.varstore.secure_boot_state`) and a
directory of certificate files (:func:`app.measure.certdir.load_cert_dir`). Both are exactly what firmware
measures into PCR 7 as EV_EFI_VARIABLE_DRIVER_CONFIG before the separator (TCG PC Client PFP §3.3.4.8;
edk2 SecurityPkg/Tcg/Tcg2Dxe/Tcg2Dxe.c ``MeasureAllSecureVariables``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from app.measure.events import EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE
from app.measure.siglist import SignatureEntry, parse_signature_lists

#: The variables of the Secure Boot policy and their vendor GUIDs (UEFI 2.10 §3.3 and §32.6.1).
POLICY_VARIABLES: dict[str, uuid.UUID] = {
    "PK": EFI_GLOBAL_VARIABLE,
    "KEK": EFI_GLOBAL_VARIABLE,
    "db": EFI_IMAGE_SECURITY_DATABASE,
    "dbx": EFI_IMAGE_SECURITY_DATABASE,
}
#: Further signature databases firmware measures into PCR 7 only when present: dbt (timestamps, edk2
#: Tcg2Dxe) and dbr (recovery), both under EFI_IMAGE_SECURITY_DATABASE.
OPTIONAL_DATABASES = ("dbt", "dbr")


@dataclass(frozen=True)
class SecureBootVariables:
    """Raw values of PK, KEK, db and dbx (``b""`` when absent); ``secure_boot`` is the value the firmware's
    volatile ``SecureBoot`` variable will have; ``extra`` holds dbt/dbr when present, by name."""

    secure_boot: bool
    pk: bytes = b""
    kek: bytes = b""
    db: bytes = b""
    dbx: bytes = b""
    extra: dict[str, bytes] = field(default_factory=dict)

    def pk_entries(self) -> list[SignatureEntry]:
        return parse_signature_lists(self.pk, "PK")

    def kek_entries(self) -> list[SignatureEntry]:
        return parse_signature_lists(self.kek, "KEK")

    def db_entries(self) -> list[SignatureEntry]:
        return parse_signature_lists(self.db, "db")

    def dbx_entries(self) -> list[SignatureEntry]:
        return parse_signature_lists(self.dbx, "dbx")

    def measured_variables(self) -> list[tuple[str, uuid.UUID, bytes]]:
        """(name, vendor GUID, data) in the order edk2 measures them into PCR 7: SecureBoot (one byte),
        PK, KEK, db, dbx (an absent one as empty data), then dbt and dbr only when present."""
        out = [("SecureBoot", EFI_GLOBAL_VARIABLE, b"\x01" if self.secure_boot else b"\x00")]
        out += [(name, vendor, self.value(name)) for name, vendor in POLICY_VARIABLES.items()]
        out += [
            (n, EFI_IMAGE_SECURITY_DATABASE, self.extra[n]) for n in OPTIONAL_DATABASES if n in self.extra
        ]
        return out

    def value(self, name: str) -> bytes:
        """The raw value of ``PK``, ``KEK``, ``db``, ``dbx`` or an ``extra`` database (``b""`` if absent)."""
        fixed = {"PK": self.pk, "KEK": self.kek, "db": self.db, "dbx": self.dbx}
        return fixed[name] if name in fixed else self.extra.get(name, b"")
