"""The encrypted part of shielding data: the template's provisioning passphrase and the specialization
values a VM gets (hostname, an admin password *hash*, SSH keys, cloud-init user-data, files).

Serialized as UTF-8 JSON (docs/formats/shielding-data.md); bytes are base64. At most 384 KiB in total,
Microsoft's limit for specialization data. Never logged; the caller wipes what it read.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import ShieldwrightError
from app.untrusted import is_json_int, printable, read_bounded

MAX_PAYLOAD = 384 * 1024
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
#: crypt(3) hashes as /etc/shadow holds them: yescrypt, SHA-512, SHA-256, bcrypt.
_CRYPT = re.compile(r"\$(y|gy|7|6|5|2[abxy])\$[./A-Za-z0-9$,=]{8,500}")
PAYLOAD_VERSION = 1
#: A file's path in the VM: absolute, and one tmpfiles.d field as it is (systemd writes the files).
FILE_PATH = re.compile(r"/[^\s\"'\\\0]*")


class PayloadError(ShieldwrightError):
    """Specialization values that cannot be carried."""


def read_payload_file(path: str | Path, what: str = "the file") -> bytes:
    """A file for the payload, read at most one byte past the payload's bound (:meth:`Payload.check`
    refuses more), so a huge file never fills memory."""
    return read_bounded(path, MAX_PAYLOAD, PayloadError, "choose a readable file", what=what)


def read_ssh_keys(path: str | Path) -> list[str]:
    """The authorized_keys lines of an SSH public key file, blank lines and comments left out;
    :meth:`Payload.check` judges each line."""
    text = read_payload_file(path, "the SSH key file").decode("utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@dataclass(frozen=True)
class PayloadFile:
    path: str
    mode: int
    data: bytes = field(repr=False)


@dataclass
class Payload:
    provisioning_passphrase: bytearray = field(repr=False)
    hostname: str | None = None
    admin_password_hash: str | None = field(default=None, repr=False)
    ssh_authorized_keys: list[str] = field(default_factory=list, repr=False)
    user_data: bytes | None = field(default=None, repr=False)
    files: list[PayloadFile] = field(default_factory=list)

    def items(self) -> list[str]:
        """The names of what the payload holds (never values): the clear header lists them."""
        names = ["provisioning_passphrase"]
        names += ["hostname"] if self.hostname is not None else []
        names += ["admin_password_hash"] if self.admin_password_hash is not None else []
        names += ["ssh_authorized_keys"] if self.ssh_authorized_keys else []
        names += ["user_data"] if self.user_data is not None else []
        names += [f"file:{f.path}" for f in self.files]
        return names

    def check(self) -> None:
        if not self.provisioning_passphrase:
            raise PayloadError("the provisioning passphrase is empty", "give the template's passphrase")
        if self.hostname is not None and not _HOSTNAME.fullmatch(self.hostname):
            raise PayloadError(f"{self.hostname!r} is not a host name", "letters, digits, '-' and dots")
        if self.admin_password_hash is not None and not _CRYPT.fullmatch(self.admin_password_hash):
            raise PayloadError("the password hash is not a crypt(3) hash",
                               "give a hash, e.g. from `openssl passwd -6`, never the password")  # fmt: skip
        for key in self.ssh_authorized_keys:
            if (
                not key.strip()
                or "\n" in key.strip()
                or not key.split()[0].startswith(("ssh-", "ecdsa-", "sk-"))
            ):
                raise PayloadError("an SSH key is not one authorized_keys line", "give public keys (*.pub)")
        seen: set[str] = set()
        for f in self.files:
            if not FILE_PATH.fullmatch(f.path) or "/../" in f.path + "/" or f.path in seen:
                raise PayloadError(
                    f"{f.path!r} is not a usable absolute path",
                    "give /path/in/the/vm once, without spaces, quotes or backslashes",
                )
            if not 0 <= f.mode <= 0o7777:
                raise PayloadError(f"mode {f.mode:o} of {f.path} is not a file mode", "e.g. 0644")
            seen.add(f.path)
        size = len(self.to_json())
        if size > MAX_PAYLOAD:
            raise PayloadError(
                f"the payload is {size // 1024} KiB", f"at most {MAX_PAYLOAD // 1024} KiB fits"
            )

    def to_json(self) -> bytes:
        b64 = base64.b64encode
        doc: dict[str, object] = {
            "format_version": PAYLOAD_VERSION,
            "provisioning_passphrase": b64(bytes(self.provisioning_passphrase)).decode(),
        }
        if self.hostname is not None:
            doc["hostname"] = self.hostname
        if self.admin_password_hash is not None:
            doc["admin_password_hash"] = self.admin_password_hash
        if self.ssh_authorized_keys:
            doc["ssh_authorized_keys"] = list(self.ssh_authorized_keys)
        if self.user_data is not None:
            doc["user_data"] = b64(self.user_data).decode()
        if self.files:
            doc["files"] = [
                {"path": f.path, "mode": f.mode, "data": b64(f.data).decode()} for f in self.files
            ]
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Payload:
        """The payload of :meth:`to_json`. It was decrypted from a file anyone may have made, so every field's
        JSON type and range is checked here: a wrong one is a :class:`PayloadError` naming it, never a
        ``TypeError`` later in :meth:`check` or in the provisioning."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: JSON, and huge integers
            raise _malformed("is not UTF-8 JSON") from None
        if not isinstance(doc, dict):
            raise _malformed("is not a JSON object")
        unknown = sorted(set(doc) - _PAYLOAD_KEYS)
        if unknown:
            raise _malformed(f"has an unknown field {printable(unknown[0][:64])!r}")
        version = doc.get("format_version")
        if not is_json_int(version) or version != PAYLOAD_VERSION:
            raise _malformed("has no format_version 1")
        hostname = _optional_str(doc, "hostname")
        password_hash = _optional_str(doc, "admin_password_hash")
        keys = doc.get("ssh_authorized_keys", [])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise _malformed("field 'ssh_authorized_keys' is not a list of strings")
        files = doc.get("files", [])
        if not isinstance(files, list):
            raise _malformed("field 'files' is not a list")
        passphrase = bytearray(_base64(doc, "provisioning_passphrase"))
        user_data = _base64(doc, "user_data") if "user_data" in doc else None
        return cls(passphrase, hostname, password_hash, list(keys), user_data, [_file(f) for f in files])


