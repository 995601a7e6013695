"""Issue 4, "Done means" 2: our UKIs boot on real Secure Boot firmware, and PCR 11 is what we predicted.

Real firmware, real TPM, real kernel: QEMU q35 + ``OVMF_CODE_4M.secboot.fd`` + ``OVMF_VARS_4M.snakeoil.fd``
(Secure Boot on, Debian's snakeoil certificate in db) + swtpm, booting a whole-disk FAT ESP whose
``\\EFI\\BOOT\\BOOTX64.EFI`` is a UKI built by :func:`app.boot.uki.build_uki` from Debian 12's systemd-stub,
the Debian cloud kernel and the probe initrd of :mod:`tests.boot.qemu_harness`.

- Signed with the snakeoil key it boots; the PCR 11 the guest reads from its TPM equals
  :func:`app.boot.pcr.predict_pcr11`'s no-phase value (no systemd in the probe, so no phase words), in
  the sha256 and the sha1 bank, and equals ``systemd-measure calculate --phase=`` over the sections dumped
  from the UKI by objcopy — an independent computation of the same thing.
- Unsigned, or signed with a freshly generated key that is not in db, it does not boot: the kernel never
  starts, and OVMF reports ``Access Denied`` for the disk's boot option on the serial console.

The UKI carries ``.uname`` and ``.sbat`` too; Debian 12's stub (252) does not measure them, and the guest's
PCR 11 proves it (a prediction for stub >= 254, which measures both, differs).

Timings under TCG on the 2-core CI host (idle / busy with other test runs): the signed boot 11-15 s
(the firmware hands over at 6-10 s, the kernel banner ~1.5 s later); each refusal 7-12 s (the run stops at
"No bootable option or device was found."); the unsigned control boot without Secure Boot 13-20 s;
building the three UKIs 4-5 s. The whole file: 55-75 s.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from platformdirs import user_cache_path

from app.boot import vm
from app.boot.pcr import predict_pcr11
from app.boot.uki import UkiInputs, build_uki, inspect_uki
from app.signing.authenticode import authenticode_digest, list_signatures
from app.signing.keys import generate_key, generate_self_signed, load_signer
from app.signing.signer import KeySigner
from app.template.demo import extract_kernel, fetch_kernel_deb
from tests.boot.qemu_harness import (
    BOOT_MARKER,
    DONE_MARKER,
    PROBE_CMDLINE,
    build_probe_initrd,
    esp_with_uki,
    guest_pcrs,
)
from tests.conftest import require_tool, run

pytestmark = [pytest.mark.slow, pytest.mark.vm]

BANKS = ("sha1", "sha256")
#: Generous for TCG: a boot takes ~12 s here; a slow CI runner may take several times that.
BOOT_TIMEOUT = 120.0
#: A refusal shows within ~6 s; the run normally ends on the firmware's "no bootable option" line.
REFUSAL_TIMEOUT = 60.0
OS_RELEASE = 'ID=shieldwright-probe\nNAME="Shieldwright boot probe"\nVERSION_ID=1\n'
#: The sections systemd-measure (252) takes, by its option names; the same set stub 252 measures.
MEASURE_OPTIONS = {
    ".linux": "--linux",
    ".osrel": "--osrel",
    ".cmdline": "--cmdline",
    ".initrd": "--initrd",
    ".splash": "--splash",
    ".dtb": "--dtb",
    ".pcrpkey": "--pcrpkey",
}
SYSTEMD_MEASURE = Path("/usr/lib/systemd/systemd-measure")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secure-boot")


@pytest.fixture(scope="module")
def other_signer() -> KeySigner:
    """A key pair the firmware has never heard of: not in db, KEK or PK."""
    key = generate_key("rsa2048")
    return KeySigner(key, generate_self_signed(key, common_name="Shieldwright test key not in db"))


@pytest.fixture(scope="module")
def ukis(work: Path, other_signer: KeySigner) -> dict[str, bytes]:
    """The same UKI three ways: signed with the snakeoil key, unsigned, signed with a key not in db."""
    kernel = extract_kernel(fetch_kernel_deb(user_cache_path("shieldwright") / "debs"), work / "deb")
    inputs = UkiInputs(
        linux=kernel.vmlinuz.read_bytes(),
        initrds=[build_probe_initrd()],
        cmdline=PROBE_CMDLINE,
        os_release=OS_RELEASE,
    )
    snakeoil = load_signer(vm.SNAKEOIL_CERT, vm.SNAKEOIL_KEY, passphrase=vm.SNAKEOIL_PASSPHRASE)
    return {
        "snakeoil": build_uki(inputs, signer=snakeoil),
        "unsigned": build_uki(inputs, signer=None),
        "other": build_uki(inputs, signer=other_signer),
    }


@pytest.fixture(scope="module")
def esps(work: Path, ukis: dict[str, bytes]) -> dict[str, Path]:
    return {name: esp_with_uki(work / f"esp-{name}.img", uki) for name, uki in ukis.items()}


def _sbverify(uki: Path, cert_pem: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("sbverify"), "--cert", str(cert_pem), str(uki)], capture_output=True, text=True
    )


def test_the_three_ukis_differ_only_in_their_signatures(
    ukis: dict[str, bytes], work: Path, other_signer: KeySigner
) -> None:
    """So a refusal can only be the signature's doing; each signature is valid for its own key (sbverify)."""
    # Signing pads the image to 8 bytes before hashing (Authenticode); pad the unsigned one the same way.
    unsigned = ukis["unsigned"] + bytes(-len(ukis["unsigned"]) % 8)
    assert authenticode_digest(unsigned) == authenticode_digest(ukis["snakeoil"])
    assert authenticode_digest(ukis["snakeoil"]) == authenticode_digest(ukis["other"])
    assert list_signatures(ukis["unsigned"]) == []
    other_pem = work / "other.pem"
    other_pem.write_bytes(other_signer.certificate.public_bytes(serialization.Encoding.PEM))
    for name, cert, good in (
        ("snakeoil", vm.SNAKEOIL_CERT, True),
        ("other", other_pem, True),
        ("other", vm.SNAKEOIL_CERT, False),
    ):
        path = work / f"{name}.efi"
        path.write_bytes(ukis[name])
        proc = _sbverify(path, cert)
        assert (proc.returncode == 0) == good, (name, cert, proc.stdout, proc.stderr)


