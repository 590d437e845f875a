"""Run the real `agent` command as a subprocess and talk to its API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

AGENT = [sys.executable, "-m", "agent"]


class AgentProcess:
    """An `agent run` child process; always stopped by the test that started it."""

    def __init__(self, args: list[str], api_port: int, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.api = f"127.0.0.1:{api_port}"
        self.stderr_path = cwd / "agent.stderr"
        self.stdout_path = cwd / "agent.stdout"
        self._stderr = open(self.stderr_path, "wb")
        self._stdout = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen([*AGENT, *args], cwd=cwd, stdout=self._stdout, stderr=self._stderr,
                                     env={**os.environ, **(env or {})}, start_new_session=True)

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{self.api}{path}", timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post(self, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(f"http://{self.api}{path}", method="POST", data=b"")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def components(self) -> dict[str, dict[str, Any]]:
        _, body = self.get("/api/v1/components")
        return {c["id"]: c for c in json.loads(body)["components"]}

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.logs()}")
            try:
                if self.get("/ready", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"agent not ready in {timeout}s: {self.logs()}")

    def wait_until(self, condition: Any, timeout: float = 15.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {self.logs()[-2000:]}")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def logs(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._stderr.close()
        self._stdout.close()


def metric_value(metrics_text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text page, or None."""
    for line in metrics_text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None
