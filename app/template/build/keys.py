"""LUKS2 headers for the partitions a build encrypts: volume keys, keyslots, what the manifest says.

Each encrypted partition gets its own random volume key and UUID. Keyslot 0 opens with the provisioning
passphrase (the recipe's KDF, calibrated here or explicit), keyslot 1 with the recovery key: 256 random
bits, so - like ``systemd-cryptenroll --recovery-key`` - the minimal pbkdf2. Volume keys are wiped once
the header and the data cipher exist; nothing secret is returned or logged. One KDF runs at a time: two
concurrent Argon2id derivations deadlock in the pinned cryptography/OpenSSL build.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.luks.container import LuksParams, create_header, new_volume_key, wipe
from app.luks.kdf import PBKDF2_MIN_ITERATIONS, KdfParams, Passphrase, calibrate
from app.luks.params import SEGMENT_CIPHER, VOLUME_KEY_BITS
from app.luks.relaid_image import READAHEAD, PartitionCrypto
from app.luks.relayout import RelayoutPlan
from app.luks.xts import XtsCipher
from app.progress import CancelToken, NullProgress, Progress
from app.template.manifest import KeyslotInfo, LuksInfo
from app.template.recipe import EncryptionOptions, explicit_kdf

#: What ``systemd-cryptenroll --recovery-key`` uses for its keyslot: cryptsetup's minimum.
RECOVERY_KDF_ITERATIONS = PBKDF2_MIN_ITERATIONS
KEY_BITS = VOLUME_KEY_BITS
CIPHER = SEGMENT_CIPHER


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


def kdf_for(encryption: EncryptionOptions, cancel: CancelToken) -> tuple[KdfParams, bool]:
    """The provisioning keyslot's KDF for the recipe's ``encryption`` options, and whether it was calibrated
    here (True) or taken from the recipe's explicit ``kdf_params`` (False)."""
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
    slots: list[tuple[Passphrase, KdfParams, str]] = [(passphrase, kdf, "passphrase")]
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
        luks.append(
            LuksInfo(part.number, params.uuid, CIPHER, KEY_BITS, plan.sector_size, plan.data_offset, infos)
        )
        progress.update((i + 1) * len(slots))
    return PreparedKeys(crypto, luks)
