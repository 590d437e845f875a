"""Transform `kubernetes`: pod metadata on every container log line, from one node-scoped list + watch.

The tail source puts what a kubelet log file's name says (``/var/log/containers/<pod>_<namespace>_<container>-
<id>.log``) under ``kubernetes`` on every event of the file, one dict shared by them all. This stage looks that
pod up in the shared pod cache (``agent.kubernetes.pods``: no GET per pod) once per file per batch and writes
under ``key`` one dict per (pod, container), shared by the events (nested objects are never changed in place
downstream; see ``agent.core.events.own_parents``)::

    {"pod", "namespace", "pod_id", "labels", "annotations", "host", "container", "container_id",
     "container_image", "owner": {"kind", "name"}, "namespace_labels", "namespace_annotations"}

``owner`` is the pod's controller; a ReplicaSet named ``<name>-<pod-template-hash>`` is ``{kind: Deployment,
name}``. ``labels`` / ``annotations`` (and the namespace's, when asked: the namespaces are then watched too)
are ``true``, ``false`` or ``{include: [globs], exclude: [globs]}``.

A file is matched to its pod by the container id in its name (``PodWatcher.find_container``): a pod recreated
under its name does not relabel the old container's last lines. A file whose pod is not cached yet (or whose
container the pod of that name does not list yet) is held, its batches in order, up to ``wait_for_pod`` (per
file: other files flow meanwhile) for the watch to deliver it, then goes on with the file-name fields, counted in
``agent_kubernetes_metadata_misses_total{reason="not_found"}`` (or with the pod of that name). A stop's drain
or a reload lets every held file go at once. While the cache has not synced or the API server
does not answer, nothing waits: ``reason="api_unavailable"``; events without the file-name fields:
``not_a_container_file``. A deleted pod's metadata stays while its files are read (``deleted_pod_grace`` after).

Annotations (``exclude_annotation``, ``parser_annotation``): ``agent.io/exclude: "true"`` drops the pod's lines
(``agent.io/exclude-<container>``: one container's), counted as discarded ``excluded``; ``agent.io/parser: NAME``
(``agent.io/parser-<container>``) parses ``message`` with the parser ``NAME`` of ``parsers:`` (the parse stage's
options and code). ``compat: fluent-bit`` honours ``fluentbit.io/exclude[-<container>]`` and
``fluentbit.io/parser[-<container>]`` too. ``merge_log`` parses the JSON in ``message`` into the event (or under
``merge_log_key``) with the parse stage's JSON path; ``keep_log: false`` drops ``message`` after a successful
merge; ``on_error`` is parse's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import re
import time
from collections.abc import Callable
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

import msgspec

from agent.config.model import RootConfig, TransformConfig
from agent.config.registry import BuildContext, register
from agent.config.units import Duration
from agent.core.ack import AckStatus
from agent.core.batch import Batch, Kind
from agent.core.errors import StartupError
from agent.core.events import to_log_events
from agent.core.footprint import PARSED_KEY_BYTES
from agent.kubernetes.config import KubeConfigError, from_kubeconfig, in_cluster
from agent.kubernetes.pods import (
    NamespaceWatcher,
    PodWatcher,
    WatchShare,
    node_name,
    pod_owner,
    runs_another_instance,
    shared_namespace_watcher,
    shared_pod_watcher,
)
from agent.transforms.parse import ParseConfig, ParseTransform

log = logging.getLogger("agent.transforms.kubernetes")

SOURCE_KEY = "kubernetes"  # where the tail source puts what the file name says
HELD_BYTES_LIMIT = 32 * 1024 * 1024  # batches held for pods not cached yet, at most (then they go on, missed)
GAVE_UP_LIMIT = 4096  # files remembered as having waited in vain
MISS_REASONS = ("not_found", "api_unavailable", "not_a_container_file")
_PARSE_KEYS = frozenset(f for f in ParseConfig.__struct_fields__ if f not in ("inputs", "buffer"))
_AT_KEY = re.compile(r"[A-Za-z_]\w*")  # the first key of msgspec's "at `$.key...`"


class Selection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which keys of a map to keep: those matching one of ``include`` (all if empty) and none of ``exclude``."""

    include: list[str] = []
    """Globs of the keys to keep; all when empty."""
    exclude: list[str] = []
    """Globs of the keys to leave out."""


Keys = bool | Selection


