"""The real agent under a fake systemd notify socket, and packaging/systemd/agent.service checked by systemd."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_process import AgentProcess

UNIT = Path(__file__).parents[2] / "packaging" / "systemd" / "agent.service"
EXEC = "/usr/local/bin/agent"
BODY = """\
sources:
  gen: {type: generate, format: json, rate: 20}
sinks:
  out: {type: blackhole, inputs: [gen]}
"""


class NotifySocket:
    """What systemd listens on: a unix datagram socket; the test reads what the agent sends."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.received: list[tuple[float, dict[str, str]]] = []  # (monotonic time, assignments)

    def poll(self, wait: float = 0.05) -> None:
        self.sock.settimeout(wait)
        try:
            while True:
                data = self.sock.recv(4096).decode()
                self.received.append((time.monotonic(), dict(line.split("=", 1) for line in data.split("\n"))))
                self.sock.settimeout(0)
        except (TimeoutError, BlockingIOError):
            pass

    def states(self) -> list[dict[str, str]]:
        """Everything received but the watchdog pings, in order."""
        return [message for _, message in self.received if "WATCHDOG" not in message]

    def wait_for(self, key: str, count: int, proc: AgentProcess, timeout: float = 15.0) -> dict[str, str]:
        """The ``count``-th message carrying ``key``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = proc.proc.poll() is not None
            self.poll()
            found = [m for _, m in self.received if key in m]
            if len(found) >= count:
                return found[count - 1]
            if exited:
                break
        raise AssertionError(f"no {key} #{count}; received {self.states()}: {proc.logs()[-2000:]}")


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    directory = tempfile.mkdtemp(prefix="sdn", dir="/tmp")  # unix socket paths are limited to 107 bytes
    listener = NotifySocket(os.path.join(directory, "notify"))
    yield listener
    listener.sock.close()
    shutil.rmtree(directory)


def test_ready_watchdog_reload_and_stop_reach_systemd(
        tmp_path: Path, free_port: int, notify_socket: NotifySocket,
        start_agent: Callable[..., AgentProcess]) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(f"data_dir: {tmp_path}/data\napi: {{address: '127.0.0.1:{free_port}'}}\n{BODY}")
    agent = start_agent(["run", "-c", str(config)],
                        env={"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "400000"})

    ready = notify_socket.wait_for("READY", 1, agent)
    assert ready == {"READY": "1", "STATUS": "running 2 components"}
    assert agent.get("/ready")[0] == 200  # READY comes once the pipeline runs

    # WATCHDOG=1 every 0.2 s (half of WATCHDOG_USEC): about 10 in 2 s; the bounds are generous
    start = time.monotonic()
    while time.monotonic() - start < 2.0:
        notify_socket.poll()
    pings = [t for t, m in notify_socket.received if m == {"WATCHDOG": "1"} and start <= t <= start + 2.0]
    assert 4 <= len(pings) <= 25, len(pings)

    agent.signal(signal.SIGHUP)
    reloading = notify_socket.wait_for("RELOADING", 1, agent)
    assert reloading["STATUS"] == "reloading (SIGHUP)" and int(reloading["MONOTONIC_USEC"]) > 0
    assert notify_socket.wait_for("READY", 2, agent)["STATUS"] == "reloaded: no component changed"

    config.write_text(config.read_text() + "  broken: {type: nosuchsink, inputs: [gen]}\n")  # the file watcher
    notify_socket.wait_for("RELOADING", 2, agent)
    failed = notify_socket.wait_for("READY", 3, agent)
    assert failed["STATUS"].startswith("reload failed; kept the running config: ")
    assert "nosuchsink" in failed["STATUS"]

    agent.signal(signal.SIGTERM)
    assert notify_socket.wait_for("STOPPING", 1, agent) == {"STOPPING": "1", "STATUS": "draining on SIGTERM"}
    assert agent.wait() == 0
    notify_socket.poll()
    assert [next(iter(m)) for m in notify_socket.states()] == [
        "READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"]


def test_no_ready_when_start_up_fails(tmp_path: Path, free_port: int, notify_socket: NotifySocket,
                                      start_agent: Callable[..., AgentProcess]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = tmp_path / "p.yaml"
        config.write_text(f"data_dir: {tmp_path}/data\napi: {{address: '127.0.0.1:{free_port}'}}\n"
                          "sources:\n"
                          f"  tcp: {{type: socket, address: '127.0.0.1:{taken.getsockname()[1]}'}}\n"
                          "sinks:\n  out: {type: blackhole, inputs: [tcp]}\n")
        agent = start_agent(["run", "-c", str(config)], env={"NOTIFY_SOCKET": notify_socket.path})
        assert agent.wait() == 1
    notify_socket.poll()
    assert notify_socket.states() == []


def test_without_notify_socket_the_agent_runs_as_before(
        tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch,
        start_agent: Callable[..., AgentProcess]) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    config = tmp_path / "p.yaml"
    config.write_text(f"data_dir: {tmp_path}/data\napi: {{address: '127.0.0.1:{free_port}'}}\n{BODY}")
    agent = start_agent(["run", "-c", str(config)], env={"WATCHDOG_USEC": "400000"})
    agent.wait_ready()
    agent.signal(signal.SIGHUP)
    agent.wait_until(lambda: "config reloaded" in agent.logs(), what="the reload")
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0
    assert "systemd" not in agent.logs()


# -- packaging/systemd/agent.service ------------------------------------------------------------


def unit_settings() -> dict[str, dict[str, list[str]]]:
    """Each section's keys with every value given (systemd keys may repeat, so not configparser)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, value = line.split("=", 1)
        current.setdefault(key, []).append(value)
    return sections


