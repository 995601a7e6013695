"""``shieldwright luks``: encrypt partitions of an image, dump a header, add a key, test a passphrase.

Every subcommand writes a new image (never the input, never an existing file without ``--force``);
passphrases come from a file, a variable or a prompt, never from argv. Header text is printed escaped.
Exit codes: 0 success, 1 wrong passphrase, 2 bad input, 130 cancelled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.commands._overwrite import add_force_option, check_output
from app.commands._util import (
    TerminalProgress,
    add_passphrase_options,
    read_passphrase_buffer,
    same_file,
    warn_short_passphrase,
)
from app.disk.image import WRITE_FORMATS
from app.errors import OutputExistsError, ShieldwrightError
from app.luks.params import KDF_KINDS, LUKS_SECTOR_SIZES
from app.template.build.report import human_size
from app.untrusted import printable

if TYPE_CHECKING:
    from app.luks.kdf import KdfParams


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        "--sector-size", type=int, choices=LUKS_SECTOR_SIZES, default=4096, help="encryption sector size"
    )
    _kdf_options(p)
    p.add_argument("--format", choices=WRITE_FORMATS, default="raw", help="output format (default raw)")
    _output_options(p)
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
    p.add_argument(
        "--format", choices=WRITE_FORMATS, help="output format (default: the input's; qcow2 → raw)"
    )
    _output_options(p)
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


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o", "--output", required=True,
        help="output image (written atomically; never the input image or the recovery key file)",
    )  # fmt: skip
    add_force_option(p, "OUTPUT")


def _kdf_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kdf", choices=KDF_KINDS, default="argon2id", help="keyslot KDF")
    p.add_argument(
        "--iter-time", type=int, default=2000, metavar="MS",
        help="KDF time to unlock, in milliseconds, calibrated on this machine (default 2000)",
    )  # fmt: skip


# -- handlers ----------------------------------------------------------------------------------------


def cmd_encrypt(args: argparse.Namespace) -> int:
    # lazy: app.luks loads cryptography and numpy; the parser (and `--help`) must not
    from app.luks.imageops import Keyslot, encrypt_partitions

    out = _check_paths(args)
    passphrase = _passphrase(args, "passphrase", "New LUKS2 passphrase: ", confirm=True)
    warn_short_passphrase(passphrase, "the new passphrase")
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
            overwrite=args.force,
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
    # lazy: app.luks and the image formats load cryptography and numpy
    from app.disk.image import open_image
    from app.luks.imageops import read_luks_partition

    with open_image(args.image) as image:
        lp = read_luks_partition(image, args.partition)
    doc = lp.header.to_dict()
    doc["systemd_tpm2"] = _tpm2_tokens(doc)
    if args.json:
        json.dump(doc, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        _print_dump(args.partition, doc)
    return 0


def cmd_add_key(args: argparse.Namespace) -> int:
    # lazy: app.luks loads cryptography and numpy
    from app.luks.imageops import Keyslot, add_key

    out = _check_paths(args)
    passphrase = _passphrase(args, "passphrase", "Existing LUKS2 passphrase: ")
    recovery = None
    if args.recovery_key_file:
        recovery = _new_recovery_key(args.recovery_key_file)
        new = Keyslot(recovery[1], _recovery_kdf())
    else:
        secret = _passphrase(args, "new-passphrase", None)
        warn_short_passphrase(secret, "the new passphrase")
        new = Keyslot(secret, _calibrate(args))
    progress = TerminalProgress()
    try:
        add_key(
            Path(args.image), out, args.partition, passphrase, new, out_format=args.format, progress=progress,
            overwrite=args.force,
        )  # fmt: skip
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
    # lazy: app.luks loads cryptography and numpy
    from app.luks.imageops import test_passphrase

    passphrase = _passphrase(args, "passphrase", "LUKS2 passphrase: ")
    try:
        test_passphrase(Path(args.image), args.partition, passphrase)
    finally:
        passphrase[:] = bytes(len(passphrase))
    print(f"partition {args.partition}: the passphrase opens it")
    return 0


# -- helpers -----------------------------------------------------------------------------------------


def _check_paths(args: argparse.Namespace) -> Path:
    """Refuse, before anything is read or written, an output that exists (without ``--force``) or that is
    the input, and a recovery key file that is the input or the output. Returns the output path."""
    image, out = Path(args.image), Path(args.output)
    if same_file(out, image):
        raise ShieldwrightError(f"{out} is the input image", "write the new image to another file")
    rk = getattr(args, "recovery_key_file", None)
    if rk:
        for other, what in ((out, "the output image"), (image, "the input image")):
            if same_file(Path(rk), other):
                raise ShieldwrightError(
                    f"the recovery key file {rk} is {what}",
                    "give the recovery key a file of its own; nothing was written",
                )
    return check_output(out, args.force)


def _passphrase(args: argparse.Namespace, name: str, prompt: str | None, confirm: bool = False) -> bytearray:
    value = read_passphrase_buffer(args, name, prompt=prompt, confirm=confirm)
    if value is None:
        raise ShieldwrightError(
            f"no {name.replace('-', ' ')} given",
            f"use --{name}-file FILE or --{name}-env VAR (or run on a terminal to be prompted)",
        )
    if not value:
        raise ShieldwrightError(f"the {name.replace('-', ' ')} is empty", "use a non-empty passphrase")
    return value


def _calibrate(args: argparse.Namespace) -> KdfParams:
    # lazy: app.luks.kdf loads cryptography
    from app.luks.kdf import calibrate

    if args.iter_time <= 0:
        raise ShieldwrightError(
            f"--iter-time {args.iter_time} is not positive", "give milliseconds, e.g. 2000"
        )
    return calibrate(args.kdf, iter_time_ms=args.iter_time)


def _recovery_kdf() -> KdfParams:
    """Recovery keys carry ~256 bits of entropy, so like systemd-cryptenroll we use the minimal PBKDF."""
    # lazy: app.luks.kdf loads cryptography
    from app.luks.kdf import PBKDF2_MIN_ITERATIONS, KdfParams

    return KdfParams.pbkdf2(iterations=PBKDF2_MIN_ITERATIONS)


def _new_recovery_key(path: str) -> tuple[Path, bytearray]:
    """Generate a recovery key and write it to a new 0600 file; refuse to overwrite anything."""
    # lazy: app.luks loads cryptography
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


def _t(value: object) -> str:
    """A header value as text safe for a terminal: labels, types and keys come from whoever made the image."""
    return printable(str(value))


def _ids(values: object) -> str:
    return " ".join(_t(v) for v in values) if isinstance(values, list) else _t(values or "")


def _print_dump(number: int, doc: dict[str, Any]) -> None:
    """A short, luksDump-like summary; ``--json`` gives everything (the whole JSON metadata too).

    Every value comes from the header, so every value is printed escaped (:func:`_t`): a label holding
    terminal escapes must not rewrite what the user sees. (``--json`` escapes them by itself.)
    """
    meta = doc.get("metadata") or {}
    print(f"Partition {number}: LUKS2")
    print(f"  UUID:          {_t(doc.get('uuid'))}")
    print(f"  Label:         {_t(doc.get('label') or '(none)')}")
    print(f"  Subsystem:     {_t(doc.get('subsystem') or '(none)')}")
    print(f"  Metadata:      2 x {_t(doc.get('metadata_size'))} bytes")
    print(f"  Keyslots area: {_t(doc.get('keyslots_size'))} bytes")
    for ident, seg in _numbered(meta.get("segments")):
        print(
            f"  Segment {ident}:     offset {_t(seg.get('offset'))}, {_t(seg.get('encryption'))}, "
            f"sector {_t(seg.get('sector_size'))}, size {_t(seg.get('size'))}"
        )
    print("Keyslots:")
    for ident, slot in _numbered(meta.get("keyslots")):
        print(f"  {ident}: {_t(slot.get('type'))}, {_key_bits(slot)}-bit key, {_kdf_cost(slot)}")
    print("Tokens:")
    decoded = doc.get("systemd_tpm2") or {}
    for ident, token in _numbered(meta.get("tokens")):
        print(f"  {ident}: {_t(token.get('type'))}, keyslots {_ids(token.get('keyslots'))}")
        tpm2 = decoded.get(ident)
        if isinstance(tpm2, dict) and "error" in tpm2:
            print(f"      unreadable: {_t(tpm2['error'])}")
        elif isinstance(tpm2, dict):
            pcrs = "+".join(str(n) for n in tpm2["pcrs"])
            print(f"      PCRs {_t(pcrs)} ({_t(tpm2['bank'])}), policy hash {_t(tpm2['policy_hash'])}")
            srk = f"{_t(tpm2['srk_handle'])} ({_t(tpm2['primary_alg'])})"
            print(f"      SRK {srk}, name {_t(tpm2['srk_name'])}")
    print("Digests:")
    for ident, dig in _numbered(meta.get("digests")):
        print(
            f"  {ident}: {_t(dig.get('type'))} {_t(dig.get('hash'))}, "
            f"keyslots {_ids(dig.get('keyslots'))}, segments {_ids(dig.get('segments'))}"
        )
    for problem in doc.get("problems") or []:
        print(f"WARNING: {_t(problem)}")


def _tpm2_tokens(doc: dict[str, Any]) -> dict[str, dict[str, object]]:
    """Token id → the decoded systemd-tpm2 token (PCRs, bank, policy hash, SRK), or its error."""
    # lazy: app.tpm loads tpm2-pytss
    from app.tpm.token import TOKEN_TYPE, TokenError, read_systemd_tpm2_token

    tokens = (doc.get("metadata") or {}).get("tokens")
    out: dict[str, dict[str, object]] = {}
    for ident, token in (tokens or {}).items():
        if isinstance(token, dict) and token.get("type") == TOKEN_TYPE:
            try:
                out[str(ident)] = read_systemd_tpm2_token(token).to_dict()
            except TokenError as exc:
                out[str(ident)] = {"error": exc.message}
    return out


def _key_bits(slot: dict[str, Any]) -> str:
    size = slot.get("key_size")
    return str(8 * size) if isinstance(size, int) and not isinstance(size, bool) else _t(size)


def _kdf_cost(slot: dict[str, Any]) -> str:
    kdf = slot.get("kdf")
    if not isinstance(kdf, dict):
        kdf = {}
    if kdf.get("type") == "pbkdf2":
        return f"pbkdf2-{_t(kdf.get('hash'))}, {_t(kdf.get('iterations'))} iterations"
    return (
        f"{_t(kdf.get('type'))}, time {_t(kdf.get('time'))}, memory {_t(kdf.get('memory'))} KiB, "
        f"{_t(kdf.get('cpus'))} threads"
    )


def _slot_order(ident: str) -> int:
    return int(ident) if ident.isascii() and ident.isdigit() and len(ident) < 10 else 1 << 30


def _numbered(items: object) -> list[tuple[str, dict[str, Any]]]:
    """The (escaped id, object) pairs of a JSON section, numeric ids in order."""
    if not isinstance(items, dict):
        return []
    rows = [(str(k), v) for k, v in items.items() if isinstance(v, dict)]
    rows.sort(key=lambda kv: _slot_order(kv[0]))
    return [(_t(k), v) for k, v in rows]
