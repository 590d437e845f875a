"""The node-scoped pod cache: one list + watch of this node's pods (``fieldSelector=spec.nodeName=<node>``),
kept in memory as trimmed pod objects and shared by every component that asks for the same node; and, for the
components that want namespace labels or annotations, one list + watch of the namespaces, shared the same way.

The watch follows the API conventions client-go's reflector follows: the first list is served from the API
server's cache (``resourceVersion=0``), the watch resumes from the last resourceVersion seen (bookmarks
included), ``410 Gone`` (as a status or an ERROR event) lists again and reconciles the cache (pods gone in the
meantime are reported deleted, none is lost), errors back off with full jitter (``Retry-After`` honoured),
and a watch stream silent for longer than its own timeout is taken for a dead connection.

A deleted pod's entry is kept (``find``, not ``get``) while the tail source has any file of it open
(``agent.kubernetes.files``), then ``deleted_pod_grace`` seconds, so the last lines of a short-lived pod still
find their metadata. ``memory_bytes()`` is what the cached objects take (``deep_size`` of each trimmed pod, plus
the indexes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import aiohttp

from agent.core.retry import Backoff
from agent.kubernetes.client import ApiError, Gone, KubeClient, status_error
from agent.kubernetes.config import ClusterConfig
from agent.kubernetes.files import ContainerFiles, container_files

log = logging.getLogger(__name__)

PODS_PATH = "/api/v1/pods"
NAMESPACES_PATH = "/api/v1/namespaces"
PRUNE_EVERY = 0.5  # seconds between two looks at the deleted pods kept
Listener = Callable[[str, dict[str, Any]], None]  # ("ADDED" | "MODIFIED" | "DELETED", object)
RequestListener = Callable[[str, str], None]  # (verb, result): one API request made


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
                 "imageID": s.get("imageID", ""),
                 # the previous instance of a restarted container: the kubelet keeps its log file too
                 "lastContainerID": ((s.get("lastState") or {}).get("terminated") or {}).get("containerID", "")}
                for s in items or []]

    trimmed_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "labels", "annotations",
                                         "creationTimestamp", "deletionTimestamp") if k in meta}
    if meta.get("ownerReferences"):
        trimmed_meta["ownerReferences"] = [{k: ref[k] for k in ("kind", "name", "controller") if k in ref}
                                           for ref in meta["ownerReferences"]]
    return {
        "metadata": trimmed_meta,
        "spec": {"nodeName": spec.get("nodeName", ""), "containers": containers(spec.get("containers")),
                 "initContainers": containers(spec.get("initContainers"))},
        "status": {"phase": status.get("phase", ""), "podIP": status.get("podIP", ""),
                   "hostIP": status.get("hostIP", ""),
                   "conditions": [{"type": "Ready", "status": c.get("status", "")}
                                  for c in status.get("conditions") or [] if c.get("type") == "Ready"],
                   "containerStatuses": statuses(status.get("containerStatuses")),
                   "initContainerStatuses": statuses(status.get("initContainerStatuses"))},
    }


def trim_namespace(namespace: dict[str, Any]) -> dict[str, Any]:
    """What the agent uses of a namespace: its name, uid, labels and annotations."""
    meta = namespace.get("metadata") or {}
    return {"metadata": {k: meta[k] for k in ("name", "uid", "resourceVersion", "labels", "annotations")
                         if k in meta}}


def pod_key(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def namespace_key(namespace: dict[str, Any]) -> str:
    return str((namespace.get("metadata") or {}).get("name", ""))


def container_ids(pod: dict[str, Any]) -> list[str]:
    """The ids (without ``containerd://`` / ``docker://``) of the containers the pod's status lists, previous
    instances of restarted ones included: the ids in its log files' names."""
    status = pod.get("status") or {}
    return [cid.partition("://")[2] or cid
            for s in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
            for cid in (s.get("containerID"), s.get("lastContainerID")) if cid]


def runs_another_instance(pod: dict[str, Any], container: str, container_id: str) -> bool:
    """Whether the pod's status lists container ``container`` with an id other than ``container_id``."""
    status = pod.get("status") or {}
    return any(s.get("name") == container and s.get("containerID") and
               (s["containerID"].partition("://")[2] or s["containerID"]) != container_id
               for s in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []))


