"""`agent migrate fluent-bit` against the real Fluent Bit 4.2.8: the same config and the same container log files
through both, every record compared field by field.

Fluent Bit runs the config as written (stdout, json_lines); the agent runs its translation (console). The known
differences are normalized here, each by name and nothing else:

- the line's key: Fluent Bit's ``log`` (with Docker's trailing newline) is the agent's ``message`` (without it);
- the tail's own metadata the agent adds: ``file``, ``inode``, ``offset``, ``kubernetes`` (from the file name);
- ``parse_error``: the agent marks a value that did not parse, Fluent Bit passes it unchanged;
- ``_p``: Fluent Bit's CRI partial flag;
- the record's time: Fluent Bit's record timestamp (``date``) is the agent's ``@timestamp`` when a parser read a
  time, else the runtime's ``time`` field (compared to the millisecond);
- with the kubernetes filter: Fluent Bit's ``pod_name``, ``namespace_name``, ``container_name``, ``docker_id``
  are the agent's ``pod``, ``namespace``, ``container``, ``container_id``; Fluent Bit's ``container_hash`` and
  ``pod_ip`` and the agent's ``owner`` are not compared.

The kubernetes scenario runs the example DaemonSet config (../shared/examples/fluent-bit.conf, paths and the API
server pointed at the test's), with the fake API server (tests/fakes/kubernetes.py) serving the pods.

Skipped when ../shared/tools/fluent-bit is absent.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from agent.migrate.fluent_bit import migrate

FLUENT_BIT = Path(os.environ.get("FLUENT_BIT_BIN", Path(__file__).resolve().parents[3] / "shared/tools/fluent-bit"))
pytestmark = pytest.mark.skipif(not FLUENT_BIT.is_file(), reason=f"no Fluent Bit binary at {FLUENT_BIT}")
DEADLINE = 20.0
AGENT_ONLY = ("file", "inode", "offset", "kubernetes")
APP = "app-7d9f_mobius-production_app-" + "a" * 64 + ".log"
WEB = "web-1_mobius-production_web-" + "b" * 64 + ".log"

PARSERS = """\
[PARSER]
    Name         docker
    Format       json
    Time_Key     time
    Time_Format  %Y-%m-%dT%H:%M:%S.%L
    Time_Keep    On

[PARSER]
    Name json_parser
    Format json
    Time_Key timestamp
    Time_Format %Y-%m-%dT%H:%M:%S.%LZ

[PARSER]
    Name mobius_app_parser
    Format regex
    Regex ^(?<timestamp>[^ ]+) (?<level>[^ ]+) \\[(?<service>[^\\]]+)\\] (?<message_text>.*)$
    Time_Key timestamp
    Time_Format %Y-%m-%dT%H:%M:%S.%LZ
    Types pid:integer
"""

HEAD = """\
[SERVICE]
    Flush 1
    Log_Level warn
    Parsers_File parsers.conf
[INPUT]
    Name tail
    Path {logs}/{glob}
    {format}
    Tag kube.*
    Read_from_Head On
"""
TAIL = """\
[OUTPUT]
    Name stdout
    Match kube.*
    Format json_lines
"""

# name, input glob, the tail's format line, filters, how many records Fluent Bit prints
SCENARIOS = [
    ("parser_grep_modify_nest_record_modifier", "*.log", "multiline.parser docker, cri", """\
[FILTER]
    Name parser
    Match kube.*
    Key_Name log
    Parser json_parser
    Reserve_Data On
[FILTER]
    Name grep
    Match kube.*
    Exclude log ^GET /health
    Exclude level ^debug$
[FILTER]
    Name modify
    Match kube.*
    Add cluster_name production
    Rename msg message_text
    Copy level severity
    Set env prod
[FILTER]
    Name nest
    Match kube.*
    Operation lift
    Nested_under user
    Add_prefix user_
[FILTER]
    Name record_modifier
    Match kube.*
    Record hostname node-1
    Remove_key stream
""", 8),
    ("grep_legacy_rules_in_order", "*.log", "multiline.parser docker, cri", """\
[FILTER]
    Name parser
    Match kube.*
    Key_Name log
    Parser json_parser
    Reserve_Data On
[FILTER]
    Name record_modifier
    Match kube.*
    Record stream x
[FILTER]
    Name grep
    Match kube.*
    Exclude log ^GET
    Regex level ^(info|error)$
    Exclude msg boom
