"""The Recipe: dict and TOML round trips (relative paths), strict validation naming the key, no secrets in
the file, and reading secrets from files, variables and (only interactively) prompts."""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.findings import Severity
from app.luks.kdf import KdfParams
from app.template import toml_writer
from app.template.checks import validate_recipe
from app.template.recipe import (
    BootOptions,
    CatalogOptions,
    EncryptionOptions,
    OutputOptions,
    PcrOptions,
    Recipe,
    RecipeError,
    SecretSource,
    SigningOptions,
    UkiOptions,
    default_uki_id,
    explicit_kdf,
    kdf_params_dict,
    parse_image_ref,
    read_secret,
)
from app.template.recipe_file import load_recipe, recipe_from_dict, recipe_to_dict, save_recipe

TRICKY = 'quiet "quoted" back\\slash tab\there ünïcode ✓ \x01 end\\'
OS_RELEASE = 'ID=debian\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\n'


def full_recipe(d: Path) -> Recipe:
    """A recipe using every key, with absolute paths inside, near and far from ``d``."""
    return Recipe(
        base_image=d / "images" / "base.vhdx",
        protect=[2, 3],
        signing=SigningOptions(
            uefi_cert=d / "keys" / "db.pem",
            uefi_key=d / "keys" / "db.key",
            catalog_cert=d.parent / "vsc.p12",
            catalog_key=None,
            key_passphrase=SecretSource.env("DB_KEY_PASS"),
            catalog_key_passphrase=SecretSource.file(d / "vsc-pass.txt"),
        ),
        uki=UkiOptions(
            source="image",
            kernel="2:/vmlinuz-6.1.0-28-cloud-amd64",
            initrds=["2:/initrd.img-6.1.0-28-cloud-amd64"],
            cmdline=TRICKY,
            os_release=OS_RELEASE,
            stub=Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub"),
        ),
        encryption=EncryptionOptions(
            sector_size=512,
            kdf="pbkdf2",
            iter_time_ms=1500,
            kdf_params={"iterations": 456789, "hash": "sha512"},
            passphrase=SecretSource.file(d / "secrets" / "provisioning.txt"),
            recovery_key_file=d / "out" / "recovery.txt",
            sparse_ciphertext=True,
            partitions=[3],
        ),
        catalog=CatalogOptions(name="Web server (ü)", version="1.65535.0.7", block_size=4 * 1024 * 1024),
        boot=BootOptions(uki_id="web-1", vendor_dir="ubuntu", install_removable=True),
        output=OutputOptions(path=d / "out" / "web.qcow2", format="qcow2"),
    )


def valid_dict() -> dict[str, Any]:
    """A minimal valid recipe as parsed TOML, paths relative."""
    return {
        "format_version": 1,
        "base_image": "base.raw",
        "protect": [3],
        "signing": {"uefi_cert": "db.pem"},
        "catalog": {"name": "T", "version": "1.0.0.0"},
        "output": {"path": "out.raw"},
    }


# --- round trips ----------------------------------------------------------------------------------------


def test_dict_round_trip(tmp_path: Path) -> None:
    r = full_recipe(tmp_path)
    d = recipe_to_dict(r, tmp_path)
    assert recipe_from_dict(d, tmp_path) == r
    # Inside the directory and up to two levels up: relative; elsewhere: absolute.
    assert d["base_image"] == "images/base.vhdx"
    assert d["signing"]["catalog_cert"] == "../vsc.p12"
    assert d["uki"]["stub"] == "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
    assert d["encryption"]["passphrase"] == {"file": "secrets/provisioning.txt"}
    assert d["signing"]["key_passphrase"] == {"env": "DB_KEY_PASS"}


