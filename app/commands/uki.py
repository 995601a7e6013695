"""``shieldwright uki``: build (and sign) a unified kernel image, inspect one, predict its PCR 11, install it.

``uki pcr11 --json`` prints ``{"bank": "sha256", "phases": {"": hex, "enter-initrd": hex, ...}}``, a list
of such objects for several ``--bank``; phase ``""`` is the value when the kernel starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from app.commands._overwrite import add_force_option, check_output, write_new
from app.commands._util import add_passphrase_options, load_signer_from_args, same_file
from app.errors import ShieldwrightError
from app.template.build.report import human_size
from app.untrusted import printable


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    uki = sub.add_parser("uki", help="unified kernel images: build, inspect, predict PCR 11, install")
    uki_sub = uki.add_subparsers(dest="uki_command", metavar="ACTION", required=True)

    p = uki_sub.add_parser("build", help="build a UKI from a systemd-stub, kernel, initrds and command line")
    p.add_argument("--linux", required=True, metavar="K", help="kernel image (x86 bzImage, e.g. vmlinuz-*)")
    p.add_argument("--initrd", action="append", default=[], metavar="I",
                   help="initrd; repeat for several (concatenated in order)")  # fmt: skip
    p.add_argument("--cmdline", required=True, metavar="TEXT|@FILE",
                   help="kernel command line (TEXT has its whitespace collapsed, @FILE is taken verbatim); "
                        "root= is not needed for a discoverable root partition")  # fmt: skip
    p.add_argument("--os-release", required=True, metavar="TEXT|@FILE", help="os-release contents")
    p.add_argument("--stub", metavar="S", help="systemd-stub (default: the host's linuxx64.efi.stub)")
    p.add_argument("--uname", metavar="U", help="kernel version for .uname (default: from the kernel)")
    p.add_argument("--sbat", metavar="TEXT|@FILE", help="SBAT entries instead of the default 'uki' entry")
    p.add_argument("--splash", metavar="BMP", help="boot splash image (BMP)")
    p.add_argument("--devicetree", metavar="DTB", help="devicetree blob (.dtb)")
    p.add_argument("--pcrpkey", metavar="PEM", help="public key for signed PCR policies (.pcrpkey)")
    p.add_argument("--cert", metavar="C", help="sign with this certificate (PEM/DER + chain, or PKCS#12)")
    p.add_argument("--key", metavar="K", help="private key for --cert (omit for PKCS#12 or a combined PEM)")
    add_passphrase_options(p, what="the private key or PKCS#12 file")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the UKI (written atomically)")
    add_force_option(p)
    p.set_defaults(func=cmd_build)

    p = uki_sub.add_parser(
        "inspect", help="show a UKI's sections, command line, os-release, SBAT, signatures"
    )
    p.add_argument("file", help="UKI (.efi)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_inspect)

    p = uki_sub.add_parser("pcr11", help="predict PCR 11 when the UKI boots, and after each boot phase")
    p.add_argument("file", help="UKI (.efi)")
    p.add_argument("--bank", action="append", metavar="BANK",
                   help="sha1, sha256 (default), sha384 or sha512; repeat for several")  # fmt: skip
    p.add_argument("--phase", action="append", metavar="PATH",
                   help="phase path such as enter-initrd:leave-initrd ('' or ':' = kernel start); "
                        "default: kernel start and the four paths systemd-measure uses")  # fmt: skip
    p.add_argument(
        "--stub-version", metavar="V", help="measure as systemd-stub V does (default: the stub's own version)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_pcr11)

    p = uki_sub.add_parser(
        "install", help="write a copy of a disk image with the UKI and shim's fallback CSV in its ESP"
    )
    p.add_argument("image", help="base disk image (any supported format; never modified)")
    p.add_argument("--uki", required=True, metavar="F", help="the UKI to install")
    p.add_argument("--id", required=True, metavar="ID", help="file name: \\EFI\\Linux\\ID.efi")
    p.add_argument("--vendor", default="debian", metavar="DIR",
                   help="shim's directory under \\EFI (default: debian); BOOTX64.CSV goes there")  # fmt: skip
    p.add_argument("--label", metavar="L", help="boot entry label (default: ID)")
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="raw output image (written atomically)"
    )
    add_force_option(p)
    p.set_defaults(func=cmd_install)


# --- helpers -------------------------------------------------------------------------------------------


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ShieldwrightError(f"{what} {path}: no such file", "check the path") from None
    except IsADirectoryError:
        raise ShieldwrightError(f"{what} {path} is a directory", "give a file") from None
    except OSError as exc:
        raise ShieldwrightError(
            f"cannot read {what} {path}: {exc.strerror or exc}", "check the path"
        ) from None


def _text(value: str, what: str, *, collapse: bool = False) -> str:
    """``TEXT`` or ``@FILE`` (UTF-8). ukify collapses whitespace in command-line TEXT, not in files."""
    if value.startswith("@"):
        data = _read(value[1:], f"{what} file")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ShieldwrightError(
                f"{what} file {value[1:]} is not UTF-8 text", "convert it to UTF-8"
            ) from None
    return " ".join(value.split()) if collapse else value


# --- build ---------------------------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> int:
    # lazy: app.boot.uki loads cryptography; the parser (and `--help`) must not
    from app.boot.uki import UkiInputs, build_uki

    out = Path(args.output)
    inputs = [args.linux, *args.initrd, args.stub, args.splash, args.devicetree, args.pcrpkey]
    if any(p and same_file(Path(p), out) for p in inputs):
        raise ShieldwrightError("the output is one of the inputs", "give a different -o path")
    if args.key and not args.cert:
        raise ShieldwrightError("--key needs --cert", "give the signing certificate too")
    check_output(out, args.force)  # before reading and signing anything
    uki_inputs = UkiInputs(
        linux=_read(args.linux, "kernel"),
        initrds=[_read(p, "initrd") for p in args.initrd],
        cmdline=_text(args.cmdline, "command line", collapse=True),
        os_release=_text(args.os_release, "os-release"),
        stub=_read(args.stub, "stub") if args.stub else None,
        uname=args.uname,
        sbat=_text(args.sbat, "SBAT") if args.sbat is not None else None,
        splash=_read(args.splash, "splash image") if args.splash else None,
        dtb=_read(args.devicetree, "devicetree") if args.devicetree else None,
        pcrpkey=_read(args.pcrpkey, "PCR public key") if args.pcrpkey else None,
    )
    signer = load_signer_from_args(args) if args.cert else None
    data = build_uki(uki_inputs, signer=signer)
    write_new(out, data, args.force)
    if signer is None:
        print("note: the UKI is unsigned; give --cert/--key to sign it for Secure Boot", file=sys.stderr)
    print(out)
    return 0


# --- inspect -------------------------------------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace) -> int:
    # lazy: app.boot.uki loads cryptography
    from app.boot.uki import inspect_uki

    info = inspect_uki(_read(args.file, "UKI"))
    if args.json:
        print(json.dumps({"path": args.file, **info.to_dict()}, indent=2))
        return 0
    fields = info.os_release_fields
    stub = f"{info.stub.kind} {info.stub.version}" if info.stub else "unknown (no LoaderInfo marker)"
    kernel = (f"{info.kernel.version_string or '?'} (boot protocol {info.kernel.setup_version})"
              if info.kernel else "not an x86 bzImage")  # fmt: skip
    rows = [
        ("UKI", f"{args.file} ({human_size(info.size)})"),
        ("stub", stub),
        ("kernel", kernel),
        ("uname", info.uname or "-"),
        ("cmdline", info.cmdline.strip() if info.cmdline is not None else "- (the boot entry's options)"),
        ("os-release", fields.get("PRETTY_NAME") or fields.get("NAME") or "-"),
        ("authenticode", f"sha256 {info.authenticode_sha256}"),
    ]
    if not info.signatures:
        rows.append(("signatures", "none (unsigned)"))
    for sig in info.signatures:
        state = sig["error"] or ("digest matches" if sig["digest_matches"] else "DIGEST MISMATCH")
        rows.append((f"signature {sig['index']}", f"{sig['subject'] or '(no certificate)'}: {state}"))
    # Everything but the labels comes from the file: escaped, so it cannot drive the terminal.
    for key, value in rows:
        print(f"{key:<14}{printable(str(value))}")
    if info.sbat:
        print("sbat")
        for line in info.sbat.splitlines():
            print(f"  {printable(line)}")
    print("sections")
    print(f"  {'name':<9} {'address':>10} {'size':>10} {'raw size':>10}  {'PCR 11':<6}  sha256")
    for s in info.sections:
        measured = {True: "yes", False: "no", None: "?"}[s.measured]
        print(f"  {printable(s.name):<9} {s.virtual_address:>#10x} {s.virtual_size:>10} {s.raw_size:>10}  "
              f"{measured:<6}  {s.sha256}")  # fmt: skip
    return 0


# --- pcr11 ---------------------------------------------------------------------------------------------


def cmd_pcr11(args: argparse.Namespace) -> int:
    # lazy: app.boot.pcr loads cryptography
    from app.boot.pcr import DEFAULT_PHASES, normalize_phase, predict_pcr11

    banks = list(dict.fromkeys(b.lower() for b in (args.bank or ["sha256"])))
    phases = [normalize_phase(p) for p in args.phase] if args.phase else list(DEFAULT_PHASES)
    result = predict_pcr11(_read(args.file, "UKI"), banks, phases, stub_version=args.stub_version)
    if args.json:
        objects = [{"bank": bank, "phases": values} for bank, values in result.items()]
        print(json.dumps(objects[0] if len(objects) == 1 else objects, indent=2))
        return 0
    for bank, values in result.items():
        for phase, value in values.items():
            print(f"{bank:<7} {phase or '(kernel start)':<42} {value}")
    return 0


# --- install -------------------------------------------------------------------------------------------


def _source_date_epoch() -> float | None:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) stamps the new ESP files; unset means "now"."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        return float(int(value))
    except ValueError:
        raise ShieldwrightError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds",
                                "unset it or give an integer") from None  # fmt: skip


def cmd_install(args: argparse.Namespace) -> int:
    # lazy: app.boot.uki loads cryptography, the image writers numpy
    from app.boot.uki import inspect_uki
    from app.disk.esp import DEFAULT_LOADER, list_esp, plan_esp_install, write_esp_files
    from app.disk.image import open_image
    from app.disk.layout import layout_of
    from app.disk.model import Role
    from app.disk.publish import publish
    from app.disk.writers import write_image

    src, out = Path(args.image), Path(args.output)
    if same_file(src, out):
        raise ShieldwrightError(
            "the output is the input image", "give a different -o path; the input is never modified"
        )
    check_output(out, args.force)
    uki = _read(args.uki, "UKI")
    inspect_uki(uki)  # refuse anything that is not a UKI before copying gigabytes
    files = plan_esp_install(args.id, uki, args.vendor, label=args.label)
    with open_image(src) as image:
        layout = layout_of(image)
        esps = [p for p in layout.partitions if p.role is Role.ESP]
        if len(esps) != 1:
            raise ShieldwrightError(f"{src} has {len(esps)} EFI System Partitions, not exactly one",
                                    "`shieldwright inspect` shows the partitions")  # fmt: skip
        esp = esps[0]
        if esp.content != "fat":
            raise ShieldwrightError(f"the ESP of {src} (partition {esp.number}) holds {esp.content}, not FAT",
                                    "format the ESP as FAT32 first")  # fmt: skip
        entries = {e.path.lower() for e in list_esp(image, esp, layout.sector_size)}
        tmp = out.parent / f".{out.name}.uki-install.tmp"
        try:
            write_image(image, tmp, "raw")
            write_esp_files(tmp, esp, layout.sector_size, files, mtime=_source_date_epoch())
            publish(tmp, out, overwrite=args.force)
        finally:
            tmp.unlink(missing_ok=True)
    csv = next(p for p in files if p.upper().endswith(".CSV"))
    shim = (csv.rsplit("\\", 1)[0].replace("\\", "/") + "/" + DEFAULT_LOADER).lower()
    if shim not in entries:
        where = shim.replace("/", "\\")
        print(f"note: there is no {where} in the ESP; the fallback CSV works once shim is installed there",
              file=sys.stderr)  # fmt: skip
    print(out)
    return 0
