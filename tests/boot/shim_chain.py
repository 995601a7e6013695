"""Test support: a whole template disk booted through Debian's Microsoft-signed shim and its fallback.

The chain a cloud VM with Microsoft's keys runs, on real firmware:

1. OVMF (``OVMF_CODE_4M.secboot.fd``; variables: ``OVMF_VARS_4M.ms.fd`` plus the template's signing
   certificate appended to db) finds no boot entry for the disk and starts the removable-media path
   ``\\EFI\\BOOT\\BOOTX64.EFI`` = shim (Microsoft-signed, admitted by the Microsoft UEFI CA in db).
2. Shim sees ``fbx64.efi`` beside it and runs the fallback (Debian-signed, admitted by the Debian CA shim
   carries). The fallback reads ``\\EFI\\debian\\BOOTX64.CSV`` (written by the template build), creates
   ``Boot0000`` = ``\\EFI\\debian\\shimx64.efi`` with the UKI's path as load option, and — a TPM is present
   — resets the machine, so the next boot is measured like every later one.
3. Second boot: OVMF runs the new entry; shim loads ``\\EFI\\Linux\\<id>.efi`` (our UKI, signed with the
   test certificate that is in db; shim checks db and the UKI's ``.sbat``), the stub starts the kernel and
   the probe initrd of :mod:`tests.boot.qemu_harness` prints the event log and the PCRs and powers off.

The template is made by the project's real build (:func:`app.template.pipeline.run_build`) from the demo
image built with ``boot_loader="shim"``; the UKI's kernel is the cached Debian cloud kernel, its only initrd
the probe. The shim base image is cached under ``~/.cache/shieldwright/fixtures`` keyed by its inputs
(:func:`shim_base_image`); the template and its key are made fresh each time (a few seconds).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_cache_path

from app.boot import vm
from app.template import demo
from app.template.pipeline import BuildInputs, BuildResult, run_build
from app.template.recipe import (
    BootOptions,
    CatalogOptions,
    EncryptionOptions,
    OutputOptions,
    PcrOptions,
    Recipe,
    SigningOptions,
    UkiOptions,
)
from tests.boot.qemu_harness import DONE_MARKER, PROBE_CMDLINE, build_probe_initrd
from tests.build_helpers import FAST_KDF, PASSPHRASE
from tests.conftest import require_tool, run
from tests.signing.pe_helpers import TestKey, openssl_key

MiB = 1024 * 1024
BANKS = ("sha1", "sha256")
#: The owner GUID of the certificate we add to db; it is part of the PCR 7 authority event when the
#: certificate admits the UKI. Shieldwright's own (``shieldwright firmware vars``' default), so a store
#: made by either tool measures the same.
DB_OWNER = "d6d93ac7-5a0b-4305-a125-a8f2f7bdafd1"
UKI_ID = "shieldwright-probe"
#: Generous for TCG on 2 busy cores: two firmware boots and a kernel (~40 s here).
BOOT_TIMEOUT = 600.0
#: What shim's fallback prints (fallback.c) when it made the entry and when it is about to reset.
FALLBACK_CREATED = "Creating boot entry"
FALLBACK_RESET = "Reset System"
FIXTURES = user_cache_path("shieldwright") / "fixtures"


@dataclass(frozen=True)
class ShimChainBoot:
    """A shim-chain boot: the boot itself, what was booted, and what it cost."""

    result: vm.BootResult
    template: Path
    manifest: Path
    vars_file: Path
    key: TestKey
    build_seconds: float
    versions: dict[str, str]

    @property
    def first(self) -> vm.BootRun:
        return self.result.runs[0]

    @property
    def last(self) -> vm.BootRun:
        return self.result.runs[-1]


def _inputs_key(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in paths:
        h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def shim_base_image(cache: Path = FIXTURES) -> Path:
    """The demo image with ``boot_loader="shim"``, built once per set of inputs and kept (read-only).

    Keyed by the kernel and shim .debs (their names carry the versions), the code that lays the image out
    (``app/template/demo.py``, the cpio writer), and busybox and systemd-boot: the build is reproducible,
    so equal inputs make the same image.
    """
    debs_dir = user_cache_path("shieldwright") / "debs"
    kernel_deb = demo.fetch_kernel_deb(debs_dir)
    shim_debs = demo.fetch_shim_debs(debs_dir)
    code = [Path(demo.__file__), Path(demo.__file__).parents[1] / "boot" / "cpio.py"]
    names = " ".join(p.name for p in [kernel_deb, *shim_debs.values()])
    key = _inputs_key([*code, demo.BUSYBOX, demo.SYSTEMD_BOOT_EFI], names)
    path = cache / f"demo-shim-{key}.img"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        for old in cache.glob("demo-shim-*.img"):
            old.chmod(0o644)
            old.unlink()
        demo.build_demo_image(path, boot_loader="shim", cache_dir=debs_dir, overwrite=False)
        path.chmod(0o444)
    return path


def probe_kernel_and_initrd(work: Path) -> tuple[Path, Path]:
    """The cached Debian cloud kernel and the probe initrd as files, world-readable (the build publishes
    them in the clear in the ESP and refuses private host files)."""
    kernel = demo.extract_kernel(
        demo.fetch_kernel_deb(user_cache_path("shieldwright") / "debs"), work / "deb"
    )
    vmlinuz = work / "vmlinuz"
    shutil.copyfile(kernel.vmlinuz, vmlinuz)
    initrd = work / "probe-initrd.img"
    initrd.write_bytes(build_probe_initrd())
    for f in (vmlinuz, initrd):
        f.chmod(0o644)
    shutil.rmtree(work / "deb", ignore_errors=True)
    return vmlinuz, initrd


def build_shim_template(
    base: Path, work: Path, key: TestKey, firmware_vars: Path | None = None
) -> BuildResult:
    """A raw template of ``base``: root (3) encrypted, the probe UKI signed with ``key`` at
    ``\\EFI\\Linux\\shieldwright-probe.efi`` and the fallback CSV in ``\\EFI\\debian``; shim stays at the
    removable path (``install_removable`` off)."""
    vmlinuz, initrd = probe_kernel_and_initrd(work)
    passphrase_file = work / "key.pass"  # the openssl key has no passphrase; the recipe wants a source
    passphrase_file.write_text("unused\n")
    passphrase_file.chmod(0o600)
    recipe = Recipe(
        base_image=base,
        protect=[3],
        signing=SigningOptions(uefi_cert=key.cert_path, uefi_key=key.key_path),
        uki=UkiOptions(source="files", kernel=str(vmlinuz), initrds=[str(initrd)], cmdline=PROBE_CMDLINE),
        encryption=EncryptionOptions(kdf="pbkdf2", kdf_params=dict(FAST_KDF)),
        catalog=CatalogOptions(name="Shim chain probe", version="1.0.0.0", block_size=MiB),
        boot=BootOptions(uki_id=UKI_ID, vendor_dir=demo.SHIM_VENDOR_DIR, install_removable=False),
        output=OutputOptions(path=work / "template.raw", format="raw"),
        pcr=PcrOptions(firmware_vars=firmware_vars, bank="sha1"),
    )
    inputs = BuildInputs(recipe, key.signer, key.signer, bytearray(PASSPHRASE.encode()))
    return run_build(inputs)


def virt_fw_vars() -> str:
    """virt-fw-vars (PyPI ``virt-firmware``, a test extra): in the venv's bin, else on PATH."""
    beside = Path(sys.executable).parent / "virt-fw-vars"
    return str(beside) if beside.exists() else require_tool("virt-fw-vars")