def test_relative_paths_start_at_the_recipe_directory(tmp_path: Path) -> None:
    d = valid_dict()
    d["base_image"] = "../images/base.raw"
    d["signing"]["uefi_key"] = "~/keys/db.key"
    d["encryption"] = {"passphrase": {"file": "pass.txt"}}
    r = recipe_from_dict(d, tmp_path / "recipes")
    assert r.base_image == tmp_path / "images" / "base.raw"
    assert r.signing.uefi_cert == tmp_path / "recipes" / "db.pem"
    assert r.signing.uefi_key == Path.home() / "keys" / "db.key"
    assert r.encryption.passphrase == SecretSource("file", str(tmp_path / "recipes" / "pass.txt"))


def test_defaults(tmp_path: Path) -> None:
    r = recipe_from_dict(valid_dict(), tmp_path)
    assert r.uki == UkiOptions() and r.boot == BootOptions() and r.encryption == EncryptionOptions()
    assert r.encryption.passphrase == SecretSource.prompt() and r.signing.key_passphrase.kind == "prompt"
    assert (r.encryption.sector_size, r.encryption.kdf, r.encryption.iter_time_ms) == (4096, "argon2id", 2000)
    assert r.catalog.block_size == 1024 * 1024 and r.output.format == "raw" and r.format_version == 2
    assert r.pcr == PcrOptions() and r.pcr.pcrs == [4, 7, 11] and r.pcr.firmware is None
    assert r.signing.catalog_cert is None and r.signing.catalog_passphrase_source == r.signing.key_passphrase
    assert r.encrypted_partitions == [3] and r.uki_id == "t"


def test_toml_round_trip_and_moving_the_recipe_with_its_files(tmp_path: Path) -> None:
    r = full_recipe(tmp_path / "a")
    (tmp_path / "a").mkdir()
    path = save_recipe(r, tmp_path / "a" / "recipe.toml")
    text = path.read_text()
    assert text.startswith("# Shieldwright recipe")
    assert tomllib.loads(text)["uki"]["cmdline"] == TRICKY  # tomllib, not our reader, agrees
    assert 'os_release = """\nID=debian\n' in text  # multi-line texts stay readable
    assert load_recipe(path) == r
    assert not [p for p in path.parent.iterdir() if p.name != "recipe.toml"], "temporary file left behind"

    # Move the recipe directory: relative paths follow it, absolute ones stay.
    (tmp_path / "a").rename(tmp_path / "b")
    moved = load_recipe(tmp_path / "b" / "recipe.toml")
    assert moved.base_image == tmp_path / "b" / "images" / "base.vhdx"
    assert moved.uki.stub == r.uki.stub


def test_save_recipe_never_replaces_a_file_unless_told_to(tmp_path: Path) -> None:
    """Regression (issue 17 item 8): failed on ecab7db because save_recipe wrote with overwrite=True, so
    ``--save-recipe`` pointed at a private key replaced the key with a recipe."""
    from app.errors import OutputExistsError

    r = full_recipe(tmp_path)
    key = tmp_path / "uefi.key"
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot really\n")
    with pytest.raises(OutputExistsError, match="already exists"):
        save_recipe(r, key)
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----"), "the existing file is untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["uefi.key"], "no temporary file left behind"
    assert load_recipe(save_recipe(r, key, overwrite=True)) == r  # the wizard asked; --force was given


def test_files_source_paths_are_resolved_and_saved_relative(tmp_path: Path) -> None:
    d = valid_dict()
    d["uki"] = {"source": "files", "kernel": "boot/vmlinuz", "initrds": ["boot/initrd.img"], "cmdline": ""}
    r = recipe_from_dict(d, tmp_path)
    assert r.uki.kernel == str(tmp_path / "boot" / "vmlinuz")
    assert r.uki.initrds == [str(tmp_path / "boot" / "initrd.img")]
    assert r.uki.cmdline == ""  # an empty command line is a choice, not "default"
    out = recipe_to_dict(r, tmp_path)["uki"]
    assert (out["kernel"], out["initrds"], out["cmdline"]) == ("boot/vmlinuz", ["boot/initrd.img"], "")
    assert recipe_from_dict(tomllib.loads(toml_writer.dumps(recipe_to_dict(r, tmp_path))), tmp_path) == r


