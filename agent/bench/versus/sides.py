"""The two processes compared: how each is found, configured and started, and how far it has got."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from agent.bench.peers.lines import HOST
from agent.config.pipeline import load_texts

BIN_ENV, CONFIGS_ENV = "FLUENT_BIT_BIN", "FLUENT_BIT_CONFIGS"
REPO = Path(__file__).resolve().parents[3]
SHARED_TOOLS = REPO.parent / "shared" / "tools"  # ../shared/tools from the repository


class FluentBitMissing(Exception):
    """No Fluent Bit binary (or none of its configs) where the benchmark looks for them."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """One pipeline, as a Fluent Bit config of ``../shared/tools/fluent-bit-configs`` and as an agent config."""

    name: str
    description: str
    fb_config: str  # file name in the configs directory
    fb_output: str  # its output's name in Fluent Bit's /api/v1/metrics
    receiver: bool  # whether the events go to the bench receiver (else the null / blackhole sink)
    add: tuple[tuple[str, str], ...] = ()  # fields a modify stage adds after parse (Fluent Bit's modify Add)

    def agent_config(self, logs: Path, data_dir: Path, api_port: int, sink_port: int | None) -> str:
        """The agent's pipeline equivalent to :attr:`fb_config`, as YAML; checked by the agent's config loader."""
        source = {"type": "tail", "include": [str(logs / "*.log")], "format": "docker", "read_from": "beginning"}
        doc: dict[str, Any] = {"data_dir": str(data_dir), "api": {"address": f"{HOST}:{api_port}"},
                               "sources": {"in": source}}
        if not self.receiver:
            doc["sinks"] = {"out": {"type": "blackhole", "inputs": ["in"]}}
        else:
            # Fluent Bit's parser filter on `log` (Reserve_Data On): the agent's Docker decoder calls it `message`
            doc["transforms"] = {"parse": {"type": "parse", "inputs": ["in"], "field": "message"}}
            last = "parse"
            if self.add:  # Fluent Bit's modify filter, Add: set only when the key is absent, as the agent's add
                doc["transforms"]["modify"] = {"type": "modify", "inputs": ["parse"], "add": dict(self.add)}
                last = "modify"
            url = f"http://{HOST}:{sink_port}"
            if self.fb_output.startswith("es."):  # Logstash_Format On: logstash-%Y.%m.%d of the record's time
                sink = {"type": "elasticsearch", "inputs": [last], "endpoints": [url], "index": "logstash-%Y.%m.%d"}
            else:  # http, Format json_lines
                sink = {"type": "http", "inputs": [last], "uri": f"{url}/ingest", "encoding": "ndjson"}
            doc["sinks"] = {"out": sink}
        text = f"# {self.name}: the agent's equivalent of {self.fb_config}\n" + yaml.safe_dump(doc, sort_keys=False)
        load_texts([(text, f"<{self.name}.yaml>")])  # ConfigErrors if the agent would refuse it
        return text


SCENARIOS = {s.name: s for s in (
    Scenario("tail_null", "tail (docker parser) -> null", "tail-null.conf", "null.0", receiver=False),
    Scenario("tail_parse_http", "tail (docker) -> parse json (log) -> http ndjson", "tail-parse-http.conf",
             "http.0", receiver=True),
    Scenario("tail_parse_es", "tail (docker) -> parse json (log) -> elasticsearch _bulk", "tail-parse-es.conf",
             "es.0", receiver=True),
    Scenario("tail_parse_modify_http", "tail (docker) -> parse json (log) -> modify (add 2 fields) -> http ndjson",
             "tail-parse-modify-http.conf", "http.0", receiver=True,
             add=(("cluster", "bench-cluster"), ("env", "perf"))),
)}


def find_fluent_bit(environ: Mapping[str, str] = os.environ, shared: Path = SHARED_TOOLS) -> tuple[Path, Path]:
    """(binary, configs directory): ``$FLUENT_BIT_BIN`` or ``../shared/tools/fluent-bit``; FluentBitMissing if none."""
    given = environ.get(BIN_ENV)
    if given:
        binary = Path(given)
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise FluentBitMissing(f"{BIN_ENV}={given} is not an executable file")
    else:
        binary = shared / "fluent-bit"
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise FluentBitMissing(
                f"no Fluent Bit to compare with: {BIN_ENV} is not set and {binary} does not exist. This benchmark "
                f"runs Fluent Bit 4 next to the agent; set {BIN_ENV} to a fluent-bit binary (with the tail, "
                "parser, null, http and es plugins).")
    candidates = [Path(environ[CONFIGS_ENV])] if environ.get(CONFIGS_ENV) else []
    candidates += [binary.parent / "fluent-bit-configs", shared / "fluent-bit-configs"]
    for configs in candidates:
        if all((configs / s.fb_config).is_file() for s in SCENARIOS.values()):
            return binary, configs
    raise FluentBitMissing(f"no Fluent Bit configs ({', '.join(s.fb_config for s in SCENARIOS.values())}) in "
                           f"{' or '.join(map(str, candidates))}; set {CONFIGS_ENV} to the directory holding them")


def fluent_bit_version(binary: Path) -> str:
    """The first line of ``fluent-bit --version``."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False)
    return (out.stdout.splitlines() or ["unknown"])[0].strip()


