"""``shieldwright shield``: guardians, create, show, test, open — as a user runs them.

The guardian store is the user's XDG data directory, pointed at a temporary one (``XDG_DATA_HOME``).
The templates are real signed catalogs (``.vsc``) and one built template image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.commands import shield as shield_cli
from app.shielding.qualifiers import RULES
from app.shielding.shd import POLICIES
from app.signing.keys import generate_key, generate_self_signed
from app.signing.signer import KeySigner
from tests.shielding.test_shd import PASSWORD_HASH, SSH_KEY, signed_catalog

PASSPHRASE = "the template's provisioning passphrase 77aa"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg"), "XDG_STATE_HOME": str(tmp_path / "state")}


def sw(env: dict[str, str], *args: object) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "app", "shield", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, env=env)


@pytest.fixture
def made(tmp_path: Path, env: dict[str, str]) -> dict[str, Path]:
    """An owner, an imported fabric guardian, catalogs 1.2.3.3/4/5, and a .shd for >= 1.2.3.4."""
    assert sw(env, "guardian", "new", "alice").returncode == 0
    key, crt = tmp_path / "fabric.key", tmp_path / "fabric.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-keyout", str(key), "-out",
                    str(crt), "-subj", "/CN=fabric", "-days", "30"],
                   check=True, capture_output=True)  # fmt: skip
    assert sw(env, "guardian", "import", crt, "--name", "fabric").returncode == 0
    k = generate_key("p256")
    signer = KeySigner(k, generate_self_signed(k, common_name="Template signer"))  # type: ignore[arg-type]
    files = {}
    for version in ("1.2.3.3", "1.2.3.4", "1.2.3.5"):
        files[version] = tmp_path / f"web-{version}.vsc"
        files[version].write_bytes(signed_catalog("Web server", version, signer))
    (tmp_path / "pass").write_text(PASSPHRASE)
    (tmp_path / "hash").write_text(PASSWORD_HASH + "\n")
    (tmp_path / "id.pub").write_text(SSH_KEY + "\n")
    (tmp_path / "motd").write_text("hello\n")
    shd = tmp_path / "data.shd"
    done = sw(env, "create", "--owner", "alice", "--guardian", "fabric", "--qualifier",
              f"{files['1.2.3.4']}:greater-or-equal", "--passphrase-file", tmp_path / "pass",
              "--hostname", "web-01",
              "--password-hash-file", tmp_path / "hash", "--ssh-key", tmp_path / "id.pub",
              "--file", f"{tmp_path / 'motd'}:/etc/motd:0640", "-o", shd)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {"shd": shd, "key": key, "crt": crt, **{f"v{v}": p for v, p in files.items()}}


def test_names_agree_with_the_engine() -> None:
    assert shield_cli.RULE_NAMES == RULES and shield_cli.POLICY_NAMES == POLICIES


def test_test_exit_codes_follow_the_rule(made: dict[str, Path], env: dict[str, str]) -> None:
    assert sw(env, "test", made["shd"], made["v1.2.3.4"]).returncode == 0
    assert sw(env, "test", made["shd"], made["v1.2.3.5"]).returncode == 0
    lower = sw(env, "test", made["shd"], made["v1.2.3.3"])
    assert lower.returncode == 1 and "NOT applicable" in lower.stdout and "1.2.3.3" in lower.stdout


def test_show_open_and_secrecy(made: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    shown = sw(env, "show", made["shd"], "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["signature"]["valid"] and doc["header"]["policy"] == "shielded"
    assert [g["name"] for g in doc["header"]["guardians"]] == ["fabric"]
    text = sw(env, "show", made["shd"]).stdout
    everything = shown.stdout + text + made["shd"].read_bytes().decode("latin-1")
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "state").rglob("*") if p.is_file())
    for secret in (PASSPHRASE, PASSWORD_HASH, SSH_KEY, "AAAAC3NzaC1lZDI1NTE5"):
        assert secret not in everything and secret not in logs
    out = tmp_path / "payload.json"
    opened = sw(env, "open", made["shd"], "--key", made["key"], "--cert", made["crt"], "-o", out)
    assert opened.returncode == 0, opened.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    payload = json.loads(out.read_text())
    assert payload["hostname"] == "web-01" and payload["files"][0]["mode"] == 0o640
    again = sw(env, "open", made["shd"], "--key", made["key"], "--cert", made["crt"], "-o", out)
    assert again.returncode == 2 and "exists" in again.stderr  # an opened payload is never overwritten
    for key in (tmp_path / "xdg").rglob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600


def test_damage_and_refusals_are_one_line(made: dict[str, Path], env: dict[str, str], tmp_path: Path) -> None:
    data = bytearray(made["shd"].read_bytes())
    data[len(data) // 2] ^= 0x40
    bad = tmp_path / "bad.shd"
    bad.write_bytes(bytes(data))
    for args in (("show", bad), ("test", bad, made["v1.2.3.4"]),
                 ("open", bad, "--key", made["key"], "--cert", made["crt"],
                  "-o", tmp_path / "x.json")):  # fmt: skip
        done = sw(env, *args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (args[0], done.stderr)
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.json").exists()
    dup = sw(env, "guardian", "new", "alice")
    assert dup.returncode == 2 and "already exists" in dup.stderr
    listed = json.loads(sw(env, "guardian", "list", "--json").stdout)
    assert [(g["name"], g["kind"]) for g in listed] == [("alice", "owner"), ("fabric", "guardian")]
    exported = sw(env, "guardian", "export", "alice").stdout
    assert exported.count("BEGIN CERTIFICATE") == 2 and "PRIVATE" not in exported


@pytest.mark.parametrize(
    ("rule", "verdicts"),
    [
        ("equals", {"1.2.3.3": 1, "1.2.3.4": 0, "1.2.3.5": 1}),
        ("greater-than", {"1.2.3.3": 1, "1.2.3.4": 1, "1.2.3.5": 0}),
        ("greater-or-equal", {"1.2.3.3": 1, "1.2.3.4": 0, "1.2.3.5": 0}),
    ],
)
def test_shield_test_exit_codes_at_each_rules_boundary(
    made: dict[str, Path], env: dict[str, str], tmp_path: Path, rule: str, verdicts: dict[str, int]
) -> None:
    """Data for ``1.2.3.4`` with ``rule``, tested against the template one version lower, equal and higher:
    ``shield test`` exits 0 exactly where the rule holds (Microsoft's: the template's version against the
    qualifier's)."""
    shd = tmp_path / f"{rule}.shd"
    done = sw(env, "create", "--owner", "alice", "--qualifier", f"{made['v1.2.3.4']}:{rule}",
              "--passphrase-file", tmp_path / "pass", "-o", shd)  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = {version: sw(env, "test", shd, made[f"v{version}"]).returncode for version in verdicts}
    assert got == verdicts


def test_a_huge_file_is_refused_without_reading_it_whole(
    made: dict[str, Path], env: dict[str, str], tmp_path: Path
) -> None:
    """--file and --user-data are read at most one byte past the 384 KiB payload bound."""
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as f:
        f.truncate(4 * 1024**3)  # 4 GiB of holes: reading it whole would take GiBs of memory
    for args in (("--user-data", huge), ("--file", f"{huge}:/srv/huge")):
        done = sw(env, "create", "--owner", "alice", "--qualifier", made["v1.2.3.4"],
                  "--passphrase-file", tmp_path / "pass", *args, "-o", tmp_path / "x.shd")  # fmt: skip
        assert done.returncode == 2 and "KiB" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "x.shd").exists()


def test_guardians_are_removed_and_an_owner_only_with_yes(made: dict[str, Path], env: dict[str, str]) -> None:
    assert sw(env, "guardian", "remove", "fabric").returncode == 0
    refused = sw(env, "guardian", "remove", "alice")
    assert refused.returncode == 2 and "private keys" in refused.stderr and refused.stderr.count("\n") == 1
    assert [g["name"] for g in json.loads(sw(env, "guardian", "list", "--json").stdout)] == ["alice"]
    assert sw(env, "guardian", "remove", "alice", "--yes").returncode == 0
    assert json.loads(sw(env, "guardian", "list", "--json").stdout) == []
    gone = sw(env, "guardian", "remove", "alice", "--yes")
    assert gone.returncode == 2 and "no guardian named" in gone.stderr