def test_existing_uki_round_trip(tmp_path: Path) -> None:
    d = valid_dict()
    d["uki"] = {"source": "existing", "existing_uki": "1:/EFI/Linux/debian.efi", "existing_action": "resign"}
    r = recipe_from_dict(d, tmp_path)
    assert (r.uki.source, r.uki.existing_action, r.uki.builds_new_uki) == ("existing", "resign", False)
    assert recipe_from_dict(recipe_to_dict(r, tmp_path), tmp_path) == r


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_toml_strings_survive_any_text(text: str) -> None:
    assert tomllib.loads(toml_writer.dumps({"s": text, "t": {"u": [text], "v": {"w": text}}})) == {
        "s": text,
        "t": {"u": [text], "v": {"w": text}},
    }


# --- strictness: every error names its key --------------------------------------------------------------


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    if value is _DELETE:
        del d[last]
    else:
        d[last] = value


_DELETE = object()

BAD = [
    # (dotted key to change, new value, key the error must name)
    ("format_version", _DELETE, "format_version"),
    ("format_version", 3, "format_version"),
    ("base_image", _DELETE, "base_image"),
    ("base_image", 5, "base_image"),
    ("protect", _DELETE, "protect"),
    ("protect", [], "protect"),
    ("protect", [0], "protect[0]"),
    ("protect", [3, 3], "protect"),
    ("protect", ["3"], "protect[0]"),
    ("signing", _DELETE, "signing"),
    ("signing.uefi_cert", _DELETE, "signing.uefi_cert"),
    ("signing.catalog_key", "c.key", "signing.catalog_key"),
    ("signing.key_passphrase", {"env": "1BAD"}, "signing.key_passphrase.env"),
    ("signing.key_passphrase", {"value": "x"}, "signing.key_passphrase.value"),
    ("signing.key_passphrase", {"file": "a", "env": "B"}, "signing.key_passphrase"),
    ("uki.source", "kernel", "uki.source"),
    ("uki.kernel", "vmlinuz", "uki.kernel"),
    ("uki.initrds", ["2:/initrd.img"], "uki.initrds"),
    ("uki.initrds", [1], "uki.initrds[0]"),
    ("uki.existing_action", "keep", "uki.existing_action"),
    ("uki.cmdline", 7, "uki.cmdline"),
    ("uki.os_release", "A=\0", "uki.os_release"),
    ("encryption.sector_size", 1024, "encryption.sector_size"),
    ("encryption.kdf", "scrypt", "encryption.kdf"),
    ("encryption.iter_time_ms", 0, "encryption.iter_time_ms"),
    ("encryption.kdf_params", {"time": 4, "parallel": 4}, "encryption.kdf_params.memory_kib"),
    ("encryption.kdf_params", {"iterations": 1000}, "encryption.kdf_params.iterations"),
    ("encryption.kdf_params", "fast", "encryption.kdf_params"),
    ("encryption.partitions", [4], "encryption.partitions"),
    ("encryption.sparse_ciphertext", "yes", "encryption.sparse_ciphertext"),
    ("encryption.recovery_key_file", "out.raw", "encryption.recovery_key_file"),
    ("catalog", _DELETE, "catalog"),
    ("catalog.version", _DELETE, "catalog.version"),
    ("catalog.version", "1.0.0.70000", "catalog.version"),
    ("catalog.name", " ", "catalog.name"),
    ("catalog.block_size", 3000, "catalog.block_size"),
    ("catalog.block_size", "1M", "catalog.block_size"),
    ("boot.uki_id", "bad id", "boot.uki_id"),
    ("boot.vendor_dir", "EFI/BOOT", "boot.vendor_dir"),
    ("boot.install_removable", "yes", "boot.install_removable"),
    ("output.path", "base.raw", "output.path"),
    ("output.format", "vmdk", "output.format"),
    ("output", "out.raw", "output"),
]


