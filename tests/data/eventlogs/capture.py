"""Regenerate the captured event logs in this directory (see README.md): boots QEMU, takes a minute or less.

    .venv/bin/python tests/data/eventlogs/capture.py snakeoil-uki   # ovmf-snakeoil-uki.{bin,json}
    .venv/bin/python tests/data/eventlogs/capture.py ms-shim-uki    # ovmf-ms-shim-uki.{bin,json,db.pem}

Prints the boot timings and the package versions used; the README records them by hand.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from platformdirs import user_cache_path  # noqa: E402

from app.boot import vm  # noqa: E402
from app.boot.uki import UkiInputs, build_uki  # noqa: E402
from app.signing.keys import load_signer  # noqa: E402
from app.template.demo import extract_kernel, fetch_kernel_deb  # noqa: E402
from tests.boot import qemu_harness as harness  # noqa: E402

BANKS = ("sha1", "sha256")
OS_RELEASE = 'ID=shieldwright-probe\nNAME="Shieldwright boot probe"\nVERSION_ID=1\n'


def capture_snakeoil_uki(work: Path) -> tuple[vm.BootResult, dict[str, bytes]]:
    """The probe UKI, snakeoil-signed, as ``\\EFI\\BOOT\\BOOTX64.EFI`` on OVMF snakeoil Secure Boot."""
    kernel = extract_kernel(fetch_kernel_deb(user_cache_path("shieldwright") / "debs"), work / "deb")
    inputs = UkiInputs(
        linux=kernel.vmlinuz.read_bytes(),
        initrds=[harness.build_probe_initrd()],
        cmdline=harness.PROBE_CMDLINE,
        os_release=OS_RELEASE,
    )
    signer = load_signer(vm.SNAKEOIL_CERT, vm.SNAKEOIL_KEY, passphrase=vm.SNAKEOIL_PASSPHRASE)
    esp = harness.esp_with_uki(work / "esp.img", build_uki(inputs, signer=signer))
    return vm.boot(esp, pcr_banks=BANKS, timeout=180.0), {}


def capture_ms_shim_uki(work: Path) -> tuple[vm.BootResult, dict[str, bytes]]:
    """A whole template disk booted through Debian's Microsoft-signed shim and its fallback; also keeps
    the (fresh) certificate that was added to db, which PCR 7 depends on."""
    from tests.boot.shim_chain import boot_shim_chain, summary

    chain = boot_shim_chain(work)
    print(summary(chain))
    return chain.result, {"db.pem": chain.key.cert_path.read_bytes()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("which", choices=["snakeoil-uki", "ms-shim-uki"])
    args = parser.parse_args()
    capture = {"snakeoil-uki": capture_snakeoil_uki, "ms-shim-uki": capture_ms_shim_uki}[args.which]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sw-capture-") as tmp:
        result, extra = capture(Path(tmp))
    probe = result.runs[-1].console if result.runs else result.console  # the boot that ran the probe
    if harness.DONE_MARKER not in probe:
        print(f"the probe did not finish (ended={result.ended}):\n{result.tail()}", file=sys.stderr)
        return 1
    name = f"ovmf-{args.which}"
    paths = list(harness.save_capture(name, probe))
    for suffix, data in extra.items():
        paths.append(harness.EVENTLOG_DIR / f"{name}.{suffix}")
        paths[-1].write_bytes(data)
    for n, run in enumerate(result.runs):
        print(
            f"boot {n}: started {run.started} s, {run.elapsed} s, {run.ended} ({run.exit_reason}), {run.seen}"
        )
    print(f"total {time.monotonic() - start:.1f} s; wrote {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
