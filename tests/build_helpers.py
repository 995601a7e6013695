"""Helpers for the build tests: signers, a fast recipe over the demo image, and independent readers.

The UEFI signer is Debian's snakeoil key (``/usr/share/ovmf``, passphrase "snakeoil"; it is in the db of
``OVMF_VARS_4M.snakeoil.fd``), the catalog signer an openssl-made certificate, so the catalog and the
manifest are checked by ``openssl cms`` against a certificate our code never generated. Partitions are cut
out of outputs with ``dd`` at the LBAs ``sgdisk`` reports, never with our own GPT reader.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from app.boot import vm
from app.progress import CancelToken
from app.signing.keys import load_signer
from app.signing.signer import KeySigner
from app.template.pipeline import BuildInputs, BuildProgress, BuildResult, run_build
from app.template.recipe import (
    BootOptions,
    CatalogOptions,
    EncryptionOptions,
    OutputOptions,
    Recipe,
    SecretSource,
    SigningOptions,
    UkiOptions,
)
from tests.conftest import run, sgdisk_partitions
from tests.signing.pe_helpers import TestKey, openssl_key

#: Distinctive, so a grep over the output folder finds it if it ever leaks.
PASSPHRASE = "pipeline-test provisioning passphrase 7f3a"
#: cryptsetup's floor: the KDF is a fixed cost the tests do not need to pay.
FAST_KDF = {"iterations": 1000, "hash": "sha256"}
MiB = 1024 * 1024


@dataclass(frozen=True)
class BuildKeys:
    uefi: KeySigner
    catalog: TestKey
    #: Holds "snakeoil" (the catalog key is unencrypted; a passphrase given for it is ignored).
    passphrase_file: Path

    @property
    def uefi_cert(self) -> Path:
        return vm.SNAKEOIL_CERT

    @property
    def uefi_key(self) -> Path:
        return vm.SNAKEOIL_KEY


def make_keys(directory: Path) -> BuildKeys:
    snakeoil = load_signer(vm.SNAKEOIL_CERT, vm.SNAKEOIL_KEY, vm.SNAKEOIL_PASSPHRASE)
    passphrase_file = directory / "snakeoil.pass"
    passphrase_file.write_bytes(vm.SNAKEOIL_PASSPHRASE)
    passphrase_file.chmod(0o600)
    return BuildKeys(snakeoil, openssl_key(directory, "catalog-signer"), passphrase_file)


def make_recipe(
    base: Path,
    out: Path,
    keys: BuildKeys,
    *,
    fmt: str = "raw",
    protect: tuple[int, ...] = (3,),
    cmdline: str | None = None,
    install_removable: bool = False,
    recovery_key_file: Path | None = None,
    name: str = "Pipeline test",
) -> Recipe:
    return Recipe(
        base_image=base,
        protect=list(protect),
        signing=SigningOptions(
            uefi_cert=keys.uefi_cert,
            uefi_key=keys.uefi_key,
            catalog_cert=keys.catalog.cert_path,
            catalog_key=keys.catalog.key_path,
            key_passphrase=SecretSource.file(keys.passphrase_file),
        ),
        uki=UkiOptions(cmdline=cmdline),
        encryption=EncryptionOptions(
            kdf="pbkdf2", kdf_params=dict(FAST_KDF), recovery_key_file=recovery_key_file
        ),
        catalog=CatalogOptions(name=name, version="1.2.3.4", block_size=MiB),
        boot=BootOptions(install_removable=install_removable),
        output=OutputOptions(path=out, format=fmt),
    )


def build(
    recipe: Recipe,
    keys: BuildKeys,
    *,
    progress: BuildProgress | None = None,
    cancel: CancelToken | None = None,
    recovery_key: str | None = None,
) -> BuildResult:
    inputs = BuildInputs(recipe, keys.uefi, keys.catalog.signer, bytearray(PASSPHRASE.encode()), recovery_key)
    return run_build(inputs, progress=progress, cancel=cancel)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


def lba_ranges(image: Path) -> dict[int, tuple[int, int]]:
    """``{number: (first_lba, last_lba)}`` as sgdisk reads the GPT."""
    return {int(p["number"]): (int(p["first_lba"]), int(p["last_lba"])) for p in sgdisk_partitions(image)}  # type: ignore[call-overload]


def extract_partition(image: Path, number: int, dest: Path) -> Path:
    """One partition's bytes, cut out with dd at the LBAs sgdisk reports."""
    first, last = lba_ranges(image)[number]
    run("dd", f"if={image}", f"of={dest}", "bs=512", f"skip={first}", f"count={last - first + 1}",
        "conv=sparse", "status=none")  # fmt: skip
    return dest


def partition_sha256(image: Path, number: int) -> str:
    """SHA-256 of a partition's bytes (LBAs from sgdisk, 512-byte sectors)."""
    first, last = lba_ranges(image)[number]
    h = hashlib.sha256()
    with open(image, "rb") as f:
        f.seek(first * 512)
        left = (last - first + 1) * 512
        while left:
            chunk = f.read(min(8 * MiB, left))
            assert chunk, "the image is shorter than its partition table says"
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


class StepHook(BuildProgress):
    """A BuildProgress that, when step ``at`` begins, cancels the build or raises ``error``."""

    def __init__(
        self, at: str, cancel: CancelToken | None = None, error: BaseException | None = None
    ) -> None:
        super().__init__()
        self.at, self.token, self.error = at, cancel, error
        self.steps_seen: list[str] = []

    def start_step(self, number: int, name: str, count: int) -> None:
        super().start_step(number, name, count)
        self.steps_seen.append(name)
        if name == self.at:
            if self.token is not None:
                self.token.cancel()
            if self.error is not None:
                raise self.error
