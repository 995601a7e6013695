"""``shieldwright verify``: one line per check, exit 0 / 1 / 2, JSON; in-process through app.cli.main, and
once end to end through a real subprocess in a C locale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from tests import template_helpers as th
from tests.template_helpers import ALL_CHECKS, UKI_CHECK, Template

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def template(small_disk: Path) -> Template:
    return th.build_template(small_disk)


def verify(capsys, *args: object) -> tuple[int, str, str]:
    code = main(["verify", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_good_template(capsys, template: Template) -> None:
    code, out, err = verify(capsys, template.path, "--trust", template.key.cert_path)
    assert code == 0, out + err
    lines = out.splitlines()
    assert [line.split(":", 1)[0] for line in lines[:-1]] == [f"✓ {name}" for name in ALL_CHECKS]
    assert lines[-1] == "OK: all 5 checks passed"
    assert err == ""


def test_json(capsys, template: Template) -> None:
    code, out, _ = verify(capsys, template.path, "--json", "--trust", template.key.cert_path)
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True and doc["trust_checked"] is True
    assert doc["path"] == str(template.path)
    assert [c["name"] for c in doc["checks"]] == ALL_CHECKS and all(c["ok"] for c in doc["checks"])


def test_without_trust_the_signer_is_not_checked_and_that_is_no_success(capsys, template: Template) -> None:
    """Regression (issue 17 item 5): failed on ecab7db because ``verify`` without ``--trust`` exited 0 (and
    said ``"ok": true``) for a template whose catalog and UKIs anyone could have re-signed."""
    code, out, err = verify(capsys, template.path)
    assert code == 3, out + err
    lines = out.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == [f"✓ {name}" for name in ALL_CHECKS] + ["✗ Signer"]
    assert lines[-1].startswith("✗ Signer: NOT checked: no trusted certificate was given")
    assert "signer not checked" in out and "OK:" not in out
    assert err.splitlines() == [
        "shieldwright: error: the signer was NOT checked: no --trust given, so anyone could have made these "
        "signatures (give --trust with the certificate you trust, or --no-trust-check to accept any signer)"
    ]
    code, out, _ = verify(capsys, template.path, "--json")
    doc = json.loads(out)
    assert code == 3 and doc["ok"] is False and doc["trust_checked"] is False
    # The explicit opt-out: success, still saying what was not checked.
    code, out, err = verify(capsys, template.path, "--no-trust-check")
    assert code == 0 and err == ""
    assert out.splitlines()[-1] == "OK: all 5 checks passed; the signer was NOT checked (--no-trust-check)"
    code, out, _ = verify(capsys, template.path, "--no-trust-check", "--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_help_states_the_chain_rules_and_expiry(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "RFC 5280" in text and "Expiry is NOT checked" in text and "--no-trust-check" in text
    assert "3 every check passed but no trusted certificate was given" in text


def test_a_flipped_uki_byte_exits_1(capsys, template: Template, tmp_path: Path) -> None:
    image = th.copy_of(template, tmp_path / "t.raw")
    th.flip_in_uki(template, image)
    code, out, err = verify(capsys, image, "--trust", template.key.cert_path)
    assert code == 1
    assert f"✗ {UKI_CHECK}: signature does not verify: image digest mismatch" in out
    assert "✓ Catalog" in out and "OK:" not in out
    assert err.splitlines() == [
        f"shieldwright: error: verification FAILED: 1 of 5 checks; first: {UKI_CHECK}: "
        "signature does not verify: image digest mismatch: the image was changed"
    ]
    code, out, _ = verify(capsys, image, "--json", "--no-trust-check")
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False
    assert [c["name"] for c in doc["checks"] if not c["ok"]] == [UKI_CHECK]
    code, _, err = verify(capsys, image)  # a failed check outranks the missing trust anchor
    assert code == 1 and "2 of 6 checks" in err


@pytest.mark.parametrize(
    ("damage", "failing"),
    [
        (th.flip_in_protected_data, "Catalog"),
        (th.flip_in_catalog, "Catalog"),
        (th.flip_in_primary_gpt, "GPT"),
    ],
    ids=lambda v: v.__name__ if callable(v) else v,
)
def test_other_damage_exits_1(capsys, template: Template, tmp_path: Path, damage, failing: str) -> None:
    image = th.copy_of(template, tmp_path / "t.raw")
    damage(template, image)
    code, out, err = verify(capsys, image, "--trust", template.key.cert_path)
    assert code == 1
    assert [line.split(":", 1)[0] for line in out.splitlines() if line.startswith("✗")] == [f"✗ {failing}"]
    assert f"first: {failing}:" in err


def test_trust(capsys, template: Template) -> None:
    code, out, err = verify(capsys, template.path, "--trust", template.other.cert_path)
    assert code == 1
    assert f"✗ {UKI_CHECK}" in out and "✗ Catalog" in out and "2 of 5 checks" in err
    # --trust repeats: either certificate may be the anchor.
    code, _, _ = verify(
        capsys, template.path, "--trust", template.other.cert_path, "--trust", template.key.cert_path
    )
    assert code == 0


def test_vsc_option(capsys, template: Template, tmp_path: Path) -> None:
    vsc = tmp_path / "t.vsc"
    vsc.write_bytes(template.vsc)
    assert verify(capsys, template.path, "--vsc", vsc, "--trust", template.key.cert_path)[0] == 0
    data = bytearray(template.vsc)
    data[-10] ^= 1
    vsc.write_bytes(bytes(data))
    code, out, _ = verify(capsys, template.path, "--vsc", vsc, "--no-trust-check")
    assert code == 1 and f"✗ Catalog: from {vsc}:" in out


def test_unreadable_input_exits_2(capsys, template: Template, tmp_path: Path) -> None:
    for args, fragment in (
        ([tmp_path / "missing.raw"], "no such file"),
        ([template.path, "--vsc", tmp_path / "missing.vsc"], "cannot read"),
        ([template.path, "--trust", tmp_path / "missing.pem"], ""),
        ([tmp_path], "directory"),
    ):
        code, out, err = verify(capsys, *args)
        assert code == 2, (args, out, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("shieldwright: error: ") and fragment in lines[0]
        assert "Traceback" not in out + err


def test_subprocess_in_a_c_locale(template: Template, tmp_path: Path) -> None:
    """The real command line; an ASCII-only stdout gets words instead of ✓/✗ rather than a crash."""
    image = th.copy_of(template, tmp_path / "t.raw")
    th.flip_in_second_fat(template, image)
    env = {**os.environ, "LC_ALL": "C", "PYTHONIOENCODING": "ascii"}
    argv = [sys.executable, "-m", "app", "verify", str(image), "--trust", str(template.key.cert_path)]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr
    assert "FAIL ESP: partition 1: fsck.fat -n: FATs differ" in proc.stdout
    assert "ok   GPT:" in proc.stdout and "Traceback" not in proc.stderr
