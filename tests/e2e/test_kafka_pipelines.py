"""pipelines/edge-kafka.yaml and pipelines/aggregator-kafka.yaml run on sample input, in-process, as written but
for their edges: the edge tails kubelet-named container logs in tmp, asks the fake API server
(tests/fakes/kubernetes.py) for its pods through a kubeconfig, and produces into a real tansu broker (the `kafka`
fixture); the aggregator reads that topic and delivers to the fake Elasticsearch (tests/fakes/elasticsearch.py).
`sasl` and `tls` are taken out of both Kafka stages because tansu does neither; the API server is off, and
data_dir and the dead letters point into tmp.

Each claim of the two files' comments is checked on what came out: every line in Elasticsearch with its pod's
metadata, the app's JSON parsed (or the line kept, marked parse_error) and the aggregator's fields added; one
pod's lines on one partition (Java's murmur2 of namespace/pod) at offsets in line order, with the tail's file,
inode, offset and time in each record; the `_id`s those file positions give (`id: auto`), so that lines read
twice on either side collapse in Elasticsearch: the edge runs a second time without its checkpoints (a crash
before it committed) and the aggregator delivers the topic twice (a second consumer group, as a replica taking
over an uncommitted tail would), and every document is overwritten, none added.

The `kafka` fixture's tansu answers each JoinGroup and SyncGroup after about 3 s (longer with the pipeline's
session_timeout of 30s, hence 3s here): 7 s an aggregator run.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2
from fakes.elasticsearch import FakeElasticsearch
from fakes.kubernetes import FakeKubernetes, make_pod
from helpers import wait_for
from peers.kafka import Tansu

from agent.config.pipeline import load_texts
from agent.observe.stats import StatsRegistry
from agent.sinks.elasticsearch.encoder import auto_ids
from agent.topology.running import Topology

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "container-logs"
PARTITIONS = 4
K8S_TOKEN = "edge-token"
NODE = "node-a"

# pod (namespace, name, container, container id, file format) -> the app's lines, in the order it wrote them
PODS: dict[tuple[str, str, str, str, str], list[str]] = {
    ("shop", "cart-7d9f6c5b4-x2k8p", "cart", "c1" * 32, "docker"): [
        '{"level":"info","msg":"cart created","cart_id":"c-1"}',
        '{"level":"info","msg":"item added","cart_id":"c-1","sku":"sku-9"}',
        "GET /healthz 200",
        '{"level":"warn","msg":"slow price lookup","duration_ms":812}',
        '{"level":"info","msg":"cart checked out","cart_id":"c-1"}',
    ],
    ("shop", "checkout-5c8d7f9b6-q4wzn", "checkout", "c2" * 32, "cri"): [
        '{"level":"info","msg":"payment authorised","order_id":"o-1001"}',
        "panic: runtime error: index out of range",
        '{"level":"error","msg":"retrying payment","order_id":"o-1002","attempt":2}',
        '{"level":"info","msg":"payment authorised","order_id":"o-1002"}',
    ],
    ("payments", "ledger-6c4f8d7b5-z9r2t", "ledger", "c3" * 32, "cri"): [
        '{"level":"info","msg":"entry booked","entry":1}',
        '{"level":"info","msg":"entry booked","entry":2}',
        '{"level":"info","msg":"entry booked","entry":3}',
    ],
    ("kube-system", "coredns-5d78c9869d-7xkqp", "coredns", "c4" * 32, "docker"): [
        "[INFO] plugin/reload: Running configuration",  # exclude: kube-system is not read
    ],
}


def write_logs(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """The container log files as the kubelet names them; by file path, each line's offset, time and text."""
    directory.mkdir(parents=True)
    lines: dict[str, list[dict[str, Any]]] = {}
    for n, ((namespace, pod, container, container_id, fmt), texts) in enumerate(PODS.items()):
        path = directory / f"{pod}_{namespace}_{container}-{container_id}.log"
        data, written = b"", []
        for i, text in enumerate(texts):
            stamp = f"2026-11-22T17:0{n}:{i:02d}.123456789Z"
            if fmt == "docker":
                line = orjson.dumps({"log": text + "\n", "stream": "stdout", "time": stamp}) + b"\n"
            else:
                line = f"{stamp} stdout F {text}\n".encode()
            written.append({"offset": len(data), "time": stamp, "message": text, "key": f"{namespace}/{pod}"})
            data += line
        path.write_bytes(data)
        lines[str(path)] = written
    return lines


