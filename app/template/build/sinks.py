"""Catalog hashing on a thread of its own, fed by the re-layout writer's ``on_block`` hook.

Hashing every written chunk on the writer's thread made it the bottleneck; ``hashlib`` releases the GIL,
so a third thread lets hashing, encryption and writing overlap. The chunks are the immutable bytes the
writer writes; the queue is bounded (:data:`QUEUE_CHUNKS`), so a slow hasher slows the writer instead of
growing memory. :meth:`AsyncSinks.finish` re-raises a hashing error; :meth:`AsyncSinks.close` always
stops the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping

from app.catalog.hasher import PartitionSinks

#: Chunks waiting to be hashed (the writer's chunks are 4 MiB).
QUEUE_CHUNKS = 8
Chunk = bytes | bytearray | memoryview


class AsyncSinks:
    """A :class:`~app.catalog.hasher.PartitionSinks` whose ``__call__`` only enqueues (see the module doc)."""

    def __init__(self, sizes: Mapping[int, int], block_size: int) -> None:
        self.sinks = PartitionSinks(sizes, block_size)
        self._queue: queue.Queue[tuple[int, int, Chunk] | None] = queue.Queue(QUEUE_CHUNKS)  # None: stop
        self._error: BaseException | None = None
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vsc-stream-hash", daemon=True)
        self._thread.start()

    def __call__(self, number: int, offset: int, data: Chunk) -> None:
        if number not in self.sinks.hashers:
            return  # an unprotected partition: nothing to hash, nothing to queue
        if self._error is not None:
            raise self._error
        self._queue.put((number, offset, data))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None or self._abandoned.is_set():
                continue  # drain without work so a blocked writer wakes up
            number, offset, data = item
            try:
                self.sinks(number, offset, data)
            except BaseException as exc:  # re-raised in the writer's thread
                self._error = exc

    def finish(self) -> dict[int, bytes]:
        """Wait for every queued chunk, then the block digests of each partition (as PartitionSinks)."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.sinks.finish()

    def close(self) -> None:
        """Stop the thread without finishing (after a failure or a cancel); idempotent."""
        if self._thread.is_alive():
            self._abandoned.set()
            self._queue.put(None)
            self._thread.join()
