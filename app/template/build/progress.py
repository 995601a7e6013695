"""What a running build reports: step k of n, that step's progress, and a bounded log of human lines.

The build thread writes; the GUI (at ~10 Hz) and the CLI poll :meth:`BuildProgress.snapshot`, a
consistent immutable copy taken under one lock. The log keeps the last :data:`LOG_LIMIT` lines and
counts every line ever added, so a reader can ask for "lines since last time". Log lines never hold
secrets.

The snapshot's ``overall`` is the whole build's share done: each step weighs its measured cost
(:data:`STEP_COSTS`), a step's phases follow one another inside its share, and it never moves backwards.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from app.progress import Progress, ProgressState

#: Lines kept in :attr:`BuildProgress.log`; older ones are dropped.
LOG_LIMIT = 2000

#: Each build step's measured cost, in the build's step order (``app.template.pipeline.STEPS``): seconds of
#: a 2 GiB template - benchmarks/bench_build.py's input (XBOOTLDR and a 1.9 GiB random-filled root, both
#: encrypted), raw output, argon2id calibrated for 2 s - on a 2-core machine, from the build summary's
#: ``steps``. Larger images weigh the write and the export more, a VHDX export about 4x a raw one; the
#: overall bar needs them in proportion only. A build whose steps are not these weighs them equally.
STEP_COSTS: dict[str, float] = {
    "Open base image": 0.01,
    "Build and sign the UKI": 0.5,
    "Predict PCR values": 0.02,
    "Create LUKS2 keyslots": 3.3,
    "Write the template (copy, encrypt, hash)": 2.1,
    "Sign the catalog": 0.01,
    "Update the ESP": 0.3,
    "Export": 1.5,
    "Manifest and report": 0.05,
}
#: Steps that report a phase before their last one: the last phase's detail and its share of the step. A
#: VHDX, VHD or qcow2 export writes the output (one phase), then hashes it (another); a raw one only hashes.
LAST_PHASE: dict[str, tuple[str, float]] = {"Export": ("Hashing the output", 0.5)}
#: Steps whose ``done``/``total`` are a share of the work rather than bytes: the keyslot step counts its
#: partitions' KDF work estimated by time (a KDF reports nothing while it runs), qemu-img's conversion
#: per-mille.
PERCENT_STEPS = ("Create LUKS2 keyslots",)


def unit_of(step_name: str, detail: str) -> str:
    """What a step's ``done``/``total`` count: ``"bytes"``, or ``"percent"`` (only the share means
    something to a reader)."""
    return "percent" if step_name in PERCENT_STEPS or "qemu-img" in detail else "bytes"


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
    overall: float = 0.0  # the whole build's share done (0..1, by STEP_COSTS), never smaller than before
    unit: str = "bytes"  # what done/total count: "bytes" or "percent" (see unit_of)


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
    #: The running phase's span of its step's share (a later phase starts where the previous one got to).
    _phase_span: tuple[float, float] = field(default=(0.0, 1.0), repr=False, compare=False)
    _overall: float = field(default=0.0, repr=False, compare=False)

    # -- written by the build ----------------------------------------------------------------------

    def start_step(self, number: int, name: str, count: int) -> None:
        """The build enters step ``number`` (1-based) of ``count``, called ``name``."""
        with self._lock:
            self._track_overall()
            self.step_index, self.step_count, self.step_name = number, count, name
            ProgressState.begin(self, name, 0)
            self._phase_span = (0.0, 1.0)
            self._track_overall()
        self.note(f"Step {number}/{count}: {name}")

    def end_step(self, seconds: float) -> None:
        with self._lock:
            self.step_seconds.append((self.step_name, seconds))

    def finish(self, outcome: str) -> None:
        """The build is over: "done", "cancelled" or "failed"."""
        with self._lock:
            self.outcome = outcome
            if outcome == "done":
                self._overall = 1.0

    # -- the overall share --------------------------------------------------------------------------

    def _step_fraction(self) -> float:
        """How far the running step is, through its phases (0..1)."""
        low, high = self._phase_span
        return low + (high - low) * self.fraction

    def _next_phase_span(self, detail: str, total: int) -> tuple[float, float]:
        """The span of the step a phase starting now covers: it starts where the step got to; a phase
        before the step's known last one leaves that one its share."""
        low = self._step_fraction() if self.total > 0 else self._phase_span[0]
        last = LAST_PHASE.get(self.step_name)
        if last is None or total <= 0:
            return low, 1.0
        name, share = last
        if detail == name:
            return (max(low, 1.0 - share) if low > 0 else 0.0), 1.0
        return low, max(low, 1.0 - share)

    def _track_overall(self) -> None:
        """Fold the present position into the overall share (under the lock; it never decreases)."""
        count, index = self.step_count, self.step_index
        if count <= 0 or index <= 0:
            return
        costs = list(STEP_COSTS.values()) if len(STEP_COSTS) == count else [1.0] * count
        done = sum(costs[: index - 1]) + costs[index - 1] * min(1.0, self._step_fraction())
        self._overall = max(self._overall, min(1.0, done / sum(costs)))

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
            self._track_overall()
            self._phase_span = self._next_phase_span(step, total)
            ProgressState.begin(self, step, total)
        if self.forward is not None:
            self.forward.begin(step, total)

    def update(self, done: int) -> None:
        with self._lock:
            ProgressState.update(self, done)
            self._track_overall()
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
                overall=self._overall,
                unit=unit_of(self.step_name, self.step),
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