class KubernetesConfig(TransformConfig, tag="kubernetes"):
    """Add the pod's metadata to container log lines, from one list + watch of the node's pods.

    Under ``key``: ``pod``, ``namespace``, ``pod_id``, ``labels``, ``annotations``, ``host``, ``container``,
    ``container_id``, ``container_image`` and ``owner`` (a ReplicaSet's Deployment), with Fluent Bit's names. No GET per
    pod: one watch per node, shared with every ``kubernetes`` stage and ``kubernetes_sd_configs``. A file whose pod is
    not known yet waits up to ``wait_for_pod``; a deleted pod's metadata stays while its files are read. When the API
    server is away nothing waits: lines go on with what the file name gives. Feed it a ``tail`` source of
    ``/var/log/containers/*.log``.
    """

    kubeconfig: str | None = None
    """kubeconfig file to reach the API server with (for development); none: the in-cluster service account."""
    context: str | None = None
    """Context of the kubeconfig to use; none: its current context."""
    node_name: str | None = None
    """Node whose pods are watched; none: $NODE_NAME (set it from the downward API), else the hostname."""
    key: str = "kubernetes"
    """Field the metadata is written under."""
    labels: Keys = True
    """Pod labels to add: true, false, or {include: [globs], exclude: [globs]}."""
    annotations: Keys = True
    """Pod annotations to add: true, false, or {include: [globs], exclude: [globs]}."""
    namespace_labels: Keys = False
    """The namespace's labels to add (namespaces are then watched too): true, false, or {include, exclude}."""
    namespace_annotations: Keys = False
    """The namespace's annotations to add (namespaces are then watched too): true, false, or {include, exclude}."""
    merge_log: bool = False
    """Parse the JSON in message into the event."""
    merge_log_key: str | None = None
    """Put the merged fields under this key instead of at the top level (needs merge_log)."""
    keep_log: bool = True
    """Keep message after a successful merge."""
    on_error: Literal["keep", "drop"] = "keep"
    """A message that is not JSON when merging: keep passes it on marked with parse_error; drop drops it."""
    exclude_annotation: bool = False
    """Drop the lines of pods annotated agent.io/exclude: "true" (agent.io/exclude-<container>: one container's),
    counted as discarded.
    """
    parser_annotation: bool = False
    """Parse message with the parser agent.io/parser: NAME (agent.io/parser-<container>) names in parsers, instead of
    merge_log.
    """
    compat: Literal["agent", "fluent-bit"] = "agent"
    """fluent-bit also honours the fluentbit.io/exclude and fluentbit.io/parser annotations, so a migrated DaemonSet
    behaves the same.
    """
    parsers: dict[str, dict[str, Any]] = {}
    """Parsers the parser annotation may name: NAME: the parse stage's options (codec, pattern, types, ...)."""
    wait_for_pod: Duration = Duration(2.0)
    """How long a file whose pod the watch has not delivered yet is held (other files flow), before its lines go on with
    what the file name gives.
    """
    deleted_pod_grace: Duration = Duration(30.0)
    """How long a deleted pod's metadata is kept after its last file was read and closed."""

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("key: must not be empty")
        if self.merge_log_key is not None and not self.merge_log:
            raise ValueError("merge_log_key: needs merge_log: true")
        if self.wait_for_pod < 0:
            raise ValueError("wait_for_pod: must not be negative")
        if self.deleted_pod_grace < 0:
            raise ValueError("deleted_pod_grace: must not be negative")
        self.parse_configs()

    def warnings(self, root: RootConfig) -> list[tuple[str, str]]:
        """(message, key) of what is dubious beside the root settings (``agent validate`` prints them)."""
        if self.wait_for_pod > 0 and self.wait_for_pod >= root.shutdown_timeout:
            return [(f"{float(self.wait_for_pod):g}s is not below shutdown_timeout ({float(root.shutdown_timeout):g}s)"
                     ": set it well below (a file waits this long for its pod before its lines go on)",
                     "wait_for_pod")]
        return []

    def parse_configs(self) -> dict[str, ParseConfig]:
        """The ``parsers:`` as parse stage configs; a bad one is a ValueError naming ``parsers.NAME.KEY``."""
        built = {}
        for name, options in self.parsers.items():
            if not isinstance(options, dict):
                raise ValueError(f"parsers.{name}: expected an object of parse options")
            for key in options:
                if key not in _PARSE_KEYS or key == "type":
                    raise ValueError(f'parsers.{name}.{key}: unknown key "{key}" (a parse option is expected)')
            try:
                built[name] = msgspec.convert({**options, "type": "parse", "inputs": []}, ParseConfig)
            except msgspec.ValidationError as exc:
                text, _, where = str(exc).partition(" - at `$.")
                at = _AT_KEY.match(where)
                raise ValueError(f"parsers.{name}.{at[0]}: {text}" if at else f"parsers.{name}: {text}") from None
        return built


