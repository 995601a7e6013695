"""Hostile shielding data is refused with one-line typed errors, in the engine and in ``shieldwright shield``.

The files are made here as an attacker would: the owner's real signature over a content whose header or
encrypted payload is hostile (an owner, or anyone holding its key, can sign anything), or an envelope made by
``openssl cms -encrypt`` with a cipher Shieldwright never writes. The CLI runs in a subprocess with the
guardian store and log directory in a temporary ``XDG_DATA_HOME``/``XDG_STATE_HOME``.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from app.catalog.format import read_catalog
from app.cli import build_parser
from app.errors import ShieldwrightError
from app.shielding.guardians import Guardian, new_owner
from app.shielding.payload import Payload, PayloadError, PayloadFile
from app.shielding.qualifiers import Qualifier
from app.shielding.shd import MAGIC, ShieldingDataError, create_shielding_data, read_shielding_data
from app.signing.cms import sign_cms, verify_cms
from app.signing.keys import generate_key, generate_self_signed, load_certificates, load_private_key
from app.signing.signer import KeySigner
from tests.shielding.test_shd import PASSPHRASE, PASSWORD_HASH, SSH_KEY, openssl, signed_catalog

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "shieldwright: error: "


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """An owner in a guardian store where the CLI finds it, a template's .vsc, and good shielding data."""
    tmp = tmp_path_factory.mktemp("hostile-shd")
    xdg = tmp / "xdg"
    owner = new_owner("owner", store=xdg / "shieldwright" / "guardians")
    key = generate_key("p256")
    signer = KeySigner(key, generate_self_signed(key, common_name="Template signer"))
    vsc = tmp / "web.vsc"
    vsc.write_bytes(signed_catalog("Web server", "1.2.3.4", signer))
    qualifier = Qualifier(read_catalog(vsc.read_bytes()).signer_fingerprint, "Web server", "1.2.3.4")
    payload = Payload(bytearray(PASSPHRASE), hostname="web-01", admin_password_hash=PASSWORD_HASH,
                      ssh_authorized_keys=[SSH_KEY],
                      files=[PayloadFile("/etc/motd", 0o644, b"hi\n")])  # fmt: skip
    data = create_shielding_data(owner, [], [qualifier], "shielded", payload)
    assert owner.directory is not None
    return {"tmp": tmp, "xdg": xdg, "owner": owner, "vsc": vsc, "data": data,
            "crt": owner.directory / "encryption.crt", "key": owner.directory / "encryption.key"}  # fmt: skip


def _env(world: dict[str, object]) -> dict[str, str]:
    tmp = Path(str(world["tmp"]))
    return {**os.environ, "XDG_DATA_HOME": str(world["xdg"]), "XDG_STATE_HOME": str(tmp / "state")}


def _sw(world: dict[str, object], *args: object) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "app", "shield", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, env=_env(world), cwd=ROOT, timeout=120)