STOP_S = 15.0  # SIGTERM, then SIGKILL after this long


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM a child still running, SIGKILL it if it takes over ``STOP_S``; its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_S)
    return process.returncode


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def fluent_bit_service(parsers: Path, api_port: int, flush: str = "1") -> str:
    """Fluent Bit's ``[SERVICE]`` section in a comparison: its parsers file, warnings only, and its HTTP server
    on ``api_port`` (where the harness reads its metrics); the sections that follow are the scenario's."""
    return f"""[SERVICE]
    Flush         {flush}
    Log_Level     warn
    Parsers_File  {parsers}
    HTTP_Server   On
    HTTP_Listen   {HOST}
    HTTP_Port     {api_port}

"""


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start one side for one run, and how to ask it how many events it has read and delivered.

    Fluent Bit refreshes the figures of its API once a second, too seldom to find when it had read 5 % of
    the lines (it reads a million in about a second), so its lines read are its bytes read (``rchar``)
    divided by the average line size: until its first flush, a second after it starts, the log files are
    all it reads. The agent's API counts are live.
    """

    side: str  # "fluent-bit" or "agent"
    argv: list[str]
    env: dict[str, str]
    progress_url: str
    output: str  # Fluent Bit's output name, or the agent's sink id
    reads_by_io: bool = False  # count lines read from /proc/<pid>/io: the API refreshes too seldom

    def progress(self, body: Any) -> tuple[int, int]:
        """(events read, events delivered) from the body of :attr:`progress_url`."""
        if self.side == "fluent-bit":
            return int(body["input"]["tail.0"]["records"]), int(body["output"][self.output]["proc_records"])
        sent = {c["id"]: int(c["sent_events"]) for c in body["components"]}
        return sent["in"], sent[self.output]

    async def poll(self, http: aiohttp.ClientSession) -> tuple[int, int] | None:
        """(events read, events delivered) so far; None while the API does not answer yet."""
        try:
            async with http.get(self.progress_url, timeout=aiohttp.ClientTimeout(total=2.0)) as response:
                if response.status != 200:
                    return None
                return self.progress(await response.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
            return None


def fluent_bit_launch(binary: Path, configs: Path, scenario: Scenario, logs: Path, sink_port: int | None) -> Launch:
    """Fluent Bit on the scenario's config, its paths and ports given by environment variables."""
    api_port = free_port()
    env = {**os.environ, "FB_DIR": str(configs), "FB_API_PORT": str(api_port), "BENCH_INPUT": str(logs / "*.log"),
           "SINK_PORT": str(sink_port or 0)}
    return Launch("fluent-bit", [str(binary), "-c", str(configs / scenario.fb_config)], env,
                  f"http://{HOST}:{api_port}/api/v1/metrics", scenario.fb_output, reads_by_io=True)


def agent_launch(scenario: Scenario, logs: Path, workdir: Path, sink_port: int | None) -> Launch:
    """``agent run`` (this interpreter) on the scenario's generated YAML, written to ``workdir``."""
    api_port = free_port()
    data_dir = workdir / "agent-data"
    config = workdir / f"{scenario.name}.yaml"
    config.write_text(scenario.agent_config(logs, data_dir, api_port, sink_port))
    return Launch("agent", [sys.executable, "-m", "agent", "run", "-c", str(config)], dict(os.environ),
                  f"http://{HOST}:{api_port}/api/v1/components", "out")
