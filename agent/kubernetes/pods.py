"""The node-scoped pod cache: one list + watch of this node's pods (``fieldSelector=spec.nodeName=<node>``),
kept in memory as trimmed pod objects and shared by every component that asks for the same node.

The watch follows the API conventions client-go's reflector follows: the first list is served from the API
server's cache (``resourceVersion=0``), the watch resumes from the last resourceVersion seen (bookmarks
included), ``410 Gone`` (as a status or an ERROR event) lists again and reconciles the cache (pods gone in the
meantime are reported deleted, none is lost), errors back off with full jitter (``Retry-After`` honoured),
and a watch stream silent for longer than its own timeout is taken for a dead connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp

from agent.core.retry import Backoff
from agent.kubernetes.client import ApiError, Gone, KubeClient, status_error
from agent.kubernetes.config import ClusterConfig

log = logging.getLogger(__name__)

PODS_PATH = "/api/v1/pods"
Listener = Callable[[str, dict[str, Any]], None]  # ("ADDED" | "MODIFIED" | "DELETED", pod)


def node_name(environ: Mapping[str, str] = os.environ) -> str:
    """This node's name: ``NODE_NAME`` (the downward API's ``spec.nodeName``), else the hostname."""
    return environ.get("NODE_NAME") or socket.gethostname()


def trim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """What the agent uses of a pod (no managedFields, env, volumes or probes): a tenth of its size or less."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}

    def containers(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        return [{"name": c.get("name", ""), "image": c.get("image", ""), "ports": c.get("ports") or []}
                for c in items or []]

    def statuses(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        return [{"name": s.get("name", ""), "containerID": s.get("containerID", ""), "image": s.get("image", ""),
                 "imageID": s.get("imageID", "")} for s in items or []]

    return {
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "labels", "annotations",
                                          "ownerReferences", "creationTimestamp", "deletionTimestamp")
                     if k in meta},
        "spec": {"nodeName": spec.get("nodeName", ""), "containers": containers(spec.get("containers")),
                 "initContainers": containers(spec.get("initContainers"))},
        "status": {"phase": status.get("phase", ""), "podIP": status.get("podIP", ""),
                   "hostIP": status.get("hostIP", ""),
                   "conditions": [c for c in status.get("conditions") or [] if c.get("type") == "Ready"],
                   "containerStatuses": statuses(status.get("containerStatuses")),
                   "initContainerStatuses": statuses(status.get("initContainerStatuses"))},
    }


