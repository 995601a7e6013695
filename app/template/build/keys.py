"""LUKS2 headers for the partitions a build encrypts: KDF cost, volume keys, keyslots, what the manifest says.

Every encrypted partition gets its own random volume key and UUID and the same keyslots: keyslot 0 opens
with the provisioning passphrase (the recipe's KDF: calibrated like cryptsetup's ``--iter-time``, or the
recipe's explicit ``kdf_params``), keyslot 1 with the recovery key when there is one. A recovery key holds
256 random bits, so - like ``systemd-cryptenroll --recovery-key`` - its keyslot uses the minimal pbkdf2
(1000 iterations): a costly KDF adds nothing to a secret that cannot be guessed.

Volume keys live in ``bytearray``\\s that are wiped as soon as the header and the data cipher exist (the
cipher keeps the key only inside OpenSSL contexts). Nothing secret is returned, logged or described.

KDF runs happen one after another on the build thread, never concurrently: two Argon2id derivations on
two threads at once deadlock in the cryptography/OpenSSL build this project pins (observed with
cryptography 50.0.2 on OpenSSL 4.0.3).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.luks.container import LuksParams, create_header, new_volume_key, wipe
from app.luks.kdf import KdfParams, calibrate
from app.luks.relaid_image import READAHEAD, PartitionCrypto
from app.luks.relayout import RelayoutPlan
from app.luks.xts import XtsCipher
from app.progress import CancelToken, NullProgress, Progress

#: What ``systemd-cryptenroll --recovery-key`` uses for its keyslot (cryptsetup's minimum).
RECOVERY_KDF_ITERATIONS = 1000
KEY_BITS = 512
CIPHER = "aes-xts-plain64"


@dataclass(frozen=True)
class KeyslotInfo:
    """One keyslot as the manifest shows it: its id, what opens it, and its (public) KDF parameters."""

    id: int
    kind: str  # "passphrase" | "recovery" | "tpm2"
    kdf: dict[str, Any]


@dataclass(frozen=True)
class LuksInfo:
    """An encrypted partition's container, as the manifest shows it (no key material)."""

    partition: int
    uuid: str
    sector_size: int
    data_offset: int
    keyslots: tuple[KeyslotInfo, ...]
    cipher: str = CIPHER
    key_bits: int = KEY_BITS

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
class PreparedKeys:
    """The header and cipher of each encrypted partition (for the writer) and their public description."""

    crypto: dict[int, PartitionCrypto] = field(repr=False)
    luks: list[LuksInfo]


def kdf_description(kdf: KdfParams) -> dict[str, Any]:
    """A KDF's parameters without its salt (which differs per keyslot anyway)."""
    if kdf.type == "pbkdf2":
        return {"type": "pbkdf2", "hash": kdf.hash, "iterations": kdf.time}
    return {"type": kdf.type, "time": kdf.time, "memory_kib": kdf.memory_kib, "parallel": kdf.parallel}


def kdf_for(encryption: Any, cancel: CancelToken) -> tuple[KdfParams, bool]:
    """The provisioning keyslot's KDF for the recipe's ``encryption`` options, and whether it was calibrated
    here (True) or taken from the recipe's explicit ``kdf_params`` (False)."""
    from app.template.recipe import explicit_kdf

    kdf = explicit_kdf(encryption)
    if kdf is not None:
        kdf.validate()
        return kdf, False
    return calibrate(encryption.kdf, iter_time_ms=encryption.iter_time_ms, cancel=cancel), True


def prepare_keys(
    plan: RelayoutPlan,
    passphrase: bytes | bytearray,
    kdf: KdfParams,
    recovery_key: str | None,
    *,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    new_uuid: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> PreparedKeys:
    """A LUKS2 header area and data cipher for every encrypted partition of ``plan``."""
    progress = progress or NullProgress()
    cancel = cancel or CancelToken()
    recovery_kdf = KdfParams.pbkdf2(RECOVERY_KDF_ITERATIONS)
    slots: list[tuple[Any, KdfParams, str]] = [(passphrase, kdf, "passphrase")]
    if recovery_key:
        slots.append((recovery_key.encode("ascii"), recovery_kdf, "recovery"))
    progress.begin("Creating LUKS2 keyslots", len(plan.encrypted) * len(slots))
    crypto: dict[int, PartitionCrypto] = {}
    luks: list[LuksInfo] = []
    for i, part in enumerate(plan.encrypted):
        cancel.check()
        key = new_volume_key(KEY_BITS)
        try:
            params = LuksParams(sector_size=plan.sector_size, key_bits=KEY_BITS, data_offset=plan.data_offset,
                                uuid=new_uuid())  # fmt: skip
            header = create_header(key, params, keyslots=[(secret, k) for secret, k, _ in slots])
            cipher = XtsCipher(key, sector_size=plan.sector_size, lanes=READAHEAD)
            crypto[part.number] = PartitionCrypto(header, cipher)
        finally:
            wipe(key)
        assert params.uuid is not None
        infos = tuple(KeyslotInfo(j, kind, kdf_description(k)) for j, (_, k, kind) in enumerate(slots))
        luks.append(LuksInfo(part.number, params.uuid, plan.sector_size, plan.data_offset, infos))
        progress.update((i + 1) * len(slots))
    return PreparedKeys(crypto, luks)