def test_the_unit_has_what_the_agent_relies_on() -> None:
    service = {key: values[-1] for key, values in unit_settings()["Service"].items()}
    assert service["Type"] == "notify"
    assert service["ExecStart"].startswith(EXEC + " run -c /etc/agent/")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "78"  # the exit code of a config error
    assert service["WatchdogSec"] == "30s"
    assert service["EnvironmentFile"] == "-/etc/agent/agent.env"
    assert service["ProtectSystem"] == "strict" and service["ReadWritePaths"] == "/var/lib/agent"
    assert service["NoNewPrivileges"] == service["PrivateTmp"] == "yes"
    assert service["CapabilityBoundingSet"] == service["AmbientCapabilities"] == "CAP_DAC_READ_SEARCH"
    assert service["User"] == "agent" and service["StateDirectory"] == "agent"
    assert service["TimeoutStopSec"] == "60s"  # longer than the default shutdown_timeout (30s)
    assert "AF_UNIX" in service["RestrictAddressFamilies"]  # $NOTIFY_SOCKET is a unix socket
    from agent.config.model import RootConfig
    from agent.core.errors import EXIT_CONFIG

    assert int(service["RestartPreventExitStatus"]) == EXIT_CONFIG
    assert RootConfig().data_dir == service["ReadWritePaths"]


def systemd_verify(unit: Path) -> tuple[int, list[str]]:
    """``systemd-analyze verify``'s exit code and complaints, minus the one about the agent not being
    installed on this machine (ExecStart's absolute path)."""
    analyze = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    if not os.access(analyze, os.X_OK):
        pytest.skip("systemd-analyze is not installed here")
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True,
                            timeout=60)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    missing = f"{unit.name}: Command {EXEC} is not executable: No such file or directory"
    if not os.path.exists(EXEC) and missing in lines:
        lines.remove(missing)
        return (0 if not lines and result.returncode == 1 else result.returncode), lines
    return result.returncode, lines


def test_systemd_analyze_verify_accepts_the_unit() -> None:
    assert systemd_verify(UNIT) == (0, [])


def test_systemd_analyze_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "agent.service"
    broken.write_text(UNIT.read_text().replace("WatchdogSec=30s", "WatchdogSec=thirty\nTyp=notify"))
    _, complaints = systemd_verify(broken)
    assert any("WatchdogSec" in line or "thirty" in line for line in complaints), complaints
    assert any("'Typ'" in line for line in complaints), complaints