def adapted(name: str, data_dir: Path, changes: dict[str, dict[str, Any]]) -> str:
    """pipelines/<name>.yaml with the test's edges: `changes` merged into the components of those ids, sasl
    and tls taken out of Kafka stages (tansu does neither), the API off and data_dir in tmp."""
    config = yaml.safe_load((ROOT / "pipelines" / name).read_text())
    config.update(data_dir=str(data_dir), api={"enabled": False}, shutdown_timeout="5s")
    for section in ("sources", "transforms", "sinks"):
        for component_id, component in config.get(section, {}).items():
            if component["type"] == "kafka":
                assert component.pop("sasl") and component.pop("tls") == {}
            component.update(changes.get(component_id, {}))
    return yaml.safe_dump(config)


async def run_until(text: str, name: str, done: Any, timeout: float = 20) -> None:
    """Runs a pipeline until `done()` holds, then stops it (it must end cleanly)."""
    topo = Topology(load_texts([(text, name)]), StatsRegistry())
    task = asyncio.create_task(topo.run())
    try:
        await asyncio.wait_for(topo.ready.wait(), 10)
        await wait_for(done, timeout)
    finally:
        topo.request_stop()
        assert await asyncio.wait_for(task, 15) == 0


async def read_topic(bootstrap: str, records: list[Any]) -> None:
    """Appends every record of the topic to `records`, read from the start without a group, until cancelled.
    (Not end_offsets: tansu answers ListOffsets with one past the last batch's base offset.)"""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        while True:
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                records.extend(batch)
    finally:
        await consumer.stop()


def pod_object(namespace: str, name: str, container: str, container_id: str) -> dict[str, Any]:
    image = f"registry.example.com/{container}:2.0.1"
    return make_pod(name, namespace, node=NODE,
                    metadata={"labels": {"app": container, "pod-template-hash": name.split("-")[1]}, "ownerReferences": [
                        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name.rsplit("-", 1)[0],
                         "uid": f"uid-rs-{name}", "controller": True}]},
                    spec={"nodeName": NODE, "containers": [{"name": container, "image": image}]},
                    status={"phase": "Running", "podIP": "10.42.0.9", "hostIP": "192.168.0.1", "containerStatuses": [
                        {"name": container, "image": image, "containerID": f"containerd://{container_id}"}]})


