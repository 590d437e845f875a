"""A fake Kubernetes API server (pods and namespaces) for the agent's tests, after the API conventions.

`async with FakeKubernetes(token="t") as k8s:` then `k8s.add_pod(pod)`, `k8s.modify_pod(ns, name, fn)`,
`k8s.delete_pod(ns, name)` (and the same for namespaces), or `k8s.populate(110)` for a node's worth of
realistic pods (`realistic_pod`: labels, annotations, an owner, container IDs, managedFields; ~5-10 KB each).

What it serves, as https://kubernetes.io/docs/reference/using-api/api-concepts/ describes it:
- list, watch and get of pods (`/api/v1/pods`, `/api/v1/namespaces/{ns}/pods[/{name}]`) and of namespaces
  (`/api/v1/namespaces[/{name}]`); a missing object is a 404 `Status` (reason NotFound, details name/kind);
- `fieldSelector` (pods: `spec.nodeName`, `metadata.namespace`, `metadata.name`, `status.phase`; namespaces:
  `metadata.name`, `status.phase`; `=`, `==`, `!=`; another field is a 400) and `labelSelector`
  (`k=v`, `k!=v`, `k`, `!k`);
- lists: `limit`/`continue` (an opaque token; every page carries the first page's resourceVersion;
  `remainingItemCount` only without selectors; a token from before `compact()` is a 410 Expired), items
  without kind/apiVersion as the server encodes them;
- resourceVersions from one counter for every kind (etcd's revision): each change bumps it, a list's
  metadata.resourceVersion is the counter when it was served;
- watches: `resourceVersion` unset or "0" starts with synthetic ADDED events of what exists, else replays
  the changes after it; one JSON event a line (ADDED/MODIFIED/DELETED with the whole object, DELETED with its
  last state; BOOKMARK with only kind, apiVersion and metadata.resourceVersion, sent only when
  `allowWatchBookmarks=true`); `sendInitialEvents=true` ends the initial ADDEDs with a BOOKMARK annotated
  `k8s.io/initial-events-end: "true"`; a resourceVersion older than the last `compact()` is 410 Gone, as an
  ERROR event (reason Expired) or, with `expired_as="status"`, an HTTP 410; the stream ends after
  `timeoutSeconds` (default 1800);
- bearer auth: a missing or unknown token is a 401 `Status`.

Trouble to script: `fail_next_requests(n, status, retry_after)` (429 TooManyRequests with `Retry-After` and
details.retryAfterSeconds as priority and fairness answers, 500 InternalError, 503, 410 ...; any API path),
`drop_next_requests()`, `delay_headers()` (answers held back before their headers, watches included),
`stall_watches()` / `resume_watches()` (open watches go silent, connection kept), `drop_watches()` (cut
mid-stream), `rotate_token()` (the old token gets 401), `compact()`, `bookmark()`.

The request log is `requests` (base); `api_call(record)` says which verb, resource, namespace and name a
request was and whether it carried credentials; `calls()`, `count()` and `request_summary()` count them.
Run alone: `python tests/fakes/kubernetes.py --port P --pods 110 --token-file F` (prints `ready <port>`;
`GET /fake/requests` answers the summary as JSON, `?full=1` every API request).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import hashlib
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fakes.base import RECORD, FakeHTTPServer, RecordedRequest, serve_main

from agent.bench.peers.kubernetes import container_log_name  # the kubelet's file name of a container's log

__all__ = ["FakeKubernetes", "api_call", "container_log_name", "make_namespace", "make_pod", "realistic_pod"]

Obj = dict[str, Any]
Pod = Obj
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects

FIELDS: dict[str, Callable[[Obj], str]] = {
    "spec.nodeName": lambda p: p["spec"].get("nodeName", ""),
    "metadata.namespace": lambda p: p["metadata"].get("namespace", ""),
    "metadata.name": lambda p: p["metadata"].get("name", ""),
    "status.phase": lambda p: p.get("status", {}).get("phase", ""),
}
NAMESPACE_FIELDS: dict[str, Callable[[Obj], str]] = {
    "metadata.name": FIELDS["metadata.name"], "status.phase": FIELDS["status.phase"]}


@dataclass(frozen=True)
class Resource:
    """A kind the fake serves: its plural (the URL's name), kinds and the field selectors it supports."""

    plural: str
    kind: str
    namespaced: bool
    fields: dict[str, Callable[[Obj], str]]


PODS = Resource("pods", "Pod", True, FIELDS)
NAMESPACES = Resource("namespaces", "Namespace", False, NAMESPACE_FIELDS)
RESOURCES = {r.plural: r for r in (PODS, NAMESPACES)}

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
           410: "Expired", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
           504: "Timeout"}
