from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from agent_process import AgentProcess


@pytest.fixture
def start_agent(tmp_path: Path, free_port: int) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> AgentProcess:
        proc = AgentProcess(args, free_port, tmp_path, env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
