"""What the *Provision a VM disk* wizard has chosen so far (Qt-free, like :mod:`app.gui.state`).

The choices are the engine's own: :class:`~app.template.provision.ProvisionRequest`'s fields (the template,
the trusted certificates, the VM's SRK, the firmware profile, the PCR selection and bank — in the recipe's
:class:`~app.template.recipe.PcrOptions` vocabulary —, keep-passphrase, the output and its format) plus what
only a running wizard holds: the loaded certificates, SRK and firmware profile, the provisioning passphrase
in memory, and the result. :meth:`ProvisionState.request` is the request the Provision page runs.

The passphrase is typed, or comes from shielding data (``shieldwright provision --shielding-data``): then
the state holds only the paths of the ``.shd`` and of the recipient's certificate and key
(:meth:`ProvisionState.shielding_source`); the Provision page's task opens it and adds its specialization
values to the request.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import ShieldwrightError
from app.template.provision import ProvisionRequest
from app.template.recipe import PcrOptions
from app.tpm.vtpm_dir import credentials_key_path

if TYPE_CHECKING:
    from cryptography import x509

    from app.measure.profile import FirmwareProfile
    from app.template.provision import ProvisionResult
    from app.tpm.srk import Srk

#: How the VM's SRK is given: its public key file, or a vTPM the wizard creates.
SRK_FILE, CREATE_VTPM = "file", "create"
#: Where the provisioning passphrase comes from: typed, or shielding data made for the template.
TYPED, SHIELDING_DATA = "typed", "shielding-data"


@dataclass(frozen=True)
class ShieldingSource:
    """Shielding data to take the passphrase and specialization values from: paths only, opened by the
    Provision page's task (the key file is read there, never held here)."""

    shielding_data: Path
    certificate: Path
    key: Path
    #: The vTPM's credentials key file (``credentials.tpm2b_public``) the values are sealed to; it may be
    #: missing (the engine then refuses values it cannot deliver).
    credentials_key: Path | None
    #: A copy of the recipient key's passphrase, if it is encrypted (the task wipes it).
    key_passphrase: bytearray | None = field(default=None, repr=False)


@dataclass
class TrustedFile:
    """Certificates the template's signers must be (or chain to), and the file they came from."""

    path: Path
    certificates: list[x509.Certificate] = field(default_factory=list, repr=False)


