"""Chain checks follow RFC 5280 for code signing, graded by OpenSSL and osslsigncode (issue 17 item 4).

The chains are made by ``openssl req``/``openssl x509`` (not by our code). The verdict on the chain's
structure comes from ``openssl verify -x509_strict -purpose any``; the verdict on a signature, which also
judges the signer's extendedKeyUsage, from ``osslsigncode verify`` on a PE that osslsigncode signed.
Validity periods: certificates made with ``cryptography`` (openssl 3.0 cannot backdate), graded by
``openssl verify -no_check_time``.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.errors import SignatureError
from app.signing.authenticode import verify_pe
from app.signing.cms import check_chain
from app.signing.keys import generate_key, generate_self_signed
from tests.conftest import require_tool, run
from tests.signing.pe_helpers import STUB

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "app" / "__main__.py").is_file())

_CA = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
_LEAF = (
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n"
)
_IDS = "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"

#: name -> (issuer, extensions); made in this order.
_CERTS: dict[str, tuple[str | None, str]] = {
    "root": (None, _CA + "subjectKeyIdentifier=hash\n"),
    "inter": ("root", _CA + _IDS),
    "leaf": ("inter", _LEAF + _IDS),
    "nobc": ("root", "keyUsage=critical,keyCertSign\n" + _IDS),
    "leaf_nobc": ("nobc", _LEAF + _IDS),
    "cafalse": ("root", "basicConstraints=critical,CA:FALSE\n" + _IDS),
    "leaf_cafalse": ("cafalse", _LEAF + _IDS),
    "noksign": ("root", "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\n" + _IDS),
    "leaf_noksign": ("noksign", _LEAF + _IDS),
    "inter0": ("root", "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign\n" + _IDS),
    "sub": ("inter0", _CA + _IDS),
    "leaf_plen": ("sub", _LEAF + _IDS),
    "leaf_sa": ("inter", _LEAF.replace("codeSigning", "serverAuth") + _IDS),
}

#: case -> (signer, intermediates embedded with it, trusted by RFC 5280 code-signing rules)
CASES = {
    "good 3-level chain": ("leaf", ["inter"], True),
    "issuer without basicConstraints": ("leaf_nobc", ["nobc"], False),
    "issuer with CA:FALSE": ("leaf_cafalse", ["cafalse"], False),
    "issuer without keyCertSign": ("leaf_noksign", ["noksign"], False),
    "pathLen exceeded": ("leaf_plen", ["sub", "inter0"], False),
    "signer with only serverAuth": ("leaf_sa", ["inter"], False),
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("openssl")
    d = tmp_path_factory.mktemp("rfc5280")
    for name, (issuer, extensions) in _CERTS.items():
        key, csr, ext, pem = (d / f"{name}.{s}" for s in ("key", "csr", "ext", "pem"))
        ext.write_text(extensions)
        run("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
            "-subj", f"/CN={name}")  # fmt: skip
        ca = [] if issuer is None else ["-CA", d / f"{issuer}.pem", "-CAkey", d / f"{issuer}.key"]
        sign = ["-signkey", key] if issuer is None else [*ca, "-CAcreateserial"]
        run("openssl", "x509", "-req", "-in", csr, *sign, "-days", "30", "-extfile", ext, "-out", pem)
    return d


def _cert(pki: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((pki / f"{name}.pem").read_bytes())


def _verdict(fn) -> bool:
    try:
        fn()
    except SignatureError:
        return False
    return True


def _openssl_strict(pki: Path, leaf: str, pool: list[str], *extra: str) -> bool:
    untrusted = pki / f"{leaf}.untrusted.pem"
    untrusted.write_bytes(b"".join((pki / f"{n}.pem").read_bytes() for n in pool))
    proc = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "any", *extra, "-CAfile",
                           str(pki / "root.pem"), "-untrusted", str(untrusted), str(pki / f"{leaf}.pem")],
                          capture_output=True, text=True)  # fmt: skip
    return proc.returncode == 0


def _signed_pe(pki: Path, leaf: str, pool: list[str]) -> Path:
    """The systemd stub signed by ``leaf`` with ``pool`` embedded, by osslsigncode."""
    require_tool("osslsigncode")
    chain, out = pki / f"{leaf}.chain.pem", pki / f"{leaf}.efi"
    chain.write_bytes(b"".join((pki / f"{n}.pem").read_bytes() for n in [leaf, *pool]))
    out.unlink(missing_ok=True)
    run("osslsigncode", "sign", "-certs", chain, "-key", pki / f"{leaf}.key", "-h", "sha256", "-in", STUB,
        "-out", out)  # fmt: skip
    return out


def _osslsigncode_trusts(pe: Path, ca: Path) -> bool:
    proc = subprocess.run(["osslsigncode", "verify", "-CAfile", str(ca), "-in", str(pe)], capture_output=True,
                          text=True)  # fmt: skip
    return proc.returncode == 0


@pytest.mark.parametrize("case", CASES)
def test_chain_verdicts_match_openssl_and_osslsigncode(pki: Path, case: str) -> None:
    """Regression (issue 17 item 4): failed on ecab7db because an issuer without basicConstraints could
    issue, and keyUsage keyCertSign, pathLenConstraint and the signer's extendedKeyUsage were ignored: every
    case but "issuer with CA:FALSE" was accepted."""
    leaf, pool, expected = CASES[case]
    pe = _signed_pe(pki, leaf, pool)
    assert _osslsigncode_trusts(pe, pki / "root.pem") is expected  # the independent verdict
    if case != "signer with only serverAuth":  # -purpose any judges the structure only
        assert _openssl_strict(pki, leaf, pool) is expected
    root = _cert(pki, "root")
    ours = _verdict(lambda: check_chain(_cert(pki, leaf), [_cert(pki, n) for n in pool], [root]))
    assert ours is expected
    (result,) = verify_pe(pe.read_bytes(), trusted=[root])
    assert result.valid is expected, result.reason
    if not expected:
        assert "not trusted" in result.reason


def test_the_reason_names_the_rule(pki: Path) -> None:
    root = _cert(pki, "root")
    for leaf, pool, words in [
        ("leaf_nobc", ["nobc"], "basicConstraints"),
        ("leaf_cafalse", ["cafalse"], "cA FALSE"),
        ("leaf_noksign", ["noksign"], "keyCertSign"),
        ("leaf_plen", ["sub", "inter0"], "path length"),
        ("leaf_sa", ["inter"], "codeSigning"),
    ]:
        with pytest.raises(SignatureError, match="not trusted") as info:
            check_chain(_cert(pki, leaf), [_cert(pki, n) for n in pool], [root])
        assert words in info.value.message and "\n" not in info.value.message


def test_an_intermediate_given_as_the_anchor_is_enough(pki: Path) -> None:
    """As UEFI db (OpenSSL's partial chains): a trusted intermediate anchors the chain by itself."""
    check_chain(_cert(pki, "leaf"), [], [_cert(pki, "inter")])
    missing_inter = _verdict(lambda: check_chain(_cert(pki, "leaf"), [], [_cert(pki, "root")]))
    assert missing_inter is False


def test_pe_verify_cli_refuses_a_signer_issued_by_a_non_ca(pki: Path) -> None:
    """Regression (issue 17 item 4): failed on ecab7db because ``pe verify --cert`` accepted a signer whose
    issuer has no basicConstraints (exit 0)."""
    pe = _signed_pe(pki, "leaf_nobc", ["nobc"])
    argv = [sys.executable, "-m", "app", "pe", "verify", str(pe), "--cert", str(pki / "root.pem")]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not trusted" in proc.stdout and "basicConstraints" in proc.stdout
    assert "Traceback" not in proc.stderr


# --- our own db certificates and validity periods ----------------------------------------------------------


def _pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def test_our_self_signed_db_certificate_is_its_own_anchor(tmp_path: Path) -> None:
    cert = generate_self_signed(generate_key("rsa2048"), common_name="Example db")
    check_chain(cert, [cert], [cert])
    pem = _pem(tmp_path / "db.pem", cert)
    run("openssl", "verify", "-x509_strict", "-purpose", "any", "-CAfile", pem, pem)
    expired = generate_self_signed(generate_key("p256"), common_name="Old db", days=1,
                                   not_before=dt.datetime(2010, 1, 1, tzinfo=dt.UTC))  # fmt: skip
    check_chain(expired, [], [expired])  # UEFI firmware ignores expiry


_KEY_USAGES = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
               "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")  # fmt: skip


