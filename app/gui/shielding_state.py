"""What the *Shielding Data* wizard has chosen so far (Qt-free, like :mod:`app.gui.provision_state`).

The choices are :func:`~app.shielding.shd.create_shielding_data`'s arguments - the output file and policy,
the owner and the fabric guardians, the volume ID qualifiers, the specialization values - plus what only a
running wizard holds: the guardian store it works in, the provisioning passphrase in memory (wiped by
:meth:`ShieldingState.clear_secrets`) and the file written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.shielding.payload import Payload, PayloadFile

if TYPE_CHECKING:
    from app.shielding.guardians import Guardian
    from app.shielding.qualifiers import Qualifier
    from app.shielding.shd import ShieldingData


@dataclass
class QualifierEntry:
    """A qualifier and where it came from: the catalog's signer subject is shown, its SHA-256 is named."""

    qualifier: Qualifier
    source: Path
    signer_subject: str


@dataclass
class ExtraFile:
    """A file for the VM: read from ``source`` when added, written at ``path`` with ``mode``."""

    source: Path
    path: str
    mode: int
    data: bytes = field(repr=False)


@dataclass
class ShieldingState:
    """The shielding data flow's choices and results."""

    output: Path | None = None
    overwrite: bool = False
    policy: str = "shielded"

    #: The guardian directory (None: the user's, ``app.shielding.guardians.default_store()``).
    store: Path | None = None
    #: The guardians in the store, as last listed.
    known: list[Guardian] = field(default_factory=list, repr=False)
    owner: str | None = None
    guardians: list[str] = field(default_factory=list)

    qualifiers: list[QualifierEntry] = field(default_factory=list)
    #: A template or .vsc whose qualifier the Qualifiers page adds when it opens (the Finished page's).
    prefill: Path | None = None

    #: The template's provisioning passphrase, in memory only.
    passphrase: bytearray | None = field(default=None, repr=False)
    hostname: str = ""
    password_hash: str = field(default="", repr=False)
    ssh_key_files: list[Path] = field(default_factory=list)
    ssh_keys: list[str] = field(default_factory=list, repr=False)
    user_data_file: Path | None = None
    user_data: bytes | None = field(default=None, repr=False)
    files: list[ExtraFile] = field(default_factory=list)

    written: Path | None = None
    summary: ShieldingData | None = field(default=None, repr=False)

    @classmethod
    def for_template(cls, template: Path, *, store: Path | None = None) -> ShieldingState:
        """The flow opened on a template just built: its qualifier (``equals`` its version) prefilled."""
        return cls(prefill=Path(template), store=store, output=Path(template).with_suffix(".shd"))

    def guardian(self, name: str | None) -> Guardian | None:
        return next((g for g in self.known if g.name == name), None)

    def owners(self) -> list[Guardian]:
        return [g for g in self.known if g.kind == "owner"]

    def chosen_guardians(self) -> list[Guardian]:
        """The fabric guardians chosen (the owner, who can always open its data, left out)."""
        return [g for g in self.known if g.name in self.guardians and g.name != self.owner]

    def set_passphrase(self, text: str) -> None:
        self.clear_secrets()
        self.passphrase = bytearray(text.encode()) if text else None

    def clear_secrets(self) -> None:
        """Overwrite and drop the passphrase (best effort: Python and Qt may hold copies)."""
        if self.passphrase is not None:
            self.passphrase[:] = bytes(len(self.passphrase))
        self.passphrase = None

    def payload(self) -> Payload:
        """The engine's payload for the present values, with a *copy* of the passphrase (the caller wipes
        it with :func:`wipe_payload`). Not checked: :meth:`Payload.check` is the engine's rule."""
        return Payload(
            bytearray(self.passphrase or b""),
            hostname=self.hostname or None,
            admin_password_hash=self.password_hash or None,
            ssh_authorized_keys=list(self.ssh_keys),
            user_data=self.user_data,
            files=[PayloadFile(f.path, f.mode, f.data) for f in self.files],
        )


def wipe_payload(payload: Payload) -> None:
    buf = payload.provisioning_passphrase
    buf[:] = bytes(len(buf))