""", 2),
    ("regex_parser_with_types_and_nest", APP, "Parser docker", """\
[FILTER]
    Name parser
    Match kube.*
    Key_Name log
    Parser mobius_app_parser
    Reserve_Data On
    Preserve_Key On
[FILTER]
    Name grep
    Match kube.*
    Regex service .
[FILTER]
    Name nest
    Match kube.*
    Operation nest
    Wildcard service
    Wildcard level
    Nest_under app
[FILTER]
    Name modify
    Match kube.*
    Hard_copy message_text original
    Remove stream
""", 2),
]


def _docker(log: str, time_: str, stream: str = "stdout") -> str:
    return json.dumps({"log": log, "stream": stream, "time": time_})


def write_logs(directory: Path) -> None:
    app = [
        _docker(json.dumps({"timestamp": "2024-05-01T12:00:00.123Z", "level": "info", "msg": "hello",
                            "user": {"id": 7, "name": "a"}}) + "\n", "2024-05-01T12:00:00.500000000Z"),
        _docker("GET /health 200\n", "2024-05-01T12:00:01.250000000Z", "stderr"),
        _docker(json.dumps({"timestamp": "2024-05-01T12:00:02.000Z", "level": "debug", "msg": "noisy"}) + "\n",
                "2024-05-01T12:00:02.100000000Z"),
        _docker(json.dumps({"timestamp": "2024-05-01T12:00:03.999Z", "level": "error", "msg": "boom",
                            "cluster_name": "mine"}) + "\n", "2024-05-01T12:00:04.000000000Z"),
        _docker("plain text line\n", "2024-05-01T12:00:05.000000000Z"),
        _docker("2024-05-01T12:00:06.250Z INFO [billing] charged 3 EUR\n", "2024-05-01T12:00:06.300000000Z"),
        _docker("2024-05-01T12:00:07.500Z WARN [billing] card declined\n", "2024-05-01T12:00:07.600000000Z", "stderr"),
    ]
    (directory / APP).write_text("\n".join(app) + "\n")
    web = [
        '2024-05-01T12:00:08.123456789Z stdout F {"level":"warn","msg":"cri json","timestamp":"2024-05-01T12:00:08.100Z"}',
        "2024-05-01T12:00:09.500000000Z stderr F plain cri text",
        "2024-05-01T12:00:10.000000000Z stdout P cri part one ",
        "2024-05-01T12:00:10.100000000Z stdout F cri part two",
        "2024-05-01T12:00:11.000000000Z stdout F GET /health 200",
    ]
    (directory / WEB).write_text("\n".join(web) + "\n")


def _run_until(args: list[str], out: Path, count: int, cwd: Path, stop: int) -> list[dict[str, Any]]:
    """Run ``args`` with stdout in ``out`` until it printed ``count`` JSON lines (and a moment more), then stop it."""
    with open(out, "wb") as stdout, open(cwd / (out.name + ".stderr"), "wb") as stderr:
        proc = subprocess.Popen(args, cwd=cwd, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and len(_records(out)) < count and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(1.5)  # anything past the expected count shows up, and fails the comparison
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    return _records(out)


def _records(path: Path) -> list[dict[str, Any]]:
    lines = path.read_bytes().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.startswith(b"{")]


def _epoch_ms(value: Any) -> int:
    if isinstance(value, int | float):
        return round(value * 1000)
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(value)).replace("Z", "+00:00")
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def fluent_bit_view(record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    record = dict(record)
    stamp = _epoch_ms(record.pop("date"))
    record.pop("_p", None)
    if isinstance(record.get("log"), str):
        record["log"] = record["log"].removesuffix("\n")
    return stamp, record


def agent_view(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    event = {k: v for k, v in event.items() if k not in AGENT_ONLY}
    event.pop("parse_error", None)
    stamp = _epoch_ms(event.pop("@timestamp", None) or event["time"])
    if "message" in event:
        event["log"] = event.pop("message")
    return stamp, event


def _sorted(views: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    return sorted(views, key=lambda view: (view[0], json.dumps(view[1], sort_keys=True)))


@pytest.mark.parametrize(("name", "glob", "fmt", "filters", "count"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_the_translation_turns_the_logs_into_fluent_bits_records(tmp_path: Path, name: str, glob: str, fmt: str,
                                                                  filters: str, count: int) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write_logs(logs)
    (tmp_path / "parsers.conf").write_text(PARSERS)
    conf = tmp_path / "fluent-bit.conf"
    conf.write_text(HEAD.format(logs=logs, glob=glob, format=fmt) + filters + TAIL)

    expected = _run_until([str(FLUENT_BIT), "-q", "-c", str(conf)], tmp_path / "fluent-bit.out", count, tmp_path,
                          signal.SIGTERM)
    assert len(expected) == count, expected

    migration = migrate(str(conf))
    pipeline = yaml.safe_load(migration.text)
    pipeline.update(data_dir=str(tmp_path / "data"), api={"enabled": False})
    (tmp_path / "data").mkdir()
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(pipeline))
    got = _run_until([sys.executable, "-m", "agent", "run", "-c", str(tmp_path / "agent.yaml")],
                     tmp_path / "agent.out", count, tmp_path, signal.SIGINT)

    assert _sorted([agent_view(e) for e in got]) == _sorted([fluent_bit_view(r) for r in expected])


# -- with the kubernetes filter, against the fake API server ------------------------------------------------

K8S_TOKEN = "migrate-token"
FB_K8S_NAMES = {"pod_name": "pod", "namespace_name": "namespace", "container_name": "container",
                "docker_id": "container_id"}


def _pod(name: str, annotations: dict[str, str]) -> dict[str, Any]:
    from fakes.kubernetes import make_pod

    cid = (name.encode().hex() * 64)[:64]
    return make_pod(name, "mobius-production", metadata={"labels": {"app": name}, "annotations": annotations},
                    spec={"nodeName": "node-a", "containers": [{"name": "main", "image": f"img/{name}:1"}]},
                    status={"phase": "Running", "containerStatuses": [
                        {"name": "main", "image": f"img/{name}:1", "containerID": f"containerd://{cid}"}]})


def fluent_bit_kubernetes_view(record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """:func:`fluent_bit_view`, and Fluent Bit's names under ``kubernetes`` as the agent's; ``container_hash``
    (the image digest, which the agent does not write) and ``pod_ip`` dropped."""
    stamp, record = fluent_bit_view(record)
    k8s = {FB_K8S_NAMES.get(k, k): v for k, v in record.pop("kubernetes").items()
           if k not in ("container_hash", "pod_ip")}
    return stamp, {**record, "kubernetes": k8s}


def agent_kubernetes_view(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """:func:`agent_view`, keeping ``kubernetes`` but without ``owner`` (Fluent Bit writes none for a bare pod)."""
    k8s = {k: v for k, v in event["kubernetes"].items() if k != "owner"}
    stamp, event = agent_view(event)
    return stamp, {**event, "kubernetes": k8s}


async def _run_async(args: list[str], out: Path, count: int, stop: int,
                     before: Callable[[], Awaitable[None]] | None = None) -> list[dict[str, Any]]:
    """:func:`_run_until` without blocking the event loop the fake API server runs on; ``before`` is awaited
    once the process started (and before waiting for its records)."""
    with open(out, "wb") as stdout, open(out.with_suffix(".stderr"), "wb") as stderr:
        proc = await asyncio.create_subprocess_exec(*args, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        if before is not None:
            await before()
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and len(_records(out)) < count and proc.returncode is None:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)
    finally:
        if proc.returncode is None:
            proc.send_signal(stop)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    return _records(out)


async def _cached_pods(port: int, pods: int) -> None:
    """Wait (bounded) until the agent's /metrics says its kubernetes cache holds ``pods`` pods."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics",
                                                                 timeout=aiohttp.ClientTimeout(total=1)) as answer:
                page = await answer.text()
            if re.search(rf"^agent_kubernetes_cache_pods{{[^}}]*}} {pods}(\.0)?$", page, re.M):
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"the agent's kubernetes cache did not hold {pods} pods in {DEADLINE}s")


