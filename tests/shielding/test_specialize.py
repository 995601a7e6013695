"""The specialization credentials' plaintext: tmpfiles.d lines that systemd-tmpfiles itself applies.

The host's ``systemd-tmpfiles --root`` (an independent reader of the format) creates the files in a scratch
root exactly as the guest's systemd-tmpfiles-setup.service will; the guest boot is
tests/boot/test_specialization.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from app.shielding.payload import Payload, PayloadError, PayloadFile
from app.shielding.specialize import (
    ROOT_PASSWORD_CREDENTIAL,
    TMPFILES_CREDENTIAL,
    specialization_credentials,
    undelivered_items,
)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3m9W1lDq0yYtFq3pZ2x8G6lq7m7wqk3mE3b9G1y4zQ owner@example"


def payload(**values: object) -> Payload:
    return Payload(bytearray(b"passphrase"), **values)  # type: ignore[arg-type]


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
    conf = tmp_path / "extra.conf"
    conf.write_bytes(specialization_credentials(p)[TMPFILES_CREDENTIAL])
    as_root = [] if os.geteuid() == 0 else ["unshare", "--map-root-user"]  # it chowns to root
    argv = [*as_root, "systemd-tmpfiles", "--create", f"--root={root}", str(conf)]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (root / "etc" / "hostname").read_text().strip() == "vm-7.example"  # replaced
    keys = root / "root" / ".ssh" / "authorized_keys"
    assert keys.read_text() == KEY + "\n" and keys.stat().st_mode & 0o777 == 0o600
    assert (root / "root" / ".ssh").stat().st_mode & 0o777 == 0o700
    conf_file = root / "etc" / "app" / "conf%d.bin"  # '%' kept literally, not a specifier
    assert conf_file.read_bytes() == data and conf_file.stat().st_mode & 0o777 == 0o640
    assert (root / "opt" / "run.sh").stat().st_mode & 0o777 == 0o755


def test_what_each_value_becomes() -> None:
    assert specialization_credentials(payload()) == {}
    creds = specialization_credentials(payload(admin_password_hash="$6$salt$" + "a" * 86))
    assert creds == {ROOT_PASSWORD_CREDENTIAL: ("$6$salt$" + "a" * 86).encode()}
    assert undelivered_items(payload(user_data=b"#cloud-config\n")) == ["user_data"]
    assert undelivered_items(payload(hostname="h")) == []


@pytest.mark.parametrize("path", ["/etc/a b", '/etc/"q"', "/etc/a\\b", "relative", "/etc/../x"])
def test_paths_tmpfiles_cannot_take_as_they_are_are_refused(path: str) -> None:
    with pytest.raises(PayloadError, match="not a usable absolute path"):
        payload(files=[PayloadFile(path, 0o644, b"x")]).check()
