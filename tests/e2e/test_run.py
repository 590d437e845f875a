"""`agent run` as a real process: drain on SIGTERM, reloads, the HTTP API, the default pipeline."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from agent_process import AgentProcess, metric_value

REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, api: str, body: str) -> Path:
    path.write_text(f"data_dir: {path.parent}/data\napi: {{address: \"{api}\"}}\nshutdown_timeout: 10s\n{body}")
    return path


def line_count(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def stopped_summary(agent: AgentProcess) -> dict[str, dict[str, int]]:
    records = [r for r in agent.log_records() if r["message"] == "pipeline stopped"]
    assert records, agent.logs()
    return records[-1]["components"]


def test_sigterm_drains_in_flight_events_to_the_file_sink(
        tmp_path: Path, free_port: int, start_agent: Callable[..., AgentProcess]) -> None:
    out = tmp_path / "out.ndjson"
    config = write_config(tmp_path / "p.yaml", f"127.0.0.1:{free_port}", f"""
sources:
  gen: {{type: generate, format: docker, batch_size: 500}}
transforms:
  parsed: {{type: parse, inputs: [gen]}}
sinks:
  disk: {{type: file, inputs: [parsed], path: "{out}", compression: gzip}}
""")
    agent = start_agent(["run", "-c", str(config)])
    agent.wait_ready()
    agent.wait_until(lambda: agent.components()["gen"]["sent_events"] > 50_000, what="50k events")
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.logs()
    emitted = stopped_summary(agent)["gen"]["sent_events"]
    written = subprocess.run(["gzip", "-dc", str(out)], capture_output=True, check=True).stdout.splitlines()
    assert len(written) == emitted
    assert json.loads(written[-1])["stream"] in ("stdout", "stderr")


def test_sighup_with_a_broken_config_keeps_the_old_pipeline_and_a_good_one_swaps_it(
        tmp_path: Path, free_port: int, start_agent: Callable[..., AgentProcess]) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    body = """
sources:
  gen: {{type: generate, format: text, rate: 2000, batch_size: 100}}
sinks:
  disk: {{type: file, inputs: [gen], encoding: text, path: "{path}"}}
"""
    api = f"127.0.0.1:{free_port}"
    config = write_config(tmp_path / "p.yaml", api, body.format(path=first))
    agent = start_agent(["run", "-c", str(config)])
    agent.wait_ready()
    agent.wait_until(lambda: line_count(first) > 200, what="first file")

    config.write_text(config.read_text().replace("rate: 2000", "rate: fast"))
    agent.signal(signal.SIGHUP)
    agent.wait_until(lambda: metric_value(agent.get("/metrics")[1].decode(), "agent_config_reloads_total",
                                          result="failure") == 1.0, what="failed reload counted")
    before = line_count(first)
    agent.wait_until(lambda: line_count(first) > before + 200, what="old pipeline still writing")
    assert "config reload failed; the running pipeline is unchanged" in agent.logs()

    write_config(config, api, body.format(path=second))
    agent.signal(signal.SIGHUP)
    agent.wait_until(lambda: line_count(second) > 200, what="second file after reload")
    metrics = agent.get("/metrics")[1].decode()
    assert metric_value(metrics, "agent_config_reloads_total", result="success") == 1.0
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0
    assert line_count(first) + line_count(second) == stopped_summary(agent)["gen"]["sent_events"]


def test_editing_the_config_file_reloads_it(
        tmp_path: Path, free_port: int, start_agent: Callable[..., AgentProcess]) -> None:
    api = f"127.0.0.1:{free_port}"
    config = write_config(tmp_path / "p.yaml", api, """
sources:
  gen: {type: generate, rate: 500}
sinks:
  a: {type: blackhole, inputs: [gen]}
