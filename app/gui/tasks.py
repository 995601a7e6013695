"""Run blocking engine calls off the GUI thread (Picard's ``run_task``, Anki's ``QueryOp``).

``TaskRunner.start(fn, *args)`` submits ``fn`` to the executor the application owns and returns a
:class:`BackgroundTask` living in the GUI thread. The task reports back through Qt signals, delivered
queued into the GUI thread, so it works under any Qt event loop: the qasync loop of the application,
``qtbot.waitUntil`` in tests, or a plain ``processEvents`` loop in the screenshot tool. A coroutine can
also ``await task``.

- ``fn`` may accept ``cancel=`` and ``progress=`` keyword arguments (``start(..., with_progress=True)``):
  it then gets the task's :class:`CancelToken` and :class:`ProgressState`, which a QTimer polls at 10 Hz
  and re-emits as ``progressChanged`` - no per-block signal ever crosses threads.
- A :class:`ShieldwrightError` (bad input, cancellation) is the caller's business: ``failed`` carries it,
  the page shows it inline. Any other exception is a bug: it goes to ``sys.excepthook`` (logged, error
  dialog) unless the task is being awaited, in which case it is raised in the awaiting coroutine.
- ``finished`` always comes last, whatever happened, so busy indicators can rely on it.
- The runner keeps a strong reference to every running task (and asyncio future) until it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import weakref
from collections.abc import Callable, Generator
from concurrent.futures import Executor, Future
from typing import Any

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, Qt, QTimer, Signal, Slot

from app.errors import CancelledError, ShieldwrightError
from app.progress import CancelToken, ProgressState

log = logging.getLogger(__name__)

#: How often a running task's ProgressState is pulled into the GUI (GNOME Disks' 1/10 s rule).
PROGRESS_INTERVAL_MS = 100


class _Relay(QObject):
    """Carries finished futures from worker threads into the GUI thread, always queued.

    One relay per application, parented to it, so a worker never emits on an object that a test or a
    closing window may be deleting at that very moment; the task is looked up through a weak reference
    when the event is delivered and silently dropped if it is gone.
    """

    done = Signal(object, object)

    def __init__(self, parent: QObject | None) -> None:
        super().__init__(parent)
        # Queued even from the GUI thread: callers connect to a task after start() returns, so a
        # future that is already done at submit time must still report in a later loop iteration.
        self.done.connect(self._dispatch, Qt.ConnectionType.QueuedConnection)

    @Slot(object, object)
    def _dispatch(self, ref: weakref.ReferenceType[BackgroundTask], future: Future[Any]) -> None:
        task = ref()
        if task is not None and shiboken6.isValid(task):
            task._on_done(future)


_relay_instance: _Relay | None = None


def _relay() -> _Relay:
    global _relay_instance
    if _relay_instance is None or not shiboken6.isValid(_relay_instance):
        _relay_instance = _Relay(QCoreApplication.instance())
    return _relay_instance


class BackgroundTask(QObject):
    """One blocking call running in the executor, observed from the GUI thread."""

    #: The callable's return value.
    succeeded = Signal(object)
    #: A ShieldwrightError (including CancelledError) raised by the callable.
    failed = Signal(object)
    #: Emitted ~10 Hz while running, with the task's ProgressState.
    progressChanged = Signal(object)
    #: Always emitted last, after succeeded/failed (or after an unexpected error went to the excepthook).
    finished = Signal()

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.cancel_token = CancelToken()
        self.progress = ProgressState()
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = False
        self._waiters: list[asyncio.Future[Any]] = []
        self._on_forget: Callable[[BackgroundTask], None] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(PROGRESS_INTERVAL_MS)
        self._timer.timeout.connect(self._poll_progress)

    @property
    def done(self) -> bool:
        return self._done

    def cancel(self) -> None:
        """Ask the callable to stop at its next ``cancel.check()``; it then fails with CancelledError."""
        self.cancel_token.cancel()

    # -- awaiting ---------------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Any]:
        return self._wait().__await__()

    async def _wait(self) -> Any:
        if not self._done:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut
        if self.error is not None:
            raise self.error
        return self.result

    # -- plumbing ---------------------------------------------------------------------------------

    def _submit(self, executor: Executor, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        future = executor.submit(fn, *args, **kwargs)
        self._timer.start()
        relay, ref = _relay(), weakref.ref(self)

        def deliver(fut: Future[Any]) -> None:
            # Runs in the worker thread (or right here if already done): only emit, never touch widgets.
            with contextlib.suppress(RuntimeError):  # the application is gone: nobody listens
                relay.done.emit(ref, fut)

        future.add_done_callback(deliver)

    @Slot()
    def _poll_progress(self) -> None:
        self.progressChanged.emit(self.progress)

    def _on_done(self, future: Future[Any]) -> None:
        self._timer.stop()
        self._done = True
        try:
            if future.cancelled():  # the executor was shut down before the call started
                raise CancelledError()
            self.result = future.result()
        except BaseException as exc:  # noqa: BLE001 - sorted below, nothing is swallowed
            self.error = exc
        awaited = any(not w.done() for w in self._waiters)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        self.progressChanged.emit(self.progress)
        if self.error is None:
            log.debug("task %s succeeded", self.objectName())
            self.succeeded.emit(self.result)
        elif isinstance(self.error, ShieldwrightError):
            log.info("task %s failed: %s", self.objectName(), self.error.one_line())
            self.failed.emit(self.error)
        elif not awaited:
            log.debug("task %s raised unexpectedly", self.objectName())
            err = self.error
            sys.excepthook(type(err), err, err.__traceback__)
        self.finished.emit()
        forget, self._on_forget = self._on_forget, None
        if forget is not None:
            forget(self)


class TaskRunner(QObject):
    """Starts BackgroundTasks in an executor the application owns, and shuts it down."""

    def __init__(self, executor: Executor, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.executor = executor
        self._running: set[BackgroundTask] = set()
        self._closed = False

    def start(
        self,
        fn: Callable[..., Any],
        *args: Any,
        name: str = "",
        with_progress: bool = False,
        **kwargs: Any,
    ) -> BackgroundTask:
        """Run ``fn(*args, **kwargs)`` in the executor.

        With ``with_progress`` the call also gets ``cancel=`` (CancelToken) and ``progress=`` (ProgressState).
        """
        if self._closed:
            raise RuntimeError("TaskRunner is shut down")
        # No Qt parent: Python owns tasks (the set below and the caller), so no deleteLater races.
        task = BackgroundTask(name or getattr(fn, "__name__", "task"))
        if with_progress:
            kwargs = {**kwargs, "cancel": task.cancel_token, "progress": task.progress}
        self._running.add(task)
        task._on_forget = self._running.discard
        task._submit(self.executor, fn, args, kwargs)
        return task

    @property
    def running(self) -> frozenset[BackgroundTask]:
        return frozenset(self._running)

    def cancel_all(self) -> None:
        for task in list(self._running):
            task.cancel()

    def shutdown(self) -> None:
        """Cancel everything and release the executor without waiting for a thread stuck in a read.

        Queued calls never start; running ones see their CancelToken set. Their results are dropped.
        """
        if self._closed:
            return
        self._closed = True
        self.cancel_all()
        self.executor.shutdown(wait=False, cancel_futures=True)
        log.debug("task runner shut down with %d task(s) still running", len(self._running))
