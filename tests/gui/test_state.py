"""WizardState.recipe(): a state filled the way the pages fill it becomes a Recipe with the same choices,
which saves and loads unchanged and never carries the wizard's in-memory secrets. No Qt needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.disk.layout import inspect_image
from app.findings import Severity
from app.gui.state import CatalogChoice, EncryptionChoice, OutputChoice, SigningChoice, UkiChoice, WizardState
from app.luks.kdf import KdfParams
from app.signing.certificates import describe_certificate
from app.signing.keys import load_signer
from app.template.checks import validate_recipe
from app.template.recipe import (
    CatalogOptions,
    EncryptionOptions,
    OutputOptions,
    RecipeError,
    SecretSource,
    UkiOptions,
    kdf_params_dict,
)
from app.template.recipe_file import load_recipe, recipe_to_dict, save_recipe
from tests.signing.pe_helpers import TestKey, openssl_key

PASSPHRASE = "generated-provisioning-passphrase"
RECOVERY = "cbdefghi-jklnrtuv-cbdefghi-jklnrtuv"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TestKey]:
    d = tmp_path_factory.mktemp("state-keys")
    return {"uefi": openssl_key(d, "state-db"), "catalog": openssl_key(d, "state-vsc")}


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
    uki = state.uki.options  # Boot image: a kernel and its initrd from the XBOOTLDR
    uki.source = "image"
    uki.kernel = "2:/vmlinuz-6.1.0-28-cloud-amd64"
    uki.initrds = ["2:/initrd.img-6.1.0-28-cloud-amd64"]
    uki.cmdline = 'console=ttyS0 "quoted"'
    uki.os_release = 'ID=debian\nPRETTY_NAME="Debian 12"\n'
    state.uki.set_built(b"MZ...uki bytes...", "fingerprint")
    passphrase_file = tmp_path / "provisioning.txt"
    passphrase_file.write_text(PASSPHRASE)
    passphrase_file.chmod(0o600)
    enc = EncryptionChoice(  # Encryption
        EncryptionOptions(
            partitions=[3],
            sector_size=512,
            kdf="pbkdf2",
            iter_time_ms=1500,
            kdf_params=kdf_params_dict(KdfParams.pbkdf2(123_456, "sha256")),
            passphrase=SecretSource.file(passphrase_file),
        )
    )
    enc.set_passphrase(PASSPHRASE, generated=True)
    enc.recovery_key = True
    enc.set_recovery_key(RECOVERY)
    enc.recovery_key_acknowledged = True
    state.encryption = enc
    state.catalog = CatalogChoice(CatalogOptions("Web server", "2.1.0.7", 4 << 20))  # Signature catalog
    return state


def test_the_recipe_carries_every_choice(small_disk: Path, keys: dict[str, TestKey], tmp_path: Path) -> None:
    state = filled_state(small_disk, keys, tmp_path)
    out = tmp_path / "web.vhdx"
    r = state.recipe(output=out, output_format="vhdx")

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
    o = state.uki.options
    assert (r.uki.cmdline, r.uki.os_release, r.uki.stub) == (o.cmdline, o.os_release, None)
    e = r.encryption
    assert (e.sector_size, e.kdf, e.iter_time_ms) == (512, "pbkdf2", 1500)
    assert e.kdf_params == {"iterations": 123_456, "hash": "sha256"}
    params = state.encryption.kdf_params  # the page's view of it (a fresh salt each time)
    assert params is not None and (params.type, params.time, params.hash) == ("pbkdf2", 123_456, "sha256")
    assert e.passphrase == SecretSource.file(tmp_path / "provisioning.txt")
    assert e.recovery_key_file == tmp_path / "web.vhdx.recovery-key.txt"
    assert e.partitions == [3] and r.encrypted_partitions == [3]  # partition 2 is catalogued only
    assert (r.catalog.name, r.catalog.version, r.catalog.block_size) == ("Web server", "2.1.0.7", 4 << 20)
    assert (r.output.path, r.output.format) == (out, "vhdx")
    assert r.uki_id == "web-server"

    # The recipe file's data says the same (one schema: the recipe's own).
    data = recipe_to_dict(r, tmp_path)
    assert data["protect"] == [2, 3] and data["encryption"]["partitions"] == [3]
    assert data["encryption"]["kdf_params"]["iterations"] == 123_456
    assert data["uki"]["kernel"] == r.uki.kernel and data["catalog"]["name"] == "Web server"

    assert [f for f in validate_recipe(r) if f.severity is Severity.ERROR] == []


def test_the_recipe_is_a_copy(small_disk: Path, keys: dict[str, TestKey], tmp_path: Path) -> None:
    """Changing the recipe (the build's, a saved one) never changes the wizard's choices."""
    state = filled_state(small_disk, keys, tmp_path)
    r = state.recipe(output=tmp_path / "web.raw")
    r.uki.initrds.append("2:/other")
    r.encryption.kdf_params["iterations"] = 1  # type: ignore[index]
    r.catalog.name = "changed"
    r.protect.append(4)
    assert state.uki.options.initrds == ["2:/initrd.img-6.1.0-28-cloud-amd64"]
    assert state.encryption.options.kdf_params == {"iterations": 123_456, "hash": "sha256"}
    assert state.catalog.options.name == "Web server" and state.protected == {2, 3}


def test_saved_and_loaded_unchanged_without_the_secrets(
    small_disk: Path, keys: dict[str, TestKey], tmp_path: Path
) -> None:
    state = filled_state(small_disk, keys, tmp_path)
    r = state.recipe(output=tmp_path / "web.raw")
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
    state.output = OutputChoice(OutputOptions(tmp_path / "t.qcow2", "qcow2"))
    r = state.recipe()
    assert (r.output.path, r.output.format) == (tmp_path / "t.qcow2", "qcow2")
    assert state.recipe(output_format="raw").output.format == "raw"  # arguments win


def test_defaults_and_same_certificate(small_disk: Path, keys: dict[str, TestKey], tmp_path: Path) -> None:
    state = filled_state(small_disk, keys, tmp_path)
    state.catalog_same_as_uefi = True
    state.catalog_signing = state.uefi_signing  # what the page does when "same as UEFI" is checked
    enc = state.encryption.options
    enc.partitions = [2, 3]
    state.encryption.recovery_key = False
    enc.passphrase = SecretSource.prompt()
    enc.kdf_params = None
    r = state.recipe(output=tmp_path / "t.raw")
    assert r.signing.catalog_cert is None and r.signing.catalog_key is None
    assert r.encryption.partitions is None  # = every protected partition
    assert r.encryption.recovery_key_file is None
    assert r.encryption.passphrase == SecretSource.prompt()
    assert r.encryption.kdf_params is None  # not calibrated: the build calibrates


def test_pages_not_shown_yet_give_the_build_defaults(
    small_disk: Path, keys: dict[str, TestKey], tmp_path: Path
) -> None:
    state = filled_state(small_disk, keys, tmp_path)
    state.uki = UkiChoice()  # the Boot image page chose nothing: the newest kernel in the image
    state.encryption = None  # the Encryption page was never shown
    r = state.recipe(output=tmp_path / "t.raw")
    assert r.uki == UkiOptions() and r.encryption == EncryptionOptions()
    assert r.encrypted_partitions == [2, 3]


def test_boot_sources(small_disk: Path, keys: dict[str, TestKey], tmp_path: Path) -> None:
    """Each UKI source as the Boot image page writes it (only the keys that source uses)."""
    state = filled_state(small_disk, keys, tmp_path)
    state.uki = UkiChoice(
        UkiOptions(source="existing", existing_uki="1:/EFI/Linux/debian.efi", existing_action="resign")
    )
    r = state.recipe(output=tmp_path / "t.raw")
    assert (r.uki.source, r.uki.existing_uki, r.uki.existing_action) == (
        "existing",
        "1:/EFI/Linux/debian.efi",
        "resign",
    )
    assert r.uki.kernel is None and r.uki.cmdline is None  # a re-signed UKI is not rebuilt
    assert validate_recipe(r, check_files=False) == []

    o = state.uki.options
    o.existing_action, o.kernel, o.cmdline = "replace", "2:/vmlinuz", "x"
    r = state.recipe(output=tmp_path / "t.raw")
    assert (r.uki.existing_action, r.uki.kernel, r.uki.cmdline) == ("replace", "2:/vmlinuz", "x")

    stub = tmp_path / "linuxx64.efi.stub"
    state.uki = UkiChoice(UkiOptions(source="files", kernel=str(tmp_path / "vmlinuz"),
                                     initrds=[str(tmp_path / "i1")], cmdline="", os_release="",
                                     stub=stub))  # fmt: skip
    r = state.recipe(output=tmp_path / "t.raw")
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
        state.recipe(output=output)
    assert info.value.key == key and info.value.message.startswith(f"{key}: ")
