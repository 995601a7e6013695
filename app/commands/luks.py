"""``shieldwright luks``: encrypt partitions of an image, dump a header, add a key, test a passphrase.

Passphrases come from a file, an environment variable or a terminal prompt, never from argv (``ps``
shows argv to every user). Every subcommand writes a new image; none changes its input.
Exit codes: 0 success, 1 wrong passphrase (``luks test`` / ``add-key``), 2 bad input, 130 cancelled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from app.commands._util import TerminalProgress, add_passphrase_options, human_size, read_passphrase
from app.errors import OutputExistsError, ShieldwrightError

FORMATS = ("raw", "vhdx", "vhd")


def register(sub: argparse._SubParsersAction) -> None:
    luks = sub.add_parser("luks", help="LUKS2-encrypt partitions of an image; dump, add keys, test")
    lsub = luks.add_subparsers(dest="luks_command", metavar="ACTION", required=True)

    p = lsub.add_parser("encrypt", help="write a copy of IMAGE with partitions LUKS2-encrypted (re-laid out)")
    p.add_argument("image", help="input disk image (any supported format; never modified)")
    _partition_option(p, multiple=True)
    add_passphrase_options(p, "passphrase", "the new keyslot (default: prompt)")
    p.add_argument(
        "--recovery-key-file",
        metavar="OUT",
        help="also add a generated recovery key (systemd modhex) and write it to OUT (mode 0600)",
    )
    p.add_argument(
        "--sector-size", type=int, choices=(4096, 512), default=4096, help="encryption sector size"
    )
    _kdf_options(p)
    p.add_argument("--format", choices=FORMATS, default="raw", help="output format (default raw)")
    p.add_argument("-o", "--output", required=True, help="output image (written atomically)")
    p.set_defaults(func=cmd_encrypt)

    p = lsub.add_parser("dump", help="show the LUKS2 header of a partition")
    p.add_argument("image", help="disk image (any supported format)")
    _partition_option(p)
    p.add_argument("--json", action="store_true", help="print the header as JSON")
    p.set_defaults(func=cmd_dump)

    p = lsub.add_parser("add-key", help="write a copy of IMAGE with another keyslot on a partition")
    p.add_argument("image", help="disk image holding the LUKS2 partition (never modified)")
    _partition_option(p)
    add_passphrase_options(p, "passphrase", "an existing keyslot (default: prompt)")
    new = p.add_mutually_exclusive_group(required=True)
    new.add_argument("--new-passphrase-file", metavar="FILE", help="the new keyslot's passphrase, from FILE")
    new.add_argument("--new-passphrase-env", metavar="VAR", help="the new keyslot's passphrase, from VAR")
    new.add_argument(
        "--recovery-key-file", metavar="OUT", help="add a generated recovery key and write it to OUT (0600)"
    )
    _kdf_options(p)
    p.add_argument("--format", choices=FORMATS, help="output format (default: the input's; qcow2 → raw)")
    p.add_argument("-o", "--output", required=True, help="output image (written atomically)")
    p.set_defaults(func=cmd_add_key)

    p = lsub.add_parser("test", help="check that a passphrase opens a partition (exit 0 yes, 1 no)")
    p.add_argument("image", help="disk image (any supported format)")
    _partition_option(p)
    add_passphrase_options(p, "passphrase", "the keyslot to test (default: prompt)")
    p.set_defaults(func=cmd_test)


def _partition_option(p: argparse.ArgumentParser, multiple: bool = False) -> None:
    if multiple:
        p.add_argument(
            "--partition", type=int, action="append", required=True, metavar="N",
            help="GPT number of a partition to encrypt (repeat for more)",
        )  # fmt: skip
    else:
        p.add_argument("--partition", type=int, required=True, metavar="N", help="GPT partition number")


def _kdf_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kdf", choices=("argon2id", "pbkdf2"), default="argon2id", help="keyslot KDF")
    p.add_argument(
        "--iter-time", type=int, default=2000, metavar="MS",
        help="KDF time to unlock, in milliseconds, calibrated on this machine (default 2000)",
    )  # fmt: skip


# -- handlers ----------------------------------------------------------------------------------------


def cmd_encrypt(args: argparse.Namespace) -> int:
    from app.luks.imageops import Keyslot, encrypt_partitions

    out = Path(args.output)
    passphrase = _passphrase(args, "passphrase", "New LUKS2 passphrase: ", confirm=True)
    kdf = _calibrate(args)
    slots = [Keyslot(passphrase, kdf)]
    recovery = _new_recovery_key(args.recovery_key_file) if args.recovery_key_file else None
    if recovery:
        slots.append(Keyslot(recovery[1], _recovery_kdf()))
    progress = TerminalProgress()
    try:
        plan = encrypt_partitions(
            Path(args.image),
            out,
            sorted(set(args.partition)),
            slots,
            sector_size=args.sector_size,
            out_format=args.format,
            progress=progress,
        )
    except BaseException:
        if recovery:
            _unlink(recovery[0])
        raise
    finally:
        progress.close()
        passphrase[:] = bytes(len(passphrase))
        if recovery:
            recovery[1][:] = bytes(len(recovery[1]))
    for p in plan.encrypted:
        print(
            f"partition {p.number}: LUKS2, {human_size(p.size_bytes)} "
            f"(LBAs {p.first_lba}-{p.last_lba}, data at +{human_size(p.data_offset)})"
        )
    if recovery:
        print(f"recovery key written to {recovery[0]}")
    print(out)
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    from app.disk.image import open_image
    from app.luks.imageops import read_luks_partition

    with open_image(args.image) as image:
        lp = read_luks_partition(image, args.partition)
    doc = lp.header.to_dict()
    if args.json:
        json.dump(doc, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        _print_dump(args.partition, doc)
    return 0


def cmd_add_key(args: argparse.Namespace) -> int:
    from app.luks.imageops import Keyslot, add_key

    out = Path(args.output)
    passphrase = _passphrase(args, "passphrase", "Existing LUKS2 passphrase: ")
    recovery = None
    if args.recovery_key_file:
        recovery = _new_recovery_key(args.recovery_key_file)
        new = Keyslot(recovery[1], _recovery_kdf())
    else:
        new = Keyslot(_passphrase(args, "new-passphrase", None), _calibrate(args))
    progress = TerminalProgress()
    try:
        add_key(
            Path(args.image), out, args.partition, passphrase, new, out_format=args.format, progress=progress
        )
    except BaseException:
        if recovery:
            _unlink(recovery[0])
        raise
    finally:
        progress.close()
        passphrase[:] = bytes(len(passphrase))
        if isinstance(new.secret, bytearray):
            new.secret[:] = bytes(len(new.secret))
    if recovery:
        print(f"recovery key written to {recovery[0]}")
    print(out)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Exit 0 when the passphrase opens the partition; a wrong one is WrongLuksPassphraseError (exit 1)."""
    from app.luks.imageops import test_passphrase

    passphrase = _passphrase(args, "passphrase", "LUKS2 passphrase: ")
    try:
        test_passphrase(Path(args.image), args.partition, passphrase)
    finally:
        passphrase[:] = bytes(len(passphrase))
    print(f"partition {args.partition}: the passphrase opens it")
    return 0


