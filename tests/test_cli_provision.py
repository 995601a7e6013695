"""``shieldwright provision``: a VM disk whose LUKS2 root the VM's vTPM unlocks, checked without a guest.

The token's blob is unsealed by tpm2-tools on a swtpm running the vTPM directory ``vtpm new`` made, after
the predicted events of PCR 4, 7 and 11 (from ``pcr predict``) and systemd's ``enter-initrd`` were
extended into it — exactly the state a booting VM reaches when systemd-cryptsetup runs — and the unsealed
secret, base64-encoded as systemd does, opens the container in the real cryptsetup. The provisioning
passphrase no longer does. (The guest that unlocks itself is tests/boot/test_tpm_unlock.py.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.boot import vm
from app.tpm.token import TOKEN_TYPE
from tests.build_helpers import PASSPHRASE, build, extract_partition, make_keys, make_recipe, sha256_file
from tests.luks.cryptsetup import cryptsetup, luks_dump, test_passphrase
from tests.shielding.keys import openssl_pair
from tests.tpm.swtpm_tools import ToolsTpm, tools_tpm

pytestmark = pytest.mark.slow

SNAKEOIL_VARS = vm.Firmware.snakeoil().vars_template
ROOT = 3  # the demo image's root partition, the one the template encrypts


def shieldwright(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def template(demo_image: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], Path]:
    """A template (snakeoil-signed UKI as \\EFI\\BOOT\\BOOTX64.EFI, a recovery key), its signer
    certificates, and the provisioning passphrase file."""
    work = tmp_path_factory.mktemp("provision")
    keys = make_keys(work)
    recipe = make_recipe(demo_image, work / "template.raw", keys, install_removable=True,
                         recovery_key_file=work / "recovery.txt")  # fmt: skip
    result = build(recipe, keys)
    passphrase = work / "passphrase"
    passphrase.write_text(PASSPHRASE)
    return result.output, [keys.uefi_cert, keys.catalog.cert_path], passphrase


def _provision(
    template: tuple[Path, list[Path], Path], srk: Path, out: Path, *extra: object
) -> subprocess.CompletedProcess[str]:
    image, certs, passphrase = template
    trust = [a for c in certs for a in ("--trust", c)]
    return shieldwright("provision", image, "--srk", srk, "--passphrase-file", passphrase, *trust,
                        "--firmware-vars", SNAKEOIL_VARS, "-o", out, *extra)  # fmt: skip


def _token(dump: str) -> dict[str, object]:
    doc = json.loads(dump)
    tokens = [t for t in doc["tokens"].values() if t["type"] == TOKEN_TYPE]
    assert len(tokens) == 1
    return tokens[0]


def _unseal(tpm: ToolsTpm, work: Path, token: dict[str, object]) -> bytes | None:
    """tpm2-tools import + load + unseal of the token's blob under 0x81000001 with a PolicyPCR session."""
    blob = base64.b64decode(str(token["tpm2-blob"]))
    parts, at = [], 0
    for _ in range(3):  # TPM2B_PRIVATE ‖ TPM2B_PUBLIC ‖ TPM2B_ENCRYPTED_SECRET
        size = int.from_bytes(blob[at : at + 2], "big")
        parts.append(blob[at : at + 2 + size])
        at += 2 + size
    assert at == len(blob)
    for name, data in zip(("dup.priv", "dup.pub", "dup.seed"), parts, strict=True):
        (work / name).write_bytes(data)
    tpm.tool("tpm2_import", "-C", "0x81000001", "-u", work / "dup.pub", "-i", work / "dup.priv",
             "-s", work / "dup.seed", "-r", work / "imported.priv")  # fmt: skip
    tpm.tool("tpm2_load", "-C", "0x81000001", "-u", work / "dup.pub", "-r", work / "imported.priv",
             "-c", work / "sealed.ctx")  # fmt: skip
    session = work / "session.ctx"
    tpm.tool("tpm2_startauthsession", "--policy-session", "-S", session)
    selection = f"{token['tpm2-pcr-bank']}:" + ",".join(str(n) for n in token["tpm2-pcrs"])  # type: ignore[attr-defined]
    tpm.tool("tpm2_policypcr", "-S", session, "-l", selection)
    auth = f"session:{session}"
    done = tpm.tool("tpm2_unseal", "-c", work / "sealed.ctx", "-p", auth, "-o", work / "s.bin", check=False)
    tpm.tool("tpm2_flushcontext", session)
    tpm.tool("tpm2_flushcontext", "-t")
    return (work / "s.bin").read_bytes() if done.returncode == 0 else None