""")
    agent = start_agent(["run", "-c", str(config)])
    agent.wait_ready()
    config.write_text(config.read_text() + "  b: {type: blackhole, inputs: [gen]}\n")
    agent.wait_until(lambda: agent.components().get("b", {}).get("received_events", 0) > 0, what="new sink")
    assert agent.components()["a"]["received_events"] > 0
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0


def test_api_endpoints(tmp_path: Path, free_port: int, start_agent: Callable[..., AgentProcess]) -> None:
    api = f"127.0.0.1:{free_port}"
    config = write_config(tmp_path / "p.yaml", api, """
sources:
  gen: {type: generate, format: json, rate: 1000, batch_size: 50}
transforms:
  parsed: {type: parse, inputs: [gen]}
sinks:
  out: {type: blackhole, inputs: [parsed], buffer: {max_events: 777}}
""")
    agent = start_agent(["run", "-c", str(config)])
    agent.wait_ready()
    status, body = agent.get("/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert agent.get("/ready")[0] == 200

    agent.wait_until(lambda: agent.components()["out"]["received_events"] > 0, what="events at the sink")
    components = agent.components()
    assert components["parsed"]["inputs"] == ["gen"]
    assert components["out"]["buffer"]["max_events"] == 777
    assert components["gen"]["kind"] == "source" and components["out"]["type"] == "blackhole"

    metrics = agent.get("/metrics")[1].decode()
    assert metric_value(metrics, "agent_component_received_events_total", component_id="out") > 0
    assert metric_value(metrics, "agent_buffer_max_events", component_id="out") == 777
    assert metric_value(metrics, "process_resident_memory_bytes") > 0

    status, body = agent.get("/api/v1/tap/parsed?limit=3&seconds=5")
    events = [json.loads(line) for line in body.splitlines()]
    assert status == 200 and len(events) == 3
    assert {"level", "service", "trace_id"} <= set(events[0])
    assert agent.get("/api/v1/tap/nope")[0] == 404

    status, result = agent.post("/api/v1/reload")
    assert status == 200 and result["reloaded"] is True
    config.write_text(config.read_text().replace("rate: 1000", "rate: -"))
    status, result = agent.post("/api/v1/reload")
    assert status == 400 and result["reloaded"] is False and "p.yaml:6: sources.gen.rate:" in result["message"]
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0


def test_secrets_never_reach_logs_or_the_api(
        tmp_path: Path, free_port: int, start_agent: Callable[..., AgentProcess]) -> None:
    secret = "s3cr3t-9f8e7d6c5b4a"
    (tmp_path / "token").write_text(secret + "\n")
    api = f"127.0.0.1:{free_port}"
    good = """
sources:
  gen: {type: generate, rate: 100}
sinks:
  out: {type: blackhole, inputs: [gen]}
"""
    config = write_config(tmp_path / "p.yaml", api, good)
    agent = start_agent(["run", "-c", str(config)], env={"AGENT_TEST_TOKEN": secret})
    agent.wait_ready()
    # a secret put where the config is wrong: the error must point at it without quoting it
    config.write_text(config.read_text() + "  con: {type: console, inputs: [gen], encoding: ${AGENT_TEST_TOKEN}}\n")
    status, result = agent.post("/api/v1/reload")
    assert status == 400
    assert "sinks.con.encoding: invalid value" in result["message"]
    for path in ("/api/v1/components", "/metrics"):
        assert secret not in agent.get(path)[1].decode()
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0
    assert secret not in result["message"]
    assert secret not in agent.logs()
    result = subprocess.run([*AGENT_CMD, "validate", "-c", str(config)], capture_output=True, text=True,
                            env={**os.environ, "AGENT_TEST_TOKEN": secret}, timeout=30)
    assert result.returncode == 78 and "<redacted>" in result.stderr and secret not in result.stderr


def test_tap_command_prints_events(tmp_path: Path, free_port: int, start_agent: Callable[..., AgentProcess]) -> None:
    api = f"127.0.0.1:{free_port}"
    config = write_config(tmp_path / "p.yaml", api, """
sources:
  gen: {type: generate, format: text, rate: 200}
sinks:
  out: {type: blackhole, inputs: [gen]}
