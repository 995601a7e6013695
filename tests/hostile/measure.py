"""Run a command in a child process and measure what it cost: peak memory, time, exit status.

The peak is the child's own ``VmHWM`` (the high-water mark of its resident memory since it started the
interpreter), which it writes to a file at exit. Not ``ru_maxrss``: Linux folds the *parent's* peak into
a child's ``ru_maxrss`` when the forked child calls exec, so a child of a big pytest process would report
pytest's size. Only when the child dies without exiting (killed on timeout, by a signal) is ``wait4``'s
``ru_maxrss`` used instead, an upper bound. Limits (``RLIMIT_FSIZE``, ...) are set in the child before it
runs, as a safety belt: a regression must fail the test, not exhaust the machine running it.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MiB_KIB = 1024
#: The stated bound on peak memory (RSS) of one command on a hostile input of up to a few MB.
#: A bare ``python -m app`` with the engine's imports peaks near 50 MiB on this project's machines.
PEAK_BOUND_KIB = 256 * MiB_KIB


@dataclass(frozen=True)
class Measured:
    returncode: int  # negative: killed by that signal
    stdout: str
    stderr: str
    peak_kib: int
    seconds: float  # from start to exit
    timed_out: bool

    def describe(self) -> str:
        return (
            f"exit {self.returncode}{' (timed out)' if self.timed_out else ''}, peak {self.peak_kib // 1024} "
            f"MiB, {self.seconds:.1f} s; stderr: {self.stderr.strip()[-600:]!r}"
        )


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO), **extra}
    env.pop("PYTHONDEVMODE", None)
    return env


#: Run first in every measured child: write the peak resident memory (KiB) where the parent asks.
PRELUDE = """\
import atexit as _atexit, os as _os
def _sw_report_peak():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(_os.environ["SW_PEAK_FILE"], "w") as out:
        out.write(peak)
_atexit.register(_sw_report_peak)
"""


def cli(*args: str | os.PathLike[str]) -> list[str]:
    """argv for ``shieldwright ARGS`` run from this checkout (as ``python -m app`` does)."""
    code = f"import runpy, sys\nsys.argv = ['shieldwright', *{[str(a) for a in args]!r}]\n"
    return python(code + "runpy.run_module('app', run_name='__main__', alter_sys=True)\n")


def python(code: str) -> list[str]:
    """argv running ``code`` in a fresh interpreter from this checkout, its peak memory reported."""
    return [sys.executable, "-c", PRELUDE + code]


def vm_hwm_kib() -> int:
    """This process's own peak resident memory (``VmHWM``), not inherited from its parent."""
    with open("/proc/self/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("VmHWM:")))


def _read_all(f: object) -> bytes:
    """What a child has written so far to the temporary file ``f`` (read by position, not moving it)."""
    return os.pread(f.fileno(), 1 << 16, 0)  # type: ignore[attr-defined]


def run_measured(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    limits: Mapping[int, int] | None = None,
    signals: Sequence[tuple[float, int]] = (),
    signals_after: bytes | None = None,
) -> Measured:
    """Run ``argv``, killed after ``timeout`` s, sent each ``(after_seconds, signal)`` of ``signals``.

    The signals' times count from the start, or with ``signals_after`` from when the child's stdout first
    holds that text (a signal sent between fork and exec, under load, would be lost to the parent's
    handlers; one sent before the child is where the test wants it would test nothing).
    """

    def preexec() -> None:
        for which, value in (limits or {}).items():
            resource.setrlimit(which, (value, value))
        if limits and resource.RLIMIT_FSIZE in limits:
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as peak_file:  # fmt: skip
        start = time.monotonic()
        env = {**(env if env is not None else child_env()), "SW_PEAK_FILE": peak_file.name}
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=REPO, env=env,
            preexec_fn=preexec,
        )  # fmt: skip
        pending = sorted(signals)
        armed_at = None if signals_after else start
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = time.monotonic()
            elapsed = now - start
            if armed_at is None and signals_after is not None and signals_after in _read_all(out):
                armed_at = now
            while pending and armed_at is not None and pending[0][0] <= now - armed_at:
                proc.send_signal(pending.pop(0)[1])
            if elapsed > timeout:
                proc.kill()
                timed_out = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        reported = peak_file.read().strip()
        return Measured(
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            int(reported) if reported else usage.ru_maxrss,
            seconds,
            timed_out,
        )
