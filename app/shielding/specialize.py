"""Specialization values as systemd credentials: what a provisioned VM applies at boot, readable only there.

Each value becomes a credential that systemd 257 consumes itself (systemd.system-credentials(7)); the
provisioning seals each one to the VM's vTPM (:mod:`app.tpm.credential`) and puts it beside the UKI in
the ESP, where systemd-stub hands it to the initrd and PID 1 keeps it, still encrypted, in
``/run/credentials/@encrypted``:

- ``tmpfiles.extra`` (read by systemd-tmpfiles-setup.service at every boot, ``ImportCredential=tmpfiles.*``):
  the host name (``/etc/hostname``, and the running one through ``/proc/sys/kernel/hostname``), the SSH
  authorized keys of root (``/root/.ssh/authorized_keys``, replaced) and the extra files (replaced, with
  their mode). These lines are applied again at every boot, so the values stay as provisioned.
- ``passwd.hashed-password.root`` (systemd-firstboot.service, ``ImportCredential=passwd.*``): root's password
  hash. systemd sets it only on the first boot of an image whose root account is unprovisioned (its
  /etc/shadow field ``!unprovisioned``, /etc/machine-id ``uninitialized``): the image must be prepared for
  first-boot provisioning, as systemd-firstboot(1) describes.

The cloud-init user-data is not delivered: no guest consumer of it has been shown to work this way.
"""

from __future__ import annotations

import base64

from app.shielding.payload import Payload

TMPFILES_CREDENTIAL = "tmpfiles.extra"
ROOT_PASSWORD_CREDENTIAL = "passwd.hashed-password.root"


def tmpfiles_lines(payload: Payload) -> str:
    """The ``tmpfiles.extra`` configuration that applies ``payload``'s host name, keys and files. The
    payload's own rules (:meth:`Payload.check`: a host name, one-line keys, file paths without spaces or
    quotes) make every value one tmpfiles.d field; they are checked again here, as a decrypted payload was
    written by whoever made the shielding data. A '%' in a path is escaped (tmpfiles specifiers)."""
    payload.check()
    lines = []
    if payload.hostname is not None:
        lines.append(f"f+ /etc/hostname 0644 root root - {payload.hostname}")
        lines.append(f"w /proc/sys/kernel/hostname - - - - {payload.hostname}")
    if payload.ssh_authorized_keys:
        keys = "".join(k.strip() + "\n" for k in payload.ssh_authorized_keys).encode()
        lines.append("d /root/.ssh 0700 root root -")
        lines.append(f"f+~ /root/.ssh/authorized_keys 0600 root root - {base64.b64encode(keys).decode()}")
    for f in payload.files:
        data = base64.b64encode(f.data).decode()
        lines.append(f"f+~ {f.path.replace('%', '%%')} {f.mode:04o} root root - {data}")
    return "".join(line + "\n" for line in lines)


def specialization_credentials(payload: Payload) -> dict[str, bytes]:
    """Credential name → plaintext for every value of ``payload`` a VM can apply (none: empty)."""
    out: dict[str, bytes] = {}
    lines = tmpfiles_lines(payload)
    if lines:
        out[TMPFILES_CREDENTIAL] = lines.encode()
    if payload.admin_password_hash is not None:
        out[ROOT_PASSWORD_CREDENTIAL] = payload.admin_password_hash.encode()
    return out


def undelivered_items(payload: Payload) -> list[str]:
    """The payload's items a provisioning does not deliver (shown to the user, never silently dropped)."""
    return ["user_data"] if payload.user_data is not None else []
