"""The `kubernetes` transform over a pod cache filled by hand (no API server): fields, selections, owner,
merge_log, annotations, parsers, held files and misses. The cache against the fake API server and whole
pipelines are in tests/unit/kubernetes and tests/e2e/test_kubernetes_*.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from fakes.kubernetes import container_log_name, make_namespace, make_pod, realistic_pod
from helpers import wait_for

from agent.buffers.memory import MemoryBuffer
from agent.config.pipeline import check_files, load_texts
from agent.config.registry import BuildContext
from agent.config.units import dec_hook
from agent.core.ack import Ack, AckStatus
from agent.core.batch import Batch, Kind
from agent.core.errors import ConfigErrors, StartupError
from agent.kubernetes.client import KubeClient
from agent.kubernetes.config import ClusterConfig
from agent.kubernetes.files import ContainerFiles
from agent.kubernetes.pods import NamespaceWatcher, PodWatcher, trim_namespace, trim_pod
from agent.observe.stats import ComponentStats
from agent.sources.tail.files import kubernetes_fields
from agent.topology.fanout import Fanout
from agent.topology.running import Topology
from agent.transforms.kubernetes import KubernetesConfig, KubernetesTransform

CID = "0123456789abcdef" * 4


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(*pods: dict[str, Any], clock: Clock | None = None, files: ContainerFiles | None = None) -> PodWatcher:
    """A pod cache filled by hand, synced and healthy, as if the watch had delivered ``pods``."""
    watcher = PodWatcher(KubeClient(ClusterConfig(server="http://127.0.0.1:9")), "node-a",
                         files=files or ContainerFiles(), clock=clock or Clock())
    for pod in pods:
        watcher._store(trim_pod(pod))
    watcher.synced.set()
    watcher.healthy = True
    return watcher


def build(pods: PodWatcher | None, clock: Clock | None = None, namespaces: NamespaceWatcher | None = None,
          **options: Any) -> KubernetesTransform:
    stats = ComponentStats("k8s", "transform", "kubernetes")
    config = msgspec.convert({"type": "kubernetes", "inputs": ["tail"], **options}, KubernetesConfig,
                             dec_hook=dec_hook)
    t = KubernetesTransform(config, BuildContext("k8s", Path("."), Path("."), stats), clock=clock or Clock())
    if pods is not None:
        t.attach(pods, namespaces)
    return t


def file_fields(pod: str, namespace: str = "default", container: str = "main", cid: str = CID) -> dict[str, str]:
    """What the tail source puts under ``kubernetes`` for a file of that container."""
    fields = kubernetes_fields(f"/var/log/containers/{pod}_{namespace}_{container}-{cid}.log")
    assert fields is not None
    return fields


def lines(src: dict[str, str] | None, *messages: str) -> Batch:
    """A batch as the tail source sends it: one file's events sharing its file-name dict."""
    events = [{"message": m, "stream": "stdout"} | ({"kubernetes": src} if src is not None else {})
              for m in messages]
    return Batch(events, Kind.LOGS, 100 * len(events))


def misses(t: KubernetesTransform) -> dict[str, int]:
    return {dict(labels)["reason"]: n for (name, labels), n in t.stats.counters.items()
            if name == "metadata_misses" and n}


WEB = make_pod("web-7d4b9c8f6d-x2x9z", metadata={
    "labels": {"app": "web", "pod-template-hash": "7d4b9c8f6d", "team": "a"},
    "annotations": {"prometheus.io/scrape": "true", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c8f6d", "uid": "u",
                         "controller": True}]},
    status={"phase": "Running", "containerStatuses": [{"name": "main", "image": "docker.io/library/busybox:1.36",
                                                       "containerID": f"containerd://{CID}"}]})


