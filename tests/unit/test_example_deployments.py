"""The deployments of ../shared/examples as agent pipelines (pipelines/<name>.yaml), run on sample input.

Each pipeline runs in-process as written, with only its edges swapped for the test: a tail's globs point into a
copy of tests/data/pipelines/<name>/ (which mirrors the absolute paths the pipeline reads) and read from the
beginning; a socket source listens on a free port of 127.0.0.1; every sink becomes a `file` sink keeping its
inputs, whose path is the Elasticsearch index template when the sink had one (the `file` sink names files by
the event's time, as Elasticsearch picks indices). The records each output received are compared field by field
with tests/data/pipelines/<name>.expected.json, written by hand from what the original deployment would produce.
kubernetes-daemonset.yaml's `kubernetes` stage asks the fake API server (tests/fakes/kubernetes.py) for its pods.

metrics.yaml scrapes a fake exporter per target (tests/fakes/exporter.py) and remote-writes into the fake
receiver (tests/fakes/remote_write.py), its intervals and timeouts divided by SCALE.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import platform
import shutil
import socket
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from helpers import wait_for

from agent.config.pipeline import load_texts
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "pipelines"
NODE_NAME = "vm-insights-01"


def for_test(path: Path, root: Path, port: int, transforms: dict[str, dict[str, Any]] | None = None
             ) -> tuple[str, list[str]]:
    """The pipeline's text with its edges swapped as the module docstring says (and `transforms` merged into
    the transforms of those ids), and the ids of its sinks."""
    config = yaml.safe_load(path.read_text())
    for transform_id, settings in (transforms or {}).items():
        config["transforms"][transform_id].update(settings)
    config.update(data_dir=str(root / "data"), api={"enabled": False}, shutdown_timeout="5s")
    for source in config["sources"].values():
        if source["type"] == "tail":
            source["include"] = [f"{root}/in{glob}" for glob in source["include"]]
            source["exclude"] = [f"{root}/in{glob}" for glob in source.get("exclude", [])]
            source.update(read_from="beginning", glob_interval="50ms", poll_interval="20ms")
            if "multiline" in source:
                source["multiline"]["timeout"] = "200ms"  # the last group of a file waits this long
        elif source["type"] == "socket":
            source["address"] = f"127.0.0.1:{port}"
    for sink_id, sink in list(config["sinks"].items()):
        name = sink.get("index", "events")
        config["sinks"][sink_id] = {"type": "file", "inputs": sink["inputs"], "path": f"{root}/out/{sink_id}/{name}"}
    return yaml.safe_dump(config), list(config["sinks"])


def outputs(root: Path) -> dict[str, list[dict[str, Any]]]:
    """What each output file holds, by its path under out/, with the test's directory taken out of values."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((root / "out").rglob("*")):
        if path.is_file():
            text = path.read_text().replace(f"{root}/in", "")
            found[str(path.relative_to(root / "out"))] = [orjson.loads(line) for line in text.splitlines()]
    return found


def stable(record: dict[str, Any]) -> dict[str, Any]:
    """A record with what differs between hosts and runs checked here and taken out: the inode, and the host."""
    record = dict(record)
    if "inode" in record:
        assert isinstance(record.pop("inode"), int)
    if "host" in record:
        host = record.pop("host")
        assert host["name"] == NODE_NAME and host["hostname"] == socket.gethostname()
        assert host["architecture"] == platform.machine()
    return record


def read_expected(path: Path) -> dict[str, list[Any]]:
    """The expected records by output; an output given as "every record of <prefix>" holds what the outputs
    under that prefix hold (two sinks fed by one stage)."""
    expected = orjson.loads(path.read_bytes())
    for output, records in expected.items():
        if isinstance(records, str):
            prefix = records.removeprefix("every record of ")
            expected[output] = [r for name, rs in expected.items() if name.startswith(prefix) for r in rs]
    return expected