def test_the_vtpm_unseals_the_key_that_opens_the_root_only_in_the_predicted_state(
    template: tuple[Path, list[Path], Path], tmp_path: Path
) -> None:
    image = template[0]
    before = sha256_file(image)
    vtpm = tmp_path / "vm1-tpm"
    assert shieldwright("vtpm", "new", vtpm).returncode == 0
    out = tmp_path / "vm1.raw"
    done = _provision(template, vtpm / "srk.tpm2b_public", out, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["containers"][0]["partition"] == ROOT and result["containers"][0]["removed_keyslot"] == 0
    assert sha256_file(image) == before  # the template is never written

    part = extract_partition(out, ROOT, tmp_path / "root.luks")
    dump = luks_dump(part)  # the host's cryptsetup reads the header, token included
    slot = result["containers"][0]["tpm_keyslot"]
    assert "0: systemd-tpm2" in dump and "tpm2-hash-pcrs:   4+7+11" in dump and f"  {slot}: luks2" in dump
    assert "  0: luks2" not in dump  # the provisioning passphrase's keyslot is gone
    token = _token(cryptsetup("luksDump", "--dump-json-metadata", part).stdout)
    assert token["keyslots"] == [str(slot)] and token["tpm2-pcrs"] == [4, 7, 11]
    assert token["tpm2-pcr-bank"] == "sha256" and token["tpm2-primary-alg"] == "ecc"
    assert token["tpm2-policy-hash"] == result["policy_hash"]
    assert test_passphrase(part, PASSPHRASE, tmp_path) != 0  # the well-known passphrase no longer opens it
    recovery = (template[0].parent / "recovery.txt").read_text().strip()
    assert test_passphrase(part, recovery, tmp_path) == 0  # the recovery key still does

    predicted = json.loads(
        shieldwright("pcr", "predict", image, "--firmware-vars", SNAKEOIL_VARS, "--json").stdout
    )
    with tools_tpm(vtpm) as tpm:
        assert _unseal(tpm, tmp_path, token) is None  # a fresh vTPM: nothing measured yet
        for event in predicted["events"]:
            tpm.tool("tpm2_pcrextend", f"{event['pcr']}:sha256={event['digest']}")
        assert _unseal(tpm, tmp_path, token) is None  # at kernel start: systemd has not entered the initrd
        tpm.tool("tpm2_pcrextend", f"11:sha256={hashlib.sha256(b'enter-initrd').hexdigest()}")
        secret = _unseal(tpm, tmp_path, token)
        assert secret is not None
        assert test_passphrase(part, base64.b64encode(secret), tmp_path) == 0
        tpm.tool("tpm2_pcrextend", f"11:sha256={hashlib.sha256(b'leave-initrd').hexdigest()}")
        assert _unseal(tpm, tmp_path, token) is None  # too late: the running root cannot unseal it


def test_keep_passphrase_and_other_formats(template: tuple[Path, list[Path], Path], tmp_path: Path) -> None:
    vtpm = tmp_path / "tpm"
    assert shieldwright("vtpm", "new", vtpm).returncode == 0
    out = tmp_path / "vm.vhdx"
    done = _provision(template, vtpm / "srk.tpm2b_public", out, "--keep-passphrase", "--format", "vhdx")
    assert done.returncode == 0, done.stderr
    assert subprocess.run(["qemu-img", "check", "-f", "vhdx", str(out)], capture_output=True).returncode == 0
    raw = tmp_path / "vm.raw"
    subprocess.run(["qemu-img", "convert", "-f", "vhdx", "-O", "raw", str(out), str(raw)], check=True)
    part = extract_partition(raw, ROOT, tmp_path / "root.luks")
    assert test_passphrase(part, PASSPHRASE, tmp_path) == 0
    shown = shieldwright("luks", "dump", out, "--partition", ROOT)
    assert "PCRs 4+7+11 (sha256)" in shown.stdout and "SRK 0x81000001 (ecc)" in shown.stdout


def test_a_modified_or_foreign_template_is_refused_and_nothing_is_written(
    template: tuple[Path, list[Path], Path], tmp_path: Path
) -> None:
    """Done means 4: one flipped byte in the protected partition, or a signer nobody trusts."""
    vtpm = tmp_path / "tpm"
    assert shieldwright("vtpm", "new", vtpm).returncode == 0
    srk = vtpm / "srk.tpm2b_public"
    flipped = tmp_path / "flipped.raw"
    subprocess.run(["cp", "--sparse=always", str(template[0]), str(flipped)], check=True)
    first = int(subprocess.run(["sgdisk", "-i", str(ROOT), str(flipped)], capture_output=True, text=True)
                .stdout.split("First sector: ")[1].split()[0])  # fmt: skip
    with open(flipped, "r+b") as f:
        at = first * 512 + 40 * 1024 * 1024  # inside the encrypted data, past the LUKS2 header
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 1]))
    out = tmp_path / "vm.raw"
    bad = _provision((flipped, template[1], template[2]), srk, out)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "failed verification" in bad.stderr and "catalog" in bad.stderr.lower()
    assert not out.exists() and not list(tmp_path.glob(".vm.raw*"))

    stranger = tmp_path / "stranger.pem"
    key = tmp_path / "k.pem"
    argv = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", stranger, "-subj", "/CN=stranger", "-days", "1"]  # fmt: skip
    subprocess.run(list(map(str, argv)), check=True, capture_output=True)
    foreign = _provision((template[0], [stranger], template[2]), srk, out)
    assert foreign.returncode == 2 and "failed verification" in foreign.stderr, foreign.stderr
    assert not out.exists()


