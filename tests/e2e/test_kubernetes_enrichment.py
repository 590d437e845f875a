"""Scenarios of the `kubernetes` transform in a running pipeline: tail of files named like
/var/log/containers/ (in tmp_path) -> kubernetes -> a collecting sink, against the fake API server.

Each test shares the pod watch with the transform the way components do (``shared_pod_watcher``, entered first,
with a short backoff so that recovery takes a fraction of a second, not up to 30)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from components import GateSink
from fakes.kubernetes import FakeKubernetes, container_log_name, make_pod
from helpers import pipeline, wait_for

from agent.core.retry import Backoff
from agent.kubernetes.config import from_kubeconfig
from agent.kubernetes.pods import PodWatcher, shared_pod_watcher
from agent.observe.stats import StatsRegistry
from agent.topology.running import Topology
from agent.transforms.kubernetes import KubernetesTransform

TOKEN = "secret-token"


def container_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def simple_pod(name: str, namespace: str = "default", labels: dict[str, str] | None = None,
               annotations: dict[str, str] | None = None, containers: tuple[str, ...] = ("main",)) -> dict[str, Any]:
    return make_pod(name, namespace, metadata={"labels": labels or {"app": name}, "annotations": annotations or {}},
                    spec={"nodeName": "node-a", "containers": [{"name": c, "image": f"img/{c}"} for c in containers]},
                    status={"phase": "Running", "containerStatuses": [
                        {"name": c, "image": f"img/{c}:1", "containerID": f"containerd://{container_id(name + c)}"}
                        for c in containers]})


def docker_lines(*messages: str) -> bytes:
    return b"".join(orjson.dumps({"log": m + "\n", "stream": "stdout", "time": "2026-12-05T10:00:00.000000001Z"})
                    + b"\n" for m in messages)


def write(path: Path, *messages: str) -> None:
    with path.open("ab") as f:
        f.write(docker_lines(*messages))


class Node:
    """A node's log directory, a kubeconfig for the fake, and the pipeline running over them."""

    def __init__(self, tmp_path: Path, k8s: FakeKubernetes, token_file: bool = False) -> None:
        self.tmp = tmp_path
        self.k8s = k8s
        self.logs = tmp_path / "containers"
        self.logs.mkdir()
        user: dict[str, str] = {"tokenFile": "token"} if token_file else {"token": TOKEN}
        (tmp_path / "token").write_text(TOKEN + "\n")
        self.kubeconfig = tmp_path / "kubeconfig"
        self.kubeconfig.write_text(orjson.dumps({
            "current-context": "fake", "contexts": [{"name": "fake", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": {"server": k8s.url}}],
            "users": [{"name": "u", "user": user}]}).decode())
        self.topo: Topology | None = None
        self.downstream = "sinks:\n  out: {type: test_gate, inputs: [k8s], open: true}\n"  # what reads k8s

    def file(self, pod: dict[str, Any], container: str = "main") -> Path:
        return self.logs / container_log_name(pod, container)

    def text(self, **options: Any) -> str:
        settings = {"kubeconfig": str(self.kubeconfig), "node_name": "node-a", "wait_for_pod": "1s", **options}
        return f"""
sources:
  containers: {{type: tail, include: ["{self.logs}/*.log"], read_from: beginning, glob_interval: 50ms,
               poll_interval: 50ms, rotate_wait: 100ms}}
transforms:
  k8s: {orjson.dumps({"type": "kubernetes", "inputs": ["containers"], **settings}).decode()}
{self.downstream}"""

    @contextlib.asynccontextmanager
    async def running(self, backoff: Backoff | None = None, **options: Any) -> AsyncIterator[Topology]:
        text = self.text(**options)
        cluster = from_kubeconfig(self.kubeconfig)
        async with shared_pod_watcher(cluster, "node-a", backoff=backoff or Backoff(initial=0.05, cap=0.2)):
            topo = self.topo = Topology(pipeline(text, self.tmp), StatsRegistry())
            run = asyncio.create_task(topo.run())
            try:
                await asyncio.wait_for(topo.ready.wait(), 5)
                await wait_for(lambda: self.pods.synced.is_set())
                yield topo
            finally:
                topo.request_stop()
                assert await asyncio.wait_for(run, 10) == 0

    @property
    def transform(self) -> KubernetesTransform:
        assert self.topo is not None
        component = self.topo.nodes["k8s"].component
        assert isinstance(component, KubernetesTransform)
        return component

    @property
    def pods(self) -> PodWatcher:
        pods = self.transform.pods
        assert pods is not None
        return pods

    @property
    def events(self) -> list[dict[str, Any]]:
        return GateSink.instances["out"].events  # type: ignore[return-value]

    def misses(self) -> dict[str, int]:
        return {dict(labels)["reason"]: n for (name, labels), n in self.transform.stats.counters.items()
                if name == "metadata_misses" and n}

    def of(self, pod: dict[str, Any]) -> list[dict[str, Any]]:
        name = pod["metadata"]["name"]
        return [e for e in self.events if e["kubernetes"]["pod"] == name]


@contextlib.asynccontextmanager
async def node(tmp_path: Path, token_file: bool = False) -> AsyncIterator[Node]:
    async with FakeKubernetes(token=TOKEN) as k8s:
        yield Node(tmp_path, k8s, token_file)


async def test_110_pods_with_churn_every_line_enriched_from_one_list_and_a_few_watches(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        stable = n.k8s.populate(110)
        files = [n.file(pod, s["name"]) for pod in stable for s in pod["status"]["containerStatuses"]]
        async with n.running(deleted_pod_grace="2s"):  # covers a loaded host's delay before the tail opens a file
            assert n.pods.size() == 110
            cache_bytes = n.transform.stats.gauge_values()["cache_bytes"]
            print(f"cache: {n.pods.size()} pods, {cache_bytes:.0f} bytes")
            assert 0 < cache_bytes < 10 * 1024 * 1024 / 4  # reported, and well under 10 MB
            written = 0
            churned: list[Path] = []
            for round_ in range(20):  # 1,000 pods created, logging and deleted, 50 at a time
                batch = [simple_pod(f"churn-{round_}-{i}", labels={"app": "churn", "round": str(round_)})
                         for i in range(50)]
                for i, pod in enumerate(batch):
                    if i % 2 == 0:
                        n.k8s.add_pod(pod)  # half are in the API before their first line ...
                for pod in batch:
                    write(n.file(pod), f"{pod['metadata']['name']} starting", "working", "done")
                for i, pod in enumerate(batch):
                    if i % 2:
                        n.k8s.add_pod(pod)  # ... half after it
                for path in files:
                    write(path, f"steady {round_}")
                written += 3 * len(batch) + len(files)
                for pod in batch:
                    n.k8s.delete_pod("default", pod["metadata"]["name"])  # gone while its lines are unread
                for path in churned:  # the kubelet removes the files of pods deleted a round ago
                    path.unlink()
                churned = [n.file(pod) for pod in batch]
                await wait_for(lambda expected=written: len(n.events) >= expected, timeout=20)  # type: ignore[misc]
            assert len(n.events) == written
            unenriched = [e for e in n.events if "pod_id" not in e["kubernetes"]]
            assert unenriched == [] and n.misses() == {}
            churn = [e for e in n.events if e["kubernetes"].get("labels", {}).get("app") == "churn"]
            assert len(churn) == 3000 and all(e["kubernetes"]["owner"] is not None for e in n.events
                                              if e["kubernetes"]["namespace"] != "default")
            # deleted pods are let go once their files closed (all but the last round's, still open)
            await wait_for(lambda: n.pods.size() == 110 + 50, timeout=15)
        summary = n.k8s.request_summary()
        assert n.k8s.count("list") == 1 and n.k8s.count("get") == 0, summary
        assert n.k8s.count("watch") <= 3, summary


async def test_a_pod_deleted_with_unread_lines_still_labels_them(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        pod = simple_pod("crashing", labels={"app": "crashy"})
        n.k8s.add_pod(pod)
        async with n.running(deleted_pod_grace="300ms"):
            await wait_for(lambda: n.pods.get("default", "crashing") is not None)
            write(n.file(pod), "first")
            await wait_for(lambda: len(n.events) == 1)  # the file is open: the tail reads it
            n.k8s.delete_pod("default", "crashing")
            await wait_for(lambda: n.pods.get("default", "crashing") is None)
            write(n.file(pod), "last words 1", "last words 2")  # read only after the pod was deleted
            await wait_for(lambda: len(n.events) == 3)
            await asyncio.sleep(0.6)  # twice the grace: the file is still open, the pod is still known
            write(n.file(pod), "even later")
            await wait_for(lambda: len(n.events) == 4)
            assert [e["kubernetes"]["labels"] for e in n.events] == [{"app": "crashy"}] * 4
            n.file(pod).unlink()  # the kubelet removes the log: the file is read to its end and closed
            await wait_for(lambda: n.pods.find("default", "crashing") is None, timeout=5)
            assert n.misses() == {}


async def test_first_lines_before_the_watch_has_the_pod_wait_for_it_others_flow(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        known = simple_pod("known")
        n.k8s.add_pod(known)
        async with n.running(wait_for_pod="5s"):
            late = simple_pod("late", labels={"app": "late"})
            write(n.file(late), "early 1", "early 2")
            await wait_for(lambda: n.transform._held)  # held for its pod
            write(n.file(known), "meanwhile")
            await wait_for(lambda: len(n.events) == 1)  # another file is not held up
            n.k8s.add_pod(late)
            await wait_for(lambda: len(n.events) == 3)
            assert [e["message"] for e in n.of(late)] == ["early 1", "early 2"]
            assert all(e["kubernetes"]["labels"] == {"app": "late"} for e in n.of(late))
            ghost = simple_pod("ghost")  # never in the API: goes on after the wait, with the file name's fields
            n.transform.wait = 0.3
            write(n.file(ghost), "who am I")
            await wait_for(lambda: len(n.events) == 4)
            assert n.events[-1]["kubernetes"] == {"pod": "ghost", "namespace": "default", "container": "main",
                                                  "container_id": container_id("ghostmain")}
            assert n.misses() == {"not_found": 1}


async def test_an_api_outage_never_blocks_and_enrichment_resumes_on_its_own(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        steady = simple_pod("steady")
        n.k8s.add_pod(steady)
        async with n.running(wait_for_pod="10s"):
            write(n.file(steady), "before")
            await wait_for(lambda: len(n.events) == 1)
            await n.k8s.go_down()
            await wait_for(lambda: not n.pods.healthy)
            newcomer = simple_pod("newcomer", labels={"app": "new"})
            n.k8s.add_pod(newcomer)  # created while the agent cannot see the API
            for i in range(5):  # logs flow for a while: nothing waits 10s for a pod
                write(n.file(steady), f"during {i}")
                write(n.file(newcomer), f"new during {i}")
                await wait_for(lambda i=i: len(n.events) == 3 + 2 * i, timeout=3)  # type: ignore[misc]
                await asyncio.sleep(0.2)
            assert all(e["kubernetes"]["labels"] == {"app": "steady"} for e in n.of(steady))  # from the cache
            assert all("labels" not in e["kubernetes"] for e in n.of(newcomer))
            assert n.misses() == {"api_unavailable": 5}
            await n.k8s.come_back()
            await wait_for(lambda: n.pods.get("default", "newcomer") is not None, timeout=10)
            write(n.file(newcomer), "after")
            await wait_for(lambda: len(n.events) == 12)
            assert n.events[-1]["kubernetes"]["labels"] == {"app": "new"}
            assert n.misses() == {"api_unavailable": 5}
        requests = {labels: count for (name, labels), count in n.transform.stats.counters.items()
                    if name == "api_requests"}
        assert requests[(("result", "200"), ("verb", "list"))] >= 1
        assert any(dict(labels)["result"] == "error" for labels in requests)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_minute_long_api_outage_with_logs_flowing_then_recovery(tmp_path: Path) -> None:
    """The issue's scenario at full length, with the watch's own backoff (0.8 s doubling to 30 s, as the
    product runs it): a minute away takes it to its cap; lines keep flowing all along, and enrichment is back
    within that cap of the API's return."""
    async with node(tmp_path) as n:
        steady = simple_pod("steady")
        n.k8s.add_pod(steady)
        async with n.running(wait_for_pod="10s", backoff=Backoff(initial=0.8, cap=30.0)):
            write(n.file(steady), "before")
            await wait_for(lambda: len(n.events) == 1)
            await n.k8s.go_down()
            newcomer = simple_pod("newcomer", labels={"app": "new"})
            n.k8s.add_pod(newcomer)
            started = time.monotonic()
            written = 1
            while time.monotonic() - started < 60:  # bounded: a minute of logs, a line each 2 s per file
                write(n.file(steady), f"during {written}")
                write(n.file(newcomer), f"new during {written}")
                written += 2
                await wait_for(lambda w=written: len(n.events) == w, timeout=5)  # type: ignore[misc]
                await asyncio.sleep(2)
            assert all(e["kubernetes"]["labels"] == {"app": "steady"} for e in n.of(steady))
            assert all("labels" not in e["kubernetes"] for e in n.of(newcomer))
            await n.k8s.come_back()
            back = time.monotonic()
            await wait_for(lambda: n.pods.get("default", "newcomer") is not None, timeout=45)
            assert time.monotonic() - back < 45  # within the backoff's cap (30 s) and its jitter
            write(n.file(newcomer), "after")
            await wait_for(lambda: len(n.events) == written + 1)
            assert n.events[-1]["kubernetes"]["labels"] == {"app": "new"}
            assert n.misses() == {"api_unavailable": written // 2}  # the newcomer's lines of the outage only


async def test_a_rotated_token_is_read_again(tmp_path: Path) -> None:
    async with node(tmp_path, token_file=True) as n:
        async with n.running():
            await wait_for(lambda: len(n.k8s.watches) == 1)
            new = tmp_path / "token.new"
            new.write_text("rotated\n")
            os.replace(new, tmp_path / "token")  # as the kubelet swaps it
            n.k8s.rotate_token("rotated")
            n.k8s.drop_watches()
            pod = simple_pod("after-rotation")
            n.k8s.add_pod(pod)
            write(n.file(pod), "hello")
            await wait_for(lambda: len(n.events) == 1)
            assert n.events[0]["kubernetes"]["pod_id"] == "uid-default-after-rotation"
            assert n.k8s.watch_requests[-1].headers["authorization"] == "Bearer rotated"
            assert n.misses() == {}


async def test_exclude_and_parser_annotations_in_a_pipeline(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        quiet = simple_pod("quiet", annotations={"fluentbit.io/exclude": "true"})
        mixed = simple_pod("mixed", annotations={"agent.io/exclude-sidecar": "true", "agent.io/parser-main": "access"},
                           containers=("main", "sidecar"))
        plain = simple_pod("plain")
        for pod in (quiet, mixed, plain):
            n.k8s.add_pod(pod)
        parsers = {"access": {"codec": "regex", "pattern": r"^(?P<method>\S+) (?P<path>\S+) (?P<code>\d+)$",
                              "types": {"code": "int"}}}
        async with n.running(exclude_annotation=True, parser_annotation=True, compat="fluent-bit",
                             parsers=parsers, merge_log=True, keep_log=False):
            write(n.file(quiet), "not wanted")
            write(n.file(mixed, "sidecar"), "noise")
            write(n.file(mixed, "main"), "GET /cart 200")
            write(n.file(plain), '{"level": "warn", "msg": "json"}')
            await wait_for(lambda: n.transform.stats.discarded.get("excluded") == 2 and len(n.events) == 2)
            parsed = n.of(mixed)[0]
            assert (parsed["method"], parsed["path"], parsed["code"]) == ("GET", "/cart", 200)
            merged = n.of(plain)[0]
            assert merged["level"] == "warn" and "message" not in merged
            assert n.transform.stats.discarded["excluded"] == 2


async def test_at_the_drain_held_lines_go_out_and_the_watch_is_closed(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        async with n.running(wait_for_pod="1h"):  # the drain lets held lines go at once (the tail awaits their acks)
            pod = simple_pod("never-seen")
            write(n.file(pod), "held")
            await wait_for(lambda: n.transform._held)
            assert n.events == []
        # the stop drained the pipeline: the held line went out with its file name's fields, counted
        assert [e["message"] for e in n.events] == ["held"]
        assert n.events[0]["kubernetes"]["pod"] == "never-seen" and n.misses() == {"not_found": 1}
        assert n.transform._shares == []  # the stage left the shared watch (the test's own use ends it)


async def test_a_reload_of_the_stage_lets_its_held_lines_go_at_once(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        async with n.running(wait_for_pod="1h") as topo:
            old = n.transform
            write(n.file(simple_pod("never-seen")), "held")
            await wait_for(lambda: old._held)
            await topo.reload(pipeline(n.text(wait_for_pod="2s"), tmp_path))
            await wait_for(lambda: len(n.events) == 1, timeout=10)  # not an hour later
            assert n.transform is not old and old._shares == []  # the old stage left the shared watch
            assert n.events[0]["kubernetes"]["pod"] == "never-seen"
            assert n.pods.synced.is_set()  # the new stage runs on the watch the test holds


async def test_the_backlog_read_at_start_up_finds_its_pods(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        pods = n.k8s.populate(110)
        for pod in pods:
            write(n.file(pod, "app"), "written while the agent was away")
        n.k8s.delay_headers(0.3, requests=1)  # a first list that takes a while
        async with n.running(wait_for_pod="10s"):  # at most: the first list comes after 0.3 s
            await wait_for(lambda: len(n.events) == 110)
            assert all("pod_id" in e["kubernetes"] for e in n.events) and n.misses() == {}


async def test_a_later_stage_writing_into_the_metadata_changes_its_own_events_only(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        web, api = simple_pod("web", labels={"app": "web"}), simple_pod("api", labels={"app": "api"})
        for pod in (web, api):
            n.k8s.add_pod(pod)
        n.downstream = """
  relabel: {type: modify, inputs: [k8s], set: {kubernetes.labels.app: relabelled}}
sinks:
  out: {type: test_gate, inputs: [k8s], open: true}
  relabelled: {type: test_gate, inputs: [relabel], open: true}
"""
        async with n.running():
            for round_ in range(2):  # the second round reuses the stage's dicts of the first
                write(n.file(web), f"web {round_}", f"web {round_}b")
                write(n.file(api), f"api {round_}")
                await wait_for(lambda r=round_: len(GateSink.instances["relabelled"].events) == 3 * (r + 1))  # type: ignore[misc]
                await wait_for(lambda r=round_: len(n.events) == 3 * (r + 1))  # type: ignore[misc]
            relabelled: list[dict[str, Any]] = GateSink.instances["relabelled"].events  # type: ignore[assignment]
            assert {e["kubernetes"]["labels"]["app"] for e in relabelled} == {"relabelled"}
            assert sorted((e["kubernetes"]["pod"], e["kubernetes"]["labels"]["app"]) for e in n.events) == [
                ("api", "api")] * 2 + [("web", "web")] * 4  # the other branch's events are unchanged
            views = {meta.view["pod"]: meta.view for meta in n.transform._resolved.values()}
            assert views["web"]["labels"] == {"app": "web"} and views["api"]["labels"] == {"app": "api"}
            cached = n.pods.get("default", "web")
            assert cached is not None and cached["metadata"]["labels"] == {"app": "web"}