@pytest.mark.parametrize(("change", "value", "key"), BAD, ids=[f"{c}={v!r}" for c, v, _ in BAD])
def test_every_error_names_its_key(tmp_path: Path, change: str, value: Any, key: str) -> None:
    d = valid_dict()
    _set(d, change, value)
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(d, tmp_path)
    assert info.value.key == key
    assert info.value.message.startswith(f"{key}: "), info.value.message


def test_the_version_message_is_the_catalog_format_s(tmp_path: Path) -> None:
    """The recipe says what app.catalog.format says (the wizard shows the same words)."""
    from app.catalog.format import CatalogError, parse_version

    d = valid_dict()
    d["catalog"]["version"] = "1.0.0"
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(d, tmp_path)
    with pytest.raises(CatalogError) as engine:
        parse_version("1.0.0")
    assert info.value.message == f"catalog.version: {engine.value.message}"
    assert info.value.message == "catalog.version: template version '1.0.0' is not of the form a.b.c.d"


@pytest.mark.parametrize(
    ("change", "key", "suggestion"),
    [
        ("protected", "protected", "did you mean 'protect'?"),
        ("catalog.verison", "catalog.verison", "did you mean 'version'?"),
        ("signing.uefi_certificate", "signing.uefi_certificate", "did you mean 'uefi_cert'?"),
        ("encryption.kdf_params.memory", "encryption.kdf_params.memory", ""),
        ("colour", "colour", "remove it"),
    ],
)
def test_unknown_keys_are_refused(tmp_path: Path, change: str, key: str, suggestion: str) -> None:
    d = valid_dict()
    if change.startswith("encryption.kdf_params"):
        d["encryption"] = {"kdf_params": {"time": 4, "memory_kib": 65536, "parallel": 4}}
    _set(d, change, {} if change == "colour" else 1)
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(d, tmp_path)
    assert info.value.key == key and info.value.message.startswith(f"{key}: ")
    assert "unknown key" in info.value.message and suggestion in info.value.hint


def test_a_pasted_secret_is_refused_without_being_repeated(tmp_path: Path) -> None:
    d = valid_dict()
    d["encryption"] = {"passphrase": "hunter2-correct-horse"}
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(d, tmp_path)
    assert info.value.key == "encryption.passphrase"
    assert "hunter2" not in info.value.one_line()


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("format_version = \n")
    with pytest.raises(RecipeError, match="is not valid TOML"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="is a directory"):
        load_recipe(tmp_path)


# --- validate_recipe with files -----------------------------------------------------------------------------


def test_validation_of_files_names_the_keys(tmp_path: Path) -> None:
    r = full_recipe(tmp_path)
    messages = [f.message for f in validate_recipe(r) if f.severity is Severity.ERROR]
    for key in ("base_image", "signing.uefi_cert", "signing.uefi_key", "signing.catalog_cert",
                "signing.catalog_key_passphrase.file", "encryption.passphrase.file", "output.path",
                "encryption.recovery_key_file"):  # fmt: skip
        assert any(m.startswith(f"{key}: ") for m in messages), (key, messages)
    assert not [f for f in validate_recipe(r, check_files=False) if f.severity is Severity.ERROR]


def test_hostile_recipe_files_are_one_error(tmp_path: Path) -> None:
    """An endless pipe is not read to its end, and deep nesting (tomllib recurses) is a RecipeError."""
    with pytest.raises(RecipeError, match="larger than 1048576 bytes: not a recipe"):
        load_recipe("/dev/zero")
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(RecipeError, match="nests arrays or tables too deeply"):
        load_recipe(deep)


