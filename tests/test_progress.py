from __future__ import annotations

import threading

import pytest

from app.errors import CancelledError, ShieldwrightError
from app.progress import CancelToken, ProgressState


def test_cancel_token_raises_after_cancel_from_another_thread() -> None:
    token = CancelToken()
    token.check()
    t = threading.Thread(target=token.cancel)
    t.start()
    t.join()
    assert token.cancelled
    with pytest.raises(CancelledError):
        token.check()


def test_progress_state_fraction_rate_and_eta(monkeypatch) -> None:
    clock = iter([0.0, 1.0, 2.0])
    monkeypatch.setattr("app.progress.time.monotonic", lambda: next(clock))
    p = ProgressState(started=0.0)
    p.begin("Hashing", 300)
    p.update(100)  # t=1
    p.update(200)  # t=2
    assert p.fraction == pytest.approx(2 / 3)
    assert p.rate() == pytest.approx(100.0)
    assert p.eta() == pytest.approx(1.0)


def test_error_messages_are_one_line() -> None:
    err = ShieldwrightError("bad\n  header", "try\nagain")
    assert err.one_line() == "bad header (try again)"


def test_a_child_token_stops_with_its_parent_but_never_stops_the_parent() -> None:
    parent = CancelToken()
    child = parent.child()
    child.cancel()
    assert child.cancelled and not parent.cancelled
    parent.check()  # the caller's token is untouched
    other = parent.child()
    parent.cancel()
    assert other.cancelled
    with pytest.raises(CancelledError):
        other.check()