def test_refusals_are_one_line(template: tuple[Path, list[Path], Path], tmp_path: Path) -> None:
    vtpm = tmp_path / "tpm"
    assert shieldwright("vtpm", "new", vtpm).returncode == 0
    srk = vtpm / "srk.tpm2b_public"
    out = tmp_path / "vm.raw"
    for extra, words in (
        (("--pcrs", "7,15"), "PCR 15 cannot be sealed to"),
        (("--pcrs", "7,x"), "not a list of PCRs"),
    ):
        done = _provision(template, srk, out, *extra)
        assert done.returncode == 2 and words in done.stderr and done.stderr.count("\n") == 1, done.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase")
    done = _provision((template[0], template[1], wrong), srk, out)
    assert done.returncode == 2 and "does not open partition 3" in done.stderr, done.stderr
    no_trust = shieldwright("provision", template[0], "--srk", srk, "--passphrase-file", template[2],
                            "--firmware-vars", SNAKEOIL_VARS, "-o", out)  # fmt: skip
    assert no_trust.returncode == 3 and "--trust" in no_trust.stderr
    not_srk = tmp_path / "not-srk"
    not_srk.write_bytes(b"\x00\x10" + bytes(16))
    done = _provision(template, not_srk, out)
    assert done.returncode == 2 and "TPM2B_PUBLIC" in done.stderr, done.stderr
    out.write_bytes(b"keep me")
    done = _provision(template, srk, out)
    assert done.returncode == 2 and "already exists" in done.stderr and out.read_bytes() == b"keep me"


