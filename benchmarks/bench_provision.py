"""``shieldwright provision`` of a > 2 GiB template against a sparse copy of it (issue 15, Done means 5).

    .venv/bin/python benchmarks/bench_provision.py [--root-mib 1900] [--repeat 2] [--dir DIR]

The template is built once by ``shieldwright build`` from bench_build.py's demo-like input (ESP,
XBOOTLDR, a ``--root-mib`` ext4 root of random data; XBOOTLDR and root encrypted, cheap pbkdf2), and a
vTPM is made with ``shieldwright vtpm new``. Timed, end to end, as a subprocess: ``shieldwright
provision`` — verify the template (GPT, ESP, signed UKI, the catalog: SHA-256 of every protected block,
the LUKS2 headers), predict PCR 4/7/11 on OVMF's snakeoil store, open each container with the
passphrase, seal a secret per container to the SRK, write the new headers and a full copy of the disk
with its holes, fsync, rename. Baseline, in the same run: ``cp --sparse=always`` of the template and a
``sync`` of the copy (provisioning writes at least that). The template is read once beforehand (warm
page cache) and one untimed round of both runs first. Best of ``--repeat``; target provision/cp <= 1.5.

It also prints what the verification alone costs (``shieldwright verify`` of the same template): the
part a sparse copy does not do.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_build import FAST_KDF, SNAKEOIL_CERT, SNAKEOIL_KEY, build_input, timed, warm  # noqa: E402

MiB = 1024 * 1024
SNAKEOIL_VARS = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root-mib", type=int, default=1900, help="root partition size (default 1900)")
    ap.add_argument("--repeat", type=int, default=2, help="timed rounds, best kept (default 2)")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: system temp)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-provision-", dir=args.dir) as tmp:
        d = Path(tmp)
        print(f"building a template from a demo-like image with a {args.root_mib} MiB random root in {d} ...",
              flush=True)  # fmt: skip
        image = build_input(d, args.root_mib)
        passfile, keyfile = d / "pass", d / "keypass"
        passfile.write_text("benchmark provisioning passphrase\n")
        keyfile.write_text("snakeoil\n")
        template, srk = d / "template.raw", d / "vtpm" / "srk.tpm2b_public"
        app = [sys.executable, "-m", "app"]
        timed([*app, "build", "--base", str(image), "-o", str(template), "--name", "bench", "--uefi-cert",
               SNAKEOIL_CERT, "--uefi-key", SNAKEOIL_KEY, "--key-passphrase-file", str(keyfile),
               "--passphrase-file", str(passfile), "--install-removable", *FAST_KDF],
              "shieldwright build")  # fmt: skip
        image.unlink()
        timed([*app, "vtpm", "new", str(d / "vtpm")], "shieldwright vtpm new")
        size = template.stat().st_size
        allocated = template.stat().st_blocks * 512
        warm(template)
        out, copy = d / "vm.raw", d / "copy.raw"
        provision = [*app, "provision", str(template), "--srk", str(srk), "--passphrase-file", str(passfile),
                     "--trust", SNAKEOIL_CERT, "--firmware-vars", SNAKEOIL_VARS, "-o", str(out),
                     "--force"]  # fmt: skip
        verify = [*app, "verify", str(template), "--trust", SNAKEOIL_CERT]
        times: dict[str, list[float]] = {"provision": [], "cp": [], "verify": []}
        for i in range(args.repeat + 1):  # round 0 only warms up
            t_prov, _ = timed(provision, "shieldwright provision", sync=out)
            out.unlink()
            t_cp, _ = timed(["cp", "--sparse=always", str(template), str(copy)], "cp", sync=copy)
            copy.unlink()
            t_verify, _ = timed(verify, "shieldwright verify")
            if i:
                times["provision"].append(t_prov)
                times["cp"].append(t_cp)
                times["verify"].append(t_verify)
        best = {k: min(v) for k, v in times.items()}

        def line(label: str, seconds: float, note: str = "") -> None:
            print(f"{label:<31}{seconds:6.2f} s  {size / seconds / 1e6:8.1f} MB/s  {note}")

        print(f"template: {size / MiB:.0f} MiB raw ({allocated / MiB:.0f} MiB allocated), XBOOTLDR and root "
              "encrypted")  # fmt: skip
        line("shieldwright provision + sync:", best["provision"])
        line("cp --sparse=always + sync:", best["cp"], "(baseline)")
        line("shieldwright verify:", best["verify"], "(its verification part)")
        print(f"ratio provision / sparse copy: {best['provision'] / best['cp']:.2f}  (target <= 1.50)")
        rounds = {k: ", ".join(f"{t:.2f}" for t in v) for k, v in times.items()}
        print(f"all timed rounds (s):          provision {rounds['provision']}; cp {rounds['cp']}; "
              f"verify {rounds['verify']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
