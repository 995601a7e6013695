"""Shielding data (issue 16): the ``.shd`` format checked by OpenSSL, applicability, secrecy, hostile files.

Catalogs here are real signed ``.vsc`` files (app.catalog.format.sign_catalog) with chosen names, versions
and signers — the applicability rules only read a catalog's signed header, so no disk is needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.catalog.format import Catalog, CatalogPartition, read_catalog, sign_catalog
from app.errors import ShieldwrightError
from app.shielding.guardians import Guardian, import_guardian, new_owner
from app.shielding.payload import Payload, PayloadFile
from app.shielding.qualifiers import Qualifier, applicability
from app.shielding.shd import MAGIC, ShieldingDataError, create_shielding_data, read_shielding_data
from app.signing import der
from app.signing.cms import sign_cms
from app.signing.keys import generate_key, generate_self_signed
from app.signing.signer import KeySigner

PASSPHRASE = b"template provisioning passphrase 4c1d"
PASSWORD_HASH = "$6$saltsaltsalt$" + "x" * 86
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHshieldwrighttestkeyshieldwrighttestkey0 admin@owner"


def openssl(*args: object, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True)
    if check and done.returncode != 0:
        raise AssertionError(done.stderr.decode())
    return done


def rsa_guardian(tmp: Path, store: Path, name: str) -> tuple[Guardian, Path, Path]:
    """A fabric guardian whose key pair OpenSSL made (certificate imported, key kept for the test)."""
    key, crt = tmp / f"{name}.key", tmp / f"{name}.crt"
    openssl("req", "-x509", "-newkey", "rsa:3072", "-nodes", "-keyout", key, "-out", crt,
            "-subj", f"/CN={name}",
            "-days", "30")  # fmt: skip
    return import_guardian(name, crt, store=store), crt, key


def signed_catalog(name: str, version: str, signer: KeySigner) -> bytes:
    part = CatalogPartition.from_digests(
        number=2, partition_guid="6c8011a3-9f4a-45a4-9149-1a614962de55",
        type_guid="4f68bce3-e8cd-4db1-96e7-fbcaf984b709", first_lba=2048, last_lba=4095, size_bytes=1048576,
        block_digests=bytes(32),
    )  # fmt: skip
    cat = Catalog(template_name=name, template_version=version, created="2026-12-01T00:00:00Z",
                  disk_guid="8e1ab41e-475a-464f-b9c5-a3b4c2b1506f", block_size=1048576,
                  partitions=[part])  # fmt: skip

    return sign_catalog(cat, signer)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("shd")
    store = tmp / "guardians"
    owner = new_owner("owner", store=store)
    g1, g1_crt, g1_key = rsa_guardian(tmp, store, "fabric-a")
    g2, g2_crt, g2_key = rsa_guardian(tmp, store, "fabric-b")
    key = generate_key("p256")
    signer = KeySigner(key, generate_self_signed(key, common_name="Template signer"))  # type: ignore[arg-type]
    vsc = signed_catalog("Web server", "1.2.3.4", signer)
    qualifier = Qualifier(read_catalog(vsc).signer_fingerprint, "Web server", "1.2.3.4", "greater-or-equal")
    payload = Payload(bytearray(PASSPHRASE), hostname="web-01", admin_password_hash=PASSWORD_HASH,
                      ssh_authorized_keys=[SSH_KEY], user_data=b"#cloud-config\n",
                      files=[PayloadFile("/etc/motd", 0o644, b"shielded\n")])  # fmt: skip
    data = create_shielding_data(owner, [g1, g2], [qualifier], "shielded", payload)
    shd = tmp / "data.shd"
    shd.write_bytes(data)
    return {"tmp": tmp, "store": store, "owner": owner, "data": data, "shd": shd, "signer": signer,
            "recipients": [(g1_crt, g1_key), (g2_crt, g2_key),
                           (store / "owner" / "encryption.crt",
                            store / "owner" / "encryption.key")]}  # fmt: skip


def enveloped_part(content: bytes) -> bytes:
    """Cut the EnvelopedData out of the signed content, following docs/formats/shielding-data.md."""
    assert content[:7] == b"SWSHD1\n"
    (n,) = struct.unpack_from("<I", content, 7)
    json.loads(content[11 : 11 + n])  # the header is JSON
    return content[11 + n :]


def test_openssl_verifies_the_owner_signature_and_every_recipient_decrypts(world: dict[str, object]) -> None:
    tmp, owner = Path(str(world["tmp"])), world["owner"]
    assert isinstance(owner, Guardian) and owner.directory is not None
    content = tmp / "content.bin"
    openssl("cms", "-verify", "-inform", "DER", "-binary", "-in", world["shd"],
            "-CAfile", owner.directory / "signing.crt", "-out", content)  # fmt: skip
    env = tmp / "enveloped.der"
    env.write_bytes(enveloped_part(content.read_bytes()))
    for crt, key in world["recipients"]:  # type: ignore[attr-defined]
        plain = openssl("cms", "-decrypt", "-inform", "DER", "-in", env, "-recip", crt, "-inkey", key).stdout
        doc = json.loads(plain)
        assert doc["hostname"] == "web-01" and doc["ssh_authorized_keys"] == [SSH_KEY]
        import base64

        assert base64.b64decode(doc["provisioning_passphrase"]) == PASSPHRASE
    stranger_key, stranger_crt = tmp / "stranger.key", tmp / "stranger.crt"
    openssl("req", "-x509", "-newkey", "rsa:3072", "-nodes", "-keyout", stranger_key, "-out", stranger_crt,
            "-subj", "/CN=stranger", "-days", "30")  # fmt: skip
    refused = openssl("cms", "-decrypt", "-inform", "DER", "-in", env, "-recip", stranger_crt, "-inkey",
                      stranger_key, check=False)  # fmt: skip
    assert refused.returncode != 0
    # Another certificate is not accepted as the owner's.
    other = openssl("cms", "-verify", "-inform", "DER", "-binary", "-in", world["shd"],
                    "-CAfile", stranger_crt,
                    "-out", tmp / "x.bin", check=False)  # fmt: skip
    assert other.returncode != 0


def test_our_reader_opens_with_each_recipient_only(world: dict[str, object]) -> None:
    from app.signing.keys import load_certificates, load_private_key

    sd = read_shielding_data(world["data"])  # type: ignore[arg-type]
    assert sd.policy == "shielded" and sd.header["payload_items"] == [
        "provisioning_passphrase", "hostname", "admin_password_hash", "ssh_authorized_keys", "user_data",
        "file:/etc/motd",
    ]  # fmt: skip
    for crt, key in world["recipients"]:  # type: ignore[attr-defined]
        payload = sd.open(load_certificates(crt)[0], load_private_key(key))
        assert bytes(payload.provisioning_passphrase) == PASSPHRASE and payload.files[0].data == b"shielded\n"
    key = generate_key("rsa3072")
    with pytest.raises(ShieldingDataError, match="cannot open"):
        sd.open(generate_self_signed(key, common_name="x"), key)


def test_nothing_secret_is_in_the_clear(world: dict[str, object]) -> None:
    data = world["data"]
    assert isinstance(data, bytes)
    for secret in (PASSPHRASE, PASSWORD_HASH.encode(), SSH_KEY.encode(), b"AAAAC3NzaC1lZDI1NTE5AAAAIH",
                   b"shielded\n", b"#cloud-config"):  # fmt: skip
        assert secret not in data
    store = Path(str(world["store"]))
    for key in store.glob("*/*.key"):
        assert key.stat().st_mode & 0o777 == 0o600
    assert (store / "owner").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    ("rule", "version", "applies"),
    [
        ("equals", "1.2.3.4", True), ("equals", "1.2.3.3", False), ("equals", "1.2.3.5", False),
        ("greater-than", "1.2.3.4", False), ("greater-than", "1.2.3.3", True),
        ("greater-than", "1.2.3.5", False),
        ("greater-or-equal", "1.2.3.4", True), ("greater-or-equal", "1.2.3.3", True),
        ("greater-or-equal", "1.2.3.5", False),
    ],
)  # fmt: skip
def test_version_rules_at_their_boundaries(
    world: dict[str, object], rule: str, version: str, applies: bool
) -> None:
    """The catalog is version 1.2.3.4; the qualifier's version and rule vary (Microsoft's semantics: the
    template's version compared with the qualifier's)."""
    signer = world["signer"]
    assert isinstance(signer, KeySigner)
    catalog = read_catalog(signed_catalog("Web server", "1.2.3.4", signer))
    q = Qualifier(catalog.signer_fingerprint, "Web server", version, rule)
    assert applicability([q], catalog)[0] is applies


def test_another_signer_or_name_never_applies(world: dict[str, object]) -> None:
    signer = world["signer"]
    assert isinstance(signer, KeySigner)
    mine = read_catalog(signed_catalog("Web server", "1.2.3.4", signer))
    key = generate_key("p256")
    other_signer = KeySigner(key, generate_self_signed(key, common_name="Template signer"))  # type: ignore[arg-type]
    theirs = read_catalog(signed_catalog("Web server", "1.2.3.4", other_signer))
    renamed = read_catalog(signed_catalog("Web server 2", "1.2.3.4", signer))
    q = Qualifier(mine.signer_fingerprint, "Web server", "1.0.0.0", "greater-or-equal")
    assert applicability([q], mine)[0]
    ok, why = applicability([q], theirs)
    assert not ok and "signed by" in why[0]
    ok, why = applicability([q], renamed)
    assert not ok and "named" in why[0]


# -- damaged and hostile files ----------------------------------------------------------------------------


def test_a_flipped_byte_anywhere_is_refused(world: dict[str, object]) -> None:
    data = world["data"]
    assert isinstance(data, bytes)
    for at in range(0, len(data), max(1, len(data) // 97)):
        bad = bytearray(data)
        bad[at] ^= 0x01
        with pytest.raises(ShieldwrightError):
            read_shielding_data(bytes(bad))


def _resigned(world: dict[str, object], content: bytes) -> bytes:
    """``content`` signed by the owner as a .shd would be: only the content is hostile."""
    owner = world["owner"]
    assert isinstance(owner, Guardian) and owner.signing_cert is not None
    return sign_cms(content, KeySigner(owner.signing_key(), owner.signing_cert))  # type: ignore[arg-type]


def _content(world: dict[str, object]) -> tuple[bytes, bytes]:
    from app.signing.cms import verify_cms

    content = verify_cms(world["data"]).content  # type: ignore[arg-type]
    assert content is not None
    (n,) = struct.unpack_from("<I", content, 7)
    return content[11 : 11 + n], content[11 + n :]


def test_hostile_contents_are_one_line_errors(world: dict[str, object]) -> None:
    header, env = _content(world)
    cases = {
        "truncated": world["data"][:-200],  # type: ignore[index]
        "wrong magic": _resigned(world, b"SWSHD9\n" + struct.pack("<I", len(header)) + header + env),
        "huge header length": _resigned(world, MAGIC + struct.pack("<I", 0xFFFFFFF0) + header + env),
        "malformed JSON": _resigned(world, MAGIC + struct.pack("<I", 5) + b"{nope" + env),
        "JSON not an object": _resigned(world, MAGIC + struct.pack("<I", 2) + b"[]" + env),
        "deep JSON": _resigned(world, MAGIC + struct.pack("<I", 20000) + b"[" * 10000 + b"]" * 10000 + env),
        "10000 recipients": _resigned(world, MAGIC + struct.pack("<I", len(header)) + header
                                      + _many_recipients()),
        "no envelope": _resigned(world, MAGIC + struct.pack("<I", len(header)) + header),
    }  # fmt: skip
    for name, data in cases.items():
        with pytest.raises(ShieldingDataError) as err:
            read_shielding_data(data)
        assert "\n" not in err.value.one_line(), name


def _many_recipients(n: int = 10_000) -> bytes:
    """A syntactically valid ContentInfo(EnvelopedData) with ``n`` (bogus) KeyTransRecipientInfos."""
    ri = der.sequence(der.integer(0), der.sequence(der.sequence(), der.integer(1)),
                      der.sequence(der.oid("1.2.840.113549.1.1.1"), der.null()),
                      der.octet_string(b"x"))  # fmt: skip
    enc = der.sequence(der.oid("1.2.840.113549.1.7.1"), der.sequence(der.oid("2.16.840.1.101.3.4.1.42")))
    body = der.sequence(der.integer(0), der.set_of([ri] * n), enc)
    return der.sequence(der.oid("1.2.840.113549.1.7.3"), der.explicit(0, body))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_only_our_errors(world: dict[str, object], data: st.DataObject) -> None:
    raw = bytearray(world["data"])  # type: ignore[arg-type]
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if kind == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del raw[at : at + data.draw(st.integers(1, 64))]
        else:
            raw[at:at] = os.urandom(data.draw(st.integers(1, 64)))
    with contextlib.suppress(ShieldwrightError):
        read_shielding_data(bytes(raw))