async def run_deployment(name: str, tmp_path: Path, port: int, beats: bytes = b"",
                         transforms: dict[str, dict[str, Any]] | None = None) -> dict[str, list[Any]]:
    """Runs pipelines/<name>.yaml on its sample input until every expected record is out."""
    expected = read_expected(DATA / f"{name}.expected.json")
    shutil.copytree(DATA / name, tmp_path / "in")
    text, _ = for_test(ROOT / "pipelines" / f"{name}.yaml", tmp_path, port, transforms)
    topo = Topology(load_texts([(text, f"{name}.yaml")]), StatsRegistry())
    task = asyncio.create_task(topo.run())
    try:
        await asyncio.wait_for(topo.ready.wait(), 10)
        if beats:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(beats)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        total = sum(len(records) for records in expected.values())
        await wait_for(lambda: sum(len(r) for r in outputs(tmp_path).values()) >= total, timeout=15)
        await asyncio.sleep(0.3)  # anything more than expected would show up now
    finally:
        topo.request_stop()
        assert await asyncio.wait_for(task, 10) == 0
    return expected


def assert_outputs(expected: dict[str, list[Any]], root: Path) -> None:
    got = outputs(root)
    assert sorted(got) == sorted(expected)
    for output, records in expected.items():
        key = lambda record: orjson.dumps(record, option=orjson.OPT_SORT_KEYS)  # noqa: E731
        assert sorted((stable(r) for r in got[output]), key=key) == sorted(records, key=key), output


K8S_TOKEN = "daemonset-token"


def mobius_pod(name: str, container: str, container_id: str, labels: dict[str, str],
               annotations: dict[str, str]) -> dict[str, Any]:
    """A running pod of mobius-production on node-a, as the API serves it (one container, a ReplicaSet owner)."""
    from fakes.kubernetes import make_pod

    image = f"registry.example.com/mobius/{container}:1.4.2"
    return make_pod(name, "mobius-production", node="node-a",
                    metadata={"labels": labels, "annotations": annotations, "ownerReferences": [
                        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name.rsplit("-", 1)[0],
                         "uid": f"uid-rs-{name}", "controller": True}]},
                    spec={"nodeName": "node-a", "containers": [{"name": container, "image": image}]},
                    status={"phase": "Running", "podIP": "10.42.0.7", "hostIP": "192.168.0.1", "containerStatuses": [
                        {"name": container, "image": image, "containerID": f"containerd://{container_id}"}]})


