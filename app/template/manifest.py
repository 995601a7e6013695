"""The build manifest: what was built from what, by whom, with which keys - signed, without secrets.

``<output>.manifest.json`` (format ``shieldwright-manifest``, version 1; every key in
docs/formats/manifest.md) and its detached DER CMS signature ``<output>.manifest.json.p7s`` by the catalog
signer, which ``openssl cms -verify`` checks with no Shieldwright code involved. Never in it:
passphrases, the recovery key, key material.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from app import __version__
from app.catalog.format import Catalog
from app.disk.model import DiskLayout, Partition
from app.luks.relayout import RelayoutPlan
from app.signing.cms import sign_cms, verify_cms
from app.signing.signer import Signer

FORMAT = "shieldwright-manifest"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ArtefactPaths:
    """Where a build's files go, all derived from the output image's path."""

    output: Path
    catalog: Path
    manifest: Path
    signature: Path
    report: Path

    @classmethod
    def for_output(cls, output: Path) -> ArtefactPaths:
        output = Path(output)
        return cls(
            output=output,
            catalog=output.with_name(output.name + ".vsc"),
            manifest=output.with_name(output.name + ".manifest.json"),
            signature=output.with_name(output.name + ".manifest.json.p7s"),
            report=output.with_name(output.name + ".report.html"),
        )

    def all(self) -> tuple[Path, ...]:
        return (self.output, self.catalog, self.manifest, self.signature, self.report)


@dataclass(frozen=True)
class KeyslotInfo:
    """One keyslot: its id, what opens it, and its KDF parameters without the salt."""

    id: int
    kind: str  # "passphrase" | "recovery" | "tpm2"
    kdf: dict[str, Any]


@dataclass(frozen=True)
class LuksInfo:
    """An encrypted partition's LUKS2 container (no key material)."""

    partition: int
    uuid: str
    cipher: str
    key_bits: int
    sector_size: int
    data_offset: int
    keyslots: tuple[KeyslotInfo, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "uuid": self.uuid,
            "cipher": self.cipher,
            "key_bits": self.key_bits,
            "sector_size": self.sector_size,
            "data_offset": self.data_offset,
            "keyslots": [{"id": k.id, "kind": k.kind, "kdf": k.kdf} for k in self.keyslots],
        }


@dataclass
class BuildRecord:
    """Everything a finished build knows that the manifest and the report show (no secrets)."""

    template_name: str
    template_version: str
    created: str
    input_path: Path
    input_format: str
    input_size: int
    input_sha256: str
    layout: DiskLayout
    output_paths: ArtefactPaths
    output_format: str
    output_size: int
    output_sha256: str
    output_virtual_size: int
    plan: RelayoutPlan
    protected: list[int]
    #: An app.template.build.boot.BuiltUki; not imported, as build.boot -> checks -> manifest would close a
    #: cycle.
    uki: Any
    uki_paths: list[str]
    esp_partition: int
    esp_files: dict[str, bytes] = field(repr=False)
    pcrs: dict[str, dict[str, str]]
    catalog: Catalog
    catalog_sha256: str
    catalog_esp_path: str
    uefi_certificate: x509.Certificate
    catalog_certificate: x509.Certificate
    luks: list[LuksInfo]
    recovery_key_file: Path | None = None
    #: ``pcr_policy`` of the manifest, and PCR 4 and 7 per bank when a firmware profile was given.
    pcr_policy: dict[str, object] = field(default_factory=dict)
    firmware_pcrs: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    step_seconds: list[tuple[str, float]] = field(default_factory=list)
    #: The manifest's ``sparse_ciphertext`` (``SparseChoice.manifest()`` of app.luks.relaid_image); empty
    #: means sparse ciphertext was not used: every encrypted partition is recorded as encrypted in full.
    sparse_ciphertext: dict[str, Any] = field(default_factory=dict)


def _pcr_predictions(record: BuildRecord) -> dict[str, dict[str, object]]:
    """``{bank: {"4": hex, "7": hex, "11": {phase: hex}}}`` — 4 and 7 only with a firmware profile."""
    out: dict[str, dict[str, object]] = {}
    for bank in dict.fromkeys([*record.firmware_pcrs, *record.pcrs]):
        entry: dict[str, object] = dict(record.firmware_pcrs.get(bank, {}))
        if bank in record.pcrs:
            entry["11"] = dict(record.pcrs[bank])
        out[bank] = dict(sorted(entry.items(), key=lambda kv: int(kv[0])))
    return out


def _sparse_ciphertext(record: BuildRecord) -> dict[str, Any]:
    """How each encrypted partition was written: ``mode`` "full" (every byte of its data segment is
    ciphertext) or "sparse" (the regions its filesystem does not use were left as holes: how many, how many
    bytes, a digest of their list)."""
    if record.sparse_ciphertext:
        return record.sparse_ciphertext
    return {
        "enabled": False,
        "partitions": [
            {"partition": p.number, "mode": "full", "filesystem": None, "reason": "sparse_ciphertext is off",
             "encrypted_bytes": p.data_size, "clear_regions": 0, "clear_bytes": 0,
             "clear_regions_sha256": None, "unit_bytes": None}
            for p in record.plan.encrypted
        ],
    }  # fmt: skip


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def certificate_dict(cert: x509.Certificate) -> dict[str, str]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "sha256_fingerprint": sha256_hex(cert.public_bytes(serialization.Encoding.DER)),
    }


