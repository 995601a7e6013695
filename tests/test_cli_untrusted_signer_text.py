"""Names taken from input files reach the terminal escaped in ``cert``, ``pe``, ``vsc`` and ``verify``
(issue 17 item 10): a certificate subject or template name carrying terminal escapes or a bidi override
must not move the cursor, retitle the terminal or reorder what the user reads."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.cli import main
from app.template.verify import Check, TemplateReport
from tests.signing.pe_helpers import STUB

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "app" / "__main__.py").is_file())
HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J\u202edb\u009b31m"
RAW = ("\x1b", "\x07", "\u202e", "\u009b")


def cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONIOENCODING": "utf-8"},
                          stdin=subprocess.DEVNULL)  # fmt: skip


def assert_escaped(text: str) -> None:
    assert not any(ch in text for ch in RAW), repr(text)
    assert "\\x1b" in text, text


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed code-signing certificate (as `cert new` makes them) whose CN is hostile."""
    d = tmp_path_factory.mktemp("hostile")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTILE)])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    usage = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
                           "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, **usage), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = d / "hostile.pem", d / "hostile.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def test_cert_show_escapes_the_subject(hostile: tuple[Path, Path]) -> None:
    """Regression (issue 17 item 10): failed on ecab7db because ``cert show`` printed the subject raw."""
    proc = cli("cert", "show", hostile[0])
    assert proc.returncode == 0, proc.stderr
    assert_escaped(proc.stdout)


def test_pe_list_and_verify_escape_the_signer(hostile: tuple[Path, Path], tmp_path: Path) -> None:
    """Regression (issue 17 item 10): failed on ecab7db because ``pe list``/``pe verify`` printed the
    signer's subject raw."""
    cert, key = hostile
    signed = tmp_path / "signed.efi"
    assert cli("pe", "sign", STUB, "--cert", cert, "--key", key, "-o", signed).returncode == 0
    listed = cli("pe", "list", signed)
    assert listed.returncode == 0 and "digest matches" in listed.stdout
    assert_escaped(listed.stdout)
    verified = cli("pe", "verify", signed, "--cert", cert)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert_escaped(verified.stdout)


def test_vsc_show_and_verify_escape_the_signer(hostile: tuple[Path, Path], small_disk: Path,
                                              tmp_path: Path) -> None:  # fmt: skip
    """Regression (issue 17 item 10): failed on ecab7db because ``vsc show``/``vsc verify`` printed the
    signer's subject raw. (A name with a bidi override, which also passed then, is now refused by the
    catalog's name rule itself: see the next test.)"""
    cert, key = hostile
    vsc = tmp_path / "t.vsc"
    proc = cli("vsc", "create", small_disk, "--partition", "3", "--name", "web server", "--version",
               "1.0.0.0", "--cert", cert, "--key", key, "-o", vsc)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    shown = cli("vsc", "show", vsc)
    assert shown.returncode == 0 and "web server" in shown.stdout
    assert_escaped(shown.stdout)
    verified = cli("vsc", "verify", small_disk, vsc, "--trust", cert)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert_escaped(verified.stdout)
    for command in (("show", vsc), ("verify", small_disk, vsc, "--trust", cert)):
        json_out = cli("vsc", *command, "--json").stdout
        assert not any(ch in json_out for ch in RAW) and "\\u001b" in json_out


def test_a_template_name_that_reorders_or_breaks_the_line_is_refused(
    hostile: tuple[Path, Path], small_disk: Path, tmp_path: Path
) -> None:
    """A template name is shown on one line by every tool: bidi overrides, C1 controls and line separators
    are refused when a catalog is made, so no reader ever has to show them."""
    cert, key = hostile
    for name in ("web\u202eserver", "web\x85server", "web\u2028server"):
        proc = cli("vsc", "create", small_disk, "--partition", "3", "--name", name, "--version", "1.0.0.0",
                   "--cert", cert, "--key", key, "-o", tmp_path / "t.vsc")  # fmt: skip
        assert proc.returncode == 2, proc.stdout
        assert "control characters" in proc.stderr and not (tmp_path / "t.vsc").exists()


def test_verify_escapes_what_the_checks_quote(capsys, monkeypatch, tmp_path: Path,
                                              hostile: tuple[Path, Path]) -> None:  # fmt: skip
    """Regression (issue 17 item 10): failed on ecab7db because ``verify`` printed check details (signer
    subjects, UKI .uname, fsck's file names) raw."""
    report = TemplateReport(ok=False, checks=[Check("UKI", False, f"signed by CN={HOSTILE}")], path="x")
    monkeypatch.setattr("app.template.verify.verify_template", lambda *a, **k: report)
    assert main(["verify", str(tmp_path / "t.raw"), "--trust", str(hostile[0])]) == 1
    out, err = capsys.readouterr()
    assert_escaped(out)
    assert_escaped(err)
