"""`agent validate` in-process: what it touches, and the guard that keeps it from touching anything."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.validate import no_side_effects, validate

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
_seen: list[str] | None = None


def _record(event: str, args: tuple[Any, ...]) -> None:
    if _seen is None:
        return
    if event.startswith("socket.") or event in ("os.mkdir", "os.rename", "os.remove"):
        _seen.append(event)
    elif event == "open" and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        _seen.append(f"open {args[0]}")


sys.addaudithook(_record)


def test_validating_the_tcp_relay_resolves_no_host_and_writes_nothing(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    global _seen
    monkeypatch.delenv("FORWARD_ADDRESS", raising=False)  # so the sink names collector.internal:5170
    _seen = []
    try:
        assert validate([str(PIPELINES / "tcp-relay.yaml")]) == 0
        seen = [event for event in _seen if "__pycache__" not in event]
    finally:
        _seen = None
    assert seen == []
    assert capsys.readouterr().err == ""


def test_the_guard_refuses_writes_and_network_and_says_what(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("kept")
    with no_side_effects() as blocked:
        assert (tmp_path / "config").read_text() == "kept"  # reading is fine
        with pytest.raises(PermissionError):
            (tmp_path / "made").mkdir()
        with pytest.raises(PermissionError):
            open(tmp_path / "file", "ab")  # refused before anything is opened
        with pytest.raises(PermissionError):
            socket.getaddrinfo("collector.internal", 5170)
    assert blocked == [f"create {tmp_path}/made", f"write {tmp_path}/file",
                       "use the network (socket.getaddrinfo collector.internal)"]
    assert [p.name for p in tmp_path.iterdir()] == ["config"]
    (tmp_path / "made").mkdir()  # outside the guard, nothing is refused
