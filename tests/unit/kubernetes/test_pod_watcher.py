"""The node-scoped pod cache against the fake API server: node restriction, events, 410, drops, tokens."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fakes.kubernetes import FakeKubernetes, make_pod
from helpers import wait_for

from agent.core.retry import Backoff
from agent.kubernetes.client import KubeClient
from agent.kubernetes.config import ClusterConfig, in_cluster
from agent.kubernetes.pods import PodWatcher, node_name, shared_pod_watcher

TOKEN = "secret-token"



def config(k8s: FakeKubernetes, token: str = TOKEN) -> ClusterConfig:
    return ClusterConfig(server=k8s.url, authorization=("Bearer", token))


@contextlib.asynccontextmanager
async def watching(cluster: ClusterConfig, node: str = "node-a", **options: Any) -> AsyncIterator[
        tuple[PodWatcher, list[tuple[str, str]]]]:
    options.setdefault("backoff", Backoff(initial=0.01, cap=0.05))
    watcher = PodWatcher(KubeClient(cluster), node, **options)
    events: list[tuple[str, str]] = []
    watcher.subscribe(lambda kind, pod: events.append((kind, pod["metadata"]["name"])))
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.synced.wait(), 5)
        yield watcher, events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await watcher.client.close()


async def test_only_the_nodes_own_pods_are_listed_and_watched() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s:
        k8s.add_pod(make_pod("mine", node="node-a"))
        k8s.add_pod(make_pod("theirs", node="node-b"))
        async with watching(config(k8s)) as (watcher, events):
            assert set(watcher.pods) == {"default/mine"}
            k8s.add_pod(make_pod("theirs-too", node="node-b"))
            k8s.add_pod(make_pod("mine-too", node="node-a"))
            await wait_for(lambda: "default/mine-too" in watcher.pods)
            assert set(watcher.pods) == {"default/mine", "default/mine-too"}
            assert events == [("ADDED", "mine"), ("ADDED", "mine-too")]
        first = k8s.list_requests[0].query
        assert first["fieldSelector"] == "spec.nodeName=node-a"
        assert first["resourceVersion"] == "0"  # the first list comes from the API server's cache
        watch = k8s.watch_requests[0].query
        assert watch["fieldSelector"] == "spec.nodeName=node-a"
        assert watch["allowWatchBookmarks"] == "true"
        assert watch["resourceVersion"] == str(k8s.rv - 2)


async def test_add_modify_delete_reach_the_cache_and_the_listeners() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s, watching(config(k8s)) as (watcher, events):
        k8s.add_pod(make_pod("web", metadata={"labels": {"app": "web"}}))
        await wait_for(lambda: watcher.get("default", "web") is not None)
        k8s.modify_pod("default", "web", lambda p: p["metadata"]["labels"].update(app="web2"))
        await wait_for(lambda: (watcher.get("default", "web") or {})["metadata"]["labels"] == {"app": "web2"})
        assert watcher.by_uid("uid-default-web") is watcher.get("default", "web")
        k8s.delete_pod("default", "web")
        await wait_for(lambda: not watcher.pods)
        assert watcher.by_uid("uid-default-web") is None
        assert events == [("ADDED", "web"), ("MODIFIED", "web"), ("DELETED", "web")]


@pytest.mark.parametrize("expired_as", ["event", "status"])
async def test_410_gone_relists_and_reconciles_without_losing_pods(expired_as: str) -> None:
    async with FakeKubernetes(token=TOKEN, expired_as=expired_as) as k8s:
        for name in ("stays", "goes"):
            k8s.add_pod(make_pod(name))
        async with watching(config(k8s)) as (watcher, events):
            await wait_for(lambda: len(k8s.watches) == 1)
            k8s.drop_watches()
            k8s.delete_pod("default", "goes")  # happens while the watcher is away ...
            k8s.add_pod(make_pod("new"))
            k8s.compact()  # ... and the history it would resume from is gone
            await wait_for(lambda: "default/new" in watcher.pods)
            assert set(watcher.pods) == {"default/stays", "default/new"}
            assert watcher.stats["relists"] == 1
            assert ("DELETED", "stays") not in events
            assert events[2:] == [("DELETED", "goes"), ("ADDED", "new")]
            assert "resourceVersion" not in k8s.list_requests[-1].query  # the relist reads the latest state
            k8s.add_pod(make_pod("after"))  # and the watch goes on from the relist
            await wait_for(lambda: "default/after" in watcher.pods)


async def test_a_dropped_watch_resumes_from_the_last_resource_version() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s, watching(config(k8s)) as (watcher, events):
        k8s.add_pod(make_pod("one"))
        await wait_for(lambda: "default/one" in watcher.pods)
        seen = watcher.resource_version
        k8s.drop_watches()
        k8s.add_pod(make_pod("two"))  # written while no watch is open
        await wait_for(lambda: "default/two" in watcher.pods)
        assert len(k8s.list_requests) == 1  # resumed, not relisted
        assert k8s.watch_requests[-1].query["resourceVersion"] == seen
        assert events == [("ADDED", "one"), ("ADDED", "two")]


async def test_bookmarks_advance_the_resource_version() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s, watching(config(k8s)) as (watcher, _):
        await wait_for(lambda: len(k8s.watches) == 1)
        k8s.add_pod(make_pod("elsewhere", node="node-b"))  # not ours: only a bookmark tells us of it
        k8s.bookmark()
        await wait_for(lambda: watcher.resource_version == str(k8s.rv))
        k8s.compact()  # what was before the bookmark is gone; resuming after it needs no relist
        k8s.drop_watches()
        k8s.add_pod(make_pod("mine"))
        await wait_for(lambda: "default/mine" in watcher.pods)
        assert watcher.stats["relists"] == 0


async def test_a_silent_watch_connection_is_given_up_and_opened_again() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s, watching(config(k8s), idle_timeout=0.2) as (watcher, _):
        # the fake keeps the stream open (timeoutSeconds >= 300) and says nothing: a dead connection
        await wait_for(lambda: len(k8s.watch_requests) >= 3)
        assert int(k8s.watch_requests[0].query["timeoutSeconds"]) >= 300
        k8s.add_pod(make_pod("late"))
        await wait_for(lambda: "default/late" in watcher.pods)


async def test_errors_back_off_and_recover_honouring_retry_after() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s:
        k8s.add_pod(make_pod("web"))
        k8s.fail_next_requests(1, status=500)
        k8s.fail_next_requests(1, status=429, retry_after=1)
        started = asyncio.get_running_loop().time()
        async with watching(config(k8s)) as (watcher, _):
            assert "default/web" in watcher.pods
            assert asyncio.get_running_loop().time() - started >= 1.0  # Retry-After: 1 was a floor
            assert watcher.stats["errors"] == 2


async def test_a_rotated_service_account_token_is_read_again(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first")
    async with FakeKubernetes(token="first") as k8s:
        cluster = in_cluster({"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1"}, tmp_path)
        cluster.server = k8s.url  # the fake speaks plain http
        async with watching(cluster) as (watcher, _):
            await wait_for(lambda: len(k8s.watches) == 1)
            new = tmp_path / "token.new"
            new.write_text("second\n")
            os.replace(new, tmp_path / "token")  # as the kubelet swaps it: a new file
            k8s.rotate_token("second")
            k8s.drop_watches()
            k8s.add_pod(make_pod("after-rotation"))
            await wait_for(lambda: "default/after-rotation" in watcher.pods)
            assert k8s.watch_requests[-1].headers["authorization"] == "Bearer second"


async def test_components_asking_for_the_same_node_share_one_watch() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s:
        k8s.add_pod(make_pod("web"))
        cluster = config(k8s)
        async with shared_pod_watcher(cluster, "node-a") as first, shared_pod_watcher(cluster, "node-a") as second:
            assert first is second
            await asyncio.wait_for(first.synced.wait(), 5)
            await wait_for(lambda: len(k8s.watches) == 1)
            async with shared_pod_watcher(cluster, "node-b") as other:
                assert other is not first
                await asyncio.wait_for(other.synced.wait(), 5)
        await wait_for(lambda: not k8s.watches)  # the last user left: the watch is closed
        assert len(k8s.list_requests) == 2  # one per node


async def test_a_share_taken_in_one_task_is_released_from_another_and_a_cancelled_release_settles() -> None:
    """A component starts in one task and is closed from another (its flush), or is cancelled while it leaves (a
    drain past shutdown_timeout): the share is a plain object, so neither leaves a generator for the loop to
    finalize, and the next user starts a fresh watch."""
    async with FakeKubernetes(token=TOKEN) as k8s:
        cluster = config(k8s)
        share = shared_pod_watcher(cluster, "node-a")
        watcher = await asyncio.create_task(share.enter())
        await asyncio.wait_for(watcher.synced.wait(), 5)
        await asyncio.create_task(share.release())
        await share.release()  # twice: nothing more
        await wait_for(lambda: not k8s.watches)
        again = shared_pod_watcher(cluster, "node-a")
        second = await again.enter()
        assert second is not watcher
        await asyncio.wait_for(second.synced.wait(), 5)
        leaving = asyncio.create_task(again.release())
        await asyncio.sleep(0)
        leaving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leaving
        async with shared_pod_watcher(cluster, "node-a") as third:
            assert third is not second
            await asyncio.wait_for(third.synced.wait(), 5)
        await second.client.close()


async def test_a_failing_listener_does_not_stop_the_watch() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s, watching(config(k8s)) as (watcher, events):
        def broken(kind: str, pod: dict[str, Any]) -> None:
            raise RuntimeError("listener bug")
        watcher.subscribe(broken)
        k8s.add_pod(make_pod("web"))
        await wait_for(lambda: ("ADDED", "web") in events)
        assert "default/web" in watcher.pods


def test_the_node_name_comes_from_node_name_else_the_hostname() -> None:
    assert node_name({"NODE_NAME": "worker-7"}) == "worker-7"
    assert node_name({}) != ""


class CountingBackoff(Backoff):
    def __init__(self) -> None:
        super().__init__(initial=0.01, cap=0.02)
        self.calls = 0

    def next(self, floor: float | None = None) -> float:
        self.calls += 1
        return super().next(floor)


async def test_a_410_right_after_a_list_backs_off_instead_of_relisting_in_a_tight_loop() -> None:
    backoff = CountingBackoff()
    async with FakeKubernetes(token=TOKEN) as k8s, watching(config(k8s), backoff=backoff) as (watcher, _):
        await wait_for(lambda: len(k8s.watches) == 1)
        k8s.fail_next_requests(4, status=410)  # the watch, then every relist, answer 410 Gone
        k8s.drop_watches()
        k8s.add_pod(make_pod("after"))
        await wait_for(lambda: "default/after" in watcher.pods)
        assert watcher.stats["relists"] == 4
        assert backoff.calls >= 3  # each 410 that follows a fresh list waited before listing again