def _assert_refused(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Refused as bad input: exit 2, one ``shieldwright: error:`` line, a typed message, no traceback."""
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith(PREFIX), done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _one_line(exc: ShieldwrightError) -> None:
    assert "\n" not in exc.one_line() and exc.message and exc.hint


def _parts(world: dict[str, object]) -> tuple[bytes, bytes]:
    """The good file's clear header and EnvelopedData (the writer's layout: magic, u32 length, header,
    envelope)."""
    content = verify_cms(world["data"]).content  # type: ignore[arg-type]
    assert content is not None and content.startswith(MAGIC)
    (n,) = struct.unpack_from("<I", content, len(MAGIC))
    start = len(MAGIC) + 4
    return content[start : start + n], content[start + n :]


def _shd(world: dict[str, object], header: bytes, enveloped: bytes) -> bytes:
    """A .shd as the writer lays it out, signed by the owner: only what is inside is hostile."""
    owner = world["owner"]
    assert isinstance(owner, Guardian) and owner.signing_cert is not None
    content = MAGIC + struct.pack("<I", len(header)) + header + enveloped
    return sign_cms(content, KeySigner(owner.signing_key(), owner.signing_cert))


def _sealed(world: dict[str, object], plain: bytes) -> bytes:
    """A .shd with the good header whose envelope (AES-256-CBC to the owner, as the writer makes it) holds
    ``plain`` as the payload."""
    owner = world["owner"]
    assert isinstance(owner, Guardian)
    builder = pkcs7.PKCS7EnvelopeBuilder().set_content_encryption_algorithm(algorithms.AES256)
    builder = builder.set_data(plain).add_recipient(owner.encryption_cert)
    enveloped = builder.encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    return _shd(world, _parts(world)[0], enveloped)


def _write(world: dict[str, object], name: str, data: bytes) -> Path:
    path = Path(str(world["tmp"])) / name
    path.write_bytes(data)
    return path


def _recipient(world: dict[str, object]):  # type: ignore[no-untyped-def]
    return load_certificates(world["crt"])[0], load_private_key(world["key"])  # type: ignore[arg-type]


# -- 6: an envelope with a content encryption algorithm cryptography cannot decrypt -------------------------


@pytest.mark.parametrize(("cipher", "name"), [("-des3", "3DES"), ("-camellia256", "Camellia-256")])
def test_unsupported_content_cipher_is_a_typed_error(
    world: dict[str, object], cipher: str, name: str
) -> None:
    tmp = Path(str(world["tmp"]))
    plain, enveloped = tmp / f"plain{cipher}.json", tmp / f"env{cipher}.der"
    plain.write_bytes(Payload(bytearray(PASSPHRASE)).to_json())
    openssl("cms", "-encrypt", cipher, "-binary", "-outform", "DER", "-in", plain, "-out", enveloped,
            world["crt"])  # fmt: skip
    data = _shd(world, _parts(world)[0], enveloped.read_bytes())
    sd = read_shielding_data(data)  # the signed part is fine; only opening it fails
    with pytest.raises(ShieldingDataError) as err:
        sd.open(*_recipient(world))
    assert "content encryption algorithm" in err.value.message and name in err.value.message
    _one_line(err.value)
    if cipher == "-des3":
        shd, out = _write(world, "des3.shd", data), tmp / "des3-payload.json"
        _assert_refused(_sw(world, "open", shd, "--key", world["key"], "--cert", world["crt"], "-o", out),
                        "content encryption algorithm")  # fmt: skip
        assert not out.exists()


# -- 7: the decrypted payload's JSON: values out of range, nested too deeply, wrong types ----------------


def _payload(**fields: object) -> bytes:
    doc = json.loads(Payload(bytearray(PASSPHRASE), files=[PayloadFile("/etc/motd", 0o644, b"x")]).to_json())
    doc.update(fields)
    return json.dumps(doc).encode()


def _file(**fields: object) -> list[dict[str, object]]:
    return [{"path": "/etc/motd", "mode": 420, "data": "eA==", **fields}]


HOSTILE_PAYLOADS = {
    "mode Infinity": (
        _payload(files=[{"path": "/etc/motd", "mode": 0, "data": "eA=="}]).replace(
            b'"mode": 0', b'"mode": Infinity'
        ),
        "mode",
    ),  # fmt: skip
    "mode NaN": (_payload().replace(b'"mode": 420', b'"mode": NaN'), "mode"),
    "mode a float": (_payload(files=_file(mode=420.0)), "mode"),
    "mode a string": (_payload(files=_file(mode="0644")), "mode"),
    "mode true": (_payload(files=_file(mode=True)), "mode"),
    "mode negative": (_payload(files=_file(mode=-1)), "mode"),
    "mode too large": (_payload(files=_file(mode=0o10000)), "mode"),
    "mode huge": (_payload().replace(b'"mode": 420', b'"mode": 1' + b"0" * 5000), "JSON"),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    "deeply nested field": (
        _payload().replace(b'"hostname"', b"").rstrip(b"}")
        + b', "hostname": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
        "JSON",
    ),  # fmt: skip
    "hostname a number": (_payload(hostname=5), "hostname"),
    "hostname null": (_payload(hostname=None), "hostname"),
    "password hash a list": (_payload(admin_password_hash=["$6$x"]), "admin_password_hash"),
    "ssh keys not a list": (_payload(ssh_authorized_keys=SSH_KEY), "ssh_authorized_keys"),
    "ssh key a number": (_payload(ssh_authorized_keys=[5]), "ssh_authorized_keys"),
    "user_data a number": (_payload(user_data=5), "user_data"),
    "files an object": (_payload(files={"path": "/etc/motd"}), "files"),
    "file a number": (_payload(files=[5]), "files"),
    "file path a number": (_payload(files=_file(path=5)), "path"),
    "file without data": (_payload(files=[{"path": "/etc/motd", "mode": 420}]), "files"),
    "file data not base64": (_payload(files=_file(data="not base64!")), "data"),
    "passphrase a number": (_payload(provisioning_passphrase=5), "provisioning_passphrase"),
    "format_version true": (_payload(format_version=True), "format_version"),
    "not an object": (b"[1]", "object"),
    "not UTF-8": (b"\xff\xfe{}", "JSON"),
}


@pytest.mark.parametrize("case", HOSTILE_PAYLOADS)
def test_hostile_payload_json_is_a_typed_error_naming_the_field(case: str) -> None:
    data, field = HOSTILE_PAYLOADS[case]
    with pytest.raises(PayloadError) as err:
        Payload.from_json(data)
    assert field in err.value.message, err.value.message
    _one_line(err.value)


def test_a_good_payload_still_reads_back() -> None:
    payload = Payload(bytearray(PASSPHRASE), hostname="web-01", admin_password_hash=PASSWORD_HASH,
                      ssh_authorized_keys=[SSH_KEY], user_data=b"#cloud-config\n",
                      files=[PayloadFile("/etc/motd", 0o640, b"hi\n")])  # fmt: skip
    again = Payload.from_json(payload.to_json())
    assert again == payload
    again.check()


def test_hostile_payload_inside_signed_data_is_refused_on_open(world: dict[str, object]) -> None:
    """The provisioning path opens the payload the same way (``ShieldingData.open``)."""
    for case in (
        "mode Infinity",
        "deeply nested",
        "hostname a number",
        "ssh key a number",
        "file path a number",
    ):
        sd = read_shielding_data(_sealed(world, HOSTILE_PAYLOADS[case][0]))
        with pytest.raises(PayloadError) as err:
            sd.open(*_recipient(world))
        _one_line(err.value)
    tmp = Path(str(world["tmp"]))
    for case in ("mode Infinity", "hostname a number"):
        shd, out = (
            _write(world, "payload.shd", _sealed(world, HOSTILE_PAYLOADS[case][0])),
            tmp / "payload.json",
        )
        done = _sw(world, "open", shd, "--key", world["key"], "--cert", world["crt"], "-o", out)
        _assert_refused(done, "decrypted payload", HOSTILE_PAYLOADS[case][1])
        assert not out.exists()


# -- 8: the clear header's inner shapes --------------------------------------------------------------------


def _header(world: dict[str, object], change) -> bytes:  # type: ignore[no-untyped-def]
    header = json.loads(_parts(world)[0])
    change(header)
    return json.dumps(header, indent=1).encode()


HOSTILE_HEADERS = {
    "owner without name": lambda h: h["owner"].pop("name"),
    "owner name a number": lambda h: h["owner"].update(name=5),
    "owner with an extra key": lambda h: h["owner"].update(extra="x"),
    "owner encryption digest not hex": lambda h: h["owner"].update(encryption_sha256="z" * 64),
    "guardian a number": lambda h: h.update(guardians=[1]),
    "guardian without sha256": lambda h: h.update(guardians=[{"name": "g", "subject": "CN=g"}]),
    "guardian sha256 a number": lambda h: h.update(guardians=[{"name": "g", "subject": "CN=g", "sha256": 5}]),
    "guardian subject null": lambda h: h.update(
        guardians=[{"name": "g", "subject": None, "sha256": "a" * 64}]
    ),  # fmt: skip
    "qualifier a number": lambda h: h.update(qualifiers=[1]),
    "payload item a number": lambda h: h.update(payload_items=[5]),
    "created a list": lambda h: h.update(created=[]),
    "format_version true": lambda h: h.update(format_version=True),
}


@pytest.mark.parametrize("case", HOSTILE_HEADERS)
def test_hostile_header_shapes_are_refused_on_read(world: dict[str, object], case: str) -> None:
    data = _shd(world, _header(world, HOSTILE_HEADERS[case]), _parts(world)[1])
    with pytest.raises(ShieldingDataError) as err:
        read_shielding_data(data)
    _one_line(err.value)


def test_shield_show_refuses_hostile_headers(world: dict[str, object]) -> None:
    assert _sw(world, "show", _write(world, "good.shd", world["data"])).returncode == 0  # type: ignore[arg-type]
    for case in ("owner without name", "guardian a number"):
        shd = _write(
            world, "header.shd", _shd(world, _header(world, HOSTILE_HEADERS[case]), _parts(world)[1])
        )
        _assert_refused(_sw(world, "show", shd), "header")


# -- 14: a password hash file that is not UTF-8 ------------------------------------------------------------


def test_password_hash_file_not_utf8_is_a_typed_error(
    world: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.secrets

    tmp = Path(str(world["tmp"]))
    bad, passphrase, out = tmp / "hash.bin", tmp / "pass", tmp / "made.shd"
    bad.write_bytes(b"$6$salt\xff\xfe\x80" + b"x" * 40 + b"\n")
    passphrase.write_bytes(PASSPHRASE)
    argv = ["shield", "create", "--owner", "owner", "--qualifier", str(world["vsc"]), "--passphrase-file",
            str(passphrase), "--password-hash-file", str(bad), "-o", str(out)]  # fmt: skip
    for name, value in _env(world).items():
        if name.startswith("XDG_"):
            monkeypatch.setenv(name, value)
    wiped: list[bytearray] = []
    real_wipe = app.secrets.wipe

    def recording_wipe(buf: bytearray | None) -> None:
        if buf is not None:
            wiped.append(buf)
        real_wipe(buf)

    monkeypatch.setattr(app.secrets, "wipe", recording_wipe)
    args = build_parser().parse_args(argv)
    with pytest.raises(PayloadError) as err:
        args.func(args)
    assert "--password-hash-file" in err.value.message and "UTF-8" in err.value.message
    assert str(bad) in err.value.message
    _one_line(err.value)
    # The hash's buffer (the file minus its newline) was wiped, like every secret buffer read.
    assert len(bad.read_bytes()) - 1 in [len(buf) for buf in wiped] and not any(any(buf) for buf in wiped)
    assert not out.exists()
    _assert_refused(_sw(world, *argv[1:]), "--password-hash-file", "UTF-8", "hash.bin")
    assert not out.exists()
