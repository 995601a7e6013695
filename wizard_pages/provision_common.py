"""The *Provision a VM disk* pages' base class, and the engine calls their background tasks run.

Every rule is the engine's: the template's identity is its catalog as :func:`~app.catalog.extract.
extract_catalog` and :func:`~app.catalog.format.read_catalog` read it, the verification is
:func:`~app.template.verify.verify_template`, the SRK :func:`~app.tpm.srk.load_srk` or
:func:`~app.tpm.vtpm_dir.create_vtpm`, the PCR selection :func:`~app.template.provision.check_pcrs`, the
sealed values :func:`~app.template.provision.sealed_values`, shielding data
:func:`~app.template.provision.payload_from_shielding_data` and the provisioning itself
:func:`~app.template.provision.provision`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from PySide6.QtWidgets import QWidget

from app.catalog.extract import extract_catalog
from app.catalog.format import SignedCatalog, read_catalog
from app.gui.page import WizardPage
from app.gui.provision_state import ProvisionState, ShieldingSource, TrustedFile
from app.gui.tasks import TaskRunner
from app.measure.predict import Prediction, predict_template
from app.measure.profile import FirmwareProfile, load_profile
from app.progress import ProgressState
from app.signing.keys import load_certificates, load_private_key
from app.template.provision import ProvisionRequest, ProvisionResult, payload_from_shielding_data, provision
from app.template.verify import TemplateReport, verify_template
from app.tpm.srk import Srk, load_srk
from app.tpm.vtpm_dir import create_vtpm, find_credentials_key

if TYPE_CHECKING:
    from cryptography import x509

    from app.progress import CancelToken


class ProvisionPage(WizardPage):
    """A page of the provision wizard: :class:`WizardPage` (tasks, error panel, file dialogs) on the
    provision flow's own state."""

    state: ProvisionState  # type: ignore[assignment]  # the base class is typed for the template wizard

    def __init__(self, state: ProvisionState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(cast(Any, state), runner, parent)


# -- page 1: the template ---------------------------------------------------------------------------------


def read_identity(template: Path) -> SignedCatalog:
    """The template's catalog (name, version, who signed it), its signature checked but not trusted yet."""
    return read_catalog(extract_catalog(template))


def load_trusted(path: Path) -> TrustedFile:
    return TrustedFile(Path(path), load_certificates(path))


def verify(template: Path, trusted: Sequence[x509.Certificate], *, progress: ProgressState,
           cancel: CancelToken) -> TemplateReport:  # fmt: skip
    """The engine's end-to-end check against ``trusted`` (none: its Signer check says NOT checked)."""
    return verify_template(template, trusted=list(trusted) or None, progress=progress, cancel=cancel)


# -- page 2: the target vTPM ------------------------------------------------------------------------------


def read_srk(path: Path) -> Srk:
    return load_srk(path)


def new_vtpm(directory: Path, kind: str, banks: Sequence[str], *, progress: ProgressState,
             cancel: CancelToken) -> Srk:  # fmt: skip
    """``shieldwright vtpm new DIR``: a swtpm state directory with systemd's SRK, its public key written."""
    progress.begin("Creating the vTPM", 0)
    return create_vtpm(directory, banks=tuple(banks), kind=kind, cancel=cancel)


# -- page 3: the PCR policy -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyForecast:
    """The firmware profile and what the template measures on it (before a PCR selection)."""

    profile: FirmwareProfile
    prediction: Prediction


def forecast(template: Path, kind: str, path: Path, bank: str) -> PolicyForecast:
    """Load the firmware profile and predict the template's boot chain on it, in ``bank``."""
    profile = load_profile(kind, path)
    return PolicyForecast(profile, predict_template(template, profile, [bank]))


# -- page 5: provisioning ---------------------------------------------------------------------------------


def run_provision(request: ProvisionRequest, passphrase: bytearray, engine_progress: ProgressState, *,
                  progress: ProgressState, cancel: CancelToken) -> ProvisionResult:  # fmt: skip
    """Runs in the executor. The engine reports into ``engine_progress`` (the page shows it at 10 Hz); the
    passphrase copy is wiped whatever happens."""
    try:
        return provision(request, passphrase, progress=engine_progress, cancel=cancel)
    finally:
        passphrase[:] = bytes(len(passphrase))


#: The step the Provision page lists while the shielding data is checked and opened.
OPENING_SHIELDING_DATA = "Opening the shielding data"


def run_provision_from_shielding_data(
    request: ProvisionRequest, source: ShieldingSource, engine_progress: ProgressState, *,
    progress: ProgressState, cancel: CancelToken,
) -> ProvisionResult:  # fmt: skip
    """Runs in the executor, as ``provision --shielding-data`` does: the shielding data is checked to apply
    to the template and opened with the recipient's key pair, then its passphrase opens the containers and
    its specialization values go to the vTPM's credentials key (when that file exists; the engine refuses
    values it cannot deliver). The payload's passphrase is wiped whatever happens."""
    engine_progress.begin(OPENING_SHIELDING_DATA, 0)
    try:
        certificate = load_certificates(source.certificate)[0]
        secret = source.key_passphrase
        key = load_private_key(source.key, bytes(secret) if secret else None)
    finally:
        if source.key_passphrase is not None:
            source.key_passphrase[:] = bytes(len(source.key_passphrase))
    payload = payload_from_shielding_data(source.shielding_data, request.template, certificate, key)
    try:
        cancel.check()
        credentials_key = find_credentials_key(source.credentials_key)
        request = dataclasses.replace(request, specialization=payload, credentials_key=credentials_key)
        return provision(request, payload.provisioning_passphrase, progress=engine_progress, cancel=cancel)
    finally:
        passphrase = payload.provisioning_passphrase
        passphrase[:] = bytes(len(passphrase))