@pytest.mark.slow  # two consumer groups joining tansu: 17 s (module docstring)
async def test_edge_to_kafka_to_aggregator_to_elasticsearch(
        kafka: Tansu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in {"AGENT_API_TOKEN": "secret", "KAFKA_PASSWORD": "secret", "HOSTNAME": "aggregator-0"}.items():
        monkeypatch.setenv(var, value)
    kafka.create_topic(TOPIC, partitions=PARTITIONS)  # before the first produce: tansu breaks on a re-create
    lines = write_logs(tmp_path / "var" / "log" / "containers")
    read = {path: entries for path, entries in lines.items() if "_kube-system_" not in path}
    total = sum(len(entries) for entries in read.values())

    # -- the edge: tail -> kubernetes (fake API server) -> kafka ------------------------------------------
    async with FakeKubernetes(token=K8S_TOKEN) as k8s:
        for namespace, pod, container, container_id, _ in PODS:
            k8s.add_pod(pod_object(namespace, pod, container, container_id))
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(orjson.dumps({
            "current-context": "fake", "contexts": [{"name": "fake", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": {"server": k8s.url}}],
            "users": [{"name": "u", "user": {"token": K8S_TOKEN}}]}).decode())
        changes: dict[str, dict[str, Any]] = {
            "containers": {"include": [f"{tmp_path}/var/log/containers/*.log"],
                           "exclude": [f"{tmp_path}/var/log/containers/*_kube-system_*.log"],
                           "read_from": "beginning", "glob_interval": "50ms", "poll_interval": "20ms"},
            "kubernetes": {"kubeconfig": str(kubeconfig), "node_name": NODE},
            "kafka": {"bootstrap_servers": [kafka.bootstrap],
                      "dead_letter": {"path": str(tmp_path / "kafka-rejected.ndjson")}}}
        records: list[Any] = []
        reading = asyncio.create_task(read_topic(kafka.bootstrap, records))
        try:
            await run_until(adapted("edge-kafka.yaml", tmp_path / "edge", changes), "edge-kafka.yaml",
                            lambda: len(records) >= total)
            # the edge again without its checkpoints (a crash before it committed): every line sent twice
            await run_until(adapted("edge-kafka.yaml", tmp_path / "edge-restarted", changes), "edge-kafka.yaml",
                            lambda: len(records) >= 2 * total)
            await asyncio.sleep(0.5)  # anything more than the lines would show up now
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)

    # one pod, one partition (the Java client's murmur2 of namespace/pod), its lines at offsets in line order
    assert len(records) == 2 * total
    by_key: dict[str, list[Any]] = {}
    for record in records:
        by_key.setdefault(record.key.decode(), []).append(record)
    assert set(by_key) == {entries[0]["key"] for entries in read.values()}  # kube-system's file not read
    for path, entries in read.items():
        key = entries[0]["key"]
        on_topic = sorted(by_key[key], key=lambda r: r.offset)
        assert {r.partition for r in on_topic} == {(murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS}
        values = [orjson.loads(r.value) for r in on_topic]  # encoding: json
        inode = os.stat(path).st_ino
        assert [(v["file"], v["inode"], v["offset"], v["time"], v["message"]) for v in values] == 2 * [
            (path, inode, e["offset"], e["time"], e["message"]) for e in entries]
    assert len({r.partition for r in records}) > 1  # the pods spread (else the check above proves little)

    # -- the aggregator: kafka -> parse -> modify -> elasticsearch, twice over the same records ----------
    async with FakeElasticsearch() as es:
        def aggregator(group: str) -> str:
            return adapted("aggregator-kafka.yaml", tmp_path / "aggregator", {
                "edge": {"bootstrap_servers": [kafka.bootstrap], "group_id": group, "session_timeout": "3s",
                         "heartbeat_interval": "0.5s"},  # not 30s: tansu holds each join longer then
                "elasticsearch": {"endpoints": [es.url],
                                  "dead_letter": {"path": str(tmp_path / "elasticsearch-rejected.ndjson")}}})

        writes = lambda: sum(d["_version"] for d in es.documents())  # noqa: E731  (an overwrite adds a version)
        await run_until(aggregator("log-aggregators"), "aggregator-kafka.yaml", lambda: writes() >= 2 * total)
        await asyncio.sleep(0.3)
        assert es.count() == total  # the edge's replay collapsed
        # a second group reads the topic again from the start (auto_offset_reset: earliest): an aggregator's replay
        await run_until(aggregator("log-aggregators-replay"), "aggregator-kafka.yaml", lambda: writes() >= 4 * total)
        await asyncio.sleep(0.3)
        documents = es.documents()
    assert len(documents) == total  # no duplicate
    assert all(d["_version"] == 4 for d in documents)  # each written by both runs of both groups

    by_id = {d["_id"]: d for d in documents}
    for namespace, pod, container, container_id, _ in PODS:
        if namespace == "kube-system":
            continue
        path = next(p for p in read if f"/{pod}_" in p)
        inode = os.stat(path).st_ino
        for entry in read[path]:
            # the _id the edge itself would give: from the tail's file, inode, offset and time
            [raw_id] = auto_ids([{"file": path, "inode": inode, "offset": entry["offset"], "time": entry["time"]}])
            assert raw_id is not None
            document = by_id[raw_id.decode()]
            assert document["_index"] == "logs-2026.11.22"
            source = document["_source"]
            expected: dict[str, Any] = {
                "file": path, "inode": inode, "offset": entry["offset"], "time": entry["time"], "stream": "stdout",
                "@timestamp": entry["time"],  # the sink sets it from the event's time
                "cluster": "production", "tier": "aggregator"}
            app = entry["message"]
            if app.startswith("{"):  # the app's JSON in place of the line
                expected.update(orjson.loads(app))
            else:  # on_error: keep: the line as it was, marked
                assert isinstance(source.get("parse_error"), str), source
                expected.update(message=app, parse_error=source["parse_error"])
            expected["kubernetes"] = {
                "pod": pod, "namespace": namespace, "pod_id": f"uid-{namespace}-{pod}",
                "labels": {"app": container, "pod-template-hash": pod.split("-")[1]},
                "host": NODE, "container": container, "container_id": container_id,
                "container_image": f"registry.example.com/{container}:2.0.1",
                "owner": {"kind": "Deployment", "name": pod.rsplit("-", 2)[0]}}
            assert source == expected