""")
    agent = start_agent(["run", "-c", str(config)])
    agent.wait_ready()
    result = subprocess.run([*AGENT_CMD, "tap", "gen", "--api", api, "--limit", "2"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2 and "[" in lines[0]["message"]
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0


def test_make_run_shows_events_on_a_machine_without_container_logs(tmp_path: Path, free_port: int) -> None:
    env = {**os.environ, "AGENT_API_ADDRESS": f"127.0.0.1:{free_port}", "AGENT_DATA_DIR": str(tmp_path)}
    with subprocess.Popen(["make", "-s", "run"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, start_new_session=True) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # blocks until the first event; the test timeout bounds it
            event = json.loads(first)
            assert {"timestamp", "level", "message"} <= set(event)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
    assert proc.returncode in (0, 2, -signal.SIGTERM)  # make reports the child's SIGTERM exit as 2


from agent_process import AGENT as AGENT_CMD  # noqa: E402


def test_top_command_shows_a_row_per_component(
        tmp_path: Path, free_port: int, start_agent: Callable[..., AgentProcess]) -> None:
    api = f"127.0.0.1:{free_port}"
    config = write_config(tmp_path / "p.yaml", api, """
sources:
  gen: {type: generate, rate: 1000}
sinks:
  sink_one: {type: blackhole, inputs: [gen]}
""")
    agent = start_agent(["run", "-c", str(config)])
    agent.wait_ready()
    # in a terminal, as users run it: the first frame on the pty says it is up (however slow the host)
    master, slave = pty.openpty()
    with subprocess.Popen([*AGENT_CMD, "top", "--api", api, "--interval", "0.2"], stdin=slave, stdout=slave,
                          stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "150"}) as top:
        os.close(slave)
        screen = b""
        try:
            deadline = time.monotonic() + 30
            while b"sink_one" not in screen and time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.5)
                if ready:
                    screen += os.read(master, 65536)
            top.send_signal(signal.SIGINT)
            deadline = time.monotonic() + 10  # Ctrl-C: the loop ends at its next wait, whatever it was doing
            while top.poll() is None and time.monotonic() < deadline:
                if select.select([master], [], [], 0.1)[0]:
                    try:
                        screen += os.read(master, 65536)
                    except OSError:  # the pty closed with the process
                        break
            top.wait(timeout=5)
            err = top.stderr.read() if top.stderr else ""
        finally:
            if top.poll() is None:
                top.kill()
                top.wait(timeout=10)
            os.close(master)
    assert top.returncode == 0, err
    out = screen.decode(errors="replace")
    assert "sink_one" in out and "blackhole" in out and "generate" in out
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0


def test_deadline_exceeded_with_open_connections_exits_1_cleanly(
        tmp_path: Path, free_port: int, start_agent: Callable[..., AgentProcess]) -> None:
    import socket as sockets

    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        source_port = probe.getsockname()[1]
    config = write_config(tmp_path / "p.yaml", f"127.0.0.1:{free_port}", f"""
sources:
  net: {{type: socket, address: "127.0.0.1:{source_port}"}}
sinks:
  nowhere: {{type: socket, inputs: [net], address: "127.0.0.1:1", buffer: {{max_events: 1000}}}}
""").read_text().replace("shutdown_timeout: 10s", "shutdown_timeout: 1s")
    (tmp_path / "p.yaml").write_text(config)
    agent = start_agent(["run", "-c", str(tmp_path / "p.yaml")])
    agent.wait_ready()
    senders = [sockets.create_connection(("127.0.0.1", source_port)) for _ in range(2)]
    try:
        for s in senders:
            s.setblocking(False)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for s in senders:
                try:
                    s.send(b"a line of text\n" * 100)
                except BlockingIOError:
                    pass
            time.sleep(0.001)
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 1
    finally:
        for s in senders:
            s.close()
    logs = agent.logs()
    assert "components did not finish within shutdown_timeout" in logs
    assert "CancelledError" not in logs and "Traceback" not in logs
