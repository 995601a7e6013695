"""The background-task helper: results, errors, progress polling, cancellation, awaiting, shutdown."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import qasync

from app.errors import CancelledError, ImageError
from app.gui.tasks import TaskRunner


def test_result_arrives_in_gui_thread(qtbot, runner):
    seen: dict[str, object] = {}

    def work(a, b):
        seen["worker"] = threading.current_thread()
        return a + b

    task = runner.start(work, 2, 3)
    results: list[object] = []
    task.succeeded.connect(lambda r: results.append((r, threading.current_thread())))
    with qtbot.waitSignal(task.finished, timeout=5000):
        pass
    assert results == [(5, threading.main_thread())]
    assert seen["worker"] is not threading.main_thread()
    assert task not in runner.running


def test_already_finished_future_still_reaches_late_connections(qtbot, runner):
    # Even if the call completes before the caller connects, the result arrives (queued delivery).
    task = runner.start(lambda: "quick")
    time.sleep(0.2)
    results: list[object] = []
    task.succeeded.connect(results.append)
    qtbot.waitUntil(lambda: results == ["quick"], timeout=5000)


def test_shieldwright_error_goes_to_failed_not_excepthook(qtbot, runner, monkeypatch):
    hooked: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, e, tb: hooked.append(e))

    def bad():
        raise ImageError("x.img is empty", "choose another file")

    task = runner.start(bad)
    failures: list[object] = []
    task.failed.connect(failures.append)
    with qtbot.waitSignal(task.finished, timeout=5000):
        pass
    assert len(failures) == 1 and failures[0].hint == "choose another file"
    assert hooked == []


def test_unexpected_error_goes_to_excepthook(qtbot, runner, monkeypatch):
    hooked: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, e, tb: hooked.append(e))
    task = runner.start(lambda: 1 / 0)
    failures: list[object] = []
    task.failed.connect(failures.append)
    with qtbot.waitSignal(task.finished, timeout=5000):
        pass
    assert failures == []
    assert len(hooked) == 1 and isinstance(hooked[0], ZeroDivisionError)


def test_progress_is_polled_and_cancel_stops_the_work(qtbot, runner):
    started = threading.Event()

    def long_job(*, cancel, progress):
        progress.begin("hashing", 1000)
        started.set()
        for i in range(1000):
            cancel.check()
            progress.update(i)
            time.sleep(0.005)
        return "done"

    task = runner.start(long_job, with_progress=True)
    seen: list[tuple[str, int]] = []
    task.progressChanged.connect(lambda p: seen.append((p.step, p.done)))
    failures: list[object] = []
    task.failed.connect(failures.append)
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=5000)  # ~10 Hz timer
    assert seen[-1][0] == "hashing" and seen[-1][1] > 0
    task.cancel()
    with qtbot.waitSignal(task.finished, timeout=5000):
        pass
    assert len(failures) == 1 and isinstance(failures[0], CancelledError)
    assert task.progress.done < 999


def test_awaiting_a_task_under_qasync(qapp, runner):
    loop = qasync.QEventLoop(qapp, already_running=False)
    asyncio.set_event_loop(loop)
    try:

        async def main():
            ok = await runner.start(lambda: 42)
            with pytest.raises(ImageError):
                await runner.start(_raise_image_error)
            with pytest.raises(ZeroDivisionError):  # awaited: raised here, not sent to the excepthook
                await runner.start(lambda: 1 / 0)
            return ok

        assert loop.run_until_complete(asyncio.wait_for(main(), 10)) == 42
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def _raise_image_error():
    raise ImageError("bad", "hint")


def test_shutdown_cancels_queued_work_without_waiting(qtbot):
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-shutdown")
    task_runner = TaskRunner(executor)
    gate = threading.Event()
    ran: list[int] = []

    def blocker(*, cancel, progress):
        while not cancel.cancelled:
            time.sleep(0.01)
        gate.set()

    first = task_runner.start(blocker, with_progress=True)
    second = task_runner.start(lambda: ran.append(1))
    t0 = time.monotonic()
    task_runner.shutdown()
    assert time.monotonic() - t0 < 0.5  # did not wait for the worker
    assert first.cancel_token.cancelled
    assert gate.wait(5)
    executor.shutdown(wait=True)
    assert ran == []  # the queued call never started
    with pytest.raises(RuntimeError):
        task_runner.start(lambda: None)
    del second
