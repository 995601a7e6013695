"""Issue 16: the specialization values of shielding data reach a real Debian 13 guest, readable only there.

The trixie template of :mod:`tests.boot.trixie_guest` is built to boot its root with systemd (no ``init=``),
shielding data is made for it (an owner, a fabric guardian made with openssl, the template's catalog as
qualifier) holding a host name, an SSH key, root's password hash, a file and cloud-init user-data, and
``shieldwright provision --shielding-data`` makes the VM disk for a vTPM made by ``shieldwright vtpm
new``. The guest then boots on that vTPM with nothing typed: systemd 257's own services decrypt the
credentials with the vTPM (systemd-tmpfiles-setup for tmpfiles.extra, systemd-firstboot for the root
password on this first boot, systemd-debug-generator for cloud-init's ordering), Debian's cloud-init
applies the user-data from the NoCloud seed, and the guest's report unit shows what it got. Nothing of it
is in clear on the disk.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.boot import vm
from app.shielding.guardians import import_guardian, new_owner
from app.shielding.payload import Payload, PayloadFile
from app.shielding.qualifiers import qualifier_for
from app.shielding.shd import create_shielding_data
from app.shielding.specialize import instance_id_for
from app.tpm.srk import srk_from_bytes
from app.tpm.vtpm_dir import CREDENTIALS_KEY_FILE
from tests.boot.trixie_guest import REPORT_DONE, SYSTEMD_CMDLINE, build_template, trixie_guest
from tests.build_helpers import PASSPHRASE
from tests.shielding.keys import openssl_pair

pytestmark = [pytest.mark.vm, pytest.mark.slow]

SNAKEOIL_VARS = vm.Firmware.snakeoil().vars_template
#: TCG, a full systemd boot to multi-user on two shared cores.
BOOT_TIMEOUT = 600.0
HOSTNAME = "shielded-vm-7"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3m9W1lDq0yYtFq3pZ2x8G6lq7m7wqk3mE3b9G1y4zQ owner@example"
FILE_TEXT = b"provisioned by shielding data\n"
CLOUD_TEXT = "written by cloud-init from the shielding data's user-data"
USER_DATA = f"""\
#cloud-config
write_files:
  - path: /etc/shieldwright/from-cloud-init.txt
    content: "{CLOUD_TEXT}"
    permissions: "0600"
""".encode()


def shieldwright(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True)


def _report(console: str) -> dict[str, str]:
    return dict(re.findall(r"SW-SPEC (\w+)=(.*)", console))


def test_the_guest_applies_the_specialization_values_sealed_to_its_vtpm(tmp_path: Path) -> None:
    guest = trixie_guest()
    template = build_template(guest, tmp_path / "template.raw", SYSTEMD_CMDLINE, "Trixie specialized")

    store = tmp_path / "guardians"
    owner = new_owner("owner", store=store)
    key, crt = openssl_pair(tmp_path, "fabric", "rsa:3072")
    fabric = import_guardian("fabric", crt, store=store)
    hashed = subprocess.run(["openssl", "passwd", "-6", "-salt", "shieldwright", "a root password"],
                            check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    payload = Payload(
        bytearray(PASSPHRASE.encode()), hostname=HOSTNAME, admin_password_hash=hashed,
        ssh_authorized_keys=[SSH_KEY], files=[PayloadFile("/etc/shieldwright/hello.txt", 0o640, FILE_TEXT)],
        user_data=USER_DATA,
    )  # fmt: skip
    data = tmp_path / "vm.shd"
    data.write_bytes(create_shielding_data(owner, [fabric], [qualifier_for(template)], "shielded", payload))

    vtpm = tmp_path / "vm-tpm"
    assert shieldwright("vtpm", "new", vtpm).returncode == 0
    disk = tmp_path / "vm.raw"
    done = shieldwright("provision", template, "--srk", vtpm / "srk.tpm2b_public", "--trust",
                        vm.SNAKEOIL_CERT, "--firmware-vars", SNAKEOIL_VARS, "--shielding-data", data,
                        "--guardian-key", key, "--guardian-cert", crt, "-o", disk)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "BOOTX64.EFI.extra.d/tmpfiles.extra.cred" in done.stdout, done.stdout
    assert "BOOTX64.EFI.extra.d/passwd.hashed-password.root.cred" in done.stdout, done.stdout
    assert "BOOTX64.EFI.extra.d/systemd.unit-dropin.cloud-init-local.service.cred" in done.stdout
    raw = disk.read_bytes()
    for secret in (HOSTNAME.encode(), hashed.encode(), FILE_TEXT, SSH_KEY.split()[1].encode(),
                   base64.b64encode(FILE_TEXT), CLOUD_TEXT.encode(),
                   base64.b64encode(USER_DATA)):  # fmt: skip
        assert secret not in raw  # sealed: nothing of the values in clear on the disk
    del raw

    state = tmp_path / "tpm-boot"
    shutil.copytree(vtpm, state)
    result = vm.boot(disk, firmware=vm.Firmware.snakeoil(), tpm_state=state, stop_on=[REPORT_DONE],
                     timeout=BOOT_TIMEOUT)  # fmt: skip
    report = _report(result.console)
    assert result.stopped_by == REPORT_DONE, result.console[-4000:]
    assert report["hostname"] == f"{HOSTNAME} etc={HOSTNAME}", report
    assert base64.b64decode(report["keys"]) == (SSH_KEY + "\n").encode()
    assert report["file"] == f"{base64.b64encode(FILE_TEXT).decode()} mode=640"
    assert report["root"] == hashed
    assert report["failed"].strip() == "", report["failed"]
    # cloud-init found the seed systemd-tmpfiles wrote (after it, by the drop-in: no ordering cycle) and
    # applied the user-data, for the instance of this vTPM.
    assert report["seed"].split() == ["700", "600", "600"], report
    dropin, after = report["order"].split(" after=")
    assert dropin.endswith("/cloud-init-local.service.d/50-credential.conf"), report
    assert "systemd-tmpfiles-setup.service" in after.split(), report
    assert report["cycles"] == "0", report
    result_json = json.loads(base64.b64decode(report["cloudinit"]))["v1"]
    assert "DataSourceNoCloud" in result_json["datasource"] and result_json["errors"] == [], result_json
    assert base64.b64decode(report["cloudfile"]).decode() == CLOUD_TEXT
    credentials_key = srk_from_bytes((vtpm / CREDENTIALS_KEY_FILE).read_bytes())
    assert report["iid"] == instance_id_for(credentials_key.public_bytes())
