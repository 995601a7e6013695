"""Helpers shared by CLI subcommands: sizes, terminal progress, passphrases (read by app.secrets)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app import secrets
from app.errors import WrongPassphraseError
from app.template.build.report import human_size as human_size  # the engine's, re-exported for commands

if TYPE_CHECKING:
    from app.signing.signer import Signer


class TerminalProgress:
    """Progress on stderr, only when it is a terminal; silent in pipelines."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.step, self.total = "", 0

    def begin(self, step: str, total: int) -> None:
        self.step, self.total = step, total
        if self.tty:
            sys.stderr.write(f"\r\033[K{step}")
            sys.stderr.flush()

    def update(self, done: int) -> None:
        if self.tty and self.total:
            sys.stderr.write(f"\r\033[K{self.step}: {100 * done // self.total}%")
            sys.stderr.flush()

    def advance(self, amount: int) -> None:
        pass

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def add_passphrase_options(
    parser: argparse.ArgumentParser, name: str = "key-passphrase", what: str = "the private key"
) -> None:
    """``--NAME-file FILE`` and ``--NAME-env VAR``: passphrases never come from argv (ps shows argv)."""
    parser.add_argument(f"--{name}-file", metavar="FILE", help=f"read the passphrase of {what} from FILE")
    parser.add_argument(
        f"--{name}-env", metavar="VAR", help=f"read the passphrase of {what} from variable VAR"
    )


def read_passphrase_buffer(
    args: argparse.Namespace,
    name: str = "key-passphrase",
    *,
    prompt: str | None = None,
    confirm: bool = False,
) -> bytearray | None:
    """The passphrase from ``--NAME-file`` / ``--NAME-env``, else a terminal prompt when ``prompt`` is given.

    Read by :mod:`app.secrets` like every other secret (a pipe or ``<(...)`` is read to its end, a file's
    trailing newline is dropped), into a ``bytearray`` the caller wipes. Returns None when no source is
    given and there is no prompt (or no terminal to prompt on). The value is never logged.
    """
    attr = name.replace("-", "_")
    path, var = getattr(args, f"{attr}_file", None), getattr(args, f"{attr}_env", None)
    if path:
        return secrets.read_secret_file(path, where=f" (--{name}-file)")
    if var:
        return secrets.read_secret_env(var)
    if prompt and sys.stdin.isatty():
        return secrets.prompt_secret(prompt, confirm="Repeat: " if confirm else None)
    return None


def read_passphrase(
    args: argparse.Namespace,
    name: str = "key-passphrase",
    *,
    prompt: str | None = None,
    confirm: bool = False,
) -> bytes | None:
    """:func:`read_passphrase_buffer` as ``bytes``, for the key and PKCS#12 APIs of ``cryptography``, which
    take ``bytes`` only (``BestAvailableEncryption`` refuses a ``bytearray``). The buffer is wiped."""
    buf = read_passphrase_buffer(args, name, prompt=prompt, confirm=confirm)
    if buf is None:
        return None
    try:
        return bytes(buf)
    finally:
        secrets.wipe(buf)


def warn_short_passphrase(secret: bytes | bytearray, what: str) -> None:
    """Warn on stderr (one line, no secret) when ``secret`` is shorter than the one rule in app.secrets."""
    problem = secrets.short_passphrase_problem(secret, what)
    if problem:
        print(f"shieldwright: warning: {problem}", file=sys.stderr)


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file (so an output would overwrite its input)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def load_signer_from_args(args: argparse.Namespace) -> Signer:
    """The signer from ``--cert``/``--key`` and the passphrase options; prompt only if the key needs one.

    A key that turns out to be encrypted when no passphrase source was given gets one terminal prompt
    (stdin must be a terminal); otherwise the WrongPassphraseError stands.
    """
    # lazy: app.signing loads cryptography, which `shieldwright --help` and most commands never need
    from app.signing.keys import load_signer

    passphrase = read_passphrase(args)
    try:
        return load_signer(args.cert, args.key, passphrase)
    except WrongPassphraseError:
        if passphrase is not None:
            raise
        passphrase = read_passphrase(args, prompt="Passphrase for the signing key: ")
        if passphrase is None:
            raise
        return load_signer(args.cert, args.key, passphrase)
