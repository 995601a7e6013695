"""Keyslot KDFs (argon2id, pbkdf2) and a calibration like cryptsetup's ``--iter-time`` benchmark.

A keyslot is only as strong as the work per guessed passphrase, so :func:`calibrate` picks parameters
that take about ``iter_time`` here, as cryptsetup does (cryptography's Argon2id runs its lanes on one
thread, so ours unlock faster with cryptsetup's threads: cheaper for the defender, never weaker). A
foreign keyslot names its own costs, so :func:`derive` bounds them before any work and runs the KDF so
that Ctrl-C and a :class:`CancelToken` still take effect.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from app.luks.errors import LuksHeaderError, LuksUnsupportedError
from app.luks.params import PBKDF2_HASHES
from app.progress import CancelToken

#: cryptsetup's lower limits (lib/crypto_backend/pbkdf_check.c).
PBKDF2_MIN_ITERATIONS = 1000
ARGON2_MIN_TIME = 4
ARGON2_MIN_MEMORY_KIB = 32
ARGON2_MAX_MEMORY_KIB = 4 * 1024 * 1024
ARGON2_MAX_PARALLEL = 4
SALT_SIZE = 32
#: Most pbkdf2 iterations derived here: ~40 s at 7 M/s (sha256 on this project's machines). cryptsetup's
#: 2 s calibration gives 2-20 M; even --iter-time 10000 on a fast CPU stays well below.
MAX_PBKDF2_ITERATIONS = 2**28
#: Most argon2 work (time cost x memory in KiB): 64 passes over 1 GiB, or 16 over cryptsetup's 4 GiB maximum.
#: cryptsetup's 2 s calibration at 1 GiB lands at 4-10 passes.
MAX_ARGON2_WORK_KIB = 2**26
#: How often a caller waiting for a KDF looks at Ctrl-C and its CancelToken.
_POLL_SECONDS = 0.05

_HASH_CLASSES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_HASHES = {name: _HASH_CLASSES[name] for name in PBKDF2_HASHES}

Passphrase = bytes | bytearray | memoryview | str


def _salt() -> bytes:
    return os.urandom(SALT_SIZE)


@dataclass
class KdfParams:
    """One keyslot's KDF. ``time`` is argon2's time cost, or pbkdf2's iteration count.

    The salt defaults to fresh random bytes; the container code gives every keyslot its own fresh salt
    anyway (:meth:`with_new_salt`), so a calibrated KdfParams can be reused for several keyslots.
    """

    type: str
    time: int
    memory_kib: int | None = None
    parallel: int | None = None
    salt: bytes = field(default_factory=_salt)
    hash: str = "sha256"  # pbkdf2 only

    def __repr__(self) -> str:  # the salt is not secret, but it is noise in logs
        if self.type == "pbkdf2":
            return f"KdfParams(pbkdf2-{self.hash}, iterations={self.time})"
        mem, par = self.memory_kib, self.parallel
        return f"KdfParams({self.type}, time={self.time}, memory_kib={mem}, parallel={par})"

    @property
    def iterations(self) -> int:
        """pbkdf2's name for :attr:`time`."""
        return self.time

    @classmethod
    def pbkdf2(cls, iterations: int, hash: str = "sha256") -> KdfParams:
        return cls("pbkdf2", iterations, None, None, _salt(), hash)

    @classmethod
    def argon2id(cls, time: int, memory_kib: int, parallel: int = 4) -> KdfParams:
        return cls("argon2id", time, memory_kib, parallel, _salt())

    def with_new_salt(self) -> KdfParams:
        return replace(self, salt=_salt())

    def validate(self) -> None:
        """Raise :class:`LuksUnsupportedError`/:class:`LuksHeaderError` for parameters we cannot use."""
        if self.type == "pbkdf2":
            if self.hash not in _HASHES:
                raise LuksUnsupportedError(f"pbkdf2 hash {self.hash!r} is not supported")
            if not 1 <= self.time < 2**32:
                raise LuksHeaderError(f"pbkdf2 iteration count {self.time} is out of range")
            if self.time > MAX_PBKDF2_ITERATIONS:
                raise LuksUnsupportedError(
                    f"pbkdf2 with {self.time} iterations is more than the {MAX_PBKDF2_ITERATIONS} "
                    "Shieldwright computes (minutes to hours of CPU)",
                    _COSTLY_HINT,
                )
        elif self.type in ("argon2id", "argon2i"):
            if self.type == "argon2i":
                raise LuksUnsupportedError("argon2i keyslots are not supported (argon2id and pbkdf2 are)")
            if not (1 <= self.time < 2**32):
                raise LuksHeaderError(f"argon2 time cost {self.time} is out of range")
            if self.parallel is None or not 1 <= self.parallel <= 16:
                raise LuksHeaderError("argon2 parallelism is missing or out of range")
            if self.memory_kib is None or not 8 * self.parallel <= self.memory_kib <= ARGON2_MAX_MEMORY_KIB:
                raise LuksHeaderError("argon2 memory cost is missing or out of range")
            if self.time * self.memory_kib > MAX_ARGON2_WORK_KIB:
                raise LuksUnsupportedError(
                    f"argon2 with time cost {self.time} over {self.memory_kib} KiB is more work than the "
                    f"{MAX_ARGON2_WORK_KIB // 2**20} GiB-passes Shieldwright computes",
                    _COSTLY_HINT,
                )
        else:
            raise LuksUnsupportedError(f"keyslot KDF {self.type!r} is not supported")
        if len(self.salt) < 8:
            raise LuksHeaderError("KDF salt is too short")

    def to_json(self) -> dict[str, Any]:
        """The keyslot ``kdf`` object as LUKS2 stores it."""
        salt = base64.b64encode(self.salt).decode()
        if self.type == "pbkdf2":
            return {"type": "pbkdf2", "hash": self.hash, "iterations": self.time, "salt": salt}
        return {
            "type": self.type,
            "time": self.time,
            "memory": self.memory_kib,
            "cpus": self.parallel,
            "salt": salt,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> KdfParams:
        """Parse a keyslot ``kdf`` object; malformed input is a :class:`LuksHeaderError`."""
        try:
            kind = obj["type"]
            salt = base64.b64decode(obj["salt"], validate=True)
            if kind == "pbkdf2":
                params = cls("pbkdf2", _int(obj["iterations"]), None, None, salt, str(obj["hash"]))
            elif kind in ("argon2i", "argon2id"):
                params = cls(kind, _int(obj["time"]), _int(obj["memory"]), _int(obj["cpus"]), salt)
            else:
                raise LuksUnsupportedError(f"keyslot KDF {kind!r} is not supported")
        except (KeyError, TypeError, ValueError) as exc:
            raise LuksHeaderError(f"malformed keyslot KDF: {type(exc).__name__}") from None
        return params


_COSTLY_HINT = "add a keyslot with cryptsetup's default costs (cryptsetup luksAddKey) and use that one"


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not an integer")
    return value


def passphrase_bytes(passphrase: Passphrase) -> bytes | bytearray | memoryview:
    """Passphrases are bytes to LUKS; a ``str`` is taken as UTF-8 (what a terminal sends)."""
    return passphrase.encode() if isinstance(passphrase, str) else passphrase


def derive(
    params: KdfParams, passphrase: Passphrase, length: int, *, cancel: CancelToken | None = None
) -> bytearray:
    """The keyslot key (``length`` bytes) for ``passphrase``. The caller wipes the result.

    Costs beyond the bounds are refused before any work: argon2 memory at most cryptsetup's 4 GiB and half
    this machine's RAM, argon2 time x memory at most :data:`MAX_ARGON2_WORK_KIB`, pbkdf2 iterations at most
    :data:`MAX_PBKDF2_ITERATIONS` (cryptsetup accepts up to 2**32 - 1, hours of CPU). What is allowed can
    still take tens of seconds, so the work runs on a worker thread (:func:`run_interruptibly`) and the
    wait stops on Ctrl-C or ``cancel`` (:class:`~app.errors.CancelledError`) within :data:`_POLL_SECONDS`.
    """
    params.validate()
    check_memory(params)
    secret = bytes(passphrase_bytes(passphrase))
    try:
        if params.type == "pbkdf2":
            kdf: Argon2id | PBKDF2HMAC = PBKDF2HMAC(_HASHES[params.hash](), length, params.salt, params.time)
        else:
            assert params.memory_kib is not None and params.parallel is not None
            kdf = Argon2id(
                salt=params.salt,
                length=length,
                iterations=params.time,
                lanes=params.parallel,
                memory_cost=params.memory_kib,
            )
        return bytearray(run_interruptibly(lambda: kdf.derive(secret), cancel))
    except UnsupportedAlgorithm:
        raise LuksUnsupportedError(f"{params.type} is not available in this OpenSSL") from None
    except (ValueError, MemoryError, _RustPanic):
        raise LuksHeaderError(f"{params.type} parameters are not usable") from None


class _RustPanic(Exception):
    """A pyo3 PanicException from cryptography (a BaseException there), re-raised as an ordinary error."""


def run_interruptibly(work: Callable[[], bytes], cancel: CancelToken | None = None) -> bytes:
    """``work()`` on a daemon thread; the caller waits in short steps so Ctrl-C (KeyboardInterrupt in the
    main thread) and ``cancel`` interrupt the wait. An interrupted worker is abandoned: it runs to its
    end in the background and its result is dropped. Only for work that releases the GIL (OpenSSL,
    argon2) - otherwise the waiting thread could not run."""
    result: list[bytes] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            failure.append(_RustPanic(str(exc)) if type(exc).__name__ == "PanicException" else exc)
        finally:
            done.set()

    threading.Thread(target=run, name="shieldwright-kdf", daemon=True).start()
    while not done.wait(_POLL_SECONDS):
        if cancel is not None:
            cancel.check()
    if failure:
        raise failure[0]
    return result[0]


def max_memory_kib() -> int:
    """Most argon2 memory a derivation may use here: cryptsetup's 4 GiB, and at most half the RAM."""
    ram = physical_memory_kib()
    return min(ARGON2_MAX_MEMORY_KIB, ram // 2) if ram else ARGON2_MAX_MEMORY_KIB


def check_memory(params: KdfParams) -> None:
    """:class:`LuksUnsupportedError` when ``params`` need more argon2 memory than :func:`max_memory_kib`."""
    limit = max_memory_kib()
    if params.memory_kib is not None and params.type != "pbkdf2" and params.memory_kib > limit:
        raise LuksUnsupportedError(
            f"the {params.type} KDF needs {params.memory_kib // 1024} MiB of memory, more than the "
            f"{limit // 1024} MiB allowed here (half the RAM, at most cryptsetup's 4 GiB)",
            "use a machine with more memory, or add a keyslot with a smaller --pbkdf-memory with cryptsetup",
        )


def physical_memory_kib() -> int:
    """Installed RAM in KiB (0 when the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1024
    except (ValueError, OSError):
        return 0


def _timed(params: KdfParams, cancel: CancelToken | None = None) -> float:
    start = time.perf_counter()
    derive(params, b"calibration passphrase", 64, cancel=cancel)
    return max(time.perf_counter() - start, 1e-6)


def calibrate(
    kind: str,
    iter_time_ms: int = 2000,
    max_memory_kib: int = 1048576,
    parallel: int | None = None,
    cancel: CancelToken | None = None,
) -> KdfParams:
    """KDF parameters that take about ``iter_time_ms`` here, like cryptsetup's benchmark.

    argon2id: memory is fixed at ``max_memory_kib`` (capped at half the RAM) and the time cost found
    by extrapolating from cheap runs; if even the minimum time cost (4) at that memory is too slow, the
    memory is reduced instead, as cryptsetup does. pbkdf2: iterations for the target time, at least 1000.
    ``cancel`` interrupts a benchmark run. The result stays within the bounds :func:`derive` accepts.
    """
    target = iter_time_ms / 1000.0
    check = cancel.check if cancel else (lambda: None)
    if kind == "pbkdf2":
        iterations = 1000
        while True:
            check()
            elapsed = _timed(KdfParams.pbkdf2(iterations), cancel)
            if elapsed >= min(0.05, target / 4) or iterations >= MAX_PBKDF2_ITERATIONS // 4:
                break
            iterations *= 4
        wanted = int(iterations * target / elapsed)
        return KdfParams.pbkdf2(min(MAX_PBKDF2_ITERATIONS, max(PBKDF2_MIN_ITERATIONS, wanted)))
    if kind != "argon2id":
        raise LuksUnsupportedError(f"keyslot KDF {kind!r} is not supported", "use argon2id or pbkdf2")
    parallel = parallel or min(ARGON2_MAX_PARALLEL, os.cpu_count() or 1)
    ram = physical_memory_kib()
    memory = min(max_memory_kib, ram // 2 if ram else max_memory_kib, ARGON2_MAX_MEMORY_KIB)
    memory = max(memory, ARGON2_MIN_MEMORY_KIB, 8 * parallel)
    # cost ~ time * memory: measure on a small memory first, then at the real memory if affordable
    probe = min(memory, 65536)
    check()
    rate = ARGON2_MIN_TIME * probe / _timed(KdfParams.argon2id(ARGON2_MIN_TIME, probe, parallel), cancel)
    if probe < memory and ARGON2_MIN_TIME * memory / rate <= 1.5 * target:
        check()
        timed = _timed(KdfParams.argon2id(ARGON2_MIN_TIME, memory, parallel), cancel)
        rate = ARGON2_MIN_TIME * memory / timed
    budget = min(rate * target, MAX_ARGON2_WORK_KIB)  # time * KiB we can afford
    if budget >= ARGON2_MIN_TIME * memory:
        return KdfParams.argon2id(max(ARGON2_MIN_TIME, int(budget / memory)), memory, parallel)
    memory = max(ARGON2_MIN_MEMORY_KIB, 8 * parallel, int(budget / ARGON2_MIN_TIME))
    return KdfParams.argon2id(ARGON2_MIN_TIME, memory, parallel)


def digest_hash(name: str) -> type[hashes.HashAlgorithm]:
    """The cryptography hash class for a LUKS hash name (digests, pbkdf2)."""
    try:
        return _HASHES[name]
    except KeyError:
        raise LuksUnsupportedError(f"hash {name!r} is not supported") from None
