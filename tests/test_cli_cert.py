"""``shieldwright cert``: new → show round trip, exit codes, one-line errors, passphrases never echoed."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app.signing.keys import generate_key, generate_self_signed, write_certificate
from tests.conftest import require_tool, run

ROOT = Path(__file__).resolve().parents[1]
SECRET = "Correct-Horse-7391-Battery"


def sw(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would; stdin is not a terminal, so it never prompts."""
    return subprocess.run(
        [sys.executable, "-m", "app", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *, code: int = 2) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shieldwright: error: "), proc.stderr
    return lines[0]


def no_secret(proc: subprocess.CompletedProcess[str]) -> None:
    assert SECRET not in proc.stdout and SECRET not in proc.stderr


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    p = tmp_path / "pass.txt"
    p.write_text(SECRET + "\n")  # the trailing newline is not part of the passphrase
    return p


def test_new_then_show_json_round_trip(tmp_path: Path, secret_file: Path) -> None:
    out = {
        k: tmp_path / n
        for k, n in (("cert", "db.pem"), ("key", "db.key"), ("der", "db.der"), ("p12", "db.p12"))
    }
    proc = sw(
        "cert",
        "new",
        "--subject",
        "CN=Example db,O=Example Corp",
        "--days",
        "730",
        "--out-cert",
        out["cert"],
        "--out-key",
        out["key"],
        "--out-der",
        out["der"],
        "--out-p12",
        out["p12"],
        "--key-passphrase-file",
        secret_file,
    )
    assert proc.returncode == 0, proc.stderr
    no_secret(proc)
    assert "NOT encrypted" not in proc.stderr
    assert stat.S_IMODE(out["key"].stat().st_mode) == 0o600
    assert stat.S_IMODE(out["p12"].stat().st_mode) == 0o600

    # openssl opens the key and the PKCS#12 with the passphrase from the file (newline stripped).
    require_tool("openssl")
    pw = tmp_path / "pw-no-newline"
    pw.write_text(SECRET)
    run("openssl", "pkey", "-in", out["key"], "-passin", f"file:{pw}", "-noout")
    run("openssl", "pkcs12", "-info", "-in", out["p12"], "-passin", f"file:{pw}", "-nokeys")
    sha256 = run("openssl", "x509", "-in", out["der"], "-inform", "DER", "-noout", "-fingerprint", "-sha256")

    shown = sw("cert", "show", out["cert"], "--json", "--purpose", "uefi")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["subject"] == "CN=Example db,O=Example Corp" and data["common_name"] == "Example db"
    assert data["key_type"] == "RSA" and data["key_size"] == 2048  # the UEFI-friendly default
    assert data["extended_key_usage"] == ["codeSigning"] and data["key_usage"] == ["digitalSignature"]
    assert data["sha256_fingerprint"] == sha256.stdout.strip().split("=", 1)[1].replace(":", "")
    days = dt.datetime.fromisoformat(data["not_after"]) - dt.datetime.fromisoformat(data["not_before"])
    assert days == dt.timedelta(days=730)
    assert [f["severity"] for f in data["findings"]] == ["info"]

    # the DER and the PKCS#12 show the same certificate
    assert (
        json.loads(sw("cert", "show", out["der"], "--json").stdout)["sha256_fingerprint"]
        == data["sha256_fingerprint"]
    )
    p12 = sw(
        "cert",
        "show",
        out["p12"],
        "--json",
        "--key-passphrase-env",
        "SW_TEST_PASS",
        env={"SW_TEST_PASS": SECRET},
    )
    assert p12.returncode == 0, p12.stderr
    no_secret(p12)
    assert json.loads(p12.stdout)["sha256_fingerprint"] == data["sha256_fingerprint"]


def test_text_show_lists_fields_and_findings(tmp_path: Path) -> None:
    proc = sw(
        "cert",
        "new",
        "--subject",
        "Bare Name",
        "--key-type",
        "p256",
        "--out-cert",
        tmp_path / "c.pem",
        "--out-key",
        tmp_path / "k.pem",
    )
    assert proc.returncode == 0, proc.stderr
    assert "NOT encrypted" in proc.stderr  # no passphrase: said out loud
    assert "BEGIN PRIVATE KEY" in (tmp_path / "k.pem").read_text()
    shown = sw("cert", "show", tmp_path / "c.pem", "--purpose", "uefi")
    assert shown.returncode == 0  # a warning does not fail
    for text in (
        "Subject:      CN=Bare Name",
        "SHA-256:",
        "SHA-1:",
        "ECDSA 256 (secp256r1)",
        "codeSigning",
        "WARNING  UEFI firmware expects RSA-2048",
        "INFO     the certificate is self-signed",
    ):
        assert text in shown.stdout, shown.stdout


def test_expired_certificate_exits_1(tmp_path: Path) -> None:
    cert = generate_self_signed(
        generate_key("p256"),
        common_name="Old",
        days=1,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=5),
    )
    path = write_certificate(cert, tmp_path / "old.pem")
    proc = sw("cert", "show", path)
    assert proc.returncode == 1
    assert "ERROR    the certificate expired" in proc.stdout
    assert json.loads(sw("cert", "show", path, "--json").stdout)["findings"][0]["severity"] == "error"


