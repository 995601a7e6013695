"""Progress reporting and cooperative cancellation shared by the engine and the GUI (no Qt).

The engine calls :meth:`Progress.update` as often as it likes; the GUI polls :class:`ProgressState`
at ~10 Hz from its own timer, so no per-block signal ever crosses threads. Long loops call
:meth:`CancelToken.check` at least every 100 ms of work; it raises :class:`app.errors.CancelledError`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from app.errors import CancelledError


class CancelToken:
    """A thread-safe flag the user's Cancel sets and the engine checks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`CancelledError` if cancellation was requested."""
        if self.cancelled:
            raise CancelledError()

    def child(self) -> CancelToken:
        """A token cancelled by this one or by its own :meth:`cancel`: stops one part of a job (a worker
        whose sibling failed) without touching the caller's token."""
        return _ChildToken(self)


class _ChildToken(CancelToken):
    def __init__(self, parent: CancelToken) -> None:
        super().__init__()
        self._parent = parent

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or self._parent.cancelled


class Progress(Protocol):
    """What the engine reports to. ``done``/``total`` are in the step's own unit (usually bytes)."""

    def begin(self, step: str, total: int) -> None: ...

    def update(self, done: int) -> None: ...

    def advance(self, amount: int) -> None: ...


@dataclass
class ProgressState:
    """A Progress that just records, safe to read from another thread (single writer, plain attributes).

    ``rate()`` and ``eta()`` use a sliding window so a slow start does not poison the estimate.
    """

    step: str = ""
    total: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    _samples: list[tuple[float, int]] = field(default_factory=list)

    def begin(self, step: str, total: int) -> None:
        self.step, self.total, self.done = step, total, 0
        self.started = time.monotonic()
        self._samples = [(self.started, 0)]

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if not self._samples or now - self._samples[-1][0] >= 0.1:
            self._samples.append((now, done))
            del self._samples[:-50]  # ~5 s window at 10 Hz

    def advance(self, amount: int) -> None:
        self.update(self.done + amount)

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def rate(self) -> float:
        """Units per second over the recent window; 0 when unknown."""
        if len(self._samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    def eta(self) -> float | None:
        """Seconds left, or None when the rate is not known yet."""
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 and self.total else None


class NullProgress:
    """Progress that discards everything; the default for callers that do not care."""

    def begin(self, step: str, total: int) -> None:
        pass

    def update(self, done: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass
