"""Start-up failures of the real process: one clear line and the documented exit code, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from agent_process import AgentProcess

AGENT = [sys.executable, "-m", "agent"]
BODY = """\
sources:
  gen: {type: generate, format: json, rate: 20}
sinks:
  out: {type: blackhole, inputs: [gen]}
"""


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, cwd=cwd, timeout=30)


def test_an_api_port_in_use_is_one_line_naming_the_address(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        config = tmp_path / "p.yaml"
        config.write_text(f"data_dir: {tmp_path}/data\napi: {{address: '{address}'}}\n{BODY}")
        result = run(["run", "-c", str(config)], tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if not line.startswith("{")]  # JSON lines are logs
    assert errors == [f"error: api.address {address} is in use (is Fluent Bit or another agent running?); "
                      "set api.address to a free port"]
    assert "Traceback" not in result.stderr


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_bytes(f"data_dir: {tmp_path}/data\n# caf\xe9\n{BODY}".encode("latin-1"))
    result = run(["run", "-c", str(config)], tmp_path)
    assert result.returncode == 78
    assert result.stderr.splitlines() == [
        f"error: {config}:2: not UTF-8 text: byte 0xe9 cannot be decoded (save the file as UTF-8)"]


def test_a_second_agent_on_the_same_data_dir_exits_naming_the_first(
        tmp_path: Path, free_port: int, start_agent: Callable[..., AgentProcess]) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(f"data_dir: {tmp_path}/data\napi: {{address: '127.0.0.1:{free_port}'}}\n{BODY}")
    first = start_agent(["run", "-c", str(config)])
    first.wait_ready()
    second = tmp_path / "second.yaml"  # another API port, the same data_dir
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        other_port = s.getsockname()[1]
    second.write_text(f"data_dir: {tmp_path}/data\napi: {{address: '127.0.0.1:{other_port}'}}\n{BODY}")
    result = run(["run", "-c", str(second)], tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: data_dir {tmp_path}/data is in use by another agent (pid {first.proc.pid}); "
        "stop it, or give each agent its own data_dir"]
    assert first.proc.poll() is None
    first.stop()
    restarted = start_agent(["run", "-c", str(config)])  # the lock went with the process
    restarted.wait_ready()