def test_esl_is_read_back_by_efitools(tmp_path: Path) -> None:
    assert (
        sw(
            "cert",
            "new",
            "--subject",
            "CN=ESL",
            "--out-cert",
            tmp_path / "c.pem",
            "--out-key",
            tmp_path / "k.pem",
            "--out-der",
            tmp_path / "c.der",
        ).returncode
        == 0
    )
    owner = "12345678-9abc-def0-1234-56789abcdef0"
    proc = sw("cert", "esl", tmp_path / "c.pem", "-o", tmp_path / "db.esl", "--owner", owner)
    assert proc.returncode == 0, proc.stderr
    require_tool("sig-list-to-certs")
    out = run("sig-list-to-certs", tmp_path / "db.esl", tmp_path / "back").stdout
    assert owner in out.lower()
    assert (tmp_path / "back-0.der").read_bytes() == (tmp_path / "c.der").read_bytes()
    # never replaced
    again = sw("cert", "esl", tmp_path / "c.pem", "-o", tmp_path / "db.esl")
    assert "already exists" in assert_one_line_error(again)
    assert "not a GUID" in assert_one_line_error(
        sw("cert", "esl", tmp_path / "c.pem", "-o", tmp_path / "x.esl", "--owner", "nope")
    )


def test_new_refuses_existing_outputs_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_text("precious")
    proc = sw(
        "cert", "new", "--subject", "CN=x", "--out-cert", tmp_path / "c.pem", "--out-key", tmp_path / "k.pem"
    )
    assert "already exists" in assert_one_line_error(proc)
    assert (tmp_path / "k.pem").read_text() == "precious"
    assert not (tmp_path / "c.pem").exists()


def test_p12_requires_a_passphrase(tmp_path: Path) -> None:
    proc = sw(
        "cert",
        "new",
        "--subject",
        "CN=x",
        "--out-cert",
        tmp_path / "c.pem",
        "--out-key",
        tmp_path / "k.pem",
        "--out-p12",
        tmp_path / "x.p12",
    )
    assert "passphrase" in assert_one_line_error(proc)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--subject", "OU=only", "--out-cert", "{d}/c.pem", "--out-key", "{d}/k.pem"], "subject"),
        (["--subject", "CN=x", "--days", "0", "--out-cert", "{d}/c.pem", "--out-key", "{d}/k.pem"], "--days"),
        (["--subject", "CN=x", "--out-cert", "{d}/c.pem", "--out-key", "{d}/c.pem"], "same file"),
        (["--subject", "CN=x", "--out-cert", "{d}/nodir/c.pem", "--out-key", "{d}/k.pem"], "cannot write"),
        (
            [
                "--subject",
                "CN=x",
                "--out-cert",
                "{d}/c.pem",
                "--out-key",
                "{d}/k.pem",
                "--key-passphrase-file",
                "{d}/absent",
            ],
            "passphrase file",
        ),
        (
            [
                "--subject",
                "CN=x",
                "--out-cert",
                "{d}/c.pem",
                "--out-key",
                "{d}/k.pem",
                "--key-passphrase-env",
                "SW_SURELY_UNSET_VAR",
            ],
            "SW_SURELY_UNSET_VAR",
        ),
    ],
)
def test_new_bad_inputs_are_one_line_errors(args: list[str], needle: str, tmp_path: Path) -> None:
    proc = sw("cert", "new", *(a.format(d=tmp_path) for a in args))
    assert needle in assert_one_line_error(proc)
    assert not (tmp_path / "k.pem").exists() and not (tmp_path / "c.pem").exists()


