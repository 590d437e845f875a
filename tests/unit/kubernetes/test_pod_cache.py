"""The pod cache's parts the `kubernetes` transform relies on, against the fake API server: the trimmed view
and its measured memory, the wait for a pod, namespaces (only when asked, shared), request counts, health
through an outage, deleted pods kept while their files are open, a rotated token file."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
from fakes.kubernetes import FakeKubernetes, make_namespace, make_pod, realistic_pod
from helpers import wait_for

from agent.core.retry import Backoff
from agent.kubernetes.client import KubeClient
from agent.kubernetes.config import ClusterConfig, from_kubeconfig
from agent.kubernetes.files import ContainerFiles
from agent.kubernetes.pods import (
    PodWatcher,
    deep_size,
    pod_owner,
    shared_namespace_watcher,
    shared_pod_watcher,
    trim_pod,
)

TOKEN = "secret-token"
FAST = Backoff(initial=0.01, cap=0.05)


def cluster(k8s: FakeKubernetes) -> ClusterConfig:
    return ClusterConfig(server=k8s.url, authorization=("Bearer", TOKEN))


@contextlib.asynccontextmanager
async def running(watcher: PodWatcher) -> AsyncIterator[PodWatcher]:
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.synced.wait(), 5)
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await watcher.client.close()


def test_the_trimmed_view_keeps_what_is_used_and_drops_the_rest() -> None:
    pod = realistic_pod(3)
    view = trim_pod(pod)
    assert view["metadata"]["labels"] == pod["metadata"]["labels"]
    assert view["metadata"]["annotations"] == pod["metadata"]["annotations"]
    assert view["metadata"]["ownerReferences"] == [{"kind": "ReplicaSet", "name": pod["metadata"]["ownerReferences"]
                                                    [0]["name"], "controller": True}]
    assert "managedFields" not in view["metadata"] and "env" not in view["spec"]["containers"][0]
    assert view["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
    assert view["status"]["conditions"] == [{"type": "Ready", "status": "True"}]  # kubernetes_sd's ready label
    assert len(orjson.dumps(view)) * 4 < len(orjson.dumps(pod))
    assert pod_owner(view) == {"kind": "Deployment", "name": pod["metadata"]["ownerReferences"][0]["name"]
                               .rsplit("-", 1)[0]}


def test_the_memory_measure_is_what_tracemalloc_sees() -> None:
    """deep_size over the trimmed views is within 15 % of what they really keep alive (tracemalloc)."""
    wire = orjson.dumps([realistic_pod(i) for i in range(110)])
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        views = [trim_pod(p) for p in orjson.loads(wire)]  # the decoded full pods are freed, the views stay
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    measured = sum(deep_size(v) for v in views)
    assert 0.85 * kept <= measured <= 1.15 * kept, (measured, kept)


async def test_110_realistic_pods_cost_well_under_10_mb_and_the_gauge_says_how_much() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s:
        k8s.populate(110)
        watcher = PodWatcher(KubeClient(cluster(k8s)), "node-a", backoff=FAST)
        async with running(watcher):
            assert watcher.size() == 110
            memory = watcher.memory_bytes()
            print(f"pod cache: 110 realistic pods, {memory} bytes ({memory / 110:.0f} per pod)")
            assert 110 * 1000 < memory < 2 * 1024 * 1024  # honest (not zero), and far under 10 MB
            for pod in list(k8s.pods.values())[:50]:
                k8s.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"])
            await wait_for(lambda: watcher.size() == 60)  # no file open, no grace: gone, and their bytes too
            assert watcher.memory_bytes() < memory * 0.7


async def test_waiting_for_a_pod_answers_when_the_watch_delivers_it_or_after_the_time() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s:
        watcher = PodWatcher(KubeClient(cluster(k8s)), "node-a", backoff=FAST)
        async with running(watcher):
            waiting = asyncio.create_task(watcher.wait_for_pod("default", "late", 5))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            k8s.add_pod(make_pod("late"))
            pod = await asyncio.wait_for(waiting, 5)
            assert pod is not None and pod["metadata"]["name"] == "late"
            assert await watcher.wait_for_pod("default", "never", 0.05) is None
            assert not watcher._waiters  # nothing left behind
        assert k8s.count("get") == 0  # no GET of a pod, ever


async def test_a_deleted_pod_stays_while_a_file_of_it_is_open() -> None:
    files = ContainerFiles()
    async with FakeKubernetes(token=TOKEN) as k8s:
        k8s.add_pod(make_pod("short-lived"))
        k8s.add_pod(make_pod("no-files"))
        watcher = PodWatcher(KubeClient(cluster(k8s)), "node-a", files=files, backoff=FAST)
        async with running(watcher):
            fields = {"namespace": "default", "pod": "short-lived", "container": "main", "container_id": "c1"}
            files.opened(fields)
            k8s.delete_pod("default", "short-lived")
            k8s.delete_pod("default", "no-files")
            await wait_for(lambda: not watcher.pods)
            assert watcher.find("default", "short-lived") is not None
            assert watcher.find("default", "no-files") is None
            files.closed(fields)
            watcher.prune(watcher.clock() + 1)  # grace 0: it goes at once after its last file closed
            assert watcher.find("default", "short-lived") is None


async def test_requests_are_counted_and_health_follows_an_outage() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s:
        watcher = PodWatcher(KubeClient(cluster(k8s)), "node-a", backoff=FAST)
        seen: list[tuple[str, str]] = []
        watcher.request_listeners.append(lambda verb, result: seen.append((verb, result)))
        async with running(watcher):
            assert watcher.healthy and seen[0] == ("list", "200")
            await wait_for(lambda: len(k8s.watches) == 1)
            await wait_for(lambda: ("watch", "200") in seen)  # counted once accepted, not when it ends
            await k8s.go_down()
            await wait_for(lambda: not watcher.healthy)
            assert ("watch", "error") in seen or ("list", "error") in seen
            k8s.add_pod(make_pod("while-away"))  # the fake keeps its state
            await k8s.come_back()
            await wait_for(lambda: "default/while-away" in watcher.pods and watcher.healthy, timeout=10)
        assert watcher.requests[("list", "200")] >= 1


async def test_namespaces_are_watched_only_when_asked_and_shared() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s:
        k8s.add_namespace(make_namespace("shop", {"env": "prod"}))
        config = cluster(k8s)
        async with shared_pod_watcher(config, "node-a", backoff=FAST) as pods:
            await asyncio.wait_for(pods.synced.wait(), 5)
            assert k8s.count(resource="namespaces") == 0
            async with shared_namespace_watcher(config, backoff=FAST) as first, \
                    shared_namespace_watcher(config) as second:
                assert first is second
                await asyncio.wait_for(first.synced.wait(), 5)
                assert first.get("shop")["metadata"]["labels"]["env"] == "prod"  # type: ignore[index]
                await wait_for(lambda: len(k8s.watches_of("namespaces")) == 1)
                k8s.modify_namespace("shop", lambda ns: ns["metadata"]["labels"].update(env="staging"))
                await wait_for(lambda: first.get("shop")["metadata"]["labels"]["env"] == "staging")  # type: ignore[index]
                assert k8s.count("list", "namespaces") == 1
            await wait_for(lambda: not k8s.watches_of("namespaces"))


async def test_a_rotated_token_file_of_a_kubeconfig_is_read_again(tmp_path: Path) -> None:
    async with FakeKubernetes(token="first") as k8s:
        (tmp_path / "token").write_text("first\n")
        (tmp_path / "kubeconfig").write_text(orjson.dumps({
            "current-context": "fake", "contexts": [{"name": "fake", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": {"server": k8s.url}}],
            "users": [{"name": "u", "user": {"tokenFile": "token"}}]}).decode())
        watcher = PodWatcher(KubeClient(from_kubeconfig(tmp_path / "kubeconfig")), "node-a", backoff=FAST)
        async with running(watcher):
            await wait_for(lambda: len(k8s.watches) == 1)
            new = tmp_path / "token.new"
            new.write_text("second\n")
            os.replace(new, tmp_path / "token")
            k8s.rotate_token("second")
            k8s.drop_watches()
            k8s.add_pod(make_pod("after-rotation"))
            await wait_for(lambda: "default/after-rotation" in watcher.pods)
            assert k8s.watch_requests[-1].headers["authorization"] == "Bearer second"
            assert "second" not in repr(watcher.client.config)  # the secret stays in its file object


async def test_the_next_user_of_a_stopped_watch_keeps_the_deleted_pods_whose_files_are_open() -> None:
    """A reload of the only stage using the watch stops it and starts a new one: a pod deleted before (or in
    between) whose file is still being read must not be forgotten by the new cache."""
    async with FakeKubernetes(token=TOKEN) as k8s:
        files = ContainerFiles()
        gone, between, kept = make_pod("gone"), make_pod("between"), make_pod("kept")
        for pod in (gone, between, kept):
            k8s.add_pod(pod)
            files.opened({"namespace": "default", "pod": pod["metadata"]["name"], "container_id": "c"})
        async with shared_pod_watcher(cluster(k8s), "node-a", files=files, backoff=FAST) as first:
            first.retain_deleted_for(0.0)
            await asyncio.wait_for(first.synced.wait(), 5)
            await wait_for(lambda: len(k8s.watches) == 1)
            k8s.delete_pod("default", "gone")
            await wait_for(lambda: first.get("default", "gone") is None)
        k8s.delete_pod("default", "between")  # while no watch runs
        async with shared_pod_watcher(cluster(k8s), "node-a", files=files, backoff=FAST) as second:
            assert second is not first
            await asyncio.wait_for(second.synced.wait(), 5)
            assert second.get("default", "kept") is not None
            assert second.get("default", "gone") is None and second.find("default", "gone") is not None
            assert second.get("default", "between") is None and second.find("default", "between") is not None
            files.closed({"namespace": "default", "pod": "gone", "container_id": "c"})
            second.prune(time.monotonic())  # (find and size prune at most twice a second)
            assert second.find("default", "gone") is None and second.size() == 2


class _OddApiServer:
    """A client whose watch delivers an object that is not a pod object once, then the pod."""

    def __init__(self) -> None:
        self.watches = 0

    async def get(self, path: str, params: dict[str, str]) -> dict[str, object]:
        return {"items": [], "metadata": {"resourceVersion": "1"}}

    async def watch(self, path: str, params: dict[str, str], idle: float,
                    opened: Callable[[], None]) -> AsyncIterator[dict[str, object]]:
        self.watches += 1
        if self.watches == 1:
            yield {"type": "ADDED", "object": ["not", "a", "pod"]}
        else:
            yield {"type": "ADDED", "object": make_pod("after")}
        await asyncio.sleep(3600)

    async def close(self) -> None:
        return None


async def test_an_event_the_watch_cannot_use_does_not_end_the_watch() -> None:
    watcher = PodWatcher(_OddApiServer(), "node-a", backoff=FAST)  # type: ignore[arg-type]
    async with running(watcher):
        await wait_for(lambda: watcher.get("default", "after") is not None)
        assert watcher.stats["errors"] == 1