def _selector(keys: Keys) -> Callable[[dict[str, str]], dict[str, str]] | None:
    """The function that keeps a map's selected keys, or None for ``false``."""
    if keys is False:
        return None
    if keys is True or (isinstance(keys, Selection) and not keys.include and not keys.exclude):
        return dict
    assert isinstance(keys, Selection)
    include, exclude = keys.include, keys.exclude

    def select(values: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in values.items()
                if (not include or any(fnmatch.fnmatchcase(k, p) for p in include))
                and not any(fnmatch.fnmatchcase(k, p) for p in exclude)}
    return select


class _Meta:
    """What one (pod, container) resolves to: the dict events get, whether they are excluded, their parser."""

    __slots__ = ("excluded", "namespace", "parser", "pod", "view")

    def __init__(self, pod: dict[str, Any], namespace: dict[str, Any] | None, view: dict[str, Any],
                 excluded: bool, parser: ParseTransform | None) -> None:
        self.pod = pod
        self.namespace = namespace
        self.view = view
        self.excluded = excluded
        self.parser = parser


class _Held:
    """The batches of one file held until its pod is cached or ``deadline`` passes."""

    __slots__ = ("batches", "bytes", "deadline", "src")

    def __init__(self, src: dict[str, Any], deadline: float) -> None:
        self.src = src
        self.deadline = deadline
        self.batches: list[Batch] = []
        self.bytes = 0


WAIT = "wait"  # a resolution: the pod is not cached yet, the file may wait for it


@register("transform", "kubernetes", KubernetesConfig, "Adds pod metadata (labels, annotations, owner, image) "
          "to container log lines from a node-scoped watch of pods.")
