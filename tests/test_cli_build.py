"""``shieldwright build`` on the command line: options alone, ``--json``, ``--save-recipe`` and a replay of
the saved recipe, one-line errors, and Ctrl-C (a real SIGINT to a real process) leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.template.recipe_file import load_recipe
from tests.build_helpers import PASSPHRASE, BuildKeys, lba_ranges, make_keys, sha256_file
from tests.conftest import sgdisk_partitions

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> BuildKeys:
    return make_keys(tmp_path_factory.mktemp("cli-build-keys"))


@pytest.fixture(scope="module")
def passfile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-pass") / "provisioning.pass"
    path.write_text(PASSPHRASE + "\n")  # one trailing newline is not part of the passphrase
    path.chmod(0o600)
    return path


def _argv(base: Path, out: Path, keys: BuildKeys, passfile: Path, *extra: str | Path) -> list[str]:
    return ["build", "--base", str(base), "-o", str(out), "--name", "CLI template", "--version", "2.0.0.1",
            "--protect", "3", "--uefi-cert", str(keys.uefi_cert), "--uefi-key", str(keys.uefi_key),
            "--catalog-cert", str(keys.catalog.cert_path), "--catalog-key", str(keys.catalog.key_path),
            "--key-passphrase-file", str(keys.passphrase_file), "--passphrase-file", str(passfile),
            "--kdf", "pbkdf2", "--iter-time", "1", "--cmdline", "console=ttyS0  quiet",
            *map(str, extra)]  # fmt: skip


def _shieldwright(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture(scope="module")
def flags_build(demo_image: Path, keys: BuildKeys, passfile: Path, tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("cli-flags")
    out, recipe = d / "out" / "flags.vhdx", d / "flags-recipe.toml"
    out.parent.mkdir()
    proc = _shieldwright(*_argv(demo_image, out, keys, passfile, "--json", "--save-recipe", recipe))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, recipe, proc


def test_options_alone_build_a_template_and_json_is_the_summary(flags_build, keys: BuildKeys) -> None:
    out, _, proc = flags_build
    summary = json.loads(proc.stdout)  # stdout holds the JSON and nothing else; progress went to stderr
    assert summary["output"] == str(out) and summary["format"] == "vhdx"
    assert summary["template"] == {"name": "CLI template", "version": "2.0.0.1"}
    roles = {a["role"]: a for a in summary["artefacts"]}
    assert set(roles) == {"template", "catalog", "manifest", "manifest_signature", "report"}
    for artefact in roles.values():
        assert sha256_file(Path(artefact["path"])) == artefact["sha256"]
    assert summary["uki"]["cmdline"] == "console=ttyS0 quiet"
    assert len(summary["pcr_predictions"]["sha256"]["11"][""]) == 64
    assert [p["protection"] for p in summary["partitions"]] == ["none", "none", "encrypted"]
    assert "Step 5/9: Write the template (copy, encrypt, hash)" in proc.stderr
    assert PASSPHRASE not in proc.stdout + proc.stderr
    verify = _shieldwright(
        "verify", str(out), "--trust", str(keys.uefi_cert), "--trust", str(keys.catalog.cert_path)
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_saved_recipe_replays_to_the_same_layout_and_uki(
    flags_build, demo_image: Path, tmp_path: Path
) -> None:
    first, recipe_path, first_proc = flags_build
    recipe = load_recipe(recipe_path)
    assert recipe.protect == [3] and recipe.output.format == "vhdx"
    assert "PASSPHRASE" not in recipe_path.read_text() and PASSPHRASE not in recipe_path.read_text()

    second = tmp_path / "replay.vhdx"
    proc = _shieldwright("build", str(recipe_path), "-o", str(second), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = json.loads(first_proc.stdout), json.loads(proc.stdout)
    assert a["uki"]["authenticode_sha256"] == b["uki"]["authenticode_sha256"]
    assert a["pcr_predictions"] == b["pcr_predictions"]
    # Same partition table (qemu-img turns both into raw for sgdisk, our code not involved).
    layouts = []
    for vhdx in (first, second):
        raw = tmp_path / (vhdx.stem + ".raw")
        subprocess.run(["qemu-img", "convert", "-f", "vhdx", "-O", "raw", str(vhdx), str(raw)], check=True)
        layouts.append([{k: p[k] for k in ("number", "type_guid", "partition_guid", "first_lba", "last_lba")}
                        for p in sgdisk_partitions(raw)])  # fmt: skip
        assert lba_ranges(raw)
    assert layouts[0] == layouts[1]
    assert [x["uuid"] for x in a["luks"]] != [x["uuid"] for x in b["luks"]]  # fresh keys, same shape


def test_missing_options_and_bad_recipe_are_one_line_errors(tmp_path: Path, demo_image: Path) -> None:
    proc = _shieldwright("build", "--base", str(demo_image))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "shieldwright: error: no recipe given, and -o, --name, --uefi-cert missing "
        "(give a recipe file, or at least --base, -o, --name and --uefi-cert)"
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text('format_version = 1\nbase_image = "x.img"\nprotect = [3]\n[catalog]\nname = "n"\n')
    proc = _shieldwright("build", str(bad))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("shieldwright: error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_wrong_key_passphrase_fails_before_any_work(
    demo_image: Path, keys: BuildKeys, passfile: Path, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not snakeoil")
    out = tmp_path / "out"
    out.mkdir()
    argv = _argv(demo_image, out / "t.raw", keys, passfile)
    argv[argv.index("--key-passphrase-file") + 1] = str(wrong)
    proc = _shieldwright(*argv)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "wrong passphrase" in proc.stderr and "Step 1/9" not in proc.stderr
    assert list(out.iterdir()) == []


def test_ctrl_c_cancels_cleanly(demo_image: Path, keys: BuildKeys, passfile: Path, tmp_path: Path) -> None:
    """SIGINT during the streaming pass: exit 130, a one-line message, and an empty output folder."""
    out = tmp_path / "out"
    out.mkdir()
    before = demo_image.stat().st_mtime_ns
    argv = [sys.executable, "-m", "app", *_argv(demo_image, out / "t.raw", keys, passfile)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("Step 5/9"):
            proc.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(seen)
    rest = proc.stderr.read()
    proc.wait(timeout=60)
    err = "".join(seen) + rest
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "shieldwright: error: Cancelled (nothing was written; the base image is unchanged)"
    )
    assert list(out.iterdir()) == []
    assert demo_image.stat().st_mtime_ns == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