def test_the_passphrase_can_come_from_shielding_data_made_for_this_template(
    template: tuple[Path, list[Path], Path], tmp_path: Path
) -> None:
    """``--shielding-data`` (issue 16): opened with a fabric guardian's key pair, checked to apply to the
    template's catalog first; data for another version of the template is refused and nothing is written."""
    from app.shielding.guardians import import_guardian, new_owner
    from app.shielding.payload import Payload
    from app.shielding.qualifiers import qualifier_for
    from app.shielding.shd import create_shielding_data

    image = template[0]
    store = tmp_path / "guardians"
    owner = new_owner("owner", store=store)
    key, crt = openssl_pair(tmp_path, "fabric", "rsa:3072")
    fabric = import_guardian("fabric", crt, store=store)
    exact = qualifier_for(image)
    good, wrong = tmp_path / "good.shd", tmp_path / "wrong.shd"
    payload = Payload(bytearray(PASSPHRASE.encode()), hostname="vm1")
    good.write_bytes(create_shielding_data(owner, [fabric], [exact], "shielded", payload))
    other = type(exact)(exact.signer_sha256, exact.template_name, "9.9.9.9", "equals")
    wrong.write_bytes(create_shielding_data(owner, [fabric], [other], "shielded", payload))
    vtpm = tmp_path / "tpm"
    assert shieldwright("vtpm", "new", vtpm).returncode == 0
    certs = [a for c in template[1] for a in ("--trust", c)]
    base = ["provision", image, "--srk", vtpm / "srk.tpm2b_public", *certs, "--firmware-vars",
            SNAKEOIL_VARS, "--guardian-key", key, "--guardian-cert", crt]  # fmt: skip
    refused = shieldwright(*base, "--shielding-data", wrong, "-o", tmp_path / "no.raw")
    assert refused.returncode == 2 and "does not apply" in refused.stderr and "9.9.9.9" in refused.stderr
    assert not (tmp_path / "no.raw").exists()
    out = tmp_path / "vm.raw"
    done = shieldwright(*base, "--shielding-data", good, "-o", out)
    assert done.returncode == 0, done.stderr
    part = extract_partition(out, ROOT, tmp_path / "root.luks")
    assert test_passphrase(part, PASSPHRASE, tmp_path) != 0  # provisioned: the passphrase slot is gone
    assert "0: systemd-tpm2" in luks_dump(part)
    # The host name went into the ESP as a systemd credential beside each UKI (mtools reads the FAT), in
    # systemd-creds' base64 text form, sealed to the TPM (CRED_AES256_GCM_BY_TPM2_HMAC), not in clear.
    written = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("Credential ")]
    assert written and all(p.endswith(".efi.extra.d/tmpfiles.extra.cred") for p in map(str.lower, written))
    esp = extract_partition(out, 1, tmp_path / "esp.img")
    for path in written:
        text = subprocess.run(["mtype", "-i", str(esp), f"::{path}"], capture_output=True, check=True,
                              env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}).stdout  # fmt: skip
        cred = base64.b64decode(text)
        assert cred[:16] == bytes.fromhex("0c7cc07b117645919c4b0bea08bc20fe") and b"vm1" not in cred

    # The recipient's key encrypted with a passphrase (openssl): asked for by flag, never from argv.
    locked, secret = tmp_path / "fabric-locked.key", tmp_path / "key-passphrase"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:fabric key pw", "-out",
                    str(locked)], check=True, capture_output=True)  # fmt: skip
    secret.write_text("fabric key pw\n")
    argv = [a if a != key else locked for a in base]
    refused = shieldwright(*argv, "--shielding-data", good, "-o", tmp_path / "no2.raw")
    assert refused.returncode == 2 and "--guardian-key-passphrase-file" in refused.stderr, refused.stderr
    assert not (tmp_path / "no2.raw").exists()
    opened = shieldwright(*argv, "--guardian-key-passphrase-file", secret, "--shielding-data", good, "-o",
                          tmp_path / "vm2.raw")  # fmt: skip
    assert opened.returncode == 0, opened.stderr