def test_every_event_gets_the_pods_fields_in_one_dict_per_container() -> None:
    t = build(cache(WEB))
    src = file_fields("web-7d4b9c8f6d-x2x9z")
    out = t.process(lines(src, "a", "b"))
    assert out is not None and len(out.events) == 2
    first, second = out.events
    assert first["kubernetes"] == {
        "pod": "web-7d4b9c8f6d-x2x9z", "namespace": "default", "pod_id": "uid-default-web-7d4b9c8f6d-x2x9z",
        "labels": {"app": "web", "pod-template-hash": "7d4b9c8f6d", "team": "a"},
        "annotations": {"prometheus.io/scrape": "true", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
        "host": "node-a", "container": "main", "container_id": CID,
        "container_image": "docker.io/library/busybox:1.36", "owner": {"kind": "Deployment", "name": "web"}}
    assert first["kubernetes"] is second["kubernetes"]  # built once, shared
    again = t.process(lines(src, "c"))
    assert again is not None and again.events[0]["kubernetes"] is first["kubernetes"]  # and across batches
    assert src == file_fields("web-7d4b9c8f6d-x2x9z")  # the source's dict is not changed
    assert misses(t) == {}


def test_a_batch_mixing_files_gives_each_run_its_own_pods_fields() -> None:
    db = make_pod("db-0", status={"containerStatuses": [{"name": "main", "containerID": f"containerd://{CID}"}]})
    t = build(cache(WEB, db))
    web, db_src = file_fields("web-7d4b9c8f6d-x2x9z"), file_fields("db-0")
    mixed = [*lines(web, "w1").events, *lines(db_src, "d1", "d2").events, *lines(web, "w2").events,
             {"message": "no file fields"}]
    out = t.process(Batch(mixed, Kind.LOGS, 500))
    assert out is not None
    assert [(e["message"], e.get("kubernetes", {}).get("pod")) for e in out.events] == [
        ("w1", "web-7d4b9c8f6d-x2x9z"), ("d1", "db-0"), ("d2", "db-0"), ("w2", "web-7d4b9c8f6d-x2x9z"),
        ("no file fields", None)]
    assert misses(t) == {"not_a_container_file": 1}


def test_a_changed_pod_gets_a_new_dict() -> None:
    pods = cache(WEB)
    t = build(pods)
    src = file_fields("web-7d4b9c8f6d-x2x9z")
    before = t.process(lines(src, "a"))
    changed = trim_pod(WEB)
    changed["metadata"]["labels"] = {"app": "web", "version": "2"}
    changed["metadata"]["resourceVersion"] = "99"
    pods._store(changed)
    after = t.process(lines(src, "b"))
    assert before is not None and after is not None
    assert before.events[0]["kubernetes"]["labels"]["team"] == "a"
    assert after.events[0]["kubernetes"]["labels"] == {"app": "web", "version": "2"}


@pytest.mark.parametrize(("kind", "name", "labels", "owner"), [
    ("ReplicaSet", "web-7d4b9c8f6d", {"pod-template-hash": "7d4b9c8f6d"}, {"kind": "Deployment", "name": "web"}),
    ("ReplicaSet", "web-rs", {"pod-template-hash": "7d4b9c8f6d"}, {"kind": "ReplicaSet", "name": "web-rs"}),
    ("ReplicaSet", "web-7d4b9c8f6d", {}, {"kind": "ReplicaSet", "name": "web-7d4b9c8f6d"}),
    ("Job", "backup-28461120", {}, {"kind": "Job", "name": "backup-28461120"}),
    ("DaemonSet", "fluent", {}, {"kind": "DaemonSet", "name": "fluent"}),
    ("StatefulSet", "db", {}, {"kind": "StatefulSet", "name": "db"}),
])
def test_the_owner_is_derived_without_fetching_the_replica_set(kind: str, name: str, labels: dict[str, str],
                                                                owner: dict[str, str]) -> None:
    pod = make_pod("p", metadata={"labels": labels, "ownerReferences": [{"kind": kind, "name": name,
                                                                         "controller": True}]})
    out = build(cache(pod)).process(lines(file_fields("p"), "x"))
    assert out is not None and out.events[0]["kubernetes"]["owner"] == owner


def test_labels_and_annotations_are_selected_by_glob_or_left_out() -> None:
    t = build(cache(WEB), labels={"include": ["app*", "team"], "exclude": ["team"]},
              annotations={"exclude": ["kubectl.kubernetes.io/*"]})
    out = t.process(lines(file_fields("web-7d4b9c8f6d-x2x9z"), "a"))
    assert out is not None
    view = out.events[0]["kubernetes"]
    assert view["labels"] == {"app": "web"} and view["annotations"] == {"prometheus.io/scrape": "true"}
    out = build(cache(WEB), labels=False, annotations=False).process(lines(file_fields("web-7d4b9c8f6d-x2x9z"), "a"))
    assert out is not None and "labels" not in out.events[0]["kubernetes"]
    assert "annotations" not in out.events[0]["kubernetes"]


def test_namespace_labels_and_annotations_when_asked() -> None:
    namespaces = NamespaceWatcher(KubeClient(ClusterConfig(server="http://127.0.0.1:9")))
    namespaces._store(trim_namespace(make_namespace("default", {"env": "prod"}, {"owner": "team-a"})))
    t = build(cache(WEB), namespaces=namespaces, namespace_labels={"exclude": ["kubernetes.io/*"]},
              namespace_annotations=True)
    out = t.process(lines(file_fields("web-7d4b9c8f6d-x2x9z"), "a"))
    assert out is not None
    view = out.events[0]["kubernetes"]
    assert view["namespace_labels"] == {"env": "prod"} and view["namespace_annotations"] == {"owner": "team-a"}


def test_merge_log_into_the_root_dropping_the_log_with_keep_log_false() -> None:
    t = build(cache(WEB), merge_log=True, keep_log=False)
    out = t.process(lines(file_fields("web-7d4b9c8f6d-x2x9z"), '{"level": "info", "n": 1}', "plain text"))
    assert out is not None
    merged, plain = out.events
    assert merged["level"] == "info" and merged["n"] == 1 and "message" not in merged
    assert merged["kubernetes"]["pod"] == "web-7d4b9c8f6d-x2x9z"
    assert plain["message"] == "plain text" and plain["parse_error"] == "not a JSON object"  # on_error: keep
    assert t.stats.errors[("parse_failed", "processing")] == 1


def test_a_logged_kubernetes_key_does_not_replace_the_metadata() -> None:
    t = build(cache(WEB), merge_log=True)
    out = t.process(lines(file_fields("web-7d4b9c8f6d-x2x9z"), '{"kubernetes": "mine", "a": 1}'))
    assert out is not None and out.events[0]["kubernetes"]["pod"] == "web-7d4b9c8f6d-x2x9z"
    assert out.events[0]["message"] == '{"kubernetes": "mine", "a": 1}'  # keep_log: true


def test_merge_log_key_and_on_error_drop() -> None:
    t = build(cache(WEB), merge_log=True, merge_log_key="log_processed", keep_log=False, on_error="drop")
    out = t.process(lines(file_fields("web-7d4b9c8f6d-x2x9z"), '{"a": 1}', "not json"))
    assert out is not None and len(out.events) == 1
    assert out.events[0]["log_processed"] == {"a": 1} and "message" not in out.events[0]
    assert t.stats.discarded["parse_failed"] == 1


def annotated(annotations: dict[str, str], name: str = "p") -> dict[str, Any]:
    return make_pod(name, metadata={"annotations": annotations},
                    spec={"nodeName": "node-a", "containers": [{"name": "main", "image": "i"},
                                                               {"name": "sidecar", "image": "s"}]})


@pytest.mark.parametrize(("annotations", "compat", "main_kept", "sidecar_kept"), [
    ({"agent.io/exclude": "true"}, "agent", False, False),
    ({"agent.io/exclude-sidecar": "true"}, "agent", True, False),
    ({"agent.io/exclude": "false"}, "agent", True, True),
    ({"fluentbit.io/exclude": "true"}, "agent", True, True),
    ({"fluentbit.io/exclude": "true"}, "fluent-bit", False, False),
    ({"fluentbit.io/exclude-main": "true"}, "fluent-bit", False, True),
])
def test_the_exclude_annotations(annotations: dict[str, str], compat: str, main_kept: bool,
                                 sidecar_kept: bool) -> None:
    t = build(cache(annotated(annotations)), exclude_annotation=True, compat=compat)
    for container, kept in (("main", main_kept), ("sidecar", sidecar_kept)):
        acks: list[AckStatus] = []
        batch = lines(file_fields("p", container=container), "a", "b")
        batch.acks.append(Ack(acks.append))
        out = t.process(batch)
        assert (out is not None) == kept
        if not kept:
            assert acks == [AckStatus.DELIVERED]  # excluded lines are done, not lost
    assert t.stats.discarded["excluded"] == 2 * ((not main_kept) + (not sidecar_kept))


def test_exclude_annotations_are_ignored_unless_asked() -> None:
    out = build(cache(annotated({"agent.io/exclude": "true"}))).process(lines(file_fields("p"), "a"))
    assert out is not None and len(out.events) == 1


PARSERS = {"access": {"codec": "regex", "pattern": r"^(?P<method>\S+) (?P<path>\S+) (?P<code>\d+)$",
                      "types": {"code": "int"}},
           "kv": {"codec": "logfmt"}}


@pytest.mark.parametrize(("annotations", "compat", "expected"), [
    ({"agent.io/parser": "access"}, "agent", {"method": "GET", "path": "/", "code": 200}),
    ({"agent.io/parser": "kv", "agent.io/parser-main": "access"}, "agent", {"method": "GET", "path": "/",
                                                                           "code": 200}),
    ({"fluentbit.io/parser": "access"}, "fluent-bit", {"method": "GET", "path": "/", "code": 200}),
    ({"fluentbit.io/parser": "access"}, "agent", None),
])
def test_the_parser_annotations(annotations: dict[str, str], compat: str, expected: dict[str, Any] | None) -> None:
    t = build(cache(annotated(annotations)), parser_annotation=True, compat=compat, parsers=PARSERS,
              merge_log=True)
    out = t.process(lines(file_fields("p"), "GET / 200"))
    assert out is not None
    event = out.events[0]
    if expected is None:  # no parser chosen: merge_log's JSON, which this line is not
        assert event["parse_error"] == "not a JSON object"
    else:
        assert {k: event[k] for k in expected} == expected and "message" not in event


def test_a_parser_annotation_naming_no_parser_is_counted_and_the_line_passes() -> None:
    t = build(cache(annotated({"agent.io/parser": "nope"})), parser_annotation=True, parsers=PARSERS)
    out = t.process(lines(file_fields("p"), "GET / 200"))
    assert out is not None and out.events[0]["message"] == "GET / 200"
    assert t.stats.errors[("unknown_parser", "processing")] == 1


def test_every_miss_reason_has_its_series_from_the_start() -> None:
    t = build(cache())
    assert {dict(labels)["reason"]: n for (name, labels), n in t.stats.counters.items()
            if name == "metadata_misses"} == {"not_found": 0, "api_unavailable": 0, "not_a_container_file": 0}


def test_events_without_file_name_fields_are_missed_not_a_container_file() -> None:
    t = build(cache(WEB))
    out = t.process(lines(None, "a", "b"))
    raw = t.process(Batch([b"line"], Kind.LINES, 4))
    assert out is not None and "kubernetes" not in out.events[0]
    assert raw is not None and raw.kind is Kind.LINES  # raw lines pass untouched
    assert misses(t) == {"not_a_container_file": 3}


def test_without_a_synced_cache_nothing_waits_api_unavailable() -> None:
    pods = cache()
    pods.synced.clear()
    t = build(pods)
    src = file_fields("web-7d4b9c8f6d-x2x9z")
    out = t.process(lines(src, "a"))
    assert out is not None and out.events[0]["kubernetes"] == src  # the file name's fields stay
    pods.synced.set()
    pods.healthy = False  # the API server went away: a pod not cached does not wait either
    assert t.process(lines(src, "b")) is not None
    assert misses(t) == {"api_unavailable": 2}
    pods._store(trim_pod(WEB))  # cached before the outage: enriched from the cache meanwhile
    out = t.process(lines(src, "c"))
    assert out is not None and out.events[0]["kubernetes"]["pod_id"] == "uid-default-web-7d4b9c8f6d-x2x9z"


def test_a_file_whose_pod_is_not_cached_waits_while_other_files_flow() -> None:
    clock = Clock()
    pods = cache(WEB, clock=clock)
    t = build(pods, clock=clock, wait_for_pod="2s")
    late = make_pod("late")
    late_src = file_fields("late")
    assert t.process(lines(late_src, "1", "2")) is None  # held
    assert t.process(lines(late_src, "3")) is None  # held behind the first, in order
    other = t.process(lines(file_fields("web-7d4b9c8f6d-x2x9z"), "x"))
    assert other is not None  # another file goes on
    clock.now += 0.5
    assert t.flush() is None  # still waiting
    pods._store(trim_pod(late))
    out = t.flush()
    assert out is not None and [e["message"] for e in out.events] == ["1", "2", "3"]
    assert all(e["kubernetes"]["pod_id"] == "uid-default-late" for e in out.events)
    after = t.process(lines(late_src, "4"))
    assert after is not None and after.events[0]["kubernetes"]["pod_id"] == "uid-default-late"
    assert misses(t) == {}


def test_after_the_wait_the_file_goes_on_with_its_file_name_fields_and_does_not_wait_again() -> None:
    clock = Clock()
    t = build(cache(clock=clock), clock=clock, wait_for_pod="2s")
    src = file_fields("ghost")
    acks: list[AckStatus] = []
    first = lines(src, "1")
    first.acks.append(Ack(acks.append))
    assert t.process(first) is None
    clock.now += 2.0
    out = t.flush()
    assert out is not None and out.events[0]["kubernetes"] == src and out.acks  # the acks travel with it
    assert misses(t) == {"not_found": 1}
    again = t.process(lines(src, "2"))  # per file: the wait is over for this file
    assert again is not None and misses(t) == {"not_found": 2}
    out.finalize(AckStatus.DELIVERED)
    assert acks == [AckStatus.DELIVERED]


def _instance(pod: dict[str, Any], uid: str, cid: str, previous: str | None = None) -> dict[str, Any]:
    """``pod`` as another pod under its name (``uid``) or another instance of its container (``cid``)."""
    view = trim_pod(pod)
    view["metadata"] = {**view["metadata"], "uid": uid, "resourceVersion": uid + cid}
    view["status"]["containerStatuses"] = [{**view["status"]["containerStatuses"][0],
                                            "containerID": f"containerd://{cid}",
                                            "lastContainerID": f"containerd://{previous}" if previous else ""}]
    return view


def test_a_restarted_containers_new_file_waits_for_the_status_that_lists_it_and_the_old_file_keeps_its_pod() -> None:
    clock = Clock()
    pods = cache(WEB, clock=clock)
    t = build(pods, clock=clock, wait_for_pod="2s")
    name, uid, new_cid = "web-7d4b9c8f6d-x2x9z", "uid-default-web-7d4b9c8f6d-x2x9z", "f" * 64
    new_src = file_fields(name, cid=new_cid)
    assert t.process(lines(new_src, "restarted")) is None  # the status lists the old instance: wait for it
    restarted = _instance(WEB, uid, new_cid, previous=CID)
    restarted["metadata"]["labels"] = {"app": "web", "restarts": "1"}
    pods._store(restarted)
    out = t.flush()
    assert out is not None and out.events[0]["kubernetes"]["labels"] == {"app": "web", "restarts": "1"}
    old = t.process(lines(file_fields(name), "the old instance's last line"))  # its id is the lastState's
    assert old is not None and old.events[0]["kubernetes"]["pod_id"] == uid
    assert misses(t) == {}
    later = file_fields(name, cid="e" * 64)  # an instance the status never lists: the pod of that name, at last
    assert t.process(lines(later, "x")) is None
    clock.now += 2.0
    out = t.flush()
    assert out is not None and out.events[0]["kubernetes"]["pod_id"] == uid
    again = t.process(lines(later, "y"))  # the wait is over for this file
    assert again is not None and again.events[0]["kubernetes"]["pod_id"] == uid


def test_a_pod_replaced_under_its_name_unseen_is_kept_for_the_old_containers_files() -> None:
    """A relist after an outage finds `web-...` with another uid (deleted and created meanwhile): the old
    container's file still gets the old pod, kept while that file is open."""
    clock, files = Clock(), ContainerFiles()
    pods = cache(WEB, clock=clock, files=files)
    t = build(pods, clock=clock, deleted_pod_grace="0s")
    name = "web-7d4b9c8f6d-x2x9z"
    old_src = file_fields(name)
    files.opened(old_src)
    pods._store(_instance(WEB, "uid-second", "d" * 64))
    old = t.process(lines(old_src, "old"))
    new = t.process(lines(file_fields(name, cid="d" * 64), "new"))
    assert old is not None and old.events[0]["kubernetes"]["pod_id"] == "uid-default-web-7d4b9c8f6d-x2x9z"
    assert new is not None and new.events[0]["kubernetes"]["pod_id"] == "uid-second"
    assert pods.size() == 2
    files.closed(old_src)
    pods.prune(clock.now + 1e9)  # the registry's close time is monotonic real time
    assert pods.size() == 1 and pods.find(name=name, namespace="default") is pods.get("default", name)
    assert pods.find_container("default", name, CID) == (pods.get("default", name), False)


def test_when_the_input_ends_every_held_batch_goes() -> None:
    clock = Clock()
    t = build(cache(clock=clock), clock=clock, wait_for_pod="1h")
    assert t.process(lines(file_fields("a"), "1")) is None
    assert t.process(lines(file_fields("b"), "2")) is None
    assert t.flush() is None
    t.input_ended()
    out = t.flush()
    assert out is not None and sorted(e["message"] for e in out.events) == ["1", "2"]
    assert misses(t) == {"not_found": 2}


def test_when_the_agent_drains_held_files_go_at_the_next_flush_and_nothing_waits_after() -> None:
    clock = Clock()
    t = build(cache(clock=clock), clock=clock, wait_for_pod="1h")
    assert t.process(lines(file_fields("a"), "1")) is None
    t.draining()  # the sources wait for the acks of what is held: it must not wait for the pod
    out = t.flush()
    assert out is not None and [e["message"] for e in out.events] == ["1"]
    later = t.process(lines(file_fields("b"), "2"))
    assert later is not None and misses(t) == {"not_found": 2}


def test_validate_warns_of_a_wait_for_pod_not_below_shutdown_timeout(tmp_path: Path) -> None:
    def warnings(wait: str) -> list[str]:
        (tmp_path / "a.yaml").write_text(f"""shutdown_timeout: 10s
sources: {{c: {{type: tail, include: [/var/log/containers/*.log]}}}}
transforms: {{k8s: {{type: kubernetes, inputs: [c], wait_for_pod: {wait}}}}}
sinks: {{out: {{type: blackhole, inputs: [k8s]}}}}
""")
        pipeline, errors = check_files([str(tmp_path / "a.yaml")])
        assert errors == []
        return pipeline.warnings
    assert warnings("2s") == []
    found = warnings("10s")
    assert len(found) == 1 and "transforms.k8s.wait_for_pod" in found[0] and "shutdown_timeout" in found[0]


def test_a_deleted_pod_is_kept_while_its_file_is_open_then_for_the_grace() -> None:
    clock, files = Clock(), ContainerFiles()
    pods = cache(WEB, clock=clock, files=files)
    t = build(pods, clock=clock, deleted_pod_grace="30s")
    src = file_fields("web-7d4b9c8f6d-x2x9z")
    files.opened(src)
    pods._remove("default/web-7d4b9c8f6d-x2x9z")
    assert pods.get("default", "web-7d4b9c8f6d-x2x9z") is None
    clock.now += 3600  # an hour later, the file still open: still known
    out = t.process(lines(src, "last words"))
    assert out is not None and out.events[0]["kubernetes"]["labels"]["app"] == "web"
    files.closed(src)
    clock.now += 10
    assert pods.find("default", "web-7d4b9c8f6d-x2x9z") is not None  # within the grace after the close
    clock.now += 1000  # the registry's close time is monotonic real time: far enough past either way
    pods.prune(clock.now + 1e9)
    assert pods.find("default", "web-7d4b9c8f6d-x2x9z") is None
    assert pods.size() == 0


def test_a_deleted_pod_without_files_goes_after_the_grace() -> None:
    clock = Clock()
    pods = cache(WEB, clock=clock)
    pods.retain_deleted_for(5)
    pods._remove("default/web-7d4b9c8f6d-x2x9z")
    clock.now += 4
    assert pods.find("default", "web-7d4b9c8f6d-x2x9z") is not None
    clock.now += 1
    assert pods.find("default", "web-7d4b9c8f6d-x2x9z") is None
    assert pods.memory_bytes() < 2000  # the pod's bytes are given back


def test_realistic_pods_resolve_from_their_log_file_names() -> None:
    pods = [realistic_pod(i) for i in range(12)]
    t = build(cache(*pods))
    for pod in pods:
        for status in pod["status"]["containerStatuses"]:
            src = kubernetes_fields(container_log_name(pod, status["name"]))
            out = t.process(lines(src, "x"))
            assert out is not None
            view = out.events[0]["kubernetes"]
            assert view["pod"] == pod["metadata"]["name"] and view["container_image"] == status["image"]
            assert view["owner"]["kind"] in ("Deployment", "DaemonSet", "StatefulSet")
    assert misses(t) == {}


def test_bad_config_names_the_key() -> None:
    def load(extra: str) -> str:
        text = ("data_dir: /tmp/agent-test\nsources:\n  tail: {type: tail, include: [/tmp/x/*.log]}\n"
                "transforms:\n  k8s:\n    type: kubernetes\n    inputs: [tail]\n" + extra +
                "sinks:\n  out: {type: blackhole, inputs: [k8s]}\n")
        with pytest.raises(ConfigErrors) as caught:
            load_texts([(text, "p.yaml")])
        return str(caught.value)

    assert 'p.yaml:8: transforms.k8s: unknown key "merge_lgo"' in load("    merge_lgo: true\n")
    assert 'transforms.k8s.labels: unknown key "includes"' in load("    labels: {includes: [a]}\n")
    message = load("    parsers:\n      access:\n        codec: regex\n        patern: x\n")
    assert 'p.yaml:11: transforms.k8s.parsers.access.patern: unknown key "patern"' in message
    assert "p.yaml:10: transforms.k8s.parsers.access.codec: Invalid enum value 'yaml'" in load(
        "    parsers:\n      access:\n        codec: yaml\n")
    assert "transforms.k8s.parsers.access: codec regex needs a pattern" in load(
        "    parsers:\n      access:\n        codec: regex\n")
    assert "transforms.k8s.merge_log_key: needs merge_log: true" in load("    merge_log_key: log\n")


async def test_no_cluster_is_one_start_up_line_naming_what_to_set(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(StartupError, match='transform "k8s": in-cluster service account \\(or set kubeconfig\\): '
                                           "not running in a cluster"):
        await build(None).start()
    with pytest.raises(StartupError, match=r'transform "k8s": kubeconfig: .*missing'):
        await build(None, kubeconfig=str(tmp_path / "missing")).start()


# -- the stage in the topology's transform loop, beside its Flusher --------------------------------------------


class Loop:
    """The stage run by the topology's own transform loop and Flusher, into a small downstream buffer."""

    def __init__(self, pods: PodWatcher, room: int) -> None:
        self.t = build(pods, clock=time.monotonic, wait_for_pod="1h")
        self.inbox = MemoryBuffer(100, 1 << 20, "block", self.t.stats)
        self.downstream = MemoryBuffer(room, 1 << 20, "block", ComponentStats("out", "sink", "blackhole"))
        out = self.t_out = Fanout(self.t.stats)
        out.set_targets([(self.downstream, False)])
        node = SimpleNamespace(named={}, id="k8s", component=self.t, output=out, stats=self.t.stats,
                               inbox=self.inbox)
        self.task = asyncio.create_task(Topology._run_transform(node))  # type: ignore[arg-type]
        self.acks: list[AckStatus] = []

    async def send(self, src: dict[str, str], message: str) -> None:
        batch = lines(src, message)
        batch.acks.append(Ack(self.acks.append))
        await self.inbox.put(batch)

    async def take(self, events: int) -> list[str]:
        """The messages of the next ``events`` events downstream, each batch delivered."""
        messages: list[str] = []
        async with asyncio.timeout(5):
            while len(messages) < events:
                batch = await self.downstream.get()
                assert batch is not None
                messages += [e["message"] for e in batch.events]
                batch.finalize(AckStatus.DELIVERED)
        return messages


async def test_a_files_released_batches_leave_before_its_later_ones_under_backpressure() -> None:
    pods = cache()
    loop = Loop(pods, room=3)
    await loop.downstream.put(lines(None, "f1", "f2"))  # downstream has room for one more event
    src = file_fields("late")
    await loop.send(src, "1")
    await loop.send(src, "2")
    await wait_for(lambda: sum(len(h.batches) for h in loop.t._held.values()) == 2)
    pods._store(trim_pod(make_pod("late")))
    await wait_for(lambda: not loop.t._held)  # the Flusher let them go: 2 events wait for room
    await loop.send(src, "3")  # the pod is cached now: this one is not held
    await wait_for(lambda: loop.t.stats.received_events == 3)
    for _ in range(5):
        await asyncio.sleep(0)
    assert await loop.take(5) == ["f1", "f2", "1", "2", "3"]  # in the file's order
    loop.inbox.close()
    await asyncio.wait_for(loop.task, 5)
    assert loop.acks == [AckStatus.DELIVERED] * 3


async def test_a_release_waiting_for_room_when_the_input_ends_is_still_sent() -> None:
    pods = cache()
    loop = Loop(pods, room=2)
    await loop.downstream.put(lines(None, "f1"))
    src = file_fields("late")
    await loop.send(src, "1")
    await loop.send(src, "2")
    await wait_for(lambda: sum(len(h.batches) for h in loop.t._held.values()) == 2)
    pods._store(trim_pod(make_pod("late")))
    await wait_for(lambda: not loop.t._held)  # released, waiting for room downstream
    loop.inbox.close()  # the drain (or a reload) ends the input meanwhile
    assert await loop.take(3) == ["f1", "1", "2"]  # not abandoned with its acks
    await asyncio.wait_for(loop.task, 5)
    assert loop.acks == [AckStatus.DELIVERED] * 2


def test_a_fault_while_releasing_a_held_file_passes_its_lines_on_with_their_acks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    pods = cache(clock=clock)
    t = build(pods, clock=clock, wait_for_pod="2s")
    src = file_fields("late")
    acks: list[AckStatus] = []
    for message in ("1", "2"):
        batch = lines(src, message)
        batch.acks.append(Ack(acks.append))
        assert t.process(batch) is None
    pods._store(trim_pod(make_pod("late")))

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(t, "_build", broken)
    out = t.flush()
    assert out is not None and [e["message"] for e in out.events] == ["1", "2"]
    out.finalize(AckStatus.DELIVERED)
    assert acks == [AckStatus.DELIVERED] * 2 and not t._held
    assert t.stats.errors


async def test_a_crash_of_the_stage_lets_its_held_batches_go_with_their_acks() -> None:
    pods = cache(make_pod("web"))
    loop = Loop(pods, room=100)
    await loop.send(file_fields("late"), "1")  # its pod is not cached: held
    await wait_for(lambda: sum(len(h.batches) for h in loop.t._held.values()) == 1)
    send, calls = loop.t_out.send, []

    async def fails_once(batch: Batch) -> None:
        calls.append(batch)
        if len(calls) == 1:
            raise RuntimeError("a fault downstream")
        await send(batch)

    loop.t_out.send = fails_once  # type: ignore[method-assign]
    await loop.send(file_fields("web"), "2")  # passes: its send fails, the loop crashes
    with pytest.raises(RuntimeError, match="a fault downstream"):
        await asyncio.wait_for(loop.task, 5)  # (the supervisor would rebuild the stage now)
    assert await loop.take(1) == ["1"]  # the held batch went on, not lost with the crashed component
    assert loop.acks == [AckStatus.DELIVERED]