MESSAGES = {429: "Too many requests, please try again later.", 410: "too old resource version"}
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def make_pod(name: str, namespace: str = "default", node: str = "node-a", ip: str = "10.0.0.1", **extra: Any) -> Pod:
    """A minimal pod as the API serves it; `extra` merges into metadata/spec/status by key."""
    pod: Pod = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
                "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]},
                "status": {"phase": "Running", "podIP": ip, "hostIP": "192.168.0.1"}}
    for section, values in extra.items():
        pod[section].update(values)
    return pod


def make_namespace(name: str, labels: dict[str, str] | None = None,
                   annotations: dict[str, str] | None = None) -> Obj:
    """A namespace as the API serves it (with the `kubernetes.io/metadata.name` label the server sets)."""
    meta: Obj = {"name": name, "uid": _uid(f"ns/{name}"), "creationTimestamp": "2026-01-05T09:00:00Z",
                 "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta,
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


# -- realistic pods ------------------------------------------------------------------------------------

APPS = ("checkout", "cart", "catalog", "payments", "search", "frontend", "auth", "orders", "inventory",
        "shipping", "recommend", "email", "ledger", "gateway", "profile", "pricing", "reviews", "media")
APP_NAMESPACES = ("shop", "payments", "platform", "search", "monitoring")
_HASH_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of pod-template-hash and name suffixes


def _hex(seed: str, length: int = 64) -> str:
    out = ""
    while len(out) < length:
        out += hashlib.sha256(f"{seed}/{len(out)}".encode()).hexdigest()
    return out[:length]


def _uid(seed: str) -> str:
    h = _hex(seed, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _safe(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_HASH_CHARS[b % len(_HASH_CHARS)] for b in digest[:length])


def _managed_fields(labels: dict[str, str], annotations: dict[str, str], containers: list[Obj],
                    owner_uid: str) -> list[Obj]:
    """managedFields as a controller and the kubelet leave them: most of a real pod's bytes."""
    def container_fields(c: Obj) -> Obj:
        return {".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                "f:env": {f'k:{{"name":"{e["name"]}"}}': {".": {}, "f:name": {}, "f:value": {}}
                          for e in c.get("env", [])},
                "f:ports": {f'k:{{"containerPort":{p["containerPort"]},"protocol":"TCP"}}':
                            {".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}}
                            for p in c.get("ports", [])},
                "f:resources": {".": {}, "f:limits": {".": {}, "f:cpu": {}, "f:memory": {}},
                                "f:requests": {".": {}, "f:cpu": {}, "f:memory": {}}},
                "f:readinessProbe": {".": {}, "f:failureThreshold": {}, "f:httpGet": {
                    ".": {}, "f:path": {}, "f:port": {}, "f:scheme": {}}, "f:periodSeconds": {}},
                "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {},
                "f:volumeMounts": {".": {}, 'k:{"mountPath":"/etc/config"}': {".": {}, "f:mountPath": {},
                                                                              "f:name": {}}}}

    spec = {"f:metadata": {"f:annotations": {".": {}, **{f"f:{k}": {} for k in annotations}},
                           "f:generateName": {}, "f:labels": {".": {}, **{f"f:{k}": {} for k in labels}},
                           "f:ownerReferences": {".": {}, f'k:{{"uid":"{owner_uid}"}}': {}}},
            "f:spec": {"f:containers": {f'k:{{"name":"{c["name"]}"}}': container_fields(c) for c in containers},
                       "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {},
                       "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {},
                       "f:volumes": {".": {}, 'k:{"name":"config"}': {".": {}, "f:configMap": {
                           ".": {}, "f:defaultMode": {}, "f:name": {}}, "f:name": {}}}}}
    status: Obj = {"f:status": {"f:conditions": {f'k:{{"type":"{t}"}}': {".": {}, "f:lastProbeTime": {},
                                                                   "f:lastTransitionTime": {}, "f:status": {},
                                                                   "f:type": {}}
                                            for t in ("ContainersReady", "Initialized", "PodScheduled", "Ready")},
                           "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {},
                           "f:podIPs": {".": {}, 'k:{"ip":"10.0.0.1"}': {".": {}, "f:ip": {}}},
                           "f:startTime": {}}}
    return [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
             "time": "2026-01-05T09:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": spec},
            {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-01-05T09:00:07Z",
             "fieldsType": "FieldsV1", "fieldsV1": status, "subresource": "status"}]


def realistic_pod(index: int, node: str = "node-a", runtime: str = "containerd") -> Pod:
    """The `index`th pod of a node as a Deployment (most), StatefulSet or DaemonSet makes it: labels,
    annotations, ownerReferences, one or two containers with their statuses (containerID
    `<runtime>://<64 hex>`), env, probes, volumes and managedFields. The same arguments give the same pod."""
    app = APPS[index % len(APPS)]
    namespace = "kube-system" if index % 11 == 10 else APP_NAMESPACES[index % len(APP_NAMESPACES)]
    seed = f"{node}/{index}"
    labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "shop",
              "app.kubernetes.io/version": f"1.{index % 7}.{index % 3}", "team": f"team-{index % 4}"}
    if index % 11 == 10:  # a DaemonSet's pod
        owner_kind, owner = "DaemonSet", f"node-agent-{index}"
        name = f"{owner}-{_safe(seed, 5)}"
        labels.update({"controller-revision-hash": _safe(seed + "rev", 10), "pod-template-generation": "3"})
    elif index % 7 == 6:  # a StatefulSet's pod
        owner_kind, owner = "StatefulSet", f"{app}-db-{index}"
        name = f"{owner}-0"
        labels.update({"controller-revision-hash": f"{owner}-{_safe(seed + 'rev', 10)}",
                       "statefulset.kubernetes.io/pod-name": name})
    else:
        template_hash = _safe(seed + "hash", 10)
        owner_kind, owner = "ReplicaSet", f"{app}-{index}-{template_hash}"
        name = f"{owner}-{_safe(seed, 5)}"
        labels["pod-template-hash"] = template_hash
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": "9102",
                   "kubectl.kubernetes.io/restartedAt": "2026-01-05T08:59:00Z",
                   "checksum/config": _hex(seed + "config")}
    names = ["app", "istio-proxy"] if index % 4 == 0 else ["app"]
    containers: list[Obj] = [{"name": c, "image": f"registry.example.com/shop/{app if c == 'app' else c}:1.{index % 7}.0",
                   "imagePullPolicy": "IfNotPresent",
                   "env": [{"name": f"SETTING_{k}", "value": f"value-{k}-{_safe(seed + str(k), 8)}"}
                           for k in range(6)],
                   "ports": [{"name": "http", "containerPort": 8080 + i, "protocol": "TCP"}],
                   "resources": {"limits": {"cpu": "500m", "memory": "256Mi"},
                                 "requests": {"cpu": "100m", "memory": "128Mi"}},
                   "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080 + i, "scheme": "HTTP"},
                                      "periodSeconds": 10, "failureThreshold": 3},
                   "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}],
                   "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
                  for i, c in enumerate(names)]
    owner_uid = _uid(seed + "owner")
    ip = f"10.{index // 250}.{index % 250}.{10 + index % 200}"
    statuses = [{"name": c["name"], "image": c["image"], "imageID": f"{str(c['image']).split(':')[0]}@sha256:"
                 + _hex(seed + c["name"] + "image"), "containerID": f"{runtime}://{_hex(seed + c['name'])}",
                 "ready": True, "restartCount": index % 3, "started": True,
                 "state": {"running": {"startedAt": "2026-01-05T09:00:05Z"}},
                 "lastState": {}} for c in containers]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "generateName": name[:-5] if owner_kind != "StatefulSet" else owner + "-",
                         "namespace": namespace, "uid": _uid(seed), "creationTimestamp": "2026-01-05T09:00:00Z",
                         "labels": labels, "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": owner,
                                              "uid": owner_uid, "controller": True, "blockOwnerDeletion": True}],
                         "managedFields": _managed_fields(labels, annotations, containers, owner_uid)},
            "spec": {"nodeName": node, "containers": containers, "restartPolicy": "Always",
                     "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                     "serviceAccountName": "default", "schedulerName": "default-scheduler",
                     "securityContext": {}, "enableServiceLinks": True, "priority": 0,
                     "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                      "effect": "NoExecute", "tolerationSeconds": 300},
                                     {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                      "effect": "NoExecute", "tolerationSeconds": 300}],
                     "volumes": [{"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}}]},
            "status": {"phase": "Running", "hostIP": "192.168.0.10", "podIP": ip, "podIPs": [{"ip": ip}],
                       "qosClass": "Burstable", "startTime": "2026-01-05T09:00:01Z",
                       "conditions": [{"type": t, "status": "True", "lastProbeTime": None,
                                       "lastTransitionTime": "2026-01-05T09:00:07Z"}
                                      for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                       "containerStatuses": statuses}}


# -- the request log --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiCall:
    """What one API request was: `verb` list | watch | get, the resource's plural, namespace and name
    (when in the path), and whether it carried an Authorization header."""

    verb: str
    resource: str
    namespace: str | None
    name: str | None
    auth: bool


def api_call(record: RecordedRequest) -> ApiCall | None:
    """The API call a recorded request was, or None for a path outside /api/v1."""
    parts = record.path.strip("/").split("/")
    if parts[:2] != ["api", "v1"] or len(parts) < 3:
        return None
    rest, namespace = parts[2:], None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], (rest[1] if len(rest) > 1 else None)
    watching = record.query.get("watch") in ("1", "true")
    verb = "get" if name is not None else ("watch" if watching else "list")
    return ApiCall(verb, resource, namespace, name, "authorization" in record.headers)


def _status(code: int, reason: str | None = None, message: str | None = None, **details: Any) -> Obj:
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": message or MESSAGES.get(code, REASONS.get(code, "error").lower()),
                 "reason": reason or REASONS.get(code, "Unknown"), "code": code}
    if details:
        body["details"] = details
    return body


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
    resource: Resource
    namespace: str | None
    fields: list[tuple[str, str, str]]
    labels: list[tuple[str, str, str]]

    def matches(self, obj: Obj) -> bool:
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        for key, op, value in self.fields:
            actual = self.resource.fields[key](obj)
            if (actual == value) != (op == "="):
                return False
        labels = obj["metadata"].get("labels") or {}
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
    queue: asyncio.Queue[tuple[str, Obj] | None] = field(default_factory=asyncio.Queue)

    @property
    def resource(self) -> str:
        return self.query.resource.plural