def _make(name: str, key, issuer: tuple[x509.Certificate, object] | None, start: dt.datetime, days: int,
          *, ca: bool) -> x509.Certificate:  # fmt: skip
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[0].public_key())  # type: ignore[arg-type]
        builder = builder.add_extension(aki, critical=False)
    usage = dict.fromkeys(_KEY_USAGES, False)
    usage["key_cert_sign" if ca else "digital_signature"] = True
    builder = builder.add_extension(x509.KeyUsage(**usage), critical=True)
    if not ca:
        eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING])
        builder = builder.add_extension(eku, critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())  # type: ignore[arg-type]


def test_expired_chain_is_accepted_as_uefi_does(tmp_path: Path) -> None:
    """Every certificate expired years ago, but they were valid together: UEFI boots it, so do we."""
    t0 = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
    rk, ik, lk = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _make("old root", rk, None, t0, 3650, ca=True)
    inter = _make("old inter", ik, (root, rk), t0 + dt.timedelta(days=10), 1000, ca=True)
    leaf = _make("old leaf", lk, (inter, ik), t0 + dt.timedelta(days=400), 365, ca=False)
    check_chain(leaf, [inter], [root])
    ca, untrusted = _pem(tmp_path / "r.pem", root), _pem(tmp_path / "i.pem", inter)
    signer = _pem(tmp_path / "l.pem", leaf)
    base = ["openssl", "verify", "-x509_strict", "-purpose", "any", "-CAfile", str(ca), "-untrusted",
            str(untrusted)]  # fmt: skip
    assert subprocess.run([*base, "-no_check_time", str(signer)], capture_output=True).returncode == 0
    assert subprocess.run([*base, str(signer)], capture_output=True).returncode != 0  # it is expired


def test_certificates_never_valid_together_do_not_chain() -> None:
    """A CA that had expired before the signer was issued cannot have issued it."""
    t0 = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
    rk, lk = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = _make("short root", rk, None, t0, 30, ca=True)
    leaf = _make("late leaf", lk, (root, rk), t0 + dt.timedelta(days=60), 365, ca=False)
    with pytest.raises(SignatureError, match="valid at one common moment"):
        check_chain(leaf, [], [root])


def test_a_hostile_subject_is_escaped_in_the_reason() -> None:
    """Regression (issue 17 item 10): failed on ecab7db because the untrusted signer's subject went into the
    error message raw, so a terminal escape in it reached the terminal."""
    t0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    rk, lk = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = _make("root", rk, None, t0, 3650, ca=True)
    leaf = _make("evil\x1b]0;pwned\x07\x1b[2J", lk, None, t0, 3650, ca=False)
    with pytest.raises(SignatureError) as info:
        check_chain(leaf, [], [root])
    assert "\x1b" not in info.value.message and "\\x1b" in info.value.message
