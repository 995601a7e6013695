"""The *Shielding Data* pages' base class, and the engine calls their background tasks run.

Every rule is the engine's (:mod:`app.shielding`): guardians are :func:`~app.shielding.guardians.new_owner`,
:func:`~app.shielding.guardians.import_owner`, :func:`~app.shielding.guardians.import_guardian`,
:func:`~app.shielding.guardians.remove_guardian` and :func:`~app.shielding.guardians.list_guardians`; a
qualifier is read by :func:`~app.shielding.qualifiers.load_signed_catalog`; the payload is checked by
:meth:`~app.shielding.payload.Payload.check`; the file is :func:`~app.shielding.shd.create_shielding_data`,
written by :func:`~app.signing.output.write_output` and read back by
:func:`~app.shielding.shd.read_shielding_data`; a template is tested with
:func:`~app.shielding.qualifiers.applicability`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from PySide6.QtWidgets import QWidget

from app.errors import ShieldwrightError
from app.gui.dialogs.import_owner import OwnerFiles
from app.gui.page import WizardPage
from app.gui.shielding_state import QualifierEntry, ShieldingState, wipe_payload
from app.gui.tasks import TaskRunner
from app.shielding.guardians import (
    Guardian,
    GuardianError,
    import_guardian,
    import_owner,
    list_guardians,
    load_guardian,
    new_owner,
    remove_guardian,
)
from app.shielding.payload import Payload, read_payload_file
from app.shielding.qualifiers import Qualifier, applicability, load_signed_catalog, qualifier_from_catalog
from app.shielding.shd import ShieldingData, create_shielding_data, read_shielding_data
from app.signing.output import write_output

QUALIFIER_FILTERS = ("Catalogs and templates (*.vsc *.raw *.img *.qcow2 *.vhdx *.vhd)", "All files (*)")


class ShieldingPage(WizardPage):
    """A page of the shielding data wizard: :class:`WizardPage` (tasks, error panel, file dialogs) on the
    flow's own state."""

    state: ShieldingState  # type: ignore[assignment]  # the base class is typed for the template wizard

    def __init__(self, state: ShieldingState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(cast(Any, state), runner, parent)


# -- owner and guardians ----------------------------------------------------------------------------------


def list_store(store: Path | None) -> list[Guardian]:
    return list_guardians(store=store)


def create_owner(name: str, signing: str, store: Path | None) -> Guardian:
    """Generate the owner's key pairs (RSA key generation takes a moment: run in the background)."""
    return new_owner(name, signing=signing, store=store)


def import_fabric_guardian(name: str, certificate: Path, store: Path | None) -> Guardian:
    return import_guardian(name, certificate, store=store)


def import_owner_files(files: OwnerFiles, store: Path | None) -> Guardian:
    """An owner from its certificate and key files; the passphrase copy is wiped whatever happens."""
    try:
        return import_owner(
            files.name, signing_cert=files.signing_cert, signing_key=files.signing_key,
            encryption_cert=files.encryption_cert, encryption_key=files.encryption_key,
            # cryptography takes any bytes-like passphrase: a bytearray can be wiped afterwards.
            passphrase=cast(bytes, files.passphrase), store=store,
        )  # fmt: skip
    finally:
        files.wipe()


def remove_fabric_guardian(name: str, store: Path | None) -> Guardian:
    """Remove a fabric's guardian (certificates only). An owner is refused: its private keys go with it,
    which the wizard leaves to ``shieldwright shield guardian remove --yes``."""
    if load_guardian(name, store=store).kind == "owner":
        raise GuardianError(
            f"{name!r} is an owner guardian: removing it deletes its private keys",
            "remove it with `shieldwright shield guardian remove --yes` if that is what you want",
        )
    return remove_guardian(name, store=store)


# -- qualifiers -------------------------------------------------------------------------------------------


def read_qualifier(source: Path, rule: str = "equals") -> QualifierEntry:
    """The qualifier naming exactly the template of ``source`` (a .vsc, or a template: its ESP is read), and
    the subject of the certificate that signed its catalog."""
    signed = load_signed_catalog(source)
    return QualifierEntry(qualifier_from_catalog(signed, rule), Path(source), signed.signer_subject)


# -- specialization ---------------------------------------------------------------------------------------


def read_small_file(path: Path, what: str) -> bytes:
    """A file for the payload (the engine's bounded read)."""
    return read_payload_file(path, what)


def check_payload(state: ShieldingState) -> ShieldwrightError | None:
    """The engine's verdict on the specialization values (None: they can be carried)."""
    payload = state.payload()
    try:
        payload.check()
    except ShieldwrightError as exc:
        return exc
    finally:
        wipe_payload(payload)
    return None


# -- generate ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    path: Path
    data: ShieldingData


def generate(
    output: Path, overwrite: bool, owner: Guardian, guardians: Sequence[Guardian],
    qualifiers: Sequence[Qualifier], policy: str, payload: Payload,
) -> Generated:  # fmt: skip
    """Runs in the executor: sign and encrypt, write atomically, read back what was written. The payload's
    passphrase copy is wiped whatever happens."""
    try:
        data = create_shielding_data(owner, guardians, qualifiers, policy, payload)
    finally:
        wipe_payload(payload)
    path = write_output(output, data, overwrite=overwrite)
    return Generated(path, read_shielding_data(path.read_bytes(), where=str(path)))


@dataclass(frozen=True)
class Applicability:
    template: Path
    name: str
    version: str
    applicable: bool
    reasons: list[str]


def applies_to(data: ShieldingData, template: Path) -> Applicability:
    """``shield test``: whether the data's qualifiers admit ``template`` (a template or its .vsc)."""
    signed = load_signed_catalog(template)
    ok, reasons = applicability(data.qualifiers, signed)
    cat = signed.catalog
    return Applicability(Path(template), cat.template_name, cat.template_version, ok, reasons)
