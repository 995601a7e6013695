"""WizardState → Recipe: a state filled the way the pages fill it becomes a Recipe with the same choices,
which saves and loads unchanged and never carries the wizard's in-memory secrets. No Qt needed."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from app.boot.sources import BootFile
from app.disk.layout import inspect_image
from app.findings import Severity
from app.gui.recipe_bridge import recipe_from_wizard_state
from app.gui.state import BootChoice, CatalogChoice, EncryptionChoice, SigningChoice, WizardState
from app.luks.kdf import KdfParams
from app.signing.certificates import describe_certificate
from app.signing.keys import load_signer
from app.template.recipe import RecipeError, SecretSource, load_recipe, save_recipe, validate_recipe
from tests.signing.pe_helpers import TestKey, openssl_key

PASSPHRASE = "generated-provisioning-passphrase"
RECOVERY = "cbdefghi-jklnrtuv-cbdefghi-jklnrtuv"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TestKey]:
    d = tmp_path_factory.mktemp("bridge-keys")
    return {"uefi": openssl_key(d, "bridge-db"), "catalog": openssl_key(d, "bridge-vsc")}


def choice(key: TestKey, purpose: str) -> SigningChoice:
    """What the Signing certificates page stores after loading a certificate and its key."""
    signer = load_signer(key.cert_path, key.key_path)
    info = describe_certificate(signer.certificate, purpose=purpose)  # type: ignore[arg-type]
    return SigningChoice(cert_path=key.cert_path, key_path=key.key_path, signer=signer, info=info)


def filled_state(small_disk: Path, keys: dict[str, TestKey], tmp_path: Path) -> WizardState:
    """Every page visited, in order, each writing what it writes."""
    state = WizardState()
    state.set_image(small_disk, inspect_image(small_disk))  # Base image: protects XBOOTLDR and root
    assert state.protected == {2, 3}
    state.uefi_signing = choice(keys["uefi"], "uefi")  # Signing certificates
    state.catalog_same_as_uefi = False
    state.catalog_signing = choice(keys["catalog"], "catalog")
    state.boot.source = "image"  # Boot image: a kernel and its initrd from the XBOOTLDR
    state.boot.kernel = BootFile(2, "/vmlinuz-6.1.0-28-cloud-amd64", "kernel", 8_000_000)
    state.boot.initrds = [BootFile(2, "/initrd.img-6.1.0-28-cloud-amd64", "initrd", 30_000_000)]
    state.boot.cmdline = 'console=ttyS0 "quoted"'
    state.boot.os_release = 'ID=debian\nPRETTY_NAME="Debian 12"\n'
    state.boot.set_built(b"MZ...uki bytes...", "fingerprint")
    passphrase_file = tmp_path / "provisioning.txt"
    passphrase_file.write_text(PASSPHRASE)
    passphrase_file.chmod(0o600)
    enc = EncryptionChoice(partitions={3}, sector_size=512, kdf="pbkdf2", iter_time_ms=1500)  # Encryption
    enc.kdf_params = KdfParams.pbkdf2(123_456, "sha256")
    enc.set_passphrase(PASSPHRASE, generated=True)
    enc.passphrase_file = passphrase_file
    enc.recovery_key = True
    enc.set_recovery_key(RECOVERY)
    enc.recovery_key_acknowledged = True
    state.encryption = enc
    state.catalog = CatalogChoice("Web server", "2.1.0.7", 4 << 20)  # Signature catalog
    return state


def test_the_recipe_carries_every_choice(small_disk: Path, keys: dict[str, TestKey], tmp_path: Path) -> None:
    state = filled_state(small_disk, keys, tmp_path)
    out = tmp_path / "web.vhdx"
    r = recipe_from_wizard_state(state, output=out, output_format="vhdx")

    assert r.base_image == small_disk and r.protect == [2, 3]
    assert (r.signing.uefi_cert, r.signing.uefi_key) == (keys["uefi"].cert_path, keys["uefi"].key_path)
    assert (r.signing.catalog_cert, r.signing.catalog_key) == (
        keys["catalog"].cert_path,
        keys["catalog"].key_path,
    )
    assert r.signing.key_passphrase == SecretSource.prompt()
    assert r.uki.source == "image"
    assert r.uki.kernel == "2:/vmlinuz-6.1.0-28-cloud-amd64"
    assert r.uki.initrds == ["2:/initrd.img-6.1.0-28-cloud-amd64"]
    assert (r.uki.cmdline, r.uki.os_release, r.uki.stub) == (state.boot.cmdline, state.boot.os_release, None)
    e = r.encryption
    assert (e.sector_size, e.kdf, e.iter_time_ms) == (512, "pbkdf2", 1500)
    assert e.kdf_params == {"iterations": 123_456, "hash": "sha256"}
    assert e.passphrase == SecretSource.file(tmp_path / "provisioning.txt")
    assert e.recovery_key_file == tmp_path / "web.vhdx.recovery-key.txt"
    assert e.partitions == [3] and r.encrypted_partitions == [3]  # partition 2 is catalogued only
    assert (r.catalog.name, r.catalog.version, r.catalog.block_size) == ("Web server", "2.1.0.7", 4 << 20)
    assert (r.output.path, r.output.format) == (out, "vhdx")
    assert r.uki_id == "web-server"

    # The same choices the state itself reports for the recipe (its own, older summary).
    summary = state.to_recipe_dict()
    assert r.protect == summary["image"]["protected"]
    assert e.kdf_params["iterations"] == summary["encryption"]["kdf"]["params"]["iterations"]
    assert sorted(state.encryption.partitions) == summary["encryption"]["partitions"] == e.partitions

    assert [f for f in validate_recipe(r) if f.severity is Severity.ERROR] == []


def test_saved_and_loaded_unchanged_without_the_secrets(
    small_disk: Path, keys: dict[str, TestKey], tmp_path: Path
) -> None:
    state = filled_state(small_disk, keys, tmp_path)
    r = recipe_from_wizard_state(state, output=tmp_path / "web.raw")
    path = save_recipe(r, tmp_path / "web.toml")
    assert load_recipe(path) == r
    text = path.read_text()
    assert PASSPHRASE not in text and RECOVERY not in text
    assert "uki bytes" not in text and "BEGIN" not in text  # no UKI, no key material
    assert state.encryption.passphrase == bytearray(PASSPHRASE.encode())  # the wizard keeps its own


def test_the_review_pages_output_choice_is_used(
    small_disk: Path, keys: dict[str, TestKey], tmp_path: Path
) -> None:
    state = filled_state(small_disk, keys, tmp_path)
    state.output = types.SimpleNamespace(path=tmp_path / "t.qcow2", format="qcow2")  # type: ignore[attr-defined]
    r = recipe_from_wizard_state(state)
    assert (r.output.path, r.output.format) == (tmp_path / "t.qcow2", "qcow2")
    assert recipe_from_wizard_state(state, output_format="raw").output.format == "raw"  # arguments win


def test_defaults_and_same_certificate(small_disk: Path, keys: dict[str, TestKey], tmp_path: Path) -> None:
    state = filled_state(small_disk, keys, tmp_path)
    state.catalog_same_as_uefi = True
    state.catalog_signing = state.uefi_signing  # what the page does when "same as UEFI" is checked
    state.encryption.partitions = {2, 3}
    state.encryption.recovery_key = False
    state.encryption.passphrase_file = None
    state.encryption.kdf_params = None
    r = recipe_from_wizard_state(state, output=tmp_path / "t.raw")
    assert r.signing.catalog_cert is None and r.signing.catalog_key is None
    assert r.encryption.partitions is None  # = every protected partition
    assert r.encryption.recovery_key_file is None
    assert r.encryption.passphrase == SecretSource.prompt()
    assert r.encryption.kdf_params is None  # not calibrated: the build calibrates


def test_boot_sources(small_disk: Path, keys: dict[str, TestKey], tmp_path: Path) -> None:
    state = filled_state(small_disk, keys, tmp_path)
    existing = BootFile(1, "/EFI/Linux/debian.efi", "uki", 40_000_000)
    state.boot = BootChoice(
        source="existing-uki", existing_uki=existing, existing_action="re-sign", cmdline="x"
    )
    r = recipe_from_wizard_state(state, output=tmp_path / "t.raw")
    assert (r.uki.source, r.uki.existing_uki, r.uki.existing_action) == (
        "existing",
        "1:/EFI/Linux/debian.efi",
        "resign",
    )
    assert r.uki.kernel is None and r.uki.cmdline is None  # a re-signed UKI is not rebuilt
    assert validate_recipe(r, check_files=False) == []

    state.boot.existing_action = "replace"
    state.boot.kernel = BootFile(2, "/vmlinuz", "kernel", 1)
    r = recipe_from_wizard_state(state, output=tmp_path / "t.raw")
    assert (r.uki.existing_action, r.uki.kernel, r.uki.cmdline) == ("replace", "2:/vmlinuz", "x")

    stub = tmp_path / "linuxx64.efi.stub"
    state.boot = BootChoice(source="files", kernel_path=tmp_path / "vmlinuz", initrd_paths=[tmp_path / "i1"],
                            cmdline="", os_release="", stub_path=stub)  # fmt: skip
    r = recipe_from_wizard_state(state, output=tmp_path / "t.raw")
    assert (r.uki.source, r.uki.kernel, r.uki.initrds) == (
        "files",
        str(tmp_path / "vmlinuz"),
        [str(tmp_path / "i1")],
    )
    assert (r.uki.cmdline, r.uki.os_release, r.uki.stub) == ("", "", stub)
    assert load_recipe(save_recipe(r, tmp_path / "files.toml")) == r


@pytest.mark.parametrize(
    ("unset", "key"),
    [
        ("image", "base_image"),
        ("uefi", "signing.uefi_cert"),
        ("catalog", "catalog.name"),
        ("output", "output.path"),
    ],
)
def test_choices_not_made_yet_name_the_key(
    small_disk: Path, keys: dict[str, TestKey], tmp_path: Path, unset: str, key: str
) -> None:
    state = filled_state(small_disk, keys, tmp_path)
    output = None if unset == "output" else tmp_path / "t.raw"
    if unset == "image":
        state.image_path = None
    elif unset == "uefi":
        state.uefi_signing = None
    elif unset == "catalog":
        state.catalog = None
    with pytest.raises(RecipeError) as info:
        recipe_from_wizard_state(state, output=output)
    assert info.value.key == key and info.value.message.startswith(f"{key}: ")
