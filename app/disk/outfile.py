"""Writing an image's data into its output file: through the page cache, or with O_DIRECT on a thread.

:func:`app.disk.writers.write_image` hands every data run to an :class:`OutputFile`, which picks the way.
A fresh multi-GiB image written through the page cache costs the writing thread a core of kernel time
(copying into cache pages, reclaiming them later), so a file nobody reads back soon is written with
O_DIRECT instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import mmap
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

MiB = 1024 * 1024
#: Largest single page-cache pwrite. On ext4 in this project's VMs, while page-cache writes were slow,
#: 2.2 GB took 4-5 s as 4 MiB pwrites and 1.1-1.7 s as 256 KiB ones in the same runs; on a quiet machine
#: every size from 64 KiB to 4 MiB ran within ~15 % of the others (benchmarks/bench_write_slices.py).
WRITE_SLICE = 256 * 1024
#: Start the kernel's writeback of what was written every this many bytes (see :class:`Writeback`).
WRITEBACK_EVERY = 64 * MiB
#: O_DIRECT needs the buffer, the file offset and the length aligned to the device's logical block size
#: (512 or 4096); 4096 suits both.
DIRECT_ALIGN = 4096
#: Size of one direct write's buffer (the writers' chunk size).
DIRECT_CHUNK = 4 * MiB
#: Aligned buffers in the ring: one being filled, the others queued or being written.
DIRECT_BUFFERS = 4


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset``, in pieces of at most :data:`WRITE_SLICE` bytes."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view[:WRITE_SLICE], offset)
        view, offset = view[n:], offset + n


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    with contextlib.suppress(OSError, AttributeError, TypeError):
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        fn.restype = ctypes.c_int
        return fn
    return None


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


class Writeback:
    """Asks the kernel to start writing a file's dirty pages every :data:`WRITEBACK_EVERY` bytes.

    Why: with a few GiB of RAM free, a whole image fits under the dirty-page limits, so the kernel would
    write nothing until the final fsync - which then waits for the entire image at disk speed, after all
    the computing is done. ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` starts the writeback without waiting
    for it, so the disk works while we encrypt and hash (and the pages stay cached for re-reading). A
    no-op where the call is missing.
    """

    def __init__(self, fd: int) -> None:
        self.fd, self.pending = fd, 0

    def wrote(self, n: int) -> None:
        self.pending += n
        if self.pending >= WRITEBACK_EVERY and _SYNC_FILE_RANGE is not None:
            self.pending = 0
            _SYNC_FILE_RANGE(self.fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # best effort: the result is advisory


class OutputFile:
    """The data writes of one output file ``fd`` (opened by the caller at ``path``).

    Page cache (the default, for a file read back soon): ``pwrite``\\s of at most :data:`WRITE_SLICE`
    bytes, and ``sync_file_range`` every :data:`WRITEBACK_EVERY` bytes so the kernel starts writing while we
    compute (:class:`Writeback`). ``direct=True`` (for a file nobody reads back soon): aligned pieces
    (offset and length multiples of :data:`DIRECT_ALIGN`) go out with O_DIRECT on a thread of its own from
    a ring of :data:`DIRECT_BUFFERS` aligned buffers, since a direct ``pwrite`` returns only once the device
    has the data: the caller copies a run into a free buffer and goes on encrypting. An unaligned rest goes
    through the page cache (the kernel keeps both coherent); a filesystem that refuses O_DIRECT, at ``open``
    or with EINVAL, quietly gets page-cache writes. An error on the writing thread (a full disk) is raised,
    as the same ``OSError``, by the next :meth:`write` or by :meth:`flush`.

    Call :meth:`flush` before relying on the file's contents (it waits for the writing thread) and
    :meth:`close` in every case (it stops the thread, dropping writes not yet done after a failure).
    ``direct_writes`` counts the bytes that went out with O_DIRECT.
    """

    def __init__(self, fd: int, path: Path, *, direct: bool = False) -> None:
        self.fd = fd
        self.writeback = Writeback(fd)
        self.direct_writes = 0
        self._direct_fd = -1
        self._error: BaseException | None = None
        self._abandon = False
        self._thread: threading.Thread | None = None
        if direct and hasattr(os, "O_DIRECT"):
            with contextlib.suppress(OSError):
                self._direct_fd = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
        if self._direct_fd >= 0:
            self._buffers = [mmap.mmap(-1, DIRECT_CHUNK) for _ in range(DIRECT_BUFFERS)]
            self._free: queue.Queue[int] = queue.Queue()
            for i in range(DIRECT_BUFFERS):
                self._free.put(i)
            #: (buffer index, length, file offset) to write; None stops the thread.
            self._todo: queue.Queue[tuple[int, int, int] | None] = queue.Queue()
            self._thread = threading.Thread(target=self._run, name="direct-write", daemon=True)
            self._thread.start()

    @property
    def direct(self) -> bool:
        """Whether aligned pieces still go out with O_DIRECT."""
        return self._direct_fd >= 0

    def write(self, data: bytes | memoryview, offset: int) -> None:
        """All of ``data`` at ``offset`` (possibly still in flight when this returns)."""
        self._raise_error()
        view = memoryview(data)
        while self.direct and offset % DIRECT_ALIGN == 0 and len(view) >= DIRECT_ALIGN:
            n = min(len(view), DIRECT_CHUNK) // DIRECT_ALIGN * DIRECT_ALIGN
            i = self._free.get()
            self._raise_error()
            self._buffers[i][:n] = view[:n]
            self._todo.put((i, n, offset))
            view, offset = view[n:], offset + n
        if view:
            pwrite_all(self.fd, view, offset)
            self.writeback.wrote(len(view))

    def flush(self) -> None:
        """Wait until every write handed over so far is done; raise the writing thread's error if any."""
        if self._thread is not None:
            self._todo.join()
        self._raise_error()

    def close(self) -> None:
        """Stop the writing thread (writes still queued are dropped: call :meth:`flush` first to keep them)
        and release the buffers; idempotent."""
        if self._thread is not None:
            self._abandon = True
            self._todo.put(None)
            self._thread.join()
            self._thread = None
            for buf in self._buffers:
                with contextlib.suppress(BufferError):  # a view still held by a traceback: freed with it
                    buf.close()
        if self._direct_fd >= 0:
            os.close(self._direct_fd)
            self._direct_fd = -1

    # -- the writing thread -------------------------------------------------------------------------

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            item = self._todo.get()
            try:
                if item is None:
                    return
                i, n, offset = item
                if self._error is None and not self._abandon:
                    try:
                        self._write_piece(self._buffers[i], n, offset)
                    except BaseException as exc:  # re-raised in the caller's thread
                        self._error = exc
                self._free.put(i)
            finally:
                self._todo.task_done()

    def _write_piece(self, buf: mmap.mmap, n: int, offset: int) -> None:
        with memoryview(buf) as whole, whole[:n] as data:
            done = 0
            if self._direct_fd >= 0:
                try:
                    while done < n and done % DIRECT_ALIGN == 0:
                        with data[done:] as rest:  # released even if pwrite raises
                            wrote = os.pwrite(self._direct_fd, rest, offset + done)
                        if not wrote:
                            break
                        done += wrote
                    self.direct_writes += done
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self._direct_fd_refused()
            if done < n:  # refused, or a short unaligned write: the rest through the page cache
                with data[done:] as rest:
                    pwrite_all(self.fd, rest, offset + done)
                self.writeback.wrote(n - done)

    def _direct_fd_refused(self) -> None:
        """This filesystem or device does not take these writes: page-cache writes from now on."""
        fd, self._direct_fd = self._direct_fd, -1
        if fd >= 0:
            os.close(fd)
