"""A fake Kubernetes API server (pods only) for the agent's tests, after the API conventions.

`async with FakeKubernetes(token="t") as k8s:` then `k8s.add_pod(pod)`, `k8s.modify_pod(ns, name, fn)`,
`k8s.delete_pod(ns, name)`. It serves list and watch of pods (`/api/v1/pods`, `/api/v1/namespaces/{ns}/pods`)
with `fieldSelector` (`spec.nodeName`, `metadata.namespace`, `metadata.name`, `status.phase`; `=`, `==`, `!=`),
`labelSelector` (`k=v`, `k!=v`, `k`, `!k`), `limit`/`continue`, resourceVersions, watch streams of
ADDED/MODIFIED/DELETED/BOOKMARK that end after `timeoutSeconds`, and bearer auth (401 with a `Status`).
Trouble: `compact()` makes every older resourceVersion expire (410 as an HTTP status or as an ERROR event,
`expired_as`), `bookmark()`, `drop_watches()` cuts open watch connections, `fail_next_requests()` (base).
"""

from __future__ import annotations

import asyncio
import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fakes.base import FakeHTTPServer

Pod = dict[str, Any]
FIELDS = {
    "spec.nodeName": lambda p: p["spec"].get("nodeName", ""),
    "metadata.namespace": lambda p: p["metadata"].get("namespace", ""),
    "metadata.name": lambda p: p["metadata"].get("name", ""),
    "status.phase": lambda p: p.get("status", {}).get("phase", ""),
}


def make_pod(name: str, namespace: str = "default", node: str = "node-a", ip: str = "10.0.0.1", **extra: Any) -> Pod:
    """A minimal pod as the API serves it; `extra` merges into metadata/spec/status by key."""
    pod: Pod = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
                "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]},
                "status": {"phase": "Running", "podIP": ip, "hostIP": "192.168.0.1"}}
    for section, values in extra.items():
        pod[section].update(values)
    return pod


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def _selector(text: str, field_selector: bool) -> list[tuple[str, str, str]]:
    """`a=b,c!=d,e,!f` as (key, op, value) triples; ops `=`, `!=`, `exists`, `!exists`."""
    rules = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "!=" in part:
            k, v = part.split("!=", 1)
            rules.append((k.strip(), "!=", v.strip()))
        elif "=" in part:
            k, v = part.replace("==", "=").split("=", 1)
            rules.append((k.strip(), "=", v.strip()))
        elif field_selector:
            raise ValueError(f"invalid field selector {part!r}")
        elif part.startswith("!"):
            rules.append((part[1:], "!exists", ""))
        else:
            rules.append((part, "exists", ""))
    return rules


@dataclass
class _Query:
    namespace: str | None
    fields: list[tuple[str, str, str]]
    labels: list[tuple[str, str, str]]

    def matches(self, pod: Pod) -> bool:
        if self.namespace is not None and pod["metadata"].get("namespace") != self.namespace:
            return False
        for key, op, value in self.fields:
            actual = FIELDS[key](pod)
            if (actual == value) != (op == "="):
                return False
        labels = pod["metadata"].get("labels") or {}
        for key, op, value in self.labels:
            ok = {"=": labels.get(key) == value, "!=": labels.get(key) != value,
                  "exists": key in labels, "!exists": key not in labels}[op]
            if not ok:
                return False
        return True


@dataclass
class _Watch:
    query: _Query
    bookmarks: bool
    request: web.Request
    queue: asyncio.Queue[tuple[str, Pod] | None] = field(default_factory=asyncio.Queue)