class FakeKubernetes(FakeHTTPServer):
    """Pods and namespaces of a fake cluster, listed, watched and got; `requests` records every request."""

    def __init__(self, *, token: str | None = "secret-token", expired_as: str = "event", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens: set[str] = {token} if token else set()
        self.expired_as = expired_as  # "event": 200 then an ERROR event; "status": an HTTP 410
        self.objects: dict[str, dict[Key, Obj]] = {plural: {} for plural in RESOURCES}
        self.pods = self.objects["pods"]  # (namespace, name) -> pod
        self.namespaces = self.objects["namespaces"]  # ("", name) -> namespace
        self.rv = 100
        self.oldest_rv = 0  # watches and continue tokens from before this get 410 Gone
        self.history: list[tuple[int, str, str, Obj]] = []  # (rv, resource, event, object)
        self.watches: list[_Watch] = []
        self._stalled = False
        self._header_delay = 0.0
        self._header_delay_left: int | None = None

    # -- the cluster -----------------------------------------------------------------------------

    def _commit(self, resource: str, kind: str, obj: Obj) -> Obj:
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if kind == "DELETED":
            self.objects[resource].pop(key, None)
        else:
            self.objects[resource][key] = obj
        self.history.append((self.rv, resource, kind, obj))
        for watch in self.watches:
            if watch.resource == resource and watch.query.matches(obj):
                watch.queue.put_nowait((kind, obj))
        return obj

    def add_pod(self, pod: Pod) -> Pod:
        return self._commit("pods", "ADDED", pod)

    def modify_pod(self, namespace: str, name: str, change: Callable[[Pod], Any]) -> Pod:
        pod = copy.deepcopy(self.pods[(namespace, name)])
        change(pod)
        return self._commit("pods", "MODIFIED", pod)

    def delete_pod(self, namespace: str, name: str, graceful: bool = False) -> Pod:
        """Delete a pod; `graceful` first marks it (deletionTimestamp, a MODIFIED event) as kubectl delete does."""
        if graceful:
            self.modify_pod(namespace, name, lambda p: p["metadata"].update(
                deletionTimestamp="2026-01-05T10:00:00Z", deletionGracePeriodSeconds=30))
        return self._commit("pods", "DELETED", self.pods[(namespace, name)])

    def add_namespace(self, namespace: Obj) -> Obj:
        return self._commit("namespaces", "ADDED", namespace)

    def modify_namespace(self, name: str, change: Callable[[Obj], Any]) -> Obj:
        namespace = copy.deepcopy(self.namespaces[("", name)])
        change(namespace)
        return self._commit("namespaces", "MODIFIED", namespace)

    def delete_namespace(self, name: str) -> Obj:
        return self._commit("namespaces", "DELETED", self.namespaces[("", name)])

    def populate(self, count: int, node: str = "node-a", runtime: str = "containerd") -> list[Pod]:
        """Add `count` realistic pods of `node` (`realistic_pod(0..count-1)`) and their namespaces."""
        pods = [realistic_pod(i, node, runtime) for i in range(count)]
        for name in sorted({p["metadata"]["namespace"] for p in pods}):
            if ("", name) not in self.namespaces:
                self.add_namespace(make_namespace(name, labels={"tier": "apps" if name != "kube-system"
                                                                else "system"}))
        return [self.add_pod(p) for p in pods]

    def compact(self) -> None:
        """Forget the history: every resourceVersion before the current one is too old to watch from."""
        self.oldest_rv = self.rv
        self.history.clear()

    def bookmark(self) -> None:
        """Send a BOOKMARK (the current resourceVersion) to every watch that asked for them."""
        for watch in self.watches:
            if watch.bookmarks:
                watch.queue.put_nowait(("BOOKMARK", self._bookmark(watch.query.resource)))

    def _bookmark(self, resource: Resource, annotations: dict[str, str] | None = None) -> Obj:
        meta: Obj = {"resourceVersion": str(self.rv)}
        if annotations:
            meta["annotations"] = annotations
        return {"kind": resource.kind, "apiVersion": "v1", "metadata": meta}

    def drop_watches(self) -> None:
        """Cut every open watch connection without ending the stream properly."""
        for watch in list(self.watches):
            if watch.request.transport is not None:
                watch.request.transport.abort()
            watch.queue.put_nowait(None)

    def stall_watches(self) -> None:
        """Open watches (and new ones) go silent, connections kept and timeoutSeconds not honoured, until
        `resume_watches()`: what a half-dead connection or a stuck API server looks like to the client."""
        self._stalled = True

    def resume_watches(self) -> None:
        """Deliver what stalled watches held back, and go on."""
        self._stalled = False

    def delay_headers(self, seconds: float, requests: int | None = None) -> None:
        """Hold every API answer (the next `requests` ones if given) `seconds` before its status line and
        headers, watches included (base `slow()` delays after the handler, i.e. after a watch ended)."""
        self._header_delay, self._header_delay_left = seconds, requests

    def rotate_token(self, new: str, keep_old: bool = False) -> None:
        """Accept `new`; the old tokens stop working at once (401) unless `keep_old`."""
        self.tokens = (self.tokens | {new}) if keep_old else {new}

    # -- the request log ----------------------------------------------------------------------------

    def calls(self, verb: str | None = None, resource: str | None = "pods") -> list[RecordedRequest]:
        """The recorded API requests of this verb (list | watch | get) and resource (None: any)."""
        out = []
        for record in self.requests:
            call = api_call(record)
            if call and verb in (None, call.verb) and resource in (None, call.resource):
                out.append(record)
        return out

    def count(self, verb: str | None = None, resource: str | None = "pods") -> int:
        return len(self.calls(verb, resource))

    def request_summary(self) -> dict[str, int]:
        """API requests counted by `<verb> <resource>` (e.g. `list pods`, `get pods`), plus `unauthenticated`
        (no Authorization header) and `status <code>` for every answer that was not a 200."""
        summary: Counter[str] = Counter()
        for record in self.requests:
            if (call := api_call(record)) is None:
                continue
            summary[f"{call.verb} {call.resource}"] += 1
            if not call.auth:
                summary["unauthenticated"] += 1
            if record.status != 200:
                summary[f"status {record.status}"] += 1
        return dict(summary)

    @property
    def list_requests(self) -> list[RecordedRequest]:
        return self.calls("list", "pods")

    @property
    def watch_requests(self) -> list[RecordedRequest]:
        return self.calls("watch", "pods")

    @property
    def pod_get_requests(self) -> list[RecordedRequest]:
        return self.calls("get", "pods")

    def watches_of(self, resource: str) -> list[_Watch]:
        """The watch connections open now on `resource` (`watches` holds every one)."""
        return [w for w in self.watches if w.resource == resource]

    # -- HTTP --------------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/pods", self._collection)
        app.router.add_get("/api/v1/namespaces", self._collection)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods", self._collection)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods/{name}", self._object)
        app.router.add_get("/api/v1/namespaces/{name}", self._object)
        app.router.add_get("/fake/requests", self._summary)

    def _is_ingest(self, path: str) -> bool:
        return path.startswith("/api/")  # scripted failures apply to every API request

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                            headers=headers)

    async def _summary(self, request: web.Request) -> web.Response:
        if request.query.get("full") not in ("1", "true"):
            return self._json(200, self.request_summary())
        return self._json(200, [{"method": r.method, "path": r.path, "query": r.query, "status": r.status,
                                 "auth": "authorization" in r.headers} for r in self.requests if api_call(r)])

    async def _refused(self, request: web.Request) -> web.Response | None:
        """The common start of an API request: the held-back headers, auth, then a scripted failure."""
        if self._header_delay and (self._header_delay_left is None or self._header_delay_left > 0):
            if self._header_delay_left is not None:
                self._header_delay_left -= 1
            await asyncio.sleep(self._header_delay)
        auth = request.headers.get("Authorization", "")
        if self.tokens and not (auth.startswith("Bearer ") and auth[7:] in self.tokens):
            return self._json(401, _status(401, message="Unauthorized"))
        if failure := self.take_failure(request):
            headers: dict[str, str] = {}
            details: dict[str, Any] = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = str(int(failure.retry_after))
                details["retryAfterSeconds"] = int(headers["Retry-After"])
            return self._json(failure.status, _status(failure.status, **details), headers)
        return None

    async def _object(self, request: web.Request) -> web.StreamResponse:
        if refused := await self._refused(request):
            return refused
        namespace, name = request.match_info.get("namespace"), request.match_info["name"]
        resource = "pods" if namespace is not None else "namespaces"
        obj = self.objects[resource].get((namespace or "", name))
        if obj is None:
            return self._json(404, _status(404, message=f'{resource} "{name}" not found', name=name,
                                           kind=resource))
        return self._json(200, obj)

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        if refused := await self._refused(request):
            return refused
        resource = RESOURCES["pods" if request.path.endswith("/pods") else "namespaces"]
        q = request.query
        try:
            query = _Query(resource, request.match_info.get("namespace"),
                           _selector(q.get("fieldSelector", ""), True), _selector(q.get("labelSelector", ""), False))
            for key, _, _ in query.fields:
                if key not in resource.fields:
                    raise ValueError(f'"{key}" is not a known field selector: only "{", ".join(resource.fields)}"')
            limit = int(q.get("limit") or 0)
        except ValueError as exc:
            return self._json(400, _status(400, message=str(exc)))
        if q.get("watch") in ("1", "true"):
            return await self._watch(request, query)
        selected = bool(query.fields or query.labels)
        return self._list(query, limit, q.get("continue"), selected)

    def _list(self, query: _Query, limit: int, token: str | None, selected: bool) -> web.Response:
        items = sorted((o for o in self.objects[query.resource.plural].values() if query.matches(o)),
                       key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        rv, start = self.rv, ""
        if token:
            try:
                decoded = orjson.loads(base64.urlsafe_b64decode(token.encode()))
                rv, start = int(decoded["rv"]), str(decoded["start"])
            except (ValueError, KeyError, TypeError):
                return self._json(400, _status(400, message="continue key is not valid"))
            if rv < self.oldest_rv:
                return self._json(410, _status(410, message="The provided continue parameter is too old to "
                                               "display a consistent list result. You can start a new list "
                                               "without the continue parameter."))
            items = [o for o in items if f'{o["metadata"].get("namespace", "")}/{o["metadata"]["name"]}' >= start]
        page = items[:limit] if limit else items
        meta: Obj = {"resourceVersion": str(rv)}
        if limit and len(items) > limit:
            nxt = items[limit]["metadata"]
            meta["continue"] = base64.urlsafe_b64encode(orjson.dumps(
                {"v": "meta.k8s.io/v1", "rv": rv, "start": f'{nxt.get("namespace", "")}/{nxt["name"]}'})).decode()
            if not selected:
                meta["remainingItemCount"] = len(items) - limit
        listed = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in page]
        return self._json(200, {"kind": f"{query.resource.kind}List", "apiVersion": "v1", "metadata": meta,
                                "items": listed})

    async def _watch(self, request: web.Request, query: _Query) -> web.StreamResponse:
        q = request.query
        since = q.get("resourceVersion", "")
        expired = since not in ("", "0") and int(since) < self.oldest_rv
        gone = _status(410, message=f"too old resource version: {since} ({self.oldest_rv})")
        if expired and self.expired_as == "status":
            return self._json(410, gone)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request)
        except ConnectionResetError:  # the client left before the headers: status 0 in the log
            return response
        request[RECORD].status = 200  # the log knows the answer while the stream goes on
        if expired:
            await response.write(orjson.dumps({"type": "ERROR", "object": gone}) + b"\n")
            return response
        watch = _Watch(query, q.get("allowWatchBookmarks") == "true", request)
        plural = query.resource.plural
        if since in ("", "0"):
            backlog = [("ADDED", o) for o in self.objects[plural].values() if query.matches(o)]
            if q.get("sendInitialEvents") == "true" and watch.bookmarks:
                backlog.append(("BOOKMARK", self._bookmark(query.resource, {INITIAL_EVENTS_END: "true"})))
        else:
            backlog = [(kind, o) for rv, res, kind, o in self.history
                       if res == plural and rv > int(since) and query.matches(o)]
        for event in backlog:
            watch.queue.put_nowait(event)
        self.watches.append(watch)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(q.get("timeoutSeconds") or 1800)
        try:
            while self._stalled or deadline > loop.time():
                if request.transport is None or request.transport.is_closing():
                    break  # the client went away
                if self._stalled:
                    await asyncio.sleep(0.02)
                    continue
                try:
                    item = await asyncio.wait_for(watch.queue.get(), min(deadline - loop.time(), 0.05))
                except TimeoutError:
                    continue
                while self._stalled and request.transport is not None and not request.transport.is_closing():
                    await asyncio.sleep(0.02)  # stalled while it waited: hold what came
                if item is None:
                    break
                await response.write(orjson.dumps({"type": item[0], "object": item[1]}) + b"\n")
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            self.watches.remove(watch)
        return response


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake Kubernetes API server (pods and namespaces)")
    parser.add_argument("--token", default="secret-token", help="the bearer token it accepts")
    parser.add_argument("--token-file", help="read the accepted token from this file instead")
    parser.add_argument("--pods", type=int, default=0, help="realistic pods to serve (realistic_pod 0..N-1)")
    parser.add_argument("--node", default="node-a")
    parser.add_argument("--runtime", default="containerd", choices=("containerd", "docker", "cri-o"))

    def build(args: argparse.Namespace) -> FakeKubernetes:
        token = Path(args.token_file).read_text().strip() if args.token_file else args.token
        fake = FakeKubernetes(token=token, host=args.host, port=args.port, latency_ms=args.latency_ms)
        fake.populate(args.pods, args.node, args.runtime)
        return fake

    serve_main(build, parser)


if __name__ == "__main__":
    main()
