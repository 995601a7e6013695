"""The one way Shieldwright reads a secret, and the one rule for a passphrase too short to be safe.

Every passphrase (``--passphrase-file``, a recipe's ``{ file = ... }``, an environment variable, a prompt)
comes through here, as a ``bytearray`` the caller wipes with :func:`wipe`; a message never contains the
secret, only where it came from. :func:`short_passphrase_problem` is the strength rule (the CLI warns,
the wizard refuses; :mod:`app.luks.passphrase` uses the same rule).
"""

from __future__ import annotations

import getpass
import io
import os
import resource
from pathlib import Path

from app.errors import ShieldwrightError

#: The largest secret we read, in bytes (the file's content, its trailing newline included).
MAX_SECRET_BYTES = 64 * 1024
#: Passphrases shorter than this many characters are too short to be safe: the CLI warns, the wizard refuses.
MIN_PASSPHRASE_LENGTH = 12


class SecretError(ShieldwrightError):
    """A secret could not be read (missing file, directory, too large, unset variable, no terminal)."""


def wipe(buf: bytearray | None) -> None:
    """Overwrite ``buf`` with zeros in place (same length: no reallocation leaves a copy behind)."""
    if buf:
        buf[:] = bytes(len(buf))


def read_secret_file(
    path: str | os.PathLike[str], *, what: str = "passphrase file", where: str = ""
) -> bytearray:
    """The secret in ``path`` (a regular file, FIFO, pipe or ``/dev/stdin``), minus one trailing newline.

    ``what`` names the file in messages, ``where`` says which option or recipe key gave it (`` (KEY)``).

    The file is read to its end whatever ``st_size`` says: a pipe, a FIFO, ``/dev/stdin`` or bash's
    ``<(...)`` report 0, and sizing the buffer from that once kept one byte of a passphrase. More than
    :data:`MAX_SECRET_BYTES` is surely the wrong file and is refused without reading on. The bytes go
    straight into one preallocated buffer and are copied out once, so no immutable ``bytes`` copy is left
    (an environment variable and ``getpass``'s ``str`` are the exceptions Python gives no way around).
    """
    path = Path(path)
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_SECRET_BYTES:  # a regular file says so up front; a pipe is caught while reading
                raise _too_large(path, what, where, f"is {size} bytes")
            buf = bytearray(MAX_SECRET_BYTES + 1)
            try:
                n = _read_into(f, buf)
                if n > MAX_SECRET_BYTES:
                    raise _too_large(path, what, where, f"holds more than {MAX_SECRET_BYTES} bytes")
                if n and buf[n - 1] == 0x0A:
                    n -= 1
                with memoryview(buf) as view:
                    return bytearray(view[:n])
            finally:
                wipe(buf)
    except IsADirectoryError:
        raise SecretError(f"{what} {path}{where} is a directory", "give a file") from None
    except OSError as exc:
        raise SecretError(
            f"cannot read {what} {path}{where}: {exc.strerror or exc}", "check the path"
        ) from None


def _read_into(f: io.RawIOBase, buf: bytearray) -> int:
    """Fill ``buf`` from ``f`` until EOF or ``buf`` is full; the number of bytes read."""
    n = 0
    with memoryview(buf) as view:
        while n < len(buf):
            got = f.readinto(view[n:])
            if not got:
                break
            n += got
    return n


def _too_large(path: Path, what: str, where: str, how: str) -> SecretError:
    return SecretError(
        f"{what} {path}{where} {how}: not a passphrase",
        f"a secret is at most {MAX_SECRET_BYTES} bytes; check the path",
    )


def read_secret_env(name: str, *, where: str = "") -> bytearray:
    """The value of environment variable ``name`` as bytes (exactly; no newline is dropped)."""
    value = os.environb.get(os.fsencode(name)) if name else None
    if value is None:
        raise SecretError(
            f"environment variable {name} is not set{where}", "export it, or name a passphrase file instead"
        )
    if len(value) > MAX_SECRET_BYTES:
        raise SecretError(
            f"environment variable {name}{where} holds more than {MAX_SECRET_BYTES} bytes: not a passphrase",
            "check the variable's name",
        )
    return bytearray(value)


def prompt_secret(prompt: str, *, confirm: str | None = None) -> bytearray:
    """Ask on the terminal (no echo); with ``confirm``, ask again with that prompt and require the same."""
    first = bytearray(getpass.getpass(prompt).encode("utf-8"))
    if confirm is None:
        return first
    again = bytearray(getpass.getpass(confirm).encode("utf-8"))
    same = again == first
    wipe(again)
    if not same:
        wipe(first)
        raise SecretError("the passphrases do not match", "type the same passphrase twice")
    return first


def passphrase_length(secret: bytes | bytearray | str) -> int:
    """Characters in ``secret``: the UTF-8 bytes that start one (no decoded copy of the secret is made)."""
    if isinstance(secret, str):
        return len(secret)
    return sum(1 for b in secret if b & 0xC0 != 0x80)


def short_passphrase_problem(secret: bytes | bytearray | str, what: str = "the passphrase") -> str | None:
    """Why ``secret`` is too short to be safe, or None. The message gives its length, never its content."""
    n = passphrase_length(secret)
    if n >= MIN_PASSPHRASE_LENGTH:
        return None
    return (
        f"{what} has only {n} character{'s' if n != 1 else ''}: "
        f"at least {MIN_PASSPHRASE_LENGTH} are needed to resist guessing"
    )


def forbid_core_dumps() -> None:
    """Make this process leave no core dump: a crash while a passphrase or volume key is in memory must not
    write it to disk. Cheap and always on (the soft limit only: a developer can raise it again to debug)."""
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    except (ValueError, OSError):  # an exotic platform: no promise made, nothing to undo
        pass
