"""The fake Kubernetes API server itself: gets, lists, watches, namespaces, trouble and its request log."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from fakes.kubernetes import (
    INITIAL_EVENTS_END,
    FakeKubernetes,
    api_call,
    container_log_name,
    make_namespace,
    make_pod,
    realistic_pod,
)

TOKEN = "secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAKE = Path(__file__).resolve().parents[2] / "fakes" / "kubernetes.py"


async def get(k8s: FakeKubernetes, path: str, headers: dict[str, str] | None = None,
              **params: str) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with aiohttp.ClientSession() as session, session.get(
            k8s.url + path, params=params, headers=AUTH if headers is None else headers) as response:
        return response.status, orjson.loads(await response.read()), response.headers


async def events(response: aiohttp.ClientResponse, n: int, timeout: float = 5.0) -> AsyncIterator[Any]:
    for _ in range(n):
        yield orjson.loads(await asyncio.wait_for(response.content.readline(), timeout))


async def read_events(response: aiohttp.ClientResponse, n: int) -> list[tuple[str, str]]:
    out = []
    async for event in events(response, n):
        meta = event["object"]["metadata"]
        out.append((event["type"], meta.get("name", meta["resourceVersion"])))
    return out


async def test_one_pod_or_namespace_is_got_by_name_and_a_missing_one_is_a_404_status() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s:
        k8s.add_pod(make_pod("web", namespace="shop"))
        k8s.add_namespace(make_namespace("shop", labels={"team": "a"}))
        status, pod, _ = await get(k8s, "/api/v1/namespaces/shop/pods/web")
        assert status == 200 and pod["kind"] == "Pod" and pod["metadata"]["resourceVersion"] == "101"
        status, body, _ = await get(k8s, "/api/v1/namespaces/shop/pods/gone")
        assert status == 404
        assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": 'pods "gone" not found', "reason": "NotFound", "code": 404,
                        "details": {"name": "gone", "kind": "pods"}}
        status, ns, _ = await get(k8s, "/api/v1/namespaces/shop")
        assert status == 200 and ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "shop", "team": "a"}
        status, body, _ = await get(k8s, "/api/v1/namespaces/nope")
        assert status == 404 and body["message"] == 'namespaces "nope" not found'
        assert [(c.verb, c.resource, c.namespace, c.name) for c in map(api_call, k8s.requests)] == [
            ("get", "pods", "shop", "web"), ("get", "pods", "shop", "gone"),
            ("get", "namespaces", None, "shop"), ("get", "namespaces", None, "nope")]


async def test_lists_page_with_an_opaque_continue_that_keeps_the_first_resource_version() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s:
        for i in range(5):
            k8s.add_pod(make_pod(f"p{i}", node="node-a" if i != 2 else "node-b"))
        status, first, _ = await get(k8s, "/api/v1/pods", limit="2")
        assert [p["metadata"]["name"] for p in first["items"]] == ["p0", "p1"]
        assert "kind" not in first["items"][0]  # list items are encoded without kind/apiVersion
        assert first["metadata"]["remainingItemCount"] == 3 and first["metadata"]["resourceVersion"] == "105"
        k8s.add_pod(make_pod("p5"))  # a change between pages does not move the list's resourceVersion
        status, second, _ = await get(k8s, "/api/v1/pods", limit="2", **{"continue": first["metadata"]["continue"]})
        assert [p["metadata"]["name"] for p in second["items"]] == ["p2", "p3"]
        assert second["metadata"]["resourceVersion"] == "105"
        _, selected, _ = await get(k8s, "/api/v1/pods", limit="2", fieldSelector="spec.nodeName=node-a")
        assert [p["metadata"]["name"] for p in selected["items"]] == ["p0", "p1"]
        assert "remainingItemCount" not in selected["metadata"] and selected["metadata"]["continue"]
        status, body, _ = await get(k8s, "/api/v1/pods", **{"continue": "not-a-token"})
        assert status == 400 and body["reason"] == "BadRequest"
        k8s.compact()
        status, body, _ = await get(k8s, "/api/v1/pods", limit="2", **{"continue": first["metadata"]["continue"]})
        assert status == 410 and body["reason"] == "Expired"
        status, body, _ = await get(k8s, "/api/v1/pods", fieldSelector="spec.hostname=x")
        assert status == 400 and "not a known field selector" in body["message"]


async def test_namespaces_are_listed_and_watched_apart_from_pods() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s, aiohttp.ClientSession(headers=AUTH) as session:
        k8s.add_namespace(make_namespace("shop"))
        k8s.add_pod(make_pod("web", namespace="shop"))
        _, listed, _ = await get(k8s, "/api/v1/namespaces", labelSelector="kubernetes.io/metadata.name=shop")
        assert listed["kind"] == "NamespaceList" and [n["metadata"]["name"] for n in listed["items"]] == ["shop"]
        async with session.get(k8s.url + "/api/v1/namespaces", params={
                "watch": "1", "resourceVersion": listed["metadata"]["resourceVersion"]}) as ns_watch, \
                session.get(k8s.url + "/api/v1/pods", params={"watch": "true"}) as pod_watch:
            assert await read_events(pod_watch, 1) == [("ADDED", "web")]
            k8s.add_namespace(make_namespace("search"))
            k8s.modify_namespace("shop", lambda n: n["metadata"]["labels"].update(team="b"))
            k8s.delete_namespace("search")
            k8s.delete_pod("shop", "web")
            assert await read_events(ns_watch, 3) == [("ADDED", "search"), ("MODIFIED", "shop"),
                                                      ("DELETED", "search")]
            assert await read_events(pod_watch, 1) == [("DELETED", "web")]
            assert len(k8s.watches_of("namespaces")) == len(k8s.watches_of("pods")) == 1
        assert k8s.request_summary() == {"list namespaces": 1, "watch namespaces": 1, "watch pods": 1}


async def test_a_watch_replays_its_resources_changes_and_sends_bookmarks_only_when_asked() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s, aiohttp.ClientSession(headers=AUTH) as session:
        k8s.add_pod(make_pod("a"))
        since = str(k8s.rv)
        k8s.add_namespace(make_namespace("other"))  # not a pod: not replayed to a pod watch
        k8s.add_pod(make_pod("b"))
        k8s.delete_pod("default", "a", graceful=True)
        async with session.get(k8s.url + "/api/v1/pods", params={"watch": "1", "resourceVersion": since}) as plain, \
                session.get(k8s.url + "/api/v1/pods", params={
                    "watch": "1", "sendInitialEvents": "true", "allowWatchBookmarks": "true",
                    "resourceVersionMatch": "NotOlderThan"}) as initial:
            assert await read_events(plain, 3) == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "a")]
            received = [e async for e in events(initial, 2)]
            assert [e["type"] for e in received] == ["ADDED", "BOOKMARK"]
            assert received[1]["object"] == {"kind": "Pod", "apiVersion": "v1", "metadata": {
                "resourceVersion": str(k8s.rv), "annotations": {INITIAL_EVENTS_END: "true"}}}
            k8s.bookmark()
            k8s.add_pod(make_pod("c"))
            assert await read_events(plain, 1) == [("ADDED", "c")]  # no bookmark without allowWatchBookmarks
            assert await read_events(initial, 2) == [("BOOKMARK", str(k8s.rv - 1)), ("ADDED", "c")]


async def test_an_expired_resource_version_is_an_error_event_or_an_http_410() -> None:
    for expired_as in ("event", "status"):
        async with FakeKubernetes(token=TOKEN, expired_as=expired_as) as k8s:
            k8s.add_pod(make_pod("a"))
            k8s.compact()
            status, body, _ = await get(k8s, "/api/v1/pods", watch="1", resourceVersion="100")
            error = body["object"] if expired_as == "event" else body
            assert status == (200 if expired_as == "event" else 410)
            assert error["code"] == 410 and error["reason"] == "Expired"
            assert error["message"] == f"too old resource version: 100 ({k8s.rv})"


async def test_scripted_429_and_500_answer_any_api_request_with_a_status() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s:
        k8s.add_pod(make_pod("web"))
        k8s.fail_next_requests(1, status=429, retry_after=3)
        k8s.fail_next_requests(1, status=500)
        status, body, headers = await get(k8s, "/api/v1/namespaces/default/pods/web")
        assert status == 429 and headers["Retry-After"] == "3"
        assert body["reason"] == "TooManyRequests" and body["details"] == {"retryAfterSeconds": 3}
        status, body, headers = await get(k8s, "/api/v1/namespaces")
        assert status == 500 and body["reason"] == "InternalError" and "Retry-After" not in headers
        assert (await get(k8s, "/api/v1/namespaces/default/pods/web"))[0] == 200
        assert k8s.request_summary() == {"get pods": 2, "list namespaces": 1, "status 429": 1, "status 500": 1}


async def test_answers_can_be_held_back_before_their_headers() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s, aiohttp.ClientSession(headers=AUTH) as session:
        k8s.delay_headers(30, requests=1)
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(k8s.url + "/api/v1/pods", params={"watch": "1"},
                                   timeout=aiohttp.ClientTimeout(sock_read=0.2)):
                pass  # not even the status line came
        async with session.get(k8s.url + "/api/v1/pods", timeout=aiohttp.ClientTimeout(total=10)) as response:
            assert response.status == 200  # only the first answer was held


async def test_a_stalled_watch_says_nothing_until_resumed() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s, aiohttp.ClientSession(headers=AUTH) as session:
        async with session.get(k8s.url + "/api/v1/pods", params={"watch": "1", "timeoutSeconds": "1"}) as watch:
            k8s.stall_watches()
            k8s.add_pod(make_pod("held"))
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(watch.content.readline(), 1.5)  # and timeoutSeconds is not honoured
            assert len(k8s.watches) == 1
            k8s.resume_watches()
            assert await read_events(watch, 1) == [("ADDED", "held")]
            assert await asyncio.wait_for(watch.content.read(), 5) == b""  # past its timeout: the stream ends


async def test_a_rotated_token_refuses_the_old_one() -> None:
    async with FakeKubernetes(token="first") as k8s:
        k8s.rotate_token("second", keep_old=True)
        assert (await get(k8s, "/api/v1/pods", {"Authorization": "Bearer first"}))[0] == 200
        k8s.rotate_token("third")
        status, body, _ = await get(k8s, "/api/v1/pods", {"Authorization": "Bearer second"})
        assert status == 401 and body["reason"] == "Unauthorized"
        assert (await get(k8s, "/api/v1/pods", {"Authorization": "Bearer third"}))[0] == 200
        assert (await get(k8s, "/api/v1/pods", {}))[0] == 401
        assert k8s.request_summary() == {"list pods": 4, "status 401": 2, "unauthenticated": 1}


def test_realistic_pods_are_big_stable_and_name_their_owner_and_containers() -> None:
    pods = [realistic_pod(i) for i in range(110)]
    assert pods[3] == realistic_pod(3) and len({p["metadata"]["name"] for p in pods}) == 110
    assert all(5_000 <= len(orjson.dumps(p)) <= 10_000 for p in pods)
    kinds = {p["metadata"]["ownerReferences"][0]["kind"] for p in pods}
    assert kinds == {"ReplicaSet", "StatefulSet", "DaemonSet"}
    for pod in pods:
        owner = pod["metadata"]["ownerReferences"][0]
        if owner["kind"] == "ReplicaSet":
            assert owner["name"].endswith("-" + pod["metadata"]["labels"]["pod-template-hash"])
            assert pod["metadata"]["name"].startswith(owner["name"] + "-")
        for c in pod["status"]["containerStatuses"]:
            assert re.fullmatch(r"containerd://[0-9a-f]{64}", c["containerID"])
            name = container_log_name(pod, c["name"])
            assert re.fullmatch(r"[a-z0-9-]+_[a-z-]+_[a-z-]+-[0-9a-f]{64}\.log", name), name
    assert realistic_pod(0, runtime="docker")["status"]["containerStatuses"][0]["containerID"].startswith("docker://")


async def test_populate_adds_the_pods_and_their_namespaces() -> None:
    async with FakeKubernetes(token=TOKEN) as k8s:
        pods = k8s.populate(12, node="node-x")
        assert len(k8s.pods) == 12 and {p["spec"]["nodeName"] for p in pods} == {"node-x"}
        assert {name for _, name in k8s.namespaces} == {p["metadata"]["namespace"] for p in pods}


def test_it_runs_alone_serving_a_nodes_pods_and_its_request_counts(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("file-token\n")
    proc = subprocess.Popen([sys.executable, str(FAKE), "--pods", "4", "--token-file", str(tmp_path / "token")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])

        async def ask() -> tuple[Any, Any]:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/api/v1/pods",
                                       headers={"Authorization": "Bearer file-token"}) as response:
                    pods = await response.json()
                async with session.get(f"http://127.0.0.1:{port}/fake/requests") as response:
                    summary = await response.json()
                async with session.get(f"http://127.0.0.1:{port}/fake/requests?full=1") as response:
                    return pods, (summary, await response.json())

        pods, (summary, full) = asyncio.run(ask())
        assert len(pods["items"]) == 4 and summary == {"list pods": 1}
        assert full == [{"method": "GET", "path": "/api/v1/pods", "query": {}, "status": 200, "auth": True}]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