def make_vars_store(cert: Path, dest: Path) -> Path:
    """Debian's ``OVMF_VARS_4M.ms.fd`` (Microsoft's keys) with ``cert`` appended to db (owner
    :data:`DB_OWNER`), by virt-fw-vars: an implementation independent of ours."""
    tool = virt_fw_vars()
    source = vm.Firmware.microsoft().vars_template
    run(tool, "--input", source, "--add-db", DB_OWNER, cert, "--output", dest)
    return dest


def boot_shim_chain(work: Path, *, timeout: float = BOOT_TIMEOUT) -> ShimChainBoot:
    """Build the template, make the variable store, boot it with ``resets=1``; see the module docstring."""
    base = shim_base_image()
    key = openssl_key(work, "shieldwright-shim-chain-test")
    # The store first: the build predicts PCR 4 and 7 on it ([pcr] firmware_vars), read by our reader from
    # a file virt-fw-vars wrote; the boot then runs on a copy (the firmware writes its own boot entry).
    store = make_vars_store(key.cert_path, work / "vars.fd")
    pristine = work / "vars-before-boot.fd"
    shutil.copyfile(store, pristine)
    start = time.monotonic()
    built = build_shim_template(base, work, key, firmware_vars=pristine)
    build_seconds = round(time.monotonic() - start, 1)
    result = vm.boot(
        built.output,
        firmware=vm.Firmware.microsoft(),
        vars_file=store,
        pcr_banks=BANKS,
        resets=1,
        timeout=timeout,
    )
    return ShimChainBoot(result, built.output, built.manifest, store, key, build_seconds, shim_versions())


def shim_versions() -> dict[str, str]:
    """Package → version of the .debs the chain was built from (kernel, shim, fallback)."""
    debs_dir = user_cache_path("shieldwright") / "debs"
    debs = [demo.fetch_kernel_deb(debs_dir), *demo.fetch_shim_debs(debs_dir).values()]
    out = {}
    for deb in debs:
        fields = run("dpkg-deb", "-f", deb, "Package", "Version").stdout
        parsed = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
        out[parsed["Package"]] = parsed["Version"]
    return out


def summary(boot: ShimChainBoot) -> str:
    """A JSON line for logs and reports: timings, runs and versions (no console)."""
    return json.dumps(
        {
            "build_seconds": boot.build_seconds,
            "runs": [
                {"started": r.started, "elapsed": r.elapsed, "ended": r.ended, "exit_reason": r.exit_reason,
                 "seen": r.seen, "probe_done": DONE_MARKER in r.console}
                for r in boot.result.runs
            ],
            "versions": boot.versions,
        }
    )  # fmt: skip
