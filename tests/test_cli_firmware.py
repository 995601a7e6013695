"""``shieldwright firmware vars`` / ``show`` end to end through the real CLI, graded by virt-fw-vars (run as a
program) and by one real Secure Boot boot.

The boot (marked ``vm``): OVMF_CODE_4M.secboot.fd with the store ``firmware vars --microsoft --add-db``
wrote (Microsoft's keys + a fresh test certificate in db) boots the probe UKI signed by that certificate
and refuses the same UKI signed by a key it has never seen — so our db entry is what the firmware trusts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.boot import vm
from app.measure.events import EFI_IMAGE_SECURITY_DATABASE
from app.measure.siglist import SHIELDWRIGHT_OWNER_GUID
from app.measure.varstore import read_varstore, secure_boot_state
from app.signing.keys import generate_key, generate_self_signed
from app.signing.signer import KeySigner
from tests.conftest import run
from tests.measure.test_varstore import STORE_END, STORES, virt_json, virt_tool

ROOT = Path(__file__).resolve().parents[1]
OWNER = uuid.UUID("3a1f8c2e-5b7d-4e90-8c41-6d2b9f0e7a53")


def shieldwright(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", "firmware", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)  # fmt: skip


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shieldwright: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _no_time(variables: dict[tuple[str, uuid.UUID], dict[str, object]]) -> dict[object, object]:
    return {k: {f: x for f, x in v.items() if f != "time"} for k, v in variables.items()}


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clifw")


@pytest.fixture(scope="module")
def signer() -> KeySigner:
    key = generate_key("rsa2048")
    return KeySigner(key, generate_self_signed(key, common_name="Shieldwright firmware vars test db"))


@pytest.fixture(scope="module")
def cert_pem(d: Path, signer: KeySigner) -> Path:
    path = d / "db.pem"
    path.write_bytes(signer.certificate.public_bytes(Encoding.PEM))
    return path


def test_vars_add_db_equals_virt_fw_vars(d: Path, cert_pem: Path) -> None:
    ours = d / "ours.fd"
    proc = shieldwright("vars", "--microsoft", "--add-db", cert_pem, "--owner", OWNER, "-o", ours)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        str(ours),
        f"added to db: CN=Shieldwright firmware vars test db (owner {OWNER})",
        "Secure Boot: on",
    ]
    theirs = d / "theirs.fd"
    run(
        virt_tool("virt-fw-vars"),
        "--input",
        STORES["microsoft"],
        "--add-db",
        str(OWNER),
        cert_pem,
        "--output",
        theirs,
    )
    assert _no_time(virt_json(ours, d)) == _no_time(virt_json(theirs, d))
    # virt-fw-vars reads our db as we wrote it: the two Microsoft certificates and ours
    db = bytes.fromhex(str(virt_json(ours, d)[("db", EFI_IMAGE_SECURITY_DATABASE)]["data"]))
    assert db == secure_boot_state(read_varstore(ours)).db
    assert ours.stat().st_size == STORES["microsoft"].stat().st_size
    assert ours.read_bytes()[STORE_END:] == STORES["microsoft"].read_bytes()[STORE_END:]


def test_vars_default_owner_and_kek(d: Path, cert_pem: Path) -> None:
    out = d / "empty-kek.fd"
    proc = shieldwright("vars", "--empty", "--add-kek", cert_pem, "--add-db", cert_pem, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "Secure Boot: off (no PK: the firmware starts in setup mode)" in proc.stdout
    state = secure_boot_state(read_varstore(out))
    assert not state.secure_boot
    assert [e.owner for e in state.kek_entries()] == [SHIELDWRIGHT_OWNER_GUID]
    assert [e.owner for e in state.db_entries()] == [SHIELDWRIGHT_OWNER_GUID]


def test_vars_never_overwrites_without_force(d: Path, cert_pem: Path) -> None:
    out = d / "existing.fd"
    out.write_bytes(b"keep me")
    proc = shieldwright("vars", "--snakeoil", "-o", out)
    assert_one_line_error(proc, "already exists", "--force")
    assert out.read_bytes() == b"keep me"
    proc = shieldwright("vars", "--snakeoil", "--add-db", cert_pem, "-o", out, "--force")
    assert proc.returncode == 0, proc.stderr
    assert len(secure_boot_state(read_varstore(out)).db_entries()) == 2


def test_vars_refuses_the_installed_store_and_bad_inputs(d: Path, cert_pem: Path) -> None:
    link = d / "link-to-ms.fd"
    link.symlink_to(STORES["microsoft"])
    before = STORES["microsoft"].read_bytes()
    assert_one_line_error(shieldwright("vars", "--microsoft", "-o", link, "--force"), "installed OVMF store")
    assert STORES["microsoft"].read_bytes() == before
    assert_one_line_error(
        shieldwright("vars", "--microsoft", "--owner", "nope", "-o", d / "x.fd"), "not a GUID"
    )
    assert_one_line_error(
        shieldwright("vars", "--microsoft", "--add-db", d / "missing.pem", "-o", d / "x.fd")
    )
    key = d / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert_one_line_error(
        shieldwright("vars", "--microsoft", "--add-db", key, "-o", d / "x.fd"), "private key"
    )
    assert not (d / "x.fd").exists()
    proc = shieldwright("vars", "-o", d / "x.fd")
    assert (
        proc.returncode == 2
        and "one of the arguments --microsoft --snakeoil --empty is required" in proc.stderr
    )


def test_show_microsoft_store(tmp_path: Path) -> None:
    proc = shieldwright("show", STORES["microsoft"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "OVMF variable store, 31 variables" in out and "Secure Boot: on" in out
    assert "CN=Microsoft Corporation UEFI CA 2011" in out and "CN=Microsoft Corporation KEK CA 2011" in out
    assert "dbx: 76 bytes\n  sha256  1 entry" in out
    doc = json.loads(shieldwright("show", "--json", STORES["microsoft"]).stdout)
    theirs = virt_json(STORES["microsoft"], tmp_path)
    assert {(v["name"], uuid.UUID(v["guid"])) for v in doc["variables"]} == set(theirs)
    assert all(
        v["size"] * 2 == len(str(theirs[(v["name"], uuid.UUID(v["guid"]))]["data"])) for v in doc["variables"]
    )
    assert doc["secure_boot"] is True and doc["kind"] == "varstore"
    db = doc["databases"]["db"]
    assert [c["owner"] for c in db["certificates"]] == ["77fa9abd-0359-4d32-bd60-28f4e78f784b"] * 2
    assert doc["databases"]["dbx"]["hashes"] == {"sha256": 1}
    empty = json.loads(shieldwright("show", "--json", STORES["empty"]).stdout)
    assert empty["variables"] == [] and empty["secure_boot"] is False
    assert all(not v["present"] for v in empty["databases"].values())


def test_show_escapes_subjects(d: Path) -> None:
    """A certificate subject is the input's text: a terminal escape in it is printed escaped."""
    key = generate_key("p256")
    evil = d / "evil.pem"
    evil.write_bytes(generate_self_signed(key, common_name="evil\x1b[2Jname").public_bytes(Encoding.PEM))
    out = d / "evil.fd"
    proc = shieldwright("vars", "--snakeoil", "--add-db", evil, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "evil\\x1b[2Jname" in proc.stdout
    shown = shieldwright("show", out)
    assert "\x1b" not in shown.stdout and "evil\\x1b[2Jname" in shown.stdout


def test_show_cert_dir(d: Path, cert_pem: Path) -> None:
    keys = d / "keys"
    keys.mkdir()
    (keys / "PK.pem").write_bytes(cert_pem.read_bytes())
    (keys / "db.pem").write_bytes(cert_pem.read_bytes())
    proc = shieldwright("show", keys)
    assert proc.returncode == 0, proc.stderr
    assert f"{keys}: certificate directory" in proc.stdout and "Secure Boot: on" in proc.stdout
    assert "KEK: absent" in proc.stdout and f"(owner {SHIELDWRIGHT_OWNER_GUID})" in proc.stdout
    doc = json.loads(shieldwright("show", "--json", keys).stdout)
    assert doc["kind"] == "certdir" and "variables" not in doc
    (keys / "dbx.txt").write_text("x")
    assert_one_line_error(shieldwright("show", keys), "unexpected 'dbx.txt'")
    assert_one_line_error(
        shieldwright("show", vm.OVMF_DIR / "OVMF_CODE_4M.secboot.fd"), "not a variable store"
    )


def test_help_documents_owner_and_layout_and_stays_light() -> None:
    from app.commands import firmware

    assert str(SHIELDWRIGHT_OWNER_GUID) == firmware.DEFAULT_OWNER
    assert tuple(vm.VARS_TEMPLATES) == firmware.BASE_NAMES
    assert str(SHIELDWRIGHT_OWNER_GUID) in shieldwright("vars", "--help").stdout
    shown = shieldwright("show", "--help").stdout
    assert "owner.txt" in shown and ".esl" in shown and ".auth" in shown
    code = (
        "import sys, contextlib, io\n"
        "from app.cli import build_parser\n"
        "for action in ('vars', 'show'):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try: build_parser().parse_args(['firmware', action, '--help'])\n"
        "        except SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('cryptography', 'app.measure', 'app.boot'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


# --- the boot -------------------------------------------------------------------------------------------

#: A boot takes 11-15 s under TCG here; a refusal 7-12 s (tests/boot/test_secure_boot.py).
BOOT_TIMEOUT = 120.0
REFUSAL_TIMEOUT = 60.0


@pytest.mark.slow
@pytest.mark.vm
def test_written_store_boots_our_signed_uki_and_refuses_another(d: Path, signer: KeySigner) -> None:
    from platformdirs import user_cache_path

    from app.boot.uki import UkiInputs, build_uki
    from app.template.demo import extract_kernel, fetch_kernel_deb
    from tests.boot.qemu_harness import BOOT_MARKER, PROBE_CMDLINE, build_probe_initrd, esp_with_uki

    cert = d / "boot-db.pem"
    cert.write_bytes(signer.certificate.public_bytes(Encoding.PEM))
    store = d / "boot-vars.fd"
    proc = shieldwright("vars", "--microsoft", "--add-db", cert, "-o", store)
    assert proc.returncode == 0, proc.stderr
    firmware = vm.Firmware(
        vm.OVMF_DIR / "OVMF_CODE_4M.secboot.fd", store, True, "OVMF Secure Boot, Microsoft keys + test db"
    )
    kernel = extract_kernel(fetch_kernel_deb(user_cache_path("shieldwright") / "debs"), d / "deb")
    inputs = UkiInputs(
        linux=kernel.vmlinuz.read_bytes(),
        initrds=[build_probe_initrd()],
        cmdline=PROBE_CMDLINE,
        os_release='ID=shieldwright-probe\nNAME="Shieldwright boot probe"\n',
    )
    other_key = generate_key("rsa2048")
    other = KeySigner(other_key, generate_self_signed(other_key, common_name="Shieldwright key not in db"))
    assert x509.load_pem_x509_certificate(cert.read_bytes()) == signer.certificate

    good = vm.boot(esp_with_uki(d / "esp-good.img", build_uki(inputs, signer=signer)), firmware=firmware,
                   timeout=BOOT_TIMEOUT)  # fmt: skip
    where = f"ended={good.ended} after {good.elapsed} s, seen={good.seen}\n{good.tail()}"
    assert BOOT_MARKER in good.console, where
    assert not good.secure_boot_refused, where
    assert "Secure Boot is enabled" in good.console, where

    bad = vm.boot(esp_with_uki(d / "esp-bad.img", build_uki(inputs, signer=other)), firmware=firmware,
                  timeout=REFUSAL_TIMEOUT)  # fmt: skip
    where = f"ended={bad.ended} after {bad.elapsed} s, seen={bad.seen}\n{bad.tail()}"
    assert BOOT_MARKER not in bad.console and vm.KERNEL_BANNER not in bad.console, where
    assert bad.secure_boot_refused, where
    assert any("Access Denied" in line for line in bad.refusals), where