class FakeKubernetes(FakeHTTPServer):
    """Pods of a fake cluster, listed and watched; `requests` records every request."""

    ingest_suffixes = ("/pods",)

    def __init__(self, *, token: str | None = "secret-token", expired_as: str = "event", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens: set[str] = {token} if token else set()
        self.expired_as = expired_as  # "event": 200 then an ERROR event; "status": an HTTP 410
        self.pods: dict[tuple[str, str], Pod] = {}
        self.rv = 100
        self.oldest_rv = 0  # watches from before this get 410 Gone
        self.history: list[tuple[int, str, Pod]] = []
        self.watches: list[_Watch] = []

    # -- the cluster -----------------------------------------------------------------------------

    def _commit(self, kind: str, pod: Pod) -> Pod:
        self.rv += 1
        pod = copy.deepcopy(pod)
        pod["metadata"]["resourceVersion"] = str(self.rv)
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        if kind == "DELETED":
            self.pods.pop(key, None)
        else:
            self.pods[key] = pod
        self.history.append((self.rv, kind, pod))
        for watch in self.watches:
            if watch.query.matches(pod):
                watch.queue.put_nowait((kind, pod))
        return pod

    def add_pod(self, pod: Pod) -> Pod:
        return self._commit("ADDED", pod)

    def modify_pod(self, namespace: str, name: str, change: Any) -> Pod:
        pod = copy.deepcopy(self.pods[(namespace, name)])
        change(pod)
        return self._commit("MODIFIED", pod)

    def delete_pod(self, namespace: str, name: str) -> Pod:
        return self._commit("DELETED", self.pods[(namespace, name)])

    def compact(self) -> None:
        """Forget the history: every resourceVersion before the current one is too old to watch from."""
        self.oldest_rv = self.rv
        self.history.clear()

    def bookmark(self) -> None:
        """Send a BOOKMARK (the current resourceVersion) to every watch that asked for them."""
        for watch in self.watches:
            if watch.bookmarks:
                watch.queue.put_nowait(("BOOKMARK", {"kind": "Pod", "apiVersion": "v1",
                                                     "metadata": {"resourceVersion": str(self.rv)}}))

    def drop_watches(self) -> None:
        """Cut every open watch connection without ending the stream properly."""
        for watch in list(self.watches):
            if watch.request.transport is not None:
                watch.request.transport.abort()
            watch.queue.put_nowait(None)

    def rotate_token(self, new: str) -> None:
        """Accept `new` only (the old token stops working at once)."""
        self.tokens = {new}

    @property
    def list_requests(self) -> list[Any]:
        return [r for r in self.requests if r.path.endswith("/pods") and r.query.get("watch") not in ("1", "true")]

    @property
    def watch_requests(self) -> list[Any]:
        return [r for r in self.requests if r.path.endswith("/pods") and r.query.get("watch") in ("1", "true")]

    # -- HTTP --------------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/pods", self._pods)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods", self._pods)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods/{name}", self._pod)

    def _json(self, status: int, body: Any) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    def _denied(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if self.tokens and not (auth.startswith("Bearer ") and auth[7:] in self.tokens):
            return self._json(401, _status(401, "Unauthorized", "Unauthorized"))
        return None

    async def _pod(self, request: web.Request) -> web.StreamResponse:
        if denied := self._denied(request):
            return denied
        pod = self.pods.get((request.match_info["namespace"], request.match_info["name"]))
        if pod is None:
            body = _status(404, "NotFound", f'pods "{request.match_info["name"]}" not found')
            body["details"] = {"name": request.match_info["name"], "kind": "pods"}
            return self._json(404, body)
        return self._json(200, pod)

    async def _pods(self, request: web.Request) -> web.StreamResponse:
        if denied := self._denied(request):
            return denied
        if failure := self.take_failure(request):
            response = self._json(failure.status, _status(failure.status, "InternalError", "scripted failure"))
            if failure.retry_after is not None:
                response.headers["Retry-After"] = str(int(failure.retry_after))
            return response
        q = request.query
        try:
            query = _Query(request.match_info.get("namespace"), _selector(q.get("fieldSelector", ""), True),
                           _selector(q.get("labelSelector", ""), False))
            for key, _, _ in query.fields:
                if key not in FIELDS:
                    raise ValueError(f'field label not supported: {key}')
        except ValueError as exc:
            return self._json(400, _status(400, "BadRequest", str(exc)))
        if q.get("watch") in ("1", "true"):
            return await self._watch(request, query)
        return self._list(query, int(q.get("limit") or 0), q.get("continue"))

    def _list(self, query: _Query, limit: int, token: str | None) -> web.Response:
        items = sorted((p for p in self.pods.values() if query.matches(p)),
                       key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))
        start, rv = (0, self.rv) if not token else map(int, token.split(":"))
        if token and rv < self.oldest_rv:
            return self._json(410, _status(410, "Expired", "The provided continue parameter is too old"))
        page = items[start:start + limit] if limit else items[start:]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit and start + limit < len(items):
            meta["continue"] = f"{start + limit}:{rv}"
        return self._json(200, {"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": page})

    async def _watch(self, request: web.Request, query: _Query) -> web.StreamResponse:
        q = request.query
        since = q.get("resourceVersion", "")
        expired = since not in ("", "0") and int(since) < self.oldest_rv
        if expired and self.expired_as == "status":
            return self._json(410, _status(410, "Expired", f"too old resource version: {since} ({self.oldest_rv})"))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if expired:
            error = _status(410, "Expired", f"too old resource version: {since} ({self.oldest_rv})")
            await response.write(orjson.dumps({"type": "ERROR", "object": error}) + b"\n")
            return response
        watch = _Watch(query, q.get("allowWatchBookmarks") == "true", request)
        if since in ("", "0"):
            backlog = [("ADDED", p) for p in self.pods.values() if query.matches(p)]
        else:
            backlog = [(kind, p) for rv, kind, p in self.history if rv > int(since) and query.matches(p)]
        for event in backlog:
            watch.queue.put_nowait(event)
        self.watches.append(watch)
        deadline = asyncio.get_running_loop().time() + float(q.get("timeoutSeconds") or 1800)
        try:
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                if request.transport is None or request.transport.is_closing():
                    break  # the client went away
                try:
                    item = await asyncio.wait_for(watch.queue.get(), min(left, 0.05))
                except TimeoutError:
                    continue
                if item is None:
                    break
                await response.write(orjson.dumps({"type": item[0], "object": item[1]}) + b"\n")
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            self.watches.remove(watch)
        return response