@dataclass
class ProvisionState:
    """The provision flow's choices and results. Pages read and write it; the Provision page turns it into
    a :class:`ProvisionRequest`."""

    template: Path | None = None
    trusted: list[TrustedFile] = field(default_factory=list)

    #: ``SRK_FILE`` or ``CREATE_VTPM``.
    srk_mode: str = SRK_FILE
    srk_path: Path | None = None
    #: The directory of the vTPM created for this VM (``CREATE_VTPM``), its SRK kind and PCR banks.
    vtpm_dir: Path | None = None
    vtpm_kind: str = "ecc"
    vtpm_banks: tuple[str, ...] = ()
    srk: Srk | None = field(default=None, repr=False)

    #: The firmware profile, PCRs and bank, in the recipe's vocabulary (``pcr.firmware`` is (kind, path)).
    pcr: PcrOptions = field(default_factory=PcrOptions)
    profile: FirmwareProfile | None = field(default=None, repr=False)

    #: ``TYPED`` or ``SHIELDING_DATA``: where the provisioning passphrase comes from.
    passphrase_source: str = TYPED
    #: The template's provisioning passphrase, in memory only (wiped by :meth:`clear_secrets`).
    passphrase: bytearray | None = field(default=None, repr=False)
    #: ``SHIELDING_DATA``: the ``.shd`` and the certificate and private key of a recipient it was made for.
    shielding_data: Path | None = None
    guardian_cert: Path | None = None
    guardian_key: Path | None = None
    #: The passphrase of ``guardian_key`` when it is encrypted, in memory only (wiped by clear_secrets).
    guardian_key_passphrase: bytearray | None = field(default=None, repr=False)
    keep_passphrase: bool = False
    output: Path | None = None
    #: None: the engine's default (the template's format when it can be written, else raw).
    out_format: str | None = None
    overwrite: bool = False

    result: ProvisionResult | None = field(default=None, repr=False)

    @classmethod
    def for_template(
        cls,
        template: Path,
        trusted: Sequence[TrustedFile] = (),
        pcr: PcrOptions | None = None,
    ) -> ProvisionState:
        """The flow opened on a template just built: its signer certificates trusted, its PCR policy's
        firmware, PCRs and bank preselected."""
        state = cls(template=Path(template), trusted=list(trusted))
        if pcr is not None:
            state.pcr = copy.deepcopy(pcr)
        return state

    def trusted_certificates(self) -> list[x509.Certificate]:
        """Every trusted certificate, once each, in the order given."""
        out: list[x509.Certificate] = []
        for entry in self.trusted:
            out += [c for c in entry.certificates if c not in out]
        return out

    def set_passphrase(self, text: str) -> None:
        """Hold ``text`` (UTF-8) as the provisioning passphrase, wiping the one held before."""
        _wipe(self.passphrase)
        self.passphrase = bytearray(text.encode()) if text else None

    def set_guardian_key_passphrase(self, text: str) -> None:
        """Hold ``text`` as the recipient key's passphrase, wiping the one held before."""
        _wipe(self.guardian_key_passphrase)
        self.guardian_key_passphrase = bytearray(text.encode()) if text else None

    def passphrase_copy(self) -> bytearray:
        """A copy of the passphrase for one provisioning run (its caller wipes it); empty when none."""
        return bytearray(self.passphrase) if self.passphrase else bytearray()

    def clear_secrets(self) -> None:
        """Overwrite and drop the passphrases (best effort: Python and Qt may hold copies)."""
        _wipe(self.passphrase)
        _wipe(self.guardian_key_passphrase)
        self.passphrase = self.guardian_key_passphrase = None

    def passphrase_ready(self) -> bool:
        """Whether the chosen source of the passphrase is complete (typed, or all three files chosen)."""
        if self.passphrase_source == SHIELDING_DATA:
            return None not in (self.shielding_data, self.guardian_cert, self.guardian_key)
        return bool(self.passphrase)

    def credentials_key_path(self) -> Path | None:
        """Where ``vtpm new`` put the credentials key of the VM's vTPM: in the vTPM created here, or beside
        the SRK file (as the CLI's default); None when no vTPM is known yet."""
        if self.srk_mode == CREATE_VTPM:
            directory = self.vtpm_dir
        else:
            directory = self.srk_path.parent if self.srk_path is not None else None
        return credentials_key_path(directory) if directory is not None else None

    def shielding_source(self) -> ShieldingSource | None:
        """The shielding data to provision from; None when the passphrase is typed."""
        if self.passphrase_source != SHIELDING_DATA:
            return None
        if self.shielding_data is None or self.guardian_cert is None or self.guardian_key is None:
            raise ShieldwrightError(
                "the shielding data, the certificate or the private key is not chosen yet",
                "go back and choose all three",
            )
        key_passphrase = bytearray(self.guardian_key_passphrase) if self.guardian_key_passphrase else None
        return ShieldingSource(
            self.shielding_data, self.guardian_cert, self.guardian_key, self.credentials_key_path(),
            key_passphrase,
        )  # fmt: skip

    def request(self) -> ProvisionRequest:
        """The engine's request for the present choices (raises when something is still missing)."""
        missing = [
            what
            for what, value in (
                ("the template", self.template),
                ("the VM's SRK", self.srk),
                ("the firmware profile", self.profile),
                ("the output file", self.output),
            )
            if value is None
        ]
        if missing:
            raise ShieldwrightError(f"{', '.join(missing)} not chosen yet", "go back and choose it")
        assert self.template is not None and self.srk is not None and self.profile is not None
        assert self.output is not None
        return ProvisionRequest(
            template=self.template,
            output=self.output,
            srk=self.srk,
            profile=self.profile,
            pcrs=tuple(self.pcr.pcrs),
            bank=self.pcr.bank,
            keep_passphrase=self.keep_passphrase,
            out_format=self.out_format,
            trusted=self.trusted_certificates() or None,
            overwrite=self.overwrite,
        )


def _wipe(secret: bytearray | None) -> None:
    if secret is not None:
        secret[:] = bytes(len(secret))
