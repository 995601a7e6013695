"""Errors of the LUKS2 layer, all :class:`app.errors.ShieldwrightError` subclasses.

A bad passphrase is :class:`app.errors.WrongPassphraseError` (shared with the signing code, so the CLI
and GUI treat every wrong passphrase alike). Messages never carry key material or passphrases.
"""

from __future__ import annotations

from app.errors import ShieldwrightError


class LuksError(ShieldwrightError):
    """A LUKS2 operation cannot be done on this container (full keyslot table, metadata too small, …)."""


class LuksHeaderError(LuksError):
    """The bytes are not a usable LUKS2 header: bad magic, checksum, size, or malformed JSON metadata."""


class LuksUnsupportedError(LuksError):
    """A well-formed LUKS2 feature we do not handle (another cipher, integrity, reencryption, …)."""