_PAYLOAD_KEYS = frozenset({"format_version", "provisioning_passphrase", "hostname", "admin_password_hash",
                           "ssh_authorized_keys", "user_data", "files"})  # fmt: skip
_FILE_KEYS = frozenset({"path", "mode", "data"})


def _malformed(what: str) -> PayloadError:
    return PayloadError(f"the decrypted payload {what}", "it was not written by Shieldwright")


def _optional_str(doc: dict[str, object], key: str) -> str | None:
    if key not in doc:
        return None
    value = doc[key]
    if not isinstance(value, str):
        raise _malformed(f"field {key!r} is not a string")
    return value


def _base64(doc: dict[str, object], key: str, name: str = "") -> bytes:
    """``doc[key]``: base64 text (``name``, else ``key``, in the message); missing, not a string or not
    base64 is refused."""
    name = name or key
    value = doc.get(key)
    if not isinstance(value, str):
        raise _malformed(f"field {name!r} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error, and non-ASCII text
        raise _malformed(f"field {name!r} is not base64 text") from None


def _file(entry: object) -> PayloadFile:
    """One ``files`` entry: exactly path (string), mode (integer 0..0o7777) and data (base64)."""
    if not isinstance(entry, dict) or set(entry) != _FILE_KEYS:
        raise _malformed("has a 'files' entry without exactly path, mode and data")
    path, mode = entry["path"], entry["mode"]
    if not isinstance(path, str):
        raise _malformed("has a file whose field 'path' is not a string")
    if not is_json_int(mode) or not 0 <= mode <= 0o7777:
        raise _malformed("has a file whose field 'mode' is not an integer from 0 to 0o7777")
    return PayloadFile(path, mode, _base64(entry, "data", "files[].data"))