def _partition_dict(p: Partition) -> dict[str, Any]:
    return {
        "number": p.number,
        "name": p.name,
        "role": str(p.role),
        "type_guid": p.type_guid,
        "type_name": p.type_name,
        "partition_guid": p.partition_guid,
        "first_lba": p.first_lba,
        "last_lba": p.last_lba,
        "size_bytes": p.size_bytes,
        "content": p.content,
    }


def _after(record: BuildRecord) -> list[dict[str, Any]]:
    before = {p.number: p for p in record.layout.partitions}
    out = []
    for q in record.plan.partitions:
        p = before[q.number]
        protection = "encrypted" if q.encrypt else "catalog" if q.number in record.protected else "none"
        out.append({
            **_partition_dict(p),
            "first_lba": q.first_lba,
            "last_lba": q.last_lba,
            "size_bytes": q.size_bytes,
            "content": "luks2" if q.encrypt else p.content,
            "protection": protection,
        })  # fmt: skip
    return out


def build_manifest(record: BuildRecord) -> dict[str, Any]:
    """The manifest document for ``record`` (see the module docstring for its keys)."""
    info = record.uki.info
    paths = record.output_paths
    catalog = record.catalog
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tool": {"name": "shieldwright", "version": __version__},
        "created": record.created,
        "template": {"name": record.template_name, "version": record.template_version},
        "input": {
            "path": str(record.input_path),
            "format": record.input_format,
            "size_bytes": record.input_size,
            "virtual_size": record.layout.virtual_size,
            "sha256": record.input_sha256,
            "disk_guid": record.layout.disk_guid,
            "sector_size": record.layout.sector_size,
        },
        "output": {
            "path": paths.output.name,
            "format": record.output_format,
            "size_bytes": record.output_size,
            "virtual_size": record.output_virtual_size,
            "sha256": record.output_sha256,
            "disk_guid": record.plan.disk_guid,
        },
        "partitions": {
            "before": [_partition_dict(p) for p in sorted(record.layout.partitions, key=lambda p: p.number)],
            "after": _after(record),
            "protected": sorted(record.protected),
            "encrypted": [p.number for p in record.plan.encrypted],
        },
        "uki": {
            "sha256": sha256_hex(info.data),
            "authenticode_sha256": info.authenticode_sha256,
            "size_bytes": info.size,
            "stub": f"{info.stub.kind} {info.stub.version}" if info.stub else None,
            "uname": info.uname,
            "cmdline": info.cmdline,
            "os_release": info.os_release_fields.get("PRETTY_NAME") or info.os_release_fields.get("NAME"),
            "signed_by_uefi_signer": record.uki.signed,
            "esp_paths": list(record.uki_paths),
            **record.uki.manifest(),
        },
        "esp": {
            "partition": record.esp_partition,
            "files": [
                {"path": path, "sha256": sha256_hex(data), "size_bytes": len(data)}
                for path, data in record.esp_files.items()
            ],
        },
        "pcr_predictions": _pcr_predictions(record),
        "pcr_policy": record.pcr_policy,
        "catalog": {
            "path": paths.catalog.name,
            "sha256": record.catalog_sha256,
            "esp_path": record.catalog_esp_path,
            "created": catalog.created,
            "hash": catalog.hash,
            "block_size": catalog.block_size,
            "disk_guid": catalog.disk_guid,
            "partitions": [
                {
                    "number": p.number,
                    "partition_guid": p.partition_guid,
                    "block_count": p.block_count,
                    "size_bytes": p.size_bytes,
                    "digest": p.digest,
                }
                for p in catalog.partitions
            ],  # fmt: skip
        },
        "signers": {
            "uefi": certificate_dict(record.uefi_certificate),
            "catalog": certificate_dict(record.catalog_certificate),
        },
        "luks": [luks.to_dict() for luks in record.luks],
        "sparse_ciphertext": _sparse_ciphertext(record),
        "host_files": [f.to_dict() for f in getattr(record.uki, "host_files", ())],
        "recovery_key_file": str(record.recovery_key_file) if record.recovery_key_file else None,
        "notes": list(record.notes),
    }


def encode_manifest(doc: dict[str, Any]) -> bytes:
    """The manifest file's bytes: indented UTF-8 JSON ending in a newline (what gets signed)."""
    return (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def sign_manifest(data: bytes, signer: Signer) -> bytes:
    """Detached DER CMS SignedData over ``data`` by ``signer``."""
    return sign_cms(data, signer, detached=True)


def verify_manifest(
    data: bytes, signature: bytes, trusted: list[x509.Certificate] | None = None
) -> x509.Certificate:
    """The signer certificate of a manifest signature that verifies over ``data`` (SignatureError if not)."""
    return verify_cms(signature, content=data, trusted=trusted).signer
