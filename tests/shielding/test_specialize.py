"""The specialization credentials' plaintext: tmpfiles.d lines that systemd-tmpfiles itself applies.

The host's ``systemd-tmpfiles --root`` (an independent reader of the format) creates the files in a scratch
root exactly as the guest's systemd-tmpfiles-setup.service will; the guest boot is
tests/boot/test_specialization.py.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from app.shielding.payload import MAX_PAYLOAD, Payload, PayloadError, PayloadFile
from app.shielding.specialize import (
    CLOUD_INIT_ORDER_CREDENTIAL,
    ROOT_PASSWORD_CREDENTIAL,
    TMPFILES_CREDENTIAL,
    instance_id_for,
    specialization_credentials,
)

IID = "iid-shieldwright-0123456789abcdef"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3m9W1lDq0yYtFq3pZ2x8G6lq7m7wqk3mE3b9G1y4zQ owner@example"


def payload(**values: object) -> Payload:
    return Payload(bytearray(b"passphrase"), **values)  # type: ignore[arg-type]


def apply_tmpfiles(p: Payload, root: Path) -> None:
    """systemd-tmpfiles --create of ``p``'s tmpfiles.extra in the scratch ``root``."""
    conf = root.parent / "extra.conf"
    conf.write_bytes(specialization_credentials(p, IID)[TMPFILES_CREDENTIAL])
    as_root = [] if os.geteuid() == 0 else ["unshare", "--map-root-user"]  # it chowns to root
    argv = [*as_root, "systemd-tmpfiles", "--create", f"--root={root}", str(conf)]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_systemd_tmpfiles_writes_the_host_name_keys_and_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("template\n")
    data = bytes(range(256)) + b"\n50% done\n"
    p = payload(
        hostname="vm-7.example",
        ssh_authorized_keys=[KEY],
        files=[PayloadFile("/etc/app/conf%d.bin", 0o640, data), PayloadFile("/opt/run.sh", 0o755, b"x")],
    )
    apply_tmpfiles(p, root)
    assert (root / "etc" / "hostname").read_text().strip() == "vm-7.example"  # replaced
    keys = root / "root" / ".ssh" / "authorized_keys"
    assert keys.read_text() == KEY + "\n" and keys.stat().st_mode & 0o777 == 0o600
    assert (root / "root" / ".ssh").stat().st_mode & 0o777 == 0o700
    conf_file = root / "etc" / "app" / "conf%d.bin"  # '%' kept literally, not a specifier
    assert conf_file.read_bytes() == data and conf_file.stat().st_mode & 0o777 == 0o640
    assert (root / "opt" / "run.sh").stat().st_mode & 0o777 == 0o755


def test_the_user_data_becomes_a_nocloud_seed_that_only_root_reads(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    user_data = b"#cloud-config\nruncmd: [ [ echo, '100% done' ] ]\n"
    apply_tmpfiles(payload(user_data=user_data, hostname="vm-7"), root)
    seed = root / "var" / "lib" / "cloud" / "seed" / "nocloud"
    assert (seed / "user-data").read_bytes() == user_data
    assert (seed / "meta-data").read_text() == f"instance-id: {IID}\nlocal-hostname: vm-7\n"
    modes = [(seed / n).stat().st_mode & 0o777 for n in ("", "user-data", "meta-data")]
    assert modes == [0o700, 0o600, 0o600]
    apply_tmpfiles(payload(user_data=b"#cloud-config\n"), root)  # no host name: none in meta-data
    assert (seed / "meta-data").read_text() == f"instance-id: {IID}\n"


def test_what_each_value_becomes() -> None:
    assert specialization_credentials(payload(), IID) == {}
    creds = specialization_credentials(payload(admin_password_hash="$6$salt$" + "a" * 86), IID)
    assert creds == {ROOT_PASSWORD_CREDENTIAL: ("$6$salt$" + "a" * 86).encode()}
    # The user-data also orders cloud-init's local stage after the seed is written: a drop-in that
    # systemd-debug-generator applies.
    creds = specialization_credentials(payload(user_data=b"#cloud-config\n"), IID)
    assert set(creds) == {TMPFILES_CREDENTIAL, CLOUD_INIT_ORDER_CREDENTIAL}
    dropin = creds[CLOUD_INIT_ORDER_CREDENTIAL].decode()
    assert dropin.startswith("[Unit]\n") and "After=systemd-tmpfiles-setup.service\n" in dropin


def test_the_instance_id_is_the_vtpms_own() -> None:
    one, other = instance_id_for(b"key one"), instance_id_for(b"key two")
    assert one == instance_id_for(b"key one") and one != other
    assert re.fullmatch(r"iid-shieldwright-[0-9a-f]{16}", one)


@pytest.mark.parametrize("path", ["/etc/a b", '/etc/"q"', "/etc/a\\b", "relative", "/etc/../x"])
def test_paths_tmpfiles_cannot_take_as_they_are_are_refused(path: str) -> None:
    with pytest.raises(PayloadError, match="not a usable absolute path"):
        payload(files=[PayloadFile(path, 0o644, b"x")]).check()


def test_the_largest_payload_fits_systemds_credential_bounds() -> None:
    """systemd 257 imports a credential from the ESP only up to 1 MiB, and all of them together up to
    1 MiB (src/core/import-creds.c, CREDENTIAL_SIZE_MAX and CREDENTIALS_TOTAL_SIZE_MAX): the largest
    payload the shielding data takes stays within both once sealed (headers, TPM blob and GCM tag, under
    4 KiB) and in systemd-creds' base64 text."""
    p = payload(user_data=b"", files=[PayloadFile("/srv/blob", 0o600, b"")])
    room = MAX_PAYLOAD - len(p.to_json())
    raw = (room // 8) * 3  # base64 in the JSON: half of the room each for user-data and the file
    p = payload(user_data=b"\xff" * raw, files=[PayloadFile("/srv/blob", 0o600, b"\xfe" * raw)])
    p.check()  # the largest the shielding data carries
    creds = specialization_credentials(p, IID)
    text_sizes = [((len(plain) + 4096 + 2) // 3 * 4) * 80 // 79 for plain in creds.values()]
    assert max(text_sizes) <= 1024 * 1024 and sum(text_sizes) <= 1024 * 1024, text_sizes