async def test_kubernetes_daemonset(tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """kubernetes-daemonset.yaml (`agent migrate fluent-bit` of fluent-bit.conf) with its pods served by the fake
    API server: pod metadata from the API, Merge_Log with Keep_Log Off, K8S-Logging.Parser (the worker's
    fluentbit.io/parser annotation) and K8S-Logging.Exclude (the debug pod), nest lift, modify add, the daily
    index by the event's time, and the same records to Datadog; kube-system and other namespaces not read."""
    from fakes.kubernetes import FakeKubernetes

    monkeypatch.setenv("AGENT_API_TOKEN", "secret")
    monkeypatch.setenv("DD_API_KEY", "secret")
    async with FakeKubernetes(token=K8S_TOKEN) as k8s:
        k8s.add_pod(mobius_pod("mobius-api-7d9f6c5b4-x2k8p", "api", "3f2a9c1e" * 8,
                               {"app": "mobius-api", "pod-template-hash": "7d9f6c5b4"}, {"team": "checkout"}))
        k8s.add_pod(mobius_pod("mobius-worker-5c8d7f9b6-q4wzn", "worker", "b71d04e6" * 8,
                               {"app": "mobius-worker", "pod-template-hash": "5c8d7f9b6"}, {"fluentbit.io/parser": "mobius_app_parser"}))
        k8s.add_pod(mobius_pod("mobius-debug-6c4f8d7b5-z9r2t", "debug", "5e6f7a8b" * 8,
                               {"app": "mobius-debug"}, {"fluentbit.io/exclude": "true"}))
        kubeconfig = tmp_path / "kubeconfig"  # the fake API server in place of the in-cluster one
        kubeconfig.write_text(orjson.dumps({
            "current-context": "fake", "contexts": [{"name": "fake", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": {"server": k8s.url}}],
            "users": [{"name": "u", "user": {"token": K8S_TOKEN}}]}).decode())
        expected = await run_deployment("kubernetes-daemonset", tmp_path, free_port, transforms={
            "kubernetes": {"kubeconfig": str(kubeconfig), "node_name": "node-a"}})
    assert_outputs(expected, tmp_path)


async def test_filebeat_vm_shipper(tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", NODE_NAME)
    expected = await run_deployment("vm-filebeat", tmp_path, free_port)
    assert all("host" in record for record in outputs(tmp_path)["logstash/events"])  # add_host_metadata
    assert_outputs(expected, tmp_path)


async def test_logstash_central_tier(tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both Logstash configs as one tier: the insights shippers' events (vm-filebeat.yaml's, with `type` at the
    top level) and the universal ones (Filebeat's `fields`) on one listener, each through its own filters."""
    monkeypatch.delenv("ENVIRONMENT", raising=False)  # ${ENVIRONMENT:production}: its default
    beats = (DATA / "logstash-central.beats.ndjson").read_bytes()  # what both kinds of shipper send
    expected = await run_deployment("logstash-central", tmp_path, free_port, beats)
    assert_outputs(expected, tmp_path)


# -- metrics.yaml: every job against its own fake exporter, into a fake remote-write receiver ---------------

SCALE = 50  # every interval and timeout of the pipeline divided by this: 15s -> 300ms, 30s -> 600ms
PASSWORD = "first-s3cret"
ROTATED = "rotated-s3cret"


def basic_auth(password: str) -> str:
    return "Basic " + base64.b64encode(f"insights-prod:{password}".encode()).decode()


def scaled(duration: str) -> str:
    seconds = float(duration.removesuffix("s"))
    return f"{round(seconds * 1000 / SCALE)}ms"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def test_metrics_jobs_resolve_to_their_intervals_and_timeouts() -> None:
    """As configured: the per-job interval where prometheus.yml gives one, else the global 15s; timeout 10s."""
    from agent.prometheus.targets import job_interval_timeout

    source = load_texts([((ROOT / "pipelines" / "metrics.yaml").read_text(), "metrics.yaml")]).components["prometheus"]
    resolved = {job.job_name: job_interval_timeout(job, source.config.global_) for job in source.config.scrape_configs}
    assert resolved == {"insights-app": (15, 10), "node": (15, 10), "postgres": (30, 10), "redis": (15, 10),
                        "nginx": (15, 10), "insights-health": (30, 10)}


async def test_metrics_pipeline_scrapes_every_job_and_remote_writes_with_basic_auth(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Each job's targets scraped at its path and interval, their series labelled with job, instance and the
    external labels (a label an exporter set is kept), written with the basic-auth header from the password
    file, read again once it changes, and never logged."""
    caplog.set_level(logging.DEBUG)
    from fakes.exporter import FakeExporter
    from fakes.remote_write import FakeRemoteWrite

    config = yaml.safe_load((ROOT / "pipelines" / "metrics.yaml").read_text())
    source = config["sources"]["prometheus"]
    source["global"] = {key: scaled(value) if key.startswith("scrape_") else value
                        for key, value in source["global"].items()}
    exporters: dict[str, FakeExporter] = {}  # original target -> its fake
    jobs: dict[str, tuple[str, float, list[str]]] = {}  # job -> (metrics path, scaled interval s, its targets)
    async with contextlib.AsyncExitStack() as stack:
        for job in source["scrape_configs"]:
            for key in ("scrape_interval", "scrape_timeout"):
                if key in job:
                    job[key] = scaled(job[key])
            path = job.get("metrics_path", "/metrics")
            interval = job.get("scrape_interval") or source["global"]["scrape_interval"]
            originals = [target for group in job["static_configs"] for target in group["targets"]]
            jobs[job["job_name"]] = (path, float(interval.removesuffix("ms")) / 1000, originals)
            for group in job["static_configs"]:
                fakes = []
                for target in group["targets"]:
                    exporter = await stack.enter_async_context(FakeExporter())
                    exporter.serve(path, f'# TYPE exporter_info gauge\nexporter_info{{original="{target}"}} 1\n'
                                         f'# TYPE exporter_cluster gauge\nexporter_cluster{{cluster="own"}} 1\n')
                    exporters[target] = exporter
                    fakes.append(exporter.base.removeprefix("http://"))
                group["targets"] = fakes
        receiver = await stack.enter_async_context(FakeRemoteWrite())
        (tmp_path / "password").write_text(PASSWORD)
        sink = config["sinks"]["remote_write"]
        sink.update(url=receiver.write_url, queue_config={"batch_send_deadline": "100ms"})
        sink["basic_auth"]["password_file"] = str(tmp_path / "password")
        config.update(data_dir=str(tmp_path / "data"), api={"enabled": False}, shutdown_timeout="5s")

        def ups() -> dict[str, list[int]]:
            """The timestamps of each target's `up` samples, by instance."""
            found: dict[str, list[int]] = {}
            for labels, value, at in receiver.samples_of("up"):
                assert value == 1, labels
                found.setdefault(labels["instance"], []).append(at)
            return found

        def enough() -> bool:
            seen = ups()
            return all(len(seen.get(e.base.removeprefix("http://"), ())) >= 4 for e in exporters.values())

        topo = Topology(load_texts([(yaml.safe_dump(config), "metrics.yaml")]), StatsRegistry())
        task = asyncio.create_task(topo.run())
        try:
            await wait_for(enough, timeout=15)
            first_writes = len(receiver.requests)
            (tmp_path / "password").write_text(ROTATED)  # rotated: the next writes use the new one
            await wait_for(lambda: any(r.headers.get("authorization") == basic_auth(ROTATED)
                                       for r in receiver.requests[first_writes:]), timeout=5)
        finally:
            topo.request_stop()
            assert await asyncio.wait_for(task, 10) == 0

    assert receiver.violations == []
    # every write carries the basic-auth header made from the password file: the first one, then the rotated
    writes = [r.headers.get("authorization") for r in receiver.requests if r.path == "/api/v1/write"]
    assert writes[0] == basic_auth(PASSWORD) and writes[-1] == basic_auth(ROTATED)
    assert set(writes) == {basic_auth(PASSWORD), basic_auth(ROTATED)}
    assert PASSWORD not in caplog.text and ROTATED not in caplog.text
    # every series has the external labels, but a label the exporter set stays the exporter's
    for labels, _ in receiver.series:
        cluster = "own" if ("__name__", "exporter_cluster") in labels else "insights-prod"
        assert {("cluster", cluster), ("environment", "production")} <= set(labels), labels
    seen = ups()
    for job_name, (path, interval, originals) in jobs.items():
        for original in originals:
            exporter = exporters[original]
            instance = exporter.base.removeprefix("http://")
            # scraped at the job's metrics path only, with the job's timeout announced
            assert {p for p, _ in exporter.requests} == {path}, job_name
            assert {h["x-prometheus-scrape-timeout-seconds"] for _, h in exporter.requests} == {"0.2"}
            # the exporter's series arrive labelled with the job and the target's address
            info = [labels for labels, _, _ in receiver.samples_of("exporter_info") if labels["original"] == original]
            assert info and all((lb["job"], lb["instance"]) == (job_name, instance) for lb in info), original
            # up, every interval of the job (the median gap between scrapes, within a quarter of it)
            stamps = sorted(seen[instance])
            gap = median([b - a for a, b in itertools.pairwise(stamps)]) / 1000
            assert abs(gap - interval) <= interval / 4, (job_name, gap, interval)
