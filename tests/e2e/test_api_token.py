"""`agent tap` and `agent top` read the API's address and token from the agent's config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from agent_process import AgentProcess

TOKEN = "tap-token-0123456789"


def test_tap_reads_address_and_token_from_the_config(
        tmp_path: Path, free_port: int, start_agent: Callable[..., AgentProcess]) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(f"""\
data_dir: {tmp_path}/data
api: {{address: '127.0.0.1:{free_port}', auth_token: '${{AGENT_TEST_API_TOKEN}}'}}
sources:
  gen: {{type: generate, format: json, rate: 50}}
sinks:
  out: {{type: blackhole, inputs: [gen]}}
""")
    env = {**os.environ, "AGENT_TEST_API_TOKEN": TOKEN}
    agent = start_agent(["run", "-c", str(config)], env=env)
    agent.wait_ready()

    def tap(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent", "tap", "gen", "--limit", "2", "--seconds", "10",
                               *args], capture_output=True, text=True, env=env, timeout=30)

    sampled = tap("-c", str(config))
    assert sampled.returncode == 0, sampled.stderr
    assert len([json.loads(line) for line in sampled.stdout.splitlines()]) == 2
    refused = tap("--api", agent.api)
    assert refused.returncode == 1
    assert "api.auth_token" in refused.stderr and TOKEN not in refused.stderr
    assert tap("-c", str(config), "--token", "wrong").returncode == 1  # a flag overrides the config
    assert agent.get("/metrics")[0] == 200
    assert TOKEN not in agent.logs()