def pod_owner(pod: dict[str, Any]) -> dict[str, str] | None:
    """The pod's controller as ``{kind, name}``: a ReplicaSet named ``<deployment>-<pod-template-hash>`` is its
    Deployment (no ReplicaSet is ever fetched); Job, DaemonSet, StatefulSet and others are as they are."""
    meta = pod.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ref is None:
        return None
    kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
    if kind == "ReplicaSet":
        template_hash = (meta.get("labels") or {}).get("pod-template-hash")
        if template_hash and name.endswith("-" + template_hash) and len(name) > len(template_hash) + 1:
            return {"kind": "Deployment", "name": name[:-len(template_hash) - 1]}
    return {"kind": kind, "name": name}


def deep_size(value: Any) -> int:
    """``sys.getsizeof`` of ``value`` and of every dict, list and value in it, each object once. Dict keys are
    not counted: orjson decodes them through its key cache and ``trim_pod``'s are literals, so every pod shares
    them (this is within a few per cent of what tracemalloc sees the trimmed views keep alive)."""
    seen: set[int] = set()
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if type(item) is dict:
            stack.extend(item.values())
        elif type(item) is list or type(item) is tuple:
            stack.extend(item)
    return total


class ResourceWatcher:
    """The objects of one API collection, listed then watched, as a cache (``objects``) with listeners.

    ``run()`` keeps the cache current until cancelled; ``synced`` is set once the first list is in;
    ``healthy`` says whether the API server answered the last request (a watch stream cut mid-way is not a
    failure to answer; a cache that is not healthy may be stale). ``subscribe(listener)`` replays the cached
    objects as ADDED and then calls the listener on every change. Every request made is counted in
    ``requests`` by (verb, result) and told to ``request_listeners``.
    """

    path = PODS_PATH
    what = "pods"

    def __init__(self, client: KubeClient, *, selectors: Mapping[str, str] | None = None,
                 watch_timeout: float = 300.0, idle_timeout: float | None = None,
                 backoff: Backoff | None = None) -> None:
        self.client = client
        self.selectors = dict(selectors or {})
        self.watch_timeout = watch_timeout
        self.idle_timeout = idle_timeout
        self.backoff = backoff or Backoff(initial=0.8, cap=30.0)
        self.objects: dict[str, dict[str, Any]] = {}
        self._listeners: list[Listener] = []
        self.request_listeners: list[RequestListener] = []
        self.requests: Counter[tuple[str, str]] = Counter()
        self.resource_version: str | None = None
        self._just_listed = False
        self.synced = asyncio.Event()
        self.healthy = False
        self.stats = {"lists": 0, "watches": 0, "relists": 0, "errors": 0}
        self._waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._watch_opened: float | None = None  # when the server accepted the current (last) watch
        self._watch_delivered = False  # whether it delivered an event

    def trim(self, obj: dict[str, Any]) -> dict[str, Any]:
        return trim_pod(obj)

    def key(self, obj: dict[str, Any]) -> str:
        return pod_key(obj)

    @property
    def label(self) -> str:
        return self.what

    # -- the cache --------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event, obj)`` for each cached object now (ADDED), then on every change; returns the
        function that unsubscribes."""
        self._listeners.append(listener)
        for obj in list(self.objects.values()):
            self._call(listener, "ADDED", obj)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def wait_for(self, key: str, within: float) -> dict[str, Any] | None:
        """The object cached under ``key`` (``namespace/name`` for a pod), once it is, or None after ``within``
        seconds."""
        found = self.objects.get(key)
        if found is not None:
            return found
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        try:
            return await asyncio.wait_for(future, within)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(future)
                if not waiters:
                    del self._waiters[key]

    def _call(self, listener: Listener, event: str, obj: dict[str, Any]) -> None:
        try:
            listener(event, obj)
        except Exception:  # a listener's fault stays with it: the watch and the other listeners go on
            log.exception("kubernetes %s listener failed on %s %s", self.what, event, self.key(obj))

    def _store(self, obj: dict[str, Any]) -> None:
        key = self.key(obj)
        old = self.objects.get(key)
        if old is not None and old["metadata"].get("resourceVersion") == obj["metadata"].get("resourceVersion"):
            return
        self.objects[key] = obj
        self._stored(key, obj, old)
        for future in self._waiters.pop(key, ()):
            if not future.done():
                future.set_result(obj)
        self._emit("ADDED" if old is None else "MODIFIED", obj)

    def adopt(self, previous: ResourceWatcher) -> None:
        """Start from what a stopped watch of the same objects held (its users left for a reload): the first
        list then reconciles it, and what is gone meanwhile is seen deleted."""
        for obj in previous.objects.values():
            self._store(obj)

    def _stored(self, key: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Bookkeeping of a subclass when an object is added or replaced."""

    def _remove(self, key: str) -> None:
        obj = self.objects.pop(key, None)
        if obj is None:
            return
        self._removed(key, obj)
        self._emit("DELETED", obj)

    def _removed(self, key: str, obj: dict[str, Any]) -> None:
        """Bookkeeping of a subclass when an object is deleted."""

    def _emit(self, event: str, obj: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            self._call(listener, event, obj)

    def _count(self, verb: str, result: str) -> None:
        self.requests[(verb, result)] += 1
        for listener in list(self.request_listeners):
            try:
                listener(verb, result)
            except Exception:
                log.exception("kubernetes request listener failed")

    # -- list and watch ---------------------------------------------------------------------------

    async def run(self) -> None:
        """List, then watch, forever: relist on 410 Gone, back off on errors, resume after a dropped stream."""
        while True:
            self._watch_opened = None  # a list that fails says nothing of the watch before it
            try:
                if self.resource_version is None:
                    await self._list()
                if await self._watch() or self._watch_ran_well():
                    self.backoff.reset()
                else:  # a stream that ends at once, again and again, must not spin
                    await asyncio.sleep(self.backoff.next())
            except Gone:
                log.info("kubernetes %s watch: resourceVersion %s expired, listing again",
                         self.label, self.resource_version)
                self.stats["relists"] += 1
                if self._just_listed:  # expired at once, again: do not hammer the API server with lists
                    await asyncio.sleep(self.backoff.next())
                self.resource_version = None
            except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.stats["errors"] += 1
                if self._watch_ran_well():  # cut after running well: a new incident, not the old one's next step
                    self.backoff.reset()
                if not isinstance(exc, aiohttp.ClientPayloadError):  # not a stream cut mid-way: no answer
                    self.healthy = False
                delay = self.backoff.next(getattr(exc, "retry_after", None))
                log.warning("kubernetes %s watch: %s (%s); retrying in %.1fs",
                            self.label, exc or "no answer", type(exc).__name__, delay)
                await asyncio.sleep(delay)
            except Exception:  # an object it cannot use (or a bug): the cache must not stop for good
                self.stats["errors"] += 1
                delay = self.backoff.next()
                log.exception("kubernetes %s watch failed; listing again in %.1fs", self.label, delay)
                self.resource_version = None
                await asyncio.sleep(delay)

    def _answered(self) -> None:
        """The API server accepted a watch: it is there (a quiet node may send no event for minutes)."""
        self.healthy = True
        self._watch_opened = time.monotonic()
        self._count("watch", "200")

    def _watch_ran_well(self) -> bool:
        """Whether the last watch was accepted and then delivered events or lasted a second (client-go's
        reflector resets its backoff then): a failure after it starts the backoff afresh."""
        opened = self._watch_opened
        return opened is not None and (self._watch_delivered or time.monotonic() - opened >= 1.0)

    async def _request(self, verb: str, call: Any) -> Any:
        try:
            result = await call
        except ApiError as exc:
            self._count(verb, str(exc.status))
            raise
        except (aiohttp.ClientError, TimeoutError, OSError):
            self._count(verb, "error")
            raise
        self._count(verb, "200")
        return result

    async def _list(self) -> None:
        # the first list from the API server's cache (resourceVersion=0); after a 410, the latest state
        params = {**self.selectors, "limit": "500"}
        if not self.synced.is_set():
            params["resourceVersion"] = "0"
        seen: dict[str, dict[str, Any]] = {}
        while True:
            self.stats["lists"] += 1
            page = await self._request("list", self.client.get(self.path, params))
            for item in page.get("items") or []:
                obj = self.trim(item)
                seen[self.key(obj)] = obj
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                break
            params = {**self.selectors, "limit": "500", "continue": meta["continue"]}
        for key in [k for k in self.objects if k not in seen]:
            self._remove(key)
        for obj in seen.values():
            self._store(obj)
        self.resource_version = str(meta.get("resourceVersion", ""))
        self._just_listed = True
        self.healthy = True
        self.synced.set()

    async def _watch(self) -> bool:
        """One watch stream until the server ends it; whether it delivered anything."""
        timeout = int(self.watch_timeout * (1 + random.random()))  # spread, as client-go does
        params = {**self.selectors, "watch": "1", "allowWatchBookmarks": "true",
                  "resourceVersion": self.resource_version or "", "timeoutSeconds": str(max(timeout, 1))}
        idle = self.idle_timeout if self.idle_timeout is not None else timeout + 30.0
        self.stats["watches"] += 1
        self._watch_opened, self._watch_delivered = None, False
        try:
            async for event in self.client.watch(self.path, params, idle, self._answered):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise status_error(obj)
                self.healthy = True
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if kind in ("ADDED", "MODIFIED"):
                    self._store(self.trim(obj))
                elif kind == "DELETED":
                    self._remove(self.key(obj))
                elif kind != "BOOKMARK":
                    continue
                if version:
                    self.resource_version = str(version)
                self._watch_delivered, self._just_listed = True, False
        except ApiError as exc:
            if self._watch_opened is None:  # refused; an ERROR event in an accepted stream was counted as 200
                self._count("watch", str(exc.status))
            raise
        except (aiohttp.ClientError, TimeoutError, OSError):
            if self._watch_opened is None:  # never accepted; a stream cut mid-way was counted when opened
                self._count("watch", "error")
            raise
        self.healthy = True
        return self._watch_delivered


class PodWatcher(ResourceWatcher):
    """The pods of one node, listed then watched (``pods``, ``get``, ``by_uid``, ``find``,
    ``find_container``), with listeners.

    ``find`` also answers for a deleted pod while a file of it is open (``files``), then for
    ``deleted_pod_grace`` seconds (the longest any user asked for: :meth:`retain_deleted_for`). Deleted pods are
    kept by uid: a pod recreated under its name (a StatefulSet's) does not replace the old one for the old
    container's files, which ``find_container`` tells apart by the container id in their names.
    """

    def __init__(self, client: KubeClient, node: str, *, label_selector: str | None = None,
                 field_selector: str | None = None, files: ContainerFiles | None = None,
                 clock: Callable[[], float] = time.monotonic, **options: Any) -> None:
        selectors = {"fieldSelector": ",".join(filter(None, [f"spec.nodeName={node}", field_selector]))}
        if label_selector:
            selectors["labelSelector"] = label_selector
        super().__init__(client, selectors=selectors, **options)
        self.node = node
        self.files = files if files is not None else container_files
        self.clock = clock
        self.deleted_pod_grace = 0.0
        self.deleted: dict[str, tuple[dict[str, Any], float]] = {}  # uid -> (pod, when deleted)
        self._deleted_names: dict[str, str] = {}  # key -> uid of the last pod of that name deleted, if kept
        self._uids: dict[str, str] = {}  # uid -> key, live pods
        self._containers: dict[str, dict[str, Any]] = {}  # container id -> its pod (live or deleted, kept)
        self._sizes: dict[str, int] = {}  # uid (else key) -> deep size of the pod kept (live or deleted)
        self._bytes = 0
        self._next_prune = 0.0

    @property
    def label(self) -> str:
        return f"pod of node {self.node}"

    @property
    def pods(self) -> dict[str, dict[str, Any]]:
        return self.objects

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A live pod."""
        return self.objects.get(f"{namespace}/{name}")

    def find(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A live pod, else a deleted one still kept for its files."""
        if self.deleted:
            self._maybe_prune()
        key = f"{namespace}/{name}"
        pod = self.objects.get(key)
        if pod is not None:
            return pod
        uid = self._deleted_names.get(key)
        kept = self.deleted.get(uid) if uid is not None else None
        return kept[0] if kept is not None else None

    def find_container(self, namespace: str, name: str, container_id: str) -> tuple[dict[str, Any] | None, bool]:
        """The pod (live, or deleted and kept) ``namespace/name`` whose status lists ``container_id``, and True;
        else what ``find`` answers, and False (the id is not known: the pod's status may not list it yet)."""
        if self.deleted:
            self._maybe_prune()
        pod = self._containers.get(container_id) if container_id else None
        if pod is not None:
            meta = pod["metadata"]
            if meta.get("name") == name and meta.get("namespace") == namespace:
                return pod, True
        return self.find(namespace, name), False

    def _maybe_prune(self) -> None:
        now = self.clock()
        if now >= self._next_prune:
            self.prune(now)

    def by_uid(self, uid: str) -> dict[str, Any] | None:
        key = self._uids.get(uid)
        return self.objects.get(key) if key is not None else None

    def adopt(self, previous: ResourceWatcher) -> None:
        """As :meth:`ResourceWatcher.adopt`, keeping the deleted pods it kept (and its grace)."""
        super().adopt(previous)
        if isinstance(previous, PodWatcher):
            self.deleted_pod_grace = max(self.deleted_pod_grace, previous.deleted_pod_grace)
            for ident, (pod, deleted_at) in previous.deleted.items():
                live = self.objects.get(pod_key(pod))
                if live is None or _ident(live) != ident:
                    self._keep_deleted(pod, deleted_at)

    def retain_deleted_for(self, seconds: float) -> None:
        """Keep deleted pods at least ``seconds`` after their last file closed (the longest asked wins)."""
        self.deleted_pod_grace = max(self.deleted_pod_grace, float(seconds))

    def memory_bytes(self) -> int:
        """What the cache holds: every object of every trimmed pod kept, and the indexes."""
        self._maybe_prune()
        indexes = (self.objects, self.deleted, self._deleted_names, self._uids, self._containers, self._sizes)
        return self._bytes + sum(sys.getsizeof(index) for index in indexes) + sum(
            sys.getsizeof(entry) for entry in self.deleted.values()) + sum(
            sys.getsizeof(uid) + sys.getsizeof(key) for uid, key in self._uids.items()) + sum(
            sys.getsizeof(cid) for cid in self._containers) + sum(
            sys.getsizeof(key) for key in self._deleted_names)

    def size(self) -> int:
        """Pods kept, deleted ones included."""
        self._maybe_prune()
        return len(self.objects) + len(self.deleted)

    async def wait_for_pod(self, namespace: str, name: str, within: float) -> dict[str, Any] | None:
        """The pod once the watch delivers it (a deleted one kept counts), or None after ``within`` seconds."""
        return self.find(namespace, name) or await self.wait_for(f"{namespace}/{name}", within)

    def _stored(self, key: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        ident = _ident(obj)
        if old is not None:
            if _ident(old) != ident:  # replaced under its name unseen (a relist after an outage): deleted
                self._uids.pop(old["metadata"].get("uid", ""), None)
                self._keep_deleted(old, self.clock())
            else:
                self._unindex(old)
        self._deleted_names.pop(key, None)  # the name is the live pod's; a deleted one stays for its containers
        kept = self.deleted.pop(ident, None)  # the same pod back (a reconciling list)
        if kept is not None:
            self._unindex(kept[0])
        self._account(ident, obj)
        for cid in container_ids(obj):
            self._containers[cid] = obj
        if uid := obj["metadata"].get("uid"):
            self._uids[uid] = key

    def _removed(self, key: str, obj: dict[str, Any]) -> None:
        self._uids.pop(obj["metadata"].get("uid", ""), None)
        now = self.clock()
        self._keep_deleted(obj, now)
        self.prune(now)

    def _keep_deleted(self, pod: dict[str, Any], deleted_at: float) -> None:
        ident = _ident(pod)
        self.deleted[ident] = (pod, deleted_at)
        key = pod_key(pod)
        if key not in self.objects or self.objects[key] is pod:
            self._deleted_names[key] = ident
        self._account(ident, pod)
        for cid in container_ids(pod):
            self._containers[cid] = pod

    def _unindex(self, pod: dict[str, Any]) -> None:
        """Forget the container ids of this version of a pod (those still pointing at it)."""
        for cid in container_ids(pod):
            if self._containers.get(cid) is pod:
                del self._containers[cid]

    def _account(self, ident: str, obj: dict[str, Any] | None) -> None:
        self._bytes -= self._sizes.pop(ident, 0)
        if obj is not None:
            size = deep_size(obj)
            self._sizes[ident] = size
            self._bytes += size

    def prune(self, now: float) -> None:
        """Forget the deleted pods no file of which is open, ``deleted_pod_grace`` after their deletion and
        after their last file closed."""
        self._next_prune = now + PRUNE_EVERY
        grace = self.deleted_pod_grace
        for ident, (pod, deleted_at) in list(self.deleted.items()):
            key = pod_key(pod)
            if self.files.is_open(key, container_ids(pod)):
                continue
            closed = self.files.last_closed(key)
            since = max(deleted_at, closed) if closed is not None else deleted_at
            if now - since >= grace:
                del self.deleted[ident]
                if self._deleted_names.get(key) == ident:
                    del self._deleted_names[key]
                self._unindex(pod)
                self._account(ident, None)


def _ident(pod: dict[str, Any]) -> str:
    """A pod's uid (its name's key if it has none): a pod recreated under its name is another pod."""
    return str(pod["metadata"].get("uid") or pod_key(pod))


class NamespaceWatcher(ResourceWatcher):
    """The cluster's namespaces, listed then watched (for their labels and annotations)."""

    path = NAMESPACES_PATH
    what = "namespaces"

    def trim(self, obj: dict[str, Any]) -> dict[str, Any]:
        return trim_namespace(obj)

    def key(self, obj: dict[str, Any]) -> str:
        return namespace_key(obj)

    def get(self, name: str) -> dict[str, Any] | None:
        return self.objects.get(name)


# -- one watch per node, whoever asks ---------------------------------------------------------------

HANDOVER = 30.0  # seconds a stopped watch's cache is kept for the next user of the same watch (a reload)

W = TypeVar("W", bound=ResourceWatcher)
_shared: dict[tuple[Any, ...], tuple[ResourceWatcher, asyncio.Task[None], list[int]]] = {}
_stopped: dict[tuple[Any, ...], tuple[ResourceWatcher, float, asyncio.AbstractEventLoop]] = {}


class WatchShare(Generic[W]):
    """One user's share of the running watch under ``key``: ``async with`` it (or ``await share.enter()``, then
    ``await share.release()``). The first share starts the watch, the last one released stops it.

    A plain object, not an async generator: a share released from another task than the one that took it, or
    cut short by a cancellation (a drain past shutdown_timeout), leaves nothing for the event loop to finalize.
    """

    def __init__(self, key: tuple[Any, ...], make: Callable[[], W], name: str) -> None:
        self.key = key
        self.make = make
        self.name = name
        self._entry: tuple[Any, ...] | None = None  # the full key, while this share is held

    async def enter(self) -> W:
        """Join the watch (start it if it is the first share); the watcher."""
        if self._entry is not None:
            raise RuntimeError("this share of the watch is already held")
        loop = asyncio.get_running_loop()
        key = (id(loop), *self.key)
        if key not in _shared:
            fresh = self.make()
            previous = _stopped.pop(key, None)
            if previous is not None and previous[2] is loop and time.monotonic() - previous[1] < HANDOVER:
                fresh.adopt(previous[0])  # a reload: deleted pods whose files are read are not forgotten
            _shared[key] = (fresh, loop.create_task(fresh.run(), name=self.name), [0])
        watcher, _, users = _shared[key]
        users[0] += 1
        self._entry = key
        return watcher  # type: ignore[return-value]  # made by this key's make()

    async def release(self) -> None:
        """Leave the watch (stop it if this was the last share); a second call does nothing. The shared state is
        settled before anything is awaited: a cancellation meanwhile only skips closing the connection."""
        key, self._entry = self._entry, None
        if key is None or key not in _shared:
            return
        watcher, task, users = _shared[key]
        users[0] -= 1
        if users[0] > 0:
            return
        del _shared[key]
        task.cancel()
        now = time.monotonic()
        for old in [k for k, (_, at, _) in _stopped.items() if now - at >= HANDOVER]:
            del _stopped[old]
        _stopped[key] = (watcher, now, asyncio.get_running_loop())
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await watcher.client.close()

    async def __aenter__(self) -> W:
        return await self.enter()

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


def shared_pod_watcher(config: ClusterConfig, node: str, *, label_selector: str | None = None,
                       field_selector: str | None = None, **options: Any) -> WatchShare[PodWatcher]:
    """A share of the running PodWatcher for this cluster, credentials, node and selectors, started by the first
    user and stopped when the last one leaves (``options`` are PodWatcher's, taken from the first user)."""
    key = ("pods", config.source, config.server, node, label_selector, field_selector)

    def make() -> PodWatcher:
        return PodWatcher(KubeClient(config), node, label_selector=label_selector, field_selector=field_selector,
                          **options)

    return WatchShare(key, make, f"kubernetes pod watch {node}")


def shared_namespace_watcher(config: ClusterConfig, **options: Any) -> WatchShare[NamespaceWatcher]:
    """A share of the running NamespaceWatcher of this cluster and credentials, as :func:`shared_pod_watcher`."""

    def make() -> NamespaceWatcher:
        return NamespaceWatcher(KubeClient(config), **options)

    return WatchShare(("namespaces", config.source, config.server), make, "kubernetes namespace watch")
