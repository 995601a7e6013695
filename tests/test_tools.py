from __future__ import annotations

import threading

import pytest

from app.errors import CancelledError, ShieldwrightError, ToolMissingError
from app.progress import CancelToken
from app.tools import find_tool, run_tool


def test_sbin_tools_are_found_without_sbin_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert find_tool("mkfs.ext4") in ("/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4")


def test_missing_tool_and_failing_tool_errors() -> None:
    with pytest.raises(ToolMissingError) as missing:
        run_tool("shieldwright-no-such-tool")
    assert "make setup" in missing.value.hint
    with pytest.raises(ShieldwrightError) as failed:
        run_tool("sh", "-c", "echo first >&2; echo the real cause >&2; exit 3", hint="look at sh")
    assert failed.value.message == "sh failed: the real cause"
    assert failed.value.hint == "look at sh"


def test_stdout_is_returned() -> None:
    assert run_tool("sh", "-c", "echo hello") == "hello\n"


def test_running_tool_is_stopped_on_cancel() -> None:
    token = CancelToken()
    threading.Timer(0.2, token.cancel).start()
    with pytest.raises(CancelledError):
        run_tool("sleep", "30", cancel=token)