# -- helpers -----------------------------------------------------------------------------------------


def _passphrase(args: argparse.Namespace, name: str, prompt: str | None, confirm: bool = False) -> bytearray:
    value = read_passphrase(args, name, prompt=prompt, confirm=confirm)
    if value is None:
        raise ShieldwrightError(
            f"no {name.replace('-', ' ')} given",
            f"use --{name}-file FILE or --{name}-env VAR (or run on a terminal to be prompted)",
        )
    if not value:
        raise ShieldwrightError(f"the {name.replace('-', ' ')} is empty", "use a non-empty passphrase")
    return bytearray(value)


def _calibrate(args: argparse.Namespace):
    from app.luks.kdf import calibrate

    if args.iter_time <= 0:
        raise ShieldwrightError(
            f"--iter-time {args.iter_time} is not positive", "give milliseconds, e.g. 2000"
        )
    return calibrate(args.kdf, iter_time_ms=args.iter_time)


def _recovery_kdf():
    """Recovery keys carry ~256 bits of entropy, so like systemd-cryptenroll we use the minimal PBKDF."""
    from app.luks.kdf import KdfParams

    return KdfParams.pbkdf2(iterations=1000)


def _new_recovery_key(path: str) -> tuple[Path, bytearray]:
    """Generate a recovery key and write it to a new 0600 file; refuse to overwrite anything."""
    from app.luks.container import generate_recovery_key

    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise OutputExistsError(
            f"{target} already exists", "choose a new file name for the recovery key; nothing was overwritten"
        ) from None
    except OSError as exc:
        raise ShieldwrightError(f"cannot create {target}: {exc.strerror}", "check the folder") from None
    key = bytearray(generate_recovery_key().encode())
    try:
        os.fchmod(fd, 0o600)  # O_CREAT honours the umask, which can only remove bits; be explicit
        os.write(fd, bytes(key) + b"\n")
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        _unlink(target)
        raise ShieldwrightError(f"cannot write {target}: {exc.strerror}", "check free space") from None
    os.close(fd)
    return target, key


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _print_dump(number: int, doc: dict) -> None:
    """A short, luksDump-like summary; ``--json`` gives everything (the whole JSON metadata too)."""
    meta = doc.get("metadata") or {}
    print(f"Partition {number}: LUKS2")
    print(f"  UUID:          {doc.get('uuid')}")
    print(f"  Label:         {doc.get('label') or '(none)'}")
    print(f"  Subsystem:     {doc.get('subsystem') or '(none)'}")
    print(f"  Metadata:      2 x {doc.get('metadata_size')} bytes")
    print(f"  Keyslots area: {doc.get('keyslots_size')} bytes")
    for ident, seg in _numbered(meta.get("segments")):
        print(
            f"  Segment {ident}:     offset {seg.get('offset')}, {seg.get('encryption')}, "
            f"sector {seg.get('sector_size')}, size {seg.get('size')}"
        )
    print("Keyslots:")
    for ident, slot in _numbered(meta.get("keyslots")):
        kdf = slot.get("kdf") or {}
        if kdf.get("type") == "pbkdf2":
            cost = f"pbkdf2-{kdf.get('hash')}, {kdf.get('iterations')} iterations"
        else:
            cost = (
                f"{kdf.get('type')}, time {kdf.get('time')}, memory {kdf.get('memory')} KiB, "
                f"{kdf.get('cpus')} threads"
            )
        print(f"  {ident}: {slot.get('type')}, {8 * int(slot.get('key_size') or 0)}-bit key, {cost}")
    print("Tokens:")
    for ident, token in _numbered(meta.get("tokens")):
        print(f"  {ident}: {token.get('type')}, keyslots {' '.join(map(str, token.get('keyslots') or []))}")
    print("Digests:")
    for ident, dig in _numbered(meta.get("digests")):
        print(
            f"  {ident}: {dig.get('type')} {dig.get('hash')}, "
            f"keyslots {' '.join(dig.get('keyslots') or [])}, segments {' '.join(dig.get('segments') or [])}"
        )
    for problem in doc.get("problems") or []:
        print(f"WARNING: {problem}")


def _numbered(items: object) -> list[tuple[str, dict]]:
    if not isinstance(items, dict):
        return []
    rows = [(str(k), v) for k, v in items.items() if isinstance(v, dict)]
    return sorted(rows, key=lambda kv: int(kv[0]) if kv[0].isdigit() else 1 << 30)