def _systemd_measure(uki: bytes, work: Path, bank: str) -> str:
    """PCR 11 after the stub's measurements, by systemd-measure over the sections objcopy cuts out."""
    require_tool("objcopy")
    assert SYSTEMD_MEASURE.exists(), "systemd-measure is missing (package systemd)"
    src = work / f"measure-{bank}.efi"
    src.write_bytes(uki)
    listing = run("objdump", "-h", src).stdout
    names = [ln.split()[1] for ln in listing.splitlines() if ln.split() and ln.split()[0].isdigit()]
    dumps = {name: work / f"section{name}" for name in names if name in MEASURE_OPTIONS}
    assert {".linux", ".osrel", ".cmdline", ".initrd"} <= dumps.keys(), names
    run(
        "objcopy",
        *[a for n, p in dumps.items() for a in ("--dump-section", f"{n}={p}")],
        src,
        work / "junk.efi",
    )
    out = run(
        SYSTEMD_MEASURE, "calculate", f"--bank={bank}", "--phase=",
        *[f"{MEASURE_OPTIONS[n]}={p}" for n, p in dumps.items()],
    ).stdout  # fmt: skip
    (line,) = [ln for ln in out.splitlines() if ln.startswith(f"11:{bank}=")]
    return line.split("=", 1)[1].strip().lower()


def test_snakeoil_signed_uki_boots_and_pcr11_matches_prediction(
    esps: dict[str, Path], ukis: dict[str, bytes], work: Path
) -> None:
    result = vm.boot(esps["snakeoil"], pcr_banks=BANKS, timeout=BOOT_TIMEOUT)
    where = f"ended={result.ended} after {result.elapsed} s, seen={result.seen}\n{result.tail()}"
    assert BOOT_MARKER in result.console, where
    assert DONE_MARKER in result.console, where
    assert result.ended == "exited", where  # the probe powered off; QEMU exited by itself
    assert not result.secure_boot_refused, where
    assert "Secure Boot is enabled" in result.console, where  # the kernel's EFI stub saw Secure Boot on

    measured = guest_pcrs(result.console)
    assert set(BANKS) <= measured.keys(), where
    predicted = predict_pcr11(ukis["snakeoil"], banks=BANKS)
    for bank in BANKS:
        assert measured[bank][11] == predicted[bank][""].lower(), (bank, measured[bank], predicted[bank])
        assert measured[bank][11] == _systemd_measure(ukis["snakeoil"], work, bank), bank
    assert f"PCR11={measured['sha256'][11].upper()}" in result.console
    # Debian 12's stub 252 skips .uname and .sbat; a stub >= 254 would measure them and read differently.
    assert {".uname", ".sbat"} <= {s.name for s in inspect_uki(ukis["snakeoil"]).sections}
    newer = predict_pcr11(ukis["snakeoil"], stub_version="254")
    assert measured["sha256"][11] != newer["sha256"][""]


@pytest.mark.parametrize("name", ["unsigned", "other"])
def test_uki_not_signed_by_db_is_refused(esps: dict[str, Path], name: str) -> None:
    """Unsigned, or signed by a key the firmware does not trust: OVMF says Access Denied; Linux never runs."""
    result = vm.boot(esps[name], pcr_banks=BANKS, timeout=REFUSAL_TIMEOUT)
    where = f"ended={result.ended} after {result.elapsed} s, seen={result.seen}\n{result.tail()}"
    assert BOOT_MARKER not in result.console, where
    assert vm.KERNEL_BANNER not in result.console, where
    assert "EFI stub:" not in result.console, where  # not even the kernel's EFI stub ran
    assert result.secure_boot_refused, where
    assert result.ended == "no-boot-option", where
    assert any("Access Denied" in line and "EFI Internal Shell" not in line for line in result.refusals), (
        where
    )


def test_the_unsigned_uki_boots_when_secure_boot_is_off(
    esps: dict[str, Path], ukis: dict[str, bytes]
) -> None:
    """The control for the refusals: on OVMF without Secure Boot the very same unsigned UKI boots, so what
    stops it above is the signature check and nothing else. Its PCR 11 is the signed one's prediction: the
    signature is not a measured section."""
    result = vm.boot(esps["unsigned"], firmware=vm.Firmware.insecure(), timeout=BOOT_TIMEOUT)
    where = f"ended={result.ended} after {result.elapsed} s, seen={result.seen}\n{result.tail()}"
    assert BOOT_MARKER in result.console and result.ended == "exited", where
    assert "Secure Boot is enabled" not in result.console, where
    assert guest_pcrs(result.console)["sha256"][11] == predict_pcr11(ukis["snakeoil"])["sha256"][""], where
