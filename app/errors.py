"""User-facing error types.

Every failure a user can cause (a bad image, a wrong password, a missing tool) is raised as a
:class:`ShieldwrightError`: a one-line ``message`` saying what is wrong and a ``hint`` saying what to
do about it. The CLI prints both and exits non-zero; the GUI shows them in a dialog. Anything else
escaping the engine is a bug and gets a traceback in the log.

Messages never contain secrets (passphrases, key material).
"""

from __future__ import annotations


class ShieldwrightError(Exception):
    """Base of all errors that are the input's fault, not the program's."""

    #: CLI exit code for this kind of error.
    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        # Keep the message to one line: it is what the CLI prints and the dialog's title text.
        self.message = " ".join(message.split())
        self.hint = " ".join(hint.split())
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """``message (hint)`` on one line, as the CLI prints it."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ImageError(ShieldwrightError):
    """The disk image cannot be read: missing, unreadable, not a disk image, truncated, corrupt."""


class UnsupportedImageError(ImageError):
    """The file is a disk image, but of a kind or with a feature we do not handle (e.g. differencing VHDX)."""


class TruncatedImageError(ImageError):
    """The container says the image is larger than the file holding it."""


class CorruptImageError(ImageError):
    """A container structure (header, BAT, metadata) fails its checksum or is inconsistent."""


class OutOfSpaceError(ImageError):
    """The output filesystem is (or would be) full. Writers raise it after removing their partial file."""


class PartitionTableError(ShieldwrightError):
    """The partition table cannot be read or written."""


class ToolMissingError(ShieldwrightError):
    """An external program we need is not installed."""


class CancelledError(ShieldwrightError):
    """The user cancelled a long operation. Not a failure of the input; exit code 130 like SIGINT."""

    exit_code = 130

    def __init__(self, message: str = "Cancelled", hint: str = "nothing was written") -> None:
        super().__init__(message, hint)


class SigningError(ShieldwrightError):
    """A key, certificate or signature problem: unreadable, mismatched, unsupported, or not verifying."""


class WrongPassphraseError(SigningError):
    """The passphrase does not decrypt the key or PKCS#12 file. Never carries the passphrase itself."""


class KeyMismatchError(SigningError):
    """The private key does not belong to the certificate."""


class SignatureError(SigningError):
    """A signature is missing, malformed, does not verify, or would be overwritten without consent."""


class PeFormatError(ShieldwrightError):
    """The file is not a well-formed PE/COFF image (truncated, corrupt headers or section table)."""


class OutputExistsError(ShieldwrightError):
    """We refuse to overwrite an existing output (keys especially)."""