def test_a_recipe_whose_files_exist_is_valid(tmp_path: Path) -> None:
    r = full_recipe(tmp_path)
    for p in (r.base_image, r.signing.uefi_cert, r.signing.uefi_key, r.signing.catalog_cert,
              Path(r.signing.catalog_key_passphrase.value), Path(r.encryption.passphrase.value)):  # type: ignore[arg-type,union-attr]  # fmt: skip
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    (tmp_path / "out").mkdir()
    Path(r.encryption.passphrase.value).chmod(0o600)  # type: ignore[arg-type]
    Path(r.signing.catalog_key_passphrase.value).chmod(0o644)  # type: ignore[arg-type,union-attr]
    findings = validate_recipe(r)
    assert [f for f in findings if f.severity is Severity.ERROR] == []
    warnings = {f.message.split(":", 1)[0] for f in findings if f.severity is Severity.WARNING}
    # A passphrase file others can read, and sparse ciphertext, are worth a word.
    assert warnings == {"signing.catalog_key_passphrase.file", "encryption.sparse_ciphertext"}


# --- secrets ----------------------------------------------------------------------------------------------


def test_secrets_are_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "provisioning.txt"
    secret_file.write_text("s3cret-from-file\n")
    monkeypatch.setenv("SW_KEY_PASS", "s3cret-from-env")
    r = full_recipe(tmp_path)
    r.signing.key_passphrase = SecretSource.env("SW_KEY_PASS")
    r.encryption.passphrase = SecretSource.file(secret_file)
    text = save_recipe(r, tmp_path / "r.toml").read_text()
    assert "s3cret" not in text
    assert 'key_passphrase = { env = "SW_KEY_PASS" }' in text
    assert 'passphrase = { file = "provisioning.txt" }' in text
    # And the model has nowhere to put one: every secret-ish field is a SecretSource.
    assert read_secret(r.encryption.passphrase, prompt_text="x", interactive=False) == b"s3cret-from-file"
    assert read_secret(r.signing.key_passphrase, prompt_text="x", interactive=False) == b"s3cret-from-env"


def test_read_secret_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "p"
    for content, expected in (
        (b"pw\n", b"pw"),
        (b"pw", b"pw"),
        (b"pw\n\n", b"pw\n"),
        (b"\xffbin\r\n", b"\xffbin\r"),
    ):
        f.write_bytes(content)
        got = read_secret(SecretSource.file(f), prompt_text="Passphrase: ", interactive=False)
        assert isinstance(got, bytearray) and got == expected
    with pytest.raises(RecipeError, match="cannot read passphrase file") as info:
        read_secret(
            SecretSource.file(tmp_path / "nope"),
            prompt_text="P: ",
            interactive=True,
            key="encryption.passphrase",
        )
    assert "encryption.passphrase" in info.value.message


def test_read_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SW_TEST_SECRET", "from env ✓")
    got = read_secret(SecretSource.env("SW_TEST_SECRET"), prompt_text="P: ", interactive=False)
    assert isinstance(got, bytearray) and got == "from env ✓".encode()
    monkeypatch.delenv("SW_TEST_SECRET")
    with pytest.raises(RecipeError, match="environment variable SW_TEST_SECRET is not set"):
        read_secret(SecretSource.env("SW_TEST_SECRET"), prompt_text="P: ", interactive=False)


def test_a_prompt_without_a_terminal_says_what_to_use_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_prompt(_text: str) -> str:
        raise AssertionError("must not prompt")

    monkeypatch.setattr("getpass.getpass", no_prompt)
    with pytest.raises(RecipeError) as info:
        read_secret(
            SecretSource.prompt(),
            prompt_text="Passphrase for the signing key: ",
            interactive=False,
            key="signing.key_passphrase",
            option="--key-passphrase-file",
        )
    err = info.value
    assert err.key == "signing.key_passphrase"
    assert "no terminal" in err.message and "passphrase for the signing key" in err.message
    assert "signing.key_passphrase = { file" in err.hint and "--key-passphrase-file" in err.hint


