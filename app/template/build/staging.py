"""A build's temporary files, the atomic commit at its end, and hashing whole files in the background.

Every file is written into one hidden directory next to the output (same filesystem, so renames are
atomic); :meth:`Staging.commit` renames them into place last - sidecars first, the image last - and a
failure or a cancel removes the directory and every partial file. :class:`FileHasher` hashes the input
on its own thread while the rest of the build runs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from app.errors import CancelledError, OutOfSpaceError, OutputExistsError, ShieldwrightError
from app.progress import CancelToken, NullProgress, Progress

MiB = 1024 * 1024
READ_SIZE = 8 * MiB
SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def os_error(exc: OSError, where: str, folder: Path | None = None) -> ShieldwrightError:
    """A one-line error for an OSError met ``where`` (e.g. "in step 7 (Update the ESP)"). A full disk names
    ``folder`` (the output's, rather than a hidden staging directory), else the failing file's folder."""
    if exc.errno in SPACE_ERRNOS:
        folder = folder or (Path(exc.filename).parent if exc.filename else None)
        return OutOfSpaceError(
            f"not enough space{f' on {folder}' if folder else ''} {where}",
            "free some space or write the output elsewhere; nothing was left behind",
        )
    name = f" {exc.filename}:" if exc.filename else ""
    return ShieldwrightError(f"cannot continue {where}:{name} {exc.strerror or exc}",
                             "check the paths, permissions and free space")  # fmt: skip


class Staging:
    """A hidden directory next to ``output`` that holds a build's files until :meth:`commit`."""

    def __init__(self, output: Path) -> None:
        self.output = Path(output)
        parent = self.output.parent if str(self.output.parent) else Path(".")
        self.dir = parent / f".{self.output.name}.build-{secrets.token_hex(4)}"
        try:
            self.dir.mkdir(mode=0o700)
        except FileNotFoundError:
            raise ShieldwrightError(
                f"the output folder {parent} does not exist", "create it or choose another output path"
            ) from None
        except OSError as exc:
            raise os_error(exc, f"when creating a temporary folder in {parent}") from None
        self.committed = False

    def path(self, name: str) -> Path:
        """A file inside the staging directory."""
        return self.dir / name

    def commit(self, moves: list[tuple[Path, Path]], *, overwrite: bool = False,
               extra: Callable[[], list[Path]] | None = None) -> None:  # fmt: skip
        """Rename each staged ``(source, destination)`` in order, then remove the staging directory.

        ``extra`` runs before the renames and returns files it created elsewhere (e.g. a recovery key file);
        they are removed again if a rename fails. Without ``overwrite`` an existing destination is an
        :class:`OutputExistsError` and nothing is renamed.
        """
        if not overwrite:
            for _, dst in moves:
                if os.path.lexists(dst):
                    raise OutputExistsError(
                        f"{dst} already exists", "remove it or choose another output path"
                    )
        created: list[Path] = list(extra()) if extra is not None else []
        try:
            for src, dst in moves:
                os.replace(src, dst)
                created.append(dst)
        except BaseException:
            for path in created:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        self.committed = True
        fsync_dir(self.dir.parent)
        self.remove()

    def remove(self) -> None:
        """Delete the staging directory and everything in it (idempotent)."""
        shutil.rmtree(self.dir, ignore_errors=True)


def fsync_dir(directory: Path) -> None:
    """Make renames durable (best effort: some filesystems refuse a directory fsync)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_file(path: Path) -> None:
    """Wait until ``path``'s data is on the disk. The build writes its image without waiting (the writeback
    runs while it computes) and calls this once, after the last change and the output hash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path, *, progress: Progress | None = None, cancel: CancelToken | None = None,
                step: str = "Hashing") -> str:  # fmt: skip
    """Hex SHA-256 of a file, reporting progress in bytes and honouring ``cancel`` between reads."""
    progress = progress or NullProgress()
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        progress.begin(step, size)
        done = 0
        while True:
            if cancel is not None:
                cancel.check()
            chunk = f.read(READ_SIZE)
            if not chunk:
                break
            h.update(chunk)
            done += len(chunk)
            progress.update(done)
    return h.hexdigest()


def _lower_priority() -> None:
    """Make the calling thread nice (Linux schedules threads individually): it then runs on whatever CPU
    the build leaves idle - while tools run, keys are derived, files are fsynced - and yields to the
    streaming pass instead of competing with it. Best effort."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class FileHasher:
    """SHA-256 of one file, computed on a low-priority background thread from the moment it is created.

    :meth:`result` waits for it (reporting progress while it waits); :meth:`stop` abandons it. A read
    error surfaces from :meth:`result` as a one-line :class:`ShieldwrightError`.
    """

    def __init__(self, path: Path, what: str = "the input") -> None:
        self.path, self.what = Path(path), what
        self.size = self.path.stat().st_size
        self.done = 0
        self._stop = threading.Event()
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sha256-file", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _lower_priority()
        h = hashlib.sha256()
        try:
            with open(self.path, "rb", buffering=0) as f:
                while not self._stop.is_set():
                    chunk = f.read(READ_SIZE)
                    if not chunk:
                        self._digest = h.hexdigest()
                        return
                    h.update(chunk)
                    self.done += len(chunk)
        except OSError as exc:
            self._error = ShieldwrightError(
                f"cannot read {self.path} to hash it: {exc.strerror or exc}", "check the disk"
            )
        except BaseException as exc:  # pragma: no cover - a bug; re-raised in the caller's thread
            self._error = exc

    def result(self, *, progress: Progress | None = None, cancel: CancelToken | None = None) -> str:
        progress = progress or NullProgress()
        progress.begin(f"Hashing {self.what}", self.size)
        while self._thread.is_alive():
            self._thread.join(0.1)
            progress.update(self.done)
            if cancel is not None and cancel.cancelled:
                self.stop()
                raise CancelledError()
        if self._error is not None:
            raise self._error
        if self._digest is None:  # pragma: no cover - stopped before finishing
            raise CancelledError()
        progress.update(self.size)
        return self._digest

    def stop(self) -> None:
        """Abandon the hash; returns once the thread has seen the request (within one read)."""
        self._stop.set()
        self._thread.join()
