"""Test helpers for Authenticode/CMS: keys made by openssl, PE fixtures, and what independent tools report.

Keys and certificates come from ``openssl req`` (not our keys module), and digests/verdicts from
osslsigncode, sbverify and openssl, so our code is graded by other programs. PE byte surgery for the
helpers uses pefile, not our parser.
"""

from __future__ import annotations

import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pefile
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from platformdirs import user_cache_path

from app.signing.signer import KeySigner
from app.template.demo import extract_kernel, fetch_kernel_deb
from tests.conftest import require_tool, run

STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
SYSTEMD_BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")


@dataclass(frozen=True)
class TestKey:
    __test__ = False  # not a test class
    cert_path: Path
    key_path: Path
    signer: KeySigner

    @property
    def cert(self) -> x509.Certificate:
        return self.signer.certificate


def openssl_key(directory: Path, name: str, kind: str = "rsa", *, ca: tuple[TestKey, ...] = ()) -> TestKey:
    """A self-signed (or, given ``ca``, CA-issued) code-signing certificate and key made by openssl.

    ``kind``: "rsa" (2048), "p256" or "p384".
    """
    require_tool("openssl")
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    newkey = {"rsa": ["rsa:2048"], "p256": ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
              "p384": ["ec", "-pkeyopt", "ec_paramgen_curve:P-384"]}[kind]  # fmt: skip
    if not ca:
        run(
            "openssl",
            "req",
            "-x509",
            "-newkey",
            *newkey,
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "30",
            "-subj",
            f"/CN={name}",
            "-addext",
            "extendedKeyUsage=codeSigning",
        )
    else:
        csr = directory / f"{name}.csr"
        ext = directory / f"{name}.ext"
        ext.write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=codeSigning\nkeyUsage=digitalSignature\n")
        run("openssl", "req", "-new", "-newkey", *newkey, "-nodes", "-keyout", key, "-out", csr,
            "-subj", f"/CN={name}")  # fmt: skip
        run("openssl", "x509", "-req", "-in", csr, "-CA", ca[0].cert_path, "-CAkey", ca[0].key_path,
            "-CAcreateserial", "-days", "30", "-extfile", ext, "-out", cert)  # fmt: skip
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    private = load_pem_private_key(key.read_bytes(), None)
    chain = [c.cert for c in ca]
    return TestKey(cert, key, KeySigner(private, certificate, chain))  # type: ignore[arg-type]


def kernel_image(directory: Path) -> Path:
    """The Debian cloud kernel (vmlinuz, signed by Debian), extracted from the cached .deb."""
    deb = fetch_kernel_deb(user_cache_path("shieldwright") / "debs")
    return extract_kernel(deb, directory).vmlinuz


# -- independent verdicts --------------------------------------------------------------------------


def osslsigncode_unsigned_digest(path: Path, tmp: Path) -> bytes:
    """The digest osslsigncode would sign: ``extract-data`` writes the SpcIndirectDataContent it builds."""
    require_tool("osslsigncode")
    out = tmp / (path.name + ".data.der")
    out.unlink(missing_ok=True)
    run("osslsigncode", "extract-data", "-h", "sha256", "-in", path, "-out", out)
    dump = run("openssl", "asn1parse", "-inform", "DER", "-in", out).stdout
    octets = re.findall(r"OCTET STRING\s+\[HEX DUMP\]:([0-9A-F]+)", dump)
    assert octets, dump
    return bytes.fromhex(octets[-1])


def osslsigncode_calculated_digest(path: Path) -> bytes:
    """``Calculated message digest`` from ``osslsigncode verify`` (printed even when the chain is unknown)."""
    require_tool("osslsigncode")
    proc = subprocess.run(["osslsigncode", "verify", "-in", str(path)], capture_output=True, text=True)
    found = re.findall(r"Calculated message digest\s*:\s*([0-9A-F]+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    return bytes.fromhex(found[0])


def sbverify(path: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    require_tool("sbverify")
    return subprocess.run(["sbverify", "--cert", str(cert), str(path)], capture_output=True, text=True)


def osslsigncode_verify(path: Path, ca: Path) -> subprocess.CompletedProcess[str]:
    require_tool("osslsigncode")
    return subprocess.run(["osslsigncode", "verify", "-CAfile", str(ca), "-in", str(path)],
                          capture_output=True, text=True)  # fmt: skip


# -- PE surgery with pefile (independent of our parser) ---------------------------------------------


def security_dir(data: bytes) -> tuple[int, int, int]:
    """(file offset of the security data-directory entry, table offset, table size) per pefile."""
    pe = pefile.PE(data=data, fast_load=True)
    entry = pe.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]]
    return entry.get_file_offset(), entry.VirtualAddress, entry.Size


def win_certificates(data: bytes) -> list[bytes]:
    """The raw WIN_CERTIFICATE entries (each including its header, without padding)."""
    _, off, size = security_dir(data)
    entries, pos = [], off
    while pos + 8 <= off + size:
        (length,) = struct.unpack_from("<I", data, pos)
        entries.append(data[pos : pos + length])
        pos += (length + 7) // 8 * 8
    return entries


def keep_only_signature(data: bytes, index: int) -> bytes:
    """A copy whose certificate table holds only entry ``index`` (checksum left alone: UEFI ignores it)."""
    entry_at, off, _ = security_dir(data)
    entry = win_certificates(data)[index]
    entry += b"\0" * (-len(entry) % 8)
    out = bytearray(data[:off] + entry)
    struct.pack_into("<II", out, entry_at, off, len(entry))
    return bytes(out)