async def test_the_example_with_its_kubernetes_filter_gives_fluent_bits_records(tmp_path: Path, free_port: int
                                                                                 ) -> None:
    from fakes.kubernetes import FakeKubernetes, container_log_name

    example = (Path(__file__).resolve().parents[1] / "unit/examples/fluent-bit.conf").read_text()
    logs = tmp_path / "logs"
    logs.mkdir()
    (tmp_path / "token").write_text(K8S_TOKEN)
    (tmp_path / "ca.crt").write_text("")
    (tmp_path / "parsers.conf").write_text(PARSERS)
    (tmp_path / "custom_parsers.conf").write_text(
        (Path(__file__).resolve().parents[1] / "unit/examples/custom_parsers.conf").read_text())
    async with FakeKubernetes(token=K8S_TOKEN) as k8s:
        api = _pod("api-7d9f", {"team": "core"})
        billing = _pod("billing-1", {"fluentbit.io/parser": "mobius_app_parser"})
        noisy = _pod("noisy-1", {"fluentbit.io/exclude": "true"})
        for pod in (api, billing, noisy):
            k8s.add_pod(pod)

        def write(pod: dict[str, Any], *lines: tuple[str, str]) -> None:
            path = logs / container_log_name(pod, "main")
            path.write_text("".join(_docker(log + "\n", at) + "\n" for log, at in lines))

        write(api, (json.dumps({"level": "info", "msg": "hello", "log": {"inner": 1}}), "2024-05-01T12:00:00.100000000Z"),
              ("plain text line", "2024-05-01T12:00:01.200000000Z"),
              (json.dumps({"level": "error", "msg": "boom", "cluster_name": "mine"}), "2024-05-01T12:00:02.300000000Z"))
        write(billing, ("2024-05-01T12:00:03.250Z INFO [billing] charged 3 EUR", "2024-05-01T12:00:03.300000000Z"),
              ("not the parser's shape", "2024-05-01T12:00:04.000000000Z"))
        write(noisy, ("excluded", "2024-05-01T12:00:05.000000000Z"))

        conf = tmp_path / "fluent-bit.conf"
        conf.write_text(example
                        .replace("Parsers_File parsers.conf", f"Parsers_File {tmp_path / 'parsers.conf'}")
                        .replace("/var/log/containers/*_mobius-production_*.log", f"{logs}/*_mobius-production_*.log")
                        .replace("    Refresh_Interval 5\n", "    Refresh_Interval 1\n    Read_from_Head On\n")
                        .replace("https://kubernetes.default.svc:443", k8s.url)
                        .replace("/var/run/secrets/kubernetes.io/serviceaccount/", f"{tmp_path}/")
                        .replace("kube.var.log.containers.", "kube." + str(logs).strip("/").replace("/", ".") + ".")
                        .replace("    Flush 5\n", "    Flush 1\n    Log_Level warn\n")
                        .replace("    HTTP_Server On\n", "    HTTP_Server Off\n")
                        .replace("    K8S-Logging.Exclude On\n", "    K8S-Logging.Exclude On\n    Use_Kubelet Off\n")
                        .split("[OUTPUT]")[0] + TAIL)
        expected = await _run_async([str(FLUENT_BIT), "-q", "-c", str(conf)], tmp_path / "fluent-bit.out", 5,
                                    signal.SIGTERM)
        assert len(expected) == 5, expected

        migration = migrate(str(conf))
        assert [why.split()[0] for _, _, why in migration.left_out] == ["Kube_URL", "Kube_CA_File", "Kube_Token_File"]
        pipeline = yaml.safe_load(migration.text)
        pipeline.update(data_dir=str(tmp_path / "data"), api={"address": f"127.0.0.1:{free_port}"})
        (tmp_path / "kubeconfig").write_text(json.dumps({
            "current-context": "fake", "contexts": [{"name": "fake", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": {"server": k8s.url}}],
            "users": [{"name": "u", "user": {"token": K8S_TOKEN}}]}))
        # the one adjustment: the fake API server through a kubeconfig (what the Kube_URL note asks for)
        pipeline["transforms"]["kubernetes"].update(kubeconfig=str(tmp_path / "kubeconfig"), node_name="node-a")
        (tmp_path / "data").mkdir()
        (tmp_path / "agent.yaml").write_text(yaml.safe_dump(pipeline))
        # Lines read before the cache's first list has come back pass without metadata (api_unavailable), where
        # Fluent Bit waits on a GET per pod: the files appear once the cache holds the pods (a running node).
        hidden = [path.rename(path.with_suffix(".hidden")) for path in logs.glob("*.log")]

        async def show_the_logs() -> None:
            await _cached_pods(free_port, 3)
            for path in hidden:
                path.rename(path.with_suffix(".log"))

        got = await _run_async([sys.executable, "-m", "agent", "run", "-c", str(tmp_path / "agent.yaml")],
                               tmp_path / "agent.out", 5, signal.SIGINT, show_the_logs)

    assert _sorted([agent_kubernetes_view(e) for e in got]) == _sorted([fluent_bit_kubernetes_view(r)
                                                                         for r in expected])