def test_show_bad_inputs_are_one_line_errors(tmp_path: Path, secret_file: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"this is not a certificate\n")
    assert_one_line_error(sw("cert", "show", garbage))
    assert_one_line_error(sw("cert", "show", tmp_path / "absent.pem"))
    empty = tmp_path / "empty.der"
    empty.write_bytes(b"")
    assert_one_line_error(sw("cert", "show", empty))

    # a PKCS#12 with the wrong passphrase, and with none at all
    require_tool("openssl")
    p12 = tmp_path / "id.pfx"
    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        tmp_path / "k.pem",
        "-out",
        tmp_path / "c.pem",
        "-subj",
        "/CN=p12",
        "-days",
        "30",
    )
    run(
        "openssl",
        "pkcs12",
        "-export",
        "-inkey",
        tmp_path / "k.pem",
        "-in",
        tmp_path / "c.pem",
        "-passout",
        f"file:{secret_file}",
        "-out",
        p12,
    )
    wrong = sw(
        "cert", "show", p12, "--key-passphrase-env", "SW_TEST_PASS", env={"SW_TEST_PASS": SECRET[::-1]}
    )
    assert "wrong passphrase" in assert_one_line_error(wrong)
    assert SECRET[::-1] not in wrong.stdout + wrong.stderr
    assert "needs a passphrase" in assert_one_line_error(sw("cert", "show", p12))
    right = sw("cert", "show", p12, "--key-passphrase-file", secret_file)
    assert right.returncode == 0 and "CN=p12" in right.stdout
    no_secret(right)


def test_help_says_passphrases_never_come_from_argv() -> None:
    for args in (["cert", "--help"], ["cert", "new", "--help"], ["cert", "show", "--help"]):
        proc = sw(*args)
        assert proc.returncode == 0
        assert "never taken from the command line" in " ".join(proc.stdout.split()), args
    new_help = " ".join(sw("cert", "new", "--help").stdout.split())
    assert "--key-passphrase-file" in new_help and "default rsa2048" in new_help
    assert "--key-passphrase " not in new_help  # there is no option taking the passphrase itself


def test_cert_without_action_prints_usage() -> None:
    proc = sw("cert")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "new" in proc.stderr and "esl" in proc.stderr


def test_esl_from_pkcs12(tmp_path: Path, secret_file: Path) -> None:
    made = sw("cert", "new", "--subject", "CN=From P12", "--out-cert", tmp_path / "c.pem", "--out-key",
              tmp_path / "k.pem", "--out-der", tmp_path / "c.der", "--out-p12", tmp_path / "id.p12",
              "--key-passphrase-file", secret_file)  # fmt: skip
    assert made.returncode == 0, made.stderr
    proc = sw(
        "cert", "esl", tmp_path / "id.p12", "-o", tmp_path / "db.esl", "--key-passphrase-file", secret_file
    )
    assert proc.returncode == 0, proc.stderr
    no_secret(proc)
    run("sig-list-to-certs", tmp_path / "db.esl", tmp_path / "back")
    assert (tmp_path / "back-0.der").read_bytes() == (tmp_path / "c.der").read_bytes()


def test_cli_key_types_are_the_engine_key_types() -> None:
    from app.commands.cert import KEY_TYPE_CHOICES
    from app.signing.keys import KEY_TYPES

    assert KEY_TYPE_CHOICES == KEY_TYPES