def pod_key(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class PodWatcher:
    """The pods of one node, listed then watched, as a cache (``pods``, ``get``, ``by_uid``) with listeners.

    ``run()`` keeps the cache current until cancelled; ``synced`` is set once the first list is in.
    ``subscribe(listener)`` replays the cached pods as ADDED and then calls the listener on every change.
    """

    def __init__(self, client: KubeClient, node: str, *, label_selector: str | None = None,
                 field_selector: str | None = None, watch_timeout: float = 300.0,
                 idle_timeout: float | None = None, backoff: Backoff | None = None) -> None:
        self.client = client
        self.node = node
        self.selectors = {"fieldSelector": ",".join(filter(None, [f"spec.nodeName={node}", field_selector]))}
        if label_selector:
            self.selectors["labelSelector"] = label_selector
        self.watch_timeout = watch_timeout
        self.idle_timeout = idle_timeout
        self.backoff = backoff or Backoff(initial=0.8, cap=30.0)
        self.pods: dict[str, dict[str, Any]] = {}
        self._uids: dict[str, str] = {}
        self._listeners: list[Listener] = []
        self.resource_version: str | None = None
        self._just_listed = False
        self.synced = asyncio.Event()
        self.stats = {"lists": 0, "watches": 0, "relists": 0, "errors": 0}

    # -- the cache --------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.pods.get(f"{namespace}/{name}")

    def by_uid(self, uid: str) -> dict[str, Any] | None:
        key = self._uids.get(uid)
        return self.pods.get(key) if key is not None else None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, pod)`` for each cached pod now (ADDED), then on every change; returns the
        function that unsubscribes."""
        self._listeners.append(listener)
        for pod in list(self.pods.values()):
            self._call(listener, "ADDED", pod)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _call(self, listener: Listener, event: str, pod: dict[str, Any]) -> None:
        try:
            listener(event, pod)
        except Exception:  # a listener's fault stays with it: the watch and the other listeners go on
            log.exception("kubernetes pod listener failed on %s %s", event, pod_key(pod))

    def _store(self, pod: dict[str, Any]) -> None:
        key = pod_key(pod)
        old = self.pods.get(key)
        if old is not None and old["metadata"].get("resourceVersion") == pod["metadata"].get("resourceVersion"):
            return
        self.pods[key] = pod
        if uid := pod["metadata"].get("uid"):
            self._uids[uid] = key
        self._emit("ADDED" if old is None else "MODIFIED", pod)

    def _remove(self, key: str) -> None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return
        self._uids.pop(pod["metadata"].get("uid", ""), None)
        self._emit("DELETED", pod)

    def _emit(self, event: str, pod: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            self._call(listener, event, pod)

    # -- list and watch ---------------------------------------------------------------------------

    async def run(self) -> None:
        """List, then watch, forever: relist on 410 Gone, back off on errors, resume after a dropped stream."""
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                started = time.monotonic()
                if await self._watch() or time.monotonic() - started >= 1.0:
                    self.backoff.reset()
                else:  # a stream that ends at once, again and again, must not spin
                    await asyncio.sleep(self.backoff.next())
            except Gone:
                log.info("kubernetes pod watch of node %s: resourceVersion %s expired, listing again",
                         self.node, self.resource_version)
                self.stats["relists"] += 1
                if self._just_listed:  # expired at once, again: do not hammer the API server with lists
                    await asyncio.sleep(self.backoff.next())
                self.resource_version = None
            except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.stats["errors"] += 1
                delay = self.backoff.next(getattr(exc, "retry_after", None))
                log.warning("kubernetes pod watch of node %s: %s (%s); retrying in %.1fs",
                            self.node, exc or "no answer", type(exc).__name__, delay)
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        # the first list from the API server's cache (resourceVersion=0); after a 410, the latest state
        params = {**self.selectors, "limit": "500"}
        if not self.synced.is_set():
            params["resourceVersion"] = "0"
        seen: dict[str, dict[str, Any]] = {}
        while True:
            self.stats["lists"] += 1
            page = await self.client.get(PODS_PATH, params)
            for item in page.get("items") or []:
                pod = trim_pod(item)
                seen[pod_key(pod)] = pod
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                break
            params = {**self.selectors, "limit": "500", "continue": meta["continue"]}
        for key in [k for k in self.pods if k not in seen]:
            self._remove(key)
        for pod in seen.values():
            self._store(pod)
        self.resource_version = str(meta.get("resourceVersion", ""))
        self._just_listed = True
        self.synced.set()

    async def _watch(self) -> bool:
        """One watch stream until the server ends it; whether it delivered anything."""
        timeout = int(self.watch_timeout * (1 + random.random()))  # spread, as client-go does
        params = {**self.selectors, "watch": "1", "allowWatchBookmarks": "true",
                  "resourceVersion": self.resource_version or "", "timeoutSeconds": str(max(timeout, 1))}
        idle = self.idle_timeout if self.idle_timeout is not None else timeout + 30.0
        self.stats["watches"] += 1
        delivered = False
        async for event in self.client.watch(PODS_PATH, params, idle):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                raise status_error(obj)
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if kind in ("ADDED", "MODIFIED"):
                self._store(trim_pod(obj))
            elif kind == "DELETED":
                self._remove(pod_key(obj))
            elif kind != "BOOKMARK":
                continue
            if version:
                self.resource_version = str(version)
            delivered, self._just_listed = True, False
        return delivered


# -- one watch per node, whoever asks ---------------------------------------------------------------

_shared: dict[tuple[Any, ...], tuple[PodWatcher, asyncio.Task[None], list[int]]] = {}


@contextlib.asynccontextmanager
async def shared_pod_watcher(config: ClusterConfig, node: str, *, label_selector: str | None = None,
                             field_selector: str | None = None, **options: Any) -> AsyncIterator[PodWatcher]:
    """The running PodWatcher for this cluster, credentials, node and selectors, started by the first user and
    stopped when the last one leaves (``options`` are PodWatcher's, taken from the first user)."""
    key = (id(asyncio.get_running_loop()), config.source, config.server, node, label_selector, field_selector)
    if key not in _shared:
        watcher = PodWatcher(KubeClient(config), node, label_selector=label_selector,
                             field_selector=field_selector, **options)
        task = asyncio.get_running_loop().create_task(watcher.run(), name=f"kubernetes pod watch {node}")
        _shared[key] = (watcher, task, [0])
    watcher, task, users = _shared[key]
    users[0] += 1
    try:
        yield watcher
    finally:
        users[0] -= 1
        if users[0] == 0:
            del _shared[key]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await watcher.client.close()