class KubernetesTransform:
    """Enriches container log events from the shared pod cache; holds a file's batches while its pod is awaited.

    ``start()`` joins the shared watches (``attach()`` gives them directly); ``flush()`` (every
    ``flush_interval``) lets held files go on; ``input_ended()`` (and ``draining()``, when the agent begins to
    drain) lets everything go at the next flush, and nothing is held after it.
    """

    mutates = True

    def __init__(self, config: KubernetesConfig, ctx: BuildContext,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.ctx = ctx
        self.stats = ctx.stats
        self.clock = clock
        self.key = config.key
        self.wait = float(config.wait_for_pod)
        self.flush_interval = min(0.1, max(0.01, self.wait / 4))
        self.labels, self.annotations = _selector(config.labels), _selector(config.annotations)
        self.ns_labels = _selector(config.namespace_labels)
        self.ns_annotations = _selector(config.namespace_annotations)
        self.wants_namespaces = self.ns_labels is not None or self.ns_annotations is not None
        prefixes = ["agent.io/"] + (["fluentbit.io/"] if config.compat == "fluent-bit" else [])
        self.exclude_keys = [p + "exclude" for p in prefixes] if config.exclude_annotation else []
        self.parser_keys = [p + "parser" for p in prefixes] if config.parser_annotation else []
        self.parsers = {name: ParseTransform(parse, ctx) for name, parse in config.parse_configs().items()}
        self.merge: ParseTransform | None = None
        if config.merge_log:
            self.merge = ParseTransform(ParseConfig(inputs=[], codec="json", field="message",
                                                    target=config.merge_log_key, keep_original=config.keep_log,
                                                    on_error=config.on_error), ctx)
        self.drop_log_after_merge = config.merge_log_key is not None and not config.keep_log
        self.pods: PodWatcher | None = None
        self.namespaces: NamespaceWatcher | None = None
        self._resolved: dict[tuple[str, str, str, str], _Meta] = {}
        self._held: dict[tuple[str, str, str, str], _Held] = {}
        self._held_bytes = 0
        self._gave_up: dict[tuple[str, str, str, str], float] = {}
        self._ended = False
        self._shares: list[WatchShare[Any]] = []  # the shared watches joined, left by aclose()
        for reason in MISS_REASONS:  # every series from the start, at 0
            ctx.stats.count("metadata_misses", 0, reason=reason)
        ctx.stats.gauges.update(cache_pods=lambda: self.pods.size() if self.pods is not None else 0,
                                cache_bytes=lambda: self.pods.memory_bytes() if self.pods is not None else 0,
                                held_files=lambda: len(self._held))

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join (or start) the shared watch of this node's pods, and of namespaces if their metadata is asked;
        wait up to ``wait_for_pod`` for their first list."""
        config = self.config
        try:
            if config.kubeconfig:
                cluster = from_kubeconfig(self.ctx.config_dir / Path(config.kubeconfig), config.context)
            else:
                cluster = in_cluster()
        except KubeConfigError as exc:
            where = "kubeconfig" if config.kubeconfig else "in-cluster service account (or set kubeconfig)"
            reason = str(exc).split(" (set api_server")[0]  # in_cluster's hint names kubernetes_sd's keys
            raise StartupError(f'transform "{self.ctx.component_id}": {where}: {reason}') from None
        pod_share = shared_pod_watcher(cluster, config.node_name or node_name())
        self._shares.append(pod_share)
        pods = await pod_share.enter()
        namespaces = None
        if self.wants_namespaces:
            namespace_share = shared_namespace_watcher(cluster)
            self._shares.append(namespace_share)
            namespaces = await namespace_share.enter()
        self.attach(pods, namespaces)
        # the files read first (a node's backlog after a restart) find their pods: the first list is awaited
        # here, before any source runs, for wait_for_pod at most (an API server that does not answer then
        # makes them pass as api_unavailable, not wait)
        try:
            for watcher in filter(None, (pods, namespaces)):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watcher.synced.wait(), self.wait)
        except BaseException:  # start-up cancelled (the agent stopped meanwhile): leave the shared watches
            await self._leave()
            raise

    def attach(self, pods: PodWatcher, namespaces: NamespaceWatcher | None = None) -> None:
        """Use these caches (``start()`` attaches the shared ones)."""
        self.pods, self.namespaces = pods, namespaces
        pods.retain_deleted_for(float(self.config.deleted_pod_grace))
        for watcher in filter(None, (pods, namespaces)):
            watcher.request_listeners.append(self._count_request)

    def _count_request(self, verb: str, result: str) -> None:
        self.stats.count("api_requests", verb=verb, result=result)

    def input_ended(self) -> None:
        """The input is done (drain or reload): the next flush lets every held batch go, nothing waits after."""
        self._ended = True

    def draining(self) -> None:
        """The agent began to drain (told before the input ends: the sources wait for the acks of what is held
        here): as :meth:`input_ended`."""
        self.input_ended()

    async def aclose(self) -> None:
        """Leave the shared watches (the last user stops them)."""
        for watcher in filter(None, (self.pods, self.namespaces)):
            with contextlib.suppress(ValueError):
                watcher.request_listeners.remove(self._count_request)
        await self._leave()

    async def _leave(self) -> None:
        shares, self._shares = self._shares, []
        for share in reversed(shares):
            await share.release()

    # -- the data path ----------------------------------------------------------------------------

    def process(self, batch: Batch) -> Batch | None:
        if batch.kind is Kind.METRICS:
            return batch
        if batch.kind.is_raw:  # lines, not from a container log file: nothing to look up
            if self.merge is None:
                self.stats.count("metadata_misses", len(batch.events), reason="not_a_container_file")
                return batch
            to_log_events(batch)
        events = batch.events
        if not events:
            return batch
        src = events[0].get(SOURCE_KEY)
        if type(src) is dict and events[-1].get(SOURCE_KEY) is src:  # one file's batch, as the tail sends them
            file = _file_key(src)
            held = self._held.get(file)
            if held is not None:
                if not self._ended and self._resolve(src, file, True) == WAIT and self._hold(held, batch):
                    return None
                return self._release(file, batch)
            if not self._ended and self._resolve(src, file, True) == WAIT:
                held = _Held(src, self.clock() + self.wait)
                if self._hold(held, batch):
                    self._held[file] = held
                    return None
                return self._enrich(batch)
        return self._enrich(batch)

    def flush(self) -> Batch | None:
        """Let go the held files whose pod came, whose wait is over, or all of them once the input ended."""
        if not self._held:
            return None
        now = self.clock()
        out: list[Batch] = []
        for file, held in list(self._held.items()):
            try:
                ready = self._ended or now >= held.deadline or self._resolve(held.src, file, True) != WAIT
            except Exception:  # _release passes the file's lines on as they are
                ready = True
            if ready:
                if now >= held.deadline:
                    self._give_up(file, now)
                released = self._release(file, None)
                if released is not None:
                    out.append(released)
        return _merge(out)

    def _hold(self, held: _Held, batch: Batch) -> bool:
        """Hold ``batch`` in ``held``, unless that would take the held batches past HELD_BYTES_LIMIT."""
        if self._held_bytes + batch.byte_size > HELD_BYTES_LIMIT:
            return False
        held.batches.append(batch)
        held.bytes += batch.byte_size
        self._held_bytes += batch.byte_size
        return True

    def _release(self, file: tuple[str, str, str, str], batch: Batch | None) -> Batch | None:
        """The file's held batches (and ``batch`` after them) enriched as one batch; a pod still missing is a
        counted miss."""
        held = self._held.pop(file, None)
        batches = held.batches if held is not None else []
        if held is not None:
            self._held_bytes -= held.bytes
        if batch is not None:
            batches.append(batch)
        merged = _merge(batches)
        if merged is None:
            return None
        try:
            if held is not None and self._resolve(held.src, file, True) == WAIT:
                self._give_up(file, self.clock())
            return self._enrich(merged)
        except Exception:  # the held batches' acks are in ``merged`` alone: it must go on
            log.exception("enriching a file's held lines failed; they pass on as they are",
                          extra={"component_id": self.ctx.component_id})
            self.stats.error("transform_failed", "processing")
            return merged

    def _give_up(self, file: tuple[str, str, str, str], now: float) -> None:
        self._gave_up[file] = now
        if len(self._gave_up) > GAVE_UP_LIMIT:
            for old in list(self._gave_up)[:GAVE_UP_LIMIT // 2]:
                del self._gave_up[old]

    def _enrich(self, batch: Batch) -> Batch | None:
        """Write the metadata into every event, parse or merge ``message``, drop excluded ones."""
        events = batch.events
        key, resolve = self.key, self._resolve
        out: list[dict[str, Any]] = []
        misses: dict[str, int] = {}
        excluded = added_bytes = 0
        n = len(events)
        for i, j in _runs(events):
            src = events[i].get(SOURCE_KEY)
            run = events[i:j] if i or j < n else events
            meta = resolve(src, _file_key(src), False) if type(src) is dict else "not_a_container_file"
            if isinstance(meta, str):
                reason = "not_found" if meta == WAIT else meta
                misses[reason] = misses.get(reason, 0) + len(run)
                if self.merge is not None:
                    run, size = self._parse(self.merge, run)
                    added_bytes += size
                out.extend(run)
            elif meta.excluded:
                excluded += len(run)
            else:
                parser = meta.parser or self.merge
                if parser is not None:
                    run, size = self._parse(parser, run)
                    added_bytes += size
                view = meta.view
                for event in run:
                    event[key] = view
                out.extend(run)
        for reason, count in misses.items():
            self.stats.count("metadata_misses", count, reason=reason)
        if excluded:
            self.stats.discard("excluded", excluded)
        if not out:
            batch.finalize(AckStatus.DELIVERED)
            return None
        if len(out) != n:
            batch.byte_size = batch.byte_size * len(out) // n
        batch.byte_size += added_bytes + (0 if key == SOURCE_KEY else len(out) * PARSED_KEY_BYTES)
        batch.events = out
        return batch

    def _parse(self, parser: ParseTransform, run: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """``run`` parsed by the parse stage's own code (its on_error, counts and byte accounting)."""
        part = parser.process(Batch(run, Kind.LOGS, 0))
        events = part.events if part is not None else []
        if parser is self.merge and self.drop_log_after_merge:
            for event in events:
                if "parse_error" not in event:
                    event.pop("message", None)
        return events, part.byte_size if part is not None else 0

    # -- lookups ----------------------------------------------------------------------------------

    def _resolve(self, src: dict[str, Any], file: tuple[str, str, str, str], may_wait: bool) -> _Meta | str:
        """The file's ``_Meta``; WAIT if its pod may still come; else the reason of the miss."""
        pods = self.pods
        if pods is None or not pods.synced.is_set():
            return "api_unavailable"
        namespace, name, container, cid = file
        pod, by_container_id = pods.find_container(namespace, name, cid)
        if pod is None:
            if not pods.healthy:
                return "api_unavailable"
            if may_wait and self.wait > 0 and file not in self._gave_up:
                return WAIT
            return "not_found"
        # the pod of that name lists another container there: is the file's one not in its status yet?
        fallback = not by_container_id and runs_another_instance(pod, container, cid)
        if fallback and may_wait and self.wait > 0 and file not in self._gave_up:
            return WAIT
        ns_obj = self.namespaces.get(namespace) if self.namespaces is not None else None
        meta = self._resolved.get(file)
        if meta is not None and meta.pod is pod and meta.namespace is ns_obj:
            return meta
        meta = self._build(pod, ns_obj, src, container, cid)
        if len(self._resolved) > 4 * max(256, pods.size()):
            self._resolved.clear()
        self._resolved[file] = meta
        if not fallback:  # a file that gave up on its container and took the pod of that name stays given up
            self._gave_up.pop(file, None)
        return meta

    def _build(self, pod: dict[str, Any], ns_obj: dict[str, Any] | None, src: dict[str, Any], container: str,
               cid: str) -> _Meta:
        meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        image = next((s.get("image") for s in status.get("containerStatuses") or []
                      if s.get("name") == container and s.get("image")), None)
        if image is None:
            image = next((c.get("image") for c in spec.get("containers") or [] if c.get("name") == container),
                         None) or next((c.get("image") for c in spec.get("initContainers") or []
                                        if c.get("name") == container), "")
        view: dict[str, Any] = {"pod": meta.get("name", src.get("pod", "")),
                                "namespace": meta.get("namespace", src.get("namespace", "")),
                                "pod_id": meta.get("uid", "")}
        if self.labels is not None and labels:
            view["labels"] = self.labels(labels)
        if self.annotations is not None and annotations:
            view["annotations"] = self.annotations(annotations)
        view.update(host=spec.get("nodeName", ""), container=container, container_id=cid, container_image=image)
        owner = pod_owner(pod)
        if owner is not None:
            view["owner"] = owner
        if ns_obj is not None:
            ns_meta = ns_obj.get("metadata") or {}
            if self.ns_labels is not None:
                view["namespace_labels"] = self.ns_labels(ns_meta.get("labels") or {})
            if self.ns_annotations is not None:
                view["namespace_annotations"] = self.ns_annotations(ns_meta.get("annotations") or {})
        excluded = any(_truthy(annotations.get(k)) or _truthy(annotations.get(f"{k}-{container}"))
                       for k in self.exclude_keys)
        parser = None
        for k in self.parser_keys:
            parser_name = annotations.get(f"{k}-{container}") or annotations.get(k)
            if parser_name:
                parser = self.parsers.get(parser_name)
                if parser is None:
                    self.stats.error("unknown_parser", "processing")
                    log.warning("a pod's parser annotation names no parser of the stage", extra={
                        "component_id": self.ctx.component_id, "pod": view["pod"], "parser": parser_name})
                break
        return _Meta(pod, ns_obj, view, excluded, parser)


def _truthy(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on")


def _file_key(src: dict[str, Any]) -> tuple[str, str, str, str]:
    return (str(src.get("namespace", "")), str(src.get("pod", "")), str(src.get("container", "")),
            str(src.get("container_id", "")))


def _merge(batches: list[Batch]) -> Batch | None:
    """One batch of the events of ``batches``, in order, holding all their acks."""
    if not batches:
        return None
    if len(batches) == 1:
        return batches[0]
    events: list[Any] = []
    acks = []
    size = 0
    for part in batches:
        events.extend(part.events)
        acks.extend(part.acks)
        part.acks = []
        size += part.byte_size
    return Batch(events, Kind.LOGS, size, acks)


def _runs(events: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of events carrying one file's fields (one run when the batch is one
    file's, as the tail sends them: found by a C-level count, not a Python loop over the events)."""
    sources = list(map(dict.get, events, repeat(SOURCE_KEY)))
    n = len(sources)
    if not n or sources.count(sources[0]) == n:  # equal fields name the same file: one run
        return [(0, n)] if n else []
    runs, start = [], 0
    for i in range(1, n):
        if sources[i] is not sources[start]:
            runs.append((start, i))
            start = i
    runs.append((start, n))
    return runs
