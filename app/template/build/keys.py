"""LUKS2 headers for the partitions a build encrypts: volume keys, keyslots, what the manifest says.

Each encrypted partition gets its own random volume key and UUID. Keyslot 0 opens with the provisioning
passphrase (the recipe's KDF, calibrated here or explicit), keyslot 1 with the recovery key: 256 random
bits, so - like ``systemd-cryptenroll --recovery-key`` - the minimal pbkdf2. Volume keys are wiped once
the header and the data cipher exist; nothing secret is returned or logged. One KDF runs at a time: two
concurrent Argon2id derivations deadlock in the pinned cryptography/OpenSSL build.

A KDF says nothing while it runs (seconds, for a calibrated one), so progress counts estimated KDF work:
each partition's share moves on by the time its keyslots are expected to take (the recipe's iteration
time for the first, then what the previous one took), never past it, until the partition is done.
"""

from __future__ import annotations

import threading
import time
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
#: Progress units per encrypted partition (its keyslots and the volume key digest).
PARTITION_UNITS = 1000
#: What a partition's KDF work is expected to take when nothing better is known (cryptsetup's default
#: iteration time, plus ~125 ms for the volume key digest).
DEFAULT_EXPECTED_S = 2.125
#: How far the estimate may move a partition's share before the partition is really done.
_ESTIMATE_CAP = 0.95


class _KdfClock:
    """Moves ``progress`` on by time while a partition's keys are derived, toward (never past) the end of
    its share; :meth:`reached` sets the real position when the partition is done. One thread writes."""

    def __init__(self, progress: Progress, expected_s: float) -> None:
        self._progress = progress
        self._expected = max(expected_s, 0.05)
        self._lock = threading.Lock()
        self._base = 0
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kdf-progress-clock", daemon=True)

    def __enter__(self) -> _KdfClock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def reached(self, done: int) -> None:
        """A partition is done at ``done`` units; the next one starts now, expected to take as long."""
        now = time.monotonic()
        with self._lock:
            self._expected = max(now - self._started, 0.05)
            self._base, self._started = done, now
            self._progress.update(done)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                share = min(_ESTIMATE_CAP, (time.monotonic() - self._started) / self._expected)
                self._progress.update(self._base + int(share * PARTITION_UNITS))


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
    expected_s: float = DEFAULT_EXPECTED_S,
) -> PreparedKeys:
    """A LUKS2 header area and data cipher for every encrypted partition of ``plan``.

    ``progress`` counts :data:`PARTITION_UNITS` per partition, estimated by time while its KDFs run
    (``expected_s``: what the first partition's keyslots are expected to take).
    """
    progress = progress or NullProgress()
    cancel = cancel or CancelToken()
    recovery_kdf = KdfParams.pbkdf2(RECOVERY_KDF_ITERATIONS)
    slots: list[tuple[Passphrase, KdfParams, str]] = [(passphrase, kdf, "passphrase")]
    if recovery_key:
        slots.append((recovery_key.encode("ascii"), recovery_kdf, "recovery"))
    count = len(plan.encrypted)
    progress.begin(
        f"Creating LUKS2 keyslots ({count * len(slots)} on {count} partition{'s' if count != 1 else ''})",
        count * PARTITION_UNITS,
    )
    with _KdfClock(progress, expected_s) as clock:  # from here on the clock's thread writes the progress
        return _derive(plan, slots, clock, cancel, new_uuid)


def _derive(
    plan: RelayoutPlan,
    slots: list[tuple[Passphrase, KdfParams, str]],
    clock: _KdfClock,
    cancel: CancelToken,
    new_uuid: Callable[[], str],
) -> PreparedKeys:
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
        clock.reached((i + 1) * PARTITION_UNITS)
    return PreparedKeys(crypto, luks)
