"""Specialization values as systemd credentials: what a provisioned VM applies at boot, readable only there.

Each value becomes a credential that systemd 257 consumes itself (systemd.system-credentials(7)); the
provisioning seals each one to the VM's vTPM (:mod:`app.tpm.credential`) and puts it beside the UKI in
the ESP, where systemd-stub hands it to the initrd and PID 1 keeps it, still encrypted, in
``/run/credentials/@encrypted``:

- ``tmpfiles.extra`` (read by systemd-tmpfiles-setup.service at every boot, ``ImportCredential=tmpfiles.*``):
  the host name (``/etc/hostname``, and the running one through ``/proc/sys/kernel/hostname``), the SSH
  authorized keys of root (``/root/.ssh/authorized_keys``, replaced), the extra files (replaced, with
  their mode) and the cloud-init user-data as a NoCloud seed (below). These lines are applied again at
  every boot, so the values stay as provisioned.
- ``passwd.hashed-password.root`` (systemd-firstboot.service, ``ImportCredential=passwd.*``): root's password
  hash. systemd sets it only on the first boot of an image whose root account is unprovisioned (its
  /etc/shadow field ``!unprovisioned``, /etc/machine-id ``uninitialized``): the image must be prepared for
  first-boot provisioning, as systemd-firstboot(1) describes.
- The user-data: cloud-init's NoCloud datasource reads ``/var/lib/cloud/seed/nocloud/{user-data,meta-data}``
  in its local stage (cloud-init docs, "NoCloud": seed directories). cloud-init-local.service has no
  ordering against systemd-tmpfiles-setup.service, so ``systemd.unit-dropin.cloud-init-local.service``
  (applied by systemd-debug-generator, which decrypts credentials itself; systemd >= 256) orders it after
  the seed is written. The image's cloud-init must look for NoCloud when the seed is not there yet at
  generator time: ``datasource_list: [ NoCloud, None ]`` (ds-identify then uses it without looking).
"""

from __future__ import annotations

import base64
import hashlib

from app.shielding.payload import Payload

TMPFILES_CREDENTIAL = "tmpfiles.extra"
ROOT_PASSWORD_CREDENTIAL = "passwd.hashed-password.root"
#: systemd-debug-generator writes a ``systemd.unit-dropin.UNIT`` credential as UNIT's drop-in
#: ``50-credential.conf`` (systemd.system-credentials(7)).
CLOUD_INIT_ORDER_CREDENTIAL = "systemd.unit-dropin.cloud-init-local.service"
CLOUD_INIT_ORDER = """\
[Unit]
# Shieldwright: the NoCloud seed is written by systemd-tmpfiles-setup.service (credential tmpfiles.extra).
After=systemd-tmpfiles-setup.service
"""
#: Credentials read by a generator, which takes an encrypted credential's file as it is (systemd 257
#: creds-util.c ``read_credential_with_decryption``), where services' ``ImportCredential=`` takes only the
#: base64 text ``systemd-creds encrypt`` writes: these are written in binary form.
BINARY_CREDENTIALS = frozenset({CLOUD_INIT_ORDER_CREDENTIAL})
#: cloud-init's NoCloud seed directory in the VM (cloud-init docs, datasources/nocloud).
NOCLOUD_SEED = "/var/lib/cloud/seed/nocloud"


def instance_id_for(credentials_key: bytes) -> str:
    """The NoCloud instance ID of the VM whose vTPM has ``credentials_key`` (its marshalled public area):
    stable across the VM's boots, different for every vTPM."""
    return "iid-shieldwright-" + hashlib.sha256(credentials_key).hexdigest()[:16]


def nocloud_meta_data(instance_id: str, hostname: str | None) -> bytes:
    """NoCloud's meta-data: the instance ID (cloud-init runs its per-instance modules once per ID) and the
    host name, so that cloud-init's own hostname modules agree with ``/etc/hostname``."""
    text = f"instance-id: {instance_id}\n"
    if hostname is not None:
        text += f"local-hostname: {hostname}\n"
    return text.encode()


def tmpfiles_lines(payload: Payload, instance_id: str) -> str:
    """The ``tmpfiles.extra`` configuration that applies ``payload``'s host name, keys, files and user-data
    (``instance_id``: the NoCloud instance ID). The payload's own rules (:meth:`Payload.check`: a host
    name, one-line keys, file paths without spaces or quotes) make every value one tmpfiles.d field; they
    are checked again here, as a decrypted payload was written by whoever made the shielding data. A '%'
    in a path is escaped (tmpfiles specifiers); contents are base64 (the ``~`` modifier)."""
    payload.check()
    lines = []

    def write(path: str, mode: int, data: bytes) -> None:
        lines.append(
            f"f+~ {path.replace('%', '%%')} {mode:04o} root root - {base64.b64encode(data).decode()}"
        )

    if payload.hostname is not None:
        lines.append(f"f+ /etc/hostname 0644 root root - {payload.hostname}")
        lines.append(f"w /proc/sys/kernel/hostname - - - - {payload.hostname}")
    if payload.ssh_authorized_keys:
        lines.append("d /root/.ssh 0700 root root -")
        write(
            "/root/.ssh/authorized_keys",
            0o600,
            "".join(k.strip() + "\n" for k in payload.ssh_authorized_keys).encode(),
        )
    for f in payload.files:
        write(f.path, f.mode, f.data)
    if payload.user_data is not None:
        lines.append(f"d {NOCLOUD_SEED} 0700 root root -")
        write(f"{NOCLOUD_SEED}/meta-data", 0o600, nocloud_meta_data(instance_id, payload.hostname))
        write(f"{NOCLOUD_SEED}/user-data", 0o600, payload.user_data)
    return "".join(line + "\n" for line in lines)


def specialization_credentials(payload: Payload, instance_id: str) -> dict[str, bytes]:
    """Credential name → plaintext for every value of ``payload`` (none: empty); ``instance_id`` names the
    VM to cloud-init when the payload has user-data."""
    out: dict[str, bytes] = {}
    lines = tmpfiles_lines(payload, instance_id)
    if lines:
        out[TMPFILES_CREDENTIAL] = lines.encode()
    if payload.admin_password_hash is not None:
        out[ROOT_PASSWORD_CREDENTIAL] = payload.admin_password_hash.encode()
    if payload.user_data is not None:
        out[CLOUD_INIT_ORDER_CREDENTIAL] = CLOUD_INIT_ORDER.encode()
    return out
