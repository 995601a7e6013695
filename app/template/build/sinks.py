"""Catalog hashing on a thread of its own, fed by the re-layout writer's ``on_block`` hook.

Why: in the streaming pass the writer's thread reads (and zero-checks and ``pwrite``\\s) every chunk while
the re-layout's read-ahead thread encrypts the next one. Hashing each written chunk for the catalog on
the writer's thread as well made that thread the bottleneck (SHA-256 of every protected byte, then the
write, one after the other). ``hashlib`` releases the GIL, so handing the chunks to a third thread lets
hashing, encryption and writing overlap on separate cores.

The chunks are the immutable ``bytes`` the writer is about to write (a memoryview of them), so keeping a
reference is safe; the queue is bounded (:data:`QUEUE_CHUNKS` chunks, i.e. a few tens of MiB) so a slow
hasher slows the writer down instead of growing memory. An error in the hashing thread is re-raised by
:meth:`AsyncSinks.finish`; :meth:`AsyncSinks.close` stops the thread whatever happened.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping

from app.catalog.hasher import PartitionSinks

#: Chunks waiting to be hashed (the writer's chunks are 4 MiB).
QUEUE_CHUNKS = 8
_STOP = object()


class AsyncSinks:
    """A :class:`~app.catalog.hasher.PartitionSinks` whose ``__call__`` only enqueues (see the module doc)."""

    def __init__(self, sizes: Mapping[int, int], block_size: int) -> None:
        self.sinks = PartitionSinks(sizes, block_size)
        self._queue: queue.Queue[object] = queue.Queue(QUEUE_CHUNKS)
        self._error: BaseException | None = None
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vsc-stream-hash", daemon=True)
        self._thread.start()

    def __call__(self, number: int, offset: int, data: bytes | bytearray | memoryview) -> None:
        if number not in self.sinks.hashers:
            return  # an unprotected partition: nothing to hash, nothing to queue
        if self._error is not None:
            raise self._error
        self._queue.put((number, offset, data))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None or self._abandoned.is_set():
                continue  # drain without work so a blocked writer wakes up
            number, offset, data = item  # type: ignore[misc]
            try:
                self.sinks(number, offset, data)
            except BaseException as exc:  # re-raised in the writer's thread
                self._error = exc

    def finish(self) -> dict[int, bytes]:
        """Wait for every queued chunk, then the block digests of each partition (as PartitionSinks)."""
        self._queue.put(_STOP)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.sinks.finish()

    def close(self) -> None:
        """Stop the thread without finishing (after a failure or a cancel); idempotent."""
        if self._thread.is_alive():
            self._abandoned.set()
            self._queue.put(_STOP)
            self._thread.join()
