"""What a running build reports: step k of n, that step's progress, and a bounded log of human lines.

The build thread writes; the GUI (at ~10 Hz) and the CLI poll :meth:`BuildProgress.snapshot`, a
consistent immutable copy taken under one lock. The log keeps the last :data:`LOG_LIMIT` lines and
counts every line ever added, so a reader can ask for "lines since last time". Log lines never hold
secrets.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from app.progress import Progress, ProgressState

#: Lines kept in :attr:`BuildProgress.log`; older ones are dropped.
LOG_LIMIT = 2000


@dataclass(frozen=True)
class ProgressSnapshot:
    """A consistent copy of a :class:`BuildProgress` at one instant (safe to keep and read anywhere)."""

    step_index: int  # 1-based number of the running step ("step k of n"); 0 before the first one starts
    step_count: int
    step_name: str  # the build step ("Write the template (copy, encrypt, hash)")
    detail: str  # what the engine inside that step said it is doing ("Encrypting partitions 2 and 3")
    done: int
    total: int
    fraction: float
    rate: float  # units (usually bytes) per second, 0 when not known yet
    eta: float | None  # seconds, None when not known
    elapsed: float  # seconds since the build started
    outcome: str | None  # None while running; "done", "cancelled" or "failed"
    log_total: int


@dataclass
class BuildProgress(ProgressState):
    """Thread-safe build progress: ``step_index``/``step_count``/``step_name`` plus the step's own
    ``done``/``total``/``rate()``/``eta()`` (inherited), and a bounded ``log`` of human lines.

    ``step_index`` is the 1-based "k" of "step k of n" (0 before the build starts), so
    ``STEPS[step_index - 1] == step_name`` while a step runs. ``step`` (inherited) holds the engine's own
    description of the work inside the step ("Encrypting partitions 2 and 3"). An optional ``forward``
    Progress receives every ``begin``/``update`` too (e.g. a GUI task's state).
    """

    step_index: int = 0
    step_count: int = 0
    step_name: str = ""
    log: list[str] = field(default_factory=list)
    log_total: int = 0
    outcome: str | None = None
    #: (step name, seconds) of every finished step, in order.
    step_seconds: list[tuple[str, float]] = field(default_factory=list)
    build_started: float = field(default_factory=time.monotonic)
    forward: Progress | None = field(default=None, repr=False, compare=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    # -- written by the build ----------------------------------------------------------------------

    def start_step(self, number: int, name: str, count: int) -> None:
        """The build enters step ``number`` (1-based) of ``count``, called ``name``."""
        with self._lock:
            self.step_index, self.step_count, self.step_name = number, count, name
            ProgressState.begin(self, name, 0)
        self.note(f"Step {number}/{count}: {name}")

    def end_step(self, seconds: float) -> None:
        with self._lock:
            self.step_seconds.append((self.step_name, seconds))

    def finish(self, outcome: str) -> None:
        """The build is over: "done", "cancelled" or "failed"."""
        with self._lock:
            self.outcome = outcome

    def note(self, line: str) -> None:
        """Add one human line to the log (never a secret)."""
        with self._lock:
            self.log.append(" ".join(str(line).split()))
            self.log_total += 1
            if len(self.log) > LOG_LIMIT:
                del self.log[: len(self.log) - LOG_LIMIT]

    # -- the Progress protocol (engine calls inside a step) --------------------------------------------

    def begin(self, step: str, total: int) -> None:
        with self._lock:
            ProgressState.begin(self, step, total)
        if self.forward is not None:
            self.forward.begin(step, total)

    def update(self, done: int) -> None:
        with self._lock:
            ProgressState.update(self, done)
        if self.forward is not None:
            self.forward.update(done)

    def advance(self, amount: int) -> None:
        with self._lock:
            self.update(self.done + amount)

    # -- read by pollers ----------------------------------------------------------------------------

    def rate(self) -> float:
        with self._lock:
            return ProgressState.rate(self)

    def eta(self) -> float | None:
        with self._lock:
            return ProgressState.eta(self)

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            return ProgressSnapshot(
                step_index=self.step_index,
                step_count=self.step_count,
                step_name=self.step_name,
                detail=self.step,
                done=self.done,
                total=self.total,
                fraction=self.fraction,
                rate=ProgressState.rate(self),
                eta=ProgressState.eta(self),
                elapsed=time.monotonic() - self.build_started,
                outcome=self.outcome,
                log_total=self.log_total,
            )

    def lines_since(self, count: int) -> tuple[list[str], int]:
        """Log lines added after the first ``count`` ever added, and the new count to pass next time."""
        with self._lock:
            new = min(self.log_total - count, len(self.log))
            return (list(self.log[len(self.log) - new :]) if new > 0 else []), self.log_total

    def log_text(self) -> str:
        """The whole (bounded) log as text, e.g. for "Save log"."""
        with self._lock:
            return "".join(line + "\n" for line in self.log)