def test_an_interactive_prompt_uses_getpass(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []
    monkeypatch.setattr("getpass.getpass", lambda text: asked.append(text) or "typed")
    got = read_secret(SecretSource.prompt(), prompt_text="Passphrase: ", interactive=True)
    assert got == bytearray(b"typed") and asked == ["Passphrase: "]


# --- helpers ----------------------------------------------------------------------------------------------


def test_helpers() -> None:
    assert default_uki_id("Web Server 2") == "web-server-2"
    assert default_uki_id("..Ünïcode ☃ name") == "n-code-name"
    assert default_uki_id("☃") == "shieldwright"
    assert parse_image_ref("2:/boot/vmlinuz") == (2, "/boot/vmlinuz")
    with pytest.raises(RecipeError):
        parse_image_ref("/boot/vmlinuz")
    params = explicit_kdf(
        EncryptionOptions(kdf="argon2id", kdf_params={"time": 5, "memory_kib": 65536, "parallel": 2})
    )
    assert isinstance(params, KdfParams)
    assert (params.type, params.time, params.memory_kib, params.parallel) == ("argon2id", 5, 65536, 2)
    assert kdf_params_dict(KdfParams.pbkdf2(4321, "sha512")) == {"iterations": 4321, "hash": "sha512"}
    assert explicit_kdf(EncryptionOptions()) is None


def test_recipes_are_plain_data(tmp_path: Path) -> None:
    """Copies compare equal and are independent: the CLI overrides fields on a loaded recipe."""
    r = full_recipe(tmp_path)
    c = copy.deepcopy(r)
    assert c == r
    c.catalog.version = "9.9.9.9"
    assert c != r and r.catalog.version == "1.65535.0.7"
    assert os.fspath(r.output.path).endswith("web.qcow2")


def test_the_documented_examples_are_valid_and_every_key_is_documented(tmp_path: Path) -> None:
    """docs/formats/recipe.md's examples load, and every key the writer can emit has a row in its tables."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "formats" / "recipe.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    assert len(blocks) == 2
    recipes = [recipe_from_dict(tomllib.loads(b), tmp_path) for b in blocks]
    assert recipes[0].uki.kernel == "2:/vmlinuz-6.1.0-28-cloud-amd64"
    assert recipes[1].encryption == EncryptionOptions()

    documented = set(re.findall(r"^\| `([a-z_]+)` \|", doc, re.M))
    existing = full_recipe(tmp_path)
    existing.uki = UkiOptions(source="existing", existing_uki="1:/EFI/Linux/x.efi", existing_action="keep")
    written: set[str] = set()
    for r in (full_recipe(tmp_path), existing):
        for key, value in recipe_to_dict(r, tmp_path).items():
            written |= set(value) if isinstance(value, dict) else {key}
    assert written - documented == set()


def test_overlong_paths_are_recipe_problems_not_an_oserror(tmp_path: Path) -> None:
    """Regression: ``Path.is_dir()`` re-raises ENAMETOOLONG, so ``firmware_certs = "a" * 5000`` or an
    output path under an overlong directory ended ``build`` with "cannot continue: File name too long"
    instead of naming the recipe key."""
    import subprocess
    import sys

    d = {**valid_dict(), "format_version": 2, "pcr": {"firmware_certs": "a" * 5000}}
    d["output"] = {"path": "b" * 5000 + "/out.raw"}
    r = recipe_from_dict(d, tmp_path)
    errors = [f.message for f in validate_recipe(r) if f.severity is Severity.ERROR]
    for key in ("pcr.firmware_certs", "output.path"):
        line = next(m for m in errors if m.startswith(f"{key}: "))
        assert "File name too long" in line and len(line) < 300, line
    d["output"] = {"path": "c" * 5000}  # the file name itself too long, its directory fine
    findings = validate_recipe(recipe_from_dict(d, tmp_path))
    errors = [f.message for f in findings if f.severity is Severity.ERROR]
    assert any(m.startswith("output.path: ") and "File name too long" in m for m in errors), errors

    recipe = tmp_path / "long.toml"
    recipe.write_text(toml_writer.dumps(d))
    proc = subprocess.run(
        [sys.executable, "-m", "app", "build", str(recipe)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shieldwright: error: the recipe cannot be built"), lines
    assert "Traceback" not in proc.stderr and "details in" not in proc.stderr
