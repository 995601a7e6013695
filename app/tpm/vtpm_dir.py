"""A vTPM for a QEMU/libvirt VM, made before its first boot, with systemd's SRK already in place.

``shieldwright vtpm new DIR``: a swtpm state directory (``swtpm_setup``; what libvirt keeps per VM and
``swtpm socket --tpmstate dir=DIR`` runs), in which the SRK is created from systemd's template and made
persistent at 0x81000001 — exactly what ``systemd-tpm2-setup`` would do on the guest's first boot, done
now so a disk can be provisioned for this VM before it ever runs (systemd unseals with the handle in the
token and does not create a missing SRK at that point). Its public key goes to ``DIR/srk.tpm2b_public``.
The public key of systemd's *legacy* primary, the parent of credentials ``systemd-creds`` seals (a
transient key the TPM derives again from its owner seed), goes to ``DIR/credentials.tpm2b_public``: what
a provisioning needs to seal the VM's specialization values as credentials only this vTPM opens.
The TPM commands go through tpm2-pytss's ESAPI over swtpm's data channel (the way QEMU talks to it).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tpm2_pytss import ESAPI, PyTCTI
from tpm2_pytss.constants import ESYS_TR, TPM2_SU
from tpm2_pytss.types import TPM2B_PUBLIC

from app.boot.vm import start_swtpm
from app.boot.vtpm import VtpmError, data_channel, exchange, shutdown_swtpm
from app.errors import ShieldwrightError
from app.progress import CancelToken
from app.tpm.srk import SRK_HANDLE, Srk, legacy_primary_template, load_srk, srk_template

SRK_FILE = "srk.tpm2b_public"
CREDENTIALS_KEY_FILE = "credentials.tpm2b_public"


class _ChannelTcti(PyTCTI):  # type: ignore[misc]
    """tpm2-tss's transport over one swtpm data channel socket: send a command, receive its response."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(max_size=4096)
        self.sock = sock
        self.command = b""

    def do_transmit(self, command: bytes) -> None:
        self.command = bytes(command)

    def do_receive(self, timeout: int) -> bytes:
        return exchange(self.sock, self.command)


def create_vtpm(directory: str | Path, *, banks: Sequence[str] = ("sha256",), kind: str = "ecc",
                cancel: CancelToken | None = None) -> Srk:  # fmt: skip
    """Make ``directory`` a manufactured vTPM holding systemd's SRK at 0x81000001; write its public key.

    ``directory`` must not exist or be empty: a vTPM's state is a VM's identity and is never replaced.
    On any failure the directory is removed again (if we created it) or emptied, so nothing half-made
    is left for a VM to boot with.
    """
    cancel = cancel or CancelToken()
    target = Path(directory).absolute()
    created = not target.exists()
    if not created and (not target.is_dir() or any(target.iterdir())):
        raise ShieldwrightError(
            f"{target} already exists and is not an empty directory",
            "a vTPM's state is never overwritten; give a new directory",
        )
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    runtime = Path(tempfile.mkdtemp(prefix="sw-vtpm-"))
    proc = None
    try:
        proc, ctrl = start_swtpm(target, runtime, banks, cancel)
        with data_channel(ctrl, init=True) as channel:
            esys = ESAPI(_ChannelTcti(channel))
            try:
                esys.startup(TPM2_SU.CLEAR)
                handle, _public, _data, _digest, _ticket = esys.create_primary(
                    None, TPM2B_PUBLIC(publicArea=srk_template(kind)), ESYS_TR.OWNER
                )
                esys.evict_control(ESYS_TR.OWNER, handle, SRK_HANDLE)
                esys.flush_context(handle)
                persistent = esys.tr_from_tpmpublic(SRK_HANDLE)
                public, _name, _qname = esys.read_public(persistent)
                legacy, legacy_public, _data, _digest, _ticket = esys.create_primary(
                    None, TPM2B_PUBLIC(publicArea=legacy_primary_template(kind)), ESYS_TR.OWNER
                )
                esys.flush_context(legacy)
                esys.shutdown(TPM2_SU.CLEAR)  # an orderly shutdown: no dictionary-attack strike
            finally:
                esys.close()
        srk = Srk(public)
        shutdown_swtpm(ctrl)
        proc.wait(timeout=10)
        (target / SRK_FILE).write_bytes(srk.public_bytes())
        (target / CREDENTIALS_KEY_FILE).write_bytes(bytes(legacy_public.marshal()))
        return srk
    except BaseException as exc:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for child in target.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        if isinstance(exc, ShieldwrightError | KeyboardInterrupt):
            raise
        if isinstance(exc, Exception):
            raise VtpmError(f"creating the vTPM failed: {exc}", "check the swtpm installation") from exc
        raise
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(runtime, ignore_errors=True)


def srk_path(directory: str | Path) -> Path:
    return Path(directory) / SRK_FILE


def credentials_key_path(directory: str | Path) -> Path:
    """Where ``vtpm new`` writes the credentials key in ``directory`` (also: beside the SRK file given)."""
    return Path(directory) / CREDENTIALS_KEY_FILE


def find_credentials_key(path: Path | None) -> Srk | None:
    """The credentials key at ``path`` when that file exists (a vTPM made by other tools has none: the
    provisioning then refuses specialization values it cannot seal)."""
    return load_srk(path) if path is not None and path.is_file() else None
